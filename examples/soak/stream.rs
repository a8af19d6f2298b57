//! The stream clients: `GET /v1/stream` followed across restarts with
//! `Last-Event-ID`; seqs must increase with no duplicate, and the unfiltered stream
//! must be gap-free. Streams leave out the records Stele writes itself (findings,
//! `audit_access`) by default, which would be gaps: the unfiltered stream asks for them
//! (`stele_records=include`) and counts them; the filtered ones keep the default.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::Value;

use crate::checks::{OWN_CATEGORIES, OWN_INGESTED_BY};
use crate::client::{current_addr, snippet};
use crate::common::{connect, enc, find};
use crate::query::Picks;
use crate::state::Run;
use crate::REQUEST_TIMEOUT;

/// One SSE event block: `(id, seq in data, whether the event is Stele's own)`; `None`
/// for comments only.
fn sse_block(block: &[u8]) -> Option<(Option<u64>, Option<u64>, bool)> {
    let text = String::from_utf8_lossy(block);
    let (mut id, mut data, mut any) = (None, String::new(), false);
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        any = true;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.trim().parse::<u64>().ok(),
            "data" => data.push_str(value),
            _ => {}
        }
    }
    if !any {
        return None;
    }
    let v = serde_json::from_str::<Value>(&data).unwrap_or(Value::Null);
    let own = v["ingested_by"].as_str() == Some(OWN_INGESTED_BY)
        && v["category"]
            .as_str()
            .is_some_and(|c| OWN_CATEGORIES.contains(&c));
    Some((id, v["seq"].as_u64(), own))
}

/// Follows `/v1/stream` across restarts. Client 0 is unfiltered (Stele's own records
/// included) and must see every seq in order; the others (filtered by a tenant, own
/// records left out as by default) must see increasing seqs.
pub async fn stream_client(run: Arc<Run>, i: usize) {
    let picks = Picks::new(run.o.seed ^ 0x55e);
    let filter = (i > 0).then(|| picks.tenants[i % picks.tenants.len()].clone());
    let path = match &filter {
        None => "/v1/stream?stele_records=include".to_owned(),
        Some(t) => format!("/v1/stream?tenant={}", enc(t)),
    };
    let mut rx = run.addr.clone();
    let mut last: Option<u64> = None;
    'connections: while !run.stopping() {
        let Some(addr) = current_addr(&run, &mut rx).await else {
            return;
        };
        let opened = async {
            let mut sender = connect(addr).await?;
            let mut req = Request::builder()
                .method(Method::GET)
                .uri(&path)
                .header("host", addr.to_string())
                .header("accept", "text/event-stream");
            if let Some(l) = last {
                req = req.header("last-event-id", l.to_string());
            }
            let req = req
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
                .await
                .map_err(|_| "no answer".to_owned())?
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            if status != StatusCode::OK {
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                return Err(format!("answered {status}: {}", snippet(&body)));
            }
            Ok((sender, resp.into_body()))
        }
        .await;
        let (_sender, mut body) = match opened {
            Ok(x) => x,
            Err(e) => {
                if e.starts_with("answered") {
                    run.fail(format!("GET {path} (Last-Event-ID {last:?}) {e}"));
                } else {
                    run.c.stream_errors.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        run.c.stream_connections.fetch_add(1, Ordering::Relaxed);
        let mut conn_last: Option<u64> = None;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if run.stopping() {
                        return;
                    }
                    continue;
                }
            };
            match frame {
                Some(Ok(f)) => {
                    let Ok(data) = f.into_data() else { continue };
                    buf.extend_from_slice(&data);
                    while let Some(pos) = find(&buf, b"\n\n") {
                        let block: Vec<u8> = buf.drain(..pos + 2).collect();
                        let Some((id, seq, own)) = sse_block(&block) else {
                            continue;
                        };
                        let Some(seq) = id.filter(|id| Some(*id) == seq) else {
                            run.fail(format!(
                                "{path}: malformed event (id {id:?}, data seq {seq:?})"
                            ));
                            continue;
                        };
                        run.c.stream_events.fetch_add(1, Ordering::Relaxed);
                        if own {
                            run.c.stream_own_events.fetch_add(1, Ordering::Relaxed);
                        }
                        if conn_last.is_some_and(|l| seq <= l) {
                            run.fail(format!(
                                "{path}: seq {seq} after {conn_last:?} in one connection \
                                 (duplicate or out of order)"
                            ));
                        } else if last.is_some_and(|l| seq <= l) {
                            run.fail(format!(
                                "{path}: seq {seq} after a reconnect with Last-Event-ID {last:?}"
                            ));
                        } else if filter.is_none() && last.is_some_and(|l| seq != l + 1) {
                            run.fail(format!(
                                "{path}: seq {seq} follows {last:?}: seqs {}..{seq} never \
                                 arrived",
                                last.unwrap_or(0) + 1
                            ));
                        }
                        conn_last = Some(seq);
                        last = Some(last.map_or(seq, |l| l.max(seq)));
                    }
                }
                Some(Err(_)) | None => {
                    // The daemon was killed or stopped: reconnect with Last-Event-ID.
                    continue 'connections;
                }
            }
        }
    }
}
