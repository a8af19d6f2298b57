//! `soak`: the soak test for `stele serve`.
//!
//! It runs a real daemon (release build) for a long time under a mixed load, kills it
//! with SIGKILL every few minutes and restarts it on the same data directory, while
//! retention drops old days, and then proves that nothing acknowledged was lost or
//! duplicated, that the log verifies, that the indexes agree with the log, and that the
//! daemon's memory stayed bounded.
//!
//! # Running
//!
//! ```sh
//! cargo build --release --bin stele && cargo build --release --example soak
//! cargo run --release --example soak                       # 30 minutes, kill -9 every ~3 min
//! cargo run --release --example soak -- --minutes 2 --kill-every-secs 30   # a quick run
//! cargo run --release --example soak -- --minutes 10 --json   # + one JSON object on stdout
//! cargo run --release --example soak -- --help             # every option
//! ```
//!
//! `--minutes` is 1 to 1440 (24 h); anything else is refused. The daemon is `--stele
//! PATH` (default: `stele` in the directory above this example's binary, that is
//! `<target>/release/stele`, so `CARGO_TARGET_DIR` is honoured), started as `stele serve
//! --config RUN/stele.toml --listen 127.0.0.1:0 --data-dir RUN/data` with `RUST_LOG=info`;
//! the address comes from its `Listening on ADDR` log line (a new port after every
//! restart). RUN is a fresh directory under `--data-parent` (default `target/soak`); the
//! daemon's whole log is appended to `RUN/daemon.log` and every RSS sample to
//! `RUN/rss.csv`. RUN is deleted after a passing run (unless `--keep`) and kept after a
//! failing one, for the post-mortem. A run that would not fit on the disk (estimated at
//! [`DISK_BYTES_PER_EVENT`] per event offered, plus the daemon's 256 MiB reserve: ≈1.9 GB
//! for the default 30 minutes) is refused before it starts.
//!
//! # What runs, concurrently, for the whole duration
//!
//! - **Ingest**: `--batch-clients` (2) post NDJSON bodies of `--batch` (100) events at
//!   `--batch-rate` (800) events/s in total, and `--single-clients` (2) post one JSON
//!   event per request at `--single-rate` (100) requests/s in total; ≈500-byte events
//!   from [`stele::testkit::EventGen`], each with a unique client id (`soak<run>-<n>`).
//!   Every acknowledged id (201, or 200 `replayed`) is recorded with the seq its receipt
//!   gives. A request that failed (connection cut by a kill, 503) is retried with the
//!   same body, hence the same ids, once the daemon is back: the answer must be 201 (it
//!   was not stored) or 200 with the seqs it was stored at (it was); a 409 for a batch
//!   means part of it was stored before the kill (counted, never acknowledged).
//! - **Queries**: `--query-clients` (2) loop (pausing `--query-pause-ms`) over newest-100
//!   listings filtered by tenant, action, user or minimum severity, full-text search,
//!   statistics, and get by id: of a recently acknowledged event already indexed (must
//!   be 200 at its seq), and of a seeded event (must be 200 while its day is held, 404
//!   once retention dropped it). Listings must never return a seq below the first
//!   retained seq seen before the request.
//! - **Streams**: `--stream-clients` (2) read `GET /v1/stream` (the first unfiltered, the
//!   others filtered by a tenant) and reconnect after every kill with `Last-Event-ID`.
//!   Seqs must increase with no duplicate within a connection and across reconnects; the
//!   unfiltered stream must also be gap-free (every seq, in order).
//! - **Retention** (see below): holds are lifted on a schedule and the daemon drops the
//!   days on its own timer; `GET /v1/retention` is polled every 2 s: the first retained
//!   seq must never go back and never pass a day still held.
//! - **Crashes**: every `--kill-every-secs` (180, each interval ±25 % from the seeded
//!   RNG so kills land at different points; 0 never kills) the daemon gets SIGKILL in
//!   mid-load and is restarted at once on the same data directory. A daemon that exits
//!   by itself, or logs a panic, is a failure (it is restarted to keep the run going).
//! - **Memory**: the daemon's `VmRSS` (and `RssAnon`) from `/proc/PID/status` every
//!   500 ms, over the whole run (the final export included); the maximum must stay
//!   below [`RSS_MAX_MIB`] (`--rss-max-mib`, see "The RSS bound").
//!
//! # How retention drops data within minutes
//!
//! Retention only drops whole UTC days that are over, whose every segment is sealed, and
//! whose age is at least the TTL; `retention.days` is at least 1 (0 is refused by the
//! configuration), so what the daemon ingests today can never be dropped during a run.
//! The soak therefore seeds the fresh data directory, before the first start, with
//! `--seed-days` (6) past UTC days of `--seed-events-per-day` (5,000) events each,
//! written through the library's segment log with a manual clock (as the retention tests
//! do), and puts a legal hold on each of those days in `DATA_DIR/holds.json` (the file
//! `POST /v1/holds` writes). The configuration sets `[retention] days = 1`,
//! `interval_secs = --retention-interval-secs` (5) and `[log] segment_bytes_max =
//! --segment-bytes` (1 MiB, so segments seal every few seconds under load). During the
//! run the holds are lifted oldest first with `DELETE /v1/holds/NAME`, evenly spread over
//! the run, so the daemon's retention timer drops one day after another (possibly across
//! a kill, which also exercises a drop cut short). Seeded events count as acknowledged
//! (the log's append returned their seqs).
//!
//! # The final checks
//!
//! Load stops; the daemon gets SIGTERM and must exit 0. It is started once more on the
//! same data directory with the same configuration minus `[retention]` (so nothing
//! changes while it is checked), `GET /v1/segments` gives the first and last retained
//! seq, and `GET /v1/export?format=ndjson` streams every event. Then:
//!
//! - every acknowledged event with seq ≥ the first retained seq is exported exactly once
//!   at its acknowledged seq (**lost** or **moved** otherwise);
//! - every acknowledged event below it was seeded into a day whose hold was lifted, and
//!   `DATA_DIR/retention.log` records drops covering exactly seqs 1 to first − 1 (these
//!   are "dropped by retention");
//! - no id appears twice in the export (also not an unacknowledged one: events stored
//!   but never acknowledged, in flight at a kill, may appear once), the export's seqs are
//!   exactly first..=last, and no foreign id appears;
//! - every lifted hold's day was dropped;
//! - after a graceful stop, `stele verify -q DATA_DIR` and `stele check --data-dir
//!   DATA_DIR` exit 0;
//! - the daemon's maximum RSS (over the whole run, the final export included) is below
//!   the bound, and no request got an unexpected answer.
//!
//! The summary (duration, events acknowledged, dropped by retention, crashes, restart
//! times, queries, stream events, holds lifted, max RSS, verify/check results, every
//! failure) goes to stdout, or with `--json` to stderr while stdout carries one JSON
//! object. Exit status 0 when every check passed, 1 on any failure, 2 for bad options
//! or a refused run (no binary, not enough disk).
//!
//! # The RSS bound
//!
//! [`RSS_MAX_MIB`] = 1024 MiB, for the default load and duration (30 minutes, a kill
//! every ~3 minutes). VmRSS counts the pages of the log and of the indexes that the
//! daemon has mapped and touched, so it grows with the data: `stats?hours=720` reads a
//! column of every indexed event, and point reads (listings, get by id) keep their log
//! pages mapped. Measured on the 2-core development VM (default options, fuzzers
//! running alongside, ≈880 events/s acknowledged): each daemon's peak, just before its
//! kill, was 362, 421, 478, 526 and 520 MiB over a 15-minute run (RssAnon at most
//! 346 MiB), rising ≈0.3 MiB per second of run as the data grows; the final export of
//! 792,688 events peaked at 224 MiB. Extrapolated to 30 minutes: ≈800–850 MiB, hence
//! the bound. Longer runs, faster ingest or `--kill-every-secs 0` (one daemon for the
//! whole run) hold more data mapped: raise `--rss-max-mib` for them, and read
//! `RUN/rss.csv` (RssAnon is the heap) to tell data from a leak.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use stele::event::Event;
use stele::testkit::EventGen;
use tokio::sync::watch;

mod common;
use common::{
    base_time, connect, enc, exchange, find, lock, now_micros, request, strip_ansi, DAY_MICROS,
};

/// The bound on the daemon's resident set size (VmRSS, MiB) over the whole run, for
/// the default 30-minute run. Measured (module documentation, "The RSS bound"): peaks
/// of 362 to 526 MiB over 15 minutes, growing ≈0.3 MiB/s; ≈800–850 MiB extrapolated
/// to 30 minutes.
const RSS_MAX_MIB: u64 = 1024;
/// Shortest and longest run accepted (`--minutes`).
const MINUTES_MIN: u64 = 1;
const MINUTES_MAX: u64 = 24 * 60;
/// Longest wait for one answer before the request counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for `Listening on` after a (re)start: recovery and index catch-up.
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest wait for the daemon to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the load tasks to finish once told to stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at one ingest request before it is abandoned (≈ 200 ms apart while the
/// daemon is up; waiting for a restart does not count).
const INGEST_ATTEMPTS_MAX: u32 = 50;
/// How often retention's state is polled.
const RETENTION_POLL: Duration = Duration::from_secs(2);
/// How often the daemon's RSS is sampled.
const RSS_EVERY: Duration = Duration::from_millis(500);
/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Failure messages kept (all are counted).
const FAILURES_KEPT: usize = 50;
/// Recently acknowledged events kept for get-by-id queries.
const RECENT_KEPT: usize = 10_000;
/// Disk per ≈500-byte event: segments (≈490 B) and both indexes (≈270 B), measured
/// after a 10-minute run (427 MB for 566,000 events), with some headroom.
const DISK_BYTES_PER_EVENT: u64 = 1000;
/// `[limits] disk_reserve_bytes` of the daemon (its default): ingest answers 507 below it.
const DAEMON_DISK_RESERVE: u64 = 256 << 20;
const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";

#[derive(Parser, Debug, Clone)]
#[command(about = "Soak test for `stele serve` (see the doc comment of examples/soak.rs)")]
struct Opts {
    /// How long the load runs, in minutes (1 to 1440).
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seconds between kill -9s of the daemon (each interval ±25 %); 0: never kill.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    kill_every_secs: u64,
    /// The stele binary (default: <target>/release/stele, next to this example's directory).
    #[arg(long, value_name = "PATH")]
    stele: Option<PathBuf>,
    /// Directory under which the run gets a fresh directory (data, configuration, log).
    #[arg(long, value_name = "DIR", default_value = "target/soak")]
    data_parent: PathBuf,
    /// Clients posting NDJSON batches.
    #[arg(long, default_value_t = 2)]
    batch_clients: usize,
    /// Events per batch (2 to 10,000).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Events per second posted in batches, over all batch clients.
    #[arg(long, default_value_t = 800.0)]
    batch_rate: f64,
    /// Clients posting one JSON event per request.
    #[arg(long, default_value_t = 2)]
    single_clients: usize,
    /// Requests per second of single events, over all single clients.
    #[arg(long, default_value_t = 100.0)]
    single_rate: f64,
    /// Approximate encoded size of each event in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 500)]
    event_bytes: usize,
    /// Query clients.
    #[arg(long, default_value_t = 2)]
    query_clients: usize,
    /// Pause between two queries of one client (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 50)]
    query_pause_ms: u64,
    /// SSE clients on /v1/stream (the first unfiltered, the others by tenant).
    #[arg(long, default_value_t = 2)]
    stream_clients: usize,
    /// The daemon's `[log] segment_bytes_max`: segments seal at this size.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    segment_bytes: u64,
    /// Past UTC days seeded before the first start, each held, lifted during the run.
    #[arg(long, default_value_t = 6)]
    seed_days: u32,
    /// Events in each seeded day.
    #[arg(long, default_value_t = 5000)]
    seed_events_per_day: u64,
    /// The daemon's `[retention] interval_secs`.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    retention_interval_secs: u64,
    /// The bound on the daemon's maximum VmRSS, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = RSS_MAX_MIB)]
    rss_max_mib: u64,
    /// Seed of the event generators and of the kill jitter.
    #[arg(long, default_value_t = 0x50a6)]
    seed: u64,
    /// Keep the run's directory after a passing run too.
    #[arg(long)]
    keep: bool,
    /// Print the summary as one JSON object on stdout (the text then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Echo the daemon's log to stderr.
    #[arg(long)]
    daemon_log: bool,
}

fn main() -> ExitCode {
    let o = Opts::parse();
    if let Err(e) = check_opts(&o) {
        eprintln!("soak: {e}");
        return ExitCode::from(2);
    }
    let stele = match preflight(&o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("soak: {e:#}");
            return ExitCode::from(2);
        }
    };
    match soak(&o, stele) {
        Ok(s) => {
            s.print(o.json);
            if s.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("soak: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_opts(o: &Opts) -> Result<()> {
    if !(MINUTES_MIN..=MINUTES_MAX).contains(&o.minutes) {
        bail!(
            "--minutes {} is out of range: a soak runs from {MINUTES_MIN} minute to \
             {MINUTES_MAX} minutes (24 h)",
            o.minutes
        );
    }
    if o.kill_every_secs != 0 && o.kill_every_secs < 5 {
        bail!("--kill-every-secs must be 0 (never) or at least 5");
    }
    if !(2..=10_000).contains(&o.batch) {
        bail!("--batch must be from 2 to 10000 (the daemon's limit per request)");
    }
    for (name, rate, clients) in [
        ("--batch-rate", o.batch_rate, o.batch_clients),
        ("--single-rate", o.single_rate, o.single_clients),
    ] {
        if clients > 0 && !(rate.is_finite() && rate > 0.0) {
            bail!("{name} must be a positive number");
        }
    }
    if o.batch_clients + o.single_clients == 0 {
        bail!("at least one ingest client is needed (--batch-clients, --single-clients)");
    }
    if o.seed_days == 0 || o.seed_days > 60 {
        bail!("--seed-days must be from 1 to 60");
    }
    if o.seed_events_per_day == 0 {
        bail!("--seed-events-per-day must be at least 1");
    }
    if o.retention_interval_secs == 0 {
        bail!("--retention-interval-secs must be at least 1");
    }
    if o.segment_bytes < 4096 {
        bail!("--segment-bytes must be at least 4096 (the daemon's minimum)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Shared run state

/// A seeded past day and the hold on it.
struct SeedDay {
    day: chrono::NaiveDate,
    hold: String,
    first_seq: u64,
    last_seq: u64,
    /// Client-id numbers `first_n..first_n + count`.
    first_n: u64,
    count: u64,
    /// Set just before `DELETE /v1/holds/NAME` is sent (it may take effect unanswered).
    lift_sent: AtomicBool,
    /// Set once the daemon answered 204 (or 404: an earlier unanswered attempt did it).
    lifted_at: Mutex<Option<Instant>>,
    /// When the first retained seq was first seen past this day.
    dropped_seen: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Counters {
    ingest_requests: AtomicU64,
    events_acked_http: AtomicU64,
    retried: AtomicU64,
    replayed: AtomicU64,
    partial_batches: AtomicU64,
    abandoned: AtomicU64,
    ingest_errors: AtomicU64,
    q_list: AtomicU64,
    q_search: AtomicU64,
    q_stats: AtomicU64,
    q_get: AtomicU64,
    q_get_seeded: AtomicU64,
    q_get_dropped_404: AtomicU64,
    q_empty: AtomicU64,
    q_errors: AtomicU64,
    stream_events: AtomicU64,
    stream_connections: AtomicU64,
    stream_errors: AtomicU64,
    retention_polls: AtomicU64,
}

struct Run {
    o: Opts,
    prefix: String,
    started: Instant,
    addr: watch::Receiver<Option<SocketAddr>>,
    stop: AtomicBool,
    next_n: AtomicU64,
    /// Seq of each acknowledged client-id number (0: not acknowledged).
    acked: Mutex<Vec<u64>>,
    /// (n, seq) of recent HTTP acknowledgements, for get-by-id.
    recent: Mutex<VecDeque<(u64, u64)>>,
    days: Vec<SeedDay>,
    /// Highest first retained seq seen.
    first_seq: AtomicU64,
    /// Highest indexed seq seen (`/readyz`).
    indexed_seq: AtomicU64,
    /// The running daemon's pid (0 while none).
    pid: AtomicU32,
    rss_max_kib: AtomicU64,
    rss_anon_max_kib: AtomicU64,
    c: Counters,
    failures: Mutex<(u64, Vec<String>)>,
}

impl Run {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn note(&self, msg: &str) {
        eprintln!("soak: [{:7.1} s] {msg}", self.secs());
    }

    /// Records a failure (the run will exit non-zero) and says so at once.
    fn fail(&self, msg: String) {
        self.note(&format!("FAILURE: {msg}"));
        let mut f = lock(&self.failures);
        f.0 += 1;
        if f.1.len() < FAILURES_KEPT {
            f.1.push(format!("[{:.1} s] {msg}", self.secs()));
        }
    }

    fn id(&self, n: u64) -> String {
        format!("{}{n}", self.prefix)
    }

    fn n_of(&self, id: &str) -> Option<u64> {
        id.strip_prefix(&self.prefix)?.parse().ok()
    }

    /// Records `seq` as the acknowledged seq of client id `n`.
    fn ack(&self, n: u64, seq: u64) {
        let mut a = lock(&self.acked);
        let i = n as usize;
        if a.len() <= i {
            a.resize(i + 1, 0);
        }
        if a[i] != 0 && a[i] != seq {
            let was = a[i];
            drop(a);
            self.fail(format!(
                "id {} was acknowledged at seq {was}, then at seq {seq}",
                self.id(n)
            ));
            return;
        }
        a[i] = seq;
    }
}

// ---------------------------------------------------------------------------------
// The daemon process

/// The daemon's log: appended to RUN/daemon.log; panics and errors noted.
struct DaemonLog {
    file: Mutex<std::fs::File>,
    echo: bool,
    tail: Mutex<VecDeque<String>>,
    errors: AtomicU64,
    warnings: AtomicU64,
    panics: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    /// Lines about torn tails truncated or indexes rebuilt at open (recovery notes).
    recovery_notes: Mutex<Vec<String>>,
}

impl DaemonLog {
    fn line(&self, line: &str) {
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

    fn tail(&self, n: usize) -> String {
        let t = lock(&self.tail);
        let skip = t.len().saturating_sub(n);
        t.iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n    ")
    }
}

struct Daemon {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    /// Spawn → `Listening on`.
    start_secs: f64,
}

/// Starts `stele serve` and waits for its `Listening on ADDR` line.
fn start_daemon(stele: &Path, config: &Path, data: &Path, log: &Arc<DaemonLog>) -> Result<Daemon> {
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
fn stop_daemon(d: &mut Daemon) -> Result<Option<i32>> {
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
fn rss_sampler(run: Arc<Run>, done: Arc<AtomicBool>, mut csv: std::fs::File) {
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

/// What the supervisor did.
#[derive(Default)]
struct Supervised {
    kills: u64,
    unexpected_exits: u64,
    start_secs: Vec<f64>,
}

/// Keeps the daemon running until `end`: kills it on schedule and restarts it, restarts
/// it after an unexpected exit (a failure). Returns the daemon still running.
fn supervise(
    run: &Run,
    tx: &watch::Sender<Option<SocketAddr>>,
    paths: &Paths,
    log: &Arc<DaemonLog>,
    mut d: Daemon,
    end: Instant,
    out: &mut Supervised,
) -> Result<Daemon> {
    let mut rng = EventGen::new(run.o.seed ^ 0x6b11);
    let next_kill = |from: Instant, rng: &mut EventGen| -> Option<Instant> {
        (run.o.kill_every_secs > 0).then(|| {
            let base = run.o.kill_every_secs as f64;
            let jitter = (rng.next_u64() % 1001) as f64 / 1000.0 * 0.5 - 0.25;
            from + Duration::from_secs_f64(base * (1.0 + jitter))
        })
    };
    let mut kill_at = next_kill(Instant::now(), &mut rng);
    let mut last_progress = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if now >= end {
            return Ok(d);
        }
        if now - last_progress >= PROGRESS_EVERY {
            last_progress = now;
            progress(run, out);
        }
        let exited = d.child.try_wait()?;
        let killing = kill_at.is_some_and(|k| now >= k);
        if exited.is_none() && !killing {
            continue;
        }
        if let Some(status) = exited {
            out.unexpected_exits += 1;
            tx.send_replace(None);
            run.pid.store(0, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));
            run.fail(format!(
                "the daemon exited by itself ({status}); its last log lines:\n    {}",
                log.tail(15)
            ));
        } else {
            // SIGKILL in mid-load: requests in flight are cut.
            let _ = d.child.kill();
            let _ = d.child.wait();
            tx.send_replace(None);
            run.pid.store(0, Ordering::Relaxed);
            out.kills += 1;
            log.line(&format!("==== soak: kill -9 number {}", out.kills));
            run.note(&format!(
                "kill -9 number {} (pid {}); restarting",
                out.kills, d.pid
            ));
        }
        d = start_daemon(&paths.stele, &paths.config, &paths.data, log)?;
        out.start_secs.push(d.start_secs);
        run.pid.store(d.pid, Ordering::Relaxed);
        tx.send_replace(Some(d.addr));
        run.note(&format!(
            "restarted in {:.2} s, listening on {}",
            d.start_secs, d.addr
        ));
        kill_at = next_kill(Instant::now(), &mut rng);
    }
}

fn progress(run: &Run, sup: &Supervised) {
    let c = &run.c;
    run.note(&format!(
        "{} events acknowledged over HTTP, {} queries, {} stream events, {} kills, first \
         retained seq {}, max RSS {:.1} MiB",
        c.events_acked_http.load(Ordering::Relaxed),
        c.q_list.load(Ordering::Relaxed)
            + c.q_search.load(Ordering::Relaxed)
            + c.q_stats.load(Ordering::Relaxed)
            + c.q_get.load(Ordering::Relaxed)
            + c.q_get_seeded.load(Ordering::Relaxed),
        c.stream_events.load(Ordering::Relaxed),
        sup.kills,
        run.first_seq.load(Ordering::Relaxed),
        run.rss_max_kib.load(Ordering::Relaxed) as f64 / 1024.0
    ));
}

// ---------------------------------------------------------------------------------
// HTTP

/// Why a call got no answer.
enum CallError {
    /// The run is stopping (no daemon to wait for).
    Stopping,
    /// The connection failed or timed out.
    Transport(String),
}

/// One keep-alive connection to whichever daemon is current, re-established after an
/// error or a restart (waiting while the daemon is down).
struct Client {
    run: Arc<Run>,
    addr: watch::Receiver<Option<SocketAddr>>,
    conn: Option<(SocketAddr, SendRequest<Full<Bytes>>)>,
}

/// Waits until a daemon is listening (or the run stops: `None`).
async fn current_addr(
    run: &Run,
    rx: &mut watch::Receiver<Option<SocketAddr>>,
) -> Option<SocketAddr> {
    loop {
        if let Some(a) = *rx.borrow_and_update() {
            return Some(a);
        }
        if run.stopping() {
            return None;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

impl Client {
    fn new(run: &Arc<Run>) -> Client {
        Client {
            run: run.clone(),
            addr: run.addr.clone(),
            conn: None,
        }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        ctype: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let Some(addr) = current_addr(&self.run, &mut self.addr).await else {
            return Err(CallError::Stopping);
        };
        if self.conn.as_ref().is_some_and(|(a, _)| *a != addr) {
            self.conn = None;
        }
        let sender = match &mut self.conn {
            Some((_, s)) => s,
            None => {
                let s = connect(addr).await.map_err(CallError::Transport)?;
                &mut self.conn.insert((addr, s)).1
            }
        };
        if let Err(e) = sender.ready().await {
            self.conn = None;
            return Err(CallError::Transport(format!("the connection closed: {e}")));
        }
        let req = request(&addr.to_string(), None, method, path, ctype, body);
        let exchange = exchange(sender, req);
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.conn = None;
                Err(CallError::Transport(format!("{path}: {e}")))
            }
            Err(_) => {
                self.conn = None;
                Err(CallError::Transport(format!(
                    "{path}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// A GET answered 200 with JSON; other answers are failures (`None`), transport
    /// errors are counted in `errors` and `None`.
    async fn get_json(&mut self, path: &str, errors: &AtomicU64) -> Option<Value> {
        match self.call(Method::GET, path, None, Bytes::new()).await {
            Ok((StatusCode::OK, body)) => match serde_json::from_slice(&body) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.run
                        .fail(format!("GET {path}: 200 with invalid JSON: {e}"));
                    None
                }
            },
            Ok((status, body)) => {
                self.run
                    .fail(format!("GET {path} answered {status}: {}", snippet(&body)));
                None
            }
            Err(CallError::Stopping) => None,
            Err(CallError::Transport(_)) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            }
        }
    }
}

fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(300).collect()
}

// ---------------------------------------------------------------------------------
// Seeding past days

/// Writes `--seed-days` past UTC days (today − days − 1 … today − 2, all past a 1-day
/// TTL) through the library's log with a manual clock, seals the last one, and holds
/// each day in `DATA_DIR/holds.json`.
fn seed_days(o: &Opts, data: &Path, prefix: &str, next_n: &AtomicU64) -> Result<Vec<SeedDay>> {
    use stele::clock::ManualClock;
    use stele::log::{Log, LogConfig};
    let today = now_micros() / DAY_MICROS;
    let first_day = today - i64::from(o.seed_days) - 1;
    let clock = Arc::new(ManualClock::new(first_day * DAY_MICROS + DAY_MICROS / 2));
    let cfg = LogConfig {
        segment_bytes_max: o.segment_bytes,
        ..LogConfig::default()
    };
    let log = Log::open(data, cfg, clock.clone()).context("cannot open the log to seed it")?;
    let mut gen = EventGen::new(o.seed ^ 0x5eed);
    let mut days = Vec::new();
    for i in 0..i64::from(o.seed_days) {
        let day_start = (first_day + i) * DAY_MICROS;
        clock.set(day_start + DAY_MICROS / 2);
        gen = gen.with_base_time(day_start);
        let first_n = next_n.load(Ordering::Relaxed);
        let mut first_seq = None;
        let mut last_seq = 0;
        let mut left = o.seed_events_per_day;
        while left > 0 {
            let k = left.min(500);
            let mut evs: Vec<Event> = Vec::with_capacity(k as usize);
            for _ in 0..k {
                let mut ev = gen.sized(o.event_bytes);
                ev.id = format!("{prefix}{}", next_n.fetch_add(1, Ordering::Relaxed));
                evs.push(ev);
            }
            let a = log
                .append(&evs, &stele::event::Provenance::cli())
                .context("cannot append seeded events")?;
            first_seq.get_or_insert(a.first_seq);
            last_seq = a.last_seq();
            left -= k;
        }
        let day = chrono::DateTime::from_timestamp_micros(day_start)
            .ok_or_else(|| anyhow!("bad day"))?
            .date_naive();
        days.push(SeedDay {
            day,
            hold: format!("soak-{day}"),
            first_seq: first_seq.unwrap_or(1),
            last_seq,
            first_n,
            count: o.seed_events_per_day,
            lift_sent: AtomicBool::new(false),
            lifted_at: Mutex::new(None),
            dropped_seen: Mutex::new(None),
        });
    }
    // Seal the last seeded day (its day is over by the next midnight).
    clock.set((first_day + i64::from(o.seed_days)) * DAY_MICROS + DAY_MICROS / 2);
    log.rotate_if_day_over()
        .context("cannot seal the last seeded day")?;
    log.close();
    let holds: Vec<stele::retention::Hold> = days
        .iter()
        .map(|d| stele::retention::Hold {
            name: d.hold.clone(),
            tenant: None,
            from: Some(d.day),
            until: Some(d.day),
            reason: "soak: lifted during the run".into(),
        })
        .collect();
    stele::retention::save_holds(data, &holds).context("cannot write holds.json")?;
    Ok(days)
}

// ---------------------------------------------------------------------------------
// Ingest

/// Posts one body until it is answered (retrying with the same ids after failures).
async fn post(run: &Run, client: &mut Client, ns: &[u64], ctype: &str, body: Bytes) {
    let mut attempts = 0u32;
    let mut last_error = String::new();
    loop {
        let answer = client
            .call(Method::POST, "/v1/events", Some(ctype), body.clone())
            .await;
        match answer {
            Ok((status, b)) if status == StatusCode::CREATED || status == StatusCode::OK => {
                run.c.ingest_requests.fetch_add(1, Ordering::Relaxed);
                let replayed = status == StatusCode::OK;
                if replayed {
                    if attempts == 0 {
                        run.fail(format!(
                            "fresh ids {}.. answered 200 replayed: {}",
                            run.id(ns[0]),
                            snippet(&b)
                        ));
                    }
                    run.c.replayed.fetch_add(1, Ordering::Relaxed);
                }
                record_ack(run, ns, &b, replayed);
                return;
            }
            Ok((StatusCode::CONFLICT, b)) if attempts > 0 && ns.len() > 1 => {
                // Part of the batch was stored before the kill; none of it acknowledged.
                run.c.partial_batches.fetch_add(1, Ordering::Relaxed);
                run.note(&format!(
                    "a retried batch ({}..) answered 409: part of it was stored before the \
                     kill: {}",
                    run.id(ns[0]),
                    snippet(&b)
                ));
                return;
            }
            Ok((StatusCode::SERVICE_UNAVAILABLE, b)) => {
                // request-timeout (may be stored) or not ready: retry with the same ids.
                run.c.ingest_errors.fetch_add(1, Ordering::Relaxed);
                if attempts == 0 {
                    run.note(&format!("POST answered 503: {}", snippet(&b)));
                }
            }
            Ok((status, b)) => {
                run.fail(format!(
                    "POST /v1/events ({} events from {}, attempt {}) answered {status}: {}",
                    ns.len(),
                    run.id(ns[0]),
                    attempts + 1,
                    snippet(&b)
                ));
                return;
            }
            Err(CallError::Stopping) => {
                if attempts > 0 {
                    run.c.abandoned.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Err(CallError::Transport(e)) => {
                run.c.ingest_errors.fetch_add(1, Ordering::Relaxed);
                last_error = e;
            }
        }
        attempts += 1;
        if attempts == 1 {
            run.c.retried.fetch_add(1, Ordering::Relaxed);
        }
        if run.stopping() {
            run.c.abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if attempts >= INGEST_ATTEMPTS_MAX {
            run.c.abandoned.fetch_add(1, Ordering::Relaxed);
            run.fail(format!(
                "POST of {} events from {} failed {attempts} times in a row (last: {last_error})",
                ns.len(),
                run.id(ns[0])
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks an ingest answer against the request and records every acknowledged id.
fn record_ack(run: &Run, ns: &[u64], body: &[u8], replayed: bool) {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            run.fail(format!("ingest answer is not JSON: {e}"));
            return;
        }
    };
    let Some(items) = v["events"].as_array() else {
        run.fail(format!("ingest answer without events: {}", snippet(body)));
        return;
    };
    if items.len() != ns.len() {
        run.fail(format!(
            "ingest answer lists {} events for {} posted",
            items.len(),
            ns.len()
        ));
        return;
    }
    let mut prev: Option<u64> = None;
    for (item, &n) in items.iter().zip(ns) {
        let (id, seq) = (item["id"].as_str(), item["seq"].as_u64());
        let (Some(id), Some(seq)) = (id, seq) else {
            run.fail(format!("ingest answer item without id/seq: {item}"));
            return;
        };
        if run.n_of(id) != Some(n) {
            run.fail(format!("ingest answer names {id}, posted {}", run.id(n)));
            return;
        }
        if !replayed && prev.is_some_and(|p| seq != p + 1) {
            run.fail(format!(
                "a 201's seqs are not consecutive at {id} (seq {seq})"
            ));
        }
        prev = Some(seq);
        run.ack(n, seq);
    }
    if !replayed && v["receipt"]["last_seq"].as_u64() != prev {
        run.fail(format!(
            "receipt last_seq {} is not the last event's seq {prev:?}",
            v["receipt"]["last_seq"]
        ));
    }
    run.c
        .events_acked_http
        .fetch_add(ns.len() as u64, Ordering::Relaxed);
    let mut r = lock(&run.recent);
    if let (Some(&n), Some(seq)) = (ns.last(), prev) {
        r.push_back((n, seq));
        if r.len() > RECENT_KEPT {
            r.pop_front();
        }
    }
}

async fn ingest_client(run: Arc<Run>, i: usize, batch: usize, requests_per_sec: f64) {
    let mut gen = EventGen::new(run.o.seed.wrapping_add(1 + i as u64)).with_base_time(base_time());
    let mut client = Client::new(&run);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / requests_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctype = if batch > 1 { NDJSON } else { JSON };
    while !run.stopping() {
        tick.tick().await;
        if run.stopping() {
            break;
        }
        let mut ns = Vec::with_capacity(batch);
        let mut buf = Vec::with_capacity(batch * (run.o.event_bytes + 200));
        for _ in 0..batch {
            let n = run.next_n.fetch_add(1, Ordering::Relaxed);
            let mut ev = gen.sized(run.o.event_bytes);
            ev.id = run.id(n);
            serde_json::to_writer(&mut buf, &ev).expect("events serialize to JSON");
            if batch > 1 {
                buf.push(b'\n');
            }
            ns.push(n);
        }
        post(&run, &mut client, &ns, ctype, Bytes::from(buf)).await;
    }
}

// ---------------------------------------------------------------------------------
// Queries

/// Values to query for, drawn from generated events (same distribution as ingested).
struct Picks {
    tenants: Vec<String>,
    actions: Vec<String>,
    users: Vec<String>,
    words: Vec<String>,
}

impl Picks {
    fn new(seed: u64) -> Picks {
        let mut gen = EventGen::new(seed);
        let mut p = Picks {
            tenants: Vec::new(),
            actions: Vec::new(),
            users: Vec::new(),
            words: Vec::new(),
        };
        for _ in 0..200 {
            let ev = gen.sized(500);
            p.tenants.extend(ev.tenant.clone());
            p.actions.push(ev.action.clone());
            p.users.extend(ev.user_id.clone());
            let words = ev
                .description
                .as_deref()
                .unwrap_or("")
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|w| w.len() > 4)
                .map(str::to_ascii_lowercase)
                .take(1)
                .collect::<Vec<_>>();
            p.words.extend(words);
        }
        for v in [&mut p.tenants, &mut p.actions, &mut p.users, &mut p.words] {
            v.sort();
            v.dedup();
            if v.is_empty() {
                v.push("audit".into());
            }
        }
        p
    }
}

fn pick<'a, T>(v: &'a [T], rng: &mut EventGen) -> &'a T {
    &v[(rng.next_u64() % v.len() as u64) as usize]
}

/// Checks a listing: events present, none below the first retained seq seen before.
fn check_listing(run: &Run, path: &str, v: &Value, first_before: u64) {
    let Some(events) = v["events"].as_array() else {
        run.fail(format!("GET {path}: no events array"));
        return;
    };
    if events.is_empty() {
        run.c.q_empty.fetch_add(1, Ordering::Relaxed);
    }
    for e in events {
        match e["seq"].as_u64() {
            Some(s) if s >= first_before => {}
            s => run.fail(format!(
                "GET {path} returned seq {s:?}, below the first retained seq {first_before} \
                 (a dropped event)"
            )),
        }
    }
}

async fn query_client(run: Arc<Run>, i: usize) {
    let picks = Picks::new(run.o.seed ^ 0x9e37 ^ i as u64);
    let mut rng = EventGen::new(run.o.seed.wrapping_mul(31).wrapping_add(i as u64));
    let mut client = Client::new(&run);
    let errors = &run.c.q_errors;
    let mut k = i;
    while !run.stopping() {
        k += 1;
        let first_before = run.first_seq.load(Ordering::Relaxed);
        match k % 8 {
            0 | 1 => {
                let (name, value) = match rng.next_u64() % 4 {
                    0 => ("tenant", pick(&picks.tenants, &mut rng).clone()),
                    1 => ("action", pick(&picks.actions, &mut rng).clone()),
                    2 => ("user_id", pick(&picks.users, &mut rng).clone()),
                    _ => ("min_severity", "warning".to_owned()),
                };
                let path = format!("/v1/events?{name}={}&limit=100", enc(&value));
                if let Some(v) = client.get_json(&path, errors).await {
                    run.c.q_list.fetch_add(1, Ordering::Relaxed);
                    check_listing(&run, &path, &v, first_before);
                }
            }
            2 | 3 => {
                let path = format!(
                    "/v1/search?q={}&limit=100",
                    enc(pick::<String>(&picks.words, &mut rng))
                );
                if let Some(v) = client.get_json(&path, errors).await {
                    run.c.q_search.fetch_add(1, Ordering::Relaxed);
                    check_listing(&run, &path, &v, first_before);
                }
            }
            4 => {
                let path = if rng.next_u64() % 2 == 0 {
                    "/v1/stats?hours=720".to_owned()
                } else {
                    format!(
                        "/v1/stats?interval=day&tenant={}",
                        enc(pick::<String>(&picks.tenants, &mut rng))
                    )
                };
                if let Some(v) = client.get_json(&path, errors).await {
                    run.c.q_stats.fetch_add(1, Ordering::Relaxed);
                    if !v["total"].is_u64() {
                        run.fail(format!(
                            "GET {path}: no total: {}",
                            snippet(v.to_string().as_bytes())
                        ));
                    }
                }
            }
            5 | 6 => get_recent(&run, &mut client, &mut rng).await,
            _ => get_seeded(&run, &mut client, &mut rng).await,
        }
        tokio::time::sleep(Duration::from_millis(run.o.query_pause_ms)).await;
    }
}

/// Get by id of a recently acknowledged event the indexes hold: 200 at its seq.
async fn get_recent(run: &Run, client: &mut Client, rng: &mut EventGen) {
    // What the indexes hold now (a restarted daemon holds at least as much).
    if let Some(v) = client.get_json("/readyz", &run.c.q_errors).await {
        if let Some(s) = v["state"]["indexed_seq"].as_u64() {
            run.indexed_seq.fetch_max(s, Ordering::Relaxed);
        }
    }
    let indexed = run.indexed_seq.load(Ordering::Relaxed);
    let target = {
        let r = lock(&run.recent);
        (0..8)
            .filter(|_| !r.is_empty())
            .map(|_| r[(rng.next_u64() % r.len() as u64) as usize])
            .find(|&(_, s)| s <= indexed)
    };
    let Some((n, seq)) = target else { return };
    let path = format!("/v1/events/{}", enc(&run.id(n)));
    match client.call(Method::GET, &path, None, Bytes::new()).await {
        Ok((StatusCode::OK, b)) => {
            run.c.q_get.fetch_add(1, Ordering::Relaxed);
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if v["seq"].as_u64() != Some(seq) || v["id"].as_str() != Some(&run.id(n)) {
                run.fail(format!(
                    "GET {path}: expected seq {seq}, got {}",
                    snippet(&b)
                ));
            }
        }
        Ok((status, b)) => run.fail(format!(
            "GET {path} (acknowledged at seq {seq}, indexed through {indexed}) answered \
             {status}: {}",
            snippet(&b)
        )),
        Err(CallError::Stopping) => {}
        Err(CallError::Transport(_)) => {
            run.c.q_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Get by id of a seeded event: 200 while its day is held, 404 once dropped.
async fn get_seeded(run: &Run, client: &mut Client, rng: &mut EventGen) {
    let d = pick(&run.days, rng);
    let off = rng.next_u64() % d.count;
    let n = d.first_n + off;
    let seq = lock(&run.acked).get(n as usize).copied().unwrap_or(0);
    let lift_sent_before = d.lift_sent.load(Ordering::Relaxed);
    let first_before = run.first_seq.load(Ordering::Relaxed);
    let path = format!("/v1/events/{}", enc(&run.id(n)));
    match client.call(Method::GET, &path, None, Bytes::new()).await {
        Ok((StatusCode::OK, b)) => {
            run.c.q_get_seeded.fetch_add(1, Ordering::Relaxed);
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if v["seq"].as_u64() != Some(seq) {
                run.fail(format!(
                    "GET {path}: expected seq {seq}, got {}",
                    snippet(&b)
                ));
            }
            if seq < first_before {
                run.fail(format!(
                    "GET {path} returned seq {seq}, below the first retained seq \
                     {first_before} (dropped by retention)"
                ));
            }
        }
        Ok((StatusCode::NOT_FOUND, b)) => {
            run.c.q_get_seeded.fetch_add(1, Ordering::Relaxed);
            if seq < first_before {
                run.c.q_get_dropped_404.fetch_add(1, Ordering::Relaxed);
            } else if !lift_sent_before && !d.lift_sent.load(Ordering::Relaxed) {
                run.fail(format!(
                    "GET {path} (seeded at seq {seq}, day {} still held) answered 404: {}",
                    d.day,
                    snippet(&b)
                ));
            }
        }
        Ok((status, b)) => run.fail(format!(
            "GET {path} (seeded at seq {seq}) answered {status}: {}",
            snippet(&b)
        )),
        Err(CallError::Stopping) => {}
        Err(CallError::Transport(_)) => {
            run.c.q_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------
// Streams

/// One SSE event block: `(id, seq in data)`; `None` for comments only.
fn sse_block(block: &[u8]) -> Option<(Option<u64>, Option<u64>)> {
    let text = String::from_utf8_lossy(block);
    let (mut id, mut data, mut any) = (None, String::new(), false);
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        any = true;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.trim().parse::<u64>().ok(),
            "data" => data.push_str(value),
            _ => {}
        }
    }
    if !any {
        return None;
    }
    let seq = serde_json::from_str::<Value>(&data)
        .ok()
        .and_then(|v| v["seq"].as_u64());
    Some((id, seq))
}

/// Follows `/v1/stream` across restarts. Client 0 is unfiltered and must see every seq
/// in order; the others (filtered by a tenant) must see increasing seqs.
async fn stream_client(run: Arc<Run>, i: usize) {
    let picks = Picks::new(run.o.seed ^ 0x55e);
    let filter = (i > 0).then(|| picks.tenants[i % picks.tenants.len()].clone());
    let path = match &filter {
        None => "/v1/stream".to_owned(),
        Some(t) => format!("/v1/stream?tenant={}", enc(t)),
    };
    let mut rx = run.addr.clone();
    let mut last: Option<u64> = None;
    'connections: while !run.stopping() {
        let Some(addr) = current_addr(&run, &mut rx).await else {
            return;
        };
        let opened = async {
            let mut sender = connect(addr).await?;
            let mut req = Request::builder()
                .method(Method::GET)
                .uri(&path)
                .header("host", addr.to_string())
                .header("accept", "text/event-stream");
            if let Some(l) = last {
                req = req.header("last-event-id", l.to_string());
            }
            let req = req
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
                .await
                .map_err(|_| "no answer".to_owned())?
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            if status != StatusCode::OK {
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                return Err(format!("answered {status}: {}", snippet(&body)));
            }
            Ok((sender, resp.into_body()))
        }
        .await;
        let (_sender, mut body) = match opened {
            Ok(x) => x,
            Err(e) => {
                if e.starts_with("answered") {
                    run.fail(format!("GET {path} (Last-Event-ID {last:?}) {e}"));
                } else {
                    run.c.stream_errors.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        run.c.stream_connections.fetch_add(1, Ordering::Relaxed);
        let mut conn_last: Option<u64> = None;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if run.stopping() {
                        return;
                    }
                    continue;
                }
            };
            match frame {
                Some(Ok(f)) => {
                    let Ok(data) = f.into_data() else { continue };
                    buf.extend_from_slice(&data);
                    while let Some(pos) = find(&buf, b"\n\n") {
                        let block: Vec<u8> = buf.drain(..pos + 2).collect();
                        let Some((id, seq)) = sse_block(&block) else {
                            continue;
                        };
                        let Some(seq) = id.filter(|id| Some(*id) == seq) else {
                            run.fail(format!(
                                "{path}: malformed event (id {id:?}, data seq {seq:?})"
                            ));
                            continue;
                        };
                        run.c.stream_events.fetch_add(1, Ordering::Relaxed);
                        if conn_last.is_some_and(|l| seq <= l) {
                            run.fail(format!(
                                "{path}: seq {seq} after {conn_last:?} in one connection \
                                 (duplicate or out of order)"
                            ));
                        } else if last.is_some_and(|l| seq <= l) {
                            run.fail(format!(
                                "{path}: seq {seq} after a reconnect with Last-Event-ID {last:?}"
                            ));
                        } else if filter.is_none() && last.is_some_and(|l| seq != l + 1) {
                            run.fail(format!(
                                "{path}: seq {seq} follows {last:?}: seqs {}..{seq} never \
                                 arrived",
                                last.unwrap_or(0) + 1
                            ));
                        }
                        conn_last = Some(seq);
                        last = Some(last.map_or(seq, |l| l.max(seq)));
                    }
                }
                Some(Err(_)) | None => {
                    // The daemon was killed or stopped: reconnect with Last-Event-ID.
                    continue 'connections;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Retention

/// Lifts the holds on schedule and watches the first retained seq.
async fn retention_watch(run: Arc<Run>, load: Duration) {
    let mut client = Client::new(&run);
    let k = run.days.len() as u32;
    // Hold i is lifted at (i + 1) / (k + 1) of the load time.
    let due: Vec<Instant> = (0..k)
        .map(|i| run.started + load * (i + 1) / (k + 1))
        .collect();
    while !run.stopping() {
        // Lift what is due, oldest first.
        for (d, at) in run.days.iter().zip(&due) {
            if Instant::now() < *at || lock(&d.lifted_at).is_some() {
                continue;
            }
            d.lift_sent.store(true, Ordering::Relaxed);
            let path = format!("/v1/holds/{}", d.hold);
            match client.call(Method::DELETE, &path, None, Bytes::new()).await {
                Ok((StatusCode::NO_CONTENT | StatusCode::NOT_FOUND, _)) => {
                    *lock(&d.lifted_at) = Some(Instant::now());
                    run.note(&format!(
                        "lifted hold {} (seqs {}..={})",
                        d.hold, d.first_seq, d.last_seq
                    ));
                }
                Ok((status, b)) => {
                    run.fail(format!("DELETE {path} answered {status}: {}", snippet(&b)))
                }
                Err(_) => break,
            }
        }
        if let Some(v) = client.get_json("/v1/retention", &run.c.q_errors).await {
            run.c.retention_polls.fetch_add(1, Ordering::Relaxed);
            if let Some(first) = v["first_seq"].as_u64() {
                observe_first_seq(&run, first);
            } else {
                run.fail(format!("GET /v1/retention without first_seq: {v}"));
            }
        }
        tokio::time::sleep(RETENTION_POLL).await;
    }
}

/// The first retained seq must never go back nor pass a day still held.
fn observe_first_seq(run: &Run, first: u64) {
    let prev = run.first_seq.fetch_max(first, Ordering::Relaxed);
    if first < prev {
        run.fail(format!(
            "the first retained seq went back from {prev} to {first}"
        ));
    }
    for d in &run.days {
        if first > d.last_seq {
            let mut seen = lock(&d.dropped_seen);
            if seen.is_none() {
                *seen = Some(Instant::now());
                let after = lock(&d.lifted_at)
                    .map(|t| {
                        format!(
                            "{:.1} s after its hold was lifted",
                            t.elapsed().as_secs_f64()
                        )
                    })
                    .unwrap_or_else(|| "before the lift was answered".into());
                run.note(&format!(
                    "retention dropped {} (seqs {}..={}), {after}",
                    d.day, d.first_seq, d.last_seq
                ));
            }
            if !d.lift_sent.load(Ordering::Relaxed) {
                run.fail(format!(
                    "retention dropped {} (seqs {}..={}) while it was held (first retained seq \
                     {first})",
                    d.day, d.first_seq, d.last_seq
                ));
            }
        } else if first > d.first_seq {
            run.fail(format!(
                "the first retained seq {first} is inside day {} (seqs {}..={}): retention \
                 drops whole days",
                d.day, d.first_seq, d.last_seq
            ));
        }
    }
}

// ---------------------------------------------------------------------------------
// The run

struct Paths {
    stele: PathBuf,
    run_dir: PathBuf,
    data: PathBuf,
    config: PathBuf,
    final_config: PathBuf,
}

/// What the final checks found.
#[derive(Default)]
struct Final {
    first_seq: u64,
    last_seq: u64,
    exported: u64,
    export_secs: f64,
    dropped_acked: u64,
    dropped_logged: u64,
    stored_unacked: u64,
    verify: String,
    check: String,
}

struct Summary {
    json: Value,
    text: String,
    failures: Vec<String>,
}

impl Summary {
    fn print(&self, json: bool) {
        if json {
            eprint!("{}", self.text);
            println!("{}", self.json);
        } else {
            print!("{}", self.text);
        }
    }
}

/// Events per second the ingest clients offer.
fn ingest_rate(o: &Opts) -> f64 {
    let batch = if o.batch_clients > 0 {
        o.batch_rate
    } else {
        0.0
    };
    let single = if o.single_clients > 0 {
        o.single_rate
    } else {
        0.0
    };
    batch + single
}

/// Disk the run needs: every event offered, seeded ones included, at
/// [`DISK_BYTES_PER_EVENT`] (scaled to `--event-bytes`), plus the daemon's reserve.
fn disk_needed(o: &Opts) -> u64 {
    let events = ingest_rate(o) * (o.minutes * 60) as f64
        + (u64::from(o.seed_days) * o.seed_events_per_day) as f64;
    let per_event = DISK_BYTES_PER_EVENT as f64 * o.event_bytes.max(200) as f64 / 500.0;
    (events * per_event) as u64 + DAEMON_DISK_RESERVE
}

fn disk_free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn default_stele() -> PathBuf {
    // <target>/release/examples/soak → <target>/release/stele
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("stele")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("target/release/stele"))
}

/// Finds the binary and checks the disk; an error refuses the run (exit 2).
fn preflight(o: &Opts) -> Result<PathBuf> {
    let stele = o.stele.clone().unwrap_or_else(default_stele);
    if !stele.is_file() {
        bail!(
            "the stele binary {} does not exist: build it with `cargo build --release --bin \
             stele` (or pass --stele PATH)",
            stele.display()
        );
    }
    std::fs::create_dir_all(&o.data_parent)
        .with_context(|| format!("cannot create {}", o.data_parent.display()))?;
    let need = disk_needed(o);
    if let Some(free) = disk_free_bytes(&o.data_parent) {
        if free < need {
            bail!(
                "this soak needs about {:.1} GB in {} ({:.0} events/s for {} minutes at ≈{} \
                 bytes of segments and indexes each, plus the daemon's 256 MiB disk reserve); \
                 only {:.1} GB are free: lower --batch-rate/--single-rate or --minutes, or \
                 free space",
                need as f64 / 1e9,
                o.data_parent.display(),
                ingest_rate(o),
                o.minutes,
                DISK_BYTES_PER_EVENT,
                free as f64 / 1e9
            );
        }
    }
    Ok(stele)
}

fn soak(o: &Opts, stele: PathBuf) -> Result<Summary> {
    let tag = format!("{:x}", now_micros() / 1_000_000);
    let run_dir = o
        .data_parent
        .join(format!("run-{tag}-{}", std::process::id()));
    let data = run_dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let paths = Paths {
        stele,
        data,
        config: run_dir.join("stele.toml"),
        final_config: run_dir.join("stele-final.toml"),
        run_dir,
    };
    let log_section = format!("[log]\nsegment_bytes_max = {}\n", o.segment_bytes);
    std::fs::write(
        &paths.config,
        format!(
            "# Written by examples/soak.rs.\n{log_section}\n[retention]\ndays = 1\n\
             interval_secs = {}\n",
            o.retention_interval_secs
        ),
    )?;
    std::fs::write(
        &paths.final_config,
        format!("# Written by examples/soak.rs: the final check, no retention.\n{log_section}"),
    )?;
    eprintln!(
        "soak: {} minutes, kill -9 every {}, data in {}, daemon {}",
        o.minutes,
        if o.kill_every_secs == 0 {
            "never".to_owned()
        } else {
            format!("~{} s", o.kill_every_secs)
        },
        paths.data.display(),
        paths.stele.display()
    );

    let prefix = format!("soak{tag}-");
    let next_n = AtomicU64::new(0);
    let seeding = Instant::now();
    let days = seed_days(o, &paths.data, &prefix, &next_n)?;
    let seeded: u64 = days.iter().map(|d| d.count).sum();
    eprintln!(
        "soak: seeded {} past days ({} to {}, {seeded} events, seqs 1..={}) in {:.1} s, each \
         under a legal hold",
        days.len(),
        days[0].day,
        days[days.len() - 1].day,
        days[days.len() - 1].last_seq,
        seeding.elapsed().as_secs_f64()
    );

    let dlog = Arc::new(DaemonLog {
        file: Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(paths.run_dir.join("daemon.log"))?,
        ),
        echo: o.daemon_log,
        tail: Mutex::default(),
        errors: AtomicU64::new(0),
        warnings: AtomicU64::new(0),
        panics: AtomicU64::new(0),
        first_errors: Mutex::default(),
        recovery_notes: Mutex::default(),
    });
    let first = start_daemon(&paths.stele, &paths.config, &paths.data, &dlog)?;
    let (tx, rx) = watch::channel(Some(first.addr));
    let mut acked = vec![0u64; seeded as usize];
    for d in &days {
        for k in 0..d.count {
            acked[(d.first_n + k) as usize] = d.first_seq + k;
        }
    }
    let run = Arc::new(Run {
        o: o.clone(),
        prefix,
        started: Instant::now(),
        addr: rx,
        stop: AtomicBool::new(false),
        next_n,
        acked: Mutex::new(acked),
        recent: Mutex::default(),
        days,
        first_seq: AtomicU64::new(1),
        indexed_seq: AtomicU64::new(0),
        pid: AtomicU32::new(first.pid),
        rss_max_kib: AtomicU64::new(0),
        rss_anon_max_kib: AtomicU64::new(0),
        c: Counters::default(),
        failures: Mutex::default(),
    });
    run.note(&format!(
        "daemon listening on {} after {:.2} s",
        first.addr, first.start_secs
    ));
    let mut sup = Supervised {
        start_secs: vec![first.start_secs],
        ..Supervised::default()
    };
    let sampler_done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (run, done) = (run.clone(), sampler_done.clone());
        let csv = std::fs::File::create(paths.run_dir.join("rss.csv"))?;
        std::thread::spawn(move || rss_sampler(run, done, csv))
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let load = Duration::from_secs(o.minutes * 60);
    let end = run.started + load;
    let mut tasks = Vec::new();
    for i in 0..o.batch_clients {
        let rps = o.batch_rate / o.batch as f64 / o.batch_clients as f64;
        tasks.push(rt.spawn(ingest_client(run.clone(), i, o.batch, rps)));
    }
    for i in 0..o.single_clients {
        let rps = o.single_rate / o.single_clients as f64;
        tasks.push(rt.spawn(ingest_client(run.clone(), 100 + i, 1, rps)));
    }
    for i in 0..o.query_clients {
        tasks.push(rt.spawn(query_client(run.clone(), i)));
    }
    for i in 0..o.stream_clients {
        tasks.push(rt.spawn(stream_client(run.clone(), i)));
    }
    tasks.push(rt.spawn(retention_watch(run.clone(), load)));

    let supervised = supervise(&run, &tx, &paths, &dlog, first, end, &mut sup);
    run.stop.store(true, Ordering::Relaxed);
    run.note("load time is over: stopping the clients");
    let drained = rt.block_on(async {
        tokio::time::timeout(DRAIN_TIMEOUT, async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await
    });
    if drained.is_err() {
        run.fail(format!(
            "the clients did not finish within {} s of the end",
            DRAIN_TIMEOUT.as_secs()
        ));
    }
    let load_secs = run.secs();
    let mut d = match supervised {
        Ok(d) => d,
        Err(e) => {
            sampler_done.store(true, Ordering::Relaxed);
            return Err(e.context(format!(
                "the daemon could not be restarted; data kept in {}",
                paths.run_dir.display()
            )));
        }
    };
    // Graceful stop: exit 0 required.
    tx.send_replace(None);
    match stop_daemon(&mut d) {
        Ok(Some(0)) => run.note("the daemon stopped on SIGTERM with exit 0"),
        Ok(code) => run.fail(format!("the daemon exited {code:?} on SIGTERM, not 0")),
        Err(e) => run.fail(format!("{e:#}")),
    }
    run.pid.store(0, Ordering::Relaxed);

    let fin = final_checks(&run, &rt, &paths, &dlog, &tx);
    sampler_done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let fin = match fin {
        Ok(f) => f,
        Err(e) => {
            run.fail(format!("the final checks could not run: {e:#}"));
            Final::default()
        }
    };
    let panics = dlog.panics.load(Ordering::Relaxed);
    if panics > 0 {
        run.fail(format!(
            "the daemon logged {panics} panics (see {})",
            paths.run_dir.join("daemon.log").display()
        ));
    }
    let rss_max_mib = run.rss_max_kib.load(Ordering::Relaxed) as f64 / 1024.0;
    if rss_max_mib >= o.rss_max_mib as f64 {
        run.fail(format!(
            "the daemon's max RSS {rss_max_mib:.1} MiB is not below the bound of {} MiB",
            o.rss_max_mib
        ));
    }
    let summary = summarize(&run, &sup, &fin, &dlog, &paths, load_secs);
    if summary.failures.is_empty() && !o.keep {
        let _ = std::fs::remove_dir_all(&paths.run_dir);
    }
    Ok(summary)
}

/// Exports everything from a fresh daemon and checks it; runs verify and check.
fn final_checks(
    run: &Arc<Run>,
    rt: &tokio::runtime::Runtime,
    paths: &Paths,
    dlog: &Arc<DaemonLog>,
    tx: &watch::Sender<Option<SocketAddr>>,
) -> Result<Final> {
    let mut fin = Final::default();
    // Unstop briefly so that a Client waits for this daemon.
    run.stop.store(false, Ordering::Relaxed);
    let mut d = start_daemon(&paths.stele, &paths.final_config, &paths.data, dlog)?;
    run.pid.store(d.pid, Ordering::Relaxed);
    tx.send_replace(Some(d.addr));
    run.note(&format!(
        "final check: daemon restarted in {:.2} s; exporting",
        d.start_secs
    ));
    let checked = rt.block_on(export_check(run, &mut fin));
    run.stop.store(true, Ordering::Relaxed);
    tx.send_replace(None);
    match stop_daemon(&mut d) {
        Ok(Some(0)) => {}
        Ok(code) => run.fail(format!(
            "the final daemon exited {code:?} on SIGTERM, not 0"
        )),
        Err(e) => run.fail(format!("{e:#}")),
    }
    run.pid.store(0, Ordering::Relaxed);
    checked?;

    // The retention log: drops cover exactly seqs 1..first − 1.
    let rlog = std::fs::read_to_string(paths.data.join("retention.log")).unwrap_or_default();
    let mut next = 1u64;
    for line in rlog.lines() {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("retention.log line is not JSON: {line}"))?;
        let (Some(a), Some(b), Some(n)) = (
            v["first_seq"].as_u64(),
            v["last_seq"].as_u64(),
            v["events"].as_u64(),
        ) else {
            bail!("retention.log line without first_seq/last_seq/events: {line}");
        };
        if a != next {
            run.fail(format!(
                "retention.log: a drop starts at seq {a}, expected {next}"
            ));
        }
        let day = v["day"].as_str().unwrap_or("");
        if !run
            .days
            .iter()
            .any(|d| d.day.to_string() == day && d.lift_sent.load(Ordering::Relaxed))
        {
            run.fail(format!(
                "retention.log: dropped day {day}, which was not a lifted seeded day"
            ));
        }
        fin.dropped_logged += n;
        next = b + 1;
    }
    if next != fin.first_seq {
        run.fail(format!(
            "retention.log accounts for seqs 1..{next}, but the log starts at seq {}",
            fin.first_seq
        ));
    }
    for d in &run.days {
        if lock(&d.lifted_at).is_some() && fin.first_seq <= d.last_seq {
            run.fail(format!(
                "the hold on {} was lifted, but the day was never dropped",
                d.day
            ));
        }
    }

    // Offline: verify the log, compare the indexes with it.
    let verify = Command::new(&paths.stele)
        .args(["verify", "-q"])
        .arg(&paths.data)
        .output()
        .context("cannot run stele verify")?;
    fin.verify = describe_exit(&verify);
    if !verify.status.success() {
        run.fail(format!(
            "stele verify -q {} {}:\n{}{}",
            paths.data.display(),
            fin.verify,
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        ));
    }
    let check = Command::new(&paths.stele)
        .args(["check", "--data-dir"])
        .arg(&paths.data)
        .output()
        .context("cannot run stele check")?;
    fin.check = describe_exit(&check);
    if !check.status.success() {
        run.fail(format!(
            "stele check --data-dir {} {}:\n{}{}",
            paths.data.display(),
            fin.check,
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    run.note(&format!(
        "stele verify {}, stele check {}",
        fin.verify, fin.check
    ));
    Ok(fin)
}

fn describe_exit(out: &std::process::Output) -> String {
    match out.status.code() {
        Some(c) => format!("exit {c}"),
        None => format!("{}", out.status),
    }
}

/// `GET /v1/segments` and `GET /v1/export?format=ndjson`: every acknowledged event at or
/// after the first retained seq exactly once, at its seq.
async fn export_check(run: &Arc<Run>, fin: &mut Final) -> Result<()> {
    let mut client = Client::new(run);
    let errors = AtomicU64::new(0);
    let segs = client
        .get_json("/v1/segments", &errors)
        .await
        .ok_or_else(|| anyhow!("GET /v1/segments failed"))?;
    let list = segs["segments"]
        .as_array()
        .ok_or_else(|| anyhow!("GET /v1/segments: no segments array"))?;
    let first = list
        .first()
        .and_then(|s| s["first_seq"].as_u64())
        .ok_or_else(|| anyhow!("GET /v1/segments: no first segment"))?;
    let last = list
        .iter()
        .filter_map(|s| s["last_seq"].as_u64())
        .max()
        .unwrap_or(first - 1);
    fin.first_seq = first;
    fin.last_seq = last;
    observe_first_seq(run, first);

    let Some(addr) = *run.addr.borrow() else {
        bail!("no daemon for the export");
    };
    let started = Instant::now();
    let mut sender = connect(addr).await.map_err(|e| anyhow!(e))?;
    let req = request(
        &addr.to_string(),
        None,
        Method::GET,
        "/v1/export?format=ndjson",
        None,
        Bytes::new(),
    );
    let resp = sender.send_request(req).await?;
    if resp.status() != StatusCode::OK {
        let b = resp.into_body().collect().await?.to_bytes();
        bail!("GET /v1/export answered: {}", snippet(&b));
    }
    let mut body = resp.into_body();
    let n_max = run.next_n.load(Ordering::Relaxed) as usize;
    let mut seen = vec![0u8; n_max];
    let span = (last + 1).saturating_sub(first) as usize;
    let mut seq_seen = vec![false; span];
    let acked = lock(&run.acked).clone();
    let (mut foreign, mut dup_ids, mut dup_seqs, mut out_of_range, mut moved) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut buf: Vec<u8> = Vec::new();
    #[derive(serde::Deserialize)]
    struct Row {
        id: String,
        seq: u64,
    }
    let mut line_no = 0u64;
    let mut handle = |line: &[u8], run: &Run| {
        line_no += 1;
        let row: Row = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                run.fail(format!("export line {line_no} is not an event: {e}"));
                return;
            }
        };
        let Some(n) = run.n_of(&row.id).filter(|&n| (n as usize) < n_max) else {
            foreign += 1;
            if foreign <= 5 {
                run.fail(format!(
                    "export holds a foreign id {:?} (seq {})",
                    row.id, row.seq
                ));
            }
            return;
        };
        seen[n as usize] = seen[n as usize].saturating_add(1);
        if seen[n as usize] == 2 {
            dup_ids += 1;
            if dup_ids <= 5 {
                run.fail(format!(
                    "id {} appears twice in the export (seq {})",
                    row.id, row.seq
                ));
            }
        }
        if row.seq < first || row.seq > last {
            out_of_range += 1;
            if out_of_range <= 5 {
                run.fail(format!("export seq {} outside {first}..={last}", row.seq));
            }
        } else {
            let s = &mut seq_seen[(row.seq - first) as usize];
            if *s {
                dup_seqs += 1;
                if dup_seqs <= 5 {
                    run.fail(format!("seq {} appears twice in the export", row.seq));
                }
            }
            *s = true;
        }
        let a = acked.get(n as usize).copied().unwrap_or(0);
        if a != 0 && a != row.seq {
            moved += 1;
            if moved <= 5 {
                run.fail(format!(
                    "id {} was acknowledged at seq {a} but is stored at seq {}",
                    row.id, row.seq
                ));
            }
        }
    };
    loop {
        match tokio::time::timeout(REQUEST_TIMEOUT, body.frame()).await {
            Err(_) => bail!("the export stalled for {} s", REQUEST_TIMEOUT.as_secs()),
            Ok(None) => break,
            Ok(Some(Err(e))) => bail!("the export was cut: {e}"),
            Ok(Some(Ok(f))) => {
                let Ok(data) = f.into_data() else { continue };
                buf.extend_from_slice(&data);
                let mut start = 0;
                while let Some(p) = buf[start..].iter().position(|&b| b == b'\n') {
                    let line = &buf[start..start + p];
                    if !line.is_empty() {
                        handle(line, run);
                    }
                    start += p + 1;
                }
                buf.drain(..start);
            }
        }
    }
    if !buf.is_empty() {
        handle(&buf.clone(), run);
    }
    fin.exported = line_no;
    fin.export_secs = started.elapsed().as_secs_f64();
    let missing_seqs = seq_seen.iter().filter(|s| !**s).count();
    if missing_seqs > 0 {
        run.fail(format!(
            "{missing_seqs} seqs of {first}..={last} are missing from the export"
        ));
    }
    // Every acknowledged event: exported once, or dropped by retention.
    let mut lost = 0u64;
    for (n, &seq) in acked.iter().enumerate() {
        if seq == 0 {
            if seen.get(n).copied().unwrap_or(0) == 1 {
                fin.stored_unacked += 1;
            }
            continue;
        }
        if seq < first {
            fin.dropped_acked += 1;
            let day_ok = run.days.iter().any(|d| {
                (d.first_n..d.first_n + d.count).contains(&(n as u64))
                    && d.lift_sent.load(Ordering::Relaxed)
            });
            if !day_ok {
                lost += 1;
                if lost <= 10 {
                    run.fail(format!(
                        "acknowledged {} (seq {seq}) is below the first retained seq {first} \
                         but was not in a lifted seeded day",
                        run.id(n as u64)
                    ));
                }
            }
        } else if seen.get(n).copied().unwrap_or(0) == 0 {
            lost += 1;
            if lost <= 10 {
                run.fail(format!(
                    "LOST: acknowledged {} (seq {seq}, first retained seq {first}) is not in the \
                     export",
                    run.id(n as u64)
                ));
            }
        }
    }
    if lost > 10 {
        run.fail(format!("{lost} acknowledged events lost in all"));
    }
    run.note(&format!(
        "export: {} events (seqs {first}..={last}) in {:.1} s; {} acknowledged events dropped \
         by retention; {} stored but never acknowledged",
        fin.exported, fin.export_secs, fin.dropped_acked, fin.stored_unacked
    ));
    Ok(())
}

fn summarize(
    run: &Run,
    sup: &Supervised,
    fin: &Final,
    dlog: &DaemonLog,
    paths: &Paths,
    load_secs: f64,
) -> Summary {
    let c = &run.c;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    if fin.dropped_logged != fin.dropped_acked {
        run.fail(format!(
            "retention.log records {} dropped events, {} acknowledged events are below the \
             first retained seq",
            fin.dropped_logged, fin.dropped_acked
        ));
    }
    let failures = lock(&run.failures).clone();
    let acked_total = lock(&run.acked).iter().filter(|s| **s != 0).count() as u64;
    let queries = g(&c.q_list) + g(&c.q_search) + g(&c.q_stats) + g(&c.q_get) + g(&c.q_get_seeded);
    let starts = &sup.start_secs;
    let restart_max = starts.iter().skip(1).copied().fold(0.0, f64::max);
    let restart_mean = if starts.len() > 1 {
        starts[1..].iter().sum::<f64>() / (starts.len() - 1) as f64
    } else {
        0.0
    };
    let lifted = run
        .days
        .iter()
        .filter(|d| lock(&d.lifted_at).is_some())
        .count();
    let drop_lat: Vec<f64> = run
        .days
        .iter()
        .filter_map(|d| {
            let l = (*lock(&d.lifted_at))?;
            let s = (*lock(&d.dropped_seen))?;
            Some(s.saturating_duration_since(l).as_secs_f64())
        })
        .collect();
    let rss = g(&run.rss_max_kib) as f64 / 1024.0;
    let anon = g(&run.rss_anon_max_kib) as f64 / 1024.0;
    let http_acked = g(&c.events_acked_http);
    let json = json!({
        "passed": failures.1.is_empty(),
        "load_secs": load_secs,
        "events_acked": acked_total,
        "events_acked_http": http_acked,
        "events_acked_per_sec": http_acked as f64 / load_secs.max(1e-9),
        "events_seeded": run.days.iter().map(|d| d.count).sum::<u64>(),
        "events_dropped_by_retention": fin.dropped_acked,
        "events_stored_unacked": fin.stored_unacked,
        "ingest_requests": g(&c.ingest_requests),
        "ingest_retried": g(&c.retried),
        "ingest_replayed": g(&c.replayed),
        "ingest_partial_batches": g(&c.partial_batches),
        "ingest_abandoned": g(&c.abandoned),
        "ingest_transport_errors": g(&c.ingest_errors),
        "crashes": sup.kills,
        "unexpected_exits": sup.unexpected_exits,
        "restart_secs_mean": restart_mean,
        "restart_secs_max": restart_max,
        "queries": queries,
        "queries_by_kind": {
            "list": g(&c.q_list), "search": g(&c.q_search), "stats": g(&c.q_stats),
            "get_by_id": g(&c.q_get), "get_seeded": g(&c.q_get_seeded),
            "get_dropped_404": g(&c.q_get_dropped_404), "empty": g(&c.q_empty),
        },
        "query_transport_errors": g(&c.q_errors),
        "stream_events": g(&c.stream_events),
        "stream_connections": g(&c.stream_connections),
        "holds_lifted": lifted,
        "days_dropped": drop_lat.len(),
        "drop_after_lift_secs_max": drop_lat.iter().copied().fold(0.0, f64::max),
        "first_retained_seq": fin.first_seq,
        "last_seq": fin.last_seq,
        "exported": fin.exported,
        "export_secs": fin.export_secs,
        "rss_max_mib": rss,
        "rss_anon_max_mib": anon,
        "rss_bound_mib": run.o.rss_max_mib,
        "verify": fin.verify,
        "check": fin.check,
        "daemon_errors_logged": g(&dlog.errors),
        "daemon_warnings_logged": g(&dlog.warnings),
        "failures": failures.0,
        "failure_messages": failures.1,
        "run_dir": paths.run_dir.display().to_string(),
    });
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nsoak summary ({})",
        if failures.1.is_empty() {
            "PASSED"
        } else {
            "FAILED"
        }
    );
    let _ = writeln!(
        t,
        "  load duration          {load_secs:.1} s (+ final checks)"
    );
    let _ = writeln!(
        t,
        "  events acknowledged    {acked_total} ({http_acked} over HTTP, {:.0}/s; {} seeded)",
        http_acked as f64 / load_secs.max(1e-9),
        json["events_seeded"]
    );
    let _ = writeln!(
        t,
        "  ingest                 {} requests answered, {} retried after a failure ({} \
         answered 200 replayed, {} partial batches 409), {} abandoned",
        g(&c.ingest_requests),
        g(&c.retried),
        g(&c.replayed),
        g(&c.partial_batches),
        g(&c.abandoned)
    );
    let _ = writeln!(
        t,
        "  dropped by retention   {} acknowledged events ({} of {} seeded days, holds lifted: \
         {lifted}; dropped ≤ {:.1} s after the lift)",
        fin.dropped_acked,
        drop_lat.len(),
        run.days.len(),
        json["drop_after_lift_secs_max"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        t,
        "  stored, never acked    {} (in flight at a kill)",
        fin.stored_unacked
    );
    let _ = writeln!(
        t,
        "  crashes (kill -9)      {} (+ {} unexpected exits); restart mean {restart_mean:.2} s, \
         max {restart_max:.2} s",
        sup.kills, sup.unexpected_exits
    );
    let _ = writeln!(
        t,
        "  queries                {queries} (list {}, search {}, stats {}, get {}, get seeded {} \
         of which {} dropped → 404; {} empty)",
        g(&c.q_list),
        g(&c.q_search),
        g(&c.q_stats),
        g(&c.q_get),
        g(&c.q_get_seeded),
        g(&c.q_get_dropped_404),
        g(&c.q_empty)
    );
    let _ = writeln!(
        t,
        "  stream events          {} over {} connections",
        g(&c.stream_events),
        g(&c.stream_connections)
    );
    let _ = writeln!(
        t,
        "  final log              seqs {}..={}, {} exported in {:.1} s",
        fin.first_seq, fin.last_seq, fin.exported, fin.export_secs
    );
    let _ = writeln!(
        t,
        "  max RSS                {rss:.1} MiB (anonymous {anon:.1} MiB); bound {} MiB",
        run.o.rss_max_mib
    );
    let _ = writeln!(t, "  stele verify / check   {} / {}", fin.verify, fin.check);
    let _ = writeln!(
        t,
        "  daemon log             {} errors, {} warnings ({})",
        g(&dlog.errors),
        g(&dlog.warnings),
        paths.run_dir.join("daemon.log").display()
    );
    for e in lock(&dlog.first_errors).iter().take(5) {
        let _ = writeln!(t, "    {e}");
    }
    for r in lock(&dlog.recovery_notes).iter().take(5) {
        let _ = writeln!(t, "    recovery: {r}");
    }
    if failures.1.is_empty() {
        if run.o.keep {
            let _ = writeln!(t, "  PASSED: no failure");
        } else {
            let _ = writeln!(
                t,
                "  PASSED: no failure ({} deleted; --keep keeps it)",
                paths.run_dir.display()
            );
        }
    } else {
        let _ = writeln!(
            t,
            "  FAILED: {} failures; data kept in {}",
            failures.0,
            paths.run_dir.display()
        );
        for f in &failures.1 {
            let _ = writeln!(t, "    {f}");
        }
    }
    Summary {
        json,
        text: t,
        failures: failures.1,
    }
}
