//! Scenario `query`: ingest, wait for the indexes, then a round-robin query mix
//! with values drawn from the ingested events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::{json, Map, Value};
use stele::testkit::EventGen;

use crate::client::{contains, hist, record, wait_indexed, Client, Tally, Timing};
use crate::common::enc;
use crate::daemon::Ctx;
use crate::gen::{producer, Sample};
use crate::ingest::ingest_clients;
use crate::report::{latency_json, quantile_ms, r2, Report};
use crate::{Opts, INDEX_WAIT, NDJSON};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    ListAction,
    ListTenant,
    ListUser,
    ListMinSeverity,
    Search,
    GetById,
    Stats,
    History,
    Timeline,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::ListAction,
        Kind::ListTenant,
        Kind::ListUser,
        Kind::ListMinSeverity,
        Kind::Search,
        Kind::GetById,
        Kind::Stats,
        Kind::History,
        Kind::Timeline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ListAction => "list ?action= newest 100",
            Kind::ListTenant => "list ?tenant= newest 100",
            Kind::ListUser => "list ?user_id= newest 100",
            Kind::ListMinSeverity => "list ?min_severity= newest 100",
            Kind::Search => "search ?q=<word> newest 100",
            Kind::GetById => "get by id",
            Kind::Stats => "stats ?hours=720",
            Kind::History => "entity history, first 100",
            Kind::Timeline => "user timeline, newest 100",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Kind::ListAction => "list_action",
            Kind::ListTenant => "list_tenant",
            Kind::ListUser => "list_user_id",
            Kind::ListMinSeverity => "list_min_severity",
            Kind::Search => "search",
            Kind::GetById => "get_by_id",
            Kind::Stats => "stats_720h",
            Kind::History => "entity_history",
            Kind::Timeline => "user_timeline",
        }
    }

    /// The request path for one sampled event, if it has the field this kind needs.
    pub fn path(self, s: &Sample) -> Option<String> {
        Some(match self {
            Kind::ListAction => format!("/v1/events?action={}&limit=100", enc(&s.action)),
            Kind::ListTenant => format!("/v1/events?tenant={}&limit=100", enc(s.tenant.as_ref()?)),
            Kind::ListUser => format!("/v1/events?user_id={}&limit=100", enc(s.user_id.as_ref()?)),
            Kind::ListMinSeverity => {
                format!("/v1/events?min_severity={}&limit=100", enc(s.severity?))
            }
            Kind::Search => format!("/v1/search?q={}&limit=100", enc(s.word.as_ref()?)),
            Kind::GetById => format!("/v1/events/{}", enc(&s.id)),
            Kind::Stats => "/v1/stats?hours=720".to_owned(),
            Kind::History => {
                let (ty, id) = s.entity.as_ref()?;
                format!("/v1/entities/{}/{}/history?limit=100", enc(ty), enc(id))
            }
            Kind::Timeline => format!("/v1/users/{}/events?limit=100", enc(s.user_id.as_ref()?)),
        })
    }

    /// Whether an answer with no events means the query matched nothing.
    pub fn lists(self) -> bool {
        !matches!(self, Kind::GetById | Kind::Stats)
    }
}

pub struct KindOut {
    pub hist: Histogram<u64>,
    pub tally: Tally,
    pub empty: u64,
}

/// Events ingested before the query mix unless `--events` says otherwise.
const QUERY_EVENTS_DEFAULT: u64 = 200_000;

pub async fn query(ctx: &Ctx, o: &Opts) -> Result<Report> {
    let clients = o.clients.unwrap_or(4);
    let events = o.events.unwrap_or(QUERY_EVENTS_DEFAULT);
    let mut report = Report::new(
        "query",
        format!(
            "{} events ingested, then {clients} clients running the query mix, {:.1} s measured after {:.1} s warm-up",
            events, o.duration, o.warmup
        ),
        json!({"clients": clients, "events": events, "event_bytes": o.event_bytes,
               "duration_s": o.duration, "warmup_s": o.warmup, "seed": o.seed}),
    );

    // 1. Ingest (not measured).
    let samples = ingest_unmeasured(ctx, o, events, "query", &mut report).await?;

    // 2. The mix.
    let paths: Arc<Vec<Vec<String>>> = Arc::new(
        Kind::ALL
            .iter()
            .map(|k| samples.iter().filter_map(|s| k.path(s)).collect())
            .collect(),
    );
    let timing = Timing::start(o);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (ctx, paths) = (ctx.clone(), paths.clone());
            let seed = o.seed ^ (0x9e37_79b9 + i as u64);
            tokio::spawn(async move { query_client(ctx, paths, timing, seed, i).await })
        })
        .collect();
    let mut per: Vec<KindOut> = Kind::ALL
        .iter()
        .map(|_| KindOut {
            hist: hist(),
            tally: Tally::default(),
            empty: 0,
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(outs) => {
                for (all, one) in per.iter_mut().zip(outs) {
                    let _ = all.hist.add(&one.hist);
                    all.tally.merge(one.tally);
                    all.empty += one.empty;
                }
            }
            Err(e) => ctx.abort(format!("a client task failed: {e}")),
        }
    }
    ctx.check()?;

    let secs = timing.secs();
    let total: u64 = per.iter().map(|k| k.hist.len()).sum();
    report.line(
        "queries/s (all kinds)",
        format!("{:.0} queries/s", total as f64 / secs),
    );
    report.set("queries_per_s", json!(r2(total as f64 / secs)));
    report.lines.push(format!(
        "  {:<32} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6}",
        "kind (latency in ms)", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "non-2xx", "empty"
    ));
    let mut kinds = Map::new();
    let mut tally = Tally::default();
    for ((k, out), choices) in Kind::ALL.iter().zip(per).zip(paths.iter()) {
        let h = &out.hist;
        let q = |q: f64| quantile_ms(h, q).map_or("-".to_owned(), |v| format!("{v:.2}"));
        report.lines.push(format!(
            "  {:<32} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6}",
            k.name(),
            h.len(),
            q(0.5),
            q(0.95),
            q(0.99),
            q(1.0),
            out.tally.non_2xx() + out.tally.transport_errors,
            out.empty
        ));
        let mut j = latency_json(h);
        if let Value::Object(m) = &mut j {
            m.insert("non_2xx".into(), json!(out.tally.non_2xx()));
            m.insert("empty".into(), json!(out.empty));
            m.insert("distinct_values".into(), json!(choices.len()));
        }
        kinds.insert(k.key().into(), j);
        tally.merge(out.tally);
    }
    report.set("kinds", Value::Object(kinds));
    report.line(
        "target",
        "HTTP <= in-process + 1 ms (compare with `cargo bench --bench index`)",
    );
    report.tally(&tally);
    Ok(report)
}

/// One query client: the kinds in turn (offset by client), values drawn at random.
pub async fn query_client(
    ctx: Ctx,
    paths: Arc<Vec<Vec<String>>>,
    timing: Timing,
    seed: u64,
    offset: usize,
) -> Vec<KindOut> {
    let mut rng = EventGen::new(seed);
    let mut c = Client::new(&ctx);
    let mut out: Vec<KindOut> = Kind::ALL
        .iter()
        .map(|_| KindOut {
            hist: hist(),
            tally: Tally::default(),
            empty: 0,
        })
        .collect();
    let mut turn = offset;
    while !ctx.aborted() && Instant::now() < timing.end {
        let k = turn % Kind::ALL.len();
        turn += 1;
        let choices = &paths[k];
        if choices.is_empty() {
            continue;
        }
        let path = &choices[(rng.next_u64() % choices.len() as u64) as usize];
        match c.call(Method::GET, path, None, Bytes::new()).await {
            Ok(a) => {
                let ok = out[k].tally.note(&a);
                if timing.measured(a.at) {
                    record(&mut out[k].hist, a.latency);
                    if ok && Kind::ALL[k].lists() && contains(&a.body, b"\"events\":[]") {
                        out[k].empty += 1;
                    }
                }
            }
            Err(e) => c.failed(&mut out[k].tally, e).await,
        }
    }
    out
}

/// Ingests `events` generated events in 1,000-event NDJSON batches over two
/// connections, waits for index lag 0 and reports it (not measured); returns
/// the samples drawn from what was ingested.
pub async fn ingest_unmeasured(
    ctx: &Ctx,
    o: &Opts,
    events: u64,
    name: &str,
    report: &mut Report,
) -> Result<Vec<Sample>> {
    eprintln!("loadgen: {name}: ingesting {events} events in batches of 1000");
    let sample_every = (events / 4000).max(1);
    let (rx, gen) = producer(o.seed, o.event_bytes, 1000, Some(events), sample_every, 16);
    let started = Instant::now();
    let forever = Timing {
        warm_end: started,
        end: started + Duration::from_secs(365 * 86_400),
    };
    let ingest = ingest_clients(ctx, 2, rx, forever, NDJSON, None).await;
    let ingest_secs = started.elapsed().as_secs_f64();
    let samples = gen
        .join()
        .map_err(|_| anyhow!("the event generator thread panicked"))?
        .samples;
    ctx.check()?;
    eprintln!(
        "loadgen: {name}: ingested {} events in {ingest_secs:.1} s ({:.0} events/s); waiting for the index",
        ingest.events,
        ingest.events as f64 / ingest_secs
    );
    let indexed_at = wait_indexed(ctx, INDEX_WAIT).await?;
    let index_wait = indexed_at.saturating_duration_since(started).as_secs_f64() - ingest_secs;
    report.line(
        "ingest (not measured)",
        format!(
            "{} events in {ingest_secs:.1} s ({:.0} events/s), indexed {:.1} s later",
            ingest.events,
            ingest.events as f64 / ingest_secs,
            index_wait.max(0.0)
        ),
    );
    report.set("ingested_events", json!(ingest.events));
    report.set("ingest_s", json!(r2(ingest_secs)));
    report.set("index_wait_s", json!(r2(index_wait.max(0.0))));
    if ingest.tally.non_2xx() + ingest.tally.transport_errors > 0 {
        report.line(
            "ingest failures",
            format!(
                "{} non-2xx, {} transport errors; first: {}",
                ingest.tally.non_2xx(),
                ingest.tally.transport_errors,
                ingest
                    .tally
                    .first_problem
                    .as_deref()
                    .or(ingest.tally.first_transport_error.as_deref())
                    .unwrap_or("-")
            ),
        );
    }

    Ok(samples)
}
