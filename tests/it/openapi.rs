//! `docs/openapi.yaml` checked against the server run in-process
//! (`support::inproc`: the same `serve` as `stele serve`).
//!
//! How it works:
//!
//! * The spec is parsed from YAML into a `serde_json::Value`. A response
//!   schema is validated with a JSON Schema 2020-12 root that embeds the
//!   spec's `components` and `paths` and `$ref`s the schema by its JSON
//!   pointer, so every `$ref` inside it resolves within the spec (OpenAPI
//!   3.1 schemas are JSON Schema 2020-12). `format` is validated too
//!   (`date-time`, `ipv4`, `ipv6`, `uri`).
//! * OpenAPI Reference Objects (`$ref` to `components/responses` or
//!   `components/parameters`) are followed by this file.
//! * Request values: query and header parameters take their `example`; a
//!   path parameter takes the value of the field named by its
//!   `x-stele-event-field` in an event this test ingested; `cursor` takes the
//!   `next_cursor` of a first page of the same operation (`limit=1`); a
//!   request body is the media type's `example`, or events from
//!   `stele::testkit::EventGen` for NDJSON.
//! * Every response is checked: the status is documented for the operation,
//!   the Content-Type is one documented for that status, documented required
//!   headers are present and valid, and the body validates (JSON against the
//!   schema; NDJSON line by line against `x-stele-item-schema`; the CSV header
//!   against `x-stele-csv-columns`; SSE `data:` against
//!   `x-stele-sse-events`). Failures are collected and reported together,
//!   each naming the operation, the request and what failed.
//!
//! `routes_in_the_route_table_are_documented` iterates the server's route
//! table (`stele::server::ROUTES`) so that a route added to the server
//! without being added to the spec fails the build.

use crate::support::http::Sse;
use crate::support::inproc::Server;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

const SPEC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
/// Methods an OpenAPI path item may hold, as spec keys.
const SPEC_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// Methods tried against every documented path to find undocumented ones.
const PROBE_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// The body limit of `POST /v1/events` (`Limits::DEFAULT.body_bytes_max`).
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------
// The spec
// ---------------------------------------------------------------------------

struct Spec {
    doc: Value,
    validators: RefCell<HashMap<String, Rc<jsonschema::Validator>>>,
}

/// One operation of the spec.
#[derive(Clone)]
struct Op {
    /// Upper case, e.g. `GET`.
    method: String,
    /// The path template, e.g. `/v1/events/{id}`.
    path: String,
    /// JSON pointer of the operation object.
    pointer: String,
}

impl Op {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A parameter of an operation, with Reference Objects followed.
#[derive(Clone)]
struct Param {
    name: String,
    location: String,
    required: bool,
    /// JSON pointer of its schema.
    schema: String,
    example: Option<Value>,
    event_field: Option<String>,
}

/// Escapes one JSON pointer token.
fn esc(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment (percent-encoding what a URI may not hold).
fn fragment(pointer: &str) -> String {
    let mut out = String::from("#");
    for b in pointer.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Spec {
    fn load() -> Spec {
        let text = std::fs::read_to_string(SPEC_PATH)
            .unwrap_or_else(|e| panic!("cannot read {SPEC_PATH}: {e}"));
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| {
            panic!("{SPEC_PATH} does not parse as a JSON-compatible YAML document: {e}")
        });
        Spec {
            doc,
            validators: RefCell::new(HashMap::new()),
        }
    }

    fn at(&self, pointer: &str) -> &Value {
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("the spec has nothing at {pointer}"))
    }

    /// Follows Reference Objects from `pointer`: the final pointer and object.
    fn deref(&self, pointer: &str) -> (String, &Value) {
        let mut p = pointer.to_string();
        for _ in 0..16 {
            let v = self.at(&p);
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    p = r
                        .strip_prefix('#')
                        .unwrap_or_else(|| panic!("{p}: only local $refs are supported, got {r}"))
                        .to_string()
                }
                None => return (p, v),
            }
        }
        panic!("{pointer}: $ref chain too long");
    }

    fn operations(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        let paths = self.at("/paths").as_object().expect("paths is an object");
        for (path, item) in paths {
            for m in SPEC_METHODS {
                if item.get(m).is_some() {
                    ops.push(Op {
                        method: m.to_ascii_uppercase(),
                        path: path.clone(),
                        pointer: format!("/paths/{}/{m}", esc(path)),
                    });
                }
            }
        }
        ops
    }

    fn params(&self, op: &Op) -> Vec<Param> {
        let item_pointer = op.pointer.rsplit_once('/').expect("a method").0;
        let mut out: Vec<Param> = Vec::new();
        for base in [
            format!("{item_pointer}/parameters"),
            format!("{}/parameters", op.pointer),
        ] {
            let Some(list) = self.doc.pointer(&base).and_then(Value::as_array) else {
                continue;
            };
            for i in 0..list.len() {
                let (p, v) = self.deref(&format!("{base}/{i}"));
                let name = v["name"].as_str().expect("parameter name").to_string();
                let location = v["in"].as_str().expect("parameter in").to_string();
                out.retain(|o| !(o.name == name && o.location == location));
                out.push(Param {
                    required: v["required"].as_bool().unwrap_or(false),
                    schema: format!("{p}/schema"),
                    example: v.get("example").cloned(),
                    event_field: v
                        .get("x-stele-event-field")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    name,
                    location,
                });
            }
        }
        out
    }

    /// A compiled validator for the schema at `pointer`.
    fn validator(&self, pointer: &str) -> Result<Rc<jsonschema::Validator>, String> {
        if let Some(v) = self.validators.borrow().get(pointer) {
            return Ok(v.clone());
        }
        self.at(pointer);
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": fragment(pointer),
            "components": self.doc["components"],
            "paths": self.doc["paths"],
        });
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("the schema at {pointer} does not compile: {e}"))?;
        let v = Rc::new(v);
        self.validators
            .borrow_mut()
            .insert(pointer.to_string(), v.clone());
        Ok(v)
    }

    /// Validates `instance` against the schema at `pointer`; `Err` lists
    /// every violation with where it is.
    fn validate(&self, pointer: &str, instance: &Value) -> Result<(), String> {
        let v = self.validator(pointer)?;
        let errors: Vec<String> = v
            .iter_errors(instance)
            .take(8)
            .map(|e| format!("at `{}`: {e}", e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "does not validate against {pointer}: {}; instance: {}",
                errors.join("; "),
                preview(&instance.to_string())
            ))
        }
    }
}

fn preview(s: &str) -> String {
    if s.len() <= 600 {
        return s.to_string();
    }
    let mut end = 600;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

// ---------------------------------------------------------------------------
// A small HTTP/1.1 client
// ---------------------------------------------------------------------------

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn ctype(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request to send.
#[derive(Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// A Content-Length other than the body's (a body that stalls).
    declared_length: Option<usize>,
}

impl Req {
    fn new(method: &str, target: impl Into<String>) -> Req {
        Req {
            method: method.to_string(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            declared_length: None,
        }
    }

    fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    fn body(mut self, ctype: Option<&str>, body: Vec<u8>) -> Req {
        if let Some(c) = ctype {
            self = self.header("Content-Type", c);
        }
        self.body = body;
        self
    }

    fn describe(&self) -> String {
        let ctype = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| format!(" [Content-Type: {v}]"))
            .unwrap_or_default();
        let extra: String = self
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .map(|(k, v)| format!(" [{k}: {v}]"))
            .collect();
        let body = if self.body.is_empty() {
            String::new()
        } else {
            format!(" with a {}-byte body", self.body.len())
        };
        format!(
            "request `{} {}`{ctype}{extra}{body}",
            self.method,
            preview(&self.target)
        )
    }
}

/// How long a stream may take to send its next block.
const SSE_WAIT: Duration = Duration::from_secs(20);

/// An open connection whose response head has been read.
struct Conn {
    reader: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
}

impl Conn {
    fn open(addr: &str, req: &Req, read_timeout: Duration) -> Result<Conn, String> {
        let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(read_timeout)).unwrap();
        let mut head = format!("{} {} HTTP/1.1\r\nHost: test\r\n", req.method, req.target);
        // A WebSocket handshake says `Connection: Upgrade` instead.
        if !req
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            head.push_str("Connection: close\r\n");
        }
        for (k, v) in &req.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !req.body.is_empty() || req.method == "POST" {
            let n = req.declared_length.unwrap_or(req.body.len());
            head.push_str(&format!("Content-Length: {n}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())
            .map_err(|e| format!("send head: {e}"))?;
        // Write the body from another thread: the server may answer (413)
        // and close before reading all of it.
        let writer = if req.body.is_empty() {
            None
        } else {
            let mut w = s.try_clone().unwrap();
            let body = req.body.clone();
            Some(std::thread::spawn(move || {
                let _ = w.write_all(&body);
            }))
        };
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("read status line: {e}"))?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP status line: {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("read headers: {e}"))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if let Some(w) = writer {
            if status < 300 {
                let _ = w.join();
            }
        }
        Ok(Conn {
            reader,
            status,
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }

    /// The next chunk of a chunked body (`None` at its end).
    fn chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("read chunk size: {e}"))?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        if size == 0 {
            return Ok(None);
        }
        let mut buf = vec![0; size + 2];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| format!("read chunk: {e}"))?;
        buf.truncate(size);
        Ok(Some(buf))
    }

    /// The rest of the response, read as SSE blocks.
    fn into_sse(self) -> Sse {
        let mut head = format!("HTTP/1.1 {}", self.status);
        for (k, v) in &self.headers {
            head.push_str(&format!("\r\n{k}: {v}"));
        }
        let rest = self.reader.buffer().to_vec();
        Sse::over(self.reader.into_inner(), head, rest)
    }

    fn finish(mut self) -> Result<Resp, String> {
        let mut body = Vec::new();
        if self.chunked() {
            while let Some(c) = self.chunk()? {
                body.extend_from_slice(&c);
            }
        } else if let Some(n) = self.header("content-length") {
            let n: usize = n.parse().map_err(|_| format!("bad Content-Length {n:?}"))?;
            body.resize(n, 0);
            self.reader
                .read_exact(&mut body)
                .map_err(|e| format!("read body: {e}"))?;
        } else {
            let _ = self.reader.read_to_end(&mut body);
        }
        Ok(Resp {
            status: self.status,
            headers: self.headers,
            body,
        })
    }
}

fn send(addr: &str, req: &Req) -> Result<Resp, String> {
    Conn::open(addr, req, Duration::from_secs(60))?.finish()
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn example_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn essence(media: &str) -> String {
    media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a response Content-Type matches a documented media type: by
/// essence, and parameter for parameter when the spec names parameters.
fn media_matches(documented: &str, actual: &str) -> bool {
    let norm = |s: &str| -> Vec<String> {
        s.split(';')
            .map(|p| p.trim().to_ascii_lowercase().replace(' ', ""))
            .collect()
    };
    let (d, a) = (norm(documented), norm(actual));
    if d.len() > 1 {
        d == a
    } else {
        d[0] == a[0]
    }
}

// ---------------------------------------------------------------------------
// Checking responses against the spec
// ---------------------------------------------------------------------------

/// Collects contract failures; each names the operation and the request.
struct Checker<'a> {
    spec: &'a Spec,
    addr: String,
    failures: Vec<String>,
    /// (operation label, status) pairs answered by the daemon.
    seen: BTreeSet<(String, u16)>,
    /// Responses checked against the spec.
    checked: usize,
}

/// What the body should also satisfy beyond its schema.
#[derive(Default)]
struct Expect {
    /// Response headers not checked here (checked elsewhere).
    skip_headers: Vec<&'static str>,
}

impl<'a> Checker<'a> {
    fn fail(&mut self, ctx: &str, what: impl std::fmt::Display) {
        self.failures.push(format!("{ctx}: {what}"));
    }

    /// Sends `req` for `op` and checks the answer; returns it when one came.
    fn call(&mut self, op: &Op, req: &Req) -> Option<Resp> {
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

    /// The response object documented for `status` on `op` (pointer).
    fn response_for(&self, op: &Op, status: u16) -> Option<String> {
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

    fn check(&mut self, op: &Op, ctx: &str, resp: &Resp, expect: &Expect) {
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
    fn check_against(&mut self, pointer: &str, ctx: &str, resp: &Resp, expect: &Expect) {
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

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Events with the fields the spec's examples and path parameters need.
fn fixtures() -> Vec<Value> {
    vec![
        json!({"id": "fx-pw-1", "action": "password_reset", "actor": "alice", "tenant": "acme",
               "category": "auth", "source": "user", "status": "success", "severity": "notice",
               "user_id": "u-42", "user_name": "Ada Lovelace", "session_id": "sess-1",
               "correlation_id": "req-1", "ip": "203.0.113.7", "user_agent": "curl/8.5",
               "entity_type": "user", "entity_id": "u-42", "risk_score": 40, "duration_ms": 12,
               "description": "password reset requested by the user",
               "metadata": {"reason": "forgotten", "nested": {"a": [1, 2, {"b": null}]}}}),
        json!({"id": "fx-order-2", "action": "update", "actor": "bob", "tenant": "acme",
               "category": "billing", "source": "user", "status": "success", "severity": "info",
               "user_id": "u-42", "entity_type": "order", "entity_id": "55",
               "entity_name": "Order #55", "ip": "2001:db8::1",
               "timestamp": "2026-11-23T10:00:01.5+01:00",
               "description": "password changed on checkout",
               "changes": [{"field": "total", "old": 10, "new": 12.5},
                           {"field": "note", "new": {"text": "gift"}},
                           {"field": "coupon", "old": "X1"}]}),
        json!({"action": "nightly_cleanup", "source": "scheduled", "status": "failure",
               "severity": "error", "tenant": "globex", "duration_ms": 5000,
               "description": "cleanup failed: disk quota"}),
    ]
}

fn post_ok(addr: &str, events: &Value) -> Value {
    let req = Req::new("POST", "/v1/events")
        .body(Some("application/json"), events.to_string().into_bytes());
    let resp = send(addr, &req).unwrap_or_else(|e| panic!("setup: {}: {e}", req.describe()));
    assert!(
        resp.status == 201 || resp.status == 200,
        "setup: {} answered {}: {}",
        req.describe(),
        resp.status,
        resp.text()
    );
    serde_json::from_slice(&resp.body).unwrap()
}

/// Waits until the listing shows `n` events (the indexes commit every second).
fn wait_indexed(addr: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp = send(addr, &Req::new("GET", "/v1/events?limit=1000")).expect("list");
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let got = v["events"].as_array().map_or(0, Vec::len);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "setup: only {got} of {n} events became searchable within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------

struct World {
    /// Every event posted during setup, as posted (with ids).
    posted: Vec<Value>,
}

impl World {
    /// Fills the path template of `op` from the first posted event that has
    /// every `x-stele-event-field` it needs.
    fn path(&self, spec: &Spec, op: &Op) -> Result<(String, Value), String> {
        let params: Vec<Param> = spec
            .params(op)
            .into_iter()
            .filter(|p| p.location == "path")
            .collect();
        // Parameters about other things than events come from their example.
        if !params.is_empty() && params.iter().all(|p| p.event_field.is_none()) {
            let mut path = op.path.clone();
            for p in &params {
                let v = p
                    .example
                    .as_ref()
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                path = path.replace(&format!("{{{}}}", p.name), &pct(v));
            }
            return Ok((path, Value::Null));
        }
        let ev = self
            .posted
            .iter()
            .find(|e| {
                params.iter().all(|p| {
                    p.event_field
                        .as_deref()
                        .is_some_and(|f| e.get(f).is_some_and(Value::is_string))
                })
            })
            .ok_or_else(|| {
                format!(
                    "no ingested event has every field named by x-stele-event-field on the path parameters of {}",
                    op.label()
                )
            })?;
        let mut path = op.path.clone();
        for p in &params {
            let f = p.event_field.as_deref().unwrap();
            path = path.replace(&format!("{{{}}}", p.name), &pct(ev[f].as_str().unwrap()));
        }
        Ok((path, ev.clone()))
    }
}

fn target(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

fn is_sse(spec: &Spec, op: &Op) -> bool {
    spec.doc
        .pointer(&format!("{}/responses/200/content", op.pointer))
        .and_then(Value::as_object)
        .is_some_and(|c| c.keys().any(|m| essence(m) == "text/event-stream"))
}

/// Whether the operation answers a WebSocket handshake (a documented 101).
fn is_websocket(spec: &Spec, op: &Op) -> bool {
    spec.doc
        .pointer(&format!("{}/responses/101", op.pointer))
        .is_some()
}

/// `req` as a WebSocket handshake (RFC 6455 section 4.1).
fn handshake(req: Req) -> Req {
    req.header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
}

/// What a stream request must deliver beyond a valid head.
enum StreamWant {
    /// Only the head and the opening comment.
    Head,
    /// The first data event, with its `id` at least this.
    Data { min_id: u64, exact_id: Option<u64> },
}

impl Checker<'_> {
    /// Opens a stream request and checks its head, then (per `want`) its
    /// first data event against `x-stele-sse-events`.
    /// A WebSocket handshake must be switched: 101 with `Upgrade:
    /// websocket` (the frames are tested in `stream_ws`).
    fn websocket(&mut self, op: &Op, req: &Req) {
        let ctx = format!("{} ({})", op.label(), req.describe());
        let conn = match Conn::open(&self.addr, req, Duration::from_secs(20)) {
            Ok(c) => c,
            Err(e) => return self.fail(&ctx, format!("no HTTP answer: {e}")),
        };
        if conn.status != 101 {
            match conn.finish() {
                Ok(resp) => {
                    self.check(op, &ctx, &resp, &Expect::default());
                    let text = preview(&resp.text());
                    self.fail(&ctx, format!("expected 101, got {}: {text}", resp.status));
                }
                Err(e) => self.fail(&ctx, e),
            }
            return;
        }
        self.seen.insert((op.label(), 101));
        self.checked += 1;
        if !conn
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        {
            self.fail(&ctx, "a 101 without `Upgrade: websocket`");
        }
    }

    fn stream(&mut self, op: &Op, req: &Req, want: StreamWant) {
        let ctx = format!("{} ({})", op.label(), req.describe());
        let conn = match Conn::open(&self.addr, req, Duration::from_secs(20)) {
            Ok(c) => c,
            Err(e) => return self.fail(&ctx, format!("no HTTP answer: {e}")),
        };
        let sse = conn
            .header("content-type")
            .is_some_and(|c| essence(c) == "text/event-stream");
        if conn.status != 200 || !sse {
            match conn.finish() {
                Ok(resp) => {
                    self.check(op, &ctx, &resp, &Expect::default());
                    if resp.status == 200 {
                        self.fail(&ctx, "a 200 stream is not text/event-stream");
                    } else {
                        self.fail(
                            &ctx,
                            format!("expected a stream, got {}: {}", resp.status, resp.text()),
                        );
                    }
                }
                Err(e) => self.fail(&ctx, e),
            }
            return;
        }
        // Check the head against the spec with an empty body stand-in.
        self.seen.insert((op.label(), 200));
        self.checked += 1;
        let pointer = self.response_for(op, 200).expect("200 documented");
        let spec = self.spec;
        let obj = spec.at(&pointer);
        if let Some(headers) = obj.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                let (hp, h) = spec.deref(&format!("{pointer}/headers/{}", esc(name)));
                match conn.header(name) {
                    None if h["required"].as_bool().unwrap_or(false) => {
                        self.fail(&ctx, format!("the required header {name} is missing"))
                    }
                    None => {}
                    Some(v) => {
                        if let Err(e) = spec.validate(&format!("{hp}/schema"), &json!(v)) {
                            self.fail(&ctx, format!("header {name}: {e}"));
                        }
                    }
                }
            }
        }
        let media = obj["content"]
            .as_object()
            .unwrap()
            .keys()
            .find(|m| essence(m) == "text/event-stream")
            .unwrap()
            .clone();
        let events = format!("{pointer}/content/{}/x-stele-sse-events", esc(&media));
        if !conn.chunked() {
            return self.fail(&ctx, "the stream is not chunked");
        }
        let mut r = conn.into_sse();
        match r.next(SSE_WAIT) {
            Ok(first) if first.data.is_empty() && !first.comments.is_empty() => {}
            Ok(first) => self.fail(
                &ctx,
                format!("the stream does not open with a comment: {first:?}"),
            ),
            Err(e) => return self.fail(&ctx, format!("reading the opening comment: {e}")),
        }
        let StreamWant::Data { min_id, exact_id } = want else {
            return;
        };
        let ev = match r.next_data(SSE_WAIT) {
            Ok(ev) => ev,
            Err(e) => return self.fail(&ctx, format!("no data event arrived: {e}")),
        };
        let name = ev.event.clone().unwrap_or_else(|| "message".into());
        let Some(schema) = spec
            .at(&events)
            .get(&name)
            .map(|_| format!("{events}/{}", esc(&name)))
        else {
            return self.fail(&ctx, format!("SSE event name {name:?} is not documented"));
        };
        let data: Value = match serde_json::from_str(&ev.data.join("\n")) {
            Ok(v) => v,
            Err(e) => return self.fail(&ctx, format!("SSE data is not JSON ({e}): {ev:?}")),
        };
        if let Err(e) = spec.validate(&schema, &data) {
            self.fail(&ctx, format!("SSE `{name}` data {e}"));
        }
        if name == "audit" {
            let id: Option<u64> = ev.id.as_deref().and_then(|i| i.parse().ok());
            if id.is_none() || id != data["seq"].as_u64() {
                self.fail(
                    &ctx,
                    format!("SSE id {:?} is not the event's seq {}", ev.id, data["seq"]),
                );
            }
            if id.is_some_and(|i| i < min_id) || exact_id.is_some_and(|x| id != Some(x)) {
                self.fail(
                    &ctx,
                    format!("the first event has id {:?}; expected at least {min_id} (exactly {exact_id:?})", ev.id),
                );
            }
        }
    }
}

/// The next page cursor of `op` (for its `cursor` parameter).
fn derive_cursor(
    c: &mut Checker,
    op: &Op,
    path: &str,
    required: &[(String, String)],
) -> Option<String> {
    let mut q = required.to_vec();
    q.push(("limit".into(), "1".into()));
    let req = Req::new("GET", target(path, &q));
    let resp = c.call(op, &req)?;
    let v: Value = serde_json::from_slice(&resp.body).ok()?;
    match v["next_cursor"].as_str() {
        Some(s) => Some(s.to_string()),
        None => {
            c.fail(
                &format!("{} ({})", op.label(), req.describe()),
                "no next_cursor to derive a `cursor` example from (the test ingests at least two matching events)",
            );
            None
        }
    }
}

/// The `field` values accepted in the 400 for a parameter a route does not
/// take: the parameter's name, plus known deviations (the server names
/// `limit` for another parameter), allowed alongside it so a fix keeps this
/// test passing.
fn field_for_rejected(op: &Op, param: &str) -> Vec<String> {
    match (op.path.as_str(), param) {
        // /v1/stats reports `limit` for each of limit, order and cursor.
        ("/v1/stats", "order" | "cursor") => vec![param.into(), "limit".into()],
        // /v1/export reports `limit` for both limit and cursor.
        ("/v1/export", "cursor") => vec![param.into(), "limit".into()],
        _ => vec![param.into()],
    }
}

fn walk_get(c: &mut Checker, world: &World, op: &Op, all_params: &BTreeMap<String, Value>) {
    let spec = c.spec;
    let params = spec.params(op);
    let (path, from_event) = match world.path(spec, op) {
        Ok(p) => p,
        Err(e) => return c.fail(&op.label(), e),
    };
    let has_path_params = params.iter().any(|p| p.location == "path");
    let mut required: Vec<(String, String)> = Vec::new();
    for p in params
        .iter()
        .filter(|p| p.required && p.location == "query")
    {
        match &p.example {
            Some(e) => required.push((p.name.clone(), example_text(e))),
            None => c.fail(
                &op.label(),
                format!("required parameter {} has no example", p.name),
            ),
        }
    }
    let sse = is_sse(spec, op);
    let ws = is_websocket(spec, op);

    // The representative request.
    let req = Req::new("GET", target(&path, &required));
    if ws {
        c.websocket(op, &handshake(req));
    } else if sse {
        c.stream(op, &req, StreamWant::Head);
    } else if let Some(resp) = c.call(op, &req) {
        let ctx = format!("{} ({})", op.label(), req.describe());
        if resp.status != 200 {
            c.fail(
                &ctx,
                format!(
                    "the representative request answered {}, not 200",
                    resp.status
                ),
            );
        } else if has_path_params {
            // The path came from an ingested event: the answer must show it.
            let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            let shows = match v.get("events") {
                Some(evs) => evs.as_array().is_some_and(|a| !a.is_empty()),
                None => v["id"] == from_event["id"],
            };
            if !shows {
                c.fail(
                    &ctx,
                    format!(
                        "the answer does not show the ingested event {}",
                        from_event["id"]
                    ),
                );
            }
        } else if essence(resp.ctype()) == "application/x-ndjson" && resp.body.is_empty() {
            c.fail(&ctx, "the export is empty although events were ingested");
        }
    }

    // Every optional parameter alone, with its example.
    for p in params
        .iter()
        .filter(|p| !p.required && p.location != "path")
    {
        let value = if p.name == "cursor" && p.location == "query" {
            match derive_cursor(c, op, &path, &required) {
                Some(cur) => cur,
                None => continue,
            }
        } else {
            match &p.example {
                Some(e) => example_text(e),
                None => {
                    c.fail(&op.label(), format!("parameter {} has no example", p.name));
                    continue;
                }
            }
        };
        let mut req = Req::new("GET", target(&path, &required));
        if p.location == "query" {
            let mut q = required.clone();
            q.push((p.name.clone(), value.clone()));
            req = Req::new("GET", target(&path, &q));
        } else if p.location == "header" {
            req = req.header(&p.name, &value);
        }
        if ws {
            c.websocket(op, &handshake(req));
        } else if sse {
            let want = match (p.name.as_str(), value.parse::<u64>()) {
                ("from_seq", Ok(n)) => StreamWant::Data {
                    min_id: n,
                    exact_id: None,
                },
                ("Last-Event-ID", Ok(n)) => StreamWant::Data {
                    min_id: n + 1,
                    exact_id: Some(n + 1),
                },
                _ => StreamWant::Head,
            };
            c.stream(op, &req, want);
        } else if let Some(resp) = c.call(op, &req) {
            if resp.status != 200 {
                c.fail(
                    &format!("{} ({})", op.label(), req.describe()),
                    format!(
                        "the documented parameter {} with its example answered {}, not 200: {}",
                        p.name,
                        resp.status,
                        preview(&resp.text())
                    ),
                );
            }
        }
    }

    // Every query parameter this operation does not document is refused.
    let documented: BTreeSet<&str> = params
        .iter()
        .filter(|p| p.location == "query")
        .map(|p| p.name.as_str())
        .collect();
    // (Routes without query parameters ignore the query string entirely,
    // as docs/openapi.yaml says, so they are not probed.)
    for (name, example) in all_params {
        if documented.is_empty() || documented.contains(name.as_str()) {
            continue;
        }
        let mut q = required.clone();
        q.push((name.clone(), example_text(example)));
        let req = Req::new("GET", target(&path, &q));
        let ctx = format!("{} ({})", op.label(), req.describe());
        let conn = match Conn::open(&c.addr, &req, Duration::from_secs(20)) {
            Ok(conn) => conn,
            Err(e) => {
                c.fail(&ctx, format!("no HTTP answer: {e}"));
                continue;
            }
        };
        if conn.status == 200 {
            c.fail(
                &ctx,
                format!("the undocumented parameter {name} was accepted (200)"),
            );
            continue;
        }
        let resp = match conn.finish() {
            Ok(r) => r,
            Err(e) => {
                c.fail(&ctx, e);
                continue;
            }
        };
        c.check(op, &ctx, &resp, &Expect::default());
        let field = serde_json::from_slice::<Value>(&resp.body).unwrap_or(Value::Null)["field"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let allowed = field_for_rejected(op, name);
        if resp.status != 400 || !allowed.contains(&field) {
            c.fail(
                &ctx,
                format!(
                    "an undocumented parameter should be a 400 naming it in `field` (one of {allowed:?}); got {} with field {field:?}",
                    resp.status
                ),
            );
        }
    }
}

fn walk_ingest(c: &mut Checker, op: &Op) {
    let spec = c.spec;
    let rb = spec.deref(&format!("{}/requestBody", op.pointer)).0;
    let content = spec
        .at(&format!("{rb}/content"))
        .as_object()
        .unwrap()
        .clone();
    let mut gen = stele::testkit::EventGen::new(7).with_base_time(now_micros() - 3_600_000_000);
    for (media, m) in &content {
        let mp = format!("{rb}/content/{}", esc(media));
        let body: Vec<u8> = if let Some(example) = m.get("example") {
            if let Err(e) = spec.validate(&format!("{mp}/schema"), example) {
                c.fail(&op.label(), format!("the {media} request example {e}"));
            }
            example.to_string().into_bytes()
        } else if m.get("x-stele-item-schema").is_some() {
            let mut text = String::new();
            for _ in 0..3 {
                let ev = gen.json();
                if let Err(e) = spec.validate(&format!("{mp}/x-stele-item-schema"), &ev) {
                    c.fail(&op.label(), format!("an EventGen event {e}"));
                }
                text.push_str(&ev.to_string());
                text.push('\n');
            }
            text.into_bytes()
        } else {
            c.fail(
                &op.label(),
                format!("request media type {media} has neither example nor x-stele-item-schema"),
            );
            continue;
        };
        let req = Req::new("POST", &op.path).body(Some(media), body);
        if let Some(resp) = c.call(op, &req) {
            if !(resp.status == 200 || resp.status == 201) {
                c.fail(
                    &format!("{} ({})", op.label(), req.describe()),
                    format!(
                        "a valid {media} body answered {}: {}",
                        resp.status,
                        resp.text()
                    ),
                );
            }
        }
    }
}

/// Legal holds: create the documented example (201), again (409), see it in
/// the list, lift an unknown one (404) and the example (204).
fn walk_holds(c: &mut Checker, op: &Op, ops: &[Op]) {
    let spec = c.spec;
    let rb = spec.deref(&format!("{}/requestBody", op.pointer)).0;
    let example = spec
        .at(&format!("{rb}/content/application~1json/example"))
        .clone();
    if let Err(e) = spec.validate(&format!("{rb}/content/application~1json/schema"), &example) {
        c.fail(&op.label(), format!("the request example {e}"));
    }
    let body = example.to_string().into_bytes();
    let req = Req::new("POST", "/v1/holds").body(Some("application/json"), body.clone());
    match c.call(op, &req) {
        Some(r) if r.status == 201 => {}
        Some(r) => c.fail(
            &op.label(),
            format!("the example hold answered {}: {}", r.status, r.text()),
        ),
        None => return,
    }
    let again = Req::new("POST", "/v1/holds").body(Some("application/json"), body);
    c.expect_problem(op, again, 409, "hold-exists", Some("name"));
    let bad = Req::new("POST", "/v1/holds").body(
        Some("application/json"),
        b"{\"name\": \"bad name\"}".to_vec(),
    );
    c.expect_problem(op, bad, 400, "invalid-hold", None);
    let Some(del) = ops
        .iter()
        .find(|o| o.method == "DELETE" && o.path == "/v1/holds/{name}")
    else {
        c.fail(&op.label(), "DELETE /v1/holds/{name} is not documented");
        return;
    };
    c.expect_problem(
        del,
        Req::new("DELETE", "/v1/holds/no-such-hold"),
        404,
        "not-found",
        None,
    );
    let name = example["name"].as_str().unwrap_or_default();
    let req = Req::new("DELETE", format!("/v1/holds/{name}"));
    match c.call(del, &req) {
        Some(r) if r.status == 204 => {}
        Some(r) => c.fail(
            &del.label(),
            format!(
                "lifting the example hold answered {}: {}",
                r.status,
                r.text()
            ),
        ),
        None => {}
    }
}

impl Checker<'_> {
    /// Sends `req` for `op`, checks the answer against the spec, and that it
    /// is the problem `kind` with `status` (and `field`); returns the body.
    fn expect_problem(
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

/// The problems of the read routes, one row a case: the spec's route, the
/// request target, the status, the problem kind and the parameter it names.
#[rustfmt::skip]
const READ_PROBLEMS: &[(&str, &str, u16, &str, Option<&str>)] = &[
    ("/v1/events", "/v1/events?limit=0", 400, "invalid-parameter", Some("limit")),
    ("/v1/events", "/v1/events?limit=1001", 400, "invalid-parameter", Some("limit")),
    ("/v1/events", "/v1/events?tenant=", 400, "invalid-parameter", Some("tenant")),
    ("/v1/events", "/v1/events?tenant=a&tenant=b", 400, "invalid-parameter", Some("tenant")),
    ("/v1/events", "/v1/events?severity=loud", 400, "invalid-parameter", Some("severity")),
    ("/v1/events", "/v1/events?ip=999.1.1.1", 400, "invalid-parameter", Some("ip")),
    ("/v1/events", "/v1/events?since=yesterday", 400, "invalid-parameter", Some("since")),
    ("/v1/events", "/v1/events?hours=0", 400, "invalid-parameter", Some("hours")),
    ("/v1/events", "/v1/events?hours=1&since=2026-01-01T00:00:00Z", 400, "invalid-parameter", Some("hours")),
    ("/v1/events", "/v1/events?cursor=abc", 400, "invalid-cursor", Some("cursor")),
    ("/v1/events", "/v1/events?q=nosuchfield%3Ax", 400, "invalid-query", Some("q")),
    ("/v1/events", "/v1/events?severity=debug&min_severity=error", 400, "invalid-parameter", Some("severity")),
    ("/v1/events", "/v1/events?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", 400, "invalid-parameter", Some("since")),
    // The export checks its query before answering 200.
    ("/v1/export", "/v1/export?q=nosuchfield%3Ax", 400, "invalid-query", Some("q")),
    ("/v1/search", "/v1/search?tenant=acme", 400, "invalid-parameter", Some("q")),
    ("/v1/stats", "/v1/stats?interval=week", 400, "invalid-parameter", Some("interval")),
    ("/v1/events", "/v1/events?offset=9999&limit=2", 400, "invalid-parameter", Some("offset")),
    ("/v1/stats", "/v1/stats?group_by=description", 400, "invalid-parameter", Some("group_by")),
    ("/v1/stats", "/v1/stats?top=0", 400, "invalid-parameter", Some("top")),
    ("/v1/count", "/v1/count?limit=1", 400, "invalid-parameter", Some("limit")),
    ("/v1/fields/{name}/values", "/v1/fields/description/values", 400, "invalid-parameter", Some("name")),
    ("/v1/fields/{name}/values", "/v1/fields/no_such_field/values", 404, "not-found", None),
    ("/v1/export", "/v1/export?format=xml", 400, "invalid-parameter", Some("format")),
    ("/v1/users/{id}/events", "/v1/users/u-42/events?limit=x", 400, "invalid-parameter", Some("limit")),
    ("/v1/stream", "/v1/stream?from_seq=-1", 400, "invalid-parameter", Some("from_seq")),
    // The drift Schemathesis found (issue 17): each answer as the spec now says.
    ("/v1/stream", "/v1/stream?from_seq=18446744073709551616", 400, "invalid-parameter", Some("from_seq")),
    ("/v1/stream", "/v1/stream?from_seq=1&from_seq=2", 400, "invalid-parameter", Some("from_seq")),
    ("/v1/events", "/v1/events?q=a%01b", 400, "invalid-query", Some("q")),
    ("/v1/events", "/v1/events?=x", 400, "invalid-parameter", None),
    ("/v1/events/{id}", "/v1/events/evt-1?=x", 400, "invalid-parameter", None),
    ("/v1/events/{id}", "/v1/events/evt-1?x=1", 400, "invalid-parameter", Some("x")),
    ("/v1/entities/{type}/{id}/history", "/v1/entities/order/55/history?limit=1&limit=2", 400, "invalid-parameter", Some("limit")),
    ("/v1/users/{id}/events", "/v1/users/u-42/events?cursor=a&cursor=b", 400, "invalid-parameter", Some("cursor")),
    ("/v1/search", "/v1/search?q=%20", 400, "invalid-parameter", Some("q")),
    ("/v1/events", "/v1/events?stele_records=some", 400, "invalid-parameter", Some("stele_records")),
    ("/v1/events", "/v1/events?risk_score=9..1", 400, "invalid-parameter", Some("risk_score")),
    ("/v1/events/{id}", "/v1/events/no-such-event", 404, "not-found", None),
];

/// Requests that must produce each documented error, checked against the
/// operation's documentation.
fn drive_errors(c: &mut Checker, ops: &[Op]) {
    let find = |m: &str, p: &str| {
        ops.iter()
            .find(|o| o.method == m && o.path == p)
            .unwrap_or_else(|| panic!("the spec has no {m} {p}"))
            .clone()
    };
    let ingest = find("POST", "/v1/events");
    let stream = find("GET", "/v1/stream");

    let json_post = |body: &str| {
        Req::new("POST", "/v1/events").body(Some("application/json"), body.as_bytes().to_vec())
    };

    // The problems of the read routes (400s of the queries, 404 of an id).
    for &(route, target, status, kind, param) in READ_PROBLEMS {
        c.expect_problem(
            &find("GET", route),
            Req::new("GET", target),
            status,
            kind,
            param,
        );
    }
    // A Last-Event-ID that is not a seq.
    c.expect_problem(
        &stream,
        Req::new("GET", "/v1/stream").header("Last-Event-ID", "abc"),
        400,
        "invalid-parameter",
        Some("Last-Event-ID"),
    );

    // Ingest errors.
    let v = c.expect_problem(&ingest, json_post("{not json"), 400, "invalid-json", None);
    if let Some(v) = v {
        if v["line"] != json!(1) {
            c.fail(
                "POST /v1/events (invalid JSON)",
                format!("expected line 1, got {}", v["line"]),
            );
        }
    }
    let nd = Req::new("POST", "/v1/events").body(
        Some("application/x-ndjson"),
        b"{\"action\":\"a\",\"actor\":\"b\"}\n\n{oops\n".to_vec(),
    );
    if let Some(v) = c.expect_problem(&ingest, nd, 400, "invalid-json", None) {
        if v["line"] != json!(3) {
            c.fail(
                "POST /v1/events (invalid NDJSON line 3)",
                format!("expected line 3, got {}", v["line"]),
            );
        }
    }
    c.expect_problem(&ingest, json_post("[]"), 400, "invalid-batch-size", None);
    let bad = json!([
        {"action": "ok", "actor": "x"},
        {"action": "x", "actor": "y", "severity": "loud", "risk_score": 101, "seq": 3},
        {"actor": "z", "changes": [{"old": 1}]},
        "not an object"
    ]);
    // The input schema must refuse what the server refuses.
    let body = c.spec.deref("/paths/~1v1~1events/post/requestBody").0;
    let item = format!("{body}/content/application~1x-ndjson/x-stele-item-schema");
    if let Err(e) = c.spec.validate(&item, &bad[0]) {
        c.fail("EventInput", format!("refuses a valid event: {e}"));
    }
    for (i, ev) in bad.as_array().unwrap().iter().enumerate().skip(1) {
        if c.spec.validate(&item, ev).is_ok() {
            c.fail(
                "EventInput",
                format!("accepts event {i} of {bad}, which the server refuses"),
            );
        }
    }
    if let Some(v) = c.expect_problem(
        &ingest,
        json_post(&bad.to_string()),
        400,
        "invalid-events",
        None,
    ) {
        let mut got: Vec<(u64, String, String)> = v["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["index"].as_u64().unwrap_or(99),
                            e["field"].as_str().unwrap_or("?").to_string(),
                            e["kind"].as_str().unwrap_or("?").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.sort();
        let want: Vec<(u64, String, String)> = [
            (1, "risk_score", "out_of_range"),
            (1, "seq", "unknown_field"),
            (1, "severity", "invalid_value"),
            (2, "action", "missing"),
            (2, "changes[0].field", "missing"),
            (3, "", "not_an_object"),
        ]
        .iter()
        .map(|(i, f, k)| (*i, f.to_string(), k.to_string()))
        .collect();
        if got != want {
            c.fail(
                "POST /v1/events (invalid events)",
                format!("errors {got:?}, expected {want:?}"),
            );
        }
    }
    // 409: a stored id with other content (in the same tenant: ids are per
    // tenant); an id twice in one request.
    c.expect_problem(
        &ingest,
        json_post(r#"{"id": "fx-pw-1", "action": "other", "actor": "mallory", "tenant": "acme"}"#),
        409,
        "id-conflict",
        Some("id"),
    );
    c.expect_problem(&ingest, json_post(r#"[{"id": "dup", "action": "a", "actor": "b"}, {"id": "dup", "action": "a", "actor": "b"}]"#), 409, "id-conflict", Some("id"));
    // 200: an idempotent replay.
    let fx = &fixtures()[0];
    let req =
        Req::new("POST", "/v1/events").body(Some("application/json"), fx.to_string().into_bytes());
    if let Some(resp) = c.call(&ingest, &req) {
        if resp.status != 200 {
            c.fail(
                &format!("POST /v1/events ({})", req.describe()),
                format!("a replay answered {}", resp.status),
            );
        }
    }
    // A missing Content-Type is read as JSON.
    let req = Req::new("POST", "/v1/events")
        .body(None, br#"{"action": "no_type", "actor": "x"}"#.to_vec());
    if let Some(resp) = c.call(&ingest, &req) {
        if resp.status != 201 {
            c.fail(
                &format!("POST /v1/events ({})", req.describe()),
                format!("answered {}, expected 201", resp.status),
            );
        }
    }
    // 415: a Content-Type other than JSON or NDJSON.
    c.expect_problem(
        &ingest,
        Req::new("POST", "/v1/events").body(
            Some("text/plain"),
            br#"{"action": "a", "actor": "b"}"#.to_vec(),
        ),
        415,
        "unsupported-media-type",
        None,
    );
    // 413: a body just over the limit.
    let mut big = Vec::with_capacity(BODY_BYTES_MAX + 1024);
    big.extend_from_slice(br#"{"action": "big", "actor": "x", "description": ""#);
    big.resize(BODY_BYTES_MAX + 1000, b'a');
    big.extend_from_slice(b"\"}");
    let req = Req::new("POST", "/v1/events").body(Some("application/json"), big);
    let v = c.expect_problem(&ingest, req, 413, "body-too-large", None);
    if let Some(v) = v {
        if v["limit"] != json!(BODY_BYTES_MAX) {
            c.fail(
                "POST /v1/events (413)",
                format!("limit {} is not {BODY_BYTES_MAX}", v["limit"]),
            );
        }
    }

    // Unknown routes: 404 whatever the method.
    let no_route = "/components/responses/NoSuchRoute";
    for (m, p) in [
        ("GET", "/v2/nothing"),
        ("POST", "/v1/nothing"),
        ("GET", "/"),
        ("GET", "/v1/events/a/b"),
    ] {
        let req = Req::new(m, p);
        let ctx = format!("unknown route ({})", req.describe());
        match send(&c.addr, &req) {
            Ok(resp) => {
                if resp.status != 404 {
                    c.fail(&ctx, format!("answered {}, expected 404", resp.status));
                }
                c.check_against(no_route, &ctx, &resp, &Expect::default());
            }
            Err(e) => c.fail(&ctx, e),
        }
    }
}

/// Every documented path answers 405 (problem+json) to the methods it does
/// not document: the spec lists every method the server serves.
fn undocumented_methods(c: &mut Checker, world: &World, ops: &[Op]) {
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

fn start(spec: &Spec) -> (tempfile::TempDir, Server, World) {
    let tmp = tempfile::tempdir().unwrap();
    // A signing key, so checkpoints (GET /v1/checkpoint) and digests run.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp.path().join("signing.key"))
            .unwrap();
        writeln!(f, "{}", "2a".repeat(32)).unwrap();
    }
    let d = Server::start(tmp.path());
    // The spec's own request example first, then fixtures, then generated
    // events (around now, so `hours` and `last_24h` see them).
    let example = spec
        .at("/paths/~1v1~1events/post/requestBody/content/application~1json/example")
        .clone();
    let mut posted = vec![example.clone()];
    post_ok(&d.addr, &example);
    let fx = fixtures();
    post_ok(&d.addr, &Value::Array(fx.clone()));
    posted.extend(fx);
    let mut gen = stele::testkit::EventGen::new(42).with_base_time(now_micros() - 7_200_000_000);
    let generated: Vec<Value> = (0..40).map(|_| gen.json()).collect();
    post_ok(&d.addr, &Value::Array(generated.clone()));
    posted.extend(generated);
    wait_indexed(&d.addr, posted.len());
    // The checkpointer signs the head within its interval (1 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.get("/v1/checkpoint").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "no checkpoint signed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (tmp, d, World { posted })
}

/// Statuses every run must have exercised, by operation.
const MUST_SEE: &[(&str, &[u16])] = &[
    ("GET /healthz", &[200]),
    ("GET /readyz", &[200]),
    ("GET /metrics", &[200]),
    ("POST /v1/events", &[200, 201, 400, 409, 413, 415]),
    ("GET /v1/events", &[200, 400]),
    ("GET /v1/search", &[200, 400]),
    ("GET /v1/events/{id}", &[200, 404]),
    ("GET /v1/entities/{type}/{id}/history", &[200, 400]),
    ("GET /v1/users/{id}/events", &[200, 400]),
    ("GET /v1/stats", &[200, 400]),
    ("GET /v1/count", &[200, 400]),
    ("GET /v1/fields", &[200]),
    ("GET /v1/fields/{name}/values", &[200, 400, 404]),
    ("GET /v1/export", &[200, 400]),
    ("GET /v1/stream", &[200, 400]),
    ("GET /v1/stream/ws", &[101, 400]),
];

#[test]
fn every_operation_answers_as_documented() {
    let spec = Spec::load();
    let (_tmp, d, world) = start(&spec);
    let ops = spec.operations();
    let mut c = Checker {
        spec: &spec,
        addr: d.addr.clone(),
        failures: Vec::new(),
        seen: BTreeSet::new(),
        checked: 0,
    };
    // Every query parameter name in the spec with an example value.
    let mut all_params: BTreeMap<String, Value> = BTreeMap::new();
    for op in &ops {
        for p in spec.params(op) {
            if p.location == "query" {
                if let Some(e) = p.example {
                    all_params.entry(p.name).or_insert(e);
                }
            }
        }
    }
    all_params.insert("no_such_parameter".into(), json!("x"));

    for op in &ops {
        match op.method.as_str() {
            "GET" => walk_get(&mut c, &world, op, &all_params),
            "POST" if op.path == "/v1/events" => walk_ingest(&mut c, op),
            "POST" if op.path == "/v1/holds" => walk_holds(&mut c, op, &ops),
            // Exercised by walk_holds (it needs the hold it creates).
            "DELETE" if op.path == "/v1/holds/{name}" => {}
            _ => c.fail(&op.label(), "this test does not know how to exercise it"),
        }
    }
    drive_errors(&mut c, &ops);
    undocumented_methods(&mut c, &world, &ops);

    for (op, statuses) in MUST_SEE {
        for s in *statuses {
            if !c.seen.contains(&(op.to_string(), *s)) {
                c.fail(op, format!("status {s} was never exercised"));
            }
        }
        if !ops.iter().any(|o| o.label() == *op) {
            c.fail(op, "the operation is not in the spec");
        }
    }
    let exercised: BTreeSet<String> = c.seen.iter().map(|(o, _)| o.clone()).collect();
    for op in &ops {
        if !exercised.contains(&op.label()) {
            c.fail(&op.label(), "never exercised");
        }
    }
    eprintln!(
        "checked {} responses of {} operations; statuses seen: {:?}",
        c.checked,
        ops.len(),
        c.seen
    );
    assert!(
        c.failures.is_empty(),
        "{} contract failures:\n  {}",
        c.failures.len(),
        c.failures.join("\n  ")
    );
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

/// The documented answers to each configurable limit, from a daemon with
/// small limits: 414, 431, 413 and `invalid-batch-size` with their `limit`,
/// 503 `request-timeout` (a stalled body) and 503 `too-many-streams`.
#[test]
fn limits_answer_as_documented() {
    let spec = Spec::load();
    let tmp = tempfile::tempdir().unwrap();
    let d = Server::start_with_limits(
        tmp.path(),
        stele::config::Limits {
            url_bytes_max: 1024,
            header_bytes_max: 2048,
            request_timeout_secs: 1,
            streams_max: 1,
            events_per_request_max: 10,
            body_bytes_max: 100_000,
            ..stele::config::Limits::DEFAULT
        },
    );
    let ops = spec.operations();
    let op = |label: &str| {
        ops.iter()
            .find(|o| o.label() == label)
            .unwrap_or_else(|| panic!("{label} is not in the spec"))
            .clone()
    };
    let (ingest, list, stats, stream) = (
        op("POST /v1/events"),
        op("GET /v1/events"),
        op("GET /v1/stats"),
        op("GET /v1/stream"),
    );
    let mut c = Checker {
        spec: &spec,
        addr: d.addr.clone(),
        failures: Vec::new(),
        seen: BTreeSet::new(),
        checked: 0,
    };
    let limit_is = |c: &mut Checker, what: &str, v: Option<Value>, want: u64| {
        if let Some(v) = v {
            if v["limit"] != json!(want) {
                c.fail(what, format!("`limit` is {}, expected {want}", v["limit"]));
            }
        }
    };

    let v = c.expect_problem(
        &list,
        Req::new("GET", format!("/v1/events?tenant={}", "x".repeat(1100))),
        414,
        "uri-too-long",
        None,
    );
    limit_is(&mut c, "GET /v1/events (414)", v, 1024);
    let v = c.expect_problem(
        &stats,
        Req::new("GET", "/v1/stats").header("X-Padding", &"p".repeat(3000)),
        431,
        "headers-too-large",
        None,
    );
    limit_is(&mut c, "GET /v1/stats (431)", v, 2048);
    let big = format!(
        r#"{{"action": "big", "actor": "x", "description": "{}"}}"#,
        "a".repeat(100_001)
    );
    let v = c.expect_problem(
        &ingest,
        Req::new("POST", "/v1/events").body(Some("application/json"), big.into_bytes()),
        413,
        "body-too-large",
        None,
    );
    limit_is(&mut c, "POST /v1/events (413)", v, 100_000);
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"action": "a", "actor": format!("a{i}")}))
        .collect();
    let v = c.expect_problem(
        &ingest,
        Req::new("POST", "/v1/events").body(
            Some("application/json"),
            Value::Array(eleven).to_string().into_bytes(),
        ),
        400,
        "invalid-batch-size",
        None,
    );
    limit_is(&mut c, "POST /v1/events (11 events)", v, 10);

    // A body announced as 100 bytes of which 10 arrive: 503 after 1 s.
    let mut stalled =
        Req::new("POST", "/v1/events").body(Some("application/json"), br#"{"action":"#.to_vec());
    stalled.declared_length = Some(100);
    let v = c.expect_problem(&ingest, stalled, 503, "request-timeout", None);
    limit_is(&mut c, "POST /v1/events (stalled body)", v, 1);

    // A second stream while one is open: 503 too-many-streams.
    let first = Req::new("GET", "/v1/stream");
    match Conn::open(&d.addr, &first, Duration::from_secs(20)) {
        Ok(conn) => {
            let mut open = conn.into_sse();
            // The opening comment is sent once the stream counts as open.
            if let Err(e) = open.next(SSE_WAIT) {
                c.fail("GET /v1/stream (first stream)", e);
            }
            let v = c.expect_problem(
                &stream,
                Req::new("GET", "/v1/stream"),
                503,
                "too-many-streams",
                None,
            );
            limit_is(&mut c, "GET /v1/stream (second stream)", v, 1);
            drop(open);
        }
        Err(e) => c.fail("GET /v1/stream (first stream)", e),
    }
    assert!(
        c.failures.is_empty(),
        "{} limit failures:\n  {}",
        c.failures.len(),
        c.failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Access control
// ---------------------------------------------------------------------------

/// The roles a `bearerAuth` requirement may name.
const ROLES: [&str; 4] = ["ingest", "read", "export", "admin"];

/// The role `op` needs with keys configured, from its `security` (or the
/// top-level one): `Ok(None)` for a public operation (no `bearerAuth`
/// requirement), `Err` when the bearer requirement names no single role.
fn bearer_role(spec: &Spec, op: &Op) -> Result<Option<String>, String> {
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
                    if r.status != 200 {
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

// ---------------------------------------------------------------------------
// Static checks
// ---------------------------------------------------------------------------

/// Every `$ref` in `v` (at `at`) as (where, target).
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push((at.to_string(), s.to_string()));
                    }
                } else {
                    refs(x, &format!("{at}/{}", esc(k)), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_spec_is_well_formed() {
    let spec = Spec::load();
    let mut failures: Vec<String> = Vec::new();
    if spec.doc["openapi"] != json!("3.1.0") {
        failures.push(format!(
            "openapi is {}, expected \"3.1.0\"",
            spec.doc["openapi"]
        ));
    }
    let mut all = Vec::new();
    refs(&spec.doc, "", &mut all);
    for (at, target) in &all {
        match target.strip_prefix('#') {
            Some(p) if spec.doc.pointer(p).is_some() => {}
            _ => failures.push(format!("{at}: $ref {target} does not resolve in the spec")),
        }
    }
    for name in spec.at("/components/schemas").as_object().unwrap().keys() {
        if let Err(e) = spec.validator(&format!("/components/schemas/{}", esc(name))) {
            failures.push(e);
        }
    }
    let mut ids = BTreeSet::new();
    for op in spec.operations() {
        let o = spec.at(&op.pointer);
        match o["operationId"].as_str() {
            Some(id) if ids.insert(id.to_string()) => {}
            other => failures.push(format!(
                "{}: operationId {other:?} missing or not unique",
                op.label()
            )),
        }
        // Path template parameters and path parameters match.
        let params = spec.params(&op);
        let in_template: BTreeSet<String> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect();
        let declared: BTreeSet<String> = params
            .iter()
            .filter(|p| p.location == "path")
            .map(|p| p.name.clone())
            .collect();
        if in_template != declared {
            failures.push(format!(
                "{}: path template parameters {in_template:?} differ from declared path parameters {declared:?}",
                op.label()
            ));
        }
        for p in &params {
            // Path parameters come from an ingested event's field, or (for
            // routes about other things than events) from their example.
            if p.location == "path"
                && (!p.required || (p.event_field.is_none() && p.example.is_none()))
            {
                failures.push(format!(
                    "{}: path parameter {} must be required and name its x-stele-event-field",
                    op.label(),
                    p.name
                ));
            }
            match &p.example {
                Some(e) => {
                    if let Err(err) = spec.validate(&p.schema, e) {
                        failures.push(format!(
                            "{}: the example of parameter {} {err}",
                            op.label(),
                            p.name
                        ));
                    }
                }
                None => failures.push(format!(
                    "{}: parameter {} has no example",
                    op.label(),
                    p.name
                )),
            }
        }
        // Security requirements name defined schemes; a protected operation
        // names its role and documents the answers of access control.
        let schemes = spec.doc.pointer("/components/securitySchemes");
        let reqs = spec
            .doc
            .pointer(&format!("{}/security", op.pointer))
            .or_else(|| spec.doc.get("security"));
        for r in reqs.and_then(Value::as_array).into_iter().flatten() {
            for name in r.as_object().into_iter().flat_map(|m| m.keys()) {
                if schemes.and_then(|s| s.get(name)).is_none() {
                    failures.push(format!(
                        "{}: security names the undefined scheme {name}",
                        op.label()
                    ));
                }
            }
        }
        match bearer_role(&spec, &op) {
            Ok(Some(_)) => {
                for code in ["401", "403", "429"] {
                    if spec
                        .doc
                        .pointer(&format!("{}/responses/{code}", op.pointer))
                        .is_none()
                    {
                        failures.push(format!(
                            "{}: needs a key but does not document {code}",
                            op.label()
                        ));
                    }
                }
            }
            Ok(None) => {}
            Err(e) => failures.push(e),
        }
        // Every response has a description and schemas that compile.
        let responses = format!("{}/responses", op.pointer);
        for code in spec.at(&responses).as_object().unwrap().keys() {
            let (rp, r) = spec.deref(&format!("{responses}/{}", esc(code)));
            if r["description"].as_str().is_none_or(str::is_empty) {
                failures.push(format!("{} {code}: no description", op.label()));
            }
            let Some(content) = r["content"].as_object() else {
                // 101: the connection is a WebSocket from then on.
                if code != "204" && code != "101" {
                    failures.push(format!("{} {code}: no content", op.label()));
                }
                continue;
            };
            for (media, m) in content {
                let mp = format!("{rp}/content/{}", esc(media));
                if m.get("schema").is_none() {
                    failures.push(format!("{} {code} {media}: no schema", op.label()));
                    continue;
                }
                for extra in ["schema", "x-stele-item-schema"] {
                    if m.get(extra).is_some() {
                        if let Err(e) = spec.validator(&format!("{mp}/{extra}")) {
                            failures.push(format!("{} {code} {media}: {e}", op.label()));
                        }
                    }
                }
                if essence(media) == "application/problem+json" {
                    // The response's problem schema is (or includes) Problem.
                    let s = m["schema"].to_string();
                    if !s.contains("#/components/schemas/Problem") {
                        failures.push(format!(
                            "{} {code}: problem schema does not use Problem",
                            op.label()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems in {SPEC_PATH}:\n  {}",
        failures.len(),
        failures.join("\n  ")
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
