//! Access control's unit tests.

use super::*;

fn key(id: &str, token: &str, roles: &[Role], tenants: &[&str]) -> KeyConfig {
    KeyConfig {
        id: id.into(),
        hash: hash_line(token),
        roles: roles.to_vec(),
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        rate_per_sec: None,
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
    assert!(key.check_rate(Role::Read).is_ok());
    assert!(key.check_rate(Role::Ingest).is_ok());
    let limited = key.check_rate(Role::Read).unwrap_err();
    assert!(limited.retry_after_secs() >= 1);
    assert_eq!(limited.rate_per_sec, 1);
    let again = Keyring::new(&cfg, Some(&ring));
    let same = again
        .authenticate(Some(format!("Bearer {t}").as_bytes()))
        .unwrap();
    assert!(Arc::ptr_eq(&key, &same));
    assert!(
        same.check_rate(Role::Read).is_err(),
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
    assert!(key.check_rate(Role::Export).is_ok());
    assert!(key.check_rate(Role::Export).is_err());
    for _ in 0..100 {
        assert!(key.check_rate(Role::Read).is_ok(), "read is unlimited");
    }
    let slot = key.open_stream().expect("one stream");
    assert!(key.open_stream().is_none());
    drop(slot);
    assert!(key.open_stream().is_some());
}
