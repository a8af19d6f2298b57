//! One segment file seen from the reading side, and the scanner that checks
//! a segment's bytes.
//!
//! Owns [`SegmentView`]: the read-only memory map of a segment, how many of its
//! records are durable, and a sparse offset index (the offset of every
//! [`SPARSE_EVERY`]-th record) so that a read by seq touches at most
//! `SPARSE_EVERY` frames. Also owns [`scan`] (in `scanner`), the one function
//! that walks a segment's frames and says where and why it stops, and
//! [`SegmentFile`], the one way to open a whole segment file and scan it;
//! recovery, `stele verify`, `stele backup`, retention's dry run, the seal's
//! checks and the fuzz targets all use them, so they can never disagree about
//! what a valid segment is. The memory maps of segment files are made here and
//! nowhere else.
//!
//! Invariants:
//! 1. A view never maps or reads past its durable length: bytes the writer has
//!    not fsynced are invisible to readers.
//! 2. Every record handed out has passed its CRC check and carries the seq
//!    the reader expected; anything else is a [`Error::Corruption`] naming the
//!    file and offset.

use super::dict::{Dict, Frames};
use super::error::{Error, Result};
use super::format::{
    decode_frame, frame_len, Footer, Frame, FrameError, Header, SegmentId, FOOTER_BYTES,
    HEADER_BYTES,
};
use crate::event::{self, StoredEvent};
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Every `SPARSE_EVERY`-th record's offset is kept in memory (8 bytes per 32
/// records: 0.5 MB per GiB of 500-byte events). The chain marks' spacing, so
/// from version 6 each kept offset is a record that stores its chain hash.
pub const SPARSE_EVERY: u64 = super::format::CHAIN_MARK_EVERY;

mod scanner;
pub use scanner::{padding_bytes_max, scan, Depth, Problem, ProblemKind, Scan};

/// The mutable part of a view, behind its lock.
#[derive(Debug)]
pub(super) struct ViewState {
    /// The current map; remapped when readers need bytes past its end.
    pub(super) map: Option<Arc<Mmap>>,
    /// Offset just past the last durable record.
    pub(super) records_end: u64,
    /// Durable records.
    pub(super) count: u64,
    /// Sparse offsets; `None` until first needed for a segment opened sealed.
    sparse: Option<Vec<u64>>,
    /// Set once sealed.
    footer: Option<Footer>,
}

/// A segment file opened for checking or copying, whole: the one way
/// recovery, `stele verify`, `stele backup`, retention's dry run and the
/// seal's checks open a segment and walk it. Its bytes are a read-only
/// memory map (several segments of up to 512 MiB are checked at once), never
/// copied.
///
/// ```text
/// SegmentFile::open(path)?            map the file (an empty file has no map)
/// SegmentFile::read(path)?            or read it, when a live daemon may truncate it
///     .header()                       decode and check the header
///     .scan(depth, torn_window)       header + scan of the frames
/// ```
#[derive(Debug)]
pub struct SegmentFile {
    path: PathBuf,
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    /// An empty file (a zero-length map is an error).
    Empty,
    Map(Mmap),
    Read(Vec<u8>),
}

impl SegmentFile {
    /// Maps `path` read-only.
    ///
    /// # Errors
    /// Opening, stat or mapping the file.
    pub fn open(path: &Path) -> std::io::Result<SegmentFile> {
        let file = File::open(path)?;
        let bytes = if file.metadata()?.len() == 0 {
            Bytes::Empty
        } else {
            // SAFETY: a read-only mapping. Sealed segments never change and
            // the active one only grows while Stele runs (recovery holds the
            // data directory lock and drops its map before any truncation);
            // a change from outside is what the checks detect, read as
            // different bytes (ARCHITECTURE.md, "Reading").
            let map = unsafe { Mmap::map(&file) }?;
            #[cfg(unix)]
            let _ = map.advise(memmap2::Advice::Sequential);
            Bytes::Map(map)
        };
        Ok(SegmentFile {
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// Reads `path` into memory instead of mapping it: for a data directory
    /// a running daemon writes, whose active segment may lose its zero
    /// padding (truncated when sealed) while we look, which a map would
    /// turn into SIGBUS. What is checked is then exactly what is kept.
    ///
    /// # Errors
    /// Reading the file.
    pub fn read(path: &Path) -> std::io::Result<SegmentFile> {
        Ok(SegmentFile {
            path: path.to_path_buf(),
            bytes: Bytes::Read(std::fs::read(path)?),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Empty => &[],
            Bytes::Map(m) => m,
            Bytes::Read(v) => v,
        }
    }

    /// The file's header, decoded and checked.
    ///
    /// # Errors
    /// A short or invalid header.
    pub fn header(&self) -> std::result::Result<Header, FrameError> {
        Header::decode(self.bytes())
    }

    /// The header and a [`scan`] of the frames after it.
    ///
    /// # Errors
    /// A short or invalid header (nothing is scanned).
    pub fn scan(
        &self,
        depth: Depth,
        torn_window: u64,
    ) -> std::result::Result<(Header, Scan), FrameError> {
        let header = self.header()?;
        let s = scan(self.bytes(), &header, depth, torn_window);
        Ok((header, s))
    }
}

impl std::ops::Deref for SegmentFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

/// A segment as readers see it.
#[derive(Debug)]
pub struct SegmentView {
    /// Day and part.
    pub id: SegmentId,
    /// The file.
    pub path: PathBuf,
    /// Its decoded header.
    pub header: Header,
    file: File,
    state: RwLock<ViewState>,
    /// Reads of this file that failed (I/O errors, not corruption), and the
    /// last error's text: `/readyz` and `/metrics` name the file.
    read_failures: std::sync::Mutex<Option<(u64, String)>>,
    /// Set when a check found the file's bytes different from what was
    /// witnessed or signed (scrub, start-up verification): every read of it
    /// fails from then on, so a forged event is never served as genuine.
    damaged: std::sync::Mutex<Option<String>>,
    /// Set once evicted (`log::evicted`): the file is a stub and every read
    /// maps a copy fetched from the archive instead.
    pub(super) remote: std::sync::Mutex<Option<super::evicted::Remote>>,
    /// The map of the local file the view held when it was evicted: alive
    /// while a reader still holds it (the hole is punched only after).
    pub(super) retired: std::sync::Mutex<std::sync::Weak<Mmap>>,
    /// The segment's compression dictionary, once loaded (or given by the
    /// writer that created the segment).
    dict: std::sync::OnceLock<Arc<Dict>>,
}

/// A consistent look at a view: a map covering every durable record.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The bytes (at least `records_end` of them).
    pub map: Option<Arc<Mmap>>,
    /// Offset just past the last durable record.
    pub records_end: u64,
    /// Durable records.
    pub count: u64,
}

impl SegmentView {
    /// A view of a segment whose records and offsets are already known.
    pub fn new(
        path: &Path,
        header: Header,
        records_end: u64,
        count: u64,
        sparse: Option<Vec<u64>>,
        footer: Option<Footer>,
    ) -> Result<SegmentView> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        Ok(SegmentView {
            id: header.id,
            path: path.to_path_buf(),
            header,
            file,
            state: RwLock::new(ViewState {
                map: None,
                records_end,
                count,
                sparse,
                footer,
            }),
            read_failures: std::sync::Mutex::new(None),
            damaged: std::sync::Mutex::new(None),
            remote: std::sync::Mutex::new(None),
            retired: std::sync::Mutex::new(std::sync::Weak::new()),
            dict: std::sync::OnceLock::new(),
        })
    }

    /// Gives the view the dictionary its writer created it with.
    pub(crate) fn set_dict(&self, dict: Arc<Dict>) {
        let _ = self.dict.set(dict);
    }

    /// The segment's compression dictionary (`None`: its records are stored
    /// uncompressed), read from the file on first use and checked against
    /// the header's CRC.
    pub fn dict(&self) -> Result<Option<Arc<Dict>>> {
        if self.header.dict_len == 0 {
            return Ok(None);
        }
        if let Some(d) = self.dict.get() {
            return Ok(Some(d.clone()));
        }
        let snap = self.snapshot()?;
        let start = self.header.records_start();
        let mut read = Vec::new();
        let bytes: &[u8] = match snap.map.as_deref() {
            Some(m) if m.len() >= start => &m[..],
            // Nothing mapped yet (no durable record): read it.
            _ => {
                read.resize(start, 0);
                std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut read, 0)
                    .map_err(|e| self.read_failed("read", e))?;
                &read
            }
        };
        let bad = |e: String| self.corrupt(HEADER_BYTES as u64, None, format!("dictionary: {e}"));
        let d = self
            .header
            .dictionary(bytes)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("missing".into()))?;
        let d = Dict::new(d.to_vec()).map_err(bad)?;
        Ok(Some(self.dict.get_or_init(|| Arc::new(d)).clone()))
    }

    /// Why this segment is known to be damaged, if it is.
    pub fn damaged(&self) -> Option<String> {
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks the segment damaged: reads of it fail from now on with
    /// `detail`. Returns false if it was marked already.
    pub fn mark_damaged(&self, detail: String) -> bool {
        let mut d = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_some() {
            return false;
        }
        *d = Some(detail);
        true
    }

    /// How many reads of this file failed with an I/O error, and the last
    /// error; `None` if none did.
    pub fn read_failures(&self) -> Option<(u64, String)> {
        self.read_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records a failed read of this file and returns it as an error.
    fn read_failed(&self, op: &'static str, e: std::io::Error) -> Error {
        let err = Error::io(op, &self.path, e);
        let mut f = self.read_failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.as_ref().map_or(0, |(n, _)| *n);
        *f = Some((n + 1, err.to_string()));
        tracing::error!("{err}: queries that need this segment fail until it is readable.");
        err
    }

    /// Seq of the first record.
    pub fn first_seq(&self) -> u64 {
        self.header.first_seq
    }

    /// Durable record count.
    pub fn count(&self) -> u64 {
        self.read_state().count
    }

    /// The footer, once sealed.
    pub fn footer(&self) -> Option<Footer> {
        self.read_state().footer.clone()
    }

    /// Bytes on disk that readers may see (header, records and footer).
    pub fn durable_bytes(&self) -> u64 {
        let s = self.read_state();
        s.records_end
            + if s.footer.is_some() {
                FOOTER_BYTES as u64
            } else {
                0
            }
    }

    pub(super) fn read_state(&self) -> std::sync::RwLockReadGuard<'_, ViewState> {
        // A reader that panicked cannot leave the state half-updated: every
        // write below is a plain assignment.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, ViewState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the writer after an fsync: `new_sparse` holds the offsets of
    /// the newly durable records whose index is a multiple of SPARSE_EVERY.
    pub(crate) fn publish(&self, records_end: u64, count: u64, new_sparse: &[u64]) {
        let mut s = self.write_state();
        s.records_end = records_end;
        s.count = count;
        if let Some(sp) = s.sparse.as_mut() {
            sp.extend_from_slice(new_sparse);
        }
    }

    /// Called by the writer once the footer is durable.
    pub(crate) fn seal(&self, footer: Footer) {
        self.write_state().footer = Some(footer);
    }

    /// A map covering every durable record, remapping if the segment grew.
    pub fn snapshot(&self) -> Result<Snapshot> {
        // An evicted segment: the fetched copy (the lock is not held while
        // fetching: `evicted()`, and so `/readyz`, never wait for the archive).
        let remote = self
            .remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(r) = remote {
            return self.remote_snapshot(r);
        }
        {
            let s = self.read_state();
            let mapped = s.map.as_ref().map_or(0, |m| m.len() as u64);
            if mapped >= s.records_end || s.count == 0 {
                return Ok(Snapshot {
                    map: s.map.clone(),
                    records_end: s.records_end,
                    count: s.count,
                });
            }
        }
        let mut s = self.write_state();
        let mapped = s.map.as_ref().map_or(0, |m| m.len() as u64);
        if mapped < s.records_end {
            // SAFETY: segment files are append-only; the writer never
            // truncates below a durable length and readers never look past
            // `records_end`, so the mapped bytes do not change under us.
            // External modification of a live segment is outside the contract
            // (documented in ARCHITECTURE.md).
            let map = unsafe {
                memmap2::MmapOptions::new()
                    .len(s.records_end as usize)
                    .map(&self.file)
            }
            .map_err(|e| self.read_failed("mmap", e))?;
            #[cfg(unix)]
            let _ = map.advise(memmap2::Advice::Sequential);
            s.map = Some(Arc::new(map));
        }
        Ok(Snapshot {
            map: s.map.clone(),
            records_end: s.records_end,
            count: s.count,
        })
    }

    /// Offset of the record with index `block * SPARSE_EVERY`, building the
    /// sparse index on first use for segments opened sealed.
    pub fn block_offset(&self, block: u64) -> Result<u64> {
        {
            let s = self.read_state();
            if let Some(sp) = &s.sparse {
                return sp.get(block as usize).copied().ok_or_else(|| {
                    self.corrupt(
                        s.records_end,
                        None,
                        format!("no record with index {}", block * SPARSE_EVERY),
                    )
                });
            }
        }
        let snap = self.snapshot()?;
        let sparse = self.build_sparse(&snap)?;
        // Building touched a page per record length: give them back, so a
        // point read in a sealed segment does not leave the whole file
        // mapped into this process (page cache keeps the data).
        if let Some(map) = &snap.map {
            release_pages(map, 0, snap.records_end);
        }
        let off = sparse.get(block as usize).copied();
        self.write_state().sparse.get_or_insert(sparse);
        off.ok_or_else(|| {
            self.corrupt(
                snap.records_end,
                None,
                format!("no record with index {}", block * SPARSE_EVERY),
            )
        })
    }

    /// Walks the record lengths (not the CRCs: each record's CRC is checked
    /// when it is read) to find the sparse offsets of a sealed segment.
    fn build_sparse(&self, snap: &Snapshot) -> Result<Vec<u64>> {
        let bytes: &[u8] = snap.map.as_deref().map_or(&[], |m| &m[..]);
        let end = snap.records_end as usize;
        let mut sparse = Vec::with_capacity((snap.count / SPARSE_EVERY + 1) as usize);
        let mut off = self.header.records_start();
        let mut released = 0usize;
        for i in 0..snap.count {
            if off - released >= 8 << 20 {
                // Walking touches a page per record: give them back as we go,
                // so building never holds the whole segment resident.
                if let Some(map) = &snap.map {
                    release_pages(map, released as u64, off as u64);
                }
                released = off / 4096 * 4096;
            }
            if off + 4 > end {
                return Err(self.corrupt(
                    off as u64,
                    Some(self.header.first_seq + i),
                    "the segment ends before its footer's record count".into(),
                ));
            }
            let head = bytes[off..off + 4].try_into().expect("4 bytes");
            let len = match frame_len(head, self.header.version) {
                Ok(len) if off + len <= end => len,
                _ => {
                    return Err(self.corrupt(
                        off as u64,
                        Some(self.header.first_seq + i),
                        format!(
                            "record length field {:#010x} is impossible here",
                            u32::from_le_bytes(head)
                        ),
                    ))
                }
            };
            if i % SPARSE_EVERY == 0 {
                sparse.push(off as u64);
            }
            off += len;
        }
        Ok(sparse)
    }

    /// A corruption error about this file.
    pub fn corrupt(&self, offset: u64, seq: Option<u64>, detail: String) -> Error {
        Error::Corruption {
            path: self.path.clone(),
            offset,
            seq,
            detail,
        }
    }

    /// Decodes the record at `offset` of `snap`, which must be `seq`.
    /// Returns the event and the offset of the next record.
    pub fn read_at(&self, snap: &Snapshot, offset: u64, seq: u64) -> Result<(StoredEvent, u64)> {
        self.read_at_with(snap, offset, seq, &mut Vec::new())
    }

    /// [`Self::read_at`] decompressing into the caller's `scratch`, which a
    /// reader of many records reuses (no buffer allocated per record).
    pub fn read_at_with(
        &self,
        snap: &Snapshot,
        offset: u64,
        seq: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<(StoredEvent, u64)> {
        // The mapped bytes cannot report an I/O error (a media error
        // surfaces as SIGBUS); the failpoint stands for the EIO a read
        // would return (docs/FORMAT.md, "Reading").
        if let Err(e) = crate::fault::check(crate::fault::READ, &self.path) {
            return Err(self.read_failed("read", e));
        }
        if let Some(why) = self.damaged() {
            return Err(self.corrupt(offset, Some(seq), why));
        }
        let bytes: &[u8] = snap.map.as_deref().map_or(&[], |m| &m[..]);
        let end = snap.records_end as usize;
        let off = offset as usize;
        if off >= end {
            return Err(self.corrupt(offset, Some(seq), "record offset past the end".into()));
        }
        match decode_frame(&bytes[off..end], self.header.version) {
            Ok(Frame::Record {
                payload: stored,
                len,
                ..
            }) => {
                let payload = match self.dict()? {
                    Some(d) => d
                        .plain(stored, Frames::of(&self.header), scratch)
                        .map_err(|e| self.corrupt(offset, Some(seq), e))?,
                    None => stored,
                };
                let ev = event::decode_stored(payload, self.header.version)
                    .map_err(|e| self.corrupt(offset, Some(seq), format!("payload: {e}")))?;
                if ev.seq != seq {
                    return Err(self.corrupt(
                        offset,
                        Some(seq),
                        format!("the record carries seq {} where seq {seq} belongs", ev.seq),
                    ));
                }
                Ok((ev, offset + len as u64))
            }
            Ok(Frame::Footer(_)) => Err(self.corrupt(
                offset,
                Some(seq),
                "found the footer where a record belongs".into(),
            )),
            Err(e) => Err(self.corrupt(offset, Some(seq), format!("bad frame: {e}"))),
        }
    }

    /// Offset of the frame after the one at `offset` (lengths only).
    pub fn skip_at(&self, snap: &Snapshot, offset: u64, seq: u64) -> Result<u64> {
        let bytes: &[u8] = snap.map.as_deref().map_or(&[], |m| &m[..]);
        let off = offset as usize;
        if off + 4 > snap.records_end as usize {
            return Err(self.corrupt(offset, Some(seq), "record offset past the end".into()));
        }
        let head = bytes[off..off + 4].try_into().expect("4 bytes");
        match frame_len(head, self.header.version) {
            Ok(len) if off + len <= snap.records_end as usize => Ok((off + len) as u64),
            _ => Err(self.corrupt(
                offset,
                Some(seq),
                format!(
                    "record length field {:#010x} is impossible here",
                    u32::from_le_bytes(head)
                ),
            )),
        }
    }

    /// Offset of record `seq` (which must be durable in `snap`): the nearest
    /// sparse offset, then at most SPARSE_EVERY-1 skips.
    pub fn offset_of(&self, snap: &Snapshot, seq: u64) -> Result<u64> {
        let index = seq - self.header.first_seq;
        let mut off = self.block_offset(index / SPARSE_EVERY)?;
        let mut s = self.header.first_seq + (index / SPARSE_EVERY) * SPARSE_EVERY;
        while s < seq {
            off = self.skip_at(snap, off, s)?;
            s += 1;
        }
        Ok(off)
    }
}

/// Drops the pages of `[from, to)` of a read-only shared file map from this
/// process (`MADV_DONTNEED`); the next access faults them back in from the
/// page cache. Keeps long scans and index builds from holding the whole log
/// as resident memory.
pub(crate) fn release_pages(map: &Mmap, from: u64, to: u64) {
    const PAGE: u64 = 4096;
    let start = from / PAGE * PAGE;
    let end = to.min(map.len() as u64) / PAGE * PAGE;
    if end > start {
        // SAFETY: the map is a read-only, shared file mapping: DONTNEED only
        // drops page-table entries, and later reads see the same file bytes.
        let _ = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start as usize,
                (end - start) as usize,
            )
        };
    }
}

#[cfg(test)]
mod tests;
