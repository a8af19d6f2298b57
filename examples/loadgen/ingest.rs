//! Ingest clients shared by the scenarios: posting generated bodies until the
//! measured window ends, with the "searchable within" probes of `batch`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{contains, hist, record, Client, Tally, Timing};
use crate::common::{enc, lock};
use crate::daemon::Ctx;
use crate::gen::{next_body, Body, SharedRx};
use crate::{POLL_EVERY, VISIBLE_TIMEOUT};

/// One "searchable within" probe per second of the measured window.
pub struct Markers {
    pub next: Mutex<Instant>,
    pub count: AtomicU64,
    pub nonce: String,
    /// Probes poll one at a time, oldest first (tokio's mutex is fair): the index
    /// makes events visible in seq order, so a probe has nothing to learn before the
    /// one ahead of it succeeds, and a dozen probes polling at once every 10 ms were
    /// a query load of their own (≈ 12 % of the daemon's CPU in a profile of `batch`).
    pub turn: Arc<tokio::sync::Mutex<()>>,
}

impl Markers {
    pub fn new(timing: &Timing) -> Markers {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Markers {
            next: Mutex::new(timing.warm_end),
            count: AtomicU64::new(0),
            nonce: format!("{nonce:x}"),
            turn: Arc::default(),
        }
    }

    /// A fresh correlation id if a marker is due now.
    pub fn due(&self, timing: &Timing, now: Instant) -> Option<String> {
        if !timing.measured(now) {
            return None;
        }
        let mut next = lock(&self.next);
        if now < *next {
            return None;
        }
        // Keep a steady cadence; after a long request, restart it from now.
        *next += Duration::from_secs(1);
        if *next <= now {
            *next = now + Duration::from_secs(1);
        }
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        Some(format!("loadgen-{}-{n}", self.nonce))
    }
}

/// Once the probes ahead of it are done (`turn`), polls for `cid` every 10 ms; the time
/// from `acked` until an answer contained it.
pub async fn searchable(
    ctx: Ctx,
    cid: String,
    acked: Instant,
    turn: Arc<tokio::sync::Mutex<()>>,
) -> (Option<Duration>, Tally) {
    let _turn = turn.lock().await;
    let mut c = Client::new(&ctx);
    let mut tally = Tally::default();
    let path = format!("/v1/events?correlation_id={}&limit=1", enc(&cid));
    loop {
        if ctx.aborted() {
            return (None, tally);
        }
        match c.call(Method::GET, &path, None, Bytes::new()).await {
            Ok(a) => {
                if tally.note(&a) && contains(&a.body, cid.as_bytes()) {
                    return (Some(a.at.saturating_duration_since(acked)), tally);
                }
            }
            Err(e) => c.failed(&mut tally, e).await,
        }
        if acked.elapsed() > VISIBLE_TIMEOUT {
            return (None, tally);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[derive(Default)]
pub struct IngestOut {
    pub hist: Option<Histogram<u64>>,
    pub tally: Tally,
    pub events: u64,
    pub requests: u64,
    pub bytes: u64,
    pub stalls: u64,
    pub last_ack: Option<Instant>,
    pub probes: Vec<JoinHandle<(Option<Duration>, Tally)>>,
}

/// One ingest client: posts bodies from `rx` until the end of `timing` (or until `rx`
/// ends), counting what was acknowledged in the measured window.
pub async fn ingest_client(
    ctx: Ctx,
    rx: SharedRx,
    timing: Timing,
    ctype: &'static str,
    markers: Option<Arc<Markers>>,
) -> IngestOut {
    let mut c = Client::new(&ctx);
    let mut out = IngestOut::default();
    let mut h = hist();
    while !ctx.aborted() && Instant::now() < timing.end {
        let Some(body) = next_body(&rx, &timing, &mut out.stalls).await else {
            break;
        };
        let cid = markers
            .as_ref()
            .and_then(|m| m.due(&timing, Instant::now()));
        let bytes = match &cid {
            Some(cid) => body.marked(cid),
            None => body.bytes.clone(),
        };
        let len = bytes.len() as u64;
        match c.call(Method::POST, "/v1/events", Some(ctype), bytes).await {
            Ok(a) => {
                let ok = out.tally.note_ingest(&a);
                if a.status == StatusCode::CREATED {
                    out.last_ack = Some(a.at);
                    if let (Some(cid), Some(m)) = (cid, &markers) {
                        let turn = m.turn.clone();
                        out.probes
                            .push(tokio::spawn(searchable(ctx.clone(), cid, a.at, turn)));
                    }
                }
                if timing.measured(a.at) {
                    record(&mut h, a.latency);
                    out.requests += 1;
                    if ok {
                        out.events += body.events;
                        out.bytes += len;
                    }
                }
            }
            Err(e) => c.failed(&mut out.tally, e).await,
        }
    }
    out.hist = Some(h);
    out
}

/// Runs `n` ingest clients and merges what they saw.
pub async fn ingest_clients(
    ctx: &Ctx,
    n: usize,
    rx: mpsc::Receiver<Body>,
    timing: Timing,
    ctype: &'static str,
    markers: Option<Arc<Markers>>,
) -> IngestOut {
    let rx: SharedRx = Arc::new(tokio::sync::Mutex::new(rx));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(ingest_client(
                ctx.clone(),
                rx.clone(),
                timing,
                ctype,
                markers.clone(),
            ))
        })
        .collect();
    let mut all = IngestOut::default();
    let mut h = hist();
    for t in tasks {
        match t.await {
            Ok(o) => {
                if let Some(oh) = &o.hist {
                    let _ = h.add(oh);
                }
                all.tally.merge(o.tally);
                all.events += o.events;
                all.requests += o.requests;
                all.bytes += o.bytes;
                all.stalls += o.stalls;
                all.last_ack = all.last_ack.max(o.last_ack);
                all.probes.extend(o.probes);
            }
            Err(e) => ctx.abort(format!("a client task failed: {e}")),
        }
    }
    // Stop the generator thread (its send fails once the receiver is gone).
    drop(rx);
    all.hist = Some(h);
    all
}
