//! The ingest clients: NDJSON batches and single JSON events at a steady rate, each
//! request retried with the same ids after a failure, and every acknowledged id
//! recorded with the seq its receipt gives.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use stele::testkit::EventGen;

use crate::client::{snippet, CallError, Client};
use crate::common::{base_time, lock};
use crate::state::Run;
use crate::{INGEST_ATTEMPTS_MAX, JSON, NDJSON, RECENT_KEPT};

/// Posts one body until it is answered (retrying with the same ids after failures).
async fn post(run: &Run, client: &mut Client, ns: &[u64], ctype: &str, body: Bytes) {
    let mut attempts = 0u32;
    let mut last_error = String::new();
    loop {
        let answer = client
            .call(Method::POST, "/v1/events", Some(ctype), body.clone())
            .await;
        match answer {
            Ok((status, b)) if status == StatusCode::CREATED || status == StatusCode::OK => {
                run.c.ingest_requests.fetch_add(1, Ordering::Relaxed);
                let replayed = status == StatusCode::OK;
                if replayed {
                    if attempts == 0 {
                        run.fail(format!(
                            "fresh ids {}.. answered 200 replayed: {}",
                            run.id(ns[0]),
                            snippet(&b)
                        ));
                    }
                    run.c.replayed.fetch_add(1, Ordering::Relaxed);
                }
                record_ack(run, ns, &b, replayed);
                return;
            }
            Ok((StatusCode::CONFLICT, b)) if attempts > 0 && ns.len() > 1 => {
                // Part of the batch was stored before the kill; none of it acknowledged.
                run.c.partial_batches.fetch_add(1, Ordering::Relaxed);
                run.note(&format!(
                    "a retried batch ({}..) answered 409: part of it was stored before the \
                     kill: {}",
                    run.id(ns[0]),
                    snippet(&b)
                ));
                return;
            }
            Ok((StatusCode::SERVICE_UNAVAILABLE, b)) => {
                // request-timeout (may be stored) or not ready: retry with the same ids.
                run.c.ingest_errors.fetch_add(1, Ordering::Relaxed);
                if attempts == 0 {
                    run.note(&format!("POST answered 503: {}", snippet(&b)));
                }
            }
            Ok((status, b)) => {
                run.fail(format!(
                    "POST /v1/events ({} events from {}, attempt {}) answered {status}: {}",
                    ns.len(),
                    run.id(ns[0]),
                    attempts + 1,
                    snippet(&b)
                ));
                return;
            }
            Err(CallError::Stopping) => {
                if attempts > 0 {
                    run.c.abandoned.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Err(CallError::Transport(e)) => {
                run.c.ingest_errors.fetch_add(1, Ordering::Relaxed);
                last_error = e;
            }
        }
        attempts += 1;
        if attempts == 1 {
            run.c.retried.fetch_add(1, Ordering::Relaxed);
        }
        if run.stopping() {
            run.c.abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if attempts >= INGEST_ATTEMPTS_MAX {
            run.c.abandoned.fetch_add(1, Ordering::Relaxed);
            run.fail(format!(
                "POST of {} events from {} failed {attempts} times in a row (last: {last_error})",
                ns.len(),
                run.id(ns[0])
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks an ingest answer against the request and records every acknowledged id.
fn record_ack(run: &Run, ns: &[u64], body: &[u8], replayed: bool) {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            run.fail(format!("ingest answer is not JSON: {e}"));
            return;
        }
    };
    let Some(items) = v["events"].as_array() else {
        run.fail(format!("ingest answer without events: {}", snippet(body)));
        return;
    };
    if items.len() != ns.len() {
        run.fail(format!(
            "ingest answer lists {} events for {} posted",
            items.len(),
            ns.len()
        ));
        return;
    }
    let mut prev: Option<u64> = None;
    for (item, &n) in items.iter().zip(ns) {
        let (id, seq) = (item["id"].as_str(), item["seq"].as_u64());
        let (Some(id), Some(seq)) = (id, seq) else {
            run.fail(format!("ingest answer item without id/seq: {item}"));
            return;
        };
        if run.n_of(id) != Some(n) {
            run.fail(format!("ingest answer names {id}, posted {}", run.id(n)));
            return;
        }
        if !replayed && prev.is_some_and(|p| seq != p + 1) {
            run.fail(format!(
                "a 201's seqs are not consecutive at {id} (seq {seq})"
            ));
        }
        prev = Some(seq);
        run.ack(n, seq);
    }
    if !replayed && v["receipt"]["last_seq"].as_u64() != prev {
        run.fail(format!(
            "receipt last_seq {} is not the last event's seq {prev:?}",
            v["receipt"]["last_seq"]
        ));
    }
    run.c
        .events_acked_http
        .fetch_add(ns.len() as u64, Ordering::Relaxed);
    let mut r = lock(&run.recent);
    if let (Some(&n), Some(seq)) = (ns.last(), prev) {
        r.push_back((n, seq));
        if r.len() > RECENT_KEPT {
            r.pop_front();
        }
    }
}

pub async fn ingest_client(run: Arc<Run>, i: usize, batch: usize, requests_per_sec: f64) {
    let mut gen = EventGen::new(run.o.seed.wrapping_add(1 + i as u64)).with_base_time(base_time());
    let mut client = Client::new(&run);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / requests_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctype = if batch > 1 { NDJSON } else { JSON };
    while !run.stopping() {
        tick.tick().await;
        if run.stopping() {
            break;
        }
        let mut ns = Vec::with_capacity(batch);
        let mut buf = Vec::with_capacity(batch * (run.o.event_bytes + 200));
        for _ in 0..batch {
            let n = run.next_n.fetch_add(1, Ordering::Relaxed);
            let mut ev = gen.sized(run.o.event_bytes);
            ev.id = run.id(n);
            serde_json::to_writer(&mut buf, &ev).expect("events serialize to JSON");
            if batch > 1 {
                buf.push(b'\n');
            }
            ns.push(n);
        }
        post(&run, &mut client, &ns, ctype, Bytes::from(buf)).await;
    }
}
