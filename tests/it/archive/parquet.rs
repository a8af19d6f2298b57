//! The archive's Parquet files read by DuckDB (`scripts/parquet-stats.py`)
//! give the counts and groups of `/v1/stats` over the same days.

use super::upload::day_of;
use super::*;
use crate::support::s3::s3_or_skip;

/// Runs the DuckDB script over `dir` with `args`; its JSON answer.
fn duckdb(dir: &Path, args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/parquet-stats.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(dir)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "parquet-stats.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn duckdb_over_the_parquet_files_counts_and_groups_as_v1_stats() {
    let Some(s3) = s3_or_skip("archive_parquet") else {
        return;
    };
    let bucket = s3.bucket("parquet", None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (clock, _) = history(&dir, 3, 700, 8);
    let creds = credentials(&s3, tmp.path());
    let cfg = archived(&dir, &bucket, "n1", &s3.endpoint, &creds);
    let s = Server::start_on(cfg.serve_config(None), clock.clone());
    wait_archived(&s, &clock);
    // The day files, as a SQL engine would read them (Hive partitions).
    let files = tmp.path().join("parquet");
    let mut bytes = 0;
    for (key, size) in bucket.list("stele/node=n1/events") {
        let rel = key.strip_prefix("stele/node=n1/").unwrap();
        let path = files.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bucket.get(&key)).unwrap();
        bytes += size;
    }
    eprintln!(
        "parquet: {bytes} bytes for 2100 events: {} bytes an event",
        bytes / 2100
    );
    let since = format!("{}T00:00:00Z", day_of(&clock, -3));
    let until = format!("{}T00:00:00Z", day_of(&clock, 0));
    let now = crate::support::time::ts(clock.now_micros());
    let window = format!("since={since}&until={until}");
    // The full object, by day.
    let (st, _, api) = s.get(&format!("/v1/stats?{window}&interval=day"));
    assert_eq!(st, 200, "{api}");
    let sql = duckdb(
        &files,
        &[
            "--since",
            &since,
            "--until",
            &until,
            "--now",
            &now,
            "--interval",
            "day",
        ],
    );
    assert_eq!(api["total"], 2100, "{api:#}");
    for part in [
        "total",
        "last_24h",
        "by_action",
        "by_category",
        "by_entity_type",
        "by_severity",
        "by_status",
        "by_source",
        "histogram",
        "top_users",
        "active_users",
        "failure_rate",
        "error_severity_rate",
        "by_risk",
    ] {
        assert_eq!(
            sql[part], api[part],
            "{part} differs:\nduckdb {sql:#}\napi {api:#}"
        );
    }
    // Groups, tenant among them (which the full object has not).
    let fields = "tenant,actor,user_id,entity_type";
    let (_, _, api) = s.get(&format!("/v1/stats?{window}&group_by={fields}&top=20"));
    let sql = duckdb(
        &files,
        &[
            "--since",
            &since,
            "--until",
            &until,
            "--group-by",
            fields,
            "--top",
            "20",
        ],
    );
    assert_eq!(sql, api, "groups differ");
    // One day alone, one tenant.
    let d1 = day_of(&clock, -2);
    let tenant = api["groups"][0]["values"][0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, api) = s.get(&format!(
        "/v1/stats?since={d1}T00:00:00Z&until={}T00:00:00Z&tenant={tenant}&group_by=action",
        day_of(&clock, -1)
    ));
    let sql = duckdb(
        &files.join(format!("events/day={d1}")),
        &["--tenant", &tenant, "--group-by", "action"],
    );
    assert_eq!(sql, api, "one day, one tenant");
}
