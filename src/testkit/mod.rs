//! Deterministic, realistic audit events for tests, benchmarks and the load generator.
//!
//! [`EventGen`] is a seeded generator: the same seed always yields the same events, on
//! every platform. Events look like what a SaaS product would post (logins, invoice
//! updates, exports, permission changes…), with a realistic skew of statuses and
//! severities, and `description` text taken from real system logs (the loghub samples
//! in `tests/corpus/loghub/`, compiled into the binary).
//!
//! Every generated event is valid: [`parse_event`](crate::event::parse_event) accepts [`EventGen::json`] and
//! [`event_to_json`] of any generated event, and yields the same [`Event`] back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{json, Map, Value};

use crate::event::{
    canonical_json, encoded_len, Change, Event, Severity, Source, Status, CHANGES_COUNT_MAX,
    CHANGE_VALUE_BYTES_MAX, DESCRIPTION_BYTES_MAX, EVENT_BYTES_MAX,
};

mod vocab;

pub use vocab::corpus_lines;
use vocab::*;

/// `2026-01-01T00:00:00Z` in unix microseconds: the default base time of [`EventGen`].
pub const DEFAULT_BASE_TIME: i64 = 1_767_225_600_000_000;

/// A deterministic generator of realistic audit events.
///
/// Uses an inline splitmix64 PRNG, so output depends only on the seed, the base time
/// and the sequence of calls.
#[derive(Debug, Clone)]
pub struct EventGen {
    /// PRNG state.
    state: u64,
    /// Event time of the most recent event, in unix microseconds.
    clock: i64,
}

impl EventGen {
    /// A generator seeded with `seed`, with event times starting at [`DEFAULT_BASE_TIME`].
    pub fn new(seed: u64) -> Self {
        EventGen {
            state: seed,
            clock: DEFAULT_BASE_TIME,
        }
    }

    /// Sets the base time (unix microseconds): event times start there and move forward
    /// by up to 1.5 s per event.
    #[must_use]
    pub fn with_base_time(mut self, micros: i64) -> Self {
        self.clock = micros;
        self
    }

    /// The next raw 64-bit output of the PRNG (splitmix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` if `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A uniformly chosen element of a non-empty list.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        // `below(len) < len`, so the index is in bounds for non-empty lists.
        items[self.below(items.len() as u64) as usize]
    }

    /// An element chosen by weight.
    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u64 = items.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut roll = self.below(total);
        for &(item, weight) in items {
            if roll < u64::from(weight) {
                return item;
            }
            roll -= u64::from(weight);
        }
        items[items.len() - 1].0
    }

    /// `n` random lower-case hex digits.
    fn hex(&mut self, n: usize) -> String {
        let mut out = String::with_capacity(n + 16);
        while out.len() < n {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(n);
        out
    }

    /// A random line of real log text.
    pub fn corpus_line(&mut self) -> &'static str {
        self.pick(corpus_lines())
    }

    /// Exactly `len` bytes of real log text: whole lines joined by `\n`, the last one cut.
    fn corpus_text(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len + 1024);
        while out.len() < len {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(self.corpus_line());
        }
        truncate_at_char(&mut out, len);
        out
    }

    /// The next event. Always valid for [`parse_event`](crate::event::parse_event); `id` is always set (a UUID v7
    /// derived from the event time, or occasionally a client-style `evt_…` id).
    pub fn next_event(&mut self) -> Event {
        self.clock = self.clock.saturating_add(1 + self.below(1_500_000) as i64);
        let time = self.clock;
        let action = self.weighted(ACTIONS);
        let auth = matches!(
            action,
            "login" | "logout" | "login_failed" | "password_reset" | "mfa_enroll"
        );

        let mut ev = Event {
            id: self.id(time),
            timestamp: self.chance(95).then_some(time),
            action: action.to_owned(),
            ..Event::default()
        };
        let tenant = self.pick(TENANTS);
        if self.chance(95) {
            ev.tenant = Some(tenant.to_owned());
        }

        // Who did it.
        let source = if auth {
            Source::User
        } else {
            self.weighted(&[
                (Source::User, 75),
                (Source::System, 12),
                (Source::Integration, 9),
                (Source::Scheduled, 4),
            ])
        };
        if self.chance(90) {
            ev.source = Some(source);
        }
        let user = self.range(1, 400);
        let (first, last) = user_name(user);
        match source {
            Source::User => {
                ev.user_id = Some(format!("u-{user}"));
                ev.user_name = self.chance(85).then(|| format!("{first} {last}"));
                ev.actor = Some(email(first, last, tenant));
                ev.session_id = (action != "login_failed" && self.chance(80))
                    .then(|| format!("sess_{}", self.hex(20)));
                ev.ip = self.chance(92).then(|| self.ip().to_string());
                ev.user_agent = self.chance(85).then(|| self.pick(USER_AGENTS).to_owned());
            }
            Source::System => ev.actor = Some(self.pick(SERVICES).to_owned()),
            Source::Integration => {
                ev.actor = Some(self.pick(INTEGRATIONS).to_owned());
                ev.ip = self.chance(60).then(|| self.ip().to_string());
                ev.user_agent = self.chance(50).then(|| self.pick(USER_AGENTS).to_owned());
            }
            Source::Scheduled => ev.actor = Some(self.pick(SCHEDULES).to_owned()),
        }
        if self.chance(70) {
            ev.correlation_id = Some(format!("req-{}", self.hex(16)));
        }

        // What it was done to.
        let entity_type = if auth || action == "permission_change" {
            "user"
        } else if action.starts_with("api_key") {
            "api_key"
        } else {
            self.pick(ENTITY_TYPES)
        };
        let entity_num = if entity_type == "user" {
            user
        } else {
            self.range(1, 99_999)
        };
        if self.chance(95) {
            ev.entity_type = Some(entity_type.to_owned());
            ev.entity_id = Some(entity_num.to_string());
            ev.entity_name = self.entity_name(entity_type, entity_num);
        }
        if self.chance(85) {
            ev.category = Some(category(action, entity_type).to_owned());
        }

        // Outcome.
        let status = if action == "login_failed" {
            Status::Failure
        } else {
            self.weighted(&[
                (Status::Success, 90),
                (Status::Failure, 5),
                (Status::Pending, 2),
                (Status::Partial, 2),
                (Status::Canceled, 1),
            ])
        };
        if self.chance(92) {
            ev.status = Some(status);
        }
        let severity = match (action, status) {
            ("login_failed", _) => Severity::Warning,
            (_, Status::Failure) => {
                if self.chance(5) {
                    Severity::Critical
                } else {
                    Severity::Error
                }
            }
            ("delete" | "permission_change" | "api_key_create" | "api_key_revoke", _) => {
                Severity::Notice
            }
            _ => self.weighted(&[
                (Severity::Info, 80),
                (Severity::Debug, 10),
                (Severity::Notice, 7),
                (Severity::Warning, 3),
            ]),
        };
        if self.chance(90) {
            ev.severity = Some(severity);
        }
        if self.chance(35) {
            let score = match action {
                "login_failed" => self.range(40, 95),
                "permission_change" | "password_reset" | "api_key_create" => self.range(30, 80),
                "export" | "delete" => self.range(10, 60),
                _ => self.range(0, 30),
            };
            ev.risk_score = u8::try_from(score).ok();
        }
        if self.chance(60) {
            ev.duration_ms = Some(match action {
                "export" => self.range(400, 60_000),
                "login" | "login_failed" => self.range(80, 900),
                _ => {
                    if self.chance(90) {
                        self.range(1, 250)
                    } else {
                        self.range(250, 5_000)
                    }
                }
            });
        }
        if self.chance(85) {
            let mut text = self.corpus_line().to_owned();
            if self.chance(10) {
                text.push('\n');
                text.push_str(self.corpus_line());
            }
            ev.description = Some(text);
        }
        ev.changes = self.changes(action);
        if self.chance(45) {
            ev.metadata = Some(canonical_json(&self.metadata(action)));
        }
        ev
    }

    /// The next event in the posted JSON form ([`event_to_json`] of [`Self::next_event`]).
    pub fn json(&mut self) -> Value {
        event_to_json(&self.next_event())
    }

    /// An event whose bincode encoding is about `target_bytes` long (within ±10% for
    /// targets from about 150 bytes up to [`EVENT_BYTES_MAX`]; larger targets are
    /// clamped to it, smaller ones get the smallest event this generator can make).
    ///
    /// Starts from [`Self::next_event`], drops optional fields if that is already too
    /// big, then fills `description` with real log lines, and beyond the description
    /// limit adds `changes` carrying more log text. The result is always valid.
    pub fn sized(&mut self, target_bytes: usize) -> Event {
        let target = target_bytes.min(EVENT_BYTES_MAX);
        let mut ev = self.next_event();
        ev.description = None;
        shed_to(&mut ev, target);

        // Fill the description.
        let base = encoded_len(&ev);
        if base + 2 <= target {
            let text = self.corpus_text((target - base).min(DESCRIPTION_BYTES_MAX));
            set_fitting(&mut ev, target, text, |ev, text| {
                ev.description = Some(text)
            });
        }

        // Beyond the description limit: more text in changes.
        let mut n = 0;
        while ev.changes.len() < CHANGES_COUNT_MAX {
            let len = encoded_len(&ev);
            // Field name + two option tags + length prefix + quotes ≈ 32 bytes.
            if len + 64 > target {
                break;
            }
            let room = (target - len - 32).min(CHANGE_VALUE_BYTES_MAX - 2);
            let text: String = self
                .corpus_text(room)
                .chars()
                .map(|c| match c {
                    // Keep JSON escaping from growing the value.
                    '"' => '\'',
                    '\\' => '/',
                    c if c.is_control() => ' ',
                    c => c,
                })
                .collect();
            ev.changes.push(Change {
                field: format!("attachment_{n}.text"),
                old: None,
                new: None,
            });
            set_fitting(&mut ev, target, text, |ev, text| {
                if let Some(change) = ev.changes.last_mut() {
                    change.new = Some(canonical_json(&Value::String(text)));
                }
            });
            n += 1;
        }
        ev
    }

    /// A UUID v7 for `time`, or (5%) a client-style id.
    fn id(&mut self, time: i64) -> String {
        if self.chance(5) {
            return format!("evt_{}", self.hex(24));
        }
        let millis = u64::try_from(time.max(0) / 1000).unwrap_or(0);
        let random = self.next_u64().to_le_bytes();
        let more = self.next_u64().to_le_bytes();
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&random);
        bytes[8..].copy_from_slice(&more[..2]);
        uuid::Builder::from_unix_timestamp_millis(millis, &bytes)
            .into_uuid()
            .to_string()
    }

    /// A client address: mostly IPv4 from a few typical ranges, some IPv6.
    fn ip(&mut self) -> IpAddr {
        let octet = |g: &mut Self| g.below(256) as u8;
        match self.below(100) {
            0..=29 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, octet(self))),
            30..=49 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, octet(self))),
            50..=64 => IpAddr::V4(Ipv4Addr::new(10, octet(self), octet(self), octet(self))),
            65..=74 => IpAddr::V4(Ipv4Addr::new(192, 168, octet(self), octet(self))),
            75..=84 => IpAddr::V4(Ipv4Addr::new(
                self.range(1, 223) as u8,
                octet(self),
                octet(self),
                octet(self),
            )),
            _ => {
                let seg = |g: &mut Self| g.below(0x1_0000) as u16;
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0x0db8,
                    seg(self),
                    seg(self),
                    0,
                    0,
                    if self.chance(50) { 0 } else { seg(self) },
                    seg(self),
                ))
            }
        }
    }

    /// A human-readable name for an entity, if this kind usually has one.
    fn entity_name(&mut self, entity_type: &str, num: u64) -> Option<String> {
        Some(match entity_type {
            "order" => format!("Order #{num}"),
            "invoice" => format!("INV-2026-{num:05}"),
            "user" => {
                let (first, last) = user_name(num);
                format!("{first} {last}")
            }
            "document" => self.pick(DOCUMENTS).to_owned(),
            "project" => self.pick(PROJECTS).to_owned(),
            "customer" => self.pick(COMPANIES).to_owned(),
            "subscription" => format!(
                "{} plan",
                self.pick(&["Starter", "Team", "Business", "Enterprise"])
            ),
            "report" => format!("Monthly usage {}", self.pick(&["Jan", "Feb", "Mar", "Apr"])),
            "ticket" => format!(
                "SUP-{num}: {}",
                self.pick(&[
                    "Cannot log in",
                    "Invoice wrong",
                    "Export stuck",
                    "SSO setup"
                ])
            ),
            "dashboard" => format!("{} overview", self.pick(&["Sales", "Ops", "Finance"])),
            _ => return None,
        })
    }

    /// 0–3 changes fitting the action.
    fn changes(&mut self, action: &str) -> Vec<Change> {
        let count = match action {
            "update" => self.range(1, 3),
            "create" => self.range(0, 2),
            "delete" | "approve" => self.range(0, 1),
            "permission_change" | "password_reset" | "mfa_enroll" => 1,
            _ => 0,
        };
        (0..count).map(|i| self.change(action, i)).collect()
    }

    /// One change; `old` is absent for creations and `new` for deletions.
    fn change(&mut self, action: &str, index: u64) -> Change {
        let (field, old, new) = match action {
            "permission_change" => {
                let old = self.pick(ROLES);
                let new = self.pick(ROLES);
                ("role", json!(old), json!(new))
            }
            "password_reset" => (
                "password_changed_at",
                Value::Null,
                json!("2026-01-01T00:00:00Z"),
            ),
            "mfa_enroll" => ("mfa_enabled", json!(false), json!(true)),
            "approve" => ("approval_state", json!("pending"), json!("approved")),
            _ => match (self.below(7) + index) % 7 {
                0 => {
                    let old = self.pick(ORDER_STATES);
                    let new = self.pick(ORDER_STATES);
                    ("status", json!(old), json!(new))
                }
                1 => {
                    let cents = self.range(500, 500_000);
                    let delta = self.range(1, 10_000);
                    (
                        "amount",
                        json!(cents as f64 / 100.0),
                        json!((cents + delta) as f64 / 100.0),
                    )
                }
                2 => {
                    let q = self.range(1, 50);
                    ("quantity", json!(q), json!(q + self.range(1, 5)))
                }
                3 => ("archived", json!(false), json!(true)),
                4 => {
                    let (a, b) = (self.pick(CITIES), self.pick(CITIES));
                    (
                        "shipping_address",
                        json!({"city": a.0, "postal_code": a.1, "country": "DE"}),
                        json!({"city": b.0, "postal_code": b.1, "country": "DE"}),
                    )
                }
                5 => (
                    "tags",
                    json!(["customer", "priority"]),
                    json!([
                        "customer",
                        "priority",
                        self.pick(&["vip", "churn-risk", "q3"])
                    ]),
                ),
                _ => {
                    let (first, last) = user_name(self.range(1, 400));
                    (
                        "owner",
                        json!(format!("u-{}", self.range(1, 400))),
                        json!(email(first, last, "acme")),
                    )
                }
            },
        };
        let encode = |v: Value| (!v.is_null()).then(|| canonical_json(&v));
        Change {
            field: field.to_owned(),
            old: if action == "create" {
                None
            } else {
                encode(old)
            },
            new: if action == "delete" {
                None
            } else {
                encode(new)
            },
        }
    }

    /// A metadata object with a random subset of typical keys.
    fn metadata(&mut self, action: &str) -> Value {
        let mut m = Map::new();
        if self.chance(60) {
            m.insert("region".into(), json!(self.pick(REGIONS)));
        }
        if self.chance(50) {
            let version = format!("4.{}.{}", self.range(0, 20), self.range(0, 9));
            m.insert("app_version".into(), json!(version));
        }
        if action.starts_with("login") || self.chance(20) {
            m.insert("mfa".into(), json!(self.chance(70)));
        }
        if action == "login_failed" {
            let reason = self.pick(&["bad_password", "unknown_user", "locked", "mfa_timeout"]);
            m.insert("reason".into(), json!(reason));
            m.insert("attempt".into(), json!(self.range(1, 8)));
        }
        if action == "export" {
            let format = self.pick(&["csv", "xlsx", "json", "pdf"]);
            m.insert("format".into(), json!(format));
            m.insert("rows".into(), json!(self.range(1, 250_000)));
        }
        if self.chance(25) {
            let build = self.range(1_000, 9_999);
            let client = self.pick(&["web", "ios", "android", "cli"]);
            m.insert("client".into(), json!({"name": client, "build": build}));
        }
        if self.chance(15) {
            m.insert("tags".into(), json!(["audit", self.pick(TENANTS)]));
        }
        if m.is_empty() {
            m.insert("trace_id".into(), json!(self.hex(32)));
        }
        Value::Object(m)
    }
}

/// The posted JSON form of `ev` (what a client sends; no `seq`/`received_at`), equal
/// to its `Serialize` output. [`parse_event`](crate::event::parse_event) turns it back into an equal `Event`.
///
/// # Panics
///
/// If `ev.metadata` or a change value is not valid JSON text, which cannot happen for
/// events from [`parse_event`](crate::event::parse_event), [`EventGen`] or a successful decode of valid data.
pub fn event_to_json(ev: &Event) -> Value {
    match serde_json::to_value(ev) {
        Ok(v) => v,
        Err(err) => panic!("event {} holds invalid JSON text: {err}", ev.id),
    }
}

/// A stable first/last name for user number `n`.
fn user_name(n: u64) -> (&'static str, &'static str) {
    let first = FIRST_NAMES[(n % FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[((n / FIRST_NAMES.len() as u64) % LAST_NAMES.len() as u64) as usize];
    (first, last)
}

/// A login e-mail address for a user of `tenant` (ASCII only).
fn email(first: &str, last: &str, tenant: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter_map(|c| match c {
                'a'..='z' | 'A'..='Z' => Some(c.to_ascii_lowercase()),
                'é' | 'ë' => Some('e'),
                'ü' => Some('u'),
                'ø' => Some('o'),
                _ => None,
            })
            .collect()
    };
    format!("{}.{}@{tenant}.example", clean(first), clean(last))
}

/// The category an action and entity type usually belong to.
fn category(action: &str, entity_type: &str) -> &'static str {
    match action {
        "login" | "logout" | "login_failed" | "password_reset" | "mfa_enroll" => "auth",
        "permission_change" | "api_key_create" | "api_key_revoke" => "access_control",
        "export" | "download" => "data_export",
        _ => match entity_type {
            "invoice" | "payment" | "subscription" => "billing",
            "order" | "customer" => "sales",
            "ticket" => "support",
            _ => "content",
        },
    }
}

/// Cuts `s` to at most `len` bytes, on a char boundary.
fn truncate_at_char(s: &mut String, len: usize) {
    if s.len() > len {
        let mut end = len;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Stores `text` (via `set`) cut so that the encoded event is at most `target` bytes,
/// or as close as a few re-measurements get (length prefixes change size in steps).
fn set_fitting(ev: &mut Event, target: usize, mut text: String, set: impl Fn(&mut Event, String)) {
    for _ in 0..6 {
        set(ev, text.clone());
        let len = encoded_len(ev);
        if len <= target || text.is_empty() {
            return;
        }
        let excess = len - target;
        let keep = text.len().saturating_sub(excess);
        truncate_at_char(&mut text, keep);
    }
    set(ev, text);
}

/// Drops optional fields, heaviest first, until `ev` encodes to at most `target` bytes
/// (or nothing optional is left).
fn shed_to(ev: &mut Event, target: usize) {
    let steps: [fn(&mut Event); 10] = [
        |ev| ev.metadata = None,
        |ev| ev.changes.clear(),
        |ev| ev.user_agent = None,
        |ev| ev.entity_name = None,
        |ev| ev.correlation_id = None,
        |ev| ev.session_id = None,
        |ev| ev.user_name = None,
        |ev| ev.ip = None,
        |ev| {
            ev.tenant = None;
            ev.category = None;
        },
        |ev| {
            ev.entity_type = None;
            ev.entity_id = None;
        },
    ];
    for step in steps {
        if encoded_len(ev) <= target {
            return;
        }
        step(ev);
    }
}

#[cfg(test)]
mod tests;
