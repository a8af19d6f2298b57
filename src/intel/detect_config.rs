//! `[detect]` of the configuration: the detectors' thresholds.
//!
//! Owns the section's values, defaults and checks, and their translation to
//! [`Thresholds`]. SIGHUP puts new values in force (the detectors' memory is
//! kept); `enabled` is read at start-up only.

use super::detect::Thresholds;
use serde::{Deserialize, Serialize};

/// `[detect]` (see `Thresholds` for what each value means).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Whether detectors run at all. Default: true. Read at start-up.
    pub enabled: bool,
    /// Failed authentications in one window that make a burst. Default: 5.
    pub login_burst_count: u64,
    /// The burst window, seconds. Default: 600.
    pub login_burst_window_secs: u64,
    /// Errors in a spike window below which no spike is raised. Default: 20.
    pub spike_min_errors: u64,
    /// How many times the baseline error rate a spike is. Default: 3.
    pub spike_factor: f64,
    /// The spike window, seconds (10 buckets). Default: 600.
    pub spike_window_secs: u64,
    /// Successful events of a user before a new IP is remarkable. Default: 5.
    pub new_ip_min_history: u64,
    /// The churn (percent: the share of a user's recent events not failed
    /// from an IP, or country, new to them) from which the user roams and a
    /// new one is not remarkable; 0 turns roaming off. Default: 50. At most
    /// 99: the churn approaches 100 % and never reaches it.
    pub new_ip_roaming_percent: f64,
    /// Events of a user before an unusual hour is remarkable. Default: 50.
    pub hour_min_history: u64,
    /// The share (percent) of a user's history below which an hour is
    /// unusual. Default: 2.
    pub hour_share_percent: f64,
    /// Requests of one actor in one minute that are abuse. Default: 600.
    pub abuse_per_minute: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        let t = Thresholds::default();
        DetectConfig {
            enabled: true,
            login_burst_count: t.login_burst_count,
            login_burst_window_secs: (t.login_burst_window / 1_000_000) as u64,
            spike_min_errors: t.spike_min_errors,
            spike_factor: t.spike_factor,
            spike_window_secs: (t.spike_window / 1_000_000) as u64,
            new_ip_min_history: t.new_ip_min_history,
            new_ip_roaming_percent: t.new_ip_roaming_percent,
            hour_min_history: t.hour_min_history,
            hour_share_percent: t.hour_share * 100.0,
            abuse_per_minute: t.abuse_per_minute,
        }
    }
}

/// Largest count threshold.
const COUNT_MAX: u64 = 1_000_000_000;
/// Longest window: a day.
const WINDOW_SECS_MAX: u64 = 86_400;

impl DetectConfig {
    /// Checks every value: the key and a message naming the value and what is
    /// allowed.
    ///
    /// # Errors
    /// The first value out of its range.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let counts = [
            (
                "detect.login_burst_count",
                self.login_burst_count,
                1,
                COUNT_MAX,
            ),
            (
                "detect.login_burst_window_secs",
                self.login_burst_window_secs,
                10,
                WINDOW_SECS_MAX,
            ),
            (
                "detect.spike_min_errors",
                self.spike_min_errors,
                1,
                COUNT_MAX,
            ),
            (
                "detect.spike_window_secs",
                self.spike_window_secs,
                10,
                WINDOW_SECS_MAX,
            ),
            (
                "detect.new_ip_min_history",
                self.new_ip_min_history,
                0,
                COUNT_MAX,
            ),
            (
                "detect.hour_min_history",
                self.hour_min_history,
                1,
                COUNT_MAX,
            ),
            (
                "detect.abuse_per_minute",
                self.abuse_per_minute,
                1,
                COUNT_MAX,
            ),
        ];
        for (key, v, lo, hi) in counts {
            if !(lo..=hi).contains(&v) {
                return Err((
                    key.into(),
                    format!("{v} is out of range: from {lo} to {hi}"),
                ));
            }
        }
        let reals = [
            ("detect.spike_factor", self.spike_factor, 1.0, 1000.0),
            (
                "detect.new_ip_roaming_percent",
                self.new_ip_roaming_percent,
                0.0,
                99.0,
            ),
            (
                "detect.hour_share_percent",
                self.hour_share_percent,
                0.0,
                50.0,
            ),
        ];
        for (key, v, lo, hi) in reals {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err((
                    key.into(),
                    format!("{v} is out of range: from {lo} to {hi}"),
                ));
            }
        }
        Ok(())
    }

    /// The thresholds these values set.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            login_burst_count: self.login_burst_count,
            login_burst_window: self.login_burst_window_secs as i64 * 1_000_000,
            spike_min_errors: self.spike_min_errors,
            spike_factor: self.spike_factor,
            spike_window: self.spike_window_secs as i64 * 1_000_000,
            new_ip_min_history: self.new_ip_min_history,
            new_ip_roaming_percent: self.new_ip_roaming_percent,
            hour_min_history: self.hour_min_history,
            hour_share: self.hour_share_percent / 100.0,
            abuse_per_minute: self.abuse_per_minute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_thresholds_defaults_and_bad_values_name_their_key() {
        let d = DetectConfig::default();
        assert!(d.validate().is_ok());
        assert_eq!(d.thresholds(), Thresholds::default());
        for (set, key) in [
            (
                DetectConfig {
                    login_burst_count: 0,
                    ..d.clone()
                },
                "detect.login_burst_count",
            ),
            (
                DetectConfig {
                    spike_factor: f64::NAN,
                    ..d.clone()
                },
                "detect.spike_factor",
            ),
            (
                DetectConfig {
                    spike_factor: 0.5,
                    ..d.clone()
                },
                "detect.spike_factor",
            ),
            (
                DetectConfig {
                    spike_window_secs: 5,
                    ..d.clone()
                },
                "detect.spike_window_secs",
            ),
            (
                DetectConfig {
                    new_ip_roaming_percent: 100.0,
                    ..d.clone()
                },
                "detect.new_ip_roaming_percent",
            ),
            (
                DetectConfig {
                    hour_share_percent: 60.0,
                    ..d.clone()
                },
                "detect.hour_share_percent",
            ),
        ] {
            let (k, why) = set.validate().unwrap_err();
            assert_eq!(k, key);
            assert!(why.contains("out of range"), "{why}");
        }
    }
}
