//! `/metrics`: the Prometheus text exposition.

use super::gate::AUTH_FAILURES;
use super::{full, App, Resp};
use crate::metrics::family;
use crate::sync::Recover;
use hyper::{Response, StatusCode};
use std::collections::HashMap;

/// (route, status) → (requests, total µs).
pub(super) type RequestCounts = HashMap<(&'static str, u16), (u64, u64)>;

pub(super) fn metrics(app: &App) -> Resp {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let log = app.engine.log();
    let m = log.metrics();
    let idx = app.engine.indexes();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "stele_events_appended_total",
        "counter",
        "Events made durable.",
        m.appended.load(Relaxed).to_string(),
    );
    metric(
        "stele_log_bytes_total",
        "counter",
        "Bytes made durable.",
        m.bytes.load(Relaxed).to_string(),
    );
    metric(
        "stele_fsyncs_total",
        "counter",
        "Group commits (write + fdatasync).",
        m.fsyncs.load(Relaxed).to_string(),
    );
    metric(
        "stele_fsync_seconds_total",
        "counter",
        "Time spent in group-commit writes and fdatasync.",
        format!("{:.6}", m.fsync_micros.load(Relaxed) as f64 / 1e6),
    );
    metric(
        "stele_write_errors_total",
        "counter",
        "Writes rolled back after an error.",
        m.write_errors.load(Relaxed).to_string(),
    );
    metric(
        "stele_log_last_seq",
        "gauge",
        "Seq of the last durable event.",
        log.last_seq().to_string(),
    );
    metric(
        "stele_index_seq",
        "gauge",
        "Seq up to which queries see the log.",
        idx.indexed_seq().to_string(),
    );
    metric(
        "stele_index_lag_events",
        "gauge",
        "Events durable but not yet searchable.",
        log.last_seq().saturating_sub(idx.indexed_seq()).to_string(),
    );
    metric(
        "stele_log_poisoned",
        "gauge",
        "1 after a failed fsync (restart needed).",
        u8::from(log.poisoned().is_some()).to_string(),
    );
    let failures = log.read_failures();
    metric(
        "stele_segments_unreadable",
        "gauge",
        "Segments whose reads failed with an I/O error (see stele_segment_read_errors_total).",
        failures.len().to_string(),
    );
    metric(
        "stele_ingest_events_total",
        "counter",
        "Events accepted over HTTP (201).",
        app.stats.ingested.load(Relaxed).to_string(),
    );
    metric(
        "stele_streams_open",
        "gauge",
        "Live streams (/v1/stream) open.",
        app.stats.streams_open.load(Relaxed).to_string(),
    );
    metric(
        "stele_exports_open",
        "gauge",
        "Exports being streamed.",
        app.stats.exports_open.load(Relaxed).to_string(),
    );
    metric(
        "stele_connections_open",
        "gauge",
        "HTTP connections open.",
        (app.limits().connections_max - app.lifecycle.connections.available_permits()).to_string(),
    );
    metric(
        "stele_connections_write_stalled_total",
        "counter",
        "Connections closed because the client read nothing for write_stall_timeout_secs.",
        app.stats.write_stalls.load(Relaxed).to_string(),
    );
    metric(
        "stele_log_first_seq",
        "gauge",
        "Seq of the oldest event kept (retention drops before it).",
        log.first_seq().to_string(),
    );
    metric(
        "stele_retention_dropped_days_total",
        "counter",
        "Day partitions dropped by retention since start.",
        app.retainer.dropped_days.load(Relaxed).to_string(),
    );
    metric(
        "stele_retention_dropped_events_total",
        "counter",
        "Events dropped by retention since start.",
        app.retainer.dropped_events.load(Relaxed).to_string(),
    );
    let rec = log.recovery_report();
    metric(
        "stele_recovery_torn_bytes_truncated",
        "gauge",
        "Bytes of torn tail the last start truncated from the active segment.",
        rec.torn_bytes_truncated.to_string(),
    );
    metric(
        "stele_recovery_quarantined_files",
        "gauge",
        "Files the last start moved to quarantine/ (salvage mode).",
        rec.quarantined.len().to_string(),
    );
    metric(
        "stele_digests_signed_total",
        "counter",
        "Signed daily digests written since start.",
        app.seal.digests.written.load(Relaxed).to_string(),
    );
    metric(
        "stele_digest_failures_total",
        "counter",
        "Digester runs that failed since start (see the log).",
        app.seal.digests.failures.load(Relaxed).to_string(),
    );
    let cp = app.seal.checkpoints.as_deref();
    let counter =
        |f: fn(&crate::seal::checkpoint::CheckpointStats) -> u64| cp.map_or(0, f).to_string();
    metric(
        "stele_checkpoints_signed_total",
        "counter",
        "Checkpoints of the chain head signed and written since start.",
        counter(|c| c.written.load(Relaxed)),
    );
    metric(
        "stele_checkpoint_failures_total",
        "counter",
        "Checkpoints that could not be written to DATA_DIR/checkpoint.json.",
        counter(|c| c.failures.load(Relaxed)),
    );
    metric(
        "stele_checkpoint_witness_failures_total",
        "counter",
        "Checkpoints a witness did not take.",
        counter(|c| c.witness_failures.load(Relaxed)),
    );
    metric(
        "stele_checkpoint_seq",
        "gauge",
        "Seq of the newest signed checkpoint (0: none yet).",
        cp.and_then(|c| c.latest()).map_or(0, |c| c.seq).to_string(),
    );
    metric(
        "stele_digest_unsigned_days",
        "gauge",
        "Closed days after the newest digest that cannot be signed (see /readyz).",
        app.seal.status.unsigned().len().to_string(),
    );
    metric(
        "stele_segments_damaged",
        "gauge",
        "Segments found changed or damaged (scrub, start-up verification); reads of them fail.",
        log.damaged_segments().len().to_string(),
    );
    let scrub = &app.seal.status.scrub;
    metric(
        "stele_scrub_passes_total",
        "counter",
        "Whole scrub passes over the sealed segments since start.",
        scrub.passes.load(Relaxed).to_string(),
    );
    metric(
        "stele_scrub_bytes_total",
        "counter",
        "Bytes the scrubber read since start.",
        scrub.bytes.load(Relaxed).to_string(),
    );
    metric(
        "stele_scrub_running",
        "gauge",
        "1 while a scrub pass runs.",
        u8::from(scrub.running.load(Relaxed)).to_string(),
    );
    metric(
        "stele_legal_holds",
        "gauge",
        "Legal holds in force (configuration and HTTP).",
        app.retainer.holds().len().to_string(),
    );
    metric(
        "stele_api_keys",
        "gauge",
        "API keys configured (0: no authentication, loopback only).",
        app.keyring().len().to_string(),
    );
    metric(
        "stele_auth_forbidden_total",
        "counter",
        "Requests refused with 403 (role missing, or another tenant's events).",
        app.stats.forbidden.load(Relaxed).to_string(),
    );
    metric(
        "stele_rate_limited_total",
        "counter",
        "Requests refused with 429 (a key's rate limit or stream limit).",
        app.stats.rate_limited.load(Relaxed).to_string(),
    );
    metric(
        "stele_audit_events_total",
        "counter",
        "audit_access events recorded since start.",
        app.auditor.stats.recorded.load(Relaxed).to_string(),
    );
    metric(
        "stele_audit_failures_total",
        "counter",
        "audit_access events that could not be recorded (see the log).",
        app.auditor.stats.failed.load(Relaxed).to_string(),
    );
    if let Some(free) = crate::datadir::free_bytes(&app.data_dir) {
        metric(
            "stele_disk_free_bytes",
            "gauge",
            "Bytes available to Stele on the data directory's filesystem.",
            free.to_string(),
        );
    }
    let _ = writeln!(
        out,
        "# HELP stele_auth_failures_total Requests refused with 401, by reason.\n\
         # TYPE stele_auth_failures_total counter"
    );
    for (e, n) in AUTH_FAILURES.iter().zip(&app.stats.auth_failures) {
        let _ = writeln!(
            out,
            "stele_auth_failures_total{{reason=\"{}\"}} {}",
            e.reason(),
            n.load(Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP stele_segment_read_errors_total Reads of a segment that failed with an I/O error.\n\
         # TYPE stele_segment_read_errors_total counter"
    );
    for (segment, n, _) in &failures {
        let _ = writeln!(
            out,
            "stele_segment_read_errors_total{{segment=\"{segment}\"}} {n}"
        );
    }
    let segs = log.segments();
    let (sealed, active): (Vec<_>, Vec<_>) = segs.iter().partition(|s| s.sealed);
    let _ = writeln!(
        out,
        "# HELP stele_segments Segment files by state.\n# TYPE stele_segments gauge\n\
         stele_segments{{state=\"sealed\"}} {}\nstele_segments{{state=\"active\"}} {}",
        sealed.len(),
        active.len()
    );
    let _ = writeln!(
        out,
        "# HELP stele_segment_bytes Durable segment bytes by state.\n# TYPE stele_segment_bytes gauge\n\
         stele_segment_bytes{{state=\"sealed\"}} {}\nstele_segment_bytes{{state=\"active\"}} {}",
        sealed.iter().map(|s| s.bytes).sum::<u64>(),
        active.iter().map(|s| s.bytes).sum::<u64>()
    );
    family(
        &mut out,
        "stele_fsync_seconds",
        "histogram",
        "Group-commit durations (one write + one fdatasync).",
    );
    m.fsync_seconds.render(&mut out, "stele_fsync_seconds", "");
    family(
        &mut out,
        "stele_ingest_append_seconds",
        "histogram",
        "Time an ingest request waits for its events to become durable.",
    );
    app.stats
        .append_seconds
        .render(&mut out, "stele_ingest_append_seconds", "");
    family(
        &mut out,
        "stele_http_request_duration_seconds",
        "histogram",
        "Time from a request's head to its response head, by route.",
    );
    for r in super::routes::names() {
        app.stats.latency[r].render(
            &mut out,
            "stele_http_request_duration_seconds",
            &format!("route=\"{r}\""),
        );
    }
    let _ = writeln!(out, "# HELP stele_http_requests_total HTTP requests by route and status.\n# TYPE stele_http_requests_total counter");
    let reqs = app.stats.requests.exclusive().clone();
    let mut keys: Vec<_> = reqs.keys().copied().collect();
    keys.sort();
    for k in &keys {
        let _ = writeln!(
            out,
            "stele_http_requests_total{{route=\"{}\",status=\"{}\"}} {}",
            k.0, k.1, reqs[k].0
        );
    }
    let _ = writeln!(out, "# HELP stele_http_request_seconds_total Time spent answering, by route and status.\n# TYPE stele_http_request_seconds_total counter");
    for k in &keys {
        let _ = writeln!(
            out,
            "stele_http_request_seconds_total{{route=\"{}\",status=\"{}\"}} {:.6}",
            k.0,
            k.1,
            reqs[k].1 as f64 / 1e6
        );
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; version=0.0.4")
        .body(full(out))
        .expect("valid response")
}
