//! Evaluating rules over the log's events, in seq order: threshold windows
//! and finding matches, turned into [`Notification`]s.
//!
//! Pure: events in, notifications out. Whoever feeds it (the runner in
//! `mod.rs`) reads the log and the text index.
//!
//! Windows are tumbling and aligned to the Unix epoch over `received_at`
//! (a `10m` rule counts in [12:00, 12:10), [12:10, 12:20), ...): a window's
//! state depends only on the events received in it, so a restart rebuilds
//! it exactly by replaying the window's events. A rule fires at most once a
//! window, on the event that brings its count to the threshold. An event
//! received earlier than the current window (the clock stepped back) counts
//! in the current window.

use super::rules::{AlertSet, FindingSeverity, Rule, RuleKind, FINDING_CATEGORY};
use crate::event::{StoredEvent, INGESTED_BY_STELE};
use std::collections::{HashMap, HashSet};

/// Event ids a threshold notification carries as samples, at most.
pub const SAMPLES_MAX: usize = 5;

/// Something to deliver: a rule fired on the event at `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The rule's name.
    pub rule: String,
    /// Its webhook's name (looked up again at each attempt: a reload may
    /// change its URL or secret).
    pub webhook: String,
    /// The seq of the event that fired it: notifications are delivered in
    /// this order, and the delivered position is counted in it.
    pub seq: u64,
    /// That event's `received_at` (unix µs): the same on a replay.
    pub fired_at: i64,
    /// What fired.
    pub detail: Detail,
}

impl Notification {
    /// Stable across restarts and redeliveries: a receiver may drop a
    /// notification whose id it has seen.
    pub fn id(&self) -> String {
        format!("{}:{}", self.rule, self.seq)
    }
}

/// What fired.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    /// A threshold was reached within a window.
    Threshold {
        /// The window, `[start, end)` in unix µs of `received_at`.
        start: i64,
        /// See `start`.
        end: i64,
        /// Matching events in the window when it fired (the threshold).
        count: u64,
        /// The rule's threshold.
        threshold: u64,
        /// The rule's filter parameters (for the link to the events).
        params: Vec<(String, String)>,
        /// Ids of the window's first matching events.
        samples: Vec<String>,
    },
    /// A finding matched.
    Finding {
        /// The finding, as the event's JSON view.
        finding: serde_json::Value,
        /// Its id (for the link).
        id: String,
        /// Its kind.
        kind: String,
        /// Its severity, as written.
        severity: String,
        /// Its sentence, when it has one.
        summary: Option<String>,
    },
}

/// The count of one threshold rule in its current window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    /// Which window (`received_at / window_us`); `None` before the first event.
    index: Option<i64>,
    /// Matching events in it.
    count: u64,
    /// Whether the rule fired in it.
    fired: bool,
    /// The first matching events' ids.
    samples: Vec<String>,
}

impl Window {
    /// Counts one matching event received at `t`; `Some((window start,
    /// count))` when it brings the count to `threshold`.
    pub fn add(&mut self, t: i64, window_us: i64, threshold: u64, id: &str) -> Option<(i64, u64)> {
        let index = t.div_euclid(window_us);
        if self.index.is_none_or(|i| index > i) {
            *self = Window {
                index: Some(index),
                ..Window::default()
            };
        }
        self.count += 1;
        if self.samples.len() < SAMPLES_MAX {
            self.samples.push(id.to_string());
        }
        if self.fired || self.count < threshold {
            return None;
        }
        self.fired = true;
        Some((self.index.unwrap_or(index) * window_us, self.count))
    }
}

/// Full-text matches of one stretch of the log: rule index → seqs.
pub type TextHits = HashMap<usize, HashSet<u64>>;

/// The rules in force and their windows.
#[derive(Debug, Default)]
pub struct Evaluator {
    set: AlertSet,
    /// One per rule of `set` (unused by finding rules).
    windows: Vec<Window>,
}

impl Evaluator {
    /// Rules with empty windows.
    pub fn new(set: AlertSet) -> Evaluator {
        let windows = vec![Window::default(); set.rules.len()];
        Evaluator { set, windows }
    }

    /// The rules in force.
    pub fn set(&self) -> &AlertSet {
        &self.set
    }

    /// Puts `set` in force: a rule whose configuration and webhook did not
    /// change keeps its window; a new or changed one starts empty.
    pub fn reload(&mut self, set: AlertSet) {
        let windows = set
            .rules
            .iter()
            .map(|r| {
                self.set
                    .rules
                    .iter()
                    .position(|old| old.source == r.source && old.name == r.name)
                    .map(|i| self.windows[i].clone())
                    .unwrap_or_default()
            })
            .collect();
        *self = Evaluator { set, windows };
    }

    /// The earliest `received_at` the windows in force need when the log
    /// was last evaluated up to an event received at `t`: the start of the
    /// longest rule's window holding `t`. `None` without threshold rules.
    pub fn replay_since(&self, t: i64) -> Option<i64> {
        self.set
            .rules
            .iter()
            .filter_map(|r| match &r.kind {
                RuleKind::Threshold { window_us, .. } => Some(t.div_euclid(*window_us) * window_us),
                RuleKind::Finding { .. } => None,
            })
            .min()
    }

    /// Whether any rule needs the text index.
    pub fn needs_text(&self) -> bool {
        self.set.rules.iter().any(Rule::needs_text)
    }

    /// Evaluates `ev` (the events must come in seq order); `hits` holds the
    /// full-text matches of the stretch `ev` is in.
    pub fn observe(&mut self, ev: &StoredEvent, hits: &TextHits) -> Vec<Notification> {
        let mut out = Vec::new();
        for (i, rule) in self.set.rules.iter().enumerate() {
            let webhook = &self.set.webhooks[rule.webhook].name;
            let detail = match &rule.kind {
                RuleKind::Threshold {
                    filter,
                    params,
                    threshold,
                    window_us,
                } => {
                    let matched = if filter.text.is_some() {
                        hits.get(&i).is_some_and(|s| s.contains(&ev.seq))
                    } else {
                        filter.matches_fields(ev)
                    };
                    if !matched {
                        continue;
                    }
                    let w = &mut self.windows[i];
                    let Some((start, count)) =
                        w.add(ev.received_at, *window_us, *threshold, &ev.event.id)
                    else {
                        continue;
                    };
                    Detail::Threshold {
                        start,
                        end: start + window_us,
                        count,
                        threshold: *threshold,
                        params: params.clone(),
                        samples: w.samples.clone(),
                    }
                }
                RuleKind::Finding { kind, min_severity } => {
                    match finding(ev, kind.as_deref(), *min_severity) {
                        Some(d) => d,
                        None => continue,
                    }
                }
            };
            out.push(Notification {
                rule: rule.name.clone(),
                webhook: webhook.clone(),
                seq: ev.seq,
                fired_at: ev.received_at,
                detail,
            });
        }
        out
    }
}

/// The finding `ev` is, if it is one of `kind` (when given) and of at
/// least `min` severity (when given).
fn finding(ev: &StoredEvent, kind: Option<&str>, min: Option<FindingSeverity>) -> Option<Detail> {
    let own = ev
        .provenance
        .as_ref()
        .is_some_and(|p| p.ingested_by == INGESTED_BY_STELE);
    if !own || ev.event.category.as_deref() != Some(FINDING_CATEGORY) {
        return None;
    }
    let meta: serde_json::Value = serde_json::from_str(ev.event.metadata.as_deref()?).ok()?;
    let its_kind = meta
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or(&ev.event.action);
    let severity = meta.get("severity").and_then(|s| s.as_str()).unwrap_or("");
    if kind.is_some_and(|k| k != its_kind) {
        return None;
    }
    if let Some(min) = min {
        // A severity Stele does not know never passes a minimum.
        if FindingSeverity::parse(severity).is_none_or(|s| s < min) {
            return None;
        }
    }
    Some(Detail::Finding {
        finding: serde_json::to_value(ev).unwrap_or(serde_json::Value::Null),
        id: ev.event.id.clone(),
        kind: its_kind.to_string(),
        severity: severity.to_string(),
        summary: meta
            .get("summary")
            .and_then(|s| s.as_str())
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::rules::{compile, AlertConfig, Format, WebhookConfig};
    use crate::event::{Event, Provenance};

    const MIN: i64 = 60_000_000;

    fn set(alerts: Vec<AlertConfig>) -> AlertSet {
        let hook = WebhookConfig {
            name: "ops".into(),
            url: "http://127.0.0.1:9/".into(),
            secret: Some("0123456789abcdef".into()),
            secret_file: None,
            format: Format::Stele,
            timeout_secs: 1,
            backoff_max_secs: 1,
        };
        compile(&[hook], &alerts).unwrap()
    }

    fn threshold(name: &str, filter: &str, n: u64, window: &str) -> AlertConfig {
        AlertConfig {
            name: name.into(),
            webhook: "ops".into(),
            filter: Some(filter.into()),
            threshold: Some(n),
            window: Some(window.into()),
            finding_kind: None,
            finding_severity: None,
        }
    }

    fn findings(kind: Option<&str>, severity: Option<&str>) -> AlertConfig {
        AlertConfig {
            name: "f".into(),
            webhook: "ops".into(),
            filter: None,
            threshold: None,
            window: None,
            finding_kind: kind.map(str::to_string),
            finding_severity: severity.map(str::to_string),
        }
    }

    fn ev(seq: u64, t: i64, action: &str) -> StoredEvent {
        StoredEvent {
            seq,
            received_at: t,
            event: Event {
                id: format!("e{seq}"),
                action: action.into(),
                actor: Some("a".into()),
                ..Event::default()
            },
            provenance: Some(Provenance::cli()),
        }
    }

    fn found(seq: u64, kind: &str, severity: &str) -> StoredEvent {
        let mut e = ev(seq, 0, kind);
        e.event.category = Some(FINDING_CATEGORY.into());
        e.event.metadata = Some(
            serde_json::json!({"kind": kind, "severity": severity, "summary": "s"}).to_string(),
        );
        e.provenance = Some(Provenance::stele());
        e
    }

    fn fired(e: &mut Evaluator, events: &[StoredEvent]) -> Vec<u64> {
        let hits = TextHits::new();
        events
            .iter()
            .flat_map(|ev| e.observe(ev, &hits))
            .map(|n| n.seq)
            .collect()
    }

    #[test]
    fn a_window_fires_once_at_its_threshold_and_never_below() {
        let mut e = Evaluator::new(set(vec![threshold("t", "action=login", 3, "1m")]));
        let t0 = 100 * MIN;
        let evs = [
            ev(1, t0, "login"),
            ev(2, t0 + 1, "logout"),
            ev(3, t0 + 2, "login"),
            ev(4, t0 + 3, "LOGIN"), // keyword filters fold case, as listings do
            ev(5, t0 + 4, "login"), // same window: already fired
            ev(6, t0 + MIN, "login"), // next window: counts from 1
            ev(7, t0 + MIN + 1, "login"),
        ];
        assert_eq!(fired(&mut e, &evs), vec![4]);
        assert_eq!(fired(&mut e, &[ev(8, t0 + MIN + 2, "login")]), vec![8]);
    }

    #[test]
    fn the_notification_names_its_window_and_samples() {
        let mut e = Evaluator::new(set(vec![threshold("t", "action=login", 2, "1m")]));
        let t0 = 100 * MIN + 7;
        let hits = TextHits::new();
        assert!(e.observe(&ev(1, t0, "login"), &hits).is_empty());
        let n = e.observe(&ev(2, t0 + 5, "login"), &hits).remove(0);
        assert_eq!(n.id(), "t:2");
        assert_eq!((n.webhook.as_str(), n.fired_at), ("ops", t0 + 5));
        let Detail::Threshold {
            start,
            end,
            count,
            samples,
            ..
        } = n.detail
        else {
            panic!("a threshold");
        };
        assert_eq!((start, end, count), (100 * MIN, 101 * MIN, 2));
        assert_eq!(samples, vec!["e1", "e2"]);
    }

    #[test]
    fn a_clock_stepping_back_counts_in_the_current_window() {
        let mut w = Window::default();
        assert_eq!(w.add(10 * MIN, MIN, 2, "a"), None);
        assert_eq!(w.add(9 * MIN, MIN, 2, "b"), Some((10 * MIN, 2)));
    }

    #[test]
    fn replaying_a_window_rebuilds_the_same_state() {
        let rules = vec![threshold("t", "action=login", 3, "1m")];
        let t0 = 100 * MIN;
        let evs: Vec<StoredEvent> = (1..=5).map(|i| ev(i, t0 + i as i64, "login")).collect();
        let mut whole = Evaluator::new(set(rules.clone()));
        let straight = fired(&mut whole, &evs);
        // Evaluated up to seq 2, then restarted: replay from the window's start.
        let mut first = Evaluator::new(set(rules.clone()));
        fired(&mut first, &evs[..2]);
        let mut again = Evaluator::new(set(rules));
        let since = again.replay_since(evs[1].received_at).unwrap();
        assert_eq!(since, t0);
        let replayed: Vec<_> = evs
            .iter()
            .filter(|e| e.received_at >= since)
            .cloned()
            .collect();
        let (before, after) = replayed.split_at(2);
        assert!(fired(&mut again, before).is_empty());
        assert_eq!(fired(&mut again, after), straight);
    }

    #[test]
    fn a_reload_keeps_unchanged_windows_and_resets_changed_ones() {
        let t0 = 100 * MIN;
        let a = threshold("a", "action=login", 2, "1m");
        let b = threshold("b", "action=login", 2, "1m");
        let mut e = Evaluator::new(set(vec![a.clone(), b.clone()]));
        assert!(fired(&mut e, &[ev(1, t0, "login")]).is_empty());
        let b2 = threshold("b", "action=login", 2, "2m");
        e.reload(set(vec![a, b2]));
        let hits = TextHits::new();
        let n = e.observe(&ev(2, t0 + 1, "login"), &hits);
        assert_eq!(
            n.iter().map(|n| n.rule.as_str()).collect::<Vec<_>>(),
            vec!["a"]
        );
    }

    #[test]
    fn own_records_take_part_only_when_the_filter_asks() {
        let mut e = Evaluator::new(set(vec![threshold("t", "", 1, "1m")]));
        let mut own = ev(1, 0, "list");
        own.provenance = Some(Provenance::stele());
        assert!(fired(&mut e, &[own.clone()]).is_empty());
        let mut e = Evaluator::new(set(vec![threshold("t", "stele_records=include", 1, "1m")]));
        assert_eq!(fired(&mut e, &[own]), vec![1]);
    }

    #[test]
    fn finding_rules_match_kind_and_least_severity() {
        let evs = [
            found(1, "new_ip", "low"),
            found(2, "stuck_run", "medium"),
            found(3, "new_ip", "high"),
            ev(4, 0, "new_ip"),
        ];
        let mut by_kind = Evaluator::new(set(vec![findings(Some("new_ip"), None)]));
        assert_eq!(fired(&mut by_kind, &evs), vec![1, 3]);
        let mut by_sev = Evaluator::new(set(vec![findings(None, Some("medium"))]));
        assert_eq!(fired(&mut by_sev, &evs), vec![2, 3]);
        let mut both = Evaluator::new(set(vec![findings(Some("new_ip"), Some("medium"))]));
        assert_eq!(fired(&mut both, &evs), vec![3]);
        // A client's event cannot pass for a finding.
        let mut forged = found(5, "new_ip", "high");
        forged.provenance = Some(Provenance::cli());
        assert!(fired(&mut by_kind, &[forged]).is_empty());
    }

    #[test]
    fn full_text_rules_match_the_hits_they_are_given() {
        let mut e = Evaluator::new(set(vec![threshold("t", "q=denied", 1, "1m")]));
        let hits: TextHits = [(0, HashSet::from([2]))].into();
        assert!(e.observe(&ev(1, 0, "x"), &hits).is_empty());
        assert_eq!(e.observe(&ev(2, 0, "x"), &hits).len(), 1);
    }
}
