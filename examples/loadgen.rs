//! `loadgen`: the HTTP load generator for `stele serve`.
//!
//! It drives a Stele daemon over loopback HTTP/1.1 (hyper 1 client, one keep-alive
//! connection per simulated client, `TCP_NODELAY`) with realistic audit events from
//! [`stele::testkit::EventGen`] (real log lines from the loghub samples, ≈500 bytes per
//! event by default, like the in-process benches), and reports what a client sees:
//! throughput, request latency (recorded in microseconds in HDR histograms, printed in
//! milliseconds), how soon acknowledged events become searchable or reach a live stream,
//! and every non-2xx answer or transport error (counted, never fatal; the scenario
//! aborts with a message only if the daemon goes away).
//!
//! # Running
//!
//! ```sh
//! cargo build --release --bin stele && cargo build --release --example loadgen
//! cargo run --release --example loadgen -- batch       # NDJSON batches of 1,000 events
//! cargo run --release --example loadgen -- single      # 64 clients, 1 event per request
//! cargo run --release --example loadgen -- query       # ingest 200,000, then a query mix
//! cargo run --release --example loadgen -- stream      # SSE delivery at 200 events/s
//! cargo run --release --example loadgen -- all         # the four in sequence
//! cargo run --release --example loadgen -- all --json  # + JSON per scenario on stdout
//! cargo run --release --example loadgen -- --help      # every option
//! ```
//!
//! By default each scenario starts its own daemon: `--stele PATH` (default
//! `target/release/stele`) is run as `stele serve --listen 127.0.0.1:0 --data-dir <fresh
//! temporary directory under --data-parent, default target/loadgen>` with `RUST_LOG=info`;
//! the address is taken from its `Listening on ADDR` log line, and the daemon is killed
//! (and its directory deleted) when the scenario ends (`all` starts a fresh daemon for
//! each scenario; `--data-parent` must be on the disk you mean to measure, since every
//! acknowledgement waits for an fdatasync). Warnings and errors the daemon logs are
//! reported with the scenario (`--daemon-log` echoes its whole log). With `--addr
//! HOST:PORT` the scenarios target an already running daemon instead (loopback addresses
//! only). Events carry client ids and the generator is seeded (`--seed`), so runs are
//! reproducible; against a persistent daemon a rerun with the same seed posts ids that
//! are already stored (answered `200 replayed` or `409`, reported as such): pass another
//! `--seed`. Event times start 29 days before today (UTC midnight), so `stats?hours=720`
//! covers them.
//!
//! Every scenario runs `--warmup SECS` (default 2, not measured) then `--duration SECS`
//! (default 10, measured). Figures count requests answered within the measured window.
//! The machine's cores are shared by the daemon and the load generator (events are
//! generated on a separate thread ahead of the clients; "generator stalls" says if it
//! ever could not keep up).
//!
//! # Scenarios and the issue's targets
//!
//! - `batch` (`--clients` default 2, `--batch` default 1,000): each client posts NDJSON
//!   bodies (`application/x-ndjson`) of `--batch` events to `POST /v1/events`, waiting for
//!   each 201. Reports events/s sustained and request latency p50/p95/p99/max. Once per
//!   second one batch carries an event with a unique `correlation_id`; after its 201 a
//!   separate connection polls `GET /v1/events?correlation_id=..` every 10 ms until the
//!   event is returned: "searchable within" p50/p99/max is that ack → visible time. At the
//!   end it reports how long after the last acknowledgement `/metrics` shows
//!   `stele_index_lag_events 0`. **Target: batched NDJSON ingest (1,000 per request)
//!   ≥ 60,000 events/s sustained and searchable within 2 s.**
//! - `single` (`--clients` default 64): each client posts one JSON event
//!   (`application/json`) per request in a loop. Reports requests/s and p50/p95/p99/max.
//!   **Target: 64 concurrent clients posting one event each ≥ 15,000 requests/s with
//!   p99 ≤ 10 ms.**
//! - `query` (`--events` default 200,000, `--clients` default 4): first ingests the
//!   events in 1,000-event batches over 2 connections (not measured; the time is
//!   printed), waits until
//!   `/metrics` shows index lag 0, then each client runs a round-robin mix of newest-100
//!   listings filtered by `action`, `tenant`, `user_id` and `min_severity`, full-text
//!   `/v1/search?q=<a word from an ingested description>`, get by id of ingested ids,
//!   `/v1/stats?hours=720`, entity history and user timeline, with values drawn from the
//!   ingested events (so they match; "empty" counts answers with no events). Reports,
//!   per kind, count and p50/p95/p99/max. **Target: query latency over HTTP at most 1 ms
//!   above the in-process figures** (`cargo bench --bench index`, README "Indexes and
//!   queries"; that bench uses 1,000,000 events: use `--events 1000000` to compare like
//!   with like).
//! - `stream` (`--rate` default 200/s, `--clients` default 4 poster connections): one SSE
//!   client on `GET /v1/stream` (`id:` lines are seqs, `data:` lines JSON events, `:`
//!   comments ignored) while single events are posted at `--rate`; for each 201 the
//!   returned seq and the instant are recorded. Reports p50/p95/p99/max of (SSE arrival −
//!   201 arrival) and how many acknowledged events never arrived (waiting up to 5 s after
//!   the last post). Events delivered before their 201 reached the poster count as 0 ms
//!   and are reported. **Target: SSE delivery ≤ 50 ms p99 after acknowledgement.**
//!   With `--ws` the client reads `GET /v1/stream/ws` instead (a WebSocket: one text
//!   frame per event, the same JSON); run both to compare the transports.
//! - `all`: `batch`, `single`, `query` and `stream` in sequence.
//!
//! Answers by status, non-2xx answers and transport errors are counted over the whole
//! run (warm-up and the "searchable within" probes included); the first non-2xx body
//! (problem+json) is shown. The human-readable summary goes to stdout; with `--json` it
//! goes to stderr and stdout carries only one JSON object per scenario (one per line),
//! for scripts. Progress messages always go to stderr. Exit status 0 when every scenario
//! ran (whether or not it met its targets), 1 when one failed, 2 for bad options.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Map, Value};
use stele::event::Event;
use stele::testkit::EventGen;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod common;
use common::{base_time, connect, enc, exchange, find, lock, request, strip_ansi};

/// Set on Ctrl-C: the running scenario aborts (its daemon is stopped and its data
/// directory removed) and no further scenario starts.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Longest wait for one answer before the connection is dropped and the request counted
/// as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Consecutive transport failures on one client after which the daemon counts as gone.
const FAILURES_FATAL: u32 = 3;
/// How long a "searchable within" probe keeps polling before giving up.
const VISIBLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of the "searchable within" probes and the index-lag watch.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// How long the stream scenario waits for the last acknowledged events to arrive.
const STREAM_DRAIN: Duration = Duration::from_secs(5);
/// Longest wait for the indexes to catch up (index lag 0).
const INDEX_WAIT: Duration = Duration::from_secs(600);
const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";

#[derive(Parser, Debug, Clone)]
#[command(
    about = "HTTP load generator for `stele serve` (see the doc comment of examples/loadgen.rs)"
)]
struct Opts {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// The stele binary to start for each scenario (unused with --addr).
    #[arg(long, default_value = "target/release/stele")]
    stele: PathBuf,
    /// Target an already running daemon at HOST:PORT (loopback only) instead of starting one.
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Measured seconds per scenario.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before the measurement starts.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    warmup: f64,
    /// Connections (simulated clients); default batch 2, single 64, query 4, stream 4 posters.
    #[arg(long)]
    clients: Option<usize>,
    /// Events per request in the batch scenario (1 to 10,000).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Events ingested before the query mix.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Events posted per second in the stream scenario.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Approximate encoded size of each event in bytes (0: the generator's natural size).
    #[arg(long, value_name = "BYTES", default_value_t = 500)]
    event_bytes: usize,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 0x57e1e)]
    seed: u64,
    /// Also print one JSON object per scenario on stdout (the summary then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Directory under which each self-started daemon gets a fresh data directory.
    #[arg(long, value_name = "DIR", default_value = "target/loadgen")]
    data_parent: PathBuf,
    /// Echo the self-started daemon's log to stderr.
    #[arg(long)]
    daemon_log: bool,
    /// Run the self-started daemon with access control: one API key holding every role
    /// (all tenants, a rate limit of 1,000,000 requests/s so the bucket is checked but
    /// never refuses), sent with every request; reads are then recorded as
    /// `audit_access` events. Compare with a run without it for the cost of
    /// authentication, rate limiting and the audit trail.
    #[arg(long, conflicts_with = "addr")]
    auth: bool,
    /// In the stream scenario, read `GET /v1/stream/ws` (WebSocket, one text frame per
    /// event) instead of the SSE stream: compare the two transports' delivery latency.
    #[arg(long)]
    ws: bool,
    /// With --addr: the API key to send (`Authorization: Bearer KEY`).
    #[arg(long, value_name = "KEY", requires = "addr")]
    token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Batch,
    Single,
    Query,
    Stream,
    All,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Batch => "batch",
            Scenario::Single => "single",
            Scenario::Query => "query",
            Scenario::Stream => "stream",
            Scenario::All => "all",
        }
    }
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    if let Err(e) = check_opts(&opts) {
        eprintln!("loadgen: {e:#}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            INTERRUPTED.store(true, Ordering::Relaxed);
        }
    });
    let scenarios = match opts.scenario {
        Scenario::All => vec![
            Scenario::Batch,
            Scenario::Single,
            Scenario::Query,
            Scenario::Stream,
        ],
        s => vec![s],
    };
    let mut failed = false;
    for s in scenarios {
        if INTERRUPTED.load(Ordering::Relaxed) {
            failed = true;
            break;
        }
        match run_scenario(&rt, &opts, s) {
            Ok(report) => report.print(opts.json),
            Err(e) => {
                eprintln!("loadgen: the {} scenario failed: {e:#}", s.name());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check_opts(o: &Opts) -> Result<()> {
    if !(o.duration.is_finite() && o.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    if !(o.warmup.is_finite() && o.warmup >= 0.0) {
        bail!("--warmup must be zero or a positive number of seconds");
    }
    if o.clients == Some(0) {
        bail!("--clients must be at least 1");
    }
    if !(1..=10_000).contains(&o.batch) {
        bail!("--batch must be from 1 to 10000 (the daemon's limit per request)");
    }
    if !(o.rate.is_finite() && o.rate > 0.0) {
        bail!("--rate must be a positive number of events per second");
    }
    if o.events == 0 {
        bail!("--events must be at least 1");
    }
    Ok(())
}

/// Starts a daemon (unless `--addr`), runs one scenario against it, stops it.
fn run_scenario(rt: &tokio::runtime::Runtime, o: &Opts, s: Scenario) -> Result<Report> {
    let daemon = match &o.addr {
        Some(_) => None,
        None => Some(Daemon::start(o)?),
    };
    let ctx = match (&daemon, &o.addr) {
        (Some(d), _) => Ctx::new(d.addr, Some(d.child.clone()), d.token.clone()),
        (None, Some(a)) => Ctx::new(loopback_addr(a)?, None, o.token.clone()),
        (None, None) => unreachable!("a daemon is started when no --addr is given"),
    };
    eprintln!(
        "loadgen: {}: {} daemon at {}",
        s.name(),
        if daemon.is_some() {
            "started a"
        } else {
            "using the"
        },
        ctx.addr
    );
    let result = rt.block_on(async {
        let watchdog = tokio::spawn(watchdog(ctx.clone()));
        let r = async {
            healthy(&ctx).await?;
            match s {
                Scenario::Batch => batch(&ctx, o).await,
                Scenario::Single => single(&ctx, o).await,
                Scenario::Query => query(&ctx, o).await,
                Scenario::Stream => stream(&ctx, o).await,
                Scenario::All => unreachable!("`all` is expanded by main"),
            }
        }
        .await;
        watchdog.abort();
        r
    });
    let Some(d) = daemon else {
        return result;
    };
    let notes = d.stop();
    match result {
        Ok(mut report) => {
            report.daemon_notes(&notes);
            Ok(report)
        }
        Err(e) => {
            let mut msg = format!("{e:#}");
            if !notes.tail.is_empty() && !INTERRUPTED.load(Ordering::Relaxed) {
                msg.push_str("\n  the daemon's last log lines:");
                for line in notes.tail.iter().rev().take(10).rev() {
                    let _ = write!(msg, "\n    {line}");
                }
            }
            Err(anyhow!(msg))
        }
    }
}

/// Resolves `--addr`, accepting only loopback addresses.
fn loopback_addr(a: &str) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = a
        .to_socket_addrs()
        .with_context(|| format!("--addr {a}: not a HOST:PORT address"))?
        .collect();
    match addrs.iter().find(|s| s.ip().is_loopback()) {
        Some(s) if addrs.iter().all(|s| s.ip().is_loopback()) => Ok(*s),
        _ => bail!(
            "--addr {a}: loadgen only talks to loopback addresses (127.0.0.1, ::1, localhost)"
        ),
    }
}

// ---------------------------------------------------------------------------------
// The daemon

/// A self-started `stele serve`.
struct Daemon {
    /// The API key of a `--auth` daemon.
    token: Option<String>,
    child: Arc<Mutex<Child>>,
    addr: SocketAddr,
    notes: Arc<Mutex<DaemonNotes>>,
    _dir: tempfile::TempDir,
}

/// What the daemon logged.
#[derive(Default, Clone)]
struct DaemonNotes {
    /// The last lines.
    tail: VecDeque<String>,
    /// Lines at WARN or ERROR level (the first few) and their count.
    warnings: Vec<String>,
    warning_count: u64,
    /// Set by [`Daemon::stop`] when the process had already exited.
    exited_early: Option<String>,
}

impl Daemon {
    fn start(o: &Opts) -> Result<Daemon> {
        if !o.stele.is_file() {
            bail!(
                "the stele binary {} does not exist: build it first with `cargo build --release` \
                 (or pass --stele PATH, or --addr HOST:PORT to use a running daemon)",
                o.stele.display()
            );
        }
        std::fs::create_dir_all(&o.data_parent)
            .with_context(|| format!("cannot create {}", o.data_parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("loadgen-")
            .tempdir_in(&o.data_parent)
            .with_context(|| {
                format!(
                    "cannot create a data directory in {}",
                    o.data_parent.display()
                )
            })?;
        let mut cmd = Command::new(&o.stele);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path());
        let token = if o.auth {
            let token = stele::auth::generate_token().context("cannot make an API key")?;
            let config = dir.path().join("loadgen-auth.toml");
            std::fs::write(
                &config,
                format!(
                    "[[auth.keys]]\nid = \"loadgen\"\nhash = \"{}\"\n\
                     roles = [\"ingest\", \"read\", \"export\", \"admin\"]\ntenants = [\"*\"]\n\
                     rate_per_sec = 1000000\nburst = 1000000\nstreams_max = 1024\n",
                    stele::auth::hash_line(&token)
                ),
            )
            .with_context(|| format!("cannot write {}", config.display()))?;
            cmd.arg("--config").arg(config);
            Some(token)
        } else {
            None
        };
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", o.stele.display()))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no stderr pipe to the daemon");
        };
        let notes = Arc::new(Mutex::new(DaemonNotes::default()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let (notes2, echo) = (notes.clone(), o.daemon_log);
        // Reads the daemon's stderr until it closes: the address first, then keeps
        // draining (so the daemon never blocks on a full pipe), remembering warnings.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if echo {
                    eprintln!("[stele] {line}");
                }
                if let Some(rest) = line.split("Listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                    }
                }
                let mut n = lock(&notes2);
                if line.contains(" WARN ") || line.contains(" ERROR ") {
                    n.warning_count += 1;
                    if n.warnings.len() < 10 {
                        n.warnings.push(line.clone());
                    }
                }
                n.tail.push_back(line);
                if n.tail.len() > 50 {
                    n.tail.pop_front();
                }
            }
        });
        let child = Arc::new(Mutex::new(child));
        let daemon = |addr| Daemon {
            child: child.clone(),
            addr,
            token: token.clone(),
            notes: notes.clone(),
            _dir: dir,
        };
        let found = rx.recv_timeout(Duration::from_secs(120));
        let addr = found
            .as_deref()
            .ok()
            .and_then(|a| a.trim_end_matches(['.', ',']).parse::<SocketAddr>().ok());
        match addr {
            Some(addr) if addr.ip().is_loopback() => Ok(daemon(addr)),
            _ => {
                let d = daemon(SocketAddr::from(([127, 0, 0, 1], 0)));
                let notes = d.stop();
                let why = match found {
                    Ok(a) => format!("it reported an unusable address {a:?}"),
                    Err(_) => "it exited or did not say `Listening on ADDR` within 120 s".into(),
                };
                bail!(
                    "stele serve did not start: {why}{}; its last log lines:\n  {}",
                    notes
                        .exited_early
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default(),
                    notes.tail.iter().cloned().collect::<Vec<_>>().join("\n  ")
                )
            }
        }
    }

    /// Kills the daemon (noting whether it had already exited) and returns its notes.
    fn stop(self) -> DaemonNotes {
        let exited = {
            let mut c = lock(&self.child);
            let early = c.try_wait().ok().flatten();
            if early.is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
            early
        };
        // Give the stderr reader a moment to take the last lines.
        std::thread::sleep(Duration::from_millis(50));
        let mut notes = lock(&self.notes).clone();
        notes.exited_early = exited.map(|s| format!("it exited by itself: {s}"));
        notes
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let mut c = lock(&self.child);
        if c.try_wait().ok().flatten().is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------
// Shared run state, connections

/// What every task of a scenario shares: the target, and the abort flag.
#[derive(Clone)]
struct Ctx {
    addr: SocketAddr,
    host: String,
    /// `Bearer <key>` when the daemon needs one.
    authorization: Option<String>,
    child: Option<Arc<Mutex<Child>>>,
    abort: Arc<AbortFlag>,
}

#[derive(Default)]
struct AbortFlag {
    set: AtomicBool,
    why: Mutex<Option<String>>,
}

impl Ctx {
    fn new(addr: SocketAddr, child: Option<Arc<Mutex<Child>>>, token: Option<String>) -> Ctx {
        Ctx {
            addr,
            host: addr.to_string(),
            authorization: token.map(|t| format!("Bearer {t}")),
            child,
            abort: Arc::default(),
        }
    }

    fn aborted(&self) -> bool {
        self.abort.set.load(Ordering::Relaxed)
    }

    /// Stops the scenario; the first reason given is the one reported.
    fn abort(&self, why: String) {
        let mut w = lock(&self.abort.why);
        if w.is_none() {
            *w = Some(why);
        }
        self.abort.set.store(true, Ordering::Relaxed);
    }

    /// `Err` with the reason if the scenario was aborted.
    fn check(&self) -> Result<()> {
        if self.aborted() {
            let why = lock(&self.abort.why).clone().unwrap_or_default();
            bail!("aborted: {why}");
        }
        Ok(())
    }

    /// Why the self-started daemon is gone, if it is.
    fn daemon_gone(&self) -> Option<String> {
        let child = self.child.as_ref()?;
        let status = lock(child).try_wait().ok().flatten()?;
        Some(format!("the daemon at {} exited ({status})", self.addr))
    }
}

/// Aborts the scenario as soon as the self-started daemon exits, or on Ctrl-C.
async fn watchdog(ctx: Ctx) {
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            ctx.abort("interrupted (Ctrl-C)".into());
            return;
        }
        if let Some(why) = ctx.daemon_gone() {
            ctx.abort(why);
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One answer: status, body, latency (request sent → body complete), when it completed.
struct Answer {
    status: StatusCode,
    body: Bytes,
    latency: Duration,
    at: Instant,
}

/// A simulated client: one keep-alive connection, re-established after an error.
struct Client {
    ctx: Ctx,
    sender: Option<SendRequest<Full<Bytes>>>,
    failures: u32,
}

impl Client {
    fn new(ctx: &Ctx) -> Client {
        Client {
            ctx: ctx.clone(),
            sender: None,
            failures: 0,
        }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        ctype: Option<&str>,
        body: Bytes,
    ) -> Result<Answer, String> {
        let sender = match &mut self.sender {
            Some(s) => s,
            None => self.sender.insert(connect(self.ctx.addr).await?),
        };
        if let Err(e) = sender.ready().await {
            self.sender = None;
            return Err(format!("the connection closed: {e}"));
        }
        let ctx = &self.ctx;
        let req = request(
            &ctx.host,
            ctx.authorization.as_deref(),
            method,
            path,
            ctype,
            body,
        );
        let started = Instant::now();
        let exchange = exchange(sender, req);
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok((status, body))) => {
                let at = Instant::now();
                self.failures = 0;
                Ok(Answer {
                    status,
                    body,
                    latency: at - started,
                    at,
                })
            }
            Ok(Err(e)) => {
                self.sender = None;
                Err(format!("{path}: {e}"))
            }
            Err(_) => {
                self.sender = None;
                Err(format!(
                    "{path}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ))
            }
        }
    }

    /// Counts a transport failure; aborts the scenario when the daemon is gone or keeps
    /// failing; pauses a little before the next attempt.
    async fn failed(&mut self, tally: &mut Tally, err: String) {
        tally.transport_errors += 1;
        if tally.first_transport_error.is_none() {
            tally.first_transport_error = Some(err.clone());
        }
        self.failures += 1;
        if let Some(why) = self.ctx.daemon_gone() {
            self.ctx.abort(why);
        } else if self.failures >= FAILURES_FATAL {
            self.ctx.abort(format!(
                "the daemon at {} went away ({} failed attempts in a row; last: {err})",
                self.ctx.addr, self.failures
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Answers by status, and transport errors.
#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u16, u64>,
    /// 200 answers to ingest with `"replayed": true` (ids already stored).
    replayed: u64,
    transport_errors: u64,
    first_problem: Option<String>,
    first_transport_error: Option<String>,
}

impl Tally {
    /// Counts an answer; true for 2xx.
    fn note(&mut self, a: &Answer) -> bool {
        *self.by_status.entry(a.status.as_u16()).or_default() += 1;
        if !a.status.is_success() && self.first_problem.is_none() {
            let text = String::from_utf8_lossy(&a.body);
            let cut: String = text.chars().take(300).collect();
            self.first_problem = Some(format!("{}: {cut}", a.status.as_u16()));
        }
        a.status.is_success()
    }

    fn note_ingest(&mut self, a: &Answer) -> bool {
        if a.status == StatusCode::OK && contains(&a.body, b"\"replayed\":true") {
            self.replayed += 1;
        }
        self.note(a)
    }

    fn merge(&mut self, o: Tally) {
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        self.replayed += o.replayed;
        self.transport_errors += o.transport_errors;
        if self.first_problem.is_none() {
            self.first_problem = o.first_problem;
        }
        if self.first_transport_error.is_none() {
            self.first_transport_error = o.first_transport_error;
        }
    }

    fn non_2xx(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The scenario's clock: warm-up, then the measured window.
#[derive(Clone, Copy)]
struct Timing {
    warm_end: Instant,
    end: Instant,
}

impl Timing {
    fn start(o: &Opts) -> Timing {
        let now = Instant::now();
        let warm_end = now + Duration::from_secs_f64(o.warmup);
        Timing {
            warm_end,
            end: warm_end + Duration::from_secs_f64(o.duration),
        }
    }

    fn measured(&self, t: Instant) -> bool {
        t >= self.warm_end && t <= self.end
    }

    fn secs(&self) -> f64 {
        (self.end - self.warm_end).as_secs_f64()
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Checks the daemon answers at all.
async fn healthy(ctx: &Ctx) -> Result<()> {
    let mut c = Client::new(ctx);
    match c.call(Method::GET, "/healthz", None, Bytes::new()).await {
        Ok(a) if a.status.is_success() => Ok(()),
        Ok(a) => bail!("GET /healthz answered {}", a.status),
        Err(e) => bail!("the daemon at {} does not answer: {e}", ctx.addr),
    }
}

/// Reads `stele_index_lag_events` from `/metrics`.
async fn index_lag(c: &mut Client) -> Result<(u64, Instant)> {
    let a = c
        .call(Method::GET, "/metrics", None, Bytes::new())
        .await
        .map_err(|e| anyhow!("GET /metrics: {e}"))?;
    if !a.status.is_success() {
        bail!("GET /metrics answered {}", a.status);
    }
    let text = String::from_utf8_lossy(&a.body);
    let lag = text
        .lines()
        .filter_map(|l| l.strip_prefix("stele_index_lag_events"))
        .find_map(|rest| {
            rest.strip_prefix(' ')
                .or_else(|| rest.split_once("} ").map(|(_, v)| v))
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow!("/metrics has no stele_index_lag_events gauge"))?;
    Ok((lag as u64, a.at))
}

/// Polls `/metrics` every 10 ms until the index lag is 0; returns when that was seen.
async fn wait_indexed(ctx: &Ctx, limit: Duration) -> Result<Instant> {
    let mut c = Client::new(ctx);
    let deadline = Instant::now() + limit;
    loop {
        ctx.check()?;
        match index_lag(&mut c).await {
            Ok((0, at)) => return Ok(at),
            Ok((lag, _)) if Instant::now() > deadline => {
                bail!(
                    "the index still lags {lag} events after {} s",
                    limit.as_secs()
                )
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(why) = ctx.daemon_gone() {
                    ctx.abort(why);
                }
                ctx.check()?;
                if Instant::now() > deadline {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

// ---------------------------------------------------------------------------------
// Event generation

fn next_event(g: &mut EventGen, bytes: usize) -> Event {
    if bytes == 0 {
        g.next_event()
    } else {
        g.sized(bytes)
    }
}

fn to_json(ev: &Event, out: &mut Vec<u8>) {
    serde_json::to_writer(out, ev).expect("generated events serialize to JSON");
}

/// A request body ready to post: NDJSON (one or more lines) or one JSON object.
struct Body {
    bytes: Bytes,
    events: u64,
    /// The first event and the length of its line, to swap in a marked copy.
    head: Event,
    head_len: usize,
}

impl Body {
    /// The same body with the first event's `correlation_id` set to `cid`.
    fn marked(&self, cid: &str) -> Bytes {
        let mut ev = self.head.clone();
        ev.correlation_id = Some(cid.to_owned());
        let mut out = Vec::with_capacity(self.bytes.len() + 64);
        to_json(&ev, &mut out);
        out.push(b'\n');
        out.extend_from_slice(&self.bytes[self.head_len..]);
        Bytes::from(out)
    }
}

/// What to pick query values from: a sample of the generated events.
#[derive(Clone)]
struct Sample {
    id: String,
    action: String,
    tenant: Option<String>,
    user_id: Option<String>,
    severity: Option<&'static str>,
    entity: Option<(String, String)>,
    word: Option<String>,
}

impl Sample {
    fn of(ev: &Event) -> Sample {
        let mut words: Vec<String> = ev
            .description
            .as_deref()
            .unwrap_or("")
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() > 3 && !w.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_ascii_lowercase)
            .collect();
        words.sort();
        words.dedup();
        Sample {
            id: ev.id.clone(),
            action: ev.action.clone(),
            tenant: ev.tenant.clone(),
            user_id: ev.user_id.clone(),
            severity: ev.severity.map(|s| s.as_str()),
            entity: ev.entity_type.clone().zip(ev.entity_id.clone()),
            word: words.get(words.len() / 2).cloned(),
        }
    }
}

/// Generates bodies of `per_body` events on a thread of its own, ahead of the clients
/// (at most `queue` bodies), until `total` events (if given) or until the receiver is
/// dropped. Returns a sample of every `sample_every`-th event when it ends, and how
/// fast it generated.
fn producer(
    seed: u64,
    event_bytes: usize,
    per_body: usize,
    total: Option<u64>,
    sample_every: u64,
    queue: usize,
) -> (mpsc::Receiver<Body>, std::thread::JoinHandle<Produced>) {
    let (tx, rx) = mpsc::channel::<Body>(queue);
    let handle = std::thread::spawn(move || {
        let mut g = EventGen::new(seed).with_base_time(base_time());
        let mut samples = Vec::new();
        let mut made = 0u64;
        let mut busy = Duration::ZERO;
        loop {
            let started = Instant::now();
            let n = match total {
                Some(t) if made >= t => break,
                Some(t) => (per_body as u64).min(t - made),
                None => per_body as u64,
            };
            let mut buf = Vec::with_capacity(n as usize * (event_bytes.max(400) + 200));
            let mut head = None;
            let mut head_len = 0;
            for i in 0..n {
                let ev = next_event(&mut g, event_bytes);
                to_json(&ev, &mut buf);
                if per_body > 1 {
                    buf.push(b'\n');
                }
                if (made + i) % sample_every == 0 {
                    samples.push(Sample::of(&ev));
                }
                if i == 0 {
                    head_len = buf.len();
                    head = Some(ev);
                }
            }
            made += n;
            busy += started.elapsed();
            let Some(head) = head else { break };
            let body = Body {
                bytes: Bytes::from(buf),
                events: n,
                head,
                head_len,
            };
            if tx.blocking_send(body).is_err() {
                break;
            }
        }
        Produced {
            samples,
            events: made,
            busy,
        }
    });
    (rx, handle)
}

/// What a generator thread did.
struct Produced {
    samples: Vec<Sample>,
    events: u64,
    /// Time spent generating and serializing (not waiting for the clients).
    busy: Duration,
}

impl Produced {
    /// Events per second one generator thread can make.
    fn capacity(&self) -> f64 {
        self.events as f64 / self.busy.as_secs_f64().max(1e-9)
    }
}

type SharedRx = Arc<tokio::sync::Mutex<mpsc::Receiver<Body>>>;

/// The next body; counts a stall when none was ready during the measured window.
async fn next_body(rx: &SharedRx, timing: &Timing, stalls: &mut u64) -> Option<Body> {
    let mut rx = rx.lock().await;
    match rx.try_recv() {
        Ok(b) => Some(b),
        Err(mpsc::error::TryRecvError::Disconnected) => None,
        Err(mpsc::error::TryRecvError::Empty) => {
            if timing.measured(Instant::now()) {
                *stalls += 1;
            }
            rx.recv().await
        }
    }
}

// ---------------------------------------------------------------------------------
// Reports

struct Report {
    name: &'static str,
    head: String,
    lines: Vec<String>,
    json: Map<String, Value>,
}

impl Report {
    fn new(name: &'static str, head: String, config: Value) -> Report {
        let mut json = Map::new();
        json.insert("scenario".into(), json!(name));
        json.insert("config".into(), config);
        Report {
            name,
            head,
            lines: Vec::new(),
            json,
        }
    }

    fn line(&mut self, label: &str, value: impl std::fmt::Display) {
        self.lines.push(format!("  {label:<40} {value}"));
    }

    fn set(&mut self, key: &str, v: Value) {
        self.json.insert(key.into(), v);
    }

    /// p50/p95/p99/max lines (in ms) and a JSON object under `key`.
    fn latency(&mut self, key: &str, label: &str, h: &Histogram<u64>, targets: &[(&str, &str)]) {
        self.set(key, latency_json(h));
        if h.is_empty() {
            self.line(label, "no samples");
            return;
        }
        for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")] {
            let v = if q >= 1.0 {
                h.max()
            } else {
                h.value_at_quantile(q)
            };
            let target = targets
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| format!("   ({t})"))
                .unwrap_or_default();
            self.line(
                &format!("{label} {name}"),
                format!("{:.2} ms{target}", ms(v)),
            );
        }
    }

    fn tally(&mut self, t: &Tally) {
        let codes: Vec<String> = t
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        self.line("answers by status (whole run)", codes.join(", "));
        self.line("non-2xx answers (whole run)", t.non_2xx());
        if let Some(p) = &t.first_problem {
            self.line("  first non-2xx answer", p);
        }
        if t.replayed > 0 {
            self.line(
                "replayed (ids already stored!)",
                format!(
                    "{}   (rerun with another --seed or a fresh daemon)",
                    t.replayed
                ),
            );
        }
        self.line("transport errors (whole run)", t.transport_errors);
        if let Some(e) = &t.first_transport_error {
            self.line("  first transport error", e);
        }
        self.set(
            "answers_by_status",
            Value::Object(
                t.by_status
                    .iter()
                    .map(|(s, n)| (s.to_string(), json!(n)))
                    .collect(),
            ),
        );
        self.set("non_2xx", json!(t.non_2xx()));
        self.set("replayed", json!(t.replayed));
        self.set("transport_errors", json!(t.transport_errors));
        self.set("first_problem", json!(t.first_problem));
    }

    fn daemon_notes(&mut self, n: &DaemonNotes) {
        self.line("daemon warnings/errors logged", n.warning_count);
        for w in &n.warnings {
            self.lines.push(format!("    {w}"));
        }
        if let Some(e) = &n.exited_early {
            self.line("daemon", e);
        }
        self.set("daemon_warnings", json!(n.warning_count));
        self.set("daemon_warning_lines", json!(n.warnings));
    }

    fn print(&self, json_mode: bool) {
        let mut text = format!("== {} == {}\n", self.name, self.head);
        for l in &self.lines {
            text.push_str(l);
            text.push('\n');
        }
        if json_mode {
            eprint!("{text}");
            println!("{}", Value::Object(self.json.clone()));
        } else {
            print!("{text}");
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn ms2(us: u64) -> f64 {
    r2(us as f64 / 1000.0)
}

/// Rounded to 2 decimals (for JSON).
fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50_ms": ms2(h.value_at_quantile(0.5)),
        "p95_ms": ms2(h.value_at_quantile(0.95)),
        "p99_ms": ms2(h.value_at_quantile(0.99)),
        "max_ms": ms2(h.max()),
        "mean_ms": r2(h.mean() / 1000.0),
    })
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| {
        ms(if q >= 1.0 {
            h.max()
        } else {
            h.value_at_quantile(q)
        })
    })
}

// ---------------------------------------------------------------------------------
// Scenario: batch

/// One "searchable within" probe per second of the measured window.
struct Markers {
    next: Mutex<Instant>,
    count: AtomicU64,
    nonce: String,
}

impl Markers {
    fn new(timing: &Timing) -> Markers {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Markers {
            next: Mutex::new(timing.warm_end),
            count: AtomicU64::new(0),
            nonce: format!("{nonce:x}"),
        }
    }

    /// A fresh correlation id if a marker is due now.
    fn due(&self, timing: &Timing, now: Instant) -> Option<String> {
        if !timing.measured(now) {
            return None;
        }
        let mut next = lock(&self.next);
        if now < *next {
            return None;
        }
        // Keep a steady cadence; after a long request, restart it from now.
        *next += Duration::from_secs(1);
        if *next <= now {
            *next = now + Duration::from_secs(1);
        }
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        Some(format!("loadgen-{}-{n}", self.nonce))
    }
}

/// Polls for `cid` every 10 ms; the time from `acked` until an answer contained it.
async fn searchable(ctx: Ctx, cid: String, acked: Instant) -> (Option<Duration>, Tally) {
    let mut c = Client::new(&ctx);
    let mut tally = Tally::default();
    let path = format!("/v1/events?correlation_id={}&limit=1", enc(&cid));
    loop {
        if ctx.aborted() {
            return (None, tally);
        }
        match c.call(Method::GET, &path, None, Bytes::new()).await {
            Ok(a) => {
                if tally.note(&a) && contains(&a.body, cid.as_bytes()) {
                    return (Some(a.at.saturating_duration_since(acked)), tally);
                }
            }
            Err(e) => c.failed(&mut tally, e).await,
        }
        if acked.elapsed() > VISIBLE_TIMEOUT {
            return (None, tally);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[derive(Default)]
struct IngestOut {
    hist: Option<Histogram<u64>>,
    tally: Tally,
    events: u64,
    requests: u64,
    bytes: u64,
    stalls: u64,
    last_ack: Option<Instant>,
    probes: Vec<JoinHandle<(Option<Duration>, Tally)>>,
}

/// One ingest client: posts bodies from `rx` until the end of `timing` (or until `rx`
/// ends), counting what was acknowledged in the measured window.
async fn ingest_client(
    ctx: Ctx,
    rx: SharedRx,
    timing: Timing,
    ctype: &'static str,
    markers: Option<Arc<Markers>>,
) -> IngestOut {
    let mut c = Client::new(&ctx);
    let mut out = IngestOut::default();
    let mut h = hist();
    while !ctx.aborted() && Instant::now() < timing.end {
        let Some(body) = next_body(&rx, &timing, &mut out.stalls).await else {
            break;
        };
        let cid = markers
            .as_ref()
            .and_then(|m| m.due(&timing, Instant::now()));
        let bytes = match &cid {
            Some(cid) => body.marked(cid),
            None => body.bytes.clone(),
        };
        let len = bytes.len() as u64;
        match c.call(Method::POST, "/v1/events", Some(ctype), bytes).await {
            Ok(a) => {
                let ok = out.tally.note_ingest(&a);
                if a.status == StatusCode::CREATED {
                    out.last_ack = Some(a.at);
                    if let Some(cid) = cid {
                        out.probes
                            .push(tokio::spawn(searchable(ctx.clone(), cid, a.at)));
                    }
                }
                if timing.measured(a.at) {
                    record(&mut h, a.latency);
                    out.requests += 1;
                    if ok {
                        out.events += body.events;
                        out.bytes += len;
                    }
                }
            }
            Err(e) => c.failed(&mut out.tally, e).await,
        }
    }
    out.hist = Some(h);
    out
}

/// Runs `n` ingest clients and merges what they saw.
async fn ingest_clients(
    ctx: &Ctx,
    n: usize,
    rx: mpsc::Receiver<Body>,
    timing: Timing,
    ctype: &'static str,
    markers: Option<Arc<Markers>>,
) -> IngestOut {
    let rx: SharedRx = Arc::new(tokio::sync::Mutex::new(rx));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(ingest_client(
                ctx.clone(),
                rx.clone(),
                timing,
                ctype,
                markers.clone(),
            ))
        })
        .collect();
    let mut all = IngestOut::default();
    let mut h = hist();
    for t in tasks {
        match t.await {
            Ok(o) => {
                if let Some(oh) = &o.hist {
                    let _ = h.add(oh);
                }
                all.tally.merge(o.tally);
                all.events += o.events;
                all.requests += o.requests;
                all.bytes += o.bytes;
                all.stalls += o.stalls;
                all.last_ack = all.last_ack.max(o.last_ack);
                all.probes.extend(o.probes);
            }
            Err(e) => ctx.abort(format!("a client task failed: {e}")),
        }
    }
    // Stop the generator thread (its send fails once the receiver is gone).
    drop(rx);
    all.hist = Some(h);
    all
}

async fn batch(ctx: &Ctx, o: &Opts) -> Result<Report> {
    let clients = o.clients.unwrap_or(2);
    let mut report = Report::new(
        "batch",
        format!(
            "{clients} clients posting NDJSON batches of {} events ({}), {:.1} s measured after {:.1} s warm-up",
            o.batch, size_text(o.event_bytes), o.duration, o.warmup
        ),
        json!({"clients": clients, "batch": o.batch, "event_bytes": o.event_bytes,
               "duration_s": o.duration, "warmup_s": o.warmup, "seed": o.seed}),
    );
    let (rx, gen) = producer(
        o.seed,
        o.event_bytes,
        o.batch,
        None,
        u64::MAX,
        2 * clients + 4,
    );
    let timing = Timing::start(o);
    let markers = Arc::new(Markers::new(&timing));
    let out = ingest_clients(ctx, clients, rx, timing, NDJSON, Some(markers)).await;
    let made = gen.join().ok();
    ctx.check()?;

    eprintln!("loadgen: batch: waiting for the index to catch up");
    let lag_zero = match out.last_ack {
        Some(last) => Some(
            wait_indexed(ctx, INDEX_WAIT)
                .await?
                .saturating_duration_since(last),
        ),
        None => None,
    };
    let mut visible = hist();
    let (mut probes, mut never) = (0u64, 0u64);
    let mut tally = out.tally;
    for p in out.probes {
        if let Ok((seen, t)) = p.await {
            probes += 1;
            tally.merge(t);
            match seen {
                Some(d) => record(&mut visible, d),
                None => never += 1,
            }
        }
    }
    ctx.check()?;

    let secs = timing.secs();
    let rate = out.events as f64 / secs;
    report.line(
        "events/s sustained",
        format!(
            "{rate:.0} events/s   (target >= 60000: {})",
            verdict(rate >= 60_000.0)
        ),
    );
    report.line(
        "requests/s",
        format!("{:.1} requests/s", out.requests as f64 / secs),
    );
    report.line(
        "request bodies",
        format!("{:.1} MB/s", out.bytes as f64 / secs / 1e6),
    );
    report.line("events acknowledged (measured)", out.events);
    report.line("requests answered (measured)", out.requests);
    let h = out.hist.unwrap_or_else(hist);
    report.latency("request_latency", "request latency", &h, &[]);
    report.set("events_per_s", json!(r2(rate)));
    report.set("requests_per_s", json!(r2(out.requests as f64 / secs)));
    report.set("events", json!(out.events));
    report.set("requests", json!(out.requests));
    report.set("mb_per_s", json!(r2(out.bytes as f64 / secs / 1e6)));

    let max_ok = quantile_ms(&visible, 1.0).is_some_and(|m| m <= 2000.0) && never == 0;
    report.line(
        "searchable probes",
        format!(
            "{probes} ({never} not visible within {} s)",
            VISIBLE_TIMEOUT.as_secs()
        ),
    );
    for (q, name) in [(0.5, "p50"), (0.99, "p99"), (1.0, "max")] {
        let target = if name == "max" {
            format!("   (target <= 2000 ms: {})", verdict(max_ok))
        } else {
            String::new()
        };
        match quantile_ms(&visible, q) {
            Some(v) => report.line(
                &format!("searchable within {name}"),
                format!("{v:.2} ms{target}"),
            ),
            None => report.line(&format!("searchable within {name}"), "no samples"),
        }
    }
    report.set("searchable_within", latency_json(&visible));
    report.set("searchable_never", json!(never));
    match lag_zero {
        Some(d) => report.line(
            "index lag 0 after the last ack",
            format!("{:.2} ms", d.as_secs_f64() * 1e3),
        ),
        None => report.line("index lag 0 after the last ack", "no acknowledgement"),
    }
    report.set(
        "index_lag_zero_after_last_ack_ms",
        json!(lag_zero.map(|d| r2(d.as_secs_f64() * 1e3))),
    );
    generator_lines(&mut report, out.stalls, made);
    report.tally(&tally);
    Ok(report)
}

/// How big the generated events are, for headings.
fn size_text(event_bytes: usize) -> String {
    if event_bytes == 0 {
        "events of the generator's natural size".into()
    } else {
        format!("≈{event_bytes} bytes per event")
    }
}

fn generator_lines(report: &mut Report, stalls: u64, made: Option<Produced>) {
    let note = if stalls > 0 {
        "   (times a client found no body ready: the generator may have limited the load)"
    } else {
        ""
    };
    report.line("generator stalls", format!("{stalls}{note}"));
    report.set("generator_stalls", json!(stalls));
    if let Some(p) = made {
        report.line(
            "generator capacity (its own thread)",
            format!("{:.0} events/s", p.capacity()),
        );
        report.set("generator_events_per_s", json!(p.capacity().round()));
    }
}

// ---------------------------------------------------------------------------------
// Scenario: single

async fn single(ctx: &Ctx, o: &Opts) -> Result<Report> {
    let clients = o.clients.unwrap_or(64);
    let mut report = Report::new(
        "single",
        format!(
            "{clients} clients each posting one JSON event ({}) per request, {:.1} s measured after {:.1} s warm-up",
            size_text(o.event_bytes), o.duration, o.warmup
        ),
        json!({"clients": clients, "event_bytes": o.event_bytes,
               "duration_s": o.duration, "warmup_s": o.warmup, "seed": o.seed}),
    );
    let (rx, gen) = producer(o.seed, o.event_bytes, 1, None, u64::MAX, 8192);
    let timing = Timing::start(o);
    let out = ingest_clients(ctx, clients, rx, timing, JSON, None).await;
    let made = gen.join().ok();
    ctx.check()?;
    let secs = timing.secs();
    let rate = out.requests as f64 / secs;
    let h = out.hist.unwrap_or_else(hist);
    let p99 = quantile_ms(&h, 0.99);
    report.line(
        "requests/s",
        format!(
            "{rate:.0} requests/s   (target >= 15000: {})",
            verdict(rate >= 15_000.0)
        ),
    );
    report.line("events acknowledged (measured)", out.events);
    report.line("requests answered (measured)", out.requests);
    let p99_target = format!(
        "target <= 10 ms: {}",
        verdict(p99.is_some_and(|v| v <= 10.0))
    );
    report.latency(
        "request_latency",
        "request latency",
        &h,
        &[("p99", &p99_target)],
    );
    report.set("requests_per_s", json!(r2(rate)));
    report.set("requests", json!(out.requests));
    report.set("events", json!(out.events));
    generator_lines(&mut report, out.stalls, made);
    report.tally(&out.tally);
    Ok(report)
}

// ---------------------------------------------------------------------------------
// Scenario: query

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    ListAction,
    ListTenant,
    ListUser,
    ListMinSeverity,
    Search,
    GetById,
    Stats,
    History,
    Timeline,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::ListAction,
        Kind::ListTenant,
        Kind::ListUser,
        Kind::ListMinSeverity,
        Kind::Search,
        Kind::GetById,
        Kind::Stats,
        Kind::History,
        Kind::Timeline,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::ListAction => "list ?action= newest 100",
            Kind::ListTenant => "list ?tenant= newest 100",
            Kind::ListUser => "list ?user_id= newest 100",
            Kind::ListMinSeverity => "list ?min_severity= newest 100",
            Kind::Search => "search ?q=<word> newest 100",
            Kind::GetById => "get by id",
            Kind::Stats => "stats ?hours=720",
            Kind::History => "entity history, first 100",
            Kind::Timeline => "user timeline, newest 100",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::ListAction => "list_action",
            Kind::ListTenant => "list_tenant",
            Kind::ListUser => "list_user_id",
            Kind::ListMinSeverity => "list_min_severity",
            Kind::Search => "search",
            Kind::GetById => "get_by_id",
            Kind::Stats => "stats_720h",
            Kind::History => "entity_history",
            Kind::Timeline => "user_timeline",
        }
    }

    /// The request path for one sampled event, if it has the field this kind needs.
    fn path(self, s: &Sample) -> Option<String> {
        Some(match self {
            Kind::ListAction => format!("/v1/events?action={}&limit=100", enc(&s.action)),
            Kind::ListTenant => format!("/v1/events?tenant={}&limit=100", enc(s.tenant.as_ref()?)),
            Kind::ListUser => format!("/v1/events?user_id={}&limit=100", enc(s.user_id.as_ref()?)),
            Kind::ListMinSeverity => {
                format!("/v1/events?min_severity={}&limit=100", enc(s.severity?))
            }
            Kind::Search => format!("/v1/search?q={}&limit=100", enc(s.word.as_ref()?)),
            Kind::GetById => format!("/v1/events/{}", enc(&s.id)),
            Kind::Stats => "/v1/stats?hours=720".to_owned(),
            Kind::History => {
                let (ty, id) = s.entity.as_ref()?;
                format!("/v1/entities/{}/{}/history?limit=100", enc(ty), enc(id))
            }
            Kind::Timeline => format!("/v1/users/{}/events?limit=100", enc(s.user_id.as_ref()?)),
        })
    }

    /// Whether an answer with no events means the query matched nothing.
    fn lists(self) -> bool {
        !matches!(self, Kind::GetById | Kind::Stats)
    }
}

struct KindOut {
    hist: Histogram<u64>,
    tally: Tally,
    empty: u64,
}

async fn query(ctx: &Ctx, o: &Opts) -> Result<Report> {
    let clients = o.clients.unwrap_or(4);
    let mut report = Report::new(
        "query",
        format!(
            "{} events ingested, then {clients} clients running the query mix, {:.1} s measured after {:.1} s warm-up",
            o.events, o.duration, o.warmup
        ),
        json!({"clients": clients, "events": o.events, "event_bytes": o.event_bytes,
               "duration_s": o.duration, "warmup_s": o.warmup, "seed": o.seed}),
    );

    // 1. Ingest (not measured).
    eprintln!(
        "loadgen: query: ingesting {} events in batches of 1000",
        o.events
    );
    let sample_every = (o.events / 4000).max(1);
    let (rx, gen) = producer(
        o.seed,
        o.event_bytes,
        1000,
        Some(o.events),
        sample_every,
        16,
    );
    let started = Instant::now();
    let forever = Timing {
        warm_end: started,
        end: started + Duration::from_secs(365 * 86_400),
    };
    let ingest = ingest_clients(ctx, 2, rx, forever, NDJSON, None).await;
    let ingest_secs = started.elapsed().as_secs_f64();
    let samples = gen
        .join()
        .map_err(|_| anyhow!("the event generator thread panicked"))?
        .samples;
    ctx.check()?;
    eprintln!(
        "loadgen: query: ingested {} events in {ingest_secs:.1} s ({:.0} events/s); waiting for the index",
        ingest.events,
        ingest.events as f64 / ingest_secs
    );
    let indexed_at = wait_indexed(ctx, INDEX_WAIT).await?;
    let index_wait = indexed_at.saturating_duration_since(started).as_secs_f64() - ingest_secs;
    report.line(
        "ingest (not measured)",
        format!(
            "{} events in {ingest_secs:.1} s ({:.0} events/s), indexed {:.1} s later",
            ingest.events,
            ingest.events as f64 / ingest_secs,
            index_wait.max(0.0)
        ),
    );
    report.set("ingested_events", json!(ingest.events));
    report.set("ingest_s", json!(r2(ingest_secs)));
    report.set("index_wait_s", json!(r2(index_wait.max(0.0))));
    if ingest.tally.non_2xx() + ingest.tally.transport_errors > 0 {
        report.line(
            "ingest failures",
            format!(
                "{} non-2xx, {} transport errors; first: {}",
                ingest.tally.non_2xx(),
                ingest.tally.transport_errors,
                ingest
                    .tally
                    .first_problem
                    .as_deref()
                    .or(ingest.tally.first_transport_error.as_deref())
                    .unwrap_or("-")
            ),
        );
    }

    // 2. The mix.
    let paths: Arc<Vec<Vec<String>>> = Arc::new(
        Kind::ALL
            .iter()
            .map(|k| samples.iter().filter_map(|s| k.path(s)).collect())
            .collect(),
    );
    let timing = Timing::start(o);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (ctx, paths) = (ctx.clone(), paths.clone());
            let seed = o.seed ^ (0x9e37_79b9 + i as u64);
            tokio::spawn(async move { query_client(ctx, paths, timing, seed, i).await })
        })
        .collect();
    let mut per: Vec<KindOut> = Kind::ALL
        .iter()
        .map(|_| KindOut {
            hist: hist(),
            tally: Tally::default(),
            empty: 0,
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(outs) => {
                for (all, one) in per.iter_mut().zip(outs) {
                    let _ = all.hist.add(&one.hist);
                    all.tally.merge(one.tally);
                    all.empty += one.empty;
                }
            }
            Err(e) => ctx.abort(format!("a client task failed: {e}")),
        }
    }
    ctx.check()?;

    let secs = timing.secs();
    let total: u64 = per.iter().map(|k| k.hist.len()).sum();
    report.line(
        "queries/s (all kinds)",
        format!("{:.0} queries/s", total as f64 / secs),
    );
    report.set("queries_per_s", json!(r2(total as f64 / secs)));
    report.lines.push(format!(
        "  {:<32} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6}",
        "kind (latency in ms)", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "non-2xx", "empty"
    ));
    let mut kinds = Map::new();
    let mut tally = Tally::default();
    for ((k, out), choices) in Kind::ALL.iter().zip(per).zip(paths.iter()) {
        let h = &out.hist;
        let q = |q: f64| quantile_ms(h, q).map_or("-".to_owned(), |v| format!("{v:.2}"));
        report.lines.push(format!(
            "  {:<32} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6}",
            k.name(),
            h.len(),
            q(0.5),
            q(0.95),
            q(0.99),
            q(1.0),
            out.tally.non_2xx() + out.tally.transport_errors,
            out.empty
        ));
        let mut j = latency_json(h);
        if let Value::Object(m) = &mut j {
            m.insert("non_2xx".into(), json!(out.tally.non_2xx()));
            m.insert("empty".into(), json!(out.empty));
            m.insert("distinct_values".into(), json!(choices.len()));
        }
        kinds.insert(k.key().into(), j);
        tally.merge(out.tally);
    }
    report.set("kinds", Value::Object(kinds));
    report.line(
        "target",
        "HTTP <= in-process + 1 ms (compare with `cargo bench --bench index`)",
    );
    report.tally(&tally);
    Ok(report)
}

/// One query client: the kinds in turn (offset by client), values drawn at random.
async fn query_client(
    ctx: Ctx,
    paths: Arc<Vec<Vec<String>>>,
    timing: Timing,
    seed: u64,
    offset: usize,
) -> Vec<KindOut> {
    let mut rng = EventGen::new(seed);
    let mut c = Client::new(&ctx);
    let mut out: Vec<KindOut> = Kind::ALL
        .iter()
        .map(|_| KindOut {
            hist: hist(),
            tally: Tally::default(),
            empty: 0,
        })
        .collect();
    let mut turn = offset;
    while !ctx.aborted() && Instant::now() < timing.end {
        let k = turn % Kind::ALL.len();
        turn += 1;
        let choices = &paths[k];
        if choices.is_empty() {
            continue;
        }
        let path = &choices[(rng.next_u64() % choices.len() as u64) as usize];
        match c.call(Method::GET, path, None, Bytes::new()).await {
            Ok(a) => {
                let ok = out[k].tally.note(&a);
                if timing.measured(a.at) {
                    record(&mut out[k].hist, a.latency);
                    if ok && Kind::ALL[k].lists() && contains(&a.body, b"\"events\":[]") {
                        out[k].empty += 1;
                    }
                }
            }
            Err(e) => c.failed(&mut out[k].tally, e).await,
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Scenario: stream

#[derive(Default)]
struct SseOut {
    events: u64,
    malformed: u64,
    duplicates: u64,
    comments: u64,
    ended: Option<String>,
}

/// Reads `GET /v1/stream`, recording when each seq arrived. Signals `ready` once the
/// stream is open (its start position is then fixed), stops when `stop` flips.
async fn sse_reader(
    ctx: Ctx,
    arrivals: Arc<Mutex<HashMap<u64, Instant>>>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> SseOut {
    let mut out = SseOut::default();
    let opened = async {
        let mut sender = connect(ctx.addr).await?;
        let mut req = Request::builder()
            .method(Method::GET)
            .uri("/v1/stream")
            .header("host", &ctx.host)
            .header("accept", "text/event-stream");
        if let Some(a) = &ctx.authorization {
            req = req.header("authorization", a);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| "GET /v1/stream: no answer".to_owned())?
            .map_err(|e| format!("GET /v1/stream: {e}"))?;
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if resp.status() != StatusCode::OK || !ctype.starts_with("text/event-stream") {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(format!(
                "GET /v1/stream answered {status} ({ctype}): {body}"
            ));
        }
        // Keep the sender alive with the body: dropping it may close the connection.
        Ok((sender, resp.into_body()))
    }
    .await;
    let (_sender, mut body) = match opened {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            out.ended = Some(e);
            return out;
        }
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = stop.changed() => return out,
        };
        let now = Instant::now();
        match frame {
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    buf.extend_from_slice(&data);
                    while let Some(pos) = find(&buf, b"\n\n") {
                        let block: Vec<u8> = buf.drain(..pos + 2).collect();
                        sse_block(&block, now, &arrivals, &mut out);
                    }
                }
            }
            Some(Err(e)) => {
                out.ended = Some(format!("the stream failed: {e}"));
                return out;
            }
            None => {
                out.ended = Some("the daemon ended the stream".into());
                return out;
            }
        }
    }
}

/// Reads `GET /v1/stream/ws` on this (blocking) thread, recording when each seq
/// arrived: each text frame is one event's JSON, with its `seq`. Like [`sse_reader`].
fn ws_reader(
    ctx: &Ctx,
    arrivals: &Mutex<HashMap<u64, Instant>>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> SseOut {
    use tungstenite::client::IntoClientRequest;
    let mut out = SseOut::default();
    let opened = (|| {
        let tcp = std::net::TcpStream::connect(ctx.addr).map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut req = format!("ws://{}/v1/stream/ws", ctx.host)
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if let Some(a) = &ctx.authorization {
            req.headers_mut()
                .insert("authorization", a.parse().map_err(|_| "a bad key")?);
        }
        let (ws, _) =
            tungstenite::client(req, tcp).map_err(|e| format!("GET /v1/stream/ws: {e}"))?;
        // Short reads, so that `stop` is seen.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(ws)
    })();
    let mut ws = match opened {
        Ok(ws) => {
            let _ = ready.send(Ok(()));
            ws
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            out.ended = Some(e);
            return out;
        }
    };
    while !*stop.borrow() {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let now = Instant::now();
                let seq = serde_json::from_str::<Value>(t.as_str())
                    .ok()
                    .and_then(|v| v.get("seq").and_then(Value::as_u64));
                match seq {
                    Some(seq) => {
                        out.events += 1;
                        if lock(arrivals).insert(seq, now).is_some() {
                            out.duplicates += 1;
                        }
                    }
                    None => out.malformed += 1,
                }
            }
            Ok(tungstenite::Message::Close(f)) => {
                out.ended = Some(format!("the daemon closed the socket: {f:?}"));
                return out;
            }
            Ok(_) => out.comments += 1,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                out.ended = Some(format!("the socket failed: {e}"));
                return out;
            }
        }
    }
    out
}

/// One SSE event block: `id:` (the seq) and `data:` (the JSON event); `:` comments.
fn sse_block(block: &[u8], at: Instant, arrivals: &Mutex<HashMap<u64, Instant>>, out: &mut SseOut) {
    let text = String::from_utf8_lossy(block);
    let (mut id, mut data, mut any) = (None, String::new(), false);
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with(':') {
            out.comments += 1;
            continue;
        }
        any = true;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.trim().parse::<u64>().ok(),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    if !any {
        return;
    }
    let seq_in_data = serde_json::from_str::<Value>(&data)
        .ok()
        .and_then(|v| v.get("seq").and_then(Value::as_u64));
    match id {
        Some(seq) if seq_in_data == Some(seq) => {
            out.events += 1;
            let mut a = lock(arrivals);
            if a.insert(seq, at).is_some() {
                out.duplicates += 1;
            }
        }
        _ => out.malformed += 1,
    }
}

/// Posts bodies from `rx` one by one; returns (seq, 201 instant) of each acknowledgement.
async fn stream_poster(
    ctx: Ctx,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Bytes>>>,
    timing: Timing,
) -> (Vec<(u64, Instant)>, Histogram<u64>, Tally) {
    let mut c = Client::new(&ctx);
    let (mut acks, mut h, mut tally) = (Vec::new(), hist(), Tally::default());
    loop {
        let next = rx.lock().await.recv().await;
        let Some(body) = next else { break };
        if ctx.aborted() {
            break;
        }
        match c.call(Method::POST, "/v1/events", Some(JSON), body).await {
            Ok(a) => {
                tally.note_ingest(&a);
                if a.status == StatusCode::CREATED {
                    let seq = serde_json::from_slice::<Value>(&a.body)
                        .ok()
                        .and_then(|v| v.pointer("/events/0/seq").and_then(Value::as_u64));
                    match seq {
                        Some(seq) => acks.push((seq, a.at)),
                        None => {
                            tally
                                .first_problem
                                .get_or_insert_with(|| "201 without events[0].seq".to_owned());
                        }
                    }
                }
                if timing.measured(a.at) {
                    record(&mut h, a.latency);
                }
            }
            Err(e) => c.failed(&mut tally, e).await,
        }
    }
    (acks, h, tally)
}

async fn stream(ctx: &Ctx, o: &Opts) -> Result<Report> {
    let posters = o.clients.unwrap_or(4);
    let mut report = Report::new(
        "stream",
        format!(
            "1 {} client, {} events/s posted one per request over {posters} connections, {:.1} s measured after {:.1} s warm-up",
            if o.ws { "WebSocket (/v1/stream/ws)" } else { "SSE (/v1/stream)" },
            o.rate, o.duration, o.warmup
        ),
        json!({"rate": o.rate, "posters": posters, "event_bytes": o.event_bytes, "ws": o.ws,
               "duration_s": o.duration, "warmup_s": o.warmup, "seed": o.seed}),
    );
    let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reader = if o.ws {
        let (ctx, arrivals) = (ctx.clone(), arrivals.clone());
        tokio::task::spawn_blocking(move || ws_reader(&ctx, &arrivals, ready_tx, &stop_rx))
    } else {
        tokio::spawn(sse_reader(ctx.clone(), arrivals.clone(), ready_tx, stop_rx))
    };
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("cannot open the stream: {e}"),
        Err(_) => bail!("the stream reader stopped"),
    }

    let (tx, rx) = mpsc::channel::<Bytes>(2 * posters);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let timing = Timing::start(o);
    let tasks: Vec<_> = (0..posters)
        .map(|_| tokio::spawn(stream_poster(ctx.clone(), rx.clone(), timing)))
        .collect();
    // The ticker: one event per tick; a tick finding every poster busy is skipped.
    let mut g = EventGen::new(o.seed).with_base_time(base_time());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut offered, mut skipped) = (0u64, 0u64);
    while !ctx.aborted() && Instant::now() < timing.end {
        tick.tick().await;
        let mut body = Vec::with_capacity(1024);
        to_json(&next_event(&mut g, o.event_bytes), &mut body);
        match tx.try_send(Bytes::from(body)) {
            Ok(()) => {
                if timing.measured(Instant::now()) {
                    offered += 1;
                }
            }
            Err(_) => skipped += 1,
        }
    }
    drop(tx);
    let mut acks = Vec::new();
    let mut post_h = hist();
    let mut tally = Tally::default();
    for t in tasks {
        match t.await {
            Ok((a, h, tl)) => {
                acks.extend(a);
                let _ = post_h.add(&h);
                tally.merge(tl);
            }
            Err(e) => ctx.abort(format!("a poster task failed: {e}")),
        }
    }
    ctx.check()?;

    // Wait for the last acknowledged events to arrive.
    let deadline = Instant::now() + STREAM_DRAIN;
    loop {
        let missing = {
            let a = lock(&arrivals);
            acks.iter().filter(|(s, _)| !a.contains_key(s)).count()
        };
        if missing == 0 || Instant::now() > deadline || reader.is_finished() {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let _ = stop_tx.send(true);
    let sse = reader.await.unwrap_or_default();
    ctx.check()?;

    let arrivals = lock(&arrivals).clone();
    let mut h = hist();
    let (mut measured, mut missing, mut early) = (0u64, 0u64, 0u64);
    for (seq, acked) in &acks {
        if !timing.measured(*acked) {
            continue;
        }
        measured += 1;
        match arrivals.get(seq) {
            Some(at) => {
                if at < acked {
                    early += 1;
                }
                record(&mut h, at.saturating_duration_since(*acked));
            }
            None => missing += 1,
        }
    }
    let p99 = quantile_ms(&h, 0.99);
    report.line(
        "acknowledged posts (measured)",
        format!(
            "{measured} ({:.1} events/s; {offered} offered)",
            measured as f64 / timing.secs()
        ),
    );
    if skipped > 0 {
        report.line("ticks skipped (every poster busy)", skipped);
    }
    let p99_target = format!(
        "target <= 50 ms: {}",
        verdict(p99.is_some_and(|v| v <= 50.0) && missing == 0)
    );
    report.latency(
        "delivery_latency",
        if o.ws {
            "WebSocket delivery after the 201"
        } else {
            "SSE delivery after the 201"
        },
        &h,
        &[("p99", &p99_target)],
    );
    report.line(
        "acknowledged but never streamed",
        format!(
            "{missing}   (waited up to {} s after the last post)",
            STREAM_DRAIN.as_secs()
        ),
    );
    report.line("streamed before its 201 (counted 0 ms)", early);
    report.line(
        "events received",
        format!(
            "{} ({} malformed, {} duplicates, {} comments or pings)",
            sse.events, sse.malformed, sse.duplicates, sse.comments
        ),
    );
    if let Some(e) = &sse.ended {
        report.line("stream ended early", e);
    }
    report.latency("post_latency", "post latency", &post_h, &[]);
    report.set("acknowledged", json!(measured));
    report.set("missing", json!(missing));
    report.set("streamed_before_ack", json!(early));
    report.set("sse_events", json!(sse.events));
    report.set("sse_malformed", json!(sse.malformed));
    report.set("sse_duplicates", json!(sse.duplicates));
    report.set("stream_ended_early", json!(sse.ended));
    report.set("ticks_skipped", json!(skipped));
    report.tally(&tally);
    Ok(report)
}
