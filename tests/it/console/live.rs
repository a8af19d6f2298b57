//! Live through a network drop: the stream resumes from the next seq it did
//! not see, so the events posted while the browser was cut off appear once
//! it is back, none twice.

use super::browser::Browser;
use super::events::{shown_ids, world};
use crate::support::proxy::Proxy;
use serde_json::json;
use std::time::{Duration, Instant};

fn live_state(b: &Browser) -> String {
    b.eval("const s = document.querySelector('.live-status'); return s ? (s.dataset.state || '') : '';")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn wait_state(b: &Browser, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while live_state(b) != want {
        assert!(
            Instant::now() < deadline,
            "the live status stayed {:?}, not {want:?}",
            live_state(b)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn live_resumes_after_a_network_drop_with_nothing_missing_and_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let d = world(tmp.path(), 20);
    let proxy = Proxy::start(d.addr.trim_start_matches("http://"));
    let b = Browser::start();
    b.goto(&format!("http://{}/#/events", proxy.addr));
    b.find("body[data-ready='1'] [data-test=event-row]");
    let live = b.find("[data-test=live]");
    b.with(|_| live.click()).unwrap();
    wait_state(&b, "live", Duration::from_secs(5));
    let post = |id: String| {
        let (st, _, v) = d.post(&json!({"id": id, "action": "login", "actor": "carol"}));
        assert_eq!(st, 201, "{v}");
        id
    };
    let mut want: Vec<String> = (0..3).map(|i| post(format!("before-{i}"))).collect();
    // The network drops: the page sees its stream end and reconnects with
    // backoff, refused while the relay is down. Events keep arriving.
    proxy.cut();
    wait_state(&b, "reconnecting", Duration::from_secs(5));
    want.extend((0..5).map(|i| post(format!("during-{i}"))));
    std::thread::sleep(Duration::from_millis(1500));
    proxy.up();
    wait_state(&b, "live", Duration::from_secs(20));
    want.extend((0..2).map(|i| post(format!("after-{i}"))));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = shown_ids(&b);
        if want.iter().all(|id| shown.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing after the reconnect: {:?}",
            want.iter()
                .filter(|id| !shown.contains(id))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let shown = shown_ids(&b);
    let unique: std::collections::BTreeSet<&String> = shown.iter().collect();
    assert_eq!(unique.len(), shown.len(), "a row shown twice: {shown:?}");
    // Newest first: the live rows on top in the order they were posted, newest first.
    let top: Vec<String> = shown[..want.len()].to_vec();
    let mut newest_first = want.clone();
    newest_first.reverse();
    assert_eq!(top, newest_first);
    b.screenshot("events-live-reconnected");
}
