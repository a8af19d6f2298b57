//! The statistics collector: counts by value of the requested fields ("groups"),
//! the histogram, the last 24 hours and the two rates of the matching documents,
//! read from fast columns in one pass.
//!
//! Only what a question asks for is read: a group reads its one column (a string
//! column, or the packed `codes` column for the enums), the histogram and the last
//! 24 hours read `time`, the rates read `codes`. A question asking for nothing but the
//! total reads no column at all. Facets (`GET /v1/fields/{name}/values`) are
//! statistics with one group. [`TextIndex::stats_of`] runs the collector segment
//! by segment through `partials` (sealed segments' counts cached and merged);
//! `last_24h`, whose window moves with `now`, is a count.
//!
//! Invariants:
//! 1. Counts are exact: every live matching document is counted once per group, in
//!    its value or in `missing` (`total = Σ values + missing` before truncation).
//! 2. A group's values are ranked by count descending, then value ascending, and
//!    cut at `top`; `distinct` counts every value, so a cut list says so.

use super::values::{Dicts, Ranked, Tally};
use super::*;
use crate::event::RiskLevel;

/// Counts per string value. foldhash (seeded per process) rather than SipHash: merging
/// the per-segment counts of a many-valued column is hash lookups of short strings.
pub(super) type Counts = HashMap<String, u64, foldhash::fast::RandomState>;

/// What a statistics question computes; each part is read only when asked for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsRequest {
    /// The fields to count by value, each once ([`group_fields`] lists them).
    pub groups: Vec<&'static str>,
    /// Most values kept per group (the others are still counted in `distinct`).
    pub top: usize,
    /// `Some(now)` (unix µs): count the matches with an event time at or after
    /// `now - 24 h`.
    pub last_24h: Option<i64>,
    /// `Some(width)` (µs, values below 1 taken as 1): the event-time histogram.
    pub histogram: Option<i64>,
    /// `failure_rate` and `error_severity_rate`.
    pub rates: bool,
    /// Matches per risk level (`risk`).
    pub risk: bool,
}

/// Matches per risk level of their `risk_score` (`event::RiskLevel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RiskCounts {
    /// `risk_score` 0–30.
    pub low: u64,
    /// 31–70.
    pub medium: u64,
    /// 71–100.
    pub high: u64,
    /// Without a `risk_score`.
    pub unscored: u64,
}

impl RiskCounts {
    /// The counts of `total` matches of which `per_level` (low, medium,
    /// high) have a score.
    pub fn of(per_level: [u64; 3], total: u64) -> RiskCounts {
        let [low, medium, high] = per_level;
        RiskCounts {
            low,
            medium,
            high,
            unscored: total.saturating_sub(low + medium + high),
        }
    }
}

/// The counts of one field's values among the matches.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GroupCounts {
    /// The field.
    pub field: &'static str,
    /// `(value, count)`: count descending, then value ascending, at most `top`.
    pub values: Vec<(String, u64)>,
    /// How many distinct values the matches have (more than `values.len()` when cut).
    pub distinct: u64,
    /// Matches without a value for the field.
    pub missing: u64,
    /// Whether `values` was cut at `top`.
    pub truncated: bool,
}

/// The answer to a [`StatsRequest`]: what was not asked for is `None` (or empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsAnswer {
    /// Matching documents.
    pub total: u64,
    /// Matches in the last 24 hours (when asked).
    pub last_24h: Option<u64>,
    /// `(bucket start in unix µs, count)`, ascending, non-empty buckets only.
    pub histogram: Option<Vec<(i64, u64)>>,
    /// One entry per requested group, in request order.
    pub groups: Vec<GroupCounts>,
    /// Matches with status `failure` / total (0.0 when total is 0).
    pub failure_rate: Option<f64>,
    /// Matches with severity `error` or `critical` / total (0.0 when total is 0).
    pub error_severity_rate: Option<f64>,
    /// Matches per risk level (when asked).
    pub risk: Option<RiskCounts>,
}

/// The fields statistics can group by and facets can list, in field-table order.
pub fn group_fields() -> impl Iterator<Item = &'static str> {
    event::FIELDS
        .iter()
        .filter(|spec| group_source(spec.name).is_some())
        .map(|spec| spec.name)
}

impl TextIndex {
    /// Statistics of the documents matching `filter` (see [`StatsRequest`]); `first`:
    /// documents below this seq (dropped by retention, not yet deleted from the index)
    /// are not counted. A group that is not in [`group_fields`] is a
    /// [`TextError::BadQuery`].
    pub fn stats_of(
        &self,
        filter: &Filter,
        request: &StatsRequest,
        first: u64,
    ) -> Result<StatsAnswer, TextError> {
        guarded(|| self.stats_of_inner(filter, request, first))
    }

    fn stats_of_inner(
        &self,
        filter: &Filter,
        request: &StatsRequest,
        first: u64,
    ) -> Result<StatsAnswer, TextError> {
        let mut sources = Vec::with_capacity(request.groups.len());
        for name in &request.groups {
            sources.push(group_source(name).ok_or_else(|| {
                TextError::BadQuery(format!("{name:?} is not a field statistics can group by"))
            })?);
        }
        let searcher = self.shared.reader.searcher();
        let mut collector = self.stats_collector(filter, request, &sources, first);
        // `last_24h` is counted apart (below).
        collector.day_ago = None;
        let mut merged = self.stats_by_segment(&searcher, filter, &collector)?;
        if let Some(now) = request.last_24h {
            // A count of the day's matches: the window moves with `now`, so it
            // is no part of a segment's cached counts.
            let day = Filter {
                since: Some(
                    now.saturating_sub(86_400_000_000)
                        .max(filter.since.unwrap_or(i64::MIN)),
                ),
                ..filter.clone()
            };
            merged.last_24h = self.count_in(&searcher, &day, first)?;
        }
        Ok(answer(request, &sources, merged))
    }

    /// The single pass's collector of `request`'s parts.
    pub(super) fn stats_collector(
        &self,
        filter: &Filter,
        request: &StatsRequest,
        sources: &[GroupSource],
        first: u64,
    ) -> StatsCollector {
        let (lo, hi) = time_bounds(filter).unwrap_or((i64::MIN, i64::MAX));
        let columns: Vec<&'static str> = sources
            .iter()
            .filter_map(|s| match s {
                GroupSource::Column(c) => Some(*c),
                GroupSource::Code { .. } => None,
            })
            .collect();
        let codes = request.rates
            || sources
                .iter()
                .any(|s| matches!(s, GroupSource::Code { .. }));
        StatsCollector {
            columns,
            codes,
            day_ago: request
                .last_24h
                .map(|now| now.saturating_sub(86_400_000_000)),
            bucket: request.histogram.map(|b| b.max(1)),
            risk: request.risk,
            time_lo: lo,
            time_hi: hi,
            first,
        }
    }

    /// Statistics of the matching documents, every part computed (the full
    /// `GET /v1/stats` object). `now` is unix µs (for `last_24h`), `bucket_micros` the
    /// histogram bucket width (values below 1 are taken as 1), `top` how many entries
    /// `top_users` keeps (the other lists are complete).
    pub fn stats(
        &self,
        filter: &Filter,
        now: i64,
        bucket_micros: i64,
        top: usize,
    ) -> Result<Stats, TextError> {
        self.full_stats(filter, now, bucket_micros, (usize::MAX, top), 0)
    }

    /// [`TextIndex::stats`] with the documents below seq `first` left out, and
    /// `(top of the by_* lists, top of top_users)`.
    pub fn full_stats(
        &self,
        filter: &Filter,
        now: i64,
        bucket_micros: i64,
        (top, top_users_max): (usize, usize),
        first: u64,
    ) -> Result<Stats, TextError> {
        const GROUPS: [&str; 7] = [
            "action",
            "category",
            "entity_type",
            "severity",
            "status",
            "source",
            "user_id",
        ];
        let request = StatsRequest {
            groups: GROUPS.to_vec(),
            top: usize::MAX,
            last_24h: Some(now),
            histogram: Some(bucket_micros),
            rates: true,
            risk: true,
        };
        let a = self.stats_of(filter, &request, first)?;
        let mut groups = a.groups.into_iter().map(|g| g.values);
        let mut next = |n: usize| {
            let mut v = groups.next().unwrap_or_default();
            v.truncate(n);
            v
        };
        let (by_action, by_category, by_entity_type) = (next(top), next(top), next(top));
        let (by_severity, by_status, by_source) = (next(top), next(top), next(top));
        let mut top_users = next(usize::MAX);
        let active_users = top_users.len() as u64;
        top_users.truncate(top_users_max);
        let failure_rate = a.failure_rate.unwrap_or(0.0);
        Ok(Stats {
            total: a.total,
            last_24h: a.last_24h.unwrap_or(0),
            by_action,
            by_category,
            by_entity_type,
            by_severity,
            by_status,
            by_source,
            histogram: a.histogram.unwrap_or_default(),
            top_users,
            active_users,
            error_rate: failure_rate,
            failure_rate,
            error_severity_rate: a.error_severity_rate.unwrap_or(0.0),
            by_risk: a.risk.unwrap_or_default(),
        })
    }
}

/// Reads the requested fast columns of the matching documents in one pass: per-segment
/// counts indexed by term ordinal (strings) or code (enums), resolved to strings once
/// per segment when merging.
#[derive(Clone)]
pub(super) struct StatsCollector {
    /// The string columns to count, in request order.
    pub(super) columns: Vec<&'static str>,
    /// Whether the `codes` column is read (enum groups, rates).
    pub(super) codes: bool,
    /// `Some(now - 24 h)` when `last_24h` is asked for.
    pub(super) day_ago: Option<i64>,
    /// The histogram's bucket width, when asked for.
    pub(super) bucket: Option<i64>,
    /// Whether `risk_score` levels are counted.
    pub(super) risk: bool,
    /// Inclusive bounds on the time of every match (from the filter).
    pub(super) time_lo: i64,
    pub(super) time_hi: i64,
    /// Documents below this seq are not counted (dropped by retention).
    pub(super) first: u64,
}

/// One string column of one segment and the match count per term ordinal.
pub(super) struct OrdCounts {
    pub(super) column: StrColumn,
    pub(super) ords: Column<u64>,
    pub(super) counts: Vec<u64>,
}

pub(super) enum Histogram {
    /// Counts of buckets `first_bucket ..`, indexed from 0.
    Dense {
        first_bucket: i64,
        counts: Vec<u64>,
    },
    Sparse(HashMap<i64, u64>),
}

/// Dense histograms are used when they need at most this many buckets.
pub(super) const DENSE_BUCKETS_MAX: i128 = 1 << 20;

/// Doc ids are read in blocks of at most this many.
pub(super) const BLOCK: usize = tantivy::COLLECT_BLOCK_BUFFER_LEN;

/// Counts of the packed `codes` values (severity, status, source: 3 bits each).
pub(super) const CODES: usize = 512;

pub(super) struct StatsSegment {
    /// In [`StatsCollector::columns`] order; `None` for a column that no document of
    /// the segment has.
    pub(super) columns: Vec<Option<OrdCounts>>,
    pub(super) codes: Option<Column<u64>>,
    /// Counts per `codes` value (empty when `codes` is not read).
    pub(super) code_counts: Vec<u64>,
    /// Read when the histogram or `last_24h` is asked for.
    pub(super) time: Option<Column<i64>>,
    pub(super) day_ago: Option<i64>,
    pub(super) bucket: i64,
    pub(super) histogram: Option<Histogram>,
    pub(super) total: u64,
    pub(super) last_24h: u64,
    /// The `risk_score` column, when levels are asked for and a document of
    /// the segment has a score.
    pub(super) risk: Option<Column<u64>>,
    /// Matches per risk level (low, medium, high).
    pub(super) risk_counts: [u64; 3],
    /// Docs at or after this one are below the collector's `first` seq.
    pub(super) end: DocId,
    pub(super) ords: Vec<Option<u64>>,
    pub(super) times: Vec<Option<i64>>,
}

/// The statistics of one segment, strings not yet resolved.
pub(super) struct SegmentStatsFruit {
    pub(super) columns: Vec<Option<OrdCounts>>,
    pub(super) code_counts: Vec<u64>,
    pub(super) histogram: Option<Histogram>,
    pub(super) total: u64,
    pub(super) last_24h: u64,
    pub(super) risk_counts: [u64; 3],
}

/// Statistics merged over all segments.
pub(super) struct MergedStats {
    /// Per requested string column: count per value (absent values not included).
    pub(super) columns: Vec<Tally>,
    /// Per `codes` value (empty when `codes` was not read).
    pub(super) code_counts: Vec<u64>,
    pub(super) histogram: HashMap<i64, u64>,
    pub(super) total: u64,
    pub(super) last_24h: u64,
    pub(super) risk_counts: [u64; 3],
}

impl MergedStats {
    /// Nothing counted yet of what `by` asks for, its columns numbered by `dicts`.
    pub(super) fn new(by: &StatsCollector, dicts: &Dicts) -> MergedStats {
        MergedStats {
            columns: by
                .columns
                .iter()
                .map(|c| Tally::new(Arc::clone(dicts.of(c))))
                .collect(),
            code_counts: vec![0; if by.codes { CODES } else { 0 }],
            histogram: HashMap::new(),
            total: 0,
            last_24h: 0,
            risk_counts: [0; 3],
        }
    }

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
                into.add_column(column)?;
            }
        }
        Ok(())
    }
}

impl StatsCollector {
    /// The first doc of `segment` whose seq is below `first` (docs run in descending
    /// seq order, so those are a suffix).
    fn end(&self, segment: &SegmentReader) -> tantivy::Result<DocId> {
        end_below(segment, self.first)
    }

    fn histogram(&self, time: &Column<i64>) -> Option<Histogram> {
        let bucket = self.bucket?;
        let lo = time.min_value().max(self.time_lo);
        let hi = time.max_value().min(self.time_hi);
        let first_bucket = lo.div_euclid(bucket);
        let span = i128::from(hi.div_euclid(bucket)) - i128::from(first_bucket) + 1;
        Some(if (1..=DENSE_BUCKETS_MAX).contains(&span) {
            Histogram::Dense {
                first_bucket,
                counts: vec![0; usize::try_from(span).unwrap_or(0)],
            }
        } else {
            Histogram::Sparse(HashMap::new())
        })
    }
}

impl Collector for StatsCollector {
    type Fruit = MergedStats;
    type Child = StatsSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<StatsSegment> {
        let ff = segment.fast_fields();
        let mut columns = Vec::with_capacity(self.columns.len());
        for name in &self.columns {
            columns.push(ff.str(name)?.map(|column| OrdCounts {
                ords: column.ords().clone(),
                counts: vec![0; column.num_terms()],
                column,
            }));
        }
        let time = match self.bucket.is_some() || self.day_ago.is_some() {
            true => Some(columns::times(segment)?),
            false => None,
        };
        let codes = match self.codes {
            true => Some(ff.u64(F_CODES)?),
            false => None,
        };
        Ok(StatsSegment {
            columns,
            code_counts: vec![0; if codes.is_some() { CODES } else { 0 }],
            codes,
            histogram: time.as_ref().and_then(|t| self.histogram(t)),
            time,
            day_ago: self.day_ago,
            bucket: self.bucket.unwrap_or(1),
            total: 0,
            last_24h: 0,
            risk: match self.risk {
                true => ff.column_opt(F_RISK_SCORE)?,
                false => None,
            },
            risk_counts: [0; 3],
            end: self.end(segment)?,
            ords: vec![None; BLOCK],
            times: vec![None; BLOCK],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentStatsFruit>) -> tantivy::Result<MergedStats> {
        let mut merged = MergedStats::new(self, &Dicts::fresh(&self.columns));
        for fruit in fruits {
            merged.add_fruit(fruit, self)?;
        }
        Ok(merged)
    }
}

pub(super) fn merge_histogram(into: &mut HashMap<i64, u64>, histogram: Histogram, bucket: i64) {
    match histogram {
        Histogram::Dense {
            first_bucket,
            counts,
        } => {
            for (i, n) in counts.into_iter().enumerate() {
                if n > 0 {
                    let start = (first_bucket + i as i64).saturating_mul(bucket);
                    *into.entry(start).or_insert(0) += n;
                }
            }
        }
        Histogram::Sparse(map) => {
            for (b, n) in map {
                *into.entry(b.saturating_mul(bucket)).or_insert(0) += n;
            }
        }
    }
}

/// Adds one segment's counts per ordinal to `into`, by value.
pub(super) fn merge_column(into: &mut Counts, column: OrdCounts) -> tantivy::Result<()> {
    for_each_value(column, |s, n| match into.get_mut(s) {
        Some(count) => *count += n,
        None => {
            into.insert(s.to_owned(), n);
        }
    })
}

/// Calls `f` with each value of one segment's column that its matches use and
/// their count (the values are resolved in one sorted pass over its dictionary;
/// the value of absent fields is not one).
pub(super) fn for_each_value(
    column: OrdCounts,
    mut f: impl FnMut(&str, u64),
) -> tantivy::Result<()> {
    let OrdCounts { column, counts, .. } = column;
    let used: Vec<u64> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(ord, _)| ord as u64)
        .collect();
    let mut i = 0;
    let mut bad_utf8 = false;
    column
        .dictionary()
        .sorted_ords_to_term_cb(&used, |bytes| {
            let n = counts[used[i] as usize];
            i += 1;
            match std::str::from_utf8(bytes) {
                Ok(MISSING) => {}
                Ok(s) => f(s, n),
                Err(_) => bad_utf8 = true,
            }
        })
        .map_err(tantivy::TantivyError::from)?;
    if bad_utf8 || i != used.len() {
        return Err(tantivy::TantivyError::InternalError(
            "a fast string column has a term that is missing or not UTF-8".to_owned(),
        ));
    }
    Ok(())
}

impl StatsSegment {
    pub(super) fn count_time(&mut self, t: i64) {
        if self.day_ago.is_some_and(|d| t >= d) {
            self.last_24h += 1;
        }
        let b = t.div_euclid(self.bucket);
        match &mut self.histogram {
            None => {}
            Some(Histogram::Dense {
                first_bucket,
                counts,
            }) => {
                let i = b.wrapping_sub(*first_bucket) as u64 as usize;
                match counts.get_mut(i) {
                    Some(n) => *n += 1,
                    // Not possible when the filter's time bounds hold; stay correct anyway.
                    None => {
                        let mut map: HashMap<i64, u64> = counts
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| **n > 0)
                            .map(|(i, n)| (*first_bucket + i as i64, *n))
                            .collect();
                        map.insert(b, 1);
                        self.histogram = Some(Histogram::Sparse(map));
                    }
                }
            }
            Some(Histogram::Sparse(map)) => *map.entry(b).or_insert(0) += 1,
        }
    }

    pub(super) fn collect_chunk(&mut self, docs: &[DocId]) {
        // Doc ids ascend within a block: the ones below `first` are a suffix.
        let docs = &docs[..docs.partition_point(|d| *d < self.end)];
        let n = docs.len();
        if n == 0 {
            return;
        }
        self.total += n as u64;
        let ords = &mut self.ords[..n];
        for column in self.columns.iter_mut().flatten() {
            ords.fill(None);
            column.ords.first_vals(docs, ords);
            for ord in ords.iter().flatten() {
                if let Some(count) = column.counts.get_mut(*ord as usize) {
                    *count += 1;
                }
            }
        }
        if let Some(codes) = &self.codes {
            ords.fill(None);
            codes.first_vals(docs, ords);
            for code in ords.iter().flatten() {
                if let Some(count) = self.code_counts.get_mut(*code as usize) {
                    *count += 1;
                }
            }
        }
        if let Some(risk) = &self.risk {
            ords.fill(None);
            risk.first_vals(docs, ords);
            for level in ords.iter().flatten().filter_map(|s| RiskLevel::of(*s)) {
                self.risk_counts[level as usize] += 1;
            }
        }
        if let Some(time) = &self.time {
            let mut times = std::mem::take(&mut self.times);
            times[..n].fill(None);
            time.first_vals(docs, &mut times[..n]);
            for t in times[..n].iter().flatten() {
                self.count_time(*t);
            }
            self.times = times;
        }
    }
}

impl SegmentCollector for StatsSegment {
    type Fruit = SegmentStatsFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.collect_chunk(&[doc]);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        for chunk in docs.chunks(BLOCK) {
            self.collect_chunk(chunk);
        }
    }

    fn harvest(self) -> SegmentStatsFruit {
        SegmentStatsFruit {
            columns: self.columns,
            code_counts: self.code_counts,
            histogram: self.histogram,
            total: self.total,
            last_24h: self.last_24h,
            risk_counts: self.risk_counts,
        }
    }
}

/// Whether the values of the statistics column `name` are counted exactly as
/// stored (the tenant, compared exactly by its filter too); the others are
/// counted as their filters compare them, letter case folded.
pub(super) fn exact_column(name: &str) -> bool {
    stat_columns()
        .iter()
        .any(|(row, column)| column == name && event::FIELDS[*row].indexed == Indexed::ExactKeyword)
}

/// Counts per enum value (by name) from the counts per `codes` value.
fn code_values(code_counts: &[u64], shift: u32, names: &[&str]) -> Counts {
    let mut per = vec![0u64; names.len() + 1];
    for (code, n) in code_counts.iter().enumerate() {
        if let Some(slot) = per.get_mut((code >> shift) & 7) {
            *slot += n;
        }
    }
    names
        .iter()
        .zip(&per[1..])
        .filter(|(_, n)| **n > 0)
        .map(|(v, n)| ((*v).to_owned(), *n))
        .collect()
}

/// The first doc of `segment` whose seq is below `first` (docs run in
/// descending seq order, so those are a suffix); `max_doc` when none is.
pub(super) fn end_below(segment: &SegmentReader, first: u64) -> tantivy::Result<DocId> {
    if first <= 1 {
        return Ok(segment.max_doc());
    }
    let seqs = columns::seqs(segment)?;
    let seg = SegmentSeqs {
        reader: segment,
        min: seqs.min_value(),
        max: seqs.max_value(),
        seqs,
    };
    Ok(if seg.min >= first {
        seg.max_doc()
    } else {
        seg.partition_point(|seq| seq >= first)
    })
}

/// Matches whose `codes` value satisfies `pred`.
pub(super) fn codes_where(code_counts: &[u64], pred: impl Fn(u64) -> bool) -> u64 {
    code_counts
        .iter()
        .enumerate()
        .filter(|(code, _)| pred(*code as u64))
        .map(|(_, n)| n)
        .sum()
}

fn share(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 / total as f64
    }
}

/// The answer to `request` from the merged counts (`sources`: its groups' sources).
pub(super) fn answer(
    request: &StatsRequest,
    sources: &[GroupSource],
    mut m: MergedStats,
) -> StatsAnswer {
    let mut columns = std::mem::take(&mut m.columns).into_iter();
    let groups = request
        .groups
        .iter()
        .zip(sources)
        .map(|(field, source)| {
            let ranked = match source {
                GroupSource::Column(name) => match columns.next() {
                    Some(tally) => tally.ranked(exact_column(name), request.top),
                    None => Ranked::of(Counts::default(), request.top),
                },
                GroupSource::Code { shift, names } => {
                    Ranked::of(code_values(&m.code_counts, *shift, names), request.top)
                }
            };
            GroupCounts {
                field,
                truncated: ranked.distinct > request.top as u64,
                values: ranked.values,
                distinct: ranked.distinct,
                missing: m.total.saturating_sub(ranked.counted),
            }
        })
        .collect();
    let (failure_rate, error_severity_rate) = match request.rates && !m.code_counts.is_empty() {
        true => {
            let failure = enum_code(Status::ALL, Some(Status::Failure));
            let severe =
                [Severity::Error, Severity::Critical].map(|s| enum_code(Severity::ALL, Some(s)));
            let failures = codes_where(&m.code_counts, |c| (c >> STATUS_SHIFT) & 7 == failure);
            let errors = codes_where(&m.code_counts, |c| {
                severe.contains(&((c >> SEVERITY_SHIFT) & 7))
            });
            (Some(share(failures, m.total)), Some(share(errors, m.total)))
        }
        false => (request.rates.then_some(0.0), request.rates.then_some(0.0)),
    };
    let mut histogram: Option<Vec<(i64, u64)>> =
        request.histogram.map(|_| m.histogram.drain().collect());
    if let Some(h) = &mut histogram {
        h.sort_unstable();
    }
    StatsAnswer {
        total: m.total,
        last_24h: request.last_24h.map(|_| m.last_24h),
        histogram,
        groups,
        failure_rate,
        error_severity_rate,
        risk: request.risk.then(|| RiskCounts::of(m.risk_counts, m.total)),
    }
}
