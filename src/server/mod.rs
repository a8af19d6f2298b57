//! `stele serve`: the HTTP/JSON API on hyper 1 + tokio.
//!
//! Owns the daemon's shared state ([`App`]), the accept loop and graceful
//! shutdown. The rest lives in one module a concern:
//! - [`routes`]: the route table (method, path, name, role, handler), from
//!   which routing, the role check, the metrics' names and 405s derive;
//! - [`gate`]: what every request passes before its handler (head limits,
//!   credentials in the URL, authentication, rate limits, roles) and after
//!   it (audit records, metrics);
//! - [`problem`]: the closed set of problem+json answers;
//! - handlers: [`ingest`], [`read`], [`export`], [`stream`], [`admin`],
//!   [`health`], [`metrics`];
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
mod export;
mod gate;
mod health;
mod ingest;
mod metrics;
mod params;
pub mod problem;
mod read;
mod reload;
pub mod routes;
mod stream;

pub use crate::config::{Limits, Reloaded, Reloader, ServeConfig, LISTEN_DEFAULT};
pub use health::READY_LAG_EVENTS_MAX;
pub use ingest::{split_body, JsonError};
pub use routes::{Route, ROUTES};
pub use stream::STREAM_HEARTBEAT_SECS;

use crate::access::{Access, Auditor, Phase};
use crate::auth::{Key, Keyring, Scope};
use crate::clock::{Clock, SystemClock};
use crate::index::Indexes;
use crate::ingest::RecentIds;
use crate::log::Log;
use crate::metrics::Histogram;
use crate::query::Engine;
use crate::retention::runner::Retainer;
use crate::sync::Recover;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

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
    /// 401s by reason (`gate::AUTH_FAILURES` order).
    auth_failures: [AtomicU64; 5],
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
}

/// The seal's reports, for `/readyz` and `/metrics`.
struct SealView {
    /// The digester's counters (signed digests, failed runs).
    digests: Arc<crate::digest::DigestStats>,
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
    reload::watch_signals(stop_tx, hup_tx)?;
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
    let sealed_sha256: Arc<std::sync::Mutex<HashMap<String, String>>> = Arc::default();
    let forget = sealed_sha256.clone();
    let retainer = crate::retention::runner::Retainer::open(
        cfg.data_dir.clone(),
        engine.log().clone(),
        engine.indexes().clone(),
        clock.clone(),
        cfg.retention.clone(),
        Box::new(move |names| {
            let mut sha = forget.exclusive();
            for name in names {
                sha.remove(name);
            }
        }),
    )?;
    let retention_runner = retainer.start()?;
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let engine_log = engine.log().clone();
    let app = Arc::new(App {
        engine,
        clock,
        data_dir: cfg.data_dir.clone(),
        settings: Settings {
            limits: std::sync::RwLock::new(limits),
            keys: std::sync::RwLock::new(Arc::new(Keyring::new(&cfg.auth, None))),
            listen: cfg.listen,
            tls,
        },
        ids: RecentIds::default(),
        stats: Stats::new(),
        lifecycle: Lifecycle {
            stopping: stop_rx.clone(),
            connections: connections.clone(),
        },
        sealed_sha256,
        retainer,
        seal: SealView {
            digests: seal.digest_stats(),
            status: seal.status(),
            checkpoints: seal.checkpoint_stats(),
        },
        auditor: Auditor::start(engine_log),
    });
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
    reload::spawn_reloader(app.clone(), cfg.reload.clone(), hup_rx, serving.clone());
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
                    app.stats.write_stalls.clone(),
                );
                let app = app.clone();
                let ip = peer.ip();
                let svc = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, std::convert::Infallible>(gate::handle(app, req, ip).await) }
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
    let checkpointer = tokio::task::spawn_blocking(move || {
        retention_runner.stop();
        seal.stop_but_checkpointer()
    })
    .await?;
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
