//! Segments whose records are stored compressed with their dictionary
//! (format version 4 on): they read back, verify, recover from a torn tail, and
//! every byte of them — the dictionary, the compressed records — is covered
//! by a CRC and by the chain; `dictionaries`: when dictionaries come and what
//! they end.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stele::clock::ManualClock;
use stele::event::{Event, Provenance};
use stele::log::dict::Frames;
use stele::log::format::{decode_frame, Frame, Header, HEADER_BYTES};
use stele::log::{Direction, Log, LogConfig};
use stele::testkit::EventGen;

mod dictionaries;

const SEGMENT_BYTES: u64 = 256 * 1024;

fn open_small(dir: &Path, clock: &Arc<ManualClock>) -> Log {
    Log::open(
        dir,
        LogConfig {
            segment_bytes_max: SEGMENT_BYTES,
            dict_sample_bytes: 32 * 1024,
            ..LogConfig::default()
        },
        clock.clone(),
    )
    .expect("open log")
}

/// Appends batches of generated events to a log, keeping everything it
/// appended and each dictionary the log has had, in order.
struct Feeder {
    gen: EventGen,
    /// Events a batch.
    batch: usize,
    /// Between batches: samples are dropped while the trainer is busy.
    pause: std::time::Duration,
    all: Vec<Event>,
    dicts: Vec<Vec<u8>>,
}

impl Feeder {
    fn new(seed: u64, batch: usize, pause_ms: u64) -> Feeder {
        Feeder {
            gen: EventGen::new(seed),
            batch,
            pause: std::time::Duration::from_millis(pause_ms),
            all: Vec::new(),
            dicts: Vec::new(),
        }
    }

    /// Appends batches until `log` has had `n` dictionaries since `dicts`
    /// was last emptied, each noted when `log` first has it.
    fn until_dictionaries(&mut self, log: &Log, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.dicts.len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} dictionaries trained, not {n}",
                self.dicts.len()
            );
            let batch = events(&mut self.gen, self.batch, 450);
            log.append(&batch, &Provenance::cli()).unwrap();
            self.all.extend(batch);
            if let Some(d) = log.dictionary() {
                if self.dicts.last().map(Vec::as_slice) != Some(d.bytes()) {
                    self.dicts.push(d.bytes().to_vec());
                }
            }
            std::thread::sleep(self.pause);
        }
    }

    /// Appends one more batch and checks that the newest segment of the log
    /// in `dir` now holds the last dictionary: a dictionary is on disk only
    /// once a segment begins with it, so a log stopped before that opens
    /// again with the one before.
    fn put_in_use(&mut self, log: &Log, dir: &Path) {
        let batch = events(&mut self.gen, self.batch, 450);
        log.append(&batch, &Provenance::cli()).unwrap();
        self.all.extend(batch);
        let newest = segments(dir).pop().unwrap();
        assert_eq!(
            dictionary_of(&newest).map(|d| crc32fast::hash(&d)),
            self.dicts.last().map(|d| crc32fast::hash(d)),
            "the newest segment begins with the newest dictionary"
        );
    }
}

/// Appends until the first dictionary is trained, then `more` events; returns
/// everything appended, in order.
fn fill(dir: &Path, more: usize) -> Vec<Event> {
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    let log = open_small(dir, &clock);
    let mut feed = Feeder::new(404, 40, 2);
    feed.until_dictionaries(&log, 1);
    for _ in 0..more / 50 {
        let batch = events(&mut feed.gen, 50, 450);
        log.append(&batch, &Provenance::cli()).unwrap();
        feed.all.extend(batch);
        clock.advance(1_000);
    }
    drop(log);
    feed.all
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // Log order: by day, then by part.
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let mut parts = name.split('.');
        let day = parts.next().unwrap().to_owned();
        let part: u32 = parts.next().unwrap().parse().unwrap();
        (day, part)
    });
    files
}

fn header(path: &Path) -> Header {
    Header::decode(&std::fs::read(path).unwrap()).unwrap()
}

/// The dictionary a segment's header holds, if it is compressed.
fn dictionary_of(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let h = Header::decode(&bytes).unwrap();
    h.dictionary(&bytes).unwrap().map(|d| d.to_vec())
}

/// Bytes per record of a segment's frames.
fn bytes_per_record(path: &Path) -> f64 {
    let bytes = std::fs::read(path).unwrap();
    let h = Header::decode(&bytes).unwrap();
    let (mut off, mut n) = (h.records_start(), 0);
    while let Ok(Frame::Record { len, .. }) = decode_frame(&bytes[off..], h.version) {
        off += len;
        n += 1;
    }
    (off - h.records_start()) as f64 / n as f64
}

fn read_back(dir: &Path, want: &[Event]) {
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT));
    let log = open_small(dir, &clock);
    let got: Vec<_> = log.iter().map(|e| e.unwrap()).collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.seq, i as u64 + 1);
        assert_eq!(&g.event, w, "seq {}", g.seq);
    }
    let back: Vec<u64> = log
        .range(.., Direction::Backward)
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(back.len(), want.len());
    assert!(back.windows(2).all(|w| w[0] == w[1] + 1));
    // Point reads land in the middle of compressed segments.
    for seq in [
        1,
        want.len() as u64 / 2,
        want.len() as u64 - 7,
        want.len() as u64,
    ] {
        assert_eq!(
            &log.get(seq).unwrap().unwrap().event,
            &want[seq as usize - 1]
        );
    }
}

fn writable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn copy_of(dir: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("segments")).unwrap();
    for f in segments(dir) {
        let to = tmp.path().join("segments").join(f.file_name().unwrap());
        std::fs::copy(&f, &to).unwrap();
        writable(&to);
    }
    tmp
}

/// The first sealed segment with a dictionary.
fn compressed_sealed(dir: &Path) -> PathBuf {
    let files = segments(dir);
    files[..files.len() - 1]
        .iter()
        .find(|f| header(f).dict_len > 0)
        .expect("a sealed compressed segment")
        .clone()
}

#[test]
fn compressed_segments_read_back_verify_and_are_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let all = fill(dir.path(), 3_000);
    let files = segments(dir.path());
    let plain: Vec<_> = files.iter().filter(|f| header(f).dict_len == 0).collect();
    let packed: Vec<_> = files.iter().filter(|f| header(f).dict_len > 0).collect();
    assert!(!plain.is_empty() && packed.len() >= 2, "{files:?}");
    // The first segment ends early, as soon as the dictionary exists.
    assert!(std::fs::metadata(plain[0]).unwrap().len() < SEGMENT_BYTES);
    let (p, z) = (bytes_per_record(plain[0]), bytes_per_record(packed[0]));
    eprintln!("bytes per record: uncompressed {p:.0}, compressed {z:.0}");
    // The generator's fields are random strings: real events compress far better
    // (README "Performance"); here it is enough that the records shrank.
    assert!(z < 0.8 * p, "uncompressed {p:.0}, compressed {z:.0}");
    read_back(dir.path(), &all);
    let (code, out) = verify(&[dir.path()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn every_byte_of_a_compressed_segment_is_covered() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1_500);

    // A damaged dictionary: its CRC.
    let tmp = copy_of(dir.path());
    let victim = compressed_sealed(tmp.path());
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[HEADER_BYTES + 100] ^= 0x20;
    std::fs::write(&victim, &bytes).unwrap();
    let (code, out) = verify(&[tmp.path()]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("dictionary"), "{out}");

    // Another dictionary with a matching CRC (a forger's): the records
    // decompress to other payloads, or not at all, and the chain breaks.
    let tmp = copy_of(dir.path());
    let victim = compressed_sealed(tmp.path());
    let mut bytes = std::fs::read(&victim).unwrap();
    let mut h = Header::decode(&bytes).unwrap();
    let start = h.records_start();
    for b in &mut bytes[HEADER_BYTES + 8..start] {
        *b = b.wrapping_add(1);
    }
    h.dict_crc = crc32fast::hash(&bytes[HEADER_BYTES..start]);
    bytes[..HEADER_BYTES].copy_from_slice(&h.encode());
    std::fs::write(&victim, &bytes).unwrap();
    let (code, out) = verify(&[tmp.path()]);
    assert_ne!(code, 0, "{out}");

    // A compressed record changed and its CRC made right again (the
    // segment's first record, a chain mark: bit 31 of its length field says
    // its chain hash follows).
    let tmp = copy_of(dir.path());
    let victim = compressed_sealed(tmp.path());
    let mut bytes = std::fs::read(&victim).unwrap();
    let start = Header::decode(&bytes).unwrap().records_start();
    let field = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap());
    assert_ne!(field & stele::log::format::CHAIN_MARK_BIT, 0);
    let len = (field & !stele::log::format::CHAIN_MARK_BIT) as usize;
    bytes[start + 8 + len - 3] ^= 0x01;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[start..start + 4]);
    crc.update(&bytes[start + 8..start + 8 + len + 32]);
    let crc = crc.finalize().to_le_bytes();
    bytes[start + 4..start + 8].copy_from_slice(&crc);
    std::fs::write(&victim, &bytes).unwrap();
    let (code, out) = verify(&[tmp.path()]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&*victim.file_name().unwrap().to_string_lossy()),
        "{out}"
    );
}

#[test]
fn a_torn_tail_of_a_compressed_active_segment_is_cut_at_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let all = fill(dir.path(), 500);
    let active = segments(dir.path()).pop().unwrap();
    assert!(header(&active).dict_len > 0);
    let len = std::fs::metadata(&active).unwrap().len();
    // Cut the last record in two.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap();
    f.set_len(len - 20).unwrap();
    drop(f);
    let mut all = all;
    all.pop();
    read_back(dir.path(), &all);

    // The writer continues the inherited segment compressed, with its dictionary.
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT));
    let log = open_small(dir.path(), &clock);
    let more = events(&mut EventGen::new(405), 30, 450);
    let ack = log.append(&more, &Provenance::cli()).unwrap();
    assert_eq!(ack.first_seq, all.len() as u64 + 1);
    assert_eq!(
        ack.segment.file_name(),
        active.file_name().unwrap().to_string_lossy()
    );
    drop(log);
    all.extend(more);
    read_back(dir.path(), &all);
    assert!(bytes_per_record(&active) < 400.0);
    let (code, out) = verify(&[dir.path()]);
    assert_eq!(code, 0, "{out}");
}

/// The log's compression counters (`/metrics`: `stele_log_payload_bytes`,
/// `stele_log_stored_payload_bytes`) say what is on disk: before the first
/// dictionary the stored payloads are the encoded ones; after it they are
/// smaller; and the stored total is exactly the sum of the payloads of the
/// records in the segment files.
#[test]
fn the_compression_counters_match_the_records_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    let log = open_small(dir.path(), &clock);
    let m = log.metrics();
    let counts = || {
        (
            m.payload_bytes.load(std::sync::atomic::Ordering::Relaxed),
            m.stored_payload_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    assert_eq!(counts(), (0, 0));
    let mut feed = Feeder::new(405, 40, 2);
    log.append(&events(&mut feed.gen, 40, 450), &Provenance::cli())
        .unwrap();
    let (plain, stored) = counts();
    assert!(plain > 40 * 400, "{plain}");
    assert_eq!(plain, stored, "no dictionary yet: stored as encoded");
    feed.until_dictionaries(&log, 1);
    let before = counts();
    for _ in 0..20 {
        log.append(&events(&mut feed.gen, 50, 450), &Provenance::cli())
            .unwrap();
    }
    let after = counts();
    let (plain, stored) = (after.0 - before.0, after.1 - before.1);
    assert!(
        stored * 3 < plain * 2,
        "compressed: {stored} stored bytes for {plain} encoded"
    );
    let mut on_disk = 0u64;
    for path in segments(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        let h = Header::decode(&bytes).unwrap();
        let mut off = h.records_start();
        while let Ok(Frame::Record { payload, len, .. }) = decode_frame(&bytes[off..], h.version) {
            on_disk += payload.len() as u64;
            off += len;
        }
    }
    assert_eq!(after.1, on_disk);
}

/// A data directory of format version 4 with compressed records (the
/// committed `tests/data/v4` sample has too few events for a dictionary),
/// written by the last version 4 build (commit `106eb35`, its test
/// `write_the_v4_compressed_sample`): the first segment uncompressed, ended
/// when the dictionary came; the rest of that day in a sealed segment
/// compressed with it; the next day's active segment compressed with the same
/// dictionary. Its events are `EventGen::new(404)`'s first, 450 bytes each.
const SAMPLE_V4_COMPRESSED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v4z");

/// The same for format version 6 (compact frames, the bincode seq and time
/// prefix), written by the last version 6 build (commit `c1fcdf9`, as the v4
/// one was; a quick first dictionary of 1,137 bytes): 40 events uncompressed,
/// 100 compressed that day, 60 the next.
const SAMPLE_V6_COMPRESSED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v6z");

/// The same for format version 7 (the seq and time relative to the header),
/// written by this build's test `write_the_v7_compressed_sample`
/// (`STELE_WRITE_SAMPLE_V7Z=1`); a later format keeps reading it.
const SAMPLE_V7_COMPRESSED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v7z");

/// Writes the v7 compressed sample (when `STELE_WRITE_SAMPLE_V7Z` is set):
/// batches of 40 until the first dictionary, 60 more events that day and 60
/// the next.
#[test]
fn write_the_v7_compressed_sample() {
    if std::env::var_os("STELE_WRITE_SAMPLE_V7Z").is_none() {
        return;
    }
    let dir = Path::new(SAMPLE_V7_COMPRESSED);
    let _ = std::fs::remove_dir_all(dir);
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    let log = open_small(dir, &clock);
    let mut feed = Feeder::new(404, 40, 20);
    feed.until_dictionaries(&log, 1);
    for day in 0..2 {
        if day == 1 {
            clock.advance(2 * 3_600_000_000);
        }
        for _ in 0..3 {
            log.append(&events(&mut feed.gen, 20, 450), &Provenance::cli())
                .unwrap();
            clock.advance(1_000);
        }
    }
    drop(log);
    let _ = std::fs::remove_file(dir.join("LOCK"));
}

/// This version's compressed records, as committed: they verify and read
/// back, each record's relative prefix names its own seq.
#[test]
fn the_committed_v7_compressed_sample_reads_back() {
    let sample = Path::new(SAMPLE_V7_COMPRESSED);
    let files = segments(sample);
    let heads: Vec<Header> = files.iter().map(|f| header(f)).collect();
    assert!(heads.iter().all(|h| h.version == 7), "{heads:?}");
    assert_eq!(heads[0].dict_len, 0);
    assert!(heads[1..].iter().all(|h| h.dict_len > 0), "{heads:?}");
    let (code, out) = verify(&[sample]);
    assert_eq!(code, 0, "{out}");
    let tmp = copy_of(sample);
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT + 7_200_000_000));
    let n = open_small(tmp.path(), &clock).last_seq() as usize;
    assert!(n >= 160, "{n}");
    read_back(tmp.path(), &events(&mut EventGen::new(404), n, 450));
    for f in &files[1..] {
        assert!(first_record(f).0 <= 4);
    }
}

/// Checks that the committed compressed sample `sample` is three segments of
/// format `version` (the first uncompressed) that verify; appends 30 events to
/// a copy of it on the day of its active segment, which goes on in a new
/// segment of this build's version with the same dictionary; checks that the
/// copy reads back and verifies. Returns the copy's segment files (the new one
/// last).
fn continue_compressed_sample(sample: &str, version: u16) -> (tempfile::TempDir, Vec<PathBuf>) {
    let sample = Path::new(sample);
    let files = segments(sample);
    let heads: Vec<Header> = files.iter().map(|f| header(f)).collect();
    assert!(heads.iter().all(|h| h.version == version), "{heads:?}");
    assert_eq!(heads.len(), 3, "{files:?}");
    assert_eq!(heads[0].dict_len, 0);
    assert!(heads[1].dict_len > 0 && heads[2].dict_len > 0);
    let (code, out) = verify(&[sample]);
    assert_eq!(code, 0, "{out}");

    let tmp = copy_of(sample);
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT + 7_200_000_000));
    let log = open_small(tmp.path(), &clock);
    let n = log.last_seq() as usize;
    let mut gen = EventGen::new(404);
    let mut want = events(&mut gen, n, 450);
    let more = events(&mut gen, 30, 450);
    log.append(&more, &Provenance::cli()).unwrap();
    want.extend(more);
    drop(log);

    let files = segments(tmp.path());
    assert_eq!(files.len(), 4, "{files:?}");
    let (old, new) = (header(&files[2]), header(&files[3]));
    assert_eq!(
        (old.version, new.version),
        (version, stele::log::format::FORMAT_VERSION)
    );
    assert_eq!(new.dict_crc, old.dict_crc, "the same dictionary");
    read_back(tmp.path(), &want);
    let (code, out) = verify(&[tmp.path()]);
    assert_eq!(code, 0, "{out}");
    (tmp, files)
}

/// The first record of a compressed segment: its stored prefix's length as
/// the segment's format stores it, and the first 5 bytes of its zstd frame.
fn first_record(path: &Path) -> (usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let h = header(path);
    let Ok(Frame::Record { payload, .. }) = decode_frame(&bytes[h.records_start()..], h.version)
    else {
        panic!("no record in {}", path.display());
    };
    let (seq, _, at) = Frames::of(&h).read_prefix(payload).unwrap();
    assert_eq!(seq, h.first_seq);
    (at, payload[at..at + 5].to_vec())
}

/// Version 4's compressed records (zstd's frames whole) read back and verify;
/// appending continues in a segment of this build's version (compact frames
/// since version 5) made with the same dictionary, and the mixed directory
/// reads back and verifies.
#[test]
fn the_committed_v4_compressed_sample_reads_back_and_continues_in_compact_frames() {
    let (_tmp, files) = continue_compressed_sample(SAMPLE_V4_COMPRESSED, 4);
    // A compact frame (version 5 on) starts with its descriptor, not zstd's magic.
    assert_eq!(first_record(&files[2]).1[..4], [0x28, 0xB5, 0x2F, 0xFD]);
    let compact = first_record(&files[3]).1;
    assert_ne!(compact[..4], [0x28, 0xB5, 0x2F, 0xFD]);
    assert_eq!(compact[0] & 3, 0, "no dictionary ID");
}

/// Version 6's compressed records (the payload's bincode seq and time in front
/// of each frame) read back and verify; appending continues in a segment of
/// version 7, whose records store them relative to the header, shorter.
#[test]
fn the_committed_v6_compressed_sample_reads_back_and_continues_with_relative_prefixes() {
    let (_tmp, files) = continue_compressed_sample(SAMPLE_V6_COMPRESSED, 6);
    let (old_prefix, old_frame) = first_record(&files[2]);
    let (new_prefix, new_frame) = first_record(&files[3]);
    // Seq 141 and a time of 2026 in µs: 1 + 9 bincode bytes; index 0 and a
    // few µs after the header's `created_at`: 1 + 1.
    assert_eq!(old_prefix, 10);
    assert!(new_prefix <= 4, "{new_prefix}");
    assert_eq!(old_frame[0] & 3, 0, "compact");
    assert_eq!(new_frame[0] & 3, 0, "compact");
}

/// Followers (the indexer, the activity feed) get from the log's tail in
/// memory exactly what decoding the segments gives (`log::tail` invariant
/// 4), for uncompressed and compressed segments alike; a follower further
/// behind than the tail reads the segments up to where the tail starts and
/// then continues from the tail without a gap or a repeat.
#[test]
fn followers_get_from_the_tail_exactly_what_the_segments_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 3_600_000_000));
    let log = Log::open(
        tmp.path(),
        LogConfig {
            segment_bytes_max: SEGMENT_BYTES,
            dict_sample_bytes: 32 * 1024,
            tail_bytes: 64 * 1024,
            ..LogConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    let mut gen = EventGen::new(77);
    let mut posted = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut n, mut compressed) = (0, 0);
    while compressed < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary trained"
        );
        // Batches of 1 to 29 events: write groups of every size.
        let batch: Vec<Event> = (0..1 + n % 29).map(|_| gen.next_event()).collect();
        posted.extend(batch.iter().cloned());
        log.append(&batch, &Provenance::cli()).unwrap();
        clock.advance(1_000);
        n += 1;
        if log.dictionary().is_some() {
            compressed += 1;
        }
    }
    let last = log.last_seq();
    assert_eq!(last, posted.len() as u64);
    use std::sync::atomic::Ordering::Relaxed;
    let segments_read = |log: &Log| log.metrics().followed_from_segments.load(Relaxed);
    let tail_read = |log: &Log| log.metrics().followed_from_tail.load(Relaxed);

    // A follower from the start: the segments, then the tail, each seq once.
    let mut followed = Vec::new();
    let mut from = 1;
    while from <= last {
        let runs = log.follow(from, 97).unwrap();
        assert!(!runs.is_empty());
        for run in &runs {
            followed.extend(run.iter().cloned());
        }
        from = followed.last().unwrap().seq + 1;
    }
    assert!(log.follow(last + 1, 10).unwrap().is_empty());
    let read: Vec<_> = log
        .range(.., Direction::Forward)
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(followed.len(), read.len());
    for (f, r) in followed.iter().zip(&read) {
        assert_eq!(f, r, "seq {}", r.seq);
    }
    for (f, p) in followed.iter().zip(&posted) {
        assert_eq!(&f.event, p);
        assert_eq!(f.provenance, Some(Provenance::cli()));
    }
    let (from_segments, from_tail) = (segments_read(&log), tail_read(&log));
    assert!(
        from_segments > 0 && from_tail > 0,
        "{from_segments} / {from_tail}"
    );
    assert_eq!(from_segments + from_tail, last);
    assert!(
        log.tail_bytes() <= 64 * 1024 + 29 * 2048,
        "bounded: {}",
        log.tail_bytes()
    );

    // Starting anywhere gives the same events as a read from there.
    for from in (1..=last).step_by(53) {
        let got: Vec<_> = log
            .follow(from, 200)
            .unwrap()
            .iter()
            .flat_map(|r| r.iter().cloned())
            .collect();
        assert_eq!(got.first().map(|e| e.seq), Some(from));
        assert_eq!(got[..], read[from as usize - 1..][..got.len()]);
    }
    // Like a range, from the first seq there is.
    assert_eq!(log.follow(0, 1).unwrap()[0][0].seq, 1);
    // A range across the seam, a run at a time.
    let (lo, hi) = (last / 3, last - 5);
    let ranged: Vec<_> = log
        .follow_range(lo, hi)
        .flat_map(|r| r.unwrap().to_vec())
        .collect();
    assert_eq!(ranged[..], read[lo as usize - 1..hi as usize]);
    assert_eq!(log.follow_range(last + 1, last + 10).count(), 0);

    // Point reads: the seqs the tail holds copied from memory, the others
    // read, in the order asked, the missing ones left out.
    let before = log.metrics().read_from_tail.load(Relaxed);
    let seqs = [last, 1, last - 1, 0, last + 1, 2, last, last / 2];
    let want: Vec<_> = seqs
        .iter()
        .filter(|&&s| (1..=last).contains(&s))
        .map(|&s| read[s as usize - 1].clone())
        .collect();
    assert_eq!(log.get_many(&seqs).unwrap(), want);
    assert_eq!(log.metrics().read_from_tail.load(Relaxed), before + 3);
    assert_eq!(log.get(last).unwrap().as_ref(), read.last());
    assert_eq!(log.get(1).unwrap().as_ref(), read.first());
    assert_eq!(log.get(last + 1).unwrap(), None);
}
