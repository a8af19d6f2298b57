//! Recent activity in one pass: the dashboard's figures of the last 24
//! hours, hour and 15 minutes, read from fast columns of the documents
//! matching a filter since `now - 24 h`.
//!
//! One search replaces the seven a dashboard would otherwise run (statistics
//! of the hour, three risk-level counts, distinct users of 15 minutes, the
//! 24-hour count, the newest events): the time range is resolved once, and
//! each match of the day reads its `time`; a match of the hour also reads
//! `codes`, its user's ordinal and `risk_score`.
//!
//! Invariants:
//! 1. Every live match with a seq of at least `first` and an event time at or
//!    after `now - 24 h` is counted once in `events_24h`; those at or after
//!    `now - 1 h` (`now - 15 min`) once in the hour's (15 minutes') figures.
//!    Event times after `now` count in every window, as a `since` filter
//!    without `until` counts them.
//! 2. Users are counted as statistics count `user_id` (letter case folded,
//!    `values::fold_variants`), so `active_users` equals the `distinct` of a
//!    `user_id` group over the same hour.
//! 3. `latest` holds the greatest `(time, seq)` keys of the matches, greatest
//!    first, as a newest-first listing by event time orders them.

use super::stats::{codes_where, end_below, merge_column, Counts, OrdCounts, BLOCK};
use super::values::{fold_variants, ranked};
use super::*;
use crate::event::RiskLevel;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const MINUTE: i64 = 60_000_000;

/// What [`TextIndex::recent`] computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentRequest {
    /// Unix µs: where every window ends.
    pub now: i64,
    /// Most users kept in `top_users`.
    pub top_users: usize,
    /// Most keys kept in `latest`.
    pub latest: usize,
}

/// The figures of the matches of the last 24 hours.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentAnswer {
    /// Matches of the last 24 hours.
    pub events_24h: u64,
    /// Matches of the last hour.
    pub events_1h: u64,
    /// … with status `failure`.
    pub failures_1h: u64,
    /// … with severity `error`.
    pub errors_1h: u64,
    /// … with severity `critical`.
    pub critical_1h: u64,
    /// … per risk level by `risk_score`: 0–30, 31–70, 71–100.
    pub risk_1h: [u64; 3],
    /// Distinct users of the hour.
    pub active_users_1h: u64,
    /// The hour's users with the most matches, count descending then user id.
    pub top_users_1h: Vec<(String, u64)>,
    /// Distinct users of the last 15 minutes.
    pub online_users_15m: u64,
    /// The greatest `(time, seq)` of the matches of the 24 hours, greatest first.
    pub latest: Vec<(i64, u64)>,
}

impl TextIndex {
    /// The recent figures of the documents matching `filter` (whose own
    /// `since` and `until` are replaced by `now - 24 h` and none), leaving
    /// out documents below seq `first`.
    pub fn recent(
        &self,
        filter: &Filter,
        request: &RecentRequest,
        first: u64,
    ) -> Result<RecentAnswer, TextError> {
        guarded(|| {
            let day = Filter {
                since: Some(request.now.saturating_sub(24 * 60 * MINUTE)),
                until: None,
                ..filter.clone()
            };
            let searcher = self.shared.reader.searcher();
            let Some(query) = self.build_query(&day, &searcher)? else {
                return Ok(RecentAnswer::default());
            };
            let user_column = match group_source("user_id") {
                Some(GroupSource::Column(c)) => c,
                _ => {
                    return Err(TextError::Tantivy(
                        "user_id has no statistics column".into(),
                    ))
                }
            };
            let collector = RecentCollector {
                hour: request.now.saturating_sub(60 * MINUTE),
                quarter: request.now.saturating_sub(15 * MINUTE),
                latest: request.latest,
                user_column,
                first,
            };
            let merged = searcher.search(&query, &collector).map_err(query_failed)?;
            Ok(merged.answer(request.top_users))
        })
    }
}

struct RecentCollector {
    hour: i64,
    quarter: i64,
    latest: usize,
    user_column: &'static str,
    first: u64,
}

struct RecentSegment {
    time: Column<i64>,
    seqs: Column<u64>,
    codes: Column<u64>,
    /// `None` in a segment where no document has a score.
    risk: Option<Column<u64>>,
    /// The hour's users, and the 15 minutes' (same column).
    users_1h: Option<OrdCounts>,
    users_15m: Option<OrdCounts>,
    hour: i64,
    quarter: i64,
    /// Docs at or after this one are below the collector's `first` seq.
    end: DocId,
    events_24h: u64,
    events_1h: u64,
    code_counts: [u64; 512],
    risk_1h: [u64; 3],
    /// A min-heap of the best keys (its top is the worst kept).
    latest: BinaryHeap<Reverse<(i64, u64)>>,
    latest_max: usize,
    times: Vec<Option<i64>>,
}

struct RecentFruit {
    events_24h: u64,
    events_1h: u64,
    code_counts: [u64; 512],
    risk_1h: [u64; 3],
    users_1h: Option<OrdCounts>,
    users_15m: Option<OrdCounts>,
    latest: BinaryHeap<Reverse<(i64, u64)>>,
}

struct RecentMerged {
    events_24h: u64,
    events_1h: u64,
    code_counts: [u64; 512],
    risk_1h: [u64; 3],
    users_1h: Counts,
    users_15m: Counts,
    latest: Vec<(i64, u64)>,
}

impl Collector for RecentCollector {
    type Fruit = RecentMerged;
    type Child = RecentSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<RecentSegment> {
        let ff = segment.fast_fields();
        let users = |column: StrColumn| OrdCounts {
            ords: column.ords().clone(),
            counts: vec![0; column.num_terms()],
            column,
        };
        let seqs = columns::seqs(segment)?;
        let end = end_below(segment, self.first)?;
        Ok(RecentSegment {
            time: columns::times(segment)?,
            codes: ff.u64(F_CODES)?,
            risk: ff.column_opt(F_RISK_SCORE)?,
            users_1h: ff.str(self.user_column)?.map(users),
            users_15m: ff.str(self.user_column)?.map(users),
            seqs,
            hour: self.hour,
            quarter: self.quarter,
            end,
            events_24h: 0,
            events_1h: 0,
            code_counts: [0; 512],
            risk_1h: [0; 3],
            latest: BinaryHeap::with_capacity(self.latest + 1),
            latest_max: self.latest,
            times: vec![None; BLOCK],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<RecentFruit>) -> tantivy::Result<RecentMerged> {
        let mut m = RecentMerged {
            events_24h: 0,
            events_1h: 0,
            code_counts: [0; 512],
            risk_1h: [0; 3],
            users_1h: Counts::default(),
            users_15m: Counts::default(),
            latest: Vec::new(),
        };
        let mut latest = Vec::new();
        for f in fruits {
            m.events_24h += f.events_24h;
            m.events_1h += f.events_1h;
            for (into, n) in m.code_counts.iter_mut().zip(f.code_counts) {
                *into += n;
            }
            for (into, n) in m.risk_1h.iter_mut().zip(f.risk_1h) {
                *into += n;
            }
            if let Some(u) = f.users_1h {
                merge_column(&mut m.users_1h, u)?;
            }
            if let Some(u) = f.users_15m {
                merge_column(&mut m.users_15m, u)?;
            }
            latest.extend(f.latest.into_iter().map(|Reverse(k)| k));
        }
        latest.sort_unstable_by(|a, b| b.cmp(a));
        latest.truncate(self.latest);
        m.latest = latest;
        m.users_1h = fold_variants(std::mem::take(&mut m.users_1h));
        m.users_15m = fold_variants(std::mem::take(&mut m.users_15m));
        Ok(m)
    }
}

impl RecentSegment {
    /// Keeps `(t, seq of doc)` if it is among the greatest keys seen; the seq
    /// is read only for a time that can make it.
    fn offer_latest(&mut self, doc: DocId, t: i64) {
        if self.latest_max == 0 {
            return;
        }
        let full = self.latest.len() >= self.latest_max;
        let worst = self.latest.peek().map(|Reverse(k)| *k);
        if full && worst.is_some_and(|(wt, _)| t < wt) {
            return;
        }
        let key = (t, self.seqs.first(doc).unwrap_or(0));
        if !full {
            self.latest.push(Reverse(key));
        } else if worst.is_some_and(|w| key > w) {
            self.latest.pop();
            self.latest.push(Reverse(key));
        }
    }

    fn collect_chunk(&mut self, docs: &[DocId]) {
        // Doc ids ascend within a block: the ones below `first` are a suffix.
        let docs = &docs[..docs.partition_point(|d| *d < self.end)];
        let n = docs.len();
        if n == 0 {
            return;
        }
        self.events_24h += n as u64;
        let mut times = std::mem::take(&mut self.times);
        times[..n].fill(None);
        self.time.first_vals(docs, &mut times[..n]);
        for (doc, t) in docs.iter().zip(&times[..n]) {
            let Some(t) = *t else { continue };
            self.offer_latest(*doc, t);
            if t < self.hour {
                continue;
            }
            self.events_1h += 1;
            if let Some(code) = self.codes.first(*doc) {
                if let Some(c) = self.code_counts.get_mut(code as usize) {
                    *c += 1;
                }
            }
            let score = self.risk.as_ref().and_then(|c| c.first(*doc));
            if let Some(level) = score.and_then(RiskLevel::of) {
                self.risk_1h[level as usize] += 1;
            }
            for (users, since) in [
                (&mut self.users_1h, self.hour),
                (&mut self.users_15m, self.quarter),
            ] {
                if t < since {
                    continue;
                }
                if let Some(u) = users {
                    if let Some(ord) = u.ords.first(*doc) {
                        if let Some(c) = u.counts.get_mut(ord as usize) {
                            *c += 1;
                        }
                    }
                }
            }
        }
        self.times = times;
    }
}

impl SegmentCollector for RecentSegment {
    type Fruit = RecentFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.collect_chunk(&[doc]);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        for chunk in docs.chunks(BLOCK) {
            self.collect_chunk(chunk);
        }
    }

    fn harvest(self) -> RecentFruit {
        RecentFruit {
            events_24h: self.events_24h,
            events_1h: self.events_1h,
            code_counts: self.code_counts,
            risk_1h: self.risk_1h,
            users_1h: self.users_1h,
            users_15m: self.users_15m,
            latest: self.latest,
        }
    }
}

impl RecentMerged {
    fn answer(self, top: usize) -> RecentAnswer {
        let code_of =
            |shift: u32, code: u64| codes_where(&self.code_counts, |c| (c >> shift) & 7 == code);
        let failure = enum_code(Status::ALL, Some(Status::Failure));
        let error = enum_code(Severity::ALL, Some(Severity::Error));
        let critical = enum_code(Severity::ALL, Some(Severity::Critical));
        let active = self.users_1h.len() as u64;
        let mut top_users = ranked(self.users_1h);
        top_users.truncate(top);
        RecentAnswer {
            events_24h: self.events_24h,
            events_1h: self.events_1h,
            failures_1h: code_of(STATUS_SHIFT, failure),
            errors_1h: code_of(SEVERITY_SHIFT, error),
            critical_1h: code_of(SEVERITY_SHIFT, critical),
            risk_1h: self.risk_1h,
            active_users_1h: active,
            top_users_1h: top_users,
            online_users_15m: self.users_15m.len() as u64,
            latest: self.latest,
        }
    }
}
