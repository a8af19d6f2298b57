//! `stele reindex` and `stele check`: the indexes rebuilt from the log, or
//! compared with it. Never changes the log.

use super::open_log;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use stele::index::{IndexConfig, Indexes};
use stele::log::{Log, LogConfig};

fn catch_up(data_dir: &std::path::Path, log: &Arc<Log>) -> anyhow::Result<Indexes> {
    let idx = Indexes::open(data_dir, log.clone(), IndexConfig::default())
        .map_err(|e| anyhow::anyhow!("cannot open the indexes in {}: {e}", data_dir.display()))?;
    idx.catch_up(log)?;
    Ok(idx)
}

pub(crate) fn reindex(data_dir: PathBuf) -> anyhow::Result<()> {
    let log = Arc::new(open_log(&data_dir, LogConfig::default())?);
    Indexes::delete(&data_dir)?;
    let started = std::time::Instant::now();
    let idx = catch_up(&data_dir, &log)?;
    idx.close();
    let secs = started.elapsed().as_secs_f64();
    let n = log.last_seq() + 1 - log.first_seq();
    println!(
        "reindexed {n} events in {secs:.1} s ({:.0} events/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok(())
}

pub(crate) fn check(data_dir: PathBuf) -> ExitCode {
    match check_inner(&data_dir) {
        Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(problems) => {
            for p in &problems {
                println!("DIFFERENT: {p}");
            }
            println!(
                "the indexes differ from the log: {} problems; run `stele reindex`",
                problems.len()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("stele check: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check_inner(data_dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let log = Arc::new(open_log(data_dir, LogConfig::default())?);
    let idx = catch_up(data_dir, &log)?;
    for r in &idx.open_report().rebuilt {
        println!("note: rebuilt at open: {r}");
    }
    let report = idx.check(&log)?;
    println!(
        "checked {} events: full-text {} documents, key index {} ids",
        report.events, report.text_documents, report.key_ids
    );
    idx.close();
    Ok(report.problems)
}
