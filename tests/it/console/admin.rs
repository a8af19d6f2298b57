//! The Admin view (`#/admin`) in a real browser against a real server with
//! keys, retention, a configured hold, small segments and a signing key:
//! every figure equals the API's (segments with sizes and SHA-256, the
//! retention plan, index lag and the seal's status from `/readyz`), holds
//! are added and lifted through the page, a refusal shows the API's
//! sentence, and a key without the admin role neither sees the view nor
//! makes a request to an admin route. Without a signing key the view says
//! checkpoints are off and asks for none (no 404 in the console).

use super::browser::Browser;
use crate::auth::{key_toml, token, UNLIMITED_ROLES};
use crate::support::http::{send, Body};
use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn origin(d: &Server) -> String {
    format!("http://{}", d.addr.trim_start_matches("http://"))
}

/// One request with `key`; (status, JSON body or Null).
fn call(d: &Server, key: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let text = body.map(Value::to_string).unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = send(
        &d.addr,
        method,
        path,
        &headers,
        Body::Sized(text.as_bytes()),
    );
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// What the console makes of a problem's detail (api.js `sentence`).
fn sentence(s: &str) -> String {
    let s = s.trim();
    let mut c = s.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    };
    if !out.ends_with(['.', '!', '?', '…']) {
        out.push('.');
    }
    out
}

fn num(n: &Value) -> String {
    // en-US grouping, as the page shows counts.
    let s = n.as_u64().unwrap().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

struct World {
    _tmp: tempfile::TempDir,
    d: Server,
    admin: String,
    reader: String,
}

/// Keys (admin, read-only), a 30-day TTL with a tenant's own, a configured
/// hold, 8 KiB segments (so several are sealed) and a signing key.
fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let (reader, admin) = (token("admin-view-reader"), token("admin-view-admin"));
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(data.join("signing.key"))
            .unwrap();
        writeln!(f, "{}", "3c".repeat(32)).unwrap();
    }
    let conf = tmp.path().join("stele.toml");
    std::fs::write(
        &conf,
        format!(
            "[auth]\n{UNLIMITED_ROLES}{}{}\
             [log]\nsegment_bytes_max = 8192\n\
             [detect]\nenabled = false\n\
             [retention]\ndays = 30\ntenants = {{ acme = 365 }}\n\
             [[retention.holds]]\nname = \"cfg-litigation\"\ntenant = \"globex\"\n\
             from = \"2026-01-01\"\nreason = \"set in the file\"\n",
            key_toml("reader", &reader, &["read"], &["*"], ""),
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
    let d = Server::start_with_file(&data, &conf);
    let tenants = ["acme", "globex", "initech"];
    for batch in 0..4 {
        let evs: Vec<Value> = (0..40)
            .map(|i| {
                json!({"id": format!("adm-{batch}-{i}"), "action": "login", "actor": format!("user-{i}"),
                "tenant": tenants[i % 3], "description": "an event to fill segments with a few hundred bytes each",
                "metadata": {"batch": batch, "i": i}})
            })
            .collect();
        let (st, v) = call(&d, &admin, "POST", "/v1/events", Some(&Value::Array(evs)));
        assert_eq!(st, 201, "{v}");
    }
    // Indexed, checkpointed, and the start-up verification done (only
    // /readyz here: every read of a key is audited, so it appends events).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, r) = call(&d, &admin, "GET", "/readyz", None);
        let s = &r["state"];
        if s["lag_events"] == 0
            && s["log_last_seq"].as_u64() >= Some(160)
            && s["seal"]["startup_check_done"] == true
            && s["seal"]["checkpoint"]["seq"].is_u64()
        {
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, segs) = call(&d, &admin, "GET", "/v1/segments", None);
    let sealed = segs["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["sealed"] == true)
        .count();
    assert!(sealed >= 2, "several sealed segments wanted: {segs}");
    World {
        _tmp: tmp,
        d,
        admin,
        reader,
    }
}

/// Signs in with `key` at `hash` and waits for the first view.
fn sign_in(b: &Browser, d: &Server, key: &str, hash: &str) {
    b.goto(&format!("{}/{hash}", origin(d)));
    let input = b.find("[data-test=login] input[name=key]");
    let typed = format!("{key}\u{E007}");
    b.with(|_| input.send_keys(&typed)).unwrap();
    b.find("body[data-ready='1']");
    // The page's first request, without a key, is refused: that is what
    // brings up the prompt. Nothing else may have failed.
    let errors = b.console_errors();
    assert!(
        errors
            .iter()
            .all(|e| e.contains("/v1/me - ") && e.contains("status of 401")),
        "console errors before signing in: {errors:#?}"
    );
}

fn text(b: &Browser, css: &str) -> String {
    b.find(css);
    b.eval(&format!(
        "return document.querySelector({}).textContent;",
        serde_json::to_string(css).unwrap()
    ))
    .as_str()
    .unwrap_or_else(|| panic!("no text in {css}"))
    .to_owned()
}

/// Polls `f` for 10 s until it holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The seal and lag figures shown, by their `data-test`.
fn shown_status(b: &Browser) -> Value {
    b.eval(
        "const t = (k) => document.querySelector(`[data-test=status] [data-test=${k}]`)?.textContent; \
         return {lag: t('lag'), verified: t('verified-through'), checkpoint: t('checkpoint'), \
         digester: t('digester-runs'), scrub: t('scrub-passes'), damaged: t('damaged'), \
         unsigned: t('unsigned'), startup: t('startup-check')};",
    )
}

fn want_status(r: &Value) -> Value {
    let s = &r["state"];
    let seal = &s["seal"];
    let lag = s["lag_events"].as_u64().unwrap();
    json!({
        "lag": format!("{} {}", num(&s["lag_events"]), if lag == 1 { "event" } else { "events" }),
        "verified": format!("seq {}", num(&seal["verified_through"])),
        "checkpoint": format!("seq {}", num(&seal["checkpoint"]["seq"])),
        "digester": num(&seal["digester_runs"]),
        "scrub": num(&seal["scrub_passes"]),
        "damaged": seal["damaged_segments"].as_array().unwrap().len().to_string(),
        "unsigned": seal["unsigned_days"].as_array().unwrap().len().to_string(),
        "startup": if seal["startup_check_done"] == true { "done" } else { "running" },
    })
}

#[test]
fn the_admin_view_shows_what_the_api_says_and_sets_and_lifts_holds() {
    let w = world();
    let (d, admin) = (&w.d, w.admin.as_str());
    let b = Browser::start();
    sign_in(&b, d, admin, "#/admin");
    b.find("[data-test=admin][data-loaded]");
    assert_eq!(text(&b, "header nav a[href='#/admin']"), "Admin");

    // Every read of a key is audited (an event appended), so the figures
    // move with each request: keep the answers the page reads on a Refresh
    // and compare the page with them, then with fresh reads where they
    // cannot have moved (sealed segments, the configuration, the seal).
    b.eval(
        "window.__answers = {}; const orig = window.fetch; \
         window.fetch = async (...a) => { const r = await orig(...a); \
           const u = String(a[0]); \
           if (r.ok && (!a[1] || !a[1].method)) window.__answers[u] = await r.clone().json(); \
           return r; }; return null;",
    );
    let before = b.eval("return document.querySelector('[data-test=admin]').dataset.loaded;");
    b.find("[data-test=refresh]").click_sync(&b);
    eventually("the refresh", || {
        b.eval("return document.querySelector('[data-test=admin]').dataset.loaded;") != before
    });
    let answers = b.eval("return window.__answers;");
    let got = |path: &str| -> Value {
        let v = answers[path].clone();
        assert!(!v.is_null(), "the page did not read {path}: {answers}");
        v
    };

    // Segments: every one the API listed, in order, with its exact size and SHA-256.
    let segs = got("/v1/segments");
    let shown = b.eval(
        "return [...document.querySelectorAll('[data-test=segment-row]')].map(r => ({ \
           name: r.dataset.name, \
           bytes: r.querySelector('[data-test=seg-bytes]').textContent.replaceAll(',', ''), \
           count: r.querySelector('[data-test=seg-count]').textContent.replaceAll(',', ''), \
           sha: r.querySelector('[data-test=seg-sha]').textContent, \
           title: r.querySelector('[data-test=seg-sha]').title }));",
    );
    let row = |s: &Value| {
        let sha = s["sha256"].as_str();
        json!({
            "name": s["name"],
            "bytes": s["bytes"].to_string(),
            "count": s["count"].to_string(),
            "sha": sha.map_or_else(|| "none while active: it changes until sealed".to_owned(), str::to_owned),
            "title": sha.unwrap_or_default(),
        })
    };
    let want: Vec<Value> = segs["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(row)
        .collect();
    assert!(want.len() >= 3, "{segs}");
    assert_eq!(
        shown,
        Value::Array(want),
        "segments differ from /v1/segments"
    );
    assert_eq!(
        b.eval("return document.querySelector('[data-test=segments-total]').dataset.bytes;"),
        json!(segs["bytes"].to_string())
    );
    // A sealed segment never changes: each shown equals a fresh read.
    let (_, fresh) = call(d, admin, "GET", "/v1/segments", None);
    for s in segs["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["sealed"] == true)
    {
        assert!(
            fresh["segments"].as_array().unwrap().contains(s),
            "{s} not in a fresh /v1/segments"
        );
    }

    // The retention plan: the configuration and every day as /v1/retention says.
    let plan = got("/v1/retention");
    let (_, fresh) = call(d, admin, "GET", "/v1/retention", None);
    assert_eq!(plan["config"], fresh["config"]);
    assert_eq!(
        text(&b, "[data-test=ret-today]"),
        plan["today"].as_str().unwrap()
    );
    assert_eq!(
        text(&b, "[data-test=ret-first-seq]"),
        num(&plan["first_seq"])
    );
    assert!(text(&b, "[data-test=ret-days]").starts_with("30 days after"));
    assert_eq!(text(&b, "[data-test=ret-tenants]"), "acme: 365 days");
    assert!(text(&b, "[data-test=ret-interval]").starts_with("at start and every 3,600 s"));
    let shown = b.eval(
        "return [...document.querySelectorAll('[data-test=plan-row]')].map(r => ({ \
           day: r.dataset.day, \
           events: r.querySelector('[data-test=plan-events]').textContent.replaceAll(',', ''), \
           segments: r.querySelector('[data-test=plan-segments]').title.split('\\n'), \
           drop: r.querySelector('[data-test=plan-drop]').textContent, \
           reason: r.querySelector('[data-test=plan-reason]').textContent }));",
    );
    let want: Vec<Value> = plan["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            json!({
                "day": p["day"], "events": p["events"].to_string(), "segments": p["segments"],
                "drop": if p["drop"] == true { "dropped" } else { "kept" },
                "reason": sentence(p["reason"].as_str().unwrap()),
            })
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        shown,
        Value::Array(want),
        "the plan differs from /v1/retention"
    );

    // Status: index lag and the seal as /readyz said; the seal's verdicts
    // (not its moving counts) as a fresh read says.
    let ready = got("/readyz");
    assert_eq!(
        shown_status(&b),
        want_status(&ready),
        "status differs from /readyz"
    );
    let (_, fresh) = call(d, admin, "GET", "/readyz", None);
    for k in [
        "startup_check_done",
        "damaged_segments",
        "unsigned_days",
        "problems",
    ] {
        assert_eq!(ready["state"]["seal"][k], fresh["state"]["seal"][k], "{k}");
    }
    let cp = got("/v1/checkpoint");
    assert_eq!(text(&b, "[data-test=cp-seq]"), num(&cp["seq"]));
    assert_eq!(
        text(&b, "[data-test=cp-chain]"),
        cp["chain_hash"].as_str().unwrap()
    );
    assert_eq!(
        text(&b, "[data-test=cp-key]"),
        cp["key_id"].as_str().unwrap()
    );

    // Holds: the configured one is listed, and cannot be lifted here.
    let cfg_row = "[data-test=hold-row][data-name='cfg-litigation']";
    b.find(cfg_row);
    assert_eq!(
        b.eval(&format!(
            "return document.querySelectorAll(\"{cfg_row} [data-test=lift]\").length;"
        )),
        json!(0)
    );
    b.screenshot("admin");

    // Every control of the form has a label.
    assert_eq!(
        b.eval(
            "return [...document.querySelectorAll('[data-test=hold-form] input')] \
             .filter(i => !i.labels.length || !i.labels[0].textContent.trim()).map(i => i.name);"
        ),
        json!([])
    );
    // Add a hold through the form (the keyboard for the text, the date
    // inputs set as a date picker would).
    let type_into = |css: &str, s: &str| {
        let el = b.find(css);
        b.with(|_| el.send_keys(s)).unwrap();
    };
    type_into("[data-test=hold-form] input[name=name]", "case-2026-114");
    type_into("[data-test=hold-form] input[name=tenant]", "acme");
    type_into(
        "[data-test=hold-form] input[name=reason]",
        "litigation hold, ticket LEGAL-114",
    );
    b.eval(
        "document.querySelector('[data-test=hold-form] input[name=from]').value = '2026-01-01'; \
         document.querySelector('[data-test=hold-form] input[name=until]').value = '2026-06-30'; return null;",
    );
    b.find("[data-test=add-hold]").click_sync(&b);
    b.find("[data-test=hold-row][data-name='case-2026-114']");
    let (_, holds) = call(d, admin, "GET", "/v1/holds", None);
    let added: Vec<&Value> = holds["holds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] == "case-2026-114")
        .collect();
    assert_eq!(
        added,
        [
            &json!({"name": "case-2026-114", "tenant": "acme", "from": "2026-01-01",
            "until": "2026-06-30", "reason": "litigation hold, ticket LEGAL-114"})
        ],
        "{holds}"
    );
    // The form is emptied for the next one.
    assert_eq!(
        b.eval("return document.querySelector('[data-test=hold-form] input[name=name]').value;"),
        json!("")
    );

    // Refusals: the API's own sentence, next to the form.
    for (name, status) in [("bad name!", 400), ("case-2026-114", 409)] {
        let (st, problem) = call(d, admin, "POST", "/v1/holds", Some(&json!({"name": name})));
        assert_eq!(st, status, "{problem}");
        let want = sentence(problem["detail"].as_str().unwrap());
        b.eval(
            "document.querySelector('[data-test=hold-form] input[name=name]').value = ''; return null;",
        );
        type_into("[data-test=hold-form] input[name=name]", name);
        b.find("[data-test=add-hold]").click_sync(&b);
        eventually("the refusal", || {
            b.eval(
                "return document.querySelector('[data-test=hold-form] [data-test=error]')?.textContent ?? '';",
            ) == json!(want)
        });
        assert_eq!(
            b.eval("return document.activeElement.name + ' ' + document.activeElement.getAttribute('aria-invalid');"),
            json!("name true"),
            "the name field is marked and focused"
        );
    }

    // Lift: a confirmation dialog first; "Keep the hold" keeps it and gives
    // the focus back to the button.
    let lift = "[data-test=hold-row][data-name='case-2026-114'] [data-test=lift]";
    b.find(lift).click_sync(&b);
    b.find("dialog[data-test=lift-dialog][open]");
    b.screenshot("admin-lift");
    b.find("[data-test=lift-cancel]").click_sync(&b);
    eventually("the dialog closed", || {
        b.eval("return document.querySelector('dialog[data-test=lift-dialog]').open;")
            == json!(false)
    });
    assert_eq!(
        b.eval("return document.activeElement.dataset.test;"),
        json!("lift")
    );
    let (_, holds) = call(d, admin, "GET", "/v1/holds", None);
    assert!(holds.to_string().contains("case-2026-114"));
    // Escape cancels too (the dialog's own key).
    b.find(lift).click_sync(&b);
    let cancel = b.find("dialog[data-test=lift-dialog][open] [data-test=lift-cancel]");
    b.with(|_| cancel.send_keys("\u{E00C}")).unwrap();
    eventually("the dialog closed by Escape", || {
        b.eval("return document.querySelector('dialog[data-test=lift-dialog]').open;")
            == json!(false)
    });
    assert_eq!(
        b.eval("return document.activeElement.dataset.test;"),
        json!("lift")
    );
    // Confirmed: gone from the API and from the page.
    b.find(lift).click_sync(&b);
    b.find("dialog[data-test=lift-dialog][open] [data-test=lift-confirm]")
        .click_sync(&b);
    eventually("the row removed", || {
        b.eval(
            "return !!document.querySelector(\"[data-test=hold-row][data-name='case-2026-114']\");",
        ) == json!(false)
    });
    let (_, holds) = call(d, admin, "GET", "/v1/holds", None);
    assert_eq!(
        holds["holds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["cfg-litigation"]
    );

    // 1024 px wide: nothing wider than the window (long hashes are cut).
    b.with(|c| c.set_window_size(1024, 800)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        b.eval("return document.documentElement.scrollWidth <= window.innerWidth;"),
        json!(true),
        "the page scrolls sideways at 1024 px"
    );
    b.eval("window.scrollTo(0, 0); return null;");
    b.screenshot("admin-1024-status");
    b.eval("document.querySelector('[data-test=holds-section]').scrollIntoView(); return null;");
    b.screenshot("admin-1024-holds");
    b.eval("document.querySelector('[data-test=segments-section]').scrollIntoView(); return null;");
    b.screenshot("admin-1024");

    // No console error but the two refusals asked for.
    let errors = b.console_errors();
    let unexpected: Vec<&String> = errors
        .iter()
        .filter(|e| {
            !(e.contains("/v1/holds")
                && (e.contains("status of 400") || e.contains("status of 409")))
        })
        .collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:#?}");
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn a_key_without_the_admin_role_gets_no_admin_view_and_makes_no_admin_request() {
    let w = world();
    let d = &w.d;
    let b = Browser::start();
    sign_in(&b, d, &w.reader, "#/events");
    b.find("[data-test=event-row]");
    assert_eq!(
        b.eval("return document.querySelectorAll(\"header nav a[href='#/admin']\").length;"),
        json!(0),
        "no Admin entry for a read key"
    );
    assert_eq!(
        b.eval("return document.querySelectorAll('[data-test=export-csv]').length;"),
        json!(0),
        "no export button without the export role"
    );
    b.goto(&format!("{}/#/admin", origin(d)));
    let forbidden = text(&b, "[data-test=forbidden]");
    assert!(forbidden.contains("admin role"), "{forbidden}");
    let admin_routes: Vec<String> = b
        .requested()
        .into_iter()
        .filter(|u| {
            [
                "/v1/holds",
                "/v1/retention",
                "/v1/segments",
                "/v1/checkpoint",
            ]
            .iter()
            .any(|r| u.contains(r))
        })
        .collect();
    assert!(admin_routes.is_empty(), "{admin_routes:?}");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// `element.click()` from a synchronous test.
trait ClickSync {
    fn click_sync(self, b: &Browser);
}

impl ClickSync for fantoccini::elements::Element {
    fn click_sync(self, b: &Browser) {
        b.with(|_| self.click()).unwrap();
    }
}

#[test]
fn without_keys_or_a_signing_key_the_admin_view_says_so_without_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_without_detectors(tmp.path());
    let (st, _, v) = d.post(&json!({"action": "login", "actor": "alice"}));
    assert_eq!(st, 201, "{v}");
    let b = Browser::start();
    b.goto(&format!("{}/#/admin", origin(&d)));
    b.find("body[data-ready='1'] [data-test=admin][data-loaded]");
    assert_eq!(text(&b, "[data-test=status] [data-test=checkpoint]"), "off");
    b.find("[data-test=no-holds]");
    assert!(!b.requested().iter().any(|u| u.contains("/v1/checkpoint")));
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
