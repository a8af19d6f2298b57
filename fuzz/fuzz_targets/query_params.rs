//! Query-parameter parsing over arbitrary query strings: never panics, and
//! an accepted query is internally consistent (limit in range, since before
//! until, severity not below min_severity).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele::query::{Query, LIMIT_MAX};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pairs: Vec<(String, String)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let Ok(q) = Query::parse(&pairs, 1_800_000_000_000_000) else {
        return;
    };
    assert!((1..=LIMIT_MAX).contains(&q.limit));
    if let (Some(s), Some(u)) = (q.filter.since, q.filter.until) {
        assert!(s < u);
    }
    if let (Some(s), Some(m)) = (q.filter.severity, q.filter.min_severity) {
        assert!(s >= m);
    }
    // Parsing is deterministic: the same pairs give the same query.
    assert_eq!(Query::parse(&pairs, 1_800_000_000_000_000).ok(), Some(q));
});
