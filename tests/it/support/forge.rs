//! The attacker's toolkit: forgeries of a data directory by someone who can
//! write it but holds no signing key. Payload edits work on raw payload bytes
//! (only [`Rec::seq`] and [`bincode_string_replace`] know the payload encoding),
//! so the module keeps working when the event encoding changes. Every function
//! panics when its premise does not hold (no such record, digest, ...), and
//! keeps the file mode it found (sealed segments and digests stay 0444).
#![allow(dead_code)]

use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use stele::log::format::{
    chain_hash, decode_frame, encode_record, Footer, Frame, Hash, Header, CHAIN_MARK_BIT,
    FORMAT_VERSION_CHAIN_MARKS, HASH_BYTES, HEADER_BYTES, RECORD_OVERHEAD_BYTES,
};

/// One record frame of a segment file, as byte ranges into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// The whole frame: `len | crc | payload | chain?`.
    pub frame: Range<usize>,
    /// The payload bytes.
    pub payload: Range<usize>,
    /// The 32-byte chain hash, when the frame stores one (every record
    /// before format 6, the chain marks from it).
    pub chain: Option<Range<usize>>,
    /// The payload's leading seq varint (`None` if it does not decode).
    pub seq: Option<u64>,
}

/// A parsed segment file: header, the valid records, the footer if sealed.
#[derive(Debug, Clone)]
pub struct Seg {
    pub header: Header,
    pub records: Vec<Rec>,
    /// The footer and its offset, if the segment is sealed.
    pub footer: Option<(usize, Footer)>,
    /// Offset just past the last valid frame (anything after it is garbage/torn bytes).
    pub end: usize,
}

/// Parses a segment file's bytes (panics on a bad header); stops at the first frame that does not decode.
pub fn parse(bytes: &[u8]) -> Seg {
    let header = Header::decode(bytes).expect("segment header");
    let mut records = Vec::new();
    let mut footer = None;
    let mut off = HEADER_BYTES;
    while off < bytes.len() {
        match decode_frame(&bytes[off..], header.version) {
            Ok(Frame::Record { len, chain, .. }) => {
                let stored = if chain.is_some() { HASH_BYTES } else { 0 };
                let payload = off + 8..off + len - stored;
                records.push(Rec {
                    frame: off..off + len,
                    seq: stele::event::decode_stored_seq(&bytes[payload.clone()]).ok(),
                    chain: chain.map(|_| off + len - stored..off + len),
                    payload,
                });
                off += len;
            }
            Ok(Frame::Footer(f)) => {
                footer = Some((off, f));
                off += stele::log::format::FOOTER_BYTES;
                break;
            }
            Err(_) => break,
        }
    }
    Seg {
        header,
        records,
        footer,
        end: off,
    }
}

/// The valid records of a segment file's bytes, in order.
pub fn records(bytes: &[u8]) -> Vec<Rec> {
    parse(bytes).records
}

/// The segment files of a data directory, in log order.
pub fn segments(data_dir: &Path) -> Vec<PathBuf> {
    super::segment_files(data_dir)
}

/// Writes `bytes` to `path` although it may be read-only, then restores its mode.
pub fn write_keeping_mode(path: &Path, bytes: &[u8]) {
    let mode = std::fs::metadata(path).expect("stat").permissions().mode();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Flips bit `bit` (0..8) of the byte at `byte_offset` of a file; CRCs left alone.
pub fn flip_bit(path: &Path, byte_offset: usize, bit: u8) {
    let mut b = std::fs::read(path).unwrap();
    b[byte_offset] ^= 1 << bit;
    write_keeping_mode(path, &b);
}

/// How [`rewrite`] rebuilds the records from the edited one on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Chain {
    /// Keep every stored chain hash (only the edited record's CRC is recomputed).
    Stale,
    /// Recompute the chain from the edited record on (and the footer's final hash).
    From,
}

/// A boxed payload edit.
type Edit<'a> = Box<dyn FnOnce(&mut Vec<u8>) + 'a>;

/// Rebuilds a segment: record `edit_at`'s payload edited, `prev` (if given) as
/// the header's new `prev_hash` with every record re-chained; returns the
/// bytes and the segment's final chain hash.
fn rewrite(
    bytes: &[u8],
    prev: Option<Hash>,
    edit_at: Option<(usize, Edit<'_>)>,
    chain: Chain,
) -> (Vec<u8>, Hash) {
    let seg = parse(bytes);
    let mut header = seg.header.clone();
    let rechain_from = match (&prev, &edit_at) {
        (Some(_), _) => 0,
        (None, Some((i, _))) if chain == Chain::From => *i,
        _ => usize::MAX,
    };
    if let Some(p) = prev {
        header.prev_hash = p;
    }
    if let Some((i, _)) = &edit_at {
        assert!(
            *i < seg.records.len(),
            "record {i} of {}",
            seg.records.len()
        );
    }
    let mut edit_at = edit_at;
    let mut out = if prev.is_some() {
        header.encode().to_vec()
    } else {
        bytes[..HEADER_BYTES].to_vec()
    };
    let mut hash = header.prev_hash;
    for (i, r) in seg.records.iter().enumerate() {
        let mut payload = bytes[r.payload.clone()].to_vec();
        let edited = matches!(&edit_at, Some((at, _)) if *at == i);
        if edited {
            let (_, f) = edit_at.take().unwrap();
            f(&mut payload);
            assert!(!payload.is_empty(), "a record payload cannot be empty");
        }
        // The record's own chain hash as the file has it: stored, or (from
        // format 6, on a record that stores none) hashed from its stored bytes,
        // which are its payload: the toolkit edits uncompressed segments only
        // (`parse` starts the records right after the header).
        let original: Hash = match &r.chain {
            Some(c) => bytes[c.clone()].try_into().unwrap(),
            None => chain_hash(&hash, &[&bytes[r.payload.clone()]]),
        };
        if i >= rechain_from {
            let at = out.len();
            hash = encode_record(&mut out, header.version, i as u64, &hash, &[&payload]);
            // Where the writer stored a hash (a write's last record), so does
            // the forger: the file looks like the writer's, its size kept.
            if r.chain.is_some() {
                stele::log::format::mark_frame(&mut out, at, header.version, &hash);
            }
        } else if edited {
            let stored = r.chain.as_ref().map(|_| original);
            out.extend_from_slice(&frame_of(header.version, &payload, stored.as_ref()));
            hash = original;
        } else {
            out.extend_from_slice(&bytes[r.frame.clone()]);
            hash = original;
        }
    }
    if let Some((_, mut f)) = seg.footer {
        if rechain_from != usize::MAX {
            f.final_hash = hash;
        }
        out.extend_from_slice(&f.encode());
    }
    out.extend_from_slice(&bytes[seg.end..]);
    (out, hash)
}

/// A record frame of format `version` with a given (possibly stale) chain
/// hash, or none (a format 6 record between chain marks), and a correct CRC.
pub fn frame_of(version: u16, payload: &[u8], chain: Option<&Hash>) -> Vec<u8> {
    let mark = match chain {
        Some(_) if version >= FORMAT_VERSION_CHAIN_MARKS => CHAIN_MARK_BIT,
        _ => 0,
    };
    let len = (payload.len() as u32 | mark).to_le_bytes();
    let chain: &[u8] = chain.map_or(&[], |c| &c[..]);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    crc.update(chain);
    let mut out = Vec::with_capacity(payload.len() + RECORD_OVERHEAD_BYTES);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(chain);
    out
}

/// Edits record `record_index`'s payload (any length) and recomputes its CRC only: its chain is left stale.
pub fn edit_fix_crc(path: &Path, record_index: usize, edit: impl FnOnce(&mut Vec<u8>)) {
    let bytes = std::fs::read(path).unwrap();
    let (out, _) = rewrite(
        &bytes,
        None,
        Some((record_index, Box::new(edit))),
        Chain::Stale,
    );
    write_keeping_mode(path, &out);
}

/// Edits a payload and re-chains this file from it on (CRCs, footer); returns the new final hash. The next segment's link breaks.
pub fn edit_rechain_file(
    path: &Path,
    record_index: usize,
    edit: impl FnOnce(&mut Vec<u8>),
) -> Hash {
    let bytes = std::fs::read(path).unwrap();
    let (out, hash) = rewrite(
        &bytes,
        None,
        Some((record_index, Box::new(edit))),
        Chain::From,
    );
    write_keeping_mode(path, &out);
    hash
}

/// [`edit_rechain_file`] on segment `segment_index`, then re-chains every later segment (header `prev_hash`, records, footer): the log is consistent again.
pub fn edit_rechain_tail(
    data_dir: &Path,
    segment_index: usize,
    record_index: usize,
    edit: impl FnOnce(&mut Vec<u8>),
) {
    let files = segments(data_dir);
    let mut hash = edit_rechain_file(&files[segment_index], record_index, edit);
    for path in &files[segment_index + 1..] {
        let bytes = std::fs::read(path).unwrap();
        let (out, h) = rewrite(&bytes, Some(hash), None, Chain::From);
        write_keeping_mode(path, &out);
        hash = h;
    }
}

/// Truncates a segment after its first `keep_records` records (footer and anything after them dropped).
pub fn cut_at_record(path: &Path, keep_records: usize) {
    let bytes = std::fs::read(path).unwrap();
    let recs = records(&bytes);
    assert!(
        keep_records <= recs.len(),
        "{keep_records} of {}",
        recs.len()
    );
    let end = match keep_records {
        0 => HEADER_BYTES,
        n => recs[n - 1].frame.end,
    };
    write_keeping_mode(path, &bytes[..end]);
}

/// [`cut_at_record`] on the last (active) segment of a data directory; returns its path.
pub fn cut_active_at_record_boundary(data_dir: &Path, keep: usize) -> PathBuf {
    let last = segments(data_dir).pop().expect("a segment");
    cut_at_record(&last, keep);
    last
}

/// Garbles the last `n` records of a segment (payload bytes inverted, CRCs not fixed): a bad tail.
pub fn corrupt_last_records(path: &Path, n: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let recs = records(&bytes);
    assert!(n <= recs.len(), "{n} of {} records", recs.len());
    for r in &recs[recs.len() - n..] {
        let mid = (r.payload.start + r.payload.end) / 2;
        for b in &mut bytes[mid..(mid + 8).min(r.payload.end)] {
            *b ^= 0xFF;
        }
    }
    write_keeping_mode(path, &bytes);
}

/// Exchanges the contents of two files (each path keeps its own mode).
pub fn swap_segments(a: &Path, b: &Path) {
    let (ba, bb) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    write_keeping_mode(a, &bb);
    write_keeping_mode(b, &ba);
}

/// Removes a segment file.
pub fn delete_segment(path: &Path) {
    remove(path);
}

fn remove(path: &Path) {
    std::fs::remove_file(path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
}

/// `DATA_DIR/digests/DAY.digest.json` (`day` is `YYYY-MM-DD`).
pub fn digest_json(data_dir: &Path, day: &str) -> PathBuf {
    data_dir.join("digests").join(format!("{day}.digest.json"))
}

/// `DATA_DIR/digests/DAY.digest.sig`.
pub fn digest_sig(data_dir: &Path, day: &str) -> PathBuf {
    data_dir.join("digests").join(format!("{day}.digest.sig"))
}

/// Removes a day's `.digest.json` (which must exist) and its `.digest.sig`.
pub fn delete_digest(data_dir: &Path, day: &str) {
    remove(&digest_json(data_dir, day));
    let _ = std::fs::remove_file(digest_sig(data_dir, day));
}

/// Removes every file in `DATA_DIR/digests/`; returns how many days (`.digest.json`) were removed.
pub fn delete_all_digests(data_dir: &Path) -> usize {
    let mut days = 0;
    for entry in std::fs::read_dir(data_dir.join("digests")).unwrap() {
        let path = entry.unwrap().path();
        days += path.to_string_lossy().ends_with(".digest.json") as usize;
        std::fs::remove_file(&path).unwrap();
    }
    days
}

/// Raw text edit of a day's `.digest.json`; the signature is left as is.
pub fn edit_digest(data_dir: &Path, day: &str, edit: impl FnOnce(&mut String)) {
    let path = digest_json(data_dir, day);
    let mut text = std::fs::read_to_string(&path).unwrap();
    edit(&mut text);
    write_keeping_mode(&path, text.as_bytes());
}

/// Replaces the first occurrence of `from` in `bytes` by `to` (panics if absent); no length prefix is fixed.
pub fn payload_replace(bytes: &mut Vec<u8>, from: &[u8], to: &[u8]) {
    let at = find(bytes, from)
        .unwrap_or_else(|| panic!("{:?} not in the payload", String::from_utf8_lossy(from)));
    bytes.splice(at..at + from.len(), to.iter().copied());
}

/// Like [`payload_replace`] for a bincode-2 `String` field: also rewrites its varint length prefix, so the payload still decodes.
pub fn bincode_string_replace(bytes: &mut Vec<u8>, from: &str, to: &str) {
    let mut old = varint(from.len() as u64);
    old.extend_from_slice(from.as_bytes());
    let mut new = varint(to.len() as u64);
    new.extend_from_slice(to.as_bytes());
    payload_replace(bytes, &old, &new);
}

/// The bincode 2 (standard config) encoding of an unsigned integer.
pub fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=250 => vec![v as u8],
        251..=0xFFFF => [&[251u8][..], &(v as u16).to_le_bytes()].concat(),
        0x1_0000..=0xFFFF_FFFF => [&[252u8][..], &(v as u32).to_le_bytes()].concat(),
        _ => [&[253u8][..], &v.to_le_bytes()].concat(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
