//! Restart of a daemon holding many events with its indexes intact, and
//! `stele verify` throughput (issue 5's targets: ready in ≤ 3 s with
//! 10,000,000 events; verify ≥ 500 MB/s). Run deliberately, in release:
//!
//! ```text
//! cargo build --release --bin stele && cargo bench --bench restart
//! STELE_BENCH_EVENTS=1000000 cargo bench --bench restart   # a smaller log
//! ```
//!
//! The data directory (`target/bench-data/restart-N`, ≈ 5.5 GB for 10M
//! events of ≈ 500 bytes) is built once and reused: the log is appended in
//! 1,000-event batches and indexed by a first `stele serve` start. Each
//! measured start runs `target/release/stele serve` and times the moment it
//! logs "Listening on" — the moment it sends READY=1 to systemd, after
//! recovery and index catch-up. Then `stele verify` reads every segment.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stele::clock::SystemClock;
use stele::log::{Log, LogConfig};
use stele::testkit::EventGen;

fn stele() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/stele")
}

/// Starts `stele serve` on `dir`; returns the time to "Listening on" and
/// stops it with SIGTERM.
fn start_until_ready(dir: &Path) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(stele())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("run target/release/stele (cargo build --release first)");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let ready = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Listening on") => break started.elapsed(),
            Some(Ok(l)) => {
                if l.contains("ERROR") {
                    eprintln!("{l}");
                }
            }
            _ => panic!("stele serve exited before listening"),
        }
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    std::thread::spawn(move || for _ in lines {});
    let _ = child.wait();
    ready
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !stele().exists() {
        eprintln!("build the daemon first: cargo build --release --bin stele");
        return;
    }
    let n: u64 = std::env::var("STELE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/restart-{n}"));
    if !dir.join("index").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let started = Instant::now();
        {
            let log = Log::open(&dir, LogConfig::default(), Arc::new(SystemClock)).unwrap();
            let mut gen = EventGen::new(11);
            let mut left = n;
            while left > 0 {
                let k = left.min(1000);
                log.append(
                    &(0..k).map(|_| gen.sized(500)).collect::<Vec<_>>(),
                    &stele::event::Provenance::cli(),
                )
                .unwrap();
                left -= k;
            }
        }
        println!(
            "built a log of {n} events in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let t = start_until_ready(&dir);
        println!(
            "first start (indexes built from the log): {:.1} s",
            t.as_secs_f64()
        );
    }
    let mut times: Vec<f64> = (0..3)
        .map(|_| start_until_ready(&dir).as_secs_f64())
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "restart with {n} events, indexes intact, to READY (listening): {:.2} / {:.2} / {:.2} s \
         (min / median / max of 3; target ≤ 3 s)",
        times[0], times[1], times[2]
    );
    let bytes = dir_bytes(&dir.join("segments"));
    let started = Instant::now();
    let out = Command::new(stele())
        .args(["verify", "--quiet"])
        .arg(&dir)
        .output()
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    println!(
        "stele verify: {:.0} MB in {took:.1} s = {:.0} MB/s (target ≥ 500 MB/s; page cache warm)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / took
    );
}
