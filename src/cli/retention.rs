//! `stele retention`: the retention plan printed, and applied when the
//! daemon is not running. The rules are `stele::retention`'s.

use super::process_env;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use stele::clock::SystemClock;
use stele::index::Indexes;
use stele::log::Log;

pub(crate) fn retention(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
    dry_run: bool,
    json: bool,
) -> ExitCode {
    use stele::retention;
    let path = stele::config::config_path(config, process_env);
    let cfg = match stele::config::Config::load(path.as_deref(), process_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stele retention: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let data_dir = data_dir.unwrap_or(cfg.data_dir.clone());
    let holds: Vec<retention::Hold> = match retention::load_holds(&data_dir) {
        Ok(api) => cfg.retention.holds.iter().cloned().chain(api).collect(),
        Err(e) => {
            eprintln!("stele retention: {e}");
            return ExitCode::from(2);
        }
    };
    let today = chrono::Utc::now().date_naive();
    let planned = retention::segments_on_disk(&data_dir).and_then(|segs| {
        let mut p = retention::plan(&segs, today, &cfg.retention, &holds, |s| {
            retention::tenants_in(&s.path)
        })?;
        retention::keep_unsigned(&mut p, stele::seal::digest::digested_through(&data_dir));
        Ok(p)
    });
    let plan = match planned {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stele retention: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "today": today.to_string(), "days": plan })
        );
    } else {
        for d in &plan {
            println!(
                "{}  {:>5}  {} events (seqs {}..={}) in {} segments: {}",
                d.day,
                if d.drop { "DROP" } else { "keep" },
                d.events,
                d.first_seq,
                d.last_seq,
                d.segments.len(),
                d.reason
            );
        }
    }
    let doomed = plan.iter().filter(|d| d.drop).count();
    if dry_run || doomed == 0 {
        if !json {
            println!(
                "{doomed} of {} days would be dropped{}",
                plan.len(),
                if dry_run { " (dry run)" } else { "" }
            );
        }
        return ExitCode::SUCCESS;
    }
    // Dropping needs the log to ourselves: the daemon does it on its own.
    let log_cfg =
        stele::seal::with_evidence(cfg.log_config(), &data_dir, cfg.seal.witness_dir.as_deref());
    let log = match Log::open(&data_dir, log_cfg, Arc::new(SystemClock)) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!(
                "stele retention: {e}\n(while `stele serve` runs it applies retention itself every \
                 retention.interval_secs; use --dry-run or GET /v1/retention to see the plan)"
            );
            return ExitCode::from(2);
        }
    };
    let result = Indexes::open(&data_dir, log.clone(), cfg.index_config())
        .map_err(|e| e.to_string())
        .and_then(|idx| {
            let now = stele::event::format_micros(chrono::Utc::now().timestamp_micros());
            let done = retention::apply(&data_dir, &log, &idx, &plan, &now)?;
            let first = log.first_seq();
            if !idx.wait_dropped(first, std::time::Duration::from_secs(600)) {
                return Err("the indexes did not forget the dropped days in time".into());
            }
            while idx.cleanup_pending() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            idx.close();
            Ok(done)
        });
    match result {
        Ok(done) => {
            println!(
                "dropped {} days ({} events); the log now starts at seq {}",
                done.len(),
                done.iter().map(|d| d.events).sum::<u64>(),
                log.first_seq()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stele retention: {e}");
            ExitCode::from(1)
        }
    }
}
