//! An export of 100,000 events as NDJSON and as RFC 4180 CSV: every event,
//! in order, with the export's content type and file name.

use super::*;

const EXPORT_EVENTS: usize = 100_000;

fn export_event(i: usize) -> Value {
    const ACTIONS: [&str; 5] = ["login", "update", "delete", "export", "view"];
    const SEVERITIES: [&str; 6] = ["debug", "info", "notice", "warning", "error", "critical"];
    let secs = 1_795_400_000 + i as i64; // 2026-11-23, one event a second
    let ts = chrono_free_rfc3339(secs);
    let mut v = json!({
        "id": format!("exp-{i:06}"),
        "timestamp": ts,
        "action": ACTIONS[i % 5],
        "actor": format!("user-{}", i % 331),
        "user_id": format!("u-{}", i % 97),
        "tenant": format!("t{}", i % 10),
        "severity": SEVERITIES[i % 6],
        "metadata": {"n": i},
    });
    if i % 7 == 0 {
        v["description"] = json!("quote \" comma , and\nnewline\r\nand CRLF");
    }
    v
}

/// RFC 3339 for a unix time in 2026 (the test needs no date library).
fn chrono_free_rfc3339(secs: i64) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// RFC 4180 records: fields may be quoted (with `""` for a quote) and then
/// hold commas, CR and LF; every record ends with CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(ch) = chars.next() {
        if quoted {
            if ch == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(ch);
            }
            continue;
        }
        match ch {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "a bare CR outside quotes");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                at_field_start = true;
            }
            '\n' => panic!("a bare LF outside quotes after {} records", records.len()),
            '"' => panic!("a quote inside an unquoted field: {field}"),
            c => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    assert!(!quoted, "the CSV ends inside a quoted field");
    assert!(
        record.is_empty() && field.is_empty(),
        "the last CSV record does not end with CRLF"
    );
    records
}

/// `attachment; filename="stele-export-YYYYMMDDTHHMMSSZ.<ext>"`.
fn assert_export_headers(r: &Reply, ctype: &str, ext: &str) {
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-type"), Some(ctype), "{}", r.head);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{}", r.head);
    assert_eq!(r.header("content-length"), None, "{}", r.head);
    let cd = r
        .header("content-disposition")
        .expect("Content-Disposition");
    let name = cd
        .strip_prefix("attachment; filename=\"")
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or_else(|| panic!("Content-Disposition: {cd}"));
    let stamp = name
        .strip_prefix("stele-export-")
        .and_then(|n| n.strip_suffix(&format!(".{ext}")))
        .unwrap_or_else(|| panic!("filename {name}"));
    let b = stamp.as_bytes();
    assert!(
        b.len() == 16
            && b[8] == b'T'
            && b[15] == b'Z'
            && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit),
        "filename {name}"
    );
    // Streamed page by page (1,000 events each), not as one buffer.
    assert!(
        r.chunks >= 2,
        "{} chunks: the export was not streamed",
        r.chunks
    );
}

#[test]
fn export_of_100000_events_as_ndjson_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_without_detectors(tmp.path());
    let started = Instant::now();
    let mut seq_of_id = std::collections::HashMap::new();
    for batch in 0..EXPORT_EVENTS / 1000 {
        let events: Vec<Value> = (batch * 1000..(batch + 1) * 1000)
            .map(export_event)
            .collect();
        let r = post(&d, "application/x-ndjson", &ndjson(&events));
        assert_eq!(r.status, 201, "batch {batch}: {}", r.text());
        for item in r.json()["events"].as_array().unwrap() {
            seq_of_id.insert(
                item["id"].as_str().unwrap().to_string(),
                item["seq"].as_u64().unwrap(),
            );
        }
    }
    assert_eq!(seq_of_id.len(), EXPORT_EVENTS);
    let ingested = started.elapsed();
    wait_indexed(&d, EXPORT_EVENTS as u64, Duration::from_secs(120));
    let indexed = started.elapsed();

    // NDJSON: every event once, oldest (lowest seq) first.
    let r = get(&d, "/v1/export?format=ndjson");
    assert_export_headers(&r, "application/x-ndjson", "ndjson");
    let text = String::from_utf8(r.body.clone()).expect("UTF-8");
    assert!(text.ends_with('\n'));
    let mut last = 0;
    let mut ids = HashSet::new();
    let mut lines = 0;
    for line in text.lines() {
        let ev: Value = serde_json::from_str(line).unwrap();
        let seq = ev["seq"].as_u64().unwrap();
        assert!(
            seq > last,
            "seq {seq} after {last}: not ascending or repeated"
        );
        last = seq;
        let id = ev["id"].as_str().unwrap();
        assert_eq!(seq_of_id.get(id), Some(&seq), "{id} at {seq}");
        assert!(ids.insert(id.to_string()), "{id} exported twice");
        lines += 1;
    }
    assert_eq!(lines, EXPORT_EVENTS);
    assert_eq!(last, EXPORT_EVENTS as u64);
    let ndjson_chunks = r.chunks;
    assert!(
        ndjson_chunks >= EXPORT_EVENTS / 1000,
        "{ndjson_chunks} chunks for {} pages",
        EXPORT_EVENTS / 1000
    );
    drop(text);

    // CSV: a header and one RFC 4180 record per event, in the same order.
    let r = get(&d, "/v1/export?format=csv");
    assert_export_headers(&r, "text/csv; charset=utf-8", "csv");
    let text = String::from_utf8(r.body.clone()).expect("UTF-8");
    let records = parse_csv(&text);
    let header = &records[0];
    assert_eq!(&header[..3], ["seq", "received_at", "id"], "{header:?}");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (seq_col, id_col, desc_col) = (col("seq"), col("id"), col("description"));
    assert_eq!(records.len() - 1, EXPORT_EVENTS);
    let mut last = 0;
    let mut ids = HashSet::new();
    for (i, rec) in records[1..].iter().enumerate() {
        assert_eq!(rec.len(), header.len(), "record {i}: {rec:?}");
        let seq: u64 = rec[seq_col].parse().unwrap();
        assert!(seq > last, "csv seq {seq} after {last}");
        last = seq;
        assert_eq!(seq_of_id.get(&rec[id_col]), Some(&seq), "{rec:?}");
        assert!(ids.insert(rec[id_col].clone()), "{rec:?}");
        let n: usize = rec[id_col][4..].parse().unwrap();
        let want_desc = export_event(n)["description"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert_eq!(rec[desc_col], want_desc, "record {i}");
    }
    assert_eq!(last, EXPORT_EVENTS as u64);
    let csv_chunks = r.chunks;
    drop((text, records));

    // order=desc with a filter: newest first, only the matches.
    let r = get(&d, "/v1/export?format=ndjson&order=desc&tenant=t3");
    assert_export_headers(&r, "application/x-ndjson", "ndjson");
    let seqs: Vec<u64> = String::from_utf8(r.body.clone())
        .unwrap()
        .lines()
        .map(|l| {
            let ev: Value = serde_json::from_str(l).unwrap();
            assert_eq!(ev["tenant"], "t3");
            ev["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), EXPORT_EVENTS / 10);
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "not newest first");
    eprintln!(
        "export: ingested {EXPORT_EVENTS} in {ingested:.1?}, indexed by {indexed:.1?}, \
         exports done by {:.1?}; {ndjson_chunks} NDJSON chunks, {csv_chunks} CSV chunks",
        started.elapsed()
    );
}
