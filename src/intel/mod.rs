//! Activity intelligence: what Stele derives from the log about the activity
//! it records, beyond single events.
//!
//! Owns in-memory views rebuilt from the log (never written anywhere): the
//! process runs and batch operations ([`runs`]), and the feed that keeps such
//! views current ([`feed`]). Never touches the log's files, the indexes or
//! HTTP: views are given events by the feed and read by `server`, which maps
//! them to answers.
//!
//! Module map:
//! - [`runs`]: the [`Tracker`](runs::Tracker) of runs (key: tenant +
//!   `process_id`) and of batch operations (key: tenant + `batch_id`), fed one
//!   event at a time, its statuses (`stuck` included) and per-name figures
//!   computed at read time with `now`;
//! - [`feed`]: the thread that replays the recent history (`horizon`) at
//!   start-up and then follows the log's tail, handing events in seq order to
//!   a list of [`Observer`](feed::Observer)s;
//! - [`processes`]: the two trackers of a running daemon behind their
//!   locks, one observer of the feed;
//! - [`config`]: `[processes]` of the configuration (horizon, bounds,
//!   thresholds), validated.
//!
//! Invariant: everything here is a pure function of the events observed
//! (and `now` at read time): losing it costs a replay, never data.

pub mod config;
pub mod feed;
pub mod processes;
pub mod runs;

pub use config::ProcessesConfig;
