//! Risk scores for events posted without one: documented rules over the event
//! and a small memory of recent activity, applied at ingest.
//!
//! Owns the rule table ([`RULES`]) and the state the rules read ([`RiskState`]:
//! recent failed authentications per user (in its tenant) and per IP, the IPs
//! each user was seen from and their churn). Never touches an event that has a `risk_score`: posted scores
//! are kept as posted. An event it scores gets `risk_score` (0–100) and
//! `risk_rules` (the rules that fired, possibly none), which marks the score
//! as computed in the log, the JSON view, CSV and filters (`risk_rules=new_ip`).
//!
//! | rule | fires when | points |
//! |---|---|---|
//! | `failed_auth` | a failed authentication (`intel::classify::is_auth_failure`) | 30 |
//! | `auth_burst` | the [`BURST_COUNT`]th or later failed authentication of the same user or IP within [`BURST_WINDOW_MICROS`] | 30 |
//! | `privilege_change` | a privilege change (`classify::is_privilege_change`) | 25 |
//! | `new_ip` | a user already seen from other IPs acts from one not among them, unless the user roams (a churn of at least [`ROAMING_PERCENT`] %: recent events not failed came from an IP new to them, `intel::known`; fixed, not `[detect] new_ip_roaming_percent`) | 20 |
//! | `failure` | `status=failure` (not an authentication) | 10 |
//! | `off_hours` | the event time is from 22:00 to 05:59 UTC | 10 |
//! | `severity` | severity `critical` 30, `error` 15, `warning` 5 | 5–30 |
//!
//! The score is the sum, at most 100. Levels (filters and statistics): low 0–30,
//! medium 31–70, high 71–100.
//!
//! Invariants:
//! 1. Memory is bounded: at most [`USERS_MAX`] users and [`IPS_MAX`] IPs are
//!    remembered (the least recently seen are forgotten first: a forgotten user's
//!    next IP is not "new", a forgotten burst starts again), and at most
//!    [`KNOWN_MAX`] IPs per user.
//! 2. The state learns from every event it is shown, in ingest order; it starts
//!    empty at each start of the daemon (a restart forgets recent bursts, known
//!    IPs and their churn: the rules then fire less, except `new_ip` for a user
//!    who roamed, whose churn starts again at 0: at most 10 of their next events
//!    from new IPs score it before they roam again).
//! 4. A user is a user of one tenant: the same `user_id` in two tenants has
//!    two memories, so one tenant's events never make another's user roam or
//!    burst.
//! 3. The same posted content scores the same in one state: scoring is a pure
//!    function of the event, its time and the state (idempotent retries compare
//!    the event as posted, see `crate::ingest`).

use super::classify;
use super::known::Known;
pub use super::known::KNOWN_MAX;
use crate::event::tenant_key;
use crate::event::{Event, Severity, Status};
use std::collections::VecDeque;

/// Failed authentications of one user or IP, within [`BURST_WINDOW_MICROS`], that
/// make a burst.
pub const BURST_COUNT: usize = 5;
/// The window of a burst: 10 minutes.
pub const BURST_WINDOW_MICROS: i64 = 10 * 60 * 1_000_000;
/// Users remembered (known IPs, recent failures).
pub const USERS_MAX: usize = 100_000;
/// IPs remembered (recent failures).
pub const IPS_MAX: usize = 100_000;
/// The churn (percent) from which a user roams and a new IP of theirs scores
/// nothing: the detectors' default `new_ip_roaming_percent`.
pub const ROAMING_PERCENT: f64 = 50.0;

/// The rules, with their points (see the module documentation).
pub const RULES: &[(&str, u8)] = &[
    ("failed_auth", 30),
    ("auth_burst", 30),
    ("privilege_change", 25),
    ("new_ip", 20),
    ("failure", 10),
    ("off_hours", 10),
    ("severity", 30),
];

fn points(rule: &str) -> u32 {
    RULES
        .iter()
        .find(|(name, _)| *name == rule)
        .map_or(0, |(_, p)| u32::from(*p))
}

/// What the rules remember of one user or IP.
#[derive(Debug, Default)]
struct Seen {
    /// Times of recent failed authentications (at most [`BURST_COUNT`]).
    failures: VecDeque<i64>,
    /// IPs the user acted from successfully (users only).
    ips: Known,
}

type Bounded<K> = super::bounded::Bounded<K, Seen>;

/// The memory of the rules. See the module documentation.
#[derive(Debug)]
pub struct RiskState {
    /// Per (tenant, user) ([`tenant_key`]): the same user id in two tenants
    /// is two users.
    users: Bounded<String>,
    ips: Bounded<String>,
    /// The key of the latest user lookup, built in place.
    key: String,
}

impl Default for RiskState {
    fn default() -> Self {
        RiskState::new(USERS_MAX, IPS_MAX)
    }
}

/// Records a failed authentication at `t` and says whether it completes a burst.
fn burst(seen: &mut Seen, t: i64) -> bool {
    seen.failures
        .retain(|&f| t - f < BURST_WINDOW_MICROS && f <= t);
    seen.failures.push_back(t);
    while seen.failures.len() > BURST_COUNT {
        seen.failures.pop_front();
    }
    seen.failures.len() >= BURST_COUNT
}

impl RiskState {
    /// A state remembering at most `users` users and `ips` IPs.
    pub fn new(users: usize, ips: usize) -> RiskState {
        RiskState {
            users: Bounded::new(users),
            ips: Bounded::new(ips),
            key: String::new(),
        }
    }

    /// How many users and IPs are remembered.
    pub fn tracked(&self) -> (usize, usize) {
        (self.users.len(), self.ips.len())
    }

    /// Scores every event of `events` that has no `risk_score` (learning from all
    /// of them, in order). `now` (unix µs) is the time of events without a
    /// `timestamp`.
    pub fn assess(&mut self, events: &mut [Event], now: i64) {
        for ev in events {
            let rules = self.learn(ev, now);
            if ev.risk_score.is_none() {
                let score: u32 = rules.iter().map(|(_, p)| p).sum();
                ev.risk_score = Some(score.min(100) as u8);
                ev.risk_rules = Some(rules.into_iter().map(|(r, _)| r.to_owned()).collect());
            }
        }
    }

    /// Updates the memory with `ev` and returns the rules it fires, with points.
    fn learn(&mut self, ev: &Event, now: i64) -> Vec<(&'static str, u32)> {
        let t = ev.timestamp.unwrap_or(now);
        let mut fired: Vec<(&'static str, u32)> = Vec::new();
        let auth_failure = classify::is_auth_failure(ev);
        let user = classify::user_of(ev);
        if let Some(u) = user {
            tenant_key(&mut self.key, u, ev.tenant.as_deref());
        }
        if auth_failure {
            fired.push(("failed_auth", points("failed_auth")));
            let by_user = user.is_some() && burst(self.users.entry(self.key.as_str()), t);
            let by_ip = ev
                .ip
                .as_deref()
                .is_some_and(|ip| burst(self.ips.entry(ip), t));
            if by_user || by_ip {
                fired.push(("auth_burst", points("auth_burst")));
            }
        }
        if classify::is_privilege_change(ev) {
            fired.push(("privilege_change", points("privilege_change")));
        }
        if let (Some(_), Some(ip)) = (user, ev.ip.as_deref()) {
            // Only a successful action teaches a user's IPs: failed logins from
            // anywhere must not make an attacker's address "known".
            let seen = self.users.entry(self.key.as_str());
            if !seen.ips.contains(ip) && !seen.ips.is_empty() && !seen.ips.roams(ROAMING_PERCENT) {
                fired.push(("new_ip", points("new_ip")));
            }
            if !auth_failure && ev.status != Some(Status::Failure) {
                seen.ips.learn(ip);
            }
        }
        if !auth_failure && ev.status == Some(Status::Failure) {
            fired.push(("failure", points("failure")));
        }
        let hour = t.rem_euclid(86_400_000_000) / 3_600_000_000;
        if !(6..22).contains(&hour) {
            fired.push(("off_hours", points("off_hours")));
        }
        let severity = match ev.severity {
            Some(Severity::Critical) => 30,
            Some(Severity::Error) => 15,
            Some(Severity::Warning) => 5,
            _ => 0,
        };
        if severity > 0 {
            fired.push(("severity", severity));
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T12:00:00Z: inside working hours.
    const NOON: i64 = 1_796_299_200_000_000;

    fn ev(action: &str, user: &str, ip: &str, t: i64) -> Event {
        Event {
            action: action.into(),
            user_id: Some(user.into()),
            ip: Some(ip.into()),
            timestamp: Some(t),
            ..Event::default()
        }
    }

    fn score(state: &mut RiskState, e: Event) -> (u8, Vec<String>) {
        let mut v = [e];
        state.assess(&mut v, NOON);
        let [e] = v;
        (e.risk_score.unwrap(), e.risk_rules.unwrap_or_default())
    }

    #[test]
    fn posted_scores_are_kept_and_quiet_events_score_zero() {
        let mut s = RiskState::default();
        let mut posted = ev("login_failed", "u", "10.0.0.1", NOON);
        posted.risk_score = Some(3);
        let mut v = [posted];
        s.assess(&mut v, NOON);
        assert_eq!(v[0].risk_score, Some(3));
        assert_eq!(v[0].risk_rules, None);
        assert_eq!(
            score(&mut s, ev("view", "w", "10.0.0.9", NOON)),
            (0, vec![])
        );
    }

    #[test]
    fn a_burst_of_failed_logins_scores_higher_from_the_fifth_on() {
        let mut s = RiskState::default();
        for i in 0..BURST_COUNT as i64 {
            let (points, rules) =
                score(&mut s, ev("login_failed", "eve", "198.51.100.7", NOON + i));
            if (i as usize) < BURST_COUNT - 1 {
                assert_eq!((points, rules.len()), (30, 1), "{i}");
            } else {
                assert_eq!(points, 60);
                assert_eq!(rules, ["failed_auth", "auth_burst"]);
            }
        }
        // Past the window, a new failure is not a burst.
        let (points, _) = score(
            &mut s,
            ev(
                "login_failed",
                "eve",
                "198.51.100.8",
                NOON + BURST_WINDOW_MICROS * 2,
            ),
        );
        assert_eq!(points, 30);
    }

    #[test]
    fn a_new_ip_off_hours_privilege_change_adds_up_and_caps_at_100() {
        let mut s = RiskState::default();
        assert_eq!(score(&mut s, ev("view", "ann", "10.0.0.1", NOON)).0, 0);
        // A failed login from elsewhere does not teach the IP.
        score(&mut s, ev("login_failed", "ann", "203.0.113.5", NOON + 1));
        let night = NOON + 13 * 3_600_000_000; // 01:00 UTC the next day
        let mut e = ev("role_granted", "ann", "203.0.113.5", night);
        e.severity = Some(Severity::Critical);
        let (points, rules) = score(&mut s, e);
        assert_eq!(
            rules,
            ["privilege_change", "new_ip", "off_hours", "severity"]
        );
        assert_eq!(points, 85);
        let mut e = ev("admin_login", "ann", "203.0.113.9", night);
        e.status = Some(Status::Failure);
        e.severity = Some(Severity::Critical);
        assert_eq!(score(&mut s, e).0, 100);
    }

    #[test]
    fn a_user_who_acts_from_a_new_ip_every_time_stops_scoring_new_ip_once_they_roam() {
        let mut s = RiskState::default();
        let fired: Vec<bool> = (0..200)
            .map(|i| {
                let ip = format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256);
                let (_, rules) = score(&mut s, ev("view", "rover", &ip, NOON + i));
                rules.contains(&"new_ip".to_owned())
            })
            .collect();
        // The first event has nothing known; from the 12th on (11 new IPs in a
        // row) the user roams.
        let count = fired.iter().filter(|f| **f).count();
        assert_eq!(count, 10, "{fired:?}");
        assert!(fired[1..=10].iter().all(|f| *f) && !fired[11..].iter().any(|f| *f));
        // A user with usual addresses still scores a new one.
        for i in 0..50 {
            score(
                &mut s,
                ev("view", "desk", ["10.9.0.1", "10.9.0.2"][i % 2], NOON),
            );
        }
        let (_, rules) = score(&mut s, ev("view", "desk", "203.0.113.77", NOON));
        assert_eq!(rules, ["new_ip"]);
    }

    /// Failed events never teach: failed logins from many addresses make
    /// neither the addresses known nor the user roam; and a user of one tenant
    /// is not the same id in another.
    #[test]
    fn failed_events_and_other_tenants_never_make_a_user_roam() {
        let mut s = RiskState::default();
        score(&mut s, ev("view", "alice", "10.0.0.1", NOON));
        for i in 0..30 {
            let ip = format!("203.0.113.{i}");
            score(&mut s, ev("login_failed", "alice", &ip, NOON + 1 + i));
            let mut e = ev("export", "alice", &format!("198.18.0.{i}"), NOON + 100 + i);
            e.status = Some(Status::Failure);
            score(&mut s, e);
            // Another tenant's alice, acting from everywhere.
            let mut other = ev("view", "alice", &format!("198.51.100.{i}"), NOON + 200 + i);
            other.tenant = Some("globex".into());
            score(&mut s, other);
        }
        let (_, rules) = score(&mut s, ev("view", "alice", "192.0.2.1", NOON + 300));
        assert_eq!(rules, ["new_ip"]);
        let mut other = ev("view", "alice", "192.0.2.2", NOON + 301);
        other.tenant = Some("globex".into());
        assert!(score(&mut s, other).1.is_empty(), "globex's alice roams");
    }

    #[test]
    fn memory_stays_within_its_bounds() {
        let mut s = RiskState::new(100, 50);
        for i in 0..10_000 {
            score(
                &mut s,
                ev(
                    "login_failed",
                    &format!("u{i}"),
                    &format!("10.0.{}.{}", i / 250, i % 250),
                    NOON,
                ),
            );
        }
        let (users, ips) = s.tracked();
        assert!(users <= 100 && ips <= 50, "{users} {ips}");
        let mut one = RiskState::default();
        for i in 0..100 {
            score(&mut one, ev("view", "u", &format!("10.1.0.{i}"), NOON));
        }
        let mut u = String::new();
        tenant_key(&mut u, "u", None);
        assert!(one.users.get(u.as_str()).unwrap().ips.len() <= KNOWN_MAX);
    }
}
