//! `stele append`, the real binary: client ids are idempotent as over HTTP
//! (`stele::ingest`): an event stored before, by an earlier run or earlier
//! in the same input, is not stored again but listed in its batch's
//! `duplicates`; the same id with other content stops the run naming the
//! line.

use crate::support::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

/// Starts `stele append --data-dir DIR ARGS` with these variables set, its
/// stdin and stderr piped and its stdout as given.
fn spawn_append(
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdout: std::process::Stdio,
) -> std::process::Child {
    stele()
        .args(["append", "--data-dir"])
        .arg(dir)
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn stele append")
}

/// Runs `stele append --data-dir DIR ARGS` with `input` on stdin: exit
/// code, the acknowledgement lines, stderr.
fn append(dir: &Path, args: &[&str], input: &[Value]) -> (i32, Vec<Value>, String) {
    let mut child = spawn_append(dir, args, &[], std::process::Stdio::piped());
    let mut text = Vec::new();
    for v in input {
        serde_json::to_writer(&mut text, v).unwrap();
        text.push(b'\n');
    }
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    let acks = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), acks, err)
}

/// The ids of the stored events, in seq order (`stele cat`).
fn stored_ids(dir: &Path) -> Vec<String> {
    let out = stele()
        .args(["cat", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn ev(id: &str, action: &str) -> Value {
    json!({"id": id, "action": action, "actor": "alice"})
}

#[test]
fn a_second_run_with_the_same_ids_stores_nothing_again() {
    let tmp = tempfile::tempdir().unwrap();
    let input = [ev("a-1", "login"), ev("a-2", "logout")];
    let (code, acks, err) = append(tmp.path(), &[], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0]["ids"], json!(["a-1", "a-2"]), "{acks:?}");
    assert_eq!(acks[0]["first_seq"], 1, "{acks:?}");

    let (code, acks, err) = append(tmp.path(), &[], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stored_ids(tmp.path()), ["a-1", "a-2"], "stored once");
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0]["count"], 0, "{acks:?}");
    assert_eq!(acks[0]["ids"], json!([]), "{acks:?}");
    assert_eq!(acks[0]["first_seq"], Value::Null, "{acks:?}");
    assert_eq!(
        acks[0]["duplicates"],
        json!([{"line": 1, "id": "a-1", "seq": 1}, {"line": 2, "id": "a-2", "seq": 2}]),
        "{acks:?}"
    );

    // New ids next to known ones: the new ones are stored, once.
    let (code, acks, err) = append(tmp.path(), &[], &[ev("a-3", "login"), ev("a-1", "login")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(acks[0]["ids"], json!(["a-3"]), "{acks:?}");
    assert_eq!(acks[0]["first_seq"], 3, "{acks:?}");
    assert_eq!(
        acks[0]["duplicates"],
        json!([{"line": 2, "id": "a-1", "seq": 1}]),
        "{acks:?}"
    );
    assert_eq!(stored_ids(tmp.path()), ["a-1", "a-2", "a-3"]);
}

#[test]
fn an_id_repeated_within_one_input_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    // In one batch, and across batches of several threads.
    let input: Vec<Value> = (0..40).map(|i| ev(&format!("r-{}", i % 10), "x")).collect();
    let (code, acks, err) = append(tmp.path(), &[], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0]["count"], 10, "{acks:?}");
    let dups = acks[0]["duplicates"].as_array().unwrap();
    assert_eq!(dups.len(), 30, "{acks:?}");
    assert_eq!(dups[0], json!({"line": 11, "id": "r-0", "seq": 1}));

    let tmp = tempfile::tempdir().unwrap();
    let (code, acks, err) = append(tmp.path(), &["--batch", "3", "--concurrency", "4"], &input);
    assert_eq!(code, 0, "{err}");
    let mut ids = stored_ids(tmp.path());
    ids.sort();
    let want: Vec<String> = (0..10).map(|i| format!("r-{i}")).collect();
    assert_eq!(ids, want, "each id stored once");
    let acked: usize = acks
        .iter()
        .map(|a| a["ids"].as_array().unwrap().len())
        .sum();
    let dups: usize = acks
        .iter()
        .map(|a| a["duplicates"].as_array().unwrap().len())
        .sum();
    assert_eq!((acked, dups), (10, 30), "{acks:?}");
}

#[test]
fn a_conflicting_id_stops_the_run_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = append(tmp.path(), &[], &[ev("c-1", "login")]);
    assert_eq!(code, 0, "{err}");

    // Stored before with other content.
    let (code, acks, err) = append(
        tmp.path(),
        &["--batch", "2"],
        &[
            ev("c-2", "x"),
            ev("c-3", "x"),
            ev("c-4", "x"),
            ev("c-1", "logout"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 4: id \"c-1\" is already stored with different content"),
        "{err}"
    );
    assert!(err.contains("lines 3 to 4"), "{err}");
    assert_eq!(acks.len(), 1, "the first batch is stored: {acks:?}");
    assert_eq!(stored_ids(tmp.path()), ["c-1", "c-2", "c-3"]);

    // Earlier in the same input with other content.
    let (code, _, err) = append(tmp.path(), &[], &[ev("c-5", "x"), ev("c-5", "y")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 2: id \"c-5\" appears earlier in this input with different content"),
        "{err}"
    );
    assert_eq!(stored_ids(tmp.path()), ["c-1", "c-2", "c-3"]);
}

/// Runs `stele append --data-dir DIR ARGS` with `chunk` written `times`
/// times to its stdin (a write the process refuses to read further ends the
/// input): exit code, stderr and the largest peak resident memory (VmHWM, in
/// KiB) seen between the writes, while the process runs.
fn append_chunks(dir: &Path, args: &[&str], chunk: &[u8], times: usize) -> (i32, String, u64) {
    append_chunks_env(dir, args, &[], chunk, times)
}

/// [`append_chunks`] with these environment variables set.
fn append_chunks_env(
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    chunk: &[u8],
    times: usize,
) -> (i32, String, u64) {
    use std::io::Read;
    let mut child = spawn_append(dir, args, envs, std::process::Stdio::null());
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        stderr.read_to_string(&mut err).unwrap();
        err
    });
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..times {
        if stdin.write_all(chunk).is_err() {
            break;
        }
        let hwm = std::fs::read_to_string(&status).ok().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        peak_kib = peak_kib.max(hwm.unwrap_or(0));
    }
    drop(stdin);
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, reader.join().unwrap(), peak_kib)
}

#[test]
fn a_line_longer_than_the_body_limit_is_refused_without_reading_it_whole() {
    const LIMIT: usize = 16 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    // A valid event padded past the limit (a request body the server would
    // refuse): not stored, the run stops naming it; the line before it is.
    let mut text = serde_json::to_vec(&ev("l-1", "login")).unwrap();
    text.push(b'\n');
    text.extend(serde_json::to_vec(&ev("l-2", "login")).unwrap());
    text.resize(text.len() + LIMIT, b' ');
    text.push(b'\n');
    let (code, err, _) = append_chunks(tmp.path(), &["--batch", "1"], &text, 1);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "line 2: longer than 16777216 bytes (limits.body_bytes_max), not read further; \
             its batch (lines 2 to 2) was not stored"
        ),
        "{err}"
    );
    assert_eq!(stored_ids(tmp.path()), ["l-1"]);

    // A line at the limit is read, its line ending aside; a daemon's
    // variables in the environment are not `stele append`'s (without a
    // configuration file).
    let mut text = serde_json::to_vec(&ev("l-3", "login")).unwrap();
    text.resize(LIMIT, b' ');
    text.extend(b"\r\n");
    let daemons = [("STELE_LISTEN", "0.0.0.0:7070")];
    let (code, err, _) = append_chunks_env(tmp.path(), &[], &daemons, &text, 1);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stored_ids(tmp.path()), ["l-1", "l-3"]);

    // The limit is the configuration file's.
    let config = tmp.path().join("small.toml");
    std::fs::write(&config, "[limits]\nbody_bytes_max = 1024\n").unwrap();
    let mut text = serde_json::to_vec(&ev("l-4", "login")).unwrap();
    text.resize(2000, b' ');
    text.push(b'\n');
    let small = ["--config", config.to_str().unwrap()];
    let (code, err, _) = append_chunks(tmp.path(), &small, &text, 1);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1: longer than 1024 bytes"), "{err}");
    assert_eq!(stored_ids(tmp.path()), ["l-1", "l-3"]);

    // 512 MiB without a newline, written a MiB at a time while the peak
    // memory is watched: read no further than the limit.
    let (code, err, peak_kib) = append_chunks(tmp.path(), &[], &[b'x'; 1 << 20], 512);
    assert!(
        peak_kib < 200 * 1024,
        "a 512 MiB line took {} MiB of peak RSS",
        peak_kib / 1024
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1: longer than"), "{err}");
}

#[test]
fn a_line_that_stops_the_run_stops_every_thread_and_its_batch() {
    let line = |id: &str| {
        let mut l = serde_json::to_vec(&ev(id, "x")).unwrap();
        l.push(b'\n');
        l
    };
    // Line 2 is not JSON; 200 valid lines follow, read a line at a time by
    // two threads: none after it is stored.
    let tmp = tempfile::tempdir().unwrap();
    let mut text = line("s-1");
    text.extend(b"{not json\n");
    for i in 3..=202 {
        text.extend(line(&format!("s-{i}")));
    }
    let args = ["--batch", "1", "--concurrency", "2"];
    let (code, err, _) = append_chunks(tmp.path(), &args, &text, 1);
    let stored = stored_ids(tmp.path());
    assert!(stored.iter().all(|id| id == "s-1"), "{stored:?}");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 2: not JSON: "), "{err}");
    assert!(
        err.contains("; its batch (lines 2 to 2) was not stored"),
        "{err}"
    );

    // In one batch of 64, the lines before it are not stored either, and
    // the message says so.
    let tmp = tempfile::tempdir().unwrap();
    let mut text = line("b-1");
    text.extend(line("b-2"));
    text.extend(b"{\"action\": 5}\n");
    let (code, err, _) = append_chunks(tmp.path(), &[], &text, 1);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 3: invalid event: action: "), "{err}");
    assert!(
        err.contains("; its batch (lines 1 to 3) was not stored"),
        "{err}"
    );
    assert_eq!(stored_ids(tmp.path()), Vec::<String>::new());
}
