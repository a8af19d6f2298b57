//! Invalid UTF-8 and NUL: a 400 in every string field of an event for bytes
//! that are not UTF-8; NUL refused or kept as each field's grammar says.

use super::*;

/// Every string field of an event, and how it is checked: identifiers refuse
/// every control character but tab, LF and CR; free text refuses NUL; `id`
/// is printable ASCII; enums and timestamps have their own grammar.
const STRING_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("timestamp", "timestamp"),
    ("action", "ident"),
    ("actor", "ident"),
    ("tenant", "ident"),
    ("category", "ident"),
    ("source", "enum"),
    ("status", "enum"),
    ("severity", "enum"),
    ("entity_type", "ident"),
    ("entity_id", "ident"),
    ("entity_name", "text"),
    ("user_id", "ident"),
    ("user_name", "ident"),
    ("session_id", "ident"),
    ("correlation_id", "ident"),
    ("ip", "ident"),
    ("user_agent", "text"),
    ("description", "text"),
];

/// A valid value for a string field, into which a bad character can go.
fn valid_for(field: &str) -> &'static str {
    match field {
        "timestamp" => "2026-11-23T10:00:00Z",
        "source" => "user",
        "status" => "success",
        "severity" => "info",
        "ip" => "10.0.0.1",
        _ => "value",
    }
}

#[test]
fn invalid_utf8_is_a_400_in_every_string_field() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let mut acked = seed(&d, "utf8", 10);
    let before = log_last_seq(&d);

    // Raw invalid UTF-8 anywhere a string goes: invalid JSON, with the
    // position of the bad byte.
    let bad_sequences: &[&[u8]] = &[
        b"\xff",
        b"\xc0\xaf",         // overlong '/'
        b"\xed\xa0\x80",     // an encoded surrogate
        b"\xe2\x82",         // truncated
        b"\xf4\x90\x80\x80", // beyond U+10FFFF
        b"\x80",             // a lone continuation byte
    ];
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for (field, _) in STRING_FIELDS {
        for bad in bad_sequences {
            let mut lit = b"\"".to_vec();
            lit.extend_from_slice(valid_for(field).as_bytes());
            lit.extend_from_slice(bad);
            lit.push(b'"');
            bodies.push((format!("{field} with {bad:x?}"), event_with(field, &lit)));
        }
    }
    for (place, json) in [
        ("a metadata key", &b"{\"k\xff\": 1}"[..]),
        ("a metadata value", b"{\"k\": \"v\xff\"}"),
        (
            "a nested metadata value",
            b"{\"k\": [{\"n\": \"\xed\xa0\x80\"}]}",
        ),
    ] {
        bodies.push((place.to_string(), event_with("metadata", json)));
    }
    for (place, change) in [
        ("changes[].field", &b"[{\"field\": \"f\xff\"}]"[..]),
        (
            "changes[].old",
            b"[{\"field\": \"f\", \"old\": \"\xc0\xaf\"}]",
        ),
        (
            "changes[].new",
            b"[{\"field\": \"f\", \"new\": {\"\xff\": 1}}]",
        ),
    ] {
        bodies.push((place.to_string(), event_with("changes", change)));
    }
    for (what, body) in &bodies {
        let bad_at = body
            .iter()
            .position(|&b| b >= 0x80)
            .expect("a non-ASCII byte");
        let p = problem_of(
            &post_bytes(&d, "application/json", body),
            400,
            "invalid-json",
        );
        assert!(
            detail(&p).contains("invalid unicode code point"),
            "{what}: {p}"
        );
        assert_eq!(p["line"], 1, "{what}: {p}");
        let column = p["column"].as_u64().unwrap() as usize;
        assert!(
            column >= bad_at && column <= bad_at + 4,
            "{what}: column {column}, the bad byte is at {bad_at}: {p}"
        );
    }
    // In NDJSON: the line is named.
    let mut nd = br#"{"action": "a", "actor": "b"}"#.to_vec();
    nd.extend_from_slice(b"\n");
    nd.extend_from_slice(&event_with("description", b"\"caf\xe9\""));
    nd.extend_from_slice(b"\n");
    let p = problem_of(
        &post_bytes(&d, "application/x-ndjson", &nd),
        400,
        "invalid-json",
    );
    assert_eq!(p["line"], 2, "{p}");
    assert!(
        detail(&p).starts_with("line 2 is not JSON: invalid unicode code point"),
        "{p}"
    );
    // Escaped surrogates that make no character.
    for (esc, says) in [
        (r#""\ud800""#, "escape"),
        (r#""\udfff""#, "escape"),
        (r#""\ud800\u0041""#, "escape"),
        (r#""a\ud83d""#, "escape"),
    ] {
        for field in ["actor", "description"] {
            let body = event_with(field, esc.as_bytes());
            let p = problem_of(
                &post_bytes(&d, "application/json", &body),
                400,
                "invalid-json",
            );
            assert!(detail(&p).contains(says), "{field} = {esc}: {p}");
        }
    }
    // A raw NUL (or any raw control character) inside a string is not JSON.
    for raw in [&b"\x00"[..], b"\x01", b"\x1f"] {
        let mut lit = b"\"a".to_vec();
        lit.extend_from_slice(raw);
        lit.extend_from_slice(b"b\"");
        for field in ["actor", "description", "id"] {
            let p = problem_of(
                &post_bytes(&d, "application/json", &event_with(field, &lit)),
                400,
                "invalid-json",
            );
            assert!(detail(&p).contains("control character"), "{field}: {p}");
        }
    }
    // A raw NUL between tokens is not JSON either.
    let p = problem_of(
        &post_bytes(
            &d,
            "application/json",
            b"{\"action\": \"a\",\x00 \"actor\": \"b\"}",
        ),
        400,
        "invalid-json",
    );
    assert_eq!((&p["line"], &p["column"]), (&json!(1), &json!(16)), "{p}");
    assert_eq!(log_last_seq(&d), before, "invalid UTF-8 stored events");

    assert_healthy(&mut d);
    acked.push(assert_ingests(&d, "utf8-after"));
    assert_intact(&d, &acked);
}

#[test]
fn nul_follows_the_event_model() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let mut acked = seed(&d, "nul", 10);
    let before = log_last_seq(&d);

    // NUL as a JSON escape: every checked string field refuses it, naming
    // the field; one batch of one bad event per field stores nothing.
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for (field, kind) in STRING_FIELDS {
        let mut ev = json!({"action": "a", "actor": "b"});
        ev[*field] = json!(format!("{}\u{0}x", valid_for(field)));
        want.push((batch.len(), field.to_string(), *kind));
        batch.push(ev);
    }
    let mut ev = json!({"action": "a", "actor": "b"});
    ev["changes"] = json!([{"field": "st\u{0}atus", "old": 1}]);
    want.push((batch.len(), "changes[0].field".into(), "ident"));
    batch.push(ev);
    let p = problem_of(&d.post(&Value::Array(batch.clone())), 400, "invalid-events");
    let errors = p["errors"].as_array().unwrap();
    assert_eq!(errors.len(), want.len(), "{p}");
    for ((index, field, kind), e) in want.iter().zip(errors) {
        assert_eq!(
            (&e["index"], &e["field"]),
            (&json!(index), &json!(field)),
            "{e}"
        );
        assert_eq!(e["kind"], "invalid_value", "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(field.as_str()), "{e}");
        match *kind {
            "ident" => assert!(m.contains("control character U+0000"), "{e}"),
            "text" => assert!(m.contains("NUL character (U+0000)"), "{e}"),
            _ => {}
        }
    }
    // The same in the raw text form `\u0000`.
    let p = problem_of(
        &post_bytes(
            &d,
            "application/json",
            br#"{"action": "a\u0000", "actor": "b", "description": "\u0000"}"#,
        ),
        400,
        "invalid-events",
    );
    let fields: Vec<&Value> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["field"])
        .collect();
    assert_eq!(fields, [&json!("action"), &json!("description")], "{p}");
    assert_eq!(
        log_last_seq(&d),
        before,
        "a NUL in a checked field stored events"
    );

    // Free-form JSON (metadata keys and values, change values) takes NUL:
    // it round-trips exactly.
    let with_nul = json!({
        "id": "nul-in-json",
        "action": "a",
        "actor": "b",
        "metadata": {"\u{0}": "\u{0}", "k\u{0}ey": ["v\u{0}al", {"\u{0}n": "\u{0}\u{1}\u{1f}"}]},
        "changes": [{"field": "f", "old": "\u{0}", "new": {"a\u{0}": "b\u{0}"}}],
    });
    let (st, _, r) = d.post(&with_nul);
    assert_eq!(st, 201, "{r}");
    let seq = r["events"][0]["seq"].as_u64().unwrap();
    acked.push(Acked {
        id: "nul-in-json".into(),
        seq,
        posted: with_nul.clone(),
    });
    // Also as raw text: the escapes are what is stored and shown.
    let raw_text =
        br#"{"id": "nul-raw", "action": "a", "actor": "b", "metadata": {"a\u0000b": "c\u0000d"}}"#;
    let (st, _, r) = post_bytes(&d, "application/json", raw_text);
    assert_eq!(st, 201, "{r}");
    acked.push(Acked {
        id: "nul-raw".into(),
        seq: r["events"][0]["seq"].as_u64().unwrap(),
        posted: serde_json::from_slice(raw_text).unwrap(),
    });
    wait_indexed(&d, seq + 1);
    let (head, text) = d.get_raw("/v1/events/nul-raw");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        text.contains(r#""metadata":{"a\u0000b":"c\u0000d"}"#),
        "{text}"
    );
    // Reposting exactly what was shown is an idempotent replay.
    let (st, _, r) = d.post(&with_nul);
    assert_eq!((st, &r["replayed"]), (200, &json!(true)), "{r}");

    assert_healthy(&mut d);
    acked.push(assert_ingests(&d, "utf8-after"));
    assert_intact(&d, &acked);
}
