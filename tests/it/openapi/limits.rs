//! The documented answers to each configurable limit, from a daemon with
//! small limits (414, 431, 413, `invalid-batch-size`, `request-timeout`,
//! `too-many-streams`).

use super::*;

/// The documented answers to each configurable limit, from a daemon with
/// small limits: 414, 431, 413 and `invalid-batch-size` with their `limit`,
/// 503 `request-timeout` (a stalled body) and 503 `too-many-streams`.
#[test]
fn limits_answer_as_documented() {
    let spec = Spec::load();
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_with_limits(
        tmp.path(),
        stele::config::Limits {
            url_bytes_max: 1024,
            header_bytes_max: 2048,
            request_timeout_secs: 1,
            streams_max: 1,
            events_per_request_max: 10,
            body_bytes_max: 100_000,
            ..stele::config::Limits::DEFAULT
        },
    );
    let ops = spec.operations();
    let op = |label: &str| {
        ops.iter()
            .find(|o| o.label() == label)
            .unwrap_or_else(|| panic!("{label} is not in the spec"))
            .clone()
    };
    let (ingest, list, stats, stream) = (
        op("POST /v1/events"),
        op("GET /v1/events"),
        op("GET /v1/stats"),
        op("GET /v1/stream"),
    );
    let mut c = Checker {
        spec: &spec,
        addr: d.addr.clone(),
        failures: Vec::new(),
        seen: BTreeSet::new(),
        checked: 0,
    };
    let limit_is = |c: &mut Checker, what: &str, v: Option<Value>, want: u64| {
        if let Some(v) = v {
            if v["limit"] != json!(want) {
                c.fail(what, format!("`limit` is {}, expected {want}", v["limit"]));
            }
        }
    };

    let v = c.expect_problem(
        &list,
        Req::new("GET", format!("/v1/events?tenant={}", "x".repeat(1100))),
        414,
        "uri-too-long",
        None,
    );
    limit_is(&mut c, "GET /v1/events (414)", v, 1024);
    let v = c.expect_problem(
        &stats,
        Req::new("GET", "/v1/stats").header("X-Padding", &"p".repeat(3000)),
        431,
        "headers-too-large",
        None,
    );
    limit_is(&mut c, "GET /v1/stats (431)", v, 2048);
    let big = format!(
        r#"{{"action": "big", "actor": "x", "description": "{}"}}"#,
        "a".repeat(100_001)
    );
    let v = c.expect_problem(
        &ingest,
        Req::new("POST", "/v1/events").body(Some("application/json"), big.into_bytes()),
        413,
        "body-too-large",
        None,
    );
    limit_is(&mut c, "POST /v1/events (413)", v, 100_000);
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"action": "a", "actor": format!("a{i}")}))
        .collect();
    let v = c.expect_problem(
        &ingest,
        Req::new("POST", "/v1/events").body(
            Some("application/json"),
            Value::Array(eleven).to_string().into_bytes(),
        ),
        400,
        "invalid-batch-size",
        None,
    );
    limit_is(&mut c, "POST /v1/events (11 events)", v, 10);

    // A body announced as 100 bytes of which 10 arrive: 503 after 1 s.
    let mut stalled =
        Req::new("POST", "/v1/events").body(Some("application/json"), br#"{"action":"#.to_vec());
    stalled.declared_length = Some(100);
    let v = c.expect_problem(&ingest, stalled, 503, "request-timeout", None);
    limit_is(&mut c, "POST /v1/events (stalled body)", v, 1);

    // A second stream while one is open: 503 too-many-streams.
    let first = Req::new("GET", "/v1/stream");
    match Conn::open(&d.addr, &first, Duration::from_secs(20)) {
        Ok(conn) => {
            let mut open = conn.into_sse();
            // The opening comment is sent once the stream counts as open.
            if let Err(e) = open.next(SSE_WAIT) {
                c.fail("GET /v1/stream (first stream)", e);
            }
            let v = c.expect_problem(
                &stream,
                Req::new("GET", "/v1/stream"),
                503,
                "too-many-streams",
                None,
            );
            limit_is(&mut c, "GET /v1/stream (second stream)", v, 1);
            drop(open);
        }
        Err(e) => c.fail("GET /v1/stream (first stream)", e),
    }
    assert!(
        c.failures.is_empty(),
        "{} limit failures:\n  {}",
        c.failures.len(),
        c.failures.join("\n  ")
    );
}
