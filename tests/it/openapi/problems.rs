//! The documented errors: the table of the read routes' problems
//! (`READ_PROBLEMS`) and the requests that must produce each error the spec
//! documents, checked against the operation's documentation.

use super::*;

/// The problems of the read routes, one row a case: the spec's route, the
/// request target, the status, the problem kind and the parameter it names.
#[rustfmt::skip]
const READ_PROBLEMS: &[(&str, &str, u16, &str, Option<&str>)] = &[
    ("/v1/events", "/v1/events?limit=0", 400, "invalid-parameter", Some("limit")),
    ("/v1/events", "/v1/events?limit=1001", 400, "invalid-parameter", Some("limit")),
    ("/v1/events", "/v1/events?tenant=", 400, "invalid-parameter", Some("tenant")),
    ("/v1/events", "/v1/events?tenant=a&tenant=b", 400, "invalid-parameter", Some("tenant")),
    ("/v1/events", "/v1/events?severity=loud", 400, "invalid-parameter", Some("severity")),
    ("/v1/events", "/v1/events?ip=999.1.1.1", 400, "invalid-parameter", Some("ip")),
    ("/v1/events", "/v1/events?since=yesterday", 400, "invalid-parameter", Some("since")),
    ("/v1/events", "/v1/events?hours=0", 400, "invalid-parameter", Some("hours")),
    ("/v1/events", "/v1/events?hours=1&since=2026-01-01T00:00:00Z", 400, "invalid-parameter", Some("hours")),
    ("/v1/events", "/v1/events?cursor=abc", 400, "invalid-cursor", Some("cursor")),
    ("/v1/events", "/v1/events?q=nosuchfield%3Ax", 400, "invalid-query", Some("q")),
    ("/v1/events", "/v1/events?severity=debug&min_severity=error", 400, "invalid-parameter", Some("severity")),
    ("/v1/events", "/v1/events?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", 400, "invalid-parameter", Some("since")),
    // The export checks its query before answering 200.
    ("/v1/export", "/v1/export?q=nosuchfield%3Ax", 400, "invalid-query", Some("q")),
    ("/v1/search", "/v1/search?tenant=acme", 400, "invalid-parameter", Some("q")),
    ("/v1/stats", "/v1/stats?interval=week", 400, "invalid-parameter", Some("interval")),
    ("/v1/events", "/v1/events?offset=9999&limit=2", 400, "invalid-parameter", Some("offset")),
    ("/v1/stats", "/v1/stats?group_by=description", 400, "invalid-parameter", Some("group_by")),
    ("/v1/stats", "/v1/stats?top=0", 400, "invalid-parameter", Some("top")),
    ("/v1/count", "/v1/count?limit=1", 400, "invalid-parameter", Some("limit")),
    ("/v1/fields/{name}/values", "/v1/fields/description/values", 400, "invalid-parameter", Some("name")),
    ("/v1/fields/{name}/values", "/v1/fields/no_such_field/values", 404, "not-found", None),
    ("/v1/export", "/v1/export?format=xml", 400, "invalid-parameter", Some("format")),
    ("/v1/users/{id}/events", "/v1/users/u-42/events?limit=x", 400, "invalid-parameter", Some("limit")),
    ("/v1/stream", "/v1/stream?from_seq=-1", 400, "invalid-parameter", Some("from_seq")),
    // The drift Schemathesis found (issue 17): each answer as the spec now says.
    ("/v1/stream", "/v1/stream?from_seq=18446744073709551616", 400, "invalid-parameter", Some("from_seq")),
    ("/v1/stream", "/v1/stream?from_seq=1&from_seq=2", 400, "invalid-parameter", Some("from_seq")),
    ("/v1/events", "/v1/events?q=a%01b", 400, "invalid-query", Some("q")),
    ("/v1/events", "/v1/events?=x", 400, "invalid-parameter", None),
    ("/v1/events/{id}", "/v1/events/evt-1?=x", 400, "invalid-parameter", None),
    ("/v1/events/{id}", "/v1/events/evt-1?x=1", 400, "invalid-parameter", Some("x")),
    ("/v1/entities/{type}/{id}/history", "/v1/entities/order/55/history?limit=1&limit=2", 400, "invalid-parameter", Some("limit")),
    ("/v1/users/{id}/events", "/v1/users/u-42/events?cursor=a&cursor=b", 400, "invalid-parameter", Some("cursor")),
    ("/v1/search", "/v1/search?q=%20", 400, "invalid-parameter", Some("q")),
    ("/v1/events", "/v1/events?stele_records=some", 400, "invalid-parameter", Some("stele_records")),
    ("/v1/events", "/v1/events?risk_score=9..1", 400, "invalid-parameter", Some("risk_score")),
    ("/v1/events/{id}", "/v1/events/no-such-event", 404, "not-found", None),
];

/// Requests that must produce each documented error, checked against the
/// operation's documentation.
pub(super) fn drive_errors(c: &mut Checker, ops: &[Op]) {
    let find = |m: &str, p: &str| {
        ops.iter()
            .find(|o| o.method == m && o.path == p)
            .unwrap_or_else(|| panic!("the spec has no {m} {p}"))
            .clone()
    };
    let ingest = find("POST", "/v1/events");
    let stream = find("GET", "/v1/stream");

    let json_post = |body: &str| {
        Req::new("POST", "/v1/events").body(Some("application/json"), body.as_bytes().to_vec())
    };

    // The problems of the read routes (400s of the queries, 404 of an id).
    for &(route, target, status, kind, param) in READ_PROBLEMS {
        c.expect_problem(
            &find("GET", route),
            Req::new("GET", target),
            status,
            kind,
            param,
        );
    }
    // A Last-Event-ID that is not a seq.
    c.expect_problem(
        &stream,
        Req::new("GET", "/v1/stream").header("Last-Event-ID", "abc"),
        400,
        "invalid-parameter",
        Some("Last-Event-ID"),
    );

    // Ingest errors.
    let v = c.expect_problem(&ingest, json_post("{not json"), 400, "invalid-json", None);
    if let Some(v) = v {
        if v["line"] != json!(1) {
            c.fail(
                "POST /v1/events (invalid JSON)",
                format!("expected line 1, got {}", v["line"]),
            );
        }
    }
    let nd = Req::new("POST", "/v1/events").body(
        Some("application/x-ndjson"),
        b"{\"action\":\"a\",\"actor\":\"b\"}\n\n{oops\n".to_vec(),
    );
    if let Some(v) = c.expect_problem(&ingest, nd, 400, "invalid-json", None) {
        if v["line"] != json!(3) {
            c.fail(
                "POST /v1/events (invalid NDJSON line 3)",
                format!("expected line 3, got {}", v["line"]),
            );
        }
    }
    c.expect_problem(&ingest, json_post("[]"), 400, "invalid-batch-size", None);
    let bad = json!([
        {"action": "ok", "actor": "x"},
        {"action": "x", "actor": "y", "severity": "loud", "risk_score": 101, "seq": 3},
        {"actor": "z", "changes": [{"old": 1}]},
        "not an object"
    ]);
    // The input schema must refuse what the server refuses.
    let body = c.spec.deref("/paths/~1v1~1events/post/requestBody").0;
    let item = format!("{body}/content/application~1x-ndjson/x-stele-item-schema");
    if let Err(e) = c.spec.validate(&item, &bad[0]) {
        c.fail("EventInput", format!("refuses a valid event: {e}"));
    }
    for (i, ev) in bad.as_array().unwrap().iter().enumerate().skip(1) {
        if c.spec.validate(&item, ev).is_ok() {
            c.fail(
                "EventInput",
                format!("accepts event {i} of {bad}, which the server refuses"),
            );
        }
    }
    if let Some(v) = c.expect_problem(
        &ingest,
        json_post(&bad.to_string()),
        400,
        "invalid-events",
        None,
    ) {
        let mut got: Vec<(u64, String, String)> = v["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["index"].as_u64().unwrap_or(99),
                            e["field"].as_str().unwrap_or("?").to_string(),
                            e["kind"].as_str().unwrap_or("?").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.sort();
        let want: Vec<(u64, String, String)> = [
            (1, "risk_score", "out_of_range"),
            (1, "seq", "unknown_field"),
            (1, "severity", "invalid_value"),
            (2, "action", "missing"),
            (2, "changes[0].field", "missing"),
            (3, "", "not_an_object"),
        ]
        .iter()
        .map(|(i, f, k)| (*i, f.to_string(), k.to_string()))
        .collect();
        if got != want {
            c.fail(
                "POST /v1/events (invalid events)",
                format!("errors {got:?}, expected {want:?}"),
            );
        }
    }
    // 409: a stored id with other content (in the same tenant: ids are per
    // tenant); an id twice in one request.
    c.expect_problem(
        &ingest,
        json_post(r#"{"id": "fx-pw-1", "action": "other", "actor": "mallory", "tenant": "acme"}"#),
        409,
        "id-conflict",
        Some("id"),
    );
    c.expect_problem(&ingest, json_post(r#"[{"id": "dup", "action": "a", "actor": "b"}, {"id": "dup", "action": "a", "actor": "b"}]"#), 409, "id-conflict", Some("id"));
    // 200: an idempotent replay.
    let fx = &fixtures()[0];
    let req =
        Req::new("POST", "/v1/events").body(Some("application/json"), fx.to_string().into_bytes());
    if let Some(resp) = c.call(&ingest, &req) {
        if resp.status != 200 {
            c.fail(
                &format!("POST /v1/events ({})", req.describe()),
                format!("a replay answered {}", resp.status),
            );
        }
    }
    // A missing Content-Type is read as JSON.
    let req = Req::new("POST", "/v1/events")
        .body(None, br#"{"action": "no_type", "actor": "x"}"#.to_vec());
    if let Some(resp) = c.call(&ingest, &req) {
        if resp.status != 201 {
            c.fail(
                &format!("POST /v1/events ({})", req.describe()),
                format!("answered {}, expected 201", resp.status),
            );
        }
    }
    // 415: a Content-Type other than JSON or NDJSON.
    c.expect_problem(
        &ingest,
        Req::new("POST", "/v1/events").body(
            Some("text/plain"),
            br#"{"action": "a", "actor": "b"}"#.to_vec(),
        ),
        415,
        "unsupported-media-type",
        None,
    );
    // 413: a body just over the limit.
    let mut big = Vec::with_capacity(BODY_BYTES_MAX + 1024);
    big.extend_from_slice(br#"{"action": "big", "actor": "x", "description": ""#);
    big.resize(BODY_BYTES_MAX + 1000, b'a');
    big.extend_from_slice(b"\"}");
    let req = Req::new("POST", "/v1/events").body(Some("application/json"), big);
    let v = c.expect_problem(&ingest, req, 413, "body-too-large", None);
    if let Some(v) = v {
        if v["limit"] != json!(BODY_BYTES_MAX) {
            c.fail(
                "POST /v1/events (413)",
                format!("limit {} is not {BODY_BYTES_MAX}", v["limit"]),
            );
        }
    }

    // Unknown routes: 404 whatever the method.
    let no_route = "/components/responses/NoSuchRoute";
    for (m, p) in [
        ("GET", "/v2/nothing"),
        ("POST", "/v1/nothing"),
        ("GET", "/console/a/b"),
        ("GET", "/v1/events/a/b"),
    ] {
        let req = Req::new(m, p);
        let ctx = format!("unknown route ({})", req.describe());
        match send(&c.addr, &req) {
            Ok(resp) => {
                if resp.status != 404 {
                    c.fail(&ctx, format!("answered {}, expected 404", resp.status));
                }
                c.check_against(no_route, &ctx, &resp, &Expect::default());
            }
            Err(e) => c.fail(&ctx, e),
        }
    }
}
