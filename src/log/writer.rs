//! The single writer: group commit, rotation and sealing.
//!
//! Owns the active segment's write handle and the chain state (next seq, last
//! hash). One thread runs [`Writer::run`]; appenders send it requests over a
//! bounded channel and wait on a oneshot reply. The writer drains every
//! request already queued (up to `write_bytes_max`), encodes them into one
//! buffer, writes it with one `pwrite` and makes it durable with one
//! `fdatasync`, then hands each request's events (stamped with their seq and
//! time) to the log's tail, publishes the new durable seq and replies to
//! every request in the group: many appenders share one fsync.
//!
//! Invariants:
//! 1. A reply `Ok` is sent only after the `fdatasync` covering the request's
//!    bytes returned success.
//! 2. A failed `fdatasync` poisons the writer for good: its outcome is unknown
//!    (the kernel may have dropped the dirty pages), so nothing is ever
//!    acknowledged again by this process. Recovery on restart re-reads the
//!    file.
//! 3. A failed `pwrite` (disk full, say) truncates the file back to its last
//!    durable length and rolls back the chain state, so appends can resume; if
//!    that truncate fails too, the writer is poisoned.
//! 4. Records in one segment all belong to its UTC day (of `received_at`, which
//!    never goes backwards) and a segment exceeds `segment_bytes_max` only when
//!    a single request alone is larger.

use super::batch::{Batch, Reply};
use super::dict::{self, Dict, Trainer};
use super::error::{Error, Result};
use super::format;
use super::format::{
    decode_frame, encode_record, encode_record_stored, Day, Footer, Frame, Hash, Header, SegmentId,
    FOOTER_BYTES, FORMAT_VERSION, RECORD_OVERHEAD_BYTES,
};
use super::prealloc::Prealloc;
use super::recovery::Recovered;
use super::segment::{SegmentView, SPARSE_EVERY};
use super::tail::{Freed, Run};
use super::{fsync_dir, Appended, LogConfig, Shared, WitnessedSegment};
use crate::clock::Clock;
use crate::event::{self, StoredEvent};
use crate::fault;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// What the writer is asked to do.
pub(crate) enum Request {
    /// Append a batch; reply once durable.
    Append(Batch, Reply),
    /// Seal the active segment if its UTC day is over (the writer also does
    /// this by itself about once a second).
    Rotate(oneshot::Sender<Result<()>>),
}

/// The active segment, writable.
struct Active {
    view: Arc<SegmentView>,
    file: Arc<File>,
    /// Durable length (header plus whole records).
    len: u64,
    /// Durable records.
    count: u64,
    /// SHA-256 of the durable bytes, fed with exactly what this writer wrote
    /// (for an inherited segment, first with the prefix read back at open).
    sha: Sha256,
    /// For a segment inherited from an earlier process: the last seq it held
    /// at open (see [`WitnessedSegment::inherited_through`]).
    inherited_through: Option<u64>,
    /// The segment's compression dictionary: its records are stored
    /// compressed with it (`None`: uncompressed).
    dict: Option<Arc<Dict>>,
}

/// Chain state, saved at the start of a group so a failed write can roll back.
#[derive(Clone, Copy)]
struct Chain {
    next_seq: u64,
    last_hash: Hash,
    last_received_at: i64,
}

/// One request of a group, waiting for the group's fsync.
struct Waiter {
    reply: Reply,
    receipt: Appended,
    /// The events, stamped, until the tail takes them.
    stored: Vec<StoredEvent>,
    /// Their encoded bytes (the tail's measure).
    bytes: usize,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    cfg: LogConfig,
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    active: Option<Active>,
    /// Id of the newest segment on disk (sealed or not), for naming the next.
    newest: Option<SegmentId>,
    chain: Chain,
    poisoned: Option<Error>,
    buf: Vec<u8>,
    /// Offsets (absolute) of new records that start a sparse block.
    new_sparse: Vec<u64>,
    /// Where in `buf` the last record's frame starts (marked at the commit).
    last_frame: Option<usize>,
    /// State at the start of the pending group.
    group_start: Chain,
    waiters: Vec<Waiter>,
    prealloc: Arc<Prealloc>,
    prealloc_thread: Option<std::thread::JoinHandle<()>>,
    /// Trains the dictionaries new segments get.
    trainer: Trainer,
    cctx: zstd::zstd_safe::CCtx<'static>,
    /// A record's stored form, when compressed.
    zbuf: Vec<u8>,
    /// Payloads appended, for sampling every `dict::SAMPLE_EVERY`-th (every
    /// one while the active segment has no dictionary).
    appended: u64,
    /// Payload bytes of the records in `buf`: as encoded, and as stored
    /// (compressed, or the same); counted once their group is durable.
    pending_payload: (u64, u64),
}

impl Writer {
    /// The writer of the segments in `dir`, continuing where recovery left
    /// the log (`rec`: the active segment, the newest segment id, the next
    /// seq and the chain hash; its views and report were taken by
    /// `Log::open` for the readers and the log).
    pub(crate) fn new(
        shared: Arc<Shared>,
        cfg: LogConfig,
        clock: Arc<dyn Clock>,
        dir: PathBuf,
        rec: Recovered,
        last_received_at: i64,
        prealloc: (Arc<Prealloc>, std::thread::JoinHandle<()>),
    ) -> Writer {
        let Recovered {
            active,
            newest,
            next_seq,
            last_hash,
            ..
        } = rec;
        let active = active.map(|(view, file)| {
            let len = view.durable_bytes();
            let count = view.count();
            let file = Arc::new(file);
            prealloc
                .0
                .set_file(Some(file.clone()), len, cfg.segment_bytes_max);
            let sha = hash_prefix(&view.path, len);
            // Recovery checked the dictionary's CRC; a segment whose dictionary
            // does not load is sealed at the first append instead (see `append`).
            let dict = view.dict().ok().flatten();
            Active {
                inherited_through: Some(view.header.first_seq + count - 1),
                view,
                file,
                len,
                count,
                sha,
                dict,
            }
        });
        let slot = shared.dict.clone();
        if cfg.dict_sample_bytes != 0 {
            // A restart keeps compressing: new segments get the newest
            // dictionary on disk until the trainer makes a fresher one.
            let inherited = active.as_ref().and_then(|a| a.dict.clone());
            *slot.lock().unwrap_or_else(|p| p.into_inner()) =
                inherited.or_else(|| shared.newest_dictionary());
        }
        // Before the first dictionary, what the last run stored counts as
        // samples: a log restarted more often than it takes in the first
        // dictionary's share of `dict_sample_bytes` still gets one.
        let stored = match &active {
            Some(a) if cfg.dict_sample_bytes != 0 && a.dict.is_none() => {
                let none_yet = slot.lock().unwrap_or_else(|p| p.into_inner()).is_none();
                if none_yet {
                    stored_samples(&a.view, cfg.dict_sample_bytes)
                } else {
                    dict::Samples::default()
                }
            }
            _ => dict::Samples::default(),
        };
        let trainer = Trainer::start(cfg.dict_sample_bytes, slot.clone(), stored).unwrap_or_else(
            |e| {
                tracing::warn!("Could not start the dictionary trainer ({e}): new segments are stored uncompressed.");
                Trainer::start(0, slot, dict::Samples::default()).expect("no thread to start")
            },
        );
        let chain = Chain {
            next_seq,
            last_hash,
            last_received_at,
        };
        Writer {
            shared,
            cfg,
            clock,
            dir,
            active,
            newest,
            chain,
            poisoned: None,
            buf: Vec::with_capacity(1 << 20),
            new_sparse: Vec::new(),
            last_frame: None,
            group_start: chain,
            waiters: Vec::new(),
            prealloc: prealloc.0,
            prealloc_thread: Some(prealloc.1),
            trainer,
            cctx: dict::compressor(),
            zbuf: Vec::new(),
            appended: 0,
            pending_payload: (0, 0),
        }
    }

    /// The writer thread's loop; returns when every sender is gone.
    pub(crate) fn run(mut self, rx: flume::Receiver<Request>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(r) => r,
                Err(flume::RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.rotate_if_day_over() {
                        tracing::error!("Could not seal the finished day's segment: {e}.");
                    }
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            let mut pending = Some(first);
            let mut bytes = 0usize;
            while let Some(req) = pending.take() {
                match req {
                    Request::Append(batch, reply) => {
                        bytes += batch.bodies.len();
                        self.append(batch, reply);
                    }
                    Request::Rotate(reply) => {
                        self.commit();
                        let _ = reply.send(self.rotate_if_day_over());
                    }
                }
                if bytes < self.cfg.write_bytes_max {
                    pending = rx.try_recv().ok();
                }
            }
            self.commit();
        }
        self.commit();
        self.shut_down();
    }

    /// Stops the zeroer and gives back the zero-filled space of the active
    /// segment, so a clean shutdown leaves no padding behind.
    fn shut_down(&mut self) {
        self.prealloc.stop();
        if let Some(t) = self.prealloc_thread.take() {
            let _ = t.join();
        }
        if let Some(a) = &self.active {
            let released = a.file.set_len(a.len).and_then(|_| a.file.sync_data());
            if let Err(e) = released {
                tracing::warn!(
                    "Could not release the zero-filled space of {}: {e}; recovery will.",
                    a.view.path.display()
                );
            }
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_micros().max(self.chain.last_received_at)
    }

    /// Adds one request to the pending group, committing first when it must
    /// go to a new segment or would make the write too large.
    fn append(&mut self, batch: Batch, reply: Reply) {
        if let Some(e) = &self.poisoned {
            let _ = reply.send(Err(e.clone()));
            return;
        }
        let n = batch.ends.len() as u64;
        // Compression may add zstd's frame header and block overhead to a body.
        let framed = batch.bodies.len() as u64
            + batch.bodies.len() as u64 / 128
            + n * (RECORD_OVERHEAD_BYTES + crate::event::STORED_PREFIX_BYTES_MAX + 64) as u64;
        let received_at = self.now();
        let day = Day::from_micros(received_at);
        let fits = match &self.active {
            None => false,
            Some(a) => {
                let used = a.len + self.buf.len() as u64;
                // An older format's active segment (after an upgrade) is
                // sealed, never appended to in this build's format.
                // A newer dictionary (the first, or a better one) ends the
                // segment early (`dict::trainer` invariant 2).
                let compress_now = a.count > 0 && self.trainer.fresher_than(a.dict.as_ref());
                // A header that names a dictionary which did not load (an I/O
                // error after recovery read it) is never appended to.
                let dict_lost = a.view.header.dict_len > 0 && a.dict.is_none();
                a.view.id.day == day
                    && a.view.header.version == FORMAT_VERSION
                    && !compress_now
                    && !dict_lost
                    && (used + framed + FOOTER_BYTES as u64 <= self.cfg.segment_bytes_max
                        || (a.count == 0 && self.waiters.is_empty()))
            }
        };
        if !fits {
            self.commit();
            if let Some(e) = &self.poisoned {
                let _ = reply.send(Err(e.clone()));
                return;
            }
            if let Err(e) = self.rotate_to(day) {
                let _ = reply.send(Err(e));
                return;
            }
        } else if self.buf.len() as u64 + framed > self.cfg.write_bytes_max as u64
            && !self.waiters.is_empty()
        {
            self.commit();
        }
        let Some(active) = self.active.as_ref() else {
            let _ = reply.send(Err(Error::Closed));
            return;
        };
        let base = active.len;
        let count = active.count + self.pending_records();
        if self.waiters.is_empty() {
            self.group_start = self.chain;
        }
        let first_seq = self.chain.next_seq;
        let frames = dict::Frames::of(&active.view.header);
        let mut prefix = Vec::with_capacity(crate::event::STORED_PREFIX_BYTES_MAX);
        let mut head = Vec::with_capacity(crate::event::STORED_PREFIX_BYTES_MAX);
        let mut start = 0usize;
        for (i, &end) in batch.ends.iter().enumerate() {
            let index = count + i as u64;
            if index % SPARSE_EVERY == 0 {
                self.new_sparse.push(base + self.buf.len() as u64);
            }
            self.last_frame = Some(self.buf.len());
            prefix.clear();
            event::encode_stored_prefix(self.chain.next_seq, received_at, &mut prefix);
            let body = &batch.bodies[start..end as usize];
            let plain = (prefix.len() + body.len()) as u64;
            self.pending_payload.0 += plain;
            self.chain.last_hash = match &active.dict {
                Some(d) => {
                    self.zbuf.clear();
                    head.clear();
                    frames.put_prefix(self.chain.next_seq, received_at, &mut head);
                    d.compress(&mut self.cctx, &head, body, &mut self.zbuf);
                    self.pending_payload.1 += self.zbuf.len() as u64;
                    encode_record_stored(
                        &mut self.buf,
                        FORMAT_VERSION,
                        index,
                        &self.chain.last_hash,
                        &[&self.zbuf],
                        &[&prefix, body],
                    )
                }
                None => {
                    self.pending_payload.1 += plain;
                    encode_record(
                        &mut self.buf,
                        FORMAT_VERSION,
                        index,
                        &self.chain.last_hash,
                        &[&prefix, body],
                    )
                }
            };
            self.appended += 1;
            // Until a segment has a dictionary every payload is a sample, so
            // the first one is trained after a quarter of `dict_sample_bytes`
            // of payloads (`dict::FIRST_SHARE`), not eight times that stored
            // uncompressed.
            let every = if active.dict.is_none() {
                1
            } else {
                dict::SAMPLE_EVERY
            };
            if self.appended % every == 0 && self.trainer.sampling() {
                self.trainer.offer(body, every);
            }
            self.chain.next_seq += 1;
            start = end as usize;
        }
        self.trainer.flush();
        self.chain.last_received_at = received_at;
        let mut stored = batch.stored;
        for (ev, seq) in stored.iter_mut().zip(first_seq..) {
            (ev.seq, ev.received_at) = (seq, received_at);
        }
        self.waiters.push(Waiter {
            reply,
            receipt: Appended {
                first_seq,
                count: n,
                received_at,
                segment: active.view.id,
                last_hash: self.chain.last_hash,
            },
            stored,
            bytes: batch.bodies.len(),
        });
    }

    fn pending_records(&self) -> u64 {
        self.waiters.iter().map(|w| w.receipt.count).sum()
    }

    /// Writes and fsyncs the pending group, then publishes and replies.
    fn commit(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let added = self.pending_records();
        let mut waiters = std::mem::take(&mut self.waiters);
        // The write's last record stores its chain hash, so the log always
        // ends at a stored hash (docs/FORMAT.md, "Record").
        if let Some(at) = self.last_frame.take() {
            format::mark_frame(&mut self.buf, at, FORMAT_VERSION, &self.chain.last_hash);
        }
        let outcome = self.write_group(added, &mut waiters);
        self.buf.clear();
        self.pending_payload = (0, 0);
        self.new_sparse.clear();
        match outcome {
            Ok((runs, freed)) => {
                for (w, run) in waiters.into_iter().zip(runs) {
                    let _ = w.reply.send(Ok((w.receipt, run)));
                }
                // Events the tail let go of, freed once every poster has its answer.
                drop(freed);
            }
            Err(e) => {
                for w in waiters {
                    let _ = w.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Writes and fsyncs `buf`, hands the group's events to the tail, and
    /// publishes the durable seq: each waiter's events as the tail holds
    /// them, in order, and what the tail let go of (for the caller to free).
    fn write_group(&mut self, added: u64, waiters: &mut [Waiter]) -> Result<(Vec<Run>, Freed)> {
        let Some(a) = self.active.as_mut() else {
            return Err(Error::Closed);
        };
        let started = std::time::Instant::now();
        self.prealloc.claim(a.len + self.buf.len() as u64);
        let written = fault::check(fault::WRITE, &a.view.path)
            .and_then(|_| a.file.write_all_at(&self.buf, a.len));
        if let Err(e) = written {
            let err = Error::io("write", &a.view.path, e);
            // Take back whatever part of the write reached the file, so the
            // next write starts at a record boundary.
            self.prealloc.rolled_back(a.len);
            if let Err(t) = a.file.set_len(a.len) {
                let cause = format!("{err}; then truncating back failed: {t}");
                return Err(self.poison("write", cause));
            }
            self.chain = self.group_start;
            self.shared
                .metrics
                .write_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err(err);
        }
        if let Err(e) =
            fault::check(fault::FDATASYNC, &a.view.path).and_then(|_| a.file.sync_data())
        {
            let err = Error::io("fdatasync", &a.view.path, e);
            return Err(self.poison("fdatasync", err.to_string()));
        }
        a.len += self.buf.len() as u64;
        a.count += added;
        a.sha.update(&self.buf);
        a.view.publish(a.len, a.count, &self.new_sparse);
        let m = &self.shared.metrics;
        m.fsyncs.fetch_add(1, Ordering::Relaxed);
        let took = started.elapsed();
        m.fsync_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        m.fsync_seconds.observe(took);
        m.appended.fetch_add(added, Ordering::Relaxed);
        m.bytes.fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        m.payload_bytes
            .fetch_add(self.pending_payload.0, Ordering::Relaxed);
        m.stored_payload_bytes
            .fetch_add(self.pending_payload.1, Ordering::Relaxed);
        let mut freed = Freed::default();
        let runs = waiters
            .iter_mut()
            .map(|w| {
                let stored = std::mem::take(&mut w.stored);
                self.shared.tail.push(stored, w.bytes, &mut freed)
            })
            .collect();
        self.shared
            .publish_durable(self.chain.next_seq - 1, self.chain.last_hash);
        Ok((runs, freed))
    }

    fn poison(&mut self, op: &'static str, cause: String) -> Error {
        tracing::error!(
            "The log stopped acknowledging appends after a failed {op}: {cause}. \
             Restart Stele to recover; acknowledged events are safe."
        );
        let e = Error::Poisoned { op, cause };
        self.poisoned = Some(e.clone());
        self.shared.set_poisoned(&e);
        e
    }

    /// Seals the active segment if the clock has moved past its day.
    fn rotate_if_day_over(&mut self) -> Result<()> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let today = Day::from_micros(self.now());
        match &self.active {
            Some(a) if a.view.id.day < today => self.seal_active(),
            _ => Ok(()),
        }
    }

    /// Seals the active segment (if any) and creates the next one for `day`.
    fn rotate_to(&mut self, day: Day) -> Result<()> {
        if self.active.is_some() {
            self.seal_active()?;
        }
        let id = match self.newest {
            Some(n) if n.day == day => SegmentId {
                day,
                part: n.part + 1,
            },
            Some(n) if n.day > day => {
                // received_at never goes backwards, so this cannot happen
                // unless the directory holds segments from the future.
                return Err(Error::Corruption {
                    path: self.dir.join(n.file_name()),
                    offset: 0,
                    seq: None,
                    detail: format!("segment is dated after today ({day})"),
                });
            }
            _ => SegmentId { day, part: 0 },
        };
        self.create(id)
    }

    fn create(&mut self, id: SegmentId) -> Result<()> {
        let path = self.dir.join(id.file_name());
        let dict = self.trainer.newest();
        let header = Header {
            version: FORMAT_VERSION,
            id,
            first_seq: self.chain.next_seq,
            prev_hash: self.chain.last_hash,
            created_at: self.clock.now_micros(),
            dict_len: dict.as_ref().map_or(0, |d| d.bytes().len() as u32),
            dict_crc: dict.as_ref().map_or(0, |d| d.crc()),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        // The header and the dictionary, in one write before the first fsync.
        let mut header_bytes = header.encode().to_vec();
        if let Some(d) = &dict {
            header_bytes.extend_from_slice(d.bytes());
        }
        let start = header_bytes.len() as u64;
        let written = file
            .write_all_at(&header_bytes, 0)
            .map_err(|e| Error::io("write", &path, e));
        if let Err(e) = written {
            // Nothing was acknowledged in this file; a partial header would
            // be removed by recovery anyway.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        if let Err(e) = fault::check(fault::FDATASYNC, &path).and_then(|_| file.sync_data()) {
            return Err(self.poison("fdatasync", Error::io("fdatasync", &path, e).to_string()));
        }
        fault::crash(fault::CREATED, &path);
        if let Err(e) = fsync_dir(&self.dir) {
            return Err(self.poison("fsync", e.to_string()));
        }
        let view = Arc::new(SegmentView::new(
            &path,
            header,
            start,
            0,
            Some(Vec::new()),
            None,
        )?);
        if let Some(d) = &dict {
            view.set_dict(d.clone());
        }
        self.shared.push_segment(view.clone());
        self.newest = Some(id);
        let file = Arc::new(file);
        self.prealloc
            .set_file(Some(file.clone()), start, self.cfg.segment_bytes_max);
        let mut sha = Sha256::new();
        sha.update(&header_bytes);
        self.active = Some(Active {
            view,
            file,
            len: start,
            count: 0,
            sha,
            inherited_through: None,
            dict,
        });
        tracing::info!(
            "Opened segment {id} for new events from seq {}.",
            self.chain.next_seq
        );
        Ok(())
    }

    /// Writes the footer, makes it durable, makes the file read-only and
    /// fsyncs the directory.
    fn seal_active(&mut self) -> Result<()> {
        let Some(a) = self.active.as_ref() else {
            return Ok(());
        };
        let footer = Footer {
            count: a.count,
            first_seq: a.view.header.first_seq,
            last_seq: a.view.header.first_seq + a.count - 1,
            final_hash: self.chain.last_hash,
            sealed_at: self.clock.now_micros(),
        };
        let path = a.view.path.clone();
        let footer_bytes = footer.encode();
        // Stop zero-filling and drop the padding first: nothing may follow
        // the footer, even after a crash between the two.
        self.prealloc.set_file(None, 0, 0);
        if let Err(e) = a.file.set_len(a.len) {
            return Err(Error::io("truncate the zero-filled space of", &path, e));
        }
        if let Err(e) = a.file.write_all_at(&footer_bytes, a.len) {
            let err = Error::io("write footer to", &path, e);
            if a.file.set_len(a.len).is_err() {
                return Err(self.poison("write", err.to_string()));
            }
            self.prealloc
                .set_file(Some(a.file.clone()), a.len, self.cfg.segment_bytes_max);
            return Err(err);
        }
        if let Err(e) = fault::check(fault::FDATASYNC, &path).and_then(|_| a.file.sync_data()) {
            return Err(self.poison("fdatasync", Error::io("fdatasync", &path, e).to_string()));
        }
        let readonly = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))
            .and_then(|_| a.file.sync_all());
        if let Err(e) = readonly {
            // The footer is durable: the segment is sealed whatever its mode.
            tracing::warn!(
                "Sealed {} but could not make it read-only: {e}.",
                path.display()
            );
        }
        if let Err(e) = fsync_dir(&self.dir) {
            return Err(self.poison("fsync", e.to_string()));
        }
        a.view.seal(footer.clone());
        let mut sha = a.sha.clone();
        sha.update(footer_bytes);
        self.shared.push_witnessed(WitnessedSegment {
            id: a.view.id,
            bytes: a.len + FOOTER_BYTES as u64,
            sha256: sha.finalize().into(),
            first_seq: footer.first_seq,
            count: footer.count,
            prev_hash: a.view.header.prev_hash,
            final_hash: footer.final_hash,
            inherited_through: a.inherited_through,
        });
        tracing::info!(
            "Sealed segment {} with {} events (seqs {}..={}).",
            a.view.id,
            footer.count,
            footer.first_seq,
            footer.last_seq
        );
        debug_assert_eq!(a.len + FOOTER_BYTES as u64, a.view.durable_bytes());
        self.active = None;
        fault::crash(fault::SEALED, &path);
        Ok(())
    }
}

/// SHA-256 of the first `len` bytes of an inherited segment, read back at
/// open. A file that cannot be read leaves a hash that will not match, so
/// the segment is never signed as witnessed (the digester re-checks it).
fn hash_prefix(path: &std::path::Path, len: u64) -> Sha256 {
    let mut sha = Sha256::new();
    let read = (|| -> std::io::Result<()> {
        let f = File::open(path)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < len {
            let n = (len - off).min(buf.len() as u64) as usize;
            f.read_exact_at(&mut buf[..n], off)?;
            sha.update(&buf[..n]);
            off += n as u64;
        }
        Ok(())
    })();
    if let Err(e) = read {
        tracing::error!(
            "Could not read back {} to hash it: {e}; its digest will not be signed.",
            path.display()
        );
        sha.update(b"unreadable");
    }
    sha
}

/// The newest payloads (the parts after the prefix) of `view`, a segment
/// stored uncompressed, up to about `bytes` of them: samples for the first
/// dictionary. A record that does not decode ends the walk (recovery has
/// checked the durable records; this is only a head start).
fn stored_samples(view: &SegmentView, bytes: usize) -> dict::Samples {
    let Ok(snap) = view.snapshot() else {
        return dict::Samples::default();
    };
    let map: &[u8] = snap.map.as_deref().map_or(&[], |m| &m[..]);
    let end = (snap.records_end as usize).min(map.len());
    // Start at the newest sparse block with about `bytes` after it, so that
    // a large segment (an older format's, sealed at the next append) is not
    // read whole at the start.
    let mut block = snap.count.div_ceil(SPARSE_EVERY);
    let mut off = end;
    while block > 0 && end - off < bytes {
        block -= 1;
        match view.block_offset(block) {
            Ok(o) if (o as usize) < end => off = o as usize,
            _ => return dict::Samples::default(),
        }
    }
    let mut items = std::collections::VecDeque::new();
    let mut held = 0usize;
    while off < end {
        let Ok(Frame::Record { payload, len, .. }) =
            decode_frame(&map[off..end], view.header.version)
        else {
            break;
        };
        if let Some(at) = dict::prefix_len(payload) {
            held += payload.len() - at;
            items.push_back(payload[at..].to_vec());
            while held > bytes {
                match items.pop_front() {
                    Some(old) => held -= old.len(),
                    None => break,
                }
            }
        }
        off += len;
    }
    dict::Samples::new(items.into(), 1)
}
