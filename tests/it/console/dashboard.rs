//! The dashboard view in a real browser against a real server: every number
//! it shows is the API's (`/v1/dashboard`'s figures, top users and risk
//! levels; `/v1/stats`' histogram, error series and breakdowns), each chart
//! has its data table, the tenant and window live in the URL, light and dark
//! screenshots, and the empty store's first-event help.

use super::browser::Browser;
use crate::support::inproc::Server;
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use stele::testkit::EventGen;

const USERS: [&str; 7] = [
    "u-ana", "u-ben", "u-chloe", "u-dev", "u-eli", "u-fay", "u-gus",
];

/// `n` generated events spread over the last 23 hours (a quarter in the last
/// hour), from seven users, with errors, critical events, failures and risk
/// scores.
fn world(dir: &std::path::Path, n: usize) -> Server {
    let d = Server::start(dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let hour = 3_600_000_000i64;
    let mut gen = EventGen::new(5);
    let evs: Vec<Value> = (0..n)
        .map(|i| {
            let mut e = gen.json();
            let quarter = n / 4;
            let ago = if i < quarter {
                // The last hour (50 minutes of it, away from the edges).
                60_000_000 + (i as i64) * (50 * 60_000_000) / quarter as i64
            } else {
                hour + 120_000_000 + ((i - quarter) as i64) * (21 * hour) / (n - quarter) as i64
            };
            e["timestamp"] = json!(stele::event::format_micros(now - ago));
            if e.get("user_id").is_some() {
                e["user_id"] = json!(USERS[(i * 7 + i / 3) % USERS.len()]);
            }
            if i % 9 == 0 {
                e["severity"] = json!("error");
            } else if i % 23 == 0 {
                e["severity"] = json!("critical");
            }
            if i % 7 == 0 {
                e["status"] = json!("failure");
            }
            if i % 5 == 0 {
                e["risk_score"] = json!((i * 37) % 101);
            }
            e
        })
        .collect();
    for chunk in evs.chunks(500) {
        let (st, _, v) = d.post(&Value::Array(chunk.to_vec()));
        assert_eq!(st, 201, "{v}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.get("/v1/count").2["count"] != n as u64 {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

fn origin(d: &Server) -> String {
    format!("http://{}", d.addr.trim_start_matches("http://"))
}

fn get(d: &Server, path: &str) -> Value {
    let (st, _, v) = d.get(path);
    assert_eq!(st, 200, "{path}: {v}");
    v
}

/// `/v1/dashboard` without its clock-dependent parts.
fn dashboard_figures(d: &Server, qs: &str) -> Value {
    let mut v = get(d, &format!("/v1/dashboard{qs}"));
    let obj = v.as_object_mut().unwrap();
    obj.remove("generated_at");
    obj.remove("latest");
    v
}

/// Waits until the detectors have settled (two answers a second apart agree).
fn settle(d: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = dashboard_figures(d, "");
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let now = dashboard_figures(d, "");
        if now == last {
            return;
        }
        assert!(Instant::now() < deadline, "the dashboard never settled");
        last = now;
    }
}

/// Loads the page afresh at `hash` (not a same-document hash change) and
/// waits for its first data.
fn open(b: &Browser, d: &Server, hash: &str) {
    b.goto("about:blank");
    b.goto(&format!("{}/{hash}", origin(d)));
    b.find("body[data-ready='1']");
}

fn int_text(s: &str) -> u64 {
    s.trim()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {s:?}"))
}

/// `[key, data-value, text]` of every figure shown.
fn figures(b: &Browser) -> Vec<(String, String, String)> {
    let v = b.eval(
        "return [...document.querySelectorAll('[data-test=figure]')]\
         .map(e => [e.dataset.key, e.dataset.value, e.textContent]);",
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
                r[2].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts that every figure shown is `/v1/dashboard`'s, and that the
/// expected ones are all there.
fn assert_figures(b: &Browser, dash: &Value) {
    let shown = figures(b);
    for (key, value, text) in &shown {
        let pointer = format!("/{}", key.replace('.', "/"));
        let want = dash
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("{key} is not in /v1/dashboard's answer"));
        let got: f64 = value.parse().unwrap();
        assert_eq!(Some(got), want.as_f64(), "{key}: shown {value}, API {want}");
        if let Some(n) = want.as_u64() {
            assert_eq!(int_text(text), n, "{key}'s text {text:?}");
        } else {
            let pct = format!("{:.1}", want.as_f64().unwrap() * 100.0);
            assert!(
                text.starts_with(&pct),
                "{key}'s text {text:?}, want {pct} %"
            );
        }
    }
    let keys: Vec<&str> = shown.iter().map(|s| s.0.as_str()).collect();
    for k in [
        "events_24h",
        "last_hour.events",
        "last_hour.failures",
        "last_hour.errors",
        "last_hour.critical",
        "last_hour.failure_rate",
        "last_hour.error_severity_rate",
        "last_hour.active_users",
        "online_users_15m",
        "anomaly_score",
        "findings.open.high",
        "findings.open.medium",
        "findings.open.low",
        "processes.running",
        "processes.stuck",
    ] {
        assert!(keys.contains(&k), "the figure {k} is not shown: {keys:?}");
    }
}

/// The histogram's table: start → (events, errors).
fn shown_buckets(b: &Browser) -> BTreeMap<String, (u64, u64)> {
    let v = b.eval(
        "return [...document.querySelectorAll('[data-test=histogram-table] [data-test=bucket]')]\
         .map(r => [r.dataset.start, r.querySelector('[data-test=count]').textContent, \
         r.querySelector('[data-test=errors]').textContent]);",
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                (
                    int_text(r[1].as_str().unwrap()),
                    int_text(r[2].as_str().unwrap()),
                ),
            )
        })
        .collect()
}

/// A breakdown table's rows: value → count, by the table's data-field.
fn shown_breakdowns(b: &Browser) -> BTreeMap<String, BTreeMap<String, u64>> {
    let v = b.eval(
        "return [...document.querySelectorAll('table[data-test=breakdown]')].map(t => [t.dataset.field, \
         [...t.querySelectorAll('[data-test=row]')].map(r => [r.dataset.value, \
         r.querySelector('[data-test=count]').textContent])]);",
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let rows = t[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r[0].as_str().unwrap().to_owned(),
                        int_text(r[1].as_str().unwrap()),
                    )
                })
                .collect();
            (t[0].as_str().unwrap().to_owned(), rows)
        })
        .collect()
}

/// Asserts the page's charts against the API for `tenant` (may be empty).
fn assert_charts(b: &Browser, d: &Server, tenant: &str) {
    let t = if tenant.is_empty() {
        String::new()
    } else {
        format!("&tenant={tenant}")
    };
    let dash = get(
        d,
        &format!("/v1/dashboard{}", t.replacen('&', "?", 1).as_str()),
    );
    assert_figures(b, &dash);

    // The histogram: every bucket of /v1/stats (errors: min_severity=error),
    // the empty ones at 0.
    let range = format!("hours=24&interval=hour&include=histogram{t}");
    let all = get(
        d,
        &format!("/v1/stats?{range}&group_by=action,category,severity,source&top=8"),
    );
    let errs = get(d, &format!("/v1/stats?{range}&min_severity=error"));
    let shown = shown_buckets(b);
    assert!(
        (24..=25).contains(&shown.len()),
        "{} hourly buckets",
        shown.len()
    );
    let mut sum = (0, 0);
    for (list, errors) in [(&all, false), (&errs, true)] {
        for bucket in list["histogram"].as_array().unwrap() {
            let start = bucket["start"].as_str().unwrap();
            let row = shown
                .get(start)
                .unwrap_or_else(|| panic!("no row for the bucket {start}: {shown:?}"));
            let n = bucket["count"].as_u64().unwrap();
            if errors {
                assert_eq!(row.1, n, "errors of {start}");
                sum.1 += n;
            } else {
                assert_eq!(row.0, n, "events of {start}");
                sum.0 += n;
            }
        }
    }
    let shown_sum = shown.values().fold((0, 0), |a, (e, r)| (a.0 + e, a.1 + r));
    assert_eq!(shown_sum, sum, "buckets the API does not have are not 0");
    assert_eq!(
        sum.0,
        dash["events_24h"].as_u64().unwrap(),
        "the histogram is the 24 hours"
    );
    assert!(sum.1 > 0, "the test data has errors in the window");

    // The breakdowns (/v1/stats' groups), the top users and the risk levels
    // (/v1/dashboard's last hour).
    let shown = shown_breakdowns(b);
    for g in all["groups"].as_array().unwrap() {
        let field = g["field"].as_str().unwrap();
        let want: BTreeMap<String, u64> = g["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["value"].as_str().unwrap().to_owned(),
                    v["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert!(!want.is_empty(), "{field}");
        assert_eq!(shown.get(field), Some(&want), "by {field}");
    }
    let users: BTreeMap<String, u64> = dash["last_hour"]["top_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_u64().unwrap()))
        .collect();
    assert!(!users.is_empty());
    assert_eq!(shown.get("top_users"), Some(&users), "top users");
    let risk: BTreeMap<String, u64> = dash["last_hour"]["risk"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(shown.get("risk"), Some(&risk), "risk levels");
    assert_eq!(shown.len(), 6, "{:?}", shown.keys());
}

/// `POST /session/{id}/goog/cdp/execute`: a Chrome DevTools command through
/// chromedriver (here: emulating `prefers-color-scheme: dark`).
#[derive(Debug)]
struct Cdp(Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

fn color_scheme(b: &Browser, scheme: &str) {
    b.with(|c| {
        c.issue_cmd(Cdp(json!({
            "cmd": "Emulation.setEmulatedMedia",
            "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        })))
    })
    .expect("CDP Emulation.setEmulatedMedia");
    let dark = b.eval("return matchMedia('(prefers-color-scheme: dark)').matches;");
    assert_eq!(dark, json!(scheme == "dark"));
}

#[test]
fn the_dashboard_shows_exactly_the_apis_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let d = world(tmp.path(), 420);
    settle(&d);
    let b = Browser::start();
    open(&b, &d, "#/dashboard");
    b.find("[data-test=histogram-table]");
    assert_charts(&b, &d, "");
    assert_eq!(b.eval("return document.title;"), json!("Dashboard · Stele"));
    assert_eq!(
        b.eval("return document.querySelector('nav a[aria-current=page]').textContent;"),
        json!("Dashboard")
    );

    // Every chart is an image with a name and a <title>, with a table of its
    // numbers (a caption, header cells) beside it; every control has a label.
    let a11y = b.eval(
        "const svgs = [...document.querySelectorAll('svg.chart')];\
         const tables = [...document.querySelectorAll('details.chart-table table')];\
         return {\
           charts: svgs.length,\
           named: svgs.filter(s => s.getAttribute('role') === 'img' && s.getAttribute('aria-label') && s.querySelector('title')).length,\
           bars: [...document.querySelectorAll('svg.chart-bars, svg.chart-hist')].length,\
           tables: tables.length,\
           captioned: tables.filter(t => t.caption && t.caption.textContent && t.querySelector('th[scope=col]')).length,\
           unlabelled: [...document.querySelectorAll('select, input, button')].filter(c => (c.tagName === 'BUTTON' ? !c.textContent.trim() : !(c.labels && c.labels.length)) && !c.getAttribute('aria-label')).length,\
           inlineStyles: document.querySelectorAll('[style]').length,\
         };",
    );
    assert_eq!(a11y["charts"], a11y["named"], "{a11y}");
    assert_eq!(a11y["bars"], json!(7), "{a11y}");
    assert_eq!(a11y["tables"], json!(7), "{a11y}");
    assert_eq!(a11y["captioned"], json!(7), "{a11y}");
    assert_eq!(a11y["unlabelled"], json!(0), "{a11y}");
    assert_eq!(a11y["inlineStyles"], json!(0), "{a11y}");
    // Each bar tells its number on hover (an SVG <title>).
    let tips = b.eval(
        "return [...document.querySelectorAll('svg.chart g.bucket, svg.chart g.brow')]\
         .every(g => /\\d/.test(g.querySelector('title').textContent));",
    );
    assert_eq!(tips, json!(true));
    b.screenshot("dashboard");
    // The whole page at once (a tall window), for review.
    b.with(|c| c.set_window_size(super::browser::WINDOW.0, 2400))
        .unwrap();
    b.screenshot("dashboard-full");
    b.with(|c| c.set_window_size(super::browser::WINDOW.0, super::browser::WINDOW.1))
        .unwrap();

    // Dark theme.
    color_scheme(&b, "dark");
    open(&b, &d, "#/dashboard");
    b.find("[data-test=histogram-table]");
    let bg = b.eval("return getComputedStyle(document.body).backgroundColor;");
    assert_eq!(bg, json!("rgb(20, 23, 27)"), "the dark theme's --bg");
    b.screenshot("dashboard-dark");
    b.with(|c| c.set_window_size(super::browser::WINDOW.0, 2400))
        .unwrap();
    b.screenshot("dashboard-dark-full");
    b.with(|c| c.set_window_size(super::browser::WINDOW.0, super::browser::WINDOW.1))
        .unwrap();
    color_scheme(&b, "light");

    // 1024 px wide: nothing wider than the window.
    b.with(|c| c.set_window_size(1024, 800)).unwrap();
    open(&b, &d, "#/dashboard");
    b.find("[data-test=histogram-table]");
    let overflow = b.eval("return document.documentElement.scrollWidth - window.innerWidth;");
    assert!(overflow.as_i64().unwrap() <= 0, "{overflow} px too wide");
    b.screenshot("dashboard-1024");
    b.with(|c| c.set_window_size(super::browser::WINDOW.0, super::browser::WINDOW.1))
        .unwrap();

    // A tenant: in the URL, in the control, and in every figure.
    open(&b, &d, "#/dashboard?tenant=acme");
    b.find("[data-test=histogram-table]");
    assert_eq!(
        b.eval("return document.getElementById('dash-tenant').value;"),
        json!("acme")
    );
    assert_charts(&b, &d, "acme");
    // Choosing a window puts it in the URL and redraws per day.
    b.eval(
        "const s = document.getElementById('dash-window'); s.value = '7d'; \
         s.dispatchEvent(new Event('change')); return null;",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = b.eval(
            "return document.querySelectorAll('[data-test=histogram-table] [data-test=bucket]').length;",
        );
        if (7..=8).contains(&n.as_u64().unwrap()) {
            break;
        }
        assert!(Instant::now() < deadline, "no daily histogram: {n}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        b.eval("return location.hash;"),
        json!("#/dashboard?tenant=acme&window=7d")
    );
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[test]
fn an_empty_store_says_how_to_post_the_first_event() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_without_detectors(tmp.path());
    let b = Browser::start();
    open(&b, &d, "#/dashboard");
    let empty = b.find("[data-test=empty]");
    let text = b.with(|_| empty.text()).unwrap();
    assert!(text.contains("No events yet"), "{text}");
    assert!(
        text.contains("curl") && text.contains("/v1/events"),
        "{text}"
    );
    assert_eq!(
        b.eval("return document.querySelectorAll('svg.chart').length;"),
        json!(0)
    );
    b.screenshot("dashboard-empty");
    // A window the view does not know: a sentence, and the default drawn.
    open(&b, &d, "#/dashboard?window=2y");
    let err = b.find("[data-test=error]");
    let text = b.with(|_| err.text()).unwrap();
    assert!(text.contains("2y") && text.ends_with('.'), "{text}");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    // The server gone: Refresh says so in a sentence (no JSON, no stack).
    drop(d);
    let refresh = b.find("[data-test=refresh]");
    b.with(|_| refresh.click()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = b.eval(
            "return [...document.querySelectorAll('[data-test=error]')].map(e => e.textContent).join('|');",
        );
        let text = text.as_str().unwrap();
        if text.contains("could not be reached") {
            assert!(!text.contains('{'), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no error shown: {text:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    b.screenshot("dashboard-error");
}
