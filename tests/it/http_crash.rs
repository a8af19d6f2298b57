//! SIGKILL `stele serve` while clients post over HTTP, then restart it on the
//! same data directory: every acknowledged (201) event must be there exactly
//! once at its acknowledged seq, and a request that got no answer must, when
//! retried with the same ids, be answered 200 with the seqs it was stored at,
//! or 201 if it was not stored, never stored twice.
//!
//! The kill instants come from a seeded RNG: the seed is printed, and
//! `STELE_CRASH_SEED=N cargo test --test it http_crash::` repeats a run.

use crate::support::daemon::Daemon;
use crate::support::http::{exchange, Reply};
use crate::support::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use stele::testkit::EventGen;

const ROUNDS: u64 = 6;
const CLIENTS: u64 = 8;
/// Most events in one posted array or NDJSON body.
const BATCH_MAX: u64 = 50;
/// Upper bound of the random wait before the kill, once ingest is flowing.
const KILL_WINDOW_MS: u64 = 1200;

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 over std::net, without panics: a dead daemon is an outcome.
// ---------------------------------------------------------------------------

/// A request with a body of `ctype`, kept alive unless `close`.
fn request_with(method: &str, path: &str, ctype: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// One request on a fresh connection; panics if there is no whole answer
/// (used only against a daemon that must be up).
fn call(addr: &str, method: &str, path: &str, ctype: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    exchange(&mut s, &request_with(method, path, ctype, body, true))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn get(addr: &str, path: &str) -> Reply {
    call(addr, "GET", path, "application/json", b"")
}

// ---------------------------------------------------------------------------
// The clients
// ---------------------------------------------------------------------------

/// A posted request, kept byte for byte to retry it.
#[derive(Clone)]
struct Sent {
    ctype: &'static str,
    body: Vec<u8>,
    ids: Vec<String>,
}

enum Outcome {
    /// 201: the seqs, in the order of `ids`.
    Acked(Vec<u64>),
    /// The request went out (or may have) and no whole answer came back.
    NoAnswer(String),
    /// The connection was refused: the daemon was already gone.
    NotSent(String),
    /// Any other answer: a failure of the test.
    Unexpected(u16, String),
}

/// The ids and seqs of a 201 or a replay, checked against what was sent.
fn acked_seqs(sent: &Sent, r: &Reply) -> Result<Vec<u64>, String> {
    let v = r.json_or_null();
    let items = v["events"]
        .as_array()
        .ok_or_else(|| format!("no events list: {}", r.text()))?;
    let ids: Vec<&str> = items.iter().filter_map(|e| e["id"].as_str()).collect();
    if ids != sent.ids {
        return Err(format!("answered for ids {ids:?}, sent {:?}", sent.ids));
    }
    items
        .iter()
        .map(|e| e["seq"].as_u64().ok_or_else(|| format!("no seq in {e}")))
        .collect()
}

/// Posts batches until the daemon goes away (or `stop`); returns every
/// request with its outcome. At most the last one is not `Acked`.
fn client(
    addr: &str,
    round: u64,
    client: u64,
    seed: u64,
    stop: &AtomicBool,
    acked_requests: &AtomicUsize,
) -> Vec<(Sent, Outcome)> {
    let mut gen = EventGen::new(seed ^ (round << 32) ^ (client << 48) ^ 0x5eed);
    let mut out = Vec::new();
    let mut conn: Option<TcpStream> = None;
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let kind = gen.next_u64() % 3;
        let count = if kind == 0 {
            1
        } else {
            1 + gen.next_u64() % BATCH_MAX
        };
        let mut events = Vec::new();
        let mut ids = Vec::new();
        for i in 0..count {
            let mut v = gen.json();
            let id = format!("r{round}-c{client}-q{n}-e{i}");
            v["id"] = json!(id);
            ids.push(id);
            events.push(v);
        }
        let (ctype, body) = match kind {
            0 => ("application/json", events[0].to_string().into_bytes()),
            1 => (
                "application/json",
                Value::Array(events).to_string().into_bytes(),
            ),
            _ => {
                let mut b = Vec::new();
                for e in &events {
                    b.extend_from_slice(e.to_string().as_bytes());
                    b.push(b'\n');
                }
                ("application/x-ndjson", b)
            }
        };
        let sent = Sent { ctype, body, ids };
        let mut s = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    s
                }
                Err(e) => {
                    out.push((sent, Outcome::NotSent(e.to_string())));
                    break;
                }
            },
        };
        let req = request_with("POST", "/v1/events", sent.ctype, &sent.body, false);
        match exchange(&mut s, &req) {
            Ok(r) if r.status == 201 => match acked_seqs(&sent, &r) {
                Ok(seqs) => {
                    if r.header("connection")
                        .is_none_or(|v| !v.eq_ignore_ascii_case("close"))
                    {
                        conn = Some(s);
                    }
                    acked_requests.fetch_add(1, Ordering::Relaxed);
                    out.push((sent, Outcome::Acked(seqs)));
                }
                Err(e) => {
                    out.push((sent, Outcome::Unexpected(201, e)));
                    break;
                }
            },
            Ok(r) => {
                let text = r.text();
                out.push((sent, Outcome::Unexpected(r.status, text)));
                break;
            }
            Err(e) => {
                out.push((sent, Outcome::NoAnswer(e.to_string())));
                break;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

fn ready_state(addr: &str) -> Value {
    let r = get(addr, "/readyz");
    assert!(matches!(r.status, 200 | 503), "/readyz: {}", r.text());
    r.json_or_null()["state"].clone()
}

/// Polls `/readyz` until queries see the whole log; returns its last seq.
fn wait_fully_indexed(addr: &str, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let st = ready_state(addr);
        let last = st["log_last_seq"].as_u64().unwrap();
        if st["indexed_seq"].as_u64().unwrap() >= last {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "the indexes did not catch up within {within:?}: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every stored event as (seq, id), by an NDJSON export (in arrival order).
fn export_all(addr: &str) -> Vec<(u64, String)> {
    let r = get(addr, "/v1/export?format=ndjson&sort=seq");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                v["seq"].as_u64().unwrap(),
                v["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every stored event as (seq, id), by paging `GET /v1/events?order=asc&sort=seq` (arrival order).
fn page_all(addr: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut path = "/v1/events?order=asc&sort=seq&limit=1000".to_string();
    loop {
        let r = get(addr, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = r.json_or_null();
        for e in v["events"].as_array().unwrap() {
            out.push((
                e["seq"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_string(),
            ));
        }
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/events?order=asc&sort=seq&limit=1000&cursor={c}"),
            None => return out,
        }
    }
}

/// The request an id belongs to (`r{round}-c{client}-q{n}`).
fn request_of(id: &str) -> &str {
    id.rsplit_once("-e").map_or(id, |(r, _)| r)
}

/// Checks a full walk: seqs 1, 2, 3, ... without a gap or repeat, no id
/// twice, only ids this test sent, and every acknowledged id at its seq.
/// Ids stored twice are reported once per request, with what the request
/// went through (`history`).
fn check_walk(
    how: &str,
    walk: &[(u64, String)],
    last_seq: u64,
    acked: &HashMap<String, u64>,
    sent_ids: &HashSet<String>,
    history: &HashMap<String, String>,
    failures: &mut Vec<String>,
) {
    let mut where_is: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut expect = 1;
    for (seq, id) in walk {
        if *seq != expect {
            failures.push(format!("{how}: seq {seq} where {expect} was expected"));
        }
        expect = seq + 1;
        where_is.entry(id).or_default().push(*seq);
        if !sent_ids.contains(id) {
            failures.push(format!("{how}: id {id} at seq {seq} was never sent"));
        }
    }
    if walk.len() as u64 != last_seq {
        failures.push(format!(
            "{how}: {} events, the log's last seq is {last_seq}",
            walk.len()
        ));
    }
    // request -> (ids stored more than once, every seq they are at)
    let mut twice: std::collections::BTreeMap<&str, (usize, Vec<u64>)> = Default::default();
    for (id, seqs) in &where_is {
        if seqs.len() > 1 {
            let e = twice.entry(request_of(id)).or_default();
            e.0 += 1;
            e.1.extend(seqs);
        }
    }
    for (req, (n, mut seqs)) in twice {
        seqs.sort();
        failures.push(format!(
            "{how}: {n} ids of request {req} are stored more than once, at seqs {}; the request {}",
            ranges(&seqs),
            history.get(req).map_or("", String::as_str)
        ));
    }
    for (id, seq) in acked {
        match where_is.get(id.as_str()) {
            Some(s) if s.contains(seq) => {}
            Some(s) => failures.push(format!(
                "{how}: {id} acknowledged at seq {seq}, found at {s:?}"
            )),
            None => failures.push(format!("{how}: {id} acknowledged at seq {seq} is missing")),
        }
    }
}

fn seed() -> u64 {
    match std::env::var("STELE_CRASH_SEED") {
        Ok(s) => s.parse().expect("STELE_CRASH_SEED must be a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

fn kill(mut d: Daemon) {
    d.child.kill().expect("SIGKILL stele serve");
    d.child.wait().unwrap();
}

/// Posts `sent` again; Ok(seqs, replayed) for a 201 or a 200 replay that
/// names the same ids.
fn retry(addr: &str, sent: &Sent) -> Result<(Vec<u64>, bool), String> {
    let r = call(addr, "POST", "/v1/events", sent.ctype, &sent.body);
    let replayed = r.json_or_null()["replayed"] == json!(true);
    match (r.status, replayed, acked_seqs(sent, &r)) {
        (201, false, Ok(seqs)) => Ok((seqs, false)),
        (200, true, Ok(seqs)) => Ok((seqs, true)),
        (status, _, _) => Err(format!("{status} {}", r.text())),
    }
}

/// `[1, 2, 3, 7, 8]` as `1..=3, 7..=8`.
fn ranges(seqs: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}..={}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

fn span(seqs: &[u64]) -> String {
    format!("{}..={}", seqs[0], seqs[seqs.len() - 1])
}

#[test]
fn acknowledged_http_events_survive_sigkill_exactly_once() {
    let seed = seed();
    eprintln!("http_crash seed {seed} (rerun with STELE_CRASH_SEED={seed})");
    let mut rng = EventGen::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let started = Instant::now();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut sent_ids: HashSet<String> = HashSet::new();
    let (mut in_flight_total, mut stored_unanswered, mut unstored_unanswered) = (0, 0, 0);
    // Every failure once (later rounds re-check earlier data), in order.
    let mut failures: Vec<String> = Vec::new();
    let mut seen_failures: HashSet<String> = HashSet::new();
    // What each request went through, for messages about it.
    let mut history: HashMap<String, String> = HashMap::new();
    let mut daemon = Some(Daemon::start_without_detectors(dir));
    for round in 0..ROUNDS {
        let round_started = Instant::now();
        let mut found = Vec::new();
        // Ingest from CLIENTS threads; SIGKILL at a random instant once
        // every client had time to get going.
        let stop = AtomicBool::new(false);
        let acked_requests = AtomicUsize::new(0);
        let kill_after_ms = rng.next_u64() % KILL_WINDOW_MS;
        let addr = daemon.as_ref().unwrap().addr.clone();
        let results: Vec<Vec<(Sent, Outcome)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (addr, stop, acked_requests) = (&addr, &stop, &acked_requests);
                    scope.spawn(move || client(addr, round, c, seed, stop, acked_requests))
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            while acked_requests.load(Ordering::Relaxed) < CLIENTS as usize {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: ingest did not get going"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(kill_after_ms));
            kill(daemon.take().unwrap());
            stop.store(true, Ordering::Relaxed);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });

        let mut unanswered: Vec<Sent> = Vec::new();
        let mut last_acked: Vec<(Sent, Vec<u64>)> = Vec::new();
        let (mut round_acked, mut in_flight) = (0usize, 0);
        let mut reasons = std::collections::BTreeSet::new();
        for per_client in results {
            let mut last = None;
            for (sent, outcome) in per_client {
                sent_ids.extend(sent.ids.iter().cloned());
                let req = request_of(&sent.ids[0]).to_string();
                match outcome {
                    Outcome::Acked(seqs) => {
                        for (id, seq) in sent.ids.iter().zip(&seqs) {
                            acked.insert(id.clone(), *seq);
                        }
                        round_acked += seqs.len();
                        history.insert(req, format!("acknowledged at seqs {}", span(&seqs)));
                        last = Some((sent, seqs));
                    }
                    Outcome::NoAnswer(why) => {
                        in_flight += 1;
                        reasons.insert(format!("no answer: {why}"));
                        history.insert(req, "got no answer before the kill".into());
                        unanswered.push(sent);
                    }
                    Outcome::NotSent(why) => {
                        reasons.insert(format!("not sent: {why}"));
                        history.insert(req, "was refused a connection after the kill".into());
                        unanswered.push(sent);
                    }
                    Outcome::Unexpected(status, text) => found.push(format!(
                        "request {req} of {} events got {status} before the kill: {text}",
                        sent.ids.len()
                    )),
                }
            }
            last_acked.extend(last);
        }
        in_flight_total += in_flight;

        // Restart, and at once (the daemon answers only once its indexes
        // hold the whole log) retry what got no answer...
        let d = daemon.insert(Daemon::start_without_detectors(dir));
        for sent in &unanswered {
            let req = request_of(&sent.ids[0]).to_string();
            match retry(&d.addr, sent) {
                Ok((seqs, replayed)) => {
                    if replayed {
                        stored_unanswered += 1;
                    } else {
                        unstored_unanswered += 1;
                    }
                    let h = history.get_mut(&req).unwrap();
                    h.push_str(&format!(
                        ", and its retry right after the restart answered {} with seqs {}",
                        if replayed {
                            "200 (replayed)"
                        } else {
                            "201 (stored now)"
                        },
                        span(&seqs)
                    ));
                    acked.extend(sent.ids.iter().cloned().zip(seqs));
                }
                Err(e) => found.push(format!(
                    "the retry after the restart of request {req} ({} events, {}) answered {e}",
                    sent.ids.len(),
                    history[&req]
                )),
            }
        }
        // ... retry the last acknowledged request of every client: a replay
        // with the same seqs, nothing stored ...
        for (sent, seqs) in &last_acked {
            let req = request_of(&sent.ids[0]);
            match retry(&d.addr, sent) {
                Ok((got, true)) if &got == seqs => {}
                Ok((got, replayed)) => found.push(format!(
                    "request {req} of {} events, acknowledged at seqs {}, retried right after \
                     the restart: answered {} with seqs {} (stored twice)",
                    sent.ids.len(),
                    span(seqs),
                    if replayed { 200 } else { 201 },
                    span(&got)
                )),
                Err(e) => found.push(format!(
                    "request {req} of {} events, acknowledged at seqs {}, retried right after \
                     the restart: {e}",
                    sent.ids.len(),
                    span(seqs)
                )),
            }
        }
        // ... and read acknowledged events back by id: the newest of every
        // client and a random sample of all rounds.
        let all: Vec<(&String, &u64)> = acked.iter().collect();
        let mut probe: Vec<(String, u64)> = last_acked
            .iter()
            .map(|(s, q)| (s.ids[s.ids.len() - 1].clone(), q[q.len() - 1]))
            .collect();
        for _ in 0..40 {
            let (id, seq) = all[(rng.next_u64() % all.len() as u64) as usize];
            probe.push((id.clone(), *seq));
        }
        for (id, seq) in &probe {
            let r = get(&d.addr, &format!("/v1/events/{id}"));
            let v = r.json_or_null();
            if r.status == 200 && v["id"] == json!(id) {
                if v["seq"] != json!(seq) {
                    found.push(format!(
                        "GET /v1/events/{id} after the restart: seq {}, acknowledged at seq {seq}",
                        v["seq"]
                    ));
                }
            } else {
                found.push(format!(
                    "GET /v1/events/{id} (acknowledged at seq {seq}) after the restart: {} {}",
                    r.status,
                    r.text()
                ));
            }
        }

        // The full walk, once the indexes caught up.
        let last_seq = wait_fully_indexed(&d.addr, Duration::from_secs(60));
        check_walk(
            "export",
            &export_all(&d.addr),
            last_seq,
            &acked,
            &sent_ids,
            &history,
            &mut found,
        );
        if round == ROUNDS - 1 {
            check_walk(
                "paged listing",
                &page_all(&d.addr),
                last_seq,
                &acked,
                &sent_ids,
                &history,
                &mut found,
            );
        }
        let new: Vec<String> = found
            .into_iter()
            .filter(|f| seen_failures.insert(f.clone()))
            .collect();
        eprintln!(
            "round {round}: killed {kill_after_ms} ms in; {round_acked} events acknowledged, \
             {} requests unanswered ({in_flight} in flight: {reasons:?}); log at seq \
             {last_seq}; {} new failures; {:.1?}",
            unanswered.len(),
            new.len(),
            round_started.elapsed()
        );
        failures.extend(new.into_iter().map(|f| format!("round {round}: {f}")));
    }
    drop(daemon);
    eprintln!(
        "{ROUNDS} rounds in {:.1?}: {} events acknowledged, {in_flight_total} requests in flight \
         at a kill; of the unanswered, {stored_unanswered} retries were replays, \
         {unstored_unanswered} stored them",
        started.elapsed(),
        acked.len()
    );

    let (code, out) = verify(&[dir]);
    if code != 0 {
        failures.push(format!("stele verify exited {code}:\n{out}"));
    }
    let out = stele()
        .args(["check", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run stele check");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("stele check ({:?}): {}", out.status.code(), text.trim_end());
    if out.status.code() != Some(0) {
        failures.push(format!(
            "stele check exited {:?}:\n{text}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(30).map(String::as_str).collect();
        panic!(
            "seed {seed} (rerun with STELE_CRASH_SEED={seed}): {} failures:\n  {}",
            failures.len(),
            shown.join("\n  ")
        );
    }
    assert!(
        text.contains(&format!("checked {} events", acked.len())),
        "{text}"
    );
    assert!(
        acked.len() > 2000,
        "only {} events acknowledged: the kills came too early to test anything",
        acked.len()
    );
    assert!(
        in_flight_total >= ROUNDS as usize,
        "only {in_flight_total} requests were in flight at the kills"
    );
}

/// The same contract without randomness: acknowledged batches, SIGKILL right
/// after the last acknowledgement (the indexes trail the log by up to a
/// checkpoint interval), restart, and the very first request retries the last
/// batch: it must be a replay, and the event readable by id.
#[test]
fn a_retry_right_after_a_restart_is_a_replay() {
    const BATCHES: u64 = 10;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = Daemon::start_without_detectors(dir);
    let mut gen = EventGen::new(7);
    let mut last = None;
    for b in 0..BATCHES {
        let mut body = Vec::new();
        let mut ids = Vec::new();
        for i in 0..1000 {
            let mut v = gen.json();
            let id = format!("b{b}-e{i}");
            v["id"] = json!(id);
            ids.push(id);
            body.extend_from_slice(v.to_string().as_bytes());
            body.push(b'\n');
        }
        let sent = Sent {
            ctype: "application/x-ndjson",
            body,
            ids,
        };
        let r = call(&d.addr, "POST", "/v1/events", sent.ctype, &sent.body);
        assert_eq!(r.status, 201, "{}", r.text());
        let seqs = acked_seqs(&sent, &r).unwrap();
        assert_eq!(seqs[0], b * 1000 + 1);
        last = Some((sent, seqs));
    }
    kill(d);
    let d = Daemon::start_without_detectors(dir);
    // First a read of the newest event, then the retry of its batch.
    let last_id = format!("b{}-e999", BATCHES - 1);
    let lookup = get(&d.addr, &format!("/v1/events/{last_id}"));
    let (sent, seqs) = last.unwrap();
    let answer = retry(&d.addr, &sent);
    let state = ready_state(&d.addr);
    let mut wrong = Vec::new();
    if (lookup.status, lookup.json_or_null()["seq"].as_u64()) != (200, Some(BATCHES * 1000)) {
        wrong.push(format!(
            "GET /v1/events/{last_id} (acknowledged at seq {}) answered {} {}",
            BATCHES * 1000,
            lookup.status,
            lookup.text()
        ));
    }
    match &answer {
        Ok((got, true)) if *got == seqs => {}
        Ok((got, replayed)) => wrong.push(format!(
            "the retry of the last batch (acknowledged at seqs {}) answered {} with seqs {} \
             (stored a second time)",
            span(&seqs),
            if *replayed { "200 replayed" } else { "201" },
            span(got)
        )),
        Err(e) => wrong.push(format!(
            "the retry of the last batch (acknowledged at seqs {}) answered {e}",
            span(&seqs)
        )),
    }
    assert!(
        wrong.is_empty(),
        "right after the restart:\n  {}\n/readyz just after: {state}",
        wrong.join("\n  ")
    );
    let last_seq = wait_fully_indexed(&d.addr, Duration::from_secs(60));
    assert_eq!(last_seq, BATCHES * 1000, "the retry stored events");
}
