//! Tests of the packing: generations, run files, crashes, truncation and retention
//! across them, against brute force (the shared helpers are in `tests`).

use super::tests::{apply_chunked, dump, gen_events, lookup, open, reopen, Dump};
use super::*;
use crate::event::StoredEvent;
use crate::testkit::EventGen;

/// Steps packing until nothing is left to pack or to start.
fn pack_all(kv: &KvIndex) {
    let indexed = kv.indexed_seq().unwrap().unwrap_or(0);
    for _ in 0..100_000 {
        kv.pack_step(indexed).unwrap();
        let p = kv.packing();
        if p.job.is_none() && p.gens.len() == 1 && indexed + 1 < p.gens[0].first + RUN_EVENTS {
            return;
        }
    }
    panic!("packing never ends");
}

/// The keys in generation trees (not packed yet).
fn unpacked(kv: &KvIndex) -> usize {
    kv.packing().gens.iter().map(|g| g.tree.len()).sum()
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
    let mut committed: Vec<String> = runs.iter().map(|r| runfile::file_name(r.first)).collect();
    let packing = kv.packing();
    if let Some(packed::Job {
        stage: packed::Stage::Write { .. },
        ..
    }) = packing.job
    {
        committed.push(format!("{}.tmp", runfile::file_name(packing.gens[0].first)));
    }
    drop(packing);
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

/// The generation trees on disk are the writer's, tile the seqs above
/// `packed_through` (allowing the one packed but not yet dropped), and hold only keys
/// of their own range (invariant 1 of `gens`).
fn check_gens(kv: &KvIndex) {
    let packing = kv.packing();
    let through = kv.packed_through().unwrap();
    let mut on_disk: Vec<Vec<u8>> = kv
        .db
        .tree_names()
        .into_iter()
        .filter(|n| n.starts_with(b"ids."))
        .map(|n| n.to_vec())
        .collect();
    on_disk.sort();
    let firsts: Vec<u64> = packing.gens.iter().map(|g| g.first).collect();
    let named: Vec<Vec<u8>> = firsts
        .iter()
        .map(|f| [&b"ids."[..], &f.to_be_bytes()].concat())
        .collect();
    assert_eq!(on_disk, named, "generation trees");
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");
    let packed_not_dropped = matches!(
        packing.job,
        Some(packed::Job {
            stage: packed::Stage::Drop,
            ..
        })
    );
    let unpacked_from = if packed_not_dropped {
        firsts[1]
    } else {
        firsts[0]
    };
    assert_eq!(unpacked_from, through + 1, "{firsts:?} after {through}");
    for (i, gen) in packing.gens.iter().enumerate() {
        let end = firsts.get(i + 1).map_or(u64::MAX, |f| f - 1);
        for e in gen.tree.iter() {
            let seq = split_key(&e.unwrap().0).unwrap().1;
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
    let kv = open(dir.path());
    let spans_before: Vec<(u64, u64)> = runs.iter().map(|r| (r.first, r.last)).collect();
    assert_eq!(spans(&kv), spans_before);
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

#[test]
fn a_crash_while_packing_loses_nothing() {
    let events = gen_events(8, 3_000);
    // Stop after this many steps: the apply's own step (the first of writing the
    // first run: the apply opened the generation after it), inside writing the first
    // run's pages, at its last page, and just after its commit with its generation
    // not dropped yet (700 keys, 97 a step).
    for steps in [1, 3, 7, 8] {
        let dir = tempfile::tempdir().unwrap();
        {
            let kv = open(dir.path());
            kv.apply(&events[..1_200]).unwrap();
            for _ in 1..steps {
                kv.pack_step(1_200).unwrap();
            }
            assert_eq!(kv.packing().gens.len(), 2, "{steps}: already done");
            assert_eq!(
                kv.packed_through().unwrap() > 0,
                steps == 8,
                "{steps}: committed"
            );
            kv.flush().unwrap();
        }
        let runs = dir.path().join("runs");
        let tmp = runs.join(format!("{}.tmp", runfile::file_name(1)));
        assert_eq!(
            tmp.exists(),
            (1..8).contains(&steps),
            "{steps}: a run being written"
        );
        // A run file renamed but not committed (a crash before `packed_through`).
        let through = open(dir.path()).packed_through().unwrap();
        assert!(!tmp.exists());
        let stray = runs.join(runfile::file_name(through + 1));
        std::fs::write(&stray, b"not committed").unwrap();
        let kv = open(dir.path());
        assert!(!stray.exists());
        check_pages(&kv);
        assert_eq!(dump(&kv), expected(&events[..1_200]), "{steps}");
        assert_lookups(&kv, &events[..1_200]);
        apply_chunked(&kv, &events[1_200..], 100);
        pack_all(&kv);
        check_pages(&kv);
        assert_eq!(dump(&kv), expected(&events), "{steps}");
        assert_lookups(&kv, &events);
    }
}

#[test]
fn truncating_into_packed_runs_keeps_what_is_below() {
    let events = gen_events(9, 3_000);
    for from in [300, 1_201, 2_500] {
        let dir = tempfile::tempdir().unwrap();
        let kv = open(dir.path());
        apply_chunked(&kv, &events, 40);
        pack_all(&kv);
        assert!(kv.packed_through().unwrap() >= from.min(1_400));
        kv.truncate_from(from, &[]).unwrap();
        assert_eq!(kv.indexed_seq().unwrap(), Some(from - 1));
        assert!(kv.packed_through().unwrap() < from);
        check_pages(&kv);
        let kept = &events[..from as usize - 1];
        assert_eq!(dump(&kv), expected(kept), "{from}");
        assert_lookups(&kv, kept);
        for e in &events[from as usize - 1..] {
            assert_eq!(
                lookup(&kv, &events, &e.event.id, e.event.tenant.as_deref()),
                None
            );
        }
        // A truncation while a run is being written abandons it.
        apply_chunked(&kv, &events[from as usize - 1..], 40);
        kv.truncate_from(from, &[]).unwrap();
        check_pages(&kv);
        assert_eq!(dump(&kv), expected(kept), "{from} again");
        apply_chunked(&kv, &events[from as usize - 1..], 40);
        pack_all(&kv);
        check_pages(&kv);
        assert_eq!(dump(&kv), expected(&events), "{from} reapplied");
        assert_lookups(&kv, &events);
    }
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
    let mut resume = None;
    while !kv.remove_below_step(below, &mut resume, 7).unwrap() {}
    assert_eq!(spans(&kv), runs[2..].to_vec());
    check_pages(&kv);
    let kept: Vec<StoredEvent> = events.iter().filter(|e| e.seq >= below).cloned().collect();
    assert_eq!(dump(&kv), expected(&kept));
    assert_lookups_from(&kv, &events, below);
}

#[test]
fn retention_into_the_generations_removes_their_keys_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let events = gen_events(11, 1_200);
    let kv = open(dir.path());
    // Two generations, the older one (1..=700) being packed: the step crosses from one
    // to the other.
    kv.apply(&events[..1_000]).unwrap();
    kv.apply(&events[1_000..]).unwrap();
    assert_eq!(kv.packing().gens.len(), 2);
    assert!(kv.packing().job.is_some());
    let below = 1_051;
    let remove_all = |kv: &KvIndex| {
        let mut resume = None;
        let mut steps = 0;
        while !kv.remove_below_step(below, &mut resume, 7).unwrap() {
            steps += 1;
        }
        steps
    };
    assert!(remove_all(&kv) > 100);
    check_pages(&kv);
    let kept: Vec<StoredEvent> = events.iter().filter(|e| e.seq >= below).cloned().collect();
    assert_lookups_from(&kv, &events, below);
    // The pages already written keep their keys until the next pass drops their run.
    let left = dump(&kv);
    assert!(left.len() < 1_000 / 4 + kept.len(), "{}", left.len());
    pack_all(&kv);
    remove_all(&kv);
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&kept));
    assert_lookups_from(&kv, &events, below);
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
    // Step until the four runs are committed and the last one's generation dropped,
    // before the step that merges them: each spans exactly one generation, whatever
    // the applies' sizes.
    let mut steps = 0;
    while spans(&kv).len() < MERGE_RUNS || kv.packing().job.is_some() {
        kv.pack_step(2_850).unwrap();
        steps += 1;
        assert!(steps < 10_000, "{:?}", spans(&kv));
    }
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

/// A generation an older build let grow past [`RUN_EVENTS`] seqs (it started the
/// next one at the first seq after an apply that reached that span) is closed at
/// the next apply, keeping its keys: no key lands outside its generation's range.
#[test]
fn a_generation_grown_past_its_span_by_an_older_build_is_closed_whole() {
    let events = gen_events(14, 3_000);
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    {
        let packing = kv.packing();
        for e in &events[..1_000] {
            let key = id_key(&e.event.id, e.event.tenant.as_deref(), e.seq);
            packing.gens[0].tree.insert(key, &[]).unwrap();
        }
    }
    kv.meta
        .insert(META_INDEXED_SEQ, &1_000u64.to_be_bytes())
        .unwrap();
    apply_chunked(&kv, &events[1_000..], 50);
    pack_all(&kv);
    let r = RUN_EVENTS;
    let runs = spans(&kv);
    assert_eq!(runs[0], (1, 1_000), "{runs:?}");
    assert_eq!(runs[1], (1_001, 1_000 + r), "{runs:?}");
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(&events));
    assert_lookups(&kv, &events);
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
    assert_eq!(firsts, vec![1, 7_001], "{firsts:?}");
    apply_chunked(&kv, &kept[100..], 50);
    pack_all(&kv);
    let r = RUN_EVENTS;
    // The first generation spanned the gap and held nothing: no run file.
    assert_eq!(spans(&kv)[0], (7_001, 7_000 + r));
    check_pages(&kv);
    assert_eq!(dump(&kv), expected(kept));
    assert_lookups_from(&kv, &events, 7_001);
}
