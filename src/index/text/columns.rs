//! The `seq` and `time` columns of each segment, opened once.
//!
//! Opening a fast-field column reads its codec's header; for a large segment
//! whose values are stored blockwise-linear that is a vector of one entry per
//! 512 docs (tens of thousands at 10M events), which every question touching
//! the segment used to rebuild. Segments are immutable, so a column opened
//! once serves every later reader of the same segment (deletes do not change
//! values). Cached by segment id; the cache is emptied when it holds more than
//! [`CACHE_SEGMENTS_MAX`] segments (merged-away ones go with it).

use super::*;

const CACHE_SEGMENTS_MAX: usize = 4096;

type Cache = Mutex<HashMap<tantivy::index::SegmentId, (Column<u64>, Column<i64>)>>;

fn opened(reader: &SegmentReader) -> tantivy::Result<(Column<u64>, Column<i64>)> {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let id = reader.segment_id();
    if let Some(c) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
        return Ok(c.clone());
    }
    let ff = reader.fast_fields();
    let columns = (ff.u64(F_SEQ)?, ff.i64(F_TIME)?);
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
    if c.len() >= CACHE_SEGMENTS_MAX {
        c.clear();
    }
    c.insert(id, columns.clone());
    Ok(columns)
}

/// The segment's `seq` column.
pub(super) fn seqs(reader: &SegmentReader) -> tantivy::Result<Column<u64>> {
    Ok(opened(reader)?.0)
}

/// The segment's `time` column.
pub(super) fn times(reader: &SegmentReader) -> tantivy::Result<Column<i64>> {
    Ok(opened(reader)?.1)
}
