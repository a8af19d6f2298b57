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

/// What the indexer does after an open: applies the events above the applied seq
/// (`events` holds seqs `1..`), in the indexer's batches.
pub(super) fn catch_up(kv: &KvIndex, events: &[StoredEvent]) {
    let from = kv.indexed_seq().unwrap().unwrap_or(0) as usize;
    apply_chunked(kv, &events[from.min(events.len())..], 4_096);
}

/// Every key the index holds, in a generation or in a committed run, once, sorted.
pub(super) type Dump = Vec<[u8; KEY_BYTES]>;

pub(super) fn dump(kv: &KvIndex) -> Dump {
    let mut keys = Vec::new();
    let packing = kv.packing();
    kv.packed_keys(&packing.runs, &mut keys).unwrap();
    for gen in &packing.gens {
        keys.extend(gen.keys());
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

    // Reopen: the runs hold the keys through `packed_through`, the generations start
    // empty, and applying the events above it again gives back every key.
    kv.flush().unwrap();
    drop(kv);
    let kv = open(dir.path());
    let through = kv.packed_through().unwrap();
    assert!(through >= 3_000 - 2 * RUN_EVENTS, "{through}");
    assert_eq!(kv.indexed_seq().unwrap(), Some(through));
    let packed: Vec<_> = before
        .iter()
        .filter(|k| seq_of(k) <= through)
        .copied()
        .collect();
    assert_eq!(dump(&kv), packed);
    catch_up(&kv, &events);
    assert_eq!(kv.indexed_seq().unwrap(), Some(3_000));
    assert_eq!(dump(&kv), before);
    for e in &events {
        let tenant = e.event.tenant.as_deref();
        assert_eq!(kv.seqs_of_id(&e.event.id, tenant, 16).unwrap(), [e.seq]);
        assert_eq!(kv.seqs_of_id_any_tenant(&e.event.id, 16).unwrap(), [e.seq]);
    }
    assert!(kv.seqs_of_id("no-such-id", None, 16).unwrap().is_empty());
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

    // Retention removing seq 5 leaves seq 10 as the id's first.
    while !kv.remove_below_step(6).unwrap() {}
    assert_eq!(kv.seqs_of_id(&dup, t, 16).unwrap(), [10]);
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
    while !kv.remove_below_step(2).unwrap() {}
    assert_eq!(kv.seqs_of_id_any_tenant("order-55", 10).unwrap().len(), 3);
    assert!(kv.seqs_of_id("order-55", None, 16).unwrap().is_empty());
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
        // Keys in a tree of a build before the versions (its `ids` tree).
        kv.db.open_tree("ids").unwrap().insert(b"k", b"").unwrap();
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
fn a_damaged_meta_value_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        kv.apply(&gen_events(7, 5)).unwrap();
        kv.meta
            .insert(packed::META_PACKED_THROUGH, &[1, 2, 3])
            .unwrap();
        kv.flush().unwrap();
    }
    let err = reopen(dir.path()).unwrap_err();
    assert!(matches!(err, KvError::Open { .. }), "{err}");
    assert!(err.to_string().contains("expected 8 bytes"), "{err}");
}
