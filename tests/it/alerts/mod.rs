//! Alerts delivered to webhooks (`src/alert/`): a receiver on 127.0.0.1
//! started by the test, which checks the HMAC-SHA256 signature itself (with
//! the `hmac` crate, not Stele's code), and an in-process Stele configured
//! with `[[webhooks]]` and `[[alerts]]`.
//!
//! - `delivery`: threshold windows, finding rules, the Slack body, reloads.
//! - `outage`: the receiver down then up, a restart mid-backlog, a wrong
//!   secret.
//! - `crash`: the binary killed mid-backlog, and its SIGHUP.
//! - `config`: what a bad `[[webhooks]]` or `[[alerts]]` is told.
//!
//! Threshold rules here use one-day windows: the windows are epoch-aligned,
//! so a test straddles a window edge only when it runs across a UTC midnight.

mod config;
mod crash;
mod delivery;
mod outage;

use crate::support::http::{send, Body};
use crate::support::inproc::Server;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The secret the receivers expect.
pub const SECRET: &str = "a-test-secret-of-32-bytes-length";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub body: Value,
    /// Whether `X-Stele-Signature` verified with [`SECRET`].
    pub signed: bool,
    /// Whether the receiver answered 2xx.
    pub accepted: bool,
    pub headers: Vec<(String, String)>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on 127.0.0.1. Accepts a request whose signature
/// verifies (or any, when `check` is off: the Slack format is unsigned),
/// answers 401 otherwise. `stop` closes its port (connections refused);
/// `start` on the same port brings it back.
pub struct Receiver {
    pub port: u16,
    pub got: Arc<Mutex<Vec<Got>>>,
    check: bool,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver on a free port, checking signatures.
    pub fn start() -> Receiver {
        Receiver::on(0, true, Arc::default())
    }

    /// A receiver that takes unsigned requests (Slack format).
    pub fn unsigned() -> Receiver {
        Receiver::on(0, false, Arc::default())
    }

    fn on(port: u16, check: bool, got: Arc<Mutex<Vec<Got>>>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, got2) = (stop.clone(), got.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => serve(s, check, &got2),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver {
            port,
            got,
            check,
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the port: attempts fail with "connection refused".
    pub fn down(mut self) -> Down {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        Down {
            port: self.port,
            check: self.check,
            got: self.got.clone(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The accepted bodies, waiting up to 20 s until there are `n`.
    pub fn wait_accepted(&self, n: usize) -> Vec<Value> {
        let accepted = || -> Vec<Value> {
            self.all()
                .into_iter()
                .filter(|g| g.accepted)
                .map(|g| g.body)
                .collect()
        };
        wait_until(&format!("{n} accepted notifications"), || {
            accepted().len() >= n
        });
        accepted()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A receiver whose port is closed; what it had received.
pub struct Down {
    pub port: u16,
    check: bool,
    pub got: Arc<Mutex<Vec<Got>>>,
}

impl Down {
    /// Listens on the same port again.
    pub fn up(self) -> Receiver {
        Receiver::on(self.port, self.check, self.got)
    }
}

/// Reads one request, checks its signature, records it, answers.
fn serve(s: TcpStream, check: bool, got: &Mutex<Vec<Got>>) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s);
    let mut headers = Vec::new();
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let len: usize = header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let signed = match (header("x-stele-timestamp"), header("x-stele-signature")) {
        (Some(ts), Some(sig)) => verify(SECRET.as_bytes(), &ts, &body, &sig),
        _ => false,
    };
    let accepted = signed || !check;
    got.lock().unwrap().push(Got {
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signed,
        accepted,
        headers,
    });
    let answer: &[u8] = if accepted {
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    } else {
        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 13\r\nconnection: close\r\n\r\nbad signature"
    };
    let mut s = r.into_inner();
    let _ = s.write_all(answer);
}

/// A receiver's check: `sha256=` and the hex HMAC-SHA256 of `ts "." body`,
/// compared in constant time.
pub fn verify(secret: &[u8], ts: &str, body: &[u8], sig: &str) -> bool {
    let Some(hex_sig) = sig.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(want) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&want).is_ok()
}

/// Polls `done` every 20 ms for up to 20 s.
pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    crate::support::time::wait_for(what, Duration::from_secs(20), done);
}

/// A `stele.toml` in `dir` with one webhook (`url`, `extra` lines added to
/// it) and `rules` (TOML text of `[[alerts]]` entries).
pub fn config(dir: &Path, url: &str, extra: &str, rules: &str) -> std::path::PathBuf {
    let path = dir.join("stele.toml");
    let text = format!(
        "[[webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nbackoff_max_secs = 1\ntimeout_secs = 5\n{extra}\n{rules}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `[[webhooks]]` lines of a signed webhook.
pub fn signed() -> String {
    format!("secret = \"{SECRET}\"\n")
}

/// A finding rule's TOML.
pub fn finding_rule(name: &str, kind: Option<&str>, severity: Option<&str>) -> String {
    let mut t = format!("[[alerts]]\nname = \"{name}\"\nwebhook = \"ops\"\n");
    if let Some(k) = kind {
        t.push_str(&format!("finding_kind = \"{k}\"\n"));
    }
    if let Some(s) = severity {
        t.push_str(&format!("finding_severity = \"{s}\"\n"));
    }
    t
}

/// A threshold rule's TOML.
pub fn threshold_rule(name: &str, filter: &str, threshold: u64, window: &str) -> String {
    format!(
        "[[alerts]]\nname = \"{name}\"\nwebhook = \"ops\"\nfilter = \"{filter}\"\n\
         threshold = {threshold}\nwindow = \"{window}\"\n"
    )
}

/// A finding as the detectors write it.
pub fn finding(kind: &str, severity: &str, n: usize) -> Value {
    json!({
        "id": format!("finding-{kind}-{n}"),
        "action": kind,
        "category": "stele.finding",
        "actor": "stele",
        "source": "system",
        "metadata": {
            "kind": kind,
            "severity": severity,
            "subject": {"type": "user", "id": format!("u{n}")},
            "summary": format!("finding number {n}"),
        },
    })
}

/// Posts `n` events of `action`.
pub fn post(server: &Server, action: &str, n: usize) {
    for _ in 0..n {
        let (st, _, r) = server.post(&json!({"action": action, "actor": "alice"}));
        assert_eq!(st, 201, "{r}");
    }
}

/// `/readyz`'s `state.alerts`.
pub fn alert_state(server: &Server) -> Value {
    let (_, _, r) = server.get("/readyz");
    r["state"]["alerts"].clone()
}

/// Waits until the alert task has delivered everything up to the log's end.
pub fn caught_up(server: &Server) {
    wait_until("the alert position to reach the log's end", || {
        let (_, _, r) = server.get("/readyz");
        r["state"]["alerts"]["position"] == r["state"]["log_last_seq"]
    });
}

/// The value of the `/metrics` sample `series`.
pub fn metric(server: &Server, series: &str) -> f64 {
    let r = send(&server.addr, "GET", "/metrics", &[], Body::None);
    let text = String::from_utf8(r.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .unwrap()
}
