//! Index and query benchmarks at scale, reporting percentiles (the issue's
//! targets are p95/p99, which criterion's means do not show). Run
//! deliberately, in release:
//!
//! ```text
//! cargo bench --bench index                       # 1,000,000 events
//! STELE_BENCH_EVENTS=200000 cargo bench --bench index
//! ```
//!
//! The data directory is built once under target/bench-data/index-N and
//! reused; delete it to start over. Every window ("the last 30 days", the
//! dashboard's hour) ends at the newest event's time, not the wall clock, so
//! a reused directory measures the same windows. `STELE_BENCH_ONLY=dashboard`
//! (a comma list of `gets`, `lists`, `stats`, `counts`, `dashboard`, `lag`)
//! runs only those sections. Reported: log build rate, full rebuild
//! time (both indexes), index bytes / segment bytes, and p50/p95/p99 of get
//! by id, filtered newest-100, entity history, user timeline, full text
//! (rare and common terms, with and without filters), 30-day statistics, and
//! counts and facets: `/v1/count`, a page with `total`, offset pages, facets
//! and statistics of two groups only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stele::clock::{ManualClock, SystemClock};
use stele::event::{Severity, StoredEvent};
use stele::index::text::StatsRequest;
use stele::index::{IndexConfig, Indexes};
use stele::log::{Direction, Log, LogConfig};
use stele::query::{Engine, Interval, Paging, Query};
use stele::query::{Filter, Order, Sort};
use stele::testkit::EventGen;

const DAY: i64 = 86_400_000_000;

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            total += if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

struct Timer {
    name: String,
    samples: Vec<Duration>,
}

impl Timer {
    fn new(name: &str) -> Timer {
        Timer {
            name: name.into(),
            samples: Vec::new(),
        }
    }
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.samples.push(t.elapsed());
        out
    }
    fn report(&mut self) {
        self.samples.sort();
        let p = |q: f64| {
            let i = ((self.samples.len() as f64 - 1.0) * q).round() as usize;
            self.samples[i].as_secs_f64() * 1e3
        };
        println!(
            "{:<44} n={:<5} p50 {:>8.3} ms  p95 {:>8.3} ms  p99 {:>8.3} ms",
            self.name,
            self.samples.len(),
            p(0.5),
            p(0.95),
            p(0.99)
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` style probing
    }
    let n: u64 = std::env::var("STELE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/index-{n}"));
    let clock = Arc::new(SystemClock);
    let wall = stele::clock::Clock::now_micros(&SystemClock);
    if !dir.join("segments").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let log = Log::open(&dir, LogConfig::default(), clock.clone()).unwrap();
        // 30 days of event time ending now; ingest order = event order.
        let mut gen = EventGen::new(1).with_base_time(wall - 30 * DAY);
        let started = Instant::now();
        let mut left = n;
        while left > 0 {
            let k = left.min(1000);
            let evs: Vec<_> = (0..k).map(|_| gen.sized(500)).collect();
            log.append(&evs, &stele::event::Provenance::cli()).unwrap();
            left -= k;
        }
        println!(
            "built a log of {n} events in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        drop(log);
        let _ = std::fs::remove_dir_all(dir.join("index"));
    }
    let log = Arc::new(Log::open(&dir, LogConfig::default(), clock.clone()).unwrap());
    let segment_bytes = dir_size(&dir.join("segments"));

    // Full rebuild of both indexes.
    if !dir.join("index").exists() {
        let started = Instant::now();
        let idx = Indexes::open(&dir, log.clone(), IndexConfig::default()).unwrap();
        assert!(idx.wait_indexed(log.last_seq(), Duration::from_secs(3600)));
        let secs = started.elapsed().as_secs_f64();
        println!(
            "full rebuild (sled + tantivy): {n} events in {secs:.1} s = {:.0} events/s",
            n as f64 / secs
        );
        idx.close();
    }
    let idx = Arc::new(Indexes::open(&dir, log.clone(), IndexConfig::default()).unwrap());
    assert!(idx.wait_indexed(log.last_seq(), Duration::from_secs(3600)));
    let index_bytes = dir_size(&dir.join("index"));
    println!(
        "segments {:.1} MB, indexes {:.1} MB (sled {:.1}, tantivy {:.1}): ratio {:.2}",
        segment_bytes as f64 / 1e6,
        index_bytes as f64 / 1e6,
        dir_size(&dir.join("index/kv")) as f64 / 1e6,
        dir_size(&dir.join("index/text")) as f64 / 1e6,
        index_bytes as f64 / segment_bytes as f64
    );
    // "Now" is the newest event's time (events are in time order here).
    let now = log
        .range(
            log.last_seq().saturating_sub(1000)..=log.last_seq(),
            Direction::Forward,
        )
        .map(|e| stele::query::event_time(&e.unwrap()))
        .max()
        .unwrap();
    let key = stele::query::cursor_key(&dir).unwrap();
    let engine = Engine::new(
        log.clone(),
        idx.clone(),
        Arc::new(ManualClock::new(now)),
        key,
    );

    // Sample events to draw query values from.
    let mut rng = EventGen::new(9);
    let mut sample: Vec<StoredEvent> = Vec::new();
    for _ in 0..400 {
        let seq = 1 + rng.next_u64() % log.last_seq();
        sample.push(log.get(seq).unwrap().unwrap());
    }

    if only("gets") {
        gets(&engine, &sample);
    }
    if only("lists") {
        lists(&engine, &sample, now);
    }
    if only("stats") {
        stats(&engine, &sample, now);
    }
    if only("counts") {
        counts_and_facets(&engine, &sample, now);
    }
    if only("dashboard") {
        dashboard(&engine, &sample);
    }
    drop(engine);
    if only("lag") {
        lag(&dir, now);
    }
}

/// Whether a section is to run (`STELE_BENCH_ONLY`: a comma list; all when unset).
fn only(section: &str) -> bool {
    std::env::var("STELE_BENCH_ONLY").map_or(true, |v| v.split(',').any(|s| s.trim() == section))
}

fn gets(engine: &Engine, sample: &[StoredEvent]) {
    let mut t = Timer::new("get by id");
    for e in sample.iter().cycle().take(2000) {
        let got = t.time(|| {
            engine
                .get_by_id(&e.event.id, e.event.tenant.as_deref())
                .unwrap()
        });
        assert!(got.is_some());
    }
    t.report();
}

fn lists(engine: &Engine, sample: &[StoredEvent], now: i64) {
    // Each listing by event time (the default) and by seq (arrival).
    let list = |name: &str, make: &dyn Fn(&StoredEvent) -> Filter| {
        for sort in [Sort::Time, Sort::Seq] {
            let mut t = Timer::new(&format!("{name}, by {}", sort.as_str()));
            for e in sample {
                let q = Query {
                    filter: make(e),
                    sort,
                    order: Order::Desc,
                    limit: 100,
                    ..Query::default()
                };
                t.time(|| engine.list(&q).unwrap());
            }
            t.report();
        }
    };
    list("newest 100, tenant", &|e| Filter {
        tenant: e.event.tenant.clone(),
        ..Filter::default()
    });
    list("newest 100, tenant + action + min_severity", &|e| Filter {
        tenant: e.event.tenant.clone(),
        action: Some(e.event.action.clone()),
        min_severity: Some(Severity::Warning),
        ..Filter::default()
    });
    list("newest 100, user last 7 days", &|e| Filter {
        user_id: e.event.user_id.clone(),
        since: Some(now - 7 * DAY),
        ..Filter::default()
    });
    let word = |e: &StoredEvent, rare: bool| -> String {
        let d = e.event.description.clone().unwrap_or_default();
        let mut words: Vec<String> = d
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() > 2)
            .map(|w| w.to_lowercase())
            .collect();
        words.sort_by_key(|w| if rare { usize::MAX - w.len() } else { w.len() });
        words.first().cloned().unwrap_or_else(|| "error".into())
    };
    list("full text, common term", &|_| Filter {
        text: Some("info".into()),
        ..Filter::default()
    });
    list("full text, rare term (longest word)", &|e| Filter {
        text: Some(word(e, true)),
        ..Filter::default()
    });
    list("full text + tenant + min_severity", &|e| Filter {
        text: Some(word(e, false)),
        tenant: e.event.tenant.clone(),
        min_severity: Some(Severity::Notice),
        ..Filter::default()
    });
    list("full text phrase + tenant", &|e| Filter {
        text: Some("\"password reset\"".into()),
        tenant: e.event.tenant.clone(),
        ..Filter::default()
    });

    for sort in [Sort::Time, Sort::Seq] {
        let by = sort.as_str();
        let mut t = Timer::new(&format!("entity history (first 100), by {by}"));
        for e in sample {
            if let (Some(ty), Some(id)) = (&e.event.entity_type, &e.event.entity_id) {
                let q = Query {
                    sort,
                    order: Order::Asc,
                    ..Query::default()
                };
                t.time(|| engine.entity_history(&q, ty, id).unwrap());
            }
        }
        t.report();
        let mut t = Timer::new(&format!("user timeline (newest 100), by {by}"));
        for e in sample {
            if let Some(u) = &e.event.user_id {
                let q = Query {
                    sort,
                    ..Query::default()
                };
                t.time(|| engine.user_timeline(&q, u).unwrap());
            }
        }
        t.report();
    }
}

fn stats(engine: &Engine, sample: &[StoredEvent], now: i64) {
    let mut t = Timer::new("stats, 30 days, hourly histogram");
    for e in sample.iter().take(40) {
        let q = Query {
            filter: Filter {
                since: Some(now - 30 * DAY),
                ..Filter::default()
            },
            interval: Interval::Hour,
            ..Query::default()
        };
        let _ = e;
        t.time(|| engine.stats(&q).unwrap());
    }
    t.report();
    let mut t = Timer::new("stats, 30 days, tenant, daily");
    for e in sample.iter().take(40) {
        let q = Query {
            filter: Filter {
                since: Some(now - 30 * DAY),
                tenant: e.event.tenant.clone(),
                ..Filter::default()
            },
            interval: Interval::Day,
            ..Query::default()
        };
        t.time(|| engine.stats(&q).unwrap());
    }
    t.report();
}

/// Lag under load, in a fresh data directory (the 1M one stays as built):
/// append at a steady 60,000 events/s for 10 s (batches of 600 every 10 ms)
/// and sample how far the indexes trail the log.
fn lag(dir: &Path, now: i64) {
    let lag_dir = tempfile::tempdir_in(dir.parent().unwrap()).unwrap();
    let log =
        Arc::new(Log::open(lag_dir.path(), LogConfig::default(), Arc::new(SystemClock)).unwrap());
    let idx = Arc::new(Indexes::open(lag_dir.path(), log.clone(), IndexConfig::default()).unwrap());
    let mut gen = EventGen::new(99).with_base_time(now);
    let batches: Vec<Vec<_>> = (0..1000)
        .map(|_| (0..600).map(|_| gen.sized(500)).collect())
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (log, idx, stop) = (log.clone(), idx.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut pending: std::collections::VecDeque<(u64, Instant)> = Default::default();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Instant::now();
                pending.push_back((log.last_seq(), now));
                let indexed = idx.indexed_seq();
                while pending.front().is_some_and(|(s, _)| *s <= indexed) {
                    let (_, t) = pending.pop_front().unwrap();
                    worst = worst.max(now - t);
                }
                if let Some((_, t)) = pending.front() {
                    worst = worst.max(now - *t);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            worst
        })
    };
    let started = Instant::now();
    for (i, b) in batches.iter().enumerate() {
        log.append(b, &stele::event::Provenance::cli()).unwrap();
        let due = started + Duration::from_millis(10 * (i as u64 + 1));
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let rate = 600_000.0 / started.elapsed().as_secs_f64();
    assert!(idx.wait_indexed(log.last_seq(), Duration::from_secs(120)));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = sampler.join().unwrap();
    println!(
        "index lag while ingesting {rate:.0} events/s for {:.1} s: worst {:.2} s (commit interval 1 s)",
        started.elapsed().as_secs_f64(),
        worst.as_secs_f64()
    );
}

/// `/v1/count`, `total=true`, offset pages and facets (issue 17 item 3): the
/// figures wanted at 1,000,000 events.
fn counts_and_facets(engine: &Engine, sample: &[StoredEvent], now: i64) {
    let month = || Filter {
        since: Some(now - 30 * DAY),
        ..Filter::default()
    };
    let tenant = |e: &StoredEvent| Filter {
        tenant: e.event.tenant.clone(),
        ..Filter::default()
    };
    let mut t = Timer::new("count, all events");
    for _ in sample.iter().take(100) {
        t.time(|| engine.count(&Filter::default()).unwrap());
    }
    t.report();
    let mut t = Timer::new("count, 30 days");
    for _ in sample.iter().take(100) {
        t.time(|| engine.count(&month()).unwrap());
    }
    t.report();
    let mut t = Timer::new("count, tenant + action");
    for e in sample {
        let f = Filter {
            action: Some(e.event.action.clone()),
            ..tenant(e)
        };
        t.time(|| engine.count(&f).unwrap());
    }
    t.report();
    for sort in [Sort::Time, Sort::Seq] {
        let by = sort.as_str();
        let q = |e: &StoredEvent| Query {
            filter: tenant(e),
            sort,
            limit: 100,
            ..Query::default()
        };
        let mut t = Timer::new(&format!("newest 100 + total, tenant, by {by}"));
        let total = Paging {
            total: true,
            ..Paging::default()
        };
        for e in sample {
            t.time(|| engine.list_paged(&q(e), &total).unwrap());
        }
        t.report();
        for offset in [1_000, 9_900] {
            let mut t = Timer::new(&format!("offset {offset}, 100, tenant, by {by}"));
            let at = Paging {
                offset: Some(offset),
                ..Paging::default()
            };
            for e in sample.iter().take(100) {
                t.time(|| engine.list_paged(&q(e), &at).unwrap());
            }
            t.report();
        }
    }
    let facet = |field: &'static str| StatsRequest {
        groups: vec![field],
        top: 100,
        ..StatsRequest::default()
    };
    for field in ["severity", "action", "user_id"] {
        let mut t = Timer::new(&format!("facet {field}, 30 days"));
        for _ in sample.iter().take(40) {
            t.time(|| engine.stats_of(&month(), &facet(field)).unwrap());
        }
        t.report();
    }
    let mut t = Timer::new("facet action, tenant");
    for e in sample.iter().take(100) {
        t.time(|| engine.stats_of(&tenant(e), &facet("action")).unwrap());
    }
    t.report();
    let mut t = Timer::new("stats group_by action,status + rates, 30 d");
    let two = StatsRequest {
        groups: vec!["action", "status"],
        top: 10,
        rates: true,
        ..StatsRequest::default()
    };
    for _ in sample.iter().take(40) {
        t.time(|| engine.stats_of(&month(), &two).unwrap());
    }
    t.report();
}

/// The dashboard's one call, for every event and for one tenant.
fn dashboard(engine: &Engine, sample: &[StoredEvent]) {
    let tenant = |e: &StoredEvent| Filter {
        tenant: e.event.tenant.clone(),
        ..Filter::default()
    };
    let mut t = Timer::new("dashboard, all events");
    for _ in sample.iter().take(100) {
        t.time(|| engine.dashboard(&Filter::default()).unwrap());
    }
    t.report();
    let mut t = Timer::new("dashboard, one tenant");
    for e in sample.iter().take(100) {
        t.time(|| engine.dashboard(&tenant(e)).unwrap());
    }
    t.report();
}
