//! The configuration: the file (`stele.toml`), its `STELE_*` environment
//! overrides and `stele serve`'s flags, merged and validated.
//!
//! Precedence, lowest first: the embedded defaults ([`Config::default`]), the
//! file ([`Config::load`]), the environment ([`ENV_OVERRIDES`]), the command
//! line ([`Flags`], [`Config::apply_flags`]). `config/stele.toml` documents
//! every key.
//!
//! Invariants:
//! 1. No file, no `STELE_*` variable and no flag give exactly the embedded
//!    defaults: `stele serve` needs no configuration.
//! 2. Unknown keys are errors at every level (a misspelt key is never
//!    silently ignored), naming the key and the keys its section accepts.
//! 3. Every value is checked ([`Config::validate`]); an error names the key
//!    path, where the value came from (file, variable or flag), the value
//!    and what is allowed. TOML syntax errors keep toml's line and column.

use crate::index::{IndexConfig, COMMIT_INTERVAL_DEFAULT};
use crate::log::{
    LogConfig, RecoveryMode, BATCH_EVENTS_MAX_DEFAULT, SEGMENT_BYTES_MAX_DEFAULT,
    SEGMENT_BYTES_MAX_MIN,
};
use crate::retention::RetentionConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod limits;
mod serve;

pub use limits::Limits;
pub use serve::{Reloaded, Reloader, ServeConfig, LISTEN_DEFAULT};

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
];

/// The sections of the file (for error messages).
const SECTIONS: &[&str] = &["limits", "log", "index", "retention", "seal"];

/// Largest `limits.body_bytes_max`: a request body is held in memory.
pub const BODY_BYTES_MAX_MAX: u64 = 1 << 30;
/// Largest `limits.url_bytes_max` and `limits.header_bytes_max`.
pub const HEAD_BYTES_MAX_MAX: u64 = 1 << 20;
/// Largest `limits.connections_max` and `limits.streams_max` (the kernel's
/// default ceiling on open files, `fs.nr_open`).
pub const CONNECTIONS_MAX_MAX: u64 = 1 << 20;
/// Largest timeout or grace period, in seconds.
pub const SECS_MAX: u64 = 3600;
/// Largest `log.segment_bytes_max` (1 TiB, as the log accepts).
pub const SEGMENT_BYTES_MAX_MAX: u64 = 1 << 40;
/// Smallest and largest `index.commit_interval_ms`.
pub const COMMIT_INTERVAL_MS_MIN: u64 = 10;
/// See [`COMMIT_INTERVAL_MS_MIN`].
pub const COMMIT_INTERVAL_MS_MAX: u64 = 60_000;

/// Stele's whole configuration. `Config::default()` is the embedded
/// defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// The data directory. Default: `$STATE_DIRECTORY`'s first entry (under
    /// systemd), else `./data`; a relative path is relative to the working
    /// directory.
    pub data_dir: PathBuf,
    /// `[limits]`: request limits.
    #[serde(serialize_with = "serialize_limits")]
    pub limits: Limits,
    /// `[log]`: the segment log.
    pub log: LogSection,
    /// `[index]`: the indexes.
    pub index: IndexSection,
    /// `[seal]`: checkpoints, the witness, scrubbing.
    pub seal: SealSection,
    /// `[retention]`: TTLs and legal holds.
    pub retention: RetentionConfig,
    /// `[auth]`: API keys, roles, tenant scopes, rate limits.
    pub auth: crate::auth::AuthConfig,
    /// `[tls]`: serve HTTPS with this certificate and key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Where each value that is not a default came from.
    #[serde(skip)]
    origins: Origins,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: LISTEN_DEFAULT
                .parse()
                .expect("the default listen address parses"),
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            limits: Limits::DEFAULT,
            log: LogSection::default(),
            index: IndexSection::default(),
            seal: SealSection::default(),
            retention: RetentionConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            tls: None,
            origins: Origins::default(),
        }
    }
}

/// The data directory outside systemd.
pub const DATA_DIR_DEFAULT: &str = "data";

/// `[log]`: what an operator chooses about the segment log. Its internal
/// knobs (bytes per group commit, queue depth) keep their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A segment is sealed and the next one started at this size (bytes).
    pub segment_bytes_max: u64,
    /// What opening the log does with damage: `strict` or `salvage`.
    #[serde(with = "recovery_mode")]
    pub recovery: RecoveryMode,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            recovery: RecoveryMode::Strict,
        }
    }
}

/// `[index]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexSection {
    /// How often the indexes commit (milliseconds): queries and `q` streams
    /// lag ingestion by at most this much.
    pub commit_interval_ms: u64,
}

impl Default for IndexSection {
    fn default() -> Self {
        IndexSection {
            commit_interval_ms: COMMIT_INTERVAL_DEFAULT.as_millis() as u64,
        }
    }
}

/// `[seal]`: what keeps the history tamper-evident against someone who can
/// write the disk (src/seal/). Checkpoints need a signing key, as digests do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SealSection {
    /// How often the chain head is signed while events arrive (ms).
    pub checkpoint_interval_ms: u64,
    /// A directory (on another filesystem or machine) that receives every
    /// checkpoint, appended and fsynced. None: no witness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness_dir: Option<PathBuf>,
    /// Hours between whole passes of the scrubber over the sealed segments
    /// (one pass always runs after start).
    pub scrub_interval_hours: u64,
    /// Bytes a second the scrubber reads at most.
    pub scrub_bytes_per_sec: u64,
}

impl Default for SealSection {
    fn default() -> Self {
        SealSection {
            checkpoint_interval_ms: crate::seal::checkpoint::INTERVAL_DEFAULT.as_millis() as u64,
            witness_dir: None,
            scrub_interval_hours: crate::seal::scrub::INTERVAL_HOURS_DEFAULT,
            scrub_bytes_per_sec: crate::seal::scrub::BYTES_PER_SEC_DEFAULT,
        }
    }
}

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

/// Why a configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML: toml's message, with line and column.
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's message (several lines: position, excerpt, problem).
        message: String,
    },
    /// A key is unknown or its value has the wrong type.
    Key {
        /// The file.
        path: PathBuf,
        /// The key path (`limits.streams_max`), when it could be found.
        key: Option<String>,
        /// 1-based line and column of the offending text.
        position: Option<(usize, usize)>,
        /// What is wrong and what is allowed.
        message: String,
        /// The offending line with a caret underline (may be empty).
        excerpt: String,
    },
    /// A `STELE_*` variable's value does not parse.
    Env {
        /// The variable.
        var: &'static str,
        /// The key it sets.
        key: &'static str,
        /// Its value.
        value: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A value out of its range.
    Invalid {
        /// The key path.
        key: String,
        /// Where the value came from (file, variable, flag), if not a default.
        origin: Option<String>,
        /// The whole sentence: key, what is allowed, the value.
        message: String,
    },
}

impl ConfigError {
    /// The key at fault, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::Key { key, .. } => key.as_deref(),
            ConfigError::Env { key, .. } => Some(key),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// `stele check-config`'s exit status: 2 when the file cannot be read, 1
    /// when the configuration is wrong.
    pub fn exit_code(&self) -> u8 {
        match self {
            ConfigError::Read { .. } => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read { path, source } => write!(
                f,
                "cannot read the configuration file {}: {source}",
                path.display()
            ),
            ConfigError::Syntax { path, message } => {
                write!(f, "{}: {}", path.display(), message.trim_end())
            }
            ConfigError::Key {
                path,
                key,
                position,
                message,
                excerpt,
            } => {
                write!(f, "{}", path.display())?;
                if let Some((line, column)) = position {
                    write!(f, ":{line}:{column}")?;
                }
                if let Some(key) = key {
                    write!(f, ": {key}")?;
                }
                write!(f, ": {message}")?;
                if !excerpt.is_empty() {
                    write!(f, "\n{excerpt}")?;
                }
                Ok(())
            }
            ConfigError::Env {
                var,
                key,
                value,
                message,
            } => write!(f, "{var}: {value:?} is not a valid {key}: {message}"),
            ConfigError::Invalid {
                origin, message, ..
            } => match origin {
                Some(o) => write!(f, "{o}: {message}"),
                None => write!(f, "{message}"),
            },
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
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
    /// Embedded defaults, then the file (if any), then the `STELE_*`
    /// environment (read through `env`, which tests inject); validated.
    /// Flags come after, with [`Config::apply_flags`] and another
    /// [`Config::validate`].
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Config::parse(&text, p)?
            }
            None => Config::default(),
        };
        if !cfg.origins.0.contains_key("data_dir") {
            cfg.data_dir = default_data_dir(&env);
        }
        cfg.apply_env(&env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The file's text over the embedded defaults, not validated (`path`
    /// names the file in errors). The data directory stays `./data` when
    /// the file does not set it ([`Config::load`] applies
    /// `$STATE_DIRECTORY`).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // From the parsed table rather than the text: its deserializer hands
        // TOML dates (`from = 2026-01-01`) to serde as strings, which
        // `chrono::NaiveDate` accepts.
        let mut cfg: Config = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e| key_error(path, text, &table, &e))?;
        let mut leaves = Vec::new();
        collect_leaves(&table, &mut Vec::new(), &mut leaves);
        for key in leaves {
            cfg.origins.0.insert(key, path.display().to_string());
        }
        Ok(cfg)
    }

    /// Applies the `STELE_*` overrides ([`ENV_OVERRIDES`]).
    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
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

    /// Checks every value; the first problem is returned, naming the key,
    /// where its value came from, the value and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(self.invalid(
                "data_dir",
                "data_dir must not be empty (leave it out for the default: \
                 $STATE_DIRECTORY, else ./data)"
                    .into(),
            ));
        }
        let l = &self.limits;
        let batch = BATCH_EVENTS_MAX_DEFAULT as u64;
        let ranges: [(&str, u64, u64, u64, &str); 12] = [
            (
                "limits.body_bytes_max",
                l.body_bytes_max as u64,
                1,
                BODY_BYTES_MAX_MAX,
                " bytes",
            ),
            (
                "limits.events_per_request_max",
                l.events_per_request_max as u64,
                1,
                batch,
                " events (the log's batch limit)",
            ),
            (
                "limits.url_bytes_max",
                l.url_bytes_max as u64,
                1,
                HEAD_BYTES_MAX_MAX,
                " bytes",
            ),
            (
                "limits.header_bytes_max",
                l.header_bytes_max as u64,
                1,
                HEAD_BYTES_MAX_MAX,
                " bytes",
            ),
            (
                "limits.header_read_timeout_secs",
                l.header_read_timeout_secs,
                1,
                SECS_MAX,
                " seconds",
            ),
            (
                "limits.request_timeout_secs",
                l.request_timeout_secs,
                1,
                SECS_MAX,
                " seconds",
            ),
            (
                "limits.write_stall_timeout_secs",
                l.write_stall_timeout_secs,
                1,
                SECS_MAX,
                " seconds",
            ),
            (
                "limits.connections_max",
                l.connections_max as u64,
                1,
                CONNECTIONS_MAX_MAX,
                " connections",
            ),
            (
                "limits.streams_max",
                l.streams_max as u64,
                1,
                CONNECTIONS_MAX_MAX,
                " streams",
            ),
            (
                "limits.shutdown_grace_secs",
                l.shutdown_grace_secs,
                0,
                SECS_MAX,
                " seconds",
            ),
            (
                "limits.disk_reserve_bytes",
                l.disk_reserve_bytes,
                0,
                i64::MAX as u64,
                " bytes",
            ),
            (
                "log.segment_bytes_max",
                self.log.segment_bytes_max,
                SEGMENT_BYTES_MAX_MIN,
                SEGMENT_BYTES_MAX_MAX,
                " bytes",
            ),
        ];
        for (key, got, min, max, unit) in ranges {
            self.range(key, got, min, max, unit)?;
        }
        self.range(
            "index.commit_interval_ms",
            self.index.commit_interval_ms,
            COMMIT_INTERVAL_MS_MIN,
            COMMIT_INTERVAL_MS_MAX,
            " milliseconds",
        )?;
        let seal = [
            (
                "seal.checkpoint_interval_ms",
                self.seal.checkpoint_interval_ms,
                10,
                60_000,
                " milliseconds",
            ),
            (
                "seal.scrub_interval_hours",
                self.seal.scrub_interval_hours,
                1,
                8_760,
                " hours",
            ),
            (
                "seal.scrub_bytes_per_sec",
                self.seal.scrub_bytes_per_sec,
                1 << 20,
                1 << 40,
                " bytes a second",
            ),
        ];
        for (key, got, min, max, unit) in seal {
            self.range(key, got, min, max, unit)?;
        }
        if let Some(w) = &self.seal.witness_dir {
            if w.as_os_str().is_empty() {
                return Err(self.invalid(
                    "seal.witness_dir",
                    "seal.witness_dir must be a directory path, got an empty string".into(),
                ));
            }
            let inside = w.starts_with(&self.data_dir) || self.data_dir.starts_with(w);
            if inside {
                return Err(self.invalid(
                    "seal.witness_dir",
                    format!(
                        "seal.witness_dir ({}) must not be inside the data directory or contain \
                         it: a witness is there to survive whoever can write the data directory",
                        w.display()
                    ),
                ));
            }
        }
        // The server's own check, should it ever be stricter:
        self.limits
            .validate()
            .map_err(|e| self.invalid("limits", format!("limits.{e}")))?;
        self.retention
            .validate()
            .map_err(|e| self.invalid("retention", e))?;
        self.auth
            .validate()
            .map_err(|(key, message)| self.invalid(&key, message))?;
        self.auth
            .check_listen(self.listen)
            .map_err(|e| self.invalid("listen", e))?;
        Ok(())
    }

    fn range(
        &self,
        key: &str,
        got: u64,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Result<(), ConfigError> {
        let bound = if got < min {
            format!("at least {min}")
        } else if got > max {
            format!("at most {max}")
        } else {
            return Ok(());
        };
        Err(self.invalid(
            key,
            format!("{key} must be {bound}, got {got} (allowed: {min} to {max}{unit})"),
        ))
    }

    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            origin: self.origins.of(key).map(str::to_string),
            message,
        }
    }

    /// The effective configuration as TOML (`stele check-config --print`);
    /// parsing it gives this configuration back.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Keys set by an environment variable: (key, variable).
    pub fn env_overrides(&self) -> Vec<(&str, &str)> {
        self.origins
            .0
            .iter()
            .filter(|(_, o)| ENV_OVERRIDES.iter().any(|(var, _)| var == o))
            .map(|(k, o)| (k.as_str(), o.as_str()))
            .collect()
    }

    /// The log's settings: `[log]` over the log's defaults.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes_max: self.log.segment_bytes_max,
            recovery: self.log.recovery,
            ..LogConfig::default()
        }
    }

    /// `[seal]` for the seal's threads.
    pub fn seal_config(&self) -> crate::seal::SealConfig {
        crate::seal::SealConfig {
            checkpoint_interval: Duration::from_millis(self.seal.checkpoint_interval_ms),
            witness_dir: self.seal.witness_dir.clone(),
            scrub_interval: Duration::from_secs(self.seal.scrub_interval_hours * 3600),
            scrub_bytes_per_sec: self.seal.scrub_bytes_per_sec,
        }
    }

    /// The indexes' settings: `[index]` over their defaults.
    pub fn index_config(&self) -> IndexConfig {
        IndexConfig {
            commit_interval: Duration::from_millis(self.index.commit_interval_ms),
            ..IndexConfig::default()
        }
    }

    /// What `stele serve` starts with (the daemon, or a test serving
    /// in-process); `reload` re-reads the settings on SIGHUP.
    pub fn serve_config(self, reload: Option<Reloader>) -> ServeConfig {
        ServeConfig {
            reload,
            listen: self.listen,
            log: self.log_config(),
            index: self.index_config(),
            seal: self.seal_config(),
            data_dir: self.data_dir,
            limits: self.limits,
            retention: self.retention,
            auth: self.auth,
            tls: self.tls,
        }
    }
}

/// Key path → where its value came from (a file's path, a variable, a
/// flag). Not part of a configuration's value: two configurations with the
/// same values are equal wherever they came from.
#[derive(Debug, Clone, Default)]
struct Origins(BTreeMap<String, String>);

impl PartialEq for Origins {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Origins {
    /// The origin of `key`, of a key under it, or of the table holding it.
    fn of(&self, key: &str) -> Option<&str> {
        // `auth.keys[2].id` came from wherever `auth.keys` did.
        let unindexed: String = key
            .split('.')
            .map(|part| part.split('[').next().unwrap_or(part))
            .collect::<Vec<_>>()
            .join(".");
        let key = unindexed.as_str();
        if let Some(o) = self.0.get(key) {
            return Some(o);
        }
        let below = format!("{key}.");
        if let Some((_, o)) = self.0.iter().find(|(k, _)| k.starts_with(&below)) {
            return Some(o);
        }
        let mut k = key;
        while let Some((parent, _)) = k.rsplit_once('.') {
            if let Some(o) = self.0.get(parent) {
                return Some(o);
            }
            k = parent;
        }
        None
    }
}

/// Every key path of `table` holding a value (arrays count as values).
fn collect_leaves(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<String>) {
    for (k, v) in table {
        prefix.push(k.clone());
        match v {
            toml::Value::Table(t) => collect_leaves(t, prefix, out),
            _ => out.push(prefix.join(".")),
        }
        prefix.pop();
    }
}

/// A schema error of valid TOML: we find which key (by deserializing each
/// key alone), toml's text deserializer says where (when it reports the same
/// problem), and we say what is allowed.
fn key_error(path: &Path, text: &str, table: &toml::Table, e: &toml::de::Error) -> ConfigError {
    let mut found = Vec::new();
    locate(table, &mut Vec::new(), &mut found);
    let key = found
        .iter()
        .find(|(_, m)| m == e.message())
        .or(found.first())
        .map(|(k, _)| k.clone());
    let span = toml::from_str::<Config>(text)
        .err()
        .filter(|t| t.message() == e.message())
        .and_then(|t| t.span());
    let (position, excerpt) = match span {
        Some(span) => {
            let (p, x) = excerpt(text, span);
            (Some(p), x)
        }
        None => (None, String::new()),
    };
    ConfigError::Key {
        path: path.to_path_buf(),
        message: readable(e.message(), key.as_deref()),
        key,
        position,
        excerpt,
    }
}

/// Whether `value` alone at `path` deserializes; the error message if not.
fn probe(path: &[String], value: &toml::Value) -> Option<String> {
    let mut v = value.clone();
    for k in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert(k.clone(), v);
        v = toml::Value::Table(t);
    }
    v.try_into::<Config>()
        .err()
        .map(|e| e.message().to_string())
}

/// The deepest key paths whose value fails alone, with the message.
fn locate(table: &toml::Table, prefix: &mut Vec<String>, found: &mut Vec<(String, String)>) {
    for (k, v) in table {
        prefix.push(k.clone());
        if let Some(message) = probe(prefix, v) {
            let before = found.len();
            if let toml::Value::Table(t) = v {
                // The table itself is fine (an empty one deserializes): the
                // fault is in one of its keys.
                if probe(prefix, &toml::Value::Table(toml::Table::new())).is_none() {
                    locate(t, prefix, found);
                }
            }
            if found.len() == before {
                found.push((prefix.join("."), message));
            }
        }
        prefix.pop();
    }
}

/// 1-based (line, column) of `span.start`, and that line with a caret
/// underline, as toml prints them.
fn excerpt(text: &str, span: std::ops::Range<usize>) -> ((usize, usize), String) {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_no = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..line_end].trim_end_matches('\r');
    let end = span.end.clamp(start, line_end);
    let carets = text[start..end].chars().count().max(1);
    let gutter = " ".repeat(line_no.to_string().len());
    let excerpt = format!(
        "{gutter} |\n{line_no} | {line}\n{gutter} | {}{}",
        " ".repeat(column - 1),
        "^".repeat(carets)
    );
    ((line_no, column), excerpt)
}

/// serde's message in an operator's words: "key" for "field", the keys a
/// section accepts, types as TOML values.
fn readable(message: &str, key: Option<&str>) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once('`') {
            let known = backticked(expected);
            let section = match key {
                Some(k) if k == name => None,
                Some(k) => Some(k.strip_suffix(&format!(".{name}")).unwrap_or(k)),
                None => None,
            };
            let known = known
                .iter()
                .map(|k| match section {
                    None if SECTIONS.contains(&k.as_str()) => format!("[{k}]"),
                    _ => k.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            return match section {
                None => format!("unknown key `{name}`; the top level has: {known}"),
                Some(s) => format!("unknown key `{name}`; [{s}] has: {known}"),
            };
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((name, expected)) = rest.split_once('`') {
            return format!(
                "unknown value \"{name}\"; expected one of: {}",
                backticked(expected).join(", ")
            );
        }
    }
    if message == "invalid socket address syntax" {
        return format!(
            "{message}; expected \"ADDRESS:PORT\" such as \"127.0.0.1:7070\" or \"[::1]:7070\""
        );
    }
    if let Some((what, expected)) = message.rsplit_once(", expected ") {
        let expected = match expected {
            "usize" | "u64" => "a non-negative whole number".to_string(),
            "u32" => "a whole number from 0 to 4294967295".to_string(),
            "i64" => "a whole number".to_string(),
            "path string" => "a path (a string)".to_string(),
            e if e.starts_with("struct ") => "a table".to_string(),
            e => e.to_string(),
        };
        return format!("{what}; expected {expected}");
    }
    message.to_string()
}

/// The `backticked` words of serde's "expected one of `a`, `b`".
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `[limits]` as TOML: `Limits` is Deserialize only.
fn serialize_limits<S: serde::Serializer>(l: &Limits, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut t = s.serialize_struct("Limits", 11)?;
    t.serialize_field("body_bytes_max", &(l.body_bytes_max as u64))?;
    t.serialize_field("events_per_request_max", &(l.events_per_request_max as u64))?;
    t.serialize_field("url_bytes_max", &(l.url_bytes_max as u64))?;
    t.serialize_field("header_bytes_max", &(l.header_bytes_max as u64))?;
    t.serialize_field("header_read_timeout_secs", &l.header_read_timeout_secs)?;
    t.serialize_field("request_timeout_secs", &l.request_timeout_secs)?;
    t.serialize_field("write_stall_timeout_secs", &l.write_stall_timeout_secs)?;
    t.serialize_field("connections_max", &(l.connections_max as u64))?;
    t.serialize_field("streams_max", &(l.streams_max as u64))?;
    t.serialize_field("shutdown_grace_secs", &l.shutdown_grace_secs)?;
    t.serialize_field("disk_reserve_bytes", &l.disk_reserve_bytes)?;
    t.end()
}

/// `log.recovery` as `"strict"` or `"salvage"`.
mod recovery_mode {
    use crate::log::RecoveryMode;
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Strict,
        Salvage,
    }

    pub fn serialize<S: Serializer>(m: &RecoveryMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match m {
            RecoveryMode::Strict => "strict",
            RecoveryMode::Salvage => "salvage",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RecoveryMode, D::Error> {
        Ok(match Mode::deserialize(d)? {
            Mode::Strict => RecoveryMode::Strict,
            Mode::Salvage => RecoveryMode::Salvage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    /// Parses and validates, as `load` does for a file (no environment).
    fn check(text: &str) -> Result<Config, ConfigError> {
        let c = parse(text)?;
        c.validate()?;
        Ok(c)
    }

    fn err(text: &str) -> (Option<String>, String) {
        let e = check(text).expect_err(text);
        (e.key().map(str::to_string), e.to_string())
    }

    const SAMPLE: &str = include_str!("../../config/stele.toml");

    #[test]
    fn defaults_are_todays_embedded_defaults() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), LISTEN_DEFAULT);
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.limits, Limits::DEFAULT);
        let (log, want) = (c.log_config(), LogConfig::default());
        assert_eq!(log.segment_bytes_max, want.segment_bytes_max);
        assert_eq!(log.write_bytes_max, want.write_bytes_max);
        assert_eq!(log.batch_events_max, want.batch_events_max);
        assert_eq!(log.queue_requests_max, want.queue_requests_max);
        assert_eq!(log.recovery, want.recovery);
        let (idx, want) = (c.index_config(), IndexConfig::default());
        assert_eq!(idx.commit_interval, want.commit_interval);
        assert_eq!(idx.kv_cache_bytes, want.kv_cache_bytes);
        assert_eq!(c.retention, RetentionConfig::default());
        assert_eq!(c.validate().map_err(|e| e.to_string()), Ok(()));
        // No file, no environment: exactly the defaults.
        assert_eq!(Config::load(None, no_env).unwrap(), Config::default());
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn the_sample_file_is_exactly_the_defaults() {
        assert_eq!(parse(SAMPLE).unwrap(), Config::default());
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/stele.toml");
        assert_eq!(
            Config::load(Some(&path), no_env).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn the_sample_file_documents_every_key() {
        let mut c = Config::default();
        c.retention.days = Some(1);
        c.retention.tenants.insert("t".into(), 1);
        c.retention.holds.push(crate::retention::Hold {
            name: "h".into(),
            tenant: Some("t".into()),
            from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1),
            until: chrono::NaiveDate::from_ymd_opt(2026, 1, 2),
            reason: "r".into(),
        });
        c.tls = Some(crate::tls::TlsConfig {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        });
        let table: toml::Table = toml::from_str(&c.to_toml().unwrap()).unwrap();
        let mut keys = Vec::new();
        collect_leaves(&table, &mut Vec::new(), &mut keys);
        let lines: Vec<&str> = SAMPLE.lines().collect();
        for key in keys.iter().filter(|k| k.as_str() != "retention.tenants.t") {
            let name = key.rsplit('.').next().unwrap();
            let name = if name == "holds" { "name" } else { name };
            assert!(
                lines.iter().any(|l| {
                    let l = l.trim_start_matches("# ");
                    l.starts_with(&format!("{name} = "))
                }),
                "config/stele.toml does not document {key}"
            );
        }
        for (var, key) in ENV_OVERRIDES {
            assert!(
                SAMPLE.contains(var),
                "config/stele.toml does not name {var} ({key})"
            );
        }
    }

    #[test]
    fn every_section_is_read() {
        let c = check(
            r#"
            listen = "0.0.0.0:8080"
            data_dir = "/srv/stele"
            [limits]
            body_bytes_max = 1000
            events_per_request_max = 10
            url_bytes_max = 1024
            header_bytes_max = 2048
            header_read_timeout_secs = 2
            request_timeout_secs = 3
            write_stall_timeout_secs = 11
            connections_max = 4
            streams_max = 5
            shutdown_grace_secs = 0
            disk_reserve_bytes = 0
            [log]
            segment_bytes_max = 65536
            recovery = "salvage"
            [index]
            commit_interval_ms = 250
            [retention]
            days = 30
            interval_secs = 60
            tenants = { acme = 365 }
            [[retention.holds]]
            name = "case-1"
            tenant = "acme"
            from = 2026-01-01
            until = "2026-02-01"
            reason = "court order"
            [auth]
            metrics = "admin"
            streams_per_key_max = 3
            [auth.roles.read]
            rate_per_sec = 7
            burst = 9
            [[auth.keys]]
            id = "app-1"
            hash = "sha256:0b9c2625dc21ef05f6ad4ddf47c5f203837aa32c3c8f1b3c4a8e1b7b6d6c1e57"
            roles = ["ingest", "read"]
            tenants = ["acme"]
            rate_per_sec = 5
            burst = 6
            streams_max = 2
            [tls]
            cert = "/etc/stele/cert.pem"
            key = "/etc/stele/key.pem"
            "#,
        )
        .unwrap();
        assert_eq!(c.auth.metrics, crate::auth::MetricsAccess::Admin);
        assert_eq!(c.auth.streams_per_key_max, 3);
        assert_eq!(
            (c.auth.roles.read.rate_per_sec, c.auth.roles.read.burst),
            (7, 9)
        );
        assert_eq!(
            c.auth.roles.ingest,
            crate::auth::AuthConfig::default().roles.ingest
        );
        let k = &c.auth.keys[0];
        assert_eq!(
            (
                k.id.as_str(),
                k.tenants.clone(),
                k.rate_per_sec,
                k.burst,
                k.streams_max
            ),
            ("app-1", vec!["acme".to_string()], Some(5), Some(6), Some(2))
        );
        assert_eq!(
            k.roles,
            [crate::auth::Role::Ingest, crate::auth::Role::Read]
        );
        assert_eq!(
            c.tls.as_ref().map(|t| t.key.clone()),
            Some(PathBuf::from("/etc/stele/key.pem"))
        );
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/srv/stele"));
        assert_eq!(
            c.limits,
            Limits {
                body_bytes_max: 1000,
                events_per_request_max: 10,
                url_bytes_max: 1024,
                header_bytes_max: 2048,
                header_read_timeout_secs: 2,
                request_timeout_secs: 3,
                write_stall_timeout_secs: 11,
                connections_max: 4,
                streams_max: 5,
                shutdown_grace_secs: 0,
                disk_reserve_bytes: 0,
            }
        );
        assert_eq!(c.log_config().segment_bytes_max, 65536);
        assert_eq!(c.log_config().recovery, RecoveryMode::Salvage);
        assert_eq!(c.index_config().commit_interval, Duration::from_millis(250));
        assert_eq!(c.retention.days, Some(30));
        assert_eq!(c.retention.interval_secs, 60);
        assert_eq!(c.retention.tenants.get("acme"), Some(&365));
        let h = &c.retention.holds[0];
        assert_eq!(
            (h.name.as_str(), h.tenant.as_deref()),
            ("case-1", Some("acme"))
        );
        assert_eq!(h.from, chrono::NaiveDate::from_ymd_opt(2026, 1, 1));
        assert_eq!(h.until, chrono::NaiveDate::from_ymd_opt(2026, 2, 1));
        // What --print shows parses back to the same configuration.
        assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
        // A partial section keeps the other keys' defaults.
        let c = check("[limits]\nstreams_max = 7\n").unwrap();
        assert_eq!(
            c.limits,
            Limits {
                streams_max: 7,
                ..Limits::DEFAULT
            }
        );
    }

    #[test]
    fn printing_limits_covers_every_limit() {
        // The keys [limits] accepts, as serde lists them for an unknown one.
        let e = toml::from_str::<Limits>("no_such_key = 1").unwrap_err();
        let mut accepted = backticked(e.message().split_once("expected").unwrap().1);
        let printed: toml::Table = toml::from_str(&Config::default().to_toml().unwrap()).unwrap();
        let mut printed: Vec<String> = printed["limits"]
            .as_table()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        accepted.sort();
        printed.sort();
        assert_eq!(printed, accepted);
    }

    #[test]
    fn unknown_keys_are_named_at_every_level_with_the_known_ones() {
        for (text, key, known) in [
            (
                "colour = 1",
                "colour",
                "listen, data_dir, [limits], [log], [index], [seal], [retention]",
            ),
            (
                "[limits]\nstreamz_max = 1",
                "limits.streamz_max",
                "streams_max",
            ),
            (
                "[log]\nsegment_size = 1",
                "log.segment_size",
                "segment_bytes_max, recovery",
            ),
            (
                "[index]\ncommit_interval = 1",
                "index.commit_interval",
                "commit_interval_ms",
            ),
            (
                "[retention]\nttl = 1",
                "retention.ttl",
                "days, tenants, holds, interval_secs",
            ),
            (
                "[[retention.holds]]\nname = \"h\"\nowner = \"x\"",
                "retention.holds",
                "name, tenant, from, until, reason",
            ),
            ("[logs]\nx = 1", "logs", "[log]"),
            (
                "limits.streams_max = 1\nstreams_max = 1",
                "streams_max",
                "[limits]",
            ),
        ] {
            let (k, msg) = err(text);
            assert_eq!(k.as_deref(), Some(key), "{text}: {msg}");
            let name = key.rsplit('.').next().unwrap();
            let name = if key == "retention.holds" {
                "owner"
            } else {
                name
            };
            assert!(msg.contains(&format!("unknown key `{name}`")), "{msg}");
            assert!(msg.contains(known), "{text}: {msg}");
            assert!(msg.starts_with("t.toml:"), "{msg}");
        }
        // The position and the offending line, as toml shows them.
        let (_, msg) = err("listen = \"127.0.0.1:1\"\n[limits]\nstreamz_max = 1\n");
        assert!(
            msg.starts_with("t.toml:3:1: limits.streamz_max: unknown key"),
            "{msg}"
        );
        assert!(
            msg.contains("3 | streamz_max = 1\n  | ^^^^^^^^^^^"),
            "{msg}"
        );
    }

    #[test]
    fn values_of_the_wrong_type_name_the_key_and_what_is_expected() {
        for (text, key, fragment) in [
            (
                "listen = \"localhost\"",
                "listen",
                "expected \"ADDRESS:PORT\"",
            ),
            ("listen = 7070", "listen", "invalid type: integer `7070`"),
            ("data_dir = 5", "data_dir", "expected a path"),
            (
                "[limits]\nstreams_max = \"x\"",
                "limits.streams_max",
                "expected a non-negative whole number",
            ),
            (
                "[limits]\nbody_bytes_max = -1",
                "limits.body_bytes_max",
                "expected a non-negative whole number",
            ),
            (
                "[limits]\nconnections_max = 1.5",
                "limits.connections_max",
                "floating point",
            ),
            ("limits = 3", "limits", "expected a table"),
            (
                "[log]\nrecovery = \"maybe\"",
                "log.recovery",
                "unknown value \"maybe\"; expected one of: strict, salvage",
            ),
            (
                "[log]\nsegment_bytes_max = \"1G\"",
                "log.segment_bytes_max",
                "expected a non-negative whole number",
            ),
            (
                "[index]\ncommit_interval_ms = true",
                "index.commit_interval_ms",
                "invalid type: boolean",
            ),
            (
                "[retention]\ndays = \"forever\"",
                "retention.days",
                "expected",
            ),
            (
                "[retention.tenants]\nacme = -3",
                "retention.tenants.acme",
                "from 0 to 4294967295",
            ),
            (
                "[[retention.holds]]\nname = \"h\"\nfrom = \"yesterday\"",
                "retention.holds",
                "input contains invalid characters",
            ),
        ] {
            let (k, msg) = err(text);
            assert_eq!(k.as_deref(), Some(key), "{text}: {msg}");
            assert!(msg.contains(&format!(": {key}: ")), "{text}: {msg}");
            assert!(msg.contains(fragment), "{text}: {msg}");
        }
        let (_, msg) = err("[limits]\nstreams_max = \"x\"\n");
        assert_eq!(
            msg,
            "t.toml:2:15: limits.streams_max: invalid type: string \"x\"; expected a non-negative \
             whole number\n  |\n2 | streams_max = \"x\"\n  |               ^^^"
        );
    }

    #[test]
    fn values_out_of_range_name_the_key_the_value_and_the_range() {
        for (text, key, fragment) in [
            ("data_dir = \"\"", "data_dir", "data_dir must not be empty"),
            ("[limits]\nbody_bytes_max = 0", "limits.body_bytes_max", "limits.body_bytes_max must be at least 1, got 0 (allowed: 1 to 1073741824 bytes)"),
            ("[limits]\nbody_bytes_max = 2147483648", "limits.body_bytes_max", "must be at most 1073741824, got 2147483648"),
            ("[limits]\nevents_per_request_max = 10001", "limits.events_per_request_max", "must be at most 10000, got 10001 (allowed: 1 to 10000 events (the log's batch limit))"),
            ("[limits]\nurl_bytes_max = 0", "limits.url_bytes_max", "must be at least 1"),
            ("[limits]\nheader_bytes_max = 2000000", "limits.header_bytes_max", "must be at most 1048576"),
            ("[limits]\nheader_read_timeout_secs = 0", "limits.header_read_timeout_secs", "must be at least 1, got 0 (allowed: 1 to 3600 seconds)"),
            ("[limits]\nrequest_timeout_secs = 3601", "limits.request_timeout_secs", "must be at most 3600"),
            ("[limits]\nwrite_stall_timeout_secs = 0", "limits.write_stall_timeout_secs", "must be at least 1, got 0 (allowed: 1 to 3600 seconds)"),
            ("[limits]\nconnections_max = 0", "limits.connections_max", "connections_max must be at least 1"),
            ("[limits]\nstreams_max = 0", "limits.streams_max", "limits.streams_max must be at least 1, got 0"),
            ("[limits]\nshutdown_grace_secs = 100000", "limits.shutdown_grace_secs", "must be at most 3600"),
            ("[log]\nsegment_bytes_max = 100", "log.segment_bytes_max", "log.segment_bytes_max must be at least 4096, got 100 (allowed: 4096 to 1099511627776 bytes)"),
            ("[index]\ncommit_interval_ms = 0", "index.commit_interval_ms", "must be at least 10, got 0 (allowed: 10 to 60000 milliseconds)"),
            ("[index]\ncommit_interval_ms = 3600000", "index.commit_interval_ms", "must be at most 60000"),
            ("[retention]\ndays = 0", "retention", "retention.days must be at least 1"),
            ("[retention]\ninterval_secs = 0", "retention", "retention.interval_secs must be at least 1"),
            ("[retention.tenants]\nacme = 0", "retention", "retention.tenants.acme must be at least 1"),
            ("[[retention.holds]]\nname = \"no spaces\"", "retention", "hold name \"no spaces\""),
            ("[[retention.holds]]\nname = \"h\"\nfrom = 2026-02-01\nuntil = 2026-01-01", "retention", "is after `until`"),
        ] {
            let (k, msg) = err(text);
            assert_eq!(k.as_deref(), Some(key), "{text}: {msg}");
            assert!(msg.starts_with("t.toml: "), "{text}: {msg}");
            assert!(msg.contains(fragment), "{text}: {msg}");
        }
    }

    #[test]
    fn syntax_errors_keep_line_and_column() {
        for (text, at) in [
            ("[limits\n", "line 1, column 8"),
            (
                "listen = \"127.0.0.1:7070\"\nstreams_max =\n",
                "line 2, column 14",
            ),
            (
                "[limits]\nstreams_max = 1\nstreams_max = 2\n",
                "line 3, column 1",
            ),
            (
                "[limits]\nstreams_max = 99999999999999999999\n",
                "line 2, column 15",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("t.toml: TOML parse error at {at}")),
                "{msg}"
            );
            assert_eq!(e.exit_code(), 1);
        }
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let e = Config::load(Some(Path::new("/nonexistent/stele.toml")), no_env).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .starts_with("cannot read the configuration file /nonexistent/stele.toml: "),
            "{e}"
        );
    }

    #[test]
    fn the_data_directory_defaults_to_the_state_directory() {
        let systemd = env_of(&[("STATE_DIRECTORY", "/var/lib/stele:/var/lib/other")]);
        let c = Config::load(None, &systemd).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/stele"));
        assert_eq!(
            Config::load(None, env_of(&[("STATE_DIRECTORY", "")]))
                .unwrap()
                .data_dir,
            PathBuf::from("data")
        );
        // The file, the environment and the flag each win over it.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stele.toml");
        std::fs::write(&file, "data_dir = \"/srv/file\"\n").unwrap();
        assert_eq!(
            Config::load(Some(&file), &systemd).unwrap().data_dir,
            PathBuf::from("/srv/file")
        );
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\n").unwrap();
        assert_eq!(
            Config::load(Some(&file), &systemd).unwrap().data_dir,
            PathBuf::from("/var/lib/stele")
        );
        let both = env_of(&[
            ("STATE_DIRECTORY", "/var/lib/stele"),
            ("STELE_DATA_DIR", "/srv/env"),
        ]);
        let mut c = Config::load(Some(&file), &both).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/env"));
        c.apply_flags(&Flags {
            data_dir: Some("/srv/flag".into()),
            ..Flags::default()
        });
        assert_eq!(c.data_dir, PathBuf::from("/srv/flag"));
    }

    #[test]
    fn precedence_is_defaults_file_environment_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stele.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1001\"\n[limits]\nconnections_max = 11\nrequest_timeout_secs = 12\nbody_bytes_max = 13\n[log]\nsegment_bytes_max = 8192\n",
        )
        .unwrap();
        // File over defaults.
        let c = Config::load(Some(&file), no_env).unwrap();
        assert_eq!(c.listen.port(), 1001);
        assert_eq!(c.limits.connections_max, 11);
        assert_eq!(c.limits.streams_max, Limits::DEFAULT.streams_max);
        // Environment over file.
        let env = env_of(&[
            ("STELE_LISTEN", "127.0.0.1:2002"),
            ("STELE_LIMITS_CONNECTIONS_MAX", "21"),
            ("STELE_LIMITS_REQUEST_TIMEOUT_SECS", "22"),
            ("STELE_LIMITS_BODY_BYTES_MAX", "23"),
            ("STELE_LOG_SEGMENT_BYTES_MAX", "16384"),
            ("STELE_LIMITS_STREAMS_MAX", "99"), // not an override: ignored
            ("STELE_DATA_DIR", ""),             // empty: unset
        ]);
        let mut c = Config::load(Some(&file), &env).unwrap();
        assert_eq!(c.listen.port(), 2002);
        assert_eq!(
            (
                c.limits.connections_max,
                c.limits.request_timeout_secs,
                c.limits.body_bytes_max
            ),
            (21, 22, 23)
        );
        assert_eq!(c.log.segment_bytes_max, 16384);
        assert_eq!(c.limits.streams_max, Limits::DEFAULT.streams_max);
        assert_eq!(c.data_dir, PathBuf::from("data"));
        let mut overrides = c.env_overrides();
        overrides.sort();
        assert_eq!(overrides.len(), 5, "{overrides:?}");
        assert!(overrides.contains(&("limits.connections_max", "STELE_LIMITS_CONNECTIONS_MAX")));
        // Flags over environment; an absent flag changes nothing.
        c.apply_flags(&Flags {
            listen: Some("127.0.0.1:3003".parse().unwrap()),
            connections_max: Some(31),
            ..Flags::default()
        });
        c.validate().unwrap();
        assert_eq!(c.listen.port(), 3003);
        assert_eq!(c.limits.connections_max, 31);
        assert_eq!(c.limits.request_timeout_secs, 22);
    }

    #[test]
    fn every_environment_override_and_flag_sets_its_key() {
        for (var, key) in ENV_OVERRIDES {
            let value = match *key {
                "listen" => "127.0.0.1:9999",
                "data_dir" => "/srv/x",
                "log.segment_bytes_max" => "65536",
                _ => "7",
            };
            let c = Config::load(None, env_of(&[(var, value)])).unwrap();
            assert_ne!(c, Config::default(), "{var}");
            assert_eq!(c.env_overrides(), vec![(*key, *var)]);
        }
        let flags = Flags {
            listen: Some("127.0.0.1:9".parse().unwrap()),
            data_dir: Some("/d".into()),
            body_bytes_max: Some(1),
            events_per_request_max: Some(2),
            url_bytes_max: Some(3),
            header_bytes_max: Some(4),
            header_read_timeout_secs: Some(5),
            request_timeout_secs: Some(6),
            write_stall_timeout_secs: Some(11),
            connections_max: Some(7),
            streams_max: Some(8),
            shutdown_grace_secs: Some(9),
            disk_reserve_bytes: Some(10),
        };
        let mut c = Config::default();
        c.apply_flags(&flags);
        assert_eq!(
            c.limits,
            Limits {
                body_bytes_max: 1,
                events_per_request_max: 2,
                url_bytes_max: 3,
                header_bytes_max: 4,
                header_read_timeout_secs: 5,
                request_timeout_secs: 6,
                write_stall_timeout_secs: 11,
                connections_max: 7,
                streams_max: 8,
                shutdown_grace_secs: 9,
                disk_reserve_bytes: 10,
            }
        );
        assert_eq!(
            (c.listen.port(), c.data_dir.as_path()),
            (9, Path::new("/d"))
        );
    }

    #[test]
    fn invalid_environment_values_name_the_variable() {
        for (var, value, fragment) in [
            (
                "STELE_LIMITS_CONNECTIONS_MAX",
                "lots",
                "expected a non-negative whole number (invalid digit found in string)",
            ),
            (
                "STELE_LIMITS_BODY_BYTES_MAX",
                "-5",
                "expected a non-negative whole number",
            ),
            (
                "STELE_LIMITS_REQUEST_TIMEOUT_SECS",
                "30s",
                "expected a non-negative whole number",
            ),
            (
                "STELE_LOG_SEGMENT_BYTES_MAX",
                "99999999999999999999999",
                "number too large",
            ),
            ("STELE_LISTEN", "localhost:7070", "expected ADDRESS:PORT"),
        ] {
            let e = Config::load(None, env_of(&[(var, value)])).unwrap_err();
            assert!(matches!(e, ConfigError::Env { .. }), "{e}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{var}: {value:?} is not a valid ")),
                "{msg}"
            );
            assert!(msg.contains(fragment), "{msg}");
            assert_eq!(e.exit_code(), 1);
        }
        // A value that parses but is out of range: the variable is named too.
        let e = Config::load(None, env_of(&[("STELE_LIMITS_CONNECTIONS_MAX", "0")])).unwrap_err();
        assert_eq!(e.key(), Some("limits.connections_max"));
        assert_eq!(
            e.to_string(),
            "STELE_LIMITS_CONNECTIONS_MAX: limits.connections_max must be at least 1, got 0 \
             (allowed: 1 to 1048576 connections)"
        );
    }

    #[test]
    fn a_bad_flag_value_names_the_flag() {
        let mut c = Config::default();
        c.apply_flags(&Flags {
            streams_max: Some(0),
            ..Flags::default()
        });
        let e = c.validate().unwrap_err();
        // tests/http.rs looks for "streams_max must be at least 1".
        assert_eq!(
            e.to_string(),
            "--streams-max: limits.streams_max must be at least 1, got 0 (allowed: 1 to 1048576 streams)"
        );
    }

    #[test]
    fn the_configuration_file_comes_from_the_flag_or_stele_config() {
        let env = env_of(&[(CONFIG_ENV, "/etc/stele/stele.toml")]);
        assert_eq!(
            config_path(None, &env),
            Some(PathBuf::from("/etc/stele/stele.toml"))
        );
        assert_eq!(
            config_path(Some(Path::new("x.toml")), &env),
            Some(PathBuf::from("x.toml"))
        );
        assert_eq!(config_path(None, no_env), None);
        assert_eq!(config_path(None, env_of(&[(CONFIG_ENV, "")])), None);
    }
}
