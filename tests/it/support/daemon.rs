//! `stele serve` run as a child process, and a small HTTP/1.1 client for it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::{parse_reply, read_response, request_bytes, send, Body};
use super::stele;

pub struct Daemon {
    pub child: Child,
    pub addr: String,
    /// Every line the daemon wrote to stderr so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn start(dir: &std::path::Path) -> Daemon {
        Daemon::start_with(dir, &[])
    }

    /// Starts `stele serve` without detectors (`STELE_DETECT_ENABLED=false`):
    /// for tests that count the log's seqs, which Stele's own findings would
    /// interleave.
    pub fn start_without_detectors(dir: &std::path::Path) -> Daemon {
        let mut cmd = stele();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("STELE_DETECT_ENABLED", "false");
        Daemon::spawn(cmd)
    }

    /// Starts `stele serve` with extra arguments (limits, …).
    pub fn start_with(dir: &std::path::Path, args: &[&str]) -> Daemon {
        let mut cmd = stele();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(args);
        Daemon::spawn(cmd)
    }

    /// Runs `cmd` (a prepared `stele serve`) with its stderr captured, and
    /// waits until it says where it listens.
    pub fn spawn(mut cmd: std::process::Command) -> Daemon {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stele serve");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Recorded before the address is announced, so a caller
                // that got the address also sees this line in the log.
                let addr = line
                    .split("Listening on ")
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
                lines2.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "stele serve did not listen: {}",
                    lines.lock().unwrap().join("\n")
                )
            });
        Daemon {
            child,
            addr,
            stderr: lines,
        }
    }

    /// Sends SIGTERM and waits (at most `within`) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "stele did not exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's stderr so far, one string.
    pub fn log_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// One HTTP/1.1 request; returns (status, content type, body).
    pub fn call(&self, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, String, Value) {
        call_at(&self.addr, method, path, ctype, body)
    }
}

/// One HTTP/1.1 request to `addr` (for threads that have no `Daemon`);
/// returns (status, content type, JSON body or `Null`).
pub fn call_at(
    addr: &str,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = request_bytes(method, path, &[("Content-Type", ctype)], body);
    s.write_all(&req).unwrap();
    let r = parse_reply(&read_response(&mut s)).expect("an HTTP response");
    let ctype = r.header("content-type").unwrap_or_default().to_string();
    (r.status, ctype, r.json_or_null())
}

impl Daemon {
    /// GET returning the raw head and the (de-chunked) body text.
    pub fn get_raw(&self, path: &str) -> (String, String) {
        let r = send(&self.addr, "GET", path, &[], Body::None);
        (r.head.clone(), String::from_utf8(r.body).unwrap())
    }

    pub fn get(&self, path: &str) -> (u16, String, Value) {
        self.call("GET", path, "application/json", b"")
    }

    pub fn post(&self, body: &Value) -> (u16, String, Value) {
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

impl Daemon {
    /// Sends SIGHUP (reload the configuration).
    pub fn hup(&self) {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -HUP {pid} failed");
    }
}
