//! Cursor walks while events arrive: every page continues strictly after the
//! previous one, nothing repeats and nothing already there is skipped.

use super::*;

/// Event-time order while events arrive between pages, half of them
/// backfilled (days older than anything listed): every page continues
/// strictly after the previous one, nothing repeats, and nothing that was
/// there at the first page is skipped.
#[test]
fn time_ordered_cursors_stay_exact_while_backfilled_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 2 * DAY));
    let mut gen = EventGen::new(9).with_base_time(BEFORE_MIDNIGHT - 10 * DAY);
    let log = Arc::new(open(dir.path(), &clock, 16 * 1024));
    let mut shift = 0;
    let mut batch = |gen: &mut EventGen, n: usize| {
        let mut evs = events(gen, n, 400);
        shift += 1;
        for ev in &mut evs {
            // Alternately backfilled by up to 8 days and current.
            if shift % 2 == 0 {
                ev.timestamp = ev.timestamp.map(|t| t - (shift % 8 + 1) * DAY);
            }
        }
        evs
    };
    for _ in 0..8 {
        log.append(&batch(&mut gen, 15), &stele::event::Provenance::cli())
            .unwrap();
    }
    let idx = Arc::new(Indexes::open(dir.path(), log.clone(), config()).unwrap());
    assert!(idx.wait_indexed(log.last_seq(), Duration::from_secs(30)));
    let key = stele::query::cursor_key(dir.path()).unwrap();
    let engine = Engine::new(log.clone(), idx.clone(), clock.clone(), key);
    for order in [Order::Desc, Order::Asc] {
        let existing: HashSet<u64> = (1..=log.last_seq()).collect();
        let mut q = Query {
            order,
            limit: 7,
            ..Query::default()
        };
        assert_eq!(q.sort, Sort::Time, "event time is the default");
        let mut seen: Vec<(i64, u64)> = Vec::new();
        loop {
            let page = engine.list(&q).unwrap();
            seen.extend(page.events.iter().map(|e| (event_time(e), e.seq)));
            if seen.len() < 60 {
                log.append(&batch(&mut gen, 9), &stele::event::Provenance::cli())
                    .unwrap();
                assert!(idx.wait_indexed(log.last_seq(), Duration::from_secs(30)));
            }
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
            assert!(seen.len() < 10_000, "the walk does not end");
        }
        for pair in seen.windows(2) {
            match order {
                Order::Desc => assert!(pair[0] > pair[1], "{order:?}: {pair:?}"),
                Order::Asc => assert!(pair[0] < pair[1], "{order:?}: {pair:?}"),
            }
        }
        let got: HashSet<u64> = seen.iter().map(|k| k.1).collect();
        assert_eq!(got.len(), seen.len(), "an event was listed twice");
        let missed: Vec<&u64> = existing.difference(&got).collect();
        assert!(missed.is_empty(), "{order:?} skipped {missed:?}");
        // And the walk saw the backfilled ones where they belong: the first
        // page of a fresh listing is the greatest (or least) keys of all.
        let all: Vec<StoredEvent> = log.iter().map(|e| e.unwrap()).collect();
        let want = brute_in(all.iter(), (Sort::Time, order));
        let first = engine
            .list(&Query {
                order,
                limit: 20,
                ..Query::default()
            })
            .unwrap();
        let first: Vec<u64> = first.events.iter().map(|e| e.seq).collect();
        assert_eq!(first, want[..20]);
    }
}

#[test]
fn cursors_stay_exact_while_events_arrive_and_segments_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 2 * DAY));
    let mut gen = EventGen::new(8);
    let log = Arc::new(open(dir.path(), &clock, 16 * 1024));
    log.append(
        &events(&mut gen, 120, 400),
        &stele::event::Provenance::cli(),
    )
    .unwrap();
    let idx = Arc::new(Indexes::open(dir.path(), log.clone(), config()).unwrap());
    assert!(idx.wait_indexed(120, Duration::from_secs(30)));
    let key = stele::query::cursor_key(dir.path()).unwrap();
    let engine = Engine::new(log.clone(), idx.clone(), clock.clone(), key);
    for order in [Order::Desc, Order::Asc] {
        let before = log.last_seq();
        let mut q = Query {
            sort: Sort::Seq,
            order,
            limit: 7,
            ..Query::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = engine.list(&q).unwrap();
            seen.extend(page.events.iter().map(|e| e.seq));
            // New events (and new segments, 16 KiB each) between the first
            // pages.
            if seen.len() < 50 {
                log.append(&events(&mut gen, 9, 400), &stele::event::Provenance::cli())
                    .unwrap();
                clock.advance(DAY / 10);
                assert!(idx.wait_indexed(log.last_seq(), Duration::from_secs(30)));
            }
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
            assert!(seen.len() < 10_000, "the walk does not end");
        }
        match order {
            // Newest first: exactly what existed at the first page.
            Order::Desc => assert_eq!(seen, (1..=before).rev().collect::<Vec<_>>()),
            // Oldest first: everything, each once, in order, including what
            // arrived during the walk.
            Order::Asc => {
                assert_eq!(seen, (1..=log.last_seq()).collect::<Vec<_>>());
                assert!(seen.len() as u64 > before);
            }
        }
    }
    assert!(
        log.segments().len() > 5,
        "{} segments",
        log.segments().len()
    );
}
