//! The named limits of an event's fields: every byte, depth and count bound that
//! validation enforces and the decoder relies on.

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
/// Most unknown keys of one object (an event, a change) named in its errors: the first
/// in byte order; the rest are counted in one more error. A body of 16 MiB can hold
/// 1.6 million short keys: named each, they took ≈ 1.7 GB of errors to answer.
pub const UNKNOWN_KEYS_NAMED: usize = 32;
/// Maximum size of a whole bincode-encoded [`Event`](super::Event), in bytes.
pub const EVENT_BYTES_MAX: usize = 256 * 1024;
/// Earliest accepted event time: `0000-01-01T00:00:00Z`, in unix microseconds.
pub const TIMESTAMP_MIN_MICROS: i64 = -62_167_219_200_000_000;
/// Latest accepted event time: `9999-12-31T23:59:59.999999Z`, in unix microseconds.
pub const TIMESTAMP_MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Largest `items_total`, `items_processed` and `items_failed`: 2^53 − 1, the largest
/// integer every JSON reader (JavaScript's numbers included) keeps exact.
pub const ITEMS_MAX: u64 = (1 << 53) - 1;
/// Most risk rules named on one event (`risk_rules`); the server sets them.
pub const RISK_RULES_MAX: usize = 16;
/// Longest risk rule name, in bytes.
pub const RISK_RULE_BYTES_MAX: usize = 32;
