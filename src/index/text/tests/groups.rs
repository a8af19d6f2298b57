//! Counts and statistics groups of the index against the brute force: called by
//! `check_filter` for every random filter of the brute-force test.

use super::*;

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
        ..StatsRequest::default()
    };
    let got = ix.stats_of(f, &request, first).unwrap();
    assert_eq!(got.total, kept.len() as u64);
    assert_eq!(got.histogram, None);
    assert_eq!(got.last_24h, None);
    for (g, field) in got.groups.iter().zip(&groups) {
        let spec = event::field(field).unwrap();
        let mut map: HashMap<String, u64> = HashMap::new();
        let mut missing = 0;
        for e in &kept {
            match (spec.get)(e) {
                // Counted as the filter compares: folded, but a tenant exactly.
                FieldValue::Str(v) if spec.indexed == Indexed::ExactKeyword => {
                    *map.entry(v.to_owned()).or_insert(0) += 1
                }
                FieldValue::Str(v) => {
                    *map.entry(crate::query::fold_case(v).into_owned())
                        .or_insert(0) += 1
                }
                _ => missing += 1,
            }
        }
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
