//! The event model: what a client posts, what is stored, and how it is shown.
//!
//! Owns three representations of one audit event and the conversions between them:
//!
//! * **Posted JSON** (what a client sends): validated by [`parse_event`], which checks
//!   every field against the named limits in this module and reports *all* problems at
//!   once as [`FieldError`]s, one per bad field.
//! * **Stored binary** ([`Event`], [`StoredEvent`], [`Provenance`]): bincode 2 with the
//!   standard configuration (varint integers, little-endian), field order as declared.
//!   The segment writer frames these bytes; see [`encode_stored_prefix`],
//!   [`encode_event`], [`encode_provenance`] and [`decode_stored`] (which takes the
//!   segment's format version: version 1 records carry no provenance). Reordering,
//!   adding or removing a field changes the on-disk format.
//! * **JSON view** (what queries return): the `Serialize` impls of [`Event`] and
//!   [`StoredEvent`] produce the posted field names, RFC 3339 UTC timestamps with
//!   microseconds, and `metadata` / change values as real JSON again.
//!
//! JSON values that a client may shape freely (`metadata`, `changes[].old`,
//! `changes[].new`) are stored as their *canonical JSON text* (compact, object keys
//! sorted; see [`canonical_json`]) so that they round-trip exactly.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::str::FromStr;

use bincode::enc::write::{SizeWriter, Writer};
use bincode::error::EncodeError;
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

/// Maximum length of `id`, in bytes (printable ASCII only).
pub const ID_BYTES_MAX: usize = 128;
/// Maximum length, in UTF-8 bytes, of the short identifier fields: `action`, `actor`,
/// `tenant`, `category`, `entity_type`, `entity_id`, `user_id`, `user_name`,
/// `session_id`, `correlation_id`, `ip` and `changes[].field`.
pub const SHORT_FIELD_BYTES_MAX: usize = 256;
/// Maximum length of `entity_name`, in UTF-8 bytes.
pub const ENTITY_NAME_BYTES_MAX: usize = 1024;
/// Maximum length of `user_agent`, in UTF-8 bytes.
pub const USER_AGENT_BYTES_MAX: usize = 1024;
/// Maximum length of `description`, in UTF-8 bytes.
pub const DESCRIPTION_BYTES_MAX: usize = 64 * 1024;
/// Maximum size of `metadata` serialized as canonical (compact) JSON, in bytes.
pub const METADATA_BYTES_MAX: usize = 64 * 1024;
/// Maximum nesting depth of objects and arrays in `metadata` (the metadata object itself
/// is level 1) and in each change value (a top-level object or array is level 1).
pub const METADATA_DEPTH_MAX: usize = 16;
/// Maximum number of entries in `changes`.
pub const CHANGES_COUNT_MAX: usize = 256;
/// Maximum size of each `changes[].old` / `changes[].new` value serialized as canonical
/// (compact) JSON, in bytes.
pub const CHANGE_VALUE_BYTES_MAX: usize = 16 * 1024;
/// Maximum size of a whole bincode-encoded [`Event`], in bytes.
pub const EVENT_BYTES_MAX: usize = 256 * 1024;
/// Earliest accepted event time: `0000-01-01T00:00:00Z`, in unix microseconds.
pub const TIMESTAMP_MIN_MICROS: i64 = -62_167_219_200_000_000;
/// Latest accepted event time: `9999-12-31T23:59:59.999999Z`, in unix microseconds.
pub const TIMESTAMP_MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Every field name a client may post, in on-disk order.
pub const FIELD_NAMES: &[&str] = &[
    "id",
    "timestamp",
    "action",
    "actor",
    "tenant",
    "category",
    "source",
    "status",
    "severity",
    "entity_type",
    "entity_id",
    "entity_name",
    "user_id",
    "user_name",
    "session_id",
    "correlation_id",
    "ip",
    "user_agent",
    "risk_score",
    "duration_ms",
    "description",
    "changes",
    "metadata",
];

/// The fields of a stored event that the server sets (a client posting one is refused).
pub const STORED_FIELD_NAMES: &[&str] = &["seq", "received_at"];

/// The provenance fields of a stored event ([`Provenance`]): stamped by the server from
/// the connection and the API key, refused when posted. Events stored in format
/// version 1 do not have them.
pub const PROVENANCE_FIELD_NAMES: &[&str] = &["ingested_by", "client_addr"];

/// The field names allowed inside one entry of `changes`.
pub const CHANGE_FIELD_NAMES: &[&str] = &["field", "old", "new"];

// ---------------------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------------------

/// The error returned when a string is not the wire name of an enum variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEnumError {
    /// The name of the field the enum belongs to, e.g. `"severity"`.
    pub field: &'static str,
    /// The rejected input (possibly shortened).
    pub value: String,
    /// The accepted wire names.
    pub expected: &'static [&'static str],
}

impl fmt::Display for ParseEnumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} \"{}\"; allowed values are: {}",
            self.field,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for ParseEnumError {}

/// Defines a closed set of lower-case wire names with `as_str`, `parse`, `ALL`, `NAMES`,
/// `Display` and `FromStr`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $field:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            bincode::Encode,
            bincode::Decode,
        )]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration (and on-disk discriminant) order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The wire name of every variant, in the same order as [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The wire name, as posted and shown in the JSON view.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant with wire name `s` (exact, lower-case), if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s).ok_or_else(|| ParseEnumError {
                    field: $field,
                    value: preview(s),
                    expected: Self::NAMES,
                })
            }
        }
    };
}

wire_enum! {
    /// What kind of party performed the action.
    Source, "source" {
        /// A human using an application.
        User => "user",
        /// The system itself (a service acting on its own).
        System => "system",
        /// A third-party integration or API client.
        Integration => "integration",
        /// A scheduled job.
        Scheduled => "scheduled",
    }
}

wire_enum! {
    /// The outcome of the action.
    Status, "status" {
        /// The action completed.
        Success => "success",
        /// The action failed.
        Failure => "failure",
        /// The action was started and has not finished.
        Pending => "pending",
        /// The action was canceled before it completed.
        Canceled => "canceled",
        /// The action completed for some of its targets only.
        Partial => "partial",
    }
}

wire_enum! {
    /// How important the event is; ordered from least (`Debug`) to most (`Critical`)
    /// important, so `severity >= Severity::Warning` works.
    #[derive(PartialOrd, Ord)]
    Severity, "severity" {
        /// Diagnostic detail.
        Debug => "debug",
        /// Routine activity.
        Info => "info",
        /// Normal but significant.
        Notice => "notice",
        /// Something that deserves attention.
        Warning => "warning",
        /// An error.
        Error => "error",
        /// A critical condition.
        Critical => "critical",
    }
}

// ---------------------------------------------------------------------------------------
// Event, Change, StoredEvent
// ---------------------------------------------------------------------------------------

/// One changed field of the entity an event is about.
///
/// `old` and `new` hold the canonical JSON text (see [`canonical_json`]) of any JSON
/// value the client posted: `"\"pending\""`, `"42"`, `"{\"a\":1}"`. `None` means no value
/// (the client sent `null` or left the key out), e.g. `old` of a newly set field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct Change {
    /// The name of the changed field.
    pub field: String,
    /// The value before the change, as canonical JSON text.
    pub old: Option<String>,
    /// The value after the change, as canonical JSON text.
    pub new: Option<String>,
}

/// A validated audit event, as posted by a client (without `seq` and `received_at`).
///
/// Field order is the on-disk (bincode) order; do not reorder. Build one from client
/// JSON with [`parse_event`]; the JSON view is its `Serialize` impl.
#[derive(Debug, Clone, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Event {
    /// Client-supplied id (makes retries idempotent) or a generated UUID v7.
    pub id: String,
    /// Event time in UTC microseconds since the unix epoch, if the client gave one.
    pub timestamp: Option<i64>,
    /// What happened, e.g. `create`, `login_failed`.
    pub action: String,
    /// Who performed the action (free-form identifier).
    pub actor: Option<String>,
    /// The tenant (customer, organisation) the event belongs to.
    pub tenant: Option<String>,
    /// A grouping such as `auth` or `billing`.
    pub category: Option<String>,
    /// What kind of party performed the action.
    pub source: Option<Source>,
    /// The outcome.
    pub status: Option<Status>,
    /// How important the event is.
    pub severity: Option<Severity>,
    /// The kind of entity acted upon, e.g. `invoice`.
    pub entity_type: Option<String>,
    /// The id of the entity acted upon.
    pub entity_id: Option<String>,
    /// A human-readable name of the entity.
    pub entity_name: Option<String>,
    /// The id of the user involved.
    pub user_id: Option<String>,
    /// The display name of the user involved.
    pub user_name: Option<String>,
    /// The session the action happened in.
    pub session_id: Option<String>,
    /// An id tying related events (or a request) together.
    pub correlation_id: Option<String>,
    /// The client IP address, normalised to Rust's canonical text form.
    pub ip: Option<String>,
    /// The client's user agent string.
    pub user_agent: Option<String>,
    /// A risk score from 0 to 100.
    pub risk_score: Option<u8>,
    /// How long the action took, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Full-text description.
    pub description: Option<String>,
    /// The changed fields, in posted order.
    pub changes: Vec<Change>,
    /// Canonical JSON text of a JSON object with custom data.
    pub metadata: Option<String>,
}

/// An [`Event`] as stored in the log: with its global sequence number, ingest time and
/// (from format version 2 on) its provenance.
///
/// On disk (see `docs/FORMAT.md`) a record's payload is the bincode encoding of the tuple
/// `(seq, received_at, event)` in format version 1 and `(seq, received_at, event,
/// provenance)` in format version 2; [`decode_stored`] takes the segment's version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredEvent {
    /// Global, gap-free, monotonically increasing sequence number.
    pub seq: u64,
    /// When the server received the event, in UTC microseconds since the unix epoch.
    pub received_at: i64,
    /// The event itself.
    pub event: Event,
    /// Who handed the event to Stele; `None` for events stored in format version 1,
    /// which did not record it.
    pub provenance: Option<Provenance>,
}

/// `ingested_by` of events posted over HTTP to a daemon serving without API keys
/// (which it only does on a loopback address).
pub const INGESTED_BY_LOOPBACK: &str = "loopback";
/// `ingested_by` of events appended with `stele append`.
pub const INGESTED_BY_CLI: &str = "cli";
/// `ingested_by` of the events Stele writes itself (e.g. `audit_access`).
pub const INGESTED_BY_STELE: &str = "stele";
/// The `ingested_by` values that are not API key ids: no key may be configured with
/// one of these ids (compared ASCII case-insensitively), so a value always names one
/// kind of writer.
pub const INGESTED_BY_RESERVED: &[&str] =
    &[INGESTED_BY_LOOPBACK, INGESTED_BY_CLI, INGESTED_BY_STELE];
/// Maximum length of `ingested_by`, in bytes (the longest API key id).
pub const INGESTED_BY_BYTES_MAX: usize = crate::auth::KEY_ID_BYTES_MAX;
/// Maximum length of `client_addr`, in bytes (an IPv6 address takes at most 39).
pub const CLIENT_ADDR_BYTES_MAX: usize = 64;

/// Who handed an event to Stele: stamped by the server (or `stele append`) on every
/// event it stores, never taken from the posted JSON. Stored after the [`Event`] in
/// format version 2.
#[derive(Debug, Clone, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct Provenance {
    /// The id of the API key that posted the event; [`INGESTED_BY_LOOPBACK`] when the
    /// daemon serves without keys, [`INGESTED_BY_CLI`] for `stele append`,
    /// [`INGESTED_BY_STELE`] for Stele's own events.
    pub ingested_by: String,
    /// The IP address of the connection that posted it, in Rust's canonical text form
    /// (an IPv4-mapped IPv6 address as IPv4); `None` when no connection did (`cli`,
    /// `stele`).
    pub client_addr: Option<String>,
}

impl Provenance {
    /// An event posted with the API key `key_id` from `addr`.
    pub fn key(key_id: &str, addr: IpAddr) -> Provenance {
        Provenance {
            ingested_by: key_id.to_owned(),
            client_addr: Some(addr.to_canonical().to_string()),
        }
    }

    /// An event posted from `addr` to a daemon serving without API keys.
    pub fn loopback(addr: IpAddr) -> Provenance {
        Provenance::key(INGESTED_BY_LOOPBACK, addr)
    }

    /// An event appended with `stele append`.
    pub fn cli() -> Provenance {
        Provenance {
            ingested_by: INGESTED_BY_CLI.to_owned(),
            client_addr: None,
        }
    }

    /// An event Stele writes itself.
    pub fn stele() -> Provenance {
        Provenance {
            ingested_by: INGESTED_BY_STELE.to_owned(),
            client_addr: None,
        }
    }

    /// Whether both fields are within their limits (and `ingested_by` is not empty).
    pub fn check(&self) -> Result<(), String> {
        if self.ingested_by.is_empty() || self.ingested_by.len() > INGESTED_BY_BYTES_MAX {
            return Err(format!(
                "ingested_by must be 1 to {INGESTED_BY_BYTES_MAX} bytes, got {}",
                self.ingested_by.len()
            ));
        }
        match &self.client_addr {
            Some(a) if a.len() > CLIENT_ADDR_BYTES_MAX => Err(format!(
                "client_addr must be at most {CLIENT_ADDR_BYTES_MAX} bytes, got {}",
                a.len()
            )),
            _ => Ok(()),
        }
    }
}

/// A fresh event id: a UUID v7 (time-ordered) in hyphenated lower-case form.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// ---------------------------------------------------------------------------------------
// Binary encoding
// ---------------------------------------------------------------------------------------

/// The bincode configuration of the on-disk format: `bincode::config::standard()`
/// (little-endian, variable-length integers, no limit).
pub const fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// A bincode writer appending to a `Vec<u8>`; it never fails.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends `value` to `out`. Encoding the types of this module into a vector cannot
/// fail (no limit is configured, and no field has a fallible encoding).
fn encode_append<T: bincode::Encode>(value: &T, out: &mut Vec<u8>) {
    if let Err(err) = bincode::encode_into_writer(value, VecWriter(out), bincode_config()) {
        unreachable!("bincode encoding into a Vec is infallible: {err}");
    }
}

/// Appends the bincode encoding of `ev` to `out`.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) {
    encode_append(ev, out);
}

/// Appends the bincode encoding of `by` to `out`: what follows the event in a format
/// version 2 record.
pub fn encode_provenance(by: &Provenance, out: &mut Vec<u8>) {
    encode_append(by, out);
}

/// Appends the bincode encoding of the two leading fields of a [`StoredEvent`] (`seq`,
/// `received_at`) to `out`. Followed by [`encode_event`] and [`encode_provenance`], the
/// result is byte for byte a format version 2 record payload (without the provenance, a
/// version 1 payload).
pub fn encode_stored_prefix(seq: u64, received_at: i64, out: &mut Vec<u8>) {
    encode_append(&(seq, received_at), out);
}

/// The length of the bincode encoding of `ev`, in bytes, without allocating.
pub fn encoded_len(ev: &Event) -> usize {
    let mut writer = SizeWriter::default();
    match bincode::encode_into_writer(ev, &mut writer, bincode_config()) {
        Ok(()) => writer.bytes_written,
        // Unreachable (see `encode_append`); report "too large" rather than panic.
        Err(_) => usize::MAX,
    }
}

/// The bincode decode limit of a [`StoredEvent`]. bincode counts the *in-memory* size
/// it is about to allocate: string bytes (at most the encoded size), plus, while
/// `changes` is being decoded, `size_of::<Change>()` for every entry not yet decoded.
/// So the limit is the largest encoded event, plus room for the largest `changes`
/// vector, plus the largest provenance, plus slack for the `seq`/`received_at` prefix.
const DECODE_LIMIT_BYTES: usize = EVENT_BYTES_MAX
    + CHANGES_COUNT_MAX * std::mem::size_of::<Change>()
    + INGESTED_BY_BYTES_MAX
    + CLIENT_ADDR_BYTES_MAX
    + 64;

/// Decodes a [`StoredEvent`] from exactly `bytes`, a record payload of a segment of
/// format `version`: version 1 payloads are `(seq, received_at, event)` (the result has
/// no provenance), version 2 payloads `(seq, received_at, event, provenance)`.
///
/// Uses [`bincode_config`] with an allocation limit a little above [`EVENT_BYTES_MAX`]
/// (enough for any valid event), so corrupt length prefixes cannot trigger huge
/// allocations.
///
/// # Errors
///
/// A message if the bytes are not a valid encoding of that version (truncated, bad
/// UTF-8, unknown enum discriminant, over the limit), if bytes are left over after it,
/// or if the version is not one this build reads.
pub fn decode_stored(bytes: &[u8], version: u16) -> Result<StoredEvent, String> {
    let config = bincode_config().with_limit::<{ DECODE_LIMIT_BYTES }>();
    let failed = |err: bincode::error::DecodeError| format!("cannot decode stored event: {err}");
    let (stored, used) = match version {
        1 => {
            let ((seq, received_at, event), used) =
                bincode::decode_from_slice::<(u64, i64, Event), _>(bytes, config)
                    .map_err(failed)?;
            let stored = StoredEvent {
                seq,
                received_at,
                event,
                provenance: None,
            };
            (stored, used)
        }
        2 => {
            let ((seq, received_at, event, by), used) =
                bincode::decode_from_slice::<(u64, i64, Event, Provenance), _>(bytes, config)
                    .map_err(failed)?;
            let stored = StoredEvent {
                seq,
                received_at,
                event,
                provenance: Some(by),
            };
            (stored, used)
        }
        other => {
            return Err(format!(
                "cannot decode stored event: format version {other} is not one this build reads"
            ))
        }
    };
    if used != bytes.len() {
        return Err(format!(
            "cannot decode stored event: {} trailing bytes after {used} bytes of event",
            bytes.len() - used
        ));
    }
    Ok(stored)
}

/// Decodes only the leading `seq` of an encoded [`StoredEvent`] (a cheap plausibility
/// check for frame scanning; the rest of the bytes are not looked at).
///
/// # Errors
///
/// A message if `bytes` does not start with a valid varint.
pub fn decode_stored_seq(bytes: &[u8]) -> Result<u64, String> {
    bincode::decode_from_slice::<u64, _>(bytes, bincode_config())
        .map(|(seq, _)| seq)
        .map_err(|err| format!("cannot decode the seq of a stored event: {err}"))
}

// ---------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------

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
enum TimestampError {
    /// Not RFC 3339.
    Invalid(String),
    /// RFC 3339, but outside `TIMESTAMP_MIN_MICROS..=TIMESTAMP_MAX_MICROS`.
    OutOfRange,
}

fn parse_timestamp_checked(s: &str) -> Result<i64, TimestampError> {
    let dt = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|err| TimestampError::Invalid(err.to_string()))?;
    let us = dt.timestamp_micros();
    if (TIMESTAMP_MIN_MICROS..=TIMESTAMP_MAX_MICROS).contains(&us) {
        Ok(us)
    } else {
        Err(TimestampError::OutOfRange)
    }
}

const TIMESTAMP_RANGE_TEXT: &str = "0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z";

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

// ---------------------------------------------------------------------------------------
// Canonical JSON
// ---------------------------------------------------------------------------------------

/// Serializes a `Value` with object keys in sorted (byte) order, whatever map type
/// serde_json was built with.
struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Canonical(value))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Canonical(item))?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// An `io::Write` that refuses to grow beyond `limit` bytes.
struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            return Err(io::Error::other("size limit exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Canonical JSON text of `v`, or `None` if it would be longer than `limit` bytes
/// (serialization stops as soon as the limit is passed).
fn canonical_json_limited(v: &Value, limit: usize) -> Option<String> {
    let mut writer = LimitedWriter {
        buf: Vec::new(),
        limit,
    };
    serde_json::to_writer(&mut writer, &Canonical(v)).ok()?;
    String::from_utf8(writer.buf).ok()
}

/// The canonical JSON text of `v`: compact (no whitespace), object keys sorted by byte
/// order, numbers and string escapes as serde_json writes them. This is the form in
/// which `metadata` and change values are stored; parsing it and serializing it again
/// gives the same text.
pub fn canonical_json(v: &Value) -> String {
    // Serializing a `Value` into memory cannot fail without a limit.
    canonical_json_limited(v, usize::MAX).unwrap_or_default()
}

/// Whether `v` nests objects/arrays deeper than `max` levels (a top-level object or
/// array is level 1; scalars are level 0). Iterative, and stops at the first violation.
fn deeper_than(v: &Value, max: usize) -> bool {
    fn is_container(v: &&Value) -> bool {
        matches!(v, Value::Object(_) | Value::Array(_))
    }
    let mut stack: Vec<(&Value, usize)> = Vec::new();
    if is_container(&v) {
        stack.push((v, 1));
    }
    while let Some((value, depth)) = stack.pop() {
        if depth > max {
            return true;
        }
        match value {
            Value::Object(map) => {
                stack.extend(map.values().filter(is_container).map(|c| (c, depth + 1)));
            }
            Value::Array(items) => {
                stack.extend(items.iter().filter(is_container).map(|c| (c, depth + 1)));
            }
            _ => {}
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// Strict JSON input
// ---------------------------------------------------------------------------------------

/// Parses posted JSON text into a `Value`, refusing an object that names a key twice
/// (at any depth): the error names the key and serde_json adds its line and column.
///
/// `serde_json::from_slice::<Value>` keeps the last of repeated keys silently, so
/// `{"actor": "alice", "actor": "mallory"}` would be stored as mallory's event; and it
/// gives one private key (`$serde_json::private::RawValue`) a meaning, replacing
/// `{"$serde_json::private::RawValue": "[1]"}` by `[1]`: that key is refused here, since
/// a stored value holding it would be shown transformed. Numbers, strings and the
/// nesting limit are serde_json's own.
///
/// # Errors
///
/// serde_json's error for text that is not JSON, `duplicate key "..."`, or the reserved
/// key.
pub fn parse_json(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice::<StrictValue>(bytes).map(|v| v.0)
}

/// The one object key serde_json's `Value` gives a meaning to (with its `raw_value`
/// feature, which Stele uses): a `Value` holding it would be shown as something else.
const RESERVED_KEY: &str = "$serde_json::private::RawValue";

/// A `Value` deserialized by [`StrictVisitor`].
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// serde_json's `Value` visitor, without its special keys and with repeated keys refused.
struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d).map(|v: StrictValue| v.0)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde::de::Error as _;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == RESERVED_KEY {
                return Err(A::Error::custom(format_args!(
                    "the key \"{RESERVED_KEY}\" is reserved (serde_json, the JSON library \
                     Stele uses, reads it as an embedded JSON text)"
                )));
            }
            match out.entry(key) {
                serde_json::map::Entry::Occupied(seen) => {
                    return Err(A::Error::custom(format_args!(
                        "duplicate key {} (each key may appear once per object)",
                        Value::String(preview(seen.key()))
                    )));
                }
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(map.next_value::<StrictValue>()?.0);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

// ---------------------------------------------------------------------------------------
// JSON view
// ---------------------------------------------------------------------------------------

/// Stored canonical JSON text, serialized as the JSON value it encodes.
struct RawJson<'a>(&'a str);

impl Serialize for RawJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.0)
            .map_err(|err| S::Error::custom(format_args!("stored JSON value is invalid: {err}")))?;
        raw.serialize(serializer)
    }
}

/// Serializes as `{"field": .., "old": <json or null>, "new": <json or null>}`.
impl Serialize for Change {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("field", &self.field)?;
        map.serialize_entry("old", &self.old.as_deref().map(RawJson))?;
        map.serialize_entry("new", &self.new.as_deref().map(RawJson))?;
        map.end()
    }
}

impl Event {
    /// The number of map entries the JSON view writes after `id`.
    fn view_len(&self) -> usize {
        let strings = [
            &self.actor,
            &self.tenant,
            &self.category,
            &self.entity_type,
            &self.entity_id,
            &self.entity_name,
            &self.user_id,
            &self.user_name,
            &self.session_id,
            &self.correlation_id,
            &self.ip,
            &self.user_agent,
            &self.description,
            &self.metadata,
        ];
        1 + strings.iter().filter(|s| s.is_some()).count()
            + usize::from(self.timestamp.is_some())
            + usize::from(self.source.is_some())
            + usize::from(self.status.is_some())
            + usize::from(self.severity.is_some())
            + usize::from(self.risk_score.is_some())
            + usize::from(self.duration_ms.is_some())
            + usize::from(!self.changes.is_empty())
    }

    /// Writes every field after `id` into `map`, omitting absent ones.
    fn serialize_body<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        macro_rules! opt {
            ($name:literal, $value:expr) => {
                if let Some(value) = &$value {
                    map.serialize_entry($name, value)?;
                }
            };
        }
        if let Some(ts) = self.timestamp {
            map.serialize_entry("timestamp", &format_micros(ts))?;
        }
        map.serialize_entry("action", &self.action)?;
        opt!("actor", self.actor);
        opt!("tenant", self.tenant);
        opt!("category", self.category);
        opt!("source", self.source.map(Source::as_str));
        opt!("status", self.status.map(Status::as_str));
        opt!("severity", self.severity.map(Severity::as_str));
        opt!("entity_type", self.entity_type);
        opt!("entity_id", self.entity_id);
        opt!("entity_name", self.entity_name);
        opt!("user_id", self.user_id);
        opt!("user_name", self.user_name);
        opt!("session_id", self.session_id);
        opt!("correlation_id", self.correlation_id);
        opt!("ip", self.ip);
        opt!("user_agent", self.user_agent);
        opt!("risk_score", self.risk_score);
        opt!("duration_ms", self.duration_ms);
        opt!("description", self.description);
        if !self.changes.is_empty() {
            map.serialize_entry("changes", &self.changes)?;
        }
        opt!("metadata", self.metadata.as_deref().map(RawJson));
        Ok(())
    }
}

/// The client form: `id`, `timestamp` (RFC 3339 UTC with microseconds, if set), then every
/// set field under its posted name; `metadata` and change values as real JSON.
/// [`parse_event`] accepts this output and yields an equal `Event`.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + self.view_len()))?;
        map.serialize_entry("id", &self.id)?;
        self.serialize_body(&mut map)?;
        map.end()
    }
}

/// The JSON view of a stored event: `id`, `seq`, `received_at` (RFC 3339 UTC with
/// microseconds), `ingested_by` and `client_addr` (each omitted when absent: both for
/// events stored in format version 1, `client_addr` for `cli` and `stele` events), then
/// the fields of the [`Event`] view.
impl Serialize for StoredEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let by = self.provenance.as_ref();
        let addr = by.and_then(|b| b.client_addr.as_deref());
        let len = 3 + usize::from(by.is_some()) + usize::from(addr.is_some());
        let mut map = serializer.serialize_map(Some(len + self.event.view_len()))?;
        map.serialize_entry("id", &self.event.id)?;
        map.serialize_entry("seq", &self.seq)?;
        map.serialize_entry("received_at", &format_micros(self.received_at))?;
        if let Some(by) = by {
            map.serialize_entry("ingested_by", &by.ingested_by)?;
        }
        if let Some(addr) = addr {
            map.serialize_entry("client_addr", addr)?;
        }
        self.event.serialize_body(&mut map)?;
        map.end()
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// The kind of problem with one posted field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldErrorKind {
    /// A required field is absent or null.
    Missing,
    /// The JSON type is wrong (e.g. a number where a string is expected).
    WrongType,
    /// A string is longer than its limit.
    TooLong,
    /// The value has the right type but is not acceptable (bad enum name, bad IP, …).
    InvalidValue,
    /// A number or time is outside its range.
    OutOfRange,
    /// A JSON value, list or the whole event is bigger than its limit.
    TooLarge,
    /// A JSON value nests too deeply.
    TooDeep,
    /// The key is not part of the event model.
    UnknownField,
    /// The posted event is not a JSON object.
    NotAnObject,
    /// The value is reserved for the events Stele writes itself (see [`is_reserved_kind`]).
    Reserved,
}

impl FieldErrorKind {
    /// The snake_case name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            FieldErrorKind::Missing => "missing",
            FieldErrorKind::WrongType => "wrong_type",
            FieldErrorKind::TooLong => "too_long",
            FieldErrorKind::InvalidValue => "invalid_value",
            FieldErrorKind::OutOfRange => "out_of_range",
            FieldErrorKind::TooLarge => "too_large",
            FieldErrorKind::TooDeep => "too_deep",
            FieldErrorKind::UnknownField => "unknown_field",
            FieldErrorKind::NotAnObject => "not_an_object",
            FieldErrorKind::Reserved => "reserved",
        }
    }
}

impl fmt::Display for FieldErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one posted field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The path of the field: `"severity"`, `"changes[2].field"`, `"metadata"`; `""` for
    /// the event as a whole.
    pub field: String,
    /// The kind of problem.
    pub kind: FieldErrorKind,
    /// A sentence for humans naming the limit or the allowed values.
    pub message: String,
}

impl FieldError {
    /// A new error.
    pub fn new(field: impl Into<String>, kind: FieldErrorKind, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// At most this many bytes of a rejected value (or unknown key) are echoed in errors.
const PREVIEW_BYTES: usize = 64;

/// `s` cut to at most [`PREVIEW_BYTES`] bytes on a char boundary, with `…` if cut.
fn preview(s: &str) -> String {
    if s.len() <= PREVIEW_BYTES {
        return s.to_owned();
    }
    let mut end = PREVIEW_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The JSON type name of `v`, for messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value under `key`, treating JSON `null` as absent.
fn present<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// The character rules of a string field.
#[derive(Clone, Copy)]
enum Chars {
    /// Identifiers: non-empty; no NUL or other ASCII control characters except tab, line
    /// feed and carriage return.
    Ident,
    /// Free text: may be empty; no NUL.
    Text,
}

/// Whether `c` is forbidden in an identifier field.
fn forbidden_in_ident(c: char) -> bool {
    c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Collects errors for one event (or part of it).
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn push(&mut self, field: impl Into<String>, kind: FieldErrorKind, message: String) {
        self.errors.push(FieldError::new(field, kind, message));
    }

    /// A string field with a byte limit and character rules.
    fn string(&mut self, field: &str, v: &Value, max: usize, chars: Chars) -> Option<String> {
        let Value::String(s) = v else {
            self.push(
                field,
                FieldErrorKind::WrongType,
                format!("{field} must be a string, got {}", type_name(v)),
            );
            return None;
        };
        if s.len() > max {
            self.push(
                field,
                FieldErrorKind::TooLong,
                format!(
                    "{field} is {} bytes long; the limit is {max} bytes of UTF-8",
                    s.len()
                ),
            );
            return None;
        }
        match chars {
            Chars::Ident => {
                if s.is_empty() {
                    self.push(
                        field,
                        FieldErrorKind::InvalidValue,
                        format!("{field} must not be an empty string"),
                    );
                    return None;
                }
                if let Some((at, c)) = s.char_indices().find(|&(_, c)| forbidden_in_ident(c)) {
                    self.push(
                        field,
                        FieldErrorKind::InvalidValue,
                        format!(
                            "{field} contains the control character U+{:04X} at byte {at}; \
                             control characters other than tab, line feed and carriage \
                             return are not allowed",
                            u32::from(c)
                        ),
                    );
                    return None;
                }
            }
            Chars::Text => {
                if let Some(at) = s.find('\0') {
                    self.push(
                        field,
                        FieldErrorKind::InvalidValue,
                        format!("{field} contains a NUL character (U+0000) at byte {at}, which is not allowed"),
                    );
                    return None;
                }
            }
        }
        Some(s.clone())
    }

    /// Refuses a category or action reserved for Stele's own events.
    fn reserved(&mut self, field: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| is_reserved_kind(v)) {
            self.push(
                field,
                FieldErrorKind::Reserved,
                format!(
                    "{field} \"{}\" is reserved for the events Stele writes itself \
                     (\"{AUDIT_ACCESS_CATEGORY}\" and anything starting with \
                     \"{RESERVED_KIND_PREFIX}\", in any letter case); use another {field}",
                    preview(v)
                ),
            );
        }
    }

    /// An optional string field of the top-level object.
    fn opt_string(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
        max: usize,
        chars: Chars,
    ) -> Option<String> {
        present(obj, field).and_then(|v| self.string(field, v, max, chars))
    }

    /// The `id` field: non-empty printable ASCII without whitespace.
    fn id(&mut self, v: &Value) -> Option<String> {
        let Value::String(s) = v else {
            self.push(
                "id",
                FieldErrorKind::WrongType,
                format!("id must be a string, got {}", type_name(v)),
            );
            return None;
        };
        if s.len() > ID_BYTES_MAX {
            self.push(
                "id",
                FieldErrorKind::TooLong,
                format!(
                    "id is {} bytes long; the limit is {ID_BYTES_MAX} bytes",
                    s.len()
                ),
            );
            return None;
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
            self.push(
                "id",
                FieldErrorKind::InvalidValue,
                format!(
                    "id \"{}\" is invalid: it must be 1 to {ID_BYTES_MAX} printable ASCII \
                     characters without spaces (omit it to have one generated)",
                    preview(s)
                ),
            );
            return None;
        }
        Some(s.clone())
    }

    /// An enum field.
    fn enumeration<E>(
        &mut self,
        field: &str,
        v: &Value,
        names: &[&str],
        parse: fn(&str) -> Option<E>,
    ) -> Option<E> {
        let allowed = names.join(", ");
        let Value::String(s) = v else {
            self.push(
                field,
                FieldErrorKind::WrongType,
                format!(
                    "{field} must be a string, one of: {allowed}; got {}",
                    type_name(v)
                ),
            );
            return None;
        };
        let parsed = parse(s);
        if parsed.is_none() {
            self.push(
                field,
                FieldErrorKind::InvalidValue,
                format!(
                    "{field} \"{}\" is not allowed; allowed values are: {allowed}",
                    preview(s)
                ),
            );
        }
        parsed
    }

    /// A non-negative integer field with an upper bound. Integral floats (`5.0`, `1e2`)
    /// are accepted.
    fn unsigned(&mut self, field: &str, v: &Value, max: u64) -> Option<u64> {
        let expect = format!("{field} must be an integer from 0 to {max}");
        let Value::Number(n) = v else {
            self.push(
                field,
                FieldErrorKind::WrongType,
                format!("{expect}, got {}", type_name(v)),
            );
            return None;
        };
        let out_of_range = |this: &mut Self| {
            this.push(
                field,
                FieldErrorKind::OutOfRange,
                format!("{expect}, got {n}"),
            );
            None
        };
        if let Some(u) = n.as_u64() {
            return if u <= max {
                Some(u)
            } else {
                out_of_range(self)
            };
        }
        if n.is_i64() {
            // Only negative integers reach here.
            return out_of_range(self);
        }
        match n.as_f64() {
            Some(f) if f.is_finite() && f.fract() == 0.0 => {
                // `max as f64 + 1.0` is exact for small bounds and rounds to 2^64 for
                // u64::MAX, so `f` below it always converts without saturating.
                #[allow(clippy::cast_precision_loss)]
                let limit = max as f64 + 1.0;
                if f < 0.0 || f >= limit {
                    out_of_range(self)
                } else {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Some(f as u64)
                }
            }
            _ => {
                self.push(
                    field,
                    FieldErrorKind::WrongType,
                    format!("{expect}, got the non-integer {n}"),
                );
                None
            }
        }
    }

    /// A JSON value stored as canonical text, with a depth and a size limit.
    fn json_value(&mut self, field: &str, v: &Value, max_bytes: usize) -> Option<String> {
        if deeper_than(v, METADATA_DEPTH_MAX) {
            self.push(
                field,
                FieldErrorKind::TooDeep,
                format!(
                    "{field} nests objects and arrays more than {METADATA_DEPTH_MAX} levels deep \
                     (the outermost object or array is level 1)"
                ),
            );
            return None;
        }
        let text = canonical_json_limited(v, max_bytes);
        if text.is_none() {
            self.push(
                field,
                FieldErrorKind::TooLarge,
                format!(
                    "{field} is larger than {max_bytes} bytes when serialized as compact JSON; \
                     the limit is {max_bytes} bytes"
                ),
            );
        }
        text
    }

    /// `metadata`: a JSON object.
    fn metadata(&mut self, v: &Value) -> Option<String> {
        if !v.is_object() {
            self.push(
                "metadata",
                FieldErrorKind::WrongType,
                format!(
                    "metadata must be a JSON object (put custom data under keys), got {}",
                    type_name(v)
                ),
            );
            return None;
        }
        self.json_value("metadata", v, METADATA_BYTES_MAX)
    }

    /// `changes`: an array of `{field, old, new}` objects.
    fn changes(&mut self, v: &Value) -> Vec<Change> {
        let Value::Array(items) = v else {
            self.push(
                "changes",
                FieldErrorKind::WrongType,
                format!(
                    "changes must be an array of {{\"field\", \"old\", \"new\"}} objects, got {}",
                    type_name(v)
                ),
            );
            return Vec::new();
        };
        if items.len() > CHANGES_COUNT_MAX {
            self.push(
                "changes",
                FieldErrorKind::TooLarge,
                format!(
                    "changes has {} entries; the limit is {CHANGES_COUNT_MAX}",
                    items.len()
                ),
            );
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(change) = self.change(i, item) {
                out.push(change);
            }
        }
        out
    }

    /// One entry of `changes`.
    fn change(&mut self, i: usize, v: &Value) -> Option<Change> {
        let path = format!("changes[{i}]");
        let Value::Object(obj) = v else {
            self.push(
                path.clone(),
                FieldErrorKind::WrongType,
                format!(
                    "{path} must be an object with a \"field\" string and optional \"old\" and \
                     \"new\" values, got {}",
                    type_name(v)
                ),
            );
            return None;
        };
        let before = self.errors.len();
        let field_path = format!("{path}.field");
        let field = match present(obj, "field") {
            Some(f) => self.string(&field_path, f, SHORT_FIELD_BYTES_MAX, Chars::Ident),
            None => {
                self.push(
                    field_path.clone(),
                    FieldErrorKind::Missing,
                    format!("{field_path} is required: the name of the changed field (a non-empty string of at most {SHORT_FIELD_BYTES_MAX} bytes)"),
                );
                None
            }
        };
        let value = |this: &mut Self, key: &str| {
            present(obj, key)
                .and_then(|v| this.json_value(&format!("{path}.{key}"), v, CHANGE_VALUE_BYTES_MAX))
        };
        let old = value(self, "old");
        let new = value(self, "new");
        for key in obj.keys() {
            if !CHANGE_FIELD_NAMES.contains(&key.as_str()) {
                let shown = preview(key);
                self.push(
                    format!("{path}.{shown}"),
                    FieldErrorKind::UnknownField,
                    format!(
                        "unknown field \"{shown}\" in {path}; a change has only \"field\", \
                         \"old\" and \"new\""
                    ),
                );
            }
        }
        if self.errors.len() != before {
            return None;
        }
        field.map(|field| Change { field, old, new })
    }
}

/// The category of the events Stele writes about reads of the log (`crate::access`).
pub const AUDIT_ACCESS_CATEGORY: &str = "audit_access";
/// Categories and actions starting with this prefix are reserved for the findings Stele
/// writes itself (detections, alerts), now and in later versions.
pub const RESERVED_KIND_PREFIX: &str = "stele.";

/// Whether a category or action is reserved for the events Stele writes itself:
/// `audit_access`, or anything starting with `stele.` (both compared ASCII
/// case-insensitively, so a look-alike cannot pass for Stele's own either). Clients
/// cannot post these ([`parse_event`] refuses them); Stele writes them through
/// [`parse_stele_event`].
///
/// The actions of `audit_access` events are route names (`list`, `get`, `search`, …):
/// ordinary words clients use for their own events, so they are not reserved; the
/// category is what marks Stele's records.
pub fn is_reserved_kind(s: &str) -> bool {
    s.eq_ignore_ascii_case(AUDIT_ACCESS_CATEGORY)
        || s.get(..RESERVED_KIND_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_KIND_PREFIX))
}

/// Validates an event a client posted and converts it to an [`Event`].
///
/// Collects every problem, one [`FieldError`] per bad field, instead of stopping at the
/// first. `new_id` is called (once) only if the event is valid and has no `id`. JSON
/// `null` for an optional field is the same as leaving it out. Never panics.
///
/// Rules, in short: the event is an object; `action` is a required non-empty string;
/// at least one of `actor`, `user_id`, `source` is present; every key is a known field
/// (custom data goes under `metadata`); strings are within their byte limits (see the
/// `*_MAX` constants) and free of NUL — identifier fields also of other ASCII control
/// characters except tab, LF and CR, and must not be empty; enums use their lower-case
/// names; `timestamp` is an RFC 3339 string; `risk_score` is an integer 0–100;
/// `duration_ms` a non-negative integer; `ip` an IPv4 or IPv6 address (stored in
/// canonical form); `metadata` an object; `changes` an array of `{field, old, new}`;
/// and the encoded event fits in [`EVENT_BYTES_MAX`] bytes.
///
/// # Errors
///
/// Every problem found, in field order (unknown keys and the actor/user_id/source rule
/// last). The whole-event size check runs only once every field is valid. A `category`
/// or `action` reserved for Stele's own events ([`is_reserved_kind`]) is an error of kind
/// [`FieldErrorKind::Reserved`].
pub fn parse_event(
    v: &serde_json::Value,
    new_id: impl FnOnce() -> String,
) -> Result<Event, Vec<FieldError>> {
    parse(v, new_id, true)
}

/// Validates an event Stele writes itself (e.g. an `audit_access` record): the same
/// rules as [`parse_event`], except that reserved categories and actions are allowed.
/// Never call it on what a client sent.
pub fn parse_stele_event(
    v: &serde_json::Value,
    new_id: impl FnOnce() -> String,
) -> Result<Event, Vec<FieldError>> {
    parse(v, new_id, false)
}

fn parse(
    v: &serde_json::Value,
    new_id: impl FnOnce() -> String,
    client: bool,
) -> Result<Event, Vec<FieldError>> {
    let Value::Object(obj) = v else {
        return Err(vec![FieldError::new(
            "",
            FieldErrorKind::NotAnObject,
            format!("an event must be a JSON object, got {}", type_name(v)),
        )]);
    };
    let mut c = Checker { errors: Vec::new() };

    let id = present(obj, "id").and_then(|v| c.id(v));
    let timestamp = present(obj, "timestamp").and_then(|v| match v {
        Value::String(s) => match parse_timestamp_checked(s) {
            Ok(us) => Some(us),
            Err(TimestampError::Invalid(why)) => {
                c.push(
                    "timestamp",
                    FieldErrorKind::InvalidValue,
                    format!(
                        "timestamp \"{}\" is not an RFC 3339 timestamp such as \
                         2026-11-23T10:00:00Z or 2026-11-23T11:00:00.123456+01:00 ({why})",
                        preview(s)
                    ),
                );
                None
            }
            Err(TimestampError::OutOfRange) => {
                c.push(
                    "timestamp",
                    FieldErrorKind::OutOfRange,
                    format!(
                        "timestamp \"{}\" is outside the supported range {TIMESTAMP_RANGE_TEXT}",
                        preview(s)
                    ),
                );
                None
            }
        },
        other => {
            c.push(
                "timestamp",
                FieldErrorKind::WrongType,
                format!(
                    "timestamp must be an RFC 3339 string such as 2026-11-23T10:00:00Z, got {}",
                    type_name(other)
                ),
            );
            None
        }
    });
    let action = match present(obj, "action") {
        Some(v) => c.string("action", v, SHORT_FIELD_BYTES_MAX, Chars::Ident),
        None => {
            c.push(
                "action",
                FieldErrorKind::Missing,
                format!(
                    "action is required: a non-empty string of at most {SHORT_FIELD_BYTES_MAX} \
                     bytes such as \"create\", \"update\" or \"login\""
                ),
            );
            None
        }
    };
    if client {
        c.reserved("action", action.as_deref());
    }
    let short = |c: &mut Checker, field: &str| {
        c.opt_string(obj, field, SHORT_FIELD_BYTES_MAX, Chars::Ident)
    };
    let actor = short(&mut c, "actor");
    let tenant = short(&mut c, "tenant");
    let category = short(&mut c, "category");
    if client {
        c.reserved("category", category.as_deref());
    }
    let source = present(obj, "source")
        .and_then(|v| c.enumeration("source", v, Source::NAMES, Source::parse));
    let status = present(obj, "status")
        .and_then(|v| c.enumeration("status", v, Status::NAMES, Status::parse));
    let severity = present(obj, "severity")
        .and_then(|v| c.enumeration("severity", v, Severity::NAMES, Severity::parse));
    let entity_type = short(&mut c, "entity_type");
    let entity_id = short(&mut c, "entity_id");
    let entity_name = c.opt_string(obj, "entity_name", ENTITY_NAME_BYTES_MAX, Chars::Text);
    let user_id = short(&mut c, "user_id");
    let user_name = short(&mut c, "user_name");
    let session_id = short(&mut c, "session_id");
    let correlation_id = short(&mut c, "correlation_id");
    let ip = short(&mut c, "ip").and_then(|s| match s.parse::<IpAddr>() {
        Ok(addr) => Some(addr.to_string()),
        Err(_) => {
            c.push(
                "ip",
                FieldErrorKind::InvalidValue,
                format!(
                    "ip \"{}\" is not an IPv4 or IPv6 address such as 203.0.113.7 or 2001:db8::1",
                    preview(&s)
                ),
            );
            None
        }
    });
    let user_agent = c.opt_string(obj, "user_agent", USER_AGENT_BYTES_MAX, Chars::Text);
    let risk_score = present(obj, "risk_score")
        .and_then(|v| c.unsigned("risk_score", v, 100))
        .and_then(|n| u8::try_from(n).ok());
    let duration_ms =
        present(obj, "duration_ms").and_then(|v| c.unsigned("duration_ms", v, u64::MAX));
    let description = c.opt_string(obj, "description", DESCRIPTION_BYTES_MAX, Chars::Text);
    let changes = present(obj, "changes").map_or_else(Vec::new, |v| c.changes(v));
    let metadata = present(obj, "metadata").and_then(|v| c.metadata(v));

    for key in obj.keys() {
        if FIELD_NAMES.contains(&key.as_str()) {
            continue;
        }
        let shown = preview(key);
        let message = match key.as_str() {
            k if STORED_FIELD_NAMES.contains(&k) || PROVENANCE_FIELD_NAMES.contains(&k) => {
                format!("{key} is assigned by the server and cannot be posted")
            }
            _ => format!(
                "unknown field \"{shown}\"; put custom data under \"metadata\" (a JSON object)"
            ),
        };
        c.push(shown, FieldErrorKind::UnknownField, message);
    }

    if ["actor", "user_id", "source"]
        .iter()
        .all(|key| present(obj, key).is_none())
    {
        c.push(
            "actor",
            FieldErrorKind::Missing,
            "one of actor, user_id or source is required to say who or what performed the action"
                .to_owned(),
        );
    }

    let action = match action {
        Some(action) if c.errors.is_empty() => action,
        _ => return Err(c.errors),
    };
    let event = Event {
        id: id.unwrap_or_else(new_id),
        timestamp,
        action,
        actor,
        tenant,
        category,
        source,
        status,
        severity,
        entity_type,
        entity_id,
        entity_name,
        user_id,
        user_name,
        session_id,
        correlation_id,
        ip,
        user_agent,
        risk_score,
        duration_ms,
        description,
        changes,
        metadata,
    };
    let len = encoded_len(&event);
    if len > EVENT_BYTES_MAX {
        return Err(vec![FieldError::new(
            "",
            FieldErrorKind::TooLarge,
            format!(
                "the event is {len} bytes when encoded; the limit is {EVENT_BYTES_MAX} bytes \
                 (shorten description, metadata or changes)"
            ),
        )]);
    }
    Ok(event)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_id() -> String {
        panic!("new_id must not be called")
    }

    fn ok(v: Value) -> Event {
        match parse_event(&v, no_id) {
            Ok(ev) => ev,
            Err(errors) => panic!("unexpected errors: {errors:#?}"),
        }
    }

    /// Found by the `event_json` fuzz target: an integer beyond u64 in
    /// metadata is kept as a float, and serde_json's default (fast,
    /// not always correctly rounded) float parser gave 18446747007145395615
    /// a different value than a re-parse of its own output, so an event's
    /// JSON view did not validate back to the same event. `float_roundtrip`
    /// makes canonical metadata a fixed point.
    #[test]
    fn fuzz_metadata_integers_beyond_u64_round_trip_through_the_json_view() {
        let v: Value = serde_json::from_str(
            r#"{"id": "e", "action": "a", "actor": "b", "metadata":
                {"n": 18446747007145395615, "m": 18446747007439551615, "f": 0.30000000000000004}}"#,
        )
        .unwrap();
        let ev = ok(v);
        let view = serde_json::to_value(&ev).unwrap();
        assert_eq!(ok(view), ev);
    }

    fn errs(v: Value) -> Vec<FieldError> {
        match parse_event(&v, || "generated".to_owned()) {
            Ok(ev) => panic!("expected errors, got {ev:?}"),
            Err(errors) => errors,
        }
    }

    /// The single error of `v`, which must be of `kind` on `field`.
    fn one_err(v: Value, field: &str, kind: FieldErrorKind) -> FieldError {
        let errors = errs(v);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].field, field, "{errors:#?}");
        assert_eq!(errors[0].kind, kind, "{errors:#?}");
        errors.into_iter().next().unwrap()
    }

    fn minimal() -> Value {
        json!({"id": "e-1", "action": "login", "actor": "alice"})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = minimal();
        v[key] = value;
        v
    }

    fn full() -> Value {
        json!({
            "id": "evt_0001",
            "timestamp": "2026-11-23T11:00:00.000001+01:00",
            "action": "update",
            "actor": "alice@acme.example",
            "tenant": "acme",
            "category": "billing",
            "source": "user",
            "status": "success",
            "severity": "notice",
            "entity_type": "invoice",
            "entity_id": "55",
            "entity_name": "INV-2026-00055",
            "user_id": "u-17",
            "user_name": "Alice Smith",
            "session_id": "sess_9f2c",
            "correlation_id": "req-42",
            "ip": "2001:DB8:0:0::1",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "risk_score": 12,
            "duration_ms": 87,
            "description": "Invoice marked as paid\nsecond line",
            "changes": [
                {"field": "status", "old": "pending", "new": "paid"},
                {"field": "amount", "old": 129.99, "new": {"value": 135, "currency": "EUR"}},
                {"field": "note", "new": null}
            ],
            "metadata": {"z": [1, 2, {"b": null, "a": true}], "a": "x"}
        })
    }

    #[test]
    fn round_trip_json_event_bincode_stored_json() {
        let ev = ok(full());
        assert_eq!(
            ev.timestamp,
            Some(parse_timestamp("2026-11-23T10:00:00.000001Z").unwrap())
        );
        assert_eq!(ev.ip.as_deref(), Some("2001:db8::1"));
        assert_eq!(ev.changes[0].old.as_deref(), Some("\"pending\""));
        assert_eq!(ev.changes[1].old.as_deref(), Some("129.99"));
        assert_eq!(
            ev.changes[1].new.as_deref(),
            Some(r#"{"currency":"EUR","value":135}"#)
        );
        assert_eq!(ev.changes[2].new, None);
        assert_eq!(
            ev.metadata.as_deref(),
            Some(r#"{"a":"x","z":[1,2,{"a":true,"b":null}]}"#)
        );

        let received_at = parse_timestamp("2026-11-23T10:00:01.5Z").unwrap();
        let mut bytes = Vec::new();
        encode_stored_prefix(7, received_at, &mut bytes);
        encode_event(&ev, &mut bytes);
        let stored = decode_stored(&bytes, 1).unwrap();
        assert_eq!(stored.seq, 7);
        assert_eq!(stored.received_at, received_at);
        assert_eq!(stored.event, ev);
        assert_eq!(stored.provenance, None);

        let text = serde_json::to_string(&stored).unwrap();
        assert!(
            text.starts_with(
                r#"{"id":"evt_0001","seq":7,"received_at":"2026-11-23T10:00:01.500000Z","timestamp":"2026-11-23T10:00:00.000001Z","action":"update""#
            ),
            "{text}"
        );
        let view: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            view["metadata"],
            json!({"z": [1, 2, {"b": null, "a": true}], "a": "x"})
        );
        assert_eq!(
            view["changes"],
            json!([
                {"field": "status", "old": "pending", "new": "paid"},
                {"field": "amount", "old": 129.99, "new": {"value": 135, "currency": "EUR"}},
                {"field": "note", "old": null, "new": null}
            ])
        );
        assert_eq!(view["ip"], "2001:db8::1");
        assert_eq!(view["risk_score"], 12);

        // The client form (Event's view) parses back into the same event.
        let client = serde_json::to_value(&ev).unwrap();
        assert!(client.get("seq").is_none());
        assert_eq!(ok(client.clone()), ev);
        assert_eq!(serde_json::to_value(ok(client.clone())).unwrap(), client);
        // to_value and to_string agree.
        assert_eq!(
            serde_json::from_str::<Value>(&serde_json::to_string(&ev).unwrap()).unwrap(),
            client
        );
    }

    #[test]
    fn view_omits_absent_fields() {
        let ev = ok(minimal());
        let mut stored = StoredEvent {
            seq: 1,
            received_at: 0,
            event: ev,
            provenance: None,
        };
        assert_eq!(
            serde_json::to_string(&stored).unwrap(),
            r#"{"id":"e-1","seq":1,"received_at":"1970-01-01T00:00:00.000000Z","action":"login","actor":"alice"}"#
        );
        stored.provenance = Some(Provenance::cli());
        assert_eq!(
            serde_json::to_string(&stored).unwrap(),
            r#"{"id":"e-1","seq":1,"received_at":"1970-01-01T00:00:00.000000Z","ingested_by":"cli","action":"login","actor":"alice"}"#
        );
        stored.provenance = Some(Provenance::key(
            "ingest-1",
            "::ffff:203.0.113.7".parse().unwrap(),
        ));
        let view = serde_json::to_value(&stored).unwrap();
        assert_eq!(view["ingested_by"], "ingest-1");
        assert_eq!(
            view["client_addr"], "203.0.113.7",
            "IPv4-mapped shown as IPv4"
        );
    }

    #[test]
    fn stored_prefix_plus_event_plus_provenance_equals_the_tuple_encoding() {
        let by = [
            Provenance::cli(),
            Provenance::stele(),
            Provenance::loopback("::1".parse().unwrap()),
            Provenance::key("k.1_-", "2001:db8::7".parse().unwrap()),
        ];
        for ev in [ok(full()), ok(minimal()), Event::default()] {
            for (i, (seq, received_at)) in [(0, 0), (1, -1), (u64::MAX, i64::MIN), (300, i64::MAX)]
                .into_iter()
                .enumerate()
            {
                let by = &by[i];
                // Version 1: (seq, received_at, event).
                let v1 = bincode::encode_to_vec((seq, received_at, &ev), bincode_config()).unwrap();
                let mut parts = Vec::new();
                encode_stored_prefix(seq, received_at, &mut parts);
                let prefix_len = parts.len();
                encode_event(&ev, &mut parts);
                assert_eq!(parts, v1);
                assert_eq!(parts.len() - prefix_len, encoded_len(&ev));
                let stored = StoredEvent {
                    seq,
                    received_at,
                    event: ev.clone(),
                    provenance: None,
                };
                assert_eq!(decode_stored(&v1, 1).unwrap(), stored);
                assert_eq!(decode_stored_seq(&v1), Ok(seq));
                // Version 2: (seq, received_at, event, provenance).
                let v2 =
                    bincode::encode_to_vec((seq, received_at, &ev, by), bincode_config()).unwrap();
                encode_provenance(by, &mut parts);
                assert_eq!(parts, v2);
                let stored = StoredEvent {
                    provenance: Some(by.clone()),
                    ..stored
                };
                assert_eq!(decode_stored(&v2, 2).unwrap(), stored);
                assert_eq!(decode_stored_seq(&v2), Ok(seq));
                // Each version consumes its payload exactly: the other one's bytes
                // never decode as it (a v1 payload is a v2 payload cut short, a v2
                // payload a v1 one with trailing bytes).
                assert!(decode_stored(&v1, 2).is_err());
                assert!(decode_stored(&v2, 1).unwrap_err().contains("trailing"));
                assert!(decode_stored(&v2, 3).unwrap_err().contains("version 3"));
            }
        }
    }

    #[test]
    fn provenance_bytes_are_two_strings_after_the_event() {
        // ingested_by: varint length ++ UTF-8; client_addr: Option tag ++ string.
        let mut out = Vec::new();
        encode_provenance(&Provenance::cli(), &mut out);
        assert_eq!(out, b"\x03cli\x00");
        out.clear();
        encode_provenance(
            &Provenance::key("k", "127.0.0.1".parse().unwrap()),
            &mut out,
        );
        assert_eq!(out, b"\x01k\x01\x09127.0.0.1");
        assert!(Provenance::cli().check().is_ok());
        let long = Provenance {
            ingested_by: "k".repeat(INGESTED_BY_BYTES_MAX + 1),
            client_addr: None,
        };
        assert!(long.check().is_err());
    }

    /// A valid event whose in-memory claims while decoding exceed its encoded size:
    /// nearly `EVENT_BYTES_MAX` of text before many tiny changes.
    #[test]
    fn largest_valid_events_decode() {
        let big = "v".repeat(CHANGE_VALUE_BYTES_MAX - 2);
        let mut changes: Vec<Value> = (0..5)
            .map(|i| json!({"field": format!("f{i}"), "old": big, "new": big}))
            .collect();
        changes.extend((5..CHANGES_COUNT_MAX).map(|_| json!({"field": "a"})));
        let mut v = with("changes", json!(changes));
        v["description"] = json!("d".repeat(DESCRIPTION_BYTES_MAX));
        v["entity_name"] = json!("n".repeat(ENTITY_NAME_BYTES_MAX));
        v["user_agent"] = json!("u".repeat(USER_AGENT_BYTES_MAX));
        let mut ev = ok(v.clone());
        // Grow the largest change value until the event is just under the limit.
        let room = EVENT_BYTES_MAX - encoded_len(&ev);
        let grown = "v".repeat(CHANGE_VALUE_BYTES_MAX - 2 - 16 + room.min(16));
        v["changes"][4]["new"] = json!(grown);
        v["metadata"] = json!({ "k": "m".repeat(EVENT_BYTES_MAX - encoded_len(&ev) - 48) });
        ev = ok(v);
        let len = encoded_len(&ev);
        assert!(
            len > EVENT_BYTES_MAX - 64 && len <= EVENT_BYTES_MAX,
            "{len}"
        );
        let mut bytes = Vec::new();
        encode_stored_prefix(u64::MAX, i64::MIN, &mut bytes);
        encode_event(&ev, &mut bytes);
        encode_provenance(
            &Provenance::key(
                &"k".repeat(INGESTED_BY_BYTES_MAX),
                "1111:2222:3333:4444:5555:6666:7777:8888".parse().unwrap(),
            ),
            &mut bytes,
        );
        match decode_stored(&bytes, 2) {
            Ok(stored) => assert!(stored.event == ev, "decoded event differs"),
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn decode_stored_rejects_trailing_truncated_and_garbage() {
        let mut bytes = Vec::new();
        encode_stored_prefix(1, 2, &mut bytes);
        encode_event(&ok(full()), &mut bytes);
        let mut v2 = bytes.clone();
        encode_provenance(&Provenance::cli(), &mut v2);
        let mut longer = v2.clone();
        longer.push(0);
        assert!(decode_stored(&longer, 2).unwrap_err().contains("trailing"));
        for cut in 0..v2.len() {
            assert!(decode_stored(&v2[..cut], 2).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_stored(&longer, 1).unwrap_err().contains("trailing"));
        assert_eq!(decode_stored_seq(&longer), Ok(1));
        assert!(decode_stored_seq(&[]).is_err());
        assert!(decode_stored_seq(&[253, 1]).is_err());
        for cut in 0..bytes.len() {
            assert!(decode_stored(&bytes[..cut], 1).is_err());
        }
        // A huge length prefix must fail on the limit, not allocate.
        let mut huge = Vec::new();
        encode_stored_prefix(1, 2, &mut huge);
        huge.push(253); // varint marker: a u64 follows
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_stored(&huge, 1).is_err());
        assert!(decode_stored(&huge, 2).is_err());
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..200 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            let _ = decode_stored(&junk, 1);
            let _ = decode_stored(&junk, 2);
        }
    }

    #[test]
    fn reserved_kinds_are_refused_from_clients_and_allowed_for_stele() {
        for (field, value) in [
            ("category", "audit_access"),
            ("category", "Audit_Access"),
            ("category", "stele.finding"),
            ("action", "stele.alert"),
            ("action", "STELE.x"),
            ("action", "audit_access"),
        ] {
            let v = with(field, json!(value));
            let e = one_err(v.clone(), field, FieldErrorKind::Reserved);
            assert!(e.message.contains("reserved"), "{e}");
            assert_eq!(e.kind.as_str(), "reserved");
            let ev = parse_stele_event(&v, no_id).unwrap();
            assert!(ev.action == value || ev.category.as_deref() == Some(value));
        }
        // Generic words (the actions of audit_access records) and look-alikes
        // that are not the reserved names stay the clients'.
        for (field, value) in [
            ("action", "search"),
            ("action", "get"),
            ("category", "audit"),
            ("category", "audit_access_log"),
            ("category", "stele"),
            ("category", "my.stele.x"),
            ("category", "ştele.x"),
        ] {
            ok(with(field, json!(value)));
        }
        assert!(is_reserved_kind("stele."));
        assert!(!is_reserved_kind("stel"));
    }

    #[test]
    fn server_fields_are_refused_with_their_own_message() {
        for key in ["seq", "received_at", "ingested_by", "client_addr"] {
            let e = one_err(with(key, json!("x")), key, FieldErrorKind::UnknownField);
            assert!(e.message.contains("assigned by the server"), "{e}");
        }
    }

    #[test]
    fn error_missing() {
        let e = one_err(json!({"actor": "a"}), "action", FieldErrorKind::Missing);
        assert!(e.message.contains("required"));
        let e = one_err(
            json!({"action": "x", "actor": null}),
            "actor",
            FieldErrorKind::Missing,
        );
        assert!(e.message.contains("actor, user_id or source"), "{e}");
        ok(json!({"id": "e", "action": "x", "user_id": "u-1"}));
        ok(json!({"id": "e", "action": "x", "source": "system"}));
        one_err(
            with("changes", json!([{"old": 1}])),
            "changes[0].field",
            FieldErrorKind::Missing,
        );
    }

    #[test]
    fn error_wrong_type() {
        one_err(with("actor", json!(5)), "actor", FieldErrorKind::WrongType);
        one_err(
            with("timestamp", json!(1_700_000_000)),
            "timestamp",
            FieldErrorKind::WrongType,
        );
        one_err(
            with("metadata", json!([1])),
            "metadata",
            FieldErrorKind::WrongType,
        );
        one_err(
            with("changes", json!({})),
            "changes",
            FieldErrorKind::WrongType,
        );
        one_err(
            with("changes", json!([1])),
            "changes[0]",
            FieldErrorKind::WrongType,
        );
        one_err(
            with("risk_score", json!(5.5)),
            "risk_score",
            FieldErrorKind::WrongType,
        );
        one_err(
            with("risk_score", json!("5")),
            "risk_score",
            FieldErrorKind::WrongType,
        );
        one_err(
            with("severity", json!(3)),
            "severity",
            FieldErrorKind::WrongType,
        );
        one_err(with("id", json!(3)), "id", FieldErrorKind::WrongType);
    }

    #[test]
    fn error_too_long() {
        let e = one_err(
            with("actor", json!("a".repeat(SHORT_FIELD_BYTES_MAX + 1))),
            "actor",
            FieldErrorKind::TooLong,
        );
        assert!(
            e.message.contains("257") && e.message.contains("256"),
            "{e}"
        );
        ok(with("actor", json!("é".repeat(SHORT_FIELD_BYTES_MAX / 2))));
        one_err(
            with("actor", json!("é".repeat(SHORT_FIELD_BYTES_MAX / 2 + 1))),
            "actor",
            FieldErrorKind::TooLong,
        );
        one_err(
            with("description", json!("d".repeat(DESCRIPTION_BYTES_MAX + 1))),
            "description",
            FieldErrorKind::TooLong,
        );
        one_err(
            with("id", json!("i".repeat(ID_BYTES_MAX + 1))),
            "id",
            FieldErrorKind::TooLong,
        );
        ok(with("id", json!("i".repeat(ID_BYTES_MAX))));
    }

    #[test]
    fn error_invalid_value() {
        one_err(
            with("source", json!("human")),
            "source",
            FieldErrorKind::InvalidValue,
        );
        one_err(
            with("status", json!("cancelled")),
            "status",
            FieldErrorKind::InvalidValue,
        );
        one_err(
            with("ip", json!("300.1.1.1")),
            "ip",
            FieldErrorKind::InvalidValue,
        );
        one_err(
            with("timestamp", json!("yesterday")),
            "timestamp",
            FieldErrorKind::InvalidValue,
        );
        one_err(
            with("actor", json!("a\u{1}b")),
            "actor",
            FieldErrorKind::InvalidValue,
        );
        one_err(
            with("actor", json!("a\u{7f}")),
            "actor",
            FieldErrorKind::InvalidValue,
        );
        one_err(
            with("actor", json!("")),
            "actor",
            FieldErrorKind::InvalidValue,
        );
        one_err(
            with("action", json!("")),
            "action",
            FieldErrorKind::InvalidValue,
        );
        let e = one_err(
            with("description", json!("a\0b")),
            "description",
            FieldErrorKind::InvalidValue,
        );
        assert!(e.message.contains("NUL"));
        one_err(
            with("changes", json!([{"field": "a\0"}])),
            "changes[0].field",
            FieldErrorKind::InvalidValue,
        );
        // Tab/LF/CR are allowed in identifiers; other controls only in free text.
        ok(with("actor", json!("a\tb")));
        ok(with("description", json!("\u{1b}[31mred\u{1b}[0m")));
        ok(with("description", json!("")));
        for bad_id in ["", "has space", "tab\t", "ünï", "new\nline"] {
            one_err(
                with("id", json!(bad_id)),
                "id",
                FieldErrorKind::InvalidValue,
            );
        }
    }

    #[test]
    fn error_out_of_range() {
        for bad in [json!(101), json!(-1), json!(1e3), json!(u64::MAX)] {
            let e = one_err(
                with("risk_score", bad),
                "risk_score",
                FieldErrorKind::OutOfRange,
            );
            assert!(e.message.contains("from 0 to 100"), "{e}");
        }
        assert_eq!(ok(with("risk_score", json!(100))).risk_score, Some(100));
        assert_eq!(ok(with("risk_score", json!(0))).risk_score, Some(0));
        assert_eq!(ok(with("risk_score", json!(7.0))).risk_score, Some(7));
        one_err(
            with("duration_ms", json!(-1)),
            "duration_ms",
            FieldErrorKind::OutOfRange,
        );
        one_err(
            with("duration_ms", json!(1e20)),
            "duration_ms",
            FieldErrorKind::OutOfRange,
        );
        one_err(
            with("duration_ms", json!(-1.0)),
            "duration_ms",
            FieldErrorKind::OutOfRange,
        );
        assert_eq!(
            ok(with("duration_ms", json!(u64::MAX))).duration_ms,
            Some(u64::MAX)
        );
        one_err(
            with("timestamp", json!("0000-01-01T00:00:00+00:01")),
            "timestamp",
            FieldErrorKind::OutOfRange,
        );
        one_err(
            with("timestamp", json!("9999-12-31T23:59:59-00:01")),
            "timestamp",
            FieldErrorKind::OutOfRange,
        );
        assert_eq!(
            ok(with("timestamp", json!("0000-01-01T00:00:00Z"))).timestamp,
            Some(TIMESTAMP_MIN_MICROS)
        );
        assert_eq!(
            ok(with("timestamp", json!("9999-12-31T23:59:59.999999Z"))).timestamp,
            Some(TIMESTAMP_MAX_MICROS)
        );
    }

    #[test]
    fn error_too_large() {
        let big = "m".repeat(METADATA_BYTES_MAX);
        let e = one_err(
            with("metadata", json!({ "k": big })),
            "metadata",
            FieldErrorKind::TooLarge,
        );
        assert!(e.message.contains("65536"), "{e}");
        // Exactly at the limit is fine: {"k":"…"} is 8 bytes of overhead.
        ok(with(
            "metadata",
            json!({ "k": "m".repeat(METADATA_BYTES_MAX - 8) }),
        ));
        one_err(
            with(
                "metadata",
                json!({ "k": "m".repeat(METADATA_BYTES_MAX - 7) }),
            ),
            "metadata",
            FieldErrorKind::TooLarge,
        );

        let changes: Vec<Value> = (0..=CHANGES_COUNT_MAX)
            .map(|i| json!({"field": format!("f{i}")}))
            .collect();
        one_err(
            with("changes", json!(changes)),
            "changes",
            FieldErrorKind::TooLarge,
        );
        let changes: Vec<Value> = (0..CHANGES_COUNT_MAX)
            .map(|i| json!({"field": format!("f{i}")}))
            .collect();
        assert_eq!(
            ok(with("changes", json!(changes))).changes.len(),
            CHANGES_COUNT_MAX
        );

        one_err(
            with(
                "changes",
                json!([{"field": "f", "new": "v".repeat(CHANGE_VALUE_BYTES_MAX)}]),
            ),
            "changes[0].new",
            FieldErrorKind::TooLarge,
        );

        // Every field within its own limit, but the whole event too large.
        let value = "v".repeat(CHANGE_VALUE_BYTES_MAX - 2);
        let changes: Vec<Value> = (0..10)
            .map(|i| json!({"field": format!("f{i}"), "old": value, "new": value}))
            .collect();
        let mut v = with("changes", json!(changes));
        v["description"] = json!("d".repeat(DESCRIPTION_BYTES_MAX));
        v["metadata"] = json!({ "k": "m".repeat(METADATA_BYTES_MAX - 8) });
        let e = one_err(v, "", FieldErrorKind::TooLarge);
        assert!(e.message.contains("262144"), "{e}");
    }

    fn nested(depth: usize) -> Value {
        let mut v = json!({});
        for i in 1..depth {
            v = if i % 2 == 0 {
                json!({ "k": v })
            } else {
                json!([v])
            };
        }
        v
    }

    #[test]
    fn error_too_deep() {
        assert!(!deeper_than(&json!(1), 0));
        assert!(deeper_than(&json!([]), 0));
        assert!(!deeper_than(&json!([[1], {"a": [2]}]), 3));
        assert!(deeper_than(&json!([[1], {"a": [[]]}]), 3));
        assert!(!deeper_than(
            &nested(METADATA_DEPTH_MAX),
            METADATA_DEPTH_MAX
        ));
        assert!(deeper_than(
            &nested(METADATA_DEPTH_MAX + 1),
            METADATA_DEPTH_MAX
        ));
        // nested(n) is an array or object of depth n; wrap it in the metadata object.
        let mut obj = nested(METADATA_DEPTH_MAX);
        if !obj.is_object() {
            obj = json!({ "k": nested(METADATA_DEPTH_MAX - 1) });
        }
        ok(with("metadata", obj.clone()));
        one_err(
            with("metadata", json!({ "k": obj })),
            "metadata",
            FieldErrorKind::TooDeep,
        );
        ok(with(
            "changes",
            json!([{"field": "f", "old": nested(METADATA_DEPTH_MAX)}]),
        ));
        one_err(
            with(
                "changes",
                json!([{"field": "f", "old": nested(METADATA_DEPTH_MAX + 1)}]),
            ),
            "changes[0].old",
            FieldErrorKind::TooDeep,
        );
    }

    #[test]
    fn error_unknown_field() {
        let e = one_err(with("foo", json!(1)), "foo", FieldErrorKind::UnknownField);
        assert!(e.message.contains("metadata"), "{e}");
        one_err(with("seq", json!(1)), "seq", FieldErrorKind::UnknownField);
        one_err(
            with("changes", json!([{"field": "f", "before": 1}])),
            "changes[0].before",
            FieldErrorKind::UnknownField,
        );
        // Null-valued unknown keys are still unknown.
        one_err(
            with("bar", Value::Null),
            "bar",
            FieldErrorKind::UnknownField,
        );
        let long_key = "k".repeat(1000);
        let e = one_err(
            with(&long_key, json!(1)),
            &format!("{}…", "k".repeat(PREVIEW_BYTES)),
            FieldErrorKind::UnknownField,
        );
        assert!(e.message.len() < 200);
    }

    #[test]
    fn error_not_an_object() {
        for v in [json!([]), json!("x"), json!(null), json!(1)] {
            one_err(v, "", FieldErrorKind::NotAnObject);
        }
    }

    #[test]
    fn collects_all_errors_at_once() {
        let errors = errs(json!({
            "action": "x",
            "actor": "a",
            "severity": "urgent",
            "risk_score": 101,
            "ip": "nope",
        }));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["severity", "ip", "risk_score"]);

        let errors = errs(json!({
            "id": "a b",
            "changes": [{"field": 1, "zz": 0}, {"field": "ok"}, "no"],
            "metadata": 3,
            "extra": true,
        }));
        let got: Vec<(&str, FieldErrorKind)> =
            errors.iter().map(|e| (e.field.as_str(), e.kind)).collect();
        assert_eq!(
            got,
            [
                ("id", FieldErrorKind::InvalidValue),
                ("action", FieldErrorKind::Missing),
                ("changes[0].field", FieldErrorKind::WrongType),
                ("changes[0].zz", FieldErrorKind::UnknownField),
                ("changes[2]", FieldErrorKind::WrongType),
                ("metadata", FieldErrorKind::WrongType),
                ("extra", FieldErrorKind::UnknownField),
                ("actor", FieldErrorKind::Missing),
            ]
        );
    }

    #[test]
    fn unknown_severity_lists_allowed_values() {
        let e = one_err(
            with("severity", json!("urgent")),
            "severity",
            FieldErrorKind::InvalidValue,
        );
        assert!(e.message.contains("\"urgent\""), "{e}");
        assert!(
            e.message
                .contains("debug, info, notice, warning, error, critical"),
            "{e}"
        );
        assert_eq!(
            "urgent".parse::<Severity>().unwrap_err().to_string(),
            "unknown severity \"urgent\"; allowed values are: debug, info, notice, warning, error, critical"
        );
    }

    #[test]
    fn timestamps_convert_offsets_to_utc() {
        let base = parse_timestamp("2026-11-23T10:00:00Z").unwrap();
        assert_eq!(base, 1_795_428_000_000_000);
        for s in [
            "2026-11-23T11:00:00+01:00",
            "2026-11-23T05:30:00-04:30",
            "2026-11-23T10:00:00.000000+00:00",
            "2026-11-23t10:00:00z",
        ] {
            assert_eq!(parse_timestamp(s), Ok(base), "{s}");
        }
        assert_eq!(
            parse_timestamp("2026-11-23T10:00:00.0000019Z"),
            Ok(base + 1)
        );
        assert_eq!(format_micros(base + 1), "2026-11-23T10:00:00.000001Z");
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_micros(TIMESTAMP_MIN_MICROS),
            "0000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            format_micros(TIMESTAMP_MAX_MICROS),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(format_micros(i64::MAX), i64::MAX.to_string());
        let ev = ok(with("timestamp", json!("2026-11-23T12:00:00.25+02:00")));
        assert_eq!(
            serde_json::to_value(&ev).unwrap()["timestamp"],
            "2026-11-23T10:00:00.250000Z"
        );
        assert!(parse_timestamp("2026-11-23 10:00")
            .unwrap_err()
            .contains("RFC 3339"));
        assert!(parse_timestamp("0000-01-01T00:00:00+01:00")
            .unwrap_err()
            .contains("range"));
    }

    #[test]
    fn null_is_absent_and_ids_are_generated_only_when_needed() {
        let mut v = minimal();
        for key in FIELD_NAMES {
            if !["action", "actor"].contains(key) {
                v[*key] = Value::Null;
            }
        }
        let mut called = 0;
        let ev = parse_event(&v, || {
            called += 1;
            "gen-1".to_owned()
        })
        .unwrap();
        assert_eq!(called, 1);
        assert_eq!(
            ev,
            Event {
                id: "gen-1".into(),
                action: "login".into(),
                actor: Some("alice".into()),
                ..Event::default()
            }
        );
        // An invalid event does not consume an id.
        assert!(parse_event(&json!({"action": 1}), || panic!("no id")).is_err());
        let id = new_event_id();
        assert_eq!(id.len(), 36);
        assert_eq!(ok(with("id", json!(id.clone()))).id, id);
    }

    #[test]
    fn ip_is_canonicalised() {
        assert_eq!(
            ok(with("ip", json!("203.0.113.7"))).ip.as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            ok(with("ip", json!("2001:0DB8::0001"))).ip.as_deref(),
            Some("2001:db8::1")
        );
        one_err(
            with("ip", json!("fe80::1%eth0")),
            "ip",
            FieldErrorKind::InvalidValue,
        );
        one_err(
            with("ip", json!(" 1.2.3.4")),
            "ip",
            FieldErrorKind::InvalidValue,
        );
    }

    #[test]
    fn enums_are_consistent() {
        fn check<E>(all: &[E], names: &[&str], as_str: fn(E) -> &'static str)
        where
            E: Copy + FromStr + PartialEq + fmt::Debug + Serialize,
        {
            assert_eq!(all.len(), names.len());
            for (&variant, &name) in all.iter().zip(names) {
                assert_eq!(as_str(variant), name);
                assert_eq!(name.parse::<E>().ok(), Some(variant));
                assert_eq!(serde_json::to_value(variant).unwrap(), json!(name));
            }
        }
        check(Source::ALL, Source::NAMES, Source::as_str);
        check(Status::ALL, Status::NAMES, Status::as_str);
        check(Severity::ALL, Severity::NAMES, Severity::as_str);
        assert!(Severity::ALL.windows(2).all(|w| w[0] < w[1]));
        assert!(Severity::Critical > Severity::Warning);
        assert_eq!(Source::parse("USER"), None);
        assert_eq!(
            serde_json::from_str::<Status>("\"canceled\"").unwrap(),
            Status::Canceled
        );
        // The on-disk discriminant is the declaration index.
        let bytes = bincode::encode_to_vec(Severity::Critical, bincode_config()).unwrap();
        assert_eq!(bytes, [5]);
    }

    #[test]
    fn field_error_serializes_kind_in_snake_case() {
        let e = FieldError::new("changes[2].field", FieldErrorKind::WrongType, "m");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"field": "changes[2].field", "kind": "wrong_type", "message": "m"})
        );
        for kind in [
            FieldErrorKind::Missing,
            FieldErrorKind::WrongType,
            FieldErrorKind::TooLong,
            FieldErrorKind::InvalidValue,
            FieldErrorKind::OutOfRange,
            FieldErrorKind::TooLarge,
            FieldErrorKind::TooDeep,
            FieldErrorKind::UnknownField,
            FieldErrorKind::NotAnObject,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
        assert_eq!(e.to_string(), "changes[2].field: m");
    }

    #[test]
    fn parse_json_refuses_repeated_keys_and_the_reserved_key() {
        for (text, key) in [
            (
                r#"{"action": "a", "actor": "alice", "actor": "mallory"}"#,
                "actor",
            ),
            (r#"{"action": "a", "metadata": {"k": 1, "k": 1}}"#, "k"),
            (r#"[{"m": [{"x": 1}, {"y": 2, "y": 3}]}]"#, "y"),
            (r#"{"a\u0000": 1, "a\u0000": 2}"#, "a\u{0}"),
        ] {
            let err = parse_json(text.as_bytes()).unwrap_err().to_string();
            let want = format!("duplicate key {}", json!(key));
            assert!(err.starts_with(&want), "{text}: {err}");
            assert!(err.contains(" at line 1 column "), "{text}: {err}");
        }
        let text = r#"{"x": {"$serde_json::private::RawValue": "[1,2]"}}"#;
        let err = parse_json(text.as_bytes()).unwrap_err().to_string();
        assert!(
            err.starts_with(r#"the key "$serde_json::private::RawValue" is reserved"#),
            "{err}"
        );
        let text = r#"{"x": {"$serde_json::private::RawValuE": "[1]"}, "n": [1, -2, 2.5, -0, 1e-400, null, true, "s"]}"#;
        let v = parse_json(text.as_bytes()).unwrap();
        assert_eq!(v["x"], json!({"$serde_json::private::RawValuE": "[1]"}));
        assert_eq!(v["n"], json!([1, -2, 2.5, -0.0, 0.0, null, true, "s"]));
        // Everything else as serde_json reads it.
        for text in [
            "1e400",
            "[1,]",
            "\"\\ud800\"",
            "{\"a\":1}x",
            &"[".repeat(200),
        ] {
            assert_eq!(
                parse_json(text.as_bytes()).unwrap_err().to_string(),
                serde_json::from_str::<Value>(text).unwrap_err().to_string(),
                "{text}"
            );
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_is_stable() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, 2.5, {"y": 1, "x": "\u0000"}], "a": null }"#)
                .unwrap();
        let text = canonical_json(&v);
        assert_eq!(text, r#"{"a":null,"b":[1,2.5,{"x":"\u0000","y":1}]}"#);
        let again: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(canonical_json(&again), text);
        assert_eq!(
            canonical_json_limited(&v, text.len()).as_deref(),
            Some(text.as_str())
        );
        assert_eq!(canonical_json_limited(&v, text.len() - 1), None);
    }

    #[test]
    fn corrupt_stored_json_fails_serialization_without_panic() {
        let ev = Event {
            id: "x".into(),
            action: "a".into(),
            metadata: Some("{not json".into()),
            ..Event::default()
        };
        assert!(serde_json::to_string(&ev).is_err());
    }

    #[test]
    fn time_range_constants_match_chrono() {
        use chrono::TimeZone;
        let min = chrono::Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap();
        let max = chrono::Utc
            .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
            .unwrap();
        assert_eq!(min.timestamp_micros(), TIMESTAMP_MIN_MICROS);
        assert_eq!(max.timestamp_micros() + 999_999, TIMESTAMP_MAX_MICROS);
    }
}
