//! A forward scan over the log gives back the pages it read, whatever the
//! size of the segments and of the steps: reading the whole log must not
//! leave it resident in the process. (A test binary of its own: the resident
//! set is per process.)
//!
//! Found by the soak test (examples/soak/): with 1 MiB segments, a full
//! export, and live streams, left every segment they read mapped and
//! resident (the daemon's RSS grew by the size of the log), because a cursor
//! gave its pages back on drop only after reading a megabyte, and the pages
//! the kernel maps around a fault (large folios) were never given back.

#[path = "it/support/mod.rs"]
mod support;

use std::sync::Arc;
use stele::clock::ManualClock;
use stele::log::Direction;
use stele::testkit::EventGen;
use support::*;

/// File-backed resident memory of this process (KiB).
fn rss_file_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("RssFile in /proc/self/status")
}

#[test]
fn scans_over_small_segments_leave_no_log_resident() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    // 64,000 events of ≈500 bytes (≈35 MB) in segments of ≈540 KB (one
    // append of 1,000 events each: an append never spans two segments).
    let log = open(tmp.path(), &clock, 256 * 1024);
    let mut gen = EventGen::new(5);
    for _ in 0..64 {
        log.append(
            &events(&mut gen, 1000, 500),
            &stele::event::Provenance::cli(),
        )
        .unwrap();
    }
    let files = segment_files(tmp.path());
    assert!(files.len() >= 60, "{} segments", files.len());
    let bytes: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    // A scan in steps of 512 (a stream), of 2, then in one go (an export).
    for step in [512, 2, u64::MAX] {
        let before = rss_file_kib();
        let mut seq = log.first_seq();
        while seq <= log.last_seq() {
            let hi = seq.saturating_add(step - 1).min(log.last_seq());
            let n = log.range(seq..=hi, Direction::Forward).count() as u64;
            assert_eq!(n, hi - seq + 1);
            seq = hi + 1;
        }
        let grown = rss_file_kib().saturating_sub(before);
        assert!(
            grown < bytes / 1024 / 16,
            "a scan in steps of {step} over {bytes} bytes of log left {grown} KiB more resident"
        );
    }
}
