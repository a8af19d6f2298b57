//! Roles: every route of the route table against every kind of caller (no key,
//! each role, admin), so a route that needs a role answers 403 to the others.

use super::*;

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
