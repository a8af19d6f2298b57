//! The dashboard: what a monitoring page shows, in one answer (seed 003's
//! `active_users_1h`, `online_users_15m`, `recent_errors_1h`, the latest
//! activity), computed from the indexes as a handful of counts and groups of
//! the last hour, 15 minutes and 24 hours, never by reading events in bulk.
//!
//! Windows are by event time and end at the engine clock's now; every figure
//! is of the events matching the caller's filter (a tenant scope included).

use super::{Engine, Filter, NumRange, Order, Query, QueryError, Sort};
use crate::event::StoredEvent;
use crate::index::text::StatsRequest;

const MINUTE: i64 = 60_000_000;
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

/// Events per risk level.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RiskCounts {
    /// `risk_score` 0–30.
    pub low: u64,
    /// 31–70.
    pub medium: u64,
    /// 71–100.
    pub high: u64,
    /// Without a `risk_score` (or above 100).
    pub unscored: u64,
}

impl Engine {
    /// The dashboard of the events matching `filter`, which must not carry
    /// its own time window (the dashboard's windows are fixed).
    pub fn dashboard(&self, filter: &Filter) -> Result<Dashboard, QueryError> {
        let now = self.now_micros();
        let since = |minutes: i64| Filter {
            since: Some(now - minutes * MINUTE),
            until: None,
            ..filter.clone()
        };
        let hour = since(60);
        let asked = StatsRequest {
            groups: vec!["user_id", "status", "severity"],
            top: DASHBOARD_TOP_USERS,
            ..StatsRequest::default()
        };
        let stats = self.stats_of(&hour, &asked)?;
        let count_of = |field: &str, value: &str| -> u64 {
            stats
                .groups
                .iter()
                .find(|g| g.field == field)
                .and_then(|g| g.values.iter().find(|(v, _)| v == value))
                .map_or(0, |(_, n)| *n)
        };
        let users = stats.groups.iter().find(|g| g.field == "user_id");
        let events = stats.total;
        let failures = count_of("status", "failure");
        let critical = count_of("severity", "critical");
        let errors = count_of("severity", "error") + critical;
        let share = |n: u64| {
            if events == 0 {
                0.0
            } else {
                n as f64 / events as f64
            }
        };
        let risk_count = |lo: u64, hi: u64| -> Result<u64, QueryError> {
            self.count(&Filter {
                risk_score: Some(NumRange { lo, hi }),
                ..hour.clone()
            })
        };
        let (low, medium, high) = (
            risk_count(0, 30)?,
            risk_count(31, 70)?,
            risk_count(71, 100)?,
        );
        let online = self.stats_of(
            &since(15),
            &StatsRequest {
                groups: vec!["user_id"],
                top: 1,
                ..StatsRequest::default()
            },
        )?;
        // The newest events by event time: every event of the last hour sorts
        // before any older one, so when the hour holds enough of them the
        // listing need not look further back (a narrower, cheaper search);
        // then the last day; then everything.
        let mut latest = Vec::new();
        for window in [Some(since(60)), Some(since(24 * 60)), None] {
            let page = self.list(&Query {
                filter: window.unwrap_or_else(|| filter.clone()),
                sort: Sort::Time,
                order: Order::Desc,
                limit: DASHBOARD_LATEST,
                ..Query::default()
            })?;
            latest = page.events;
            if latest.len() == DASHBOARD_LATEST {
                break;
            }
        }
        Ok(Dashboard {
            now,
            last_hour: LastHour {
                events,
                failures,
                errors,
                critical,
                failure_rate: share(failures),
                error_severity_rate: share(errors),
                active_users: users.map_or(0, |g| g.distinct),
                top_users: users.map(|g| g.values.clone()).unwrap_or_default(),
                risk: RiskCounts {
                    low,
                    medium,
                    high,
                    unscored: events.saturating_sub(low + medium + high),
                },
            },
            online_users_15m: online.groups.first().map_or(0, |g| g.distinct),
            events_24h: self.count(&since(24 * 60))?,
            latest,
        })
    }
}
