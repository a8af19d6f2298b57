use super::*;
use serde_json::{json, Value};

#[test]
fn parse_json_refuses_repeated_keys_and_the_reserved_key() {
    for (text, key) in [
        (
            r#"{"action": "a", "actor": "alice", "actor": "mallory"}"#,
            "actor",
        ),
        (r#"{"action": "a", "metadata": {"k": 1, "k": 1}}"#, "k"),
        (r#"[{"m": [{"x": 1}, {"y": 2, "y": 3}]}]"#, "y"),
        (r#"{"a\u0000": 1, "a\u0000": 2}"#, "a\u{0}"),
    ] {
        let err = parse_json(text.as_bytes()).unwrap_err().to_string();
        let want = format!("duplicate key {}", json!(key));
        assert!(err.starts_with(&want), "{text}: {err}");
        assert!(err.contains(" at line 1 column "), "{text}: {err}");
    }
    let text = r#"{"x": {"$serde_json::private::RawValue": "[1,2]"}}"#;
    let err = parse_json(text.as_bytes()).unwrap_err().to_string();
    assert!(
        err.starts_with(r#"the key "$serde_json::private::RawValue" is reserved"#),
        "{err}"
    );
    let text = r#"{"x": {"$serde_json::private::RawValuE": "[1]"}, "n": [1, -2, 2.5, -0, 1e-400, null, true, "s"]}"#;
    let v = parse_json(text.as_bytes()).unwrap();
    assert_eq!(v["x"], json!({"$serde_json::private::RawValuE": "[1]"}));
    assert_eq!(v["n"], json!([1, -2, 2.5, -0.0, 0.0, null, true, "s"]));
    // Everything else as serde_json reads it.
    for text in [
        "1e400",
        "[1,]",
        "\"\\ud800\"",
        "{\"a\":1}x",
        &"[".repeat(200),
    ] {
        assert_eq!(
            parse_json(text.as_bytes()).unwrap_err().to_string(),
            serde_json::from_str::<Value>(text).unwrap_err().to_string(),
            "{text}"
        );
    }
}

#[test]
fn canonical_json_sorts_keys_and_is_stable() {
    let v: Value =
        serde_json::from_str(r#"{ "b": [1, 2.5, {"y": 1, "x": "\u0000"}], "a": null }"#).unwrap();
    let text = canonical_json(&v);
    assert_eq!(text, r#"{"a":null,"b":[1,2.5,{"x":"\u0000","y":1}]}"#);
    let again: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(canonical_json(&again), text);
    assert_eq!(
        canonical_json_limited(&v, text.len()).as_deref(),
        Some(text.as_str())
    );
    assert_eq!(canonical_json_limited(&v, text.len() - 1), None);
}

#[test]
fn corrupt_stored_json_fails_serialization_without_panic() {
    let ev = Event {
        id: "x".into(),
        action: "a".into(),
        metadata: Some("{not json".into()),
        ..Event::default()
    };
    assert!(serde_json::to_string(&ev).is_err());
}

/// Answers are written straight from events (no `serde_json::Value` in
/// between): the bytes must be those the `Value` route wrote, keys in byte
/// order at every level, for every field the generator sets and for both
/// kinds of provenance.
#[test]
fn the_view_writes_the_bytes_a_value_would() {
    let mut gen = crate::testkit::EventGen::new(21);
    for i in 0..3_000u64 {
        let mut event = if i % 3 == 0 {
            gen.sized(900)
        } else {
            gen.next_event()
        };
        if i % 5 == 0 {
            event.changes = vec![Change {
                field: "role".into(),
                old: None,
                // Stored change values are canonical JSON (validation writes them).
                new: Some(canonical_json(&json!({"b": [1, 2.5, "é\u{0}"], "a": null}))),
            }];
            event.risk_rules = Some(vec!["new_ip".into()]);
            event.phase = Some(Phase::Progress);
            event.items_total = Some(i);
            event.batch_id = Some(format!("b-{i}"));
        }
        let stored = StoredEvent {
            seq: i + 1,
            received_at: 1_796_378_400_000_000 + i as i64,
            provenance: match i % 3 {
                0 => None,
                1 => Some(Provenance {
                    ingested_by: "loopback".into(),
                    client_addr: Some("127.0.0.1".into()),
                }),
                _ => Some(Provenance {
                    ingested_by: "cli".into(),
                    client_addr: None,
                }),
            },
            event,
        };
        let direct = serde_json::to_string(&stored).unwrap();
        let via_value = serde_json::to_value(&stored).unwrap().to_string();
        assert_eq!(direct, via_value, "event {i}");
        let direct = serde_json::to_string(&stored.event).unwrap();
        let via_value = serde_json::to_value(&stored.event).unwrap().to_string();
        assert_eq!(direct, via_value, "event {i} (client form)");
    }
}

/// `parse_posted_json` (an object straight into its fields) against `parse_json`
/// then validation: the same JSON errors, message and position included, and the
/// same validated events or field errors. One difference, by design: a value the
/// event is refused for anyway (an unknown key's, a container given to a field that
/// takes a string) is walked, not kept, so a repeated or reserved key inside it is not
/// looked for: the event is refused by validation instead.
#[test]
fn posted_json_reads_as_parse_json_then_validation_does() {
    let same = |text: &str| {
        let fields = parse_posted_json(text.as_bytes());
        let value = parse_json(text.as_bytes());
        match (fields, value) {
            (Ok(f), Err(v))
                if v.to_string().starts_with("duplicate key")
                    || v.to_string().contains("is reserved") =>
            {
                assert!(f.validate(|| "new".into()).is_err(), "{text}: {v}");
            }
            (Ok(f), Ok(v)) => {
                let has_id = v.get("id").is_some_and(|id| !id.is_null());
                assert_eq!(f.has_id(), has_id, "{text}");
                assert_eq!(
                    f.validate(|| "new".into()),
                    parse_posted_event(v, || "new".into()),
                    "{text}"
                );
            }
            (Err(f), Err(v)) => assert_eq!(f.to_string(), v.to_string(), "{text}"),
            (f, v) => panic!("{text}: {f:?} against {v:?}"),
        }
    };
    for text in [
        // Repeated keys: a field, a field first given as null, an unknown key, nested.
        r#"{"action": "a", "actor": "alice", "actor": "mallory"}"#,
        r#"{"action": "a", "actor": null, "actor": "mallory"}"#,
        r#"{"action": "a", "actor": "b", "zz": 1, "zz": 1}"#,
        r#"{"action": "a", "actor": "b", "zz": {"k": 1, "k": 2}}"#,
        r#"{"action": "a", "actor": "b", "metadata": {"k": 1, "k": 1}}"#,
        r#"{"action": "a", "actor": "b", "metadata": {"o": [{"x": 1, "y": 2, "x": 3}]}}"#,
        r#"{"action": "a", "actor": "b", "metadata": {"a": 1, "b": {"c": 1, "c": 2}}}"#,
        r#"{"action": "a", "actor": "b", "changes": [{"field": "f", "field": "g"}]}"#,
        r#"{"action": "a", "actor": "b", "changes": [{"field": "f", "x": 1, "x": 1}]}"#,
        r#"{"action": "a", "actor": "b", "changes": [{"field": "f", "new": {"v": 1, "v": 1}}]}"#,
        r#"{"action": "a", "actor": "b", "tenant": {"k": 1, "k": 2}}"#,
        r#"{"action": "a", "actor": "b", "metadata": {"x": {"$serde_json::private::RawValue": "[1,2]"}}}"#,
        r#"{"$serde_json::private::RawValue": "[1]"}"#,
        r#"{"action": "a", "x": {"$serde_json::private::RawValue": "[1]"}}"#,
        // A key with escapes is the field it spells.
        r#"{"act\u0069on": "a", "\u0061ctor": "b"}"#,
        r#"{"action": "a", "actor": "b", "a\u0000": 1, "a\u0000": 2}"#,
        // Not objects, and not JSON.
        "[1, 2]",
        "\"event\"",
        "null",
        "12",
        "{\"action\": }",
        "{\"action\": \"a\"} x",
        "",
        // Free-form values: keys out of order at every level, escapes, numbers.
        r#"{"action": "a", "actor": "b", "metadata": {"z": [1, -2, 2.5, -0, 1e2, null, true, "s\n\u00e9\/"], "b": {"y": {}, "x": []}, "a\u0000": 1, "": 0}}"#,
        r#"{"action": "a", "actor": "b", "changes": [{"old": {"b": 1, "a": [2, {"d": 1, "c": 0}]}, "field": "f", "new": 18446744073709551616}]}"#,
        r#"{"action": "a", "actor": "b", "changes": [1, null, [], {"field": null}, {"field": ["x"], "o": 1}]}"#,
        r#"{"action": "a", "actor": "b", "changes": {"field": "f"}, "metadata": [{"a": 1}]}"#,
        r#"{"action": [{"k": 1}], "actor": {"a": [1]}, "zz": [[[{"k": 1}]]]}"#,
        // Nesting past serde_json's limit, kept or only walked: refused the same.
        &format!(
            r#"{{"action": "a", "actor": "b", "metadata": {{"k": {}1{}}}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        ),
        &format!(
            r#"{{"action": "a", "actor": "b", "zz": {}1{}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        ),
        &format!(r#"{{"action": {}1{}}}"#, "[".repeat(130), "]".repeat(130)),
        &format!(r#"[{}1{}]"#, "[".repeat(130), "]".repeat(130)),
        // Valid and invalid events.
        r#"{"id": "e-1", "action": "login", "actor": "alice", "risk_score": 5.0}"#,
        r#"{"id": null, "action": "login", "source": "system", "extra": null}"#,
        r#"{"action": "x", "severity": "urgent", "ip": "nope", "seq": 1}"#,
    ] {
        same(text);
    }
    let mut gen = crate::testkit::EventGen::new(5);
    for _ in 0..300 {
        same(&serde_json::to_string(&gen.next_event()).unwrap());
    }
    // A body: an array's items are the events, anything else is one.
    let body = br#"[{"action": "a", "actor": "b"}, 3, [{"action": "c"}]]"#;
    let events = parse_posted_body(body, usize::MAX, FieldMap::none())
        .unwrap()
        .events;
    assert_eq!(events.len(), 3);
    let results: Vec<_> = events
        .into_iter()
        .map(|e| e.validate(|| "new".into()))
        .collect();
    assert!(results[0].is_ok());
    for r in &results[1..] {
        assert_eq!(r.as_ref().unwrap_err()[0].kind, FieldErrorKind::NotAnObject);
    }
    assert_eq!(
        parse_posted_body(b"{\"action\": \"a\"}", 0, FieldMap::none())
            .unwrap()
            .count,
        1
    );
    assert_eq!(
        parse_posted_body(b"[]", 1, FieldMap::none()).unwrap().count,
        0
    );
}
