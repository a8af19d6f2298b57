//! `stele serve` as users meet it: on 127.0.0.1:0 with a temporary data
//! directory, spoken to over HTTP. In-process (`support::inproc`) but for
//! what needs the real binary: kill -9 and restart, SIGTERM and the exit
//! code, SIGHUP with a broken file (seen in the daemon's log), and a limit
//! refused at startup (exit status and stderr).
//!
//! # Layout
//!
//! This file holds the raw stream and connection helpers several areas
//! share; each submodule takes them with `use super::*`: `reads`,
//! `export`, `limits`, `process` (signals, restarts, the log) and
//! `provenance`.

use crate::support::daemon::Daemon;
use crate::support::http;
use crate::support::inproc::Server;
use crate::support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod export;
mod limits;
mod process;
mod provenance;
mod reads;

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

/// Reads a raw HTTP response head (and whatever body arrived) from `s`
/// until the server closes the connection or `within` passes.
/// Reads until the server closes (or `within` runs out): the text, closed.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut raw = Vec::new();
    let closed = http::read_until_closed(s, &mut raw, Instant::now() + within);
    (String::from_utf8_lossy(&raw).into_owned(), closed)
}
