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
//!
//! Module map:
//! - `overrides`: the `STELE_*` environment overrides and the flags, applied
//!   over the file; where the file and the data directory are looked for.
//! - `errors`: a toml error as a message naming the key, line and excerpt.
//! - `limits`: [`Limits`], the `[limits]` section.
//! - `serve`: [`ServeConfig`], what `stele serve` runs with, and reloading.

use crate::index::{IndexConfig, COMMIT_INTERVAL_DEFAULT};
use crate::log::{
    LogConfig, RecoveryMode, BATCH_EVENTS_MAX_DEFAULT, SEGMENT_BYTES_MAX_DEFAULT,
    SEGMENT_BYTES_MAX_MIN, TAIL_BYTES_DEFAULT, TAIL_BYTES_MAX,
};
use crate::retention::RetentionConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod errors;
mod limits;
mod overrides;
mod serve;
#[cfg(test)]
mod tests;

use errors::{collect_leaves, key_error};
pub use limits::{Limits, APPEND_BYTES_PER_EVENT};
pub use overrides::{config_path, default_data_dir, Flags, CONFIG_ENV, ENV_OVERRIDES};
pub use serve::{Reloaded, Reloader, ServeConfig, LISTEN_DEFAULT};

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
    /// `[ingest]`: how posted events are read.
    pub ingest: IngestSection,
    /// `[[webhooks]]`: where alerts are delivered (`crate::alert`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<crate::alert::WebhookConfig>,
    /// `[[alerts]]`: the rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<crate::alert::AlertConfig>,
    /// `[processes]`: process runs and batch operations (`crate::intel`).
    pub processes: crate::intel::ProcessesConfig,
    /// `[detect]`: the detectors' thresholds (`crate::intel::detect`).
    pub detect: crate::intel::DetectConfig,
    /// `[archive]`: the S3 archive (`crate::archive`); off by default.
    pub archive: crate::archive::ArchiveConfig,
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
            ingest: IngestSection::default(),
            webhooks: Vec::new(),
            alerts: Vec::new(),
            processes: crate::intel::ProcessesConfig::default(),
            detect: crate::intel::DetectConfig::default(),
            archive: crate::archive::ArchiveConfig::default(),
            origins: Origins::default(),
        }
    }
}

/// `[ingest]`: how posted events are read, over HTTP and by `stele append`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSection {
    /// `[ingest.field_map]`: another system's field name → Stele's
    /// (`event_type = "action"`), applied before validation; names only, not
    /// values ([`crate::event::FieldMap`]).
    pub field_map: BTreeMap<String, String>,
}

impl IngestSection {
    /// The checked mapping.
    ///
    /// # Errors
    ///
    /// The key path of the first bad entry and why.
    pub fn field_map(&self) -> Result<crate::event::FieldMap, (String, String)> {
        crate::event::FieldMap::new(self.field_map.clone())
            .map_err(|(from, why)| (format!("ingest.field_map.{from}"), why))
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
    /// Bytes of encoded events the log keeps in memory, newest first, for
    /// the readers that follow it (the indexer, the activity feed, streams,
    /// alerts); a reader further behind decodes from the segments. 0 keeps
    /// none.
    pub tail_bytes: u64,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            recovery: RecoveryMode::Strict,
            tail_bytes: TAIL_BYTES_DEFAULT as u64,
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
        let ranges: [(&str, u64, u64, u64, &str); 13] = [
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
            (
                "log.tail_bytes",
                self.log.tail_bytes,
                0,
                TAIL_BYTES_MAX as u64,
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
        self.ingest
            .field_map()
            .map_err(|(key, why)| self.invalid(&key, format!("{key}: {why}")))?;
        self.alert_set()
            .map_err(|(key, why)| self.invalid(&key, why))?;
        self.processes
            .validate()
            .map_err(|(key, message)| self.invalid(&key, message))?;
        self.detect
            .validate()
            .map_err(|(key, message)| self.invalid(&key, message))?;
        self.archive
            .validate()
            .map_err(|(key, message)| self.invalid(&key, message))?;
        Ok(())
    }

    /// `[[webhooks]]` and `[[alerts]]`, checked (secret files read).
    ///
    /// # Errors
    /// The key path of the first problem and the whole sentence.
    pub fn alert_set(&self) -> Result<crate::alert::AlertSet, (String, String)> {
        crate::alert::compile(&self.webhooks, &self.alerts)
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

    /// The log's settings: `[log]` over the log's defaults, and room in one
    /// write for the largest request the limits let in ([`Limits::write_bytes_max`]).
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes_max: self.log.segment_bytes_max,
            recovery: self.log.recovery,
            // At most `TAIL_BYTES_MAX` (validated): it fits a usize.
            tail_bytes: self.log.tail_bytes as usize,
            write_bytes_max: self.limits.write_bytes_max(),
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
    /// in-process); `reload` re-reads the settings on SIGHUP. Call it on a
    /// validated configuration ([`Config::validate`]): it panics on an
    /// invalid `ingest.field_map` or alert section.
    pub fn serve_config(self, reload: Option<Reloader>) -> ServeConfig {
        let alerts = self
            .alert_set()
            .expect("a validated configuration has valid alerts");
        ServeConfig {
            reload,
            alerts,
            listen: self.listen,
            log: self.log_config(),
            index: self.index_config(),
            seal: self.seal_config(),
            data_dir: self.data_dir,
            limits: self.limits,
            retention: self.retention,
            auth: self.auth,
            tls: self.tls,
            processes: self.processes,
            detect: self.detect,
            archive: self.archive,
            field_map: self
                .ingest
                .field_map()
                .expect("a validated configuration has a valid ingest.field_map"),
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
