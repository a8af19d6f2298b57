//! Alerts: rules over the log (`[[alerts]]`) delivered to webhooks
//! (`[[webhooks]]`).
//!
//! Owns `DATA_DIR/alert-position.json` ([`position`]). Never writes the log
//! or the indexes.
//!
//! Module map:
//! - [`rules`]: the configuration sections and their checked form.
//! - [`eval`]: threshold windows and finding matches → notifications.
//! - [`deliver`]: body, HMAC-SHA256 signature, HTTP POST, backoff.
//! - [`position`]: the durable position.

pub mod deliver;
pub mod eval;
pub mod position;
pub mod rules;

pub use rules::{compile, AlertConfig, AlertSet, WebhookConfig};
