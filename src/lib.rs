//! Stele: an audit-log daemon.
//!
//! Module map (see ARCHITECTURE.md for the invariants each one keeps):
//! - [`auth`]: API keys, roles, tenant scopes and rate limits.
//! - [`access`]: `audit_access` events: the audit log audits its readers.
//! - [`alert`]: rules over the log delivered to webhooks, at least once, in order.
//! - [`tls`]: optional HTTPS (rustls), certificates reloaded on SIGHUP.
//! - [`event`]: the event model, its validation and its encoding.
//! - [`log`]: the segment log, the durable source of truth.
//! - [`index`]: the sled and tantivy indexes and the indexer that follows the log.
//! - [`intel`]: activity intelligence: risk scores computed at ingest.
//! - [`metrics`]: latency histograms in the Prometheus text format.
//! - [`retention`]: TTL per day partition, legal holds, dropping the oldest days.
//! - [`intel`]: activity intelligence: process runs and batch operations derived from
//!   the log (and the feed that follows it).
//! - [`query`]: the query engine (filters, full text, cursors, statistics).
//! - [`config`]: the configuration file, `STELE_*` overrides and flags, validated (and the
//!   serve limits).
//! - [`ingest`]: idempotent ingest (client ids reserved, then settled).
//! - [`daemon`]: `stele serve` as a process: signals, systemd, TLS setup, start-up.
//! - [`server`]: the HTTP/JSON API: `serve(listener, state, shutdown)`.
//! - [`notify`]: systemd notifications (readiness, status, watchdog) for `stele serve`.
//! - [`verify`]: `stele verify`: segment files, the digest chain and checkpoints, offline.
//! - [`backup`]: `stele backup`, a consistent copy of the log while the daemon runs.
//! - [`seal`]: checkpoints, signed daily digests (`seal::digest`), scrubbing.
//! - [`datadir`]: the data directory's paths, the durable-write helper, random bytes.
//! - [`clock`]: the time seam.
//! - [`sync`]: locks that survive a panic elsewhere.
//! - [`fault`]: failpoints on the log's I/O paths (test builds only).
//! - `fuzzing`: the properties the fuzz targets check (replayed by the tests); feature
//!   `testkit` only.
//! - `testkit`: deterministic realistic events for tests and benches; feature `testkit`
//!   only (tests, benches, examples and the fuzz crate turn it on, release builds never).

// Module docs name the private modules and items they describe (the crate is
// read by its maintainers with `cargo doc --document-private-items`).
#![allow(rustdoc::private_intra_doc_links)]

pub mod access;
pub mod alert;
pub mod archive;
pub mod auth;
pub mod backup;
pub mod clock;
pub mod config;
pub mod console;
pub mod daemon;
pub mod datadir;
pub mod event;
pub mod fault;
#[cfg(any(test, feature = "testkit"))]
pub mod fuzzing;
pub mod index;
pub mod ingest;
pub mod intel;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod query;
pub mod retention;
pub mod seal;
pub mod server;
pub mod stall;
pub mod sync;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tls;
pub mod verify;
