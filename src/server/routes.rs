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
//! 3. Path parameters (`{id}`) are one non-empty segment each,
//!    percent-decoded (`+` stays `+`; not UTF-8 once decoded: 400); trailing
//!    slashes and repeated leading slashes are ignored.
//!
//! The router is axum's (matchit underneath); this module builds it from the
//! table, so a route is one row.

use super::problem::{query_problem, Kind, Problem};
use super::{
    admin, console, dashboard, export, facets, findings, gate, health, ingest, processes, read,
    stream, stream_ws, App, Caller, Req, Resp,
};
use crate::auth::{Keyring, MetricsAccess, Role};
use crate::intel::runs::Kind as Tracked;
use crate::query::QueryError;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use hyper::header::HeaderValue;
use hyper::Method;
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
pub(super) type Handler = fn(Arc<App>, Req, Caller, Vec<String>) -> Handled;

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
pub static ROUTES: [Route; 33] = [
    route!(GET "/", "console", Public, |_, r, _, _| Box::pin(async move { console::file(&r, None) })),
    route!(GET "/console/{file}", "console", Public, |_, r, _, p| Box::pin(async move { console::file(&r, p.first().map(String::as_str)) })),
    route!(GET "/logs", "console", Public, |_, _, _, _| Box::pin(async move { console::redirect("/#/events") })),
    route!(GET "/ui", "console", Public, |_, _, _, _| Box::pin(async move { console::redirect("/") })),
    route!(GET "/v1/me", "me", Needs(Role::Read), |_, _, c, _| Box::pin(async move { console::me(&c) })),
    route!(GET "/healthz", "healthz", Public, |a, _, _, _| Box::pin(async move { health::healthz(&a) })),
    route!(GET "/readyz", "readyz", Public, |a, _, _, _| Box::pin(async move { health::readyz(&a) })),
    route!(GET "/metrics", "metrics", Metrics, |a, _, _, _| Box::pin(async move { super::metrics::metrics(&a) })),
    route!(GET "/v1/events", "list", Needs(Role::Read), |a, r, c, _| Box::pin(read::list(a, r, false, c))),
    route!(POST "/v1/events", "ingest", Needs(Role::Ingest), |a, r, c, _| Box::pin(ingest::ingest(a, r, c))),
    route!(GET "/v1/events/{id}", "get", Needs(Role::Read), |a, r, c, p| Box::pin(read::get_event(a, r, p, c))),
    route!(GET "/v1/search", "search", Needs(Role::Read), |a, r, c, _| Box::pin(read::list(a, r, true, c))),
    route!(GET "/v1/stats", "stats", Needs(Role::Read), |a, r, c, _| Box::pin(read::stats(a, r, c))),
    route!(GET "/v1/count", "count", Needs(Role::Read), |a, r, c, _| Box::pin(facets::count(a, r, c))),
    route!(GET "/v1/fields", "fields", Needs(Role::Read), |_, _, _, _| Box::pin(async move { facets::fields() })),
    route!(GET "/v1/fields/{name}/values", "values", Needs(Role::Read), |a, r, c, p| Box::pin(facets::values(a, r, c, p))),
    route!(GET "/v1/dashboard", "dashboard", Needs(Role::Read), |a, r, c, _| Box::pin(dashboard::dashboard(a, r, c))),
    route!(GET "/v1/findings", "findings", Needs(Role::Read), |a, r, c, _| Box::pin(findings::findings(a, r, c))),
    route!(GET "/v1/export", "export", Needs(Role::Export), |a, r, c, _| Box::pin(export::export(a, r, c))),
    route!(GET "/v1/stream", "stream", Needs(Role::Read), |a, r, c, _| Box::pin(stream::stream(a, r, c))),
    route!(GET "/v1/stream/ws", "stream_ws", Needs(Role::Read), |a, r, c, _| Box::pin(stream_ws::stream_ws(a, r, c))),
    route!(GET "/v1/segments", "segments", Needs(Role::Admin), |a, r, _, _| Box::pin(admin::list_segments(a, r))),
    route!(GET "/v1/checkpoint", "checkpoint", Needs(Role::Read), |a, _, _, _| Box::pin(async move { admin::checkpoint(&a) })),
    route!(GET "/v1/retention", "retention", Needs(Role::Admin), |a, _, _, _| Box::pin(admin::retention_plan(a))),
    route!(GET "/v1/holds", "holds", Needs(Role::Admin), |a, _, _, _| Box::pin(async move { admin::list_holds(&a) })),
    route!(POST "/v1/holds", "holds", Needs(Role::Admin), |a, r, _, _| Box::pin(admin::add_hold(a, r))),
    route!(DELETE "/v1/holds/{name}", "holds", Needs(Role::Admin), |a, _, _, p| Box::pin(admin::remove_hold(a, p))),
    route!(GET "/v1/entities/{type}/{id}/history", "history", Needs(Role::Read), |a, r, c, p| Box::pin(read::history(a, r, c, p))),
    route!(GET "/v1/users/{id}/events", "timeline", Needs(Role::Read), |a, r, c, p| Box::pin(read::timeline(a, r, c, p))),
    route!(GET "/v1/processes", "processes", Needs(Role::Read), |a, r, c, _| Box::pin(processes::list(a, r, c, Tracked::Process))),
    route!(GET "/v1/processes/{id}", "process", Needs(Role::Read), |a, r, c, p| Box::pin(processes::get(a, r, c, p, Tracked::Process))),
    route!(GET "/v1/batches", "batches", Needs(Role::Read), |a, r, c, _| Box::pin(processes::list(a, r, c, Tracked::Batch))),
    route!(GET "/v1/batches/{id}", "batch", Needs(Role::Read), |a, r, c, p| Box::pin(processes::get(a, r, c, p, Tracked::Batch))),
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

/// The methods of `path`, in table order, as an `Allow` value.
pub fn allow(path: &str) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for r in ROUTES.iter().filter(|r| r.path == path) {
        if !methods.contains(&r.method.as_str()) {
            methods.push(r.method.as_str());
        }
    }
    methods.join(", ")
}

/// What the table says about one request.
pub(super) enum Lookup {
    /// The route and its percent-decoded path parameters.
    Route(&'static Route, Vec<String>),
    /// The route, but a path parameter is not UTF-8 once decoded.
    BadParameter(&'static Route),
    /// The path exists, the method not: the first route of the path and the
    /// `Allow` value.
    WrongMethod(&'static Route, Arc<str>),
    /// No route has this path.
    NotFound,
}

impl Lookup {
    /// The metrics name of the request.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Lookup::Route(r, _) | Lookup::BadParameter(r) | Lookup::WrongMethod(r, _) => r.name,
            Lookup::NotFound => OTHER,
        }
    }

    /// What the caller must be allowed (`Public` for unknown paths).
    pub(super) fn guard(&self) -> Guard {
        match self {
            Lookup::Route(r, _) | Lookup::BadParameter(r) | Lookup::WrongMethod(r, _) => r.guard,
            Lookup::NotFound => Guard::Public,
        }
    }
}

/// The axum router of [`ROUTES`]: every route's handler behind the
/// [`gate`], and for each path a fallback answering 405 (HEAD included:
/// axum would otherwise serve HEAD with the GET handler), and 404 for every
/// other path. Paths reach it with trailing slashes trimmed (see
/// [`super::serve`]).
pub(super) fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    let mut paths: Vec<&str> = Vec::new();
    for first in &ROUTES {
        if paths.contains(&first.path) {
            continue;
        }
        paths.push(first.path);
        let allow: Arc<str> = allow(first.path).into();
        let wrong_method = move |State(app): State<Arc<App>>, req: Req| {
            gate::handle(app, req, Lookup::WrongMethod(first, allow.clone()))
        };
        let mut methods = MethodRouter::new();
        for r in ROUTES.iter().filter(|r| r.path == first.path) {
            let filter = MethodFilter::try_from(r.method.clone()).expect("a standard method");
            methods = methods.on(
                filter,
                move |State(app): State<Arc<App>>,
                      params: Result<RawPathParams, RawPathParamsRejection>,
                      req: Req| {
                    let found = match params {
                        Ok(p) => Lookup::Route(r, p.iter().map(|(_, v)| v.to_owned()).collect()),
                        Err(RawPathParamsRejection::MissingPathParams(_)) => {
                            Lookup::Route(r, Vec::new())
                        }
                        Err(_) => Lookup::BadParameter(r),
                    };
                    gate::handle(app, req, found)
                },
            );
        }
        if !ROUTES
            .iter()
            .any(|r| r.path == first.path && r.method == Method::HEAD)
        {
            methods = methods.on(MethodFilter::HEAD, wrong_method.clone());
        }
        router = router.route(first.path, methods.fallback(wrong_method));
    }
    router
        .fallback(|State(app): State<Arc<App>>, req: Req| gate::handle(app, req, Lookup::NotFound))
        .with_state(app)
}

/// Runs the request's handler, or answers 400 (a path parameter that is
/// not UTF-8), 405 (with `Allow`) or 404. `target` is the path as the
/// client sent it.
pub(super) async fn dispatch(
    app: Arc<App>,
    req: Req,
    caller: Caller,
    found: Lookup,
    target: &str,
) -> Resp {
    match found {
        Lookup::Route(r, params) => (r.handler)(app, req, caller, params).await,
        Lookup::BadParameter(_) => query_problem(QueryError::BadParam {
            param: "path".into(),
            message: format!("{target}: a path parameter is not UTF-8 once percent-decoded"),
        }),
        Lookup::WrongMethod(_, allow) => {
            let detail = format!("{} is not allowed on {target}: use {allow}", req.method());
            let mut p = Problem::new(Kind::MethodNotAllowed, detail);
            if let Ok(v) = HeaderValue::from_str(&allow) {
                p = p.header(hyper::header::ALLOW, v);
            }
            p.response()
        }
        Lookup::NotFound => {
            Problem::new(Kind::NoSuchRoute, format!("{target} is not a Stele route")).response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_metrics_labels_of_today() {
        assert_eq!(
            names(),
            [
                "console",
                "me",
                "healthz",
                "readyz",
                "metrics",
                "list",
                "ingest",
                "get",
                "search",
                "stats",
                "count",
                "fields",
                "values",
                "dashboard",
                "findings",
                "export",
                "stream",
                "stream_ws",
                "segments",
                "checkpoint",
                "retention",
                "holds",
                "history",
                "timeline",
                "processes",
                "process",
                "batches",
                "batch",
                "other"
            ]
        );
    }

    #[test]
    fn allow_lists_the_methods_of_the_path() {
        for (p, methods) in [
            ("/v1/events", "GET, POST"),
            ("/v1/holds", "GET, POST"),
            ("/v1/holds/{name}", "DELETE"),
            ("/healthz", "GET"),
            ("/v1/users/{id}/events", "GET"),
        ] {
            assert_eq!(allow(p), methods, "{p}");
        }
    }

    #[test]
    fn roles_are_those_of_today() {
        let keys = Keyring::new(&crate::auth::AuthConfig::default(), None);
        let role = |m: Method, p: &str| {
            ROUTES
                .iter()
                .find(|r| r.method == m && r.path == p)
                .and_then(|r| r.guard.role(&keys))
        };
        assert_eq!(role(Method::POST, "/v1/events"), Some(Role::Ingest));
        assert_eq!(role(Method::GET, "/v1/export"), Some(Role::Export));
        assert_eq!(role(Method::DELETE, "/v1/holds/{name}"), Some(Role::Admin));
        assert_eq!(role(Method::GET, "/v1/checkpoint"), Some(Role::Read));
        assert_eq!(role(Method::GET, "/v1/stream/ws"), Some(Role::Read));
        assert_eq!(role(Method::GET, "/healthz"), None);
        assert_eq!(role(Method::GET, "/"), None);
        assert_eq!(role(Method::GET, "/console/{file}"), None);
        assert_eq!(role(Method::GET, "/v1/me"), Some(Role::Read));
        assert_eq!(Lookup::NotFound.guard().role(&keys), None);
    }
}
