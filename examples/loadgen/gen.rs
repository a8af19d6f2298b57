//! Event generation: realistic events serialized into request bodies on a thread
//! of their own, ahead of the clients, with a sample kept to draw query values from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stele::event::Event;
use stele::testkit::EventGen;
use tokio::sync::mpsc;

use crate::client::Timing;
use crate::common::base_time;

pub fn next_event(g: &mut EventGen, bytes: usize) -> Event {
    if bytes == 0 {
        g.next_event()
    } else {
        g.sized(bytes)
    }
}

pub fn to_json(ev: &Event, out: &mut Vec<u8>) {
    serde_json::to_writer(out, ev).expect("generated events serialize to JSON");
}

/// A request body ready to post: NDJSON (one or more lines) or one JSON object.
pub struct Body {
    pub bytes: Bytes,
    pub events: u64,
    /// The first event and the length of its line, to swap in a marked copy.
    pub head: Event,
    pub head_len: usize,
}

impl Body {
    /// The same body with the first event's `correlation_id` set to `cid`.
    pub fn marked(&self, cid: &str) -> Bytes {
        let mut ev = self.head.clone();
        ev.correlation_id = Some(cid.to_owned());
        let mut out = Vec::with_capacity(self.bytes.len() + 64);
        to_json(&ev, &mut out);
        out.push(b'\n');
        out.extend_from_slice(&self.bytes[self.head_len..]);
        Bytes::from(out)
    }
}

/// What to pick query values from: a sample of the generated events.
#[derive(Clone)]
pub struct Sample {
    pub id: String,
    pub action: String,
    pub tenant: Option<String>,
    pub user_id: Option<String>,
    pub severity: Option<&'static str>,
    pub entity: Option<(String, String)>,
    pub word: Option<String>,
}

impl Sample {
    pub fn of(ev: &Event) -> Sample {
        let mut words: Vec<String> = ev
            .description
            .as_deref()
            .unwrap_or("")
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() > 3 && !w.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_ascii_lowercase)
            .collect();
        words.sort();
        words.dedup();
        Sample {
            id: ev.id.clone(),
            action: ev.action.clone(),
            tenant: ev.tenant.clone(),
            user_id: ev.user_id.clone(),
            severity: ev.severity.map(|s| s.as_str()),
            entity: ev.entity_type.clone().zip(ev.entity_id.clone()),
            word: words.get(words.len() / 2).cloned(),
        }
    }
}

/// Generates bodies of `per_body` events on a thread of its own, ahead of the clients
/// (at most `queue` bodies), until `total` events (if given) or until the receiver is
/// dropped. Returns a sample of every `sample_every`-th event when it ends, and how
/// fast it generated.
pub fn producer(
    seed: u64,
    event_bytes: usize,
    per_body: usize,
    total: Option<u64>,
    sample_every: u64,
    queue: usize,
) -> (mpsc::Receiver<Body>, std::thread::JoinHandle<Produced>) {
    producer_spread(
        seed,
        event_bytes,
        per_body,
        total,
        sample_every,
        queue,
        None,
    )
}

/// Who acts in generated events when the generator's own few hundred users are too
/// few (the `detect` scenario): `users` distinct user ids, each with a home IP of its
/// own, and one user event in `away_one_in` from a random address (a traveller, a new
/// device); events without a user get a random address.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub users: u64,
    pub away_one_in: u64,
}

impl Spread {
    /// Rewrites the user id and IP of `ev` from the random value `r`.
    fn apply(&self, ev: &mut Event, r: u64) {
        if ev.user_id.is_some() {
            let u = r % self.users;
            ev.user_id = Some(format!("u-{u}"));
            if ev.ip.is_some() {
                let away = (r >> 40) % self.away_one_in == 0;
                // Home addresses: a fixed scramble of the user number.
                let n = if away {
                    r >> 16
                } else {
                    u.wrapping_mul(0x9E37_79B9)
                };
                ev.ip = Some(ip_of(n));
            }
        } else if ev.ip.is_some() {
            ev.ip = Some(ip_of(r >> 16));
        }
    }
}

/// An address of 10.0.0.0/8 numbered by `n` (modulo 2^24).
fn ip_of(n: u64) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// [`producer`], with the users and addresses rewritten by `spread` when given.
pub fn producer_spread(
    seed: u64,
    event_bytes: usize,
    per_body: usize,
    total: Option<u64>,
    sample_every: u64,
    queue: usize,
    spread: Option<Spread>,
) -> (mpsc::Receiver<Body>, std::thread::JoinHandle<Produced>) {
    let (tx, rx) = mpsc::channel::<Body>(queue);
    let handle = std::thread::spawn(move || {
        let mut g = EventGen::new(seed).with_base_time(base_time());
        let mut samples = Vec::new();
        let mut made = 0u64;
        let mut busy = Duration::ZERO;
        loop {
            let started = Instant::now();
            let n = match total {
                Some(t) if made >= t => break,
                Some(t) => (per_body as u64).min(t - made),
                None => per_body as u64,
            };
            let mut buf = Vec::with_capacity(n as usize * (event_bytes.max(400) + 200));
            let mut head = None;
            let mut head_len = 0;
            for i in 0..n {
                let mut ev = next_event(&mut g, event_bytes);
                if let Some(s) = &spread {
                    let r = g.next_u64();
                    s.apply(&mut ev, r);
                }
                to_json(&ev, &mut buf);
                if per_body > 1 {
                    buf.push(b'\n');
                }
                if (made + i) % sample_every == 0 {
                    samples.push(Sample::of(&ev));
                }
                if i == 0 {
                    head_len = buf.len();
                    head = Some(ev);
                }
            }
            made += n;
            busy += started.elapsed();
            let Some(head) = head else { break };
            let body = Body {
                bytes: Bytes::from(buf),
                events: n,
                head,
                head_len,
            };
            if tx.blocking_send(body).is_err() {
                break;
            }
        }
        Produced {
            samples,
            events: made,
            busy,
        }
    });
    (rx, handle)
}

/// What a generator thread did.
pub struct Produced {
    pub samples: Vec<Sample>,
    pub events: u64,
    /// Time spent generating and serializing (not waiting for the clients).
    pub busy: Duration,
}

impl Produced {
    /// Events per second one generator thread can make.
    pub fn capacity(&self) -> f64 {
        self.events as f64 / self.busy.as_secs_f64().max(1e-9)
    }
}

pub type SharedRx = Arc<tokio::sync::Mutex<mpsc::Receiver<Body>>>;

/// The next body; counts a stall when none was ready during the measured window.
pub async fn next_body(rx: &SharedRx, timing: &Timing, stalls: &mut u64) -> Option<Body> {
    let mut rx = rx.lock().await;
    match rx.try_recv() {
        Ok(b) => Some(b),
        Err(mpsc::error::TryRecvError::Disconnected) => None,
        Err(mpsc::error::TryRecvError::Empty) => {
            if timing.measured(Instant::now()) {
                *stalls += 1;
            }
            rx.recv().await
        }
    }
}
