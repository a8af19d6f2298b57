//! Seeding past days before the first start: `--seed-days` UTC days written through
//! the library's log with a manual clock, each put under a legal hold in
//! `DATA_DIR/holds.json`, so that retention can drop them during the run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _, Result};
use stele::event::Event;
use stele::testkit::EventGen;

use crate::common::{now_micros, DAY_MICROS};
use crate::opts::Opts;
use crate::state::SeedDay;

/// Writes `--seed-days` past UTC days (today − days − 1 … today − 2, all past a 1-day
/// TTL) through the library's log with a manual clock, seals the last one, and holds
/// each day in `DATA_DIR/holds.json`.
pub fn seed_days(o: &Opts, data: &Path, prefix: &str, next_n: &AtomicU64) -> Result<Vec<SeedDay>> {
    use stele::clock::ManualClock;
    use stele::log::{Log, LogConfig};
    let today = now_micros() / DAY_MICROS;
    let first_day = today - i64::from(o.seed_days) - 1;
    let clock = Arc::new(ManualClock::new(first_day * DAY_MICROS + DAY_MICROS / 2));
    let cfg = LogConfig {
        segment_bytes_max: o.segment_bytes,
        ..LogConfig::default()
    };
    let log = Log::open(data, cfg, clock.clone()).context("cannot open the log to seed it")?;
    let mut gen = EventGen::new(o.seed ^ 0x5eed);
    let mut days = Vec::new();
    for i in 0..i64::from(o.seed_days) {
        let day_start = (first_day + i) * DAY_MICROS;
        clock.set(day_start + DAY_MICROS / 2);
        gen = gen.with_base_time(day_start);
        let first_n = next_n.load(Ordering::Relaxed);
        let mut first_seq = None;
        let mut last_seq = 0;
        let mut left = o.seed_events_per_day;
        while left > 0 {
            let k = left.min(500);
            let mut evs: Vec<Event> = Vec::with_capacity(k as usize);
            for _ in 0..k {
                let mut ev = gen.sized(o.event_bytes);
                ev.id = format!("{prefix}{}", next_n.fetch_add(1, Ordering::Relaxed));
                evs.push(ev);
            }
            let a = log
                .append(&evs, &stele::event::Provenance::cli())
                .context("cannot append seeded events")?;
            first_seq.get_or_insert(a.first_seq);
            last_seq = a.last_seq();
            left -= k;
        }
        let day = chrono::DateTime::from_timestamp_micros(day_start)
            .ok_or_else(|| anyhow!("bad day"))?
            .date_naive();
        days.push(SeedDay {
            day,
            hold: format!("soak-{day}"),
            first_seq: first_seq.unwrap_or(1),
            last_seq,
            first_n,
            count: o.seed_events_per_day,
            lift_sent: AtomicBool::new(false),
            lifted_at: Mutex::new(None),
            dropped_seen: Mutex::new(None),
        });
    }
    // Seal the last seeded day (its day is over by the next midnight).
    clock.set((first_day + i64::from(o.seed_days)) * DAY_MICROS + DAY_MICROS / 2);
    log.rotate_if_day_over()
        .context("cannot seal the last seeded day")?;
    log.close();
    let holds: Vec<stele::retention::Hold> = days
        .iter()
        .map(|d| stele::retention::Hold {
            name: d.hold.clone(),
            tenant: None,
            from: Some(d.day),
            until: Some(d.day),
            reason: "soak: lifted during the run".into(),
        })
        .collect();
    stele::retention::save_holds(data, &holds).context("cannot write holds.json")?;
    Ok(days)
}
