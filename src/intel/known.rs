//! The values a user is known by (IPs, countries): the most recent distinct
//! ones, and how often lately a value was new to them (their churn).
//!
//! Owns one user's list for one kind of value. Shared by the risk rule
//! `new_ip` ([`super::risk`]) and the detector `new_ip` ([`super::detect`]):
//! both ask whether a value is known and whether the user roams, and both
//! teach it only from events that did not fail (a failed login from anywhere
//! must not make an attacker's address known, nor its user roam). Never decides what fires: the callers
//! own their thresholds.
//!
//! Why churn: a user whose values keep changing (a phone on a carrier's
//! network, a VPN with rotating exits, a service account behind a pool of
//! addresses) acts from a new IP at almost every event, and telling an analyst
//! so once a user a day, every day, or adding risk points to every event, says
//! nothing. The churn is the share of a user's recent events (that did not
//! fail) whose value was not among the known ones, as an exponentially
//! weighted average with α = 1/16 (the last [`KNOWN_MAX`] events weigh 64 %):
//! from 0, at least 0.5 after 11 new values in a row; from any value, under 0.5
//! after at most 11 known ones. A user roams while their churn is at least the
//! caller's share; for them a new value is ordinary. A user with a few usual
//! addresses keeps a churn near zero, so a new one stands out as before.
//!
//! What roaming costs an analyst: a roaming user's new address raises nothing
//! at any level, a failed login or a privilege change from it included; those
//! are left to `failed_login_burst` and `privilege_change`. Someone who can
//! make events be logged for a user (password-reset requests, say) from
//! about 11 fresh addresses can make them roam; `new_ip` could already be
//! spent the same way (one finding a user a day and level). IPs and
//! countries roam separately.
//!
//! Invariants:
//! 1. At most [`KNOWN_MAX`] values, distinct, most recent last.
//! 2. The churn is in `0..=1`, starts at 0 (a user starts settled) and moves
//!    only when a value is learned.

use std::collections::VecDeque;

/// Values kept per user (the most recent distinct ones).
pub const KNOWN_MAX: usize = 16;
/// The weight of one learned value in the churn.
const CHURN_ALPHA: f32 = 1.0 / KNOWN_MAX as f32;

/// One user's known values of one kind.
#[derive(Debug, Default, Clone)]
pub struct Known {
    values: VecDeque<String>,
    churn: f32,
}

impl Known {
    /// Whether `value` is among the known ones.
    pub fn contains(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// How many values are known (at most [`KNOWN_MAX`]).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing is known yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The share (0 to 1) of recent learned values that were new.
    pub fn churn(&self) -> f64 {
        f64::from(self.churn)
    }

    /// Whether the user roams: a churn of at least `percent` % (0 never roams).
    pub fn roams(&self, percent: f64) -> bool {
        percent > 0.0 && self.churn() * 100.0 >= percent
    }

    /// Learns `value` from a successful event: moves the churn towards 1 when
    /// it was new (towards 0 when known) and keeps it as the most recent.
    pub fn learn(&mut self, value: &str) {
        let new = match self.values.iter().position(|v| v == value) {
            Some(i) => {
                let v = self.values.remove(i).unwrap_or_default();
                self.values.push_back(v);
                false
            }
            None => {
                self.values.push_back(value.to_owned());
                if self.values.len() > KNOWN_MAX {
                    self.values.pop_front();
                }
                true
            }
        };
        let target = if new { 1.0 } else { 0.0 };
        self.churn += CHURN_ALPHA * (target - self.churn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_with_a_few_usual_addresses_stays_settled_and_one_who_changes_every_time_roams() {
        let mut usual = Known::default();
        for i in 0..1000 {
            usual.learn(["10.0.0.1", "10.0.0.2", "192.0.2.7"][i % 3]);
        }
        assert_eq!(usual.len(), 3);
        assert!(usual.churn() < 0.01, "{}", usual.churn());
        assert!(!usual.roams(50.0));
        assert!(usual.contains("192.0.2.7") && !usual.contains("192.0.2.8"));

        let mut roaming = Known::default();
        let mut first_roaming = None;
        for i in 0..40 {
            roaming.learn(&format!("203.0.113.{i}"));
            assert!(roaming.len() <= KNOWN_MAX);
            if first_roaming.is_none() && roaming.roams(50.0) {
                first_roaming = Some(i + 1);
            }
        }
        // 1 − (15/16)^n ≥ 0.5 from n = 11.
        assert_eq!(first_roaming, Some(11));
        assert_eq!(roaming.len(), KNOWN_MAX);
        assert!(!roaming.contains("203.0.113.0") && roaming.contains("203.0.113.39"));
        assert!(!roaming.roams(0.0), "0 turns roaming off");
    }

    #[test]
    fn a_user_who_settles_stops_roaming() {
        let mut k = Known::default();
        for i in 0..40 {
            k.learn(&format!("203.0.113.{i}"));
        }
        assert!(k.roams(50.0));
        let mut settled_after = None;
        for i in 0..40 {
            k.learn("198.51.100.1");
            if settled_after.is_none() && !k.roams(50.0) {
                settled_after = Some(i + 1);
            }
        }
        // The first of the 40 is new (the churn ≈ 0.93), then 10 known ones.
        assert_eq!(settled_after, Some(11));
        assert!((0.0..=1.0).contains(&k.churn()));
    }
}
