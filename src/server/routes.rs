//! The route table: every route of the API once, with its method, path,
//! name (the bounded label of the metrics and of the audit records), the
//! role it needs and its handler.
//!
//! Routing, the role check, the metrics' route names, the 405 answer with
//! its `Allow` header and the OpenAPI coverage test are all derived from
//! [`ROUTES`]; nothing else lists routes.
//!
//! Invariants:
//! 1. A path that matches no route is 404 `not-found`; a path that matches
//!    but not with this method is 405 `method-not-allowed`, whose `Allow`
//!    lists the path's methods in table order.
//! 2. A request's name is its route's; for a 405, the name of the first
//!    route of that path (so `PUT /v1/events` counts as `list`); anything
//!    else is `other`. Names are a closed set (they label metrics).
//! 3. Path parameters (`{id}`) are one non-empty-or-empty segment each,
//!    percent-decoded (`+` stays `+`); leading and trailing slashes are
//!    ignored.

use super::problem::{Kind, Problem};
use super::{admin, export, health, ingest, read, stream, App, Caller, Resp};
use crate::auth::{Keyring, MetricsAccess, Role};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a route needs from the caller when API keys are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Anyone (health checks).
    Public,
    /// A key with this role.
    Role(Role),
    /// The admin role when `[auth] metrics = "admin"`, else anyone.
    Metrics,
}

impl Guard {
    /// The role needed under `keys` (`None`: public).
    pub fn role(self, keys: &Keyring) -> Option<Role> {
        match self {
            Guard::Public => None,
            Guard::Role(r) => Some(r),
            Guard::Metrics => (keys.metrics == MetricsAccess::Admin).then_some(Role::Admin),
        }
    }
}

/// A handler's future.
pub(super) type Handled = Pin<Box<dyn Future<Output = Resp> + Send>>;

/// A handler: the state, the request, the caller and the decoded path
/// parameters (in path order).
pub(super) type Handler = fn(Arc<App>, Request<Incoming>, Caller, Vec<String>) -> Handled;

/// One route of the API.
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path, parameters as `{name}` (OpenAPI's spelling).
    pub path: &'static str,
    /// The route's name in metrics and audit records.
    pub name: &'static str,
    /// Who may call it.
    pub guard: Guard,
    pub(super) handler: Handler,
}

/// The name of requests that match no route.
pub const OTHER: &str = "other";

macro_rules! route {
    ($method:ident $path:literal, $name:literal, $guard:expr, $handler:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            name: $name,
            guard: $guard,
            handler: $handler,
        }
    };
}

use Guard::{Metrics, Public, Role as Needs};

/// Every route. Order matters only among routes of one path: the first is
/// the name a 405 is counted under, and `Allow` lists them in this order.
pub static ROUTES: [Route; 18] = [
    route!(GET "/healthz", "healthz", Public, |a, _, _, _| Box::pin(async move { health::healthz(&a) })),
    route!(GET "/readyz", "readyz", Public, |a, _, _, _| Box::pin(async move { health::readyz(&a) })),
    route!(GET "/metrics", "metrics", Metrics, |a, _, _, _| Box::pin(async move { super::metrics::metrics(&a) })),
    route!(GET "/v1/events", "list", Needs(Role::Read), |a, r, c, _| Box::pin(read::list(a, r, false, c))),
    route!(POST "/v1/events", "ingest", Needs(Role::Ingest), |a, r, c, _| Box::pin(ingest::ingest(a, r, c))),
    route!(GET "/v1/events/{id}", "get", Needs(Role::Read), |a, r, c, p| Box::pin(read::get_event(a, r, p, c))),
    route!(GET "/v1/search", "search", Needs(Role::Read), |a, r, c, _| Box::pin(read::list(a, r, true, c))),
    route!(GET "/v1/stats", "stats", Needs(Role::Read), |a, r, c, _| Box::pin(read::stats(a, r, c))),
    route!(GET "/v1/export", "export", Needs(Role::Export), |a, r, c, _| Box::pin(export::export(a, r, c))),
    route!(GET "/v1/stream", "stream", Needs(Role::Read), |a, r, c, _| Box::pin(stream::stream(a, r, c))),
    route!(GET "/v1/segments", "segments", Needs(Role::Admin), |a, r, _, _| Box::pin(admin::list_segments(a, r))),
    route!(GET "/v1/checkpoint", "checkpoint", Needs(Role::Read), |a, _, _, _| Box::pin(async move { admin::checkpoint(&a) })),
    route!(GET "/v1/retention", "retention", Needs(Role::Admin), |a, _, _, _| Box::pin(admin::retention_plan(a))),
    route!(GET "/v1/holds", "holds", Needs(Role::Admin), |a, _, _, _| Box::pin(async move { admin::list_holds(&a) })),
    route!(POST "/v1/holds", "holds", Needs(Role::Admin), |a, r, _, _| Box::pin(admin::add_hold(a, r))),
    route!(DELETE "/v1/holds/{name}", "holds", Needs(Role::Admin), |a, _, _, p| Box::pin(admin::remove_hold(a, p))),
    route!(GET "/v1/entities/{type}/{id}/history", "history", Needs(Role::Read), |a, r, c, p| Box::pin(read::history(a, r, c, p))),
    route!(GET "/v1/users/{id}/events", "timeline", Needs(Role::Read), |a, r, c, p| Box::pin(read::timeline(a, r, c, p))),
];

/// Every route name, each once, in table order, then [`OTHER`]: the label
/// values of the per-route metrics.
pub fn names() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in &ROUTES {
        if !out.contains(&r.name) {
            out.push(r.name);
        }
    }
    out.push(OTHER);
    out
}

/// The path's segments, without leading and trailing slashes.
fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
}

/// The raw (still percent-encoded) parameters when `segs` has the shape of
/// `pattern`.
fn bind<'p>(pattern: &str, segs: &[&'p str]) -> Option<Vec<&'p str>> {
    let pat = segments(pattern);
    if pat.len() != segs.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pat.iter().zip(segs) {
        if p.starts_with('{') {
            params.push(*s);
        } else if p != s {
            return None;
        }
    }
    Some(params)
}

/// What the table says about one request.
pub(super) enum Lookup {
    /// The route and its decoded path parameters.
    Route(&'static Route, Vec<String>),
    /// The path exists, the method not: the first route of the path and the
    /// `Allow` value.
    WrongMethod(&'static Route, String),
    /// No route has this path.
    NotFound,
}

impl Lookup {
    /// The metrics name of the request.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Lookup::Route(r, _) | Lookup::WrongMethod(r, _) => r.name,
            Lookup::NotFound => OTHER,
        }
    }

    /// What the caller must be allowed (`Public` for unknown paths).
    pub(super) fn guard(&self) -> Guard {
        match self {
            Lookup::Route(r, _) | Lookup::WrongMethod(r, _) => r.guard,
            Lookup::NotFound => Guard::Public,
        }
    }
}

/// Looks the request up in [`ROUTES`].
pub(super) fn find(method: &Method, path: &str) -> Lookup {
    let segs = segments(path);
    let mut first: Option<&'static Route> = None;
    let mut allow: Vec<&str> = Vec::new();
    for r in &ROUTES {
        let Some(raw) = bind(r.path, &segs) else {
            continue;
        };
        if r.method == *method {
            let params = raw
                .into_iter()
                .map(|p| super::params::percent_decode(p, false))
                .collect();
            return Lookup::Route(r, params);
        }
        first.get_or_insert(r);
        if !allow.contains(&r.method.as_str()) {
            allow.push(r.method.as_str());
        }
    }
    match first {
        Some(r) => Lookup::WrongMethod(r, allow.join(", ")),
        None => Lookup::NotFound,
    }
}

/// Runs the request's handler, or answers 405 (with `Allow`) or 404.
pub(super) async fn dispatch(
    app: Arc<App>,
    req: Request<Incoming>,
    caller: Caller,
    found: Lookup,
) -> Resp {
    match found {
        Lookup::Route(r, params) => (r.handler)(app, req, caller, params).await,
        Lookup::WrongMethod(_, allow) => {
            let detail = format!(
                "{} is not allowed on {}: use {allow}",
                req.method(),
                req.uri().path()
            );
            let mut p = Problem::new(Kind::MethodNotAllowed, detail);
            if let Ok(v) = HeaderValue::from_str(&allow) {
                p = p.header(hyper::header::ALLOW, v);
            }
            p.response()
        }
        Lookup::NotFound => Problem::new(
            Kind::NoSuchRoute,
            format!("{} is not a Stele route", req.uri().path()),
        )
        .response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(m: Method, p: &str) -> &'static str {
        find(&m, p).name()
    }

    #[test]
    fn names_are_the_metrics_labels_of_today() {
        assert_eq!(
            names(),
            [
                "healthz",
                "readyz",
                "metrics",
                "list",
                "ingest",
                "get",
                "search",
                "stats",
                "export",
                "stream",
                "segments",
                "checkpoint",
                "retention",
                "holds",
                "history",
                "timeline",
                "other"
            ]
        );
        for (m, p, n) in [
            (Method::POST, "/v1/events", "ingest"),
            (Method::GET, "/v1/events", "list"),
            (Method::PUT, "/v1/events", "list"),
            (Method::GET, "/v1/events/", "list"),
            (Method::GET, "/v1/events/x", "get"),
            (Method::POST, "/v1/events/x", "get"),
            (Method::GET, "/v1/users/u/events", "timeline"),
            (Method::GET, "/v1/entities/t/i/history", "history"),
            (Method::PUT, "/v1/holds/h", "holds"),
            (Method::GET, "/nope", "other"),
            (Method::GET, "/v1/events/x/y", "other"),
        ] {
            assert_eq!(name(m.clone(), p), n, "{m} {p}");
        }
    }

    #[test]
    fn allow_lists_the_methods_of_the_path() {
        for (m, p, allow) in [
            (Method::PUT, "/v1/events", "GET, POST"),
            (Method::PUT, "/v1/holds", "GET, POST"),
            (Method::GET, "/v1/holds/x", "DELETE"),
            (Method::HEAD, "/healthz", "GET"),
            (Method::POST, "/v1/users/u/events", "GET"),
        ] {
            match find(&m, p) {
                Lookup::WrongMethod(_, a) => assert_eq!(a, allow, "{m} {p}"),
                _ => panic!("{m} {p} should be a 405"),
            }
        }
    }

    #[test]
    fn parameters_are_percent_decoded() {
        match find(&Method::GET, "/v1/entities/a%2Fb/c+d/history") {
            Lookup::Route(r, p) => {
                assert_eq!(r.name, "history");
                assert_eq!(p, ["a/b", "c+d"]);
            }
            _ => panic!("no route"),
        }
    }

    #[test]
    fn roles_are_those_of_today() {
        let keys = Keyring::new(&crate::auth::AuthConfig::default(), None);
        let role = |m: Method, p: &str| find(&m, p).guard().role(&keys);
        assert_eq!(role(Method::POST, "/v1/events"), Some(Role::Ingest));
        assert_eq!(role(Method::GET, "/v1/export"), Some(Role::Export));
        assert_eq!(role(Method::DELETE, "/v1/holds/x"), Some(Role::Admin));
        assert_eq!(role(Method::GET, "/v1/checkpoint"), Some(Role::Read));
        assert_eq!(role(Method::GET, "/healthz"), None);
        assert_eq!(role(Method::GET, "/nope"), None);
    }
}
