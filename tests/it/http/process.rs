//! The daemon as a process (the real binary): kill -9 and a restart keep
//! every acknowledged event, SIGTERM finishes in-flight requests and exits 0,
//! SIGHUP reloads limits and keeps them when the file is broken, and the log
//! has no colour codes when stderr is not a terminal.

use super::*;

/// kill -9 and a restart: every acknowledged event is still there, and the
/// key index answers a retry (the process is the point: the real binary).
#[test]
fn acknowledged_events_survive_kill_9_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path());
    let first = json!({"id": "evt-1", "action": "login", "actor": "alice",
        "tenant": "acme", "description": "password reset requested"});
    assert_eq!(d.post(&first).0, 201);
    let rest: Vec<Value> = (0..4)
        .map(|i| json!({"action": "view", "actor": format!("a{i}")}))
        .collect();
    let (st, _, v) = d.post(&Value::Array(rest));
    assert_eq!(st, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/readyz").2["state"]["lag_events"] != 0 {
        assert!(Instant::now() < deadline, "not indexed in time");
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGKILL and restart: every acknowledged event is still there.
    drop(d);
    let d = Daemon::start(tmp.path());
    let (st, _, ev) = d.get("/v1/events/evt-1");
    assert_eq!((st, ev["seq"].as_u64()), (200, Some(1)));
    // After a restart the key index answers the retry.
    let (st, _, again) = d.post(&first);
    assert_eq!(
        (st, &again["events"][0]["seq"]),
        (200, &json!(1)),
        "{again}"
    );
    let (st, _, v) = d.post(&json!({"action": "login", "actor": "erin"}));
    assert_eq!((st, v["events"][0]["seq"].as_u64()), (201, Some(6)));
    drop(d);
    let (code, out) = verify(&[tmp.path()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn sigterm_finishes_in_flight_requests_ends_streams_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    let batch: Vec<Value> = (0..500)
        .map(|i| json!({"action": "view", "actor": format!("a{i}")}))
        .collect();
    assert_eq!(d.post(&Value::Array(batch)).0, 201);
    let mut stream = open_stream(&d.addr, "/v1/stream?from_seq=1", None);
    assert_eq!(read_ids(&mut stream, 500).len(), 500);
    // An ingest request in flight: head and half its body sent.
    let body = json!({"id": "in-flight-1", "action": "login", "actor": "late"}).to_string();
    let mut inflight = TcpStream::connect(&d.addr).unwrap();
    write!(
        inflight,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = d.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once the listener is gone...
    let refused = TcpStream::connect(&d.addr);
    assert!(refused.is_err(), "still accepting after SIGTERM");
    // ...but the request in flight completes and is acknowledged.
    inflight.write_all(&body.as_bytes()[10..]).unwrap();
    let (resp, _) = read_until_closed(&mut inflight, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    // The stream ends instead of holding the shutdown up.
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5));
    assert!(closed, "the stream was not closed at shutdown");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no exit within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("Received SIGTERM"), "{log}");
    assert!(
        log.contains("durable up to seq 501 and the indexes are checkpointed"),
        "{log}"
    );
    drop(d);
    let d = Daemon::start(tmp.path());
    let (st, _, ev) = d.get("/v1/events/in-flight-1");
    assert_eq!(st, 200, "{ev}");
    assert_eq!(ev["seq"], 501);
    assert_eq!(crate::support::verify(&[tmp.path()]).0, 0);
}

/// Log lines written to a pipe or a file (journald, `2> log`) carry no ANSI
/// colour codes, with or without `NO_COLOR`.
#[test]
fn the_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    for no_color in [None, Some("1")] {
        let mut cmd = crate::support::stele();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path())
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let mut d = Daemon::spawn(cmd);
        assert_eq!(d.post(&json!({"action": "login", "actor": "a"})).0, 201);
        assert_eq!(d.terminate(Duration::from_secs(10)).code(), Some(0));
        let log = d.log_text();
        assert!(log.contains("Listening on"), "{log}");
        assert!(
            !log.contains("\x1b["),
            "NO_COLOR={no_color:?}: colour codes in a piped log: {log:?}"
        );
    }
}

/// SIGHUP re-reads the configuration: new limits apply without dropping
/// connections; a broken file keeps the settings in force.
#[test]
fn sighup_reloads_limits_and_keeps_them_when_the_file_is_broken() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("stele.toml");
    std::fs::write(&conf, "[limits]\nurl_bytes_max = 1024\n").unwrap();
    let d = Daemon::start_with(
        &tmp.path().join("data"),
        &["--config", conf.to_str().unwrap()],
    );
    let long = format!("/healthz?pad={}", "x".repeat(1100));
    assert_eq!(d.get(&long).0, 414);
    // An open stream must survive the reload.
    let mut stream = open_stream(&d.addr, "/v1/stream", None);
    let hup = |d: &Daemon| {
        let pid = d.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    };
    std::fs::write(&conf, "[limits]\nurl_bytes_max = 4096\n").unwrap();
    hup(&d);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.get(&long).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the new limit never applied: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A broken file: logged, the daemon keeps serving with the last limits.
    std::fs::write(&conf, "[limits]\nurl_bytes_max = \"lots\"\n").unwrap();
    hup(&d);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log_text().contains("keeping the current settings") {
        assert!(Instant::now() < deadline, "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.log_text().contains("url_bytes_max"), "{}", d.log_text());
    assert_eq!(d.get(&long).0, 200);
    assert_eq!(d.post(&json!({"action": "a", "actor": "b"})).0, 201);
    // The stream opened before both reloads still delivers.
    assert_eq!(read_ids(&mut stream, 1), vec![1]);
}
