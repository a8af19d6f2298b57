//! `/metrics`: the exposition's shape (every family's name, HELP, TYPE and
//! series, in order) against the checked-in `metrics_families.txt`, and the
//! values known requests must leave behind.
//!
//! Prometheus scrapers, dashboards and alerts depend on the names, labels
//! and types: a change to any of them must show up here as a diff of the
//! expected file, never slip through.

use crate::support::daemon::Daemon;
use crate::support::http::header;
use serde_json::json;

/// The expected shape: HELP and TYPE lines verbatim, sample lines without
/// their value.
const FAMILIES: &str = include_str!("metrics_families.txt");

/// Every line of `text`, sample lines cut before their value.
fn shape(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('#') {
            out.push_str(line);
        } else {
            let (series, _) = line.rsplit_once(' ').expect("a sample line has a value");
            out.push_str(series);
        }
        out.push('\n');
    }
    out
}

/// The value of the sample `series` (name and labels, as exposed).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

/// Known requests against a fresh daemon: 3 events accepted, 1 refused as
/// an id conflict, 1 list, 1 scrape before the one checked.
fn scrape_after_known_requests() -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path());
    for i in 1..=3 {
        let (st, _, r) = d.post(&json!({"id": format!("m-{i}"), "action": "a", "actor": "b"}));
        assert_eq!(st, 201, "{r}");
    }
    let (st, _, r) = d.post(&json!({"id": "m-1", "action": "other", "actor": "b"}));
    assert_eq!(st, 409, "{r}");
    assert_eq!(d.get("/v1/events?limit=1").0, 200);
    let _ = d.get_raw("/metrics");
    let (head, text) = d.get_raw("/metrics");
    if let Some(path) = std::env::var_os("STELE_METRICS_DUMP") {
        std::fs::write(path, &text).unwrap();
    }
    (head, text)
}

#[test]
fn metrics_exposition_keeps_every_family_and_series() {
    let (head, text) = scrape_after_known_requests();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/plain; version=0.0.4")
    );
    let got = shape(&text);
    // After a deliberate change: STELE_METRICS_SHAPE_WRITE=1 rewrites the file.
    if std::env::var_os("STELE_METRICS_SHAPE_WRITE").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/metrics_families.txt");
        std::fs::write(path, &got).unwrap();
        return;
    }
    if got != FAMILIES {
        let diff: Vec<String> = diff_lines(FAMILIES, &got);
        panic!(
            "the /metrics shape changed (- expected, + got):\n{}\n\nfull exposition:\n{text}",
            diff.join("\n")
        );
    }
}

#[test]
fn metrics_values_after_known_requests() {
    let (_, text) = scrape_after_known_requests();
    for (series, want) in [
        ("stele_events_appended_total", 3.0),
        ("stele_ingest_events_total", 3.0),
        ("stele_log_last_seq", 3.0),
        ("stele_log_first_seq", 1.0),
        ("stele_write_errors_total", 0.0),
        ("stele_log_poisoned", 0.0),
        ("stele_segments_unreadable", 0.0),
        ("stele_streams_open", 0.0),
        ("stele_exports_open", 0.0),
        ("stele_retention_dropped_days_total", 0.0),
        ("stele_api_keys", 0.0),
        ("stele_legal_holds", 0.0),
        ("stele_checkpoint_seq", 0.0),
        ("stele_auth_forbidden_total", 0.0),
        ("stele_rate_limited_total", 0.0),
        ("stele_auth_failures_total{reason=\"missing\"}", 0.0),
        ("stele_segments{state=\"sealed\"}", 0.0),
        ("stele_segments{state=\"active\"}", 1.0),
        ("stele_segment_bytes{state=\"sealed\"}", 0.0),
        ("stele_ingest_append_seconds_count", 3.0),
        ("stele_ingest_append_seconds_bucket{le=\"+Inf\"}", 3.0),
        (
            "stele_http_request_duration_seconds_bucket{route=\"ingest\",le=\"+Inf\"}",
            4.0,
        ),
        (
            "stele_http_request_duration_seconds_count{route=\"ingest\"}",
            4.0,
        ),
        (
            "stele_http_request_duration_seconds_count{route=\"list\"}",
            1.0,
        ),
        (
            "stele_http_request_duration_seconds_count{route=\"metrics\"}",
            1.0,
        ),
        (
            "stele_http_request_duration_seconds_count{route=\"export\"}",
            0.0,
        ),
        (
            "stele_http_requests_total{route=\"ingest\",status=\"201\"}",
            3.0,
        ),
        (
            "stele_http_requests_total{route=\"ingest\",status=\"409\"}",
            1.0,
        ),
        (
            "stele_http_requests_total{route=\"list\",status=\"200\"}",
            1.0,
        ),
        (
            "stele_http_requests_total{route=\"metrics\",status=\"200\"}",
            1.0,
        ),
    ] {
        assert_eq!(value(&text, series), want, "{series} in\n{text}");
    }
    assert!(value(&text, "stele_log_bytes_total") > 0.0, "{text}");
    assert!(value(&text, "stele_disk_free_bytes") > 0.0, "{text}");
    let fsyncs = value(&text, "stele_fsyncs_total");
    assert!((1.0..=3.0).contains(&fsyncs), "{text}");
    assert_eq!(value(&text, "stele_fsync_seconds_count"), fsyncs, "{text}");
    assert!(value(&text, "stele_fsync_seconds_total") > 0.0, "{text}");
    assert!(value(&text, "stele_fsync_seconds_sum") > 0.0, "{text}");
    assert!(
        value(
            &text,
            "stele_http_request_seconds_total{route=\"ingest\",status=\"201\"}"
        ) > 0.0,
        "{text}"
    );
    // Buckets are cumulative: never decreasing, and +Inf is the count.
    let mut last = 0.0;
    for l in text
        .lines()
        .filter(|l| l.starts_with("stele_http_request_duration_seconds_bucket{route=\"ingest\""))
    {
        let v: f64 = l.rsplit_once(' ').unwrap().1.parse().unwrap();
        assert!(v >= last, "{l} after {last}");
        last = v;
    }
    assert_eq!(last, 4.0, "{text}");
}

/// A line diff good enough to read: lines only in `want` (-) and only in
/// `got` (+), in order.
fn diff_lines(want: &str, got: &str) -> Vec<String> {
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut out: Vec<String> = w
        .iter()
        .filter(|l| !g.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        g.iter()
            .filter(|l| !w.contains(l))
            .map(|l| format!("+ {l}")),
    );
    if out.is_empty() {
        out.push("(same lines, different order or count)".into());
    }
    out
}
