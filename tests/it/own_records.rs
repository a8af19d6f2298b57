//! Stele's own records stay out of the way: with API keys on, every read
//! appends an `audit_access` event, which must not make a dashboard's totals
//! grow on each refresh or crowd listings, searches, statistics and streams,
//! unless asked for (`stele_records=include|only`, `ingested_by=stele`,
//! `category=audit_access`); exports include them unless told otherwise.

use crate::support::http::{get_json_as, send, Body, Sse};
use crate::support::inproc::Server;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const TOKEN: &str = "stele_QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";

fn get(d: &Server, path: &str) -> Value {
    get_json_as(&d.addr, TOKEN, path)
}

fn count(d: &Server, path: &str) -> usize {
    get(d, path)["events"].as_array().unwrap().len()
}

fn poll(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn audit_records_are_left_out_of_reads_unless_asked_and_exported_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("stele.toml");
    std::fs::write(
        &conf,
        format!(
            "[auth.roles.ingest]\nrate_per_sec = 0\n[auth.roles.read]\nrate_per_sec = 0\n\
             [auth.roles.export]\nrate_per_sec = 0\n\
             [[auth.keys]]\nid = \"dash\"\nhash = \"sha256:{}\"\n\
             roles = [\"ingest\", \"read\", \"export\"]\ntenants = [\"*\"]\n",
            hex::encode(Sha256::digest(TOKEN.as_bytes()))
        ),
    )
    .unwrap();
    let d = Server::start_with_file(&tmp.path().join("data"), &conf);
    let auth = format!("Bearer {TOKEN}");
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"action": "login", "user_id": format!("u-{i}"), "status": "success"}))
        .collect();
    let body = serde_json::to_vec(&batch).unwrap();
    let r = send(
        &d.addr,
        "POST",
        "/v1/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Body::Sized(&body),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    poll("the five events listed", || count(&d, "/v1/events") == 5);
    // Every read so far wrote an audit record; wait until they are searchable.
    poll("audit records indexed", || {
        count(&d, "/v1/events?stele_records=include&limit=1000") > 5
    });

    // A dashboard refreshing: the totals and the listing do not move.
    for _ in 0..3 {
        assert_eq!(count(&d, "/v1/events"), 5);
        assert_eq!(get(&d, "/v1/stats")["total"], 5);
        assert_eq!(get(&d, "/v1/count")["count"], 5);
        assert_eq!(get(&d, "/v1/events?total=true&limit=2")["total"], 5);
        assert_eq!(get(&d, "/v1/count?status=success")["count"], 5);
        assert_eq!(count(&d, "/v1/search?q=action:login"), 5);
        assert_eq!(count(&d, "/v1/users/u-1/events"), 1);
        std::thread::sleep(Duration::from_millis(1200)); // past an index commit
    }

    // Asked for explicitly, they are there.
    let all = count(&d, "/v1/events?stele_records=include&limit=1000");
    assert!(all > 5 + 10, "{all}");
    let only = get(&d, "/v1/events?stele_records=only&limit=1000");
    let only = only["events"].as_array().unwrap();
    assert!(only
        .iter()
        .all(|e| e["ingested_by"] == "stele" && e["category"] == "audit_access"));
    let n_only = only.len();
    assert!(n_only >= all - 5, "{n_only} of {all}");
    let by_category = count(&d, "/v1/events?category=audit_access&limit=1000");
    let by_provenance = count(&d, "/v1/events?ingested_by=stele&limit=1000");
    assert!(by_category >= n_only && by_provenance >= n_only);
    assert_eq!(count(&d, "/v1/events?ingested_by=dash&limit=1000"), 5);
    assert!(
        get(&d, "/v1/stats?stele_records=include")["total"]
            .as_u64()
            .unwrap()
            > 5
    );
    let counted = |q: &str| {
        get(&d, &format!("/v1/count?{q}"))["count"]
            .as_u64()
            .unwrap()
    };
    let (with, own) = (
        counted("stele_records=include"),
        counted("stele_records=only"),
    );
    assert!(own > 10 && with >= own + 5, "{with} {own}");
    let bad = send(
        &d.addr,
        "GET",
        "/v1/events?stele_records=maybe",
        &[("Authorization", &auth)],
        Body::None,
    );
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("exclude"), "{}", bad.text());

    // Exports keep the record: audit events in, unless left out.
    let export = |q: &str| -> Vec<Value> {
        let r = send(
            &d.addr,
            "GET",
            &format!("/v1/export?format=ndjson{q}"),
            &[("Authorization", &auth)],
            Body::None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for q in ["", "&sort=seq"] {
        let everything = export(q);
        assert!(everything.len() > 5 + 10, "{}", everything.len());
        assert!(everything.iter().any(|e| e["category"] == "audit_access"));
        assert_eq!(export(&format!("{q}&stele_records=exclude")).len(), 5);
    }

    // The live stream leaves them out too (its own start record included).
    let mut sse = Sse::open(
        &d.addr,
        "/v1/stream?from_seq=1",
        &[("Authorization", auth.clone())],
    );
    assert_eq!(sse.status, 200, "{}", sse.body);
    let got = sse.data_within(Duration::from_secs(2));
    let actions: Vec<String> = got
        .iter()
        .map(|e| e.json()["action"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(actions, vec!["login"; 5]);
    let mut sse = Sse::open(
        &d.addr,
        "/v1/stream?from_seq=1&stele_records=only",
        &[("Authorization", auth.clone())],
    );
    let got = sse.data_within(Duration::from_secs(2));
    assert!(!got.is_empty());
    assert!(got.iter().all(|e| e.json()["ingested_by"] == "stele"));
}
