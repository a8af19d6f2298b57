//! Time as a parameter.
//!
//! Owns the [`Clock`] seam: the log asks it for "now" when it stamps
//! `received_at` and decides the UTC day of the active segment. Production uses
//! [`SystemClock`]; tests use [`ManualClock`] to cross midnight on purpose
//! instead of waiting for it (time is a source of non-determinism).

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of wall-clock time in unix microseconds (UTC).
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since 1970-01-01T00:00:00Z.
    fn now_micros(&self) -> i64;
}

/// The operating system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    /// The current time in unix microseconds.
    now: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `micros`.
    pub fn new(micros: i64) -> Self {
        ManualClock {
            now: AtomicI64::new(micros),
        }
    }

    /// Sets the time.
    pub fn set(&self, micros: i64) {
        self.now.store(micros, Ordering::SeqCst);
    }

    /// Moves the time forward (or back, with a negative delta).
    pub fn advance(&self, delta_micros: i64) {
        self.now.fetch_add(delta_micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}
