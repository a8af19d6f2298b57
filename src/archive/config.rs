//! `[archive]`: where the archive is and how the uploader behaves.
//!
//! Owns the section's keys, their defaults and checks, the parsing of an
//! archive address (`s3://BUCKET/PREFIX`) and where credentials come from.
//! Never talks to the store: [`super::store`] does.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Default seconds between two checkpoints sent to the archive.
pub const CHECKPOINT_INTERVAL_SECS_DEFAULT: u64 = 60;
/// Default seconds between two passes of the uploader.
pub const POLL_SECS_DEFAULT: u64 = 10;
/// Default cap of the retry backoff, seconds.
pub const RETRY_MAX_SECS_DEFAULT: u64 = 300;
/// The credential files read from `$CREDENTIALS_DIRECTORY` (systemd
/// `LoadCredential=`) when the environment gives no keys.
pub const ACCESS_KEY_FILE: &str = "s3-access-key-id";
/// See [`ACCESS_KEY_FILE`].
pub const SECRET_KEY_FILE: &str = "s3-secret-access-key";

/// `[archive]` as written in the configuration. Off unless `url` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// `s3://BUCKET/PREFIX`: the bucket and the prefix shared by every node.
    /// None: no archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// This node's name: its objects live under `PREFIX/node=NAME/`. Default:
    /// the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The S3 endpoint (Ceph RGW, MinIO, ...). None: AWS, or
    /// `$AWS_ENDPOINT_URL` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region (`us-east-1` unless `$AWS_REGION` says otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A directory holding `s3-access-key-id` and `s3-secret-access-key`
    /// (mode 0600 or stricter advised). Default: the environment's
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, else
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_dir: Option<std::path::PathBuf>,
    /// Allow `http://` endpoints (a store on loopback or a private network).
    pub allow_http: bool,
    /// Seconds between two checkpoints sent to the archive while events
    /// arrive (each is a new object; the newest local one is sent).
    pub checkpoint_interval_secs: u64,
    /// Seconds between two passes over what is left to upload.
    pub poll_secs: u64,
    /// The longest wait between two attempts after a failure, seconds (the
    /// wait doubles from one second up to it).
    pub retry_max_secs: u64,
    /// Write each sealed day's events as Parquet next to its segments.
    pub parquet: bool,
    /// The local tier: sealed segments of days more than this many days
    /// before today are evicted from the disk once archived, verified and
    /// signed, and fetched back when a read needs them. None: keep every day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_days: Option<u32>,
    /// Most bytes of evicted segments kept in `DATA_DIR/archive-cache/`.
    pub cache_bytes: u64,
}

/// Default `cache_bytes`: 1 GiB.
pub const CACHE_BYTES_DEFAULT: u64 = 1 << 30;
/// Smallest `cache_bytes`.
pub const CACHE_BYTES_MIN: u64 = 1 << 20;

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            url: None,
            node: None,
            endpoint: None,
            region: None,
            credentials_dir: None,
            allow_http: false,
            checkpoint_interval_secs: CHECKPOINT_INTERVAL_SECS_DEFAULT,
            poll_secs: POLL_SECS_DEFAULT,
            retry_max_secs: RETRY_MAX_SECS_DEFAULT,
            parquet: true,
            local_days: None,
            cache_bytes: CACHE_BYTES_DEFAULT,
        }
    }
}

/// An archive address: a bucket and a prefix (without slashes at the ends;
/// may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The bucket.
    pub bucket: String,
    /// The prefix inside it.
    pub prefix: String,
}

impl Location {
    /// Parses `s3://BUCKET[/PREFIX]`.
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn parse(url: &str) -> Result<Location, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not an s3://BUCKET/PREFIX address"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok_bucket {
            return Err(format!(
                "{url:?}: the bucket name must be 3 to 63 lower-case letters, digits, dots or dashes"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..")
            || prefix.contains("//")
            || prefix.chars().any(|c| c.is_control())
        {
            return Err(format!(
                "{url:?}: the prefix must be plain path segments (no empty, . or .. segment)"
            ));
        }
        Ok(Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.is_empty() {
            true => write!(f, "s3://{}", self.bucket),
            false => write!(f, "s3://{}/{}", self.bucket, self.prefix),
        }
    }
}

/// Whether `name` may name a node: 1 to 63 letters, digits, `-`, `_`, `.`.
pub fn valid_node(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name != "."
        && name != ".."
}

/// The host name, as a node name (`node` when the host's is not one).
pub fn host_node() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if valid_node(&name) {
        name
    } else {
        "node".into()
    }
}

impl ArchiveConfig {
    /// Whether an archive is configured.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// The node name in force.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(host_node)
    }

    /// Checks every value.
    ///
    /// # Errors
    /// The key path and a sentence.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(url) = &self.url {
            Location::parse(url)
                .map_err(|e| ("archive.url".into(), format!("archive.url: {e}")))?;
        }
        if let Some(n) = &self.node {
            if !valid_node(n) {
                return Err((
                    "archive.node".into(),
                    format!("archive.node: {n:?} must be 1 to 63 letters, digits, '-', '_' or '.'"),
                ));
            }
        }
        if let Some(e) = &self.endpoint {
            let http = e.starts_with("http://");
            if !http && !e.starts_with("https://") {
                return Err((
                    "archive.endpoint".into(),
                    format!("archive.endpoint: {e:?} must be an http:// or https:// URL"),
                ));
            }
            if http && !self.allow_http {
                return Err((
                    "archive.endpoint".into(),
                    format!(
                        "archive.endpoint: {e:?} is plain HTTP: set archive.allow_http = true \
                         to allow it (credentials and data then travel in clear text)"
                    ),
                ));
            }
        }
        let ranges = [
            (
                "archive.checkpoint_interval_secs",
                self.checkpoint_interval_secs,
                1,
                86_400,
            ),
            ("archive.poll_secs", self.poll_secs, 1, 3_600),
            ("archive.retry_max_secs", self.retry_max_secs, 1, 86_400),
        ];
        if self.cache_bytes < CACHE_BYTES_MIN {
            return Err((
                "archive.cache_bytes".into(),
                format!(
                    "archive.cache_bytes must be at least {CACHE_BYTES_MIN} bytes, got {}",
                    self.cache_bytes
                ),
            ));
        }
        if self.local_days.is_some() && self.url.is_none() {
            return Err((
                "archive.local_days".into(),
                "archive.local_days needs archive.url: segments are evicted only to an archive"
                    .into(),
            ));
        }
        for (key, got, min, max) in ranges {
            if !(min..=max).contains(&got) {
                return Err((
                    key.into(),
                    format!("{key} must be between {min} and {max} seconds, got {got}"),
                ));
            }
        }
        Ok(())
    }

    /// The seconds settings as durations: (checkpoint interval, poll, retry cap).
    pub fn intervals(&self) -> (Duration, Duration, Duration) {
        (
            Duration::from_secs(self.checkpoint_interval_secs),
            Duration::from_secs(self.poll_secs),
            Duration::from_secs(self.retry_max_secs),
        )
    }
}

/// Access keys: from `archive.credentials_dir` when set, else the
/// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), else `$CREDENTIALS_DIRECTORY`; a directory holds
/// them as `s3-access-key-id` and `s3-secret-access-key`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key: String,
    /// The secret.
    pub secret_key: String,
    /// A session token, when the keys are temporary.
    pub token: Option<String>,
    /// Where they came from, for messages.
    pub from: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, from {})", self.access_key, self.from)
    }
}

impl Credentials {
    /// Looks the keys up (see the type's doc); `None` when no place has them.
    ///
    /// # Errors
    /// A credential file exists but cannot be read, or `dir` lacks them.
    pub fn find(dir: Option<&Path>) -> Result<Option<Credentials>, String> {
        if let Some(d) = dir {
            return match Credentials::in_dir(d)? {
                Some(c) => Ok(Some(c)),
                None => Err(format!(
                    "{} holds no {ACCESS_KEY_FILE} and {SECRET_KEY_FILE}",
                    d.display()
                )),
            };
        }
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(a), Some(s)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Some(Credentials {
                access_key: a,
                secret_key: s,
                token: var("AWS_SESSION_TOKEN"),
                from: "the environment (AWS_ACCESS_KEY_ID)".into(),
            }));
        }
        match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(d) => Credentials::in_dir(Path::new(&d)),
            None => Ok(None),
        }
    }

    fn in_dir(dir: &Path) -> Result<Option<Credentials>, String> {
        let read = |name: &str| -> Result<Option<String>, String> {
            let p = dir.join(name);
            match std::fs::read_to_string(&p) {
                Ok(s) => Ok(Some(s.trim().to_string())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", p.display())),
            }
        };
        match (read(ACCESS_KEY_FILE)?, read(SECRET_KEY_FILE)?) {
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Ok(Some(Credentials {
                access_key: a,
                secret_key: s,
                token: None,
                from: format!("{}/{ACCESS_KEY_FILE}", dir.display()),
            })),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_refuse() {
        let l = Location::parse("s3://audit-logs/stele/prod").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("audit-logs", "stele/prod")
        );
        assert_eq!(l.to_string(), "s3://audit-logs/stele/prod");
        let l = Location::parse("s3://audit-logs/").unwrap();
        assert_eq!(l.prefix, "");
        assert_eq!(l.to_string(), "s3://audit-logs");
        for bad in [
            "http://x/y",
            "s3://",
            "s3://AB/x",
            "s3://ab",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(ArchiveConfig::default().validate().is_ok());
        assert!(!ArchiveConfig::default().enabled());
        let c = ArchiveConfig {
            url: Some("s3://b-1/p".into()),
            endpoint: Some("http://127.0.0.1:7480".into()),
            ..ArchiveConfig::default()
        };
        let (key, why) = c.validate().unwrap_err();
        assert_eq!(key, "archive.endpoint");
        assert!(why.contains("allow_http"), "{why}");
        let c = ArchiveConfig {
            node: Some("a/b".into()),
            ..ArchiveConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "archive.node");
        let c = ArchiveConfig {
            poll_secs: 0,
            ..ArchiveConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "archive.poll_secs");
        assert!(valid_node(&host_node()));
    }
}
