//! The web console: its files served by the daemon (every header, gzip,
//! validators, unknown files) and `GET /v1/me`, what the console asks to
//! show only what a key may do.

mod admin;
mod browser;
mod events;
mod serving;
mod views;
