//! Statistics segment by segment, with a cache of each sealed segment's partial
//! aggregates: what [`TextIndex::stats_of`] runs instead of one pass over every
//! match.
//!
//! tantivy segments are immutable: a segment id and its delete set (deletes only
//! grow, so their count names the set) always hold the same documents. The counts
//! of a segment's matches under a filter *without its time window* are therefore
//! a fixed value, a [`Partial`]: the total, the counts per packed `codes` value,
//! per risk level, per value of each requested string column and per histogram
//! bucket of each requested width. For each segment of the searcher a question
//!
//! - skips it when its event-time range (the `time` column's min and max) misses
//!   the window;
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
//!    to zero after a subtraction are removed before distinct values are counted;
//!    letter-case variants are folded only after every segment is merged.
//! 2. Bounded: the cache holds at most [`PARTIALS_BYTES_MAX`] (estimated bytes),
//!    least recently used entries evicted first; entries of segments (or delete
//!    sets) no longer in the searcher are dropped when a question sees the
//!    segment set change. A retention delete changes a segment's delete count,
//!    hence its key.
//! 3. Nothing is cached that a question did not ask for: a partial holds the parts
//!    requested of it, and a later question asking more computes only the missing
//!    parts of that segment.

use super::stats::{
    end_below, fold_variants, merge_column, merge_histogram, Counts, MergedStats,
    SegmentStatsFruit, StatsCollector, CODES,
};
use super::timemap::TimeMap;
use super::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Most estimated bytes the partials take.
pub const PARTIALS_BYTES_MAX: usize = 64 << 20;

/// A segment below this many documents that the window cuts is read directly
/// (its edge is not worth a cached partial).
#[cfg(not(test))]
const COMPLEMENT_DOCS_MIN: u32 = 4096;
/// Small in tests, whose segments are.
#[cfg(test)]
const COMPLEMENT_DOCS_MIN: u32 = 16;

/// One version of one segment: its id and its delete set (by count and opstamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct SegmentVersion {
    id: tantivy::index::SegmentId,
    deleted: u32,
    opstamp: Option<u64>,
}

impl SegmentVersion {
    pub(super) fn of(reader: &SegmentReader) -> SegmentVersion {
        SegmentVersion {
            id: reader.segment_id(),
            deleted: reader.num_deleted_docs(),
            opstamp: reader.delete_opstamp(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) segment: SegmentVersion,
    /// The chunk of the segment's docs (`chunks`), [`WHOLE`] for all of them.
    pub(super) chunk: u32,
    /// The filter's fingerprint, `since` and `until` cleared.
    pub(super) filter: Arc<[u8]>,
}

/// [`Key::chunk`] of a whole segment's partial.
pub(super) const WHOLE: u32 = u32::MAX;

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
    /// Per string column: count per stored value (not folded).
    columns: Vec<(&'static str, Arc<Counts>)>,
    /// Per bucket width: `(bucket start, count)`.
    histograms: Vec<(i64, Buckets)>,
}

impl Partial {
    fn column(&self, name: &str) -> Option<&Arc<Counts>> {
        self.columns
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m)
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
    fn missing(&self, want: &StatsCollector, known: bool) -> Option<StatsCollector> {
        let columns: Vec<&'static str> = want
            .columns
            .iter()
            .copied()
            .filter(|c| self.column(c).is_none())
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

    /// The counts of `fruit`, collected by `by`, with their strings resolved.
    pub(super) fn of_fruit(
        fruit: SegmentStatsFruit,
        by: &StatsCollector,
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
            let mut map = Counts::default();
            if let Some(column) = column {
                merge_column(&mut map, column)?;
            }
            partial.columns.push((*name, Arc::new(map)));
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

    /// This partial with the parts of `more` (of the same documents) added.
    fn with(&self, more: Partial) -> Partial {
        let mut out = self.clone();
        out.total = more.total;
        out.codes = out.codes.or(more.codes);
        out.risk = out.risk.or(more.risk);
        out.columns.extend(more.columns);
        out.histograms.extend(more.histograms);
        out
    }

    /// Estimated bytes in memory.
    fn bytes(&self) -> usize {
        let map = |m: &Counts| m.keys().map(|k| k.len() + 48).sum::<usize>() + 64;
        160 + self.codes.as_ref().map_or(0, |c| c.len() * 16)
            + self.columns.iter().map(|(_, m)| map(m) + 24).sum::<usize>()
            + self
                .histograms
                .iter()
                .map(|(_, h)| h.len() * 16 + 40)
                .sum::<usize>()
    }

    /// Adds (`sign` true) or subtracts this partial's parts that `to` asks for
    /// into `merged`. A subtraction follows the addition of a superset.
    pub(super) fn apply(&self, to: &StatsCollector, merged: &mut MergedStats, add: bool) {
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
            for (value, n) in self.column(name).into_iter().flat_map(|m| m.iter()) {
                match into.get_mut(value.as_str()) {
                    Some(count) => op(count, *n),
                    None if add => {
                        into.insert(value.clone(), *n);
                    }
                    None => {}
                }
            }
        }
        if let Some(h) = to.bucket.and_then(|w| self.histogram(w)) {
            for (start, n) in h.iter() {
                op(merged.histogram.entry(*start).or_insert(0), *n);
            }
        }
    }
}

/// What the cache did, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialsStats {
    /// Segments answered from a cached partial holding every part asked for.
    pub hits: u64,
    /// Segments whose partial (or some of its parts) had to be computed.
    pub misses: u64,
    /// Entries dropped: least recently used past the bound, or of segments gone.
    pub evictions: u64,
    /// Entries held.
    pub entries: u64,
    /// Estimated bytes held.
    pub bytes: u64,
}

struct Slot {
    partial: Arc<Partial>,
    bytes: usize,
    tick: u64,
}

#[derive(Default)]
struct Lru {
    map: HashMap<Key, Slot>,
    /// tick → key, oldest first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
    /// The segment versions of the last searcher seen.
    live: HashSet<SegmentVersion>,
}

impl Lru {
    fn remove(&mut self, key: &Key) -> bool {
        match self.map.remove(key) {
            Some(slot) => {
                self.order.remove(&slot.tick);
                self.bytes -= slot.bytes;
                true
            }
            None => false,
        }
    }
}

/// The bounded cache of partials (see the module documentation).
pub(super) struct PartialCache {
    lru: Mutex<Lru>,
    bytes_max: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl PartialCache {
    pub(super) fn new(bytes_max: usize) -> PartialCache {
        PartialCache {
            lru: Mutex::new(Lru::default()),
            bytes_max,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn stats(&self) -> PartialsStats {
        let (entries, bytes) = {
            let lru = self.lock();
            (lru.map.len() as u64, lru.bytes as u64)
        };
        PartialsStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            entries,
            bytes,
        }
    }

    /// Drops the entries of segment versions not in `live` (when the set changed).
    fn keep_only(&self, live: HashSet<SegmentVersion>) {
        let mut lru = self.lock();
        if lru.live == live {
            return;
        }
        let gone: Vec<Key> = lru
            .map
            .keys()
            .filter(|k| !live.contains(&k.segment))
            .cloned()
            .collect();
        for key in &gone {
            lru.remove(key);
        }
        self.evictions.fetch_add(gone.len() as u64, Relaxed);
        lru.live = live;
    }

    fn get(&self, key: &Key) -> Option<Arc<Partial>> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let slot = lru.map.get_mut(key)?;
        let old = std::mem::replace(&mut slot.tick, tick);
        let partial = Arc::clone(&slot.partial);
        lru.order.remove(&old);
        lru.order.insert(tick, key.clone());
        Some(partial)
    }

    /// The partial of `key` holding every part `collector` asks for: from
    /// the cache, or computing (and storing) the parts it lacks over `docs`
    /// of `reader` (`None`: all of them) with `all`, the question's weight
    /// without its window.
    pub(super) fn partial_of(
        &self,
        key: Key,
        collector: &StatsCollector,
        all: &dyn Weight,
        ord: SegmentOrdinal,
        reader: &SegmentReader,
        docs: Option<std::ops::Range<DocId>>,
    ) -> Result<Arc<Partial>, TextError> {
        let cached = self.get(&key);
        let more = match cached.as_deref() {
            None => Partial::default().missing(collector, false),
            Some(p) => p.missing(collector, true),
        };
        let Some(more) = more else {
            self.hits.fetch_add(1, Relaxed);
            return Ok(cached.unwrap_or_default());
        };
        self.misses.fetch_add(1, Relaxed);
        let fruit = match docs {
            None => more.collect_segment(all, ord, reader),
            Some(docs) => super::chunks::collect_docs(&more, all, ord, reader, docs),
        }
        .map_err(query_failed)?;
        let fresh = Partial::of_fruit(fruit, &more).map_err(tantivy_err)?;
        let partial = Arc::new(match cached {
            Some(old) => old.with(fresh),
            None => fresh,
        });
        self.put(key, Arc::clone(&partial));
        Ok(partial)
    }

    fn put(&self, key: Key, partial: Arc<Partial>) {
        let bytes = partial.bytes();
        if bytes > self.bytes_max {
            return;
        }
        let mut lru = self.lock();
        lru.remove(&key);
        while lru.bytes + bytes > self.bytes_max {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(slot) = lru.map.remove(&oldest) {
                lru.bytes -= slot.bytes;
                self.evictions.fetch_add(1, Relaxed);
            }
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.order.insert(tick, key.clone());
        lru.bytes += bytes;
        lru.map.insert(
            key,
            Slot {
                partial,
                bytes,
                tick,
            },
        );
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
        let mut merged = MergedStats {
            columns: vec![Counts::default(); collector.columns.len()],
            code_counts: vec![0; if collector.codes { CODES } else { 0 }],
            ..MergedStats::default()
        };
        let Some(weight) = self.weight_on(filter, searcher)? else {
            return Ok(merged);
        };
        let cache = &self.shared.partials;
        let unbounded = Filter {
            since: None,
            until: None,
            ..filter.clone()
        };
        let mut fingerprint = Vec::new();
        unbounded.fingerprint_into(&mut fingerprint);
        let fingerprint: Arc<[u8]> = fingerprint.into();
        let mut unbounded_weight: Option<Box<dyn Weight>> = None;
        // The question before and after its window (chunks' edges), made once.
        let mut side_weights: Option<[Option<Box<dyn Weight>>; 2]> = None;
        let (lo, hi) = (collector.time_lo, collector.time_hi);
        cache.keep_only(
            searcher
                .segment_readers()
                .iter()
                .map(SegmentVersion::of)
                .collect(),
        );
        let mut subtracted = false;
        // The term of Stele's own records when the question leaves them out
        // (the time maps of its window leave them out too).
        let own = (filter.own_records() == crate::query::OwnRecords::Exclude).then(|| {
            Term::from_field_text(self.shared.fields.ingested_by, event::INGESTED_BY_STELE)
        });
        for (ord, reader) in searcher.segment_readers().iter().enumerate() {
            let ord = ord as SegmentOrdinal;
            let chunkable = || super::chunks::chunkable(reader, collector);
            let plan = plan(reader, lo, hi, collector.first, own.as_ref(), chunkable)
                .map_err(tantivy_err)?;
            if matches!(plan, Plan::Skip) {
                continue;
            }
            if matches!(plan, Plan::Direct) {
                let fruit = collector
                    .collect_segment(weight.as_ref(), ord, reader)
                    .map_err(query_failed)?;
                merged.add_fruit(fruit, collector).map_err(tantivy_err)?;
                continue;
            }
            if unbounded_weight.is_none() {
                unbounded_weight = self.weight_on(&unbounded, searcher)?;
            }
            let Some(all) = unbounded_weight.as_deref() else {
                continue;
            };
            let key = Key {
                segment: SegmentVersion::of(reader),
                chunk: WHOLE,
                filter: Arc::clone(&fingerprint),
            };
            if matches!(plan, Plan::Chunks) {
                if side_weights.is_none() {
                    let side = |since, until| {
                        let f = Filter {
                            since,
                            until,
                            ..unbounded.clone()
                        };
                        self.weight_on(&f, searcher)
                    };
                    side_weights = Some([
                        side(None, Some(lo))?,
                        side(Some(hi.saturating_add(1)), None)?,
                    ]);
                }
                let [below, above] = side_weights.as_ref().expect("made above");
                let chunked = super::chunks::Chunked {
                    cache,
                    key,
                    collector,
                    window: weight.as_ref(),
                    all,
                    below: below.as_deref(),
                    above: above.as_deref(),
                    own: own.as_ref(),
                };
                subtracted |= chunked.count(ord, reader, &mut merged)?;
                continue;
            }
            cache
                .partial_of(key, collector, all, ord, reader, None)?
                .apply(collector, &mut merged, true);
            if let Plan::Edges { below, above } = plan {
                let sides = [
                    (below, None, Some(lo)),
                    (above, Some(hi.saturating_add(1)), None),
                ];
                for (_, since, until) in sides.into_iter().filter(|s| s.0) {
                    let side = Filter {
                        since,
                        until,
                        ..unbounded.clone()
                    };
                    let Some(w) = self.weight_on(&side, searcher)? else {
                        continue;
                    };
                    let edge = StatsCollector {
                        time_lo: i64::MIN,
                        time_hi: i64::MAX,
                        first: 0,
                        ..collector.clone()
                    };
                    let fruit = edge
                        .collect_segment(w.as_ref(), ord, reader)
                        .map_err(query_failed)?;
                    Partial::of_fruit(fruit, &edge).map_err(tantivy_err)?.apply(
                        collector,
                        &mut merged,
                        false,
                    );
                    subtracted = true;
                }
            }
        }
        if subtracted {
            for map in &mut merged.columns {
                map.retain(|_, n| *n > 0);
            }
            merged.histogram.retain(|_, n| *n > 0);
        }
        merged.fold(collector);
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
        let Some(query) = self.build_query(filter, &searcher)? else {
            return Ok(super::stats::answer(
                request,
                &sources,
                MergedStats::default(),
            ));
        };
        let collector = self.stats_collector(filter, request, &sources, first);
        let merged = searcher.search(&query, &collector).map_err(query_failed)?;
        Ok(super::stats::answer(request, &sources, merged))
    }
}

/// How `reader` is counted for the window `lo..=hi` and the oldest kept seq `first`;
/// `own`: the term of Stele's records when the question leaves them out.
/// `chunkable`: whether the question lets the segment be counted by chunks.
fn plan(
    reader: &SegmentReader,
    lo: i64,
    hi: i64,
    first: u64,
    own: Option<&Term>,
    chunkable: impl FnOnce() -> tantivy::Result<bool>,
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
    if chunkable()? {
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

impl MergedStats {
    /// Adds one segment's directly collected counts.
    pub(super) fn add_fruit(
        &mut self,
        fruit: SegmentStatsFruit,
        by: &StatsCollector,
    ) -> tantivy::Result<()> {
        self.total += fruit.total;
        self.last_24h += fruit.last_24h;
        for (into, n) in self.risk_counts.iter_mut().zip(fruit.risk_counts) {
            *into += n;
        }
        for (into, n) in self.code_counts.iter_mut().zip(&fruit.code_counts) {
            *into += n;
        }
        if let Some(histogram) = fruit.histogram {
            merge_histogram(&mut self.histogram, histogram, by.bucket.unwrap_or(1));
        }
        for (column, into) in fruit.columns.into_iter().zip(self.columns.iter_mut()) {
            if let Some(column) = column {
                merge_column(into, column)?;
            }
        }
        Ok(())
    }

    /// Folds the letter-case variants of the columns that are not exact.
    pub(super) fn fold(&mut self, by: &StatsCollector) {
        for (name, map) in by.columns.iter().zip(self.columns.iter_mut()) {
            if !super::stats::exact_column(name) {
                *map = fold_variants(std::mem::take(map));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key {
            segment: SegmentVersion {
                id: tantivy::index::SegmentId::generate_random(),
                deleted: 0,
                opstamp: None,
            },
            chunk: WHOLE,
            filter: Arc::from(vec![n]),
        }
    }

    fn partial(values: usize) -> Arc<Partial> {
        let map = (0..values).map(|i| (format!("v{i}"), 1)).collect();
        Arc::new(Partial {
            total: values as u64,
            columns: vec![("_action", Arc::new(map))],
            ..Partial::default()
        })
    }

    #[test]
    fn the_least_recently_used_entries_go_first_within_the_bound() {
        let one = partial(10).bytes();
        let cache = PartialCache::new(3 * one);
        let keys: Vec<Key> = (0..4).map(key).collect();
        for k in &keys[..3] {
            cache.put(k.clone(), partial(10));
        }
        assert_eq!(cache.stats().entries, 3);
        // The oldest is used again: the second goes when the fourth comes.
        assert!(cache.get(&keys[0]).is_some());
        cache.put(keys[3].clone(), partial(10));
        let s = cache.stats();
        assert_eq!((s.entries, s.evictions), (3, 1));
        assert!(s.bytes as usize <= 3 * one);
        assert!(cache.get(&keys[1]).is_none());
        assert!(cache.get(&keys[0]).is_some() && cache.get(&keys[3]).is_some());
        // An entry larger than the bound is not kept.
        cache.put(key(9), partial(1000));
        assert_eq!(cache.stats().entries, 3);
        // Replacing an entry counts its bytes once.
        cache.put(keys[0].clone(), partial(10));
        assert_eq!(cache.stats().bytes as usize, 3 * one);
        // Segments gone are dropped.
        cache.keep_only([keys[3].segment].into_iter().collect());
        assert_eq!(cache.stats().entries, 1);
    }
}
