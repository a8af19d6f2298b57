//! Secure by default: without keys the daemon listens on loopback only and
//! refuses all interfaces at startup (the real binary: exit status and stderr),
//! and `stele check-config` rejects bad `[[auth.keys]]` by name.

use super::*;

/// The address to dial for a daemon that listens on 0.0.0.0.
fn via_loopback(addr: &str) -> String {
    let port = addr.rsplit(':').next().unwrap();
    format!("127.0.0.1:{port}")
}

/// Runs a command that should exit by itself; returns (status, stderr).
fn run_to_exit(mut cmd: std::process::Command, secs: u64) -> (std::process::ExitStatus, String) {
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {secs} s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status, text)
}

#[test]
fn without_keys_only_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    // No keys, loopback: serves openly, and says so.
    {
        let d = Daemon::start(&tmp.path().join("open"));
        assert_eq!(get(&d.addr, "/v1/events", None).status, 200);
        poll(
            5,
            "a log line about serving on loopback only without authentication",
            || {
                d.log_text()
                    .lines()
                    .any(|l| l.to_ascii_lowercase().contains("loopback"))
                    .then_some(())
            },
        );
    }
    // No keys, all interfaces (IPv4 or IPv6): refused at startup, naming
    // the fix.
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let mut cmd = stele_clean_env();
        cmd.args(["serve", "--listen", listen, "--data-dir"])
            .arg(tmp.path().join("refused"));
        let (status, err) = run_to_exit(cmd, 30);
        assert!(!status.success(), "started on {listen} without keys: {err}");
        assert!(!err.contains("Listening on"), "{err}");
        let names_fix = (err.contains("stele keygen") && err.contains("auth.keys"))
            || err.contains("127.0.0.1")
            || err.to_ascii_lowercase().contains("loopback");
        assert!(names_fix, "the refusal does not name the fix:\n{err}");
    }

    // check-config says the same about a file.
    let data = tmp.path().join("cc-data");
    let check = |name: &str, text: &str| -> (i32, String) {
        let f = write_file(&tmp.path().join(name), text);
        let out = stele_clean_env()
            .arg("check-config")
            .arg(&f)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let base = format!("data_dir = \"{}\"\n", data.display());
    let (code, out) = check("open.toml", &format!("listen = \"0.0.0.0:7070\"\n{base}"));
    assert_ne!(code, 0, "check-config accepted 0.0.0.0 without keys: {out}");
    let (code, out) = check("loop.toml", &format!("listen = \"127.0.0.1:7070\"\n{base}"));
    assert_eq!(code, 0, "{out}");
    let keyed = format!(
        "listen = \"0.0.0.0:7070\"\n{base}{}",
        key_toml("ops", &token("ops"), &["read"], &["*"], "")
    );
    let (code, out) = check("keyed.toml", &keyed);
    assert_eq!(code, 0, "{out}");

    // With keys, all interfaces is fine (and keys are required there).
    let conf = write_file(
        &tmp.path().join("keyed-serve.toml"),
        &format!(
            "[auth]\n{UNLIMITED_ROLES}{}",
            key_toml("ops", &token("ops"), &["read"], &["*"], "")
        ),
    );
    let mut cmd = stele_clean_env();
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&conf)
        .arg("--data-dir")
        .arg(tmp.path().join("keyed"));
    let d = Daemon::spawn(cmd);
    let addr = via_loopback(&d.addr);
    assert_eq!(get(&addr, "/v1/events", Some(&token("ops"))).status, 200);
    assert_eq!(get(&addr, "/v1/events", None).status, 401);
    assert_eq!(get(&addr, "/healthz", None).status, 200);
}

#[test]
fn check_config_rejects_bad_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str| -> (i32, String) {
        let f = write_file(&tmp.path().join(name), text);
        let out = stele_clean_env()
            .arg("check-config")
            .arg(&f)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let t = token("cc");
    let good = key_toml(
        "ok.key-1_A",
        &t,
        &["read", "export"],
        &["acme"],
        "rate_per_sec = 5\nburst = 5\nstreams_max = 1",
    );
    let (code, out) = check("good.toml", &format!("[auth]\nmetrics = \"admin\"\nstreams_per_key_max = 16\n[auth.roles.read]\nrate_per_sec = 200\nburst = 400\n{good}"));
    assert_eq!(code, 0, "{out}");
    let bad: Vec<(&str, String)> = vec![
        (
            "admin scoped to a tenant",
            key_toml("adm", &t, &["admin"], &["acme"], ""),
        ),
        (
            "unknown role",
            key_toml("k", &t, &["superuser"], &["*"], ""),
        ),
        ("bad id", key_toml("has space", &t, &["read"], &["*"], "")),
        (
            "id too long",
            key_toml(&"a".repeat(65), &t, &["read"], &["*"], ""),
        ),
        (
            "duplicate id",
            format!(
                "{}{}",
                key_toml("dup", &t, &["read"], &["*"], ""),
                key_toml("dup", &token("cc2"), &["read"], &["*"], "")
            ),
        ),
        (
            "uppercase hash",
            key_toml("k", &t, &["read"], &["*"], "").replace(
                &hash(&t),
                &hash(&t).to_uppercase().replace("SHA256:", "sha256:"),
            ),
        ),
        (
            "short hash",
            key_toml("k", &t, &["read"], &["*"], "").replace(&hash(&t), &hash(&t)[..40]),
        ),
        (
            "no sha256: prefix",
            key_toml("k", &t, &["read"], &["*"], "").replace("sha256:", ""),
        ),
        (
            "bad metrics",
            format!("[auth]\nmetrics = \"everyone\"\n{good}"),
        ),
    ];
    let mut failures = Vec::new();
    for (what, text) in bad {
        let (code, out) = check("bad.toml", &text);
        if code == 0 {
            failures.push(format!("{what}: accepted:\n{text}\n{out}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
