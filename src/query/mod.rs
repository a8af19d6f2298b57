//! The query engine: what users ask, answered from the indexes and the log.
//!
//! Owns the query model ([`Query`], parsed from `key=value` parameters with a
//! typed error per bad parameter), the opaque cursor, and the routing of each
//! question to the right index: filtered listings, full text and statistics to
//! tantivy; get by id, entity history and user timeline to sled. Events always
//! come from the log (the indexes return seqs).
//!
//! Invariants:
//! 1. A cursor continues exactly after the last event of the page it came
//!    with (by its `(time, seq)` position in event-time order, by seq in
//!    arrival order), so pages never repeat or skip an event while new
//!    events, backfilled ones included, arrive or segments rotate.
//! 2. A cursor is bound to its query (a fingerprint of the route, filters and
//!    order) and authenticated with a per-data-directory key: a tampered
//!    cursor, or one from another query, is an error, never a wrong page.
//!
//! Modules: `filter` (what the events must match, and the result order), `params`
//! (the parameters of a listing, search or statistics), `shape` (what an answer
//! holds beyond the matches: `total`, `offset`/`page`, the statistics' groups and
//! parts), `cursor` (the opaque, authenticated continuation), `engine` (answers
//! from the indexes and the log), `rendered` (the bounded cache of events' JSON that
//! listing pages answered with), `dashboard` (the monitoring page's figures in one
//! answer).

mod cursor;
mod dashboard;
mod engine;
mod filter;
mod params;
mod rendered;
mod shape;

pub use cursor::{cursor_key, CursorCodec};
pub use dashboard::{Dashboard, LastHour, RiskCounts, DASHBOARD_LATEST, DASHBOARD_TOP_USERS};
pub use engine::{Engine, Page, PageEvent, PageOf, RenderedPage, Stages};
pub use filter::{
    event_time, fold_case, EqSlot, Filter, NumRange, Order, OwnRecords, Position, Sort,
};
pub use params::{parse_sort, parse_time, Interval, Query, PARAMS};
pub use rendered::{RenderCache, Rendered, RenderedStats, RENDERED_BYTES_MAX};
pub use shape::{
    Paging, StatsParams, GROUPS_MAX, INCLUDE_PARTS, OFFSET_WINDOW_MAX, PAGING_PARAMS, STATS_PARAMS,
    TOP_DEFAULT, TOP_MAX,
};

use crate::index::kv::KvError;
use crate::index::text::TextError;

/// Largest page.
pub const LIMIT_MAX: usize = 1000;
/// Page size when none is asked for.
pub const LIMIT_DEFAULT: usize = 100;
/// Longest full-text query accepted.
pub const QUERY_TEXT_BYTES_MAX: usize = 4096;
/// Longest cursor accepted (they are 44 characters).
pub const CURSOR_BYTES_MAX: usize = 128;
/// Most entries in `top_users`.
pub const TOP_USERS: usize = 10;

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter is malformed or out of range.
    #[error("invalid parameter `{param}`: {message}")]
    BadParam {
        /// The parameter name.
        param: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The cursor was altered, is malformed, or belongs to another query.
    #[error("invalid cursor: {0}")]
    BadCursor(String),
    /// The full-text query does not parse.
    #[error("invalid full-text query `q`: {0}")]
    BadText(String),
    /// An index failed.
    #[error("index failure: {0}")]
    Index(String),
    /// The query points into events retention dropped.
    #[error("{what} points before seq {first_seq}, the oldest event kept: retention dropped the events it needs")]
    Gone {
        /// What points there (a cursor, a stream position).
        what: String,
        /// The oldest seq still in the log.
        first_seq: u64,
    },
    /// Reading the log failed (damaged data is reported, never skipped).
    #[error(transparent)]
    Log(#[from] crate::log::Error),
    /// An event read from the log could not be written as JSON.
    #[error("could not render an event as JSON: {0}")]
    Render(String),
}

impl From<TextError> for QueryError {
    fn from(e: TextError) -> Self {
        match e {
            TextError::BadQuery(m) => QueryError::BadText(m),
            other => QueryError::Index(other.to_string()),
        }
    }
}

impl From<KvError> for QueryError {
    fn from(e: KvError) -> Self {
        QueryError::Index(e.to_string())
    }
}

fn bad(param: &str, message: impl Into<String>) -> QueryError {
    QueryError::BadParam {
        param: param.into(),
        message: message.into(),
    }
}
