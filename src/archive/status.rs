//! What the archive reports: the backlog, uploads, failures and the newest
//! archived day, for `/metrics` and `/readyz`.
//!
//! Owns [`ArchiveStatus`] (written by the uploader, read by the server) and
//! its snapshot. Never acts on the archive.

use crate::sync::Recover;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Most problems kept (the oldest are dropped first).
const PROBLEMS_MAX: usize = 20;

/// The uploader's counters and state.
#[derive(Debug, Default)]
pub struct ArchiveStatus {
    location: String,
    node: String,
    claimed: AtomicBool,
    backlog_objects: AtomicU64,
    backlog_bytes: AtomicU64,
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    read_backs: AtomicU64,
    failures: AtomicU64,
    deletions: AtomicU64,
    passes: AtomicU64,
    newest_day: Mutex<Option<String>>,
    newest_checkpoint_seq: AtomicU64,
    evicted_segments: AtomicU64,
    released_bytes: AtomicU64,
    fetches: AtomicU64,
    fetch_bytes: AtomicU64,
    cache_hits: AtomicU64,
    cache_bytes: AtomicU64,
    last_error: Mutex<Option<String>>,
    problems: Mutex<Vec<String>>,
}

/// A copy of [`ArchiveStatus`] at one moment (`/readyz`'s `archive`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    /// `s3://BUCKET/PREFIX/node=NODE/`.
    pub location: String,
    /// This node's name.
    pub node: String,
    /// Whether this data directory holds the node's prefix.
    pub claimed: bool,
    /// Objects waiting to be uploaded (as of the last pass).
    pub backlog_objects: u64,
    /// Their bytes (a Parquet file, built only when uploaded, counts 0).
    pub backlog_bytes: u64,
    /// Confirmed uploads since start.
    pub uploads: u64,
    /// Their bytes.
    pub upload_bytes: u64,
    /// Uploads confirmed by reading back (the store's ETag was no MD5).
    pub read_backs: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// Objects deleted by retention.
    pub deletions: u64,
    /// Passes over the data directory since start.
    pub passes: u64,
    /// The newest day whose digest (or, without digests, every segment) is
    /// archived.
    pub newest_day: Option<String>,
    /// The seq of the newest checkpoint in the archive (0: none).
    pub newest_checkpoint_seq: u64,
    /// Local segments evicted: their records in the archive only (`local_days`).
    pub evicted_segments: u64,
    /// Bytes of disk eviction released since start.
    pub released_bytes: u64,
    /// Evicted segments fetched back from the archive since start.
    pub fetches: u64,
    /// Their bytes.
    pub fetch_bytes: u64,
    /// Reads of evicted segments the cache answered without a fetch.
    pub cache_hits: u64,
    /// Bytes in `DATA_DIR/archive-cache/` after the last fetch.
    pub cache_bytes: u64,
    /// The last failure, until a pass succeeds.
    pub last_error: Option<String>,
    /// What needs an operator: a claim held by another data directory, an
    /// archived object that differs from the local one, a deletion the
    /// store refused.
    pub problems: Vec<String>,
}

impl ArchiveStatus {
    /// The status of an archive at `location` for `node`.
    pub fn new(location: String, node: String) -> ArchiveStatus {
        ArchiveStatus {
            location,
            node,
            ..ArchiveStatus::default()
        }
    }

    /// A copy of everything.
    pub fn snapshot(&self) -> Snapshot {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            location: self.location.clone(),
            node: self.node.clone(),
            claimed: self.claimed.load(Ordering::Relaxed),
            backlog_objects: n(&self.backlog_objects),
            backlog_bytes: n(&self.backlog_bytes),
            uploads: n(&self.uploads),
            upload_bytes: n(&self.upload_bytes),
            read_backs: n(&self.read_backs),
            failures: n(&self.failures),
            deletions: n(&self.deletions),
            passes: n(&self.passes),
            newest_day: self.newest_day.exclusive().clone(),
            newest_checkpoint_seq: n(&self.newest_checkpoint_seq),
            evicted_segments: n(&self.evicted_segments),
            released_bytes: n(&self.released_bytes),
            fetches: n(&self.fetches),
            fetch_bytes: n(&self.fetch_bytes),
            cache_hits: n(&self.cache_hits),
            cache_bytes: n(&self.cache_bytes),
            last_error: self.last_error.exclusive().clone(),
            problems: self.problems.exclusive().clone(),
        }
    }

    pub(super) fn set_claimed(&self) {
        self.claimed.store(true, Ordering::Relaxed);
    }

    pub(super) fn set_backlog(&self, objects: u64, bytes: u64) {
        self.backlog_objects.store(objects, Ordering::Relaxed);
        self.backlog_bytes.store(bytes, Ordering::Relaxed);
    }

    /// An upload of `bytes`, counted `estimate` in the backlog.
    pub(super) fn uploaded(&self, bytes: u64, estimate: u64, read_back: bool) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
        self.upload_bytes.fetch_add(bytes, Ordering::Relaxed);
        if read_back {
            self.read_backs.fetch_add(1, Ordering::Relaxed);
        }
        let left = self.backlog_objects.load(Ordering::Relaxed);
        self.backlog_objects
            .store(left.saturating_sub(1), Ordering::Relaxed);
        let b = self.backlog_bytes.load(Ordering::Relaxed);
        self.backlog_bytes
            .store(b.saturating_sub(estimate), Ordering::Relaxed);
    }

    pub(super) fn deleted(&self) {
        self.deletions.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, error: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.exclusive() = Some(error);
    }

    pub(super) fn pass_done(&self) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        *self.last_error.exclusive() = None;
    }

    pub(super) fn set_newest(&self, day: Option<String>, checkpoint_seq: u64) {
        *self.newest_day.exclusive() = day;
        self.newest_checkpoint_seq
            .store(checkpoint_seq, Ordering::Relaxed);
    }

    pub(super) fn set_evicted(&self, segments: u64) {
        self.evicted_segments.store(segments, Ordering::Relaxed);
    }

    pub(super) fn released(&self, bytes: u64) {
        self.released_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn fetched(&self, bytes: u64) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.fetch_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn set_cache_bytes(&self, bytes: u64) {
        self.cache_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Records a problem once (the same sentence is not repeated).
    pub(super) fn problem(&self, what: String) {
        let mut p = self.problems.exclusive();
        if p.contains(&what) {
            return;
        }
        tracing::error!("Archive: {what}");
        if p.len() == PROBLEMS_MAX {
            p.remove(0);
        }
        p.push(what);
    }
}
