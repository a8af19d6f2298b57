//! The local tier: days past `local_days` evicted from the disk once
//! archived, verified and signed; queries, exports and searches over them
//! answer as over local data, through a bounded cache.

use super::upload::day_of;
use super::*;
use crate::support::s3::s3_or_skip;
use std::os::unix::fs::MetadataExt;

/// The NDJSON export of everything before `until`, and a full-text search.
fn more_answers(s: &Server, until: &str, word: &str) -> (String, Value) {
    let r = crate::support::http::send(
        &s.addr,
        "GET",
        &format!("/v1/export?format=ndjson&until={until}"),
        &[],
        crate::support::http::Body::None,
    );
    assert_eq!(r.status, 200);
    let export = r.text();
    assert!(
        export.lines().count() >= 1200,
        "{} lines",
        export.lines().count()
    );
    let (st, _, found) = s.get(&format!("/v1/search?q={word}&limit=200&until={until}"));
    assert_eq!(st, 200, "{found}");
    (export, found["events"].clone())
}

#[test]
fn evicted_days_answer_queries_exports_and_searches_as_local_ones_within_a_bounded_cache() {
    let Some(s3) = s3_or_skip("archive_tier") else {
        return;
    };
    let bucket = s3.bucket("tier", None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (clock, public) = history(&dir, 3, 400, 9);
    let until = format!("{}T00:00:00Z", day_of(&clock, 0));
    let s = Server::start_on(plain(&dir).serve_config(None), clock.clone());
    let before = answers(&s, &until);
    let word = before.0[7]["action"].as_str().unwrap().to_string();
    let before_more = more_answers(&s, &until, &word);
    drop(s);
    // Keep one day before today on disk: the two older days go.
    let creds = credentials(&s3, tmp.path());
    let mut cfg = archived(&dir, &bucket, "n1", &s3.endpoint, &creds);
    cfg.archive.local_days = Some(1);
    cfg.archive.cache_bytes = 1 << 20;
    let s = Server::start_on(cfg.clone().serve_config(None), clock.clone());
    wait_archived(&s, &clock);
    let mut st = Value::Null;
    wait_for_state("two days evicted", || {
        st = archive_state(&s);
        st["evicted_segments"] == 2
    });
    assert!(st["released_bytes"].as_u64().unwrap() > 100_000, "{st:#}");
    let segs = dir.join("segments");
    for d in [day_of(&clock, -3), day_of(&clock, -2)] {
        let m = std::fs::metadata(segs.join(format!("{d}.0.seg"))).unwrap();
        assert!(
            m.blocks() * 512 <= 16 * 1024,
            "{d}: {} bytes on disk",
            m.blocks() * 512
        );
        assert!(m.len() > 100_000, "{d}: the stub keeps the length");
    }
    let kept = std::fs::metadata(segs.join(format!("{}.0.seg", day_of(&clock, -1)))).unwrap();
    assert!(
        kept.blocks() * 512 >= kept.len() / 2,
        "the newest closed day stays"
    );
    // Cold: the answers are the same, fetched from the archive.
    assert_eq!(
        answers(&s, &until),
        before,
        "evicted days answer differently"
    );
    assert_eq!(more_answers(&s, &until, &word), before_more);
    let st = archive_state(&s);
    assert!(st["fetches"].as_u64().unwrap() >= 2, "{st:#}");
    // The cache stays within its budget (but for the file last fetched).
    let cache: u64 = std::fs::read_dir(dir.join("archive-cache"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let one = std::fs::metadata(segs.join(format!("{}.0.seg", day_of(&clock, -3))))
        .unwrap()
        .len();
    assert!(cache <= (1 << 20) + one, "{cache} bytes cached");
    // Warm: answered without the archive (the views' maps, then the cache).
    let fetched = archive_state(&s)["fetches"].clone();
    assert_eq!(answers(&s, &until), before);
    std::thread::sleep(stele::log::evicted::REMOTE_MAP_REUSE);
    assert_eq!(answers(&s, &until), before);
    let st = archive_state(&s);
    assert_eq!(st["fetches"], fetched, "{st:#}");
    assert!(st["cache_hits"].as_u64().unwrap() > 0, "{st:#}");
    // /v1/segments still gives the evicted segments' SHA-256.
    let (_, _, listed) = s.get("/v1/segments");
    let sha = listed["segments"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let archived_sha = stele::archive::store::sha256_hex(&bucket.get(&format!(
        "stele/node=n1/segments/{}.0.seg",
        day_of(&clock, -3)
    )));
    assert_eq!(sha, archived_sha);
    drop(s);
    // Offline: `stele verify` passes (the stubs noted), and so does a backup.
    let (code, out) = crate::support::verify(&[&dir]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("evicted"), "{out}");
    let backup = tmp.path().join("backup");
    let b = crate::support::stele()
        .args([
            "backup",
            backup.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let out = crate::support::stele()
        .args(["verify", backup.to_str().unwrap(), "--public-key", &public])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // After a restart (evicted.json read at open), the same answers.
    let s = Server::start_on(cfg.serve_config(None), clock.clone());
    assert_eq!(answers(&s, &until), before, "after a restart");
    drop(s);
}

#[test]
fn an_evicted_day_the_archive_cannot_give_or_gives_altered_fails_by_name_and_recovers() {
    let Some(s3) = s3_or_skip("archive_tier_down") else {
        return;
    };
    let bucket = s3.bucket("tier-down", None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (clock, _) = history(&dir, 2, 300, 10);
    let until = format!("{}T00:00:00Z", day_of(&clock, 0));
    let relay = crate::support::proxy::Proxy::start(s3.endpoint.trim_start_matches("http://"));
    let creds = credentials(&s3, tmp.path());
    let mut cfg = archived(
        &dir,
        &bucket,
        "n1",
        &format!("http://{}", relay.addr),
        &creds,
    );
    cfg.archive.local_days = Some(1);
    let s = Server::start_on(cfg.serve_config(None), clock.clone());
    wait_archived(&s, &clock);
    wait_for_state("one day evicted", || {
        archive_state(&s)["evicted_segments"] == 1
    });
    let (st, _, page) = s.get(&format!("/v1/events?order=asc&limit=1000&until={until}"));
    assert_eq!(st, 200, "{page}");
    let all = page["events"].as_array().unwrap().len();
    assert_eq!(all, 600);
    // The store goes away and the cache is emptied: reads of the evicted
    // day fail, naming the segment; nothing is answered from the stub.
    let evicted = format!("{}.0.seg", day_of(&clock, -2));
    std::fs::remove_file(dir.join("archive-cache").join(&evicted)).unwrap();
    relay.cut();
    // The view's map of the copy it read is reused only briefly.
    std::thread::sleep(stele::log::evicted::REMOTE_MAP_REUSE);
    let (st, _, p) = s.get(&format!("/v1/events?order=asc&limit=1000&until={until}"));
    assert_eq!(st, 500, "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(&evicted) && detail.contains("archive"),
        "{detail}"
    );
    // The days on disk still answer.
    let since = format!("{}T00:00:00Z", day_of(&clock, -1));
    let (st, _, p) = s.get(&format!(
        "/v1/events?since={since}&until={until}&limit=1000"
    ));
    assert_eq!(
        (st, p["events"].as_array().map(Vec::len)),
        (200, Some(300)),
        "{p}"
    );
    // Back: the same answer again.
    relay.up();
    let (st, _, again) = s.get(&format!("/v1/events?order=asc&limit=1000&until={until}"));
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["events"], page["events"]);
    // Altered in the bucket: the copy is refused by its SHA-256.
    std::fs::remove_file(dir.join("archive-cache").join(&evicted)).unwrap();
    std::thread::sleep(stele::log::evicted::REMOTE_MAP_REUSE);
    let key = format!("stele/node=n1/segments/{evicted}");
    let mut bytes = bucket.get(&key);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    bucket.put(&key, &bytes);
    let (st, _, p) = s.get(&format!("/v1/events?order=asc&limit=1000&until={until}"));
    assert_eq!(st, 500, "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("altered in the archive"), "{detail}");
    drop(s);
}
