//! Signals and SIGHUP reloads.

use super::{App, Limits, Reloader};
use crate::auth::Keyring;
use crate::sync::Recover;
use std::sync::Arc;

/// SIGTERM or SIGINT sets `stop`; a second one exits at once (every
/// acknowledged event is already durable, so only in-flight answers are
/// lost).
pub(super) fn watch_signals(
    stop: tokio::sync::watch::Sender<bool>,
    hup: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("stele-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    tracing::info!("Received SIGHUP; reloading the configuration.");
                    let _ = hup.send(());
                    continue;
                }
                seen += 1;
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                if seen == 1 {
                    tracing::info!("Received {name}; stopping.");
                    let _ = stop.send(true);
                } else {
                    tracing::warn!("Received {name} again; exiting now.");
                    std::process::exit(1);
                }
            }
        })?;
    Ok(())
}

/// Applies SIGHUP reloads: limits and retention (TTLs, holds, interval).
/// The listen address, data directory, log and index settings and
/// `connections_max` need a restart; a reload that fails to load keeps the
/// settings in force.
pub(super) fn spawn_reloader(
    app: Arc<App>,
    reload: Option<Reloader>,
    mut hup: tokio::sync::mpsc::UnboundedReceiver<()>,
    serving: String,
) {
    let mut stopping = app.lifecycle.stopping.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hup.recv() => if got.is_none() { return },
                // Holds the App: let it go at shutdown.
                _ = stopping.changed() => return,
            }
            crate::notify::reloading("Reloading the configuration.");
            let Some(reload) = reload.clone() else {
                tracing::info!("Nothing to reload: stele serve runs on flags and defaults.");
                crate::notify::ready(&serving);
                continue;
            };
            match tokio::task::spawn_blocking(move || reload()).await {
                Ok(Ok(fresh)) => {
                    if let Err(e) = fresh.auth.check_listen(app.settings.listen) {
                        tracing::error!(
                            "Could not reload the configuration, keeping the current settings: {e}."
                        );
                        crate::notify::ready(&serving);
                        continue;
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
                    tracing::info!(
                        "Reloaded: limits, retention settings and {keys} API keys are now in \
                         force; {tls} ({limits:?})."
                    );
                }
                Ok(Err(e)) => tracing::error!(
                    "Could not reload the configuration, keeping the current settings: {e}."
                ),
                Err(e) => tracing::error!("Could not reload the configuration: {e}."),
            }
            crate::notify::ready(&serving);
        }
    });
}
