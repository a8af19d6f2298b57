//! Uploads: every sealed segment, digest and Parquet file, and the
//! checkpoints, confirmed byte for byte; a store that is down.

use super::*;
use crate::support::proxy::Proxy;
use crate::support::s3::s3_or_skip;
use std::time::Instant;

#[test]
fn sealed_days_digests_and_checkpoints_reach_the_bucket_byte_for_byte() {
    let Some(s3) = s3_or_skip("archive_upload") else {
        return;
    };
    let bucket = s3.bucket("upload", None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (clock, public) = history(&dir, 3, 400, 1);
    let creds = credentials(&s3, tmp.path());
    let cfg = archived(&dir, &bucket, "n1", &s3.endpoint, &creds);
    let s = Server::start_on(cfg.clone().serve_config(None), clock.clone());
    wait_archived(&s, &clock);
    let keys = objects(&bucket, "n1");
    // Every sealed segment, byte for byte.
    let data = stele::datadir::DataDir::new(&dir);
    let sealed: Vec<String> = crate::support::segment_files(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(&today(&clock)))
        .collect();
    assert!(sealed.len() >= 3, "{sealed:?}");
    for name in &sealed {
        let key = format!("segments/{name}");
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
        let local = std::fs::read(data.segments().join(name)).unwrap();
        assert!(
            bucket.get(&format!("stele/node=n1/{key}")) == local,
            "{key} differs from the local file"
        );
    }
    // The active segment (today's) is not archived.
    assert!(!keys.iter().any(|k| k.contains(&today(&clock))), "{keys:?}");
    // The three signed days: digest and signature, and a Parquet file each.
    for d in 1..=3 {
        let day = day_of(&clock, -d);
        for file in [
            format!("digests/{day}.digest.json"),
            format!("digests/{day}.digest.sig"),
        ] {
            let local = std::fs::read(dir.join(&file)).unwrap();
            assert!(
                bucket.get(&format!("stele/node=n1/{file}")) == local,
                "{file}"
            );
        }
        let parquet = format!("events/day={day}/events.parquet");
        assert!(keys.contains(&parquet), "{parquet} missing from {keys:?}");
    }
    // Checkpoints: signed by the node's key, and newer than the last event
    // of the closed days.
    let checkpoints: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("checkpoints/"))
        .collect();
    assert!(!checkpoints.is_empty(), "{keys:?}");
    let key = stele::seal::digest::parse_public_key(&public).unwrap();
    for k in &checkpoints {
        let line = String::from_utf8(bucket.get(&format!("stele/node=n1/{k}"))).unwrap();
        let cp = stele::seal::checkpoint::Checkpoint::decode(line.trim_end()).unwrap();
        cp.verify(&[key]).unwrap();
        assert!(k.ends_with(&format!("{:020}.json", cp.seq)), "{k}: {line}");
    }
    // The claim names this data directory.
    let claim: Value = serde_json::from_slice(&bucket.get("stele/node=n1/NODE.json")).unwrap();
    let id = std::fs::read_to_string(dir.join("archive.id")).unwrap();
    assert_eq!(claim["data_dir_id"], id.trim(), "{claim}");
    assert_eq!(claim["node"], "n1");
    // /metrics and /readyz say so.
    let st = archive_state(&s);
    assert!(
        st["uploads"].as_u64().unwrap() >= sealed.len() as u64 + 9,
        "{st:#}"
    );
    assert_eq!(st["claimed"], true);
    let (_, _, ready) = s.get("/readyz");
    assert_eq!(ready["degraded"], false, "{ready:#}");
    let metrics = crate::support::http::send(
        &s.addr,
        "GET",
        "/metrics",
        &[],
        crate::support::http::Body::None,
    )
    .text();
    assert!(metrics.contains("stele_archive_enabled 1\n"), "{metrics}");
    assert!(metrics.contains("stele_archive_backlog_objects 0\n"));
    let midnight = (clock.now_micros().div_euclid(DAY) - 1) * DAY / 1_000_000;
    assert!(
        metrics.contains(&format!(
            "stele_archive_newest_day_timestamp_seconds {midnight}\n"
        )),
        "{metrics}"
    );
    // A restart uploads nothing again (what is there is known by listing).
    drop(s);
    let s = Server::start_on(cfg.clone().serve_config(None), clock.clone());
    wait_archived(&s, &clock);
    let st = archive_state(&s);
    // At most a newer checkpoint (the previous process signed one at exit).
    assert!(st["uploads"].as_u64().unwrap() <= 1, "{st:#}");
}

/// The day of `clock` plus `delta` days, `YYYY-MM-DD`.
pub fn day_of(clock: &ManualClock, delta: i64) -> String {
    chrono::DateTime::from_timestamp_micros(clock.now_micros() + delta * DAY)
        .unwrap()
        .date_naive()
        .to_string()
}

fn today(clock: &ManualClock) -> String {
    day_of(clock, 0)
}

#[test]
fn a_store_that_is_down_grows_a_backlog_deletes_nothing_and_is_caught_up() {
    let Some(s3) = s3_or_skip("archive_down") else {
        return;
    };
    let bucket = s3.bucket("down", None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (clock, _) = history(&dir, 2, 300, 2);
    let creds = credentials(&s3, tmp.path());
    let relay = Proxy::start(s3.endpoint.trim_start_matches("http://"));
    relay.cut();
    let endpoint = format!("http://{}", relay.addr);
    let cfg = archived(&dir, &bucket, "n1", &endpoint, &creds);
    let files_before = crate::support::segment_files(&dir);
    let s = Server::start_on(cfg.clone().serve_config(None), clock.clone());
    // Failing: a backlog, the error on /readyz, degraded but ready.
    let mut st = Value::Null;
    wait_for_state("the archive to fail", || {
        st = archive_state(&s);
        st["failures"].as_u64().unwrap_or(0) >= 2 && st["backlog_objects"].as_u64() > Some(0)
    });
    assert!(
        st["last_error"].as_str().unwrap().contains("unavailable"),
        "{st:#}"
    );
    let (code, _, ready) = s.get("/readyz");
    assert_eq!(
        (code, &ready["degraded"]),
        (200, &Value::Bool(true)),
        "{ready:#}"
    );
    // Ingest does not wait for the archive.
    let t = Instant::now();
    for i in 0..20 {
        let e =
            serde_json::json!({"action": "update", "actor": "alice", "entity_id": i.to_string()});
        assert_eq!(s.post(&e).0, 201);
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Nothing local went anywhere.
    for f in &files_before {
        assert!(f.exists(), "{} was deleted", f.display());
    }
    assert!(objects(&bucket, "n1").is_empty());
    // The store comes back: everything is caught up, the state clears.
    relay.up();
    wait_archived(&s, &clock);
    let (_, _, ready) = s.get("/readyz");
    assert_eq!(ready["degraded"], false, "{ready:#}");
    let keys = objects(&bucket, "n1");
    for f in &files_before {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(&today(&clock)) {
            assert!(
                keys.contains(&format!("segments/{name}")),
                "{name}: {keys:?}"
            );
        }
    }
}
