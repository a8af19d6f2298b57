//! The gate every request passes before its handler: the head limits
//! (414/431), credentials in the URL (400), authentication (401), the key's
//! rate limit (429) and the route's role (403), in that order; then the
//! request timeout, the audit record and the per-route metrics.
//!
//! Invariants:
//! 1. Nothing records a request (audit event, refusal) before its head
//!    passed the limits and carries no credential in the URL.
//! 2. Ingest is not audited (the events posted are their own record);
//!    every other route a key reaches is, refusals by role included.

use super::params::query_pairs;
use super::problem::{problem, Kind};
use super::routes::{self, Guard, Lookup};
use super::{App, Caller, Limits, Received, Req, Resp, ResultCount};
use crate::access::{Access, Phase};
use crate::auth::Role;
use crate::sync::Recover;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Answers one request the router looked up: the gate, the handler the
/// route table names (within `request_timeout_secs`), the audit record, the
/// metrics.
pub(super) async fn handle(app: Arc<App>, req: Req, found: Lookup) -> Resp {
    let started = std::time::Instant::now();
    let received = req
        .extensions()
        .get::<Received>()
        .cloned()
        .expect("the accept loop marks every request");
    let ip = received.ip;
    let name = found.name();
    // Before anything can record the request (an audit event, a refusal).
    let refused = check_head(&app.limits(), &req, &received).or_else(|| check_credentials(&req));
    let resp = match refused {
        Some(r) => r,
        None => match authorize(&app, &req, name, found.guard(), &received) {
            Err(r) => *r,
            Ok(mut caller) => {
                caller.addr = Some(ip);
                let timeout = Duration::from_secs(app.limits().request_timeout_secs);
                let access = caller.access.clone();
                let resp = match tokio::time::timeout(
                    timeout,
                    routes::dispatch(app.clone(), req, caller, found, received.path()),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => problem(
                        Kind::RequestTimeout,
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
    if let Some(h) = app.stats.latency.get(name) {
        h.observe(took);
    }
    let mut r = app.stats.requests.exclusive();
    let e = r.entry((name, resp.status().as_u16())).or_default();
    e.0 += 1;
    e.1 += took.as_micros() as u64;
    resp
}

/// Authentication (401), the key's rate limit (429), the route's role
/// (403), in that order; the caller on success.
fn authorize(
    app: &Arc<App>,
    req: &Req,
    name: &'static str,
    guard: Guard,
    received: &Received,
) -> Result<Caller, Box<Resp>> {
    let ip = received.ip;
    let keys = app.keyring();
    let role = match guard.role(&keys) {
        Some(r) if keys.enabled() => r,
        _ => return Ok(Caller::default()),
    };
    let header = req.headers().get(hyper::header::AUTHORIZATION);
    let key = match keys.authenticate(header.map(|h| h.as_bytes())) {
        Ok(k) => k,
        Err(e) => {
            app.stats.auth_failures[e.reason_index()].fetch_add(1, Ordering::Relaxed);
            let mut r = problem(Kind::Unauthorized, e.detail(), json!({}));
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"stele\""),
            );
            return Err(Box::new(r));
        }
    };
    if let Err(limited) = key.check_rate(role, name) {
        app.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        let secs = limited.retry_after_secs();
        let mut r = problem(
            Kind::RateLimited,
            format!(
                "key {:?} is over its rate limit of {} for {} requests ({name}): retry in \
                 {secs} s",
                key.id,
                limited.rate.in_words(),
                role.as_str()
            ),
            json!({ "retry_after": secs, "limit": limited.rate.count }),
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
            path: received.path().to_string(),
            params: query_pairs(req),
            ip,
        })
    };
    if !key.has(role) {
        app.stats.forbidden.fetch_add(1, Ordering::Relaxed);
        // Refused reads are recorded too (the rate limit bounds them).
        if let Some(ev) = access().event(Phase::Request, 403, None, Default::default()) {
            app.auditor.record_detached(ev);
        }
        return Err(Box::new(problem(
            Kind::Forbidden,
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
    // A stream's or an export's records are its start and end.
    if matches!(
        (access.route, status),
        ("export" | "stream", 200) | ("stream_ws", 101)
    ) {
        return resp;
    }
    let count = resp.extensions_mut().remove::<ResultCount>().map(|c| c.0);
    if let Some(ev) = access.event(Phase::Request, status, count, Default::default()) {
        app.auditor.record(ev).await;
    }
    resp
}

/// The status of an export or a stream that started: 101 for a WebSocket,
/// else 200 (what its start and end records say).
pub(super) fn opened_status(route: &str) -> u16 {
    if route == "stream_ws" {
        101
    } else {
        200
    }
}

/// Records the start of an export or a stream durably, before anything of
/// its body is produced; the refusal when that fails (no unrecorded read).
pub(super) async fn record_start(app: &Arc<App>, caller: &Caller) -> Option<Resp> {
    let a = caller.access.as_ref()?;
    let ev = a.event(
        Phase::Start,
        opened_status(a.route),
        None,
        Default::default(),
    )?;
    match app.auditor.record_durable(ev).await {
        Ok(()) => None,
        Err(e) => Some(problem(
            Kind::LogUnavailable,
            format!(
                "this {} cannot be recorded in the audit trail: {e}",
                a.route
            ),
            json!({}),
        )),
    }
}

/// 414 or 431 for a request head over the limits.
fn check_head(limits: &Limits, req: &Req, received: &Received) -> Option<Resp> {
    let target = received
        .uri
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > limits.url_bytes_max {
        return Some(problem(
            Kind::UriTooLong,
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
            Kind::HeadersTooLarge,
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
fn check_credentials(req: &Req) -> Option<Resp> {
    for (name, _) in query_pairs(req) {
        let canonical = name.trim().to_ascii_lowercase().replace('-', "_");
        if let Some(p) = CREDENTIAL_PARAMS.iter().find(|p| **p == canonical) {
            return Some(problem(
                Kind::CredentialsInUrl,
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
            Kind::DuplicateAuthorization,
            format!(
                "the request has {authorizations} Authorization headers; send exactly one \
                 (Bearer <key>)"
            ),
            json!({ "field": "authorization" }),
        ));
    }
    None
}
