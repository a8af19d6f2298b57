//! `stele append` and `stele cat`: events written to the log from standard
//! input (one JSON object a line, an acknowledgement a batch) and read back
//! as JSON lines. Never touches the indexes.

use super::open_log;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use stele::event::{self, Event};
use stele::log::{Direction, Log, LogConfig, RecoveryMode};

pub(crate) fn append(
    data_dir: PathBuf,
    batch: usize,
    concurrency: usize,
    segment_bytes_max: Option<u64>,
    recovery: RecoveryMode,
) -> anyhow::Result<()> {
    anyhow::ensure!(batch >= 1, "--batch must be at least 1");
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
    let log = open_log(&data_dir, cfg)?;
    let input = Mutex::new((0usize, std::io::stdin()));
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                if let Err(e) = append_worker(&log, &input, batch) {
                    failed.lock().expect("no panics").get_or_insert(e);
                }
            });
        }
    });
    match failed.into_inner().expect("no panics") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn append_worker(
    log: &Log,
    input: &Mutex<(usize, std::io::Stdin)>,
    batch: usize,
) -> anyhow::Result<()> {
    let mut line = String::new();
    loop {
        let mut events: Vec<Event> = Vec::with_capacity(batch);
        {
            let mut guard = input
                .lock()
                .map_err(|_| anyhow::anyhow!("input lock poisoned"))?;
            let (lines_read, stdin) = &mut *guard;
            while events.len() < batch {
                line.clear();
                if stdin.read_line(&mut line)? == 0 {
                    break;
                }
                *lines_read += 1;
                let n = *lines_read - 1;
                if line.trim().is_empty() {
                    continue;
                }
                let value = event::parse_json(line.as_bytes())
                    .map_err(|e| anyhow::anyhow!("line {}: not JSON: {e}", n + 1))?;
                let ev = event::parse_event(&value, || uuid::Uuid::now_v7().to_string()).map_err(
                    |errs| {
                        let msgs: Vec<String> = errs
                            .iter()
                            .map(|e| format!("{}: {}", e.field, e.message))
                            .collect();
                        anyhow::anyhow!("line {}: invalid event: {}", n + 1, msgs.join("; "))
                    },
                )?;
                events.push(ev);
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let ack = log.append(&events, &event::Provenance::cli())?;
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let ack_line = serde_json::json!({
            "first_seq": ack.first_seq,
            "count": ack.count,
            "segment": ack.segment.file_name(),
            "last_hash": stele::log::format::hash_hex(&ack.last_hash),
            "ids": ids,
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
    let log = open_log(&data_dir, LogConfig::default())?;
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
