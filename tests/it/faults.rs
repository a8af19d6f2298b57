//! Fault injection against the real `stele serve`: the failpoints of
//! `src/fault.rs` (compiled into the test build of the binary) make a
//! `fdatasync`, a write, a directory fsync or a read fail, or abort the
//! process in the middle of rotation and retention. Each test asserts what
//! the daemon answered while the fault lasted and what survived it: every
//! acknowledged event, once, at its seq, and a log `stele verify` accepts.

use crate::support::daemon::Daemon;
use crate::support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stele::clock::ManualClock;
use stele::fault;
use stele::testkit::{event_to_json, EventGen};

/// An acknowledged event: its id, the seq it was stored at, and its action.
#[derive(Debug, Clone)]
struct Acked {
    id: String,
    seq: u64,
    action: Value,
}

/// `stele serve` on `data` with the failpoints directory `fp` and extra
/// environment.
fn start(data: &Path, fp: &Path, env: &[(&str, &str)]) -> Daemon {
    Daemon::spawn(command(data, fp, env))
}

fn command(data: &Path, fp: &Path, env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = stele_clean_env();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("STELE_FAILPOINTS", fp);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn arm(fp: &Path, point: &str, action: &str) {
    std::fs::write(fp.join(point), action).expect("arm a failpoint");
}

fn disarm(fp: &Path, point: &str) {
    std::fs::remove_file(fp.join(point)).expect("disarm a failpoint");
}

/// `n` events as a JSON array body, with their ids and actions.
fn batch(gen: &mut EventGen, n: usize) -> (Vec<u8>, Vec<(String, Value)>) {
    let evs: Vec<Value> = (0..n).map(|_| event_to_json(&gen.next_event())).collect();
    let keys = evs
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e["action"].clone()))
        .collect();
    (Value::Array(evs).to_string().into_bytes(), keys)
}

/// Posts `n` events; `None` when the connection broke (the daemon died).
fn try_post(addr: &str, gen: &mut EventGen, n: usize) -> Option<(u16, Value, Vec<Acked>)> {
    let (body, keys) = batch(gen, n);
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(&body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let answer: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let acked = if status == 201 {
        let items = answer["events"].as_array().expect("201 lists the events");
        assert_eq!(items.len(), n);
        items
            .iter()
            .zip(keys)
            .map(|(item, (id, action))| {
                assert_eq!(item["id"], json!(id));
                Acked {
                    id,
                    seq: item["seq"].as_u64().unwrap(),
                    action,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Some((status, answer, acked))
}

/// Posts `n` events that must be acknowledged.
fn post_ok(d: &Daemon, gen: &mut EventGen, n: usize) -> Vec<Acked> {
    let (status, answer, acked) = try_post(&d.addr, gen, n).expect("the daemon answers");
    assert_eq!(status, 201, "{answer}");
    acked
}

/// Waits until the indexes have caught up with the log.
fn wait_indexed(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, r) = d.get("/readyz");
        if r["state"]["lag_events"] == json!(0) {
            return;
        }
        assert!(Instant::now() < deadline, "indexes did not catch up: {r}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every acknowledged event is there, at its seq, with its content.
fn assert_intact(d: &Daemon, acked: &[Acked]) {
    wait_indexed(d);
    for a in acked {
        let (st, _, ev) = d.get(&format!("/v1/events/{}", a.id));
        assert_eq!(st, 200, "acknowledged event {} is gone: {ev}", a.id);
        assert_eq!(ev["seq"], json!(a.seq), "{} moved", a.id);
        assert_eq!(ev["action"], a.action, "{} changed", a.id);
    }
    let (_, _, page) = d.get("/v1/events?limit=1000&order=asc");
    let mut seen = std::collections::HashSet::new();
    for e in page["events"].as_array().unwrap() {
        assert!(
            seen.insert(e["id"].as_str().unwrap().to_string()),
            "{} is stored twice",
            e["id"]
        );
    }
}

fn assert_verifies(data: &Path) {
    let (code, out) = verify(&[data]);
    assert_eq!(code, 0, "stele verify: {out}");
}

fn problem_type(p: &Value) -> &str {
    p["type"].as_str().unwrap_or("").rsplit('/').next().unwrap()
}

fn metric(d: &Daemon, line_start: &str) -> String {
    let (_, text) = d.get_raw("/metrics");
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no metric {line_start} in:\n{text}"))
        .to_string()
}

/// Waits for a daemon that hit a crash failpoint to die; returns its stderr.
fn wait_crashed(mut d: Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(st.signal(), Some(libc::SIGABRT), "{}", d.log_text());
            return d.log_text();
        }
        assert!(Instant::now() < deadline, "the failpoint did not fire");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Restarts on `data` (nothing armed): every acknowledged event is there,
/// `n` more are acknowledged, and the log verifies once the daemon is gone.
fn restart_and_check(
    data: &Path,
    fp: &Path,
    env: &[(&str, &str)],
    gen: &mut EventGen,
    acked: &mut Vec<Acked>,
    n: usize,
) {
    let d = start(data, fp, env);
    assert_intact(&d, acked);
    acked.extend(post_ok(&d, gen, n));
    assert_intact(&d, acked);
    drop(d);
    assert_verifies(data);
}

#[test]
fn a_failed_fdatasync_stops_acknowledging_until_restart_and_loses_nothing_acknowledged() {
    let (data, fp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut d = start(data.path(), fp.path(), &[]);
    let mut gen = EventGen::new(1);
    let mut acked = post_ok(&d, &mut gen, 20);

    arm(fp.path(), fault::FDATASYNC, "eio");
    let (st, p, _) = try_post(&d.addr, &mut gen, 5).unwrap();
    assert_eq!((st, problem_type(&p)), (503, "log-unavailable"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("fdatasync"), "{p}");
    disarm(fp.path(), fault::FDATASYNC);

    // The outcome of a failed fdatasync is unknown: nothing more is
    // acknowledged until a restart, and the daemon says so.
    let (st, p, _) = try_post(&d.addr, &mut gen, 1).unwrap();
    assert_eq!((st, problem_type(&p)), (503, "log-unavailable"), "{p}");
    let (st, _, h) = d.get("/healthz");
    assert_eq!((st, h["status"].as_str()), (503, Some("unhealthy")), "{h}");
    let (st, _, r) = d.get("/readyz");
    assert_eq!(st, 503, "{r}");
    assert_eq!(metric(&d, "stele_log_poisoned "), "stele_log_poisoned 1");
    // Reads still work.
    assert_intact(&d, &acked);
    let _ = d.terminate(Duration::from_secs(20));
    drop(d);

    let d = start(data.path(), fp.path(), &[]);
    assert_eq!(d.get("/healthz").0, 200);
    assert_intact(&d, &acked);
    acked.extend(post_ok(&d, &mut gen, 5));
    assert_intact(&d, &acked);
    drop(d);
    assert_verifies(data.path());
}

#[test]
fn a_full_disk_on_write_answers_507_stores_nothing_and_ingest_resumes() {
    let (data, fp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = start(data.path(), fp.path(), &[]);
    let mut gen = EventGen::new(2);
    let mut acked = post_ok(&d, &mut gen, 10);
    let last = acked.last().unwrap().seq;

    arm(fp.path(), fault::WRITE, "enospc");
    for _ in 0..3 {
        let (st, p, _) = try_post(&d.addr, &mut gen, 4).unwrap();
        assert_eq!((st, problem_type(&p)), (507, "disk-full"), "{p}");
        assert!(p["detail"].as_str().unwrap().contains("nothing was stored"));
    }
    assert_eq!(
        metric(&d, "stele_write_errors_total "),
        "stele_write_errors_total 3"
    );
    assert_eq!(
        d.get("/healthz").0,
        200,
        "a full disk is not a failed fsync"
    );
    disarm(fp.path(), fault::WRITE);

    // Nothing of the refused requests took a seq or a byte.
    let more = post_ok(&d, &mut gen, 4);
    assert_eq!(more[0].seq, last + 1);
    acked.extend(more);
    assert_intact(&d, &acked);
    drop(d);
    let d = start(data.path(), fp.path(), &[]);
    assert_intact(&d, &acked);
    drop(d);
    assert_verifies(data.path());
}

#[test]
fn an_unreadable_sealed_segment_fails_the_queries_that_need_it_and_readyz_names_it() {
    let (data, fp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = start(
        data.path(),
        fp.path(),
        &[("STELE_LOG_SEGMENT_BYTES_MAX", "16384")],
    );
    let mut gen = EventGen::new(3);
    let mut acked = Vec::new();
    for _ in 0..10 {
        acked.extend(post_ok(&d, &mut gen, 10));
    }
    wait_indexed(&d);
    let (_, _, segs) = d.get("/v1/segments");
    let segs = segs["segments"].as_array().unwrap().clone();
    assert!(segs.len() >= 3, "{segs:?}");
    let first = &segs[0];
    assert_eq!(first["sealed"], json!(true));
    let name = first["name"].as_str().unwrap().to_string();
    let in_first = acked
        .iter()
        .find(|a| a.seq == first["first_seq"].as_u64().unwrap())
        .unwrap();
    let newest = acked.last().unwrap();

    arm(fp.path(), fault::READ, &format!("eio {name}"));
    let (st, _, p) = d.get(&format!("/v1/events/{}", in_first.id));
    assert_eq!((st, problem_type(&p)), (500, "storage-failure"), "{p}");
    assert_eq!(p["segment"], json!(name), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("os error 5"), "{p}");
    // What does not need that file still works: the newest event, the
    // newest page in arrival order (by event time it may need the file: the
    // generator's times are not in arrival order), ingest.
    let (st, _, ev) = d.get(&format!("/v1/events/{}", newest.id));
    assert_eq!(st, 200, "{ev}");
    let (st, _, page) = d.get("/v1/events?limit=5&sort=seq");
    assert_eq!(st, 200, "{page}");
    acked.extend(post_ok(&d, &mut gen, 3));
    // /readyz and /metrics name the file.
    let (st, _, r) = d.get("/readyz");
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["degraded"], json!(true), "{r}");
    assert_eq!(r["state"]["unreadable_segments"][0]["segment"], json!(name));
    assert_eq!(
        metric(&d, "stele_segments_unreadable "),
        "stele_segments_unreadable 1"
    );
    let counted = metric(
        &d,
        &format!("stele_segment_read_errors_total{{segment=\"{name}\"}}"),
    );
    assert!(!counted.ends_with(" 0"), "{counted}");

    // Readable again: everything is there.
    disarm(fp.path(), fault::READ);
    assert_intact(&d, &acked);
    drop(d);
    assert_verifies(data.path());
}

/// Posts batches until the daemon dies at the armed crash failpoint;
/// returns what was acknowledged before.
fn ingest_until_crash(d: Daemon, gen: &mut EventGen, acked: &mut Vec<Acked>) -> String {
    for _ in 0..200 {
        match try_post(&d.addr, gen, 10) {
            Some((201, _, a)) => acked.extend(a),
            Some((st, p, _)) => panic!("unexpected {st}: {p}"),
            None => return wait_crashed(d),
        }
    }
    panic!("the daemon never reached the failpoint:\n{}", d.log_text());
}

fn newest_segment(data: &Path) -> PathBuf {
    segment_files(data).into_iter().max().expect("a segment")
}

/// A crash after a new segment's header is durable but before its
/// directory entry is: restart with the entry kept, or lost (as after a
/// power cut), and nothing acknowledged is missing.
fn crash_creating_a_segment(entry_lost: bool) {
    let (data, fp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("STELE_LOG_SEGMENT_BYTES_MAX", "16384")];
    let d = start(data.path(), fp.path(), &env);
    let mut gen = EventGen::new(4);
    let mut acked = post_ok(&d, &mut gen, 5);
    arm(fp.path(), fault::CREATED, "crash");
    let log = ingest_until_crash(d, &mut gen, &mut acked);
    assert!(log.contains(fault::CREATED), "{log}");
    disarm(fp.path(), fault::CREATED);
    let newest = newest_segment(data.path());
    let len = std::fs::metadata(&newest).unwrap().len();
    assert_eq!(len, stele::log::format::HEADER_BYTES as u64, "{newest:?}");
    if entry_lost {
        std::fs::remove_file(&newest).unwrap();
    }
    restart_and_check(data.path(), fp.path(), &env, &mut gen, &mut acked, 10);
}

#[test]
fn a_crash_between_creating_a_segment_and_its_directory_fsync_loses_nothing() {
    crash_creating_a_segment(false);
}

#[test]
fn a_segment_whose_directory_entry_was_lost_in_a_crash_loses_nothing() {
    crash_creating_a_segment(true);
}

#[test]
fn a_failed_directory_fsync_after_creating_a_segment_stops_ingest_and_loses_nothing() {
    let (data, fp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("STELE_LOG_SEGMENT_BYTES_MAX", "16384")];
    let d = start(data.path(), fp.path(), &env);
    let mut gen = EventGen::new(5);
    let mut acked = post_ok(&d, &mut gen, 5);
    arm(fp.path(), fault::DIR_FSYNC, "eio");
    let mut refused = None;
    for _ in 0..50 {
        let (st, p, a) = try_post(&d.addr, &mut gen, 10).unwrap();
        if st != 201 {
            refused = Some((st, p));
            break;
        }
        acked.extend(a);
    }
    let (st, p) = refused.expect("a rotation hit the failing directory fsync");
    assert_eq!((st, problem_type(&p)), (503, "log-unavailable"), "{p}");
    disarm(fp.path(), fault::DIR_FSYNC);
    assert_eq!(try_post(&d.addr, &mut gen, 1).unwrap().0, 503);
    assert_eq!(d.get("/healthz").0, 503);
    drop(d);
    restart_and_check(data.path(), fp.path(), &env, &mut gen, &mut acked, 10);
}

#[test]
fn a_crash_during_rotation_after_sealing_loses_nothing() {
    let (data, fp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("STELE_LOG_SEGMENT_BYTES_MAX", "16384")];
    let d = start(data.path(), fp.path(), &env);
    let mut gen = EventGen::new(6);
    let mut acked = post_ok(&d, &mut gen, 5);
    arm(fp.path(), fault::SEALED, "crash");
    let log = ingest_until_crash(d, &mut gen, &mut acked);
    assert!(log.contains(fault::SEALED), "{log}");
    disarm(fp.path(), fault::SEALED);
    // The newest file is sealed (read-only); no active segment exists.
    let newest = newest_segment(data.path());
    assert!(std::fs::metadata(&newest).unwrap().permissions().readonly());
    restart_and_check(data.path(), fp.path(), &env, &mut gen, &mut acked, 10);
}

const DAY: i64 = 86_400_000_000;

#[test]
fn a_crash_during_retention_keeps_every_live_event_and_records_every_dropped_day() {
    let (data, fp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Four expired days (10 to 7 days ago, two segments each) and today.
    let now = chrono::Utc::now().timestamp_micros();
    let midnight = now - now.rem_euclid(DAY);
    let clock = Arc::new(ManualClock::new(midnight - 10 * DAY + 60_000_000));
    let mut gen = EventGen::new(7);
    let mut kept = Vec::new();
    let mut old_ids = Vec::new();
    {
        let log = open(data.path(), &clock, 64 * 1024);
        for day in (7..=10).rev() {
            clock.set(midnight - day * DAY + 60_000_000);
            for _ in 0..4 {
                let evs = events(&mut gen, 50, 400);
                old_ids.extend(evs.iter().map(|e| e.id.clone()));
                log.append(&evs, &stele::event::Provenance::cli()).unwrap();
            }
        }
        clock.set(now);
        let evs = events(&mut gen, 50, 400);
        let ack = log.append(&evs, &stele::event::Provenance::cli()).unwrap();
        for (i, e) in evs.iter().enumerate() {
            kept.push(Acked {
                id: e.id.clone(),
                seq: ack.first_seq + i as u64,
                action: json!(e.action),
            });
        }
    }
    let before = segment_files(data.path());
    assert!(before.len() >= 9, "{before:?}");
    let config = data.path().join("stele.toml");
    std::fs::write(&config, "[retention]\ndays = 3\n").unwrap();
    let env = [("STELE_CONFIG", config.to_str().unwrap())];

    // Retention runs at start: the process dies after removing the files
    // of the oldest day and the first of the next.
    let date = |day: i64| {
        chrono::DateTime::from_timestamp_micros(midnight - day * DAY)
            .unwrap()
            .date_naive()
            .to_string()
    };
    let files_of = |day: i64| -> Vec<String> {
        before
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .filter(|n| n.starts_with(&date(day)))
            .collect()
    };
    assert_eq!(files_of(10).len(), 2, "{before:?}");
    arm(
        fp.path(),
        fault::DROPPED,
        &format!("crash {}", files_of(9)[0]),
    );
    let mut child = command(data.path(), fp.path(), &env)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not reach the failpoint"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGABRT));
    disarm(fp.path(), fault::DROPPED);
    assert_eq!(segment_files(data.path()).len(), before.len() - 3);

    // Restarted, retention finishes: today's events are all there, the
    // expired ones are gone from the answers, and every dropped day is in
    // retention.log.
    let d = start(data.path(), fp.path(), &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while segment_files(data.path()).len() > 1 {
        assert!(Instant::now() < deadline, "retention did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_intact(&d, &kept);
    for id in old_ids.iter().step_by(97) {
        let (st, _, p) = d.get(&format!("/v1/events/{id}"));
        assert_eq!(st, 404, "dropped event {id}: {p}");
    }
    let (_, _, page) = d.get("/v1/events?limit=1000");
    assert_eq!(page["events"].as_array().unwrap().len(), kept.len());
    let ledger = std::fs::read_to_string(data.path().join("retention.log")).unwrap();
    let records: Vec<Value> = ledger
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for day in 7..=10 {
        // A crash may repeat a record; each day has one naming all its
        // files and events.
        let complete = records.iter().any(|r| {
            r["day"] == json!(date(day))
                && r["segments"] == json!(files_of(day))
                && r["events"] == json!(200)
        });
        assert!(
            complete,
            "day {} is not fully recorded:\n{ledger}",
            date(day)
        );
    }
    drop(d);
    assert_verifies(data.path());
}
