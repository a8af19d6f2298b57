//! `GET /v1/dashboard`: the monitoring page's figures in one call
//! (`query::Dashboard`): the last hour's events, failures, errors, critical
//! events, both rates, active and top users and risk levels; online users of
//! the last 15 minutes; events of the last 24 hours; the latest events.
//!
//! Takes the listing's filters (the caller's tenant scope applied, like every
//! read), not a time window of its own: its windows are fixed. Adds what the
//! activity intelligence holds: the open findings' summary and the anomaly
//! score (of the caller's scope and `tenant`), and the process runs running
//! and stuck (likewise); the other filters narrow the event figures only.

use super::params::{query_pairs, reject_params};
use super::problem::{internal, query_problem};
use super::{counted, json_response, App, Caller, Req, Resp};
use crate::event;
use crate::query::Query;
use hyper::StatusCode;
use serde_json::json;
use std::sync::Arc;

/// What the dashboard does not take.
const NOT_TAKEN: [&str; 8] = [
    "since", "until", "hours", "limit", "sort", "order", "cursor", "interval",
];

pub(super) async fn dashboard(app: Arc<App>, req: Req, caller: Caller) -> Resp {
    let pairs = query_pairs(&req);
    if let Some(r) = reject_params(
        &pairs,
        &NOT_TAKEN,
        "the dashboard takes the listing's filters and `q`; its windows (the last hour, 15 \
         minutes, 24 hours) and its latest events are fixed",
    ) {
        return r;
    }
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    let run = move || {
        let d = app.engine.dashboard(&q.filter)?;
        let (tenant, tenants) = (q.filter.tenant.clone(), q.filter.tenants.clone());
        let findings = super::findings::open_summary(&app, tenant.clone(), tenants.clone(), d.now)?;
        let runs = running_runs(&app, tenant.as_deref(), tenants.as_deref(), d.now);
        Ok::<_, crate::query::QueryError>((d, findings, runs))
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok((d, findings, (running, stuck)))) => {
            let mut body = json!(d);
            body["generated_at"] = json!(event::format_micros(d.now));
            body["anomaly_score"] = json!(findings.anomaly_score);
            body["findings"] = json!(findings);
            body["processes"] = json!({"running": running, "stuck": stuck});
            counted(json_response(StatusCode::OK, &body), d.latest.len())
        }
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

/// Process runs running and stuck now, of `tenant` (any when `None`) among
/// `tenants` (a key's scope; any when `None`). Runs without a tenant count
/// only for callers of every tenant without a `tenant` filter.
fn running_runs(
    app: &App,
    tenant: Option<&str>,
    tenants: Option<&[String]>,
    now: i64,
) -> (u64, u64) {
    use crate::intel::runs::{Kind, RunStatus};
    let tracker = app.processes.tracker(Kind::Process);
    let view = tracker.view(now);
    let (mut running, mut stuck) = (0, 0);
    for r in view.runs() {
        let t = r.tenant.as_deref();
        let in_scope = tenants.is_none_or(|ts| t.is_some_and(|t| ts.iter().any(|x| x == t)));
        if !in_scope || tenant.is_some_and(|want| t != Some(want)) {
            continue;
        }
        match view.status(r) {
            RunStatus::Running => running += 1,
            RunStatus::Stuck => stuck += 1,
            _ => {}
        }
    }
    (running, stuck)
}
