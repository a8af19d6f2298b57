//! Accessibility: axe-core (vendored under `tests/vendor/axe-core/`, never
//! served by Stele) finds no serious or critical violation in any view, and
//! the keyboard reaches the controls with a visible focus ring.

use super::browser::Browser;
use super::events::{open, origin, world};
use crate::support::inproc::Server;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};

/// The serious and critical violations axe-core finds in the page now.
fn violations(b: &Browser) -> Vec<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vendor/axe-core/axe.min.js");
    let axe = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if b.eval("return typeof window.axe;") != "object" {
        // WebDriver runs the script as a function body: hand axe the window.
        b.eval(&format!(
            "(function () {{ {axe} \n}}).call(window); return null;"
        ));
    }
    let result = b.eval(
        "return axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
           .filter(v => v.impact === 'serious' || v.impact === 'critical')
           .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' — ' +
                v.nodes.slice(0, 5).map(n => n.target.join(' ')).join(', ')));",
    );
    result
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn check(b: &Browser, name: &str, found: &mut Vec<String>) {
    for v in violations(b) {
        found.push(format!("{name}: {v}"));
    }
}

#[test]
fn every_view_is_free_of_serious_and_critical_axe_violations() {
    let tmp = tempfile::tempdir().unwrap();
    let d = world(tmp.path(), 60);
    let b = Browser::start();
    let mut found = Vec::new();
    let views = [
        ("events", "#/events"),
        ("events-filtered", "#/events?action=update&q=password"),
        ("event", "#/event/known-1?tenant=acme"),
        ("entity", "#/entity/order/55"),
        ("user", "#/user/u-alice"),
        ("not-found", "#/nowhere"),
    ];
    for (name, hash) in views {
        open(&b, &d, hash);
        check(&b, name, &mut found);
    }
    // The detail drawer open over the list.
    open(&b, &d, "#/events?user_id=u-alice");
    let row = b.find("[data-test=event-row][data-id='known-1']");
    b.with(|_| row.click()).unwrap();
    b.find("[data-test=detail]");
    check(&b, "events-drawer", &mut found);
    // The sign-in form and the empty store.
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = Server::start_without_detectors(empty_dir.path());
    open(&b, &empty, "#/events");
    b.find("[data-test=empty]");
    check(&b, "empty", &mut found);
    assert!(found.is_empty(), "axe-core:\n{}", found.join("\n"));
}

#[test]
fn the_keyboard_reaches_the_filters_and_rows_with_a_visible_focus() {
    let tmp = tempfile::tempdir().unwrap();
    let d = world(tmp.path(), 30);
    let b = Browser::start();
    b.goto(&format!("{}/#/events", origin(&d)));
    b.find("body[data-ready='1'] [data-test=event-row]");
    // From the skip link (the page's first stop) onwards, Tab by Tab, to
    // the list's row (one tab stop: the arrows move within the list).
    b.eval("document.querySelector('a.skip').focus(); return null;");
    let press = |key: char| {
        let k = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        b.with(|c| c.perform_actions(k)).unwrap();
    };
    let focused = || {
        b.eval(
            "const e = document.activeElement; const s = getComputedStyle(e);
             const ring = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
             return {tag: e.tagName, test: e.dataset.test || '', id: e.dataset.id || '',
                     name: e.getAttribute('name') || e.id || '', ring};",
        )
    };
    let mut reached = Vec::new();
    let first_row = loop {
        press('\u{E004}'); // Tab
        let v = focused();
        assert_eq!(v["ring"], true, "no visible focus on {v} after {reached:?}");
        if v["test"] == "event-row" {
            break v["id"].as_str().unwrap().to_owned();
        }
        reached.push(format!(
            "{}:{}",
            v["tag"].as_str().unwrap(),
            v["name"].as_str().unwrap()
        ));
        assert!(
            reached.len() < 80,
            "Tab never reached the list: {reached:?}"
        );
    };
    for want in ["INPUT:q", "INPUT:since", "SELECT:severity", "INPUT:live"] {
        assert!(
            reached.iter().any(|r| r.starts_with(want) || r == want),
            "{want} not reached by Tab: {reached:?}"
        );
    }
    // Down moves to the next row, with a ring; Enter opens it.
    press('\u{E015}'); // ArrowDown
    let v = focused();
    assert_eq!(
        (v["test"].as_str(), v["ring"].as_bool()),
        (Some("event-row"), Some(true)),
        "{v}"
    );
    let second = v["id"].as_str().unwrap().to_owned();
    assert_ne!(second, first_row);
    press('\u{E007}'); // Enter
    let detail = b.find("[data-test=detail]");
    let text = b.with(|_| detail.text()).unwrap();
    assert!(text.contains(&second), "Enter opened another event: {text}");
}

#[test]
fn the_dashboard_detections_and_admin_views_are_free_of_serious_and_critical_axe_violations() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, _clock) = super::detect::world(tmp.path());
    let (_, _, findings) = d.get("/v1/findings?limit=1");
    let first = findings["findings"][0]["id"].as_str().unwrap().to_owned();
    // A hold to list (no keys: loopback has every role, admin included).
    let (st, _, v) = d.call(
        "POST",
        "/v1/holds",
        "application/json",
        br#"{"name": "inquiry-7", "tenant": "acme", "reason": "a regulator's inquiry"}"#,
    );
    assert!(st == 200 || st == 201, "{st} {v}");
    let b = Browser::start();
    let mut found = Vec::new();
    let views = [
        ("dashboard", "#/dashboard".to_owned()),
        (
            "dashboard-7d",
            "#/dashboard?window=7d&tenant=acme".to_owned(),
        ),
        ("findings", "#/findings".to_owned()),
        ("findings-open", format!("#/findings?open={first}")),
        ("processes", "#/processes".to_owned()),
        ("batches", "#/processes?kind=batches".to_owned()),
        (
            "process-run",
            "#/process/export-hung?tenant=acme".to_owned(),
        ),
        ("batch-run", "#/batch/b-7?tenant=acme".to_owned()),
        ("admin", "#/admin".to_owned()),
    ];
    for (name, hash) in &views {
        b.goto("about:blank"); // a fresh page for each view
        b.goto(&format!("{}/{hash}", origin(&d)));
        b.find("body[data-ready='1']");
        std::thread::sleep(std::time::Duration::from_millis(300)); // late parts of the view
        check(&b, name, &mut found);
    }
    // The admin view's lift confirmation, open.
    let lift = b.find("[data-test=lift]");
    b.with(|_| lift.click()).unwrap();
    b.find("dialog[open]");
    check(&b, "admin-lift-dialog", &mut found);
    assert!(found.is_empty(), "axe-core:\n{}", found.join("\n"));
}
