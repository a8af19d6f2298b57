//! `GET /v1/dashboard`: every figure against a count of the posted events,
//! windows by event time (backfilled events included), the tenant filter,
//! and the parameters it refuses.

use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[test]
fn dashboard_figures_equal_a_count_of_the_events() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let now = chrono::Utc::now();
    let mut batch: Vec<Value> = Vec::new();
    // 60 events: minutes ago 0..59 for i < 40 (the last hour), then 2 hours
    // and 2 days ago (outside it).
    for i in 0..60i64 {
        let ago = match i {
            0..=39 => chrono::Duration::minutes(i + 1),
            40..=49 => chrono::Duration::hours(2),
            _ => chrono::Duration::days(2),
        };
        let severity = ["info", "warning", "error", "critical"][(i % 4) as usize];
        let mut e = json!({
            "timestamp": (now - ago).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "action": "login",
            "tenant": if i % 4 == 0 { "globex" } else { "acme" },
            "user_id": format!("u-{}", i % 7),
            "status": if i % 5 == 0 { "failure" } else { "success" },
            "severity": severity,
        });
        if i % 3 != 0 {
            e["risk_score"] = json!((i * 7) % 101);
        }
        batch.push(e);
    }
    let (st, _, v) = d.post(&Value::Array(batch.clone()));
    assert_eq!(st, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/v1/count").2["count"] != 60 {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The events as stored, in posted order: those posted without a risk score
    // got a computed one (`intel::risk`), which the dashboard counts.
    let (st, _, stored) = d.get("/v1/events?sort=seq&order=asc&limit=100");
    assert_eq!(st, 200, "{stored}");
    let batch: Vec<Value> = stored["events"].as_array().unwrap().clone();
    assert_eq!(batch.len(), 60);
    assert!(batch
        .iter()
        .step_by(3)
        .all(|e| e["risk_rules"].is_array() && e["risk_score"].is_u64()));

    for tenant in [None, Some("acme")] {
        let path = match tenant {
            None => "/v1/dashboard".to_owned(),
            Some(t) => format!("/v1/dashboard?tenant={t}"),
        };
        let (st, _, dash) = d.get(&path);
        assert_eq!(st, 200, "{dash}");
        let evs: Vec<(i64, &Value)> = batch
            .iter()
            .enumerate()
            .map(|(i, e)| (i as i64, e))
            .filter(|(_, e)| tenant.is_none_or(|t| e["tenant"] == t))
            .collect();
        let hour: Vec<&(i64, &Value)> = evs.iter().filter(|(i, _)| *i < 40).collect();
        let n = |f: &dyn Fn(&Value) -> bool| hour.iter().filter(|(_, e)| f(e)).count() as u64;
        let h = &dash["last_hour"];
        let events = hour.len() as u64;
        let failures = n(&|e| e["status"] == "failure");
        let errors = n(&|e| e["severity"] == "error" || e["severity"] == "critical");
        assert_eq!(h["events"], events, "{path}");
        assert_eq!(h["failures"], failures, "{path}");
        assert_eq!(h["errors"], errors, "{path}");
        assert_eq!(h["critical"], n(&|e| e["severity"] == "critical"), "{path}");
        assert_eq!(h["failure_rate"], json!(failures as f64 / events as f64));
        assert_eq!(
            h["error_severity_rate"],
            json!(errors as f64 / events as f64)
        );
        let mut users = std::collections::BTreeMap::<String, u64>::new();
        for (_, e) in &hour {
            *users
                .entry(e["user_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert_eq!(h["active_users"], users.len() as u64);
        let mut top: Vec<(String, u64)> = users.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(h["top_users"], json!(top), "{path}");
        let risk =
            |lo: u64, hi: u64| n(&|e| e["risk_score"].as_u64().is_some_and(|r| lo <= r && r <= hi));
        let r = &h["risk"];
        assert_eq!(
            (&r["low"], &r["medium"], &r["high"], &r["unscored"]),
            (
                &json!(risk(0, 30)),
                &json!(risk(31, 70)),
                &json!(risk(71, 100)),
                &json!(n(&|e| e.get("risk_score").is_none()))
            ),
            "{path}"
        );
        let online: std::collections::BTreeSet<&str> = hour
            .iter()
            .filter(|(i, _)| *i < 14) // minutes ago 1..=14 (15 is at the edge)
            .map(|(_, e)| e["user_id"].as_str().unwrap())
            .collect();
        assert_eq!(dash["online_users_15m"], online.len() as u64, "{path}");
        assert_eq!(
            dash["events_24h"],
            evs.iter().filter(|(i, _)| *i < 50).count() as u64
        );
        // The newest by event time: minutes ago 1, 2, ... of this tenant.
        let latest: Vec<String> = dash["latest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = evs
            .iter()
            .take(10)
            .map(|(_, e)| e["timestamp"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(latest, want, "{path}");
        assert!(dash["generated_at"].as_str().unwrap().ends_with('Z'));
    }

    // The latest events when the last hour holds fewer than ten of them (the
    // dashboard then looks back a day, then everywhere): the newest by event
    // time of a brute-force sort.
    for (filter, keep) in [
        (
            "status=failure",
            &(|i: i64| i % 5 == 0) as &dyn Fn(i64) -> bool,
        ),
        ("status=failure&tenant=globex", &|i: i64| i % 20 == 0),
        ("user_id=u-3", &|i: i64| i % 7 == 3),
    ] {
        let (st, _, dash) = d.get(&format!("/v1/dashboard?{filter}"));
        assert_eq!(st, 200, "{dash}");
        let got: Vec<&str> = dash["latest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap())
            .collect();
        let mut want: Vec<&str> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i as i64))
            .map(|(_, e)| e["timestamp"].as_str().unwrap())
            .collect();
        want.sort_unstable_by(|a, b| b.cmp(a));
        want.truncate(10);
        assert_eq!(got, want, "{filter}");
    }

    for bad in ["since=1h", "hours=1", "limit=5", "order=asc", "bogus=1"] {
        let (st, _, v) = d.get(&format!("/v1/dashboard?{bad}"));
        assert_eq!(st, 400, "{bad}: {v}");
        assert_eq!(v["field"], bad.split('=').next().unwrap(), "{v}");
    }
}
