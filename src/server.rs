//! `stele serve`: the HTTP/JSON API on hyper 1 + tokio.
//!
//! Owns the routes, request limits and the problem+json error shape. This is
//! the first slice of the API (issue 4): health, ingest, get by id and the
//! filtered listing; the rest of the routes build on the same pieces.
//!
//! Invariants:
//! 1. An ingest request is all-or-nothing: every event is validated before
//!    any is appended, and 201 is sent only after the log made them durable.
//! 2. Every error is `application/problem+json` with a stable `type`.
//! 3. Blocking work (log reads, index queries) runs on the blocking pool,
//!    never on the async workers.

use crate::clock::{Clock, SystemClock};
use crate::event::{self, Event, FieldError};
use crate::index::{IndexConfig, Indexes};
use crate::log::{Log, LogConfig};
use crate::query::{Engine, Query, QueryError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest request body accepted.
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most events in one ingest request.
pub const EVENTS_PER_REQUEST_MAX: usize = 10_000;
/// Most connections served at once; further clients wait in the listen
/// backlog until one closes.
pub const CONNECTIONS_MAX: usize = 4096;
/// Default listen address: loopback only.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7070";

/// What `stele serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
}

struct App {
    engine: Engine,
    clock: Arc<dyn Clock>,
    /// Client ids appended (or being appended) and not yet visible in the key
    /// index, with a digest of their content: what makes retries idempotent
    /// before the indexer catches up, and two concurrent posts of one id
    /// safe.
    recent: std::sync::Mutex<HashMap<String, Recent>>,
    /// Requests and their total duration (µs), by route and status.
    requests: std::sync::Mutex<RequestCounts>,
}

/// (route, status) → (requests, total µs).
type RequestCounts = HashMap<(&'static str, u16), (u64, u64)>;

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
    /// None of the ids is known: append (the ids are now reserved).
    New(Vec<(String, [u8; 32])>),
    /// Every event was stored before with the same content: their seqs.
    Replay(Vec<u64>),
    /// Conflict: a sentence saying which id and why.
    Conflict(String),
}

impl App {
    /// Looks every client id up (recent reservations, then the key index
    /// and the log) and reserves the new ones, all under one lock.
    fn reserve(&self, events: &[Event], client_id: &[bool]) -> Result<Idempotency, QueryError> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_PRUNE_AT {
            let indexed = self.engine.indexes().indexed_seq();
            recent.retain(|_, r| r.seq.is_none_or(|s| s > indexed));
        }
        let mut known = Vec::new();
        let mut fresh = Vec::new();
        let mut in_request = std::collections::HashSet::new();
        for (ev, &client) in events.iter().zip(client_id) {
            if !client {
                continue;
            }
            let d = digest(ev);
            if !in_request.insert(ev.id.as_str()) {
                return Ok(Idempotency::Conflict(format!(
                    "id {:?} appears twice in this request",
                    ev.id
                )));
            }
            let stored = match recent.get(&ev.id) {
                Some(r) => Some((r.seq, r.digest)),
                None => match self.engine.get_by_id(&ev.id)? {
                    Some(old) => Some((Some(old.seq), digest(&old.event))),
                    None => None,
                },
            };
            match stored {
                None => fresh.push((ev.id.clone(), d)),
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

    /// Records the seqs of reserved ids, or releases them after a failure.
    fn settle(&self, reserved: &[(String, [u8; 32])], events: &[Event], first_seq: Option<u64>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match first_seq {
            Some(first) => {
                for (i, ev) in events.iter().enumerate() {
                    if let Some(r) = recent.get_mut(&ev.id) {
                        r.seq = Some(first + i as u64);
                    }
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

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;
type Resp = Response<Body>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
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
        QueryError::Index(_) | QueryError::Log(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage-failure",
            "Storage failure",
            e.to_string(),
            json!({}),
        ),
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let data_dir = cfg.data_dir.clone();
    let clock2 = clock.clone();
    let engine = tokio::task::spawn_blocking(move || -> anyhow::Result<Engine> {
        std::fs::create_dir_all(&data_dir)?;
        let log = Arc::new(
            Log::open(&data_dir, LogConfig::default(), clock2.clone()).map_err(|e| {
                anyhow::anyhow!("cannot open the log in {}: {e}", data_dir.display())
            })?,
        );
        let indexes = Arc::new(Indexes::open(
            &data_dir,
            log.clone(),
            IndexConfig::default(),
        )?);
        let key = crate::query::cursor_key(&data_dir)?;
        Ok(Engine::new(log, indexes, clock2, key))
    })
    .await??;
    let app = Arc::new(App {
        engine,
        clock,
        recent: std::sync::Mutex::new(HashMap::new()),
        requests: std::sync::Mutex::new(HashMap::new()),
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        "Listening on {addr} with data in {}.",
        cfg.data_dir.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("Could not accept a connection: {e}.");
                        continue;
                    }
                };
                let app = app.clone();
                tokio::spawn(async move {
                    let _permit = permit; // held for the connection's life
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let svc = hyper::service::service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, std::convert::Infallible>(route(app, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .header_read_timeout(std::time::Duration::from_secs(10))
                        .timer(hyper_util::rt::TokioTimer::new())
                        .serve_connection(io, svc)
                        .await;
                });
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("Shutting down.");
    Ok(())
}

async fn route(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let started = std::time::Instant::now();
    let name = route_name(req.method(), req.uri().path());
    let resp = dispatch(app.clone(), req).await;
    let micros = started.elapsed().as_micros() as u64;
    let mut r = app.requests.lock().unwrap_or_else(|p| p.into_inner());
    let e = r.entry((name, resp.status().as_u16())).or_default();
    e.0 += 1;
    e.1 += micros;
    resp
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
        (_, ["v1", "entities", _, _, "history"]) => "history",
        (_, ["v1", "users", _, "events"]) => "timeline",
        (_, ["healthz"]) => "healthz",
        (_, ["readyz"]) => "readyz",
        (_, ["metrics"]) => "metrics",
        _ => "other",
    }
}

fn readyz(app: &App) -> Resp {
    let log = app.engine.log();
    let idx = app.engine.indexes();
    let (last, indexed) = (log.last_seq(), idx.indexed_seq());
    let state = json!({"log_last_seq": last, "indexed_seq": indexed, "lag_events": last.saturating_sub(indexed)});
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
        None => json_response(StatusCode::OK, &json!({"ready": true, "state": state})),
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

async fn dispatch(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, ["readyz"]) => readyz(&app),
        (&Method::GET, ["metrics"]) => metrics(&app),
        (&Method::POST, ["v1", "events"]) => ingest(app, req).await,
        (&Method::GET, ["v1", "events"]) => list(app, req, false).await,
        (&Method::GET, ["v1", "search"]) => list(app, req, true).await,
        (&Method::GET, ["v1", "stats"]) => stats(app, req).await,
        (&Method::GET, ["v1", "export"]) => export(app, req).await,
        (&Method::GET, ["v1", "stream"]) => stream(app, req),
        (&Method::GET, ["v1", "entities", ty, id, "history"]) => {
            let (ty, id) = (percent_decode(ty, false), percent_decode(id, false));
            keyed(app, &req, move |app, limit, cursor| {
                app.engine
                    .entity_history(&ty, &id, limit, cursor.as_deref())
            })
            .await
        }
        (&Method::GET, ["v1", "users", id, "events"]) => {
            let id = percent_decode(id, false);
            keyed(app, &req, move |app, limit, cursor| {
                app.engine.user_timeline(&id, limit, cursor.as_deref())
            })
            .await
        }
        (&Method::GET, ["v1", "events", id]) => {
            let id = percent_decode(id, false);
            let app2 = app.clone();
            let found = tokio::task::spawn_blocking(move || app2.engine.get_by_id(&id)).await;
            match found {
                Ok(Ok(Some(ev))) => json_response(StatusCode::OK, &json!(ev)),
                Ok(Ok(None)) => problem(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    "No such event",
                    "no event has this id".into(),
                    json!({}),
                ),
                Ok(Err(e)) => query_problem(e),
                Err(e) => internal(e.to_string()),
            }
        }
        (_, ["healthz" | "readyz" | "metrics"])
        | (_, ["v1", "events" | "search" | "stats" | "export" | "stream"])
        | (_, ["v1", "events", _])
        | (_, ["v1", "entities", _, _, "history"])
        | (_, ["v1", "users", _, "events"]) => problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("{} is not allowed on {path}", req.method()),
            json!({}),
        ),
        _ => problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such route",
            format!("{path} is not a Stele route"),
            json!({}),
        ),
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

async fn list(app: Arc<App>, req: Request<Incoming>, text_required: bool) -> Resp {
    let pairs = query_pairs(&req);
    let now = app.clock.now_micros();
    let q = match Query::parse(&pairs, now) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    if text_required && q.filter.text.is_none() {
        return query_problem(QueryError::BadParam {
            param: "q".into(),
            message: "is required on /v1/search (tantivy syntax: words, AND/OR/NOT, \"phrases\", field:value)".into(),
        });
    }
    match tokio::task::spawn_blocking(move || app.engine.list(&q)).await {
        Ok(Ok(page)) => json_response(StatusCode::OK, &json!(page)),
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

/// Splits a request body into JSON values: one object, an array, or NDJSON.
fn split_body(body: &[u8], ndjson: bool) -> Result<Vec<Value>, String> {
    if ndjson {
        let mut out = Vec::new();
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            out.push(
                serde_json::from_slice(line)
                    .map_err(|e| format!("line {} is not JSON: {e}", n + 1))?,
            );
        }
        return Ok(out);
    }
    match serde_json::from_slice::<Value>(body).map_err(|e| format!("the body is not JSON: {e}"))? {
        Value::Array(items) => Ok(items),
        other => Ok(vec![other]),
    }
}

async fn ingest(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let ndjson = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    let body = match Limited::new(req.into_body(), BODY_BYTES_MAX)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the body could not be read within {BODY_BYTES_MAX} bytes: {e}"),
                json!({ "limit": BODY_BYTES_MAX }),
            )
        }
    };
    let values = match split_body(&body, ndjson) {
        Ok(v) => v,
        Err(detail) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid-json",
                "Invalid JSON",
                detail,
                json!({}),
            )
        }
    };
    if values.is_empty() || values.len() > EVENTS_PER_REQUEST_MAX {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid-batch-size",
            "Invalid number of events",
            format!(
                "a request carries 1 to {EVENTS_PER_REQUEST_MAX} events, this one {}",
                values.len()
            ),
            json!({ "limit": EVENTS_PER_REQUEST_MAX }),
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
    let log = app.engine.log().clone();
    let appended = log.append_async(&events).await;
    app.settle(
        &reserved,
        &events,
        appended.as_ref().ok().map(|a| a.first_seq),
    );
    match appended {
        Ok(ack) => {
            let items: Vec<Value> = events
                .iter()
                .enumerate()
                .map(|(i, e)| json!({"id": e.id, "seq": ack.first_seq + i as u64}))
                .collect();
            json_response(
                StatusCode::CREATED,
                &json!({
                    "events": items,
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
    for (k, v) in query_pairs(req) {
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
        Ok(Ok(page)) => json_response(StatusCode::OK, &json!(page)),
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

async fn stats(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let pairs = query_pairs(&req);
    let q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    if q.cursor.is_some() || pairs.iter().any(|(k, _)| k == "limit" || k == "order") {
        return query_problem(QueryError::BadParam {
            param: "limit".into(),
            message: "statistics take filters and `interval`, not `limit`, `order` or `cursor`"
                .into(),
        });
    }
    let interval = q.interval;
    match tokio::task::spawn_blocking(move || app.engine.stats(&q)).await {
        Ok(Ok(st)) => {
            let counts = |v: &[(String, u64)], key: &str| -> Value {
                v.iter()
                    .map(|(k, n)| json!({ key: k, "count": n }))
                    .collect()
            };
            json_response(
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
            )
        }
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

/// Pages fetched per export step; the channel holds at most a few chunks, so
/// an export runs in bounded memory however many events it covers.
const EXPORT_PAGE: usize = 1000;
const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;

/// CSV columns, in order: the stored fields, then every posted field in
/// on-disk order (`event::FIELD_NAMES`).
fn csv_columns() -> impl Iterator<Item = &'static str> {
    ["seq", "received_at"]
        .into_iter()
        .chain(event::FIELD_NAMES.iter().copied())
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

/// A response body fed by a channel of chunks (chunked encoding).
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

async fn export(app: Arc<App>, req: Request<Incoming>) -> Resp {
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
    if pairs.iter().any(|(k, _)| k == "limit" || k == "cursor") {
        return query_problem(QueryError::BadParam {
            param: "limit".into(),
            message: "an export covers every matching event: give filters, not `limit` or `cursor`"
                .into(),
        });
    }
    let explicit_order = pairs.iter().any(|(k, _)| k == "order");
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    if !explicit_order {
        q.order = crate::index::text::Order::Asc; // chronological unless asked
    }
    q.limit = EXPORT_PAGE;
    // Check the query before promising a 200.
    let (app2, filter) = (app.clone(), q.filter.clone());
    match tokio::task::spawn_blocking(move || app2.engine.count(&filter)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return query_problem(e),
        Err(e) => return internal(e.to_string()),
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(EXPORT_CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        if csv {
            let mut header = csv_columns().collect::<Vec<_>>().join(",");
            header.push_str("\r\n");
            if tx.blocking_send(Bytes::from(header)).is_err() {
                return;
            }
        }
        loop {
            let page = match app.engine.list(&q) {
                Ok(p) => p,
                Err(e) => {
                    // Headers are gone: end the body early; the client sees
                    // a truncated chunked response, not a silent success.
                    tracing::error!("An export stopped: {e}.");
                    return;
                }
            };
            if let (Some(a), Some(b)) = (page.events.first(), page.events.last()) {
                // The page's events were read one by one: give their pages
                // back so a long export keeps a bounded resident set.
                let _ = app.engine.log().release(a.seq.min(b.seq), a.seq.max(b.seq));
            }
            let mut chunk = String::with_capacity(page.events.len() * 600);
            for ev in &page.events {
                if csv {
                    chunk.push_str(&csv_row(ev));
                } else {
                    chunk.push_str(&json!(ev).to_string());
                    chunk.push('\n');
                }
            }
            if !chunk.is_empty() && tx.blocking_send(Bytes::from(chunk)).is_err() {
                return; // the client went away
            }
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return,
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
/// Events read from the log per step of a stream.
const STREAM_READ_EVENTS: u64 = 512;

/// `GET /v1/stream`: Server-Sent Events. Every stream reads from the log by
/// seq (there is no live buffer to overflow): a slow consumer simply falls
/// behind and continues from the log, and a reconnect with `Last-Event-ID`
/// (or `from_seq`) resumes right after the last event it saw.
fn stream(app: Arc<App>, req: Request<Incoming>) -> Resp {
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
            Some(s) => from = Some(s + 1),
            None => {
                return query_problem(QueryError::BadParam {
                    param: "Last-Event-ID".into(),
                    message: "must be the id (seq) of an event this stream sent".into(),
                })
            }
        }
    }
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| matches!(k.as_str(), "q" | "limit" | "cursor" | "order" | "interval"))
    {
        return query_problem(QueryError::BadParam {
            param: k.clone(),
            message: "a stream takes the structured filters and from_seq; full text, limit, cursor and order do not apply".into(),
        });
    }
    let q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    let log = app.engine.log().clone();
    let mut next = from
        .unwrap_or_else(|| log.last_seq() + 1)
        .max(log.first_seq());
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut durable = log.subscribe();
        let _ = tx.send(Bytes::from_static(b": stele stream\n\n")).await;
        loop {
            let last = log.last_seq();
            if next <= last {
                let to = last.min(next + STREAM_READ_EVENTS - 1);
                let (log2, filter) = (log.clone(), q.filter.clone());
                let read = tokio::task::spawn_blocking(move || {
                    let mut out = String::new();
                    for ev in log2.range(next..=to, crate::log::Direction::Forward) {
                        let ev = ev?;
                        if filter.matches_fields(&ev) {
                            out.push_str(&format!(
                                "id: {}\nevent: audit\ndata: {}\n\n",
                                ev.seq,
                                json!(ev)
                            ));
                        }
                    }
                    Ok::<_, crate::log::Error>(out)
                })
                .await;
                match read {
                    Ok(Ok(chunk)) => {
                        if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                            return; // the client went away
                        }
                        next = to + 1;
                    }
                    Ok(Err(e)) => {
                        let msg = format!(
                            "event: error\ndata: {}\n\n",
                            json!({"detail": e.to_string()})
                        );
                        let _ = tx.send(Bytes::from(msg)).await;
                        return;
                    }
                    Err(_) => return,
                }
                continue;
            }
            let beat = tokio::time::sleep(std::time::Duration::from_secs(STREAM_HEARTBEAT_SECS));
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return },
                _ = beat => {
                    if tx.send(Bytes::from_static(b": heartbeat\n\n")).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .body(ChannelBody(rx).boxed())
        .expect("valid response")
}
