//! Search in event-time order: the matches with the greatest (or least)
//! `(time, seq)` keys, continuing strictly after a position.
//!
//! Segments are sorted by seq, not by time, so a page cannot stop at the
//! first matches it meets as the seq-ordered search does. Instead every
//! segment whose time range can still beat the page is scanned into a
//! bounded heap of `limit` keys; segments are visited best-first by their
//! time bounds (the column's min and max), so once the heap is full the
//! segments entirely older (or newer) than its worst key are skipped. Events
//! mostly arrive in time order, so a newest-first page usually scans the
//! newest segments only.
//!
//! Invariants:
//! 1. Keys are unique (seqs are), so the order is total and a position
//!    splits the matches exactly: no page repeats or skips a key.
//! 2. Documents whose seq is below `first` (dropped by retention, not yet
//!    deleted from the index) are never returned.

use super::*;
use crate::query::Position;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A segment's `time` column with its bounds.
struct TimedSegment<'a> {
    seg: &'a SegmentSeqs<'a>,
    times: Column<i64>,
    min: i64,
    max: i64,
}

/// Up to `limit` positions of matching documents, in `order` of
/// `(time, seq)`, strictly after `after`, none below seq `first`.
pub(super) fn search_by_time(
    segments: &[SegmentSeqs<'_>],
    weight: &dyn Weight,
    order: Order,
    limit: usize,
    after: Option<Position>,
    first: u64,
) -> Result<Vec<Position>, TextError> {
    let mut timed = Vec::with_capacity(segments.len());
    for seg in segments {
        if seg.max < first {
            continue;
        }
        let times = seg.reader.fast_fields().i64(F_TIME).map_err(tantivy_err)?;
        timed.push(TimedSegment {
            seg,
            min: times.min_value(),
            max: times.max_value(),
            times,
        });
    }
    let key = |p: &Position| (p.time, p.seq);
    let after = after.map(|p| key(&p));
    match order {
        Order::Desc => {
            // Newest first: a min-heap of the best keys; its top is the worst kept.
            timed.sort_by_key(|t| Reverse(t.max));
            let mut heap: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::with_capacity(limit + 1);
            for t in &timed {
                let worst = (heap.len() == limit)
                    .then(|| heap.peek().map(|r| r.0))
                    .flatten();
                if worst.is_some_and(|w| t.max < w.0) {
                    break; // every later segment is older still
                }
                if after.is_some_and(|a| t.min > a.0) {
                    continue; // entirely at or before the position
                }
                scan(t, weight, first, |k| {
                    if after.is_some_and(|a| k >= a) {
                        return;
                    }
                    if heap.len() < limit {
                        heap.push(Reverse(k));
                    } else if heap.peek().is_some_and(|w| k > w.0) {
                        heap.pop();
                        heap.push(Reverse(k));
                    }
                })?;
            }
            let mut keys: Vec<(i64, u64)> = heap.into_iter().map(|r| r.0).collect();
            keys.sort_unstable_by(|a, b| b.cmp(a));
            Ok(keys
                .into_iter()
                .map(|(time, seq)| Position { time, seq })
                .collect())
        }
        Order::Asc => {
            // Oldest first: a max-heap of the best keys; its top is the worst kept.
            timed.sort_by_key(|t| t.min);
            let mut heap: BinaryHeap<(i64, u64)> = BinaryHeap::with_capacity(limit + 1);
            for t in &timed {
                let worst = (heap.len() == limit)
                    .then(|| heap.peek().copied())
                    .flatten();
                if worst.is_some_and(|w| t.min > w.0) {
                    break; // every later segment is newer still
                }
                if after.is_some_and(|a| t.max < a.0) {
                    continue;
                }
                scan(t, weight, first, |k| {
                    if after.is_some_and(|a| k <= a) {
                        return;
                    }
                    if heap.len() < limit {
                        heap.push(k);
                    } else if heap.peek().is_some_and(|w| k < *w) {
                        heap.pop();
                        heap.push(k);
                    }
                })?;
            }
            let mut keys = heap.into_vec();
            keys.sort_unstable();
            Ok(keys
                .into_iter()
                .map(|(time, seq)| Position { time, seq })
                .collect())
        }
    }
}

/// Feeds the `(time, seq)` key of every live match of the segment with a
/// seq of at least `first` to `keep`.
fn scan(
    t: &TimedSegment<'_>,
    weight: &dyn Weight,
    first: u64,
    mut keep: impl FnMut((i64, u64)),
) -> Result<(), TextError> {
    let seg = t.seg;
    // Seqs descend with the doc id: the docs below `first` are a suffix.
    let end = if seg.min < first {
        seg.partition_point(|seq| seq >= first)
    } else {
        seg.max_doc()
    };
    let mut scorer = weight.scorer(seg.reader, 1.0).map_err(query_failed)?;
    let mut doc = scorer.doc();
    while doc != TERMINATED && doc < end {
        if seg.alive(doc) {
            let time = t.times.first(doc).unwrap_or(0);
            keep((time, seg.seq(doc)));
        }
        doc = scorer.advance();
    }
    Ok(())
}
