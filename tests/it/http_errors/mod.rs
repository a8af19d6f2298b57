//! Every error answer of the HTTP API, checked over raw HTTP/1.1 against
//! the server run in-process (`support::inproc`, the same `serve` the daemon
//! runs): status, `Content-Type: application/problem+json`, the
//! problem's `type`, `title`, `status`, `detail` and its extra member; the
//! idempotent-retry contract; and a 100,000-event export.
//!
//! # Layout
//!
//! This file holds the requests and the problem+json checks every area
//! uses; each submodule takes them with `use super::*`: `ingest`
//! (malformed bodies), `routing`, `params` (read routes), `retries`
//! (idempotency) and `export` (100,000 events).

use crate::support::http::{send, Body, Reply};
use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

mod export;
mod ingest;
mod params;
mod retries;
mod routing;

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
