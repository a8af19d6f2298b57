//! The data directory: every path under it, and the few file-system
//! primitives that everything writing there shares.
//!
//! Owns:
//! - the layout: [`DataDir`] names every file and directory Stele keeps under
//!   `DATA_DIR` (no other module spells one of those names);
//! - [`write_durably`], the one way a small file is replaced so that a crash
//!   leaves either the old or the new bytes (temp file, write, fsync, rename,
//!   directory fsync), and [`fsync_dir`], with the [`fault::DIR_FSYNC`]
//!   failpoint every directory fsync goes through;
//! - [`random_bytes`], the one reader of the OS's randomness, and
//!   [`sha256_hex`];
//! - the `flock` of `DATA_DIR/LOCK` ([`DataDir::lock`]) and the free space of
//!   the data directory's file system ([`free_bytes`]).
//!
//! Never touches what is inside those files: the log owns the segments, the
//! index owns `index/`, the seal owns digests and checkpoints. This module
//! depends on nothing in the crate but [`fault`].
//!
//! ```text
//! DATA_DIR/
//!   LOCK              flock held by the one process writing this directory
//!   segments/         the log: YYYY-MM-DD.N.seg (log/)
//!   quarantine/       damaged bytes moved aside by recovery, never deleted
//!   index/kv/, index/text/   derived, rebuilt from the log (index/)
//!   digests/          signed daily digests (seal/)
//!   checkpoint.json   the newest signed checkpoint (seal/checkpoint.rs)
//!   signing.key       the Ed25519 seed, when not given elsewhere
//!   cursor.key        the key authenticating query cursors
//!   holds.json        legal holds set over HTTP
//!   retention.log     one JSON line per retention decision
//!   alert-position.json   the seq up to which every alert was delivered (alert/)
//!   archive.id        this data directory's random id, claiming its archive prefix (archive/)
//!   evicted.json      sealed segments whose records are in the archive only (log/evicted.rs)
//!   archive-cache/    evicted segments fetched back, bounded (archive/cache.rs)
//! ```

use crate::fault;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The segments directory's name under `DATA_DIR`.
pub const SEGMENTS_DIR: &str = "segments";
/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";
/// Where recovery moves damaged bytes.
pub const QUARANTINE_DIR: &str = "quarantine";
/// The derived indexes (sled under `kv/`, tantivy under `text/`).
pub const INDEX_DIR: &str = "index";
/// The signed daily digests.
pub const DIGESTS_DIR: &str = "digests";
/// The newest signed checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// The signing key's file name, in `DATA_DIR` or `$CREDENTIALS_DIRECTORY`.
pub const SIGNING_KEY_FILE: &str = "signing.key";
/// The key authenticating query cursors.
pub const CURSOR_KEY_FILE: &str = "cursor.key";
/// Legal holds set over HTTP.
pub const HOLDS_FILE: &str = "holds.json";
/// Retention's decisions, one JSON line each.
pub const RETENTION_LOG_FILE: &str = "retention.log";
/// The seq up to which every alert notification was delivered.
pub const ALERT_POSITION_FILE: &str = "alert-position.json";
/// This data directory's id in the archive's claim (`archive/uploader.rs`).
pub const ARCHIVE_ID_FILE: &str = "archive.id";
/// The segments whose records are in the archive only (`log/evicted.rs`).
pub const EVICTED_FILE: &str = "evicted.json";
/// Evicted segments fetched back from the archive (`archive/cache.rs`).
pub const ARCHIVE_CACHE_DIR: &str = "archive-cache";
/// The suffix of a file being written by [`write_durably`] (and of a
/// backup's or the log's files in the making): never a finished file.
pub const TMP_SUFFIX: &str = ".tmp";

/// A data directory: the root and every path under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (nothing is created or checked).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// `DATA_DIR` itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `DATA_DIR/segments/`.
    pub fn segments(&self) -> PathBuf {
        self.root.join(SEGMENTS_DIR)
    }

    /// `DATA_DIR/LOCK`.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// `DATA_DIR/quarantine/`.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join(QUARANTINE_DIR)
    }

    /// `DATA_DIR/index/`.
    pub fn index(&self) -> PathBuf {
        self.root.join(INDEX_DIR)
    }

    /// `DATA_DIR/index/kv/` (sled).
    pub fn index_kv(&self) -> PathBuf {
        self.index().join("kv")
    }

    /// `DATA_DIR/index/text/` (tantivy).
    pub fn index_text(&self) -> PathBuf {
        self.index().join("text")
    }

    /// `DATA_DIR/digests/`.
    pub fn digests(&self) -> PathBuf {
        self.root.join(DIGESTS_DIR)
    }

    /// `DATA_DIR/checkpoint.json`.
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join(CHECKPOINT_FILE)
    }

    /// `DATA_DIR/signing.key`.
    pub fn signing_key(&self) -> PathBuf {
        self.root.join(SIGNING_KEY_FILE)
    }

    /// `DATA_DIR/cursor.key`.
    pub fn cursor_key(&self) -> PathBuf {
        self.root.join(CURSOR_KEY_FILE)
    }

    /// `DATA_DIR/holds.json`.
    pub fn holds(&self) -> PathBuf {
        self.root.join(HOLDS_FILE)
    }

    /// `DATA_DIR/retention.log`.
    pub fn retention_log(&self) -> PathBuf {
        self.root.join(RETENTION_LOG_FILE)
    }

    /// `DATA_DIR/evicted.json`.
    pub fn evicted(&self) -> PathBuf {
        self.root.join(EVICTED_FILE)
    }

    /// `DATA_DIR/archive-cache/`.
    pub fn archive_cache(&self) -> PathBuf {
        self.root.join(ARCHIVE_CACHE_DIR)
    }

    /// `DATA_DIR/archive.id`.
    pub fn archive_id(&self) -> PathBuf {
        self.root.join(ARCHIVE_ID_FILE)
    }

    /// `DATA_DIR/alert-position.json`.
    pub fn alert_position(&self) -> PathBuf {
        self.root.join(ALERT_POSITION_FILE)
    }

    /// Takes an exclusive `flock` on `DATA_DIR/LOCK` (creating the file), so
    /// two processes never write one data directory. The lock lives as long
    /// as the returned file.
    ///
    /// A lock can outlive its owner by a moment: a process forked (to run a
    /// child) while the previous owner held it keeps a copy of the
    /// descriptor until its exec closes it. So this waits up to [`LOCK_WAIT`]
    /// before calling the directory taken.
    ///
    /// # Errors
    /// Opening the file, or the lock: when another process holds it, the
    /// operation reads "lock (another Stele process is using this data
    /// directory)".
    pub fn lock(&self) -> Result<File, IoError> {
        use std::os::unix::io::AsRawFd;
        let path = self.lock_file();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock on a valid, owned file descriptor.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(f);
            }
            let e = io::Error::last_os_error();
            let taken = e.raw_os_error() == Some(libc::EWOULDBLOCK);
            if taken && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let op = if taken {
                "lock (another Stele process is using this data directory)"
            } else {
                "lock"
            };
            return Err(IoError::new(op, &path, e));
        }
    }
}

/// How long [`DataDir::lock`] waits for `DATA_DIR/LOCK` before reporting it
/// taken.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

/// A failed file-system call: what, on which path, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct IoError {
    /// What was being done ("create", "fsync", "rename", ...).
    pub op: &'static str,
    /// The file or directory it was done to.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    fn new(op: &'static str, path: &Path, source: io::Error) -> IoError {
        IoError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IoError + 'a {
    move |source| IoError::new(op, path, source)
}

/// fsyncs a directory, so that file creations, renames and removals in it
/// survive a crash. Every directory fsync of Stele goes through here, and so
/// through the [`fault::DIR_FSYNC`] failpoint.
///
/// # Errors
/// Opening or fsyncing the directory (op "fsync directory").
pub fn fsync_dir(dir: &Path) -> Result<(), IoError> {
    fault::check(fault::DIR_FSYNC, dir)
        .and_then(|_| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

/// Replaces (or creates) `target` with `bytes` so that a crash at any
/// instant leaves either the old file or the new one, whole: the bytes go to
/// `target.tmp` (created with `mode`, minus the umask; a stale one from an
/// interrupted write is removed first), which is fsynced and renamed over
/// `target`, then the directory is fsynced.
///
/// # Errors
/// The first failing call, with its path. A failed write leaves at most a
/// `.tmp` file behind, which the next write replaces.
pub fn write_durably(target: &Path, bytes: &[u8], mode: u32) -> Result<(), IoError> {
    let tmp = tmp_path(target);
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    std::fs::rename(&tmp, target).map_err(io("rename", target))?;
    fsync_dir(parent_dir(target))
}

/// The temporary name [`write_durably`] writes `target` under.
pub fn tmp_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_os_string();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `N` bytes from the operating system's cryptographic random source, for
/// keys and tokens.
///
/// # Errors
/// When `/dev/urandom` cannot be read (op "read").
pub fn random_bytes<const N: usize>() -> Result<[u8; N], IoError> {
    let path = Path::new("/dev/urandom");
    let mut out = [0u8; N];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut out))
        .map_err(io("read", path))?;
    Ok(out)
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Bytes available to unprivileged writers on the file system holding
/// `dir`, or `None` when `statvfs` fails.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn every_path_is_under_the_root_and_distinct() {
        let d = DataDir::new("/srv/stele");
        let paths = [
            d.segments(),
            d.lock_file(),
            d.quarantine(),
            d.index(),
            d.index_kv(),
            d.index_text(),
            d.digests(),
            d.checkpoint(),
            d.signing_key(),
            d.cursor_key(),
            d.holds(),
            d.retention_log(),
        ];
        for p in &paths {
            assert!(p.starts_with("/srv/stele"), "{}", p.display());
        }
        let unique: std::collections::BTreeSet<_> = paths.iter().collect();
        assert_eq!(unique.len(), paths.len());
        assert_eq!(d.index_text(), Path::new("/srv/stele/index/text"));
    }

    #[test]
    fn write_durably_replaces_whole_with_the_mode_and_no_tmp_left() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("holds.json");
        write_durably(&target, b"old", 0o644).unwrap();
        // A stale temporary file from an interrupted write is replaced.
        std::fs::write(tmp_path(&target), b"half").unwrap();
        write_durably(&target, b"new", 0o444).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(!tmp_path(&target).exists());
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        assert_eq!(tmp_path(&target), dir.path().join("holds.json.tmp"));
    }

    #[test]
    fn write_durably_names_the_failing_call_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing").join("f");
        let err = write_durably(&target, b"x", 0o644).unwrap_err();
        assert_eq!(err.op, "create");
        assert!(err.to_string().starts_with("create "), "{err}");
        assert!(err.path.ends_with("missing/f.tmp"));
    }

    #[test]
    fn random_bytes_differ_and_sha256_is_lower_hex() {
        assert_ne!(random_bytes::<32>().unwrap(), random_bytes::<32>().unwrap());
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::new(dir.path());
        let held = d.lock().unwrap();
        // flock is per open file description: a second open in this process
        // conflicts like another process would.
        let err = d.lock().unwrap_err();
        assert!(err.op.starts_with("lock (another Stele process"), "{err}");
        drop(held);
        d.lock().unwrap();
    }

    #[test]
    fn free_bytes_of_an_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some());
        assert!(free_bytes(&dir.path().join("absent")).is_none());
    }
}
