//! The parameters of a listing, search or statistics question, parsed from
//! `key=value` pairs with a typed error per bad parameter.

use super::{
    bad, EqSlot, Filter, NumRange, Order, OwnRecords, QueryError, Sort, CURSOR_BYTES_MAX,
    LIMIT_DEFAULT, LIMIT_MAX, QUERY_TEXT_BYTES_MAX,
};
use crate::event::{self, Phase, Severity, Source, Status};

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
const OTHER_PARAMS: [&str; 11] = [
    "min_severity",
    "stele_records",
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
    /// anchors `hours` and relative times (`since=24h`). Every parameter may
    /// appear once.
    pub fn parse(pairs: &[(String, String)], now: i64) -> Result<Query, QueryError> {
        let mut q = Query::default();
        let mut hours: Option<i64> = None; // µs
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
                    Some(EqSlot::Phase(slot)) => {
                        *slot = Some(parse_enum::<Phase>(name, v, Phase::NAMES)?)
                    }
                    Some(EqSlot::Range(slot)) => *slot = Some(parse_range(name, v)?),
                    None => unreachable!("every filter row has a slot (checked by the tests)"),
                }
                continue;
            }
            match name {
                "min_severity" => {
                    f.min_severity = Some(parse_enum::<Severity>(name, v, Severity::NAMES)?)
                }
                "since" => f.since = Some(parse_time(name, v, now)?),
                "until" => f.until = Some(parse_time(name, v, now)?),
                "hours" => hours = Some(parse_hours(v).ok_or_else(|| bad(name, HOURS_RULE))?),
                "q" => f.text = text(QUERY_TEXT_BYTES_MAX)?,
                "stele_records" => {
                    f.stele_records = match v.to_ascii_lowercase().as_str() {
                        "exclude" => OwnRecords::Exclude,
                        "include" => OwnRecords::Include,
                        "only" => OwnRecords::Only,
                        _ => {
                            return Err(bad(
                                name,
                                "must be exclude (the default of reads), include (the default \
                                 of exports) or only",
                            ))
                        }
                    }
                }
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
            q.filter.since = Some(now.saturating_sub(h));
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

/// An enum value, ignoring ASCII case (`FAILURE` is `failure`).
fn parse_enum<T: std::str::FromStr>(
    name: &str,
    v: &str,
    allowed: &[&str],
) -> Result<T, QueryError> {
    v.to_ascii_lowercase()
        .parse()
        .map_err(|_| bad(name, format!("{v:?} is not one of {}", allowed.join(", "))))
}

/// The longest window `hours` and relative times reach back: ten years.
pub const WINDOW_HOURS_MAX: u32 = 24 * 366 * 10;

const HOURS_RULE: &str =
    "must be a number of hours greater than 0 and at most 87840 (ten years), e.g. 24 or 0.5";

const MICROS_PER_HOUR: f64 = 3_600_000_000.0;

/// `hours` as microseconds: a decimal number, fractions allowed (`0.25` is 15 minutes).
fn parse_hours(v: &str) -> Option<i64> {
    let h: f64 = v.parse().ok()?;
    (h.is_finite() && h > 0.0 && h <= f64::from(WINDOW_HOURS_MAX))
        .then(|| (h * MICROS_PER_HOUR).round() as i64)
        .filter(|us| *us > 0)
}

/// A point in time for `since` and `until`: an RFC 3339 timestamp, a UTC date
/// (`2026-11-28`, its midnight), or a time before `now` (`15m`, `24h`, `7d`, `2w`,
/// `90s`; a whole number and a unit).
pub fn parse_time(name: &str, v: &str, now: i64) -> Result<i64, QueryError> {
    if let Some(ago) = relative_micros(v) {
        return ago
            .ok_or_else(|| bad(name, format!("{v:?} reaches back more than ten years")))
            .map(|us| now.saturating_sub(us));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if v.len() == 10 {
            let midnight = day.and_time(chrono::NaiveTime::MIN).and_utc();
            return Ok(midnight.timestamp_micros());
        }
    }
    event::parse_timestamp(v).map_err(|e| {
        bad(
            name,
            format!(
                "{e}; use RFC 3339 (2026-11-23T10:00:00Z), a UTC date (2026-11-23) or a time \
                 ago (15m, 24h, 7d, 2w)"
            ),
        )
    })
}

/// `Some(Some(µs))` for a relative time (`<digits><unit>`, unit one of s, m, h, d, w),
/// `Some(None)` when it reaches back more than [`WINDOW_HOURS_MAX`], `None` when `v` is
/// not one.
fn relative_micros(v: &str) -> Option<Option<i64>> {
    let unit = v.chars().last()?;
    let digits = &v[..v.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    let n: i64 = digits.parse().ok()?;
    let us = n.checked_mul(seconds)?.checked_mul(1_000_000);
    Some(us.filter(|us| *us <= i64::from(WINDOW_HOURS_MAX) * 3_600_000_000))
}

/// An integer filter: a value (`75`), an inclusive range (`71..100`, `71..`, `..30`),
/// or, for `risk_score`, a level (`low` 0–30, `medium` 31–70, `high` 71–100).
fn parse_range(name: &str, v: &str) -> Result<NumRange, QueryError> {
    let levels = name == "risk_score";
    if levels {
        if let Some((lo, hi)) = crate::event::RiskLevel::parse(v).map(|l| l.range()) {
            return Ok(NumRange { lo, hi });
        }
    }
    let rule = if levels {
        "must be a whole number (75), a range (71..100, 71.., ..30) or a level: low (0–30), \
         medium (31–70), high (71–100)"
    } else {
        "must be a whole number (1500) or a range (1000..5000, 1000.., ..100)"
    };
    let num = |s: &str| -> Result<u64, QueryError> {
        s.parse::<u64>()
            .map_err(|_| bad(name, format!("{v:?} {rule}")))
    };
    let range = match v.split_once("..") {
        None => {
            let n = num(v)?;
            NumRange { lo: n, hi: n }
        }
        Some(("", "")) => return Err(bad(name, format!("{v:?} {rule}"))),
        Some((lo, hi)) => NumRange {
            lo: if lo.is_empty() { 0 } else { num(lo)? },
            hi: if hi.is_empty() { u64::MAX } else { num(hi)? },
        },
    };
    if range.lo > range.hi {
        return Err(bad(
            name,
            format!("{v:?} is an empty range: the lower bound is above the upper one"),
        ));
    }
    Ok(range)
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
