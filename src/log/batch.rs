//! An append request's events, encoded for the writer beside their stored
//! form.
//!
//! Owns [`Batch`] (what the writer appends: the bincode bodies back to
//! back, with the provenance after each, and the [`StoredEvent`]s the tail
//! will hold once durable) and [`prepare`], which checks a request against
//! the log's limits. Runs on the caller's thread, so the writer, which every
//! append waits on, only frames, compresses and stamps.

use super::error::{Error, Result};
use super::{format, Appended, LogConfig, Run};
use crate::event::{self, Event, Provenance, StoredEvent};
use tokio::sync::oneshot;

/// Events encoded by the caller, ready for the writer.
pub(super) struct Batch {
    /// The bincode encodings of the events, back to back.
    pub bodies: Vec<u8>,
    /// Where each event's encoding ends in `bodies`.
    pub ends: Vec<u32>,
    /// The events as they will be stored, for the tail once durable (their
    /// provenance set, their seq and time stamped by the writer).
    pub stored: Vec<StoredEvent>,
}

/// The writer's reply to an append: the receipt, and the events as stored.
pub(super) type Reply = oneshot::Sender<Result<(Appended, Run)>>;

/// `events` encoded for the writer, each stamped with the provenance `by`,
/// within `cfg`'s limits.
pub(super) fn prepare(cfg: &LogConfig, events: Vec<Event>, by: &Provenance) -> Result<Batch> {
    if events.is_empty() || events.len() > cfg.batch_events_max {
        return Err(Error::LimitExceeded {
            what: "events per append",
            got: events.len() as u64,
            max: cfg.batch_events_max as u64,
        });
    }
    if by.check().is_err() {
        // Set by Stele, never by a client: a bug if it ever fires.
        return Err(Error::LimitExceeded {
            what: "provenance bytes (ingested_by 1 to 64, client_addr up to 64)",
            got: (by.ingested_by.len() + by.client_addr.as_ref().map_or(0, String::len)) as u64,
            max: (event::INGESTED_BY_BYTES_MAX + event::CLIENT_ADDR_BYTES_MAX) as u64,
        });
    }
    // Every event of a request has the same provenance: encode it once.
    let mut provenance = Vec::with_capacity(80);
    event::encode_provenance(by, &mut provenance);
    let mut bodies = Vec::with_capacity(events.len() * (512 + provenance.len()));
    let mut ends = Vec::with_capacity(events.len());
    let n = events.len();
    let mut stored = Vec::with_capacity(n);
    for ev in events {
        let start = bodies.len();
        event::encode_event(&ev, &mut bodies);
        let len = bodies.len() - start;
        if len > event::EVENT_BYTES_MAX {
            return Err(Error::LimitExceeded {
                what: "encoded event bytes",
                got: len as u64,
                max: event::EVENT_BYTES_MAX as u64,
            });
        }
        bodies.extend_from_slice(&provenance);
        ends.push(bodies.len() as u32);
        // The seq and time are the writer's to stamp.
        stored.push(StoredEvent {
            seq: 0,
            received_at: 0,
            event: ev,
            provenance: Some(by.clone()),
        });
    }
    // One request always fits in one write, so a torn write never spans
    // more than the torn window.
    let framed =
        bodies.len() + n * (format::RECORD_OVERHEAD_BYTES + crate::event::STORED_PREFIX_BYTES_MAX);
    if framed > cfg.write_bytes_max {
        return Err(Error::LimitExceeded {
            what: super::BYTES_PER_APPEND,
            got: framed as u64,
            max: cfg.write_bytes_max as u64,
        });
    }
    Ok(Batch {
        bodies,
        ends,
        stored,
    })
}
