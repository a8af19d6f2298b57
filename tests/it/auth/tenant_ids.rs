//! Event ids are per tenant: no probing or squatting another tenant's ids,
//! and a lookup by id that several tenants could answer is a 409.

use super::*;

/// The problem kind and `tenants` of an answer.
fn ambiguous_tenants(r: &Resp) -> Value {
    assert_eq!(
        (r.status, r.kind()),
        (409, "ambiguous-id".into()),
        "{}",
        r.brief()
    );
    assert_eq!(r.json()["field"], "tenant", "{}", r.brief());
    r.json()["tenants"].clone()
}

/// Ids are per tenant: tenant B can neither probe tenant A's ids (409 vs 201)
/// nor squat them in advance; each key reads its own tenant's event under
/// the shared id, and a key that sees several tenants is told the id is
/// ambiguous. Checked both while the events are only in the daemon's
/// reservations and once the key index has them.
#[test]
fn ids_are_per_tenant_no_probe_no_squat_and_ambiguous_lookups_are_409() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conf = format!("[auth]\n{UNLIMITED_ROLES}");
    conf += &key_toml(
        "ingest-a",
        &token("ingest-a"),
        &["ingest", "read"],
        &["acme"],
        "",
    );
    conf += &key_toml(
        "ingest-b",
        &token("ingest-b"),
        &["ingest", "read"],
        &["globex"],
        "",
    );
    conf += &key_toml("both", &token("both"), &["read"], &["acme", "globex"], "");
    conf += &key_toml("all", &token("all"), &["ingest", "read"], &["*"], "");
    let conf = write_file(&tmp.path().join("stele.toml"), &conf);
    let d = serve(tmp.path(), &conf);
    let a = d.addr.clone();
    let (ta, tb, both, all) = (
        token("ingest-a"),
        token("ingest-b"),
        token("both"),
        token("all"),
    );
    let ev = |id: &str, what: &str| json!({"id": id, "action": what, "actor": "u"});

    // A stores inv-1; B posting inv-1 (other content) stores B's own event:
    // no 409 telling B that A has it.
    let r = post(&a, Some(&ta), &ev("inv-1", "paid"));
    assert_eq!(r.status, 201, "{}", r.brief());
    let r = post(&a, Some(&tb), &ev("inv-1", "refunded"));
    assert_eq!(r.status, 201, "the probe learned something: {}", r.brief());
    // Each tenant's retry is its own idempotent replay, its own conflict.
    let r = post(&a, Some(&tb), &ev("inv-1", "refunded"));
    assert_eq!(
        (r.status, r.json()["replayed"].clone()),
        (200, json!(true)),
        "{}",
        r.brief()
    );
    let r = post(&a, Some(&ta), &ev("inv-1", "refunded"));
    assert_eq!(
        (r.status, r.kind()),
        (409, "id-conflict".into()),
        "{}",
        r.brief()
    );
    // B squats inv-2 before A uses it: A's post is still a 201 for A.
    let r = post(&a, Some(&tb), &ev("inv-2", "squat"));
    assert_eq!(r.status, 201, "{}", r.brief());
    let r = post(&a, Some(&ta), &ev("inv-2", "created"));
    assert_eq!(r.status, 201, "the squat blocked tenant A: {}", r.brief());
    // An all-tenant key writes inv-1 without a tenant: a namespace of its own.
    let r = post(&a, Some(&all), &ev("inv-1", "orphan"));
    assert_eq!(r.status, 201, "{}", r.brief());
    let r = post(&a, Some(&ta), &ev("inv-3", "only-a"));
    assert_eq!(r.status, 201, "{}", r.brief());

    let check = |a: &str, when: &str| {
        let read = |path: &str, key: &str| get(a, path, Some(key));
        for (key, key_id, tenant, inv1, inv2) in [
            (&ta, "ingest-a", "acme", "paid", "created"),
            (&tb, "ingest-b", "globex", "refunded", "squat"),
        ] {
            for (id, action) in [("inv-1", inv1), ("inv-2", inv2)] {
                let r = read(&format!("/v1/events/{id}"), key);
                assert_eq!(r.status, 200, "{when}: {tenant} {id}: {}", r.brief());
                let v = r.json();
                assert_eq!(
                    (v["tenant"].as_str(), v["action"].as_str()),
                    (Some(tenant), Some(action)),
                    "{when}: {v}"
                );
                assert_eq!(v["ingested_by"], key_id, "{when}: {v}");
                assert_eq!(v["client_addr"], "127.0.0.1", "{when}: {v}");
            }
        }
        // The other tenant's event is as absent as one never stored.
        let never = read("/v1/events/no-such-id", &tb);
        for r in [
            read("/v1/events/inv-3", &tb),
            read("/v1/events/inv-1?tenant=acme", &tb),
            read("/v1/events/inv-1?tenant=", &tb),
        ] {
            assert_eq!(
                (r.status, r.kind()),
                (404, "not-found".into()),
                "{when}: {}",
                r.brief()
            );
        }
        assert_eq!(never.status, 404);
        // Several tenants' events under one id: the caller names one.
        assert_eq!(
            ambiguous_tenants(&read("/v1/events/inv-1", &all)),
            json!([null, "acme", "globex"]),
            "{when}"
        );
        assert_eq!(
            ambiguous_tenants(&read("/v1/events/inv-1", &both)),
            json!(["acme", "globex"]),
            "{when}"
        );
        assert_eq!(
            ambiguous_tenants(&read("/v1/events/inv-2", &all)),
            json!(["acme", "globex"]),
            "{when}"
        );
        for (path, key, action) in [
            ("/v1/events/inv-1?tenant=acme", &all, "paid"),
            ("/v1/events/inv-1?tenant=globex", &both, "refunded"),
            ("/v1/events/inv-1?tenant=", &all, "orphan"),
            ("/v1/events/inv-3", &all, "only-a"),
            ("/v1/events/inv-3", &both, "only-a"),
        ] {
            let r = read(path, key);
            assert_eq!(r.status, 200, "{when}: {path}: {}", r.brief());
            assert_eq!(r.json()["action"], action, "{when}: {path}");
        }
        let r = read("/v1/events/inv-1?tenant=acme&tenant=globex", &all);
        assert_eq!(
            (r.status, r.kind()),
            (400, "invalid-parameter".into()),
            "{}",
            r.brief()
        );
        let r = read("/v1/events/inv-1?limit=1", &all);
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (400, json!("limit")),
            "{}",
            r.brief()
        );
    };
    check(&a, "right after the posts");
    // A restart empties the reservations: the key index answers alone.
    wait_for_count(&a, "/v1/events", &both, 5);
    drop(d);
    let d = serve(tmp.path(), &conf);
    let a = d.addr.clone();
    wait_for_count(&a, "/v1/events", &both, 5);
    check(&a, "after a restart");
    let r = post(&a, Some(&tb), &ev("inv-3", "late"));
    assert_eq!(r.status, 201, "{}", r.brief());
    let r = post(&a, Some(&ta), &ev("inv-3", "only-a"));
    assert_eq!(
        (r.status, r.json()["replayed"].clone()),
        (200, json!(true)),
        "{}",
        r.brief()
    );
    let r = get(&a, "/v1/events/inv-1", Some(&all));
    assert_eq!(ambiguous_tenants(&r), json!([null, "acme", "globex"]));
    let r = get(&a, "/v1/events/inv-2", Some(&ta));
    assert_eq!(r.json()["action"], "created", "{}", r.brief());
    let r = get(&a, "/v1/events/inv-2", Some(&tb));
    assert_eq!(r.json()["action"], "squat", "{}", r.brief());

    // Stele's own records say so: audit events are ingested by `stele`.
    let recs = poll(20, "an audit record", || {
        let r = get(&a, "/v1/events?category=audit_access&limit=1", Some(&all));
        r.events().first().cloned()
    });
    assert_eq!(recs["ingested_by"], "stele", "{recs}");
    assert!(recs.get("client_addr").is_none(), "{recs}");
}
