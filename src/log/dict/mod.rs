//! Compression of record payloads with a segment's zstd dictionary.
//!
//! Owns [`Dict`] (a dictionary, ready to compress and decompress with) and
//! the stored form of a payload in a segment that has one; `trainer`: the
//! `stele-dict` thread that trains dictionaries from samples of recent
//! payloads ([`Trainer`]). Never touches files: the writer puts a dictionary
//! into the segments it creates (docs/FORMAT.md, "Dictionary"), readers get it
//! back from the segment's bytes.
//!
//! ```text
//! stored  = head ++ zstd frame of rest            (a segment with a dictionary)
//! payload = prefix ++ rest                        (what the chain hash covers)
//! prefix  = seq (bincode varint) ++ received_at (bincode zigzag varint)
//! head    = the prefix (versions 4 to 6), or from version 7 seq - first_seq
//!           ++ zigzag(received_at - created_at), two LEB128 varints (the
//!           header's fields; `relative_prefix`): left uncompressed, so a frame
//!           scan reads the seq without decompressing
//! zstd frame: one frame, made with the segment's dictionary, content size in
//!           its header, no checksum (the record's CRC and chain cover it);
//!           from format version 5 stored compact (`Frames::Compact`): without
//!           the 4-byte magic number and without the dictionary ID (the
//!           segment has one dictionary), 8 bytes less a record
//!
//! a frame as zstd writes it (RFC 8878, 3.1.1)     as stored from version 5
//!   magic 28 B5 2F FD                               -
//!   descriptor FHD (dictID flag bits 1..0 = 3)      FHD with bits 1..0 = 0
//!   [window descriptor, when not single-segment]    [window descriptor]
//!   dictionary ID {4}                               -
//!   content size {1, 2, 4 or 8}                     content size
//!   blocks                                          blocks
//! ```
//!
//! Invariants:
//! 1. `plain(compress(p)) == p` for every payload, with the dictionary of the
//!    segment that holds it; the chain hash is over the payload, so a record's
//!    chain does not depend on whether or how it was compressed.
//! 2. Decompression never allocates more than `RECORD_PAYLOAD_BYTES_MAX`: a
//!    frame announcing more, or none, is corruption.
//! 3. A compact frame is a whole frame with its magic number and dictionary ID
//!    left out, nothing else changed: putting the magic back gives a frame zstd
//!    reads with the segment's dictionary (zstd checks a dictionary ID only when
//!    the frame names one).
//! 4. A compressed record's stored prefix gives back the payload's bincode
//!    prefix exactly (from version 7 rebuilt from the segment's header,
//!    [`Frames::Relative`]), so the chain over the payload is the same in
//!    every version.
//!
//! The trainer's invariants (training never blocks the writer; dictionaries
//! come in order) are in `trainer`.

use super::format::RECORD_PAYLOAD_BYTES_MAX;
use std::cell::RefCell;
use zstd::zstd_safe::{CCtx, CDict, DCtx, DDict};

mod trainer;
pub use trainer::{
    Samples, Trainer, DICT_BYTES_DEFAULT_MAX, FIRST_SHARE, RETRAIN_AFTER_BYTES, SAMPLES_QUEUED,
    SAMPLES_SENT_BYTES, SAMPLE_BYTES_DEFAULT, SAMPLE_EVERY, SAMPLE_TO_DICT,
};

/// zstd level records are compressed at (measured: README "Performance").
pub const LEVEL: i32 = 3;
/// zstd's magic number, as every frame it writes starts with it.
const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();

/// How a segment's compressed records store their prefix and their zstd frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frames {
    /// The payload's bincode prefix, then the frame as zstd writes it, magic
    /// number and dictionary ID included (format version 4).
    Whole,
    /// The bincode prefix, then the frame without the magic number and the
    /// dictionary ID (versions 5 and 6).
    Compact,
    /// The prefix relative to the segment's header (`seq - first_seq` and
    /// `received_at - created_at`, see [`relative_prefix`]), then the compact
    /// frame (from version 7).
    Relative {
        /// The header's `first_seq`.
        first_seq: u64,
        /// The header's `created_at`.
        created_at: i64,
    },
}

impl Frames {
    /// The form of the compressed records of the segment whose header is `h`.
    pub fn of(h: &super::format::Header) -> Frames {
        use super::format::{FORMAT_VERSION_COMPACT_FRAMES, FORMAT_VERSION_RELATIVE_PREFIX};
        if h.version >= FORMAT_VERSION_RELATIVE_PREFIX {
            Frames::Relative {
                first_seq: h.first_seq,
                created_at: h.created_at,
            }
        } else if h.version >= FORMAT_VERSION_COMPACT_FRAMES {
            Frames::Compact
        } else {
            Frames::Whole
        }
    }

    /// Appends the stored prefix of the payload of `seq`, received at
    /// `received_at`, to `out`.
    pub fn put_prefix(self, seq: u64, received_at: i64, out: &mut Vec<u8>) {
        match self {
            Frames::Whole | Frames::Compact => {
                crate::event::encode_stored_prefix(seq, received_at, out)
            }
            Frames::Relative {
                first_seq,
                created_at,
            } => relative_prefix(
                seq.wrapping_sub(first_seq),
                received_at.wrapping_sub(created_at),
                out,
            ),
        }
    }

    /// The seq and receipt time a stored record's prefix says, and its bytes.
    pub fn read_prefix(self, stored: &[u8]) -> Result<(u64, i64, usize), String> {
        let bad = || "the stored payload has no valid seq and time prefix".to_string();
        match self {
            Frames::Whole | Frames::Compact => {
                let ((seq, received_at), at) =
                    crate::event::decode_stored_prefix(stored).map_err(|_| bad())?;
                Ok((seq, received_at, at))
            }
            Frames::Relative {
                first_seq,
                created_at,
            } => {
                let (index, a) = uleb(stored).ok_or_else(bad)?;
                let (zz, b) = uleb(&stored[a..]).ok_or_else(bad)?;
                let delta = (zz >> 1) as i64 ^ -((zz & 1) as i64);
                let seq = first_seq.checked_add(index).ok_or_else(bad)?;
                let received_at = created_at.checked_add(delta).ok_or_else(bad)?;
                Ok((seq, received_at, a + b))
            }
        }
    }

    /// The seq of a stored record, read from its prefix without decompressing.
    pub fn seq_of(self, stored: &[u8]) -> Result<u64, String> {
        match self {
            Frames::Whole | Frames::Compact => crate::event::decode_stored_seq(stored),
            Frames::Relative { .. } => self.read_prefix(stored).map(|(seq, ..)| seq),
        }
    }
}

/// The stored prefix of a compressed record from format version 7: the
/// record's index in its segment, `seq - first_seq`, then `received_at -
/// created_at` zigzagged, each as an unsigned LEB128 varint (7 bits a byte,
/// low first, the top bit set on every byte but the last): at most 3 bytes
/// below 2^21 records, and 4 bytes within 2.2 minutes of the segment's
/// creation, 5 within 4.8 hours, 6 within the day, where the payload's own
/// bincode varints take 5 (a seq past 65,535) and 9.
pub fn relative_prefix(index: u64, delta: i64, out: &mut Vec<u8>) {
    for mut v in [index, ((delta << 1) ^ (delta >> 63)) as u64] {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
}

/// An unsigned LEB128 varint at the head of `b` and its bytes (at most 10,
/// the value at most `u64::MAX`), in the fewest bytes that hold it (as
/// [`relative_prefix`] writes it: a last byte of zero after others would let
/// the stored bytes change without the payload changing).
fn uleb(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7F);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return (i == 0 || byte != 0).then_some((v, i + 1));
        }
    }
    None
}

/// A segment's dictionary, prepared for both directions.
pub struct Dict {
    bytes: Vec<u8>,
    crc: u32,
    ddict: DDict<'static>,
    /// Made on first use: readers never compress.
    cdict: std::sync::OnceLock<CDict<'static>>,
}

impl std::fmt::Debug for Dict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dict")
            .field("bytes", &self.bytes.len())
            .field("crc", &format_args!("{:08x}", self.crc))
            .finish()
    }
}

thread_local! {
    static DCTX: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
    /// A compact frame made whole again (its magic number put back).
    static WHOLE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Makes the zstd frame zstd wrote at `out[at..]` compact: drops its magic
/// number and its dictionary ID, and clears the descriptor's dictionary-ID
/// flag (module documentation; RFC 8878, 3.1.1.1).
fn compact(out: &mut Vec<u8>, at: usize) {
    debug_assert_eq!(out[at..at + 4], ZSTD_MAGIC, "zstd writes its magic number");
    let fhd = out[at + 4];
    let window = usize::from(fhd & 0x20 == 0);
    let dict_id = [0, 1, 2, 4][usize::from(fhd & 3)];
    out[at] = fhd & !3;
    out.copy_within(at + 5..at + 5 + window, at + 1);
    let rest = at + 5 + window + dict_id;
    out.copy_within(rest.., at + 1 + window);
    out.truncate(out.len() - 4 - dict_id);
}

impl Dict {
    /// Prepares `bytes` (a zstd dictionary, or any non-empty bytes: zstd takes
    /// those as raw content).
    pub fn new(bytes: Vec<u8>) -> Result<Dict, String> {
        if bytes.is_empty() || bytes.len() > super::format::DICT_BYTES_MAX {
            return Err(format!("a dictionary of {} bytes", bytes.len()));
        }
        let ddict = DDict::try_create(&bytes).ok_or("zstd refused the dictionary")?;
        Ok(Dict {
            crc: crc32fast::hash(&bytes),
            bytes,
            ddict,
            cdict: std::sync::OnceLock::new(),
        })
    }

    /// The dictionary's bytes, as the segment stores them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// CRC-32 of the bytes (the header's `dict_crc`).
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Appends the stored form of a payload to `out`: `head` (its stored
    /// prefix, [`Frames::put_prefix`]), then the compact frame of `rest`, the
    /// payload after its bincode prefix (the writer writes only this build's
    /// format).
    pub fn compress(&self, cctx: &mut CCtx<'static>, head: &[u8], rest: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(head);
        let at = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(rest.len()));
        let mut cursor = std::io::Cursor::new(&mut *out);
        cursor.set_position(at as u64);
        let cdict = self.cdict.get_or_init(|| CDict::create(&self.bytes, LEVEL));
        // Cannot fail: the output has room for the bound, the input is bytes.
        cctx.compress_using_cdict(&mut cursor, rest, cdict)
            .expect("zstd compresses into a buffer of its bound");
        compact(out, at);
    }

    /// The payload of a stored record whose frame is of the form `frames`, in
    /// `scratch`.
    pub fn plain<'a>(
        &self,
        stored: &[u8],
        frames: Frames,
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], String> {
        scratch.clear();
        let at = match frames {
            // The bincode prefix as stored (its bytes, which the CRC and the
            // chain cover, are the payload's).
            Frames::Whole | Frames::Compact => {
                let at =
                    prefix_len(stored).ok_or("the stored payload has no seq and time prefix")?;
                scratch.extend_from_slice(&stored[..at]);
                at
            }
            Frames::Relative { .. } => {
                let (seq, received_at, at) = frames.read_prefix(stored)?;
                crate::event::encode_stored_prefix(seq, received_at, scratch);
                at
            }
        };
        let frame = &stored[at..];
        match frames {
            Frames::Whole => self.decompress(frame, scratch),
            Frames::Compact | Frames::Relative { .. } => WHOLE.with(|whole| {
                let mut whole = whole.borrow_mut();
                whole.clear();
                whole.extend_from_slice(&ZSTD_MAGIC);
                whole.extend_from_slice(frame);
                self.decompress(&whole, scratch)
            }),
        }
    }

    /// Appends the content of the whole zstd `frame` to the prefix in `scratch`.
    fn decompress<'a>(&self, frame: &[u8], scratch: &'a mut Vec<u8>) -> Result<&'a [u8], String> {
        let at = scratch.len();
        let size = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(n)) if n as usize <= RECORD_PAYLOAD_BYTES_MAX - at => n as usize,
            Ok(Some(n)) => return Err(format!("a compressed payload announces {n} bytes")),
            Ok(None) | Err(_) => {
                return Err("the compressed payload has no valid zstd frame header".into())
            }
        };
        scratch.reserve(size);
        let mut cursor = std::io::Cursor::new(&mut *scratch);
        cursor.set_position(at as u64);
        let n = DCTX
            .with(|d| {
                d.borrow_mut()
                    .decompress_using_ddict(&mut cursor, frame, &self.ddict)
            })
            .map_err(|code| {
                format!(
                    "the compressed payload does not decompress: {}",
                    zstd::zstd_safe::get_error_name(code)
                )
            })?;
        if n != size {
            return Err(format!("a compressed payload of {size} bytes gave {n}"));
        }
        Ok(&scratch[..])
    }
}

/// The dictionary of the segment whose bytes (from offset 0) are `bytes`,
/// checked against its header's CRC; `None` when it has none.
pub fn of_segment(header: &super::format::Header, bytes: &[u8]) -> Result<Option<Dict>, String> {
    match header.dictionary(bytes) {
        Ok(None) => Ok(None),
        Ok(Some(d)) => Dict::new(d.to_vec()).map(Some),
        Err(e) => Err(format!("its dictionary: {e}")),
    }
}

/// The payload of `stored` in the segment whose header is `header`, with
/// `dict` (or without one).
pub fn payload<'a>(
    dict: Option<&Dict>,
    header: &super::format::Header,
    stored: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], String> {
    match dict {
        Some(d) => d.plain(stored, Frames::of(header), scratch),
        None => Ok(stored),
    }
}

/// Bytes of the `(seq, received_at)` prefix at the start of `payload`: two
/// bincode varints (a byte below 251, or a marker 251/252/253 and 2/4/8 bytes).
pub fn prefix_len(payload: &[u8]) -> Option<usize> {
    let mut at = 0;
    for _ in 0..2 {
        let n = match *payload.get(at)? {
            0..=250 => 1,
            251 => 3,
            252 => 5,
            253 => 9,
            _ => return None,
        };
        at += n;
    }
    (at <= payload.len()).then_some(at)
}

/// A new compression context for the writer.
pub fn compressor() -> CCtx<'static> {
    CCtx::create()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{encode_event, encode_stored_prefix};
    use crate::testkit::EventGen;

    pub(super) fn payloads(seed: u64, n: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut gen = EventGen::new(seed);
        (1..=n)
            .map(|seq| {
                let mut prefix = Vec::new();
                encode_stored_prefix(
                    seq * 1_000_003,
                    1_790_000_000_000_000 + seq as i64,
                    &mut prefix,
                );
                let mut rest = Vec::new();
                encode_event(&gen.next_event(), &mut rest);
                (prefix, rest)
            })
            .collect()
    }

    /// A 16 KiB dictionary trained from the rests of `ps`.
    fn trained(ps: &[(Vec<u8>, Vec<u8>)]) -> Dict {
        let samples: Vec<&[u8]> = ps.iter().map(|(_, r)| r.as_slice()).collect();
        Dict::new(zstd::dict::from_samples(&samples, 16 * 1024).unwrap()).unwrap()
    }

    #[test]
    fn what_is_compressed_comes_back_byte_for_byte() {
        let ps = payloads(1, 3_000);
        let dict = trained(&ps);
        let mut cctx = compressor();
        let (mut stored, mut scratch) = (Vec::new(), Vec::new());
        let (mut plain_total, mut stored_total) = (0, 0);
        for (prefix, rest) in &ps {
            stored.clear();
            dict.compress(&mut cctx, prefix, rest, &mut stored);
            assert_eq!(prefix_len(&stored), Some(prefix.len()));
            let back = dict.plain(&stored, Frames::Compact, &mut scratch).unwrap();
            assert_eq!(&back[..prefix.len()], &prefix[..]);
            assert_eq!(&back[prefix.len()..], &rest[..]);
            plain_total += prefix.len() + rest.len();
            stored_total += stored.len();
        }
        assert!(
            stored_total * 2 < plain_total,
            "{stored_total} of {plain_total}"
        );

        // Another dictionary, or damaged bytes: an error, never a panic or a
        // made-up payload of the announced size.
        let other = Dict::new(b"not the dictionary it was made with".to_vec()).unwrap();
        stored.clear();
        dict.compress(&mut cctx, &ps[0].0, &ps[0].1, &mut stored);
        for frames in [Frames::Compact, Frames::Whole] {
            if let Ok(p) = other.plain(&stored, frames, &mut scratch) {
                assert_ne!(&p[ps[0].0.len()..], &ps[0].1[..]);
            }
            for cut in 0..stored.len() {
                let _ = dict.plain(&stored[..cut], frames, &mut scratch);
            }
        }
        let mut bomb = ps[0].0.clone();
        bomb.extend_from_slice(&zstd::bulk::compress(&vec![0u8; 2 << 20], 1).unwrap());
        let err = dict.plain(&bomb, Frames::Whole, &mut scratch).unwrap_err();
        assert!(err.contains("announces"), "{err}");
        let at = ps[0].0.len();
        compact(&mut bomb, at);
        let err = dict
            .plain(&bomb, Frames::Compact, &mut scratch)
            .unwrap_err();
        assert!(err.contains("announces"), "{err}");
    }

    /// A stored frame is zstd's without its magic number and dictionary ID;
    /// zstd's own frame (format version 4's records) reads back the same.
    #[test]
    fn a_compact_frame_is_zstds_less_its_magic_and_dictionary_id() {
        let ps = payloads(3, 2_000);
        let dict = trained(&ps);
        let cdict = CDict::create(dict.bytes(), LEVEL);
        let mut cctx = compressor();
        let (mut stored, mut scratch) = (Vec::new(), Vec::new());
        for (prefix, rest) in ps.iter().step_by(97) {
            let mut whole = Vec::with_capacity(zstd::zstd_safe::compress_bound(rest.len()));
            cctx.compress_using_cdict(&mut whole, rest, &cdict).unwrap();
            assert_eq!(whole[..4], ZSTD_MAGIC);
            // A trained dictionary has a 4-byte ID, and zstd writes it.
            assert_eq!(whole[4] & 3, 3, "{:02x}", whole[4]);
            stored.clear();
            dict.compress(&mut cctx, prefix, rest, &mut stored);
            let frame = &stored[prefix.len()..];
            assert_eq!(frame.len() + 8, whole.len());
            assert_eq!(frame[0], whole[4] & !3);
            assert_eq!(
                frame[1..],
                [
                    &whole[5..5 + usize::from(whole[4] & 0x20 == 0)],
                    &whole[9 + usize::from(whole[4] & 0x20 == 0)..]
                ]
                .concat()[..]
            );
            let back = dict
                .plain(&stored, Frames::Compact, &mut scratch)
                .unwrap()
                .to_vec();
            let mut old = prefix.clone();
            old.extend_from_slice(&whole);
            assert_eq!(
                dict.plain(&old, Frames::Whole, &mut scratch).unwrap(),
                &back[..]
            );
            assert_eq!(back, [&prefix[..], &rest[..]].concat());
        }
        let h = |version| header(version, 1, 0);
        assert_eq!(Frames::of(&h(4)), Frames::Whole);
        assert_eq!(Frames::of(&h(5)), Frames::Compact);
        assert_eq!(Frames::of(&h(6)), Frames::Compact);
        assert!(matches!(Frames::of(&h(7)), Frames::Relative { .. }));
    }

    fn header(version: u16, first_seq: u64, created_at: i64) -> crate::log::format::Header {
        use crate::log::format::{Day, Header, SegmentId};
        Header {
            version,
            id: SegmentId {
                day: Day::from_micros(created_at),
                part: 0,
            },
            first_seq,
            prev_hash: [0; 32],
            created_at,
            dict_len: 0,
            dict_crc: 0,
        }
    }

    /// From format version 7 a compressed record stores its seq and time
    /// relative to the header: the payload reads back byte for byte (the
    /// bincode prefix rebuilt), in fewer bytes, and a prefix that is cut
    /// short, too long or out of range is an error, never a panic.
    #[test]
    fn the_relative_prefix_rebuilds_the_payload_in_fewer_bytes() {
        let ps = payloads(4, 2_000);
        let dict = trained(&ps);
        let mut cctx = compressor();
        let created = 1_796_000_000_000_000i64;
        let (mut stored, mut head, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        for (first, skew) in [(1u64, 0i64), (1_000_001, 3_600_000_000), (1, -5)] {
            let frames = Frames::of(&header(7, first, created));
            for (i, (_, rest)) in ps.iter().enumerate().step_by(37) {
                let (seq, at) = (first + i as u64 * 1_000, created + skew + i as i64);
                let mut prefix = Vec::new();
                encode_stored_prefix(seq, at, &mut prefix);
                head.clear();
                frames.put_prefix(seq, at, &mut head);
                assert!(head.len() < prefix.len(), "{head:?} {prefix:?}");
                stored.clear();
                dict.compress(&mut cctx, &head, rest, &mut stored);
                assert_eq!(frames.read_prefix(&stored), Ok((seq, at, head.len())));
                assert_eq!(frames.seq_of(&stored), Ok(seq));
                let back = dict.plain(&stored, frames, &mut scratch).unwrap();
                assert_eq!(back, [&prefix[..], &rest[..]].concat());
            }
        }
        let frames = Frames::of(&header(7, 10, created));
        let mut p = Vec::new();
        relative_prefix(u64::MAX, i64::MIN, &mut p);
        assert_eq!(p.len(), 20);
        // 10 + u64::MAX overflows the seq; created + i64::MIN the time.
        assert!(frames.read_prefix(&p).is_err());
        // Cut short, too long, and a varint in more bytes than it needs.
        for bad in [
            &[][..],
            &[0x80],
            &[0x05],
            &[0xFF; 11],
            &[0x05, 0xFF],
            &[0x80, 0x00, 0x00],
        ] {
            assert!(frames.read_prefix(bad).is_err(), "{bad:?}");
            assert!(dict.plain(bad, frames, &mut scratch).is_err());
        }
        // A value past 64 bits in its tenth byte.
        let mut long = vec![0xFF; 9];
        long.push(0x02);
        assert_eq!(uleb(&long), None);
        long[9] = 0x01;
        assert_eq!(uleb(&long), Some((u64::MAX, 10)));
        assert_eq!(uleb(&[0x00]), Some((0, 1)));
        assert_eq!(uleb(&[0x81, 0x00]), None);
        assert_eq!(uleb(&[0x81, 0x01]), Some((129, 2)));
    }

    #[test]
    fn the_prefix_is_two_varints() {
        for (seq, at) in [
            (0u64, 0i64),
            (250, -1),
            (251, 1 << 40),
            (u64::MAX, i64::MIN),
        ] {
            let mut p = Vec::new();
            encode_stored_prefix(seq, at, &mut p);
            assert_eq!(prefix_len(&p), Some(p.len()), "{seq} {at}");
            assert_eq!(prefix_len(&p[..p.len() - 1]), None);
        }
        assert_eq!(prefix_len(&[254, 0]), None);
    }
}
