//! Statistics of a large segment that a time window cuts, chunk by chunk: what
//! keeps a window that ends (or starts) inside one of the big merged segments
//! from reading the whole part of it on one side of the edge at every request.
//!
//! A segment of at least [`CHUNKED_DOCS_MIN`] docs is seen as chunks of
//! [`CHUNK_DOCS`] consecutive docs. Docs arrive roughly in time order, so a
//! chunk spans a short stretch of event time; its [`TimeMap`] blocks (regular
//! docs' ranges plus the exceptions' times, Stele's own records left out when
//! the question leaves them out) say whether every counted doc of the chunk
//! lies inside the window, outside it, or on both sides:
//!
//! ```text
//!   docs   0 ─────────────────────────────────────────────── max_doc
//!   chunk  │ outside │ cut │ inside │ inside │ … │ inside │ edged │ outside │
//!   count  │    –    │scan │ cached partial of the chunk …   − edge │    –    │
//!          (or: the segment's cached partial − the chunks not wholly inside + the cut ones' scans)
//! ```
//!
//! A chunk on both sides of an edge is *cut* (read with the window) when more
//! of its blocks reach outside the window than inside, else *edged*: counted
//! as if inside, minus its matches beyond the edge, which the time map lets a
//! query read from the few blocks that reach there.
//!
//! Whichever of the two sums merges fewer partials is used. A chunk's partial
//! is cached like a segment's (`partials`: keyed by the segment version, the
//! chunk and the filter without its window). Chunking applies only while the
//! string columns asked for are small (at most [`CHUNK_TERMS_MAX`] values in
//! the segment's dictionaries): a chunk's counts of a near-unique column
//! would be as large as the chunk.
//!
//! Invariants:
//! 1. Exactness: an *inside* chunk's every counted doc has its time in the
//!    window (`TimeMap` invariant 1 and its exceptions), so the chunk's
//!    unwindowed counts are its windowed counts; an *outside* chunk has none
//!    in the window; a *cut* chunk is read with the window; an *edged* one's
//!    unwindowed counts lose exactly its matches before and after the window.
//! 2. Only segments no retention cut touches are chunked (`partials::plan`):
//!    the chunks' counts ignore `first`.

use super::partials::{Key, Partial, PartialCache};
use super::stats::{MergedStats, SegmentStatsFruit, StatsCollector, BLOCK};
use super::timemap::{TimeMap, BLOCK_DOCS};
use super::*;
use std::ops::Range;

/// Time map blocks per chunk.
#[cfg(not(test))]
const CHUNK_BLOCKS: u32 = 64;
/// Small in tests, whose segments are.
#[cfg(test)]
const CHUNK_BLOCKS: u32 = 2;

/// Docs per chunk (65,536).
pub(super) const CHUNK_DOCS: u32 = CHUNK_BLOCKS * BLOCK_DOCS;

/// Segments below this many docs are not chunked (reading one costs no more
/// than reading the two chunks a window may cut).
pub(super) const CHUNKED_DOCS_MIN: u32 = 2 * CHUNK_DOCS;

/// Most values the asked string columns may have in a segment for it to be
/// chunked.
pub(super) const CHUNK_TERMS_MAX: u64 = 4096;

/// Where a chunk's counted docs lie against the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// None counted (every doc Stele's own, left out).
    Empty,
    Inside,
    Outside,
    /// On both sides, more of its blocks reaching outside than inside: read
    /// with the window.
    Cut,
    /// On both sides, fewer of its blocks reaching outside: its partial minus
    /// its matches before / after the window (`below`, `above`), read from the
    /// blocks that reach there.
    Edged {
        below: bool,
        above: bool,
    },
}

/// Whether `reader` may be chunked for `collector`: the string columns it
/// asks for hold at most [`CHUNK_TERMS_MAX`] values in the segment.
pub(super) fn chunkable(
    reader: &SegmentReader,
    collector: &StatsCollector,
) -> tantivy::Result<bool> {
    if reader.max_doc() < CHUNKED_DOCS_MIN {
        return Ok(false);
    }
    let ff = reader.fast_fields();
    let mut terms = 0u64;
    for name in &collector.columns {
        if let Some(column) = ff.str(name)? {
            terms += column.num_terms() as u64;
        }
    }
    Ok(terms <= CHUNK_TERMS_MAX)
}

/// The docs of chunk `c` of a segment of `max_doc` docs.
fn docs_of(c: u32, max_doc: DocId) -> Range<DocId> {
    c * CHUNK_DOCS..((c + 1) * CHUNK_DOCS).min(max_doc)
}

fn side(map: &TimeMap, c: u32, lo: i64, hi: i64) -> Side {
    let blocks = c * CHUNK_BLOCKS..(c + 1) * CHUNK_BLOCKS;
    match map.span(blocks.clone()) {
        None => Side::Empty,
        Some((min, max)) if min >= lo && max <= hi => Side::Inside,
        Some((min, max)) if max < lo || min > hi => Side::Outside,
        Some((min, max)) => {
            let (inside, outside) = map.blocks_against(blocks, lo, hi);
            match outside < inside {
                true => Side::Edged {
                    below: min < lo,
                    above: max > hi,
                },
                false => Side::Cut,
            }
        }
    }
}

/// The fruit of `collector` over the docs of `weight` in `docs` of `reader`
/// (live ones only).
pub(super) fn collect_docs(
    collector: &StatsCollector,
    weight: &dyn Weight,
    ord: SegmentOrdinal,
    reader: &SegmentReader,
    docs: Range<DocId>,
) -> tantivy::Result<SegmentStatsFruit> {
    let mut segment = collector.for_segment(ord, reader)?;
    let mut scorer = weight.scorer(reader, 1.0)?;
    let alive = reader.alive_bitset();
    let mut doc = scorer.doc();
    if doc < docs.start {
        doc = scorer.seek(docs.start);
    }
    let mut buf = Vec::with_capacity(BLOCK);
    while doc < docs.end {
        if alive.is_none_or(|a| a.is_alive(doc)) {
            buf.push(doc);
            if buf.len() == BLOCK {
                segment.collect_block(&buf);
                buf.clear();
            }
        }
        doc = scorer.advance();
    }
    if !buf.is_empty() {
        segment.collect_block(&buf);
    }
    Ok(segment.harvest())
}

/// What counting one segment chunk by chunk needs.
pub(super) struct Chunked<'a> {
    pub(super) cache: &'a PartialCache,
    /// The segment's key (its whole partial); chunks differ by `chunk`.
    pub(super) key: Key,
    /// The question's collector (with its window).
    pub(super) collector: &'a StatsCollector,
    /// The question's weight (with its window).
    pub(super) window: &'a dyn Weight,
    /// The same question without its window.
    pub(super) all: &'a dyn Weight,
    /// The same question before the window / after it.
    pub(super) below: Option<&'a dyn Weight>,
    pub(super) above: Option<&'a dyn Weight>,
    /// Stele's records' term, when the question leaves them out.
    pub(super) own: Option<&'a Term>,
}

impl Chunked<'_> {
    /// Adds the window's counts of `reader` to `merged`; whether anything was
    /// subtracted.
    pub(super) fn count(
        &self,
        ord: SegmentOrdinal,
        reader: &SegmentReader,
        merged: &mut MergedStats,
    ) -> Result<bool, TextError> {
        let times = columns::times(reader).map_err(tantivy_err)?;
        let map = TimeMap::of(reader, &times, self.own).map_err(tantivy_err)?;
        let (lo, hi) = (self.collector.time_lo, self.collector.time_hi);
        let max_doc = reader.max_doc();
        let sides: Vec<Side> = (0..max_doc.div_ceil(CHUNK_DOCS))
            .map(|c| side(&map, c, lo, hi))
            .collect();
        let chunks = |want: &dyn Fn(Side) -> bool| {
            (0..sides.len() as u32)
                .filter(|c| want(sides[*c as usize]))
                .collect::<Vec<u32>>()
        };
        let edged = |s: Side| matches!(s, Side::Edged { .. });
        let inside = chunks(&|s| s == Side::Inside || edged(s));
        let rest = chunks(&|s| s == Side::Outside || s == Side::Cut);
        let partial = |chunk: u32| {
            let key = Key {
                chunk,
                ..self.key.clone()
            };
            let docs = (chunk != super::partials::WHOLE).then(|| docs_of(chunk, max_doc));
            self.cache
                .partial_of(key, self.collector, self.all, ord, reader, docs)
        };
        let mut subtracted = if inside.len() <= 1 + rest.len() {
            for c in inside {
                partial(c)?.apply(self.collector, merged, true);
            }
            false
        } else {
            partial(super::partials::WHOLE)?.apply(self.collector, merged, true);
            for c in &rest {
                partial(*c)?.apply(self.collector, merged, false);
            }
            !rest.is_empty()
        };
        let edge = StatsCollector {
            time_lo: i64::MIN,
            time_hi: i64::MAX,
            first: 0,
            ..self.collector.clone()
        };
        for c in chunks(&edged) {
            let Side::Edged { below, above } = sides[c as usize] else {
                continue;
            };
            let weights = [(below, self.below), (above, self.above)];
            for weight in weights.into_iter().filter(|w| w.0).filter_map(|w| w.1) {
                let fruit = collect_docs(&edge, weight, ord, reader, docs_of(c, max_doc))
                    .map_err(query_failed)?;
                Partial::of_fruit(fruit, &edge).map_err(tantivy_err)?.apply(
                    self.collector,
                    merged,
                    false,
                );
                subtracted = true;
            }
        }
        for c in chunks(&|s| s == Side::Cut) {
            let fruit = collect_docs(
                self.collector,
                self.window,
                ord,
                reader,
                docs_of(c, max_doc),
            )
            .map_err(query_failed)?;
            merged
                .add_fruit(fruit, self.collector)
                .map_err(tantivy_err)?;
        }
        Ok(subtracted)
    }
}
