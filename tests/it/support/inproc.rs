//! `stele::server::serve` run inside the test process: no binary to spawn,
//! no process to wait for. For the suites where the process is not the
//! point (routes, problems, auth, the OpenAPI contract); crash, failpoint,
//! systemd and RSS tests keep a real process (`support::daemon`).
//!
//! Each server has its own tokio runtime on its own thread; dropping the
//! `Server` stops it and waits until the state is closed (final index
//! checkpoint, log closed), so a test may reopen the data directory.

use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use stele::clock::Clock;
use stele::config::{Config, Reloaded, ServeConfig};

use super::daemon::call_at;

pub struct Server {
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// What the daemon's SIGHUP task holds: reloads settings in place.
    handle: stele::server::Handle,
    /// Its threads' name (the server thread and its runtime's).
    name: String,
    /// How many panics [`PANICS`] held when this server started.
    panics_before: usize,
}

/// Every panic of a Stele thread in this process (`stele-*`: the servers'
/// runtimes, the log writers, the indexers, ...), in order, with the name of
/// the thread: what a real daemon would print as "panicked" on its stderr.
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Records the panics of Stele threads in [`PANICS`] (once per process; the
/// previous hook still prints them).
fn watch_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if let Some(name) = thread.name().filter(|n| n.starts_with("stele-")) {
                PANICS.lock().unwrap_or_else(|e| e.into_inner()).push((
                    name.to_string(),
                    format!("thread '{name}' panicked: {info}"),
                ));
            }
            previous(info);
        }));
    });
}

fn panics() -> std::sync::MutexGuard<'static, Vec<(String, String)>> {
    PANICS.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    /// Serves `dir` with the embedded defaults (as `stele serve
    /// --data-dir DIR --listen 127.0.0.1:0` with no configuration).
    pub fn start(dir: &Path) -> Server {
        let mut cfg = Config::default();
        cfg.data_dir = dir.to_path_buf();
        Server::start_with(cfg.serve_config(None))
    }

    /// Serves `dir` with the embedded defaults but no detectors: for tests
    /// that count the log's seqs, which Stele's own findings would interleave.
    pub fn start_without_detectors(dir: &Path) -> Server {
        let mut cfg = Config::default();
        cfg.data_dir = dir.to_path_buf();
        cfg.detect.enabled = false;
        Server::start_with(cfg.serve_config(None))
    }

    /// Serves `dir` with the defaults and these limits (as `stele serve`
    /// with limit flags).
    pub fn start_with_limits(dir: &Path, limits: stele::config::Limits) -> Server {
        let mut cfg = Config::default();
        cfg.data_dir = dir.to_path_buf();
        cfg.limits = limits;
        Server::start_with(cfg.serve_config(None))
    }

    /// Serves `dir` with the configuration file `conf` (as `stele serve
    /// --config CONF --data-dir DIR`, no `STELE_*` variable).
    pub fn start_with_file(dir: &Path, conf: &Path) -> Server {
        let mut cfg = Config::load(Some(conf), |_| None).expect("a valid configuration");
        cfg.data_dir = dir.to_path_buf();
        cfg.validate().expect("a valid configuration");
        Server::start_with(cfg.serve_config(None))
    }

    /// Serves with `cfg` on an ephemeral loopback port.
    pub fn start_with(cfg: ServeConfig) -> Server {
        Server::spawn(cfg, None)
    }

    /// Serves with `cfg` on `clock` instead of the system's (a
    /// `stele::clock::ManualClock` the test moves): `received_at`, every
    /// "now" of the routes, and the activity feed's ticks (stuck runs, at
    /// most every `stele::intel::feed::TICK_SECS` of this clock) follow it.
    pub fn start_on(cfg: ServeConfig, clock: Arc<dyn Clock>) -> Server {
        Server::spawn(cfg, Some(clock))
    }

    fn spawn(cfg: ServeConfig, clock: Option<Arc<dyn Clock>>) -> Server {
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        let name = format!("stele-inproc-{}", SERVERS.fetch_add(1, Ordering::Relaxed));
        watch_panics();
        let panics_before = panics().len();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread_name = name.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(thread_name)
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(async move {
                    let opened = async {
                        let state = match clock {
                            Some(c) => stele::server::State::open_on(&cfg, c).await?,
                            None => stele::server::State::open(&cfg).await?,
                        };
                        let listener = stele::server::bind(([127, 0, 0, 1], 0).into())?;
                        anyhow::Ok((state, listener))
                    };
                    let (state, listener) = match opened.await {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let addr = listener.local_addr().expect("bound").to_string();
                    let _ = addr_tx.send(Ok((addr, state.handle())));
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    stele::server::serve(listener, state, shutdown)
                        .await
                        .expect("a clean shutdown");
                });
            })
            .expect("spawn the server thread");
        let (addr, handle) = addr_rx
            .recv()
            .expect("the server thread answers")
            .unwrap_or_else(|e| panic!("the server did not start: {e}"));
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            handle,
            name,
            panics_before,
        }
    }

    /// Reads the reloadable settings of `conf` again and puts them in force,
    /// as the daemon does on SIGHUP (`stele::server::Handle::reload`, the
    /// same entry point); panics when the file is not valid.
    pub fn reload(&self, conf: &Path) {
        let cfg = Config::load(Some(conf), |_| None).expect("a valid configuration");
        cfg.validate().expect("a valid configuration");
        let alerts = cfg.alert_set().expect("valid alerts");
        self.handle.reload(Reloaded {
            limits: cfg.limits,
            retention: cfg.retention,
            field_map: cfg.ingest.field_map().expect("a valid field map"),
            alerts,
            detect: cfg.detect,
            processes: cfg.processes,
            auth: cfg.auth,
            tls: cfg.tls,
        });
    }

    /// Appends an event Stele writes itself (`ingested_by = "stele"`; a
    /// finding, say), validated as Stele's own; returns its seq.
    pub fn append_own(&self, event: &Value) -> u64 {
        let ev = stele::event::parse_stele_event(event, stele::event::new_event_id)
            .unwrap_or_else(|e| panic!("not a valid event: {e:?}"));
        self.handle
            .append_own(&[ev])
            .expect("the server is open")
            .expect("appended")
            .first_seq
    }

    /// The server thread ended (it panicked, or `serve` returned).
    pub fn exited(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The panics since this server started of its threads and of the Stele
    /// threads of no in-process server (a log writer, an indexer, ...: which
    /// server's, the name does not say).
    pub fn panics(&self) -> Vec<String> {
        panics()[self.panics_before..]
            .iter()
            .filter(|(t, _)| *t == self.name || !t.starts_with("stele-inproc-"))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// One HTTP/1.1 request; returns (status, content type, body).
    pub fn call(&self, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, String, Value) {
        call_at(&self.addr, method, path, ctype, body)
    }

    pub fn get(&self, path: &str) -> (u16, String, Value) {
        self.call("GET", path, "application/json", b"")
    }

    pub fn post(&self, body: &Value) -> (u16, String, Value) {
        self.call(
            "POST",
            "/v1/events",
            "application/json",
            body.to_string().as_bytes(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            // A panic in the server thread fails the test that owns it.
            if t.join().is_err() && !std::thread::panicking() {
                panic!("the in-process server panicked");
            }
        }
    }
}
