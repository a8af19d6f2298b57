//! `stele serve`: the HTTP/JSON API on axum (hyper 1 + tokio underneath).
//!
//! Owns the daemon's shared state ([`App`]), the accept loop and graceful
//! shutdown. The accept loop is Stele's own (connection limit, the
//! write-stall wrapper, TLS with certificate reload, per-connection head
//! limits from the limits in force); each connection serves the tower stack
//! built once: panics caught into problems, request tracing (debug level),
//! trailing slashes trimmed, then the axum router of [`routes::ROUTES`]. The rest lives in one module a concern:
//! - [`routes`]: the route table (method, path, name, role, handler), from
//!   which routing, the role check, the metrics' names and 405s derive;
//! - [`gate`]: what every request passes before its handler (head limits,
//!   credentials in the URL, authentication, rate limits, roles) and after
//!   it (audit records, metrics);
//! - [`problem`]: the closed set of problem+json answers;
//! - handlers: [`ingest`], [`read`], [`export`], [`stream`], [`admin`],
//!   [`health`], [`metrics`], [`processes`] (runs and batch operations);
//! - [`params`]: query strings and path parameters;
//! - [`reload`]: signals and SIGHUP.
//!
//! Never touches the storage formats: it calls the log, the indexes and the
//! query engine, and [`crate::ingest`] for idempotency.
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

mod admin;
mod console;
mod dashboard;
mod export;
mod facets;
mod findings;
mod gate;
mod health;
mod ingest;
mod metrics;
mod params;
pub mod problem;
mod processes;
mod read;
mod reload;
pub mod routes;
mod state;
mod stream;
mod stream_ws;

use crate::config::{Limits, Reloaded};
pub use health::READY_LAG_EVENTS_MAX;
#[cfg(any(test, feature = "testkit"))]
pub(crate) use ingest::{split_body, Events};
pub use routes::{Route, ROUTES};
pub use state::{open_engine, Handle, State};
pub use stream::STREAM_HEARTBEAT_SECS;

use crate::access::{Access, Auditor, Phase};
use crate::auth::{Key, Keyring, Scope};
use crate::clock::Clock;
use crate::ingest::RecentIds;
use crate::metrics::Histogram;
use crate::query::Engine;
use crate::retention::runner::Retainer;
use crate::sync::Recover;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::NormalizePathLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

/// The daemon's state, shared by every request.
struct App {
    /// Queries, and through it the log and the indexes.
    engine: Engine,
    clock: Arc<dyn Clock>,
    /// The data directory (free space, digests, holds).
    data_dir: PathBuf,
    /// What SIGHUP may change.
    settings: Settings,
    /// Idempotent ingest: ids not yet in the key index.
    ids: RecentIds,
    /// Counters and gauges of `/metrics` owned by the server.
    stats: Stats,
    /// Stopping, and the connection slots.
    lifecycle: Lifecycle,
    /// SHA-256 of sealed segments (they never change), by file name;
    /// retention forgets the files it drops.
    sealed_sha256: Arc<Mutex<HashMap<String, String>>>,
    /// Retention: its settings, the legal holds and the runner's counters.
    retainer: Arc<Retainer>,
    /// What the seal reports (digests, checkpoints, damage).
    seal: SealView,
    /// Writes the `audit_access` events.
    auditor: Auditor,
    /// Scores events posted without a `risk_score` (`crate::intel::risk`).
    risk: Mutex<crate::intel::risk::RiskState>,
    /// The alert task's statistics and reloads.
    alerts: crate::alert::Alerts,
    /// Process runs and batch operations, kept current by the activity
    /// feed (`GET /v1/processes`, `GET /v1/batches`).
    processes: Arc<crate::intel::processes::Processes>,
    /// The detectors (`crate::intel::watch`); `None` with `[detect] enabled = false`.
    watch: Option<Arc<crate::intel::watch::Watch>>,
    /// What the archive's uploader reports; `None` without `[archive]`.
    archive: Option<Arc<crate::archive::ArchiveStatus>>,
}

/// The reloadable settings, read through [`App::limits`] and
/// [`App::keyring`] (retention's are the [`Retainer`]'s).
struct Settings {
    limits: RwLock<Limits>,
    /// The API keys in force; empty: no authentication.
    keys: RwLock<Arc<Keyring>>,
    /// The address served (keys cannot all be removed from a non-loopback
    /// one by a reload).
    listen: SocketAddr,
    /// The certificate in force, when serving TLS.
    tls: Option<Arc<crate::tls::CertResolver>>,
    /// `[ingest.field_map]` in force (SIGHUP may change it).
    field_map: RwLock<Arc<crate::event::FieldMap>>,
}

/// The server's own counters (the log's, the seal's and retention's are
/// theirs).
#[derive(Default)]
struct Stats {
    /// Requests and their total duration (µs), by route and status.
    requests: Mutex<metrics::RequestCounts>,
    /// Request latency by route name (head to response head).
    latency: HashMap<&'static str, Histogram>,
    /// Time ingest requests wait for their events to become durable.
    append_seconds: Histogram,
    /// Events accepted over HTTP.
    ingested: AtomicU64,
    streams_open: AtomicU64,
    exports_open: AtomicU64,
    /// 401s by reason (`auth::AUTH_FAILURE_REASONS` order).
    auth_failures: [AtomicU64; crate::auth::AUTH_FAILURE_REASONS.len()],
    /// 403s (a key without the route's role, or writing another tenant).
    forbidden: AtomicU64,
    /// 429s (rate limits and per-key stream limits).
    rate_limited: AtomicU64,
    /// Connections closed because the client read nothing for
    /// `write_stall_timeout_secs` (see [`crate::stall`]).
    write_stalls: Arc<AtomicU64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency: routes::names()
                .into_iter()
                .map(|r| (r, Histogram::default()))
                .collect(),
            ..Stats::default()
        }
    }
}

/// Stopping and connection slots.
struct Lifecycle {
    /// Becomes true on SIGTERM/SIGINT: streams end, exports stop.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// One permit per open connection (`connections_max`).
    connections: Arc<tokio::sync::Semaphore>,
    /// Dropped with the `App`: closing waits for it (see [`state`]).
    _done: tokio::sync::mpsc::Sender<()>,
}

/// The seal's reports, for `/readyz` and `/metrics`.
struct SealView {
    /// The digester's counters (signed digests, failed runs).
    digests: Arc<crate::seal::digest::DigestStats>,
    /// What the seal knows (damaged segments, unsigned days, scrubbing).
    status: Arc<crate::seal::SealStatus>,
    /// The checkpointer's counters and newest checkpoint (none without a key).
    checkpoints: Option<Arc<crate::seal::checkpoint::CheckpointStats>>,
}

impl App {
    /// The limits in force (SIGHUP may change them).
    fn limits(&self) -> Limits {
        *self.settings.limits.shared()
    }

    /// The field-name mapping in force (SIGHUP may change it).
    fn field_map(&self) -> Arc<crate::event::FieldMap> {
        self.settings.field_map.shared().clone()
    }

    /// The keys in force (SIGHUP may change them).
    fn keyring(&self) -> Arc<Keyring> {
        self.settings.keys.shared().clone()
    }

    /// Whether shutdown began.
    fn stopping(&self) -> bool {
        *self.lifecycle.stopping.borrow()
    }
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
    fn restrict(&self, filter: &mut crate::query::Filter) {
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
        let status = gate::opened_status(a.route);
        if let Some(ev) = a.event(Phase::End, status, Some(self.sent), extra) {
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

/// A request as the handlers see it (axum's body type).
type Req = axum::extract::Request;

/// What the accept loop knows of a request before routing, as a request
/// extension: the peer's address and the target exactly as sent (routing
/// sees it with trailing slashes trimmed; problems, limits and audit
/// records use it as sent).
#[derive(Clone)]
struct Received {
    ip: std::net::IpAddr,
    uri: hyper::Uri,
    /// The connection's `connections_max` slot, shared: the connection
    /// holds it, and so does a WebSocket it is upgraded to, which outlives
    /// the HTTP connection's task (`stream_ws`). The slot is free once
    /// both let go.
    slot: Arc<tokio::sync::OwnedSemaphorePermit>,
}

impl Received {
    /// The path as the client sent it.
    fn path(&self) -> &str {
        self.uri.path()
    }
}

/// Why a streamed body was cut short.
type BodyError = Box<dyn std::error::Error + Send + Sync>;

type Body = http_body_util::combinators::BoxBody<Bytes, BodyError>;

type Resp = Response<Body>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A JSON response of a typed body, written straight into one buffer (no
/// `Value` tree in between): for answers built per item, such as ingest's.
fn serialized_response(status: StatusCode, body: &impl serde::Serialize) -> Resp {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes_response(status, bytes),
        Err(e) => problem::internal(e.to_string()),
    }
}

fn json_bytes_response(status: StatusCode, json: Vec<u8>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(json))
        .expect("valid response")
}

fn json_response(status: StatusCode, body: &Value) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .expect("valid response")
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

/// A handler panicked: 500 `internal` instead of a dropped connection (the
/// panic itself is logged by the panic hook).
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Resp {
    problem::Problem::new(
        problem::Kind::Internal,
        "the server failed while answering this request; it was logged",
    )
    .response()
}

/// Serves one connection until it ends, upgrades included; once the daemon
/// stops, ends it gracefully (the response in flight finishes, then the
/// connection closes), as hyper-util's `Watcher::watch` does for connections
/// without upgrades (it has no impl for hyper's `UpgradeableConnection`).
/// `_watcher` counts the connection until then for
/// `GracefulShutdown::shutdown`. An upgraded connection (a WebSocket)
/// leaves hyper here; its task watches `stopping` itself (`stream_ws`).
async fn serve_connection<I, S, B>(
    conn: hyper::server::conn::http1::Connection<I, S>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    _watcher: hyper_util::server::graceful::Watcher,
) where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BodyError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<BodyError>,
{
    let conn = conn.with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = async { let _ = stopping.wait_for(|s| *s).await; } => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Connections the kernel completes and queues for the accept loop while it
/// is busy or holds `connections_max` (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default). tokio's `TcpListener::bind` asks
/// for 128 (mio ≥ 1.1 follows std), which a burst of a few hundred clients
/// overflows: the kernel then drops their handshakes and they wait 1, 3, 7 s…
/// to retry.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`] (`SO_REUSEADDR` like
/// tokio's `bind`). Needs a tokio runtime.
///
/// # Errors
/// The socket cannot be made, bound or put to listen.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `listener` with `state` until `shutdown` completes, then shuts
/// down gracefully (invariant 5): stops accepting, ends streams and exports,
/// gives in-flight requests `shutdown_grace_secs`, then closes the state
/// (final checkpoint of the indexes, the log's last answers). Signals,
/// systemd and TLS setup are the caller's ([`crate::daemon`]).
///
/// # Errors
/// The connection semaphore closed, or closing the state failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let app = state.app.clone();
    let acceptor = match &app.settings.tls {
        Some(r) => Some(tokio_rustls::TlsAcceptor::from(
            r.server_config().map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
        None => None,
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Built per connection, from the limits in force (SIGHUP may change them).
    let http_for = |l: &Limits| {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.header_read_timeout(Duration::from_secs(l.header_read_timeout_secs))
            .max_buf_size(l.read_buffer_bytes())
            .timer(hyper_util::rt::TokioTimer::new());
        http
    };
    let connections = app.lifecycle.connections.clone();
    let service = tower::ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(panicked))
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(NormalizePathLayer::trim_trailing_slash())
        .service(routes::router(app.clone()));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
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
            },
            () = &mut shutdown => break,
        };
        let limits = app.limits();
        let http = http_for(&limits);
        let stream = crate::stall::WriteStall::new(
            stream,
            Duration::from_secs(limits.write_stall_timeout_secs),
            app.stats.write_stalls.clone(),
        );
        let service = service.clone();
        let ip = peer.ip();
        let slot = Arc::new(permit);
        let conn_slot = slot.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let received = Received {
                ip,
                uri: req.uri().clone(),
                slot: conn_slot.clone(),
            };
            req.extensions_mut().insert(received);
            service.clone().oneshot(req)
        });
        let watcher = graceful.watcher();
        let stopping = app.lifecycle.stopping.clone();
        let acceptor = acceptor.clone();
        let handshake = Duration::from_secs(limits.header_read_timeout_secs);
        tokio::spawn(async move {
            let _slot = slot; // held for the connection's life
            match acceptor {
                None => {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    serve_connection(http.serve_connection(io, svc), stopping, watcher).await;
                }
                // The handshake has the head's time limit: a client that
                // never finishes it is dropped.
                Some(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let io = hyper_util::rt::TokioIo::new(tls);
                            serve_connection(http.serve_connection(io, svc), stopping, watcher)
                                .await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}."),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out."),
                    }
                }
            }
        });
    }
    drop(listener);
    // Streams end and exports stop from here on.
    let _ = state.stop.send(true);
    let grace = Duration::from_secs(app.limits().shutdown_grace_secs);
    tracing::info!(
        "Shutting down: no new connections; in-flight requests have {} s to finish.",
        grace.as_secs()
    );
    // The router holds the state too; connections hold clones of it.
    drop((app, service));
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Some requests did not finish within the grace period; closing them.");
    }
    state.close().await
}
