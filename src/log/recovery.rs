//! Opening a data directory: find the segments, check how they link, and
//! repair only what a crash can leave behind.
//!
//! Owns the rules of what recovery may change on disk:
//! 1. A torn tail of the *last* segment (bytes after the last whole record
//!    that hold no valid frame and fit in one write) is truncated, counted and
//!    logged. A last segment shorter than a header (a crash while creating it)
//!    is removed.
//! 2. Anything else (a bad header, a sealed segment without a valid footer, a
//!    gap in seqs or chain between segments, a bad frame followed by valid
//!    ones) is corruption: in [`RecoveryMode::Strict`] opening fails with the
//!    file, byte offset and seq; in [`RecoveryMode::Salvage`] damaged bytes are
//!    *moved* to `DATA_DIR/quarantine/` (never deleted) and the log continues
//!    after the damage, which `stele verify` keeps reporting.
//! 3. Sealed segments are checked by header, footer and linkage at open (O(1)
//!    each); their records are CRC-checked on every read and fully by
//!    `stele verify`. The last segment is scanned frame by frame.

use super::error::{Error, Result};
use super::format::{Footer, Hash, Header, SegmentId, FOOTER_BYTES, GENESIS_HASH, HEADER_BYTES};
use super::segment::{scan, Depth, ProblemKind, SegmentFile, SegmentView};
use super::{fsync_dir, RecoveryMode, TORN_WINDOW_BYTES};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What recovery found and did, for the startup log and `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Segments opened.
    pub segments: usize,
    /// Durable events in the log after recovery.
    pub events: u64,
    /// Bytes of torn tail truncated from the last segment.
    pub torn_bytes_truncated: u64,
    /// Zero bytes the writer had filled ahead of the last record, released.
    pub padding_bytes_released: u64,
    /// A last segment removed because it was shorter than its header.
    pub removed_partial_segment: Option<PathBuf>,
    /// Files written to the quarantine directory (salvage mode).
    pub quarantined: Vec<PathBuf>,
    /// Damage accepted in salvage mode, one sentence each.
    pub damage: Vec<String>,
}

pub(crate) struct Recovered {
    pub views: Vec<Arc<SegmentView>>,
    pub active: Option<(Arc<SegmentView>, File)>,
    pub newest: Option<SegmentId>,
    pub next_seq: u64,
    pub last_hash: Hash,
    pub report: RecoveryReport,
}

/// Lists the segment files of `dir` in log order. Any other entry is an
/// error: Stele never guesses what a foreign file means.
pub fn list_segments(dir: &Path) -> Result<Vec<(SegmentId, PathBuf)>> {
    let mut ids = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(SegmentId::parse_file_name) else {
            return Err(Error::ForeignFile {
                path,
                why: "its name is not YYYY-MM-DD.N.seg".into(),
            });
        };
        let ft = entry.file_type().map_err(|e| Error::io("stat", &path, e))?;
        if !ft.is_file() {
            return Err(Error::ForeignFile {
                path,
                why: "it is not a regular file".into(),
            });
        }
        ids.push((id, path));
    }
    ids.sort();
    Ok(ids)
}

fn corrupt(path: &Path, offset: u64, seq: Option<u64>, detail: String) -> Error {
    Error::Corruption {
        path: path.to_path_buf(),
        offset,
        seq,
        detail,
    }
}

pub(crate) fn recover(
    data_dir: &Path,
    seg_dir: &Path,
    mode: RecoveryMode,
    acked_through: u64,
) -> Result<Recovered> {
    let ids = list_segments(seg_dir)?;
    let mut out = Recovered {
        views: Vec::new(),
        active: None,
        newest: None,
        next_seq: 1,
        last_hash: GENESIS_HASH,
        report: RecoveryReport::default(),
    };
    // In salvage mode a problem becomes a logged sentence instead of an error.
    let accept = |e: Error, report: &mut RecoveryReport| -> Result<()> {
        match mode {
            RecoveryMode::Strict => Err(e),
            RecoveryMode::Salvage => {
                tracing::warn!("Salvage mode: accepting damage: {e}.");
                report.damage.push(e.to_string());
                Ok(())
            }
        }
    };
    let n = ids.len();
    for (i, (id, path)) in ids.into_iter().enumerate() {
        let last = i + 1 == n;
        let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        let torn_creation = last
            && (len < HEADER_BYTES as u64
                || (len == HEADER_BYTES as u64 && {
                    let mut h = [0u8; HEADER_BYTES];
                    std::os::unix::fs::FileExt::read_exact_at(&file, &mut h, 0).is_ok()
                        && Header::decode(&h).is_err()
                })
                || dictionary_cut_short(&file, len));
        if torn_creation {
            // Only the header (and its dictionary) is written before a
            // segment's first fsync, so a last file holding no whole header,
            // or a header whose dictionary is not whole, and nothing after
            // it is a creation cut short by a crash.
            std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            fsync_dir(seg_dir)?;
            tracing::warn!(
                "Removed {} ({len} bytes): a segment whose creation a crash interrupted.",
                path.display()
            );
            out.report.removed_partial_segment = Some(path);
            break;
        }
        // SAFETY: nothing else writes the segment files while we hold the
        // data directory lock; the map is dropped before any truncation.
        let map = SegmentFile::open(&path).map_err(|e| Error::io("mmap", &path, e))?;
        let header = match map.header() {
            Ok(h) => h,
            Err(e) => {
                accept(
                    corrupt(&path, 0, None, format!("bad header: {e}")),
                    &mut out.report,
                )?;
                drop(map);
                quarantine_file(data_dir, &path, &mut out.report)?;
                continue;
            }
        };
        if header.id != id {
            accept(
                corrupt(
                    &path,
                    0,
                    None,
                    format!("the header says segment {}", header.id),
                ),
                &mut out.report,
            )?;
        }
        if header.first_seq != out.next_seq && !(out.views.is_empty() && header.first_seq >= 1) {
            accept(
                corrupt(
                    &path,
                    0,
                    Some(header.first_seq),
                    format!(
                        "the segment starts at seq {} but the log so far ends before seq {} \
                         (a segment is missing or out of place)",
                        header.first_seq, out.next_seq
                    ),
                ),
                &mut out.report,
            )?;
        } else if header.prev_hash != out.last_hash && !out.views.is_empty() {
            accept(
                corrupt(
                    &path,
                    0,
                    Some(header.first_seq),
                    "the header's previous hash is not the previous segment's final hash".into(),
                ),
                &mut out.report,
            )?;
        }
        if !last {
            if let Some(f) = sealed_footer(map.bytes(), &header) {
                out.next_seq = f.last_seq + 1;
                out.last_hash = f.final_hash;
                out.report.events += f.count;
                let view = SegmentView::new(
                    &path,
                    header,
                    len - FOOTER_BYTES as u64,
                    f.count,
                    None,
                    Some(f),
                )?;
                out.views.push(Arc::new(view));
                out.newest = Some(id);
                continue;
            }
        }
        let s = scan(map.bytes(), &header, Depth::Frames, TORN_WINDOW_BYTES);
        drop(map);
        let mut records_end = s.records_end;
        if !last && (s.problem.is_some() || s.footer.is_none()) {
            let (offset, seq, why) = match &s.problem {
                Some(p) => (p.offset, p.seq, p.detail.clone()),
                None => (
                    s.records_end,
                    header.first_seq + s.count,
                    "the records end without a footer".into(),
                ),
            };
            accept(
                corrupt(
                    &path,
                    offset,
                    Some(seq),
                    format!("only the last segment may be unsealed, this one has no valid footer: {why}"),
                ),
                &mut out.report,
            )?;
        } else if last && s.problem.is_none() && s.padding > 0 {
            truncate(&path, s.records_end)?;
            tracing::info!(
                "Released {} bytes of zero-filled space after the last record of {}.",
                s.padding,
                path.display()
            );
            out.report.padding_bytes_released += s.padding;
        } else if let Some(p) = s.problem.as_ref().filter(|_| last) {
            let err = corrupt(&path, p.offset, Some(p.seq), p.detail.clone());
            // A tail is torn only beyond everything known to be acknowledged:
            // a bad record at or below `acked_through` is damage.
            let acked = p.seq <= acked_through;
            if p.kind == ProblemKind::TornTail && !acked {
                let torn = len - s.padding - s.records_end;
                truncate(&path, s.records_end)?;
                out.report.padding_bytes_released += s.padding;
                tracing::warn!(
                    "Truncated a torn tail of {torn} bytes from {} at byte {} \
                     (the unacknowledged end of a write cut short by a crash); \
                     the log ends at seq {}.",
                    path.display(),
                    s.records_end,
                    header.first_seq + s.count - 1
                );
                out.report.torn_bytes_truncated += torn;
            } else {
                match mode {
                    RecoveryMode::Strict => {
                        return Err(corrupt(
                            &path,
                            p.offset,
                            Some(p.seq),
                            format!(
                                "{}; this is damage, not a torn write. Run `stele verify` for \
                                 a full report; to continue after the damage, set \
                                 recovery = \"salvage\" under [log] (`stele append`: \
                                 --recovery salvage); the damaged bytes are moved to \
                                 DATA_DIR/quarantine, not deleted",
                                acked_note(p.detail.clone(), acked.then_some(acked_through))
                            ),
                        ))
                    }
                    RecoveryMode::Salvage => {
                        accept(err, &mut out.report)?;
                        let q = save_tail(data_dir, &path, p.offset)?;
                        out.report.quarantined.push(q);
                        truncate(&path, p.offset)?;
                        records_end = p.offset;
                    }
                }
            }
        }
        out.next_seq = header.first_seq + s.count;
        out.last_hash = s.last_hash;
        out.report.events += s.count;
        out.newest = Some(id);
        let sealed = s.footer.is_some() && s.problem.is_none();
        let view = Arc::new(SegmentView::new(
            &path,
            header,
            records_end,
            s.count,
            Some(s.sparse),
            s.footer.clone(),
        )?);
        out.views.push(view.clone());
        if last && !sealed {
            let wfile = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("open for writing", &path, e))?;
            out.active = Some((view, wfile));
        }
    }
    out.report.segments = out.views.len();
    let last = out.next_seq - 1;
    if last < acked_through {
        // Whole records (or segments) after the end of the log were
        // acknowledged: they were cut or deleted, which no crash does.
        let (path, offset) = match out.views.last() {
            Some(v) => (v.path.clone(), v.durable_bytes()),
            None => (seg_dir.to_path_buf(), 0),
        };
        let detail = format!(
            "the log ends at seq {last}, but durable evidence (a signed checkpoint, the indexes \
             or the digests) shows seqs through {acked_through} were acknowledged: acknowledged \
             events were removed. Run `stele verify`; restore the missing segments from a \
             backup, or set recovery = \"salvage\" under [log] to accept the loss (the seqs after {last} \
             are then given out again)"
        );
        accept(
            corrupt(&path, offset, Some(last + 1), detail),
            &mut out.report,
        )?;
    }
    Ok(out)
}

/// A damage description, saying when the damaged seq was acknowledged.
fn acked_note(detail: String, acked_through: Option<u64>) -> String {
    match acked_through {
        Some(a) => format!(
            "{detail} (an acknowledged record: durable evidence shows seqs through {a} were \
             acknowledged, so this is not the torn end of a write)"
        ),
        None => detail,
    }
}

/// The footer of a segment that is sealed and whose footer agrees with its
/// header; `None` otherwise.
fn sealed_footer(map: &[u8], header: &Header) -> Option<Footer> {
    if map.len() < HEADER_BYTES + FOOTER_BYTES {
        return None;
    }
    footer_agreeing(map.len() as u64, &map[map.len() - FOOTER_BYTES..], header)
}

/// The footer decoded from `tail` (the last [`FOOTER_BYTES`] of a file of
/// `len` bytes) when it is valid and agrees with `header`; `None`
/// otherwise. Shared with the read-only open, which reads only those bytes.
pub(super) fn footer_agreeing(len: u64, tail: &[u8], header: &Header) -> Option<Footer> {
    if len < (HEADER_BYTES + FOOTER_BYTES) as u64 {
        return None;
    }
    let f = Footer::decode(tail).ok()?;
    if f.first_seq != header.first_seq || (f.count == 0 && f.final_hash != header.prev_hash) {
        return None;
    }
    // A footer claiming more records than fit cannot be right.
    let room = len - (HEADER_BYTES + FOOTER_BYTES) as u64;
    let fit = room / super::format::record_frame_bytes_min(header.version) as u64;
    (f.count <= fit && (f.count > 0 || room == 0)).then_some(f)
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open for truncation", path, e))?;
    f.set_len(len).map_err(|e| Error::io("truncate", path, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", path, e))
}

fn quarantine_dir(data_dir: &Path) -> Result<PathBuf> {
    let q = crate::datadir::DataDir::new(data_dir).quarantine();
    std::fs::create_dir_all(&q).map_err(|e| Error::io("create", &q, e))?;
    Ok(q)
}

/// Copies bytes `from..` of a segment into the quarantine directory, durably.
fn save_tail(data_dir: &Path, path: &Path, from: u64) -> Result<PathBuf> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let q = quarantine_dir(data_dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dest = q.join(format!("{name}.from-byte-{from}"));
    crate::datadir::write_durably(&dest, &bytes[from as usize..], 0o644)?;
    tracing::warn!(
        "Moved {} damaged bytes of {} to {}.",
        bytes.len() as u64 - from,
        path.display(),
        dest.display()
    );
    Ok(dest)
}

/// Moves a whole segment into the quarantine directory.
fn quarantine_file(data_dir: &Path, path: &Path, report: &mut RecoveryReport) -> Result<()> {
    let q = quarantine_dir(data_dir)?;
    let dest = q.join(path.file_name().unwrap_or_default());
    std::fs::rename(path, &dest).map_err(|e| Error::io("move to quarantine", path, e))?;
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    fsync_dir(&q)?;
    tracing::warn!("Moved {} to {}.", path.display(), dest.display());
    report.quarantined.push(dest);
    Ok(())
}

/// A file holding a valid header that announces a dictionary, and no more
/// than the header and the dictionary's room, whose dictionary is not whole.
fn dictionary_cut_short(file: &File, len: u64) -> bool {
    let mut h = [0u8; HEADER_BYTES];
    if std::os::unix::fs::FileExt::read_exact_at(file, &mut h, 0).is_err() {
        return false;
    }
    let Ok(header) = Header::decode(&h) else {
        return false;
    };
    if header.dict_len == 0 || len > header.records_start() as u64 {
        return false;
    }
    let mut bytes = vec![0u8; len as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut bytes, 0).is_ok()
        && header.dictionary(&bytes).is_err()
}
