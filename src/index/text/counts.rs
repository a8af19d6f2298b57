//! Counting matches without collecting anything else: the `total` of a listing and
//! `GET /v1/count`.
//!
//! A segment entirely at or above `first` (the oldest seq the log keeps) is counted by
//! the query's own `Weight::count` (a term query on a segment without deletes is its
//! posting list's length, no iteration); a segment holding documents retention
//! dropped (not yet deleted from the index, at most one commit interval) is walked
//! up to the first of them, so the count equals what a listing can return.

use super::*;

impl TextIndex {
    /// Number of live documents matching `filter` with a seq of at least `first`
    /// (`first <= 1`: all of them).
    pub fn count_from(&self, filter: &Filter, first: u64) -> Result<u64, TextError> {
        guarded(|| {
            let Some((searcher, weight)) = self.weighted(filter)? else {
                return Ok(0);
            };
            let mut total = 0u64;
            for seg in SegmentSeqs::of(&searcher)? {
                total += count_segment(&seg, weight.as_ref(), first)?;
            }
            Ok(total)
        })
    }
}

fn count_segment(seg: &SegmentSeqs<'_>, weight: &dyn Weight, first: u64) -> Result<u64, TextError> {
    if seg.max < first {
        return Ok(0);
    }
    if seg.min >= first {
        return Ok(u64::from(weight.count(seg.reader).map_err(query_failed)?));
    }
    // Seqs descend with the doc id: the docs below `first` are a suffix.
    let end = seg.partition_point(|seq| seq >= first);
    let mut scorer = weight.scorer(seg.reader, 1.0).map_err(query_failed)?;
    let mut doc = scorer.doc();
    let mut n = 0;
    while doc != TERMINATED && doc < end {
        if seg.alive(doc) {
            n += 1;
        }
        doc = scorer.advance();
    }
    Ok(n)
}
