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
//!
//! One concern a module: `limits` (the named bounds), `enums` (the closed
//! vocabularies), `fields` (the field table), `codec` (bincode), `json` (strict input,
//! canonical text), `time` (RFC 3339), `view` (the JSON view) and `validate` (posted
//! JSON to [`Event`]); their public items are re-exported here, so callers name
//! `crate::event::X`. This file holds the types.

use std::net::IpAddr;

mod bounded;
mod codec;
mod enums;
mod field_error;
mod field_map;
mod fields;
mod json;
mod limits;
mod posted;
mod time;
mod validate;
mod view;
pub use view::to_json;

pub use codec::*;
pub use enums::*;
pub use field_error::*;
pub use field_map::FieldMap;
pub use fields::*;
pub use json::*;
pub use limits::*;
pub use time::*;
pub use validate::*;

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
    // ---- format version 3 from here on (see `codec::LegacyEvent` for 1 and 2) ----
    /// The name of the process (job) the event belongs to, e.g. `nightly_export`.
    pub process_name: Option<String>,
    /// The id of the process *run* (one execution) the event belongs to.
    pub process_id: Option<String>,
    /// The id of the batch (bulk) operation the event belongs to.
    pub batch_id: Option<String>,
    /// Where the event stands in its run's or operation's life.
    pub phase: Option<Phase>,
    /// How many items the run or operation targets.
    pub items_total: Option<u64>,
    /// How many items it has processed so far (or in all, when finished).
    pub items_processed: Option<u64>,
    /// How many of the processed items failed.
    pub items_failed: Option<u64>,
    /// Set by the server, never posted: the names of the risk rules that computed
    /// `risk_score` for an event posted without one (`Some(vec![])`: computed, no rule
    /// fired, score 0). `None`: the score (if any) is the one posted.
    pub risk_rules: Option<Vec<String>>,
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

/// Writes the in-memory key of `value` in `tenant` into `out` (a buffer the
/// caller reuses, so a lookup allocates nothing): the value, NUL, then for a
/// tenant the byte 0x01 and the tenant. Values here are identifiers, IPs or
/// fixed names, which hold no NUL, and tenants hold neither NUL nor 0x01
/// (validation refuses control characters but tab, line feed and carriage
/// return), so two (value, tenant) pairs never share a key, and the keys of
/// one value are those starting with it and NUL: in byte order, its key
/// without a tenant first, then its tenants in order (`Option<String>`'s).
/// Used by the idempotency map (`crate::ingest`) and the activity rules'
/// and detectors' memories (`crate::intel`).
pub fn tenant_key(out: &mut String, value: &str, tenant: Option<&str>) {
    out.clear();
    out.push_str(value);
    out.push('\0');
    if let Some(t) = tenant {
        out.push('\u{1}');
        out.push_str(t);
    }
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
/// Maximum length of `ingested_by`, in bytes: the longest API key id
/// (`auth::KEY_ID_BYTES_MAX` is this bound, so the event model does not
/// depend on access control).
pub const INGESTED_BY_BYTES_MAX: usize = 64;
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

#[cfg(test)]
mod tests;
