//! Alerts: rules over the log (`[[alerts]]`) delivered to webhooks
//! (`[[webhooks]]`), at least once, in order, from a task that follows the
//! log and never stands in ingest's way.
//!
//! Owns `DATA_DIR/alert-position.json` ([`position`]) and the alert task.
//! Never writes the log or the indexes: it reads events by seq, and the
//! text index for rules with `q`.
//!
//! Module map:
//! - [`rules`]: the configuration sections and their checked form.
//! - [`eval`]: threshold windows and finding matches → notifications.
//! - [`deliver`]: body, HMAC-SHA256 signature, HTTP POST, backoff.
//! - [`position`]: the durable position.
//!
//! How it runs: one tokio task ([`Runner`]) reads the log in seq order from
//! the first event it has not evaluated, at most [`CHUNK_EVENTS`] events
//! (and [`QUEUE_NOTIFICATIONS_MAX`] notifications) a step on the blocking
//! pool, and delivers each notification before it evaluates further.
//! Ingest never waits for it: it learns of new events from
//! [`crate::log::Log::subscribe`] and falls behind when a receiver is slow
//! or down (the backlog: the log's last seq minus the position).
//!
//! Invariants:
//! 1. **At least once, in order.** The position is the seq up to which
//!    every notification was delivered (a 2xx answer). It is written
//!    durably after every delivery, and at most every
//!    [`POSITION_WRITE_INTERVAL`] otherwise. A failed attempt is retried
//!    with a doubling pause (0.5 s up to the webhook's `backoff_max_secs`)
//!    and never given up: the notifications behind it wait (one failing
//!    receiver holds back every rule's notifications, so that none is ever
//!    delivered out of order or lost). Only a reload that removes the
//!    webhook drops its pending notification (counted, logged).
//! 2. **Bounded duplicates.** After a restart the notifications of events
//!    after the position are delivered again: at most the ones in flight at
//!    the crash (the notifications of one event, one per rule), since the
//!    position is written after each delivery. An orderly stop lets the
//!    attempt in flight finish (up to [`STOP_ATTEMPT_WAIT`]) and records it. Every notification has a
//!    stable id (`X-Stele-Delivery`, `<rule>:<seq>`) receivers can dedupe on.
//! 3. **No alert on history.** With no position file (first start with
//!    rules, or rules added by a reload while none were in force) the
//!    position is the log's end: only events stored from then on fire. With
//!    no rule at start the file is removed, so rules added later never
//!    replay what came before them.
//! 4. **Windows survive a restart.** Threshold windows are tumbling and
//!    epoch-aligned over `received_at` (see [`eval`]), so a window's state
//!    is a function of its events: on start, the events of the windows
//!    holding the position (at most [`REPLAY_EVENTS_MAX`], at most one day)
//!    are evaluated again without delivering, then evaluation continues
//!    after the position.
//! 5. **Reloads.** SIGHUP puts new rules and webhooks in force between two
//!    steps; a rule whose configuration did not change keeps its window, a
//!    new or changed one starts empty (and counts events from where the task
//!    is). A reload that cannot be put in force (an invalid `q`) keeps the
//!    rules in force.
//! 6. **Readiness.** A failing receiver is reported (`/readyz` `alerts`,
//!    `degraded`; `stele_alert_delivery_failing`) but never makes Stele
//!    unready: an unreachable chat service must not take the audit log out
//!    of a load balancer.

pub mod deliver;
pub mod eval;
pub mod position;
pub mod rules;

pub use rules::{compile, AlertConfig, AlertSet, WebhookConfig};

use crate::index::Indexes;
use crate::log::{Direction, Log};
use crate::query::Order;
use crate::sync::Recover;
use eval::{Evaluator, Notification, TextHits};
use position::{PositionError, PositionFile};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Events evaluated per step.
pub const CHUNK_EVENTS: u64 = 1000;
/// Notifications produced per step at most (a step stops early at this).
pub const QUEUE_NOTIFICATIONS_MAX: usize = 256;
/// Events replayed at start to rebuild the windows, at most (older ones in
/// the windows are then not counted; logged).
pub const REPLAY_EVENTS_MAX: u64 = 1_000_000;
/// How often the position is written when nothing was delivered.
pub const POSITION_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// How often rules with `q` look for newly searchable events.
const TEXT_POLL: Duration = Duration::from_millis(250);
/// The pause after a failed read of the log or the index.
const READ_RETRY: Duration = Duration::from_secs(1);
/// How long closing waits for the task.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How long a stop waits for the delivery attempt in flight (less than
/// [`STOP_WAIT`]).
const STOP_ATTEMPT_WAIT: Duration = Duration::from_secs(2);

/// What `/metrics` and `/readyz` show of the alerts.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Notifications produced (replays at start not counted).
    pub fired: AtomicU64,
    /// Notifications a webhook took (2xx).
    pub delivered: AtomicU64,
    /// Attempts that failed (transport error or non-2xx).
    pub failed: AtomicU64,
    /// Notifications dropped because a reload removed their webhook.
    pub dropped: AtomicU64,
    /// The position: every notification up to this seq was delivered.
    pub position: AtomicU64,
    /// Rules in force.
    pub rules: AtomicU64,
    /// Whether the notification being delivered has failed and waits for
    /// its next attempt.
    pub failing: AtomicBool,
    /// The last failure, for `/readyz`.
    pub last_error: Mutex<Option<String>>,
}

impl AlertStats {
    /// Events stored after the position (0 without rules).
    pub fn backlog(&self, log: &Log) -> u64 {
        if self.rules.load(Relaxed) == 0 {
            return 0;
        }
        log.last_seq().saturating_sub(self.position.load(Relaxed))
    }
}

/// The server's handle: reloads and statistics.
pub struct Alerts {
    /// Shared with the task.
    pub stats: Arc<AlertStats>,
    rules: watch::Sender<AlertSet>,
    indexes: Arc<Indexes>,
}

/// The task, owned by whoever closes the server.
pub struct Runner {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Alerts {
    /// Starts the alert task (within a tokio runtime) with `set`.
    ///
    /// # Errors
    /// A rule's `q` does not parse.
    pub fn start(
        set: AlertSet,
        log: Arc<Log>,
        indexes: Arc<Indexes>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> anyhow::Result<(Alerts, Runner)> {
        check_text(&set, &indexes)?;
        let stats = Arc::new(AlertStats::default());
        // The end of the log now, before the server takes requests: with no
        // saved position alerts start here, so an event stored right after
        // the start is never mistaken for history (the task starts later).
        let start_last = log.last_seq();
        let file = PositionFile::new(log.data_dir());
        // Read once, here (a few bytes, before the server takes requests):
        // the task resumes from it, and until it has, `/readyz` and `/metrics`
        // show its backlog rather than none (a restart with a backlog reported
        // 0 for the moment before the task ran).
        let saved = file.read();
        if !set.rules.is_empty() {
            stats.rules.store(set.rules.len() as u64, Relaxed);
            let at = saved.as_ref().ok().copied().flatten();
            let position = resume_position(at, start_last, log.first_seq());
            stats.position.store(position, Relaxed);
        }
        let (rules_tx, rules) = watch::channel(set);
        let (stop, stopping) = watch::channel(false);
        let task = Task {
            start_last,
            saved: Some(saved),
            file,
            log,
            indexes: indexes.clone(),
            clock,
            stats: stats.clone(),
            rules,
            stopping,
            eval: Evaluator::default(),
            next: 0,
            written: None,
        };
        let task = tokio::spawn(task.run());
        let alerts = Alerts {
            stats,
            rules: rules_tx,
            indexes,
        };
        Ok((alerts, Runner { stop, task }))
    }

    /// Puts `set` in force at the task's next step (invariant 5).
    ///
    /// # Errors
    /// A rule's `q` does not parse: the rules in force stay.
    pub fn reload(&self, set: AlertSet) -> anyhow::Result<()> {
        check_text(&set, &self.indexes)?;
        self.rules.send_replace(set);
        Ok(())
    }
}

impl Runner {
    /// Stops the task and waits for it to write its position. A delivery
    /// attempt in flight gets [`STOP_ATTEMPT_WAIT`] to finish; one that
    /// takes longer is abandoned and delivered again after a restart.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
            tracing::warn!("The alert task did not stop within {STOP_WAIT:?}; abandoning it.");
            task.abort();
        }
    }
}

/// Refuses a set whose full-text queries the index cannot parse.
fn check_text(set: &AlertSet, indexes: &Indexes) -> anyhow::Result<()> {
    for r in &set.rules {
        if let rules::RuleKind::Threshold { filter, .. } = &r.kind {
            if filter.text.is_some() {
                indexes
                    .text
                    .search(filter, Order::Asc, 1, Some(u64::MAX))
                    .map_err(|e| anyhow::anyhow!("alert {:?}: its filter's q: {e}", r.name))?;
            }
        }
    }
    Ok(())
}

/// Where alerts resume: the saved position, at most the log's end `last`
/// (a position past it starts at the end), at least just before `first_seq`
/// (retention dropped what came before); the end without one.
fn resume_position(saved: Option<u64>, last: u64, first_seq: u64) -> u64 {
    saved
        .map_or(last, |p| p.min(last))
        .max(first_seq.saturating_sub(1))
}

/// The daemon stops: whatever was in flight is delivered after a restart.
struct Stopped;

/// The alert task's state.
struct Task {
    /// The log's last seq when alerts started (see `Alerts::start`).
    start_last: u64,
    /// The position file as `Alerts::start` read it, until `resume` takes it.
    saved: Option<Result<Option<u64>, PositionError>>,
    log: Arc<Log>,
    indexes: Arc<Indexes>,
    clock: Arc<dyn crate::clock::Clock>,
    file: PositionFile,
    stats: Arc<AlertStats>,
    /// The rules in force (SIGHUP sends new ones).
    rules: watch::Receiver<AlertSet>,
    stopping: watch::Receiver<bool>,
    /// Owns the windows; moved to the blocking pool for each step.
    eval: Evaluator,
    /// The first seq not evaluated yet.
    next: u64,
    /// The position last written and when.
    written: Option<(u64, Instant)>,
}

impl Task {
    async fn run(mut self) {
        let set = self.rules.borrow_and_update().clone();
        if let Err(e) = self.resume(set).await {
            tracing::error!("Alerts are off until a restart: {e}.");
            self.stats.failing.store(true, Relaxed);
            *self.stats.last_error.exclusive() =
                Some(format!("alerts are off until a restart: {e}"));
            return;
        }
        let mut durable = self.log.subscribe();
        loop {
            if *self.stopping.borrow() {
                break;
            }
            self.take_rules();
            let busy = match self.step().await {
                Ok(busy) => busy,
                Err(Stopped) => break,
            };
            self.write_position(false).await;
            if busy {
                continue;
            }
            let poll = if self.eval.needs_text() {
                TEXT_POLL
            } else {
                POSITION_WRITE_INTERVAL
            };
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(poll) => {}
                _ = rules_changed(&self.rules) => {}
                _ = self.stopping.changed() => {}
            }
        }
        self.write_position(true).await;
    }

    /// Puts new rules in force if a reload sent some.
    fn take_rules(&mut self) {
        if self.rules.has_changed().unwrap_or(false) {
            let set = self.rules.borrow_and_update().clone();
            self.reload(set);
        }
    }

    /// The seq every notification was delivered up to.
    fn position(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    fn set_position(&mut self, seq: u64) {
        self.stats.position.store(seq, Relaxed);
    }

    /// Writes the position when it moved and (unless `now`) the last write
    /// is [`POSITION_WRITE_INTERVAL`] old. Never without rules (invariant 3).
    /// The write (two fsyncs) runs on the blocking pool.
    async fn write_position(&mut self, now: bool) {
        if self.eval.set().rules.is_empty() {
            if self.written.take().is_some() {
                // The last rule went (a reload): nothing to resume.
                let file = self.file.clone();
                match tokio::task::spawn_blocking(move || file.remove()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("Could not remove the alert position: {e}."),
                    Err(e) => tracing::error!("Could not remove the alert position: {e}."),
                }
            }
            return;
        }
        let seq = self.stats.position.load(Relaxed);
        let due = match self.written {
            None => true,
            Some((w, at)) => w != seq && (now || at.elapsed() >= POSITION_WRITE_INTERVAL),
        };
        if !due {
            return;
        }
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || file.write(seq)).await;
        match written {
            Ok(Ok(())) => self.written = Some((seq, Instant::now())),
            // Not fatal: the older position only means more redeliveries.
            Ok(Err(e)) => tracing::error!("Could not write the alert position {seq}: {e}."),
            Err(e) => tracing::error!("Could not write the alert position {seq}: {e}."),
        }
    }

    /// Where to start (invariants 3 and 4), replaying the windows.
    async fn resume(&mut self, set: AlertSet) -> anyhow::Result<()> {
        self.stats.rules.store(set.rules.len() as u64, Relaxed);
        self.eval = Evaluator::new(set);
        let last = self.start_last;
        let saved = self.saved.take().unwrap_or(Ok(None));
        if self.eval.set().rules.is_empty() {
            let file = self.file.clone();
            tokio::task::spawn_blocking(move || file.remove()).await??;
            self.next = last + 1;
            self.set_position(last);
            return Ok(());
        }
        let saved = saved?;
        match saved {
            None => tracing::info!("Alerts start at the end of the log (seq {last}): no alert on what is already stored."),
            Some(p) if p > last => tracing::warn!(
                "The alert position {p} is past the log's end {last}; starting at the end."
            ),
            Some(_) => {}
        }
        let pos = resume_position(saved, last, self.log.first_seq());
        self.next = pos + 1;
        self.set_position(pos);
        self.write_position(true).await;
        if saved.is_some() {
            self.replay().await?;
        }
        Ok(())
    }

    /// Rebuilds the windows holding the position from the log.
    async fn replay(&mut self) -> anyhow::Result<()> {
        let pos = self.position();
        let (log, indexes) = (self.log.clone(), self.indexes.clone());
        let mut eval = std::mem::take(&mut self.eval);
        let res = tokio::task::spawn_blocking(move || {
            let from = replay_start(&log, &eval, pos)?;
            let mut at = from;
            while at <= pos {
                let to = pos.min(at + CHUNK_EVENTS - 1);
                let (_, done) = evaluate(&log, &indexes, &mut eval, at, to, None)?;
                at = done + 1;
            }
            anyhow::Ok((eval, pos + 1 - from))
        })
        .await??;
        self.eval = res.0;
        if res.1 > 0 {
            tracing::info!(
                "Alerts resume after seq {pos}; {} events replayed to rebuild the windows.",
                res.1
            );
        }
        Ok(())
    }

    fn reload(&mut self, set: AlertSet) {
        let before = self.eval.set().rules.len();
        let after = set.rules.len();
        self.stats.rules.store(after as u64, Relaxed);
        if before == 0 && after > 0 {
            // New rules see only what is stored from now on (invariant 3).
            let last = self.log.last_seq();
            self.next = last + 1;
            self.set_position(last);
            self.written = None;
        }
        // Without rules, the next `write_position` removes the file.
        self.eval.reload(set);
        tracing::info!("Alerts reloaded: {after} rules in force.");
    }

    /// Evaluates the next stretch and delivers what fired; `Ok(true)` when
    /// it did something.
    async fn step(&mut self) -> Result<bool, Stopped> {
        let last = self.log.last_seq();
        if self.eval.set().rules.is_empty() {
            self.next = last + 1;
            self.set_position(last);
            return Ok(false);
        }
        let frontier = if self.eval.needs_text() {
            last.min(self.indexes.indexed_seq())
        } else {
            last
        };
        self.next = self.next.max(self.log.first_seq());
        if self.next > frontier {
            return Ok(false);
        }
        let (from, to) = (self.next, frontier.min(self.next + CHUNK_EVENTS - 1));
        let (log, indexes) = (self.log.clone(), self.indexes.clone());
        let mut eval = std::mem::take(&mut self.eval);
        let stats = self.stats.clone();
        let read = tokio::task::spawn_blocking(move || {
            let r = evaluate(
                &log,
                &indexes,
                &mut eval,
                from,
                to,
                Some(QUEUE_NOTIFICATIONS_MAX),
            );
            (eval, r)
        })
        .await;
        let (eval, result) = match read {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("An alert step failed: {e}; alerts are off until a restart.");
                return Err(Stopped);
            }
        };
        self.eval = eval;
        let (notes, done) = match result {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("Alerts could not read seqs {from} to {to}: {e}; retrying.");
                self.sleep(READ_RETRY).await;
                return Ok(false);
            }
        };
        stats.fired.fetch_add(notes.len() as u64, Relaxed);
        for (i, n) in notes.iter().enumerate() {
            self.deliver(n).await?;
            // Everything before the next notification's event is delivered.
            let upto = notes.get(i + 1).map_or(done, |m| m.seq - 1);
            self.set_position(upto);
            self.write_position(true).await;
        }
        self.next = done + 1;
        self.set_position(done);
        Ok(true)
    }

    /// Sleeps `d`, or less when stopping.
    async fn sleep(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stopping.changed() => {}
        }
    }

    /// Delivers `n`, retrying until its webhook takes it (invariant 1).
    async fn deliver(&mut self, n: &Notification) -> Result<(), Stopped> {
        let mut failures = 0u32;
        loop {
            if *self.stopping.borrow() {
                return Err(Stopped);
            }
            self.take_rules();
            let Some(hook) = self
                .eval
                .set()
                .webhooks
                .iter()
                .find(|w| w.name == n.webhook)
                .cloned()
            else {
                tracing::warn!(
                    "Dropped alert {}: its webhook {:?} was removed by a reload.",
                    n.id(),
                    n.webhook
                );
                self.stats.dropped.fetch_add(1, Relaxed);
                self.stats.failing.store(false, Relaxed);
                return Ok(());
            };
            let body = deliver::body(n, hook.format);
            let id = n.id();
            let ts = (self.clock.now_micros() / 1_000_000).max(0) as u64;
            let hook2 = hook.clone();
            let mut attempt =
                tokio::task::spawn_blocking(move || deliver::post(&hook2, &id, &body, ts));
            let joined = tokio::select! {
                r = &mut attempt => r,
                // Stopping: the attempt in flight gets a moment to finish, so
                // that an orderly stop records it instead of sending it again.
                _ = self.stopping.changed() => {
                    match tokio::time::timeout(STOP_ATTEMPT_WAIT, attempt).await {
                        Ok(r) => r,
                        Err(_) => return Err(Stopped),
                    }
                }
            };
            let result = joined.unwrap_or_else(|e| Err(format!("the attempt panicked: {e}")));
            match result {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Relaxed);
                    self.stats.failing.store(false, Relaxed);
                    if failures > 0 {
                        tracing::info!(
                            "Delivered alert {} to {} after {failures} failed attempts.",
                            n.id(),
                            hook.name
                        );
                    }
                    return Ok(());
                }
                Err(e) => {
                    failures += 1;
                    self.stats.failed.fetch_add(1, Relaxed);
                    self.stats.failing.store(true, Relaxed);
                    let pause = deliver::backoff(failures, hook.backoff_max);
                    tracing::warn!(
                        "Could not deliver alert {} to webhook {} ({}): {e}; attempt {failures}, \
                         next in {pause:?}; later alerts wait.",
                        n.id(),
                        hook.name,
                        hook.url
                    );
                    *self.stats.last_error.exclusive() =
                        Some(format!("webhook {}: {e}", hook.name));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = rules_changed(&self.rules) => {}
                        _ = self.stopping.changed() => {}
                    }
                }
            }
        }
    }
}

/// Resolves when a reload sent new rules, leaving them unseen for
/// [`Task::take_rules`] (`changed()` would mark them seen); never when the
/// sender is gone.
async fn rules_changed(rules: &watch::Receiver<AlertSet>) {
    let mut probe = rules.clone();
    if probe.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The first seq to replay so that the windows holding `pos` are whole
/// (bounded by [`REPLAY_EVENTS_MAX`]); `pos + 1` when none is needed.
fn replay_start(log: &Log, eval: &Evaluator, pos: u64) -> anyhow::Result<u64> {
    let first = log.first_seq();
    if pos < first {
        return Ok(pos + 1);
    }
    let Some(at_pos) = log.get(pos)? else {
        return Ok(pos + 1);
    };
    let Some(since) = eval.replay_since(at_pos.received_at) else {
        return Ok(pos + 1);
    };
    let mut start = pos + 1;
    for ev in log.range(first..=pos, Direction::Backward) {
        let ev = ev?;
        if ev.received_at < since {
            break;
        }
        if pos + 1 - ev.seq > REPLAY_EVENTS_MAX {
            tracing::warn!(
                "The alert windows hold more than {REPLAY_EVENTS_MAX} events before seq {pos}; \
                 only the last {REPLAY_EVENTS_MAX} are counted again."
            );
            break;
        }
        start = ev.seq;
    }
    Ok(start)
}

/// Evaluates seqs `from..=to` (stopping early once `max` notifications
/// fired); the notifications (none when `max` is `None`: a replay) and the
/// last seq evaluated.
fn evaluate(
    log: &Log,
    indexes: &Indexes,
    eval: &mut Evaluator,
    from: u64,
    to: u64,
    max: Option<usize>,
) -> anyhow::Result<(Vec<Notification>, u64)> {
    let mut hits = TextHits::new();
    for (i, r) in eval.set().rules.iter().enumerate() {
        if let rules::RuleKind::Threshold { filter, .. } = &r.kind {
            if filter.text.is_some() {
                let seqs = indexes.text.search(
                    filter,
                    Order::Asc,
                    (to - from + 1) as usize,
                    from.checked_sub(1),
                )?;
                hits.insert(i, seqs.into_iter().filter(|s| *s <= to).collect());
            }
        }
    }
    let mut out = Vec::new();
    for run in log.follow_range(from, to) {
        for ev in run?.iter() {
            let fired = eval.observe(ev, &hits);
            let Some(max) = max else { continue };
            out.extend(fired);
            if out.len() >= max {
                return Ok((out, ev.seq));
            }
        }
    }
    Ok((out, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Provenance;
    use std::sync::atomic::Ordering::Relaxed;

    type Setup = (
        Arc<Log>,
        Arc<Indexes>,
        AlertSet,
        Arc<dyn crate::clock::Clock>,
    );

    /// A log, its indexes and one rule for every finding (to a webhook that
    /// is never reached).
    fn setup(dir: &std::path::Path) -> Setup {
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let log =
            Arc::new(Log::open(dir, crate::log::LogConfig::default(), clock.clone()).unwrap());
        let indexes = Arc::new(
            Indexes::open(dir, log.clone(), crate::index::IndexConfig::default()).unwrap(),
        );
        let conf = dir.join("stele.toml");
        std::fs::write(
            &conf,
            "[[webhooks]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/\"\n\
             secret = \"0123456789abcdef0123\"\nbackoff_max_secs = 1\n\
             [[alerts]]\nname = \"all\"\nwebhook = \"ops\"\nfinding_severity = \"low\"\n",
        )
        .unwrap();
        let cfg = crate::config::Config::load(Some(&conf), |_| None).unwrap();
        (log, indexes, cfg.alert_set().unwrap(), clock)
    }

    /// Until the task has resumed, `/readyz` and `/metrics` show the saved
    /// position's backlog, not 0 (seen failing: a restart with 3 events
    /// waiting reported a backlog of 0 for the moment before the task ran,
    /// `alerts::outage::a_restart_mid_backlog_delivers_everything_after_it`).
    #[tokio::test(flavor = "current_thread")]
    async fn the_backlog_is_known_before_the_task_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, indexes, set, clock) = setup(tmp.path());
        let appender = log.clone();
        std::thread::spawn(move || {
            for _ in 0..5 {
                let ev = crate::event::parse_stele_event(
                    &serde_json::json!({"action": "login", "actor": "stele"}),
                    crate::event::new_event_id,
                )
                .unwrap();
                appender.append(&[ev], &Provenance::stele()).unwrap();
            }
        })
        .join()
        .unwrap();
        PositionFile::new(tmp.path()).write(2).unwrap();
        // Nothing awaited: the task spawned on this runtime has not run.
        let (alerts, _runner) = Alerts::start(set, log.clone(), indexes, clock).unwrap();
        assert_eq!(alerts.stats.rules.load(Relaxed), 1);
        assert_eq!(alerts.stats.backlog(&log), 3);
    }

    /// With no saved position, alerts start at the end of the log *as of
    /// `Alerts::start`*, not as of whenever the task first runs: a finding
    /// stored in between (the server already takes requests) is not history.
    #[tokio::test(flavor = "current_thread")]
    async fn an_event_stored_right_after_the_start_is_not_mistaken_for_history() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, indexes, set, clock) = setup(tmp.path());
        let (alerts, _runner) = Alerts::start(set, log.clone(), indexes, clock).unwrap();
        // The task has not run yet: nothing awaited since it was spawned on
        // this single-threaded runtime.
        let finding = serde_json::json!({
            "action": "new_ip", "category": "stele.finding", "actor": "stele",
            "metadata": {"kind": "new_ip", "severity": "high"},
        });
        let ev = crate::event::parse_stele_event(&finding, crate::event::new_event_id).unwrap();
        // Appended from another thread and joined without yielding, so the
        // alert task still has not run when the event is stored.
        let appender = log.clone();
        std::thread::spawn(move || appender.append(&[ev], &Provenance::stele()).unwrap())
            .join()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while alerts.stats.fired.load(Relaxed) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the finding never fired"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
