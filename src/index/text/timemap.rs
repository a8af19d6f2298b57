//! Where a segment's event times lie, block by block: what lets a time
//! window read only the blocks it can match ([`TimeRangeQuery`]) and a
//! time-ordered page stop early (`timed`).
//!
//! A segment's docs are in descending seq order, and events mostly arrive
//! close to when they happened, so each block of [`BLOCK_DOCS`] docs spans a
//! short stretch of event time. A few docs do not: Stele's own findings are
//! stamped when they are made, clients stamp the future or backfill the past.
//! One such doc would stretch its block's range over everything between, so
//! every block's range is taken over its *regular* docs only, and the others,
//! its *exceptions*, are kept in a list by doc with their times:
//!
//! ```text
//!   block b:  regular docs ── lo[b] ..= hi[b]        (Tukey's fences: a doc more
//!             exceptions  ── (doc, time), in doc order  than 3 IQR + 1 s outside
//!                                                       the block's quartiles)
//! ```
//!
//! A block keeps at most 1/16 of its docs as exceptions; one with more is
//! genuinely mixed and keeps them all as regular (a wide range: slower, never
//! wrong). A map is computed once per segment (segments are immutable; deleted
//! docs are included, an upper bound is all any reader needs) and cached.
//!
//! With `own` (the term of Stele's own records, given when the query leaves
//! them out), those docs are in neither the ranges nor the exceptions: the
//! query can never match them, and in a log of events that arrive long after
//! they happened the findings would sit in every block.
//!
//! Invariants:
//! 1. Every doc of block `b` that is neither an exception nor (with `own`) one
//!    of Stele's records has a time in `lo[b] ..= hi[b]`.
//! 2. `suffix_hi[b]` is the greatest `hi` of blocks `b..`, so no regular doc
//!    from block `b` on is newer.
//! 3. [`TimeRangeQuery`] matches exactly the docs whose time lies in its window,
//!    except (with `own`) Stele's records, which it may leave out.

use super::*;
use tantivy::query::{ConstScorer, EmptyScorer, Explanation, Scorer};

/// Docs per block.
#[cfg(not(test))]
pub(super) const BLOCK_DOCS: u32 = 1024;
/// Small in tests, whose segments are.
#[cfg(test)]
pub(super) const BLOCK_DOCS: u32 = 32;

/// Segments whose maps are cached; the cache is emptied when it holds more
/// (merged-away segments go with it).
const CACHE_SEGMENTS_MAX: usize = 4096;

/// Beyond the interquartile fences, the slack before a doc is an exception
/// (µs): blocks whose docs share one instant keep near neighbours regular.
const FENCE_SLACK_US: i64 = 1_000_000;

/// Blocks with fewer docs than this keep every doc regular.
const FENCE_DOCS_MIN: usize = 16;

/// The block ranges and exceptions of one segment.
#[derive(Debug)]
pub(super) struct TimeMap {
    /// Per block, the least and greatest time of its regular docs
    /// (`i64::MAX`, `i64::MIN` when it has none).
    lo: Vec<i64>,
    hi: Vec<i64>,
    /// Per block, the greatest `hi` from it to the last block.
    suffix_hi: Vec<i64>,
    /// Per block, the least and greatest time of all its docs, exceptions
    /// included (`i64::MAX`, `i64::MIN` when it has none).
    all_lo: Vec<i64>,
    all_hi: Vec<i64>,
    /// The exceptions, in doc order: block `b`'s are `exceptions[starts[b]..starts[b + 1]]`.
    exceptions: Vec<(DocId, i64)>,
    starts: Vec<u32>,
    /// The least and greatest time of every regular doc.
    pub(super) min: i64,
    pub(super) max: i64,
}

impl TimeMap {
    /// The map of `reader`'s `time` column `times`, leaving out the docs of
    /// `own` (cached).
    pub(super) fn of(
        reader: &SegmentReader,
        times: &Column<i64>,
        own: Option<&Term>,
    ) -> tantivy::Result<Arc<TimeMap>> {
        type Cache = Mutex<HashMap<(tantivy::index::SegmentId, bool), Arc<TimeMap>>>;
        static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let id = (reader.segment_id(), own.is_some());
        if let Some(m) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(m.clone());
        }
        let map = Arc::new(TimeMap::compute(reader, times, own)?);
        let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= CACHE_SEGMENTS_MAX {
            c.clear();
        }
        c.insert(id, map.clone());
        Ok(map)
    }

    fn compute(
        reader: &SegmentReader,
        times: &Column<i64>,
        own: Option<&Term>,
    ) -> tantivy::Result<TimeMap> {
        let mut left_out = Vec::new();
        if let Some(term) = own {
            let postings = reader
                .inverted_index(term.field())?
                .read_postings(term, IndexRecordOption::Basic)?;
            if let Some(mut p) = postings {
                while p.doc() != TERMINATED {
                    left_out.push(p.doc());
                    p.advance();
                }
            }
        }
        let max_doc = reader.max_doc();
        let blocks = max_doc.div_ceil(BLOCK_DOCS) as usize;
        let mut map = TimeMap {
            lo: Vec::with_capacity(blocks),
            hi: Vec::with_capacity(blocks),
            suffix_hi: vec![i64::MIN; blocks],
            all_lo: Vec::with_capacity(blocks),
            all_hi: Vec::with_capacity(blocks),
            exceptions: Vec::new(),
            starts: Vec::with_capacity(blocks + 1),
            min: i64::MAX,
            max: i64::MIN,
        };
        let mut left_out = left_out.into_iter().peekable();
        let mut docs: Vec<(DocId, i64)> = Vec::with_capacity(BLOCK_DOCS as usize);
        let mut sorted: Vec<i64> = Vec::with_capacity(BLOCK_DOCS as usize);
        for b in 0..blocks as u32 {
            docs.clear();
            for doc in b * BLOCK_DOCS..((b + 1) * BLOCK_DOCS).min(max_doc) {
                if left_out.next_if(|&d| d == doc).is_none() {
                    docs.push((doc, times.first(doc).unwrap_or(0)));
                }
            }
            map.starts.push(map.exceptions.len() as u32);
            let (lo_fence, hi_fence) = fences(&docs, &mut sorted);
            let outside = |t: i64| t < lo_fence || t > hi_fence;
            let outliers = docs.iter().filter(|d| outside(d.1)).count();
            let keep_all = outliers > docs.len() / 16;
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for &(doc, t) in &docs {
                if !keep_all && outside(t) {
                    map.exceptions.push((doc, t));
                } else {
                    lo = lo.min(t);
                    hi = hi.max(t);
                }
            }
            map.lo.push(lo);
            map.hi.push(hi);
            let (mut all_lo, mut all_hi) = (lo, hi);
            for &(_, t) in &map.exceptions[*map.starts.last().expect("pushed") as usize..] {
                all_lo = all_lo.min(t);
                all_hi = all_hi.max(t);
            }
            map.all_lo.push(all_lo);
            map.all_hi.push(all_hi);
            map.min = map.min.min(lo);
            map.max = map.max.max(hi);
        }
        map.starts.push(map.exceptions.len() as u32);
        let mut running = i64::MIN;
        for b in (0..blocks).rev() {
            running = running.max(map.hi[b]);
            map.suffix_hi[b] = running;
        }
        Ok(map)
    }

    /// The exceptions of block `b`, in doc order.
    pub(super) fn exceptions_of(&self, b: u32) -> &[(DocId, i64)] {
        let b = b as usize;
        &self.exceptions[self.starts[b] as usize..self.starts[b + 1] as usize]
    }

    /// Every exception, in doc order.
    pub(super) fn exceptions(&self) -> &[(DocId, i64)] {
        &self.exceptions
    }

    /// The least and greatest time of the docs of `blocks` (regular docs and
    /// exceptions; past the last block, none): `None` when they have none.
    pub(super) fn span(&self, blocks: std::ops::Range<u32>) -> Option<(i64, i64)> {
        let end = (blocks.end as usize).min(self.lo.len());
        let start = (blocks.start as usize).min(end);
        let min = self.all_lo[start..end].iter().copied().min()?;
        let max = self.all_hi[start..end].iter().copied().max()?;
        (min <= max).then_some((min, max))
    }

    /// How many of `blocks` hold docs with a time in `lo..=hi`, and how many
    /// hold docs outside it (by each block's range, exceptions included; a
    /// block may count in both).
    pub(super) fn blocks_against(
        &self,
        blocks: std::ops::Range<u32>,
        lo: i64,
        hi: i64,
    ) -> (usize, usize) {
        let end = (blocks.end as usize).min(self.lo.len());
        let start = (blocks.start as usize).min(end);
        let ranges = self.all_lo[start..end].iter().zip(&self.all_hi[start..end]);
        let (mut inside, mut outside) = (0, 0);
        for (&min, &max) in ranges.filter(|(min, max)| min <= max) {
            inside += usize::from(min <= hi && max >= lo);
            outside += usize::from(min < lo || max > hi);
        }
        (inside, outside)
    }

    /// The greatest time of a regular doc in block `b` or later.
    pub(super) fn newest_from(&self, b: u32) -> i64 {
        self.suffix_hi.get(b as usize).copied().unwrap_or(i64::MIN)
    }

    /// Whether a regular doc of block `b` may have a time in `lo..=hi`.
    fn overlaps(&self, b: u32, lo: i64, hi: i64) -> bool {
        let b = b as usize;
        self.lo[b] <= hi && self.hi[b] >= lo
    }
}

/// Tukey's fences of the block's times (`i64::MIN`, `i64::MAX` for a block
/// too small to judge).
fn fences(docs: &[(DocId, i64)], sorted: &mut Vec<i64>) -> (i64, i64) {
    if docs.len() < FENCE_DOCS_MIN {
        return (i64::MIN, i64::MAX);
    }
    sorted.clear();
    sorted.extend(docs.iter().map(|d| d.1));
    let n = sorted.len();
    let q1 = *sorted.select_nth_unstable(n / 4).1;
    let q3 = *sorted.select_nth_unstable(3 * n / 4).1;
    let slack = q3
        .saturating_sub(q1)
        .saturating_mul(3)
        .saturating_add(FENCE_SLACK_US);
    (q1.saturating_sub(slack), q3.saturating_add(slack))
}

/// The docs whose event time lies in `lo..=hi`, found block by block through
/// the segment's [`TimeMap`] (a fast-field range query reads every doc's
/// time). With `own`, Stele's records may be left out: give it only to a
/// query that excludes them.
#[derive(Debug, Clone)]
pub(super) struct TimeRangeQuery {
    pub(super) lo: i64,
    pub(super) hi: i64,
    pub(super) own: Option<Term>,
}

impl Query for TimeRangeQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for TimeRangeQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let times = columns::times(reader)?;
        if reader.max_doc() == 0 || times.max_value() < self.lo || times.min_value() > self.hi {
            return Ok(Box::new(EmptyScorer));
        }
        let map = TimeMap::of(reader, &times, self.own.as_ref())?;
        let mut docs = TimeRangeDocSet {
            map,
            times,
            lo: self.lo,
            hi: self.hi,
            max_doc: reader.max_doc(),
            doc: 0,
            hint: 0,
        };
        docs.hint = docs.estimate();
        docs.doc = docs.next_from(0);
        Ok(Box::new(ConstScorer::new(docs, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "doc {doc} is not in the time window"
            )));
        }
        Ok(Explanation::new("TimeRangeQuery", 1.0))
    }
}

/// The docs of one segment in a time window, in doc order.
struct TimeRangeDocSet {
    map: Arc<TimeMap>,
    times: Column<i64>,
    lo: i64,
    hi: i64,
    max_doc: DocId,
    doc: DocId,
    hint: u32,
}

impl TimeRangeDocSet {
    fn within(&self, t: i64) -> bool {
        self.lo <= t && t <= self.hi
    }

    /// The first doc at or after `d` in the window.
    fn next_from(&self, mut d: DocId) -> DocId {
        while d < self.max_doc {
            let b = d / BLOCK_DOCS;
            let end = ((b + 1) * BLOCK_DOCS).min(self.max_doc);
            if self.map.overlaps(b, self.lo, self.hi) {
                // Every doc of the block, exceptions included, by its time.
                while d < end {
                    if self.within(self.times.first(d).unwrap_or(0)) {
                        return d;
                    }
                    d += 1;
                }
            } else {
                let found = self
                    .map
                    .exceptions_of(b)
                    .iter()
                    .find(|&&(e, t)| e >= d && self.within(t));
                if let Some(&(e, _)) = found {
                    return e;
                }
                d = end;
            }
        }
        TERMINATED
    }

    /// An upper bound of the matches: the docs of the blocks that overlap
    /// the window and the exceptions.
    fn estimate(&self) -> u32 {
        let blocks = self.max_doc.div_ceil(BLOCK_DOCS);
        let overlapping = (0..blocks)
            .filter(|&b| self.map.overlaps(b, self.lo, self.hi))
            .count() as u32;
        (overlapping * BLOCK_DOCS + self.map.exceptions.len() as u32).min(self.max_doc)
    }
}

impl DocSet for TimeRangeDocSet {
    fn advance(&mut self) -> DocId {
        if self.doc != TERMINATED {
            self.doc = self.next_from(self.doc + 1);
        }
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc != TERMINATED && self.doc < target {
            self.doc = self.next_from(target);
        }
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.hint
    }
}
