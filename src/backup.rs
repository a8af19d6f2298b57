//! `stele backup DEST`: a consistent copy of the log while the daemon runs.
//!
//! Sealed segments never change, so they are copied as they are (and skipped
//! when DEST already holds an identical copy: backups are incremental). The
//! active segment is being appended to: the copy takes its header and every
//! complete, valid record present when it was read — a prefix of the log
//! that recovery would also accept, without the zero padding the writer keeps
//! ahead of itself. Each file is written to a temporary name, fsynced and
//! renamed, then the directory is fsynced, so an interrupted backup never
//! leaves a half-written segment under a segment name.
//!
//! Restoring is copying DEST into an empty data directory: Stele rebuilds
//! its indexes at start.

use crate::datadir::{write_durably, DataDir};
use crate::log::format::SegmentId;
use crate::log::segment::{Depth, SegmentFile};
use crate::log::TORN_WINDOW_BYTES;
use std::path::{Path, PathBuf};

/// What a backup did with one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    /// A sealed segment, copied whole.
    Sealed,
    /// A sealed segment DEST already held byte for byte.
    Unchanged,
    /// The active segment: its header and `count` complete records.
    ActivePrefix { count: u64 },
    /// An evicted segment (`log::evicted`): its stub (header, hole, footer),
    /// its records being in the archive only.
    Stub,
}

/// One segment of a backup.
#[derive(Debug, Clone)]
pub struct Entry {
    /// File name (`YYYY-MM-DD.N.seg`).
    pub name: String,
    /// Bytes in DEST.
    pub bytes: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
    /// What was done.
    pub copied: Copied,
}

/// The result of [`backup`].
#[derive(Debug, Default)]
pub struct Report {
    /// Every segment, oldest first.
    pub entries: Vec<Entry>,
}

impl Report {
    /// Bytes written to DEST by this run.
    pub fn bytes_written(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.copied != Copied::Unchanged)
            .map(|e| e.bytes)
            .sum()
    }
}

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory holds something a backup must not copy silently.
    #[error("{}: {what}", path.display())]
    Refused {
        /// The offending file.
        path: PathBuf,
        /// A sentence saying why.
        what: String,
    },
}

impl From<crate::datadir::IoError> for BackupError {
    fn from(e: crate::datadir::IoError) -> BackupError {
        BackupError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { op, path, source }
}

/// SHA-256 of `bytes`, lower-case hex (kept here for the callers of its
/// old path).
use crate::datadir::sha256_hex;

/// The segment files of `segments_dir`, oldest first, through the log's one
/// lister ([`crate::log::list_segments`]): anything else there, a `.tmp`
/// file included, is refused, as the log refuses to open with it.
fn segment_files(segments_dir: &Path) -> Result<Vec<(SegmentId, PathBuf)>, BackupError> {
    crate::log::list_segments(segments_dir).map_err(|e| match e {
        crate::log::Error::ForeignFile { path, why } => BackupError::Refused {
            path,
            what: format!("not a segment file ({why}): move it out of segments/ first"),
        },
        e => BackupError::Refused {
            path: segments_dir.to_path_buf(),
            what: e.to_string(),
        },
    })
}

/// Removes the temporary files an interrupted backup left in
/// `DEST/segments/` ([`crate::datadir::write_durably`]'s, never a finished
/// copy), so that the destination lists only segments.
fn remove_stale_tmp(dst_segments: &Path) -> Result<(), BackupError> {
    for e in std::fs::read_dir(dst_segments).map_err(io("list", dst_segments))? {
        let path = e.map_err(io("list", dst_segments))?.path();
        if path.to_string_lossy().ends_with(crate::datadir::TMP_SUFFIX) {
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
        }
    }
    Ok(())
}

/// Copies the log of `data_dir` into `dest` (created if needed): the signed
/// digests and the newest checkpoint, every sealed segment, the valid prefix
/// of the active one, and `cursor.key` (so cursors handed out before stay
/// valid after a restore).
pub fn backup(data_dir: &Path, dest: &Path) -> Result<Report, BackupError> {
    let (src, dst) = (DataDir::new(data_dir), DataDir::new(dest));
    let src_segments = src.segments();
    let dst_segments = dst.segments();
    if same_dir(data_dir, dest) {
        return Err(BackupError::Refused {
            path: dest.to_path_buf(),
            what: "the destination is the data directory itself".into(),
        });
    }
    std::fs::create_dir_all(&dst_segments).map_err(io("create", &dst_segments))?;
    remove_stale_tmp(&dst_segments)?;
    // Digests first: one written while we copy segments then names only
    // segments that are already sealed and in the listing below. The newest
    // checkpoint too, for the same reason: it covers only records durable
    // before we copy them, so a restore verifies against it.
    copy_digests(data_dir, dest)?;
    if let Ok(bytes) = std::fs::read(src.checkpoint()) {
        write_durably(&dst.checkpoint(), &bytes, 0o644)?;
    }
    let files = segment_files(&src_segments)?;
    let mut report = Report::default();
    let evicted =
        crate::log::evicted::Evicted::load(data_dir).map_err(|e| BackupError::Refused {
            path: src.evicted(),
            what: e,
        })?;
    for (i, (id, path)) in files.iter().enumerate() {
        let last = i + 1 == files.len();
        if let Some(e) = evicted.get(&id.file_name()).filter(|_| !last) {
            let target = dst_segments.join(id.file_name());
            copy_stub(path, &target)?;
            report.entries.push(Entry {
                name: id.file_name(),
                bytes: e.bytes,
                sha256: e.sha256.clone(),
                copied: Copied::Stub,
            });
            continue;
        }
        // Read once, not mapped: what we copy is exactly what we checked.
        let file = SegmentFile::read(path).map_err(io("read", path))?;
        let window = if last { TORN_WINDOW_BYTES } else { 0 };
        let (header, s) = file
            .scan(Depth::Frames, window)
            .map_err(|e| BackupError::Refused {
                path: path.clone(),
                what: format!("bad header ({e}); run `stele verify`"),
            })?;
        let bytes = file.bytes();
        let name = id.file_name();
        let target = dst_segments.join(&name);
        let (keep, copied) = if s.footer.is_some() {
            (bytes, Copied::Sealed)
        } else if last {
            let end = (s.records_end as usize).max(header.records_start());
            (&bytes[..end], Copied::ActivePrefix { count: s.count })
        } else {
            return Err(BackupError::Refused {
                path: path.clone(),
                what: format!(
                    "an unsealed segment before the last one ({}); run `stele verify`",
                    s.problem
                        .as_ref()
                        .map_or("no footer".to_string(), |p| p.detail.clone())
                ),
            });
        };
        if s.footer.is_some() {
            if let Some(p) = &s.problem {
                return Err(BackupError::Refused {
                    path: path.clone(),
                    what: format!(
                        "damaged at offset {}: {}; run `stele verify`",
                        p.offset, p.detail
                    ),
                });
            }
        }
        let sha = sha256_hex(keep);
        let unchanged = copied == Copied::Sealed
            && std::fs::read(&target)
                .is_ok_and(|have| have.len() == keep.len() && sha256_hex(&have) == sha);
        let copied = if unchanged {
            Copied::Unchanged
        } else {
            // Sealed copies are read-only like the originals.
            let mode = if copied == Copied::Sealed {
                0o444
            } else {
                0o644
            };
            write_durably(&target, keep, mode)?;
            copied
        };
        report.entries.push(Entry {
            name,
            bytes: keep.len() as u64,
            sha256: sha,
            copied,
        });
    }
    // A segment in DEST that is newer than the source's last one would make
    // the restored log continue from another history.
    if let Some(last) = files.last().map(|(id, _)| *id) {
        for (id, path) in segment_files(&dst_segments)? {
            if id > last {
                return Err(BackupError::Refused {
                    path,
                    what:
                        "the destination holds a segment newer than the data directory's last one \
                           (a backup of another log?): use an empty destination"
                            .into(),
                });
            }
        }
    }
    if let Ok(k) = std::fs::read(src.cursor_key()) {
        write_durably(&dst.cursor_key(), &k, 0o600)?;
    }
    if let Ok(k) = std::fs::read(src.evicted()) {
        write_durably(&dst.evicted(), &k, 0o644)?;
    }
    Ok(report)
}

/// Copies the stub of an evicted segment: its header and footer at their
/// places in a sparse file of the same length.
fn copy_stub(path: &Path, target: &Path) -> Result<(), BackupError> {
    let (head, foot, len) = crate::log::evicted::read_ends(path).map_err(io("read", path))?;
    crate::log::evicted::write_stub(target, &head, &foot, len).map_err(io("write", target))
}

/// Copies `DATA_DIR/digests/` (signed daily digests, small, never changed
/// once written) into `DEST/digests/`, skipping files already there.
fn copy_digests(data_dir: &Path, dest: &Path) -> Result<(), BackupError> {
    let src = DataDir::new(data_dir).digests();
    let Ok(entries) = std::fs::read_dir(&src) else {
        return Ok(()); // digests are off for this log
    };
    let dst = DataDir::new(dest).digests();
    std::fs::create_dir_all(&dst).map_err(io("create", &dst))?;
    for e in entries {
        let e = e.map_err(io("list", &src))?;
        let name = e.file_name();
        if name.to_string_lossy().ends_with(crate::datadir::TMP_SUFFIX) {
            continue;
        }
        let bytes = std::fs::read(e.path()).map_err(io("read", &e.path()))?;
        let target = dst.join(&name);
        if std::fs::read(&target).is_ok_and(|have| have == bytes) {
            continue;
        }
        write_durably(&target, &bytes, 0o444)?;
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A segment as `GET /v1/segments` lists it.
pub fn describe(info: &crate::log::SegmentInfo, sha256: Option<String>) -> serde_json::Value {
    serde_json::json!({
        "name": info.id.file_name(),
        "day": info.id.day.to_string(),
        "part": info.id.part,
        "sealed": info.sealed,
        "bytes": info.bytes,
        "first_seq": info.first_seq,
        "last_seq": if info.count == 0 { serde_json::Value::Null } else { (info.first_seq + info.count - 1).into() },
        "count": info.count,
        "sha256": sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one `.tmp` rule: the log's lister refuses a `.tmp` in
    /// `segments/` (the log never makes one there), and a backup clears its
    /// own leftovers from DEST before listing it.
    #[test]
    fn a_tmp_file_is_refused_in_segments_but_a_backups_own_leftovers_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let segments = dir.path().join("segments");
        std::fs::create_dir(&segments).unwrap();
        std::fs::write(segments.join("2026-11-23.0.seg"), b"x").unwrap();
        let leftover = segments.join("2026-11-23.1.seg.tmp");
        std::fs::write(&leftover, b"half a copy").unwrap();
        let err = segment_files(&segments).unwrap_err();
        assert!(
            matches!(&err, BackupError::Refused { path, .. } if *path == leftover),
            "{err}"
        );
        assert!(err.to_string().contains("not a segment file"), "{err}");
        remove_stale_tmp(&segments).unwrap();
        assert!(!leftover.exists());
        let listed = segment_files(&segments).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.file_name(), "2026-11-23.0.seg");
    }
}
