//! Where a configuration's values come from besides the file: the `STELE_*`
//! environment overrides and `stele serve`'s flags, and where to look for
//! the file and the data directory.
//!
//! Owns [`ENV_OVERRIDES`], [`Flags`] and applying them over a [`Config`],
//! recording each key's origin. Never reads the environment itself (it is
//! read through the `env` function the caller passes) and never validates:
//! [`Config::validate`] does, afterwards.

use super::{Config, ConfigError, DATA_DIR_DEFAULT};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The environment variable naming the configuration file when
/// `--config` is not given.
pub const CONFIG_ENV: &str = "STELE_CONFIG";

/// The environment overrides: variable → key. An empty variable counts as
/// unset.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("STELE_LISTEN", "listen"),
    ("STELE_DATA_DIR", "data_dir"),
    ("STELE_LOG_SEGMENT_BYTES_MAX", "log.segment_bytes_max"),
    ("STELE_LIMITS_BODY_BYTES_MAX", "limits.body_bytes_max"),
    ("STELE_LIMITS_CONNECTIONS_MAX", "limits.connections_max"),
    (
        "STELE_LIMITS_REQUEST_TIMEOUT_SECS",
        "limits.request_timeout_secs",
    ),
    ("STELE_DETECT_ENABLED", "detect.enabled"),
];

/// `stele serve`'s flags: each overrides its key when given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// Address and port to listen on [key: listen; default: 127.0.0.1:7070].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// The data directory [key: data_dir; default: $STATE_DIRECTORY, else
    /// ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest request body in bytes; larger gets 413 [key:
    /// limits.body_bytes_max; default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub body_bytes_max: Option<usize>,
    /// Most events in one ingest request [key: limits.events_per_request_max;
    /// default: 10000].
    #[arg(long, value_name = "N")]
    pub events_per_request_max: Option<usize>,
    /// Largest request target (path and query) in bytes; longer gets 414
    /// [key: limits.url_bytes_max; default: 8192].
    #[arg(long, value_name = "BYTES")]
    pub url_bytes_max: Option<usize>,
    /// Largest total of a request's header lines in bytes; more gets 431
    /// [key: limits.header_bytes_max; default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub header_bytes_max: Option<usize>,
    /// Seconds a client has to send a request's head [key:
    /// limits.header_read_timeout_secs; default: 10].
    #[arg(long, value_name = "SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds from a request's head to its response head; exceeded → 503
    /// [key: limits.request_timeout_secs; default: 30].
    #[arg(long, value_name = "SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Seconds a response may wait for a client that reads nothing before
    /// its connection is closed [key: limits.write_stall_timeout_secs;
    /// default: 60].
    #[arg(long, value_name = "SECS")]
    pub write_stall_timeout_secs: Option<u64>,
    /// Most connections served at once [key: limits.connections_max;
    /// default: 4096].
    #[arg(long, value_name = "N")]
    pub connections_max: Option<usize>,
    /// Most live streams at once; more get 503 [key: limits.streams_max;
    /// default: 1024].
    #[arg(long, value_name = "N")]
    pub streams_max: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT [key:
    /// limits.shutdown_grace_secs; default: 5].
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Bytes that must stay free on the data directory's filesystem; below
    /// it ingest answers 507 [key: limits.disk_reserve_bytes; default:
    /// 268435456].
    #[arg(long, value_name = "BYTES")]
    pub disk_reserve_bytes: Option<u64>,
}

/// The configuration file to read: `--config`, else `$STELE_CONFIG` (unless
/// empty), else none (embedded defaults).
pub fn config_path(flag: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| env(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// The default data directory: `$STATE_DIRECTORY`'s first entry (systemd's
/// `StateDirectory=`), else `./data`.
pub fn default_data_dir(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    env("STATE_DIRECTORY")
        .and_then(|v| v.split(':').next().map(str::to_string))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT))
}

impl Config {
    /// Applies the `STELE_*` overrides ([`ENV_OVERRIDES`]).
    pub(super) fn apply_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for &(var, key) in ENV_OVERRIDES {
            let Some(value) = env(var).filter(|v| !v.is_empty()) else {
                continue;
            };
            self.set_from_str(key, &value)
                .map_err(|message| ConfigError::Env {
                    var,
                    key,
                    value: value.clone(),
                    message,
                })?;
            self.origins.0.insert(key.to_string(), var.to_string());
        }
        Ok(())
    }

    /// Sets one of the keys of [`ENV_OVERRIDES`] from text.
    fn set_from_str(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn whole<T: std::str::FromStr<Err = std::num::ParseIntError>>(
            v: &str,
        ) -> Result<T, String> {
            v.trim()
                .parse()
                .map_err(|e| format!("expected a non-negative whole number ({e})"))
        }
        match key {
            "listen" => {
                self.listen = value.trim().parse().map_err(|e| {
                    format!("expected ADDRESS:PORT such as 127.0.0.1:7070 or [::1]:7070 ({e})")
                })?
            }
            "data_dir" => self.data_dir = PathBuf::from(value),
            "log.segment_bytes_max" => self.log.segment_bytes_max = whole(value)?,
            "limits.body_bytes_max" => self.limits.body_bytes_max = whole(value)?,
            "limits.connections_max" => self.limits.connections_max = whole(value)?,
            "limits.request_timeout_secs" => self.limits.request_timeout_secs = whole(value)?,
            "detect.enabled" => {
                self.detect.enabled = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err("expected true or false".into()),
                }
            }
            other => return Err(format!("{other} cannot be set from the environment")),
        }
        Ok(())
    }

    /// Applies the command-line flags given (they win over file and
    /// environment). Call [`Config::validate`] afterwards.
    pub fn apply_flags(&mut self, flags: &Flags) {
        macro_rules! set {
            ($($flag:literal, $key:literal, $field:expr, $value:expr;)*) => {$(
                if let Some(v) = $value.clone() {
                    $field = v;
                    self.origins.0.insert($key.to_string(), $flag.to_string());
                }
            )*};
        }
        set! {
            "--listen", "listen", self.listen, flags.listen;
            "--data-dir", "data_dir", self.data_dir, flags.data_dir;
            "--body-bytes-max", "limits.body_bytes_max",
                self.limits.body_bytes_max, flags.body_bytes_max;
            "--events-per-request-max", "limits.events_per_request_max",
                self.limits.events_per_request_max, flags.events_per_request_max;
            "--url-bytes-max", "limits.url_bytes_max",
                self.limits.url_bytes_max, flags.url_bytes_max;
            "--header-bytes-max", "limits.header_bytes_max",
                self.limits.header_bytes_max, flags.header_bytes_max;
            "--header-read-timeout-secs", "limits.header_read_timeout_secs",
                self.limits.header_read_timeout_secs, flags.header_read_timeout_secs;
            "--request-timeout-secs", "limits.request_timeout_secs",
                self.limits.request_timeout_secs, flags.request_timeout_secs;
            "--write-stall-timeout-secs", "limits.write_stall_timeout_secs",
                self.limits.write_stall_timeout_secs, flags.write_stall_timeout_secs;
            "--connections-max", "limits.connections_max",
                self.limits.connections_max, flags.connections_max;
            "--streams-max", "limits.streams_max",
                self.limits.streams_max, flags.streams_max;
            "--shutdown-grace-secs", "limits.shutdown_grace_secs",
                self.limits.shutdown_grace_secs, flags.shutdown_grace_secs;
            "--disk-reserve-bytes", "limits.disk_reserve_bytes",
                self.limits.disk_reserve_bytes, flags.disk_reserve_bytes;
        }
    }
}
