//! `stele serve`: the HTTP/JSON API on hyper 1 + tokio.
//!
//! Owns the routes, the request limits ([`Limits`]), the problem+json error
//! shape, the metrics endpoint and graceful shutdown.
//!
//! Invariants:
//! 1. An ingest request is all-or-nothing: every event is validated before
//!    any is appended, and 201 is sent only after the log made them durable.
//! 2. Every error is `application/problem+json` with a stable `type` (except
//!    what hyper answers itself before a request exists: a request head
//!    larger than its read buffer, or malformed HTTP).
//! 3. Blocking work (log reads, index queries) runs on the blocking pool,
//!    never on the async workers.
//! 4. A streamed body that cannot be completed (an export whose query fails,
//!    a shutdown mid-export) ends with an error, so the client sees a
//!    truncated chunked response, never a clean end.
//! 5. SIGTERM/SIGINT: stop accepting, let in-flight requests finish (at most
//!    `shutdown_grace_secs`), end streams, then close the indexes (final
//!    checkpoint) and the log (every queued append answered) before exit.
//! 6. With API keys configured, a request reaches its handler only after
//!    authentication (401), its key's rate limit (429) and the route's role
//!    (403), in that order; handlers apply the key's tenant scope to every
//!    read and write (see `crate::auth`), and reads are recorded in the log
//!    itself (see `crate::access`).

use crate::access::{Access, Auditor, Phase};
use crate::auth::{AuthConfig, AuthError, Key, Keyring, Role, Scope};
use crate::clock::{Clock, SystemClock};
use crate::event::{self, Event, FieldError, Provenance, StoredEvent};
use crate::index::{IndexConfig, Indexes};
use crate::log::{Log, LogConfig};
use crate::metrics::{family, Histogram};
use crate::query::{Engine, Query, QueryError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Default listen address: loopback only.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7070";

/// The limits of `stele serve`. Every one has a default fit for one host;
/// each can be changed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted (bytes); larger bodies get 413.
    #[arg(long, default_value_t = Limits::DEFAULT.body_bytes_max)]
    pub body_bytes_max: usize,
    /// Most events in one ingest request.
    #[arg(long, default_value_t = Limits::DEFAULT.events_per_request_max)]
    pub events_per_request_max: usize,
    /// Largest request target (path and query, bytes); longer gets 414.
    #[arg(long, default_value_t = Limits::DEFAULT.url_bytes_max)]
    pub url_bytes_max: usize,
    /// Largest total of the request's header lines (bytes); more gets 431.
    #[arg(long, default_value_t = Limits::DEFAULT.header_bytes_max)]
    pub header_bytes_max: usize,
    /// Seconds a client has to send a request's head (slow clients are
    /// disconnected).
    #[arg(long, default_value_t = Limits::DEFAULT.header_read_timeout_secs)]
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take from its head to its response head
    /// (reading the body included); exceeded → 503 `request-timeout`.
    /// Streamed bodies (exports, streams) are not bounded by it.
    #[arg(long, default_value_t = Limits::DEFAULT.request_timeout_secs)]
    pub request_timeout_secs: u64,
    /// Seconds a response may wait for a client that takes no bytes at all
    /// (it stopped reading) before its connection is closed: frees the
    /// stream slot and buffers of SSE clients and exports nobody reads.
    #[arg(long, default_value_t = Limits::DEFAULT.write_stall_timeout_secs)]
    pub write_stall_timeout_secs: u64,
    /// Most connections served at once; further clients wait in the listen
    /// backlog until one closes.
    #[arg(long, default_value_t = Limits::DEFAULT.connections_max)]
    pub connections_max: usize,
    /// Most live streams (`/v1/stream`) at once; more get 503.
    #[arg(long, default_value_t = Limits::DEFAULT.streams_max)]
    pub streams_max: usize,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = Limits::DEFAULT.shutdown_grace_secs)]
    pub shutdown_grace_secs: u64,
    /// Bytes that must stay free on the data directory's filesystem: below
    /// it ingest answers 507 (reads keep working) until space is back.
    #[arg(long, default_value_t = Limits::DEFAULT.disk_reserve_bytes)]
    pub disk_reserve_bytes: u64,
}

impl Limits {
    /// The embedded defaults.
    pub const DEFAULT: Limits = Limits {
        body_bytes_max: 16 * 1024 * 1024,
        events_per_request_max: 10_000,
        url_bytes_max: 8 * 1024,
        header_bytes_max: 16 * 1024,
        header_read_timeout_secs: 10,
        request_timeout_secs: 30,
        write_stall_timeout_secs: 60,
        connections_max: 4096,
        streams_max: 1024,
        shutdown_grace_secs: 5,
        disk_reserve_bytes: 256 * 1024 * 1024,
    };

    /// Checks every limit is usable; the error names the limit.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("body_bytes_max", self.body_bytes_max as u64),
            ("events_per_request_max", self.events_per_request_max as u64),
            ("url_bytes_max", self.url_bytes_max as u64),
            ("header_bytes_max", self.header_bytes_max as u64),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("write_stall_timeout_secs", self.write_stall_timeout_secs),
            ("connections_max", self.connections_max as u64),
            ("streams_max", self.streams_max as u64),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.url_bytes_max > 1024 * 1024 || self.header_bytes_max > 1024 * 1024 {
            return Err("url_bytes_max and header_bytes_max must be at most 1 MiB".into());
        }
        if self.connections_max > tokio::sync::Semaphore::MAX_PERMITS {
            return Err("connections_max is too large".into());
        }
        Ok(())
    }

    /// hyper's read buffer: room for the largest head we accept, so that
    /// heads over our limits reach us and get a problem+json answer.
    fn read_buffer_bytes(&self) -> usize {
        (self.url_bytes_max + self.header_bytes_max + 8 * 1024).max(8 * 1024)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What `stele serve` needs.
#[derive(Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Request limits.
    pub limits: Limits,
    /// TTLs and legal holds.
    pub retention: crate::retention::RetentionConfig,
    /// The segment log's settings (`[log]` of the configuration).
    pub log: LogConfig,
    /// The indexes' settings (`[index]` of the configuration).
    pub index: IndexConfig,
    /// `[seal]`: checkpoints, the witness, scrubbing.
    pub seal: crate::seal::SealConfig,
    /// `[auth]`: API keys (none: no authentication, loopback only).
    pub auth: AuthConfig,
    /// `[tls]`: serve HTTPS.
    pub tls: Option<crate::tls::TlsConfig>,
    /// Re-reads the reloadable settings (on SIGHUP): limits, retention, keys
    /// and the TLS certificate.
    pub reload: Option<Reloader>,
}

/// What a SIGHUP re-reads.
pub struct Reloaded {
    /// `[limits]` (except `connections_max`).
    pub limits: Limits,
    /// `[retention]`.
    pub retention: crate::retention::RetentionConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[tls]`: the certificate and key are read again (switching TLS on or
    /// off needs a restart).
    pub tls: Option<crate::tls::TlsConfig>,
}

/// Produces fresh reloadable settings, or says why it cannot.
pub type Reloader = Arc<dyn Fn() -> Result<Reloaded, String> + Send + Sync>;

struct App {
    engine: Engine,
    clock: Arc<dyn Clock>,
    /// Client ids appended (or being appended) and not yet visible in the key
    /// index, with a digest of their content: what makes retries idempotent
    /// before the indexer catches up, and two concurrent posts of one id
    /// safe. Keyed by id then tenant (ids are per tenant), so the entries of
    /// one id are a range.
    recent: std::sync::Mutex<BTreeMap<RecentKey, Recent>>,
    /// `recent`'s size that triggers the next prune.
    recent_prune_at: AtomicU64,
    /// Requests and their total duration (µs), by route and status.
    requests: std::sync::Mutex<RequestCounts>,
    /// Request latency by route (head to response head).
    latency: HashMap<&'static str, Histogram>,
    /// Time ingest requests wait for their events to become durable.
    append_seconds: Histogram,
    /// Events accepted over HTTP.
    ingested: AtomicU64,
    /// Reloadable on SIGHUP; read through [`App::limits`].
    limits: std::sync::RwLock<Limits>,
    /// Becomes true on SIGTERM/SIGINT: streams end, exports stop.
    stopping: tokio::sync::watch::Receiver<bool>,
    streams_open: AtomicU64,
    exports_open: AtomicU64,
    connections: Arc<tokio::sync::Semaphore>,
    /// SHA-256 of sealed segments (they never change), by file name.
    sealed_sha256: std::sync::Mutex<HashMap<String, String>>,
    data_dir: PathBuf,
    /// Reloadable on SIGHUP; read through [`App::retention`].
    retention: std::sync::RwLock<crate::retention::RetentionConfig>,
    /// Legal holds set over HTTP (persisted in DATA_DIR/holds.json).
    /// Retention runs only from its one task, so runs never overlap.
    holds: std::sync::Mutex<Vec<crate::retention::Hold>>,
    /// Tenants present in sealed segments (they never change), by file name.
    segment_tenants: std::sync::Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
    retention_dropped_days: AtomicU64,
    retention_dropped_events: AtomicU64,
    /// The digester's counters (signed digests, failed runs).
    digests: Arc<crate::digest::DigestStats>,
    /// What the seal knows (damaged segments, unsigned days, scrubbing).
    seal_status: Arc<crate::seal::SealStatus>,
    /// The checkpointer's counters and newest checkpoint (none without a key).
    checkpoints: Option<Arc<crate::seal::checkpoint::CheckpointStats>>,
    /// The API keys in force (reloaded on SIGHUP); empty: no authentication.
    keys: std::sync::RwLock<Arc<Keyring>>,
    /// The address served (keys cannot all be removed from a non-loopback
    /// one by a reload).
    listen: SocketAddr,
    /// The certificate in force, when serving TLS.
    tls: Option<Arc<crate::tls::CertResolver>>,
    /// Writes the `audit_access` events.
    auditor: Auditor,
    /// 401s by reason (`AuthError` order).
    auth_failures: [AtomicU64; 5],
    /// 403s (a key without the route's role, or writing another tenant).
    forbidden: AtomicU64,
    /// 429s (rate limits and per-key stream limits).
    rate_limited: AtomicU64,
    /// Connections closed because the client read nothing for
    /// `write_stall_timeout_secs` (see [`crate::stall`]).
    write_stalls: Arc<AtomicU64>,
}

/// Who is asking: the key (when keys are configured and the route needs
/// one) and, for audited routes, what to record.
#[derive(Clone, Default)]
struct Caller {
    key: Option<Arc<Key>>,
    access: Option<Arc<Access>>,
    /// The peer address of the connection (stamped on ingested events).
    addr: Option<std::net::IpAddr>,
}

impl Caller {
    /// The tenants the caller sees.
    fn scope(&self) -> Scope {
        self.key.as_ref().map_or(Scope::All, |k| k.scope.clone())
    }

    /// Narrows a filter to the caller's tenants.
    fn restrict(&self, filter: &mut crate::index::text::Filter) {
        if let Some(k) = &self.key {
            filter.tenants = k.scope.tenants().map(<[String]>::to_vec);
        }
    }
}

/// The `end` audit record of an export or a stream, written when dropped
/// (however the body ends).
struct EndRecord {
    app: Arc<App>,
    access: Option<Arc<Access>>,
    /// Events sent so far.
    sent: u64,
    /// Whether every matching event was sent (exports).
    complete: bool,
}

impl EndRecord {
    fn new(app: &Arc<App>, access: Option<Arc<Access>>) -> EndRecord {
        EndRecord {
            app: app.clone(),
            access,
            sent: 0,
            complete: false,
        }
    }
}

impl Drop for EndRecord {
    fn drop(&mut self) {
        let Some(a) = &self.access else { return };
        let mut extra = serde_json::Map::new();
        if a.route == "export" {
            extra.insert("complete".into(), Value::Bool(self.complete));
        }
        if let Some(ev) = a.event(Phase::End, 200, Some(self.sent), extra) {
            self.app.auditor.record_detached(ev);
        }
    }
}

/// Events a response carries, for its audit record (a response extension).
#[derive(Clone, Copy)]
struct ResultCount(u64);

fn counted(mut resp: Resp, n: usize) -> Resp {
    resp.extensions_mut().insert(ResultCount(n as u64));
    resp
}

/// The reasons of [`AuthError`], in `App::auth_failures` order.
const AUTH_FAILURES: [AuthError; 5] = [
    AuthError::Missing,
    AuthError::NotBearer,
    AuthError::Oversized,
    AuthError::Malformed,
    AuthError::Unknown,
];

/// (route, status) → (requests, total µs).
type RequestCounts = HashMap<(&'static str, u16), (u64, u64)>;

/// Every route name used in metrics (see [`route_name`]).
const ROUTES: [&str; 17] = [
    "ingest",
    "list",
    "get",
    "search",
    "stats",
    "export",
    "stream",
    "history",
    "timeline",
    "segments",
    "checkpoint",
    "retention",
    "holds",
    "healthz",
    "readyz",
    "metrics",
    "other",
];

/// One unit of an open-things gauge (streams, exports), given back when
/// dropped; owns its `App` so it can travel into spawned tasks.
struct Held {
    app: Arc<App>,
    gauge: fn(&App) -> &AtomicU64,
}

impl Held {
    /// Counts one more; returns the guard and how many were open before.
    fn take(app: &Arc<App>, gauge: fn(&App) -> &AtomicU64) -> (Held, u64) {
        let before = gauge(app).fetch_add(1, Ordering::Relaxed);
        let held = Held {
            app: app.clone(),
            gauge,
        };
        (held, before)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        (self.gauge)(&self.app).fetch_sub(1, Ordering::Relaxed);
    }
}

/// `/readyz` answers 503 while the indexes trail the log by more than this.
pub const READY_LAG_EVENTS_MAX: u64 = 100_000;

/// An id reserved by an ingest request.
#[derive(Clone, Copy)]
struct Recent {
    /// `None` while its request is in flight.
    seq: Option<u64>,
    /// SHA-256 of the event's canonical encoding.
    digest: [u8; 32],
}

/// An event id and its tenant (`None`: no tenant): ids are unique per tenant.
type RecentKey = (String, Option<String>);

/// The `recent` key of an event.
fn recent_key(ev: &Event) -> RecentKey {
    (ev.id.clone(), ev.tenant.clone())
}

/// At most this many tenants are named in an `ambiguous-id` problem.
const AMBIGUOUS_TENANTS_MAX: usize = 100;

/// Entries kept in `recent` before pruning those the key index has.
const RECENT_PRUNE_AT: usize = 100_000;

fn digest(ev: &Event) -> [u8; 32] {
    use sha2::Digest;
    let mut buf = Vec::new();
    event::encode_event(ev, &mut buf);
    sha2::Sha256::digest(&buf).into()
}

/// What to do with an ingest request whose events carry client ids.
enum Idempotency {
    /// None of the ids is known in its tenant: append (the ids are now
    /// reserved).
    New(Vec<(RecentKey, [u8; 32])>),
    /// Every event was stored before with the same content: their seqs.
    Replay(Vec<u64>),
    /// Conflict: a sentence saying which id and why.
    Conflict(String),
}

impl App {
    /// The limits in force (SIGHUP may change them).
    fn limits(&self) -> Limits {
        *self.limits.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys in force (SIGHUP may change them).
    fn keyring(&self) -> Arc<Keyring> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The retention settings in force (SIGHUP may change them).
    fn retention(&self) -> crate::retention::RetentionConfig {
        self.retention
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Looks every client id up in its event's tenant (recent reservations,
    /// then the key index and the log) and reserves the new ones, all under
    /// one lock. Another tenant's ids are never looked at: a tenant can
    /// neither learn that one exists nor reserve it.
    fn reserve(&self, events: &[Event], client_id: &[bool]) -> Result<Idempotency, QueryError> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // Prune when the map doubled since the last prune (at least
        // RECENT_PRUNE_AT), so a lagging indexer never makes every request
        // walk the whole map.
        let prune_at = self.recent_prune_at.load(Ordering::Relaxed) as usize;
        if recent.len() >= prune_at.max(RECENT_PRUNE_AT) {
            let indexed = self.engine.indexes().indexed_seq();
            recent.retain(|_, r| r.seq.is_none_or(|s| s > indexed));
            self.recent_prune_at
                .store(recent.len() as u64 * 2, Ordering::Relaxed);
        }
        let mut known = Vec::new();
        let mut fresh = Vec::new();
        let mut in_request = std::collections::HashSet::new();
        for (ev, &client) in events.iter().zip(client_id) {
            if !client {
                continue;
            }
            let d = digest(ev);
            if !in_request.insert((ev.id.as_str(), ev.tenant.as_deref())) {
                return Ok(Idempotency::Conflict(format!(
                    "id {:?} appears twice in this request",
                    ev.id
                )));
            }
            let key = recent_key(ev);
            let stored = match recent.get(&key) {
                Some(r) => Some((r.seq, r.digest)),
                None => match self.engine.get_by_id(&ev.id, ev.tenant.as_deref())? {
                    Some(old) => Some((Some(old.seq), digest(&old.event))),
                    None => None,
                },
            };
            match stored {
                None => fresh.push((key, d)),
                Some((_, od)) if od != d => {
                    return Ok(Idempotency::Conflict(format!(
                        "id {:?} is already stored with different content",
                        ev.id
                    )))
                }
                Some((None, _)) => {
                    return Ok(Idempotency::Conflict(format!(
                        "a request with id {:?} is still being stored; retry",
                        ev.id
                    )))
                }
                Some((Some(seq), _)) => known.push(seq),
            }
        }
        if !known.is_empty() {
            if known.len() == events.len() {
                return Ok(Idempotency::Replay(known));
            }
            return Ok(Idempotency::Conflict(
                "the request mixes events already stored with new ones; send the new ones alone"
                    .into(),
            ));
        }
        for (id, d) in &fresh {
            recent.insert(
                id.clone(),
                Recent {
                    seq: None,
                    digest: *d,
                },
            );
        }
        Ok(Idempotency::New(fresh))
    }

    /// The events with `id` in the tenants `among` (`None`: every tenant,
    /// and the events without one), at most [`AMBIGUOUS_TENANTS_MAX`] + 1,
    /// in tenant order (no tenant first). Reads your writes: an event
    /// acknowledged moments ago is found through `recent` before the key
    /// index has it. O(log n) per tenant asked, or one range scan of the id.
    fn find_by_id(
        &self,
        id: &str,
        among: Option<&[Option<String>]>,
    ) -> Result<Vec<StoredEvent>, QueryError> {
        let max = AMBIGUOUS_TENANTS_MAX + 1;
        let mut seqs: BTreeMap<Option<String>, u64> = BTreeMap::new();
        {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            match among {
                Some(tenants) => {
                    for t in tenants {
                        let r = recent.get(&(id.to_owned(), t.clone()));
                        if let Some(seq) = r.and_then(|r| r.seq) {
                            seqs.insert(t.clone(), seq);
                        }
                    }
                }
                None => {
                    let from: RecentKey = (id.to_owned(), None);
                    for ((_, t), r) in recent
                        .range(from..)
                        .take_while(|((i, _), _)| i == id)
                        .take(max)
                    {
                        if let Some(seq) = r.seq {
                            seqs.insert(t.clone(), seq);
                        }
                    }
                }
            }
        }
        match among {
            Some(tenants) => {
                for t in tenants {
                    if seqs.contains_key(t) {
                        continue;
                    }
                    if let Some(seq) = self.engine.indexes().kv.seq_of_id(id, t.as_deref())? {
                        seqs.insert(t.clone(), seq);
                    }
                }
            }
            None => {
                for (t, seq) in self.engine.tenants_of_id(id, max)? {
                    seqs.entry(t).or_insert(seq);
                }
            }
        }
        let mut out = Vec::new();
        for (t, seq) in seqs.into_iter().take(max) {
            if let Some(ev) = self.engine.get_checked(seq, id, t.as_deref())? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Records the seqs of reserved ids, or releases them after a failure.
    fn settle(&self, reserved: &[(RecentKey, [u8; 32])], events: &[Event], first_seq: Option<u64>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match first_seq {
            Some(first) => {
                // Every id, generated ones too (digest unknown: a later post
                // of a generated id is a conflict, never a replay), so a
                // get by id right after the 201 finds it.
                for (i, ev) in events.iter().enumerate() {
                    recent
                        .entry(recent_key(ev))
                        .or_insert(Recent {
                            seq: None,
                            digest: [0; 32],
                        })
                        .seq = Some(first + i as u64);
                }
            }
            None => {
                for (id, _) in reserved {
                    recent.remove(id);
                }
            }
        }
    }
}

/// Why a streamed body was cut short.
type BodyError = Box<dyn std::error::Error + Send + Sync>;
type Body = http_body_util::combinators::BoxBody<Bytes, BodyError>;
type Resp = Response<Body>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn json_response(status: StatusCode, body: &Value) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .expect("valid response")
}

/// A problem+json response (RFC 9457) with a stable `type`.
fn problem(status: StatusCode, kind: &str, title: &str, detail: String, extra: Value) -> Resp {
    let mut body = json!({
        "type": format!("https://stele.dev/problems/{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    Response::builder()
        .status(status)
        .header("content-type", "application/problem+json")
        .body(full(body.to_string()))
        .expect("valid response")
}

fn query_problem(e: QueryError) -> Resp {
    match &e {
        QueryError::BadParam { param, .. } => problem(
            StatusCode::BAD_REQUEST,
            "invalid-parameter",
            "Invalid query parameter",
            e.to_string(),
            json!({ "field": param }),
        ),
        QueryError::BadCursor(_) => problem(
            StatusCode::BAD_REQUEST,
            "invalid-cursor",
            "Invalid cursor",
            e.to_string(),
            json!({ "field": "cursor" }),
        ),
        QueryError::BadText(_) => problem(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid full-text query",
            e.to_string(),
            json!({ "field": "q" }),
        ),
        QueryError::Gone { first_seq, .. } => problem(
            StatusCode::GONE,
            "gone",
            "Dropped by retention",
            e.to_string(),
            json!({ "first_seq": first_seq }),
        ),
        QueryError::Log(crate::log::Error::Io { path, source, .. }) => {
            // Name the segment (not the host's path) for the operator.
            let segment = path.file_name().map(|n| n.to_string_lossy().into_owned());
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage-failure",
                "Storage failure",
                format!(
                    "could not read segment {} ({source}): the answer would be incomplete; \
                     see /readyz and the daemon's log",
                    segment.as_deref().unwrap_or("?")
                ),
                json!({ "segment": segment }),
            )
        }
        QueryError::Log(crate::log::Error::Corruption {
            path, seq, detail, ..
        }) => {
            // A damaged or changed segment: its events are never served as
            // genuine. Name the segment (not the host's path).
            let segment = path.file_name().map(|n| n.to_string_lossy().into_owned());
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "segment-damaged",
                "Damaged segment",
                format!(
                    "segment {} is damaged ({detail}): its events are not served; see /readyz \
                     and run `stele verify`",
                    segment.as_deref().unwrap_or("?")
                ),
                json!({ "segment": segment, "seq": seq }),
            )
        }
        QueryError::Index(_) | QueryError::Log(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage-failure",
            "Storage failure",
            e.to_string(),
            json!({}),
        ),
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts down gracefully
/// (invariant 5).
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    cfg.limits
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid limit: {e}"))?;
    cfg.auth
        .validate()
        .map_err(|(_, e)| anyhow::anyhow!("invalid configuration: {e}"))?;
    cfg.auth
        .check_listen(cfg.listen)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = match &cfg.tls {
        Some(t) => Some(crate::tls::CertResolver::new(t).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let acceptor = match &tls {
        Some(r) => Some(tokio_rustls::TlsAcceptor::from(
            r.server_config().map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
        None => None,
    };
    // Signals first: a SIGTERM during recovery must not kill us mid-open.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (hup_tx, hup_rx) = tokio::sync::mpsc::unbounded_channel();
    watch_signals(stop_tx, hup_tx)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let data_dir = cfg.data_dir.clone();
    let log_config = crate::seal::with_evidence(
        cfg.log.clone(),
        &cfg.data_dir,
        cfg.seal.witness_dir.as_deref(),
    );
    let index_config = cfg.index.clone();
    let clock2 = clock.clone();
    // systemd: STATUS= during recovery and catch-up, and more start time
    // while the indexes advance (a long rebuild must not hit
    // TimeoutStartSec=). A weak handle: shutdown waits for the last strong one.
    let opened: Arc<std::sync::OnceLock<(std::sync::Weak<Indexes>, u64)>> = Arc::default();
    let opened2 = opened.clone();
    let startup = crate::notify::Startup::begin(move || {
        let (indexes, target) = opened2.get()?;
        Some((indexes.upgrade()?.indexed_seq(), *target))
    });
    let engine = tokio::task::spawn_blocking(move || -> anyhow::Result<Engine> {
        std::fs::create_dir_all(&data_dir)?;
        let log = Arc::new(
            Log::open(&data_dir, log_config, clock2.clone()).map_err(|e| {
                anyhow::anyhow!("cannot open the log in {}: {e}", data_dir.display())
            })?,
        );
        let indexes = Arc::new(Indexes::open(&data_dir, log.clone(), index_config)?);
        let _ = opened.set((Arc::downgrade(&indexes), log.last_seq()));
        catch_up(&log, &indexes)?;
        let key = crate::query::cursor_key(&data_dir)?;
        Ok(Engine::new(log, indexes, clock2, key))
    })
    .await??;
    drop(startup);
    if *stop_rx.borrow() {
        crate::notify::stopping("Stopping: a signal arrived during recovery.");
        tracing::info!("Stopped before serving: a signal arrived during recovery.");
        return Ok(());
    }
    // The seal: checkpoints, the start-up verification, digests, scrubbing.
    let seal = crate::seal::Seal::start(
        &cfg.data_dir,
        engine.log().clone(),
        clock.clone(),
        crate::digest::load_signing_key(&cfg.data_dir)?,
        &cfg.seal,
    );
    let limits = cfg.limits;
    cfg.retention
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid retention setting: {e}"))?;
    let holds = crate::retention::load_holds(&cfg.data_dir)?;
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let engine_log = engine.log().clone();
    let app = Arc::new(App {
        engine,
        clock,
        recent: std::sync::Mutex::new(BTreeMap::new()),
        recent_prune_at: AtomicU64::new(0),
        requests: std::sync::Mutex::new(HashMap::new()),
        latency: ROUTES.iter().map(|r| (*r, Histogram::default())).collect(),
        append_seconds: Histogram::default(),
        ingested: AtomicU64::new(0),
        limits: std::sync::RwLock::new(limits),
        stopping: stop_rx.clone(),
        streams_open: AtomicU64::new(0),
        exports_open: AtomicU64::new(0),
        connections: connections.clone(),
        sealed_sha256: std::sync::Mutex::new(HashMap::new()),
        data_dir: cfg.data_dir.clone(),
        retention: std::sync::RwLock::new(cfg.retention.clone()),
        holds: std::sync::Mutex::new(holds),
        segment_tenants: std::sync::Mutex::new(HashMap::new()),
        digests: seal.digest_stats(),
        seal_status: seal.status(),
        checkpoints: seal.checkpoint_stats(),
        retention_dropped_days: AtomicU64::new(0),
        retention_dropped_events: AtomicU64::new(0),
        keys: std::sync::RwLock::new(Arc::new(Keyring::new(&cfg.auth, None))),
        listen: cfg.listen,
        tls,
        auditor: Auditor::start(engine_log),
        auth_failures: Default::default(),
        forbidden: AtomicU64::new(0),
        rate_limited: AtomicU64::new(0),
        write_stalls: Arc::default(),
    });
    spawn_retention(app.clone());
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!(
        "Listening on {addr} ({scheme}) with data in {}.",
        cfg.data_dir.display()
    );
    let keys = app.keyring().len();
    if keys == 0 {
        tracing::warn!(
            "No API keys configured: serving only on loopback ({addr}), without \
             authentication. Add [[auth.keys]] (see `stele keygen`) to serve other hosts."
        );
    } else {
        tracing::info!("Authentication on: {keys} API keys configured.");
        if acceptor.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(
                "API keys travel in clear text on {addr}: configure [tls] or put a \
                 TLS-terminating proxy in front."
            );
        }
    }
    // systemd: ready only now (recovered, caught up, bound); the watchdog is
    // pinged from this loop (see crate::notify).
    let serving = format!("Serving on {addr} with data in {}.", cfg.data_dir.display());
    let mut watchdog = crate::notify::Watchdog::new(serving.clone());
    crate::notify::ready(&serving);
    spawn_reloader(app.clone(), cfg.reload.clone(), hup_rx, serving.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Built per connection, from the limits in force (SIGHUP may change them).
    let http_for = |l: &Limits| {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.header_read_timeout(Duration::from_secs(l.header_read_timeout_secs))
            .max_buf_size(l.read_buffer_bytes())
            .timer(hyper_util::rt::TokioTimer::new());
        http
    };
    let mut stop = stop_rx.clone();
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p?,
            _ = watchdog.tick() => {
                watchdog.beat(app.engine.log(), app.engine.indexes());
                continue;
            }
            _ = stop.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => {
                        // Small writes (stream events, short answers) go out
                        // at once instead of waiting for the peer's ACK.
                        let _ = s.0.set_nodelay(true);
                        s
                    }
                    Err(e) => {
                        tracing::warn!("Could not accept a connection: {e}.");
                        // Out of file descriptors and the like: let it pass.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let limits = app.limits();
                let http = http_for(&limits);
                let stream = crate::stall::WriteStall::new(
                    stream,
                    Duration::from_secs(limits.write_stall_timeout_secs),
                    app.write_stalls.clone(),
                );
                let app = app.clone();
                let ip = peer.ip();
                let svc = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(app, req, ip).await) }
                });
                let watcher = graceful.watcher();
                let acceptor = acceptor.clone();
                let handshake = Duration::from_secs(limits.header_read_timeout_secs);
                tokio::spawn(async move {
                    let _permit = permit; // held for the connection's life
                    match acceptor {
                        None => {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = watcher.watch(http.serve_connection(io, svc)).await;
                        }
                        // The handshake has the head's time limit: a client
                        // that never finishes it is dropped.
                        Some(acceptor) => match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let io = hyper_util::rt::TokioIo::new(tls);
                                let _ = watcher.watch(http.serve_connection(io, svc)).await;
                            }
                            Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}."),
                            Err(_) => tracing::debug!("TLS handshake with {peer} timed out."),
                        },
                    }
                });
            }
            _ = watchdog.tick() => {
                watchdog.beat(app.engine.log(), app.engine.indexes());
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let grace = Duration::from_secs(app.limits().shutdown_grace_secs);
    crate::notify::stopping(&format!(
        "Stopping: in-flight requests have {} s to finish, then the indexes are \
         checkpointed and the log closed.",
        grace.as_secs()
    ));
    tracing::info!(
        "Shutting down: no new connections; in-flight requests have {} s to finish.",
        grace.as_secs()
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Some requests did not finish within the grace period; closing them.");
    }
    // The scrubber and the digester stop now (they hold log handles); the
    // checkpointer last, after the final appends, so its checkpoint covers
    // everything this process wrote.
    let checkpointer = tokio::task::spawn_blocking(move || seal.stop_but_checkpointer()).await?;
    let log = app.engine.log().clone();
    let indexes = app.engine.indexes().clone();
    drop(app);
    // The indexer's final checkpoint and the writer's last answers need the
    // last handles; give cut connections and ending streams a moment to
    // drop theirs.
    let last_handle = |count: &dyn Fn() -> usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while count() > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let (last, indexed) = tokio::task::spawn_blocking(move || {
        last_handle(&|| Arc::strong_count(&indexes));
        let indexed = match Arc::try_unwrap(indexes) {
            Ok(i) => {
                i.close();
                None
            }
            Err(i) => Some(i.indexed_seq()),
        };
        // The checkpointer holds one handle of its own.
        let own = usize::from(checkpointer.is_some());
        last_handle(&|| Arc::strong_count(&log).saturating_sub(own));
        if let Some(c) = checkpointer {
            c.stop();
        }
        let last = log.last_seq();
        if let Ok(l) = Arc::try_unwrap(log) {
            l.close();
        }
        (last, indexed)
    })
    .await?;
    match indexed {
        None => tracing::info!(
            "Stopped: the log is durable up to seq {last} and the indexes are checkpointed."
        ),
        Some(seq) => tracing::warn!(
            "Stopped: the log is durable up to seq {last}; the indexes were still in use and \
             are checkpointed at least up to seq {seq}: the next start catches them up."
        ),
    }
    Ok(())
}

/// Waits until the indexes hold every event the log held at open, so that
/// no request sees an acknowledged event missing (a 404 by id, a retry
/// stored twice because the key index has not seen its id yet).
fn catch_up(log: &Log, indexes: &Indexes) -> anyhow::Result<()> {
    let target = log.last_seq();
    let started = std::time::Instant::now();
    let mut said = started;
    while !indexes.wait_indexed(target, Duration::from_secs(1)) {
        if let Some(f) = indexes.failure() {
            anyhow::bail!("the indexer stopped while catching up with the log: {f}");
        }
        if said.elapsed() >= Duration::from_secs(5) {
            said = std::time::Instant::now();
            tracing::info!(
                "Catching the indexes up with the log: seq {} of {target} after {} s.",
                indexes.indexed_seq(),
                started.elapsed().as_secs()
            );
        }
    }
    if started.elapsed() >= Duration::from_secs(1) {
        tracing::info!(
            "The indexes caught up with the log (seq {target}) in {:.1} s.",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// SIGTERM or SIGINT sets `stop`; a second one exits at once (every
/// acknowledged event is already durable, so only in-flight answers are
/// lost).
fn watch_signals(
    stop: tokio::sync::watch::Sender<bool>,
    hup: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("stele-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    tracing::info!("Received SIGHUP; reloading the configuration.");
                    let _ = hup.send(());
                    continue;
                }
                seen += 1;
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                if seen == 1 {
                    tracing::info!("Received {name}; stopping.");
                    let _ = stop.send(true);
                } else {
                    tracing::warn!("Received {name} again; exiting now.");
                    std::process::exit(1);
                }
            }
        })?;
    Ok(())
}

async fn route(app: Arc<App>, req: Request<Incoming>, ip: std::net::IpAddr) -> Resp {
    let started = std::time::Instant::now();
    let name = route_name(req.method(), req.uri().path());
    // Before anything can record the request (an audit event, a refusal).
    let refused = check_head(&app.limits(), &req).or_else(|| check_credentials(&req));
    let resp = match refused {
        Some(r) => r,
        None => match authorize(&app, &req, name, ip) {
            Err(r) => *r,
            Ok(mut caller) => {
                caller.addr = Some(ip);
                let timeout = Duration::from_secs(app.limits().request_timeout_secs);
                let access = caller.access.clone();
                let resp =
                    match tokio::time::timeout(timeout, dispatch(app.clone(), req, caller)).await {
                        Ok(r) => r,
                        Err(_) => problem(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "request-timeout",
                            "Request timed out",
                            format!(
                            "the request took longer than {} s (request_timeout_secs); an ingest \
                             that timed out may still be stored: retry it with the same event ids",
                            timeout.as_secs()
                        ),
                            json!({ "limit": timeout.as_secs() }),
                        ),
                    };
                match access {
                    Some(a) => audit_response(&app, &a, resp).await,
                    None => resp,
                }
            }
        },
    };
    let took = started.elapsed();
    if let Some(h) = app.latency.get(name) {
        h.observe(took);
    }
    let mut r = app.requests.lock().unwrap_or_else(|p| p.into_inner());
    let e = r.entry((name, resp.status().as_u16())).or_default();
    e.0 += 1;
    e.1 += took.as_micros() as u64;
    resp
}

/// The role a route needs when keys are configured (`None`: public).
fn required_role(keys: &Keyring, name: &str) -> Option<Role> {
    match name {
        "ingest" => Some(Role::Ingest),
        "list" | "get" | "search" | "stats" | "stream" | "history" | "timeline" | "checkpoint" => {
            Some(Role::Read)
        }
        "export" => Some(Role::Export),
        "segments" | "retention" | "holds" => Some(Role::Admin),
        "metrics" if keys.metrics == crate::auth::MetricsAccess::Admin => Some(Role::Admin),
        _ => None,
    }
}

/// Authentication (401), the key's rate limit (429), the route's role
/// (403), in that order; the caller on success.
fn authorize(
    app: &Arc<App>,
    req: &Request<Incoming>,
    name: &'static str,
    ip: std::net::IpAddr,
) -> Result<Caller, Box<Resp>> {
    let keys = app.keyring();
    let role = match required_role(&keys, name) {
        Some(r) if keys.enabled() => r,
        _ => return Ok(Caller::default()),
    };
    let header = req.headers().get(hyper::header::AUTHORIZATION);
    let key = match keys.authenticate(header.map(|h| h.as_bytes())) {
        Ok(k) => k,
        Err(e) => {
            let i = AUTH_FAILURES.iter().position(|x| *x == e).unwrap_or(0);
            app.auth_failures[i].fetch_add(1, Ordering::Relaxed);
            let mut r = problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                e.detail(),
                json!({}),
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"stele\""),
            );
            return Err(Box::new(r));
        }
    };
    if let Err(limited) = key.check_rate(role) {
        app.rate_limited.fetch_add(1, Ordering::Relaxed);
        let secs = limited.retry_after_secs();
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Rate limit exceeded",
            format!(
                "key {:?} is over its rate limit of {} requests a second for {} requests: retry \
                 in {secs} s",
                key.id,
                limited.rate_per_sec,
                role.as_str()
            ),
            json!({ "retry_after": secs, "limit": limited.rate_per_sec }),
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, secs.into());
        return Err(Box::new(r));
    }
    // Built only for what is recorded (refusals and audited routes), not
    // on the ingest path.
    let access = || {
        Arc::new(Access {
            key: key.clone(),
            route: name,
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            params: query_pairs(req),
            ip,
        })
    };
    if !key.has(role) {
        app.forbidden.fetch_add(1, Ordering::Relaxed);
        // Refused reads are recorded too (the rate limit bounds them).
        if let Some(ev) = access().event(Phase::Request, 403, None, Default::default()) {
            app.auditor.record_detached(ev);
        }
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!(
                "key {:?} has the roles {} and this route needs the {} role",
                key.id,
                key.roles().join(", "),
                role.as_str()
            ),
            json!({ "role": role.as_str() }),
        )));
    }
    // Ingest is not audited: the events posted are their own record.
    let access = (role != Role::Ingest).then(access);
    Ok(Caller {
        key: Some(key),
        access,
        addr: Some(ip),
    })
}

/// Records an audited request after its answer (queued). A 200 export or
/// stream recorded its start itself (see [`record_start`]).
async fn audit_response(app: &Arc<App>, access: &Access, mut resp: Resp) -> Resp {
    let status = resp.status().as_u16();
    if matches!(access.route, "export" | "stream") && status == 200 {
        return resp;
    }
    let count = resp.extensions_mut().remove::<ResultCount>().map(|c| c.0);
    if let Some(ev) = access.event(Phase::Request, status, count, Default::default()) {
        app.auditor.record(ev).await;
    }
    resp
}

/// Records the start of an export or a stream durably, before anything of
/// its body is produced; the refusal when that fails (no unrecorded read).
async fn record_start(app: &Arc<App>, caller: &Caller) -> Option<Resp> {
    let a = caller.access.as_ref()?;
    let ev = a.event(Phase::Start, 200, None, Default::default())?;
    match app.auditor.record_durable(ev).await {
        Ok(()) => None,
        Err(e) => Some(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "log-unavailable",
            "The log cannot accept events",
            format!(
                "this {} cannot be recorded in the audit trail: {e}",
                a.route
            ),
            json!({}),
        )),
    }
}

/// 414 or 431 for a request head over the limits.
fn check_head(limits: &Limits, req: &Request<Incoming>) -> Option<Resp> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.url_bytes_max {
        return Some(problem(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "Request target too long",
            format!(
                "the path and query are {target} bytes, more than url_bytes_max ({})",
                limits.url_bytes_max
            ),
            json!({ "limit": limits.url_bytes_max }),
        ));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers > limits.header_bytes_max {
        return Some(problem(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            format!(
                "the header lines are {headers} bytes, more than header_bytes_max ({})",
                limits.header_bytes_max
            ),
            json!({ "limit": limits.header_bytes_max }),
        ));
    }
    None
}

/// Query parameter names that carry credentials, refused wherever they
/// appear (compared ASCII case-insensitively, with `-` read as `_`). None is
/// a Stele parameter.
const CREDENTIAL_PARAMS: [&str; 11] = [
    "access_token",
    "auth_token",
    "token",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "authorization",
];

/// 400 for a credential in the query string (it would be stored in the
/// audit trail with the parameters, and logged by proxies) and for a request
/// with more than one `Authorization` header (which one counts would be a
/// guess). Checked before anything records the request; the problem never
/// repeats the value.
fn check_credentials(req: &Request<Incoming>) -> Option<Resp> {
    for (name, _) in query_pairs(req) {
        let canonical = name.trim().to_ascii_lowercase().replace('-', "_");
        if let Some(p) = CREDENTIAL_PARAMS.iter().find(|p| **p == canonical) {
            return Some(problem(
                StatusCode::BAD_REQUEST,
                "credentials-in-url",
                "Credentials in the URL",
                format!(
                    "the query string carries a credential (parameter {p:?}); nothing was \
                     recorded: send the API key in the Authorization header (Bearer) instead, \
                     and treat this one as exposed"
                ),
                json!({ "field": p }),
            ));
        }
    }
    let authorizations = req
        .headers()
        .get_all(hyper::header::AUTHORIZATION)
        .iter()
        .count();
    if authorizations > 1 {
        return Some(problem(
            StatusCode::BAD_REQUEST,
            "duplicate-authorization",
            "More than one Authorization header",
            format!(
                "the request has {authorizations} Authorization headers; send exactly one \
                 (Bearer <key>)"
            ),
            json!({ "field": "authorization" }),
        ));
    }
    None
}

/// A bounded set of names for metrics (never the raw path).
fn route_name(method: &Method, path: &str) -> &'static str {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (&Method::POST, ["v1", "events"]) => "ingest",
        (_, ["v1", "events"]) => "list",
        (_, ["v1", "events", _]) => "get",
        (_, ["v1", "search"]) => "search",
        (_, ["v1", "stats"]) => "stats",
        (_, ["v1", "export"]) => "export",
        (_, ["v1", "stream"]) => "stream",
        (_, ["v1", "segments"]) => "segments",
        (_, ["v1", "checkpoint"]) => "checkpoint",
        (_, ["v1", "retention"]) => "retention",
        (_, ["v1", "holds"]) | (_, ["v1", "holds", _]) => "holds",
        (_, ["v1", "entities", _, _, "history"]) => "history",
        (_, ["v1", "users", _, "events"]) => "timeline",
        (_, ["healthz"]) => "healthz",
        (_, ["readyz"]) => "readyz",
        (_, ["metrics"]) => "metrics",
        _ => "other",
    }
}

/// Liveness: 503 once the log refuses appends after a failed fsync, since
/// only a restart (recovery) brings it back; a supervisor may act on it.
fn healthz(app: &App) -> Resp {
    match app.engine.log().poisoned() {
        None => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Some(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy",
            "Unhealthy",
            format!("{e}"),
            json!({"status": "unhealthy"}),
        ),
    }
}

/// Segments whose reads failed: `[{segment, failed_reads, error}]`.
fn unreadable_segments(app: &App) -> Vec<Value> {
    app.engine
        .log()
        .read_failures()
        .into_iter()
        .map(|(segment, n, error)| json!({"segment": segment, "failed_reads": n, "error": error}))
        .collect()
}

/// `GET /v1/checkpoint`: the newest signed checkpoint, as the exact line
/// `DATA_DIR/checkpoint.json` and the witnesses hold (save it off the box;
/// `stele verify --checkpoint FILE` checks a copy of the data against it).
fn checkpoint(app: &App) -> Resp {
    let latest = app.checkpoints.as_ref().and_then(|c| c.latest());
    match latest {
        Some(cp) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            .body(full(cp.encode()))
            .unwrap_or_else(|e| internal(e.to_string())),
        None => problem(
            StatusCode::NOT_FOUND,
            "no-checkpoint",
            "No checkpoint yet",
            if app.checkpoints.is_none() {
                "checkpoints are off: there is no signing key (stele keygen --signing)".into()
            } else {
                "no checkpoint was signed yet: one follows within a checkpoint interval of the \
                 first event"
                    .to_string()
            },
            json!({}),
        ),
    }
}

/// The seal's state for `/readyz`: damaged segments, unsigned days,
/// checkpoints that do not verify or cannot reach the witness.
fn seal_state(app: &App) -> (Value, bool) {
    let log = app.engine.log();
    let status = &app.seal_status;
    let damaged: Vec<Value> = log
        .damaged_segments()
        .into_iter()
        .map(|(segment, why)| json!({"segment": segment, "why": why}))
        .collect();
    let unsigned: Vec<Value> = status
        .unsigned()
        .into_iter()
        .map(|(day, why)| json!({"day": day, "why": why}))
        .collect();
    let checkpoint = app.checkpoints.as_ref().map(|c| {
        json!({
            "seq": c.latest().map(|cp| cp.seq),
            "error": c.error(),
        })
    });
    let checkpoint_error = app
        .checkpoints
        .as_ref()
        .is_some_and(|c| c.error().is_some());
    let problems = status.problems(log);
    let degraded = !damaged.is_empty()
        || !unsigned.is_empty()
        || checkpoint_error
        || status.forged()
        || status.digest_error().is_some()
        || !status.checkpoint_problems().is_empty();
    (
        json!({
            "damaged_segments": damaged,
            "unsigned_days": unsigned,
            "checkpoint": checkpoint,
            "verified_through": status.verified_through(),
            "startup_check_done": status.started_check_done(),
            "digester_runs": status.digester_runs.load(std::sync::atomic::Ordering::Relaxed),
            "scrub_passes": status.scrub.passes.load(std::sync::atomic::Ordering::Relaxed),
            "problems": problems,
        }),
        degraded,
    )
}

fn readyz(app: &App) -> Resp {
    let log = app.engine.log();
    let idx = app.engine.indexes();
    let (last, indexed) = (log.last_seq(), idx.indexed_seq());
    let unreadable = unreadable_segments(app);
    let (seal, seal_degraded) = seal_state(app);
    // Unreadable or damaged segments, unsigned days and a witness that does
    // not answer make the daemon degraded, not unready: it still takes
    // events and answers every query that does not need them.
    let state = json!({
        "log_last_seq": last,
        "indexed_seq": indexed,
        "lag_events": last.saturating_sub(indexed),
        "unreadable_segments": unreadable,
        "seal": seal,
    });
    let why = if let Some(e) = log.poisoned() {
        Some(format!("the log refuses appends: {e}"))
    } else if let Some(f) = idx.failure() {
        Some(format!("the indexer stopped: {f}"))
    } else if last.saturating_sub(indexed) > READY_LAG_EVENTS_MAX {
        Some(format!(
            "the indexes trail the log by more than {READY_LAG_EVENTS_MAX} events"
        ))
    } else {
        None
    };
    match why {
        None => json_response(
            StatusCode::OK,
            &json!({
                "ready": true,
                "degraded": !unreadable.is_empty() || seal_degraded,
                "state": state
            }),
        ),
        Some(detail) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            detail,
            json!({"state": state}),
        ),
    }
}

fn metrics(app: &App) -> Resp {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let log = app.engine.log();
    let m = log.metrics();
    let idx = app.engine.indexes();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "stele_events_appended_total",
        "counter",
        "Events made durable.",
        m.appended.load(Relaxed).to_string(),
    );
    metric(
        "stele_log_bytes_total",
        "counter",
        "Bytes made durable.",
        m.bytes.load(Relaxed).to_string(),
    );
    metric(
        "stele_fsyncs_total",
        "counter",
        "Group commits (write + fdatasync).",
        m.fsyncs.load(Relaxed).to_string(),
    );
    metric(
        "stele_fsync_seconds_total",
        "counter",
        "Time spent in group-commit writes and fdatasync.",
        format!("{:.6}", m.fsync_micros.load(Relaxed) as f64 / 1e6),
    );
    metric(
        "stele_write_errors_total",
        "counter",
        "Writes rolled back after an error.",
        m.write_errors.load(Relaxed).to_string(),
    );
    metric(
        "stele_log_last_seq",
        "gauge",
        "Seq of the last durable event.",
        log.last_seq().to_string(),
    );
    metric(
        "stele_index_seq",
        "gauge",
        "Seq up to which queries see the log.",
        idx.indexed_seq().to_string(),
    );
    metric(
        "stele_index_lag_events",
        "gauge",
        "Events durable but not yet searchable.",
        log.last_seq().saturating_sub(idx.indexed_seq()).to_string(),
    );
    metric(
        "stele_log_poisoned",
        "gauge",
        "1 after a failed fsync (restart needed).",
        u8::from(log.poisoned().is_some()).to_string(),
    );
    let failures = log.read_failures();
    metric(
        "stele_segments_unreadable",
        "gauge",
        "Segments whose reads failed with an I/O error (see stele_segment_read_errors_total).",
        failures.len().to_string(),
    );
    metric(
        "stele_ingest_events_total",
        "counter",
        "Events accepted over HTTP (201).",
        app.ingested.load(Relaxed).to_string(),
    );
    metric(
        "stele_streams_open",
        "gauge",
        "Live streams (/v1/stream) open.",
        app.streams_open.load(Relaxed).to_string(),
    );
    metric(
        "stele_exports_open",
        "gauge",
        "Exports being streamed.",
        app.exports_open.load(Relaxed).to_string(),
    );
    metric(
        "stele_connections_open",
        "gauge",
        "HTTP connections open.",
        (app.limits().connections_max - app.connections.available_permits()).to_string(),
    );
    metric(
        "stele_connections_write_stalled_total",
        "counter",
        "Connections closed because the client read nothing for write_stall_timeout_secs.",
        app.write_stalls.load(Relaxed).to_string(),
    );
    metric(
        "stele_log_first_seq",
        "gauge",
        "Seq of the oldest event kept (retention drops before it).",
        log.first_seq().to_string(),
    );
    metric(
        "stele_retention_dropped_days_total",
        "counter",
        "Day partitions dropped by retention since start.",
        app.retention_dropped_days.load(Relaxed).to_string(),
    );
    metric(
        "stele_retention_dropped_events_total",
        "counter",
        "Events dropped by retention since start.",
        app.retention_dropped_events.load(Relaxed).to_string(),
    );
    let rec = log.recovery_report();
    metric(
        "stele_recovery_torn_bytes_truncated",
        "gauge",
        "Bytes of torn tail the last start truncated from the active segment.",
        rec.torn_bytes_truncated.to_string(),
    );
    metric(
        "stele_recovery_quarantined_files",
        "gauge",
        "Files the last start moved to quarantine/ (salvage mode).",
        rec.quarantined.len().to_string(),
    );
    metric(
        "stele_digests_signed_total",
        "counter",
        "Signed daily digests written since start.",
        app.digests.written.load(Relaxed).to_string(),
    );
    metric(
        "stele_digest_failures_total",
        "counter",
        "Digester runs that failed since start (see the log).",
        app.digests.failures.load(Relaxed).to_string(),
    );
    let cp = app.checkpoints.as_deref();
    let counter =
        |f: fn(&crate::seal::checkpoint::CheckpointStats) -> u64| cp.map_or(0, f).to_string();
    metric(
        "stele_checkpoints_signed_total",
        "counter",
        "Checkpoints of the chain head signed and written since start.",
        counter(|c| c.written.load(Relaxed)),
    );
    metric(
        "stele_checkpoint_failures_total",
        "counter",
        "Checkpoints that could not be written to DATA_DIR/checkpoint.json.",
        counter(|c| c.failures.load(Relaxed)),
    );
    metric(
        "stele_checkpoint_witness_failures_total",
        "counter",
        "Checkpoints a witness did not take.",
        counter(|c| c.witness_failures.load(Relaxed)),
    );
    metric(
        "stele_checkpoint_seq",
        "gauge",
        "Seq of the newest signed checkpoint (0: none yet).",
        cp.and_then(|c| c.latest()).map_or(0, |c| c.seq).to_string(),
    );
    metric(
        "stele_digest_unsigned_days",
        "gauge",
        "Closed days after the newest digest that cannot be signed (see /readyz).",
        app.seal_status.unsigned().len().to_string(),
    );
    metric(
        "stele_segments_damaged",
        "gauge",
        "Segments found changed or damaged (scrub, start-up verification); reads of them fail.",
        log.damaged_segments().len().to_string(),
    );
    let scrub = &app.seal_status.scrub;
    metric(
        "stele_scrub_passes_total",
        "counter",
        "Whole scrub passes over the sealed segments since start.",
        scrub.passes.load(Relaxed).to_string(),
    );
    metric(
        "stele_scrub_bytes_total",
        "counter",
        "Bytes the scrubber read since start.",
        scrub.bytes.load(Relaxed).to_string(),
    );
    metric(
        "stele_scrub_running",
        "gauge",
        "1 while a scrub pass runs.",
        u8::from(scrub.running.load(Relaxed)).to_string(),
    );
    metric(
        "stele_legal_holds",
        "gauge",
        "Legal holds in force (configuration and HTTP).",
        all_holds(app).len().to_string(),
    );
    metric(
        "stele_api_keys",
        "gauge",
        "API keys configured (0: no authentication, loopback only).",
        app.keyring().len().to_string(),
    );
    metric(
        "stele_auth_forbidden_total",
        "counter",
        "Requests refused with 403 (role missing, or another tenant's events).",
        app.forbidden.load(Relaxed).to_string(),
    );
    metric(
        "stele_rate_limited_total",
        "counter",
        "Requests refused with 429 (a key's rate limit or stream limit).",
        app.rate_limited.load(Relaxed).to_string(),
    );
    metric(
        "stele_audit_events_total",
        "counter",
        "audit_access events recorded since start.",
        app.auditor.stats.recorded.load(Relaxed).to_string(),
    );
    metric(
        "stele_audit_failures_total",
        "counter",
        "audit_access events that could not be recorded (see the log).",
        app.auditor.stats.failed.load(Relaxed).to_string(),
    );
    if let Some(free) = crate::datadir::free_bytes(&app.data_dir) {
        metric(
            "stele_disk_free_bytes",
            "gauge",
            "Bytes available to Stele on the data directory's filesystem.",
            free.to_string(),
        );
    }
    let _ = writeln!(
        out,
        "# HELP stele_auth_failures_total Requests refused with 401, by reason.\n\
         # TYPE stele_auth_failures_total counter"
    );
    for (e, n) in AUTH_FAILURES.iter().zip(&app.auth_failures) {
        let _ = writeln!(
            out,
            "stele_auth_failures_total{{reason=\"{}\"}} {}",
            e.reason(),
            n.load(Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP stele_segment_read_errors_total Reads of a segment that failed with an I/O error.\n\
         # TYPE stele_segment_read_errors_total counter"
    );
    for (segment, n, _) in &failures {
        let _ = writeln!(
            out,
            "stele_segment_read_errors_total{{segment=\"{segment}\"}} {n}"
        );
    }
    let segs = log.segments();
    let (sealed, active): (Vec<_>, Vec<_>) = segs.iter().partition(|s| s.sealed);
    let _ = writeln!(
        out,
        "# HELP stele_segments Segment files by state.\n# TYPE stele_segments gauge\n\
         stele_segments{{state=\"sealed\"}} {}\nstele_segments{{state=\"active\"}} {}",
        sealed.len(),
        active.len()
    );
    let _ = writeln!(
        out,
        "# HELP stele_segment_bytes Durable segment bytes by state.\n# TYPE stele_segment_bytes gauge\n\
         stele_segment_bytes{{state=\"sealed\"}} {}\nstele_segment_bytes{{state=\"active\"}} {}",
        sealed.iter().map(|s| s.bytes).sum::<u64>(),
        active.iter().map(|s| s.bytes).sum::<u64>()
    );
    family(
        &mut out,
        "stele_fsync_seconds",
        "histogram",
        "Group-commit durations (one write + one fdatasync).",
    );
    m.fsync_seconds.render(&mut out, "stele_fsync_seconds", "");
    family(
        &mut out,
        "stele_ingest_append_seconds",
        "histogram",
        "Time an ingest request waits for its events to become durable.",
    );
    app.append_seconds
        .render(&mut out, "stele_ingest_append_seconds", "");
    family(
        &mut out,
        "stele_http_request_duration_seconds",
        "histogram",
        "Time from a request's head to its response head, by route.",
    );
    for r in ROUTES {
        app.latency[r].render(
            &mut out,
            "stele_http_request_duration_seconds",
            &format!("route=\"{r}\""),
        );
    }
    let _ = writeln!(out, "# HELP stele_http_requests_total HTTP requests by route and status.\n# TYPE stele_http_requests_total counter");
    let reqs = app
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut keys: Vec<_> = reqs.keys().copied().collect();
    keys.sort();
    for k in &keys {
        let _ = writeln!(
            out,
            "stele_http_requests_total{{route=\"{}\",status=\"{}\"}} {}",
            k.0, k.1, reqs[k].0
        );
    }
    let _ = writeln!(out, "# HELP stele_http_request_seconds_total Time spent answering, by route and status.\n# TYPE stele_http_request_seconds_total counter");
    for k in &keys {
        let _ = writeln!(
            out,
            "stele_http_request_seconds_total{{route=\"{}\",status=\"{}\"}} {:.6}",
            k.0,
            k.1,
            reqs[k].1 as f64 / 1e6
        );
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; version=0.0.4")
        .body(full(out))
        .expect("valid response")
}

async fn dispatch(app: Arc<App>, req: Request<Incoming>, caller: Caller) -> Resp {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => healthz(&app),
        (&Method::GET, ["readyz"]) => readyz(&app),
        (&Method::GET, ["metrics"]) => metrics(&app),
        (&Method::POST, ["v1", "events"]) => ingest(app, req, &caller).await,
        (&Method::GET, ["v1", "events"]) => list(app, req, false, &caller).await,
        (&Method::GET, ["v1", "search"]) => list(app, req, true, &caller).await,
        (&Method::GET, ["v1", "stats"]) => stats(app, req, &caller).await,
        (&Method::GET, ["v1", "export"]) => export(app, req, caller).await,
        (&Method::GET, ["v1", "stream"]) => stream(app, req, caller).await,
        (&Method::GET, ["v1", "segments"]) => list_segments(app, &req).await,
        (&Method::GET, ["v1", "checkpoint"]) => checkpoint(&app),
        (&Method::GET, ["v1", "retention"]) => retention_plan(app).await,
        (&Method::GET, ["v1", "holds"]) => {
            let holds = all_holds(&app);
            counted(
                json_response(StatusCode::OK, &json!({ "holds": holds })),
                holds.len(),
            )
        }
        (&Method::POST, ["v1", "holds"]) => add_hold(app, req).await,
        (&Method::DELETE, ["v1", "holds", name]) => {
            let name = percent_decode(name, false);
            remove_hold(app, name).await
        }
        (&Method::GET, ["v1", "entities", ty, id, "history"]) => {
            let (ty, id) = (percent_decode(ty, false), percent_decode(id, false));
            let scope = caller.scope();
            keyed(app, &req, move |app, limit, cursor| {
                app.engine
                    .entity_history(scope.tenants(), &ty, &id, limit, cursor.as_deref())
            })
            .await
        }
        (&Method::GET, ["v1", "users", id, "events"]) => {
            let id = percent_decode(id, false);
            let scope = caller.scope();
            keyed(app, &req, move |app, limit, cursor| {
                app.engine
                    .user_timeline(scope.tenants(), &id, limit, cursor.as_deref())
            })
            .await
        }
        (&Method::GET, ["v1", "events", id]) => {
            get_event(app, &req, percent_decode(id, false), &caller).await
        }
        (_, ["healthz" | "readyz" | "metrics"])
        | (
            _,
            ["v1", "events" | "search" | "stats" | "export" | "stream" | "segments" | "checkpoint"
            | "retention" | "holds"],
        )
        | (_, ["v1", "holds", _])
        | (_, ["v1", "events", _])
        | (_, ["v1", "entities", _, _, "history"])
        | (_, ["v1", "users", _, "events"]) => {
            let allow = match segments.as_slice() {
                ["v1", "events"] | ["v1", "holds"] => "GET, POST",
                ["v1", "holds", _] => "DELETE",
                _ => "GET",
            };
            let mut r = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                format!("{} is not allowed on {path}: use {allow}", req.method()),
                json!({}),
            );
            r.headers_mut()
                .insert("allow", hyper::header::HeaderValue::from_static(allow));
            r
        }
        _ => problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such route",
            format!("{path} is not a Stele route"),
            json!({}),
        ),
    }
}

/// `GET /v1/events/{id}[?tenant=T]`. Ids are unique per tenant (events
/// without a tenant are a namespace of their own), so an id may name several
/// events. `tenant` picks one (empty: the one without a tenant); without it,
/// the key's tenants are searched (every tenant for an all-tenant key): one
/// match is the answer, several are a 409 `ambiguous-id` naming the tenants.
/// Another tenant's event is as absent as one never stored (404): a scoped
/// key learns nothing about ids outside its tenants.
async fn get_event(app: Arc<App>, req: &Request<Incoming>, id: String, caller: &Caller) -> Resp {
    let mut tenant: Option<Option<String>> = None;
    for (k, v) in query_pairs(req) {
        if k != "tenant" {
            return query_problem(QueryError::BadParam {
                param: k,
                message: "this route takes only `tenant`".into(),
            });
        }
        if tenant.is_some() {
            return query_problem(QueryError::BadParam {
                param: k,
                message: "may be given once".into(),
            });
        }
        tenant = Some((!v.is_empty()).then_some(v));
    }
    let scope = caller.scope();
    let among: Option<Vec<Option<String>>> = match (&tenant, &scope) {
        (Some(t), _) => Some(
            scope
                .allows(t.as_deref())
                .then(|| t.clone())
                .into_iter()
                .collect(),
        ),
        (None, Scope::All) => None,
        (None, Scope::Tenants(ts)) => Some(ts.iter().cloned().map(Some).collect()),
    };
    let app2 = app.clone();
    let id2 = id.clone();
    let found = tokio::task::spawn_blocking(move || app2.find_by_id(&id2, among.as_deref())).await;
    let found = match found {
        Ok(Ok(evs)) => evs
            .into_iter()
            .filter(|ev| scope.allows(ev.event.tenant.as_deref()))
            .collect::<Vec<_>>(),
        Ok(Err(e)) => return query_problem(e),
        Err(e) => return internal(e.to_string()),
    };
    match found.as_slice() {
        [ev] => counted(json_response(StatusCode::OK, &json!(ev)), 1),
        [] => counted(
            problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "No such event",
                match &tenant {
                    Some(Some(t)) => format!("no stored event has the id {id:?} in tenant {t:?}"),
                    Some(None) => format!("no stored event without a tenant has the id {id:?}"),
                    None => format!("no stored event has the id {id:?}"),
                },
                json!({}),
            ),
            0,
        ),
        several => {
            let shown = several.len().min(AMBIGUOUS_TENANTS_MAX);
            let tenants: Vec<Option<&str>> = several[..shown]
                .iter()
                .map(|ev| ev.event.tenant.as_deref())
                .collect();
            let more = if several.len() > shown {
                format!(" (the first {shown} are listed)")
            } else {
                String::new()
            };
            counted(
                problem(
                    StatusCode::CONFLICT,
                    "ambiguous-id",
                    "Ambiguous event id",
                    format!(
                        "events of several tenants have the id {id:?}{more}: name one with \
                         ?tenant= (an empty value selects the event without a tenant)"
                    ),
                    json!({ "field": "tenant", "tenants": tenants }),
                ),
                0,
            )
        }
    }
}

fn internal(detail: String) -> Resp {
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        detail,
        json!({}),
    )
}

/// Decodes `%XX` escapes (and `+` as a space in query strings).
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b[i] == b'+' {
            b' '
        } else {
            b[i]
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

async fn list(app: Arc<App>, req: Request<Incoming>, text_required: bool, caller: &Caller) -> Resp {
    let pairs = query_pairs(&req);
    if let Some(r) = reject_params(
        &pairs,
        &["interval"],
        "`interval` applies to /v1/stats only",
    ) {
        return r;
    }
    let now = app.clock.now_micros();
    let mut q = match Query::parse(&pairs, now) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    let blank = q.filter.text.as_deref().is_none_or(|t| t.trim().is_empty());
    if text_required && blank {
        return query_problem(QueryError::BadParam {
            param: "q".into(),
            message: "is required on /v1/search (tantivy syntax: words, AND/OR/NOT, \"phrases\", field:value)".into(),
        });
    }
    match tokio::task::spawn_blocking(move || app.engine.list(&q)).await {
        Ok(Ok(page)) => counted(
            json_response(StatusCode::OK, &json!(page)),
            page.events.len(),
        ),
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

/// Why a body is not JSON: a sentence, and where (`line`, `column`, both
/// 1-based; for NDJSON the line of the body).
#[derive(Debug, PartialEq)]
pub struct JsonError {
    /// What is wrong, in a sentence.
    pub detail: String,
    /// 1-based line of the body.
    pub line: usize,
    /// 1-based column in that line.
    pub column: usize,
}

/// Splits a request body into JSON values: one object, an array, or NDJSON
/// (one value per non-blank line, `\r\n` allowed). Public for the fuzz
/// target.
pub fn split_body(body: &[u8], ndjson: bool) -> Result<Vec<Value>, JsonError> {
    if ndjson {
        let mut out = Vec::new();
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            out.push(event::parse_json(line).map_err(|e| JsonError {
                detail: format!("line {} is not JSON: {e}", n + 1),
                line: n + 1,
                column: e.column().max(1),
            })?);
        }
        return Ok(out);
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Vec::new()); // no events: the batch-size check says so
    }
    match event::parse_json(body).map_err(|e| JsonError {
        detail: format!("the body is not JSON: {e}"),
        line: e.line().max(1),
        column: e.column().max(1),
    })? {
        Value::Array(items) => Ok(items),
        other => Ok(vec![other]),
    }
}

/// Why a request body could not be read whole.
enum BodyReadError {
    /// More than the limit.
    TooLarge,
    /// Malformed framing (a bad chunk size, a missing CRLF, bad trailers) or a
    /// connection closed before the end: the cause, in words.
    Unreadable(String),
}

/// Reads a whole body of at most `max` bytes.
async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, BodyReadError> {
    match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyReadError::TooLarge),
        Err(e) => {
            let mut why = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                why.push_str(": ");
                why.push_str(&c.to_string());
                cause = c.source();
            }
            Err(BodyReadError::Unreadable(why))
        }
    }
}

/// The media types `POST /v1/events` reads.
const INGEST_TYPES: &str = "application/json or application/x-ndjson";

/// Whether the body is NDJSON; `Err` for a type we do not read. A missing
/// type is read as JSON.
fn ingest_media_type(req: &Request<Incoming>) -> Result<bool, String> {
    let Some(v) = req.headers().get("content-type") else {
        return Ok(false);
    };
    let v = v
        .to_str()
        .map_err(|_| "an unreadable Content-Type".to_string())?;
    let essence = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(false),
        "application/x-ndjson" | "application/ndjson" => Ok(true),
        _ => Err(format!("Content-Type {v:?}")),
    }
}

async fn ingest(app: Arc<App>, req: Request<Incoming>, caller: &Caller) -> Resp {
    let ndjson = match ingest_media_type(&req) {
        Ok(n) => n,
        Err(what) => {
            return problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("events are posted as {INGEST_TYPES}, not {what}"),
                json!({ "accepted": ["application/json", "application/x-ndjson", "application/ndjson"] }),
            )
        }
    };
    let body_max = app.limits().body_bytes_max;
    let events_max = app.limits().events_per_request_max;
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > body_max as u64) {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body is {n} bytes, more than body_bytes_max ({body_max})"),
            json!({ "limit": body_max }),
        );
    }
    let body = match read_body(req, body_max).await {
        Ok(b) => b,
        Err(BodyReadError::TooLarge) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the body is more than body_bytes_max ({body_max}) bytes"),
                json!({ "limit": body_max }),
            )
        }
        Err(BodyReadError::Unreadable(why)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid-body",
                "Unreadable request body",
                format!("the body could not be read: {why}; nothing was stored"),
                json!({}),
            )
        }
    };
    let values = match split_body(&body, ndjson) {
        Ok(v) => v,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid-json",
                "Invalid JSON",
                e.detail,
                json!({ "line": e.line, "column": e.column }),
            )
        }
    };
    if values.is_empty() || values.len() > events_max {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid-batch-size",
            "Invalid number of events",
            format!(
                "a request carries 1 to {events_max} events (events_per_request_max), this one {}",
                values.len()
            ),
            json!({ "limit": events_max }),
        );
    }
    let mut events: Vec<Event> = Vec::with_capacity(values.len());
    let mut client_id: Vec<bool> = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match event::parse_event(v, event::new_event_id) {
            Ok(ev) => {
                client_id.push(v.get("id").is_some_and(|id| !id.is_null()));
                events.push(ev);
            }
            Err(errs) => errors.extend(errs.into_iter().map(|e: FieldError| {
                json!({"index": i, "field": e.field, "kind": e.kind.as_str(), "message": e.message})
            })),
        }
    }
    if !errors.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid-events",
            "Invalid events",
            format!(
                "{} problems in {} events; nothing was stored",
                errors.len(),
                values.len()
            ),
            json!({ "errors": errors }),
        );
    }
    if let Some(r) = scope_events(&caller.scope(), &mut events) {
        if r.status() == StatusCode::FORBIDDEN {
            app.forbidden.fetch_add(1, Ordering::Relaxed);
        }
        return r;
    }
    let app2 = app.clone();
    let (events, reserved) = match tokio::task::spawn_blocking(move || {
        let r = app2.reserve(&events, &client_id);
        (events, r)
    })
    .await
    {
        Ok((events, Ok(Idempotency::New(reserved)))) => (events, reserved),
        Ok((events, Ok(Idempotency::Replay(seqs)))) => {
            let items: Vec<Value> = events
                .iter()
                .zip(&seqs)
                .map(|(e, s)| json!({"id": e.id, "seq": s}))
                .collect();
            return json_response(
                StatusCode::OK,
                &json!({ "events": items, "replayed": true }),
            );
        }
        Ok((_, Ok(Idempotency::Conflict(detail)))) => {
            return problem(
                StatusCode::CONFLICT,
                "id-conflict",
                "Event id conflict",
                detail,
                json!({ "field": "id" }),
            )
        }
        Ok((_, Err(e))) => return query_problem(e),
        Err(e) => return internal(e.to_string()),
    };
    if let Some(free) = crate::datadir::free_bytes(&app.data_dir) {
        let reserve = app.limits().disk_reserve_bytes;
        let need = reserve.saturating_add(body.len() as u64 * 2);
        if free < need {
            app.settle(&reserved, &events, None);
            return problem(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk-full",
                "Disk full",
                format!(
                    "the data directory's filesystem has {free} bytes free, and {reserve} \
                     (disk_reserve_bytes) must stay free; nothing was stored: retry once space \
                     is freed"
                ),
                json!({ "reserve": reserve, "free": free }),
            );
        }
    }
    // Provenance is the server's, never the client's (parse_event refuses
    // `ingested_by` and `client_addr` in the posted JSON).
    let by = Provenance {
        ingested_by: caller
            .key
            .as_ref()
            .map_or_else(|| event::INGESTED_BY_LOOPBACK.to_owned(), |k| k.id.clone()),
        client_addr: caller.addr.map(|a| a.to_canonical().to_string()),
    };
    let log = app.engine.log().clone();
    let started = std::time::Instant::now();
    let appended = log.append_async(&events, &by).await;
    app.append_seconds.observe(started.elapsed());
    app.settle(
        &reserved,
        &events,
        appended.as_ref().ok().map(|a| a.first_seq),
    );
    match appended {
        Ok(ack) => {
            app.ingested
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            let items: Vec<Value> = events
                .iter()
                .enumerate()
                .map(|(i, e)| json!({"id": e.id, "seq": ack.first_seq + i as u64}))
                .collect();
            json_response(
                StatusCode::CREATED,
                &json!({
                    "events": items,
                    "replayed": false,
                    "receipt": {
                        "segment": ack.segment.file_name(),
                        "last_seq": ack.last_seq(),
                        "hash": crate::log::format::hash_hex(&ack.last_hash),
                        "received_at": event::format_micros(ack.received_at),
                    }
                }),
            )
        }
        Err(e) if e.is_disk_full() => problem(
            StatusCode::INSUFFICIENT_STORAGE,
            "disk-full",
            "Disk full",
            format!("{e}; nothing was stored"),
            json!({}),
        ),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "log-unavailable",
            "The log cannot accept events",
            e.to_string(),
            json!({}),
        ),
    }
}

/// A tenant-scoped key writes only its tenants: an event without a tenant
/// gets the key's (when it has one), one of another tenant refuses the
/// whole request (the refusal).
fn scope_events(scope: &Scope, events: &mut [Event]) -> Option<Resp> {
    let Scope::Tenants(tenants) = scope else {
        return None;
    };
    for (i, ev) in events.iter_mut().enumerate() {
        match &ev.tenant {
            None if tenants.len() == 1 => ev.tenant = Some(tenants[0].clone()),
            None => {
                return Some(problem(
                    StatusCode::BAD_REQUEST,
                    "invalid-events",
                    "Invalid events",
                    "1 problem; nothing was stored".into(),
                    json!({ "errors": [{
                        "index": i,
                        "field": "tenant",
                        "kind": "missing",
                        "message": format!(
                            "this key writes to several tenants ({}): name one in `tenant`",
                            tenants.join(", ")
                        ),
                    }] }),
                ))
            }
            Some(t) if !tenants.contains(t) => {
                return Some(problem(
                    StatusCode::FORBIDDEN,
                    "tenant-forbidden",
                    "Tenant not allowed",
                    format!(
                        "event {i} names a tenant this key may not write (it writes {}); \
                         nothing was stored",
                        tenants.join(", ")
                    ),
                    json!({ "field": "tenant", "index": i }),
                ))
            }
            Some(_) => {}
        }
    }
    None
}

/// Applies SIGHUP reloads: limits and retention (TTLs, holds, interval).
/// The listen address, data directory, log and index settings and
/// `connections_max` need a restart; a reload that fails to load keeps the
/// settings in force.
fn spawn_reloader(
    app: Arc<App>,
    reload: Option<Reloader>,
    mut hup: tokio::sync::mpsc::UnboundedReceiver<()>,
    serving: String,
) {
    let mut stopping = app.stopping.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hup.recv() => if got.is_none() { return },
                // Holds the App: let it go at shutdown.
                _ = stopping.changed() => return,
            }
            crate::notify::reloading("Reloading the configuration.");
            let Some(reload) = reload.clone() else {
                tracing::info!("Nothing to reload: stele serve runs on flags and defaults.");
                crate::notify::ready(&serving);
                continue;
            };
            match tokio::task::spawn_blocking(move || reload()).await {
                Ok(Ok(fresh)) => {
                    if let Err(e) = fresh.auth.check_listen(app.listen) {
                        tracing::error!(
                            "Could not reload the configuration, keeping the current settings: {e}."
                        );
                        crate::notify::ready(&serving);
                        continue;
                    }
                    let old = app.limits();
                    if fresh.limits.connections_max != old.connections_max {
                        tracing::warn!(
                            "connections_max changes only at restart ({} stays in force).",
                            old.connections_max
                        );
                    }
                    let limits = Limits {
                        connections_max: old.connections_max,
                        ..fresh.limits
                    };
                    *app.limits.write().unwrap_or_else(|p| p.into_inner()) = limits;
                    *app.retention.write().unwrap_or_else(|p| p.into_inner()) = fresh.retention;
                    let keys = {
                        let mut current = app.keys.write().unwrap_or_else(|p| p.into_inner());
                        *current = Arc::new(Keyring::new(&fresh.auth, Some(&current)));
                        current.len()
                    };
                    let tls = match (&app.tls, &fresh.tls) {
                        (Some(resolver), Some(paths)) => match resolver.reload(paths) {
                            Ok(()) => "the TLS certificate was read again",
                            Err(e) => {
                                tracing::error!("Keeping the TLS certificate in force: {e}.");
                                "the TLS certificate in force was kept"
                            }
                        },
                        (None, None) => "no TLS",
                        _ => {
                            tracing::warn!("Switching TLS on or off needs a restart.");
                            "TLS unchanged until a restart"
                        }
                    };
                    tracing::info!(
                        "Reloaded: limits, retention settings and {keys} API keys are now in \
                         force; {tls} ({limits:?})."
                    );
                }
                Ok(Err(e)) => tracing::error!(
                    "Could not reload the configuration, keeping the current settings: {e}."
                ),
                Err(e) => tracing::error!("Could not reload the configuration: {e}."),
            }
            crate::notify::ready(&serving);
        }
    });
}

/// Runs retention at start and every `interval_secs`.
fn spawn_retention(app: Arc<App>) {
    let mut stopping = app.stopping.clone();
    tokio::spawn(async move {
        loop {
            let app2 = app.clone();
            match tokio::task::spawn_blocking(move || run_retention(&app2)).await {
                Ok(Err(e)) => tracing::error!("Retention failed: {e}."),
                Err(e) => tracing::error!("Retention failed: {e}."),
                Ok(Ok(_)) => {}
            }
            let wait = Duration::from_secs(app.retention().interval_secs);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.changed() => return,
            }
        }
    });
}

/// Every hold: the configuration's, then those set over HTTP.
fn all_holds(app: &App) -> Vec<crate::retention::Hold> {
    let api = app.holds.lock().unwrap_or_else(|p| p.into_inner()).clone();
    app.retention().holds.iter().cloned().chain(api).collect()
}

fn today(app: &App) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp_micros(app.clock.now_micros())
        .unwrap_or_default()
        .date_naive()
}

/// The retention plan for now (nothing is dropped).
fn plan_retention(app: &App) -> Result<Vec<crate::retention::DayPlan>, String> {
    let segs: Vec<crate::retention::Seg> = app
        .engine
        .log()
        .segments()
        .into_iter()
        .map(Into::into)
        .collect();
    let holds = all_holds(app);
    let mut plan = crate::retention::plan(&segs, today(app), &app.retention(), &holds, |s| {
        let name = s.id.file_name();
        if let Some(t) = app
            .segment_tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
        {
            return Ok(t.clone());
        }
        let t = crate::retention::tenants_in(&s.path)?;
        app.segment_tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, t.clone());
        Ok(t)
    })?;
    crate::retention::keep_unsigned(&mut plan, crate::digest::digested_through(&app.data_dir));
    Ok(plan)
}

/// One retention run: plan, drop the expired prefix, record it.
fn run_retention(app: &App) -> Result<Vec<crate::retention::DayPlan>, String> {
    if !app.retention().enabled() {
        return Ok(Vec::new());
    }
    let plan = plan_retention(app)?;
    let now = event::format_micros(app.clock.now_micros());
    let done = crate::retention::apply(
        &app.data_dir,
        app.engine.log(),
        app.engine.indexes(),
        &plan,
        &now,
    )?;
    // The per-segment caches forget the files that are gone.
    for name in done.iter().flat_map(|d| &d.segments) {
        app.sealed_sha256
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        app.segment_tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
    app.retention_dropped_days
        .fetch_add(done.len() as u64, Ordering::Relaxed);
    app.retention_dropped_events
        .fetch_add(done.iter().map(|d| d.events).sum(), Ordering::Relaxed);
    Ok(done)
}

/// `GET /v1/retention`: what retention would drop now, and why.
async fn retention_plan(app: Arc<App>) -> Resp {
    let app2 = app.clone();
    match tokio::task::spawn_blocking(move || plan_retention(&app2)).await {
        Ok(Ok(days)) => json_response(
            StatusCode::OK,
            &json!({
                "today": today(&app).to_string(),
                "first_seq": app.engine.log().first_seq(),
                "config": app.retention(),
                "holds": all_holds(&app),
                "days": days,
            }),
        ),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e.to_string()),
    }
}

/// `POST /v1/holds`: a new legal hold (JSON), persisted before the 201.
async fn add_hold(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let body = match read_body(req, 64 * 1024).await {
        Ok(b) => b,
        Err(BodyReadError::TooLarge) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                "a hold is at most 65536 bytes".to_string(),
                json!({ "limit": 65536 }),
            )
        }
        Err(BodyReadError::Unreadable(why)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid-hold",
                "Invalid legal hold",
                format!("the body could not be read: {why}"),
                json!({}),
            )
        }
    };
    let hold: crate::retention::Hold = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid-hold",
                "Invalid legal hold",
                format!(
                    "a hold is {{\"name\", \"tenant\"?, \"from\"?, \"until\"?, \"reason\"?}}: {e}"
                ),
                json!({}),
            )
        }
    };
    if let Err(e) = hold.validate() {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid-hold",
            "Invalid legal hold",
            e,
            json!({}),
        );
    }
    let app2 = app.clone();
    let saved = tokio::task::spawn_blocking(move || {
        if all_holds(&app2).iter().any(|h| h.name == hold.name) {
            return Ok(None);
        }
        let mut holds = app2.holds.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = holds.clone();
        next.push(hold.clone());
        crate::retention::save_holds(&app2.data_dir, &next)?;
        *holds = next;
        tracing::info!("Legal hold {:?} set: {:?}.", hold.name, hold);
        Ok::<_, std::io::Error>(Some(hold))
    })
    .await;
    match saved {
        Ok(Ok(Some(h))) => json_response(StatusCode::CREATED, &json!(h)),
        Ok(Ok(None)) => problem(
            StatusCode::CONFLICT,
            "hold-exists",
            "Legal hold exists",
            "a hold with this name exists; remove it first to change it".into(),
            json!({ "field": "name" }),
        ),
        Ok(Err(e)) => internal(format!("cannot save the hold: {e}")),
        Err(e) => internal(e.to_string()),
    }
}

/// `DELETE /v1/holds/{name}`: lifts a hold set over HTTP.
async fn remove_hold(app: Arc<App>, name: String) -> Resp {
    if app.retention().holds.iter().any(|h| h.name == name) {
        return problem(
            StatusCode::CONFLICT,
            "hold-in-config",
            "Legal hold set in the configuration",
            format!("hold {name:?} comes from the configuration file: remove it there"),
            json!({}),
        );
    }
    let app2 = app.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let mut holds = app2.holds.lock().unwrap_or_else(|p| p.into_inner());
        let next: Vec<_> = holds.iter().filter(|h| h.name != name).cloned().collect();
        if next.len() == holds.len() {
            return Ok(false);
        }
        crate::retention::save_holds(&app2.data_dir, &next)?;
        *holds = next;
        tracing::info!("Legal hold {name:?} lifted.");
        Ok::<_, std::io::Error>(true)
    })
    .await;
    match removed {
        Ok(Ok(true)) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(full(Bytes::new()))
            .expect("valid response"),
        Ok(Ok(false)) => problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such hold",
            "no hold set over HTTP has this name".into(),
            json!({}),
        ),
        Ok(Err(e)) => internal(format!("cannot save the holds: {e}")),
        Err(e) => internal(e.to_string()),
    }
}

/// `GET /v1/segments`: every segment with its state, size, seq range and,
/// for sealed ones, the SHA-256 a backup copy must have.
async fn list_segments(app: Arc<App>, req: &Request<Incoming>) -> Resp {
    if let Some((k, _)) = query_pairs(req).first() {
        return query_problem(QueryError::BadParam {
            param: k.clone(),
            message: "this route takes no parameters".into(),
        });
    }
    let listed = tokio::task::spawn_blocking(move || -> Result<Value, String> {
        let infos = app.engine.log().segments();
        let mut out = Vec::with_capacity(infos.len());
        for info in &infos {
            let name = info.id.file_name();
            let sha = if info.sealed {
                let cached = app
                    .sealed_sha256
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&name)
                    .cloned();
                match cached {
                    Some(h) => Some(h),
                    None => {
                        let bytes = std::fs::read(&info.path)
                            .map_err(|e| format!("cannot read {}: {e}", info.path.display()))?;
                        let h = crate::datadir::sha256_hex(&bytes);
                        app.sealed_sha256
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(name.clone(), h.clone());
                        Some(h)
                    }
                }
            } else {
                None
            };
            out.push(crate::backup::describe(info, sha));
        }
        let total: u64 = infos.iter().map(|i| i.bytes).sum();
        Ok(json!({"segments": out, "bytes": total}))
    })
    .await;
    match listed {
        Ok(Ok(v)) => {
            let n = v["segments"].as_array().map_or(0, Vec::len);
            counted(json_response(StatusCode::OK, &v), n)
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e.to_string()),
    }
}

/// 400 naming the first of `names` present in `pairs`.
fn reject_params(pairs: &[(String, String)], names: &[&str], why: &str) -> Option<Resp> {
    pairs
        .iter()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(k, _)| {
            query_problem(QueryError::BadParam {
                param: k.clone(),
                message: why.into(),
            })
        })
}

/// History and timeline routes: only `limit` and `cursor`.
async fn keyed(
    app: Arc<App>,
    req: &Request<Incoming>,
    run: impl FnOnce(&App, usize, Option<String>) -> Result<crate::query::Page, QueryError>
        + Send
        + 'static,
) -> Resp {
    let mut limit = crate::query::LIMIT_DEFAULT;
    let mut cursor = None;
    let pairs = query_pairs(req);
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(p, _)| p == k) {
            return query_problem(QueryError::BadParam {
                param: k.clone(),
                message: "given more than once".into(),
            });
        }
    }
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => match v.parse() {
                Ok(l) if (1..=crate::query::LIMIT_MAX).contains(&l) => limit = l,
                _ => {
                    return query_problem(QueryError::BadParam {
                        param: k,
                        message: format!(
                            "must be a whole number from 1 to {}",
                            crate::query::LIMIT_MAX
                        ),
                    })
                }
            },
            "cursor" => cursor = Some(v),
            _ => {
                return query_problem(QueryError::BadParam {
                    message: "unknown parameter; this route takes `limit` and `cursor`".into(),
                    param: k,
                })
            }
        }
    }
    match tokio::task::spawn_blocking(move || run(&app, limit, cursor)).await {
        Ok(Ok(page)) => counted(
            json_response(StatusCode::OK, &json!(page)),
            page.events.len(),
        ),
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

async fn stats(app: Arc<App>, req: Request<Incoming>, caller: &Caller) -> Resp {
    let pairs = query_pairs(&req);
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    if let Some(r) = reject_params(
        &pairs,
        &["limit", "order", "cursor"],
        "statistics take filters and `interval`, not `limit`, `order` or `cursor`",
    ) {
        return r;
    }
    let interval = q.interval;
    match tokio::task::spawn_blocking(move || app.engine.stats(&q)).await {
        Ok(Ok(st)) => {
            let total = st.total as usize;
            let counts = |v: &[(String, u64)], key: &str| -> Value {
                v.iter()
                    .map(|(k, n)| json!({ key: k, "count": n }))
                    .collect()
            };
            let resp = json_response(
                StatusCode::OK,
                &json!({
                    "total": st.total,
                    "last_24h": st.last_24h,
                    "by_action": counts(&st.by_action, "action"),
                    "by_category": counts(&st.by_category, "category"),
                    "by_entity_type": counts(&st.by_entity_type, "entity_type"),
                    "by_severity": counts(&st.by_severity, "severity"),
                    "by_status": counts(&st.by_status, "status"),
                    "by_source": counts(&st.by_source, "source"),
                    "interval": match interval {
                        crate::query::Interval::Minute => "minute",
                        crate::query::Interval::Hour => "hour",
                        crate::query::Interval::Day => "day",
                    },
                    "histogram": st.histogram.iter()
                        .map(|(t, n)| json!({"start": event::format_micros(*t), "count": n}))
                        .collect::<Vec<_>>(),
                    "top_users": counts(&st.top_users, "user_id"),
                    "active_users": st.active_users,
                    "error_rate": st.error_rate,
                }),
            );
            counted(resp, total)
        }
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

/// Pages fetched per export step; the channel holds at most a few chunks, so
/// an export runs in bounded memory however many events it covers.
const EXPORT_PAGE: usize = 1000;
const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;
/// An export matching at least 1/this of the log is read from the log
/// sequentially instead of through the index.
const EXPORT_SCAN_RATIO: u64 = 8;

/// CSV columns, in order: the stored fields, every posted field in on-disk
/// order (`event::FIELD_NAMES`), then the provenance (last, so the columns
/// before it kept their places when format version 2 added it).
fn csv_columns() -> impl Iterator<Item = &'static str> {
    event::STORED_FIELD_NAMES
        .iter()
        .chain(event::FIELD_NAMES)
        .chain(event::PROVENANCE_FIELD_NAMES)
        .copied()
}

/// One RFC 4180 field: quoted when it holds a comma, quote, CR or LF.
fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

fn csv_row(ev: &crate::event::StoredEvent) -> String {
    let j = json!(ev);
    let mut row = String::with_capacity(512);
    for (i, col) in csv_columns().enumerate() {
        if i > 0 {
            row.push(',');
        }
        let cell = match j.get(col) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        csv_field(&mut row, &cell);
    }
    row.push_str("\r\n");
    row
}

/// A response body fed by a channel of chunks (chunked encoding). An `Err`
/// chunk aborts the response (invariant 4).
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, BodyError>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(hyper::body::Frame::data)))
    }
}

async fn export(app: Arc<App>, req: Request<Incoming>, caller: Caller) -> Resp {
    let mut pairs = query_pairs(&req);
    let mut csv = false;
    if let Some(i) = pairs.iter().position(|(k, _)| k == "format") {
        let (_, f) = pairs.remove(i);
        csv = match f.as_str() {
            "csv" => true,
            "ndjson" => false,
            _ => {
                return query_problem(QueryError::BadParam {
                    param: "format".into(),
                    message: "must be csv or ndjson".into(),
                })
            }
        };
    }
    if let Some(r) = reject_params(
        &pairs,
        &["limit", "cursor", "interval"],
        "an export covers every matching event: give filters, not `limit`, `cursor` or `interval`",
    ) {
        return r;
    }
    let explicit_order = pairs.iter().any(|(k, _)| k == "order");
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    if !explicit_order {
        q.order = crate::index::text::Order::Asc; // chronological unless asked
    }
    q.limit = EXPORT_PAGE;
    // Check the query before promising a 200, and see how broad it is.
    let (app2, filter) = (app.clone(), q.filter.clone());
    let (matching, upto) = match tokio::task::spawn_blocking(move || {
        let upto = app2.engine.indexes().indexed_seq();
        app2.engine.count(&filter).map(|n| (n, upto))
    })
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return query_problem(e),
        Err(e) => return internal(e.to_string()),
    };
    // A broad export (without full text, oldest first) reads the log
    // sequentially and filters in memory: faster than fetching every event
    // by seq, and it touches no index pages, so its resident set stays a few
    // pages of the log.
    let log_span = upto.saturating_sub(app.engine.log().first_seq()) + 1;
    let scan = q.filter.text.is_none()
        && q.order == crate::index::text::Order::Asc
        && matching.saturating_mul(EXPORT_SCAN_RATIO) >= log_span;
    if let Some(refused) = record_start(&app, &caller).await {
        return refused;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let (_open, _) = Held::take(&app, |a| &a.exports_open);
        let mut end = EndRecord::new(&app, caller.access);
        let fail = |why: String| {
            tracing::error!("An export stopped before its end: {why}.");
            let _ = tx.blocking_send(Err(BodyError::from(why)));
        };
        if csv {
            let mut header = csv_columns().collect::<Vec<_>>().join(",");
            header.push_str("\r\n");
            if tx.blocking_send(Ok(Bytes::from(header))).is_err() {
                return;
            }
        }
        let render = |ev: &crate::event::StoredEvent, chunk: &mut String| {
            if csv {
                chunk.push_str(&csv_row(ev));
            } else {
                chunk.push_str(&json!(ev).to_string());
                chunk.push('\n');
            }
        };
        if scan {
            let log = app.engine.log();
            let mut chunk = String::with_capacity(EXPORT_PAGE * 600);
            let mut in_chunk = 0;
            for ev in log.range(..=upto, crate::log::Direction::Forward) {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => return fail(e.to_string()),
                };
                if !q.filter.matches_fields(&ev) {
                    continue;
                }
                render(&ev, &mut chunk);
                in_chunk += 1;
                end.sent += 1;
                if in_chunk == EXPORT_PAGE {
                    if *app.stopping.borrow() {
                        return fail("the daemon is shutting down".into());
                    }
                    let full =
                        std::mem::replace(&mut chunk, String::with_capacity(EXPORT_PAGE * 600));
                    if tx.blocking_send(Ok(Bytes::from(full))).is_err() {
                        return; // the client went away
                    }
                    in_chunk = 0;
                }
            }
            end.complete = chunk.is_empty() || tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
            return;
        }
        loop {
            if *app.stopping.borrow() {
                return fail("the daemon is shutting down".into());
            }
            let page = match app.engine.list(&q) {
                Ok(p) => p,
                Err(e) => return fail(e.to_string()),
            };
            if let (Some(a), Some(b)) = (page.events.first(), page.events.last()) {
                // The page's events were read one by one: give their pages
                // back so a long export keeps a bounded resident set.
                let _ = app.engine.log().release(a.seq.min(b.seq), a.seq.max(b.seq));
            }
            let mut chunk = String::with_capacity(page.events.len() * 600);
            for ev in &page.events {
                render(ev, &mut chunk);
            }
            if !chunk.is_empty() && tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                return; // the client went away
            }
            end.sent += page.events.len() as u64;
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => {
                    end.complete = true;
                    return;
                }
            }
        }
    });
    let (ctype, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "ndjson")
    };
    let name = format!(
        "stele-export-{}.{ext}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", ctype)
        .header(
            "content-disposition",
            format!("attachment; filename=\"{name}\""),
        )
        .body(ChannelBody(rx).boxed())
        .expect("valid response")
}

/// Seconds between SSE heartbeat comments on an idle stream.
pub const STREAM_HEARTBEAT_SECS: u64 = 15;
/// Events read from the log (or matched in the text index) per step of a
/// stream.
const STREAM_READ_EVENTS: u64 = 512;
/// A step of a stream ends once its SSE text reaches this many bytes (the
/// rest of its events are read by the next step), so that a chunk holds
/// 64 KiB plus at most one event whatever the events' size.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks a stream may have waiting for its connection. With hyper's write
/// buffer this bounds what a client that stops reading costs: a few chunks,
/// not the events it falls behind by (the stream reads them from the log
/// when the client reads again).
const STREAM_CHUNKS_IN_FLIGHT: usize = 4;
/// Stream steps reading the log at once, each on a blocking thread: the
/// streams one append wakes take turns on a few threads instead of starting
/// one each (every blocking thread keeps its own allocator caches; measured
/// with 40 streams during a 20,000-event ingest in a debug build: 217 threads
/// and 631 MB peak RSS without this, 38 threads and 192 MB with it).
static STREAM_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
/// How often a full-text stream looks for newly searchable events.
const STREAM_TEXT_POLL: Duration = Duration::from_millis(100);

/// `GET /v1/stream`: Server-Sent Events. Every stream reads from the log by
/// seq (there is no live buffer to overflow): a slow consumer simply falls
/// behind and continues from the log, and a reconnect with `Last-Event-ID`
/// (or `from_seq`) resumes right after the last event it saw. With `q`, the
/// stream follows the full-text index instead (events arrive once
/// searchable, within the index commit interval), in the same seq order.
async fn stream(app: Arc<App>, req: Request<Incoming>, caller: Caller) -> Resp {
    let mut pairs = query_pairs(&req);
    let mut from: Option<u64> = None;
    if let Some(i) = pairs.iter().position(|(k, _)| k == "from_seq") {
        let (_, v) = pairs.remove(i);
        match v.parse::<u64>() {
            Ok(s) => from = Some(s),
            Err(_) => {
                return query_problem(QueryError::BadParam {
                    param: "from_seq".into(),
                    message: "must be a seq (a whole number)".into(),
                })
            }
        }
    }
    if let Some(v) = req.headers().get("last-event-id") {
        match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(s) => from = Some(s.saturating_add(1)),
            None => {
                return query_problem(QueryError::BadParam {
                    param: "Last-Event-ID".into(),
                    message: "must be the id (seq) of an event this stream sent".into(),
                })
            }
        }
    }
    if let Some(r) = reject_params(
        &pairs,
        &["limit", "cursor", "order", "interval"],
        "a stream takes the filters, q and from_seq; limit, cursor, order and interval do not apply",
    ) {
        return r;
    }
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    let key_slot = match &caller.key {
        Some(k) => match k.open_stream() {
            Some(s) => Some(s),
            None => {
                app.rate_limited.fetch_add(1, Ordering::Relaxed);
                return problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-key-streams",
                    "Too many streams for this key",
                    format!(
                        "key {:?} has {} streams open, its most (streams_max); close one first",
                        k.id, k.streams_max
                    ),
                    json!({ "limit": k.streams_max }),
                );
            }
        },
        None => None,
    };
    // The slot is taken before the 200, so streams_max cannot be overrun.
    let (slot, open) = Held::take(&app, |a| &a.streams_open);
    if open >= app.limits().streams_max as u64 {
        drop(slot);
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-streams",
            "Too many streams",
            format!("{open} streams are open, the most allowed (streams_max); retry later"),
            json!({ "limit": app.limits().streams_max }),
        );
    }
    if q.filter.text.is_some() {
        // A malformed full-text query is a 400 now, not an error event later.
        if let Err(e) = app.engine.matching_after(&q.filter, Some(u64::MAX), 1) {
            return query_problem(e);
        }
    }
    let log = app.engine.log().clone();
    if let Some(f) = from.filter(|&f| f < log.first_seq() && f > 1) {
        return query_problem(QueryError::Gone {
            what: format!("the stream position (seq {f})"),
            first_seq: log.first_seq(),
        });
    }
    let next = from
        .unwrap_or_else(|| log.last_seq() + 1)
        .max(log.first_seq());
    if let Some(refused) = record_start(&app, &caller).await {
        return refused;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS_IN_FLIGHT);
    let end = EndRecord::new(&app, caller.access);
    tokio::spawn(run_stream((slot, key_slot), end, q, next, tx));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .body(ChannelBody(rx).boxed())
        .expect("valid response")
}

/// Feeds one stream from seq `next` on until the client leaves or the
/// daemon stops.
async fn run_stream(
    slots: (Held, Option<crate::auth::StreamSlot>),
    mut end: EndRecord,
    q: Query,
    mut next: u64,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, BodyError>>,
) {
    let app = slots.0.app.clone();
    let log = app.engine.log().clone();
    let text = q.filter.text.is_some();
    let mut durable = log.subscribe();
    let mut stopping = app.stopping.clone();
    let _ = tx.send(Ok(Bytes::from_static(b": stele stream\n\n"))).await;
    loop {
        if *stopping.borrow() {
            return; // the body ends cleanly: a stream has no end to reach
        }
        // What may be sent: durable events, and for full text, searchable ones.
        let last = if text {
            app.engine.indexes().indexed_seq()
        } else {
            log.last_seq()
        };
        if next <= last {
            let to = last.min(next + STREAM_READ_EVENTS - 1);
            let (app2, filter) = (app.clone(), q.filter.clone());
            let read = {
                let _turn = STREAM_READS.acquire().await; // never closed
                tokio::task::spawn_blocking(move || {
                    read_stream_step(&app2, &filter, text, next, to)
                })
                .await
            };
            match read {
                Ok(Ok((chunk, n, done))) => {
                    if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return; // the client went away
                    }
                    end.sent += n;
                    next = done + 1;
                }
                Ok(Err(e)) => {
                    let msg = format!("event: error\ndata: {}\n\n", json!({"detail": e}));
                    // The client learns why; the body then ends (a stream has
                    // no complete state to fake) and it may resume later
                    // with Last-Event-ID.
                    tracing::error!("A stream stopped: {e}.");
                    let _ = tx.send(Ok(Bytes::from(msg))).await;
                    return;
                }
                Err(_) => return,
            }
            continue;
        }
        let beat = tokio::time::sleep(Duration::from_secs(STREAM_HEARTBEAT_SECS));
        let poll = tokio::time::sleep(if text {
            STREAM_TEXT_POLL
        } else {
            Duration::MAX / 4
        });
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            _ = poll => {}
            _ = beat => {
                if tx.send(Ok(Bytes::from_static(b": heartbeat\n\n"))).await.is_err() {
                    return;
                }
            }
            _ = stopping.changed() => {}
            _ = tx.closed() => return,
        }
    }
}

/// The SSE text of the events with seq in `from..=to` that match, the number
/// of events in it, and the last seq it covers: `to`, or less once the text
/// reached [`STREAM_CHUNK_BYTES`].
fn read_stream_step(
    app: &App,
    filter: &crate::index::text::Filter,
    text: bool,
    from: u64,
    to: u64,
) -> Result<(String, u64, u64), String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut sent = 0;
    let mut emit = |ev: &crate::event::StoredEvent| {
        let _ = write!(out, "id: {}\nevent: audit\ndata: {}\n\n", ev.seq, json!(ev));
        sent += 1;
        out.len() >= STREAM_CHUNK_BYTES
    };
    let log = app.engine.log();
    if text {
        let seqs = app
            .engine
            .matching_after(filter, from.checked_sub(1), (to - from + 1) as usize)
            .map_err(|e| e.to_string())?;
        for seq in seqs.into_iter().filter(|s| *s <= to) {
            match log.get(seq) {
                Ok(Some(ev)) => {
                    if emit(&ev) {
                        return Ok((out, sent, seq));
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    } else {
        for ev in log.range(from..=to, crate::log::Direction::Forward) {
            let ev = ev.map_err(|e| e.to_string())?;
            if filter.matches_fields(&ev) && emit(&ev) {
                return Ok((out, sent, ev.seq));
            }
        }
    }
    Ok((out, sent, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_say_line_and_column() {
        let e = split_body(b"{\n  \"a\": 1,\n  oops\n}", false).unwrap_err();
        assert_eq!((e.line, e.column), (3, 3), "{e:?}");
        let e = split_body(b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\": }\n", true).unwrap_err();
        assert_eq!(e.line, 4, "{e:?}");
        assert!(e.detail.starts_with("line 4 is not JSON"), "{e:?}");
        assert_eq!(split_body(b"[{}, {}]", false).unwrap().len(), 2);
        assert_eq!(split_body(b"{}", false).unwrap().len(), 1);
        assert_eq!(split_body(b"\n{}\n \n{}\n", true).unwrap().len(), 2);
    }

    #[test]
    fn limits_are_validated_by_name() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let zero = Limits {
            streams_max: 0,
            ..Limits::default()
        };
        assert_eq!(
            zero.validate(),
            Err("streams_max must be at least 1".to_string())
        );
        let huge = Limits {
            url_bytes_max: 2 << 20,
            ..Limits::default()
        };
        assert!(huge.validate().unwrap_err().contains("url_bytes_max"));
        assert!(Limits::default().read_buffer_bytes() > 24 * 1024);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("%zz%4", true), "%zz%4");
        assert_eq!(percent_decode("%C3%A9", false), "é");
    }

    #[test]
    fn route_names_are_a_closed_set() {
        for (m, p) in [
            (Method::POST, "/v1/events"),
            (Method::GET, "/v1/events"),
            (Method::GET, "/v1/events/x"),
            (Method::GET, "/v1/users/u/events"),
            (Method::GET, "/v1/entities/t/i/history"),
            (Method::GET, "/nope"),
        ] {
            assert!(ROUTES.contains(&route_name(&m, p)), "{m} {p}");
        }
    }
}
