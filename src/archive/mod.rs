//! The archive: the sealed history in an S3-compatible bucket, for
//! capacity, for disaster recovery on another machine, as a witness of the
//! signed checkpoints, and as Parquet for distributed SQL engines.
//!
//! | piece | module | does |
//! |---|---|---|
//! | settings | [`config`] | `[archive]`, the `s3://` address, credentials |
//! | names | [`keys`] | every object's key (the layout below) |
//! | the bucket | [`store`] | blocking S3 calls; every upload confirmed |
//! | uploading | [`uploader`] | the thread that keeps the archive level with `DATA_DIR` |
//! | reporting | [`status`] | backlog, uploads, failures, newest day (`/metrics`, `/readyz`) |
//! | Parquet | [`parquet`] | a day's events as one Parquet file |
//! | reading back | [`fetch`] | `stele verify s3://…` and `stele restore` |
//! | the local tier | [`cache`] | evicted segments fetched back, bounded (`local_days`, `cache_bytes`) |
//!
//! ```text
//! s3://BUCKET/PREFIX/
//!   node=NODE/                 one per data directory (archive.node, default the host name)
//!     NODE.json                the claim: {"version","node","data_dir_id","claimed_at","stele"}
//!     segments/…seg            sealed segments, byte for byte (docs/FORMAT.md)
//!     digests/…digest.{json,sig}   the signed daily digests
//!     checkpoints/SEQ.json     signed checkpoints (the local checkpoint.json line), every interval
//!     events/day=D/events.parquet   the day's events (docs/FORMAT.md, "Archive: the day's Parquet file")
//!     retention/D.json         the retention.log line of a day dropped, written before its objects go
//! ```
//!
//! Owns nothing in the data directory but `archive.id`. Never on the path
//! of ingest: the uploader reads sealed files in its own thread; an archive
//! that is down grows a backlog, nothing else.

pub mod cache;
pub mod config;
pub mod fetch;
pub mod keys;
pub mod parquet;
pub mod status;
pub mod store;
pub mod uploader;

pub use config::{ArchiveConfig, Credentials, Location};
pub use status::{ArchiveStatus, Snapshot};

use crate::log::Log;
use crate::seal::worker::Worker;
use std::path::Path;
use std::sync::Arc;

/// The running archive of `stele serve`: the uploader's thread and status.
pub struct Archive {
    worker: Worker,
    cancel: store::Canceller,
    status: Arc<ArchiveStatus>,
}

/// Opens the bucket at `location` (credentials looked up as
/// [`Credentials::find`] says, in `credentials_dir` first).
///
/// # Errors
/// The address or the credentials cannot be used.
pub fn open_store(
    location: &Location,
    endpoint: Option<&str>,
    region: Option<&str>,
    allow_http: bool,
    credentials_dir: Option<&Path>,
) -> Result<store::Store, String> {
    let creds = Credentials::find(credentials_dir)?;
    store::Store::open(location, endpoint, region, allow_http, creds.as_ref())
}

/// A client of `cfg`'s store for `location`.
fn client(cfg: &ArchiveConfig, location: &Location) -> Result<store::Store, String> {
    open_store(
        location,
        cfg.endpoint.as_deref(),
        cfg.region.as_deref(),
        cfg.allow_http,
        cfg.credentials_dir.as_deref(),
    )
}

/// The bucket, prefix and node of `cfg` (which must be enabled).
fn located(cfg: &ArchiveConfig) -> Result<(Location, String, keys::Layout), String> {
    let url = cfg.url.as_deref().ok_or("no archive.url")?;
    let location = Location::parse(url)?;
    let node = cfg.node_name();
    let layout = keys::Layout::new(&location.prefix, &node);
    Ok((location, node, layout))
}

/// The archive's read side, opened with the log (before the indexes catch
/// up, which may read evicted segments): the status and the cache through
/// which `log` reads its evicted segments from now on.
///
/// # Errors
/// The settings cannot make a client, or the cache cannot start.
pub fn open_reader(
    cfg: &ArchiveConfig,
    data_dir: &Path,
    log: &Log,
) -> Result<Arc<ArchiveStatus>, String> {
    let (location, node, layout) = located(cfg)?;
    let status = Arc::new(ArchiveStatus::new(
        format!("s3://{}/{}", location.bucket, layout.root()),
        node,
    ));
    // Its own client and thread: the uploader's may be busy with a long upload.
    let reader = client(cfg, &location)?;
    let data = crate::datadir::DataDir::new(data_dir);
    let cache = cache::Cache::start(
        reader,
        layout.clone(),
        data.archive_cache(),
        cfg.cache_bytes,
        status.clone(),
    )?;
    log.set_fetcher(cache);
    Ok(status)
}

impl Archive {
    /// Starts the uploader for `cfg` (which must be enabled) over the log of
    /// `data_dir`, reporting into `status` (from [`open_reader`]).
    ///
    /// # Errors
    /// The settings cannot make a client, or the thread cannot start.
    pub fn start(
        cfg: &ArchiveConfig,
        data_dir: &Path,
        log: Arc<Log>,
        clock: Arc<dyn crate::clock::Clock>,
        status: Arc<ArchiveStatus>,
    ) -> Result<Archive, String> {
        let (location, node, layout) = located(cfg)?;
        let store = client(cfg, &location)?;
        let (checkpoint_interval, poll, retry_max) = cfg.intervals();
        let cancel = store.canceller();
        let uploader = uploader::Uploader {
            store,
            layout,
            data_dir: crate::datadir::DataDir::new(data_dir),
            log,
            status: status.clone(),
            node,
            checkpoint_interval,
            poll,
            retry_max,
            parquet: cfg.parquet,
            local_days: cfg.local_days,
            clock,
        };
        let worker = Worker::spawn("stele-archive", move |stop| uploader.run(stop))
            .map_err(|e| format!("cannot start the archive's thread: {e}"))?;
        tracing::info!("Archiving sealed days to {location}.");
        Ok(Archive {
            worker,
            cancel,
            status,
        })
    }

    /// What the uploader reports.
    pub fn status(&self) -> Arc<ArchiveStatus> {
        self.status.clone()
    }

    /// Stops the uploader at once: a call in flight is abandoned (the
    /// upload is done again, or found already there and compared, at the
    /// next start).
    pub fn stop(self) {
        self.cancel.cancel();
        self.worker.stop();
    }
}
