//! The web console: its files served by the daemon (every header, gzip,
//! validators, unknown files) and `GET /v1/me`, and every view in a real
//! browser against a real server.

mod a11y;
mod admin;
mod browser;
mod dashboard;
mod detect;
mod events;
mod exports;
mod live;
mod serving;
mod views;
