//! Access control: API keys with roles and tenant scopes, JWT bearer
//! tokens mapped to the same identities ([`jwt`]), and their rate limits
//! ([`rate`]).
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
//!    key whose settings did not change (and for every JWT identity).
//! 4. A bearer token that parses as a JWT is only ever checked as a JWT;
//!    anything else only as an API key.

mod error;
pub mod jwt;
mod keyring;
pub mod rate;

pub use error::{AuthError, AUTH_FAILURE_REASONS};
pub use keyring::Keyring;
pub use rate::{Period, Rate, RateLimit, RATE_MAX};

use governor::clock::{Clock as _, DefaultClock};
use governor::DefaultDirectRateLimiter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "stele_";
/// Characters after the prefix: 32 bytes in unpadded base64url.
pub const TOKEN_BODY_CHARS: usize = 43;
/// Longest `Authorization` header value looked at for an API key; longer
/// ones are refused without hashing (JWTs: [`jwt::JWT_BYTES_MAX`]).
pub const AUTHORIZATION_BYTES_MAX: usize = 512;
/// Longest key id: what an event's `ingested_by` holds.
pub const KEY_ID_BYTES_MAX: usize = crate::event::INGESTED_BY_BYTES_MAX;
/// Most keys in a configuration (each request compares against all).
pub const KEYS_MAX: usize = 10_000;
/// Most JWT identities whose rate-limit state is kept (beyond it, idle
/// ones are forgotten).
pub const JWT_IDENTITIES_MAX: usize = 100_000;
/// The route groups `[auth.routes.<name>]` may limit on their own (the
/// route names of the metrics).
pub const ROUTE_GROUPS: [&str; 13] = [
    "list",
    "get",
    "search",
    "stats",
    "history",
    "timeline",
    "stream",
    "checkpoint",
    "ingest",
    "export",
    "segments",
    "retention",
    "holds",
];
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
    /// The same as `"N/s"`, `"N/min"` or `"N/h"` (instead of `rate_per_sec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Burst of the key's rate (default: the rate's count).
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
    /// Rate limits of route groups (`[auth.routes.stats]`), in place of
    /// the role's for requests of that route.
    pub routes: BTreeMap<String, RateLimit>,
    /// The keys. None (and no `[auth.jwt]`): no authentication, loopback
    /// only.
    pub keys: Vec<KeyConfig>,
    /// `[auth.jwt]`: JWT bearer tokens are accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<jwt::JwtConfig>,
}

/// Default of `auth.streams_per_key_max`.
pub const STREAMS_PER_KEY_DEFAULT: u32 = 16;

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            metrics: MetricsAccess::Public,
            streams_per_key_max: STREAMS_PER_KEY_DEFAULT,
            roles: RoleLimits::default(),
            routes: BTreeMap::new(),
            keys: Vec::new(),
            jwt: None,
        }
    }
}

pub(crate) fn valid_id(id: &str) -> bool {
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
        for (name, limit) in &self.routes {
            let k = format!("auth.routes.{name}");
            if !ROUTE_GROUPS.contains(&name.as_str()) {
                return err(
                    &k,
                    format!(
                        "{k}: unknown route {name:?}: one of {}",
                        ROUTE_GROUPS.join(", ")
                    ),
                );
            }
            if let Err(m) = limit.validate(&k) {
                return err(&k, m);
            }
        }
        if let Some(j) = &self.jwt {
            jwt::Verifier::load(j)?;
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
                rate: key.rate,
                burst: key.burst.unwrap_or(0),
            };
            if let Err(m) = own.validate(&at) {
                return err(&at, format!("{name}: {m}"));
            }
            if key.burst.is_some() && key.rate_per_sec.is_none() && key.rate.is_none() {
                return err(
                    &format!("{at}.burst"),
                    format!("{name}: burst needs rate (or rate_per_sec) on the same key"),
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
        if self.keys.is_empty() && self.jwt.is_none() && !listen.ip().is_loopback() {
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

/// What a key's buckets were built from: reloads keep a key's state when
/// this is unchanged.
type BuiltFrom = (KeyConfig, RoleLimits, BTreeMap<String, RateLimit>, u32);

/// A bucket and the rate it was built for (for messages).
type Bucket = (DefaultDirectRateLimiter, Rate);

fn bucket(limit: RateLimit) -> Option<Bucket> {
    limit
        .quota()
        .map(|q| (DefaultDirectRateLimiter::direct(q), limit.rate()))
}

/// A configured key, or a JWT's identity, at run time.
pub struct Key {
    /// The configured id (a JWT's `id_prefix` + `sub`).
    pub id: String,
    roles: [bool; 4],
    /// The tenants it sees.
    pub scope: Scope,
    /// The key's own bucket (`rate`/`rate_per_sec` on the key), else one
    /// bucket per route group of `[auth.routes]`, else per role from
    /// `[auth.roles]`.
    own: Option<Bucket>,
    by_route: Vec<(String, Bucket)>,
    by_role: [Option<Bucket>; 4],
    /// Concurrent streams allowed and open.
    pub streams_max: u32,
    streams_open: AtomicU32,
    built_from: BuiltFrom,
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
    /// The bucket's rate.
    pub rate: Rate,
}

impl RateLimited {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        (self.wait.as_secs_f64().ceil() as u64).max(1)
    }
}

impl Key {
    fn build(
        cfg: &KeyConfig,
        roles: &RoleLimits,
        routes: &BTreeMap<String, RateLimit>,
        streams_default: u32,
    ) -> Key {
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
        let own_rate = cfg.rate.or(cfg.rate_per_sec.map(Rate::per_sec));
        let own = own_rate.and_then(|r| {
            bucket(RateLimit {
                rate_per_sec: 0,
                rate: Some(r),
                burst: cfg.burst.unwrap_or(0),
            })
        });
        let by_route = if own_rate.is_some() {
            Vec::new()
        } else {
            routes
                .iter()
                .filter_map(|(name, l)| bucket(*l).map(|b| (name.clone(), b)))
                .collect()
        };
        let by_role = Role::ALL.map(|r| {
            if own_rate.is_some() || !has[r.index()] {
                None
            } else {
                bucket(roles.of(r))
            }
        });
        Key {
            id: cfg.id.clone(),
            roles: has,
            scope,
            own,
            by_route,
            by_role,
            streams_max: cfg.streams_max.unwrap_or(streams_default),
            streams_open: AtomicU32::new(0),
            built_from: (cfg.clone(), *roles, routes.clone(), streams_default),
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

    /// Takes one token from the bucket that applies to a request of `role`
    /// on the route named `route`.
    pub fn check_rate(&self, role: Role, route: &str) -> Result<(), RateLimited> {
        let found = self.own.as_ref().or_else(|| {
            self.by_route
                .iter()
                .find(|(n, _)| n == route)
                .map(|(_, b)| b)
                .or(self.by_role[role.index()].as_ref())
        });
        let Some((limiter, rate)) = found else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| RateLimited {
            wait: not_until.wait_time_from(DefaultClock::default().now()),
            rate: *rate,
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

#[cfg(test)]
mod tests;
