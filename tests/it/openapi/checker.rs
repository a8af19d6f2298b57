//! Checking responses against the spec: the `Checker` that collects
//! failures (status documented, Content-Type, required headers, the body
//! against its schema, NDJSON items, CSV columns, Prometheus text), and
//! `expect_problem` for a documented problem answer.

use super::*;

/// Collects contract failures; each names the operation and the request.
pub(super) struct Checker<'a> {
    pub(super) spec: &'a Spec,
    pub(super) addr: String,
    pub(super) failures: Vec<String>,
    /// (operation label, status) pairs answered by the daemon.
    pub(super) seen: BTreeSet<(String, u16)>,
    /// Responses checked against the spec.
    pub(super) checked: usize,
}

/// What the body should also satisfy beyond its schema.
#[derive(Default)]
pub(super) struct Expect {
    /// Response headers not checked here (checked elsewhere).
    pub(super) skip_headers: Vec<&'static str>,
}

impl<'a> Checker<'a> {
    pub(super) fn fail(&mut self, ctx: &str, what: impl std::fmt::Display) {
        self.failures.push(format!("{ctx}: {what}"));
    }

    /// Sends `req` for `op` and checks the answer; returns it when one came.
    pub(super) fn call(&mut self, op: &Op, req: &Req) -> Option<Resp> {
        let ctx = format!("{} ({})", op.label(), req.describe());
        match send(&self.addr, req) {
            Ok(resp) => {
                self.check(op, &ctx, &resp, &Expect::default());
                Some(resp)
            }
            Err(e) => {
                self.fail(&ctx, format!("no HTTP answer: {e}"));
                None
            }
        }
    }

    /// The status a plain request to `op` answers when all is well: the
    /// lowest documented 2xx or 3xx (200 for all but the redirects; 304 is
    /// conditional, never the plain answer).
    pub(super) fn ok_status(&self, op: &Op) -> u16 {
        self.spec
            .at(&format!("{}/responses", op.pointer))
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|k| k.parse::<u16>().ok())
            .filter(|c| (200..400).contains(c) && *c != 304)
            .min()
            .unwrap_or(200)
    }

    /// The response object documented for `status` on `op` (pointer).
    pub(super) fn response_for(&self, op: &Op, status: u16) -> Option<String> {
        let responses = format!("{}/responses", op.pointer);
        let obj = self.spec.at(&responses);
        let key = if obj.get(status.to_string()).is_some() {
            status.to_string()
        } else if obj.get(format!("{}XX", status / 100)).is_some() {
            format!("{}XX", status / 100)
        } else if obj.get("default").is_some() {
            "default".to_string()
        } else {
            return None;
        };
        Some(self.spec.deref(&format!("{responses}/{}", esc(&key))).0)
    }

    pub(super) fn check(&mut self, op: &Op, ctx: &str, resp: &Resp, expect: &Expect) {
        self.seen.insert((op.label(), resp.status));
        let Some(pointer) = self.response_for(op, resp.status) else {
            let documented: Vec<String> = self
                .spec
                .at(&format!("{}/responses", op.pointer))
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            self.fail(
                ctx,
                format!(
                    "status {} is not documented (documented: {}); body: {}",
                    resp.status,
                    documented.join(", "),
                    preview(&resp.text())
                ),
            );
            return;
        };
        self.check_against(&pointer, ctx, resp, expect);
    }

    /// Checks `resp` against the response object at `pointer`.
    pub(super) fn check_against(&mut self, pointer: &str, ctx: &str, resp: &Resp, expect: &Expect) {
        self.checked += 1;
        let spec = self.spec;
        let obj = spec.at(pointer);
        // Documented headers.
        if let Some(headers) = obj.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                if expect
                    .skip_headers
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(name))
                {
                    continue;
                }
                let (hp, h) = spec.deref(&format!("{pointer}/headers/{}", esc(name)));
                match resp.header(name) {
                    None if h["required"].as_bool().unwrap_or(false) => self.fail(
                        ctx,
                        format!(
                            "status {}: the required header {name} is missing",
                            resp.status
                        ),
                    ),
                    None => {}
                    Some(v) => {
                        if let Err(e) = spec.validate(&format!("{hp}/schema"), &json!(v)) {
                            self.fail(ctx, format!("status {}: header {name}: {e}", resp.status));
                        }
                    }
                }
            }
        }
        let Some(content) = obj.get("content").and_then(Value::as_object) else {
            if !resp.body.is_empty() {
                self.fail(
                    ctx,
                    format!("status {}: documented without a body, got one", resp.status),
                );
            }
            return;
        };
        let actual = resp.ctype().to_string();
        let Some(media) = content.keys().find(|m| media_matches(m, &actual)).cloned() else {
            let documented: Vec<&String> = content.keys().collect();
            self.fail(
                ctx,
                format!(
                    "status {}: Content-Type {actual:?} is not documented (documented: {documented:?}); body: {}",
                    resp.status,
                    preview(&resp.text())
                ),
            );
            return;
        };
        let mp = format!("{pointer}/content/{}", esc(&media));
        let ess = essence(&media);
        if ess == "application/json" || ess.ends_with("+json") {
            let body: Value = match serde_json::from_slice(&resp.body) {
                Ok(v) => v,
                Err(e) => {
                    self.fail(
                        ctx,
                        format!(
                            "status {}: the {media} body is not JSON ({e}): {}",
                            resp.status,
                            preview(&resp.text())
                        ),
                    );
                    return;
                }
            };
            if let Err(e) = spec.validate(&format!("{mp}/schema"), &body) {
                self.fail(ctx, format!("status {}: body {e}", resp.status));
            }
            if ess == "application/problem+json" && body["status"] != json!(resp.status) {
                self.fail(
                    ctx,
                    format!(
                        "problem `status` member {} differs from the HTTP status {}",
                        body["status"], resp.status
                    ),
                );
            }
        } else if ess == "application/x-ndjson" {
            let item = format!("{mp}/x-stele-item-schema");
            let text = resp.text();
            if !text.is_empty() && !text.ends_with('\n') {
                self.fail(ctx, "the NDJSON body does not end with a newline");
            }
            for (i, line) in text.lines().enumerate() {
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => {
                        if let Err(e) = spec.validate(&item, &v) {
                            self.fail(ctx, format!("NDJSON line {}: {e}", i + 1));
                        }
                    }
                    Err(e) => self.fail(ctx, format!("NDJSON line {} is not JSON: {e}", i + 1)),
                }
            }
        } else if ess == "text/csv" {
            let want: Vec<String> = spec
                .at(&format!("{mp}/x-stele-csv-columns"))
                .as_array()
                .expect("x-stele-csv-columns is a list")
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            let text = resp.text();
            match text.split_once("\r\n") {
                Some((header, rest)) => {
                    if header != want.join(",") {
                        self.fail(
                            ctx,
                            format!(
                                "CSV header {header:?} differs from x-stele-csv-columns {:?}",
                                want.join(",")
                            ),
                        );
                    }
                    if !rest.is_empty() && !rest.ends_with("\r\n") {
                        self.fail(ctx, "the CSV body does not end with CRLF");
                    }
                }
                None => self.fail(ctx, "the CSV body has no CRLF-terminated header row"),
            }
        } else if ess == "text/plain" {
            if let Err(e) = check_prometheus(&resp.text()) {
                self.fail(ctx, format!("status {}: {e}", resp.status));
            }
        } else if ess == "text/html" {
            if !resp
                .text()
                .to_ascii_lowercase()
                .starts_with("<!doctype html>")
            {
                self.fail(ctx, "the HTML body does not start with <!doctype html>");
            }
        } else if ["text/javascript", "text/css", "image/svg+xml", "image/png"]
            .contains(&ess.as_str())
        {
            if resp.body.is_empty() {
                self.fail(
                    ctx,
                    format!("status {}: an empty {media} body", resp.status),
                );
            }
        } else {
            self.fail(
                ctx,
                format!("this test does not know how to check {media} bodies"),
            );
        }
    }
}

/// Prometheus text format 0.0.4, line by line.
fn check_prometheus(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("the metrics body is empty".into());
    }
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("metrics line without a value: {line:?}"))?;
        let name = series.split('{').next().unwrap_or("");
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            && !name.as_bytes()[0].is_ascii_digit();
        let labels_ok = series == name || (series.ends_with('}') && series.contains('{'));
        let value_ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
        if !(name_ok && labels_ok && value_ok) {
            return Err(format!("not a Prometheus sample line: {line:?}"));
        }
    }
    Ok(())
}

impl Checker<'_> {
    /// Sends `req` for `op`, checks the answer against the spec, and that it
    /// is the problem `kind` with `status` (and `field`); returns the body.
    pub(super) fn expect_problem(
        &mut self,
        op: &Op,
        req: Req,
        status: u16,
        kind: &str,
        field: Option<&str>,
    ) -> Option<Value> {
        let ctx = format!("{} ({})", op.label(), req.describe());
        let resp = self.call(op, &req)?;
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let want_type = format!("https://stele.dev/problems/{kind}");
        if resp.status != status || v["type"] != json!(want_type) {
            self.fail(
                &ctx,
                format!(
                    "expected {status} {kind}, got {} {}",
                    resp.status,
                    preview(&resp.text())
                ),
            );
        }
        if let Some(f) = field {
            if v["field"] != json!(f) {
                self.fail(&ctx, format!("expected field {f:?}, got {}", v["field"]));
            }
        }
        Some(v)
    }
}
