//! Self-audit: every read, export, stream and admin request leaves an
//! `audit_access` record saying who looked at what, with which parameters,
//! status and result count.

use super::*;

/// What one audit record must say.
struct Expect {
    action: &'static str,
    method: &'static str,
    path: &'static str,
    params: Value,
    http_status: u16,
    phase: &'static str,
    /// None: null or any number (not pinned down by the contract).
    result_count: Option<Value>,
}

/// An [`Expect`] as a table row: (action, method, path, params as JSON,
/// http_status, phase, result_count as JSON or "any").
type ExpectRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u16,
    &'static str,
    &'static str,
);

impl Expect {
    fn from_row(&(action, method, path, params, http_status, phase, count): &ExpectRow) -> Expect {
        Expect {
            action,
            method,
            path,
            params: serde_json::from_str(params).unwrap(),
            http_status,
            phase,
            result_count: (count != "any").then(|| serde_json::from_str(count).unwrap()),
        }
    }
}

/// The audit records of the `looker` key (read and export, tenant acme).
#[rustfmt::skip]
const LOOKER_AUDIT: &[ExpectRow] = &[
    ("stream",   "GET", "/v1/stream",                   r#"{"from_seq": "1"}"#,                   200, "start",   "any"),
    ("stream",   "GET", "/v1/stream",                   r#"{"from_seq": "1"}"#,                   200, "end",     "3"),
    ("list",     "GET", "/v1/events",                   r#"{"action": "update", "limit": "10"}"#, 200, "request", "3"),
    ("get",      "GET", "/v1/events/acme-1",            "{}",                                     200, "request", "any"),
    ("get",      "GET", "/v1/events/globex-0",          "{}",                                     404, "request", "any"),
    ("search",   "GET", "/v1/search",                   r#"{"q": "invoice"}"#,                    200, "request", "3"),
    ("stats",    "GET", "/v1/stats",                    "{}",                                     200, "request", "any"),
    ("history",  "GET", "/v1/entities/order/7/history", "{}",                                     200, "request", "3"),
    ("timeline", "GET", "/v1/users/u1/events",          "{}",                                     200, "request", "3"),
    ("export",   "GET", "/v1/export",                   "{}",                                     200, "start",   "any"),
    ("export",   "GET", "/v1/export",                   "{}",                                     200, "end",     "3"),
    ("segments", "GET", "/v1/segments",                 "{}",                                     403, "request", "any"),
    ("metrics",  "GET", "/metrics",                     "{}",                                     403, "request", "any"),
    ("list",     "GET", "/v1/events",                   r#"{"limit": "5000"}"#,                   400, "request", "any"),
];

/// The audit records of the `boss` key (admin). Admin listings count what
/// they list (segments, holds); the others are not about events (null).
#[rustfmt::skip]
const BOSS_AUDIT: &[ExpectRow] = &[
    ("segments",  "GET",    "/v1/segments",         "{}", 200, "request", "any"),
    ("retention", "GET",    "/v1/retention",        "{}", 200, "request", "null"),
    ("holds",     "GET",    "/v1/holds",            "{}", 200, "request", "any"),
    ("holds",     "POST",   "/v1/holds",            "{}", 201, "request", "null"),
    ("holds",     "DELETE", "/v1/holds/audit-hold", "{}", 204, "request", "null"),
    ("metrics",   "GET",    "/metrics",             "{}", 200, "request", "null"),
];

/// What is wrong with `r`, the audit record of `key` that `w` describes.
fn record_problems(key: &str, w: &Expect, r: &Value) -> Vec<String> {
    let m = &r["metadata"];
    let status = if w.http_status < 400 {
        "success"
    } else {
        "failure"
    };
    let mut bad = Vec::new();
    for (field, got, want) in [
        ("category", &r["category"], json!("audit_access")),
        ("actor", &r["actor"], json!(key)),
        ("source", &r["source"], json!("integration")),
        ("status", &r["status"], json!(status)),
        ("ip", &r["ip"], json!("127.0.0.1")),
        ("metadata.key_id", &m["key_id"], json!(key)),
    ] {
        if *got != want {
            bad.push(format!("{field} = {got}, want {want}"));
        }
    }
    if !r["tenant"].is_null() {
        bad.push(format!("tenant = {}, want none", r["tenant"]));
    }
    match &w.result_count {
        Some(c) if m["result_count"] != *c => {
            // Admin routes return segments, holds, plans or
            // metrics, not events: null ("not applicable").
            bad.push(format!("result_count = {}, want {c}", m["result_count"]));
        }
        None if !(m["result_count"].is_null() || m["result_count"].is_u64()) => {
            bad.push(format!(
                "result_count = {}, want a number or null",
                m["result_count"]
            ));
        }
        _ => {}
    }
    if w.action == "get"
        && w.http_status == 200
        && !(m["result_count"] == 1 || m["result_count"].is_null())
    {
        bad.push(format!(
            "result_count = {} for one event",
            m["result_count"]
        ));
    }
    if bad.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{key} {} {} {}: {}\n  {r}",
        w.action,
        w.path,
        w.phase,
        bad.join("; ")
    )]
}

/// The audit record among `recs` that `w` describes.
fn find_record(recs: &[Value], w: &Expect) -> Option<Value> {
    recs.iter()
        .find(|r| {
            let m = &r["metadata"];
            r["action"] == w.action
                && m["path"] == w.path
                && m["method"] == w.method
                && m["phase"] == w.phase
                && m["params"] == w.params
                && (m["http_status"] == w.http_status
                    // DELETE may answer 200 or 204.
                    || (w.method == "DELETE" && m["http_status"].as_u64().is_some_and(|s| (200..300).contains(&s))))
        })
        .cloned()
}

#[test]
fn self_audit_records_who_looked_at_what() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = format!("[auth]\nmetrics = \"admin\"\n{UNLIMITED_ROLES}");
    let ids = ["auditor", "ingester", "looker", "boss", "limited"];
    conf += &key_toml(
        "auditor",
        &token("auditor"),
        &["read", "export"],
        &["*"],
        "",
    );
    conf += &key_toml("ingester", &token("ingester"), &["ingest"], &["*"], "");
    conf += &key_toml(
        "looker",
        &token("looker"),
        &["read", "export"],
        &["acme"],
        "",
    );
    conf += &key_toml("boss", &token("boss"), &["admin"], &["*"], "");
    conf += &key_toml(
        "limited",
        &token("limited"),
        &["read"],
        &["*"],
        "rate_per_sec = 1\nburst = 1",
    );
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = start(tmp.path(), &conf);
    let a = d.addr.clone();
    let (auditor, ingester, looker, boss) = (
        token("auditor"),
        token("ingester"),
        token("looker"),
        token("boss"),
    );

    let mut batch = Vec::new();
    for (tenant, n) in [("acme", 3), ("globex", 2)] {
        for i in 0..n {
            batch.push(
                json!({"id": format!("{tenant}-{i}"), "action": "update", "user_id": "u1",
                "entity_type": "order", "entity_id": "7", "tenant": tenant,
                "description": "invoice review"}),
            );
        }
    }
    let r = post(&a, Some(&ingester), &Value::Array(batch));
    assert_eq!(r.status, 201, "{}", r.brief());
    wait_for_count(&a, "/v1/events?tenant=acme", &auditor, 3);
    wait_for_count(&a, "/v1/events?tenant=globex", &auditor, 2);
    wait_all_indexed(&a);

    // The stream first: its end record comes once the server notices.
    let mut st = Sse::open(&a, "/v1/stream?from_seq=1", &bearer(&looker));
    let got = st.read_until(30, |e| e.json()["id"] == "acme-2");
    assert_eq!(got.len(), 3, "{got:?}");
    drop(st);

    let expect_ok = |path: &str, status: u16| {
        let r = get(&a, path, Some(&looker));
        assert_eq!(r.status, status, "{path}: {}", r.brief());
        r
    };
    expect_ok("/v1/events?action=update&limit=10", 200);
    expect_ok("/v1/events/acme-1", 200);
    expect_ok("/v1/events/globex-0", 404);
    expect_ok("/v1/search?q=invoice", 200);
    expect_ok("/v1/stats", 200);
    expect_ok("/v1/entities/order/7/history", 200);
    expect_ok("/v1/users/u1/events", 200);
    let r = expect_ok("/v1/export", 200);
    assert_eq!(
        r.body.lines().filter(|l| !l.is_empty()).count(),
        3,
        "{}",
        r.body
    );
    expect_ok("/v1/segments", 403);
    expect_ok("/metrics", 403);
    expect_ok("/v1/events?limit=5000", 400);

    for path in ["/v1/segments", "/v1/retention", "/v1/holds", "/metrics"] {
        assert_eq!(get(&a, path, Some(&boss)).status, 200, "{path}");
    }
    let r = send_json(
        &a,
        "POST",
        "/v1/holds",
        Some(&boss),
        &json!({"name": "audit-hold"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    let boss_auth = format!("Bearer {boss}");
    let r = request(
        &a,
        "DELETE",
        "/v1/holds/audit-hold",
        &[("Authorization", &boss_auth)],
        b"",
    );
    assert!((200..300).contains(&r.status), "{}", r.brief());

    // Not audited: 401, 429 and ingest.
    assert_eq!(
        get(&a, "/v1/users/unauth-marker/events", Some(&token("nobody"))).status,
        401
    );
    assert_eq!(get(&a, "/metrics", None).status, 401);
    let limited = token("limited");
    assert_eq!(
        get(&a, "/v1/users/limited-ok/events", Some(&limited)).status,
        200
    );
    assert_eq!(
        get(&a, "/v1/users/limited-429/events", Some(&limited)).status,
        429
    );

    let want: Vec<Expect> = LOOKER_AUDIT.iter().map(Expect::from_row).collect();
    let want_boss: Vec<Expect> = BOSS_AUDIT.iter().map(Expect::from_row).collect();
    let audit_of = |key: &str| -> Vec<Value> {
        get(
            &a,
            &format!("/v1/events?category=audit_access&actor={key}&limit=200"),
            Some(&auditor),
        )
        .events()
    };
    let mut failures = Vec::new();
    for (key, wants) in [("looker", &want), ("boss", &want_boss)] {
        let deadline = Instant::now() + Duration::from_secs(40);
        let (recs, missing) = loop {
            let recs = audit_of(key);
            let missing: Vec<String> = wants
                .iter()
                .filter(|w| find_record(&recs, w).is_none())
                .map(|w| {
                    format!(
                        "{} {} {} phase {} status {} params {}",
                        w.action, w.method, w.path, w.phase, w.http_status, w.params
                    )
                })
                .collect();
            if missing.is_empty() || Instant::now() > deadline {
                break (recs, missing);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if !missing.is_empty() {
            failures.push(format!(
                "{key}: no audit record for:\n  {}\nrecords found:\n  {}",
                missing.join("\n  "),
                recs.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
        for w in wants.iter() {
            let Some(r) = find_record(&recs, w) else {
                continue;
            };
            failures.extend(record_problems(key, w, &r));
        }
        // Start before end.
        for action in ["stream", "export"] {
            let seq_of = |phase| {
                recs.iter()
                    .find(|r| r["action"] == action && r["metadata"]["phase"] == phase)
                    .and_then(|r| r["seq"].as_u64())
            };
            if let (Some(s), Some(e)) = (seq_of("start"), seq_of("end")) {
                if s >= e {
                    failures.push(format!("{key} {action}: start at seq {s}, end at {e}"));
                }
            }
        }
    }

    // What must not be audited, and the tokens nowhere in the log.
    poll(20, "the limited key's successful request audited", || {
        (!audit_of("limited").is_empty()).then_some(())
    });
    let r = get(&a, "/v1/export", Some(&auditor));
    assert_eq!(r.status, 200, "{}", r.brief());
    let stored: Vec<Value> = r
        .body
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for e in stored.iter().filter(|e| e["category"] == "audit_access") {
        let path = e["metadata"]["path"].as_str().unwrap_or("");
        if path.contains("unauth-marker") || path.contains("limited-429") {
            failures.push(format!("a 401 or 429 was audited: {e}"));
        }
        if e["action"] == "ingest" || e["actor"] == "ingester" {
            failures.push(format!("an ingest was audited: {e}"));
        }
        if e["metadata"]["path"] == "/metrics" && e["metadata"]["http_status"] == 401 {
            failures.push(format!("a 401 was audited: {e}"));
        }
    }
    for id in ids {
        let t = token(id);
        if r.body.contains(&t) || r.body.contains(&t[6..]) {
            failures.push(format!("{id}'s token is stored in the log"));
        }
        if d.log_text().contains(&t[6..]) {
            failures.push(format!("{id}'s token is in the daemon's stderr"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
