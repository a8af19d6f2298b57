//! The tail: the newest durable events, in memory, for the log's followers
//! and for reads of the newest events.
//!
//! Owns [`Tail`] (the events of the last appends, as the writer stored
//! them) and [`Run`] (a stretch of them, shared, that derefs to
//! `[StoredEvent]`). Never touches a file: the segments stay the only
//! truth, and everything here is also on disk.
//!
//! Why: the followers (the indexer, the activity feed, live streams, the
//! alerts) read every event
//! right after it becomes durable. Reading it back meant decompressing the
//! record and decoding it once per follower, while the writer had just had
//! the decoded event in hand. Now the poster's thread builds each stored
//! event beside its encoding, the writer stamps its seq and time and hands
//! it here once durable (moved, never copied), and a follower reads the
//! segments only for what the tail no longer holds (a follower further
//! behind than the bound, the replay after a restart). A poster gets its
//! own events back the same way, and a page of the newest events copies
//! them instead of decoding their records (only the active segment's: a
//! sealed segment is read from its file, where damage is an error).
//!
//! ```text
//!   chunks (one per append request, oldest first, seqs contiguous across them)
//!   ┌──────────────┬───┬────────┬──────────────────────┐
//!   │ seqs 101–180 │181│182–190 │ 191–450              │ ← pushed after the fdatasync,
//!   └──────────────┴───┴────────┴──────────────────────┘   before the durable seq is published
//!    ↑ evicted first once the encoded bytes pass the bound; freed by a follower
//! ```
//!
//! Invariants:
//! 1. Only durable events: the writer pushes a group after its
//!    `fdatasync` and before it publishes the durable seq, so a follower
//!    woken by the publish finds the group here.
//! 2. Contiguous: the chunks' seqs follow each other without a gap; a push
//!    that would leave one (the writer never does) empties the tail first.
//! 3. Bounded: the chunks' encoded events (their bincode bytes, before
//!    compression) stay within the bound, the newest chunk excepted, which
//!    stays whatever its size; the oldest leave first. Evicted chunks wait
//!    for the next follower's read to free them (freeing thousands of events
//!    is work the writer, on every append's path, must not do), at most
//!    another bound's worth, beyond which the writer frees them itself. A
//!    [`Run`] keeps its chunk alive until dropped.
//! 4. The same events as a read: an event here equals what decoding its
//!    record gives (`tests/it/compressed/mod.rs`,
//!    `followers_get_from_the_tail_exactly_what_the_segments_hold`, and the
//!    log's proptest, `the_log_behaves_like_a_vec`).

use super::{Direction, Log, Result};
use crate::event::StoredEvent;
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Default bound of the tail: bytes of encoded events (≈ 64,000 events of
/// 500 bytes; in memory an event takes 2–3 times its encoding). Sized to
/// what the indexer falls behind under a steady batch load, where
/// tantivy's one indexing thread sets its pace: with 8 MiB it decoded
/// 201,000 of the peer workload's first 300,000 events back from the
/// segments, with 32 MiB 1,900, and the daemon's CPU per event fell ≈ 5 %
/// (README, "Performance").
pub const TAIL_BYTES_DEFAULT: usize = 32 * 1024 * 1024;
/// Largest bound of the tail (`LogConfig::tail_bytes`, `[log] tail_bytes`).
pub const TAIL_BYTES_MAX: usize = 1 << 30;

/// Consecutive events, shared with the tail (or read from the segments).
#[derive(Debug, Clone)]
pub struct Run {
    chunk: Arc<Vec<StoredEvent>>,
    from: usize,
    to: usize,
}

impl Run {
    /// All of `chunk`.
    pub(crate) fn whole(chunk: Arc<Vec<StoredEvent>>) -> Run {
        let to = chunk.len();
        Run { chunk, from: 0, to }
    }
}

impl Deref for Run {
    type Target = [StoredEvent];
    fn deref(&self) -> &[StoredEvent] {
        &self.chunk[self.from..self.to]
    }
}

/// Chunks the writer took out of the tail (past twice its bound, or after a
/// gap), to free once it has answered the posters.
#[derive(Default)]
pub(crate) struct Freed(Vec<Chunk>);

/// One append's events and their encoded bytes.
struct Chunk {
    events: Arc<Vec<StoredEvent>>,
    bytes: usize,
}

impl Chunk {
    fn first_seq(&self) -> u64 {
        self.events.first().map_or(0, |e| e.seq)
    }
    fn end_seq(&self) -> u64 {
        self.events.last().map_or(0, |e| e.seq + 1)
    }
}

/// The newest durable events (see the module doc).
pub struct Tail {
    bytes_max: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    /// Chunks evicted, for the next follower's read to free.
    evicted: Vec<Chunk>,
    evicted_bytes: usize,
}

impl Tail {
    /// An empty tail holding at most `bytes_max` encoded bytes (0: none).
    pub fn new(bytes_max: usize) -> Tail {
        Tail {
            bytes_max,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the events of a durable append (`bytes`: their encoded size)
    /// and returns them shared, for the writer's reply; chunks it lets go
    /// of go into `freed`.
    pub(crate) fn push(&self, events: Vec<StoredEvent>, bytes: usize, freed: &mut Freed) -> Run {
        let run = Run::whole(Arc::new(events));
        if self.bytes_max == 0 || run.is_empty() {
            return run;
        }
        let chunk = Chunk {
            events: run.chunk.clone(),
            bytes,
        };
        let mut inner = self.inner();
        if inner
            .chunks
            .back()
            .is_some_and(|last| last.end_seq() != chunk.first_seq())
        {
            freed.0.extend(inner.chunks.drain(..));
            inner.bytes = 0;
        }
        inner.bytes += chunk.bytes;
        inner.chunks.push_back(chunk);
        while inner.bytes > self.bytes_max && inner.chunks.len() > 1 {
            if let Some(old) = inner.chunks.pop_front() {
                inner.bytes -= old.bytes;
                inner.evicted_bytes += old.bytes;
                inner.evicted.push(old);
            }
        }
        if inner.evicted_bytes > self.bytes_max {
            // No follower read for a bound's worth of appends.
            freed.0.append(&mut inner.evicted);
            inner.evicted_bytes = 0;
        }
        run
    }

    /// The first seq held (`None`: empty).
    pub fn first_seq(&self) -> Option<u64> {
        self.inner().chunks.front().map(Chunk::first_seq)
    }

    /// Seqs `from..=to` as runs, when the tail holds `from` (`None`
    /// otherwise); they stop early where the tail ends. Frees the evicted
    /// chunks (on the caller's thread, a follower's).
    pub fn runs(&self, from: u64, to: u64) -> Option<Vec<Run>> {
        let mut inner = self.inner();
        let freed = std::mem::take(&mut inner.evicted);
        inner.evicted_bytes = 0;
        let at = inner.chunks.partition_point(|c| c.end_seq() <= from);
        let runs = match inner.chunks.get(at) {
            Some(first) if first.first_seq() <= from && from <= to => Some(
                inner
                    .chunks
                    .range(at..)
                    .take_while(|c| c.first_seq() <= to)
                    .map(|c| {
                        let start = c.first_seq();
                        Run {
                            chunk: c.events.clone(),
                            from: (from.max(start) - start) as usize,
                            to: (to.min(c.end_seq() - 1) - start + 1) as usize,
                        }
                    })
                    .collect(),
            ),
            _ => None,
        };
        drop(inner);
        drop(freed);
        runs
    }

    /// A copy of each of `seqs` the tail holds (`None` for the others),
    /// under one lock.
    pub fn get_each(&self, seqs: &[u64]) -> Vec<Option<StoredEvent>> {
        let inner = self.inner();
        seqs.iter()
            .map(|&seq| {
                let at = inner.chunks.partition_point(|c| c.end_seq() <= seq);
                let c = inner.chunks.get(at).filter(|c| c.first_seq() <= seq)?;
                c.events.get((seq - c.first_seq()) as usize).cloned()
            })
            .collect()
    }

    /// Encoded bytes held, for `/metrics`.
    pub fn bytes(&self) -> usize {
        self.inner().bytes
    }
}

impl Log {
    /// Up to `max` durable events from seq `from` on (from the log's first
    /// seq, when retention dropped `from`), for a reader that follows the
    /// log in order (the indexer, the activity feed, the live stream, the
    /// alerts): from the tail where it holds them, else read from the
    /// segments up to where the tail starts. Empty when `from` is past the
    /// durable end.
    ///
    /// # Errors
    /// Read errors (retention dropping seqs while they are read among them).
    pub fn follow(&self, from: u64, max: usize) -> Result<Vec<Run>> {
        let last = self.last_seq();
        let from = from.max(self.first_seq());
        if from > last || max == 0 {
            return Ok(Vec::new());
        }
        let to = last.min(from.saturating_add(max as u64 - 1));
        let m = &self.shared.metrics;
        if let Some(runs) = self.shared.tail.runs(from, to) {
            let n = runs.iter().map(|r| r.len() as u64).sum();
            m.followed_from_tail.fetch_add(n, Ordering::Relaxed);
            return Ok(runs);
        }
        let to = match self.shared.tail.first_seq() {
            Some(held) if held > from => to.min(held - 1),
            _ => to,
        };
        let read: Result<Vec<StoredEvent>> = self.range(from..=to, Direction::Forward).collect();
        let read = read?;
        m.followed_from_segments
            .fetch_add(read.len() as u64, Ordering::Relaxed);
        Ok(vec![Run::whole(Arc::new(read))])
    }

    /// The first seq point reads may copy from the tail, and the segment
    /// that allows it: the tail's events of the active segment, unless it is
    /// marked damaged (`None`: none). A sealed segment's events are read
    /// from its file, so damage found there is the reader's error, as
    /// without the tail; the active segment's file is checked when it is
    /// sealed (the writer's SHA-256, then the scrubber) and at the next start
    /// (recovery), not by these reads.
    fn copied_from(&self) -> Option<(u64, Arc<super::segment::SegmentView>)> {
        let held = self.shared.tail.first_seq()?;
        let segs = self.shared.segments();
        let active = segs.last()?.clone();
        Self::still_active(&segs, &active).then(|| (held.max(active.first_seq()), active))
    }

    /// Whether `view` is still the newest segment, unsealed and not damaged
    /// (checked again after copying: a copy made while it was sealed or
    /// marked damaged is not used).
    fn still_active(
        segs: &[Arc<super::segment::SegmentView>],
        view: &Arc<super::segment::SegmentView>,
    ) -> bool {
        segs.last().is_some_and(|l| Arc::ptr_eq(l, view))
            && view.footer().is_none()
            && view.damaged().is_none()
    }

    /// [`Log::get`] from the tail: a copy of `seq` when it is durable, in
    /// the active segment, and the tail holds it.
    pub(super) fn get_held(&self, seq: u64) -> Option<StoredEvent> {
        let (held, active) = self.copied_from()?;
        if seq < held || seq > self.last_seq() {
            return None;
        }
        let ev = self.shared.tail.get_each(&[seq]).pop().flatten()?;
        if !Self::still_active(&self.shared.segments(), &active) {
            return None;
        }
        self.shared
            .metrics
            .read_from_tail
            .fetch_add(1, Ordering::Relaxed);
        Some(ev)
    }

    /// [`Log::get_many`]: the durable seqs the tail holds are copied from
    /// memory, the others read from the segments.
    pub(super) fn get_many_held(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>> {
        let last = self.last_seq();
        let Some((held, active)) = self.copied_from() else {
            return super::iter::get_many(&self.shared, seqs);
        };
        // Pushed before the publish: a seq past `last` is not readable yet.
        let in_tail = |s: u64| s >= held && s <= last;
        if !seqs.iter().any(|&s| in_tail(s)) {
            return super::iter::get_many(&self.shared, seqs);
        }
        let wanted: Vec<u64> = seqs
            .iter()
            .map(|&s| if in_tail(s) { s } else { 0 })
            .collect();
        // Those evicted meanwhile are read like the rest.
        let copies = self.shared.tail.get_each(&wanted);
        if !Self::still_active(&self.shared.segments(), &active) {
            return super::iter::get_many(&self.shared, seqs);
        }
        let misses: Vec<u64> = seqs
            .iter()
            .zip(&copies)
            .filter(|(_, c)| c.is_none())
            .map(|(&s, _)| s)
            .collect();
        let mut read = super::iter::get_many(&self.shared, &misses)?
            .into_iter()
            .peekable();
        let copied = (seqs.len() - misses.len()) as u64;
        self.shared
            .metrics
            .read_from_tail
            .fetch_add(copied, Ordering::Relaxed);
        let mut out = Vec::with_capacity(seqs.len());
        for (&seq, copy) in seqs.iter().zip(copies) {
            match copy {
                Some(ev) => out.push(ev),
                None => {
                    if let Some(ev) = read.next_if(|e| e.seq == seq) {
                        out.push(ev);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The durable events of `from..=to` (clamped like [`Log::range`]),
    /// oldest first, as [`Log::follow`] gives them, a run at a time.
    pub fn follow_range(&self, from: u64, to: u64) -> Follow<'_> {
        Follow {
            log: self,
            next: from,
            to: to.min(self.last_seq()),
            runs: Vec::new().into_iter(),
        }
    }

    /// Encoded bytes of the events the tail holds in memory.
    pub fn tail_bytes(&self) -> usize {
        self.shared.tail.bytes()
    }
}

/// Events [`Follow`] asks for at once (those not in the tail are decoded
/// all together, whether or not the reader goes on).
const FOLLOW_BATCH_EVENTS: u64 = 256;

/// The runs of a seq range ([`Log::follow_range`]); ends after an error.
pub struct Follow<'a> {
    log: &'a Log,
    next: u64,
    to: u64,
    runs: std::vec::IntoIter<Run>,
}

impl Iterator for Follow<'_> {
    type Item = Result<Run>;

    fn next(&mut self) -> Option<Result<Run>> {
        loop {
            if let Some(run) = self.runs.next() {
                let Some(last) = run.last() else { continue };
                self.next = last.seq + 1;
                return Some(Ok(run));
            }
            self.next = self.next.max(self.log.first_seq());
            if self.next > self.to {
                return None;
            }
            let max = (self.to - self.next).min(FOLLOW_BATCH_EVENTS - 1) + 1;
            match self.log.follow(self.next, max as usize) {
                Ok(runs) if runs.iter().all(|r| r.is_empty()) => return None,
                Ok(runs) => self.runs = runs.into_iter(),
                Err(e) => {
                    self.next = self.to.saturating_add(1);
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(seqs: std::ops::Range<u64>) -> Vec<StoredEvent> {
        seqs.map(|seq| StoredEvent {
            seq,
            ..StoredEvent::default()
        })
        .collect()
    }

    fn seqs(runs: &[Run]) -> Vec<u64> {
        runs.iter().flat_map(|r| r.iter().map(|e| e.seq)).collect()
    }

    #[test]
    fn runs_cover_a_range_across_chunks_and_stop_where_the_tail_ends() {
        let tail = Tail::new(1000);
        tail.push(events(10..20), 100, &mut Freed::default());
        tail.push(events(20..25), 50, &mut Freed::default());
        tail.push(events(25..40), 150, &mut Freed::default());
        assert_eq!(tail.first_seq(), Some(10));
        let runs = tail.runs(15, 30).unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(seqs(&runs), (15..=30).collect::<Vec<_>>());
        assert_eq!(seqs(&tail.runs(39, 100).unwrap()), vec![39]);
        assert_eq!(seqs(&tail.runs(10, 10).unwrap()), vec![10]);
        assert!(tail.runs(9, 30).is_none(), "before the tail");
        assert!(tail.runs(40, 50).is_none(), "after the tail");
    }

    #[test]
    fn the_oldest_chunks_leave_past_the_bound_and_the_newest_always_stays() {
        let tail = Tail::new(200);
        tail.push(events(1..11), 100, &mut Freed::default());
        tail.push(events(11..21), 100, &mut Freed::default());
        assert_eq!((tail.first_seq(), tail.bytes()), (Some(1), 200));
        tail.push(events(21..31), 100, &mut Freed::default());
        assert_eq!((tail.first_seq(), tail.bytes()), (Some(11), 200));
        // A run keeps its chunk alive after it left the tail.
        let held = tail.runs(11, 12).unwrap();
        tail.push(events(31..41), 500, &mut Freed::default());
        assert_eq!((tail.first_seq(), tail.bytes()), (Some(31), 500));
        assert_eq!(seqs(&held), vec![11, 12]);
        // Evicted chunks wait for a follower's read, at most another bound's worth.
        let weak = Arc::downgrade(&held[0].chunk);
        drop(held);
        assert!(weak.upgrade().is_some(), "waiting for a read");
        assert!(tail.runs(1, 1).is_none());
        assert!(weak.upgrade().is_none(), "freed by the read");
        tail.push(events(41..51), 150, &mut Freed::default());
        tail.push(events(51..61), 150, &mut Freed::default());
        let weak = Arc::downgrade(&tail.runs(51, 51).unwrap()[0].chunk);
        for seq in (61..121).step_by(10) {
            tail.push(events(seq..seq + 10), 150, &mut Freed::default());
        }
        assert!(
            weak.upgrade().is_none(),
            "freed by the writer past the bound"
        );
        let off = Tail::new(0);
        assert_eq!(
            seqs(&[off.push(events(1..3), 10, &mut Freed::default())]),
            vec![1, 2],
            "handed back all the same"
        );
        assert!(off.runs(1, 1).is_none());
        assert_eq!(off.bytes(), 0);
    }

    #[test]
    fn a_gap_empties_the_tail_so_runs_never_skip_a_seq() {
        let tail = Tail::new(1000);
        tail.push(events(1..11), 10, &mut Freed::default());
        tail.push(events(20..30), 10, &mut Freed::default());
        assert_eq!(tail.first_seq(), Some(20));
        assert!(tail.runs(5, 25).is_none());
        assert_eq!(seqs(&tail.runs(20, 21).unwrap()), vec![20, 21]);
    }
}
