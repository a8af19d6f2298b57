//! Retention: whole UTC-day partitions past their TTL are dropped, oldest
//! first, unless a legal hold keeps them.
//!
//! Rules (ARCHITECTURE.md, "Retention"):
//! 1. A day is dropped only as whole segment files, never by rewriting
//!    records, and only once every segment of the day is sealed and the day
//!    is over.
//! 2. A day's TTL is the longest TTL among the tenants present in it (the
//!    global `days` for events without a tenant or tenants without their own
//!    TTL); no TTL anywhere means the day is kept forever.
//! 3. A legal hold (tenant and/or date range) keeps every day it matches.
//! 4. Only a prefix of the log is dropped: the oldest kept day stops
//!    retention, so the log stays one unbroken chain whose first segment's
//!    header (first seq, previous hash) says what came before.
//! 5. The log drops the files first, then the indexes remove the entries;
//!    queries never return a dropped event meanwhile (events come from the
//!    log), and at open the indexes remove whatever is below the log's first
//!    seq, so a crash in between heals itself.
//! 6. Every drop is recorded in `DATA_DIR/retention.log` (NDJSON): day,
//!    segments, seq range, final chain hash, reason.

pub mod runner;

use crate::event::StoredEvent;
use crate::log::format::{Day, Header, SegmentId};
use crate::log::segment::Depth;
use crate::log::Log;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `[retention]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days an event is kept after the UTC day it was received (none: forever).
    pub days: Option<u32>,
    /// Per-tenant TTLs in days, overriding `days` for that tenant.
    pub tenants: BTreeMap<String, u32>,
    /// Legal holds set in the configuration (more can be set over HTTP).
    pub holds: Vec<Hold>,
    /// Seconds between retention runs (one also runs at start).
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            days: None,
            tenants: BTreeMap::new(),
            holds: Vec::new(),
            interval_secs: 3600,
        }
    }
}

impl RetentionConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.days == Some(0) {
            return Err(
                "retention.days must be at least 1 (omit it to keep events forever)".into(),
            );
        }
        if let Some((t, _)) = self.tenants.iter().find(|(_, d)| **d == 0) {
            return Err(format!("retention.tenants.{t} must be at least 1"));
        }
        if self.interval_secs == 0 {
            return Err("retention.interval_secs must be at least 1".into());
        }
        for h in &self.holds {
            h.validate().map_err(|e| format!("retention.holds: {e}"))?;
        }
        Ok(())
    }

    /// Whether any TTL is set at all.
    pub fn enabled(&self) -> bool {
        self.days.is_some() || !self.tenants.is_empty()
    }
}

/// A legal hold: keeps every day it matches past its TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// A name, unique among holds (how the admin API removes it).
    pub name: String,
    /// Only days holding events of this tenant (any day when absent).
    #[serde(default)]
    pub tenant: Option<String>,
    /// First UTC day held (unbounded when absent).
    #[serde(default)]
    pub from: Option<NaiveDate>,
    /// Last UTC day held, inclusive (unbounded when absent).
    #[serde(default)]
    pub until: Option<NaiveDate>,
    /// Why (a case number, a request): shown in plans and the drop log.
    #[serde(default)]
    pub reason: String,
}

impl Hold {
    /// Checks a hold; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 128
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "hold name {:?}: 1 to 128 of A-Z a-z 0-9 - _ .",
                self.name
            ));
        }
        if let (Some(f), Some(u)) = (self.from, self.until) {
            if f > u {
                return Err(format!(
                    "hold {}: `from` {f} is after `until` {u}",
                    self.name
                ));
            }
        }
        if self.reason.len() > 1024 {
            return Err(format!("hold {}: reason longer than 1024 bytes", self.name));
        }
        Ok(())
    }

    fn matches(&self, day: NaiveDate, tenants: Option<&BTreeSet<String>>) -> bool {
        let in_range = self.from.is_none_or(|f| day >= f) && self.until.is_none_or(|u| day <= u);
        let tenant = match (&self.tenant, tenants) {
            (None, _) => true,
            (Some(t), Some(ts)) => ts.contains(t),
            // Tenants unknown: assume held (never drop on a guess).
            (Some(_), None) => true,
        };
        in_range && tenant
    }
}

/// Holds set over HTTP, kept in `DATA_DIR/holds.json`.
pub fn load_holds(data_dir: &Path) -> std::io::Result<Vec<Hold>> {
    let path = crate::datadir::DataDir::new(data_dir).holds();
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Writes the HTTP-set holds atomically (temp file, fsync, rename, fsync dir).
pub fn save_holds(data_dir: &Path, holds: &[Hold]) -> std::io::Result<()> {
    let path = crate::datadir::DataDir::new(data_dir).holds();
    let bytes = serde_json::to_vec_pretty(holds).map_err(std::io::Error::other)?;
    crate::datadir::write_durably(&path, &bytes, 0o644)
        .map_err(|e| std::io::Error::new(e.source.kind(), e.to_string()))
}

/// What retention decides for one day.
#[derive(Debug, Clone, Serialize)]
pub struct DayPlan {
    /// The UTC day (of ingestion).
    pub day: String,
    /// Its segment files.
    pub segments: Vec<String>,
    /// First and last seq, and how many events.
    pub first_seq: u64,
    /// Last seq of the day (`first_seq - 1` when it holds none).
    pub last_seq: u64,
    /// Events in the day.
    pub events: u64,
    /// Whole days since the day ended.
    pub age_days: i64,
    /// Its TTL in days, if it has one.
    pub ttl_days: Option<u32>,
    /// Whether retention drops it now.
    pub drop: bool,
    /// Why, in a sentence.
    pub reason: String,
}

/// A segment as retention sees it.
#[derive(Debug, Clone)]
pub struct Seg {
    /// Day and part.
    pub id: SegmentId,
    /// The file.
    pub path: PathBuf,
    /// First seq.
    pub first_seq: u64,
    /// Events.
    pub count: u64,
    /// Sealed (footer written).
    pub sealed: bool,
}

impl From<crate::log::SegmentInfo> for Seg {
    fn from(s: crate::log::SegmentInfo) -> Seg {
        Seg {
            id: s.id,
            path: s.path,
            first_seq: s.first_seq,
            count: s.count,
            sealed: s.sealed,
        }
    }
}

/// The segments of a data directory read from disk, without the daemon
/// (for `stele retention --dry-run`).
pub fn segments_on_disk(data_dir: &Path) -> Result<Vec<Seg>, String> {
    let segments = crate::datadir::DataDir::new(data_dir).segments();
    let files = crate::log::list_segments(&segments).map_err(|e| e.to_string())?;
    let evicted = crate::log::evicted::Evicted::load(data_dir)?;
    let mut out = Vec::new();
    for (i, (id, path)) in files.iter().enumerate() {
        let last = i + 1 == files.len();
        if evicted.get(&id.file_name()).is_some() && !last {
            // A stub: its footer says what it held.
            let (first_seq, count) = stub_range(path)?;
            out.push(Seg {
                id: *id,
                path: path.clone(),
                first_seq,
                count,
                sealed: true,
            });
            continue;
        }
        let window = if last {
            crate::log::TORN_WINDOW_BYTES
        } else {
            0
        };
        let (header, s) = crate::log::segment::SegmentFile::read(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .scan(Depth::Frames, window)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(Seg {
            id: *id,
            path: path.clone(),
            first_seq: header.first_seq,
            count: s.count,
            sealed: s.footer.is_some(),
        });
    }
    Ok(out)
}

/// The (first seq, count) an evicted segment's stub holds, from its header
/// and footer.
fn stub_range(path: &Path) -> Result<(u64, u64), String> {
    let fail = |e: String| format!("{}: {e}", path.display());
    let (head, foot, _) = crate::log::evicted::read_ends(path).map_err(|e| fail(e.to_string()))?;
    let h = Header::decode(&head).map_err(|e| fail(e.to_string()))?;
    let footer = crate::log::format::Footer::decode(&foot).map_err(|e| fail(e.to_string()))?;
    Ok((h.first_seq, footer.count))
}

/// The tenants present in a sealed segment file (`""` for events without a
/// tenant).
pub fn tenants_in(path: &Path) -> Result<BTreeSet<String>, String> {
    let data_dir = path.parent().and_then(Path::parent);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Some(d) = data_dir {
        if crate::log::evicted::Evicted::load(d)?.get(name).is_some() {
            return Err(format!(
                "{}: evicted to the archive: its tenants are read by the daemon (GET \
                 /v1/retention), not from its stub",
                path.display()
            ));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let header = Header::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BTreeSet::new();
    let dict = crate::log::dict::of_segment(&header, &bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut scratch = Vec::new();
    let mut off = header.records_start();
    while off < bytes.len() {
        match crate::log::format::decode_frame(&bytes[off..], header.version) {
            Ok(crate::log::format::Frame::Record { payload, len, .. }) => {
                let payload =
                    crate::log::dict::payload(dict.as_ref(), &header, payload, &mut scratch)
                        .map_err(|e| format!("{}: offset {off}: {e}", path.display()))?;
                let ev: StoredEvent = crate::event::decode_stored(payload, header.version)
                    .map_err(|e| format!("{}: offset {off}: {e}", path.display()))?;
                out.insert(ev.event.tenant.clone().unwrap_or_default());
                off += len;
            }
            _ => break, // footer or end
        }
    }
    Ok(out)
}

/// Decides, day by day, what retention drops at `today` (rules 1–4).
/// `tenants` is asked only for days old enough to matter.
pub fn plan(
    segs: &[Seg],
    today: NaiveDate,
    cfg: &RetentionConfig,
    holds: &[Hold],
    mut tenants: impl FnMut(&Seg) -> Result<BTreeSet<String>, String>,
) -> Result<Vec<DayPlan>, String> {
    let mut days: BTreeMap<Day, Vec<&Seg>> = BTreeMap::new();
    for s in segs {
        days.entry(s.id.day).or_default().push(s);
    }
    let newest_day = segs.last().map(|s| s.id.day);
    let min_ttl = cfg.tenants.values().copied().chain(cfg.days).min();
    let mut out = Vec::new();
    let mut blocked: Option<String> = None;
    for (day, segs) in days {
        let d = day.0;
        let first_seq = segs[0].first_seq;
        let events: u64 = segs.iter().map(|s| s.count).sum();
        let age_days = (today - d).num_days() - 1; // whole days since it ended
        let mut p = DayPlan {
            day: d.to_string(),
            segments: segs.iter().map(|s| s.id.file_name()).collect(),
            first_seq,
            last_seq: first_seq + events - 1,
            events,
            age_days,
            ttl_days: None,
            drop: false,
            reason: String::new(),
        };
        let open = Some(day) == newest_day || d >= today || segs.iter().any(|s| !s.sealed);
        let verdict: Result<(), String> = (|| {
            if open {
                return Err("the day is not over or holds the active segment".into());
            }
            if !cfg.enabled() {
                return Err("no retention is configured: kept forever".into());
            }
            // Old enough for the shortest TTL at all? Otherwise skip the
            // (costly) tenant scan.
            if let Some(m) = min_ttl.filter(|m| age_days < i64::from(*m)) {
                return Err(if cfg.tenants.is_empty() {
                    p.ttl_days = cfg.days;
                    format!("within its TTL of {m} days ({} days old)", age_days.max(0))
                } else {
                    format!(
                        "younger than the shortest TTL of {m} days ({} days old)",
                        age_days.max(0)
                    )
                });
            }
            let need_tenants = !cfg.tenants.is_empty() || holds.iter().any(|h| h.tenant.is_some());
            let ts = if need_tenants {
                let mut all = BTreeSet::new();
                for s in &segs {
                    all.extend(tenants(s)?);
                }
                Some(all)
            } else {
                None
            };
            if let Some(h) = holds.iter().find(|h| h.matches(d, ts.as_ref())) {
                return Err(format!(
                    "legal hold {:?}{}",
                    h.name,
                    if h.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", h.reason)
                    }
                ));
            }
            let ttl_of = |t: &str| -> Option<u32> {
                if t.is_empty() {
                    cfg.days
                } else {
                    cfg.tenants.get(t).copied().or(cfg.days)
                }
            };
            let ttl = match &ts {
                None => cfg.days,
                Some(ts) => {
                    let mut ttl = Some(0u32);
                    for t in ts {
                        ttl = match (ttl, ttl_of(t)) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                    ttl
                }
            };
            p.ttl_days = ttl;
            match ttl {
                None => Err("a tenant in it has no TTL: kept forever".into()),
                Some(t) if age_days < i64::from(t) => {
                    Err(format!("within its TTL of {t} days ({age_days} days old)"))
                }
                Some(t) => {
                    if let Some(why) = &blocked {
                        Err(format!(
                            "past its TTL of {t} days, but an older day is kept ({why}): \
                             retention drops the oldest days first"
                        ))
                    } else {
                        p.reason = format!("past its TTL of {t} days ({age_days} days old)");
                        Ok(())
                    }
                }
            }
        })();
        match verdict {
            Ok(()) => p.drop = true,
            Err(why) => {
                if blocked.is_none() {
                    blocked = Some(format!("{d}: {why}"));
                }
                p.reason = why;
            }
        }
        out.push(p);
    }
    Ok(out)
}

/// With signed daily digests on, a day is dropped only once its digest is
/// written (`signed_through` is the newest signed day): otherwise the
/// record of what the day held would be lost with it. Keeps such days and,
/// oldest-first, every day after them.
pub fn keep_unsigned(plan: &mut [DayPlan], signed_through: Option<Day>) {
    let Some(signed) = signed_through else {
        return; // digests were never on for this log
    };
    let mut blocked = false;
    for p in plan.iter_mut().filter(|p| p.drop) {
        let unsigned = p.day.parse::<NaiveDate>().is_ok_and(|d| d > signed.0);
        if unsigned || blocked {
            p.drop = false;
            p.reason = if unsigned {
                format!(
                    "past its TTL, but its daily digest is not written yet ({})",
                    p.reason
                )
            } else {
                "past its TTL, but an older day is kept (not yet signed): retention drops the oldest days first".into()
            };
            blocked = true;
        }
    }
}

/// Drops what `plan` says from `log`, asks `indexes` to follow and records
/// it in `DATA_DIR/retention.log`. Returns the days dropped.
pub fn apply(
    data_dir: &Path,
    log: &Log,
    indexes: &crate::index::Indexes,
    plan: &[DayPlan],
    now: &str,
) -> Result<Vec<DayPlan>, String> {
    let doomed: Vec<&DayPlan> = plan.iter().take_while(|p| p.drop).collect();
    if doomed.is_empty() {
        return Ok(Vec::new());
    }
    // What `drop_through` may remove: the sealed segments from the oldest
    // on, never the newest one (the active segment, or the next one to be).
    let segs = log.segments();
    let removable: BTreeSet<String> = segs
        .iter()
        .take(segs.len().saturating_sub(1))
        .take_while(|s| s.sealed)
        .map(|s| s.id.file_name())
        .collect();
    let mut record = String::new();
    let mut done = Vec::new();
    let mut through = None;
    for p in doomed {
        if !p.segments.iter().all(|s| removable.contains(s)) {
            break; // its newest segment is the active one: it stays
        }
        through = p
            .segments
            .last()
            .and_then(|n| SegmentId::parse_file_name(n));
        record.push_str(
            &serde_json::json!({
                "dropped_at": now,
                "day": p.day,
                "segments": p.segments,
                "first_seq": p.first_seq,
                "last_seq": p.last_seq,
                "events": p.events,
                "reason": p.reason,
            })
            .to_string(),
        );
        record.push('\n');
        done.push(p.clone());
    }
    let Some(through) = through else {
        return Ok(Vec::new());
    };
    // The record is durable before the first file goes: a crash in between
    // may leave a day recorded twice (the run after the restart records
    // what was left of it), never a dropped day unrecorded.
    let path = crate::datadir::DataDir::new(data_dir).retention_log();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(record.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    log.drop_through(through).map_err(|e| e.to_string())?;
    indexes.drop_below(log.first_seq());
    for p in &done {
        tracing::info!(
            "Retention dropped day {} ({} events, seqs {}..={}): {}.",
            p.day,
            p.events,
            p.first_seq,
            p.last_seq,
            p.reason
        );
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(day: &str, part: u32, first: u64, count: u64, sealed: bool) -> Seg {
        let id = SegmentId {
            day: Day(day.parse().unwrap()),
            part,
        };
        Seg {
            id,
            path: PathBuf::from(id.file_name()),
            first_seq: first,
            count,
            sealed,
        }
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn log3() -> Vec<Seg> {
        vec![
            seg("2026-11-01", 0, 1, 10, true),
            seg("2026-11-01", 1, 11, 5, true),
            seg("2026-11-02", 0, 16, 10, true),
            seg("2026-11-10", 0, 26, 10, false),
        ]
    }

    fn no_tenants(_: &Seg) -> Result<BTreeSet<String>, String> {
        panic!("tenants asked without per-tenant rules")
    }

    #[test]
    fn nothing_is_dropped_without_a_ttl() {
        let p = plan(
            &log3(),
            day("2027-01-01"),
            &RetentionConfig::default(),
            &[],
            no_tenants,
        )
        .unwrap();
        assert!(p.iter().all(|d| !d.drop));
        assert!(p[0].reason.contains("no retention is configured"), "{p:?}");
    }

    #[test]
    fn days_past_the_ttl_drop_oldest_first_and_never_the_active_one() {
        let cfg = RetentionConfig {
            days: Some(5),
            ..Default::default()
        };
        // On 11-07, 11-01 ended 5 whole days ago; 11-02 only 4.
        let p = plan(&log3(), day("2026-11-07"), &cfg, &[], no_tenants).unwrap();
        assert_eq!(
            p.iter().map(|d| d.drop).collect::<Vec<_>>(),
            vec![true, false, false]
        );
        assert_eq!((p[0].first_seq, p[0].last_seq, p[0].events), (1, 15, 15));
        assert_eq!(p[0].segments.len(), 2);
        assert!(p[1].reason.contains("within its TTL of 5 days"), "{p:?}");
        assert!(p[2].reason.contains("active segment"), "{p:?}");
        // Years later the active day still stays.
        let p = plan(&log3(), day("2030-01-01"), &cfg, &[], no_tenants).unwrap();
        assert_eq!(
            p.iter().map(|d| d.drop).collect::<Vec<_>>(),
            vec![true, true, false]
        );
    }

    #[test]
    fn holds_keep_days_and_everything_after_them() {
        let cfg = RetentionConfig {
            days: Some(1),
            ..Default::default()
        };
        let hold = Hold {
            name: "case-42".into(),
            tenant: None,
            from: Some(day("2026-11-01")),
            until: Some(day("2026-11-01")),
            reason: "litigation".into(),
        };
        let p = plan(&log3(), day("2026-12-01"), &cfg, &[hold], no_tenants).unwrap();
        assert!(!p[0].drop && p[0].reason.contains("legal hold \"case-42\" (litigation)"));
        assert!(
            !p[1].drop && p[1].reason.contains("an older day is kept"),
            "{p:?}"
        );
    }

    #[test]
    fn a_day_lives_as_long_as_its_longest_lived_tenant() {
        let mut tenants = BTreeMap::new();
        tenants.insert("acme".to_string(), 30);
        let cfg = RetentionConfig {
            days: Some(2),
            tenants,
            ..Default::default()
        };
        let who = |s: &Seg| -> Result<BTreeSet<String>, String> {
            Ok(match s.first_seq {
                1 => ["globex".to_string()].into(),
                11 => ["".to_string()].into(),
                _ => ["acme".to_string(), "globex".to_string()].into(),
            })
        };
        let p = plan(&log3(), day("2026-11-12"), &cfg, &[], who).unwrap();
        assert!(p[0].drop, "{p:?}");
        assert_eq!(p[0].ttl_days, Some(2));
        assert!(!p[1].drop && p[1].ttl_days == Some(30), "{p:?}");
        // A tenant hold only holds days that contain the tenant.
        let hold = Hold {
            name: "acme-audit".into(),
            tenant: Some("acme".into()),
            from: None,
            until: None,
            reason: String::new(),
        };
        let p = plan(&log3(), day("2027-11-12"), &cfg, &[hold], who).unwrap();
        assert!(p[0].drop, "{p:?}");
        assert!(!p[1].drop && p[1].reason.contains("acme-audit"), "{p:?}");
    }

    #[test]
    fn config_and_holds_are_validated_by_name() {
        let bad = RetentionConfig {
            days: Some(0),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("retention.days"));
        let h = Hold {
            name: "bad name!".into(),
            tenant: None,
            from: Some(day("2026-02-01")),
            until: Some(day("2026-01-01")),
            reason: String::new(),
        };
        assert!(h.validate().unwrap_err().contains("hold name"));
        let h = Hold {
            name: "ok".into(),
            ..h
        };
        assert!(h.validate().unwrap_err().contains("is after"));
    }
}
