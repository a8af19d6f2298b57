//! README.md's curl examples work verbatim: every `curl` command of its
//! `sh` blocks (and of its inline code, the API table's), in document order,
//! against a server with its embedded defaults, only the address replaced.
//! Each must answer 2xx (`--fail-with-body`); the live stream is cut after a
//! second. A command that does not run as written is a promise the README
//! does not keep.

use crate::support::inproc::Server;
use std::process::Command;

/// The curl commands of README.md, continuation lines joined, in order.
fn readme_curls() -> Vec<String> {
    let text = include_str!("../../README.md");
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<String> = None;
    for line in text.lines() {
        if let Some(cmd) = pending.as_mut() {
            cmd.push('\n');
            cmd.push_str(line);
            // A command continues after a trailing `\` or inside a quoted body.
            if !line.trim_end().ends_with('\\') && cmd.matches('\'').count() % 2 == 0 {
                out.push(pending.take().unwrap());
            }
            continue;
        }
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if in_sh && line.starts_with("curl ") {
            let cmd = line.to_owned();
            if line.trim_end().ends_with('\\') || cmd.matches('\'').count() % 2 == 1 {
                pending = Some(cmd);
            } else {
                out.push(cmd);
            }
        } else if !in_sh {
            // Inline examples: `curl -s localhost:7070/...` in prose and tables.
            for piece in line.split('`').skip(1).step_by(2) {
                if piece.starts_with("curl ") && piece.contains(":7070") {
                    out.push(piece.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn the_readme_curl_examples_work_verbatim() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(&tmp.path().join("data"));
    let cmds = readme_curls();
    // The quick start, risk, processes, findings and the dashboard at least.
    for must in [
        "/v1/events/evt-1",
        "/v1/processes/run-42",
        "/v1/findings",
        "/v1/dashboard",
    ] {
        assert!(
            cmds.iter().any(|c| c.contains(must)),
            "no curl example of {must}"
        );
    }
    // The README's address, whichever way it is written, becomes the server's.
    let addr = d.addr.trim_start_matches("http://").to_owned();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for cmd in &cmds {
        let live = cmd.contains("-sN") || cmd.contains("/v1/stream");
        // Wrapped, not rewritten: 2xx or a failure with the body shown; runs
        // derived in the background get a few retries; a live stream is cut.
        let wrapper = if live {
            "curl() { command curl --fail-with-body --max-time 2 \"$@\"; }"
        } else {
            "curl() { command curl --fail-with-body --max-time 10 --retry 10 --retry-delay 1 \
             --retry-all-errors \"$@\"; }"
        };
        let script = format!(
            "{wrapper}\n{}",
            cmd.replace("http://127.0.0.1:7070", &format!("http://{addr}"))
                .replace("localhost:7070", &addr)
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(&work)
            .output()
            .expect("sh and curl are installed (.ci/run installs curl)");
        let code = out.status.code();
        // A live stream ends by the time limit (curl's 28), not an HTTP error.
        let ok = if live {
            code == Some(28)
        } else {
            out.status.success()
        };
        assert!(
            ok,
            "README example failed ({code:?}):\n{cmd}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
