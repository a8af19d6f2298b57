//! Counting matches without collecting anything else: the `total` of a listing and
//! `GET /v1/count`.
//!
//! A segment entirely at or above `first` (the oldest seq the log keeps) is counted by
//! the query's own `Weight::count` (a term query on a segment without deletes is its
//! posting list's length, no iteration); a segment holding documents retention
//! dropped (not yet deleted from the index, at most one commit interval) is walked
//! up to the first of them, so the count equals what a listing can return.
//! A count in a time window is a statistic of its total alone: the cached
//! per-segment totals of the filter without the window, less the matches outside
//! it (`partials`), so a window that cuts through large segments costs no walk.

use super::*;
use crate::query::OwnRecords;

impl TextIndex {
    /// Number of live documents matching `filter` with a seq of at least `first`
    /// (`first <= 1`: all of them).
    ///
    /// Leaving Stele's own events out makes the query a boolean with an
    /// exclusion, which tantivy counts by walking every match. So when some
    /// are there to leave out, the count is the matches with them minus
    /// theirs: two counts that need no walk (or walk only Stele's events).
    pub fn count_from(&self, filter: &Filter, first: u64) -> Result<u64, TextError> {
        guarded(|| self.count_in(&self.shared.reader.searcher(), filter, first))
    }

    /// [`TextIndex::count_from`] on `searcher`.
    pub(super) fn count_in(
        &self,
        searcher: &Searcher,
        filter: &Filter,
        first: u64,
    ) -> Result<u64, TextError> {
        {
            if filter.since.is_some() || filter.until.is_some() {
                // A window: the cached per-segment totals of the filter without
                // it, less the matches outside (see `partials`); the exclusion
                // is walked once per segment, when its total is cached.
                let Some((time_lo, time_hi)) = time_bounds(filter) else {
                    return Ok(0);
                };
                let total_only = super::stats::StatsCollector {
                    columns: Vec::new(),
                    codes: false,
                    day_ago: None,
                    bucket: None,
                    risk: false,
                    time_lo,
                    time_hi,
                    first,
                };
                return Ok(self.stats_by_segment(searcher, filter, &total_only)?.total);
            }
            if filter.own_records() == OwnRecords::Exclude && self.holds_own_records(searcher)? {
                let with = Filter {
                    stele_records: OwnRecords::Include,
                    ..filter.clone()
                };
                let own = Filter {
                    stele_records: OwnRecords::Only,
                    ..filter.clone()
                };
                let all = self.count_on(&with, searcher, first)?;
                return Ok(all.saturating_sub(self.count_on(&own, searcher, first)?));
            }
            self.count_on(filter, searcher, first)
        }
    }

    fn count_on(&self, filter: &Filter, searcher: &Searcher, first: u64) -> Result<u64, TextError> {
        let Some(weight) = self.weight_on(filter, searcher)? else {
            return Ok(0);
        };
        let mut total = 0u64;
        for seg in SegmentSeqs::of(searcher)? {
            total += count_segment(&seg, weight.as_ref(), first)?;
        }
        Ok(total)
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
