//! Stele: an audit-log daemon.
//!
//! Module map (see ARCHITECTURE.md for the invariants each one keeps):
//! - [`event`]: the event model, its validation and its encoding.
//! - [`log`]: the segment log, the durable source of truth.
//! - [`index`]: the sled and tantivy indexes and the indexer that follows the log.
//! - [`metrics`]: latency histograms in the Prometheus text format.
//! - [`query`]: the query engine (filters, full text, cursors, statistics).
//! - [`server`]: `stele serve`, the HTTP/JSON API.
//! - [`verify`]: offline verification of segment files.
//! - [`backup`]: `stele backup`, a consistent copy of the log while the daemon runs.
//! - [`clock`]: the time seam.
//! - [`testkit`]: deterministic realistic events for tests and benches.

pub mod backup;
pub mod clock;
pub mod event;
pub mod index;
pub mod log;
pub mod metrics;
pub mod query;
pub mod server;
pub mod testkit;
pub mod verify;
