//! A posted object's values read within bounds: what ingest keeps of a value is at
//! most what could be stored, never a tree of the whole JSON text.
//!
//! A `serde_json::Value` costs 16 to 32 times its JSON text (a number in an array: 2
//! bytes of text, a 32-byte `Value`), so one posted event whose `metadata` was an
//! array of 7.9 million numbers (15 MiB of text, refused as too large) took a release
//! daemon from 64 to 588 MiB of memory before this module. Here:
//!
//! * `metadata` and a change's `old` and `new` ([`Free`]) are written straight into
//!   their canonical text ([`super::canonical_json`]: compact, object keys in byte
//!   order) as they are read, with the depth and size limits checked on the way: past
//!   either nothing more is kept (the rest is walked only to know the depth, as
//!   validation reports a value too deep before one too large).
//! * `changes` ([`Changes`]): its first [`CHANGES_COUNT_MAX`] entries read as above,
//!   the rest counted.
//! * Any other field's value ([`Scalar`]) is a `Value` when it is a scalar; a container
//!   there is always refused for its type, so it is read as an empty one of its kind.
//! * The value of an unknown key and a posted item that is not an object ([`Skip`])
//!   are read and dropped.
//!
//! The repeated and reserved keys of [`super::parse_json`] are refused in what is
//! kept (`metadata`, changes within their limits), at the same place of the text; a
//! value that is only walked (dropped, or past a limit) is not searched for them: the
//! event holding it is refused anyway. serde_json's nesting limit (128) holds
//! everywhere, since the walk recurses through the same deserializer.
//!
//! The same values a caller holds as a `Value` (Stele's own events, the fuzz target's
//! comparison) become the same [`Free`] and
//! [`Changes`] through [`Free::of_value`] and [`Changes::of_value`]: validation sees
//! one shape whichever way an event came. Knows nothing of the error messages:
//! `validate` owns those.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{Map, Value};

use super::json::{canonical_json_limited, check_key, deeper_than, duplicate, scalar_values, Key};
use super::posted::Unknown;
use super::*;

/// The JSON type name of `v`, for messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => NULL,
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => ARRAY,
        Value::Object(_) => OBJECT,
    }
}

const NULL: &str = "null";
const ARRAY: &str = "an array";
pub(super) const OBJECT: &str = "an object";

/// The value under `key`, treating JSON `null` as absent.
pub(super) fn present<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// Why a free-form value is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Objects and arrays nested deeper than the limit.
    TooDeep,
    /// Its canonical text longer than the limit.
    TooLarge,
}

/// A free-form value (`metadata`, a change's `old` or `new`) as read: its JSON type
/// and its canonical text, or why it is not kept.
#[derive(Debug, PartialEq)]
pub(super) struct Free {
    /// The value's JSON type name (`"an object"`, `"a number"`, …).
    pub(super) kind: &'static str,
    /// The canonical text, within the depth and size limits.
    pub(super) text: Result<String, Refusal>,
}

impl Free {
    /// The `Free` of a value a caller holds: the same as reading its text would give.
    pub(super) fn of_value(v: &Value, max_bytes: usize) -> Self {
        let text = if deeper_than(v, METADATA_DEPTH_MAX) {
            Err(Refusal::TooDeep)
        } else {
            canonical_json_limited(v, max_bytes).ok_or(Refusal::TooLarge)
        };
        Self {
            kind: type_name(v),
            text,
        }
    }

    /// Reads the next value of `map` as a `Free` (`None` for `null`).
    fn next_of<'de, A: MapAccess<'de>>(
        map: &mut A,
        max_bytes: usize,
    ) -> Result<Option<Self>, A::Error> {
        let mut canon = Canon::new(max_bytes);
        let kind = map.next_value_seed(canon.seed())?;
        Ok((kind != NULL).then(|| canon.into_free(kind)))
    }

    /// Reads the next value of `map` as `metadata` (`None` for `null`).
    pub(super) fn next_metadata<'de, A: MapAccess<'de>>(
        map: &mut A,
    ) -> Result<Option<Self>, A::Error> {
        Self::next_of(map, METADATA_BYTES_MAX)
    }
}

/// The canonical text being written, and whether a limit was passed.
struct Canon {
    out: Vec<u8>,
    max_bytes: usize,
    /// Nested deeper than [`METADATA_DEPTH_MAX`]: nothing more is read but syntax.
    deep: bool,
    /// Longer than `max_bytes`: nothing more is written (the depth is still looked at).
    large: bool,
}

impl Canon {
    fn new(max_bytes: usize) -> Self {
        Self {
            out: Vec::new(),
            max_bytes,
            deep: false,
            large: false,
        }
    }

    /// The seed that reads a whole value into this text.
    fn seed(&mut self) -> FreeSeed<'_> {
        FreeSeed {
            canon: self,
            depth: 1,
            comma: false,
        }
    }

    /// The value read, of JSON type `kind`.
    fn into_free(self, kind: &'static str) -> Free {
        let text = if self.deep {
            Err(Refusal::TooDeep)
        } else if self.large {
            Err(Refusal::TooLarge)
        } else {
            // Every piece written is UTF-8 (serde_json's escapes, ASCII punctuation).
            String::from_utf8(self.out).map_err(|_| Refusal::TooLarge)
        };
        Free { kind, text }
    }

    fn keeping(&self) -> bool {
        !self.deep && !self.large
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.keeping() {
            self.out.extend_from_slice(bytes);
            self.check();
        }
    }

    fn put_str(&mut self, s: &str) {
        if !self.keeping() {
            return;
        }
        // Quoted and escaped, a string is at least two bytes longer.
        if self.out.len() + s.len() + 2 > self.max_bytes {
            self.give_up();
            return;
        }
        // Writing into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut self.out, s);
        self.check();
    }

    fn put_json<T: serde::Serialize>(&mut self, v: T) {
        if self.keeping() {
            let _ = serde_json::to_writer(&mut self.out, &v);
            self.check();
        }
    }

    fn check(&mut self) {
        if self.out.len() > self.max_bytes {
            self.give_up();
        }
    }

    /// Too large: the text is dropped (its memory too).
    fn give_up(&mut self) {
        self.large = true;
        self.out = Vec::new();
    }
}

/// Reads one value into a [`Canon`] at nesting level `depth` (its own, if it is an
/// object or array), after a comma if `comma` (an array's items after the first: the
/// comma is written only once the item is known to exist); gives its JSON type name.
struct FreeSeed<'c> {
    canon: &'c mut Canon,
    depth: usize,
    comma: bool,
}

impl FreeSeed<'_> {
    /// The comma before the value, if it is owed.
    fn lead(&mut self) -> &mut Canon {
        if std::mem::take(&mut self.comma) {
            self.canon.put(b",");
        }
        self.canon
    }
}

impl<'de> DeserializeSeed<'de> for FreeSeed<'_> {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_any(self)
    }
}

/// Past this many keys an object's repeated keys are found with a hash set, not by
/// comparing with each key before.
const KEYS_SCANNED: usize = 16;

impl<'de> Visitor<'de> for FreeSeed<'_> {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(mut self, b: bool) -> Result<&'static str, E> {
        self.lead().put(if b { b"true" } else { b"false" });
        Ok("a boolean")
    }
    fn visit_i64<E>(mut self, n: i64) -> Result<&'static str, E> {
        self.lead().put_json(n);
        Ok("a number")
    }
    fn visit_u64<E>(mut self, n: u64) -> Result<&'static str, E> {
        self.lead().put_json(n);
        Ok("a number")
    }
    fn visit_f64<E>(mut self, f: f64) -> Result<&'static str, E> {
        // As `StrictVisitor`: a number that is not finite (never read from JSON text)
        // would be `null`, which is what serde_json writes for one.
        self.lead().put_json(f);
        Ok("a number")
    }
    fn visit_str<E>(mut self, s: &str) -> Result<&'static str, E> {
        self.lead().put_str(s);
        Ok("a string")
    }
    fn visit_unit<E>(mut self) -> Result<&'static str, E> {
        self.lead().put(b"null");
        Ok(NULL)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<&'static str, A::Error> {
        if self.depth > METADATA_DEPTH_MAX {
            self.canon.deep = true;
        }
        if self.canon.deep {
            while seq.next_element_seed(Skip)?.is_some() {}
            return Ok(ARRAY);
        }
        self.lead().put(b"[");
        let mut comma = false;
        while seq
            .next_element_seed(FreeSeed {
                canon: &mut *self.canon,
                depth: self.depth + 1,
                comma,
            })?
            .is_some()
        {
            comma = true;
        }
        self.canon.put(b"]");
        Ok(ARRAY)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<&'static str, A::Error> {
        if self.depth > METADATA_DEPTH_MAX {
            self.canon.deep = true;
        }
        if self.canon.deep {
            while map.next_key::<IgnoredAny>()?.is_some() {
                map.next_value_seed(Skip)?;
            }
            return Ok(OBJECT);
        }
        self.lead();
        let canon = self.canon;
        let start = canon.out.len();
        canon.put(b"{");
        // Each entry's key and where its `"key":value` is in `out`.
        let mut entries: Vec<(Cow<'de, str>, Range<usize>)> = Vec::new();
        let mut sorted = true;
        let mut index: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            check_key::<A::Error>(&key)?;
            if canon.keeping() {
                let after_last = entries.last().is_none_or(|(last, _)| *last < key);
                let repeated = if let Some(index) = &mut index {
                    !index.insert(key.clone())
                } else if sorted && after_last {
                    // Above every key before it.
                    false
                } else if entries.len() < KEYS_SCANNED {
                    entries.iter().any(|(k, _)| *k == key)
                } else {
                    let mut all: HashSet<Cow<'de, str>> =
                        entries.iter().map(|(k, _)| k.clone()).collect();
                    let repeated = !all.insert(key.clone());
                    index = Some(all);
                    repeated
                };
                if repeated {
                    return Err(duplicate(&key));
                }
                sorted &= after_last;
                if !entries.is_empty() {
                    canon.put(b",");
                }
            }
            let from = canon.out.len();
            canon.put_str(&key);
            canon.put(b":");
            map.next_value_seed(FreeSeed {
                canon: &mut *canon,
                depth: self.depth + 1,
                comma: false,
            })?;
            if canon.keeping() {
                entries.push((key, from..canon.out.len()));
            }
        }
        if canon.keeping() && !sorted {
            // Same bytes, entries in key order: the canonical text's length is known
            // before it is sorted, so the size limit was checked exactly.
            let body = canon.out.split_off(start + 1);
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (i, (_, at)) in entries.iter().enumerate() {
                if i > 0 {
                    canon.out.push(b',');
                }
                canon
                    .out
                    .extend_from_slice(&body[at.start - start - 1..at.end - start - 1]);
            }
        }
        canon.put(b"}");
        Ok(OBJECT)
    }
}

/// Reads a value and drops it: serde_json's syntax and nesting limit checked, nothing
/// kept, repeated keys not looked for.
pub(super) struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Not `IgnoredAny`: serde_json skips that without its nesting limit, and a
        // value nested 200 deep must be refused the same wherever it is.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// Reads the value of a field that takes a scalar: a scalar as a `Value`, an object or
/// array as an empty one (validation refuses it by its type, which is all it shows).
pub(super) struct Scalar;

impl<'de> DeserializeSeed<'de> for Scalar {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scalar {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalar_values!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Skip.visit_seq(seq)?;
        Ok(Value::Array(Vec::new()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Skip.visit_map(map)?;
        Ok(Value::Object(Map::new()))
    }
}

/// `changes` as read.
#[derive(Debug, PartialEq)]
pub(super) enum Changes {
    /// Not an array: its JSON type name.
    NotArray(&'static str),
    /// An array of more than [`CHANGES_COUNT_MAX`] items: how many.
    TooMany(usize),
    /// The entries, in posted order.
    Items(Vec<ChangeIn>),
}

/// One item of `changes` as read.
#[derive(Debug, PartialEq)]
pub(super) enum ChangeIn {
    /// Not an object: its JSON type name.
    NotObject(&'static str),
    /// An object.
    Entry {
        /// `field` (`None`: absent or `null`).
        field: Option<Value>,
        /// `old`, `new` (`None`: absent or `null`).
        old: Option<Free>,
        new: Option<Free>,
        /// The keys other than `field`, `old` and `new`.
        unknown: Unknown,
    },
}

impl Changes {
    /// The `Changes` of a value a caller holds: the same as reading its text would give.
    pub(super) fn of_value(v: &Value) -> Self {
        let Value::Array(items) = v else {
            return Self::NotArray(type_name(v));
        };
        if items.len() > CHANGES_COUNT_MAX {
            return Self::TooMany(items.len());
        }
        Self::Items(items.iter().map(ChangeIn::of_value).collect())
    }

    /// Reads the next value of `map` as `changes` (`None` for `null`).
    pub(super) fn next_of<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Self>, A::Error> {
        map.next_value_seed(ChangesSeed)
    }
}

impl ChangeIn {
    fn of_value(v: &Value) -> Self {
        let Value::Object(obj) = v else {
            return Self::NotObject(type_name(v));
        };
        let free = |key| present(obj, key).map(|v| Free::of_value(v, CHANGE_VALUE_BYTES_MAX));
        Self::Entry {
            field: present(obj, "field").cloned(),
            old: free("old"),
            new: free("new"),
            unknown: obj
                .keys()
                .filter(|k| !CHANGE_FIELD_NAMES.contains(&k.as_str()))
                .fold(Unknown::default(), |mut unknown, k| {
                    unknown.add(Cow::Borrowed(k));
                    unknown
                }),
        }
    }
}

struct ChangesSeed;

impl<'de> DeserializeSeed<'de> for ChangesSeed {
    type Value = Option<Changes>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Changes>, D::Error> {
        d.deserialize_any(self)
    }
}

/// A scalar where `changes` or one of its items should be: its type name.
macro_rules! scalar_kinds {
    ($out:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($out("a boolean"))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($out("a number"))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($out("a number"))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($out("a number"))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($out("a string"))
        }
    };
}

impl<'de> Visitor<'de> for ChangesSeed {
    type Value = Option<Changes>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalar_kinds!(|kind| Some(Changes::NotArray(kind)));
    fn visit_unit<E>(self) -> Result<Option<Changes>, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<Changes>, A::Error> {
        Skip.visit_map(map)?;
        Ok(Some(Changes::NotArray(OBJECT)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Changes>, A::Error> {
        let mut items = Vec::new();
        while items.len() < CHANGES_COUNT_MAX {
            match seq.next_element_seed(ChangeSeed)? {
                Some(item) => items.push(item),
                None => return Ok(Some(Changes::Items(items))),
            }
        }
        let mut count = items.len();
        while seq.next_element_seed(Skip)?.is_some() {
            count += 1;
        }
        Ok(Some(if count > CHANGES_COUNT_MAX {
            Changes::TooMany(count)
        } else {
            Changes::Items(items)
        }))
    }
}

struct ChangeSeed;

impl<'de> DeserializeSeed<'de> for ChangeSeed {
    type Value = ChangeIn;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ChangeIn, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChangeSeed {
    type Value = ChangeIn;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalar_kinds!(ChangeIn::NotObject);
    fn visit_unit<E>(self) -> Result<ChangeIn, E> {
        Ok(ChangeIn::NotObject(NULL))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ChangeIn, A::Error> {
        Skip.visit_seq(seq)?;
        Ok(ChangeIn::NotObject(ARRAY))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChangeIn, A::Error> {
        let (mut field, mut old, mut new) = (None, None, None);
        let mut seen = [false; 3];
        let mut unknown = Unknown::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            check_key::<A::Error>(&key)?;
            let Some(at) = CHANGE_FIELD_NAMES.iter().position(|k| *k == key) else {
                if !unknown.add(key.clone()) {
                    return Err(duplicate(&key));
                }
                map.next_value_seed(Skip)?;
                continue;
            };
            if std::mem::replace(&mut seen[at], true) {
                return Err(duplicate(&key));
            }
            match at {
                0 => field = Some(map.next_value_seed(Scalar)?).filter(|v| !v.is_null()),
                1 => old = Free::next_of(&mut map, CHANGE_VALUE_BYTES_MAX)?,
                _ => new = Free::next_of(&mut map, CHANGE_VALUE_BYTES_MAX)?,
            }
        }
        Ok(ChangeIn::Entry {
            field,
            old,
            new,
            unknown,
        })
    }
}

#[cfg(test)]
mod tests;
