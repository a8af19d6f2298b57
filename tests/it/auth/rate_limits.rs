//! Rate and stream limits per key and role: 429 with `Retry-After` once the
//! burst is spent, and the limit on live streams per key.

use super::*;

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = String::from(
        "[auth]\nstreams_per_key_max = 2\n\
         [auth.roles.ingest]\nrate_per_sec = 0\n\
         [auth.roles.read]\nrate_per_sec = 0\n\
         [auth.roles.admin]\nrate_per_sec = 0\n\
         [auth.roles.export]\nrate_per_sec = 1\nburst = 2\n",
    );
    conf += &key_toml(
        "slow",
        &token("slow"),
        &["read"],
        &["*"],
        "rate_per_sec = 2\nburst = 3",
    );
    conf += &key_toml("other", &token("other"), &["read"], &["*"], "");
    conf += &key_toml(
        "streamer",
        &token("streamer"),
        &["read"],
        &["*"],
        "streams_max = 1",
    );
    conf += &key_toml("exp1", &token("exp1"), &["export"], &["*"], "");
    conf += &key_toml("exp2", &token("exp2"), &["export"], &["*"], "");
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = serve(tmp.path(), &conf);
    let a = d.addr.clone();

    // Streams first: their release is noticed asynchronously.
    let streamer = token("streamer");
    let first = Sse::open(&a, "/v1/stream", &bearer(&streamer));
    assert_eq!(first.status, 200, "{}", first.head);
    let second = Sse::open(&a, "/v1/stream", &bearer(&streamer));
    assert_eq!(
        (second.status, second.kind().as_str()),
        (429, "too-many-key-streams"),
        "{}\n{}",
        second.head,
        second.body
    );
    // Another key is not held to streamer's limit; its own default is 2.
    let other = token("other");
    let o1 = Sse::open(&a, "/v1/stream", &bearer(&other));
    let o2 = Sse::open(&a, "/v1/stream", &bearer(&other));
    assert_eq!(
        (o1.status, o2.status),
        (200, 200),
        "{}\n{}",
        o1.head,
        o2.body
    );
    let o3 = Sse::open(&a, "/v1/stream", &bearer(&other));
    assert_eq!(
        (o3.status, o3.kind().as_str()),
        (429, "too-many-key-streams"),
        "streams_per_key_max = 2: {}",
        o3.body
    );
    drop((first, o1, o2));

    // The token bucket: burst 3, then 429 with Retry-After.
    let slow = token("slow");
    let limited = until_limited(&a, "/v1/events?limit=1", &slow, 3, 2.0);
    assert_eq!(limited.kind(), "rate-limited", "{}", limited.brief());
    assert_eq!(
        limited.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let retry: u64 = limited
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", limited.headers))
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // 429 comes before 403 (slow has no admin role), after 401.
    let r = get(&a, "/v1/segments", Some(&slow));
    assert_eq!(
        (r.status, r.kind().as_str()),
        (429, "rate-limited"),
        "{}",
        r.brief()
    );
    let r = get(&a, "/v1/events", Some(&token("unknown")));
    assert_eq!(r.status, 401, "{}", r.brief());
    // Other keys are not affected.
    for _ in 0..5 {
        let r = get(&a, "/v1/events?limit=1", Some(&other));
        assert_eq!(r.status, 200, "{}", r.brief());
    }
    // Per-role defaults apply per key.
    let (e1, e2) = (token("exp1"), token("exp2"));
    let r = until_limited(&a, "/v1/export", &e1, 2, 1.0);
    assert_eq!(r.kind(), "rate-limited", "{}", r.brief());
    assert_eq!(
        get(&a, "/v1/export", Some(&e2)).status,
        200,
        "exp2 has its own bucket"
    );

    std::thread::sleep(Duration::from_secs(retry));
    let r = get(&a, "/v1/events?limit=1", Some(&slow));
    assert_eq!(r.status, 200, "after Retry-After: {}", r.brief());

    // A closed stream gives its slot back.
    poll(40, "streamer's closed stream was never released", || {
        let s = Sse::open(&a, "/v1/stream", &bearer(&streamer));
        match s.status {
            200 => Some(()),
            429 => None,
            other => panic!("{other}: {}", s.body),
        }
    });
}

/// Sends GET `path` with `token` until the answer is 429; checks that
/// `burst` requests (plus what refilled meanwhile at `rate`) passed first.
fn until_limited(addr: &str, path: &str, token: &str, burst: usize, rate: f64) -> Resp {
    let started = Instant::now();
    let mut ok = 0;
    loop {
        let r = get(addr, path, Some(token));
        match r.status {
            200 => ok += 1,
            429 => {
                let refill = (started.elapsed().as_secs_f64() * rate).ceil() as usize;
                assert!(
                    ok >= burst && ok <= burst + refill,
                    "{path}: {ok} requests passed before the 429 (burst {burst}, {refill} refilled)"
                );
                return r;
            }
            _ => panic!("{path}: unexpected {}", r.brief()),
        }
        assert!(ok < burst + 20, "{path}: never rate limited");
    }
}
