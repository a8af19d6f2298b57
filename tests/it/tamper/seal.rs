//! The seal against an attacker who can write the data directory but does
//! not hold the signing key (issue 15): each forgery, then what `stele
//! verify` (with the public key, and with a checkpoint saved off the box)
//! says and what a restarted daemon does.
//!
//! The fixture is what a Stele process leaves behind: four days of events
//! (2026-11-21..24, two segments a day), the closed days signed, and its last
//! checkpoint of the chain head in `DATA_DIR/checkpoint.json` and in a
//! witness directory outside the data directory. The daemon then starts
//! "today", so it also seals and signs 2026-11-24: a restart across
//! midnight.

use crate::support::daemon::Daemon;
use crate::support::forge::*;
use crate::support::*;
use serde_json::Value;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stele::clock::{Clock, ManualClock};
use stele::seal::checkpoint::{Checkpoint, DirWitness, Witness};
use stele::seal::digest::{write_due_digests, SigningKey};
use stele::testkit::EventGen;

const DAY: i64 = 86_400_000_000;
/// 2026-11-21T12:00:00Z.
const NOON: i64 = BEFORE_MIDNIGHT - 2 * DAY - (11 * 3600 + 59 * 60) * 1_000_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn public_hex() -> String {
    stele::seal::digest::public_key_hex(&key().verifying_key())
}

struct Fixture {
    _root: tempfile::TempDir,
    dir: PathBuf,
    witness: PathBuf,
    keyfile: PathBuf,
    config: PathBuf,
    /// Event ids by seq - 1.
    ids: Vec<String>,
}

impl Fixture {
    /// Segment `i` in log order (0: 2026-11-21.0, ..., 7: 2026-11-24.1).
    fn seg(&self, i: usize) -> PathBuf {
        segments(&self.dir)[i].clone()
    }

    /// The id of the event with `seq`.
    fn id(&self, seq: u64) -> &str {
        &self.ids[seq as usize - 1]
    }

    fn witness_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.witness)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn fixture() -> Fixture {
    fixture_signed_with(&key())
}

fn fixture_signed_with(signer: &SigningKey) -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let witness = root.path().join("witness");
    let clock = Arc::new(ManualClock::new(NOON));
    let log = open(&dir, &clock, 4096);
    let mut gen = EventGen::new(5);
    let mut ids = Vec::new();
    for d in 0..4 {
        clock.set(NOON + d * DAY);
        for _ in 0..4 {
            let evs = events(&mut gen, 3, 400);
            ids.extend(evs.iter().map(|e| e.id.clone()));
            log.append(&evs, &stele::event::Provenance::cli()).unwrap();
        }
    }
    let written = write_due_digests(&dir, &log, signer, clock.now_micros()).unwrap();
    assert_eq!(written.len(), 3);
    let cp = Checkpoint::sign(signer, log.head(), clock.now_micros());
    stele::seal::checkpoint::write_local(&dir, &cp).unwrap();
    DirWitness::new(witness.clone()).record(&cp).unwrap();
    drop(log);
    assert_eq!(segments(&dir).len(), 8);
    let keyfile = root.path().join("signing.key");
    write_private(&keyfile, &format!("{}\n", hex::encode(key().to_bytes())));
    let config = root.path().join("stele.toml");
    std::fs::write(
        &config,
        format!(
            "[seal]\nwitness_dir = \"{}\"\ncheckpoint_interval_ms = 100\n",
            witness.display()
        ),
    )
    .unwrap();
    Fixture {
        _root: root,
        dir,
        witness,
        keyfile,
        config,
        ids,
    }
}

/// A same-length forgery of an event's action.
fn forge_action(p: &mut Vec<u8>) {
    let a = stele::event::decode_stored(p, stele::log::format::FORMAT_VERSION)
        .unwrap()
        .event
        .action;
    bincode_string_replace(p, &a, &"x".repeat(a.len()));
}

fn serve_cmd(f: &Fixture, key: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = stele_clean_env();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&f.dir)
        .arg("--config")
        .arg(&f.config)
        .args(extra)
        .env("STELE_SIGNING_KEY_FILE", key);
    cmd
}

fn serve(f: &Fixture) -> Daemon {
    Daemon::spawn(serve_cmd(f, &f.keyfile, &[]))
}

/// Runs `stele serve`, expecting it to refuse to start; returns its stderr.
fn refused(f: &Fixture) -> String {
    let mut child = serve_cmd(f, &f.keyfile, &[])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stele serve did not refuse to start within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "stele serve started:\n{err}");
    err
}

/// `/readyz` once the start-up verification, a digester run and a scrub
/// pass are done.
fn settled(d: &Daemon) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, _, body) = d.get("/readyz");
        assert_eq!(code, 200, "{body}");
        let seal = &body["state"]["seal"];
        if seal["startup_check_done"] == true
            && seal["digester_runs"].as_u64() >= Some(1)
            && seal["scrub_passes"].as_u64() >= Some(1)
        {
            return body;
        }
        assert!(Instant::now() < deadline, "the seal did not settle: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn verify_with(dir: &Path, checkpoints: &[PathBuf]) -> (i32, String) {
    let mut cmd = stele();
    cmd.arg("verify")
        .arg(dir)
        .args(["--public-key", &public_hex()]);
    for c in checkpoints {
        cmd.arg("--checkpoint").arg(c);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn digest_days(dir: &Path) -> Vec<String> {
    let mut days: Vec<String> = std::fs::read_dir(dir.join("digests"))
        .map(|rd| {
            rd.filter_map(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                n.strip_suffix(".digest.json").map(str::to_string)
            })
            .collect()
        })
        .unwrap_or_default();
    days.sort();
    days
}

fn set_seal_config(f: &Fixture, extra: &str) {
    std::fs::write(
        &f.config,
        format!("[seal]\nwitness_dir = \"{}\"\n{extra}", f.witness.display()),
    )
    .unwrap();
}

fn kill9(d: &mut Daemon) {
    let _ = d.child.kill();
    let _ = d.child.wait();
}

fn problems(ready: &Value) -> String {
    ready["state"]["seal"]["problems"].to_string()
}

#[test]
fn an_ordinary_restart_across_midnight_verifies_what_it_inherited_and_signs_it() {
    let f = fixture();
    let mut d = serve(&f);
    let ready = settled(&d);
    assert_eq!(ready["degraded"], false, "{ready}");
    assert_eq!(ready["state"]["seal"]["verified_through"], 48, "{ready}");
    // 2026-11-24 was written by the earlier process, sealed by this one at
    // start (its day is over) and signed once it verified.
    let deadline = Instant::now() + Duration::from_secs(30);
    while digest_days(&f.dir).len() < 4 {
        assert!(Instant::now() < deadline, "2026-11-24 was not signed");
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..5 {
        let (code, _, body) =
            d.post(&serde_json::json!({"action": "restart", "actor": format!("u{i}")}));
        assert_eq!(code, 201, "{body}");
    }
    // The head is signed within a checkpoint interval; the answer is the
    // exact line the witness holds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let (code, body) = d.get_raw("/v1/checkpoint");
        if code.starts_with("HTTP/1.1 200") {
            let cp = Checkpoint::decode(body.trim()).unwrap();
            if cp.seq == 53 {
                cp.verify(&[key().verifying_key()]).unwrap();
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of seq 53: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(d.terminate(Duration::from_secs(30)).success());
    let witnessed = std::fs::read_to_string(f.witness_files().last().unwrap()).unwrap();
    assert!(witnessed.contains(line.trim()), "{witnessed}");
    let (code, out) = verify_with(&f.dir, &f.witness_files());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("match the log"), "{out}");
    // Again, from this process's own final checkpoint: nothing unsigned.
    let mut d = serve(&f);
    let ready = settled(&d);
    assert_eq!(ready["degraded"], false, "{ready}");
    assert_eq!(ready["state"]["seal"]["verified_through"], 53, "{ready}");
    // A clean stop signs a final checkpoint: nothing was left for the crash
    // window.
    assert!(
        !d.log_text().contains("after its last signed checkpoint"),
        "{}",
        d.log_text()
    );
    assert!(d.terminate(Duration::from_secs(30)).success());
}

#[test]
fn a_day_forged_while_no_stele_ran_is_never_signed_even_with_every_digest_deleted() {
    let f = fixture();
    // Edit an event of 2026-11-22, recompute its CRC and the chain to the end
    // of the log, delete every digest: the laundering case.
    edit_rechain_tail(&f.dir, 2, 1, forge_action);
    assert_eq!(delete_all_digests(&f.dir), 3);
    let mut d = serve(&f);
    let ready = settled(&d);
    assert_eq!(ready["degraded"], true, "{ready}");
    assert!(
        problems(&ready).contains("does not match the checkpoint signed at"),
        "{ready}"
    );
    assert!(digest_days(&f.dir).is_empty(), "a forged day was signed");
    let unsigned = ready["state"]["seal"]["unsigned_days"].as_array().unwrap();
    assert_eq!(unsigned.len(), 4, "{ready}");
    // The forged event is never served as genuine.
    let (code, _, body) = d.get(&format!("/v1/events/{}", f.id(14)));
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body["type"].as_str().unwrap().rsplit('/').next(),
        Some("segment-damaged"),
        "{body}"
    );
    let (_, _, metrics) = d.get("/metrics");
    let _ = metrics;
    assert!(d.terminate(Duration::from_secs(30)).success());
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not match the checkpoint"), "{out}");
    // With the local checkpoint gone too, the witness's copy catches it.
    std::fs::remove_file(f.dir.join("checkpoint.json")).unwrap();
    let (code, out) = verify_with(&f.dir, &f.witness_files());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not match the checkpoint"), "{out}");
}

#[test]
fn removing_the_newest_days_with_their_digest_and_the_active_segment_is_caught() {
    let f = fixture();
    for i in (4..8).rev() {
        delete_segment(&f.seg(i));
    }
    delete_digest(&f.dir, "2026-11-23");
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("acknowledged events were removed"), "{out}");
    let err = refused(&f);
    assert!(err.contains("acknowledged events were removed"), "{err}");
    assert!(err.contains("seqs through 48"), "{err}");
    // Also with the local checkpoint removed: the witness keeps it.
    std::fs::remove_file(f.dir.join("checkpoint.json")).unwrap();
    let (code, out) = verify_with(&f.dir, &f.witness_files());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("covers seq 48, but the log ends at seq 24"),
        "{out}"
    );
    let err = refused(&f);
    assert!(err.contains("witness"), "{err}");
}

#[test]
fn damaged_newest_records_are_damage_not_a_torn_tail() {
    let f = fixture();
    let active = f.seg(7);
    corrupt_last_records(&active, 2);
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("inside the acknowledged range"), "{out}");
    assert!(!out.contains("torn tail"), "{out}");
    let err = refused(&f);
    assert!(err.contains("2026-11-24.1.seg"), "{err}");
    assert!(err.contains("(seq 47)") || err.contains("seq 47"), "{err}");
    assert!(err.contains("not the torn end of a write"), "{err}");
    // Nothing was truncated.
    assert_eq!(records(&std::fs::read(&active).unwrap()).len(), 4);
}

#[test]
fn cutting_the_active_segment_at_a_record_boundary_is_caught() {
    let f = fixture();
    cut_active_at_record_boundary(&f.dir, 4);
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("acknowledged events were removed"), "{out}");
    let err = refused(&f);
    assert!(err.contains("the log ends at seq 46"), "{err}");
}

#[test]
fn a_rechained_edit_of_the_open_day_is_caught_and_never_served() {
    let f = fixture();
    edit_rechain_file(&f.seg(7), 0, forge_action);
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not match the checkpoint"), "{out}");
    let mut d = serve(&f);
    let ready = settled(&d);
    assert_eq!(ready["degraded"], true, "{ready}");
    assert!(
        problems(&ready).contains("does not match the checkpoint"),
        "{ready}"
    );
    let (code, _, body) = d.get(&format!("/v1/events/{}", f.id(43)));
    assert_eq!(code, 500, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("2026-11-24"),
        "{body}"
    );
    assert!(!digest_days(&f.dir).contains(&"2026-11-24".to_string()));
    assert!(d.terminate(Duration::from_secs(30)).success());
}

#[test]
fn changed_sealed_segments_are_found_by_the_scrubber_and_never_served() {
    let f = fixture();
    // The daemon ran once (its indexes hold every event), then stopped.
    let mut d = serve(&f);
    settled(&d);
    assert!(d.terminate(Duration::from_secs(30)).success());
    let seg0 = f.seg(0);
    let rec = records(&std::fs::read(&seg0).unwrap())[2].clone();
    flip_bit(&seg0, rec.payload.start + 5, 3);
    edit_fix_crc(&f.seg(3), 0, forge_action);
    let mut d = serve(&f);
    let ready = settled(&d);
    assert_eq!(ready["degraded"], true, "{ready}");
    let damaged = ready["state"]["seal"]["damaged_segments"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = damaged
        .iter()
        .map(|v| v["segment"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["2026-11-21.0.seg", "2026-11-22.1.seg"], "{ready}");
    for seq in [3, 19] {
        let (code, _, body) = d.get(&format!("/v1/events/{}", f.id(seq)));
        assert_eq!(code, 500, "{body}");
        assert!(body["segment"].is_string(), "{body}");
    }
    // Others are served.
    let (code, _, body) = d.get(&format!("/v1/events/{}", f.id(30)));
    assert_eq!(code, 200, "{body}");
    let (_, text) = d.get_raw("/metrics");
    assert!(text.contains("stele_segments_damaged 2"), "{text}");
    assert!(d.terminate(Duration::from_secs(30)).success());
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn structural_tampering_is_refused_at_start_and_caught_by_verify() {
    type Case = (&'static str, fn(&Fixture), &'static str);
    let cases: [Case; 3] = [
        (
            "rechained in one file",
            |f| {
                edit_rechain_file(&f.seg(2), 1, forge_action);
            },
            "previous hash",
        ),
        (
            "two segments swapped",
            |f| swap_segments(&f.seg(2), &f.seg(3)),
            "the header says segment",
        ),
        (
            "a sealed segment deleted",
            |f| delete_segment(&f.seg(3)),
            "seq",
        ),
    ];
    for (what, forge, says) in cases {
        let f = fixture();
        forge(&f);
        let (code, out) = verify_with(&f.dir, &f.witness_files());
        assert_eq!(code, 1, "{what}: {out}");
        let err = refused(&f);
        assert!(err.contains(says), "{what}: {err}");
    }
}

#[test]
fn a_forged_digest_or_a_swapped_signing_key_is_reported_and_fails_verify() {
    // A digest edited: its signature no longer verifies.
    let f = fixture();
    edit_digest(&f.dir, "2026-11-23", |t| {
        *t = t.replacen("\"count\":6", "\"count\":5", 1)
    });
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 1, "{out}");
    let mut d = serve(&f);
    let ready = settled(&d);
    assert_eq!(ready["degraded"], true, "{ready}");
    assert!(problems(&ready).contains("cannot be signed"), "{ready}");
    assert!(d.terminate(Duration::from_secs(30)).success());

    // The signing key swapped for the attacker's: nothing of the past
    // verifies with it, so nothing is signed as a continuation, and what it
    // signs fails verification with the trusted key.
    let f = fixture();
    let other = f.keyfile.with_file_name("other.key");
    write_private(&other, &format!("{}\n", hex::encode([7u8; 32])));
    let checkpoint_before = std::fs::read(f.dir.join("checkpoint.json")).unwrap();
    let mut d = Daemon::spawn(serve_cmd(&f, &other, &[]));
    let ready = settled(&d);
    assert_eq!(ready["degraded"], true, "{ready}");
    assert!(problems(&ready).contains("not a trusted key"), "{ready}");
    let (code, _, body) = d.post(&serde_json::json!({"action": "after", "actor": "a"}));
    assert_eq!(code, 201, "{body}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.terminate(Duration::from_secs(30)).success());
    // Nothing was signed with it: no digest, no checkpoint.
    assert_eq!(digest_days(&f.dir).len(), 3);
    assert_eq!(
        std::fs::read(f.dir.join("checkpoint.json")).unwrap(),
        checkpoint_before
    );
    // What the trusted key signed still holds.
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_crash_leaves_its_last_checkpoint_interval_accepted_and_checkpoints_resume() {
    let f = fixture();
    // A checkpoint a minute: what is acknowledged after the first one is
    // not covered when the daemon is killed.
    set_seal_config(&f, "checkpoint_interval_ms = 60000\n");
    let mut d = serve(&f);
    settled(&d);
    for i in 0..3 {
        let (code, _, body) =
            d.post(&serde_json::json!({"action": "late", "actor": format!("u{i}")}));
        assert_eq!(code, 201, "{body}");
    }
    kill9(&mut d);
    let mut d = serve(&f);
    let ready = settled(&d);
    assert_eq!(ready["degraded"], false, "{ready}");
    assert_eq!(
        ready["state"]["seal"]["verified_through"],
        51,
        "{ready}\n{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("after its last signed checkpoint"),
        "{}",
        d.log_text()
    );
    assert!(d.terminate(Duration::from_secs(30)).success());
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn data_no_running_stele_witnessed_stays_unsigned_until_an_operator_vouches_for_it() {
    let f = fixture();
    // The earlier process had no key: no digests, no checkpoint.
    assert_eq!(delete_all_digests(&f.dir), 3);
    std::fs::remove_file(f.dir.join("checkpoint.json")).unwrap();
    for w in f.witness_files() {
        std::fs::remove_file(w).unwrap();
    }
    let mut d = serve(&f);
    let ready = settled(&d);
    assert_eq!(ready["degraded"], true, "{ready}");
    assert_eq!(
        ready["state"]["seal"]["unsigned_days"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "{ready}"
    );
    assert!(digest_days(&f.dir).is_empty());
    // No checkpoint either: one of a later head would vouch for the past.
    let (code, _, body) = d.post(&serde_json::json!({"action": "new", "actor": "a"}));
    assert_eq!(code, 201, "{body}");
    std::thread::sleep(Duration::from_millis(500));
    let (code, _, _) = d.get("/v1/checkpoint");
    assert_eq!(code, 404);
    let (_, _, ready) = d.get("/readyz");
    assert!(
        ready["state"]["seal"]["checkpoint"]["error"]
            .as_str()
            .unwrap()
            .contains("paused"),
        "{ready}"
    );
    assert!(d.terminate(Duration::from_secs(30)).success());
    // The operator checks the data (a backup, the application's own
    // records) and vouches for it.
    let out = stele()
        .args(["sign-days", "--vouch-head", "--data-dir"])
        .arg(&f.dir)
        .env("STELE_SIGNING_KEY_FILE", &f.keyfile)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(digest_days(&f.dir).len(), 4, "{text}");
    let mut d = serve(&f);
    let ready = settled(&d);
    assert_eq!(ready["degraded"], false, "{ready}");
    let (code, _, body) = d.post(&serde_json::json!({"action": "newer", "actor": "a"}));
    assert_eq!(code, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/v1/checkpoint").0 != 200 {
        assert!(Instant::now() < deadline, "checkpoints did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.terminate(Duration::from_secs(30)).success());
    let (code, out) = verify_with(&f.dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signed on an operator's word"), "{out}");
}
