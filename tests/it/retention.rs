//! Retention end to end in-process: days of events across UTC midnights,
//! a TTL, a legal hold; then the dropped days are gone from the files, the
//! log, both indexes and the answers, what remains verifies, and a cursor
//! into dropped data is a clear `Gone`.

use crate::support::*;
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
        ids_by_day.push(
            evs.iter()
                .map(|e| (e.id.clone(), e.tenant.clone()))
                .collect::<Vec<_>>(),
        );
        log.append(&evs, &stele::event::Provenance::cli()).unwrap();
    }
    let indexes = Arc::new(Indexes::open(dir, log.clone(), IndexConfig::default()).unwrap());
    assert!(indexes.wait_indexed(1500, Duration::from_secs(60)));
    let engine = Engine::new(log.clone(), indexes.clone(), clock.clone(), [7; 32]);
    let now = clock.now_micros();
    let newest_first = Query::parse(&pairs(&[("limit", "10"), ("order", "asc")]), now).unwrap();
    let page = engine.list(&newest_first).unwrap();
    let old_cursor = page.next_cursor.clone().unwrap();
    // The renderings of every event are kept (as the listing routes keep them).
    let all = Query::parse(&pairs(&[("limit", "1000"), ("order", "asc")]), now).unwrap();
    let rendered = |q: &Query| {
        let mut stages = stele::query::Stages::default();
        engine
            .list_as::<stele::query::Rendered>(q, &stele::query::Paging::default(), &mut stages)
            .unwrap()
    };
    let warmed: Vec<u64> = rendered(&all)
        .events
        .iter()
        .map(|r| r.position().seq)
        .collect();
    assert_eq!(warmed.len(), 1000);

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
    // Gone from every answer, kept renderings included.
    let first = engine.list(&all).unwrap();
    assert_eq!(first.events[0].seq, 601);
    let hits = engine.rendered_stats().hits;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&rendered(&all).to_json().unwrap()).unwrap(),
        serde_json::to_value(&first).unwrap()
    );
    let kept = warmed.iter().filter(|s| **s >= 601).count() as u64;
    assert_eq!(engine.rendered_stats().hits, hits + kept);
    let everything = stele::query::Filter::default();
    assert_eq!(engine.count(&everything).unwrap(), 900);
    for (id, t) in ids_by_day[0].iter().chain(&ids_by_day[1]).step_by(37) {
        assert!(
            engine.get_by_id(id, t.as_deref()).unwrap().is_none(),
            "{id} survived"
        );
    }
    let (id, t) = &ids_by_day[2][0];
    assert!(engine.get_by_id(id, t.as_deref()).unwrap().is_some());
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
            .all_entries()
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        if ids.len() == 900 || std::time::Instant::now() > deadline {
            break ids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ids.len(), 900);
    assert_eq!(ids.first(), Some(&601));
}

/// Three days of 50 events from 2020-03-01 (long past any 30-day TTL; the
/// last one holds the active segment); returns the clock left on day 3.
fn three_days_in_2020(dir: &std::path::Path, seed: u64) -> Arc<ManualClock> {
    let start = chrono::NaiveDate::from_ymd_opt(2020, 3, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    let clock = Arc::new(ManualClock::new(start));
    let log = open(dir, &clock, 64 * 1024);
    let mut gen = EventGen::new(seed);
    for day in 0..3 {
        clock.set(start + day * DAY);
        log.append(&events(&mut gen, 50, 300), &stele::event::Provenance::cli())
            .unwrap();
    }
    clock
}

#[test]
fn stele_retention_dry_run_explains_and_the_real_run_drops_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let clock = three_days_in_2020(&dir, 2);
    let conf = tmp.path().join("stele.toml");
    std::fs::write(&conf, "[retention]\ndays = 30\n").unwrap();
    let run = |args: &[&str]| {
        let out = stele()
            .arg("retention")
            .args(args)
            .args(["--config", conf.to_str().unwrap(), "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let files = segment_files(&dir).len();
    let (code, out, err) = run(&["--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("2020-03-01   DROP  50 events (seqs 1..=50)"),
        "{out}"
    );
    assert!(out.contains("2020-03-02   DROP"), "{out}");
    assert!(
        out.contains("2020-03-03   keep") && out.contains("active segment"),
        "{out}"
    );
    assert!(
        out.contains("2 of 3 days would be dropped (dry run)"),
        "{out}"
    );
    assert_eq!(segment_files(&dir).len(), files, "a dry run dropped files");
    // While a process holds the log, the real run refuses and says why.
    {
        let _held = open(&dir, &clock, 64 * 1024);
        let (code, _, err) = run(&[]);
        assert_eq!(code, 2);
        assert!(err.contains("use --dry-run or GET /v1/retention"), "{err}");
    }
    let (code, out, err) = run(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("dropped 2 days (100 events); the log now starts at seq 101"),
        "{out}"
    );
    assert_eq!(verify(&[&dir]).0, 0);
    let (_, out, _) = run(&["--dry-run"]);
    assert!(out.contains("0 of 1 days would be dropped"), "{out}");
    let record = std::fs::read_to_string(dir.join("retention.log")).unwrap();
    assert_eq!(record.lines().count(), 2, "{record}");
}

/// The daemon's side: the plan over HTTP, legal holds set and lifted over
/// HTTP, retention on its timer, and 410 for positions into dropped data.
#[test]
fn the_daemon_applies_retention_on_its_timer_honours_holds_and_answers_410() {
    use crate::support::daemon::Daemon;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    three_days_in_2020(&dir, 3);
    let conf = tmp.path().join("stele.toml");
    std::fs::write(&conf, "[retention]\ndays = 30\ninterval_secs = 1\n").unwrap();
    // A hold set before retention could run: nothing is dropped.
    std::fs::write(
        dir.join("holds.json"),
        r#"[{"name": "case-1", "from": "2020-03-01", "until": "2020-03-01", "reason": "audit"}]"#,
    )
    .unwrap();
    let d = Daemon::start_with(&dir, &["--config", conf.to_str().unwrap()]);
    let (st, _, page) = d.get("/v1/events?order=asc&limit=10");
    assert_eq!(st, 200, "{page}");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (st, _, plan) = d.get("/v1/retention");
    assert_eq!(st, 200, "{plan}");
    assert_eq!(plan["days"][0]["drop"], false, "{plan}");
    assert!(
        plan["days"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("case-1"),
        "{plan}"
    );
    assert_eq!(plan["first_seq"], 1);
    // Holds over HTTP: add, conflict, list, lift.
    let hold = serde_json::json!({"name": "case-2", "tenant": "acme", "reason": "subpoena"});
    let (st, _, r) = d.call(
        "POST",
        "/v1/holds",
        "application/json",
        hold.to_string().as_bytes(),
    );
    assert_eq!(st, 201, "{r}");
    let (st, _, _) = d.call(
        "POST",
        "/v1/holds",
        "application/json",
        hold.to_string().as_bytes(),
    );
    assert_eq!(st, 409);
    assert_eq!(d.get("/v1/holds").2["holds"].as_array().unwrap().len(), 2);
    assert_eq!(d.call("DELETE", "/v1/holds/case-2", "", b"").0, 204);
    assert_eq!(d.call("DELETE", "/v1/holds/case-2", "", b"").0, 404);
    assert_eq!(d.call("DELETE", "/v1/holds/case-1", "", b"").0, 204);
    assert!(
        !dir.join("holds.json").exists() || {
            let h = std::fs::read_to_string(dir.join("holds.json")).unwrap();
            h.trim() == "[]"
        }
    );
    // With the hold lifted, the timer drops the two old days.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while d.get("/v1/retention").2["first_seq"] != 101 {
        assert!(std::time::Instant::now() < deadline, "retention never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The counters follow the drop (the runner counts once `apply` has
    // moved the log's first seq): poll them too.
    loop {
        let (_, metrics) = d.get_raw("/metrics");
        if metrics.contains("stele_retention_dropped_days_total 2\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Positions into dropped data: 410 with the oldest seq kept.
    let (st, ct, p) = d.get(&format!("/v1/events?order=asc&limit=10&cursor={cursor}"));
    assert_eq!((st, ct.as_str()), (410, "application/problem+json"), "{p}");
    assert_eq!(p["first_seq"], 101);
    let (st, _, p) = d.get("/v1/stream?from_seq=5");
    assert_eq!(st, 410, "{p}");
    // The rest answers as usual.
    let (st, _, page) = d.get("/v1/events?order=asc&limit=5&sort=seq");
    assert_eq!(st, 200);
    assert_eq!(page["events"][0]["seq"], 101);
    drop(d);
    assert_eq!(verify(&[&dir]).0, 0);
}
