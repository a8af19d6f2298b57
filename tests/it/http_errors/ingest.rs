//! Ingest's error answers for malformed bodies: invalid JSON (line and
//! column), invalid NDJSON (the bad line), invalid events (all listed, none
//! stored), empty bodies and batches, more than 10,000 events, bodies over
//! 16 MiB (413) and unsupported media types (415).

use super::*;

#[test]
fn invalid_json_reports_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    // (body, line, column, what serde says)
    let cases: &[(&[u8], u64, u64, &str)] = &[
        (
            b"[{\"action\":\"a\",\"actor\":\"b\"},\n {\"action\": \"x\",, }]",
            2,
            17,
            "key must be a string",
        ),
        (
            b"{\"action\":\"a\",\"actor\":\"b\"} trailing",
            1,
            28,
            "trailing characters",
        ),
        (
            b"[\n  {\"action\":\"a\",\n   \"actor\":\"b\"",
            3,
            14,
            "EOF while parsing",
        ),
        (b"{\"action\":\"\xff\"}", 1, 12, "invalid unicode"),
    ];
    for (body, line, column, what) in cases {
        let r = post(&d, "application/json", body);
        let p = problem(&r, 400, "invalid-json", "Invalid JSON");
        let shown = String::from_utf8_lossy(body);
        assert!(
            detail(&p).starts_with("the body is not JSON: "),
            "{shown}: {p}"
        );
        assert!(detail(&p).contains(what), "{shown}: {p}");
        assert!(
            detail(&p).contains(&format!("at line {line} column {column}")),
            "{shown}: {p}"
        );
        assert_eq!(
            (&p["line"], &p["column"]),
            (&json!(line), &json!(column)),
            "{shown}: the position as members: {p}"
        );
    }
    assert_eq!(log_last_seq(&d), 0, "a malformed body stored something");
}

#[test]
fn invalid_ndjson_names_the_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let good = r#"{"action":"a","actor":"b"}"#;
    // Line 3 of 5 is bad.
    let body = format!("{good}\n{good}\n{{\"action\": nope}}\n{good}\n{good}\n");
    let p = problem(
        &post(&d, "application/x-ndjson", body.as_bytes()),
        400,
        "invalid-json",
        "Invalid JSON",
    );
    assert!(detail(&p).starts_with("line 3 is not JSON: "), "{p}");
    assert_eq!((&p["line"], &p["column"]), (&json!(3), &json!(13)), "{p}");

    // Blank lines and CRLF still count as lines: the bad one is line 4.
    let body = format!("{good}\r\n\r\n{good}\r\n{{\"action\":\r\n{good}\r\n");
    let p = problem(
        &post(&d, "application/x-ndjson", body.as_bytes()),
        400,
        "invalid-json",
        "Invalid JSON",
    );
    assert!(detail(&p).starts_with("line 4 is not JSON: "), "{p}");
    assert_eq!(p["line"], 4, "{p}");

    // The last line, without a final newline.
    let body = format!("{good}\n{good}\n{good}\n{good}\n{{]");
    let p = problem(
        &post(&d, "application/x-ndjson", body.as_bytes()),
        400,
        "invalid-json",
        "Invalid JSON",
    );
    assert!(detail(&p).starts_with("line 5 is not JSON: "), "{p}");
    assert_eq!((&p["line"], &p["column"]), (&json!(5), &json!(2)), "{p}");

    // Two JSON values on one line is not NDJSON.
    let body = format!("{good}\n{good} {good}\n");
    let p = problem(
        &post(&d, "application/x-ndjson", body.as_bytes()),
        400,
        "invalid-json",
        "Invalid JSON",
    );
    assert!(detail(&p).starts_with("line 2 is not JSON: "), "{p}");
    assert!(detail(&p).contains("trailing characters"), "{p}");

    // A valid NDJSON line holding a non-object is an invalid *event*; its
    // `index` counts events (blank lines skipped), not lines.
    let body = format!("{good}\n\n[1]\n");
    let p = problem(
        &post(&d, "application/x-ndjson", body.as_bytes()),
        400,
        "invalid-events",
        "Invalid events",
    );
    assert_eq!(
        p["errors"],
        json!([{"index": 1, "field": "", "kind": "not_an_object",
                "message": "an event must be a JSON object, got an array"}]),
        "{p}"
    );
    assert_eq!(log_last_seq(&d), 0);
}

/// The five-event batch of `invalid_events_are_all_listed_and_nothing_is_stored`.
fn bad_batch() -> Vec<Value> {
    vec![
        json!({"id": "good-0", "action": "login", "actor": "alice"}),
        json!({"id": "bad-1", "action": "x", "actor": "y", "severity": "loud",
               "risk_score": 101, "colour": "red"}),
        json!({"id": "bad-2", "tenant": "acme"}),
        json!({"id": "good-3", "action": "logout", "user_id": "u-1"}),
        json!({"id": "", "action": "update", "actor": "z", "ip": "999.1.1.1",
               "timestamp": "yesterday", "changes": [{"old": 1}], "metadata": [1]}),
    ]
}

#[test]
fn invalid_events_are_all_listed_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let want: Vec<(u64, &str, &str)> = vec![
        (1, "severity", "invalid_value"),
        (1, "risk_score", "out_of_range"),
        (1, "colour", "unknown_field"),
        (2, "action", "missing"),
        (2, "actor", "missing"),
        (4, "id", "invalid_value"),
        (4, "timestamp", "invalid_value"),
        (4, "ip", "invalid_value"),
        (4, "changes[0].field", "missing"),
        (4, "metadata", "wrong_type"),
    ];
    let batch = bad_batch();
    for (how, r) in [
        ("array", post_json(&d, &Value::Array(batch.clone()))),
        ("ndjson", post(&d, "application/x-ndjson", &ndjson(&batch))),
    ] {
        let p = problem(&r, 400, "invalid-events", "Invalid events");
        assert_eq!(
            detail(&p),
            "10 problems in 5 events; nothing was stored",
            "{how}"
        );
        let errors = p["errors"].as_array().expect("an errors list");
        let got: Vec<(u64, &str, &str)> = errors
            .iter()
            .map(|e| {
                (
                    e["index"].as_u64().unwrap(),
                    e["field"].as_str().unwrap(),
                    e["kind"].as_str().unwrap(),
                )
            })
            .collect();
        let (mut got_sorted, mut want_sorted) = (got.clone(), want.clone());
        got_sorted.sort();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{how}: {p}");
        for e in errors {
            let m = e["message"].as_str().unwrap();
            let f = e["field"].as_str().unwrap();
            assert!(!m.is_empty(), "{how}: {e}");
            // Every message names its field (the missing actor is about
            // "actor, user_id or source").
            assert!(m.contains(f), "{how}: message does not name {f}: {e}");
        }
    }

    // Nothing was stored, not even the two good events.
    assert_eq!(log_last_seq(&d), 0);
    let r = post_json(&d, &ok_event("sentinel"));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(seqs_of(&r.json()), vec![1], "the rejected batch used seqs");
    wait_indexed(&d, 1, Duration::from_secs(30));
    let listed = get(&d, "/v1/events?limit=100").json();
    let ids: Vec<&str> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["sentinel"], "{listed}");
    for id in ["good-0", "good-3", "bad-1"] {
        problem(
            &get(&d, &format!("/v1/events/{id}")),
            404,
            "not-found",
            "No such event",
        );
    }
}

#[test]
fn empty_bodies_and_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    // An empty or blank body, an empty array, or NDJSON with no event: a
    // batch of 0, whatever the media type.
    for (ctype, body) in [
        ("application/json", &b""[..]),
        ("application/json", b"  \n "),
        ("application/json", b"[]"),
        ("application/json", b" [ ] "),
        ("application/x-ndjson", b""),
        ("application/x-ndjson", b"\n\r\n   \n"),
    ] {
        let p = problem(
            &post(&d, ctype, body),
            400,
            "invalid-batch-size",
            "Invalid number of events",
        );
        assert!(detail(&p).contains("this one 0"), "{p}");
        assert_eq!(p["limit"], EVENTS_MAX, "{p}");
    }
    assert_eq!(log_last_seq(&d), 0);
}

#[test]
fn more_than_10000_events_is_an_invalid_batch_size() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_without_detectors(tmp.path());
    let one = json!({"action": "view", "actor": "a"});
    let over = vec![one.clone(); EVENTS_MAX + 1];
    for (how, r) in [
        ("array", post_json(&d, &Value::Array(over.clone()))),
        ("ndjson", post(&d, "application/x-ndjson", &ndjson(&over))),
    ] {
        let p = problem(&r, 400, "invalid-batch-size", "Invalid number of events");
        assert!(detail(&p).contains("this one 10001"), "{how}: {p}");
        assert!(detail(&p).contains("1 to 10000 events"), "{how}: {p}");
        assert_eq!(p["limit"], EVENTS_MAX, "{how}: {p}");
    }
    assert_eq!(log_last_seq(&d), 0);
    // Exactly the limit is accepted.
    let r = post(&d, "application/x-ndjson", &ndjson(&over[1..]));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        seqs_of(&r.json()),
        (1..=EVENTS_MAX as u64).collect::<Vec<_>>()
    );
    assert_eq!(log_last_seq(&d), EVENTS_MAX as u64);
}

#[test]
fn bodies_over_16_mib_get_413_and_the_daemon_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    // A valid array padded with spaces to exactly the limit is accepted...
    let mut body = json!([ok_event("at-limit")]).to_string().into_bytes();
    body.resize(BODY_BYTES_MAX, b' ');
    let r = post(&d, "application/json", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    // ... one byte more is not, whether its length is announced or not.
    body.push(b' ');
    let sized = post(&d, "application/json", &body);
    let chunked = send(
        &d.addr,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/json")],
        Body::Chunked(&body),
    );
    for (how, r) in [("content-length", sized), ("chunked", chunked)] {
        let p = problem(&r, 413, "body-too-large", "Request body too large");
        assert_eq!(p["limit"], BODY_BYTES_MAX, "{how}: {p}");
        assert!(detail(&p).contains("16777216"), "{how}: {p}");
    }
    // Still serving, and nothing of the big bodies was stored.
    let r = get(&d, "/healthz");
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    let r = post_json(&d, &ok_event("after"));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(seqs_of(&r.json()), vec![2]);
    assert_eq!(log_last_seq(&d), 2);
}

/// POST /v1/events reads JSON and NDJSON only; a missing Content-Type reads
/// as JSON. (Without the 415, text/plain was read as JSON and stored.)
#[test]
fn ingest_rejects_unsupported_media_types_with_415() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let body = ok_event("typed").to_string();
    for ctype in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
    ] {
        let r = post(&d, ctype, body.as_bytes());
        let p = problem(&r, 415, "unsupported-media-type", "Unsupported media type");
        assert!(
            detail(&p).contains(ctype.split(';').next().unwrap()),
            "{ctype}: {p}"
        );
        let accepted = p["accepted"].as_array().expect("an accepted list");
        for t in ["application/json", "application/x-ndjson"] {
            assert!(accepted.contains(&json!(t)), "{t} not in {p}");
        }
    }
    assert_eq!(log_last_seq(&d), 0, "a 415 stored something");
    // A missing Content-Type reads as JSON; parameters and case do not matter.
    let r = send(
        &d.addr,
        "POST",
        "/v1/events",
        &[],
        Body::Sized(body.as_bytes()),
    );
    assert_eq!(r.status, 201, "no Content-Type: {}", r.text());
    let r = post(
        &d,
        "application/json; charset=utf-8",
        ok_event("typed-2").to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let two = ndjson(&[ok_event("nd-1"), ok_event("nd-2")]);
    let r = post(&d, "Application/X-NDJSON", &two);
    assert_eq!(
        r.status,
        201,
        "media types are case-insensitive: {}",
        r.text()
    );
    assert_eq!(seqs_of(&r.json()), vec![3, 4]);
}
