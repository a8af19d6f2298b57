//! Pages in event-time order against a brute force, over segments of several
//! blocks of the newest-first early stop, with events far off their arrival
//! order in both directions.

use super::*;

/// An index of 6,000 events in two segments of several blocks, with events
/// far off their arrival order: backfilled (every 97th), stamped ten days
/// ahead, Stele's own records stamped later still, the newest of all deep in
/// the first segment, and a run of equal times across a block boundary.
fn scrambled() -> (tempfile::TempDir, TextIndex, Vec<StoredEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let ix = TextIndex::open(dir.path()).unwrap();
    let mut evs = events(3, 1, 6_000);
    // Besides the backfilled every 97th: a few arrive stamped ten days ahead
    // (newer than everything), so the newest events sit at low seqs, in the
    // last blocks of their segments, behind blocks of older ones.
    for ev in evs
        .iter_mut()
        .filter(|e| [7, 1_111, 2_222, 4_003].contains(&e.seq))
    {
        ev.event.timestamp = Some(DEFAULT_BASE_TIME + 10 * DAY + ev.seq as i64);
    }
    // Stele's own records (findings), stamped when they were made: newer than
    // every event, in every block. Left out by default, so the early stop
    // must not let them hold the bound; taken when asked for.
    for ev in evs.iter_mut().filter(|e| e.seq % 53 == 0) {
        ev.event.timestamp = Some(DEFAULT_BASE_TIME + 20 * DAY + (ev.seq as i64 * 7_919) % 10_007);
        ev.provenance = Some(crate::event::Provenance {
            ingested_by: crate::event::INGESTED_BY_STELE.into(),
            client_addr: None,
        });
    }
    // The newest of all is one of them, deep in the first segment's last block.
    evs[105].event.timestamp = Some(DEFAULT_BASE_TIME + 30 * DAY);
    // And a run of equal times across a block boundary (ties by seq).
    for ev in evs.iter_mut().filter(|e| (3_000..3_100).contains(&e.seq)) {
        ev.event.timestamp = Some(DEFAULT_BASE_TIME + 2_500 * 700_000);
    }
    // A stretch where every third event is backfilled five days: blocks too
    // mixed for exceptions, kept whole with a wide range.
    for ev in evs
        .iter_mut()
        .filter(|e| (4_500..5_600).contains(&e.seq) && e.seq % 3 == 0)
    {
        ev.event.timestamp = Some(DEFAULT_BASE_TIME - 5 * DAY + ev.seq as i64);
    }
    let mut w = ix.writer().unwrap();
    index_all(&mut w, &evs[..4_000], 4_000);
    index_all(&mut w, &evs[4_000..], 2_000);
    assert!(!ix.shared.reader.searcher().segment_readers().is_empty());
    assert!(ix.num_docs() as u32 > 2 * super::super::timemap::BLOCK_DOCS);
    (dir, ix, evs)
}

#[test]
fn time_ordered_pages_match_brute_force_across_blocks() {
    let (_dir, ix, evs) = scrambled();
    let tenant = evs[17].event.tenant.clone();
    let filters = [
        Filter::default(),
        Filter {
            stele_records: crate::query::OwnRecords::Include,
            ..Filter::default()
        },
        Filter {
            tenant: tenant.clone(),
            ..Filter::default()
        },
        Filter {
            tenant,
            stele_records: crate::query::OwnRecords::Include,
            ..Filter::default()
        },
    ];
    let own = |e: &StoredEvent| {
        e.provenance
            .as_ref()
            .is_some_and(|p| p.ingested_by == crate::event::INGESTED_BY_STELE)
    };
    for f in &filters {
        for first in [1, 1_500] {
            let mut keys: Vec<(i64, u64)> = evs
                .iter()
                .filter(|e| e.seq >= first && brute_match(e, f))
                .filter(|e| f.own_records() == crate::query::OwnRecords::Include || !own(e))
                .map(|e| (event_time(e), e.seq))
                .collect();
            for order in [Order::Desc, Order::Asc] {
                keys.sort_unstable();
                if order == Order::Desc {
                    keys.reverse();
                }
                for limit in [1, 10, 100, 1_000] {
                    let got = ix.search_by_time(f, order, limit, None, first).unwrap();
                    let got: Vec<(i64, u64)> = got.iter().map(|p| (p.time, p.seq)).collect();
                    assert_eq!(
                        got,
                        keys[..limit.min(keys.len())],
                        "{order:?} {limit} {first} {f:?}"
                    );
                }
                // A cursor walk visits every key once, in order.
                let mut walked = Vec::new();
                let mut after = None;
                loop {
                    let page = ix.search_by_time(f, order, 97, after, first).unwrap();
                    if page.is_empty() {
                        break;
                    }
                    after = page.last().copied();
                    walked.extend(page.iter().map(|p| (p.time, p.seq)));
                }
                assert_eq!(walked, keys, "walk {order:?} {first} {f:?}");
            }
        }
    }
}

/// Counts and pages in time windows (the block-skipping time range of
/// `timemap`) against a brute force: windows edged at the outliers, inside
/// one block's span, and across everything, with Stele's records left out,
/// taken or alone.
#[test]
fn time_windows_match_brute_force_across_blocks() {
    let (_dir, ix, evs) = scrambled();
    let mut edges: Vec<i64> = [
        7,
        105,
        1_111,
        2_000,
        3_050,
        4_003,
        4_502,
        5_000,
        5_999,
        97 * 30,
        53 * 40,
    ]
    .iter()
    .flat_map(|&i| {
        let t = event_time(&evs[i]);
        [t, t + 1]
    })
    .collect();
    edges.extend([
        i64::MIN + 1,
        DEFAULT_BASE_TIME,
        DEFAULT_BASE_TIME + 20 * DAY,
        i64::MAX,
    ]);
    let tenant = evs[17].event.tenant.clone();
    let own_records = [
        crate::query::OwnRecords::Exclude,
        crate::query::OwnRecords::Include,
        crate::query::OwnRecords::Only,
    ];
    for &since in &edges {
        for &until in edges.iter().filter(|&&u| u > since) {
            for own in own_records {
                for tenant in [None, tenant.clone()] {
                    let f = Filter {
                        since: Some(since),
                        until: Some(until),
                        stele_records: own,
                        tenant,
                        ..Filter::default()
                    };
                    let is_own = |e: &StoredEvent| {
                        e.provenance
                            .as_ref()
                            .is_some_and(|p| p.ingested_by == crate::event::INGESTED_BY_STELE)
                    };
                    let mut keys: Vec<(i64, u64)> = evs
                        .iter()
                        .filter(|e| brute_match(e, &f))
                        .filter(|e| match own {
                            crate::query::OwnRecords::Exclude => !is_own(e),
                            crate::query::OwnRecords::Include => true,
                            crate::query::OwnRecords::Only => is_own(e),
                        })
                        .map(|e| (event_time(e), e.seq))
                        .collect();
                    assert_eq!(ix.count(&f).unwrap(), keys.len() as u64, "{f:?}");
                    // What `GET /v1/count` answers: the cached totals less the edges.
                    for first in [1, 1_500] {
                        let kept = keys.iter().filter(|k| k.1 >= first).count() as u64;
                        assert_eq!(ix.count_from(&f, first).unwrap(), kept, "{first} {f:?}");
                    }
                    keys.sort_unstable();
                    let got = ix.search_by_time(&f, Order::Asc, 50, None, 1).unwrap();
                    let got: Vec<(i64, u64)> = got.iter().map(|p| (p.time, p.seq)).collect();
                    assert_eq!(got, keys[..50.min(keys.len())], "asc {f:?}");
                    keys.reverse();
                    let got = ix.search_by_time(&f, Order::Desc, 50, None, 1).unwrap();
                    let got: Vec<(i64, u64)> = got.iter().map(|p| (p.time, p.seq)).collect();
                    assert_eq!(got, keys[..50.min(keys.len())], "desc {f:?}");
                }
            }
        }
    }
}

#[test]
fn skipping_exceptions_lands_on_the_first_not_below() {
    use super::super::timed::skip_below;
    let xs: Vec<(DocId, i64)> = (0..300).map(|i| (i * 9 + (i % 7), 0)).collect();
    for from in 0..=xs.len() {
        for doc in 0..2_800 {
            let want = from + xs[from..].iter().take_while(|e| e.0 < doc).count();
            assert_eq!(skip_below(&xs, from, doc), want, "{from} {doc}");
        }
    }
}

/// `TimeMap::span` of any run of blocks is the least and greatest time of
/// their docs, exceptions included and (with the term) Stele's records left
/// out: what `partials` and `chunks` decide by.
#[test]
fn a_time_map_span_is_the_range_of_its_blocks_docs() {
    use super::super::timemap::{TimeMap, BLOCK_DOCS};
    let (_dir, ix, _evs) = scrambled();
    let own = Term::from_field_text(ix.shared.fields.ingested_by, event::INGESTED_BY_STELE);
    let searcher = ix.shared.reader.searcher();
    for reader in searcher.segment_readers() {
        let times = super::super::columns::times(reader).unwrap();
        let mut owned = std::collections::HashSet::new();
        let mut postings = reader
            .inverted_index(own.field())
            .unwrap()
            .read_postings(&own, IndexRecordOption::Basic)
            .unwrap()
            .unwrap();
        while postings.doc() != TERMINATED {
            owned.insert(postings.doc());
            postings.advance();
        }
        assert!(!owned.is_empty());
        let blocks = reader.max_doc().div_ceil(BLOCK_DOCS);
        for with_own in [false, true] {
            let map = TimeMap::of(reader, &times, with_own.then_some(&own)).unwrap();
            for start in 0..blocks {
                for end in [start + 1, start + 3, blocks, u32::MAX] {
                    let docs =
                        start * BLOCK_DOCS..(end.min(blocks) * BLOCK_DOCS).min(reader.max_doc());
                    let ts: Vec<i64> = docs
                        .filter(|d| !(with_own && owned.contains(d)))
                        .map(|d| times.first(d).unwrap())
                        .collect();
                    let want = ts.iter().min().map(|min| (*min, *ts.iter().max().unwrap()));
                    assert_eq!(
                        map.span(start..end),
                        want,
                        "blocks {start}..{end} own {with_own}"
                    );
                }
            }
        }
    }
}
