//! The log's error type. Corruption (data) is kept apart from I/O (a fault):
//! the first names a file and byte offset and is never retried, the second
//! carries the operation and the OS error.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias for the log.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the segment log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed.
    #[error("could not {op} {}: {source}", path.display())]
    Io {
        /// What we were doing ("open", "fdatasync", ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The OS error, shared so one failure can be reported to every waiter.
        #[source]
        source: Arc<io::Error>,
    },
    /// Bytes on disk are not what this version wrote.
    #[error("corrupt segment {} at byte {offset}{}: {detail}",
        path.display(), seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
    Corruption {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the frame at fault.
        offset: u64,
        /// The seq expected at that offset, when known.
        seq: Option<u64>,
        /// What is wrong, in a sentence.
        detail: String,
    },
    /// A file in the segments directory that Stele did not write.
    #[error("unexpected entry {} in the segments directory: {why}; move it elsewhere and restart", path.display())]
    ForeignFile {
        /// The entry.
        path: PathBuf,
        /// Why it is not a segment.
        why: String,
    },
    /// A durable write failed earlier; nothing is acknowledged any more.
    #[error("the log stopped accepting appends after a failed {op}: {cause}; restart Stele to recover (acknowledged events are safe)")]
    Poisoned {
        /// The failed operation.
        op: &'static str,
        /// The OS error text.
        cause: String,
    },
    /// An append larger than a configured limit ([`BYTES_PER_APPEND`]: more than one
    /// write holds).
    #[error("{what} is {got}, the limit is {max}")]
    LimitExceeded {
        /// The quantity ("batch size in events", ...).
        what: &'static str,
        /// The offending amount.
        got: u64,
        /// The limit.
        max: u64,
    },
    /// A read of a seq that retention dropped (the log now starts later).
    #[error("seq {seq} was dropped by retention (the log now starts at seq {first_seq})")]
    Dropped {
        /// The seq asked for.
        seq: u64,
        /// The oldest seq the log still holds.
        first_seq: u64,
    },
    /// The writer has shut down.
    #[error("the log is closed")]
    Closed,
    /// An evicted segment's records could not be brought back from the
    /// archive (`log::evicted`).
    #[error("segment {} is in the archive only and could not be read from it: {detail}", path.display())]
    Archived {
        /// The segment's (stub) file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

impl From<crate::datadir::IoError> for Error {
    fn from(e: crate::datadir::IoError) -> Error {
        Error::io(e.op, e.path, e.source)
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// True when the error is the disk being full (`ENOSPC`/`EDQUOT`): the
    /// append was rolled back and may be retried once space is freed.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            ),
            _ => false,
        }
    }

    /// True for errors that describe damaged data rather than a failed call.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. } | Error::ForeignFile { .. })
    }
}

/// The `what` of [`Error::LimitExceeded`] when a request's events take more bytes as
/// stored than one write of the log holds (`LogConfig::write_bytes_max`): what ingest
/// answers `413` for.
pub const BYTES_PER_APPEND: &str = "bytes per append";
