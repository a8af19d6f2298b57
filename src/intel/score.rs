//! The anomaly score (0–100) and the "error impact analysis" of seed 000: key
//! findings and recommendations in plain language, from the open findings.
//!
//! A finding is **open** while its window ended less than [`OPEN_MICROS`]
//! (24 hours) ago; findings are events and never change, so nothing closes
//! them but time. The score of a set of open findings (the system's: all of
//! them; a tenant's: those carrying that tenant) is
//!
//! ```text
//! score = min(100, 5 × low + 15 × medium + 35 × high)
//! ```
//!
//! so one high finding reads 35 ("investigate"), three 100, and a handful of
//! low ones stay below 30. Key findings are the five most serious, newest
//! first among equals; recommendations are theirs, each once. Beside the
//! score of the whole set, each tenant with open findings gets its own (of
//! the findings carrying it), most anomalous first: the findings of the
//! system, an action or a process span tenants, carry none and count only in
//! the whole set's score.

use super::finding::Level;
use crate::event::StoredEvent;
use serde::Serialize;
use serde_json::Value;

/// How long a finding stays open after its window ends: 24 hours.
pub const OPEN_MICROS: i64 = 24 * 3_600_000_000;
/// Points of one open finding, by level.
pub const POINTS: [(Level, u32); 3] = [(Level::Low, 5), (Level::Medium, 15), (Level::High, 35)];
/// Key findings listed.
pub const KEY_FINDINGS: usize = 5;

/// Open findings, summed up.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    /// 0–100 (see the module documentation).
    pub anomaly_score: u32,
    /// Open findings by level.
    pub open: OpenCounts,
    /// The most serious open findings: kind, level, subject, summary, event id.
    pub key_findings: Vec<Value>,
    /// What to do about them, most serious first, each once.
    pub recommendations: Vec<String>,
    /// Per tenant with open findings: its score, counts and most serious
    /// finding; score descending, then tenant ascending.
    pub tenants: Vec<TenantScore>,
}

/// One tenant's open findings, summed up.
#[derive(Debug, Serialize, PartialEq)]
pub struct TenantScore {
    /// The tenant.
    pub tenant: String,
    /// 0–100, of the tenant's open findings only.
    pub anomaly_score: u32,
    /// Its open findings by level.
    pub open: OpenCounts,
    /// Its most serious open finding (as in `key_findings`).
    pub top_finding: Value,
}

/// Open findings by level.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct OpenCounts {
    /// Low.
    pub low: u64,
    /// Medium.
    pub medium: u64,
    /// High.
    pub high: u64,
}

/// The metadata of a finding's event, if it is one.
fn meta(ev: &StoredEvent) -> Option<Value> {
    if ev.event.category.as_deref() != Some(super::finding::CATEGORY) {
        return None;
    }
    serde_json::from_str(ev.event.metadata.as_deref()?).ok()
}

/// Sums up `findings` (finding events, any order) as open at `now`: those
/// whose window ended within [`OPEN_MICROS`] count.
pub fn summarize(findings: &[StoredEvent], now: i64) -> Summary {
    let mut open: Vec<(Level, i64, &StoredEvent, Value)> = Vec::new();
    for ev in findings {
        let Some(m) = meta(ev) else { continue };
        let Some(level) = m["severity"].as_str().and_then(Level::parse) else {
            continue;
        };
        let end = m["window"]["until"]
            .as_str()
            .and_then(|u| crate::event::parse_timestamp(u).ok())
            .unwrap_or(ev.received_at);
        if now - end < OPEN_MICROS {
            open.push((level, end, ev, m));
        }
    }
    // Most serious first, then newest.
    open.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(b.2.seq.cmp(&a.2.seq))
    });
    let (anomaly_score, counts) = score(open.iter().map(|o| o.0));
    let mut s = Summary {
        anomaly_score,
        open: counts,
        ..Summary::default()
    };
    let mut tenants: Vec<&str> = open
        .iter()
        .filter_map(|o| o.2.event.tenant.as_deref())
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    for t in tenants {
        let mut theirs = open
            .iter()
            .filter(|o| o.2.event.tenant.as_deref() == Some(t))
            .peekable();
        let Some((level, _, ev, m)) = theirs.peek().copied() else {
            continue;
        };
        let top_finding = key_finding(*level, ev, m);
        let (anomaly_score, open) = score(theirs.map(|o| o.0));
        s.tenants.push(TenantScore {
            tenant: t.to_owned(),
            anomaly_score,
            open,
            top_finding,
        });
    }
    s.tenants.sort_by(|a, b| {
        b.anomaly_score
            .cmp(&a.anomaly_score)
            .then(a.tenant.cmp(&b.tenant))
    });
    for (level, _, ev, m) in open.iter().take(KEY_FINDINGS) {
        s.key_findings.push(key_finding(*level, ev, m));
        if let Some(r) = m["recommendation"].as_str() {
            if !s.recommendations.iter().any(|x| x == r) {
                s.recommendations.push(r.to_owned());
            }
        }
    }
    s
}

/// The score and counts of open findings of these levels.
fn score(levels: impl Iterator<Item = Level>) -> (u32, OpenCounts) {
    let (mut counts, mut points) = (OpenCounts::default(), 0u64);
    for level in levels {
        match level {
            Level::Low => counts.low += 1,
            Level::Medium => counts.medium += 1,
            Level::High => counts.high += 1,
        }
        points += POINTS
            .iter()
            .find(|(x, _)| *x == level)
            .map_or(0, |(_, p)| u64::from(*p));
    }
    (points.min(100) as u32, counts)
}

/// A finding as listed in `key_findings`.
fn key_finding(level: Level, ev: &StoredEvent, m: &Value) -> Value {
    serde_json::json!({
        "id": ev.event.id,
        "seq": ev.seq,
        "kind": m["kind"],
        "level": level.as_str(),
        "subject": m["subject"],
        "summary": ev.event.description,
    })
}

#[cfg(test)]
mod tests {
    use super::super::finding::{Finding, Subject};
    use super::*;
    use crate::event::Provenance;

    fn finding(level: Level, until: i64, seq: u64) -> StoredEvent {
        of_tenant(level, until, seq, None)
    }

    fn of_tenant(level: Level, until: i64, seq: u64, tenant: Option<&str>) -> StoredEvent {
        let f = Finding {
            kind: "failed_login_burst",
            level,
            subject: Subject {
                kind: "user",
                id: format!("u{seq}"),
            },
            tenant: tenant.map(str::to_owned),
            since: until - 600_000_000,
            until,
            evidence: serde_json::json!({}),
            summary: format!("s{seq}"),
            recommendation: format!("r{}", level.as_str()),
            query: String::new(),
        };
        StoredEvent {
            seq,
            received_at: until,
            event: f.to_event(),
            provenance: Some(Provenance::stele()),
        }
    }

    #[test]
    fn the_score_weighs_open_findings_and_caps_at_100() {
        let now = 1_796_299_200_000_000;
        let old = finding(Level::High, now - OPEN_MICROS - 1, 1);
        let f = [
            old,
            finding(Level::Low, now - 1_000, 2),
            finding(Level::Medium, now - 2_000, 3),
            finding(Level::High, now - 3_000, 4),
        ];
        let s = summarize(&f, now);
        assert_eq!(s.anomaly_score, 5 + 15 + 35);
        assert_eq!(
            s.open,
            OpenCounts {
                low: 1,
                medium: 1,
                high: 1
            }
        );
        let kinds: Vec<&str> = s
            .key_findings
            .iter()
            .map(|k| k["level"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["high", "medium", "low"]);
        assert_eq!(s.recommendations, ["rhigh", "rmedium", "rlow"]);
        let many: Vec<StoredEvent> = (10..14).map(|i| finding(Level::High, now, i)).collect();
        assert_eq!(summarize(&many, now).anomaly_score, 100);
        assert_eq!(summarize(&[], now), Summary::default());
    }

    #[test]
    fn each_tenant_is_scored_on_its_own_findings_only() {
        let now = 1_796_299_200_000_000;
        let f = [
            of_tenant(Level::Low, now - 10, 1, Some("b")),
            of_tenant(Level::High, now - 20, 2, Some("a")),
            of_tenant(Level::Medium, now - 30, 3, Some("b")),
            of_tenant(Level::Low, now - 40, 4, Some("b")),
            // Closed: not counted for its tenant either.
            of_tenant(Level::High, now - OPEN_MICROS - 1, 5, Some("c")),
            // Of no tenant: the whole set's score only.
            finding(Level::High, now - 50, 6),
        ];
        let s = summarize(&f, now);
        assert_eq!(s.anomaly_score, 5 + 35 + 15 + 5 + 35);
        let t: Vec<(&str, u32, u64, &str)> = s
            .tenants
            .iter()
            .map(|t| {
                let top = t.top_finding["level"].as_str().unwrap();
                (t.tenant.as_str(), t.anomaly_score, t.open.low, top)
            })
            .collect();
        assert_eq!(t, [("a", 35, 0, "high"), ("b", 25, 2, "medium")]);
        assert_eq!(s.tenants[1].open.medium, 1);
        // Equal scores: by tenant.
        let tie = [
            of_tenant(Level::Low, now, 1, Some("z")),
            of_tenant(Level::Low, now, 2, Some("y")),
        ];
        let names: Vec<String> = summarize(&tie, now)
            .tenants
            .into_iter()
            .map(|t| t.tenant)
            .collect();
        assert_eq!(names, ["y", "z"]);
    }
}
