//! JSON that parsers trip on: deep nesting (a 400, no stack overflow: the real
//! binary, so an overflow is a dead daemon), numbers beyond i64 and f64 (clear
//! answers, read back as stored), duplicate keys (refused, naming the key), and
//! millions of tiny items (refused for their count without building them: peak memory).

use super::*;

#[test]
fn deeply_nested_json_is_a_400_without_stack_overflow() {
    const LEVELS: usize = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    let mut acked = seed(&d, "deep", 10);
    let before = log_last_seq(&d);
    let arrays = |closed: bool| {
        let mut s = "[".repeat(LEVELS);
        if closed {
            s.push_str(&"]".repeat(LEVELS));
        }
        s
    };
    let objects = |closed: bool| {
        let mut s = r#"{"a":"#.repeat(LEVELS);
        if closed {
            s.push('1');
            s.push_str(&"}".repeat(LEVELS));
        }
        s
    };
    let mut bodies: Vec<(String, &str, String)> = Vec::new();
    for closed in [false, true] {
        for (shape, deep) in [("arrays", arrays(closed)), ("objects", objects(closed))] {
            let what = |place: &str| {
                format!(
                    "{LEVELS} levels of {shape} ({}) {place}",
                    if closed { "closed" } else { "open" }
                )
            };
            bodies.push((what("as the body"), "application/json", deep.clone()));
            bodies.push((
                what("in metadata"),
                "application/json",
                format!(r#"{{"action": "a", "actor": "b", "metadata": {{"x": {deep}}}}}"#),
            ));
            bodies.push((
                what("in a change value"),
                "application/json",
                format!(r#"{{"action": "a", "actor": "b", "changes": [{{"field": "f", "old": {deep}}}]}}"#),
            ));
            bodies.push((
                what("on an NDJSON line"),
                "application/x-ndjson",
                format!("{{\"action\": \"a\", \"actor\": \"b\"}}\n{{\"action\": \"a\", \"actor\": \"b\", \"metadata\": {deep}}}\n"),
            ));
        }
    }
    for (what, ctype, body) in &bodies {
        let answer = post_bytes(&d, ctype, body.as_bytes());
        assert_eq!(answer.0, 400, "{what}: {}", answer.2);
        let p = problem_of(&post_bytes(&d, ctype, body.as_bytes()), 400, "invalid-json");
        assert!(
            detail(&p).contains("recursion limit exceeded"),
            "{what}: {p}"
        );
        assert!(p["line"].is_u64() && p["column"].is_u64(), "{what}: {p}");
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "{what}: the daemon died"
        );
    }
    // Within the parser's limit, the event model's: metadata 16 levels deep
    // (itself the first) is accepted, 17 is refused naming the field.
    let nest = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({"a": v});
        }
        v
    };
    let p = problem_of(
        &d.post(&json!({"action": "a", "actor": "b", "metadata": nest(17)})),
        400,
        "invalid-events",
    );
    assert_eq!(p["errors"][0]["field"], "metadata", "{p}");
    assert_eq!(p["errors"][0]["kind"], "too_deep", "{p}");
    let p = problem_of(
        &d.post(&json!({"action": "a", "actor": "b",
                         "changes": [{"field": "f", "new": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}]})),
        400,
        "invalid-events",
    );
    assert_eq!(p["errors"][0]["field"], "changes[0].new", "{p}");
    assert_eq!(log_last_seq(&d), before, "deep nesting stored events");
    let deepest = json!({"id": "deep-16", "action": "a", "actor": "b", "metadata": nest(16)});
    let (st, _, r) = d.post(&deepest);
    assert_eq!(st, 201, "{r}");
    acked.push(Acked {
        id: "deep-16".into(),
        seq: r["events"][0]["seq"].as_u64().unwrap(),
        posted: deepest,
    });
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}

#[test]
fn numbers_beyond_i64_and_f64_get_clear_answers_and_read_back_as_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let mut acked = seed(&d, "num", 10);
    let before = log_last_seq(&d);

    // Beyond f64: not JSON Stele can hold, wherever the number is.
    for n in [
        "1e400",
        "-1e400",
        "1e99999999999999999999",
        "-123456789e999",
        "1.5e309",
    ] {
        for (field, literal) in [
            ("metadata", format!(r#"{{"x": {n}}}"#)),
            ("metadata", format!(r#"{{"x": [0, {{"y": {n}}}]}}"#)),
            ("changes", format!(r#"[{{"field": "f", "new": {n}}}]"#)),
            ("risk_score", n.to_string()),
            ("duration_ms", n.to_string()),
        ] {
            let body = event_with(field, literal.as_bytes());
            let p = problem_of(
                &post_bytes(&d, "application/json", &body),
                400,
                "invalid-json",
            );
            assert!(
                detail(&p).contains("number out of range"),
                "{field} = {n}: {p}"
            );
        }
    }
    // The numeric fields: a clear error naming the field.
    for (field, literal, kind) in [
        ("risk_score", "101", "out_of_range"),
        ("risk_score", "-1", "out_of_range"),
        (
            "risk_score",
            "123456789012345678901234567890",
            "out_of_range",
        ),
        ("risk_score", "-9223372036854775809", "out_of_range"),
        ("risk_score", "0.5", "wrong_type"),
        ("risk_score", "1e-7", "wrong_type"),
        ("duration_ms", "18446744073709551616", "out_of_range"),
        ("duration_ms", "1.8446744073709552e19", "out_of_range"),
        (
            "duration_ms",
            "123456789012345678901234567890",
            "out_of_range",
        ),
        ("duration_ms", "-1", "out_of_range"),
        ("duration_ms", "-9223372036854775808", "out_of_range"),
        ("duration_ms", "1.5", "wrong_type"),
    ] {
        let body = event_with(field, literal.as_bytes());
        let p = problem_of(
            &post_bytes(&d, "application/json", &body),
            400,
            "invalid-events",
        );
        assert_eq!(
            (&p["errors"][0]["field"], &p["errors"][0]["kind"]),
            (&json!(field), &json!(kind)),
            "{field} = {literal}: {p}"
        );
        let m = p["errors"][0]["message"].as_str().unwrap();
        assert!(m.contains(field), "{p}");
    }
    assert_eq!(
        log_last_seq(&d),
        before,
        "an out-of-range number stored events"
    );

    // What is accepted reads back as stored: integers within i64/u64
    // exactly, others as the nearest double (README: metadata integers
    // beyond u64 are kept as floats), -0 as -0.0, underflow as 0.0.
    let posted = br#"{"id": "numbers", "action": "a", "actor": "b",
        "risk_score": 1e2, "duration_ms": 18446744073709551615,
        "metadata": {
            "u64max": 18446744073709551615, "i64min": -9223372036854775808,
            "beyond_u64": 18446744073709551616, "below_i64": -9223372036854775809,
            "huge_int": 123456789012345678901234567890,
            "neg_huge_int": -123456789012345678901234567890,
            "negzero": -0, "negzero_f": -0.0, "underflow": 1e-400, "zero_exp": 0e99999999999999999999,
            "f64max": 1.7976931348623157e308, "f64min_sub": 5e-324, "tenth": 0.1,
            "exp": 1E+2, "many_digits": 3.14159265358979323846264338327950288419716939937510
        },
        "changes": [{"field": "n", "old": -0, "new": 123456789012345678901234567890}]}"#;
    let (st, _, r) = post_bytes(&d, "application/json", posted);
    assert_eq!(st, 201, "{r}");
    let seq = r["events"][0]["seq"].as_u64().unwrap();
    wait_indexed(&d, seq);
    let (head, text) = d.get_raw("/v1/events/numbers");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["risk_score"], json!(100), "{text}");
    assert_eq!(view["duration_ms"], json!(u64::MAX), "{text}");
    let want = json!({
        "u64max": u64::MAX, "i64min": i64::MIN,
        "beyond_u64": 18_446_744_073_709_551_616.0, "below_i64": -9_223_372_036_854_775_809.0,
        "huge_int": 1.234_567_890_123_456_8e29, "neg_huge_int": -1.234_567_890_123_456_8e29,
        "negzero": -0.0, "negzero_f": -0.0, "underflow": 0.0, "zero_exp": 0.0,
        "f64max": f64::MAX, "f64min_sub": 5e-324, "tenth": 0.1,
        "exp": 100.0, "many_digits": std::f64::consts::PI,
    });
    assert_eq!(view["metadata"], want, "{text}");
    // The stored text, exactly: integers as integers, the rest as doubles.
    for piece in [
        r#""u64max":18446744073709551615"#,
        r#""i64min":-9223372036854775808"#,
        r#""huge_int":1.2345678901234568e+29"#,
        r#""negzero":-0.0"#,
        r#""underflow":0.0"#,
        r#""f64max":1.7976931348623157e+308"#,
        r#""f64min_sub":5e-324"#,
        r#""tenth":0.1"#,
    ] {
        assert!(text.contains(piece), "{piece} not in {text}");
    }
    assert_eq!(
        view["changes"],
        json!([{"field": "n", "old": -0.0, "new": 1.234_567_890_123_456_8e29}])
    );
    // The view is a fixed point: posting it again is a replay of the same seq.
    let mut again = view.clone();
    let obj = again.as_object_mut().unwrap();
    for server_stamped in ["seq", "received_at", "ingested_by", "client_addr"] {
        obj.remove(server_stamped);
    }
    let (st, _, r) = d.post(&again);
    assert_eq!(
        (st, &r),
        (
            200,
            &json!({"events": [{"id": "numbers", "seq": seq}], "replayed": true})
        )
    );
    acked.push(Acked {
        id: "numbers".into(),
        seq,
        posted: again,
    });
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}

#[test]
fn duplicate_json_keys_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let acked = seed(&d, "dup", 10);
    let before = log_last_seq(&d);
    let cases: &[(&str, &str)] = &[
        (
            r#"{"id": "twice-1", "action": "a", "actor": "alice", "actor": "mallory"}"#,
            "actor",
        ),
        (
            r#"{"id": "twice-2", "id": "twice-3", "action": "a", "actor": "b"}"#,
            "id",
        ),
        (
            r#"{"id": "twice-4", "action": "a", "actor": "b", "action": "a"}"#,
            "action",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"k": 1}, "metadata": {"k": 2}}"#,
            "metadata",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"k": 1, "k": 2}}"#,
            "k",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"k": 1, "k": 1}}"#,
            "k",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"o": [{"x": 1, "y": 2, "x": 3}]}}"#,
            "x",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"\u00e9": 1, "é": 2}}"#,
            "é",
        ),
        (
            r#"{"action": "a", "actor": "b", "changes": [{"field": "f", "field": "g"}]}"#,
            "field",
        ),
        (
            r#"{"action": "a", "actor": "b", "changes": [{"field": "f", "new": {"v": 1, "v": 1}}]}"#,
            "v",
        ),
        (
            r#"[{"action": "a", "actor": "b"}, {"action": "a", "actor": "b", "tenant": "x", "tenant": "y"}]"#,
            "tenant",
        ),
    ];
    for (body, key) in cases {
        let p = problem_of(
            &post_bytes(&d, "application/json", body.as_bytes()),
            400,
            "invalid-json",
        );
        assert!(
            detail(&p).contains(&format!("duplicate key {}", json!(key))),
            "{body}: {p}"
        );
        assert_eq!(p["line"], 1, "{body}: {p}");
        assert!(p["column"].as_u64().unwrap() > 1, "{body}: {p}");
    }
    // NDJSON: the line is named.
    let nd = "{\"action\": \"a\", \"actor\": \"b\"}\n{\"action\": \"a\", \"actor\": \"b\", \"ip\": \"10.0.0.1\", \"ip\": \"10.0.0.2\"}\n";
    let p = problem_of(
        &post_bytes(&d, "application/x-ndjson", nd.as_bytes()),
        400,
        "invalid-json",
    );
    assert_eq!(p["line"], 2, "{p}");
    assert!(detail(&p).contains(r#"duplicate key "ip""#), "{p}");
    // serde_json's private raw-value key would be stored as something else
    // than what is shown: refused too.
    let p = problem_of(
        &post_bytes(
            &d,
            "application/json",
            br#"{"action": "a", "actor": "b", "metadata": {"x": {"$serde_json::private::RawValue": "[1,2]"}}}"#,
        ),
        400,
        "invalid-json",
    );
    assert!(detail(&p).contains("is reserved"), "{p}");
    assert_eq!(log_last_seq(&d), before, "a duplicate key stored events");
    for id in ["twice-1", "twice-2", "twice-3", "twice-4"] {
        assert_eq!(d.get(&format!("/v1/events/{id}")).0, 404, "{id}");
    }
    // Keys that differ (by case, by one character) are distinct.
    let (st, _, r) = d.post(&json!({"id": "dup-ok", "action": "a", "actor": "b", "metadata": {"k": 1, "K": 2, "k ": 3}}));
    assert_eq!(st, 201, "{r}");
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}

/// A body of millions of tiny items (16 MiB of `{},`) is refused for its size
/// without the daemon building an event for each: only the first
/// `events_per_request_max` are built, the rest counted. Before, each item
/// became an event read: ≈ 5.6 million of them, and this debug daemon's peak
/// RSS went from 99 to 1,297 MiB (26 MiB more once capped). The real binary:
/// the point is its peak memory.
#[test]
fn millions_of_tiny_items_are_refused_without_building_them() {
    // The peak RSS may grow by the body (16 MiB), its copy in the connection's
    // buffers, and what one batch of 10,000 events takes; not by millions.
    const GROWTH_MAX_MIB: u64 = 120;
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    let acked = seed(&d, "tiny", 10);
    let before = log_last_seq(&d);
    let pid = d.child.id();
    let (_, hwm_before) = memory_kib(pid);
    let n = (16 * 1024 * 1024 - 2) / 3;
    let mut array = b"[{}".to_vec();
    array.extend(b",{}".repeat(n - 1));
    array.push(b']');
    let ndjson = b"{}\n".repeat(n);
    for (ctype, body) in [
        ("application/json", array),
        ("application/x-ndjson", ndjson),
    ] {
        let answer = post_bytes(&d, ctype, &body);
        let p = problem_of(&answer, 400, "invalid-batch-size");
        assert!(detail(&p).ends_with(&format!("this one {n}")), "{p}");
    }
    let (_, hwm) = memory_kib(pid);
    assert!(
        mib(hwm.saturating_sub(hwm_before)) < GROWTH_MAX_MIB,
        "peak RSS {} MiB → {} MiB for two bodies of {n} items",
        mib(hwm_before),
        mib(hwm)
    );
    assert_eq!(log_last_seq(&d), before);
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}

/// One posted event of 15 MiB whose value is refused (too large, the wrong type, an
/// unknown key, not an object) is refused without the daemon building that value as
/// a tree: what ingest keeps of `metadata` and change values is their canonical
/// text up to the limit, and of other values their type. Before, a `metadata` array
/// of 7.9 million numbers took a release daemon from 64 to 588 MiB (a JSON value
/// costs 16 to 32 times its text; this debug build 99 → 611). Nor does an event of
/// 1.6 million unknown keys get an error for each (≈ 1.7 GB of errors to answer, a
/// review found). The same with `ingest.field_map` set, which had read every event
/// whole. The real binary: the point is its peak memory.
#[test]
fn a_huge_value_is_refused_without_building_it() {
    // As above: the body, its copy in the connection's buffers, the answer.
    const GROWTH_MAX_MIB: u64 = 120;
    let tmp = tempfile::tempdir().unwrap();
    // With a field map, whose renaming is done as the keys are read.
    let conf = tmp.path().join("map.toml");
    std::fs::write(
        &conf,
        "[ingest.field_map]\nlevel = \"severity\"\nextra = \"metadata\"\n",
    )
    .unwrap();
    let mut d = Daemon::start_with(
        &tmp.path().join("data"),
        &["--config", conf.to_str().unwrap()],
    );
    let acked = seed(&d, "huge", 10);
    let before = log_last_seq(&d);
    let pid = d.child.id();
    let (_, hwm_before) = memory_kib(pid);
    // 15 MiB of numbers: ≈ 7.9 million array items.
    let huge = format!("[{}0]", "0,".repeat(15 * 1024 * 1024 / 2));
    let cases: [(String, &str, &str); 10] = [
        (
            format!(r#"{{"action": "a", "actor": "b", "metadata": {{"k": {huge}}}}}"#),
            "metadata",
            "too_large",
        ),
        (
            format!(r#"{{"action": "a", "actor": "b", "metadata": {huge}}}"#),
            "metadata",
            "wrong_type",
        ),
        (
            format!(
                r#"{{"action": "a", "actor": "b", "changes": [{{"field": "f", "new": {huge}}}]}}"#
            ),
            "changes[0].new",
            "too_large",
        ),
        (
            format!(r#"{{"action": "a", "actor": "b", "changes": {huge}}}"#),
            "changes",
            "too_large",
        ),
        (
            format!(r#"{{"action": {huge}, "actor": "b"}}"#),
            "action",
            "wrong_type",
        ),
        (
            format!(r#"{{"action": "a", "actor": "b", "zz": {huge}}}"#),
            "zz",
            "unknown_field",
        ),
        (format!("[{huge}]"), "", "not_an_object"),
        (
            format!(r#"{{"action": "a", "actor": "b", "level": {huge}}}"#),
            "severity",
            "wrong_type",
        ),
        (
            format!(
                r#"{{"action": "a", "actor": "b", "metadata": {{"k": 1}}, "extra": {{"k": {huge}}}}}"#
            ),
            "metadata",
            "conflict",
        ),
        // ≈ 1.6 million unknown keys: the first 32 named, the rest counted.
        (
            format!(
                r#"{{"action": "a", "actor": "b"{}}}"#,
                (0..1_600_000)
                    .map(|i| format!(r#","{i:x}":0"#))
                    .collect::<String>()
            ),
            "0",
            "unknown_field",
        ),
    ];
    for (body, field, kind) in &cases {
        let p = problem_of(
            &post_bytes(&d, "application/json", body.as_bytes()),
            400,
            "invalid-events",
        );
        let errors = p["errors"].as_array().unwrap().len();
        assert!(errors <= 33, "{field}: {errors} errors");
        let first = &p["errors"][0];
        assert_eq!(
            (&first["field"], &first["kind"]),
            (&json!(field), &json!(kind)),
            "{p}"
        );
        let (_, hwm) = memory_kib(pid);
        assert!(
            mib(hwm.saturating_sub(hwm_before)) < GROWTH_MAX_MIB,
            "peak RSS {} MiB → {} MiB after a body of {} MiB refused at {field}",
            mib(hwm_before),
            mib(hwm),
            body.len() >> 20
        );
    }
    assert_eq!(log_last_seq(&d), before);
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}
