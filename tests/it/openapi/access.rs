//! Access control against the spec: with one API key per role, every
//! protected operation answers 401, 403 and 429 as documented and serves a
//! key with its role; the public ones serve anyone.

use super::*;

/// The roles a `bearerAuth` requirement may name.
const ROLES: [&str; 4] = ["ingest", "read", "export", "admin"];

/// The role `op` needs with keys configured, from its `security` (or the
/// top-level one): `Ok(None)` for a public operation (no `bearerAuth`
/// requirement), `Err` when the bearer requirement names no single role.
pub(super) fn bearer_role(spec: &Spec, op: &Op) -> Result<Option<String>, String> {
    let reqs = spec
        .doc
        .pointer(&format!("{}/security", op.pointer))
        .or_else(|| spec.doc.get("security"))
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{}: no `security`, own or top-level", op.label()))?;
    let mut roles: Vec<String> = Vec::new();
    let mut bearer = false;
    for r in reqs {
        if let Some(list) = r.get("bearerAuth") {
            bearer = true;
            for role in list.as_array().into_iter().flatten() {
                roles.push(role.as_str().unwrap_or_default().to_string());
            }
        }
    }
    match (bearer, roles.as_slice()) {
        (false, _) => Ok(None),
        (true, [role]) if ROLES.contains(&role.as_str()) => Ok(Some(role.clone())),
        (true, _) => Err(format!(
            "{}: its bearerAuth requirement must name exactly one of {ROLES:?} (the role a key needs), got {roles:?}",
            op.label()
        )),
    }
}

/// A well-formed API key (`stele_` + 43 base64url characters), the same for
/// the same seed.
fn api_key(seed: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("openapi test key: {seed}").as_bytes());
    format!("stele_{}", &hex::encode(digest)[..43])
}

/// The keys of the access-control daemon, by name.
struct TestKeys {
    /// One key per role, for all tenants, without a rate limit.
    by_role: BTreeMap<&'static str, String>,
    /// `export` only, with its own bucket of 1 request a second (burst 1).
    limited: String,
    /// `read`, at most one stream at a time.
    one_stream: String,
    /// `ingest` for tenant `acme` only.
    acme_writer: String,
    /// `ingest` for tenants `acme` and `globex`.
    two_tenants: String,
}

impl TestKeys {
    fn new() -> TestKeys {
        TestKeys {
            by_role: ROLES.iter().map(|r| (*r, api_key(r))).collect(),
            limited: api_key("limited"),
            one_stream: api_key("one-stream"),
            acme_writer: api_key("acme-writer"),
            two_tenants: api_key("two-tenants"),
        }
    }

    fn role(&self, role: &str) -> &str {
        &self.by_role[role]
    }

    /// The configuration file: `/metrics` for admins, no role rate limits.
    fn config(&self) -> String {
        use sha2::Digest as _;
        let entry = |id: &str, token: &str, roles: &[&str], tenants: &[&str], extra: &str| {
            format!(
                "[[auth.keys]]\nid = \"{id}\"\nhash = \"sha256:{}\"\nroles = {}\ntenants = {}\n{extra}\n",
                hex::encode(sha2::Sha256::digest(token.as_bytes())),
                serde_json::to_string(roles).unwrap(),
                serde_json::to_string(tenants).unwrap(),
            )
        };
        let mut conf = String::from("[auth]\nmetrics = \"admin\"\n");
        for r in ROLES {
            conf.push_str(&format!("[auth.roles.{r}]\nrate_per_sec = 0\n"));
        }
        for (r, t) in &self.by_role {
            conf.push_str(&entry(&format!("{r}-key"), t, &[r], &["*"], ""));
        }
        conf.push_str(&entry(
            "limited",
            &self.limited,
            &["export"],
            &["*"],
            "rate_per_sec = 1\nburst = 1",
        ));
        conf.push_str(&entry(
            "one-stream",
            &self.one_stream,
            &["read"],
            &["*"],
            "streams_max = 1",
        ));
        conf.push_str(&entry(
            "acme-writer",
            &self.acme_writer,
            &["ingest"],
            &["acme"],
            "",
        ));
        conf.push_str(&entry(
            "two-tenants",
            &self.two_tenants,
            &["ingest"],
            &["acme", "globex"],
            "",
        ));
        conf
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// A request for `op` that its handler would serve: the path filled in, and
/// for a POST the media type's example as the body.
fn plain_request(spec: &Spec, world: &World, op: &Op) -> Result<Req, String> {
    let (path, _) = world.path(spec, op)?;
    let mut req = Req::new(&op.method, path);
    if op.method == "POST" {
        let rb = spec.deref(&format!("{}/requestBody", op.pointer)).0;
        let example = spec.at(&format!("{rb}/content/application~1json/example"));
        req = req.body(Some("application/json"), example.to_string().into_bytes());
    }
    Ok(req)
}

impl Checker<'_> {
    /// Like `call`, but a `text/event-stream` answer is reported instead of
    /// read (a stream never ends).
    fn call_guarded(&mut self, op: &Op, req: &Req) -> Option<Resp> {
        let ctx = format!("{} ({})", op.label(), req.describe());
        let conn = match Conn::open(&self.addr, req, Duration::from_secs(20)) {
            Ok(c) => c,
            Err(e) => {
                self.fail(&ctx, format!("no HTTP answer: {e}"));
                return None;
            }
        };
        if conn
            .header("content-type")
            .is_some_and(|c| essence(c) == "text/event-stream")
        {
            self.seen.insert((op.label(), conn.status));
            self.fail(&ctx, format!("answered {} with a stream", conn.status));
            return None;
        }
        match conn.finish() {
            Ok(resp) => {
                self.check(op, &ctx, &resp, &Expect::default());
                Some(resp)
            }
            Err(e) => {
                self.fail(&ctx, e);
                None
            }
        }
    }

    /// Sends `req`, checks the answer against the spec and that it is the
    /// problem `kind` with `status`; returns the response and its body.
    fn expect_kind(
        &mut self,
        op: &Op,
        req: &Req,
        status: u16,
        kind: &str,
    ) -> Option<(Resp, Value)> {
        let ctx = format!("{} ({})", op.label(), req.describe());
        let resp = self.call_guarded(op, req)?;
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if resp.status != status || v["type"] != json!(format!("https://stele.dev/problems/{kind}"))
        {
            self.fail(
                &ctx,
                format!(
                    "expected {status} {kind}, got {} {}",
                    resp.status,
                    preview(&resp.text())
                ),
            );
            return None;
        }
        Some((resp, v))
    }

    /// `expect_kind` for a 401, which must also carry the challenge.
    fn expect_unauthorized(&mut self, op: &Op, req: &Req) {
        let ctx = format!("{} ({})", op.label(), req.describe());
        if let Some((resp, _)) = self.expect_kind(op, req, 401, "unauthorized") {
            let got = resp.header("www-authenticate");
            if got != Some("Bearer realm=\"stele\"") {
                self.fail(
                    &ctx,
                    format!("WWW-Authenticate is {got:?}, expected Bearer realm=\"stele\""),
                );
            }
        }
    }

    /// Sends `req` until it answers `429 rate-limited` (a request the
    /// bucket refilled for in between gets through and is checked too).
    fn expect_rate_limited(&mut self, op: &Op, req: &Req) {
        let ctx = format!("{} ({})", op.label(), req.describe());
        for _ in 0..3 {
            let Some(resp) = self.call_guarded(op, req) else {
                return;
            };
            if resp.status != 429 {
                continue;
            }
            let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            if v["type"] != json!("https://stele.dev/problems/rate-limited") {
                return self.fail(&ctx, format!("expected rate-limited, got {}", resp.text()));
            }
            let header: Option<u64> = resp.header("retry-after").and_then(|h| h.parse().ok());
            if header.is_none() || header != v["retry_after"].as_u64() {
                self.fail(
                    &ctx,
                    format!(
                        "Retry-After {:?} is not a whole number of seconds equal to retry_after {}",
                        resp.header("retry-after"),
                        v["retry_after"]
                    ),
                );
            }
            if v["limit"] != json!(1) {
                self.fail(
                    &ctx,
                    format!("`limit` is {}, expected 1 (rate_per_sec)", v["limit"]),
                );
            }
            return;
        }
        self.fail(
            &ctx,
            "three requests in a row were not rate limited (rate_per_sec = 1)",
        );
    }
}

/// With API keys (one per role, `[auth] metrics = "admin"`): every
/// operation the spec protects answers 401 without a key (with
/// `WWW-Authenticate`), 403 `forbidden` naming its role to a key without
/// it, 429 `rate-limited` (with `Retry-After`) to a key over its rate limit,
/// and serves a key with the role; the public ones serve anyone. Also 403
/// `tenant-forbidden`, the 400 of a multi-tenant key posting no tenant, and
/// 429 `too-many-key-streams`. Every answer is checked against the spec.
#[test]
fn access_control_answers_as_documented() {
    let started = Instant::now();
    let spec = Spec::load();
    let ops = spec.operations();
    let keys = TestKeys::new();
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("stele.toml");
    std::fs::write(&conf, keys.config()).unwrap();
    let d = Server::start_with_file(&tmp.path().join("data"), &conf);
    let mut c = Checker {
        spec: &spec,
        addr: d.addr.clone(),
        failures: Vec::new(),
        seen: BTreeSet::new(),
        checked: 0,
    };
    let find = |label: &str| {
        ops.iter()
            .find(|o| o.label() == label)
            .unwrap_or_else(|| panic!("{label} is not in the spec"))
            .clone()
    };
    let (ingest, stream) = (find("POST /v1/events"), find("GET /v1/stream"));
    let as_key = |req: Req, key: &str| req.header("Authorization", &bearer(key));

    // Events for the path parameters (not waiting for the indexes: only the
    // answers before the handlers matter here, and any documented status
    // of a handler).
    let fx = fixtures();
    let setup = as_key(
        Req::new("POST", "/v1/events").body(
            Some("application/json"),
            Value::Array(fx.clone()).to_string().into_bytes(),
        ),
        keys.role("ingest"),
    );
    match c.call_guarded(&ingest, &setup) {
        Some(r) if r.status == 201 => {}
        Some(r) => panic!(
            "setup: {} answered {}: {}",
            setup.describe(),
            r.status,
            r.text()
        ),
        None => panic!("setup: {}", c.failures.join("\n")),
    }
    let world = World { posted: fx };

    let mut protected = Vec::new();
    for op in &ops {
        let role = match bearer_role(&spec, op) {
            Ok(r) => r,
            Err(e) => {
                c.fail(&op.label(), e);
                continue;
            }
        };
        let base = match plain_request(&spec, &world, op) {
            Ok(r) => r,
            Err(e) => {
                c.fail(&op.label(), e);
                continue;
            }
        };
        let Some(role) = role else {
            // Public: served without a key, whatever Authorization says.
            for req in [
                base.clone(),
                as_key(base.clone(), &api_key("never configured")),
            ] {
                if let Some(r) = c.call_guarded(op, &req) {
                    if r.status != c.ok_status(op) {
                        c.fail(
                            &format!("{} ({})", op.label(), req.describe()),
                            format!("a public operation answered {}: {}", r.status, r.text()),
                        );
                    }
                }
            }
            continue;
        };
        protected.push(op.clone());

        c.expect_unauthorized(op, &base);
        let other = if role == "read" { "ingest" } else { "read" };
        let req = as_key(base.clone(), keys.role(other));
        if let Some((_, v)) = c.expect_kind(op, &req, 403, "forbidden") {
            if v["role"] != json!(role) {
                c.fail(
                    &format!("{} ({})", op.label(), req.describe()),
                    format!(
                        "`role` is {}, the spec's security names {role:?}",
                        v["role"]
                    ),
                );
            }
        }

        // The key with the role gets past access control.
        let req = as_key(base.clone(), keys.role(&role));
        if is_sse(&spec, op) {
            c.stream(op, &req, StreamWant::Head);
        } else if let Some(r) = c.call_guarded(op, &req) {
            if [401, 403, 429].contains(&r.status) {
                c.fail(
                    &format!("{} ({})", op.label(), req.describe()),
                    format!(
                        "a key with the {role} role was refused: {} {}",
                        r.status,
                        r.text()
                    ),
                );
            }
        }
    }
    if protected.len() < 10 {
        c.fail(
            "security",
            format!(
                "only {} operations need a key; expected every /v1 route",
                protected.len()
            ),
        );
    }

    // Every way to fail authentication is the same documented 401.
    let list = find("GET /v1/events");
    let unknown = api_key("never configured");
    for auth in [
        format!("Basic {}", keys.role("read")),
        keys.role("read").to_string(),
        "Bearer stele_short".to_string(),
        format!("Bearer {}", "a".repeat(600)),
        bearer(&unknown),
    ] {
        let req = Req::new("GET", "/v1/events").header("Authorization", &auth);
        c.expect_unauthorized(&list, &req);
    }

    // 429 rate-limited on every protected operation: the limited key's own
    // bucket is checked before its role.
    for op in &protected {
        match plain_request(&spec, &world, op) {
            Ok(base) => c.expect_rate_limited(op, &as_key(base, &keys.limited)),
            Err(e) => c.fail(&op.label(), e),
        }
    }

    // 403 tenant-forbidden: the second event names a tenant the key may not
    // write; nothing is stored.
    let two = json!([
        {"action": "scoped_write", "actor": "alice", "tenant": "acme"},
        {"action": "scoped_write", "actor": "alice", "tenant": "globex"},
    ]);
    let req = as_key(
        Req::new("POST", "/v1/events").body(Some("application/json"), two.to_string().into_bytes()),
        &keys.acme_writer,
    );
    if let Some((_, v)) = c.expect_kind(&ingest, &req, 403, "tenant-forbidden") {
        if v["field"] != json!("tenant") || v["index"] != json!(1) {
            c.fail(
                &format!("{} ({})", ingest.label(), req.describe()),
                format!("expected field \"tenant\" and index 1, got {v}"),
            );
        }
    }
    // No tenant: the key's only tenant is taken; with several, a 400.
    let untenanted = json!({"action": "scoped_write", "actor": "alice"}).to_string();
    let req = as_key(
        Req::new("POST", "/v1/events")
            .body(Some("application/json"), untenanted.clone().into_bytes()),
        &keys.acme_writer,
    );
    match c.call_guarded(&ingest, &req) {
        Some(r) if r.status == 201 => {}
        Some(r) => c.fail(
            &format!("{} ({})", ingest.label(), req.describe()),
            format!(
                "expected 201 (the key's tenant), got {} {}",
                r.status,
                r.text()
            ),
        ),
        None => {}
    }
    let req = as_key(
        Req::new("POST", "/v1/events").body(Some("application/json"), untenanted.into_bytes()),
        &keys.two_tenants,
    );
    if let Some((_, v)) = c.expect_kind(&ingest, &req, 400, "invalid-events") {
        let e = &v["errors"][0];
        if e["field"] != json!("tenant") || e["kind"] != json!("missing") {
            c.fail(
                &format!("{} ({})", ingest.label(), req.describe()),
                format!("expected a `tenant` `missing` error, got {v}"),
            );
        }
    }

    // 429 too-many-key-streams: a second stream of a key with streams_max = 1
    // while its first is open.
    let first = as_key(Req::new("GET", "/v1/stream"), &keys.one_stream);
    match Conn::open(&d.addr, &first, Duration::from_secs(20)) {
        Ok(conn) if conn.status == 200 => {
            let mut open = conn.into_sse();
            if let Err(e) = open.next(SSE_WAIT) {
                c.fail("GET /v1/stream (first stream of the key)", e);
            }
            if let Some((_, v)) = c.expect_kind(&stream, &first, 429, "too-many-key-streams") {
                if v["limit"] != json!(1) {
                    c.fail(
                        "GET /v1/stream (second stream of the key)",
                        format!("`limit` is {}, expected 1 (streams_max)", v["limit"]),
                    );
                }
            }
            drop(open);
        }
        Ok(conn) => c.fail(
            "GET /v1/stream (first stream of the key)",
            format!("answered {}", conn.status),
        ),
        Err(e) => c.fail("GET /v1/stream (first stream of the key)", e),
    }

    for op in &protected {
        for s in [401, 403, 429] {
            if !c.seen.contains(&(op.label(), s)) {
                c.fail(&op.label(), format!("status {s} was never exercised"));
            }
        }
    }
    eprintln!(
        "checked {} responses of {} protected operations in {:.1} s",
        c.checked,
        protected.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        c.failures.is_empty(),
        "{} access-control failures:\n  {}",
        c.failures.len(),
        c.failures.join("\n  ")
    );
}
