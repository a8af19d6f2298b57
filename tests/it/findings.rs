//! Detections end to end (`intel::watch` on the activity feed): findings are
//! appended to the log as Stele's own events, listed by `GET /v1/findings`
//! with the anomaly score, kept out of listings, scoped by tenant, point at
//! the events behind them, and a restart neither repeats nor forgets them.

use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The start of the current aligned 10-minute window, RFC 3339 plus `s` seconds.
fn in_window(s: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let start = now - now.rem_euclid(600);
    chrono::DateTime::from_timestamp(start + s, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Waits until `/v1/findings?{query}` lists `n` findings; returns the answer.
fn findings(d: &Server, query: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, v) = d.get(&format!("/v1/findings?{query}"));
        assert_eq!(st, 200, "{v}");
        let got = v["findings"].as_array().unwrap().len();
        if got == n {
            return v;
        }
        assert!(got < n, "more findings than expected: {v:#}");
        assert!(
            Instant::now() < deadline,
            "{query}: {got} of {n} findings: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn findings_are_appended_listed_scoped_and_survive_a_restart_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut burst: Vec<Value> = (0..6)
        .map(|i| {
            json!({"action": "login_failed", "user_id": "eve", "tenant": "acme",
                   "ip": "203.0.113.9", "timestamp": in_window(i)})
        })
        .collect();
    burst.push(
        json!({"action": "role_granted", "user_id": "ann", "tenant": "globex",
                      "entity_id": "admins", "timestamp": in_window(7)}),
    );
    {
        let d = Server::start(tmp.path());
        let (st, _, v) = d.post(&Value::Array(burst.clone()));
        assert_eq!(st, 201, "{v}");
        let all = findings(&d, "", 3);
        let mut seen: Vec<(String, String, String, String)> = all["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let m = &f["metadata"];
                assert_eq!(f["category"], "stele.finding");
                assert_eq!(f["ingested_by"], "stele");
                (
                    m["kind"].as_str().unwrap().to_owned(),
                    m["subject"]["type"].as_str().unwrap().to_owned(),
                    m["subject"]["id"].as_str().unwrap().to_owned(),
                    m["severity"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        seen.sort();
        let s = |a: &str, b: &str, c: &str, e: &str| (a.into(), b.into(), c.into(), e.into());
        assert_eq!(
            seen,
            vec![
                s("failed_login_burst", "ip", "203.0.113.9", "medium"),
                s("failed_login_burst", "user", "eve", "medium"),
                s("privilege_change", "user", "ann", "medium"),
            ]
        );
        let summary = &all["summary"];
        assert_eq!(summary["anomaly_score"], 45, "{summary}");
        assert_eq!(summary["open"], json!({"low": 0, "medium": 3, "high": 0}));
        assert_eq!(summary["key_findings"].as_array().unwrap().len(), 3);
        // Each tenant scored on its own findings, most anomalous first.
        let per: Vec<(String, u64)> = summary["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["tenant"].as_str().unwrap().into(),
                    t["anomaly_score"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(per, [("acme".into(), 30), ("globex".into(), 15)]);
        assert_eq!(
            summary["tenants"][1]["top_finding"]["kind"],
            "privilege_change"
        );

        // Kept out of listings and counts; filters by kind, level and tenant.
        assert_eq!(d.get("/v1/count").2["count"], 7);
        assert_eq!(d.get("/v1/count?stele_records=only").2["count"], 3);
        findings(&d, "kind=privilege_change", 1);
        findings(&d, "level=medium&user_id=eve", 1);
        findings(&d, "level=high", 0);
        let globex = findings(&d, "tenant=globex", 1);
        assert_eq!(globex["summary"]["anomaly_score"], 15);
        assert_eq!(globex["summary"]["tenants"].as_array().unwrap().len(), 1);

        // The finding's query lists the events behind it.
        let eve = findings(&d, "user_id=eve", 1);
        let q = eve["findings"][0]["metadata"]["query"].as_str().unwrap();
        let (st, _, behind) = d.get(&format!("/v1/events?{q}"));
        assert_eq!(st, 200, "{behind}");
        assert_eq!(
            behind["events"].as_array().unwrap().len(),
            6,
            "{q}: {behind}"
        );

        for bad in [
            "level=severe",
            "category=x",
            "stele_records=exclude",
            "bogus=1",
        ] {
            let (st, _, p) = d.get(&format!("/v1/findings?{bad}"));
            assert_eq!(st, 400, "{bad}: {p}");
        }
    }
    // A restart replays the history without raising anything again, and a
    // window that keeps growing at the same level stays one finding.
    let d = Server::start(tmp.path());
    let (st, _, v) = d.post(&json!({"action": "login_failed", "user_id": "eve",
                                    "tenant": "acme", "ip": "203.0.113.9",
                                    "timestamp": in_window(20)}));
    assert_eq!(st, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/v1/count").2["count"] != 8 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    // A marker event after it: once the feed has seen it, it has seen the one
    // before too. (The feed works behind the writer, in seq order.)
    let marker: Vec<Value> = (0..5)
        .map(|i| {
            json!({"action": "login_failed", "user_id": "zed", "tenant": "acme",
                        "timestamp": in_window(30 + i)})
        })
        .collect();
    assert_eq!(d.post(&Value::Array(marker)).0, 201);
    findings(&d, "user_id=zed", 1);
    findings(&d, "", 4);
}

#[test]
fn the_dashboard_shows_the_anomaly_score_and_running_runs_of_its_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let mut batch: Vec<Value> = (0..5)
        .map(|i| {
            json!({"action": "login_failed", "user_id": "eve", "tenant": "acme",
                   "timestamp": in_window(i)})
        })
        .collect();
    for (tenant, run) in [("acme", "r-1"), ("acme", "r-2"), ("globex", "r-3")] {
        batch.push(
            json!({"action": "export_started", "source": "scheduled", "tenant": tenant,
                          "process_name": "export", "process_id": run, "phase": "started"}),
        );
    }
    batch.push(
        json!({"action": "export_finished", "source": "scheduled", "tenant": "acme",
                      "process_name": "export", "process_id": "r-2", "phase": "finished",
                      "status": "success"}),
    );
    assert_eq!(d.post(&Value::Array(batch)).0, 201);
    findings(&d, "", 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    for (path, score, running) in [
        ("/v1/dashboard", 15, 2),
        ("/v1/dashboard?tenant=acme", 15, 1),
        ("/v1/dashboard?tenant=globex", 0, 1),
    ] {
        loop {
            let (st, _, v) = d.get(path);
            assert_eq!(st, 200, "{v}");
            if v["processes"]["running"] == running {
                assert_eq!(v["anomaly_score"], score, "{path}: {v}");
                assert_eq!(v["findings"]["anomaly_score"], score);
                assert_eq!(v["processes"]["stuck"], 0);
                break;
            }
            assert!(Instant::now() < deadline, "{path}: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
