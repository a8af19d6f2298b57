//! Every error answer of the HTTP API, checked over raw HTTP/1.1 against
//! the server run in-process (`support::inproc`, the same `serve` the daemon
//! runs): status, `Content-Type: application/problem+json`, the
//! problem's `type`, `title`, `status`, `detail` and its extra member; the
//! idempotent-retry contract; and a 100,000-event export.

use crate::support::http::{send, Body, Reply};
use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const PROBLEMS: &str = "https://stele.dev/problems/";
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
const EVENTS_MAX: usize = 10_000;

// ---------------------------------------------------------------------------
// Requests (through the shared raw client, support::http)
// ---------------------------------------------------------------------------

fn get(d: &Server, target: &str) -> Reply {
    send(&d.addr, "GET", target, &[], Body::None)
}

fn post(d: &Server, ctype: &str, body: &[u8]) -> Reply {
    send(
        &d.addr,
        "POST",
        "/v1/events",
        &[("Content-Type", ctype)],
        Body::Sized(body),
    )
}

fn post_json(d: &Server, v: &Value) -> Reply {
    post(d, "application/json", v.to_string().as_bytes())
}

fn ndjson(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(e.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Asserts a problem+json answer and returns its body.
fn problem(r: &Reply, status: u16, kind: &str, title: &str) -> Value {
    assert_eq!(r.status, status, "{}\n{}", r.head, r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.head
    );
    let p = r.json();
    assert_eq!(p["type"], format!("{PROBLEMS}{kind}"), "{p}");
    assert_eq!(p["title"], title, "{p}");
    assert_eq!(p["status"], status, "{p}");
    assert!(
        p["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no detail: {p}"
    );
    p
}

fn detail(p: &Value) -> &str {
    p["detail"].as_str().unwrap()
}

/// `state` of `/readyz` (present whether ready or not).
fn ready_state(d: &Server) -> Value {
    let r = get(d, "/readyz");
    assert!(matches!(r.status, 200 | 503), "{}", r.text());
    r.json()["state"].clone()
}

fn log_last_seq(d: &Server) -> u64 {
    ready_state(d)["log_last_seq"].as_u64().unwrap()
}

/// Polls `/readyz` until queries see the log up to `seq`.
fn wait_indexed(d: &Server, seq: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let st = ready_state(d);
        if st["indexed_seq"].as_u64().unwrap() >= seq {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not indexed up to {seq} within {within:?}: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seqs_of(v: &Value) -> Vec<u64> {
    v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {v}"))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn ok_event(id: &str) -> Value {
    json!({"id": id, "action": "login", "actor": "alice", "tenant": "acme"})
}

// ---------------------------------------------------------------------------
// Ingest: malformed bodies
// ---------------------------------------------------------------------------

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
    let d = Server::start(tmp.path());
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

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    for target in [
        "/v2/nothing",
        "/v1/event",
        "/v1/events/a/b",
        "/v1/entities/order/55",
        "/v1/users/u-1",
        "/",
    ] {
        let r = get(&d, target);
        let p = problem(&r, 404, "not-found", "No such route");
        assert!(detail(&p).contains(target), "{target}: {p}");
    }
    // (method, target, the methods the route does allow)
    let cases = [
        ("DELETE", "/v1/events", "GET, POST"),
        ("PUT", "/v1/events", "GET, POST"),
        ("POST", "/v1/events/evt-1", "GET"),
        ("DELETE", "/v1/events/evt-1", "GET"),
        ("POST", "/v1/search", "GET"),
        ("PATCH", "/v1/stats", "GET"),
        ("POST", "/v1/export", "GET"),
        ("POST", "/v1/stream", "GET"),
        ("POST", "/v1/entities/order/55/history", "GET"),
        ("PUT", "/v1/users/u-1/events", "GET"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/readyz", "GET"),
        ("POST", "/metrics", "GET"),
    ];
    for (method, target, allowed) in cases {
        let r = send(&d.addr, method, target, &[], Body::Sized(b""));
        let p = problem(&r, 405, "method-not-allowed", "Method not allowed");
        assert!(
            detail(&p).starts_with(&format!("{method} is not allowed on {target}")),
            "{p}"
        );
        // RFC 9110 §15.5.6: a 405 names the allowed methods in Allow.
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {target}: 405 without Allow: {}", r.head));
        let mut got: Vec<&str> = allow.split(',').map(str::trim).collect();
        got.retain(|m| *m != "HEAD");
        got.sort();
        let mut want: Vec<&str> = allowed.split(", ").collect();
        want.sort();
        assert_eq!(got, want, "{method} {target}: Allow: {allow}");
    }
    assert_eq!(log_last_seq(&d), 0);
}

/// The edges of routing: HEAD is not GET (no route answers HEAD), trailing
/// slashes are ignored but problems quote the path as sent, and a path
/// parameter that is not UTF-8 once decoded is a 400, not a lookup of a
/// mangled id.
#[test]
fn routing_edges_head_trailing_slashes_and_undecodable_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    // HEAD: 405 naming GET (read raw: a HEAD answer has no body to frame).
    let mut s = std::net::TcpStream::connect(&d.addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut s, &mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("\r\nallow: get"), "{raw}");

    assert_eq!(post_json(&d, &ok_event("slash-1")).status, 201);
    let r = get(&d, "/v1/events/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["events"].is_array(), "{}", r.text());
    let r = get(&d, "/v1/events/slash-1/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], "slash-1");
    let p = problem(&get(&d, "/nope/"), 404, "not-found", "No such route");
    assert_eq!(detail(&p), "/nope/ is not a Stele route");

    let p = problem(
        &get(&d, "/v1/events/%FF%FE"),
        400,
        "invalid-parameter",
        "Invalid query parameter",
    );
    assert!(detail(&p).contains("not UTF-8"), "{p}");
    // A valid escape is decoded: the id is "a/b", which does not exist.
    let p = problem(
        &get(&d, "/v1/events/a%2Fb"),
        404,
        "not-found",
        "No such event",
    );
    assert!(detail(&p).contains("a/b"), "{p}");
}

// ---------------------------------------------------------------------------
// Read routes: parameters
// ---------------------------------------------------------------------------

fn title_of(kind: &str) -> &'static str {
    match kind {
        "invalid-parameter" => "Invalid query parameter",
        "invalid-cursor" => "Invalid cursor",
        "invalid-query" => "Invalid full-text query",
        other => panic!("no title known for {other}"),
    }
}

/// Asserts a 400 naming `field`, with `detail` containing `says`.
fn bad_param(
    d: &Server,
    target: &str,
    headers: &[(&str, &str)],
    kind: &str,
    field: &str,
    says: &str,
) {
    let r = send(&d.addr, "GET", target, headers, Body::None);
    assert_eq!(r.status, 400, "{target}: {}", r.text());
    let p = problem(&r, 400, kind, title_of(kind));
    assert_eq!(p["field"], field, "{target}: {p}");
    assert!(
        detail(&p).contains(says),
        "{target}: detail does not say {says:?}: {p}"
    );
}

#[test]
fn bad_query_parameters_on_every_read_route() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let p = "invalid-parameter";
    let c = "invalid-cursor";
    // Listing and search take every parameter of Query::parse.
    for base in ["/v1/events?", "/v1/search?q=x&"] {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("limit=0", p, "limit", "from 1 to 1000"),
            ("limit=1001", p, "limit", "from 1 to 1000"),
            ("limit=ten", p, "limit", "from 1 to 1000"),
            ("limit=-1", p, "limit", "from 1 to 1000"),
            ("order=sideways", p, "order", "\"desc\""),
            ("since=not-a-date", p, "since", "use RFC 3339"),
            ("until=2026-13-01T00:00:00Z", p, "until", "use RFC 3339"),
            (
                "min_severity=bogus",
                p,
                "min_severity",
                "\"bogus\" is not one of debug",
            ),
            ("severity=loud", p, "severity", "\"loud\" is not one of"),
            ("source=aliens", p, "source", "\"aliens\""),
            ("status=meh", p, "status", "\"meh\""),
            ("ip=999.1.1.1", p, "ip", "not an IPv4 or IPv6 address"),
            ("hours=0", p, "hours", "greater than 0 and at most 87840"),
            ("hours=1&since=2026-11-23T00:00:00Z", p, "hours", "not both"),
            ("hours=1e999", p, "hours", "greater than 0"),
            (
                "since=yesterday",
                p,
                "since",
                "a time ago (15m, 24h, 7d, 2w)",
            ),
            ("since=99999999w", p, "since", "more than ten years"),
            ("risk_score=extreme", p, "risk_score", "high (71–100)"),
            ("duration_ms=9..3", p, "duration_ms", "empty range"),
            ("user_name=", p, "user_name", "must not be empty"),
            (
                "since=2026-11-23T00:00:00Z&until=2026-11-22T00:00:00Z",
                p,
                "since",
                "before `until`",
            ),
            ("tenant=", p, "tenant", "must not be empty"),
            ("tenant=a&tenant=b", p, "tenant", "more than once"),
            ("bogus=1", p, "bogus", "unknown parameter"),
            ("interval=fortnight", p, "interval", "interval"),
            (
                "cursor=garbage",
                c,
                "cursor",
                "not a cursor returned by Stele",
            ),
        ];
        for (q, kind, field, says) in cases {
            bad_param(&d, &format!("{base}{q}"), &[], kind, field, says);
        }
        let long = format!("{base}cursor={}", "A".repeat(129));
        bad_param(&d, &long, &[], c, "cursor", "too long");
    }
    // Search needs q, non-empty and well-formed.
    bad_param(&d, "/v1/search", &[], p, "q", "is required");
    bad_param(&d, "/v1/search?tenant=acme", &[], p, "q", "is required");
    bad_param(&d, "/v1/search?q=", &[], p, "q", "must not be empty");
    bad_param(
        &d,
        "/v1/search?q=title:(",
        &[],
        "invalid-query",
        "q",
        "Syntax Error",
    );
    let huge = format!("/v1/search?q={}", "a".repeat(4097));
    bad_param(&d, &huge, &[], p, "q", "the limit is 4096");

    // Statistics: filters and interval only.
    for (q, field, says) in [
        ("interval=fortnight", "interval", "minute, hour or day"),
        ("interval=", "interval", "minute, hour or day"),
        (
            "limit=5",
            "limit",
            "not `limit`, `sort`, `order` or `cursor`",
        ),
        ("min_severity=bogus", "min_severity", "\"bogus\""),
        ("since=not-a-date", "since", "use RFC 3339"),
        ("bogus=1", "bogus", "unknown parameter"),
    ] {
        bad_param(&d, &format!("/v1/stats?{q}"), &[], p, field, says);
    }

    // Export: format, and the listing filters without limit or cursor.
    for (q, field, says) in [
        ("format=xml", "format", "must be csv, ndjson or json"),
        ("format=", "format", "must be csv, ndjson or json"),
        (
            "format=csv&limit=5",
            "limit",
            "an export covers every matching event",
        ),
        ("order=sideways", "order", "\"desc\""),
        ("min_severity=bogus", "min_severity", "\"bogus\""),
        ("since=not-a-date", "since", "use RFC 3339"),
        ("bogus=1", "bogus", "unknown parameter"),
    ] {
        bad_param(&d, &format!("/v1/export?{q}"), &[], p, field, says);
    }

    // Entity history and user timeline: the listing parameters, except the
    // fields the path names.
    for (base, by_path) in [
        ("/v1/entities/order/55/history?", "entity_id"),
        ("/v1/entities/order/55/history?", "entity_type"),
        ("/v1/users/u-1/events?", "user_id"),
    ] {
        let by_path = format!("{by_path}=x");
        let by_path_field = by_path.trim_end_matches("=x");
        for (q, kind, field, says) in [
            ("limit=0", p, "limit", "from 1 to 1000"),
            ("limit=1001", p, "limit", "from 1 to 1000"),
            ("limit=x", p, "limit", "from 1 to 1000"),
            (&by_path, p, by_path_field, "is given by the path"),
            ("interval=day", p, "interval", "/v1/stats only"),
            ("order=up", p, "order", "\"desc\""),
            ("since=yesterday", p, "since", "use RFC 3339"),
            ("risk_score=7..1", p, "risk_score", "empty range"),
            ("bogus=1", p, "bogus", "unknown parameter"),
            (
                "cursor=garbage",
                c,
                "cursor",
                "not a cursor returned by Stele",
            ),
        ] {
            bad_param(&d, &format!("{base}{q}"), &[], kind, field, says);
        }
    }

    // The live stream: filters and from_seq (errors answer before streaming).
    for (q, field, says) in [
        ("limit=1", "limit", "do not apply"),
        ("order=asc", "order", "do not apply"),
        ("cursor=x", "cursor", "do not apply"),
        ("interval=day", "interval", "do not apply"),
        ("from_seq=abc", "from_seq", "a whole number"),
        ("from_seq=-1", "from_seq", "a whole number"),
        ("min_severity=bogus", "min_severity", "\"bogus\""),
        ("bogus=1", "bogus", "unknown parameter"),
    ] {
        bad_param(&d, &format!("/v1/stream?{q}"), &[], p, field, says);
    }
    // A malformed full-text query is refused before the stream starts.
    bad_param(
        &d,
        "/v1/stream?q=title:(",
        &[],
        "invalid-query",
        "q",
        "Syntax Error",
    );
    bad_param(
        &d,
        "/v1/stream?q=metadata.region:%3Cu",
        &[],
        "invalid-query",
        "q",
        "not supported",
    );
    bad_param(
        &d,
        "/v1/stream",
        &[("Last-Event-ID", "abc")],
        p,
        "Last-Event-ID",
        "must be the id (seq)",
    );
}

#[test]
fn cursors_from_another_query_or_altered_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let batch: Vec<Value> = (0..3)
        .map(|i| {
            json!({"action": "update", "actor": "a", "user_id": "u-1",
                   "entity_type": "order", "entity_id": "55", "metadata": {"i": i}})
        })
        .collect();
    let r = post_json(&d, &Value::Array(batch));
    assert_eq!(r.status, 201, "{}", r.text());
    wait_indexed(&d, 3, Duration::from_secs(30));
    let page = get(&d, "/v1/events?limit=1").json();
    let cursor = page["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("no cursor: {page}"))
        .to_string();
    // The cursor works where it came from.
    let next = get(&d, &format!("/v1/events?limit=1&cursor={cursor}"));
    assert_eq!(next.status, 200, "{}", next.text());
    assert_eq!(seqs_of(&next.json()), vec![2]);
    let other = "belongs to a different query";
    let c = "invalid-cursor";
    for target in [
        format!("/v1/events?limit=1&tenant=acme&cursor={cursor}"),
        format!("/v1/events?limit=1&order=asc&cursor={cursor}"),
        format!("/v1/search?q=update&limit=1&cursor={cursor}"),
        format!("/v1/entities/order/55/history?limit=1&cursor={cursor}"),
        format!("/v1/users/u-1/events?limit=1&cursor={cursor}"),
    ] {
        bad_param(&d, &target, &[], c, "cursor", other);
    }
    // One character changed in the middle: the MAC no longer matches.
    let mut altered: Vec<char> = cursor.chars().collect();
    let mid = altered.len() / 2;
    altered[mid] = if altered[mid] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    bad_param(
        &d,
        &format!("/v1/events?limit=1&cursor={altered}"),
        &[],
        c,
        "cursor",
        "altered",
    );
}

/// Parameters a route does not take are rejected by name, not ignored and not
/// blamed on another parameter. (Before the server edit that accompanies
/// these tests: stats and export named `limit` for `order`/`cursor`, list,
/// search and export ignored `interval`, history and timeline took a
/// repeated `limit`, get-by-id ignored every parameter, and `q=%20` passed
/// as a search.)
#[test]
fn parameters_that_do_not_apply_are_rejected_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let p = "invalid-parameter";
    let stats = "not `limit`, `sort`, `order` or `cursor`";
    bad_param(&d, "/v1/stats?order=asc", &[], p, "order", stats);
    bad_param(&d, "/v1/stats?cursor=abc", &[], p, "cursor", stats);
    bad_param(&d, "/v1/stats?limit=5", &[], p, "limit", stats);
    bad_param(&d, "/v1/stats?sort=seq", &[], p, "sort", stats);
    bad_param(
        &d,
        "/v1/stream?sort=time",
        &[],
        p,
        "sort",
        "it is in seq order",
    );
    for base in [
        "/v1/events",
        "/v1/entities/order/55/history",
        "/v1/users/u-1/events",
    ] {
        let target = format!("{base}?sort=arrival");
        bad_param(&d, &target, &[], p, "sort", "\"time\"");
    }
    let export = "an export covers every matching event";
    bad_param(&d, "/v1/export?cursor=abc", &[], p, "cursor", export);
    bad_param(&d, "/v1/export?interval=day", &[], p, "interval", export);
    for target in ["/v1/events?interval=day", "/v1/search?q=x&interval=hour"] {
        bad_param(&d, target, &[], p, "interval", "/v1/stats only");
    }
    for base in ["/v1/entities/order/55/history", "/v1/users/u-1/events"] {
        let target = format!("{base}?limit=1&limit=2");
        bad_param(&d, &target, &[], p, "limit", "more than once");
    }
    bad_param(
        &d,
        "/v1/events/evt-1?limit=1",
        &[],
        p,
        "limit",
        "takes only `tenant`",
    );
    bad_param(&d, "/v1/search?q=%20%20", &[], p, "q", "is required");
    // A parameter without a name has no `field` (the spec's `field` is never
    // empty).
    for target in [
        "/v1/events?=x",
        "/v1/events?limit=1&=",
        "/v1/events/evt-1?=x",
    ] {
        let r = send(&d.addr, "GET", target, &[], Body::None);
        let v = problem(&r, 400, p, title_of(p));
        assert!(v.get("field").is_none(), "{target}: {v}");
        assert!(detail(&v).contains("empty name"), "{target}: {v}");
    }
}

#[test]
fn unknown_event_id_is_404() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let r = post_json(&d, &ok_event("known"));
    assert_eq!(r.status, 201);
    wait_indexed(&d, 1, Duration::from_secs(30));
    assert_eq!(get(&d, "/v1/events/known").status, 200);
    for target in [
        "/v1/events/nope",
        "/v1/events/KNOWN",
        "/v1/events/known%20",
        "/v1/events/0",
        "/v1/events/1", // a seq is not an id
    ] {
        problem(&get(&d, target), 404, "not-found", "No such event");
    }
    let long = format!("/v1/events/{}", "x".repeat(300));
    problem(&get(&d, &long), 404, "not-found", "No such event");
}

// ---------------------------------------------------------------------------
// Idempotent retries
// ---------------------------------------------------------------------------

/// The same replay answer however often it is asked, before and after the
/// indexes caught up.
fn assert_replay(r: &Reply, want: &[(&str, u64)], how: &str) {
    assert_eq!(r.status, 200, "{how}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{how}");
    let items: Vec<Value> = want
        .iter()
        .map(|(id, seq)| json!({"id": id, "seq": seq}))
        .collect();
    assert_eq!(
        r.json(),
        json!({"events": items, "replayed": true}),
        "{how}"
    );
}

#[test]
fn idempotent_retries_and_id_conflicts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let a = json!({"id": "idem-a", "action": "login", "actor": "alice", "tenant": "acme",
                   "timestamp": "2026-11-23T10:00:00Z", "metadata": {"x": 1, "y": [1, 2]},
                   "changes": [{"field": "status", "old": "pending", "new": "paid"}]});
    let r = post_json(&d, &a);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["events"], json!([{"id": "idem-a", "seq": 1}]));
    let (c, dd, e) = (ok_event("idem-c"), ok_event("idem-d"), ok_event("idem-e"));
    let r = post_json(&d, &json!([c, dd, e]));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(seqs_of(&r.json()), vec![2, 3, 4]);

    let checks = |phase: &str| {
        // Same id, same content: 200, the original seq, nothing stored.
        assert_replay(&post_json(&d, &a), &[("idem-a", 1)], phase);
        // The same content written differently (key order, spacing, framing).
        let reordered = r#"{ "metadata": {"y": [1,2], "x": 1}, "tenant": "acme",
            "changes": [{"new": "paid", "old": "pending", "field": "status"}],
            "actor": "alice", "timestamp": "2026-11-23T10:00:00Z", "action": "login", "id": "idem-a" }"#;
        assert_replay(
            &post(&d, "application/json", reordered.as_bytes()),
            &[("idem-a", 1)],
            phase,
        );
        assert_replay(
            &post(
                &d,
                "application/x-ndjson",
                &ndjson(std::slice::from_ref(&a)),
            ),
            &[("idem-a", 1)],
            phase,
        );
        // A whole batch again: the same seqs, as one array, as NDJSON, or
        // reordered (each id keeps its own seq), or a part of it.
        let want = [("idem-c", 2), ("idem-d", 3), ("idem-e", 4)];
        assert_replay(&post_json(&d, &json!([c, dd, e])), &want, phase);
        assert_replay(
            &post(
                &d,
                "application/x-ndjson",
                &ndjson(&[c.clone(), dd.clone(), e.clone()]),
            ),
            &want,
            phase,
        );
        assert_replay(
            &post_json(&d, &json!([e, c, dd])),
            &[("idem-e", 4), ("idem-c", 2), ("idem-d", 3)],
            phase,
        );
        assert_replay(&post_json(&d, &json!([dd])), &[("idem-d", 3)], phase);

        // Same id, other content: 409.
        let mut changed = a.clone();
        changed["actor"] = json!("mallory");
        let pr = problem(
            &post_json(&d, &changed),
            409,
            "id-conflict",
            "Event id conflict",
        );
        assert_eq!(pr["field"], "id", "{phase}: {pr}");
        assert!(detail(&pr).contains("\"idem-a\""), "{phase}: {pr}");
        assert!(detail(&pr).contains("different content"), "{phase}: {pr}");
        let mut changed = a.clone();
        changed["metadata"]["x"] = json!(2);
        problem(
            &post_json(&d, &changed),
            409,
            "id-conflict",
            "Event id conflict",
        );
        // A timestamp dropped is other content too.
        let mut changed = a.clone();
        changed.as_object_mut().unwrap().remove("timestamp");
        problem(
            &post_json(&d, &changed),
            409,
            "id-conflict",
            "Event id conflict",
        );

        // A stored id with a new one: 409, and the new one is not stored.
        for batch in [
            json!([a, ok_event("idem-new")]),
            json!([ok_event("idem-new"), c]),
            json!([c, dd, e, {"action": "view", "actor": "no-id"}]),
        ] {
            let pr = problem(
                &post_json(&d, &batch),
                409,
                "id-conflict",
                "Event id conflict",
            );
            assert_eq!(pr["field"], "id", "{phase}: {pr}");
            assert!(
                detail(&pr).contains("mixes events already stored with new ones"),
                "{phase}: {pr}"
            );
        }
        // One id twice in one request.
        let pr = problem(
            &post_json(&d, &json!([ok_event("idem-twice"), ok_event("idem-twice")])),
            409,
            "id-conflict",
            "Event id conflict",
        );
        assert!(detail(&pr).contains("appears twice"), "{phase}: {pr}");
        let pr = problem(
            &post_json(&d, &json!([a, a])),
            409,
            "id-conflict",
            "Event id conflict",
        );
        assert!(detail(&pr).contains("appears twice"), "{phase}: {pr}");

        assert_eq!(
            log_last_seq(&d),
            4,
            "{phase}: a retry or conflict stored events"
        );
    };
    checks("before the indexes caught up");
    wait_indexed(&d, 4, Duration::from_secs(30));
    checks("from the key index");
    for id in ["idem-new", "idem-twice"] {
        problem(
            &get(&d, &format!("/v1/events/{id}")),
            404,
            "not-found",
            "No such event",
        );
    }
    let listed = get(&d, "/v1/events?order=asc").json();
    let ids: Vec<&str> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["idem-a", "idem-c", "idem-d", "idem-e"],
        "{listed}"
    );
}

// ---------------------------------------------------------------------------
// Export of 100,000 events
// ---------------------------------------------------------------------------

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
    let d = Server::start(tmp.path());
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
