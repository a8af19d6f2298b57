//! Risk scores computed at ingest (`intel::risk`): events posted without a
//! `risk_score` get one with the rules that fired, posted scores are kept, the
//! rules are filterable, and a retry of a scored event is still a replay.

use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn wait_count(d: &Server, path: &str, want: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, v) = d.get(path);
        assert_eq!(st, 200, "{v}");
        if v["count"] == want {
            return v;
        }
        assert!(Instant::now() < deadline, "{path}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn scores_are_computed_only_when_not_posted_and_retries_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let noon = "2026-12-02T12:00:0";
    let mut batch: Vec<Value> = (0..5)
        .map(|i| {
            json!({"id": format!("f{i}"), "action": "login_failed", "user_id": "eve",
                   "ip": "198.51.100.7", "timestamp": format!("{noon}{i}Z")})
        })
        .collect();
    batch.push(
        json!({"id": "posted", "action": "login_failed", "user_id": "eve",
                      "risk_score": 3, "timestamp": format!("{noon}6Z")}),
    );
    batch.push(json!({"id": "quiet", "action": "view", "user_id": "ann",
                      "timestamp": format!("{noon}7Z")}));
    let (st, _, v) = d.post(&Value::Array(batch.clone()));
    assert_eq!(st, 201, "{v}");
    wait_count(&d, "/v1/count", 7);

    let get = |id: &str| d.get(&format!("/v1/events/{id}")).2;
    let first = get("f0");
    assert_eq!(first["risk_score"], 30);
    assert_eq!(first["risk_rules"], json!(["failed_auth"]));
    // The fifth failure within ten minutes is a burst.
    let fifth = get("f4");
    assert_eq!(fifth["risk_score"], 60);
    assert_eq!(fifth["risk_rules"], json!(["failed_auth", "auth_burst"]));
    let posted = get("posted");
    assert_eq!(posted["risk_score"], 3);
    assert!(posted.get("risk_rules").is_none(), "{posted}");
    let quiet = get("quiet");
    assert_eq!(
        (&quiet["risk_score"], &quiet["risk_rules"]),
        (&json!(0), &json!([]))
    );

    // Filters: by rule, by level.
    wait_count(&d, "/v1/count?risk_rules=AUTH_BURST", 1);
    wait_count(&d, "/v1/count?risk_rules=failed_auth", 5);
    wait_count(&d, "/v1/count?risk_score=low", 6);
    wait_count(&d, "/v1/count?risk_score=medium", 1);

    // The same request again is a replay, although the rules would now score
    // the first events as a burst: idempotency compares the events as posted.
    let (st, _, v) = d.post(&Value::Array(batch));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["replayed"], true);

    // A client cannot post the server's marking.
    let (st, _, p) = d.post(&json!({"action": "x", "actor": "y", "risk_rules": []}));
    assert_eq!(st, 400, "{p}");
    assert!(p.to_string().contains("assigned by the server"), "{p}");
}
