//! The configuration file through the real binary: `stele check-config`
//! (exit 0, 1, 2 and its messages) and `stele serve --config` /
//! `STELE_CONFIG` actually applying the file, the environment and the flags.

use crate::support::daemon::{call_at, Daemon};
use crate::support::stele_clean_env;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/stele.toml")
}

fn check_config(path: &Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = stele_clean_env()
        .arg("check-config")
        .arg(path)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("run stele check-config");
    (
        status.code().expect("an exit code"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_accepts_the_sample_file() {
    let (code, out, err) = check_config(&sample(), &[], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{}: valid\n", sample().display()));
    // --print: the effective configuration, every key, as TOML on stdout.
    let (code, out, err) = check_config(
        &sample(),
        &["--print"],
        &[("STELE_LISTEN", "127.0.0.2:7171")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("{}: valid", sample().display())),
        "{err}"
    );
    assert!(
        err.contains("listen is set by the environment (STELE_LISTEN)"),
        "{err}"
    );
    let printed: toml::Table = toml::from_str(&out).expect("--print writes TOML");
    assert_eq!(printed["listen"].as_str(), Some("127.0.0.2:7171"));
    assert_eq!(printed["data_dir"].as_str(), Some("data"));
    assert_eq!(printed["limits"]["streams_max"].as_integer(), Some(1024));
    assert_eq!(
        printed["log"]["segment_bytes_max"].as_integer(),
        Some(512 << 20)
    );
    assert_eq!(printed["log"]["recovery"].as_str(), Some("strict"));
    assert_eq!(
        printed["index"]["commit_interval_ms"].as_integer(),
        Some(1000)
    );
    assert_eq!(
        printed["retention"]["interval_secs"].as_integer(),
        Some(3600)
    );
}

#[test]
fn check_config_names_an_unknown_key_and_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "bad.toml",
        "[limits]\nstreams_max = 2\nstreamz_max = 3\n",
    );
    let (code, out, err) = check_config(&f, &[], &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("bad.toml:3:1: limits.streamz_max: unknown key `streamz_max`; [limits] has: body_bytes_max,"),
        "{err}"
    );
    assert!(err.contains("3 | streamz_max = 3"), "{err}");
    let f = write(tmp.path(), "top.toml", "colour = \"blue\"\n");
    let (code, _, err) = check_config(&f, &[], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("colour: unknown key `colour`; the top level has: listen, data_dir, [limits]"),
        "{err}"
    );
}

#[test]
fn check_config_names_a_bad_value() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "range.toml", "[log]\nsegment_bytes_max = 100\n");
    let (code, _, err) = check_config(&f, &[], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("range.toml: log.segment_bytes_max must be at least 4096, got 100 (allowed: 4096 to 1099511627776 bytes)"),
        "{err}"
    );
    let f = write(tmp.path(), "type.toml", "[log]\nrecovery = \"lenient\"\n");
    let (code, _, err) = check_config(&f, &[], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("type.toml:2:12: log.recovery: unknown value \"lenient\"; expected one of: strict, salvage"),
        "{err}"
    );
    let f = write(tmp.path(), "syntax.toml", "[limits\n");
    let (code, _, err) = check_config(&f, &[], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("syntax.toml: TOML parse error at line 1, column 8"),
        "{err}"
    );
    // An environment variable that does not parse: named, exit 1.
    let (code, _, err) = check_config(&sample(), &[], &[("STELE_LIMITS_CONNECTIONS_MAX", "many")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "STELE_LIMITS_CONNECTIONS_MAX: \"many\" is not a valid limits.connections_max"
        ),
        "{err}"
    );
}

#[test]
fn check_config_exits_2_when_the_file_cannot_be_read() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.toml");
    let (code, out, err) = check_config(&missing, &[], &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("cannot read the configuration file"), "{err}");
    assert!(err.contains("nope.toml"), "{err}");
}

/// `stele serve` started with the given arguments and environment (and
/// none of the caller's `STELE_*` variables).
struct Serve(Daemon);

impl Serve {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = stele_clean_env();
        cmd.arg("serve").args(args).envs(env.iter().copied());
        Serve(Daemon::spawn(cmd))
    }

    fn log(&self) -> String {
        self.0.log_text()
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (st, _, v) = call_at(&self.0.addr, "GET", path, "application/json", b"");
        (st, v)
    }

    fn post(&self, body: &Value) -> (u16, Value) {
        let (st, _, v) = call_at(
            &self.0.addr,
            "POST",
            "/v1/events",
            "application/json",
            body.to_string().as_bytes(),
        );
        (st, v)
    }
}

#[test]
fn serve_applies_the_configuration_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let f = write(
        tmp.path(),
        "stele.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n[limits]\nurl_bytes_max = 1024\n\n\
             [log]\nsegment_bytes_max = 4096\n\n[index]\ncommit_interval_ms = 100\n\n\
             [retention]\ndays = 30\n",
            data.to_str().unwrap()
        ),
    );
    let d = Serve::start(&["--config", f.to_str().unwrap()], &[]);
    let log = d.log();
    assert!(
        log.contains(&format!("Configuration: {}.", f.display())),
        "{log}"
    );
    assert!(
        log.contains(&format!("with data in {}", data.display())),
        "{log}"
    );
    // [limits]: a request target over 1024 bytes is 414 with the limit.
    let (st, p) = d.get(&format!("/v1/events?tenant={}", "x".repeat(1100)));
    assert_eq!(st, 414, "{p}");
    assert_eq!(p["type"], "https://stele.dev/problems/uri-too-long");
    assert_eq!(p["limit"], 1024);
    assert_eq!(d.get(&format!("/healthz?pad={}", "x".repeat(900))).0, 200);
    // [log]: 4 KiB segments, so a few requests of ~1 KiB events rotate.
    for i in 0..8 {
        let events: Vec<Value> = (0..3)
            .map(|j| json!({"id": format!("e-{i}-{j}"), "action": "a", "actor": "b", "description": "d".repeat(1000)}))
            .collect();
        assert_eq!(d.post(&json!(events)).0, 201);
    }
    let (st, segs) = d.get("/v1/segments");
    assert_eq!(st, 200, "{segs}");
    assert!(segs["segments"].as_array().unwrap().len() >= 3, "{segs}");
    assert!(data.join("segments").is_dir());
    // [retention]: the configuration the daemon runs with.
    let (st, plan) = d.get("/v1/retention");
    assert_eq!(st, 200, "{plan}");
    assert_eq!(plan["config"]["days"], 30, "{plan}");
}

#[test]
fn environment_and_flags_override_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "stele.toml",
        "listen = \"127.0.0.1:1\"\ndata_dir = \"/nonexistent/never-used\"\n[limits]\nurl_bytes_max = 1024\nbody_bytes_max = 1000000\n",
    );
    let data = tmp.path().join("data");
    // STELE_CONFIG names the file; STELE_LISTEN and STELE_DATA_DIR beat it;
    // STELE_LIMITS_BODY_BYTES_MAX beats it and --body-bytes-max beats that;
    // --url-bytes-max beats the file.
    let d = Serve::start(
        &["--url-bytes-max", "2048", "--body-bytes-max", "300"],
        &[
            ("STELE_CONFIG", f.to_str().unwrap()),
            ("STELE_LISTEN", "127.0.0.1:0"),
            ("STELE_DATA_DIR", data.to_str().unwrap()),
            ("STELE_LIMITS_BODY_BYTES_MAX", "200"),
        ],
    );
    let log = d.log();
    assert!(log.contains("Environment overrides: "), "{log}");
    assert!(log.contains("listen from STELE_LISTEN"), "{log}");
    assert!(data.join("segments").is_dir(), "{log}");
    assert_eq!(d.get(&format!("/healthz?pad={}", "x".repeat(1500))).0, 200);
    let (st, p) = d.get(&format!("/v1/events?tenant={}", "x".repeat(2100)));
    assert_eq!((st, &p["limit"]), (414, &json!(2048)), "{p}");
    let small = json!({"action": "a", "actor": "b", "description": "d".repeat(150)});
    assert_eq!(d.post(&small).0, 201);
    let big = json!({"action": "a", "actor": "b", "description": "d".repeat(400)});
    let (st, p) = d.post(&big);
    assert_eq!((st, &p["limit"]), (413, &json!(300)), "{p}");
}

#[test]
fn serve_refuses_a_bad_configuration_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "stele.toml", "[limits]\nstreams_max = 0\n");
    let out = stele_clean_env()
        .args(["serve", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid configuration: ")
            && err.contains("stele.toml: limits.streams_max must be at least 1, got 0"),
        "{err}"
    );
    assert!(!err.contains("Listening on"), "{err}");
    // A file that does not exist stops the start too (no silent defaults).
    let out = stele_clean_env()
        .args(["serve", "--config"])
        .arg(tmp.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the configuration file"), "{err}");
}

/// `[ingest.field_map]`: seed-style events (seed 003's `event_type`/`level`/
/// `ip_address`, seed 004's `subaccountId`/`userId`/`resourceId`) are stored
/// and read back with Stele's names; both names with different values are a
/// 400 naming both; an unmapped unknown name stays refused as unknown.
#[test]
fn a_field_map_stores_foreign_names_as_stele_fields() {
    use crate::support::inproc::Server;
    let tmp = tempfile::tempdir().unwrap();
    let conf = write(
        tmp.path(),
        "map.toml",
        "[ingest.field_map]\nevent_type = \"action\"\nactivityType = \"action\"\n\
         level = \"severity\"\nsubaccountId = \"tenant\"\nuserId = \"user_id\"\n\
         resourceId = \"entity_id\"\nresourceName = \"entity_name\"\nip_address = \"ip\"\n",
    );
    let data = tmp.path().join("data");
    let d = Server::start_with_file(&data, &conf);
    let (st, _, r) = d.post(&json!([
        {"event_type": "login", "level": "warning", "userId": "u-1", "ip_address": "10.0.0.1",
         "timestamp": "2026-11-28T10:00:00Z"},
        {"activityType": "agent_updated", "subaccountId": "acme", "userId": "u-2",
         "resourceId": "agent-7", "resourceName": "Sales bot", "category": "agent",
         "description": "Updated the prompt", "metadata": {"operationId": "op-1"}},
    ]));
    assert_eq!(st, 201, "{r}");
    // Listings read the index, which follows the log.
    let indexed = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, _, page) = d.get("/v1/events?order=asc");
            if page["events"].as_array().map_or(0, Vec::len) >= n {
                return page;
            }
            assert!(std::time::Instant::now() < deadline, "not indexed: {page}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let page = indexed(2);
    let evs = page["events"].as_array().unwrap();
    assert_eq!(evs.len(), 2, "{page}");
    assert_eq!(evs[0]["action"], "login");
    assert_eq!(evs[0]["severity"], "warning");
    assert_eq!(evs[0]["user_id"], "u-1");
    assert_eq!(evs[0]["ip"], "10.0.0.1");
    assert_eq!(evs[1]["action"], "agent_updated");
    assert_eq!(evs[1]["tenant"], "acme");
    assert_eq!(evs[1]["entity_id"], "agent-7");
    assert_eq!(evs[1]["entity_name"], "Sales bot");
    for ev in evs {
        for foreign in [
            "event_type",
            "level",
            "userId",
            "subaccountId",
            "resourceId",
        ] {
            assert!(ev.get(foreign).is_none(), "{foreign} kept: {ev}");
        }
    }
    // Filters take Stele's names.
    let (_, _, page) = d.get("/v1/events?tenant=acme&entity_id=agent-7");
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");

    // Both names, different values: refused, naming both; nothing stored.
    let (st, _, p) = d.post(&json!([
        {"action": "login", "actor": "a"},
        {"action": "login", "event_type": "logout", "actor": "a"},
    ]));
    assert_eq!(st, 400, "{p}");
    let errs = p["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 1, "{p}");
    assert_eq!(errs[0]["index"], 1);
    assert_eq!(errs[0]["field"], "action");
    assert_eq!(errs[0]["kind"], "conflict");
    let msg = errs[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"action\"") && msg.contains("\"event_type\""),
        "{msg}"
    );
    // The same value under both names is one field.
    let (st, _, r) = d.post(&json!({"action": "login", "event_type": "login", "actor": "a"}));
    assert_eq!(st, 201, "{r}");
    // An unknown name that is not mapped: refused as unknown, as without a map.
    let (st, _, p) = d.post(&json!({"action": "login", "actor": "a", "operationId": "x"}));
    assert_eq!(st, 400, "{p}");
    assert_eq!(p["errors"][0]["kind"], "unknown_field", "{p}");
    assert_eq!(indexed(3)["events"].as_array().unwrap().len(), 3);
}

/// A mapping to a name that is not a Stele field is refused by
/// `check-config` (and so at start-up), naming the key and the allowed fields.
#[test]
fn check_config_refuses_a_field_map_to_an_unknown_field() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = write(
        tmp.path(),
        "bad.toml",
        "[ingest.field_map]\nevent_type = \"action\"\nlevel = \"priority\"\n",
    );
    let (code, _, err) = check_config(&conf, &[], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ingest.field_map.level"), "{err}");
    assert!(err.contains("\"priority\""), "{err}");
    assert!(
        err.contains("allowed: id, timestamp, action, actor, tenant"),
        "{err}"
    );
    let conf = write(
        tmp.path(),
        "self.toml",
        "[ingest.field_map]\nactor = \"user_id\"\n",
    );
    let (code, _, err) = check_config(&conf, &[], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is a field of a Stele event"), "{err}");
}
