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
//! first among equals; recommendations are theirs, each once.

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
    let mut s = Summary::default();
    for (level, ..) in &open {
        match level {
            Level::Low => s.open.low += 1,
            Level::Medium => s.open.medium += 1,
            Level::High => s.open.high += 1,
        }
    }
    let points: u64 = open
        .iter()
        .map(|(l, ..)| {
            let p = POINTS.iter().find(|(x, _)| x == l).map_or(0, |(_, p)| *p);
            u64::from(p)
        })
        .sum();
    s.anomaly_score = points.min(100) as u32;
    open.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(b.2.seq.cmp(&a.2.seq))
    });
    for (level, _, ev, m) in open.iter().take(KEY_FINDINGS) {
        s.key_findings.push(serde_json::json!({
            "id": ev.event.id,
            "seq": ev.seq,
            "kind": m["kind"],
            "level": level.as_str(),
            "subject": m["subject"],
            "summary": ev.event.description,
        }));
        if let Some(r) = m["recommendation"].as_str() {
            if !s.recommendations.iter().any(|x| x == r) {
                s.recommendations.push(r.to_owned());
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::finding::{Finding, Subject};
    use super::*;
    use crate::event::Provenance;

    fn finding(level: Level, until: i64, seq: u64) -> StoredEvent {
        let f = Finding {
            kind: "failed_login_burst",
            level,
            subject: Subject {
                kind: "user",
                id: format!("u{seq}"),
            },
            tenant: None,
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
}
