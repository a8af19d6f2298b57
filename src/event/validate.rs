//! Validation of a posted event: every field against its limit and rules, every
//! problem reported at once as a typed [`FieldError`]. Produces an [`Event`]; never
//! stores, encodes or shows one.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::bounded::{type_name, ChangeIn, Changes, Free, Refusal, OBJECT};
use super::json::Parsed;
use super::posted::{self, Posted};
use super::*;

/// The posted value of the field named by the literal `$name`, taken out of `$p`
/// (its slot is found when the crate is built).
macro_rules! take {
    ($p:expr, $name:literal) => {
        $p.take(const { posted::slot($name) })
    };
}

/// The posted string field `$name`, checked against its byte limit and character rules.
macro_rules! text {
    ($c:expr, $p:expr, $name:literal, $max:expr, $chars:expr) => {
        take!($p, $name).and_then(|v| $c.string($name, v, $max, $chars))
    };
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

/// Whether the byte `c` is a character forbidden in an identifier field: an ASCII
/// control character other than tab, line feed and carriage return.
fn forbidden_in_ident(c: u8) -> bool {
    c.is_ascii_control() && !matches!(c, b'\t' | b'\n' | b'\r')
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
    fn string(&mut self, field: &str, v: Value, max: usize, chars: Chars) -> Option<String> {
        let s = match v {
            Value::String(s) => s,
            other => {
                self.push(
                    field,
                    FieldErrorKind::WrongType,
                    format!("{field} must be a string, got {}", type_name(&other)),
                );
                return None;
            }
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
                // The forbidden characters are ASCII, and no byte of a longer UTF-8
                // sequence is: a byte scan finds the same one, at the same place.
                if let Some(at) = s.bytes().position(forbidden_in_ident) {
                    let c = s.as_bytes()[at];
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
        Some(s)
    }

    /// The error counting an object's unknown keys past the named ones (`at`: the
    /// object's path, `""` for the event).
    fn more_unknown(&mut self, at: &str, more: usize) {
        if more > 0 {
            let of = if at.is_empty() {
                String::new()
            } else {
                format!(" in {at}")
            };
            self.push(
                at,
                FieldErrorKind::UnknownField,
                format!(
                    "{more} more unknown fields{of} (only the first {UNKNOWN_KEYS_NAMED} in byte \
                     order are named)"
                ),
            );
        }
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

    /// The `id` field: non-empty printable ASCII without whitespace.
    fn id(&mut self, v: Value) -> Option<String> {
        let s = match v {
            Value::String(s) => s,
            other => {
                self.push(
                    "id",
                    FieldErrorKind::WrongType,
                    format!("id must be a string, got {}", type_name(&other)),
                );
                return None;
            }
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
                    preview(&s)
                ),
            );
            return None;
        }
        Some(s)
    }

    /// An enum field.
    fn enumeration<E>(
        &mut self,
        field: &str,
        v: &Value,
        names: &[&str],
        parse: fn(&str) -> Option<E>,
    ) -> Option<E> {
        let Value::String(s) = v else {
            self.push(
                field,
                FieldErrorKind::WrongType,
                format!(
                    "{field} must be a string, one of: {}; got {}",
                    names.join(", "),
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
                    "{field} \"{}\" is not allowed; allowed values are: {}",
                    preview(s),
                    names.join(", ")
                ),
            );
        }
        parsed
    }

    /// A non-negative integer field with an upper bound. Integral floats (`5.0`, `1e2`)
    /// are accepted.
    fn unsigned(&mut self, field: &str, v: &Value, max: u64) -> Option<u64> {
        let expect = || format!("{field} must be an integer from 0 to {max}");
        let Value::Number(n) = v else {
            self.push(
                field,
                FieldErrorKind::WrongType,
                format!("{}, got {}", expect(), type_name(v)),
            );
            return None;
        };
        let out_of_range = |this: &mut Self| {
            this.push(
                field,
                FieldErrorKind::OutOfRange,
                format!("{}, got {n}", expect()),
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
                    format!("{}, got the non-integer {n}", expect()),
                );
                None
            }
        }
    }

    /// A JSON value stored as canonical text, with a depth and a size limit.
    fn json_value(&mut self, field: &str, v: Free, max_bytes: usize) -> Option<String> {
        match v.text {
            Ok(text) => Some(text),
            Err(Refusal::TooDeep) => {
                self.push(
                    field,
                    FieldErrorKind::TooDeep,
                    format!(
                        "{field} nests objects and arrays more than {METADATA_DEPTH_MAX} levels \
                         deep (the outermost object or array is level 1)"
                    ),
                );
                None
            }
            Err(Refusal::TooLarge) => {
                self.push(
                    field,
                    FieldErrorKind::TooLarge,
                    format!(
                        "{field} is larger than {max_bytes} bytes when serialized as compact \
                         JSON; the limit is {max_bytes} bytes"
                    ),
                );
                None
            }
        }
    }

    /// `metadata`: a JSON object.
    fn metadata(&mut self, v: Free) -> Option<String> {
        if v.kind != OBJECT {
            self.push(
                "metadata",
                FieldErrorKind::WrongType,
                format!(
                    "metadata must be a JSON object (put custom data under keys), got {}",
                    v.kind
                ),
            );
            return None;
        }
        self.json_value("metadata", v, METADATA_BYTES_MAX)
    }

    /// `changes`: an array of `{field, old, new}` objects.
    fn changes(&mut self, v: Changes) -> Vec<Change> {
        let items = match v {
            Changes::Items(items) => items,
            Changes::NotArray(kind) => {
                self.push(
                    "changes",
                    FieldErrorKind::WrongType,
                    format!(
                        "changes must be an array of {{\"field\", \"old\", \"new\"}} objects, \
                         got {kind}"
                    ),
                );
                return Vec::new();
            }
            Changes::TooMany(n) => {
                self.push(
                    "changes",
                    FieldErrorKind::TooLarge,
                    format!("changes has {n} entries; the limit is {CHANGES_COUNT_MAX}"),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if let Some(change) = self.change(i, item) {
                out.push(change);
            }
        }
        out
    }

    /// One entry of `changes`.
    fn change(&mut self, i: usize, v: ChangeIn) -> Option<Change> {
        let path = format!("changes[{i}]");
        let (field, old, new, unknown) = match v {
            ChangeIn::Entry {
                field,
                old,
                new,
                unknown,
            } => (field, old, new, unknown),
            ChangeIn::NotObject(kind) => {
                self.push(
                    path.clone(),
                    FieldErrorKind::WrongType,
                    format!(
                        "{path} must be an object with a \"field\" string and optional \"old\" \
                         and \"new\" values, got {kind}"
                    ),
                );
                return None;
            }
        };
        let before = self.errors.len();
        let field_path = format!("{path}.field");
        let field = match field {
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
        let mut value = |v: Option<Free>, key: &str| {
            v.and_then(|v| self.json_value(&format!("{path}.{key}"), v, CHANGE_VALUE_BYTES_MAX))
        };
        let old = value(old, "old");
        let new = value(new, "new");
        for key in unknown.named() {
            let shown = preview(key);
            self.push(
                format!("{path}.{shown}"),
                FieldErrorKind::UnknownField,
                format!(
                    "unknown field \"{shown}\" in {path}; a change has only \"field\", \"old\" \
                     and \"new\""
                ),
            );
        }
        self.more_unknown(&path, unknown.more());
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
/// `phase` is `started`, `progress` or `finished`; `items_*` are integers up to
/// [`ITEMS_MAX`], `items_failed` at most `items_processed`; `risk_rules` is the
/// server's (refused like `seq`); and the encoded event fits in [`EVENT_BYTES_MAX`] bytes.
///
/// # Errors
///
/// Every problem found, in field order (unknown keys and the actor/user_id/source rule
/// last). The whole-event size check runs only once every field is valid. A `category`
/// or `action` reserved for Stele's own events ([`is_reserved_kind`]) is an error of kind
/// [`FieldErrorKind::Reserved`].
pub fn parse_event(v: &Value, new_id: impl FnOnce() -> String) -> Result<Event, Vec<FieldError>> {
    parse(&mut Posted::borrowed(object(v)?), new_id, true)
}

/// [`parse_event`] on a value the caller gives away: the event's strings are moved out
/// of it rather than copied (as [`PostedEvent::validate`] does on the ingest path).
///
/// # Errors
///
/// As [`parse_event`].
pub fn parse_posted_event(
    v: Value,
    new_id: impl FnOnce() -> String,
) -> Result<Event, Vec<FieldError>> {
    PostedEvent::from(v).validate(new_id)
}

impl PostedEvent {
    /// Validates the event a client posted: [`parse_event`]'s rules, its strings moved
    /// out rather than copied.
    ///
    /// # Errors
    ///
    /// As [`parse_event`].
    pub fn validate(self, new_id: impl FnOnce() -> String) -> Result<Event, Vec<FieldError>> {
        match self.0 {
            Parsed::Fields(mut posted) => parse(&mut posted, new_id, true),
            Parsed::Value(Value::Object(obj)) => parse(&mut Posted::owned(obj), new_id, true),
            Parsed::Value(other) => Err(not_an_object(&other)),
        }
    }
}

/// Validates an event Stele writes itself (e.g. an `audit_access` record): the same
/// rules as [`parse_event`], except that reserved categories and actions are allowed.
/// Never call it on what a client sent.
pub fn parse_stele_event(
    v: &Value,
    new_id: impl FnOnce() -> String,
) -> Result<Event, Vec<FieldError>> {
    parse(&mut Posted::borrowed(object(v)?), new_id, false)
}

/// `v` as an object, or the error of an event that is not one.
fn object(v: &Value) -> Result<&Map<String, Value>, Vec<FieldError>> {
    match v {
        Value::Object(obj) => Ok(obj),
        other => Err(not_an_object(other)),
    }
}

/// The error of an event that is not a JSON object.
fn not_an_object(v: &Value) -> Vec<FieldError> {
    vec![FieldError::new(
        "",
        FieldErrorKind::NotAnObject,
        format!("an event must be a JSON object, got {}", type_name(v)),
    )]
}

fn parse(
    p: &mut Posted,
    new_id: impl FnOnce() -> String,
    client: bool,
) -> Result<Event, Vec<FieldError>> {
    // Two names of `ingest.field_map` giving one field different values: nothing
    // else is said of the event until the client sends one of them.
    if let Some(conflicts) = p.conflicts() {
        return Err(conflicts);
    }
    let mut c = Checker { errors: Vec::new() };
    // Before the fields are taken out.
    let someone = p.has(const { posted::slot("actor") })
        || p.has(const { posted::slot("user_id") })
        || p.has(const { posted::slot("source") });

    let id = take!(p, "id").and_then(|v| c.id(v));
    let timestamp = take!(p, "timestamp").and_then(|v| match v {
        Value::String(s) => match parse_timestamp_checked(&s) {
            Ok(us) => Some(us),
            Err(TimestampError::Invalid(why)) => {
                c.push(
                    "timestamp",
                    FieldErrorKind::InvalidValue,
                    format!(
                        "timestamp \"{}\" is not an RFC 3339 timestamp such as \
                         2026-11-23T10:00:00Z or 2026-11-23T11:00:00.123456+01:00 ({why})",
                        preview(&s)
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
                        preview(&s)
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
                    type_name(&other)
                ),
            );
            None
        }
    });
    let action = match take!(p, "action") {
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
    const SHORT: usize = SHORT_FIELD_BYTES_MAX;
    let actor = text!(c, p, "actor", SHORT, Chars::Ident);
    let tenant = text!(c, p, "tenant", SHORT, Chars::Ident);
    let category = text!(c, p, "category", SHORT, Chars::Ident);
    if client {
        c.reserved("category", category.as_deref());
    }
    let source =
        take!(p, "source").and_then(|v| c.enumeration("source", &v, Source::NAMES, Source::parse));
    let status =
        take!(p, "status").and_then(|v| c.enumeration("status", &v, Status::NAMES, Status::parse));
    let severity = take!(p, "severity")
        .and_then(|v| c.enumeration("severity", &v, Severity::NAMES, Severity::parse));
    let entity_type = text!(c, p, "entity_type", SHORT, Chars::Ident);
    let entity_id = text!(c, p, "entity_id", SHORT, Chars::Ident);
    let entity_name = text!(c, p, "entity_name", ENTITY_NAME_BYTES_MAX, Chars::Text);
    let user_id = text!(c, p, "user_id", SHORT, Chars::Ident);
    let user_name = text!(c, p, "user_name", SHORT, Chars::Ident);
    let session_id = text!(c, p, "session_id", SHORT, Chars::Ident);
    let correlation_id = text!(c, p, "correlation_id", SHORT, Chars::Ident);
    let ip = text!(c, p, "ip", SHORT, Chars::Ident).and_then(|s| match s.parse::<IpAddr>() {
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
    let user_agent = text!(c, p, "user_agent", USER_AGENT_BYTES_MAX, Chars::Text);
    let risk_score = take!(p, "risk_score")
        .and_then(|v| c.unsigned("risk_score", &v, 100))
        .and_then(|n| u8::try_from(n).ok());
    let duration_ms = take!(p, "duration_ms").and_then(|v| c.unsigned("duration_ms", &v, u64::MAX));
    let description = text!(c, p, "description", DESCRIPTION_BYTES_MAX, Chars::Text);
    let changes = p.changes.take().map_or_else(Vec::new, |v| c.changes(*v));
    let metadata = p.metadata.take().and_then(|v| c.metadata(*v));
    let process_name = text!(c, p, "process_name", SHORT, Chars::Ident);
    let process_id = text!(c, p, "process_id", SHORT, Chars::Ident);
    let batch_id = text!(c, p, "batch_id", SHORT, Chars::Ident);
    let phase =
        take!(p, "phase").and_then(|v| c.enumeration("phase", &v, Phase::NAMES, Phase::parse));
    let items_total =
        take!(p, "items_total").and_then(|v| c.unsigned("items_total", &v, ITEMS_MAX));
    let items_processed =
        take!(p, "items_processed").and_then(|v| c.unsigned("items_processed", &v, ITEMS_MAX));
    let items_failed =
        take!(p, "items_failed").and_then(|v| c.unsigned("items_failed", &v, ITEMS_MAX));
    if let (Some(failed), Some(processed)) = (items_failed, items_processed) {
        if failed > processed {
            c.push(
                "items_failed",
                FieldErrorKind::OutOfRange,
                format!("items_failed ({failed}) cannot exceed items_processed ({processed})"),
            );
        }
    }

    for key in p.unknown.named() {
        let shown = preview(key);
        let message = match key.as_str() {
            k if STORED_FIELD_NAMES.contains(&k)
                || PROVENANCE_FIELD_NAMES.contains(&k)
                || COMPUTED_FIELD_NAMES.contains(&k) =>
            {
                format!("{key} is assigned by the server and cannot be posted")
            }
            _ => format!(
                "unknown field \"{shown}\"; put custom data under \"metadata\" (a JSON object)"
            ),
        };
        c.push(shown, FieldErrorKind::UnknownField, message);
    }
    c.more_unknown("", p.unknown.more());

    if !someone {
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
        process_name,
        process_id,
        batch_id,
        phase,
        items_total,
        items_processed,
        items_failed,
        risk_rules: None,
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
