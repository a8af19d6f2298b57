//! Opening and closing what the server serves: the log, the indexes, the
//! seal, the retention runner and the shared [`App`].
//!
//! Owns the order of start-up (log → indexes → catch-up → seal → retention
//! → the archive → alerts → the activity feed) and of shutdown (the alert
//! task stops → retention, the archive's uploader, the activity feed, the findings' appender and the seal's
//! readers stop → every request
//! handle is gone → the indexes' final checkpoint → the checkpointer's last
//! checkpoint → the log's last answers). Never touches signals, systemd or
//! the listener: that is [`crate::daemon`]'s.
//!
//! Invariant: shutdown waits for the last handle deterministically: every
//! holder of the `App` (connections, streams, exports) and the audit writer
//! hold a clone of one `mpsc::Sender`, and closing awaits the channel's end
//! (bounded, so that a stuck holder cannot stop the exit).

use super::{App, Lifecycle, Limits, SealView, Settings, Stats};
use crate::access::Auditor;
use crate::auth::Keyring;
use crate::clock::{Clock, SystemClock};
use crate::config::{Reloaded, ServeConfig};
use crate::index::Indexes;
use crate::ingest::RecentIds;
use crate::intel::processes::Processes;
use crate::log::Log;
use crate::query::Engine;
use crate::retention::runner::Retainer;
use crate::seal::worker::Worker;
use crate::sync::Recover;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long closing waits for the last request handles.
const LAST_HANDLE_WAIT: Duration = Duration::from_secs(2);

/// An opened data directory, ready to serve (see [`super::serve`]).
pub struct State {
    pub(super) app: Arc<App>,
    /// Set when serving stops: streams end, exports stop.
    pub(super) stop: tokio::sync::watch::Sender<bool>,
    seal: crate::seal::Seal,
    retention: Worker,
    /// The alert task: stopped first, since it reads the log and the indexes.
    alerts: crate::alert::Runner,
    /// The activity feed (`crate::intel::feed`): keeps `App::processes`
    /// current.
    feed: Worker,
    /// The archive's uploader (`[archive]`), stopped with retention.
    archive: Option<crate::archive::Archive>,
    /// Ends when the `App` and the audit writer are gone.
    done: tokio::sync::mpsc::Receiver<()>,
}

/// Opens the log and the indexes of `cfg.data_dir` (recovery) and waits
/// until the indexes hold every event of the log. Blocking. `opened` is
/// told the indexes and the log's last seq before the catch-up (start-up
/// progress for systemd).
///
/// # Errors
/// The log or the indexes cannot be opened, or the indexer stopped.
pub fn open_engine(
    cfg: &ServeConfig,
    opened: impl FnOnce(&Arc<Indexes>, u64),
) -> anyhow::Result<Engine> {
    open_engine_on(cfg, Arc::new(SystemClock), opened)
}

/// [`open_engine`] with the log and the engine on `clock`.
fn open_engine_on(
    cfg: &ServeConfig,
    clock: Arc<dyn Clock>,
    opened: impl FnOnce(&Arc<Indexes>, u64),
) -> anyhow::Result<Engine> {
    let data_dir = &cfg.data_dir;
    let log_config =
        crate::seal::with_evidence(cfg.log.clone(), data_dir, cfg.seal.witness_dir.as_deref());
    std::fs::create_dir_all(data_dir)?;
    let log = Arc::new(
        Log::open(data_dir, log_config, clock.clone())
            .map_err(|e| anyhow::anyhow!("cannot open the log in {}: {e}", data_dir.display()))?,
    );
    // The archive's reads first: catching the indexes up may need evicted
    // segments (a rebuild, a directory restored with stubs).
    let archive = match cfg.archive.enabled() {
        true => Some(
            crate::archive::open_reader(&cfg.archive, data_dir, &log)
                .map_err(|e| anyhow::anyhow!("[archive]: {e}"))?,
        ),
        false => None,
    };
    let indexes = Arc::new(Indexes::open(data_dir, log.clone(), cfg.index.clone())?);
    opened(&indexes, log.last_seq());
    indexes.catch_up(&log)?;
    let key = crate::query::cursor_key(data_dir)?;
    let engine = Engine::new(log, indexes, clock, key);
    Ok(match archive {
        Some(status) => engine.with_archive(status),
        None => engine,
    })
}

impl State {
    /// [`open_engine`] then [`State::start`]: the whole start-up, for
    /// tests that serve in-process (call within a tokio runtime).
    ///
    /// # Errors
    /// As those two.
    pub async fn open(cfg: &ServeConfig) -> anyhow::Result<State> {
        State::open_with(cfg, Arc::new(SystemClock)).await
    }

    /// [`State::open`] on `clock` instead of the system's: the log's
    /// `received_at`, the activity feed's ticks, the detectors, the seal,
    /// retention, the alert task and the routes' "now" read it (timeouts and
    /// latencies still use the monotonic clock). For tests that move time on
    /// purpose (a `crate::clock::ManualClock`: a run stuck for an hour
    /// without waiting an hour).
    ///
    /// # Errors
    /// As [`State::open`].
    #[cfg(any(test, feature = "testkit"))]
    pub async fn open_on(cfg: &ServeConfig, clock: Arc<dyn Clock>) -> anyhow::Result<State> {
        State::open_with(cfg, clock).await
    }

    /// [`open_engine_on`] then [`State::start_on`], on `clock`.
    async fn open_with(cfg: &ServeConfig, clock: Arc<dyn Clock>) -> anyhow::Result<State> {
        let (cfg2, clock2) = (cfg.clone(), clock.clone());
        let engine =
            tokio::task::spawn_blocking(move || open_engine_on(&cfg2, clock2, |_, _| {})).await??;
        let tls = match &cfg.tls {
            Some(t) => Some(crate::tls::CertResolver::new(t).map_err(|e| anyhow::anyhow!("{e}"))?),
            None => None,
        };
        State::start_on(cfg, engine, tls, clock)
    }

    /// Starts the seal and the retention runner over `engine` and builds the
    /// shared state (within a tokio runtime: the audit writer is a task).
    ///
    /// # Errors
    /// The signing key or the holds cannot be read, a retention setting is
    /// invalid, or a thread cannot be spawned.
    pub fn start(
        cfg: &ServeConfig,
        engine: Engine,
        tls: Option<Arc<crate::tls::CertResolver>>,
    ) -> anyhow::Result<State> {
        State::start_on(cfg, engine, tls, Arc::new(SystemClock))
    }

    /// [`State::start`] on `clock` (the one `engine` was opened on).
    fn start_on(
        cfg: &ServeConfig,
        engine: Engine,
        tls: Option<Arc<crate::tls::CertResolver>>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<State> {
        // The seal: checkpoints, the start-up verification, digests, scrubbing.
        let seal = crate::seal::Seal::start(
            &cfg.data_dir,
            engine.log().clone(),
            clock.clone(),
            crate::seal::digest::load_signing_key(&cfg.data_dir)?,
            &cfg.seal,
        );
        let sealed_sha256: Arc<std::sync::Mutex<HashMap<String, String>>> = Arc::default();
        let forget = sealed_sha256.clone();
        let retainer = Retainer::open(
            cfg.data_dir.clone(),
            engine.log().clone(),
            engine.indexes().clone(),
            clock.clone(),
            cfg.retention.clone(),
            Box::new(move |names| {
                let mut sha = forget.exclusive();
                for name in names {
                    sha.remove(name);
                }
            }),
        )?;
        let retention = retainer.start()?;
        // The archive: sealed files to the bucket, in its own thread.
        let archive = match engine.archive() {
            Some(status) => Some(
                crate::archive::Archive::start(
                    &cfg.archive,
                    &cfg.data_dir,
                    engine.log().clone(),
                    clock.clone(),
                    status.clone(),
                )
                .map_err(|e| anyhow::anyhow!("[archive]: {e}"))?,
            ),
            None => None,
        };
        // The run trackers, fed from the horizon on, in the background.
        let processes = Arc::new(Processes::new(&cfg.processes));
        // The detectors: the same feed; findings only for events after now.
        let watch = match cfg.detect.enabled {
            true => Some(Arc::new(crate::intel::watch::Watch::new(
                engine.log().clone(),
                clock.clone(),
                cfg.detect.thresholds(),
                crate::intel::detect::Limits::default(),
                Some(processes.clone()),
            )?)),
            false => None,
        };
        let mut observers: Vec<Arc<dyn crate::intel::feed::Observer>> = vec![processes.clone()];
        if let Some(w) = &watch {
            observers.push(w.clone());
        }
        let feed = crate::intel::feed::start(
            engine.log().clone(),
            clock.clone(),
            cfg.processes.horizon_micros(),
            observers,
            processes.feed.clone(),
        )?;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let (done_tx, done) = tokio::sync::mpsc::channel(1);
        let auditor = Auditor::start_guarded(engine.log().clone(), done_tx.clone());
        let (alerts, runner) = crate::alert::Alerts::start(
            cfg.alerts.clone(),
            engine.log().clone(),
            engine.indexes().clone(),
            clock.clone(),
        )?;
        let app = Arc::new(App {
            engine,
            clock,
            data_dir: cfg.data_dir.clone(),
            settings: Settings {
                limits: std::sync::RwLock::new(cfg.limits),
                keys: std::sync::RwLock::new(Arc::new(Keyring::new(&cfg.auth, None))),
                listen: cfg.listen,
                tls,
                field_map: std::sync::RwLock::new(Arc::new(cfg.field_map.clone())),
            },
            ids: RecentIds::default(),
            stats: Stats::new(),
            lifecycle: Lifecycle {
                stopping,
                connections: Arc::new(tokio::sync::Semaphore::new(cfg.limits.connections_max)),
                _done: done_tx,
            },
            sealed_sha256,
            retainer,
            seal: SealView {
                digests: seal.digest_stats(),
                status: seal.status(),
                checkpoints: seal.checkpoint_stats(),
            },
            auditor,
            risk: std::sync::Mutex::new(crate::intel::risk::RiskState::default()),
            alerts,
            processes,
            watch,
            archive: archive.as_ref().map(|a| a.status()),
        });
        Ok(State {
            app,
            stop,
            seal,
            retention,
            alerts: runner,
            feed,
            archive,
            done,
        })
    }

    /// A handle that does not keep the state open (SIGHUP, the watchdog).
    pub fn handle(&self) -> Handle {
        Handle(Arc::downgrade(&self.app))
    }

    /// Closes everything in order (see the module doc).
    pub(super) async fn close(self) -> anyhow::Result<()> {
        let State {
            app,
            stop,
            seal,
            retention,
            alerts,
            feed,
            archive,
            mut done,
        } = self;
        let _ = stop.send(true);
        // The alert task writes its position and lets go of the log and the
        // indexes (a delivery in flight is delivered again after a restart).
        alerts.stop().await;
        // The runner and the seal's readers stop now (they hold log
        // handles); the checkpointer last, after the final appends, so its
        // checkpoint covers everything this process wrote.
        let watch = app.watch.clone();
        let checkpointer = tokio::task::spawn_blocking(move || {
            retention.stop();
            if let Some(a) = archive {
                a.stop();
            }
            feed.stop();
            // The findings of what the feed saw, appended before the log closes.
            if let Some(w) = watch {
                w.close();
            }
            seal.stop_but_checkpointer()
        })
        .await?;
        let log = app.engine.log().clone();
        let indexes = app.engine.indexes().clone();
        drop(app);
        // Cut connections, ending streams and the audit writer's last
        // appends let go of their handles.
        let _ = tokio::time::timeout(LAST_HANDLE_WAIT, done.recv()).await;
        let (last, indexed) = tokio::task::spawn_blocking(move || {
            let indexed = match Arc::try_unwrap(indexes) {
                Ok(i) => {
                    i.close();
                    None
                }
                Err(i) => Some(i.indexed_seq()),
            };
            if let Some(c) = checkpointer {
                c.stop();
            }
            let last = log.last_seq();
            if let Ok(l) = Arc::try_unwrap(log) {
                l.close();
            }
            (last, indexed)
        })
        .await?;
        match indexed {
            None => tracing::info!(
                "Stopped: the log is durable up to seq {last} and the indexes are checkpointed."
            ),
            Some(seq) => tracing::warn!(
                "Stopped: the log is durable up to seq {last}; the indexes were still in use and \
                 are checkpointed at least up to seq {seq}: the next start catches them up."
            ),
        }
        Ok(())
    }
}

/// A weak handle on a served state: what the daemon's SIGHUP and watchdog
/// tasks use without delaying shutdown.
#[derive(Clone)]
pub struct Handle(Weak<App>);

impl Handle {
    /// The limits in force (`None` once closed).
    pub fn limits(&self) -> Option<Limits> {
        self.0.upgrade().map(|a| a.limits())
    }

    /// API keys in force (`None` once closed).
    pub fn keys(&self) -> Option<usize> {
        self.0.upgrade().map(|a| a.keyring().len())
    }

    /// Pings the systemd watchdog with the log's and the indexes' health.
    pub fn beat(&self, watchdog: &mut crate::notify::Watchdog) {
        if let Some(app) = self.0.upgrade() {
            watchdog.beat(app.engine.log(), app.engine.indexes());
        }
    }

    /// Appends events Stele writes itself (`ingested_by = "stele"`), as the
    /// audit writer and the detectors do: for tests that need findings
    /// without a detector. `None` once closed.
    #[cfg(any(test, feature = "testkit"))]
    pub fn append_own(
        &self,
        events: &[crate::event::Event],
    ) -> Option<crate::log::Result<crate::log::Appended>> {
        let app = self.0.upgrade()?;
        let by = crate::event::Provenance::stele();
        Some(app.engine.log().append(events, &by))
    }

    /// Puts reloaded settings in force (see [`super::reload`]).
    pub fn reload(&self, fresh: Reloaded) {
        if let Some(app) = self.0.upgrade() {
            super::reload::apply(&app, fresh);
        }
    }
}
