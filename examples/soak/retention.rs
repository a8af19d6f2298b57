//! Retention during the run: lifts the holds on the seeded days on schedule and polls
//! `GET /v1/retention`; the first retained seq must never go back nor pass a day still
//! held.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::client::{snippet, Client};
use crate::common::lock;
use crate::state::Run;
use crate::RETENTION_POLL;

/// Lifts the holds on schedule and watches the first retained seq.
pub async fn retention_watch(run: Arc<Run>, load: Duration) {
    let mut client = Client::new(&run);
    let k = run.days.len() as u32;
    // Hold i is lifted at (i + 1) / (k + 1) of the load time.
    let due: Vec<Instant> = (0..k)
        .map(|i| run.started + load * (i + 1) / (k + 1))
        .collect();
    while !run.stopping() {
        // Lift what is due, oldest first.
        for (d, at) in run.days.iter().zip(&due) {
            if Instant::now() < *at || lock(&d.lifted_at).is_some() {
                continue;
            }
            d.lift_sent.store(true, Ordering::Relaxed);
            let path = format!("/v1/holds/{}", d.hold);
            match client.call(Method::DELETE, &path, None, Bytes::new()).await {
                Ok((StatusCode::NO_CONTENT | StatusCode::NOT_FOUND, _)) => {
                    *lock(&d.lifted_at) = Some(Instant::now());
                    run.note(&format!(
                        "lifted hold {} (seqs {}..={})",
                        d.hold, d.first_seq, d.last_seq
                    ));
                }
                Ok((status, b)) => {
                    run.fail(format!("DELETE {path} answered {status}: {}", snippet(&b)))
                }
                Err(_) => break,
            }
        }
        if let Some(v) = client.get_json("/v1/retention", &run.c.q_errors).await {
            run.c.retention_polls.fetch_add(1, Ordering::Relaxed);
            if let Some(first) = v["first_seq"].as_u64() {
                observe_first_seq(&run, first);
            } else {
                run.fail(format!("GET /v1/retention without first_seq: {v}"));
            }
        }
        tokio::time::sleep(RETENTION_POLL).await;
    }
}

/// The first retained seq must never go back nor pass a day still held.
pub fn observe_first_seq(run: &Run, first: u64) {
    let prev = run.first_seq.fetch_max(first, Ordering::Relaxed);
    if first < prev {
        run.fail(format!(
            "the first retained seq went back from {prev} to {first}"
        ));
    }
    for d in &run.days {
        if first > d.last_seq {
            let mut seen = lock(&d.dropped_seen);
            if seen.is_none() {
                *seen = Some(Instant::now());
                let after = lock(&d.lifted_at)
                    .map(|t| {
                        format!(
                            "{:.1} s after its hold was lifted",
                            t.elapsed().as_secs_f64()
                        )
                    })
                    .unwrap_or_else(|| "before the lift was answered".into());
                run.note(&format!(
                    "retention dropped {} (seqs {}..={}), {after}",
                    d.day, d.first_seq, d.last_seq
                ));
            }
            if !d.lift_sent.load(Ordering::Relaxed) {
                run.fail(format!(
                    "retention dropped {} (seqs {}..={}) while it was held (first retained seq \
                     {first})",
                    d.day, d.first_seq, d.last_seq
                ));
            }
        } else if first > d.first_seq {
            run.fail(format!(
                "the first retained seq {first} is inside day {} (seqs {}..={}): retention \
                 drops whole days",
                d.day, d.first_seq, d.last_seq
            ));
        }
    }
}
