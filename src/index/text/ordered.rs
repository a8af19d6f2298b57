//! Ordered search over seq-sorted segments: the newest (or oldest) matches without
//! collecting and sorting all of them.

use super::*;

/// A segment with its `seq` column. Doc ids run in *descending* seq order (the index sort).
pub(super) struct SegmentSeqs<'a> {
    pub(super) reader: &'a SegmentReader,
    pub(super) seqs: Column<u64>,
    /// Bounds of every seq in the segment (deleted docs included).
    pub(super) min: u64,
    pub(super) max: u64,
}

impl<'a> SegmentSeqs<'a> {
    pub(super) fn of(searcher: &'a Searcher) -> Result<Vec<SegmentSeqs<'a>>, TextError> {
        let mut out = Vec::with_capacity(searcher.segment_readers().len());
        for reader in searcher.segment_readers() {
            if reader.num_docs() == 0 {
                continue;
            }
            let seqs = columns::seqs(reader).map_err(tantivy_err)?;
            out.push(SegmentSeqs {
                reader,
                min: seqs.min_value(),
                max: seqs.max_value(),
                seqs,
            });
        }
        Ok(out)
    }

    pub(super) fn max_doc(&self) -> DocId {
        self.reader.max_doc()
    }

    pub(super) fn seq(&self, doc: DocId) -> u64 {
        self.seqs.first(doc).unwrap_or(0)
    }

    pub(super) fn alive(&self, doc: DocId) -> bool {
        self.reader
            .alive_bitset()
            .is_none_or(|alive| alive.is_alive(doc))
    }

    /// The first doc whose seq is not `pred` (docs in `[0, result)` all satisfy `pred`),
    /// for a predicate that holds on a prefix (seq descends with the doc id).
    pub(super) fn partition_point(&self, pred: impl Fn(u64) -> bool) -> DocId {
        let (mut lo, mut hi) = (0, self.max_doc());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.seq(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Newest first: in each segment, walk the matches from the first doc at or after the
/// cursor and stop after `limit` live ones (they are the segment's newest).
pub(super) fn search_desc(
    segments: &[SegmentSeqs<'_>],
    weight: &dyn Weight,
    limit: usize,
    after: Option<u64>,
) -> Result<Vec<u64>, TextError> {
    let mut order: Vec<&SegmentSeqs<'_>> = segments.iter().collect();
    order.sort_by_key(|s| std::cmp::Reverse(s.max));
    let mut best: Vec<u64> = Vec::new();
    // Once `best` holds `limit` seqs: the smallest of them; nothing at or below can enter.
    let mut floor: Option<u64> = None;
    for seg in order {
        if floor.is_some_and(|t| seg.max <= t) {
            break; // the remaining segments are older still
        }
        if after.is_some_and(|s| seg.min >= s) {
            continue;
        }
        let start = match after {
            Some(s) => seg.partition_point(|seq| seq >= s),
            None => 0,
        };
        if start >= seg.max_doc() {
            continue;
        }
        let mut scorer = weight.scorer(seg.reader, 1.0).map_err(query_failed)?;
        let mut doc = scorer.doc();
        if doc < start {
            doc = scorer.seek(start);
        }
        let mut taken = 0;
        while doc != TERMINATED {
            let seq = seg.seq(doc);
            if floor.is_some_and(|t| seq <= t) {
                break;
            }
            if seg.alive(doc) {
                best.push(seq);
                taken += 1;
                if taken == limit {
                    break;
                }
            }
            doc = scorer.advance();
        }
        if best.len() >= limit {
            best.sort_unstable_by(|a, b| b.cmp(a));
            best.truncate(limit);
            floor = best.last().copied();
        }
    }
    best.sort_unstable_by(|a, b| b.cmp(a));
    best.truncate(limit);
    Ok(best)
}

/// Oldest first: the oldest docs are at the end of each segment, so read windows of doc
/// ids backwards from the end (or from the cursor), growing 4× each time, until `limit`
/// live matches are found. Each window needs a fresh scorer (scorers only move forward).
pub(super) fn search_asc(
    segments: &[SegmentSeqs<'_>],
    weight: &dyn Weight,
    limit: usize,
    after: Option<u64>,
) -> Result<Vec<u64>, TextError> {
    let mut order: Vec<&SegmentSeqs<'_>> = segments.iter().collect();
    order.sort_by_key(|s| s.min);
    let mut best: Vec<u64> = Vec::new();
    // Once `best` holds `limit` seqs: the largest of them; nothing at or above can enter.
    let mut ceiling: Option<u64> = None;
    let mut window_seqs: Vec<u64> = Vec::new();
    for seg in order {
        if ceiling.is_some_and(|t| seg.min >= t) {
            break;
        }
        if after.is_some_and(|s| seg.max <= s) {
            continue;
        }
        let mut end = match after {
            Some(s) => seg.partition_point(|seq| seq > s),
            None => seg.max_doc(),
        };
        let mut scorer = Some(weight.scorer(seg.reader, 1.0).map_err(query_failed)?);
        // Size the first window so that it probably holds `limit` matches.
        let hint = scorer
            .as_ref()
            .map_or(1, |s| u64::from(s.size_hint()).max(1));
        let wanted = (limit as u64)
            .saturating_mul(u64::from(seg.max_doc()))
            .saturating_mul(2)
            / hint;
        let mut window = u32::try_from(wanted.clamp(64, u64::from(u32::MAX))).unwrap_or(u32::MAX);
        let mut found = 0;
        while end > 0 && found < limit {
            let start = end.saturating_sub(window);
            let mut s = match scorer.take() {
                Some(s) => s,
                None => weight.scorer(seg.reader, 1.0).map_err(query_failed)?,
            };
            let mut doc = s.doc();
            if doc < start {
                doc = s.seek(start);
            }
            window_seqs.clear();
            while doc < end {
                if seg.alive(doc) {
                    window_seqs.push(seg.seq(doc));
                }
                doc = s.advance();
            }
            // Window seqs descend; the segment's oldest come last.
            for &seq in window_seqs.iter().rev() {
                if found == limit || ceiling.is_some_and(|t| seq >= t) {
                    break;
                }
                best.push(seq);
                found += 1;
            }
            end = start;
            if end > 0 && ceiling.is_some_and(|t| seg.seq(end - 1) >= t) {
                break;
            }
            window = window.saturating_mul(4);
        }
        if best.len() >= limit {
            best.sort_unstable();
            best.truncate(limit);
            ceiling = best.last().copied();
        }
    }
    best.sort_unstable();
    best.truncate(limit);
    Ok(best)
}
