//! Signed daily digests: written for closed days only, chained, idempotent;
//! `stele keygen --signing`; and `stele verify --public-key` catching every
//! way of removing, truncating, rewriting or forging a day.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stele::clock::{Clock, ManualClock};
use stele::log::format::{decode_frame, encode_record, Frame, Header, HEADER_BYTES};
use stele::log::Log;
use stele::seal::checkpoint::Checkpoint;
use stele::seal::digest::{write_due_digests, DailyDigest, SigningKey, CLOSE_GRACE_MICROS};
use stele::testkit::EventGen;

const DAY: i64 = 86_400_000_000;
/// 2026-11-21T12:00:00Z.
const NOON: i64 = BEFORE_MIDNIGHT - 2 * DAY - (11 * 3600 + 59 * 60) * 1_000_000;
/// 2026-11-22T00:00:00Z.
const MIDNIGHT: i64 = NOON + 12 * 3_600_000_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn hex_of(key: &SigningKey) -> String {
    stele::seal::digest::public_key_hex(&key.verifying_key())
}

/// A log with `days` days of events from 2026-11-21, two segments a day
/// (4 KiB cap); the last day is open.
fn build(dir: &Path, days: i64) -> (Arc<ManualClock>, Log) {
    let clock = Arc::new(ManualClock::new(NOON));
    let log = open(dir, &clock, 4096);
    let mut gen = EventGen::new(5);
    for d in 0..days {
        clock.set(NOON + d * DAY);
        for _ in 0..4 {
            log.append(&events(&mut gen, 3, 400), &stele::event::Provenance::cli())
                .unwrap();
        }
    }
    (clock, log)
}

/// [`build`], every closed day signed, the log closed.
fn signed(days: i64) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let (clock, log) = build(tmp.path(), days);
    let written = write_due_digests(tmp.path(), &log, &key(), clock.now_micros()).unwrap();
    assert_eq!(written.len() as i64, days - 1);
    drop(log);
    tmp
}

/// [`signed`], and the log's head signed as a checkpoint (what `stele
/// serve`'s checkpointer leaves behind when it stops).
fn signed_with_checkpoint(days: i64) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let (clock, log) = build(tmp.path(), days);
    write_due_digests(tmp.path(), &log, &key(), clock.now_micros()).unwrap();
    let cp = Checkpoint::sign(&key(), log.head(), clock.now_micros());
    stele::seal::checkpoint::write_local(tmp.path(), &cp).unwrap();
    drop(log);
    tmp
}

/// The start-up verification of a reopened log against the newest
/// checkpoint in its data directory.
fn inherited_check(dir: &Path, log: &Log) -> stele::seal::inherited::Inherited {
    let (cp, problems) = stele::seal::trusted_checkpoint(dir, None, &key().verifying_key());
    assert!(problems.is_empty(), "{problems:?}");
    let anchor = stele::seal::digest::anchor(dir, &key().verifying_key()).unwrap();
    stele::seal::inherited::verify_inherited(log, anchor, cp.as_ref())
}

fn digest_path(dir: &Path, day: &str) -> PathBuf {
    dir.join("digests").join(format!("{day}.digest.json"))
}

fn sig_path(dir: &Path, day: &str) -> PathBuf {
    dir.join("digests").join(format!("{day}.digest.sig"))
}

fn day_segments(dir: &Path, day: &str) -> Vec<PathBuf> {
    segment_files(dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(day))
        .collect()
}

/// `stele verify [--public-key KEY] DIR`: (exit code, stdout).
fn verify_key(dir: &Path, key: Option<&str>) -> (i32, String) {
    let mut cmd = stele();
    cmd.arg("verify");
    if let Some(k) = key {
        cmd.args(["--public-key", k]);
    }
    let out = cmd.arg(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn damaged_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("DAMAGED")).collect()
}

/// Rewrites `day`'s digest with `edit` applied, signed by `signer` (or
/// keeping the old signature).
fn forge(dir: &Path, day: &str, signer: Option<&SigningKey>, edit: impl FnOnce(&mut DailyDigest)) {
    use stele::seal::digest::Signer as _;
    let path = digest_path(dir, day);
    let mut d = DailyDigest::decode(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut d);
    let bytes = d.encode();
    make_writable(&path);
    std::fs::write(&path, &bytes).unwrap();
    if let Some(k) = signer {
        let sig = sig_path(dir, day);
        make_writable(&sig);
        let s = hex::encode(k.sign(&bytes).to_bytes());
        std::fs::write(&sig, format!("{s}\n")).unwrap();
    }
}

#[test]
fn three_days_make_two_chained_digests_that_verify_with_the_public_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (clock, log) = build(dir, 3);
    let written = write_due_digests(dir, &log, &key(), clock.now_micros()).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["2026-11-21.digest.json", "2026-11-22.digest.json"],
        "the open day (2026-11-23) is never signed"
    );
    // Idempotent: nothing more to sign, later in the day too.
    assert!(write_due_digests(dir, &log, &key(), clock.now_micros())
        .unwrap()
        .is_empty());
    clock.advance(11 * 3_600_000_000);
    assert!(write_due_digests(dir, &log, &key(), clock.now_micros())
        .unwrap()
        .is_empty());
    assert!(!digest_path(dir, "2026-11-23").exists());

    let bytes1 = std::fs::read(&written[0]).unwrap();
    let d1 = DailyDigest::decode(&bytes1).unwrap();
    let d2 = DailyDigest::decode(&std::fs::read(&written[1]).unwrap()).unwrap();
    let sig1 = std::fs::read_to_string(sig_path(dir, "2026-11-21")).unwrap();
    assert_eq!(d1.previous_digest, None);
    assert_eq!(d1.first_seq, 1);
    let prev = d2.previous_digest.as_ref().unwrap();
    assert_eq!(prev.day, "2026-11-21");
    assert_eq!(prev.sha256, stele::datadir::sha256_hex(&bytes1));
    assert_eq!(prev.signature, sig1.trim());
    assert_eq!(d2.first_seq, d1.last_seq + 1);
    assert_eq!(d2.prev_hash, d1.segments.last().unwrap().final_hash);
    assert_eq!(d1.public_key, hex_of(&key()));
    // Every segment of the day, exactly as on disk.
    let files = day_segments(dir, "2026-11-21");
    assert!(files.len() >= 2, "{files:?}");
    assert_eq!(d1.segments.len(), files.len());
    for (e, f) in d1.segments.iter().zip(&files) {
        let b = std::fs::read(f).unwrap();
        assert_eq!(e.name, f.file_name().unwrap().to_string_lossy());
        assert_eq!(e.bytes, b.len() as u64);
        assert_eq!(e.sha256, stele::datadir::sha256_hex(&b));
    }
    // The signature is over the exact bytes, with the key.
    let sig: [u8; 64] = hex::decode(sig1.trim()).unwrap().try_into().unwrap();
    key()
        .verifying_key()
        .verify_strict(&bytes1, &stele::seal::digest::Signature::from_bytes(&sig))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [&written[0], &sig_path(dir, "2026-11-21")] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444, "{}", p.display());
    }
    drop(log);

    let (code, out) = verify_key(dir, Some(&hex_of(&key())));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "digests: 2 signed days 2026-11-21..=2026-11-22, up to seq 24; signatures \
             checked with the given public key"
        ),
        "{out}"
    );
    let (code, out) = verify_key(dir, None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signatures NOT checked"), "{out}");
    // A key is only useful on a data directory, and verify says so.
    let (code, out) = verify_key(&dir.join("segments"), Some(&hex_of(&key())));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("digests are checked only for data directories"),
        "{out}"
    );
    // Without digests, verify says so and nothing else changes.
    std::fs::remove_dir_all(dir.join("digests")).unwrap();
    let (code, out) = verify_key(dir, None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("digests: none"), "{out}");
    // But an auditor with a key wants them.
    let (code, out) = verify_key(dir, Some(&hex_of(&key())));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("day 2026-11-21 has 2 segments but no signed digest"),
        "{out}"
    );
    assert!(
        out.contains("day 2026-11-22 is over but has no digest yet"),
        "{out}"
    );
}

#[test]
fn a_quiet_day_is_signed_a_minute_after_midnight_and_the_open_day_never() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (clock, log) = build(dir, 1);
    let sign = |now| write_due_digests(dir, &log, &key(), now).unwrap().len();
    assert_eq!(sign(MIDNIGHT - 1), 0, "the day is not over");
    // Midnight passes without traffic: the writer seals the day, and no
    // segment of the next day exists.
    clock.set(MIDNIGHT);
    log.rotate_if_day_over().unwrap();
    assert!(log.segments().iter().all(|s| s.sealed));
    assert_eq!(
        sign(MIDNIGHT + CLOSE_GRACE_MICROS - 1),
        0,
        "within the grace"
    );
    assert_eq!(sign(MIDNIGHT + CLOSE_GRACE_MICROS), 1);
    assert_eq!(sign(MIDNIGHT + CLOSE_GRACE_MICROS), 0);
    // The next day's events go to an open day, never signed while open.
    clock.set(MIDNIGHT + 3_600_000_000);
    let mut gen = EventGen::new(9);
    log.append(&events(&mut gen, 3, 400), &stele::event::Provenance::cli())
        .unwrap();
    assert_eq!(sign(MIDNIGHT + DAY - 1), 0);
    assert!(!digest_path(dir, "2026-11-22").exists());
    let d = DailyDigest::decode(&std::fs::read(digest_path(dir, "2026-11-21")).unwrap()).unwrap();
    assert_eq!(d.created_at, "2026-11-22T00:01:00.000000Z");
}

#[test]
fn keygen_makes_a_private_key_once_and_verify_takes_the_public_key_from_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let key_path = tmp.path().join("signing.key");
    let pub_path = tmp.path().join("signing.pub");
    let out = stele()
        .args(["keygen", "--signing", "--out"])
        .arg(&key_path)
        .arg("--public-out")
        .arg(&pub_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(&pub_path).unwrap();
    assert_eq!(public.len(), 65);
    assert!(
        stdout.contains(&format!("public key: {}", public.trim())),
        "{stdout}"
    );
    assert!(stdout.contains("--public-key"), "{stdout}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Never overwritten; and the kind of key must be said.
    let again = stele()
        .args(["keygen", "--signing", "--out"])
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    let unsaid = stele()
        .args(["keygen", "--out"])
        .arg(tmp.path().join("x"))
        .output()
        .unwrap();
    assert!(!unsaid.status.success());
    assert!(String::from_utf8_lossy(&unsaid.stderr).contains("--signing"));

    // The key signs digests (as `stele serve` does with DATA_DIR/signing.key)
    // that verify with the public key file and fail with another key.
    let data = tmp.path().join("data");
    let (clock, log) = build(&data, 2);
    std::fs::copy(&key_path, data.join("signing.key")).unwrap();
    std::fs::set_permissions(
        data.join("signing.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let k = stele::seal::digest::load_signing_key(&data)
        .unwrap()
        .unwrap();
    assert_eq!(
        write_due_digests(&data, &log, &k, clock.now_micros())
            .unwrap()
            .len(),
        1
    );
    drop(log);
    let (code, out) = verify_key(&data, Some(pub_path.to_str().unwrap()));
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify_key(&data, Some(&hex_of(&key())));
    assert_eq!(code, 1, "{out}");
    let (code, _) = verify_key(&data, Some("not-a-key"));
    assert_eq!(code, 2);
}

#[test]
fn a_removed_day_is_caught_with_or_without_its_digest() {
    // The middle day's segments alone.
    let tmp = signed(4);
    for f in day_segments(tmp.path(), "2026-11-22") {
        std::fs::remove_file(f).unwrap();
    }
    let (code, out) = verify_key(tmp.path(), Some(&hex_of(&key())));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("day 2026-11-22: segment 2026-11-22.0.seg (seqs 13..=")
            && out.contains("is missing: day 2026-11-22 was removed or truncated"),
        "{out}"
    );

    // The middle day's segments and its digest: the chain names it.
    let tmp = signed(4);
    for f in day_segments(tmp.path(), "2026-11-22") {
        std::fs::remove_file(f).unwrap();
    }
    std::fs::remove_file(digest_path(tmp.path(), "2026-11-22")).unwrap();
    std::fs::remove_file(sig_path(tmp.path(), "2026-11-22")).unwrap();
    let (code, out) = verify_key(tmp.path(), Some(&hex_of(&key())));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "day 2026-11-23: names day 2026-11-22 as its previous digest, which is missing \
             (the one before it here is 2026-11-21): a digest was removed"
        ),
        "{out}"
    );
    assert!(
        out.contains("day 2026-11-23: starts at seq 25, but the previous digest (2026-11-21) ends at seq 12: seqs 13..=24 are in no digest (a day was removed)"),
        "{out}"
    );

    // The oldest day and its digest: the next digest still names it.
    let tmp = signed(4);
    for f in day_segments(tmp.path(), "2026-11-21") {
        std::fs::remove_file(f).unwrap();
    }
    std::fs::remove_file(digest_path(tmp.path(), "2026-11-21")).unwrap();
    std::fs::remove_file(sig_path(tmp.path(), "2026-11-21")).unwrap();
    let (code, out) = verify_key(tmp.path(), Some(&hex_of(&key())));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "day 2026-11-22: names day 2026-11-21 as its previous digest, which is missing: \
             the oldest digests were removed"
        ),
        "{out}"
    );
}

#[test]
fn dropping_the_oldest_days_like_retention_is_reported_but_still_verifies() {
    let tmp = signed(4);
    for day in ["2026-11-21", "2026-11-22"] {
        for f in day_segments(tmp.path(), day) {
            std::fs::remove_file(f).unwrap();
        }
    }
    let (code, out) = verify_key(tmp.path(), Some(&hex_of(&key())));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("day 2026-11-21: its 2 segments (seqs 1..=12) are gone: dropped by retention"),
        "{out}"
    );
    assert!(
        out.contains("day 2026-11-22: its 2 segments (seqs 13..=24) are gone"),
        "{out}"
    );
    // Every signed day gone: the oldest segment left must continue the chain.
    for f in day_segments(tmp.path(), "2026-11-23") {
        std::fs::remove_file(f).unwrap();
    }
    let (code, out) = verify_key(tmp.path(), Some(&hex_of(&key())));
    assert_eq!(code, 0, "{out}");
    let oldest = segment_files(tmp.path()).remove(0);
    let mut bytes = std::fs::read(&oldest).unwrap();
    let mut header = Header::decode(&bytes).unwrap();
    header.prev_hash[0] ^= 1;
    bytes[..HEADER_BYTES].copy_from_slice(&header.encode());
    make_writable(&oldest);
    std::fs::write(&oldest, &bytes).unwrap();
    let (code, out) = verify_key(tmp.path(), Some(&hex_of(&key())));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "the oldest segment does not continue the newest digest (2026-11-23, up to seq 36)"
        ),
        "{out}"
    );
}

#[test]
fn a_truncated_sealed_segment_is_caught() {
    let tmp = signed(4);
    let seg = day_segments(tmp.path(), "2026-11-22").remove(0);
    let len = std::fs::metadata(&seg).unwrap().len();
    make_writable(&seg);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let (code, out) = verify_key(tmp.path(), Some(&hex_of(&key())));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "2026-11-22.0.seg: has {} bytes, the signed digest of 2026-11-22 says {len}: the \
             segment was truncated or extended",
            len - 100
        )),
        "{out}"
    );
}

/// Changes the action of the second record of `first` and re-chains that
/// segment and every later one (CRCs, chain hashes, footers, headers): each
/// segment and every link between them still verifies.
fn rewrite_and_rechain(dir: &Path, first: &Path) {
    let files = segment_files(dir);
    let start = files.iter().position(|p| p == first).unwrap();
    let mut prev = None;
    for (i, path) in files[start..].iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let mut header = Header::decode(&bytes).unwrap();
        if let Some(p) = prev {
            header.prev_hash = p;
        }
        let mut out = header.encode().to_vec();
        let mut hash = header.prev_hash;
        let (mut off, mut n) = (HEADER_BYTES, 0);
        while off < bytes.len() {
            match decode_frame(&bytes[off..], header.version).unwrap() {
                Frame::Record {
                    payload,
                    len,
                    chain,
                } => {
                    let mut payload = payload.to_vec();
                    if i == 0 && n == 1 {
                        let mut ev = stele::event::decode_stored(&payload, header.version).unwrap();
                        // Same length: the file keeps its size.
                        ev.event.action = "x".repeat(ev.event.action.len());
                        payload.clear();
                        stele::event::encode_stored_prefix(ev.seq, ev.received_at, &mut payload);
                        stele::event::encode_event(&ev.event, &mut payload);
                        if let Some(by) = &ev.provenance {
                            stele::event::encode_provenance(by, &mut payload);
                        }
                    }
                    let at = out.len();
                    hash = encode_record(&mut out, header.version, n, &hash, &[&payload]);
                    // Where the writer stored a hash (the last record of a
                    // write), so does the forger: the file keeps its size.
                    if chain.is_some() {
                        stele::log::format::mark_frame(&mut out, at, header.version, &hash);
                    }
                    off += len;
                    n += 1;
                }
                Frame::Footer(mut f) => {
                    f.final_hash = hash;
                    out.extend_from_slice(&f.encode());
                    break;
                }
            }
        }
        make_writable(path);
        std::fs::write(path, &out).unwrap();
        prev = Some(hash);
    }
}

#[test]
fn a_rewritten_and_fully_rechained_tail_is_caught_by_the_digests_alone() {
    let tmp = signed(4);
    let first = day_segments(tmp.path(), "2026-11-22").remove(0);
    rewrite_and_rechain(tmp.path(), &first);
    // The segments alone no longer tell.
    let (code, out) = verify(&[&tmp.path().join("segments")]);
    assert_eq!(code, 0, "the forgery is consistent on its own: {out}");
    for key in [Some(hex_of(&key())), None] {
        let (code, out) = verify_key(tmp.path(), key.as_deref());
        assert_eq!(code, 1, "{out}");
        let bad = damaged_lines(&out);
        assert!(
            bad[0].contains(
                "2026-11-22.0.seg: its SHA-256 is not the one the signed digest of 2026-11-22 \
                 names: the segment was rewritten"
            ),
            "{out}"
        );
        // Every signed segment from there on, and nothing else.
        assert_eq!(
            bad.len(),
            day_segments(tmp.path(), "2026-11-22").len()
                + day_segments(tmp.path(), "2026-11-23").len(),
            "{out}"
        );
        assert!(bad.iter().all(|l| l.contains("was rewritten")), "{out}");
    }
}

#[test]
fn forged_digests_are_caught() {
    let k = hex_of(&key());
    // An edited field, the old signature kept.
    let tmp = signed(4);
    forge(tmp.path(), "2026-11-23", None, |d| {
        d.created_at = "2026-11-24T09:00:00.000000Z".into()
    });
    let (code, out) = verify_key(tmp.path(), Some(&k));
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        damaged_lines(&out),
        [format!(
            "DAMAGED: {}: day 2026-11-23: the signature does not verify with the given public \
             key: the digest was altered or forged",
            digest_path(tmp.path(), "2026-11-23").display()
        )],
        "{out}"
    );
    let (code, out) = verify_key(tmp.path(), None);
    assert_eq!(code, 1, "even without a key: {out}");
    assert!(
        out.contains("does not verify with the key the digest names"),
        "{out}"
    );

    // Re-signed with another key, which the digest names.
    let tmp = signed(4);
    forge(tmp.path(), "2026-11-23", Some(&other_key()), |d| {
        d.public_key = hex_of(&other_key());
        d.created_at = "2026-11-24T09:00:00.000000Z".into();
    });
    let (code, out) = verify_key(tmp.path(), Some(&k));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "day 2026-11-23: signed by key {}, not by the given public key: a forged digest",
            hex_of(&other_key())
        )),
        "{out}"
    );
    // Without a trusted key such a forgery is only a note: that is what the
    // public key is for.
    let (code, out) = verify_key(tmp.path(), None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("the digests name 2 different public keys"),
        "{out}"
    );
    assert!(out.contains("signatures NOT checked"), "{out}");

    // Re-signed with another key, still naming the real one.
    let tmp = signed(4);
    forge(tmp.path(), "2026-11-23", Some(&other_key()), |d| {
        d.created_at = "2026-11-24T09:00:00.000000Z".into()
    });
    let (code, out) = verify_key(tmp.path(), Some(&k));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("day 2026-11-23: the signature does not verify with the given public key"),
        "{out}"
    );

    // A forged middle digest (covering a rewritten day) also breaks the link
    // from the next one.
    let tmp = signed(4);
    forge(tmp.path(), "2026-11-22", Some(&other_key()), |d| {
        d.segments[0].sha256 = "00".repeat(32);
        d.public_key = hex_of(&other_key());
    });
    let (code, out) = verify_key(tmp.path(), Some(&k));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("day 2026-11-22: signed by key"), "{out}");
    assert!(
        out.contains(
            "day 2026-11-23: the previous digest (2026-11-22) does not have the SHA-256 this \
             digest names: it was altered or replaced"
        ),
        "{out}"
    );
    // A hand-edited (non-canonical) digest is refused as such.
    let tmp = signed(4);
    let p = digest_path(tmp.path(), "2026-11-21");
    let text = std::fs::read_to_string(&p).unwrap();
    make_writable(&p);
    std::fs::write(&p, text.replacen(",\"day\"", ", \"day\"", 1)).unwrap();
    let (code, out) = verify_key(tmp.path(), Some(&k));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("day 2026-11-21: not in canonical form"),
        "{out}"
    );
}

#[test]
fn a_digest_removed_from_the_chain_is_caught_and_a_missing_newest_one_is_a_note() {
    let k = hex_of(&key());
    let tmp = signed(4);
    std::fs::remove_file(digest_path(tmp.path(), "2026-11-22")).unwrap();
    std::fs::remove_file(sig_path(tmp.path(), "2026-11-22")).unwrap();
    let (code, out) = verify_key(tmp.path(), Some(&k));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "day 2026-11-23: names day 2026-11-22 as its previous digest, which is missing"
        ),
        "{out}"
    );
    assert!(
        out.contains("day 2026-11-22 has 2 segments but no signed digest: it was removed"),
        "{out}"
    );
    // Only the signature left behind.
    let tmp = signed(4);
    std::fs::remove_file(digest_path(tmp.path(), "2026-11-22")).unwrap();
    let (code, out) = verify_key(tmp.path(), Some(&k));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("a signature without its digest 2026-11-22.digest.json"),
        "{out}"
    );

    // The newest closed day's digest may not be written yet (a copy made
    // just after midnight): a note, not damage.
    let tmp = signed_with_checkpoint(4);
    std::fs::remove_file(digest_path(tmp.path(), "2026-11-23")).unwrap();
    std::fs::remove_file(sig_path(tmp.path(), "2026-11-23")).unwrap();
    let (code, out) = verify_key(tmp.path(), Some(&k));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("note: ") && out.contains("day 2026-11-23 is over but has no digest yet"),
        "{out}"
    );
    // A later process never signs on faith a day it did not see written...
    let clock = Arc::new(ManualClock::new(NOON + 3 * DAY));
    let log = open(tmp.path(), &clock, 4096);
    let written = write_due_digests(tmp.path(), &log, &key(), clock.now_micros()).unwrap();
    assert!(written.is_empty(), "{written:?}");
    // ...but once what it inherited verifies against the earlier process's
    // last signed checkpoint, it continues the chain.
    let inherited = inherited_check(tmp.path(), &log);
    assert_eq!(inherited.problem, None);
    let run = stele::seal::digest::write_witnessed_digests(
        tmp.path(),
        &log,
        &key(),
        clock.now_micros(),
        &inherited,
    )
    .unwrap();
    assert_eq!(run.written, [digest_path(tmp.path(), "2026-11-23")]);
    assert!(run.unsigned.is_empty(), "{:?}", run.unsigned);
    drop(log);
    let (code, out) = verify_key(tmp.path(), Some(&k));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_wrong_public_key_fails_every_digest() {
    let tmp = signed(3);
    let (code, out) = verify_key(tmp.path(), Some(&hex_of(&other_key())));
    assert_eq!(code, 1, "{out}");
    let bad = damaged_lines(&out);
    assert_eq!(bad.len(), 2, "{out}");
    assert!(
        bad.iter().all(|l| l.contains(&format!(
            "signed by key {}, not by the given public key",
            hex_of(&key())
        ))),
        "{out}"
    );
}

#[test]
fn the_digester_thread_signs_a_closed_day_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let (clock, log) = build(tmp.path(), 1);
    let log = Arc::new(log);
    clock.set(MIDNIGHT + CLOSE_GRACE_MICROS + 1);
    log.rotate_if_day_over().unwrap();
    let digester = stele::seal::digest::Digester::start(
        tmp.path().to_path_buf(),
        log.clone(),
        clock.clone(),
        Some(key()),
        std::time::Duration::from_millis(20),
        None,
        Arc::default(),
    );
    assert!(digester.running());
    let stats = digester.stats();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !digest_path(tmp.path(), "2026-11-21").exists() {
        assert!(std::time::Instant::now() < deadline, "no digest written");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    digester.stop();
    assert_eq!(stats.written.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(Arc::strong_count(&log), 1, "the thread let go of the log");
    // No key: nothing runs.
    let off = stele::seal::digest::Digester::start(
        tmp.path().to_path_buf(),
        log.clone(),
        clock,
        None,
        std::time::Duration::from_millis(20),
        None,
        Arc::default(),
    );
    assert!(!off.running());
}
