//! Counts and facets over HTTP: `total`, `offset` and `page` on listings,
//! `GET /v1/count`, `GET /v1/fields`, `GET /v1/fields/{name}/values`,
//! `/v1/stats` with `group_by`, `include` and `top`, their 400s, and the
//! tenant scope of a key on every count and facet.

use crate::support::http::{get_json_as, send, Body};
use crate::support::inproc::Server;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// 30 events: actions login (15), update (10), delete (5); tenants acme
/// (20) and globex (10); every third a failure; every fifth an error.
fn fixtures() -> Value {
    let actions = ["login", "update", "login", "delete", "update", "login"];
    (0..30)
        .map(|i| {
            json!({
                "id": format!("f-{i}"),
                "action": actions[i % 6],
                // Half in capitals: keyword filters ignore letter case, so
                // facets count them as one value.
                "actor": if i % 3 == 0 { format!("User-{}", i % 4) } else { format!("user-{}", i % 4) },
                "tenant": if i % 3 == 2 { "globex" } else { "acme" },
                "status": if i % 3 == 0 { "failure" } else { "success" },
                "severity": if i % 5 == 0 { "error" } else { "info" },
                "ip": format!("10.0.0.{}", i % 2),
                "timestamp": format!("2026-11-20T10:{:02}:00Z", i),
                "description": if i % 2 == 0 { "password reset" } else { "profile change" },
            })
        })
        .collect()
}

fn wait_count(d: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, v) = d.get("/v1/count");
        assert_eq!(st, 200, "{v}");
        if v["count"] == json!(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {v} of {n} events were counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start() -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let (st, _, v) = d.post(&fixtures());
    assert_eq!(st, 201, "{v}");
    wait_count(&d, 30);
    (tmp, d)
}

fn seqs(v: &Value) -> Vec<u64> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn values(v: &Value) -> Vec<(String, u64)> {
    v["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no values in {v}"))
        .iter()
        .map(|e| {
            (
                e["value"].as_str().unwrap().to_owned(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn pairs(p: &[(&str, u64)]) -> Vec<(String, u64)> {
    p.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

#[test]
fn offset_and_page_listings_carry_the_total_and_a_cursor() {
    let (_tmp, d) = start();
    for sort in ["time", "seq"] {
        for order in ["desc", "asc"] {
            let base = format!("/v1/events?sort={sort}&order={order}");
            let (_, _, all) = d.get(&format!("{base}&limit=30"));
            let all = seqs(&all);
            assert_eq!(all.len(), 30);
            let (st, _, v) = d.get(&format!("{base}&limit=7&offset=10&total=true"));
            assert_eq!(st, 200, "{v}");
            assert_eq!(seqs(&v), all[10..17], "{sort} {order}");
            assert_eq!(v["total"], 30);
            // Page 3 of 5 is offset 10; it has no total unless asked.
            let (_, _, p3) = d.get(&format!("{base}&limit=5&page=3"));
            assert_eq!(seqs(&p3), all[10..15]);
            assert!(p3.get("total").is_none(), "{p3}");
            // Its cursor continues right after it.
            let c = p3["next_cursor"].as_str().unwrap();
            let (_, _, next) = d.get(&format!("{base}&limit=5&cursor={c}"));
            assert_eq!(seqs(&next), all[15..20]);
            // Past the end: empty, the total still there.
            let (_, _, end) = d.get(&format!("{base}&limit=5&offset=40&total=true"));
            assert_eq!((seqs(&end).len(), &end["total"]), (0, &json!(30)));
            assert_eq!(end["next_cursor"], Value::Null);
        }
    }
    // Filters and full text: the total is the filtered count.
    let (_, _, v) = d.get("/v1/search?q=password&tenant=acme&limit=2&total=true");
    let (_, _, c) = d.get("/v1/count?q=password&tenant=acme");
    assert_eq!(v["total"], c["count"]);
    assert_eq!(c["count"], 10);
    assert_eq!(d.get("/v1/count?action=login&status=failure").2["count"], 5);
}

#[test]
fn fields_and_their_values_under_the_filters() {
    let (_tmp, d) = start();
    let (st, _, v) = d.get("/v1/fields");
    assert_eq!(st, 200, "{v}");
    let fields = v["fields"].as_array().unwrap();
    let field = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap().clone();
    assert_eq!(field("action")["groupable"], true);
    assert_eq!(field("action")["filter"], "action");
    assert_eq!(field("description")["full_text"], true);
    assert_eq!(
        field("severity")["values"],
        json!(["debug", "info", "notice", "warning", "error", "critical"])
    );
    assert!(v["parameters"]["listing"]
        .as_array()
        .unwrap()
        .contains(&json!("offset")));

    // Seed 002's /actions, /levels, /categories.
    let (st, _, a) = d.get("/v1/fields/action/values");
    assert_eq!(st, 200, "{a}");
    assert_eq!(
        values(&a),
        pairs(&[("login", 15), ("update", 10), ("delete", 5)])
    );
    assert_eq!(
        (&a["total"], &a["distinct"], &a["missing"]),
        (&json!(30), &json!(3), &json!(0))
    );
    assert_eq!(a["truncated"], false);
    let (_, _, s) = d.get("/v1/fields/severity/values?tenant=acme");
    assert_eq!(values(&s), pairs(&[("info", 16), ("error", 4)]));
    let (_, _, c) = d.get("/v1/fields/category/values");
    assert_eq!((values(&c), &c["missing"]), (vec![], &json!(30)));
    // Values differing only in letter case are one value, as the filter
    // compares them, shown as the most frequent spelling (`user-0` ×5 over
    // `User-0` ×3): each value given back as the filter counts the same.
    let (_, _, actors) = d.get("/v1/fields/actor/values");
    let actors = values(&actors);
    assert_eq!(
        actors.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(),
        ["user-0", "user-1", "user-2", "user-3"]
    );
    for (v, n) in &actors {
        let (_, _, c) = d.get(&format!("/v1/count?actor={}", v.to_uppercase()));
        assert_eq!(c["count"], json!(n), "{v}");
    }
    // Cut at top: the order is count desc, then value asc.
    let (_, _, ip) = d.get("/v1/fields/ip/values?top=1&action=login");
    assert_eq!(values(&ip), pairs(&[("10.0.0.0", 10)]));
    assert_eq!(
        (&ip["distinct"], &ip["truncated"]),
        (&json!(2), &json!(true))
    );
}

#[test]
fn statistics_compute_the_groups_and_parts_asked_for() {
    let (_tmp, d) = start();
    let (st, _, v) = d.get("/v1/stats?group_by=status,action&top=2&include=rates");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["total"], 30);
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups[0]["field"], "status");
    assert_eq!(
        values(&groups[0]),
        pairs(&[("success", 20), ("failure", 10)])
    );
    assert_eq!(values(&groups[1]), pairs(&[("login", 15), ("update", 10)]));
    assert_eq!(groups[1]["truncated"], true);
    assert_eq!(v["failure_rate"].as_f64(), Some(10.0 / 30.0));
    assert_eq!(v["error_severity_rate"].as_f64(), Some(6.0 / 30.0));
    for absent in ["histogram", "last_24h", "by_action", "top_users"] {
        assert!(v.get(absent).is_none(), "{absent} in {v}");
    }
    let (_, _, u) = d.get("/v1/stats?include=active_users&group_by=action");
    assert_eq!(
        (&u["active_users"], u["groups"].as_array().unwrap().len()),
        (&json!(0), 1),
        "{u}"
    );
    let (_, _, h) = d.get("/v1/stats?include=histogram,last_24h&interval=day&tenant=globex");
    assert_eq!(
        h["histogram"],
        json!([{"start": "2026-11-20T00:00:00.000000Z", "count": 10}])
    );
    assert_eq!((&h["interval"], &h["groups"]), (&json!("day"), &json!([])));
    // Without group_by or include: the full object, both rates named, the
    // old `error_rate` equal to `failure_rate`; `top` cuts every list.
    let (_, _, full) = d.get("/v1/stats?top=1");
    assert_eq!(full["by_action"], json!([{"action": "login", "count": 15}]));
    assert_eq!(full["error_rate"], full["failure_rate"]);
    assert_eq!(full["error_severity_rate"].as_f64(), Some(0.2));
    assert_eq!(
        full["top_users"].as_array().unwrap().len(),
        0,
        "no user_id in the fixtures"
    );
    // Risk levels: as the risk_score filter counts them, in the full object
    // and with include=risk (events posted without a score got one).
    let (_, _, r) = d.get("/v1/stats?include=risk&tenant=acme");
    let mut scored = 0;
    for level in ["low", "medium", "high"] {
        let (_, _, c) = d.get(&format!("/v1/count?risk_score={level}&tenant=acme"));
        assert_eq!(r["by_risk"][level], c["count"], "{level}: {r}");
        scored += c["count"].as_u64().unwrap();
    }
    assert!(scored > 0, "{r}");
    let (_, _, c) = d.get("/v1/count?tenant=acme");
    assert_eq!(
        r["by_risk"]["unscored"].as_u64(),
        Some(c["count"].as_u64().unwrap() - scored)
    );
    let (_, _, all) = d.get("/v1/stats?tenant=acme");
    assert_eq!(all["by_risk"], r["by_risk"]);
}

#[test]
fn bad_counts_and_facets_are_400s_naming_the_parameter() {
    let (_tmp, d) = start();
    let (_, _, first) = d.get("/v1/events?limit=2");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (st, _, p) = d.get("/v1/fields/nosuch/values");
    assert_eq!(
        (st, p["title"].as_str()),
        (404, Some("No such field")),
        "{p}"
    );
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            "/v1/events?limit=100&offset=9901".into(),
            400,
            "invalid-parameter",
            "offset",
        ),
        (
            "/v1/events?limit=1000&page=11".into(),
            400,
            "invalid-parameter",
            "page",
        ),
        (
            format!("/v1/events?limit=2&offset=2&cursor={cursor}"),
            400,
            "invalid-parameter",
            "offset",
        ),
        (
            "/v1/events?offset=1&page=1".into(),
            400,
            "invalid-parameter",
            "page",
        ),
        (
            "/v1/events?total=yes".into(),
            400,
            "invalid-parameter",
            "total",
        ),
        (
            "/v1/events?group_by=action".into(),
            400,
            "invalid-parameter",
            "group_by",
        ),
        (
            "/v1/export?total=true".into(),
            400,
            "invalid-parameter",
            "total",
        ),
        (
            "/v1/stats?group_by=nosuch".into(),
            400,
            "invalid-parameter",
            "group_by",
        ),
        (
            "/v1/stats?group_by=description".into(),
            400,
            "invalid-parameter",
            "group_by",
        ),
        ("/v1/stats?top=0".into(), 400, "invalid-parameter", "top"),
        (
            "/v1/stats?top=10001".into(),
            400,
            "invalid-parameter",
            "top",
        ),
        (
            "/v1/stats?include=everything".into(),
            400,
            "invalid-parameter",
            "include",
        ),
        (
            "/v1/stats?group_by=action&interval=day".into(),
            400,
            "invalid-parameter",
            "interval",
        ),
        (
            "/v1/stats?offset=3".into(),
            400,
            "invalid-parameter",
            "offset",
        ),
        (
            "/v1/count?limit=3".into(),
            400,
            "invalid-parameter",
            "limit",
        ),
        (
            "/v1/fields/description/values".into(),
            400,
            "invalid-parameter",
            "name",
        ),
        (
            "/v1/fields/action/values?top=10001".into(),
            400,
            "invalid-parameter",
            "top",
        ),
        (
            "/v1/fields/action/values?limit=3".into(),
            400,
            "invalid-parameter",
            "limit",
        ),
    ];
    for (target, status, kind, field) in cases {
        let (st, ctype, p) = d.get(&target);
        assert_eq!(
            (st, ctype.as_str(), p["type"].as_str(), p["field"].as_str()),
            (
                status,
                "application/problem+json",
                Some(format!("https://stele.dev/problems/{kind}").as_str()),
                Some(field)
            ),
            "{target}: {p}"
        );
    }
    // The route table's 405s.
    let (st, _, _) = d.call("POST", "/v1/count", "application/json", b"{}");
    assert_eq!(st, 405);
    let (st, _, _) = d.call(
        "DELETE",
        "/v1/fields/action/values",
        "application/json",
        b"",
    );
    assert_eq!(st, 405);
}

/// A key scoped to one tenant counts, pages and lists values of its tenant
/// only.
#[test]
fn counts_and_facets_keep_to_the_key_s_tenants() {
    let tmp = tempfile::tempdir().unwrap();
    let token = |seed: &str| format!("stele_{}", "A".repeat(42) + seed);
    let (all, globex) = (token("a"), token("g"));
    let hash = |t: &str| format!("sha256:{}", hex::encode(Sha256::digest(t.as_bytes())));
    let conf = format!(
        "[auth]\n[[auth.keys]]\nid = \"all\"\nhash = \"{}\"\nroles = [\"ingest\", \"read\"]\ntenants = [\"*\"]\n\
         [[auth.keys]]\nid = \"globex\"\nhash = \"{}\"\nroles = [\"read\"]\ntenants = [\"globex\"]\n",
        hash(&all),
        hash(&globex)
    );
    let conf_path = tmp.path().join("stele.toml");
    std::fs::write(&conf_path, conf).unwrap();
    let d = Server::start_with_file(&tmp.path().join("data"), &conf_path);
    let get = |t: &str, target: &str| get_json_as(&d.addr, t, target);
    let body = fixtures().to_string();
    let auth = format!("Bearer {all}");
    let r = send(
        &d.addr,
        "POST",
        "/v1/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Body::Sized(body.as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&all, "/v1/count?tenant=globex")["count"] != 10 {
        assert!(Instant::now() < deadline, "not indexed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&globex, "/v1/count")["count"], 10);
    assert_eq!(
        get(&globex, "/v1/events?limit=3&offset=1&total=true")["total"],
        10
    );
    // Every globex event is a login (i % 3 == 2 → i % 6 is 2 or 5).
    let a = get(&globex, "/v1/fields/action/values");
    assert_eq!(values(&a), pairs(&[("login", 10)]));
    let t = get(&globex, "/v1/fields/tenant/values");
    assert_eq!(values(&t), pairs(&[("globex", 10)]));
    let t = get(&all, "/v1/fields/tenant/values");
    assert_eq!(values(&t), pairs(&[("acme", 20), ("globex", 10)]));
    let s = get(&globex, "/v1/stats?group_by=actor,tenant");
    assert_eq!(s["total"], 10);
    assert_eq!(
        s["groups"][1]["values"],
        json!([{"value": "globex", "count": 10}])
    );
    let fields = get(&globex, "/v1/fields");
    assert!(fields["fields"].as_array().unwrap().len() > 10, "{fields}");
}
