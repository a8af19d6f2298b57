//! The idempotent-retry contract: a retry replays the same answer before and
//! after the indexes caught up; the same id with another event is a conflict.

use super::*;

/// The same replay answer however often it is asked, before and after the
/// indexes caught up.
fn assert_replay(r: &Reply, want: &[(&str, u64)], how: &str) {
    assert_eq!(r.status, 200, "{how}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{how}");
    let items: Vec<Value> = want
        .iter()
        .map(|(id, seq)| json!({"id": id, "seq": seq}))
        .collect();
    assert_eq!(
        r.json(),
        json!({"events": items, "replayed": true}),
        "{how}"
    );
}

#[test]
fn idempotent_retries_and_id_conflicts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let a = json!({"id": "idem-a", "action": "login", "actor": "alice", "tenant": "acme",
                   "timestamp": "2026-11-23T10:00:00Z", "metadata": {"x": 1, "y": [1, 2]},
                   "changes": [{"field": "status", "old": "pending", "new": "paid"}]});
    let r = post_json(&d, &a);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["events"], json!([{"id": "idem-a", "seq": 1}]));
    let (c, dd, e) = (ok_event("idem-c"), ok_event("idem-d"), ok_event("idem-e"));
    let r = post_json(&d, &json!([c, dd, e]));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(seqs_of(&r.json()), vec![2, 3, 4]);

    let checks = |phase: &str| {
        // Same id, same content: 200, the original seq, nothing stored.
        assert_replay(&post_json(&d, &a), &[("idem-a", 1)], phase);
        // The same content written differently (key order, spacing, framing).
        let reordered = r#"{ "metadata": {"y": [1,2], "x": 1}, "tenant": "acme",
            "changes": [{"new": "paid", "old": "pending", "field": "status"}],
            "actor": "alice", "timestamp": "2026-11-23T10:00:00Z", "action": "login", "id": "idem-a" }"#;
        assert_replay(
            &post(&d, "application/json", reordered.as_bytes()),
            &[("idem-a", 1)],
            phase,
        );
        assert_replay(
            &post(
                &d,
                "application/x-ndjson",
                &ndjson(std::slice::from_ref(&a)),
            ),
            &[("idem-a", 1)],
            phase,
        );
        // A whole batch again: the same seqs, as one array, as NDJSON, or
        // reordered (each id keeps its own seq), or a part of it.
        let want = [("idem-c", 2), ("idem-d", 3), ("idem-e", 4)];
        assert_replay(&post_json(&d, &json!([c, dd, e])), &want, phase);
        assert_replay(
            &post(
                &d,
                "application/x-ndjson",
                &ndjson(&[c.clone(), dd.clone(), e.clone()]),
            ),
            &want,
            phase,
        );
        assert_replay(
            &post_json(&d, &json!([e, c, dd])),
            &[("idem-e", 4), ("idem-c", 2), ("idem-d", 3)],
            phase,
        );
        assert_replay(&post_json(&d, &json!([dd])), &[("idem-d", 3)], phase);

        // Same id, other content: 409.
        let mut changed = a.clone();
        changed["actor"] = json!("mallory");
        let pr = problem(
            &post_json(&d, &changed),
            409,
            "id-conflict",
            "Event id conflict",
        );
        assert_eq!(pr["field"], "id", "{phase}: {pr}");
        assert!(detail(&pr).contains("\"idem-a\""), "{phase}: {pr}");
        assert!(detail(&pr).contains("different content"), "{phase}: {pr}");
        let mut changed = a.clone();
        changed["metadata"]["x"] = json!(2);
        problem(
            &post_json(&d, &changed),
            409,
            "id-conflict",
            "Event id conflict",
        );
        // A timestamp dropped is other content too.
        let mut changed = a.clone();
        changed.as_object_mut().unwrap().remove("timestamp");
        problem(
            &post_json(&d, &changed),
            409,
            "id-conflict",
            "Event id conflict",
        );

        // A stored id with a new one: 409, and the new one is not stored.
        for batch in [
            json!([a, ok_event("idem-new")]),
            json!([ok_event("idem-new"), c]),
            json!([c, dd, e, {"action": "view", "actor": "no-id"}]),
        ] {
            let pr = problem(
                &post_json(&d, &batch),
                409,
                "id-conflict",
                "Event id conflict",
            );
            assert_eq!(pr["field"], "id", "{phase}: {pr}");
            assert!(
                detail(&pr).contains("mixes events already stored with new ones"),
                "{phase}: {pr}"
            );
        }
        // One id twice in one request.
        let pr = problem(
            &post_json(&d, &json!([ok_event("idem-twice"), ok_event("idem-twice")])),
            409,
            "id-conflict",
            "Event id conflict",
        );
        assert!(detail(&pr).contains("appears twice"), "{phase}: {pr}");
        let pr = problem(
            &post_json(&d, &json!([a, a])),
            409,
            "id-conflict",
            "Event id conflict",
        );
        assert!(detail(&pr).contains("appears twice"), "{phase}: {pr}");

        assert_eq!(
            log_last_seq(&d),
            4,
            "{phase}: a retry or conflict stored events"
        );
    };
    checks("before the indexes caught up");
    wait_indexed(&d, 4, Duration::from_secs(30));
    checks("from the key index");
    for id in ["idem-new", "idem-twice"] {
        problem(
            &get(&d, &format!("/v1/events/{id}")),
            404,
            "not-found",
            "No such event",
        );
    }
    let listed = get(&d, "/v1/events?order=asc").json();
    let ids: Vec<&str> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["idem-a", "idem-c", "idem-d", "idem-e"],
        "{listed}"
    );
}
