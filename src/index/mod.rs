//! The indexes: derived from the log, rebuilt from it whenever in doubt.
//!
//! Owns `DATA_DIR/index/` (`kv/` for sled, `text/` for tantivy) and the
//! indexer thread that follows the log. Both indexes are caches of the
//! segment log: on open, each one that fails to open, is ahead of the log, or
//! maps the log's newest indexed event to the wrong seq is deleted and rebuilt
//! from the segments, and the log says so.
//!
//! Invariants:
//! 1. The indexer feeds events in seq order, each at most once per index: the
//!    text index gets only seqs above its committed seq, the key index above
//!    its indexed seq.
//! 2. The text index commits at most every `commit_interval` with the last
//!    indexed seq as commit payload; the key index is flushed at the same
//!    checkpoints. [`Indexes::indexed_seq`] (what queries can see) only moves
//!    at a checkpoint.
//! 3. After a crash, an index may be behind the log (catch-up) but never holds
//!    an event the log lacks after open (truncated, or rebuilt).

pub mod check;
mod exclude;
pub mod kv;
pub mod text;

use crate::event::StoredEvent;
use crate::log::{Log, Run};
use kv::KvIndex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use text::TextIndex;

/// Default interval between index commits.
pub const COMMIT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Default sled cache (not an RSS limit: sled's own accounting).
pub const KV_CACHE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Events read from the log per indexing step.
pub const INDEX_BATCH_EVENTS: usize = 4096;

/// Index settings.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    /// How often the indexes commit (and so how far they may lag the log).
    pub commit_interval: Duration,
    /// sled's `cache_capacity`.
    pub kv_cache_bytes: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            commit_interval: COMMIT_INTERVAL_DEFAULT,
            kv_cache_bytes: KV_CACHE_BYTES_DEFAULT,
        }
    }
}

/// Anything that stops the indexes from working.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The key index.
    #[error(transparent)]
    Kv(#[from] kv::KvError),
    /// The text index.
    #[error(transparent)]
    Text(#[from] text::TextError),
    /// Reading the log.
    #[error(transparent)]
    Log(#[from] crate::log::Error),
    /// The indexer stopped (its failure) while a caller waited for it to
    /// catch up with the log.
    #[error("the indexer stopped while catching up with the log: {0}")]
    Stopped(String),
    /// Creating or removing index directories.
    #[error("could not {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What opening the indexes did, for the startup log and `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Indexes deleted and rebuilt, each with the reason.
    pub rebuilt: Vec<String>,
    /// Events the indexes had to catch up on at open.
    pub behind_by: u64,
}

/// Progress shared between the indexer thread and readers.
#[derive(Default)]
struct Progress {
    /// Seq up to which both indexes are committed and searchable.
    committed: AtomicU64,
    lock: Mutex<()>,
    cv: Condvar,
    stop: AtomicBool,
    failed: Mutex<Option<String>>,
    /// Retention asks: remove every entry of seqs below this.
    drop_below: AtomicU64,
    /// Seqs below this are removed from both committed indexes.
    dropped_below: AtomicU64,
    /// Key-index entries of dropped seqs are still being removed.
    kv_cleaning: AtomicBool,
    /// The indexes have been level with the log at a checkpoint since they
    /// opened (the catch-up of a start or rebuild is over).
    caught_up: AtomicBool,
}

/// How far queries trail the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// The log's last durable seq.
    pub last_seq: u64,
    /// Seq up to which queries see the log.
    pub indexed_seq: u64,
    /// Seconds since the oldest unsearchable event was received (0 when none; `None` when
    /// it could not be read).
    pub seconds: Option<f64>,
    /// Whether the catch-up of the start (or a rebuild) is over: after it, a
    /// lag is a backlog under load, before it the answers miss old events.
    pub caught_up: bool,
}

impl Lag {
    /// Durable events not yet searchable.
    pub fn events(&self) -> u64 {
        self.last_seq.saturating_sub(self.indexed_seq)
    }
}

/// Both indexes and the thread that keeps them up with the log.
pub struct Indexes {
    /// Exact lookups (sled).
    pub kv: Arc<KvIndex>,
    /// Filters, full text, statistics (tantivy).
    pub text: Arc<TextIndex>,
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
    report: OpenReport,
}

fn index_dirs(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = crate::datadir::DataDir::new(data_dir);
    (dir.index_kv(), dir.index_text())
}

fn remove_dir(path: &Path) -> Result<(), IndexError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(IndexError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn create_dir(path: &Path) -> Result<(), IndexError> {
    std::fs::create_dir_all(path).map_err(|source| IndexError::Io {
        op: "create",
        path: path.to_path_buf(),
        source,
    })
}

/// Opens the key index, rebuilding it (empty) when it cannot be opened or
/// disagrees with the log.
fn open_kv(
    dir: &Path,
    log: &Log,
    cfg: &IndexConfig,
    report: &mut OpenReport,
) -> Result<KvIndex, IndexError> {
    create_dir(dir)?;
    let doubt = match KvIndex::open(dir, cfg.kv_cache_bytes) {
        Ok(kv) => match kv_disagrees(&kv, log) {
            Ok(None) => return Ok(kv),
            Ok(Some(why)) => why,
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    tracing::warn!("Rebuilding the key index from the log: {doubt}.");
    report.rebuilt.push(format!("key index: {doubt}"));
    remove_dir(dir)?;
    create_dir(dir)?;
    Ok(KvIndex::open(dir, cfg.kv_cache_bytes)?)
}

fn kv_disagrees(kv: &KvIndex, log: &Log) -> Result<Option<String>, IndexError> {
    let Some(seq) = kv.indexed_seq()? else {
        return Ok(None);
    };
    if seq > log.last_seq() {
        return Ok(Some(format!(
            "it has indexed up to seq {seq}, the log ends at seq {}",
            log.last_seq()
        )));
    }
    if seq < log.first_seq() {
        return Ok(None);
    }
    let Some(ev) = log.get(seq)? else {
        return Ok(None);
    };
    let candidates = kv.seqs_of_id(&ev.event.id, ev.event.tenant.as_deref(), usize::MAX)?;
    if candidates.contains(&seq) {
        Ok(None)
    } else {
        Ok(Some(format!(
            "it has no key for event {} at seq {seq} (it has {candidates:?})",
            ev.event.id
        )))
    }
}

fn open_text(dir: &Path, log: &Log, report: &mut OpenReport) -> Result<TextIndex, IndexError> {
    create_dir(dir)?;
    let doubt = match TextIndex::open(dir) {
        Ok(t) => match t.committed_seq() {
            Some(seq) if seq > log.last_seq() => format!(
                "it has indexed up to seq {seq}, the log ends at seq {}",
                log.last_seq()
            ),
            _ => return Ok(t),
        },
        Err(e) => e.to_string(),
    };
    tracing::warn!("Rebuilding the full-text index from the log: {doubt}.");
    report.rebuilt.push(format!("full-text index: {doubt}"));
    remove_dir(dir)?;
    create_dir(dir)?;
    Ok(TextIndex::open(dir)?)
}

impl Indexes {
    /// Opens (creating or rebuilding as needed) the indexes of `data_dir` and
    /// starts the indexer thread, which catches up with `log` and follows it.
    pub fn open(data_dir: &Path, log: Arc<Log>, cfg: IndexConfig) -> Result<Indexes, IndexError> {
        let (kv_dir, text_dir) = index_dirs(data_dir);
        let mut report = OpenReport::default();
        let kv = Arc::new(open_kv(&kv_dir, &log, &cfg, &mut report)?);
        let text = Arc::new(open_text(&text_dir, &log, &mut report)?);
        let kv_seq = kv.indexed_seq()?.unwrap_or(0);
        let text_seq = text.committed_seq().unwrap_or(0);
        let start = kv_seq.min(text_seq);
        report.behind_by = log.last_seq().saturating_sub(start);
        if report.behind_by > 0 {
            tracing::info!(
                "The indexes are {} events behind the log; catching up.",
                report.behind_by
            );
        }
        let progress = Arc::new(Progress::default());
        progress.committed.store(start, Ordering::Release);
        progress
            .caught_up
            .store(report.behind_by == 0, Ordering::Release);
        // Entries of seqs retention removed from the log (a crash may have
        // come between the files' removal and the indexes' commit) go first.
        progress
            .drop_below
            .store(log.first_seq(), Ordering::Release);
        progress.dropped_below.store(1, Ordering::Release);
        let writer = text.writer()?;
        let mut indexer = Indexer {
            log,
            kv: kv.clone(),
            text_writer: writer,
            kv_seq,
            text_seq,
            progress: progress.clone(),
            cfg,
            dropped_below: 1,
            kv_cleanup: None,
        };
        let thread = std::thread::Builder::new()
            .name("stele-indexer".into())
            .spawn(move || indexer.run())
            .map_err(|source| IndexError::Io {
                op: "start the indexer thread for",
                path: data_dir.to_path_buf(),
                source,
            })?;
        Ok(Indexes {
            kv,
            text,
            progress,
            thread: Some(thread),
            report,
        })
    }

    /// Deletes both indexes of `data_dir` (the log is untouched).
    pub fn delete(data_dir: &Path) -> Result<(), IndexError> {
        remove_dir(&crate::datadir::DataDir::new(data_dir).index())
    }

    /// What opening did.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Seq up to which queries see the log.
    pub fn indexed_seq(&self) -> u64 {
        self.progress.committed.load(Ordering::Acquire)
    }

    /// How far queries trail `log` at `now_micros`: events, and the age of the
    /// oldest event they do not see yet (read from the log: its `received_at`).
    pub fn lag(&self, log: &Log, now_micros: i64) -> Lag {
        let indexed = self.indexed_seq();
        let last = log.last_seq();
        let first_missing = (indexed + 1).max(log.first_seq());
        let seconds = if first_missing > last {
            Some(0.0)
        } else {
            match log.get(first_missing) {
                Ok(Some(ev)) => Some(now_micros.saturating_sub(ev.received_at).max(0) as f64 / 1e6),
                _ => None,
            }
        };
        Lag {
            last_seq: last,
            indexed_seq: indexed,
            seconds,
            caught_up: self.progress.caught_up.load(Ordering::Acquire),
        }
    }

    /// The indexer's failure, if it stopped on one.
    pub fn failure(&self) -> Option<String> {
        self.progress
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until queries see every event up to `seq`; false on timeout or
    /// if the indexer failed.
    pub fn wait_indexed(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.progress.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.indexed_seq() >= seq {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.failure().is_some() {
                return false;
            }
            guard = self
                .progress
                .cv
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until the indexes hold every event the log holds now, so that
    /// nothing acknowledged is missing from them (a get by id answering
    /// 404, an id stored twice because the key index has not seen it yet).
    /// What `stele serve` does at start-up and what `stele append`,
    /// `reindex` and `check` do before they rely on the indexes; says how
    /// far it got every 5 s.
    ///
    /// # Errors
    /// [`IndexError::Stopped`]: the indexer failed.
    pub fn catch_up(&self, log: &Log) -> Result<(), IndexError> {
        let target = log.last_seq();
        let started = Instant::now();
        let mut said = started;
        while !self.wait_indexed(target, Duration::from_secs(1)) {
            if let Some(f) = self.failure() {
                return Err(IndexError::Stopped(f));
            }
            if said.elapsed() >= Duration::from_secs(5) {
                said = Instant::now();
                tracing::info!(
                    "Catching the indexes up with the log: seq {} of {target} after {} s.",
                    self.indexed_seq(),
                    started.elapsed().as_secs()
                );
            }
        }
        if started.elapsed() >= Duration::from_secs(1) {
            tracing::info!(
                "The indexes caught up with the log (seq {target}) in {:.1} s.",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// Asks the indexer to remove every entry of seqs below `below` (the log
    /// dropped them); [`Indexes::dropped_below`] says when it is committed.
    pub fn drop_below(&self, below: u64) {
        self.progress.drop_below.fetch_max(below, Ordering::AcqRel);
        let _g = self.progress.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.progress.cv.notify_all();
    }

    /// Seqs below this are gone from both committed indexes.
    pub fn dropped_below(&self) -> u64 {
        self.progress.dropped_below.load(Ordering::Acquire)
    }

    /// Whether the key index is still removing entries of dropped seqs
    /// (answers already exclude them).
    pub fn cleanup_pending(&self) -> bool {
        self.progress.kv_cleaning.load(Ordering::Acquire)
            || self.progress.drop_below.load(Ordering::Acquire) > self.dropped_below()
    }

    /// Waits until the indexes committed the removal of seqs below `below`.
    pub fn wait_dropped(&self, below: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.dropped_below() < below {
            if Instant::now() >= deadline || self.failure().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Stops the indexer after a final checkpoint.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.progress.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Indexes {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The indexer thread's state.
struct Indexer {
    log: Arc<Log>,
    kv: Arc<KvIndex>,
    text_writer: text::TextWriter,
    /// Last seq applied to sled.
    kv_seq: u64,
    /// Last seq added to tantivy.
    text_seq: u64,
    progress: Arc<Progress>,
    cfg: IndexConfig,
    /// Seqs below this are removed from the full-text index (not yet
    /// committed when above `progress.dropped_below`).
    dropped_below: u64,
    /// Key-index entries still to remove: (below, since).
    kv_cleanup: Option<(u64, Instant)>,
}

impl Indexer {
    fn run(&mut self) {
        if let Err(e) = self.follow() {
            tracing::error!("The indexer stopped: {e}. Queries see the log up to seq {}; restart Stele to rebuild.", self.progress.committed.load(Ordering::Acquire));
            *self
                .progress
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            let _g = self.progress.lock.lock();
            self.progress.cv.notify_all();
        }
    }

    fn follow(&mut self) -> Result<(), IndexError> {
        let mut last_commit = Instant::now();
        let mut dirty = false;
        loop {
            let stop = self.progress.stop.load(Ordering::Acquire);
            let below = self.progress.drop_below.load(Ordering::Acquire);
            if below > self.dropped_below {
                // Answers first: full text, filters and statistics forget
                // the seqs at the next commit.
                self.text_writer.delete_below(below)?;
                self.dropped_below = below;
                self.kv_cleanup = Some((below, Instant::now()));
                self.progress.kv_cleaning.store(true, Ordering::Release);
                dirty = true;
            }
            if let Some((below, started)) = self.kv_cleanup {
                // Then the key index, a bounded step per turn of the loop.
                if self.kv.remove_below_step(below)? {
                    tracing::info!(
                        "Removed the index entries of seqs below {below} (retention) in {:.2} s.",
                        started.elapsed().as_secs_f64()
                    );
                    self.kv_cleanup = None;
                    self.progress.kv_cleaning.store(false, Ordering::Release);
                }
                dirty = true;
            }
            // Seqs retention dropped need no indexing.
            let floor = self.log.first_seq().saturating_sub(1);
            self.kv_seq = self.kv_seq.max(floor);
            self.text_seq = self.text_seq.max(floor);
            let pos = self.kv_seq.min(self.text_seq);
            let last = self.log.last_seq();
            if pos < last {
                // From the log's tail in memory while we keep up.
                let runs = match self.log.follow(pos + 1, INDEX_BATCH_EVENTS) {
                    Ok(runs) => runs,
                    // Retention dropped part of the range while we read it:
                    // start again from the new first seq.
                    Err(crate::log::Error::Dropped { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                self.index(&runs)?;
                dirty = true;
            }
            let caught_up = self.kv_seq.min(self.text_seq) >= self.log.last_seq();
            // The first catch-up (after a start or a rebuild) commits at once: a
            // start waits for it, not for the next commit interval.
            let first_catch_up = caught_up && !self.progress.caught_up.load(Ordering::Acquire);
            if dirty
                && (stop || first_catch_up || last_commit.elapsed() >= self.cfg.commit_interval)
            {
                self.checkpoint(caught_up)?;
                last_commit = Instant::now();
                dirty = false;
            }
            if stop {
                // The key index's newest keys, so that the next start need not
                // read them back from the log.
                self.kv.save_generations()?;
                return Ok(());
            }
            if caught_up && self.kv_cleanup.is_none() {
                let wait = if dirty {
                    self.cfg
                        .commit_interval
                        .saturating_sub(last_commit.elapsed())
                } else {
                    Duration::from_millis(200)
                };
                let seen = self.kv_seq.min(self.text_seq);
                self.log
                    .wait_durable_after(seen, wait.min(Duration::from_millis(200)));
            }
        }
    }

    fn index(&mut self, runs: &[Run]) -> Result<(), IndexError> {
        let events: Vec<&StoredEvent> = runs.iter().flat_map(|r| r.iter()).collect();
        let kv_from = events.partition_point(|e| e.seq <= self.kv_seq);
        let text_from = events.partition_point(|e| e.seq <= self.text_seq);
        let kv = &self.kv;
        let text_writer = &mut self.text_writer;
        // sled and tantivy on two threads: the two cores index in parallel.
        std::thread::scope(|scope| -> Result<(), IndexError> {
            let keys = scope.spawn(|| kv.apply(&events[kv_from..]));
            let mut text_result = Ok(());
            for ev in &events[text_from..] {
                if let Err(e) = text_writer.add(ev) {
                    text_result = Err(e);
                    break;
                }
            }
            keys.join()
                .unwrap_or_else(|_| Err(kv::KvError::Sled("the key index panicked".into())))?;
            Ok(text_result?)
        })?;
        if let Some(last) = events.last() {
            self.kv_seq = self.kv_seq.max(last.seq);
            self.text_seq = self.text_seq.max(last.seq);
        }
        Ok(())
    }

    /// Commits both indexes and publishes the seq they hold; `level`: that
    /// seq is the log's last (the catch-up is over).
    fn checkpoint(&mut self, level: bool) -> Result<(), IndexError> {
        let seq = self.kv_seq.min(self.text_seq);
        self.text_writer.commit(self.text_seq)?;
        self.kv.flush()?;
        // Before the seq: whoever sees it level with the log (a start waiting
        // for the catch-up) then also sees the catch-up over.
        if level {
            self.progress.caught_up.store(true, Ordering::Release);
        }
        self.progress.committed.store(seq, Ordering::Release);
        self.progress
            .dropped_below
            .store(self.dropped_below, Ordering::Release);
        let _g = self.progress.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.progress.cv.notify_all();
        Ok(())
    }
}

/// The seq of the text index's last commit, read from tantivy's
/// `meta.json` without opening the index (evidence for recovery of what was
/// acknowledged: the indexes only ever hold durable events). `None` when
/// there is no index or its meta does not parse.
pub fn committed_seq(data_dir: &Path) -> Option<u64> {
    let text = crate::datadir::DataDir::new(data_dir).index_text();
    let meta = std::fs::read(text.join("meta.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&meta).ok()?;
    v.get("payload")?.as_str()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::event::Provenance;
    use crate::log::LogConfig;
    use crate::testkit::EventGen;

    /// Opens the indexes, waiting out the directory lock sled releases from
    /// background threads after the previous handle is dropped.
    fn open_indexes(dir: &Path, log: &Arc<Log>) -> Indexes {
        for _ in 0..100 {
            match Indexes::open(dir, log.clone(), IndexConfig::default()) {
                Err(e) if e.to_string().contains("lock") => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => return other.unwrap(),
            }
        }
        Indexes::open(dir, log.clone(), IndexConfig::default()).unwrap()
    }

    /// A log in `dir` holding `n` generated events (seqs `1..=n`).
    fn log_of(dir: &Path, seed: u64, n: usize) -> (Arc<Log>, Vec<crate::event::Event>) {
        let clock = Arc::new(ManualClock::new(1_790_000_000_000_000));
        let log = Arc::new(Log::open(dir, LogConfig::default(), clock).unwrap());
        let mut gen = EventGen::new(seed);
        let events: Vec<_> = (0..n).map(|_| gen.next_event()).collect();
        log.append(&events, &Provenance::cli()).unwrap();
        (log, events)
    }

    #[test]
    fn a_key_index_of_an_older_format_version_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let (log, events) = log_of(dir.path(), 3, 40);
        {
            let idx = open_indexes(dir.path(), &log);
            assert!(idx.wait_indexed(log.last_seq(), Duration::from_secs(30)));
            assert!(idx.open_report().rebuilt.is_empty());
            idx.close();
        }
        // Turn it into a version 3 index, with one of the ordered key families
        // version 3 had.
        let kv_dir = dir.path().join("index").join("kv");
        {
            let mut db = None;
            for _ in 0..100 {
                match sled::open(&kv_dir) {
                    Ok(d) => {
                        db = Some(d);
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            let db = db.expect("sled opens");
            let meta = db.open_tree("meta").unwrap();
            meta.insert("format", &3u32.to_be_bytes()).unwrap();
            db.open_tree("user").unwrap().insert(b"u", b"").unwrap();
            db.flush().unwrap();
        }
        let idx = open_indexes(dir.path(), &log);
        let rebuilt = &idx.open_report().rebuilt;
        assert_eq!(rebuilt.len(), 1, "{rebuilt:?}");
        assert!(rebuilt[0].contains("format version 3"), "{rebuilt:?}");
        assert!(idx.wait_indexed(log.last_seq(), Duration::from_secs(30)));
        let first = &events[0];
        assert_eq!(
            idx.kv
                .seqs_of_id(&first.id, first.tenant.as_deref(), 16)
                .unwrap(),
            vec![1]
        );
    }

    /// A start behind the log (the key index's generations are not saved after a
    /// crash) is caught up at once, not at the next commit interval: `stele serve`
    /// waits for it before it answers.
    #[test]
    fn the_first_catch_up_commits_without_waiting_the_commit_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = log_of(dir.path(), 4, 300);
        let cfg = IndexConfig {
            commit_interval: Duration::from_secs(3_600),
            ..IndexConfig::default()
        };
        let idx = Indexes::open(dir.path(), log.clone(), cfg).unwrap();
        assert_eq!(idx.open_report().behind_by, 300);
        assert!(idx.wait_indexed(log.last_seq(), Duration::from_secs(20)));
        assert!(idx.lag(&log, 0).caught_up);
    }
}
