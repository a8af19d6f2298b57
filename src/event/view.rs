//! The JSON view of an event (what queries, exports and streams return): posted field
//! names, RFC 3339 UTC times, stored JSON text shown as real JSON again.

use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::*;

/// A stored event's JSON view as text (answers, exports, streams), written
/// straight from the event. Stored JSON that does not parse (never written by
/// validation; the CRCs catch damage) is a bug: it panics, as the `Value`
/// route did, and the server's panic guard answers 500.
pub fn to_json(ev: &StoredEvent) -> String {
    serde_json::to_string(ev).expect("stored events serialize to JSON")
}

/// Stored canonical JSON text, serialized as the JSON value it encodes.
struct RawJson<'a>(&'a str);

impl Serialize for RawJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.0)
            .map_err(|err| S::Error::custom(format_args!("stored JSON value is invalid: {err}")))?;
        raw.serialize(serializer)
    }
}

/// Serializes as `{"field": .., "new": <json or null>, "old": <json or null>}`.
impl Serialize for Change {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("field", &self.field)?;
        map.serialize_entry("new", &self.new.as_deref().map(RawJson))?;
        map.serialize_entry("old", &self.old.as_deref().map(RawJson))?;
        map.end()
    }
}

/// What a stored event adds to the view of its [`Event`].
struct Stored<'a> {
    seq: u64,
    received_at: String,
    ingested_by: Option<&'a str>,
    client_addr: Option<&'a str>,
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
            &self.process_name,
            &self.process_id,
            &self.batch_id,
        ];
        1 + strings.iter().filter(|s| s.is_some()).count()
            + usize::from(self.timestamp.is_some())
            + usize::from(self.source.is_some())
            + usize::from(self.status.is_some())
            + usize::from(self.severity.is_some())
            + usize::from(self.risk_score.is_some())
            + usize::from(self.duration_ms.is_some())
            + usize::from(!self.changes.is_empty())
            + usize::from(self.phase.is_some())
            + usize::from(self.items_total.is_some())
            + usize::from(self.items_processed.is_some())
            + usize::from(self.items_failed.is_some())
            + usize::from(self.risk_rules.is_some())
    }

    /// Writes every field into `map`, omitting absent ones, with `stored`'s
    /// when given. Keys go in byte order, as a `serde_json::Value` (a sorted
    /// map) writes them: answers are written straight from the event, with the
    /// bytes they had when they went through a `Value` (a test holds it).
    fn serialize_view<M: SerializeMap>(
        &self,
        map: &mut M,
        stored: Option<&Stored<'_>>,
    ) -> Result<(), M::Error> {
        macro_rules! opt {
            ($name:literal, $value:expr) => {
                if let Some(value) = &$value {
                    map.serialize_entry($name, value)?;
                }
            };
        }
        map.serialize_entry("action", &self.action)?;
        opt!("actor", self.actor);
        opt!("batch_id", self.batch_id);
        opt!("category", self.category);
        if !self.changes.is_empty() {
            map.serialize_entry("changes", &self.changes)?;
        }
        opt!("client_addr", stored.and_then(|s| s.client_addr));
        opt!("correlation_id", self.correlation_id);
        opt!("description", self.description);
        opt!("duration_ms", self.duration_ms);
        opt!("entity_id", self.entity_id);
        opt!("entity_name", self.entity_name);
        opt!("entity_type", self.entity_type);
        map.serialize_entry("id", &self.id)?;
        opt!("ingested_by", stored.and_then(|s| s.ingested_by));
        opt!("ip", self.ip);
        opt!("items_failed", self.items_failed);
        opt!("items_processed", self.items_processed);
        opt!("items_total", self.items_total);
        opt!("metadata", self.metadata.as_deref().map(RawJson));
        opt!("phase", self.phase.map(Phase::as_str));
        opt!("process_id", self.process_id);
        opt!("process_name", self.process_name);
        opt!("received_at", stored.map(|s| &s.received_at));
        opt!("risk_rules", self.risk_rules);
        opt!("risk_score", self.risk_score);
        opt!("seq", stored.map(|s| s.seq));
        opt!("session_id", self.session_id);
        opt!("severity", self.severity.map(Severity::as_str));
        opt!("source", self.source.map(Source::as_str));
        opt!("status", self.status.map(Status::as_str));
        opt!("tenant", self.tenant);
        opt!("timestamp", self.timestamp.map(format_micros));
        opt!("user_agent", self.user_agent);
        opt!("user_id", self.user_id);
        opt!("user_name", self.user_name);
        Ok(())
    }
}

/// The client form: every set field under its posted name, in byte order of the names
/// (`timestamp` as RFC 3339 UTC with microseconds); `metadata` and change values as real
/// JSON.
/// [`parse_event`] accepts this output and yields an equal `Event`, unless it carries
/// the server's `risk_rules` (which a client cannot post).
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + self.view_len()))?;
        self.serialize_view(&mut map, None)?;
        map.end()
    }
}

/// The JSON view of a stored event: the fields of the [`Event`] view with `seq`,
/// `received_at` (RFC 3339 UTC with microseconds), `ingested_by` and `client_addr` (each
/// omitted when absent: both for events stored in format version 1, `client_addr` for
/// `cli` and `stele` events), in byte order of the names.
impl Serialize for StoredEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let by = self.provenance.as_ref();
        let addr = by.and_then(|b| b.client_addr.as_deref());
        let len = 3 + usize::from(by.is_some()) + usize::from(addr.is_some());
        let mut map = serializer.serialize_map(Some(len + self.event.view_len()))?;
        let stored = Stored {
            seq: self.seq,
            received_at: format_micros(self.received_at),
            ingested_by: by.map(|b| b.ingested_by.as_str()),
            client_addr: addr,
        };
        self.event.serialize_view(&mut map, Some(&stored))?;
        map.end()
    }
}
