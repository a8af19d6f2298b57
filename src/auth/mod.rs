//! Access control: API keys with roles and tenant scopes, and their rate
//! limits.
//!
//! A key is a bearer token `stele_` + 43 base64url characters (32 random
//! bytes). Stele never stores a token: the configuration holds the SHA-256
//! of each (`hash = "sha256:<hex>"`), and a presented token is hashed, the
//! configured hashes sharing its first 8 bytes are found in a hash map, and
//! each is compared with it in constant time.
//!
//! Invariants:
//! 1. With no keys configured Stele listens only on loopback
//!    ([`AuthConfig::check_listen`]); with keys, every route except
//!    `/healthz`, `/readyz` (and `/metrics` unless configured otherwise)
//!    needs a key holding the route's [`Role`].
//! 2. A key's [`Scope`] is applied to every read as a filter on the stored
//!    `tenant` field (see `query::Filter::tenants`), so a scoped key
//!    cannot tell whether another tenant exists: it sees nothing of it.
//! 3. Rate-limit state and open-stream counts survive a reload for every
//!    key whose settings did not change.

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "stele_";
/// Characters after the prefix: 32 bytes in unpadded base64url.
pub const TOKEN_BODY_CHARS: usize = 43;
/// Longest `Authorization` header value looked at; longer ones are refused
/// without hashing.
pub const AUTHORIZATION_BYTES_MAX: usize = 512;
/// Longest key id: what an event's `ingested_by` holds.
pub const KEY_ID_BYTES_MAX: usize = crate::event::INGESTED_BY_BYTES_MAX;
/// Most keys in a configuration (each request compares against all).
pub const KEYS_MAX: usize = 10_000;
/// Highest `rate_per_sec` and `burst`.
pub const RATE_MAX: u32 = 1_000_000;
/// Highest `streams_max` / `streams_per_key_max`.
pub const STREAMS_PER_KEY_MAX_MAX: u32 = 1_048_576;

/// What a key may do. Roles are independent: `admin` does not imply `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Post events (`POST /v1/events`).
    Ingest,
    /// Query, search, statistics, get by id, history, timeline, stream.
    Read,
    /// `GET /v1/export`.
    Export,
    /// Segments, retention, legal holds (and `/metrics` when
    /// `auth.metrics = "admin"`).
    Admin,
}

impl Role {
    /// Every role, in config order.
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Read, Role::Export, Role::Admin];

    /// The name used in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Export => "export",
            Role::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Anyone who can reach the port (Prometheus without credentials).
    #[default]
    Public,
    /// Keys with the `admin` role.
    Admin,
}

/// A token bucket: `rate_per_sec` tokens a second, at most `burst` saved.
/// `rate_per_sec = 0` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second (0: unlimited).
    pub rate_per_sec: u32,
    /// Requests allowed at once after a quiet spell (0: same as the rate).
    pub burst: u32,
}

impl RateLimit {
    const fn new(rate_per_sec: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate_per_sec,
            burst,
        }
    }

    fn quota(self) -> Option<Quota> {
        let rate = NonZeroU32::new(self.rate_per_sec)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(rate);
        Some(Quota::per_second(rate).allow_burst(burst))
    }

    fn validate(self, key: &str) -> Result<(), String> {
        for (name, v) in [("rate_per_sec", self.rate_per_sec), ("burst", self.burst)] {
            if v > RATE_MAX {
                return Err(format!(
                    "{key}.{name} must be at most {RATE_MAX}, got {v} (0 means {})",
                    if name == "burst" {
                        "the same as rate_per_sec"
                    } else {
                        "unlimited"
                    }
                ));
            }
        }
        Ok(())
    }
}

/// `[auth.roles]`: the default rate limit of each role, per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleLimits {
    /// `[auth.roles.ingest]`.
    pub ingest: RateLimit,
    /// `[auth.roles.read]`.
    pub read: RateLimit,
    /// `[auth.roles.export]`.
    pub export: RateLimit,
    /// `[auth.roles.admin]`.
    pub admin: RateLimit,
}

impl Default for RoleLimits {
    fn default() -> Self {
        RoleLimits {
            ingest: RateLimit::new(2_000, 4_000),
            read: RateLimit::new(200, 400),
            export: RateLimit::new(2, 5),
            admin: RateLimit::new(20, 40),
        }
    }
}

impl RoleLimits {
    fn of(&self, role: Role) -> RateLimit {
        match role {
            Role::Ingest => self.ingest,
            Role::Read => self.read,
            Role::Export => self.export,
            Role::Admin => self.admin,
        }
    }
}

/// One `[[auth.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// A name for the key: what audit events and logs show (never the key).
    pub id: String,
    /// `sha256:` and the SHA-256 of the token in lower-case hex.
    pub hash: String,
    /// What the key may do.
    pub roles: Vec<Role>,
    /// The tenants it may write and read, or `["*"]` for all.
    pub tenants: Vec<String>,
    /// Replaces the role limits for this key: one bucket for all its requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<u32>,
    /// Burst of `rate_per_sec` (default: the rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Concurrent streams (default `auth.streams_per_key_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams_max: Option<u32>,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// Concurrent `/v1/stream` subscriptions per key.
    pub streams_per_key_max: u32,
    /// Default rate limits by role.
    pub roles: RoleLimits,
    /// The keys. None: no authentication, loopback only.
    pub keys: Vec<KeyConfig>,
}

/// Default of `auth.streams_per_key_max`.
pub const STREAMS_PER_KEY_DEFAULT: u32 = 16;

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            metrics: MetricsAccess::Public,
            streams_per_key_max: STREAMS_PER_KEY_DEFAULT,
            roles: RoleLimits::default(),
            keys: Vec::new(),
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= KEY_ID_BYTES_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Parses `sha256:<64 hex>`.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hex_part = s.strip_prefix("sha256:")?;
    if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// The configuration form of a token's hash.
pub fn hash_line(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// A new random token (32 bytes from the OS).
pub fn generate_token() -> std::io::Result<String> {
    use base64::Engine as _;
    let bytes = crate::datadir::random_bytes::<32>().map_err(|e| e.source)?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Whether `token` has the shape of a Stele key.
pub fn well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|body| {
        body.len() == TOKEN_BODY_CHARS
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

impl AuthConfig {
    /// Checks every key: the first problem, naming the key path.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if !(1..=STREAMS_PER_KEY_MAX_MAX).contains(&self.streams_per_key_max) {
            return err(
                "auth.streams_per_key_max",
                format!(
                    "auth.streams_per_key_max must be from 1 to {STREAMS_PER_KEY_MAX_MAX}, got {}",
                    self.streams_per_key_max
                ),
            );
        }
        for role in Role::ALL {
            let k = format!("auth.roles.{}", role.as_str());
            if let Err(m) = self.roles.of(role).validate(&k) {
                return err(&k, m);
            }
        }
        if self.keys.len() > KEYS_MAX {
            return err(
                "auth.keys",
                format!("at most {KEYS_MAX} keys, got {}", self.keys.len()),
            );
        }
        let mut ids = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for (i, key) in self.keys.iter().enumerate() {
            let at = format!("auth.keys[{i}]");
            let name = format!("{at} (id {:?})", key.id);
            if !valid_id(&key.id) {
                return err(
                    &format!("{at}.id"),
                    format!(
                        "{at}.id {:?} must be 1 to {KEY_ID_BYTES_MAX} letters, digits, '.', '_' or '-'",
                        key.id
                    ),
                );
            }
            if let Some(r) = crate::event::INGESTED_BY_RESERVED
                .iter()
                .find(|r| r.eq_ignore_ascii_case(&key.id))
            {
                return err(
                    &format!("{at}.id"),
                    format!(
                        "{name}: {r:?} is what events not posted with a key are stamped with \
                         (ingested_by), so no key may have it as its id; choose another"
                    ),
                );
            }
            if !ids.insert(key.id.as_str()) {
                return err(
                    &format!("{at}.id"),
                    format!("{name}: another key has the same id"),
                );
            }
            let Some(h) = parse_hash(&key.hash) else {
                // Never echo the value: it may be a key pasted by mistake.
                let what = if well_formed(key.hash.trim()) {
                    "it holds a key itself: put the key's hash here (never the key) and \
                     treat that key as exposed"
                        .to_string()
                } else {
                    format!("got {} characters", key.hash.chars().count())
                };
                return err(
                    &format!("{at}.hash"),
                    format!(
                        "{name}: hash must be \"sha256:\" and 64 lower-case hex digits (the \
                         line `stele keygen` prints); {what}"
                    ),
                );
            };
            if !hashes.insert(h) {
                return err(
                    &format!("{at}.hash"),
                    format!("{name}: another key has the same hash (the same token)"),
                );
            }
            if key.roles.is_empty() {
                return err(
                    &format!("{at}.roles"),
                    format!("{name}: roles must name at least one of ingest, read, export, admin"),
                );
            }
            let mut seen = Vec::new();
            for r in &key.roles {
                if seen.contains(r) {
                    return err(
                        &format!("{at}.roles"),
                        format!("{name}: role {} is listed twice", r.as_str()),
                    );
                }
                seen.push(*r);
            }
            if key.tenants.is_empty() {
                return err(
                    &format!("{at}.tenants"),
                    format!(
                        "{name}: tenants must be [\"*\"] (all tenants) or a list of tenant names"
                    ),
                );
            }
            let all = key.tenants.iter().any(|t| t == "*");
            if all && key.tenants.len() > 1 {
                return err(
                    &format!("{at}.tenants"),
                    format!("{name}: \"*\" (all tenants) must be the only entry of tenants"),
                );
            }
            for t in &key.tenants {
                if t.is_empty() || t.len() > crate::event::SHORT_FIELD_BYTES_MAX {
                    return err(
                        &format!("{at}.tenants"),
                        format!(
                            "{name}: tenant names are 1 to {} bytes",
                            crate::event::SHORT_FIELD_BYTES_MAX
                        ),
                    );
                }
            }
            if !all && key.roles.contains(&Role::Admin) {
                return err(
                    &format!("{at}.tenants"),
                    format!(
                        "{name}: the admin role sees every tenant (segments, retention, holds): \
                         give this key tenants = [\"*\"], or a separate admin key"
                    ),
                );
            }
            let own = RateLimit {
                rate_per_sec: key.rate_per_sec.unwrap_or(0),
                burst: key.burst.unwrap_or(0),
            };
            if let Err(m) = own.validate(&at) {
                return err(&at, format!("{name}: {m}"));
            }
            if key.burst.is_some() && key.rate_per_sec.is_none() {
                return err(
                    &format!("{at}.burst"),
                    format!("{name}: burst needs rate_per_sec on the same key"),
                );
            }
            if let Some(s) = key.streams_max {
                if !(1..=STREAMS_PER_KEY_MAX_MAX).contains(&s) {
                    return err(
                        &format!("{at}.streams_max"),
                        format!(
                            "{name}: streams_max must be from 1 to {STREAMS_PER_KEY_MAX_MAX}, got {s}"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Secure by default: without keys, only a loopback address.
    pub fn check_listen(&self, listen: std::net::SocketAddr) -> Result<(), String> {
        if self.keys.is_empty() && !listen.ip().is_loopback() {
            return Err(format!(
                "refusing to listen on {listen} without API keys: anyone who can reach it could \
                 read and write the audit log. Either listen on a loopback address (e.g. \
                 listen = \"127.0.0.1:{}\"), or add keys: `stele keygen --id NAME --role read` \
                 prints a key and the [[auth.keys]] lines to add to the configuration",
                listen.port()
            ));
        }
        Ok(())
    }
}

/// The tenants a key may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant, and events without one.
    All,
    /// Only events of these tenants (sorted, deduplicated).
    Tenants(Arc<[String]>),
}

impl Scope {
    /// The tenant list to filter on, `None` for all.
    pub fn tenants(&self) -> Option<&[String]> {
        match self {
            Scope::All => None,
            Scope::Tenants(t) => Some(t),
        }
    }

    /// Whether an event of `tenant` is visible.
    pub fn allows(&self, tenant: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenants(ts) => tenant.is_some_and(|t| ts.iter().any(|x| x == t)),
        }
    }

    /// For audit records: `"*"` or the list.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scope::All => serde_json::json!("*"),
            Scope::Tenants(t) => serde_json::json!(&t[..]),
        }
    }
}

/// A configured key at run time.
pub struct Key {
    /// The configured id.
    pub id: String,
    roles: [bool; 4],
    /// The tenants it sees.
    pub scope: Scope,
    /// The key's own bucket (`rate_per_sec` on the key), else one bucket per
    /// role from `[auth.roles]`.
    own: Option<DefaultDirectRateLimiter>,
    by_role: [Option<DefaultDirectRateLimiter>; 4],
    /// Concurrent streams allowed and open.
    pub streams_max: u32,
    streams_open: AtomicU32,
    /// What it was built from (reloads keep unchanged keys' state).
    built_from: (KeyConfig, RoleLimits, u32),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A refused rate-limit check: when to retry.
#[derive(Debug, Clone, Copy)]
pub struct RateLimited {
    /// Time until one more request would be allowed.
    pub wait: Duration,
    /// The bucket's rate (requests per second).
    pub rate_per_sec: u32,
}

impl RateLimited {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        (self.wait.as_secs_f64().ceil() as u64).max(1)
    }
}

impl Key {
    fn build(cfg: &KeyConfig, roles: &RoleLimits, streams_default: u32) -> Key {
        let mut has = [false; 4];
        for r in &cfg.roles {
            has[r.index()] = true;
        }
        let scope = if cfg.tenants.iter().any(|t| t == "*") {
            Scope::All
        } else {
            let mut t = cfg.tenants.clone();
            t.sort();
            t.dedup();
            Scope::Tenants(t.into())
        };
        let own = cfg.rate_per_sec.and_then(|r| {
            RateLimit::new(r, cfg.burst.unwrap_or(0))
                .quota()
                .map(DefaultDirectRateLimiter::direct)
        });
        let by_role = Role::ALL.map(|r| {
            if cfg.rate_per_sec.is_some() || !has[r.index()] {
                None
            } else {
                roles.of(r).quota().map(DefaultDirectRateLimiter::direct)
            }
        });
        Key {
            id: cfg.id.clone(),
            roles: has,
            scope,
            own,
            by_role,
            streams_max: cfg.streams_max.unwrap_or(streams_default),
            streams_open: AtomicU32::new(0),
            built_from: (cfg.clone(), *roles, streams_default),
        }
    }

    /// Whether the key holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles[role.index()]
    }

    /// The roles it holds, for messages.
    pub fn roles(&self) -> Vec<&'static str> {
        Role::ALL
            .iter()
            .filter(|r| self.has(**r))
            .map(|r| r.as_str())
            .collect()
    }

    /// Takes one token from the bucket that applies to a request of `role`.
    pub fn check_rate(&self, role: Role) -> Result<(), RateLimited> {
        let (limiter, rate) = match &self.own {
            Some(l) => (l, self.built_from.0.rate_per_sec.unwrap_or(0)),
            None => match &self.by_role[role.index()] {
                Some(l) => (l, self.built_from.1.of(role).rate_per_sec),
                None => return Ok(()),
            },
        };
        limiter.check().map_err(|not_until| RateLimited {
            wait: not_until.wait_time_from(DefaultClock::default().now()),
            rate_per_sec: rate,
        })
    }

    /// Counts one more open stream, or says the key is at its limit.
    pub fn open_stream(self: &Arc<Self>) -> Option<StreamSlot> {
        let max = self.streams_max;
        self.streams_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(self.clone()))
    }
}

/// One open stream of a key; gives its slot back when dropped.
pub struct StreamSlot(Arc<Key>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams_open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a request is not authenticated (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <token>`.
    NotBearer,
    /// Longer than [`AUTHORIZATION_BYTES_MAX`].
    Oversized,
    /// Not the shape of a Stele key.
    Malformed,
    /// Well formed, but no configured key has its hash.
    Unknown,
}

impl AuthError {
    /// A metrics label.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::NotBearer => "not_bearer",
            AuthError::Oversized => "oversized",
            AuthError::Malformed => "malformed",
            AuthError::Unknown => "unknown",
        }
    }

    /// What the client is told (never the token).
    pub fn detail(self) -> String {
        match self {
            AuthError::Missing => {
                "this route needs an API key: send `Authorization: Bearer <key>`".into()
            }
            AuthError::NotBearer => {
                "the Authorization header must be `Bearer <key>` (no other scheme is accepted)"
                    .into()
            }
            AuthError::Oversized => format!(
                "the Authorization header is longer than {AUTHORIZATION_BYTES_MAX} bytes: not a \
                 Stele API key"
            ),
            AuthError::Malformed => format!(
                "not a Stele API key: keys are `{TOKEN_PREFIX}` followed by {TOKEN_BODY_CHARS} \
                 base64url characters (make one with `stele keygen`)"
            ),
            AuthError::Unknown => {
                "the API key is not configured (revoked, or never added): ask an operator".into()
            }
        }
    }
}

fn prefix(h: &[u8; 32]) -> u64 {
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
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
}

impl Keyring {
    /// Builds the keyring of a validated configuration, keeping the state
    /// (buckets, open streams) of every key of `previous` whose settings
    /// are unchanged.
    pub fn new(cfg: &AuthConfig, previous: Option<&Keyring>) -> Keyring {
        let mut keys = Vec::with_capacity(cfg.keys.len());
        let mut hashes = Vec::with_capacity(cfg.keys.len());
        for k in &cfg.keys {
            let from = (k.clone(), cfg.roles, cfg.streams_per_key_max);
            let reused = previous
                .and_then(|p| p.keys.iter().find(|old| old.built_from == from))
                .cloned();
            keys.push(
                reused.unwrap_or_else(|| {
                    Arc::new(Key::build(k, &cfg.roles, cfg.streams_per_key_max))
                }),
            );
            hashes.push(parse_hash(&k.hash).expect("validated configuration"));
        }
        let mut by_prefix: std::collections::HashMap<u64, Vec<usize>> = Default::default();
        for (i, h) in hashes.iter().enumerate() {
            by_prefix.entry(prefix(h)).or_default().push(i);
        }
        Keyring {
            keys,
            hashes,
            by_prefix,
            metrics: cfg.metrics,
        }
    }

    /// Whether any key is configured (authentication on).
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key an `Authorization` header value names.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Arc<Key>, AuthError> {
        let value = header.ok_or(AuthError::Missing)?;
        if value.len() > AUTHORIZATION_BYTES_MAX {
            return Err(AuthError::Oversized);
        }
        let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        let token = token.trim();
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
}

#[cfg(test)]
mod tests;
