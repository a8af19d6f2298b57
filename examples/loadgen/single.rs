//! Scenario `single`: many clients posting one JSON event per request.

use anyhow::Result;
use serde_json::json;

use crate::client::{hist, Timing};
use crate::daemon::Ctx;
use crate::gen::producer;
use crate::ingest::ingest_clients;
use crate::report::{generator_lines, quantile_ms, r2, size_text, verdict, Report};
use crate::{Opts, JSON};

pub async fn single(ctx: &Ctx, o: &Opts) -> Result<Report> {
    let clients = o.clients.unwrap_or(64);
    let mut report = Report::new(
        "single",
        format!(
            "{clients} clients each posting one JSON event ({}) per request, {:.1} s measured after {:.1} s warm-up",
            size_text(o.event_bytes), o.duration, o.warmup
        ),
        json!({"clients": clients, "event_bytes": o.event_bytes,
               "duration_s": o.duration, "warmup_s": o.warmup, "seed": o.seed}),
    );
    let (rx, gen) = producer(o.seed, o.event_bytes, 1, None, u64::MAX, 8192);
    let timing = Timing::start(o);
    let out = ingest_clients(ctx, clients, rx, timing, JSON, None).await;
    let made = gen.join().ok();
    ctx.check()?;
    let secs = timing.secs();
    let rate = out.requests as f64 / secs;
    let h = out.hist.unwrap_or_else(hist);
    let p99 = quantile_ms(&h, 0.99);
    report.line(
        "requests/s",
        format!(
            "{rate:.0} requests/s   (target >= 15000: {})",
            verdict(rate >= 15_000.0)
        ),
    );
    report.line("events acknowledged (measured)", out.events);
    report.line("requests answered (measured)", out.requests);
    let p99_target = format!(
        "target <= 10 ms: {}",
        verdict(p99.is_some_and(|v| v <= 10.0))
    );
    report.latency(
        "request_latency",
        "request latency",
        &h,
        &[("p99", &p99_target)],
    );
    report.set("requests_per_s", json!(r2(rate)));
    report.set("requests", json!(out.requests));
    report.set("events", json!(out.events));
    generator_lines(&mut report, out.stalls, made);
    report.tally(&out.tally);
    Ok(report)
}
