//! Activity intelligence: what Stele derives from the log about the activity
//! it records, beyond single events.
//!
//! Owns in-memory views rebuilt from the log: the process runs and batch
//! operations, the detectors' memory, the risk rules' memory. Never touches the
//! log's files or the indexes, except that findings are appended to the log as
//! Stele's own events (by [`watch`], on the feed's thread, never on ingest's
//! path). Never changes what a client posted, except to fill in a missing
//! `risk_score` (marked by `risk_rules`).
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
//!   thresholds), validated;
//! - [`classify`]: what kind of activity an event is (failed authentication,
//!   privilege change, error), shared by every rule below;
//! - [`risk`]: risk scores for events posted without one, at ingest;
//! - [`detect`]: detectors raising findings one event at a time (pure);
//! - [`detect_config`]: `[detect]` of the configuration (thresholds), validated;
//! - [`watch`]: the detectors of a running daemon, an observer of the feed
//!   that appends their findings;
//! - [`finding`]: a finding and the reserved event Stele appends for it;
//! - [`score`]: the anomaly score, key findings and recommendations;
//! - [`known`]: a user's known IPs (or countries) and their churn, shared by
//!   the risk rule and the detector `new_ip`;
//! - [`bounded`]: the capped map every per-user, per-IP and per-scope memory
//!   lives in.
//!
//! Invariant: every view is a function of the events observed (and `now` at
//! read time): losing it costs a replay, never data.

pub mod bounded;
pub mod classify;
pub mod config;
pub mod detect;
pub mod detect_config;
pub mod feed;
pub mod finding;
pub mod known;
pub mod processes;
pub mod risk;
pub mod runs;
pub mod score;
pub mod watch;

pub use config::ProcessesConfig;
pub use detect_config::DetectConfig;
