//! Lookups by id, entity history and user timeline against the scan of the
//! world of `super`; what bad parameters are told, and how forgiving ones parse.

use super::*;

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
