//! Routes and methods: the methods a path does not document answer 405
//! naming the allowed ones, and the server's route table
//! (`stele::server::ROUTES`) and the spec list the same operations, so a
//! route added to the server without being added to the spec fails.

use super::*;

/// Every documented path answers 405 (problem+json) to the methods it does
/// not document: the spec lists every method the server serves.
pub(super) fn undocumented_methods(c: &mut Checker, world: &World, ops: &[Op]) {
    let mut by_path: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_path.entry(op.path.as_str()).or_default().push(op);
    }
    for (path, its_ops) in by_path {
        let concrete = match world.path(c.spec, its_ops[0]) {
            Ok((p, _)) => p,
            Err(e) => {
                c.fail(path, e);
                continue;
            }
        };
        for m in PROBE_METHODS {
            if its_ops.iter().any(|o| o.method == m) {
                continue;
            }
            let req = Req::new(m, concrete.as_str());
            let ctx = format!("{m} {path}, not documented ({})", req.describe());
            match send(&c.addr, &req) {
                Ok(resp) => {
                    if resp.status != 405 {
                        c.fail(&ctx, format!("answered {}, expected 405", resp.status));
                    }
                    // The `Allow` header's value is checked in
                    // `wrong_methods_name_the_allowed_ones`.
                    c.check_against(
                        "/components/responses/MethodNotAllowed",
                        &ctx,
                        &resp,
                        &Expect {
                            skip_headers: vec!["Allow"],
                        },
                    );
                }
                Err(e) => c.fail(&ctx, e),
            }
        }
    }
}

/// A 405 names the methods the path does serve (RFC 9110 `Allow`).
#[test]
fn wrong_methods_name_the_allowed_ones() {
    let spec = Spec::load();
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start(tmp.path());
    let mut c = Checker {
        spec: &spec,
        addr: d.addr.clone(),
        failures: Vec::new(),
        seen: BTreeSet::new(),
        checked: 0,
    };

    // 405 carries an `Allow` header listing the methods.
    for (m, path, allow) in [
        ("DELETE", "/v1/events", "GET, POST"),
        ("POST", "/healthz", "GET"),
        ("PUT", "/v1/events/x", "GET"),
    ] {
        let req = Req::new(m, path);
        let ctx = format!("{m} {path} ({})", req.describe());
        match send(&c.addr, &req) {
            Ok(resp) => {
                c.check_against(
                    "/components/responses/MethodNotAllowed",
                    &ctx,
                    &resp,
                    &Expect::default(),
                );
                let got = resp.header("allow").map(|a| {
                    let mut v: Vec<String> = a.split(',').map(|s| s.trim().to_string()).collect();
                    v.sort();
                    v.join(", ")
                });
                if got.as_deref() != Some(allow) {
                    c.fail(&ctx, format!("Allow: expected {allow:?}, got {got:?}"));
                }
            }
            Err(e) => c.fail(&ctx, e),
        }
    }
    assert!(
        c.failures.is_empty(),
        "{} failures of pending server work:\n  {}",
        c.failures.len(),
        c.failures.join("\n  ")
    );
}

/// The route table's paths as segments (`None` for a `{parameter}`).
fn spec_shape(path: &str) -> Vec<Option<String>> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            if s.starts_with('{') {
                None
            } else {
                Some(s.to_string())
            }
        })
        .collect()
}

/// The route table and the spec list the same operations, and every
/// metrics name of the table belongs to a documented operation: a route
/// added to the server without being added to the spec fails the build.
#[test]
fn routes_in_the_route_table_are_documented() {
    let spec = Spec::load();
    let documented: BTreeSet<(String, Vec<Option<String>>)> = spec
        .operations()
        .iter()
        .map(|o| (o.method.clone(), spec_shape(&o.path)))
        .collect();
    let served: BTreeSet<(String, Vec<Option<String>>)> = stele::server::ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_string(), spec_shape(r.path)))
        .collect();
    let mut failures = Vec::new();
    if served.len() != stele::server::ROUTES.len() {
        failures.push("the route table lists one (method, path) twice".to_string());
    }
    for r in &stele::server::ROUTES {
        if !documented.contains(&(r.method.as_str().to_string(), spec_shape(r.path))) {
            failures.push(format!(
                "the route table serves {} {} ({:?}) but docs/openapi.yaml does not document it",
                r.method, r.path, r.name
            ));
        }
    }
    for (m, segs) in &documented {
        if !served.contains(&(m.clone(), segs.clone())) {
            let segs: Vec<String> = segs
                .iter()
                .map(|s| s.clone().unwrap_or_else(|| "{…}".into()))
                .collect();
            failures.push(format!(
                "docs/openapi.yaml documents {m} /{} but the route table does not serve it",
                segs.join("/")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} route coverage problems:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
