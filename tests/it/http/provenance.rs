//! What only the server writes: provenance stamped by the server (a client
//! cannot post it; `stele append` stamps `cli`), and the categories and
//! actions of Stele's own records refused over HTTP and in `stele append`.

use super::*;

/// The problems of an `invalid-events` answer: (index, field, kind).
fn event_problems(p: &Value) -> Vec<(u64, String, String)> {
    p["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `stele append --data-dir DATA` with `line` on stdin.
fn stele_append(data: &std::path::Path, line: &str) -> std::process::Output {
    let mut child = stele()
        .args(["append", "--data-dir", data.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Provenance is the server's: every stored event says who stored it and
/// from where, a client cannot set it, and `stele append` stamps `cli`.
#[test]
fn provenance_is_stamped_by_the_server_and_cannot_be_posted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());

    // Forged provenance is an unknown field, named as the server's.
    let (st, _, p) = d.post(&json!([
        {"action": "login", "actor": "a", "ingested_by": "billing-api"},
        {"action": "login", "actor": "a", "client_addr": "10.0.0.1"}
    ]));
    assert_eq!(st, 400, "{p}");
    assert_eq!(
        event_problems(&p),
        vec![
            (0, "ingested_by".into(), "unknown_field".into()),
            (1, "client_addr".into(), "unknown_field".into())
        ],
        "{p}"
    );
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("assigned by the server"),
        "{p}"
    );
    let (st, _, p) = d.post(&json!({"id": "p-1", "action": "login", "actor": "k"}));
    assert_eq!(st, 201, "{p}");

    // Stamped: served without keys, so `loopback` and the peer address.
    let (st, _, ev) = d.get("/v1/events/p-1");
    assert_eq!(st, 200, "{ev}");
    assert_eq!(ev["ingested_by"], "loopback", "{ev}");
    assert_eq!(ev["client_addr"], "127.0.0.1", "{ev}");
    // A filter, and the export's columns.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, page) = d.get("/v1/events?ingested_by=loopback");
        if page["events"].as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "never indexed: {page}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, _, page) = d.get("/v1/events?ingested_by=cli");
    assert_eq!(page["events"], json!([]), "{page}");
    // (Exports stop at the indexer's checkpoint, which may trail the
    // listing above by a moment.)
    let csv = loop {
        let (_, csv) = d.get_raw("/v1/export?format=csv");
        if csv.lines().count() == 2 {
            break csv;
        }
        assert!(Instant::now() < deadline, "never exported: {csv}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].contains(",metadata,ingested_by,client_addr,"),
        "{csv}"
    );
    assert!(lines[1].contains(",loopback,127.0.0.1,"), "{csv}");
    drop(d);

    // `stele append` stamps `cli` without an address, and refuses forgeries.
    let data = tmp.path().join("cli");
    let out = stele_append(
        &data,
        r#"{"action":"login","actor":"k","ingested_by":"stele"}"#,
    );
    assert!(!out.status.success(), "a forged ingested_by was appended");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("assigned by the server"), "{err}");
    let out = stele_append(&data, r#"{"id":"c-1","action":"login","actor":"k"}"#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = stele()
        .args(["cat", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let all: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], "c-1");
    assert_eq!(all[0]["ingested_by"], "cli");
    assert!(all[0].get("client_addr").is_none(), "{}", all[0]);
}

/// A client cannot post the categories and actions Stele writes itself
/// (forged `audit_access` records, `stele.*` findings), over HTTP or with
/// `stele append`; the generic actions Stele's records use stay the
/// clients'.
#[test]
fn reserved_kinds_are_refused_over_http_and_in_stele_append() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let (st, _, p) = d.post(&json!([
        {"action": "search", "actor": "k", "category": "billing"},
        {"action": "search", "actor": "k", "category": "audit_access", "source": "integration"},
        {"action": "get", "actor": "k", "category": "AUDIT_Access"},
        {"action": "stele.alert", "source": "system"},
        {"action": "create", "actor": "k", "category": "stele.findings"}
    ]));
    assert_eq!(st, 400, "{p}");
    assert_eq!(p["type"], "https://stele.dev/problems/invalid-events");
    assert_eq!(
        event_problems(&p),
        vec![
            (1, "category".into(), "reserved".into()),
            (2, "category".into(), "reserved".into()),
            (3, "action".into(), "reserved".into()),
            (4, "category".into(), "reserved".into())
        ],
        "{p}"
    );
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("reserved for the events Stele writes itself"),
        "{p}"
    );
    // Generic actions Stele's audit records also use stay the clients'.
    let (st, _, p) = d.post(&json!({"id": "p-1", "action": "search", "actor": "k",
        "category": "billing"}));
    assert_eq!(st, 201, "{p}");
    // Nothing of the refused request was stored.
    let (_, _, m) = d.get("/v1/segments");
    let stored: u64 = m["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 1, "{m}");
    drop(d);

    let data = tmp.path().join("cli");
    for forged in [
        r#"{"action":"search","actor":"k","category":"audit_access"}"#,
        r#"{"action":"stele.alert","source":"system"}"#,
    ] {
        let out = stele_append(&data, forged);
        assert!(!out.status.success(), "{forged} was appended");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("reserved"), "{err}");
    }
    let out = stele()
        .args(["cat", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
