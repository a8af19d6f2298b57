//! The detectors' and the run trackers' memory against what they track, and
//! the cost of observing one event, reporting percentiles (issue 18: memory
//! bounded with documented limits, and what happens beyond them). Run
//! deliberately, in release:
//!
//! ```text
//! cargo bench --bench intel                                # 1k, 10k, 100k, 1M
//! STELE_BENCH_INTEL_SIZES=3000000 cargo bench --bench intel # other sizes
//! STELE_BENCH_INTEL_ONLY=users,ips cargo bench --bench intel # some rows only
//! ```
//!
//! Rows: `users`, `ips`, `failed`, `scopes`, `findings`, `runs`.
//!
//! Each row feeds a fresh `intel::detect::Detectors` (default `Limits`:
//! 100,000 users, 100,000 IPs, 10,000 spike scopes, 100,000 remembered
//! findings) or a fresh `intel::runs::Tracker` (default `[processes]`:
//! 100,000 runs) N synthetic events that each bring a new user, IP, scope or
//! run, and reports:
//! - held: the heap bytes live after the feed minus before (a counting global
//!   allocator; the bytes asked for, not the allocator's own overhead), and
//!   per entry tracked; peak: the most live during the feed (the bound's
//!   eviction sorts a copy of the ticks);
//! - what is tracked at the end (`Detectors::tracked`, `Tracker::len`) and
//!   whether the oldest subject is still remembered: beyond a bound the least
//!   recently seen half (detectors) or 1/64 (runs, finished first) is
//!   forgotten, and a forgotten user's failed logins count from 1 again;
//! - observe cost per event: mean, p50, p99 and max of each call timed alone
//!   (≈ 20 ns of the figure is the clock), the event built outside the timing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use stele::event::{Event, Phase, Status, StoredEvent};
use stele::intel::detect::{Detectors, Limits, Thresholds};
use stele::intel::finding::{Level, Subject};
use stele::intel::runs::{Kind, Tracker};
use stele::intel::ProcessesConfig;

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size());
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        grew(l.size());
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new >= l.size() {
            grew(new - l.size());
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// 2026-11-01T00:00:00Z, µs.
const T0: i64 = 1_793_491_200_000_000;

fn ip(i: u64) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// An event at `T0 + i ms`, changed by `f`.
fn stored(i: u64, f: impl FnOnce(&mut Event)) -> StoredEvent {
    let t = T0 + i as i64 * 1000;
    let mut event = Event {
        id: format!("e-{i}"),
        timestamp: Some(t),
        tenant: Some("acme".into()),
        ..Event::default()
    };
    f(&mut event);
    StoredEvent {
        seq: i + 1,
        received_at: t,
        event,
        provenance: None,
    }
}

/// Per-call timings and the heap before a feed.
struct Meter {
    ns: Vec<u32>,
    before: usize,
    started: Instant,
}

impl Meter {
    /// Allocates its samples first, so they are not counted as held.
    fn new(n: usize) -> Meter {
        let ns = Vec::with_capacity(n);
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        Meter {
            ns,
            before,
            started: Instant::now(),
        }
    }

    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.ns
            .push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
        out
    }

    /// Prints one row: held and peak bytes, per `entries`, the timings.
    fn report(mut self, what: &str, n: u64, entries: usize, tracked: &str) {
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(self.before);
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(self.before);
        let wall = self.started.elapsed();
        self.ns.sort_unstable();
        let p = |q: f64| self.ns[((self.ns.len() as f64 - 1.0) * q).round() as usize];
        let mean = self.ns.iter().map(|&x| u64::from(x)).sum::<u64>() / self.ns.len() as u64;
        println!(
            "{what:<26} N={n:<9} held {:>8.2} MB ({:>4} B/entry)  peak {:>8.2} MB  {tracked}",
            held as f64 / 1e6,
            held / entries.max(1),
            peak as f64 / 1e6,
        );
        println!(
            "{:<26}   observe ns/event: mean {mean:>6}  p50 {:>6}  p99 {:>7}  max {:>10}  ({:.2} s)",
            "",
            p(0.5),
            p(0.99),
            p(1.0),
            wall.as_secs_f64()
        );
    }
}

/// Feeds fresh detectors `n` events made by `make` (index → event); returns
/// them with the meter.
fn feed(n: u64, make: impl Fn(u64) -> StoredEvent) -> (Detectors, Meter) {
    let mut d = Detectors::new(Thresholds::default(), Limits::default());
    let mut m = Meter::new(n as usize);
    for i in 0..n {
        let e = make(i);
        let found = m.time(|| d.observe(&e));
        drop(found);
    }
    (d, m)
}

fn tracked_text(d: &Detectors) -> String {
    let [users, ips, scopes, findings] = d.tracked();
    format!("users {users}, IPs {ips}, scopes {scopes}, findings {findings}")
}

/// N users logging in successfully, each from an IP of their own.
fn users(n: u64) {
    let (d, m) = feed(n, |i| {
        stored(i, |e| {
            e.action = "login".into();
            e.status = Some(Status::Success);
            e.user_id = Some(format!("u-{i}"));
            e.ip = Some(ip(i));
        })
    });
    let entries = d.tracked()[0];
    m.report("users (logins)", n, entries, &tracked_text(&d));
}

/// N IPs making requests without a user.
fn ips(n: u64) {
    let (d, m) = feed(n, |i| {
        stored(i, |e| {
            e.action = "api.request".into();
            e.status = Some(Status::Success);
            e.ip = Some(ip(i));
        })
    });
    let entries = d.tracked()[1];
    m.report("IPs (requests, no user)", n, entries, &tracked_text(&d));
}

/// A failed login of a user (and their IP).
fn failed(i: u64, user: &str, addr: &str) -> StoredEvent {
    stored(i, |e| {
        e.action = "login_failed".into();
        e.status = Some(Status::Failure);
        e.user_id = Some(user.into());
        e.ip = Some(addr.into());
    })
}

/// N users each failing once from an IP of their own, after a first user
/// failed 4 times; then that user's 5th failure: a burst if they are still
/// remembered, nothing if forgotten (their count starts again).
fn failed_logins(n: u64) {
    let burst = Thresholds::default().login_burst_count;
    let mut d = Detectors::new(Thresholds::default(), Limits::default());
    let mut m = Meter::new(n as usize);
    for i in 0..burst - 1 {
        drop(d.observe(&failed(i, "first", "192.0.2.1")));
    }
    for i in 0..n {
        let e = failed(burst + i, &format!("u-{i}"), &ip(i));
        drop(m.time(|| d.observe(&e)));
    }
    let last = d.observe(&failed(burst + n, "first", "192.0.2.1"));
    let remembered = last
        .iter()
        .any(|f| f.kind == "failed_login_burst" && f.subject.id == "first");
    let entries = d.tracked()[0] + d.tracked()[1];
    let text = format!(
        "{}; the first user's 5th failure: {}",
        tracked_text(&d),
        if remembered {
            "burst (remembered)"
        } else {
            "no burst (forgotten)"
        }
    );
    drop(last);
    m.report("failed logins (user+IP)", n, entries, &text);
}

/// N distinct actions: N spike scopes (with the system and the tenant).
fn scopes(n: u64) {
    let (d, m) = feed(n, |i| {
        stored(i, |e| {
            e.action = format!("action-{i}");
            e.status = Some(Status::Success);
        })
    });
    let entries = d.tracked()[2];
    m.report("spike scopes (actions)", n, entries, &tracked_text(&d));
}

/// N distinct findings remembered for deduplication (what `Watch` does for
/// each finding event it meets, and `observe` for each finding it raises).
fn findings(n: u64) {
    let mut d = Detectors::new(Thresholds::default(), Limits::default());
    let mut m = Meter::new(n as usize);
    for i in 0..n {
        let subject = Subject {
            kind: "user",
            id: format!("u-{i}"),
        };
        let since = T0 + i as i64 * 1000;
        m.time(|| d.remember(("privilege_change", None, subject, since, Level::Medium)));
    }
    let entries = d.tracked()[3];
    m.report("remembered findings", n, entries, &tracked_text(&d));
}

/// N process runs, each started and finished (two events), 100 names.
fn runs(n: u64) {
    let limits = ProcessesConfig::default().runs();
    let mut t = Tracker::new(Kind::Process, limits);
    let mut m = Meter::new(2 * n as usize);
    for i in 0..n {
        for (k, phase) in [Phase::Started, Phase::Finished].into_iter().enumerate() {
            let e = stored(2 * i + k as u64, |e| {
                e.action = "job.run".into();
                e.process_id = Some(format!("run-{i}"));
                e.process_name = Some(format!("job-{}", i % 100));
                e.phase = Some(phase);
                if phase == Phase::Finished {
                    e.status = Some(Status::Success);
                }
            });
            m.time(|| t.observe(&e));
        }
    }
    let now = T0 + 2 * n as i64 * 1000;
    let first = !t.view(now).by_id("run-0").is_empty();
    let text = format!(
        "runs {} (evicted {}), estimate {:.2} MB; the first run: {}",
        t.len(),
        t.evicted(),
        t.approx_bytes() as f64 / 1e6,
        if first { "remembered" } else { "forgotten" }
    );
    m.report("process runs (Tracker)", n, t.len(), &text);
}

/// A row of the report: its name (for `STELE_BENCH_INTEL_ONLY`) and what
/// it runs for a size.
type Row = (&'static str, fn(u64));

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let sizes: Vec<u64> = std::env::var("STELE_BENCH_INTEL_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000, 1_000_000]);
    let only = std::env::var("STELE_BENCH_INTEL_ONLY").unwrap_or_default();
    let rows: [Row; 6] = [
        ("users", users),
        ("ips", ips),
        ("failed", failed_logins),
        ("scopes", scopes),
        ("findings", findings),
        ("runs", runs),
    ];
    let limits = Limits::default();
    println!(
        "bounds: users {}, IPs {}, scopes {}, findings {}; runs {}",
        limits.users,
        limits.ips,
        limits.scopes,
        limits.emitted,
        ProcessesConfig::default().runs().tracked_max
    );
    for n in sizes {
        for (name, row) in rows {
            if only.is_empty() || only.split(',').any(|o| o.trim() == name) {
                row(n);
            }
        }
        println!();
    }
}
