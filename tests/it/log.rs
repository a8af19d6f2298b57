//! The segment log through its library API: rotation, reading, recovery of
//! torn tails, refusal of damage, and a model test against a `Vec`.

use crate::support::*;
use proptest::prelude::*;
use std::sync::Arc;
use stele::clock::ManualClock;
use stele::log::format::{Footer, FOOTER_BYTES, HEADER_BYTES};
use stele::log::{Direction, Error, Log, LogConfig, RecoveryMode};
use stele::testkit::EventGen;

const DAY_MICROS: i64 = 86_400_000_000;

#[test]
fn rotates_at_utc_midnight_and_seals_the_old_day() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT));
    let mut gen = EventGen::new(1);
    let log = open(tmp.path(), &clock, 1 << 20);
    let a = log
        .append(&events(&mut gen, 3, 500), &stele::event::Provenance::cli())
        .unwrap();
    assert_eq!((a.first_seq, a.count), (1, 3));
    assert_eq!(a.segment.file_name(), "2026-11-23.0.seg");
    clock.advance(60_000_000); // 2026-11-24T00:00:00Z exactly
    let b = log
        .append(&events(&mut gen, 2, 500), &stele::event::Provenance::cli())
        .unwrap();
    assert_eq!(b.first_seq, 4);
    assert_eq!(b.segment.file_name(), "2026-11-24.0.seg");
    let segs = log.segments();
    assert_eq!(segs.len(), 2);
    assert!(segs[0].sealed && !segs[1].sealed);
    let first = &segment_files(tmp.path())[0];
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(first).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "a sealed segment must be read-only");
    let bytes = std::fs::read(first).unwrap();
    let footer = Footer::decode(&bytes[bytes.len() - FOOTER_BYTES..]).unwrap();
    assert_eq!((footer.first_seq, footer.last_seq, footer.count), (1, 3, 3));
    // The next day's header chains to the footer's final hash.
    let second = std::fs::read(&segment_files(tmp.path())[1]).unwrap();
    let header = stele::log::format::Header::decode(&second).unwrap();
    assert_eq!(header.prev_hash, footer.final_hash);
    assert_eq!(header.first_seq, 4);

    // A day with no events: the writer seals the finished day by itself
    // (here on request) and opens no empty segment.
    clock.advance(DAY_MICROS);
    log.rotate_if_day_over().unwrap();
    let segs = log.segments();
    assert_eq!(segs.len(), 2);
    assert!(segs[1].sealed);
    let c = log
        .append(&events(&mut gen, 1, 500), &stele::event::Provenance::cli())
        .unwrap();
    assert_eq!(c.segment.file_name(), "2026-11-25.0.seg");
    assert_eq!(c.first_seq, 6);
    drop(log);
    let (code, out) = verify(&[tmp.path()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 3 segments, 6 events"), "{out}");
}

#[test]
fn received_at_never_goes_backwards_even_when_the_clock_does() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT + 120_000_000));
    let mut gen = EventGen::new(2);
    let log = open(tmp.path(), &clock, 1 << 20);
    let a = log
        .append(&events(&mut gen, 1, 300), &stele::event::Provenance::cli())
        .unwrap();
    clock.set(BEFORE_MIDNIGHT); // the clock steps back across midnight
    let b = log
        .append(&events(&mut gen, 1, 300), &stele::event::Provenance::cli())
        .unwrap();
    assert!(b.received_at >= a.received_at);
    assert_eq!(a.segment, b.segment, "no segment for a day already over");
    drop(log);
    // Also across a restart.
    let log = open(tmp.path(), &clock, 1 << 20);
    let c = log
        .append(&events(&mut gen, 1, 300), &stele::event::Provenance::cli())
        .unwrap();
    assert!(c.received_at >= b.received_at);
    assert_eq!(c.segment, b.segment);
}

#[test]
fn rotates_at_the_size_cap_and_reads_across_segments_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - DAY_MICROS));
    let mut gen = EventGen::new(3);
    let log = open(tmp.path(), &clock, 4096);
    let mut all = Vec::new();
    for _ in 0..30 {
        let batch = events(&mut gen, 3, 500);
        log.append(&batch, &stele::event::Provenance::cli())
            .unwrap();
        all.extend(batch);
    }
    let segs = log.segments();
    assert!(segs.len() >= 12, "{} segments", segs.len());
    for s in &segs {
        assert!(s.bytes <= 4096, "{} is {} bytes", s.id, s.bytes);
    }
    assert!(segs[..segs.len() - 1].iter().all(|s| s.sealed));
    let forward: Vec<_> = log.iter().map(|e| e.unwrap()).collect();
    assert_eq!(forward.len(), 90);
    for (i, ev) in forward.iter().enumerate() {
        assert_eq!(ev.seq, i as u64 + 1);
        assert_eq!(ev.event, all[i]);
    }
    let backward: Vec<_> = log
        .range(.., Direction::Backward)
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(backward, (1..=90).rev().collect::<Vec<_>>());
    let mid: Vec<_> = log
        .range(17..40, Direction::Forward)
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(mid, (17..40).collect::<Vec<_>>());
    assert_eq!(log.get(55).unwrap().unwrap().event, all[54]);
    assert!(log.get(91).unwrap().is_none());
    assert!(log.get(0).unwrap().is_none());
    drop(log);
    let (code, out) = verify(&[tmp.path()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_request_larger_than_a_segment_gets_a_segment_of_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - DAY_MICROS));
    let mut gen = EventGen::new(4);
    let log = open(tmp.path(), &clock, 4096);
    log.append(&events(&mut gen, 1, 500), &stele::event::Provenance::cli())
        .unwrap();
    let big = log
        .append(&events(&mut gen, 20, 500), &stele::event::Provenance::cli())
        .unwrap();
    assert_eq!(big.segment.part, 1);
    let next = log
        .append(&events(&mut gen, 1, 500), &stele::event::Provenance::cli())
        .unwrap();
    assert_eq!(next.segment.part, 2);
    assert_eq!(log.iter().count(), 22);
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT));
    let _log = open(tmp.path(), &clock, 1 << 20);
    let err = Log::open(tmp.path(), LogConfig::default(), clock.clone()).unwrap_err();
    assert!(err.to_string().contains("another Stele process"), "{err}");
}

#[test]
fn limits_are_enforced_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT));
    let log = Log::open(
        tmp.path(),
        LogConfig {
            batch_events_max: 4,
            ..LogConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    let mut gen = EventGen::new(5);
    let err = log
        .append(&events(&mut gen, 5, 200), &stele::event::Provenance::cli())
        .unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
    assert!(log.append(&[], &stele::event::Provenance::cli()).is_err());
    assert_eq!(log.last_seq(), 0);
    assert!(log.segments().is_empty());
    let bad = Log::open(
        tmp.path(),
        LogConfig {
            segment_bytes_max: 10,
            ..LogConfig::default()
        },
        clock,
    )
    .unwrap_err();
    assert!(bad.to_string().contains("segment_bytes_max"), "{bad}");
}

/// Writes `n` small events to a fresh log and returns the active segment's
/// path and the byte offset where each record ends.
fn small_log(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, Vec<u64>) {
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - DAY_MICROS));
    let mut gen = EventGen::new(6);
    let log = open(dir, &clock, 1 << 20);
    let mut ends = vec![HEADER_BYTES as u64];
    for _ in 0..n {
        log.append(&[gen.sized(150)], &stele::event::Provenance::cli())
            .unwrap();
        ends.push(log.segments()[0].bytes);
    }
    drop(log);
    (segment_files(dir)[0].clone(), ends)
}

#[test]
fn a_torn_tail_at_every_byte_offset_is_truncated_to_the_last_whole_record() {
    let src = tempfile::tempdir().unwrap();
    let (seg, ends) = small_log(src.path(), 6);
    let full = std::fs::read(&seg).unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT));
    let mut gen = EventGen::new(7);
    for cut in HEADER_BYTES as u64..=full.len() as u64 {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        let path = segment_files(tmp.path())[0].clone();
        std::fs::write(&path, &full[..cut as usize]).unwrap();
        let whole = ends.iter().rposition(|&e| e <= cut).unwrap() as u64;
        let log = open(tmp.path(), &clock, 1 << 20);
        assert_eq!(log.last_seq(), whole, "cut at {cut}");
        // Trailing zero bytes of a cut record count as padding.
        let r = log.recovery_report();
        assert_eq!(
            r.torn_bytes_truncated + r.padding_bytes_released,
            cut - ends[whole as usize],
            "cut at {cut}"
        );
        // The log carries on from the last whole record.
        let a = log
            .append(&[gen.sized(150)], &stele::event::Provenance::cli())
            .unwrap();
        assert_eq!(a.first_seq, whole + 1);
        assert_eq!(log.iter().count() as u64, whole + 1);
        drop(log);
        if cut % 97 == 0 || cut as usize == full.len() {
            let (code, out) = verify(&[tmp.path()]);
            assert_eq!(code, 0, "cut at {cut}: {out}");
        }
    }
}

#[test]
fn zero_padding_is_released_a_garbage_tail_is_torn_but_damage_before_a_valid_record_is_refused() {
    let src = tempfile::tempdir().unwrap();
    let (_, ends) = small_log(src.path(), 6);
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT));
    for (tail, torn) in [(vec![0u8; 4096], false), (vec![0xA5u8; 37], true)] {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        let path = segment_files(tmp.path())[0].clone();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        let log = open(tmp.path(), &clock, 1 << 20);
        assert_eq!(log.last_seq(), 6);
        let r = log.recovery_report();
        if torn {
            assert_eq!(r.torn_bytes_truncated, tail.len() as u64);
        } else {
            // Zeros after the last record are space filled ahead, not damage.
            assert_eq!(
                (r.torn_bytes_truncated, r.padding_bytes_released),
                (0, 4096)
            );
        }
    }

    // One flipped byte inside record 3 of 6: the records after it prove it
    // is not a torn write.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(src.path(), tmp.path());
    let path = segment_files(tmp.path())[0].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = ends[2] as usize + 20;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = Log::open(tmp.path(), LogConfig::default(), clock.clone()).unwrap_err();
    match &err {
        Error::Corruption {
            path: p,
            offset,
            seq,
            ..
        } => {
            assert_eq!(p, &path);
            assert_eq!(*offset, ends[2]);
            assert_eq!(*seq, Some(3));
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(err.to_string().contains("--recovery salvage"), "{err}");
    // Nothing was changed on disk by the refusal.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    // Salvage: the damaged tail is moved to quarantine and the log goes on.
    let log = Log::open(
        tmp.path(),
        LogConfig {
            recovery: RecoveryMode::Salvage,
            ..LogConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    assert_eq!(log.last_seq(), 2);
    let q = &log.recovery_report().quarantined;
    assert_eq!(q.len(), 1);
    assert_eq!(std::fs::read(&q[0]).unwrap(), &bytes[ends[2] as usize..]);
    let mut gen = EventGen::new(8);
    assert_eq!(
        log.append(&[gen.sized(150)], &stele::event::Provenance::cli())
            .unwrap()
            .first_seq,
        3
    );
}

#[test]
fn foreign_files_and_broken_links_between_segments_are_refused_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - DAY_MICROS));
    let mut gen = EventGen::new(9);
    {
        let log = open(tmp.path(), &clock, 4096);
        for _ in 0..12 {
            log.append(&events(&mut gen, 2, 500), &stele::event::Provenance::cli())
                .unwrap();
        }
    }
    let files = segment_files(tmp.path());
    assert!(files.len() >= 4);

    let foreign = tmp.path().join("segments").join("notes.txt");
    std::fs::write(&foreign, b"hello").unwrap();
    let err = Log::open(tmp.path(), LogConfig::default(), clock.clone()).unwrap_err();
    assert!(matches!(err, Error::ForeignFile { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    std::fs::remove_file(&foreign).unwrap();

    // A missing middle segment is a gap in seqs.
    let moved = tmp.path().join("moved.seg");
    std::fs::rename(&files[1], &moved).unwrap();
    let err = Log::open(tmp.path(), LogConfig::default(), clock.clone()).unwrap_err();
    assert!(
        err.to_string().contains(&*files[2].to_string_lossy()),
        "{err}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
    std::fs::rename(&moved, &files[1]).unwrap();

    // A damaged footer of a sealed segment.
    make_writable(&files[0]);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xFF;
    std::fs::write(&files[0], &bytes).unwrap();
    let err = Log::open(tmp.path(), LogConfig::default(), clock.clone()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(
        err.to_string().contains(&*files[0].to_string_lossy()),
        "{err}"
    );
}

#[test]
fn a_data_directory_that_is_not_writable_is_a_clear_error() {
    if unsafe { libc::geteuid() } == 0 {
        // root ignores permissions; the check is meaningless here.
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT));
    let err = Log::open(&tmp.path().join("d"), LogConfig::default(), clock).unwrap_err();
    assert!(err.to_string().contains("could not create"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_async_appenders_share_fsyncs_and_get_gap_free_seqs() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - DAY_MICROS));
    let log = Arc::new(open(tmp.path(), &clock, 1 << 20));
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut gen = EventGen::new(100 + t);
            let mut seqs = Vec::new();
            for _ in 0..20 {
                let ev = gen.sized(300);
                let id = ev.id.clone();
                let (a, stored) = log
                    .append_async(vec![ev], &stele::event::Provenance::cli())
                    .await
                    .unwrap();
                // The poster's own event back, as stored, with its seq.
                assert_eq!(stored.len(), 1);
                assert_eq!((stored[0].seq, &stored[0].event.id), (a.first_seq, &id));
                seqs.push((a.first_seq, id));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=640).collect::<Vec<_>>());
    for (seq, id) in &all {
        assert_eq!(&log.get(*seq).unwrap().unwrap().event.id, id);
    }
    let fsyncs = log
        .metrics()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        fsyncs < 640,
        "{fsyncs} fsyncs for 640 appends: no group commit"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Restart,
    NextDay,
    Get(usize),
    Forward(usize, usize),
    Backward(usize, usize),
    Follow(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6).prop_map(Op::Append),
        1 => Just(Op::Restart),
        1 => Just(Op::NextDay),
        2 => any::<usize>().prop_map(Op::Get),
        2 => (any::<usize>(), 0usize..40).prop_map(|(a, n)| Op::Forward(a, n)),
        2 => (any::<usize>(), 0usize..40).prop_map(|(a, n)| Op::Backward(a, n)),
        2 => (any::<usize>(), 1usize..40).prop_map(|(a, n)| Op::Follow(a, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The log behaves like a `Vec` of events, whatever the interleaving of
    /// appends, restarts, day changes and reads (the followers' reads from
    /// the tail among them).
    #[test]
    fn the_log_behaves_like_a_vec(ops in proptest::collection::vec(op(), 1..60), seed in any::<u64>()) {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - DAY_MICROS));
        let mut gen = EventGen::new(seed);
        let mut model: Vec<stele::event::Event> = Vec::new();
        let mut log = Some(open(tmp.path(), &clock, 8192));
        for op in ops {
            let l = log.as_ref().unwrap();
            match op {
                Op::Append(n) => {
                    let evs = events(&mut gen, n, 400);
                    let a = l.append(&evs, &stele::event::Provenance::cli()).unwrap();
                    prop_assert_eq!(a.first_seq, model.len() as u64 + 1);
                    model.extend(evs);
                    clock.advance(1_000);
                }
                Op::Restart => {
                    drop(log.take());
                    log = Some(open(tmp.path(), &clock, 8192));
                }
                Op::NextDay => clock.advance(DAY_MICROS),
                Op::Get(i) => {
                    let seq = if model.is_empty() { 1 } else { (i % (model.len() + 1)) as u64 + 1 };
                    let got = l.get(seq).unwrap().map(|e| e.event);
                    prop_assert_eq!(got.as_ref(), model.get(seq as usize - 1));
                }
                Op::Forward(a, n) => {
                    let from = (a % (model.len() + 2)) as u64;
                    let got: Vec<_> = l.range(from..from + n as u64, Direction::Forward)
                        .map(|e| e.unwrap()).collect();
                    let want: Vec<_> = (from.max(1)..from + n as u64)
                        .filter_map(|s| model.get(s as usize - 1)).collect();
                    prop_assert_eq!(got.len(), want.len());
                    for (g, w) in got.iter().zip(want) {
                        prop_assert_eq!(&g.event, w);
                    }
                }
                Op::Follow(a, n) => {
                    // From the tail (since the last restart) and the segments.
                    let from = (a % (model.len() + 2)) as u64;
                    let got: Vec<_> = l.follow_range(from, from + n as u64 - 1)
                        .flat_map(|r| r.unwrap().to_vec()).collect();
                    let want: Vec<_> = (from.max(1)..from + n as u64)
                        .filter_map(|s| model.get(s as usize - 1)).collect();
                    prop_assert_eq!(got.len(), want.len());
                    for (g, w) in got.iter().zip(want) {
                        prop_assert_eq!(&g.event, w);
                        let read = l.get(g.seq).unwrap();
                        prop_assert_eq!(Some(g), read.as_ref());
                    }
                }
                Op::Backward(a, n) => {
                    let to = (a % (model.len() + 2)) as u64;
                    let got: Vec<u64> = l.range(..=to, Direction::Backward)
                        .take(n).map(|e| e.unwrap().seq).collect();
                    let top = to.min(model.len() as u64);
                    let want: Vec<u64> = (1..=top).rev().take(n).collect();
                    prop_assert_eq!(got, want);
                }
            }
            prop_assert_eq!(l_last(&log), model.len() as u64);
        }
        drop(log);
        let report = stele::verify::verify_paths(&[tmp.path().to_path_buf()]).unwrap();
        prop_assert!(report.intact(), "{:?}", report.findings);
        prop_assert_eq!(report.events(), model.len() as u64);
    }
}

fn l_last(log: &Option<Log>) -> u64 {
    log.as_ref().unwrap().last_seq()
}
