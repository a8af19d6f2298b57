//! The parameters of a listing, search or statistics question, parsed from
//! `key=value` pairs with a typed error per bad parameter.

use super::{
    bad, EqSlot, Filter, Order, QueryError, Sort, CURSOR_BYTES_MAX, LIMIT_DEFAULT, LIMIT_MAX,
    QUERY_TEXT_BYTES_MAX,
};
use crate::event::{self, Severity, Source, Status};

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
    /// By event time (default) or by seq (arrival).
    pub sort: Sort,
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
            sort: Sort::Time,
            order: Order::Desc,
            limit: LIMIT_DEFAULT,
            cursor: None,
            interval: Interval::Hour,
        }
    }
}

/// The parameters that are not an exact-match filter of the field table.
const OTHER_PARAMS: [&str; 10] = [
    "min_severity",
    "since",
    "until",
    "hours",
    "q",
    "sort",
    "order",
    "limit",
    "cursor",
    "interval",
];

const fn filter_count() -> usize {
    let (mut n, mut i) = (0, 0);
    while i < event::FIELDS.len() {
        if event::FIELDS[i].filter.is_some() {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn param_names() -> [&'static str; filter_count() + OTHER_PARAMS.len()] {
    let mut out = [""; filter_count() + OTHER_PARAMS.len()];
    let (mut i, mut j) = (0, 0);
    while i < event::FIELDS.len() {
        if let Some(p) = event::FIELDS[i].filter {
            out[j] = p;
            j += 1;
        }
        i += 1;
    }
    let mut k = 0;
    while k < OTHER_PARAMS.len() {
        out[j] = OTHER_PARAMS[k];
        j += 1;
        k += 1;
    }
    out
}

/// The names [`Query::parse`] accepts: the exact-match filters of the field table
/// (`event::FIELDS`), in table order, then the others.
pub const PARAMS: &[&str] = &param_names();

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
            if let Some(spec) = event::FIELDS.iter().find(|s| s.filter == Some(name)) {
                // Provenance values are API key ids, which have their own limit.
                let max = match spec.origin {
                    event::Origin::Provenance => event::INGESTED_BY_BYTES_MAX,
                    _ => event::SHORT_FIELD_BYTES_MAX,
                };
                match f.eq_slot(name) {
                    Some(EqSlot::Text(slot)) if spec.kind == event::Kind::Ip => {
                        let ip: std::net::IpAddr = v.parse().map_err(|_| {
                            bad(name, format!("{v:?} is not an IPv4 or IPv6 address"))
                        })?;
                        *slot = Some(ip.to_string());
                    }
                    Some(EqSlot::Text(slot)) => *slot = text(max)?,
                    Some(EqSlot::Source(slot)) => {
                        *slot = Some(parse_enum::<Source>(name, v, Source::NAMES)?)
                    }
                    Some(EqSlot::Status(slot)) => {
                        *slot = Some(parse_enum::<Status>(name, v, Status::NAMES)?)
                    }
                    Some(EqSlot::Severity(slot)) => {
                        *slot = Some(parse_enum::<Severity>(name, v, Severity::NAMES)?)
                    }
                    None => unreachable!("every filter row has a slot (checked by the tests)"),
                }
                continue;
            }
            match name {
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
                "sort" => q.sort = parse_sort(v).map_err(|m| bad(name, m))?,
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

/// The `sort` parameter: `time` (when it happened) or `seq` (arrival).
pub fn parse_sort(v: &str) -> Result<Sort, &'static str> {
    match v {
        "time" => Ok(Sort::Time),
        "seq" => Ok(Sort::Seq),
        _ => Err(
            "must be \"time\" (when the event happened, the default) or \"seq\" (arrival order)",
        ),
    }
}
