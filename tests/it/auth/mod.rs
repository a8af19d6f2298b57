//! Access control: API keys and their roles, tenant scopes on every read
//! path, rate and stream limits, secure defaults, TLS, reloading keys and
//! certificates, `stele keygen`, and the self-audit trail of who read what.
//!
//! In-process ([`serve`], `support::inproc`) unless the test reads the
//! daemon's own log or exit status, which needs the real binary ([`start`]):
//! tokens and credentials that must never reach the log, the startup
//! refusal without keys on all interfaces, and a broken file on SIGHUP.
//! Reloads in-process go through `stele::server::Handle::reload`, the entry
//! point the daemon's SIGHUP task uses.
//!
//! # Layout
//!
//! This file holds what several areas share (tokens, configuration files,
//! starting the server, HTTP with headers, polling); each submodule takes it
//! with `use super::*` and holds one concern with its own helpers:
//! `roles`, `tenants`, `tenant_ids`, `credentials`, `rate_limits`,
//! `defaults` (secure by default), `tls`, `keys` (reloads and `stele keygen`)
//! and `self_audit`.

use crate::support::daemon::Daemon;
use crate::support::http::{is_timeout, parse_reply, read_response, request_bytes, Sse, SseEvent};
use crate::support::inproc::Server;
use crate::support::stele_clean_env;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod credentials;
mod defaults;
mod keys;
mod rate_limits;
mod roles;
mod self_audit;
mod tenant_ids;
mod tenants;
mod tls;

// ---------------------------------------------------------------------------
// Tokens, hashes and configuration files
// ---------------------------------------------------------------------------

/// Unpadded base64url (RFC 4648 §5).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A well-formed token (`stele_` + 43 base64url characters of 32 bytes),
/// the same for the same seed.
pub(crate) fn token(seed: &str) -> String {
    let bytes = Sha256::digest(format!("stele auth test token: {seed}").as_bytes());
    let t = format!("stele_{}", b64url(&bytes));
    assert_eq!(t.len(), 6 + 43);
    t
}

/// The `hash` of a key in the configuration: `sha256:` + lowercase hex.
fn hash(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// One `[[auth.keys]]` entry; `extra` holds more `name = value` lines.
pub(crate) fn key_toml(
    id: &str,
    token: &str,
    roles: &[&str],
    tenants: &[&str],
    extra: &str,
) -> String {
    format!(
        "[[auth.keys]]\nid = \"{id}\"\nhash = \"{}\"\nroles = {}\ntenants = {}\n{extra}\n",
        hash(token),
        serde_json::to_string(roles).unwrap(),
        serde_json::to_string(tenants).unwrap(),
    )
}

/// `[auth.roles.*]` without any rate limit.
pub(crate) const UNLIMITED_ROLES: &str = "[auth.roles.ingest]\nrate_per_sec = 0\n\
    [auth.roles.read]\nrate_per_sec = 0\n\
    [auth.roles.export]\nrate_per_sec = 0\n\
    [auth.roles.admin]\nrate_per_sec = 0\n";

fn write_file(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// `stele serve --config CONF` on 127.0.0.1:0 with DIR/data as data dir:
/// the real binary, for the tests that read its log.
fn start(dir: &Path, conf: &Path) -> Daemon {
    Daemon::start_with(&dir.join("data"), &["--config", conf.to_str().unwrap()])
}

/// The same served in-process.
fn serve(dir: &Path, conf: &Path) -> Server {
    Server::start_with_file(&dir.join("data"), conf)
}

// ---------------------------------------------------------------------------
// HTTP with headers
// ---------------------------------------------------------------------------

struct Resp {
    status: u16,
    /// The header lines (without the status line).
    headers: Vec<String>,
    /// The body, de-chunked.
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        let want = format!("{}:", name.to_ascii_lowercase());
        self.headers.iter().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with(&want)
                .then(|| l[want.len()..].trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The problem kind (`type` without the URL prefix), or "".
    fn kind(&self) -> String {
        self.json()["type"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("https://stele.dev/problems/")
            .to_string()
    }

    fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn brief(&self) -> String {
        format!(
            "{} {}",
            self.status,
            self.body.chars().take(600).collect::<String>()
        )
    }
}

/// The answer read to the end of the connection, as this file looks at it.
fn parse_response(raw: &[u8]) -> Resp {
    let r = parse_reply(raw).unwrap_or_else(|| {
        panic!(
            "not a whole HTTP response: {}",
            String::from_utf8_lossy(raw)
        )
    });
    Resp {
        status: r.status,
        headers: r.head.split("\r\n").skip(1).map(str::to_string).collect(),
        body: r.text(),
    }
}

/// One HTTP/1.1 request with extra headers, `Connection: close`.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&request_bytes(method, path, headers, body))
        .unwrap();
    parse_response(&read_response(&mut s))
}

/// `Authorization: Bearer TOKEN` when a token is given.
fn auth(token: Option<&str>) -> Vec<(&'static str, String)> {
    token
        .map(|t| vec![("Authorization", format!("Bearer {t}"))])
        .unwrap_or_default()
}

fn get(addr: &str, path: &str, token: Option<&str>) -> Resp {
    let h = auth(token);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    request(addr, "GET", path, &h, b"")
}

fn send_json(addr: &str, method: &str, path: &str, token: Option<&str>, body: &Value) -> Resp {
    let mut h = auth(token);
    h.push(("Content-Type", "application/json".into()));
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    request(addr, method, path, &h, body.to_string().as_bytes())
}

fn post(addr: &str, token: Option<&str>, body: &Value) -> Resp {
    send_json(addr, "POST", "/v1/events", token, body)
}

/// Calls `f` until it returns `Some`, for at most `secs` seconds.
fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls a list route with `token` until it returns exactly `n` events.
fn wait_for_count(addr: &str, path: &str, token: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(addr, path, Some(token));
        if r.status == 200 && r.events().len() == n {
            return r.events();
        }
        if Instant::now() > deadline {
            panic!("{path}: never {n} events; last answer {}", r.brief());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the indexes hold every event of the log: exports read up to
/// the indexed seq, which may trail what listings already show.
fn wait_all_indexed(addr: &str) {
    poll(30, "every event indexed", || {
        let r = get(addr, "/readyz", None);
        (r.json()["state"]["lag_events"] == 0).then_some(())
    });
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {token}"))]
}
