//! Activity intelligence: what Stele concludes from the events it stores.
//!
//! - [`bounded`]: the capped map every per-user, per-IP and per-scope memory lives in.
//! - [`classify`]: what kind of activity an event is (failed authentication,
//!   privilege change, error), shared by every rule below.
//! - [`risk`]: risk scores for events posted without one, at ingest.
//! - [`detect`]: detectors raising findings one event at a time.
//! - [`finding`]: a finding and the reserved event Stele appends for it.
//! - [`score`]: the anomaly score, key findings and recommendations.
//!
//! Never writes to the log on ingest's path and never changes what a client
//! posted, except to fill in a missing `risk_score` (marked by `risk_rules`).

pub mod bounded;
pub mod classify;
pub mod detect;
pub mod finding;
pub mod risk;
pub mod score;
