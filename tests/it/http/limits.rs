//! Limits: each one enforced with a problem while the daemon stays up, an
//! unusable one refused at startup by name (the real binary), and the disk
//! reserve (507 for ingest, reads working, ingest resuming once space is freed).

use super::*;

#[test]
fn every_limit_is_enforced_with_a_problem_and_the_daemon_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    // The size and count limits on one server; the one-second timeouts on
    // another, so that an ordinary request slowed by a loaded machine is
    // never mistaken for a stalled one.
    let d = Server::start_with_limits(
        &tmp.path().join("sizes"),
        stele::config::Limits {
            url_bytes_max: 1024,
            header_bytes_max: 2048,
            streams_max: 1,
            events_per_request_max: 10,
            body_bytes_max: 100_000,
            ..Default::default()
        },
    );
    let timed = Server::start_with_limits(
        &tmp.path().join("timeouts"),
        stele::config::Limits {
            header_read_timeout_secs: 1,
            request_timeout_secs: 1,
            ..Default::default()
        },
    );
    // A request target over url_bytes_max: 414.
    let (st, ct, p) = d.get(&format!("/v1/events?tenant={}", "x".repeat(1100)));
    assert_eq!((st, ct.as_str()), (414, "application/problem+json"), "{p}");
    assert_eq!(http::problem_kind(&p), "uri-too-long");
    assert_eq!(p["limit"], 1024);
    // Headers over header_bytes_max: 431 with a problem body.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "y".repeat(3000)
    )
    .unwrap();
    let (resp, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert!(resp.contains("headers-too-large"), "{resp}");
    // A head larger than the read buffer: hyper's own 431 or a closed
    // connection, never a hang.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    let _ = write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Huge: {}\r\n\r\n",
        "z".repeat(200_000)
    );
    let (resp, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(closed, "connection left open");
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 431"),
        "{resp}"
    );
    // A client that never finishes its head is disconnected.
    let mut slow = TcpStream::connect(&timed.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(6));
    assert!(closed, "a slow head was not timed out");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A body that stalls: 503 request-timeout after request_timeout_secs.
    let mut s = TcpStream::connect(&timed.addr).unwrap();
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"action\""
    )
    .unwrap();
    let (resp, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("request-timeout"), "{resp}");
    // events_per_request_max and body_bytes_max as configured.
    let many: Vec<Value> = (0..11)
        .map(|_| json!({"action": "a", "actor": "b"}))
        .collect();
    let (st, _, p) = d.post(&Value::Array(many));
    assert_eq!(st, 400, "{p}");
    assert_eq!(http::problem_kind(&p), "invalid-batch-size");
    assert_eq!(p["limit"], 10);
    let big = json!({"action": "a", "actor": "b", "description": "d".repeat(100_001)});
    let (st, _, p) = d.post(&big);
    assert_eq!(st, 413, "{p}");
    assert_eq!(p["limit"], 100_000);
    // streams_max: the second stream waits for the first to close.
    let mut first = open_stream(&d.addr, "/v1/stream", None);
    let mut buf = [0u8; 64];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(first.read(&mut buf).unwrap() > 0);
    let (st, _, p) = d.get("/v1/stream");
    assert_eq!(st, 503, "{p}");
    assert_eq!(http::problem_kind(&p), "too-many-streams");
    let (_, metrics) = d.get_raw("/metrics");
    assert!(metrics.contains("\nstele_streams_open 1\n"), "{metrics}");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The stream task notices the closed connection when it next
        // writes (at most one heartbeat) or when the body is polled.
        let mut s = open_stream(&d.addr, "/v1/stream", None);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream was never released"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // After all of it the daemons are healthy and ingest.
    for d in [&d, &timed] {
        assert_eq!(d.get("/healthz").0, 200);
        let (st, _, p) = d.post(&json!({"action": "a", "actor": "b"}));
        assert_eq!(st, 201, "{p}");
    }
}

#[test]
fn an_unusable_limit_is_refused_at_startup_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = stele()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--streams-max",
            "0",
            "--data-dir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("streams_max must be at least 1"), "{err}");
}

fn free_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and out-pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

/// A filesystem nearly full (free space below the configured reserve):
/// ingest answers 507 and stores nothing, reads keep working, and ingest
/// resumes on its own once space is freed.
#[test]
fn below_the_disk_reserve_ingest_is_507_reads_work_and_it_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Take 256 MiB, then reserve 128 MiB more than what is left: full.
    let filler = tmp.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0xA5u8; 1 << 20];
        for _ in 0..256 {
            f.write_all(&block).unwrap();
        }
        f.sync_all().unwrap();
    }
    let reserve = free_bytes(&data) + (128 << 20);
    let d = Server::start_with_limits(
        &data,
        stele::config::Limits {
            disk_reserve_bytes: reserve,
            ..Default::default()
        },
    );
    let (st, ct, p) = d.post(&json!({"id": "while-full", "action": "a", "actor": "b"}));
    assert_eq!((st, ct.as_str()), (507, "application/problem+json"), "{p}");
    assert_eq!(http::problem_kind(&p), "disk-full");
    assert_eq!(p["reserve"], reserve);
    assert!(
        p["detail"].as_str().unwrap().contains("nothing was stored"),
        "{p}"
    );
    assert_eq!(d.get("/v1/events/while-full").0, 404);
    assert_eq!(d.get("/v1/events").0, 200);
    assert_eq!(d.get("/healthz").0, 200);
    let (_, m) = d.get_raw("/metrics");
    assert!(m.contains("stele_disk_free_bytes "), "{m}");
    // Space comes back: the same request (same id) now succeeds.
    std::fs::remove_file(&filler).unwrap();
    let (st, _, r) = d.post(&json!({"id": "while-full", "action": "a", "actor": "b"}));
    assert_eq!(st, 201, "{r}");
    assert_eq!(d.get("/v1/events/while-full").2["seq"], 1);
}

/// The largest request the default limits let in (10,000 events, a body just
/// under 16 MiB) is stored whole, as one write. Before, one write of the log
/// held at most 8 MiB: such a request, read and validated, was refused with
/// `503 log-unavailable` (a server error, which clients retry for ever). A
/// body limit set beyond what one write may hold (the torn window, 64 MiB),
/// or raised by a reload beyond the write size the daemon started with, gets
/// a `413` saying so, and nothing is stored.
#[test]
fn a_request_at_the_limits_is_stored_whole_or_refused_as_too_large() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = |n: usize, bytes: usize| -> Vec<u8> {
        let events: Vec<Value> = (0..n)
            .map(|i| {
                json!({"id": format!("big-{bytes}-{i}"), "action": "a", "actor": "x",
                       "metadata": {"k": "m".repeat(bytes)}})
            })
            .collect();
        serde_json::to_vec(&events).unwrap()
    };
    let d = Server::start(&tmp.path().join("default"));
    let body = batch(10_000, 1_500);
    assert!(
        body.len() > 15_000_000 && body.len() < 16 << 20,
        "{}",
        body.len()
    );
    let (st, _, r) = d.call("POST", "/v1/events", "application/json", &body);
    let shown = r.to_string();
    assert_eq!(st, 201, "{}", &shown[..shown.len().min(400)]);
    assert_eq!(r["events"].as_array().map(Vec::len), Some(10_000));
    assert_eq!(r["receipt"]["last_seq"], 10_000);
    // The write size is set at start: a reload that raises body_bytes_max lets
    // in bodies whose events one write cannot hold until the next restart: 413.
    let conf = tmp.path().join("stele.toml");
    std::fs::write(&conf, "[limits]\nbody_bytes_max = 41943040\n").unwrap();
    d.reload(&conf);
    let body = batch(10_000, 3_000);
    assert!(
        body.len() > 27_017_216 && body.len() < 40 << 20,
        "{}",
        body.len()
    );
    let (st, _, p) = d.call("POST", "/v1/events", "application/json", &body);
    assert_eq!(st, 413, "{p}");
    assert_eq!(p["limit"], 16 * 1024 * 1024 + 10_000 * 1024, "{p}");

    let big = Server::start_with_limits(
        &tmp.path().join("big"),
        stele::config::Limits {
            body_bytes_max: 80 << 20,
            ..Default::default()
        },
    );
    let body = batch(10_000, 7_000);
    assert!(
        body.len() > 64 << 20 && body.len() < 80 << 20,
        "{}",
        body.len()
    );
    let (st, _, p) = big.call("POST", "/v1/events", "application/json", &body);
    assert_eq!(st, 413, "{p}");
    assert_eq!(http::problem_kind(&p), "body-too-large");
    assert_eq!(p["limit"], 64 << 20);
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("post fewer events")),
        "{p}"
    );
    let (st, _, v) = big.get("/v1/events?limit=1");
    assert_eq!(
        (st, v["events"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    let (st, _, r) = big.post(&json!({"action": "a", "actor": "x"}));
    assert_eq!((st, &r["receipt"]["last_seq"]), (201, &json!(1)), "{r}");
}
