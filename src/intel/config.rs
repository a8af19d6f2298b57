//! `[processes]` of the configuration: how far back process runs and batch
//! operations are rebuilt at start-up, how many are tracked, and when a run
//! that has not finished is `stuck`.
//!
//! Owns the section's values, defaults and checks. SIGHUP puts new stuck
//! thresholds in force (`Processes::reload`); the horizon and the bounds
//! size the trackers at start-up and need a restart.

use super::runs::{StuckRule, TrackerLimits};
use serde::{Deserialize, Serialize};

/// Default `horizon_hours`: a week.
pub const HORIZON_HOURS_DEFAULT: u64 = 7 * 24;
/// Largest `horizon_hours`: a year.
pub const HORIZON_HOURS_MAX: u64 = 366 * 24;
/// Default `runs_max` and `batches_max`.
pub const TRACKED_MAX_DEFAULT: usize = 100_000;
/// Largest `runs_max` and `batches_max` (0.6 to 1.3 GB of runs, at the
/// per-run figures of ARCHITECTURE.md).
pub const TRACKED_MAX_MAX: usize = 1_000_000;
/// Default `stuck_factor`.
pub const STUCK_FACTOR_DEFAULT: u32 = 3;
/// Default `stuck_min_secs`: five minutes.
pub const STUCK_MIN_SECS_DEFAULT: u64 = 300;
/// Default `stuck_max_secs`: a day.
pub const STUCK_MAX_SECS_DEFAULT: u64 = 86_400;
/// Largest `stuck_max_secs`: thirty days.
pub const STUCK_SECS_MAX: u64 = 30 * 86_400;

/// `[processes]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessesConfig {
    /// Hours of history (by `received_at`) replayed at start-up and kept:
    /// runs whose last event is older are dropped. Default: 168. Minimum: 1.
    pub horizon_hours: u64,
    /// Process runs tracked at most. Default: 100000. Minimum: 1.
    pub runs_max: usize,
    /// Batch operations tracked at most. Default: 100000. Minimum: 1.
    pub batches_max: usize,
    /// A running run is stuck past this many times its process's p95
    /// duration (and past `stuck_min_secs`). Default: 3. Minimum: 1.
    pub stuck_factor: u32,
    /// Never stuck earlier by the p95 rule (seconds). Default: 300. Minimum: 1.
    pub stuck_min_secs: u64,
    /// Always stuck after this long (seconds). Default: 86400. Minimum:
    /// `stuck_min_secs`.
    pub stuck_max_secs: u64,
}

impl Default for ProcessesConfig {
    fn default() -> Self {
        ProcessesConfig {
            horizon_hours: HORIZON_HOURS_DEFAULT,
            runs_max: TRACKED_MAX_DEFAULT,
            batches_max: TRACKED_MAX_DEFAULT,
            stuck_factor: STUCK_FACTOR_DEFAULT,
            stuck_min_secs: STUCK_MIN_SECS_DEFAULT,
            stuck_max_secs: STUCK_MAX_SECS_DEFAULT,
        }
    }
}

impl ProcessesConfig {
    /// Checks every value: the key and a message naming the value and what
    /// is allowed.
    ///
    /// # Errors
    /// The first value out of its range.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let ranges: [(&str, u64, u64, u64, &str); 6] = [
            (
                "processes.horizon_hours",
                self.horizon_hours,
                1,
                HORIZON_HOURS_MAX,
                " hours",
            ),
            (
                "processes.runs_max",
                self.runs_max as u64,
                1,
                TRACKED_MAX_MAX as u64,
                " runs",
            ),
            (
                "processes.batches_max",
                self.batches_max as u64,
                1,
                TRACKED_MAX_MAX as u64,
                " batch operations",
            ),
            (
                "processes.stuck_factor",
                u64::from(self.stuck_factor),
                1,
                1_000,
                " times the p95 duration",
            ),
            (
                "processes.stuck_min_secs",
                self.stuck_min_secs,
                1,
                STUCK_SECS_MAX,
                " seconds",
            ),
            (
                "processes.stuck_max_secs",
                self.stuck_max_secs,
                self.stuck_min_secs.max(1),
                STUCK_SECS_MAX,
                " seconds (at least processes.stuck_min_secs)",
            ),
        ];
        for (key, got, min, max, unit) in ranges {
            if !(min..=max).contains(&got) {
                return Err((
                    key.to_owned(),
                    format!("{key} must be between {min} and {max}{unit}, got {got}"),
                ));
            }
        }
        Ok(())
    }

    /// The process tracker's bounds.
    pub fn runs(&self) -> TrackerLimits {
        self.limits(self.runs_max)
    }

    /// The batch tracker's bounds.
    pub fn batches(&self) -> TrackerLimits {
        self.limits(self.batches_max)
    }

    /// How far back the feed replays at start-up (µs).
    pub fn horizon_micros(&self) -> i64 {
        (self.horizon_hours as i64) * 3_600_000_000
    }

    fn limits(&self, tracked_max: usize) -> TrackerLimits {
        TrackerLimits {
            tracked_max,
            horizon_micros: self.horizon_micros(),
            stuck: StuckRule {
                factor: f64::from(self.stuck_factor),
                min_micros: (self.stuck_min_secs as i64) * 1_000_000,
                max_micros: (self.stuck_max_secs as i64) * 1_000_000,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert_eq!(ProcessesConfig::default().validate(), Ok(()));
        let bad = ProcessesConfig {
            stuck_min_secs: 600,
            stuck_max_secs: 60,
            ..ProcessesConfig::default()
        };
        let (key, msg) = bad.validate().unwrap_err();
        assert_eq!(key, "processes.stuck_max_secs");
        assert_eq!(
            msg,
            "processes.stuck_max_secs must be between 600 and 2592000 seconds (at least \
             processes.stuck_min_secs), got 60"
        );
        let zero = ProcessesConfig {
            runs_max: 0,
            ..ProcessesConfig::default()
        };
        assert_eq!(zero.validate().unwrap_err().0, "processes.runs_max");
    }
}
