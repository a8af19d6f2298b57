//! The JSON view of an event (what queries, exports and streams return): posted field
//! names, RFC 3339 UTC times, stored JSON text shown as real JSON again.

use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::*;

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
        opt!("process_name", self.process_name);
        opt!("process_id", self.process_id);
        opt!("batch_id", self.batch_id);
        opt!("phase", self.phase.map(Phase::as_str));
        opt!("items_total", self.items_total);
        opt!("items_processed", self.items_processed);
        opt!("items_failed", self.items_failed);
        opt!("risk_rules", self.risk_rules);
        Ok(())
    }
}

/// The client form: `id`, `timestamp` (RFC 3339 UTC with microseconds, if set), then every
/// set field under its posted name; `metadata` and change values as real JSON.
/// [`parse_event`] accepts this output and yields an equal `Event`, unless it carries
/// the server's `risk_rules` (which a client cannot post).
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
