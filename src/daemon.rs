//! `stele serve` as a daemon: what happens around [`server::serve`].
//!
//! Owns start-up and the process's side of shutdown: the configuration's
//! checks, TLS setup, signals (SIGTERM/SIGINT stop, SIGHUP reloads),
//! systemd notifications (start-up progress, READY, the watchdog,
//! STOPPING), opening the data directory and binding the listener. The
//! server itself only serves a [`State`] on a listener until told to stop.

use crate::config::{Reloader, ServeConfig};
use crate::server::{self, Handle, State};
use std::sync::Arc;

/// Runs the daemon until SIGTERM or SIGINT, then shuts down gracefully.
///
/// # Errors
/// An invalid setting, the data directory cannot be opened, the address
/// cannot be bound.
pub async fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    cfg.limits
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid limit: {e}"))?;
    cfg.auth
        .validate()
        .map_err(|(_, e)| anyhow::anyhow!("invalid configuration: {e}"))?;
    cfg.auth
        .check_listen(cfg.listen)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = match &cfg.tls {
        Some(t) => Some(crate::tls::CertResolver::new(t).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    if let Some(r) = &tls {
        // A certificate that cannot serve fails now, not at the first client.
        r.server_config().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // Signals first: a SIGTERM during recovery must not kill us mid-open.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (hup_tx, hup_rx) = tokio::sync::mpsc::unbounded_channel();
    watch_signals(stop_tx, hup_tx)?;
    // systemd: STATUS= during recovery and catch-up, and more start time
    // while the indexes advance (a long rebuild must not hit
    // TimeoutStartSec=). A weak handle: shutdown waits for the last strong one.
    type Opened = std::sync::OnceLock<(std::sync::Weak<crate::index::Indexes>, u64)>;
    let opened: Arc<Opened> = Arc::default();
    let opened2 = opened.clone();
    let startup = crate::notify::Startup::begin(move || {
        let (indexes, target) = opened2.get()?;
        Some((indexes.upgrade()?.indexed_seq(), *target))
    });
    let cfg2 = cfg.clone();
    let engine = tokio::task::spawn_blocking(move || {
        server::open_engine(&cfg2, |indexes, last| {
            let _ = opened.set((Arc::downgrade(indexes), last));
        })
    })
    .await??;
    drop(startup);
    if *stop_rx.borrow() {
        crate::notify::stopping("Stopping: a signal arrived during recovery.");
        tracing::info!("Stopped before serving: a signal arrived during recovery.");
        return Ok(());
    }
    let secure = tls.is_some();
    let state = State::start(&cfg, engine, tls)?;
    let listener = crate::server::bind(cfg.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if secure { "https" } else { "http" };
    tracing::info!(
        "Listening on {addr} ({scheme}) with data in {}.",
        cfg.data_dir.display()
    );
    let handle = state.handle();
    let keys = handle.keys().unwrap_or(0);
    if keys == 0 {
        tracing::warn!(
            "No API keys configured: serving only on loopback ({addr}), without \
             authentication. Add [[auth.keys]] (see `stele keygen`) to serve other hosts."
        );
    } else {
        tracing::info!("Authentication on: {keys} API keys configured.");
        if !secure && !addr.ip().is_loopback() {
            tracing::warn!(
                "API keys travel in clear text on {addr}: configure [tls] or put a \
                 TLS-terminating proxy in front."
            );
        }
    }
    // systemd: ready only now (recovered, caught up, bound).
    let serving = format!("Serving on {addr} with data in {}.", cfg.data_dir.display());
    crate::notify::ready(&serving);
    let watchdog = tokio::spawn(watchdog(handle.clone(), serving.clone()));
    spawn_reloader(
        handle.clone(),
        cfg.reload.clone(),
        hup_rx,
        stop_rx.clone(),
        serving,
    );
    let shutdown = async move {
        let _ = stop_rx.changed().await;
        // No watchdog ping after STOPPING=1.
        watchdog.abort();
        let _ = watchdog.await;
        let grace = handle.limits().map_or(0, |l| l.shutdown_grace_secs);
        crate::notify::stopping(&format!(
            "Stopping: in-flight requests have {grace} s to finish, then the indexes are \
             checkpointed and the log closed."
        ));
    };
    server::serve(listener, state, shutdown).await
}

/// Pings the systemd watchdog while the state is open (see
/// [`crate::notify::Watchdog`]).
async fn watchdog(handle: Handle, serving: String) {
    let mut watchdog = crate::notify::Watchdog::new(serving);
    loop {
        watchdog.tick().await;
        handle.beat(&mut watchdog);
    }
}

/// SIGTERM or SIGINT sets `stop`; a second one exits at once (every
/// acknowledged event is already durable, so only in-flight answers are
/// lost).
fn watch_signals(
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

/// Applies SIGHUP reloads (see `server::reload`); a reload that fails to
/// load keeps the settings in force.
fn spawn_reloader(
    handle: Handle,
    reload: Option<Reloader>,
    mut hup: tokio::sync::mpsc::UnboundedReceiver<()>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    serving: String,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hup.recv() => if got.is_none() { return },
                _ = stopping.changed() => return,
            }
            crate::notify::reloading("Reloading the configuration.");
            let Some(reload) = reload.clone() else {
                tracing::info!("Nothing to reload: stele serve runs on flags and defaults.");
                crate::notify::ready(&serving);
                continue;
            };
            match tokio::task::spawn_blocking(move || reload()).await {
                Ok(Ok(fresh)) => handle.reload(fresh),
                Ok(Err(e)) => tracing::error!(
                    "Could not reload the configuration, keeping the current settings: {e}."
                ),
                Err(e) => tracing::error!("Could not reload the configuration: {e}."),
            }
            crate::notify::ready(&serving);
        }
    });
}
