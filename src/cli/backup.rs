//! `stele backup`: a consistent copy of the log, then the copy verified.
//! The copying itself is `stele::backup`'s.

use std::process::ExitCode;

pub(crate) fn backup(
    data_dir: &std::path::Path,
    dest: &std::path::Path,
    skip_verify: bool,
) -> ExitCode {
    use stele::backup::Copied;
    let started = std::time::Instant::now();
    let report = match stele::backup::backup(data_dir, dest) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stele backup: {e}");
            return ExitCode::from(2);
        }
    };
    for e in &report.entries {
        let what = match &e.copied {
            Copied::Sealed => "sealed, copied".to_string(),
            Copied::Unchanged => "sealed, already in the backup".to_string(),
            Copied::ActivePrefix { count } => format!("active, first {count} records copied"),
            Copied::Stub => "evicted, its stub copied (the records are in the archive)".to_string(),
        };
        println!("{}  {} bytes  sha256 {}  {what}", e.name, e.bytes, e.sha256);
    }
    println!(
        "backed up {} segments to {} ({} bytes written) in {:.2} s",
        report.entries.len(),
        dest.display(),
        report.bytes_written(),
        started.elapsed().as_secs_f64()
    );
    if skip_verify {
        return ExitCode::SUCCESS;
    }
    match stele::verify::verify_paths(&[dest.to_path_buf()]) {
        Ok(r) if r.intact() => {
            println!("the copy verifies: {} events", r.events());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            for f in r.findings.iter().filter(|f| f.fatal) {
                eprintln!(
                    "stele backup: the copy does not verify: {}: {}",
                    f.path.display(),
                    f.what
                );
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("stele backup: cannot verify the copy: {e}");
            ExitCode::from(2)
        }
    }
}
