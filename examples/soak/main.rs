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
//!   unfiltered stream must also be gap-free (every seq, in order): it asks for
//!   `stele_records=include`, since streams leave Stele's own records out by default
//!   (the filtered ones keep that default); the own records it sees are counted.
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
//!   exactly first..=last, and no foreign event appears: every exported event is either
//!   a client id of this run or one of Stele's own records, which the export includes by
//!   default (`ingested_by` `stele` and a category in `checks::OWN_CATEGORIES`:
//!   `stele.finding`, the detectors' findings, or `audit_access`). The detectors are on
//!   by default, so they stay on in the soak; own records count as present seqs and are
//!   reported ("Stele's own records", `stele_own_records` in the JSON);
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

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod client;
mod daemon;
mod ingest;
mod opts;
mod query;
mod report;
mod retention;
mod run;
mod seed;
mod state;
mod stream;
mod supervise;

use opts::{check_opts, preflight, Opts};
use run::soak;

/// The bound on the daemon's resident set size (VmRSS, MiB) over the whole run, for
/// the default 30-minute run. Measured (module documentation, "The RSS bound"): peaks
/// of 362 to 526 MiB over 15 minutes, growing ≈0.3 MiB/s; ≈800–850 MiB extrapolated
/// to 30 minutes.
pub const RSS_MAX_MIB: u64 = 1024;
/// Shortest and longest run accepted (`--minutes`).
pub const MINUTES_MIN: u64 = 1;
pub const MINUTES_MAX: u64 = 24 * 60;
/// Longest wait for one answer before the request counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for `Listening on` after a (re)start: recovery and index catch-up.
pub const START_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest wait for the daemon to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the load tasks to finish once told to stop.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at one ingest request before it is abandoned (≈ 200 ms apart while the
/// daemon is up; waiting for a restart does not count).
pub const INGEST_ATTEMPTS_MAX: u32 = 50;
/// How often retention's state is polled.
pub const RETENTION_POLL: Duration = Duration::from_secs(2);
/// How often the daemon's RSS is sampled.
pub const RSS_EVERY: Duration = Duration::from_millis(500);
/// How often a progress line is printed.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Failure messages kept (all are counted).
pub const FAILURES_KEPT: usize = 50;
/// Recently acknowledged events kept for get-by-id queries.
pub const RECENT_KEPT: usize = 10_000;
/// Disk per ≈500-byte event: segments (≈490 B) and both indexes (≈270 B), measured
/// after a 10-minute run (427 MB for 566,000 events), with some headroom.
pub const DISK_BYTES_PER_EVENT: u64 = 1000;
/// `[limits] disk_reserve_bytes` of the daemon (its default): ingest answers 507 below it.
pub const DAEMON_DISK_RESERVE: u64 = 256 << 20;
pub const NDJSON: &str = "application/x-ndjson";
pub const JSON: &str = "application/json";

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
