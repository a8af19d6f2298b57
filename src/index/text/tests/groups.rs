//! Counts and statistics groups of the index against the brute force: called by
//! `check_filter` for every random filter of the brute-force test.

use super::*;
use crate::index::text::values::fold_variants;

/// `count_from` and `stats_of` with one or two random groups, a random `top` and a
/// random `first` (as if retention had dropped the seqs below it).
pub(super) fn check_counts_and_groups(
    ix: &TextIndex,
    evs: &[StoredEvent],
    matching: &[&StoredEvent],
    f: &Filter,
    rng: &mut Rng,
) {
    let first = match evs.is_empty() || rng.chance(50) {
        true => 0,
        false => rng.pick(evs).seq,
    };
    let kept: Vec<&StoredEvent> = matching
        .iter()
        .copied()
        .filter(|e| e.seq >= first)
        .collect();
    assert_eq!(
        ix.count_from(f, first).unwrap(),
        kept.len() as u64,
        "count_from {first} {f:?}"
    );
    let fields: Vec<&'static str> = group_fields().collect();
    let mut groups = vec![*rng.pick(&fields)];
    let other = *rng.pick(&fields);
    if !groups.contains(&other) {
        groups.push(other);
    }
    let top = 1 + rng.below(6) as usize;
    let request = StatsRequest {
        groups: groups.clone(),
        top,
        rates: rng.chance(50),
        risk: rng.chance(50),
        ..StatsRequest::default()
    };
    let got = ix.stats_of(f, &request, first).unwrap();
    assert_eq!(got.total, kept.len() as u64);
    assert_eq!(got.histogram, None);
    assert_eq!(got.last_24h, None);
    for (g, field) in got.groups.iter().zip(&groups) {
        let spec = event::field(field).unwrap();
        let mut exact: HashMap<String, u64> = HashMap::new();
        let mut folded: Vec<String> = Vec::new();
        let mut missing = 0;
        for e in &kept {
            match (spec.get)(e) {
                // Counted as the filter compares: case folded, but a tenant exactly.
                FieldValue::Str(v) if spec.indexed == Indexed::ExactKeyword => {
                    *exact.entry(v.to_owned()).or_insert(0) += 1
                }
                FieldValue::Str(v) => folded.push(v.to_owned()),
                _ => missing += 1,
            }
        }
        let map = if spec.indexed == Indexed::ExactKeyword {
            exact
        } else {
            folded_counts(folded.into_iter())
        };
        let mut want = ranked(map);
        let distinct = want.len() as u64;
        want.truncate(top);
        let want = GroupCounts {
            field,
            truncated: distinct > top as u64,
            values: want,
            distinct,
            missing,
        };
        assert_eq!(g, &want, "group {field} top {top} first {first} {f:?}");
    }
    assert_eq!(got.risk, request.risk.then(|| brute_risk(&kept)));
    check_recent(ix, evs, f, first, rng);
    if request.rates {
        let n = kept.len().max(1) as f64;
        let fail = kept
            .iter()
            .filter(|e| e.event.status == Some(Status::Failure))
            .count();
        let sev = kept
            .iter()
            .filter(|e| e.event.severity >= Some(Severity::Error))
            .count();
        assert_eq!(got.failure_rate, Some(fail as f64 / n));
        assert_eq!(got.error_severity_rate, Some(sev as f64 / n));
    }
}

/// `recent` (the dashboard's one pass) against the brute force, at a random
/// `now` among the events' times (so the windows cut through them).
fn check_recent(ix: &TextIndex, evs: &[StoredEvent], f: &Filter, first: u64, rng: &mut Rng) {
    const MIN: i64 = 60_000_000;
    let now = event_time(rng.pick(evs)) + rng.below(90) as i64 * MIN;
    let request = RecentRequest {
        now,
        top_users: 1 + rng.below(5) as usize,
        latest: rng.below(12) as usize,
    };
    let got = ix.recent(f, &request, first).unwrap();
    // The filter's own window is replaced by the dashboard's.
    let unbounded = Filter {
        since: None,
        until: None,
        ..f.clone()
    };
    let day: Vec<&StoredEvent> = evs
        .iter()
        .filter(|e| e.seq >= first && brute_match(e, &unbounded))
        .filter(|e| event_time(e) >= now - 24 * 60 * MIN)
        .collect();
    let hour: Vec<&&StoredEvent> = day
        .iter()
        .filter(|e| event_time(e) >= now - 60 * MIN)
        .collect();
    let n = |p: &dyn Fn(&Event) -> bool| hour.iter().filter(|e| p(&e.event)).count() as u64;
    let risk = |lo: u8, hi: u8| n(&|e| e.risk_score.is_some_and(|r| lo <= r && r <= hi));
    let users = |since: i64| {
        folded_counts(
            hour.iter()
                .filter(|e| event_time(e) >= since)
                .filter_map(|e| e.event.user_id.clone()),
        )
    };
    let mut top = ranked(users(now - 60 * MIN));
    let active = top.len() as u64;
    top.truncate(request.top_users);
    let mut latest: Vec<(i64, u64)> = day.iter().map(|e| (event_time(e), e.seq)).collect();
    latest.sort_unstable_by(|a, b| b.cmp(a));
    latest.truncate(request.latest);
    let want = RecentAnswer {
        events_24h: day.len() as u64,
        events_1h: hour.len() as u64,
        failures_1h: n(&|e| e.status == Some(Status::Failure)),
        errors_1h: n(&|e| e.severity == Some(Severity::Error)),
        critical_1h: n(&|e| e.severity == Some(Severity::Critical)),
        risk_1h: [risk(0, 30), risk(31, 70), risk(71, 100)],
        active_users_1h: active,
        top_users_1h: top,
        online_users_15m: users(now - 15 * MIN).len() as u64,
        latest,
    };
    assert_eq!(got, want, "recent {request:?} first {first} {f:?}");
}

/// Counts per value as filters compare them: spellings that differ only in
/// letter case are one value, shown as its most frequent spelling (ties: the
/// smallest).
fn folded_counts(values: impl Iterator<Item = String>) -> HashMap<String, u64> {
    let mut by_spelling: HashMap<String, u64> = HashMap::new();
    for v in values {
        *by_spelling.entry(v).or_insert(0) += 1;
    }
    let mut groups: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for (v, n) in by_spelling {
        groups.entry(v.to_lowercase()).or_default().push((v, n));
    }
    groups
        .into_values()
        .map(|mut spellings| {
            spellings.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let total = spellings.iter().map(|s| s.1).sum();
            (spellings.swap_remove(0).0, total)
        })
        .collect()
}

#[test]
fn spellings_a_filter_does_not_tell_apart_are_one_value_shown_as_the_most_frequent() {
    let map = |pairs: &[(&str, u64)]| -> super::super::stats::Counts {
        pairs.iter().map(|(v, n)| (v.to_string(), *n)).collect()
    };
    let got = fold_variants(map(&[
        ("Login", 3),
        ("login", 1),
        ("LOGIN", 3),
        ("update", 2),
        ("Ünïcode", 1),
        ("ünïcode", 2),
    ]));
    // Ties go to the smallest spelling ("LOGIN" < "Login").
    assert_eq!(got, map(&[("LOGIN", 7), ("update", 2), ("ünïcode", 3)]));
    let brute = folded_counts(
        [("Login", 3), ("login", 1), ("LOGIN", 3), ("update", 2)]
            .iter()
            .flat_map(|(v, n)| std::iter::repeat_n(v.to_string(), *n as usize)),
    );
    assert_eq!(
        brute,
        map(&[("LOGIN", 7), ("update", 2)]).into_iter().collect()
    );
    // Nothing to fold: the same map back.
    let plain = map(&[("a", 1), ("b", 2)]);
    assert_eq!(fold_variants(plain.clone()), plain);
}
