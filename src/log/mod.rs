//! The segment log: Stele's durable, verifiable source of truth.
//!
//! Owns `DATA_DIR/segments/` and the `DATA_DIR/LOCK` file. [`Log::open`] runs
//! recovery and starts the writer thread; [`Log::append`] and
//! [`Log::append_async`] return once the events are durable; readers get
//! events by seq, by range and by iteration in either direction, through
//! memory maps, never seeing a byte that is not yet durable.
//!
//! Module map:
//! - `config`: [`LogConfig`], every limit with its default and range.
//! - [`format`](mod@format): the bytes (header, record frame, footer, chain hash); pure.
//! - [`dict`]: records compressed with their segment's zstd dictionary, and the
//!   thread that trains dictionaries.
//! - [`segment`]: a segment seen by readers, and (`segment::scanner`) the frame scanner.
//! - `recovery`: what opening a directory checks and may repair.
//! - `batch`: an append request's events encoded for the writer, beside
//!   their stored form.
//! - `writer`: the writer thread (group commit, rotation, sealing).
//! - `prealloc`: the thread zero-filling the active segment ahead of the
//!   writer, so its `fdatasync`s stay data-only (the zero padding of
//!   docs/FORMAT.md, bounded by [`segment::padding_bytes_max`]).
//! - `iter`: [`LogIter`], reading a seq range forward or backward.
//! - `tail`: the newest durable events in memory, handed to the readers
//!   that follow the log ([`Log::follow`], [`Log::follow_range`]) and back
//!   to posters as [`Run`]s.
//! - `readonly`: [`ReadOnly`], the log of a data directory (or a backup)
//!   read without its LOCK and without writing, beside a running daemon.
//! - [`evicted`]: segments whose records live in the archive only (stubs,
//!   `DATA_DIR/evicted.json`, the [`evicted::Fetch`] that reads them back).
//! - [`error`]: the error type.
//!
//! The paths (`segments/`, `LOCK`, `quarantine/`) come from
//! [`crate::datadir::DataDir`], and so does the lock itself.

mod batch;
mod config;
pub mod dict;
pub mod error;
pub mod evicted;
pub mod format;
mod iter;
mod prealloc;
mod readonly;
mod recovery;
pub mod segment;
mod tail;
mod writer;

pub use config::{LogConfig, RecoveryMode, DICT_SAMPLE_BYTES_MIN};
pub use error::{Error, Result, BYTES_PER_APPEND};
pub use iter::{Direction, LogIter};
pub use readonly::ReadOnly;
pub use recovery::{list_segments, RecoveryReport};
pub use tail::{Follow, Run, TAIL_BYTES_DEFAULT, TAIL_BYTES_MAX};

use crate::clock::Clock;
use crate::event::{Event, Provenance, StoredEvent};
use format::{Hash, SegmentId};
use segment::SegmentView;
use std::fs::File;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use tokio::sync::{oneshot, watch};
use writer::{Request, Writer};

/// The largest single write the writer makes (and so the largest torn tail a
/// crash can leave). Recovery looks this far back for a torn write; a bad
/// frame further from the end of the file is damage.
pub const TORN_WINDOW_BYTES: u64 = 64 * 1024 * 1024;

/// Default size at which a segment is sealed and the next one started.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 512 * 1024 * 1024;
/// Smallest accepted `segment_bytes_max` (tests use tiny segments).
pub const SEGMENT_BYTES_MAX_MIN: u64 = 4096;
/// Default cap on the bytes of one group commit.
pub const WRITE_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;
/// Default cap on the events of one append request.
pub const BATCH_EVENTS_MAX_DEFAULT: usize = 10_000;
/// Default number of append requests that may wait for the writer.
pub const QUEUE_REQUESTS_MAX_DEFAULT: usize = 4096;

/// The receipt of a durable append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Seq of the first event; the others follow without gaps.
    pub first_seq: u64,
    /// Number of events.
    pub count: u64,
    /// The `received_at` stamped on every event of the request (unix µs).
    pub received_at: i64,
    /// The segment holding them.
    pub segment: SegmentId,
    /// Chain hash of the last event: a receipt the client can keep.
    pub last_hash: Hash,
}

impl Appended {
    /// Seq of the last event.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.count - 1
    }
}

/// The chain head the writer produced: the last durable seq and its chain
/// hash. Published only after the fdatasync that made it durable, so
/// whatever signs it signs what this process witnessed being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Seq of the last durable record (`first_seq - 1` when none).
    pub seq: u64,
    /// Its chain hash (the anchor's `prev_hash` when none).
    pub hash: Hash,
}

/// A segment this process sealed, described from what its writer wrote and
/// hashed while appending, never from re-reading the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessedSegment {
    /// Day and part.
    pub id: SegmentId,
    /// Size of the sealed file.
    pub bytes: u64,
    /// SHA-256 of the whole file, header to footer.
    pub sha256: Hash,
    /// The header's `first_seq`.
    pub first_seq: u64,
    /// Records in it.
    pub count: u64,
    /// The header's `prev_hash`.
    pub prev_hash: Hash,
    /// The footer's `final_hash`.
    pub final_hash: Hash,
    /// The segment was inherited from an earlier process (the active segment
    /// at open): its records up to this seq were read back from the disk and
    /// count as witnessed only once they verify against that process's last
    /// signed checkpoint. `None` when this process created the segment.
    pub inherited_through: Option<u64>,
}

/// Counters kept by the writer.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// Events made durable.
    pub appended: AtomicU64,
    /// Bytes made durable.
    pub bytes: AtomicU64,
    /// Payload bytes (the encoded events with their seq and time prefix) of
    /// the records made durable, before compression.
    pub payload_bytes: AtomicU64,
    /// The same payloads as stored: compressed with their segment's
    /// dictionary, or as they are in a segment without one. The ratio of
    /// the two is what compression saves.
    pub stored_payload_bytes: AtomicU64,
    /// Group commits (fdatasync calls on record data).
    pub fsyncs: AtomicU64,
    /// Total time spent writing and syncing groups (µs).
    pub fsync_micros: AtomicU64,
    /// Distribution of group-commit (write + fdatasync) durations.
    pub fsync_seconds: crate::metrics::Histogram,
    /// Writes that failed and were rolled back.
    pub write_errors: AtomicU64,
    /// Events handed to followers ([`Log::follow`]) from the tail, in memory.
    pub followed_from_tail: AtomicU64,
    /// Events handed to followers read from the segments (decoded).
    pub followed_from_segments: AtomicU64,
    /// Events of [`Log::get`] and [`Log::get_many`] copied from the tail.
    pub read_from_tail: AtomicU64,
}

/// A segment as listed for operators and backups.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Day and part.
    pub id: SegmentId,
    /// The file.
    pub path: PathBuf,
    /// Seq of its first record.
    pub first_seq: u64,
    /// Number of durable records.
    pub count: u64,
    /// Durable bytes (what a backup copies).
    pub bytes: u64,
    /// Whether the footer is written.
    pub sealed: bool,
    /// Whether its records are in the archive only (`log::evicted`): the
    /// file is a stub, never to be read but for its header and footer.
    pub evicted: bool,
}

/// State shared by the writer and readers.
pub(crate) struct Shared {
    segments: RwLock<Vec<Arc<SegmentView>>>,
    /// Seq of the last durable event; `first_seq - 1` when empty.
    durable: AtomicU64,
    durable_tx: watch::Sender<u64>,
    /// The same, for threads: notified on every publish.
    durable_cv: (Mutex<()>, std::sync::Condvar),
    poisoned: Mutex<Option<Error>>,
    pub(crate) metrics: LogMetrics,
    /// The chain head, published with the durable seq.
    head: Mutex<ChainHead>,
    /// Segments sealed by this process's writer, oldest first.
    witnessed: Mutex<Vec<WitnessedSegment>>,
    /// How evicted segments are read back (none until an archive starts).
    fetch: Mutex<Option<Arc<dyn evicted::Fetch>>>,
    /// One past the last seq of the newest evicted segment (0: none is
    /// evicted); only grows.
    evicted_below: AtomicU64,
    /// The newest compression dictionary trained (`dict::Trainer` fills it).
    pub(crate) dict: Arc<Mutex<Option<Arc<dict::Dict>>>>,
    /// The newest durable events (the writer fills it).
    pub(crate) tail: tail::Tail,
}

impl Shared {
    /// The reading side of a log whose segments are `views` and whose last
    /// durable record is `head`, keeping `tail_bytes` of new events.
    fn new(views: Vec<Arc<SegmentView>>, head: ChainHead, tail_bytes: usize) -> Shared {
        let (durable_tx, _) = watch::channel(head.seq);
        let evicted_below = views
            .iter()
            .filter(|v| v.evicted())
            .map(|v| v.first_seq() + v.count())
            .max()
            .unwrap_or(0);
        Shared {
            evicted_below: AtomicU64::new(evicted_below),
            segments: RwLock::new(views),
            durable: AtomicU64::new(head.seq),
            durable_tx,
            durable_cv: (Mutex::new(()), std::sync::Condvar::new()),
            poisoned: Mutex::new(None),
            metrics: LogMetrics::default(),
            head: Mutex::new(head),
            witnessed: Mutex::new(Vec::new()),
            fetch: Mutex::new(None),
            dict: Arc::new(Mutex::new(None)),
            tail: tail::Tail::new(tail_bytes),
        }
    }

    fn segments(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<SegmentView>>> {
        self.segments.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The dictionary of the newest segment that has one and whose
    /// dictionary loads (a damaged one is passed over: its segment's reads
    /// report it), if any.
    pub(crate) fn newest_dictionary(&self) -> Option<Arc<dict::Dict>> {
        self.segments()
            .iter()
            .rev()
            .filter(|v| v.header.dict_len > 0)
            .find_map(|v| v.dict().ok().flatten())
    }

    pub(crate) fn push_segment(&self, view: Arc<SegmentView>) {
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(view);
    }

    pub(crate) fn publish_durable(&self, seq: u64, hash: Hash) {
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = ChainHead { seq, hash };
        self.durable.store(seq, Ordering::Release);
        self.durable_tx.send_replace(seq);
        let _guard = self.durable_cv.0.lock().unwrap_or_else(|p| p.into_inner());
        self.durable_cv.1.notify_all();
    }

    pub(crate) fn push_witnessed(&self, w: WitnessedSegment) {
        self.witnessed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w);
    }

    pub(crate) fn set_poisoned(&self, e: &Error) {
        *self.poisoned.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
    }

    /// The segment holding `seq`, if any.
    fn find(&self, seq: u64) -> Option<Arc<SegmentView>> {
        let segs = self.segments();
        let i = segs.partition_point(|s| s.first_seq() <= seq);
        let s = segs.get(i.checked_sub(1)?)?;
        (seq < s.first_seq() + s.count()).then(|| s.clone())
    }

    fn first_seq(&self) -> u64 {
        let segs = self.segments();
        match segs.first() {
            Some(s) => s.first_seq(),
            None => self.durable.load(Ordering::Acquire) + 1,
        }
    }

    fn last_seq(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// [`Log::range`] and [`ReadOnly::range`].
    fn range(self: &Arc<Self>, range: impl RangeBounds<u64>, dir: Direction) -> LogIter {
        let lo = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(self.first_seq());
        let hi = match range.end_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_sub(1),
            Bound::Unbounded => u64::MAX,
        }
        .min(self.last_seq());
        LogIter::new(self.clone(), lo, hi, dir)
    }

    /// [`Log::get`] and [`ReadOnly::get`].
    fn get(self: &Arc<Self>, seq: u64) -> Result<Option<StoredEvent>> {
        if seq == 0 || seq > self.last_seq() {
            return Ok(None);
        }
        self.range(seq..=seq, Direction::Forward).next().transpose()
    }

    /// [`Log::segments`] and [`ReadOnly::segments`].
    fn infos(&self) -> Vec<SegmentInfo> {
        self.segments()
            .iter()
            .map(|s| SegmentInfo {
                id: s.id,
                path: s.path.clone(),
                first_seq: s.first_seq(),
                count: s.count(),
                bytes: s.durable_bytes(),
                sealed: s.footer().is_some(),
                evicted: s.evicted(),
            })
            .collect()
    }
}

/// fsyncs a directory, so that file creations, renames and removals in it
/// survive a crash.
/// (The log's error type around [`crate::datadir::fsync_dir`].)
pub fn fsync_dir(dir: &Path) -> Result<()> {
    Ok(crate::datadir::fsync_dir(dir)?)
}

/// The open log. Dropping it stops the writer after the requests already
/// queued are answered.
pub struct Log {
    shared: Arc<Shared>,
    tx: Option<flume::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    cfg: LogConfig,
    data_dir: PathBuf,
    report: RecoveryReport,
    /// The chain head recovery found, before this process appended.
    opened_head: ChainHead,
    _lock: File,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("data_dir", &self.data_dir)
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

impl Log {
    /// Opens (creating if needed) the log in `data_dir`, runs recovery and
    /// starts the writer thread.
    pub fn open(data_dir: &Path, cfg: LogConfig, clock: Arc<dyn Clock>) -> Result<Log> {
        cfg.validate()?;
        let dir = crate::datadir::DataDir::new(data_dir);
        let seg_dir = dir.segments();
        std::fs::create_dir_all(&seg_dir).map_err(|e| Error::io("create", &seg_dir, e))?;
        let lock = dir.lock()?;
        let mut rec = recovery::recover(data_dir, &seg_dir, cfg.recovery, cfg.acked_through)?;
        let last_received_at = last_received_at(&rec.views)?;
        let opened_head = ChainHead {
            seq: rec.next_seq - 1,
            hash: rec.last_hash,
        };
        // Readers get the views and the log keeps the report; the writer
        // takes the rest of what recovery found.
        let views = std::mem::take(&mut rec.views);
        evicted::mark(data_dir, &views)?;
        let report = std::mem::take(&mut rec.report);
        let shared = Arc::new(Shared::new(views, opened_head, cfg.tail_bytes));
        let writer = Writer::new(
            shared.clone(),
            cfg.clone(),
            clock,
            seg_dir,
            rec,
            last_received_at,
            prealloc::Prealloc::start()
                .map_err(|e| Error::io("start the zero-filling thread for", data_dir, e))?,
        );
        let (tx, rx) = flume::bounded(cfg.queue_requests_max);
        let thread = std::thread::Builder::new()
            .name("stele-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io("start the writer thread for", data_dir, e))?;
        tracing::info!(
            "Opened the log in {}: {} segments, {} events, next seq {}.",
            data_dir.display(),
            report.segments,
            report.events,
            opened_head.seq + 1
        );
        Ok(Log {
            shared,
            tx: Some(tx),
            thread: Some(thread),
            cfg,
            data_dir: data_dir.to_path_buf(),
            report,
            opened_head,
            _lock: lock,
        })
    }

    /// The chain head as the writer last made it durable.
    pub fn head(&self) -> ChainHead {
        *self.shared.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chain head as recovery found it at open, before this process
    /// appended anything: where the inherited records end.
    pub fn opened_head(&self) -> ChainHead {
        self.opened_head
    }

    /// The segments this process's writer sealed, oldest first.
    pub fn witnessed(&self) -> Vec<WitnessedSegment> {
        self.shared
            .witnessed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks segment `id` damaged (found by a scrub or the start-up
    /// verification): every read of it fails from now on with `detail`.
    /// Returns true the first time.
    pub fn mark_damaged(&self, id: SegmentId, detail: String) -> bool {
        let segs = self.shared.segments();
        match segs.iter().find(|s| s.id == id) {
            Some(v) => v.mark_damaged(detail),
            None => false,
        }
    }

    /// The segments marked damaged, with why: `(file name, detail)`.
    pub fn damaged_segments(&self) -> Vec<(String, String)> {
        self.shared
            .segments()
            .iter()
            .filter_map(|s| s.damaged().map(|d| (s.id.file_name(), d)))
            .collect()
    }

    /// What recovery found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn sender(&self) -> Result<&flume::Sender<Request>> {
        self.tx.as_ref().ok_or(Error::Closed)
    }

    /// Appends `events`, each stamped with the provenance `by`, and returns
    /// once they are durable. Blocks the calling thread: do not call from an
    /// async task (use [`Log::append_async`]). Copies the events for the
    /// tail ([`Log::append_async`] takes them by value instead).
    pub fn append(&self, events: &[Event], by: &Provenance) -> Result<Appended> {
        let batch = batch::prepare(&self.cfg, events.to_vec(), by)?;
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Request::Append(batch, reply))
            .map_err(|_| Error::Closed)?;
        let (receipt, _) = rx.blocking_recv().map_err(|_| Error::Closed)??;
        Ok(receipt)
    }

    /// Appends `events`, each stamped with the provenance `by`, and resolves
    /// once they are durable: the receipt, and the events as stored (moved
    /// into the log's tail, shared with the followers, not copied).
    pub async fn append_async(
        &self,
        events: Vec<Event>,
        by: &Provenance,
    ) -> Result<(Appended, Run)> {
        let batch = batch::prepare(&self.cfg, events, by)?;
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send_async(Request::Append(batch, reply))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Seals the active segment if its UTC day is over. The writer also does
    /// this by itself about once a second; tests with a manual clock call it.
    pub fn rotate_if_day_over(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Request::Rotate(reply))
            .map_err(|_| Error::Closed)?;
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// Seq of the last durable event (`first_seq() - 1` when empty).
    pub fn last_seq(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// The newest compression dictionary, if there is one (trained by this
    /// process, or the newest segment's on disk when the log opened):
    /// segments created from now on store their records compressed with it.
    pub fn dictionary(&self) -> Option<Arc<dict::Dict>> {
        self.shared
            .dict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Seq of the oldest event still in the log.
    pub fn first_seq(&self) -> u64 {
        self.shared.first_seq()
    }

    /// The seq from which on every event is in a segment on local disk: one
    /// past the last event of the newest evicted segment (0 when none is).
    /// An event below it may be readable only through the archive.
    pub fn evicted_below(&self) -> u64 {
        self.shared.evicted_below.load(Ordering::Acquire)
    }

    /// Watches the last durable seq (for live streams).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.durable_tx.subscribe()
    }

    /// Blocks the calling thread until the last durable seq is greater than
    /// `seen` or `timeout` passes; returns the last durable seq.
    pub fn wait_durable_after(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        let (lock, cv) = &self.shared.durable_cv;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let last = self.last_seq();
            let now = std::time::Instant::now();
            if last > seen || now >= deadline {
                return last;
            }
            guard = cv
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The error that stopped the writer, if one did.
    pub fn poisoned(&self) -> Option<Error> {
        self.shared
            .poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The writer's counters.
    pub fn metrics(&self) -> &LogMetrics {
        &self.shared.metrics
    }

    /// The segments whose reads failed with an I/O error (not corruption):
    /// file name, failed reads, last error; oldest first.
    pub fn read_failures(&self) -> Vec<(String, u64, String)> {
        self.shared
            .segments()
            .iter()
            .filter_map(|s| {
                let (n, e) = s.read_failures()?;
                Some((s.id.file_name(), n, e))
            })
            .collect()
    }

    /// Every segment, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shared.infos()
    }

    /// Retention: removes the oldest sealed segments up to and including
    /// `last` (never the active segment), first from what readers see, then
    /// from disk (followed by a directory fsync). Readers holding a dropped
    /// segment keep their mapping until they let go. Returns what was
    /// dropped, oldest first.
    pub fn drop_through(&self, last: SegmentId) -> Result<Vec<SegmentInfo>> {
        let dropped: Vec<Arc<SegmentView>> = {
            let mut segs = self
                .shared
                .segments
                .write()
                .unwrap_or_else(|p| p.into_inner());
            // The last segment is the active one (or becomes it at the next
            // append): it stays, and only sealed ones go.
            let n = segs
                .iter()
                .take(segs.len().saturating_sub(1))
                .take_while(|s| s.id <= last && s.footer().is_some())
                .count();
            segs.drain(..n).collect()
        };
        let mut out = Vec::with_capacity(dropped.len());
        for v in &dropped {
            out.push(SegmentInfo {
                id: v.id,
                path: v.path.clone(),
                first_seq: v.first_seq(),
                count: v.count(),
                bytes: v.durable_bytes(),
                sealed: true,
                evicted: v.evicted(),
            });
            std::fs::remove_file(&v.path).map_err(|e| Error::io("remove", &v.path, e))?;
            crate::fault::crash(crate::fault::DROPPED, &v.path);
        }
        if let Some(v) = dropped.first() {
            if let Some(dir) = v.path.parent() {
                fsync_dir(dir)?;
            }
        }
        if out.iter().any(|s| s.evicted) {
            evicted::forget_dropped(&self.data_dir)?;
        }
        Ok(out)
    }

    /// The event with `seq`, or `None` if it is not (or no longer) in the log.
    pub fn get(&self, seq: u64) -> Result<Option<StoredEvent>> {
        match self.get_held(seq) {
            Some(ev) => Ok(Some(ev)),
            None => self.shared.get(seq),
        }
    }

    /// The events of `seqs`, in that order, without those not (or no
    /// longer) in the log: [`Log::get`] of each, with less work per event
    /// (the active segment's newest copied from the tail in memory; for the
    /// others one segment lookup per run of seqs in a segment, one walk per
    /// sparse block, one decompression buffer). For pages of events found
    /// by an index.
    pub fn get_many(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>> {
        self.get_many_held(seqs)
    }

    /// Iterates over the durable events whose seqs fall in `range`, in the
    /// given direction. Events appended after this call are not included.
    pub fn range(&self, range: impl RangeBounds<u64>, dir: Direction) -> LogIter {
        self.shared.range(range, dir)
    }

    /// Gives back the memory-map pages holding seqs `lo..=hi` (see
    /// `segment::release_pages`): for callers that read many events by seq,
    /// such as exports, so a long read keeps a bounded resident set.
    pub fn release(&self, lo: u64, hi: u64) -> Result<()> {
        let views: Vec<Arc<SegmentView>> = self.shared.segments().clone();
        for v in views {
            let count = v.count();
            let (first, end) = (v.first_seq(), v.first_seq() + count);
            if count == 0 || hi < first || lo >= end {
                continue;
            }
            let snap = v.snapshot()?;
            let Some(map) = &snap.map else { continue };
            let from = v.offset_of(&snap, lo.max(first))?;
            let to = if hi + 1 >= end {
                snap.records_end
            } else {
                v.offset_of(&snap, hi + 1)?
            };
            segment::release_pages(map, from, to);
        }
        Ok(())
    }

    /// Every durable event, oldest first.
    pub fn iter(&self) -> LogIter {
        self.range(.., Direction::Forward)
    }

    /// Stops the writer after answering every queued request.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `received_at` of the newest event, so it never goes backwards across a
/// restart even if the clock does.
fn last_received_at(views: &[Arc<SegmentView>]) -> Result<i64> {
    for v in views.iter().rev() {
        let count = v.count();
        if count == 0 {
            continue;
        }
        let seq = v.first_seq() + count - 1;
        let snap = v.snapshot()?;
        let off = v.offset_of(&snap, seq)?;
        return Ok(v.read_at(&snap, off, seq)?.0.received_at);
    }
    Ok(i64::MIN)
}
