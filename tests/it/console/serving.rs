//! `/`, `/console/{file}`, `/logs`, `/ui` and `/v1/me` over HTTP.

use crate::auth::{key_toml, token, UNLIMITED_ROLES};
use crate::support::http::{send, Body, Reply};
use crate::support::inproc::Server;
use flate2::read::GzDecoder;
use serde_json::{json, Value};
use std::io::Read;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, "GET", path, headers, Body::None)
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.header(name)
}

#[test]
fn the_page_and_its_files_come_with_a_strict_policy_validators_and_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let page = get(&d.addr, "/", &[]);
    assert_eq!(page.status, 200, "{}", page.head);
    assert_eq!(
        header(&page, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&page.body)
        .to_ascii_lowercase()
        .starts_with("<!doctype html>"));
    for (name, want) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-cache"),
    ] {
        assert_eq!(header(&page, name), Some(want), "{name}: {}", page.head);
    }
    assert_eq!(header(&page, "content-encoding"), None);
    // The page names its script and style sheet by relative paths, served
    // with their types; nothing it loads comes from elsewhere.
    let html = String::from_utf8_lossy(&page.body).to_string();
    for (file, ctype) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        assert!(html.contains(&format!("\"console/{file}\"")), "{html}");
        let r = get(&d.addr, &format!("/console/{file}"), &[]);
        assert_eq!((r.status, header(&r, "content-type")), (200, Some(ctype)));
        assert_eq!(header(&r, "content-security-policy"), Some(CSP));
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "no inline script: {html}");

    // The ETag validates: 304 without a body, the same tag gzip or not.
    let etag = header(&page, "etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    let again = get(&d.addr, "/", &[("If-None-Match", &etag)]);
    assert_eq!((again.status, again.body.len()), (304, 0), "{}", again.head);
    assert_eq!(header(&again, "etag"), Some(etag.as_str()));
    let zipped = get(
        &d.addr,
        "/console/app.js",
        &[("Accept-Encoding", "br, gzip")],
    );
    let plain = get(&d.addr, "/console/app.js", &[]);
    assert_eq!(header(&zipped, "etag"), header(&plain, "etag"));
    if header(&zipped, "content-encoding") == Some("gzip") {
        let mut back = Vec::new();
        GzDecoder::new(&zipped.body[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, plain.body);
    } else {
        // Too small to gain from gzip: sent as is.
        assert_eq!(zipped.body, plain.body);
    }
    let refused = get(
        &d.addr,
        "/console/app.js",
        &[("Accept-Encoding", "gzip;q=0")],
    );
    assert_eq!(header(&refused, "content-encoding"), None);

    // Unknown files and other paths: 404 problems, nothing from the disk.
    for path in [
        "/console/nope.js",
        "/console/..%2FCargo.toml",
        "/console/index.html.bak",
        "/console/a/b",
    ] {
        let r = get(&d.addr, path, &[]);
        assert_eq!(r.status, 404, "{path}: {}", r.head);
        assert_eq!(
            r.json()["type"],
            "https://stele.dev/problems/not-found",
            "{path}"
        );
    }
}

#[test]
fn me_says_what_the_key_may_do_and_the_page_needs_no_key() {
    let tmp = tempfile::tempdir().unwrap();
    // Without keys (loopback): every role, every tenant.
    {
        let d = Server::start(&tmp.path().join("open"));
        let r = get(&d.addr, "/v1/me", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            json!({"authenticated": false, "key": null,
                   "roles": ["ingest", "read", "export", "admin"], "tenants": null})
        );
    }
    let (reader, admin, ingest) = (token("reader"), token("admin"), token("ingest"));
    let conf = tmp.path().join("stele.toml");
    std::fs::write(
        &conf,
        format!(
            "[auth]\n{UNLIMITED_ROLES}{}{}{}",
            key_toml("reader", &reader, &["read"], &["acme"], ""),
            key_toml("admin", &admin, &["read", "export", "admin"], &["*"], ""),
            key_toml("ingest", &ingest, &["ingest"], &["*"], ""),
        ),
    )
    .unwrap();
    let d = Server::start_with_file(&tmp.path().join("keys"), &conf);
    let me = |t: &str| -> (u16, Value) {
        let auth = format!("Bearer {t}");
        let r = get(&d.addr, "/v1/me", &[("Authorization", &auth)]);
        (r.status, r.json_or_null())
    };
    assert_eq!(
        me(&reader),
        (
            200,
            json!({"authenticated": true, "key": "reader", "roles": ["read"], "tenants": ["acme"]})
        )
    );
    let (st, v) = me(&admin);
    assert_eq!(
        (st, &v["roles"], &v["tenants"]),
        (200, &json!(["read", "export", "admin"]), &Value::Null)
    );
    // A key that cannot read has no use for the console: refused like any read.
    assert_eq!(me(&ingest).0, 403);
    assert_eq!(get(&d.addr, "/v1/me", &[]).status, 401);
    // The page and its files are public: they carry no data.
    assert_eq!(get(&d.addr, "/", &[]).status, 200);
    assert_eq!(get(&d.addr, "/console/app.js", &[]).status, 200);
}

#[test]
fn logs_and_ui_lead_to_the_console_without_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("stele.toml");
    std::fs::write(
        &conf,
        format!(
            "[auth]\n{UNLIMITED_ROLES}{}",
            key_toml("reader", &token("reader"), &["read"], &["*"], "")
        ),
    )
    .unwrap();
    let d = Server::start_with_file(&tmp.path().join("data"), &conf);
    for (path, to) in [("/logs", "/#/events"), ("/ui", "/")] {
        let r = get(&d.addr, path, &[]);
        assert_eq!(r.status, 302, "{path}: {}", r.head);
        assert_eq!(header(&r, "location"), Some(to), "{path}");
        assert_eq!(header(&r, "content-security-policy"), Some(CSP), "{path}");
        assert!(r.body.is_empty(), "{path}");
    }
    // Only GET: the route table answers anything else with 405.
    let r = send(&d.addr, "POST", "/logs", &[], Body::None);
    assert_eq!(r.status, 405, "{}", r.head);
}
