//! `GET /v1/stream`: Server-Sent Events following the log.

use super::gate::record_start;
use super::params::{query_pairs, reject_params};
use super::problem::{problem, query_problem, Kind};
use super::{App, BodyError, Caller, ChannelBody, EndRecord, Held, Req, Resp};
use crate::query::{Query, QueryError};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Response, StatusCode};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Seconds between SSE heartbeat comments on an idle stream.
pub const STREAM_HEARTBEAT_SECS: u64 = 15;

/// Events read from the log (or matched in the text index) per step of a
/// stream.
const STREAM_READ_EVENTS: u64 = 512;

/// A step of a stream ends once its SSE text reaches this many bytes (the
/// rest of its events are read by the next step), so that a chunk holds
/// 64 KiB plus at most one event whatever the events' size.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks a stream may have waiting for its connection. With hyper's write
/// buffer this bounds what a client that stops reading costs: a few chunks,
/// not the events it falls behind by (the stream reads them from the log
/// when the client reads again).
const STREAM_CHUNKS_IN_FLIGHT: usize = 4;

/// Stream steps reading the log at once, each on a blocking thread: the
/// streams one append wakes take turns on a few threads instead of starting
/// one each (every blocking thread keeps its own allocator caches; measured
/// with 40 streams during a 20,000-event ingest in a debug build: 217 threads
/// and 631 MB peak RSS without this, 38 threads and 192 MB with it).
static STREAM_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// How often a full-text stream looks for newly searchable events.
const STREAM_TEXT_POLL: Duration = Duration::from_millis(100);

/// `GET /v1/stream`: Server-Sent Events. Every stream reads from the log by
/// seq (there is no live buffer to overflow): a slow consumer simply falls
/// behind and continues from the log, and a reconnect with `Last-Event-ID`
/// (or `from_seq`) resumes right after the last event it saw. With `q`, the
/// stream follows the full-text index instead (events arrive once
/// searchable, within the index commit interval), in the same seq order.
pub(super) async fn stream(app: Arc<App>, req: Req, caller: Caller) -> Resp {
    let mut pairs = query_pairs(&req);
    let mut from: Option<u64> = None;
    if let Some(i) = pairs.iter().position(|(k, _)| k == "from_seq") {
        let (_, v) = pairs.remove(i);
        match v.parse::<u64>() {
            Ok(s) => from = Some(s),
            Err(_) => {
                return query_problem(QueryError::BadParam {
                    param: "from_seq".into(),
                    message: "must be a seq (a whole number)".into(),
                })
            }
        }
    }
    if let Some(v) = req.headers().get("last-event-id") {
        match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(s) => from = Some(s.saturating_add(1)),
            None => {
                return query_problem(QueryError::BadParam {
                    param: "Last-Event-ID".into(),
                    message: "must be the id (seq) of an event this stream sent".into(),
                })
            }
        }
    }
    if let Some(r) = reject_params(
        &pairs,
        &["limit", "cursor", "sort", "order", "interval"],
        "a stream takes the filters, q and from_seq (it is in seq order); limit, cursor, sort, \
         order and interval do not apply",
    ) {
        return r;
    }
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    let key_slot = match &caller.key {
        Some(k) => match k.open_stream() {
            Some(s) => Some(s),
            None => {
                app.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                return problem(
                    Kind::TooManyKeyStreams,
                    format!(
                        "key {:?} has {} streams open, its most (streams_max); close one first",
                        k.id, k.streams_max
                    ),
                    json!({ "limit": k.streams_max }),
                );
            }
        },
        None => None,
    };
    // The slot is taken before the 200, so streams_max cannot be overrun.
    let (slot, open) = Held::take(&app, |a| &a.stats.streams_open);
    if open >= app.limits().streams_max as u64 {
        drop(slot);
        return problem(
            Kind::TooManyStreams,
            format!("{open} streams are open, the most allowed (streams_max); retry later"),
            json!({ "limit": app.limits().streams_max }),
        );
    }
    if q.filter.text.is_some() {
        // A malformed full-text query is a 400 now, not an error event later.
        if let Err(e) = app.engine.matching_after(&q.filter, Some(u64::MAX), 1) {
            return query_problem(e);
        }
    }
    let log = app.engine.log().clone();
    if let Some(f) = from.filter(|&f| f < log.first_seq() && f > 1) {
        return query_problem(QueryError::Gone {
            what: format!("the stream position (seq {f})"),
            first_seq: log.first_seq(),
        });
    }
    let next = from
        .unwrap_or_else(|| log.last_seq() + 1)
        .max(log.first_seq());
    if let Some(refused) = record_start(&app, &caller).await {
        return refused;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS_IN_FLIGHT);
    let end = EndRecord::new(&app, caller.access);
    tokio::spawn(run_stream((slot, key_slot), end, q, next, tx));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .body(ChannelBody(rx).boxed())
        .expect("valid response")
}

/// Feeds one stream from seq `next` on until the client leaves or the
/// daemon stops.
async fn run_stream(
    slots: (Held, Option<crate::auth::StreamSlot>),
    mut end: EndRecord,
    q: Query,
    mut next: u64,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, BodyError>>,
) {
    let app = slots.0.app.clone();
    let log = app.engine.log().clone();
    let text = q.filter.text.is_some();
    let mut durable = log.subscribe();
    let mut stopping = app.lifecycle.stopping.clone();
    let _ = tx.send(Ok(Bytes::from_static(b": stele stream\n\n"))).await;
    loop {
        if *stopping.borrow() {
            return; // the body ends cleanly: a stream has no end to reach
        }
        // What may be sent: durable events, and for full text, searchable ones.
        let last = if text {
            app.engine.indexes().indexed_seq()
        } else {
            log.last_seq()
        };
        if next <= last {
            let to = last.min(next + STREAM_READ_EVENTS - 1);
            let (app2, filter) = (app.clone(), q.filter.clone());
            let read = {
                let _turn = STREAM_READS.acquire().await; // never closed
                tokio::task::spawn_blocking(move || {
                    read_stream_step(&app2, &filter, text, next, to)
                })
                .await
            };
            match read {
                Ok(Ok((chunk, n, done))) => {
                    if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return; // the client went away
                    }
                    end.sent += n;
                    next = done + 1;
                }
                Ok(Err(e)) => {
                    let msg = format!("event: error\ndata: {}\n\n", json!({"detail": e}));
                    // The client learns why; the body then ends (a stream has
                    // no complete state to fake) and it may resume later
                    // with Last-Event-ID.
                    tracing::error!("A stream stopped: {e}.");
                    let _ = tx.send(Ok(Bytes::from(msg))).await;
                    return;
                }
                Err(_) => return,
            }
            continue;
        }
        let beat = tokio::time::sleep(Duration::from_secs(STREAM_HEARTBEAT_SECS));
        let poll = tokio::time::sleep(if text {
            STREAM_TEXT_POLL
        } else {
            Duration::MAX / 4
        });
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            _ = poll => {}
            _ = beat => {
                if tx.send(Ok(Bytes::from_static(b": heartbeat\n\n"))).await.is_err() {
                    return;
                }
            }
            _ = stopping.changed() => {}
            _ = tx.closed() => return,
        }
    }
}

/// The SSE text of the events with seq in `from..=to` that match, the number
/// of events in it, and the last seq it covers: `to`, or less once the text
/// reached [`STREAM_CHUNK_BYTES`].
fn read_stream_step(
    app: &App,
    filter: &crate::query::Filter,
    text: bool,
    from: u64,
    to: u64,
) -> Result<(String, u64, u64), String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut sent = 0;
    let mut emit = |ev: &crate::event::StoredEvent| {
        let _ = write!(out, "id: {}\nevent: audit\ndata: {}\n\n", ev.seq, json!(ev));
        sent += 1;
        out.len() >= STREAM_CHUNK_BYTES
    };
    let log = app.engine.log();
    if text {
        let seqs = app
            .engine
            .matching_after(filter, from.checked_sub(1), (to - from + 1) as usize)
            .map_err(|e| e.to_string())?;
        for seq in seqs.into_iter().filter(|s| *s <= to) {
            match log.get(seq) {
                Ok(Some(ev)) => {
                    if emit(&ev) {
                        return Ok((out, sent, seq));
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    } else {
        for ev in log.range(from..=to, crate::log::Direction::Forward) {
            let ev = ev.map_err(|e| e.to_string())?;
            if filter.matches_fields(&ev) && emit(&ev) {
                return Ok((out, sent, ev.seq));
            }
        }
    }
    Ok((out, sent, to))
}
