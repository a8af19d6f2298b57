//! `stele verify`: segment files, the digest chain and checkpoints checked
//! offline, and the report printed. Reads only; never opens the log for
//! writing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) fn verify(
    paths: Vec<PathBuf>,
    quiet: bool,
    public_keys: &[String],
    checkpoints: &[PathBuf],
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
    let report = match stele::verify::verify_paths_with(&paths, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stele verify: cannot read {}: {e}", display_paths(&paths));
            return ExitCode::from(2);
        }
    };
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
