//! `GET /v1/stream/ws`: the live stream over a WebSocket, for clients that
//! speak WebSocket rather than Server-Sent Events (browsers' `WebSocket`,
//! the dashboards of the applications Stele replaces).
//!
//! The stream itself is the one of `GET /v1/stream` ([`super::stream`]): the
//! same checks, filters, `from_seq` resume, chunked reads from the log,
//! limits and audit records. Only the framing differs:
//!
//! - each event is one text frame, the JSON of an SSE `data:` line (it
//!   carries its `seq`: reconnect with `from_seq` = last seq + 1);
//! - an idle stream sends a ping frame every
//!   [`super::STREAM_HEARTBEAT_SECS`] seconds;
//! - the server ends the stream with a close frame: 1001 (going away) when
//!   the daemon stops, 1011 (internal error) with the reason when reading
//!   the log failed. A client that reads nothing is cut off like an SSE
//!   client, by the write-stall timeout (`write_stall_timeout_secs`): the
//!   TCP connection is closed, as no close frame can reach a client that
//!   does not read.
//!
//! What the client sends is read only for its close frame (and answered
//! pings); other messages are ignored, and bounded to
//! [`CLIENT_MESSAGE_BYTES`].

use super::stream::{self, Framing, STREAM_CHUNKS_IN_FLIGHT};
use super::{App, Caller, Req, Resp};
use crate::event::StoredEvent;
use crate::query::QueryError;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use bytes::Bytes;
use futures_util::SinkExt;
use std::sync::Arc;
use std::time::Duration;

/// The largest message or frame a client may send (it has nothing to say
/// but close and pong).
const CLIENT_MESSAGE_BYTES: usize = 4096;

/// The most the socket's write buffer may hold. Frames are fed one at a
/// time and each waits until the buffer (128 KiB, axum's default) has been
/// written out, so it holds at most that plus one frame; one frame is one
/// event's JSON, and an event's worst-case JSON (every byte escaped) stays
/// well below 8 stored-event maxima. A write past it fails and ends the
/// connection rather than buffer more.
const WRITE_BUFFER_MAX: usize = 128 * 1024 + 8 * crate::event::EVENT_BYTES_MAX;

/// How long a close frame may take to go out.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The close frame's code when the daemon stops (1001, going away).
pub const CLOSE_STOPPING: u16 = 1001;

/// The close frame's code when reading the log failed (1011).
pub const CLOSE_FAILED: u16 = 1011;

/// `GET /v1/stream/ws`: opens the stream exactly as `GET /v1/stream` does
/// (every refusal is the same problem, before the upgrade) once the request
/// is known to be a WebSocket handshake, then answers 101 and feeds the
/// socket.
pub(super) async fn stream_ws(app: Arc<App>, req: Req, caller: Caller) -> Resp {
    // The parameters first: a bad one is named even without a handshake.
    let asked = match stream::parse(&app, &req) {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    // The connection's slot goes with the socket: an upgraded connection
    // still counts toward `connections_max` after hyper lets go of it.
    let slot = req
        .extensions()
        .get::<super::Received>()
        .map(|r| r.slot.clone());
    let (mut parts, _body) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(e) => {
            return super::problem::query_problem(QueryError::BadParam {
                param: "Upgrade".into(),
                message: format!(
                    "this route answers WebSocket handshakes only ({e}); \
                     Server-Sent Events are GET /v1/stream"
                ),
            })
        }
    };
    let opened = match stream::admit(&app, &caller, asked).await {
        Ok(o) => o,
        Err(refused) => return *refused,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS_IN_FLIGHT);
    let stopping = app.lifecycle.stopping.clone();
    // Fed from now on; if the upgrade never completes, `rx` is dropped and
    // the stream ends (its slots and end record with it).
    tokio::spawn(stream::run::<Ws>(opened, tx));
    let (switching, _empty) = upgrade
        .max_message_size(CLIENT_MESSAGE_BYTES)
        .max_frame_size(CLIENT_MESSAGE_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_MAX)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            pump(socket, rx, stopping).await
        })
        .into_parts();
    Resp::from_parts(switching, super::full(Bytes::new()))
}

/// The WebSocket framing: a chunk is one text frame per event.
struct Ws;

/// What the stream sends the socket.
enum WsMsg {
    /// One text frame each.
    Events(WsChunk),
    /// A ping frame.
    Ping,
    /// Reading the log failed: close with 1011 and this reason.
    Failed(String),
}

#[derive(Default)]
struct WsChunk {
    frames: Vec<String>,
    bytes: usize,
}

impl Framing for Ws {
    type Msg = WsMsg;
    type Chunk = WsChunk;
    fn push(chunk: &mut WsChunk, ev: &StoredEvent) -> usize {
        let frame = crate::event::to_json(ev);
        chunk.bytes += frame.len();
        chunk.frames.push(frame);
        chunk.bytes
    }
    fn is_empty(chunk: &WsChunk) -> bool {
        chunk.frames.is_empty()
    }
    fn events(chunk: WsChunk) -> WsMsg {
        WsMsg::Events(chunk)
    }
    fn opened() -> Option<WsMsg> {
        None
    }
    fn heartbeat() -> WsMsg {
        WsMsg::Ping
    }
    fn failed(detail: &str) -> WsMsg {
        WsMsg::Failed(detail.to_string())
    }
}

/// Moves the stream's messages onto the socket until the client leaves,
/// the stream ends or the daemon stops. Hyper's graceful shutdown no longer
/// sees an upgraded connection, so stopping is watched here: the socket
/// ends on SIGTERM like an SSE body, even while a write is blocked.
async fn pump(
    mut socket: WebSocket,
    mut rx: tokio::sync::mpsc::Receiver<WsMsg>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let end = tokio::select! {
        end = forward(&mut socket, &mut rx) => end,
        () = async { let _ = stopping.wait_for(|s| *s).await; } => End::Close(stopped()),
    };
    drop(rx); // the stream ends now, not when the close frame is out
    match end {
        End::Close(frame) => {
            let send = socket.send(Message::Close(Some(frame)));
            let _ = tokio::time::timeout(CLOSE_WAIT, send).await;
        }
        // The socket queued its answer to the client's close frame.
        End::Answer => {
            let _ = tokio::time::timeout(CLOSE_WAIT, socket.flush()).await;
        }
        End::Gone => {}
    }
}

/// How a socket ends.
enum End {
    /// The server closes with this frame.
    Close(CloseFrame),
    /// The client closed: answer its close frame.
    Answer,
    /// The connection failed or is gone: nothing to send.
    Gone,
}

fn stopped() -> CloseFrame {
    CloseFrame {
        code: CLOSE_STOPPING,
        reason: "stele is stopping; reconnect with from_seq".into(),
    }
}

/// The loop of [`pump`]; returns how the socket ends.
async fn forward(socket: &mut WebSocket, rx: &mut tokio::sync::mpsc::Receiver<WsMsg>) -> End {
    enum Step {
        Out(Option<WsMsg>),
        In(Option<Result<Message, axum::Error>>),
    }
    loop {
        // Both are cancel-safe: a message half read stays in the socket.
        let step = tokio::select! {
            m = rx.recv() => Step::Out(m),
            m = socket.recv() => Step::In(m),
        };
        match step {
            Step::Out(Some(WsMsg::Events(chunk))) => {
                for frame in chunk.frames {
                    if socket.feed(Message::Text(frame.into())).await.is_err() {
                        return End::Gone;
                    }
                }
                if socket.flush().await.is_err() {
                    return End::Gone;
                }
            }
            Step::Out(Some(WsMsg::Ping)) => {
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return End::Gone;
                }
            }
            Step::Out(Some(WsMsg::Failed(detail))) => {
                // A close reason is at most 123 bytes.
                let mut reason = detail;
                while reason.len() > 123 {
                    reason.pop();
                }
                return End::Close(CloseFrame {
                    code: CLOSE_FAILED,
                    reason: reason.into(),
                });
            }
            // The stream ended without failing: the daemon is stopping (or
            // its log closed).
            Step::Out(None) => return End::Close(stopped()),
            Step::In(Some(Ok(Message::Close(_)))) => return End::Answer,
            Step::In(Some(Err(_)) | None) => return End::Gone,
            Step::In(Some(Ok(_))) => {} // pings are answered by the socket itself
        }
    }
}
