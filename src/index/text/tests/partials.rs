//! The cache of per-segment partials (`partials`) against the single pass
//! without it (`stats_of_uncached`): random filters, windows, groups, parts and
//! `first`, asked several times each (cold, then from the cache), across
//! commits, a merge of every segment, a retention delete and more commits.

use super::*;
use proptest::prelude::{proptest, ProptestConfig};

/// A random question: a filter without a window, and the parts asked.
fn question(rng: &mut Rng, evs: &[StoredEvent]) -> (Filter, StatsRequest) {
    let fields: Vec<&'static str> = group_fields().collect();
    let mut base = match rng.chance(20) {
        true => Filter::default(),
        false => Filter {
            since: None,
            until: None,
            ..random_filter(rng, evs)
        },
    };
    // Stele's own records are left out unless asked for.
    base.stele_records = *rng.pick(&[
        crate::query::OwnRecords::Exclude,
        crate::query::OwnRecords::Exclude,
        crate::query::OwnRecords::Include,
        crate::query::OwnRecords::Only,
    ]);
    let mut groups: Vec<&'static str> = Vec::new();
    for _ in 0..rng.below(4) {
        let g = *rng.pick(&fields);
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let request = StatsRequest {
        groups,
        top: 1 + rng.below(8) as usize,
        last_24h: rng
            .chance(40)
            .then(|| event_time(rng.pick(evs)) + rng.below(2 * DAY as u64) as i64),
        histogram: rng
            .chance(50)
            .then(|| *rng.pick(&[60_000_000, 3_600_000_000, DAY, 7 * DAY + 1])),
        rates: rng.chance(50),
        risk: rng.chance(50),
    };
    (base, request)
}

/// Asks the questions of `kept` (asked before: their partials are cached)
/// and `fresh` new ones, each in three windows, twice, and compares every
/// answer with the single pass's.
fn compare(
    ix: &TextIndex,
    evs: &[StoredEvent],
    rng: &mut Rng,
    kept: &[(Filter, StatsRequest)],
    fresh: usize,
    first: u64,
) {
    let mut questions = kept.to_vec();
    questions.extend((0..fresh).map(|_| question(rng, evs)));
    for (base, request) in &questions {
        for _ in 0..3 {
            // A window through the events (so that it cuts segments), or none.
            let time = |rng: &mut Rng| event_time(rng.pick(evs)) + rng.below(3) as i64 - 1;
            let f = Filter {
                since: rng.chance(60).then(|| time(rng)),
                until: rng.chance(40).then(|| time(rng)),
                ..base.clone()
            };
            for pass in 0..2 {
                let want = ix.stats_of_uncached(&f, request, first).unwrap();
                let got = ix.stats_of(&f, request, first).unwrap();
                assert_eq!(got, want, "pass {pass} first {first} {request:?} {f:?}");
            }
        }
    }
}

/// `events` with one in seven turned into Stele's own records (findings),
/// stamped when they were made: a month after the events around them, so a
/// segment's time range reaches far past its events'.
fn with_findings(mut evs: Vec<StoredEvent>) -> Vec<StoredEvent> {
    for ev in evs.iter_mut().filter(|e| e.seq % 7 == 3) {
        ev.provenance = Some(crate::event::Provenance::stele());
        ev.event.timestamp = Some(DEFAULT_BASE_TIME + 30 * DAY + ev.seq as i64);
    }
    evs
}

fn exact_across_commits_merges_and_deletes(seed: u64, commit_every: usize, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ix = TextIndex::open(dir.path()).unwrap();
    // Half the cases keep the numbered values within 1 KiB: their dicts are
    // replaced between questions while partials numbered by the old ones
    // are still cached.
    const SMALL: usize = 1 << 10;
    let small = seed % 2 == 0;
    if small {
        ix.shared.values.set_bound(SMALL);
    }
    let mut rng = Rng(EventGen::new(seed ^ 0x5eed));
    let mut evs = with_findings(events(seed, 1, n));
    let mut w = ix.writer().unwrap();
    w.writer
        .set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    index_all(&mut w, &evs, commit_every);
    let kept: Vec<(Filter, StatsRequest)> = (0..4).map(|_| question(&mut rng, &evs)).collect();
    compare(&ix, &evs, &mut rng, &kept, 3, 0);
    // Retention dropped seqs the index still holds (`first`).
    let first = 1 + rng.below(n as u64 / 2);
    compare(&ix, &evs, &mut rng, &kept, 2, first);
    // Every segment merged into one: new segment ids.
    let ids = ix.shared.index.searchable_segment_ids().unwrap();
    if ids.len() > 1 {
        w.writer.merge(&ids).wait().unwrap();
    }
    w.commit(evs.last().unwrap().seq).unwrap();
    compare(&ix, &evs, &mut rng, &kept, 2, 0);
    // A retention delete: the same segment ids, fewer live documents.
    w.delete_below(first).unwrap();
    w.commit(evs.last().unwrap().seq).unwrap();
    evs.retain(|e| e.seq >= first);
    compare(&ix, &evs, &mut rng, &kept, 2, first);
    // New events, some backfilled into the cached segments' time ranges.
    let more = with_findings(events(seed + 1, n as u64 + 1, n / 2));
    index_all(&mut w, &more, commit_every);
    evs.extend(more);
    compare(&ix, &evs, &mut rng, &kept, 2, first);
    let s = ix.partials_stats();
    assert!(s.hits > 0 && s.misses > 0, "{s:?}");
    assert!(s.bytes as usize <= PARTIALS_BYTES_MAX);
    let before = ix.values_stats();
    if small {
        // A question starts within the bound, replacing dicts if it must.
        ix.shared.values.dicts(&[]);
        let after = ix.values_stats();
        assert!(after.bytes as usize <= SMALL, "{after:?}");
        assert_eq!(after.resets > before.resets, before.bytes as usize > SMALL);
    } else {
        assert_eq!(before.resets, 0, "{before:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn cached_statistics_equal_the_single_pass(
        seed in 0u64..1_000_000,
        commit_every in 40usize..400,
        n in 300usize..1_200,
    ) {
        exact_across_commits_merges_and_deletes(seed, commit_every, n);
    }
}

#[test]
fn the_cache_drops_entries_of_segments_gone_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TextIndex::open(dir.path()).unwrap();
    let evs = events(3, 1, 600);
    let mut w = ix.writer().unwrap();
    w.writer
        .set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    index_all(&mut w, &evs, 100);
    let request = StatsRequest {
        groups: vec!["action", "user_id"],
        top: 5,
        ..StatsRequest::default()
    };
    ix.stats_of(&Filter::default(), &request, 0).unwrap();
    let cold = ix.partials_stats();
    assert_eq!((cold.entries, cold.misses, cold.hits), (6, 6, 0));
    ix.stats_of(&Filter::default(), &request, 0).unwrap();
    assert_eq!(ix.partials_stats().hits, 6);
    // A facet of one of the groups asks nothing new of the segments.
    let facet = StatsRequest {
        groups: vec!["user_id"],
        top: 5,
        ..StatsRequest::default()
    };
    ix.stats_of(&Filter::default(), &facet, 0).unwrap();
    assert_eq!(ix.partials_stats().hits, 12);
    let ids = ix.shared.index.searchable_segment_ids().unwrap();
    w.writer.merge(&ids).wait().unwrap();
    w.commit(600).unwrap();
    ix.stats_of(&Filter::default(), &request, 0).unwrap();
    let merged = ix.partials_stats();
    assert_eq!(merged.entries, 1, "{merged:?}");
    assert_eq!(merged.evictions, 6);
    // A retention delete changes the segment's key.
    w.delete_below(100).unwrap();
    w.commit(600).unwrap();
    ix.stats_of(&Filter::default(), &request, 0).unwrap();
    let deleted = ix.partials_stats();
    assert_eq!((deleted.entries, deleted.evictions), (1, 7), "{deleted:?}");
    assert_eq!(deleted.misses, merged.misses + 1);
}
