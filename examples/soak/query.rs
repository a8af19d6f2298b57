//! The query clients: filtered listings, full-text search, statistics, and get by id
//! of recently acknowledged and of seeded events, each answer checked against what was
//! acknowledged and what retention has dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use stele::testkit::EventGen;

use crate::client::{snippet, CallError, Client};
use crate::common::{enc, lock};
use crate::state::Run;

/// Values to query for, drawn from generated events (same distribution as ingested).
pub struct Picks {
    pub tenants: Vec<String>,
    pub actions: Vec<String>,
    pub users: Vec<String>,
    pub words: Vec<String>,
}

impl Picks {
    pub fn new(seed: u64) -> Picks {
        let mut gen = EventGen::new(seed);
        let mut p = Picks {
            tenants: Vec::new(),
            actions: Vec::new(),
            users: Vec::new(),
            words: Vec::new(),
        };
        for _ in 0..200 {
            let ev = gen.sized(500);
            p.tenants.extend(ev.tenant.clone());
            p.actions.push(ev.action.clone());
            p.users.extend(ev.user_id.clone());
            let words = ev
                .description
                .as_deref()
                .unwrap_or("")
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|w| w.len() > 4)
                .map(str::to_ascii_lowercase)
                .take(1)
                .collect::<Vec<_>>();
            p.words.extend(words);
        }
        for v in [&mut p.tenants, &mut p.actions, &mut p.users, &mut p.words] {
            v.sort();
            v.dedup();
            if v.is_empty() {
                v.push("audit".into());
            }
        }
        p
    }
}

fn pick<'a, T>(v: &'a [T], rng: &mut EventGen) -> &'a T {
    &v[(rng.next_u64() % v.len() as u64) as usize]
}

/// Checks a listing: events present, none below the first retained seq seen before.
fn check_listing(run: &Run, path: &str, v: &Value, first_before: u64) {
    let Some(events) = v["events"].as_array() else {
        run.fail(format!("GET {path}: no events array"));
        return;
    };
    if events.is_empty() {
        run.c.q_empty.fetch_add(1, Ordering::Relaxed);
    }
    for e in events {
        match e["seq"].as_u64() {
            Some(s) if s >= first_before => {}
            s => run.fail(format!(
                "GET {path} returned seq {s:?}, below the first retained seq {first_before} \
                 (a dropped event)"
            )),
        }
    }
}

pub async fn query_client(run: Arc<Run>, i: usize) {
    let picks = Picks::new(run.o.seed ^ 0x9e37 ^ i as u64);
    let mut rng = EventGen::new(run.o.seed.wrapping_mul(31).wrapping_add(i as u64));
    let mut client = Client::new(&run);
    let errors = &run.c.q_errors;
    let mut k = i;
    while !run.stopping() {
        k += 1;
        let first_before = run.first_seq.load(Ordering::Relaxed);
        match k % 8 {
            0 | 1 => {
                let (name, value) = match rng.next_u64() % 4 {
                    0 => ("tenant", pick(&picks.tenants, &mut rng).clone()),
                    1 => ("action", pick(&picks.actions, &mut rng).clone()),
                    2 => ("user_id", pick(&picks.users, &mut rng).clone()),
                    _ => ("min_severity", "warning".to_owned()),
                };
                let path = format!("/v1/events?{name}={}&limit=100", enc(&value));
                if let Some(v) = client.get_json(&path, errors).await {
                    run.c.q_list.fetch_add(1, Ordering::Relaxed);
                    check_listing(&run, &path, &v, first_before);
                }
            }
            2 | 3 => {
                let path = format!(
                    "/v1/search?q={}&limit=100",
                    enc(pick::<String>(&picks.words, &mut rng))
                );
                if let Some(v) = client.get_json(&path, errors).await {
                    run.c.q_search.fetch_add(1, Ordering::Relaxed);
                    check_listing(&run, &path, &v, first_before);
                }
            }
            4 => {
                let path = if rng.next_u64() % 2 == 0 {
                    "/v1/stats?hours=720".to_owned()
                } else {
                    format!(
                        "/v1/stats?interval=day&tenant={}",
                        enc(pick::<String>(&picks.tenants, &mut rng))
                    )
                };
                if let Some(v) = client.get_json(&path, errors).await {
                    run.c.q_stats.fetch_add(1, Ordering::Relaxed);
                    if !v["total"].is_u64() {
                        run.fail(format!(
                            "GET {path}: no total: {}",
                            snippet(v.to_string().as_bytes())
                        ));
                    }
                }
            }
            5 | 6 => get_recent(&run, &mut client, &mut rng).await,
            _ => get_seeded(&run, &mut client, &mut rng).await,
        }
        tokio::time::sleep(Duration::from_millis(run.o.query_pause_ms)).await;
    }
}

/// Get by id of a recently acknowledged event the indexes hold: 200 at its seq.
async fn get_recent(run: &Run, client: &mut Client, rng: &mut EventGen) {
    // What the indexes hold now (a restarted daemon holds at least as much).
    if let Some(v) = client.get_json("/readyz", &run.c.q_errors).await {
        if let Some(s) = v["state"]["indexed_seq"].as_u64() {
            run.indexed_seq.fetch_max(s, Ordering::Relaxed);
        }
    }
    let indexed = run.indexed_seq.load(Ordering::Relaxed);
    let target = {
        let r = lock(&run.recent);
        (0..8)
            .filter(|_| !r.is_empty())
            .map(|_| r[(rng.next_u64() % r.len() as u64) as usize])
            .find(|&(_, s)| s <= indexed)
    };
    let Some((n, seq)) = target else { return };
    let path = format!("/v1/events/{}", enc(&run.id(n)));
    match client.call(Method::GET, &path, None, Bytes::new()).await {
        Ok((StatusCode::OK, b)) => {
            run.c.q_get.fetch_add(1, Ordering::Relaxed);
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if v["seq"].as_u64() != Some(seq) || v["id"].as_str() != Some(&run.id(n)) {
                run.fail(format!(
                    "GET {path}: expected seq {seq}, got {}",
                    snippet(&b)
                ));
            }
        }
        Ok((status, b)) => run.fail(format!(
            "GET {path} (acknowledged at seq {seq}, indexed through {indexed}) answered \
             {status}: {}",
            snippet(&b)
        )),
        Err(CallError::Stopping) => {}
        Err(CallError::Transport(_)) => {
            run.c.q_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Get by id of a seeded event: 200 while its day is held, 404 once dropped.
async fn get_seeded(run: &Run, client: &mut Client, rng: &mut EventGen) {
    let d = pick(&run.days, rng);
    let off = rng.next_u64() % d.count;
    let n = d.first_n + off;
    let seq = lock(&run.acked).get(n as usize).copied().unwrap_or(0);
    let lift_sent_before = d.lift_sent.load(Ordering::Relaxed);
    let first_before = run.first_seq.load(Ordering::Relaxed);
    let path = format!("/v1/events/{}", enc(&run.id(n)));
    match client.call(Method::GET, &path, None, Bytes::new()).await {
        Ok((StatusCode::OK, b)) => {
            run.c.q_get_seeded.fetch_add(1, Ordering::Relaxed);
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if v["seq"].as_u64() != Some(seq) {
                run.fail(format!(
                    "GET {path}: expected seq {seq}, got {}",
                    snippet(&b)
                ));
            }
            if seq < first_before {
                run.fail(format!(
                    "GET {path} returned seq {seq}, below the first retained seq \
                     {first_before} (dropped by retention)"
                ));
            }
        }
        Ok((StatusCode::NOT_FOUND, b)) => {
            run.c.q_get_seeded.fetch_add(1, Ordering::Relaxed);
            if seq < first_before {
                run.c.q_get_dropped_404.fetch_add(1, Ordering::Relaxed);
            } else if !lift_sent_before && !d.lift_sent.load(Ordering::Relaxed) {
                run.fail(format!(
                    "GET {path} (seeded at seq {seq}, day {} still held) answered 404: {}",
                    d.day,
                    snippet(&b)
                ));
            }
        }
        Ok((status, b)) => run.fail(format!(
            "GET {path} (seeded at seq {seq}) answered {status}: {}",
            snippet(&b)
        )),
        Err(CallError::Stopping) => {}
        Err(CallError::Transport(_)) => {
            run.c.q_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
