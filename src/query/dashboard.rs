//! The dashboard: what a monitoring page shows, in one answer (seed 003's
//! `active_users_1h`, `online_users_15m`, `recent_errors_1h`, the latest
//! activity), computed from the indexes in one pass over the matches of the
//! last 24 hours (`index::text::recent`), never by reading events in bulk.
//!
//! Windows are by event time and end at the engine clock's now; every figure
//! is of the events matching the caller's filter (a tenant scope included).

use super::{Engine, Filter, Order, Query, QueryError, Sort};
use crate::event::StoredEvent;
use crate::index::text::RecentRequest;
pub use crate::index::text::RiskCounts;
/// Most users listed in `top_users`.
pub const DASHBOARD_TOP_USERS: usize = 10;
/// Events listed in `latest`.
pub const DASHBOARD_LATEST: usize = 10;

/// The dashboard's figures (see the module documentation).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Dashboard {
    /// The engine clock's now, unix µs: where every window ends.
    #[serde(skip)]
    pub now: i64,
    /// The last hour.
    pub last_hour: LastHour,
    /// Distinct users with an event in the last 15 minutes.
    pub online_users_15m: u64,
    /// Events in the last 24 hours.
    pub events_24h: u64,
    /// The newest events by event time (at most [`DASHBOARD_LATEST`]).
    pub latest: Vec<StoredEvent>,
}

/// The last hour's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LastHour {
    /// Events.
    pub events: u64,
    /// Events with status `failure`.
    pub failures: u64,
    /// Events with severity `error` or `critical`.
    pub errors: u64,
    /// Events with severity `critical`.
    pub critical: u64,
    /// `failures / events` (0 without events).
    pub failure_rate: f64,
    /// `errors / events` (0 without events).
    pub error_severity_rate: f64,
    /// Distinct user ids.
    pub active_users: u64,
    /// The users with the most events, `(user_id, count)`, most first.
    pub top_users: Vec<(String, u64)>,
    /// Events per risk level, by `risk_score`.
    pub risk: RiskCounts,
}

impl Engine {
    /// The dashboard of the events matching `filter`, which must not carry
    /// its own time window (the dashboard's windows are fixed).
    pub fn dashboard(&self, filter: &Filter) -> Result<Dashboard, QueryError> {
        let now = self.now_micros();
        let request = RecentRequest {
            now,
            top_users: DASHBOARD_TOP_USERS,
            latest: DASHBOARD_LATEST,
        };
        let first = self.log().first_seq();
        let r = self.indexes().text.recent(filter, &request, first)?;
        // A seq retention dropped since the search is left out.
        let seqs: Vec<u64> = r.latest.iter().map(|&(_, seq)| seq).collect();
        let mut latest = self.log().get_many(&seqs)?;
        // Fewer than wanted in the last day (or dropped meanwhile): the
        // newest of all history, by the listing.
        if latest.len() < DASHBOARD_LATEST {
            latest = self
                .list(&Query {
                    filter: filter.clone(),
                    sort: Sort::Time,
                    order: Order::Desc,
                    limit: DASHBOARD_LATEST,
                    ..Query::default()
                })?
                .events;
        }
        let events = r.events_1h;
        let share = |n: u64| {
            if events == 0 {
                0.0
            } else {
                n as f64 / events as f64
            }
        };
        let errors = r.errors_1h + r.critical_1h;
        Ok(Dashboard {
            now,
            last_hour: LastHour {
                events,
                failures: r.failures_1h,
                errors,
                critical: r.critical_1h,
                failure_rate: share(r.failures_1h),
                error_severity_rate: share(errors),
                active_users: r.active_users_1h,
                top_users: r.top_users_1h,
                risk: RiskCounts::of(r.risk_1h, events),
            },
            online_users_15m: r.online_users_15m,
            events_24h: r.events_24h,
            latest,
        })
    }
}
