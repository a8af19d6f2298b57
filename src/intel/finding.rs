//! A finding: what a detector concluded, and the event Stele appends for it.
//!
//! Findings are events Stele writes itself (`ingested_by = "stele"`), under the
//! reserved category [`CATEGORY`], so they are checksummed, chained, signed,
//! searchable, streamable and exportable like any event, and kept out of
//! users' listings and statistics unless asked for (`stele_records`).
//!
//! The event of a finding:
//!
//! | field | value |
//! |---|---|
//! | `id` | `finding-<kind>-<subject type>-<subject id hash>-<window start>-<level>`: one per subject, window and level, so a finding appended twice (a restart) is refused by idempotency, never stored twice |
//! | `category` | `stele.finding` |
//! | `action` | the kind (`failed_login_burst`, `error_rate_spike`, …) |
//! | `source` | `system` |
//! | `severity` | low → `warning`, medium → `error`, high → `critical` |
//! | `timestamp` | the end of the window |
//! | `tenant`, `user_id`, `ip`, `process_name` | the subject, when it is one of these |
//! | `description` | the summary sentence |
//! | `metadata` | `kind`, `severity` (low, medium, high), `subject` {type, id}, `window` {since, until}, `evidence` (counts, threshold, baseline), `query` (the listing that shows the events behind it), `recommendation` |

use crate::event::{self, format_micros, Event};
use serde_json::{json, Value};

/// The category of findings (reserved: clients cannot post it).
pub const CATEGORY: &str = "stele.finding";

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Minor deviation from normal patterns.
    Low,
    /// Significant deviation requiring attention.
    Medium,
    /// Critical deviation to investigate now.
    High,
}

impl Level {
    /// `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
        }
    }

    /// The level named `s` (ASCII case ignored).
    pub fn parse(s: &str) -> Option<Level> {
        [Level::Low, Level::Medium, Level::High]
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
    }

    fn severity(self) -> event::Severity {
        match self {
            Level::Low => event::Severity::Warning,
            Level::Medium => event::Severity::Error,
            Level::High => event::Severity::Critical,
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    /// `user`, `ip`, `process`, `action`, `tenant` or `system`.
    pub kind: &'static str,
    /// The user id, address, name… (`all` for the system).
    pub id: String,
}

/// One conclusion of a detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was found (`failed_login_burst`, …).
    pub kind: &'static str,
    /// How serious.
    pub level: Level,
    /// About whom or what.
    pub subject: Subject,
    /// The tenant the evidence belongs to, when it is one tenant's.
    pub tenant: Option<String>,
    /// Window start (unix µs, inclusive).
    pub since: i64,
    /// Window end (unix µs, exclusive).
    pub until: i64,
    /// The counts and the baseline compared with.
    pub evidence: Value,
    /// One sentence saying what happened.
    pub summary: String,
    /// One sentence saying what to do.
    pub recommendation: String,
    /// Query parameters of `GET /v1/events` listing the events behind it
    /// (with `tenant=` when `tenant` is set).
    pub query: String,
}

/// FNV-1a, for short stable ids from subject ids of any length and alphabet.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What makes a finding the same one (deduplication, `intel::detect`): its
/// kind, tenant, subject, window start and level.
pub type FindingKey = (&'static str, Option<String>, Subject, i64, Level);

impl Finding {
    /// Its deduplication key.
    pub fn key(&self) -> FindingKey {
        (
            self.kind,
            self.tenant.clone(),
            self.subject.clone(),
            self.since,
            self.level,
        )
    }

    /// The id of its event: one per kind, subject, window start and level.
    pub fn id(&self) -> String {
        format!(
            "finding-{}-{}-{:016x}-{}-{}",
            self.kind,
            self.subject.kind,
            fnv(&self.subject.id),
            self.since,
            self.level.as_str()
        )
    }

    /// The event Stele appends for it (see the module documentation).
    pub fn to_event(&self) -> Event {
        let mut v = json!({
            "id": self.id(),
            "timestamp": format_micros(self.until - 1),
            "action": self.kind,
            "category": CATEGORY,
            "source": "system",
            "severity": self.level.severity().as_str(),
            "description": self.summary,
            "metadata": {
                "kind": self.kind,
                "severity": self.level.as_str(),
                "subject": {"type": self.subject.kind, "id": self.subject.id},
                "window": {"since": format_micros(self.since), "until": format_micros(self.until)},
                "evidence": self.evidence,
                "query": self.query,
                "recommendation": self.recommendation,
            },
        });
        if let Some(t) = &self.tenant {
            v["tenant"] = json!(t);
        }
        match self.subject.kind {
            "user" => v["user_id"] = json!(self.subject.id),
            "ip" => v["ip"] = json!(self.subject.id),
            "process" => v["process_name"] = json!(self.subject.id),
            _ => {}
        }
        // Every value above is within the event's limits by construction (ids
        // are at most 256 bytes, subjects come from valid events).
        match event::parse_stele_event(&v, event::new_event_id) {
            Ok(ev) => ev,
            Err(errs) => unreachable!("a finding's event is valid: {errs:?}"),
        }
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
pub fn q(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_becomes_a_valid_reserved_event_with_a_stable_id() {
        let f = Finding {
            kind: "failed_login_burst",
            level: Level::High,
            subject: Subject {
                kind: "user",
                id: "eve".into(),
            },
            tenant: Some("acme".into()),
            since: 1_000_000,
            until: 601_000_000,
            evidence: json!({"count": 12, "threshold": 5}),
            summary: "12 failed logins".into(),
            recommendation: "Check the account.".into(),
            query: "user_id=eve".into(),
        };
        let ev = f.to_event();
        assert_eq!(ev.category.as_deref(), Some(CATEGORY));
        assert_eq!(ev.action, "failed_login_burst");
        assert_eq!(ev.user_id.as_deref(), Some("eve"));
        assert_eq!(ev.tenant.as_deref(), Some("acme"));
        assert_eq!(ev.severity, Some(event::Severity::Critical));
        assert_eq!(ev.id, f.id());
        assert_eq!(f.to_event().id, ev.id);
        let meta: Value = serde_json::from_str(ev.metadata.as_deref().unwrap()).unwrap();
        assert_eq!(meta["severity"], "high");
        assert_eq!(meta["subject"]["id"], "eve");
        assert!(
            event::parse_event(&serde_json::to_value(&ev).unwrap(), || unreachable!()).is_err()
        );
    }
}
