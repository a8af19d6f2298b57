//! Scrubbing: every sealed segment is read back whole, in the background,
//! and compared with what was signed or witnessed for it.
//!
//! Owns the scrubber thread of `stele serve` and its counters. A segment's
//! reference is, first found: its day's digest (signature checked with the
//! trusted key), what this process's writer witnessed when sealing it, or
//! what [`super::inherited`] verified against the earlier process's signed
//! checkpoint. With a reference the file's size and SHA-256 must match it;
//! without one (a day not yet signed and not verifiable) every frame, CRC,
//! payload and chain hash is re-checked. A mismatch marks the segment
//! damaged: reads of it fail naming it, `/readyz` is degraded, the metric
//! counts it, the log says so once.
//!
//! Invariants:
//! 1. Never delays READY: the first pass starts after the server serves.
//! 2. Reads at most `bytes_per_sec` (sleeping between 1 MiB chunks), so
//!    ingest and queries keep their figures.
//! 3. Never writes a segment; only marks views damaged.

use super::SealStatus;
use crate::log::segment::{scan, Depth};
use crate::log::{Log, SegmentInfo};
use crate::seal::digest::SegmentEntry;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default hours between passes.
pub const INTERVAL_HOURS_DEFAULT: u64 = 24;
/// Default read rate of the scrubber (bytes a second).
pub const BYTES_PER_SEC_DEFAULT: u64 = 64 << 20;
/// Bytes read between rate checks.
const CHUNK_BYTES: usize = 1 << 20;

/// Counters of the scrubber (for `/metrics` and `/readyz`).
#[derive(Debug, Default)]
pub struct ScrubStats {
    /// Whole passes finished.
    pub passes: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
    /// Segments checked.
    pub segments: AtomicU64,
    /// Segments found damaged (each counted once).
    pub damaged: AtomicU64,
    /// Whether a pass is running.
    pub running: AtomicBool,
}

/// The reference a sealed segment is checked against.
enum Reference {
    /// Size and SHA-256 from a signed digest, the writer, or verification.
    Hash(SegmentEntry, &'static str),
    /// None known: check the structure (CRC, payloads, chain, footer).
    Structure,
}

/// Reads `bytes` of `map` in chunks at no more than `rate` bytes a second,
/// feeding `sha`. Returns false when asked to stop.
fn paced(bytes: &[u8], rate: u64, stats: &ScrubStats, stop: &AtomicBool, sha: &mut Sha256) -> bool {
    let started = Instant::now();
    let mut done = 0u64;
    for chunk in bytes.chunks(CHUNK_BYTES) {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        sha.update(chunk);
        done += chunk.len() as u64;
        stats.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        let due = Duration::from_secs_f64(done as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    true
}

/// Checks one sealed segment; returns why it is damaged, if it is. `None`
/// also when stopped.
fn check(
    info: &SegmentInfo,
    reference: &Reference,
    rate: u64,
    stats: &ScrubStats,
    stop: &AtomicBool,
) -> Option<String> {
    let map = match crate::log::segment::SegmentFile::open(&info.path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    let bytes = &map[..];
    match reference {
        Reference::Hash(entry, source) => {
            if bytes.len() as u64 != entry.bytes {
                return Some(format!(
                    "holds {} bytes where {} {source} says {}: it was changed after sealing",
                    bytes.len(),
                    entry.name,
                    entry.bytes
                ));
            }
            let mut sha = Sha256::new();
            if !paced(bytes, rate, stats, stop, &mut sha) {
                return None;
            }
            let got = hex::encode(sha.finalize());
            (got != entry.sha256).then(|| {
                format!(
                    "its SHA-256 is {got}, {source} says {}: it was changed after sealing",
                    entry.sha256
                )
            })
        }
        Reference::Structure => {
            let mut sha = Sha256::new();
            if !paced(bytes, rate, stats, stop, &mut sha) {
                return None;
            }
            let header = match crate::log::format::Header::decode(bytes) {
                Ok(h) => h,
                Err(e) => return Some(format!("bad header: {e}")),
            };
            let s = scan(bytes, &header, Depth::Full, 0);
            match (&s.problem, &s.footer) {
                (Some(p), _) => Some(format!(
                    "damaged at offset {} (seq {}): {}",
                    p.offset, p.seq, p.detail
                )),
                (None, None) => Some("its footer is missing or does not check out".into()),
                (None, Some(_)) => None,
            }
        }
    }
}

/// The references known now: signed digests first, then what the writer
/// witnessed, then what was verified at start.
fn references(log: &Log, status: &SealStatus) -> BTreeMap<String, Reference> {
    let mut refs = BTreeMap::new();
    for (id, e) in status.inherited_entries() {
        refs.insert(
            id.file_name(),
            Reference::Hash(e, "the verified start-up check"),
        );
    }
    let through = status.verified_through();
    for w in log.witnessed() {
        if w.inherited_through.is_none_or(|t| t <= through) {
            let e = crate::seal::digest::entry_of(&w);
            refs.insert(
                e.name.clone(),
                Reference::Hash(e, "the writer that sealed it"),
            );
        }
    }
    for e in status.signed_entries() {
        refs.insert(e.name.clone(), Reference::Hash(e, "its signed digest"));
    }
    refs
}

/// One whole pass over the sealed segments. Returns false when stopped.
pub fn pass(log: &Log, status: &SealStatus, rate: u64, stop: &AtomicBool) -> bool {
    let stats = &status.scrub;
    stats.running.store(true, Ordering::Relaxed);
    let refs = references(log, status);
    for info in log.segments().iter().filter(|s| s.sealed && !s.evicted) {
        if stop.load(Ordering::Relaxed) {
            stats.running.store(false, Ordering::Relaxed);
            return false;
        }
        let name = info.id.file_name();
        let reference = refs.get(&name).unwrap_or(&Reference::Structure);
        if let Some(why) = check(info, reference, rate, stats, stop) {
            let why = format!("scrub: {name} {why}");
            if log.mark_damaged(info.id, why.clone()) {
                stats.damaged.fetch_add(1, Ordering::Relaxed);
                tracing::error!("{why}. Reads of it fail; run `stele verify`.");
            }
        }
        stats.segments.fetch_add(1, Ordering::Relaxed);
    }
    stats.passes.fetch_add(1, Ordering::Relaxed);
    stats.running.store(false, Ordering::Relaxed);
    true
}

/// The scrubber thread: waits until the start-up verification is done,
/// then runs a pass, and another every `interval`.
pub struct Scrubber {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scrubber {
    /// Starts the thread.
    pub fn start(
        log: Arc<Log>,
        status: Arc<SealStatus>,
        interval: Duration,
        rate: u64,
    ) -> Scrubber {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("stele-scrubber".into())
            .spawn(move || {
                while !status.started_check_done() {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                loop {
                    if !pass(&log, &status, rate, &flag) {
                        return;
                    }
                    let until = Instant::now() + interval;
                    while Instant::now() < until {
                        if flag.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            });
        match thread {
            Ok(t) => Scrubber {
                stop,
                thread: Some(t),
            },
            Err(e) => {
                tracing::error!("Could not start the scrubber thread: {e}; no scrubbing.");
                Scrubber { stop, thread: None }
            }
        }
    }

    /// Stops the thread (within one chunk).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Scrubber {
    fn drop(&mut self) {
        self.shutdown();
    }
}
