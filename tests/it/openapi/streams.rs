//! Stream operations: which operations are SSE or WebSocket, the WebSocket
//! handshake, and checking a stream's head and first event against
//! `x-stele-sse-events`.

use super::*;

pub(super) fn is_sse(spec: &Spec, op: &Op) -> bool {
    spec.doc
        .pointer(&format!("{}/responses/200/content", op.pointer))
        .and_then(Value::as_object)
        .is_some_and(|c| c.keys().any(|m| essence(m) == "text/event-stream"))
}

/// Whether the operation answers a WebSocket handshake (a documented 101).
pub(super) fn is_websocket(spec: &Spec, op: &Op) -> bool {
    spec.doc
        .pointer(&format!("{}/responses/101", op.pointer))
        .is_some()
}

/// `req` as a WebSocket handshake (RFC 6455 section 4.1).
pub(super) fn handshake(req: Req) -> Req {
    req.header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
}

/// What a stream request must deliver beyond a valid head.
pub(super) enum StreamWant {
    /// Only the head and the opening comment.
    Head,
    /// The first data event, with its `id` at least this.
    Data { min_id: u64, exact_id: Option<u64> },
}

impl Checker<'_> {
    /// Opens a stream request and checks its head, then (per `want`) its
    /// first data event against `x-stele-sse-events`.
    /// A WebSocket handshake must be switched: 101 with `Upgrade:
    /// websocket` (the frames are tested in `stream_ws`).
    pub(super) fn websocket(&mut self, op: &Op, req: &Req) {
        let ctx = format!("{} ({})", op.label(), req.describe());
        let conn = match Conn::open(&self.addr, req, Duration::from_secs(20)) {
            Ok(c) => c,
            Err(e) => return self.fail(&ctx, format!("no HTTP answer: {e}")),
        };
        if conn.status != 101 {
            match conn.finish() {
                Ok(resp) => {
                    self.check(op, &ctx, &resp, &Expect::default());
                    let text = preview(&resp.text());
                    self.fail(&ctx, format!("expected 101, got {}: {text}", resp.status));
                }
                Err(e) => self.fail(&ctx, e),
            }
            return;
        }
        self.seen.insert((op.label(), 101));
        self.checked += 1;
        if !conn
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        {
            self.fail(&ctx, "a 101 without `Upgrade: websocket`");
        }
    }

    pub(super) fn stream(&mut self, op: &Op, req: &Req, want: StreamWant) {
        let ctx = format!("{} ({})", op.label(), req.describe());
        let conn = match Conn::open(&self.addr, req, Duration::from_secs(20)) {
            Ok(c) => c,
            Err(e) => return self.fail(&ctx, format!("no HTTP answer: {e}")),
        };
        let sse = conn
            .header("content-type")
            .is_some_and(|c| essence(c) == "text/event-stream");
        if conn.status != 200 || !sse {
            match conn.finish() {
                Ok(resp) => {
                    self.check(op, &ctx, &resp, &Expect::default());
                    if resp.status == 200 {
                        self.fail(&ctx, "a 200 stream is not text/event-stream");
                    } else {
                        self.fail(
                            &ctx,
                            format!("expected a stream, got {}: {}", resp.status, resp.text()),
                        );
                    }
                }
                Err(e) => self.fail(&ctx, e),
            }
            return;
        }
        // Check the head against the spec with an empty body stand-in.
        self.seen.insert((op.label(), 200));
        self.checked += 1;
        let pointer = self.response_for(op, 200).expect("200 documented");
        let spec = self.spec;
        let obj = spec.at(&pointer);
        if let Some(headers) = obj.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                let (hp, h) = spec.deref(&format!("{pointer}/headers/{}", esc(name)));
                match conn.header(name) {
                    None if h["required"].as_bool().unwrap_or(false) => {
                        self.fail(&ctx, format!("the required header {name} is missing"))
                    }
                    None => {}
                    Some(v) => {
                        if let Err(e) = spec.validate(&format!("{hp}/schema"), &json!(v)) {
                            self.fail(&ctx, format!("header {name}: {e}"));
                        }
                    }
                }
            }
        }
        let media = obj["content"]
            .as_object()
            .unwrap()
            .keys()
            .find(|m| essence(m) == "text/event-stream")
            .unwrap()
            .clone();
        let events = format!("{pointer}/content/{}/x-stele-sse-events", esc(&media));
        if !conn.chunked() {
            return self.fail(&ctx, "the stream is not chunked");
        }
        let mut r = conn.into_sse();
        match r.next(SSE_WAIT) {
            Ok(first) if first.data.is_empty() && !first.comments.is_empty() => {}
            Ok(first) => self.fail(
                &ctx,
                format!("the stream does not open with a comment: {first:?}"),
            ),
            Err(e) => return self.fail(&ctx, format!("reading the opening comment: {e}")),
        }
        let StreamWant::Data { min_id, exact_id } = want else {
            return;
        };
        let ev = match r.next_data(SSE_WAIT) {
            Ok(ev) => ev,
            Err(e) => return self.fail(&ctx, format!("no data event arrived: {e}")),
        };
        let name = ev.event.clone().unwrap_or_else(|| "message".into());
        let Some(schema) = spec
            .at(&events)
            .get(&name)
            .map(|_| format!("{events}/{}", esc(&name)))
        else {
            return self.fail(&ctx, format!("SSE event name {name:?} is not documented"));
        };
        let data: Value = match serde_json::from_str(&ev.data.join("\n")) {
            Ok(v) => v,
            Err(e) => return self.fail(&ctx, format!("SSE data is not JSON ({e}): {ev:?}")),
        };
        if let Err(e) = spec.validate(&schema, &data) {
            self.fail(&ctx, format!("SSE `{name}` data {e}"));
        }
        if name == "audit" {
            let id: Option<u64> = ev.id.as_deref().and_then(|i| i.parse().ok());
            if id.is_none() || id != data["seq"].as_u64() {
                self.fail(
                    &ctx,
                    format!("SSE id {:?} is not the event's seq {}", ev.id, data["seq"]),
                );
            }
            if id.is_some_and(|i| i < min_id) || exact_id.is_some_and(|x| id != Some(x)) {
                self.fail(
                    &ctx,
                    format!("the first event has id {:?}; expected at least {min_id} (exactly {exact_id:?})", ev.id),
                );
            }
        }
    }
}
