//! Detectors: security and health findings computed incrementally, one event
//! at a time, in seq order (never by rescanning history).
//!
//! Owns the detectors' memory and thresholds. Never reads the log or the
//! indexes and never writes: `observe` returns findings, and the caller (the
//! feed) appends them. Time is the event time (`timestamp`, else
//! `received_at`), so backfilled activity is judged where it happened; windows
//! are aligned buckets, so events arriving out of order within a window still
//! count.
//!
//! | kind | subject | fires when | level |
//! |---|---|---|---|
//! | `failed_login_burst` | user, ip | ≥ `login_burst_count` failed authentications in one aligned `login_burst_window` | medium; high from 4× the count |
//! | `error_rate_spike` | system, action, tenant, process | in one aligned `spike_window`: ≥ `spike_min_errors` errors and an error rate ≥ `spike_factor` × the baseline (and ≥ baseline + 10 points) | low; medium from 2× the minimum; high from 4× with a rate ≥ 50 % |
//! | `new_ip` | user | a user with ≥ `new_ip_min_history` successful events acts from an IP (or a `metadata.country`) not among the 16 last seen for them, unless they roam (≥ `new_ip_roaming_percent` of their recent successful events came from an IP, or country, new to them: `intel::known`); at most one a user a UTC day | low; medium for a privilege change or a failed login |
//! | `privilege_change` | user | a privilege change (`classify::is_privilege_change`) | medium; high when it failed or is critical |
//! | `unusual_hour` | user | a user with ≥ `hour_min_history` events acts at an hour of day (UTC) whose three-hour neighbourhood (the hour before, it, the hour after) holds < `hour_share` of their history; at most one a user a UTC day | low |
//! | `slow_run`, `stuck_run` | process | raised by `intel::watch` from the run trackers, not here | |
//! | `api_abuse` | user (or ip) | ≥ `abuse_per_minute` requests of one actor in one minute of arrival (requests: distinct `received_at`, which the events of one request share) | medium; high from 4× |
//!
//! The baseline of a spike scope is the error rate of the closed buckets
//! before the current window, smoothed (EWMA, α = 0.1 per bucket); until a
//! scope has seen [`BASELINE_WARMUP`] buckets it is the default
//! [`BASELINE_DEFAULT`] (5 %).
//!
//! Invariants:
//! 1. At most one finding per tenant, kind, subject, window and level
//!    (`emitted`), so a window that keeps growing raises once, and again only
//!    if it escalates (low → medium → high); the finding's event id carries the
//!    same key (ids are unique per tenant), so a replay after a restart cannot
//!    store it twice either. The same subject in two tenants (a user id, an
//!    address, a process name) is two findings.
//! 2. Memory is bounded: every map is a [`Bounded`] with a cap in
//!    [`Limits`]; beyond it the least recently seen are forgotten (they are
//!    then judged as new: bursts restart, baselines warm up again).
//! 3. Stele's own events (findings, `audit_access`) are never observed.
//! 4. A finding never mixes tenants: users and IPs are tracked per tenant and
//!    their findings carry it, their queries too (`tenant=`, so they list
//!    that tenant's events only); spikes of the system, an action or a process
//!    span tenants and carry none (only keys for every tenant see them). A
//!    subject without a tenant (events posted without one) is one of its own,
//!    but its query has no tenant filter: `GET /v1/events` cannot ask for "no
//!    tenant" (as for a run without a tenant, `intel::watch`), so for a key
//!    that sees every tenant it lists the same user's or address's events in
//!    tenants too.

use super::bounded::Bounded;
use super::classify;
use super::finding::{q, Finding, FindingKey, Level, Subject};
use super::known::Known;
use crate::event::tenant_key;
use crate::event::{self, format_micros, StoredEvent};
use crate::query::event_time;
use serde_json::json;
use std::collections::VecDeque;

/// Every kind of finding the detectors raise.
pub const KINDS: [&str; 8] = [
    "failed_login_burst",
    "error_rate_spike",
    "new_ip",
    "privilege_change",
    "unusual_hour",
    "api_abuse",
    "slow_run",
    "stuck_run",
];

/// Closed buckets before a scope's own baseline replaces the default.
pub const BASELINE_WARMUP: u32 = 30;
/// The error rate assumed for a scope without enough history.
pub const BASELINE_DEFAULT: f64 = 0.05;
/// EWMA weight of one closed bucket in a baseline.
const BASELINE_ALPHA: f64 = 0.1;
/// Buckets of a spike window (`spike_window` / this = the bucket length).
const SPIKE_BUCKETS: i64 = 10;

/// The detectors' thresholds (configurable; these are the defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Failed authentications in one window that make a burst.
    pub login_burst_count: u64,
    /// The burst window, µs (10 minutes).
    pub login_burst_window: i64,
    /// Errors in one window below which no spike is raised.
    pub spike_min_errors: u64,
    /// How many times the baseline error rate a spike is.
    pub spike_factor: f64,
    /// The spike window, µs (10 minutes, in 10 buckets).
    pub spike_window: i64,
    /// Successful events of a user before a new IP is remarkable.
    pub new_ip_min_history: u64,
    /// The churn (percent of recent events not failed from a value new to the
    /// user, `intel::known`) from which a user roams and a new IP or country
    /// of theirs is not remarkable, at any level; 0 never roams.
    pub new_ip_roaming_percent: f64,
    /// Events of a user before an unusual hour is remarkable.
    pub hour_min_history: u64,
    /// The share of a user's history below which an hour is unusual.
    pub hour_share: f64,
    /// Requests of one actor in one minute that are abuse.
    pub abuse_per_minute: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            login_burst_count: 5,
            login_burst_window: 10 * 60 * 1_000_000,
            spike_min_errors: 20,
            spike_factor: 3.0,
            spike_window: 10 * 60 * 1_000_000,
            new_ip_min_history: 5,
            new_ip_roaming_percent: super::risk::ROAMING_PERCENT,
            hour_min_history: 50,
            hour_share: 0.02,
            abuse_per_minute: 600,
        }
    }
}

/// The bounds of the detectors' memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Users remembered (bursts, IPs, hours, request rates).
    pub users: usize,
    /// IPs remembered (bursts, request rates).
    pub ips: usize,
    /// Spike scopes remembered (actions, tenants, processes; the system is one).
    pub scopes: usize,
    /// Findings remembered for deduplication.
    pub emitted: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            users: 100_000,
            ips: 100_000,
            scopes: 10_000,
            emitted: 100_000,
        }
    }
}

/// Counts of one aligned window.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start: i64,
    count: u64,
}

impl Window {
    /// Counts one event at `t` in windows of `len`; returns the new count.
    fn add(&mut self, t: i64, len: i64) -> u64 {
        let start = t.div_euclid(len) * len;
        if start > self.start || self.count == 0 {
            *self = Window { start, count: 0 };
        } else if start < self.start {
            // An event of an older window: not counted against the current one.
            return 0;
        }
        self.count += 1;
        self.count
    }
}

/// A user's profile.
#[derive(Debug, Default)]
struct User {
    failures: Window,
    minute: Window,
    /// The `received_at` of its last event: events of one request share it.
    last_arrival: i64,
    /// Successful events seen.
    events: u64,
    /// The IPs and countries of its successful events (the 16 most recent
    /// each, and their churn).
    ips: Known,
    countries: Known,
    /// Events per hour of day (UTC).
    hours: [u32; 24],
}

/// An IP's profile.
#[derive(Debug, Default)]
struct Ip {
    failures: Window,
    minute: Window,
    /// The `received_at` of its last event: events of one request share it.
    last_arrival: i64,
}

/// The error-rate memory of one scope.
#[derive(Debug, Default)]
struct Rate {
    /// Buckets of the current window: (bucket start, events, errors), oldest first.
    buckets: VecDeque<(i64, u64, u64)>,
    baseline: f64,
    closed: u32,
}

impl Rate {
    fn baseline(&self) -> f64 {
        if self.closed < BASELINE_WARMUP {
            BASELINE_DEFAULT
        } else {
            self.baseline
        }
    }

    /// Counts an event in its bucket; returns the window's (events, errors)
    /// and the baseline before it, or `None` for an event older than the window.
    fn add(&mut self, t: i64, error: bool, bucket: i64) -> Option<(u64, u64, f64)> {
        let b = t.div_euclid(bucket) * bucket;
        let newest = self.buckets.back().map_or(i64::MIN, |x| x.0);
        if b > newest {
            // Close buckets that leave the window; empty buckets in between
            // count as quiet ones (a rate of 0 would skew: they are skipped).
            while let Some(&(start, n, e)) = self.buckets.front() {
                if start > b - SPIKE_BUCKETS * bucket {
                    break;
                }
                self.buckets.pop_front();
                if n > 0 {
                    let r = e as f64 / n as f64;
                    self.baseline = if self.closed == 0 {
                        r
                    } else {
                        self.baseline + BASELINE_ALPHA * (r - self.baseline)
                    };
                    self.closed += 1;
                }
            }
            self.buckets.push_back((b, 0, 0));
        }
        let slot = self.buckets.iter_mut().find(|x| x.0 == b)?;
        slot.1 += 1;
        slot.2 += u64::from(error);
        let (n, e) = self
            .buckets
            .iter()
            .fold((0, 0), |(n, e), x| (n + x.1, e + x.2));
        Some((n, e, self.baseline()))
    }
}

/// The detectors (see the module documentation).
#[derive(Debug)]
pub struct Detectors {
    th: Thresholds,
    /// By (tenant, user) ([`tenant_key`]): a tenant's users are its own
    /// (findings never mix tenants' evidence).
    users: Bounded<String, User>,
    /// By (tenant, IP) ([`tenant_key`]).
    ips: Bounded<String, Ip>,
    /// By (scope kind, scope) ([`tenant_key`] with the kind as tenant).
    rates: Bounded<String, Rate>,
    emitted: Bounded<FindingKey, bool>,
    /// The key of the latest lookup, built in place.
    key: String,
}

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 3_600_000_000;

impl Detectors {
    /// Detectors with these thresholds and bounds.
    pub fn new(th: Thresholds, limits: Limits) -> Detectors {
        Detectors {
            th,
            users: Bounded::new(limits.users),
            ips: Bounded::new(limits.ips),
            rates: Bounded::new(limits.scopes),
            emitted: Bounded::new(limits.emitted),
            key: String::new(),
        }
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.th
    }

    /// Puts new thresholds in force (SIGHUP); the memory is kept.
    pub fn set_thresholds(&mut self, th: Thresholds) {
        self.th = th;
    }

    /// How many users, IPs, scopes and remembered findings are held.
    pub fn tracked(&self) -> [usize; 4] {
        [
            self.users.len(),
            self.ips.len(),
            self.rates.len(),
            self.emitted.len(),
        ]
    }

    /// Remembers a finding already in the log (read back at start-up) so it
    /// is not raised again.
    pub fn remember(&mut self, key: FindingKey) {
        *self.emitted.entry(&key) = true;
    }

    /// Whether `f` is new (and remembers it): for findings raised outside
    /// `observe` (the runs' findings of `intel::watch`).
    pub fn fresh(&mut self, f: &Finding) -> bool {
        let seen = self.emitted.entry(&f.key());
        !std::mem::replace(seen, true)
    }

    /// Observes one stored event (in seq order); returns the findings it raises.
    pub fn observe(&mut self, e: &StoredEvent) -> Vec<Finding> {
        let own = e
            .provenance
            .as_ref()
            .is_some_and(|p| p.ingested_by == event::INGESTED_BY_STELE);
        if own {
            return Vec::new();
        }
        let mut out = Vec::new();
        let t = event_time(e);
        let ev = &e.event;
        let tenant = &ev.tenant;
        let user = classify::user_of(ev);
        let auth_failure = classify::is_auth_failure(ev);
        let error = classify::is_error(ev);
        let th = self.th.clone();

        // Failed-login bursts, per user and per IP.
        if auth_failure {
            let win = th.login_burst_window;
            let subjects = [
                user.map(|u| ("user", u)),
                ev.ip.as_deref().map(|i| ("ip", i)),
            ];
            for (kind, id) in subjects.into_iter().flatten() {
                tenant_key(&mut self.key, id, tenant.as_deref());
                let n = if kind == "user" {
                    self.users.entry(self.key.as_str()).failures.add(t, win)
                } else {
                    self.ips.entry(self.key.as_str()).failures.add(t, win)
                };
                if n >= th.login_burst_count {
                    let since = t.div_euclid(win) * win;
                    let field = if kind == "user" { "user_id" } else { "ip" };
                    let level = if n >= 4 * th.login_burst_count {
                        Level::High
                    } else {
                        Level::Medium
                    };
                    out.push(Finding {
                        kind: "failed_login_burst",
                        level,
                        subject: Subject {
                            kind,
                            id: id.to_owned(),
                        },
                        tenant: tenant.clone(),
                        since,
                        until: since + win,
                        evidence: json!({"count": n, "threshold": th.login_burst_count}),
                        summary: format!(
                            "{n} failed logins for {kind} {id} within {} minutes",
                            win / MINUTE
                        ),
                        recommendation: format!(
                            "Check whether {kind} {id} is under a password-guessing attack; lock \
                             the account or block the address if the attempts are not the owner's."
                        ),
                        // Every event of the subject in the window: the
                        // failures and what surrounded them.
                        query: format!(
                            "{}{field}={}&since={}&until={}",
                            in_tenant(tenant.as_deref()),
                            q(id),
                            q(&format_micros(since)),
                            q(&format_micros(since + win))
                        ),
                    });
                }
            }
        }

        // Error-rate spikes: the system, and per action, tenant and process.
        let bucket = (th.spike_window / SPIKE_BUCKETS).max(1);
        let scopes = [
            Some(("system", "all", "")),
            Some(("action", ev.action.as_str(), "action")),
            ev.tenant.as_deref().map(|t| ("tenant", t, "tenant")),
            ev.process_name
                .as_deref()
                .map(|p| ("process", p, "process_name")),
        ];
        for (kind, id, field) in scopes.into_iter().flatten() {
            tenant_key(&mut self.key, id, Some(kind));
            let Some((n, errors, baseline)) =
                self.rates.entry(self.key.as_str()).add(t, error, bucket)
            else {
                continue;
            };
            let rate = errors as f64 / n as f64;
            let spike = error
                && errors >= th.spike_min_errors
                && rate >= baseline * th.spike_factor
                && rate >= baseline + 0.10;
            if spike {
                let since = t.div_euclid(th.spike_window) * th.spike_window;
                let level = if errors >= 4 * th.spike_min_errors && rate >= 0.5 {
                    Level::High
                } else if errors >= 2 * th.spike_min_errors {
                    Level::Medium
                } else {
                    Level::Low
                };
                let filter = if field.is_empty() {
                    String::new()
                } else {
                    format!("{field}={}&", q(id))
                };
                out.push(Finding {
                    kind: "error_rate_spike",
                    level,
                    subject: Subject {
                        kind,
                        id: id.to_owned(),
                    },
                    tenant: if kind == "tenant" {
                        Some(id.to_owned())
                    } else {
                        None
                    },
                    since,
                    until: since + th.spike_window,
                    evidence: json!({
                        "errors": errors, "events": n, "rate": rate,
                        "baseline": baseline, "factor": th.spike_factor,
                        "min_errors": th.spike_min_errors,
                    }),
                    summary: format!(
                        "error rate of {kind} {id} at {:.0} % ({errors} of {n} events) against a \
                         baseline of {:.1} %",
                        rate * 100.0,
                        baseline * 100.0
                    ),
                    recommendation: format!(
                        "Look at the failing events of {kind} {id}: a release, an outage of a \
                         dependency or a misconfiguration usually starts such a spike."
                    ),
                    query: format!(
                        "{filter}status=failure&since={}&until={}",
                        q(&format_micros(since)),
                        q(&format_micros(since + th.spike_window))
                    ),
                });
            }
        }

        // Per-user profile: new IP or country, unusual hour, API abuse.
        if let Some(u) = user {
            let privilege = classify::is_privilege_change(ev);
            let country = country_of(ev);
            tenant_key(&mut self.key, u, tenant.as_deref());
            let profile = self.users.entry(self.key.as_str());
            let hour_of_day = (t.rem_euclid(24 * HOUR) / HOUR) as usize;
            let day = t.div_euclid(24 * HOUR) * 24 * HOUR;
            // New IP / country.
            let history = profile.events;
            let mut novel: Vec<(&'static str, String, &Known)> = Vec::new();
            let roams = |k: &Known| k.roams(th.new_ip_roaming_percent);
            if let Some(ip) = &ev.ip {
                if !profile.ips.contains(ip) && !roams(&profile.ips) {
                    novel.push(("ip", ip.clone(), &profile.ips));
                }
            }
            if let Some(c) = &country {
                if !profile.countries.contains(c) && !roams(&profile.countries) {
                    novel.push(("country", c.clone(), &profile.countries));
                }
            }
            if history >= th.new_ip_min_history {
                for (what, value, known) in &novel {
                    let level = if privilege || auth_failure {
                        Level::Medium
                    } else {
                        Level::Low
                    };
                    let field = if *what == "ip" { "ip" } else { "q" };
                    let filter = if *what == "ip" {
                        format!("ip={}", q(value))
                    } else {
                        format!("{field}={}", q(&format!("metadata.country:\"{value}\"")))
                    };
                    out.push(Finding {
                        kind: "new_ip",
                        level,
                        subject: Subject {
                            kind: "user",
                            id: u.to_owned(),
                        },
                        tenant: tenant.clone(),
                        since: day,
                        until: day + 24 * HOUR,
                        evidence: json!({"new": {"type": what, "value": value},
                                         "history": history,
                                         "known": known.len(),
                                         "churn_percent": (known.churn() * 1000.0).round() / 10.0}),
                        summary: format!("user {u} acted from a new {what} {value} after {history} events from known ones"),
                        recommendation: format!(
                            "Confirm with {u} that the activity from {value} is theirs; if not, \
                             revoke their sessions."
                        ),
                        query: format!(
                            "{}user_id={}&{filter}",
                            in_tenant(tenant.as_deref()),
                            q(u)
                        ),
                    });
                }
            }
            if !auth_failure && ev.status != Some(event::Status::Failure) {
                profile.events += 1;
                if let Some(ip) = &ev.ip {
                    profile.ips.learn(ip);
                }
                if let Some(c) = country {
                    profile.countries.learn(&c);
                }
            }
            // Unusual hour (judged before this event counts).
            let total: u64 = profile.hours.iter().map(|&h| u64::from(h)).sum();
            // The hour and its neighbours: a user active 08–17 is not unusual at
            // 17:30 because 17:00 happened to be quiet so far.
            let near: u32 = [23, 0, 1]
                .iter()
                .map(|d| profile.hours[(hour_of_day + d) % 24])
                .sum();
            let share = f64::from(near) / total.max(1) as f64;
            if total >= th.hour_min_history && share < th.hour_share {
                out.push(Finding {
                    kind: "unusual_hour",
                    level: Level::Low,
                    subject: Subject {
                        kind: "user",
                        id: u.to_owned(),
                    },
                    tenant: tenant.clone(),
                    since: day,
                    until: day + 24 * HOUR,
                    evidence: json!({"hour_utc": hour_of_day, "share": share,
                                     "history": total, "threshold": th.hour_share}),
                    summary: format!(
                        "user {u} acted at {hour_of_day:02}:00 UTC, an hour holding {:.1} % of \
                         their {total} events",
                        share * 100.0
                    ),
                    recommendation: format!(
                        "Check that {u}'s activity at this hour is expected (travel, on-call)."
                    ),
                    query: format!(
                        "{}user_id={}&since={}&until={}",
                        in_tenant(tenant.as_deref()),
                        q(u),
                        q(&format_micros(day)),
                        q(&format_micros(day + 24 * HOUR))
                    ),
                });
            }
            profile.hours[hour_of_day] = profile.hours[hour_of_day].saturating_add(1);
            // API abuse: one actor's requests per minute of arrival. The
            // events of one request share their `received_at`, so a batch
            // import counts once (requests merged into one group commit count
            // once too: the figure never overstates).
            if e.received_at != profile.last_arrival {
                profile.last_arrival = e.received_at;
                let n = profile.minute.add(e.received_at, MINUTE);
                if n >= th.abuse_per_minute {
                    out.push(abuse(
                        "user",
                        u,
                        "user_id",
                        n,
                        e.received_at,
                        &th,
                        tenant.clone(),
                    ));
                }
            }
            // A privilege change.
            if privilege {
                let failed = ev.status == Some(event::Status::Failure)
                    || ev.severity == Some(event::Severity::Critical);
                let since = t.div_euclid(10 * MINUTE) * 10 * MINUTE;
                out.push(Finding {
                    kind: "privilege_change",
                    level: if failed { Level::High } else { Level::Medium },
                    subject: Subject {
                        kind: "user",
                        id: u.to_owned(),
                    },
                    tenant: tenant.clone(),
                    since,
                    until: since + 10 * MINUTE,
                    evidence: json!({"action": ev.action, "seq": e.seq,
                                     "entity": ev.entity_id, "status": ev.status.map(|s| s.as_str())}),
                    summary: format!("user {u}: {} ({})", ev.action,
                                     ev.status.map_or("no status", |s| s.as_str())),
                    recommendation: "Confirm the change was approved; review who holds the \
                                     privilege now."
                        .into(),
                    query: format!(
                        "{}user_id={}&action={}&since={}&until={}",
                        in_tenant(tenant.as_deref()),
                        q(u),
                        q(&ev.action),
                        q(&format_micros(since)),
                        q(&format_micros(since + 10 * MINUTE))
                    ),
                });
            }
        } else if let Some(ip) = &ev.ip {
            tenant_key(&mut self.key, ip, tenant.as_deref());
            let p = self.ips.entry(self.key.as_str());
            if e.received_at != p.last_arrival {
                p.last_arrival = e.received_at;
                let n = p.minute.add(e.received_at, MINUTE);
                if n >= th.abuse_per_minute {
                    out.push(abuse("ip", ip, "ip", n, e.received_at, &th, tenant.clone()));
                }
            }
        }
        out.retain(|f| self.fresh(f));
        out
    }
}

fn abuse(
    kind: &'static str,
    id: &str,
    field: &str,
    n: u64,
    t: i64,
    th: &Thresholds,
    tenant: Option<String>,
) -> Finding {
    let since = t.div_euclid(MINUTE) * MINUTE;
    Finding {
        kind: "api_abuse",
        level: if n >= 4 * th.abuse_per_minute {
            Level::High
        } else {
            Level::Medium
        },
        subject: Subject {
            kind,
            id: id.to_owned(),
        },
        since,
        until: since + MINUTE,
        evidence: json!({"count": n, "threshold": th.abuse_per_minute, "per": "minute"}),
        summary: format!("{n} events from {kind} {id} within one minute"),
        recommendation: format!(
            "Check whether {kind} {id} is a runaway client or a scraper; rate-limit its key."
        ),
        query: format!(
            "{}{field}={}&since={}&until={}",
            in_tenant(tenant.as_deref()),
            q(id),
            q(&format_micros(since)),
            q(&format_micros(since + MINUTE))
        ),
        tenant,
    }
}

/// The tenant filter of a per-tenant subject's query (`tenant={t}&`), so that
/// it lists that tenant's events only: the same user id or address in
/// another tenant is another subject. Nothing for a subject without a tenant:
/// `GET /v1/events` has no filter for "no tenant" (module documentation).
fn in_tenant(tenant: Option<&str>) -> String {
    tenant.map_or_else(String::new, |t| format!("tenant={}&", q(t)))
}

/// `metadata.country` (or `metadata.geo.country`), when posted as a string.
fn country_of(ev: &event::Event) -> Option<String> {
    let m = ev.metadata.as_deref()?;
    if !m.contains("\"country\"") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(m).ok()?;
    v.get("country")
        .or_else(|| v.get("geo").and_then(|g| g.get("country")))
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty() && c.len() <= 64)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
