//! Tenant scopes on every read path: ingest refused or filled in by a key's
//! tenants, every listing, search, get by id, stats, export (NDJSON and CSV) and
//! stream (replayed, live, resumed) showing a scoped key only its own tenant.

use super::*;

#[test]
fn tenant_isolation_on_every_read_path() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = format!("[auth]\n{UNLIMITED_ROLES}");
    conf += &key_toml("ing-all", &token("ing-all"), &["ingest"], &["*"], "");
    conf += &key_toml("ing-acme", &token("ing-acme"), &["ingest"], &["acme"], "");
    conf += &key_toml(
        "ing-multi",
        &token("ing-multi"),
        &["ingest"],
        &["acme", "globex"],
        "",
    );
    for (id, tenants) in [
        ("rd-acme", &["acme"][..]),
        ("rd-globex", &["globex"][..]),
        ("rd-all", &["*"][..]),
    ] {
        conf += &key_toml(id, &token(id), &["read", "export"], tenants, "");
    }
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = serve(tmp.path(), &conf);
    let a = d.addr.clone();
    let (ing_all, ing_acme, ing_multi) = (token("ing-all"), token("ing-acme"), token("ing-multi"));
    let (rd_acme, rd_globex, rd_all) = (token("rd-acme"), token("rd-globex"), token("rd-all"));

    // tenant -> ids posted
    let mut posted: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut batch = Vec::new();
    for (tenant, n) in [("acme", 6), ("globex", 5), ("initech", 2)] {
        for i in 0..n {
            let id = format!("{tenant}-{i}");
            batch.push(
                json!({"id": id, "action": "update", "actor": "alice", "user_id": "u1",
                "entity_type": "order", "entity_id": "7", "tenant": tenant,
                "description": "quarterly invoice review"}),
            );
            posted.entry(tenant).or_default().push(id);
        }
    }
    let r = post(&a, Some(&ing_all), &Value::Array(batch));
    assert_eq!(r.status, 201, "{}", r.brief());

    ingest_scopes(&a, &ing_acme, &ing_multi, &mut posted);

    for (t, ids) in &posted {
        wait_for_count(
            &a,
            &format!("/v1/events?tenant={t}&limit=100"),
            &rd_all,
            ids.len(),
        );
    }
    wait_all_indexed(&a);
    let r = get(&a, "/v1/events/notenant-1", Some(&rd_all));
    assert_eq!(r.json()["tenant"], "acme", "{}", r.brief());
    for id in ["tf-0", "tf-2", "tf-3"] {
        assert_eq!(
            get(&a, &format!("/v1/events/{id}"), Some(&rd_all)).status,
            404,
            "a refused batch stored {id}"
        );
    }

    let mut failures = Vec::new();
    for (tenant, tok, other) in [("acme", &rd_acme, "globex"), ("globex", &rd_globex, "acme")] {
        failures.extend(scoped_reads(&a, tok, &rd_all, tenant, other, &posted));
    }
    // The unscoped key sees every tenant (the checks above are not vacuous).
    let r = get(&a, "/v1/search?q=invoice&limit=100", Some(&rd_all));
    let with_tenant = r
        .events()
        .iter()
        .filter(|e| e["tenant"].is_string())
        .count();
    if with_tenant != 13 {
        failures.push(format!(
            "all: search: want 13 tenant events, got {}",
            r.brief()
        ));
    }

    // Cursors are bound to the scope.
    for path in ["/v1/events?limit=2", "/v1/entities/order/7/history?limit=2"] {
        let r = get(&a, path, Some(&rd_acme));
        let Some(cursor) = r.json()["next_cursor"].as_str().map(str::to_string) else {
            failures.push(format!("{path}: no next_cursor for acme: {}", r.brief()));
            continue;
        };
        let next = format!("{path}&cursor={cursor}");
        let own = get(&a, &next, Some(&rd_acme));
        failures.extend(only_tenant(
            &format!("acme: {path} page 2"),
            &own.events(),
            "acme",
            2,
        ));
        let r = get(&a, &next, Some(&rd_globex));
        if (r.status, r.kind().as_str()) != (400, "invalid-cursor") {
            failures.push(format!(
                "{path}: acme's cursor replayed by globex: want 400 invalid-cursor, got {}",
                r.brief()
            ));
        }
    }

    failures.extend(scoped_streams(
        &a,
        &ing_all,
        &rd_all,
        &rd_acme,
        &rd_globex,
        &mut posted,
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// How many events a scoped read must answer, all of the key's tenant.
#[derive(Clone, Copy)]
enum Want {
    /// Every event of the tenant.
    All,
    /// Those described as an invoice review (the ones posted in bulk).
    Described,
    /// User u1's: the described ones, plus `notenant-1` for acme.
    Timeline,
    /// 200 and no event at all.
    Nothing,
    /// 200 with only the tenant's events, or a 400 (full text naming
    /// another tenant may be refused).
    NoLeak,
}

/// Every read path a tenant-scoped key can take, one row a case: what, the
/// target (`{other}` is another tenant), and the answer wanted. Exports
/// are read as NDJSON lines; the rest as `events`.
#[rustfmt::skip]
const SCOPED_READS: &[(&str, &str, Want)] = &[
    ("list", "/v1/events?limit=100", Want::All),
    ("search", "/v1/search?q=invoice&limit=100", Want::Described),
    ("history", "/v1/entities/order/7/history?limit=100", Want::Described),
    ("timeline", "/v1/users/u1/events?limit=100", Want::Timeline),
    // Exports by log scan, by index (newest first, full text).
    ("export ndjson", "/v1/export", Want::All),
    ("export by index", "/v1/export?order=desc", Want::All),
    ("export full text", "/v1/export?q=invoice", Want::Described),
    // Explicit out-of-scope filters: empty answers, not errors.
    ("list other", "/v1/events?limit=100&tenant={other}", Want::Nothing),
    ("search other", "/v1/search?q=invoice&tenant={other}", Want::Nothing),
    ("timeline other", "/v1/events?user_id=u1&tenant={other}", Want::Nothing),
    ("history other", "/v1/events?entity_type=order&entity_id=7&tenant={other}", Want::Nothing),
    ("export other", "/v1/export?tenant={other}", Want::Nothing),
    // Full text naming the other tenant: still only this one (or a 400).
    ("search naming other", "/v1/search?q=tenant:{other}", Want::NoLeak),
    ("list naming other", "/v1/events?q={other}", Want::NoLeak),
];

/// Ingest scopes: out of scope is refused whole, naming the event; a
/// single-tenant key fills the tenant in, a multi-tenant key must say
/// which. Adds what was stored to `posted`.
fn ingest_scopes(
    a: &str,
    ing_acme: &str,
    ing_multi: &str,
    posted: &mut BTreeMap<&str, Vec<String>>,
) {
    let r = post(
        a,
        Some(ing_acme),
        &json!([{"actor": "t", "id": "tf-0", "action": "x", "tenant": "acme"},
                {"actor": "t", "id": "tf-1", "action": "x", "tenant": "globex"}]),
    );
    assert_eq!(
        (r.status, r.kind().as_str()),
        (403, "tenant-forbidden"),
        "{}",
        r.brief()
    );
    let p = r.json();
    assert_eq!(
        (&p["field"], &p["index"]),
        (&json!("tenant"), &json!(1)),
        "{p}"
    );
    // The same as NDJSON: the index is the line's event.
    let nd = "{\"actor\":\"t\",\"id\":\"tf-2\",\"action\":\"x\",\"tenant\":\"acme\"}\n\
              {\"actor\":\"t\",\"id\":\"tf-3\",\"action\":\"x\"}\n\
              {\"actor\":\"t\",\"id\":\"tf-4\",\"action\":\"x\",\"tenant\":\"initech\"}\n";
    let ing_acme_auth = format!("Bearer {ing_acme}");
    let r = request(
        a,
        "POST",
        "/v1/events",
        &[
            ("Authorization", &ing_acme_auth),
            ("Content-Type", "application/x-ndjson"),
        ],
        nd.as_bytes(),
    );
    assert_eq!(
        (r.status, r.kind().as_str(), &r.json()["index"]),
        (403, "tenant-forbidden", &json!(2)),
        "{}",
        r.brief()
    );
    // A single-tenant key fills the tenant in.
    let r = post(
        a,
        Some(ing_acme),
        &json!({"id": "notenant-1", "action": "x", "user_id": "u1"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    posted.get_mut("acme").unwrap().push("notenant-1".into());
    // A multi-tenant key must say which.
    let r = post(a, Some(ing_multi), &json!({"actor": "t", "action": "x"}));
    assert_eq!(
        (r.status, r.kind().as_str()),
        (400, "invalid-events"),
        "{}",
        r.brief()
    );
    let names_tenant = r.json()["errors"]
        .as_array()
        .is_some_and(|es| es.iter().any(|e| e["field"] == "tenant"))
        || r.json()["field"] == "tenant";
    assert!(
        names_tenant,
        "the problem does not name the tenant: {}",
        r.brief()
    );
    let r = post(
        a,
        Some(ing_multi),
        &json!({"actor": "t", "id": "multi-1", "action": "x", "tenant": "globex"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    posted.get_mut("globex").unwrap().push("multi-1".into());
    let r = post(
        a,
        Some(ing_multi),
        &json!({"actor": "t", "action": "x", "tenant": "initech"}),
    );
    assert_eq!(
        (r.status, r.kind().as_str()),
        (403, "tenant-forbidden"),
        "{}",
        r.brief()
    );
}

/// Checks every read path for `tenant`'s key `tok` (SCOPED_READS, get by
/// id, stats, CSV); returns the failures.
fn scoped_reads(
    a: &str,
    tok: &str,
    rd_all: &str,
    tenant: &str,
    other: &str,
    posted: &BTreeMap<&str, Vec<String>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let ids = &posted[tenant];
    let n = ids.len();
    let described = ids.iter().filter(|i| i.starts_with(tenant)).count();
    for &(what, target, want) in SCOPED_READS {
        let path = target.replace("{other}", other);
        let r = get(a, &path, Some(tok));
        let evs: Vec<Value> = if path.starts_with("/v1/export") {
            r.body
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
                .collect()
        } else {
            r.events()
        };
        let what = format!("{tenant}: {what} {path} ({})", r.status);
        let count = match want {
            Want::All => n,
            Want::Described => described,
            Want::Timeline => described + usize::from(tenant == "acme"), // notenant-1
            Want::Nothing => {
                if r.status != 200 || !evs.is_empty() {
                    failures.push(format!("{what}: want 200 and nothing, got {}", r.brief()));
                }
                continue;
            }
            Want::NoLeak => {
                let leaked = evs.iter().any(|e| e["tenant"] != tenant);
                if !(r.status == 200 || r.status == 400) || leaked {
                    failures.push(format!("{what}: {}", r.brief()));
                }
                continue;
            }
        };
        if r.status != 200 {
            failures.push(format!("{what}: want 200, got {}", r.brief()));
        }
        failures.extend(only_tenant(&what, &evs, tenant, count));
    }
    // An audit event (no tenant) is not this key's either.
    let audit = get(a, "/v1/events?category=audit_access&limit=1", Some(rd_all)).events();
    if let Some(id) = audit.first().and_then(|e| e["id"].as_str()) {
        let r = get(a, &format!("/v1/events/{id}"), Some(tok));
        if r.status != 404 {
            failures.push(format!(
                "{tenant}: get audit event {id}: want 404, got {}",
                r.brief()
            ));
        }
    } else {
        failures.push("no audit event to try".into());
    }
    let r = get(a, &format!("/v1/stats?tenant={other}"), Some(tok));
    if r.status != 200 || r.json()["total"] != json!(0) {
        failures.push(format!(
            "{tenant}: stats tenant={other}: want total 0, got {}",
            r.brief()
        ));
    }
    let r = get(a, &format!("/v1/export?tenant={other}"), Some(tok));
    if r.status != 200 || !r.body.trim().is_empty() {
        failures.push(format!(
            "{tenant}: export tenant={other}: want 200 and nothing, got {}",
            r.brief()
        ));
    }
    let r = get(a, &format!("/v1/events/{}", ids[0]), Some(tok));
    if r.status != 200 {
        failures.push(format!("{tenant}: get own {}: {}", ids[0], r.brief()));
    }
    for id in [&posted[other][0], &posted["initech"][0]] {
        let r = get(a, &format!("/v1/events/{id}"), Some(tok));
        if (r.status, r.kind().as_str()) != (404, "not-found") {
            failures.push(format!(
                "{tenant}: get {id}: want 404 not-found, got {}",
                r.brief()
            ));
        }
    }
    let r = get(a, "/v1/stats", Some(tok));
    if r.status != 200 || r.json()["total"] != json!(n) {
        failures.push(format!(
            "{tenant}: stats total: want {n}, got {}",
            r.brief()
        ));
    }
    let r = get(a, "/v1/export?format=csv", Some(tok));
    let rows = r.body.matches("\r\n").count();
    if r.status != 200 || r.body.contains(other) || r.body.contains("initech") || rows != n + 1 {
        failures.push(format!(
            "{tenant}: export csv: want {n} rows of {tenant}, got {}",
            r.brief()
        ));
    }
    failures
}

/// Streams with tenant-scoped keys: replayed, live, full text, resumed with
/// `Last-Event-ID`, and filtered to another tenant; returns the failures.
fn scoped_streams(
    a: &str,
    ing_all: &str,
    rd_all: &str,
    rd_acme: &str,
    rd_globex: &str,
    posted: &mut BTreeMap<&str, Vec<String>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    // The stream: replayed, live, and resumed with Last-Event-ID.
    let seqs_of = |posted: &BTreeMap<&str, Vec<String>>, tenant: &str| -> Vec<u64> {
        let path = format!("/v1/events?tenant={tenant}&limit=100");
        let mut s: Vec<u64> = wait_for_count(a, &path, rd_all, posted[tenant].len())
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        s.sort();
        s
    };
    let acme_seqs = seqs_of(posted, "acme");
    let mut st = Sse::open(a, "/v1/stream?from_seq=1", &bearer(rd_acme));
    let got = data_of(&st.read_to_seq(*acme_seqs.last().unwrap()));
    failures.extend(only_tenant(
        "acme: stream replay",
        &got,
        "acme",
        acme_seqs.len(),
    ));
    let r = post(
        a,
        Some(ing_all),
        &json!([{"actor": "t", "id": "live-g1", "action": "live", "description": "live check", "tenant": "globex"},
                {"actor": "t", "id": "live-i1", "action": "live", "description": "live check", "tenant": "initech"},
                {"actor": "t", "id": "live-acme", "action": "live", "description": "live check", "tenant": "acme"}]),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    for (t, id) in [
        ("globex", "live-g1"),
        ("initech", "live-i1"),
        ("acme", "live-acme"),
    ] {
        posted.get_mut(t).unwrap().push(id.into());
    }
    let live_acme = r.json()["events"][2]["seq"].as_u64().unwrap();
    let got = data_of(&st.read_to_seq(live_acme));
    failures.extend(only_tenant("acme: live stream", &got, "acme", 1));
    drop(st);
    // A full-text stream (it follows the text index: another code path).
    let mut st = Sse::open(a, "/v1/stream?q=live&from_seq=1", &bearer(rd_acme));
    let got = data_of(&st.read_to_seq(live_acme));
    failures.extend(only_tenant("acme: full-text stream", &got, "acme", 1));
    drop(st);
    // Resumed after the first acme event: only acme, from the next one on.
    let resume = |tok: &str, path: &str, after: u64| {
        Sse::open(
            a,
            path,
            &[bearer(tok), vec![("Last-Event-ID", after.to_string())]].concat(),
        )
    };
    let mut st = resume(rd_acme, "/v1/stream", acme_seqs[0]);
    let got = st.read_to_seq(live_acme);
    if got.first().and_then(|e| e.seq_id()) != Some(acme_seqs[1]) {
        failures.push(format!(
            "acme: resumed stream starts at {:?}, want {}",
            got.first().map(|e| e.seq_id()),
            acme_seqs[1]
        ));
    }
    failures.extend(only_tenant(
        "acme: resumed stream",
        &data_of(&got),
        "acme",
        acme_seqs.len(),
    ));
    drop(st);
    // A globex key asking for tenant=acme gets an empty stream; a second,
    // unfiltered globex stream shows how far the log was served.
    let mut filtered = resume(rd_globex, "/v1/stream?tenant=acme", 1);
    let r = post(
        a,
        Some(ing_all),
        &json!({"actor": "t", "id": "live-g2", "action": "live", "tenant": "globex"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    posted.get_mut("globex").unwrap().push("live-g2".into());
    let live_globex = r.json()["events"][0]["seq"].as_u64().unwrap();
    let mut st = resume(rd_globex, "/v1/stream", 1);
    let got = data_of(&st.read_to_seq(live_globex));
    failures.extend(only_tenant(
        "globex: resumed stream",
        &got,
        "globex",
        posted["globex"].len(),
    ));
    let leaked = filtered.data_within(Duration::from_millis(500));
    if filtered.status != 200 || !leaked.is_empty() {
        failures.push(format!(
            "globex key streaming tenant=acme: want 200 and nothing, got {} {leaked:?}",
            filtered.status
        ));
    }
    failures
}

/// The `data` of SSE events.
fn data_of(evs: &[SseEvent]) -> Vec<Value> {
    evs.iter().map(SseEvent::json).collect()
}

/// A complaint unless `evs` are exactly `want` events, all of `tenant`.
fn only_tenant(what: &str, evs: &[Value], tenant: &str, want: usize) -> Option<String> {
    let ts: Vec<&str> = evs
        .iter()
        .map(|e| e["tenant"].as_str().unwrap_or("<none>"))
        .collect();
    (ts.len() != want || ts.iter().any(|t| *t != tenant))
        .then(|| format!("{what}: want {want} events of {tenant}, got tenants {ts:?}"))
}
