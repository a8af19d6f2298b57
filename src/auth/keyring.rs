//! The credentials in force: API keys looked up by hash, JWTs verified and
//! mapped to identities whose rate-limit state persists between requests
//! and across reloads.

use super::{
    jwt, parse_hash, well_formed, AuthConfig, AuthError, Key, KeyConfig, MetricsAccess, RateLimit,
    RoleLimits, AUTHORIZATION_BYTES_MAX, JWT_IDENTITIES_MAX,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use subtle::{ConditionallySelectable, ConstantTimeEq};

fn prefix(h: &[u8; 32]) -> u64 {
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// JWTs at run time: the verifier (or why the key material could not be
/// read: every JWT is then refused) and the identities seen, whose buckets
/// persist between requests.
struct JwtState {
    verifier: Result<jwt::Verifier, String>,
    identities: Mutex<std::collections::HashMap<String, Arc<Key>>>,
}

impl std::fmt::Debug for JwtState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtState")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// The keys in force.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<Arc<Key>>,
    hashes: Vec<[u8; 32]>,
    /// Keys by the first 8 bytes of their hash: a lookup costs the same
    /// with 1 or 10,000 keys.
    by_prefix: std::collections::HashMap<u64, Vec<usize>>,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    jwt: Option<JwtState>,
    roles: RoleLimits,
    routes: BTreeMap<String, RateLimit>,
    streams_per_key_max: u32,
}

impl Keyring {
    /// Builds the keyring of a validated configuration, keeping the state
    /// (buckets, open streams) of every key of `previous` whose settings
    /// are unchanged.
    pub fn new(cfg: &AuthConfig, previous: Option<&Keyring>) -> Keyring {
        let mut keys = Vec::with_capacity(cfg.keys.len());
        let mut hashes = Vec::with_capacity(cfg.keys.len());
        for k in &cfg.keys {
            let from = (
                k.clone(),
                cfg.roles,
                cfg.routes.clone(),
                cfg.streams_per_key_max,
            );
            let reused = previous
                .and_then(|p| p.keys.iter().find(|old| old.built_from == from))
                .cloned();
            keys.push(reused.unwrap_or_else(|| {
                Arc::new(Key::build(
                    k,
                    &cfg.roles,
                    &cfg.routes,
                    cfg.streams_per_key_max,
                ))
            }));
            hashes.push(parse_hash(&k.hash).expect("validated configuration"));
        }
        let mut by_prefix: std::collections::HashMap<u64, Vec<usize>> = Default::default();
        for (i, h) in hashes.iter().enumerate() {
            by_prefix.entry(prefix(h)).or_default().push(i);
        }
        let jwt = cfg.jwt.as_ref().map(|j| {
            let verifier = jwt::Verifier::load(j).map_err(|(_, m)| {
                tracing::error!("Refusing every JWT: {m}.");
                m
            });
            // Identities are rebuilt on their next request when their
            // settings changed (see `jwt_identity`).
            let identities = previous
                .and_then(|p| p.jwt.as_ref())
                .map(|p| {
                    p.identities
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                })
                .unwrap_or_default();
            JwtState {
                verifier,
                identities: Mutex::new(identities),
            }
        });
        Keyring {
            keys,
            hashes,
            by_prefix,
            metrics: cfg.metrics,
            jwt,
            roles: cfg.roles,
            routes: cfg.routes.clone(),
            streams_per_key_max: cfg.streams_per_key_max,
        }
    }

    /// Whether any key (or JWTs) is configured (authentication on).
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty() || self.jwt.is_some()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether JWTs are accepted.
    pub fn accepts_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// The key an `Authorization` header value names: a JWT's identity
    /// when the token parses as a JWT, else a configured API key.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Arc<Key>, AuthError> {
        let value = header.ok_or(AuthError::Missing)?;
        if value.len() > jwt::JWT_BYTES_MAX {
            return Err(AuthError::Oversized);
        }
        let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        let token = token.trim();
        if jwt::looks_like_jwt(token) {
            return self.authenticate_jwt(token);
        }
        if value.len() > AUTHORIZATION_BYTES_MAX {
            return Err(AuthError::Oversized);
        }
        if !well_formed(token) {
            return Err(AuthError::Malformed);
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // The hash map's timing depends only on 8 bytes of the presented
        // key's SHA-256 (which say nothing of a configured key); the whole
        // hash of each candidate is compared in constant time, without an
        // early exit.
        let mut found = u32::MAX;
        for &i in self
            .by_prefix
            .get(&prefix(&presented))
            .into_iter()
            .flatten()
        {
            found.conditional_assign(&(i as u32), self.hashes[i].ct_eq(&presented));
        }
        self.keys
            .get(found as usize)
            .cloned()
            .ok_or(AuthError::Unknown)
    }

    fn authenticate_jwt(&self, token: &str) -> Result<Arc<Key>, AuthError> {
        let state = self.jwt.as_ref().ok_or(AuthError::JwtNotAccepted)?;
        let verifier = state
            .verifier
            .as_ref()
            .map_err(|_| AuthError::JwtKeysUnavailable)?;
        let who = verifier.verify(token)?;
        let cfg = KeyConfig {
            id: who.id,
            hash: String::new(),
            roles: who.roles,
            tenants: who.tenants,
            rate_per_sec: None,
            rate: None,
            burst: None,
            streams_max: None,
        };
        let from = (
            cfg,
            self.roles,
            self.routes.clone(),
            self.streams_per_key_max,
        );
        let mut ids = state.identities.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = ids.get(&from.0.id).filter(|k| k.built_from == from) {
            return Ok(k.clone());
        }
        if ids.len() >= JWT_IDENTITIES_MAX {
            // Forget identities no request or stream holds.
            ids.retain(|_, k| Arc::strong_count(k) > 1);
        }
        let key = Arc::new(Key::build(&from.0, &from.1, &from.2, from.3));
        ids.insert(from.0.id.clone(), key.clone());
        Ok(key)
    }
}
