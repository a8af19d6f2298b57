//! Reading the log: [`LogIter`], a forward or backward walk over a seq
//! range, one segment at a time through its memory map, and [`get_many`],
//! the point reads of a page's seqs in one pass.
//!
//! Owns the position inside a segment ([`Cursor`], [`Place`]) and giving a
//! scan's pages back to the kernel behind it; never writes. Damaged data ends the walk
//! with an error, never a skip; a seq retention dropped while the walk ran is
//! [`Error::Dropped`].

use super::error::{Error, Result};
use super::segment::{self, SegmentView, Snapshot, SPARSE_EVERY};
use super::Shared;
use crate::event::StoredEvent;
use std::path::PathBuf;
use std::sync::Arc;

/// Direction of iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}

/// Position of an iterator inside one segment.
struct Cursor {
    view: Arc<SegmentView>,
    snap: Snapshot,
    /// Forward: offset of the record `next` (the next to yield).
    offset: u64,
    /// Backward: offsets of the block's records up to the next to yield.
    back: Vec<u64>,
    /// Forward: pages before this offset were given back.
    released: u64,
    /// Forward: records yielded (more than one: a scan).
    yielded: u64,
}

/// A forward scan gives the pages behind it back every this many bytes.
const RELEASE_BEHIND_BYTES: u64 = 8 * 1024 * 1024;
/// A page fault on a file map may map more than its page (the kernel's
/// fault-around window, a whole large folio: up to a PMD, 2 MiB): a scan
/// gives back this much on both sides of what it read.
const MAP_AROUND_BYTES: u64 = 2 * 1024 * 1024;

impl Cursor {
    fn release(&mut self, upto: u64) {
        if let Some(map) = &self.snap.map {
            segment::release_pages(map, self.released, upto);
            self.released = upto / 4096 * 4096;
        }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        // Only scans: a point read keeps its (likely hot) pages. A scan is
        // told by the records it read, not by the bytes: one that read less
        // than a megabyte here (a small segment, a stream's step) kept its
        // pages, and a scan over many such pieces the whole log. Around what
        // it read too: the faults may have mapped pages on both sides.
        if self.yielded > 1 || self.offset.saturating_sub(self.released) >= 1024 * 1024 {
            self.released = self.released.saturating_sub(MAP_AROUND_BYTES);
            self.release((self.offset + MAP_AROUND_BYTES).min(self.snap.records_end));
        }
    }
}

/// An iterator over a seq range of the log; yields an error (and then stops)
/// on damaged data instead of skipping it.
pub struct LogIter {
    shared: Arc<Shared>,
    lo: u64,
    hi: u64,
    dir: Direction,
    cur: Option<Cursor>,
    done: bool,
}

impl LogIter {
    pub(super) fn new(shared: Arc<Shared>, lo: u64, hi: u64, dir: Direction) -> LogIter {
        LogIter {
            shared,
            lo,
            hi,
            dir,
            cur: None,
            done: lo > hi,
        }
    }

    fn position(&mut self, seq: u64) -> Result<Cursor> {
        let view = locate(&self.shared, seq)?;
        let snap = view.snapshot()?;
        let (offset, back) = match self.dir {
            Direction::Forward => (view.offset_of(&snap, seq)?, Vec::new()),
            Direction::Backward => {
                let index = seq - view.first_seq();
                let mut back = Vec::with_capacity(SPARSE_EVERY as usize);
                back.push(view.block_offset(index / SPARSE_EVERY)?);
                walk_block(
                    &view,
                    &snap,
                    index / SPARSE_EVERY,
                    &mut back,
                    index % SPARSE_EVERY,
                )?;
                (0, back)
            }
        };
        Ok(Cursor {
            view,
            snap,
            released: offset,
            offset,
            back,
            yielded: 0,
        })
    }

    fn step(&mut self) -> Result<Option<StoredEvent>> {
        match self.dir {
            Direction::Forward => {
                let seq = self.lo;
                let fits = self.cur.as_ref().is_some_and(|c| {
                    seq < c.view.first_seq() + c.snap.count && c.offset < c.snap.records_end
                });
                if !fits {
                    self.cur = Some(self.position(seq)?);
                }
                let c = self.cur.as_mut().expect("positioned");
                let (ev, next) = c.view.read_at(&c.snap, c.offset, seq)?;
                c.offset = next;
                c.yielded += 1;
                if c.offset - c.released >= RELEASE_BEHIND_BYTES {
                    c.release(c.offset);
                }
                self.lo += 1;
                Ok(Some(ev))
            }
            Direction::Backward => {
                let seq = self.hi;
                if self.cur.as_ref().is_none_or(|c| c.back.is_empty()) {
                    self.cur = Some(self.position(seq)?);
                }
                let c = self.cur.as_mut().expect("positioned");
                let off = c.back.pop().expect("non-empty block");
                let (ev, _) = c.view.read_at(&c.snap, off, seq)?;
                self.hi -= 1;
                Ok(Some(ev))
            }
        }
    }
}

/// The segment holding the durable `seq`; retention may have dropped it
/// meanwhile ([`Error::Dropped`]).
fn locate(shared: &Shared, seq: u64) -> Result<Arc<SegmentView>> {
    shared.find(seq).ok_or_else(|| {
        let first_seq = shared.first_seq();
        if seq < first_seq {
            Error::Dropped { seq, first_seq }
        } else {
            Error::Corruption {
                path: PathBuf::new(),
                offset: 0,
                seq: Some(seq),
                detail: "no segment holds this durable seq".into(),
            }
        }
    })
}

/// The offsets of one sparse block's records, found so far.
struct Block {
    /// The block's number in its segment.
    number: u64,
    /// Offsets of the block's records 0, 1, ..: each one a skip of the
    /// length of the one before.
    offsets: Vec<u64>,
}

/// A segment a point read is in: its view, snapshot and last block.
struct Place {
    view: Arc<SegmentView>,
    snap: Snapshot,
    block: Option<Block>,
}

impl Place {
    fn holds(&self, seq: u64) -> bool {
        let first = self.view.first_seq();
        seq >= first && seq < first + self.snap.count
    }

    /// The offset of `seq`: each record of a block is skipped to once,
    /// however many of its seqs are asked for (in any order).
    fn offset(&mut self, seq: u64) -> Result<u64> {
        let index = seq - self.view.first_seq();
        let number = index / SPARSE_EVERY;
        let within = (index % SPARSE_EVERY) as usize;
        if self.block.as_ref().is_none_or(|b| b.number != number) {
            let first = self.view.block_offset(number)?;
            let mut offsets = Vec::with_capacity(SPARSE_EVERY as usize);
            offsets.push(first);
            self.block = Some(Block { number, offsets });
        }
        let block = self.block.as_mut().expect("set above");
        walk_block(
            &self.view,
            &self.snap,
            number,
            &mut block.offsets,
            within as u64,
        )?;
        Ok(block.offsets[within])
    }
}

/// Extends `offsets` (the offsets of block `number`'s records 0, 1, ..;
/// at least the first) by walking record lengths until it holds record
/// `within` of the block.
fn walk_block(
    view: &SegmentView,
    snap: &Snapshot,
    number: u64,
    offsets: &mut Vec<u64>,
    within: u64,
) -> Result<()> {
    let block_first = view.first_seq() + number * SPARSE_EVERY;
    while offsets.len() as u64 <= within {
        let k = offsets.len() - 1;
        offsets.push(view.skip_at(snap, offsets[k], block_first + k as u64)?);
    }
    Ok(())
}

/// The events of `seqs`, in that order, without those not in the log (0,
/// past the last durable seq, before the first): [`super::Log::get`] of
/// each, with less work per event. A segment is found and snapshotted once
/// per run of seqs in it, a sparse block's record lengths are walked once,
/// and one decompression buffer serves every record. Never a scan: no
/// pages are given back (the point reads' pages are likely hot).
pub(super) fn get_many(shared: &Arc<Shared>, seqs: &[u64]) -> Result<Vec<StoredEvent>> {
    let (first, last) = (shared.first_seq(), shared.last_seq());
    let mut out = Vec::with_capacity(seqs.len());
    let mut place: Option<Place> = None;
    let mut scratch = Vec::new();
    for &seq in seqs {
        if seq == 0 || seq < first || seq > last {
            continue;
        }
        if !place.as_ref().is_some_and(|p| p.holds(seq)) {
            let view = locate(shared, seq)?;
            let snap = view.snapshot()?;
            place = Some(Place {
                view,
                snap,
                block: None,
            });
        }
        let p = place.as_mut().expect("placed above");
        let offset = p.offset(seq)?;
        let (ev, _) = p.view.read_at_with(&p.snap, offset, seq, &mut scratch)?;
        out.push(ev);
    }
    Ok(out)
}

impl Iterator for LogIter {
    type Item = Result<StoredEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.lo > self.hi {
            return None;
        }
        match self.step() {
            Ok(ev) => {
                if self.dir == Direction::Backward && self.hi < self.lo {
                    self.done = true;
                }
                ev.map(Ok)
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::event::Provenance;
    use crate::log::{Log, LogConfig};
    use crate::testkit::EventGen;

    /// `get_many` answers what `get` answers seq by seq, in any order, with
    /// repeats, across segments and blocks; seqs not in the log are left
    /// out; damage is an error, never a skipped event.
    #[test]
    fn get_many_reads_what_get_reads_and_never_skips_damage() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(crate::testkit::DEFAULT_BASE_TIME));
        let cfg = LogConfig {
            segment_bytes_max: 64 * 1024,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), cfg, clock).unwrap();
        let mut gen = EventGen::new(9);
        for _ in 0..100 {
            let batch: Vec<_> = (0..4).map(|_| gen.sized(500)).collect();
            log.append(&batch, &Provenance::cli()).unwrap();
        }
        assert!(
            log.segments().len() > 3,
            "{} segments",
            log.segments().len()
        );
        let last = log.last_seq();
        let mut x = 77u64;
        let mut seqs: Vec<u64> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % (last + 3)
            })
            .collect();
        seqs.extend([last, last - 1, 1, 1, last + 1, 0, 33, 31, 32, 64, 63]);
        seqs.extend((1..=last).rev().step_by(7));
        let one_by_one: Vec<StoredEvent> =
            seqs.iter().filter_map(|&s| log.get(s).unwrap()).collect();
        assert!(one_by_one.len() > 300);
        assert_eq!(log.get_many(&seqs).unwrap(), one_by_one);
        assert!(log.get_many(&[]).unwrap().is_empty());

        // Seqs retention dropped are left out, as `get` answers None.
        let first = log.segments()[0].clone();
        log.drop_through(first.id).unwrap();
        let first_seq = log.first_seq();
        let got = log.get_many(&[1, first_seq, 2, last]).unwrap();
        let got: Vec<u64> = got.iter().map(|e| e.seq).collect();
        assert_eq!(got, vec![first_seq, last]);

        // A flipped byte in a record of a sealed segment: an error.
        let victim = log.segments()[1].clone();
        let bytes = std::fs::read(&victim.path).unwrap();
        let at = bytes.len() / 2;
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x40;
        std::fs::write(&victim.path, &flipped).unwrap();
        let in_victim: Vec<u64> = (victim.first_seq..victim.first_seq + victim.count).collect();
        let err = log.get_many(&in_victim).unwrap_err();
        assert!(err.is_corruption(), "{err:?}");
    }

    #[test]
    fn a_seq_retention_dropped_under_a_walk_is_a_typed_error_not_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(crate::testkit::DEFAULT_BASE_TIME));
        let cfg = LogConfig {
            segment_bytes_max: 4096,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), cfg, clock).unwrap();
        let mut gen = EventGen::new(7);
        for _ in 0..10 {
            let batch: Vec<_> = (0..3).map(|_| gen.sized(500)).collect();
            log.append(&batch, &Provenance::cli()).unwrap();
        }
        let mut walk = log.iter();
        let first = log.segments()[0].clone();
        log.drop_through(first.id).unwrap();
        let err = walk.next().unwrap().unwrap_err();
        let first_seq = log.first_seq();
        assert!(first_seq > 1);
        assert!(
            matches!(err, Error::Dropped { seq: 1, first_seq: f } if f == first_seq),
            "{err:?}"
        );
        assert!(!err.is_corruption());
        assert!(walk.next().is_none(), "the walk stops after an error");
        // A walk started after the drop begins at the new first seq.
        assert_eq!(log.iter().next().unwrap().unwrap().seq, first_seq);
    }
}
