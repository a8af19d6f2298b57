use super::*;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt;
use std::str::FromStr;

#[test]
fn reserved_kinds_are_refused_from_clients_and_allowed_for_stele() {
    for (field, value) in [
        ("category", "audit_access"),
        ("category", "Audit_Access"),
        ("category", "stele.finding"),
        ("action", "stele.alert"),
        ("action", "STELE.x"),
        ("action", "audit_access"),
    ] {
        let v = with(field, json!(value));
        let e = one_err(v.clone(), field, FieldErrorKind::Reserved);
        assert!(e.message.contains("reserved"), "{e}");
        assert_eq!(e.kind.as_str(), "reserved");
        let ev = parse_stele_event(&v, no_id).unwrap();
        assert!(ev.action == value || ev.category.as_deref() == Some(value));
    }
    // Generic words (the actions of audit_access records) and look-alikes
    // that are not the reserved names stay the clients'.
    for (field, value) in [
        ("action", "search"),
        ("action", "get"),
        ("category", "audit"),
        ("category", "audit_access_log"),
        ("category", "stele"),
        ("category", "my.stele.x"),
        ("category", "ştele.x"),
    ] {
        ok(with(field, json!(value)));
    }
    assert!(is_reserved_kind("stele."));
    assert!(!is_reserved_kind("stel"));
}

#[test]
fn server_fields_are_refused_with_their_own_message() {
    for key in [
        "seq",
        "received_at",
        "ingested_by",
        "client_addr",
        "risk_rules",
    ] {
        let e = one_err(with(key, json!("x")), key, FieldErrorKind::UnknownField);
        assert!(e.message.contains("assigned by the server"), "{e}");
    }
}

#[test]
fn error_missing() {
    let e = one_err(json!({"actor": "a"}), "action", FieldErrorKind::Missing);
    assert!(e.message.contains("required"));
    let e = one_err(
        json!({"action": "x", "actor": null}),
        "actor",
        FieldErrorKind::Missing,
    );
    assert!(e.message.contains("actor, user_id or source"), "{e}");
    ok(json!({"id": "e", "action": "x", "user_id": "u-1"}));
    ok(json!({"id": "e", "action": "x", "source": "system"}));
    one_err(
        with("changes", json!([{"old": 1}])),
        "changes[0].field",
        FieldErrorKind::Missing,
    );
}

#[test]
fn error_wrong_type() {
    one_err(with("actor", json!(5)), "actor", FieldErrorKind::WrongType);
    one_err(
        with("timestamp", json!(1_700_000_000)),
        "timestamp",
        FieldErrorKind::WrongType,
    );
    one_err(
        with("metadata", json!([1])),
        "metadata",
        FieldErrorKind::WrongType,
    );
    one_err(
        with("changes", json!({})),
        "changes",
        FieldErrorKind::WrongType,
    );
    one_err(
        with("changes", json!([1])),
        "changes[0]",
        FieldErrorKind::WrongType,
    );
    one_err(
        with("risk_score", json!(5.5)),
        "risk_score",
        FieldErrorKind::WrongType,
    );
    one_err(
        with("risk_score", json!("5")),
        "risk_score",
        FieldErrorKind::WrongType,
    );
    one_err(
        with("severity", json!(3)),
        "severity",
        FieldErrorKind::WrongType,
    );
    one_err(with("id", json!(3)), "id", FieldErrorKind::WrongType);
}

#[test]
fn error_too_long() {
    let e = one_err(
        with("actor", json!("a".repeat(SHORT_FIELD_BYTES_MAX + 1))),
        "actor",
        FieldErrorKind::TooLong,
    );
    assert!(
        e.message.contains("257") && e.message.contains("256"),
        "{e}"
    );
    ok(with("actor", json!("é".repeat(SHORT_FIELD_BYTES_MAX / 2))));
    one_err(
        with("actor", json!("é".repeat(SHORT_FIELD_BYTES_MAX / 2 + 1))),
        "actor",
        FieldErrorKind::TooLong,
    );
    one_err(
        with("description", json!("d".repeat(DESCRIPTION_BYTES_MAX + 1))),
        "description",
        FieldErrorKind::TooLong,
    );
    one_err(
        with("id", json!("i".repeat(ID_BYTES_MAX + 1))),
        "id",
        FieldErrorKind::TooLong,
    );
    ok(with("id", json!("i".repeat(ID_BYTES_MAX))));
}

#[test]
fn error_invalid_value() {
    one_err(
        with("source", json!("human")),
        "source",
        FieldErrorKind::InvalidValue,
    );
    one_err(
        with("status", json!("cancelled")),
        "status",
        FieldErrorKind::InvalidValue,
    );
    one_err(
        with("ip", json!("300.1.1.1")),
        "ip",
        FieldErrorKind::InvalidValue,
    );
    one_err(
        with("timestamp", json!("yesterday")),
        "timestamp",
        FieldErrorKind::InvalidValue,
    );
    one_err(
        with("actor", json!("a\u{1}b")),
        "actor",
        FieldErrorKind::InvalidValue,
    );
    one_err(
        with("actor", json!("a\u{7f}")),
        "actor",
        FieldErrorKind::InvalidValue,
    );
    // The byte at which the control character sits, after multi-byte characters.
    let e = one_err(
        with("user_name", json!("ünï\u{1}x")),
        "user_name",
        FieldErrorKind::InvalidValue,
    );
    assert!(e.message.contains("U+0001 at byte 5"), "{e}");
    one_err(
        with("actor", json!("")),
        "actor",
        FieldErrorKind::InvalidValue,
    );
    one_err(
        with("action", json!("")),
        "action",
        FieldErrorKind::InvalidValue,
    );
    let e = one_err(
        with("description", json!("a\0b")),
        "description",
        FieldErrorKind::InvalidValue,
    );
    assert!(e.message.contains("NUL"));
    one_err(
        with("changes", json!([{"field": "a\0"}])),
        "changes[0].field",
        FieldErrorKind::InvalidValue,
    );
    // Tab/LF/CR are allowed in identifiers; other controls only in free text.
    ok(with("actor", json!("a\tb")));
    ok(with("description", json!("\u{1b}[31mred\u{1b}[0m")));
    ok(with("description", json!("")));
    for bad_id in ["", "has space", "tab\t", "ünï", "new\nline"] {
        one_err(
            with("id", json!(bad_id)),
            "id",
            FieldErrorKind::InvalidValue,
        );
    }
}

#[test]
fn error_out_of_range() {
    for bad in [json!(101), json!(-1), json!(1e3), json!(u64::MAX)] {
        let e = one_err(
            with("risk_score", bad),
            "risk_score",
            FieldErrorKind::OutOfRange,
        );
        assert!(e.message.contains("from 0 to 100"), "{e}");
    }
    assert_eq!(ok(with("risk_score", json!(100))).risk_score, Some(100));
    assert_eq!(ok(with("risk_score", json!(0))).risk_score, Some(0));
    assert_eq!(ok(with("risk_score", json!(7.0))).risk_score, Some(7));
    one_err(
        with("duration_ms", json!(-1)),
        "duration_ms",
        FieldErrorKind::OutOfRange,
    );
    one_err(
        with("duration_ms", json!(1e20)),
        "duration_ms",
        FieldErrorKind::OutOfRange,
    );
    one_err(
        with("duration_ms", json!(-1.0)),
        "duration_ms",
        FieldErrorKind::OutOfRange,
    );
    assert_eq!(
        ok(with("duration_ms", json!(u64::MAX))).duration_ms,
        Some(u64::MAX)
    );
    one_err(
        with("timestamp", json!("0000-01-01T00:00:00+00:01")),
        "timestamp",
        FieldErrorKind::OutOfRange,
    );
    one_err(
        with("timestamp", json!("9999-12-31T23:59:59-00:01")),
        "timestamp",
        FieldErrorKind::OutOfRange,
    );
    assert_eq!(
        ok(with("timestamp", json!("0000-01-01T00:00:00Z"))).timestamp,
        Some(TIMESTAMP_MIN_MICROS)
    );
    assert_eq!(
        ok(with("timestamp", json!("9999-12-31T23:59:59.999999Z"))).timestamp,
        Some(TIMESTAMP_MAX_MICROS)
    );
}

#[test]
fn error_too_large() {
    let big = "m".repeat(METADATA_BYTES_MAX);
    let e = one_err(
        with("metadata", json!({ "k": big })),
        "metadata",
        FieldErrorKind::TooLarge,
    );
    assert!(e.message.contains("65536"), "{e}");
    // Exactly at the limit is fine: {"k":"…"} is 8 bytes of overhead.
    ok(with(
        "metadata",
        json!({ "k": "m".repeat(METADATA_BYTES_MAX - 8) }),
    ));
    one_err(
        with(
            "metadata",
            json!({ "k": "m".repeat(METADATA_BYTES_MAX - 7) }),
        ),
        "metadata",
        FieldErrorKind::TooLarge,
    );

    let changes: Vec<Value> = (0..=CHANGES_COUNT_MAX)
        .map(|i| json!({"field": format!("f{i}")}))
        .collect();
    one_err(
        with("changes", json!(changes)),
        "changes",
        FieldErrorKind::TooLarge,
    );
    let changes: Vec<Value> = (0..CHANGES_COUNT_MAX)
        .map(|i| json!({"field": format!("f{i}")}))
        .collect();
    assert_eq!(
        ok(with("changes", json!(changes))).changes.len(),
        CHANGES_COUNT_MAX
    );

    one_err(
        with(
            "changes",
            json!([{"field": "f", "new": "v".repeat(CHANGE_VALUE_BYTES_MAX)}]),
        ),
        "changes[0].new",
        FieldErrorKind::TooLarge,
    );

    // Every field within its own limit, but the whole event too large.
    let value = "v".repeat(CHANGE_VALUE_BYTES_MAX - 2);
    let changes: Vec<Value> = (0..10)
        .map(|i| json!({"field": format!("f{i}"), "old": value, "new": value}))
        .collect();
    let mut v = with("changes", json!(changes));
    v["description"] = json!("d".repeat(DESCRIPTION_BYTES_MAX));
    v["metadata"] = json!({ "k": "m".repeat(METADATA_BYTES_MAX - 8) });
    let e = one_err(v, "", FieldErrorKind::TooLarge);
    assert!(e.message.contains("262144"), "{e}");
}

fn nested(depth: usize) -> Value {
    let mut v = json!({});
    for i in 1..depth {
        v = if i % 2 == 0 {
            json!({ "k": v })
        } else {
            json!([v])
        };
    }
    v
}

#[test]
fn error_too_deep() {
    assert!(!deeper_than(&json!(1), 0));
    assert!(deeper_than(&json!([]), 0));
    assert!(!deeper_than(&json!([[1], {"a": [2]}]), 3));
    assert!(deeper_than(&json!([[1], {"a": [[]]}]), 3));
    assert!(!deeper_than(
        &nested(METADATA_DEPTH_MAX),
        METADATA_DEPTH_MAX
    ));
    assert!(deeper_than(
        &nested(METADATA_DEPTH_MAX + 1),
        METADATA_DEPTH_MAX
    ));
    // nested(n) is an array or object of depth n; wrap it in the metadata object.
    let mut obj = nested(METADATA_DEPTH_MAX);
    if !obj.is_object() {
        obj = json!({ "k": nested(METADATA_DEPTH_MAX - 1) });
    }
    ok(with("metadata", obj.clone()));
    one_err(
        with("metadata", json!({ "k": obj })),
        "metadata",
        FieldErrorKind::TooDeep,
    );
    ok(with(
        "changes",
        json!([{"field": "f", "old": nested(METADATA_DEPTH_MAX)}]),
    ));
    one_err(
        with(
            "changes",
            json!([{"field": "f", "old": nested(METADATA_DEPTH_MAX + 1)}]),
        ),
        "changes[0].old",
        FieldErrorKind::TooDeep,
    );
}

#[test]
fn error_unknown_field() {
    let e = one_err(with("foo", json!(1)), "foo", FieldErrorKind::UnknownField);
    assert!(e.message.contains("metadata"), "{e}");
    one_err(with("seq", json!(1)), "seq", FieldErrorKind::UnknownField);
    one_err(
        with("changes", json!([{"field": "f", "before": 1}])),
        "changes[0].before",
        FieldErrorKind::UnknownField,
    );
    // Null-valued unknown keys are still unknown.
    one_err(
        with("bar", Value::Null),
        "bar",
        FieldErrorKind::UnknownField,
    );
    let long_key = "k".repeat(1000);
    let e = one_err(
        with(&long_key, json!(1)),
        &format!("{}…", "k".repeat(PREVIEW_BYTES)),
        FieldErrorKind::UnknownField,
    );
    assert!(e.message.len() < 200);
}

/// An object's unknown keys past the first [`UNKNOWN_KEYS_NAMED`] in byte order are
/// counted in one error, whatever order they come in (a review found that a body of
/// 1.6 million short keys, each named, took ≈ 1.7 GB to answer).
#[test]
fn unknown_keys_past_the_named_ones_are_counted_in_one_error() {
    let n = UNKNOWN_KEYS_NAMED + 8;
    let mut v = minimal();
    for i in 0..n {
        v[format!("x{i:03}")] = json!(i);
    }
    let errors = errs(v);
    assert_eq!(errors.len(), UNKNOWN_KEYS_NAMED + 1, "{errors:#?}");
    for (i, e) in errors[..UNKNOWN_KEYS_NAMED].iter().enumerate() {
        assert_eq!(
            (e.field.as_str(), e.kind),
            (format!("x{i:03}").as_str(), FieldErrorKind::UnknownField)
        );
    }
    let more = &errors[UNKNOWN_KEYS_NAMED];
    assert_eq!(
        (more.field.as_str(), more.kind),
        ("", FieldErrorKind::UnknownField)
    );
    assert!(
        more.message
            .starts_with("8 more unknown fields (only the first 32"),
        "{more}"
    );
    // Keys in falling order, read from the text: the same errors.
    let mut text = r#"{"id": "e-1", "action": "login", "actor": "alice""#.to_string();
    for i in (0..n).rev() {
        text.push_str(&format!(r#", "x{i:03}": {i}"#));
    }
    text.push('}');
    let from_text = parse_posted_json(text.as_bytes())
        .unwrap()
        .validate(no_id)
        .unwrap_err();
    assert_eq!(from_text, errors);
    // In a change.
    let mut change = json!({"field": "f"});
    for i in 0..n {
        change[format!("y{i:03}")] = json!(i);
    }
    let errors = errs(with("changes", json!([change])));
    assert_eq!(errors.len(), UNKNOWN_KEYS_NAMED + 1, "{errors:#?}");
    assert_eq!(errors[0].field, "changes[0].y000");
    let more = &errors[UNKNOWN_KEYS_NAMED];
    assert_eq!(more.field, "changes[0]");
    assert!(
        more.message
            .starts_with("8 more unknown fields in changes[0]"),
        "{more}"
    );
}

#[test]
fn error_not_an_object() {
    for v in [json!([]), json!("x"), json!(null), json!(1)] {
        one_err(v, "", FieldErrorKind::NotAnObject);
    }
}

#[test]
fn collects_all_errors_at_once() {
    let errors = errs(json!({
        "action": "x",
        "actor": "a",
        "severity": "urgent",
        "risk_score": 101,
        "ip": "nope",
    }));
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["severity", "ip", "risk_score"]);

    let errors = errs(json!({
        "id": "a b",
        "changes": [{"field": 1, "zz": 0}, {"field": "ok"}, "no"],
        "metadata": 3,
        "extra": true,
    }));
    let got: Vec<(&str, FieldErrorKind)> =
        errors.iter().map(|e| (e.field.as_str(), e.kind)).collect();
    assert_eq!(
        got,
        [
            ("id", FieldErrorKind::InvalidValue),
            ("action", FieldErrorKind::Missing),
            ("changes[0].field", FieldErrorKind::WrongType),
            ("changes[0].zz", FieldErrorKind::UnknownField),
            ("changes[2]", FieldErrorKind::WrongType),
            ("metadata", FieldErrorKind::WrongType),
            ("extra", FieldErrorKind::UnknownField),
            ("actor", FieldErrorKind::Missing),
        ]
    );
}

#[test]
fn unknown_severity_lists_allowed_values() {
    let e = one_err(
        with("severity", json!("urgent")),
        "severity",
        FieldErrorKind::InvalidValue,
    );
    assert!(e.message.contains("\"urgent\""), "{e}");
    assert!(
        e.message
            .contains("debug, info, notice, warning, error, critical"),
        "{e}"
    );
    assert_eq!(
        "urgent".parse::<Severity>().unwrap_err().to_string(),
        "unknown severity \"urgent\"; allowed values are: debug, info, notice, warning, error, critical"
    );
}

#[test]
fn timestamps_convert_offsets_to_utc() {
    let base = parse_timestamp("2026-11-23T10:00:00Z").unwrap();
    assert_eq!(base, 1_795_428_000_000_000);
    for s in [
        "2026-11-23T11:00:00+01:00",
        "2026-11-23T05:30:00-04:30",
        "2026-11-23T10:00:00.000000+00:00",
        "2026-11-23t10:00:00z",
    ] {
        assert_eq!(parse_timestamp(s), Ok(base), "{s}");
    }
    assert_eq!(
        parse_timestamp("2026-11-23T10:00:00.0000019Z"),
        Ok(base + 1)
    );
    assert_eq!(format_micros(base + 1), "2026-11-23T10:00:00.000001Z");
    assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
    assert_eq!(
        format_micros(TIMESTAMP_MIN_MICROS),
        "0000-01-01T00:00:00.000000Z"
    );
    assert_eq!(
        format_micros(TIMESTAMP_MAX_MICROS),
        "9999-12-31T23:59:59.999999Z"
    );
    assert_eq!(format_micros(i64::MAX), i64::MAX.to_string());
    let ev = ok(with("timestamp", json!("2026-11-23T12:00:00.25+02:00")));
    assert_eq!(
        serde_json::to_value(&ev).unwrap()["timestamp"],
        "2026-11-23T10:00:00.250000Z"
    );
    assert!(parse_timestamp("2026-11-23 10:00")
        .unwrap_err()
        .contains("RFC 3339"));
    assert!(parse_timestamp("0000-01-01T00:00:00+01:00")
        .unwrap_err()
        .contains("range"));
}

#[test]
fn null_is_absent_and_ids_are_generated_only_when_needed() {
    let mut v = minimal();
    for key in FIELD_NAMES {
        if !["action", "actor"].contains(key) {
            v[*key] = Value::Null;
        }
    }
    let mut called = 0;
    let ev = parse_event(&v, || {
        called += 1;
        "gen-1".to_owned()
    })
    .unwrap();
    assert_eq!(called, 1);
    assert_eq!(
        ev,
        Event {
            id: "gen-1".into(),
            action: "login".into(),
            actor: Some("alice".into()),
            ..Event::default()
        }
    );
    // An invalid event does not consume an id.
    assert!(parse_event(&json!({"action": 1}), || panic!("no id")).is_err());
    let id = new_event_id();
    assert_eq!(id.len(), 36);
    assert_eq!(ok(with("id", json!(id.clone()))).id, id);
}

#[test]
fn ip_is_canonicalised() {
    assert_eq!(
        ok(with("ip", json!("203.0.113.7"))).ip.as_deref(),
        Some("203.0.113.7")
    );
    assert_eq!(
        ok(with("ip", json!("2001:0DB8::0001"))).ip.as_deref(),
        Some("2001:db8::1")
    );
    one_err(
        with("ip", json!("fe80::1%eth0")),
        "ip",
        FieldErrorKind::InvalidValue,
    );
    one_err(
        with("ip", json!(" 1.2.3.4")),
        "ip",
        FieldErrorKind::InvalidValue,
    );
}

#[test]
fn enums_are_consistent() {
    fn check<E>(all: &[E], names: &[&str], as_str: fn(E) -> &'static str)
    where
        E: Copy + FromStr + PartialEq + fmt::Debug + Serialize,
    {
        assert_eq!(all.len(), names.len());
        for (&variant, &name) in all.iter().zip(names) {
            assert_eq!(as_str(variant), name);
            assert_eq!(name.parse::<E>().ok(), Some(variant));
            assert_eq!(serde_json::to_value(variant).unwrap(), json!(name));
        }
    }
    check(Source::ALL, Source::NAMES, Source::as_str);
    check(Status::ALL, Status::NAMES, Status::as_str);
    check(Severity::ALL, Severity::NAMES, Severity::as_str);
    assert!(Severity::ALL.windows(2).all(|w| w[0] < w[1]));
    assert!(Severity::Critical > Severity::Warning);
    assert_eq!(Source::parse("USER"), None);
    assert_eq!(
        serde_json::from_str::<Status>("\"canceled\"").unwrap(),
        Status::Canceled
    );
    // The on-disk discriminant is the declaration index.
    let bytes = bincode::encode_to_vec(Severity::Critical, bincode_config()).unwrap();
    assert_eq!(bytes, [5]);
}

#[test]
fn field_error_serializes_kind_in_snake_case() {
    let e = FieldError::new("changes[2].field", FieldErrorKind::WrongType, "m");
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!({"field": "changes[2].field", "kind": "wrong_type", "message": "m"})
    );
    for kind in [
        FieldErrorKind::Missing,
        FieldErrorKind::WrongType,
        FieldErrorKind::TooLong,
        FieldErrorKind::InvalidValue,
        FieldErrorKind::OutOfRange,
        FieldErrorKind::TooLarge,
        FieldErrorKind::TooDeep,
        FieldErrorKind::UnknownField,
        FieldErrorKind::NotAnObject,
    ] {
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
    }
    assert_eq!(e.to_string(), "changes[2].field: m");
}

#[test]
fn process_and_batch_fields_follow_their_rules() {
    let mut v = with("process_name", json!("nightly_export"));
    for (k, val) in [
        ("process_id", json!("run-7")),
        ("batch_id", json!("b-1")),
        ("phase", json!("progress")),
        ("items_total", json!(10)),
        ("items_processed", json!(4)),
        ("items_failed", json!(1)),
    ] {
        v[k] = val;
    }
    let ev = ok(v.clone());
    assert_eq!(ev.process_name.as_deref(), Some("nightly_export"));
    assert_eq!(ev.process_id.as_deref(), Some("run-7"));
    assert_eq!(ev.batch_id.as_deref(), Some("b-1"));
    assert_eq!(ev.phase, Some(Phase::Progress));
    assert_eq!(
        (ev.items_total, ev.items_processed, ev.items_failed),
        (Some(10), Some(4), Some(1))
    );
    assert_eq!(ev.risk_rules, None);

    let mut more_failed = v.clone();
    more_failed["items_failed"] = json!(5);
    let e = one_err(more_failed, "items_failed", FieldErrorKind::OutOfRange);
    assert!(e.message.contains("cannot exceed items_processed"), "{e}");
    let e = one_err(
        with("items_total", json!(ITEMS_MAX + 1)),
        "items_total",
        FieldErrorKind::OutOfRange,
    );
    assert!(e.message.contains("from 0 to"), "{e}");
    let e = one_err(
        with("phase", json!("done")),
        "phase",
        FieldErrorKind::InvalidValue,
    );
    assert!(e.message.contains("started, progress, finished"), "{e}");
    one_err(
        with("process_id", json!("")),
        "process_id",
        FieldErrorKind::InvalidValue,
    );
}
