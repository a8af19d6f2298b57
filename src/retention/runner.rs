//! The retention runner: the thread that applies retention at start and
//! every `interval_secs`, the legal holds set over HTTP (persisted in
//! `DATA_DIR/holds.json`) and the caches a plan needs.
//!
//! Owns the retention settings in force (SIGHUP replaces them), the HTTP
//! holds and the per-segment tenant cache. Never touches HTTP: the server
//! asks it for plans and holds and renders them.
//!
//! Invariants:
//! 1. Runs never overlap: only the runner's one thread drops days.
//! 2. A hold set over HTTP is on disk before it is in force (and before the
//!    201); one lifted is off disk before it stops applying.
//! 3. Stopping the runner ([`Worker::stop`]) waits for a run in progress,
//!    so the log and the indexes are not closed under it.

use super::{DayPlan, Hold, RetentionConfig, Seg};
use crate::clock::Clock;
use crate::index::Indexes;
use crate::log::Log;
use crate::seal::worker::Worker;
use crate::sync::Recover;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Told the names of the segment files a run dropped (to forget them in
/// other caches).
pub type OnDropped = Box<dyn Fn(&[String]) + Send + Sync>;

/// Retention for one data directory (see the module doc).
pub struct Retainer {
    data_dir: PathBuf,
    log: Arc<Log>,
    indexes: Arc<Indexes>,
    clock: Arc<dyn Clock>,
    /// The settings in force; SIGHUP replaces them.
    config: RwLock<RetentionConfig>,
    /// Holds set over HTTP (the configuration's are in `config`).
    holds: Mutex<Vec<Hold>>,
    /// Tenants present in sealed segments (they never change), by file name.
    segment_tenants: Mutex<HashMap<String, BTreeSet<String>>>,
    on_dropped: OnDropped,
    /// Day partitions dropped since start.
    pub dropped_days: AtomicU64,
    /// Events dropped since start.
    pub dropped_events: AtomicU64,
}

impl Retainer {
    /// Validates `config` and loads the HTTP holds.
    ///
    /// # Errors
    /// An invalid setting, or `holds.json` unreadable.
    pub fn open(
        data_dir: PathBuf,
        log: Arc<Log>,
        indexes: Arc<Indexes>,
        clock: Arc<dyn Clock>,
        config: RetentionConfig,
        on_dropped: OnDropped,
    ) -> anyhow::Result<Arc<Retainer>> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid retention setting: {e}"))?;
        let holds = super::load_holds(&data_dir)?;
        Ok(Arc::new(Retainer {
            data_dir,
            log,
            indexes,
            clock,
            config: RwLock::new(config),
            holds: Mutex::new(holds),
            segment_tenants: Mutex::default(),
            on_dropped,
            dropped_days: AtomicU64::new(0),
            dropped_events: AtomicU64::new(0),
        }))
    }

    /// Starts the runner thread: one run now, then one every
    /// `interval_secs` (read again after each run) until stopped.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(self: &Arc<Self>) -> std::io::Result<Worker> {
        let me = self.clone();
        Worker::spawn("stele-retention", move |rx| loop {
            if let Err(e) = me.run() {
                tracing::error!("Retention failed: {e}.");
            }
            let wait = Duration::from_secs(me.config().interval_secs);
            match rx.recv_timeout(wait) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })
    }

    /// The settings in force.
    pub fn config(&self) -> RetentionConfig {
        self.config.shared().clone()
    }

    /// Puts new settings in force (SIGHUP).
    pub fn set_config(&self, config: RetentionConfig) {
        *self.config.exclusive() = config;
    }

    /// Every hold: the configuration's, then those set over HTTP.
    pub fn holds(&self) -> Vec<Hold> {
        let api = self.holds.shared().clone();
        self.config().holds.into_iter().chain(api).collect()
    }

    /// Whether the configuration sets a hold named `name`.
    pub fn configured_hold(&self, name: &str) -> bool {
        self.config.shared().holds.iter().any(|h| h.name == name)
    }

    /// Sets a hold over HTTP (persisted first); `None` when one of that
    /// name exists.
    ///
    /// # Errors
    /// `holds.json` could not be written.
    pub fn add_hold(&self, hold: Hold) -> std::io::Result<Option<Hold>> {
        if self.holds().iter().any(|h| h.name == hold.name) {
            return Ok(None);
        }
        let mut holds = self.holds.exclusive();
        let mut next = holds.clone();
        next.push(hold.clone());
        super::save_holds(&self.data_dir, &next)?;
        *holds = next;
        tracing::info!("Legal hold {:?} set: {:?}.", hold.name, hold);
        Ok(Some(hold))
    }

    /// Lifts a hold set over HTTP; `false` when none has that name.
    ///
    /// # Errors
    /// `holds.json` could not be written.
    pub fn remove_hold(&self, name: &str) -> std::io::Result<bool> {
        let mut holds = self.holds.exclusive();
        let next: Vec<_> = holds.iter().filter(|h| h.name != name).cloned().collect();
        if next.len() == holds.len() {
            return Ok(false);
        }
        super::save_holds(&self.data_dir, &next)?;
        *holds = next;
        tracing::info!("Legal hold {name:?} lifted.");
        Ok(true)
    }

    /// Today (UTC) by the clock.
    pub fn today(&self) -> chrono::NaiveDate {
        chrono::DateTime::from_timestamp_micros(self.clock.now_micros())
            .unwrap_or_default()
            .date_naive()
    }

    /// The tenants of seqs `first..first + count`, read through the log.
    fn tenants_from_log(
        &self,
        first: u64,
        count: u64,
    ) -> Result<std::collections::BTreeSet<String>, String> {
        let mut out = std::collections::BTreeSet::new();
        for e in self
            .log
            .range(first..first + count, crate::log::Direction::Forward)
        {
            let e = e.map_err(|e| e.to_string())?;
            out.insert(e.event.tenant.clone().unwrap_or_default());
        }
        Ok(out)
    }

    /// The retention plan for now (nothing is dropped).
    ///
    /// # Errors
    /// A segment could not be read.
    pub fn plan(&self) -> Result<Vec<DayPlan>, String> {
        let segs: Vec<Seg> = self.log.segments().into_iter().map(Into::into).collect();
        let holds = self.holds();
        let mut plan = super::plan(&segs, self.today(), &self.config(), &holds, |s| {
            let name = s.id.file_name();
            if let Some(t) = self.segment_tenants.shared().get(&name) {
                return Ok(t.clone());
            }
            // An evicted segment's records are read through the log (from
            // the archive's cache), never from its stub.
            let evicted = self
                .log
                .segments()
                .iter()
                .any(|i| i.id == s.id && i.evicted);
            let t = match evicted {
                true => self.tenants_from_log(s.first_seq, s.count)?,
                false => super::tenants_in(&s.path)?,
            };
            self.segment_tenants.exclusive().insert(name, t.clone());
            Ok(t)
        })?;
        super::keep_unsigned(
            &mut plan,
            crate::seal::digest::digested_through(&self.data_dir),
        );
        Ok(plan)
    }

    /// One run: plan, drop the expired prefix, record it.
    ///
    /// # Errors
    /// Planning or dropping failed (see [`super::apply`]).
    pub fn run(&self) -> Result<Vec<DayPlan>, String> {
        if !self.config.shared().enabled() {
            return Ok(Vec::new());
        }
        let plan = self.plan()?;
        let now = crate::event::format_micros(self.clock.now_micros());
        let done = super::apply(&self.data_dir, &self.log, &self.indexes, &plan, &now)?;
        // The per-segment caches forget the files that are gone.
        let names: Vec<String> = done.iter().flat_map(|d| d.segments.clone()).collect();
        {
            let mut tenants = self.segment_tenants.exclusive();
            for name in &names {
                tenants.remove(name);
            }
        }
        (self.on_dropped)(&names);
        self.dropped_days.fetch_add(done.len() as u64, Relaxed);
        self.dropped_events
            .fetch_add(done.iter().map(|d| d.events).sum(), Relaxed);
        Ok(done)
    }
}
