//! Backup and restore as operators do it: `stele backup DEST` while the
//! daemon runs and ingests, `GET /v1/segments` to compare against, then wipe
//! the data directory, copy the backup in, start Stele and get the same
//! answers.

use crate::support::daemon::{call_at, Daemon};
use crate::support::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Appends `n` generated events offline with small segments, so the log
/// spans many sealed segments.
fn append_offline(dir: &Path, n: usize) {
    let mut gen = stele::testkit::EventGen::new(5);
    let mut child = stele()
        .args(["append", "--segment-bytes-max", "65536", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..n {
        writeln!(stdin, "{}", gen.json()).unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

fn backup(data: &Path, dest: &Path) -> (i32, String, String) {
    let out = stele()
        .args(["backup", "--data-dir"])
        .arg(data)
        .arg(dest)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Everything a user could ask, as one comparable value.
fn answers(d: &Daemon) -> Value {
    let (_, export) = d.get_raw("/v1/export?format=ndjson");
    let events: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_id = events[0]["id"].as_str().unwrap().to_string();
    json!({
        "export": events,
        "stats": d.get("/v1/stats?hours=87600").2,
        "search": d.get("/v1/search?q=error&limit=50").2["events"],
        "by_id": d.get(&format!("/v1/events/{first_id}")).2,
    })
}

fn wait_indexed(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, _, r) = d.get("/readyz");
        if st == 200 && r["state"]["lag_events"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "indexes never caught up: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn backup_while_ingesting_then_wipe_restore_and_get_identical_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dest = tmp.path().join("backup");
    append_offline(&data, 3000);
    let d = Daemon::start(&data);

    // The segment listing: contiguous seq ranges, hashes of sealed files.
    let (st, _, listing) = d.get("/v1/segments");
    assert_eq!(st, 200, "{listing}");
    let segs = listing["segments"].as_array().unwrap().clone();
    assert!(segs.len() > 10, "{listing}");
    let mut next = 1;
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s["first_seq"], next, "{s}");
        next = s["last_seq"].as_u64().map_or(next, |l| l + 1);
        let path = data.join("segments").join(s["name"].as_str().unwrap());
        if i + 1 < segs.len() {
            assert_eq!(s["sealed"], true, "{s}");
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(s["bytes"], bytes.len(), "{s}");
            assert_eq!(s["sha256"], stele::datadir::sha256_hex(&bytes), "{s}");
        } else {
            assert_eq!(s["sealed"], false, "{s}");
            assert!(s["sha256"].is_null(), "{s}");
        }
    }
    assert_eq!(next, 3001);
    assert_eq!(d.get("/v1/segments?x=1").0, 400);

    // Back up while a client keeps posting: the copy is a consistent prefix.
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (addr, stop) = (d.addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut posted = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Value> = (0..20)
                    .map(|i| json!({"action": "login", "actor": format!("u{posted}-{i}"), "description": "error during backup window"}))
                    .collect();
                let body = Value::Array(batch).to_string();
                let (st, _, r) = call_at(
                    &addr,
                    "POST",
                    "/v1/events",
                    "application/json",
                    body.as_bytes(),
                );
                assert_eq!(st, 201, "{r}");
                posted += 1;
            }
            posted
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let (code, out, err) = backup(&data, &dest);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("the copy verifies"), "{out}");
    stop.store(true, Ordering::Relaxed);
    assert!(poster.join().unwrap() > 0);
    assert_eq!(verify(&[&dest]).0, 0);

    // A second backup after ingest stopped: sealed segments are skipped,
    // the active prefix is refreshed.
    wait_indexed(&d);
    let (code, out, err) = backup(&data, &dest);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("already in the backup"), "{out}");
    let before = answers(&d);
    let cursor = d.get("/v1/events?limit=10&tenant=acme").2["next_cursor"]
        .as_str()
        .map(str::to_string);
    let page_before = cursor.as_ref().map(|c| {
        d.get(&format!("/v1/events?limit=10&tenant=acme&cursor={c}"))
            .2
    });
    let last_seq = d.get("/readyz").2["state"]["log_last_seq"]
        .as_u64()
        .unwrap();
    assert!(last_seq > 3000);
    drop(d); // SIGKILL: the backup must not depend on a clean stop

    // Wipe, restore by copying files, start: indexes are rebuilt.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&dest, &data);
    let d = Daemon::start(&data);
    wait_indexed(&d);
    assert_eq!(d.get("/readyz").2["state"]["log_last_seq"], last_seq);
    let after = answers(&d);
    assert_eq!(
        before["export"], after["export"],
        "events differ after restore"
    );
    assert_eq!(before, after, "answers differ after restore");
    // A cursor handed out before still works (cursor.key came along).
    if let (Some(c), Some(page)) = (cursor, page_before) {
        let (st, _, again) = d.get(&format!("/v1/events?limit=10&tenant=acme&cursor={c}"));
        assert_eq!(st, 200, "{again}");
        assert_eq!(again, page);
    } else {
        panic!("no cursor: the test data has too few acme events");
    }
    assert_eq!(verify(&[&data]).0, 0);
}

#[test]
fn backup_refuses_what_it_must_not_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    append_offline(&data, 200);
    // Into the data directory itself.
    let (code, _, err) = backup(&data, &data);
    assert_eq!(code, 2);
    assert!(
        err.contains("the destination is the data directory itself"),
        "{err}"
    );
    // A stray file among the segments.
    std::fs::write(data.join("segments").join("notes.txt"), b"x").unwrap();
    let (code, _, err) = backup(&data, &tmp.path().join("b1"));
    assert_eq!(code, 2);
    assert!(err.contains("not a segment file"), "{err}");
    std::fs::remove_file(data.join("segments").join("notes.txt")).unwrap();
    // A destination holding a newer segment (another log's backup).
    let other = tmp.path().join("b2");
    std::fs::create_dir_all(other.join("segments")).unwrap();
    std::fs::write(other.join("segments").join("2999-01-01.0.seg"), b"x").unwrap();
    let (code, _, err) = backup(&data, &other);
    assert_eq!(code, 2);
    assert!(
        err.contains("newer than the data directory's last one"),
        "{err}"
    );
    // And a good one, twice: the second copies only the active prefix.
    let good = tmp.path().join("b3");
    let (code, out, _) = backup(&data, &good);
    assert_eq!(code, 0, "{out}");
    let (code, out2, _) = backup(&data, &good);
    assert_eq!(code, 0, "{out2}");
    let written = |o: &str| -> u64 {
        o.split(" bytes written")
            .next()
            .and_then(|s| s.rsplit('(').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    };
    assert!(written(&out2) < written(&out) / 2, "{out}\n{out2}");
}
