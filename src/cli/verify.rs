//! `stele verify`: segment files, the digest chain and checkpoints checked
//! offline, and the report printed. Reads only; never opens the log for
//! writing and never takes `DATA_DIR/LOCK`, so it runs beside `stele serve`
//! (nothing it does needs the lock: it repairs nothing).
//!
//! Beside a running daemon the active segment grows while it is checked: a
//! write can land behind the check and in front of it at once, which looks
//! like a bad frame followed by a valid one. So when a daemon holds a
//! checked directory's LOCK and the check finds damage, it is run again (at
//! most [`LIVE_CHECKS_MAX`] times, [`LIVE_RECHECK_DELAY`] apart): damage
//! that is there stays and is reported; a write caught half-way does not.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How many times a directory a daemon is writing is checked before its
/// damage is reported.
const LIVE_CHECKS_MAX: u32 = 3;
/// The pause between those checks.
const LIVE_RECHECK_DELAY: Duration = Duration::from_millis(200);

pub(crate) fn verify(
    paths: Vec<PathBuf>,
    quiet: bool,
    public_keys: &[String],
    checkpoints: &[PathBuf],
    endpoint: Option<String>,
    witness: Option<(String, super::archive::Access)>,
) -> ExitCode {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("data")]
    } else {
        paths
    };
    let mut opts = stele::verify::Options::default();
    for k in public_keys {
        match stele::seal::digest::parse_public_key(k) {
            Ok(key) => opts.public_keys.push(key),
            Err(e) => {
                eprintln!("stele verify: --public-key: {e}");
                return ExitCode::from(2);
            }
        }
    }
    for f in checkpoints {
        match stele::seal::checkpoint::read_file(f) {
            Ok(cps) => opts
                .checkpoints
                .extend(cps.into_iter().map(|cp| (f.clone(), cp))),
            Err(e) => {
                eprintln!("stele verify: --checkpoint: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // The archive as a witness: its newest checkpoint, and its segments.
    let mut archived = None;
    if let Some((url, access)) = &witness {
        if paths.len() != 1 {
            eprintln!("stele verify: --archive checks one data directory");
            return ExitCode::from(2);
        }
        match super::archive::witness(url, access) {
            Ok(w) => {
                if let Some(cp) = w.newest_checkpoint.clone() {
                    opts.checkpoints.push(cp);
                }
                archived = Some(w);
            }
            Err(e) => {
                eprintln!("stele verify: --archive: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let archives: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with("s3://"))
        .collect();
    match archives.as_slice() {
        [] => {}
        [url] if paths.len() == 1 && checkpoints.is_empty() => {
            let access = super::archive::Access { endpoint };
            return super::archive::verify(url, &access, &opts, quiet);
        }
        _ => {
            eprintln!(
                "stele verify: an s3:// archive is verified alone (no other path, no \
                 --checkpoint: its own checkpoints are checked)"
            );
            return ExitCode::from(2);
        }
    }
    let live = paths.iter().any(|p| daemon_writes(p));
    let mut checks = 0;
    let report = loop {
        checks += 1;
        let report = match stele::verify::verify_paths_with(&paths, &opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("stele verify: cannot read {}: {e}", display_paths(&paths));
                return ExitCode::from(2);
            }
        };
        if report.intact() || !live || checks >= LIVE_CHECKS_MAX {
            break report;
        }
        std::thread::sleep(LIVE_RECHECK_DELAY);
    };
    let mut report = report;
    if let Some(w) = &archived {
        w.check(&paths[0], &mut report);
    }
    let mut out = std::io::stdout().lock();
    if !quiet {
        for s in &report.segments {
            let _ = writeln!(
                out,
                "{}: {} events from seq {}, {}, last hash {}",
                s.path.display(),
                s.count,
                s.first_seq,
                if s.sealed { "sealed" } else { "active" },
                s.last_hash
            );
        }
    }
    for f in &report.findings {
        let _ = writeln!(out, "{}{f}", if f.fatal { "DAMAGED: " } else { "note: " });
    }
    for c in report.digests.iter().filter(|_| !quiet) {
        let _ = match c.days {
            None => writeln!(
                out,
                "digests: none in {} (daily digests are off for this log)",
                c.dir.display()
            ),
            Some((first, last)) => writeln!(
                out,
                "digests: {} signed days {first}..={last}, up to seq {}; {}",
                c.digests,
                c.last_seq.unwrap_or(0),
                if c.keys_given {
                    "signatures checked with the given public key"
                } else {
                    "signatures NOT checked against a trusted key (pass --public-key)"
                }
            ),
        };
    }
    match report.checkpoints.as_slice() {
        _ if quiet => {}
        [] => {}
        few @ ([_] | [_, _] | [_, _, _]) => {
            for c in few {
                let _ = writeln!(out, "{c}");
            }
        }
        many => {
            let _ = writeln!(
                out,
                "checkpoints: {} match the log; the last: {}",
                many.len(),
                many[many.len() - 1]
            );
        }
    }
    let bad = report.findings.iter().filter(|f| f.fatal).count();
    if bad == 0 {
        let _ = writeln!(
            out,
            "intact: {} segments, {} events",
            report.segments.len(),
            report.events()
        );
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(out, "damaged: {bad} problems found");
        ExitCode::from(1)
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a process (a running `stele serve`) holds the LOCK of the data
/// directory `path`: a shared lock is refused. Opens the file read-only and
/// never creates it; the probe's lock goes with the descriptor.
fn daemon_writes(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(path.join(stele::datadir::LOCK_FILE)) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
}
