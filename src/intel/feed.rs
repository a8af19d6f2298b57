//! The feed: the one reader of the log that keeps derived views current.
//!
//! Owns the `stele-intel-feed` thread. At start it finds the first seq
//! received within the horizon (a binary search on `received_at`, which
//! never decreases with seq) and replays the log from there; then it
//! follows the tail, woken by the log's durable seq. It is never on ingest's
//! path: it reads durable events only, behind the writer.
//!
//! Interface for views (the run trackers and the detectors): an
//! [`Observer`] is handed every event of the log from the horizon on,
//! exactly once, in seq order, in batches of at most [`FEED_BATCH_EVENTS`]
//! (so it takes its lock once a batch, never across the feed's reads);
//! [`Observer::tick`] is called with the clock's time at least every
//! [`TICK_SECS`] seconds (expiry). Observers filter what they do not want
//! themselves and must not block: they run on the feed's thread.
//!
//! Why the log and not the full-text index for the replay: the log gives
//! the horizon's events in seq order with one sequential read and no index
//! lag, and the replay then continues seamlessly into the tail. It reads
//! every event of the horizon once (run events or not), in the background
//! while the daemon serves; [`FeedStatus::caught_up`] says when answers
//! cover the whole horizon. An index query for events that have a
//! `process_id` or a `batch_id` would read fewer events when they are rare,
//! but gives them out of seq order and only up to the index's commit.
//!
//! Read errors are logged and retried after a pause, never skipped: a view
//! never misses an event that the log still holds. Events retention drops
//! before the feed reads them are not observed.

use crate::clock::Clock;
use crate::event::StoredEvent;
use crate::log::Log;
use crate::seal::worker::Worker;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Events handed to the observers at once (bounds the feed's memory).
pub const FEED_BATCH_EVENTS: u64 = 256;
/// Seconds between ticks at most.
pub const TICK_SECS: u64 = 60;
/// How long the feed waits for new events before checking its stop signal.
const WAIT: Duration = Duration::from_millis(200);
/// The pause after a read error.
const RETRY: Duration = Duration::from_secs(1);

/// A view the feed keeps current (see the module doc).
pub trait Observer: Send + Sync {
    /// The next events of the log, in seq order, each once.
    fn observe(&self, events: &[&StoredEvent]);
    /// The clock's time (µs), for expiry.
    fn tick(&self, _now: i64) {}
}

/// What the feed has done, for answers and `/metrics`.
#[derive(Debug, Default)]
pub struct FeedStatus {
    /// The last seq handed to the observers (0: none).
    pub seq: AtomicU64,
    /// The first seq replayed (the horizon's start).
    pub from_seq: AtomicU64,
    /// Whether the replay reached the log's last seq as of the start.
    pub caught_up: AtomicBool,
    /// Failed reads (retried).
    pub read_errors: AtomicU64,
}

impl FeedStatus {
    /// Whether the views cover the whole horizon.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }
}

/// Starts the feed over `log` for events received since `now − horizon`.
///
/// # Errors
/// The thread could not be spawned.
pub fn start(
    log: Arc<Log>,
    clock: Arc<dyn Clock>,
    horizon_micros: i64,
    observers: Vec<Arc<dyn Observer>>,
    status: Arc<FeedStatus>,
) -> std::io::Result<Worker> {
    Worker::spawn("stele-intel-feed", move |stop| {
        let since = clock.now_micros().saturating_sub(horizon_micros);
        let from = first_seq_since(&log, since);
        status.from_seq.store(from, Ordering::Relaxed);
        tracing::info!(
            "The activity feed replays the log from seq {from} (received within the last {} \
             hours) to {}.",
            horizon_micros / 3_600_000_000,
            log.last_seq()
        );
        follow(&log, &*clock, from, &observers, &status, &stop);
    })
}

/// The first seq whose `received_at` is at least `since` (the log's last
/// seq + 1 when none is). On a read error, the log's first seq: replaying
/// more is slower, never wrong.
pub fn first_seq_since(log: &Log, since: i64) -> u64 {
    let (mut lo, mut hi) = (log.first_seq(), log.last_seq() + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match log.get(mid) {
            Ok(Some(ev)) if ev.received_at >= since => hi = mid,
            Ok(_) => lo = mid + 1, // older, or dropped by retention meanwhile
            Err(e) => {
                tracing::warn!("The activity feed replays the whole log: a read failed: {e}.");
                return log.first_seq();
            }
        }
    }
    lo
}

/// Whether the stop signal came (or `d` passed: `false`).
fn stopped(stop: &Receiver<()>, d: Duration) -> bool {
    !matches!(stop.recv_timeout(d), Err(RecvTimeoutError::Timeout))
}

/// Hands every event from `next` on to the observers until stopped.
fn follow(
    log: &Log,
    clock: &dyn Clock,
    mut next: u64,
    observers: &[Arc<dyn Observer>],
    status: &FeedStatus,
    stop: &Receiver<()>,
) {
    let target = log.last_seq();
    let mut ticked = clock.now_micros();
    loop {
        if stopped(stop, Duration::ZERO) {
            return;
        }
        let now = clock.now_micros();
        if now - ticked >= (TICK_SECS as i64) * 1_000_000 {
            observers.iter().for_each(|o| o.tick(now));
            ticked = now;
        }
        let last = log.last_seq();
        if next > last {
            status.caught_up.store(true, Ordering::Release);
            log.wait_durable_after(last, WAIT);
            continue;
        }
        let lo = next.max(log.first_seq());
        // From the log's tail in memory while the feed keeps up.
        match log.follow(lo, FEED_BATCH_EVENTS as usize) {
            Ok(runs) => {
                let Some(hi) = runs.last().and_then(|r| r.last()).map(|e| e.seq) else {
                    next = lo; // past the end: retention dropped everything up to it
                    continue;
                };
                // One batch for all the runs (one per append request):
                // observers lock once a batch, not once a request.
                let batch: Vec<&StoredEvent> = runs.iter().flat_map(|r| r.iter()).collect();
                observers.iter().for_each(|o| o.observe(&batch));
                status.seq.store(hi, Ordering::Release);
                next = hi + 1;
                if hi >= target {
                    status.caught_up.store(true, Ordering::Release);
                }
                // A long replay keeps a bounded resident set.
                let _ = log.release(lo, hi);
            }
            Err(crate::log::Error::Dropped { .. }) => {} // retention: from the new first seq
            Err(e) => {
                status.read_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "The activity feed could not read from seq {lo}: {e}; retrying in {}s.",
                    RETRY.as_secs()
                );
                if stopped(stop, RETRY) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::event::Provenance;
    use crate::log::LogConfig;
    use crate::sync::Recover;
    use crate::testkit::{EventGen, DEFAULT_BASE_TIME};
    use std::sync::Mutex;

    const HOUR: i64 = 3_600_000_000;

    /// Records the seqs it is handed and the ticks.
    #[derive(Default)]
    struct Seen(Mutex<Vec<u64>>);

    impl Observer for Seen {
        fn observe(&self, events: &[&StoredEvent]) {
            assert!(events.len() as u64 <= FEED_BATCH_EVENTS);
            self.0.exclusive().extend(events.iter().map(|e| e.seq));
        }
    }

    fn wait_for(seen: &Seen, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while seen.0.exclusive().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                seen.0.exclusive()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_feed_replays_the_horizon_then_follows_the_tail_each_event_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(DEFAULT_BASE_TIME));
        let cfg = LogConfig {
            segment_bytes_max: 4096,
            ..LogConfig::default()
        };
        let log = Arc::new(Log::open(dir.path(), cfg, clock.clone()).unwrap());
        let mut gen = EventGen::new(3);
        let mut append = |n: usize| {
            let batch: Vec<_> = (0..n).map(|_| gen.sized(400)).collect();
            log.append(&batch, &Provenance::cli()).unwrap();
        };
        append(300); // seqs 1..=300, received at T0
        clock.advance(10 * HOUR);
        append(400); // seqs 301..=700, at T0 + 10 h
        clock.advance(HOUR);
        // Received since T0 + 3 h: from seq 301 (and nothing when all is older).
        assert_eq!(first_seq_since(&log, DEFAULT_BASE_TIME + 3 * HOUR), 301);
        assert_eq!(first_seq_since(&log, DEFAULT_BASE_TIME - HOUR), 1);
        assert_eq!(first_seq_since(&log, DEFAULT_BASE_TIME + 12 * HOUR), 701);
        let seen = Arc::new(Seen::default());
        let status = Arc::new(FeedStatus::default());
        let worker = start(
            log.clone(),
            clock.clone(),
            8 * HOUR,
            vec![seen.clone()],
            status.clone(),
        )
        .unwrap();
        wait_for(&seen, 400);
        assert!(status.caught_up());
        assert_eq!(status.from_seq.load(Ordering::Relaxed), 301);
        append(50); // the tail: seqs 701..=750
        wait_for(&seen, 450);
        worker.stop();
        let got = seen.0.exclusive().clone();
        assert_eq!(got, (301..=750).collect::<Vec<u64>>());
        assert_eq!(status.seq.load(Ordering::Relaxed), 750);
    }
}
