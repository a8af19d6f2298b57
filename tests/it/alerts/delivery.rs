//! What fires, once, and what the receiver gets.

use super::*;
use crate::support::inproc::Server;

#[test]
fn a_threshold_rule_fires_once_per_window_and_never_below_its_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let rule = threshold_rule("failed-logins", "action=login&status=failure", 3, "1d");
    let conf = config(tmp.path(), &rx.url(), &signed(), &rule);
    let server = Server::start_with_file(&tmp.path().join("data"), &conf);
    let fail = json!({"action": "login", "status": "failure", "actor": "mallory"});
    for _ in 0..2 {
        assert_eq!(server.post(&fail).0, 201);
    }
    post(&server, "login", 5); // no status: not matched
    caught_up(&server);
    assert!(
        rx.all().is_empty(),
        "fired below the threshold: {:?}",
        rx.all()
    );
    let (_, _, third) = server.post(&fail);
    let got = rx.wait_accepted(1);
    for _ in 0..4 {
        assert_eq!(server.post(&fail).0, 201);
    }
    caught_up(&server);
    let all = rx.all();
    assert_eq!(all.len(), 1, "one alert per window: {all:?}");
    assert!(all[0].signed);
    let n = &got[0];
    assert_eq!(n["rule"], "failed-logins");
    assert_eq!(n["kind"], "threshold");
    assert_eq!(
        (n["count"].as_u64(), n["threshold"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(n["window"]["secs"], 86_400);
    assert_eq!(n["sample_event_ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        n["sample_event_ids"][2], third["events"][0]["id"],
        "{third}"
    );
    assert_eq!(all[0].header("x-stele-delivery"), n["id"].as_str());
    assert!(
        n["text"].as_str().unwrap().contains("3 events matching"),
        "{n}"
    );
    // The link lists the events behind the alert, with the rule's filter.
    let url = n["events_url"].as_str().unwrap();
    assert!(
        url.starts_with("/v1/events?action=login&status=failure&since="),
        "{url}"
    );
    // (queries see the log once the index commits: up to a second later)
    wait_until("the linked listing to show the 7 events", || {
        let (st, _, page) = server.get(url);
        assert_eq!(st, 200, "{page}");
        page["events"].as_array().unwrap().len() == 7
    });
    assert_eq!(metric(&server, "stele_alerts_fired_total"), 1.0);
    assert_eq!(
        metric(
            &server,
            "stele_alert_deliveries_total{result=\"delivered\"}"
        ),
        1.0
    );
}

#[test]
fn finding_rules_fire_by_kind_and_by_least_severity() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let rules = [
        finding_rule("new-ips", Some("new_ip"), None),
        finding_rule("serious", None, Some("medium")),
    ]
    .concat();
    let conf = config(tmp.path(), &rx.url(), &signed(), &rules);
    let server = Server::start_with_file(&tmp.path().join("data"), &conf);
    server.append_own(&finding("new_ip", "low", 1));
    server.append_own(&finding("stuck_run", "low", 2));
    server.append_own(&finding("error_rate_spike", "high", 3));
    server.append_own(&finding("new_ip", "medium", 4));
    // A client cannot post a finding (the category is reserved).
    let (st, _, r) = server.post(&finding("new_ip", "high", 5));
    assert!((400..500).contains(&st), "{st} {r}");
    caught_up(&server);
    let got: Vec<(String, String)> = rx
        .wait_accepted(4)
        .iter()
        .map(|b| {
            (
                b["rule"].as_str().unwrap().into(),
                b["finding"]["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("new-ips", "finding-new_ip-1"),
        ("serious", "finding-error_rate_spike-3"),
        ("new-ips", "finding-new_ip-4"),
        ("serious", "finding-new_ip-4"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
    let all = rx.all();
    assert_eq!(all.len(), 4, "{all:?}");
    let b = &all[1].body;
    assert_eq!(b["kind"], "finding");
    assert_eq!(b["finding"]["metadata"]["severity"], "high");
    assert_eq!(b["events_url"], "/v1/events/finding-error_rate_spike-3");
    assert!(b["text"]
        .as_str()
        .unwrap()
        .contains("high finding error_rate_spike: finding number 3"));
}

#[test]
fn history_does_not_fire_and_the_slack_format_is_text_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Stored before any rule existed: never alerted on.
    let before = Server::start(&data);
    before.append_own(&finding("new_ip", "high", 1));
    drop(before);
    let rx = Receiver::unsigned();
    let conf = config(
        tmp.path(),
        &rx.url(),
        "format = \"slack\"",
        &finding_rule("all", None, Some("low")),
    );
    let server = Server::start_with_file(&data, &conf);
    server.append_own(&finding("privilege_change", "high", 2));
    let got = rx.wait_accepted(1);
    caught_up(&server);
    assert_eq!(rx.all().len(), 1, "{:?}", rx.all());
    let body = got[0].as_object().unwrap();
    assert_eq!(body.len(), 1, "a Slack body is only its text: {body:?}");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("Stele alert all: high finding privilege_change: finding number 2"),
        "{text}"
    );
    assert_eq!(
        rx.all()[0].header("x-stele-signature"),
        None,
        "no secret, no signature"
    );
}

#[test]
fn a_reload_puts_new_rules_in_force_and_resets_changed_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let conf = config(
        tmp.path(),
        &rx.url(),
        &signed(),
        &threshold_rule("t", "action=deploy", 3, "1d"),
    );
    let server = Server::start_with_file(&tmp.path().join("data"), &conf);
    post(&server, "deploy", 2);
    caught_up(&server);
    // A changed filter (matching the same events): the window starts
    // empty, so two more do not fire a rule of 3 though the old window held 2.
    let changed = threshold_rule("t", "action=deploy&actor=alice", 3, "1d");
    config(tmp.path(), &rx.url(), &signed(), &changed);
    server.reload(&conf);
    post(&server, "deploy", 2);
    caught_up(&server);
    assert!(rx.all().is_empty(), "{:?}", rx.all());
    post(&server, "deploy", 1);
    let got = rx.wait_accepted(1);
    assert_eq!(got[0]["count"], 3);
    assert!(
        got[0]["events_url"]
            .as_str()
            .unwrap()
            .contains("actor=alice"),
        "{}",
        got[0]
    );
    // All rules removed: nothing fires, the position file goes.
    config(tmp.path(), &rx.url(), &signed(), "");
    server.reload(&conf);
    wait_until("no rules in force", || alert_state(&server)["rules"] == 0);
    let position = tmp.path().join("data/alert-position.json");
    wait_until("the position file to go", || !position.exists());
    post(&server, "deploy", 3);
    caught_up(&server);
    assert_eq!(rx.all().len(), 1, "{:?}", rx.all());
}

#[test]
fn a_full_text_rule_counts_the_events_the_index_finds() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let conf = config(
        tmp.path(),
        &rx.url(),
        &signed(),
        &threshold_rule("denied", "q=denied", 2, "1d"),
    );
    let server = Server::start_with_file(&tmp.path().join("data"), &conf);
    let said = |d: &str| json!({"action": "access", "actor": "bob", "description": d});
    assert_eq!(server.post(&said("access denied to the vault")).0, 201);
    assert_eq!(server.post(&said("access granted")).0, 201);
    caught_up(&server);
    assert!(rx.all().is_empty(), "{:?}", rx.all());
    assert_eq!(server.post(&said("denied again")).0, 201);
    let got = rx.wait_accepted(1);
    assert_eq!(got[0]["seq"], 3);
    assert_eq!(got[0]["count"], 2);
    assert!(got[0]["events_url"]
        .as_str()
        .unwrap()
        .starts_with("/v1/events?q=denied&since="));
}
