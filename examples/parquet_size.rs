//! `parquet_size`: Parquet bytes per event against segment bytes per event, for the
//! same events (docs/perf-archive.md, figure 4).
//!
//! A signed day's Parquet file is built by the archive only once the day has closed,
//! which a daemon run in real time never reaches; this measures the writer directly.
//! It appends N generated events (the load generator's: [`EventGen::sized`] 500 bytes,
//! seed 0x57e1e, posted-from-loopback provenance) to a fresh log in `DIR`, in batches of
//! 1,000 as the ingest path does, reads the events back from the log and writes them with
//! [`stele::archive::parquet::write_day`] (the uploader's writer: ZSTD level 3, row
//! groups of 64 Ki rows) to `DIR/events.parquet`, then closes the log (which trims the
//! open segment's preallocation) and sums the segment files.
//!
//! ```sh
//! cargo run --release --example parquet_size -- 1000000 /tmp/parquet-size
//! ```
//!
//! Prints one line per figure and, last, one JSON object. `DIR` must not exist or be
//! empty; it is left in place (delete it afterwards).

use std::sync::Arc;
use std::time::Instant;

use stele::archive::parquet::{write_day, DaySeal};
use stele::clock::{Clock as _, SystemClock};
use stele::event::Provenance;
use stele::log::format::Day;
use stele::log::{Direction, Log, LogConfig};
use stele::testkit::EventGen;

const DAY_MICROS: i64 = 86_400_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().as_deref().unwrap_or("1000000").parse()?;
    let dir = std::path::PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/parquet-size".to_owned()),
    );
    let event_bytes: usize = args.next().as_deref().unwrap_or("500").parse()?;
    std::fs::create_dir_all(&dir)?;

    // As loadgen: event times from 29 days before today, UTC midnight.
    let now = SystemClock.now_micros();
    let base = (now / DAY_MICROS - 29) * DAY_MICROS;
    let mut gen = EventGen::new(0x57e1e).with_base_time(base);
    let by = Provenance::loopback("127.0.0.1".parse()?);

    let log = Log::open(&dir, LogConfig::default(), Arc::new(SystemClock))?;
    let t = Instant::now();
    let mut json_bytes = 0u64;
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let batch: Vec<_> = (0..k)
            .map(|_| {
                let ev = if event_bytes == 0 {
                    gen.next_event()
                } else {
                    gen.sized(event_bytes)
                };
                json_bytes += serde_json::to_vec(&ev)
                    .map(|v| v.len() as u64 + 1)
                    .unwrap_or(0);
                ev
            })
            .collect();
        log.append(&batch, &by)?;
        left -= k;
    }
    let append_s = t.elapsed().as_secs_f64();
    let first = log.first_seq();
    let out_path = dir.join("events.parquet");
    let file = std::fs::File::create(&out_path)?;
    let seal = DaySeal {
        day: Day::from_micros(now),
        digest_sha256: "0".repeat(64),
        first_seq: first,
        last_seq: first + n - 1,
    };
    let t = Instant::now();
    let events = log
        .range(first..=first + n - 1, Direction::Forward)
        .map(|r| r.expect("the log reads back"));
    let stats = write_day(events, &seal, std::io::BufWriter::new(file))?;
    let parquet_s = t.elapsed().as_secs_f64();
    let pq_bytes = std::fs::metadata(&out_path)?.len();
    // Closed first: the open segment's file is preallocated until then.
    log.close();
    let mut seg_bytes = 0u64;
    let mut segs = 0u64;
    for e in std::fs::read_dir(dir.join("segments"))? {
        let e = e?;
        if e.file_name().to_string_lossy().ends_with(".seg") {
            seg_bytes += e.metadata()?.len();
            segs += 1;
        }
    }

    let per = |b: u64| b as f64 / n as f64;
    println!("events                     {n}");
    println!(
        "NDJSON as posted           {json_bytes} B = {:.1} B/event",
        per(json_bytes)
    );
    println!(
        "segments ({segs} files)       {seg_bytes} B = {:.1} B/event   (appended in {append_s:.1} s)",
        per(seg_bytes)
    );
    println!(
        "Parquet ({} rows)      {pq_bytes} B = {:.1} B/event   (written in {parquet_s:.1} s, {:.0} events/s)",
        stats.rows,
        per(pq_bytes),
        n as f64 / parquet_s
    );
    println!(
        "Parquet / segments         {:.3}",
        pq_bytes as f64 / seg_bytes as f64
    );
    println!(
        "{}",
        serde_json::json!({
            "events": n, "event_bytes": event_bytes, "ndjson_bytes": json_bytes,
            "segment_files": segs, "segment_bytes": seg_bytes,
            "segment_bytes_per_event": per(seg_bytes),
            "parquet_bytes": pq_bytes, "parquet_bytes_per_event": per(pq_bytes),
            "parquet_rows": stats.rows, "parquet_write_s": parquet_s, "append_s": append_s,
        })
    );
    Ok(())
}
