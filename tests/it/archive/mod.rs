//! The S3 archive against a real S3 (a one-node Ceph with its RADOS
//! Gateway, started by `.ci/run` or by hand: docs/s3-testing.md): uploads
//! confirmed byte for byte, a store that is down, tampering in the bucket,
//! restore onto an empty directory, retention and holds, two nodes on one
//! bucket, and the Parquet files against `/v1/stats`.
//!
//! Every test makes its own bucket and skips (or, with
//! `STELE_S3_REQUIRED=1`, fails) without `S3_ENDPOINT`. History is written
//! on a `ManualClock` by a first server without an archive, so that days
//! close at once; the server under test starts on the same clock, signs the
//! closed days at start and archives them.

mod measure;
mod nodes;
mod parquet;
mod restore;
mod tier;
mod upload;

use crate::support::inproc::Server;
use crate::support::s3::{Bucket, S3Env};
use crate::support::time::{wait_for, HOUR};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use stele::clock::{Clock, ManualClock};
use stele::config::Config;

pub const DAY: i64 = 24 * HOUR;

/// A data directory with `days` closed days of `per_day` realistic events
/// each (10:00 to 16:00 UTC, event time = receive time), the last day open
/// with one event, and a signing key. Returns the clock (on the open day)
/// and the public key (hex).
pub fn history(dir: &Path, days: i64, per_day: usize, seed: u64) -> (Arc<ManualClock>, String) {
    std::fs::create_dir_all(dir).unwrap();
    let seed_bytes: [u8; 32] = std::array::from_fn(|i| (seed as u8).wrapping_mul(31) ^ i as u8);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed_bytes);
    let path = dir.join("signing.key");
    std::fs::write(&path, hex::encode(key.to_bytes())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let today = stele::clock::SystemClock.now_micros().div_euclid(DAY) * DAY;
    let day0 = today - (days + 1) * DAY;
    let clock = Arc::new(ManualClock::new(day0 + 10 * HOUR));
    let s = Server::start_on(plain(dir).serve_config(None), clock.clone());
    let mut gen = stele::testkit::EventGen::new(seed);
    // Batches of 250 spread over 10:00 to 16:00 of each day.
    let step = 6 * HOUR / (per_day.div_ceil(250).max(1) as i64);
    for d in 0..days {
        let mut left = per_day;
        let mut t = day0 + d * DAY + 10 * HOUR;
        while left > 0 {
            clock.set(t);
            let n = left.min(250);
            let batch: Vec<Value> = (0..n)
                .map(|_| {
                    let mut e = gen.json();
                    e["timestamp"] = Value::String(crate::support::time::ts(t));
                    e
                })
                .collect();
            let (st, _, body) = s.post(&Value::Array(batch));
            assert_eq!(st, 201, "{body}");
            left -= n;
            t += step;
        }
    }
    clock.set(day0 + days * DAY + 9 * HOUR);
    let mut e = gen.json();
    e["timestamp"] = Value::String(crate::support::time::ts(clock.now_micros()));
    assert_eq!(s.post(&e).0, 201);
    drop(s);
    (clock, hex::encode(key.verifying_key().to_bytes()))
}

/// The defaults for `dir`, without the detectors (their findings would
/// change the counts the tests compare).
pub fn plain(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.data_dir = dir.to_path_buf();
    cfg.detect.enabled = false;
    cfg
}

/// A directory holding the store's keys as `archive.credentials_dir` reads
/// them.
pub fn credentials(s3: &S3Env, under: &Path) -> PathBuf {
    let dir = under.join("s3-credentials");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("s3-access-key-id"), &s3.access_key).unwrap();
    std::fs::write(dir.join("s3-secret-access-key"), &s3.secret_key).unwrap();
    dir
}

/// [`plain`] with `[archive]` on `bucket` under prefix `stele`, as `node`,
/// through `endpoint` (the store's, or a relay's), polling every second.
pub fn archived(dir: &Path, bucket: &Bucket, node: &str, endpoint: &str, creds: &Path) -> Config {
    let mut cfg = plain(dir);
    cfg.archive = stele::archive::ArchiveConfig {
        url: Some(bucket.url("stele")),
        node: Some(node.into()),
        endpoint: Some(endpoint.into()),
        allow_http: true,
        credentials_dir: Some(creds.to_path_buf()),
        poll_secs: 1,
        checkpoint_interval_secs: 1,
        ..stele::archive::ArchiveConfig::default()
    };
    cfg.validate().expect("a valid configuration");
    cfg
}

/// `/readyz`'s `state.archive`.
pub fn archive_state(s: &Server) -> Value {
    let (_, _, r) = s.get("/readyz");
    r["state"]["archive"].clone()
}

/// Waits until the archive holds every closed day (the newest is the day
/// before the clock's) with nothing left to upload.
pub fn wait_archived(s: &Server, clock: &ManualClock) {
    let newest = chrono::DateTime::from_timestamp_micros(clock.now_micros() - DAY)
        .unwrap()
        .date_naive()
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut last;
    loop {
        last = archive_state(s);
        let done = last["newest_day"] == newest.as_str()
            && last["backlog_objects"] == 0
            && last["last_error"].is_null()
            && last["passes"].as_u64().unwrap_or(0) > 0;
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the archive to hold {newest}: {last:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(last["problems"].as_array().unwrap().is_empty(), "{last:#}");
}

/// [`wait_for`] with the archive's patience (uploads on a loaded machine).
pub fn wait_for_state(what: &str, done: impl FnMut() -> bool) {
    wait_for(what, Duration::from_secs(60), done);
}

/// The object keys under the node's root, relative to it.
pub fn objects(bucket: &Bucket, node: &str) -> Vec<String> {
    let root = format!("stele/node={node}/");
    bucket
        .list(&root)
        .into_iter()
        .map(|(k, _)| k.strip_prefix(&root).unwrap().to_string())
        .collect()
}

/// `stele` (the binary) with the store's keys in its environment.
pub fn stele_s3(bucket: &Bucket) -> std::process::Command {
    let mut cmd = crate::support::stele();
    for (k, v) in bucket.env_vars() {
        cmd.env(k, v);
    }
    cmd
}

/// What the tests compare: every archived event, oldest first, and the
/// statistics of the archived days.
pub fn answers(s: &Server, until: &str) -> (Vec<Value>, Value) {
    let mut events = Vec::new();
    let mut path = format!("/v1/events?order=asc&limit=1000&until={until}");
    loop {
        let (st, _, page) = s.get(&path);
        assert_eq!(st, 200, "{page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/events?order=asc&limit=1000&until={until}&cursor={c}"),
            None => break,
        }
    }
    let (st, _, stats) = s.get(&format!(
        "/v1/stats?until={until}&group_by=action,category,severity,tenant"
    ));
    assert_eq!(st, 200, "{stats}");
    (events, stats)
}
