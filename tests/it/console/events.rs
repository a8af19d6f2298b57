//! The events views in a real browser against a real server: what the page
//! lists is exactly what the API lists (filters, full text, infinite scroll
//! to the end without a duplicate), the detail panel's pivots, the live view,
//! and the key prompt with what a key may see.

use super::browser::Browser;
use crate::auth::{key_toml, token, UNLIMITED_ROLES};
use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use stele::testkit::EventGen;

/// A server holding `n` generated events plus a few known ones.
pub(super) fn world(dir: &std::path::Path, n: usize) -> Server {
    let d = Server::start_without_detectors(dir);
    let mut gen = EventGen::new(19);
    let mut evs: Vec<Value> = (0..n).map(|_| gen.json()).collect();
    evs.push(
        json!({"id": "known-1", "action": "update", "actor": "alice", "tenant": "acme",
        "user_id": "u-alice", "entity_type": "order", "entity_id": "55", "session_id": "s-1",
        "correlation_id": "c-1", "ip": "203.0.113.7", "severity": "notice",
        "description": "order total corrected after a password reset",
        "changes": [{"field": "total", "old": 10, "new": 12.5}],
        "metadata": {"reason": "refund", "nested": {"ticket": 7}}}),
    );
    for chunk in evs.chunks(500) {
        let (st, _, v) = d.post(&Value::Array(chunk.to_vec()));
        assert_eq!(st, 201, "{v}");
    }
    let want = (n + 1) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.get("/v1/count").2["count"] != want {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

pub(super) fn origin(d: &Server) -> String {
    format!("http://{}", d.addr.trim_start_matches("http://"))
}

/// Every event id of an API listing, following `next_cursor` to the end.
pub(super) fn api_ids(d: &Server, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/events?{query}&limit=100");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, _, v) = d.get(&path);
        assert_eq!(st, 200, "{path}: {v}");
        ids.extend(
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

/// The ids of the rows shown, in order.
pub(super) fn shown_ids(b: &Browser) -> Vec<String> {
    let v = b.eval(
        "return [...document.querySelectorAll('[data-test=event-row]')].map(r => r.dataset.id);",
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Opens `hash` and waits for the first page.
pub(super) fn open(b: &Browser, d: &Server, hash: &str) {
    b.goto(&format!("{}/{hash}", origin(d)));
    b.find("body[data-ready='1']");
}

/// Scrolls to the last row until no more rows come for a second.
fn scroll_to_end(b: &Browser) -> Vec<String> {
    let mut last = 0;
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        b.eval(
            "const r = document.querySelectorAll('[data-test=event-row]'); \
             if (r.length) r[r.length - 1].scrollIntoView(); return null;",
        );
        std::thread::sleep(Duration::from_millis(100));
        let n = shown_ids(b).len();
        if n != last {
            last = n;
            still_since = Instant::now();
        } else if still_since.elapsed() > Duration::from_secs(1) {
            return shown_ids(b);
        }
        assert!(Instant::now() < deadline, "infinite scroll did not settle");
    }
}

#[test]
fn the_events_view_lists_exactly_what_the_api_lists_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let d = world(tmp.path(), 260);
    let b = Browser::start();
    open(&b, &d, "#/events");
    b.screenshot("events");
    // The total, then every page by infinite scroll: the API's order, no
    // duplicate, nothing missing.
    let total = b.find("[data-test=total]");
    let total = b.with(|_| total.text()).unwrap();
    assert_eq!(total.trim().replace(',', ""), "261");
    let shown = scroll_to_end(&b);
    assert_eq!(
        shown,
        api_ids(&d, ""),
        "the scrolled list differs from the API's"
    );
    // A filter in the URL: the same rows as the API (a shared link).
    open(&b, &d, "#/events?action=update&tenant=acme");
    assert_eq!(scroll_to_end(&b), api_ids(&d, "action=update&tenant=acme"));
    // Full text: the same as the API's search.
    open(&b, &d, "#/events?q=%22password%20reset%22");
    assert_eq!(scroll_to_end(&b), api_ids(&d, "q=%22password%20reset%22"));
    // A query the API refuses: its sentence shown, not JSON.
    b.goto(&format!("{}/#/events?q=%22unclosed", origin(&d)));
    let err = b.find("[data-test=error]");
    let text = b.with(|_| err.text()).unwrap();
    assert!(!text.trim().is_empty() && !text.contains('{'), "{text:?}");
    b.screenshot("events-error");
    let errors = b.console_errors();
    assert!(
        errors.iter().all(|e| e.contains(" 400 ")),
        "console errors: {errors:#?}"
    );
}

#[test]
fn the_detail_panel_shows_an_event_and_pivots_to_its_user_and_entity() {
    let tmp = tempfile::tempdir().unwrap();
    let d = world(tmp.path(), 40);
    let b = Browser::start();
    open(&b, &d, "#/events?user_id=u-alice");
    let row = b.find("[data-test=event-row][data-id='known-1']");
    b.with(|_| row.click()).unwrap();
    let detail = b.find("[data-test=detail]");
    let text = b.with(|_| detail.text()).unwrap();
    for want in [
        "known-1",
        "update",
        "total",
        "12.5",
        "refund",
        "203.0.113.7",
    ] {
        assert!(text.contains(want), "{want} not in the detail:\n{text}");
    }
    b.screenshot("event-detail");
    // Pivot: the user's timeline lists the API's timeline.
    let pivot = b.find("[data-test=pivot-user]");
    b.with(|_| pivot.click()).unwrap();
    b.find("body[data-ready='1'] [data-test=event-row]");
    let (_, _, tl) = d.get("/v1/users/u-alice/events?limit=100");
    let want: Vec<String> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while shown_ids(&b) != want {
        assert!(Instant::now() < deadline, "{:?} != {want:?}", shown_ids(&b));
        std::thread::sleep(Duration::from_millis(100));
    }
    // The entity's history: the API's total and its events.
    open(&b, &d, "#/entity/order/55");
    let (_, _, hist) = d.get("/v1/entities/order/55/history?total=true&limit=100");
    let total = b.find("[data-test=total]");
    let deadline = Instant::now() + Duration::from_secs(10);
    let want_total = hist["total"].to_string();
    while b.with(|_| total.text()).unwrap() != want_total {
        assert!(Instant::now() < deadline, "history total != {want_total}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let want: Vec<String> = hist["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(want.contains(&"known-1".to_owned()));
    assert_eq!(shown_ids(&b), want);
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[test]
fn an_event_posted_with_curl_appears_in_the_live_view_within_two_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let d = world(tmp.path(), 20);
    let b = Browser::start();
    open(&b, &d, "#/events");
    let live = b.find("[data-test=live]");
    b.with(|_| live.click()).unwrap();
    // Give the stream a moment to connect, then post.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        let id = format!("live-{i}");
        let posted = Instant::now();
        let (st, _, v) = d.post(&json!({"id": id, "action": "login", "actor": "carol"}));
        assert_eq!(st, 201, "{v}");
        let sel = format!("[data-test=event-row][data-id='{id}']");
        while b.eval(&format!("return !!document.querySelector(\"{sel}\");")) != json!(true) {
            assert!(
                posted.elapsed() < Duration::from_secs(2),
                "{id} not shown within 2 s of its 201"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    b.screenshot("events-live");
    let shown = shown_ids(&b);
    let unique: std::collections::BTreeSet<&String> = shown.iter().collect();
    assert_eq!(unique.len(), shown.len(), "duplicate rows: {shown:?}");
}

#[test]
fn with_keys_the_console_asks_for_one_and_shows_only_what_it_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let (reader, admin) = (token("console-reader"), token("console-admin"));
    let conf = tmp.path().join("stele.toml");
    std::fs::write(
        &conf,
        format!(
            "[auth]\n{UNLIMITED_ROLES}{}{}",
            key_toml("reader", &reader, &["read"], &["acme"], ""),
            key_toml(
                "admin",
                &admin,
                &["ingest", "read", "export", "admin"],
                &["*"],
                ""
            ),
        ),
    )
    .unwrap();
    let d = Server::start_with_file(&tmp.path().join("data"), &conf);
    let evs: Vec<Value> = ["acme", "globex", "acme", "initech"]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": format!("k-{i}"), "action": "login", "actor": "a", "tenant": t}))
        .collect();
    let auth = format!("Bearer {admin}");
    let r = crate::support::http::send(
        &d.addr,
        "POST",
        "/v1/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        crate::support::http::Body::Sized(Value::Array(evs).to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.head);
    let b = Browser::start();
    b.goto(&format!("{}/#/events", origin(&d)));
    let form = b.find("[data-test=login]");
    b.screenshot("login");
    let input = b.find("[data-test=login] input[name=key]");
    let _ = form;
    // The key, then Enter (WebDriver's key code): the form submits.
    let typed = format!("{reader}\u{E007}");
    b.with(|_| input.send_keys(&typed)).unwrap();
    b.find("body[data-ready='1'] [data-test=event-row]");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = shown_ids(&b);
    while shown.len() != 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        shown = shown_ids(&b);
    }
    assert_eq!(
        shown,
        ["k-2", "k-0"],
        "a scoped key sees only its tenant's events"
    );
    // A read key has no export buttons; the key never lands in the URL.
    assert_eq!(
        b.eval("return document.querySelectorAll('[data-test^=export]').length;"),
        json!(0)
    );
    let url = b.eval("return location.href;");
    assert!(!url.as_str().unwrap().contains(&reader), "{url}");
    assert_eq!(
        b.eval("return Object.keys(localStorage).length;"),
        json!(0),
        "the key is kept in session storage only"
    );
}
