//! Counting and describing: `GET /v1/count` (the number of matches, nothing
//! else), `GET /v1/fields` (every field of the field table: its kind, whether
//! it filters, groups or is searched as words, an enum's values; and the
//! parameters that are not fields) and `GET /v1/fields/{name}/values` (the
//! values a field takes among the matches, with their counts: a facet).
//!
//! Invariants:
//! 1. `/v1/fields` derives from the field table (`event::FIELDS`), the
//!    parameter lists of `query` and the index's groupable fields; it lists no
//!    field by hand.
//! 2. Counts and facets apply the caller's tenant scope like every read.

use super::params::{query_pairs, reject_params};
use super::problem::{internal, problem, query_problem, Kind};
use super::{counted, json_response, App, Caller, Req, Resp};
use crate::event::{self, Kind as FieldKind, Origin, Phase, Severity, Source, Status};
use crate::index::text::{group_fields, GroupCounts, StatsRequest};
use crate::query::{Query, QueryError, StatsParams, PAGING_PARAMS, PARAMS, STATS_PARAMS};
use hyper::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

/// What a count or a facet does not take.
const NOT_PAGED: [&str; 5] = ["limit", "sort", "order", "cursor", "interval"];

/// `GET /v1/count`: `{"count": N}`, the listing filters' matches, counted
/// without computing any statistic.
pub(super) async fn count(app: Arc<App>, req: Req, caller: Caller) -> Resp {
    let pairs = query_pairs(&req);
    if let Some(r) = reject_params(
        &pairs,
        &NOT_PAGED,
        "a count takes the listing's filters and `q`, not `limit`, `sort`, `order`, `cursor` or `interval`",
    ) {
        return r;
    }
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    match tokio::task::spawn_blocking(move || app.engine.count(&q.filter)).await {
        Ok(Ok(n)) => counted(
            json_response(StatusCode::OK, &json!({ "count": n })),
            n as usize,
        ),
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

/// `GET /v1/fields`: the same document for every caller (it describes the
/// API, not the data).
pub(super) fn fields() -> Resp {
    static DOC: OnceLock<Value> = OnceLock::new();
    json_response(StatusCode::OK, DOC.get_or_init(fields_document))
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Seq => "seq",
        FieldKind::Time => "time",
        FieldKind::Identifier => "identifier",
        FieldKind::Ip => "ip",
        FieldKind::Text => "text",
        FieldKind::Enum => "enum",
        FieldKind::Integer => "integer",
        FieldKind::Changes => "changes",
        FieldKind::Json => "json",
        FieldKind::Labels => "labels",
    }
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Stored => "stored",
        Origin::Posted => "posted",
        Origin::Provenance => "provenance",
        Origin::Computed => "computed",
    }
}

/// The allowed values of an enum field.
fn enum_values(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "source" => Some(Source::NAMES),
        "status" => Some(Status::NAMES),
        "severity" => Some(Severity::NAMES),
        "phase" => Some(Phase::NAMES),
        _ => None,
    }
}

fn fields_document() -> Value {
    let groupable: Vec<&str> = group_fields().collect();
    let fields: Vec<Value> = event::FIELDS
        .iter()
        .map(|spec| {
            let mut f = json!({
                "name": spec.name,
                "kind": kind_name(spec.kind),
                "origin": origin_name(spec.origin),
                "filter": spec.filter,
                "groupable": groupable.contains(&spec.name),
                // Bare words search the text fields, metadata values and the words
                // of named keywords (`user_name`).
                "full_text": matches!(
                    spec.indexed,
                    event::Indexed::FullText | event::Indexed::Json | event::Indexed::NamedKeyword
                ),
            });
            if let Some(values) = enum_values(spec.name) {
                f["values"] = json!(values);
            }
            f
        })
        .collect();
    let filters: Vec<&str> = event::FIELDS.iter().filter_map(|s| s.filter).collect();
    let query: Vec<&str> = PARAMS
        .iter()
        .copied()
        .filter(|p| !filters.contains(p))
        .collect();
    json!({
        "fields": fields,
        "parameters": {
            "query": query,
            "listing": PAGING_PARAMS,
            "stats": STATS_PARAMS,
        },
    })
}

/// One group (or facet) as JSON: values with counts, then what the list
/// does not show.
pub(super) fn group_json(g: &GroupCounts) -> Value {
    json!({
        "field": g.field,
        "values": g.values.iter()
            .map(|(v, n)| json!({ "value": v, "count": n }))
            .collect::<Vec<_>>(),
        "distinct": g.distinct,
        "missing": g.missing,
        "truncated": g.truncated,
    })
}

/// `GET /v1/fields/{name}/values`: the values of a groupable field among the
/// matches of the listing filters, count descending then value ascending, at
/// most `top` (default `TOP_DEFAULT`).
pub(super) async fn values(app: Arc<App>, req: Req, caller: Caller, params: Vec<String>) -> Resp {
    let name = params.concat();
    let Some(spec) = event::field(&name) else {
        return problem(
            Kind::NoSuchField,
            format!("{name:?} is not a field; GET /v1/fields lists them"),
            json!({}),
        );
    };
    if !group_fields().any(|g| g == spec.name) {
        return query_problem(QueryError::BadParam {
            param: "name".into(),
            message: format!(
                "{name:?} is not a keyword field, its values are not counted; fields with values are {}",
                group_fields().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let mut pairs = query_pairs(&req);
    if let Some(r) = reject_params(
        &pairs,
        &[
            "group_by", "include", "limit", "sort", "order", "cursor", "interval",
        ],
        "a field's values take the listing's filters, `q` and `top`",
    ) {
        return r;
    }
    let top = match StatsParams::take(&mut pairs) {
        Ok(p) => p.top,
        Err(e) => return query_problem(e),
    };
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    let request = StatsRequest {
        groups: vec![spec.name],
        top: top.unwrap_or(crate::query::TOP_DEFAULT),
        ..StatsRequest::default()
    };
    match tokio::task::spawn_blocking(move || app.engine.stats_of(&q.filter, &request)).await {
        Ok(Ok(a)) => {
            let mut body = a.groups.first().map(group_json).unwrap_or_default();
            body["total"] = json!(a.total);
            counted(json_response(StatusCode::OK, &body), a.total as usize)
        }
        Ok(Err(e)) => query_problem(e),
        Err(e) => internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_document_follows_the_field_table() {
        let doc = fields_document();
        let fields = doc["fields"].as_array().unwrap();
        assert_eq!(fields.len(), event::FIELDS.len());
        for (f, spec) in fields.iter().zip(event::FIELDS) {
            assert_eq!(f["name"], spec.name);
            assert_eq!(
                f["values"].is_array(),
                spec.kind == FieldKind::Enum,
                "{}",
                spec.name
            );
        }
        let by_name = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap().clone();
        assert_eq!(by_name("action")["groupable"], true);
        assert_eq!(by_name("description")["groupable"], false);
        assert_eq!(by_name("description")["full_text"], true);
        assert_eq!(by_name("user_name")["full_text"], true);
        assert_eq!(by_name("tenant")["groupable"], true);
        assert_eq!(by_name("severity")["values"][0], "debug");
        let query = doc["parameters"]["query"].as_array().unwrap();
        assert!(query.contains(&json!("since")) && !query.contains(&json!("action")));
    }
}
