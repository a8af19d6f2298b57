//! Process runs and batch operations derived from their events.
//!
//! Owns the [`Tracker`]: a pure, bounded, in-memory table fed one
//! [`StoredEvent`] at a time in seq order ([`Tracker::observe`]) and read
//! with a `now` ([`Tracker::view`]). One tracker follows process runs (key:
//! tenant + `process_id`, name: `process_name`), another batch operations
//! (key: tenant + `batch_id`, name: the operation's `action`). Never touches
//! the log, the clock or HTTP: the feed gives it events, the server reads it.
//!
//! What a run is, from its events (ARCHITECTURE.md, "Processes and batch
//! operations"); "first"/"last" are by seq, times are event times
//! (`timestamp`, else `received_at`):
//! - name: a run's first `process_name`; a batch's `action` of its first
//!   event with a `phase` (else of its first event);
//! - start: the earliest `phase=started` time, else the earliest event time
//!   (a run whose `started` report was lost still has a start);
//! - finish: the last `phase=finished` report wins (a retried report is
//!   harmless): its time, its `status` as the outcome (`success` →
//!   `succeeded`, `failure` → `failed`, `partial`, `canceled`; no status or
//!   `pending` counts as `succeeded`), its `duration_ms` when the client
//!   measured one, else finish − start (never negative);
//! - counts: `items_total`, `items_processed`, `items_failed`, each the last
//!   value reported (cumulative, never deltas);
//! - errors: events with `status=failure` or severity `error`/`critical`;
//!   the last [`ERRORS_KEPT`] descriptions (else actions), each cut to
//!   [`ERROR_BYTES_MAX`] bytes.
//!
//! An event with both a `batch_id` and a `process_id` is an event of both
//! (events, errors), but its `phase` and counts are the batch's: a run's own
//! phases and counts are reported without a `batch_id`.
//!
//! Status, computed at read time (no timer): finished → its outcome; else
//! `stuck` once it has been running longer than `stuck_max`, or longer than
//! max(`stuck_factor` × p95 duration of its process, `stuck_min`) when its
//! process (same tenant and name) has a tracked finished run; else `running`.
//!
//! Figures per name (tenant + name) are computed at read time from the
//! tracked runs of that name, so they are exact over what is tracked and
//! cannot drift from it: executions, runs by status, success rate
//! (succeeded / finished), p50/p95 duration of the finished runs (nearest
//! rank, exact: no histogram error), runs per day over the tracked window
//! (from the name's first start to `now`, at least one hour), the lower
//! median gap between consecutive starts, and the last run (latest start). A read costs
//! O(n log n) in the runs it looks at, n ≤ `tracked_max`.
//!
//! Bounds (invariants, tested):
//! 1. At most `tracked_max` runs are held. Beyond it, the oldest (by last
//!    `received_at`) finished runs go first, then the oldest running ones,
//!    1/64 of the bound at a time (so eviction costs O(1) amortized per new
//!    run); each is counted in [`Tracker::evicted`]. An evicted run that
//!    reports again starts over as a new run from that report.
//! 2. [`Tracker::expire`] drops runs whose last event was received before
//!    `now − horizon` (counted in [`Tracker::expired`]): the tracker holds
//!    what a restart rebuilds, the history of the horizon.
//! 3. A run holds at most [`ERRORS_KEPT`] × [`ERROR_BYTES_MAX`] bytes of
//!    error text; its other strings are bounded by the event limits.

use crate::event::{Phase, Severity, Status as EventStatus, StoredEvent};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};

/// Error descriptions kept per run (the most recent).
pub const ERRORS_KEPT: usize = 3;
/// Bytes kept of one error description (cut on a character boundary).
pub const ERROR_BYTES_MAX: usize = 200;
/// The shortest window runs per day are computed over (µs): one hour.
const FREQUENCY_WINDOW_MIN_MICROS: i64 = 3_600_000_000;

/// What a tracker follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Process runs: key `process_id`, name `process_name`.
    Process,
    /// Batch operations: key `batch_id`, name the operation's `action`.
    Batch,
}

/// A run's status at read time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Not finished, within its stuck threshold.
    Running,
    /// Not finished, past its stuck threshold.
    Stuck,
    /// Finished with `status=success` (or no outcome).
    Succeeded,
    /// Finished with `status=failure`.
    Failed,
    /// Finished with `status=partial`.
    Partial,
    /// Finished with `status=canceled`.
    Canceled,
}

impl RunStatus {
    /// Every status, in the order of the answers' `runs_by_status`.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Running,
        RunStatus::Stuck,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Partial,
        RunStatus::Canceled,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Stuck => "stuck",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Partial => "partial",
            RunStatus::Canceled => "canceled",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The outcome a finished report's `status` stands for.
    fn outcome(s: Option<EventStatus>) -> RunStatus {
        match s {
            Some(EventStatus::Failure) => RunStatus::Failed,
            Some(EventStatus::Partial) => RunStatus::Partial,
            Some(EventStatus::Canceled) => RunStatus::Canceled,
            Some(EventStatus::Success | EventStatus::Pending) | None => RunStatus::Succeeded,
        }
    }
}

/// When a running run becomes `stuck` (see the module doc). Durations in µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StuckRule {
    /// Times the p95 duration of its process.
    pub factor: f64,
    /// Never stuck before this (when judged against its process's p95).
    pub min_micros: i64,
    /// Always stuck after this.
    pub max_micros: i64,
}

impl StuckRule {
    /// Whether a run running for `elapsed` µs is stuck, its process's p95
    /// duration being `p95_ms` (none: no finished run tracked).
    pub fn is_stuck(&self, elapsed: i64, p95_ms: Option<i64>) -> bool {
        if elapsed > self.max_micros {
            return true;
        }
        match p95_ms {
            Some(p) => {
                let by_p95 = (p as f64 * 1000.0 * self.factor) as i64;
                elapsed > by_p95.max(self.min_micros)
            }
            None => false,
        }
    }
}

/// A tracker's bounds and thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerLimits {
    /// Runs held at most (invariant 1).
    pub tracked_max: usize,
    /// How far back (µs of `received_at`) runs are kept (invariant 2).
    pub horizon_micros: i64,
    /// When a run is stuck.
    pub stuck: StuckRule,
}

/// The outcome of a run's last `phase=finished` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finish {
    /// Its event time (µs).
    pub at: i64,
    /// Its outcome.
    pub outcome: RunStatus,
    /// Its `duration_ms`, if the client measured one.
    pub duration_ms: Option<u64>,
}

/// One run (or batch operation) as its events tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The tenant of its events (part of the key: ids are per tenant).
    pub tenant: Option<String>,
    /// `process_id` or `batch_id`.
    pub id: String,
    /// Batches: the action of the first event with a phase.
    name_phase: Option<String>,
    /// The name from the first event carrying one.
    name_first: Option<String>,
    /// Batches: the run they belong to (the first `process_id` seen).
    pub process_id: Option<String>,
    /// Earliest and latest event times (µs).
    pub first_at: i64,
    pub last_at: i64,
    /// Earliest `phase=started` time (µs).
    pub started_at: Option<i64>,
    /// The last finished report.
    pub finished: Option<Finish>,
    /// Last reported counts.
    pub items_total: Option<u64>,
    pub items_processed: Option<u64>,
    pub items_failed: Option<u64>,
    /// Events observed (duplicates included: they were stored).
    pub events: u64,
    /// Error events observed.
    pub errors: u64,
    /// The last error descriptions, oldest first (bounded).
    pub last_errors: VecDeque<String>,
    /// Latest `received_at` (µs): eviction order and horizon expiry.
    pub received_last: i64,
    /// First and last seq observed (the run's events in the log).
    pub first_seq: u64,
    pub last_seq: u64,
}

impl Run {
    /// Its name (see the module doc).
    pub fn name(&self) -> Option<&str> {
        self.name_phase.as_deref().or(self.name_first.as_deref())
    }

    /// When it began: the `started` report, else its earliest event.
    pub fn start(&self) -> i64 {
        self.started_at.unwrap_or(self.first_at)
    }

    /// How long it took (ms), once finished.
    pub fn duration_ms(&self) -> Option<i64> {
        let f = self.finished.as_ref()?;
        Some(match f.duration_ms {
            Some(d) => i64::try_from(d).unwrap_or(i64::MAX),
            None => (f.at - self.start()).max(0) / 1000,
        })
    }

    /// The heap bytes its strings hold (its inline bytes are the table's).
    fn heap_bytes(&self) -> usize {
        let s = |o: &Option<String>| o.as_ref().map_or(0, String::capacity);
        // The key holds a second copy of the tenant and the id.
        2 * (s(&self.tenant) + self.id.capacity())
            + s(&self.name_phase)
            + s(&self.name_first)
            + s(&self.process_id)
            + self.last_errors.capacity() * std::mem::size_of::<String>()
            + self.last_errors.iter().map(String::capacity).sum::<usize>()
    }

    fn new(tenant: Option<String>, id: String, ev: &StoredEvent, at: i64) -> Run {
        Run {
            tenant,
            id,
            name_phase: None,
            name_first: None,
            process_id: None,
            first_at: at,
            last_at: at,
            started_at: None,
            finished: None,
            items_total: None,
            items_processed: None,
            items_failed: None,
            events: 0,
            errors: 0,
            last_errors: VecDeque::new(),
            received_last: ev.received_at,
            first_seq: ev.seq,
            last_seq: ev.seq,
        }
    }

    /// Applies one of its events. `name` is the event's name for this kind;
    /// `own` is false when its phase and counts are not this run's (see the
    /// module doc); `kind` says where the name comes from.
    fn apply(&mut self, kind: Kind, ev: &StoredEvent, at: i64, name: Option<&str>, own: bool) {
        let phase = if own { ev.event.phase } else { None };
        let e = &ev.event;
        self.first_at = self.first_at.min(at);
        self.last_at = self.last_at.max(at);
        self.received_last = self.received_last.max(ev.received_at);
        self.first_seq = self.first_seq.min(ev.seq);
        self.last_seq = self.last_seq.max(ev.seq);
        self.events += 1;
        if self.name_first.is_none() {
            self.name_first = name.map(str::to_owned);
        }
        if kind == Kind::Batch && self.name_phase.is_none() && phase.is_some() {
            self.name_phase = name.map(str::to_owned);
        }
        if self.process_id.is_none() {
            self.process_id.clone_from(&e.process_id);
        }
        match phase {
            Some(Phase::Started) => {
                self.started_at = Some(self.started_at.map_or(at, |s| s.min(at)));
            }
            Some(Phase::Finished) => {
                self.finished = Some(Finish {
                    at,
                    outcome: RunStatus::outcome(e.status),
                    duration_ms: e.duration_ms,
                });
            }
            Some(Phase::Progress) | None => {}
        }
        if own {
            self.items_total = e.items_total.or(self.items_total);
            self.items_processed = e.items_processed.or(self.items_processed);
            self.items_failed = e.items_failed.or(self.items_failed);
        }
        let error = e.status == Some(EventStatus::Failure)
            || e.severity.is_some_and(|s| s >= Severity::Error);
        if error {
            self.errors += 1;
            let text = e.description.as_deref().unwrap_or(&e.action);
            if self.last_errors.len() == ERRORS_KEPT {
                self.last_errors.pop_front();
            }
            self.last_errors
                .push_back(cut(text, ERROR_BYTES_MAX).to_owned());
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A run's key: tenant and id.
type Key = (Option<String>, String);

/// The runs (or batch operations) of the tracked window.
#[derive(Debug)]
pub struct Tracker {
    kind: Kind,
    limits: TrackerLimits,
    runs: HashMap<Key, Run>,
    /// Runs dropped by the `tracked_max` bound.
    evicted: u64,
    /// Runs dropped by the horizon.
    expired: u64,
}

impl Tracker {
    /// An empty tracker of `kind`.
    pub fn new(kind: Kind, limits: TrackerLimits) -> Tracker {
        Tracker {
            kind,
            limits,
            runs: HashMap::new(),
            evicted: 0,
            expired: 0,
        }
    }

    /// Its bounds and thresholds in force.
    pub fn limits(&self) -> TrackerLimits {
        self.limits
    }

    /// Puts a new stuck rule in force (a reload): statuses are judged at
    /// read time, so every run is judged by it from now on.
    pub fn set_stuck(&mut self, stuck: StuckRule) {
        self.limits.stuck = stuck;
    }

    /// Whether `ev` concerns this tracker (has its id field).
    pub fn wants(kind: Kind, ev: &StoredEvent) -> bool {
        match kind {
            Kind::Process => ev.event.process_id.is_some(),
            Kind::Batch => ev.event.batch_id.is_some(),
        }
    }

    /// Takes one event (in seq order); events without this kind's id are
    /// ignored.
    pub fn observe(&mut self, ev: &StoredEvent) {
        let e = &ev.event;
        let (id, name, own) = match self.kind {
            Kind::Process => (
                &e.process_id,
                e.process_name.as_deref(),
                e.batch_id.is_none(),
            ),
            Kind::Batch => (&e.batch_id, Some(e.action.as_str()), true),
        };
        let Some(id) = id else { return };
        let at = e.timestamp.unwrap_or(ev.received_at);
        let key = (e.tenant.clone(), id.clone());
        let fresh = !self.runs.contains_key(&key);
        let run = self
            .runs
            .entry(key)
            .or_insert_with(|| Run::new(e.tenant.clone(), id.clone(), ev, at));
        run.apply(self.kind, ev, at, name, own);
        if fresh && self.runs.len() > self.limits.tracked_max {
            self.evict();
        }
    }

    /// Drops the oldest runs down to `tracked_max − tracked_max/64`
    /// (finished ones first).
    fn evict(&mut self) {
        let max = self.limits.tracked_max;
        let keep = max - max / 64;
        let excess = self.runs.len().saturating_sub(keep);
        if excess == 0 {
            return;
        }
        // The `excess` oldest by a linear selection, not a sort, and only
        // their keys cloned: this runs on the feed's thread, once every
        // `tracked_max / 64` new runs.
        let mut order: Vec<(bool, i64, u64, &Key)> = self
            .runs
            .iter()
            .map(|(k, r)| (r.finished.is_none(), r.received_last, r.last_seq, k))
            .collect();
        if excess < order.len() {
            order.select_nth_unstable(excess - 1);
        }
        let gone: Vec<Key> = order[..excess].iter().map(|o| o.3.clone()).collect();
        for k in gone {
            self.runs.remove(&k);
            self.evicted += 1;
        }
    }

    /// Drops the runs whose last event was received before `now − horizon`.
    pub fn expire(&mut self, now: i64) {
        let cutoff = now.saturating_sub(self.limits.horizon_micros);
        let before = self.runs.len();
        self.runs.retain(|_, r| r.received_last >= cutoff);
        self.expired += (before - self.runs.len()) as u64;
    }

    /// Runs held.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Runs dropped by the bound so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Runs dropped by the horizon so far.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// An estimate of the bytes held by the runs (the `/metrics` gauge):
    /// the table's slots (one key and run inline, one control byte each)
    /// and the strings' heap bytes; the allocator's own overhead is not
    /// counted.
    pub fn approx_bytes(&self) -> usize {
        self.runs.capacity() * (std::mem::size_of::<(Key, Run)>() + 1)
            + self.runs.values().map(Run::heap_bytes).sum::<usize>()
    }

    /// The tracker as seen at `now`: statuses and figures.
    pub fn view(&self, now: i64) -> View<'_> {
        let mut durations: HashMap<(Option<&str>, Option<&str>), Vec<i64>> = HashMap::new();
        for r in self.runs.values() {
            if let Some(d) = r.duration_ms() {
                durations
                    .entry((r.tenant.as_deref(), r.name()))
                    .or_default()
                    .push(d);
            }
        }
        let p95 = durations
            .into_iter()
            .map(|(k, mut d)| {
                d.sort_unstable();
                (k, nearest_rank(&d, 95))
            })
            .collect();
        View {
            tracker: self,
            now,
            p95,
        }
    }
}

/// The `p`th percentile of sorted `d` by nearest rank (`d` not empty).
pub fn nearest_rank(d: &[i64], p: usize) -> i64 {
    let rank = (p * d.len()).div_ceil(100).max(1);
    d[rank - 1]
}

/// A tracker read at one instant.
pub struct View<'a> {
    tracker: &'a Tracker,
    now: i64,
    /// p95 duration (ms) of the finished runs, by tenant and name.
    p95: HashMap<(Option<&'a str>, Option<&'a str>), i64>,
}

/// The figures of one name (see the module doc). Times in µs, durations in ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NameFigures {
    pub tenant: Option<String>,
    pub name: Option<String>,
    pub executions: u64,
    /// Runs by status, in [`RunStatus::ALL`] order.
    pub runs_by_status: Vec<(RunStatus, u64)>,
    /// Succeeded / finished; `None` before any finished run.
    pub success_rate: Option<f64>,
    pub duration_p50_ms: Option<i64>,
    pub duration_p95_ms: Option<i64>,
    pub runs_per_day: f64,
    pub median_start_gap_ms: Option<i64>,
    /// The run with the latest start: id, status, start.
    pub last_run: (String, RunStatus, i64),
}

impl<'a> View<'a> {
    /// The instant of the view.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Every run, in no particular order.
    pub fn runs(&self) -> impl Iterator<Item = &'a Run> + 'a {
        self.tracker.runs.values()
    }

    /// The runs with this id, in every tenant.
    pub fn by_id(&self, id: &str) -> Vec<&'a Run> {
        self.runs().filter(|r| r.id == id).collect()
    }

    /// The status of `r` now.
    pub fn status(&self, r: &Run) -> RunStatus {
        if let Some(f) = &r.finished {
            return f.outcome;
        }
        let p95 = self.p95.get(&(r.tenant.as_deref(), r.name())).copied();
        let elapsed = self.now - r.start();
        if self.tracker.limits.stuck.is_stuck(elapsed, p95) {
            RunStatus::Stuck
        } else {
            RunStatus::Running
        }
    }

    /// The figures of every name among `runs`, by tenant then name.
    pub fn figures(&self, runs: &[&Run]) -> Vec<NameFigures> {
        let mut by: HashMap<(Option<&str>, Option<&str>), Vec<&Run>> = HashMap::new();
        for r in runs {
            by.entry((r.tenant.as_deref(), r.name()))
                .or_default()
                .push(r);
        }
        let mut out: Vec<NameFigures> = by
            .into_iter()
            .map(|((t, n), rs)| self.figures_of(t, n, &rs))
            .collect();
        out.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
        out
    }

    fn figures_of(&self, tenant: Option<&str>, name: Option<&str>, rs: &[&Run]) -> NameFigures {
        let statuses: Vec<RunStatus> = rs.iter().map(|r| self.status(r)).collect();
        let count = |s: RunStatus| statuses.iter().filter(|x| **x == s).count() as u64;
        let mut durations: Vec<i64> = rs.iter().filter_map(|r| r.duration_ms()).collect();
        durations.sort_unstable();
        let finished = durations.len() as u64;
        let mut starts: Vec<i64> = rs.iter().map(|r| r.start()).collect();
        starts.sort_unstable();
        let mut gaps: Vec<i64> = starts.windows(2).map(|w| (w[1] - w[0]) / 1000).collect();
        gaps.sort_unstable();
        let window = (self.now - starts[0]).max(FREQUENCY_WINDOW_MIN_MICROS);
        let last = rs
            .iter()
            .zip(&statuses)
            .max_by_key(|(r, _)| (r.start(), r.last_seq))
            .map(|(r, s)| (r.id.clone(), *s, r.start()))
            .expect("a name has a run");
        NameFigures {
            tenant: tenant.map(str::to_owned),
            name: name.map(str::to_owned),
            executions: rs.len() as u64,
            runs_by_status: RunStatus::ALL.iter().map(|s| (*s, count(*s))).collect(),
            success_rate: (finished > 0)
                .then(|| count(RunStatus::Succeeded) as f64 / finished as f64),
            duration_p50_ms: (!durations.is_empty()).then(|| nearest_rank(&durations, 50)),
            duration_p95_ms: (!durations.is_empty()).then(|| nearest_rank(&durations, 95)),
            runs_per_day: rs.len() as f64 * 86_400_000_000.0 / window as f64,
            median_start_gap_ms: (!gaps.is_empty()).then(|| gaps[(gaps.len() - 1) / 2]),
            last_run: last,
        }
    }
}

#[cfg(test)]
mod tests;
