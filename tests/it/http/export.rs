//! Exports: every match as NDJSON, RFC 4180 CSV or one JSON array, and the
//! log scan and the index selecting exactly the same events for every filter.

use super::*;

#[test]
fn export_streams_every_match_as_ndjson_or_rfc4180_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let mut batch = Vec::new();
    for i in 0..2500 {
        batch.push(json!({"action": "update", "actor": format!("a{i}"), "tenant": if i % 2 == 0 { "acme" } else { "globex" },
            "description": "quote \" comma , and\nnewline", "metadata": {"k": i}}));
    }
    for chunk in batch.chunks(1000) {
        assert_eq!(d.post(&Value::Array(chunk.to_vec())).0, 201);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // Exports read up to the indexed seq, which may trail the listing.
    while d.get("/readyz").2["state"]["lag_events"] != 0
        || d.get("/v1/events?limit=1&order=desc&sort=seq").2["events"][0]["seq"] != 2500
    {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (head, body) = d.get_raw("/v1/export?format=ndjson&tenant=acme");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-disposition: attachment; filename=\"stele-export-"),
        "{head}"
    );
    let seqs: Vec<u64> = body
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=2500).step_by(2).collect::<Vec<_>>(),
        "chronological, every match once"
    );

    let (head, body) = d.get_raw("/v1/export?format=csv&tenant=globex");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/csv"),
        "{head}"
    );
    let mut lines = body.split("\r\n");
    assert!(lines
        .next()
        .unwrap()
        .starts_with("seq,received_at,id,timestamp,action,actor,"));
    assert!(
        body.contains(",\"quote \"\" comma , and\nnewline\","),
        "RFC 4180 quoting"
    );
    assert!(
        body.contains(",\"{\"\"k\"\":1}\""),
        "metadata as a JSON cell"
    );
    // 1250 records: a header, 1250 rows each ending in CRLF (the embedded
    // newline is a bare LF inside quotes).
    assert_eq!(body.matches("\r\n").count(), 1251);
    assert_eq!(d.get("/v1/export?format=xml").0, 400);
    assert_eq!(d.get("/v1/export?limit=5").0, 400);
}

/// Broad exports read the log and filter in memory; narrow and newest-first
/// ones go through the index. Both must select exactly the same events.
#[test]
fn export_by_log_scan_and_by_index_agree_on_every_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_without_detectors(tmp.path());
    let mut gen = stele::testkit::EventGen::new(42);
    let events: Vec<Value> = (0..3000).map(|_| gen.json()).collect();
    for chunk in events.chunks(1000) {
        let (st, _, r) = d.post(&Value::Array(chunk.to_vec()));
        assert_eq!(st, 201, "{r}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // Both paths read up to the indexed seq: wait until it is the last.
    while d.get("/readyz").2["state"]["lag_events"] != 0
        || d.get("/v1/events?limit=1&order=desc&sort=seq").2["events"][0]["seq"] != 3000
    {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pick = |field: &str| -> String {
        events
            .iter()
            .find_map(|e| e[field].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no event has {field}"))
    };
    let ts: Vec<&str> = events
        .iter()
        .filter_map(|e| e["timestamp"].as_str())
        .collect();
    let mid = ts[ts.len() / 2];
    let enc = |s: &str| s.replace('+', "%2B").replace(':', "%3A");
    let filters = vec![
        String::new(),
        format!("tenant={}", pick("tenant")),
        format!("action={}", pick("action")),
        format!("category={}", pick("category")),
        format!("source={}", pick("source")),
        format!("status={}", pick("status")),
        format!("severity={}", pick("severity")),
        "min_severity=info".to_string(),
        "min_severity=warning".to_string(),
        format!("entity_type={}", pick("entity_type")),
        format!("user_id={}", pick("user_id")),
        format!("ip={}", pick("ip")),
        format!("since={}", enc(mid)),
        format!("until={}", enc(mid)),
        format!("since={}&tenant={}", enc(ts[0]), pick("tenant")),
    ];
    let seqs = |path: &str| -> Vec<u64> {
        let (head, body) = d.get_raw(path);
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        body.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let mut broad = 0;
    for f in &filters {
        let asc = seqs(&format!("/v1/export?format=ndjson&sort=seq&{f}"));
        let mut desc = seqs(&format!("/v1/export?format=ndjson&sort=seq&order=desc&{f}"));
        desc.reverse();
        assert_eq!(asc, desc, "filter {f:?}: log scan and index disagree");
        assert!(
            asc.windows(2).all(|w| w[0] < w[1]),
            "filter {f:?}: not ascending"
        );
        if asc.len() * 8 >= 3000 {
            broad += 1;
        }
    }
    assert!(broad >= 5, "only {broad} filters exercised the log scan");
}

/// `format=json` is one array holding exactly what the NDJSON export of the
/// same filters holds (by the log scan and by the index), `[]` when nothing
/// matches, with its own type and file name.
#[test]
fn json_export_is_the_ndjson_export_as_one_array() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_without_detectors(tmp.path());
    let mut gen = stele::testkit::EventGen::new(7);
    let events: Vec<Value> = (0..2500).map(|_| gen.json()).collect();
    for chunk in events.chunks(1000) {
        let (st, _, r) = d.post(&Value::Array(chunk.to_vec()));
        assert_eq!(st, 201, "{r}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/readyz").2["state"]["lag_events"] != 0
        || d.get("/v1/events?limit=1&order=desc&sort=seq").2["events"][0]["seq"] != 2500
    {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    let tenant = events[0]["tenant"].as_str().unwrap().to_string();
    // By event time (through the index) and by seq (broad ones by the log
    // scan).
    for f in [
        String::new(),
        "sort=seq".to_string(),
        "order=desc".to_string(),
        format!("tenant={tenant}&sort=seq"),
        "min_severity=warning&order=desc".to_string(),
    ] {
        let (head, body) = d.get_raw(&format!("/v1/export?format=json&{f}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{f}: {head}");
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/json\r\n"),
            "{head}"
        );
        assert!(lower.contains(".json\""), "{head}");
        let array: Vec<Value> =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{f}: not a JSON array ({e})"));
        let (_, nd) = d.get_raw(&format!("/v1/export?format=ndjson&{f}"));
        let lines: Vec<Value> = nd
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!lines.is_empty(), "{f}: nothing exported");
        assert_eq!(array, lines, "{f}: JSON and NDJSON exports differ");
    }
    let (head, body) = d.get_raw("/v1/export?format=json&tenant=nobody-at-all");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "[]");
}
