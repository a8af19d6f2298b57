//! The optional field-name mapping of ingest (`[ingest.field_map]`): events
//! posted with another system's names (`event_type`, `level`, `subaccountId`,
//! ...) renamed to Stele's before validation, over HTTP and in `stele append`.
//!
//! Owns the map's rules (every target is a field a client may post, no source
//! is itself a Stele field) and the renaming of one JSON event. It renames
//! keys only, never values, and never drops data: an event holding a mapped
//! name and its Stele name (or two names mapped to one field) with different
//! values is refused naming both. Validation stays `validate.rs`'s.

use super::field_error::{preview, FieldError, FieldErrorKind};
use super::fields::FIELD_NAMES;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Foreign name → Stele field name. Empty: events are taken as posted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMap {
    map: BTreeMap<String, String>,
}

impl FieldMap {
    /// Checks `map`: every target is a field a client may post
    /// ([`FIELD_NAMES`]), and no source is one (renaming Stele's own field
    /// away would make it unpostable).
    ///
    /// # Errors
    ///
    /// The first bad entry: its foreign name and a sentence naming the
    /// allowed fields.
    pub fn new(map: BTreeMap<String, String>) -> Result<FieldMap, (String, String)> {
        for (from, to) in &map {
            if !FIELD_NAMES.contains(&to.as_str()) {
                return Err((
                    from.clone(),
                    format!(
                        "\"{from}\" is mapped to \"{to}\", which is not a field of a Stele \
                         event; allowed: {}",
                        FIELD_NAMES.join(", ")
                    ),
                ));
            }
            if FIELD_NAMES.contains(&from.as_str()) {
                return Err((
                    from.clone(),
                    format!(
                        "\"{from}\" is a field of a Stele event and cannot be mapped \
                         (to \"{to}\"); map only names Stele does not use"
                    ),
                ));
            }
            if from.is_empty() {
                return Err((from.clone(), "an empty name cannot be mapped".into()));
            }
        }
        Ok(FieldMap { map })
    }

    /// No mapping.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The mapping, foreign name → Stele name.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.map
    }

    /// Renames the mapped keys of `event` (an object; anything else is left
    /// for validation to refuse). A mapped key whose value is `null` is
    /// absent, as for Stele's own fields.
    ///
    /// # Errors
    ///
    /// One [`FieldErrorKind::Conflict`] per Stele field that would receive two
    /// different values (from its own name and a mapped one, or from two
    /// mapped names), naming both keys; nothing is renamed then.
    pub fn apply(&self, event: &mut Value) -> Result<(), Vec<FieldError>> {
        let Value::Object(obj) = event else {
            return Ok(());
        };
        if self.map.is_empty() || !self.map.keys().any(|k| obj.contains_key(k)) {
            return Ok(());
        }
        let mut renamed = Map::new();
        // The key each Stele field's value came from.
        let mut origin: BTreeMap<&str, String> = BTreeMap::new();
        let mut errors = Vec::new();
        for (key, value) in obj.iter() {
            let (target, from) = match self.map.get(key) {
                Some(to) => (to.as_str(), key),
                None => (key.as_str(), key),
            };
            // `null` is absent: it neither conflicts nor hides a value.
            if value.is_null() && (self.map.contains_key(key) || renamed.contains_key(target)) {
                continue;
            }
            match renamed.get(target) {
                Some(held) if held.is_null() => {}
                Some(held) if held == value => continue,
                Some(_) => {
                    errors.push(FieldError::new(
                        target,
                        FieldErrorKind::Conflict,
                        format!(
                            "\"{}\" and \"{}\" both give {target} (ingest.field_map), with \
                             different values; send one of them, or the same value in both",
                            preview(&origin[target]),
                            preview(from),
                        ),
                    ));
                    continue;
                }
                None => {}
            }
            origin.insert(target, from.clone());
            renamed.insert(target.to_string(), value.clone());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        *obj = renamed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed_map() -> FieldMap {
        let m: BTreeMap<String, String> = [
            ("event_type", "action"),
            ("activityType", "action"),
            ("level", "severity"),
            ("subaccountId", "tenant"),
            ("resourceId", "entity_id"),
            ("userId", "user_id"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        FieldMap::new(m).unwrap()
    }

    #[test]
    fn foreign_names_become_stele_names_and_values_are_kept() {
        let mut ev = json!({"event_type": "login", "level": "warning", "subaccountId": "acme",
            "resourceId": "r-1", "userId": "u-7", "description": "d", "metadata": {"level": 1}});
        seed_map().apply(&mut ev).unwrap();
        assert_eq!(
            ev,
            json!({"action": "login", "severity": "warning", "tenant": "acme",
                "entity_id": "r-1", "user_id": "u-7", "description": "d", "metadata": {"level": 1}})
        );
    }

    #[test]
    fn unmapped_unknown_names_are_left_for_validation() {
        let mut ev = json!({"event_type": "login", "operationId": "op"});
        seed_map().apply(&mut ev).unwrap();
        assert_eq!(ev, json!({"action": "login", "operationId": "op"}));
        let mut not_object = json!([1]);
        seed_map().apply(&mut not_object).unwrap();
        assert_eq!(not_object, json!([1]));
    }

    #[test]
    fn both_names_with_different_values_are_refused_naming_both() {
        let mut ev = json!({"action": "login", "event_type": "logout"});
        let errs = seed_map().apply(&mut ev).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "action");
        assert_eq!(errs[0].kind, FieldErrorKind::Conflict);
        assert!(
            errs[0].message.contains("\"action\""),
            "{}",
            errs[0].message
        );
        assert!(
            errs[0].message.contains("\"event_type\""),
            "{}",
            errs[0].message
        );
        assert_eq!(
            ev,
            json!({"action": "login", "event_type": "logout"}),
            "untouched"
        );
        // Two foreign names for one field.
        let mut ev = json!({"event_type": "a", "activityType": "b"});
        let errs = seed_map().apply(&mut ev).unwrap_err();
        assert!(
            errs[0].message.contains("\"activityType\""),
            "{}",
            errs[0].message
        );
        assert!(
            errs[0].message.contains("\"event_type\""),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn equal_values_and_nulls_are_not_conflicts() {
        let mut ev = json!({"action": "login", "event_type": "login", "level": null});
        seed_map().apply(&mut ev).unwrap();
        assert_eq!(ev, json!({"action": "login"}));
        let mut ev = json!({"severity": null, "level": "error"});
        seed_map().apply(&mut ev).unwrap();
        assert_eq!(ev, json!({"severity": "error"}));
    }

    #[test]
    fn the_map_names_only_stele_fields_as_targets() {
        let one = |a: &str, b: &str| FieldMap::new([(a.to_string(), b.to_string())].into());
        let (key, msg) = one("level", "priority").unwrap_err();
        assert_eq!(key, "level");
        assert!(msg.contains("\"priority\""), "{msg}");
        assert!(
            msg.contains("allowed: id, timestamp, action, actor"),
            "{msg}"
        );
        assert!(
            one("level", "seq").is_err(),
            "a stored field cannot be posted"
        );
        let (key, msg) = one("actor", "user_id").unwrap_err();
        assert_eq!(key, "actor");
        assert!(msg.contains("is a field of a Stele event"), "{msg}");
        assert!(one("", "action").is_err());
        assert!(FieldMap::default().is_empty());
    }
}
