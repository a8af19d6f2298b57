//! The `stele` command line's subcommands: what each does, and what it
//! prints and exits with. `src/main.rs` keeps the clap definitions and the
//! dispatch; the library (`src/lib.rs`) never sees these modules.
//!
//! Owns the terminal: standard output and error, exit codes, and the
//! process environment read for `Config::load`. Never owns a file format or
//! a rule about the data: every command calls the library's public API.
//!
//! Module map:
//! - `serve`: `stele serve` and `stele check-config`.
//! - `verify`: `stele verify`, offline checks of segments, digests and
//!   checkpoints.
//! - `index`: `stele reindex` and `stele check` (the indexes against the log).
//! - `backup`: `stele backup`.
//! - `archive`: `stele verify s3://…` and `stele restore`, the archive
//!   without a daemon.
//! - `retention`: `stele retention`.
//! - `log`: `stele append` and `stele cat`, events in and out of the log.
//! - `query`: `stele query`, the terminal client (a daemon over HTTP, or a
//!   data directory read-only), `-f` following the live stream.
//! - `keys`: `stele keygen` (signing keys and API keys) and `stele sign-days`.

use std::sync::Arc;
use stele::clock::SystemClock;
use stele::log::{Log, LogConfig};

pub(crate) mod archive;
pub(crate) mod backup;
pub(crate) mod index;
pub(crate) mod keys;
pub(crate) mod log;
pub(crate) mod query;
pub(crate) mod retention;
pub(crate) mod serve;
pub(crate) mod verify;

fn open_log(data_dir: &std::path::Path, cfg: LogConfig) -> anyhow::Result<Log> {
    let cfg = stele::seal::with_evidence(cfg, data_dir, None);
    Log::open(data_dir, cfg, Arc::new(SystemClock))
        .map_err(|e| anyhow::anyhow!("cannot open the log in {}: {e}", data_dir.display()))
}

/// The process environment, as `Config::load` reads it.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}
