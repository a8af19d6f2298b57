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

use crate::log::format::{Header, SegmentId, HEADER_BYTES};
use crate::log::segment::{scan, Depth};
use crate::log::TORN_WINDOW_BYTES;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
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

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { op, path, source }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The segment files of `segments_dir`, oldest first; anything else there is
/// an error (the log refuses to open with it too).
pub fn segment_files(segments_dir: &Path) -> Result<Vec<(SegmentId, PathBuf)>, BackupError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(segments_dir).map_err(io("list", segments_dir))? {
        let entry = entry.map_err(io("list", segments_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match SegmentId::parse_file_name(&name) {
            Some(id) => out.push((id, entry.path())),
            None if name.ends_with(".tmp") => {} // a writer's or a backup's temporary file
            None => {
                return Err(BackupError::Refused {
                    path: entry.path(),
                    what: "not a segment file: move it out of segments/ first".into(),
                })
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies the log of `data_dir` into `dest` (created if needed): the signed
/// digests and the newest checkpoint, every sealed segment, the valid prefix
/// of the active one, and `cursor.key` (so cursors handed out before stay
/// valid after a restore).
pub fn backup(data_dir: &Path, dest: &Path) -> Result<Report, BackupError> {
    let src_segments = data_dir.join("segments");
    let dst_segments = dest.join("segments");
    if same_dir(data_dir, dest) {
        return Err(BackupError::Refused {
            path: dest.to_path_buf(),
            what: "the destination is the data directory itself".into(),
        });
    }
    std::fs::create_dir_all(&dst_segments).map_err(io("create", &dst_segments))?;
    // Digests first: one written while we copy segments then names only
    // segments that are already sealed and in the listing below. The newest
    // checkpoint too, for the same reason: it covers only records durable
    // before we copy them, so a restore verifies against it.
    copy_digests(data_dir, dest)?;
    let checkpoint = data_dir.join(crate::seal::checkpoint::CHECKPOINT_FILE);
    if let Ok(bytes) = std::fs::read(&checkpoint) {
        write_atomically(
            &dest.join(crate::seal::checkpoint::CHECKPOINT_FILE),
            &bytes,
            false,
        )?;
    }
    let files = segment_files(&src_segments)?;
    let mut report = Report::default();
    for (i, (id, path)) in files.iter().enumerate() {
        let last = i + 1 == files.len();
        // Read once: what we copy is exactly what we checked.
        let bytes = std::fs::read(path).map_err(io("read", path))?;
        let header = Header::decode(&bytes).map_err(|e| BackupError::Refused {
            path: path.clone(),
            what: format!("bad header ({e}); run `stele verify`"),
        })?;
        let s = scan(
            &bytes,
            &header,
            Depth::Frames,
            if last { TORN_WINDOW_BYTES } else { 0 },
        );
        let name = id.file_name();
        let target = dst_segments.join(&name);
        let (keep, copied) = if s.footer.is_some() {
            (&bytes[..], Copied::Sealed)
        } else if last {
            let end = (s.records_end as usize).max(HEADER_BYTES);
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
            write_atomically(&target, keep, copied == Copied::Sealed)?;
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
    crate::log::fsync_dir(&dst_segments).map_err(|e| BackupError::Refused {
        path: dst_segments.clone(),
        what: e.to_string(),
    })?;
    let key = data_dir.join("cursor.key");
    if let Ok(k) = std::fs::read(&key) {
        let target = dest.join("cursor.key");
        write_atomically(&target, &k, false)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
            .map_err(io("chmod", &target))?;
    }
    crate::log::fsync_dir(dest).map_err(|e| BackupError::Refused {
        path: dest.to_path_buf(),
        what: e.to_string(),
    })?;
    Ok(report)
}

/// Copies `DATA_DIR/digests/` (signed daily digests, small, never changed
/// once written) into `DEST/digests/`, skipping files already there.
fn copy_digests(data_dir: &Path, dest: &Path) -> Result<(), BackupError> {
    let src = data_dir.join(crate::digest::DIGESTS_DIR);
    let Ok(entries) = std::fs::read_dir(&src) else {
        return Ok(()); // digests are off for this log
    };
    let dst = dest.join(crate::digest::DIGESTS_DIR);
    std::fs::create_dir_all(&dst).map_err(io("create", &dst))?;
    for e in entries {
        let e = e.map_err(io("list", &src))?;
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".tmp") {
            continue;
        }
        let bytes = std::fs::read(e.path()).map_err(io("read", &e.path()))?;
        let target = dst.join(&name);
        if std::fs::read(&target).is_ok_and(|have| have == bytes) {
            continue;
        }
        write_atomically(&target, &bytes, true)?;
    }
    crate::log::fsync_dir(&dst).map_err(|e| BackupError::Refused {
        path: dst.clone(),
        what: e.to_string(),
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes `bytes` to `target` through a fsynced temporary file and a rename;
/// sealed copies are made read-only like the originals.
fn write_atomically(target: &Path, bytes: &[u8], read_only: bool) -> Result<(), BackupError> {
    let tmp = target.with_extension("seg.tmp");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    if read_only {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444))
            .map_err(io("chmod", &tmp))?;
    }
    if target.exists() {
        // An older copy (a previous active prefix) may be read-only.
        let _ = std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o644));
    }
    std::fs::rename(&tmp, target).map_err(io("rename", target))?;
    Ok(())
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
