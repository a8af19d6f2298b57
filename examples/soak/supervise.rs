//! The crash schedule: keeps the daemon running for the load time, kills it with
//! SIGKILL every `--kill-every-secs` (±25 %) and restarts it on the same data
//! directory, restarts it after an unexpected exit (a failure), and prints progress.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use stele::testkit::EventGen;
use tokio::sync::watch;

use crate::daemon::{start_daemon, Daemon, DaemonLog};
use crate::run::Paths;
use crate::state::Run;
use crate::PROGRESS_EVERY;

/// What the supervisor did.
#[derive(Default)]
pub struct Supervised {
    pub kills: u64,
    pub unexpected_exits: u64,
    pub start_secs: Vec<f64>,
}

/// Keeps the daemon running until `end`: kills it on schedule and restarts it, restarts
/// it after an unexpected exit (a failure). Returns the daemon still running.
pub fn supervise(
    run: &Run,
    tx: &watch::Sender<Option<SocketAddr>>,
    paths: &Paths,
    log: &Arc<DaemonLog>,
    mut d: Daemon,
    end: Instant,
    out: &mut Supervised,
) -> Result<Daemon> {
    let mut rng = EventGen::new(run.o.seed ^ 0x6b11);
    let next_kill = |from: Instant, rng: &mut EventGen| -> Option<Instant> {
        (run.o.kill_every_secs > 0).then(|| {
            let base = run.o.kill_every_secs as f64;
            let jitter = (rng.next_u64() % 1001) as f64 / 1000.0 * 0.5 - 0.25;
            from + Duration::from_secs_f64(base * (1.0 + jitter))
        })
    };
    let mut kill_at = next_kill(Instant::now(), &mut rng);
    let mut last_progress = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if now >= end {
            return Ok(d);
        }
        if now - last_progress >= PROGRESS_EVERY {
            last_progress = now;
            progress(run, out);
        }
        let exited = d.child.try_wait()?;
        let killing = kill_at.is_some_and(|k| now >= k);
        if exited.is_none() && !killing {
            continue;
        }
        if let Some(status) = exited {
            out.unexpected_exits += 1;
            tx.send_replace(None);
            run.pid.store(0, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));
            run.fail(format!(
                "the daemon exited by itself ({status}); its last log lines:\n    {}",
                log.tail(15)
            ));
        } else {
            // SIGKILL in mid-load: requests in flight are cut.
            let _ = d.child.kill();
            let _ = d.child.wait();
            tx.send_replace(None);
            run.pid.store(0, Ordering::Relaxed);
            out.kills += 1;
            log.line(&format!("==== soak: kill -9 number {}", out.kills));
            run.note(&format!(
                "kill -9 number {} (pid {}); restarting",
                out.kills, d.pid
            ));
        }
        d = start_daemon(&paths.stele, &paths.config, &paths.data, log)?;
        out.start_secs.push(d.start_secs);
        run.pid.store(d.pid, Ordering::Relaxed);
        tx.send_replace(Some(d.addr));
        run.note(&format!(
            "restarted in {:.2} s, listening on {}",
            d.start_secs, d.addr
        ));
        kill_at = next_kill(Instant::now(), &mut rng);
    }
}

fn progress(run: &Run, sup: &Supervised) {
    let c = &run.c;
    run.note(&format!(
        "{} events acknowledged over HTTP, {} queries, {} stream events, {} kills, first \
         retained seq {}, max RSS {:.1} MiB",
        c.events_acked_http.load(Ordering::Relaxed),
        c.q_list.load(Ordering::Relaxed)
            + c.q_search.load(Ordering::Relaxed)
            + c.q_stats.load(Ordering::Relaxed)
            + c.q_get.load(Ordering::Relaxed)
            + c.q_get_seeded.load(Ordering::Relaxed),
        c.stream_events.load(Ordering::Relaxed),
        sup.kills,
        run.first_seq.load(Ordering::Relaxed),
        run.rss_max_kib.load(Ordering::Relaxed) as f64 / 1024.0
    ));
}
