//! The tracker against a brute-force computation from the events: every
//! run, status and figure recomputed from scratch by the definitions of the
//! module doc, over generated sequences with out-of-order times, retried
//! reports, runs without `started`, both kinds, expiry and eviction.

use super::*;
use crate::event::{Event, Phase, Severity, Status as EventStatus, StoredEvent};
use proptest::prelude::*;
use std::collections::BTreeMap;

const MIN: i64 = 60_000_000;

fn limits(tracked_max: usize) -> TrackerLimits {
    TrackerLimits {
        tracked_max,
        horizon_micros: 7 * 24 * 60 * MIN,
        stuck: StuckRule {
            factor: 3.0,
            min_micros: 5 * MIN,
            max_micros: 120 * MIN,
        },
    }
}

/// One generated event: (tenant, process id, batch id, name, phase,
/// status, severity, minutes, items, duration).
type Gen = (
    u8,
    u8,
    Option<u8>,
    u8,
    Option<u8>,
    Option<u8>,
    u8,
    i64,
    Option<u64>,
    Option<u64>,
);

fn gen_event() -> impl Strategy<Value = Gen> {
    (
        0..2u8,
        0..6u8,
        prop::option::of(0..3u8),
        0..3u8,
        prop::option::of(0..3u8),
        prop::option::of(0..5u8),
        0..6u8,
        0..300i64,
        prop::option::of(0..100u64),
        prop::option::of(0..5_000u64),
    )
}

fn build(gens: &[Gen], dup_every: usize) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = Vec::new();
    for (i, g) in gens.iter().enumerate() {
        let (t, p, b, n, ph, st, sev, min, items, dur) = *g;
        let mut ev = Event {
            action: format!("act{}", n % 2),
            tenant: (t == 1).then(|| "acme".to_owned()),
            process_id: (p < 5).then(|| format!("run-{p}")),
            batch_id: b.map(|b| format!("batch-{b}")),
            process_name: (n < 2).then(|| format!("job-{n}")),
            phase: ph.map(|x| [Phase::Started, Phase::Progress, Phase::Finished][x as usize]),
            status: st.map(|s| {
                [
                    EventStatus::Success,
                    EventStatus::Failure,
                    EventStatus::Partial,
                    EventStatus::Canceled,
                    EventStatus::Pending,
                ][s as usize]
            }),
            severity: Some(
                [
                    Severity::Debug,
                    Severity::Info,
                    Severity::Notice,
                    Severity::Warning,
                    Severity::Error,
                    Severity::Critical,
                ][sev as usize],
            ),
            timestamp: (i % 7 != 0).then_some(1_000 * MIN + min * MIN),
            items_total: items.map(|x| x + 100),
            items_processed: items,
            items_failed: items.map(|x| x / 10),
            duration_ms: dur,
            description: (i % 3 == 0).then(|| format!("error number {i} é").repeat(1 + i % 20)),
            ..Event::default()
        };
        ev.id = format!("e{i}");
        let seq = out.len() as u64 + 1;
        let stored = StoredEvent {
            seq,
            received_at: 1_000 * MIN + (seq as i64) * MIN / 2,
            event: ev,
            provenance: None,
        };
        out.push(stored.clone());
        if dup_every > 0 && i % dup_every == 0 {
            // A retried report: the same event stored again.
            out.push(StoredEvent {
                seq: seq + 1,
                received_at: stored.received_at,
                ..stored
            });
        }
    }
    out
}

/// A run recomputed from its events (in seq order) by the definitions.
#[derive(Debug, PartialEq)]
struct Truth {
    name: Option<String>,
    start: i64,
    finished: Option<(i64, RunStatus, Option<u64>)>,
    items: (Option<u64>, Option<u64>, Option<u64>),
    events: u64,
    errors: u64,
    last_errors: Vec<String>,
    duration_ms: Option<i64>,
}

fn truth_of(kind: Kind, evs: &[&StoredEvent]) -> Truth {
    let at = |e: &StoredEvent| e.event.timestamp.unwrap_or(e.received_at);
    let phase = |e: &StoredEvent| match kind {
        Kind::Process if e.event.batch_id.is_some() => None,
        _ => e.event.phase,
    };
    let name_of = |e: &StoredEvent| match kind {
        Kind::Process => e.event.process_name.clone(),
        Kind::Batch => Some(e.event.action.clone()),
    };
    let name = evs
        .iter()
        .find(|e| phase(e).is_some() && name_of(e).is_some())
        .filter(|_| kind == Kind::Batch)
        .and_then(|e| name_of(e))
        .or_else(|| evs.iter().find_map(|e| name_of(e)));
    let started = evs
        .iter()
        .filter(|e| phase(e) == Some(Phase::Started))
        .map(|e| at(e))
        .min();
    let start = started.unwrap_or_else(|| evs.iter().map(|e| at(e)).min().unwrap());
    let finished = evs
        .iter()
        .rev()
        .find(|e| phase(e) == Some(Phase::Finished))
        .map(|e| {
            let outcome = match e.event.status {
                Some(EventStatus::Failure) => RunStatus::Failed,
                Some(EventStatus::Partial) => RunStatus::Partial,
                Some(EventStatus::Canceled) => RunStatus::Canceled,
                _ => RunStatus::Succeeded,
            };
            (at(e), outcome, e.event.duration_ms)
        });
    let own = |e: &StoredEvent| kind == Kind::Batch || e.event.batch_id.is_none();
    let last = |f: fn(&Event) -> Option<u64>| {
        evs.iter()
            .rev()
            .filter(|e| own(e))
            .find_map(|e| f(&e.event))
    };
    let errs: Vec<String> = evs
        .iter()
        .filter(|e| {
            e.event.status == Some(EventStatus::Failure)
                || matches!(e.event.severity, Some(Severity::Error | Severity::Critical))
        })
        .map(|e| {
            let mut s = e
                .event
                .description
                .clone()
                .unwrap_or(e.event.action.clone());
            while s.len() > ERROR_BYTES_MAX {
                s.pop();
            }
            s
        })
        .collect();
    let duration_ms = finished.map(|(f, _, d)| match d {
        Some(d) => d as i64,
        None => (f - start).max(0) / 1000,
    });
    Truth {
        name,
        start,
        finished,
        items: (
            last(|e| e.items_total),
            last(|e| e.items_processed),
            last(|e| e.items_failed),
        ),
        events: evs.len() as u64,
        errors: errs.len() as u64,
        last_errors: errs[errs.len().saturating_sub(ERRORS_KEPT)..].to_vec(),
        duration_ms,
    }
}

fn id_of(kind: Kind, e: &StoredEvent) -> Option<&String> {
    match kind {
        Kind::Process => e.event.process_id.as_ref(),
        Kind::Batch => e.event.batch_id.as_ref(),
    }
}

fn truths(kind: Kind, evs: &[StoredEvent]) -> BTreeMap<(Option<String>, String), Truth> {
    let mut groups: BTreeMap<(Option<String>, String), Vec<&StoredEvent>> = BTreeMap::new();
    for e in evs {
        if let Some(id) = id_of(kind, e) {
            groups
                .entry((e.event.tenant.clone(), id.clone()))
                .or_default()
                .push(e);
        }
    }
    groups
        .into_iter()
        .map(|(k, v)| (k, truth_of(kind, &v)))
        .collect()
}

fn status_truth(t: &Truth, p95: Option<i64>, now: i64, rule: &StuckRule) -> RunStatus {
    if let Some((_, o, _)) = t.finished {
        return o;
    }
    let elapsed = now - t.start;
    let threshold = p95.map(|p| ((p as f64 * 1000.0 * rule.factor) as i64).max(rule.min_micros));
    if elapsed > rule.max_micros || threshold.is_some_and(|th| elapsed > th) {
        RunStatus::Stuck
    } else {
        RunStatus::Running
    }
}

fn check(kind: Kind, evs: &[StoredEvent], now: i64) {
    let lim = limits(1_000);
    let mut tr = Tracker::new(kind, lim);
    for e in evs {
        tr.observe(e);
    }
    let truth = truths(kind, evs);
    assert_eq!(tr.len(), truth.len());
    let view = tr.view(now);
    // Runs.
    for ((tenant, id), t) in &truth {
        let got = view
            .by_id(id)
            .into_iter()
            .find(|r| &r.tenant == tenant)
            .expect("a tracked run");
        let mine = Truth {
            name: got.name().map(str::to_owned),
            start: got.start(),
            finished: got
                .finished
                .as_ref()
                .map(|f| (f.at, f.outcome, f.duration_ms)),
            items: (got.items_total, got.items_processed, got.items_failed),
            events: got.events,
            errors: got.errors,
            last_errors: got.last_errors.iter().cloned().collect(),
            duration_ms: got.duration_ms(),
        };
        assert_eq!(&mine, t, "run {tenant:?}/{id}");
    }
    // Figures per name, and statuses.
    let mut names: BTreeMap<(Option<String>, Option<String>), Vec<&Truth>> = BTreeMap::new();
    for ((tenant, _), t) in &truth {
        names
            .entry((tenant.clone(), t.name.clone()))
            .or_default()
            .push(t);
    }
    let all: Vec<&Run> = view.runs().collect();
    let figures = view.figures(&all);
    assert_eq!(figures.len(), names.len());
    for (f, ((tenant, name), ts)) in figures.iter().zip(&names) {
        assert_eq!((&f.tenant, &f.name), (tenant, name));
        let mut d: Vec<i64> = ts.iter().filter_map(|t| t.duration_ms).collect();
        d.sort();
        // Nearest rank: the smallest rank r with r/n >= p.
        let pct = |p: usize| {
            (1..=d.len())
                .find(|r| r * 100 >= p * d.len())
                .map(|r| d[r - 1])
        };
        let statuses: Vec<RunStatus> = ts
            .iter()
            .map(|t| status_truth(t, pct(95), now, &lim.stuck))
            .collect();
        let n = |s: RunStatus| statuses.iter().filter(|x| **x == s).count() as u64;
        assert_eq!(f.executions, ts.len() as u64);
        for (s, c) in &f.runs_by_status {
            assert_eq!(*c, n(*s), "{s:?} of {name:?}");
        }
        assert_eq!(f.duration_p50_ms, pct(50));
        assert_eq!(f.duration_p95_ms, pct(95));
        assert_eq!(
            f.success_rate,
            (!d.is_empty()).then(|| n(RunStatus::Succeeded) as f64 / d.len() as f64)
        );
        let mut starts: Vec<i64> = ts.iter().map(|t| t.start).collect();
        starts.sort();
        let window = (now - starts[0]).max(60 * MIN);
        assert_eq!(
            f.runs_per_day,
            ts.len() as f64 * 86_400_000_000.0 / window as f64
        );
        let mut gaps: Vec<i64> = starts.windows(2).map(|w| (w[1] - w[0]) / 1000).collect();
        gaps.sort();
        assert_eq!(
            f.median_start_gap_ms,
            gaps.get(gaps.len().wrapping_sub(1) / 2).copied()
        );
        assert_eq!(f.last_run.2, *starts.last().unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn runs_and_figures_equal_a_brute_force_computation(
        gens in prop::collection::vec(gen_event(), 1..120),
        dup_every in 0..5usize,
        now_min in 0..600i64,
    ) {
        let evs = build(&gens, dup_every);
        let now = 1_000 * MIN + now_min * MIN;
        check(Kind::Process, &evs, now);
        check(Kind::Batch, &evs, now);
    }
}

fn ev(
    seq: u64,
    pid: &str,
    phase: Option<Phase>,
    status: Option<EventStatus>,
    at_min: i64,
) -> StoredEvent {
    StoredEvent {
        seq,
        received_at: at_min * MIN,
        event: Event {
            action: "step".into(),
            process_id: Some(pid.into()),
            process_name: Some("job".into()),
            phase,
            status,
            timestamp: Some(at_min * MIN),
            ..Event::default()
        },
        provenance: None,
    }
}

#[test]
fn a_run_without_a_finish_is_stuck_past_its_thresholds() {
    let lim = limits(100);
    let mut tr = Tracker::new(Kind::Process, lim);
    // Without a finished run of its process: stuck only past stuck_max.
    tr.observe(&ev(1, "a", Some(Phase::Started), None, 0));
    let status = |tr: &Tracker, now_min: i64| {
        let v = tr.view(now_min * MIN);
        let r = v.by_id("a")[0];
        v.status(r)
    };
    assert_eq!(status(&tr, 119), RunStatus::Running);
    assert_eq!(status(&tr, 121), RunStatus::Stuck);
    // A finished run of 10 minutes: p95 = 10 min, threshold 30 min.
    tr.observe(&ev(2, "b", Some(Phase::Started), None, 0));
    tr.observe(&ev(
        3,
        "b",
        Some(Phase::Finished),
        Some(EventStatus::Success),
        10,
    ));
    assert_eq!(status(&tr, 30), RunStatus::Running);
    assert_eq!(status(&tr, 31), RunStatus::Stuck);
    // A 1-minute p95: stuck_min (5 min) rules.
    let mut tr = Tracker::new(Kind::Process, lim);
    tr.observe(&ev(1, "a", Some(Phase::Started), None, 0));
    tr.observe(&ev(2, "b", Some(Phase::Started), None, 0));
    tr.observe(&ev(3, "b", Some(Phase::Finished), None, 1));
    assert_eq!(status(&tr, 5), RunStatus::Running);
    assert_eq!(status(&tr, 6), RunStatus::Stuck);
}

#[test]
fn eviction_keeps_the_bound_and_drops_the_oldest_finished_runs_first() {
    let mut tr = Tracker::new(Kind::Process, limits(128));
    let mut seq = 0;
    // 100 running runs, then 400 finished ones.
    for i in 0..500 {
        seq += 1;
        let pid = format!("r{i}");
        tr.observe(&ev(seq, &pid, Some(Phase::Started), None, i));
        if i >= 100 {
            seq += 1;
            tr.observe(&ev(seq, &pid, Some(Phase::Finished), None, i));
        }
        assert!(tr.len() <= 128);
    }
    assert_eq!(tr.evicted() as usize + tr.len(), 500);
    let v = tr.view(600 * MIN);
    // Every running run survived; the finished ones kept are the newest.
    let running = v.runs().filter(|r| r.finished.is_none()).count();
    assert_eq!(running, 100);
    let oldest_kept = v
        .runs()
        .filter(|r| r.finished.is_some())
        .map(|r| r.first_seq)
        .min()
        .unwrap();
    let newest: u64 = v.runs().map(|r| r.last_seq).max().unwrap();
    assert_eq!(newest, seq);
    assert!(v
        .runs()
        .filter(|r| r.finished.is_some())
        .all(|r| r.first_seq >= oldest_kept));
    let kept_finished = v.runs().filter(|r| r.finished.is_some()).count() as u64;
    // The kept finished runs are the last ones started.
    for r in v.runs().filter(|r| r.finished.is_some()) {
        let i: u64 = r.id[1..].parse().unwrap();
        assert!(
            i >= 500 - kept_finished,
            "{} kept, older ones evicted first",
            r.id
        );
    }
}

/// The memory figures of ARCHITECTURE.md and the README: bytes a tracked run
/// holds (the tracker's estimate), for typical runs (36-byte ids, short
/// names, no error) and the worst case (three errors of the longest text).
#[test]
fn memory_per_tracked_run_stays_within_its_documented_bound() {
    for (errors, bound) in [(false, 1_000), (true, 1_800)] {
        for n in [1_000usize, 10_000, 100_000] {
            let mut tr = Tracker::new(Kind::Process, limits(n));
            for i in 0..n as u64 {
                let mut e = ev(i + 1, &format!("{:036}", i), Some(Phase::Started), None, 0);
                e.event.tenant = Some("tenant-0042".into());
                e.event.process_name = Some("nightly_invoice_export".into());
                if errors {
                    e.event.status = Some(EventStatus::Failure);
                    e.event.description = Some("x".repeat(1_000));
                    for _ in 0..ERRORS_KEPT {
                        tr.observe(&e);
                    }
                }
                tr.observe(&e);
            }
            assert_eq!(tr.len(), n);
            let per_run = tr.approx_bytes() / n;
            eprintln!(
                "{n} runs (errors: {errors}): {} bytes, {per_run} a run",
                tr.approx_bytes()
            );
            assert!(per_run < bound, "{per_run} bytes a run, over {bound}");
        }
    }
}

#[test]
fn expiry_drops_runs_older_than_the_horizon() {
    let mut lim = limits(100);
    lim.horizon_micros = 60 * MIN;
    let mut tr = Tracker::new(Kind::Process, lim);
    tr.observe(&ev(1, "old", Some(Phase::Started), None, 0));
    tr.observe(&ev(2, "new", Some(Phase::Started), None, 50));
    tr.expire(80 * MIN);
    let v = tr.view(80 * MIN);
    assert_eq!(v.runs().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["new"]);
    assert_eq!(tr.expired(), 1);
}

#[test]
fn error_text_is_cut_on_a_character_boundary() {
    let s = "é".repeat(200);
    let c = cut(&s, ERROR_BYTES_MAX);
    assert!(c.len() <= ERROR_BYTES_MAX && c.len() >= ERROR_BYTES_MAX - 1);
    assert_eq!(cut("abc", 2), "ab");
}
