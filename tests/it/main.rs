//! The integration tests: one test binary, a module per area.
//!
//! One binary instead of one per file: every test binary statically links the
//! whole `stele` library (tantivy, sled, hyper, rustls, ...), and cargo runs
//! test binaries one after another. Filter with `cargo test --test it <module>::`.
//!
//! `support` is the shared part: the `stele` binary launcher and daemon
//! handle (`support::daemon`), the raw HTTP/1.1 client, and the attacker's
//! toolkit of the tamper tests (`support::forge`). The one test that measures
//! its own process (`tests/log_rss.rs`) is a binary of its own.

mod support;

mod abuse;
mod alerts;
mod append;
mod archive;
mod auth;
mod backup;
mod cli_query;
mod compressed;
mod config;
mod console;
mod crash;
mod dashboard;
mod detect_e2e;
mod digest;
mod facets;
mod faults;
mod findings;
mod fuzz_corpus;
mod http;
mod http_crash;
mod http_errors;
mod jwt;
mod log;
mod metrics;
mod openapi;
mod own_records;
mod params;
mod processes;
mod query;
mod readme;
mod retention;
mod risk;
mod s3_harness;
mod stream_ws;
mod systemd;
mod tamper;
