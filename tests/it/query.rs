//! The query engine against a brute-force scan of the log: every query kind,
//! random filters, both orders, cursor walks; then the same answers after
//! deleting the indexes, and after killing a reindex half-way.

use crate::support::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use stele::clock::ManualClock;
use stele::event::{Severity, StoredEvent};
use stele::index::text::Stats;
use stele::index::{IndexConfig, Indexes};
use stele::log::{Log, LogConfig};
use stele::query::{event_time, Filter, NumRange, Order, Sort};
use stele::query::{Engine, Interval, Query, QueryError};
use stele::testkit::EventGen;

mod counts;

const DAY: i64 = 86_400_000_000;
const N: usize = 3000;

struct World {
    _dir: tempfile::TempDir,
    engine: Engine,
    all: Vec<StoredEvent>,
    clock: Arc<ManualClock>,
}

fn config() -> IndexConfig {
    IndexConfig {
        commit_interval: Duration::from_millis(50),
        ..IndexConfig::default()
    }
}

fn build(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Vec<StoredEvent> {
    let log = open(dir, clock, 256 * 1024);
    let mut gen = EventGen::new(77).with_base_time(BEFORE_MIDNIGHT - 20 * DAY);
    let mut left = N;
    let mut batch = 0i64;
    while left > 0 {
        let n = left.min(37);
        let mut evs = events(&mut gen, n, 450);
        // Every third batch is backfilled: it happened 1 to 9 days before
        // it arrives, so event time and arrival order disagree; a few
        // events carry no timestamp (their time is when Stele received them).
        batch += 1;
        for (k, ev) in evs.iter_mut().enumerate() {
            if batch % 3 == 0 {
                ev.timestamp = ev.timestamp.map(|t| t - (batch % 9 + 1) * DAY + k as i64);
            } else if k == 5 {
                ev.timestamp = None;
            }
        }
        log.append(&evs, &stele::event::Provenance::cli()).unwrap();
        left -= n;
        clock.advance(DAY / 100);
    }
    log.iter().map(|e| e.unwrap()).collect()
}

fn engine(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Engine {
    let log = Arc::new(Log::open(dir, LogConfig::default(), clock.clone()).unwrap());
    let idx = Arc::new(Indexes::open(dir, log.clone(), config()).unwrap());
    assert!(
        idx.wait_indexed(log.last_seq(), Duration::from_secs(60)),
        "{:?}",
        idx.failure()
    );
    let key = stele::query::cursor_key(dir).unwrap();
    Engine::new(log, idx, clock.clone(), key)
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 20 * DAY));
        let all = build(dir.path(), &clock);
        let engine = engine(dir.path(), &clock);
        World {
            _dir: dir,
            engine,
            all,
            clock,
        }
    })
}

/// Lowercase alphanumeric tokens, as tantivy's default tokenizer makes them.
fn tokens(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && t.len() <= 40)
        .map(|t| t.to_lowercase())
}

fn text_of(e: &StoredEvent) -> HashSet<String> {
    let ev = &e.event;
    let mut out = HashSet::new();
    for s in [
        &ev.description,
        &ev.entity_name,
        &ev.user_agent,
        &ev.user_name,
    ]
    .into_iter()
    .flatten()
    {
        out.extend(tokens(s));
    }
    // Metadata values, never key names.
    fn values(v: &serde_json::Value, out: &mut HashSet<String>) {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => out.extend(tokens(s)),
            serde_json::Value::Array(a) => a.iter().for_each(|v| values(v, out)),
            serde_json::Value::Object(m) => m.values().for_each(|v| values(v, out)),
            other => out.extend(tokens(&other.to_string())),
        }
    }
    if let Some(m) = &ev.metadata {
        values(&serde_json::from_str(m).unwrap(), &mut out);
    }
    for c in &ev.changes {
        out.extend(tokens(&c.field));
        for v in [&c.old, &c.new].into_iter().flatten() {
            out.extend(tokens(v));
        }
    }
    out
}

fn matches(f: &Filter, e: &StoredEvent) -> bool {
    let ev = &e.event;
    // Keywords ignore case; tenants are exact.
    let eq = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| {
            have.as_ref()
                .is_some_and(|h| h.to_lowercase() == w.to_lowercase())
        })
    };
    let in_range = |r: Option<NumRange>, v: Option<u64>| {
        r.is_none_or(|r| v.is_some_and(|v| (r.lo..=r.hi).contains(&v)))
    };
    f.tenant
        .as_ref()
        .is_none_or(|t| ev.tenant.as_ref() == Some(t))
        && eq(&f.action, &Some(ev.action.clone()))
        && eq(&f.user_name, &ev.user_name)
        && in_range(f.risk_score, ev.risk_score.map(u64::from))
        && in_range(f.duration_ms, ev.duration_ms)
        && eq(&f.category, &ev.category)
        && f.source.is_none_or(|s| Some(s) == ev.source)
        && f.status.is_none_or(|s| Some(s) == ev.status)
        && f.severity.is_none_or(|s| Some(s) == ev.severity)
        && f.min_severity
            .is_none_or(|m| ev.severity.is_some_and(|s| s >= m))
        && eq(&f.entity_type, &ev.entity_type)
        && eq(&f.entity_id, &ev.entity_id)
        && eq(&f.user_id, &ev.user_id)
        && eq(&f.session_id, &ev.session_id)
        && eq(&f.correlation_id, &ev.correlation_id)
        && eq(&f.ip, &ev.ip)
        && eq(&f.actor, &ev.actor)
        && f.since.is_none_or(|s| event_time(e) >= s)
        && f.until.is_none_or(|u| event_time(e) < u)
        && f.text.as_ref().is_none_or(|q| {
            let have = text_of(e);
            q.split(" AND ").all(|w| have.contains(&w.to_lowercase()))
        })
}

/// A random filter built from the values of a random event, so it matches
/// something most of the time.
fn filter_strategy() -> impl Strategy<Value = (Filter, (Sort, Order), usize)> {
    (
        0..N,
        proptest::bits::u32::masked(0x3_FFFF),
        0..N,
        (any::<bool>(), any::<bool>()),
        1usize..40,
        0usize..6,
    )
        .prop_map(|(i, mask, j, (asc, by_seq), limit, word)| {
            let w = world();
            let e = &w.all[i].event;
            let mut f = Filter::default();
            let bit = |b: u32| mask & (1 << b) != 0;
            if bit(0) {
                f.tenant = e.tenant.clone();
            }
            if bit(1) {
                f.action = Some(e.action.clone());
            }
            if bit(2) {
                f.category = e.category.clone();
            }
            if bit(3) {
                f.status = e.status;
            }
            if bit(4) && bit(5) {
                f.severity = e.severity;
            } else if bit(4) {
                f.min_severity = Some(Severity::Warning);
            }
            if bit(6) {
                f.entity_type = e.entity_type.clone();
            }
            if bit(7) && bit(6) {
                f.entity_id = e.entity_id.clone();
            }
            if bit(8) {
                f.user_id = e.user_id.clone();
            }
            if bit(9) {
                f.source = e.source;
            }
            if bit(10) {
                let t = event_time(&w.all[j]);
                f.since = Some(t.min(event_time(&w.all[i])));
                f.until = Some(t.max(event_time(&w.all[i])) + 1);
            }
            if bit(11) {
                // A word of the event's description: rare or very common.
                let words: Vec<String> = e
                    .description
                    .as_deref()
                    .map(|d| {
                        tokens(d)
                            .filter(|t| t.chars().all(|c| c.is_ascii_alphanumeric()))
                            .collect()
                    })
                    .unwrap_or_default();
                if !words.is_empty() {
                    f.text = Some(words[word % words.len()].clone());
                }
            }
            if bit(12) {
                f.ip = e.ip.clone();
            }
            if bit(13) {
                f.session_id = e.session_id.clone();
            }
            if bit(14) {
                f.user_name = e.user_name.clone();
            }
            if bit(15) {
                // A risk level or a range around the event's score.
                let s = u64::from(e.risk_score.unwrap_or(50));
                f.risk_score = Some(match word % 3 {
                    0 => NumRange { lo: 71, hi: 100 },
                    1 => NumRange { lo: s, hi: s },
                    _ => NumRange {
                        lo: s.saturating_sub(10),
                        hi: s + 10,
                    },
                });
            }
            if bit(16) {
                let d = e.duration_ms.unwrap_or(100);
                f.duration_ms = Some(if bit(0) {
                    NumRange {
                        lo: d,
                        hi: u64::MAX,
                    }
                } else {
                    NumRange { lo: 0, hi: d }
                });
            }
            if bit(17) {
                // Keyword values in another case match the same events.
                f.action = f.action.as_deref().map(str::to_uppercase);
                f.user_name = f.user_name.as_deref().map(str::to_uppercase);
                f.category = f.category.as_deref().map(str::to_uppercase);
            }
            let sort = if by_seq { Sort::Seq } else { Sort::Time };
            (f, (sort, if asc { Order::Asc } else { Order::Desc }), limit)
        })
}

/// The seqs of the matches in `sort` and `order`, by sorting them all.
fn brute_in<'a>(
    events: impl Iterator<Item = &'a StoredEvent>,
    (sort, order): (Sort, Order),
) -> Vec<u64> {
    let mut keys: Vec<(i64, u64)> = events
        .map(|e| match sort {
            Sort::Time => (event_time(e), e.seq),
            Sort::Seq => (0, e.seq),
        })
        .collect();
    keys.sort_unstable();
    if order == Order::Desc {
        keys.reverse();
    }
    keys.into_iter().map(|k| k.1).collect()
}

fn brute(f: &Filter, order: (Sort, Order)) -> Vec<u64> {
    brute_in(world().all.iter().filter(|e| matches(f, e)), order)
}

fn brute_stats(f: &Filter, now: i64, bucket: i64) -> Stats {
    let hits: Vec<&StoredEvent> = world().all.iter().filter(|e| matches(f, e)).collect();
    fn count<'a>(it: impl Iterator<Item = &'a str>) -> Vec<(String, u64)> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for k in it {
            *m.entry(k.to_string()).or_default() += 1;
        }
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
    let mut hist: BTreeMap<i64, u64> = BTreeMap::new();
    for e in &hits {
        *hist
            .entry(event_time(e).div_euclid(bucket) * bucket)
            .or_default() += 1;
    }
    let users = count(hits.iter().filter_map(|e| e.event.user_id.as_deref()));
    let failures = hits
        .iter()
        .filter(|e| e.event.status == Some(stele::event::Status::Failure))
        .count();
    let errors = hits
        .iter()
        .filter(|e| e.event.severity >= Some(Severity::Error))
        .count();
    let share = |n: usize| {
        if hits.is_empty() {
            0.0
        } else {
            n as f64 / hits.len() as f64
        }
    };
    Stats {
        total: hits.len() as u64,
        last_24h: hits.iter().filter(|e| event_time(e) >= now - DAY).count() as u64,
        by_action: count(hits.iter().map(|e| e.event.action.as_str())),
        by_category: count(hits.iter().filter_map(|e| e.event.category.as_deref())),
        by_entity_type: count(hits.iter().filter_map(|e| e.event.entity_type.as_deref())),
        by_severity: count(
            hits.iter()
                .filter_map(|e| e.event.severity.map(|s| s.as_str())),
        ),
        by_status: count(
            hits.iter()
                .filter_map(|e| e.event.status.map(|s| s.as_str())),
        ),
        by_source: count(
            hits.iter()
                .filter_map(|e| e.event.source.map(|s| s.as_str())),
        ),
        histogram: hist.into_iter().collect(),
        active_users: users.len() as u64,
        top_users: users.into_iter().take(stele::query::TOP_USERS).collect(),
        error_rate: share(failures),
        failure_rate: share(failures),
        error_severity_rate: share(errors),
        by_risk: stele::index::text::RiskCounts::of(
            [0..=30, 31..=70, 71..=100].map(|r| {
                hits.iter()
                    .filter(|e| e.event.risk_score.is_some_and(|s| r.contains(&s)))
                    .count() as u64
            }),
            hits.len() as u64,
        ),
    }
}

/// Walks every page of a listing and returns the seqs.
fn walk(engine: &Engine, f: &Filter, (sort, order): (Sort, Order), limit: usize) -> Vec<u64> {
    let mut q = Query {
        filter: f.clone(),
        sort,
        order,
        limit,
        ..Query::default()
    };
    let mut out = Vec::new();
    for _ in 0..N + 2 {
        let page = engine.list(&q).unwrap();
        assert!(page.events.len() <= limit);
        out.extend(page.events.iter().map(|e| e.seq));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
    panic!("the cursor walk did not end");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn listings_and_cursor_walks_equal_a_scan((f, order, limit) in filter_strategy()) {
        let w = world();
        let want = brute(&f, order);
        prop_assert_eq!(walk(&w.engine, &f, order, limit), want.clone());
        prop_assert_eq!(w.engine.count(&f).unwrap(), want.len() as u64);
    }

    #[test]
    fn statistics_equal_a_scan((f, _o, _l) in filter_strategy(), interval in 0usize..3) {
        let w = world();
        let interval = [Interval::Minute, Interval::Hour, Interval::Day][interval];
        let q = Query { filter: f.clone(), interval, ..Query::default() };
        let got = w.engine.stats(&q).unwrap();
        let want = brute_stats(&f, w.clock.now_micros(), interval.micros());
        prop_assert_eq!(got, want);
    }
}

use stele::clock::Clock;

#[test]
fn get_by_id_entity_history_and_user_timeline_equal_a_scan() {
    let w = world();
    for e in w.all.iter().step_by(7) {
        let got = w
            .engine
            .get_by_id(&e.event.id, e.event.tenant.as_deref())
            .unwrap()
            .unwrap();
        assert_eq!(&got, e);
    }
    assert!(w.engine.get_by_id("no-such-id", None).unwrap().is_none());
    for e in w.all.iter().step_by(97) {
        let ev = &e.event;
        if let (Some(t), Some(id)) = (&ev.entity_type, &ev.entity_id) {
            for sort in [Sort::Time, Sort::Seq] {
                let want = brute_in(
                    w.all.iter().filter(|x| {
                        x.event.entity_type.as_ref() == Some(t)
                            && x.event.entity_id.as_ref() == Some(id)
                    }),
                    (sort, Order::Asc),
                );
                let mut got = Vec::new();
                let mut cursor = None;
                loop {
                    let q = Query {
                        sort,
                        order: Order::Asc,
                        limit: 3,
                        cursor: cursor.clone(),
                        ..Query::default()
                    };
                    let page = w.engine.entity_history(&q, t, id).unwrap();
                    got.extend(page.events.iter().map(|x| x.seq));
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                assert_eq!(got, want, "history of {t}/{id} by {sort:?}");
            }
        }
        if let Some(u) = &ev.user_id {
            for sort in [Sort::Time, Sort::Seq] {
                let mut want = brute_in(
                    w.all.iter().filter(|x| x.event.user_id.as_ref() == Some(u)),
                    (sort, Order::Desc),
                );
                want.truncate(50);
                let q = Query {
                    sort,
                    limit: 50,
                    ..Query::default()
                };
                let page = w.engine.user_timeline(&q, u).unwrap();
                let got: Vec<u64> = page.events.iter().map(|x| x.seq).collect();
                assert_eq!(got, want, "timeline of {u} by {sort:?}");
            }
        }
    }
}

#[test]
fn bad_queries_are_typed_errors_that_say_what_to_fix() {
    let w = world();
    let now = w.clock.now_micros();
    let p = |pairs: &[(&str, &str)]| {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Query::parse(&v, now)
    };
    let msg = |r: Result<Query, QueryError>| r.unwrap_err().to_string();
    assert!(msg(p(&[("limit", "0")])).contains("1 to 1000"));
    assert!(msg(p(&[("limit", "1001")])).contains("1 to 1000"));
    assert!(
        msg(p(&[("severity", "loud")])).contains("debug, info, notice, warning, error, critical")
    );
    assert!(msg(p(&[("colour", "red")])).contains("unknown parameter"));
    assert!(msg(p(&[
        ("since", "2026-11-02T00:00:00Z"),
        ("until", "2026-11-01T00:00:00Z")
    ]))
    .contains("before"));
    assert!(msg(p(&[("since", "yesterday")])).contains("RFC 3339"));
    assert!(msg(p(&[("hours", "2"), ("since", "2026-11-01T00:00:00Z")])).contains("either"));
    assert!(msg(p(&[("ip", "300.1.1.1")])).contains("IPv4"));
    // Bad full-text syntax.
    let q = p(&[("q", "description:(unclosed")]).unwrap();
    assert!(matches!(w.engine.list(&q), Err(QueryError::BadText(_))));
    // Cursors: tampered, foreign to the query, garbage.
    let q = p(&[("limit", "5")]).unwrap();
    let c = w.engine.list(&q).unwrap().next_cursor.unwrap();
    let mut t = c.clone().into_bytes();
    let i = t.len() / 2;
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    let tampered = Query {
        cursor: Some(String::from_utf8(t).unwrap()),
        ..q.clone()
    };
    assert!(matches!(
        w.engine.list(&tampered),
        Err(QueryError::BadCursor(_))
    ));
    let other = Query {
        cursor: Some(c.clone()),
        order: Order::Asc,
        ..q.clone()
    };
    let e = w.engine.list(&other).unwrap_err().to_string();
    assert!(e.contains("different query"), "{e}");
    let garbage = Query {
        cursor: Some("!!".into()),
        ..q
    };
    assert!(matches!(
        w.engine.list(&garbage),
        Err(QueryError::BadCursor(_))
    ));
}

#[test]
fn forgiving_parameters_parse_to_exact_filters() {
    let now = 1_796_000_000_123_456; // 2026-11-29T…Z
    let p = |pairs: &[(&str, &str)]| {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Query::parse(&v, now)
    };
    let f = |pairs: &[(&str, &str)]| p(pairs).unwrap().filter;
    let msg = |pairs: &[(&str, &str)]| p(pairs).unwrap_err().to_string();
    const H: i64 = 3_600_000_000;
    // Dates, RFC 3339 and times ago.
    let day = f(&[("since", "2026-11-28"), ("until", "2026-11-29")]);
    assert_eq!(
        day.since,
        Some(stele::event::parse_timestamp("2026-11-28T00:00:00Z").unwrap())
    );
    assert_eq!(day.until, Some(day.since.unwrap() + 24 * H));
    assert_eq!(f(&[("since", "24h")]).since, Some(now - 24 * H));
    assert_eq!(f(&[("since", "7d")]).since, Some(now - 7 * 24 * H));
    assert_eq!(f(&[("since", "15m")]).since, Some(now - H / 4));
    assert_eq!(
        f(&[("since", "2w"), ("until", "90s")]).until,
        Some(now - 90_000_000)
    );
    assert_eq!(f(&[("hours", "0.5")]).since, Some(now - H / 2));
    assert_eq!(f(&[("hours", "36")]).since, Some(now - 36 * H));
    for bad in ["0", "-1", "87841", "nan", "inf", "x", "1h"] {
        assert!(msg(&[("hours", bad)]).contains("number of hours"), "{bad}");
    }
    for bad in ["yesterday", "2026-11-31", "24x", "h", "2026-1-5"] {
        let m = msg(&[("since", bad)]);
        assert!(m.contains("RFC 3339") && m.contains("7d"), "{bad}: {m}");
    }
    assert!(msg(&[("since", "99999999w")]).contains("ten years"));
    // Enum values ignore case; unknown ones list the allowed values.
    assert_eq!(
        f(&[("status", "FAILURE"), ("severity", "Error")]).status,
        Some(stele::event::Status::Failure)
    );
    assert!(msg(&[("status", "broken")]).contains("success, failure"));
    // Keyword values are kept as given (the index folds case).
    assert_eq!(f(&[("action", "CREATE")]).action.as_deref(), Some("CREATE"));
    assert_eq!(
        f(&[("user_name", "Jo Doe")]).user_name.as_deref(),
        Some("Jo Doe")
    );
    // Integer ranges and risk levels.
    let r = |lo, hi| Some(NumRange { lo, hi });
    assert_eq!(f(&[("risk_score", "high")]).risk_score, r(71, 100));
    assert_eq!(f(&[("risk_score", "Medium")]).risk_score, r(31, 70));
    assert_eq!(f(&[("risk_score", "low")]).risk_score, r(0, 30));
    assert_eq!(f(&[("risk_score", "75")]).risk_score, r(75, 75));
    assert_eq!(f(&[("risk_score", "71..")]).risk_score, r(71, u64::MAX));
    assert_eq!(f(&[("duration_ms", "..100")]).duration_ms, r(0, 100));
    assert_eq!(f(&[("duration_ms", "10..20")]).duration_ms, r(10, 20));
    assert!(msg(&[("risk_score", "extreme")]).contains("low (0–30)"));
    assert!(msg(&[("duration_ms", "high")]).contains("range"));
    assert!(msg(&[("duration_ms", "..")]).contains("range"));
    assert!(msg(&[("duration_ms", "9..3")]).contains("empty range"));
}

#[test]
fn deleted_indexes_are_rebuilt_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 20 * DAY));
    let mut gen = EventGen::new(5);
    {
        let log = open(dir.path(), &clock, 64 * 1024);
        for _ in 0..20 {
            log.append(&events(&mut gen, 25, 400), &stele::event::Provenance::cli())
                .unwrap();
        }
    }
    let queries = [
        Filter::default(),
        Filter {
            min_severity: Some(Severity::Warning),
            ..Filter::default()
        },
        Filter {
            text: Some("error".into()),
            ..Filter::default()
        },
    ];
    let answers = |e: &Engine| -> Vec<Vec<u64>> {
        queries
            .iter()
            .map(|f| walk(e, f, (Sort::Time, Order::Desc), 33))
            .collect()
    };
    let first = {
        let e = engine(dir.path(), &clock);
        answers(&e)
    };
    for victim in ["index/kv", "index/text", "index"] {
        std::fs::remove_dir_all(dir.path().join(victim)).unwrap();
        let e = engine(dir.path(), &clock);
        assert_eq!(answers(&e), first, "after deleting {victim}");
        assert_eq!(
            e.indexes().open_report().behind_by,
            500,
            "after deleting {victim}"
        );
    }
    // Garbage in the index directory: rebuilt, same answers.
    std::fs::remove_dir_all(dir.path().join("index/text")).unwrap();
    std::fs::create_dir_all(dir.path().join("index/text")).unwrap();
    std::fs::write(dir.path().join("index/text/meta.json"), b"{not json").unwrap();
    let e = engine(dir.path(), &clock);
    assert_eq!(answers(&e), first);
    assert!(!e.indexes().open_report().rebuilt.is_empty());
}

#[test]
fn killing_a_reindex_half_way_leaves_indexes_that_check_clean_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 2 * DAY));
    let mut gen = EventGen::new(6);
    {
        let log = open(dir.path(), &clock, 1 << 20);
        for _ in 0..60 {
            log.append(
                &events(&mut gen, 250, 400),
                &stele::event::Provenance::cli(),
            )
            .unwrap();
        }
    }
    for round in 0..3 {
        let mut child = stele()
            .args(["reindex", "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + 400 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let out = stele()
            .args(["check", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

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
