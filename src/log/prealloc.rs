//! Zero-filling the active segment ahead of the writer.
//!
//! On ext4 (and most file systems) an `fdatasync` after a write that extends
//! a file must also flush the inode and block allocation; after a write *over*
//! blocks that are already allocated and written it flushes only the data.
//! Measured on the dev machine: 128 KiB write + fdatasync 0.34 ms extending,
//! 0.15 ms over zero-filled blocks (`fallocate` does not help: unwritten
//! extents must be converted, which is again metadata). So a background thread
//! writes zeros ahead of the writer, using disk time the writer leaves idle
//! while it frames records, and the writer's own syncs stay data-only.
//!
//! Invariant: the zeroer never writes a byte the writer has written or is
//! about to write. The writer announces the end of each write (`claim`)
//! before making it and waits while a zero-fill it would overlap is in flight;
//! the zeroer only starts at or after the writer's announced end.
//! Zeros after the last record are padding to recovery and verify (see
//! `segment::scan`), released on a clean close and when a segment is sealed.
//! Their amount is bounded: at most [`ZEROED_PAST_WRITER_BYTES_MAX`] past the
//! end of the writer's last write, which scan enforces (docs/FORMAT.md,
//! "Zero padding").

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Bytes zero-filled per step.
pub const PREALLOC_CHUNK_BYTES: u64 = 32 * 1024 * 1024;
/// The zeroer keeps at least this much zero-filled space ahead of the writer.
pub const PREALLOC_AHEAD_BYTES: u64 = 64 * 1024 * 1024;
/// The most zero-filled bytes the zeroer ever leaves past the end of the
/// writer's last write: a fill starts only below `writer_end +
/// PREALLOC_AHEAD_BYTES` and is at most one chunk long (96 MiB). Recovery
/// and verify accept no more zero padding than this plus the torn window
/// (`segment::scan`).
pub const ZEROED_PAST_WRITER_BYTES_MAX: u64 = PREALLOC_AHEAD_BYTES + PREALLOC_CHUNK_BYTES;

#[derive(Default)]
struct State {
    /// The active segment, while there is one to fill.
    file: Option<Arc<File>>,
    /// Bumped whenever `file` changes, so a fill of an old file is ignored.
    generation: u64,
    /// The file is zero-filled (durably) from the writer's end up to here.
    zeroed_end: u64,
    /// End of what the writer has written or is writing.
    writer_end: u64,
    /// Do not fill past this (the segment size cap).
    limit: u64,
    /// Start of the fill in flight, if any.
    busy: Option<u64>,
    stop: bool,
}

/// Handle shared by the writer and the zeroer thread.
pub(crate) struct Prealloc {
    state: Mutex<State>,
    cv: Condvar,
}

impl Prealloc {
    /// Starts the zeroer thread.
    pub(crate) fn start() -> std::io::Result<(Arc<Prealloc>, JoinHandle<()>)> {
        let p = Arc::new(Prealloc {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let q = p.clone();
        let t = std::thread::Builder::new()
            .name("stele-prealloc".into())
            .spawn(move || q.run())?;
        Ok((p, t))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no fill is in flight.
    fn idle(&self) -> MutexGuard<'_, State> {
        let mut s = self.lock();
        while s.busy.is_some() {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s
    }

    /// Makes `file` (whose records end at `end`) the one to fill, or stops
    /// filling with `None`. Returns once no fill of the previous file is in
    /// flight, so the caller may truncate or seal it.
    pub(crate) fn set_file(&self, file: Option<Arc<File>>, end: u64, limit: u64) {
        let mut s = self.idle();
        s.file = file;
        s.generation += 1;
        s.zeroed_end = end;
        s.writer_end = end;
        s.limit = limit;
        self.cv.notify_all();
    }

    /// Announces that the writer is about to write `[start, end)`; waits
    /// while a fill that could overlap it is in flight.
    pub(crate) fn claim(&self, end: u64) {
        let mut s = self.lock();
        while s.busy.is_some_and(|b| end > b) {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.writer_end = s.writer_end.max(end);
        self.cv.notify_all();
    }

    /// The writer rolled a failed write back to `end`: bytes past it are no
    /// longer zero-filled.
    pub(crate) fn rolled_back(&self, end: u64) {
        let mut s = self.idle();
        s.writer_end = end;
        s.zeroed_end = end;
    }

    /// Stops the thread (after any fill in flight).
    pub(crate) fn stop(&self) {
        let mut s = self.idle();
        s.stop = true;
        s.file = None;
        self.cv.notify_all();
    }

    fn run(&self) {
        let zeros = vec![0u8; 1 << 20];
        let mut s = self.lock();
        loop {
            if s.stop {
                return;
            }
            let start = s.zeroed_end.max(s.writer_end);
            let end = (start + PREALLOC_CHUNK_BYTES).min(s.limit);
            let wanted = s.file.is_some() && start < s.writer_end + PREALLOC_AHEAD_BYTES;
            if !wanted || end <= start {
                s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            debug_assert!(end <= s.writer_end + ZEROED_PAST_WRITER_BYTES_MAX);
            let file = s.file.clone().expect("checked");
            let generation = s.generation;
            s.busy = Some(start);
            drop(s);
            let mut ok = true;
            let mut off = start;
            while ok && off < end {
                let n = (end - off).min(zeros.len() as u64) as usize;
                ok = file.write_all_at(&zeros[..n], off).is_ok();
                off += n as u64;
            }
            ok = ok && file.sync_data().is_ok();
            s = self.lock();
            s.busy = None;
            if ok && s.generation == generation {
                s.zeroed_end = end;
            } else if !ok {
                // A full disk, say: stop filling this file; the writer's own
                // writes report any real problem. Padding already written is
                // harmless.
                tracing::debug!("Zero-filling ahead of the writer failed; continuing without.");
                s.file = None;
            }
            self.cv.notify_all();
        }
    }
}
