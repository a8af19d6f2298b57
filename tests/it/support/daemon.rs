//! `stele serve` run as a child process, and a small HTTP/1.1 client for it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// One HTTP/1.1 request to `addr` (for threads that have no `Daemon`).
pub fn call_at(
    addr: &str,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> (u16, String, Value) {
    {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        read_all(&mut s, &mut raw);
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
}

impl Daemon {
    /// GET returning the raw headers and the (de-chunked) body text.
    pub fn get_raw(&self, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        read_all(&mut s, &mut raw);
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

/// Reads until the server closes the connection; panics after 60 s in all
/// (a per-read timeout alone never fires on a stream that sends heartbeats).
fn read_all(s: &mut TcpStream, raw: &mut Vec<u8>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the response: {e}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no complete response within 60 s (a stream answered where a reply was expected?)"
        );
    }
}

/// Reads a whole response until the server closes the connection (the same
/// deadline as [`call_at`]); for callers that write their own request.
pub fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    read_all(s, &mut raw);
    raw
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
