//! `GET /v1/processes`, `GET /v1/processes/{id}`, `GET /v1/batches`,
//! `GET /v1/batches/{id}`: the process runs and batch operations the
//! activity feed derives from the log (`crate::intel::runs`).
//!
//! Owns their parameters and JSON shapes; the figures are the tracker's, the
//! events of one run the listing's (`Engine::list_paged` with
//! `process_id={id}` or `batch_id={id}` and the run's tenant: the same
//! filters, order, `limit` and `cursor` as `GET /v1/events`).
//!
//! A run without a tenant lists the events with its id and no tenant
//! filter: the filters cannot ask for "no tenant", so events of another
//! tenant's run with the same id are listed with it (for an all-tenant key
//! only; a scoped key never sees a tenant-less run).
//!
//! Like every read, the caller's tenant scope applies: a scoped key sees
//! only its tenants' runs and figures, and another tenant's run is as absent
//! as one never seen (404). Lists are bounded: at most [`RUNS_LIMIT_MAX`]
//! runs a answer, newest start first, with the number that matched.

use super::params::{query_pairs, reject_params};
use super::problem::{internal, problem, query_problem, Kind as Problem};
use super::{counted, json_response, App, Caller, Req, Resp};
use crate::auth::Scope;
use crate::event::format_micros;
use crate::intel::runs::{Kind, NameFigures, Run, RunStatus, View};
use crate::query::{parse_time, Paging, Query, QueryError};
use hyper::StatusCode;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Runs listed when `limit` is not given.
pub const RUNS_LIMIT_DEFAULT: usize = 100;
/// The largest `limit`.
pub const RUNS_LIMIT_MAX: usize = 1_000;

/// The words of one kind's answers.
struct Words {
    /// The name's parameter and field.
    name: &'static str,
    /// The key of the per-name figures.
    figures: &'static str,
    /// The key of the runs.
    runs: &'static str,
    /// The event field holding the id.
    id_field: &'static str,
    /// For messages.
    what: &'static str,
}

fn words(kind: Kind) -> Words {
    match kind {
        Kind::Process => Words {
            name: "process_name",
            figures: "processes",
            runs: "runs",
            id_field: "process_id",
            what: "process run",
        },
        Kind::Batch => Words {
            name: "action",
            figures: "operations",
            runs: "batches",
            id_field: "batch_id",
            what: "batch operation",
        },
    }
}

/// What a list selects.
struct Selection {
    /// `Some(None)`: runs without a tenant.
    tenant: Option<Option<String>>,
    name: Option<String>,
    status: Option<RunStatus>,
    since: Option<i64>,
    until: Option<i64>,
    limit: usize,
}

fn bad_param(param: &str, message: impl Into<String>) -> QueryError {
    QueryError::BadParam {
        param: param.into(),
        message: message.into(),
    }
}

fn selection(pairs: &[(String, String)], w: &Words, now: i64) -> Result<Selection, QueryError> {
    let mut s = Selection {
        tenant: None,
        name: None,
        status: None,
        since: None,
        until: None,
        limit: RUNS_LIMIT_DEFAULT,
    };
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in pairs {
        if seen.contains(&k.as_str()) {
            return Err(bad_param(k, "may be given once"));
        }
        seen.push(k);
        match k.as_str() {
            "tenant" => s.tenant = Some((!v.is_empty()).then(|| v.clone())),
            k if k == w.name => s.name = Some(v.clone()),
            "status" => {
                let names: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                s.status = Some(RunStatus::parse(v).ok_or_else(|| {
                    bad_param("status", format!("must be one of {}", names.join(", ")))
                })?);
            }
            "since" => s.since = Some(parse_time(k, v, now)?),
            "until" => s.until = Some(parse_time(k, v, now)?),
            "limit" => {
                s.limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=RUNS_LIMIT_MAX).contains(l))
                    .ok_or_else(|| {
                        bad_param(
                            "limit",
                            format!("must be a whole number from 1 to {RUNS_LIMIT_MAX}"),
                        )
                    })?;
            }
            _ => {
                return Err(bad_param(
                    k,
                    format!(
                        "is not a parameter of this route (tenant, {}, status, since, until, \
                         limit)",
                        w.name
                    ),
                ))
            }
        }
    }
    if let (Some(a), Some(b)) = (s.since, s.until) {
        if a >= b {
            return Err(bad_param("since", "must be before `until`"));
        }
    }
    Ok(s)
}

/// `GET /v1/processes` and `GET /v1/batches`: the figures of every name
/// among the selected runs (all statuses), and the selected runs of
/// `status`, newest start first, at most `limit`.
pub(super) async fn list(app: Arc<App>, req: Req, caller: Caller, kind: Kind) -> Resp {
    let now = app.clock.now_micros();
    let sel = match selection(&query_pairs(&req), &words(kind), now) {
        Ok(s) => s,
        Err(e) => return query_problem(e),
    };
    let scope = caller.scope();
    // O(n log n) in the tracked runs: on the blocking pool (server invariant 3).
    match tokio::task::spawn_blocking(move || list_body(&app, &sel, &scope, now, kind)).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => internal(e.to_string()),
    }
}

/// The answer of [`list`], computed under the tracker's lock.
fn list_body(app: &App, sel: &Selection, scope: &Scope, now: i64, kind: Kind) -> Value {
    let w = words(kind);
    let tracker = app.processes.tracker(kind);
    let view = tracker.view(now);
    let chosen: Vec<&Run> = view
        .runs()
        .filter(|r| scope.allows(r.tenant.as_deref()))
        .filter(|r| sel.tenant.as_ref().is_none_or(|t| *t == r.tenant))
        .filter(|r| sel.name.as_deref().is_none_or(|n| r.name() == Some(n)))
        .filter(|r| sel.since.is_none_or(|t| r.start() >= t))
        .filter(|r| sel.until.is_none_or(|t| r.start() < t))
        .collect();
    let figures: Vec<Value> = view
        .figures(&chosen)
        .iter()
        .map(|f| figures_json(f, &w))
        .collect();
    let mut runs: Vec<(&Run, RunStatus)> = chosen
        .iter()
        .map(|r| (*r, view.status(r)))
        .filter(|(_, s)| sel.status.is_none_or(|x| x == *s))
        .collect();
    let matched = runs.len();
    runs.sort_by_key(|(r, _)| std::cmp::Reverse((r.start(), r.last_seq)));
    runs.truncate(sel.limit);
    let listed: Vec<Value> = runs
        .iter()
        .map(|(r, s)| run_json(r, *s, &view, &w))
        .collect();
    let (tracked, evicted) = (tracker.len(), tracker.evicted());
    drop(tracker);
    let mut body = Map::new();
    body.insert("generated_at".into(), json!(format_micros(now)));
    body.insert("complete".into(), json!(app.processes.feed.caught_up()));
    body.insert(w.figures.into(), Value::Array(figures));
    body.insert(w.runs.into(), Value::Array(listed));
    body.insert("matched".into(), json!(matched));
    body.insert("tracked".into(), json!(tracked));
    body.insert("evicted".into(), json!(evicted));
    Value::Object(body)
}

/// `GET /v1/processes/{id}` and `GET /v1/batches/{id}`: the run and a page
/// of its events. `tenant` picks the run when ids repeat across tenants;
/// the other parameters are the listing's.
pub(super) async fn get(
    app: Arc<App>,
    req: Req,
    caller: Caller,
    params: Vec<String>,
    kind: Kind,
) -> Resp {
    let w = words(kind);
    let id = params.concat();
    let mut pairs = query_pairs(&req);
    if let Some(r) = reject_params(&pairs, &[w.id_field], "is given by the path on this route") {
        return r;
    }
    if let Some(r) = reject_params(
        &pairs,
        &["interval"],
        "`interval` applies to /v1/stats only",
    ) {
        return r;
    }
    let tenant = match take_tenant(&mut pairs) {
        Ok(t) => t,
        Err(e) => return query_problem(e),
    };
    let now = app.clock.now_micros();
    let (app2, id2, scope) = (app.clone(), id.clone(), caller.scope());
    let found =
        tokio::task::spawn_blocking(move || find(&app2, kind, &id2, tenant, &scope, now)).await;
    let (run, run_tenant) = match found.as_deref() {
        Ok([one]) => one.clone(),
        Ok(other) => return not_one(&app, &w, &id, other),
        Err(e) => return internal(e.to_string()),
    };
    let paging = match Paging::take(&mut pairs) {
        Ok(p) => p,
        Err(e) => return query_problem(e),
    };
    pairs.push((w.id_field.into(), id));
    if let Some(t) = run_tenant {
        pairs.push(("tenant".into(), t));
    }
    let mut q = match Query::parse(&pairs, now) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    match tokio::task::spawn_blocking(move || app.engine.list_paged(&q, &paging)).await {
        Ok(Ok(page)) => {
            let n = page.events.len();
            let mut body = json!(page);
            body[if kind == Kind::Process {
                "run"
            } else {
                "batch"
            }] = run;
            counted(json_response(StatusCode::OK, &body), n)
        }
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

/// Takes `tenant` out of `pairs`: `Some(None)` for an empty value (the run
/// without a tenant).
fn take_tenant(pairs: &mut Vec<(String, String)>) -> Result<Option<Option<String>>, QueryError> {
    let tenants: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "tenant")
        .map(|(_, v)| v.clone())
        .collect();
    if tenants.len() > 1 {
        return Err(bad_param("tenant", "may be given once on this route"));
    }
    pairs.retain(|(k, _)| k != "tenant");
    Ok(tenants.first().map(|t| (!t.is_empty()).then(|| t.clone())))
}

/// The runs with `id` the caller sees (in `tenant`, when given), as JSON
/// with their tenants.
fn find(
    app: &App,
    kind: Kind,
    id: &str,
    tenant: Option<Option<String>>,
    scope: &Scope,
    now: i64,
) -> Vec<(Value, Option<String>)> {
    let w = words(kind);
    let tracker = app.processes.tracker(kind);
    let view = tracker.view(now);
    view.by_id(id)
        .into_iter()
        .filter(|r| scope.allows(r.tenant.as_deref()))
        .filter(|r| tenant.as_ref().is_none_or(|t| *t == r.tenant))
        .map(|r| (run_json(r, view.status(r), &view, &w), r.tenant.clone()))
        .collect()
}

/// `404` when no run was found, `409` when several were.
fn not_one(app: &App, w: &Words, id: &str, found: &[(Value, Option<String>)]) -> Resp {
    if found.is_empty() {
        let detail = format!(
            "no {} with the id {id:?} is tracked (the last {} hours, see [processes] \
             horizon_hours)",
            w.what, app.processes.horizon_hours
        );
        return counted(problem(Problem::NoSuchRun, detail, json!({})), 0);
    }
    // Sorted: the tracker's map has no order, the answer must.
    let mut ts: Vec<&Option<String>> = found.iter().map(|(_, t)| t).collect();
    ts.sort();
    problem(
        Problem::AmbiguousId,
        format!(
            "{}s of several tenants have the id {id:?}: name one with ?tenant= (an empty value \
             selects the one without a tenant)",
            w.what
        ),
        json!({ "field": "tenant", "tenants": ts }),
    )
}

fn time(us: Option<i64>) -> Value {
    us.map_or(Value::Null, |t| json!(format_micros(t)))
}

fn run_json(r: &Run, status: RunStatus, view: &View<'_>, w: &Words) -> Value {
    let duration_ms = r
        .duration_ms()
        .unwrap_or_else(|| (view.now() - r.start()).max(0) / 1000);
    let mut o = json!({
        "id": r.id,
        "tenant": r.tenant,
        "status": status,
        "started_at": time(Some(r.start())),
        "finished_at": time(r.finished.as_ref().map(|f| f.at)),
        "first_event_at": time(Some(r.first_at)),
        "last_event_at": time(Some(r.last_at)),
        "duration_ms": duration_ms,
        "items_total": r.items_total,
        "items_processed": r.items_processed,
        "items_failed": r.items_failed,
        "events": r.events,
        "errors": r.errors,
        "last_errors": r.last_errors,
        "first_seq": r.first_seq,
        "last_seq": r.last_seq,
    });
    o[w.name] = json!(r.name());
    if w.id_field == "batch_id" {
        o["process_id"] = json!(r.process_id);
    }
    o
}

fn figures_json(f: &NameFigures, w: &Words) -> Value {
    let by: Map<String, Value> = f
        .runs_by_status
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
        .collect();
    let mut o = json!({
        "tenant": f.tenant,
        "executions": f.executions,
        "runs_by_status": by,
        "success_rate": f.success_rate,
        "duration_p50_ms": f.duration_p50_ms,
        "duration_p95_ms": f.duration_p95_ms,
        "runs_per_day": f.runs_per_day,
        "median_start_gap_ms": f.median_start_gap_ms,
        "last_run": {
            "id": f.last_run.0,
            "status": f.last_run.1,
            "started_at": format_micros(f.last_run.2),
        },
    });
    o[w.name] = json!(f.name);
    o
}
