//! The systemd integration: the unit passes `systemd-analyze verify`, its
//! sandbox scores as `systemd-analyze security` says it does, the sysusers
//! file makes the `stele` user, and `stele serve` speaks the notification
//! protocol (READY=1 once it answers, watchdog pings, STOPPING=1) to a
//! NOTIFY_SOCKET the test binds, without any systemd running; and it raises
//! its soft limit of open files to the hard one, as systemd advises.
//!
//! systemd's tools are required, not optional: `.ci/run` installs them.

use crate::support::http::{send, Body};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the unit expects the binary (`ExecStart=`).
const INSTALLED_BINARY: &str = "/usr/local/bin/stele";
/// The highest `systemd-analyze security` exposure accepted (measured: 1.2
/// with systemd 252; 0 is a fully sandboxed unit, 10 an unprotected one).
const EXPOSURE_MAX: f64 = 1.5;
/// What the unit deliberately leaves exposed, and why (anything else
/// `systemd-analyze security` flags fails the test).
const ACCEPTED_EXPOSURES: &[(&str, &str)] = &[
    ("PrivateNetwork=", "a network service"),
    ("RestrictAddressFamilies=~AF_(INET|INET6)", "the HTTP API"),
    ("RestrictAddressFamilies=~AF_UNIX", "NOTIFY_SOCKET"),
    (
        "IPAddressDeny=",
        "clients depend on the listen address, set by the operator",
    ),
    (
        "PrivateUsers=",
        "fails to start where user namespaces are unavailable",
    ),
    (
        "RootDirectory=/RootImage=",
        "runs from the host's /usr/local/bin",
    ),
    ("DeviceAllow=", "char-rtc:r, added by ProtectClock=yes"),
    (
        "UMask=",
        "0027: group stele may read the data (verify, backup)",
    ),
];

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A systemd tool from PATH (or /usr/bin, /bin); fails the test, never skips
/// it, when the tool is missing.
fn systemd_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing: run .ci/run, which installs systemd's tools \
                 (on Debian: apt-get install --no-install-recommends systemd)"
            )
        })
}

/// Runs a systemd tool with plain, untranslated, unpaged output.
fn run_systemd_tool(name: &str, args: &[&str]) -> Output {
    Command::new(systemd_tool(name))
        .args(args)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// systemd/stele.service copied into `dir` with `ExecStart=` pointing at
/// the binary under test (`systemd-analyze verify` checks that every Exec
/// command exists).
fn unit_for_test(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repo_file("systemd/stele.service")).unwrap();
    assert!(
        unit.contains(&format!("ExecStart={INSTALLED_BINARY} serve")),
        "the unit should run {INSTALLED_BINARY} serve (README's install section copies it there)"
    );
    let unit = unit.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_stele"));
    let path = dir.join("stele.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let out = run_systemd_tool("systemd-analyze", &["verify", unit.to_str().unwrap()]);
    let said = text(&out);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed ({}):\n{said}",
        out.status
    );
    // Other units on the machine may draw remarks; ours must draw none.
    let about_us: Vec<&str> = said.lines().filter(|l| l.contains("stele")).collect();
    assert!(
        about_us.is_empty(),
        "systemd-analyze verify has remarks about the unit:\n{}",
        about_us.join("\n")
    );
}

#[test]
fn unit_sandbox_exposure_is_low() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let unit = unit.to_str().unwrap();
    let out = run_systemd_tool("systemd-analyze", &["security", "--offline=yes", unit]);
    let said = text(&out);
    assert!(
        out.status.success(),
        "systemd-analyze security failed ({}):\n{said}",
        out.status
    );
    let exposure: f64 = said
        .lines()
        .find_map(|l| l.split("Overall exposure level for stele.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{said}"));
    println!("systemd-analyze security: overall exposure {exposure}");
    assert!(
        exposure <= EXPOSURE_MAX,
        "the unit's exposure is {exposure}, above {EXPOSURE_MAX}:\n{said}"
    );

    let out = run_systemd_tool(
        "systemd-analyze",
        &["security", "--offline=yes", "--json=short", unit],
    );
    assert!(out.status.success(), "{}", text(&out));
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON from --json=short");
    let unexpected: Vec<String> = checks
        .iter()
        .filter(|c| c["set"] == Value::Bool(false))
        .filter(|c| c["exposure"].as_str().is_some_and(|e| e != "0.0"))
        .map(|c| c["name"].as_str().unwrap_or("?").to_string())
        .filter(|n| !ACCEPTED_EXPOSURES.iter().any(|(a, _)| a == n))
        .collect();
    assert!(
        unexpected.is_empty(),
        "systemd-analyze security flags settings the unit should set (or accept, with a \
         reason, in ACCEPTED_EXPOSURES): {unexpected:?}"
    );
}

#[test]
fn sysusers_file_makes_the_stele_user() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let sysusers = repo_file("systemd/stele.sysusers");
    let out = run_systemd_tool(
        "systemd-sysusers",
        &[
            &format!("--root={}", root.path().display()),
            sysusers.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "systemd-sysusers failed:\n{}",
        text(&out)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("stele:"))
        .unwrap_or_else(|| panic!("no stele user in /etc/passwd:\n{passwd}"))
        .split(':')
        .collect();
    let uid: u32 = user[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "a system uid, not {uid}");
    assert_eq!(user[5], "/var/lib/stele", "home: the state directory");
    assert!(user[6].ends_with("nologin"), "no login shell: {}", user[6]);
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(
        group.lines().any(|l| l.starts_with("stele:")),
        "no stele group:\n{group}"
    );
}

/// One HTTP/1.1 GET; (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let r = send(addr, "GET", path, &[], Body::None);
    (r.status, r.text())
}

/// Appends `n` events with ids `sd-1` … `sd-n` offline (no indexes yet).
fn append_offline(data: &Path, n: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["append", "--batch", "500", "--data-dir"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for i in 1..=n {
        writeln!(
            stdin,
            r#"{{"id":"sd-{i}","action":"login","actor":"user-{i}","tenant":"acme","description":"session {i} opened"}}"#
        )
        .unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "stele append failed");
}

/// Datagrams received on the test's NOTIFY_SOCKET, each with its arrival.
struct Notifications {
    rx: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Notifications {
    fn listen(path: &Path) -> Notifications {
        let sock = UnixDatagram::bind(path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if tx.send((Instant::now(), msg)).is_err() {
                    break;
                }
            }
        });
        Notifications {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a datagram with the line `line`; returns it.
    fn wait_for(&mut self, line: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((at, msg)) => {
                    self.seen.push((at, msg.clone()));
                    if msg.lines().any(|l| l == line) {
                        return msg;
                    }
                }
                Err(_) => panic!(
                    "no {line} within {within:?}; received: {:?}",
                    self.seen.iter().map(|(_, m)| m).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Every datagram that arrives during `d`.
    fn collect(&mut self, d: Duration) -> Vec<String> {
        let deadline = Instant::now() + d;
        let mut got = Vec::new();
        while let Ok((at, msg)) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push((at, msg.clone()));
            got.push(msg);
        }
        got
    }
}

/// The daemon under test, killed if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[test]
fn serve_speaks_the_notify_protocol() {
    const EVENTS: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A log without indexes: READY=1 must wait for the rebuild. (`stele
    // append` keeps the indexes up to date, so they are removed.)
    append_offline(&data, EVENTS);
    std::fs::remove_dir_all(data.join("index")).unwrap();
    let sock_path = dir.path().join("notify.sock");
    let mut notes = Notifications::listen(&sock_path);
    // A free port known in advance, so that the test can connect the moment
    // READY=1 arrives (with port 0 it would first wait for the log line).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();

    // As systemd does: WATCHDOG_PID is the service's pid, known only once
    // it runs, so a shell sets it and execs stele in its place.
    let mut child = KillOnDrop(
        Command::new("/bin/sh")
            .args([
                "-c",
                r#"WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@""#,
                env!("CARGO_BIN_EXE_stele"),
                "serve",
                "--listen",
                &addr,
                "--data-dir",
            ])
            .arg(&data)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "200000")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stele serve"),
    );
    let pid = child.0.id();
    let stderr = child.0.stderr.take().unwrap();
    let logger = std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect();
        lines.join("\n")
    });

    let status = notes.wait_for(
        "STATUS=Recovering the log and catching up the indexes.",
        Duration::from_secs(60),
    );
    assert!(
        !has_line(&status, "READY=1"),
        "READY=1 with the recovery status: {status:?}"
    );
    let ready = notes.wait_for("READY=1", Duration::from_secs(120));
    // At once: the listener is bound and the indexes hold the whole log.
    let (code, body) = get(&addr, "/healthz");
    assert_eq!(code, 200, "/healthz right after READY=1: {body}");
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "/readyz right after READY=1: {body}");
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        state["state"]["indexed_seq"], EVENTS as u64,
        "READY=1 before the indexes caught up: {body}"
    );
    let (code, body) = get(&addr, &format!("/v1/events/sd-{EVENTS}"));
    assert_eq!(
        code, 200,
        "the last event by id right after READY=1: {body}"
    );
    assert!(
        has_line(&ready, &format!("MAINPID={pid}")),
        "READY=1 should carry MAINPID={pid}: {ready:?}"
    );
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=Serving on ")),
        "READY=1 should carry a STATUS: {ready:?}"
    );

    // WATCHDOG_USEC=200000: a ping every 100 ms from the accept loop.
    let during = notes.collect(Duration::from_secs(1));
    let pings = during.iter().filter(|m| has_line(m, "WATCHDOG=1")).count();
    assert!(pings >= 3, "{pings} watchdog pings in 1 s: {during:?}");

    // SIGTERM: STOPPING=1, no ping after it, exit 0.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    let stopping = notes.wait_for("STOPPING=1", Duration::from_secs(10));
    assert!(
        stopping.lines().any(|l| l.starts_with("STATUS=Stopping")),
        "STOPPING=1 should carry a STATUS: {stopping:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "stele did not exit within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let log = logger.join().unwrap();
    assert!(exit.success(), "stele exited with {exit}:\n{log}");
    assert!(log.contains(&format!("Listening on {addr}")), "{log}");
    let after = notes.collect(Duration::from_millis(300));
    assert!(
        !after.iter().any(|m| has_line(m, "WATCHDOG=1")),
        "watchdog pings after STOPPING=1: {after:?}"
    );
}

/// The (soft, hard) "Max open files" of process `pid`, from /proc.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files line in {limits}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn serve_raises_its_soft_open_files_limit_to_the_hard_one() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut ours = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut ours) },
        0
    );
    assert!(
        ours.rlim_max > 256,
        "the hard limit here is {}",
        ours.rlim_max
    );
    let mut cmd = crate::support::stele();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path());
    // SAFETY: setrlimit is async-signal-safe; it only lowers the child's soft limit.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = 256;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut daemon = crate::support::daemon::Daemon::spawn(cmd);
    let (soft, hard) = open_files_limits(daemon.child.id());
    assert_eq!(hard, ours.rlim_max);
    assert_eq!(soft, hard, "the soft limit stayed below the hard one");
    assert!(
        daemon
            .log_text()
            .contains("Open files: soft limit raised from 256"),
        "{}",
        daemon.log_text()
    );
    daemon.terminate(Duration::from_secs(10));
}
