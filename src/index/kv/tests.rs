use super::*;
use crate::event::Event;
use crate::testkit::EventGen;

const BASE_RECEIVED: i64 = 1_790_000_000_000_000;

/// `n` realistic stored events with seqs `1..=n`.
pub(super) fn gen_events(seed: u64, n: u64) -> Vec<StoredEvent> {
    let mut gen = EventGen::new(seed);
    (1..=n)
        .map(|seq| StoredEvent {
            seq,
            received_at: BASE_RECEIVED + seq as i64 * 1_000,
            event: gen.next_event(),
            provenance: None,
        })
        .collect()
}

/// Opens with a small cache, waiting out the directory lock that sled
/// releases from background threads after a database is dropped.
pub(super) fn reopen(dir: &Path) -> Result<KvIndex, KvError> {
    reopen_with(dir, 1 << 20)
}

pub(super) fn reopen_with(dir: &Path, cache: u64) -> Result<KvIndex, KvError> {
    for _ in 0..100 {
        match KvIndex::open(dir, cache) {
            Err(e) if e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other,
        }
    }
    KvIndex::open(dir, cache)
}

pub(super) fn open(dir: &Path) -> KvIndex {
    reopen_with(dir, 8 * 1024 * 1024).unwrap()
}

pub(super) fn apply_chunked(kv: &KvIndex, events: &[StoredEvent], chunk: usize) {
    for c in events.chunks(chunk) {
        kv.apply(c).unwrap();
    }
}

/// Every key the index holds, in a generation or in a committed run, once, sorted:
/// what it says whatever the tier (a generation packed but not dropped is in both).
pub(super) type Dump = Vec<[u8; KEY_BYTES]>;

pub(super) fn dump(kv: &KvIndex) -> Dump {
    let mut keys = Vec::new();
    let packing = kv.packing();
    kv.packed_keys(&packing.runs, &mut keys).unwrap();
    for gen in &packing.gens {
        for e in gen.tree.iter() {
            let (k, v) = e.unwrap();
            assert!(v.is_empty(), "a generation's value");
            keys.push(packed::key_of(&k).unwrap());
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[test]
fn apply_and_lookups_match_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let events = gen_events(1, 3_000);
    let kv = open(dir.path());
    assert_eq!(kv.indexed_seq().unwrap(), None);
    let mut start = 0;
    let mut rng = EventGen::new(99);
    while start < events.len() {
        let n = (1 + rng.next_u64() % 400) as usize;
        let end = (start + n).min(events.len());
        kv.apply(&events[start..end]).unwrap();
        assert_eq!(kv.indexed_seq().unwrap(), Some(end as u64));
        start = end;
    }
    kv.apply::<StoredEvent>(&[]).unwrap();
    for e in &events {
        assert_eq!(
            kv.seqs_of_id(&e.event.id, e.event.tenant.as_deref(), 16)
                .unwrap(),
            [e.seq],
            "{}",
            e.event.id
        );
    }
    assert!(kv.seqs_of_id("no-such-id", None, 16).unwrap().is_empty());
    let keys: Vec<(u64, [u8; FINGERPRINT_BYTES])> = events
        .iter()
        .map(|e| (e.seq, fingerprint(&e.event.id, e.event.tenant.as_deref())))
        .collect();
    assert_eq!(kv.all_entries().unwrap(), keys);

    // Re-applying is harmless.
    kv.apply(&events[1_000..1_500]).unwrap();
    let before = dump(&kv);
    assert_eq!(kv.indexed_seq().unwrap(), Some(3_000));
    kv.apply(&events[2_500..]).unwrap();
    assert_eq!(dump(&kv), before);
    assert_eq!(kv.indexed_seq().unwrap(), Some(3_000));

    // Reopen.
    kv.flush().unwrap();
    drop(kv);
    let kv = open(dir.path());
    assert_eq!(kv.indexed_seq().unwrap(), Some(3_000));
    assert_eq!(dump(&kv), before);
    // Lookups after the reopen: the generations' id filters are rebuilt from their
    // trees (every key here is still in one: 3,000 < one generation).
    for e in &events {
        let tenant = e.event.tenant.as_deref();
        assert_eq!(kv.seqs_of_id(&e.event.id, tenant, 16).unwrap(), [e.seq]);
        assert_eq!(kv.seqs_of_id_any_tenant(&e.event.id, 16).unwrap(), [e.seq]);
    }
    assert!(kv.seqs_of_id("no-such-id", None, 16).unwrap().is_empty());
}

#[test]
fn truncate_then_reapply_equals_never_applied() {
    let events = gen_events(2, 3_000);
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = open(reference_dir.path());
    apply_chunked(&reference, &events[..2_000], 333);

    // With the removed events at hand.
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    apply_chunked(&kv, &events, 512);
    kv.truncate_from(2_001, &events[2_000..]).unwrap();
    assert_eq!(kv.indexed_seq().unwrap(), Some(2_000));
    assert_eq!(dump(&kv), dump(&reference));

    // By full scan; also with an incomplete list of events (falls back to the scan).
    for removed in [&[][..], &events[2_100..]] {
        let dir = tempfile::tempdir().unwrap();
        let kv = open(dir.path());
        apply_chunked(&kv, &events, 1_000);
        kv.truncate_from(2_001, removed).unwrap();
        assert_eq!(kv.indexed_seq().unwrap(), Some(2_000));
        assert_eq!(dump(&kv), dump(&reference));
    }

    // Truncate, then apply the rest again: same as applying everything once.
    let full_dir = tempfile::tempdir().unwrap();
    let full = open(full_dir.path());
    apply_chunked(&full, &events, 700);
    kv.truncate_from(1_501, &[]).unwrap();
    assert_eq!(kv.indexed_seq().unwrap(), Some(1_500));
    apply_chunked(&kv, &events[1_500..], 250);
    assert_eq!(dump(&kv), dump(&full));

    // Truncating beyond what is indexed changes nothing and never raises indexed_seq.
    kv.truncate_from(5_000, &[]).unwrap();
    assert_eq!(kv.indexed_seq().unwrap(), Some(3_000));
    assert_eq!(dump(&kv), dump(&full));

    // From 1 (or 0): empty.
    kv.truncate_from(0, &events).unwrap();
    assert_eq!(kv.indexed_seq().unwrap(), None);
    assert!(dump(&kv).is_empty());
    assert!(kv.all_entries().unwrap().is_empty());
}

#[test]
fn interrupted_apply_is_undone_on_open() {
    let events = gen_events(3, 300);
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = open(reference_dir.path());
    apply_chunked(&reference, &events[..200], 64);

    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        apply_chunked(&kv, &events, 64);
        // As if the process died after the keys of 201..=300 but before the meta batch.
        kv.meta
            .insert(META_INDEXED_SEQ, &200u64.to_be_bytes())
            .unwrap();
        kv.meta.insert(META_PENDING, &300u64.to_be_bytes()).unwrap();
        kv.flush().unwrap();
    }
    let kv = open(dir.path());
    assert_eq!(kv.indexed_seq().unwrap(), Some(200));
    assert_eq!(kv.meta.get(META_PENDING).unwrap(), None);
    assert_eq!(dump(&kv), dump(&reference));
}

/// What `Engine::get_by_id` answers: the first candidate whose event has the id
/// in the tenant.
pub(super) fn lookup(
    kv: &KvIndex,
    events: &[StoredEvent],
    id: &str,
    tenant: Option<&str>,
) -> Option<u64> {
    kv.seqs_of_id(id, tenant, 16)
        .unwrap()
        .into_iter()
        .find(|&s| {
            let e = &events[s as usize - 1].event;
            e.id == id && e.tenant.as_deref() == tenant
        })
}

#[test]
fn ids_keep_their_first_seq() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    let mut events = gen_events(4, 12);
    for (to, from) in [(9, 4), (11, 10)] {
        // seq 10 repeats seq 5's id, seq 12 seq 11's (same run), in the same tenant.
        events[to].event.id = events[from].event.id.clone();
        events[to].event.tenant = events[from].event.tenant.clone();
    }
    let dup = events[4].event.id.clone();
    let t = events[4].event.tenant.clone();
    let t = t.as_deref();
    kv.apply(&events[..7]).unwrap();
    kv.apply(&events[7..]).unwrap();
    assert_eq!(kv.seqs_of_id(&dup, t, 16).unwrap(), [5, 10]);
    assert_eq!(lookup(&kv, &events, &dup, t), Some(5));
    let t10 = events[10].event.tenant.as_deref();
    assert_eq!(lookup(&kv, &events, &events[10].event.id, t10), Some(11));
    kv.apply(&events[9..10]).unwrap();
    assert_eq!(kv.seqs_of_id(&dup, t, 16).unwrap(), [5, 10]);
    let all = kv.all_entries().unwrap();
    assert_eq!(all.len(), 12, "one key per event");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(kv.seqs_of_id(&dup, t, 1).unwrap(), [5], "the lowest first");

    // Removing seq 10 keeps the id (it belongs to seq 5); removing 5 drops it.
    kv.truncate_from(8, &events[7..]).unwrap();
    assert_eq!(kv.seqs_of_id(&dup, t, 16).unwrap(), [5]);
    kv.truncate_from(3, &events[2..7]).unwrap();
    assert_eq!(lookup(&kv, &events, &dup, t), None);
    assert_eq!(kv.indexed_seq().unwrap(), Some(2));
}

#[test]
fn ids_are_per_tenant_and_listed_by_one_range_scan() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    let mut events = gen_events(5, 6);
    // One id in four namespaces: no tenant, "acme", "globex", "acme2"
    // (a tenant whose name extends another's).
    let tenants = [None, Some("acme"), Some("globex"), Some("acme2")];
    for (ev, t) in events.iter_mut().zip(tenants) {
        ev.event.id = "order-55".into();
        ev.event.tenant = t.map(str::to_string);
    }
    events[4].event.id = "order-5".into(); // a prefix of the id, as text
    events[4].event.tenant = Some("acme".into());
    kv.apply(&events).unwrap();
    for (i, t) in tenants.iter().enumerate() {
        assert_eq!(kv.seqs_of_id("order-55", *t, 16).unwrap(), [i as u64 + 1]);
    }
    assert!(kv
        .seqs_of_id("order-55", Some("initech"), 16)
        .unwrap()
        .is_empty());
    assert_eq!(kv.seqs_of_id("order-5", Some("acme"), 16).unwrap(), [5]);
    assert!(kv.seqs_of_id("order-5", None, 16).unwrap().is_empty());
    let mut listed = kv.seqs_of_id_any_tenant("order-55", 10).unwrap();
    listed.sort();
    assert_eq!(listed, [1, 2, 3, 4]);
    assert_eq!(kv.seqs_of_id_any_tenant("order-55", 2).unwrap().len(), 2);
    assert_eq!(kv.seqs_of_id_any_tenant("order-5", 10).unwrap(), [5]);
    assert!(kv.seqs_of_id_any_tenant("order", 10).unwrap().is_empty());
    // Removing one tenant's event leaves the others'.
    kv.truncate_from(4, &events[3..]).unwrap();
    assert_eq!(kv.seqs_of_id_any_tenant("order-55", 10).unwrap().len(), 3);
    assert!(kv
        .seqs_of_id("order-55", Some("acme2"), 16)
        .unwrap()
        .is_empty());
}

#[test]
fn tricky_strings_never_mix() {
    let names: Vec<String> = vec![
        "".into(),
        "\0".into(),
        "\0\0".into(),
        "a".into(),
        "a\0".into(),
        "a\0b".into(),
        "ab".into(),
        "abc".into(),
        "bc".into(),
        "c".into(),
        "u-1".into(),
        "u-10".into(),
        "u-1\u{7f}".into(),
        "\u{ff}".into(),
        "x".repeat(127),
        "x".repeat(128),
        "x".repeat(256),
        "x".repeat(300),
        "é".repeat(100),
    ];
    let mut events = Vec::new();
    let mut seq = 0;
    for round in 0..3 {
        for (i, a) in names.iter().enumerate() {
            for (j, b) in names.iter().enumerate() {
                if (i + j + round) % 3 != 0 {
                    continue;
                }
                seq += 1;
                let pick = |k: usize| names[(i * 7 + j * 3 + k + round) % names.len()].clone();
                events.push(StoredEvent {
                    seq,
                    received_at: BASE_RECEIVED - seq as i64 * 7,
                    event: Event {
                        id: format!("{a}|{b}|{round}"),
                        timestamp: (seq % 5 != 0).then_some(-(seq as i64) * 1_000 + 3),
                        action: "update".into(),
                        entity_type: Some(a.clone()),
                        entity_id: Some(b.clone()),
                        user_id: Some(pick(0)),
                        tenant: Some(pick(1)),
                        correlation_id: (seq % 2 == 0).then(|| pick(2)),
                        session_id: (seq % 3 == 0).then(|| pick(3)),
                        ..Event::default()
                    },
                    provenance: None,
                });
            }
        }
    }
    // Entity type only, entity id only: no entity key.
    seq += 1;
    events.push(StoredEvent {
        seq,
        received_at: 0,
        event: Event {
            id: "\0".into(),
            action: "x".into(),
            entity_type: Some("a".into()),
            user_id: Some("u-1".into()),
            ..Event::default()
        },
        provenance: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    apply_chunked(&kv, &events, 97);
    for e in &events {
        assert_eq!(
            kv.seqs_of_id(&e.event.id, e.event.tenant.as_deref(), 16)
                .unwrap(),
            [e.seq]
        );
    }
}

#[test]
fn garbage_directory_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut gen = EventGen::new(5);
    let junk: Vec<u8> = (0..200_000).map(|_| gen.next_u64() as u8).collect();
    std::fs::write(dir.path().join("db"), &junk).unwrap();
    std::fs::write(dir.path().join("conf"), &junk[..100]).unwrap();
    let err = reopen(dir.path()).unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, KvError::Open { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );

    // A real index whose data file was overwritten: sled refuses it, or (if it reads
    // the junk as a torn log tail) it comes back empty; never with made-up keys.
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        kv.apply(&gen_events(5, 500)).unwrap();
        kv.flush().unwrap();
    }
    let db_len = std::fs::metadata(dir.path().join("db")).unwrap().len() as usize;
    std::fs::write(dir.path().join("db"), &junk[..db_len.min(junk.len())]).unwrap();
    match reopen(dir.path()) {
        Err(err) => assert!(matches!(err, KvError::Open { .. }), "{err}"),
        Ok(kv) => {
            eprintln!("junk data file opened as an empty index");
            assert_eq!(kv.indexed_seq().unwrap(), None);
            assert!(kv.all_entries().unwrap().is_empty());
        }
    }

    // A plain file where the directory should be.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        KvIndex::open(&file, 1 << 20),
        Err(KvError::Open { .. })
    ));
}

#[test]
fn other_format_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        kv.apply(&gen_events(6, 10)).unwrap();
        kv.meta.insert(META_FORMAT, &1u32.to_be_bytes()).unwrap();
        kv.flush().unwrap();
    }
    let err = reopen(dir.path()).unwrap_err();
    assert!(matches!(err, KvError::Open { .. }), "{err}");
    assert!(err.to_string().contains("format version 1"), "{err}");

    // Version 3, with its ordered key families: refused too (the caller rebuilds).
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        kv.apply(&gen_events(6, 10)).unwrap();
        kv.meta.insert(META_FORMAT, &3u32.to_be_bytes()).unwrap();
        kv.db.open_tree("user").unwrap().insert(b"k", b"").unwrap();
        kv.flush().unwrap();
    }
    let err = reopen(dir.path()).unwrap_err();
    assert!(err.to_string().contains("format version 3"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        kv.apply(&gen_events(6, 10)).unwrap();
        kv.meta.remove(META_FORMAT).unwrap();
        kv.flush().unwrap();
    }
    assert!(matches!(reopen(dir.path()), Err(KvError::Open { .. })));
}

#[test]
fn keys_are_fingerprints_and_the_seq() {
    let u = "019b76da-aa55-7c3e-8f00-123456789abc";
    let upper = "019B76DA-AA55-7C3E-8F00-123456789ABC";
    let long = "x".repeat(300);
    let ids = [
        u,
        upper,
        "evt-1",
        "evt-10",
        "",
        "a",
        "ab",
        "r1-e7",
        "019b76da-aa55-7c3e-8f00-123456789abcd",
        &long,
    ];
    let tenants = [
        None,
        Some(""),
        Some("acme"),
        Some("a\u{0}b\u{1}"),
        Some("é"),
    ];
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        for tenant in tenants {
            let k = id_key(id, tenant, 0x0102_0304_0506_0708);
            assert_eq!(k.len(), KEY_BYTES);
            let (fp, seq) = split_key(&k).unwrap();
            assert_eq!(seq, 0x0102_0304_0506_0708);
            assert_eq!(fp, fingerprint(id, tenant));
            // The id's fingerprint starts every key of the id, whatever the tenant.
            assert!(k.starts_with(&id_fingerprint(id)));
            assert!(seen.insert(fp), "{id:?} {tenant:?} share a fingerprint");
        }
    }
    // A UUIDv7 id's key starts with its millisecond timestamp, so keys of ids made
    // later sort later; any other id's with its hash.
    let (a, b) = (
        "019b76da-aa55-7c3e-8f00-123456789abc",
        "019b76db-0000-7000-8000-000000000000",
    );
    assert_eq!(
        id_key(a, None, 1)[..6],
        [0x01, 0x9b, 0x76, 0xda, 0xaa, 0x55]
    );
    assert!(id_key(a, Some("zz"), 9) < id_key(b, None, 1));
    let v4 = "9b2e5a51-2a37-4d7e-9f00-123456789abc";
    assert_ne!(
        id_key(v4, None, 1)[..6],
        [0x9b, 0x2e, 0x5a, 0x51, 0x2a, 0x37]
    );
    // Any other id's fingerprint has the hashed bit, a UUIDv7 id's (of a timestamp
    // below 2^47 ms) never: the two kinds of keys are two ranges.
    for id in ids.iter().copied().chain([v4]) {
        let hashed = id_key(id, None, 1)[0] & HASHED_ID_BIT != 0;
        assert_eq!(hashed, id != u && id != upper, "{id:?}");
    }
    // Keys of one (id, tenant) sort by seq.
    assert!(id_key("a", None, 255) < id_key("a", None, 256));
}

#[test]
fn damaged_keys_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    kv.apply(&gen_events(7, 5)).unwrap();
    let mut bad = fingerprint("bad", None).to_vec();
    bad.extend_from_slice(&[1, 2]);
    let current = kv.packing().gens.last().unwrap().tree.clone();
    current.insert(bad, &[]).unwrap();
    // Found at the next open: the generation's id filter is built from the keys in
    // its tree, damaged ones included (a key written past the filter, as here, is
    // not looked for until then).
    kv.flush().unwrap();
    drop((kv, current));
    let kv = open(dir.path());
    assert!(matches!(
        kv.seqs_of_id("bad", None, 16),
        Err(KvError::Damaged(_))
    ));
    assert!(matches!(
        kv.seqs_of_id_any_tenant("bad", 10),
        Err(KvError::Damaged(_))
    ));
    assert!(matches!(kv.all_entries(), Err(KvError::Damaged(_))));
}
