//! The CPU of reading a posted batch before it reaches the log (criterion): JSON
//! text into values (`json`: `parse_json`, the strict parser that refuses
//! repeated keys) or straight into each object's fields (`fields`:
//! `parse_posted_json`, the ingest path's unless `ingest.field_map` is set),
//! values into validated events (`parse_event` on a borrowed value,
//! `parse_posted_event` on one it moves the strings out of), and both ways
//! whole (`json_and_validate`: the whole-value reading, which the ingest
//! path takes when `ingest.field_map` is set, without a map applied;
//! `fields_and_validate`: the default). Run
//! deliberately:
//!
//! ```text
//! cargo bench --bench ingest
//! ```
//!
//! `intel_1000`: what the same events cost the activity rules, once validated:
//! `risk_assess` (the risk score every posted event gets on the ingest path,
//! `intel::risk::RiskState::assess`, in a state that has seen the batch once)
//! and `detectors_observe` (the activity feed's detectors,
//! `intel::detect::Detectors::observe`, likewise warmed).
//!
//! The batch: 1,000 generated events of ≈ 600 bytes of JSON (loghub lines as
//! descriptions), one per line, as the peer benchmark posts them. The HTTP
//! threads spent ≈ 15 % of the daemon's CPU here under that load (perf,
//! issue 21).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stele::event::{parse_event, parse_json, parse_posted_event, parse_posted_json};
use stele::testkit::EventGen;

/// The daemon's allocator (`src/main.rs`), so that the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 1_000;

fn lines() -> Vec<Vec<u8>> {
    let mut gen = EventGen::new(21);
    (0..EVENTS)
        .map(|_| serde_json::to_vec(&gen.sized(520)).expect("an event serializes"))
        .collect()
}

fn parse(c: &mut Criterion) {
    let lines = lines();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let values: Vec<serde_json::Value> = lines.iter().map(|l| parse_json(l).unwrap()).collect();
    let mut g = c.benchmark_group("parse_1000");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("json", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| parse_json(l).unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("fields", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| parse_posted_json(l).unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("validate_borrowed", |b| {
        b.iter(|| {
            values
                .iter()
                .map(|v| parse_event(v, || unreachable!("ids are set")).unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("validate_owned", |b| {
        b.iter_batched(
            || values.clone(),
            |values| {
                values
                    .into_iter()
                    .map(|v| parse_posted_event(v, || unreachable!("ids are set")).unwrap())
                    .collect::<Vec<_>>()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("json_and_validate", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| {
                    let v = parse_json(l).unwrap();
                    parse_posted_event(v, || unreachable!("ids are set")).unwrap()
                })
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("fields_and_validate", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| {
                    let e = parse_posted_json(l).unwrap();
                    e.validate(|| unreachable!("ids are set")).unwrap()
                })
                .collect::<Vec<_>>()
        })
    });
    g.finish();
    eprintln!("{EVENTS} events, {bytes} bytes of JSON");
}

fn intel(c: &mut Criterion) {
    use stele::event::StoredEvent;
    use stele::intel::detect::{Detectors, Limits, Thresholds};
    use stele::intel::risk::RiskState;
    let events: Vec<stele::event::Event> = lines()
        .iter()
        .map(|l| {
            let e = parse_posted_json(l).unwrap();
            e.validate(|| unreachable!("ids are set")).unwrap()
        })
        .collect();
    let now = 1_790_000_000_000_000;
    let stored: Vec<StoredEvent> = events
        .iter()
        .enumerate()
        .map(|(i, e)| StoredEvent {
            seq: i as u64 + 1,
            received_at: now + i as i64,
            event: e.clone(),
            provenance: None,
        })
        .collect();
    let mut g = c.benchmark_group("intel_1000");
    g.throughput(Throughput::Elements(EVENTS as u64));
    let mut risk = RiskState::default();
    risk.assess(&mut events.clone(), now);
    g.bench_function("risk_assess", |b| {
        b.iter_batched_ref(
            || events.clone(),
            |batch| risk.assess(batch, now),
            criterion::BatchSize::LargeInput,
        )
    });
    let mut detectors = Detectors::new(Thresholds::default(), Limits::default());
    stored.iter().for_each(|e| drop(detectors.observe(e)));
    g.bench_function("detectors_observe", |b| {
        b.iter(|| {
            stored
                .iter()
                .map(|e| detectors.observe(e).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, intel);
criterion_main!(benches);
