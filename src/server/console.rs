//! `/` and `/console/{file}`: the web console's page and files, with
//! `/logs` and `/ui` (where people look for a log viewer) sent to it
//! (`crate::console`), public like `/healthz` (they carry no data: the page
//! asks the API, with the key the user gives it), and `GET /v1/me`: what the
//! caller's key may do, so that the console shows only that.

use super::problem::{problem, Kind};
use super::{full, json_response, Caller, Req, Resp};
use crate::auth::Role;
use crate::console;
use hyper::{Response, StatusCode};
use serde_json::json;

/// Serves the console file `name` (`None`: the page).
pub(super) fn file(req: &Req, name: Option<&str>) -> Resp {
    let name = name.unwrap_or(console::INDEX);
    let gzip = req
        .headers()
        .get_all(hyper::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|c| {
            let mut parts = c.split(';').map(str::trim);
            parts.next() == Some("gzip") && parts.all(|p| p.replace(' ', "") != "q=0")
        });
    let Some(asset) = console::asset(name, gzip) else {
        return problem(
            Kind::NoSuchRoute,
            format!("the console has no file {name:?}"),
            json!({}),
        );
    };
    let fresh = req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let mut b = Response::builder()
        .header("etag", &asset.etag)
        .header("cache-control", "no-cache")
        .header("vary", "accept-encoding");
    for (k, v) in console::SECURITY_HEADERS {
        b = b.header(k, v);
    }
    if fresh {
        return b
            .status(StatusCode::NOT_MODIFIED)
            .body(full(bytes::Bytes::new()))
            .expect("valid response");
    }
    if asset.gzip {
        b = b.header("content-encoding", "gzip");
    }
    b.status(StatusCode::OK)
        .header("content-type", asset.content_type)
        .body(full(asset.body))
        .expect("valid response")
}

/// `GET /logs` and `GET /ui`: a `302` to the console's page `to` (not a
/// permanent redirect: browsers would remember it past an upgrade).
pub(super) fn redirect(to: &'static str) -> Resp {
    let mut b = Response::builder()
        .status(StatusCode::FOUND)
        .header("location", to)
        .header("cache-control", "no-cache");
    for (k, v) in console::SECURITY_HEADERS {
        b = b.header(k, v);
    }
    b.body(full(bytes::Bytes::new())).expect("valid response")
}

/// `GET /v1/me`: the key's id, roles and tenant scope (without keys: every
/// role, every tenant).
pub(super) fn me(caller: &Caller) -> Resp {
    let body = match &caller.key {
        Some(k) => json!({
            "authenticated": true,
            "key": k.id,
            "roles": k.roles(),
            "tenants": k.scope.tenants(),
        }),
        None => json!({
            "authenticated": false,
            "key": null,
            "roles": Role::ALL.map(Role::as_str),
            "tenants": null,
        }),
    };
    json_response(StatusCode::OK, &body)
}
