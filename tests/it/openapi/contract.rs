//! The contract runner: a server with a signing key and the fixtures
//! ingested, every operation walked (`every_operation_answers_as_documented`)
//! and the statuses each run must have exercised (`MUST_SEE`).

use super::*;

pub(super) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Events with the fields the spec's examples and path parameters need.
pub(super) fn fixtures() -> Vec<Value> {
    vec![
        json!({"id": "fx-pw-1", "action": "password_reset", "actor": "alice", "tenant": "acme",
               "category": "auth", "source": "user", "status": "success", "severity": "notice",
               "user_id": "u-42", "user_name": "Ada Lovelace", "session_id": "sess-1",
               "correlation_id": "req-1", "ip": "203.0.113.7", "user_agent": "curl/8.5",
               "entity_type": "user", "entity_id": "u-42", "risk_score": 40, "duration_ms": 12,
               "description": "password reset requested by the user",
               "metadata": {"reason": "forgotten", "nested": {"a": [1, 2, {"b": null}]}}}),
        json!({"id": "fx-order-2", "action": "update", "actor": "bob", "tenant": "acme",
               "category": "billing", "source": "user", "status": "success", "severity": "info",
               "user_id": "u-42", "entity_type": "order", "entity_id": "55",
               "entity_name": "Order #55", "ip": "2001:db8::1",
               "timestamp": "2026-11-23T10:00:01.5+01:00",
               "description": "password changed on checkout",
               "changes": [{"field": "total", "old": 10, "new": 12.5},
                           {"field": "note", "new": {"text": "gift"}},
                           {"field": "coupon", "old": "X1"}]}),
        json!({"action": "nightly_cleanup", "source": "scheduled", "status": "failure",
               "severity": "error", "tenant": "globex", "duration_ms": 5000,
               "description": "cleanup failed: disk quota"}),
        // A process run with a batch operation inside (the examples of
        // /v1/processes/{id} and /v1/batches/{id}).
        json!({"action": "export_started", "tenant": "acme", "source": "scheduled",
               "process_name": "nightly_export", "process_id": "run-2026-12-03",
               "phase": "started", "items_total": 20}),
        json!({"action": "bulk_update", "tenant": "acme", "source": "scheduled",
               "process_name": "nightly_export",
               "process_id": "run-2026-12-03", "batch_id": "b-2026-12-03",
               "phase": "started", "items_total": 20}),
        json!({"action": "bulk_update", "tenant": "acme", "source": "scheduled",
               "process_name": "nightly_export",
               "process_id": "run-2026-12-03", "batch_id": "b-2026-12-03",
               "phase": "finished", "status": "success", "items_processed": 20}),
        json!({"action": "export_finished", "tenant": "acme", "source": "scheduled",
               "process_name": "nightly_export",
               "process_id": "run-2026-12-03", "phase": "finished", "status": "success",
               "items_processed": 20, "items_failed": 0}),
        // A failed-login burst: two findings (the user, the address), so
        // /v1/findings has a next page.
        json!({"action": "login_failed", "tenant": "acme", "user_id": "u-burst",
               "ip": "198.51.100.9"}),
        json!({"action": "login_failed", "tenant": "acme", "user_id": "u-burst",
               "ip": "198.51.100.9"}),
        json!({"action": "login_failed", "tenant": "acme", "user_id": "u-burst",
               "ip": "198.51.100.9"}),
        json!({"action": "login_failed", "tenant": "acme", "user_id": "u-burst",
               "ip": "198.51.100.9"}),
        json!({"action": "login_failed", "tenant": "acme", "user_id": "u-burst",
               "ip": "198.51.100.9"}),
    ]
}

fn post_ok(addr: &str, events: &Value) -> Value {
    let req = Req::new("POST", "/v1/events")
        .body(Some("application/json"), events.to_string().into_bytes());
    let resp = send(addr, &req).unwrap_or_else(|e| panic!("setup: {}: {e}", req.describe()));
    assert!(
        resp.status == 201 || resp.status == 200,
        "setup: {} answered {}: {}",
        req.describe(),
        resp.status,
        resp.text()
    );
    serde_json::from_slice(&resp.body).unwrap()
}

/// Waits until the listing shows `n` events (the indexes commit every second).
fn wait_indexed(addr: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp = send(addr, &Req::new("GET", "/v1/events?limit=1000")).expect("list");
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let got = v["events"].as_array().map_or(0, Vec::len);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "setup: only {got} of {n} events became searchable within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(super) fn start(spec: &Spec) -> (tempfile::TempDir, Server, World) {
    let tmp = tempfile::tempdir().unwrap();
    // A signing key, so checkpoints (GET /v1/checkpoint) and digests run.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp.path().join("signing.key"))
            .unwrap();
        writeln!(f, "{}", "2a".repeat(32)).unwrap();
    }
    let d = Server::start(tmp.path());
    // The spec's own request example first, then fixtures, then generated
    // events (around now, so `hours` and `last_24h` see them).
    let example = spec
        .at("/paths/~1v1~1events/post/requestBody/content/application~1json/example")
        .clone();
    let mut posted = vec![example.clone()];
    post_ok(&d.addr, &example);
    let fx = fixtures();
    post_ok(&d.addr, &Value::Array(fx.clone()));
    posted.extend(fx);
    let mut gen = stele::testkit::EventGen::new(42).with_base_time(now_micros() - 7_200_000_000);
    let generated: Vec<Value> = (0..40).map(|_| gen.json()).collect();
    post_ok(&d.addr, &Value::Array(generated.clone()));
    posted.extend(generated);
    wait_indexed(&d.addr, posted.len());
    // The detectors append their findings behind the writer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.get("/v1/findings?user_id=u-burst").2["findings"]
        .as_array()
        .is_none_or(|f| f.is_empty())
        || d.get("/v1/findings?ip=198.51.100.9").2["findings"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    {
        assert!(std::time::Instant::now() < deadline, "no findings appended");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The checkpointer signs the head within its interval (1 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.get("/v1/checkpoint").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "no checkpoint signed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (tmp, d, World { posted })
}

/// Statuses every run must have exercised, by operation.
const MUST_SEE: &[(&str, &[u16])] = &[
    ("GET /healthz", &[200]),
    ("GET /readyz", &[200]),
    ("GET /metrics", &[200]),
    ("POST /v1/events", &[200, 201, 400, 409, 413, 415]),
    ("GET /v1/events", &[200, 400]),
    ("GET /v1/search", &[200, 400]),
    ("GET /v1/events/{id}", &[200, 404]),
    ("GET /v1/entities/{type}/{id}/history", &[200, 400]),
    ("GET /v1/users/{id}/events", &[200, 400]),
    ("GET /v1/stats", &[200, 400]),
    ("GET /v1/count", &[200, 400]),
    ("GET /v1/fields", &[200]),
    ("GET /v1/fields/{name}/values", &[200, 400, 404]),
    ("GET /v1/export", &[200, 400]),
    ("GET /v1/stream", &[200, 400]),
    ("GET /v1/stream/ws", &[101, 400]),
    ("GET /v1/findings", &[200, 400]),
    ("GET /v1/processes", &[200, 400]),
    ("GET /v1/processes/{id}", &[200]),
    ("GET /v1/batches", &[200, 400]),
    ("GET /v1/batches/{id}", &[200]),
];

#[test]
fn every_operation_answers_as_documented() {
    let spec = Spec::load();
    let (_tmp, d, world) = start(&spec);
    let ops = spec.operations();
    let mut c = Checker {
        spec: &spec,
        addr: d.addr.clone(),
        failures: Vec::new(),
        seen: BTreeSet::new(),
        checked: 0,
    };
    // Every query parameter name in the spec with an example value.
    let mut all_params: BTreeMap<String, Value> = BTreeMap::new();
    for op in &ops {
        for p in spec.params(op) {
            if p.location == "query" {
                if let Some(e) = p.example {
                    all_params.entry(p.name).or_insert(e);
                }
            }
        }
    }
    all_params.insert("no_such_parameter".into(), json!("x"));

    for op in &ops {
        match op.method.as_str() {
            "GET" => walk_get(&mut c, &world, op, &all_params),
            "POST" if op.path == "/v1/events" => walk_ingest(&mut c, op),
            "POST" if op.path == "/v1/holds" => walk_holds(&mut c, op, &ops),
            // Exercised by walk_holds (it needs the hold it creates).
            "DELETE" if op.path == "/v1/holds/{name}" => {}
            _ => c.fail(&op.label(), "this test does not know how to exercise it"),
        }
    }
    drive_errors(&mut c, &ops);
    undocumented_methods(&mut c, &world, &ops);

    for (op, statuses) in MUST_SEE {
        for s in *statuses {
            if !c.seen.contains(&(op.to_string(), *s)) {
                c.fail(op, format!("status {s} was never exercised"));
            }
        }
        if !ops.iter().any(|o| o.label() == *op) {
            c.fail(op, "the operation is not in the spec");
        }
    }
    let exercised: BTreeSet<String> = c.seen.iter().map(|(o, _)| o.clone()).collect();
    for op in &ops {
        if !exercised.contains(&op.label()) {
            c.fail(&op.label(), "never exercised");
        }
    }
    eprintln!(
        "checked {} responses of {} operations; statuses seen: {:?}",
        c.checked,
        ops.len(),
        c.seen
    );
    assert!(
        c.failures.is_empty(),
        "{} contract failures:\n  {}",
        c.failures.len(),
        c.failures.join("\n  ")
    );
}
