//! Compression dictionaries: when the first comes, when a newer one ends a
//! segment, what a restart keeps, and a segment whose dictionary does not load.

use super::*;

/// A restart keeps compressing: the segments a reopened log creates get the
/// newest dictionary on disk at once, and an active segment without one (a
/// fresh log's first) is sealed at the first append after it. A log opened
/// with `dict_sample_bytes = 0` still stores new segments uncompressed.
#[test]
fn a_reopened_log_compresses_new_segments_with_the_newest_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1_000);
    let before = segments(dir.path()).len();
    // The next day: the reopened log starts a new segment at its first append.
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT + 3_600_000_000));
    let log = open_small(dir.path(), &clock);
    let mut gen = EventGen::new(406);
    log.append(&events(&mut gen, 40, 450), &Provenance::cli())
        .unwrap();
    drop(log);
    let files = segments(dir.path());
    assert_eq!(files.len(), before + 1, "{files:?}");
    let newest = header(files.last().unwrap());
    assert!(newest.dict_len > 0, "the new day's segment is uncompressed");
    assert_eq!(
        dictionary_of(files.last().unwrap()),
        dictionary_of(&files[before - 1]),
        "the newest dictionary on disk"
    );

    // Compression turned off: the next day's segment is stored as it is.
    clock.advance(24 * 3_600_000_000);
    let log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes_max: SEGMENT_BYTES,
            dict_sample_bytes: 0,
            ..LogConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    log.append(&events(&mut gen, 40, 450), &Provenance::cli())
        .unwrap();
    drop(log);
    let files = segments(dir.path());
    assert_eq!(files.len(), before + 2, "{files:?}");
    assert_eq!(header(files.last().unwrap()).dict_len, 0);
}

/// Before the first dictionary every payload is a sample, and the first is
/// trained from a quarter of the sample bytes (`dict::FIRST_SHARE`): the
/// uncompressed first segment holds about `dict_sample_bytes / 4` of payloads,
/// not the whole sample bytes (before the quick first dictionary), nor eight
/// times that (when one payload in eight was sampled).
#[test]
fn the_first_dictionary_comes_after_a_quarter_of_the_sample_bytes() {
    const SAMPLE_BYTES: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    let log = Log::open(
        dir.path(),
        LogConfig {
            dict_sample_bytes: SAMPLE_BYTES,
            ..LogConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    let mut feed = Feeder::new(407, 5, 5);
    feed.until_dictionaries(&log, 1);
    log.append(&events(&mut feed.gen, 10, 450), &Provenance::cli())
        .unwrap();
    drop(log);
    let files = segments(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(header(&files[0]).dict_len, 0);
    assert!(header(&files[1]).dict_len > 0);
    let first = std::fs::metadata(&files[0]).unwrap().len() as usize;
    let share = SAMPLE_BYTES / stele::log::dict::FIRST_SHARE;
    assert!(
        first < 3 * share,
        "{first} bytes stored uncompressed before the first dictionary, from {share} bytes of samples"
    );
}

/// A log of the default segment size whose dictionaries are trained from
/// 32 KiB of samples (the first from 8 KiB).
fn open_sampling(dir: &Path, clock: &Arc<ManualClock>) -> Log {
    Log::open(
        dir,
        LogConfig {
            dict_sample_bytes: 32 * 1024,
            ..LogConfig::default()
        },
        clock.clone(),
    )
    .unwrap()
}

/// A restarted log keeps the full dictionary it opened with until the next
/// 1 GiB of payloads (no training, so no segment ended for one), and
/// replaces a quick first one with one from all the sample bytes.
#[test]
fn a_restart_keeps_a_full_dictionary_and_replaces_a_quick_one() {
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    // Two events a batch: few samples pile up while the trainer works.
    let mut feed = Feeder::new(410, 2, 1);

    // Stopped after the full (second) dictionary.
    let dir = tempfile::tempdir().unwrap();
    let log = open_sampling(dir.path(), &clock);
    feed.until_dictionaries(&log, 2);
    feed.put_in_use(&log, dir.path());
    drop(log);
    let before = segments(dir.path()).len();
    let log = open_sampling(dir.path(), &clock);
    // Twice what a training from 32 KiB of one-in-eight samples takes.
    for _ in 0..600 {
        log.append(&events(&mut feed.gen, 2, 450), &Provenance::cli())
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        log.dictionary().map(|d| crc32fast::hash(d.bytes())),
        Some(crc32fast::hash(&feed.dicts[1])),
        "a new dictionary trained after the restart"
    );
    drop(log);
    assert_eq!(segments(dir.path()).len(), before);

    // Stopped after the quick first one: the restarted log trains the full one.
    let dir = tempfile::tempdir().unwrap();
    feed.dicts.clear();
    let log = open_sampling(dir.path(), &clock);
    feed.until_dictionaries(&log, 1);
    feed.put_in_use(&log, dir.path());
    drop(log);
    let log = open_sampling(dir.path(), &clock);
    feed.until_dictionaries(&log, 2);
    let dicts = &feed.dicts;
    assert!(
        dicts[1].len() > dicts[0].len(),
        "after the restart: {} bytes, trained from more samples than the quick {}",
        dicts[1].len(),
        dicts[0].len()
    );
}

/// An active segment whose dictionary zstd refuses (its CRCs made right, as
/// someone who can write the disk could) and that holds no record yet passes
/// recovery, which prepares a dictionary only to read records; the writer
/// then never appends to it (it would store records uncompressed where the
/// header says they are compressed) but seals it and goes on in a new segment.
#[test]
fn an_active_segment_whose_dictionary_does_not_load_is_not_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 100);
    let path = segments(dir.path()).pop().unwrap();
    writable(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    let mut h = Header::decode(&bytes).unwrap();
    assert!(h.dict_len > 0);
    let start = h.records_start();
    // A zstd dictionary's magic number, then nothing zstd can load.
    let dict = &mut bytes[HEADER_BYTES..start];
    dict.fill(0xFF);
    dict[..4].copy_from_slice(&0xEC30_A437u32.to_le_bytes());
    h.dict_crc = crc32fast::hash(dict);
    bytes[..HEADER_BYTES].copy_from_slice(&h.encode());
    bytes.truncate(start);
    std::fs::write(&path, &bytes).unwrap();
    assert!(
        stele::log::dict::Dict::new(bytes[HEADER_BYTES..start].to_vec()).is_err(),
        "zstd loads the dictionary"
    );

    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    let log = open_small(dir.path(), &clock);
    let mut gen = EventGen::new(411);
    let batch = events(&mut gen, 10, 450);
    let first = log.append(&batch, &Provenance::cli()).unwrap().first_seq;
    drop(log);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as usize,
        start + stele::log::format::FOOTER_BYTES,
        "records were appended to the segment whose dictionary did not load"
    );
    let log = open_small(dir.path(), &clock);
    let got: Vec<Event> = log
        .range(first.., Direction::Forward)
        .map(|e| e.unwrap().event)
        .collect();
    assert_eq!(got, batch);
}

/// The second dictionary, trained from the whole sample bytes, ends the
/// segment compressed with the quick first one: a fresh log's segments are
/// uncompressed, then compressed with the first, then with the second, and
/// every event reads back.
#[test]
fn the_second_dictionary_ends_the_segment_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    let log = open_sampling(dir.path(), &clock);
    // Two events a batch: few samples pile up while the first trains.
    let mut feed = Feeder::new(409, 2, 1);
    feed.until_dictionaries(&log, 2);
    feed.put_in_use(&log, dir.path());
    drop(log);
    let Feeder { all, dicts, .. } = feed;
    assert!(
        dicts[1].len() > dicts[0].len(),
        "the second dictionary ({} bytes) is trained from more samples than the first ({})",
        dicts[1].len(),
        dicts[0].len()
    );
    let files = segments(dir.path());
    // Each dictionary as its length and CRC-32.
    let id = |d: &[u8]| (d.len(), crc32fast::hash(d));
    let held: Vec<Option<(usize, u32)>> = files
        .iter()
        .map(|f| dictionary_of(f).as_deref().map(id))
        .collect();
    assert_eq!(
        held,
        vec![None, Some(id(&dicts[0])), Some(id(&dicts[1]))],
        "segments {files:?}"
    );
    read_back(dir.path(), &all);
}

/// A log restarted before its first dictionary counts what it stored
/// uncompressed as samples: a daemon restarted more often than it takes in
/// the first dictionary's share of `dict_sample_bytes` (a quarter) still gets
/// a dictionary.
#[test]
fn a_restart_before_the_first_dictionary_keeps_what_was_sampled() {
    const SAMPLE_BYTES: usize = 128 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    let open = || {
        Log::open(
            dir.path(),
            LogConfig {
                dict_sample_bytes: SAMPLE_BYTES,
                ..LogConfig::default()
            },
            clock.clone(),
        )
        .unwrap()
    };
    let mut gen = EventGen::new(408);
    // Two runs of ≈ 2/3 of the first dictionary's sample bytes each: neither
    // alone trains one.
    for run in 0..2 {
        let log = open();
        for _ in 0..5 {
            log.append(&events(&mut gen, 10, 450), &Provenance::cli())
                .unwrap();
        }
        if run == 0 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            assert!(log.dictionary().is_none(), "trained from too few samples");
            continue;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while log.dictionary().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "no dictionary from the samples of both runs"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
