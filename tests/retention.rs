//! Retention end to end in-process: days of events across UTC midnights,
//! a TTL, a legal hold; then the dropped days are gone from the files, the
//! log, both indexes and the answers, what remains verifies, and a cursor
//! into dropped data is a clear `Gone`.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use stele::clock::{Clock, ManualClock};
use stele::index::{IndexConfig, Indexes};
use stele::query::{Engine, Query, QueryError};
use stele::retention::{apply, plan, Hold, RetentionConfig, Seg};
use stele::testkit::EventGen;

const DAY: i64 = 86_400_000_000;

fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn expired_days_leave_the_log_and_both_indexes_and_the_rest_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Day 0 starts 2026-11-01; five days of 300 events, small segments.
    let start = BEFORE_MIDNIGHT - 23 * DAY; // 2026-10-31T23:59Z
    let clock = Arc::new(ManualClock::new(start + 2 * 60_000_000));
    let log = Arc::new(open(dir, &clock, 64 * 1024));
    let mut gen = EventGen::new(9);
    let mut ids_by_day = Vec::new();
    for day in 0..5 {
        clock.set(start + 2 * 60_000_000 + day * DAY);
        let evs = events(&mut gen, 300, 400);
        ids_by_day.push(evs.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
        log.append(&evs).unwrap();
    }
    let indexes = Arc::new(Indexes::open(dir, log.clone(), IndexConfig::default()).unwrap());
    assert!(indexes.wait_indexed(1500, Duration::from_secs(60)));
    let engine = Engine::new(log.clone(), indexes.clone(), clock.clone(), [7; 32]);
    let now = clock.now_micros();
    let newest_first = Query::parse(&pairs(&[("limit", "10"), ("order", "asc")]), now).unwrap();
    let page = engine.list(&newest_first).unwrap();
    let old_cursor = page.next_cursor.clone().unwrap();

    // Today is day 4 (2026-11-05); a TTL of 1 day expires days 0 to 2, but
    // a hold on day 1 keeps it and everything after it.
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 5).unwrap();
    let short = RetentionConfig {
        days: Some(1),
        ..Default::default()
    };
    let cfg = RetentionConfig {
        days: Some(2),
        ..Default::default()
    };
    let hold = Hold {
        name: "case-7".into(),
        tenant: None,
        from: "2026-11-02".parse().ok(),
        until: "2026-11-02".parse().ok(),
        reason: "subpoena".into(),
    };
    let segs = || -> Vec<Seg> { log.segments().into_iter().map(Into::into).collect() };
    let tenants = |s: &Seg| stele::retention::tenants_in(&s.path);
    let p = plan(&segs(), today, &short, &[hold], tenants).unwrap();
    let verdicts: Vec<(String, bool)> = p.iter().map(|d| (d.day.clone(), d.drop)).collect();
    assert_eq!(
        verdicts,
        vec![
            ("2026-11-01".into(), true),
            ("2026-11-02".into(), false),
            ("2026-11-03".into(), false),
            ("2026-11-04".into(), false),
            ("2026-11-05".into(), false),
        ],
        "{p:#?}"
    );
    assert!(p[1].reason.contains("legal hold \"case-7\" (subpoena)"));
    assert!(
        p[2].reason.contains("an older day is kept"),
        "{}",
        p[2].reason
    );

    assert!(p[4].reason.contains("active segment"), "{}", p[4].reason);

    // With a TTL of 2 days and no hold: days 0 and 1 go, day 2 is within it.
    let p = plan(&segs(), today, &cfg, &[], tenants).unwrap();
    assert!(
        p[2].reason.contains("within its TTL of 2 days"),
        "{}",
        p[2].reason
    );
    assert_eq!(p.iter().filter(|d| d.drop).count(), 2, "{p:#?}");
    let files_before = segment_files(dir).len();
    let done = apply(dir, &log, &indexes, &p, "2026-11-05T00:00:00Z").unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(log.first_seq(), 601);
    assert!(segment_files(dir).len() < files_before);
    assert!(segment_files(dir).iter().all(|f| !f
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("2026-11-01")
        && !f
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("2026-11-02")));
    assert!(indexes.wait_dropped(601, Duration::from_secs(30)));
    // Gone from every answer.
    let all = Query::parse(&pairs(&[("limit", "1000"), ("order", "asc")]), now).unwrap();
    let first = engine.list(&all).unwrap();
    assert_eq!(first.events[0].seq, 601);
    let everything = stele::index::text::Filter::default();
    assert_eq!(engine.count(&everything).unwrap(), 900);
    for id in ids_by_day[0].iter().chain(&ids_by_day[1]).step_by(37) {
        assert!(engine.get_by_id(id).unwrap().is_none(), "{id} survived");
    }
    assert!(engine.get_by_id(&ids_by_day[2][0]).unwrap().is_some());
    // A cursor into the dropped days answers Gone with the oldest seq.
    let mut q = newest_first.clone();
    q.cursor = Some(old_cursor);
    match engine.list(&q) {
        Err(QueryError::Gone { first_seq, .. }) => assert_eq!(first_seq, 601),
        other => panic!("expected Gone, got {other:?}"),
    }
    // The drop log says what went and why.
    let record = std::fs::read_to_string(dir.join("retention.log")).unwrap();
    assert_eq!(record.lines().count(), 2);
    assert!(record.contains("\"day\":\"2026-11-01\"") && record.contains("past its TTL of 2 days"));
    drop(engine);
    drop(indexes);
    drop(log);

    // What remains verifies: the oldest kept segment anchors the chain.
    assert_eq!(verify(&[dir]).0, 0);
    // Reopening: same first seq, indexes consistent with the log.
    let log = Arc::new(open(dir, &clock, 64 * 1024));
    assert_eq!(log.first_seq(), 601);
    assert_eq!(log.last_seq(), 1500);
    let indexes = Indexes::open(dir, log.clone(), IndexConfig::default()).unwrap();
    assert!(indexes.wait_indexed(1500, Duration::from_secs(60)));
    assert_eq!(indexes.text.count(&everything).unwrap(), 900);
    // The key index is cleaned in bounded steps behind the answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ids: BTreeSet<u64> = loop {
        let ids: BTreeSet<u64> = indexes
            .kv
            .all_id_seqs()
            .unwrap()
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        if ids.len() == 900 || std::time::Instant::now() > deadline {
            break ids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ids.len(), 900);
    assert_eq!(ids.first(), Some(&601));
}
