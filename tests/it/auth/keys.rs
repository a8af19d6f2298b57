//! Keys over time: added and removed by a reload, kept when the file is broken
//! on SIGHUP (the real binary), and `stele keygen` (its token and snippet work,
//! `--rate` as the configuration spells it).

use super::*;

/// Keys added and removed by a reload (what SIGHUP does, through the same
/// `Handle::reload`), in-process.
#[test]
fn keys_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let (ta, tb) = (token("key-a"), token("key-b"));
    let ka = key_toml("key-a", &ta, &["read"], &["*"], "");
    let kb = key_toml("key-b", &tb, &["read"], &["*"], "");
    let roles = format!("[auth]\n{UNLIMITED_ROLES}");
    let conf = write_file(&tmp.path().join("stele.toml"), &format!("{roles}{ka}"));
    let d = serve(tmp.path(), &conf);
    let status = |t: &str| get(&d.addr, "/v1/events?limit=1", Some(t)).status;
    assert_eq!((status(&ta), status(&tb)), (200, 401));

    write_file(&conf, &format!("{roles}{ka}{kb}"));
    d.reload(&conf);
    poll(10, "key-b accepted after the reload", || {
        (status(&tb) == 200).then_some(())
    });
    assert_eq!(status(&ta), 200);

    write_file(&conf, &format!("{roles}{kb}"));
    d.reload(&conf);
    poll(10, "key-a refused after its removal and the reload", || {
        (status(&ta) == 401).then_some(())
    });
    assert_eq!(status(&tb), 200);
}

/// A broken file on SIGHUP keeps the keys in force (as for every reloaded
/// setting). The real binary: the file is read again by its SIGHUP task,
/// which logs the refusal.
#[test]
fn a_broken_file_on_sighup_keeps_the_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (ta, tb) = (token("key-a"), token("key-b"));
    let kb = key_toml("key-b", &tb, &["read"], &["*"], "");
    let roles = format!("[auth]\n{UNLIMITED_ROLES}");
    let conf = write_file(&tmp.path().join("stele.toml"), &format!("{roles}{kb}"));
    let d = start(tmp.path(), &conf);
    let status = |t: &str| get(&d.addr, "/v1/events?limit=1", Some(t)).status;
    assert_eq!((status(&ta), status(&tb)), (401, 200));

    write_file(
        &conf,
        &format!(
            "{roles}{kb}{}",
            key_toml("key-b", &ta, &["read"], &["*"], "")
        ),
    );
    d.hup();
    poll(10, "the broken reload is logged", || {
        d.log_text()
            .contains("keeping the current settings")
            .then_some(())
    });
    assert_eq!((status(&ta), status(&tb)), (401, 200));
}

/// Runs `stele keygen ARGS`; returns (stdout, stderr).
fn keygen(args: &[&str]) -> (String, String) {
    let out = stele_clean_env().arg("keygen").args(args).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "stele keygen {args:?}: {o}{e}");
    (o, e)
}

/// The token line and the `[[auth.keys]]` snippet (up to a blank line) in
/// keygen's output.
fn parse_keygen(out: &str) -> (String, String) {
    let is_token = |l: &str| {
        l.starts_with("stele_")
            && l.len() == 49
            && l[6..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let tokens: Vec<&str> = out.lines().filter(|l| is_token(l)).collect();
    assert_eq!(tokens.len(), 1, "want one token line in:\n{out}");
    let mut lines = out.lines().skip_while(|l| l.trim() != "[[auth.keys]]");
    let mut snippet = String::new();
    for l in lines.by_ref() {
        if l.trim().is_empty() && !snippet.is_empty() {
            break;
        }
        snippet.push_str(l);
        snippet.push('\n');
    }
    assert!(
        snippet.starts_with("[[auth.keys]]\n"),
        "no snippet in:\n{out}"
    );
    (tokens[0].to_string(), snippet)
}

/// `--rate 200/min` writes the rate as the configuration spells it (and the
/// snippet passes the same checks `stele serve` makes); a malformed rate or
/// one given twice is refused by name.
#[test]
fn keygen_takes_a_rate_per_minute() {
    let (o, e) = keygen(&["--id", "dash", "--role", "read", "--rate", "200/min"]);
    let (_, snippet) = parse_keygen(&format!("{o}\n{e}"));
    assert!(snippet.contains("rate = \"200/min\""), "{snippet}");
    assert!(!snippet.contains("rate_per_sec"), "{snippet}");
    for (args, says) in [
        (
            vec!["--rate", "200 per minute"],
            "must be written N/s, N/min or N/h",
        ),
        (
            vec!["--rate", "5/min", "--rate-per-sec", "5"],
            "cannot be used with",
        ),
    ] {
        let out = stele_clean_env()
            .args(["keygen", "--id", "x", "--role", "read"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn keygen_prints_a_working_key() {
    let (o, e) = keygen(&[
        "--id",
        "ci-reader",
        "--role",
        "read",
        "--role",
        "export",
        "--tenant",
        "acme",
    ]);
    let all = format!("{o}\n{e}");
    let (tok, snippet) = parse_keygen(&all);
    assert!(
        !snippet.contains(&tok),
        "the snippet holds the token:\n{snippet}"
    );
    assert!(
        !snippet.contains(&tok[6..]),
        "the snippet holds the token:\n{snippet}"
    );
    assert!(
        snippet.contains(&hash(&tok)),
        "the snippet's hash is not sha256 of the token:\n{snippet}"
    );
    assert!(snippet.contains("ci-reader"), "{snippet}");
    // Another run: another token. No --tenant: all tenants.
    let (o2, e2) = keygen(&["--id", "ops", "--role", "admin"]);
    let (tok2, snippet2) = parse_keygen(&format!("{o2}\n{e2}"));
    assert_ne!(tok, tok2);
    let tenants = snippet2
        .lines()
        .find(|l| l.trim_start().starts_with("tenants"))
        .unwrap_or_else(|| panic!("no tenants in:\n{snippet2}"));
    assert!(tenants.contains("\"*\""), "{snippet2}");

    // Pasted as is, next to a key to ingest with.
    let tmp = tempfile::tempdir().unwrap();
    let ing = token("ing");
    let conf = format!(
        "[auth]\n{UNLIMITED_ROLES}\n{snippet}\n{snippet2}\n{}",
        key_toml("ing", &ing, &["ingest"], &["*"], "")
    );
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = serve(tmp.path(), &conf);
    let r = post(
        &d.addr,
        Some(&ing),
        &json!([{"actor": "t", "action": "a", "tenant": "acme"}, {"actor": "t", "action": "b", "tenant": "globex"}]),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    let evs = wait_for_count(&d.addr, "/v1/events?limit=10", &tok, 1);
    assert_eq!(evs[0]["tenant"], "acme");
    assert_eq!(get(&d.addr, "/v1/export", Some(&tok)).status, 200);
    assert_eq!(get(&d.addr, "/v1/segments", Some(&tok)).status, 403);
    assert_eq!(
        post(
            &d.addr,
            Some(&tok),
            &json!({"actor": "t", "action": "x", "tenant": "acme"})
        )
        .status,
        403
    );
    assert_eq!(get(&d.addr, "/v1/segments", Some(&tok2)).status, 200);
}
