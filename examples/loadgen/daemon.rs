//! The daemon under test: starting a fresh `stele serve` (its data directory, its
//! log read for the address and its warnings), stopping it, and what every task of
//! a scenario shares with it (the target address, the abort flag, the watchdog).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::common::{lock, strip_ansi};
use crate::{Opts, INTERRUPTED};

/// A self-started `stele serve`.
pub struct Daemon {
    /// The API key of a `--auth` daemon.
    pub token: Option<String>,
    pub child: Arc<Mutex<Child>>,
    pub addr: SocketAddr,
    pub notes: Arc<Mutex<DaemonNotes>>,
    pub _dir: tempfile::TempDir,
}

/// What the daemon logged.
#[derive(Default, Clone)]
pub struct DaemonNotes {
    /// The last lines.
    pub tail: VecDeque<String>,
    /// Lines at WARN or ERROR level (the first few) and their count.
    pub warnings: Vec<String>,
    pub warning_count: u64,
    /// Set by [`Daemon::stop`] when the process had already exited.
    pub exited_early: Option<String>,
}

impl Daemon {
    pub fn start(o: &Opts) -> Result<Daemon> {
        Daemon::start_env(o, &[])
    }

    /// Like [`Daemon::start`], with these variables added to the daemon's environment.
    pub fn start_env(o: &Opts, env: &[(&str, &str)]) -> Result<Daemon> {
        if !o.stele.is_file() {
            bail!(
                "the stele binary {} does not exist: build it first with `cargo build --release` \
                 (or pass --stele PATH, or --addr HOST:PORT to use a running daemon)",
                o.stele.display()
            );
        }
        std::fs::create_dir_all(&o.data_parent)
            .with_context(|| format!("cannot create {}", o.data_parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("loadgen-")
            .tempdir_in(&o.data_parent)
            .with_context(|| {
                format!(
                    "cannot create a data directory in {}",
                    o.data_parent.display()
                )
            })?;
        let mut cmd = Command::new(&o.stele);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path());
        let token = if o.auth {
            let token = stele::auth::generate_token().context("cannot make an API key")?;
            let config = dir.path().join("loadgen-auth.toml");
            std::fs::write(
                &config,
                format!(
                    "[[auth.keys]]\nid = \"loadgen\"\nhash = \"{}\"\n\
                     roles = [\"ingest\", \"read\", \"export\", \"admin\"]\ntenants = [\"*\"]\n\
                     rate_per_sec = 1000000\nburst = 1000000\nstreams_max = 1024\n",
                    stele::auth::hash_line(&token)
                ),
            )
            .with_context(|| format!("cannot write {}", config.display()))?;
            cmd.arg("--config").arg(config);
            Some(token)
        } else {
            None
        };
        let mut child = cmd
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", o.stele.display()))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no stderr pipe to the daemon");
        };
        let notes = Arc::new(Mutex::new(DaemonNotes::default()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let (notes2, echo) = (notes.clone(), o.daemon_log);
        // Reads the daemon's stderr until it closes: the address first, then keeps
        // draining (so the daemon never blocks on a full pipe), remembering warnings.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if echo {
                    eprintln!("[stele] {line}");
                }
                if let Some(rest) = line.split("Listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                    }
                }
                let mut n = lock(&notes2);
                if line.contains(" WARN ") || line.contains(" ERROR ") {
                    n.warning_count += 1;
                    if n.warnings.len() < 10 {
                        n.warnings.push(line.clone());
                    }
                }
                n.tail.push_back(line);
                if n.tail.len() > 50 {
                    n.tail.pop_front();
                }
            }
        });
        let child = Arc::new(Mutex::new(child));
        let daemon = |addr| Daemon {
            child: child.clone(),
            addr,
            token: token.clone(),
            notes: notes.clone(),
            _dir: dir,
        };
        let found = rx.recv_timeout(Duration::from_secs(120));
        let addr = found
            .as_deref()
            .ok()
            .and_then(|a| a.trim_end_matches(['.', ',']).parse::<SocketAddr>().ok());
        match addr {
            Some(addr) if addr.ip().is_loopback() => Ok(daemon(addr)),
            _ => {
                let d = daemon(SocketAddr::from(([127, 0, 0, 1], 0)));
                let notes = d.stop();
                let why = match found {
                    Ok(a) => format!("it reported an unusable address {a:?}"),
                    Err(_) => "it exited or did not say `Listening on ADDR` within 120 s".into(),
                };
                bail!(
                    "stele serve did not start: {why}{}; its last log lines:\n  {}",
                    notes
                        .exited_early
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default(),
                    notes.tail.iter().cloned().collect::<Vec<_>>().join("\n  ")
                )
            }
        }
    }

    /// Kills the daemon (noting whether it had already exited) and returns its notes.
    pub fn stop(self) -> DaemonNotes {
        let exited = {
            let mut c = lock(&self.child);
            let early = c.try_wait().ok().flatten();
            if early.is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
            early
        };
        // Give the stderr reader a moment to take the last lines.
        std::thread::sleep(Duration::from_millis(50));
        let mut notes = lock(&self.notes).clone();
        notes.exited_early = exited.map(|s| format!("it exited by itself: {s}"));
        notes
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let mut c = lock(&self.child);
        if c.try_wait().ok().flatten().is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What every task of a scenario shares: the target, and the abort flag.
#[derive(Clone)]
pub struct Ctx {
    pub addr: SocketAddr,
    pub host: String,
    /// `Bearer <key>` when the daemon needs one.
    pub authorization: Option<String>,
    pub child: Option<Arc<Mutex<Child>>>,
    pub abort: Arc<AbortFlag>,
}

#[derive(Default)]
pub struct AbortFlag {
    pub set: AtomicBool,
    pub why: Mutex<Option<String>>,
}

impl Ctx {
    pub fn new(addr: SocketAddr, child: Option<Arc<Mutex<Child>>>, token: Option<String>) -> Ctx {
        Ctx {
            addr,
            host: addr.to_string(),
            authorization: token.map(|t| format!("Bearer {t}")),
            child,
            abort: Arc::default(),
        }
    }

    pub fn aborted(&self) -> bool {
        self.abort.set.load(Ordering::Relaxed)
    }

    /// Stops the scenario; the first reason given is the one reported.
    pub fn abort(&self, why: String) {
        let mut w = lock(&self.abort.why);
        if w.is_none() {
            *w = Some(why);
        }
        self.abort.set.store(true, Ordering::Relaxed);
    }

    /// `Err` with the reason if the scenario was aborted.
    pub fn check(&self) -> Result<()> {
        if self.aborted() {
            let why = lock(&self.abort.why).clone().unwrap_or_default();
            bail!("aborted: {why}");
        }
        Ok(())
    }

    /// Why the self-started daemon is gone, if it is.
    pub fn daemon_gone(&self) -> Option<String> {
        let child = self.child.as_ref()?;
        let status = lock(child).try_wait().ok().flatten()?;
        Some(format!("the daemon at {} exited ({status})", self.addr))
    }
}

/// Aborts the scenario as soon as the self-started daemon exits, or on Ctrl-C.
pub async fn watchdog(ctx: Ctx) {
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            ctx.abort("interrupted (Ctrl-C)".into());
            return;
        }
        if let Some(why) = ctx.daemon_gone() {
            ctx.abort(why);
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
