//! `GET /v1/dashboard`: the monitoring page's figures in one call
//! (`query::Dashboard`): the last hour's events, failures, errors, critical
//! events, both rates, active and top users and risk levels; online users of
//! the last 15 minutes; events of the last 24 hours; the latest events.
//!
//! Takes the listing's filters (the caller's tenant scope applied, like every
//! read), not a time window of its own: its windows are fixed.

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
    match tokio::task::spawn_blocking(move || app.engine.dashboard(&q.filter)).await {
        Ok(Ok(d)) => {
            let mut body = json!(d);
            body["generated_at"] = json!(event::format_micros(d.now));
            counted(json_response(StatusCode::OK, &body), d.latest.len())
        }
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}
