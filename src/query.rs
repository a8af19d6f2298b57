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
//!    with (by seq, in the page's order), so pages never repeat or skip an
//!    event while new events arrive or segments rotate.
//! 2. A cursor is bound to its query (a fingerprint of the route, filters and
//!    order) and authenticated with a per-data-directory key: a tampered
//!    cursor, or one from another query, is an error, never a wrong page.

use crate::clock::Clock;
use crate::event::{self, Severity, Source, Status, StoredEvent};
use crate::index::kv::KvError;
use crate::index::text::{Filter, Order, Stats, TextError};
use crate::index::Indexes;
use crate::log::Log;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

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

/// Histogram bucket width for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One UTC day.
    Day,
}

impl Interval {
    /// Width in microseconds.
    pub fn micros(self) -> i64 {
        match self {
            Interval::Minute => 60_000_000,
            Interval::Hour => 3_600_000_000,
            Interval::Day => 86_400_000_000,
        }
    }
}

/// A listing, search or statistics question.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// What the events must match.
    pub filter: Filter,
    /// Newest first (default) or oldest first.
    pub order: Order,
    /// Page size, 1..=LIMIT_MAX.
    pub limit: usize,
    /// Where the previous page stopped.
    pub cursor: Option<String>,
    /// Histogram bucket (statistics only).
    pub interval: Interval,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            filter: Filter::default(),
            order: Order::Desc,
            limit: LIMIT_DEFAULT,
            cursor: None,
            interval: Interval::Hour,
        }
    }
}

/// The names [`Query::parse`] accepts.
pub const PARAMS: &[&str] = &[
    "tenant",
    "action",
    "category",
    "source",
    "status",
    "severity",
    "min_severity",
    "entity_type",
    "entity_id",
    "user_id",
    "session_id",
    "correlation_id",
    "ip",
    "actor",
    "ingested_by",
    "since",
    "until",
    "hours",
    "q",
    "order",
    "limit",
    "cursor",
    "interval",
];

impl Query {
    /// Parses query parameters (already percent-decoded). `now` (unix µs)
    /// anchors `hours`. Every parameter may appear once.
    pub fn parse(pairs: &[(String, String)], now: i64) -> Result<Query, QueryError> {
        let mut q = Query::default();
        let mut hours: Option<i64> = None;
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in pairs {
            let Some(&name) = PARAMS.iter().find(|p| **p == k.as_str()) else {
                return Err(bad(
                    k,
                    format!(
                        "unknown parameter; known parameters are {}",
                        PARAMS.join(", ")
                    ),
                ));
            };
            if seen.contains(&name) {
                return Err(bad(name, "given more than once"));
            }
            seen.push(name);
            let text = |max: usize| -> Result<Option<String>, QueryError> {
                if v.is_empty() {
                    return Err(bad(name, "must not be empty"));
                }
                if v.len() > max {
                    return Err(bad(
                        name,
                        format!("is {} bytes long, the limit is {max}", v.len()),
                    ));
                }
                Ok(Some(v.clone()))
            };
            let f = &mut q.filter;
            match name {
                "tenant" => f.tenant = text(event::SHORT_FIELD_BYTES_MAX)?,
                "action" => f.action = text(event::SHORT_FIELD_BYTES_MAX)?,
                "category" => f.category = text(event::SHORT_FIELD_BYTES_MAX)?,
                "entity_type" => f.entity_type = text(event::SHORT_FIELD_BYTES_MAX)?,
                "entity_id" => f.entity_id = text(event::SHORT_FIELD_BYTES_MAX)?,
                "user_id" => f.user_id = text(event::SHORT_FIELD_BYTES_MAX)?,
                "session_id" => f.session_id = text(event::SHORT_FIELD_BYTES_MAX)?,
                "correlation_id" => f.correlation_id = text(event::SHORT_FIELD_BYTES_MAX)?,
                "actor" => f.actor = text(event::SHORT_FIELD_BYTES_MAX)?,
                "ingested_by" => f.ingested_by = text(event::INGESTED_BY_BYTES_MAX)?,
                "ip" => {
                    let ip: std::net::IpAddr = v
                        .parse()
                        .map_err(|_| bad(name, format!("{v:?} is not an IPv4 or IPv6 address")))?;
                    f.ip = Some(ip.to_string());
                }
                "source" => f.source = Some(parse_enum::<Source>(name, v, Source::NAMES)?),
                "status" => f.status = Some(parse_enum::<Status>(name, v, Status::NAMES)?),
                "severity" => f.severity = Some(parse_enum::<Severity>(name, v, Severity::NAMES)?),
                "min_severity" => {
                    f.min_severity = Some(parse_enum::<Severity>(name, v, Severity::NAMES)?)
                }
                "since" => f.since = Some(parse_time(name, v)?),
                "until" => f.until = Some(parse_time(name, v)?),
                "hours" => {
                    let h: i64 = v
                        .parse()
                        .ok()
                        .filter(|h| (1..=24 * 366 * 10).contains(h))
                        .ok_or_else(|| {
                            bad(name, "must be a whole number of hours from 1 to 87840")
                        })?;
                    hours = Some(h);
                }
                "q" => f.text = text(QUERY_TEXT_BYTES_MAX)?,
                "order" => {
                    q.order = match v.as_str() {
                        "desc" => Order::Desc,
                        "asc" => Order::Asc,
                        _ => return Err(bad(name, "must be \"desc\" (newest first) or \"asc\"")),
                    }
                }
                "limit" => {
                    q.limit = v
                        .parse()
                        .ok()
                        .filter(|l| (1..=LIMIT_MAX).contains(l))
                        .ok_or_else(|| {
                            bad(
                                name,
                                format!("must be a whole number from 1 to {LIMIT_MAX}"),
                            )
                        })?
                }
                "cursor" => {
                    if v.len() > CURSOR_BYTES_MAX {
                        return Err(QueryError::BadCursor("too long".into()));
                    }
                    q.cursor = Some(v.clone());
                }
                "interval" => {
                    q.interval = match v.as_str() {
                        "minute" => Interval::Minute,
                        "hour" => Interval::Hour,
                        "day" => Interval::Day,
                        _ => return Err(bad(name, "must be minute, hour or day")),
                    }
                }
                _ => unreachable!("every name in PARAMS is handled"),
            }
        }
        if let Some(h) = hours {
            if q.filter.since.is_some() {
                return Err(bad("hours", "give either `hours` or `since`, not both"));
            }
            q.filter.since = Some(now - h * 3_600_000_000);
        }
        if let (Some(s), Some(u)) = (q.filter.since, q.filter.until) {
            if s >= u {
                return Err(bad("since", "must be before `until`"));
            }
        }
        if let (Some(s), Some(m)) = (q.filter.severity, q.filter.min_severity) {
            if s < m {
                return Err(bad(
                    "severity",
                    format!("{s} is below min_severity {m}: nothing could match"),
                ));
            }
        }
        Ok(q)
    }
}

fn parse_enum<T: std::str::FromStr>(
    name: &str,
    v: &str,
    allowed: &[&str],
) -> Result<T, QueryError> {
    v.parse()
        .map_err(|_| bad(name, format!("{v:?} is not one of {}", allowed.join(", "))))
}

fn parse_time(name: &str, v: &str) -> Result<i64, QueryError> {
    event::parse_timestamp(v).map_err(|e| {
        bad(
            name,
            format!("{e}; use RFC 3339, e.g. 2026-11-23T10:00:00Z"),
        )
    })
}

/// One page of events.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page {
    /// The events, in the page's order.
    pub events: Vec<StoredEvent>,
    /// Continues the listing; `None` at the end.
    pub next_cursor: Option<String>,
}

/// Which listing a cursor belongs to.
#[derive(Clone, Copy)]
enum Route<'a> {
    List,
    Entity(&'a str, &'a str),
    User(&'a str),
}

impl Route<'_> {
    /// Unambiguous text for the cursor fingerprint (lengths prefix values).
    fn describe(&self) -> String {
        match self {
            Route::List => "list".into(),
            Route::Entity(t, i) => format!("entity:{}:{t}:{}:{i}", t.len(), i.len()),
            Route::User(u) => format!("user:{}:{u}", u.len()),
        }
    }
}

/// Answers queries from the indexes and the log.
pub struct Engine {
    log: Arc<Log>,
    indexes: Arc<Indexes>,
    clock: Arc<dyn Clock>,
    cursors: CursorCodec,
}

/// Encodes and authenticates cursors: version byte 1, the query's 8-byte
/// fingerprint, the last seq of the page (big endian), then the first 16
/// bytes of SHA-256(key ‖ those 17 bytes); base64url without padding (44
/// characters).
#[derive(Clone)]
pub struct CursorCodec {
    key: [u8; 32],
}

impl fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CursorCodec { key: <secret> }")
    }
}

impl CursorCodec {
    /// A codec whose cursors are authenticated with `key`.
    pub fn new(key: [u8; 32]) -> CursorCodec {
        CursorCodec { key }
    }

    fn mac(&self, payload: &[u8]) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(payload);
        h.finalize()[..16].try_into().expect("16 bytes")
    }

    /// The cursor continuing the query with fingerprint `fp` after `seq`.
    pub fn encode(&self, fp: [u8; 8], seq: u64) -> String {
        let mut b = Vec::with_capacity(33);
        b.push(1u8);
        b.extend_from_slice(&fp);
        b.extend_from_slice(&seq.to_be_bytes());
        let mac = self.mac(&b);
        b.extend_from_slice(&mac);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// The seq a cursor continues after, if this codec made it for the
    /// query with fingerprint `fp`.
    pub fn decode(&self, cursor: &str, fp: [u8; 8]) -> Result<u64, QueryError> {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| QueryError::BadCursor("not a cursor returned by Stele".into()))?;
        if b.len() != 33 || b[0] != 1 {
            return Err(QueryError::BadCursor(
                "not a cursor returned by Stele".into(),
            ));
        }
        if self.mac(&b[..17]) != b[17..33] {
            return Err(QueryError::BadCursor(
                "it was altered, or comes from another Stele installation".into(),
            ));
        }
        if b[1..9] != fp {
            return Err(QueryError::BadCursor(
                "it belongs to a different query: repeat the query that returned it, with the \
                 same filters and order"
                    .into(),
            ));
        }
        Ok(u64::from_be_bytes(b[9..17].try_into().expect("8 bytes")))
    }
}

/// Loads the cursor key of a data directory, creating it on first use.
pub fn cursor_key(data_dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = crate::datadir::DataDir::new(data_dir).cursor_key();
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes.try_into().expect("32 bytes")),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} must hold exactly 32 bytes; delete it to make a new one (open cursors become invalid)",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let as_io = |e: crate::datadir::IoError| std::io::Error::new(e.source.kind(), e.to_string());
            let key = crate::datadir::random_bytes::<32>().map_err(as_io)?;
            crate::datadir::write_durably(&path, &key, 0o644).map_err(as_io)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

impl Engine {
    /// An engine over `log` and its `indexes`; `key` authenticates cursors.
    pub fn new(
        log: Arc<Log>,
        indexes: Arc<Indexes>,
        clock: Arc<dyn Clock>,
        key: [u8; 32],
    ) -> Engine {
        Engine {
            log,
            indexes,
            clock,
            cursors: CursorCodec::new(key),
        }
    }

    /// The log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The indexes.
    pub fn indexes(&self) -> &Arc<Indexes> {
        &self.indexes
    }

    fn fingerprint(&self, route: Route<'_>, filter: &Filter, order: Order) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update(format!("{}|{filter:?}|{order:?}", route.describe()).as_bytes());
        h.finalize()[..8].try_into().expect("8 bytes")
    }

    fn fetch(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>, QueryError> {
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if let Some(ev) = self.log.get(seq)? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    fn page(&self, seqs: Vec<u64>, limit: usize, fp: [u8; 8]) -> Result<Page, QueryError> {
        // One more than asked tells whether there is a next page.
        let more = seqs.len() > limit;
        let seqs = &seqs[..seqs.len().min(limit)];
        let events = self.fetch(seqs)?;
        let next_cursor = match (more, seqs.last()) {
            (true, Some(&last)) => Some(self.cursors.encode(fp, last)),
            _ => None,
        };
        Ok(Page {
            events,
            next_cursor,
        })
    }

    /// A filtered listing (with `q`, a full-text search), in `query.order`.
    pub fn list(&self, query: &Query) -> Result<Page, QueryError> {
        let fp = self.fingerprint(Route::List, &query.filter, query.order);
        let after = match &query.cursor {
            Some(c) => Some(self.cursors.decode(c, fp)?),
            None => None,
        };
        if let Some(a) = after {
            // A cursor continues right after `a`: the next seq it needs
            // (a - 1 newest-first, a + 1 oldest-first) must still exist.
            let first = self.log.first_seq();
            let needs = match query.order {
                crate::index::text::Order::Desc => a.saturating_sub(1),
                crate::index::text::Order::Asc => a + 1,
            };
            if needs < first && !(query.order == crate::index::text::Order::Desc && a <= 1) {
                return Err(QueryError::Gone {
                    what: "the cursor".into(),
                    first_seq: first,
                });
            }
        }
        // Until the indexes commit a retention drop (≤ one commit interval)
        // they still hold the dropped seqs: skip them, so pages stay full.
        let first = self.log.first_seq();
        let after = match query.order {
            crate::index::text::Order::Asc if first > 1 => {
                Some(after.map_or(first - 1, |a| a.max(first - 1)))
            }
            _ => after,
        };
        let mut seqs =
            self.indexes
                .text
                .search(&query.filter, query.order, query.limit + 1, after)?;
        seqs.retain(|&s| s >= first);
        self.page(seqs, query.limit, fp)
    }

    /// Up to `limit` seqs after `after` matching `filter` (full text
    /// included), oldest first: how a stream with `q` follows the text
    /// index. Commits add seqs in order, so repeating the call with the last
    /// seq seen never skips one.
    pub fn matching_after(
        &self,
        filter: &Filter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, QueryError> {
        Ok(self
            .indexes
            .text
            .search(filter, crate::index::text::Order::Asc, limit, after)?)
    }

    /// Number of events matching the filter (with `q`: the full-text hits).
    pub fn count(&self, filter: &Filter) -> Result<u64, QueryError> {
        Ok(self.indexes.text.count(filter)?)
    }

    /// The event with this id in `tenant` (`None`: among the events without a
    /// tenant). Ids are unique per tenant, not across tenants.
    pub fn get_by_id(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<StoredEvent>, QueryError> {
        match self.indexes.kv.seq_of_id(id, tenant)? {
            Some(seq) => self.get_checked(seq, id, tenant),
            None => Ok(None),
        }
    }

    /// The event at `seq`, if it is the one with `id` in `tenant` (an index
    /// entry never answers for another event).
    pub fn get_checked(
        &self,
        seq: u64,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<StoredEvent>, QueryError> {
        Ok(self
            .log
            .get(seq)?
            .filter(|e| e.event.id == id && e.event.tenant.as_deref() == tenant))
    }

    /// The tenants that hold an event with this id (`None`: the events
    /// without a tenant) and its seq in each, at most `max` of them, from
    /// the key index (one range scan).
    pub fn tenants_of_id(
        &self,
        id: &str,
        max: usize,
    ) -> Result<Vec<(Option<String>, u64)>, QueryError> {
        Ok(self.indexes.kv.tenants_of_id(id, max)?)
    }

    fn keyed(
        &self,
        route: Route<'_>,
        filter: Filter,
        order: Order,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, QueryError> {
        if !(1..=LIMIT_MAX).contains(&limit) {
            return Err(bad(
                "limit",
                format!("must be a whole number from 1 to {LIMIT_MAX}"),
            ));
        }
        let fp = self.fingerprint(route, &filter, order);
        let after = match cursor {
            Some(c) => Some(self.cursors.decode(c, fp)?),
            None => None,
        };
        // Served by the full-text index, where these fields are raw terms
        // sorted by seq (see `index::kv::KvIndex::open` for why not sled).
        let seqs = self.indexes.text.search(&filter, order, limit + 1, after)?;
        self.page(seqs, limit, fp)
    }

    /// Every event about one entity, oldest first, with its changes
    /// (`tenants`: a key's scope, `None` for all).
    pub fn entity_history(
        &self,
        tenants: Option<&[String]>,
        entity_type: &str,
        entity_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, QueryError> {
        let filter = Filter {
            entity_type: Some(entity_type.into()),
            entity_id: Some(entity_id.into()),
            tenants: tenants.map(<[String]>::to_vec),
            ..Filter::default()
        };
        self.keyed(
            Route::Entity(entity_type, entity_id),
            filter,
            Order::Asc,
            limit,
            cursor,
        )
    }

    /// What one user did, newest first (`tenants`: a key's scope, `None`
    /// for all).
    pub fn user_timeline(
        &self,
        tenants: Option<&[String]>,
        user_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, QueryError> {
        let filter = Filter {
            user_id: Some(user_id.into()),
            tenants: tenants.map(<[String]>::to_vec),
            ..Filter::default()
        };
        self.keyed(Route::User(user_id), filter, Order::Desc, limit, cursor)
    }

    /// Statistics of the events matching the filter.
    pub fn stats(&self, query: &Query) -> Result<Stats, QueryError> {
        Ok(self.indexes.text.stats(
            &query.filter,
            self.clock.now_micros(),
            query.interval.micros(),
            TOP_USERS,
        )?)
    }
}
