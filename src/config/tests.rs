//! The configuration's unit tests.

use super::errors::{backticked, collect_leaves};
use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("t.toml"))
}

/// Parses and validates, as `load` does for a file (no environment).
fn check(text: &str) -> Result<Config, ConfigError> {
    let c = parse(text)?;
    c.validate()?;
    Ok(c)
}

fn err(text: &str) -> (Option<String>, String) {
    let e = check(text).expect_err(text);
    (e.key().map(str::to_string), e.to_string())
}

const SAMPLE: &str = include_str!("../../config/stele.toml");

#[test]
fn defaults_are_todays_embedded_defaults() {
    let c = Config::default();
    assert_eq!(c.listen.to_string(), LISTEN_DEFAULT);
    assert_eq!(c.data_dir, PathBuf::from("data"));
    assert_eq!(c.limits, Limits::DEFAULT);
    let (log, want) = (c.log_config(), LogConfig::default());
    assert_eq!(log.segment_bytes_max, want.segment_bytes_max);
    // Room in one write for a whole body of events (16 MiB + 10,000 × 1 KiB).
    assert_eq!(log.write_bytes_max, 16 * 1024 * 1024 + 10_000 * 1024);
    assert_eq!(log.batch_events_max, want.batch_events_max);
    assert_eq!(log.queue_requests_max, want.queue_requests_max);
    assert_eq!(log.recovery, want.recovery);
    assert_eq!(log.tail_bytes, want.tail_bytes);
    let (idx, want) = (c.index_config(), IndexConfig::default());
    assert_eq!(idx.commit_interval, want.commit_interval);
    assert_eq!(idx.kv_cache_bytes, want.kv_cache_bytes);
    assert_eq!(c.retention, RetentionConfig::default());
    assert_eq!(c.validate().map_err(|e| e.to_string()), Ok(()));
    // No file, no environment: exactly the defaults.
    assert_eq!(Config::load(None, no_env).unwrap(), Config::default());
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn the_sample_file_is_exactly_the_defaults() {
    assert_eq!(parse(SAMPLE).unwrap(), Config::default());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/stele.toml");
    assert_eq!(
        Config::load(Some(&path), no_env).unwrap(),
        Config::default()
    );
}

#[test]
fn the_sample_file_documents_every_key() {
    let mut c = Config::default();
    c.retention.days = Some(1);
    c.retention.tenants.insert("t".into(), 1);
    c.retention.holds.push(crate::retention::Hold {
        name: "h".into(),
        tenant: Some("t".into()),
        from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1),
        until: chrono::NaiveDate::from_ymd_opt(2026, 1, 2),
        reason: "r".into(),
    });
    c.tls = Some(crate::tls::TlsConfig {
        cert: "c.pem".into(),
        key: "k.pem".into(),
    });
    let table: toml::Table = toml::from_str(&c.to_toml().unwrap()).unwrap();
    let mut keys = Vec::new();
    collect_leaves(&table, &mut Vec::new(), &mut keys);
    let lines: Vec<&str> = SAMPLE.lines().collect();
    for key in keys.iter().filter(|k| k.as_str() != "retention.tenants.t") {
        let name = key.rsplit('.').next().unwrap();
        let name = if name == "holds" { "name" } else { name };
        assert!(
            lines.iter().any(|l| {
                let l = l.trim_start_matches("# ");
                l.starts_with(&format!("{name} = "))
            }),
            "config/stele.toml does not document {key}"
        );
    }
    for (var, key) in ENV_OVERRIDES {
        assert!(
            SAMPLE.contains(var),
            "config/stele.toml does not name {var} ({key})"
        );
    }
}

#[test]
fn every_section_is_read() {
    let c = check(
        r#"
            listen = "0.0.0.0:8080"
            data_dir = "/srv/stele"
            [limits]
            body_bytes_max = 1000
            events_per_request_max = 10
            url_bytes_max = 1024
            header_bytes_max = 2048
            header_read_timeout_secs = 2
            request_timeout_secs = 3
            write_stall_timeout_secs = 11
            connections_max = 4
            streams_max = 5
            shutdown_grace_secs = 0
            disk_reserve_bytes = 0
            [log]
            segment_bytes_max = 65536
            recovery = "salvage"
            tail_bytes = 0
            [index]
            commit_interval_ms = 250
            [retention]
            days = 30
            interval_secs = 60
            tenants = { acme = 365 }
            [[retention.holds]]
            name = "case-1"
            tenant = "acme"
            from = 2026-01-01
            until = "2026-02-01"
            reason = "court order"
            [auth]
            metrics = "admin"
            streams_per_key_max = 3
            [auth.roles.read]
            rate_per_sec = 7
            burst = 9
            [[auth.keys]]
            id = "app-1"
            hash = "sha256:0b9c2625dc21ef05f6ad4ddf47c5f203837aa32c3c8f1b3c4a8e1b7b6d6c1e57"
            roles = ["ingest", "read"]
            tenants = ["acme"]
            rate_per_sec = 5
            burst = 6
            streams_max = 2
            [tls]
            cert = "/etc/stele/cert.pem"
            key = "/etc/stele/key.pem"
            "#,
    )
    .unwrap();
    assert_eq!(c.auth.metrics, crate::auth::MetricsAccess::Admin);
    assert_eq!(c.auth.streams_per_key_max, 3);
    assert_eq!(
        (c.auth.roles.read.rate_per_sec, c.auth.roles.read.burst),
        (7, 9)
    );
    assert_eq!(
        c.auth.roles.ingest,
        crate::auth::AuthConfig::default().roles.ingest
    );
    let k = &c.auth.keys[0];
    assert_eq!(
        (
            k.id.as_str(),
            k.tenants.clone(),
            k.rate_per_sec,
            k.burst,
            k.streams_max
        ),
        ("app-1", vec!["acme".to_string()], Some(5), Some(6), Some(2))
    );
    assert_eq!(
        k.roles,
        [crate::auth::Role::Ingest, crate::auth::Role::Read]
    );
    assert_eq!(
        c.tls.as_ref().map(|t| t.key.clone()),
        Some(PathBuf::from("/etc/stele/key.pem"))
    );
    assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("/srv/stele"));
    assert_eq!(
        c.limits,
        Limits {
            body_bytes_max: 1000,
            events_per_request_max: 10,
            url_bytes_max: 1024,
            header_bytes_max: 2048,
            header_read_timeout_secs: 2,
            request_timeout_secs: 3,
            write_stall_timeout_secs: 11,
            connections_max: 4,
            streams_max: 5,
            shutdown_grace_secs: 0,
            disk_reserve_bytes: 0,
        }
    );
    assert_eq!(c.log_config().segment_bytes_max, 65536);
    assert_eq!(c.log_config().tail_bytes, 0);
    assert_eq!(c.log_config().recovery, RecoveryMode::Salvage);
    assert_eq!(c.index_config().commit_interval, Duration::from_millis(250));
    assert_eq!(c.retention.days, Some(30));
    assert_eq!(c.retention.interval_secs, 60);
    assert_eq!(c.retention.tenants.get("acme"), Some(&365));
    let h = &c.retention.holds[0];
    assert_eq!(
        (h.name.as_str(), h.tenant.as_deref()),
        ("case-1", Some("acme"))
    );
    assert_eq!(h.from, chrono::NaiveDate::from_ymd_opt(2026, 1, 1));
    assert_eq!(h.until, chrono::NaiveDate::from_ymd_opt(2026, 2, 1));
    // What --print shows parses back to the same configuration.
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
    // A partial section keeps the other keys' defaults.
    let c = check("[limits]\nstreams_max = 7\n").unwrap();
    assert_eq!(
        c.limits,
        Limits {
            streams_max: 7,
            ..Limits::DEFAULT
        }
    );
}

#[test]
fn printing_limits_covers_every_limit() {
    // The keys [limits] accepts, as serde lists them for an unknown one.
    let e = toml::from_str::<Limits>("no_such_key = 1").unwrap_err();
    let mut accepted = backticked(e.message().split_once("expected").unwrap().1);
    let printed: toml::Table = toml::from_str(&Config::default().to_toml().unwrap()).unwrap();
    let mut printed: Vec<String> = printed["limits"]
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    accepted.sort();
    printed.sort();
    assert_eq!(printed, accepted);
}

#[test]
fn unknown_keys_are_named_at_every_level_with_the_known_ones() {
    for (text, key, known) in [
        (
            "colour = 1",
            "colour",
            "listen, data_dir, [limits], [log], [index], [seal], [retention]",
        ),
        (
            "[limits]\nstreamz_max = 1",
            "limits.streamz_max",
            "streams_max",
        ),
        (
            "[log]\nsegment_size = 1",
            "log.segment_size",
            "segment_bytes_max, recovery, tail_bytes",
        ),
        (
            "[index]\ncommit_interval = 1",
            "index.commit_interval",
            "commit_interval_ms",
        ),
        (
            "[retention]\nttl = 1",
            "retention.ttl",
            "days, tenants, holds, interval_secs",
        ),
        (
            "[[retention.holds]]\nname = \"h\"\nowner = \"x\"",
            "retention.holds",
            "name, tenant, from, until, reason",
        ),
        ("[logs]\nx = 1", "logs", "[log]"),
        (
            "limits.streams_max = 1\nstreams_max = 1",
            "streams_max",
            "[limits]",
        ),
    ] {
        let (k, msg) = err(text);
        assert_eq!(k.as_deref(), Some(key), "{text}: {msg}");
        let name = key.rsplit('.').next().unwrap();
        let name = if key == "retention.holds" {
            "owner"
        } else {
            name
        };
        assert!(msg.contains(&format!("unknown key `{name}`")), "{msg}");
        assert!(msg.contains(known), "{text}: {msg}");
        assert!(msg.starts_with("t.toml:"), "{msg}");
    }
    // The position and the offending line, as toml shows them.
    let (_, msg) = err("listen = \"127.0.0.1:1\"\n[limits]\nstreamz_max = 1\n");
    assert!(
        msg.starts_with("t.toml:3:1: limits.streamz_max: unknown key"),
        "{msg}"
    );
    assert!(
        msg.contains("3 | streamz_max = 1\n  | ^^^^^^^^^^^"),
        "{msg}"
    );
}

#[test]
fn values_of_the_wrong_type_name_the_key_and_what_is_expected() {
    for (text, key, fragment) in [
        (
            "listen = \"localhost\"",
            "listen",
            "expected \"ADDRESS:PORT\"",
        ),
        ("listen = 7070", "listen", "invalid type: integer `7070`"),
        ("data_dir = 5", "data_dir", "expected a path"),
        (
            "[limits]\nstreams_max = \"x\"",
            "limits.streams_max",
            "expected a non-negative whole number",
        ),
        (
            "[limits]\nbody_bytes_max = -1",
            "limits.body_bytes_max",
            "expected a non-negative whole number",
        ),
        (
            "[limits]\nconnections_max = 1.5",
            "limits.connections_max",
            "floating point",
        ),
        ("limits = 3", "limits", "expected a table"),
        (
            "[log]\nrecovery = \"maybe\"",
            "log.recovery",
            "unknown value \"maybe\"; expected one of: strict, salvage",
        ),
        (
            "[log]\nsegment_bytes_max = \"1G\"",
            "log.segment_bytes_max",
            "expected a non-negative whole number",
        ),
        (
            "[index]\ncommit_interval_ms = true",
            "index.commit_interval_ms",
            "invalid type: boolean",
        ),
        (
            "[retention]\ndays = \"forever\"",
            "retention.days",
            "expected",
        ),
        (
            "[retention.tenants]\nacme = -3",
            "retention.tenants.acme",
            "from 0 to 4294967295",
        ),
        (
            "[[retention.holds]]\nname = \"h\"\nfrom = \"yesterday\"",
            "retention.holds",
            "input contains invalid characters",
        ),
    ] {
        let (k, msg) = err(text);
        assert_eq!(k.as_deref(), Some(key), "{text}: {msg}");
        assert!(msg.contains(&format!(": {key}: ")), "{text}: {msg}");
        assert!(msg.contains(fragment), "{text}: {msg}");
    }
    let (_, msg) = err("[limits]\nstreams_max = \"x\"\n");
    assert_eq!(
        msg,
        "t.toml:2:15: limits.streams_max: invalid type: string \"x\"; expected a non-negative \
             whole number\n  |\n2 | streams_max = \"x\"\n  |               ^^^"
    );
}

#[test]
fn values_out_of_range_name_the_key_the_value_and_the_range() {
    for (text, key, fragment) in [
            ("data_dir = \"\"", "data_dir", "data_dir must not be empty"),
            ("[limits]\nbody_bytes_max = 0", "limits.body_bytes_max", "limits.body_bytes_max must be at least 1, got 0 (allowed: 1 to 1073741824 bytes)"),
            ("[limits]\nbody_bytes_max = 2147483648", "limits.body_bytes_max", "must be at most 1073741824, got 2147483648"),
            ("[limits]\nevents_per_request_max = 10001", "limits.events_per_request_max", "must be at most 10000, got 10001 (allowed: 1 to 10000 events (the log's batch limit))"),
            ("[limits]\nurl_bytes_max = 0", "limits.url_bytes_max", "must be at least 1"),
            ("[limits]\nheader_bytes_max = 2000000", "limits.header_bytes_max", "must be at most 1048576"),
            ("[limits]\nheader_read_timeout_secs = 0", "limits.header_read_timeout_secs", "must be at least 1, got 0 (allowed: 1 to 3600 seconds)"),
            ("[limits]\nrequest_timeout_secs = 3601", "limits.request_timeout_secs", "must be at most 3600"),
            ("[limits]\nwrite_stall_timeout_secs = 0", "limits.write_stall_timeout_secs", "must be at least 1, got 0 (allowed: 1 to 3600 seconds)"),
            ("[limits]\nconnections_max = 0", "limits.connections_max", "connections_max must be at least 1"),
            ("[limits]\nstreams_max = 0", "limits.streams_max", "limits.streams_max must be at least 1, got 0"),
            ("[limits]\nshutdown_grace_secs = 100000", "limits.shutdown_grace_secs", "must be at most 3600"),
            ("[log]\nsegment_bytes_max = 100", "log.segment_bytes_max", "log.segment_bytes_max must be at least 4096, got 100 (allowed: 4096 to 1099511627776 bytes)"),
            ("[log]\ntail_bytes = 1073741825", "log.tail_bytes", "log.tail_bytes must be at most 1073741824, got 1073741825 (allowed: 0 to 1073741824 bytes)"),
            ("[index]\ncommit_interval_ms = 0", "index.commit_interval_ms", "must be at least 10, got 0 (allowed: 10 to 60000 milliseconds)"),
            ("[index]\ncommit_interval_ms = 3600000", "index.commit_interval_ms", "must be at most 60000"),
            ("[retention]\ndays = 0", "retention", "retention.days must be at least 1"),
            ("[retention]\ninterval_secs = 0", "retention", "retention.interval_secs must be at least 1"),
            ("[retention.tenants]\nacme = 0", "retention", "retention.tenants.acme must be at least 1"),
            ("[[retention.holds]]\nname = \"no spaces\"", "retention", "hold name \"no spaces\""),
            ("[[retention.holds]]\nname = \"h\"\nfrom = 2026-02-01\nuntil = 2026-01-01", "retention", "is after `until`"),
        ] {
            let (k, msg) = err(text);
            assert_eq!(k.as_deref(), Some(key), "{text}: {msg}");
            assert!(msg.starts_with("t.toml: "), "{text}: {msg}");
            assert!(msg.contains(fragment), "{text}: {msg}");
        }
}

#[test]
fn syntax_errors_keep_line_and_column() {
    for (text, at) in [
        ("[limits\n", "line 1, column 8"),
        (
            "listen = \"127.0.0.1:7070\"\nstreams_max =\n",
            "line 2, column 14",
        ),
        (
            "[limits]\nstreams_max = 1\nstreams_max = 2\n",
            "line 3, column 1",
        ),
        (
            "[limits]\nstreams_max = 99999999999999999999\n",
            "line 2, column 15",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("t.toml: TOML parse error at {at}")),
            "{msg}"
        );
        assert_eq!(e.exit_code(), 1);
    }
}

#[test]
fn a_missing_file_is_a_read_error() {
    let e = Config::load(Some(Path::new("/nonexistent/stele.toml")), no_env).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string()
            .starts_with("cannot read the configuration file /nonexistent/stele.toml: "),
        "{e}"
    );
}

#[test]
fn the_data_directory_defaults_to_the_state_directory() {
    let systemd = env_of(&[("STATE_DIRECTORY", "/var/lib/stele:/var/lib/other")]);
    let c = Config::load(None, &systemd).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/stele"));
    assert_eq!(
        Config::load(None, env_of(&[("STATE_DIRECTORY", "")]))
            .unwrap()
            .data_dir,
        PathBuf::from("data")
    );
    // The file, the environment and the flag each win over it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stele.toml");
    std::fs::write(&file, "data_dir = \"/srv/file\"\n").unwrap();
    assert_eq!(
        Config::load(Some(&file), &systemd).unwrap().data_dir,
        PathBuf::from("/srv/file")
    );
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\n").unwrap();
    assert_eq!(
        Config::load(Some(&file), &systemd).unwrap().data_dir,
        PathBuf::from("/var/lib/stele")
    );
    let both = env_of(&[
        ("STATE_DIRECTORY", "/var/lib/stele"),
        ("STELE_DATA_DIR", "/srv/env"),
    ]);
    let mut c = Config::load(Some(&file), &both).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/srv/env"));
    c.apply_flags(&Flags {
        data_dir: Some("/srv/flag".into()),
        ..Flags::default()
    });
    assert_eq!(c.data_dir, PathBuf::from("/srv/flag"));
}

#[test]
fn precedence_is_defaults_file_environment_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stele.toml");
    std::fs::write(
            &file,
            "listen = \"127.0.0.1:1001\"\n[limits]\nconnections_max = 11\nrequest_timeout_secs = 12\nbody_bytes_max = 13\n[log]\nsegment_bytes_max = 8192\n",
        )
        .unwrap();
    // File over defaults.
    let c = Config::load(Some(&file), no_env).unwrap();
    assert_eq!(c.listen.port(), 1001);
    assert_eq!(c.limits.connections_max, 11);
    assert_eq!(c.limits.streams_max, Limits::DEFAULT.streams_max);
    // Environment over file.
    let env = env_of(&[
        ("STELE_LISTEN", "127.0.0.1:2002"),
        ("STELE_LIMITS_CONNECTIONS_MAX", "21"),
        ("STELE_LIMITS_REQUEST_TIMEOUT_SECS", "22"),
        ("STELE_LIMITS_BODY_BYTES_MAX", "23"),
        ("STELE_LOG_SEGMENT_BYTES_MAX", "16384"),
        ("STELE_LIMITS_STREAMS_MAX", "99"), // not an override: ignored
        ("STELE_DATA_DIR", ""),             // empty: unset
    ]);
    let mut c = Config::load(Some(&file), &env).unwrap();
    assert_eq!(c.listen.port(), 2002);
    assert_eq!(
        (
            c.limits.connections_max,
            c.limits.request_timeout_secs,
            c.limits.body_bytes_max
        ),
        (21, 22, 23)
    );
    assert_eq!(c.log.segment_bytes_max, 16384);
    assert_eq!(c.limits.streams_max, Limits::DEFAULT.streams_max);
    assert_eq!(c.data_dir, PathBuf::from("data"));
    let mut overrides = c.env_overrides();
    overrides.sort();
    assert_eq!(overrides.len(), 5, "{overrides:?}");
    assert!(overrides.contains(&("limits.connections_max", "STELE_LIMITS_CONNECTIONS_MAX")));
    // Flags over environment; an absent flag changes nothing.
    c.apply_flags(&Flags {
        listen: Some("127.0.0.1:3003".parse().unwrap()),
        connections_max: Some(31),
        ..Flags::default()
    });
    c.validate().unwrap();
    assert_eq!(c.listen.port(), 3003);
    assert_eq!(c.limits.connections_max, 31);
    assert_eq!(c.limits.request_timeout_secs, 22);
}

#[test]
fn every_environment_override_and_flag_sets_its_key() {
    for (var, key) in ENV_OVERRIDES {
        let value = match *key {
            "listen" => "127.0.0.1:9999",
            "data_dir" => "/srv/x",
            "log.segment_bytes_max" => "65536",
            "detect.enabled" => "false",
            _ => "7",
        };
        let c = Config::load(None, env_of(&[(var, value)])).unwrap();
        assert_ne!(c, Config::default(), "{var}");
        assert_eq!(c.env_overrides(), vec![(*key, *var)]);
    }
    let flags = Flags {
        listen: Some("127.0.0.1:9".parse().unwrap()),
        data_dir: Some("/d".into()),
        body_bytes_max: Some(1),
        events_per_request_max: Some(2),
        url_bytes_max: Some(3),
        header_bytes_max: Some(4),
        header_read_timeout_secs: Some(5),
        request_timeout_secs: Some(6),
        write_stall_timeout_secs: Some(11),
        connections_max: Some(7),
        streams_max: Some(8),
        shutdown_grace_secs: Some(9),
        disk_reserve_bytes: Some(10),
    };
    let mut c = Config::default();
    c.apply_flags(&flags);
    assert_eq!(
        c.limits,
        Limits {
            body_bytes_max: 1,
            events_per_request_max: 2,
            url_bytes_max: 3,
            header_bytes_max: 4,
            header_read_timeout_secs: 5,
            request_timeout_secs: 6,
            write_stall_timeout_secs: 11,
            connections_max: 7,
            streams_max: 8,
            shutdown_grace_secs: 9,
            disk_reserve_bytes: 10,
        }
    );
    assert_eq!(
        (c.listen.port(), c.data_dir.as_path()),
        (9, Path::new("/d"))
    );
}

#[test]
fn invalid_environment_values_name_the_variable() {
    for (var, value, fragment) in [
        (
            "STELE_LIMITS_CONNECTIONS_MAX",
            "lots",
            "expected a non-negative whole number (invalid digit found in string)",
        ),
        (
            "STELE_LIMITS_BODY_BYTES_MAX",
            "-5",
            "expected a non-negative whole number",
        ),
        (
            "STELE_LIMITS_REQUEST_TIMEOUT_SECS",
            "30s",
            "expected a non-negative whole number",
        ),
        (
            "STELE_LOG_SEGMENT_BYTES_MAX",
            "99999999999999999999999",
            "number too large",
        ),
        ("STELE_LISTEN", "localhost:7070", "expected ADDRESS:PORT"),
    ] {
        let e = Config::load(None, env_of(&[(var, value)])).unwrap_err();
        assert!(matches!(e, ConfigError::Env { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{var}: {value:?} is not a valid ")),
            "{msg}"
        );
        assert!(msg.contains(fragment), "{msg}");
        assert_eq!(e.exit_code(), 1);
    }
    // A value that parses but is out of range: the variable is named too.
    let e = Config::load(None, env_of(&[("STELE_LIMITS_CONNECTIONS_MAX", "0")])).unwrap_err();
    assert_eq!(e.key(), Some("limits.connections_max"));
    assert_eq!(
        e.to_string(),
        "STELE_LIMITS_CONNECTIONS_MAX: limits.connections_max must be at least 1, got 0 \
             (allowed: 1 to 1048576 connections)"
    );
}

#[test]
fn a_bad_flag_value_names_the_flag() {
    let mut c = Config::default();
    c.apply_flags(&Flags {
        streams_max: Some(0),
        ..Flags::default()
    });
    let e = c.validate().unwrap_err();
    // tests/http.rs looks for "streams_max must be at least 1".
    assert_eq!(
            e.to_string(),
            "--streams-max: limits.streams_max must be at least 1, got 0 (allowed: 1 to 1048576 streams)"
        );
}

#[test]
fn the_configuration_file_comes_from_the_flag_or_stele_config() {
    let env = env_of(&[(CONFIG_ENV, "/etc/stele/stele.toml")]);
    assert_eq!(
        config_path(None, &env),
        Some(PathBuf::from("/etc/stele/stele.toml"))
    );
    assert_eq!(
        config_path(Some(Path::new("x.toml")), &env),
        Some(PathBuf::from("x.toml"))
    );
    assert_eq!(config_path(None, no_env), None);
    assert_eq!(config_path(None, env_of(&[(CONFIG_ENV, "")])), None);
}

#[test]
fn processes_values_out_of_range_name_the_key_and_the_file() {
    for (text, key) in [
        (
            "[processes]\nhorizon_hours = 0\n",
            "processes.horizon_hours",
        ),
        ("[processes]\nruns_max = 2000000\n", "processes.runs_max"),
        ("[processes]\nstuck_factor = 0\n", "processes.stuck_factor"),
        (
            "[processes]\nstuck_min_secs = 600\nstuck_max_secs = 60\n",
            "processes.stuck_max_secs",
        ),
    ] {
        let (got, msg) = err(text);
        assert_eq!(got.as_deref(), Some(key), "{text}: {msg}");
        assert!(msg.contains("t.toml"), "{msg}");
        assert!(msg.contains(&format!("{key} must be between")), "{msg}");
    }
    let (_, msg) = err("[processes]\nhorizon_days = 7\n");
    assert!(msg.contains("unknown key `horizon_days`"), "{msg}");
    let c = check("[processes]\nstuck_max_secs = 3600\nruns_max = 10\n").unwrap();
    assert_eq!(c.processes.runs().tracked_max, 10);
    assert_eq!(c.processes.runs().stuck.max_micros, 3_600_000_000);
}

#[test]
fn one_write_holds_the_largest_request_the_limits_let_in_within_the_torn_window() {
    let mut c = Config::default();
    c.limits.body_bytes_max = 1000;
    c.limits.events_per_request_max = 1;
    assert_eq!(
        c.log_config().write_bytes_max,
        crate::log::WRITE_BYTES_MAX_DEFAULT
    );
    c.limits.body_bytes_max = 40 << 20;
    c.limits.events_per_request_max = 10_000;
    assert_eq!(c.limits.write_bytes_max(), (40 << 20) + 10_000 * 1024);
    c.limits.body_bytes_max = 1 << 30;
    assert_eq!(
        c.limits.write_bytes_max() as u64,
        crate::log::TORN_WINDOW_BYTES
    );
    // What the log accepts.
    let log = c.log_config();
    let tmp = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(crate::clock::ManualClock::new(1_700_000_000_000_000));
    crate::log::Log::open(tmp.path(), log, clock).expect("the log takes the largest write");
}
