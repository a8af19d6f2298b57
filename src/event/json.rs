//! JSON text in and out: the strict parser for posted JSON (repeated and reserved keys
//! refused), as `Value`s ([`parse_json`]) or each posted object straight into its
//! fields ([`PostedEvent`], [`parse_posted_json`], [`parse_posted_body`]: the same
//! rules in what is kept; each value read only as far as it could be stored, by
//! `super::bounded`; a body's items past its limit counted, not built), and the
//! canonical JSON text in which free-form values are stored.

use std::borrow::Cow;
use std::fmt;
use std::io;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::bounded::{Changes, Free, Scalar, Skip};
use super::posted::{Claim, Given, Posted};
use super::*;

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
pub(super) fn canonical_json_limited(v: &Value, limit: usize) -> Option<String> {
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
pub(super) fn deeper_than(v: &Value, max: usize) -> bool {
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

/// A posted event as read from JSON text: an object straight into its fields (no map
/// of keys is built, and a key's text is not copied unless it is unknown or has
/// escapes; a field map's names taken as the fields they name), anything else as a
/// `Value` for validation to refuse; or a `Value` a caller had. Validated by
/// [`PostedEvent::validate`].
#[derive(Debug)]
pub struct PostedEvent(pub(super) Parsed);

#[derive(Debug)]
pub(super) enum Parsed {
    Fields(Posted),
    Value(Value),
}

impl From<Value> for PostedEvent {
    fn from(v: Value) -> Self {
        Self(Parsed::Value(v))
    }
}

impl From<StrictValue> for PostedEvent {
    fn from(v: StrictValue) -> Self {
        Self(Parsed::Value(v.0))
    }
}

impl PostedEvent {
    /// The event's `Value`, if it is held as one (made [`From`] a `Value`, or not an
    /// object).
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        match &mut self.0 {
            Parsed::Value(v) => Some(v),
            Parsed::Fields(_) => None,
        }
    }

    /// Whether the event carries an `id` (other than `null`).
    pub fn has_id(&self) -> bool {
        match &self.0 {
            Parsed::Fields(p) => p.has(const { super::posted::slot("id") }),
            Parsed::Value(v) => v.get("id").is_some_and(|id| !id.is_null()),
        }
    }
}

/// Parses one posted event's JSON text (an NDJSON line) with the rules of
/// [`parse_json`], an object straight into its fields, each value read only as far as
/// it could be stored (`super::bounded`: a repeated key inside a value the event is
/// refused for anyway is not looked for).
///
/// # Errors
///
/// As [`parse_json`].
pub fn parse_posted_json(bytes: &[u8]) -> serde_json::Result<PostedEvent> {
    parse_posted_json_mapped(bytes, FieldMap::none())
}

/// [`parse_posted_json`] with `map`'s names taken as the fields they name
/// (`[ingest.field_map]`): a field given under two names is one field if the values
/// are the same, else a conflict [`PostedEvent::validate`] reports.
///
/// # Errors
///
/// As [`parse_json`].
pub fn parse_posted_json_mapped(bytes: &[u8], map: &FieldMap) -> serde_json::Result<PostedEvent> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let event = serde::de::DeserializeSeed::deserialize(PostedSeed(map), &mut de)?;
    // As `serde_json::from_slice`: nothing but whitespace after the value.
    de.end()?;
    Ok(event)
}

/// The events of a posted body: at most the first `max` read, and how many it holds.
#[derive(Debug)]
pub struct PostedBatch {
    /// The events read: all of them, or the first `max` when there are more.
    pub events: Vec<PostedEvent>,
    /// How many events the body holds (more than `events.len()` when past `max`).
    pub count: usize,
}

/// Parses a posted JSON body with the rules of [`parse_json`]: an array's items are
/// the events, each object straight into its fields (`map`'s names as the fields
/// they name, [`parse_posted_json_mapped`]); anything else is one event.
///
/// Only an array's first `max` items are kept: the rest are read as JSON text (its
/// syntax checked, its position reported as before) and counted, but not built, so a
/// body of millions of tiny items costs the memory of `max` events. Past `max`, the
/// strict rules (repeated and reserved keys) are not applied: the batch is refused
/// for its size anyway.
///
/// # Errors
///
/// As [`parse_json`].
pub fn parse_posted_body(
    bytes: &[u8],
    max: usize,
    map: &FieldMap,
) -> serde_json::Result<PostedBatch> {
    parse_body(bytes, max, PostedSeed(map))
}

/// [`parse_posted_body`] with each event kept as a whole `Value`, unbounded: the
/// reading the fuzz target compares the bounded one with.
///
/// # Errors
///
/// As [`parse_json`].
#[cfg(any(test, feature = "testkit"))]
pub fn parse_posted_values(bytes: &[u8], max: usize) -> serde_json::Result<PostedBatch> {
    parse_body(bytes, max, ValueSeed)
}

/// A body's events as `seed` reads them, an array's items past `max` only counted.
fn parse_body<S>(bytes: &[u8], max: usize, seed: S) -> serde_json::Result<PostedBatch>
where
    S: Copy + for<'de> serde::de::DeserializeSeed<'de, Value = PostedEvent>,
{
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // serde_json's whitespace: space, tab, line feed, carriage return.
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    let batch = if first == Some(&b'[') {
        serde::Deserializer::deserialize_seq(&mut de, Capped(max, seed))?
    } else {
        PostedBatch {
            events: vec![seed.deserialize(&mut de)?],
            count: 1,
        }
    };
    // As `serde_json::from_slice`: nothing but whitespace after the value.
    de.end()?;
    Ok(batch)
}

/// An array's first `.0` items as `.1` reads them, the rest counted ([`parse_body`]).
struct Capped<S>(usize, S);

impl<'de, S> serde::de::Visitor<'de> for Capped<S>
where
    S: Copy + serde::de::DeserializeSeed<'de, Value = PostedEvent>,
{
    type Value = PostedBatch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<PostedBatch, A::Error> {
        let max = self.0;
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(max).min(4096));
        while events.len() < max {
            match seq.next_element_seed(self.1)? {
                Some(item) => events.push(item),
                None => {
                    let count = events.len();
                    return Ok(PostedBatch { events, count });
                }
            }
        }
        let mut count = events.len();
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(PostedBatch { events, count })
    }
}

/// Reads a posted event with `.0`'s renames ([`PostedVisitor`]).
#[derive(Clone, Copy)]
struct PostedSeed<'m>(&'m FieldMap);

impl<'de> serde::de::DeserializeSeed<'de> for PostedSeed<'_> {
    type Value = PostedEvent;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PostedEvent, D::Error> {
        d.deserialize_any(PostedVisitor(self.0))
    }
}

/// Reads a posted event as a whole `Value` ([`parse_posted_values`]).
#[cfg(any(test, feature = "testkit"))]
#[derive(Clone, Copy)]
struct ValueSeed;

#[cfg(any(test, feature = "testkit"))]
impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed {
    type Value = PostedEvent;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PostedEvent, D::Error> {
        <StrictValue as serde::Deserialize>::deserialize(d).map(PostedEvent::from)
    }
}

/// [`StrictVisitor`]'s rules, with an object's keys claimed by [`Posted`] as they come
/// (the map's names as the fields they name).
struct PostedVisitor<'m>(&'m FieldMap);

impl<'de> serde::de::Visitor<'de> for PostedVisitor<'_> {
    type Value = PostedEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<PostedEvent, E> {
        Ok(Value::Bool(b).into())
    }
    fn visit_i64<E>(self, n: i64) -> Result<PostedEvent, E> {
        Ok(Value::Number(n.into()).into())
    }
    fn visit_u64<E>(self, n: u64) -> Result<PostedEvent, E> {
        Ok(Value::Number(n.into()).into())
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<PostedEvent, E> {
        StrictVisitor.visit_f64(f).map(PostedEvent::from)
    }
    fn visit_str<E>(self, s: &str) -> Result<PostedEvent, E> {
        Ok(Value::String(s.to_owned()).into())
    }
    fn visit_string<E>(self, s: String) -> Result<PostedEvent, E> {
        Ok(Value::String(s).into())
    }
    fn visit_unit<E>(self) -> Result<PostedEvent, E> {
        Ok(Value::Null.into())
    }
    fn visit_none<E>(self) -> Result<PostedEvent, E> {
        Ok(Value::Null.into())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<PostedEvent, D::Error> {
        StrictVisitor.visit_some(d).map(PostedEvent::from)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<PostedEvent, A::Error> {
        // Refused for its type, which is all that is shown of it.
        Skip.visit_seq(seq)?;
        Ok(Value::Array(Vec::new()).into())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PostedEvent, A::Error> {
        let mut posted = Posted::empty();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            check_key::<A::Error>(&key)?;
            let Some(claim) = posted.claim_mapped(Cow::Borrowed(&key), self.0) else {
                return Err(duplicate(&key));
            };
            let i = match claim {
                Claim::Field(i) => i,
                Claim::Unknown => {
                    map.next_value_seed(Skip)?;
                    continue;
                }
            };
            // Each value read within the bounds of what could be stored of it.
            let given = match i {
                METADATA => Given::Free(Free::next_metadata(&mut map)?),
                CHANGES => Given::Changes(Changes::next_of(&mut map)?),
                _ => Given::Value(map.next_value_seed(Scalar)?),
            };
            posted.put(i, &key, given);
        }
        Ok(PostedEvent(Parsed::Fields(posted)))
    }
}

const METADATA: u8 = super::posted::slot("metadata") as u8;
const CHANGES: u8 = super::posted::slot("changes") as u8;

/// An object key as serde_json reads it: borrowed from the text unless it has escapes.
pub(super) struct Key<'de>(pub(super) Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Refuses the key serde_json gives a meaning to ([`RESERVED_KEY`]).
pub(super) fn check_key<E: serde::de::Error>(key: &str) -> Result<(), E> {
    if key == RESERVED_KEY {
        return Err(E::custom(format_args!(
            "the key \"{RESERVED_KEY}\" is reserved (serde_json, the JSON library \
             Stele uses, reads it as an embedded JSON text)"
        )));
    }
    Ok(())
}

/// The error of a key an object names twice.
pub(super) fn duplicate<E: serde::de::Error>(key: &str) -> E {
    E::custom(format_args!(
        "duplicate key {} (each key may appear once per object)",
        Value::String(preview(key))
    ))
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

/// A `Visitor`'s methods for JSON scalars, each made the `Value` serde_json's own
/// visitor makes of it (a float that is not finite, never read from JSON text, `null`).
macro_rules! scalar_values {
    () => {
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
    };
}
pub(super) use scalar_values;

/// serde_json's `Value` visitor, without its special keys and with repeated keys refused.
struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalar_values!();
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
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            check_key::<A::Error>(&key)?;
            match out.entry(key) {
                serde_json::map::Entry::Occupied(seen) => return Err(duplicate(seen.key())),
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(map.next_value::<StrictValue>()?.0);
                }
            }
        }
        Ok(Value::Object(out))
    }
}
