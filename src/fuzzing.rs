//! The properties the fuzz targets check, one function per target.
//!
//! Each function takes arbitrary bytes and panics when a property is broken.
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` are one-line wrappers
//! around them (nightly, open-ended), and `tests/fuzz_corpus.rs` replays
//! every committed corpus file through them on the stable toolchain, so CI
//! checks each corpus (and each regression input) without fuzzing.
//!
//! | target           | what it drives                                        |
//! |------------------|-------------------------------------------------------|
//! | `record_decoder` | one frame (record or footer) and the segment header   |
//! | `segment_scan`   | the recovery scanner over a whole segment file        |
//! | `verify`         | `stele verify` over mutations of valid segment files  |
//! | `event_json`     | event validation and its two encodings                |
//! | `ndjson_split`   | the ingest body splitter (JSON, NDJSON; both readings) |
//! | `query_params`   | the query-string parser of the listing routes         |
//! | `text_query`     | the full-text query parser, run against an index      |
//! | `cursor`         | the cursor decoder (and its authentication)           |

use crate::event::{
    decode_stored, encode_event, encode_provenance, encode_stored_prefix, parse_event, Provenance,
    StoredEvent,
};
use crate::index::text::{TextError, TextIndex};
use crate::log::format::{chain_hash, decode_frame, encode_record, Frame, Header, HEADER_BYTES};
use crate::log::segment::{scan, Depth};
use crate::query::{CursorCodec, Query, QueryError, LIMIT_MAX, QUERY_TEXT_BYTES_MAX};
use crate::query::{Filter, Order};
use std::path::Path;
use std::sync::OnceLock;

/// A property over arbitrary bytes; panics when it is broken.
pub type Property = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: [(&str, Property); 8] = [
    ("record_decoder", record_decoder),
    ("segment_scan", segment_scan),
    ("verify", verify),
    ("event_json", event_json),
    ("ndjson_split", ndjson_split),
    ("query_params", query_params),
    ("text_query", text_query),
    ("cursor", cursor),
];

/// [`record_decoder`] for the frames of one format version.
fn frame_decoder(data: &[u8], frame_version: u16) {
    match decode_frame(data, frame_version) {
        Ok(Frame::Record {
            payload,
            chain,
            len,
        }) => {
            assert!(len <= data.len());
            // The chain hash cannot be recomputed without the previous one
            // (SHA-256), so check the frame bytes instead:
            let mut again = Vec::new();
            again.extend_from_slice(&data[0..8]);
            again.extend_from_slice(payload);
            again.extend_from_slice(chain.map_or(&[][..], |c| &c[..]));
            assert_eq!(&again[..], &data[..len]);
            // And a record encoded from this payload decodes to it, with a
            // chain hash where the frame had one (index 0 is a chain mark,
            // index 1 is not).
            let index = if chain.is_some() { 0 } else { 1 };
            let prev = chain.copied().unwrap_or_default();
            let mut fresh = Vec::new();
            encode_record(&mut fresh, frame_version, index, &prev, &[payload]);
            match decode_frame(&fresh, frame_version) {
                Ok(Frame::Record {
                    payload: p,
                    chain: c,
                    ..
                }) => assert_eq!((p, c.is_some()), (payload, chain.is_some())),
                other => panic!("fresh record did not decode: {other:?}"),
            }
            for version in crate::log::format::FORMAT_VERSION_OLDEST_SUPPORTED
                ..=crate::log::format::FORMAT_VERSION
            {
                let _ = decode_stored(payload, version);
            }
        }
        Ok(Frame::Footer(f)) => assert_eq!(&f.encode()[..], &data[..80]),
        Err(_) => {}
    }
}

/// The record frame decoder over arbitrary bytes: never panics, and whatever
/// decodes re-encodes to exactly the bytes it came from.
pub fn record_decoder(data: &[u8]) {
    // Version 5's frames (every record stores its chain hash) and this
    // build's (the chain marks and each write's last record do).
    for frame_version in [5, crate::log::format::FORMAT_VERSION] {
        frame_decoder(data, frame_version);
    }
    if let Ok(h) = Header::decode(data) {
        assert_eq!(&h.encode()[..], &data[..HEADER_BYTES]);
    }
}

/// The recovery scanner over a whole arbitrary segment file: never panics,
/// and what it reports is self-consistent.
pub fn segment_scan(data: &[u8]) {
    let Ok(header) = Header::decode(data) else {
        return;
    };
    for depth in [Depth::Frames, Depth::Full] {
        let s = scan(data, &header, depth, 1 << 20);
        assert!(s.records_end as usize <= data.len());
        assert!(s.records_end as usize >= HEADER_BYTES);
        assert_eq!(s.sparse.len() as u64, s.count.div_ceil(32));
        if let Some(p) = &s.problem {
            assert_eq!(p.offset, s.records_end);
            assert_eq!(p.seq, header.first_seq + s.count);
        } else if s.footer.is_none() {
            // A clean end, possibly followed by zero padding.
            assert_eq!((s.records_end + s.padding) as usize, data.len());
            assert!(data[s.records_end as usize..].iter().all(|&b| b == 0));
        }
    }
}

/// Valid segment files (from `tests/data/v1`, `tests/data/v6` and
/// `tests/data/v7z`, committed format samples): a sealed one and the active
/// (unsealed) one of each, with their file names; v7z's are compressed with
/// their dictionary (format 7's relative prefixes).
const VALID_SEGMENTS: [(&str, &[u8]); 6] = [
    (
        "2026-11-21.1.seg",
        include_bytes!("../tests/data/v1/segments/2026-11-21.1.seg"),
    ),
    (
        "2026-11-23.1.seg",
        include_bytes!("../tests/data/v1/segments/2026-11-23.1.seg"),
    ),
    (
        "2026-11-21.1.seg",
        include_bytes!("../tests/data/v6/segments/2026-11-21.1.seg"),
    ),
    (
        "2026-11-23.1.seg",
        include_bytes!("../tests/data/v6/segments/2026-11-23.1.seg"),
    ),
    (
        "2026-11-23.1.seg",
        include_bytes!("../tests/data/v7z/segments/2026-11-23.1.seg"),
    ),
    (
        "2026-11-24.0.seg",
        include_bytes!("../tests/data/v7z/segments/2026-11-24.0.seg"),
    ),
];

/// `stele verify` over files that differ from a valid one: the input's
/// first byte `b` picks a valid segment (`b % 6`, in [`VALID_SEGMENTS`]'s
/// order) and an edit (`b / 6 % 6`: none, overwrite, insert, remove,
/// truncate, or replace the whole file with the rest of the input), the rest
/// is the edit's operands (the corpus's `seed-EDIT-N-…` files name theirs). Verify never panics; for the unedited file it
/// reports intact; and whenever it reports an edited file intact, every
/// event up to the file's last stored chain hash is the original's, byte for
/// byte (same header, same chain hash after as many events; from format 6 the
/// records after a file's last stored hash are covered by their CRCs alone),
/// and a sealed verdict means the file is the original. That is tamper evidence for one file on its own: what a
/// lone file cannot show (that events after the ones it holds were cut off)
/// is shown by the next segment's header and by the digests.
pub fn verify(data: &[u8]) {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let (name, valid) = VALID_SEGMENTS[usize::from(op) % VALID_SEGMENTS.len()];
    let at = |b: &[u8]| -> usize {
        let raw = b
            .iter()
            .take(2)
            .fold(0usize, |a, &x| (a << 8) | usize::from(x));
        raw % (valid.len() + 1)
    };
    let mut file = valid.to_vec();
    match (usize::from(op) / VALID_SEGMENTS.len()) % 6 {
        0 => {}
        1 => {
            // Overwrite bytes from an offset.
            let from = at(rest);
            let patch = rest.get(2..).unwrap_or(&[]);
            let end = (from + patch.len()).min(file.len());
            file[from..end].copy_from_slice(&patch[..end - from]);
        }
        2 => {
            let from = at(rest);
            let patch = rest.get(2..).unwrap_or(&[]);
            file.splice(from..from, patch.iter().copied());
        }
        3 => {
            let from = at(rest);
            let n = usize::from(rest.get(2).copied().unwrap_or(1)).max(1);
            file.drain(from..(from + n).min(file.len()));
        }
        4 => file.truncate(at(rest)),
        _ => file = rest.to_vec(),
    }
    let path = Path::new(name);
    let mut report = crate::verify::Report::default();
    let end = crate::verify::verify_segment_bytes(path, &file, true, &mut report);
    if file == valid {
        assert!(report.intact(), "a valid segment is not intact: {report:?}");
        return;
    }
    if !report.intact() {
        return;
    }
    let original = Header::decode(valid).expect("the sample's header is valid");
    let header = Header::decode(&file).expect("an intact file has a valid header");
    assert_eq!(header, original, "verify accepted an altered header");
    let summary = report
        .segments
        .last()
        .expect("an intact file is summarized");
    let chain = original_chain(valid);
    // What a lone unsealed file proves is its chain up to its last stored
    // hash (from format 6 not every record stores one): the events up to it
    // must be the original's; after it they are covered by their CRCs alone.
    let vouched = chain_of(&file, summary.count);
    let pinned = last_stored_hash(&file, summary.count);
    assert_eq!(
        chain.get(pinned),
        Some(&vouched[pinned]),
        "verify accepted altered events (up to record {pinned} of {})",
        summary.count
    );
    let last = vouched[summary.count as usize];
    assert_eq!(
        summary.last_hash,
        crate::log::format::hash_hex(&last),
        "verify's summary is not the file's chain"
    );
    assert_eq!(
        end,
        Some((header.first_seq + summary.count, last)),
        "verify's end of chain disagrees with its summary"
    );
    assert!(
        !summary.sealed,
        "verify accepted an altered file as sealed: {report:?}"
    );
}

/// The number of a file's first `count` records up to and including the
/// last one that stores its chain hash.
fn last_stored_hash(file: &[u8], count: u64) -> usize {
    let header = Header::decode(file).expect("an intact file has a valid header");
    let mut off = header.records_start();
    let mut pinned = 0;
    for i in 0..count as usize {
        let Ok(Frame::Record { chain, len, .. }) = decode_frame(&file[off..], header.version)
        else {
            break;
        };
        if chain.is_some() {
            pinned = i + 1;
        }
        off += len;
    }
    pinned
}

/// The chain hash after 0, 1, 2... of the first `count` records of a file
/// verify called intact (all of them decode).
fn chain_of(file: &[u8], count: u64) -> Vec<[u8; 32]> {
    let chain = chain_walk(file, Some(count));
    assert_eq!(
        chain.len() as u64,
        count + 1,
        "an intact file's records decode"
    );
    chain
}

/// The chain hash after 0, 1, 2... events of a valid segment.
fn original_chain(valid: &[u8]) -> Vec<[u8; 32]> {
    chain_walk(valid, None)
}

/// The chain hash after 0, 1, 2... of a file's records while they decode, at
/// most `limit` of them.
fn chain_walk(file: &[u8], limit: Option<u64>) -> Vec<[u8; 32]> {
    let header = Header::decode(file).expect("a valid header");
    let dict = crate::log::dict::of_segment(&header, file).expect("a valid dictionary");
    let mut scratch = Vec::new();
    let mut out = vec![header.prev_hash];
    let mut off = header.records_start();
    while limit.is_none_or(|n| (out.len() as u64) <= n) {
        let Ok(Frame::Record { payload, len, .. }) = decode_frame(&file[off..], header.version)
        else {
            break;
        };
        let payload = crate::log::dict::payload(dict.as_ref(), &header, payload, &mut scratch)
            .expect("the payloads decompress");
        out.push(chain_hash(out.last().expect("the header's"), &[payload]));
        off += len;
    }
    out
}

/// Event JSON parsing and validation over arbitrary bytes: never panics; an accepted
/// event's JSON view validates again to the same event, and its on-disk
/// encoding decodes to it.
pub fn event_json(data: &[u8]) {
    // The strict parser ingest uses (a repeated key is refused).
    let Ok(value) = crate::event::parse_json(data) else {
        return;
    };
    let Ok(ev) = parse_event(&value, || "fuzz-id".to_string()) else {
        return;
    };
    // The JSON view (what queries answer) is a valid event, and the same one.
    let view = serde_json::to_value(&ev).expect("an event serializes");
    let again = parse_event(&view, || unreachable!("the view carries the id"))
        .unwrap_or_else(|e| panic!("the JSON view of an accepted event is invalid: {e:?}\n{view}"));
    assert_eq!(again, ev, "the JSON view does not round-trip");
    // The stored encoding round-trips.
    let mut bytes = Vec::new();
    encode_stored_prefix(7, 1_700_000_000_000_000, &mut bytes);
    encode_event(&ev, &mut bytes);
    let by = Provenance::key("fuzz-key", std::net::Ipv6Addr::LOCALHOST.into());
    encode_provenance(&by, &mut bytes);
    let stored = decode_stored(&bytes, crate::log::format::FORMAT_VERSION)
        .expect("an encoded event decodes");
    assert_eq!(
        stored,
        StoredEvent {
            seq: 7,
            received_at: 1_700_000_000_000_000,
            event: ev,
            provenance: Some(by),
        }
    );
}

/// Whether a JSON error is one of the strict parser's key rules (a repeated key, the
/// reserved key).
fn key_rule(detail: &str) -> bool {
    detail.contains(" JSON: duplicate key ") || detail.contains(" is reserved ")
}

/// The ingest body splitter: never panics, in either mode. NDJSON gives one
/// value per non-blank line and reports a 1-based line and column within
/// the body; whatever splits as JSON splits the same as NDJSON once each
/// value is written on its own line; reading each object straight into
/// its fields (`Events::Fields`, no field map) agrees with reading whole values
/// (`Events::Values`): the same error, or events that validate the same (but a
/// repeated or reserved key inside a value the event is refused for anyway, which
/// the first reading walks without keeping: there the event must be refused); and
/// a limit on the events built changes nothing but how many are kept.
pub fn ndjson_split(data: &[u8]) {
    use crate::server::{split_body, Events};
    let all = usize::MAX;
    let lines = data.split(|&b| b == b'\n').count();
    for ndjson in [true, false] {
        let fields = split_body(
            data,
            ndjson,
            Events::Fields(crate::event::FieldMap::none()),
            all,
        );
        let values = split_body(data, ndjson, Events::Values, all);
        match (fields, values) {
            (Ok(fields), Ok(values)) => {
                assert_eq!(fields.count, values.count);
                assert_eq!(fields.events.len(), fields.count);
                assert_eq!(values.events.len(), values.count);
                for max in [0, 1, 2] {
                    let capped = split_body(
                        data,
                        ndjson,
                        Events::Fields(crate::event::FieldMap::none()),
                        max,
                    )
                    .expect("a body that splits whole splits with a limit");
                    assert_eq!(capped.count, fields.count);
                    let kept = capped.events.len();
                    assert!(kept == max.min(fields.count) || (!ndjson && fields.count == 1));
                }
                for (f, v) in fields.events.into_iter().zip(values.events) {
                    assert_eq!(f.has_id(), v.has_id());
                    assert_eq!(f.validate(|| "new".into()), v.validate(|| "new".into()));
                }
            }
            (Err(f), Err(v)) if f == v => {}
            (f, Err(v)) if key_rule(&v.detail) => {
                // Read as fields, the batch splits further (or whole): some event
                // of it is refused, or the text fails later on.
                if let Ok(fields) = f {
                    assert!(
                        fields
                            .events
                            .into_iter()
                            .any(|e| e.validate(|| "new".into()).is_err()),
                        "{v:?} but every event validates"
                    );
                }
            }
            (f, v) => panic!(
                "the two readings disagree: {:?} and {:?}",
                f.map(|b| b.count),
                v.map(|b| b.count)
            ),
        }
    }
    match split_body(data, true, Events::Values, all) {
        Ok(values) => {
            let non_blank = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count();
            assert_eq!(values.count, non_blank);
        }
        Err(e) => {
            assert!((1..=lines).contains(&e.line), "{e:?} in {lines} lines");
            assert!(e.column >= 1);
        }
    }
    let as_values = |events: Vec<crate::event::PostedEvent>| -> Vec<serde_json::Value> {
        events
            .into_iter()
            .map(|mut e| e.value_mut().expect("read as values").take())
            .collect()
    };
    if let Ok(batch) = split_body(data, false, Events::Values, all) {
        let values = as_values(batch.events);
        let mut ndjson = Vec::new();
        for v in &values {
            serde_json::to_writer(&mut ndjson, v).expect("a value serializes");
            ndjson.push(b'\n');
        }
        let again =
            split_body(&ndjson, true, Events::Values, all).expect("re-serialized values split");
        assert_eq!(as_values(again.events), values);
    }
}

/// Query-parameter parsing over arbitrary query strings: never panics, and
/// an accepted query is internally consistent (limit in range, since before
/// until, severity not below min_severity) and parsed deterministically.
pub fn query_params(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pairs: Vec<(String, String)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let Ok(q) = Query::parse(&pairs, 1_800_000_000_000_000) else {
        return;
    };
    assert!((1..=LIMIT_MAX).contains(&q.limit));
    if let (Some(s), Some(u)) = (q.filter.since, q.filter.until) {
        assert!(s < u);
    }
    if let (Some(s), Some(m)) = (q.filter.severity, q.filter.min_severity) {
        assert!(s >= m);
    }
    assert_eq!(Query::parse(&pairs, 1_800_000_000_000_000).ok(), Some(q));
}

/// A small full-text index (64 generated events) shared by the calls of
/// [`text_query`] in one process.
fn text_index() -> &'static (TextIndex, Vec<u64>) {
    static INDEX: OnceLock<(TextIndex, Vec<u64>)> = OnceLock::new();
    INDEX.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("stele-fuzz-text-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let index = TextIndex::open(&dir).expect("a fresh text index opens");
        let mut writer = index.writer().expect("a text index writer");
        let mut gen = crate::testkit::EventGen::new(7);
        for seq in 1..=64 {
            let ev = StoredEvent {
                seq,
                received_at: 1_700_000_000_000_000 + seq as i64,
                event: gen.next_event(),
                provenance: Some(Provenance::cli()),
            };
            writer.add(&ev).expect("an event is indexed");
        }
        writer.commit(64).expect("the index commits");
        drop(writer);
        let all = index.all_seqs().expect("the index lists its seqs");
        // The reader maps the committed files and never reloads (only a commit
        // does), so their names can go: a static is never dropped, and every
        // process that replays the corpus left a directory behind.
        let _ = std::fs::remove_dir_all(&dir);
        (index, all)
    })
}

/// The full-text query parser (what `q` of `/v1/search` holds), run against
/// a small index: never panics; a query is either refused as a bad query
/// (never another error) or answers a subset of the indexed events, the
/// same way twice.
pub fn text_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > QUERY_TEXT_BYTES_MAX {
        return;
    }
    let (index, all) = text_index();
    let filter = Filter {
        text: Some(text.to_string()),
        ..Filter::default()
    };
    match index.search(&filter, Order::Desc, LIMIT_MAX, None) {
        Ok(seqs) => {
            assert!(seqs.iter().all(|s| all.contains(s)), "{seqs:?}");
            assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
            let again = index.search(&filter, Order::Desc, LIMIT_MAX, None);
            assert_eq!(again.ok(), Some(seqs));
        }
        Err(TextError::BadQuery(_)) => {}
        Err(e) => panic!("query {text:?} failed with {e}"),
    }
}

/// The cursor decoder over arbitrary strings: never panics; only a cursor
/// the codec made decodes (to the seq it was made for, for the query it was
/// made for, with its time), so any other string (an altered cursor, one of another query
/// or key) is refused. The input is a fingerprint, a seq and the string.
pub fn cursor(data: &[u8]) {
    let codec = CursorCodec::new([7u8; 32]);
    let fp: [u8; 8] = match data.get(..8) {
        Some(b) => b.try_into().expect("8 bytes"),
        None => return,
    };
    let seq = data
        .get(8..16)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
    // The time is derived from the seq (any i64 is a valid time).
    let at = crate::query::Position {
        seq,
        time: (seq as i64).rotate_left(17),
    };
    let made = codec.encode(fp, at);
    assert_eq!(codec.decode(&made, fp).ok(), Some(at));
    let Ok(text) = std::str::from_utf8(data.get(16..).unwrap_or(&[])) else {
        return;
    };
    match codec.decode(text, fp) {
        // Base64 without padding has one spelling per byte string, and the
        // MAC covers every byte: the only string that decodes is the one
        // the codec made.
        Ok(got) => assert_eq!(text, codec.encode(fp, got), "a foreign cursor decoded"),
        Err(QueryError::BadCursor(_)) => {}
        Err(e) => panic!("cursor {text:?} failed with {e}"),
    }
    // One character changed anywhere is refused.
    if let Some(&b) = data.get(16) {
        let mut altered = made.clone().into_bytes();
        let i = usize::from(b) % altered.len();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let c = alphabet[usize::from(data.get(17).copied().unwrap_or(0)) % alphabet.len()];
        if altered[i] != c {
            altered[i] = c;
            let altered = String::from_utf8(altered).expect("ASCII");
            assert!(codec.decode(&altered, fp).is_err(), "{altered} decoded");
        }
    }
    let mut fp2 = fp;
    fp2[0] ^= 1;
    assert!(
        codec.decode(&made, fp2).is_err(),
        "another query's cursor decoded"
    );
    let other = CursorCodec::new([8u8; 32]);
    assert!(
        other.decode(&made, fp).is_err(),
        "another key's cursor decoded"
    );
}
