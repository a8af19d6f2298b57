//! A posted event's JSON object sorted into its fields in one pass: each known key's
//! value in the slot of its row ([`FIELD_NAMES`], table order), JSON `null` dropped
//! (absent and `null` are the same for every optional field), and the keys that are
//! not fields kept, sorted, for validation to refuse. Filled from a parsed JSON map, or
//! key by key straight from the JSON text ([`super::PostedEvent`]), where a repeated
//! key is refused ([`Posted::claim`]) and a field map's names are taken as the fields
//! they name ([`Posted::claim_mapped`], [`Posted::put`]: two names giving one field the
//! same value are one field, by `Value` for scalars and by canonical text for
//! `metadata` and `changes`, so `0.0` and `-0.0`, stored differently, differ).
//!
//! Validation used to ask the object for each of its ≈ 30 fields by name (a search of
//! the map each, most for absent fields) and then scan the field names once per key:
//! ≈ 15 % of the validation's CPU was string comparison (perf on `cargo bench --bench
//! ingest`). Here every key is looked up once, among the names of its length.
//! The owned form moves the values out of the parsed JSON, so that the strings of an
//! accepted event are the ones the parser allocated, not copies. `metadata` and
//! `changes` are kept as read within their bounds ([`Free`], [`Changes`]), from the text
//! or from a `Value` alike. Knows nothing of the rules: `validate` owns those.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::bounded::{Changes, Free};
use super::field_error::FieldError;
use super::field_map::{conflict, FieldMap};
use super::fields::FIELD_NAMES;
use super::limits::{METADATA_BYTES_MAX, UNKNOWN_KEYS_NAMED};

/// The slot of the posted field `name`: its position in [`FIELD_NAMES`]. For constant
/// names; a name that is not a posted field fails the build where it is evaluated in
/// a `const` block.
pub(super) const fn slot(name: &str) -> usize {
    let mut i = 0;
    while i < FIELD_NAMES.len() {
        if same(FIELD_NAMES[i].as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("not a posted field name");
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The slot of `key`, if it names a posted field: the names are bucketed by length, and
/// within a bucket (at most a few names) the first byte is compared before the rest.
fn slot_of(key: &str) -> Option<usize> {
    /// The names of one length, with their slots.
    type Bucket = Vec<(&'static [u8], usize)>;
    const LONGEST: usize = 32;
    static BY_LEN: OnceLock<[Bucket; LONGEST + 1]> = OnceLock::new();
    const _: () = {
        let mut i = 0;
        while i < FIELD_NAMES.len() {
            assert!(
                FIELD_NAMES[i].len() <= LONGEST,
                "a field name longer than LONGEST"
            );
            i += 1;
        }
    };
    let by_len = BY_LEN.get_or_init(|| {
        let mut out = [const { Vec::new() }; LONGEST + 1];
        for (i, name) in FIELD_NAMES.iter().enumerate() {
            out[name.len()].push((name.as_bytes(), i));
        }
        out
    });
    let key = key.as_bytes();
    let first = *key.first()?;
    by_len
        .get(key.len())?
        .iter()
        .find(|(name, _)| name[0] == first && *name == key)
        .map(|&(_, i)| i)
}

/// A posted object's values by field, and its keys that are not fields. Grows with
/// its object (an empty one holds no memory of its own): a body of 16 MiB can carry
/// millions of tiny objects, all read before the batch-size check refuses them.
#[derive(Debug)]
pub(super) struct Posted {
    /// The values other than `null` given to fields, in the object's order.
    values: Vec<Value>,
    /// By slot, 1 + the position of the field's value in `values`; 0: none (absent,
    /// `null`, or taken).
    at: [u8; FIELD_NAMES.len()],
    /// The slots whose key the object named (with a value or `null`), by bit.
    seen: u64,
    /// Keys that name no posted field.
    pub(super) unknown: Unknown,
    /// `metadata`, if given (not `null`); never in `values`. Boxed, as `changes`: an
    /// object without them costs a word each.
    pub(super) metadata: Option<Box<Free>>,
    /// `changes`, if given (not `null`); never in `values`.
    pub(super) changes: Option<Box<Changes>>,
    /// With keys renamed ([`FieldMap`]): the names each field was given by.
    renamed: Option<Box<Renamed>>,
}

/// What renaming keys adds to an object read ([`Posted::claim_mapped`]).
#[derive(Debug, Default)]
struct Renamed {
    /// Each field's names so far (a name twice is a repeated key).
    names: Vec<(u8, String)>,
    /// The name each field's value came from.
    gave: Vec<(u8, String)>,
    /// Fields given different values by two names.
    conflicts: Vec<FieldError>,
}

/// A value read for a field ([`Posted::put`]), `null` as read.
#[derive(Debug)]
pub(super) enum Given {
    Value(Value),
    Free(Option<Free>),
    Changes(Option<Changes>),
}

impl Given {
    /// The value a caller holds for the field in slot `i`: `metadata` and `changes` as
    /// reading their text would give (made from the reference, never copied), any other
    /// field's as it is.
    fn of(i: u8, v: Cow<'_, Value>) -> Self {
        let i = usize::from(i);
        if v.is_null() {
            Self::Value(Value::Null)
        } else if i == const { slot("metadata") } {
            Self::Free(Some(Free::of_value(&v, METADATA_BYTES_MAX)))
        } else if i == const { slot("changes") } {
            Self::Changes(Some(Changes::of_value(&v)))
        } else {
            Self::Value(v.into_owned())
        }
    }
}

const _: () = assert!(FIELD_NAMES.len() <= 64, "`Posted::seen` has a bit a field");

/// An object's keys that name no field: the [`UNKNOWN_KEYS_NAMED`] first in byte order,
/// for validation to name, and how many more. The same whichever order the keys come
/// in, so an object read from its text and from a `Value` (keys sorted) agree.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Unknown {
    named: BTreeSet<String>,
    more: usize,
}

impl Unknown {
    /// Adds `key`; `false` if it is one of the named keys already (a repeated key).
    /// A key past the named ones is counted, not kept: repeated, it is counted again
    /// (the object is refused for its unknown keys either way).
    pub(super) fn add(&mut self, key: Cow<'_, str>) -> bool {
        if self.named.contains(key.as_ref()) {
            return false;
        }
        if self.named.len() == UNKNOWN_KEYS_NAMED {
            self.more += 1;
            match self.named.last() {
                Some(last) if key.as_ref() > last.as_str() => return true,
                _ => {
                    self.named.pop_last();
                }
            }
        }
        self.named.insert(key.into_owned());
        true
    }

    /// The named keys, in byte order.
    pub(super) fn named(&self) -> impl Iterator<Item = &String> {
        self.named.iter()
    }

    /// How many keys are not named.
    pub(super) fn more(&self) -> usize {
        self.more
    }
}

/// Where the value of a key goes ([`Posted::claim`]).
#[derive(Clone, Copy)]
pub(super) enum Claim {
    /// Into the slot of a posted field.
    Field(u8),
    /// Nowhere: the key is not a field (kept, for validation to refuse).
    Unknown,
}

impl Posted {
    pub(super) fn empty() -> Self {
        Self {
            values: Vec::new(),
            at: [0; FIELD_NAMES.len()],
            seen: 0,
            unknown: Unknown::default(),
            metadata: None,
            changes: None,
            renamed: None,
        }
    }

    /// [`Posted::claim`] with `map`'s names taken as the fields they name: a field may
    /// then be named twice by different names ([`Posted::put`] compares the values);
    /// `None` if the object gave this very name before.
    pub(super) fn claim_mapped(&mut self, key: Cow<'_, str>, map: &FieldMap) -> Option<Claim> {
        if map.is_empty() {
            return self.claim(key);
        }
        let Some(i) = slot_of(map.target(&key).unwrap_or(&key)) else {
            return self.unknown.add(key).then_some(Claim::Unknown);
        };
        let renamed = self.renamed.get_or_insert_with(Box::default);
        if renamed
            .names
            .iter()
            .any(|(s, n)| usize::from(*s) == i && **n == *key)
        {
            return None;
        }
        // At most 64 slots.
        renamed.names.push((i as u8, key.into_owned()));
        Some(Claim::Field(i as u8))
    }

    /// Puts the value `key` gave the field in slot `i` in its place: `null` is absent
    /// (it neither conflicts nor hides a value); given before under another name
    /// ([`Posted::claim_mapped`]), the same value is one field and a different one a
    /// conflict naming both.
    pub(super) fn put(&mut self, i: u8, key: &str, given: Given) {
        let slot = usize::from(i);
        // `Some(same)` if the field holds a value already.
        let held = match &given {
            Given::Value(Value::Null) | Given::Free(None) | Given::Changes(None) => return,
            Given::Value(v) => {
                (self.at[slot] != 0).then(|| self.values[usize::from(self.at[slot]) - 1] == *v)
            }
            Given::Free(Some(f)) => self.metadata.as_deref().map(|m| m == f),
            Given::Changes(Some(c)) => self.changes.as_deref().map(|h| h == c),
        };
        match held {
            Some(true) => {}
            Some(false) => {
                if let Some(r) = &mut self.renamed {
                    let first = r.gave.iter().find(|(s, _)| *s == i).map_or("", |(_, n)| n);
                    let error = conflict(FIELD_NAMES[slot], first, key);
                    r.conflicts.push(error);
                }
            }
            None => {
                match given {
                    Given::Value(v) => {
                        self.values.push(v);
                        // At most one value a slot, at most 64 slots.
                        self.at[slot] = self.values.len() as u8;
                    }
                    Given::Free(f) => self.metadata = f.map(Box::new),
                    Given::Changes(c) => self.changes = c.map(Box::new),
                }
                if let Some(r) = &mut self.renamed {
                    r.gave.push((i, key.to_owned()));
                }
            }
        }
    }

    /// The conflicts of renamed keys, if any (taken out).
    pub(super) fn conflicts(&mut self) -> Option<Vec<FieldError>> {
        let r = self.renamed.as_mut()?;
        (!r.conflicts.is_empty()).then(|| std::mem::take(&mut r.conflicts))
    }

    /// Claims `key` for the value that follows it; `None` if the object named it
    /// before.
    pub(super) fn claim(&mut self, key: Cow<'_, str>) -> Option<Claim> {
        match slot_of(&key) {
            Some(i) => {
                let bit = 1u64 << i;
                let first = self.seen & bit == 0;
                self.seen |= bit;
                // At most 64 slots (above).
                first.then_some(Claim::Field(i as u8))
            }
            None => self.unknown.add(key).then_some(Claim::Unknown),
        }
    }

    /// Sorts `obj`'s entries, moving its values.
    pub(super) fn owned(obj: Map<String, Value>) -> Self {
        let mut out = Self::empty();
        for (key, value) in obj {
            // A map's keys are distinct.
            if let Some(Claim::Field(i)) = out.claim(Cow::Borrowed(&key)) {
                out.put(i, &key, Given::of(i, Cow::Owned(value)));
            }
        }
        out
    }

    /// Sorts `obj`'s entries, copying the values of its fields.
    pub(super) fn borrowed(obj: &Map<String, Value>) -> Self {
        let mut out = Self::empty();
        for (key, value) in obj {
            if let Some(Claim::Field(i)) = out.claim(Cow::Borrowed(key)) {
                out.put(i, key, Given::of(i, Cow::Borrowed(value)));
            }
        }
        out
    }

    /// Whether the field in `slot` has a value other than `null`.
    pub(super) fn has(&self, slot: usize) -> bool {
        self.at[slot] != 0
    }

    /// The value of the field in `slot` (`None` if absent or `null`), taken out.
    pub(super) fn take(&mut self, slot: usize) -> Option<Value> {
        let at = std::mem::take(&mut self.at[slot]);
        (at != 0).then(|| std::mem::take(&mut self.values[usize::from(at) - 1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_posted_name_finds_its_own_slot_and_others_none() {
        for (i, name) in FIELD_NAMES.iter().enumerate() {
            assert_eq!(slot_of(name), Some(i), "{name}");
            assert_eq!(slot(name), i, "{name}");
        }
        for other in [
            "",
            "seq",
            "received_at",
            "ingested_by",
            "risk_rules",
            "Action",
            "actio",
        ] {
            assert_eq!(slot_of(other), None, "{other:?}");
        }
    }

    /// A body may hold millions of tiny objects, all read before the batch-size check
    /// (a review found the first version took ≈ 1 KB an object, a value slot per field:
    /// 5.7 GB for 16 MiB of `{}`): an empty one costs only its own few words.
    #[test]
    fn an_object_costs_memory_by_its_fields_not_by_the_field_table() {
        assert!(
            std::mem::size_of::<Posted>() <= 128,
            "{}",
            std::mem::size_of::<Posted>()
        );
        let Value::Object(obj) = json!({"zz": 1}) else {
            unreachable!()
        };
        assert_eq!(Posted::owned(obj).values.capacity(), 0);
        assert_eq!(Posted::empty().values.capacity(), 0);
    }

    #[test]
    fn nulls_are_absent_and_unknown_keys_are_kept_sorted_in_both_forms() {
        let v = json!({"zz": 1, "action": "login", "actor": null, "aa": null, "tenant": "t"});
        let Value::Object(obj) = v else {
            unreachable!()
        };
        for mut p in [Posted::borrowed(&obj), Posted::owned(obj.clone())] {
            assert_eq!(p.unknown.named().collect::<Vec<_>>(), ["aa", "zz"]);
            assert!(!p.has(const { slot("actor") }));
            assert!(p.has(const { slot("tenant") }));
            assert_eq!(p.take(const { slot("action") }), Some(json!("login")));
            assert_eq!(p.take(const { slot("action") }), None, "taken once");
        }
    }
}
