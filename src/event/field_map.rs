//! The optional field-name mapping of ingest (`[ingest.field_map]`): events
//! posted with another system's names (`event_type`, `level`, `subaccountId`,
//! ...) renamed to Stele's before validation, over HTTP and in `stele append`.
//!
//! Owns the map's rules (every target is a field a client may post, no source
//! is itself a Stele field), its lookup, and the error of a conflict. The
//! renaming is done as an object is read (`posted.rs`: a mapped name is
//! claimed as the field it names, so no event is read whole first). It
//! renames an event's own keys only, never values or keys inside them, and
//! never drops data: an event holding a mapped name and its Stele name (or two
//! names mapped to one field) with different values is refused naming both
//! (the first in the text first). Validation stays `validate.rs`'s.

use super::field_error::{preview, FieldError, FieldErrorKind};
use super::fields::FIELD_NAMES;
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

    /// No mapping, for readers that take one.
    pub fn none() -> &'static FieldMap {
        static NONE: FieldMap = FieldMap {
            map: BTreeMap::new(),
        };
        &NONE
    }

    /// The Stele field `key` names, if it is a mapped (foreign) name.
    pub(super) fn target(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }
}

/// The error of a field two names gave different values: `first` gave the value kept,
/// `then` another. The renaming itself is done as an object is read
/// (`Posted::claim_mapped`, `Posted::put`): a mapped name is claimed as the field it
/// names; `null` under either name is absent; the same value under both is one field.
pub(super) fn conflict(target: &str, first: &str, then: &str) -> FieldError {
    FieldError::new(
        target,
        FieldErrorKind::Conflict,
        format!(
            "\"{}\" and \"{}\" both give {target} (ingest.field_map), with different values; \
             send one of them, or the same value in both",
            preview(first),
            preview(then),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `text` read with the map, as ingest does, and validated.
    fn read(text: &str) -> Result<crate::event::Event, Vec<FieldError>> {
        crate::event::parse_posted_json_mapped(text.as_bytes(), &seed_map())
            .unwrap()
            .validate(|| "new".into())
    }

    #[test]
    fn foreign_names_become_stele_names_and_values_are_kept() {
        let ev = read(
            r#"{"event_type": "login", "level": "warning", "subaccountId": "acme",
                "resourceId": "r-1", "userId": "u-7", "description": "d", "metadata": {"level": 1}}"#,
        )
        .unwrap();
        assert_eq!(ev.action, "login");
        assert_eq!(ev.severity, Some(crate::event::Severity::Warning));
        assert_eq!(ev.tenant.as_deref(), Some("acme"));
        assert_eq!(ev.entity_id.as_deref(), Some("r-1"));
        assert_eq!(ev.user_id.as_deref(), Some("u-7"));
        assert_eq!(ev.description.as_deref(), Some("d"));
        // Only an event's own keys are renamed, never those inside its values.
        assert_eq!(ev.metadata.as_deref(), Some(r#"{"level":1}"#));
        // Without the map the same names are unknown.
        let plain = crate::event::parse_posted_json(br#"{"event_type": "login", "actor": "a"}"#)
            .unwrap()
            .validate(|| "new".into())
            .unwrap_err();
        assert_eq!(plain[0].kind, FieldErrorKind::Missing, "{plain:?}");
    }

    #[test]
    fn unmapped_unknown_names_are_left_for_validation() {
        let errs =
            read(r#"{"event_type": "login", "userId": "u", "operationId": "op"}"#).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "operationId");
        assert_eq!(errs[0].kind, FieldErrorKind::UnknownField);
        assert_eq!(
            read("[1]").unwrap_err()[0].kind,
            FieldErrorKind::NotAnObject
        );
    }

    #[test]
    fn both_names_with_different_values_are_refused_naming_both() {
        for text in [
            r#"{"action": "login", "event_type": "logout", "actor": "a"}"#,
            r#"{"event_type": "logout", "action": "login", "actor": "a", "bogus": 1}"#,
        ] {
            let errs = read(text).unwrap_err();
            assert_eq!(errs.len(), 1, "only the conflict: {errs:?}");
            assert_eq!(errs[0].field, "action");
            assert_eq!(errs[0].kind, FieldErrorKind::Conflict);
            let m = &errs[0].message;
            assert!(
                m.contains("\"action\"") && m.contains("\"event_type\""),
                "{m}"
            );
        }
        // Two foreign names for one field; metadata under two names.
        let errs = read(r#"{"event_type": "a", "activityType": "b", "actor": "x"}"#).unwrap_err();
        let m = &errs[0].message;
        assert!(
            m.contains("\"activityType\"") && m.contains("\"event_type\""),
            "{m}"
        );
        let map = FieldMap::new([("extra".to_string(), "metadata".to_string())].into()).unwrap();
        let read_with = |text: &str| {
            crate::event::parse_posted_json_mapped(text.as_bytes(), &map)
                .unwrap()
                .validate(|| "new".into())
        };
        let base = r#""action": "a", "actor": "b""#;
        let errs = read_with(&format!(
            r#"{{{base}, "metadata": {{"k": 1}}, "extra": {{"k": 2}}}}"#
        ))
        .unwrap_err();
        assert_eq!(
            (errs[0].field.as_str(), errs[0].kind),
            ("metadata", FieldErrorKind::Conflict)
        );
        let ev = read_with(&format!(
            r#"{{{base}, "metadata": {{"b": 1, "a": 2}}, "extra": {{"a": 2, "b": 1}}}}"#
        ))
        .unwrap();
        assert_eq!(ev.metadata.as_deref(), Some(r#"{"a":2,"b":1}"#));
    }

    #[test]
    fn a_name_twice_is_a_repeated_key_even_between_its_other_names() {
        for text in [
            r#"{"level": "info", "level": "info", "action": "a", "actor": "b"}"#,
            r#"{"severity": "info", "level": "info", "level": "info", "action": "a", "actor": "b"}"#,
            r#"{"level": "info", "severity": "info", "severity": "info", "action": "a", "actor": "b"}"#,
        ] {
            let err = crate::event::parse_posted_json_mapped(text.as_bytes(), &seed_map())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("duplicate key"), "{text}: {err}");
        }
    }

    #[test]
    fn equal_values_and_nulls_are_not_conflicts() {
        let ev = read(r#"{"action": "login", "event_type": "login", "level": null, "actor": "a"}"#)
            .unwrap();
        assert_eq!((ev.action.as_str(), ev.severity), ("login", None));
        let ev =
            read(r#"{"severity": null, "level": "error", "actor": "a", "action": "x"}"#).unwrap();
        assert_eq!(ev.severity, Some(crate::event::Severity::Error));
        let ev =
            read(r#"{"level": "error", "severity": null, "actor": "a", "action": "x"}"#).unwrap();
        assert_eq!(ev.severity, Some(crate::event::Severity::Error));
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
