//! The scanner: the one function that walks a segment's frames and says
//! where and why it stops ([`scan`]), and what it reports. Recovery, `stele
//! verify`, `stele backup`, retention's dry run, the seal's checks and the
//! fuzz targets all call it (through [`super::SegmentFile`] or directly), so
//! they can never disagree about what a valid segment is. Pure: bytes in,
//! a [`Scan`] out; never panics, whatever the bytes.

use super::super::dict::{Dict, Frames};
use super::super::format::{
    chain_hash, decode_frame, frame_len, stores_chain, Footer, Frame, FrameError, Hash, Header,
    FOOTER_BYTES, HEADER_BYTES, RECORD_OVERHEAD_BYTES_MIN,
};
use super::super::prealloc::ZEROED_PAST_WRITER_BYTES_MAX;
use super::SPARSE_EVERY;
use crate::event;

/// How deeply [`scan`] checks each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Frame, CRC and the seq at the head of the payload: what recovery needs
    /// to find the end of the log, fast enough for a 1 GiB segment in well
    /// under a second. From version 6 the chain of the last record is
    /// hashed forward from the last stored one (at most 31 payloads
    /// decompressed and hashed; none after a write the writer finished);
    /// stored hashes are taken as they are.
    Frames,
    /// Also recompute every chain hash and decode every payload completely:
    /// what `stele verify` does.
    Full,
}

/// Whether a problem found by [`scan`] can be a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The bytes from the problem to the end of the file hold no valid frame:
    /// consistent with a write that did not complete before a crash.
    TornTail,
    /// Anything else: damage or tampering.
    Corrupt,
}

/// Where and why a scan stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Torn tail or corruption.
    pub kind: ProblemKind,
    /// Byte offset of the frame at fault.
    pub offset: u64,
    /// The seq expected at that offset.
    pub seq: u64,
    /// What is wrong, in a sentence.
    pub detail: String,
}

/// What [`scan`] found in a segment.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Offset just past the last good record.
    pub records_end: u64,
    /// Number of good records.
    pub count: u64,
    /// Chain hash of the last good record (the header's `prev_hash` if none).
    pub last_hash: Hash,
    /// Offsets of records 0, SPARSE_EVERY, 2*SPARSE_EVERY, ...
    pub sparse: Vec<u64>,
    /// The footer, when the segment is sealed and it checks out.
    pub footer: Option<Footer>,
    /// Why the scan stopped before the end of the file, if it did.
    pub problem: Option<Problem>,
    /// Zero bytes at the end of the file, after the records (and after a
    /// torn tail, if any): space the writer filled ahead of itself.
    pub padding: u64,
}

/// Walks the frames of a whole segment file (`bytes` starts with its header,
/// already decoded into `header`). Never panics, whatever the bytes.
///
/// `torn_window` is the largest torn tail the writer can leave (its largest
/// single write): a bad frame further than that from the end of the file can
/// only be damage, so the scan does not look for a later valid frame.
pub fn scan(bytes: &[u8], header: &Header, depth: Depth, torn_window: u64) -> Scan {
    let start = header.records_start();
    let mut out = Scan {
        records_end: start as u64,
        count: 0,
        last_hash: header.prev_hash,
        sparse: Vec::new(),
        footer: None,
        problem: None,
        padding: 0,
    };
    let mut off = start;
    let corrupt = |off: usize, seq: u64, detail: String| Problem {
        kind: ProblemKind::Corrupt,
        offset: off as u64,
        seq,
        detail,
    };
    // The dictionary is checked at every depth; it is needed to decompress
    // (and so to hash) the payloads at `Full` depth (at `Frames` depth,
    // [`settled`] loads it if the records after the last stored hash need it).
    let dict = header
        .dictionary(bytes)
        .map_err(|e| e.to_string())
        .and_then(|d| match d {
            Some(d) if depth == Depth::Full => Dict::new(d.to_vec()).map(Some),
            _ => Ok(None),
        });
    let dict = match dict {
        Ok(d) => d,
        Err(e) => {
            out.records_end = HEADER_BYTES as u64;
            let detail = format!("dictionary: {e}");
            out.problem = Some(corrupt(HEADER_BYTES, header.first_seq, detail));
            return out;
        }
    };
    let mut scratch = Vec::new();
    // How the records are stored when the segment has a dictionary (loaded
    // or not: at `Frames` depth the seq is read from the stored prefix).
    let stored_form = (header.dict_len > 0).then(|| Frames::of(header));
    // The last record whose chain hash is known, as (hash, offset and index
    // of the record after it): at `Frames` depth from version 6 the records
    // after the last stored hash are hashed only when a caller needs the
    // last one. `verified`: at `Full` depth, the last record whose stored
    // hash the recomputed chain matched (or the header).
    let mut known = Known {
        hash: header.prev_hash,
        off: start,
        count: 0,
    };
    let mut verified = known;
    while off < bytes.len() {
        let seq = header.first_seq + out.count;
        match decode_frame(&bytes[off..], header.version) {
            Ok(Frame::Record {
                payload: stored,
                chain,
                len,
            }) => {
                if chain.is_none() && stores_chain(header.version, out.count) {
                    let detail = format!(
                        "record {} of the segment lacks its chain hash: the format stores one at \
                         every {}th record",
                        out.count,
                        super::super::format::CHAIN_MARK_EVERY
                    );
                    out.problem = Some(corrupt(off, seq, detail));
                    return settled(out, bytes, header, dict.as_ref(), known);
                }
                let payload = match (&dict, depth) {
                    (Some(d), Depth::Full) => {
                        match d.plain(stored, Frames::of(header), &mut scratch) {
                            Ok(p) => p,
                            Err(detail) => {
                                out.problem = Some(corrupt(off, seq, detail));
                                return out;
                            }
                        }
                    }
                    _ => stored,
                };
                if let Err(detail) = check_payload(payload, header.version, stored_form, seq, depth)
                {
                    out.problem = Some(corrupt(off, seq, detail));
                    return settled(out, bytes, header, dict.as_ref(), known);
                }
                if depth == Depth::Full {
                    let computed = chain_hash(&out.last_hash, &[payload]);
                    if chain.is_some_and(|c| *c != computed) {
                        // The records since the last confirmed hash are not
                        // good: one of them (or this one) was changed.
                        let from = header.first_seq + verified.count;
                        out.count = verified.count;
                        out.records_end = verified.off as u64;
                        out.last_hash = verified.hash;
                        out.sparse
                            .truncate(verified.count.div_ceil(SPARSE_EVERY) as usize);
                        let detail = chain_broken(from, seq);
                        out.problem = Some(corrupt(verified.off, from, detail));
                        return out;
                    }
                    known.hash = computed;
                } else if let Some(c) = chain {
                    known.hash = *c;
                }
                if out.count % SPARSE_EVERY == 0 {
                    out.sparse.push(off as u64);
                }
                out.count += 1;
                off += len;
                out.records_end = off as u64;
                if depth == Depth::Full || chain.is_some() {
                    known.off = off;
                    known.count = out.count;
                    out.last_hash = known.hash;
                }
                if chain.is_some() {
                    verified = known;
                }
            }
            Ok(Frame::Footer(f)) => {
                let mut out = settled(out, bytes, header, dict.as_ref(), known);
                if out.problem.is_some() {
                    return out;
                }
                let problem = if f.first_seq != header.first_seq || f.count != out.count {
                    Some(format!(
                        "the footer says {} records from seq {}, the segment holds {} from seq {}",
                        f.count, f.first_seq, out.count, header.first_seq
                    ))
                } else if f.final_hash != out.last_hash {
                    Some(
                        "the footer's final hash is not the last record's chain hash (the footer, \
                         or a record after the last stored chain hash, was altered)"
                            .into(),
                    )
                } else if off + FOOTER_BYTES != bytes.len() {
                    Some(format!(
                        "{} bytes follow the footer",
                        bytes.len() - off - FOOTER_BYTES
                    ))
                } else {
                    None
                };
                match problem {
                    Some(detail) => out.problem = Some(corrupt(off, seq, detail)),
                    None => out.footer = Some(f),
                }
                return out;
            }
            Err(e) => {
                // The writer zero-fills the active segment ahead of itself,
                // so bytes after the last record may be zeros: padding, not
                // damage. Junk before the zeros may be a torn write.
                let end = bytes[off..]
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(off, |i| off + i + 1);
                out.padding = (bytes.len() - end) as u64;
                let padding_max = padding_bytes_max(torn_window);
                if out.padding > padding_max {
                    out.problem = Some(corrupt(
                        off,
                        seq,
                        format!(
                            "{} zero bytes end the file, more than the writer can leave after \
                             its last record ({padding_max}: the torn window and the zero-filling \
                             ahead of the writer)",
                            out.padding
                        ),
                    ));
                    return settled(out, bytes, header, dict.as_ref(), known);
                }
                if end == off {
                    return settled(out, bytes, header, dict.as_ref(), known);
                }
                let rest = (end - off) as u64;
                let torn = rest <= torn_window
                    && !valid_frame_after(&bytes[..end], off + 1, seq, header.version, stored_form);
                out.problem = Some(Problem {
                    kind: if torn {
                        ProblemKind::TornTail
                    } else {
                        ProblemKind::Corrupt
                    },
                    offset: off as u64,
                    seq,
                    detail: describe_frame_error(&e, rest),
                });
                return settled(out, bytes, header, dict.as_ref(), known);
            }
        }
    }
    settled(out, bytes, header, dict.as_ref(), known)
}

/// The last record whose chain hash a scan knows: the hash, and the offset
/// and index of the record after it.
#[derive(Debug, Clone, Copy)]
struct Known {
    hash: Hash,
    off: usize,
    count: u64,
}

/// `out` with `last_hash` the chain hash of its last good record, hashed
/// forward from `known` (the last stored hash) over the records the scan did
/// not hash. A record there whose payload does not decompress is corruption:
/// the good records end before it.
fn settled(
    mut out: Scan,
    bytes: &[u8],
    header: &Header,
    dict: Option<&Dict>,
    known: Known,
) -> Scan {
    let mut hash = known.hash;
    let mut off = known.off;
    let mut scratch = Vec::new();
    // At `Frames` depth the dictionary is prepared only when records need
    // hashing (a write's last record stores its hash: rarely).
    let loaded;
    let dict = match dict {
        Some(d) => Some(d),
        None if known.count < out.count && header.dict_len > 0 => {
            match super::super::dict::of_segment(header, bytes) {
                Ok(d) => {
                    loaded = d;
                    loaded.as_ref()
                }
                Err(detail) => {
                    out.count = known.count;
                    out.records_end = off as u64;
                    out.sparse
                        .truncate(known.count.div_ceil(SPARSE_EVERY) as usize);
                    out.footer = None;
                    out.last_hash = hash;
                    out.problem = Some(Problem {
                        kind: ProblemKind::Corrupt,
                        offset: off as u64,
                        seq: header.first_seq + known.count,
                        detail: format!("dictionary: {detail}"),
                    });
                    return out;
                }
            }
        }
        None => None,
    };
    for count in known.count..out.count {
        let step = match decode_frame(&bytes[off..], header.version) {
            Ok(Frame::Record { payload, len, .. }) => {
                let plain = match dict {
                    Some(d) => d.plain(payload, Frames::of(header), &mut scratch),
                    None => Ok(payload),
                };
                plain.map(|p| (chain_hash(&hash, &[p]), len))
            }
            // The scan decoded it a moment ago.
            _ => Err("the record no longer decodes".to_string()),
        };
        match step {
            Ok((h, len)) => {
                hash = h;
                off += len;
            }
            Err(detail) => {
                out.count = count;
                out.records_end = off as u64;
                out.sparse.truncate(count.div_ceil(SPARSE_EVERY) as usize);
                out.footer = None;
                out.problem = Some(Problem {
                    kind: ProblemKind::Corrupt,
                    offset: off as u64,
                    seq: header.first_seq + count,
                    detail,
                });
                break;
            }
        }
    }
    out.last_hash = hash;
    out
}

/// What a stored chain hash that does not follow says: the one of `to`,
/// recomputed over the records from `from`, the first after the last
/// confirmed hash.
fn chain_broken(from: u64, to: u64) -> String {
    if from == to {
        return "the chain hash does not follow from the previous record and this payload (a \
                record was altered, removed or reordered)"
            .into();
    }
    format!(
        "the chain hash stored with seq {to} does not follow from the records before it (one of \
         seqs {from}..={to} was altered, removed or reordered)"
    )
}

/// The most zero padding [`scan`] accepts after the last record (or after a
/// torn tail): what the zero-filling can leave past the end of the writer's
/// last write ([`ZEROED_PAST_WRITER_BYTES_MAX`], 96 MiB), plus that write
/// itself if it was cut short before its bytes landed (`torn_window`). With
/// the log's torn window that is 160 MiB; more is damage.
pub fn padding_bytes_max(torn_window: u64) -> u64 {
    torn_window.saturating_add(ZEROED_PAST_WRITER_BYTES_MAX)
}

fn describe_frame_error(e: &FrameError, rest: u64) -> String {
    match e {
        FrameError::Truncated { need, .. } => {
            format!("a frame of {need} bytes is cut short: only {rest} bytes remain in the file")
        }
        other => format!("bad frame: {other}"),
    }
}

/// Checks the seq at the head of a payload (and, at `Full` depth, that the
/// whole payload decodes as a stored event of the segment's format `version`
/// with that seq). At `Frames` depth `payload` is the record's stored bytes,
/// in the form `stored` of the segment's compressed records when it has a
/// dictionary.
fn check_payload(
    payload: &[u8],
    version: u16,
    stored: Option<Frames>,
    seq: u64,
    depth: Depth,
) -> std::result::Result<(), String> {
    let found = match (depth, stored) {
        (Depth::Frames, Some(frames)) => frames.seq_of(payload)?,
        (Depth::Frames, None) => event::decode_stored_seq(payload)?,
        (Depth::Full, _) => event::decode_stored(payload, version)?.seq,
    };
    if found == seq {
        Ok(())
    } else {
        Err(format!(
            "the record carries seq {found} where seq {seq} belongs"
        ))
    }
}

/// True when some offset at or after `from` holds a frame that decodes with a
/// valid CRC and a seq at or after `seq`: proof that the bytes before it were
/// once whole, so an error there is damage and not a torn write. `stored`: the
/// form of the segment's compressed records, when it has a dictionary.
fn valid_frame_after(
    bytes: &[u8],
    from: usize,
    seq: u64,
    version: u16,
    stored: Option<Frames>,
) -> bool {
    let mut off = from;
    while off + RECORD_OVERHEAD_BYTES_MIN < bytes.len() {
        let b = &bytes[off..];
        // Cheap filters first: a plausible length and a plausible seq, and
        // only then the CRC.
        if let Ok(len) = frame_len([b[0], b[1], b[2], b[3]], version) {
            if len <= b.len() {
                let found = match stored {
                    Some(frames) => frames.seq_of(&b[8..len]),
                    None => event::decode_stored_seq(&b[8..len]),
                };
                if let Ok(s) = found {
                    if s >= seq && matches!(decode_frame(b, version), Ok(Frame::Record { .. })) {
                        return true;
                    }
                }
            }
        }
        off += 1;
    }
    false
}
