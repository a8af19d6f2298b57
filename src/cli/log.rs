//! `stele append` and `stele cat`: events written to the log from standard
//! input (one JSON object a line, an acknowledgement a batch) and read back
//! as JSON lines.
//!
//! `stele append` keeps the server's idempotency rule ([`stele::ingest`],
//! event by event): it opens the indexes and catches them up with the log
//! ([`Indexes::catch_up`], as `stele serve` does at start-up), reserves each
//! batch's client ids, appends the new events and settles them. An event
//! whose id is stored (or earlier in the input) with the same content is a
//! duplicate: not appended, listed in the batch's `duplicates`. The same id
//! with other content stops the run (exit 2) naming the line; earlier
//! batches stay stored. Both indexes (key and full text) are fed by the one
//! indexer as the events are appended, and caught up before a successful
//! exit, so the next run, and the next `stele serve`, find them; a killed
//! run leaves them behind, and the next open catches them up.
//! Events are renamed by the configuration's `[ingest.field_map]` (`--config`
//! or `$STELE_CONFIG`) before validation, as over HTTP. One line may take at
//! most the configuration's `limits.body_bytes_max` (16 MiB without a file:
//! the largest single event the server would read), its line ending aside; a
//! longer line is read no further, so a run's memory is bounded by its
//! batches, not by its input. A line that cannot be stored (too long, not
//! JSON, not a valid event) stops the run (exit 2) naming it and its batch,
//! which is not stored; no thread reads further (with `--concurrency`, the
//! batches other threads had read before are still appended and
//! acknowledged).
//! `stele cat` reads the log only, through the read-only open
//! ([`stele::log::ReadOnly`]): no LOCK and no repair, so it works while
//! `stele serve` runs, and on a backup; a half-written tail is where it stops.

use super::open_log;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stele::clock::SystemClock;
use stele::event::{self, Event};
use stele::index::{IndexConfig, Indexes};
use stele::ingest::{Each, EachIdempotency, RecentIds};
use stele::log::{Direction, LogConfig, RecoveryMode};
use stele::query::Engine;

/// How long a batch waits before asking again about an id another thread
/// of this process is still appending.
const IN_FLIGHT_WAIT: Duration = Duration::from_millis(5);

pub(crate) fn append(
    data_dir: PathBuf,
    batch: usize,
    concurrency: usize,
    segment_bytes_max: Option<u64>,
    recovery: RecoveryMode,
    config: Option<&Path>,
) -> anyhow::Result<()> {
    anyhow::ensure!(batch >= 1, "--batch must be at least 1");
    // A configuration file gives the field map and the longest line
    // (`limits.body_bytes_max`, with its `STELE_*` overrides, as `stele
    // serve` reads them); without one, the defaults (a daemon's variables in
    // the environment are not this command's).
    let (field_map, line_bytes_max) = match stele::config::config_path(config, super::process_env) {
        Some(path) => {
            let config = stele::config::Config::load(Some(&path), super::process_env)
                .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
            let map = config
                .ingest
                .field_map()
                .map_err(|(key, why)| anyhow::anyhow!("invalid configuration: {key}: {why}"))?;
            (map, config.limits.body_bytes_max)
        }
        None => (
            event::FieldMap::default(),
            stele::config::Limits::DEFAULT.body_bytes_max,
        ),
    };
    let reading = Reading {
        batch,
        line_bytes_max,
        field_map: &field_map,
    };
    anyhow::ensure!(
        (1..=1024).contains(&concurrency),
        "--concurrency must be between 1 and 1024"
    );
    let mut cfg = LogConfig {
        recovery,
        ..LogConfig::default()
    };
    if let Some(s) = segment_bytes_max {
        cfg.segment_bytes_max = s;
    }
    let engine = open_engine(&data_dir, cfg)?;
    let ids = RecentIds::default();
    let input = Mutex::new(Input {
        lines_read: 0,
        stdin: std::io::stdin(),
        stopped: false,
    });
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                if let Err(e) = append_worker(&engine, &ids, &input, &reading) {
                    // No thread reads on: the run stops here.
                    input.lock().unwrap_or_else(|p| p.into_inner()).stopped = true;
                    failed.lock().expect("no panics").get_or_insert(e);
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("no panics") {
        return Err(e);
    }
    // The key index holds every event appended when we exit (the next run
    // would catch it up anyway; this keeps the wait out of its start).
    engine.indexes().catch_up(engine.log())?;
    Ok(())
}

/// The log (which takes the data directory's LOCK, so no `stele serve` runs
/// on it) and the indexes, caught up with the log the way the daemon does at
/// start-up, so that every id stored before is found.
fn open_engine(data_dir: &Path, cfg: LogConfig) -> anyhow::Result<Engine> {
    let log = Arc::new(open_log(data_dir, cfg)?);
    let indexes = Indexes::open(data_dir, log.clone(), IndexConfig::default())
        .map_err(|e| anyhow::anyhow!("cannot open the indexes in {}: {e}", data_dir.display()))?;
    indexes.catch_up(&log)?;
    // The key signs query cursors, which `stele append` never makes.
    Ok(Engine::new(
        log,
        Arc::new(indexes),
        Arc::new(SystemClock),
        [0; 32],
    ))
}

/// A batch read from standard input: the events, whether each id was the
/// client's, and each one's line number (1-based).
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    client_id: Vec<bool>,
    lines: Vec<usize>,
}

/// Standard input, shared by the appending threads: the lines read so far,
/// and whether the run stopped (a thread failed: no thread reads on).
struct Input {
    lines_read: usize,
    stdin: std::io::Stdin,
    stopped: bool,
}

/// How standard input is read: events per batch, the longest line, the
/// field map.
struct Reading<'a> {
    batch: usize,
    line_bytes_max: usize,
    field_map: &'a event::FieldMap,
}

/// The next batch of events; an empty one at the end of the input or once
/// the run stopped. A line that cannot be stored stops the run (no thread
/// reads on) and fails naming it and its batch, none of which is stored.
fn read_batch(input: &Mutex<Input>, reading: &Reading) -> anyhow::Result<Batch> {
    let mut guard = input
        .lock()
        .map_err(|_| anyhow::anyhow!("input lock poisoned"))?;
    if guard.stopped {
        return Ok(Batch::default());
    }
    let mut out = Batch::default();
    let read = read_lines(&mut guard, reading, &mut out);
    if let Err((n, why)) = read {
        guard.stopped = true;
        let first = out.lines.first().copied().unwrap_or(n);
        anyhow::bail!("line {n}: {why}; its batch (lines {first} to {n}) was not stored");
    }
    Ok(out)
}

/// Reads lines into `out` until it holds a batch or the input ends; a line
/// that cannot be stored: its number and why.
fn read_lines(
    input: &mut Input,
    reading: &Reading,
    out: &mut Batch,
) -> Result<(), (usize, String)> {
    let mut line = Vec::new();
    let mut stdin = input.stdin.lock();
    let max = reading.line_bytes_max;
    while out.events.len() < reading.batch {
        line.clear();
        // Two bytes past the limit tell a line at the limit ending in CRLF
        // from a longer one.
        let got = (&mut stdin)
            .take(max as u64 + 2)
            .read_until(b'\n', &mut line)
            .map_err(|e| (input.lines_read + 1, format!("cannot read: {e}")))?;
        if got == 0 {
            break;
        }
        input.lines_read += 1;
        let n = input.lines_read;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.len() > max {
            return Err((
                n,
                format!("longer than {max} bytes (limits.body_bytes_max), not read further"),
            ));
        }
        if text.trim_ascii().is_empty() {
            continue;
        }
        let posted = event::parse_posted_json_mapped(text, reading.field_map)
            .map_err(|e| (n, format!("not JSON: {e}")))?;
        let has_id = posted.has_id();
        let ev = posted.validate(event::new_event_id).map_err(|errs| {
            let msgs: Vec<String> = errs
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            (n, format!("invalid event: {}", msgs.join("; ")))
        })?;
        out.client_id.push(has_id);
        out.events.push(ev);
        out.lines.push(n);
    }
    Ok(())
}

fn append_worker(
    engine: &Engine,
    ids: &RecentIds,
    input: &Mutex<Input>,
    reading: &Reading,
) -> anyhow::Result<()> {
    loop {
        let Batch {
            events,
            client_id,
            lines,
        } = read_batch(input, reading)?;
        if events.is_empty() {
            return Ok(());
        }
        let (reserved, each) = loop {
            match ids.reserve_each(engine, &events, &client_id)? {
                EachIdempotency::New(reserved, each) => break (reserved, each),
                EachIdempotency::Conflict { index, why } => anyhow::bail!(
                    "line {}: {why}; its batch (lines {} to {}) was not stored",
                    lines[index],
                    lines[0],
                    lines[lines.len() - 1]
                ),
                // Another thread of this run is appending that id: its
                // answer comes in milliseconds.
                EachIdempotency::InFlight { .. } => std::thread::sleep(IN_FLIGHT_WAIT),
            }
        };
        // The new events in input order, and each one's place among them.
        let mut fresh = Vec::with_capacity(events.len());
        let mut place = vec![0usize; events.len()];
        for (i, ev) in events.iter().enumerate() {
            if each[i] == Each::New {
                place[i] = fresh.len();
                fresh.push(ev.clone());
            }
        }
        let ack = if fresh.is_empty() {
            None
        } else {
            let appended = engine.log().append(&fresh, &event::Provenance::cli());
            ids.settle(
                &reserved,
                &fresh,
                appended.as_ref().ok().map(|a| a.first_seq),
            );
            Some(appended?)
        };
        let first_seq = ack.as_ref().map(|a| a.first_seq);
        let duplicates: Vec<serde_json::Value> = each
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let seq = match *e {
                    Each::New => return None,
                    Each::Stored(seq) => seq,
                    Each::Earlier(j) => first_seq? + place[j] as u64,
                };
                Some(serde_json::json!({"line": lines[i], "id": events[i].id, "seq": seq}))
            })
            .collect();
        let appended_ids: Vec<&str> = fresh.iter().map(|e| e.id.as_str()).collect();
        let ack_line = serde_json::json!({
            "first_seq": first_seq,
            "count": fresh.len(),
            "segment": ack.as_ref().map(|a| a.segment.file_name()),
            "last_hash": ack.as_ref().map(|a| stele::log::format::hash_hex(&a.last_hash)),
            "ids": appended_ids,
            "duplicates": duplicates,
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{ack_line}")?;
        out.flush()?;
    }
}

pub(crate) fn cat(
    data_dir: PathBuf,
    from: Option<u64>,
    reverse: bool,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    // Read-only: no LOCK, nothing repaired, so it runs beside `stele serve`.
    let log = stele::log::ReadOnly::open(&data_dir)
        .map_err(|e| anyhow::anyhow!("cannot read the log in {}: {e}", data_dir.display()))?;
    let iter = if reverse {
        log.range(..=from.unwrap_or(u64::MAX), Direction::Backward)
    } else {
        log.range(from.unwrap_or(0).., Direction::Forward)
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for ev in iter.take(limit.unwrap_or(usize::MAX)) {
        serde_json::to_writer(&mut out, &ev?)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
