//! The process-run and batch-operation trackers of a running daemon, as one
//! [`Observer`] of the feed.
//!
//! Owns the two [`Tracker`]s behind their locks. Each lock is held for one
//! feed batch (at most [`super::feed::FEED_BATCH_EVENTS`] events) or one
//! read; a read computes its answer under the lock, O(n log n) in the
//! tracked runs it looks at (n ≤ the tracker's bound).

use super::feed::{FeedStatus, Observer};
use super::runs::{Kind, Tracker};
use super::ProcessesConfig;
use crate::event::StoredEvent;
use crate::sync::Recover;
use std::sync::{Arc, Mutex, MutexGuard};

/// The runs and batch operations of the horizon.
#[derive(Debug)]
pub struct Processes {
    runs: Mutex<Tracker>,
    batches: Mutex<Tracker>,
    /// The feed's progress (shared with the feed thread).
    pub feed: Arc<FeedStatus>,
    /// `[processes] horizon_hours`, for answers.
    pub horizon_hours: u64,
}

impl Processes {
    /// Empty trackers sized by `cfg`.
    pub fn new(cfg: &ProcessesConfig) -> Processes {
        Processes {
            runs: Mutex::new(Tracker::new(Kind::Process, cfg.runs())),
            batches: Mutex::new(Tracker::new(Kind::Batch, cfg.batches())),
            feed: Arc::default(),
            horizon_hours: cfg.horizon_hours,
        }
    }

    /// Puts the reloadable part of `cfg` in force: the stuck thresholds. The
    /// horizon and the bounds size the trackers and need a restart; when
    /// they differ from those in force, says which.
    pub fn reload(&self, cfg: &ProcessesConfig) -> Result<(), &'static str> {
        let stuck = cfg.runs().stuck;
        let mut unchanged = Ok(());
        for (tracker, limits) in [(&self.runs, cfg.runs()), (&self.batches, cfg.batches())] {
            let mut t = tracker.exclusive();
            let now = t.limits();
            if (now.horizon_micros, now.tracked_max) != (limits.horizon_micros, limits.tracked_max)
            {
                unchanged = Err("horizon_hours, runs_max and batches_max change only at restart");
            }
            t.set_stuck(stuck);
        }
        unchanged
    }

    /// The tracker of `kind`, locked.
    pub fn tracker(&self, kind: Kind) -> MutexGuard<'_, Tracker> {
        match kind {
            Kind::Process => self.runs.exclusive(),
            Kind::Batch => self.batches.exclusive(),
        }
    }
}

impl Observer for Processes {
    fn observe(&self, events: &[&StoredEvent]) {
        for (kind, tracker) in [(Kind::Process, &self.runs), (Kind::Batch, &self.batches)] {
            if !events.iter().any(|e| Tracker::wants(kind, e)) {
                continue;
            }
            let mut t = tracker.exclusive();
            for e in events.iter().filter(|e| Tracker::wants(kind, e)) {
                t.observe(e);
            }
        }
    }

    fn tick(&self, now: i64) {
        self.runs.exclusive().expire(now);
        self.batches.exclusive().expire(now);
    }
}
