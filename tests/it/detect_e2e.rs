//! Detections end to end through a served Stele, from what a client posts to
//! what an operator sees: runs judged `stuck` by the activity feed's ticks (on
//! a manual clock, so an hour passes in a moment) and `slow` against their
//! process's history, the same user's burst in two tenants, and findings of
//! the real detectors delivered to a signed webhook (`tests/it/alerts`'s
//! receiver), with quiet traffic delivering nothing.
//!
//! Every wait is on a condition, never a fixed sleep: the feed and the indexes
//! at the log's end ([`settled`]: the detectors have appended what the events
//! raise and `/v1/findings` lists it), the findings listed, the receiver's
//! deliveries, the alert task's position.

use crate::alerts::{caught_up, config, finding_rule, metric, signed, Receiver};
use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stele::clock::{Clock, ManualClock};
use stele::config::Config;

use crate::support::time::{ts, wait_for, HOUR, MIN, SEC};

/// Now, to the second, in unix µs.
fn now_secs() -> i64 {
    chrono::Utc::now().timestamp() * SEC
}

/// The events of run `id` of `nightly_export` in `tenant`: `started` at
/// `start`, and `finished` (success) at `finish` when given.
fn run(tenant: &str, id: &str, start: i64, finish: Option<i64>) -> Vec<Value> {
    let mut out = vec![json!({
        "action": "export_started", "source": "scheduled", "tenant": tenant,
        "process_name": "nightly_export", "process_id": id, "phase": "started",
        "timestamp": ts(start)})];
    if let Some(f) = finish {
        out.push(json!({
            "action": "export_finished", "source": "scheduled", "tenant": tenant,
            "process_name": "nightly_export", "process_id": id, "phase": "finished",
            "status": "success", "timestamp": ts(f)}));
    }
    out
}

/// Five finished runs in each tenant: one minute each in `acme` (stuck past
/// max(3 × 1 min, 5 min), slow past 3 min), two hours each in `globex`
/// (stuck past 6 h, slow past 6 h), all finished by `now`.
fn history(now: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..5 {
        let start = now - (10 - i) * HOUR;
        out.extend(run("acme", &format!("acme-{i}"), start, Some(start + MIN)));
        let start = now - (30 - 5 * i) * HOUR;
        out.extend(run(
            "globex",
            &format!("globex-{i}"),
            start,
            Some(start + 2 * HOUR),
        ));
    }
    out
}

/// Polls `done` every 20 ms for up to a minute (a loaded machine).
fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_for(what, Duration::from_secs(60), done);
}

/// Posts `events` in one request, then waits until [`settled`].
pub(crate) fn post(d: &Server, events: Vec<Value>) {
    let (st, _, v) = d.post(&Value::Array(events));
    assert_eq!(st, 201, "{v}");
    settled(d);
}

/// Waits until the activity feed has handed the whole log to the trackers and
/// the detectors (they append what an event raises before the feed moves on)
/// and the indexes hold it all (`/v1/findings` reads them): what is listed
/// then stays so until more is posted or the clock moves.
pub(crate) fn settled(d: &Server) {
    wait_until("the feed and the indexes to reach the log's end", || {
        // The feed first: the log's end read after it covers its findings.
        let feed = metric(d, "stele_intel_feed_seq");
        let (_, _, r) = d.get("/readyz");
        let last = r["state"]["log_last_seq"].as_f64().unwrap();
        feed >= last && r["state"]["indexed_seq"].as_f64().unwrap() >= last
    });
}

/// `/v1/findings?{query}`'s findings now.
fn findings_now(d: &Server, query: &str) -> Vec<Value> {
    let (st, _, v) = d.get(&format!("/v1/findings?{query}"));
    assert_eq!(st, 200, "{v}");
    v["findings"].as_array().unwrap().clone()
}

/// Waits until `/v1/findings?{query}` lists `n` findings (never more), and
/// [`settled`].
fn findings(d: &Server, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = findings_now(d, query);
        assert!(
            got.len() <= n,
            "more than {n} findings of {query}: {got:#?}"
        );
        if got.len() == n {
            // Nothing more on its way (one append's findings may be indexed
            // in two commits).
            settled(d);
            let again = findings_now(d, query);
            assert_eq!(again.len(), n, "{query}: {again:#?}");
            return again;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} findings of {query}: {got:#?}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The runs of `/v1/processes?{query}`, as (id, status).
fn runs(d: &Server, query: &str) -> Vec<(String, String)> {
    let (st, _, v) = d.get(&format!("/v1/processes?{query}"));
    assert_eq!(st, 200, "{v}");
    let mut out: Vec<(String, String)> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    out.sort();
    out
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The levels of the findings among `found` about run `id`, sorted.
fn of_run(found: &[Value], id: &str) -> Vec<String> {
    let mut out: Vec<String> = found
        .iter()
        .filter(|f| f["metadata"]["evidence"]["run"] == id)
        .map(|f| f["metadata"]["severity"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

/// An in-process server of `data` with the defaults on `clock`.
fn serve_on(data: &Path, clock: &Arc<ManualClock>) -> Server {
    let mut cfg = Config::default();
    cfg.data_dir = data.to_path_buf();
    Server::start_on(cfg.serve_config(None), clock.clone())
}

#[test]
fn a_run_that_never_finishes_is_stuck_and_raises_stuck_run_once_per_level_across_ticks_and_a_restart(
) {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = now_secs();
    let clock = Arc::new(ManualClock::new(t0));
    let d = serve_on(tmp.path(), &clock);
    let mut events = history(t0);
    events.extend(run("acme", "acme-hung", t0, None));
    // The same process in globex, running as long: not stuck by globex's
    // own history (2-hour runs).
    events.extend(run("globex", "globex-live", t0, None));
    post(&d, events);
    assert_eq!(
        runs(&d, "status=running"),
        pairs(&[("acme-hung", "running"), ("globex-live", "running")])
    );
    assert!(findings_now(&d, "").is_empty());

    // Half an hour later, by the clock: the next tick judges acme-hung stuck
    // (30 min > max(3 × 1 min, 5 min)), globex-live not (30 min < 3 × 2 h).
    clock.advance(30 * MIN);
    let f = findings(&d, "kind=stuck_run", 1);
    let (f, m) = (&f[0], &f[0]["metadata"]);
    assert_eq!(f["category"], "stele.finding");
    assert_eq!(f["ingested_by"], "stele");
    assert_eq!(f["tenant"], "acme", "{f:#}");
    assert_eq!(m["kind"], "stuck_run");
    assert_eq!(m["severity"], "medium", "{f:#}");
    assert_eq!(
        m["subject"],
        json!({"type": "process", "id": "nightly_export"})
    );
    assert_eq!(m["evidence"]["run"], "acme-hung");
    assert_eq!(m["window"]["since"], ts(t0));
    assert_eq!(m["query"], "process_id=acme-hung&tenant=acme");
    assert_eq!(findings_now(&d, "tenant=globex").len(), 0);
    assert_eq!(findings_now(&d, "tenant=acme").len(), 1);
    assert_eq!(runs(&d, "status=stuck"), pairs(&[("acme-hung", "stuck")]));
    assert_eq!(
        runs(&d, "tenant=globex&status=running"),
        pairs(&[("globex-live", "running")])
    );
    // The finding's query lists the run's events (once the index commits).
    let behind = format!("/v1/events?{}", m["query"].as_str().unwrap());
    wait_until("the run's event in the finding's listing", || {
        let (st, _, v) = d.get(&behind);
        assert_eq!(st, 200, "{v}");
        v["events"].as_array().unwrap().len() == 1
    });

    // More ticks: each tick judges every run again. A second run, stuck at
    // the next tick, shows that tick happened; acme-hung is not raised again.
    post(&d, run("acme", "acme-tick-1", clock.now_micros(), None));
    clock.advance(10 * MIN);
    let f = findings(&d, "kind=stuck_run", 2);
    assert_eq!(of_run(&f, "acme-hung"), ["medium"]);
    assert_eq!(of_run(&f, "acme-tick-1"), ["medium"]);

    // A restart on the same data directory replays the horizon: what was
    // raised is remembered, and the next tick raises only the new stuck run.
    drop(d);
    let d = serve_on(tmp.path(), &clock);
    post(&d, run("acme", "acme-tick-2", clock.now_micros(), None));
    assert_eq!(findings_now(&d, "kind=stuck_run").len(), 2);
    clock.advance(10 * MIN);
    let f = findings(&d, "kind=stuck_run", 3);
    for id in ["acme-hung", "acme-tick-1", "acme-tick-2"] {
        assert_eq!(of_run(&f, id), ["medium"], "{id}: {f:#?}");
    }

    // A day on: every run still running is past `stuck_max_secs` (24 h) and
    // escalates to high, once; globex-live is stuck now too, in globex.
    clock.set(t0 + 25 * HOUR);
    let high = findings(&d, "kind=stuck_run&level=high", 4);
    let globex = findings_now(&d, "kind=stuck_run&tenant=globex");
    assert_eq!(globex.len(), 1, "{globex:#?}");
    assert_eq!(globex[0]["metadata"]["evidence"]["run"], "globex-live");
    assert_eq!(globex[0]["metadata"]["severity"], "high");
    assert_eq!(of_run(&high, "acme-hung"), ["high"]);
    clock.advance(10 * MIN);
    post(&d, run("acme", "acme-tick-3", clock.now_micros(), None));
    clock.advance(10 * MIN);
    let all = findings(&d, "kind=stuck_run", 8);
    assert_eq!(of_run(&all, "acme-hung"), ["high", "medium"]);
    assert_eq!(of_run(&all, "acme-tick-3"), ["medium"]);
    // Nothing but stuck runs was found in this traffic.
    assert_eq!(findings_now(&d, "").len(), 8);
}

#[test]
fn a_run_much_longer_than_its_process_history_raises_slow_run_in_its_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let now = now_secs();
    post(&d, history(now - HOUR));
    // 30 minutes against five runs of a minute: > 10 × the p95, high.
    post(
        &d,
        run("acme", "acme-slow", now - 40 * MIN, Some(now - 10 * MIN)),
    );
    let f = findings(&d, "kind=slow_run", 1);
    let (f, m) = (&f[0], &f[0]["metadata"]);
    assert_eq!(f["tenant"], "acme", "{f:#}");
    assert_eq!(m["severity"], "high", "{f:#}");
    assert_eq!(
        m["subject"],
        json!({"type": "process", "id": "nightly_export"})
    );
    assert_eq!(m["evidence"]["run"], "acme-slow");
    assert_eq!(m["evidence"]["duration_ms"], 30 * 60 * 1000);
    assert_eq!(m["evidence"]["p95_ms"], 60 * 1000);
    assert_eq!(m["evidence"]["history"], 5);
    // As long a run in globex is usual there (its runs take 2 hours), and a
    // run of 70 s in acme is within its history's spread: nothing more.
    let mut usual = run(
        "globex",
        "globex-long",
        now - 40 * MIN,
        Some(now - 10 * MIN),
    );
    usual.extend(run(
        "acme",
        "acme-usual",
        now - 5 * MIN,
        Some(now - 5 * MIN + 70 * SEC),
    ));
    post(&d, usual);
    assert_eq!(findings_now(&d, "kind=slow_run").len(), 1);
    assert_eq!(findings_now(&d, "tenant=globex").len(), 0);
    assert_eq!(findings_now(&d, "").len(), 1);
}

/// The start of the current aligned 10-minute window (the default
/// `login_burst_window`), in unix µs.
fn window_start() -> i64 {
    let now = chrono::Utc::now().timestamp();
    (now - now.rem_euclid(600)) * SEC
}

fn login(tenant: &str, user: &str, ip: &str, ok: bool, at: i64) -> Value {
    json!({"action": if ok { "login" } else { "login_failed" },
           "status": if ok { "success" } else { "failure" },
           "tenant": tenant, "user_id": user, "ip": ip, "timestamp": ts(at)})
}

/// (tenant, subject type, subject id, level) of each finding, sorted.
fn keys(found: &[Value]) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut out: Vec<_> = found
        .iter()
        .map(|f| {
            let m = &f["metadata"];
            (
                s(&f["tenant"]),
                s(&m["subject"]["type"]),
                s(&m["subject"]["id"]),
                s(&m["severity"]),
            )
        })
        .collect();
    out.sort();
    out
}

fn key(t: &str, ty: &str, id: &str, l: &str) -> (String, String, String, String) {
    (t.into(), ty.into(), id.into(), l.into())
}

/// Findings are per tenant: the same user (and address) failing five times in
/// the same window in two tenants is a burst in each, each with its tenant.
#[test]
fn the_same_user_bursting_in_two_tenants_raises_a_finding_in_each() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let w0 = window_start();
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(login("acme", "admin", "198.51.100.7", false, w0 + i * SEC));
        events.push(login(
            "globex",
            "admin",
            "198.51.100.7",
            false,
            w0 + i * SEC,
        ));
    }
    post(&d, events);
    let found = findings(&d, "kind=failed_login_burst", 4);
    assert_eq!(
        keys(&found),
        [
            key("acme", "ip", "198.51.100.7", "medium"),
            key("acme", "user", "admin", "medium"),
            key("globex", "ip", "198.51.100.7", "medium"),
            key("globex", "user", "admin", "medium"),
        ]
    );
    assert_eq!(findings_now(&d, "tenant=globex").len(), 2);
}

/// The ids `GET /v1/events?{query}` lists (all of them: one page of at most
/// `limit=1000`), sorted.
fn ids_behind(d: &Server, query: &str) -> Vec<String> {
    let (st, _, v) = d.get(&format!("/v1/events?{query}&limit=1000"));
    assert_eq!(st, 200, "{query}: {v}");
    assert!(v["next_cursor"].is_null(), "{query}: more than a page: {v}");
    let mut out: Vec<String> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

/// A finding's `metadata.query` lists exactly the events behind it, in its
/// tenant only: the same user and address bursting (and changing a role) in
/// two tenants, five and six failures, each finding's query (read with a key
/// that sees every tenant) lists its own tenant's events and never the
/// other's.
#[test]
fn the_query_of_a_tenants_finding_lists_only_that_tenants_events() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    // The previous window: every event is in the past.
    let w0 = window_start() - 10 * MIN;
    let (user, ip) = ("admin", "198.51.100.7");
    let mut events = Vec::new();
    for (tenant, failures) in [("acme", 5), ("globex", 6)] {
        for i in 0..failures {
            let mut e = login(tenant, user, ip, false, w0 + i * SEC);
            e["id"] = json!(format!("{tenant}-fail-{i}"));
            events.push(e);
        }
        // A privilege change of the same user, from no address.
        events.push(
            json!({"id": format!("{tenant}-grant"), "action": "role_granted",
                           "status": "success", "tenant": tenant, "user_id": user,
                           "timestamp": ts(w0 + 30 * SEC)}),
        );
    }
    post(&d, events);
    let found = findings(&d, "", 6);
    assert_eq!(
        keys(&found),
        [
            key("acme", "ip", ip, "medium"),
            key("acme", "user", user, "medium"),
            key("acme", "user", user, "medium"),
            key("globex", "ip", ip, "medium"),
            key("globex", "user", user, "medium"),
            key("globex", "user", user, "medium"),
        ]
    );
    for f in &found {
        let tenant = f["tenant"].as_str().unwrap();
        let m = &f["metadata"];
        let failures = if tenant == "acme" { 5 } else { 6 };
        let fails = (0..failures).map(|i| format!("{tenant}-fail-{i}"));
        let grant = format!("{tenant}-grant");
        let mut want: Vec<String> = match (
            m["kind"].as_str().unwrap(),
            m["subject"]["type"].as_str().unwrap(),
        ) {
            // Every event of the subject in the window.
            ("failed_login_burst", "user") => fails.chain([grant]).collect(),
            ("failed_login_burst", "ip") => fails.collect(),
            ("privilege_change", "user") => vec![grant],
            other => panic!("unexpected finding {other:?}: {f:#}"),
        };
        want.sort();
        let query = m["query"].as_str().unwrap();
        assert_eq!(ids_behind(&d, query), want, "{query} of {f:#}");
    }
}

/// The real detectors' findings reach a webhook through `[[alerts]]` finding
/// rules, signed: exactly the findings raised, by kind and least level, each
/// linking to itself in its tenant; the same server's quiet traffic before
/// delivers nothing.
#[test]
fn findings_of_the_detectors_reach_a_signed_webhook_and_quiet_traffic_delivers_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let rules = [
        finding_rule("bursts", Some("failed_login_burst"), Some("medium")),
        finding_rule("high-bursts", Some("failed_login_burst"), Some("high")),
        finding_rule("everything", None, Some("low")),
    ]
    .concat();
    let conf = config(tmp.path(), &rx.url(), &signed(), &rules);
    let d = Server::start_with_file(&tmp.path().join("data"), &conf);
    let w0 = window_start();
    let ip = "203.0.113.9";

    // Quiet: logins, four failures (one short of a burst), ordinary work.
    let mut quiet = Vec::new();
    for i in 0..3 {
        quiet.push(login("acme", "eve", ip, true, w0 + i * SEC));
    }
    for i in 0..4 {
        quiet.push(login("acme", "eve", ip, false, w0 + (10 + i) * SEC));
    }
    for i in 0..20 {
        quiet.push(
            json!({"action": "document_viewed", "tenant": "acme", "user_id": "bob",
                          "ip": "203.0.113.20", "entity_id": format!("doc-{i}"),
                          "timestamp": ts(w0 + (20 + i) * SEC)}),
        );
    }
    post(&d, quiet);
    caught_up(&d);
    assert!(
        findings_now(&d, "").is_empty(),
        "{:#?}",
        findings_now(&d, "")
    );
    assert!(
        rx.all().is_empty(),
        "quiet traffic delivered {:#?}",
        rx.all()
    );

    // The fifth failure in the window: a burst of the user and of the address;
    // and the same in globex (the same user id and address: findings with the
    // same ids as acme's, in another tenant).
    let mut burst = vec![login("acme", "eve", ip, false, w0 + 50 * SEC)];
    for i in 0..5 {
        burst.push(login("globex", "eve", ip, false, w0 + (60 + i) * SEC));
    }
    post(&d, burst);
    let raised = findings(&d, "", 4);
    assert_eq!(
        keys(&raised),
        [
            key("acme", "ip", ip, "medium"),
            key("acme", "user", "eve", "medium"),
            key("globex", "ip", ip, "medium"),
            key("globex", "user", "eve", "medium"),
        ]
    );
    rx.wait_accepted(8);
    caught_up(&d);
    let got = rx.all();
    assert_eq!(got.len(), 8, "{got:#?}");
    assert!(got.iter().all(|g| g.signed && g.accepted), "{got:#?}");
    // (rule, tenant, finding id)
    let mut delivered: Vec<(String, String, String)> = got
        .iter()
        .map(|g| {
            assert_eq!(g.body["kind"], "finding", "{:#}", g.body);
            let f = &g.body["finding"];
            assert_eq!(f["metadata"]["kind"], "failed_login_burst");
            // The link names the finding, in its tenant.
            let url = g.body["events_url"].as_str().unwrap();
            let (st, _, linked) = d.get(url);
            assert_eq!(st, 200, "{url}: {linked:#}");
            assert_eq!((&linked["id"], &linked["tenant"]), (&f["id"], &f["tenant"]));
            (
                g.body["rule"].as_str().unwrap().to_owned(),
                f["tenant"].as_str().unwrap().to_owned(),
                f["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    delivered.sort();
    let mut want: Vec<(String, String, String)> = ["bursts", "everything"]
        .iter()
        .flat_map(|rule| {
            raised.iter().map(move |f| {
                (
                    rule.to_string(),
                    f["tenant"].as_str().unwrap().to_owned(),
                    f["id"].as_str().unwrap().to_owned(),
                )
            })
        })
        .collect();
    want.sort();
    assert_eq!(delivered, want);
}
