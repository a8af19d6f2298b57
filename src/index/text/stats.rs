//! The statistics collector: counts by dimension, histogram and distinct users of
//! the matching documents, read from fast columns.

use super::*;

/// Reads the fast columns of the matching documents in one pass: per-segment counts
/// indexed by term ordinal (strings) or code (enums), resolved to strings once per
/// segment when merging.
pub(super) struct StatsCollector {
    pub(super) day_ago: i64,
    pub(super) bucket: i64,
    /// Inclusive bounds on the time of every match (from the filter).
    pub(super) time_lo: i64,
    pub(super) time_hi: i64,
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

pub(super) struct StatsSegment {
    /// `None` for a column that no document of the segment has.
    pub(super) columns: Vec<Option<OrdCounts>>,
    pub(super) codes: Column<u64>,
    /// Counts per `codes` value (512 possible values).
    pub(super) code_counts: Vec<u64>,
    pub(super) time: Column<i64>,
    pub(super) day_ago: i64,
    pub(super) bucket: i64,
    pub(super) histogram: Histogram,
    pub(super) total: u64,
    pub(super) last_24h: u64,
    pub(super) ords: Vec<Option<u64>>,
    pub(super) times: Vec<Option<i64>>,
}

/// The statistics of one segment, strings not yet resolved.
pub(super) struct SegmentStatsFruit {
    pub(super) columns: Vec<Option<OrdCounts>>,
    pub(super) code_counts: Vec<u64>,
    pub(super) histogram: Histogram,
    pub(super) total: u64,
    pub(super) last_24h: u64,
}

/// Statistics merged over all segments.
pub(super) struct MergedStats {
    /// Per statistics column: count per value.
    pub(super) columns: Vec<HashMap<String, u64>>,
    /// Per `codes` value.
    pub(super) code_counts: Vec<u64>,
    pub(super) histogram: HashMap<i64, u64>,
    pub(super) total: u64,
    pub(super) last_24h: u64,
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
        let mut columns = Vec::with_capacity(STAT_COLUMNS.len());
        for name in STAT_COLUMNS {
            columns.push(ff.str(name)?.map(|column| OrdCounts {
                ords: column.ords().clone(),
                counts: vec![0; column.num_terms()],
                column,
            }));
        }
        let time = ff.i64(F_TIME)?;
        let lo = time.min_value().max(self.time_lo);
        let hi = time.max_value().min(self.time_hi);
        let first_bucket = lo.div_euclid(self.bucket);
        let span = i128::from(hi.div_euclid(self.bucket)) - i128::from(first_bucket) + 1;
        let histogram = if (1..=DENSE_BUCKETS_MAX).contains(&span) {
            Histogram::Dense {
                first_bucket,
                counts: vec![0; usize::try_from(span).unwrap_or(0)],
            }
        } else {
            Histogram::Sparse(HashMap::new())
        };
        Ok(StatsSegment {
            columns,
            codes: ff.u64(F_CODES)?,
            code_counts: vec![0; 512],
            time,
            day_ago: self.day_ago,
            bucket: self.bucket,
            histogram,
            total: 0,
            last_24h: 0,
            ords: vec![None; BLOCK],
            times: vec![None; BLOCK],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentStatsFruit>) -> tantivy::Result<MergedStats> {
        let mut merged = MergedStats {
            columns: vec![HashMap::new(); STAT_COLUMNS.len()],
            code_counts: vec![0; 512],
            histogram: HashMap::new(),
            total: 0,
            last_24h: 0,
        };
        let mut used: Vec<u64> = Vec::new();
        for fruit in fruits {
            merged.total += fruit.total;
            merged.last_24h += fruit.last_24h;
            for (into, n) in merged.code_counts.iter_mut().zip(&fruit.code_counts) {
                *into += n;
            }
            match fruit.histogram {
                Histogram::Dense {
                    first_bucket,
                    counts,
                } => {
                    for (i, n) in counts.into_iter().enumerate() {
                        if n > 0 {
                            let start = (first_bucket + i as i64).saturating_mul(self.bucket);
                            *merged.histogram.entry(start).or_insert(0) += n;
                        }
                    }
                }
                Histogram::Sparse(map) => {
                    for (b, n) in map {
                        *merged
                            .histogram
                            .entry(b.saturating_mul(self.bucket))
                            .or_insert(0) += n;
                    }
                }
            }
            for (column, into) in fruit.columns.into_iter().zip(merged.columns.iter_mut()) {
                let Some(OrdCounts { column, counts, .. }) = column else {
                    continue;
                };
                used.clear();
                used.extend(
                    counts
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .map(|(ord, _)| ord as u64),
                );
                let mut i = 0;
                let mut bad_utf8 = false;
                column
                    .dictionary()
                    .sorted_ords_to_term_cb(&used, |bytes| {
                        let n = counts[used[i] as usize];
                        i += 1;
                        match std::str::from_utf8(bytes) {
                            Ok(MISSING) => {}
                            Ok(s) => match into.get_mut(s) {
                                Some(count) => *count += n,
                                None => {
                                    into.insert(s.to_owned(), n);
                                }
                            },
                            Err(_) => bad_utf8 = true,
                        }
                    })
                    .map_err(tantivy::TantivyError::from)?;
                if bad_utf8 || i != used.len() {
                    return Err(tantivy::TantivyError::InternalError(
                        "a fast string column has a term that is missing or not UTF-8".to_owned(),
                    ));
                }
            }
        }
        Ok(merged)
    }
}

impl StatsSegment {
    pub(super) fn count_time(&mut self, t: i64) {
        if t >= self.day_ago {
            self.last_24h += 1;
        }
        let b = t.div_euclid(self.bucket);
        match &mut self.histogram {
            Histogram::Dense {
                first_bucket,
                counts,
            } => {
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
                        self.histogram = Histogram::Sparse(map);
                    }
                }
            }
            Histogram::Sparse(map) => *map.entry(b).or_insert(0) += 1,
        }
    }

    pub(super) fn collect_chunk(&mut self, docs: &[DocId]) {
        let n = docs.len();
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
        ords.fill(None);
        self.codes.first_vals(docs, ords);
        for code in ords.iter().flatten() {
            if let Some(count) = self.code_counts.get_mut(*code as usize) {
                *count += 1;
            }
        }
        let mut times = std::mem::take(&mut self.times);
        times[..n].fill(None);
        self.time.first_vals(docs, &mut times[..n]);
        for t in times[..n].iter().flatten() {
            self.count_time(*t);
        }
        self.times = times;
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
        }
    }
}

/// `(value, count)` sorted by count descending, then value ascending.
pub(super) fn ranked(map: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Counts per enum value from the counts per `codes` value (`shift`: the enum's bits).
pub(super) fn ranked_codes<T: Copy>(
    code_counts: &[u64],
    shift: u32,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Vec<(String, u64)> {
    let mut per = vec![0u64; all.len() + 1];
    for (code, n) in code_counts.iter().enumerate() {
        let c = (code >> shift) & 7;
        if let Some(slot) = per.get_mut(c) {
            *slot += n;
        }
    }
    let map: HashMap<String, u64> = all
        .iter()
        .zip(&per[1..])
        .filter(|(_, n)| **n > 0)
        .map(|(v, n)| (name(*v).to_owned(), *n))
        .collect();
    ranked(map)
}

impl MergedStats {
    pub(super) fn into_stats(mut self, top: usize) -> Stats {
        let mut take = |i: usize| ranked(std::mem::take(&mut self.columns[i]));
        let by_action = take(STAT_ACTION);
        let by_category = take(STAT_CATEGORY);
        let by_entity_type = take(STAT_ENTITY_TYPE);
        let mut top_users = take(STAT_USER);
        let active_users = top_users.len() as u64;
        top_users.truncate(top);
        let by_severity = ranked_codes(&self.code_counts, 0, Severity::ALL, Severity::as_str);
        let by_status = ranked_codes(&self.code_counts, 3, Status::ALL, Status::as_str);
        let by_source = ranked_codes(&self.code_counts, 6, Source::ALL, Source::as_str);
        let failures = by_status
            .iter()
            .find(|(s, _)| s == Status::Failure.as_str())
            .map_or(0, |(_, n)| *n);
        let mut histogram: Vec<(i64, u64)> = self.histogram.into_iter().collect();
        histogram.sort_unstable();
        Stats {
            total: self.total,
            last_24h: self.last_24h,
            by_action,
            by_category,
            by_entity_type,
            by_severity,
            by_status,
            by_source,
            histogram,
            top_users,
            active_users,
            error_rate: if self.total == 0 {
                0.0
            } else {
                failures as f64 / self.total as f64
            },
        }
    }
}
