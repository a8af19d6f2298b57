//! Statistics segment by segment, with a cache of each sealed segment's partial
//! aggregates: what [`TextIndex::stats_of`] runs instead of one pass over every
//! match.
//!
//! tantivy segments are immutable: a segment id and its delete set (deletes only
//! grow, so their count names the set) always hold the same documents. The counts
//! of a segment's matches under a filter *without its time window* are therefore
//! a fixed value, a [`Partial`]: the total, the counts per packed `codes` value,
//! per risk level, per value of each requested string column (by the value's
//! number in the column's dict, `values`) and per histogram bucket of each
//! requested width. For each segment of the searcher a question
//!
//! - skips it when its event-time range (the `time` column's min and max) misses
//!   the window;
//! - counts it by chunks when it is large and the window cuts it (`chunks`);
//! - merges its cached partial when that range lies wholly inside the window
//!   (computing and storing the parts it lacks, once);
//! - when the window cuts off less than half of the range (by time), merges its
//!   cached partial minus the counts of its matches outside the window (the
//!   edge, read from the columns);
//! - otherwise, and for a segment holding live documents below `first` (dropped by
//!   retention, not yet deleted from the index),
//!   reads the columns of its matches in the window, as the single pass did.
//!
//! Invariants:
//! 1. Exactness: the merged counts equal the single pass's. A partial is keyed by
//!    the segment id, its delete count and opstamp and the filter's fingerprint
//!    with `since`/`until` cleared ([`Filter::fingerprint_into`] encodes every
//!    field); it is used only for a segment whose every live document lies in
//!    the window, or with the outside matches subtracted. Histogram buckets are
//!    aligned to the unix epoch (`time.div_euclid(width)`), so a segment's buckets
//!    are the same in every window and add up exactly. Values whose count falls
//!    to zero after a subtraction are not counted as distinct; letter-case
//!    variants are folded only after every segment is merged. A question takes
//!    the columns' dicts once; a partial whose counts of a column are numbered
//!    by another generation of its dict lacks that column (`values` invariant 1).
//! 2. Bounded: the cache (`partial_cache`) holds at most [`PARTIALS_BYTES_MAX`] (estimated bytes),
//!    least recently used entries evicted first; entries of segments (or delete
//!    sets) no longer in the searcher are dropped when a question sees the
//!    segment set change. A retention delete changes a segment's delete count,
//!    hence its key.
//! 3. Nothing is cached that a question did not ask for: a partial holds the parts
//!    requested of it, and a later question asking more computes only the missing
//!    parts of that segment.

use super::chunks::Chunked;
use super::partial_cache::{Key, PartialCache, SegmentVersion, WHOLE};
use super::stats::{end_below, merge_histogram, MergedStats, SegmentStatsFruit, StatsCollector};
use super::timemap::TimeMap;
use super::values::{Dicts, Numbered};
use super::*;
use std::ops::Range;

/// A segment below this many documents that the window cuts is read directly
/// (its edge is not worth a cached partial).
#[cfg(not(test))]
const COMPLEMENT_DOCS_MIN: u32 = 4096;
/// Small in tests, whose segments are.
#[cfg(test)]
const COMPLEMENT_DOCS_MIN: u32 = 16;

/// A histogram's non-empty buckets: `(bucket start, count)`, ascending.
type Buckets = Arc<Vec<(i64, u64)>>;

/// The counts of one segment's matches (see the module documentation); a part
/// is present once asked for.
#[derive(Debug, Clone, Default)]
pub(super) struct Partial {
    total: u64,
    /// `(codes value, count)`, counts above 0.
    codes: Option<Arc<Vec<(u16, u64)>>>,
    risk: Option<[u64; 3]>,
    /// Per string column: count per stored value (not folded), by its number
    /// in the column's dict of the generation it holds (`values`).
    columns: Vec<(&'static str, Arc<Numbered>)>,
    /// Per bucket width: `(bucket start, count)`.
    histograms: Vec<(i64, Buckets)>,
}

impl Partial {
    /// The counts of column `name`, when they are numbered by `dicts`'.
    fn column(&self, name: &str, dicts: &Dicts) -> Option<&Numbered> {
        self.columns
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m.as_ref())
            .filter(|m| m.generation == dicts.of(name).generation())
    }

    fn histogram(&self, width: i64) -> Option<&Buckets> {
        self.histograms
            .iter()
            .find(|(w, _)| *w == width)
            .map(|(_, h)| h)
    }

    /// The collector of the parts of `want` this partial lacks (`None`: it
    /// has them all); it counts every document of the segment (no window, no
    /// `first`).
    fn missing(&self, want: &StatsCollector, dicts: &Dicts, known: bool) -> Option<StatsCollector> {
        let columns: Vec<&'static str> = want
            .columns
            .iter()
            .copied()
            .filter(|c| self.column(c, dicts).is_none())
            .collect();
        let codes = want.codes && self.codes.is_none();
        let risk = want.risk && self.risk.is_none();
        let bucket = want.bucket.filter(|w| self.histogram(*w).is_none());
        if known && columns.is_empty() && !codes && !risk && bucket.is_none() {
            return None;
        }
        Some(StatsCollector {
            columns,
            codes,
            day_ago: None,
            bucket,
            risk,
            time_lo: i64::MIN,
            time_hi: i64::MAX,
            first: 0,
        })
    }

    /// The counts of `fruit`, collected by `by`, its columns numbered by `dicts`.
    pub(super) fn of_fruit(
        fruit: SegmentStatsFruit,
        by: &StatsCollector,
        dicts: &Dicts,
    ) -> tantivy::Result<Partial> {
        let mut partial = Partial {
            total: fruit.total,
            risk: by.risk.then_some(fruit.risk_counts),
            ..Partial::default()
        };
        if by.codes {
            let codes = fruit
                .code_counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(c, n)| (c as u16, *n))
                .collect();
            partial.codes = Some(Arc::new(codes));
        }
        for (name, column) in by.columns.iter().zip(fruit.columns) {
            let numbered = match column {
                Some(column) => dicts.of(name).numbered(column)?,
                None => Numbered {
                    generation: dicts.of(name).generation(),
                    counts: Vec::new(),
                },
            };
            partial.columns.push((*name, Arc::new(numbered)));
        }
        if let Some(width) = by.bucket {
            let mut map = HashMap::new();
            if let Some(h) = fruit.histogram {
                merge_histogram(&mut map, h, width);
            }
            let mut v: Vec<(i64, u64)> = map.into_iter().collect();
            v.sort_unstable();
            partial.histograms.push((width, Arc::new(v)));
        }
        Ok(partial)
    }

    /// This partial with the parts of `more` (of the same documents) added,
    /// in place of any it had of the same columns (of an older generation).
    fn with(&self, more: Partial) -> Partial {
        let mut out = self.clone();
        out.total = more.total;
        out.codes = out.codes.or(more.codes);
        out.risk = out.risk.or(more.risk);
        out.columns
            .retain(|(name, _)| more.columns.iter().all(|(n, _)| n != name));
        out.columns.extend(more.columns);
        out.histograms.extend(more.histograms);
        out
    }

    /// Estimated bytes in memory.
    pub(super) fn bytes(&self) -> usize {
        160 + self.codes.as_ref().map_or(0, |c| c.len() * 16)
            + self
                .columns
                .iter()
                .map(|(_, m)| m.counts.len() * 8 + 64)
                .sum::<usize>()
            + self
                .histograms
                .iter()
                .map(|(_, h)| h.len() * 16 + 40)
                .sum::<usize>()
    }

    /// Adds (`add`) or subtracts this partial's parts that `to` asks for
    /// into `merged` (whose tallies are numbered by `dicts`). A subtraction
    /// follows the addition of a superset.
    pub(super) fn apply(
        &self,
        to: &StatsCollector,
        dicts: &Dicts,
        merged: &mut MergedStats,
        add: bool,
    ) {
        let op = |into: &mut u64, n: u64| {
            *into = if add {
                *into + n
            } else {
                into.saturating_sub(n)
            }
        };
        op(&mut merged.total, self.total);
        if let (true, Some(codes)) = (to.codes, &self.codes) {
            for (c, n) in codes.iter() {
                if let Some(into) = merged.code_counts.get_mut(usize::from(*c)) {
                    op(into, *n);
                }
            }
        }
        if let (true, Some(risk)) = (to.risk, &self.risk) {
            for (into, n) in merged.risk_counts.iter_mut().zip(risk) {
                op(into, *n);
            }
        }
        for (name, into) in to.columns.iter().zip(merged.columns.iter_mut()) {
            // Present: `partial_of` computed what was lacking, for these dicts.
            if let Some(column) = self.column(name, dicts) {
                debug_assert_eq!(column.generation, into.generation());
                into.apply(&column.counts, add);
            }
        }
        if let Some(h) = to.bucket.and_then(|w| self.histogram(w)) {
            for (start, n) in h.iter() {
                op(merged.histogram.entry(*start).or_insert(0), *n);
            }
        }
    }

    /// A partial of `values` distinct values of one column, for the cache's tests.
    #[cfg(test)]
    pub(super) fn of_values(values: usize) -> Partial {
        Partial {
            total: values as u64,
            columns: vec![(
                "_action",
                Arc::new(Numbered {
                    generation: 1,
                    counts: (0..values as u32).map(|i| (i, 1)).collect(),
                }),
            )],
            ..Partial::default()
        }
    }
}

/// One question counted from partials: what its segments' partials and edges
/// are computed with.
pub(super) struct Question<'a> {
    pub(super) cache: &'a PartialCache,
    /// The question's collector (with its window).
    pub(super) collector: &'a StatsCollector,
    /// The dicts its columns are numbered by, taken when it started.
    pub(super) dicts: &'a Dicts,
    /// The filter's fingerprint, `since` and `until` cleared.
    pub(super) fingerprint: Arc<[u8]>,
    /// The question without its window.
    pub(super) all: &'a dyn Weight,
    /// The question before its window / after it.
    pub(super) below: Option<&'a dyn Weight>,
    pub(super) above: Option<&'a dyn Weight>,
}

impl Question<'_> {
    /// The partial of `chunk` of `reader` (`WHOLE`: the segment) holding every
    /// part the question asks for: from the cache, or computing (and storing)
    /// the parts it lacks.
    pub(super) fn partial(
        &self,
        ord: SegmentOrdinal,
        reader: &SegmentReader,
        chunk: u32,
        docs: Option<Range<DocId>>,
    ) -> Result<Arc<Partial>, TextError> {
        let key = Key {
            segment: SegmentVersion::of(reader),
            chunk,
            filter: Arc::clone(&self.fingerprint),
        };
        let cached = self.cache.get(&key);
        let more = match cached.as_deref() {
            None => Partial::default().missing(self.collector, self.dicts, false),
            Some(p) => p.missing(self.collector, self.dicts, true),
        };
        let Some(more) = more else {
            self.cache.hit();
            return Ok(cached.unwrap_or_default());
        };
        self.cache.miss();
        let fruit = match docs {
            None => more.collect_segment(self.all, ord, reader),
            Some(docs) => super::chunks::collect_docs(&more, self.all, ord, reader, docs),
        }
        .map_err(query_failed)?;
        let fresh = Partial::of_fruit(fruit, &more, self.dicts).map_err(tantivy_err)?;
        let partial = Arc::new(match cached {
            Some(old) => old.with(fresh),
            None => fresh,
        });
        self.cache.put(key, Arc::clone(&partial));
        Ok(partial)
    }

    /// Adds (`add`) or subtracts the partial of `chunk` of `reader`.
    pub(super) fn apply(
        &self,
        merged: &mut MergedStats,
        ord: SegmentOrdinal,
        reader: &SegmentReader,
        chunk: u32,
        docs: Option<Range<DocId>>,
        add: bool,
    ) -> Result<(), TextError> {
        self.partial(ord, reader, chunk, docs)?
            .apply(self.collector, self.dicts, merged, add);
        Ok(())
    }

    /// Subtracts from `merged` the matches of `reader` (in `docs`, or all)
    /// before the window (`below`) and after it (`above`): the edges of a
    /// partial added whole. Whether anything was subtracted.
    pub(super) fn subtract_edges(
        &self,
        merged: &mut MergedStats,
        ord: SegmentOrdinal,
        reader: &SegmentReader,
        docs: Option<Range<DocId>>,
        (below, above): (bool, bool),
    ) -> Result<bool, TextError> {
        let edge = StatsCollector {
            time_lo: i64::MIN,
            time_hi: i64::MAX,
            first: 0,
            ..self.collector.clone()
        };
        let mut subtracted = false;
        let sides = [(below, self.below), (above, self.above)];
        for weight in sides.into_iter().filter(|s| s.0).filter_map(|s| s.1) {
            let fruit = match docs.clone() {
                None => edge.collect_segment(weight, ord, reader),
                Some(docs) => super::chunks::collect_docs(&edge, weight, ord, reader, docs),
            }
            .map_err(query_failed)?;
            Partial::of_fruit(fruit, &edge, self.dicts)
                .map_err(tantivy_err)?
                .apply(self.collector, self.dicts, merged, false);
            subtracted = true;
        }
        Ok(subtracted)
    }
}

/// How one segment is counted.
enum Plan {
    /// No document of it is in the window.
    Skip,
    /// Its cached partial.
    Whole,
    /// Its cached partial minus its matches before `lo` / after `hi`.
    Edges { below: bool, above: bool },
    /// Chunk by chunk (`chunks`): a large segment the window cuts.
    Chunks,
    /// Its matches in the window, read directly.
    Direct,
}

impl TextIndex {
    /// Counts of the matches of `filter` asked for by `collector`, segment by
    /// segment (see the module documentation); `last_24h` is not counted here.
    pub(super) fn stats_by_segment(
        &self,
        searcher: &Searcher,
        filter: &Filter,
        collector: &StatsCollector,
    ) -> Result<MergedStats, TextError> {
        let dicts = self.shared.values.dicts(&collector.columns);
        let mut merged = MergedStats::new(collector, &dicts);
        let Some(weight) = self.weight_on(filter, searcher)? else {
            return Ok(merged);
        };
        let cache = &self.shared.partials;
        cache.keep_only(
            searcher
                .segment_readers()
                .iter()
                .map(SegmentVersion::of)
                .collect(),
        );
        let (lo, hi) = (collector.time_lo, collector.time_hi);
        // Stele's own records' term when the question leaves them out (the
        // time maps of its window leave them out too).
        let own = self.own_term(filter);
        let readers = searcher.segment_readers();
        let mut plans = Vec::with_capacity(readers.len());
        for reader in readers {
            let chunkable = super::chunks::chunkable(reader);
            plans.push(
                plan(reader, lo, hi, collector.first, own.as_ref(), chunkable)
                    .map_err(tantivy_err)?,
            );
        }
        let partials = plans
            .iter()
            .any(|p| !matches!(p, Plan::Skip | Plan::Direct));
        let edges = plans
            .iter()
            .any(|p| matches!(p, Plan::Edges { .. } | Plan::Chunks));
        // The question without its window, before it and after it.
        let unbounded = Filter {
            since: None,
            until: None,
            ..filter.clone()
        };
        let side = |since, until| {
            let f = Filter {
                since,
                until,
                ..unbounded.clone()
            };
            self.weight_on(&f, searcher)
        };
        let all = match partials {
            true => self.weight_on(&unbounded, searcher)?,
            false => None,
        };
        let (below, above) = match edges {
            true => (
                side(None, Some(lo))?,
                side(Some(hi.saturating_add(1)), None)?,
            ),
            false => (None, None),
        };
        let mut fingerprint = Vec::new();
        unbounded.fingerprint_into(&mut fingerprint);
        let question = all.as_deref().map(|all| Question {
            cache,
            collector,
            dicts: &dicts,
            fingerprint: fingerprint.into(),
            all,
            below: below.as_deref(),
            above: above.as_deref(),
        });
        let mut subtracted = false;
        for ((ord, reader), plan) in readers.iter().enumerate().zip(plans) {
            let ord = ord as SegmentOrdinal;
            let question = match (plan, &question) {
                (Plan::Skip, _) => continue,
                (Plan::Direct, _) => {
                    let fruit = collector
                        .collect_segment(weight.as_ref(), ord, reader)
                        .map_err(query_failed)?;
                    merged.add_fruit(fruit, collector).map_err(tantivy_err)?;
                    continue;
                }
                // Nothing matches the question without its window.
                (_, None) => continue,
                (plan, Some(q)) => (plan, q),
            };
            match question {
                (Plan::Chunks, q) => {
                    let chunked = Chunked {
                        question: q,
                        window: weight.as_ref(),
                        own: own.as_ref(),
                    };
                    subtracted |= chunked.count(ord, reader, &mut merged)?;
                }
                (Plan::Edges { below, above }, q) => {
                    q.apply(&mut merged, ord, reader, WHOLE, None, true)?;
                    subtracted |=
                        q.subtract_edges(&mut merged, ord, reader, None, (below, above))?;
                }
                (_, q) => q.apply(&mut merged, ord, reader, WHOLE, None, true)?,
            }
        }
        if subtracted {
            merged.histogram.retain(|_, n| *n > 0);
        }
        Ok(merged)
    }
}

#[cfg(test)]
impl TextIndex {
    /// [`TextIndex::stats_of`] in one pass over every match, without the
    /// cache of partials: the reference the cache is tested against.
    pub(crate) fn stats_of_uncached(
        &self,
        filter: &Filter,
        request: &StatsRequest,
        first: u64,
    ) -> Result<StatsAnswer, TextError> {
        let sources: Vec<GroupSource> = request
            .groups
            .iter()
            .map(|name| group_source(name).expect("a group field"))
            .collect();
        let searcher = self.shared.reader.searcher();
        let collector = self.stats_collector(filter, request, &sources, first);
        let Some(query) = self.build_query(filter, &searcher)? else {
            let merged = MergedStats::new(&collector, &Dicts::fresh(&collector.columns));
            return Ok(super::stats::answer(request, &sources, merged));
        };
        let merged = searcher.search(&query, &collector).map_err(query_failed)?;
        Ok(super::stats::answer(request, &sources, merged))
    }
}

/// How `reader` is counted for the window `lo..=hi` and the oldest kept seq `first`;
/// `own`: the term of Stele's records when the question leaves them out.
/// `chunkable`: whether the segment is large enough to be counted by chunks.
fn plan(
    reader: &SegmentReader,
    lo: i64,
    hi: i64,
    first: u64,
    own: Option<&Term>,
    chunkable: bool,
) -> tantivy::Result<Plan> {
    if reader.num_docs() == 0 {
        return Ok(Plan::Skip);
    }
    let time = columns::times(reader)?;
    let (min, max) = (time.min_value(), time.max_value());
    if max < lo || min > hi {
        return Ok(Plan::Skip);
    }
    // Live documents retention dropped are still here: count what `first` keeps.
    let end = end_below(reader, first)?;
    if end < reader.max_doc() && !deleted_from(reader, end) {
        return Ok(Plan::Direct);
    }
    let (mut below, mut above) = (min < lo, max > hi);
    if (below || above) && own.is_some() {
        // Stele's own records (stamped when made, long after the events
        // they are about) are left out: the range of the others decides.
        match TimeMap::of(reader, &time, own)?.span(0..u32::MAX) {
            None => return Ok(Plan::Skip),
            Some((min, max)) if max < lo || min > hi => return Ok(Plan::Skip),
            Some((min, max)) => (below, above) = (min < lo, max > hi),
        }
    }
    if !below && !above {
        return Ok(Plan::Whole);
    }
    if chunkable {
        return Ok(Plan::Chunks);
    }
    let span = (i128::from(max) - i128::from(min)).max(1) as f64;
    let inside = (i128::from(max.min(hi)) - i128::from(min.max(lo))) as f64 / span;
    Ok(
        if inside >= 0.5 && reader.num_docs() >= COMPLEMENT_DOCS_MIN {
            Plan::Edges { below, above }
        } else {
            Plan::Direct
        },
    )
}

/// Whether every document of `reader` from `doc` on is deleted (a retention
/// delete applied), so that `first` leaves out nothing more.
fn deleted_from(reader: &SegmentReader, doc: DocId) -> bool {
    let n = reader.max_doc() - doc;
    match reader.alive_bitset() {
        Some(alive) if reader.num_deleted_docs() >= n => {
            (doc..reader.max_doc()).all(|d| !alive.is_alive(d))
        }
        _ => false,
    }
}
