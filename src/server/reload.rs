//! SIGHUP: putting reloaded settings in force. Limits (except
//! `connections_max`), retention, API keys, the ingest field map, the TLS
//! certificate, webhooks and alert rules, the detectors' thresholds and the
//! stuck runs' thresholds change;
//! the listen address, data directory, log and index settings need a
//! restart. Reading the settings is the daemon's (`crate::daemon`).

use super::{App, Limits, Reloaded};
use crate::auth::Keyring;
use crate::sync::Recover;
use std::sync::Arc;

/// Puts `fresh` in force, or keeps everything when its keys would leave a
/// non-loopback address without authentication.
pub(super) fn apply(app: &App, fresh: Reloaded) {
    if let Err(e) = fresh.auth.check_listen(app.settings.listen) {
        tracing::error!("Could not reload the configuration, keeping the current settings: {e}.");
        return;
    }
    let old = app.limits();
    if fresh.limits.connections_max != old.connections_max {
        tracing::warn!(
            "connections_max changes only at restart ({} stays in force).",
            old.connections_max
        );
    }
    let limits = Limits {
        connections_max: old.connections_max,
        ..fresh.limits
    };
    *app.settings.limits.exclusive() = limits;
    app.retainer.set_config(fresh.retention);
    let mapped = fresh.field_map.entries().len();
    *app.settings.field_map.exclusive() = Arc::new(fresh.field_map);
    let keys = {
        let mut current = app.settings.keys.exclusive();
        *current = Arc::new(Keyring::new(&fresh.auth, Some(&current)));
        current.len()
    };
    let tls = match (&app.settings.tls, &fresh.tls) {
        (Some(resolver), Some(paths)) => match resolver.reload(paths) {
            Ok(()) => "the TLS certificate was read again",
            Err(e) => {
                tracing::error!("Keeping the TLS certificate in force: {e}.");
                "the TLS certificate in force was kept"
            }
        },
        (None, None) => "no TLS",
        _ => {
            tracing::warn!("Switching TLS on or off needs a restart.");
            "TLS unchanged until a restart"
        }
    };
    if let Some(w) = &app.watch {
        w.set_thresholds(fresh.detect.thresholds());
    }
    if let Err(why) = app.processes.reload(&fresh.processes) {
        tracing::warn!("[processes] {why}: the stuck thresholds are reloaded, the rest kept.");
    }
    let rules = fresh.alerts.rules.len();
    let alerts = match app.alerts.reload(fresh.alerts) {
        Ok(()) => format!("{rules} alert rules"),
        Err(e) => {
            tracing::error!("Keeping the alert rules in force: {e}.");
            "the alert rules in force (kept)".to_string()
        }
    };
    let jwt = if fresh.auth.jwt.is_some() {
        "JWTs accepted (their keys read again)"
    } else {
        "no JWTs"
    };
    tracing::info!(
        "Reloaded: limits, retention settings, {keys} API keys, {mapped} \
             mapped field names, {alerts}, the detectors' and the stuck runs' thresholds are now in force; {jwt}; {tls} ({limits:?})."
    );
}
