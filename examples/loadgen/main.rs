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
//! cargo run --release --example loadgen -- detect      # detectors off vs on, latency
//! cargo run --release --example loadgen -- console     # the web console at 1,000,000 events
//! cargo run --release --example loadgen -- all         # the five in sequence
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
//!   event is returned: "searchable within" p50/p99/max is that ack → visible time. The
//!   probes poll one at a time, oldest first (the index makes events visible in seq
//!   order), so that they add one query every 10 ms, not one per pending probe. At the
//!   end it reports how long after the last acknowledgement `/metrics` shows
//!   `stele_index_lag_events 0`. With `--events N` it posts exactly N events instead of
//!   running for `--duration`, and the measured window ends at the last
//!   acknowledgement. **Target: batched NDJSON ingest (1,000 per request)
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
//! - `detect` (`--events` default 500,000 per daemon, `--pairs` default 2, `--users`
//!   default 50,000, `--burst-every` default 200 ms, `--clients` default 2): the cost and
//!   the latency of the detectors (issue 18). Starts fresh daemons with the detectors
//!   off (`STELE_DETECT_ENABLED=false`) and on, alternating (off, on, on, off, …), and
//!   ingests `--events` NDJSON events of `--batch` into each, with the users and
//!   addresses spread over `--users` users (home addresses, one event in 10 from
//!   elsewhere) and the generator's share of failed logins; the same workload (seed) for
//!   both daemons of a pair. Meanwhile, on both, one client reads
//!   `GET /v1/stream?category=stele.finding` (findings as soon as they are stored: the
//!   stream reads the log, where `/v1/findings` waits for the index) and another injects,
//!   every `--burst-every`, a burst of failed logins for a fresh user (4 in one request,
//!   then the 5th, the default `login_burst_count`, alone). Reports events/s per daemon
//!   and off vs on (**target: the detectors cost ≤ 10 %**), detection latency from the
//!   201 of the 5th failure to the `failed_login_burst` finding on the stream,
//!   p50/p95/p99/max (**target: p99 ≤ 2 s**), findings by kind, the detectors' tracked
//!   users/IPs/scopes (`/metrics`) and each daemon's VmRSS / VmHWM at the end of its
//!   ingest. At 1,000,000 events: `loadgen detect --events 1000000`.
//! - `console` (`--events` default 1,000,000, `--runs` default 5, `--live-events`
//!   default 50): the web console (issue 19) in headless Chromium (Debian's `chromium`
//!   and `chromedriver`, as the console tests use them). Ingests the events (not
//!   measured), then opens the events list, a full-text search and the dashboard
//!   `--runs` times each in a fresh browser profile (a cold cache) and reads Chromium's
//!   performance timeline: the page's `domInteractive`, the console's marks
//!   `stele-view` (the view's controls in place) and `stele-ready` (its first data
//!   shown: the first results page, the dashboard's figures), and the bytes of the
//!   console's files as transferred (compressed) apart from the API's answers; a warm
//!   reload (files revalidated by ETag) follows. **Targets: first view interactive
//!   within 1 s at 1,000,000 events; the page ≤ 300 KB compressed.** Then, Live on,
//!   `--live-events` single events 100 ms apart: the delay from each 201 to its row in
//!   the page (the page's clock, `performance.timeOrigin + now()`), p50/p95/max.
//! - `gen` (`--events` default 1,000,000, `--out FILE`): no daemon; writes the peer
//!   benchmark's workload (`scripts/bench-peers.sh`) as NDJSON, see `genfile.rs`.
//! - `all`: `batch`, `single`, `query`, `stream` and `detect` in sequence (not
//!   `console`, which needs Chromium).
//!
//! Answers by status, non-2xx answers and transport errors are counted over the whole
//! run (warm-up and the "searchable within" probes included); the first non-2xx body
//! (problem+json) is shown. The human-readable summary goes to stdout; with `--json` it
//! goes to stderr and stdout carries only one JSON object per scenario (one per line),
//! for scripts. Progress messages always go to stderr. Exit status 0 when every scenario
//! ran (whether or not it met its targets), 1 when one failed, 2 for bad options.
//!
//! # Layout
//!
//! - `main.rs`: the options (CLI), the scenario list, starting and stopping a daemon
//!   around each scenario;
//! - `daemon.rs`: a self-started `stele serve` and what a scenario's tasks share with it
//!   (`Ctx`: address, key, abort flag; the watchdog);
//! - `client.rs`: one keep-alive client, answers by status, the measured window,
//!   histograms, health and index-lag probes;
//! - `gen.rs`: event generation into request bodies on a thread of its own;
//! - `ingest.rs`: ingest clients shared by the scenarios, the "searchable within" probes;
//! - `report.rs`: the text and JSON report;
//! - one module a scenario: `batch.rs`, `single.rs`, `query.rs`, `stream.rs`,
//!   `detect.rs`, `console.rs` (which borrows the console tests' WebDriver session,
//!   `tests/it/console/browser.rs`).
//!
//! `examples/common/` (connections, requests, percent-encoding) is shared with `soak`.

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Parser, ValueEnum};

#[path = "../common/mod.rs"]
mod common;

mod batch;
/// The console tests' WebDriver session (chromedriver + headless Chromium).
#[allow(dead_code)]
#[path = "../../tests/it/console/browser.rs"]
mod browser;
mod client;
mod console;
mod daemon;
mod detect;
mod gen;
mod genfile;
mod ingest;
mod query;
mod report;
mod single;
mod stream;

use client::healthy;
use daemon::{watchdog, Ctx, Daemon};
use report::Report;

/// Set on Ctrl-C: the running scenario aborts (its daemon is stopped and its data
/// directory removed) and no further scenario starts.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Longest wait for one answer before the connection is dropped and the request counted
/// as a transport error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Consecutive transport failures on one client after which the daemon counts as gone.
pub const FAILURES_FATAL: u32 = 3;
/// How long a "searchable within" probe keeps polling before giving up.
pub const VISIBLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of the "searchable within" probes and the index-lag watch.
pub const POLL_EVERY: Duration = Duration::from_millis(10);
/// How long the stream scenario waits for the last acknowledged events to arrive.
pub const STREAM_DRAIN: Duration = Duration::from_secs(5);
/// Longest wait for the indexes to catch up (index lag 0).
pub const INDEX_WAIT: Duration = Duration::from_secs(600);
pub const NDJSON: &str = "application/x-ndjson";
pub const JSON: &str = "application/json";

#[derive(Parser, Debug, Clone)]
#[command(
    about = "HTTP load generator for `stele serve` (see the doc comment of examples/loadgen/main.rs)"
)]
pub struct Opts {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The stele binary to start for each scenario (unused with --addr).
    #[arg(long, default_value = "target/release/stele")]
    pub stele: PathBuf,
    /// Target an already running daemon at HOST:PORT (loopback only) instead of starting one.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Measured seconds per scenario.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,
    /// Unmeasured seconds before the measurement starts.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub warmup: f64,
    /// Connections (simulated clients); default batch 2, single 64, query 4, stream 4 posters.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Events per request in the batch scenario (1 to 10,000).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Events ingested: before the query mix (default 200,000); into each daemon of
    /// the detect scenario (default 500,000); before the console is opened
    /// (default 1,000,000); by the batch scenario, which then posts exactly that
    /// many and measures until the last acknowledgement (default: --duration).
    #[arg(long)]
    pub events: Option<u64>,
    /// Detect scenario: pairs of daemons (detectors off, on), run in ABBA order.
    #[arg(long, default_value_t = 2)]
    pub pairs: usize,
    /// Detect scenario: distinct users in the generated events.
    #[arg(long, default_value_t = 50_000)]
    pub users: u64,
    /// Detect scenario: milliseconds between two injected failed-login bursts.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub burst_every: u64,
    /// Events posted per second in the stream scenario.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Approximate encoded size of each event in bytes (0: the generator's natural size).
    #[arg(long, value_name = "BYTES", default_value_t = 500)]
    pub event_bytes: usize,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 0x57e1e)]
    pub seed: u64,
    /// Also print one JSON object per scenario on stdout (the summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Directory under which each self-started daemon gets a fresh data directory.
    #[arg(long, value_name = "DIR", default_value = "target/loadgen")]
    pub data_parent: PathBuf,
    /// Echo the self-started daemon's log to stderr.
    #[arg(long)]
    pub daemon_log: bool,
    /// Run the self-started daemon with access control: one API key holding every role
    /// (all tenants, a rate limit of 1,000,000 requests/s so the bucket is checked but
    /// never refuses), sent with every request; reads are then recorded as
    /// `audit_access` events. Compare with a run without it for the cost of
    /// authentication, rate limiting and the audit trail.
    #[arg(long, conflicts_with = "addr")]
    pub auth: bool,
    /// In the stream scenario, read `GET /v1/stream/ws` (WebSocket, one text frame per
    /// event) instead of the SSE stream: compare the two transports' delivery latency.
    #[arg(long)]
    pub ws: bool,
    /// Console scenario: cold page loads per view (each in a fresh browser profile).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Console scenario: events posted one by one with Live on.
    #[arg(long, default_value_t = 50)]
    pub live_events: usize,
    /// With --addr: the API key to send (`Authorization: Bearer KEY`).
    #[arg(long, value_name = "KEY", requires = "addr")]
    pub token: Option<String>,
    /// Gen: the NDJSON file to write the workload to (see `genfile.rs`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Batch,
    Single,
    Query,
    Stream,
    Detect,
    Console,
    /// Write the peer benchmark's workload to `--out` (no daemon).
    Gen,
    All,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Batch => "batch",
            Scenario::Single => "single",
            Scenario::Query => "query",
            Scenario::Stream => "stream",
            Scenario::Detect => "detect",
            Scenario::Console => "console",
            Scenario::Gen => "gen",
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
            Scenario::Detect,
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
    if o.events == Some(0) {
        bail!("--events must be at least 1");
    }
    if o.pairs == 0 || o.users == 0 || o.burst_every == 0 {
        bail!("--pairs, --users and --burst-every must be at least 1");
    }
    if o.scenario == Scenario::Detect && o.addr.is_some() {
        bail!("the detect scenario starts its own daemons (detectors off and on): no --addr");
    }
    Ok(())
}

/// Starts a daemon (unless `--addr`), runs one scenario against it, stops it.
fn run_scenario(rt: &tokio::runtime::Runtime, o: &Opts, s: Scenario) -> Result<Report> {
    if s == Scenario::Detect {
        if o.addr.is_some() {
            bail!("the detect scenario starts its own daemons: skipped with --addr");
        }
        return detect::detect(rt, o);
    }
    if s == Scenario::Console {
        return console::console(rt, o);
    }
    if s == Scenario::Gen {
        return genfile::gen_file(o);
    }
    let (daemon, ctx) = target(o)?;
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
                Scenario::Batch => batch::batch(&ctx, o).await,
                Scenario::Single => single::single(&ctx, o).await,
                Scenario::Query => query::query(&ctx, o).await,
                Scenario::Stream => stream::stream(&ctx, o).await,
                Scenario::Detect | Scenario::Console | Scenario::Gen | Scenario::All => {
                    unreachable!(
                        "`detect` and `console` run their own daemons, `all` is expanded by main"
                    )
                }
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
/// The daemon a scenario drives: one started for it (returned, to be
/// stopped), or the one at `--addr`.
fn target(o: &Opts) -> Result<(Option<Daemon>, Ctx)> {
    let daemon = match &o.addr {
        Some(_) => None,
        None => Some(Daemon::start(o)?),
    };
    let ctx = match (&daemon, &o.addr) {
        (Some(d), _) => Ctx::new(d.addr, Some(d.child.clone()), d.token.clone()),
        (None, Some(a)) => Ctx::new(loopback_addr(a)?, None, o.token.clone()),
        (None, None) => unreachable!("a daemon is started when no --addr is given"),
    };
    Ok((daemon, ctx))
}

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
