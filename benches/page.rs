//! The server side of a page of 100 events, found by an index (criterion).
//! Run deliberately:
//!
//! ```text
//! cargo bench --bench page
//! ```
//!
//! The page: every 7th seq, newest first, from records compressed with the
//! log's trained dictionary (as a tenant's newest 100 are on a busy log). The
//! groups: reading them one by one with `Log::get` and with `Log::get_many`
//! (the page's fetch stage), and writing the events' JSON (its render
//! stage). Target (issue 21): a page's server time ≤ 0.3 ms.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use std::time::Duration;
use stele::clock::SystemClock;
use stele::event::{Event, Provenance};
use stele::log::{Log, LogConfig};
use stele::testkit::EventGen;

/// The daemon's allocator (`src/main.rs`), so that the figures are the daemon's:
/// with glibc's, allocation was ≈ 32 % of the fetch stage's samples.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENT_BYTES: usize = 500;

fn events(n: usize, seed: u64) -> Vec<Event> {
    let mut gen = EventGen::new(seed);
    (0..n).map(|_| gen.sized(EVENT_BYTES)).collect()
}

/// A log whose newest records are compressed with a trained dictionary,
/// keeping `tail_bytes` of the newest in memory (0: every read decodes).
fn compressed_log(dir: &std::path::Path, tail_bytes: usize) -> Log {
    let cfg = LogConfig {
        tail_bytes,
        ..LogConfig::default()
    };
    let log = Log::open(dir, cfg, Arc::new(SystemClock)).unwrap();
    let evs = events(4096, 11);
    let by = Provenance::cli();
    let mut i = 0;
    while log.dictionary().is_none() {
        let start = (i * 256) % (4096 - 256);
        log.append(&evs[start..start + 256], &by).unwrap();
        i += 1;
        assert!(i < 10_000, "no dictionary after {} events", i * 256);
        if i > 400 {
            // Sampled enough: the trainer works on its own thread.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The first dictionary starts a new segment: fill it.
    for k in 0..100 {
        let start = (k * 256) % (4096 - 256);
        log.append(&evs[start..start + 256], &by).unwrap();
    }
    log
}

fn page(c: &mut Criterion) {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let log = compressed_log(dir.path(), 0);
    let last = log.last_seq();
    let seqs: Vec<u64> = (0..100).map(|k| last - 7 * k).collect();
    let mut g = c.benchmark_group("page");
    g.throughput(Throughput::Elements(seqs.len() as u64));
    g.bench_function("fetch_100_gets", |b| {
        b.iter(|| {
            seqs.iter()
                .map(|&s| log.get(s).unwrap().unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("fetch_get_many_100", |b| {
        b.iter(|| log.get_many(&seqs).unwrap())
    });
    let events = log.get_many(&seqs).unwrap();
    assert_eq!(events.len(), seqs.len());
    // The same seqs, the newest events, copied from the log's tail.
    let tail_dir = tempfile::tempdir_in(&base).unwrap();
    let with_tail = compressed_log(tail_dir.path(), stele::log::TAIL_BYTES_DEFAULT);
    let tail_seqs: Vec<u64> = (0..100).map(|k| with_tail.last_seq() - 7 * k).collect();
    g.bench_function("fetch_get_many_100_from_the_tail", |b| {
        b.iter(|| with_tail.get_many(&tail_seqs).unwrap())
    });
    let copied = with_tail
        .metrics()
        .read_from_tail
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(copied >= 100, "the tail served the reads: {copied}");
    g.bench_function("render_100_serde_json", |b| {
        b.iter(|| serde_json::to_vec(&events).unwrap())
    });
    g.finish();
}

criterion_group!(benches, page);
criterion_main!(benches);
