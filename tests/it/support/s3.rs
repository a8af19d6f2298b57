//! A real S3 for the archive tests (issue 20): the server that
//! `scripts/s3-ceph.sh` starts (a one-node Ceph with radosgw, see
//! docs/s3-testing.md), found through the variables of its `DIR/s3.env`
//! (`S3_ENDPOINT`, `S3_ACCESS_KEY`, `S3_SECRET_KEY`, `S3_REGION`), and a
//! bucket of its own for each test.
//!
//! This module owns the skip rule (no `S3_ENDPOINT`: the test prints
//! "skipped" and passes, unless `STELE_S3_REQUIRED=1`, as in CI, where it
//! panics), the bucket names, the buckets' life (made by
//! `scripts/s3-bucket.py create`, emptied of every version and deleted by
//! `scripts/s3-bucket.py delete` when the [`Bucket`] drops), and what a test
//! reads and writes in a bucket behind the archive's back: `object_store` for
//! objects, boto3 (the script) for versions and delete markers, which
//! `object_store` does not show.
//!
//! The blocking helpers run each `object_store` call on a current-thread
//! runtime of its own, on a thread of its own: they work in sync tests and
//! inside `#[tokio::test]` alike (a `block_on` inside a runtime would panic).

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use serde::Deserialize;
use std::future::Future;
use std::io::Write;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The bucket script, run with `python3` (needs boto3).
pub const BUCKET_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3-bucket.py");

/// Where the S3 server is and who the tests are on it.
#[derive(Clone, Debug)]
pub struct S3Env {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

/// The server from `S3_*`, or `None` without `S3_ENDPOINT`: prints
/// "`test`: skipped: no S3_ENDPOINT" to stderr so that the test can return.
/// Panics instead when `STELE_S3_REQUIRED=1` (CI sets it: a CI run that
/// lost its S3 must fail, not pass with every archive test skipped).
pub fn s3_or_skip(test: &str) -> Option<S3Env> {
    let env = S3Env::from_env();
    if env.is_none() {
        if std::env::var("STELE_S3_REQUIRED").as_deref() == Ok("1") {
            panic!(
                "{test}: STELE_S3_REQUIRED=1 but S3_ENDPOINT is not set: start an S3 with \
                 `scripts/s3-ceph.sh start DIR` and export the variables of DIR/s3.env \
                 (docs/s3-testing.md)"
            );
        }
        // straight to stderr, not eprintln!: the test harness captures that,
        // and a skip should show in a plain `cargo test`
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: no S3_ENDPOINT (docs/s3-testing.md)"
        );
    }
    env
}

impl S3Env {
    /// From `S3_ENDPOINT`, `S3_ACCESS_KEY`, `S3_SECRET_KEY` and `S3_REGION`
    /// (default `us-east-1`); `None` when `S3_ENDPOINT` is unset or empty.
    /// Panics when `S3_ENDPOINT` is set without the keys.
    pub fn from_env() -> Option<S3Env> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let endpoint = var("S3_ENDPOINT")?;
        let key = |name: &str| {
            var(name).unwrap_or_else(|| panic!("S3_ENDPOINT is set ({endpoint}) but {name} is not"))
        };
        Some(S3Env {
            access_key: key("S3_ACCESS_KEY"),
            secret_key: key("S3_SECRET_KEY"),
            region: var("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            endpoint,
        })
    }

    /// A new bucket for `test_name`, named uniquely for the test and the run;
    /// with `object_lock_days`, object lock is on (and so versioning) with a
    /// default retention of GOVERNANCE for that many days. Deleted, every
    /// version of every object with it, when the `Bucket` drops.
    pub fn bucket(&self, test_name: &str, object_lock_days: Option<u32>) -> Bucket {
        let name = bucket_name(test_name);
        let mut args = vec!["create".to_string(), name.clone()];
        if let Some(days) = object_lock_days {
            args.extend(["--object-lock-days".to_string(), days.to_string()]);
        }
        let out = self.script(&args);
        assert!(
            out.status.success(),
            "could not create bucket {name} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Bucket {
            name,
            env: self.clone(),
        }
    }

    /// Whether a bucket of that name exists (for tests of the cleanup).
    pub fn bucket_exists(&self, name: &str) -> bool {
        let out = self.script(&["versions", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => true,
            Some(1) if stderr.contains("NoSuchBucket") => false,
            _ => panic!("s3-bucket.py versions {name}: {}: {stderr}", out.status),
        }
    }

    /// `python3 scripts/s3-bucket.py ARGS` against this server.
    pub fn script<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        Command::new("python3")
            .arg(BUCKET_SCRIPT)
            .args(args)
            .env("S3_ENDPOINT", &self.endpoint)
            .env("S3_ACCESS_KEY", &self.access_key)
            .env("S3_SECRET_KEY", &self.secret_key)
            .env("S3_REGION", &self.region)
            .output()
            .unwrap_or_else(|e| panic!("run python3 {BUCKET_SCRIPT}: {e}"))
    }
}

/// `stele-<test>-<pid>-<n>-<run>`: lowercase letters, digits and `-`, at
/// most 63 characters (S3's rules), unique per test, process and run (`run`
/// is the start time in seconds, base 36, so that a bucket left behind by a
/// killed run with the same pid does not collide).
fn bucket_name(test: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let suffix = format!(
        "-{}-{n}-{}",
        std::process::id(),
        base36(secs % 36u64.pow(6))
    );
    let mut test: String = test
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while test.contains("--") {
        test = test.replace("--", "-");
    }
    let room = 63 - "stele-".len() - suffix.len();
    let test: String = test.trim_matches('-').chars().take(room).collect();
    let test = test.trim_end_matches('-');
    let name = if test.is_empty() {
        format!("stele{suffix}")
    } else {
        format!("stele-{test}{suffix}")
    };
    debug_assert!(name.len() <= 63, "{name}");
    name
}

fn base36(mut n: u64) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

/// A test's bucket; deleted with everything in it when dropped
/// (`STELE_S3_KEEP_BUCKETS=1` keeps it, to look at after a failure).
pub struct Bucket {
    pub name: String,
    env: S3Env,
}

/// One object version or delete marker, as `s3-bucket.py versions` gives it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Version {
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: String,
}

impl Bucket {
    pub fn env(&self) -> &S3Env {
        &self.env
    }

    /// The bucket as an `object_store` (path-style requests, plain HTTP
    /// allowed, a few retries within 30 s). Each call builds a new client:
    /// use it on one runtime.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        let s3 = AmazonS3Builder::new()
            .with_bucket_name(&self.name)
            .with_endpoint(&self.env.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(&self.env.access_key)
            .with_secret_access_key(&self.env.secret_key)
            .with_region(&self.env.region)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            .build()
            .unwrap_or_else(|e| panic!("object_store for bucket {}: {e}", self.name));
        Arc::new(s3)
    }

    /// `s3://NAME/prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.name, prefix.trim_start_matches('/'))
    }

    /// The variables a `stele` child process needs to reach this server,
    /// as `object_store`'s `AmazonS3Builder::from_env` reads them (it takes
    /// every `AWS_*`; `AWS_ENDPOINT` and `AWS_ENDPOINT_URL` both set the
    /// endpoint, the second is also the AWS SDKs' name). A test should
    /// `env_remove` other `AWS_*` of its own environment (a session token,
    /// a profile) if it may have them.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.env.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.env.secret_key.as_str()),
            ("AWS_REGION", self.env.region.as_str()),
            ("AWS_ENDPOINT", self.env.endpoint.as_str()),
            ("AWS_ENDPOINT_URL", self.env.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Every object under `prefix` (whole path segments, as `object_store`
    /// lists: "a" lists "a/x", not "ab"; "" lists all), as (key, size),
    /// sorted by key. Only the current versions.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let mut got = block_on(|| async {
            use futures_util::TryStreamExt;
            let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
            self.store()
                .list(prefix.as_ref())
                .map_ok(|m| (m.location.to_string(), m.size))
                .try_collect::<Vec<_>>()
                .await
        })
        .unwrap_or_else(|e| panic!("list {}: {e}", self.url(prefix)));
        got.sort();
        got
    }

    /// The current version of `key`; panics if there is none.
    pub fn get(&self, key: &str) -> Vec<u8> {
        block_on(|| async {
            let r = self.store().get(&ObjectPath::from(key)).await?;
            r.bytes().await
        })
        .map(|b| b.to_vec())
        .unwrap_or_else(|e| panic!("get {}: {e}", self.url(key)))
    }

    /// Writes `bytes` at `key`, over what is there (to play an attacker or
    /// a broken writer); in a versioned bucket this adds a version.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let payload = PutPayload::from(bytes.to_vec());
        block_on(|| async { self.store().put(&ObjectPath::from(key), payload).await })
            .unwrap_or_else(|e| panic!("put {}: {e}", self.url(key)));
    }

    /// Deletes `key` without a version id: gone from [`Bucket::list`]; in a
    /// versioned (object lock) bucket only a delete marker is added and
    /// every version stays (see [`Bucket::versions`]).
    pub fn delete(&self, key: &str) {
        block_on(|| async { self.store().delete(&ObjectPath::from(key)).await })
            .unwrap_or_else(|e| panic!("delete {}: {e}", self.url(key)));
    }

    /// Every version and delete marker under `prefix` (a plain string
    /// prefix, as S3 has it), by key then newest first.
    pub fn versions(&self, prefix: &str) -> Vec<Version> {
        let out = self.env.script(&["versions", &self.name, prefix]);
        assert!(
            out.status.success(),
            "s3-bucket.py versions {} {prefix}: {}: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "s3-bucket.py versions: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        if std::env::var("STELE_S3_KEEP_BUCKETS").as_deref() == Ok("1") {
            eprintln!("kept bucket {} (STELE_S3_KEEP_BUCKETS=1)", self.name);
            return;
        }
        let out = self.env.script(&["delete", &self.name]);
        if !out.status.success() {
            eprintln!(
                "could not delete bucket {} ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// Runs the future `make` returns to completion on a new current-thread
/// runtime on a new thread: safe from sync code and from inside another
/// runtime alike (the future is made on that thread, so it need not be
/// `Send`, and neither need the store's client outlive its runtime).
fn block_on<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send,
    F: Future,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(make())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
