//! Bad credentials: no `Authorization`, another scheme, a malformed or
//! unknown token are 401 and reveal nothing; a credential in the query
//! string or two `Authorization` headers is refused before anything (audit
//! record, log line) records the request.

use super::*;

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
