//! One simulated client: a keep-alive connection, its answers counted by status,
//! the scenario's clock (warm-up, measured window), latency histograms and the
//! daemon's health and index-lag probes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, StatusCode};

use crate::common::{connect, exchange, request};
use crate::daemon::Ctx;
use crate::{Opts, FAILURES_FATAL, POLL_EVERY, REQUEST_TIMEOUT};

/// One answer: status, body, latency (request sent → body complete), when it completed.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub latency: Duration,
    pub at: Instant,
}

/// A simulated client: one keep-alive connection, re-established after an error.
pub struct Client {
    pub ctx: Ctx,
    pub sender: Option<SendRequest<Full<Bytes>>>,
    pub failures: u32,
}

impl Client {
    pub fn new(ctx: &Ctx) -> Client {
        Client {
            ctx: ctx.clone(),
            sender: None,
            failures: 0,
        }
    }

    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        ctype: Option<&str>,
        body: Bytes,
    ) -> Result<Answer, String> {
        let sender = match &mut self.sender {
            Some(s) => s,
            None => self.sender.insert(connect(self.ctx.addr).await?),
        };
        if let Err(e) = sender.ready().await {
            self.sender = None;
            return Err(format!("the connection closed: {e}"));
        }
        let ctx = &self.ctx;
        let req = request(
            &ctx.host,
            ctx.authorization.as_deref(),
            method,
            path,
            ctype,
            body,
        );
        let started = Instant::now();
        let exchange = exchange(sender, req);
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok((status, body))) => {
                let at = Instant::now();
                self.failures = 0;
                Ok(Answer {
                    status,
                    body,
                    latency: at - started,
                    at,
                })
            }
            Ok(Err(e)) => {
                self.sender = None;
                Err(format!("{path}: {e}"))
            }
            Err(_) => {
                self.sender = None;
                Err(format!(
                    "{path}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ))
            }
        }
    }

    /// Counts a transport failure; aborts the scenario when the daemon is gone or keeps
    /// failing; pauses a little before the next attempt.
    pub async fn failed(&mut self, tally: &mut Tally, err: String) {
        tally.transport_errors += 1;
        if tally.first_transport_error.is_none() {
            tally.first_transport_error = Some(err.clone());
        }
        self.failures += 1;
        if let Some(why) = self.ctx.daemon_gone() {
            self.ctx.abort(why);
        } else if self.failures >= FAILURES_FATAL {
            self.ctx.abort(format!(
                "the daemon at {} went away ({} failed attempts in a row; last: {err})",
                self.ctx.addr, self.failures
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Answers by status, and transport errors.
#[derive(Default, Clone)]
pub struct Tally {
    pub by_status: BTreeMap<u16, u64>,
    /// 200 answers to ingest with `"replayed": true` (ids already stored).
    pub replayed: u64,
    pub transport_errors: u64,
    pub first_problem: Option<String>,
    pub first_transport_error: Option<String>,
}

impl Tally {
    /// Counts an answer; true for 2xx.
    pub fn note(&mut self, a: &Answer) -> bool {
        *self.by_status.entry(a.status.as_u16()).or_default() += 1;
        if !a.status.is_success() && self.first_problem.is_none() {
            let text = String::from_utf8_lossy(&a.body);
            let cut: String = text.chars().take(300).collect();
            self.first_problem = Some(format!("{}: {cut}", a.status.as_u16()));
        }
        a.status.is_success()
    }

    pub fn note_ingest(&mut self, a: &Answer) -> bool {
        if a.status == StatusCode::OK && contains(&a.body, b"\"replayed\":true") {
            self.replayed += 1;
        }
        self.note(a)
    }

    pub fn merge(&mut self, o: Tally) {
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        self.replayed += o.replayed;
        self.transport_errors += o.transport_errors;
        if self.first_problem.is_none() {
            self.first_problem = o.first_problem;
        }
        if self.first_transport_error.is_none() {
            self.first_transport_error = o.first_transport_error;
        }
    }

    pub fn non_2xx(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The scenario's clock: warm-up, then the measured window.
#[derive(Clone, Copy)]
pub struct Timing {
    pub warm_end: Instant,
    pub end: Instant,
}

impl Timing {
    pub fn start(o: &Opts) -> Timing {
        let now = Instant::now();
        let warm_end = now + Duration::from_secs_f64(o.warmup);
        Timing {
            warm_end,
            end: warm_end + Duration::from_secs_f64(o.duration),
        }
    }

    pub fn measured(&self, t: Instant) -> bool {
        t >= self.warm_end && t <= self.end
    }

    pub fn secs(&self) -> f64 {
        (self.end - self.warm_end).as_secs_f64()
    }
}

pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Checks the daemon answers at all.
pub async fn healthy(ctx: &Ctx) -> Result<()> {
    let mut c = Client::new(ctx);
    match c.call(Method::GET, "/healthz", None, Bytes::new()).await {
        Ok(a) if a.status.is_success() => Ok(()),
        Ok(a) => bail!("GET /healthz answered {}", a.status),
        Err(e) => bail!("the daemon at {} does not answer: {e}", ctx.addr),
    }
}

/// Reads `stele_index_lag_events` from `/metrics`.
pub async fn index_lag(c: &mut Client) -> Result<(u64, Instant)> {
    let a = c
        .call(Method::GET, "/metrics", None, Bytes::new())
        .await
        .map_err(|e| anyhow!("GET /metrics: {e}"))?;
    if !a.status.is_success() {
        bail!("GET /metrics answered {}", a.status);
    }
    let text = String::from_utf8_lossy(&a.body);
    let lag = text
        .lines()
        .filter_map(|l| l.strip_prefix("stele_index_lag_events"))
        .find_map(|rest| {
            rest.strip_prefix(' ')
                .or_else(|| rest.split_once("} ").map(|(_, v)| v))
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow!("/metrics has no stele_index_lag_events gauge"))?;
    Ok((lag as u64, a.at))
}

/// Polls `/metrics` every 10 ms until the index lag is 0; returns when that was seen.
pub async fn wait_indexed(ctx: &Ctx, limit: Duration) -> Result<Instant> {
    let mut c = Client::new(ctx);
    let deadline = Instant::now() + limit;
    loop {
        ctx.check()?;
        match index_lag(&mut c).await {
            Ok((0, at)) => return Ok(at),
            Ok((lag, _)) if Instant::now() > deadline => {
                bail!(
                    "the index still lags {lag} events after {} s",
                    limit.as_secs()
                )
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(why) = ctx.daemon_gone() {
                    ctx.abort(why);
                }
                ctx.check()?;
                if Instant::now() > deadline {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
