//! `stele query`, the terminal client, as a user runs it: the real binary
//! against a real `stele serve` (online, `-f` across a SIGKILL and restart),
//! offline against the data directory the daemon is writing and against a
//! backup (the same answers as the server's), `stele cat` and `stele verify`
//! beside the running daemon, and bad input (message and exit code).

use crate::support::daemon::Daemon;
use crate::support::stele;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `stele query` (or another subcommand) with no STELE_URL/STELE_API_KEY
/// from the caller's environment.
fn stele_cmd(args: &[&str]) -> Command {
    let mut c = stele();
    c.env_remove("STELE_URL")
        .env_remove("STELE_API_KEY")
        .env_remove("NO_COLOR")
        .args(args);
    c
}

/// Runs `stele ARGS`: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = stele_cmd(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `stele query ARGS`, which must succeed: its stdout.
fn query_ok(args: &[&str]) -> String {
    let mut all = vec!["query"];
    all.extend_from_slice(args);
    let (code, out, err) = run(&all);
    assert_eq!(code, 0, "stele {all:?}: {err}");
    out
}

fn url(d: &Daemon) -> String {
    format!("http://{}", d.addr)
}

/// Posts `events`; returns their seqs.
fn post(d: &Daemon, events: &[Value]) -> Vec<u64> {
    let (status, _, body) = d.post(&Value::Array(events.to_vec()));
    assert_eq!(status, 201, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

/// Waits until the listing (the index) holds seq `seq`.
fn wait_indexed(d: &Daemon, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, v) = d.get("/v1/events?sort=seq&limit=1");
        if v["events"][0]["seq"].as_u64() >= Some(seq) {
            return;
        }
        assert!(Instant::now() < deadline, "seq {seq} never indexed: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` varied events: four actions, five severities, two tenants, and
/// event times out of arrival order (with ties), so that time and seq
/// orders differ.
fn varied(n: usize, salt: usize) -> Vec<Value> {
    let actions = ["login", "logout", "update", "login_failed"];
    let severities = ["debug", "info", "warning", "error", "critical"];
    (0..n)
        .map(|i| {
            let k = i + salt;
            let minute = (k * 37) % 50;
            json!({
                "action": actions[k % 4],
                "actor": format!("user-{}", k % 7),
                "tenant": if k % 3 == 0 { "acme" } else { "globex" },
                "severity": severities[k % 5],
                "status": if k % 4 == 3 { "failure" } else { "success" },
                "entity_type": "order",
                "entity_id": format!("{}", k % 11),
                "timestamp": format!("2026-11-23T10:{minute:02}:00Z"),
                "description": format!("event {k}, with a comma and \"quotes\""),
            })
        })
        .collect()
}

/// The events of `GET /v1/events?QS&limit=1000` as JSON text lines.
fn listing(d: &Daemon, qs: &str) -> Vec<Value> {
    let (status, _, v) = d.get(&format!("/v1/events?{qs}&limit=1000"));
    assert_eq!(status, 200, "{qs}: {v}");
    v["events"].as_array().unwrap().clone()
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The filters the online and offline comparisons run, as `stele query`
/// flags and as the listing's query string.
const FILTERS: &[(&[&str], &str)] = &[
    (&[], ""),
    (&["--action", "login"], "action=login"),
    (&["--min-severity", "warning"], "min_severity=warning"),
    (
        &["--tenant", "acme", "--status", "failure"],
        "tenant=acme&status=failure",
    ),
    (
        &["-p", "entity_id=3", "--severity", "info"],
        "entity_id=3&severity=info",
    ),
    (
        &[
            "--since",
            "2026-11-23T10:10:00Z",
            "--until",
            "2026-11-23T10:30:00Z",
        ],
        "since=2026-11-23T10:10:00Z&until=2026-11-23T10:30:00Z",
    ),
];

const ORDERS: &[(&[&str], &str)] = &[
    (&[], ""),
    (&["--sort", "seq"], "&sort=seq"),
    (&["--order", "asc"], "&order=asc"),
    (&["--sort", "seq", "--order", "asc"], "&sort=seq&order=asc"),
];

/// (2) and (3): online output in every format against the HTTP listing and
/// export, paging past one page, then the same answers offline from the
/// data directory the daemon holds open, and from a backup.
#[test]
fn online_and_offline_answers_are_the_servers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start_without_detectors(&data);
    let mut last = 0;
    for batch in 0..3 {
        last = *post(&d, &varied(400, batch * 400)).last().unwrap();
    }
    wait_indexed(&d, last);
    let u = url(&d);
    for (flags, qs) in FILTERS {
        for (oflags, oqs) in ORDERS {
            let mut args = vec!["--url", &u, "-o", "ndjson", "-n", "1000"];
            args.extend_from_slice(flags);
            args.extend_from_slice(oflags);
            let online = query_ok(&args);
            let want = listing(&d, &format!("{qs}{oqs}"));
            assert_eq!(ndjson(&online), want, "{args:?}");
            // Offline: the same bytes.
            let data_s = data.to_str().unwrap();
            args[0..2].copy_from_slice(&["--data-dir", data_s]);
            assert_eq!(query_ok(&args), online, "offline {args:?}");
        }
        // JSON: one array of the same events.
        let mut args = vec!["--url", &u, "-o", "json", "-n", "1000"];
        args.extend_from_slice(flags);
        let arr: Value = serde_json::from_str(&query_ok(&args)).unwrap();
        assert_eq!(arr, Value::Array(listing(&d, qs)), "{args:?}");
        // CSV: what the export writes for the same filters, byte for byte.
        // (An export has no limit: neither has this.)
        args[3] = "csv";
        args[5] = "100000";
        // (The export is oldest first unless asked: ask for the listing's order.)
        let (_, export) = d.get_raw(&format!("/v1/export?format=csv&order=desc&{qs}"));
        let csv = query_ok(&args);
        assert!(csv == export, "{args:?}: differs from the export");
        assert_eq!(csv.matches("\r\n").count(), export.matches("\r\n").count());
    }
    // Past one page (1,000): the cursor is followed, nothing repeats.
    let all = ndjson(&query_ok(&[
        "--url", &u, "-o", "ndjson", "-n", "1100", "--sort", "seq",
    ]));
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (last - 1099..=last).rev().collect::<Vec<_>>());
    // -n bounds the answer; the table has a header and a line an event.
    let table = query_ok(&["--url", &u, "-n", "5", "--action", "update"]);
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(
        table.starts_with("TIME (UTC)") && !table.contains('\x1b'),
        "{table}"
    );

    // A backup, queried offline, answers as the daemon does.
    let backup = dir.path().join("backup");
    let (code, _, err) = run(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    for (flags, _) in FILTERS {
        for (oflags, _) in &ORDERS[..2] {
            let mut args = vec!["-o", "ndjson", "-n", "1000"];
            args.extend_from_slice(flags);
            args.extend_from_slice(oflags);
            let mut online = vec!["--url", &u];
            online.extend_from_slice(&args);
            let mut offline = vec!["--data-dir", backup.to_str().unwrap()];
            offline.extend_from_slice(&args);
            assert_eq!(query_ok(&offline), query_ok(&online), "backup {args:?}");
        }
    }
}

/// (3) and (4): offline queries, `stele cat` and `stele verify` beside a
/// daemon that is appending all the while: each run succeeds (no LOCK, the
/// half-written tail is where the snapshot ends) and sees a gap-free prefix.
#[test]
fn read_only_commands_work_while_the_daemon_appends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Small segments: the daemon seals and rotates while the readers read.
    let mut cmd = stele();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("STELE_LOG_SEGMENT_BYTES_MAX", "65536")
        .env("STELE_DETECT_ENABLED", "false");
    let d = Daemon::spawn(cmd);
    post(&d, &varied(200, 0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poster = {
        let (addr, stop) = (d.addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut k = 200;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = Value::Array(varied(5, k)).to_string();
                let (s, _, v) = crate::support::daemon::call_at(
                    &addr,
                    "POST",
                    "/v1/events",
                    "application/json",
                    body.as_bytes(),
                );
                assert_eq!(s, 201, "{v}");
                k += 5;
            }
            k
        })
    };
    let data_s = data.to_str().unwrap();
    let mut seen = 0;
    for _ in 0..5 {
        let out = query_ok(&[
            "--data-dir",
            data_s,
            "-o",
            "ndjson",
            "-n",
            "1000000",
            "--sort",
            "seq",
            "--order",
            "asc",
        ]);
        let seqs: Vec<u64> = ndjson(&out)
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "a gap-free prefix"
        );
        assert!(
            seqs.len() >= seen.max(200),
            "{} events after {seen}",
            seqs.len()
        );
        seen = seqs.len();

        let (code, out, err) = run(&["cat", "--data-dir", data_s]);
        assert_eq!(code, 0, "stele cat beside the daemon: {err}");
        let cat: Vec<u64> = ndjson(&out)
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(cat, (1..=cat.len() as u64).collect::<Vec<_>>());
        assert!(cat.len() >= seen);

        let (code, out, err) = run(&["verify", "-q", data_s]);
        assert_eq!(code, 0, "stele verify beside the daemon: {out}{err}");
        assert!(out.contains("intact"), "{out}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let posted = poster.join().unwrap();
    assert!(posted > 200);
    assert!(
        !d.log_text().contains("ERROR"),
        "the daemon saw no error: {}",
        d.log_text()
    );
}

/// Lines of a child's stdout, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// The seqs of the next `n` lines (events) the follower prints.
fn next_seqs(rx: &mpsc::Receiver<String>, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let l = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("event {i} of {n} never printed"));
            serde_json::from_str::<Value>(&l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// The seqs of `seqs` whose event (index into `events`) matches `action`.
fn matching(seqs: &[u64], events: &[Value], action: &str) -> Vec<u64> {
    seqs.iter()
        .zip(events)
        .filter(|(_, e)| e["action"] == action)
        .map(|(s, _)| *s)
        .collect()
}

/// (1) `stele query -f` against a live daemon: the last events, then each
/// new matching event once, in order; SIGKILL the daemon, restart it on the
/// same port and data directory, post more: the follower resumes after the
/// last seq it printed, no gap, no duplicate; Ctrl-C ends it with exit 0.
#[test]
fn follow_resumes_across_a_kill_9_restart_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data);
    let before = varied(12, 0);
    let seqs = post(&d, &before);
    wait_indexed(&d, *seqs.last().unwrap());
    let old = matching(&seqs, &before, "login");
    let mut child = stele_cmd(&[
        "query",
        "--url",
        &url(&d),
        "-f",
        "-n",
        "2",
        "-o",
        "ndjson",
        "--action",
        "login",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let rx = lines_of(&mut child);
    assert_eq!(
        next_seqs(&rx, 2),
        old[old.len() - 2..],
        "the last two, oldest first"
    );

    // Live events, some matching, posted one request at a time.
    let mut live = Vec::new();
    for k in 0..3 {
        let evs = varied(4, 100 + 4 * k);
        live.extend(matching(&post(&d, &evs), &evs, "login"));
    }
    assert_eq!(next_seqs(&rx, live.len()), live);

    // SIGKILL, then the same address again.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut cmd = stele();
    cmd.args(["serve", "--listen", &d.addr, "--data-dir"])
        .arg(&data);
    let d2 = Daemon::spawn(cmd);
    let (mut want, mut newest) = (Vec::new(), 0);
    for k in 0..4 {
        let evs = varied(4, 200 + 4 * k);
        let seqs = post(&d2, &evs);
        newest = *seqs.last().unwrap();
        want.extend(matching(&seqs, &evs, "login"));
    }
    assert_eq!(
        next_seqs(&rx, want.len()),
        want,
        "resumed after the restart"
    );
    // Nothing more: no duplicate arrives late.
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "an extra line"
    );
    // Every login event the daemon holds after the first two printed, once.
    wait_indexed(&d2, newest);
    let all: Vec<u64> = listing(&d2, "action=login&sort=seq&order=asc")
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let printed: Vec<u64> = old[old.len() - 2..]
        .iter()
        .chain(&live)
        .chain(&want)
        .copied()
        .collect();
    assert_eq!(
        all[old.len() - 2..],
        printed[..],
        "every one after the first printed"
    );

    // Ctrl-C: exit 0, and it said it reconnected.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C ends -f cleanly");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("reconnected; resuming after seq"), "{err}");
    drop(d);
}

/// A daemon with one read+ingest key; returns it and the key.
fn keyed_daemon(dir: &Path) -> (Daemon, String) {
    let out = stele_cmd(&[
        "keygen", "--id", "terminal", "--role", "read", "--role", "ingest",
    ])
    .output()
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let token = text
        .lines()
        .find(|l| l.starts_with("stele_") && l.len() == 49)
        .unwrap_or_else(|| panic!("no key in {text}"))
        .to_string();
    let snippet: String = text
        .lines()
        .skip_while(|l| l.trim() != "[[auth.keys]]")
        .take_while(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let conf = dir.join("stele.toml");
    std::fs::write(&conf, snippet).unwrap();
    let d = Daemon::start_with(&dir.join("data"), &["--config", conf.to_str().unwrap()]);
    (d, token)
}

/// (5) Bad input: the precise reason, exit 2 for a bad request, 1 for the
/// rest.
#[test]
fn bad_input_says_what_is_wrong_with_the_right_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (d, key) = keyed_daemon(dir.path());
    let u = url(&d);
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        // The server's own words for an unknown parameter, online and offline.
        (
            &["--url", &u, "--key", &key, "-p", "frob=1"],
            2,
            "HTTP 400 (Bad Request): invalid parameter `frob`: unknown parameter",
        ),
        (
            &["--data-dir", data_s, "-p", "frob=1"],
            2,
            "invalid parameter `frob`: unknown parameter",
        ),
        (
            &["--url", &u, "--key", &key, "--severity", "loud"],
            2,
            "invalid parameter `severity`: \"loud\" is not one of",
        ),
        (
            &["--url", &u, "--key", "stele_wrong"],
            1,
            "HTTP 401 (Unauthorized): ",
        ),
        (&["--url", &u], 1, "HTTP 401 (Unauthorized): "),
        (
            &["--url", "localhost:7070"],
            2,
            "is not a daemon's base URL",
        ),
        (
            &["--url", "http://127.0.0.1:9/"],
            1,
            "cannot reach http://127.0.0.1:9: ",
        ),
        (
            &[],
            2,
            "--url URL (or $STELE_URL) for a daemon, or --data-dir DIR",
        ),
        (
            &["--url", &u, "-p", "limit=5"],
            2,
            "-p limit: not a filter; use -n",
        ),
        (
            &["--url", &u, "-p", "nothing"],
            2,
            "write a parameter as NAME=VALUE",
        ),
        (
            &["--data-dir", data_s, "password reset"],
            2,
            "full-text search (q) needs the daemon's text index",
        ),
        (
            &["--data-dir", data_s, "-f"],
            2,
            "-f follows a running daemon (--url)",
        ),
        (&["--url", &u, "-f", "-o", "json"], 2, "use -o ndjson"),
        (
            &["--url", &u, "-f", "--sort", "time"],
            2,
            "--sort and --order do not apply",
        ),
        (
            &["--data-dir", "/nonexistent/stele"],
            1,
            "cannot read the log in /nonexistent/stele: could not list /nonexistent/stele/segments",
        ),
    ];
    for (args, code, says) in cases {
        let mut all = vec!["query"];
        all.extend_from_slice(args);
        let (got, out, err) = run(&all);
        assert_eq!(got, *code, "stele {all:?}: {err}");
        assert!(
            err.starts_with("stele query: ") && err.contains(says),
            "stele {all:?}: {err}"
        );
        assert!(!err.contains(&key), "the key is never echoed: {err}");
        assert!(out.is_empty() || out.starts_with("TIME"), "{out}");
    }
    // The right key from the environment works.
    let out = stele_cmd(&["query", "--url", &u, "-o", "json"])
        .env("STELE_API_KEY", &key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.is_array());
}
