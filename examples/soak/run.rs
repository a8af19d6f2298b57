//! The run from start to end: the run directory and configurations, seeding, the
//! first daemon, the load tasks, the supervisor, the graceful stop, the final checks
//! and the summary.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use crate::checks::{final_checks, Final};
use crate::common::now_micros;
use crate::daemon::{rss_sampler, start_daemon, stop_daemon, DaemonLog};
use crate::ingest::ingest_client;
use crate::opts::Opts;
use crate::query::query_client;
use crate::report::{summarize, Summary};
use crate::retention::retention_watch;
use crate::seed::seed_days;
use crate::state::{Counters, Run};
use crate::stream::stream_client;
use crate::supervise::{supervise, Supervised};
use crate::DRAIN_TIMEOUT;

pub struct Paths {
    pub stele: PathBuf,
    pub run_dir: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub final_config: PathBuf,
}

pub fn soak(o: &Opts, stele: PathBuf) -> Result<Summary> {
    let tag = format!("{:x}", now_micros() / 1_000_000);
    let run_dir = o
        .data_parent
        .join(format!("run-{tag}-{}", std::process::id()));
    let data = run_dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let paths = Paths {
        stele,
        data,
        config: run_dir.join("stele.toml"),
        final_config: run_dir.join("stele-final.toml"),
        run_dir,
    };
    let log_section = format!("[log]\nsegment_bytes_max = {}\n", o.segment_bytes);
    std::fs::write(
        &paths.config,
        format!(
            "# Written by examples/soak/.\n{log_section}\n[retention]\ndays = 1\n\
             interval_secs = {}\n",
            o.retention_interval_secs
        ),
    )?;
    std::fs::write(
        &paths.final_config,
        format!("# Written by examples/soak/: the final check, no retention.\n{log_section}"),
    )?;
    eprintln!(
        "soak: {} minutes, kill -9 every {}, data in {}, daemon {}",
        o.minutes,
        if o.kill_every_secs == 0 {
            "never".to_owned()
        } else {
            format!("~{} s", o.kill_every_secs)
        },
        paths.data.display(),
        paths.stele.display()
    );

    let prefix = format!("soak{tag}-");
    let next_n = AtomicU64::new(0);
    let seeding = Instant::now();
    let days = seed_days(o, &paths.data, &prefix, &next_n)?;
    let seeded: u64 = days.iter().map(|d| d.count).sum();
    eprintln!(
        "soak: seeded {} past days ({} to {}, {seeded} events, seqs 1..={}) in {:.1} s, each \
         under a legal hold",
        days.len(),
        days[0].day,
        days[days.len() - 1].day,
        days[days.len() - 1].last_seq,
        seeding.elapsed().as_secs_f64()
    );

    let dlog = Arc::new(DaemonLog {
        file: Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(paths.run_dir.join("daemon.log"))?,
        ),
        echo: o.daemon_log,
        tail: Mutex::default(),
        errors: AtomicU64::new(0),
        warnings: AtomicU64::new(0),
        panics: AtomicU64::new(0),
        first_errors: Mutex::default(),
        recovery_notes: Mutex::default(),
    });
    let first = start_daemon(&paths.stele, &paths.config, &paths.data, &dlog)?;
    let (tx, rx) = watch::channel(Some(first.addr));
    let mut acked = vec![0u64; seeded as usize];
    for d in &days {
        for k in 0..d.count {
            acked[(d.first_n + k) as usize] = d.first_seq + k;
        }
    }
    let run = Arc::new(Run {
        o: o.clone(),
        prefix,
        started: Instant::now(),
        addr: rx,
        stop: AtomicBool::new(false),
        next_n,
        acked: Mutex::new(acked),
        recent: Mutex::default(),
        days,
        first_seq: AtomicU64::new(1),
        indexed_seq: AtomicU64::new(0),
        pid: AtomicU32::new(first.pid),
        rss_max_kib: AtomicU64::new(0),
        rss_anon_max_kib: AtomicU64::new(0),
        c: Counters::default(),
        failures: Mutex::default(),
    });
    run.note(&format!(
        "daemon listening on {} after {:.2} s",
        first.addr, first.start_secs
    ));
    let mut sup = Supervised {
        start_secs: vec![first.start_secs],
        ..Supervised::default()
    };
    let sampler_done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (run, done) = (run.clone(), sampler_done.clone());
        let csv = std::fs::File::create(paths.run_dir.join("rss.csv"))?;
        std::thread::spawn(move || rss_sampler(run, done, csv))
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let load = Duration::from_secs(o.minutes * 60);
    let end = run.started + load;
    let mut tasks = Vec::new();
    for i in 0..o.batch_clients {
        let rps = o.batch_rate / o.batch as f64 / o.batch_clients as f64;
        tasks.push(rt.spawn(ingest_client(run.clone(), i, o.batch, rps)));
    }
    for i in 0..o.single_clients {
        let rps = o.single_rate / o.single_clients as f64;
        tasks.push(rt.spawn(ingest_client(run.clone(), 100 + i, 1, rps)));
    }
    for i in 0..o.query_clients {
        tasks.push(rt.spawn(query_client(run.clone(), i)));
    }
    for i in 0..o.stream_clients {
        tasks.push(rt.spawn(stream_client(run.clone(), i)));
    }
    tasks.push(rt.spawn(retention_watch(run.clone(), load)));

    let supervised = supervise(&run, &tx, &paths, &dlog, first, end, &mut sup);
    run.stop.store(true, Ordering::Relaxed);
    run.note("load time is over: stopping the clients");
    let drained = rt.block_on(async {
        tokio::time::timeout(DRAIN_TIMEOUT, async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await
    });
    if drained.is_err() {
        run.fail(format!(
            "the clients did not finish within {} s of the end",
            DRAIN_TIMEOUT.as_secs()
        ));
    }
    let load_secs = run.secs();
    let mut d = match supervised {
        Ok(d) => d,
        Err(e) => {
            sampler_done.store(true, Ordering::Relaxed);
            return Err(e.context(format!(
                "the daemon could not be restarted; data kept in {}",
                paths.run_dir.display()
            )));
        }
    };
    // Graceful stop: exit 0 required.
    tx.send_replace(None);
    match stop_daemon(&mut d) {
        Ok(Some(0)) => run.note("the daemon stopped on SIGTERM with exit 0"),
        Ok(code) => run.fail(format!("the daemon exited {code:?} on SIGTERM, not 0")),
        Err(e) => run.fail(format!("{e:#}")),
    }
    run.pid.store(0, Ordering::Relaxed);

    let fin = final_checks(&run, &rt, &paths, &dlog, &tx);
    sampler_done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let fin = match fin {
        Ok(f) => f,
        Err(e) => {
            run.fail(format!("the final checks could not run: {e:#}"));
            Final::default()
        }
    };
    let panics = dlog.panics.load(Ordering::Relaxed);
    if panics > 0 {
        run.fail(format!(
            "the daemon logged {panics} panics (see {})",
            paths.run_dir.join("daemon.log").display()
        ));
    }
    let rss_max_mib = run.rss_max_kib.load(Ordering::Relaxed) as f64 / 1024.0;
    if rss_max_mib >= o.rss_max_mib as f64 {
        run.fail(format!(
            "the daemon's max RSS {rss_max_mib:.1} MiB is not below the bound of {} MiB",
            o.rss_max_mib
        ));
    }
    let summary = summarize(&run, &sup, &fin, &dlog, &paths, load_secs);
    if summary.failures.is_empty() && !o.keep {
        let _ = std::fs::remove_dir_all(&paths.run_dir);
    }
    Ok(summary)
}
