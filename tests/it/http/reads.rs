//! The API as a client uses it: ingest and read back, search, history,
//! timeline and stats, the live stream resumed with no gap and no duplicate,
//! and `/metrics`' histograms and gauges.

use super::*;

#[test]
fn ingest_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    assert_eq!(d.get("/healthz").0, 200);

    // One object, an array, and NDJSON.
    let (st, _, one) = d.post(&json!({"id": "evt-1", "action": "login", "actor": "alice",
        "tenant": "acme", "description": "password reset requested"}));
    assert_eq!(st, 201, "{one}");
    assert_eq!(one["events"][0], json!({"id": "evt-1", "seq": 1}));
    assert_eq!(one["receipt"]["last_seq"], 1);
    assert_eq!(one["receipt"]["hash"].as_str().unwrap().len(), 64);
    // Retrying with the same id and content is safe (before and after the
    // indexes caught up); the same id with other content is a conflict.
    let first = json!({"id": "evt-1", "action": "login", "actor": "alice",
        "tenant": "acme", "description": "password reset requested"});
    let (st, _, again) = d.post(&first);
    assert_eq!(
        (st, &again["events"][0]["seq"]),
        (200, &json!(1)),
        "{again}"
    );
    let (st, _, p) = d.post(&json!({"id": "evt-1", "action": "logout", "actor": "alice",
        "tenant": "acme"}));
    assert_eq!(
        (st, p["type"].as_str()),
        (409, Some("https://stele.dev/problems/id-conflict"))
    );
    let (st, _, p) = d.post(&json!([first, {"id": "evt-new", "action": "x", "actor": "y"}]));
    assert_eq!(st, 409, "{p}");
    let (st, _, p) = d.post(&json!([{"id": "d", "action": "x", "actor": "y"}, {"id": "d", "action": "x", "actor": "y"}]));
    assert_eq!(st, 409, "{p}");
    let (st, _, arr) = d.post(&json!([
        {"action": "update", "actor": "bob", "entity_type": "order", "entity_id": "55",
         "changes": [{"field": "status", "old": "pending", "new": "paid"}]},
        {"action": "delete", "source": "system", "severity": "warning"}
    ]));
    assert_eq!(st, 201, "{arr}");
    assert_eq!(arr["events"][1]["seq"], 3);
    let nd = b"{\"action\":\"export\",\"actor\":\"carol\"}\n\n{\"action\":\"view\",\"actor\":\"dave\"}\n";
    let (st, _, v) = d.call("POST", "/v1/events", "application/x-ndjson", nd);
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 2);

    // All-or-nothing: one bad event rejects the request, each problem listed.
    let (st, ctype, p) = d.post(&json!([
        {"action": "ok", "actor": "x"},
        {"action": "x", "actor": "y", "severity": "loud", "risk_score": 101},
        {"actor": "z"}
    ]));
    assert_eq!(st, 400);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(p["type"], "https://stele.dev/problems/invalid-events");
    let errs = p["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 3, "{p}");
    assert!(errs
        .iter()
        .any(|e| e["index"] == 1 && e["field"] == "severity"));
    assert!(errs
        .iter()
        .any(|e| e["index"] == 1 && e["field"] == "risk_score"));
    assert!(errs
        .iter()
        .any(|e| e["index"] == 2 && e["field"] == "action"));
    let (st, _, p) = d.call("POST", "/v1/events", "application/json", b"{not json");
    assert_eq!(
        (st, p["type"].as_str()),
        (400, Some("https://stele.dev/problems/invalid-json"))
    );

    // Read back once indexed (the indexes commit every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let (st, _, v) = d.get("/v1/events?limit=10");
        assert_eq!(st, 200, "{v}");
        if v["events"].as_array().unwrap().len() == 5 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seqs: Vec<u64> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![5, 4, 3, 2, 1]);
    assert_eq!(listed["next_cursor"], Value::Null);
    // The same page again is written from the kept renderings, byte for byte.
    let hits = |text: &str| -> u64 {
        let series = "stele_query_rendered_lookups_total{result=\"hit\"} ";
        let line = text.lines().find_map(|l| l.strip_prefix(series));
        line.expect("the series").parse().unwrap()
    };
    let (_, before) = d.get_raw("/metrics");
    let (_, once) = d.get_raw("/v1/events?limit=10");
    let (_, twice) = d.get_raw("/v1/events?limit=10");
    assert_eq!(once, twice);
    assert_eq!(serde_json::from_str::<Value>(&once).unwrap(), listed);
    let (_, after) = d.get_raw("/metrics");
    assert_eq!(hits(&after), hits(&before) + 10);
    let (st, _, ev) = d.get("/v1/events/evt-1");
    assert_eq!(st, 200);
    assert_eq!(ev["actor"], "alice");
    assert_eq!(ev["seq"], 1);
    assert!(ev["received_at"].as_str().unwrap().ends_with('Z'));
    let (st, _, v) = d.get("/v1/events?q=password%20reset&tenant=acme");
    assert_eq!(st, 200);
    assert_eq!(v["events"][0]["id"], "evt-1");
    assert_eq!(d.get("/v1/events/nope").0, 404);
    let (st, ctype, p) = d.get("/v1/events?limit=5000");
    assert_eq!((st, ctype.as_str()), (400, "application/problem+json"));
    assert_eq!(p["field"], "limit");
    assert_eq!(d.get("/v2/nothing").0, 404);
    assert_eq!(
        d.call("DELETE", "/v1/events", "application/json", b"").0,
        405
    );

    // Readiness and metrics.
    let (st, _, r) = d.get("/readyz");
    assert_eq!((st, &r["ready"]), (200, &json!(true)), "{r}");
    assert_eq!(r["state"]["log_last_seq"], 5);
    let (head, text) = d.get_raw("/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(text.contains("\nstele_events_appended_total 5\n"), "{text}");
    assert!(text.contains("stele_log_last_seq 5"), "{text}");
    assert!(
        text.contains("stele_http_requests_total{route=\"ingest\",status=\"201\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("stele_http_requests_total{route=\"ingest\",status=\"409\"} 3"),
        "{text}"
    );
}

#[test]
fn search_history_timeline_and_stats_routes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let mut batch = Vec::new();
    for i in 0..30 {
        batch.push(json!({
            "action": if i % 3 == 0 { "delete" } else { "update" },
            "actor": format!("u-{}", i % 4), "user_id": format!("u-{}", i % 4),
            "tenant": "acme", "entity_type": "order", "entity_id": format!("{}", i % 5),
            "status": if i % 10 == 0 { "failure" } else { "success" },
            "timestamp": format!("2026-11-2{}T10:{:02}:00Z", i % 3, i),
            "changes": [{"field": "total", "old": i, "new": i + 1}],
            "description": if i == 7 { "password reset by support" } else { "routine change" }
        }));
    }
    let (st, _, v) = d.post(&Value::Array(batch));
    assert_eq!(st, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/v1/events?limit=100").2["events"]
        .as_array()
        .unwrap()
        .len()
        < 30
    {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(100));
    }

    let get_head = |target: &str| {
        let r = http::send(&d.addr, "GET", target, &[], http::Body::None);
        (r.status, r.head.clone(), r.json())
    };
    let (st, head, v) = get_head("/v1/search?q=%22password%20reset%22");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    assert_eq!(v["events"][0]["seq"], 8);
    // Where a page's time went, stage by stage (issue 21), in milliseconds.
    let stages = |head: &str| -> Vec<(String, f64)> {
        http::header(head, "server-timing")
            .unwrap_or_else(|| panic!("no Server-Timing in {head}"))
            .split(", ")
            .map(|m| {
                let (name, dur) = m.split_once(";dur=").unwrap();
                (name.to_owned(), dur.parse::<f64>().unwrap())
            })
            .collect()
    };
    let names = |s: Vec<(String, f64)>| -> Vec<String> {
        assert!(
            s.iter().all(|(_, ms)| (0.0..10_000.0).contains(ms)),
            "{s:?}"
        );
        s.into_iter().map(|(n, _)| n).collect()
    };
    assert_eq!(names(stages(&head)), ["search", "fetch", "render"]);
    let (st, head, _) = get_head("/v1/events?tenant=acme&limit=5&total=true");
    assert_eq!(st, 200);
    assert_eq!(names(stages(&head)), ["search", "fetch", "count", "render"]);
    let (st, _, p) = d.get("/v1/search?tenant=acme");
    assert_eq!((st, p["field"].as_str()), (400, Some("q")));

    // Entity history: oldest first by event time (the timestamps run over
    // three days out of arrival order), with changes, walked with cursors;
    // `sort=seq` walks it in arrival order.
    for (sort, want) in [
        ("", vec![13, 28, 8, 23, 3, 18]),
        ("&sort=seq", vec![3, 8, 13, 18, 23, 28]),
    ] {
        let mut seqs = Vec::new();
        let mut path = format!("/v1/entities/order/2/history?limit=2{sort}");
        loop {
            let (st, _, v) = d.get(&path);
            assert_eq!(st, 200, "{v}");
            for e in v["events"].as_array().unwrap() {
                assert_eq!(e["changes"][0]["field"], "total");
                seqs.push(e["seq"].as_u64().unwrap());
            }
            match v["next_cursor"].as_str() {
                Some(c) => path = format!("/v1/entities/order/2/history?limit=2{sort}&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seqs, want, "history{sort}");
    }
    for (sort, want) in [("", vec![30, 18, 6]), ("&sort=seq", vec![30, 26, 22])] {
        let (st, _, v) = d.get(&format!("/v1/users/u-1/events?limit=3{sort}"));
        assert_eq!(st, 200);
        let got: Vec<u64> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "timeline{sort}");
    }
    assert_eq!(d.get("/v1/users/u-1/events?user_id=x").0, 400);
    assert_eq!(d.get("/v1/entities/order/1/history?entity_id=x").0, 400);
    // `total=true`: the number of the path's matches with the filters, on
    // every page; offset paging is refused (cursor only).
    for (path, want) in [
        ("/v1/users/u-1/events?limit=3&total=true", 8),
        ("/v1/users/u-1/events?limit=3&total=true&action=delete", 2),
        ("/v1/entities/order/2/history?limit=2&total=true", 6),
        (
            "/v1/entities/order/2/history?limit=2&total=true&status=failure",
            0,
        ),
    ] {
        let (st, _, v) = d.get(path);
        assert_eq!((st, &v["total"]), (200, &json!(want)), "{path}: {v}");
    }
    let (_, _, v) = d.get("/v1/users/u-1/events?limit=3");
    assert!(v.get("total").is_none(), "{v}");
    for bad in ["offset=3", "page=2", "total=maybe"] {
        let (st, _, p) = d.get(&format!("/v1/users/u-1/events?{bad}"));
        assert_eq!(
            (st, p["field"].as_str()),
            (400, bad.split('=').next()),
            "{bad}: {p}"
        );
    }

    let (st, _, s) = d.get("/v1/stats?tenant=acme&interval=day");
    assert_eq!(st, 200, "{s}");
    assert_eq!(s["total"], 30);
    assert_eq!(
        s["by_action"],
        json!([{"action": "update", "count": 20}, {"action": "delete", "count": 10}])
    );
    assert_eq!(s["by_status"][0], json!({"status": "success", "count": 27}));
    assert_eq!(s["active_users"], 4);
    assert_eq!(s["error_rate"], 0.1);
    let days: Vec<&str> = s["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["start"].as_str().unwrap())
        .collect();
    assert_eq!(days.len(), 3, "{s}");
    assert!(days[0].starts_with("2026-11-20T00:00:00"), "{days:?}");
    assert_eq!(d.get("/v1/stats?interval=week").0, 400);
    assert_eq!(d.get("/v1/stats?limit=3").0, 400);
}

#[test]
fn the_live_stream_resumes_with_no_gap_and_no_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let post = |n: usize, tenant: &str| {
        let evs: Vec<Value> = (0..n)
            .map(|i| json!({"action": "view", "actor": format!("a{i}"), "tenant": tenant}))
            .collect();
        assert_eq!(d.post(&Value::Array(evs)).0, 201);
    };
    post(5, "acme"); // before the stream: not sent to a live-only subscriber
    let mut a = open_stream(&d.addr, "/v1/stream?tenant=acme", None);
    std::thread::sleep(Duration::from_millis(200));
    post(4, "globex");
    post(6, "acme");
    let first = read_ids(&mut a, 6);
    assert_eq!(first, (10..=15).collect::<Vec<_>>());
    drop(a); // disconnect; events keep arriving
    post(3, "acme");
    post(2, "globex");
    post(3, "acme");
    let mut b = open_stream(
        &d.addr,
        "/v1/stream?tenant=acme",
        Some(*first.last().unwrap()),
    );
    let resumed = read_ids(&mut b, 6);
    assert_eq!(resumed, vec![16, 17, 18, 21, 22, 23]);
    // from_seq replays from the log, including what came before any stream.
    let mut c = open_stream(&d.addr, "/v1/stream?tenant=acme&from_seq=1", None);
    let all = read_ids(&mut c, 17);
    let want: Vec<u64> = (1..=5).chain(10..=18).chain(21..=23).collect();
    assert_eq!(all, want);
    assert_eq!(d.get("/v1/stream?limit=5").0, 400);
    assert_eq!(d.get("/v1/stream?from_seq=minus-one").0, 400);

    // Full text: the stream follows the text index, replayed and live.
    let (st, _, r) = d.post(&json!([
        {"action": "rotate", "actor": "ops", "description": "rotated the vault credentials"},
        {"action": "view", "actor": "ops", "description": "viewed the dashboard"},
    ]));
    assert_eq!(st, 201, "{r}");
    let rotated = r["events"][0]["seq"].as_u64().unwrap();
    let mut t = open_stream(&d.addr, "/v1/stream?q=credentials&from_seq=1", None);
    assert_eq!(read_ids(&mut t, 1), vec![rotated]);
    let (_, _, r) = d.post(&json!([
        {"action": "view", "actor": "ops", "description": "nothing to see"},
        {"action": "rotate", "actor": "sec", "description": "credentials expired", "tenant": "acme"},
    ]));
    let live = r["events"][1]["seq"].as_u64().unwrap();
    assert_eq!(read_ids(&mut t, 1), vec![live]);
    // Structured filters still apply to a full-text stream.
    let mut u = open_stream(
        &d.addr,
        "/v1/stream?q=credentials&tenant=acme&from_seq=1",
        None,
    );
    assert_eq!(read_ids(&mut u, 1), vec![live]);
}

/// A full-text stream replaying more than one chunk (64 KiB) and more than
/// one read batch of matches sends every match once, in order: a chunk that
/// ends inside a batch resumes after its last event, not after the batch.
#[test]
fn a_full_text_stream_replays_many_chunks_without_gap_or_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let filler = "x".repeat(900);
    let mut want = Vec::new();
    for round in 0..3 {
        let events: Vec<_> = (0..300)
            .map(|i| {
                let word = if i % 3 == 0 { "other" } else { "needle" };
                json!({"action": "a", "actor": "b", "description": format!("{word} {round} {i} {filler}")})
            })
            .collect();
        let (st, _, r) = d.post(&json!(events));
        assert_eq!(st, 201, "{r}");
        for (i, ev) in r["events"].as_array().unwrap().iter().enumerate() {
            if i % 3 != 0 {
                want.push(ev["seq"].as_u64().unwrap());
            }
        }
    }
    assert!(want.len() > 2 * 128 && want.len() * 900 > 4 * 64 * 1024);
    let mut t = open_stream(&d.addr, "/v1/stream?q=needle&from_seq=1", None);
    assert_eq!(read_ids(&mut t, want.len()), want);
}

#[test]
fn metrics_expose_latency_histograms_and_gauges() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    for _ in 0..3 {
        assert_eq!(d.post(&json!({"action": "a", "actor": "b"})).0, 201);
    }
    assert_eq!(d.get("/v1/events?limit=1").0, 200);
    let (_, m) = d.get_raw("/metrics");
    for want in [
        "# TYPE stele_http_request_duration_seconds histogram",
        "stele_http_request_duration_seconds_bucket{route=\"ingest\",le=\"+Inf\"} 3\n",
        "stele_http_request_duration_seconds_count{route=\"list\"} 1\n",
        "stele_ingest_append_seconds_count 3\n",
        "stele_ingest_events_total 3\n",
        "# TYPE stele_fsync_seconds histogram",
        "stele_streams_open 0\n",
        "stele_exports_open 0\n",
        "stele_index_lag_events",
        "stele_segments{state=\"active\"} 1\n",
        "stele_log_first_seq 1\n",
        "stele_recovery_torn_bytes_truncated 0\n",
        "stele_digests_signed_total 0\n",
        "stele_legal_holds 0\n",
        "stele_retention_dropped_days_total 0\n",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    let fsyncs = m
        .lines()
        .find_map(|l| l.strip_prefix("stele_fsync_seconds_count "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(
        (1..=3).contains(&fsyncs),
        "{fsyncs} group commits for 3 posts"
    );
}

/// Issue 21: under healthy load the indexes may trail the log by more than
/// 100,000 events for a while; `/readyz` used to answer 503 then (22 of 27 s
/// of a 4-connection batch run). Once the indexes have caught up since the
/// start, a backlog keeps the daemon ready, says how old it is in seconds,
/// and degrades it only once its oldest event waits more than 30 s.
#[test]
fn a_backlog_of_indexing_keeps_readyz_ready_and_says_how_old_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = 1_796_378_400_000_000; // 2026-12-04T10:00:00Z
    let clock = std::sync::Arc::new(stele::clock::ManualClock::new(t0));
    let mut cfg = stele::config::Config::default();
    cfg.data_dir = tmp.path().to_path_buf();
    // The indexer commits once a minute (real time): everything posted
    // below stays unsearchable for the whole test.
    cfg.index.commit_interval_ms = stele::config::COMMIT_INTERVAL_MS_MAX;
    let d = Server::start_on(cfg.serve_config(None), clock.clone());
    let (st, _, r) = d.get("/readyz");
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"]["index_caught_up"], true, "{r}");
    assert_eq!(r["state"]["lag_seconds"], 0.0, "{r}");

    let line = r#"{"action":"a","actor":"b"}"#;
    let body = format!("{line}\n").repeat(10_000);
    let posts = stele::server::READY_LAG_EVENTS_MAX as usize / 10_000 + 1;
    for _ in 0..posts {
        let (st, _, r) = d.call(
            "POST",
            "/v1/events",
            "application/x-ndjson",
            body.as_bytes(),
        );
        assert_eq!(st, 201, "{r}");
    }
    clock.advance(5_000_000);
    let (st, _, r) = d.get("/readyz");
    assert_eq!(st, 200, "a backlog is not a reason to be unready: {r}");
    let lag = r["state"]["lag_events"].as_u64().unwrap();
    assert!(lag > stele::server::READY_LAG_EVENTS_MAX, "{r}");
    assert_eq!(r["state"]["lag_seconds"], 5.0, "{r}");
    assert_eq!(r["degraded"], false, "{r}");
    let (_, m) = d.get_raw("/metrics");
    assert!(m.contains("\nstele_index_lag_seconds 5.0\n"), "{m}");

    clock.advance(30_000_000);
    let (st, _, r) = d.get("/readyz");
    assert_eq!((st, &r["degraded"]), (200, &json!(true)), "{r}");
    assert_eq!(r["state"]["lag_seconds"], 35.0, "{r}");
}
