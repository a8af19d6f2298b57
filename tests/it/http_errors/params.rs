//! Read routes' parameter errors: bad values on every read route naming the
//! parameter, cursors from another query or altered, parameters a route does
//! not take, and an unknown event id (404).

use super::*;

fn title_of(kind: &str) -> &'static str {
    match kind {
        "invalid-parameter" => "Invalid query parameter",
        "invalid-cursor" => "Invalid cursor",
        "invalid-query" => "Invalid full-text query",
        other => panic!("no title known for {other}"),
    }
}

/// Asserts a 400 naming `field`, with `detail` containing `says`.
fn bad_param(
    d: &Server,
    target: &str,
    headers: &[(&str, &str)],
    kind: &str,
    field: &str,
    says: &str,
) {
    let r = send(&d.addr, "GET", target, headers, Body::None);
    assert_eq!(r.status, 400, "{target}: {}", r.text());
    let p = problem(&r, 400, kind, title_of(kind));
    assert_eq!(p["field"], field, "{target}: {p}");
    assert!(
        detail(&p).contains(says),
        "{target}: detail does not say {says:?}: {p}"
    );
}

#[test]
fn bad_query_parameters_on_every_read_route() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let p = "invalid-parameter";
    let c = "invalid-cursor";
    // Listing and search take every parameter of Query::parse.
    for base in ["/v1/events?", "/v1/search?q=x&"] {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("limit=0", p, "limit", "from 1 to 1000"),
            ("limit=1001", p, "limit", "from 1 to 1000"),
            ("limit=ten", p, "limit", "from 1 to 1000"),
            ("limit=-1", p, "limit", "from 1 to 1000"),
            ("order=sideways", p, "order", "\"desc\""),
            ("since=not-a-date", p, "since", "use RFC 3339"),
            ("until=2026-13-01T00:00:00Z", p, "until", "use RFC 3339"),
            (
                "min_severity=bogus",
                p,
                "min_severity",
                "\"bogus\" is not one of debug",
            ),
            ("severity=loud", p, "severity", "\"loud\" is not one of"),
            ("source=aliens", p, "source", "\"aliens\""),
            ("status=meh", p, "status", "\"meh\""),
            ("ip=999.1.1.1", p, "ip", "not an IPv4 or IPv6 address"),
            ("hours=0", p, "hours", "greater than 0 and at most 87840"),
            ("hours=1&since=2026-11-23T00:00:00Z", p, "hours", "not both"),
            ("hours=1e999", p, "hours", "greater than 0"),
            (
                "since=yesterday",
                p,
                "since",
                "a time ago (15m, 24h, 7d, 2w)",
            ),
            ("since=99999999w", p, "since", "more than ten years"),
            ("risk_score=extreme", p, "risk_score", "high (71–100)"),
            ("duration_ms=9..3", p, "duration_ms", "empty range"),
            ("user_name=", p, "user_name", "must not be empty"),
            (
                "since=2026-11-23T00:00:00Z&until=2026-11-22T00:00:00Z",
                p,
                "since",
                "before `until`",
            ),
            ("tenant=", p, "tenant", "must not be empty"),
            ("tenant=a&tenant=b", p, "tenant", "more than once"),
            ("bogus=1", p, "bogus", "unknown parameter"),
            ("interval=fortnight", p, "interval", "interval"),
            (
                "cursor=garbage",
                c,
                "cursor",
                "not a cursor returned by Stele",
            ),
        ];
        for (q, kind, field, says) in cases {
            bad_param(&d, &format!("{base}{q}"), &[], kind, field, says);
        }
        let long = format!("{base}cursor={}", "A".repeat(129));
        bad_param(&d, &long, &[], c, "cursor", "too long");
    }
    // Search needs q, non-empty and well-formed.
    bad_param(&d, "/v1/search", &[], p, "q", "is required");
    bad_param(&d, "/v1/search?tenant=acme", &[], p, "q", "is required");
    bad_param(&d, "/v1/search?q=", &[], p, "q", "must not be empty");
    bad_param(
        &d,
        "/v1/search?q=title:(",
        &[],
        "invalid-query",
        "q",
        "Syntax Error",
    );
    let huge = format!("/v1/search?q={}", "a".repeat(4097));
    bad_param(&d, &huge, &[], p, "q", "the limit is 4096");

    // Statistics: filters and interval only.
    for (q, field, says) in [
        ("interval=fortnight", "interval", "minute, hour or day"),
        ("interval=", "interval", "minute, hour or day"),
        (
            "limit=5",
            "limit",
            "not `limit`, `sort`, `order` or `cursor`",
        ),
        ("min_severity=bogus", "min_severity", "\"bogus\""),
        ("since=not-a-date", "since", "use RFC 3339"),
        ("bogus=1", "bogus", "unknown parameter"),
    ] {
        bad_param(&d, &format!("/v1/stats?{q}"), &[], p, field, says);
    }

    // Export: format, and the listing filters without limit or cursor.
    for (q, field, says) in [
        ("format=xml", "format", "must be csv, ndjson or json"),
        ("format=", "format", "must be csv, ndjson or json"),
        (
            "format=csv&limit=5",
            "limit",
            "an export covers every matching event",
        ),
        ("order=sideways", "order", "\"desc\""),
        ("min_severity=bogus", "min_severity", "\"bogus\""),
        ("since=not-a-date", "since", "use RFC 3339"),
        ("bogus=1", "bogus", "unknown parameter"),
    ] {
        bad_param(&d, &format!("/v1/export?{q}"), &[], p, field, says);
    }

    // Entity history and user timeline: the listing parameters, except the
    // fields the path names.
    for (base, by_path) in [
        ("/v1/entities/order/55/history?", "entity_id"),
        ("/v1/entities/order/55/history?", "entity_type"),
        ("/v1/users/u-1/events?", "user_id"),
    ] {
        let by_path = format!("{by_path}=x");
        let by_path_field = by_path.trim_end_matches("=x");
        for (q, kind, field, says) in [
            ("limit=0", p, "limit", "from 1 to 1000"),
            ("limit=1001", p, "limit", "from 1 to 1000"),
            ("limit=x", p, "limit", "from 1 to 1000"),
            (&by_path, p, by_path_field, "is given by the path"),
            ("interval=day", p, "interval", "/v1/stats only"),
            ("order=up", p, "order", "\"desc\""),
            ("since=yesterday", p, "since", "use RFC 3339"),
            ("risk_score=7..1", p, "risk_score", "empty range"),
            ("bogus=1", p, "bogus", "unknown parameter"),
            (
                "cursor=garbage",
                c,
                "cursor",
                "not a cursor returned by Stele",
            ),
        ] {
            bad_param(&d, &format!("{base}{q}"), &[], kind, field, says);
        }
    }

    // The live stream: filters and from_seq (errors answer before streaming).
    for (q, field, says) in [
        ("limit=1", "limit", "do not apply"),
        ("order=asc", "order", "do not apply"),
        ("cursor=x", "cursor", "do not apply"),
        ("interval=day", "interval", "do not apply"),
        ("from_seq=abc", "from_seq", "a whole number"),
        ("from_seq=-1", "from_seq", "a whole number"),
        ("min_severity=bogus", "min_severity", "\"bogus\""),
        ("bogus=1", "bogus", "unknown parameter"),
    ] {
        bad_param(&d, &format!("/v1/stream?{q}"), &[], p, field, says);
    }
    // A malformed full-text query is refused before the stream starts.
    bad_param(
        &d,
        "/v1/stream?q=title:(",
        &[],
        "invalid-query",
        "q",
        "Syntax Error",
    );
    bad_param(
        &d,
        "/v1/stream?q=metadata.region:%3Cu",
        &[],
        "invalid-query",
        "q",
        "not supported",
    );
    bad_param(
        &d,
        "/v1/stream",
        &[("Last-Event-ID", "abc")],
        p,
        "Last-Event-ID",
        "must be the id (seq)",
    );
}

#[test]
fn cursors_from_another_query_or_altered_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let batch: Vec<Value> = (0..3)
        .map(|i| {
            json!({"action": "update", "actor": "a", "user_id": "u-1",
                   "entity_type": "order", "entity_id": "55", "metadata": {"i": i}})
        })
        .collect();
    let r = post_json(&d, &Value::Array(batch));
    assert_eq!(r.status, 201, "{}", r.text());
    wait_indexed(&d, 3, Duration::from_secs(30));
    let page = get(&d, "/v1/events?limit=1").json();
    let cursor = page["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("no cursor: {page}"))
        .to_string();
    // The cursor works where it came from.
    let next = get(&d, &format!("/v1/events?limit=1&cursor={cursor}"));
    assert_eq!(next.status, 200, "{}", next.text());
    assert_eq!(seqs_of(&next.json()), vec![2]);
    let other = "belongs to a different query";
    let c = "invalid-cursor";
    for target in [
        format!("/v1/events?limit=1&tenant=acme&cursor={cursor}"),
        format!("/v1/events?limit=1&order=asc&cursor={cursor}"),
        format!("/v1/search?q=update&limit=1&cursor={cursor}"),
        format!("/v1/entities/order/55/history?limit=1&cursor={cursor}"),
        format!("/v1/users/u-1/events?limit=1&cursor={cursor}"),
    ] {
        bad_param(&d, &target, &[], c, "cursor", other);
    }
    // One character changed in the middle: the MAC no longer matches.
    let mut altered: Vec<char> = cursor.chars().collect();
    let mid = altered.len() / 2;
    altered[mid] = if altered[mid] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    bad_param(
        &d,
        &format!("/v1/events?limit=1&cursor={altered}"),
        &[],
        c,
        "cursor",
        "altered",
    );
}

/// Parameters a route does not take are rejected by name, not ignored and not
/// blamed on another parameter. (Before the server edit that accompanies
/// these tests: stats and export named `limit` for `order`/`cursor`, list,
/// search and export ignored `interval`, history and timeline took a
/// repeated `limit`, get-by-id ignored every parameter, and `q=%20` passed
/// as a search.)
#[test]
fn parameters_that_do_not_apply_are_rejected_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let p = "invalid-parameter";
    let stats = "not `limit`, `sort`, `order` or `cursor`";
    bad_param(&d, "/v1/stats?order=asc", &[], p, "order", stats);
    bad_param(&d, "/v1/stats?cursor=abc", &[], p, "cursor", stats);
    bad_param(&d, "/v1/stats?limit=5", &[], p, "limit", stats);
    bad_param(&d, "/v1/stats?sort=seq", &[], p, "sort", stats);
    bad_param(
        &d,
        "/v1/stream?sort=time",
        &[],
        p,
        "sort",
        "it is in seq order",
    );
    for base in [
        "/v1/events",
        "/v1/entities/order/55/history",
        "/v1/users/u-1/events",
    ] {
        let target = format!("{base}?sort=arrival");
        bad_param(&d, &target, &[], p, "sort", "\"time\"");
    }
    let export = "an export covers every matching event";
    bad_param(&d, "/v1/export?cursor=abc", &[], p, "cursor", export);
    bad_param(&d, "/v1/export?interval=day", &[], p, "interval", export);
    for target in ["/v1/events?interval=day", "/v1/search?q=x&interval=hour"] {
        bad_param(&d, target, &[], p, "interval", "/v1/stats only");
    }
    for base in ["/v1/entities/order/55/history", "/v1/users/u-1/events"] {
        let target = format!("{base}?limit=1&limit=2");
        bad_param(&d, &target, &[], p, "limit", "more than once");
    }
    bad_param(
        &d,
        "/v1/events/evt-1?limit=1",
        &[],
        p,
        "limit",
        "takes only `tenant`",
    );
    bad_param(&d, "/v1/search?q=%20%20", &[], p, "q", "is required");
    // A parameter without a name has no `field` (the spec's `field` is never
    // empty).
    for target in [
        "/v1/events?=x",
        "/v1/events?limit=1&=",
        "/v1/events/evt-1?=x",
    ] {
        let r = send(&d.addr, "GET", target, &[], Body::None);
        let v = problem(&r, 400, p, title_of(p));
        assert!(v.get("field").is_none(), "{target}: {v}");
        assert!(detail(&v).contains("empty name"), "{target}: {v}");
    }
}

#[test]
fn unknown_event_id_is_404() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let r = post_json(&d, &ok_event("known"));
    assert_eq!(r.status, 201);
    wait_indexed(&d, 1, Duration::from_secs(30));
    assert_eq!(get(&d, "/v1/events/known").status, 200);
    for target in [
        "/v1/events/nope",
        "/v1/events/KNOWN",
        "/v1/events/known%20",
        "/v1/events/0",
        "/v1/events/1", // a seq is not an id
    ] {
        problem(&get(&d, target), 404, "not-found", "No such event");
    }
    let long = format!("/v1/events/{}", "x".repeat(300));
    problem(&get(&d, &long), 404, "not-found", "No such event");
}
