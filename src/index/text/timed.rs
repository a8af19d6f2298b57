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
//! newest segments only. Within a segment (docs in descending seq order, so
//! roughly newest first), a newest-first scan stops as soon as no later doc
//! can beat the heap: each segment's greatest time from every block of
//! [`BLOCK_DOCS`] docs to its end (suffix maxima) is computed once per
//! segment (segments are immutable) and kept in a small cache. When the
//! query leaves Stele's own records out (the default), they are left out of
//! the bound as well: findings are stamped when they are made, so in a log
//! of events that arrive long after they happened they would otherwise hold
//! every block's bound at "now" and no scan could stop early.
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

/// Docs per block of the suffix maxima.
pub(super) const BLOCK_DOCS: u32 = 1024;

/// Segments whose suffix maxima are cached; the cache is emptied when it
/// holds more (merged-away segments go with it).
const SUFFIX_CACHE_SEGMENTS_MAX: usize = 4096;

/// For each block of [`BLOCK_DOCS`] docs of the segment, the greatest time
/// of its docs and of every later doc (deleted ones included: an upper
/// bound is all the early stop needs).
/// With `skip`, the docs holding that term (Stele's own records, which the
/// query leaves out) do not count.
fn suffix_maxima(t: &TimedSegment<'_>, skip: Option<&Term>) -> Result<Arc<[i64]>, TextError> {
    type Cache = Mutex<HashMap<(tantivy::index::SegmentId, bool), Arc<[i64]>>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let id = (t.seg.reader.segment_id(), skip.is_some());
    if let Some(m) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
        return Ok(m.clone());
    }
    let mut skipped = Vec::new();
    if let Some(term) = skip {
        let postings = t
            .seg
            .reader
            .inverted_index(term.field())
            .map_err(tantivy_err)?
            .read_postings(term, tantivy::schema::IndexRecordOption::Basic)
            .map_err(tantivy_err)?;
        if let Some(mut p) = postings {
            while p.doc() != TERMINATED {
                skipped.push(p.doc());
                p.advance();
            }
        }
    }
    let max_doc = t.seg.reader.max_doc();
    let blocks = max_doc.div_ceil(BLOCK_DOCS) as usize;
    let mut m = vec![i64::MIN; blocks];
    let mut next_skipped = skipped.iter().peekable();
    for doc in 0..max_doc {
        if next_skipped.next_if(|&&d| d == doc).is_some() {
            continue;
        }
        let b = (doc / BLOCK_DOCS) as usize;
        m[b] = m[b].max(t.times.first(doc).unwrap_or(0));
    }
    for b in (0..blocks.saturating_sub(1)).rev() {
        m[b] = m[b].max(m[b + 1]);
    }
    let m: Arc<[i64]> = m.into();
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
    if c.len() >= SUFFIX_CACHE_SEGMENTS_MAX {
        c.clear();
    }
    c.insert(id, m.clone());
    Ok(m)
}

/// A segment's `time` column with its bounds.
struct TimedSegment<'a> {
    seg: &'a SegmentSeqs<'a>,
    times: Column<i64>,
    min: i64,
    max: i64,
}

/// Up to `limit` positions of matching documents, in `order` of
/// `(time, seq)`, strictly after `after`, none below seq `first`.
///
/// `skip`: a term no match holds (the query leaves those docs out), whose
/// docs the early stop's bounds may ignore.
pub(super) fn search_by_time(
    segments: &[SegmentSeqs<'_>],
    weight: &dyn Weight,
    order: Order,
    limit: usize,
    after: Option<Position>,
    first: u64,
    skip: Option<&Term>,
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
                scan_newest(t, weight, first, limit, after, skip, &mut heap)?;
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

/// Keeps in `heap` (a min-heap of at most `limit` keys) the greatest
/// `(time, seq)` keys of the segment's live matches with a seq of at least
/// `first` and a key below `after`, stopping at the first block from which
/// no doc can beat a full heap.
fn scan_newest(
    t: &TimedSegment<'_>,
    weight: &dyn Weight,
    first: u64,
    limit: usize,
    after: Option<(i64, u64)>,
    skip: Option<&Term>,
    heap: &mut BinaryHeap<Reverse<(i64, u64)>>,
) -> Result<(), TextError> {
    let seg = t.seg;
    let end = live_end(seg, first);
    let bounds = suffix_maxima(t, skip)?;
    let mut scorer = weight.scorer(seg.reader, 1.0).map_err(query_failed)?;
    let mut doc = scorer.doc();
    let mut block = u32::MAX;
    while doc != TERMINATED && doc < end {
        if doc / BLOCK_DOCS != block {
            block = doc / BLOCK_DOCS;
            let worst = (heap.len() == limit).then(|| heap.peek().map(|w| w.0 .0));
            if worst.flatten().is_some_and(|w| bounds[block as usize] < w) {
                break; // no doc from here on is newer than the worst kept
            }
        }
        if seg.alive(doc) {
            let k = (t.times.first(doc).unwrap_or(0), seg.seq(doc));
            if after.is_none_or(|a| k < a) {
                if heap.len() < limit {
                    heap.push(Reverse(k));
                } else if heap.peek().is_some_and(|w| k > w.0) {
                    heap.pop();
                    heap.push(Reverse(k));
                }
            }
        }
        doc = scorer.advance();
    }
    Ok(())
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

/// Feeds the `(time, seq)` key of every live match of the segment with a
/// seq of at least `first` to `keep`.
fn scan(
    t: &TimedSegment<'_>,
    weight: &dyn Weight,
    first: u64,
    mut keep: impl FnMut((i64, u64)),
) -> Result<(), TextError> {
    let seg = t.seg;
    let end = live_end(seg, first);
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
