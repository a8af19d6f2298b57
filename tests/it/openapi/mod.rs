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
//!   `components/parameters`) are followed by `spec`.
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
//!
//! # Layout
//!
//! This file holds the constants the areas share; each submodule takes what
//! it needs with `use super::*`, and the items the others use are glob
//! imported here: `spec` (loading and resolving the spec, schema
//! validation, and the static check of the document), `client` (HTTP/1.1),
//! `checker` (responses against the spec), `streams` (SSE and WebSocket),
//! `requests` (the request generator and the walk over the operations),
//! `problems` (the documented errors, `READ_PROBLEMS`), `contract` (the
//! runner, `every_operation_answers_as_documented`), `routes` (methods and
//! the route table), `limits` and `access` (access control).

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

mod access;
mod checker;
mod client;
mod contract;
mod limits;
mod problems;
mod requests;
mod routes;
mod spec;
mod streams;

use access::*;
use checker::*;
use client::*;
use contract::*;
use problems::*;
use requests::*;
use routes::*;
use spec::*;
use streams::*;
