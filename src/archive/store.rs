//! The object store, through `object_store`'s S3 client, with blocking
//! calls and the one rule of every upload: it counts only once its content
//! is confirmed.
//!
//! Owns the client (endpoint, region, keys, timeouts, the crate's own
//! retries kept short: the uploader retries with its own backoff), the
//! confirmation of uploads and the classification of failures. Never
//! decides what to upload: [`super::uploader`] does.
//!
//! Confirmation: every upload carries its SHA-256 in the object's metadata
//! (`x-amz-meta-sha256`) and is confirmed either by the store (the ETag of
//! a single-part upload is the MD5 of what the store received, RGW and AWS
//! alike, compared with ours) or, when the ETag is not an MD5 (encryption
//! with KMS, some gateways), by reading the object back and comparing its
//! SHA-256. Stores that ignore `x-amz-checksum-*` (Ceph RGW 16 does) are
//! covered either way.

use super::config::{Credentials, Location};
use bytes::Bytes;
use futures_util::StreamExt;
use md5::Md5;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig,
};
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// The metadata key holding an object's SHA-256 (hex).
pub const SHA256_META: &str = "sha256";

/// Why a call to the store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with a server error:
    /// worth another try later.
    #[error("the archive is unavailable ({op} {key}): {detail}")]
    Unavailable {
        /// What was tried.
        op: &'static str,
        /// The object.
        key: String,
        /// The cause.
        detail: String,
    },
    /// The store refused (permissions, keys, a missing bucket).
    #[error("the archive refused {op} {key}: {detail}")]
    Refused {
        /// What was tried.
        op: &'static str,
        /// The object.
        key: String,
        /// The cause.
        detail: String,
    },
    /// No such object.
    #[error("{key} is not in the archive")]
    NotFound {
        /// The object.
        key: String,
    },
    /// A create found the object already there.
    #[error("{key} is already in the archive")]
    Exists {
        /// The object.
        key: String,
    },
    /// What the store holds is not what was sent.
    #[error("{key}: the archive does not hold what was uploaded: {detail}")]
    Mismatch {
        /// The object.
        key: String,
        /// What differs.
        detail: String,
    },
}

impl StoreError {
    fn from_os(op: &'static str, key: &str, e: object_store::Error) -> StoreError {
        let key = key.to_string();
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound { key },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => StoreError::Exists { key },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => StoreError::Refused {
                op,
                key,
                detail: source.to_string(),
            },
            other => StoreError::Unavailable {
                op,
                key,
                detail: other.to_string(),
            },
        }
    }
}

/// How an upload was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// The store's ETag is the MD5 of what was sent.
    ByStore,
    /// The object was read back and its SHA-256 compared.
    ReadBack,
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its ETag, without quotes.
    pub etag: Option<String>,
}

/// A bucket, with blocking calls (each runs on the store's own
/// current-thread runtime: call from a plain thread, never from async code).
pub struct Store {
    s3: Arc<AmazonS3>,
    rt: tokio::runtime::Runtime,
    location: Location,
    /// Set to abandon every call in flight and to come (shutdown).
    cancel: tokio::sync::watch::Sender<bool>,
}

/// Abandons a [`Store`]'s calls from another thread (see [`Store::canceller`]).
#[derive(Clone)]
pub struct Canceller(tokio::sync::watch::Sender<bool>);

impl Canceller {
    /// Every call in flight returns [`StoreError::Unavailable`] at once, and
    /// so does every later one.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

/// Lower-case hex of `bytes`' MD5.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// Lower-case hex of `bytes`' SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_ascii_lowercase()
}

impl Store {
    /// A client for `location`'s bucket.
    ///
    /// # Errors
    /// The settings do not make a client (a malformed endpoint), or no
    /// runtime could be made.
    pub fn open(
        location: &Location,
        endpoint: Option<&str>,
        region: Option<&str>,
        allow_http: bool,
        creds: Option<&Credentials>,
    ) -> Result<Store, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let region = region
            .map(str::to_string)
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(region)
            .with_allow_http(allow_http)
            // x-amz-checksum-sha256 on every upload: AWS checks it (and
            // requires a checksum for buckets with object lock); stores that
            // ignore it (Ceph RGW 16) are covered by the ETag or read-back.
            .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    // A whole segment goes in one PUT: 15 minutes carry
                    // 512 MiB at 0.6 MB/s (shutdown abandons it at once).
                    .with_timeout(Duration::from_secs(900))
                    .with_allow_http(allow_http),
            );
        if let Some(e) = endpoint
            .map(str::to_string)
            .or_else(|| env("AWS_ENDPOINT_URL"))
        {
            b = b.with_endpoint(e);
        }
        if let Some(c) = creds {
            b = b
                .with_access_key_id(&c.access_key)
                .with_secret_access_key(&c.secret_key);
            if let Some(t) = &c.token {
                b = b.with_token(t);
            }
        }
        let s3 = b
            .build()
            .map_err(|e| format!("cannot use the archive {location}: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the archive's I/O runtime: {e}"))?;
        Ok(Store {
            s3: Arc::new(s3),
            rt,
            location: location.clone(),
            cancel: tokio::sync::watch::channel(false).0,
        })
    }

    /// A handle that abandons this store's calls.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Runs `fut` to its end, or until cancelled.
    fn run<T>(
        &self,
        op: &'static str,
        key: &str,
        fut: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T, StoreError> {
        let mut cancelled = self.cancel.subscribe();
        let out = self.rt.block_on(async {
            tokio::select! {
                r = fut => Some(r),
                _ = cancelled.wait_for(|c| *c) => None,
            }
        });
        match out {
            Some(r) => r.map_err(|e| StoreError::from_os(op, key, e)),
            None => Err(StoreError::Unavailable {
                op,
                key: key.into(),
                detail: "abandoned: Stele is stopping".into(),
            }),
        }
    }

    /// The bucket and prefix this store was opened for.
    pub fn location(&self) -> &Location {
        &self.location
    }

    fn key(key: &str) -> Key {
        Key::from(key)
    }

    /// Uploads `bytes` to `key` and confirms them. `create`: only if no
    /// object is there ([`StoreError::Exists`] otherwise).
    ///
    /// # Errors
    /// As [`StoreError`]; [`StoreError::Mismatch`] when the store holds
    /// other bytes than were sent.
    pub fn put(&self, key: &str, bytes: Bytes, create: bool) -> Result<Confirmed, StoreError> {
        let (md5, sha) = (md5_hex(&bytes), sha256_hex(&bytes));
        self.put_hashed(key, bytes, &md5, &sha, create)
    }

    /// [`Store::put`] of bytes whose MD5 and SHA-256 (hex) the caller has
    /// already computed (a segment is hashed once, not once a caller).
    ///
    /// # Errors
    /// As [`Store::put`].
    pub fn put_hashed(
        &self,
        key: &str,
        bytes: Bytes,
        md5: &str,
        sha: &str,
        create: bool,
    ) -> Result<Confirmed, StoreError> {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(SHA256_META.into()),
            sha.to_string().into(),
        );
        let opts = PutOptions {
            mode: if create {
                PutMode::Create
            } else {
                PutMode::Overwrite
            },
            attributes,
            ..PutOptions::default()
        };
        let k = Store::key(key);
        let put = self.run(
            "PUT",
            key,
            self.s3.put_opts(&k, PutPayload::from_bytes(bytes), opts),
        )?;
        if put.e_tag.as_deref().map(unquote).as_deref() == Some(md5) {
            return Ok(Confirmed::ByStore);
        }
        let back = self.get(key)?;
        let got = sha256_hex(&back);
        if got != sha {
            return Err(StoreError::Mismatch {
                key: key.into(),
                detail: format!("SHA-256 sent {sha}, read back {got}"),
            });
        }
        Ok(Confirmed::ReadBack)
    }

    /// Whether the object at `key` holds exactly the bytes whose MD5 and
    /// SHA-256 are given: by its ETag, else its `sha256` metadata, else by
    /// reading it.
    ///
    /// # Errors
    /// As [`StoreError`] ([`StoreError::NotFound`] when absent).
    pub fn holds(&self, key: &str, md5: &str, sha256: &str) -> Result<bool, StoreError> {
        let head = self.head(key)?;
        if head.meta.e_tag.as_deref().map(unquote).as_deref() == Some(md5) {
            return Ok(true);
        }
        let meta = head
            .attributes
            .get(&Attribute::Metadata(SHA256_META.into()))
            .map(|v| v.to_string());
        if meta.as_deref().is_some_and(|m| m != sha256) {
            return Ok(false);
        }
        Ok(sha256_hex(&self.get(key)?) == sha256)
    }

    fn head(&self, key: &str) -> Result<object_store::GetResult, StoreError> {
        let opts = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        self.run("HEAD", key, self.s3.get_opts(&Store::key(key), opts))
    }

    /// The object's `sha256` metadata, as uploaded.
    ///
    /// # Errors
    /// As [`StoreError`].
    pub fn recorded_sha256(&self, key: &str) -> Result<Option<String>, StoreError> {
        let head = self.head(key)?;
        Ok(head
            .attributes
            .get(&Attribute::Metadata(SHA256_META.into()))
            .map(|v| v.to_string()))
    }

    /// The whole object.
    ///
    /// # Errors
    /// As [`StoreError`].
    pub fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.run("GET", key, async {
            let r = self.s3.get(&Store::key(key)).await?;
            r.bytes().await
        })
    }

    /// Bytes `range` of the object.
    ///
    /// # Errors
    /// As [`StoreError`].
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.run("GET", key, self.s3.get_range(&Store::key(key), range))
    }

    /// Every object under `prefix` (a `/`-terminated key prefix, or empty).
    ///
    /// # Errors
    /// As [`StoreError`].
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let p = prefix.trim_end_matches('/');
        let p = (!p.is_empty()).then(|| Store::key(p));
        self.run("LIST", prefix, async {
            let mut out = Vec::new();
            let mut s = self.s3.list(p.as_ref());
            while let Some(m) = s.next().await {
                let m = m?;
                out.push(Listed {
                    key: m.location.to_string(),
                    size: m.size,
                    etag: m.e_tag.as_deref().map(unquote),
                });
            }
            Ok(out)
        })
    }

    /// Deletes the object (absent is fine).
    ///
    /// # Errors
    /// As [`StoreError`] (a store with object lock refuses).
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.run("DELETE", key, self.s3.delete(&Store::key(key))) {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
