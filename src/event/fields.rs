//! The event's fields by name.

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
