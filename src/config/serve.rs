//! What `stele serve` is started with: the merged configuration handed to
//! the daemon's start-up, and what a SIGHUP re-reads.

use super::Limits;
use crate::auth::AuthConfig;
use crate::index::IndexConfig;
use crate::log::LogConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Default listen address: loopback only.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7070";

/// What `stele serve` needs.
#[derive(Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Request limits.
    pub limits: Limits,
    /// TTLs and legal holds.
    pub retention: crate::retention::RetentionConfig,
    /// The segment log's settings (`[log]` of the configuration).
    pub log: LogConfig,
    /// The indexes' settings (`[index]` of the configuration).
    pub index: IndexConfig,
    /// `[seal]`: checkpoints, the witness, scrubbing.
    pub seal: crate::seal::SealConfig,
    /// `[auth]`: API keys (none: no authentication, loopback only).
    pub auth: AuthConfig,
    /// `[tls]`: serve HTTPS.
    pub tls: Option<crate::tls::TlsConfig>,
    /// `[ingest.field_map]`, checked (empty when none).
    pub field_map: crate::event::FieldMap,
    /// `[[webhooks]]` and `[[alerts]]`, checked (empty when none).
    pub alerts: crate::alert::AlertSet,
    /// `[processes]`: the run trackers' horizon, bounds and thresholds.
    pub processes: crate::intel::ProcessesConfig,
    /// `[detect]`: the detectors' thresholds.
    pub detect: crate::intel::DetectConfig,
    /// `[archive]`: the S3 archive (read at start-up).
    pub archive: crate::archive::ArchiveConfig,
    /// Re-reads the reloadable settings (on SIGHUP): limits, retention, keys,
    /// the field map, the TLS certificate, webhooks and alert rules.
    pub reload: Option<Reloader>,
}

/// What a SIGHUP re-reads.
pub struct Reloaded {
    /// `[limits]` (except `connections_max`).
    pub limits: Limits,
    /// `[retention]`.
    pub retention: crate::retention::RetentionConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[tls]`: the certificate and key are read again (switching TLS on or
    /// off needs a restart).
    pub tls: Option<crate::tls::TlsConfig>,
    /// `[ingest.field_map]`, checked.
    pub field_map: crate::event::FieldMap,
    /// `[[webhooks]]` and `[[alerts]]`, checked.
    pub alerts: crate::alert::AlertSet,
    /// `[detect]`: the thresholds (`enabled` needs a restart).
    pub detect: crate::intel::DetectConfig,
    /// `[processes]`: the stuck thresholds (the horizon and the bounds need
    /// a restart).
    pub processes: crate::intel::ProcessesConfig,
}

/// Produces fresh reloadable settings, or says why it cannot.
pub type Reloader = Arc<dyn Fn() -> Result<Reloaded, String> + Send + Sync>;
