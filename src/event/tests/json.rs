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
