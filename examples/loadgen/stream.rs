//! Scenario `stream`: delivery latency of `GET /v1/stream` (SSE) or
//! `/v1/stream/ws` after the 201 of each posted event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use stele::testkit::EventGen;
use tokio::sync::mpsc;

use crate::client::{hist, record, Client, Tally, Timing};
use crate::common::{base_time, connect, find, lock};
use crate::daemon::Ctx;
use crate::gen::{next_event, to_json};
use crate::report::{quantile_ms, verdict, Report};
use crate::{Opts, JSON, POLL_EVERY, REQUEST_TIMEOUT, STREAM_DRAIN};

#[derive(Default)]
pub struct SseOut {
    pub events: u64,
    pub malformed: u64,
    pub duplicates: u64,
    pub comments: u64,
    pub ended: Option<String>,
}

/// Reads `GET /v1/stream`, recording when each seq arrived. Signals `ready` once the
/// stream is open (its start position is then fixed), stops when `stop` flips.
pub async fn sse_reader(
    ctx: Ctx,
    arrivals: Arc<Mutex<HashMap<u64, Instant>>>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> SseOut {
    let mut out = SseOut::default();
    let opened = async {
        let mut sender = connect(ctx.addr).await?;
        let mut req = Request::builder()
            .method(Method::GET)
            .uri("/v1/stream")
            .header("host", &ctx.host)
            .header("accept", "text/event-stream");
        if let Some(a) = &ctx.authorization {
            req = req.header("authorization", a);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| "GET /v1/stream: no answer".to_owned())?
            .map_err(|e| format!("GET /v1/stream: {e}"))?;
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if resp.status() != StatusCode::OK || !ctype.starts_with("text/event-stream") {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(format!(
                "GET /v1/stream answered {status} ({ctype}): {body}"
            ));
        }
        // Keep the sender alive with the body: dropping it may close the connection.
        Ok((sender, resp.into_body()))
    }
    .await;
    let (_sender, mut body) = match opened {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            out.ended = Some(e);
            return out;
        }
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = stop.changed() => return out,
        };
        let now = Instant::now();
        match frame {
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    buf.extend_from_slice(&data);
                    while let Some(pos) = find(&buf, b"\n\n") {
                        let block: Vec<u8> = buf.drain(..pos + 2).collect();
                        sse_block(&block, now, &arrivals, &mut out);
                    }
                }
            }
            Some(Err(e)) => {
                out.ended = Some(format!("the stream failed: {e}"));
                return out;
            }
            None => {
                out.ended = Some("the daemon ended the stream".into());
                return out;
            }
        }
    }
}

/// Reads `GET /v1/stream/ws` on this (blocking) thread, recording when each seq
/// arrived: each text frame is one event's JSON, with its `seq`. Like [`sse_reader`].
pub fn ws_reader(
    ctx: &Ctx,
    arrivals: &Mutex<HashMap<u64, Instant>>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> SseOut {
    use tungstenite::client::IntoClientRequest;
    let mut out = SseOut::default();
    let opened = (|| {
        let tcp = std::net::TcpStream::connect(ctx.addr).map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut req = format!("ws://{}/v1/stream/ws", ctx.host)
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if let Some(a) = &ctx.authorization {
            req.headers_mut()
                .insert("authorization", a.parse().map_err(|_| "a bad key")?);
        }
        let (ws, _) =
            tungstenite::client(req, tcp).map_err(|e| format!("GET /v1/stream/ws: {e}"))?;
        // Short reads, so that `stop` is seen.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(ws)
    })();
    let mut ws = match opened {
        Ok(ws) => {
            let _ = ready.send(Ok(()));
            ws
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            out.ended = Some(e);
            return out;
        }
    };
    while !*stop.borrow() {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let now = Instant::now();
                let seq = serde_json::from_str::<Value>(t.as_str())
                    .ok()
                    .and_then(|v| v.get("seq").and_then(Value::as_u64));
                match seq {
                    Some(seq) => {
                        out.events += 1;
                        if lock(arrivals).insert(seq, now).is_some() {
                            out.duplicates += 1;
                        }
                    }
                    None => out.malformed += 1,
                }
            }
            Ok(tungstenite::Message::Close(f)) => {
                out.ended = Some(format!("the daemon closed the socket: {f:?}"));
                return out;
            }
            Ok(_) => out.comments += 1,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                out.ended = Some(format!("the socket failed: {e}"));
                return out;
            }
        }
    }
    out
}

/// One SSE event block: `id:` (the seq) and `data:` (the JSON event); `:` comments.
pub fn sse_block(
    block: &[u8],
    at: Instant,
    arrivals: &Mutex<HashMap<u64, Instant>>,
    out: &mut SseOut,
) {
    let text = String::from_utf8_lossy(block);
    let (mut id, mut data, mut any) = (None, String::new(), false);
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with(':') {
            out.comments += 1;
            continue;
        }
        any = true;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.trim().parse::<u64>().ok(),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    if !any {
        return;
    }
    let seq_in_data = serde_json::from_str::<Value>(&data)
        .ok()
        .and_then(|v| v.get("seq").and_then(Value::as_u64));
    match id {
        Some(seq) if seq_in_data == Some(seq) => {
            out.events += 1;
            let mut a = lock(arrivals);
            if a.insert(seq, at).is_some() {
                out.duplicates += 1;
            }
        }
        _ => out.malformed += 1,
    }
}

/// Posts bodies from `rx` one by one; returns (seq, 201 instant) of each acknowledgement.
pub async fn stream_poster(
    ctx: Ctx,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Bytes>>>,
    timing: Timing,
) -> (Vec<(u64, Instant)>, Histogram<u64>, Tally) {
    let mut c = Client::new(&ctx);
    let (mut acks, mut h, mut tally) = (Vec::new(), hist(), Tally::default());
    loop {
        let next = rx.lock().await.recv().await;
        let Some(body) = next else { break };
        if ctx.aborted() {
            break;
        }
        match c.call(Method::POST, "/v1/events", Some(JSON), body).await {
            Ok(a) => {
                tally.note_ingest(&a);
                if a.status == StatusCode::CREATED {
                    let seq = serde_json::from_slice::<Value>(&a.body)
                        .ok()
                        .and_then(|v| v.pointer("/events/0/seq").and_then(Value::as_u64));
                    match seq {
                        Some(seq) => acks.push((seq, a.at)),
                        None => {
                            tally
                                .first_problem
                                .get_or_insert_with(|| "201 without events[0].seq".to_owned());
                        }
                    }
                }
                if timing.measured(a.at) {
                    record(&mut h, a.latency);
                }
            }
            Err(e) => c.failed(&mut tally, e).await,
        }
    }
    (acks, h, tally)
}

pub async fn stream(ctx: &Ctx, o: &Opts) -> Result<Report> {
    let posters = o.clients.unwrap_or(4);
    let mut report = Report::new(
        "stream",
        format!(
            "1 {} client, {} events/s posted one per request over {posters} connections, {:.1} s measured after {:.1} s warm-up",
            if o.ws { "WebSocket (/v1/stream/ws)" } else { "SSE (/v1/stream)" },
            o.rate, o.duration, o.warmup
        ),
        json!({"rate": o.rate, "posters": posters, "event_bytes": o.event_bytes, "ws": o.ws,
               "duration_s": o.duration, "warmup_s": o.warmup, "seed": o.seed}),
    );
    let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reader = if o.ws {
        let (ctx, arrivals) = (ctx.clone(), arrivals.clone());
        tokio::task::spawn_blocking(move || ws_reader(&ctx, &arrivals, ready_tx, &stop_rx))
    } else {
        tokio::spawn(sse_reader(ctx.clone(), arrivals.clone(), ready_tx, stop_rx))
    };
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("cannot open the stream: {e}"),
        Err(_) => bail!("the stream reader stopped"),
    }

    let (tx, rx) = mpsc::channel::<Bytes>(2 * posters);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let timing = Timing::start(o);
    let tasks: Vec<_> = (0..posters)
        .map(|_| tokio::spawn(stream_poster(ctx.clone(), rx.clone(), timing)))
        .collect();
    // The ticker: one event per tick; a tick finding every poster busy is skipped.
    let mut g = EventGen::new(o.seed).with_base_time(base_time());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut offered, mut skipped) = (0u64, 0u64);
    while !ctx.aborted() && Instant::now() < timing.end {
        tick.tick().await;
        let mut body = Vec::with_capacity(1024);
        to_json(&next_event(&mut g, o.event_bytes), &mut body);
        match tx.try_send(Bytes::from(body)) {
            Ok(()) => {
                if timing.measured(Instant::now()) {
                    offered += 1;
                }
            }
            Err(_) => skipped += 1,
        }
    }
    drop(tx);
    let mut acks = Vec::new();
    let mut post_h = hist();
    let mut tally = Tally::default();
    for t in tasks {
        match t.await {
            Ok((a, h, tl)) => {
                acks.extend(a);
                let _ = post_h.add(&h);
                tally.merge(tl);
            }
            Err(e) => ctx.abort(format!("a poster task failed: {e}")),
        }
    }
    ctx.check()?;

    // Wait for the last acknowledged events to arrive.
    let deadline = Instant::now() + STREAM_DRAIN;
    loop {
        let missing = {
            let a = lock(&arrivals);
            acks.iter().filter(|(s, _)| !a.contains_key(s)).count()
        };
        if missing == 0 || Instant::now() > deadline || reader.is_finished() {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let _ = stop_tx.send(true);
    let sse = reader.await.unwrap_or_default();
    ctx.check()?;

    let arrivals = lock(&arrivals).clone();
    let mut h = hist();
    let (mut measured, mut missing, mut early) = (0u64, 0u64, 0u64);
    for (seq, acked) in &acks {
        if !timing.measured(*acked) {
            continue;
        }
        measured += 1;
        match arrivals.get(seq) {
            Some(at) => {
                if at < acked {
                    early += 1;
                }
                record(&mut h, at.saturating_duration_since(*acked));
            }
            None => missing += 1,
        }
    }
    let p99 = quantile_ms(&h, 0.99);
    report.line(
        "acknowledged posts (measured)",
        format!(
            "{measured} ({:.1} events/s; {offered} offered)",
            measured as f64 / timing.secs()
        ),
    );
    if skipped > 0 {
        report.line("ticks skipped (every poster busy)", skipped);
    }
    let p99_target = format!(
        "target <= 50 ms: {}",
        verdict(p99.is_some_and(|v| v <= 50.0) && missing == 0)
    );
    report.latency(
        "delivery_latency",
        if o.ws {
            "WebSocket delivery after the 201"
        } else {
            "SSE delivery after the 201"
        },
        &h,
        &[("p99", &p99_target)],
    );
    report.line(
        "acknowledged but never streamed",
        format!(
            "{missing}   (waited up to {} s after the last post)",
            STREAM_DRAIN.as_secs()
        ),
    );
    report.line("streamed before its 201 (counted 0 ms)", early);
    report.line(
        "events received",
        format!(
            "{} ({} malformed, {} duplicates, {} comments or pings)",
            sse.events, sse.malformed, sse.duplicates, sse.comments
        ),
    );
    if let Some(e) = &sse.ended {
        report.line("stream ended early", e);
    }
    report.latency("post_latency", "post latency", &post_h, &[]);
    report.set("acknowledged", json!(measured));
    report.set("missing", json!(missing));
    report.set("streamed_before_ack", json!(early));
    report.set("sse_events", json!(sse.events));
    report.set("sse_malformed", json!(sse.malformed));
    report.set("sse_duplicates", json!(sse.duplicates));
    report.set("stream_ended_early", json!(sse.ended));
    report.set("ticks_skipped", json!(skipped));
    report.tally(&tally);
    Ok(report)
}
