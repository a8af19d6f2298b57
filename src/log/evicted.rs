//! Evicted segments: sealed segments whose records live only in the
//! archive, their local file kept as a stub of the same length.
//!
//! Owns `DATA_DIR/evicted.json` and the stub: eviction keeps a segment's
//! header and footer bytes where they are and punches a hole over the
//! records between them (`fallocate(PUNCH_HOLE | KEEP_SIZE)`, whole file-
//! system blocks), so the file's length, header and footer — all recovery
//! reads of a sealed segment — are unchanged and the disk holds two blocks.
//! Reads of its records go through a [`Fetch`] (the archive's cache),
//! which hands back a local copy of the whole original file; its bytes are
//! then checked like any segment's (every record's CRC and chain).
//!
//! ```text
//! evicted.json = {"version":1,"segments":{"YYYY-MM-DD.N.seg":{"sha256":"<64 hex>","bytes":N},...}}
//! stub         = header{128} | (hole, reads as zeros) | footer{80}     (same length as the segment)
//! ```
//!
//! Invariants:
//! 1. A segment is listed in `evicted.json` (durably) before its hole is
//!    punched: a crash in between leaves a whole file listed, which reads
//!    from the archive just the same.
//! 2. Only a sealed segment is evicted, and only once the caller confirmed
//!    the archive holds exactly its bytes (`sha256` here is what it checked).
//! 3. Nothing else is ever read from a stub's hole: every reader of segment
//!    bytes asks [`Evicted::get`] first (the log's views, `stele verify`,
//!    the scrubber, the seal's checks, retention, backup).

use super::error::{Error, Result};
use super::format::SegmentId;
use super::segment::{SegmentView, Snapshot};
use super::Log;
use crate::datadir::{write_durably, DataDir};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The version of `evicted.json` this build writes and reads.
pub const EVICTED_VERSION: u32 = 1;

/// One evicted segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// SHA-256 of the whole segment file, lower-case hex: what a fetched
    /// copy must hash to.
    pub sha256: String,
    /// Its length.
    pub bytes: u64,
}

/// `evicted.json`: file name → entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evicted {
    version: u32,
    segments: BTreeMap<String, Entry>,
}

/// Brings an evicted segment's bytes back: a local file holding exactly the
/// segment (SHA-256 `sha256`), valid until the next call for another
/// segment may evict it from a cache (a reader's map keeps its bytes).
pub trait Fetch: Send + Sync {
    /// The path of a local copy of `name`.
    ///
    /// # Errors
    /// A sentence: the archive is unavailable, the object is missing or not
    /// what was archived.
    fn fetch(&self, name: &str, sha256: &str) -> Result<PathBuf, String>;
}

impl Evicted {
    /// `DATA_DIR/evicted.json` (empty when absent).
    ///
    /// # Errors
    /// The file cannot be read or is not this format.
    pub fn load(data_dir: &Path) -> Result<Evicted, String> {
        let path = DataDir::new(data_dir).evicted();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Evicted::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let e: Evicted =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if e.version != EVICTED_VERSION {
            return Err(format!(
                "{}: version {} (this build reads {EVICTED_VERSION})",
                path.display(),
                e.version
            ));
        }
        Ok(e)
    }

    /// The entry of segment file `name`, if evicted.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.segments.get(name)
    }

    /// Every evicted segment's file name and entry.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.segments.iter()
    }

    /// Adds `name` and writes the file durably (invariant 1: call before
    /// [`punch`]).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn add(&mut self, data_dir: &Path, name: &str, entry: Entry) -> Result<(), String> {
        self.version = EVICTED_VERSION;
        self.segments.insert(name.to_string(), entry);
        self.save(data_dir)
    }

    /// Forgets segments whose files are gone (dropped by retention).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn prune(&mut self, data_dir: &Path) -> Result<(), String> {
        let segs = DataDir::new(data_dir).segments();
        let before = self.segments.len();
        self.segments.retain(|name, _| segs.join(name).exists());
        if self.segments.len() != before {
            self.save(data_dir)?;
        }
        Ok(())
    }

    fn save(&self, data_dir: &Path) -> Result<(), String> {
        let path = DataDir::new(data_dir).evicted();
        let mut text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        text.push('\n');
        write_durably(&path, text.as_bytes(), 0o644).map_err(|e| e.to_string())
    }
}

/// The bytes a stub keeps: its header and footer, read from the file at
/// `path` (the whole file's length is the segment's). The one reader of a
/// stub: `stele verify`, `stele backup` and retention's dry run call it.
///
/// # Errors
/// The file cannot be read or is shorter than a header and a footer.
pub fn read_ends(
    path: &Path,
) -> std::io::Result<(
    [u8; super::format::HEADER_BYTES],
    [u8; super::format::FOOTER_BYTES],
    u64,
)> {
    use super::format::{FOOTER_BYTES, HEADER_BYTES};
    use std::os::unix::fs::FileExt;
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut head = [0u8; HEADER_BYTES];
    let mut foot = [0u8; FOOTER_BYTES];
    f.read_exact_at(&mut head, 0)?;
    f.read_exact_at(&mut foot, len.saturating_sub(FOOTER_BYTES as u64))?;
    Ok((head, foot, len))
}

/// Writes a stub of a `len`-byte segment whose first 128 and last 80
/// bytes are `head` and `foot`, at `target` (sparse: temp file, fsync,
/// rename): what `stele backup` and `stele restore --on-demand` make.
///
/// # Errors
/// The file cannot be written.
pub fn write_stub(target: &Path, head: &[u8], foot: &[u8], len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let tmp = crate::datadir::tmp_path(target);
    let out = std::fs::File::create(&tmp)?;
    out.write_all_at(head, 0)?;
    out.set_len(len)?;
    out.write_all_at(foot, len.saturating_sub(foot.len() as u64))?;
    out.sync_all()?;
    std::fs::rename(&tmp, target)
}

/// Punches the hole of a stub into the segment file at `path` (`bytes`
/// long): from the first block boundary after the header to the last one
/// before the footer. Returns the bytes released (0 for a segment too small
/// to hold a whole block between the two).
///
/// # Errors
/// The file cannot be opened, or the file system does not punch holes.
pub fn punch(path: &Path, bytes: u64) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    const BLOCK: u64 = 4096;
    let from = (super::format::HEADER_BYTES as u64).div_ceil(BLOCK) * BLOCK;
    let to = bytes.saturating_sub(super::format::FOOTER_BYTES as u64) / BLOCK * BLOCK;
    if to <= from {
        return Ok(0);
    }
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    // SAFETY: fallocate on a descriptor we own; KEEP_SIZE leaves the length.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            from as libc::off_t,
            (to - from) as libc::off_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    f.sync_all()?;
    Ok(to - from)
}

/// Where an evicted segment's bytes come from.
#[derive(Clone)]
pub(crate) struct Remote {
    /// SHA-256 of the whole segment.
    pub sha256: String,
    /// The archive's cache; `None` while no archive is configured.
    pub fetch: Option<Arc<dyn Fetch>>,
    /// The last map of a fetched copy, reused for [`REMOTE_MAP_REUSE`]: a
    /// scan takes many snapshots. Kept no longer, so that a copy the cache
    /// has removed since gives its disk back soon.
    pub map: Option<(Arc<memmap2::Mmap>, std::time::Instant)>,
}

/// How long a view reuses the map of a fetched copy.
pub const REMOTE_MAP_REUSE: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Remote({}, fetch: {})",
            self.sha256,
            self.fetch.is_some()
        )
    }
}

/// Marks the views `evicted.json` lists as evicted (reads fail until a
/// fetcher is set): what opening a log, read-write or read-only, does.
pub(crate) fn mark(data_dir: &Path, views: &[Arc<SegmentView>]) -> Result<()> {
    let listed = Evicted::load(data_dir).map_err(|e| Error::Archived {
        path: DataDir::new(data_dir).evicted(),
        detail: e,
    })?;
    for v in views {
        if let Some(e) = listed.get(&v.id.file_name()) {
            v.set_remote(Remote {
                sha256: e.sha256.clone(),
                fetch: None,
                map: None,
            });
        }
    }
    Ok(())
}

/// Drops the entries of segments retention removed.
pub(crate) fn forget_dropped(data_dir: &Path) -> Result<()> {
    let archived = |e: String| Error::Archived {
        path: DataDir::new(data_dir).evicted(),
        detail: e,
    };
    Evicted::load(data_dir)
        .map_err(archived)?
        .prune(data_dir)
        .map_err(archived)
}

impl SegmentView {
    /// Whether the segment is evicted (its records in the archive only).
    pub fn evicted(&self) -> bool {
        self.remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Marks the segment evicted, reading through `remote` from now on, and
    /// retires the view's own map of the file.
    pub(crate) fn set_remote(&self, remote: Remote) {
        *self.remote.lock().unwrap_or_else(|p| p.into_inner()) = Some(remote);
        if let Some(map) = self.write_state().map.take() {
            *self.retired.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&map);
        }
    }

    /// Gives an evicted segment its fetcher (set once an archive starts).
    pub(crate) fn set_fetch(&self, fetch: Arc<dyn Fetch>) {
        if let Some(r) = self
            .remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            r.fetch = Some(fetch);
        }
    }

    /// Whether a reader still maps the local file of an evicted segment.
    pub(crate) fn local_map_in_use(&self) -> bool {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
            .is_some()
    }

    /// A snapshot of an evicted segment: the fetched copy, mapped for this
    /// reader only (the cache may replace the file after it; the map keeps
    /// its bytes).
    pub(super) fn remote_snapshot(&self, r: Remote) -> Result<Snapshot> {
        let archived = |detail: String| Error::Archived {
            path: self.path.clone(),
            detail,
        };
        if let Some((map, at)) = &r.map {
            let s = self.read_state();
            if at.elapsed() < REMOTE_MAP_REUSE && map.len() as u64 >= s.records_end {
                return Ok(Snapshot {
                    map: Some(map.clone()),
                    records_end: s.records_end,
                    count: s.count,
                });
            }
        }
        let fetch = r.fetch.as_ref().ok_or_else(|| {
            archived("no archive is configured ([archive] url) to read it from".into())
        })?;
        let path = fetch
            .fetch(&self.id.file_name(), &r.sha256)
            .map_err(archived)?;
        let file = File::open(&path).map_err(|e| archived(format!("{}: {e}", path.display())))?;
        let s = self.read_state();
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < s.records_end {
            return Err(archived(format!(
                "the fetched copy holds {len} bytes, the segment {}",
                s.records_end
            )));
        }
        // SAFETY: the cache writes a copy under a temporary name and renames
        // it into place; it never writes a file in place.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(s.records_end as usize)
                .map(&file)
        }
        .map_err(|e| archived(format!("mmap: {e}")))?;
        let map = Arc::new(map);
        if let Some(r) = self
            .remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            r.map = Some((map.clone(), std::time::Instant::now()));
        }
        Ok(Snapshot {
            map: Some(map),
            records_end: s.records_end,
            count: s.count,
        })
    }
}

impl Log {
    /// Reads evicted segments through `fetch` from now on (the archive's
    /// cache, once it starts).
    pub fn set_fetcher(&self, fetch: Arc<dyn Fetch>) {
        *self.shared.fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(fetch.clone());
        for v in self.shared.segments().iter() {
            v.set_fetch(fetch.clone());
        }
    }

    /// Evicts sealed segment `id`, whose whole file the caller confirmed the
    /// archive holds with SHA-256 `sha256` (invariants of [`crate::log::evicted`]).
    /// Returns the bytes released: 0 while a reader still maps the local
    /// file (call again later: the hole is punched then).
    ///
    /// # Errors
    /// Not a sealed segment other than the newest, or a file operation failed.
    pub fn evict(&self, id: SegmentId, sha256: &str) -> Result<u64> {
        let view = {
            let segs = self.shared.segments();
            let last = segs.last().map(|v| v.id);
            segs.iter()
                .find(|v| v.id == id && Some(id) != last && v.footer().is_some())
                .cloned()
        };
        let name = id.file_name();
        let Some(view) = view else {
            return Err(Error::Archived {
                path: self.data_dir.join(&name),
                detail: "only a sealed segment older than the newest one is evicted".into(),
            });
        };
        let bytes = view.durable_bytes();
        if !view.evicted() {
            let mut list = Evicted::load(&self.data_dir).map_err(|e| Error::Archived {
                path: view.path.clone(),
                detail: e,
            })?;
            list.add(
                &self.data_dir,
                &name,
                Entry {
                    sha256: sha256.to_string(),
                    bytes,
                },
            )
            .map_err(|e| Error::Archived {
                path: view.path.clone(),
                detail: e,
            })?;
            let fetch = self
                .shared
                .fetch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            view.set_remote(Remote {
                sha256: sha256.to_string(),
                fetch,
                map: None,
            });
            self.shared
                .evicted_below
                .fetch_max(view.first_seq() + view.count(), Ordering::AcqRel);
        }
        if view.local_map_in_use() {
            return Ok(0);
        }
        punch(&view.path, bytes).map_err(|e| Error::io("punch a hole in", &view.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_persist_and_prune_with_their_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("segments")).unwrap();
        std::fs::write(dir.join("segments/2026-12-01.0.seg"), b"x").unwrap();
        assert_eq!(Evicted::load(dir).unwrap(), Evicted::default());
        let mut e = Evicted::default();
        let entry = Entry {
            sha256: "ab".repeat(32),
            bytes: 1,
        };
        e.add(dir, "2026-12-01.0.seg", entry.clone()).unwrap();
        e.add(dir, "2026-12-02.0.seg", entry.clone()).unwrap();
        let mut back = Evicted::load(dir).unwrap();
        assert_eq!(back.get("2026-12-01.0.seg"), Some(&entry));
        back.prune(dir).unwrap();
        let back = Evicted::load(dir).unwrap();
        assert_eq!(back.iter().count(), 1);
        std::fs::write(dir.join("evicted.json"), "{\"version\":9,\"segments\":{}}").unwrap();
        assert!(Evicted::load(dir).unwrap_err().contains("version 9"));
    }

    #[test]
    fn a_punched_file_keeps_its_length_header_and_footer_and_releases_blocks() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s");
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&path, &bytes).unwrap();
        let before = std::fs::metadata(&path).unwrap().blocks();
        let freed = punch(&path, bytes.len() as u64).unwrap();
        assert!(freed > 990_000, "{freed}");
        let after = std::fs::read(&path).unwrap();
        assert_eq!(after.len(), bytes.len());
        assert_eq!(after[..128], bytes[..128]);
        let n = bytes.len();
        assert_eq!(after[n - 80..], bytes[n - 80..]);
        assert!(after[4096..8192].iter().all(|b| *b == 0));
        let blocks = std::fs::metadata(&path).unwrap().blocks();
        assert!(blocks * 512 <= 16 * 1024, "{before} → {blocks} blocks");
    }
}
