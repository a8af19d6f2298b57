//! The operator's routes: segments, the newest checkpoint, the retention
//! plan and legal holds.

use super::ingest::{read_body, BodyReadError};
use super::params::query_pairs;
use super::problem::{internal, problem, query_problem, Kind};
use super::{counted, full, json_response, App, Req, Resp};
use crate::query::QueryError;
use crate::sync::Recover;
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /v1/checkpoint`: the newest signed checkpoint, as the exact line
/// `DATA_DIR/checkpoint.json` and the witnesses hold (save it off the box;
/// `stele verify --checkpoint FILE` checks a copy of the data against it).
pub(super) fn checkpoint(app: &App) -> Resp {
    let latest = app.seal.checkpoints.as_ref().and_then(|c| c.latest());
    match latest {
        Some(cp) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            .body(full(cp.encode()))
            .unwrap_or_else(|e| internal(e.to_string())),
        None => problem(
            Kind::NoCheckpoint,
            if app.seal.checkpoints.is_none() {
                "checkpoints are off: there is no signing key (stele keygen --signing)".into()
            } else {
                "no checkpoint was signed yet: one follows within a checkpoint interval of the \
                 first event"
                    .to_string()
            },
            json!({}),
        ),
    }
}

/// `GET /v1/holds`: every legal hold in force.
pub(super) fn list_holds(app: &App) -> Resp {
    let holds = app.retainer.holds();
    counted(
        json_response(StatusCode::OK, &json!({ "holds": holds })),
        holds.len(),
    )
}

/// `GET /v1/segments`: every segment with its state, size, seq range and,
/// for sealed ones, the SHA-256 a backup copy must have.
pub(super) async fn list_segments(app: Arc<App>, req: Req) -> Resp {
    if let Some((k, _)) = query_pairs(&req).first() {
        return query_problem(QueryError::BadParam {
            param: k.clone(),
            message: "this route takes no parameters".into(),
        });
    }
    let listed = tokio::task::spawn_blocking(move || -> Result<Value, String> {
        let infos = app.engine.log().segments();
        let mut out = Vec::with_capacity(infos.len());
        for info in &infos {
            let name = info.id.file_name();
            let sha = if info.sealed {
                let cached = app.sealed_sha256.exclusive().get(&name).cloned();
                match cached {
                    Some(h) => Some(h),
                    // A stub: the SHA-256 checked when it was evicted.
                    None if info.evicted => crate::log::evicted::Evicted::load(&app.data_dir)?
                        .get(&name)
                        .map(|e| e.sha256.clone()),
                    None => {
                        let bytes = std::fs::read(&info.path)
                            .map_err(|e| format!("cannot read {}: {e}", info.path.display()))?;
                        let h = crate::datadir::sha256_hex(&bytes);
                        app.sealed_sha256
                            .exclusive()
                            .insert(name.clone(), h.clone());
                        Some(h)
                    }
                }
            } else {
                None
            };
            out.push(crate::backup::describe(info, sha));
        }
        let total: u64 = infos.iter().map(|i| i.bytes).sum();
        Ok(json!({"segments": out, "bytes": total}))
    })
    .await;
    match listed {
        Ok(Ok(v)) => {
            let n = v["segments"].as_array().map_or(0, Vec::len);
            counted(json_response(StatusCode::OK, &v), n)
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e.to_string()),
    }
}

/// `GET /v1/retention`: what retention would drop now, and why.
pub(super) async fn retention_plan(app: Arc<App>) -> Resp {
    let app2 = app.clone();
    match tokio::task::spawn_blocking(move || app2.retainer.plan()).await {
        Ok(Ok(days)) => json_response(
            StatusCode::OK,
            &json!({
                "today": app.retainer.today().to_string(),
                "first_seq": app.engine.log().first_seq(),
                "config": app.retainer.config(),
                "holds": app.retainer.holds(),
                "days": days,
            }),
        ),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e.to_string()),
    }
}

/// `POST /v1/holds`: a new legal hold (JSON), persisted before the 201.
pub(super) async fn add_hold(app: Arc<App>, req: Req) -> Resp {
    let body = match read_body(req, 64 * 1024).await {
        Ok(b) => b,
        Err(BodyReadError::TooLarge(_)) => {
            return problem(
                Kind::BodyTooLarge,
                "a hold is at most 65536 bytes".to_string(),
                json!({ "limit": 65536 }),
            )
        }
        Err(BodyReadError::Unreadable(why)) => {
            return problem(
                Kind::InvalidHold,
                format!("the body could not be read: {why}"),
                json!({}),
            )
        }
    };
    let hold: crate::retention::Hold = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            return problem(
                Kind::InvalidHold,
                format!(
                    "a hold is {{\"name\", \"tenant\"?, \"from\"?, \"until\"?, \"reason\"?}}: {e}"
                ),
                json!({}),
            )
        }
    };
    if let Err(e) = hold.validate() {
        return problem(Kind::InvalidHold, e, json!({}));
    }
    let app2 = app.clone();
    let saved = tokio::task::spawn_blocking(move || app2.retainer.add_hold(hold)).await;
    match saved {
        Ok(Ok(Some(h))) => json_response(StatusCode::CREATED, &json!(h)),
        Ok(Ok(None)) => problem(
            Kind::HoldExists,
            "a hold with this name exists; remove it first to change it".into(),
            json!({ "field": "name" }),
        ),
        Ok(Err(e)) => internal(format!("cannot save the hold: {e}")),
        Err(e) => internal(e.to_string()),
    }
}

/// `DELETE /v1/holds/{name}`: lifts a hold set over HTTP.
pub(super) async fn remove_hold(app: Arc<App>, params: Vec<String>) -> Resp {
    let name = params.concat();
    if app.retainer.configured_hold(&name) {
        return problem(
            Kind::HoldInConfig,
            format!("hold {name:?} comes from the configuration file: remove it there"),
            json!({}),
        );
    }
    let app2 = app.clone();
    let removed = tokio::task::spawn_blocking(move || app2.retainer.remove_hold(&name)).await;
    match removed {
        Ok(Ok(true)) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(full(Bytes::new()))
            .expect("valid response"),
        Ok(Ok(false)) => problem(
            Kind::NoSuchHold,
            "no hold set over HTTP has this name".into(),
            json!({}),
        ),
        Ok(Err(e)) => internal(format!("cannot save the holds: {e}")),
        Err(e) => internal(e.to_string()),
    }
}
