//! Slow and many clients: heads written a byte at a time are cut after
//! `header_read_timeout_secs` while others are served, and ten thousand
//! connections at once are held to `connections_max` under a memory bound, with
//! service resuming when they go (the real binary: `/proc/<pid>`).

use super::*;

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

/// A burst the daemon can hold is held at once: the kernel queues the
/// completed handshakes for the accept loop (the listen backlog,
/// `server::LISTEN_BACKLOG`) instead of dropping them, which would leave
/// those clients to resend their SYN a second later (then 3 s, 7 s…).
#[test]
fn a_burst_of_two_thousand_connections_is_held_within_a_second() {
    const BURST: usize = 2000;
    if let Err(why) = raise_nofile(BURST as u64 + 1000) {
        eprintln!("SKIPPED a_burst_of_two_thousand_connections: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(tmp.path(), &[]);
    let pid = d.child.id();
    let base = settled_sockets(pid);
    let addr: SocketAddrV4 = d.addr.parse().unwrap();
    let started = Instant::now();
    let conns: Vec<TcpStream> = (0..BURST).map(|_| connect_raw(addr, None, true)).collect();
    // A dropped handshake is resent after 1 s: all held before that means
    // none was dropped.
    while sockets_of(pid) - base < BURST {
        assert!(
            started.elapsed() < Duration::from_millis(950),
            "{} of {BURST} connections held {:?} after the burst began: the kernel dropped \
             handshakes (a short listen backlog)",
            sockets_of(pid) - base,
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(conns);
}
