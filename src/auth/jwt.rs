//! JWT bearer tokens beside API keys: the `[auth.jwt]` configuration, its
//! key material (an HS256 shared secret, public keys in the configuration or
//! a JWKS file), verifying a token (signature, `exp`/`nbf` with leeway,
//! `iss`, `aud`) and mapping its claims to a Stele identity (`sub`, roles,
//! tenants).
//!
//! Invariants:
//! 1. The algorithm a token is checked with is chosen by the key that
//!    verifies it, never by the token alone: `alg: none` is refused, an
//!    RS/EdDSA token is never checked against the HMAC secret and an HS
//!    token never against a public key.
//! 2. The signature is checked before any claim: an unsigned or forged
//!    token learns nothing about the expected issuer, audience or times.
//! 3. No message repeats the token or a claim value.

use super::{valid_id, AuthError, Role, KEY_ID_BYTES_MAX};
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Longest `Authorization` value looked at when JWTs are accepted.
pub const JWT_BYTES_MAX: usize = 8192;
/// Shortest HS256 secret (RFC 7518 §3.2: at least the hash size).
pub const SECRET_BYTES_MIN: usize = 32;
/// Highest `leeway_secs`.
pub const LEEWAY_SECS_MAX: u64 = 300;
/// Default `leeway_secs`.
pub const LEEWAY_SECS_DEFAULT: u64 = 30;

/// The asymmetric algorithms a public key may be configured for.
pub const PUBLIC_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// One string or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `"x"`.
    One(String),
    /// `["x", "y"]`.
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One `[[auth.jwt.keys]]`: a public key in PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// The `kid` tokens signed with it carry (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `RS256`, `EdDSA`, ... (see [`PUBLIC_ALGORITHMS`]).
    pub alg: String,
    /// The public key (`-----BEGIN PUBLIC KEY-----`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// Or a file holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem_file: Option<PathBuf>,
}

/// `[auth.jwt]`: present means JWTs are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 shared secret (at least 32 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Or a file holding it (a final newline is ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// A JSON Web Key Set of public keys (RSA, EC P-256/P-384, Ed25519).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// Public keys in PEM.
    pub keys: Vec<JwtKeyConfig>,
    /// Accepted `iss` values; when set, a token must carry one of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<OneOrMany>,
    /// Accepted `aud` values; when set, a token must name one of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<OneOrMany>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// The claim holding roles: a list, or a space-separated string (as
    /// OAuth's `scope`).
    pub roles_claim: String,
    /// The claim holding tenants: a string or a list, `"*"` for all.
    pub tenants_claim: String,
    /// Claim values that mean a Stele role (`"audit:read" = "read"`); the
    /// role names themselves always do. Other values are ignored.
    pub role_names: BTreeMap<String, Role>,
    /// Put before `sub` to make the identity's id (e.g. `"jwt."`, to tell
    /// tokens from API keys in audit records).
    pub id_prefix: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            secret: None,
            secret_file: None,
            jwks_file: None,
            keys: Vec::new(),
            issuer: None,
            audience: None,
            leeway_secs: LEEWAY_SECS_DEFAULT,
            roles_claim: "roles".into(),
            tenants_claim: "tenants".into(),
            role_names: BTreeMap::new(),
            id_prefix: String::new(),
        }
    }
}

/// A verifying key.
struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The key material and checks of a validated `[auth.jwt]`.
pub struct Verifier {
    keys: Vec<VerifyingKey>,
    validation: Validation,
    cfg: JwtConfig,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `id_prefix` + `sub`.
    pub id: String,
    /// Its roles (at least one).
    pub roles: Vec<Role>,
    /// Its tenants, `["*"]` for all.
    pub tenants: Vec<String>,
}

type CfgErr = (String, String);

fn cfg_err(key: &str, m: impl Into<String>) -> CfgErr {
    (key.to_string(), m.into())
}

fn parse_public_alg(s: &str, at: &str) -> Result<Algorithm, CfgErr> {
    if !PUBLIC_ALGORITHMS.contains(&s) {
        let hint = if s.starts_with("HS") {
            " (HMAC secrets go in auth.jwt.secret or secret_file)"
        } else {
            ""
        };
        return Err(cfg_err(
            at,
            format!(
                "{at}: unknown algorithm {s:?}: one of {}{hint}",
                PUBLIC_ALGORITHMS.join(", ")
            ),
        ));
    }
    s.parse()
        .map_err(|_| cfg_err(at, format!("{at}: unknown algorithm {s:?}")))
}

fn pem_key(alg: Algorithm, pem: &[u8]) -> jsonwebtoken::errors::Result<DecodingKey> {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => DecodingKey::from_rsa_pem(pem),
    }
}

fn read_file(path: &PathBuf, at: &str) -> Result<Vec<u8>, CfgErr> {
    std::fs::read(path)
        .map_err(|e| cfg_err(at, format!("{at}: cannot read {}: {e}", path.display())))
}

fn jwks_keys(bytes: &[u8], at: &str) -> Result<Vec<VerifyingKey>, CfgErr> {
    let set: JwkSet = serde_json::from_slice(bytes)
        .map_err(|e| cfg_err(at, format!("{at}: not a JSON Web Key Set: {e}")))?;
    let mut out = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let here = format!("{at} key {i}");
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(a), _) => {
                let name = format!("{a:?}");
                parse_public_alg(&name, &here)?
            }
            (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
            (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
            (None, AlgorithmParameters::EllipticCurve(p)) => match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => {
                    return Err(cfg_err(
                        at,
                        format!("{here}: only the P-256 and P-384 curves are supported"),
                    ))
                }
            },
            (None, AlgorithmParameters::OctetKey(_)) => {
                return Err(cfg_err(
                    at,
                    format!(
                        "{here}: a symmetric (oct) key: the JWKS holds public keys; put a \
                         shared secret in auth.jwt.secret or secret_file"
                    ),
                ))
            }
        };
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err(cfg_err(
                at,
                format!("{here}: a symmetric (oct) key: the JWKS holds public keys only"),
            ));
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| cfg_err(at, format!("{here}: not a usable {alg:?} key: {e}")))?;
        out.push(VerifyingKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if out.is_empty() {
        return Err(cfg_err(at, format!("{at}: the key set has no keys")));
    }
    Ok(out)
}

impl Verifier {
    /// Checks `[auth.jwt]` and reads its key material: the first problem,
    /// naming the configuration key.
    pub fn load(cfg: &JwtConfig) -> Result<Verifier, CfgErr> {
        let mut keys = Vec::new();
        let secret = match (&cfg.secret, &cfg.secret_file) {
            (Some(_), Some(_)) => {
                return Err(cfg_err(
                    "auth.jwt.secret",
                    "auth.jwt: give either secret or secret_file, not both",
                ))
            }
            (Some(s), None) => Some(s.as_bytes().to_vec()),
            (None, Some(p)) => {
                let mut b = read_file(p, "auth.jwt.secret_file")?;
                while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                    b.pop();
                }
                Some(b)
            }
            (None, None) => None,
        };
        if let Some(s) = secret {
            let at = if cfg.secret.is_some() {
                "auth.jwt.secret"
            } else {
                "auth.jwt.secret_file"
            };
            if s.is_empty() {
                return Err(cfg_err(at, format!("{at}: the HS256 secret is empty")));
            }
            if s.len() < SECRET_BYTES_MIN {
                return Err(cfg_err(
                    at,
                    format!(
                        "{at}: the HS256 secret is {} bytes; it must be at least \
                         {SECRET_BYTES_MIN} (e.g. `openssl rand -base64 48`)",
                        s.len()
                    ),
                ));
            }
            keys.push(VerifyingKey {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(&s),
            });
        }
        for (i, k) in cfg.keys.iter().enumerate() {
            let at = format!("auth.jwt.keys[{i}]");
            let alg = parse_public_alg(&k.alg, &format!("{at}.alg"))?;
            let pem = match (&k.pem, &k.pem_file) {
                (Some(p), None) => p.as_bytes().to_vec(),
                (None, Some(f)) => read_file(f, &format!("{at}.pem_file"))?,
                _ => {
                    return Err(cfg_err(
                        &at,
                        format!("{at}: give exactly one of pem and pem_file"),
                    ))
                }
            };
            let key = pem_key(alg, &pem).map_err(|e| {
                cfg_err(&at, format!("{at}: not a {} public key in PEM: {e}", k.alg))
            })?;
            keys.push(VerifyingKey {
                kid: k.kid.clone(),
                alg,
                key,
            });
        }
        if let Some(p) = &cfg.jwks_file {
            let at = "auth.jwt.jwks_file";
            let bytes = read_file(p, at)?;
            keys.extend(jwks_keys(&bytes, &format!("{at} ({})", p.display()))?);
        }
        if keys.is_empty() {
            return Err(cfg_err(
                "auth.jwt",
                "auth.jwt: no key to verify tokens with: give secret or secret_file (HS256), \
                 keys (PEM public keys) or jwks_file",
            ));
        }
        if cfg.leeway_secs > LEEWAY_SECS_MAX {
            return Err(cfg_err(
                "auth.jwt.leeway_secs",
                format!(
                    "auth.jwt.leeway_secs must be at most {LEEWAY_SECS_MAX}, got {}",
                    cfg.leeway_secs
                ),
            ));
        }
        for (name, v) in [
            ("roles_claim", &cfg.roles_claim),
            ("tenants_claim", &cfg.tenants_claim),
        ] {
            if v.is_empty() {
                return Err(cfg_err(
                    &format!("auth.jwt.{name}"),
                    format!("auth.jwt.{name} must name a claim, got an empty string"),
                ));
            }
        }
        for (name, v) in [("issuer", &cfg.issuer), ("audience", &cfg.audience)] {
            if v.as_ref()
                .is_some_and(|v| v.list().iter().all(String::is_empty))
            {
                return Err(cfg_err(
                    &format!("auth.jwt.{name}"),
                    format!("auth.jwt.{name} must not be empty (leave it out to accept any)"),
                ));
            }
        }
        if !cfg.id_prefix.is_empty() && !valid_id(&cfg.id_prefix) {
            return Err(cfg_err(
                "auth.jwt.id_prefix",
                format!(
                    "auth.jwt.id_prefix must be letters, digits, '.', '_' or '-' (at most \
                     {KEY_ID_BYTES_MAX} bytes)"
                ),
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = cfg.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required = vec!["exp", "sub"];
        match &cfg.audience {
            Some(a) => {
                validation.set_audience(&a.list());
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(i) = &cfg.issuer {
            validation.set_issuer(&i.list());
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Verifier {
            keys,
            validation,
            cfg: cfg.clone(),
        })
    }

    /// Verifies `token` (already known to be JWT-shaped) and maps its
    /// claims.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = raw_header(token).ok_or(AuthError::JwtMalformed)?;
        let alg_name = header
            .get("alg")
            .and_then(|a| a.as_str())
            .ok_or(AuthError::JwtMalformed)?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(AuthError::JwtAlgNone);
        }
        let alg: Algorithm = alg_name.parse().map_err(|_| AuthError::JwtAlgorithm)?;
        let kid = header.get("kid").and_then(|k| k.as_str());
        let of_alg: Vec<&VerifyingKey> = self.keys.iter().filter(|k| k.alg == alg).collect();
        if of_alg.is_empty() {
            return Err(AuthError::JwtAlgorithm);
        }
        let candidates: Vec<&VerifyingKey> = match kid {
            // The secret has no kid: an HS token's kid is not looked at.
            Some(kid) if alg != Algorithm::HS256 => {
                let c: Vec<_> = of_alg
                    .into_iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if c.is_empty() {
                    return Err(AuthError::JwtUnknownKid);
                }
                c
            }
            _ => of_alg,
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        let mut last = AuthError::JwtSignature;
        for k in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &validation) {
                Ok(data) => return self.identity(&data.claims),
                Err(e) => {
                    last = map_error(e.kind());
                    if last != AuthError::JwtSignature {
                        // The signature matched (or the token is broken):
                        // another key would say the same.
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(&self, claims: &serde_json::Value) -> Result<Identity, AuthError> {
        let sub = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .ok_or(AuthError::JwtClaim("the token has no sub claim (a string)"))?;
        let id = format!("{}{sub}", self.cfg.id_prefix);
        if !valid_id(&id) {
            return Err(AuthError::JwtClaim(
                "the token's sub claim (with auth.jwt.id_prefix) must be 1 to 64 letters, \
                 digits, '.', '_' or '-', the form of a key id",
            ));
        }
        if crate::event::INGESTED_BY_RESERVED
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&id))
        {
            return Err(AuthError::JwtClaim(
                "the token's sub claim is a name Stele reserves",
            ));
        }
        let roles = claim_roles(claims.get(&self.cfg.roles_claim), &self.cfg.role_names);
        if roles.is_empty() {
            return Err(AuthError::JwtClaim(
                "the token's roles claim grants no Stele role (ingest, read, export, admin)",
            ));
        }
        let tenants =
            claim_tenants(claims.get(&self.cfg.tenants_claim)).ok_or(AuthError::JwtClaim(
                "the token's tenants claim is missing or not a tenant name, a list of them, \
                 or \"*\"",
            ))?;
        if roles.contains(&Role::Admin) && tenants != ["*"] {
            return Err(AuthError::JwtClaim(
                "the token grants the admin role, which sees every tenant, with a tenant list: \
                 admin tokens need tenants \"*\"",
            ));
        }
        Ok(Identity { id, roles, tenants })
    }
}

/// The header of a JWT-shaped token, decoded.
fn raw_header(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let (head, _) = token.split_once('.')?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Whether `token` parses as a JWT: three base64url parts, the first a JSON
/// object with an `alg`. Anything else is looked up as an API key.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && raw_header(token).is_some_and(|h| h.get("alg").is_some_and(|a| a.is_string()))
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::JwtExpired,
        ErrorKind::ImmatureSignature => AuthError::JwtNotYetValid,
        ErrorKind::InvalidAudience => AuthError::JwtAudience,
        ErrorKind::InvalidIssuer => AuthError::JwtIssuer,
        ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => AuthError::JwtSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::JwtAlgorithm,
        ErrorKind::MissingRequiredClaim(c) => AuthError::JwtClaim(match c.as_str() {
            "exp" => "the token has no exp claim: only tokens that expire are accepted",
            "aud" => "the token has no aud claim and auth.jwt.audience is configured",
            "iss" => "the token has no iss claim and auth.jwt.issuer is configured",
            "sub" => "the token has no sub claim (a string)",
            _ => "the token lacks a required claim",
        }),
        _ => AuthError::JwtMalformed,
    }
}

/// The Stele roles a roles claim grants (unknown values ignored).
pub fn claim_roles(claim: Option<&serde_json::Value>, names: &BTreeMap<String, Role>) -> Vec<Role> {
    let values: Vec<&str> = match claim {
        Some(serde_json::Value::String(s)) => s.split_whitespace().collect(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for v in values {
        let role = names
            .get(v)
            .copied()
            .or_else(|| Role::ALL.into_iter().find(|r| r.as_str() == v));
        if let Some(r) = role {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out.sort();
    out
}

/// The tenants a tenants claim names (`["*"]` for all), `None` when it is
/// missing, empty or not strings.
pub fn claim_tenants(claim: Option<&serde_json::Value>) -> Option<Vec<String>> {
    let mut list: Vec<String> = match claim? {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    let max = crate::event::SHORT_FIELD_BYTES_MAX;
    if list.is_empty() || list.iter().any(|t| t.is_empty() || t.len() > max) {
        return None;
    }
    if list.iter().any(|t| t == "*") {
        return Some(vec!["*".into()]);
    }
    list.sort();
    list.dedup();
    Some(list)
}
