//! Access control: API keys and their roles, tenant scopes on every read
//! path, rate and stream limits, secure defaults, TLS, reloading keys and
//! certificates, `stele keygen`, and the self-audit trail of who read what.
//!
//! In-process ([`serve`], `support::inproc`) unless the test reads the
//! daemon's own log or exit status, which needs the real binary ([`start`]):
//! tokens and credentials that must never reach the log, the startup
//! refusal without keys on all interfaces, and a broken file on SIGHUP.
//! Reloads in-process go through `stele::server::Handle::reload`, the entry
//! point the daemon's SIGHUP task uses.

use crate::support::daemon::Daemon;
use crate::support::http::{is_timeout, parse_reply, read_response, request_bytes, Sse, SseEvent};
use crate::support::inproc::Server;
use crate::support::stele_clean_env;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Tokens, hashes and configuration files
// ---------------------------------------------------------------------------

/// Unpadded base64url (RFC 4648 §5).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A well-formed token (`stele_` + 43 base64url characters of 32 bytes),
/// the same for the same seed.
fn token(seed: &str) -> String {
    let bytes = Sha256::digest(format!("stele auth test token: {seed}").as_bytes());
    let t = format!("stele_{}", b64url(&bytes));
    assert_eq!(t.len(), 6 + 43);
    t
}

/// The `hash` of a key in the configuration: `sha256:` + lowercase hex.
fn hash(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// One `[[auth.keys]]` entry; `extra` holds more `name = value` lines.
fn key_toml(id: &str, token: &str, roles: &[&str], tenants: &[&str], extra: &str) -> String {
    format!(
        "[[auth.keys]]\nid = \"{id}\"\nhash = \"{}\"\nroles = {}\ntenants = {}\n{extra}\n",
        hash(token),
        serde_json::to_string(roles).unwrap(),
        serde_json::to_string(tenants).unwrap(),
    )
}

/// `[auth.roles.*]` without any rate limit.
const UNLIMITED_ROLES: &str = "[auth.roles.ingest]\nrate_per_sec = 0\n\
    [auth.roles.read]\nrate_per_sec = 0\n\
    [auth.roles.export]\nrate_per_sec = 0\n\
    [auth.roles.admin]\nrate_per_sec = 0\n";

fn write_file(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// `stele serve --config CONF` on 127.0.0.1:0 with DIR/data as data dir:
/// the real binary, for the tests that read its log.
fn start(dir: &Path, conf: &Path) -> Daemon {
    Daemon::start_with(&dir.join("data"), &["--config", conf.to_str().unwrap()])
}

/// The same served in-process.
fn serve(dir: &Path, conf: &Path) -> Server {
    Server::start_with_file(&dir.join("data"), conf)
}

// ---------------------------------------------------------------------------
// HTTP with headers
// ---------------------------------------------------------------------------

struct Resp {
    status: u16,
    /// The header lines (without the status line).
    headers: Vec<String>,
    /// The body, de-chunked.
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        let want = format!("{}:", name.to_ascii_lowercase());
        self.headers.iter().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with(&want)
                .then(|| l[want.len()..].trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The problem kind (`type` without the URL prefix), or "".
    fn kind(&self) -> String {
        self.json()["type"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("https://stele.dev/problems/")
            .to_string()
    }

    fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn brief(&self) -> String {
        format!(
            "{} {}",
            self.status,
            self.body.chars().take(600).collect::<String>()
        )
    }
}

/// The answer read to the end of the connection, as this file looks at it.
fn parse_response(raw: &[u8]) -> Resp {
    let r = parse_reply(raw).unwrap_or_else(|| {
        panic!(
            "not a whole HTTP response: {}",
            String::from_utf8_lossy(raw)
        )
    });
    Resp {
        status: r.status,
        headers: r.head.split("\r\n").skip(1).map(str::to_string).collect(),
        body: r.text(),
    }
}

/// One HTTP/1.1 request with extra headers, `Connection: close`.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&request_bytes(method, path, headers, body))
        .unwrap();
    parse_response(&read_response(&mut s))
}

/// `Authorization: Bearer TOKEN` when a token is given.
fn auth(token: Option<&str>) -> Vec<(&'static str, String)> {
    token
        .map(|t| vec![("Authorization", format!("Bearer {t}"))])
        .unwrap_or_default()
}

fn get(addr: &str, path: &str, token: Option<&str>) -> Resp {
    let h = auth(token);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    request(addr, "GET", path, &h, b"")
}

fn send_json(addr: &str, method: &str, path: &str, token: Option<&str>, body: &Value) -> Resp {
    let mut h = auth(token);
    h.push(("Content-Type", "application/json".into()));
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    request(addr, method, path, &h, body.to_string().as_bytes())
}

fn post(addr: &str, token: Option<&str>, body: &Value) -> Resp {
    send_json(addr, "POST", "/v1/events", token, body)
}

/// Calls `f` until it returns `Some`, for at most `secs` seconds.
fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls a list route with `token` until it returns exactly `n` events.
fn wait_for_count(addr: &str, path: &str, token: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(addr, path, Some(token));
        if r.status == 200 && r.events().len() == n {
            return r.events();
        }
        if Instant::now() > deadline {
            panic!("{path}: never {n} events; last answer {}", r.brief());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the indexes hold every event of the log: exports read up to
/// the indexed seq, which may trail what listings already show.
fn wait_all_indexed(addr: &str) {
    poll(30, "every event indexed", || {
        let r = get(addr, "/readyz", None);
        (r.json()["state"]["lag_events"] == 0).then_some(())
    });
}

/// The address to dial for a daemon that listens on 0.0.0.0.
fn via_loopback(addr: &str) -> String {
    let port = addr.rsplit(':').next().unwrap();
    format!("127.0.0.1:{port}")
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {token}"))]
}

// ---------------------------------------------------------------------------
// 1. Every route against every kind of caller
// ---------------------------------------------------------------------------

#[test]
fn role_route_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let keys: &[(&str, &[&str])] = &[
        ("k-ingest", &["ingest"]),
        ("k-read", &["read"]),
        ("k-export", &["export"]),
        ("k-admin", &["admin"]),
        ("k-all", &["ingest", "read", "export", "admin"]),
    ];
    let mut conf = format!("[auth]\nmetrics = \"public\"\n{UNLIMITED_ROLES}");
    for (id, roles) in keys {
        conf.push_str(&key_toml(id, &token(id), roles, &["*"], ""));
    }
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = serve(tmp.path(), &conf);
    let all = token("k-all");

    // Something for the by-id, history and timeline routes to find.
    let r = post(
        &d.addr,
        Some(&all),
        &json!({"actor": "t", "id": "matrix-1", "action": "login", "tenant": "acme", "entity_type": "order",
                "entity_id": "1", "user_id": "u1", "description": "matrix login"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    poll(30, "matrix-1 indexed", || {
        (get(&d.addr, "/v1/events/matrix-1", Some(&all)).status == 200
            && get(&d.addr, "/readyz", None).status == 200)
            .then_some(())
    });

    let bad = format!("stele_{}", "x".repeat(43)); // well-formed, unknown
    let mut callers: Vec<(String, Option<String>, Vec<&str>)> = vec![
        ("no header".into(), None, vec![]),
        ("unknown token".into(), Some(bad), vec![]),
    ];
    for (id, roles) in keys {
        callers.push((id.to_string(), Some(token(id)), roles.to_vec()));
    }
    // (method, path, body, role needed; None = public)
    type Route = (&'static str, String, Option<Value>, Option<&'static str>);
    let routes = |caller: &str| -> Vec<Route> {
        let hold = format!("hold-{}", caller.replace(' ', "-"));
        vec![
            ("GET", "/healthz".into(), None, None),
            ("GET", "/readyz".into(), None, None),
            ("GET", "/metrics".into(), None, None),
            (
                "POST",
                "/v1/events".into(),
                Some(json!({"actor": "t", "action": "login", "tenant": "acme"})),
                Some("ingest"),
            ),
            ("GET", "/v1/events?limit=5".into(), None, Some("read")),
            ("GET", "/v1/events/matrix-1".into(), None, Some("read")),
            ("GET", "/v1/search?q=matrix".into(), None, Some("read")),
            ("GET", "/v1/stats".into(), None, Some("read")),
            ("GET", "/v1/stream".into(), None, Some("read")),
            (
                "GET",
                "/v1/entities/order/1/history".into(),
                None,
                Some("read"),
            ),
            ("GET", "/v1/users/u1/events".into(), None, Some("read")),
            ("GET", "/v1/export".into(), None, Some("export")),
            ("GET", "/v1/export?format=csv".into(), None, Some("export")),
            ("GET", "/v1/segments".into(), None, Some("admin")),
            ("GET", "/v1/retention".into(), None, Some("admin")),
            ("GET", "/v1/holds".into(), None, Some("admin")),
            (
                "POST",
                "/v1/holds".into(),
                Some(json!({"name": hold, "reason": "matrix"})),
                Some("admin"),
            ),
            ("DELETE", format!("/v1/holds/{hold}"), None, Some("admin")),
        ]
    };
    let n_routes = routes("x").len();
    let mut mismatches = Vec::new();
    let mut table = String::new();
    for ri in 0..n_routes {
        for (name, tok, roles) in &callers {
            let (method, path, body, role) = routes(name).swap_remove(ri);
            let (status, kind, www, text) = if path == "/v1/stream" {
                let s = Sse::open(
                    &d.addr,
                    &path,
                    &tok.as_deref().map(bearer).unwrap_or_default(),
                );
                (s.status, s.kind(), s.head.clone(), s.body.clone())
            } else {
                let r = match &body {
                    Some(b) => send_json(&d.addr, method, &path, tok.as_deref(), b),
                    None => {
                        let h = auth(tok.as_deref());
                        let h: Vec<(&str, &str)> =
                            h.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        request(&d.addr, method, &path, &h, b"")
                    }
                };
                let www = r.header("www-authenticate").unwrap_or_default();
                (r.status, r.kind(), www, r.brief())
            };
            table.push_str(&format!("{method} {path} as {name}: {status}\n"));
            let ok = (200..300).contains(&status);
            let verdict = match (role, tok) {
                (None, None) => ok,
                // A public route with a bad token: either ignored or refused.
                (None, Some(_)) if roles.is_empty() => ok || status == 401,
                (None, Some(_)) => ok,
                (Some(_), _) if roles.is_empty() => {
                    status == 401
                        && kind == "unauthorized"
                        && www.to_ascii_lowercase().contains("bearer realm=\"stele\"")
                }
                (Some(r), _) if roles.contains(&r) => ok,
                (Some(_), _) => status == 403 && kind == "forbidden",
            };
            if !verdict {
                let want = match role {
                    None => "2xx".to_string(),
                    Some(_) if roles.is_empty() => "401 unauthorized + WWW-Authenticate".into(),
                    Some(r) if roles.contains(&r) => "2xx".into(),
                    Some(_) => "403 forbidden".into(),
                };
                mismatches.push(format!(
                    "{method} {path} as {name}: want {want}, got {status} {kind} ({})",
                    text.replace('\n', " ")
                        .chars()
                        .take(200)
                        .collect::<String>()
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases wrong:\n{}\n\nfull table:\n{table}",
        mismatches.len(),
        n_routes * callers.len(),
        mismatches.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 2. Tenant scopes
// ---------------------------------------------------------------------------

#[test]
fn tenant_isolation_on_every_read_path() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = format!("[auth]\n{UNLIMITED_ROLES}");
    conf += &key_toml("ing-all", &token("ing-all"), &["ingest"], &["*"], "");
    conf += &key_toml("ing-acme", &token("ing-acme"), &["ingest"], &["acme"], "");
    conf += &key_toml(
        "ing-multi",
        &token("ing-multi"),
        &["ingest"],
        &["acme", "globex"],
        "",
    );
    for (id, tenants) in [
        ("rd-acme", &["acme"][..]),
        ("rd-globex", &["globex"][..]),
        ("rd-all", &["*"][..]),
    ] {
        conf += &key_toml(id, &token(id), &["read", "export"], tenants, "");
    }
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = serve(tmp.path(), &conf);
    let a = d.addr.clone();
    let (ing_all, ing_acme, ing_multi) = (token("ing-all"), token("ing-acme"), token("ing-multi"));
    let (rd_acme, rd_globex, rd_all) = (token("rd-acme"), token("rd-globex"), token("rd-all"));

    // tenant -> ids posted
    let mut posted: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut batch = Vec::new();
    for (tenant, n) in [("acme", 6), ("globex", 5), ("initech", 2)] {
        for i in 0..n {
            let id = format!("{tenant}-{i}");
            batch.push(
                json!({"id": id, "action": "update", "actor": "alice", "user_id": "u1",
                "entity_type": "order", "entity_id": "7", "tenant": tenant,
                "description": "quarterly invoice review"}),
            );
            posted.entry(tenant).or_default().push(id);
        }
    }
    let r = post(&a, Some(&ing_all), &Value::Array(batch));
    assert_eq!(r.status, 201, "{}", r.brief());

    ingest_scopes(&a, &ing_acme, &ing_multi, &mut posted);

    for (t, ids) in &posted {
        wait_for_count(
            &a,
            &format!("/v1/events?tenant={t}&limit=100"),
            &rd_all,
            ids.len(),
        );
    }
    wait_all_indexed(&a);
    let r = get(&a, "/v1/events/notenant-1", Some(&rd_all));
    assert_eq!(r.json()["tenant"], "acme", "{}", r.brief());
    for id in ["tf-0", "tf-2", "tf-3"] {
        assert_eq!(
            get(&a, &format!("/v1/events/{id}"), Some(&rd_all)).status,
            404,
            "a refused batch stored {id}"
        );
    }

    let mut failures = Vec::new();
    for (tenant, tok, other) in [("acme", &rd_acme, "globex"), ("globex", &rd_globex, "acme")] {
        failures.extend(scoped_reads(&a, tok, &rd_all, tenant, other, &posted));
    }
    // The unscoped key sees every tenant (the checks above are not vacuous).
    let r = get(&a, "/v1/search?q=invoice&limit=100", Some(&rd_all));
    let with_tenant = r
        .events()
        .iter()
        .filter(|e| e["tenant"].is_string())
        .count();
    if with_tenant != 13 {
        failures.push(format!(
            "all: search: want 13 tenant events, got {}",
            r.brief()
        ));
    }

    // Cursors are bound to the scope.
    for path in ["/v1/events?limit=2", "/v1/entities/order/7/history?limit=2"] {
        let r = get(&a, path, Some(&rd_acme));
        let Some(cursor) = r.json()["next_cursor"].as_str().map(str::to_string) else {
            failures.push(format!("{path}: no next_cursor for acme: {}", r.brief()));
            continue;
        };
        let next = format!("{path}&cursor={cursor}");
        let own = get(&a, &next, Some(&rd_acme));
        failures.extend(only_tenant(
            &format!("acme: {path} page 2"),
            &own.events(),
            "acme",
            2,
        ));
        let r = get(&a, &next, Some(&rd_globex));
        if (r.status, r.kind().as_str()) != (400, "invalid-cursor") {
            failures.push(format!(
                "{path}: acme's cursor replayed by globex: want 400 invalid-cursor, got {}",
                r.brief()
            ));
        }
    }

    failures.extend(scoped_streams(
        &a,
        &ing_all,
        &rd_all,
        &rd_acme,
        &rd_globex,
        &mut posted,
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// How many events a scoped read must answer, all of the key's tenant.
#[derive(Clone, Copy)]
enum Want {
    /// Every event of the tenant.
    All,
    /// Those described as an invoice review (the ones posted in bulk).
    Described,
    /// User u1's: the described ones, plus `notenant-1` for acme.
    Timeline,
    /// 200 and no event at all.
    Nothing,
    /// 200 with only the tenant's events, or a 400 (full text naming
    /// another tenant may be refused).
    NoLeak,
}

/// Every read path a tenant-scoped key can take, one row a case: what, the
/// target (`{other}` is another tenant), and the answer wanted. Exports
/// are read as NDJSON lines; the rest as `events`.
#[rustfmt::skip]
const SCOPED_READS: &[(&str, &str, Want)] = &[
    ("list", "/v1/events?limit=100", Want::All),
    ("search", "/v1/search?q=invoice&limit=100", Want::Described),
    ("history", "/v1/entities/order/7/history?limit=100", Want::Described),
    ("timeline", "/v1/users/u1/events?limit=100", Want::Timeline),
    // Exports by log scan, by index (newest first, full text).
    ("export ndjson", "/v1/export", Want::All),
    ("export by index", "/v1/export?order=desc", Want::All),
    ("export full text", "/v1/export?q=invoice", Want::Described),
    // Explicit out-of-scope filters: empty answers, not errors.
    ("list other", "/v1/events?limit=100&tenant={other}", Want::Nothing),
    ("search other", "/v1/search?q=invoice&tenant={other}", Want::Nothing),
    ("timeline other", "/v1/events?user_id=u1&tenant={other}", Want::Nothing),
    ("history other", "/v1/events?entity_type=order&entity_id=7&tenant={other}", Want::Nothing),
    ("export other", "/v1/export?tenant={other}", Want::Nothing),
    // Full text naming the other tenant: still only this one (or a 400).
    ("search naming other", "/v1/search?q=tenant:{other}", Want::NoLeak),
    ("list naming other", "/v1/events?q={other}", Want::NoLeak),
];

/// Ingest scopes: out of scope is refused whole, naming the event; a
/// single-tenant key fills the tenant in, a multi-tenant key must say
/// which. Adds what was stored to `posted`.
fn ingest_scopes(
    a: &str,
    ing_acme: &str,
    ing_multi: &str,
    posted: &mut BTreeMap<&str, Vec<String>>,
) {
    let r = post(
        a,
        Some(ing_acme),
        &json!([{"actor": "t", "id": "tf-0", "action": "x", "tenant": "acme"},
                {"actor": "t", "id": "tf-1", "action": "x", "tenant": "globex"}]),
    );
    assert_eq!(
        (r.status, r.kind().as_str()),
        (403, "tenant-forbidden"),
        "{}",
        r.brief()
    );
    let p = r.json();
    assert_eq!(
        (&p["field"], &p["index"]),
        (&json!("tenant"), &json!(1)),
        "{p}"
    );
    // The same as NDJSON: the index is the line's event.
    let nd = "{\"actor\":\"t\",\"id\":\"tf-2\",\"action\":\"x\",\"tenant\":\"acme\"}\n\
              {\"actor\":\"t\",\"id\":\"tf-3\",\"action\":\"x\"}\n\
              {\"actor\":\"t\",\"id\":\"tf-4\",\"action\":\"x\",\"tenant\":\"initech\"}\n";
    let ing_acme_auth = format!("Bearer {ing_acme}");
    let r = request(
        a,
        "POST",
        "/v1/events",
        &[
            ("Authorization", &ing_acme_auth),
            ("Content-Type", "application/x-ndjson"),
        ],
        nd.as_bytes(),
    );
    assert_eq!(
        (r.status, r.kind().as_str(), &r.json()["index"]),
        (403, "tenant-forbidden", &json!(2)),
        "{}",
        r.brief()
    );
    // A single-tenant key fills the tenant in.
    let r = post(
        a,
        Some(ing_acme),
        &json!({"id": "notenant-1", "action": "x", "user_id": "u1"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    posted.get_mut("acme").unwrap().push("notenant-1".into());
    // A multi-tenant key must say which.
    let r = post(a, Some(ing_multi), &json!({"actor": "t", "action": "x"}));
    assert_eq!(
        (r.status, r.kind().as_str()),
        (400, "invalid-events"),
        "{}",
        r.brief()
    );
    let names_tenant = r.json()["errors"]
        .as_array()
        .is_some_and(|es| es.iter().any(|e| e["field"] == "tenant"))
        || r.json()["field"] == "tenant";
    assert!(
        names_tenant,
        "the problem does not name the tenant: {}",
        r.brief()
    );
    let r = post(
        a,
        Some(ing_multi),
        &json!({"actor": "t", "id": "multi-1", "action": "x", "tenant": "globex"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    posted.get_mut("globex").unwrap().push("multi-1".into());
    let r = post(
        a,
        Some(ing_multi),
        &json!({"actor": "t", "action": "x", "tenant": "initech"}),
    );
    assert_eq!(
        (r.status, r.kind().as_str()),
        (403, "tenant-forbidden"),
        "{}",
        r.brief()
    );
}

/// Checks every read path for `tenant`'s key `tok` (SCOPED_READS, get by
/// id, stats, CSV); returns the failures.
fn scoped_reads(
    a: &str,
    tok: &str,
    rd_all: &str,
    tenant: &str,
    other: &str,
    posted: &BTreeMap<&str, Vec<String>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let ids = &posted[tenant];
    let n = ids.len();
    let described = ids.iter().filter(|i| i.starts_with(tenant)).count();
    for &(what, target, want) in SCOPED_READS {
        let path = target.replace("{other}", other);
        let r = get(a, &path, Some(tok));
        let evs: Vec<Value> = if path.starts_with("/v1/export") {
            r.body
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
                .collect()
        } else {
            r.events()
        };
        let what = format!("{tenant}: {what} {path} ({})", r.status);
        let count = match want {
            Want::All => n,
            Want::Described => described,
            Want::Timeline => described + usize::from(tenant == "acme"), // notenant-1
            Want::Nothing => {
                if r.status != 200 || !evs.is_empty() {
                    failures.push(format!("{what}: want 200 and nothing, got {}", r.brief()));
                }
                continue;
            }
            Want::NoLeak => {
                let leaked = evs.iter().any(|e| e["tenant"] != tenant);
                if !(r.status == 200 || r.status == 400) || leaked {
                    failures.push(format!("{what}: {}", r.brief()));
                }
                continue;
            }
        };
        if r.status != 200 {
            failures.push(format!("{what}: want 200, got {}", r.brief()));
        }
        failures.extend(only_tenant(&what, &evs, tenant, count));
    }
    // An audit event (no tenant) is not this key's either.
    let audit = get(a, "/v1/events?category=audit_access&limit=1", Some(rd_all)).events();
    if let Some(id) = audit.first().and_then(|e| e["id"].as_str()) {
        let r = get(a, &format!("/v1/events/{id}"), Some(tok));
        if r.status != 404 {
            failures.push(format!(
                "{tenant}: get audit event {id}: want 404, got {}",
                r.brief()
            ));
        }
    } else {
        failures.push("no audit event to try".into());
    }
    let r = get(a, &format!("/v1/stats?tenant={other}"), Some(tok));
    if r.status != 200 || r.json()["total"] != json!(0) {
        failures.push(format!(
            "{tenant}: stats tenant={other}: want total 0, got {}",
            r.brief()
        ));
    }
    let r = get(a, &format!("/v1/export?tenant={other}"), Some(tok));
    if r.status != 200 || !r.body.trim().is_empty() {
        failures.push(format!(
            "{tenant}: export tenant={other}: want 200 and nothing, got {}",
            r.brief()
        ));
    }
    let r = get(a, &format!("/v1/events/{}", ids[0]), Some(tok));
    if r.status != 200 {
        failures.push(format!("{tenant}: get own {}: {}", ids[0], r.brief()));
    }
    for id in [&posted[other][0], &posted["initech"][0]] {
        let r = get(a, &format!("/v1/events/{id}"), Some(tok));
        if (r.status, r.kind().as_str()) != (404, "not-found") {
            failures.push(format!(
                "{tenant}: get {id}: want 404 not-found, got {}",
                r.brief()
            ));
        }
    }
    let r = get(a, "/v1/stats", Some(tok));
    if r.status != 200 || r.json()["total"] != json!(n) {
        failures.push(format!(
            "{tenant}: stats total: want {n}, got {}",
            r.brief()
        ));
    }
    let r = get(a, "/v1/export?format=csv", Some(tok));
    let rows = r.body.matches("\r\n").count();
    if r.status != 200 || r.body.contains(other) || r.body.contains("initech") || rows != n + 1 {
        failures.push(format!(
            "{tenant}: export csv: want {n} rows of {tenant}, got {}",
            r.brief()
        ));
    }
    failures
}

/// Streams with tenant-scoped keys: replayed, live, full text, resumed with
/// `Last-Event-ID`, and filtered to another tenant; returns the failures.
fn scoped_streams(
    a: &str,
    ing_all: &str,
    rd_all: &str,
    rd_acme: &str,
    rd_globex: &str,
    posted: &mut BTreeMap<&str, Vec<String>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    // The stream: replayed, live, and resumed with Last-Event-ID.
    let seqs_of = |posted: &BTreeMap<&str, Vec<String>>, tenant: &str| -> Vec<u64> {
        let path = format!("/v1/events?tenant={tenant}&limit=100");
        let mut s: Vec<u64> = wait_for_count(a, &path, rd_all, posted[tenant].len())
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        s.sort();
        s
    };
    let acme_seqs = seqs_of(posted, "acme");
    let mut st = Sse::open(a, "/v1/stream?from_seq=1", &bearer(rd_acme));
    let got = data_of(&st.read_to_seq(*acme_seqs.last().unwrap()));
    failures.extend(only_tenant(
        "acme: stream replay",
        &got,
        "acme",
        acme_seqs.len(),
    ));
    let r = post(
        a,
        Some(ing_all),
        &json!([{"actor": "t", "id": "live-g1", "action": "live", "description": "live check", "tenant": "globex"},
                {"actor": "t", "id": "live-i1", "action": "live", "description": "live check", "tenant": "initech"},
                {"actor": "t", "id": "live-acme", "action": "live", "description": "live check", "tenant": "acme"}]),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    for (t, id) in [
        ("globex", "live-g1"),
        ("initech", "live-i1"),
        ("acme", "live-acme"),
    ] {
        posted.get_mut(t).unwrap().push(id.into());
    }
    let live_acme = r.json()["events"][2]["seq"].as_u64().unwrap();
    let got = data_of(&st.read_to_seq(live_acme));
    failures.extend(only_tenant("acme: live stream", &got, "acme", 1));
    drop(st);
    // A full-text stream (it follows the text index: another code path).
    let mut st = Sse::open(a, "/v1/stream?q=live&from_seq=1", &bearer(rd_acme));
    let got = data_of(&st.read_to_seq(live_acme));
    failures.extend(only_tenant("acme: full-text stream", &got, "acme", 1));
    drop(st);
    // Resumed after the first acme event: only acme, from the next one on.
    let resume = |tok: &str, path: &str, after: u64| {
        Sse::open(
            a,
            path,
            &[bearer(tok), vec![("Last-Event-ID", after.to_string())]].concat(),
        )
    };
    let mut st = resume(rd_acme, "/v1/stream", acme_seqs[0]);
    let got = st.read_to_seq(live_acme);
    if got.first().and_then(|e| e.seq_id()) != Some(acme_seqs[1]) {
        failures.push(format!(
            "acme: resumed stream starts at {:?}, want {}",
            got.first().map(|e| e.seq_id()),
            acme_seqs[1]
        ));
    }
    failures.extend(only_tenant(
        "acme: resumed stream",
        &data_of(&got),
        "acme",
        acme_seqs.len(),
    ));
    drop(st);
    // A globex key asking for tenant=acme gets an empty stream; a second,
    // unfiltered globex stream shows how far the log was served.
    let mut filtered = resume(rd_globex, "/v1/stream?tenant=acme", 1);
    let r = post(
        a,
        Some(ing_all),
        &json!({"actor": "t", "id": "live-g2", "action": "live", "tenant": "globex"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    posted.get_mut("globex").unwrap().push("live-g2".into());
    let live_globex = r.json()["events"][0]["seq"].as_u64().unwrap();
    let mut st = resume(rd_globex, "/v1/stream", 1);
    let got = data_of(&st.read_to_seq(live_globex));
    failures.extend(only_tenant(
        "globex: resumed stream",
        &got,
        "globex",
        posted["globex"].len(),
    ));
    let leaked = filtered.data_within(Duration::from_millis(500));
    if filtered.status != 200 || !leaked.is_empty() {
        failures.push(format!(
            "globex key streaming tenant=acme: want 200 and nothing, got {} {leaked:?}",
            filtered.status
        ));
    }
    failures
}

/// The `data` of SSE events.
fn data_of(evs: &[SseEvent]) -> Vec<Value> {
    evs.iter().map(SseEvent::json).collect()
}

/// A complaint unless `evs` are exactly `want` events, all of `tenant`.
fn only_tenant(what: &str, evs: &[Value], tenant: &str, want: usize) -> Option<String> {
    let ts: Vec<&str> = evs
        .iter()
        .map(|e| e["tenant"].as_str().unwrap_or("<none>"))
        .collect();
    (ts.len() != want || ts.iter().any(|t| *t != tenant))
        .then(|| format!("{what}: want {want} events of {tenant}, got tenants {ts:?}"))
}

// ---------------------------------------------------------------------------
// 3. Bad credentials
// ---------------------------------------------------------------------------

#[test]
fn bad_tokens_are_401_and_reveal_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let good = token("good");
    let conf = format!(
        "[auth]\n{UNLIMITED_ROLES}{}",
        key_toml("good", &good, &["read"], &["*"], "")
    );
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = start(tmp.path(), &conf);
    assert_eq!(get(&d.addr, "/v1/events", Some(&good)).status, 200);

    let body43 = &good["stele_".len()..];
    let huge = format!("stele_{}", "A".repeat(10_000));
    let unknown = token("never configured");
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("Basic scheme", Some("Basic dXNlcjpwYXNzd29yZA==".into())),
        ("Bearer without a token", Some("Bearer".into())),
        ("Bearer and a space", Some("Bearer ".into())),
        ("the bare token, no scheme", Some(good.clone())),
        (
            "old JWT-style token",
            Some("Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJvbGQta2V5In0.c2lnbmF0dXJlLW9sZA".into()),
        ),
        ("42 characters", Some(format!("Bearer stele_{}", &body43[..42]))),
        ("44 characters", Some(format!("Bearer {good}A"))),
        ("a bad character", Some(format!("Bearer stele_{}!", &body43[..42]))),
        ("standard base64 '+'", Some(format!("Bearer stele_{}+", &body43[..42]))),
        ("wrong prefix", Some(format!("Bearer stela_{body43}"))),
        ("10 KB token", Some(format!("Bearer {huge}"))),
        ("unknown token", Some(format!("Bearer {unknown}"))),
        ("the good token twice", Some(format!("Bearer {good} {good}"))),
    ];
    let mut failures = Vec::new();
    for (what, header) in &cases {
        let h: Vec<(&str, &str)> = header
            .as_deref()
            .map(|v| vec![("Authorization", v)])
            .unwrap_or_default();
        let r = request(&d.addr, "GET", "/v1/events", &h, b"");
        let ctype = r.header("content-type").unwrap_or_default();
        let www = r.header("www-authenticate").unwrap_or_default();
        if r.status != 401
            || r.kind() != "unauthorized"
            || ctype != "application/problem+json"
            || www != "Bearer realm=\"stele\""
        {
            failures.push(format!(
                "{what}: want 401 unauthorized problem+json with WWW-Authenticate: Bearer realm=\"stele\"; \
                 got {} {ctype:?} www-authenticate {www:?} {}",
                r.status,
                r.brief()
            ));
        }
        let p = r.json();
        for m in ["title", "status", "detail"] {
            if p.get(m).is_none() {
                failures.push(format!("{what}: problem without {m}: {}", r.body));
            }
        }
        if let Some(v) = header {
            let secret = v.trim_start_matches("Bearer").trim();
            // The token, or any long piece of it, must not be echoed.
            if secret.len() >= 12 {
                let piece = &secret[secret.len() - 12..];
                let all = format!("{}\n{}", r.headers.join("\n"), r.body);
                if all.contains(piece) {
                    failures.push(format!(
                        "{what}: the answer echoes the token: {}",
                        r.brief()
                    ));
                }
            }
        }
    }
    // Also a POST and an admin route: authentication comes first.
    let r = post(
        &d.addr,
        Some(&unknown),
        &json!({"actor": "t", "action": "x"}),
    );
    if r.status != 401 {
        failures.push(format!("POST with an unknown token: {}", r.brief()));
    }
    let r = get(&d.addr, "/v1/segments", Some(&unknown));
    if r.status != 401 {
        failures.push(format!("/v1/segments with an unknown token: {}", r.brief()));
    }
    // The good key still works, and no token reached the daemon's log.
    assert_eq!(get(&d.addr, "/v1/events", Some(&good)).status, 200);
    let log = d.log_text();
    for t in [&good, &unknown, &body43[..20].to_string()] {
        if log.contains(t.as_str()) {
            failures.push(format!("the daemon's log contains a token: {t}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// 4. Rate and stream limits
// ---------------------------------------------------------------------------

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = String::from(
        "[auth]\nstreams_per_key_max = 2\n\
         [auth.roles.ingest]\nrate_per_sec = 0\n\
         [auth.roles.read]\nrate_per_sec = 0\n\
         [auth.roles.admin]\nrate_per_sec = 0\n\
         [auth.roles.export]\nrate_per_sec = 1\nburst = 2\n",
    );
    conf += &key_toml(
        "slow",
        &token("slow"),
        &["read"],
        &["*"],
        "rate_per_sec = 2\nburst = 3",
    );
    conf += &key_toml("other", &token("other"), &["read"], &["*"], "");
    conf += &key_toml(
        "streamer",
        &token("streamer"),
        &["read"],
        &["*"],
        "streams_max = 1",
    );
    conf += &key_toml("exp1", &token("exp1"), &["export"], &["*"], "");
    conf += &key_toml("exp2", &token("exp2"), &["export"], &["*"], "");
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = serve(tmp.path(), &conf);
    let a = d.addr.clone();

    // Streams first: their release is noticed asynchronously.
    let streamer = token("streamer");
    let first = Sse::open(&a, "/v1/stream", &bearer(&streamer));
    assert_eq!(first.status, 200, "{}", first.head);
    let second = Sse::open(&a, "/v1/stream", &bearer(&streamer));
    assert_eq!(
        (second.status, second.kind().as_str()),
        (429, "too-many-key-streams"),
        "{}\n{}",
        second.head,
        second.body
    );
    // Another key is not held to streamer's limit; its own default is 2.
    let other = token("other");
    let o1 = Sse::open(&a, "/v1/stream", &bearer(&other));
    let o2 = Sse::open(&a, "/v1/stream", &bearer(&other));
    assert_eq!(
        (o1.status, o2.status),
        (200, 200),
        "{}\n{}",
        o1.head,
        o2.body
    );
    let o3 = Sse::open(&a, "/v1/stream", &bearer(&other));
    assert_eq!(
        (o3.status, o3.kind().as_str()),
        (429, "too-many-key-streams"),
        "streams_per_key_max = 2: {}",
        o3.body
    );
    drop((first, o1, o2));

    // The token bucket: burst 3, then 429 with Retry-After.
    let slow = token("slow");
    let limited = until_limited(&a, "/v1/events?limit=1", &slow, 3, 2.0);
    assert_eq!(limited.kind(), "rate-limited", "{}", limited.brief());
    assert_eq!(
        limited.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let retry: u64 = limited
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", limited.headers))
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // 429 comes before 403 (slow has no admin role), after 401.
    let r = get(&a, "/v1/segments", Some(&slow));
    assert_eq!(
        (r.status, r.kind().as_str()),
        (429, "rate-limited"),
        "{}",
        r.brief()
    );
    let r = get(&a, "/v1/events", Some(&token("unknown")));
    assert_eq!(r.status, 401, "{}", r.brief());
    // Other keys are not affected.
    for _ in 0..5 {
        let r = get(&a, "/v1/events?limit=1", Some(&other));
        assert_eq!(r.status, 200, "{}", r.brief());
    }
    // Per-role defaults apply per key.
    let (e1, e2) = (token("exp1"), token("exp2"));
    let r = until_limited(&a, "/v1/export", &e1, 2, 1.0);
    assert_eq!(r.kind(), "rate-limited", "{}", r.brief());
    assert_eq!(
        get(&a, "/v1/export", Some(&e2)).status,
        200,
        "exp2 has its own bucket"
    );

    std::thread::sleep(Duration::from_secs(retry));
    let r = get(&a, "/v1/events?limit=1", Some(&slow));
    assert_eq!(r.status, 200, "after Retry-After: {}", r.brief());

    // A closed stream gives its slot back.
    poll(40, "streamer's closed stream was never released", || {
        let s = Sse::open(&a, "/v1/stream", &bearer(&streamer));
        match s.status {
            200 => Some(()),
            429 => None,
            other => panic!("{other}: {}", s.body),
        }
    });
}

// ---------------------------------------------------------------------------
// 5. Secure by default
// ---------------------------------------------------------------------------

/// Sends GET `path` with `token` until the answer is 429; checks that
/// `burst` requests (plus what refilled meanwhile at `rate`) passed first.
fn until_limited(addr: &str, path: &str, token: &str, burst: usize, rate: f64) -> Resp {
    let started = Instant::now();
    let mut ok = 0;
    loop {
        let r = get(addr, path, Some(token));
        match r.status {
            200 => ok += 1,
            429 => {
                let refill = (started.elapsed().as_secs_f64() * rate).ceil() as usize;
                assert!(
                    ok >= burst && ok <= burst + refill,
                    "{path}: {ok} requests passed before the 429 (burst {burst}, {refill} refilled)"
                );
                return r;
            }
            _ => panic!("{path}: unexpected {}", r.brief()),
        }
        assert!(ok < burst + 20, "{path}: never rate limited");
    }
}

/// Runs a command that should exit by itself; returns (status, stderr).
fn run_to_exit(mut cmd: std::process::Command, secs: u64) -> (std::process::ExitStatus, String) {
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {secs} s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status, text)
}

#[test]
fn without_keys_only_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    // No keys, loopback: serves openly, and says so.
    {
        let d = Daemon::start(&tmp.path().join("open"));
        assert_eq!(get(&d.addr, "/v1/events", None).status, 200);
        poll(
            5,
            "a log line about serving on loopback only without authentication",
            || {
                d.log_text()
                    .lines()
                    .any(|l| l.to_ascii_lowercase().contains("loopback"))
                    .then_some(())
            },
        );
    }
    // No keys, all interfaces (IPv4 or IPv6): refused at startup, naming
    // the fix.
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let mut cmd = stele_clean_env();
        cmd.args(["serve", "--listen", listen, "--data-dir"])
            .arg(tmp.path().join("refused"));
        let (status, err) = run_to_exit(cmd, 30);
        assert!(!status.success(), "started on {listen} without keys: {err}");
        assert!(!err.contains("Listening on"), "{err}");
        let names_fix = (err.contains("stele keygen") && err.contains("auth.keys"))
            || err.contains("127.0.0.1")
            || err.to_ascii_lowercase().contains("loopback");
        assert!(names_fix, "the refusal does not name the fix:\n{err}");
    }

    // check-config says the same about a file.
    let data = tmp.path().join("cc-data");
    let check = |name: &str, text: &str| -> (i32, String) {
        let f = write_file(&tmp.path().join(name), text);
        let out = stele_clean_env()
            .arg("check-config")
            .arg(&f)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let base = format!("data_dir = \"{}\"\n", data.display());
    let (code, out) = check("open.toml", &format!("listen = \"0.0.0.0:7070\"\n{base}"));
    assert_ne!(code, 0, "check-config accepted 0.0.0.0 without keys: {out}");
    let (code, out) = check("loop.toml", &format!("listen = \"127.0.0.1:7070\"\n{base}"));
    assert_eq!(code, 0, "{out}");
    let keyed = format!(
        "listen = \"0.0.0.0:7070\"\n{base}{}",
        key_toml("ops", &token("ops"), &["read"], &["*"], "")
    );
    let (code, out) = check("keyed.toml", &keyed);
    assert_eq!(code, 0, "{out}");

    // With keys, all interfaces is fine (and keys are required there).
    let conf = write_file(
        &tmp.path().join("keyed-serve.toml"),
        &format!(
            "[auth]\n{UNLIMITED_ROLES}{}",
            key_toml("ops", &token("ops"), &["read"], &["*"], "")
        ),
    );
    let mut cmd = stele_clean_env();
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&conf)
        .arg("--data-dir")
        .arg(tmp.path().join("keyed"));
    let d = Daemon::spawn(cmd);
    let addr = via_loopback(&d.addr);
    assert_eq!(get(&addr, "/v1/events", Some(&token("ops"))).status, 200);
    assert_eq!(get(&addr, "/v1/events", None).status, 401);
    assert_eq!(get(&addr, "/healthz", None).status, 200);
}

#[test]
fn check_config_rejects_bad_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str| -> (i32, String) {
        let f = write_file(&tmp.path().join(name), text);
        let out = stele_clean_env()
            .arg("check-config")
            .arg(&f)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let t = token("cc");
    let good = key_toml(
        "ok.key-1_A",
        &t,
        &["read", "export"],
        &["acme"],
        "rate_per_sec = 5\nburst = 5\nstreams_max = 1",
    );
    let (code, out) = check("good.toml", &format!("[auth]\nmetrics = \"admin\"\nstreams_per_key_max = 16\n[auth.roles.read]\nrate_per_sec = 200\nburst = 400\n{good}"));
    assert_eq!(code, 0, "{out}");
    let bad: Vec<(&str, String)> = vec![
        (
            "admin scoped to a tenant",
            key_toml("adm", &t, &["admin"], &["acme"], ""),
        ),
        (
            "unknown role",
            key_toml("k", &t, &["superuser"], &["*"], ""),
        ),
        ("bad id", key_toml("has space", &t, &["read"], &["*"], "")),
        (
            "id too long",
            key_toml(&"a".repeat(65), &t, &["read"], &["*"], ""),
        ),
        (
            "duplicate id",
            format!(
                "{}{}",
                key_toml("dup", &t, &["read"], &["*"], ""),
                key_toml("dup", &token("cc2"), &["read"], &["*"], "")
            ),
        ),
        (
            "uppercase hash",
            key_toml("k", &t, &["read"], &["*"], "").replace(
                &hash(&t),
                &hash(&t).to_uppercase().replace("SHA256:", "sha256:"),
            ),
        ),
        (
            "short hash",
            key_toml("k", &t, &["read"], &["*"], "").replace(&hash(&t), &hash(&t)[..40]),
        ),
        (
            "no sha256: prefix",
            key_toml("k", &t, &["read"], &["*"], "").replace("sha256:", ""),
        ),
        (
            "bad metrics",
            format!("[auth]\nmetrics = \"everyone\"\n{good}"),
        ),
    ];
    let mut failures = Vec::new();
    for (what, text) in bad {
        let (code, out) = check("bad.toml", &text);
        if code == 0 {
            failures.push(format!("{what}: accepted:\n{text}\n{out}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// 6. TLS
// ---------------------------------------------------------------------------

/// A fresh self-signed certificate for localhost/127.0.0.1, written to
/// `dir/cert.pem` and `dir/key.pem`; returns its DER.
fn write_cert(dir: &Path) -> Vec<u8> {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    std::fs::write(dir.join("key.pem"), key_pair.serialize_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    cert.der().to_vec()
}

/// A TLS handshake (trusting only `root`) and `GET /healthz`; returns the
/// response text and the server certificate's DER.
async fn tls_healthz(addr: &str, root: &[u8]) -> Result<(String, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root.to_vec()))
        .map_err(|e| e.to_string())?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or("no peer certificate")?;
    write_all_async(
        &mut tls,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        read_to_end_async(&mut tls, &mut buf),
    )
    .await;
    match read {
        Ok(Ok(_)) => {}
        // Closed without close_notify: what arrived is the answer.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(Err(e)) => return Err(format!("reading: {e}")),
        Err(_) if !buf.is_empty() => {}
        Err(_) => return Err("no answer over TLS".into()),
    }
    Ok((String::from_utf8_lossy(&buf).into_owned(), peer))
}

/// `write_all` and `flush` (without tokio's io-util feature).
async fn write_all_async<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    mut data: &[u8],
) -> std::io::Result<()> {
    use std::pin::Pin;
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, data)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    std::future::poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx)).await
}

/// `read_to_end` (without tokio's io-util feature).
async fn read_to_end_async<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::pin::Pin;
    let mut chunk = [0u8; 8192];
    loop {
        let mut rb = tokio::io::ReadBuf::new(&mut chunk);
        std::future::poll_fn(|cx| Pin::new(&mut *r).poll_read(cx, &mut rb)).await?;
        if rb.filled().is_empty() {
            return Ok(());
        }
        out.extend_from_slice(rb.filled());
    }
}

#[test]
fn tls_handshake_and_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let first = write_cert(tmp.path());
    let conf = write_file(
        &tmp.path().join("stele.toml"),
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            tmp.path().join("cert.pem").display(),
            tmp.path().join("key.pem").display()
        ),
    );
    let d = serve(tmp.path(), &conf);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (resp, peer) = rt.block_on(tls_healthz(&d.addr, &first)).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(peer == first, "the server presented another certificate");

    // Plain HTTP on the TLS port gets no 200.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.starts_with("HTTP/1.1 200"),
        "plain HTTP served: {text}"
    );

    // A new certificate at the same paths, then a reload (what SIGHUP does,
    // through the same `Handle::reload`).
    let second = write_cert(tmp.path());
    assert!(second != first);
    d.reload(&conf);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = match rt.block_on(tls_healthz(&d.addr, &second)) {
            Ok((resp, peer)) if peer == second => {
                assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
                break;
            }
            Ok(_) => "the old certificate".to_string(),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served after the reload ({last})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// 7. Keys on SIGHUP and `stele keygen`
// ---------------------------------------------------------------------------

/// Keys added and removed by a reload (what SIGHUP does, through the same
/// `Handle::reload`), in-process.
#[test]
fn keys_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let (ta, tb) = (token("key-a"), token("key-b"));
    let ka = key_toml("key-a", &ta, &["read"], &["*"], "");
    let kb = key_toml("key-b", &tb, &["read"], &["*"], "");
    let roles = format!("[auth]\n{UNLIMITED_ROLES}");
    let conf = write_file(&tmp.path().join("stele.toml"), &format!("{roles}{ka}"));
    let d = serve(tmp.path(), &conf);
    let status = |t: &str| get(&d.addr, "/v1/events?limit=1", Some(t)).status;
    assert_eq!((status(&ta), status(&tb)), (200, 401));

    write_file(&conf, &format!("{roles}{ka}{kb}"));
    d.reload(&conf);
    poll(10, "key-b accepted after the reload", || {
        (status(&tb) == 200).then_some(())
    });
    assert_eq!(status(&ta), 200);

    write_file(&conf, &format!("{roles}{kb}"));
    d.reload(&conf);
    poll(10, "key-a refused after its removal and the reload", || {
        (status(&ta) == 401).then_some(())
    });
    assert_eq!(status(&tb), 200);
}

/// A broken file on SIGHUP keeps the keys in force (as for every reloaded
/// setting). The real binary: the file is read again by its SIGHUP task,
/// which logs the refusal.
#[test]
fn a_broken_file_on_sighup_keeps_the_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (ta, tb) = (token("key-a"), token("key-b"));
    let kb = key_toml("key-b", &tb, &["read"], &["*"], "");
    let roles = format!("[auth]\n{UNLIMITED_ROLES}");
    let conf = write_file(&tmp.path().join("stele.toml"), &format!("{roles}{kb}"));
    let d = start(tmp.path(), &conf);
    let status = |t: &str| get(&d.addr, "/v1/events?limit=1", Some(t)).status;
    assert_eq!((status(&ta), status(&tb)), (401, 200));

    write_file(
        &conf,
        &format!(
            "{roles}{kb}{}",
            key_toml("key-b", &ta, &["read"], &["*"], "")
        ),
    );
    d.hup();
    poll(10, "the broken reload is logged", || {
        d.log_text()
            .contains("keeping the current settings")
            .then_some(())
    });
    assert_eq!((status(&ta), status(&tb)), (401, 200));
}

/// Runs `stele keygen ARGS`; returns (stdout, stderr).
fn keygen(args: &[&str]) -> (String, String) {
    let out = stele_clean_env().arg("keygen").args(args).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "stele keygen {args:?}: {o}{e}");
    (o, e)
}

/// The token line and the `[[auth.keys]]` snippet (up to a blank line) in
/// keygen's output.
fn parse_keygen(out: &str) -> (String, String) {
    let is_token = |l: &str| {
        l.starts_with("stele_")
            && l.len() == 49
            && l[6..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let tokens: Vec<&str> = out.lines().filter(|l| is_token(l)).collect();
    assert_eq!(tokens.len(), 1, "want one token line in:\n{out}");
    let mut lines = out.lines().skip_while(|l| l.trim() != "[[auth.keys]]");
    let mut snippet = String::new();
    for l in lines.by_ref() {
        if l.trim().is_empty() && !snippet.is_empty() {
            break;
        }
        snippet.push_str(l);
        snippet.push('\n');
    }
    assert!(
        snippet.starts_with("[[auth.keys]]\n"),
        "no snippet in:\n{out}"
    );
    (tokens[0].to_string(), snippet)
}

/// `--rate 200/min` writes the rate as the configuration spells it (and the
/// snippet passes the same checks `stele serve` makes); a malformed rate or
/// one given twice is refused by name.
#[test]
fn keygen_takes_a_rate_per_minute() {
    let (o, e) = keygen(&["--id", "dash", "--role", "read", "--rate", "200/min"]);
    let (_, snippet) = parse_keygen(&format!("{o}\n{e}"));
    assert!(snippet.contains("rate = \"200/min\""), "{snippet}");
    assert!(!snippet.contains("rate_per_sec"), "{snippet}");
    for (args, says) in [
        (
            vec!["--rate", "200 per minute"],
            "must be written N/s, N/min or N/h",
        ),
        (
            vec!["--rate", "5/min", "--rate-per-sec", "5"],
            "cannot be used with",
        ),
    ] {
        let out = stele_clean_env()
            .args(["keygen", "--id", "x", "--role", "read"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn keygen_prints_a_working_key() {
    let (o, e) = keygen(&[
        "--id",
        "ci-reader",
        "--role",
        "read",
        "--role",
        "export",
        "--tenant",
        "acme",
    ]);
    let all = format!("{o}\n{e}");
    let (tok, snippet) = parse_keygen(&all);
    assert!(
        !snippet.contains(&tok),
        "the snippet holds the token:\n{snippet}"
    );
    assert!(
        !snippet.contains(&tok[6..]),
        "the snippet holds the token:\n{snippet}"
    );
    assert!(
        snippet.contains(&hash(&tok)),
        "the snippet's hash is not sha256 of the token:\n{snippet}"
    );
    assert!(snippet.contains("ci-reader"), "{snippet}");
    // Another run: another token. No --tenant: all tenants.
    let (o2, e2) = keygen(&["--id", "ops", "--role", "admin"]);
    let (tok2, snippet2) = parse_keygen(&format!("{o2}\n{e2}"));
    assert_ne!(tok, tok2);
    let tenants = snippet2
        .lines()
        .find(|l| l.trim_start().starts_with("tenants"))
        .unwrap_or_else(|| panic!("no tenants in:\n{snippet2}"));
    assert!(tenants.contains("\"*\""), "{snippet2}");

    // Pasted as is, next to a key to ingest with.
    let tmp = tempfile::tempdir().unwrap();
    let ing = token("ing");
    let conf = format!(
        "[auth]\n{UNLIMITED_ROLES}\n{snippet}\n{snippet2}\n{}",
        key_toml("ing", &ing, &["ingest"], &["*"], "")
    );
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = serve(tmp.path(), &conf);
    let r = post(
        &d.addr,
        Some(&ing),
        &json!([{"actor": "t", "action": "a", "tenant": "acme"}, {"actor": "t", "action": "b", "tenant": "globex"}]),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    let evs = wait_for_count(&d.addr, "/v1/events?limit=10", &tok, 1);
    assert_eq!(evs[0]["tenant"], "acme");
    assert_eq!(get(&d.addr, "/v1/export", Some(&tok)).status, 200);
    assert_eq!(get(&d.addr, "/v1/segments", Some(&tok)).status, 403);
    assert_eq!(
        post(
            &d.addr,
            Some(&tok),
            &json!({"actor": "t", "action": "x", "tenant": "acme"})
        )
        .status,
        403
    );
    assert_eq!(get(&d.addr, "/v1/segments", Some(&tok2)).status, 200);
}

// ---------------------------------------------------------------------------
// 8. Self-audit
// ---------------------------------------------------------------------------

/// What one audit record must say.
struct Expect {
    action: &'static str,
    method: &'static str,
    path: &'static str,
    params: Value,
    http_status: u16,
    phase: &'static str,
    /// None: null or any number (not pinned down by the contract).
    result_count: Option<Value>,
}

/// An [`Expect`] as a table row: (action, method, path, params as JSON,
/// http_status, phase, result_count as JSON or "any").
type ExpectRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u16,
    &'static str,
    &'static str,
);

impl Expect {
    fn from_row(&(action, method, path, params, http_status, phase, count): &ExpectRow) -> Expect {
        Expect {
            action,
            method,
            path,
            params: serde_json::from_str(params).unwrap(),
            http_status,
            phase,
            result_count: (count != "any").then(|| serde_json::from_str(count).unwrap()),
        }
    }
}

/// The audit records of the `looker` key (read and export, tenant acme).
#[rustfmt::skip]
const LOOKER_AUDIT: &[ExpectRow] = &[
    ("stream",   "GET", "/v1/stream",                   r#"{"from_seq": "1"}"#,                   200, "start",   "any"),
    ("stream",   "GET", "/v1/stream",                   r#"{"from_seq": "1"}"#,                   200, "end",     "3"),
    ("list",     "GET", "/v1/events",                   r#"{"action": "update", "limit": "10"}"#, 200, "request", "3"),
    ("get",      "GET", "/v1/events/acme-1",            "{}",                                     200, "request", "any"),
    ("get",      "GET", "/v1/events/globex-0",          "{}",                                     404, "request", "any"),
    ("search",   "GET", "/v1/search",                   r#"{"q": "invoice"}"#,                    200, "request", "3"),
    ("stats",    "GET", "/v1/stats",                    "{}",                                     200, "request", "any"),
    ("history",  "GET", "/v1/entities/order/7/history", "{}",                                     200, "request", "3"),
    ("timeline", "GET", "/v1/users/u1/events",          "{}",                                     200, "request", "3"),
    ("export",   "GET", "/v1/export",                   "{}",                                     200, "start",   "any"),
    ("export",   "GET", "/v1/export",                   "{}",                                     200, "end",     "3"),
    ("segments", "GET", "/v1/segments",                 "{}",                                     403, "request", "any"),
    ("metrics",  "GET", "/metrics",                     "{}",                                     403, "request", "any"),
    ("list",     "GET", "/v1/events",                   r#"{"limit": "5000"}"#,                   400, "request", "any"),
];

/// The audit records of the `boss` key (admin). Admin listings count what
/// they list (segments, holds); the others are not about events (null).
#[rustfmt::skip]
const BOSS_AUDIT: &[ExpectRow] = &[
    ("segments",  "GET",    "/v1/segments",         "{}", 200, "request", "any"),
    ("retention", "GET",    "/v1/retention",        "{}", 200, "request", "null"),
    ("holds",     "GET",    "/v1/holds",            "{}", 200, "request", "any"),
    ("holds",     "POST",   "/v1/holds",            "{}", 201, "request", "null"),
    ("holds",     "DELETE", "/v1/holds/audit-hold", "{}", 204, "request", "null"),
    ("metrics",   "GET",    "/metrics",             "{}", 200, "request", "null"),
];

/// What is wrong with `r`, the audit record of `key` that `w` describes.
fn record_problems(key: &str, w: &Expect, r: &Value) -> Vec<String> {
    let m = &r["metadata"];
    let status = if w.http_status < 400 {
        "success"
    } else {
        "failure"
    };
    let mut bad = Vec::new();
    for (field, got, want) in [
        ("category", &r["category"], json!("audit_access")),
        ("actor", &r["actor"], json!(key)),
        ("source", &r["source"], json!("integration")),
        ("status", &r["status"], json!(status)),
        ("ip", &r["ip"], json!("127.0.0.1")),
        ("metadata.key_id", &m["key_id"], json!(key)),
    ] {
        if *got != want {
            bad.push(format!("{field} = {got}, want {want}"));
        }
    }
    if !r["tenant"].is_null() {
        bad.push(format!("tenant = {}, want none", r["tenant"]));
    }
    match &w.result_count {
        Some(c) if m["result_count"] != *c => {
            // Admin routes return segments, holds, plans or
            // metrics, not events: null ("not applicable").
            bad.push(format!("result_count = {}, want {c}", m["result_count"]));
        }
        None if !(m["result_count"].is_null() || m["result_count"].is_u64()) => {
            bad.push(format!(
                "result_count = {}, want a number or null",
                m["result_count"]
            ));
        }
        _ => {}
    }
    if w.action == "get"
        && w.http_status == 200
        && !(m["result_count"] == 1 || m["result_count"].is_null())
    {
        bad.push(format!(
            "result_count = {} for one event",
            m["result_count"]
        ));
    }
    if bad.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{key} {} {} {}: {}\n  {r}",
        w.action,
        w.path,
        w.phase,
        bad.join("; ")
    )]
}

/// The audit record among `recs` that `w` describes.
fn find_record(recs: &[Value], w: &Expect) -> Option<Value> {
    recs.iter()
        .find(|r| {
            let m = &r["metadata"];
            r["action"] == w.action
                && m["path"] == w.path
                && m["method"] == w.method
                && m["phase"] == w.phase
                && m["params"] == w.params
                && (m["http_status"] == w.http_status
                    // DELETE may answer 200 or 204.
                    || (w.method == "DELETE" && m["http_status"].as_u64().is_some_and(|s| (200..300).contains(&s))))
        })
        .cloned()
}

#[test]
fn self_audit_records_who_looked_at_what() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = format!("[auth]\nmetrics = \"admin\"\n{UNLIMITED_ROLES}");
    let ids = ["auditor", "ingester", "looker", "boss", "limited"];
    conf += &key_toml(
        "auditor",
        &token("auditor"),
        &["read", "export"],
        &["*"],
        "",
    );
    conf += &key_toml("ingester", &token("ingester"), &["ingest"], &["*"], "");
    conf += &key_toml(
        "looker",
        &token("looker"),
        &["read", "export"],
        &["acme"],
        "",
    );
    conf += &key_toml("boss", &token("boss"), &["admin"], &["*"], "");
    conf += &key_toml(
        "limited",
        &token("limited"),
        &["read"],
        &["*"],
        "rate_per_sec = 1\nburst = 1",
    );
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = start(tmp.path(), &conf);
    let a = d.addr.clone();
    let (auditor, ingester, looker, boss) = (
        token("auditor"),
        token("ingester"),
        token("looker"),
        token("boss"),
    );

    let mut batch = Vec::new();
    for (tenant, n) in [("acme", 3), ("globex", 2)] {
        for i in 0..n {
            batch.push(
                json!({"id": format!("{tenant}-{i}"), "action": "update", "user_id": "u1",
                "entity_type": "order", "entity_id": "7", "tenant": tenant,
                "description": "invoice review"}),
            );
        }
    }
    let r = post(&a, Some(&ingester), &Value::Array(batch));
    assert_eq!(r.status, 201, "{}", r.brief());
    wait_for_count(&a, "/v1/events?tenant=acme", &auditor, 3);
    wait_for_count(&a, "/v1/events?tenant=globex", &auditor, 2);
    wait_all_indexed(&a);

    // The stream first: its end record comes once the server notices.
    let mut st = Sse::open(&a, "/v1/stream?from_seq=1", &bearer(&looker));
    let got = st.read_until(30, |e| e.json()["id"] == "acme-2");
    assert_eq!(got.len(), 3, "{got:?}");
    drop(st);

    let expect_ok = |path: &str, status: u16| {
        let r = get(&a, path, Some(&looker));
        assert_eq!(r.status, status, "{path}: {}", r.brief());
        r
    };
    expect_ok("/v1/events?action=update&limit=10", 200);
    expect_ok("/v1/events/acme-1", 200);
    expect_ok("/v1/events/globex-0", 404);
    expect_ok("/v1/search?q=invoice", 200);
    expect_ok("/v1/stats", 200);
    expect_ok("/v1/entities/order/7/history", 200);
    expect_ok("/v1/users/u1/events", 200);
    let r = expect_ok("/v1/export", 200);
    assert_eq!(
        r.body.lines().filter(|l| !l.is_empty()).count(),
        3,
        "{}",
        r.body
    );
    expect_ok("/v1/segments", 403);
    expect_ok("/metrics", 403);
    expect_ok("/v1/events?limit=5000", 400);

    for path in ["/v1/segments", "/v1/retention", "/v1/holds", "/metrics"] {
        assert_eq!(get(&a, path, Some(&boss)).status, 200, "{path}");
    }
    let r = send_json(
        &a,
        "POST",
        "/v1/holds",
        Some(&boss),
        &json!({"name": "audit-hold"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    let boss_auth = format!("Bearer {boss}");
    let r = request(
        &a,
        "DELETE",
        "/v1/holds/audit-hold",
        &[("Authorization", &boss_auth)],
        b"",
    );
    assert!((200..300).contains(&r.status), "{}", r.brief());

    // Not audited: 401, 429 and ingest.
    assert_eq!(
        get(&a, "/v1/users/unauth-marker/events", Some(&token("nobody"))).status,
        401
    );
    assert_eq!(get(&a, "/metrics", None).status, 401);
    let limited = token("limited");
    assert_eq!(
        get(&a, "/v1/users/limited-ok/events", Some(&limited)).status,
        200
    );
    assert_eq!(
        get(&a, "/v1/users/limited-429/events", Some(&limited)).status,
        429
    );

    let want: Vec<Expect> = LOOKER_AUDIT.iter().map(Expect::from_row).collect();
    let want_boss: Vec<Expect> = BOSS_AUDIT.iter().map(Expect::from_row).collect();
    let audit_of = |key: &str| -> Vec<Value> {
        get(
            &a,
            &format!("/v1/events?category=audit_access&actor={key}&limit=200"),
            Some(&auditor),
        )
        .events()
    };
    let mut failures = Vec::new();
    for (key, wants) in [("looker", &want), ("boss", &want_boss)] {
        let deadline = Instant::now() + Duration::from_secs(40);
        let (recs, missing) = loop {
            let recs = audit_of(key);
            let missing: Vec<String> = wants
                .iter()
                .filter(|w| find_record(&recs, w).is_none())
                .map(|w| {
                    format!(
                        "{} {} {} phase {} status {} params {}",
                        w.action, w.method, w.path, w.phase, w.http_status, w.params
                    )
                })
                .collect();
            if missing.is_empty() || Instant::now() > deadline {
                break (recs, missing);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if !missing.is_empty() {
            failures.push(format!(
                "{key}: no audit record for:\n  {}\nrecords found:\n  {}",
                missing.join("\n  "),
                recs.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
        for w in wants.iter() {
            let Some(r) = find_record(&recs, w) else {
                continue;
            };
            failures.extend(record_problems(key, w, &r));
        }
        // Start before end.
        for action in ["stream", "export"] {
            let seq_of = |phase| {
                recs.iter()
                    .find(|r| r["action"] == action && r["metadata"]["phase"] == phase)
                    .and_then(|r| r["seq"].as_u64())
            };
            if let (Some(s), Some(e)) = (seq_of("start"), seq_of("end")) {
                if s >= e {
                    failures.push(format!("{key} {action}: start at seq {s}, end at {e}"));
                }
            }
        }
    }

    // What must not be audited, and the tokens nowhere in the log.
    poll(20, "the limited key's successful request audited", || {
        (!audit_of("limited").is_empty()).then_some(())
    });
    let r = get(&a, "/v1/export", Some(&auditor));
    assert_eq!(r.status, 200, "{}", r.brief());
    let stored: Vec<Value> = r
        .body
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for e in stored.iter().filter(|e| e["category"] == "audit_access") {
        let path = e["metadata"]["path"].as_str().unwrap_or("");
        if path.contains("unauth-marker") || path.contains("limited-429") {
            failures.push(format!("a 401 or 429 was audited: {e}"));
        }
        if e["action"] == "ingest" || e["actor"] == "ingester" {
            failures.push(format!("an ingest was audited: {e}"));
        }
        if e["metadata"]["path"] == "/metrics" && e["metadata"]["http_status"] == 401 {
            failures.push(format!("a 401 was audited: {e}"));
        }
    }
    for id in ids {
        let t = token(id);
        if r.body.contains(&t) || r.body.contains(&t[6..]) {
            failures.push(format!("{id}'s token is stored in the log"));
        }
        if d.log_text().contains(&t[6..]) {
            failures.push(format!("{id}'s token is in the daemon's stderr"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------
// Ids per tenant, provenance, credentials in URLs
// ---------------------------------------------------------------------------

/// The problem kind and `tenants` of an answer.
fn ambiguous_tenants(r: &Resp) -> Value {
    assert_eq!(
        (r.status, r.kind()),
        (409, "ambiguous-id".into()),
        "{}",
        r.brief()
    );
    assert_eq!(r.json()["field"], "tenant", "{}", r.brief());
    r.json()["tenants"].clone()
}

/// Ids are per tenant: tenant B can neither probe tenant A's ids (409 vs 201)
/// nor squat them in advance; each key reads its own tenant's event under
/// the shared id, and a key that sees several tenants is told the id is
/// ambiguous. Checked both while the events are only in the daemon's
/// reservations and once the key index has them.
#[test]
fn ids_are_per_tenant_no_probe_no_squat_and_ambiguous_lookups_are_409() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = format!("[auth]\n{UNLIMITED_ROLES}");
    conf += &key_toml(
        "ingest-a",
        &token("ingest-a"),
        &["ingest", "read"],
        &["acme"],
        "",
    );
    conf += &key_toml(
        "ingest-b",
        &token("ingest-b"),
        &["ingest", "read"],
        &["globex"],
        "",
    );
    conf += &key_toml("both", &token("both"), &["read"], &["acme", "globex"], "");
    conf += &key_toml("all", &token("all"), &["ingest", "read"], &["*"], "");
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = serve(tmp.path(), &conf);
    let a = d.addr.clone();
    let (ta, tb, both, all) = (
        token("ingest-a"),
        token("ingest-b"),
        token("both"),
        token("all"),
    );
    let ev = |id: &str, what: &str| json!({"id": id, "action": what, "actor": "u"});

    // A stores inv-1; B posting inv-1 (other content) stores B's own event:
    // no 409 telling B that A has it.
    let r = post(&a, Some(&ta), &ev("inv-1", "paid"));
    assert_eq!(r.status, 201, "{}", r.brief());
    let r = post(&a, Some(&tb), &ev("inv-1", "refunded"));
    assert_eq!(r.status, 201, "the probe learned something: {}", r.brief());
    // Each tenant's retry is its own idempotent replay, its own conflict.
    let r = post(&a, Some(&tb), &ev("inv-1", "refunded"));
    assert_eq!(
        (r.status, r.json()["replayed"].clone()),
        (200, json!(true)),
        "{}",
        r.brief()
    );
    let r = post(&a, Some(&ta), &ev("inv-1", "refunded"));
    assert_eq!(
        (r.status, r.kind()),
        (409, "id-conflict".into()),
        "{}",
        r.brief()
    );
    // B squats inv-2 before A uses it: A's post is still a 201 for A.
    let r = post(&a, Some(&tb), &ev("inv-2", "squat"));
    assert_eq!(r.status, 201, "{}", r.brief());
    let r = post(&a, Some(&ta), &ev("inv-2", "created"));
    assert_eq!(r.status, 201, "the squat blocked tenant A: {}", r.brief());
    // An all-tenant key writes inv-1 without a tenant: a namespace of its own.
    let r = post(&a, Some(&all), &ev("inv-1", "orphan"));
    assert_eq!(r.status, 201, "{}", r.brief());
    let r = post(&a, Some(&ta), &ev("inv-3", "only-a"));
    assert_eq!(r.status, 201, "{}", r.brief());

    let check = |a: &str, when: &str| {
        let read = |path: &str, key: &str| get(a, path, Some(key));
        for (key, key_id, tenant, inv1, inv2) in [
            (&ta, "ingest-a", "acme", "paid", "created"),
            (&tb, "ingest-b", "globex", "refunded", "squat"),
        ] {
            for (id, action) in [("inv-1", inv1), ("inv-2", inv2)] {
                let r = read(&format!("/v1/events/{id}"), key);
                assert_eq!(r.status, 200, "{when}: {tenant} {id}: {}", r.brief());
                let v = r.json();
                assert_eq!(
                    (v["tenant"].as_str(), v["action"].as_str()),
                    (Some(tenant), Some(action)),
                    "{when}: {v}"
                );
                assert_eq!(v["ingested_by"], key_id, "{when}: {v}");
                assert_eq!(v["client_addr"], "127.0.0.1", "{when}: {v}");
            }
        }
        // The other tenant's event is as absent as one never stored.
        let never = read("/v1/events/no-such-id", &tb);
        for r in [
            read("/v1/events/inv-3", &tb),
            read("/v1/events/inv-1?tenant=acme", &tb),
            read("/v1/events/inv-1?tenant=", &tb),
        ] {
            assert_eq!(
                (r.status, r.kind()),
                (404, "not-found".into()),
                "{when}: {}",
                r.brief()
            );
        }
        assert_eq!(never.status, 404);
        // Several tenants' events under one id: the caller names one.
        assert_eq!(
            ambiguous_tenants(&read("/v1/events/inv-1", &all)),
            json!([null, "acme", "globex"]),
            "{when}"
        );
        assert_eq!(
            ambiguous_tenants(&read("/v1/events/inv-1", &both)),
            json!(["acme", "globex"]),
            "{when}"
        );
        assert_eq!(
            ambiguous_tenants(&read("/v1/events/inv-2", &all)),
            json!(["acme", "globex"]),
            "{when}"
        );
        for (path, key, action) in [
            ("/v1/events/inv-1?tenant=acme", &all, "paid"),
            ("/v1/events/inv-1?tenant=globex", &both, "refunded"),
            ("/v1/events/inv-1?tenant=", &all, "orphan"),
            ("/v1/events/inv-3", &all, "only-a"),
            ("/v1/events/inv-3", &both, "only-a"),
        ] {
            let r = read(path, key);
            assert_eq!(r.status, 200, "{when}: {path}: {}", r.brief());
            assert_eq!(r.json()["action"], action, "{when}: {path}");
        }
        let r = read("/v1/events/inv-1?tenant=acme&tenant=globex", &all);
        assert_eq!(
            (r.status, r.kind()),
            (400, "invalid-parameter".into()),
            "{}",
            r.brief()
        );
        let r = read("/v1/events/inv-1?limit=1", &all);
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (400, json!("limit")),
            "{}",
            r.brief()
        );
    };
    check(&a, "right after the posts");
    // A restart empties the reservations: the key index answers alone.
    wait_for_count(&a, "/v1/events", &both, 5);
    drop(d);
    let d = serve(tmp.path(), &conf);
    let a = d.addr.clone();
    wait_for_count(&a, "/v1/events", &both, 5);
    check(&a, "after a restart");
    let r = post(&a, Some(&tb), &ev("inv-3", "late"));
    assert_eq!(r.status, 201, "{}", r.brief());
    let r = post(&a, Some(&ta), &ev("inv-3", "only-a"));
    assert_eq!(
        (r.status, r.json()["replayed"].clone()),
        (200, json!(true)),
        "{}",
        r.brief()
    );
    let r = get(&a, "/v1/events/inv-1", Some(&all));
    assert_eq!(ambiguous_tenants(&r), json!([null, "acme", "globex"]));
    let r = get(&a, "/v1/events/inv-2", Some(&ta));
    assert_eq!(r.json()["action"], "created", "{}", r.brief());
    let r = get(&a, "/v1/events/inv-2", Some(&tb));
    assert_eq!(r.json()["action"], "squat", "{}", r.brief());

    // Stele's own records say so: audit events are ingested by `stele`.
    let recs = poll(20, "an audit record", || {
        let r = get(&a, "/v1/events?category=audit_access&limit=1", Some(&all));
        r.events().first().cloned()
    });
    assert_eq!(recs["ingested_by"], "stele", "{recs}");
    assert!(recs.get("client_addr").is_none(), "{recs}");
}

/// A credential in the query string is refused before anything records the
/// request (no audit event, no log line holds it), on every path and with or
/// without a valid key; so is a request with two `Authorization` headers.
#[test]
fn credentials_in_the_url_and_double_authorization_are_refused_and_never_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = format!("[auth]\n{UNLIMITED_ROLES}");
    conf += &key_toml(
        "reader",
        &token("reader"),
        &["read", "export", "ingest"],
        &["*"],
        "",
    );
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = start(tmp.path(), &conf);
    let a = d.addr.clone();
    let reader = token("reader");
    let secret = token("leaked");
    let cases = [
        format!("/v1/events?access_token={secret}"),
        format!("/v1/events?limit=5&ACCESS_TOKEN={secret}"),
        format!("/v1/search?q=x&access%5Ftoken={secret}"),
        format!("/v1/events/evt-1?token={secret}"),
        format!("/v1/export?api-key={secret}"),
        format!("/v1/stats?apikey={secret}"),
        format!("/v1/users/u/events?Key={secret}"),
        format!("/v1/segments?password={secret}"),
        format!("/healthz?secret={secret}"),
        format!("/no/such/route?authorization=Bearer+{secret}"),
    ];
    for path in &cases {
        for key in [Some(reader.as_str()), None] {
            let r = get(&a, path, key);
            assert_eq!(
                (r.status, r.kind()),
                (400, "credentials-in-url".into()),
                "{path}: {}",
                r.brief()
            );
            assert!(!r.body.contains(&secret[6..]), "{path}: {}", r.brief());
        }
    }
    let r = send_json(
        &a,
        "POST",
        &format!("/v1/events?token={secret}"),
        Some(&reader),
        &json!({"action": "x", "actor": "y"}),
    );
    assert_eq!(
        (r.status, r.kind()),
        (400, "credentials-in-url".into()),
        "{}",
        r.brief()
    );

    // Two Authorization headers: refused, whichever comes first.
    let good = format!("Bearer {reader}");
    let other = format!("Bearer {}", token("other"));
    for pair in [[&good, &other], [&other, &good], [&good, &good]] {
        let r = request(
            &a,
            "GET",
            "/v1/events?limit=1",
            &[
                ("Authorization", pair[0].as_str()),
                ("Authorization", pair[1].as_str()),
            ],
            b"",
        );
        assert_eq!(
            (r.status, r.kind()),
            (400, "duplicate-authorization".into()),
            "{}",
            r.brief()
        );
    }

    // An ordinary audited read after them: once its record is in, the
    // refused ones would be too (one writer, in order).
    assert_eq!(
        get(&a, "/v1/users/after-marker/events", Some(&reader)).status,
        200
    );
    poll(20, "the marker's audit record", || {
        let r = get(
            &a,
            "/v1/events?category=audit_access&limit=100",
            Some(&reader),
        );
        r.events()
            .iter()
            .any(|e| e["metadata"]["path"] == "/v1/users/after-marker/events")
            .then_some(())
    });
    // (An export stops at the indexer's checkpoint: wait until it has the marker.)
    let r = poll(20, "the marker in the export", || {
        let r = get(&a, "/v1/export", Some(&reader));
        (r.status == 200 && r.body.contains("after-marker")).then_some(r)
    });
    let audited: Vec<Value> = r
        .body
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(audited.iter().all(|e| e["category"] == "audit_access"));
    assert!(
        !r.body.contains(&secret[6..]),
        "a credential was stored: {}",
        r.body
    );
    assert!(
        !audited.iter().any(|e| e["metadata"]["http_status"] == 400),
        "a refused request was recorded: {audited:?}"
    );
    assert!(
        !d.log_text().contains(&secret[6..]),
        "a credential was logged"
    );
}
