//! systemd's notification protocol (`sd_notify(3)`) for `stele serve`.
//!
//! Owns what `stele serve` tells its service manager: `STATUS=` while it
//! recovers the log and catches the indexes up, `EXTEND_TIMEOUT_USEC=` while
//! that catch-up makes progress, `READY=1` once it listens, `WATCHDOG=1` from
//! the accept loop, and `STOPPING=1` when shutdown starts. `RELOADING=1`
//! ([`reloading`]) is there for the SIGHUP reload.
//!
//! Invariants:
//! 1. Without `NOTIFY_SOCKET` every function here is a no-op (no socket, no
//!    task, no timer): `stele serve` run by hand or by tests behaves as
//!    before.
//! 2. `READY=1` is sent only once the log is recovered, the indexes hold
//!    everything the log held at open, and the listener is bound (the caller,
//!    `server::serve`, sends it where it logs "Listening on").
//! 3. The watchdog is pinged only from the accept loop, and only while the
//!    blocking pool answers a probe and the log accepts appends: a poisoned
//!    log (a failed fsync: appends are refused until a restart) stops the
//!    pings for good, with a `STATUS=` saying why, so that systemd restarts
//!    Stele. An indexer failure only changes `STATUS=`: ingest still works
//!    and is what an audit log must keep doing.
//! 4. The environment is never modified (`unset_env` is always false):
//!    notifications are sent for the daemon's whole life, changing the
//!    environment of a multi-threaded process races with `getenv` in other
//!    threads, and Stele starts no child process that could inherit
//!    `NOTIFY_SOCKET` (with `NotifyAccess=main` systemd would ignore one
//!    anyway).
//!
//! `NOTIFY_SOCKET` must be a file system path (what systemd sets for
//! services: `/run/systemd/notify`); the sd-notify crate does not handle
//! abstract (`@`) socket names.

use crate::index::Indexes;
use crate::log::Log;
use sd_notify::NotifyState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long each `EXTEND_TIMEOUT_USEC=` granted during a startup catch-up
/// that makes progress lasts.
pub const STARTUP_EXTENSION: Duration = Duration::from_secs(60);
/// How often startup progress is reported.
pub const STARTUP_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Whether a service manager listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

/// Sends `states` as one datagram; a failure is logged once (a missing or
/// refusing socket must not stop the daemon, nor flood its log).
fn send(states: &[NotifyState<'_>]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !enabled() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "Could not notify the service manager through NOTIFY_SOCKET ({e}); \
                 further failures are not logged."
            );
        }
    }
}

/// `STATUS=text`: what `systemctl status stele` shows.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// `READY=1` with a status line and our pid (invariant 2).
pub fn ready(text: &str) {
    send(&[
        NotifyState::Ready,
        NotifyState::Status(text),
        NotifyState::MainPid(std::process::id()),
    ]);
}

/// `STOPPING=1`: shutdown has started.
pub fn stopping(text: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(text)]);
}

/// `RELOADING=1` with the monotonic time systemd ≥ 253 requires; send
/// [`ready`] once the reload is done.
pub fn reloading(text: &str) {
    let mut states = vec![NotifyState::Reloading, NotifyState::Status(text)];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// `EXTEND_TIMEOUT_USEC=`: the start (or stop) may take `by` longer than
/// what is left of `TimeoutStartSec=` (`TimeoutStopSec=`).
pub fn extend_timeout(by: Duration) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[NotifyState::ExtendTimeoutUsec(usec)]);
}

/// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`),
/// if it applies to this process.
pub fn watchdog_timeout() -> Option<Duration> {
    if !enabled() {
        return None;
    }
    watchdog_timeout_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// `sd_watchdog_enabled(3)`: `WATCHDOG_USEC` must be a positive number of
/// microseconds; `WATCHDOG_PID`, when set, must be our pid (it is unset when
/// the variables are meant for whoever reads them). This is libsystemd's
/// rule; `sd_notify::watchdog_enabled` (0.4) also requires `WATCHDOG_PID`,
/// which systemd always sets but a test harness cannot know before spawning.
pub fn watchdog_timeout_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?
        .trim()
        .parse()
        .ok()
        .filter(|&u| u > 0 && u < u64::MAX)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Reports the startup (log recovery, index catch-up) to systemd until
/// dropped: a `STATUS=` line every [`STARTUP_REPORT_INTERVAL`], and an
/// `EXTEND_TIMEOUT_USEC=` of [`STARTUP_EXTENSION`] each time the indexes
/// advanced since the previous report, so that a long rebuild is not killed
/// by `TimeoutStartSec=` while a stuck one still is.
pub struct Startup {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Startup {
    /// Starts reporting (a no-op without `NOTIFY_SOCKET`). `progress`
    /// answers `(indexed_seq, target_seq)` once the indexes are open, `None`
    /// before. Must be called within a tokio runtime.
    pub fn begin(progress: impl Fn() -> Option<(u64, u64)> + Send + 'static) -> Startup {
        if !enabled() {
            return Startup { task: None };
        }
        status("Recovering the log and catching up the indexes.");
        let task = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut ticks = tokio::time::interval_at(
                started + STARTUP_REPORT_INTERVAL,
                STARTUP_REPORT_INTERVAL,
            );
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<u64> = None;
            loop {
                ticks.tick().await;
                let secs = started.elapsed().as_secs();
                match progress() {
                    None => status(&format!(
                        "Recovering the log and opening the indexes ({secs} s)."
                    )),
                    Some((indexed, target)) => {
                        status(&format!(
                            "Catching the indexes up with the log: seq {indexed} of {target} \
                             ({secs} s)."
                        ));
                        if last.is_none_or(|l| indexed > l) {
                            extend_timeout(STARTUP_EXTENSION);
                        }
                        last = Some(indexed);
                    }
                }
            }
        });
        Startup { task: Some(task) }
    }
}

impl Drop for Startup {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The watchdog, driven by the accept loop: [`Watchdog::tick`] completes
/// every half `WATCHDOG_USEC`, then [`Watchdog::beat`] checks health and
/// pings (invariant 3). Without `NOTIFY_SOCKET`, `tick` never completes.
pub struct Watchdog {
    ticks: Option<tokio::time::Interval>,
    /// False once the watchdog is off for this process or pings stopped.
    pinging: bool,
    /// Set by the last blocking-pool probe when it ran.
    probe_answered: Arc<AtomicBool>,
    /// Said once per stall of the blocking pool.
    stall_reported: bool,
    /// The status while healthy ("Serving on …").
    serving: String,
    /// The last `STATUS=` sent.
    status: String,
}

impl Watchdog {
    /// Pings every half `WATCHDOG_USEC` when systemd asks for a watchdog;
    /// with only `NOTIFY_SOCKET`, checks health every 10 s to keep `STATUS=`
    /// true. Must be called within a tokio runtime.
    pub fn new(serving: String) -> Watchdog {
        let timeout = watchdog_timeout();
        let period = match timeout {
            Some(t) => (t / 2).max(Duration::from_millis(1)),
            None => Duration::from_secs(10),
        };
        let ticks = enabled().then(|| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        if let Some(t) = timeout {
            tracing::info!(
                "systemd watchdog: {} ms; pinging every {} ms from the accept loop.",
                t.as_millis(),
                period.as_millis()
            );
        }
        Watchdog {
            ticks,
            pinging: timeout.is_some(),
            probe_answered: Arc::new(AtomicBool::new(true)),
            stall_reported: false,
            status: serving.clone(),
            serving,
        }
    }

    /// Completes when the next check is due; never without `NOTIFY_SOCKET`
    /// or once the log is poisoned.
    pub async fn tick(&mut self) {
        match &mut self.ticks {
            Some(t) => {
                t.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Checks the log, the indexer and the blocking pool; pings the watchdog
    /// when healthy. Cheap: call it from the accept loop.
    pub fn beat(&mut self, log: &Log, indexes: &Indexes) {
        let poisoned = log.poisoned().map(|e| e.to_string());
        if self.check(poisoned, indexes.failure()) {
            send(&[NotifyState::Watchdog]);
            let answered = self.probe_answered.clone();
            tokio::task::spawn_blocking(move || answered.store(true, Ordering::Release));
        }
    }

    /// Updates `STATUS=` from the log's poisoning and the indexer's failure;
    /// true when the watchdog should be pinged now.
    fn check(&mut self, poisoned: Option<String>, indexer_failure: Option<String>) -> bool {
        if let Some(e) = poisoned {
            let text = format!(
                "The log refuses appends until a restart ({e}); watchdog pings stopped so \
                 that systemd restarts Stele."
            );
            if self.pinging {
                tracing::error!("{text}");
            }
            self.set_status(text);
            self.pinging = false;
            self.ticks = None;
            return false;
        }
        let text = match indexer_failure {
            Some(f) => format!(
                "{} The indexer stopped ({f}): ingest works, queries trail the log until a \
                 restart.",
                self.serving
            ),
            None => self.serving.clone(),
        };
        self.set_status(text);
        if !self.pinging {
            return false;
        }
        if !self.probe_answered.swap(false, Ordering::AcqRel) {
            if !self.stall_reported {
                self.stall_reported = true;
                tracing::warn!(
                    "The blocking pool has not run the watchdog probe since the last ping; \
                     not pinging systemd's watchdog until it does."
                );
            }
            return false;
        }
        if self.stall_reported {
            self.stall_reported = false;
            tracing::info!("The blocking pool answered the watchdog probe again.");
        }
        true
    }

    fn set_status(&mut self, text: String) {
        if text != self.status {
            status(&text);
            self.status = text;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{watchdog_timeout_from, Watchdog};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn pinging_watchdog() -> Watchdog {
        Watchdog {
            ticks: None,
            pinging: true,
            probe_answered: Arc::new(AtomicBool::new(true)),
            stall_reported: false,
            serving: "Serving on 127.0.0.1:7070.".into(),
            status: "Serving on 127.0.0.1:7070.".into(),
        }
    }

    #[test]
    fn pings_only_after_the_blocking_pool_answered() {
        let mut w = pinging_watchdog();
        assert!(w.check(None, None));
        // The probe spawned after that ping has not run yet.
        assert!(!w.check(None, None));
        assert!(!w.check(None, None));
        assert!(w.stall_reported);
        w.probe_answered.store(true, Ordering::Release);
        assert!(w.check(None, None));
        assert!(!w.stall_reported);
    }

    #[test]
    fn an_indexer_failure_changes_the_status_but_not_the_pings() {
        let mut w = pinging_watchdog();
        assert!(w.check(None, Some("disk on fire".into())));
        assert!(
            w.status.contains("The indexer stopped (disk on fire)"),
            "{}",
            w.status
        );
        assert!(w.status.starts_with("Serving on 127.0.0.1:7070."));
    }

    #[test]
    fn a_poisoned_log_stops_the_pings_for_good() {
        let mut w = pinging_watchdog();
        assert!(!w.check(Some("fdatasync failed: EIO".into()), None));
        assert!(w.status.contains("fdatasync failed: EIO"), "{}", w.status);
        assert!(w.status.contains("watchdog pings stopped"), "{}", w.status);
        assert!(w.ticks.is_none() && !w.pinging);
        assert!(!w.check(None, None), "pings never resume");
    }

    #[test]
    fn watchdog_follows_sd_watchdog_enabled() {
        let thirty = Some(Duration::from_secs(30));
        assert_eq!(
            watchdog_timeout_from(Some("30000000"), Some("42"), 42),
            thirty
        );
        // No WATCHDOG_PID: meant for whoever reads it.
        assert_eq!(watchdog_timeout_from(Some("30000000"), None, 42), thirty);
        assert_eq!(watchdog_timeout_from(Some("30000000"), Some("1"), 42), None);
        assert_eq!(watchdog_timeout_from(Some("30000000"), Some("x"), 42), None);
        assert_eq!(watchdog_timeout_from(None, Some("42"), 42), None);
        assert_eq!(watchdog_timeout_from(Some("0"), None, 42), None);
        assert_eq!(watchdog_timeout_from(Some("-5"), None, 42), None);
        assert_eq!(watchdog_timeout_from(Some("soon"), None, 42), None);
    }
}
