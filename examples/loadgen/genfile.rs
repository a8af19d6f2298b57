//! Subcommand `gen`: the workload of the peer benchmark (`scripts/bench-peers.sh`)
//! written once to a file, so that Stele, PostgreSQL and SQLite load the same events.
//!
//! `loadgen gen --events N --seed S --event-bytes B --out FILE` writes N events from
//! [`stele::testkit::EventGen`] (the generator every other scenario uses: loghub lines
//! as descriptions, realistic tenants, users and entities) as NDJSON, one event a line,
//! streaming (bounded memory for any N). Two changes to what the generator makes, so
//! that the three systems can be compared event for event:
//!
//! - every event carries a `timestamp` (the generator leaves 5 % without one, which
//!   Stele would stamp with its receive time: different in every run and system); such
//!   an event gets the previous event's generator time + 1 µs;
//! - event times are spread over exactly [`DAYS`] days whatever N is, ending at today's
//!   UTC midnight: the generator's clock (which advances 0.75 s per event on average)
//!   is scaled linearly, so its order and gaps are kept (ties are possible for very
//!   large N, which the benchmark's tie-breaker handles);
//! - out of order, as real clients post: 2 % of the events arrive up to an hour late
//!   (their time moved back), and 1 % carry exactly the previous event's time, so that
//!   event-time order differs from arrival order and ties are broken by seq. These
//!   draws come from a generator of their own (seeded from `--seed`), so the events'
//!   other fields are exactly what `EventGen::new(seed)` makes.
//!
//! Every event keeps the `id` the generator gave it (unique), so answers can be
//! compared across systems by id.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde_json::json;
use stele::testkit::EventGen;

use crate::common::{now_micros, DAY_MICROS};
use crate::gen::{next_event, to_json};
use crate::report::{r2, Report};
use crate::Opts;

/// Days of event time the workload spans.
pub const DAYS: i64 = 30;
/// The generator's mean clock step per event, in µs (1 + uniform below 1.5 s).
const MEAN_STEP_MICROS: i128 = 750_000;
const HOUR_MICROS: u64 = 3_600_000_000;

pub fn gen_file(o: &Opts) -> Result<Report> {
    let out = o
        .out
        .as_ref()
        .context("gen needs --out FILE (where to write the NDJSON)")?;
    let n = o.events.unwrap_or(1_000_000);
    let base = (now_micros() / DAY_MICROS - DAYS) * DAY_MICROS;
    let span = i128::from(DAYS * DAY_MICROS);
    let raw_span = i128::from(n) * MEAN_STEP_MICROS;
    let tmp = out.with_extension("partial");
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut g = EventGen::new(o.seed).with_base_time(base);
    let mut disorder = EventGen::new(o.seed ^ 0x6f75_745f_6f66_5f6f);
    let mut prev = base;
    let started = Instant::now();
    let (mut last_raw, mut bytes, mut first, mut last) = (base, 0u64, None, base);
    let mut line = Vec::with_capacity(4096);
    for _ in 0..n {
        let mut ev = next_event(&mut g, o.event_bytes);
        let raw = ev.timestamp.unwrap_or(last_raw + 1);
        last_raw = raw;
        let mut scaled = base + (i128::from(raw - base) * span / raw_span) as i64;
        let r = disorder.next_u64();
        match r % 100 {
            0 | 1 => scaled -= ((r >> 8) % HOUR_MICROS) as i64,
            2 => scaled = prev,
            _ => {}
        }
        prev = scaled;
        ev.timestamp = Some(scaled);
        first.get_or_insert(scaled);
        last = scaled;
        line.clear();
        to_json(&ev, &mut line);
        line.push(b'\n');
        bytes += line.len() as u64;
        w.write_all(&line)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(w);
    std::fs::rename(&tmp, out).with_context(|| format!("cannot rename to {}", out.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let mut report = Report::new(
        "gen",
        format!("{n} events (seed {}) written to {}", o.seed, out.display()),
        json!({"events": n, "seed": o.seed, "event_bytes": o.event_bytes,
               "out": out.display().to_string(), "days": DAYS}),
    );
    let mean = bytes as f64 / n.max(1) as f64;
    report.line("bytes of NDJSON", bytes);
    report.line("mean bytes per event (JSON line)", format!("{mean:.1}"));
    report.line("seconds", format!("{secs:.2}"));
    report.set("bytes", json!(bytes));
    report.set("mean_event_bytes", json!(r2(mean)));
    report.set("first_time_us", json!(first));
    report.set("last_time_us", json!(last));
    report.set("base_time_us", json!(base));
    report.set("seconds", json!(r2(secs)));
    Ok(report)
}
