//! The `stele-dict` thread: trains zstd dictionaries from samples of the
//! payloads the writer appends, and keeps the newest for the segments the
//! writer creates ([`super::Dict`] compresses with it). Never touches files and
//! never blocks the writer.
//!
//! Invariants:
//! 1. Training never blocks the writer: samples are handed over without
//!    waiting and dropped when the trainer is busy; what waits for it is
//!    bounded ([`SAMPLES_QUEUED`] batches of [`SAMPLES_SENT_BYTES`]).
//! 2. Dictionaries come in order: a log that has none trains a first one
//!    once it holds a quarter of the sample bytes ([`FIRST_SHARE`]), then
//!    one from all of them, then one per [`RETRAIN_AFTER_BYTES`] of
//!    payloads; a restarted log that opened with a full one goes on to the
//!    retraining. The writer ends a segment whose dictionary is not the
//!    newest (or that has none) at its next append once it holds a record,
//!    so every segment it creates is compressed with the newest dictionary
//!    there was.

use super::Dict;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Default bytes of samples a dictionary is trained from.
pub const SAMPLE_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
/// A dictionary is a sixteenth of the samples it is trained from, at most
/// [`DICT_BYTES_DEFAULT_MAX`] (measured on the peer workload's payloads: 1 MiB of
/// samples make a 64 KiB dictionary that stores a record in 124.5 bytes, a 32 KiB one
/// in 128.6; README "Performance").
pub const SAMPLE_TO_DICT: usize = 16;
/// A log without a dictionary trains its first from `sample_bytes / FIRST_SHARE` of
/// samples, and its second from the whole `sample_bytes`: training takes time in
/// proportion to the samples (0.17 s for 1 MiB, 0.75 s for 4 MiB on the dev machine),
/// and every record appended meanwhile is stored uncompressed, so a quick first
/// dictionary that compresses 4 % worse stores a fresh log's first 45,000 events of
/// the peer workload in 3 MB instead of 17 (README "Performance"). The second ends the
/// segment compressed with the first.
pub const FIRST_SHARE: usize = 4;
/// The largest dictionary trained.
pub const DICT_BYTES_DEFAULT_MAX: usize = 112 * 1024;
/// Every `SAMPLE_EVERY`-th payload the writer appends to a segment with a
/// dictionary is offered as a sample (every payload while it has none).
pub const SAMPLE_EVERY: u64 = 8;
/// After the full dictionary (the second, or one a restarted log opened
/// with), a new one is trained once this many payload bytes have been
/// appended since the last training or the start (or never, when 0).
pub const RETRAIN_AFTER_BYTES: u64 = 1024 * 1024 * 1024;

/// The most sample bytes the writer hands the trainer at once.
pub const SAMPLES_SENT_BYTES: usize = 256 * 1024;
/// The most sample batches waiting for the trainer (so at most about
/// `SAMPLES_QUEUED * SAMPLES_SENT_BYTES` bytes, plus one payload per batch).
pub const SAMPLES_QUEUED: usize = 16;

/// Samples taken from one in `every` payloads.
#[derive(Debug, Default)]
pub struct Samples {
    items: Vec<Vec<u8>>,
    bytes: usize,
    every: u64,
}

impl Samples {
    /// Payloads (the parts after the prefix) taken from one in `every`.
    pub fn new(items: Vec<Vec<u8>>, every: u64) -> Samples {
        let bytes = items.iter().map(Vec::len).sum();
        Samples {
            items,
            bytes,
            every,
        }
    }
}

/// Trains dictionaries on its own thread from samples the writer offers, and
/// keeps the newest.
pub struct Trainer {
    tx: Option<SyncSender<Samples>>,
    /// Offered, not handed over yet.
    pending: Samples,
    newest: Arc<Mutex<Option<Arc<Dict>>>>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer").finish_non_exhaustive()
    }
}

impl Trainer {
    /// Starts the trainer; `sample_bytes` of samples make a dictionary
    /// (0: never train, every segment is stored uncompressed), published in
    /// `newest`. `stored`: samples already on disk (the payloads a restarted
    /// log stored uncompressed), counted towards the first dictionary.
    pub fn start(
        sample_bytes: usize,
        newest: Arc<Mutex<Option<Arc<Dict>>>>,
        stored: Samples,
    ) -> std::io::Result<Trainer> {
        if sample_bytes == 0 {
            return Ok(Trainer {
                tx: None,
                pending: Samples::default(),
                newest,
                handle: None,
            });
        }
        let (tx, rx) = sync_channel(SAMPLES_QUEUED);
        let out = newest.clone();
        let handle = std::thread::Builder::new()
            .name("stele-dict".into())
            .spawn(move || train_loop(rx, sample_bytes, out, stored))?;
        Ok(Trainer {
            tx: Some(tx),
            pending: Samples::default(),
            newest,
            handle: Some(handle),
        })
    }

    /// Offers one payload (the part after the prefix) as a sample, taken
    /// from one in `every` payloads (how the trainer estimates the payload
    /// bytes since its last dictionary). Samples are handed over in
    /// batches of up to [`SAMPLES_SENT_BYTES`] ([`Trainer::flush`]).
    pub fn offer(&mut self, rest: &[u8], every: u64) {
        if self.tx.is_none() {
            return;
        }
        if self.pending.every != every || self.pending.bytes >= SAMPLES_SENT_BYTES {
            self.flush();
        }
        self.pending.every = every;
        self.pending.bytes += rest.len();
        self.pending.items.push(rest.to_vec());
    }

    /// Hands the samples offered since the last flush to the trainer's
    /// thread; dropped when it is busy with [`SAMPLES_QUEUED`] batches
    /// already (invariant 3).
    pub fn flush(&mut self) {
        if self.pending.items.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(batch);
        }
    }

    /// Whether samples are wanted (a trainer runs).
    pub fn sampling(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether the newest dictionary is not `current` (the same one, not
    /// equal bytes): a segment compressed with an older one, or with none,
    /// is ended at its next append (invariant 2).
    pub fn fresher_than(&self, current: Option<&Arc<Dict>>) -> bool {
        let newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        match (newest.as_ref(), current) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(n), Some(c)) => !Arc::ptr_eq(n, c),
        }
    }

    /// The newest dictionary trained, if any.
    pub fn newest(&self) -> Option<Arc<Dict>> {
        self.newest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Which dictionary the trainer makes next (invariant 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The log has none: a quick one from `sample_bytes / FIRST_SHARE`.
    First,
    /// One from the whole `sample_bytes` (after the first, or after a
    /// restart that opened with a quick first one).
    Full,
    /// A fresh one after [`RETRAIN_AFTER_BYTES`] of payloads.
    Retrain,
}

fn train_loop(
    rx: Receiver<Samples>,
    sample_bytes: usize,
    out: Arc<Mutex<Option<Arc<Dict>>>>,
    stored: Samples,
) {
    let first_bytes = sample_bytes / FIRST_SHARE;
    // A log that opened with a dictionary trained from at least half the sample
    // bytes keeps it until the next retraining (each new one ends a segment); a
    // smaller one (a quick first, the last run having stopped before the full
    // one) is replaced by one from all of them.
    let full_enough = (sample_bytes / 2 / SAMPLE_TO_DICT).min(DICT_BYTES_DEFAULT_MAX);
    let mut next = match out.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        None => Next::First,
        Some(d) if d.bytes().len() >= full_enough => Next::Retrain,
        Some(_) => Next::Full,
    };
    let mut samples: std::collections::VecDeque<Vec<u8>> = Default::default();
    let mut held = 0usize;
    // Payload bytes (estimated from the samples) since the last training.
    let mut since = 0u64;
    let mut fresh = 0usize;
    let first = (!stored.items.is_empty()).then_some(stored);
    for batch in first.into_iter().chain(rx.iter()) {
        held += batch.bytes;
        fresh += batch.bytes;
        since += batch.bytes as u64 * batch.every;
        samples.extend(batch.items);
        while held > sample_bytes {
            if let Some(old) = samples.pop_front() {
                held -= old.len();
            }
        }
        let due = match next {
            Next::First => fresh >= first_bytes,
            Next::Full => fresh >= sample_bytes,
            Next::Retrain => {
                RETRAIN_AFTER_BYTES > 0 && since >= RETRAIN_AFTER_BYTES && fresh >= sample_bytes
            }
        };
        if !due {
            continue;
        }
        fresh = 0;
        since = 0;
        let started = std::time::Instant::now();
        let dict_bytes = (held / SAMPLE_TO_DICT).clamp(256, DICT_BYTES_DEFAULT_MAX);
        let made = zstd::dict::from_samples(samples.make_contiguous(), dict_bytes)
            .map_err(|e| e.to_string())
            .and_then(Dict::new);
        match made {
            Ok(d) => {
                tracing::info!(
                    "Trained a compression dictionary of {} bytes from {} samples ({held} bytes) in {:.0?}; new segments use it.",
                    d.bytes().len(),
                    samples.len(),
                    started.elapsed()
                );
                *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(d));
                next = match next {
                    Next::First => Next::Full,
                    Next::Full | Next::Retrain => Next::Retrain,
                };
            }
            Err(e) => tracing::warn!(
                "Could not train a compression dictionary from {} samples: {e}; segments stay uncompressed until the next try.",
                samples.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::dict::tests::payloads;

    #[test]
    fn the_trainer_publishes_a_dictionary_from_enough_samples() {
        let mut t = Trainer::start(64 * 1024, Default::default(), Samples::default()).unwrap();
        assert!(t.newest().is_none());
        let ps = payloads(2, 2_000);
        for (_, rest) in &ps {
            t.offer(rest, SAMPLE_EVERY);
            t.flush();
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while t.newest().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let d = t.newest().expect("a dictionary");
        assert!(d.bytes().len() <= 64 * 1024 / SAMPLE_TO_DICT);
        drop(t);
        assert!(Trainer::start(0, Default::default(), Samples::default())
            .unwrap()
            .newest()
            .is_none());
    }
}
