//! The archive read back: `stele verify s3://…` against tampering,
//! `stele restore` onto an empty directory, retention and legal holds.

use super::upload::day_of;
use super::*;
use crate::support::s3::s3_or_skip;

/// Runs `stele ARGS` with the bucket's keys; (exit code, stdout + stderr).
fn run(bucket: &Bucket, args: &[&str]) -> (i32, String) {
    let out = stele_s3(bucket).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// History of three closed days, archived; the server is stopped.
fn archived_history(
    s3: &S3Env,
    bucket: &Bucket,
    tmp: &Path,
    seed: u64,
) -> (PathBuf, Arc<ManualClock>, String, Config) {
    let dir = tmp.join("data");
    let (clock, public) = history(&dir, 3, 300, seed);
    let creds = credentials(s3, tmp);
    let cfg = archived(&dir, bucket, "n1", &s3.endpoint, &creds);
    let s = Server::start_on(cfg.clone().serve_config(None), clock.clone());
    wait_archived(&s, &clock);
    drop(s);
    (dir, clock, public, cfg)
}

#[test]
fn verify_passes_an_archive_names_what_was_altered_in_it_and_days_removed_from_a_data_directory() {
    let Some(s3) = s3_or_skip("archive_verify") else {
        return;
    };
    let bucket = s3.bucket("verify", None);
    let tmp = tempfile::tempdir().unwrap();
    let (_, clock, public, _) = archived_history(&s3, &bucket, tmp.path(), 3);
    let url = bucket.url("stele");
    let (code, out) = run(
        &bucket,
        &[
            "verify",
            &url,
            "--endpoint",
            &s3.endpoint,
            "--public-key",
            &public,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 1 node(s)"), "{out}");
    assert!(
        out.contains("signatures checked with the given public key"),
        "{out}"
    );
    // The archive as a witness of the data directory: the newest days and
    // the open one removed with their digests and checkpoint.json pass a
    // plain verify (the log just ends earlier) but not one with --archive.
    let cut = tmp.path().join("cut");
    crate::support::copy_dir(&tmp.path().join("data"), &cut);
    let d2 = day_of(&clock, -1);
    for f in [
        format!("segments/{d2}.0.seg"),
        format!("segments/{}.0.seg", day_of(&clock, 0)),
        format!("digests/{d2}.digest.json"),
        format!("digests/{d2}.digest.sig"),
        "checkpoint.json".into(),
    ] {
        std::fs::remove_file(cut.join(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let c = cut.to_str().unwrap();
    let (code, out) = run(&bucket, &["verify", c, "--public-key", &public]);
    assert_eq!(code, 0, "a plain verify cannot tell: {out}");
    let node = bucket.url("stele/node=n1");
    let (code, out) = run(
        &bucket,
        &[
            "verify",
            c,
            "--public-key",
            &public,
            "--archive",
            &node,
            "--endpoint",
            &s3.endpoint,
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{d2}.0.seg is in the archive")),
        "{out}"
    );
    assert!(
        out.contains("checkpoints/"),
        "the archived checkpoint is not named: {out}"
    );
    let (code, out) = run(
        &bucket,
        &[
            "verify",
            tmp.path().join("data").to_str().unwrap(),
            "--archive",
            &node,
            "--endpoint",
            &s3.endpoint,
        ],
    );
    assert_eq!(code, 0, "the untouched directory: {out}");
    // One byte of the oldest day's first segment flipped; the middle day's
    // first segment removed.
    let (d0, d1) = (day_of(&clock, -3), day_of(&clock, -2));
    let altered = format!("stele/node=n1/segments/{d0}.0.seg");
    let mut bytes = bucket.get(&altered);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    bucket.put(&altered, &bytes);
    let removed = format!("stele/node=n1/segments/{d1}.0.seg");
    bucket.delete(&removed);
    let (code, out) = run(
        &bucket,
        &[
            "verify",
            &url,
            "--endpoint",
            &s3.endpoint,
            "--public-key",
            &public,
        ],
    );
    assert_eq!(code, 1, "{out}");
    let damaged: Vec<&str> = out.lines().filter(|l| l.starts_with("DAMAGED")).collect();
    assert!(
        damaged.iter().any(|l| l.contains(&format!("{d0}.0.seg"))),
        "the altered segment is not named: {out}"
    );
    assert!(
        damaged
            .iter()
            .any(|l| l.contains(&format!("{d1}.0.seg")) && l.contains("missing")),
        "the removed segment is not named: {out}"
    );
    // A bad address is a usage error, not damage.
    let (code, out) = run(&bucket, &["verify", "s3://NO", "--endpoint", &s3.endpoint]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn restore_onto_an_empty_directory_answers_as_the_original_and_verifies() {
    let Some(s3) = s3_or_skip("archive_restore") else {
        return;
    };
    let bucket = s3.bucket("restore", None);
    let tmp = tempfile::tempdir().unwrap();
    let (dir, clock, public, _) = archived_history(&s3, &bucket, tmp.path(), 4);
    let until = format!("{}T00:00:00Z", day_of(&clock, 0));
    let s = Server::start_on(plain(&dir).serve_config(None), clock.clone());
    let before = answers(&s, &until);
    drop(s);
    assert_eq!(before.0.len(), 900);
    let url = bucket.url("stele");
    let fresh = tmp.path().join("restored");
    let f = fresh.to_str().unwrap();
    let (code, out) = run(
        &bucket,
        &["restore", "--from", &url, "--endpoint", &s3.endpoint, f],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("restored"), "{out}");
    let (code, out) = run(&bucket, &["verify", f, "--public-key", &public]);
    assert_eq!(code, 0, "{out}");
    let s = Server::start_on(plain(&fresh).serve_config(None), clock.clone());
    let after = answers(&s, &until);
    drop(s);
    assert_eq!(after.0, before.0, "the restored events differ");
    assert_eq!(after.1, before.1, "the restored statistics differ");
    // Not into a directory that holds something.
    let (code, out) = run(
        &bucket,
        &["restore", "--from", &url, "--endpoint", &s3.endpoint, f],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not empty"), "{out}");
    // --take-over: the new directory is the node's in the claim.
    let other = tmp.path().join("take-over");
    let o = other.to_str().unwrap();
    let (code, out) = run(
        &bucket,
        &[
            "restore",
            "--from",
            &url,
            "--endpoint",
            &s3.endpoint,
            "--take-over",
            o,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(other.join("archive.id")).unwrap(),
        std::fs::read_to_string(dir.join("archive.id")).unwrap()
    );
    // On demand: stubs only (needs --take-over: it reads this node's objects).
    let lazy = tmp.path().join("on-demand");
    let l = lazy.to_str().unwrap();
    let (code, out) = run(
        &bucket,
        &[
            "restore",
            "--from",
            &url,
            "--endpoint",
            &s3.endpoint,
            "--on-demand",
            l,
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--take-over"), "{out}");
    let (code, out) = run(
        &bucket,
        &[
            "restore",
            "--from",
            &url,
            "--endpoint",
            &s3.endpoint,
            "--take-over",
            "--on-demand",
            l,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("as stubs"), "{out}");
    let (code, out) = run(&bucket, &["verify", l, "--public-key", &public]);
    assert_eq!(code, 0, "{out}");
    // Stubs but for the newest segment (the log reads its last one whole).
    use std::os::unix::fs::MetadataExt;
    let mut sizes: Vec<(String, u64)> = std::fs::read_dir(lazy.join("segments"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().blocks() * 512)
        })
        .collect();
    sizes.sort();
    let newest = sizes.pop().unwrap();
    assert!(newest.1 > 100_000, "{newest:?}");
    assert!(sizes.iter().all(|(_, b)| *b <= 16 * 1024), "{sizes:?}");
    // A daemon archiving to the same node reads them on demand (the first
    // start rebuilds the indexes through the archive).
    std::fs::remove_dir_all(&other).unwrap();
    let creds = credentials(&s3, tmp.path());
    let cfg = archived(&lazy, &bucket, "n1", &s3.endpoint, &creds);
    let s = Server::start_on(cfg.serve_config(None), clock.clone());
    assert_eq!(
        answers(&s, &until),
        before,
        "the on-demand restore answers differently"
    );
    drop(s);
}

#[test]
fn retention_drops_an_archived_day_from_the_bucket_records_it_and_keeps_a_held_one() {
    let Some(s3) = s3_or_skip("archive_retention") else {
        return;
    };
    // A bucket with object lock (GOVERNANCE, one day by default): uploads
    // carry a checksum as such buckets require; deletes leave the locked
    // versions in place.
    let bucket = s3.bucket("retention", Some(1));
    let tmp = tempfile::tempdir().unwrap();
    let (dir, clock, _, mut cfg) = archived_history(&s3, &bucket, tmp.path(), 5);
    let (d0, d1, d2) = (day_of(&clock, -3), day_of(&clock, -2), day_of(&clock, -1));
    for d in [&d0, &d1, &d2] {
        assert!(
            objects(&bucket, "n1").contains(&format!("segments/{d}.0.seg")),
            "{d} was not archived"
        );
    }
    // Everything is past a one-day TTL; the middle day is held.
    std::fs::write(
        dir.join("holds.json"),
        format!(r#"[{{"name": "case-7", "from": "{d1}", "until": "{d1}", "reason": "audit"}}]"#),
    )
    .unwrap();
    cfg.retention.days = Some(1);
    cfg.retention.interval_secs = 1;
    let s = Server::start_on(cfg.clone().serve_config(None), clock.clone());
    wait_for_state("retention to reach the archive", || {
        archive_state(&s)["deletions"].as_u64().unwrap_or(0) > 0
            && !objects(&bucket, "n1")
                .iter()
                .any(|k| k.starts_with(&format!("segments/{d0}.")))
    });
    let keys = objects(&bucket, "n1");
    assert!(
        !keys.contains(&format!("events/day={d0}/events.parquet")),
        "{keys:?}"
    );
    let record: Value =
        serde_json::from_slice(&bucket.get(&format!("stele/node=n1/retention/{d0}.json"))).unwrap();
    assert_eq!(record["day"], d0.as_str(), "{record}");
    assert!(record["reason"].as_str().is_some(), "{record}");
    // The held day and the one after it stay, segments and Parquet.
    for d in [&d1, &d2] {
        assert!(
            keys.contains(&format!("segments/{d}.0.seg")),
            "{d}: {keys:?}"
        );
        assert!(
            keys.contains(&format!("events/day={d}/events.parquet")),
            "{d}: {keys:?}"
        );
    }
    // The digests stay: the chain of signed days is whole.
    assert!(
        keys.contains(&format!("digests/{d0}.digest.json")),
        "{keys:?}"
    );
    drop(s);
}
