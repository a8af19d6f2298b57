//! `GET /v1/processes`, `/v1/processes/{id}`, `/v1/batches`,
//! `/v1/batches/{id}`: a generated workload of known truth (several process
//! names and tenants; runs that succeed, fail, end partial or canceled; runs
//! without `started`, with a retried `finished`, posted out of order; runs
//! that never finish, one stuck by its process's p95, one by `stuck_max`, one
//! still running; batch operations with items inside runs), every figure
//! compared with a brute-force computation from the posted events, the same
//! answers after a restart, tenant scopes, a run's events paged, and
//! eviction beyond `runs_max` with its metrics.

use crate::auth::{key_toml, token, UNLIMITED_ROLES};
use crate::support::http::{send, Body};
use crate::support::inproc::Server;
use crate::support::Served;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::time::{ts, MIN, SEC};

/// `[processes]`: stuck after 3 × p95 (at least 1 minute), always after an hour.
const PROCESSES_TOML: &str =
    "[processes]\nstuck_factor = 3\nstuck_min_secs = 60\nstuck_max_secs = 3600\n";

/// One run as the test means it: what it posts and what it expects.
struct Planned {
    tenant: &'static str,
    name: &'static str,
    id: String,
    start: i64,
    /// (finish time, outcome status, client duration_ms).
    finish: Option<(i64, &'static str, Option<u64>)>,
    with_started: bool,
    retried_finish: bool,
    reversed: bool,
    /// Error-severity events it posts (its failures count too).
    errors: u64,
    items: (u64, u64, u64),
    batch: bool,
}

fn plan(now: i64) -> Vec<Planned> {
    let outcomes = [
        "success", "failure", "partial", "canceled", "success", "success",
    ];
    let mut out = Vec::new();
    for (ti, tenant) in ["acme", "globex"].into_iter().enumerate() {
        for (ni, name) in ["nightly_export", "invoice_sync"].into_iter().enumerate() {
            for (k, outcome) in outcomes.into_iter().enumerate() {
                let start =
                    now - (k as i64 + 1) * 90 * MIN - (ni as i64) * 7 * MIN - ti as i64 * SEC;
                let dur = (60 + 37 * k as i64 + 11 * ni as i64) * SEC;
                out.push(Planned {
                    tenant,
                    name,
                    id: format!("{tenant}-{name}-{k}"),
                    start,
                    finish: Some((start + dur, outcome, (k == 2).then_some(4_242))),
                    with_started: k != 3,
                    retried_finish: k == 1,
                    reversed: k == 4,
                    errors: (k % 3) as u64,
                    items: (100 + k as u64, 90 + k as u64, k as u64),
                    batch: k % 2 == 0,
                });
            }
            // Never finished: stuck past 3 × p95 (minutes), and one still running.
            let base = |id: &str, start: i64| Planned {
                tenant,
                name,
                id: format!("{tenant}-{name}-{id}"),
                start,
                finish: None,
                with_started: true,
                retried_finish: false,
                reversed: false,
                errors: 1,
                items: (50, 10, 1),
                batch: false,
            };
            let offset = (ni as i64) * 2 * MIN + ti as i64 * SEC;
            out.push(base("hung", now - 40 * MIN - offset));
            out.push(base("live", now - 30 * SEC - offset));
        }
        // A process without a finished run: stuck only past stuck_max (1 h).
        out.push(Planned {
            tenant,
            name: "reindex",
            id: format!("{tenant}-reindex-0"),
            start: now - 2 * 60 * MIN,
            finish: None,
            with_started: true,
            retried_finish: false,
            reversed: false,
            errors: 0,
            items: (7, 3, 0),
            batch: true,
        });
    }
    out
}

/// The events of a run, in posting order.
fn events_of(p: &Planned) -> Vec<Value> {
    let base = |phase: Option<&str>, at: i64| {
        let mut e = json!({
            "action": "run", "tenant": p.tenant, "process_name": p.name,
            "process_id": p.id, "timestamp": ts(at), "source": "scheduled",
        });
        if let Some(ph) = phase {
            e["phase"] = json!(ph);
        }
        e
    };
    let mut evs = Vec::new();
    if p.with_started {
        let mut e = base(Some("started"), p.start);
        e["items_total"] = json!(p.items.0);
        evs.push(e);
    }
    let mid = p.start + 5 * SEC;
    let mut prog = base(Some("progress"), mid);
    prog["items_processed"] = json!(p.items.1 / 2);
    evs.push(prog);
    for i in 0..p.errors {
        let mut e = base(None, mid + SEC);
        e["action"] = json!("export_row");
        e["severity"] = json!("error");
        e["description"] = json!(format!("row {i} of {} failed", p.id));
        evs.push(e);
    }
    let mut work = base(None, mid + 2 * SEC);
    work["action"] = json!("export_row");
    work["status"] = json!("success");
    evs.push(work);
    if p.batch {
        for (ph, extra) in [
            ("started", json!({"items_total": 20})),
            (
                "progress",
                json!({"items_processed": 10, "items_failed": 1}),
            ),
            (
                "finished",
                json!({"items_processed": 20, "items_failed": 2, "status": "partial"}),
            ),
        ] {
            let mut e = base(Some(ph), mid + 3 * SEC);
            e["action"] = json!("bulk_update");
            e["batch_id"] = json!(format!("b-{}", p.id));
            for (k, v) in extra.as_object().unwrap() {
                e[k] = v.clone();
            }
            evs.push(e);
        }
    }
    let mut last = base(Some("progress"), mid + 4 * SEC);
    last["items_processed"] = json!(p.items.1);
    last["items_failed"] = json!(p.items.2);
    evs.push(last);
    if let Some((at, status, d)) = p.finish {
        let mut e = base(Some("finished"), at);
        e["status"] = json!(status);
        if let Some(d) = d {
            e["duration_ms"] = json!(d);
        }
        evs.push(e.clone());
        if p.retried_finish {
            evs.push(e);
        }
    }
    if p.reversed {
        evs.reverse();
    }
    evs
}

fn outcome(s: &str) -> &'static str {
    match s {
        "success" => "succeeded",
        "failure" => "failed",
        "partial" => "partial",
        _ => "canceled",
    }
}

/// Nearest rank of sorted `d`.
fn rank(d: &[i64], p: usize) -> Option<i64> {
    (1..=d.len())
        .find(|r| r * 100 >= p * d.len())
        .map(|r| d[r - 1])
}

/// What `GET /v1/processes` must say, by the definitions.
fn expected_status(p: &Planned, all: &[Planned], now: i64) -> String {
    if let Some((_, s, _)) = p.finish {
        return outcome(s).into();
    }
    let mut d: Vec<i64> = all
        .iter()
        .filter(|q| q.tenant == p.tenant && q.name == p.name)
        .filter_map(duration_ms)
        .collect();
    d.sort();
    let elapsed = now - start_of(p);
    let by_p95 = rank(&d, 95).map(|p95| (p95 * 1000 * 3).max(MIN));
    if elapsed > 60 * MIN || by_p95.is_some_and(|t| elapsed > t) {
        "stuck".into()
    } else {
        "running".into()
    }
}

/// Its start by the definitions: `started`, else its earliest event (the
/// first progress report, 5 s later).
fn start_of(p: &Planned) -> i64 {
    if p.with_started {
        p.start
    } else {
        p.start + 5 * SEC
    }
}

fn duration_ms(p: &Planned) -> Option<i64> {
    p.finish
        .map(|(at, _, d)| d.map_or((at - start_of(p)) / 1000, |d| d as i64))
}

/// The last value of `field` among `evs` (in posting order, which is seq
/// order) that `pick` keeps.
fn last_of(evs: &[Value], field: &str, pick: impl Fn(&Value) -> bool) -> Value {
    evs.iter()
        .rev()
        .filter(|e| pick(e))
        .find_map(|e| e.get(field).cloned())
        .unwrap_or(Value::Null)
}

/// The time of an answer, in µs.
fn generated_at(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v["generated_at"].as_str().unwrap())
        .unwrap()
        .timestamp_micros()
}

fn wait_for(d: &Server, path: &str, key: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, v) = d.get(path);
        assert_eq!(st, 200, "{path}: {v}");
        if v[key].as_array().map(Vec::len) == Some(n) && v["complete"] == true {
            return v;
        }
        assert!(Instant::now() < deadline, "{path}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn check_runs(v: &Value, plans: &[Planned], now: i64) {
    let runs: BTreeMap<String, &Value> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r))
        .collect();
    assert_eq!(runs.len(), plans.len());
    for p in plans {
        let r = runs[&p.id];
        let evs = events_of(p);
        assert_eq!(r["tenant"], p.tenant, "{}", p.id);
        assert_eq!(r["process_name"], p.name, "{}", p.id);
        assert_eq!(r["status"], expected_status(p, plans, now), "{}", p.id);
        assert_eq!(r["started_at"], ts(start_of(p)), "{}", p.id);
        assert_eq!(
            r["finished_at"],
            json!(p.finish.map(|f| ts(f.0))),
            "{}",
            p.id
        );
        if let Some(d) = duration_ms(p) {
            assert_eq!(r["duration_ms"], d, "{}", p.id);
        }
        assert_eq!(r["events"], evs.len(), "{}", p.id);
        // Errors: failures and error severities; descriptions, else actions.
        let errs: Vec<&Value> = evs
            .iter()
            .filter(|e| e["severity"] == "error" || e["status"] == "failure")
            .map(|e| e.get("description").unwrap_or(&e["action"]))
            .collect();
        assert_eq!(r["errors"], errs.len(), "{}", p.id);
        assert_eq!(
            r["last_errors"],
            json!(errs[errs.len().saturating_sub(3)..]),
            "{}",
            p.id
        );
        // Counts: the last reported, batch events' counts being the batch's.
        let own = |e: &Value| e.get("batch_id").is_none();
        for field in ["items_total", "items_processed", "items_failed"] {
            assert_eq!(r[field], last_of(&evs, field, own), "{} {field}", p.id);
        }
    }
}

fn check_figures(v: &Value, plans: &[Planned], now: i64) {
    let mut by: BTreeMap<(&str, &str), Vec<&Planned>> = BTreeMap::new();
    for p in plans {
        by.entry((p.tenant, p.name)).or_default().push(p);
    }
    let figs = v["processes"].as_array().unwrap();
    assert_eq!(figs.len(), by.len());
    for (f, ((tenant, name), ps)) in figs.iter().zip(&by) {
        assert_eq!(
            (&f["tenant"], &f["process_name"]),
            (&json!(tenant), &json!(name))
        );
        assert_eq!(f["executions"], ps.len());
        let statuses: Vec<String> = ps.iter().map(|p| expected_status(p, plans, now)).collect();
        for s in [
            "running",
            "stuck",
            "succeeded",
            "failed",
            "partial",
            "canceled",
        ] {
            let n = statuses.iter().filter(|x| *x == s).count();
            assert_eq!(f["runs_by_status"][s], n, "{name} {s}");
        }
        let mut d: Vec<i64> = ps.iter().filter_map(|p| duration_ms(p)).collect();
        d.sort();
        assert_eq!(f["duration_p50_ms"], json!(rank(&d, 50)), "{name}");
        assert_eq!(f["duration_p95_ms"], json!(rank(&d, 95)), "{name}");
        let ok = statuses.iter().filter(|s| *s == "succeeded").count();
        let rate = (!d.is_empty()).then(|| ok as f64 / d.len() as f64);
        assert_eq!(f["success_rate"], json!(rate), "{name}");
        let mut starts: Vec<i64> = ps.iter().map(|p| start_of(p)).collect();
        starts.sort();
        let mut gaps: Vec<i64> = starts.windows(2).map(|w| (w[1] - w[0]) / 1000).collect();
        gaps.sort();
        assert_eq!(
            f["median_start_gap_ms"],
            json!(gaps.get((gaps.len().max(1) - 1) / 2))
        );
        let window = (now - starts[0]).max(60 * MIN) as f64;
        let per_day = ps.len() as f64 * 86_400.0 * SEC as f64 / window;
        let got = f["runs_per_day"].as_f64().unwrap();
        assert!(
            (got - per_day).abs() / per_day < 1e-3,
            "{name}: {got} vs {per_day}"
        );
        let last = ps.iter().max_by_key(|p| p.start).unwrap();
        assert_eq!(f["last_run"]["id"], last.id);
    }
}

fn serve(dir: &Path, extra: &str) -> Server {
    let conf = dir.join("stele.toml");
    std::fs::write(&conf, format!("{PROCESSES_TOML}{extra}")).unwrap();
    Server::start_with_file(&dir.join("data"), &conf)
}

fn post_all(d: &Server, plans: &[Planned]) -> usize {
    let evs: Vec<Value> = plans.iter().flat_map(events_of).collect();
    for chunk in evs.chunks(500) {
        let (st, _, v) = d.post(&Value::Array(chunk.to_vec()));
        assert_eq!(st, 201, "{v}");
    }
    evs.len()
}

/// The answer without what moves with `now`.
fn steady(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("generated_at");
    for r in v["runs"].as_array_mut().unwrap() {
        if r["finished_at"].is_null() {
            r.as_object_mut().unwrap().remove("duration_ms");
        }
    }
    for f in v["processes"].as_array_mut().unwrap() {
        f.as_object_mut().unwrap().remove("runs_per_day");
    }
    v
}

#[test]
fn process_runs_and_stats_equal_a_brute_force_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let plans = plan(now);
    let (before, batches_before) = {
        let d = serve(tmp.path(), "");
        post_all(&d, &plans);
        let v = wait_for(&d, "/v1/processes?limit=1000", "runs", plans.len());
        let now = generated_at(&v);
        check_runs(&v, &plans, now);
        check_figures(&v, &plans, now);
        assert_eq!(v["matched"], plans.len());
        assert_eq!(v["tracked"], plans.len());
        assert_eq!(v["evicted"], 0);

        // Filters: tenant, name, status, since/until on the start, limit.
        let (_, _, f) = d.get("/v1/processes?tenant=acme&process_name=invoice_sync&status=stuck");
        let ids: Vec<&str> = f["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["acme-invoice_sync-hung"]);
        assert_eq!(f["processes"].as_array().unwrap().len(), 1);
        let (_, _, f) = d.get("/v1/processes?status=running");
        let mut ids: Vec<&str> = f["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                "acme-invoice_sync-live",
                "acme-nightly_export-live",
                "globex-invoice_sync-live",
                "globex-nightly_export-live"
            ]
        );
        let (_, _, f) = d.get("/v1/processes?since=1h&limit=2");
        let recent = plans.iter().filter(|p| p.start >= now - 60 * MIN).count();
        assert_eq!(f["matched"], recent);
        assert_eq!(f["runs"].as_array().unwrap().len(), 2);
        assert_eq!(
            f["runs"][0]["id"],
            plans.iter().max_by_key(|p| p.start).unwrap().id
        );

        // Batches: action, run, status and items.
        let with_batch: Vec<&Planned> = plans.iter().filter(|p| p.batch).collect();
        let b = wait_for(&d, "/v1/batches?limit=1000", "batches", with_batch.len());
        for p in &with_batch {
            let id = format!("b-{}", p.id);
            let r = b["batches"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == id.as_str())
                .unwrap();
            let evs: Vec<Value> = events_of(p)
                .into_iter()
                .filter(|e| e["batch_id"] == id.as_str())
                .collect();
            assert_eq!(r["action"], "bulk_update", "{id}");
            assert_eq!(r["process_id"], p.id.as_str());
            assert_eq!(r["status"], "partial");
            for field in ["items_total", "items_processed", "items_failed"] {
                assert_eq!(r[field], last_of(&evs, field, |_| true), "{id} {field}");
            }
            assert_eq!(r["events"], 3);
        }
        let ops = b["operations"].as_array().unwrap();
        assert_eq!(ops.len(), 2, "one bulk_update figure per tenant: {ops:?}");
        for o in ops {
            assert_eq!(o["runs_by_status"]["partial"], o["executions"]);
        }
        (steady(v), steady_batches(b))
    };
    // A restart rebuilds the same answers from the log.
    let d = serve(tmp.path(), "");
    let v = wait_for(&d, "/v1/processes?limit=1000", "runs", plans.len());
    assert_eq!(steady(v), before);
    let b = wait_for(
        &d,
        "/v1/batches?limit=1000",
        "batches",
        batches_before["batches"].as_array().unwrap().len(),
    );
    assert_eq!(steady_batches(b), batches_before);
}

fn steady_batches(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("generated_at");
    for f in v["operations"].as_array_mut().unwrap() {
        f.as_object_mut().unwrap().remove("runs_per_day");
    }
    v
}

#[test]
fn a_run_with_its_events_paged_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let d = serve(tmp.path(), "");
    let now = chrono::Utc::now().timestamp_micros();
    let plans = plan(now);
    post_all(&d, &plans);
    wait_for(&d, "/v1/processes?limit=1000", "runs", plans.len());
    let p = plans.iter().find(|p| p.batch && p.errors == 2).unwrap();
    let expected = events_of(p).len();
    let mut path = format!("/v1/processes/{}?limit=3", p.id);
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    // The events come from the index: wait until it has them all.
    while d
        .get(&format!("/v1/events?process_id={}&limit=100", p.id))
        .2["events"]
        .as_array()
        .unwrap()
        .len()
        < expected
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        let (st, _, v) = d.get(&path);
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["run"]["id"], p.id.as_str());
        assert_eq!(v["run"]["events"], expected);
        for e in v["events"].as_array().unwrap() {
            assert_eq!(e["process_id"], p.id.as_str());
            seen += 1;
        }
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/processes/{}?limit=3&cursor={c}", p.id),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    // A batch and its events.
    let (st, _, v) = d.get(&format!("/v1/batches/b-{}", p.id));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["batch"]["action"], "bulk_update");
    assert_eq!(v["events"].as_array().unwrap().len(), 3);
    // Ids are per tenant: one id in two tenants is ambiguous until `tenant` picks.
    let shared: Vec<Value> = ["acme", "globex"]
        .iter()
        .map(|t| json!({"action": "run", "source": "system", "tenant": t, "process_id": "shared", "phase": "started"}))
        .collect();
    let (st, _, v) = d.post(&Value::Array(shared));
    assert_eq!(st, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, v) = d.get("/v1/processes/shared");
        if st == 409 {
            assert_eq!(v["tenants"], json!(["acme", "globex"]), "{v}");
            assert_eq!(v["type"], "https://stele.dev/problems/ambiguous-id");
            break;
        }
        assert!(Instant::now() < deadline, "{st} {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, v) = d.get("/v1/processes/shared?tenant=globex");
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["run"]["tenant"], "globex");
        let evs = v["events"].as_array().unwrap();
        assert!(evs.iter().all(|e| e["tenant"] == "globex"), "{v}");
        if evs.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Refusals.
    let (st, _, v) = d.get("/v1/processes/no-such-run");
    assert_eq!(
        (st, &v["type"]),
        (404, &json!("https://stele.dev/problems/not-found")),
        "{v}"
    );
    let (st, _, v) = d.get("/v1/processes?bogus=1");
    assert_eq!((st, &v["field"]), (400, &json!("bogus")), "{v}");
    let (st, _, v) = d.get(&format!("/v1/processes/{}?process_id=x", p.id));
    assert_eq!((st, &v["field"]), (400, &json!("process_id")), "{v}");
    let (st, _, v) = d.get("/v1/processes?status=sleeping");
    assert_eq!((st, &v["field"]), (400, &json!("status")), "{v}");
    let (st, _, v) = d.get("/v1/processes?limit=1001");
    assert_eq!((st, &v["field"]), (400, &json!("limit")), "{v}");
}

#[test]
fn tenant_scoped_keys_see_only_their_tenants_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = format!("[auth]\n{UNLIMITED_ROLES}");
    conf += &key_toml("ing", &token("ing"), &["ingest"], &["*"], "");
    conf += &key_toml("rd-acme", &token("rd-acme"), &["read"], &["acme"], "");
    conf += &key_toml("rd-all", &token("rd-all"), &["read"], &["*"], "");
    let d = serve(tmp.path(), &conf);
    let now = chrono::Utc::now().timestamp_micros();
    let plans = plan(now);
    let evs: Vec<Value> = plans.iter().flat_map(events_of).collect();
    let ing = format!("Bearer {}", token("ing"));
    let body = Value::Array(evs).to_string();
    let r = send(
        &d.addr,
        "POST",
        "/v1/events",
        &[
            ("Authorization", &ing),
            ("Content-Type", "application/json"),
        ],
        Body::Sized(body.as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let get = |key: &str, path: &str| {
        let auth = format!("Bearer {}", token(key));
        let r = send(
            &d.addr,
            "GET",
            path,
            &[("Authorization", &auth)],
            Body::None,
        );
        (r.status, r.json())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while get("rd-all", "/v1/processes?limit=1000").1["runs"]
        .as_array()
        .unwrap()
        .len()
        < plans.len()
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, v) = get("rd-acme", "/v1/processes?limit=1000");
    assert_eq!(st, 200);
    let acme = plans.iter().filter(|p| p.tenant == "acme").count();
    assert_eq!(v["runs"].as_array().unwrap().len(), acme);
    assert!(v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["tenant"] == "acme"));
    assert!(v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["tenant"] == "acme"));
    // Asking for another tenant gives nothing, not an error.
    let (st, v) = get("rd-acme", "/v1/processes?tenant=globex");
    assert_eq!((st, v["runs"].as_array().unwrap().len()), (200, 0));
    // Another tenant's run is as absent as one never seen.
    let (st, _) = get("rd-acme", "/v1/processes/globex-invoice_sync-0");
    assert_eq!(st, 404);
    let (st, v) = get("rd-acme", "/v1/processes/acme-invoice_sync-0");
    assert_eq!(st, 200, "{v}");
    assert!(v["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant"] == "acme"));
    let (st, _) = get("rd-acme", "/v1/batches/b-globex-invoice_sync-0");
    assert_eq!(st, 404);
    let (st, v) = get("rd-all", "/v1/batches?tenant=globex&limit=1000");
    assert_eq!(st, 200);
    assert!(v["batches"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["tenant"] == "globex"));
    // Without a key: 401, like every read.
    let r = send(&d.addr, "GET", "/v1/processes", &[], Body::None);
    assert_eq!(r.status, 401);
}

#[test]
fn beyond_runs_max_the_oldest_finished_runs_are_evicted_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = serve(tmp.path(), "runs_max = 8\n");
    let mut evs = Vec::new();
    for i in 0..22 {
        let id = format!("r{i:02}");
        let base = json!({"action": "run", "source": "scheduled", "process_name": "job", "process_id": id});
        let mut started = base.clone();
        started["phase"] = json!("started");
        evs.push(started);
        if i < 20 {
            let mut finished = base;
            finished["phase"] = json!("finished");
            finished["status"] = json!("success");
            evs.push(finished);
        }
    }
    let (st, _, v) = d.post(&Value::Array(evs));
    assert_eq!(st, 201, "{v}");
    let v = wait_for(&d, "/v1/processes", "runs", 8);
    let mut ids: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    ids.sort();
    // The two running runs stay; of the finished ones, the newest six.
    assert_eq!(
        ids,
        ["r14", "r15", "r16", "r17", "r18", "r19", "r20", "r21"]
    );
    assert_eq!((&v["tracked"], &v["evicted"]), (&json!(8), &json!(14)));
    let (_, text) = d.get_raw("/metrics");
    for (series, value) in [
        ("stele_intel_tracked{kind=\"process\"}", "8"),
        ("stele_intel_evicted_total{kind=\"process\"}", "14"),
        ("stele_intel_tracked{kind=\"batch\"}", "0"),
    ] {
        let line = format!("{series} {value}");
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
}

#[test]
fn sighup_puts_new_stuck_thresholds_in_force_and_keeps_the_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let d = serve(tmp.path(), "");
    // Started two hours ago, no history: stuck only past stuck_max (1 h).
    let started = chrono::Utc::now() - chrono::Duration::hours(2);
    let (st, _, v) = d.post(&json!({
        "action": "sync", "source": "scheduled", "process_name": "nightly",
        "process_id": "n-1", "phase": "started",
        "timestamp": started.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    }));
    assert_eq!(st, 201, "{v}");
    let status = || wait_for(&d, "/v1/processes", "runs", 1)["runs"][0]["status"].clone();
    assert_eq!(status(), "stuck");
    // A longer bound, reloaded: running again (statuses are judged at read time).
    let conf = tmp.path().join("stele.toml");
    std::fs::write(
        &conf,
        "[processes]\nstuck_min_secs = 60\nstuck_max_secs = 10800\nruns_max = 5\n",
    )
    .unwrap();
    d.reload(&conf);
    assert_eq!(status(), "running");
    // The bounds size the trackers and stay: one more run is still tracked.
    std::fs::write(&conf, "[processes]\nstuck_max_secs = 3600\nruns_max = 1\n").unwrap();
    d.reload(&conf);
    assert_eq!(status(), "stuck");
    let (st, _, v) = d.post(&json!({
        "action": "sync", "source": "scheduled", "process_name": "nightly",
        "process_id": "n-2", "phase": "started",
    }));
    assert_eq!(st, 201, "{v}");
    let v = wait_for(&d, "/v1/processes", "runs", 2);
    assert_eq!(v["evicted"], 0, "{v}");
}
