//! The bounded reading against the `Value` route, repeated keys, and what is kept past a limit.

use super::*;
use proptest::prelude::*;

/// `text` read as a free-form value with a size limit.
fn read(text: &str, max_bytes: usize) -> serde_json::Result<Free> {
    let mut canon = Canon::new(max_bytes);
    let mut de = serde_json::Deserializer::from_str(text);
    let kind = canon.seed().deserialize(&mut de)?;
    de.end()?;
    Ok(canon.into_free(kind))
}

fn same(a: &Free, b: &Free) -> bool {
    a.kind == b.kind && a.text == b.text
}

/// Any JSON value, nested up to 20 levels (past the depth limit), with keys that
/// sort differently escaped and unescaped.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-c\"\\\\/\u{1}é\u{10000}]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(20, 200, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(("[a-c\"\u{1}é~]{0,3}", inner), 0..20)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// `v` as JSON text with each object's keys in the order `order` picks (reversed,
/// rotated) and some whitespace: what a client might send. If `repeat`, the first
/// non-empty object (in text order) names its first key again, at its end.
fn emit(v: &Value, order: u8, repeat: &mut bool, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            match order % 3 {
                0 => entries.reverse(),
                1 => {
                    let half = entries.len() / 2;
                    entries.rotate_left(half);
                }
                _ => {}
            }
            out.push_str("{ ");
            let again = entries
                .first()
                .map(|(k, _)| serde_json::to_string(k).unwrap());
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(" ,");
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push_str(" : ");
                emit(v, order.wrapping_add(1), repeat, out);
            }
            if let Some(key) = again.filter(|_| std::mem::take(repeat)) {
                out.push_str(&format!(", {key}: null"));
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit(v, order.wrapping_add(1), repeat, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Read from its text, a value is what `Free::of_value` makes of it: the same
    /// canonical text, or the same refusal (too deep before too large), at every
    /// size limit around its length.
    #[test]
    fn reading_the_text_equals_the_value_route(v in any_value(), order in 0u8..3, cut in 0usize..4) {
        let mut text = String::new();
        emit(&v, order, &mut false, &mut text);
        let parsed = crate::event::parse_json(text.as_bytes()).unwrap();
        let whole = canonical_json(&parsed).len();
        for max in [whole + 1, whole, whole.saturating_sub(cut), whole / 2, 0] {
            let want = Free::of_value(&parsed, max);
            let got = read(&text, max).unwrap();
            prop_assert!(same(&got, &want), "{text} at {max}: {got:?} against {want:?}");
        }
        // A key repeated is the strict parser's error, at its place, unless the
        // value is refused as too deep first (then nothing past it is kept).
        let mut repeat = true;
        let mut text = String::new();
        emit(&v, order, &mut repeat, &mut text);
        if !repeat {
            let strict = crate::event::parse_json(text.as_bytes()).unwrap_err().to_string();
            match read(&text, usize::MAX) {
                Err(e) => prop_assert_eq!(e.to_string(), strict, "{}", text),
                Ok(free) => prop_assert_eq!(free.text, Err(Refusal::TooDeep), "{}", text),
            }
        }
    }
}

#[test]
fn repeated_keys_are_found_where_they_are_named_in_small_and_large_objects() {
    for n in [2, KEYS_SCANNED - 1, KEYS_SCANNED, KEYS_SCANNED + 1, 100] {
        // Keys in falling order (every one out of order), then the first again.
        let keys: Vec<String> = (0..n).rev().map(|i| format!("\"k{i:03}\": {i}")).collect();
        let text = format!("{{{}, \"k{:03}\": 0, \"z\": 1}}", keys.join(", "), n / 2);
        let err = read(&text, usize::MAX).unwrap_err().to_string();
        let want = format!("duplicate key \"k{:03}\"", n / 2);
        assert!(err.starts_with(&want), "{n}: {err}");
        // Where the strict parser finds it: right after the repeated key.
        let strict = crate::event::parse_json(text.as_bytes()).unwrap_err();
        assert_eq!(err, strict.to_string(), "{n}");
        // Without the repeat: sorted.
        let text = format!("{{{}}}", keys.join(", "));
        let free = read(&text, usize::MAX).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(free.text, Ok(canonical_json(&v)), "{n}");
    }
}

/// What is refused is not kept: past the size limit the text is dropped, and only
/// the depth is still looked at.
#[test]
fn past_a_limit_nothing_is_kept_but_the_depth_is_still_found() {
    let big = format!("[{}]", vec!["123456"; 100_000].join(","));
    let free = read(&big, 1000).unwrap();
    assert_eq!((free.kind, free.text), (ARRAY, Err(Refusal::TooLarge)));
    let deep = format!("{}{}", "[".repeat(17), "]".repeat(17));
    let text = format!("[{}, {deep}]", "\"x\",".repeat(1000) + "1");
    assert_eq!(read(&text, 100).unwrap().text, Err(Refusal::TooDeep));
    assert_eq!(
        read(&deep[1..deep.len() - 1], 100)
            .unwrap()
            .text
            .unwrap()
            .len(),
        32
    );
}
