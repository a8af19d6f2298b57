//! The real binary killed with SIGKILL mid-backlog: the position on disk
//! is what was delivered, so nothing delivered is sent again and nothing
//! pending is lost.

use super::*;
use crate::support::daemon::Daemon;

fn start(data: &Path, conf: &Path) -> Daemon {
    Daemon::start_with(data, &["--config", conf.to_str().unwrap()])
}

fn failed_attempts(d: &Daemon) -> f64 {
    let (_, text) = d.get_raw("/metrics");
    let series = "stele_alert_deliveries_total{result=\"failed\"} ";
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("no failed deliveries sample in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_sigkill_mid_backlog_loses_no_alert_and_repeats_none_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rx = Receiver::start();
    let rules: String = (1..=5)
        .map(|i| threshold_rule(&format!("r{i}"), &format!("action=a{i}"), 1, "1d"))
        .collect();
    let conf = config(tmp.path(), &rx.url(), &signed(), &rules);
    let post = |d: &Daemon, action: &str| {
        let (st, _, r) = d.post(&json!({"action": action, "actor": "x"}));
        assert_eq!(st, 201, "{r}");
    };
    let d = start(&data, &conf);
    post(&d, "a1");
    rx.wait_accepted(1);
    let down = rx.down();
    for i in 2..=5 {
        post(&d, &format!("a{i}"));
    }
    wait_until("a failed attempt", || failed_attempts(&d) >= 1.0);
    drop(d); // SIGKILL: no orderly stop, no last position write
    let d = start(&data, &conf);
    let rx = down.up();
    rx.wait_accepted(5);
    wait_until("the alert position to reach the log's end", || {
        let (_, _, r) = d.get("/readyz");
        r["state"]["alerts"]["position"] == r["state"]["log_last_seq"]
    });
    let rules: Vec<String> = rx
        .wait_accepted(5)
        .iter()
        .map(|b| b["rule"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        rules.iter().filter(|r| *r == "r1").count(),
        1,
        "delivered before the kill: {rules:?}"
    );
    let mut first: Vec<&String> = Vec::new();
    for r in &rules {
        if !first.contains(&r) {
            first.push(r);
        }
    }
    assert_eq!(first, ["r1", "r2", "r3", "r4", "r5"], "{rules:?}");
    assert!(
        rules.len() <= 6,
        "at most the one in flight twice: {rules:?}"
    );
}

#[test]
fn sighup_puts_new_rules_in_force_in_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rx = Receiver::start();
    let a = threshold_rule("a", "action=a1", 1, "1d");
    let conf = config(tmp.path(), &rx.url(), &signed(), &a);
    let d = start(&data, &conf);
    let b = threshold_rule("b", "action=b1", 1, "1d");
    config(tmp.path(), &rx.url(), &signed(), &[a, b].concat());
    d.hup();
    wait_until("two rules in force", || {
        d.get("/readyz").2["state"]["alerts"]["rules"] == 2
    });
    let (st, _, r) = d.post(&json!({"action": "b1", "actor": "x"}));
    assert_eq!(st, 201, "{r}");
    let got = rx.wait_accepted(1);
    assert_eq!(got[0]["rule"], "b");
}
