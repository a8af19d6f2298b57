//! HTTP abuse against `stele serve`: slow clients, oversized heads,
//! ten thousand connections, malformed chunked bodies, invalid UTF-8 and NUL,
//! deep nesting, out-of-range numbers, duplicate keys, and live streams that are
//! never read.
//!
//! Every test first posts events and keeps their acknowledgements, then abuses
//! the daemon, then checks that it answered with a clear error (problem+json
//! with the right status) or closed the connection; that it is still healthy
//! (`/healthz` and `/readyz` 200) and serves a normal request; that every
//! acknowledged event reads back exactly as posted; and, where it matters, that
//! its memory stayed bounded (`VmHWM` of `/proc/<pid>/status`).
//!
//! The memory bounds are for this debug build, measured on the 2-core
//! development VM (see each constant).
//!
//! Most attacks hit the server in-process (`support::inproc`; "still healthy"
//! includes no panic in a Stele thread). The real binary (`support::daemon`)
//! stays where the process is the point: the memory bounds and socket counts
//! of `/proc/<pid>` (ten thousand connections, streams never read), and deep
//! nesting, where a stack overflow must be seen as a dead daemon, not abort
//! the test binary.
//!
//! # Layout
//!
//! This file holds the raw HTTP/1.1 exchange, the acknowledged events and
//! the health, memory and socket checks every attack ends with; each
//! submodule takes them with `use super::*` and holds one kind of attack:
//! `connections` (slow and ten thousand), `heads`, `chunked`, `strings`
//! (invalid UTF-8 and NUL), `json` (nesting, numbers, duplicate keys) and
//! `streams` (never read). `connect_raw`, `wait_metric` and `ingest_bulk`
//! are `pub(crate)` for `stream_ws`.

use crate::support::daemon::Daemon;
use crate::support::http::{parse_reply, read_until_closed, request_bytes, Reply};
use crate::support::inproc::Server;
use crate::support::Served;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

mod chunked;
mod connections;
mod heads;
mod json;
mod streams;
mod strings;

const PROBLEMS: &str = "https://stele.dev/problems/";

// ---------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------

/// What a raw exchange got: the bytes read, and whether the server closed
/// (or reset) the connection before `within` ran out.
struct Exchange {
    raw: Vec<u8>,
    closed: bool,
    took: Duration,
}

impl Exchange {
    fn reply(&self) -> Option<Reply> {
        parse_reply(&self.raw)
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.raw[..self.raw.len().min(600)]).into_owned()
    }
}

/// Writes `bytes` on a fresh connection (stopping at a write error: the
/// server may answer and close early), half-closes if asked, and reads until
/// the server closes or `within` runs out.
fn exchange(addr: &str, bytes: &[u8], half_close: bool, within: Duration) -> Exchange {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    s.set_write_timeout(Some(within)).unwrap();
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut raw = Vec::new();
    let closed = read_until_closed(&mut s, &mut raw, started + within);
    Exchange {
        raw,
        closed,
        took: started.elapsed(),
    }
}

/// Asserts a problem+json answer and returns its body.
fn problem(r: &Reply, status: u16, kind: &str) -> Value {
    assert_eq!(r.status, status, "{}\n{}", r.head, r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.head
    );
    let p: Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()));
    assert_eq!(p["type"], format!("{PROBLEMS}{kind}"), "{p}");
    assert_eq!(p["status"], status, "{p}");
    assert!(
        p["title"].as_str().is_some_and(|t| !t.is_empty()),
        "no title: {p}"
    );
    assert!(
        p["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no detail: {p}"
    );
    p
}

/// `problem` for a (status, content type, body) of the harness's client.
fn problem_of(answer: &(u16, String, Value), status: u16, kind: &str) -> Value {
    let (st, ct, p) = answer;
    assert_eq!(*st, status, "{p}");
    assert_eq!(ct, "application/problem+json", "{p}");
    assert_eq!(p["type"], format!("{PROBLEMS}{kind}"), "{p}");
    assert_eq!(p["status"], status, "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    p.clone()
}

fn detail(p: &Value) -> &str {
    p["detail"].as_str().unwrap_or("")
}

fn post_bytes(d: &impl Served, ctype: &str, body: &[u8]) -> (u16, String, Value) {
    d.call("POST", "/v1/events", ctype, body)
}

// ---------------------------------------------------------------------------
// Acknowledged events, health, memory
// ---------------------------------------------------------------------------

/// An acknowledged event: what was posted and the seq it got.
struct Acked {
    id: String,
    seq: u64,
    posted: Value,
}

/// A realistic event whose JSON view is exactly `posted` plus `seq` and
/// `received_at` (timestamp already in the stored form).
fn rich_event(id: &str, i: usize) -> Value {
    json!({
        "id": id,
        "timestamp": format!("2026-11-23T10:{:02}:{:02}.123456Z", i / 60 % 60, i % 60),
        "action": "update",
        "actor": format!("user-{}", i % 7),
        "tenant": "acme",
        "category": "billing",
        "source": "user",
        "status": "success",
        "severity": "notice",
        "entity_type": "order",
        "entity_id": format!("{}", 1000 + i),
        "entity_name": "Zoë’s order — naïve 日本 ✓",
        "user_id": format!("u-{}", i % 5),
        "ip": "2001:db8::7",
        "user_agent": "curl/8.5.0",
        "risk_score": i % 101,
        "duration_ms": i * 3,
        "description": format!("order {i} paid\nsecond line\ttab"),
        "changes": [{"field": "status", "old": "pending", "new": {"state": "paid", "n": i}}],
        "metadata": {"i": i, "ünï": "çödé", "list": [1, "two", null, true, 2.5, -7],
                     "nested": {"deep": {"er": [i]}}},
    })
}

/// Posts `n` rich events as one batch and waits until queries see them.
fn seed(d: &impl Served, tag: &str, n: usize) -> Vec<Acked> {
    let posted: Vec<Value> = (0..n)
        .map(|i| rich_event(&format!("{tag}-{i}"), i))
        .collect();
    let (st, _, r) = d.post(&Value::Array(posted.clone()));
    assert_eq!(st, 201, "{r}");
    let acked: Vec<Acked> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .zip(posted)
        .map(|(a, p)| Acked {
            id: a["id"].as_str().unwrap().to_string(),
            seq: a["seq"].as_u64().unwrap(),
            posted: p,
        })
        .collect();
    assert_eq!(acked.len(), n);
    wait_indexed(d, acked.last().unwrap().seq);
    acked
}

fn ready_state(d: &impl Served) -> Value {
    let (st, _, v) = d.get("/readyz");
    assert!(matches!(st, 200 | 503), "{v}");
    v["state"].clone()
}

fn log_last_seq(d: &impl Served) -> u64 {
    ready_state(d)["log_last_seq"].as_u64().unwrap()
}

fn wait_indexed(d: &impl Served, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = ready_state(d);
        if st["indexed_seq"].as_u64().unwrap() >= seq {
            return;
        }
        assert!(Instant::now() < deadline, "not indexed up to {seq}: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stored JSON view without what the server adds, after checking `seq`.
fn stored_as_posted(d: &impl Served, id: &str, seq: u64) -> Value {
    let (st, _, mut v) = d.get(&format!("/v1/events/{id}"));
    assert_eq!(st, 200, "{id}: {v}");
    assert_eq!(v["seq"], seq, "{id}: {v}");
    let obj = v.as_object_mut().unwrap();
    obj.remove("seq");
    assert!(obj.remove("received_at").is_some(), "{id}");
    assert_eq!(
        obj.remove("ingested_by"),
        Some(Value::from("loopback")),
        "{id}"
    );
    assert!(obj.remove("client_addr").is_some(), "{id}");
    // A computed risk score (marked by `risk_rules`) is the server's too.
    if obj.remove("risk_rules").is_some() {
        assert!(obj.remove("risk_score").is_some(), "{id}");
    }
    v
}

/// Every acknowledged event reads back by id exactly as posted, at its seq.
fn assert_intact(d: &impl Served, acked: &[Acked]) {
    wait_indexed(d, acked.iter().map(|a| a.seq).max().unwrap_or(0));
    for a in acked {
        assert_eq!(stored_as_posted(d, &a.id, a.seq), a.posted, "{}", a.id);
    }
}

/// `/healthz` and `/readyz` answer 200, and a query is served.
fn assert_healthy(d: &mut impl Served) {
    let exited = d.exit_report();
    assert!(exited.is_none(), "{}", exited.unwrap_or_default());
    let (st, _, v) = d.get("/healthz");
    assert_eq!((st, &v), (200, &json!({"status": "ok"})));
    let (st, _, v) = d.get("/readyz");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ready"], true, "{v}");
    let (st, _, v) = d.get("/v1/events?limit=1");
    assert_eq!(st, 200, "{v}");
    let panicked = d.panic_report();
    assert!(panicked.is_none(), "{}", panicked.unwrap_or_default());
}

/// Posts one event and checks it is acknowledged with the next seq.
fn assert_ingests(d: &impl Served, id: &str) -> Acked {
    let before = log_last_seq(d);
    let posted = rich_event(id, 42);
    let (st, _, r) = d.post(&posted);
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["events"], json!([{"id": id, "seq": before + 1}]), "{r}");
    Acked {
        id: id.into(),
        seq: before + 1,
        posted,
    }
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> u64 {
    kib / 1024
}

/// A connection started with `connect(2)` without waiting for it when
/// `nonblocking`; `rcvbuf` sets `SO_RCVBUF` before connecting.
pub(crate) fn connect_raw(addr: SocketAddrV4, rcvbuf: Option<i32>, nonblocking: bool) -> TcpStream {
    let flags =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // TcpStream takes it over (and closes it) right after creation.
    unsafe {
        let fd = libc::socket(libc::AF_INET, flags, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(n) = rcvbuf {
            let r = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                std::ptr::from_ref(&n).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        }
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            std::ptr::from_ref(&sa).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r != 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                nonblocking && e.raw_os_error() == Some(libc::EINPROGRESS),
                "connect: {e}"
            );
        }
        stream
    }
}

/// A `GET /healthz` on a fresh connection: how long a 200 took, or `None`
/// if none came within `within` (connecting included).
fn healthz_within(addr: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&sa, within).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    read_until_closed(&mut s, &mut raw, started + within);
    raw.starts_with(b"HTTP/1.1 200").then(|| started.elapsed())
}

fn get_with(addr: &str, target: &str, headers: &[(&str, String)]) -> Exchange {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    exchange(
        addr,
        &request_bytes("GET", target, &h, b""),
        false,
        Duration::from_secs(10),
    )
}

/// A minimal valid event as JSON text with `field` set to the JSON string
/// literal `literal` (raw bytes, so invalid UTF-8 can be in it).
fn event_with(field: &str, literal: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"{");
    if field != "action" {
        out.extend_from_slice(br#""action": "a", "#);
    }
    if field != "actor" {
        out.extend_from_slice(br#""actor": "b", "#);
    }
    out.extend_from_slice(format!("\"{field}\": ").as_bytes());
    out.extend_from_slice(literal);
    out.extend_from_slice(b"}");
    out
}

/// Waits until `/metrics` has the line `line`.
pub(crate) fn wait_metric(d: &impl Served, line: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let (_, m) = d.get_raw("/metrics");
        if m.contains(&format!("\n{line}\n")) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Posts `batches` NDJSON batches of 1,000 events of about 1 KB.
pub(crate) fn ingest_bulk(d: &impl Served, tag: &str, batches: usize) -> u64 {
    let mut last = 0;
    for b in 0..batches {
        let mut body = Vec::new();
        for i in 0..1000 {
            let ev = json!({"id": format!("{tag}-{b}-{i}"), "action": "bulk", "actor": "loader",
                            "description": "d".repeat(1000)});
            body.extend_from_slice(ev.to_string().as_bytes());
            body.push(b'\n');
        }
        let (st, _, r) = post_bytes(d, "application/x-ndjson", &body);
        assert_eq!(st, 201, "batch {b}: {r}");
        last = r["events"][999]["seq"].as_u64().unwrap();
    }
    last
}
