//! A receiver that is down, a Stele that restarts, a secret that is wrong:
//! nothing is lost, the order holds, duplicates stay within what was in
//! flight, and ingest never waits.

use super::*;
use crate::support::inproc::Server;
use std::collections::HashMap;

/// The finding ids of the accepted notifications, in arrival order.
fn finding_ids(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| b["finding"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// `ids` without repeats of one notification, checking that the order of
/// first deliveries is `want` and that no id came more than `dups_max`
/// times beyond the first in all.
fn check_delivered(ids: &[String], want: &[String], dups_max: usize) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut first = Vec::new();
    for id in ids {
        let n = seen.entry(id).or_default();
        if *n == 0 {
            first.push(id.clone());
        }
        *n += 1;
    }
    assert_eq!(first, want, "every notification, in order");
    let dups: usize = seen.values().map(|n| n - 1).sum();
    assert!(
        dups <= dups_max,
        "{dups} duplicates (at most {dups_max}): {ids:?}"
    );
}

#[test]
fn a_receiver_down_then_up_gets_the_backlog_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let conf = config(
        tmp.path(),
        &rx.url(),
        &signed(),
        &finding_rule("all", None, Some("low")),
    );
    let server = Server::start_with_file(&tmp.path().join("data"), &conf);
    server.append_own(&finding("new_ip", "low", 0));
    rx.wait_accepted(1);
    let down = rx.down();
    let mut want = vec!["finding-new_ip-0".to_string()];
    for i in 1..=5 {
        server.append_own(&finding("new_ip", "high", i));
        want.push(format!("finding-new_ip-{i}"));
    }
    wait_until("a failed attempt", || {
        metric(&server, "stele_alert_deliveries_total{result=\"failed\"}") >= 2.0
    });
    // Ingest goes on while alerts wait.
    let started = Instant::now();
    post(&server, "login", 20);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(metric(&server, "stele_alert_delivery_failing"), 1.0);
    assert!(metric(&server, "stele_alert_backlog_events") >= 25.0);
    let (st, _, ready) = server.get("/readyz");
    assert_eq!(
        st, 200,
        "a failing receiver does not make Stele unready: {ready}"
    );
    assert_eq!(ready["degraded"], true, "{ready}");
    assert_eq!(ready["state"]["alerts"]["failing"], true);
    assert!(ready["state"]["alerts"]["last_error"]
        .as_str()
        .unwrap()
        .contains("webhook ops"));
    let rx = down.up();
    let got = rx.wait_accepted(6);
    caught_up(&server);
    check_delivered(&finding_ids(&rx.wait_accepted(6)), &want, 0);
    assert_eq!(got.len(), 6);
    assert_eq!(metric(&server, "stele_alert_delivery_failing"), 0.0);
    assert_eq!(metric(&server, "stele_alert_backlog_events"), 0.0);
    assert_eq!(alert_state(&server)["failing"], false);
}

#[test]
fn a_restart_mid_backlog_delivers_everything_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rx = Receiver::start();
    let conf = config(
        tmp.path(),
        &rx.url(),
        &signed(),
        &finding_rule("all", None, Some("low")),
    );
    let server = Server::start_with_file(&data, &conf);
    server.append_own(&finding("stuck_run", "medium", 0));
    rx.wait_accepted(1);
    let down = rx.down();
    let mut want = vec!["finding-stuck_run-0".to_string()];
    for i in 1..=3 {
        server.append_own(&finding("stuck_run", "medium", i));
        want.push(format!("finding-stuck_run-{i}"));
    }
    wait_until("a failed attempt", || {
        metric(&server, "stele_alert_deliveries_total{result=\"failed\"}") >= 1.0
    });
    drop(server);
    // The position names the first delivered notification's event only.
    let saved = std::fs::read_to_string(data.join("alert-position.json")).unwrap();
    let saved: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["version"], 1);
    let server = Server::start_with_file(&data, &conf);
    assert!(alert_state(&server)["backlog_events"].as_u64().unwrap() >= 3);
    for i in 4..=5 {
        server.append_own(&finding("stuck_run", "medium", i));
        want.push(format!("finding-stuck_run-{i}"));
    }
    let rx = down.up();
    rx.wait_accepted(6);
    caught_up(&server);
    // In flight at the restart: at most the one notification being retried.
    check_delivered(&finding_ids(&rx.wait_accepted(6)), &want, 1);
    // A second restart with nothing pending delivers nothing again.
    let accepted = rx.all().iter().filter(|g| g.accepted).count();
    drop(server);
    let server = Server::start_with_file(&data, &conf);
    server.append_own(&finding("stuck_run", "medium", 6));
    rx.wait_accepted(accepted + 1);
    caught_up(&server);
    let got = rx.wait_accepted(accepted + 1);
    assert_eq!(finding_ids(&got[accepted..]), vec!["finding-stuck_run-6"]);
}

#[test]
fn a_wrong_secret_is_refused_by_the_receiver_and_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let wrong = "secret = \"not-the-receivers-secret-at-all\"\n";
    let conf = config(
        tmp.path(),
        &rx.url(),
        wrong,
        &finding_rule("all", None, None),
    );
    // finding_rule without kind or severity is no rule at all: refused.
    assert!(stele::config::Config::load(Some(&conf), |_| None).is_err());
    let conf = config(
        tmp.path(),
        &rx.url(),
        wrong,
        &finding_rule("all", None, Some("low")),
    );
    let server = Server::start_with_file(&tmp.path().join("data"), &conf);
    server.append_own(&finding("new_ip", "high", 1));
    wait_until("two refused attempts", || rx.all().len() >= 2);
    let all = rx.all();
    assert!(all.iter().all(|g| !g.signed && !g.accepted), "{all:?}");
    // The same notification each time, with a signature that is there but wrong.
    assert!(all.iter().all(|g| g.body == all[0].body));
    let sig = all[0].header("x-stele-signature").unwrap();
    let ts = all[0].header("x-stele-timestamp").unwrap();
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts.parse().unwrap()) < 60, "{ts}");
    // Counted once the refusal reached the deliverer, just after the
    // receiver recorded the attempt: wait for it rather than race it.
    wait_until("two refusals counted", || {
        metric(&server, "stele_alert_deliveries_total{result=\"failed\"}") >= 2.0
    });
    assert_eq!(
        metric(
            &server,
            "stele_alert_deliveries_total{result=\"delivered\"}"
        ),
        0.0
    );
    let last_error = alert_state(&server)["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last_error.contains("HTTP 401"), "{last_error}");
    // The right secret, by SIGHUP: the pending notification goes through.
    config(
        tmp.path(),
        &rx.url(),
        &signed(),
        &finding_rule("all", None, Some("low")),
    );
    server.reload(&conf);
    let got = rx.wait_accepted(1);
    assert_eq!(got[0]["finding"]["id"], "finding-new_ip-1");
}

#[test]
fn a_window_survives_a_restart_without_firing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rx = Receiver::start();
    let conf = config(
        tmp.path(),
        &rx.url(),
        &signed(),
        &threshold_rule("t", "action=export", 3, "1d"),
    );
    let server = Server::start_with_file(&data, &conf);
    post(&server, "export", 2);
    caught_up(&server);
    drop(server);
    // The window's two events are counted again after the restart.
    let server = Server::start_with_file(&data, &conf);
    post(&server, "export", 1);
    let got = rx.wait_accepted(1);
    assert_eq!(
        (got[0]["seq"].as_u64(), got[0]["count"].as_u64()),
        (Some(3), Some(3))
    );
    // Stopped at once: an orderly stop lets the attempt in flight finish
    // and records it, so it is not sent again.
    drop(server);
    // And the window that fired does not fire again after another restart.
    let server = Server::start_with_file(&data, &conf);
    post(&server, "export", 2);
    caught_up(&server);
    assert_eq!(rx.all().len(), 1, "{:?}", rx.all());
}

#[test]
fn a_damaged_position_stops_alerts_and_says_so_but_stele_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("alert-position.json"),
        "{\"version\":9,\"seq\":1}\n",
    )
    .unwrap();
    let rx = Receiver::start();
    let conf = config(
        tmp.path(),
        &rx.url(),
        &signed(),
        &finding_rule("all", None, Some("low")),
    );
    let server = Server::start_with_file(&data, &conf);
    wait_until("the alert task to give up", || {
        alert_state(&server)["failing"] == true
    });
    let (st, _, ready) = server.get("/readyz");
    assert_eq!(st, 200, "{ready}");
    assert_eq!(ready["degraded"], true);
    let why = ready["state"]["alerts"]["last_error"].as_str().unwrap();
    assert!(
        why.contains("is not an alert position of version 1"),
        "{why}"
    );
    // Ingest and reads go on; the file is left for the operator.
    post(&server, "login", 1);
    assert_eq!(server.get("/v1/events").0, 200);
    assert!(data.join("alert-position.json").exists());
}
