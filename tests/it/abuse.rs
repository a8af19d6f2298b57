//! HTTP abuse against `stele serve`: slow clients, oversized heads,
//! ten thousand connections, malformed chunked bodies, invalid UTF-8 and NUL,
//! deep nesting, out-of-range numbers, duplicate keys, and live streams that are
//! never read.
//!
//! Every test first posts events and keeps their acknowledgements, then abuses
//! the daemon, then checks that it answered with a clear error (problem+json
//! with the right status) or closed the connection; that it is still healthy
//! (`/healthz` and `/readyz` 200) and serves a normal request; that every
//! acknowledged event reads back exactly as posted; and, where it matters, that
//! its memory stayed bounded (`VmHWM` of `/proc/<pid>/status`).
//!
//! The memory bounds are for this debug build, measured on the 2-core
//! development VM (see each constant).
//!
//! Most attacks hit the server in-process (`support::inproc`; "still healthy"
//! includes no panic in a Stele thread). The real binary (`support::daemon`)
//! stays where the process is the point: the memory bounds and socket counts
//! of `/proc/<pid>` (ten thousand connections, streams never read), and deep
//! nesting, where a stack overflow must be seen as a dead daemon, not abort
//! the test binary.

use crate::support::daemon::Daemon;
use crate::support::http::{parse_reply, read_until_closed, request_bytes, Reply};
use crate::support::inproc::Server;
use crate::support::Served;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

const PROBLEMS: &str = "https://stele.dev/problems/";

// ---------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------

/// What a raw exchange got: the bytes read, and whether the server closed
/// (or reset) the connection before `within` ran out.
struct Exchange {
    raw: Vec<u8>,
    closed: bool,
    took: Duration,
}

impl Exchange {
    fn reply(&self) -> Option<Reply> {
        parse_reply(&self.raw)
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.raw[..self.raw.len().min(600)]).into_owned()
    }
}

/// Writes `bytes` on a fresh connection (stopping at a write error: the
/// server may answer and close early), half-closes if asked, and reads until
/// the server closes or `within` runs out.
fn exchange(addr: &str, bytes: &[u8], half_close: bool, within: Duration) -> Exchange {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    s.set_write_timeout(Some(within)).unwrap();
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut raw = Vec::new();
    let closed = read_until_closed(&mut s, &mut raw, started + within);
    Exchange {
        raw,
        closed,
        took: started.elapsed(),
    }
}

/// Asserts a problem+json answer and returns its body.
fn problem(r: &Reply, status: u16, kind: &str) -> Value {
    assert_eq!(r.status, status, "{}\n{}", r.head, r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.head
    );
    let p: Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()));
    assert_eq!(p["type"], format!("{PROBLEMS}{kind}"), "{p}");
    assert_eq!(p["status"], status, "{p}");
    assert!(
        p["title"].as_str().is_some_and(|t| !t.is_empty()),
        "no title: {p}"
    );
    assert!(
        p["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no detail: {p}"
    );
    p
}

/// `problem` for a (status, content type, body) of the harness's client.
fn problem_of(answer: &(u16, String, Value), status: u16, kind: &str) -> Value {
    let (st, ct, p) = answer;
    assert_eq!(*st, status, "{p}");
    assert_eq!(ct, "application/problem+json", "{p}");
    assert_eq!(p["type"], format!("{PROBLEMS}{kind}"), "{p}");
    assert_eq!(p["status"], status, "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    p.clone()
}

fn detail(p: &Value) -> &str {
    p["detail"].as_str().unwrap_or("")
}

fn post_bytes(d: &impl Served, ctype: &str, body: &[u8]) -> (u16, String, Value) {
    d.call("POST", "/v1/events", ctype, body)
}

// ---------------------------------------------------------------------------
// Acknowledged events, health, memory
// ---------------------------------------------------------------------------

/// An acknowledged event: what was posted and the seq it got.
struct Acked {
    id: String,
    seq: u64,
    posted: Value,
}

/// A realistic event whose JSON view is exactly `posted` plus `seq` and
/// `received_at` (timestamp already in the stored form).
fn rich_event(id: &str, i: usize) -> Value {
    json!({
        "id": id,
        "timestamp": format!("2026-11-23T10:{:02}:{:02}.123456Z", i / 60 % 60, i % 60),
        "action": "update",
        "actor": format!("user-{}", i % 7),
        "tenant": "acme",
        "category": "billing",
        "source": "user",
        "status": "success",
        "severity": "notice",
        "entity_type": "order",
        "entity_id": format!("{}", 1000 + i),
        "entity_name": "Zoë’s order — naïve 日本 ✓",
        "user_id": format!("u-{}", i % 5),
        "ip": "2001:db8::7",
        "user_agent": "curl/8.5.0",
        "risk_score": i % 101,
        "duration_ms": i * 3,
        "description": format!("order {i} paid\nsecond line\ttab"),
        "changes": [{"field": "status", "old": "pending", "new": {"state": "paid", "n": i}}],
        "metadata": {"i": i, "ünï": "çödé", "list": [1, "two", null, true, 2.5, -7],
                     "nested": {"deep": {"er": [i]}}},
    })
}

/// Posts `n` rich events as one batch and waits until queries see them.
fn seed(d: &impl Served, tag: &str, n: usize) -> Vec<Acked> {
    let posted: Vec<Value> = (0..n)
        .map(|i| rich_event(&format!("{tag}-{i}"), i))
        .collect();
    let (st, _, r) = d.post(&Value::Array(posted.clone()));
    assert_eq!(st, 201, "{r}");
    let acked: Vec<Acked> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .zip(posted)
        .map(|(a, p)| Acked {
            id: a["id"].as_str().unwrap().to_string(),
            seq: a["seq"].as_u64().unwrap(),
            posted: p,
        })
        .collect();
    assert_eq!(acked.len(), n);
    wait_indexed(d, acked.last().unwrap().seq);
    acked
}

fn ready_state(d: &impl Served) -> Value {
    let (st, _, v) = d.get("/readyz");
    assert!(matches!(st, 200 | 503), "{v}");
    v["state"].clone()
}

fn log_last_seq(d: &impl Served) -> u64 {
    ready_state(d)["log_last_seq"].as_u64().unwrap()
}

fn wait_indexed(d: &impl Served, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = ready_state(d);
        if st["indexed_seq"].as_u64().unwrap() >= seq {
            return;
        }
        assert!(Instant::now() < deadline, "not indexed up to {seq}: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stored JSON view without what the server adds, after checking `seq`.
fn stored_as_posted(d: &impl Served, id: &str, seq: u64) -> Value {
    let (st, _, mut v) = d.get(&format!("/v1/events/{id}"));
    assert_eq!(st, 200, "{id}: {v}");
    assert_eq!(v["seq"], seq, "{id}: {v}");
    let obj = v.as_object_mut().unwrap();
    obj.remove("seq");
    assert!(obj.remove("received_at").is_some(), "{id}");
    assert_eq!(
        obj.remove("ingested_by"),
        Some(Value::from("loopback")),
        "{id}"
    );
    assert!(obj.remove("client_addr").is_some(), "{id}");
    v
}

/// Every acknowledged event reads back by id exactly as posted, at its seq.
fn assert_intact(d: &impl Served, acked: &[Acked]) {
    wait_indexed(d, acked.iter().map(|a| a.seq).max().unwrap_or(0));
    for a in acked {
        assert_eq!(stored_as_posted(d, &a.id, a.seq), a.posted, "{}", a.id);
    }
}

/// `/healthz` and `/readyz` answer 200, and a query is served.
fn assert_healthy(d: &mut impl Served) {
    let exited = d.exit_report();
    assert!(exited.is_none(), "{}", exited.unwrap_or_default());
    let (st, _, v) = d.get("/healthz");
    assert_eq!((st, &v), (200, &json!({"status": "ok"})));
    let (st, _, v) = d.get("/readyz");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ready"], true, "{v}");
    let (st, _, v) = d.get("/v1/events?limit=1");
    assert_eq!(st, 200, "{v}");
    let panicked = d.panic_report();
    assert!(panicked.is_none(), "{}", panicked.unwrap_or_default());
}

/// Posts one event and checks it is acknowledged with the next seq.
fn assert_ingests(d: &impl Served, id: &str) -> Acked {
    let before = log_last_seq(d);
    let posted = rich_event(id, 42);
    let (st, _, r) = d.post(&posted);
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["events"], json!([{"id": id, "seq": before + 1}]), "{r}");
    Acked {
        id: id.into(),
        seq: before + 1,
        posted,
    }
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> u64 {
    kib / 1024
}

/// Open sockets of a process.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Open sockets of a process once the connections of earlier requests are
/// gone (the same count three times in a row, 100 ms apart).
fn settled_sockets(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = (sockets_of(pid), 1);
    while seen.1 < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let n = sockets_of(pid);
        seen = if n == seen.0 { (n, seen.1 + 1) } else { (n, 1) };
    }
    seen.0
}

/// A connection started with `connect(2)` without waiting for it when
/// `nonblocking`; `rcvbuf` sets `SO_RCVBUF` before connecting.
pub(crate) fn connect_raw(addr: SocketAddrV4, rcvbuf: Option<i32>, nonblocking: bool) -> TcpStream {
    let flags =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // TcpStream takes it over (and closes it) right after creation.
    unsafe {
        let fd = libc::socket(libc::AF_INET, flags, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(n) = rcvbuf {
            let r = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                std::ptr::from_ref(&n).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        }
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            std::ptr::from_ref(&sa).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r != 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                nonblocking && e.raw_os_error() == Some(libc::EINPROGRESS),
                "connect: {e}"
            );
        }
        stream
    }
}

/// Raises this process's soft RLIMIT_NOFILE to the hard limit (children
/// such as the daemon inherit it); `Err` if the hard limit is below `need`.
fn raise_nofile(need: u64) -> Result<u64, String> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        if rl.rlim_max < need {
            return Err(format!(
                "the hard RLIMIT_NOFILE is {}, this test needs {need}",
                rl.rlim_max
            ));
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &rl),
                0,
                "setrlimit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(rl.rlim_cur)
}

/// A `GET /healthz` on a fresh connection: how long a 200 took, or `None`
/// if none came within `within` (connecting included).
fn healthz_within(addr: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&sa, within).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    read_until_closed(&mut s, &mut raw, started + within);
    raw.starts_with(b"HTTP/1.1 200").then(|| started.elapsed())
}

// ---------------------------------------------------------------------------
// 1. Slow clients
// ---------------------------------------------------------------------------

/// One client writing its head a byte at a time: when the server closed it
/// (since its connect), and what it sent back.
struct Slow {
    stream: TcpStream,
    started: Instant,
    sent: usize,
    closed: Option<Duration>,
    got: Vec<u8>,
}

#[test]
fn slow_header_clients_are_cut_after_header_read_timeout_while_others_are_served() {
    const SLOW_CLIENTS: usize = 20;
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start_with_limits(
        tmp.path(),
        stele::config::Limits {
            header_read_timeout_secs: 2,
            ..Default::default()
        },
    );
    let acked = seed(&d, "slow", 10);

    // Slowloris: a head that never ends, one byte a second; an idle
    // connection that never sends; a keep-alive connection idle after one
    // complete request.
    let head: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let addr = d.addr.clone();
    let driver = std::thread::spawn(move || {
        let mut clients: Vec<Slow> = (0..SLOW_CLIENTS + 2)
            .map(|_| {
                let stream = TcpStream::connect(&addr).unwrap();
                stream.set_nonblocking(true).unwrap();
                Slow {
                    stream,
                    started: Instant::now(),
                    sent: 0,
                    closed: None,
                    got: Vec::new(),
                }
            })
            .collect();
        // The last one is keep-alive: a whole request first.
        let ka = clients.last_mut().unwrap();
        ka.stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(12);
        let mut next_byte = Instant::now();
        while clients.iter().any(|c| c.closed.is_none()) && Instant::now() < deadline {
            let write_now = Instant::now() >= next_byte;
            for (i, c) in clients.iter_mut().enumerate() {
                if c.closed.is_some() {
                    continue;
                }
                if write_now && i < SLOW_CLIENTS && c.sent < head.len() {
                    match c.stream.write(&head[c.sent..=c.sent]) {
                        Ok(n) => c.sent += n,
                        Err(_) => c.closed = Some(c.started.elapsed()),
                    }
                }
                let mut buf = [0u8; 4096];
                match c.stream.read(&mut buf) {
                    Ok(0) => c.closed = Some(c.started.elapsed()),
                    Ok(n) => c.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => c.closed = Some(c.started.elapsed()),
                }
            }
            if write_now {
                next_byte += Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        clients
    });

    // Meanwhile other clients are served at once.
    let mut worst = Duration::ZERO;
    let mut served = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let t = Instant::now();
        let (st, _, v) = d.get(&format!("/v1/events/{}", acked[served % 10].id));
        assert_eq!(st, 200, "{v}");
        let took = healthz_within(&d.addr, Duration::from_secs(5))
            .expect("/healthz not served while slow clients are connected");
        worst = worst.max(t.elapsed()).max(took);
        served += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let clients = driver.join().unwrap();
    eprintln!(
        "slow clients: {served} requests of others served meanwhile, the slowest in {worst:?}; \
         slow heads cut after {:?}",
        clients.iter().map(|c| c.closed).collect::<Vec<_>>()
    );
    assert!(
        worst < Duration::from_secs(1),
        "others waited {worst:?} while slow clients were connected"
    );
    for (i, c) in clients.iter().enumerate() {
        let what = match i {
            i if i < SLOW_CLIENTS => "a head sent one byte a second",
            i if i == SLOW_CLIENTS => "an idle connection",
            _ => "a keep-alive connection idle after its request",
        };
        let closed = c
            .closed
            .unwrap_or_else(|| panic!("{what} was never closed ({} bytes sent)", c.sent));
        assert!(
            closed >= Duration::from_millis(1500) && closed < Duration::from_secs(5),
            "{what} was closed after {closed:?}, not header_read_timeout_secs (2 s)"
        );
        if i < SLOW_CLIENTS {
            assert!(c.sent <= 6, "{what}: {} bytes were taken", c.sent);
            // Closed without an answer (or at most a 408).
            assert!(
                c.got.is_empty() || c.got.starts_with(b"HTTP/1.1 408"),
                "{what}: {}",
                String::from_utf8_lossy(&c.got)
            );
        }
    }
    assert!(
        clients[SLOW_CLIENTS + 1].got.starts_with(b"HTTP/1.1 200"),
        "the keep-alive request was not answered"
    );
    assert_healthy(&mut d);
    let mut acked = acked;
    acked.push(assert_ingests(&d, "slow-after"));
    assert_intact(&d, &acked);
}

// ---------------------------------------------------------------------------
// 2. Oversized heads
// ---------------------------------------------------------------------------

/// Header lines as Stele counts them (name + value + 4 per line), for a
/// request made by [`request`] plus `extra`.
fn counted_header_bytes(extra: &[(&str, String)]) -> usize {
    let base = ("host".len() + "test".len() + 4) + ("connection".len() + "close".len() + 4);
    base + extra
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum::<usize>()
}

fn get_with(addr: &str, target: &str, headers: &[(&str, String)]) -> Exchange {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    exchange(
        addr,
        &request_bytes("GET", target, &h, b""),
        false,
        Duration::from_secs(10),
    )
}

/// hyper's own bare 431 (no body) with the connection closed, or just a
/// closed connection: what a head beyond the read buffer gets.
fn assert_bare_431_or_closed(x: &Exchange, what: &str) {
    assert!(
        x.closed,
        "{what}: the connection was left open: {}",
        x.shown()
    );
    assert!(
        x.raw.is_empty() || x.raw.starts_with(b"HTTP/1.1 431 "),
        "{what}: {}",
        x.shown()
    );
}

#[test]
fn oversized_urls_get_414_and_oversized_heads_431_one_line_or_many() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let acked = seed(&d, "heads", 10);
    let before = log_last_seq(&d);
    let addr = d.addr.clone();

    // url_bytes_max (8192, path + query): at the limit served, one more 414.
    // (At the limit the route is reached: an unknown id.)
    let base = "/v1/events/";
    let at_limit = format!("{base}{}", "x".repeat(8192 - base.len()));
    problem(
        &get_with(&addr, &at_limit, &[]).reply().expect("an answer"),
        404,
        "not-found",
    );
    for len in [8193, 30_000] {
        let target = format!("{base}{}", "x".repeat(len - base.len()));
        let x = get_with(&addr, &target, &[]);
        let p = problem(&x.reply().expect("an answer"), 414, "uri-too-long");
        assert_eq!(p["limit"], 8192, "{p}");
        assert!(detail(&p).contains(&format!("{len} bytes")), "{p}");
        assert!(x.closed, "{len}-byte target: connection left open");
    }
    // POST too: refused before the body is read or anything stored.
    let body = json!({"action": "a", "actor": "b"}).to_string();
    let x = exchange(
        &addr,
        &request_bytes(
            "POST",
            &format!("/v1/events?{}", "q".repeat(9000)),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        ),
        false,
        Duration::from_secs(10),
    );
    problem(&x.reply().expect("an answer"), 414, "uri-too-long");
    // A megabyte of URL is beyond hyper's read buffer.
    let x = get_with(&addr, &format!("/{}", "u".repeat(1 << 20)), &[]);
    assert_bare_431_or_closed(&x, "a 1 MiB URL");

    // header_bytes_max (16384, all header lines): one huge line, at the
    // limit and one byte over.
    let pad = |n: usize| vec![("x-big", "y".repeat(n))];
    let at = 16384 - counted_header_bytes(&pad(0));
    assert_eq!(counted_header_bytes(&pad(at)), 16384);
    let r = get_with(&addr, "/healthz", &pad(at)).reply().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let x = get_with(&addr, "/healthz", &pad(at + 1));
    let p = problem(&x.reply().expect("an answer"), 431, "headers-too-large");
    assert_eq!(p["limit"], 16384, "{p}");
    assert!(detail(&p).contains("16385 bytes"), "{p}");
    // One line of a megabyte: beyond the read buffer.
    let x = get_with(&addr, "/healthz", &pad(1 << 20));
    assert_bare_431_or_closed(&x, "a 1 MiB header line");

    // Many small lines over the byte limit (fewer than hyper's 100):
    // Stele's 431.
    let many: Vec<(&str, String)> = (0..90)
        .map(|i| {
            (
                ["x-a", "x-b", "x-c"][i % 3],
                format!("{i:03}{}", "v".repeat(200)),
            )
        })
        .collect();
    assert!(counted_header_bytes(&many) > 16384);
    let x = get_with(&addr, "/healthz", &many);
    problem(&x.reply().expect("an answer"), 431, "headers-too-large");
    // Thousands of tiny lines over the byte limit: 431 too (hyper's own,
    // for more than 100 lines), and the connection closes.
    let names: Vec<String> = (0..3000).map(|i| format!("x-h{i}")).collect();
    let tiny: Vec<(&str, String)> = names.iter().map(|n| (n.as_str(), "v".into())).collect();
    assert!(counted_header_bytes(&tiny) > 16384);
    let x = get_with(&addr, "/healthz", &tiny);
    assert!(x.raw.starts_with(b"HTTP/1.1 431 "), "{}", x.shown());
    assert!(x.closed, "connection left open after {}", x.shown());
    // The same on an ingest: nothing stored.
    let x = exchange(
        &addr,
        &request_bytes(
            "POST",
            "/v1/events",
            &[
                ("Content-Type", "application/json"),
                ("X-Big", &"z".repeat(20_000)),
            ],
            body.as_bytes(),
        ),
        false,
        Duration::from_secs(10),
    );
    problem(&x.reply().expect("an answer"), 431, "headers-too-large");

    assert_eq!(
        log_last_seq(&d),
        before,
        "an oversized request stored events"
    );
    assert_healthy(&mut d);
    let mut acked = acked;
    acked.push(assert_ingests(&d, "heads-after"));
    assert_intact(&d, &acked);
}

/// A request has at most 100 header lines (hyper's `max_headers`, kept for
/// speed and documented with the limits in README.md): 90 small ones are
/// served, 150 get a 431 (hyper's, without a problem body) or a closed
/// connection, far below `header_bytes_max`, and the daemon is unharmed.
#[test]
fn more_than_100_header_lines_get_431_and_fewer_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let acked = seed(&d, "lines", 5);
    let names: Vec<String> = (0..150).map(|i| format!("x-h{i}")).collect();
    let headers = |n: usize| -> Vec<(&str, String)> {
        names[..n]
            .iter()
            .map(|n| (n.as_str(), "v".into()))
            .collect()
    };
    assert!(counted_header_bytes(&headers(150)) < 16384 / 4);
    let x = get_with(&d.addr, "/healthz", &headers(90));
    let r = x
        .reply()
        .unwrap_or_else(|| panic!("no answer: {}", x.shown()));
    assert_eq!(r.status, 200, "{}", x.shown());
    let x = get_with(&d.addr, "/healthz", &headers(150));
    if let Some(r) = x.reply() {
        assert_eq!(r.status, 431, "{}", x.shown());
    }
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}

// ---------------------------------------------------------------------------
// 3. Ten thousand connections
// ---------------------------------------------------------------------------

/// Peak RSS (VmHWM) of the daemon with 10,000 connections opened at once
/// (4,096 held, the rest in the backlog; a third of the held ones sending a
/// partial head, a tenth of those 16 KiB of it). Measured in this debug
/// build on the 2-core VM: 89-93 MiB after start and seeding, peak 190-193
/// MiB (twelve runs, alone and with the other tests); the bound is about 2x.
const PEAK_KIB_10K_CONNECTIONS: u64 = 400 * 1024;

#[test]
fn ten_thousand_connections_are_held_to_connections_max_and_service_resumes_when_they_go() {
    const CONNECTIONS: usize = 10_000;
    const CONNECTIONS_MAX: usize = 4096; // the default
    match raise_nofile(CONNECTIONS as u64 + 2000) {
        Ok(n) => eprintln!("RLIMIT_NOFILE {n}"),
        Err(why) => {
            eprintln!("SKIPPED ten_thousand_connections: {why}");
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    // The default, spelled out: held connections outlive the test's first
    // phase (about 4 s), and it reaps what the flood leaves half-open.
    const HEADER_READ_TIMEOUT_SECS: u64 = 10;
    let timeout = HEADER_READ_TIMEOUT_SECS.to_string();
    let mut d = Daemon::start_with(tmp.path(), &["--header-read-timeout-secs", &timeout]);
    let acked = seed(&d, "conn", 20);
    let before = log_last_seq(&d);
    let pid = d.child.id();
    let idle = memory_kib(pid);
    let base_sockets = settled_sockets(pid);
    let addr: SocketAddrV4 = d.addr.parse().unwrap();

    let started = Instant::now();
    let conns: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| connect_raw(addr, None, true))
        .collect();
    let opened = started.elapsed();
    // The daemon takes connections_max of them; the rest wait.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sockets_of(pid) - base_sockets < CONNECTIONS_MAX {
        assert!(
            Instant::now() < deadline,
            "the daemon took only {} connections",
            sockets_of(pid) - base_sockets
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Partial requests on a third of those that are connected.
    let small: &[u8] = b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n";
    let mut big = b"GET /v1/events HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    big.resize(16 * 1024, b'p');
    let mut partial = 0;
    for (i, c) in conns.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        let head = if i % 30 == 0 { &big[..] } else { small };
        if (&*c).write(head).is_ok() {
            partial += 1;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let held = sockets_of(pid) - base_sockets;
    assert!(
        held <= CONNECTIONS_MAX,
        "{held} connections open in the daemon, connections_max is {CONNECTIONS_MAX}"
    );
    // A new client waits in the backlog while they are all held.
    assert_eq!(
        healthz_within(&d.addr, Duration::from_secs(1)),
        None,
        "answered beyond connections_max"
    );
    let holding = memory_kib(pid);
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log_text());

    // Released: served again at once (a connect may need a SYN retry while
    // the backlog drains).
    drop(conns);
    let released = Instant::now();
    let resumed = loop {
        if healthz_within(&d.addr, Duration::from_secs(2)).is_some() {
            break released.elapsed();
        }
        assert!(
            released.elapsed() < Duration::from_secs(20),
            "not served again within 20 s of releasing the connections"
        );
    };
    assert!(
        resumed < Duration::from_secs(10),
        "served again after {resumed:?}"
    );
    // Every connection goes away: nearly all at once; the few that the
    // overflowing accept queue left half-open (the client's FIN dropped with
    // its handshake ACK, so the daemon's side stays established with no
    // client behind it) once header_read_timeout_secs runs out.
    std::thread::sleep(Duration::from_secs(2));
    let lingering = sockets_of(pid).saturating_sub(base_sockets);
    let deadline = released + Duration::from_secs(HEADER_READ_TIMEOUT_SECS + 10);
    while sockets_of(pid) > base_sockets {
        assert!(
            Instant::now() < deadline,
            "{} connections still open {:?} after the clients closed them",
            sockets_of(pid) - base_sockets,
            released.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let all_gone = released.elapsed();
    let (rss, hwm) = memory_kib(pid);
    eprintln!(
        "10k connections: opened in {opened:?}, {held} held by the daemon, {partial} partial \
         heads; RSS idle {} MiB, holding {} MiB, after {} MiB; VmHWM {} MiB \
         (bound {} MiB); served again {resumed:?} after release; {lingering} half-open 2 s after \
         release, all gone after {all_gone:?}; {:?} in all",
        mib(idle.0),
        mib(holding.0),
        mib(rss),
        mib(hwm),
        mib(PEAK_KIB_10K_CONNECTIONS),
        started.elapsed()
    );
    assert!(
        hwm < PEAK_KIB_10K_CONNECTIONS,
        "peak RSS {} MiB with {CONNECTIONS} connections, bound {} MiB",
        mib(hwm),
        mib(PEAK_KIB_10K_CONNECTIONS)
    );
    assert_eq!(log_last_seq(&d), before, "partial requests stored events");
    assert_healthy(&mut d);
    let mut acked = acked;
    acked.push(assert_ingests(&d, "conn-after"));
    assert_intact(&d, &acked);
}

// ---------------------------------------------------------------------------
// 4. Malformed chunked bodies
// ---------------------------------------------------------------------------

#[test]
fn malformed_chunked_bodies_get_400_or_a_closed_connection_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let acked = seed(&d, "chunk", 10);
    let before = log_last_seq(&d);
    let ev = br#"{"id": "chunked-1", "action": "a", "actor": "b"}"#;
    let n = ev.len();
    let head = b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let body = |parts: &[&[u8]]| -> Vec<u8> {
        let mut out = head.to_vec();
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    };
    let size = format!("{n:x}\r\n").into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a bad hex size",
            body(&[b"zz\r\n", ev, b"\r\n0\r\n\r\n"]),
            "chunk size",
        ),
        (
            "a negative size",
            body(&[b"-1a\r\n", ev, b"\r\n0\r\n\r\n"]),
            "chunk size",
        ),
        (
            "no CRLF after the data",
            body(&[&size, ev, b"0\r\n\r\n"]),
            "chunk body",
        ),
        (
            "a size overflowing 64 bits",
            body(&[b"ffffffffffffffffff\r\n", ev, b"\r\n0\r\n\r\n"]),
            "overflow",
        ),
        (
            "a 2^64-1 byte chunk cut short",
            body(&[b"ffffffffffffffff\r\n", ev]),
            "end of file",
        ),
        (
            "a truncated last chunk, then close",
            body(&[format!("{:x}\r\n", n + 40).as_bytes(), ev]),
            "end of file",
        ),
        ("no last chunk", body(&[&size, ev, b"\r\n"]), "EOF"),
        (
            "a last chunk without its CRLF",
            body(&[&size, ev, b"\r\n0\r\n"]),
            "",
        ),
        (
            "a garbage trailer",
            body(&[&size, ev, b"\r\n0\r\nthis is not a header\r\n\r\n"]),
            "header",
        ),
        (
            "a binary trailer",
            body(&[&size, ev, b"\r\n0\r\n\x00\x01\x02: \xff\r\n\r\n"]),
            "header",
        ),
        (
            "100 KB of trailers",
            body(&[&size, ev, b"\r\n0\r\nX-T: ", &[b't'; 100_000], b"\r\n\r\n"]),
            "trailers",
        ),
        (
            "5,000 trailers",
            body(&[
                &size,
                ev,
                b"\r\n0\r\n",
                &(0..5000)
                    .flat_map(|i| format!("X-T{i}: v\r\n").into_bytes())
                    .collect::<Vec<u8>>(),
                b"\r\n",
            ]),
            "trailers",
        ),
        (
            "100 KB of chunk extension",
            body(&[
                format!("{n:x};").as_bytes(),
                &[b'e'; 100_000],
                b"\r\n",
                ev,
                b"\r\n0\r\n\r\n",
            ]),
            "extension",
        ),
    ];
    for (what, bytes, says) in &cases {
        // Half-closed: the server sees where the body ends, and can answer.
        let x = exchange(&d.addr, bytes, true, Duration::from_secs(20));
        assert!(x.closed, "{what}: connection left open after {:?}", x.took);
        match x.reply() {
            Some(r) => {
                let p = problem(&r, 400, "invalid-body");
                assert!(
                    detail(&p).starts_with("the body could not be read: ")
                        && detail(&p).contains(says)
                        && detail(&p).ends_with("nothing was stored"),
                    "{what}: {p}"
                );
            }
            None => assert!(x.raw.is_empty(), "{what}: {}", x.shown()),
        }
    }
    // Cut without a half-close: the client is gone; nothing may be stored.
    for (_, bytes, _) in &cases[4..7] {
        let mut s = TcpStream::connect(&d.addr).unwrap();
        let _ = s.write_all(bytes);
    }
    // (A stalled chunked body is cut by request_timeout_secs: tests/it/http.rs.)
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(log_last_seq(&d), before, "a malformed body stored events");
    let (st, _, v) = d.get("/v1/events/chunked-1");
    assert_eq!(st, 404, "{v}");

    // Well-formed chunked bodies (with an extension, with a trailer) still work.
    for (i, ext) in ["", ";name=value"].into_iter().enumerate() {
        let ev = format!(r#"{{"id": "chunked-ok-{i}", "action": "a", "actor": "b"}}"#);
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(
            format!(
                "{:x}{ext}\r\n{ev}\r\n0\r\nX-Trailer: fine\r\n\r\n",
                ev.len()
            )
            .as_bytes(),
        );
        let x = exchange(&d.addr, &bytes, false, Duration::from_secs(20));
        let r = x.reply().unwrap_or_else(|| panic!("{}", x.shown()));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    assert_eq!(log_last_seq(&d), before + 2);
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}

// ---------------------------------------------------------------------------
// 5. Invalid UTF-8 and NUL
// ---------------------------------------------------------------------------

/// Every string field of an event, and how it is checked: identifiers refuse
/// every control character but tab, LF and CR; free text refuses NUL; `id`
/// is printable ASCII; enums and timestamps have their own grammar.
const STRING_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("timestamp", "timestamp"),
    ("action", "ident"),
    ("actor", "ident"),
    ("tenant", "ident"),
    ("category", "ident"),
    ("source", "enum"),
    ("status", "enum"),
    ("severity", "enum"),
    ("entity_type", "ident"),
    ("entity_id", "ident"),
    ("entity_name", "text"),
    ("user_id", "ident"),
    ("user_name", "ident"),
    ("session_id", "ident"),
    ("correlation_id", "ident"),
    ("ip", "ident"),
    ("user_agent", "text"),
    ("description", "text"),
];

/// A valid value for a string field, into which a bad character can go.
fn valid_for(field: &str) -> &'static str {
    match field {
        "timestamp" => "2026-11-23T10:00:00Z",
        "source" => "user",
        "status" => "success",
        "severity" => "info",
        "ip" => "10.0.0.1",
        _ => "value",
    }
}

/// A minimal valid event as JSON text with `field` set to the JSON string
/// literal `literal` (raw bytes, so invalid UTF-8 can be in it).
fn event_with(field: &str, literal: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"{");
    if field != "action" {
        out.extend_from_slice(br#""action": "a", "#);
    }
    if field != "actor" {
        out.extend_from_slice(br#""actor": "b", "#);
    }
    out.extend_from_slice(format!("\"{field}\": ").as_bytes());
    out.extend_from_slice(literal);
    out.extend_from_slice(b"}");
    out
}

#[test]
fn invalid_utf8_is_a_400_in_every_string_field() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let mut acked = seed(&d, "utf8", 10);
    let before = log_last_seq(&d);

    // Raw invalid UTF-8 anywhere a string goes: invalid JSON, with the
    // position of the bad byte.
    let bad_sequences: &[&[u8]] = &[
        b"\xff",
        b"\xc0\xaf",         // overlong '/'
        b"\xed\xa0\x80",     // an encoded surrogate
        b"\xe2\x82",         // truncated
        b"\xf4\x90\x80\x80", // beyond U+10FFFF
        b"\x80",             // a lone continuation byte
    ];
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for (field, _) in STRING_FIELDS {
        for bad in bad_sequences {
            let mut lit = b"\"".to_vec();
            lit.extend_from_slice(valid_for(field).as_bytes());
            lit.extend_from_slice(bad);
            lit.push(b'"');
            bodies.push((format!("{field} with {bad:x?}"), event_with(field, &lit)));
        }
    }
    for (place, json) in [
        ("a metadata key", &b"{\"k\xff\": 1}"[..]),
        ("a metadata value", b"{\"k\": \"v\xff\"}"),
        (
            "a nested metadata value",
            b"{\"k\": [{\"n\": \"\xed\xa0\x80\"}]}",
        ),
    ] {
        bodies.push((place.to_string(), event_with("metadata", json)));
    }
    for (place, change) in [
        ("changes[].field", &b"[{\"field\": \"f\xff\"}]"[..]),
        (
            "changes[].old",
            b"[{\"field\": \"f\", \"old\": \"\xc0\xaf\"}]",
        ),
        (
            "changes[].new",
            b"[{\"field\": \"f\", \"new\": {\"\xff\": 1}}]",
        ),
    ] {
        bodies.push((place.to_string(), event_with("changes", change)));
    }
    for (what, body) in &bodies {
        let bad_at = body
            .iter()
            .position(|&b| b >= 0x80)
            .expect("a non-ASCII byte");
        let p = problem_of(
            &post_bytes(&d, "application/json", body),
            400,
            "invalid-json",
        );
        assert!(
            detail(&p).contains("invalid unicode code point"),
            "{what}: {p}"
        );
        assert_eq!(p["line"], 1, "{what}: {p}");
        let column = p["column"].as_u64().unwrap() as usize;
        assert!(
            column >= bad_at && column <= bad_at + 4,
            "{what}: column {column}, the bad byte is at {bad_at}: {p}"
        );
    }
    // In NDJSON: the line is named.
    let mut nd = br#"{"action": "a", "actor": "b"}"#.to_vec();
    nd.extend_from_slice(b"\n");
    nd.extend_from_slice(&event_with("description", b"\"caf\xe9\""));
    nd.extend_from_slice(b"\n");
    let p = problem_of(
        &post_bytes(&d, "application/x-ndjson", &nd),
        400,
        "invalid-json",
    );
    assert_eq!(p["line"], 2, "{p}");
    assert!(
        detail(&p).starts_with("line 2 is not JSON: invalid unicode code point"),
        "{p}"
    );
    // Escaped surrogates that make no character.
    for (esc, says) in [
        (r#""\ud800""#, "escape"),
        (r#""\udfff""#, "escape"),
        (r#""\ud800\u0041""#, "escape"),
        (r#""a\ud83d""#, "escape"),
    ] {
        for field in ["actor", "description"] {
            let body = event_with(field, esc.as_bytes());
            let p = problem_of(
                &post_bytes(&d, "application/json", &body),
                400,
                "invalid-json",
            );
            assert!(detail(&p).contains(says), "{field} = {esc}: {p}");
        }
    }
    // A raw NUL (or any raw control character) inside a string is not JSON.
    for raw in [&b"\x00"[..], b"\x01", b"\x1f"] {
        let mut lit = b"\"a".to_vec();
        lit.extend_from_slice(raw);
        lit.extend_from_slice(b"b\"");
        for field in ["actor", "description", "id"] {
            let p = problem_of(
                &post_bytes(&d, "application/json", &event_with(field, &lit)),
                400,
                "invalid-json",
            );
            assert!(detail(&p).contains("control character"), "{field}: {p}");
        }
    }
    // A raw NUL between tokens is not JSON either.
    let p = problem_of(
        &post_bytes(
            &d,
            "application/json",
            b"{\"action\": \"a\",\x00 \"actor\": \"b\"}",
        ),
        400,
        "invalid-json",
    );
    assert_eq!((&p["line"], &p["column"]), (&json!(1), &json!(16)), "{p}");
    assert_eq!(log_last_seq(&d), before, "invalid UTF-8 stored events");

    assert_healthy(&mut d);
    acked.push(assert_ingests(&d, "utf8-after"));
    assert_intact(&d, &acked);
}

#[test]
fn nul_follows_the_event_model() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let mut acked = seed(&d, "nul", 10);
    let before = log_last_seq(&d);

    // NUL as a JSON escape: every checked string field refuses it, naming
    // the field; one batch of one bad event per field stores nothing.
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for (field, kind) in STRING_FIELDS {
        let mut ev = json!({"action": "a", "actor": "b"});
        ev[*field] = json!(format!("{}\u{0}x", valid_for(field)));
        want.push((batch.len(), field.to_string(), *kind));
        batch.push(ev);
    }
    let mut ev = json!({"action": "a", "actor": "b"});
    ev["changes"] = json!([{"field": "st\u{0}atus", "old": 1}]);
    want.push((batch.len(), "changes[0].field".into(), "ident"));
    batch.push(ev);
    let p = problem_of(&d.post(&Value::Array(batch.clone())), 400, "invalid-events");
    let errors = p["errors"].as_array().unwrap();
    assert_eq!(errors.len(), want.len(), "{p}");
    for ((index, field, kind), e) in want.iter().zip(errors) {
        assert_eq!(
            (&e["index"], &e["field"]),
            (&json!(index), &json!(field)),
            "{e}"
        );
        assert_eq!(e["kind"], "invalid_value", "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(field.as_str()), "{e}");
        match *kind {
            "ident" => assert!(m.contains("control character U+0000"), "{e}"),
            "text" => assert!(m.contains("NUL character (U+0000)"), "{e}"),
            _ => {}
        }
    }
    // The same in the raw text form `\u0000`.
    let p = problem_of(
        &post_bytes(
            &d,
            "application/json",
            br#"{"action": "a\u0000", "actor": "b", "description": "\u0000"}"#,
        ),
        400,
        "invalid-events",
    );
    let fields: Vec<&Value> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["field"])
        .collect();
    assert_eq!(fields, [&json!("action"), &json!("description")], "{p}");
    assert_eq!(
        log_last_seq(&d),
        before,
        "a NUL in a checked field stored events"
    );

    // Free-form JSON (metadata keys and values, change values) takes NUL:
    // it round-trips exactly.
    let with_nul = json!({
        "id": "nul-in-json",
        "action": "a",
        "actor": "b",
        "metadata": {"\u{0}": "\u{0}", "k\u{0}ey": ["v\u{0}al", {"\u{0}n": "\u{0}\u{1}\u{1f}"}]},
        "changes": [{"field": "f", "old": "\u{0}", "new": {"a\u{0}": "b\u{0}"}}],
    });
    let (st, _, r) = d.post(&with_nul);
    assert_eq!(st, 201, "{r}");
    let seq = r["events"][0]["seq"].as_u64().unwrap();
    acked.push(Acked {
        id: "nul-in-json".into(),
        seq,
        posted: with_nul.clone(),
    });
    // Also as raw text: the escapes are what is stored and shown.
    let raw_text =
        br#"{"id": "nul-raw", "action": "a", "actor": "b", "metadata": {"a\u0000b": "c\u0000d"}}"#;
    let (st, _, r) = post_bytes(&d, "application/json", raw_text);
    assert_eq!(st, 201, "{r}");
    acked.push(Acked {
        id: "nul-raw".into(),
        seq: r["events"][0]["seq"].as_u64().unwrap(),
        posted: serde_json::from_slice(raw_text).unwrap(),
    });
    wait_indexed(&d, seq + 1);
    let (head, text) = d.get_raw("/v1/events/nul-raw");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        text.contains(r#""metadata":{"a\u0000b":"c\u0000d"}"#),
        "{text}"
    );
    // Reposting exactly what was shown is an idempotent replay.
    let (st, _, r) = d.post(&with_nul);
    assert_eq!((st, &r["replayed"]), (200, &json!(true)), "{r}");

    assert_healthy(&mut d);
    acked.push(assert_ingests(&d, "utf8-after"));
    assert_intact(&d, &acked);
}

// ---------------------------------------------------------------------------
// 6. Deep nesting
// ---------------------------------------------------------------------------

#[test]
fn deeply_nested_json_is_a_400_without_stack_overflow() {
    const LEVELS: usize = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(tmp.path());
    let mut acked = seed(&d, "deep", 10);
    let before = log_last_seq(&d);
    let arrays = |closed: bool| {
        let mut s = "[".repeat(LEVELS);
        if closed {
            s.push_str(&"]".repeat(LEVELS));
        }
        s
    };
    let objects = |closed: bool| {
        let mut s = r#"{"a":"#.repeat(LEVELS);
        if closed {
            s.push('1');
            s.push_str(&"}".repeat(LEVELS));
        }
        s
    };
    let mut bodies: Vec<(String, &str, String)> = Vec::new();
    for closed in [false, true] {
        for (shape, deep) in [("arrays", arrays(closed)), ("objects", objects(closed))] {
            let what = |place: &str| {
                format!(
                    "{LEVELS} levels of {shape} ({}) {place}",
                    if closed { "closed" } else { "open" }
                )
            };
            bodies.push((what("as the body"), "application/json", deep.clone()));
            bodies.push((
                what("in metadata"),
                "application/json",
                format!(r#"{{"action": "a", "actor": "b", "metadata": {{"x": {deep}}}}}"#),
            ));
            bodies.push((
                what("in a change value"),
                "application/json",
                format!(r#"{{"action": "a", "actor": "b", "changes": [{{"field": "f", "old": {deep}}}]}}"#),
            ));
            bodies.push((
                what("on an NDJSON line"),
                "application/x-ndjson",
                format!("{{\"action\": \"a\", \"actor\": \"b\"}}\n{{\"action\": \"a\", \"actor\": \"b\", \"metadata\": {deep}}}\n"),
            ));
        }
    }
    for (what, ctype, body) in &bodies {
        let answer = post_bytes(&d, ctype, body.as_bytes());
        assert_eq!(answer.0, 400, "{what}: {}", answer.2);
        let p = problem_of(&post_bytes(&d, ctype, body.as_bytes()), 400, "invalid-json");
        assert!(
            detail(&p).contains("recursion limit exceeded"),
            "{what}: {p}"
        );
        assert!(p["line"].is_u64() && p["column"].is_u64(), "{what}: {p}");
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "{what}: the daemon died"
        );
    }
    // Within the parser's limit, the event model's: metadata 16 levels deep
    // (itself the first) is accepted, 17 is refused naming the field.
    let nest = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({"a": v});
        }
        v
    };
    let p = problem_of(
        &d.post(&json!({"action": "a", "actor": "b", "metadata": nest(17)})),
        400,
        "invalid-events",
    );
    assert_eq!(p["errors"][0]["field"], "metadata", "{p}");
    assert_eq!(p["errors"][0]["kind"], "too_deep", "{p}");
    let p = problem_of(
        &d.post(&json!({"action": "a", "actor": "b",
                         "changes": [{"field": "f", "new": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}]})),
        400,
        "invalid-events",
    );
    assert_eq!(p["errors"][0]["field"], "changes[0].new", "{p}");
    assert_eq!(log_last_seq(&d), before, "deep nesting stored events");
    let deepest = json!({"id": "deep-16", "action": "a", "actor": "b", "metadata": nest(16)});
    let (st, _, r) = d.post(&deepest);
    assert_eq!(st, 201, "{r}");
    acked.push(Acked {
        id: "deep-16".into(),
        seq: r["events"][0]["seq"].as_u64().unwrap(),
        posted: deepest,
    });
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}

// ---------------------------------------------------------------------------
// 7. Numbers beyond i64 / f64
// ---------------------------------------------------------------------------

#[test]
fn numbers_beyond_i64_and_f64_get_clear_answers_and_read_back_as_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let mut acked = seed(&d, "num", 10);
    let before = log_last_seq(&d);

    // Beyond f64: not JSON Stele can hold, wherever the number is.
    for n in [
        "1e400",
        "-1e400",
        "1e99999999999999999999",
        "-123456789e999",
        "1.5e309",
    ] {
        for (field, literal) in [
            ("metadata", format!(r#"{{"x": {n}}}"#)),
            ("metadata", format!(r#"{{"x": [0, {{"y": {n}}}]}}"#)),
            ("changes", format!(r#"[{{"field": "f", "new": {n}}}]"#)),
            ("risk_score", n.to_string()),
            ("duration_ms", n.to_string()),
        ] {
            let body = event_with(field, literal.as_bytes());
            let p = problem_of(
                &post_bytes(&d, "application/json", &body),
                400,
                "invalid-json",
            );
            assert!(
                detail(&p).contains("number out of range"),
                "{field} = {n}: {p}"
            );
        }
    }
    // The numeric fields: a clear error naming the field.
    for (field, literal, kind) in [
        ("risk_score", "101", "out_of_range"),
        ("risk_score", "-1", "out_of_range"),
        (
            "risk_score",
            "123456789012345678901234567890",
            "out_of_range",
        ),
        ("risk_score", "-9223372036854775809", "out_of_range"),
        ("risk_score", "0.5", "wrong_type"),
        ("risk_score", "1e-7", "wrong_type"),
        ("duration_ms", "18446744073709551616", "out_of_range"),
        ("duration_ms", "1.8446744073709552e19", "out_of_range"),
        (
            "duration_ms",
            "123456789012345678901234567890",
            "out_of_range",
        ),
        ("duration_ms", "-1", "out_of_range"),
        ("duration_ms", "-9223372036854775808", "out_of_range"),
        ("duration_ms", "1.5", "wrong_type"),
    ] {
        let body = event_with(field, literal.as_bytes());
        let p = problem_of(
            &post_bytes(&d, "application/json", &body),
            400,
            "invalid-events",
        );
        assert_eq!(
            (&p["errors"][0]["field"], &p["errors"][0]["kind"]),
            (&json!(field), &json!(kind)),
            "{field} = {literal}: {p}"
        );
        let m = p["errors"][0]["message"].as_str().unwrap();
        assert!(m.contains(field), "{p}");
    }
    assert_eq!(
        log_last_seq(&d),
        before,
        "an out-of-range number stored events"
    );

    // What is accepted reads back as stored: integers within i64/u64
    // exactly, others as the nearest double (README: metadata integers
    // beyond u64 are kept as floats), -0 as -0.0, underflow as 0.0.
    let posted = br#"{"id": "numbers", "action": "a", "actor": "b",
        "risk_score": 1e2, "duration_ms": 18446744073709551615,
        "metadata": {
            "u64max": 18446744073709551615, "i64min": -9223372036854775808,
            "beyond_u64": 18446744073709551616, "below_i64": -9223372036854775809,
            "huge_int": 123456789012345678901234567890,
            "neg_huge_int": -123456789012345678901234567890,
            "negzero": -0, "negzero_f": -0.0, "underflow": 1e-400, "zero_exp": 0e99999999999999999999,
            "f64max": 1.7976931348623157e308, "f64min_sub": 5e-324, "tenth": 0.1,
            "exp": 1E+2, "many_digits": 3.14159265358979323846264338327950288419716939937510
        },
        "changes": [{"field": "n", "old": -0, "new": 123456789012345678901234567890}]}"#;
    let (st, _, r) = post_bytes(&d, "application/json", posted);
    assert_eq!(st, 201, "{r}");
    let seq = r["events"][0]["seq"].as_u64().unwrap();
    wait_indexed(&d, seq);
    let (head, text) = d.get_raw("/v1/events/numbers");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["risk_score"], json!(100), "{text}");
    assert_eq!(view["duration_ms"], json!(u64::MAX), "{text}");
    let want = json!({
        "u64max": u64::MAX, "i64min": i64::MIN,
        "beyond_u64": 18_446_744_073_709_551_616.0, "below_i64": -9_223_372_036_854_775_809.0,
        "huge_int": 1.234_567_890_123_456_8e29, "neg_huge_int": -1.234_567_890_123_456_8e29,
        "negzero": -0.0, "negzero_f": -0.0, "underflow": 0.0, "zero_exp": 0.0,
        "f64max": f64::MAX, "f64min_sub": 5e-324, "tenth": 0.1,
        "exp": 100.0, "many_digits": std::f64::consts::PI,
    });
    assert_eq!(view["metadata"], want, "{text}");
    // The stored text, exactly: integers as integers, the rest as doubles.
    for piece in [
        r#""u64max":18446744073709551615"#,
        r#""i64min":-9223372036854775808"#,
        r#""huge_int":1.2345678901234568e+29"#,
        r#""negzero":-0.0"#,
        r#""underflow":0.0"#,
        r#""f64max":1.7976931348623157e+308"#,
        r#""f64min_sub":5e-324"#,
        r#""tenth":0.1"#,
    ] {
        assert!(text.contains(piece), "{piece} not in {text}");
    }
    assert_eq!(
        view["changes"],
        json!([{"field": "n", "old": -0.0, "new": 1.234_567_890_123_456_8e29}])
    );
    // The view is a fixed point: posting it again is a replay of the same seq.
    let mut again = view.clone();
    let obj = again.as_object_mut().unwrap();
    for server_stamped in ["seq", "received_at", "ingested_by", "client_addr"] {
        obj.remove(server_stamped);
    }
    let (st, _, r) = d.post(&again);
    assert_eq!(
        (st, &r),
        (
            200,
            &json!({"events": [{"id": "numbers", "seq": seq}], "replayed": true})
        )
    );
    acked.push(Acked {
        id: "numbers".into(),
        seq,
        posted: again,
    });
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}

// ---------------------------------------------------------------------------
// 8. Duplicate keys
// ---------------------------------------------------------------------------

#[test]
fn duplicate_json_keys_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start(tmp.path());
    let acked = seed(&d, "dup", 10);
    let before = log_last_seq(&d);
    let cases: &[(&str, &str)] = &[
        (
            r#"{"id": "twice-1", "action": "a", "actor": "alice", "actor": "mallory"}"#,
            "actor",
        ),
        (
            r#"{"id": "twice-2", "id": "twice-3", "action": "a", "actor": "b"}"#,
            "id",
        ),
        (
            r#"{"id": "twice-4", "action": "a", "actor": "b", "action": "a"}"#,
            "action",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"k": 1}, "metadata": {"k": 2}}"#,
            "metadata",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"k": 1, "k": 2}}"#,
            "k",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"k": 1, "k": 1}}"#,
            "k",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"o": [{"x": 1, "y": 2, "x": 3}]}}"#,
            "x",
        ),
        (
            r#"{"action": "a", "actor": "b", "metadata": {"\u00e9": 1, "é": 2}}"#,
            "é",
        ),
        (
            r#"{"action": "a", "actor": "b", "changes": [{"field": "f", "field": "g"}]}"#,
            "field",
        ),
        (
            r#"{"action": "a", "actor": "b", "changes": [{"field": "f", "new": {"v": 1, "v": 1}}]}"#,
            "v",
        ),
        (
            r#"[{"action": "a", "actor": "b"}, {"action": "a", "actor": "b", "tenant": "x", "tenant": "y"}]"#,
            "tenant",
        ),
    ];
    for (body, key) in cases {
        let p = problem_of(
            &post_bytes(&d, "application/json", body.as_bytes()),
            400,
            "invalid-json",
        );
        assert!(
            detail(&p).contains(&format!("duplicate key {}", json!(key))),
            "{body}: {p}"
        );
        assert_eq!(p["line"], 1, "{body}: {p}");
        assert!(p["column"].as_u64().unwrap() > 1, "{body}: {p}");
    }
    // NDJSON: the line is named.
    let nd = "{\"action\": \"a\", \"actor\": \"b\"}\n{\"action\": \"a\", \"actor\": \"b\", \"ip\": \"10.0.0.1\", \"ip\": \"10.0.0.2\"}\n";
    let p = problem_of(
        &post_bytes(&d, "application/x-ndjson", nd.as_bytes()),
        400,
        "invalid-json",
    );
    assert_eq!(p["line"], 2, "{p}");
    assert!(detail(&p).contains(r#"duplicate key "ip""#), "{p}");
    // serde_json's private raw-value key would be stored as something else
    // than what is shown: refused too.
    let p = problem_of(
        &post_bytes(
            &d,
            "application/json",
            br#"{"action": "a", "actor": "b", "metadata": {"x": {"$serde_json::private::RawValue": "[1,2]"}}}"#,
        ),
        400,
        "invalid-json",
    );
    assert!(detail(&p).contains("is reserved"), "{p}");
    assert_eq!(log_last_seq(&d), before, "a duplicate key stored events");
    for id in ["twice-1", "twice-2", "twice-3", "twice-4"] {
        assert_eq!(d.get(&format!("/v1/events/{id}")).0, 404, "{id}");
    }
    // Keys that differ (by case, by one character) are distinct.
    let (st, _, r) = d.post(&json!({"id": "dup-ok", "action": "a", "actor": "b", "metadata": {"k": 1, "K": 2, "k ": 3}}));
    assert_eq!(st, 201, "{r}");
    assert_healthy(&mut d);
    assert_intact(&d, &acked);
}

// ---------------------------------------------------------------------------
// 9. Streams that are never read
// ---------------------------------------------------------------------------

/// Peak RSS (VmHWM) of the daemon while 20,000 events of about 1 KB are
/// ingested with 16 live streams whose clients never read (a 4 KiB receive
/// buffer each). Measured in this debug build on the 2-core VM: 87-91 MiB
/// after start and seeding; the same ingest without streams peaks at 148-167
/// MiB; with the 16 stalled streams 206-258 MiB (six runs, alone and with the
/// other tests of this file). Before streams read the log in chunks of at most
/// 64 KiB with 4 in flight and 4 reads at a time, the peak was 634-664 MiB
/// (512 events per chunk and 16 chunks in flight: about 30 MiB per stalled
/// stream of 1 KB events, and by the same arithmetic up to about 2 GiB per
/// stream for events of the largest size). The bound is about 1.5x the
/// measured peak and well below the old one.
const PEAK_KIB_STALLED_STREAMS: u64 = 400 * 1024;

#[test]
fn streams_that_are_never_read_cost_bounded_memory_and_catch_up_without_gaps() {
    const STALLED: usize = 16;
    const BATCHES: usize = 20;
    const PER_BATCH: usize = 1000;
    let tmp = tempfile::tempdir().unwrap();
    // Stalled for the whole test: longer than the ingest takes (the next
    // test shows what the limit does).
    let mut d = Daemon::start_with(tmp.path(), &["--write-stall-timeout-secs", "600"]);
    let acked = seed(&d, "sse", 10);
    let pid = d.child.id();
    let idle = memory_kib(pid);
    let addr: SocketAddrV4 = d.addr.parse().unwrap();

    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|_| {
            let mut s = connect_raw(addr, Some(4096), false);
            s.write_all(b"GET /v1/stream HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    assert!(
        wait_metric(
            &d,
            &format!("stele_streams_open {STALLED}"),
            Duration::from_secs(20)
        ),
        "the streams did not open"
    );

    // 20,000 events of about 1 KB, while the streams are not read; other
    // clients are served meanwhile.
    let started = Instant::now();
    let mut seqs = Vec::new();
    let mut worst = Duration::ZERO;
    for b in 0..BATCHES {
        let mut body = Vec::new();
        for i in 0..PER_BATCH {
            let ev = json!({"id": format!("bulk-{b}-{i}"), "action": "bulk", "actor": "loader",
                            "description": "d".repeat(1000)});
            body.extend_from_slice(ev.to_string().as_bytes());
            body.push(b'\n');
        }
        let (st, _, r) = post_bytes(&d, "application/x-ndjson", &body);
        assert_eq!(st, 201, "batch {b}: {r}");
        seqs.extend(
            r["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap()),
        );
        let t = Instant::now();
        let (st, _, v) = d.get(&format!("/v1/events/{}", acked[b % acked.len()].id));
        assert_eq!(st, 200, "{v}");
        worst = worst.max(t.elapsed());
        worst = worst
            .max(healthz_within(&d.addr, Duration::from_secs(5)).expect("/healthz not served"));
    }
    let ingested = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (rss, hwm) = memory_kib(pid);
    // The stalled streams are still open: a stream is not dropped for being
    // behind (it reads the log by seq and catches up when read again).
    let (_, m) = d.get_raw("/metrics");
    assert!(
        m.contains(&format!("\nstele_streams_open {STALLED}\n")),
        "{m}"
    );

    // Read one of them now: every event, in order, no gap, no duplicate.
    let s = &mut stalled[0];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let last = *seqs.last().unwrap();
    let mut got: Vec<u64> = Vec::with_capacity(seqs.len());
    let mut pending = String::new();
    let mut buf = vec![0u8; 256 * 1024];
    let read_started = Instant::now();
    while got.last() != Some(&last) {
        assert!(
            read_started.elapsed() < Duration::from_secs(40),
            "stream stalled at {:?}",
            got.last()
        );
        let n = s.read(&mut buf).expect("the stream was closed or stalled");
        assert!(n > 0, "the stream ended after {} events", got.len());
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        let cut = pending.rfind('\n').map_or(0, |i| i + 1);
        for line in pending[..cut].lines() {
            if let Some(id) = line.strip_prefix("id: ") {
                got.push(id.trim().parse().unwrap());
            }
        }
        pending.drain(..cut);
    }
    assert_eq!(got, seqs, "the stream skipped or repeated events");
    drop(stalled);
    eprintln!(
        "stalled streams: {STALLED} unread while {} events were ingested in {ingested:?}; \
         others served in at most {worst:?}; RSS idle {} MiB, after {} MiB, VmHWM {} MiB \
         (bound {} MiB); one stream then read {} events in {:?}",
        seqs.len(),
        mib(idle.0),
        mib(rss),
        mib(hwm),
        mib(PEAK_KIB_STALLED_STREAMS),
        got.len(),
        read_started.elapsed()
    );
    assert!(
        worst < Duration::from_secs(2),
        "others waited {worst:?} while streams were stalled"
    );
    assert!(
        hwm < PEAK_KIB_STALLED_STREAMS,
        "peak RSS {} MiB with {STALLED} stalled streams, bound {} MiB",
        mib(hwm),
        mib(PEAK_KIB_STALLED_STREAMS)
    );
    assert_healthy(&mut d);
    let mut acked = acked;
    acked.push(assert_ingests(&d, "sse-after"));
    assert_intact(&d, &acked);
}

/// Waits until `/metrics` has the line `line`.
pub(crate) fn wait_metric(d: &impl Served, line: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let (_, m) = d.get_raw("/metrics");
        if m.contains(&format!("\n{line}\n")) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Posts `batches` NDJSON batches of 1,000 events of about 1 KB.
pub(crate) fn ingest_bulk(d: &impl Served, tag: &str, batches: usize) -> u64 {
    let mut last = 0;
    for b in 0..batches {
        let mut body = Vec::new();
        for i in 0..1000 {
            let ev = json!({"id": format!("{tag}-{b}-{i}"), "action": "bulk", "actor": "loader",
                            "description": "d".repeat(1000)});
            body.extend_from_slice(ev.to_string().as_bytes());
            body.push(b'\n');
        }
        let (st, _, r) = post_bytes(d, "application/x-ndjson", &body);
        assert_eq!(st, 201, "batch {b}: {r}");
        last = r["events"][999]["seq"].as_u64().unwrap();
    }
    last
}

#[test]
fn a_stream_nobody_reads_is_closed_after_write_stall_timeout_and_gives_back_its_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Server::start_with_limits(
        tmp.path(),
        stele::config::Limits {
            streams_max: 1,
            write_stall_timeout_secs: 2,
            ..Default::default()
        },
    );
    let acked = seed(&d, "stall", 10);
    let addr: SocketAddrV4 = d.addr.parse().unwrap();
    let mut stalled = connect_raw(addr, Some(4096), false);
    stalled
        .write_all(b"GET /v1/stream?from_seq=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(
        wait_metric(&d, "stele_streams_open 1", Duration::from_secs(20)),
        "the stream did not open"
    );
    // Its slot is taken: the next stream is refused.
    let r = get_with(&d.addr, "/v1/stream", &[])
        .reply()
        .expect("an answer");
    problem(&r, 503, "too-many-streams");

    // 10 MB of events: far more than the socket buffers, hyper's buffer and
    // the stream's chunks in flight hold, so writes to the client stop.
    let last = ingest_bulk(&d, "stall-bulk", 10);
    let started = Instant::now();
    assert!(
        wait_metric(
            &d,
            "stele_connections_write_stalled_total 1",
            Duration::from_secs(30)
        ),
        "the stalled stream was not closed"
    );
    let closed_after = started.elapsed();
    assert!(
        wait_metric(&d, "stele_streams_open 0", Duration::from_secs(5)),
        "the stream slot was not given back"
    );
    // The client sees a cut stream: what was buffered, then the end.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = stalled.read_to_end(&mut got); // EOF or a reset
    let text = String::from_utf8_lossy(&got);
    let seen = text.lines().filter(|l| l.starts_with("id: ")).count() as u64;
    assert!(
        seen < last,
        "the stream was not cut ({seen} of {last} events)"
    );
    eprintln!(
        "write stall: closed {closed_after:?} after the ingest ended; the client had \
         {seen} of {last} events buffered"
    );

    // The slot serves a new stream, which starts where the old one was cut.
    let mut fresh = TcpStream::connect(&d.addr).unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    fresh
        .write_all(b"GET /v1/stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    fresh.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    drop(fresh);

    // A slow client that keeps reading is never cut (tests in src/stall.rs);
    // a normal one is served; everything acknowledged is intact.
    assert_healthy(&mut d);
    let mut acked = acked;
    acked.push(assert_ingests(&d, "stall-after"));
    assert_intact(&d, &acked);
}
