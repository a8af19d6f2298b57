//! Pages in event-time order against a brute force, over segments of several
//! blocks of the newest-first early stop, with events far off their arrival
//! order in both directions.

use super::*;

#[test]
fn time_ordered_pages_match_brute_force_across_blocks() {
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
    let mut w = ix.writer().unwrap();
    index_all(&mut w, &evs[..4_000], 4_000);
    index_all(&mut w, &evs[4_000..], 2_000);
    let segments = ix.shared.reader.searcher().segment_readers().len();
    assert!(segments >= 1);
    assert!(ix.num_docs() as u32 > 2 * super::super::timed::BLOCK_DOCS);

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
