//! Search in event-time order: the matches with the greatest (or least)
//! `(time, seq)` keys, continuing strictly after a position.
//!
//! Segments are sorted by seq, not by time, so a page cannot stop at the
//! first matches it meets as the seq-ordered search does. Instead every
//! segment whose time range can still beat the page is scanned into a
//! bounded heap of `limit` keys; segments are visited best-first by the
//! range of their regular docs ([`TimeMap`]), so once the heap is full the
//! segments entirely older (or newer) than its worst key are skipped. Events
//! mostly arrive in time order, so a newest-first page usually scans the
//! newest segments only. Within a segment (docs in descending seq order, so
//! roughly newest first), a newest-first scan stops as soon as no later
//! regular doc can beat the heap (the map's suffix maxima). The exceptions,
//! docs far from their block's times, are left out of every bound and
//! offered after the scans, each checked against the query on its own.
//! When the query leaves Stele's own records out (the default), the map
//! leaves them out as well.
//!
//! Invariants:
//! 1. Keys are unique (seqs are), so the order is total and a position
//!    splits the matches exactly: no page repeats or skips a key.
//! 2. Documents whose seq is below `first` (dropped by retention, not yet
//!    deleted from the index) are never returned.
//! 3. Every live match is either scanned or, if an exception, offered: none
//!    is offered twice.

use super::timemap::{TimeMap, BLOCK_DOCS};
use super::*;
use crate::query::Position;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A key in rank order for `order`: the greater, the earlier on the page
/// (`!` reverses an integer's order without overflow and is its own inverse).
fn rank(order: Order, (time, seq): (i64, u64)) -> (i64, u64) {
    match order {
        Order::Desc => (time, seq),
        Order::Asc => (!time, !seq),
    }
}

/// The best `limit` keys offered so far, strictly after a position.
struct Best {
    order: Order,
    limit: usize,
    /// A min-heap of ranks: its top is the worst kept.
    heap: BinaryHeap<Reverse<(i64, u64)>>,
    after: Option<(i64, u64)>,
}

impl Best {
    fn offer(&mut self, key: (i64, u64)) {
        let r = rank(self.order, key);
        if self.after.is_some_and(|a| r >= a) {
            return;
        }
        if self.heap.len() < self.limit {
            self.heap.push(Reverse(r));
        } else if self.heap.peek().is_some_and(|w| r > w.0) {
            self.heap.pop();
            self.heap.push(Reverse(r));
        }
    }

    /// Whether a key whose time ranks `time` could still enter.
    fn may_enter(&self, time: i64) -> bool {
        self.heap.len() < self.limit || self.heap.peek().is_some_and(|w| time >= w.0 .0)
    }

    fn into_positions(self) -> Vec<Position> {
        let mut ranks: Vec<(i64, u64)> = self.heap.into_iter().map(|r| r.0).collect();
        ranks.sort_unstable_by(|a, b| b.cmp(a));
        ranks
            .into_iter()
            .map(|r| {
                let (time, seq) = rank(self.order, r);
                Position { time, seq }
            })
            .collect()
    }
}

/// A segment with its `time` column and map.
struct TimedSegment<'a> {
    seg: &'a SegmentSeqs<'a>,
    times: Column<i64>,
    map: Arc<TimeMap>,
    /// The ranks of the times of its best and worst regular docs.
    best: i64,
    worst: i64,
}

/// Up to `limit` positions of matching documents, in `order` of
/// `(time, seq)`, strictly after `after`, none below seq `first`.
///
/// `own`: the term of Stele's records when the query leaves them out (the
/// time maps may then ignore them).
pub(super) fn search_by_time(
    segments: &[SegmentSeqs<'_>],
    weight: &dyn Weight,
    order: Order,
    limit: usize,
    after: Option<Position>,
    first: u64,
    own: Option<&Term>,
) -> Result<Vec<Position>, TextError> {
    let mut timed = Vec::with_capacity(segments.len());
    for seg in segments {
        if seg.max < first || seg.max_doc() == 0 {
            continue;
        }
        let times = columns::times(seg.reader).map_err(tantivy_err)?;
        let map = TimeMap::of(seg.reader, &times, own).map_err(tantivy_err)?;
        let (best, worst) = match order {
            Order::Desc => (map.max, map.min),
            Order::Asc => (!map.min, !map.max),
        };
        timed.push(TimedSegment {
            seg,
            times,
            map,
            best,
            worst,
        });
    }
    let mut best = Best {
        order,
        limit,
        heap: BinaryHeap::with_capacity(limit + 1),
        after: after.map(|p| rank(order, (p.time, p.seq))),
    };
    timed.sort_by_key(|t| Reverse(t.best));
    for t in &timed {
        if !best.may_enter(t.best) {
            break; // every later segment ranks lower still
        }
        if best.after.is_some_and(|a| t.worst > a.0) {
            continue; // entirely at or before the position
        }
        scan(t, weight, first, &mut best)?;
    }
    for t in &timed {
        offer_exceptions(t, weight, first, &mut best)?;
    }
    Ok(best.into_positions())
}

/// Offers the segment's live regular matches with a seq of at least `first`;
/// newest first, stops at the first block from which no regular doc can
/// enter a full page.
fn scan(
    t: &TimedSegment<'_>,
    weight: &dyn Weight,
    first: u64,
    best: &mut Best,
) -> Result<(), TextError> {
    let seg = t.seg;
    let end = live_end(seg, first);
    let exceptions = t.map.exceptions();
    let mut x = 0;
    let mut scorer = weight.scorer(seg.reader, 1.0).map_err(query_failed)?;
    let mut doc = scorer.doc();
    let mut block = u32::MAX;
    while doc != TERMINATED && doc < end {
        if best.order == Order::Desc && doc / BLOCK_DOCS != block {
            block = doc / BLOCK_DOCS;
            if !best.may_enter(t.map.newest_from(block)) {
                break; // no regular doc from here on is newer than the worst kept
            }
        }
        x = skip_below(exceptions, x, doc);
        let exception = exceptions.get(x).is_some_and(|e| e.0 == doc);
        if !exception && seg.alive(doc) {
            best.offer((t.times.first(doc).unwrap_or(0), seg.seq(doc)));
        }
        doc = scorer.advance();
    }
    Ok(())
}

/// Offers the segment's live exceptions that match and could enter the page.
fn offer_exceptions(
    t: &TimedSegment<'_>,
    weight: &dyn Weight,
    first: u64,
    best: &mut Best,
) -> Result<(), TextError> {
    let seg = t.seg;
    let end = live_end(seg, first);
    let exceptions = t.map.exceptions();
    let mut scorer: Option<Box<dyn tantivy::query::Scorer>> = None;
    let mut x = 0;
    while let Some(&(doc, time)) = exceptions.get(x) {
        if doc >= end {
            break;
        }
        x += 1;
        if !best.may_enter(rank(best.order, (time, 0)).0) || !seg.alive(doc) {
            continue;
        }
        let scorer = match &mut scorer {
            Some(s) => s,
            None => scorer.insert(weight.scorer(seg.reader, 1.0).map_err(query_failed)?),
        };
        if scorer.doc() < doc {
            scorer.seek(doc);
        }
        match scorer.doc() {
            TERMINATED => break,
            d if d == doc => best.offer((time, seg.seq(doc))),
            // The next match is further on: skip the exceptions before it.
            d => x = skip_below(exceptions, x, d),
        }
    }
    Ok(())
}

/// The first index at or after `from` whose exception's doc is not below
/// `doc` (galloping: cheap for the short steps of a scan and the long ones
/// of a rare match).
pub(super) fn skip_below(exceptions: &[(DocId, i64)], from: usize, doc: DocId) -> usize {
    let below = |i: usize| exceptions.get(i).is_some_and(|e| e.0 < doc);
    if !below(from) {
        return from;
    }
    let mut step = 1;
    while below(from + step) {
        step *= 2;
    }
    let (lo, hi) = (from + step / 2 + 1, (from + step).min(exceptions.len()));
    lo + exceptions[lo..hi].partition_point(|e| e.0 < doc)
}

/// The end of the segment's docs with a seq of at least `first`: seqs
/// descend with the doc id, so the docs below `first` are a suffix.
fn live_end(seg: &SegmentSeqs<'_>, first: u64) -> DocId {
    if seg.min < first {
        seg.partition_point(|seq| seq >= first)
    } else {
        seg.max_doc()
    }
}
