//! Tests of the packing: generations, run files, crashes and retention across them,
//! against brute force (the shared helpers are in `tests`).

use super::tests::{apply_chunked, catch_up, dump, gen_events, lookup, open, reopen, Dump};
use super::*;
use crate::event::StoredEvent;
use crate::testkit::EventGen;

/// Steps packing until nothing is left to pack or to start.
fn pack_all(kv: &KvIndex) {
    let indexed = kv.indexed_seq().unwrap().unwrap_or(0);
    for _ in 0..100_000 {
        kv.pack_step(indexed).unwrap();
        let p = kv.packing();
        if p.gens.len() == 1 && indexed + 1 < p.gens[0].first + RUN_EVENTS {
            return;
        }
    }
    panic!("packing never ends");
}

/// The keys in generations (not packed yet).
fn unpacked(kv: &KvIndex) -> usize {
    kv.packing().gens.iter().map(|g| g.len()).sum()
}

/// The committed runs' seq spans.
fn spans(kv: &KvIndex) -> Vec<(u64, u64)> {
    kv.packing()
        .runs
        .iter()
        .map(|r| (r.first, r.last))
        .collect()
}

/// The run files on disk are exactly the committed runs (no leftover `.tmp`), each
/// holds strictly ascending keys of its own seqs, all in its filter, and runs do not
/// overlap (invariant 2 of `packed`).
fn check_pages(kv: &KvIndex) {
    let runs = kv.packing().runs.clone();
    let mut names: Vec<String> = std::fs::read_dir(kv.runs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let committed: Vec<String> = runs.iter().map(|r| runfile::file_name(r.first)).collect();
    assert_eq!(names, committed, "run files");
    let through = kv.packed_through().unwrap();
    for (i, run) in runs.iter().enumerate() {
        assert!(run.last <= through);
        if let Some(next) = runs.get(i + 1) {
            assert!(
                run.last < next.first,
                "runs {} and {} overlap",
                run.first,
                next.first
            );
        }
        let keys = run.keys().unwrap();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for key in &keys {
            let seq = split_key(key).unwrap().1;
            assert!((run.first..=run.last).contains(&seq));
            assert!(run.bloom.may_contain(key));
        }
    }
    check_gens(kv);
}

/// No generation is in sled; the generations tile the seqs above `packed_through` and
/// hold only keys of their own range (invariant 1 of `gens`); `indexed_seq` is stored
/// as `packed_through` (invariant 4 of `kv`).
fn check_gens(kv: &KvIndex) {
    let packing = kv.packing();
    let through = kv.packed_through().unwrap();
    let on_disk = kv
        .db
        .tree_names()
        .into_iter()
        .filter(|n| n.starts_with(b"ids."))
        .count();
    assert_eq!(on_disk, 0, "generation trees in sled");
    let firsts: Vec<u64> = packing.gens.iter().map(|g| g.first).collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");
    assert_eq!(firsts[0], through + 1, "{firsts:?} after {through}");
    let stored = kv.get_meta(META_INDEXED_SEQ).unwrap();
    assert_eq!(
        stored,
        Some(through).filter(|&t| t > 0),
        "stored indexed_seq"
    );
    for (i, gen) in packing.gens.iter().enumerate() {
        let end = firsts.get(i + 1).map_or(u64::MAX, |f| f - 1);
        for k in gen.keys() {
            let seq = split_key(&k).unwrap().1;
            assert!(
                (gen.first..=end).contains(&seq),
                "seq {seq} in generation {}",
                gen.first
            );
        }
    }
}

/// The keys of `events` (one per event).
fn expected(events: &[StoredEvent]) -> Dump {
    let mut keys: Dump = events
        .iter()
        .map(|e| id_key(&e.event.id, e.event.tenant.as_deref(), e.seq))
        .collect();
    keys.sort_unstable();
    keys
}

/// Every event of `events` (seqs `1..`) from seq `from` on is found by its id.
fn assert_lookups_from(kv: &KvIndex, events: &[StoredEvent], from: u64) {
    for e in events.iter().filter(|e| e.seq >= from) {
        let tenant = e.event.tenant.as_deref();
        assert_eq!(
            lookup(kv, events, &e.event.id, tenant),
            Some(e.seq),
            "{}",
            e.seq
        );
        assert!(kv
            .seqs_of_id_any_tenant(&e.event.id, 16)
            .unwrap()
            .contains(&e.seq));
    }
}

fn assert_lookups(kv: &KvIndex, events: &[StoredEvent]) {
    assert_lookups_from(kv, events, 1);
}

#[test]
fn packed_runs_answer_like_one_key_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let events = gen_events(7, 4_000);
    let kv = open(dir.path());
    apply_chunked(&kv, &events, 50);
    pack_all(&kv);
    let runs = kv.packing().runs.clone();
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(unpacked(&kv) < events.len() / 2, "{}", unpacked(&kv));
    // 22 bytes a key, 1.25 of filter, 0.09 of fences, 48 of header a run.
    let packed_keys = (runs.last().unwrap().last - runs[0].first + 1) as f64;
    let file_bytes: u64 = runs.iter().map(|r| r.file_bytes()).sum();
    assert!(
        (file_bytes as f64) < packed_keys * 23.5 + 48.0 * runs.len() as f64,
        "{file_bytes}"
    );
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&events));
    assert_lookups(&kv, &events);
    assert!(kv.seqs_of_id("no-such-id", None, 16).unwrap().is_empty());
    let stats = kv.stats().unwrap();
    assert_eq!(stats.runs, runs.len());
    assert_eq!(stats.unpacked_seqs, 4_000 - runs.last().unwrap().last);
    assert_eq!(stats.generations, 1);
    let filters: usize = runs.iter().map(|r| r.bloom.to_bytes().len()).sum();
    assert_eq!(stats.filter_bytes, filters as u64);
    assert!(stats.disk_bytes > 0);
    let entries: Vec<(u64, [u8; FINGERPRINT_BYTES])> = events
        .iter()
        .map(|e| (e.seq, fingerprint(&e.event.id, e.event.tenant.as_deref())))
        .collect();
    assert_eq!(kv.all_entries().unwrap(), entries);
    // Re-applying packed events writes nothing back into a generation.
    let ids = unpacked(&kv);
    kv.apply(&events[..500]).unwrap();
    assert_eq!(unpacked(&kv), ids);
    // A lookup reads the runs whose filter may hold its id: its own, and rarely another.
    let other_runs: usize = events
        .iter()
        .map(|e| {
            let key = id_key(&e.event.id, None, e.seq);
            runs.iter()
                .filter(|r| !(r.first..=r.last).contains(&e.seq) && r.bloom.may_contain(&key))
                .count()
        })
        .sum();
    assert!(other_runs < events.len() * runs.len() / 50, "{other_runs}");
    // A UUIDv7 id's lookup skips the runs of other times by their key ranges, without
    // probing their filters: the 5 % of other ids, whose fingerprints span every value,
    // have the hashed bit and stay out of that range (format 9). Each run's greatest
    // key without the bit is the brute-force one.
    let mut v7 = 0;
    let mut others_in_range = 0;
    for e in &events {
        let idfp = id_fingerprint(&e.event.id);
        let own = runs.iter().find(|r| (r.first..=r.last).contains(&e.seq));
        if let Some(own) = own {
            assert!(own.in_range(&idfp), "{}", e.event.id);
        }
        if idfp[0] & HASHED_ID_BIT == 0 {
            v7 += 1;
            others_in_range += runs
                .iter()
                .filter(|r| !(r.first..=r.last).contains(&e.seq) && r.in_range(&idfp))
                .count();
        }
    }
    assert!(v7 > events.len() * 9 / 10, "{v7}");
    assert!(others_in_range < v7 / 20, "{others_in_range} of {v7}");
    for run in &runs {
        let low = run
            .keys()
            .unwrap()
            .into_iter()
            .filter(|k| k[0] & HASHED_ID_BIT == 0)
            .max();
        assert_eq!(run.greatest_low, low);
    }
    kv.flush().unwrap();
    drop(kv);
    // Reopened: the runs are there, the generations empty until the seqs above the
    // runs are applied again (what the indexer does).
    let kv = open(dir.path());
    let spans_before: Vec<(u64, u64)> = runs.iter().map(|r| (r.first, r.last)).collect();
    assert_eq!(spans(&kv), spans_before);
    let through = runs.last().unwrap().last;
    assert_eq!(kv.indexed_seq().unwrap(), Some(through));
    assert_eq!(dump(&kv), expected(&events[..through as usize]));
    catch_up(&kv, &events);
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&events));
    assert_lookups(&kv, &events);
    // A damaged run file makes the index fail to open (the caller rebuilds it).
    let path = kv.runs_dir().join(runfile::file_name(runs[1].first));
    drop(kv);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(reopen(dir.path()), Err(KvError::Open { .. })));
}

/// A crash while a run is written, after it is renamed but before `packed_through`
/// names it, or after: the index reopens with the committed runs only, and applying
/// the seqs above them again (the indexer) gives every key back.
#[test]
fn a_crash_while_packing_loses_nothing() {
    let events = gen_events(8, 3_000);
    for crash in ["writing", "renamed", "committed"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let kv = open(dir.path());
            // The apply opens the generation at 701 and packs 1..=700.
            kv.apply(&events[..1_200]).unwrap();
            assert_eq!(kv.packed_through().unwrap(), 700);
            assert_eq!(spans(&kv), vec![(1, 700)]);
            check_pages(&kv);
            kv.flush().unwrap();
        }
        let runs = dir.path().join("runs");
        let left = match crash {
            "writing" => Some(runs.join(format!("{}.tmp", runfile::file_name(701)))),
            "renamed" => Some(runs.join(runfile::file_name(701))),
            _ => None,
        };
        if let Some(path) = &left {
            std::fs::write(path, b"not committed").unwrap();
        }
        let kv = open(dir.path());
        assert!(left.is_none_or(|p| !p.exists()), "{crash}");
        check_pages(&kv);
        assert_eq!(kv.indexed_seq().unwrap(), Some(700), "{crash}");
        assert_eq!(dump(&kv), expected(&events[..700]), "{crash}");
        assert_lookups(&kv, &events[..700]);
        catch_up(&kv, &events[..1_200]);
        assert_eq!(dump(&kv), expected(&events[..1_200]), "{crash}");
        apply_chunked(&kv, &events[1_200..], 100);
        pack_all(&kv);
        check_pages(&kv);
        assert_eq!(dump(&kv), expected(&events), "{crash}");
        assert_lookups(&kv, &events);
    }
}

/// What a build that kept the generations in sled left (format 10 before
/// 2026-12-07): its generation trees, an apply in flight, `indexed_seq` above the
/// runs. It opens: the trees dropped, the mark removed, the applied seq the runs'
/// last, and applying the rest again gives every key.
#[test]
fn an_index_whose_generations_an_older_build_kept_in_sled_opens() {
    let events = gen_events(14, 2_000);
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        apply_chunked(&kv, &events[..1_000], 100);
        assert_eq!(kv.packed_through().unwrap(), 700);
        let name = [&b"ids."[..], &701u64.to_be_bytes()].concat();
        let tree = kv.db.open_tree(name).unwrap();
        for e in &events[700..1_000] {
            let key = id_key(&e.event.id, e.event.tenant.as_deref(), e.seq);
            tree.insert(key, &[]).unwrap();
        }
        kv.meta
            .insert(META_INDEXED_SEQ, &1_000u64.to_be_bytes())
            .unwrap();
        kv.meta
            .insert(META_PENDING, &1_100u64.to_be_bytes())
            .unwrap();
        kv.flush().unwrap();
    }
    let kv = open(dir.path());
    assert_eq!(kv.indexed_seq().unwrap(), Some(700));
    assert_eq!(kv.get_meta(META_PENDING).unwrap(), None);
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&events[..700]));
    catch_up(&kv, &events);
    pack_all(&kv);
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&events));
    assert_lookups(&kv, &events);
}

#[test]
fn retention_drops_runs_wholly_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let events = gen_events(10, 4_000);
    let kv = open(dir.path());
    apply_chunked(&kv, &events, 50);
    pack_all(&kv);
    let runs = spans(&kv);
    let below = runs[1].1 + 1;
    while !kv.remove_below_step(below).unwrap() {}
    assert_eq!(spans(&kv), runs[2..].to_vec());
    check_pages(&kv);
    let kept: Vec<StoredEvent> = events.iter().filter(|e| e.seq >= below).cloned().collect();
    assert_eq!(dump(&kv), expected(&kept));
    assert_lookups_from(&kv, &events, below);
}

#[test]
fn retention_into_the_generations_removes_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let events = gen_events(11, 2_000);
    let kv = open(dir.path());
    apply_chunked(&kv, &events, 100);
    // Runs 1..=700 and 701..=1400; the generation from 1401 on.
    assert_eq!(spans(&kv), vec![(1, 700), (701, 1_400)]);
    let below = 1_451;
    let mut steps = 0;
    while !kv.remove_below_step(below).unwrap() {
        steps += 1;
    }
    assert_eq!(steps, 2, "a run a step");
    assert!(spans(&kv).is_empty());
    check_pages(&kv);
    let kept: Vec<StoredEvent> = events.iter().filter(|e| e.seq >= below).cloned().collect();
    assert_eq!(dump(&kv), expected(&kept));
    assert_lookups_from(&kv, &events, below);
    assert_eq!(unpacked(&kv), kept.len());
}

#[test]
fn lookups_during_packing_always_find_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let events = gen_events(12, 6_000);
    let kv = std::sync::Arc::new(open(dir.path()));
    kv.apply(&events[..100]).unwrap();
    let applied = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(100));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (kv, applied, stop, events) =
                (kv.clone(), applied.clone(), stop.clone(), events.clone());
            std::thread::spawn(move || {
                let mut rng = EventGen::new(100 + r);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let upto = applied.load(std::sync::atomic::Ordering::Acquire);
                    let e = &events[(rng.next_u64() % upto) as usize];
                    let seqs = kv
                        .seqs_of_id(&e.event.id, e.event.tenant.as_deref(), 16)
                        .unwrap();
                    assert!(seqs.contains(&e.seq), "{} not found at {upto}", e.seq);
                    n += 1;
                }
                n
            })
        })
        .collect();
    for c in events[100..].chunks(20) {
        kv.apply(c).unwrap();
        applied.store(c.last().unwrap().seq, std::sync::atomic::Ordering::Release);
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let lookups: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    // Generations were packed and runs merged while the readers looked.
    let runs = spans(&kv);
    assert!(runs.last().unwrap().1 >= 5_000, "{runs:?}");
    let merged = MERGE_RUNS as u64 * RUN_EVENTS;
    assert!(runs.iter().any(|(a, b)| b - a + 1 == merged), "{runs:?}");
    assert!(lookups > 1_000, "{lookups}");
    check_pages(&kv);
    assert_lookups(&kv, &events);
}

#[test]
fn runs_of_four_generations_merge_into_one_and_a_crash_in_a_merge_loses_nothing() {
    let events = gen_events(13, 4_000);
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    apply_chunked(&kv, &events[..2_850], 50);
    let r = RUN_EVENTS;
    // The applies packed each generation as the next one was full; the merge is the
    // next step's: each run spans exactly one generation, whatever the applies' sizes.
    let four: Vec<(u64, u64)> = (0..4).map(|i| (1 + i * r, (i + 1) * r)).collect();
    assert_eq!(spans(&kv), four);
    let covered: Vec<(std::path::PathBuf, Vec<u8>)> = four[1..]
        .iter()
        .map(|(first, _)| {
            let path = kv.runs_dir().join(runfile::file_name(*first));
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    kv.pack_step(2_850).unwrap();
    assert_eq!(spans(&kv), vec![(1, 4 * r)], "merged in one step");
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&events[..2_850]));
    assert_lookups(&kv, &events[..2_850]);
    kv.flush().unwrap();
    drop(kv);

    // A crash after the merged run replaced the first one's file and before the
    // others' were removed; and a later merge's file not renamed yet.
    for (path, bytes) in &covered {
        std::fs::write(path, bytes).unwrap();
    }
    let tmp = dir
        .path()
        .join("runs")
        .join(format!("{}.tmp", runfile::file_name(4 * r + 1)));
    std::fs::write(&tmp, b"a merge cut short").unwrap();
    let kv = open(dir.path());
    assert!(covered.iter().all(|(path, _)| !path.exists()));
    assert!(!tmp.exists());
    assert_eq!(spans(&kv), vec![(1, 4 * r)]);
    check_pages(&kv);
    catch_up(&kv, &events[..2_850]);
    assert_eq!(dump(&kv), expected(&events[..2_850]));
    assert_lookups(&kv, &events[..2_850]);

    apply_chunked(&kv, &events[2_850..], 50);
    pack_all(&kv);
    assert_eq!(spans(&kv), vec![(1, 4 * r), (4 * r + 1, 5 * r)]);
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&events));
    assert_lookups(&kv, &events);

    // A run that only partly overlaps another is damage, not a leftover.
    drop(kv);
    let runs_dir = dir.path().join("runs");
    let (first, last) = (4 * r - 5, 4 * r + 10);
    let mut keys: Vec<[u8; KEY_BYTES]> = events[first as usize - 1..last as usize]
        .iter()
        .map(|e| id_key(&e.event.id, e.event.tenant.as_deref(), e.seq))
        .collect();
    keys.sort();
    let mut w = runfile::RunWriter::create(&runs_dir, first, last).unwrap();
    for k in &keys {
        w.push(k).unwrap();
    }
    w.finish(&runs_dir).unwrap();
    assert!(matches!(reopen(dir.path()), Err(KvError::Open { .. })));
}

/// Seqs skipped (an index rebuilt after retention starts at the log's first
/// seq) stay in the current generation: the apply opens the generations its
/// own seqs reach, not one empty generation per [`RUN_EVENTS`] of the gap.
#[test]
fn seqs_skipped_after_retention_open_no_empty_generations() {
    let events = gen_events(15, 9_000);
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    let kept = &events[7_000..];
    kv.apply(&kept[..100]).unwrap();
    let firsts: Vec<u64> = kv.packing().gens.iter().map(|g| g.first).collect();
    // One generation opened at 7,001; the one before it, empty, packed at once
    // (no run file).
    assert_eq!(firsts, vec![7_001], "{firsts:?}");
    assert_eq!(kv.packed_through().unwrap(), 7_000);
    assert!(spans(&kv).is_empty());
    apply_chunked(&kv, &kept[100..], 50);
    pack_all(&kv);
    let r = RUN_EVENTS;
    // The first generation spanned the gap and held nothing: no run file.
    assert_eq!(spans(&kv)[0], (7_001, 7_000 + r));
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(kept));
    assert_lookups_from(&kv, &events, 7_001);
}

/// A clean stop saves the generations: the next open has every key and the applied
/// seq without the log, and removes the file; a snapshot that does not fit the runs
/// on disk (taken before a later packing) or is damaged is ignored, and the seqs
/// above the runs are applied again.
#[test]
fn generations_saved_at_a_clean_stop_come_back_at_open() {
    let events = gen_events(16, 2_500);
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join(snapshot::FILE);
    {
        let kv = open(dir.path());
        apply_chunked(&kv, &events[..1_000], 128);
        kv.flush().unwrap();
        kv.save_generations().unwrap();
    }
    let kv = open(dir.path());
    assert!(!snapshot.exists());
    assert_eq!(kv.indexed_seq().unwrap(), Some(1_000));
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&events[..1_000]));
    assert_lookups(&kv, &events[..1_000]);
    // Opened again after a crash (no snapshot): the generations are empty.
    drop(kv);
    let kv = open(dir.path());
    assert_eq!(kv.indexed_seq().unwrap(), Some(700));
    catch_up(&kv, &events[..1_000]);
    kv.flush().unwrap();
    kv.save_generations().unwrap();
    let saved = std::fs::read(&snapshot).unwrap();
    // Packing moved on after the snapshot was taken: it no longer fits.
    apply_chunked(&kv, &events[1_000..], 128);
    kv.flush().unwrap();
    drop(kv);
    std::fs::write(&snapshot, &saved).unwrap();
    let kv = open(dir.path());
    assert!(!snapshot.exists());
    assert_eq!(kv.indexed_seq().unwrap(), Some(2_100));
    catch_up(&kv, &events);
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&events));
    // A damaged snapshot is ignored the same way.
    kv.flush().unwrap();
    kv.save_generations().unwrap();
    drop(kv);
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&snapshot, &bytes).unwrap();
    let kv = open(dir.path());
    assert_eq!(kv.indexed_seq().unwrap(), Some(2_100));
    catch_up(&kv, &events);
    assert_eq!(dump(&kv), expected(&events));
    assert_lookups(&kv, &events);
}
