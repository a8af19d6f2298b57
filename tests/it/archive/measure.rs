//! A measurement, not a test (ignored; run by hand, in release, with S3
//! up): the latency of reads over evicted days, cold (fetched from the
//! archive) and cached, against the same reads over local days.
//!
//! ```sh
//! scripts/s3-ceph.sh start /tmp/stele-s3 && set -a && . /tmp/stele-s3/s3.env && set +a
//! cargo test --release --test it archive::measure -- --ignored --nocapture
//! ```

use super::upload::day_of;
use super::*;
use crate::support::s3::s3_or_skip;
use std::time::Instant;

fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95), ms[ms.len() - 1])
}

/// `runs` timed GETs of `path`; `before` runs ahead of each (emptying the
/// cache, say).
fn time(s: &Server, path: &str, runs: usize, mut before: impl FnMut()) -> (f64, f64, f64) {
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        before();
        let t = Instant::now();
        let (st, _, body) = s.get(path);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 200, "{body}");
    }
    percentiles(ms)
}

#[test]
#[ignore = "a measurement: run by hand (see the module doc)"]
fn measure_reads_over_evicted_days_cold_cached_and_local() {
    let Some(s3) = s3_or_skip("archive_measure") else {
        return;
    };
    let per_day: usize = std::env::var("STELE_MEASURE_EVENTS_PER_DAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runs = 20;
    let bucket = s3.bucket("measure", None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (clock, _) = history(&dir, 3, per_day, 11);
    let creds = credentials(&s3, tmp.path());
    let mut cfg = archived(&dir, &bucket, "n1", &s3.endpoint, &creds);
    cfg.archive.local_days = Some(1);
    let s = Server::start_on(cfg.serve_config(None), clock.clone());
    wait_archived(&s, &clock);
    wait_for_state("two days evicted", || {
        archive_state(&s)["evicted_segments"] == 2
    });
    let cache = dir.join("archive-cache");
    // Cold: no copy in the cache, and past the time a view reuses its map.
    let empty = || {
        for e in std::fs::read_dir(&cache).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        std::thread::sleep(stele::log::evicted::REMOTE_MAP_REUSE);
    };
    let day = |d: i64| {
        (
            format!("{}T00:00:00Z", day_of(&clock, d)),
            format!("{}T00:00:00Z", day_of(&clock, d + 1)),
        )
    };
    let segment = std::fs::metadata(dir.join(format!("segments/{}.0.seg", day_of(&clock, -3))))
        .unwrap()
        .len();
    println!(
        "{per_day} events a day, segments of {:.1} MB; {runs} runs each; ms p50 / p95 / max",
        segment as f64 / 1e6
    );
    let queries = [
        (
            "a page of 100 events (the day's newest)",
            "events?limit=100",
        ),
        ("full-text search, 100 hits", "search?q=error&limit=100"),
        ("the day's NDJSON export", "export?format=ndjson"),
    ];
    for (what, q) in queries {
        let (since, until) = day(-3);
        let evicted = format!("/v1/{q}&since={since}&until={until}");
        let (since, until) = day(-1);
        let local = format!("/v1/{q}&since={since}&until={until}");
        let cold = time(&s, &evicted, runs, empty);
        let cached = time(&s, &evicted, runs, || {});
        let on_disk = time(&s, &local, runs, || {});
        println!(
            "{what}: evicted cold {:.1} / {:.1} / {:.1}; cached {:.1} / {:.1} / {:.1}; \
             local {:.1} / {:.1} / {:.1}",
            cold.0, cold.1, cold.2, cached.0, cached.1, cached.2, on_disk.0, on_disk.1, on_disk.2
        );
    }
    drop(s);
}
