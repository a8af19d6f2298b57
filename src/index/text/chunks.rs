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
//! chunk and the filter without its window). A chunk's counts of a string
//! column are numbered (`values`): 8 bytes a value, so at most 512 KiB for a
//! near-unique column, which the cache's bound holds like any other partial.
//!
//! Invariants:
//! 1. Exactness: an *inside* chunk's every counted doc has its time in the
//!    window (`TimeMap` invariant 1 and its exceptions), so the chunk's
//!    unwindowed counts are its windowed counts; an *outside* chunk has none
//!    in the window; a *cut* chunk is read with the window; an *edged* one's
//!    unwindowed counts lose exactly its matches before and after the window.
//! 2. Only segments no retention cut touches are chunked (`partials::plan`):
//!    the chunks' counts ignore `first`.

use super::partial_cache::WHOLE;
use super::partials::Question;
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

/// Whether `reader` is large enough to be counted by chunks.
pub(super) fn chunkable(reader: &SegmentReader) -> bool {
    reader.max_doc() >= CHUNKED_DOCS_MIN
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
    /// The question, its partials keyed by chunk.
    pub(super) question: &'a Question<'a>,
    /// The question's weight (with its window).
    pub(super) window: &'a dyn Weight,
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
        let q = self.question;
        let times = columns::times(reader).map_err(tantivy_err)?;
        let map = TimeMap::of(reader, &times, self.own).map_err(tantivy_err)?;
        let (lo, hi) = (q.collector.time_lo, q.collector.time_hi);
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
        let mut apply = |chunk: u32, add: bool| {
            let docs = (chunk != WHOLE).then(|| docs_of(chunk, max_doc));
            q.apply(merged, ord, reader, chunk, docs, add)
        };
        let mut subtracted = false;
        if inside.len() <= 1 + rest.len() {
            for c in inside {
                apply(c, true)?;
            }
        } else {
            apply(WHOLE, true)?;
            for c in &rest {
                apply(*c, false)?;
            }
            subtracted = !rest.is_empty();
        }
        for c in chunks(&edged) {
            if let Side::Edged { below, above } = sides[c as usize] {
                let docs = Some(docs_of(c, max_doc));
                subtracted |= q.subtract_edges(merged, ord, reader, docs, (below, above))?;
            }
        }
        for c in chunks(&|s| s == Side::Cut) {
            let fruit = collect_docs(q.collector, self.window, ord, reader, docs_of(c, max_doc))
                .map_err(query_failed)?;
            merged.add_fruit(fruit, q.collector).map_err(tantivy_err)?;
        }
        Ok(subtracted)
    }
}
