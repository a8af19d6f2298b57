//! The local tier's read side: evicted segments fetched back from the
//! archive into `DATA_DIR/archive-cache/`, bounded by `cache_bytes`.
//!
//! Owns the cache directory: a fetched object is checked against the
//! SHA-256 the segment had when it was evicted, written under a temporary
//! name and renamed; the least recently used files go once the budget is
//! passed (a reader that maps one keeps its bytes until it is done). Never
//! writes the archive. Implements [`crate::log::evicted::Fetch`], which the
//! log's views call; the object store is driven from a thread of its own,
//! so a fetch is safe from any thread, async runtime or not.

use super::keys::{Layout, Object};
use super::status::ArchiveStatus;
use super::store::{sha256_hex, Store};
use crate::log::format::SegmentId;
use crate::sync::Recover;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

/// One download for the fetching thread.
struct Job {
    key: String,
    reply: Sender<Result<Bytes, String>>,
}

/// The cache of evicted segments.
pub struct Cache {
    dir: PathBuf,
    budget: u64,
    layout: Layout,
    status: Arc<ArchiveStatus>,
    /// To the fetching thread; one fetch at a time (the lock also keeps two
    /// readers of one segment from downloading it twice).
    jobs: Mutex<Sender<Job>>,
}

impl Cache {
    /// A cache in `dir` of at most `budget` bytes (but for the file last
    /// fetched), reading `layout`'s segments through `store`.
    ///
    /// # Errors
    /// The directory cannot be made or the thread cannot start.
    pub fn start(
        store: Store,
        layout: Layout,
        dir: PathBuf,
        budget: u64,
        status: Arc<ArchiveStatus>,
    ) -> Result<Arc<Cache>, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("stele-archive-fetch".into())
            .spawn(move || {
                // Ends when the cache (the only sender) is gone.
                for job in rx {
                    let got = store.get(&job.key).map_err(|e| e.to_string());
                    let _ = job.reply.send(got);
                }
            })
            .map_err(|e| format!("cannot start the archive's fetching thread: {e}"))?;
        Ok(Arc::new(Cache {
            dir,
            budget,
            layout,
            status,
            jobs: Mutex::new(tx),
        }))
    }

    /// Deletes the least recently used files until the cache fits its
    /// budget, never `keep`.
    fn trim(&self, keep: &Path) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.budget {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
        self.status.set_cache_bytes(total);
    }
}

impl crate::log::evicted::Fetch for Cache {
    fn fetch(&self, name: &str, sha256: &str) -> Result<PathBuf, String> {
        let jobs = self.jobs.exclusive();
        let path = self.dir.join(name);
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            // Most recently used now.
            let _ = f.set_modified(std::time::SystemTime::now());
            self.status.cache_hit();
            return Ok(path);
        }
        let id =
            SegmentId::parse_file_name(name).ok_or_else(|| format!("{name}: not a segment"))?;
        let key = self.layout.key(&Object::Segment(id));
        let (tx, rx) = channel();
        jobs.send(Job {
            key: key.clone(),
            reply: tx,
        })
        .map_err(|_| "the archive's fetching thread stopped".to_string())?;
        let bytes = rx
            .recv()
            .map_err(|_| "the archive's fetching thread stopped".to_string())??;
        let got = sha256_hex(&bytes);
        if got != sha256 {
            return Err(format!(
                "{key}: the archived object's SHA-256 is {got}, the segment's was {sha256} when \
                 it was evicted: it was altered in the archive"
            ));
        }
        crate::datadir::write_durably(&path, &bytes, 0o644).map_err(|e| e.to_string())?;
        self.status.fetched(bytes.len() as u64);
        self.trim(&path);
        Ok(path)
    }
}
