//! JWT bearer tokens beside API keys (`[auth.jwt]`) and rates written as
//! `N/s`, `N/min`, `N/h`: accepted and refused tokens with their precise
//! 401s and metric reasons, tenant and role claims enforced as for keys, a
//! per-minute limit, route-group buckets, reloads and bad configurations.
//!
//! In-process (`support::inproc`) except `stele check-config`.

use crate::support::http::{parse_reply, read_response, request_bytes, Reply};
use crate::support::inproc::Server;
use crate::support::stele_clean_env;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};

const SECRET: &str = "test-secret-of-at-least-32-bytes-0123456789";
const ISS: &str = "https://idp.example.test/";
const AUD: &str = "stele";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims valid for ten minutes, overridden by `extra`.
fn claims(sub: &str, roles: &[&str], tenants: Value, extra: Value) -> Value {
    let mut c = json!({
        "sub": sub, "iss": ISS, "aud": AUD, "iat": now(), "exp": now() + 600,
        "roles": roles, "tenants": tenants,
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn hs(secret: &str, c: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        c,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An Ed25519 key pair: (private key for signing, public key PEM, raw x).
fn ed25519() -> (EncodingKey, String, Vec<u8>) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let enc = EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).unwrap();
    (enc, kp.public_key_pem(), kp.public_key_raw().to_vec())
}

fn ed(key: &EncodingKey, kid: Option<&str>, c: &Value) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = kid.map(str::to_string);
    encode(&h, c, key).unwrap()
}

/// `[auth.jwt]` with the HS256 secret, issuer and audience; `extra` lines
/// are appended to the file.
fn hs_conf(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("stele.toml");
    std::fs::write(
        &p,
        format!(
            "[auth.jwt]\nsecret = \"{SECRET}\"\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\n\
             leeway_secs = 5\n{extra}"
        ),
    )
    .unwrap();
    p
}

fn call(s: &Server, method: &str, path: &str, token: &str, body: Option<&Value>) -> Reply {
    let auth = format!("Bearer {token}");
    let mut h = vec![("Authorization", auth.as_str())];
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        h.push(("Content-Type", "application/json"));
    }
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.write_all(&request_bytes(method, path, &h, text.as_bytes()))
        .unwrap();
    parse_reply(&read_response(&mut c)).expect("a whole response")
}

fn get(s: &Server, path: &str, token: &str) -> Reply {
    call(s, "GET", path, token, None)
}

/// A 401 whose detail contains `says` and never the token.
fn refused(s: &Server, token: &str, says: &str) {
    let r = get(s, "/v1/events", token);
    let body = r.text();
    assert_eq!(r.status, 401, "{says}: {body}");
    let detail = r.json()["detail"].as_str().unwrap_or("").to_string();
    assert!(detail.contains(says), "wanted {says:?} in {detail:?}");
    assert!(!body.contains(token), "the token is echoed: {body}");
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!body.contains(part), "a token part is echoed: {body}");
    }
}

fn auth_failures(s: &Server, reason: &str) -> u64 {
    let (_, _, _) = s.get("/healthz");
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.write_all(&request_bytes("GET", "/metrics", &[], b""))
        .unwrap();
    let text = parse_reply(&read_response(&mut c)).unwrap().text();
    let want = format!("stele_auth_failures_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .unwrap_or_else(|| panic!("no {want} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn hs256_tokens_are_accepted_and_every_refusal_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with_file(&tmp.path().join("data"), &hs_conf(tmp.path(), ""));
    let good = claims("svc-a", &["read", "ingest"], json!("*"), json!({}));
    let tok = hs(SECRET, &good);
    let r = call(
        &s,
        "POST",
        "/v1/events",
        &tok,
        Some(&json!({"actor": "t", "id": "hs-1", "action": "login", "tenant": "acme"})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = get(&s, "/v1/events/hs-1", &tok);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ingested_by"], json!("svc-a"), "the sub is the id");

    let with = |extra: Value| hs(SECRET, &claims("svc-a", &["read"], json!("*"), extra));
    refused(&s, &with(json!({"exp": now() - 60})), "expired");
    refused(&s, &with(json!({"nbf": now() + 600})), "not valid yet");
    refused(&s, &with(json!({"aud": "someone-else"})), "audience");
    refused(&s, &with(json!({"iss": "https://evil.test/"})), "issuer");
    refused(
        &s,
        &hs("another-secret-of-at-least-32-bytes-xyz", &good),
        "signature does not verify",
    );
    // The payload altered, the signature kept.
    let parts: Vec<&str> = tok.split('.').collect();
    let mut forged = good.clone();
    forged["roles"] = json!(["admin"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged.to_string().as_bytes()),
        parts[2]
    );
    refused(&s, &tampered, "signature does not verify");
    // Unsigned.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    refused(&s, &none, "unsigned");
    // An EdDSA (asymmetric) token to a server holding only an HS secret.
    let (k, _, _) = ed25519();
    refused(&s, &ed(&k, None, &good), "algorithm");
    // An RS256 header: refused before any signature is looked at.
    let rs = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(good.to_string().as_bytes()),
        b64(&[7u8; 256])
    );
    refused(&s, &rs, "algorithm");
    // A claim Stele needs is missing.
    let mut no_tenant = good.clone();
    no_tenant.as_object_mut().unwrap().remove("tenants");
    refused(&s, &hs(SECRET, &no_tenant), "tenants claim");
    // A JWT-looking header that is not JSON: an API key lookup says
    // "not a Stele API key".
    refused(&s, "abc.def.ghi", "not a Stele API key");

    assert_eq!(auth_failures(&s, "jwt_expired"), 1);
    assert_eq!(auth_failures(&s, "jwt_not_yet_valid"), 1);
    assert_eq!(auth_failures(&s, "jwt_audience"), 1);
    assert_eq!(auth_failures(&s, "jwt_issuer"), 1);
    assert_eq!(auth_failures(&s, "jwt_signature"), 2);
    assert_eq!(auth_failures(&s, "jwt_algorithm"), 3);
    assert_eq!(auth_failures(&s, "jwt_claims"), 1);
}

#[test]
fn eddsa_tokens_verify_against_pem_and_jwks_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (inline_key, inline_pem, _) = ed25519();
    let (jwks_key, _, x) = ed25519();
    let jwks = tmp.path().join("jwks.json");
    std::fs::write(
        &jwks,
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "idp-2026", "alg": "EdDSA",
                         "x": b64(&x)}]})
        .to_string(),
    )
    .unwrap();
    let conf = tmp.path().join("stele.toml");
    std::fs::write(
        &conf,
        format!(
            "[auth.jwt]\njwks_file = \"{}\"\naudience = [\"other\", \"{AUD}\"]\n\
             roles_claim = \"scope\"\ntenants_claim = \"tenant\"\n\
             [auth.jwt.role_names]\n\"activities:read\" = \"read\"\n\
             [[auth.jwt.keys]]\nkid = \"inline\"\nalg = \"EdDSA\"\npem = \"\"\"\n{inline_pem}\"\"\"\n",
            jwks.display()
        ),
    )
    .unwrap();
    let s = Server::start_with_file(&tmp.path().join("data"), &conf);
    let c = json!({"sub": "dash", "aud": AUD, "exp": now() + 600,
                   "scope": "openid activities:read", "tenant": "acme"});
    for (key, kid) in [(&jwks_key, Some("idp-2026")), (&inline_key, Some("inline"))] {
        let r = get(&s, "/v1/events", &ed(key, kid, &c));
        assert_eq!(r.status, 200, "{kid:?}: {}", r.text());
    }
    // Without a kid every key of the algorithm is tried.
    assert_eq!(get(&s, "/v1/events", &ed(&jwks_key, None, &c)).status, 200);
    refused(&s, &ed(&jwks_key, Some("retired"), &c), "key id (kid)");
    // The right kid, the wrong key.
    refused(&s, &ed(&inline_key, Some("idp-2026"), &c), "signature");
    // An HS token to a server with public keys only.
    refused(&s, &hs(SECRET, &c), "algorithm");
}

#[test]
fn tenant_and_role_claims_are_enforced_like_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with_file(&tmp.path().join("data"), &hs_conf(tmp.path(), ""));
    let all = hs(
        SECRET,
        &claims("ops", &["ingest", "read"], json!("*"), json!({})),
    );
    for t in ["a", "b"] {
        let r = call(
            &s,
            "POST",
            "/v1/events",
            &all,
            Some(&json!({"actor": "t", "id": format!("ev-{t}"), "action": "x", "tenant": t})),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // Listings follow the index: wait until both are listed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while get(&s, "/v1/events", &all).json()["events"]
        .as_array()
        .is_none_or(|e| e.len() < 2)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the events were never listed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let scoped = hs(
        SECRET,
        &claims("app-a", &["ingest", "read"], json!(["a"]), json!({})),
    );
    let r = get(&s, "/v1/events", &scoped);
    assert_eq!(r.status, 200, "{}", r.text());
    let tenants: Vec<Value> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tenant"].clone())
        .collect();
    assert!(
        !tenants.is_empty() && tenants.iter().all(|t| t == "a"),
        "{tenants:?}"
    );
    assert_eq!(
        get(&s, "/v1/events?tenant=b", &scoped).json()["events"],
        json!([])
    );
    assert_eq!(get(&s, "/v1/events/ev-b", &scoped).status, 404);
    let r = call(
        &s,
        "POST",
        "/v1/events",
        &scoped,
        Some(&json!({"actor": "t", "action": "x", "tenant": "b"})),
    );
    assert_eq!(
        (r.status, r.kind()),
        (403, "tenant-forbidden".into()),
        "{}",
        r.text()
    );
    let reader = hs(SECRET, &claims("viewer", &["read"], json!("*"), json!({})));
    let r = call(
        &s,
        "POST",
        "/v1/events",
        &reader,
        Some(&json!({"actor": "t", "action": "x"})),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("ingest role"), "{}", r.text());
}

#[test]
fn per_minute_limits_and_route_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = hs_conf(
        tmp.path(),
        "[auth.roles.read]\nrate = \"3/min\"\n[auth.routes.stats]\nrate = \"2/min\"\n",
    );
    let s = Server::start_with_file(&tmp.path().join("data"), &conf);
    let tok = hs(SECRET, &claims("dash", &["read"], json!("*"), json!({})));
    for _ in 0..3 {
        assert_eq!(get(&s, "/v1/events", &tok).status, 200);
    }
    let r = get(&s, "/v1/events", &tok);
    assert_eq!(r.status, 429, "{}", r.text());
    let p = r.json();
    let retry = p["retry_after"].as_u64().unwrap();
    assert!((15..=20).contains(&retry), "retry_after {retry} for 3/min");
    assert_eq!(p["limit"], json!(3));
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("3 requests a minute"),
        "{p}"
    );
    assert_eq!(r.header("retry-after"), Some(retry.to_string().as_str()));
    // The bucket is the identity's (its sub), not the token's: a fresh token
    // for the same sub is still over the limit.
    let fresh = hs(
        SECRET,
        &claims(
            "dash",
            &["read"],
            json!("*"),
            json!({"iat": now() - 1, "jti": "2"}),
        ),
    );
    assert_ne!(fresh, tok);
    assert_eq!(get(&s, "/v1/events", &fresh).status, 429);
    // Stats has its own bucket.
    for _ in 0..2 {
        assert_eq!(get(&s, "/v1/stats", &tok).status, 200);
    }
    let r = get(&s, "/v1/stats", &tok);
    assert_eq!(r.status, 429);
    assert!(r.text().contains("2 requests a minute"), "{}", r.text());
    // Another identity has its own buckets.
    let other = hs(SECRET, &claims("dash-2", &["read"], json!("*"), json!({})));
    assert_eq!(get(&s, "/v1/events", &other).status, 200);
}

#[test]
fn a_reload_puts_a_new_secret_in_force() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = hs_conf(tmp.path(), "");
    let s = Server::start_with_file(&tmp.path().join("data"), &conf);
    let c = claims("svc", &["read"], json!("*"), json!({}));
    let old = hs(SECRET, &c);
    assert_eq!(get(&s, "/v1/events", &old).status, 200);
    let fresh = "a-rotated-secret-of-at-least-32-bytes!!";
    std::fs::write(
        &conf,
        format!("[auth.jwt]\nsecret = \"{fresh}\"\naudience = \"{AUD}\"\n"),
    )
    .unwrap();
    s.reload(&conf);
    refused(&s, &old, "signature");
    assert_eq!(get(&s, "/v1/events", &hs(fresh, &c)).status, 200);
}

#[test]
fn bad_jwt_configuration_is_reported_by_check_config() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let check = |name: &str, jwt: &str| -> (i32, String) {
        let f = tmp.path().join(name);
        std::fs::write(&f, format!("data_dir = \"{}\"\n{jwt}", data.display())).unwrap();
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
    for (name, text, says) in [
        (
            "jwks.toml",
            "[auth.jwt]\njwks_file = \"/nonexistent/jwks.json\"\n",
            "cannot read /nonexistent/jwks.json",
        ),
        (
            "alg.toml",
            "[[auth.jwt.keys]]\nalg = \"RS257\"\npem = \"x\"\n",
            "unknown algorithm \"RS257\"",
        ),
        (
            "empty.toml",
            "[auth.jwt]\nsecret = \"\"\n",
            "secret is empty",
        ),
        (
            "rate.toml",
            "[auth.roles.read]\nrate = \"200/fortnight\"\n",
            "N/s, N/min or N/h",
        ),
        (
            "route.toml",
            "[auth.routes.nope]\nrate = \"1/s\"\n",
            "unknown route \"nope\"",
        ),
    ] {
        let (code, out) = check(name, text);
        assert_ne!(code, 0, "{name} accepted: {out}");
        assert!(out.contains(says), "{name}: wanted {says:?} in {out}");
    }
    let (code, out) = check(
        "ok.toml",
        &format!("listen = \"0.0.0.0:7070\"\n[auth.jwt]\nsecret = \"{SECRET}\"\n"),
    );
    assert_eq!(code, 0, "JWTs alone authenticate a public listener: {out}");
}
