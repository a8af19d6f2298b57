//! The findings and processes views in a real browser against a real server
//! whose detectors found real things (a failed-login burst, a privilege
//! change, a slow run, a stuck run) in real process runs (finished, failed,
//! stuck) on a manual clock: the page lists exactly the API's findings and
//! runs, with their evidence, durations and success rates; a finding's link
//! lists exactly the events behind it and a run's page exactly its events.

use super::browser::Browser;
use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stele::clock::ManualClock;
use stele::config::Config;

use crate::support::time::{ts, wait_for, HOUR, MIN, SEC};

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_for(what, Duration::from_secs(60), done);
}

use crate::detect_e2e::{post, settled};

/// Run `id` of `name` in acme: `started` at `start`, then `finished` with
/// `status` at `finish` when given (a failed run reports an error first).
fn run(name: &str, id: &str, start: i64, finish: Option<(i64, &str)>) -> Vec<Value> {
    let mut out = vec![json!({
        "action": format!("{name}_started"), "source": "scheduled", "tenant": "acme",
        "process_name": name, "process_id": id, "phase": "started", "items_total": 100,
        "timestamp": ts(start)})];
    if let Some((f, status)) = finish {
        if status == "failure" {
            out.push(json!({
                "action": "row_rejected", "source": "scheduled", "tenant": "acme",
                "process_id": id, "severity": "error", "description": "row 17: invalid VAT number",
                "timestamp": ts(f - SEC)}));
        }
        out.push(json!({
            "action": format!("{name}_finished"), "source": "scheduled", "tenant": "acme",
            "process_name": name, "process_id": id, "phase": "finished", "status": status,
            "items_processed": 100, "items_failed": if status == "failure" { 1 } else { 0 },
            "timestamp": ts(f)}));
    }
    out
}

/// A server on a manual clock holding findings of four kinds and runs of
/// every outcome (and a batch operation).
pub(super) fn world(dir: &Path) -> (Server, Arc<ManualClock>) {
    let t0 = chrono::Utc::now().timestamp() * SEC;
    let clock = Arc::new(ManualClock::new(t0));
    let mut cfg = Config::default();
    cfg.data_dir = dir.to_path_buf();
    let d = Server::start_on(cfg.serve_config(None), clock.clone());
    let mut evs = Vec::new();
    // nightly_export: five runs of a minute, one failed, one never finished
    // (stuck: 30 min > max(3 × p95, 5 min)).
    for i in 0..5 {
        let start = t0 - (10 - i) * HOUR;
        evs.extend(run(
            "nightly_export",
            &format!("export-{i}"),
            start,
            Some((start + MIN + i * SEC, "success")),
        ));
    }
    evs.extend(run(
        "nightly_export",
        "export-failed",
        t0 - 3 * HOUR,
        Some((t0 - 3 * HOUR + 50 * SEC, "failure")),
    ));
    evs.extend(run("nightly_export", "export-hung", t0 - 30 * MIN, None));
    // report_build: five runs of a minute (its slow run comes later).
    for i in 0..5 {
        let start = t0 - (20 - i) * HOUR;
        evs.extend(run(
            "report_build",
            &format!("report-{i}"),
            start,
            Some((start + MIN, "success")),
        ));
    }
    // A batch operation of the failed run.
    evs.push(
        json!({"action": "bulk_update", "source": "scheduled", "tenant": "acme",
        "process_id": "export-failed", "batch_id": "b-7", "phase": "started", "items_total": 50,
        "timestamp": ts(t0 - 3 * HOUR + 5 * SEC)}),
    );
    evs.push(
        json!({"action": "bulk_update", "source": "scheduled", "tenant": "acme",
        "process_id": "export-failed", "batch_id": "b-7", "phase": "finished", "status": "partial",
        "items_processed": 50, "items_failed": 3, "timestamp": ts(t0 - 3 * HOUR + 20 * SEC)}),
    );
    // Six failed logins of eve from one IP in one 10-minute window, and a
    // role granted: a burst (user and IP) and a privilege change.
    let w = t0 - t0.rem_euclid(10 * MIN);
    for i in 0..6 {
        evs.push(
            json!({"action": "login_failed", "status": "failure", "tenant": "acme",
            "user_id": "eve", "ip": "203.0.113.9", "timestamp": ts(w + i * SEC)}),
        );
    }
    evs.push(json!({"action": "role_granted", "status": "success", "tenant": "acme",
        "user_id": "root", "entity_type": "user", "entity_id": "eve", "timestamp": ts(w + 10 * SEC)}));
    post(&d, evs);
    // A run of report_build thirty times as long as its others: slow_run.
    post(
        &d,
        run(
            "report_build",
            "report-slow",
            t0 - 40 * MIN,
            Some((t0 - 10 * MIN, "success")),
        ),
    );
    // A tick of the feed judges export-hung stuck: stuck_run.
    clock.advance(2 * MIN);
    wait_until("five findings", || {
        let (_, _, v) = d.get("/v1/findings?limit=100");
        v["findings"].as_array().unwrap().len() >= 5
    });
    settled(&d);
    (d, clock)
}

fn origin(d: &Server) -> String {
    format!("http://{}", d.addr.trim_start_matches("http://"))
}

/// Opens `hash` in a fresh page and waits for its first data.
fn open(b: &Browser, d: &Server, hash: &str) {
    b.goto("about:blank");
    b.goto(&format!("{}/{hash}", origin(d)));
    b.find("body[data-ready='1']");
}

/// `attr` of every element matching `css`, in order.
fn attrs(b: &Browser, css: &str, attr: &str) -> Vec<String> {
    let v = b.eval(&format!(
        "return [...document.querySelectorAll({css:?})].map(e => e.getAttribute({attr:?}) ?? '');"
    ));
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the event rows shown are `want`.
fn rows_become(b: &Browser, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = attrs(b, "[data-test=event-row]", "data-id");
        if shown == want {
            return;
        }
        assert!(Instant::now() < deadline, "rows {shown:?} != {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every event id of `/v1/events?{query}`, to the end.
fn api_events(d: &Server, query: &str) -> Vec<String> {
    let (st, _, v) = d.get(&format!("/v1/events?{query}&limit=1000"));
    assert_eq!(st, 200, "{v}");
    assert!(v["next_cursor"].is_null());
    ids(&v["events"])
}

fn text(b: &Browser, css: &str) -> String {
    let el = b.find(css);
    b.with(|_| el.text()).unwrap()
}

#[test]
fn findings_show_the_apis_findings_their_evidence_and_the_events_behind_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, _clock) = world(tmp.path());
    let (st, _, api) = d.get("/v1/findings?limit=100");
    assert_eq!(st, 200, "{api}");
    let findings = api["findings"].as_array().unwrap().clone();
    let kinds: Vec<&str> = findings
        .iter()
        .map(|f| f["action"].as_str().unwrap())
        .collect();
    for k in [
        "failed_login_burst",
        "privilege_change",
        "slow_run",
        "stuck_run",
    ] {
        assert!(kinds.contains(&k), "no {k} among {kinds:?}");
    }
    let b = Browser::start();
    open(&b, &d, "#/findings");
    // Exactly the API's findings, newest first, and its summary.
    assert_eq!(
        attrs(&b, "[data-test=finding]", "data-id"),
        ids(&api["findings"])
    );
    assert_eq!(
        text(&b, "[data-test=anomaly-score]"),
        api["summary"]["anomaly_score"].to_string()
    );
    for l in ["high", "medium", "low"] {
        let shown = text(&b, &format!("[data-test=open-{l}]"));
        assert!(
            shown.ends_with(&api["summary"]["open"][l].to_string()),
            "{l}: {shown}"
        );
    }
    // Keyboard: the arrows move between findings, Enter opens one.
    let burst = findings
        .iter()
        .find(|f| f["action"] == "failed_login_burst" && f["metadata"]["subject"]["type"] == "user")
        .expect("eve's burst");
    let id = burst["id"].as_str().unwrap();
    b.eval("document.querySelector('[data-test=finding-toggle]').focus(); return null;");
    let first = b.find("[data-test=finding-toggle]");
    b.with(|_| first.send_keys("\u{E015}")).unwrap(); // ArrowDown
    assert_eq!(
        b.eval("return document.activeElement.closest('[data-test=finding]').dataset.id;"),
        json!(findings[1]["id"])
    );
    let toggle = b.find(&format!(
        "[data-test=finding][data-id={id:?}] [data-test=finding-toggle]"
    ));
    b.with(|_| toggle.send_keys("\u{E007}")).unwrap(); // Enter
    let panel = format!("[data-test=finding][data-id={id:?}] [data-test=finding-detail]");
    b.find(&panel);
    assert_eq!(
        b.eval(&format!("return document.querySelector('[data-test=finding][data-id={id:?}] [data-test=finding-toggle]').getAttribute('aria-expanded');")),
        json!("true")
    );
    // The evidence as a table of the API's values; the URL remembers it open.
    let ev = &burst["metadata"]["evidence"];
    for key in ["count", "threshold"] {
        let cell = text(&b, &format!("{panel} tr[data-key={key}] td"));
        assert_eq!(cell, ev[key].to_string(), "{key}");
    }
    assert!(b
        .eval("return location.hash;")
        .as_str()
        .unwrap()
        .contains("open="));
    b.eval("window.scrollTo(0, 0); return null;");
    b.screenshot("findings");
    b.eval(&format!(
        "document.querySelector({panel:?}).scrollIntoView({{block: 'center'}}); return null;"
    ));
    b.screenshot("findings-evidence");
    // Its link: the Events view listing exactly the events behind it.
    let query = burst["metadata"]["query"].as_str().unwrap();
    let want = api_events(&d, query);
    assert_eq!(want.len(), 6, "{want:?}");
    let link = b.find(&format!("{panel} [data-test=finding-events]"));
    b.with(|_| link.click()).unwrap();
    rows_become(&b, &want);
    // The finding's own event opens as an event.
    open(&b, &d, &format!("#/event/{id}?tenant=acme"));
    let own = text(&b, "[data-test=detail]");
    assert!(
        own.contains("failed_login_burst") && own.contains("stele.finding"),
        "{own}"
    );
    // The stuck run's finding: the run's events (its query names the run).
    let stuck = findings
        .iter()
        .find(|f| f["action"] == "stuck_run")
        .unwrap();
    assert_eq!(stuck["metadata"]["evidence"]["run"], "export-hung");
    let sid = stuck["id"].as_str().unwrap();
    open(&b, &d, &format!("#/findings?kind=stuck_run&open={sid}"));
    assert_eq!(attrs(&b, "[data-test=finding]", "data-id"), [sid]);
    let link = b.find(&format!(
        "[data-test=finding][data-id={sid:?}] [data-test=finding-events]"
    ));
    let want = api_events(&d, stuck["metadata"]["query"].as_str().unwrap());
    assert_eq!(want.len(), 1);
    b.with(|_| link.click()).unwrap();
    rows_become(&b, &want);
    // A filter the API refuses: its sentence, next to the control.
    open(&b, &d, "#/findings?since=yesterday-ish");
    let err = text(&b, "[data-test=error]");
    assert!(!err.is_empty() && !err.contains('{'), "{err:?}");
    // At 1024 px: nothing wider than the window.
    b.with(|c| c.set_window_size(1024, 800)).unwrap();
    open(&b, &d, &format!("#/findings?open={id}"));
    assert_eq!(
        b.eval("return document.documentElement.scrollWidth <= window.innerWidth;"),
        json!(true)
    );
    b.screenshot("findings-1024");
    let errors = b.console_errors();
    assert!(
        errors.iter().all(|e| e.contains(" 400 ")),
        "console errors: {errors:#?}"
    );
}

#[test]
fn processes_show_the_stuck_run_first_the_apis_figures_and_each_runs_events() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, _clock) = world(tmp.path());
    let (_, _, api) = d.get("/v1/processes");
    let b = Browser::start();
    open(&b, &d, "#/processes");
    // The stuck run first, marked, and said in words.
    let runs = attrs(&b, "[data-test=run]", "data-id");
    assert_eq!(runs[0], "export-hung", "{runs:?}");
    assert_eq!(
        attrs(&b, "[data-test=stuck] [data-test=run]", "data-id"),
        ["export-hung"]
    );
    assert_eq!(attrs(&b, "[data-test=run]", "data-status")[0], "stuck");
    let said = text(&b, "[data-test=stuck]");
    assert!(said.contains("1 process run is stuck"), "{said}");
    // Then the API's runs in its order, each with the API's duration.
    let listed: Vec<&Value> = api["runs"].as_array().unwrap().iter().collect();
    let others: Vec<String> = listed
        .iter()
        .filter(|r| r["status"] != "stuck")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(runs[1..], others[..]);
    assert_eq!(runs.len(), listed.len());
    let durations = attrs(
        &b,
        "[data-test=run] [data-test=run-duration] [data-ms]",
        "data-ms",
    );
    for (id, ms) in runs.iter().zip(&durations) {
        let r = listed.iter().find(|r| r["id"] == id.as_str()).unwrap();
        assert_eq!(ms, &r["duration_ms"].to_string(), "{id}");
    }
    let statuses: Vec<(String, String)> = runs
        .iter()
        .cloned()
        .zip(attrs(&b, "[data-test=run]", "data-status"))
        .collect();
    for want in [("export-failed", "failed"), ("export-0", "succeeded")] {
        assert!(
            statuses.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{statuses:?}"
        );
    }
    // The figures per process: success rates and p50/p95 as the API's.
    let figures = api["processes"].as_array().unwrap();
    assert_eq!(
        attrs(&b, "[data-test=figure]", "data-name"),
        figures
            .iter()
            .map(|f| f["process_name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    );
    let rates = attrs(
        &b,
        "[data-test=figure] [data-test=success-rate]",
        "data-rate",
    );
    let p50 = attrs(
        &b,
        "[data-test=figure] [data-test=p50] [data-ms]",
        "data-ms",
    );
    let p95 = attrs(
        &b,
        "[data-test=figure] [data-test=p95] [data-ms]",
        "data-ms",
    );
    for (i, f) in figures.iter().enumerate() {
        assert_eq!(
            rates[i].parse::<f64>().unwrap(),
            f["success_rate"].as_f64().unwrap()
        );
        assert_eq!(p50[i], f["duration_p50_ms"].to_string());
        assert_eq!(p95[i], f["duration_p95_ms"].to_string());
    }
    let export = figures
        .iter()
        .position(|f| f["process_name"] == "nightly_export")
        .unwrap();
    // 5 succeeded of 6 finished.
    assert_eq!(
        text(
            &b,
            &format!(
                "[data-test=figure]:nth-child({}) [data-test=success-rate]",
                export + 1
            )
        ),
        "83.3 %"
    );
    b.screenshot("processes");
    // A run's page: exactly its events, oldest first.
    let link = b.find("[data-test=runs] [data-test=run][data-id=export-failed] a");
    b.with(|_| link.click()).unwrap();
    let (_, _, one) = d.get("/v1/processes/export-failed?tenant=acme&order=asc&limit=1000");
    let want = ids(&one["events"]);
    assert_eq!(want.len(), 5, "{one:#}");
    rows_become(&b, &want);
    let facts = text(&b, "[data-test=run-facts]");
    assert!(
        facts.contains("failed") && facts.contains("nightly_export"),
        "{facts}"
    );
    b.screenshot("process-run");
    // The stuck run's page says so; the batches tab lists the batch.
    open(&b, &d, "#/process/export-hung?tenant=acme");
    assert!(text(&b, "[data-test=stuck-banner]").contains("stuck"));
    open(&b, &d, "#/processes?kind=batches");
    assert_eq!(attrs(&b, "[data-test=run]", "data-id"), ["b-7"]);
    let link = b.find("[data-test=run][data-id=b-7] th a");
    b.with(|_| link.click()).unwrap();
    let (_, _, batch) = d.get("/v1/batches/b-7?tenant=acme&order=asc");
    rows_become(&b, &ids(&batch["events"]));
    // At 1024 px: nothing wider than the window.
    b.with(|c| c.set_window_size(1024, 800)).unwrap();
    open(&b, &d, "#/processes");
    assert_eq!(
        b.eval("return document.documentElement.scrollWidth <= window.innerWidth;"),
        json!(true)
    );
    b.screenshot("processes-1024");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[test]
fn empty_findings_and_processes_say_what_would_fill_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let b = Browser::start();
    open(&b, &d, "#/findings");
    let empty = text(&b, "[data-test=empty]");
    for want in [
        "No findings yet",
        "failed_login_burst",
        "stuck_run",
        "[detect]",
    ] {
        assert!(empty.contains(want), "{want} not in {empty}");
    }
    open(&b, &d, "#/processes");
    let empty = text(&b, "[data-test=empty]");
    for want in ["No process runs yet", "process_id", "phase=finished"] {
        assert!(empty.contains(want), "{want} not in {empty}");
    }
    b.screenshot("processes-empty");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
