//! `POST /v1/events`: reading, validating and appending a batch.

use super::problem::{internal, problem, query_problem, Kind};
use super::{serialized_response, App, Caller, Req, Resp};
use crate::auth::Scope;
use crate::event::{self, Event, FieldError, PostedBatch, Provenance};
use crate::ingest::Idempotency;
use crate::sync::Recover;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Why a body is not JSON: a sentence, and where (`line`, `column`, both
/// 1-based; for NDJSON the line of the body).
#[derive(Debug, PartialEq)]
pub struct JsonError {
    /// What is wrong, in a sentence.
    pub detail: String,
    /// 1-based line of the body.
    pub line: usize,
    /// 1-based column in that line.
    pub column: usize,
}

/// How [`split_body`] reads each event.
#[derive(Clone, Copy, Debug)]
pub enum Events<'m> {
    /// An object straight into its fields (no map of its keys is built), each value
    /// only as far as it could be stored, another system's names renamed by the map
    /// (`ingest.field_map`) as they are read: what ingest does.
    Fields(&'m crate::event::FieldMap),
    /// Each as a whole JSON value, unbounded: what the fuzz target compares with.
    #[cfg(any(test, feature = "testkit"))]
    Values,
}

/// Splits a request body into posted events: one object, an array, or NDJSON
/// (one value per non-blank line, `\r\n` allowed), each read as `read` says
/// with the strict parser's rules. Only the first `max` events are built: the
/// rest are checked as JSON text and counted (`PostedBatch::count`), so that a
/// body of millions of tiny items costs the memory of `max` events, not of
/// millions. Public for the fuzz target.
pub fn split_body(
    body: &[u8],
    ndjson: bool,
    read: Events,
    max: usize,
) -> Result<PostedBatch, JsonError> {
    if ndjson {
        let mut events = Vec::new();
        let mut count = 0;
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let parsed = if count >= max {
                serde_json::from_slice::<serde::de::IgnoredAny>(line).map(|_| ())
            } else {
                match read {
                    Events::Fields(map) => event::parse_posted_json_mapped(line, map),
                    #[cfg(any(test, feature = "testkit"))]
                    Events::Values => event::parse_json(line).map(event::PostedEvent::from),
                }
                .map(|e| events.push(e))
            };
            parsed.map_err(|e| JsonError {
                detail: format!("line {} is not JSON: {e}", n + 1),
                line: n + 1,
                column: e.column().max(1),
            })?;
            count += 1;
        }
        return Ok(PostedBatch { events, count });
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        // No events: the batch-size check says so.
        return Ok(PostedBatch {
            events: Vec::new(),
            count: 0,
        });
    }
    match read {
        Events::Fields(map) => event::parse_posted_body(body, max, map),
        #[cfg(any(test, feature = "testkit"))]
        Events::Values => event::parse_posted_values(body, max),
    }
    .map_err(|e| JsonError {
        detail: format!("the body is not JSON: {e}"),
        line: e.line().max(1),
        column: e.column().max(1),
    })
}

/// Why a request body could not be read whole.
pub(super) enum BodyReadError {
    /// More than the limit: as declared by `Content-Length` (the size), or
    /// found while reading (`None`).
    TooLarge(Option<usize>),
    /// Malformed framing (a bad chunk size, a missing CRLF, bad trailers) or a
    /// connection closed before the end: the cause, in words.
    Unreadable(String),
}

/// Reads a whole body of at most `max` bytes into one buffer, sized up front
/// from `Content-Length` when the request declares it (a batch of 1,000
/// events is ≈ 600 KB: collecting chunks and then growing a buffer by
/// doubling copied it several times and took fresh zeroed pages from the
/// kernel at every request).
pub(super) async fn read_body(req: Req, max: usize) -> Result<Bytes, BodyReadError> {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > max) {
        return Err(BodyReadError::TooLarge(Some(n)));
    }
    let mut body = req.into_body();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyReadError::Unreadable(causes(e)))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(BodyReadError::TooLarge(None));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// An error of reading a body and its causes, in words (axum's error wraps
/// hyper's; hyper's is named once).
fn causes(e: axum::Error) -> String {
    let e = e.into_inner();
    let mut why = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        why.push_str(": ");
        why.push_str(&c.to_string());
        cause = c.source();
    }
    why
}

/// The answer to an accepted or replayed batch. Fields in alphabetical
/// order, as every other answer (serde_json's maps) writes them.
#[derive(serde::Serialize)]
struct Answer<'a> {
    events: Vec<IdSeq<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt: Option<Receipt>,
    replayed: bool,
}

/// One stored event of an [`Answer`].
#[derive(serde::Serialize)]
struct IdSeq<'a> {
    id: &'a str,
    seq: u64,
}

/// Where an accepted batch went: its last record's segment, seq and chain
/// hash, and when it was received.
#[derive(serde::Serialize)]
struct Receipt {
    hash: String,
    last_seq: u64,
    received_at: String,
    segment: String,
}

/// Most client ids of a request looked up without leaving its task.
const INLINE_RESERVE_IDS_MAX: usize = 16;

/// The media types `POST /v1/events` reads.
const INGEST_TYPES: &str = "application/json or application/x-ndjson";

/// Whether the body is NDJSON; `Err` for a type we do not read. A missing
/// type is read as JSON.
fn ingest_media_type(req: &Req) -> Result<bool, String> {
    let Some(v) = req.headers().get("content-type") else {
        return Ok(false);
    };
    let v = v
        .to_str()
        .map_err(|_| "an unreadable Content-Type".to_string())?;
    let essence = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(false),
        "application/x-ndjson" | "application/ndjson" => Ok(true),
        _ => Err(format!("Content-Type {v:?}")),
    }
}

pub(super) async fn ingest(app: Arc<App>, req: Req, caller: Caller) -> Resp {
    let ndjson = match ingest_media_type(&req) {
        Ok(n) => n,
        Err(what) => {
            return problem(
                Kind::UnsupportedMediaType,
                format!("events are posted as {INGEST_TYPES}, not {what}"),
                json!({ "accepted": ["application/json", "application/x-ndjson", "application/ndjson"] }),
            )
        }
    };
    let body_max = app.limits().body_bytes_max;
    let events_max = app.limits().events_per_request_max;
    let body = match read_body(req, body_max).await {
        Ok(b) => b,
        Err(BodyReadError::TooLarge(declared)) => {
            let detail = match declared {
                Some(n) => format!("the body is {n} bytes, more than body_bytes_max ({body_max})"),
                None => format!("the body is more than body_bytes_max ({body_max}) bytes"),
            };
            return problem(Kind::BodyTooLarge, detail, json!({ "limit": body_max }));
        }
        Err(BodyReadError::Unreadable(why)) => {
            return problem(
                Kind::InvalidBody,
                format!("the body could not be read: {why}; nothing was stored"),
                json!({}),
            )
        }
    };
    let field_map = app.field_map();
    let read = Events::Fields(&field_map);
    let PostedBatch {
        events: values,
        count,
    } = match split_body(&body, ndjson, read, events_max) {
        Ok(b) => b,
        Err(e) => {
            return problem(
                Kind::InvalidJson,
                e.detail,
                json!({ "line": e.line, "column": e.column }),
            )
        }
    };
    if count == 0 || count > events_max {
        return problem(
            Kind::InvalidBatchSize,
            format!(
                "a request carries 1 to {events_max} events (events_per_request_max), this one {count}"
            ),
            json!({ "limit": events_max }),
        );
    }
    let mut events: Vec<Event> = Vec::with_capacity(values.len());
    let mut client_id: Vec<bool> = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    let posted = values.len();
    for (i, v) in values.into_iter().enumerate() {
        let has_id = v.has_id();
        match v.validate(event::new_event_id) {
            Ok(ev) => {
                client_id.push(has_id);
                events.push(ev);
            }
            Err(errs) => errors.extend(errs.into_iter().map(|e: FieldError| {
                json!({"index": i, "field": e.field, "kind": e.kind.as_str(), "message": e.message})
            })),
        }
    }
    if !errors.is_empty() {
        return problem(
            Kind::InvalidEvents,
            format!(
                "{} problems in {posted} events; nothing was stored",
                errors.len(),
            ),
            json!({ "errors": errors }),
        );
    }
    if let Some(r) = scope_events(&caller.scope(), &mut events) {
        if r.status() == StatusCode::FORBIDDEN {
            app.stats.forbidden.fetch_add(1, Ordering::Relaxed);
        }
        return r;
    }
    // A few ids are looked up on the request's own task (a handful of key
    // index reads in memory); a thread hop for them cost more than the work
    // (two context switches per single-event request). Bigger batches go to
    // the blocking pool.
    let ids = client_id.iter().filter(|&&c| c).count();
    let looked_up = if ids <= INLINE_RESERVE_IDS_MAX {
        let r = app.ids.reserve(&app.engine, &events, &client_id);
        Ok((events, r))
    } else {
        let app2 = app.clone();
        tokio::task::spawn_blocking(move || {
            let r = app2.ids.reserve(&app2.engine, &events, &client_id);
            (events, r)
        })
        .await
    };
    let (mut events, reserved) = match looked_up {
        Ok((events, Ok(Idempotency::New(reserved)))) => (events, reserved),
        Ok((events, Ok(Idempotency::Replay(seqs)))) => {
            let answer = Answer {
                events: events
                    .iter()
                    .zip(seqs)
                    .map(|(e, seq)| IdSeq { id: &e.id, seq })
                    .collect(),
                receipt: None,
                replayed: true,
            };
            return serialized_response(StatusCode::OK, &answer);
        }
        Ok((_, Ok(Idempotency::Conflict(detail)))) => {
            return problem(Kind::IdConflict, detail, json!({ "field": "id" }))
        }
        Ok((_, Err(e))) => return query_problem(e),
        Err(e) => return internal(e.to_string()),
    };
    if let Some(free) = crate::datadir::free_bytes(&app.data_dir) {
        let reserve = app.limits().disk_reserve_bytes;
        let need = reserve.saturating_add(body.len() as u64 * 2);
        if free < need {
            app.ids.settle(&reserved, &events, None);
            return problem(
                Kind::DiskFull,
                format!(
                    "the data directory's filesystem has {free} bytes free, and {reserve} \
                     (disk_reserve_bytes) must stay free; nothing was stored: retry once space \
                     is freed"
                ),
                json!({ "reserve": reserve, "free": free }),
            );
        }
    }
    // Events posted without a risk score get one (marked by `risk_rules`);
    // after the reservation, which compares the events as posted.
    app.risk
        .exclusive()
        .assess(&mut events, app.clock.now_micros());
    // Provenance is the server's, never the client's (parse_event refuses
    // `ingested_by` and `client_addr` in the posted JSON).
    let by = Provenance {
        ingested_by: caller
            .key
            .as_ref()
            .map_or_else(|| event::INGESTED_BY_LOOPBACK.to_owned(), |k| k.id.clone()),
        client_addr: caller.addr.map(|a| a.to_canonical().to_string()),
    };
    let log = app.engine.log().clone();
    let started = std::time::Instant::now();
    let appended = log.append_async(events, &by).await;
    app.stats.append_seconds.observe(started.elapsed());
    match appended {
        Ok((ack, stored)) => {
            app.ids.settle(
                &reserved,
                stored.iter().map(|s| &s.event),
                Some(ack.first_seq),
            );
            app.stats
                .ingested
                .fetch_add(stored.len() as u64, Ordering::Relaxed);
            let answer = Answer {
                events: stored
                    .iter()
                    .map(|s| IdSeq {
                        id: &s.event.id,
                        seq: s.seq,
                    })
                    .collect(),
                receipt: Some(Receipt {
                    hash: crate::log::format::hash_hex(&ack.last_hash),
                    last_seq: ack.last_seq(),
                    received_at: event::format_micros(ack.received_at),
                    segment: ack.segment.file_name(),
                }),
                replayed: false,
            };
            serialized_response(StatusCode::CREATED, &answer)
        }
        Err(e) => {
            app.ids.settle(&reserved, [], None);
            if let crate::log::Error::LimitExceeded {
                what: crate::log::BYTES_PER_APPEND,
                got,
                max,
            } = e
            {
                // Only a limit set beyond the torn window (`body_bytes_max`
                // over ≈ 64 MiB), or raised by a reload beyond the write size
                // the log started with, lets in a request one write cannot hold.
                problem(
                    Kind::BodyTooLarge,
                    format!(
                        "the events of this request take {got} bytes as stored, more than \
                         one write of the log holds ({max}); post fewer events per request; \
                         nothing was stored"
                    ),
                    json!({ "limit": max }),
                )
            } else if e.is_disk_full() {
                problem(
                    Kind::DiskFull,
                    format!("{e}; nothing was stored"),
                    json!({}),
                )
            } else {
                problem(Kind::LogUnavailable, e.to_string(), json!({}))
            }
        }
    }
}

/// A tenant-scoped key writes only its tenants: an event without a tenant
/// gets the key's (when it has one), one of another tenant refuses the
/// whole request (the refusal).
fn scope_events(scope: &Scope, events: &mut [Event]) -> Option<Resp> {
    let Scope::Tenants(tenants) = scope else {
        return None;
    };
    for (i, ev) in events.iter_mut().enumerate() {
        match &ev.tenant {
            None if tenants.len() == 1 => ev.tenant = Some(tenants[0].clone()),
            None => {
                return Some(problem(
                    Kind::InvalidEvents,
                    "1 problem; nothing was stored".into(),
                    json!({ "errors": [{
                        "index": i,
                        "field": "tenant",
                        "kind": "missing",
                        "message": format!(
                            "this key writes to several tenants ({}): name one in `tenant`",
                            tenants.join(", ")
                        ),
                    }] }),
                ))
            }
            Some(t) if !tenants.contains(t) => {
                return Some(problem(
                    Kind::TenantForbidden,
                    format!(
                        "event {i} names a tenant this key may not write (it writes {}); \
                         nothing was stored",
                        tenants.join(", ")
                    ),
                    json!({ "field": "tenant", "index": i }),
                ))
            }
            Some(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_say_line_and_column() {
        let all = usize::MAX;
        for read in [
            Events::Fields(crate::event::FieldMap::none()),
            Events::Values,
        ] {
            let e = split_body(b"{\n  \"a\": 1,\n  oops\n}", false, read, all).unwrap_err();
            assert_eq!((e.line, e.column), (3, 3), "{e:?}");
            let e =
                split_body(b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\": }\n", true, read, all).unwrap_err();
            assert_eq!(e.line, 4, "{e:?}");
            assert!(e.detail.starts_with("line 4 is not JSON"), "{e:?}");
            let count = |body: &[u8], ndjson| split_body(body, ndjson, read, all).unwrap().count;
            assert_eq!(count(b"[{}, {}]", false), 2);
            assert_eq!(count(b" \r\n[]", false), 0);
            assert_eq!(count(b"{}", false), 1);
            assert_eq!(count(b"\n{}\n \n{}\n", true), 2);
        }
    }

    /// Past `max`, items are counted and their JSON checked, but not built.
    #[test]
    fn items_past_the_limit_are_counted_not_built() {
        for read in [
            Events::Fields(crate::event::FieldMap::none()),
            Events::Values,
        ] {
            for (body, ndjson) in [
                (&b" [{}, 1, {\"a\": [2]}, \"x\", null]"[..], false),
                (b"{}\n1\n{\"a\": [2]}\n\r\n\"x\"\nnull\n", true),
            ] {
                for max in 0..7 {
                    let b = split_body(body, ndjson, read, max).unwrap();
                    assert_eq!(b.count, 5, "{max}");
                    assert_eq!(b.events.len(), max.min(5), "{max}");
                }
            }
            // The JSON past the limit is still checked, with its position; its
            // repeated keys are not looked for (the batch is refused for its size).
            let e = split_body(b"[{}, {}, {\"a\": }]", false, read, 1).unwrap_err();
            assert_eq!((e.line, e.column), (1, 16), "{e:?}");
            let e = split_body(b"{}\n{}\n{\"a\": }", true, read, 1).unwrap_err();
            assert_eq!((e.line, e.column), (3, 7), "{e:?}");
            let repeated = split_body(b"[{}, {\"a\": 1, \"a\": 2}]", false, read, 1).unwrap();
            assert_eq!((repeated.events.len(), repeated.count), (1, 2));
            assert!(split_body(b"[{}, {\"a\": 1, \"a\": 2}]", false, read, 2).is_err());
        }
    }
}
