//! SIGKILL a real `stele append` process at random instants while it appends
//! with several threads and tiny segments, 24 rounds in one data directory;
//! after each, every acknowledged event must be present exactly once, at the
//! seq it was acknowledged with, and the directory must verify. Most kills
//! wait for the first acknowledgement: `stele append` first catches the
//! indexes up with what the last kill left unindexed (its idempotency looks
//! ids up there), and a kill always during that would append nothing.

use crate::support::*;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use stele::clock::SystemClock;
use stele::log::{Log, LogConfig};
use stele::testkit::EventGen;

const ROUNDS: u64 = 24;

#[derive(serde::Deserialize)]
struct Ack {
    first_seq: u64,
    ids: Vec<String>,
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once_and_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut rng = EventGen::new(99);
    let mut kills_mid_write = 0;
    for round in 0..ROUNDS {
        // Input: enough events that the child is still busy when killed.
        let mut input = Vec::new();
        let mut gen = EventGen::new(1000 + round);
        for i in 0..16_000 {
            let mut v = gen.json();
            v["id"] = format!("r{round}-e{i}").into();
            serde_json::to_writer(&mut input, &v).unwrap();
            input.push(b'\n');
        }
        let mut child = stele()
            .args(["append", "--batch", "16", "--concurrency", "4"])
            .args(["--segment-bytes-max", "65536", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn stele append");
        let mut stdin = child.stdin.take().unwrap();
        // The feeder keeps stdin open until the kill, so the child never
        // finishes by itself.
        let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
            let _ = killed_rx.recv();
        });
        let stdout = child.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
                let _ = first_tx.send(());
            }
            lines
        });
        // A random instant: one round in four from the start (recovery, the
        // indexes' catch-up with what the last kill left unindexed), the
        // others after the first acknowledgement, while appending.
        if round % 4 != 0 {
            first_rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("round {round}: no acknowledgement in 120 s"));
        }
        let wait_ms = 5 + rng.next_u64() % 400;
        std::thread::sleep(Duration::from_millis(wait_ms));
        let still_running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        drop(killed_tx);
        let lines = reader.join().unwrap();
        let _ = feeder.join();
        if still_running {
            kills_mid_write += 1;
        } else {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("round {round}: stele append exited by itself ({status}): {err}");
        }
        // Only whole lines are acknowledgements; a line cut by the kill is not.
        for line in &lines {
            let Ok(ack) = serde_json::from_str::<Ack>(line) else {
                continue;
            };
            for (i, id) in ack.ids.into_iter().enumerate() {
                acked.push((ack.first_seq + i as u64, id));
            }
        }

        // Reopen (recovery) and check every acknowledgement so far.
        let log = Log::open(dir, LogConfig::default(), Arc::new(SystemClock))
            .unwrap_or_else(|e| panic!("round {round}: recovery failed: {e}"));
        let mut seen = HashSet::new();
        for ev in log.iter() {
            let ev = ev.unwrap_or_else(|e| panic!("round {round}: read failed: {e}"));
            assert!(
                seen.insert(ev.event.id.clone()),
                "round {round}: event {} stored twice",
                ev.event.id
            );
        }
        for (seq, id) in &acked {
            let ev = log
                .get(*seq)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged seq {seq} lost"));
            assert_eq!(
                &ev.event.id, id,
                "round {round}: seq {seq} holds another event"
            );
        }
        drop(log);
        let (code, out) = verify(&[dir]);
        assert_eq!(code, 0, "round {round}: verify failed:\n{out}");
    }
    eprintln!(
        "{ROUNDS} rounds, {kills_mid_write} kills while appending, {} events acknowledged, \
         {} segments",
        acked.len(),
        segment_files(dir).len()
    );
    assert!(kills_mid_write >= ROUNDS - 1);
    assert!(
        acked.len() > 1000,
        "only {} events acknowledged: the kills came too early to test anything",
        acked.len()
    );
    assert!(
        segment_files(dir).len() > 3,
        "the test must cross segment rotations"
    );
}
