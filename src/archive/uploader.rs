//! The uploader: a background thread that brings the archive level with the
//! data directory, and keeps it there.
//!
//! Each pass: claim the node's prefix (once), list what the archive holds
//! (once, then kept up to date), work out what is missing — sealed
//! segments, digest files, the Parquet file of each signed day, the newest
//! checkpoint when the last one sent is older than the interval — and
//! upload it oldest first, each confirmed ([`Store::put`]); then follow
//! retention's drops (`DATA_DIR/retention.log`). A failure ends the pass;
//! the next one waits 1 s, 2 s, 4 s ... up to `retry_max_secs`.
//!
//! Owns the claim document and the pass. Reads the data directory and the
//! log, never writes either (but for `DATA_DIR/archive.id`, once); ingest
//! never waits for it: the log hands out sealed files, nothing more.
//!
//! Invariants:
//! 1. An object is counted archived only once confirmed; what is archived
//!    is never replaced (conditional creates): an archived object that
//!    differs from the local file is a problem to report, never overwritten.
//! 2. A prefix is written by one data directory: the claim
//!    (`node=NODE/NODE.json`, a conditional create naming the data
//!    directory's random id) is checked before the first upload; another
//!    id there stops the uploader with a problem on `/readyz`.
//! 3. Archived objects are deleted only for days retention dropped
//!    (recorded in `retention.log`, which retention writes before it
//!    deletes, and after the legal holds were applied), and each such day
//!    is recorded in the archive (`retention/DAY.json`) before its objects go.

use super::keys::{Layout, Object};
use super::status::ArchiveStatus;
use super::store::{Confirmed, Store, StoreError};
use crate::datadir::DataDir;
use crate::log::format::{Day, SegmentId};
use crate::log::Log;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The claim document's version.
pub const CLAIM_VERSION: u32 = 1;

/// What the uploader needs.
pub struct Uploader {
    pub(super) store: Store,
    pub(super) layout: Layout,
    pub(super) data_dir: DataDir,
    pub(super) log: Arc<Log>,
    pub(super) status: Arc<ArchiveStatus>,
    pub(super) node: String,
    pub(super) checkpoint_interval: Duration,
    pub(super) poll: Duration,
    pub(super) retry_max: Duration,
    pub(super) parquet: bool,
    /// `local_days`: days before today kept on disk (None: all).
    pub(super) local_days: Option<u32>,
    /// "Today", for the local tier.
    pub(super) clock: Arc<dyn crate::clock::Clock>,
}

/// What one pass found to do.
enum Source {
    /// A file of the data directory, uploaded as it is.
    File(std::path::PathBuf),
    /// A day's Parquet file, built from the log.
    Parquet {
        day: Day,
        digest: std::path::PathBuf,
    },
    /// Bytes read when the pass began (the newest checkpoint: the file is
    /// replaced every second).
    Bytes(Bytes),
}

struct Pending {
    object: Object,
    source: Source,
    bytes: u64,
}

/// The uploader's memory between passes.
#[derive(Default)]
struct Known {
    claimed: bool,
    /// Key → size, of everything under the node's root.
    remote: Option<BTreeMap<String, u64>>,
    /// When the last checkpoint was sent.
    checkpoint_sent: Option<Instant>,
    /// Keys already reported as differing, or deletions refused.
    reported: BTreeSet<String>,
}

impl Uploader {
    /// The thread's body: passes until `stop` says to stop.
    pub(super) fn run(self, stop: Receiver<()>) {
        let mut known = Known::default();
        let mut backoff = Duration::ZERO;
        loop {
            let wait = match self.pass(&mut known, &stop) {
                Ok(true) => return,
                Ok(false) => {
                    backoff = Duration::ZERO;
                    self.status.pass_done();
                    self.poll
                }
                Err(e) => {
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), self.retry_max);
                    tracing::warn!("Archive: {e}; trying again in {} s.", backoff.as_secs());
                    self.status.failed(e);
                    backoff
                }
            };
            match stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    }

    fn stopped(stop: &Receiver<()>) -> bool {
        !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty))
    }

    /// One pass; `Ok(true)` when told to stop half-way.
    fn pass(&self, known: &mut Known, stop: &Receiver<()>) -> Result<bool, String> {
        if !known.claimed {
            if let Err(e) = self.claim() {
                self.backlog_unlisted(known)?;
                return Err(e);
            }
            known.claimed = true;
            self.status.set_claimed();
        }
        if known.remote.is_none() {
            match self.store.list(self.layout.root()) {
                Ok(listed) => {
                    known.remote = Some(listed.into_iter().map(|l| (l.key, l.size)).collect())
                }
                Err(e) => {
                    self.backlog_unlisted(known)?;
                    return Err(e.to_string());
                }
            }
        }
        let pending = self.pending(known)?;
        let bytes: u64 = pending.iter().map(|p| p.bytes).sum();
        self.status.set_backlog(pending.len() as u64, bytes);
        for p in pending {
            if Uploader::stopped(stop) {
                return Ok(true);
            }
            self.upload(known, p)?;
        }
        self.follow_retention(known)?;
        self.evict(known, stop)?;
        self.report_newest(known);
        Ok(false)
    }

    /// Before the archive was ever listed, everything local is the
    /// backlog, as far as anyone can tell.
    fn backlog_unlisted(&self, known: &Known) -> Result<(), String> {
        if known.remote.is_none() {
            let pending = self.pending(known)?;
            let bytes: u64 = pending.iter().map(|p| p.bytes).sum();
            self.status.set_backlog(pending.len() as u64, bytes);
        }
        Ok(())
    }

    /// The claim: created if absent; ours if it names our id.
    fn claim(&self) -> Result<(), String> {
        let id = self.data_dir_id()?;
        let key = self.layout.key(&Object::Claim);
        let doc = serde_json::json!({
            "version": CLAIM_VERSION,
            "node": self.node,
            "data_dir_id": id,
            "claimed_at": crate::event::format_micros(crate::clock::Clock::now_micros(
                &crate::clock::SystemClock
            )),
            "stele": env!("CARGO_PKG_VERSION"),
        });
        let body = Bytes::from(format!("{doc}\n"));
        match self.store.put(&key, body, true) {
            Ok(_) => {
                tracing::info!("Archive: claimed {key} for this data directory ({id}).");
                Ok(())
            }
            Err(StoreError::Exists { .. }) => {
                let got = self.store.get(&key).map_err(|e| e.to_string())?;
                let theirs = serde_json::from_slice::<serde_json::Value>(&got)
                    .ok()
                    .and_then(|v| v.get("data_dir_id")?.as_str().map(str::to_string));
                if theirs.as_deref() == Some(id.as_str()) {
                    return Ok(());
                }
                let what = format!(
                    "{key} is held by another data directory ({}): two nodes never write one \
                     prefix, so nothing is uploaded; give this node its own archive.node",
                    theirs.unwrap_or_else(|| "an unreadable claim".into())
                );
                self.status.problem(what.clone());
                Err(what)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// `DATA_DIR/archive.id`, made on first use.
    fn data_dir_id(&self) -> Result<String, String> {
        let path = self.data_dir.archive_id();
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let id = hex::encode(crate::datadir::random_bytes::<16>().map_err(|e| e.to_string())?);
        crate::datadir::write_durably(&path, format!("{id}\n").as_bytes(), 0o644)
            .map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// What the archive lacks, oldest first: segments, digests, the newest
    /// checkpoint when due, then Parquet files (derived, built last).
    fn pending(&self, known: &Known) -> Result<Vec<Pending>, String> {
        let none = BTreeMap::new();
        let remote = known.remote.as_ref().unwrap_or(&none);
        let has = |o: &Object| remote.contains_key(&self.layout.key(o));
        let mut out = Vec::new();
        for s in self.log.segments().iter().filter(|s| s.sealed) {
            let object = Object::Segment(s.id);
            if s.evicted && !has(&object) {
                // A stub is never uploaded: its records were only there.
                self.status.problem(format!(
                    "{} is evicted but no longer in the archive: its records are lost unless a \
                     backup or another copy of the archive holds it",
                    self.layout.key(&object)
                ));
                continue;
            }
            if !has(&object) {
                let bytes = std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
                out.push(Pending {
                    object,
                    source: Source::File(s.path.clone()),
                    bytes,
                });
            }
        }
        let mut digests: Vec<(String, std::path::PathBuf, u64)> = Vec::new();
        match std::fs::read_dir(self.data_dir.digests()) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let object = Object::Digest(name.clone());
                    if self.layout.parse(&self.layout.key(&object)).is_some() {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        digests.push((name, e.path(), len));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", self.data_dir.digests().display())),
        }
        digests.sort();
        for (name, path, len) in &digests {
            let object = Object::Digest(name.clone());
            if !has(&object) {
                out.push(Pending {
                    object,
                    source: Source::File(path.clone()),
                    bytes: *len,
                });
            }
        }
        let due = known
            .checkpoint_sent
            .is_none_or(|t| t.elapsed() >= self.checkpoint_interval);
        if due {
            let path = self.data_dir.checkpoint();
            let line = std::fs::read_to_string(&path).unwrap_or_default();
            if let Ok(cp) = crate::seal::checkpoint::Checkpoint::decode(line.trim_end()) {
                if cp.seq > self.newest_checkpoint(remote) {
                    out.push(Pending {
                        object: Object::Checkpoint(cp.seq),
                        bytes: line.len() as u64,
                        source: Source::Bytes(Bytes::from(line)),
                    });
                }
            }
        }
        if self.parquet {
            let first = self.log.first_seq();
            for (name, path, _) in &digests {
                let Some(day) = name
                    .strip_suffix(".digest.json")
                    .and_then(crate::seal::digest::parse_day)
                else {
                    continue;
                };
                let object = Object::Parquet(day);
                let reported = known.reported.contains(&self.layout.key(&object));
                if has(&object) || reported || self.day_dropped(path, first) {
                    continue;
                }
                out.push(Pending {
                    object,
                    source: Source::Parquet {
                        day,
                        digest: path.clone(),
                    },
                    bytes: 0,
                });
            }
        }
        Ok(out)
    }

    /// Whether the day of the digest at `path` was dropped by retention
    /// (its events are below the log's first seq): no Parquet file then.
    fn day_dropped(&self, path: &std::path::Path, first_seq: u64) -> bool {
        let Ok(bytes) = std::fs::read(path) else {
            return true;
        };
        serde_json::from_slice::<crate::seal::digest::DailyDigest>(&bytes)
            .map_or(true, |d| d.last_seq < first_seq)
    }

    fn newest_checkpoint(&self, remote: &BTreeMap<String, u64>) -> u64 {
        remote
            .keys()
            .filter_map(|k| match self.layout.parse(k) {
                Some(Object::Checkpoint(seq)) => Some(seq),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Uploads one object and records it.
    fn upload(&self, known: &mut Known, p: Pending) -> Result<(), String> {
        let key = self.layout.key(&p.object);
        let body = match &p.source {
            Source::File(path) => read_file(path)?,
            Source::Parquet { day, digest } => match self.build_parquet(*day, digest) {
                Ok(b) => b,
                Err(e) => {
                    // Derived data: reported, the rest goes on (checkpoints
                    // and later days are not held up by it).
                    if known.reported.insert(key.clone()) {
                        self.status.problem(e);
                    }
                    return Ok(());
                }
            },
            Source::Bytes(b) => b.clone(),
        };
        let len = body.len() as u64;
        let (md5, sha) = (
            super::store::md5_hex(&body),
            super::store::sha256_hex(&body),
        );
        let confirmed = match self.store.put_hashed(&key, body, &md5, &sha, true) {
            Ok(c) => c,
            Err(StoreError::Exists { .. }) => {
                // Uploaded before (an earlier run, or a listing that was
                // stale): the same bytes count; other bytes are a problem.
                let same = self
                    .store
                    .holds(&key, &md5, &sha)
                    .map_err(|e| e.to_string())?;
                // A Parquet file is derived data: an older build's counts.
                if !same && !matches!(p.object, Object::Parquet(_)) {
                    if known.reported.insert(key.clone()) {
                        self.status.problem(format!(
                            "{key} in the archive differs from the local file (SHA-256 of the \
                             local one: {sha}); it is left as it is"
                        ));
                    }
                    return Ok(());
                }
                Confirmed::ByStore
            }
            Err(e) => return Err(e.to_string()),
        };
        if let Some(r) = known.remote.as_mut() {
            r.insert(key, len);
        }
        if matches!(p.object, Object::Checkpoint(_)) {
            known.checkpoint_sent = Some(Instant::now());
        }
        self.status
            .uploaded(len, p.bytes, confirmed == Confirmed::ReadBack);
        Ok(())
    }

    /// The Parquet file of `day`, from the log's events of the digest's
    /// seq range.
    fn build_parquet(&self, day: Day, digest: &std::path::Path) -> Result<Bytes, String> {
        let raw = std::fs::read(digest).map_err(|e| format!("{}: {e}", digest.display()))?;
        let d: crate::seal::digest::DailyDigest =
            serde_json::from_slice(&raw).map_err(|e| format!("{}: {e}", digest.display()))?;
        let seal = super::parquet::DaySeal {
            day,
            digest_sha256: crate::datadir::sha256_hex(&raw),
            first_seq: d.first_seq,
            last_seq: d.last_seq,
        };
        let mut failed = None;
        let events = self
            .log
            .range(d.first_seq..=d.last_seq, crate::log::Direction::Forward)
            .map_while(|r| match r {
                Ok(e) => Some(e),
                Err(e) => {
                    failed = Some(e.to_string());
                    None
                }
            });
        let mut out = Vec::new();
        super::parquet::write_day(events, &seal, &mut out)
            .map_err(|e| format!("the Parquet file of {day}: {e}"))?;
        if let Some(e) = failed {
            return Err(format!("the Parquet file of {day}: reading the log: {e}"));
        }
        Ok(Bytes::from(out))
    }

    /// Retention's drops, followed in the archive (invariant 3).
    fn follow_retention(&self, known: &mut Known) -> Result<(), String> {
        let path = self.data_dir.retention_log();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let remote = known.remote.as_ref().expect("listed before");
        let mut drops: BTreeMap<Day, (String, Vec<String>)> = BTreeMap::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue; // a torn last line: retention writes it again
            };
            let Some(day) = v
                .get("day")
                .and_then(|d| d.as_str())
                .and_then(crate::seal::digest::parse_day)
            else {
                continue;
            };
            let mut keys: Vec<String> = v
                .get("segments")
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .filter_map(|n| SegmentId::parse_file_name(n.as_str()?))
                .map(|id| self.layout.key(&Object::Segment(id)))
                .collect();
            keys.push(self.layout.key(&Object::Parquet(day)));
            keys.retain(|k| remote.contains_key(k) && !known.reported.contains(k));
            if !keys.is_empty() {
                // A day recorded twice (a crash between the record and the
                // drop): the keys of both lines, the first line as record.
                let entry = drops
                    .entry(day)
                    .or_insert_with(|| (format!("{line}\n"), Vec::new()));
                for k in keys {
                    if !entry.1.contains(&k) {
                        entry.1.push(k);
                    }
                }
            }
        }
        for (day, (record, keys)) in drops {
            let rec = self.layout.key(&Object::Dropped(day));
            match self.store.put(&rec, Bytes::from(record), true) {
                Ok(_) | Err(StoreError::Exists { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
            for key in keys {
                match self.store.delete(&key) {
                    Ok(()) => {
                        self.status.deleted();
                        if let Some(r) = known.remote.as_mut() {
                            r.remove(&key);
                        }
                    }
                    Err(StoreError::Refused { detail, .. }) => {
                        known.reported.insert(key.clone());
                        self.status.problem(format!(
                            "retention dropped day {day}, but the archive refused to delete \
                             {key} ({detail}): check the keys' permission to delete"
                        ));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            tracing::info!("Archive: day {day} dropped by retention, recorded in the archive.");
        }
        Ok(())
    }

    /// The local tier: evicts the sealed segments of days older than
    /// `local_days`, once the archive holds them (checked again here, byte
    /// for byte) and their day's digest. A segment a reader still maps is
    /// evicted but its hole punched at a later pass.
    fn evict(&self, known: &mut Known, stop: &Receiver<()>) -> Result<(), String> {
        let segs = self.log.segments();
        let Some(days) = self.local_days else {
            return Ok(());
        };
        let today = Day::from_micros(self.clock.now_micros()).0;
        let Some(cutoff) = today.checked_sub_days(chrono::Days::new(u64::from(days))) else {
            return Ok(());
        };
        let remote = known.remote.as_ref().expect("listed before");
        let last = segs.last().map(|s| s.id);
        let mut listed = None;
        for s in segs
            .iter()
            .filter(|s| s.sealed && Some(s.id) != last && s.id.day.0 < cutoff)
        {
            if Uploader::stopped(stop) {
                return Ok(());
            }
            let key = self.layout.key(&Object::Segment(s.id));
            let digest = Object::Digest(crate::seal::digest::digest_file_name(s.id.day));
            if !remote.contains_key(&key)
                || !remote.contains_key(&self.layout.key(&digest))
                || known.reported.contains(&key)
            {
                continue;
            }
            let sha = if s.evicted {
                if !whole(&s.path, s.bytes) {
                    continue;
                }
                // Evicted while a reader mapped it: punch now.
                let list = match &listed {
                    Some(l) => l,
                    None => {
                        listed.insert(crate::log::evicted::Evicted::load(self.data_dir.root())?)
                    }
                };
                match list.get(&s.id.file_name()) {
                    Some(e) => e.sha256.clone(),
                    None => continue,
                }
            } else {
                let body = read_file(&s.path)?;
                let (md5, sha) = (
                    super::store::md5_hex(&body),
                    super::store::sha256_hex(&body),
                );
                drop(body);
                if !self
                    .store
                    .holds(&key, &md5, &sha)
                    .map_err(|e| e.to_string())?
                {
                    known.reported.insert(key.clone());
                    self.status.problem(format!(
                        "{key} in the archive differs from the local file: it is not evicted"
                    ));
                    continue;
                }
                sha
            };
            let freed = self.log.evict(s.id, &sha).map_err(|e| e.to_string())?;
            if freed > 0 {
                tracing::info!(
                    "Archive: evicted {} ({freed} bytes released; read back from {key}).",
                    s.id.file_name()
                );
            }
            self.status.released(freed);
        }
        let evicted = self.log.segments().iter().filter(|s| s.evicted).count();
        self.status.set_evicted(evicted as u64);
        Ok(())
    }

    /// The newest archived day and checkpoint, for the status.
    fn report_newest(&self, known: &Known) {
        let remote = known.remote.as_ref().expect("listed before");
        let mut newest_digest = None;
        let mut newest_segment_day = None;
        for k in remote.keys() {
            match self.layout.parse(k) {
                Some(Object::Digest(name)) => {
                    if let Some(d) = name
                        .strip_suffix(".digest.json")
                        .and_then(crate::seal::digest::parse_day)
                    {
                        newest_digest = newest_digest.max(Some(d));
                    }
                }
                Some(Object::Segment(id)) => {
                    newest_segment_day = newest_segment_day.max(Some(id.day))
                }
                _ => {}
            }
        }
        // Without digests, a day is whole once a later day's segment exists.
        let active = self.log.segments().last().map(|s| s.id.day);
        let whole = newest_digest.or(newest_segment_day.filter(|d| Some(*d) < active));
        self.status
            .set_newest(whole.map(|d| d.to_string()), self.newest_checkpoint(remote));
    }
}

/// Whether the file at `path` still holds most of its `bytes` on disk (its
/// hole not punched yet).
fn whole(path: &std::path::Path, bytes: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.blocks() * 512 > bytes / 2 + 64 * 1024)
}

/// A whole file as [`Bytes`], mapped rather than read (a sealed segment is
/// up to `log.segment_bytes_max`; it never changes).
fn read_file(path: &std::path::Path) -> Result<Bytes, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: sealed segments, digests and checkpoints are never written in
    // place (checkpoint.json is replaced by rename, which leaves this
    // mapping on the old inode).
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Bytes::from_owner(map))
}
