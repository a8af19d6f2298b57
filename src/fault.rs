//! Failpoints: named places on the log's I/O paths where the tests inject
//! an OS error or a crash (the file-system seam of the fault-injection
//! tests, `tests/faults.rs`).
//!
//! They are compiled in only with the `failpoints` cargo feature, which the
//! test build turns on (a dev-dependency of the crate on itself), so the
//! `stele` binary the integration tests start has them and a release build
//! does not: there, [`check`] is an inlined `Ok(())` and [`crash`] nothing.
//!
//! A test arms a point while the daemon runs by creating a file named after
//! it in the directory named by `$STELE_FAILPOINTS` (read once, at the first
//! check), and disarms it by removing the file. The file holds the action
//! and, optionally, a filter on the path the operation is about:
//!
//! ```text
//! eio                      # the call fails with EIO
//! enospc                   # the call fails with ENOSPC (the disk is full)
//! crash                    # the process aborts here, as a kill -9 would
//! eio 2026-11-21.0.seg     # only for paths containing that text
//! ```
//!
//! Points (the `&'static str` names used in the code):
//! [`WRITE`], [`FDATASYNC`], [`DIR_FSYNC`], [`CREATED`], [`SEALED`],
//! [`READ`], [`DROPPED`].

use std::io;
use std::path::Path;

/// Appending a group of records to the active segment (`pwrite`).
pub const WRITE: &str = "log.write";
/// `fdatasync` of a segment (group commit, new segment header, footer).
pub const FDATASYNC: &str = "log.fdatasync";
/// `fsync` of a directory (after creating, sealing or removing segments).
pub const DIR_FSYNC: &str = "log.dir_fsync";
/// A new segment's header is durable, its directory entry not yet.
pub const CREATED: &str = "log.created_before_dir_fsync";
/// Rotation: the old segment is sealed, the next one not yet created.
pub const SEALED: &str = "log.sealed_before_create";
/// Reading a record of a segment (queries, exports, streams).
pub const READ: &str = "log.read";
/// Retention: one segment removed, the next (or the directory fsync) not
/// yet done.
pub const DROPPED: &str = "retention.dropped_one";

/// Fails with the armed error when `point` is armed for `path`.
#[inline(always)]
pub fn check(point: &'static str, path: &Path) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        if let Some(action) = armed::action(point, path) {
            return match action {
                armed::Action::Eio => Err(io::Error::from_raw_os_error(libc::EIO)),
                armed::Action::Enospc => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
                armed::Action::Crash => armed::crash_now(point),
            };
        }
    }
    let _ = (point, path);
    Ok(())
}

/// Aborts the process when `point` is armed (with any action) for `path`.
#[inline(always)]
pub fn crash(point: &'static str, path: &Path) {
    #[cfg(feature = "failpoints")]
    {
        if armed::action(point, path).is_some() {
            armed::crash_now(point);
        }
    }
    let _ = (point, path);
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    pub enum Action {
        Eio,
        Enospc,
        Crash,
    }

    fn dir() -> Option<&'static PathBuf> {
        static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
        DIR.get_or_init(|| std::env::var_os("STELE_FAILPOINTS").map(PathBuf::from))
            .as_ref()
    }

    pub fn action(point: &str, path: &Path) -> Option<Action> {
        let text = std::fs::read_to_string(dir()?.join(point)).ok()?;
        let mut words = text.split_whitespace();
        let action = match words.next()? {
            "eio" => Action::Eio,
            "enospc" => Action::Enospc,
            "crash" => Action::Crash,
            other => {
                eprintln!("failpoint {point}: unknown action {other:?}");
                return None;
            }
        };
        match words.next() {
            Some(filter) if !path.to_string_lossy().contains(filter) => None,
            _ => Some(action),
        }
    }

    pub fn crash_now(point: &str) -> ! {
        eprintln!("failpoint {point}: crashing");
        std::process::abort()
    }
}
