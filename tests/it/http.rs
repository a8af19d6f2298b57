//! `stele serve` as users meet it: on 127.0.0.1:0 with a temporary data
//! directory, spoken to over HTTP. In-process (`support::inproc`) but for
//! what needs the real binary: kill -9 and restart, SIGTERM and the exit
//! code, SIGHUP with a broken file (seen in the daemon's log), and a limit
//! refused at startup (exit status and stderr).

use crate::support::daemon::Daemon;
use crate::support::http;
use crate::support::inproc::Server;
use crate::support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn ingest_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    assert_eq!(d.get("/healthz").0, 200);

    // One object, an array, and NDJSON.
    let (st, _, one) = d.post(&json!({"id": "evt-1", "action": "login", "actor": "alice",
        "tenant": "acme", "description": "password reset requested"}));
    assert_eq!(st, 201, "{one}");
    assert_eq!(one["events"][0], json!({"id": "evt-1", "seq": 1}));
    assert_eq!(one["receipt"]["last_seq"], 1);
    assert_eq!(one["receipt"]["hash"].as_str().unwrap().len(), 64);
    // Retrying with the same id and content is safe (before and after the
    // indexes caught up); the same id with other content is a conflict.
    let first = json!({"id": "evt-1", "action": "login", "actor": "alice",
        "tenant": "acme", "description": "password reset requested"});
    let (st, _, again) = d.post(&first);
    assert_eq!(
        (st, &again["events"][0]["seq"]),
        (200, &json!(1)),
        "{again}"
    );
    let (st, _, p) = d.post(&json!({"id": "evt-1", "action": "logout", "actor": "alice",
        "tenant": "acme"}));
    assert_eq!(
        (st, p["type"].as_str()),
        (409, Some("https://stele.dev/problems/id-conflict"))
    );
    let (st, _, p) = d.post(&json!([first, {"id": "evt-new", "action": "x", "actor": "y"}]));
    assert_eq!(st, 409, "{p}");
    let (st, _, p) = d.post(&json!([{"id": "d", "action": "x", "actor": "y"}, {"id": "d", "action": "x", "actor": "y"}]));
    assert_eq!(st, 409, "{p}");
    let (st, _, arr) = d.post(&json!([
        {"action": "update", "actor": "bob", "entity_type": "order", "entity_id": "55",
         "changes": [{"field": "status", "old": "pending", "new": "paid"}]},
        {"action": "delete", "source": "system", "severity": "warning"}
    ]));
    assert_eq!(st, 201, "{arr}");
    assert_eq!(arr["events"][1]["seq"], 3);
    let nd = b"{\"action\":\"export\",\"actor\":\"carol\"}\n\n{\"action\":\"view\",\"actor\":\"dave\"}\n";
    let (st, _, v) = d.call("POST", "/v1/events", "application/x-ndjson", nd);
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 2);

    // All-or-nothing: one bad event rejects the request, each problem listed.
    let (st, ctype, p) = d.post(&json!([
        {"action": "ok", "actor": "x"},
        {"action": "x", "actor": "y", "severity": "loud", "risk_score": 101},
        {"actor": "z"}
    ]));
    assert_eq!(st, 400);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(p["type"], "https://stele.dev/problems/invalid-events");
    let errs = p["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 3, "{p}");
    assert!(errs
        .iter()
        .any(|e| e["index"] == 1 && e["field"] == "severity"));
    assert!(errs
        .iter()
        .any(|e| e["index"] == 1 && e["field"] == "risk_score"));
    assert!(errs
        .iter()
        .any(|e| e["index"] == 2 && e["field"] == "action"));
    let (st, _, p) = d.call("POST", "/v1/events", "application/json", b"{not json");
    assert_eq!(
        (st, p["type"].as_str()),
        (400, Some("https://stele.dev/problems/invalid-json"))
    );

    // Read back once indexed (the indexes commit every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let (st, _, v) = d.get("/v1/events?limit=10");
        assert_eq!(st, 200, "{v}");
        if v["events"].as_array().unwrap().len() == 5 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seqs: Vec<u64> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![5, 4, 3, 2, 1]);
    assert_eq!(listed["next_cursor"], Value::Null);
    let (st, _, ev) = d.get("/v1/events/evt-1");
    assert_eq!(st, 200);
    assert_eq!(ev["actor"], "alice");
    assert_eq!(ev["seq"], 1);
    assert!(ev["received_at"].as_str().unwrap().ends_with('Z'));
    let (st, _, v) = d.get("/v1/events?q=password%20reset&tenant=acme");
    assert_eq!(st, 200);
    assert_eq!(v["events"][0]["id"], "evt-1");
    assert_eq!(d.get("/v1/events/nope").0, 404);
    let (st, ctype, p) = d.get("/v1/events?limit=5000");
    assert_eq!((st, ctype.as_str()), (400, "application/problem+json"));
    assert_eq!(p["field"], "limit");
    assert_eq!(d.get("/v2/nothing").0, 404);
    assert_eq!(
        d.call("DELETE", "/v1/events", "application/json", b"").0,
        405
    );

    // Readiness and metrics.
    let (st, _, r) = d.get("/readyz");
    assert_eq!((st, &r["ready"]), (200, &json!(true)), "{r}");
    assert_eq!(r["state"]["log_last_seq"], 5);
    let (head, text) = d.get_raw("/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(text.contains("\nstele_events_appended_total 5\n"), "{text}");
    assert!(text.contains("stele_log_last_seq 5"), "{text}");
    assert!(
        text.contains("stele_http_requests_total{route=\"ingest\",status=\"201\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("stele_http_requests_total{route=\"ingest\",status=\"409\"} 3"),
        "{text}"
    );
}

/// kill -9 and a restart: every acknowledged event is still there, and the
/// key index answers a retry (the process is the point: the real binary).
#[test]
fn acknowledged_events_survive_kill_9_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path());
    let first = json!({"id": "evt-1", "action": "login", "actor": "alice",
        "tenant": "acme", "description": "password reset requested"});
    assert_eq!(d.post(&first).0, 201);
    let rest: Vec<Value> = (0..4)
        .map(|i| json!({"action": "view", "actor": format!("a{i}")}))
        .collect();
    let (st, _, v) = d.post(&Value::Array(rest));
    assert_eq!(st, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/readyz").2["state"]["lag_events"] != 0 {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGKILL and restart: every acknowledged event is still there.
    drop(d);
    let d = Daemon::start(tmp.path());
    let (st, _, ev) = d.get("/v1/events/evt-1");
    assert_eq!((st, ev["seq"].as_u64()), (200, Some(1)));
    // After a restart the key index answers the retry.
    let (st, _, again) = d.post(&first);
    assert_eq!(
        (st, &again["events"][0]["seq"]),
        (200, &json!(1)),
        "{again}"
    );
    let (st, _, v) = d.post(&json!({"action": "login", "actor": "erin"}));
    assert_eq!((st, v["events"][0]["seq"].as_u64()), (201, Some(6)));
    drop(d);
    let (code, out) = verify(&[tmp.path()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn search_history_timeline_and_stats_routes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let mut batch = Vec::new();
    for i in 0..30 {
        batch.push(json!({
            "action": if i % 3 == 0 { "delete" } else { "update" },
            "actor": format!("u-{}", i % 4), "user_id": format!("u-{}", i % 4),
            "tenant": "acme", "entity_type": "order", "entity_id": format!("{}", i % 5),
            "status": if i % 10 == 0 { "failure" } else { "success" },
            "timestamp": format!("2026-11-2{}T10:{:02}:00Z", i % 3, i),
            "changes": [{"field": "total", "old": i, "new": i + 1}],
            "description": if i == 7 { "password reset by support" } else { "routine change" }
        }));
    }
    let (st, _, v) = d.post(&Value::Array(batch));
    assert_eq!(st, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/v1/events?limit=100").2["events"]
        .as_array()
        .unwrap()
        .len()
        < 30
    {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (st, _, v) = d.get("/v1/search?q=%22password%20reset%22");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    assert_eq!(v["events"][0]["seq"], 8);
    let (st, _, p) = d.get("/v1/search?tenant=acme");
    assert_eq!((st, p["field"].as_str()), (400, Some("q")));

    // Entity history: oldest first by event time (the timestamps run over
    // three days out of arrival order), with changes, walked with cursors;
    // `sort=seq` walks it in arrival order.
    for (sort, want) in [
        ("", vec![13, 28, 8, 23, 3, 18]),
        ("&sort=seq", vec![3, 8, 13, 18, 23, 28]),
    ] {
        let mut seqs = Vec::new();
        let mut path = format!("/v1/entities/order/2/history?limit=2{sort}");
        loop {
            let (st, _, v) = d.get(&path);
            assert_eq!(st, 200, "{v}");
            for e in v["events"].as_array().unwrap() {
                assert_eq!(e["changes"][0]["field"], "total");
                seqs.push(e["seq"].as_u64().unwrap());
            }
            match v["next_cursor"].as_str() {
                Some(c) => path = format!("/v1/entities/order/2/history?limit=2{sort}&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seqs, want, "history{sort}");
    }
    for (sort, want) in [("", vec![30, 18, 6]), ("&sort=seq", vec![30, 26, 22])] {
        let (st, _, v) = d.get(&format!("/v1/users/u-1/events?limit=3{sort}"));
        assert_eq!(st, 200);
        let got: Vec<u64> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "timeline{sort}");
    }
    assert_eq!(d.get("/v1/users/u-1/events?user_id=x").0, 400);
    assert_eq!(d.get("/v1/entities/order/1/history?entity_id=x").0, 400);

    let (st, _, s) = d.get("/v1/stats?tenant=acme&interval=day");
    assert_eq!(st, 200, "{s}");
    assert_eq!(s["total"], 30);
    assert_eq!(
        s["by_action"],
        json!([{"action": "update", "count": 20}, {"action": "delete", "count": 10}])
    );
    assert_eq!(s["by_status"][0], json!({"status": "success", "count": 27}));
    assert_eq!(s["active_users"], 4);
    assert_eq!(s["error_rate"], 0.1);
    let days: Vec<&str> = s["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["start"].as_str().unwrap())
        .collect();
    assert_eq!(days.len(), 3, "{s}");
    assert!(days[0].starts_with("2026-11-20T00:00:00"), "{days:?}");
    assert_eq!(d.get("/v1/stats?interval=week").0, 400);
    assert_eq!(d.get("/v1/stats?limit=3").0, 400);
}

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

/// Reads SSE `id:` lines from a raw stream until `want` ids were seen.
fn read_ids(s: &mut TcpStream, want: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut buf = String::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} events arrived",
            ids.len()
        );
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the stream closed");
        buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            if let Some(id) = line.trim_end().strip_prefix("id: ") {
                ids.push(id.parse().unwrap());
            }
        }
    }
    ids
}

fn open_stream(addr: &str, path: &str, last_event_id: Option<u64>) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra = last_event_id
        .map(|i| format!("Last-Event-ID: {i}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{extra}\r\n"
    )
    .unwrap();
    s
}

#[test]
fn the_live_stream_resumes_with_no_gap_and_no_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let post = |n: usize, tenant: &str| {
        let evs: Vec<Value> = (0..n)
            .map(|i| json!({"action": "view", "actor": format!("a{i}"), "tenant": tenant}))
            .collect();
        assert_eq!(d.post(&Value::Array(evs)).0, 201);
    };
    post(5, "acme"); // before the stream: not sent to a live-only subscriber
    let mut a = open_stream(&d.addr, "/v1/stream?tenant=acme", None);
    std::thread::sleep(Duration::from_millis(200));
    post(4, "globex");
    post(6, "acme");
    let first = read_ids(&mut a, 6);
    assert_eq!(first, (10..=15).collect::<Vec<_>>());
    drop(a); // disconnect; events keep arriving
    post(3, "acme");
    post(2, "globex");
    post(3, "acme");
    let mut b = open_stream(
        &d.addr,
        "/v1/stream?tenant=acme",
        Some(*first.last().unwrap()),
    );
    let resumed = read_ids(&mut b, 6);
    assert_eq!(resumed, vec![16, 17, 18, 21, 22, 23]);
    // from_seq replays from the log, including what came before any stream.
    let mut c = open_stream(&d.addr, "/v1/stream?tenant=acme&from_seq=1", None);
    let all = read_ids(&mut c, 17);
    let want: Vec<u64> = (1..=5).chain(10..=18).chain(21..=23).collect();
    assert_eq!(all, want);
    assert_eq!(d.get("/v1/stream?limit=5").0, 400);
    assert_eq!(d.get("/v1/stream?from_seq=minus-one").0, 400);

    // Full text: the stream follows the text index, replayed and live.
    let (st, _, r) = d.post(&json!([
        {"action": "rotate", "actor": "ops", "description": "rotated the vault credentials"},
        {"action": "view", "actor": "ops", "description": "viewed the dashboard"},
    ]));
    assert_eq!(st, 201, "{r}");
    let rotated = r["events"][0]["seq"].as_u64().unwrap();
    let mut t = open_stream(&d.addr, "/v1/stream?q=credentials&from_seq=1", None);
    assert_eq!(read_ids(&mut t, 1), vec![rotated]);
    let (_, _, r) = d.post(&json!([
        {"action": "view", "actor": "ops", "description": "nothing to see"},
        {"action": "rotate", "actor": "sec", "description": "credentials expired", "tenant": "acme"},
    ]));
    let live = r["events"][1]["seq"].as_u64().unwrap();
    assert_eq!(read_ids(&mut t, 1), vec![live]);
    // Structured filters still apply to a full-text stream.
    let mut u = open_stream(
        &d.addr,
        "/v1/stream?q=credentials&tenant=acme&from_seq=1",
        None,
    );
    assert_eq!(read_ids(&mut u, 1), vec![live]);
}

/// Reads a raw HTTP response head (and whatever body arrived) from `s`
/// until the server closes the connection or `within` passes.
/// Reads until the server closes (or `within` runs out): the text, closed.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut raw = Vec::new();
    let closed = http::read_until_closed(s, &mut raw, Instant::now() + within);
    (String::from_utf8_lossy(&raw).into_owned(), closed)
}

#[test]
fn sigterm_finishes_in_flight_requests_ends_streams_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    let batch: Vec<Value> = (0..500)
        .map(|i| json!({"action": "view", "actor": format!("a{i}")}))
        .collect();
    assert_eq!(d.post(&Value::Array(batch)).0, 201);
    let mut stream = open_stream(&d.addr, "/v1/stream?from_seq=1", None);
    assert_eq!(read_ids(&mut stream, 500).len(), 500);
    // An ingest request in flight: head and half its body sent.
    let body = json!({"id": "in-flight-1", "action": "login", "actor": "late"}).to_string();
    let mut inflight = TcpStream::connect(&d.addr).unwrap();
    write!(
        inflight,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = d.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once the listener is gone...
    let refused = TcpStream::connect(&d.addr);
    assert!(refused.is_err(), "still accepting after SIGTERM");
    // ...but the request in flight completes and is acknowledged.
    inflight.write_all(&body.as_bytes()[10..]).unwrap();
    let (resp, _) = read_until_closed(&mut inflight, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    // The stream ends instead of holding the shutdown up.
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5));
    assert!(closed, "the stream was not closed at shutdown");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no exit within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("Received SIGTERM"), "{log}");
    assert!(
        log.contains("durable up to seq 501 and the indexes are checkpointed"),
        "{log}"
    );
    drop(d);
    let d = Daemon::start(tmp.path());
    let (st, _, ev) = d.get("/v1/events/in-flight-1");
    assert_eq!(st, 200, "{ev}");
    assert_eq!(ev["seq"], 501);
    assert_eq!(crate::support::verify(&[tmp.path()]).0, 0);
}

#[test]
fn every_limit_is_enforced_with_a_problem_and_the_daemon_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_with_limits(
        tmp.path(),
        stele::config::Limits {
            url_bytes_max: 1024,
            header_bytes_max: 2048,
            header_read_timeout_secs: 1,
            request_timeout_secs: 1,
            streams_max: 1,
            events_per_request_max: 10,
            body_bytes_max: 100_000,
            ..Default::default()
        },
    );
    // A request target over url_bytes_max: 414.
    let (st, ct, p) = d.get(&format!("/v1/events?tenant={}", "x".repeat(1100)));
    assert_eq!((st, ct.as_str()), (414, "application/problem+json"), "{p}");
    assert_eq!(http::problem_kind(&p), "uri-too-long");
    assert_eq!(p["limit"], 1024);
    // Headers over header_bytes_max: 431 with a problem body.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "y".repeat(3000)
    )
    .unwrap();
    let (resp, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert!(resp.contains("headers-too-large"), "{resp}");
    // A head larger than the read buffer: hyper's own 431 or a closed
    // connection, never a hang.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    let _ = write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Huge: {}\r\n\r\n",
        "z".repeat(200_000)
    );
    let (resp, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(closed, "connection left open");
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 431"),
        "{resp}"
    );
    // A client that never finishes its head is disconnected.
    let mut slow = TcpStream::connect(&d.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(6));
    assert!(closed, "a slow head was not timed out");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A body that stalls: 503 request-timeout after request_timeout_secs.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"action\""
    )
    .unwrap();
    let (resp, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("request-timeout"), "{resp}");
    // events_per_request_max and body_bytes_max as configured.
    let many: Vec<Value> = (0..11)
        .map(|_| json!({"action": "a", "actor": "b"}))
        .collect();
    let (st, _, p) = d.post(&Value::Array(many));
    assert_eq!(st, 400, "{p}");
    assert_eq!(http::problem_kind(&p), "invalid-batch-size");
    assert_eq!(p["limit"], 10);
    let big = json!({"action": "a", "actor": "b", "description": "d".repeat(100_001)});
    let (st, _, p) = d.post(&big);
    assert_eq!(st, 413, "{p}");
    assert_eq!(p["limit"], 100_000);
    // streams_max: the second stream waits for the first to close.
    let mut first = open_stream(&d.addr, "/v1/stream", None);
    let mut buf = [0u8; 64];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(first.read(&mut buf).unwrap() > 0);
    let (st, _, p) = d.get("/v1/stream");
    assert_eq!(st, 503, "{p}");
    assert_eq!(http::problem_kind(&p), "too-many-streams");
    let (_, metrics) = d.get_raw("/metrics");
    assert!(metrics.contains("\nstele_streams_open 1\n"), "{metrics}");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The stream task notices the closed connection when it next
        // writes (at most one heartbeat) or when the body is polled.
        let mut s = open_stream(&d.addr, "/v1/stream", None);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream was never released"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // After all of it the daemon is healthy and ingests.
    assert_eq!(d.get("/healthz").0, 200);
    let (st, _, p) = d.post(&json!({"action": "a", "actor": "b"}));
    assert_eq!(st, 201, "{p}");
}

#[test]
fn an_unusable_limit_is_refused_at_startup_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = stele()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--streams-max",
            "0",
            "--data-dir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("streams_max must be at least 1"), "{err}");
}

#[test]
fn metrics_expose_latency_histograms_and_gauges() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    for _ in 0..3 {
        assert_eq!(d.post(&json!({"action": "a", "actor": "b"})).0, 201);
    }
    assert_eq!(d.get("/v1/events?limit=1").0, 200);
    let (_, m) = d.get_raw("/metrics");
    for want in [
        "# TYPE stele_http_request_duration_seconds histogram",
        "stele_http_request_duration_seconds_bucket{route=\"ingest\",le=\"+Inf\"} 3\n",
        "stele_http_request_duration_seconds_count{route=\"list\"} 1\n",
        "stele_ingest_append_seconds_count 3\n",
        "stele_ingest_events_total 3\n",
        "# TYPE stele_fsync_seconds histogram",
        "stele_streams_open 0\n",
        "stele_exports_open 0\n",
        "stele_index_lag_events",
        "stele_segments{state=\"active\"} 1\n",
        "stele_log_first_seq 1\n",
        "stele_recovery_torn_bytes_truncated 0\n",
        "stele_digests_signed_total 0\n",
        "stele_legal_holds 0\n",
        "stele_retention_dropped_days_total 0\n",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    let fsyncs = m
        .lines()
        .find_map(|l| l.strip_prefix("stele_fsync_seconds_count "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(
        (1..=3).contains(&fsyncs),
        "{fsyncs} group commits for 3 posts"
    );
}

/// Broad exports read the log and filter in memory; narrow and newest-first
/// ones go through the index. Both must select exactly the same events.
#[test]
fn export_by_log_scan_and_by_index_agree_on_every_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
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
    let d = Server::start(tmp.path());
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

/// Log lines written to a pipe or a file (journald, `2> log`) carry no ANSI
/// colour codes, with or without `NO_COLOR`.
#[test]
fn the_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    for no_color in [None, Some("1")] {
        let mut cmd = crate::support::stele();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path())
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let mut d = Daemon::spawn(cmd);
        assert_eq!(d.post(&json!({"action": "login", "actor": "a"})).0, 201);
        assert_eq!(d.terminate(Duration::from_secs(10)).code(), Some(0));
        let log = d.log_text();
        assert!(log.contains("Listening on"), "{log}");
        assert!(
            !log.contains("\x1b["),
            "NO_COLOR={no_color:?}: colour codes in a piped log: {log:?}"
        );
    }
}

fn free_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and out-pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

/// A filesystem nearly full (free space below the configured reserve):
/// ingest answers 507 and stores nothing, reads keep working, and ingest
/// resumes on its own once space is freed.
#[test]
fn below_the_disk_reserve_ingest_is_507_reads_work_and_it_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Take 256 MiB, then reserve 128 MiB more than what is left: full.
    let filler = tmp.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0xA5u8; 1 << 20];
        for _ in 0..256 {
            f.write_all(&block).unwrap();
        }
        f.sync_all().unwrap();
    }
    let reserve = free_bytes(&data) + (128 << 20);
    let d = Server::start_with_limits(
        &data,
        stele::config::Limits {
            disk_reserve_bytes: reserve,
            ..Default::default()
        },
    );
    let (st, ct, p) = d.post(&json!({"id": "while-full", "action": "a", "actor": "b"}));
    assert_eq!((st, ct.as_str()), (507, "application/problem+json"), "{p}");
    assert_eq!(http::problem_kind(&p), "disk-full");
    assert_eq!(p["reserve"], reserve);
    assert!(
        p["detail"].as_str().unwrap().contains("nothing was stored"),
        "{p}"
    );
    assert_eq!(d.get("/v1/events/while-full").0, 404);
    assert_eq!(d.get("/v1/events").0, 200);
    assert_eq!(d.get("/healthz").0, 200);
    let (_, m) = d.get_raw("/metrics");
    assert!(m.contains("stele_disk_free_bytes "), "{m}");
    // Space comes back: the same request (same id) now succeeds.
    std::fs::remove_file(&filler).unwrap();
    let (st, _, r) = d.post(&json!({"id": "while-full", "action": "a", "actor": "b"}));
    assert_eq!(st, 201, "{r}");
    assert_eq!(d.get("/v1/events/while-full").2["seq"], 1);
}

/// SIGHUP re-reads the configuration: new limits apply without dropping
/// connections; a broken file keeps the settings in force.
#[test]
fn sighup_reloads_limits_and_keeps_them_when_the_file_is_broken() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("stele.toml");
    std::fs::write(&conf, "[limits]\nurl_bytes_max = 1024\n").unwrap();
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        &["--config", conf.to_str().unwrap()],
    );
    let long = format!("/healthz?pad={}", "x".repeat(1100));
    assert_eq!(d.get(&long).0, 414);
    // An open stream must survive the reload.
    let mut stream = open_stream(&d.addr, "/v1/stream", None);
    let hup = |d: &Daemon| {
        let pid = d.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    };
    std::fs::write(&conf, "[limits]\nurl_bytes_max = 4096\n").unwrap();
    hup(&d);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.get(&long).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the new limit never applied: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A broken file: logged, the daemon keeps serving with the last limits.
    std::fs::write(&conf, "[limits]\nurl_bytes_max = \"lots\"\n").unwrap();
    hup(&d);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log_text().contains("keeping the current settings") {
        assert!(Instant::now() < deadline, "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.log_text().contains("url_bytes_max"), "{}", d.log_text());
    assert_eq!(d.get(&long).0, 200);
    assert_eq!(d.post(&json!({"action": "a", "actor": "b"})).0, 201);
    // The stream opened before both reloads still delivers.
    assert_eq!(read_ids(&mut stream, 1), vec![1]);
}

/// The problems of an `invalid-events` answer: (index, field, kind).
fn event_problems(p: &Value) -> Vec<(u64, String, String)> {
    p["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `stele append --data-dir DATA` with `line` on stdin.
fn stele_append(data: &std::path::Path, line: &str) -> std::process::Output {
    let mut child = stele()
        .args(["append", "--data-dir", data.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Provenance is the server's: every stored event says who stored it and
/// from where, a client cannot set it, and `stele append` stamps `cli`.
#[test]
fn provenance_is_stamped_by_the_server_and_cannot_be_posted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());

    // Forged provenance is an unknown field, named as the server's.
    let (st, _, p) = d.post(&json!([
        {"action": "login", "actor": "a", "ingested_by": "billing-api"},
        {"action": "login", "actor": "a", "client_addr": "10.0.0.1"}
    ]));
    assert_eq!(st, 400, "{p}");
    assert_eq!(
        event_problems(&p),
        vec![
            (0, "ingested_by".into(), "unknown_field".into()),
            (1, "client_addr".into(), "unknown_field".into())
        ],
        "{p}"
    );
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("assigned by the server"),
        "{p}"
    );
    let (st, _, p) = d.post(&json!({"id": "p-1", "action": "login", "actor": "k"}));
    assert_eq!(st, 201, "{p}");

    // Stamped: served without keys, so `loopback` and the peer address.
    let (st, _, ev) = d.get("/v1/events/p-1");
    assert_eq!(st, 200, "{ev}");
    assert_eq!(ev["ingested_by"], "loopback", "{ev}");
    assert_eq!(ev["client_addr"], "127.0.0.1", "{ev}");
    // A filter, and the export's columns.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, page) = d.get("/v1/events?ingested_by=loopback");
        if page["events"].as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "never indexed: {page}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, _, page) = d.get("/v1/events?ingested_by=cli");
    assert_eq!(page["events"], json!([]), "{page}");
    // (Exports stop at the indexer's checkpoint, which may trail the
    // listing above by a moment.)
    let csv = loop {
        let (_, csv) = d.get_raw("/v1/export?format=csv");
        if csv.lines().count() == 2 {
            break csv;
        }
        assert!(Instant::now() < deadline, "never exported: {csv}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].ends_with(",metadata,ingested_by,client_addr"),
        "{csv}"
    );
    assert!(lines[1].ends_with(",loopback,127.0.0.1"), "{csv}");
    drop(d);

    // `stele append` stamps `cli` without an address, and refuses forgeries.
    let data = tmp.path().join("cli");
    let out = stele_append(
        &data,
        r#"{"action":"login","actor":"k","ingested_by":"stele"}"#,
    );
    assert!(!out.status.success(), "a forged ingested_by was appended");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("assigned by the server"), "{err}");
    let out = stele_append(&data, r#"{"id":"c-1","action":"login","actor":"k"}"#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = stele()
        .args(["cat", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let all: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], "c-1");
    assert_eq!(all[0]["ingested_by"], "cli");
    assert!(all[0].get("client_addr").is_none(), "{}", all[0]);
}

/// A client cannot post the categories and actions Stele writes itself
/// (forged `audit_access` records, `stele.*` findings), over HTTP or with
/// `stele append`; the generic actions Stele's records use stay the
/// clients'.
#[test]
fn reserved_kinds_are_refused_over_http_and_in_stele_append() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let (st, _, p) = d.post(&json!([
        {"action": "search", "actor": "k", "category": "billing"},
        {"action": "search", "actor": "k", "category": "audit_access", "source": "integration"},
        {"action": "get", "actor": "k", "category": "AUDIT_Access"},
        {"action": "stele.alert", "source": "system"},
        {"action": "create", "actor": "k", "category": "stele.findings"}
    ]));
    assert_eq!(st, 400, "{p}");
    assert_eq!(p["type"], "https://stele.dev/problems/invalid-events");
    assert_eq!(
        event_problems(&p),
        vec![
            (1, "category".into(), "reserved".into()),
            (2, "category".into(), "reserved".into()),
            (3, "action".into(), "reserved".into()),
            (4, "category".into(), "reserved".into())
        ],
        "{p}"
    );
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("reserved for the events Stele writes itself"),
        "{p}"
    );
    // Generic actions Stele's audit records also use stay the clients'.
    let (st, _, p) = d.post(&json!({"id": "p-1", "action": "search", "actor": "k",
        "category": "billing"}));
    assert_eq!(st, 201, "{p}");
    // Nothing of the refused request was stored.
    let (_, _, m) = d.get("/v1/segments");
    let stored: u64 = m["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 1, "{m}");
    drop(d);

    let data = tmp.path().join("cli");
    for forged in [
        r#"{"action":"search","actor":"k","category":"audit_access"}"#,
        r#"{"action":"stele.alert","source":"system"}"#,
    ] {
        let out = stele_append(&data, forged);
        assert!(!out.status.success(), "{forged} was appended");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("reserved"), "{err}");
    }
    let out = stele()
        .args(["cat", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
