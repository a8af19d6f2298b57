//! Time for the tests: microsecond units, RFC 3339 text, and waiting for a
//! condition on a loaded machine.

use std::time::{Duration, Instant};

pub const SEC: i64 = 1_000_000;
pub const MIN: i64 = 60 * SEC;
pub const HOUR: i64 = 60 * MIN;

/// `us` (unix microseconds) as RFC 3339 UTC with microseconds.
pub fn ts(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Polls `done` every 20 ms for up to `within`; panics naming `what`.
pub fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
