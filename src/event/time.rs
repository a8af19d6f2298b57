//! Event times on the wire: RFC 3339 in, RFC 3339 UTC with microseconds out.

use super::*;

/// Formats unix microseconds as RFC 3339 UTC with exactly six fractional digits, e.g.
/// `2026-11-23T10:00:00.000001Z`.
///
/// Values beyond chrono's range (about ±262,000 years) cannot occur for validated
/// events; they are rendered as the plain decimal number of microseconds.
pub fn format_micros(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        None => us.to_string(),
    }
}

/// Why a timestamp string was rejected.
pub(super) enum TimestampError {
    /// Not RFC 3339.
    Invalid(String),
    /// RFC 3339, but outside `TIMESTAMP_MIN_MICROS..=TIMESTAMP_MAX_MICROS`.
    OutOfRange,
}

pub(super) fn parse_timestamp_checked(s: &str) -> Result<i64, TimestampError> {
    let dt = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|err| TimestampError::Invalid(err.to_string()))?;
    let us = dt.timestamp_micros();
    if (TIMESTAMP_MIN_MICROS..=TIMESTAMP_MAX_MICROS).contains(&us) {
        Ok(us)
    } else {
        Err(TimestampError::OutOfRange)
    }
}

pub(super) const TIMESTAMP_RANGE_TEXT: &str = "0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z";

/// Parses an RFC 3339 timestamp with any UTC offset (e.g. `2026-11-23T11:00:00.5+01:00`)
/// into UTC microseconds since the unix epoch. Digits beyond microseconds are truncated.
/// Instants outside `0000-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999Z` (after
/// conversion to UTC) are rejected.
///
/// # Errors
///
/// A sentence saying why `s` is not accepted (not RFC 3339, or out of range).
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    parse_timestamp_checked(s).map_err(|err| match err {
        TimestampError::Invalid(why) => format!(
            "\"{}\" is not an RFC 3339 timestamp such as 2026-11-23T10:00:00Z or \
             2026-11-23T11:00:00.123456+01:00 ({why})",
            preview(s)
        ),
        TimestampError::OutOfRange => format!(
            "\"{}\" is outside the supported range {TIMESTAMP_RANGE_TEXT}",
            preview(s)
        ),
    })
}
