//! Scenario `batch`: NDJSON batches over a few connections: events/s, request
//! latency, how soon an acknowledged event is searchable, index lag at the end.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::client::{hist, record, wait_indexed, Timing};
use crate::daemon::Ctx;
use crate::gen::producer;
use crate::ingest::{ingest_clients, Markers};
use crate::report::{generator_lines, latency_json, quantile_ms, r2, size_text, verdict, Report};
use crate::{Opts, INDEX_WAIT, NDJSON, VISIBLE_TIMEOUT};

pub async fn batch(ctx: &Ctx, o: &Opts) -> Result<Report> {
    let clients = o.clients.unwrap_or(2);
    // With --events: post exactly that many, however long it takes (the measured
    // window then ends at the last acknowledgement); otherwise --duration.
    let window = match o.events {
        Some(n) => format!("{n} events"),
        None => format!("{:.1} s", o.duration),
    };
    let mut report = Report::new(
        "batch",
        format!(
            "{clients} clients posting NDJSON batches of {} events ({}), {window} measured after {:.1} s warm-up",
            o.batch, size_text(o.event_bytes), o.warmup
        ),
        json!({"clients": clients, "batch": o.batch, "event_bytes": o.event_bytes,
               "duration_s": o.duration, "events_total": o.events, "warmup_s": o.warmup,
               "seed": o.seed}),
    );
    let (rx, gen) = producer(
        o.seed,
        o.event_bytes,
        o.batch,
        o.events,
        u64::MAX,
        2 * clients + 4,
    );
    let mut timing = Timing::start(o);
    if o.events.is_some() {
        timing.end = timing.warm_end + Duration::from_secs(365 * 86_400);
    }
    let markers = Arc::new(Markers::new(&timing));
    let out = ingest_clients(ctx, clients, rx, timing, NDJSON, Some(markers)).await;
    let made = gen.join().ok();
    ctx.check()?;

    eprintln!("loadgen: batch: waiting for the index to catch up");
    let lag_zero = match out.last_ack {
        Some(last) => Some(
            wait_indexed(ctx, INDEX_WAIT)
                .await?
                .saturating_duration_since(last),
        ),
        None => None,
    };
    let mut visible = hist();
    let (mut probes, mut never) = (0u64, 0u64);
    let mut tally = out.tally;
    for p in out.probes {
        if let Ok((seen, t)) = p.await {
            probes += 1;
            tally.merge(t);
            match seen {
                Some(d) => record(&mut visible, d),
                None => never += 1,
            }
        }
    }
    ctx.check()?;

    let secs = match (o.events, out.last_ack) {
        (Some(_), Some(last)) => last
            .saturating_duration_since(timing.warm_end)
            .as_secs_f64(),
        _ => timing.secs(),
    };
    let rate = out.events as f64 / secs;
    report.line(
        "events/s sustained",
        format!(
            "{rate:.0} events/s   (target >= 60000: {})",
            verdict(rate >= 60_000.0)
        ),
    );
    report.line(
        "requests/s",
        format!("{:.1} requests/s", out.requests as f64 / secs),
    );
    report.line(
        "request bodies",
        format!("{:.1} MB/s", out.bytes as f64 / secs / 1e6),
    );
    report.line("events acknowledged (measured)", out.events);
    report.line("requests answered (measured)", out.requests);
    let h = out.hist.unwrap_or_else(hist);
    report.latency("request_latency", "request latency", &h, &[]);
    report.set("events_per_s", json!(r2(rate)));
    report.set("requests_per_s", json!(r2(out.requests as f64 / secs)));
    report.set("events", json!(out.events));
    report.set("requests", json!(out.requests));
    report.set("mb_per_s", json!(r2(out.bytes as f64 / secs / 1e6)));

    let max_ok = quantile_ms(&visible, 1.0).is_some_and(|m| m <= 2000.0) && never == 0;
    report.line(
        "searchable probes",
        format!(
            "{probes} ({never} not visible within {} s)",
            VISIBLE_TIMEOUT.as_secs()
        ),
    );
    for (q, name) in [(0.5, "p50"), (0.99, "p99"), (1.0, "max")] {
        let target = if name == "max" {
            format!("   (target <= 2000 ms: {})", verdict(max_ok))
        } else {
            String::new()
        };
        match quantile_ms(&visible, q) {
            Some(v) => report.line(
                &format!("searchable within {name}"),
                format!("{v:.2} ms{target}"),
            ),
            None => report.line(&format!("searchable within {name}"), "no samples"),
        }
    }
    report.set("searchable_within", latency_json(&visible));
    report.set("searchable_never", json!(never));
    match lag_zero {
        Some(d) => report.line(
            "index lag 0 after the last ack",
            format!("{:.2} ms", d.as_secs_f64() * 1e3),
        ),
        None => report.line("index lag 0 after the last ack", "no acknowledgement"),
    }
    report.set(
        "index_lag_zero_after_last_ack_ms",
        json!(lag_zero.map(|d| r2(d.as_secs_f64() * 1e3))),
    );
    generator_lines(&mut report, out.stalls, made);
    report.tally(&tally);
    Ok(report)
}
