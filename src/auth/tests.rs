//! Access control's unit tests.

use super::*;

fn key(id: &str, token: &str, roles: &[Role], tenants: &[&str]) -> KeyConfig {
    KeyConfig {
        id: id.into(),
        hash: hash_line(token),
        roles: roles.to_vec(),
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        rate_per_sec: None,
        rate: None,
        burst: None,
        streams_max: None,
    }
}

#[test]
fn tokens_are_well_formed_and_hash_to_their_line() {
    let t = generate_token().unwrap();
    assert!(well_formed(&t), "{t}");
    assert_ne!(t, generate_token().unwrap());
    assert!(parse_hash(&hash_line(&t)).is_some());
    for bad in [
        "",
        "stele_",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        &format!("stele_{}", "a".repeat(42)),
        &format!("stele_{}", "a".repeat(44)),
        &format!("stele_{}=", "a".repeat(42)),
        &format!("STELE_{}", "a".repeat(43)),
    ] {
        assert!(!well_formed(bad), "{bad}");
    }
    assert!(parse_hash("sha256:ABCD").is_none());
    assert!(parse_hash(&hash_line("x").to_uppercase()).is_none());
}

#[test]
fn authenticate_finds_the_key_and_names_each_failure() {
    let (t1, t2) = (generate_token().unwrap(), generate_token().unwrap());
    let cfg = AuthConfig {
        keys: vec![
            key("a", &t1, &[Role::Read], &["acme"]),
            key("b", &t2, &[Role::Admin], &["*"]),
        ],
        ..AuthConfig::default()
    };
    cfg.validate().unwrap();
    let ring = Keyring::new(&cfg, None);
    let auth = |h: &str| ring.authenticate(Some(h.as_bytes())).map(|k| k.id.clone());
    assert_eq!(auth(&format!("Bearer {t1}")), Ok("a".into()));
    assert_eq!(auth(&format!("bearer  {t2} ")), Ok("b".into()));
    assert_eq!(ring.authenticate(None).unwrap_err(), AuthError::Missing);
    assert_eq!(auth(&format!("Basic {t1}")), Err(AuthError::NotBearer));
    assert_eq!(auth(&t1), Err(AuthError::NotBearer));
    assert_eq!(auth("Bearer abc"), Err(AuthError::Malformed));
    let other = generate_token().unwrap();
    assert_eq!(auth(&format!("Bearer {other}")), Err(AuthError::Unknown));
    let long = format!("Bearer {}", "a".repeat(AUTHORIZATION_BYTES_MAX));
    assert_eq!(auth(&long), Err(AuthError::Oversized));
    let k = ring
        .authenticate(Some(format!("Bearer {t1}").as_bytes()))
        .unwrap();
    assert!(k.has(Role::Read) && !k.has(Role::Ingest));
    assert!(k.scope.allows(Some("acme")));
    assert!(!k.scope.allows(Some("other")) && !k.scope.allows(None));
}

#[test]
fn validation_names_the_key_and_the_fix() {
    let t = generate_token().unwrap();
    let bad = |k: KeyConfig| {
        let cfg = AuthConfig {
            keys: vec![k],
            ..AuthConfig::default()
        };
        cfg.validate().unwrap_err()
    };
    let (k, m) = bad(key("a b", &t, &[Role::Read], &["*"]));
    assert_eq!(k, "auth.keys[0].id", "{m}");
    let (k, m) = bad(key("a", &t, &[Role::Admin], &["acme"]));
    assert_eq!(k, "auth.keys[0].tenants");
    assert!(m.contains("admin"), "{m}");
    let (k, _) = bad(key("a", &t, &[], &["*"]));
    assert_eq!(k, "auth.keys[0].roles");
    let (k, _) = bad(key("a", &t, &[Role::Read], &["*", "acme"]));
    assert_eq!(k, "auth.keys[0].tenants");
    let mut h = key("a", &t, &[Role::Read], &["*"]);
    h.hash = t.clone();
    let (k, m) = bad(h);
    assert_eq!(k, "auth.keys[0].hash");
    assert!(
        !m.contains(&t[6..]),
        "the message repeats what looks like a token: {m}"
    );
    let cfg = AuthConfig {
        keys: vec![
            key("a", &t, &[Role::Read], &["*"]),
            key("a", &generate_token().unwrap(), &[Role::Read], &["*"]),
        ],
        ..AuthConfig::default()
    };
    assert_eq!(cfg.validate().unwrap_err().0, "auth.keys[1].id");
    // The names events are stamped with when no key posted them.
    for id in ["cli", "loopback", "stele", "Stele"] {
        let (k, m) = bad(key(id, &t, &[Role::Ingest], &["*"]));
        assert_eq!(k, "auth.keys[0].id");
        assert!(m.contains("ingested_by"), "{m}");
    }
}

#[test]
fn secure_by_default_refuses_open_non_loopback() {
    let open = AuthConfig::default();
    assert!(open.check_listen("127.0.0.1:7070".parse().unwrap()).is_ok());
    assert!(open.check_listen("[::1]:7070".parse().unwrap()).is_ok());
    let e = open
        .check_listen("0.0.0.0:7070".parse().unwrap())
        .unwrap_err();
    assert!(
        e.contains("stele keygen") && e.contains("127.0.0.1:7070"),
        "{e}"
    );
    let keyed = AuthConfig {
        keys: vec![key("a", &generate_token().unwrap(), &[Role::Read], &["*"])],
        ..AuthConfig::default()
    };
    assert!(keyed.check_listen("0.0.0.0:7070".parse().unwrap()).is_ok());
}

#[test]
fn buckets_limit_and_survive_an_unchanged_reload() {
    let t = generate_token().unwrap();
    let mut k = key("a", &t, &[Role::Read, Role::Ingest], &["*"]);
    k.rate_per_sec = Some(1);
    k.burst = Some(2);
    let cfg = AuthConfig {
        keys: vec![k],
        ..AuthConfig::default()
    };
    let ring = Keyring::new(&cfg, None);
    let key = ring
        .authenticate(Some(format!("Bearer {t}").as_bytes()))
        .unwrap();
    assert!(key.check_rate(Role::Read, "list").is_ok());
    assert!(key.check_rate(Role::Ingest, "ingest").is_ok());
    let limited = key.check_rate(Role::Read, "list").unwrap_err();
    assert!(limited.retry_after_secs() >= 1);
    assert_eq!(limited.rate.count, 1);
    let again = Keyring::new(&cfg, Some(&ring));
    let same = again
        .authenticate(Some(format!("Bearer {t}").as_bytes()))
        .unwrap();
    assert!(Arc::ptr_eq(&key, &same));
    assert!(
        same.check_rate(Role::Read, "list").is_err(),
        "the bucket was reset by a reload"
    );
}

#[test]
fn role_limits_apply_per_role_and_streams_per_key() {
    let t = generate_token().unwrap();
    let mut k = key("a", &t, &[Role::Read, Role::Export], &["*"]);
    k.streams_max = Some(1);
    let cfg = AuthConfig {
        roles: RoleLimits {
            export: RateLimit::new(1, 1),
            read: RateLimit::new(0, 0),
            ..RoleLimits::default()
        },
        keys: vec![k],
        ..AuthConfig::default()
    };
    cfg.validate().unwrap();
    let ring = Keyring::new(&cfg, None);
    let key = ring
        .authenticate(Some(format!("Bearer {t}").as_bytes()))
        .unwrap();
    assert!(key.check_rate(Role::Export, "export").is_ok());
    assert!(key.check_rate(Role::Export, "export").is_err());
    for _ in 0..100 {
        assert!(
            key.check_rate(Role::Read, "list").is_ok(),
            "read is unlimited"
        );
    }
    let slot = key.open_stream().expect("one stream");
    assert!(key.open_stream().is_none());
    drop(slot);
    assert!(key.open_stream().is_some());
}

#[test]
fn route_groups_have_their_own_buckets() {
    let t = generate_token().unwrap();
    let mut routes = BTreeMap::new();
    routes.insert(
        "stats".to_string(),
        RateLimit {
            rate: Some(Rate::parse("2/min").unwrap()),
            ..RateLimit::default()
        },
    );
    let cfg = AuthConfig {
        roles: RoleLimits {
            read: RateLimit {
                rate: Some(Rate::parse("3/min").unwrap()),
                ..RateLimit::default()
            },
            ..RoleLimits::default()
        },
        routes,
        keys: vec![key("a", &t, &[Role::Read], &["*"])],
        ..AuthConfig::default()
    };
    cfg.validate().unwrap();
    let ring = Keyring::new(&cfg, None);
    let key = ring
        .authenticate(Some(format!("Bearer {t}").as_bytes()))
        .unwrap();
    for _ in 0..2 {
        assert!(key.check_rate(Role::Read, "stats").is_ok());
    }
    let limited = key.check_rate(Role::Read, "stats").unwrap_err();
    assert_eq!(limited.rate.in_words(), "2 requests a minute");
    assert!((20..=30).contains(&limited.retry_after_secs()));
    for _ in 0..3 {
        assert!(
            key.check_rate(Role::Read, "list").is_ok(),
            "listings: own bucket"
        );
    }
    assert!(key.check_rate(Role::Read, "search").is_err());
    let mut bad = cfg.clone();
    bad.routes.insert("nope".into(), RateLimit::default());
    assert!(bad
        .validate()
        .unwrap_err()
        .1
        .contains("unknown route \"nope\""));
}

#[test]
fn route_groups_name_real_routes() {
    for g in ROUTE_GROUPS {
        assert!(
            crate::server::routes::names().contains(&g),
            "{g} is not a route name"
        );
    }
}

#[test]
fn claims_map_to_roles_and_tenants() {
    use jwt::{claim_roles, claim_tenants};
    use serde_json::json;
    let none = BTreeMap::new();
    assert_eq!(
        claim_roles(Some(&json!(["read", "ingest", "read", "other"])), &none),
        vec![Role::Ingest, Role::Read]
    );
    assert_eq!(
        claim_roles(Some(&json!("openid read export")), &none),
        vec![Role::Read, Role::Export]
    );
    let mut names = BTreeMap::new();
    names.insert("activities:read".to_string(), Role::Read);
    assert_eq!(
        claim_roles(Some(&json!("activities:read profile")), &names),
        vec![Role::Read]
    );
    assert!(claim_roles(Some(&json!(7)), &none).is_empty());
    assert!(claim_roles(None, &none).is_empty());
    assert_eq!(
        claim_tenants(Some(&json!("acme"))),
        Some(vec!["acme".into()])
    );
    assert_eq!(
        claim_tenants(Some(&json!(["b", "a", "b"]))),
        Some(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        claim_tenants(Some(&json!(["a", "*"]))),
        Some(vec!["*".into()])
    );
    for bad in [json!([]), json!(""), json!([1]), json!({"a": 1})] {
        assert_eq!(claim_tenants(Some(&bad)), None, "{bad}");
    }
    assert_eq!(claim_tenants(None), None);
}

fn hs_config(secret: &str) -> AuthConfig {
    AuthConfig {
        jwt: Some(jwt::JwtConfig {
            secret: Some(secret.into()),
            audience: Some(jwt::OneOrMany::One("stele".into())),
            ..jwt::JwtConfig::default()
        }),
        ..AuthConfig::default()
    }
}

fn hs_token(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn jwts_become_identities_whose_buckets_persist() {
    let secret = "0123456789abcdef0123456789abcdef";
    let cfg = hs_config(secret);
    cfg.validate().unwrap();
    assert!(cfg.check_listen("0.0.0.0:1".parse().unwrap()).is_ok());
    let ring = Keyring::new(&cfg, None);
    assert!(ring.enabled());
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = serde_json::json!({
        "sub": "svc-1", "aud": "stele", "exp": exp, "roles": ["read"], "tenants": "acme"
    });
    let t = hs_token(secret, good.clone());
    let k = ring
        .authenticate(Some(format!("Bearer {t}").as_bytes()))
        .unwrap();
    assert_eq!(k.id, "svc-1");
    assert!(k.has(Role::Read) && !k.has(Role::Ingest));
    assert_eq!(k.scope, Scope::Tenants(vec!["acme".to_string()].into()));
    let again = Keyring::new(&cfg, Some(&ring));
    let same = again
        .authenticate(Some(format!("Bearer {t}").as_bytes()))
        .unwrap();
    assert!(
        Arc::ptr_eq(&k, &same),
        "one identity per sub, across reloads"
    );
    let auth = |claims: serde_json::Value, key: &str| {
        ring.authenticate(Some(format!("Bearer {}", hs_token(key, claims)).as_bytes()))
            .unwrap_err()
    };
    let mut c = good.clone();
    c["exp"] = (exp - 3600).into();
    assert_eq!(auth(c, secret), AuthError::JwtExpired);
    let mut c = good.clone();
    c["aud"] = "other".into();
    assert_eq!(auth(c, secret), AuthError::JwtAudience);
    assert_eq!(
        auth(good.clone(), "another secret of 32 bytes or more!"),
        AuthError::JwtSignature
    );
    let mut c = good.clone();
    c["roles"] = serde_json::json!(["admin"]);
    assert!(matches!(auth(c, secret), AuthError::JwtClaim(_)));
    let mut c = good.clone();
    c["sub"] = "has a space".into();
    assert!(matches!(auth(c, secret), AuthError::JwtClaim(_)));
    // Not a JWT: looked up as an API key.
    assert_eq!(
        ring.authenticate(Some(b"Bearer a.b.c")).unwrap_err(),
        AuthError::Malformed
    );
    // A JWT to a server without [auth.jwt].
    let plain = Keyring::new(&AuthConfig::default(), None);
    assert_eq!(
        plain
            .authenticate(Some(format!("Bearer {t}").as_bytes()))
            .unwrap_err(),
        AuthError::JwtNotAccepted
    );
}

#[test]
fn bad_jwt_configuration_is_named() {
    let msg = |cfg: AuthConfig| cfg.validate().unwrap_err();
    let (k, m) = msg(hs_config(""));
    assert_eq!(k, "auth.jwt.secret");
    assert!(m.contains("empty"), "{m}");
    assert!(msg(hs_config("short")).1.contains("at least 32"));
    let mut c = hs_config("0123456789abcdef0123456789abcdef");
    c.jwt.as_mut().unwrap().keys.push(jwt::JwtKeyConfig {
        kid: None,
        alg: "RS257".into(),
        pem: Some("x".into()),
        pem_file: None,
    });
    let (k, m) = msg(c);
    assert_eq!(k, "auth.jwt.keys[0].alg");
    assert!(m.contains("unknown algorithm \"RS257\""), "{m}");
    let c = AuthConfig {
        jwt: Some(jwt::JwtConfig {
            jwks_file: Some("/nonexistent/jwks.json".into()),
            ..jwt::JwtConfig::default()
        }),
        ..AuthConfig::default()
    };
    let (k, m) = msg(c);
    assert_eq!(k, "auth.jwt.jwks_file");
    assert!(m.contains("cannot read /nonexistent/jwks.json"), "{m}");
    let c = AuthConfig {
        jwt: Some(jwt::JwtConfig::default()),
        ..AuthConfig::default()
    };
    assert!(msg(c).1.contains("no key to verify tokens with"));
}
