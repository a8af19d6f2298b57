//! The read routes: lists, search, one event by id, statistics, entity
//! history and user timelines.

use super::params::{query_pairs, reject_params};
use super::problem::{internal, problem, query_problem, Kind};
use super::{
    counted, json_bytes_response, json_response, serialized_response, App, Caller, Req, Resp,
};
use crate::auth::Scope;
use crate::event;
use crate::index::text::StatsAnswer;
use crate::ingest::AMBIGUOUS_TENANTS_MAX;
use crate::query::{
    Filter, Interval, Order, Paging, Query, QueryError, RenderedPage, Stages, StatsParams,
};
use hyper::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /v1/events` and `GET /v1/search`: a page after a cursor, or at an
/// offset (`offset`, `page`), with the total when asked for (`total=true`).
pub(super) async fn list(app: Arc<App>, req: Req, text_required: bool, caller: Caller) -> Resp {
    let mut pairs = query_pairs(&req);
    if let Some(r) = reject_params(&pairs, &["interval"], INTERVAL_IS_FOR_STATS) {
        return r;
    }
    let paging = match Paging::take(&mut pairs) {
        Ok(p) => p,
        Err(e) => return query_problem(e),
    };
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
    staged_page_answer(move || {
        let mut stages = Stages::default();
        let page: RenderedPage = app.engine.list_as(&q, &paging, &mut stages)?;
        Ok((page, Some(stages)))
    })
    .await
}

/// A page's answer: `200` with the page (counted in the metrics), or the
/// query's problem. `run` works on a blocking thread.
async fn page_answer(
    run: impl FnOnce() -> Result<RenderedPage, QueryError> + Send + 'static,
) -> Resp {
    staged_page_answer(move || run().map(|page| (page, None))).await
}

/// [`page_answer`] of a run that says where its time went: the answer then
/// carries `Server-Timing` (search, fetch, count when asked, render; ms).
async fn staged_page_answer(
    run: impl FnOnce() -> Result<(RenderedPage, Option<Stages>), QueryError> + Send + 'static,
) -> Resp {
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok((page, stages))) => {
            let started = std::time::Instant::now();
            let mut resp = match page.to_json() {
                Ok(body) => json_bytes_response(StatusCode::OK, body),
                Err(e) => return internal(e.to_string()),
            };
            if let Some(s) = stages {
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
                let mut timing = format!(
                    "search;dur={:.3}, fetch;dur={:.3}",
                    ms(s.search),
                    ms(s.fetch)
                );
                if page.total.is_some() {
                    timing.push_str(&format!(", count;dur={:.3}", ms(s.count)));
                }
                timing.push_str(&format!(", render;dur={:.3}", ms(started.elapsed())));
                if let Ok(v) = hyper::header::HeaderValue::from_str(&timing) {
                    resp.headers_mut().insert("server-timing", v);
                }
            }
            counted(resp, page.events.len())
        }
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

/// Why a listing refuses `interval`.
const INTERVAL_IS_FOR_STATS: &str = "`interval` applies to /v1/stats only";

/// `GET /v1/events/{id}[?tenant=T]`. Ids are unique per tenant (events
/// without a tenant are a namespace of their own), so an id may name several
/// events. `tenant` picks one (empty: the one without a tenant); without it,
/// the key's tenants are searched (every tenant for an all-tenant key): one
/// match is the answer, several are a 409 `ambiguous-id` naming the tenants.
/// Another tenant's event is as absent as one never stored (404): a scoped
/// key learns nothing about ids outside its tenants.
pub(super) async fn get_event(
    app: Arc<App>,
    req: Req,
    params: Vec<String>,
    caller: Caller,
) -> Resp {
    let id = params.concat();
    let mut tenant: Option<Option<String>> = None;
    for (k, v) in query_pairs(&req) {
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
    let found = tokio::task::spawn_blocking(move || {
        app2.ids.find_by_id(&app2.engine, &id2, among.as_deref())
    })
    .await;
    let found = match found {
        Ok(Ok(evs)) => evs
            .into_iter()
            .filter(|ev| scope.allows(ev.event.tenant.as_deref()))
            .collect::<Vec<_>>(),
        Ok(Err(e)) => return query_problem(e),
        Err(e) => return internal(e.to_string()),
    };
    match found.as_slice() {
        [ev] => counted(serialized_response(StatusCode::OK, ev), 1),
        [] => counted(
            problem(
                Kind::NoSuchEvent,
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
                    Kind::AmbiguousId,
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

/// `GET /v1/entities/{type}/{id}/history`: oldest first unless `order` says.
pub(super) async fn history(app: Arc<App>, req: Req, caller: Caller, params: Vec<String>) -> Resp {
    let [ty, id]: [String; 2] = params.try_into().unwrap_or_default();
    let by_path = ["entity_type", "entity_id"];
    keyed(
        app,
        query_pairs(&req),
        caller,
        &by_path,
        Order::Asc,
        move |app, q, total| {
            let mut page = app.engine.entity_history_as(&q, &ty, &id)?;
            if total {
                let of_entity = Filter {
                    entity_type: Some(ty),
                    entity_id: Some(id),
                    ..q.filter
                };
                page.total = Some(app.engine.count(&of_entity)?);
            }
            Ok(page)
        },
    )
    .await
}

/// `GET /v1/users/{id}/events`: newest first unless `order` says.
pub(super) async fn timeline(app: Arc<App>, req: Req, caller: Caller, params: Vec<String>) -> Resp {
    let id = params.concat();
    keyed(
        app,
        query_pairs(&req),
        caller,
        &["user_id"],
        Order::Desc,
        move |app, q, total| {
            let mut page = app.engine.user_timeline_as(&q, &id)?;
            if total {
                let of_user = Filter {
                    user_id: Some(id),
                    ..q.filter
                };
                page.total = Some(app.engine.count(&of_user)?);
            }
            Ok(page)
        },
    )
    .await
}

/// History and timeline routes: the listing parameters (filters, windows,
/// `q`, `sort`, `order`, `limit`, `cursor`, `total`) except the fields the
/// path names; they page by cursor only. `run` gets whether `total` was asked.
async fn keyed(
    app: Arc<App>,
    mut pairs: Vec<(String, String)>,
    caller: Caller,
    by_path: &[&str],
    order: Order,
    run: impl FnOnce(&App, Query, bool) -> Result<RenderedPage, QueryError> + Send + 'static,
) -> Resp {
    if let Some(r) = reject_params(&pairs, by_path, "is given by the path on this route") {
        return r;
    }
    if let Some(r) = reject_params(
        &pairs,
        &["offset", "page"],
        "histories and timelines page by `cursor` (each page's `next_cursor`)",
    ) {
        return r;
    }
    let paging = match Paging::take(&mut pairs) {
        Ok(p) => p,
        Err(e) => return query_problem(e),
    };
    if let Some(r) = reject_params(&pairs, &["interval"], INTERVAL_IS_FOR_STATS) {
        return r;
    }
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    if !pairs.iter().any(|(k, _)| k == "order") {
        q.order = order;
    }
    caller.restrict(&mut q.filter);
    page_answer(move || run(&app, q, paging.total)).await
}

/// `GET /v1/stats`: without `group_by` and `include`, the full statistics
/// object (every part; `top` cuts every list); with them, only the parts
/// asked for.
pub(super) async fn stats(app: Arc<App>, req: Req, caller: Caller) -> Resp {
    let mut pairs = query_pairs(&req);
    let parts = match StatsParams::take(&mut pairs) {
        Ok(p) => p,
        Err(e) => return query_problem(e),
    };
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    if let Some(r) = reject_params(
        &pairs,
        &["limit", "sort", "order", "cursor"],
        "statistics take filters and `interval`, not `limit`, `sort`, `order` or `cursor`",
    ) {
        return r;
    }
    let interval = q.interval;
    if parts.picks_parts() {
        if !parts.includes("histogram") && pairs.iter().any(|(k, _)| k == "interval") {
            return query_problem(QueryError::BadParam {
                param: "interval".into(),
                message: "is the histogram's bucket: add `histogram` to `include`".into(),
            });
        }
        let request = parts.request(app.clock.now_micros(), interval.micros());
        return match tokio::task::spawn_blocking(move || app.engine.stats_of(&q.filter, &request))
            .await
        {
            Ok(Ok(a)) => counted(
                json_response(StatusCode::OK, &parts_json(&a, &parts, interval)),
                a.total as usize,
            ),
            Ok(Err(e)) => query_problem(e),
            Err(e) => internal(e.to_string()),
        };
    }
    let top = parts.top;
    match tokio::task::spawn_blocking(move || app.engine.full_stats(&q, top)).await {
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
                    "interval": interval_name(interval),
                    "histogram": histogram_json(&st.histogram),
                    "top_users": counts(&st.top_users, "user_id"),
                    "active_users": st.active_users,
                    "error_rate": st.error_rate,
                    "failure_rate": st.failure_rate,
                    "error_severity_rate": st.error_severity_rate,
                    "by_risk": st.by_risk,
                }),
            );
            counted(resp, total)
        }
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

fn interval_name(interval: Interval) -> &'static str {
    match interval {
        Interval::Minute => "minute",
        Interval::Hour => "hour",
        Interval::Day => "day",
    }
}

fn histogram_json(h: &[(i64, u64)]) -> Value {
    h.iter()
        .map(|(t, n)| json!({"start": event::format_micros(*t), "count": n}))
        .collect()
}

/// The statistics asked for part by part: `total`, then `groups` and each
/// part of `include`.
fn parts_json(a: &StatsAnswer, parts: &StatsParams, interval: Interval) -> Value {
    let asked = parts.groups.as_deref().unwrap_or_default();
    let mut body = json!({
        "total": a.total,
        // (`active_users` alone adds a `user_id` group the caller did not ask for.)
        "groups": a.groups.iter()
            .filter(|g| asked.contains(&g.field))
            .map(super::facets::group_json)
            .collect::<Vec<_>>(),
    });
    if parts.includes("active_users") {
        let users = a.groups.iter().find(|g| g.field == "user_id");
        body["active_users"] = json!(users.map_or(0, |g| g.distinct));
    }
    if let Some(n) = a.last_24h {
        body["last_24h"] = json!(n);
    }
    if let Some(h) = &a.histogram {
        body["interval"] = json!(interval_name(interval));
        body["histogram"] = histogram_json(h);
    }
    if let (Some(f), Some(e)) = (a.failure_rate, a.error_severity_rate) {
        body["failure_rate"] = json!(f);
        body["error_severity_rate"] = json!(e);
    }
    if let Some(r) = a.risk {
        body["by_risk"] = json!(r);
    }
    body
}
