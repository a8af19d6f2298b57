//! `/healthz` and `/readyz`: liveness, readiness and the degraded states
//! an operator acts on.

use super::problem::{problem, Kind};
use super::{json_response, App, Resp};
use hyper::StatusCode;
use serde_json::{json, Value};

/// `/readyz` answers 503 while the indexes catch up with the log after a
/// start or a rebuild and still trail it by more than this many events.
pub const READY_LAG_EVENTS_MAX: u64 = 100_000;

/// `/readyz` says `degraded` while the oldest event queries do not see yet
/// is older than this. A backlog under load is not a reason to leave a load
/// balancer (ingest goes on, and taking the node out would not help it
/// catch up); a backlog this old is a reason for an operator to look.
pub const DEGRADED_LAG_SECONDS: f64 = 30.0;

/// Liveness: 503 once the log refuses appends after a failed fsync, since
/// only a restart (recovery) brings it back; a supervisor may act on it.
pub(super) fn healthz(app: &App) -> Resp {
    match app.engine.log().poisoned() {
        None => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Some(e) => problem(
            Kind::Unhealthy,
            format!("{e}"),
            json!({"status": "unhealthy"}),
        ),
    }
}

/// Segments whose reads failed: `[{segment, failed_reads, error}]`.
fn unreadable_segments(app: &App) -> Vec<Value> {
    app.engine
        .log()
        .read_failures()
        .into_iter()
        .map(|(segment, n, error)| json!({"segment": segment, "failed_reads": n, "error": error}))
        .collect()
}

/// The seal's state for `/readyz`: damaged segments, unsigned days,
/// checkpoints that do not verify or cannot reach the witness.
fn seal_state(app: &App) -> (Value, bool) {
    let log = app.engine.log();
    let status = &app.seal.status;
    let damaged: Vec<Value> = log
        .damaged_segments()
        .into_iter()
        .map(|(segment, why)| json!({"segment": segment, "why": why}))
        .collect();
    let unsigned: Vec<Value> = status
        .unsigned()
        .into_iter()
        .map(|(day, why)| json!({"day": day, "why": why}))
        .collect();
    let checkpoint = app.seal.checkpoints.as_ref().map(|c| {
        json!({
            "seq": c.latest().map(|cp| cp.seq),
            "error": c.error(),
        })
    });
    let checkpoint_error = app
        .seal
        .checkpoints
        .as_ref()
        .is_some_and(|c| c.error().is_some());
    let problems = status.problems(log);
    let degraded = !damaged.is_empty()
        || !unsigned.is_empty()
        || checkpoint_error
        || status.forged()
        || status.digest_error().is_some()
        || !status.checkpoint_problems().is_empty();
    (
        json!({
            "damaged_segments": damaged,
            "unsigned_days": unsigned,
            "checkpoint": checkpoint,
            "verified_through": status.verified_through(),
            "startup_check_done": status.started_check_done(),
            "digester_runs": status.digester_runs.load(std::sync::atomic::Ordering::Relaxed),
            "scrub_passes": status.scrub.passes.load(std::sync::atomic::Ordering::Relaxed),
            "problems": problems,
        }),
        degraded,
    )
}

/// The alerts for `/readyz`: rules, position, backlog, a failing webhook.
fn alert_state(app: &App) -> (Value, bool) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &app.alerts.stats;
    let failing = stats.failing.load(Relaxed);
    let last_error = crate::sync::Recover::exclusive(&stats.last_error).clone();
    (
        json!({
            "rules": stats.rules.load(Relaxed),
            "position": stats.position.load(Relaxed),
            "backlog_events": stats.backlog(app.engine.log()),
            "failing": failing,
            "last_error": if failing { last_error } else { None },
        }),
        failing,
    )
}

pub(super) fn readyz(app: &App) -> Resp {
    let log = app.engine.log();
    let idx = app.engine.indexes();
    let lag = idx.lag(log, app.clock.now_micros());
    let (last, indexed) = (lag.last_seq, lag.indexed_seq);
    let lagging = lag.seconds.is_some_and(|s| s > DEGRADED_LAG_SECONDS);
    let unreadable = unreadable_segments(app);
    let (seal, seal_degraded) = seal_state(app);
    let (alerts, alerts_failing) = alert_state(app);
    let archive = app.archive.as_ref().map(|a| a.snapshot());
    // An archive that fails or needs an operator degrades; a backlog alone
    // does not (it is what an archive that was down looks like).
    let archive_failing = archive
        .as_ref()
        .is_some_and(|a| a.last_error.is_some() || !a.problems.is_empty());
    // Unreadable or damaged segments, unsigned days and a witness that does
    // not answer make the daemon degraded, not unready: it still takes
    // events and answers every query that does not need them. So does a
    // webhook that does not take alerts: an unreachable chat service must
    // not take the audit log out of a load balancer; and an archive that
    // fails (ingest never waits for it). A backlog of indexing under load
    // degrades once its oldest event waits more than DEGRADED_LAG_SECONDS.
    let state = json!({
        "log_last_seq": last,
        "indexed_seq": indexed,
        "lag_events": lag.events(),
        "lag_seconds": lag.seconds,
        "index_caught_up": lag.caught_up,
        "unreadable_segments": unreadable,
        "seal": seal,
        "alerts": alerts,
        "archive": archive,
    });
    let why = if let Some(e) = log.poisoned() {
        Some(format!("the log refuses appends: {e}"))
    } else if let Some(f) = idx.failure() {
        Some(format!("the indexer stopped: {f}"))
    } else if !lag.caught_up && lag.events() > READY_LAG_EVENTS_MAX {
        Some(format!(
            "the indexes are catching up with the log after a start or rebuild: {} events \
             behind (more than {READY_LAG_EVENTS_MAX})",
            lag.events()
        ))
    } else {
        None
    };
    match why {
        None => json_response(
            StatusCode::OK,
            &json!({
                "ready": true,
                "degraded": !unreadable.is_empty()
                    || seal_degraded
                    || alerts_failing
                    || archive_failing
                    || lagging,
                "state": state
            }),
        ),
        Some(detail) => problem(Kind::NotReady, detail, json!({"state": state})),
    }
}
