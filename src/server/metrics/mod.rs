//! `/metrics`: the Prometheus text exposition (format 0.0.4).
//!
//! Owns the metric families the daemon exposes: their names, HELP texts,
//! types and labels, and where each value is read at scrape time (the log's,
//! the seal's, retention's and the server's own counters). The encoding is
//! `prometheus-client`'s: every scrape builds a registry whose one collector
//! ([`Scrape`]) reads the current values and hands them, as typed metrics,
//! to the crate's Prometheus text encoder. Counter families are named
//! without their `_total` suffix here; the encoder adds it.

use super::{full, App, Resp};
use crate::auth::AUTH_FAILURE_REASONS;
use crate::sync::Recover;
use hyper::{Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

mod indexes;

/// (route, status) → (requests, total µs).
pub(super) type RequestCounts = HashMap<(&'static str, u16), (u64, u64)>;

/// The `Content-Type` of the answer: the text format 0.0.4, as always
/// (`prometheus_text::CONTENT_TYPE` adds a charset parameter).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

pub(super) fn metrics(app: &Arc<App>) -> Resp {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(app.clone())));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).expect("encoding into a String cannot fail");
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", CONTENT_TYPE)
        .body(full(out))
        .expect("valid response")
}

/// The collector of one scrape: reads every value from the daemon's state
/// while the registry is encoded.
struct Scrape(Arc<App>);

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

/// Writes one family with one unlabelled sample of `metric`.
fn one(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A counter family of one sample; `name` without `_total`.
fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> fmt::Result {
    one(enc, name, help, &ConstCounter::new(value))
}

/// A gauge family of one sample.
fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    one(enc, name, help, &ConstGauge::new(value))
}

/// Microseconds as seconds.
fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let app = &*self.0;
        let enc = &mut enc;
        let log = app.engine.log();
        let m = log.metrics();
        let idx = app.engine.indexes();
        counter(
            enc,
            "stele_events_appended",
            "Events made durable.",
            m.appended.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_log_bytes",
            "Bytes made durable.",
            m.bytes.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_log_payload_bytes",
            "Payload bytes of the durable records (encoded events with their seq and time) before compression.",
            m.payload_bytes.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_log_stored_payload_bytes",
            "The same payloads as stored: compressed with their segment's dictionary, or as they are.",
            m.stored_payload_bytes.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_log_followed_from_tail_events",
            "Events the log's followers (the indexer, the activity feed, live streams, alerts) took from its tail in memory, without decoding.",
            m.followed_from_tail.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_log_followed_from_segments_events",
            "Events the log's followers read and decoded from the segments (the tail no longer held them).",
            m.followed_from_segments.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_log_read_from_tail_events",
            "Events read by seq (pages, lookups) copied from the log's tail in memory, without decoding.",
            m.read_from_tail.load(Relaxed),
        )?;
        gauge(
            enc,
            "stele_log_tail_bytes",
            "Encoded bytes of the newest durable events kept in memory for the followers.",
            log.tail_bytes() as u64,
        )?;
        gauge(
            enc,
            "stele_log_dictionary_trained",
            "1 when new segments are compressed: a dictionary was trained, or the log opened with one on disk; else 0.",
            u64::from(log.dictionary().is_some()),
        )?;
        counter(
            enc,
            "stele_fsyncs",
            "Group commits (write + fdatasync).",
            m.fsyncs.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_fsync_seconds",
            "Time spent in group-commit writes and fdatasync.",
            seconds(m.fsync_micros.load(Relaxed)),
        )?;
        counter(
            enc,
            "stele_write_errors",
            "Writes rolled back after an error.",
            m.write_errors.load(Relaxed),
        )?;
        gauge(
            enc,
            "stele_log_last_seq",
            "Seq of the last durable event.",
            log.last_seq(),
        )?;
        gauge(
            enc,
            "stele_index_seq",
            "Seq up to which queries see the log.",
            idx.indexed_seq(),
        )?;
        let lag = idx.lag(log, app.clock.now_micros());
        gauge(
            enc,
            "stele_index_lag_events",
            "Events durable but not yet searchable.",
            lag.events(),
        )?;
        if let Some(secs) = lag.seconds {
            gauge(
                enc,
                "stele_index_lag_seconds",
                "Age of the oldest durable event not yet searchable (0 when queries see the whole log).",
                secs,
            )?;
        }
        self.indexes(enc)?;
        gauge(
            enc,
            "stele_log_poisoned",
            "1 after a failed fsync (restart needed).",
            u32::from(log.poisoned().is_some()),
        )?;
        let failures = log.read_failures();
        gauge(
            enc,
            "stele_segments_unreadable",
            "Segments whose reads failed with an I/O error (see stele_segment_read_errors_total).",
            failures.len(),
        )?;
        counter(
            enc,
            "stele_ingest_events",
            "Events accepted over HTTP (201).",
            app.stats.ingested.load(Relaxed),
        )?;
        gauge(
            enc,
            "stele_streams_open",
            "Live streams (/v1/stream, /v1/stream/ws) open.",
            app.stats.streams_open.load(Relaxed),
        )?;
        gauge(
            enc,
            "stele_exports_open",
            "Exports being streamed.",
            app.stats.exports_open.load(Relaxed),
        )?;
        gauge(
            enc,
            "stele_connections_open",
            "HTTP connections open.",
            app.limits().connections_max - app.lifecycle.connections.available_permits(),
        )?;
        counter(
            enc,
            "stele_connections_write_stalled",
            "Connections closed because the client read nothing for write_stall_timeout_secs.",
            app.stats.write_stalls.load(Relaxed),
        )?;
        gauge(
            enc,
            "stele_log_first_seq",
            "Seq of the oldest event kept (retention drops before it).",
            log.first_seq(),
        )?;
        counter(
            enc,
            "stele_retention_dropped_days",
            "Day partitions dropped by retention since start.",
            app.retainer.dropped_days.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_retention_dropped_events",
            "Events dropped by retention since start.",
            app.retainer.dropped_events.load(Relaxed),
        )?;
        let rec = log.recovery_report();
        gauge(
            enc,
            "stele_recovery_torn_bytes_truncated",
            "Bytes of torn tail the last start truncated from the active segment.",
            rec.torn_bytes_truncated,
        )?;
        gauge(
            enc,
            "stele_recovery_quarantined_files",
            "Files the last start moved to quarantine/ (salvage mode).",
            rec.quarantined.len(),
        )?;
        self.seal(enc)?;
        self.archive(enc)?;
        let scrub = &app.seal.status.scrub;
        counter(
            enc,
            "stele_scrub_passes",
            "Whole scrub passes over the sealed segments since start.",
            scrub.passes.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_scrub_bytes",
            "Bytes the scrubber read since start.",
            scrub.bytes.load(Relaxed),
        )?;
        gauge(
            enc,
            "stele_scrub_running",
            "1 while a scrub pass runs.",
            u32::from(scrub.running.load(Relaxed)),
        )?;
        gauge(
            enc,
            "stele_legal_holds",
            "Legal holds in force (configuration and HTTP).",
            app.retainer.holds().len(),
        )?;
        gauge(
            enc,
            "stele_api_keys",
            "API keys configured (0: no authentication, loopback only).",
            app.keyring().len(),
        )?;
        counter(
            enc,
            "stele_auth_forbidden",
            "Requests refused with 403 (role missing, or another tenant's events).",
            app.stats.forbidden.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_rate_limited",
            "Requests refused with 429 (a key's rate limit or stream limit).",
            app.stats.rate_limited.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_audit_events",
            "audit_access events recorded since start.",
            app.auditor.stats.recorded.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_audit_failures",
            "audit_access events that could not be recorded (see the log).",
            app.auditor.stats.failed.load(Relaxed),
        )?;
        if let Some(free) = crate::datadir::free_bytes(&app.data_dir) {
            gauge(
                enc,
                "stele_disk_free_bytes",
                "Bytes available to Stele on the data directory's filesystem.",
                free,
            )?;
        }
        let mut f = enc.encode_descriptor(
            "stele_auth_failures",
            "Requests refused with 401, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (e, n) in AUTH_FAILURE_REASONS.iter().zip(&app.stats.auth_failures) {
            ConstCounter::new(n.load(Relaxed)).encode(f.encode_family(&[("reason", *e)])?)?;
        }
        let mut f = enc.encode_descriptor(
            "stele_segment_read_errors",
            "Reads of a segment that failed with an I/O error.",
            None,
            MetricType::Counter,
        )?;
        for (segment, n, _) in &failures {
            ConstCounter::new(*n).encode(f.encode_family(&[("segment", segment.as_str())])?)?;
        }
        self.alerts(enc)?;
        self.processes(enc)?;
        self.detectors(enc)?;
        self.segments(enc)?;
        self.latency(enc)?;
        self.requests(enc)
    }
}

impl Scrape {
    /// Alerts: notifications fired, delivery attempts, the backlog.
    fn alerts(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let app = &*self.0;
        let stats = &app.alerts.stats;
        gauge(
            enc,
            "stele_alert_rules",
            "Alert rules in force.",
            stats.rules.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_alerts_fired",
            "Alert notifications fired since start (each delivered at least once).",
            stats.fired.load(Relaxed),
        )?;
        let mut f = enc.encode_descriptor(
            "stele_alert_deliveries",
            "Alert delivery attempts by result (failed attempts are retried; dropped: webhook removed by a reload).",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("delivered", &stats.delivered),
            ("failed", &stats.failed),
            ("dropped", &stats.dropped),
        ] {
            ConstCounter::new(n.load(Relaxed)).encode(f.encode_family(&[("result", result)])?)?;
        }
        gauge(
            enc,
            "stele_alert_backlog_events",
            "Events stored after the alert position (not yet evaluated or delivered).",
            stats.backlog(app.engine.log()),
        )?;
        gauge(
            enc,
            "stele_alert_delivery_failing",
            "1 while an alert notification waits to be retried after a failed attempt.",
            u64::from(stats.failing.load(Relaxed)),
        )
    }

    /// The run trackers (`crate::intel`): what they hold and drop, and the
    /// activity feed's progress.
    fn processes(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        use crate::intel::runs::Kind;
        let p = &self.0.processes;
        let kinds = [("process", Kind::Process), ("batch", Kind::Batch)];
        let read: Vec<(&str, [u64; 4])> = kinds
            .iter()
            .map(|(label, k)| {
                let t = p.tracker(*k);
                let v = [t.len(), t.approx_bytes(), 0, 0].map(|x| x as u64);
                (*label, [v[0], v[1], t.evicted(), t.expired()])
            })
            .collect();
        let families = [
            (
                "stele_intel_tracked",
                "Runs (kind=process) and batch operations (kind=batch) tracked.",
                MetricType::Gauge,
            ),
            (
                "stele_intel_tracked_bytes",
                "Estimated memory the tracked runs hold, by kind.",
                MetricType::Gauge,
            ),
            (
                "stele_intel_evicted",
                "Runs dropped by runs_max or batches_max, oldest finished first, by kind.",
                MetricType::Counter,
            ),
            (
                "stele_intel_expired",
                "Runs dropped because their last event is older than the horizon, by kind.",
                MetricType::Counter,
            ),
        ];
        for (i, (name, help, ty)) in families.into_iter().enumerate() {
            let mut f = enc.encode_descriptor(name, help, None, ty)?;
            for (label, v) in &read {
                let labels = [("kind", *label)];
                if ty == MetricType::Gauge {
                    ConstGauge::new(v[i]).encode(f.encode_family(&labels)?)?;
                } else {
                    ConstCounter::new(v[i]).encode(f.encode_family(&labels)?)?;
                }
            }
        }
        gauge(
            enc,
            "stele_intel_feed_seq",
            "Seq up to which the activity feed has handed events to the run trackers.",
            p.feed.seq.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_intel_feed_read_errors",
            "Log reads of the activity feed that failed (retried).",
            p.feed.read_errors.load(Relaxed),
        )
    }

    /// The archive's uploader (zeros without `[archive]`).
    fn archive(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let a = self.0.archive.as_ref().map(|a| a.snapshot());
        let get = |f: fn(&crate::archive::Snapshot) -> u64| a.as_ref().map_or(0, f);
        gauge(
            enc,
            "stele_archive_enabled",
            "1 when [archive] is configured.",
            u32::from(a.is_some()),
        )?;
        gauge(
            enc,
            "stele_archive_backlog_objects",
            "Objects waiting to be uploaded to the archive.",
            get(|s| s.backlog_objects),
        )?;
        gauge(
            enc,
            "stele_archive_backlog_bytes",
            "Bytes waiting to be uploaded to the archive (a Parquet file, built when uploaded, counts 0).",
            get(|s| s.backlog_bytes),
        )?;
        counter(
            enc,
            "stele_archive_uploads",
            "Objects uploaded to the archive and confirmed since start.",
            get(|s| s.uploads),
        )?;
        counter(
            enc,
            "stele_archive_upload_bytes",
            "Bytes uploaded to the archive and confirmed since start.",
            get(|s| s.upload_bytes),
        )?;
        counter(
            enc,
            "stele_archive_failures",
            "Archive passes that failed since start (see /readyz archive.last_error).",
            get(|s| s.failures),
        )?;
        counter(
            enc,
            "stele_archive_deletions",
            "Archived objects deleted because retention dropped their day.",
            get(|s| s.deletions),
        )?;
        gauge(
            enc,
            "stele_archive_problems",
            "Archive problems that need an operator (see /readyz archive.problems).",
            get(|s| s.problems.len() as u64),
        )?;
        gauge(
            enc,
            "stele_archive_evicted_segments",
            "Local segments evicted by the local tier (their records read back from the archive).",
            get(|s| s.evicted_segments),
        )?;
        counter(
            enc,
            "stele_archive_released_bytes",
            "Disk released by evicting segments since start.",
            get(|s| s.released_bytes),
        )?;
        counter(
            enc,
            "stele_archive_fetches",
            "Evicted segments fetched back from the archive since start.",
            get(|s| s.fetches),
        )?;
        counter(
            enc,
            "stele_archive_fetch_bytes",
            "Bytes of evicted segments fetched back from the archive since start.",
            get(|s| s.fetch_bytes),
        )?;
        counter(
            enc,
            "stele_archive_cache_hits",
            "Reads of evicted segments answered from DATA_DIR/archive-cache/.",
            get(|s| s.cache_hits),
        )?;
        gauge(
            enc,
            "stele_archive_cache_bytes",
            "Bytes in DATA_DIR/archive-cache/ after the last fetch.",
            get(|s| s.cache_bytes),
        )?;
        let newest = a
            .as_ref()
            .and_then(|s| s.newest_day.as_deref()?.parse::<chrono::NaiveDate>().ok())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, |t| t.and_utc().timestamp());
        gauge(
            enc,
            "stele_archive_newest_day_timestamp_seconds",
            "Start (UTC) of the newest day wholly in the archive; 0: none yet.",
            newest,
        )
    }

    /// Digests and checkpoints, and what the seal found unsigned or damaged.
    fn seal(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let app = &*self.0;
        counter(
            enc,
            "stele_digests_signed",
            "Signed daily digests written since start.",
            app.seal.digests.written.load(Relaxed),
        )?;
        counter(
            enc,
            "stele_digest_failures",
            "Digester runs that failed since start (see the log).",
            app.seal.digests.failures.load(Relaxed),
        )?;
        let cp = app.seal.checkpoints.as_deref();
        let stat = |f: fn(&crate::seal::checkpoint::CheckpointStats) -> u64| cp.map_or(0, f);
        counter(
            enc,
            "stele_checkpoints_signed",
            "Checkpoints of the chain head signed and written since start.",
            stat(|c| c.written.load(Relaxed)),
        )?;
        counter(
            enc,
            "stele_checkpoint_failures",
            "Checkpoints that could not be written to DATA_DIR/checkpoint.json.",
            stat(|c| c.failures.load(Relaxed)),
        )?;
        counter(
            enc,
            "stele_checkpoint_witness_failures",
            "Checkpoints a witness did not take.",
            stat(|c| c.witness_failures.load(Relaxed)),
        )?;
        gauge(
            enc,
            "stele_checkpoint_seq",
            "Seq of the newest signed checkpoint (0: none yet).",
            cp.and_then(|c| c.latest()).map_or(0, |c| c.seq),
        )?;
        gauge(
            enc,
            "stele_digest_unsigned_days",
            "Closed days after the newest digest that cannot be signed (see /readyz).",
            app.seal.status.unsigned().len(),
        )?;
        gauge(
            enc,
            "stele_segments_damaged",
            "Segments found changed or damaged (scrub, start-up verification); reads of them fail.",
            app.engine.log().damaged_segments().len(),
        )
    }

    /// Segment files and their bytes, sealed and active.
    fn segments(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let segs = self.0.engine.log().segments();
        let (sealed, active): (Vec<_>, Vec<_>) = segs.iter().partition(|s| s.sealed);
        let mut f = enc.encode_descriptor(
            "stele_segments",
            "Segment files by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [("sealed", sealed.len()), ("active", active.len())] {
            ConstGauge::new(n).encode(f.encode_family(&[("state", state)])?)?;
        }
        let mut f = enc.encode_descriptor(
            "stele_segment_bytes",
            "Durable segment bytes by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, of) in [("sealed", &sealed), ("active", &active)] {
            let bytes: u64 = of.iter().map(|s| s.bytes).sum();
            ConstGauge::new(bytes).encode(f.encode_family(&[("state", state)])?)?;
        }
        Ok(())
    }

    /// The detectors (`crate::intel::watch`): findings appended by kind,
    /// failures, the detection latency and what their memory holds. Zeros
    /// with `[detect] enabled = false`.
    fn detectors(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        use crate::intel::detect::KINDS;
        let w = self.0.watch.as_deref();
        let mut f = enc.encode_descriptor(
            "stele_findings",
            "Findings the detectors appended to the log since start, by kind.",
            None,
            MetricType::Counter,
        )?;
        for (i, kind) in KINDS.iter().enumerate() {
            let n = w.map_or(0, |w| w.stats.raised[i].load(Relaxed));
            ConstCounter::new(n).encode(f.encode_family(&[("kind", *kind)])?)?;
        }
        counter(
            enc,
            "stele_findings_failed",
            "Findings that could not be appended (see the log).",
            w.map_or(0, |w| w.stats.failed.load(Relaxed)),
        )?;
        let held = w.map_or([0; 4], |w| w.tracked());
        let mut f = enc.encode_descriptor(
            "stele_detector_tracked",
            "What the detectors' bounded memory holds: users, ips, scopes (error-rate spikes) and findings (deduplication).",
            None,
            MetricType::Gauge,
        )?;
        for (what, n) in ["users", "ips", "scopes", "findings"].iter().zip(held) {
            ConstGauge::new(n as u64).encode(f.encode_family(&[("what", *what)])?)?;
        }
        let empty = crate::metrics::Histogram::default();
        one(
            enc,
            "stele_detection_latency_seconds",
            "From an event's arrival to the append of the finding it raised.",
            w.map_or(&empty, |w| &w.stats.latency),
        )
    }

    /// The latency histograms: group commits, ingest appends, requests by
    /// route.
    fn latency(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let app = &*self.0;
        one(
            enc,
            "stele_fsync_seconds",
            "Group-commit durations (one write + one fdatasync).",
            &app.engine.log().metrics().fsync_seconds,
        )?;
        one(
            enc,
            "stele_ingest_append_seconds",
            "Time an ingest request waits for its events to become durable.",
            &app.stats.append_seconds,
        )?;
        let mut f = enc.encode_descriptor(
            "stele_http_request_duration_seconds",
            "Time from a request's head to its response head, by route.",
            None,
            MetricType::Histogram,
        )?;
        for r in super::routes::names() {
            app.stats.latency[r].encode(f.encode_family(&[("route", r)])?)?;
        }
        Ok(())
    }

    /// Requests and the time spent answering them, by route and status.
    fn requests(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let reqs = self.0.stats.requests.exclusive().clone();
        let mut keys: Vec<_> = reqs.keys().copied().collect();
        keys.sort();
        let labels = |k: &(&'static str, u16)| ([("route", k.0)], [("status", k.1)]);
        let mut f = enc.encode_descriptor(
            "stele_http_requests",
            "HTTP requests by route and status.",
            None,
            MetricType::Counter,
        )?;
        for k in &keys {
            ConstCounter::new(reqs[k].0).encode(f.encode_family(&labels(k))?)?;
        }
        let mut f = enc.encode_descriptor(
            "stele_http_request_seconds",
            "Time spent answering, by route and status.",
            None,
            MetricType::Counter,
        )?;
        for k in &keys {
            ConstCounter::new(seconds(reqs[k].1)).encode(f.encode_family(&labels(k))?)?;
        }
        Ok(())
    }
}
