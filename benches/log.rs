//! Segment log benchmarks (criterion). Run deliberately:
//!
//! ```text
//! cargo bench --bench log                  # everything
//! cargo bench --bench log -- append_batch  # one group
//! ```
//!
//! Targets (issue 2, 2-core dev machine): batches of 256 ≥ 500,000 events/s;
//! 64 concurrent single-event appenders ≥ 100,000 events/s; opening a data
//! directory whose active segment holds 1 GiB ≤ 2 s. Events are ≈500 bytes of
//! realistic content (loghub lines), every append waits for its fdatasync.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stele::clock::SystemClock;
use stele::event::Event;
use stele::log::{Direction, Log, LogConfig};
use stele::testkit::EventGen;

const EVENT_BYTES: usize = 500;

fn events(n: usize, seed: u64) -> Vec<Event> {
    let mut gen = EventGen::new(seed);
    (0..n).map(|_| gen.sized(EVENT_BYTES)).collect()
}

/// A bench directory on the same disk as the target dir (not tmpfs).
fn bench_dir() -> tempfile::TempDir {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, LogConfig::default(), Arc::new(SystemClock)).unwrap()
}

fn append_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_batch");
    g.measurement_time(Duration::from_secs(8));
    for n in [1usize, 16, 256] {
        let dir = bench_dir();
        let log = open(dir.path());
        let batch = events(n, n as u64);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}_events_per_fsync"), |b| {
            b.iter(|| {
                log.append(&batch, &stele::event::Provenance::cli())
                    .unwrap()
            })
        });
    }
    g.finish();
}

/// The CPU side of a 256-event append, without I/O: encoding the events (on
/// the caller's thread) and framing them (seq prefix, CRC, chain hash, on the
/// writer's thread).
fn cpu(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu");
    let batch = events(256, 256);
    g.throughput(Throughput::Elements(256));
    g.bench_function("encode_256_events", |b| {
        let mut out = Vec::with_capacity(256 * 600);
        b.iter(|| {
            out.clear();
            for ev in &batch {
                stele::event::encode_event(ev, &mut out);
            }
            out.len()
        })
    });
    let bodies: Vec<Vec<u8>> = batch
        .iter()
        .map(|ev| {
            let mut v = Vec::new();
            stele::event::encode_event(ev, &mut v);
            v
        })
        .collect();
    g.bench_function("frame_256_records", |b| {
        let mut out = Vec::with_capacity(256 * 640);
        let mut prefix = Vec::with_capacity(20);
        b.iter(|| {
            out.clear();
            let mut hash = stele::log::format::GENESIS_HASH;
            for (i, body) in bodies.iter().enumerate() {
                prefix.clear();
                stele::event::encode_stored_prefix(
                    i as u64 + 1,
                    1_795_478_340_000_000,
                    &mut prefix,
                );
                hash = stele::log::format::encode_record(
                    &mut out,
                    stele::log::format::FORMAT_VERSION,
                    i as u64,
                    &hash,
                    &[&prefix, body],
                );
            }
            hash
        })
    });
    g.finish();
}

fn append_concurrent(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_concurrent");
    g.measurement_time(Duration::from_secs(8));
    const TASKS: usize = 64;
    const PER_TASK: usize = 50;
    let dir = bench_dir();
    let log = Arc::new(open(dir.path()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool: Arc<Vec<Event>> = Arc::new(events(TASKS * PER_TASK, 64));
    g.throughput(Throughput::Elements((TASKS * PER_TASK) as u64));
    g.bench_function("64_tasks_single_event_appends", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                rt.block_on(async {
                    let mut tasks = Vec::with_capacity(TASKS);
                    for t in 0..TASKS {
                        let log = log.clone();
                        let pool = pool.clone();
                        tasks.push(tokio::spawn(async move {
                            for i in 0..PER_TASK {
                                let ev = &pool[t * PER_TASK + i];
                                log.append_async(
                                    vec![ev.clone()],
                                    &stele::event::Provenance::cli(),
                                )
                                .await
                                .unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn read_sequential(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    const N: usize = 100_000;
    let dir = bench_dir();
    let log = open(dir.path());
    let evs = events(4096, 7);
    for chunk in 0..N / 256 {
        let start = (chunk * 256) % (4096 - 256);
        log.append(&evs[start..start + 256], &stele::event::Provenance::cli())
            .unwrap();
    }
    let n = log.last_seq();
    g.throughput(Throughput::Elements(n));
    g.bench_function("forward_all", |b| {
        b.iter(|| {
            let mut count = 0u64;
            for ev in log.iter() {
                count += ev.unwrap().seq & 1;
            }
            count
        })
    });
    g.bench_function("backward_all", |b| {
        b.iter(|| {
            log.range(.., Direction::Backward)
                .map(|e| e.unwrap().seq & 1)
                .sum::<u64>()
        })
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000_random_gets", |b| {
        let mut x = 12345u64;
        b.iter(|| {
            for _ in 0..1000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let seq = 1 + x % n;
                assert_eq!(log.get(seq).unwrap().unwrap().seq, seq);
            }
        })
    });
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let gib: u64 = std::env::var("STELE_BENCH_RECOVERY_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let target = gib << 30;
    let dir = bench_dir();
    {
        let log = Log::open(
            dir.path(),
            LogConfig {
                segment_bytes_max: target + (64 << 20),
                ..LogConfig::default()
            },
            Arc::new(SystemClock),
        )
        .unwrap();
        let evs = events(4096, 9);
        let mut i = 0;
        while log.segments().first().map_or(0, |s| s.bytes) < target {
            let start = (i * 256) % (4096 - 256);
            log.append(&evs[start..start + 256], &stele::event::Provenance::cli())
                .unwrap();
            i += 1;
        }
    }
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function(format!("open_with_{gib}_gib_active_segment"), |b| {
        b.iter_batched(
            || {
                // A crash leaves a torn tail: add one for every open.
                let seg = stele::log::list_segments(&dir.path().join("segments")).unwrap();
                let path = &seg.last().unwrap().1;
                let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                std::io::Write::write_all(&mut f, &[0x5Au8; 300]).unwrap();
            },
            |()| {
                let log = open(dir.path());
                assert_eq!(log.recovery_report().torn_bytes_truncated, 300);
                log
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    cpu,
    append_batch,
    append_concurrent,
    read_sequential,
    recovery
);
criterion_main!(benches);
