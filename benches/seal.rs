//! The seal's costs (criterion). Run deliberately:
//!
//! ```text
//! cargo bench --bench seal
//! ```
//!
//! - `checkpoint/sign_and_encode`: one checkpoint of the chain head (Ed25519
//!   sign + canonical line), what the checkpointer adds once per interval.
//! - `scrub/pass_*`: one unthrottled scrub pass over 64 MiB of sealed
//!   segments (4 MiB each), by SHA-256 against what the writer witnessed,
//!   and by a full structural scan (no reference): the scrubber's ceiling,
//!   before its `scrub_bytes_per_sec` limit (default 64 MiB/s).
//! - `inherited/verify_64mib`: the start-up verification of 64 MiB an
//!   earlier process wrote, against its checkpoint.
//!
//! The cost of checkpoints on ingest, and of a running scrub on queries, is
//! measured over HTTP with the load generator (README "Performance").

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use stele::clock::SystemClock;
use stele::log::{Log, LogConfig};
use stele::seal::checkpoint::Checkpoint;
use stele::seal::digest::SigningKey;
use stele::seal::SealStatus;
use stele::testkit::EventGen;

const BYTES: u64 = 64 << 20;

fn bench_dir() -> tempfile::TempDir {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn open(dir: &std::path::Path) -> Log {
    let cfg = LogConfig {
        segment_bytes_max: 4 << 20,
        ..LogConfig::default()
    };
    Log::open(dir, cfg, Arc::new(SystemClock)).unwrap()
}

/// A log holding `BYTES` of sealed segments (and an active one).
fn filled(dir: &std::path::Path) -> Log {
    let log = open(dir);
    let mut gen = EventGen::new(7);
    while log
        .segments()
        .iter()
        .filter(|s| s.sealed)
        .map(|s| s.bytes)
        .sum::<u64>()
        < BYTES
    {
        let batch: Vec<_> = (0..512).map(|_| gen.sized(500)).collect();
        log.append(&batch, &stele::event::Provenance::cli())
            .unwrap();
    }
    log
}

fn sealed_bytes(log: &Log) -> u64 {
    log.segments()
        .iter()
        .filter(|s| s.sealed)
        .map(|s| s.bytes)
        .sum()
}

fn checkpoint(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[42; 32]);
    let mut g = c.benchmark_group("checkpoint");
    g.bench_function("sign_and_encode", |b| {
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            let head = stele::log::ChainHead {
                seq,
                hash: [seq as u8; 32],
            };
            Checkpoint::sign(&key, head, 1_795_478_340_000_000).encode()
        })
    });
    g.finish();
}

fn scrub(c: &mut Criterion) {
    let dir = bench_dir();
    let log = filled(dir.path());
    let bytes = sealed_bytes(&log);
    let stop = AtomicBool::new(false);
    let mut g = c.benchmark_group("scrub");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Bytes(bytes));
    // The writer witnessed every segment: checked by SHA-256.
    let status = SealStatus::default();
    status.set_inherited(stele::seal::inherited::Inherited::none(0));
    g.bench_function("pass_sha256", |b| {
        b.iter(|| stele::seal::scrub::pass(&log, &status, u64::MAX, &stop))
    });
    drop(log);
    // Reopened: nothing witnessed, no digest: the structure is checked.
    let log = open(dir.path());
    g.bench_function("pass_structure", |b| {
        b.iter(|| stele::seal::scrub::pass(&log, &status, u64::MAX, &stop))
    });
    g.finish();
}

fn inherited(c: &mut Criterion) {
    let dir = bench_dir();
    let log = filled(dir.path());
    let key = SigningKey::from_bytes(&[42; 32]);
    let cp = Checkpoint::sign(&key, log.head(), 1_795_478_340_000_000);
    let bytes = sealed_bytes(&log);
    drop(log);
    let log = open(dir.path());
    let mut g = c.benchmark_group("inherited");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("verify_64mib", |b| {
        b.iter(|| {
            let i = stele::seal::inherited::verify_inherited(&log, None, Some(&cp));
            assert!(!i.forged && i.verified_through == cp.seq);
        })
    });
    g.finish();
}

criterion_group!(benches, checkpoint, scrub, inherited);
criterion_main!(benches);
