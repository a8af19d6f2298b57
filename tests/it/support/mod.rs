//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod daemon;
pub mod forge;
pub mod http;
pub mod inproc;
pub mod proxy;
pub mod s3;
pub mod time;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use stele::clock::ManualClock;
use stele::event::Event;
use stele::log::{Log, LogConfig};
use stele::testkit::EventGen;

/// 2026-11-23T23:59:00Z in unix microseconds: one minute before a UTC midnight.
pub const BEFORE_MIDNIGHT: i64 = 1_795_478_340_000_000;

/// The `stele` binary built for this test run, or the one `$STELE_TEST_BIN`
/// names (to run a suite against another build, e.g. to see a new test fail
/// on the code before a fix).
pub fn stele() -> Command {
    match std::env::var_os("STELE_TEST_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_stele")),
    }
}

/// Every variable the configuration reads: cleared so that the caller's
/// environment cannot change what a test sees.
pub const CONFIG_VARS: &[&str] = &[
    "STELE_CONFIG",
    "STELE_LISTEN",
    "STELE_DATA_DIR",
    "STELE_LOG_SEGMENT_BYTES_MAX",
    "STELE_LIMITS_BODY_BYTES_MAX",
    "STELE_LIMITS_CONNECTIONS_MAX",
    "STELE_LIMITS_REQUEST_TIMEOUT_SECS",
    "STATE_DIRECTORY",
];

/// [`stele`] without any configuration variable of the caller's environment.
pub fn stele_clean_env() -> Command {
    let mut c = stele();
    for v in CONFIG_VARS {
        c.env_remove(v);
    }
    c
}

/// A log in `dir` with a manual clock and the given segment size cap.
pub fn open(dir: &Path, clock: &Arc<ManualClock>, segment_bytes_max: u64) -> Log {
    Log::open(
        dir,
        LogConfig {
            segment_bytes_max,
            ..LogConfig::default()
        },
        clock.clone(),
    )
    .expect("open log")
}

/// `n` realistic events of about `size` bytes each.
pub fn events(gen: &mut EventGen, n: usize, size: usize) -> Vec<Event> {
    (0..n).map(|_| gen.sized(size)).collect()
}

/// The segment files of a data directory, in log order.
pub fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    stele::log::list_segments(&data_dir.join("segments"))
        .expect("list segments")
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Copies a directory tree (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
            make_writable(&dest);
        }
    }
}

/// Sealed segments are 0444; tests that tamper with them need write access.
pub fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Runs `stele verify` on `paths`; returns (exit code, stdout).
pub fn verify(paths: &[&Path]) -> (i32, String) {
    let out = stele()
        .arg("verify")
        .args(paths)
        .output()
        .expect("run stele verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A served `stele` as the HTTP tests see it: the real binary
/// ([`daemon::Daemon`]) or in-process ([`inproc::Server`]), for helpers
/// shared by tests of both kinds.
pub trait Served {
    fn addr(&self) -> &str;

    /// One HTTP/1.1 request; returns (status, content type, body).
    fn call(&self, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, String, Value) {
        daemon::call_at(self.addr(), method, path, ctype, body)
    }

    fn get(&self, path: &str) -> (u16, String, Value) {
        self.call("GET", path, "application/json", b"")
    }

    fn post(&self, body: &Value) -> (u16, String, Value) {
        let body = body.to_string();
        self.call("POST", "/v1/events", "application/json", body.as_bytes())
    }

    /// GET returning the raw head and the (de-chunked) body text.
    fn get_raw(&self, path: &str) -> (String, String) {
        let r = http::send(self.addr(), "GET", path, &[], http::Body::None);
        (r.head.clone(), String::from_utf8(r.body).unwrap())
    }

    /// Why it is not running any more (`None` while it runs).
    fn exit_report(&mut self) -> Option<String>;

    /// What of it panicked, if anything did.
    fn panic_report(&self) -> Option<String>;
}

impl Served for daemon::Daemon {
    fn addr(&self) -> &str {
        &self.addr
    }

    fn exit_report(&mut self) -> Option<String> {
        let status = self.child.try_wait().unwrap()?;
        Some(format!("the daemon exited ({status}): {}", self.log_text()))
    }

    fn panic_report(&self) -> Option<String> {
        let log = self.log_text();
        log.contains("panicked").then_some(log)
    }
}

impl Served for inproc::Server {
    fn addr(&self) -> &str {
        &self.addr
    }

    fn exit_report(&mut self) -> Option<String> {
        self.exited()
            .then(|| format!("the server thread ended: {:?}", self.panics()))
    }

    fn panic_report(&self) -> Option<String> {
        let panics = self.panics();
        (!panics.is_empty()).then(|| panics.join("\n"))
    }
}
