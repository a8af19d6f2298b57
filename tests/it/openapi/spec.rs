//! The spec: `docs/openapi.yaml` loaded into a `serde_json::Value`, its
//! operations and parameters (Reference Objects followed), and response
//! schemas validated as JSON Schema 2020-12 by their JSON pointer. Also the
//! static check of the document itself (`the_spec_is_well_formed`).

use super::*;

pub(super) struct Spec {
    pub(super) doc: Value,
    validators: RefCell<HashMap<String, Rc<jsonschema::Validator>>>,
}

/// One operation of the spec.
#[derive(Clone)]
pub(super) struct Op {
    /// Upper case, e.g. `GET`.
    pub(super) method: String,
    /// The path template, e.g. `/v1/events/{id}`.
    pub(super) path: String,
    /// JSON pointer of the operation object.
    pub(super) pointer: String,
}

impl Op {
    pub(super) fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A parameter of an operation, with Reference Objects followed.
#[derive(Clone)]
pub(super) struct Param {
    pub(super) name: String,
    pub(super) location: String,
    pub(super) required: bool,
    /// JSON pointer of its schema.
    pub(super) schema: String,
    pub(super) example: Option<Value>,
    pub(super) event_field: Option<String>,
}

/// Escapes one JSON pointer token.
pub(super) fn esc(token: &str) -> String {
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
    pub(super) fn load() -> Spec {
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

    pub(super) fn at(&self, pointer: &str) -> &Value {
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("the spec has nothing at {pointer}"))
    }

    /// Follows Reference Objects from `pointer`: the final pointer and object.
    pub(super) fn deref(&self, pointer: &str) -> (String, &Value) {
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

    pub(super) fn operations(&self) -> Vec<Op> {
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

    pub(super) fn params(&self, op: &Op) -> Vec<Param> {
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
    pub(super) fn validate(&self, pointer: &str, instance: &Value) -> Result<(), String> {
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
                // 101: the connection is a WebSocket from then on; 304:
                // the client's copy is current; 302: the answer is the
                // Location (RFC 9110: no body needed).
                if !["204", "101", "302", "304"].contains(&code.as_str()) {
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
