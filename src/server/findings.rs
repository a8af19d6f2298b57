//! `GET /v1/findings`: the findings Stele appended (`intel::finding`), newest
//! first, with the summary of the open ones (`intel::score`: the anomaly
//! score, counts by level, key findings and recommendations).
//!
//! A listing of the reserved category `stele.finding`: it takes the
//! listing's filters, paging and `q` (a finding's subject is in `user_id`,
//! `ip`, `tenant` or `process_name`, its kind in `action`), plus `kind` (the
//! same as `action`) and `level` (`low`, `medium`, `high`). `category`,
//! `stele_records` and `ingested_by` are fixed. The summary covers the open
//! findings under the caller's tenant scope and the `tenant` parameter (the
//! other filters narrow the page only), at most the newest 1,000.

use super::params::{query_pairs, reject_params};
use super::problem::{internal, query_problem};
use super::{counted, json_response, App, Caller, Req, Resp};
use crate::event::Severity;
use crate::intel::finding::{Level, CATEGORY};
use crate::intel::score::{summarize, Summary, OPEN_MICROS};
use crate::query::{Filter, OwnRecords, Paging, Query, QueryError, LIMIT_MAX};
use hyper::StatusCode;
use serde_json::json;
use std::sync::Arc;

/// What the route fixes itself.
const FIXED: [&str; 4] = ["category", "stele_records", "ingested_by", "interval"];

/// The summary of the findings open at `now` of `tenant` (any when `None`)
/// among `tenants` (a key's scope; any when `None`): at most the newest
/// [`LIMIT_MAX`]. Runs on a blocking thread.
pub(super) fn open_summary(
    app: &App,
    tenant: Option<String>,
    tenants: Option<Vec<String>>,
    now: i64,
) -> Result<Summary, QueryError> {
    let open = Query {
        filter: Filter {
            category: Some(CATEGORY.into()),
            stele_records: OwnRecords::Include,
            tenant,
            tenants,
            since: Some(now - OPEN_MICROS),
            ..Filter::default()
        },
        limit: LIMIT_MAX,
        ..Query::default()
    };
    let recent = app.engine.list_paged(&open, &Paging::default())?;
    Ok(summarize(&recent.events, now))
}

pub(super) async fn findings(app: Arc<App>, req: Req, caller: Caller) -> Resp {
    let mut pairs = query_pairs(&req);
    if let Some(r) = reject_params(
        &pairs,
        &FIXED,
        "findings are the events of category stele.finding written by Stele; filter them with \
         `kind`, `level` and the listing's other parameters",
    ) {
        return r;
    }
    // `kind` and `level` are names of the event's own fields.
    let mut level = None;
    for (k, v) in pairs.iter_mut() {
        match k.as_str() {
            "kind" => *k = "action".into(),
            "level" => {
                let Some(l) = Level::parse(v) else {
                    return query_problem(QueryError::BadParam {
                        param: "level".into(),
                        message: format!(
                            "{v:?} is not a level; allowed values are low, medium, high"
                        ),
                    });
                };
                level = Some(l);
                *k = "severity".into();
                *v = match l {
                    Level::Low => Severity::Warning,
                    Level::Medium => Severity::Error,
                    Level::High => Severity::Critical,
                }
                .as_str()
                .into();
            }
            _ => {}
        }
    }
    if level.is_some() && pairs.iter().filter(|(k, _)| k == "severity").count() > 1 {
        return query_problem(QueryError::BadParam {
            param: "level".into(),
            message: "give `level` or `severity`, not both".into(),
        });
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
    q.filter.category = Some(CATEGORY.into());
    q.filter.stele_records = OwnRecords::Include;
    caller.restrict(&mut q.filter);
    let (tenant, tenants) = (q.filter.tenant.clone(), q.filter.tenants.clone());
    let run = move || {
        let page = app.engine.list_paged(&q, &paging)?;
        Ok::<_, QueryError>((page, open_summary(&app, tenant, tenants, now)?))
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok((page, summary))) => {
            let n = page.events.len();
            let mut body = json!(page);
            body["findings"] = body["events"].take();
            if let Some(o) = body.as_object_mut() {
                o.remove("events");
            }
            body["summary"] = json!(summary);
            counted(json_response(StatusCode::OK, &body), n)
        }
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}
