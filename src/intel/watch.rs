//! The detectors of a running daemon, as one observer of the feed: they see
//! every event in seq order and their findings are appended to the log.
//!
//! Owns the [`Detectors`] behind a lock (held for one feed batch) and the
//! appending of findings (`ingested_by = "stele"`) by its own thread,
//! `stele-findings`: the feed hands each batch's findings over and reads on,
//! and the thread appends whatever has queued in one group commit. Neither is
//! on ingest's path, and the feed never waits for a disk write (it did, and
//! fell tens of thousands of events behind a busy log). The queue holds
//! [`QUEUE_BATCHES`] batches; beyond, the feed waits (findings are never
//! dropped). [`Watch::close`] appends what is queued and stops the thread.
//!
//! Restart without re-alerting: the feed replays the recent history at start.
//! That replay only warms the detectors' memory (bursts in progress, known
//! IPs, baselines, which findings were raised); findings are appended only for
//! events stored after the daemon started ([`Watch::live_after`]). A window
//! open across the restart raises again only if it escalates, because the
//! replay marked its earlier finding as raised, and a finding's event id (kind,
//! subject, window, level) would make a second copy a conflict anyway. What a
//! crash can lose: the findings of the events of its last moments, stored but
//! not yet observed (the feed runs milliseconds behind the writer).

use super::detect::{Detectors, Limits, Thresholds, KINDS};
use super::feed::Observer;
use super::finding::{q, Finding, FindingKey, Level, Subject, CATEGORY};
use super::processes::Processes;
use super::runs::{nearest_rank, Kind, Run, RunStatus};
use crate::clock::Clock;
use crate::event::{format_micros, Phase};
use crate::event::{Provenance, StoredEvent, INGESTED_BY_STELE};
use crate::log::Log;
use crate::metrics::Histogram;
use crate::sync::Recover;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Feed batches of findings queued for the appender at most.
pub const QUEUE_BATCHES: usize = 256;
/// Findings appended in one group commit at most.
const APPEND_MAX: usize = 4096;

/// What the feed hands the appender.
enum Msg {
    /// Findings: the arrival of the event behind each, and the finding.
    Found(Vec<(i64, Finding)>),
    /// Answer once everything sent before is appended.
    Flush(SyncSender<()>),
}

/// Counters of the detectors.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Findings appended, by kind ([`KINDS`] order).
    pub raised: [AtomicU64; KINDS.len()],
    /// Findings that could not be appended (logged).
    pub failed: AtomicU64,
    /// From an event's arrival (`received_at`) to its finding's append.
    pub latency: Histogram,
}

/// The detectors of a running daemon (see the module documentation).
pub struct Watch {
    detectors: Mutex<Detectors>,
    clock: Arc<dyn Clock>,
    /// Findings are appended only for events with a greater seq: the log's
    /// last seq when the daemon started.
    pub live_after: u64,
    /// The process runs (slow and stuck runs), when tracked.
    processes: Option<Arc<Processes>>,
    /// The last seq observed (stuck runs are judged once the replay is done).
    observed: AtomicU64,
    /// Its counters (shared with the appender).
    pub stats: Arc<WatchStats>,
    /// The appender's queue and thread (`None` once closed).
    appender: Mutex<Option<(SyncSender<Msg>, JoinHandle<()>)>>,
}

impl Watch {
    /// Detectors over `log` with these thresholds and bounds; events up to the
    /// log's last seq now only warm them up.
    ///
    /// # Errors
    /// The appender thread could not be spawned.
    pub fn new(
        log: Arc<Log>,
        clock: Arc<dyn Clock>,
        th: Thresholds,
        limits: Limits,
        processes: Option<Arc<Processes>>,
    ) -> std::io::Result<Watch> {
        let stats = Arc::new(WatchStats::default());
        let (tx, rx) = sync_channel(QUEUE_BATCHES);
        let thread = {
            let (log, clock, stats) = (log.clone(), clock.clone(), stats.clone());
            std::thread::Builder::new()
                .name("stele-findings".into())
                .spawn(move || appender(&rx, &log, clock.as_ref(), &stats))?
        };
        Ok(Watch {
            detectors: Mutex::new(Detectors::new(th, limits)),
            live_after: log.last_seq(),
            processes,
            observed: AtomicU64::new(0),
            clock,
            stats,
            appender: Mutex::new(Some((tx, thread))),
        })
    }

    /// Returns once every finding handed over so far is appended (or failed).
    pub fn flush(&self) {
        let Some(tx) = self.appender.exclusive().as_ref().map(|(tx, _)| tx.clone()) else {
            return;
        };
        let (done, wait) = sync_channel(1);
        if tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Appends what is queued and stops the appender; findings raised later
    /// are dropped with an error logged. Idempotent.
    pub fn close(&self) {
        let taken = self.appender.exclusive().take();
        if let Some((tx, thread)) = taken {
            drop(tx);
            let _ = thread.join();
        }
    }

    /// Puts new thresholds in force (SIGHUP).
    pub fn set_thresholds(&self, th: Thresholds) {
        self.detectors.exclusive().set_thresholds(th);
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> Thresholds {
        self.detectors.exclusive().thresholds().clone()
    }

    /// Users, IPs, scopes and remembered findings held.
    pub fn tracked(&self) -> [usize; 4] {
        self.detectors.exclusive().tracked()
    }
}

/// The key of a finding's event, read back from its metadata and tenant.
fn finding_key(e: &StoredEvent) -> Option<FindingKey> {
    if e.event.category.as_deref() != Some(CATEGORY) {
        return None;
    }
    let m: serde_json::Value = serde_json::from_str(e.event.metadata.as_deref()?).ok()?;
    let kind = *KINDS.iter().find(|k| m["kind"] == **k)?;
    let subject_kind = *["user", "ip", "process", "action", "tenant", "system"]
        .iter()
        .find(|k| m["subject"]["type"] == **k)?;
    let since = crate::event::parse_timestamp(m["window"]["since"].as_str()?).ok()?;
    let level = Level::parse(m["severity"].as_str()?)?;
    let subject = Subject {
        kind: subject_kind,
        id: m["subject"]["id"].as_str()?.to_owned(),
    };
    Some((kind, e.event.tenant.clone(), subject, since, level))
}

impl Observer for Watch {
    fn observe(&self, events: &[&StoredEvent]) {
        let mut found = Vec::new();
        {
            let mut d = self.detectors.exclusive();
            for e in events {
                let own = e
                    .provenance
                    .as_ref()
                    .is_some_and(|p| p.ingested_by == INGESTED_BY_STELE);
                if own {
                    if let Some(key) = finding_key(e) {
                        d.remember(key);
                    }
                    continue;
                }
                let raised = d.observe(e);
                if e.seq > self.live_after {
                    found.extend(raised.into_iter().map(|f| (e.received_at, f)));
                }
            }
        }
        if let Some(last) = events.last() {
            self.observed.store(last.seq, Ordering::Release);
        }
        // Slow runs: judged when their `finished` report is observed (the
        // trackers observed it first: they come before this in the feed).
        let slow = self.slow_runs(events);
        if !slow.is_empty() {
            let mut d = self.detectors.exclusive();
            for (seq, received, f) in slow {
                if d.fresh(&f) && seq > self.live_after {
                    found.push((received, f));
                }
            }
        }
        self.append(found);
    }

    fn tick(&self, now: i64) {
        // Stuck runs: once the replay is done (what was raised before a
        // restart has been remembered by then).
        if self.observed.load(Ordering::Acquire) < self.live_after {
            return;
        }
        let stuck = self.stuck_runs(now);
        let mut found = Vec::new();
        {
            let mut d = self.detectors.exclusive();
            for f in stuck {
                if d.fresh(&f) {
                    found.push((now, f));
                }
            }
        }
        self.append(found);
    }
}

/// Finished runs of a process before one is judged slow.
pub const SLOW_MIN_HISTORY: usize = 5;
/// A run is slow past this many times the p95 of its process's other runs
/// (and at least a minute longer than it).
pub const SLOW_FACTOR: i64 = 3;

/// The run's figures as a finding's evidence and query.
fn run_query(r: &Run) -> String {
    match &r.tenant {
        Some(t) => format!("process_id={}&tenant={}", q(&r.id), q(t)),
        None => format!("process_id={}", q(&r.id)),
    }
}

impl Watch {
    /// Findings of the runs whose `finished` report is among `events`, with
    /// the seq and arrival of that report.
    fn slow_runs(&self, events: &[&StoredEvent]) -> Vec<(u64, i64, Finding)> {
        let Some(p) = &self.processes else {
            return Vec::new();
        };
        let finishes: Vec<&StoredEvent> = events
            .iter()
            .copied()
            .filter(|e| {
                e.event.phase == Some(Phase::Finished)
                    && e.event.process_id.is_some()
                    && e.event.batch_id.is_none()
            })
            .collect();
        if finishes.is_empty() {
            return Vec::new();
        }
        let tracker = p.tracker(Kind::Process);
        let view = tracker.view(self.clock.now_micros());
        let mut out = Vec::new();
        for e in finishes {
            let id = e.event.process_id.as_deref().unwrap_or_default();
            let Some(run) = view
                .by_id(id)
                .into_iter()
                .find(|r| r.tenant == e.event.tenant)
            else {
                continue;
            };
            let (Some(took), Some(name)) = (run.duration_ms(), run.name()) else {
                continue;
            };
            let mut others: Vec<i64> = view
                .runs()
                .filter(|r| r.tenant == run.tenant && r.name() == Some(name) && r.id != run.id)
                .filter_map(Run::duration_ms)
                .collect();
            if others.len() < SLOW_MIN_HISTORY {
                continue;
            }
            others.sort_unstable();
            let p95 = nearest_rank(&others, 95).max(1);
            if took <= (SLOW_FACTOR * p95).max(p95 + 60_000) {
                continue;
            }
            let level = if took > 10 * p95 {
                Level::High
            } else if took > 5 * p95 {
                Level::Medium
            } else {
                Level::Low
            };
            let start = run.start();
            out.push((
                e.seq,
                e.received_at,
                Finding {
                    kind: "slow_run",
                    level,
                    subject: Subject {
                        kind: "process",
                        id: name.to_owned(),
                    },
                    tenant: run.tenant.clone(),
                    since: start,
                    until: start + took * 1000 + 1,
                    evidence: serde_json::json!({"run": run.id, "duration_ms": took,
                        "p95_ms": p95, "history": others.len(), "factor": SLOW_FACTOR}),
                    summary: format!(
                        "run {} of {name} took {:.1} s, {:.1} × the p95 of its last {} runs ({:.1} s)",
                        run.id,
                        took as f64 / 1000.0,
                        took as f64 / p95 as f64,
                        others.len(),
                        p95 as f64 / 1000.0
                    ),
                    recommendation: format!(
                        "Compare run {} of {name} with a usual one: more input, a slow \
                         dependency or contention usually explains it.",
                        run.id
                    ),
                    query: run_query(run),
                },
            ));
        }
        out
    }

    /// Findings of the runs stuck at `now`.
    fn stuck_runs(&self, now: i64) -> Vec<Finding> {
        let Some(p) = &self.processes else {
            return Vec::new();
        };
        let tracker = p.tracker(Kind::Process);
        let view = tracker.view(now);
        view.runs()
            .filter(|r| view.status(r) == RunStatus::Stuck)
            .map(|r| {
                let name = r.name().unwrap_or(&r.id).to_owned();
                let start = r.start();
                let hours = (now - start) as f64 / 3_600_000_000.0;
                Finding {
                    kind: "stuck_run",
                    level: if hours >= 24.0 {
                        Level::High
                    } else {
                        Level::Medium
                    },
                    subject: Subject {
                        kind: "process",
                        id: name.clone(),
                    },
                    tenant: r.tenant.clone(),
                    since: start,
                    until: now.max(start + 1),
                    evidence: serde_json::json!({"run": r.id, "running_hours": hours,
                        "started": format_micros(start)}),
                    summary: format!(
                        "run {} of {name} started {} and has not finished ({hours:.1} h)",
                        r.id,
                        format_micros(start)
                    ),
                    recommendation: format!(
                        "Check whether run {} of {name} is still working or hangs; cancel it \
                         and report `phase=finished` with `status=canceled` if it is dead.",
                        r.id
                    ),
                    query: run_query(r),
                }
            })
            .collect()
    }

    /// Hands `found` (arrival of the event behind each, and the finding) to
    /// the appender.
    fn append(&self, found: Vec<(i64, Finding)>) {
        if found.is_empty() {
            return;
        }
        let tx = self.appender.exclusive().as_ref().map(|(tx, _)| tx.clone());
        let n = found.len() as u64;
        if tx.is_none_or(|tx| tx.send(Msg::Found(found)).is_err()) {
            self.stats.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!("{n} findings could not be appended: the detectors are closed.");
        }
    }
}

/// The appender thread: appends what has queued in one group commit, until
/// every sender is gone.
fn appender(rx: &Receiver<Msg>, log: &Log, clock: &dyn Clock, stats: &WatchStats) {
    while let Ok(first) = rx.recv() {
        let mut found = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Found(f) => found.extend(f),
                Msg::Flush(done) => flushes.push(done),
            }
            if found.len() < APPEND_MAX {
                next = rx.try_recv().ok();
            }
        }
        if !found.is_empty() {
            append_now(&found, log, clock, stats);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Appends `found` and counts them.
fn append_now(found: &[(i64, Finding)], log: &Log, clock: &dyn Clock, stats: &WatchStats) {
    let evs: Vec<_> = found.iter().map(|(_, f)| f.to_event()).collect();
    match log.append(&evs, &Provenance::stele()) {
        Ok(_) => {
            let now = clock.now_micros();
            for (received, f) in found {
                if let Some(i) = KINDS.iter().position(|k| *k == f.kind) {
                    stats.raised[i].fetch_add(1, Ordering::Relaxed);
                }
                stats
                    .latency
                    .observe_micros(now.saturating_sub(*received).max(0) as u64);
            }
        }
        Err(e) => {
            stats
                .failed
                .fetch_add(found.len() as u64, Ordering::Relaxed);
            tracing::error!("{} findings could not be appended: {e}.", found.len());
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::event::Event;
    use crate::intel::ProcessesConfig;
    use crate::log::LogConfig;

    const T0: i64 = 1_796_299_200_000_000;
    const SEC: i64 = 1_000_000;

    fn run_event(id: &str, phase: Phase, t: i64) -> Event {
        Event {
            id: format!("{id}-{}", phase.as_str()),
            action: format!("export_{}", phase.as_str()),
            source: Some(crate::event::Source::Scheduled),
            tenant: Some("acme".into()),
            process_name: Some("export".into()),
            process_id: Some(id.into()),
            phase: Some(phase),
            status: (phase == Phase::Finished).then_some(crate::event::Status::Success),
            timestamp: Some(t),
            ..Event::default()
        }
    }

    /// Appends `events` and hands them to the trackers, then the watch, as the
    /// feed does.
    fn feed(log: &Log, p: &Processes, w: &Watch, events: &[Event]) {
        let ack = log.append(events, &Provenance::cli()).unwrap();
        let stored: Vec<StoredEvent> = log
            .range(
                ack.first_seq..=ack.last_seq(),
                crate::log::Direction::Forward,
            )
            .map(|e| e.unwrap())
            .collect();
        let stored: Vec<&StoredEvent> = stored.iter().collect();
        p.observe(&stored);
        w.observe(&stored);
        w.flush();
    }

    fn findings(log: &Log) -> Vec<serde_json::Value> {
        log.iter()
            .map(|e| e.unwrap())
            .filter(|e| e.event.category.as_deref() == Some(CATEGORY))
            .map(|e| serde_json::from_str(e.event.metadata.as_deref().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn slow_and_stuck_runs_are_raised_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let log = Arc::new(Log::open(dir.path(), LogConfig::default(), clock.clone()).unwrap());
        let p = Arc::new(Processes::new(&ProcessesConfig::default()));
        let w = Watch::new(
            log.clone(),
            clock.clone(),
            Thresholds::default(),
            Limits::default(),
            Some(p.clone()),
        )
        .unwrap();
        // Six runs of 10 s, then one of 200 s (20 × the p95: high).
        for i in 0..6 {
            let t = T0 + i * 3600 * SEC;
            feed(
                &log,
                &p,
                &w,
                &[run_event(&format!("r{i}"), Phase::Started, t)],
            );
            feed(
                &log,
                &p,
                &w,
                &[run_event(&format!("r{i}"), Phase::Finished, t + 10 * SEC)],
            );
        }
        assert!(findings(&log).is_empty());
        let t = T0 + 7 * 3600 * SEC;
        feed(&log, &p, &w, &[run_event("slow", Phase::Started, t)]);
        feed(
            &log,
            &p,
            &w,
            &[run_event("slow", Phase::Finished, t + 200 * SEC)],
        );
        let f = findings(&log);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(
            (f[0]["kind"].as_str(), f[0]["severity"].as_str()),
            (Some("slow_run"), Some("high"))
        );
        assert_eq!(f[0]["evidence"]["run"], "slow");
        assert_eq!(f[0]["subject"]["id"], "export");

        // A run that never finishes: stuck past max(3 × p95, 5 min).
        let t = T0 + 8 * 3600 * SEC;
        feed(&log, &p, &w, &[run_event("hung", Phase::Started, t)]);
        clock.set(t + 60 * SEC);
        w.tick(t + 60 * SEC);
        w.flush();
        assert_eq!(findings(&log).len(), 1, "not stuck yet");
        clock.set(t + 600 * SEC);
        w.tick(t + 600 * SEC);
        w.flush();
        w.tick(t + 660 * SEC);
        w.flush();
        let f = findings(&log);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(
            (f[1]["kind"].as_str(), f[1]["severity"].as_str()),
            (Some("stuck_run"), Some("medium"))
        );
        assert_eq!(f[1]["evidence"]["run"], "hung");
        assert_eq!(
            w.stats.raised[KINDS.iter().position(|k| *k == "stuck_run").unwrap()]
                .load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn findings_handed_over_are_appended_by_close_and_later_ones_counted_failed() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let log = Arc::new(Log::open(dir.path(), LogConfig::default(), clock.clone()).unwrap());
        let w = Watch::new(
            log.clone(),
            clock.clone(),
            Thresholds::default(),
            Limits::default(),
            None,
        )
        .unwrap();
        // Six failed logins of one user: a burst (user and IP) in one batch.
        let failures: Vec<Event> = (0..6)
            .map(|i| Event {
                id: format!("f{i}"),
                action: "login_failed".into(),
                user_id: Some("eve".into()),
                ip: Some("203.0.113.9".into()),
                status: Some(crate::event::Status::Failure),
                timestamp: Some(T0 + i * SEC),
                ..Event::default()
            })
            .collect();
        let ack = log.append(&failures, &Provenance::cli()).unwrap();
        let stored: Vec<StoredEvent> = log
            .range(
                ack.first_seq..=ack.last_seq(),
                crate::log::Direction::Forward,
            )
            .map(|e| e.unwrap())
            .collect();
        // Stored after the watch started: live, so raised and handed over.
        w.observe(&stored.iter().collect::<Vec<_>>());
        w.close();
        let kinds: Vec<String> = findings(&log)
            .iter()
            .map(|f| f["subject"]["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert_eq!(w.stats.failed.load(Ordering::Relaxed), 0);
        // Closed: a later finding is counted as failed, not lost silently.
        let late = Finding {
            kind: "privilege_change",
            level: Level::Medium,
            subject: Subject {
                kind: "user",
                id: "ann".into(),
            },
            tenant: None,
            since: T0,
            until: T0 + 1,
            evidence: serde_json::json!({}),
            summary: "s".into(),
            recommendation: "r".into(),
            query: String::new(),
        };
        w.append(vec![(T0, late)]);
        assert_eq!(w.stats.failed.load(Ordering::Relaxed), 1);
        w.close();
    }
}
