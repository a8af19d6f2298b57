//! `stele serve` as users meet it: the real binary on 127.0.0.1:0 with a
//! temporary data directory, spoken to over HTTP.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    addr: String,
}

impl Daemon {
    fn start(dir: &std::path::Path) -> Daemon {
        let mut child = stele()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stele serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("stele serve did not say where it listens");
        Daemon { child, addr }
    }

    /// One HTTP/1.1 request; returns (status, content type, body).
    fn call(&self, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, String, Value) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let ctype = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(str::to_string)
            })
            .unwrap_or_default();
        (
            status,
            ctype,
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    /// GET returning the raw headers and the (de-chunked) body text.
    fn get_raw(&self, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, mut body) = text.split_once("\r\n\r\n").unwrap();
        if !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return (head.to_string(), body.to_string());
        }
        let mut out = String::new();
        loop {
            let (size, rest) = body.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&rest[..n]);
            body = &rest[n + 2..];
        }
        (head.to_string(), out)
    }

    fn get(&self, path: &str) -> (u16, String, Value) {
        self.call("GET", path, "application/json", b"")
    }

    fn post(&self, body: &Value) -> (u16, String, Value) {
        self.call(
            "POST",
            "/v1/events",
            "application/json",
            body.to_string().as_bytes(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ingest_read_back_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path());
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
    let (st, _, p) = d.post(&json!({"id": "evt-1", "action": "logout", "actor": "alice"}));
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
    let d = Daemon::start(tmp.path());
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

    // Entity history: oldest first, with changes, walked with cursors.
    let mut seqs = Vec::new();
    let mut path = "/v1/entities/order/2/history?limit=2".to_string();
    loop {
        let (st, _, v) = d.get(&path);
        assert_eq!(st, 200, "{v}");
        for e in v["events"].as_array().unwrap() {
            assert_eq!(e["changes"][0]["field"], "total");
            seqs.push(e["seq"].as_u64().unwrap());
        }
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/entities/order/2/history?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seqs, vec![3, 8, 13, 18, 23, 28]);
    let (st, _, v) = d.get("/v1/users/u-1/events?limit=3");
    assert_eq!(st, 200);
    let got: Vec<u64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![30, 26, 22]);
    assert_eq!(d.get("/v1/users/u-1/events?tenant=x").0, 400);

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
    let d = Daemon::start(tmp.path());
    let mut batch = Vec::new();
    for i in 0..2500 {
        batch.push(json!({"action": "update", "actor": format!("a{i}"), "tenant": if i % 2 == 0 { "acme" } else { "globex" },
            "description": "quote \" comma , and\nnewline", "metadata": {"k": i}}));
    }
    for chunk in batch.chunks(1000) {
        assert_eq!(d.post(&Value::Array(chunk.to_vec())).0, 201);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/v1/events?limit=1&order=desc").2["events"][0]["seq"] != 2500 {
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
    let d = Daemon::start(tmp.path());
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
    assert_eq!(d.get("/v1/stream?q=x").0, 400);
}
