//! The daemon process: starting `stele serve` (its address from the `Listening on`
//! line), stopping it with SIGTERM, its log (appended to `RUN/daemon.log`, errors,
//! warnings, panics and recovery notes counted), and sampling its RSS.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::common::{lock, now_micros, strip_ansi};
use crate::state::Run;
use crate::{RSS_EVERY, START_TIMEOUT, STOP_TIMEOUT};

/// The daemon's log: appended to RUN/daemon.log; panics and errors noted.
pub struct DaemonLog {
    pub file: Mutex<std::fs::File>,
    pub echo: bool,
    pub tail: Mutex<VecDeque<String>>,
    pub errors: AtomicU64,
    pub warnings: AtomicU64,
    pub panics: AtomicU64,
    pub first_errors: Mutex<Vec<String>>,
    /// Lines about torn tails truncated or indexes rebuilt at open (recovery notes).
    pub recovery_notes: Mutex<Vec<String>>,
}

impl DaemonLog {
    pub fn line(&self, line: &str) {
        let _ = writeln!(lock(&self.file), "{line}");
        if self.echo {
            eprintln!("[stele] {line}");
        }
        if line.contains(" ERROR ") {
            self.errors.fetch_add(1, Ordering::Relaxed);
            let mut e = lock(&self.first_errors);
            if e.len() < 10 {
                e.push(line.to_owned());
            }
        } else if line.contains(" WARN ") {
            self.warnings.fetch_add(1, Ordering::Relaxed);
        }
        if line.contains("panicked") {
            self.panics.fetch_add(1, Ordering::Relaxed);
        }
        let lower = line.to_ascii_lowercase();
        if [
            "rebuil",
            "quarantin",
            "salvag",
            "truncat",
            "torn",
            "interrupted",
        ]
        .iter()
        .any(|w| lower.contains(w))
        {
            let mut r = lock(&self.recovery_notes);
            if r.len() < 20 {
                r.push(line.to_owned());
            }
        }
        let mut t = lock(&self.tail);
        t.push_back(line.to_owned());
        if t.len() > 40 {
            t.pop_front();
        }
    }

    pub fn tail(&self, n: usize) -> String {
        let t = lock(&self.tail);
        let skip = t.len().saturating_sub(n);
        t.iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n    ")
    }
}

pub struct Daemon {
    pub child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    /// Spawn → `Listening on`.
    pub start_secs: f64,
}

/// Starts `stele serve` and waits for its `Listening on ADDR` line.
pub fn start_daemon(
    stele: &Path,
    config: &Path,
    data: &Path,
    log: &Arc<DaemonLog>,
) -> Result<Daemon> {
    let began = Instant::now();
    log.line(&format!(
        "==== soak: starting {} serve --config {} (unix µs {})",
        stele.display(),
        config.display(),
        now_micros()
    ));
    let mut child = Command::new(stele)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", stele.display()))?;
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("no stderr pipe to the daemon");
    };
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let log2 = log.clone();
    // Drains the daemon's stderr until it closes (the daemon never blocks on the pipe).
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            if let Some(rest) = line.split("Listening on ").nth(1) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
            log2.line(&line);
        }
    });
    let found = rx.recv_timeout(START_TIMEOUT);
    let addr = found
        .as_deref()
        .ok()
        .and_then(|a| a.trim_end_matches(['.', ',']).parse::<SocketAddr>().ok());
    match addr {
        Some(addr) if addr.ip().is_loopback() => Ok(Daemon {
            pid: child.id(),
            child,
            addr,
            start_secs: began.elapsed().as_secs_f64(),
        }),
        _ => {
            let early = child.try_wait().ok().flatten();
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            bail!(
                "stele serve did not start ({}); its last log lines:\n    {}",
                match early {
                    Some(s) => format!("it exited: {s}"),
                    None => format!(
                        "no usable `Listening on ADDR` within {} s",
                        START_TIMEOUT.as_secs()
                    ),
                },
                log.tail(15)
            )
        }
    }
}

/// SIGTERM, then waits for the exit; `Ok(code)` or an error when it had to be killed.
pub fn stop_daemon(d: &mut Daemon) -> Result<Option<i32>> {
    // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
    let r = unsafe { libc::kill(d.pid as libc::pid_t, libc::SIGTERM) };
    if r != 0 {
        bail!(
            "cannot send SIGTERM to {}: {}",
            d.pid,
            std::io::Error::last_os_error()
        );
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if let Some(status) = d.child.try_wait()? {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            let _ = d.child.kill();
            let _ = d.child.wait();
            bail!(
                "the daemon did not exit within {} s of SIGTERM (killed)",
                STOP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (VmRSS, RssAnon) of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("RssAnon:").unwrap_or(0)))
}

/// Samples the running daemon's RSS until `done`; every sample goes to `csv`
/// (seconds since the start, pid, VmRSS KiB, RssAnon KiB).
pub fn rss_sampler(run: Arc<Run>, done: Arc<AtomicBool>, mut csv: std::fs::File) {
    let _ = writeln!(csv, "secs,pid,vm_rss_kib,rss_anon_kib");
    while !done.load(Ordering::Relaxed) {
        let pid = run.pid.load(Ordering::Relaxed);
        if pid != 0 {
            if let Some((rss, anon)) = rss_kib(pid) {
                run.rss_max_kib.fetch_max(rss, Ordering::Relaxed);
                run.rss_anon_max_kib.fetch_max(anon, Ordering::Relaxed);
                let _ = writeln!(csv, "{:.1},{pid},{rss},{anon}", run.secs());
            }
        }
        std::thread::sleep(RSS_EVERY);
    }
}
