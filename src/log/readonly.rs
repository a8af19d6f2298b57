//! Reading a log that another process may be writing: [`ReadOnly`].
//!
//! Owns the read-only open of a data directory (or of a backup made by
//! `stele backup`, which has the same `segments/` layout): what `stele cat`
//! and `stele query --data-dir` read, beside a running `stele serve` or with
//! none. It is a snapshot: the records whole and valid when it was opened,
//! read through the same views and iterators as [`super::Log`].
//!
//! Invariants:
//! 1. **It never changes a file.** It does not take `DATA_DIR/LOCK`, creates
//!    no directory, and never truncates, renames, removes, quarantines or
//!    writes anything: every file is opened for reading only. Recovery's
//!    repairs are the writer's (`Log::open`); this open reads around what
//!    they would repair.
//! 2. **The end of the last segment is where the readable log ends.** Bytes
//!    after its last whole, CRC-valid record (a write in progress, the zero
//!    space the writer fills ahead of itself, the torn tail a crash left) are
//!    not records yet: the snapshot stops before them, never an error. A
//!    last segment shorter than its header (being created) is empty.
//!    Evidence of acknowledgement (checkpoints, digests) is not consulted:
//!    telling a torn tail from damage is `stele verify`'s job.
//! 3. **Damage anywhere else is an error**, as for strict recovery: a bad
//!    header, a sealed segment whose footer does not check, an unsealed
//!    segment that is not the last, a gap or a broken link between segments,
//!    a bad frame followed by a valid one, a foreign file in `segments/`
//!    ([`Error::Corruption`], [`Error::ForeignFile`]; I/O is [`Error::Io`]).
//! 4. **No map covers bytes a writer may remove.** The last segment is
//!    scanned from a copy read with `read(2)` (the writer truncates its zero
//!    space when it seals, which would fault a map of it), and its view maps
//!    only the whole records found, which the writer never truncates.
//!    Sealed segments are checked from their header and footer alone (two
//!    reads; their records are CRC-checked when read, as for the daemon).
//! 5. **Retention may run meanwhile.** A segment that disappears between
//!    the listing and its open was dropped from the head of the log: the
//!    snapshot starts after it. A segment dropped after the open stays
//!    readable through the open file.
//!
//! What the snapshot may hold that a reader of the daemon would not: records
//! written but not yet acknowledged (their `fdatasync` pending), and, if the
//! daemon's write then fails, records it rolls back. Both are whole and
//! CRC-valid; neither can be reported by the daemon as stored.

use super::error::{Error, Result};
use super::format::{Hash, Header, FOOTER_BYTES, GENESIS_HASH, HEADER_BYTES};
use super::recovery::{footer_agreeing, list_segments};
use super::segment::{Depth, ProblemKind, SegmentFile, SegmentView};
use super::{ChainHead, Direction, LogIter, SegmentInfo, Shared, TORN_WINDOW_BYTES};
use crate::event::StoredEvent;
use std::fs::File;
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How often the last segment is read again when it looks damaged: a seal
/// caught between truncating the zero space and writing the footer, or a
/// write landing while it is read, looks damaged for an instant.
const LAST_SEGMENT_READS_MAX: u32 = 5;
/// The pause before reading it again.
const LAST_SEGMENT_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// A snapshot of the log in a data directory, opened for reading only (see
/// the module's invariants): no lock, no repair, no write.
pub struct ReadOnly {
    shared: Arc<Shared>,
    data_dir: PathBuf,
}

impl std::fmt::Debug for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnly")
            .field("data_dir", &self.data_dir)
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

/// Where the segments read so far end.
struct Tail {
    next_seq: u64,
    last_hash: Hash,
}

impl ReadOnly {
    /// Opens the log of `data_dir` (a data directory or a backup: a
    /// directory holding `segments/`) for reading, whether or not a daemon
    /// is writing it.
    ///
    /// # Errors
    /// [`Error::Io`] when `segments/` or a segment cannot be listed, opened
    /// or read (a directory without `segments/` fails here, naming it);
    /// [`Error::Corruption`] or [`Error::ForeignFile`] for damage
    /// (invariant 3).
    pub fn open(data_dir: &Path) -> Result<ReadOnly> {
        let seg_dir = crate::datadir::DataDir::new(data_dir).segments();
        let ids = list_segments(&seg_dir)?;
        let mut views: Vec<Arc<SegmentView>> = Vec::with_capacity(ids.len());
        let mut tail = Tail {
            next_seq: 1,
            last_hash: GENESIS_HASH,
        };
        let n = ids.len();
        for (i, (id, path)) in ids.into_iter().enumerate() {
            let last = i + 1 == n;
            let opened = if last {
                open_last(&path)
            } else {
                open_sealed(&path)
            };
            let view = match opened {
                Ok(Some(v)) => v,
                // Created a moment ago, header not yet written.
                Ok(None) => break,
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    // Retention dropped it (and so everything before it)
                    // since the listing: the log now starts later.
                    views.clear();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (view, last_hash) = view;
            check_link(&view, id, views.is_empty(), &tail)?;
            tail = Tail {
                next_seq: view.first_seq() + view.count(),
                last_hash,
            };
            views.push(view);
        }
        // Evicted segments: their records are not here to read (no
        // archive is opened read-only); reads say so.
        super::evicted::mark(data_dir, &views)?;
        let first = views.first().map_or(1, |v| v.first_seq());
        let last_seq = views
            .last()
            .map_or(first - 1, |v| v.first_seq() + v.count() - 1);
        let head = ChainHead {
            seq: last_seq,
            hash: tail.last_hash,
        };
        Ok(ReadOnly {
            shared: Arc::new(Shared::new(views, head, 0)),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The directory it was opened from.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Seq of the newest event in the snapshot (`first_seq() - 1` when
    /// empty).
    pub fn last_seq(&self) -> u64 {
        self.shared.last_seq()
    }

    /// Seq of the oldest event in the snapshot.
    pub fn first_seq(&self) -> u64 {
        self.shared.first_seq()
    }

    /// The chain hash of the newest record in the snapshot (the anchor's
    /// when empty).
    pub fn head(&self) -> ChainHead {
        *self.shared.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The event with `seq`, or `None` if the snapshot does not hold it.
    pub fn get(&self, seq: u64) -> Result<Option<StoredEvent>> {
        self.shared.get(seq)
    }

    /// The snapshot's events whose seqs fall in `range`, in the given
    /// direction; an error (then the end) on damaged data, as
    /// [`super::Log::range`].
    pub fn range(&self, range: impl RangeBounds<u64>, dir: Direction) -> LogIter {
        self.shared.range(range, dir)
    }

    /// Every event of the snapshot, oldest first.
    pub fn iter(&self) -> LogIter {
        self.range(.., Direction::Forward)
    }

    /// The snapshot's segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shared.infos()
    }
}

/// A segment's view and the chain hash of its last record (its header's
/// `prev_hash` when it has none): what the next segment must link to.
type Opened = (Arc<SegmentView>, Hash);

/// A segment that is not the last: it must be sealed, which its header and
/// footer show without reading its records.
fn open_sealed(path: &Path) -> Result<Option<Opened>> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let header = read_header(&file, path)?;
    let mut tail = [0u8; FOOTER_BYTES];
    let footer = if len >= (HEADER_BYTES + FOOTER_BYTES) as u64 {
        file.read_exact_at(&mut tail, len - FOOTER_BYTES as u64)
            .map_err(|e| Error::io("read", path, e))?;
        footer_agreeing(len, &tail, &header)
    } else {
        None
    };
    let Some(f) = footer else {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset: len,
            seq: None,
            detail: "only the last segment may be unsealed, this one has no valid footer".into(),
        });
    };
    let hash = f.final_hash;
    let view = SegmentView::new(
        path,
        header,
        len - FOOTER_BYTES as u64,
        f.count,
        None,
        Some(f),
    )?;
    Ok(Some((Arc::new(view), hash)))
}

fn read_header(file: &File, path: &Path) -> Result<Header> {
    let mut h = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| Error::io("read the header of", path, e))?;
    Header::decode(&h).map_err(|e| Error::Corruption {
        path: path.to_path_buf(),
        offset: 0,
        seq: None,
        detail: format!("bad header: {e}"),
    })
}

/// The last segment: sealed, or being appended to. Scanned from a copy in
/// memory (invariant 4); `None` while it is shorter than its header.
fn open_last(path: &Path) -> Result<Option<Opened>> {
    let mut reads = 0;
    loop {
        reads += 1;
        let file = SegmentFile::read(path).map_err(|e| Error::io("read", path, e))?;
        if file.len() < HEADER_BYTES {
            return Ok(None);
        }
        let (header, s) = match file.scan(Depth::Frames, TORN_WINDOW_BYTES) {
            Ok(scanned) => scanned,
            Err(_) if file.iter().all(|&b| b == 0) => return Ok(None),
            Err(e) => {
                return Err(Error::Corruption {
                    path: path.to_path_buf(),
                    offset: 0,
                    seq: None,
                    detail: format!("bad header: {e}"),
                })
            }
        };
        match &s.problem {
            Some(p) if p.kind == ProblemKind::Corrupt => {
                if reads < LAST_SEGMENT_READS_MAX {
                    std::thread::sleep(LAST_SEGMENT_RETRY);
                    continue;
                }
                return Err(Error::Corruption {
                    path: path.to_path_buf(),
                    offset: p.offset,
                    seq: Some(p.seq),
                    detail: p.detail.clone(),
                });
            }
            // A torn or half-written tail: the snapshot ends before it.
            _ => {}
        }
        let footer = s.footer.clone().filter(|_| s.problem.is_none());
        let view = SegmentView::new(path, header, s.records_end, s.count, Some(s.sparse), footer)?;
        return Ok(Some((Arc::new(view), s.last_hash)));
    }
}

/// Checks that `view` continues the segments before it: its name, its
/// first seq and its header's link to the previous segment's last hash.
fn check_link(
    view: &SegmentView,
    id: super::format::SegmentId,
    first: bool,
    tail: &Tail,
) -> Result<()> {
    let header = &view.header;
    let bad = |detail: String| Error::Corruption {
        path: view.path.clone(),
        offset: 0,
        seq: Some(header.first_seq),
        detail,
    };
    if header.id != id {
        return Err(bad(format!("the header says segment {}", header.id)));
    }
    if first {
        return if header.first_seq >= 1 {
            Ok(())
        } else {
            Err(bad("the segment starts at seq 0".into()))
        };
    }
    if header.first_seq != tail.next_seq {
        return Err(bad(format!(
            "the segment starts at seq {} but the log so far ends before seq {} \
             (a segment is missing or out of place)",
            header.first_seq, tail.next_seq
        )));
    }
    if header.prev_hash != tail.last_hash {
        return Err(bad(
            "the header's previous hash is not the previous segment's final hash".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
