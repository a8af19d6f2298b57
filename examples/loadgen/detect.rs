//! Scenario `detect`: what the detectors cost ingest, and how soon they find.
//!
//! Fresh daemons with the detectors off and on (`STELE_DETECT_ENABLED`), in ABBA order
//! (off, on, on, off, …) so that a drift of the machine during the session weighs on
//! both alike; both daemons of a pair get the same workload (the same seed). Into each,
//! `--events` NDJSON events over `--clients` connections, the users and addresses
//! spread over `--users` users ([`Spread`]). On both, the same side load: one reader of
//! `GET /v1/stream?category=stele.finding` (it reads the log, so a finding shows as soon
//! as it is stored; `/v1/findings` waits for the index, seconds behind under this load)
//! and one client injecting a failed-login burst for a fresh user every
//! `--burst-every`: `login_burst_count − 1` failures in one request, then the last one
//! alone. Detection latency is from that last 201 to the user's `failed_login_burst`
//! on the stream (a finding seen before the 201 reached the client counts as 0).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use stele::event::format_micros;
use stele::intel::detect::Thresholds;

use crate::client::{healthy, hist, record, Client, Tally, Timing};
use crate::common::{connect, find, lock, now_micros};
use crate::daemon::{watchdog, Ctx, Daemon, DaemonNotes};
use crate::gen::{producer_spread, Spread};
use crate::ingest::ingest_clients;
use crate::report::{quantile_ms, r2, size_text, verdict, Report};
use crate::{Opts, INTERRUPTED, JSON, NDJSON, REQUEST_TIMEOUT};

/// Events ingested into each daemon unless `--events` says otherwise: a run of the
/// default two pairs takes a few minutes.
const DETECT_EVENTS_DEFAULT: u64 = 500_000;
/// One user event in this many comes from an address other than the user's home.
const AWAY_ONE_IN: u64 = 10;
/// How long the findings of the last bursts are waited for after the ingest (on a
/// daemon without detectors: how long a stray finding is looked for).
const FINDING_DRAIN: Duration = Duration::from_secs(5);
const NO_FINDING_DRAIN: Duration = Duration::from_secs(1);
/// The cost target of issue 18: ingest with detectors at most this much slower.
const COST_TARGET_PERCENT: f64 = 10.0;
/// The latency target of issue 18 (p99, ms).
const LATENCY_TARGET_MS: f64 = 2000.0;
/// How often the feed's lag behind the log is sampled.
const LAG_EVERY: Duration = Duration::from_millis(500);

/// What one daemon's run gave.
struct RunOut {
    pair: usize,
    on: bool,
    events: u64,
    /// From the first request to the last acknowledgement.
    secs: f64,
    latency: Histogram<u64>,
    bursts: u64,
    /// Bursts whose finding never arrived within the drain.
    missing: u64,
    /// Findings that arrived before the 201 of their last failure.
    before_ack: u64,
    kinds: BTreeMap<String, u64>,
    tracked: Vec<(String, u64)>,
    /// VmRSS and VmHWM (peak) of the daemon at the end, kB.
    rss_kb: Option<(u64, u64)>,
    stalls: u64,
    /// How far the activity feed was behind the log (events), max and mean of the
    /// samples taken during the ingest.
    feed_lag: (u64, f64),
    tally: Tally,
    notes: DaemonNotes,
}

impl RunOut {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs.max(1e-9)
    }

    fn label(&self) -> String {
        format!(
            "pair {}, detectors {}",
            self.pair + 1,
            if self.on { "on" } else { "off" }
        )
    }
}

pub fn detect(rt: &tokio::runtime::Runtime, o: &Opts) -> Result<Report> {
    let events = o.events.unwrap_or(DETECT_EVENTS_DEFAULT);
    let clients = o.clients.unwrap_or(2);
    let burst = Thresholds::default().login_burst_count;
    let mut report = Report::new(
        "detect",
        format!(
            "{} pairs of daemons (detectors off / on, ABBA order), {events} events each in NDJSON \
             batches of {} over {clients} connections ({}, {} users), a failed-login burst every {} ms",
            o.pairs, o.batch, size_text(o.event_bytes), o.users, o.burst_every
        ),
        json!({"pairs": o.pairs, "events": events, "batch": o.batch, "clients": clients,
               "event_bytes": o.event_bytes, "users": o.users, "burst_every_ms": o.burst_every,
               "burst": burst, "seed": o.seed}),
    );
    let mut runs = Vec::new();
    for pair in 0..o.pairs {
        let order = if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for on in order {
            if INTERRUPTED.load(Ordering::Relaxed) {
                bail!("interrupted (Ctrl-C)");
            }
            let r = one_run(rt, o, pair, on, events, clients, burst)?;
            eprintln!(
                "loadgen: detect: {}: {:.0} events/s, {} bursts, {} findings seen",
                r.label(),
                r.rate(),
                r.bursts,
                r.latency.len()
            );
            runs.push(r);
        }
    }
    summarize(&mut report, &runs);
    Ok(report)
}

/// Starts a daemon with the detectors on or off, drives it, stops it.
fn one_run(
    rt: &tokio::runtime::Runtime,
    o: &Opts,
    pair: usize,
    on: bool,
    events: u64,
    clients: usize,
    burst: u64,
) -> Result<RunOut> {
    let enabled = if on { "true" } else { "false" };
    let d = Daemon::start_env(o, &[("STELE_DETECT_ENABLED", enabled)])?;
    let ctx = Ctx::new(d.addr, Some(d.child.clone()), d.token.clone());
    let pid = lock(&d.child).id();
    eprintln!(
        "loadgen: detect: pair {}: detectors {}: daemon at {} (pid {pid}), ingesting {events} events",
        pair + 1,
        if on { "on" } else { "off" },
        ctx.addr
    );
    let result = rt.block_on(async {
        let watchdog = tokio::spawn(watchdog(ctx.clone()));
        let r = async {
            healthy(&ctx).await?;
            let run = Run {
                ctx: &ctx,
                o,
                pair,
                on,
                events,
                clients,
                burst,
                pid,
            };
            run.drive().await
        }
        .await;
        watchdog.abort();
        r
    });
    let notes = d.stop();
    match result {
        Ok(mut r) => {
            r.notes = notes;
            Ok(r)
        }
        Err(e) => {
            let mut msg = format!("{e:#}");
            for line in notes.tail.iter().rev().take(10).rev() {
                let _ = write!(msg, "\n    {line}");
            }
            Err(anyhow!(msg))
        }
    }
}

/// One daemon's run.
struct Run<'a> {
    ctx: &'a Ctx,
    o: &'a Opts,
    pair: usize,
    on: bool,
    events: u64,
    clients: usize,
    burst: u64,
    pid: u32,
}

impl Run<'_> {
    async fn drive(&self) -> Result<RunOut> {
        let ctx = self.ctx;
        // 1. The findings stream, open before anything is posted.
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let reader = tokio::spawn(findings_reader(
            ctx.clone(),
            seen.clone(),
            ready_tx,
            stop_rx,
        ));
        ready_rx
            .await
            .map_err(|_| anyhow!("the findings stream task ended"))?
            .map_err(|e| anyhow!(e))?;

        // 2. The ingest, with the bursts injected meanwhile.
        let spread = Spread {
            users: self.o.users,
            away_one_in: AWAY_ONE_IN,
        };
        let (rx, gen) = producer_spread(
            self.o.seed.wrapping_add(self.pair as u64),
            self.o.event_bytes,
            self.o.batch,
            Some(self.events),
            u64::MAX,
            2 * self.clients + 4,
            Some(spread),
        );
        let started = Instant::now();
        let forever = Timing {
            warm_end: started,
            end: started + Duration::from_secs(365 * 86_400),
        };
        let done = Arc::new(AtomicBool::new(false));
        let injector = tokio::spawn(inject_bursts(
            ctx.clone(),
            format!(
                "lg-{}-{}",
                self.pair + 1,
                if self.on { "on" } else { "off" }
            ),
            self.burst,
            Duration::from_millis(self.o.burst_every),
            done.clone(),
        ));
        let lag = tokio::spawn(feed_lag(ctx.clone(), done.clone()));
        let out = ingest_clients(ctx, self.clients, rx, forever, NDJSON, None).await;
        done.store(true, Ordering::Relaxed);
        let feed_lag = lag.await.unwrap_or_default();
        let (acks, burst_tally) = injector
            .await
            .map_err(|e| anyhow!("the burst injector failed: {e}"))?;
        let _ = gen.join();
        ctx.check()?;
        let secs = out
            .last_ack
            .map_or(0.0, |l| l.saturating_duration_since(started).as_secs_f64());

        // 3. The findings of the last bursts.
        let drain = if self.on {
            FINDING_DRAIN
        } else {
            NO_FINDING_DRAIN
        };
        let until = Instant::now() + drain;
        while Instant::now() < until {
            let all = {
                let s = lock(&seen);
                acks.iter().all(|(u, _)| s.users.contains_key(u))
            };
            if all {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // 4. Memory and what the detectors hold.
        let rss_kb = proc_status_kb(self.pid);
        let tracked = if self.on {
            tracked(ctx).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        let _ = stop_tx.send(true);
        let ended = reader.await.ok().flatten();
        if let Some(why) = ended {
            eprintln!("loadgen: detect: the findings stream ended early: {why}");
        }

        let mut latency = hist();
        let (mut missing, mut before_ack) = (0, 0);
        let s = lock(&seen);
        for (user, acked) in &acks {
            match s.users.get(user) {
                Some(at) if at < acked => {
                    before_ack += 1;
                    record(&mut latency, Duration::ZERO);
                }
                Some(at) => record(&mut latency, *at - *acked),
                None => missing += 1,
            }
        }
        let mut tally = out.tally;
        tally.merge(burst_tally);
        Ok(RunOut {
            pair: self.pair,
            on: self.on,
            events: out.events,
            secs,
            latency,
            bursts: acks.len() as u64,
            missing,
            before_ack,
            kinds: s.kinds.clone(),
            tracked,
            rss_kb,
            stalls: out.stalls,
            feed_lag,
            tally,
            notes: DaemonNotes::default(),
        })
    }
}

/// Posts a failed-login burst for a fresh user every `every` until `done`: `burst − 1`
/// failures in one request, then the last alone. Returns each user with the instant
/// the 201 of its last failure arrived.
async fn inject_bursts(
    ctx: Ctx,
    prefix: String,
    burst: u64,
    every: Duration,
    done: Arc<AtomicBool>,
) -> (Vec<(String, Instant)>, Tally) {
    let mut c = Client::new(&ctx);
    let (mut acks, mut tally) = (Vec::new(), Tally::default());
    let mut next = Instant::now() + every;
    let mut i = 0u64;
    loop {
        tokio::time::sleep_until(next.into()).await;
        next = (next + every).max(Instant::now());
        if done.load(Ordering::Relaxed) || ctx.aborted() {
            break;
        }
        i += 1;
        let user = format!("{prefix}-{i}");
        // One event time for the whole burst: the window is aligned, so the burst
        // never straddles two.
        let at = format_micros(now_micros());
        let ip = format!("198.18.{}.{}", (i >> 8) & 255, i & 255);
        let event = |k: u64| {
            json!({"id": format!("{user}-{k}"), "action": "login_failed", "status": "failure",
                   "user_id": user, "ip": ip, "tenant": "acme", "timestamp": at,
                   "description": "loadgen: an injected failed login"})
        };
        if burst > 1 {
            let mut first = Vec::new();
            for k in 1..burst {
                serde_json::to_writer(&mut first, &event(k)).expect("JSON values serialize");
                first.push(b'\n');
            }
            let posted = c
                .call(Method::POST, "/v1/events", Some(NDJSON), first.into())
                .await;
            match posted {
                Ok(a) if tally.note_ingest(&a) => {}
                Ok(_) => continue,
                Err(e) => {
                    c.failed(&mut tally, e).await;
                    continue;
                }
            }
        }
        let last = serde_json::to_vec(&event(burst)).expect("JSON values serialize");
        match c
            .call(Method::POST, "/v1/events", Some(JSON), last.into())
            .await
        {
            Ok(a) => {
                if tally.note_ingest(&a) && a.status == StatusCode::CREATED {
                    acks.push((user, a.at));
                }
            }
            Err(e) => c.failed(&mut tally, e).await,
        }
    }
    (acks, tally)
}

/// The findings seen on the stream.
#[derive(Default)]
struct Seen {
    /// The first `failed_login_burst` of each user, when it arrived.
    users: HashMap<String, Instant>,
    /// Findings by kind.
    kinds: BTreeMap<String, u64>,
}

/// Reads `GET /v1/stream?category=stele.finding`, noting each finding. Signals `ready`
/// once the stream is open, stops when `stop` flips; returns why it ended otherwise.
async fn findings_reader(
    ctx: Ctx,
    seen: Arc<Mutex<Seen>>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<String> {
    const PATH: &str = "/v1/stream?category=stele.finding";
    let opened = async {
        let mut sender = connect(ctx.addr).await?;
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(PATH)
            .header("host", &ctx.host)
            .header("accept", "text/event-stream");
        if let Some(a) = &ctx.authorization {
            req = req.header("authorization", a);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| format!("GET {PATH}: no answer"))?
            .map_err(|e| format!("GET {PATH}: {e}"))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("GET {PATH} answered {}", resp.status()));
        }
        // Keep the sender alive with the body: dropping it may close the connection.
        Ok((sender, resp.into_body()))
    }
    .await;
    let (_sender, mut body) = match opened {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Some(e);
        }
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = stop.changed() => return None,
        };
        let now = Instant::now();
        match frame {
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    buf.extend_from_slice(&data);
                    while let Some(pos) = find(&buf, b"\n\n") {
                        let block: Vec<u8> = buf.drain(..pos + 2).collect();
                        finding_block(&block, now, &seen);
                    }
                }
            }
            Some(Err(e)) => return Some(format!("the stream failed: {e}")),
            None => return Some("the daemon ended the stream".into()),
        }
    }
}

/// One SSE block: its `data:` lines are a finding event (`action` its kind).
fn finding_block(block: &[u8], at: Instant, seen: &Mutex<Seen>) {
    let text = String::from_utf8_lossy(block);
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("data:"))
        .map(|v| v.strip_prefix(' ').unwrap_or(v))
        .collect();
    if data.is_empty() {
        return;
    }
    let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) else {
        return;
    };
    let kind = v["action"].as_str().unwrap_or("?").to_owned();
    let mut s = lock(seen);
    if kind == "failed_login_burst" {
        if let Some(u) = v["user_id"].as_str() {
            s.users.entry(u.to_owned()).or_insert(at);
        }
    }
    *s.kinds.entry(kind).or_default() += 1;
}

/// Samples how far the activity feed is behind the log (`stele_log_last_seq` −
/// `stele_intel_feed_seq`) every [`LAG_EVERY`] until `done`: the max and the mean.
async fn feed_lag(ctx: Ctx, done: Arc<AtomicBool>) -> (u64, f64) {
    let mut c = Client::new(&ctx);
    let (mut max, mut sum, mut n) = (0u64, 0u64, 0u64);
    while !done.load(Ordering::Relaxed) && !ctx.aborted() {
        tokio::time::sleep(LAG_EVERY).await;
        let Ok(a) = c.call(Method::GET, "/metrics", None, Bytes::new()).await else {
            continue;
        };
        let text = String::from_utf8_lossy(&a.body);
        let gauge = |name: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix(name))
                .find_map(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        if let (Some(last), Some(feed)) =
            (gauge("stele_log_last_seq"), gauge("stele_intel_feed_seq"))
        {
            let lag = (last - feed).max(0.0) as u64;
            max = max.max(lag);
            sum += lag;
            n += 1;
        }
    }
    (max, sum as f64 / n.max(1) as f64)
}

/// `stele_detector_tracked{what}` from `/metrics`.
async fn tracked(ctx: &Ctx) -> Result<Vec<(String, u64)>> {
    let mut c = Client::new(ctx);
    let a = c
        .call(Method::GET, "/metrics", None, Bytes::new())
        .await
        .map_err(|e| anyhow!("GET /metrics: {e}"))?;
    let text = String::from_utf8_lossy(&a.body);
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("stele_detector_tracked{"))
        .filter_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let what = labels.split('"').nth(1)?.to_owned();
            Some((what, value.trim().parse::<f64>().ok()? as u64))
        })
        .collect())
}

/// VmRSS and VmHWM of `pid`, kB (Linux).
fn proc_status_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The report: each run, off vs on, the latency over every detectors-on run.
fn summarize(report: &mut Report, runs: &[RunOut]) {
    let mut rows = Vec::new();
    for r in runs {
        let rss = r.rss_kb.map_or("VmRSS unknown".into(), |(rss, hwm)| {
            format!("VmRSS {:.1} MB (peak {:.1} MB)", mb(rss), mb(hwm))
        });
        report.line(
            &r.label(),
            format!(
                "{:.0} events/s ({} events in {:.1} s); {rss}; feed lag max {} / mean {:.0} events",
                r.rate(),
                r.events,
                r.secs,
                r.feed_lag.0,
                r.feed_lag.1
            ),
        );
        rows.push(json!({
            "pair": r.pair + 1, "detectors": r.on, "events": r.events, "secs": r.secs,
            "events_per_s": r2(r.rate()), "vm_rss_kb": r.rss_kb.map(|x| x.0),
            "vm_hwm_kb": r.rss_kb.map(|x| x.1), "bursts": r.bursts,
            "findings": r.kinds, "tracked": r.tracked.iter().cloned().collect::<BTreeMap<_, _>>(),
            "generator_stalls": r.stalls, "feed_lag_max": r.feed_lag.0,
            "feed_lag_mean": r2(r.feed_lag.1),
        }));
    }
    report.set("runs", json!(rows));
    let (on, off): (Vec<&RunOut>, Vec<&RunOut>) = runs.iter().partition(|r| r.on);
    let rates = |rs: &[&RunOut]| rs.iter().map(|r| r.rate()).collect::<Vec<_>>();
    let (on_rate, off_rate) = (mean(&rates(&on)), mean(&rates(&off)));
    let cost = (off_rate - on_rate) / off_rate.max(1e-9) * 100.0;
    report.line(
        "events/s, detectors off / on (means)",
        format!("{off_rate:.0} / {on_rate:.0}"),
    );
    report.line(
        "cost of the detectors",
        format!(
            "{cost:.1} %   (target <= {COST_TARGET_PERCENT} %: {})",
            verdict(cost <= COST_TARGET_PERCENT)
        ),
    );
    for (label, key, pick) in [
        ("VmRSS at the end, off / on (means)", "vm_rss_mb", 0),
        ("VmHWM (peak), off / on (means)", "vm_hwm_mb", 1),
    ] {
        let m = |rs: &[&RunOut]| {
            mean(
                &rs.iter()
                    .filter_map(|r| r.rss_kb)
                    .map(|x| mb(if pick == 0 { x.0 } else { x.1 }))
                    .collect::<Vec<_>>(),
            )
        };
        let (a, b) = (m(&off), m(&on));
        report.line(label, format!("{a:.1} / {b:.1} MB"));
        report.set(key, json!({"off": r2(a), "on": r2(b)}));
    }
    report.set(
        "events_per_s",
        json!({"off": r2(off_rate), "on": r2(on_rate)}),
    );
    report.set("cost_percent", json!(r2(cost)));

    let mut latency = hist();
    for r in &on {
        let _ = latency.add(&r.latency);
    }
    let p99 = quantile_ms(&latency, 0.99);
    let target = format!(
        "target <= {LATENCY_TARGET_MS} ms: {}",
        verdict(p99.is_some_and(|p| p <= LATENCY_TARGET_MS))
    );
    report.latency(
        "detection_latency",
        "detection latency (201 -> finding)",
        &latency,
        &[("p99", &target)],
    );
    let sum = |f: fn(&RunOut) -> u64, rs: &[&RunOut]| rs.iter().map(|r| f(r)).sum::<u64>();
    let (bursts, missing, before) = (
        sum(|r| r.bursts, &on),
        sum(|r| r.missing, &on),
        sum(|r| r.before_ack, &on),
    );
    report.line(
        "bursts injected (detectors on)",
        format!(
            "{bursts}: {missing} without a finding within {} s, {before} seen before their 201",
            FINDING_DRAIN.as_secs()
        ),
    );
    report.set("bursts", json!(bursts));
    report.set("bursts_missing", json!(missing));
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for r in &on {
        for (k, n) in &r.kinds {
            *kinds.entry(k.clone()).or_default() += n;
        }
    }
    let text: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    report.line("findings on the stream (on)", text.join(", "));
    report.line(
        "findings on the stream (off)",
        off.iter()
            .map(|r| r.kinds.values().sum::<u64>())
            .sum::<u64>(),
    );
    report.set("findings_on", json!(kinds));
    if let Some(last) = on.last() {
        let text: Vec<String> = last
            .tracked
            .iter()
            .map(|(w, n)| format!("{w} {n}"))
            .collect();
        report.line("detectors' tracked (last on run)", text.join(", "));
    }
    let stalls: u64 = runs.iter().map(|r| r.stalls).sum();
    report.line("generator stalls", stalls);
    let mut tally = Tally::default();
    let mut notes = DaemonNotes::default();
    for r in runs {
        tally.merge(r.tally.clone());
        notes.warning_count += r.notes.warning_count;
        for w in &r.notes.warnings {
            if notes.warnings.len() < 10 {
                notes.warnings.push(w.clone());
            }
        }
    }
    report.tally(&tally);
    report.daemon_notes(&notes);
}
