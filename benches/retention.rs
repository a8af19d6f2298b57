//! Retention of a day partition holding 1,000,000 events, with ingest
//! continuing meanwhile (issue 5's target: ≤ 5 s). Run deliberately, in
//! release, after `cargo bench --bench index` built its data directory:
//!
//! ```text
//! cargo bench --bench retention
//! ```
//!
//! It copies `target/bench-data/index-1000000` (one UTC day of 1,000,000
//! events, indexes built), opens it with a clock on the next day so that day
//! is sealed and over, then times dropping it — segment files, then both
//! indexes committed without its entries — while an appender thread keeps
//! ingesting 1,000-event batches (`STELE_BENCH_INGEST_RATE` events/s, default
//! 20,000). Reported: time until the files are gone,
//! time until the indexes committed the deletion, and events ingested
//! during it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stele::clock::{Clock, ManualClock};
use stele::index::{IndexConfig, Indexes};
use stele::log::{Log, LogConfig};
use stele::retention::{apply, plan, RetentionConfig, Seg};
use stele::testkit::EventGen;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), &target).unwrap();
            let mut perms = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap();
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let src: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/index-1000000");
    if !src.join("segments").exists() {
        eprintln!(
            "run `cargo bench --bench index` first: it builds {}",
            src.display()
        );
        return;
    }
    let tmp = tempfile::tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("target")).unwrap();
    let dir = tmp.path().join("data");
    copy_dir(&src, &dir);
    // The day the bench data was received on, from its first segment's name.
    let first = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .min()
        .unwrap();
    let day: chrono::NaiveDate = first[..10].parse().unwrap();
    let next_day = day.succ_opt().unwrap();
    let clock = Arc::new(ManualClock::new(
        next_day
            .and_hms_opt(0, 1, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros(),
    ));
    let log = Arc::new(Log::open(&dir, LogConfig::default(), clock.clone()).unwrap());
    let mut gen = EventGen::new(3).with_base_time(clock.now_micros());
    log.append(
        &(0..1000).map(|_| gen.sized(500)).collect::<Vec<_>>(),
        &stele::event::Provenance::cli(),
    )
    .unwrap(); // opens the next day's segment, sealing the old day
    let indexes = Arc::new(Indexes::open(&dir, log.clone(), IndexConfig::default()).unwrap());
    assert!(indexes.wait_indexed(log.last_seq(), Duration::from_secs(600)));
    let held = log
        .segments()
        .iter()
        .filter(|s| s.id.day.0 == day)
        .map(|s| s.count)
        .sum::<u64>();
    println!("day {day}: {held} events in the partition to drop");

    let stop = Arc::new(AtomicBool::new(false));
    let ingested = Arc::new(AtomicU64::new(0));
    let appender = {
        let (log, stop, ingested) = (log.clone(), stop.clone(), ingested.clone());
        std::thread::spawn(move || {
            let mut gen = EventGen::new(4).with_base_time(
                next_day
                    .and_hms_opt(1, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp_micros(),
            );
            // Paced: `STELE_BENCH_INGEST_RATE` events/s (default 20,000).
            let rate: u64 = std::env::var("STELE_BENCH_INGEST_RATE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(20_000);
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let evs: Vec<_> = (0..1000).map(|_| gen.sized(500)).collect();
                log.append(&evs, &stele::event::Provenance::cli()).unwrap();
                let done = ingested.fetch_add(1000, Ordering::Relaxed) + 1000;
                let due = Duration::from_secs_f64(done as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let cfg = RetentionConfig {
        days: Some(1),
        ..Default::default()
    };
    let today = next_day + chrono::Days::new(2);
    let segs: Vec<Seg> = log.segments().into_iter().map(Into::into).collect();
    let started = Instant::now();
    let before = ingested.load(Ordering::Relaxed);
    let p = plan(&segs, today, &cfg, &[], |s: &Seg| {
        stele::retention::tenants_in(&s.path)
    })
    .unwrap();
    let done = apply(&dir, &log, &indexes, &p, "bench").unwrap();
    let files_gone = started.elapsed();
    assert!(indexes.wait_dropped(log.first_seq(), Duration::from_secs(120)));
    let committed = started.elapsed();
    while indexes.cleanup_pending() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let cleaned = started.elapsed();
    let during = ingested.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    assert_eq!(done.len(), 1, "{p:#?}");
    println!(
        "dropped {} events: files gone in {:.3} s, gone from every answer (indexes committed) in \
         {:.2} s (target ≤ 5 s), key index cleaned in {:.2} s; {during} events ingested meanwhile",
        done[0].events,
        files_gone.as_secs_f64(),
        committed.as_secs_f64(),
        cleaned.as_secs_f64()
    );
}
