//! Live streams following the log: the core both transports share (checks,
//! filters, resume by seq, reading in bounded chunks, heartbeats, stopping,
//! the audit records) and `GET /v1/stream`, its Server-Sent Events
//! transport. The WebSocket transport is [`super::stream_ws`].

use super::gate::record_start;
use super::params::{query_pairs, reject_params};
use super::problem::{problem, query_problem, Kind};
use super::{App, BodyError, Caller, ChannelBody, EndRecord, Held, Req, Resp};
use crate::event::StoredEvent;
use crate::query::{Query, QueryError};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Response, StatusCode};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Seconds between heartbeats on an idle stream (SSE comments, WebSocket
/// pings).
pub const STREAM_HEARTBEAT_SECS: u64 = 15;

/// Events read from the log (or matched in the text index) per step of a
/// stream.
const STREAM_READ_EVENTS: u64 = 512;

/// A step of a stream ends once its framed text reaches this many bytes (the
/// rest of its events are read by the next step), so that a chunk holds
/// 64 KiB plus at most one event whatever the events' size.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// Events of a stream with `q` read from the log at once ([`crate::log::Log::get_many`]):
/// about a chunk's worth of typical events, so that a chunk ending early
/// wastes little of a read.
const STREAM_READ_BATCH: usize = 128;

/// Chunks a stream may have waiting for its connection (either transport). With hyper's write
/// buffer this bounds what a client that stops reading costs: a few chunks,
/// not the events it falls behind by (the stream reads them from the log
/// when the client reads again).
pub(super) const STREAM_CHUNKS_IN_FLIGHT: usize = 4;

/// Stream steps reading the log at once, each on a blocking thread: the
/// streams one append wakes take turns on a few threads instead of starting
/// one each (every blocking thread keeps its own allocator caches; measured
/// with 40 streams during a 20,000-event ingest in a debug build: 217 threads
/// and 631 MB peak RSS without this, 38 threads and 192 MB with it).
static STREAM_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// How often a full-text stream looks for newly searchable events.
const STREAM_TEXT_POLL: Duration = Duration::from_millis(100);

/// A stream that passed its checks: its slots held (the gauge and the
/// key's), its start recorded, its filter and first seq decided. Both
/// transports open a stream with [`open`] and feed it with [`run`].
pub(super) struct Opened {
    slots: (Held, Option<crate::auth::StreamSlot>),
    end: EndRecord,
    q: Query,
    next: u64,
}

/// How a transport frames what [`run`] reads: the SSE text of
/// `GET /v1/stream`, the WebSocket frames of `GET /v1/stream/ws`.
pub(super) trait Framing: Send + 'static {
    /// What travels on the channel to the connection.
    type Msg: Send + 'static;
    /// The framed events of one read step.
    type Chunk: Default + Send + 'static;
    /// Adds one event to `chunk`; returns the chunk's size in bytes.
    fn push(chunk: &mut Self::Chunk, ev: &StoredEvent) -> usize;
    /// Whether `chunk` holds no event.
    fn is_empty(chunk: &Self::Chunk) -> bool;
    /// The message carrying a chunk.
    fn events(chunk: Self::Chunk) -> Self::Msg;
    /// What is sent first, if anything.
    fn opened() -> Option<Self::Msg>;
    /// What is sent on an idle stream every [`STREAM_HEARTBEAT_SECS`].
    fn heartbeat() -> Self::Msg;
    /// The last message when reading the log failed.
    fn failed(detail: &str) -> Self::Msg;
}

/// `GET /v1/stream`: Server-Sent Events. Every stream reads from the log by
/// seq (there is no live buffer to overflow): a slow consumer simply falls
/// behind and continues from the log, and a reconnect with `Last-Event-ID`
/// (or `from_seq`) resumes right after the last event it saw. With `q`, the
/// stream follows the full-text index instead (events arrive once
/// searchable, within the index commit interval), in the same seq order.
pub(super) async fn stream(app: Arc<App>, req: Req, caller: Caller) -> Resp {
    let opened = match open(&app, req, &caller).await {
        Ok(o) => o,
        Err(refused) => return *refused,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS_IN_FLIGHT);
    tokio::spawn(run::<Sse>(opened, tx));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .body(ChannelBody(rx).boxed())
        .expect("valid response")
}

/// SSE: `id:`/`event: audit`/`data:` per event, comments as heartbeats, an
/// `error` event when reading fails.
struct Sse;

impl Framing for Sse {
    type Msg = Result<Bytes, BodyError>;
    type Chunk = String;
    fn push(out: &mut String, ev: &StoredEvent) -> usize {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "id: {}\nevent: audit\ndata: {}\n\n",
            ev.seq,
            crate::event::to_json(ev)
        );
        out.len()
    }
    fn is_empty(chunk: &String) -> bool {
        chunk.is_empty()
    }
    fn events(chunk: String) -> Self::Msg {
        Ok(Bytes::from(chunk))
    }
    fn opened() -> Option<Self::Msg> {
        Some(Ok(Bytes::from_static(b": stele stream\n\n")))
    }
    fn heartbeat() -> Self::Msg {
        Ok(Bytes::from_static(b": heartbeat\n\n"))
    }
    fn failed(detail: &str) -> Self::Msg {
        // The client learns why; the body then ends (a stream has no
        // complete state to fake) and it may resume later with
        // Last-Event-ID.
        let msg = format!("event: error\ndata: {}\n\n", json!({ "detail": detail }));
        Ok(Bytes::from(msg))
    }
}

/// What a stream request asks for: its query and where it starts.
pub(super) struct Asked {
    q: Query,
    from: Option<u64>,
}

/// The checks every stream passes before its first byte, whatever its
/// transport: [`parse`], then [`admit`]. `Err` is the refusal to send.
pub(super) async fn open(app: &Arc<App>, req: Req, caller: &Caller) -> Result<Opened, Box<Resp>> {
    let asked = parse(app, &req)?;
    admit(app, caller, asked).await
}

/// A stream's parameters: `from_seq`, `Last-Event-ID`, the filters and `q`.
pub(super) fn parse(app: &App, req: &Req) -> Result<Asked, Box<Resp>> {
    let mut pairs = query_pairs(req);
    let mut from: Option<u64> = None;
    if pairs.iter().filter(|(k, _)| k == "from_seq").count() > 1 {
        return Err(Box::new(query_problem(QueryError::BadParam {
            param: "from_seq".into(),
            message: "given more than once".into(),
        })));
    }
    if let Some(i) = pairs.iter().position(|(k, _)| k == "from_seq") {
        let (_, v) = pairs.remove(i);
        match v.parse::<u64>() {
            Ok(s) => from = Some(s),
            Err(_) => {
                return Err(Box::new(query_problem(QueryError::BadParam {
                    param: "from_seq".into(),
                    message: "must be a seq: a whole number from 0 to 18446744073709551615".into(),
                })))
            }
        }
    }
    if let Some(v) = req.headers().get("last-event-id") {
        match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(s) => from = Some(s.saturating_add(1)),
            None => {
                return Err(Box::new(query_problem(QueryError::BadParam {
                    param: "Last-Event-ID".into(),
                    message: "must be the id (seq) of an event this stream sent: a whole \
                              number from 0 to 18446744073709551615"
                        .into(),
                })))
            }
        }
    }
    if let Some(r) = reject_params(
        &pairs,
        &["limit", "cursor", "sort", "order", "interval"],
        "a stream takes the filters, q and from_seq (it is in seq order); limit, cursor, sort, \
         order and interval do not apply",
    ) {
        return Err(Box::new(r));
    }
    match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => Ok(Asked { q, from }),
        Err(e) => Err(Box::new(query_problem(e))),
    }
}

/// Admits a parsed stream: the caller's tenants, the key's and the
/// daemon's stream limits, a valid full-text query, a resume point still
/// in the log, and the durable start record.
pub(super) async fn admit(
    app: &Arc<App>,
    caller: &Caller,
    asked: Asked,
) -> Result<Opened, Box<Resp>> {
    let Asked { mut q, from } = asked;
    caller.restrict(&mut q.filter);
    let key_slot = match &caller.key {
        Some(k) => match k.open_stream() {
            Some(s) => Some(s),
            None => {
                app.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Err(Box::new(problem(
                    Kind::TooManyKeyStreams,
                    format!(
                        "key {:?} has {} streams open, its most (streams_max); close one first",
                        k.id, k.streams_max
                    ),
                    json!({ "limit": k.streams_max }),
                )));
            }
        },
        None => None,
    };
    // The slot is taken before the 200, so streams_max cannot be overrun.
    let (slot, open) = Held::take(app, |a| &a.stats.streams_open);
    if open >= app.limits().streams_max as u64 {
        drop(slot);
        return Err(Box::new(problem(
            Kind::TooManyStreams,
            format!("{open} streams are open, the most allowed (streams_max); retry later"),
            json!({ "limit": app.limits().streams_max }),
        )));
    }
    if q.filter.text.is_some() {
        // A malformed full-text query is a 400 now, not an error event later.
        if let Err(e) = app.engine.matching_after(&q.filter, Some(u64::MAX), 1) {
            return Err(Box::new(query_problem(e)));
        }
    }
    let log = app.engine.log().clone();
    if let Some(f) = from.filter(|&f| f < log.first_seq() && f > 1) {
        return Err(Box::new(query_problem(QueryError::Gone {
            what: format!("the stream position (seq {f})"),
            first_seq: log.first_seq(),
        })));
    }
    let next = from
        .unwrap_or_else(|| log.last_seq() + 1)
        .max(log.first_seq());
    if let Some(refused) = record_start(app, caller).await {
        return Err(Box::new(refused));
    }
    let end = EndRecord::new(app, caller.access.clone());
    Ok(Opened {
        slots: (slot, key_slot),
        end,
        q,
        next,
    })
}

/// Feeds one stream from its first seq on, framed by `F`, until the client
/// leaves (`tx` closes) or the daemon stops (`tx` is dropped: the
/// transport ends the connection). At most [`STREAM_CHUNKS_IN_FLIGHT`]
/// chunks wait in `tx`; a client that falls behind is read for from the log
/// again, never buffered for.
pub(super) async fn run<F: Framing>(opened: Opened, tx: tokio::sync::mpsc::Sender<F::Msg>) {
    let Opened {
        slots,
        mut end,
        q,
        mut next,
    } = opened;
    let app = slots.0.app.clone();
    let log = app.engine.log().clone();
    let text = q.filter.text.is_some();
    let mut durable = log.subscribe();
    let mut stopping = app.lifecycle.stopping.clone();
    if let Some(first) = F::opened() {
        let _ = tx.send(first).await;
    }
    loop {
        if *stopping.borrow() {
            return; // a stream has no end to reach: it stops with the daemon
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
                    read_stream_step::<F>(&app2, &filter, text, next, to)
                })
                .await
            };
            match read {
                Ok(Ok((chunk, n, done))) => {
                    if !F::is_empty(&chunk) && tx.send(F::events(chunk)).await.is_err() {
                        return; // the client went away
                    }
                    end.sent += n;
                    next = done + 1;
                }
                Ok(Err(e)) => {
                    tracing::error!("A stream stopped: {e}.");
                    let _ = tx.send(F::failed(&e)).await;
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
                if tx.send(F::heartbeat()).await.is_err() {
                    return;
                }
            }
            _ = stopping.changed() => {}
            _ = tx.closed() => return,
        }
    }
}

/// The framed events with seq in `from..=to` that match, the number of
/// events in it, and the last seq it covers: `to`, or less once the chunk
/// reached [`STREAM_CHUNK_BYTES`].
fn read_stream_step<F: Framing>(
    app: &App,
    filter: &crate::query::Filter,
    text: bool,
    from: u64,
    to: u64,
) -> Result<(F::Chunk, u64, u64), String> {
    let mut out = F::Chunk::default();
    let mut sent = 0;
    let mut emit = |ev: &StoredEvent| {
        sent += 1;
        F::push(&mut out, ev) >= STREAM_CHUNK_BYTES
    };
    let log = app.engine.log();
    if text {
        let seqs = app
            .engine
            .matching_after(filter, from.checked_sub(1), (to - from + 1) as usize)
            .map_err(|e| e.to_string())?;
        let seqs: Vec<u64> = seqs.into_iter().filter(|s| *s <= to).collect();
        // Read as pages are (one walk per block of records, the newest copied
        // from the tail), a bounded batch at a time: a chunk may end early.
        for batch in seqs.chunks(STREAM_READ_BATCH) {
            for ev in log.get_many(batch).map_err(|e| e.to_string())? {
                if emit(&ev) {
                    return Ok((out, sent, ev.seq));
                }
            }
        }
    } else {
        // From the log's tail in memory while the stream keeps up.
        for run in log.follow_range(from, to) {
            for ev in run.map_err(|e| e.to_string())?.iter() {
                if filter.matches_fields(ev) && emit(ev) {
                    return Ok((out, sent, ev.seq));
                }
            }
        }
    }
    Ok((out, sent, to))
}
