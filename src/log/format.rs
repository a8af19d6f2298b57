//! The segment file format, byte by byte. Pure functions over byte slices: no I/O.
//!
//! Owns the encoding and decoding of segment headers, record frames and footers,
//! the chain hash and the segment file names. `docs/FORMAT.md` is the prose
//! version of this module; the two change together.
//!
//! ```text
//! segment = header{128} dictionary{dict_len} record* footer{80}?
//! header  = magic "STELESEG"{8} | version u16 | header_len u16 (=128) | day u32 (YYYYMMDD)
//!         | part u32 | first_seq u64 | prev_hash{32} | created_at i64 (unix µs)
//!         | dict_len u32 | dict_crc u32 (from version 4; zero before)
//!         | reserved{48} (zero) | crc32 u32 (of bytes 0..124)
//! dictionary = a zstd dictionary (from version 4, when dict_len > 0), CRC-32 dict_crc
//! record  = len u32 (1..=RECORD_PAYLOAD_BYTES_MAX) | crc32 u32 (of len ++ stored ++ chain)
//!         | stored{len} | chain{32}                              (versions 1 to 5)
//! record  = len u32 (1..=RECORD_PAYLOAD_BYTES_MAX, bit 31 set when a chain follows)
//!         | crc32 u32 (of len ++ stored ++ chain?) | stored{len} | chain{32}?   (versions 6, 7)
//!           the chain stored by the records whose index in the segment is a multiple
//!           of CHAIN_MARK_EVERY (the chain marks) and, as the writer writes, by the
//!           last record of each write; computed for the others
//! stored  = payload, or in a segment with a dictionary: prefix ++ zstd(rest of payload),
//!           the zstd frame without its magic number and dictionary ID from version 5,
//!           the prefix (seq, received_at) relative to first_seq and created_at from
//!           version 7 (src/log/dict/mod.rs)
//! payload = bincode 2 standard config of StoredEvent: version 1 (seq, received_at, Event),
//!           version 2 (seq, received_at, Event, Provenance), 3 to 7 (more Event fields)
//! chain   = SHA-256(previous chain ++ payload): of the payload, never of its compressed form
//! footer  = 0xFFFF_FFFF u32 | "STELEEND"{8} | count u64 | first_seq u64 | last_seq u64
//!         | final_hash{32} | sealed_at i64 (unix µs) | crc32 u32 (of bytes 0..76)
//! ```
//! All integers are little-endian. Invariants this module keeps:
//! 1. Every decoder checks its CRC before trusting any other field, and returns
//!    a typed [`FrameError`] instead of panicking on any input (fuzzed).
//! 2. A footer can never be mistaken for a record: its first four bytes are a
//!    length no record may have.
//! 3. `encode(decode(bytes)) == bytes` for every frame that decodes.

use sha2::{Digest, Sha256};
use std::fmt;

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STELESEG";
/// The format version this build writes. Version 2 added the record payload's
/// provenance (`event::Provenance`); version 3 the event's process, batch and computed
/// risk fields (`process_name` … `risk_rules`, after `metadata`); version 4 the
/// segment's compression dictionary (header bytes 68..76, the dictionary after the
/// header, records stored compressed with it; payloads as in version 3); version 5
/// its compressed records' zstd frames without the magic number and the dictionary
/// ID (8 bytes less a record); version 6 stores the chain hash in the frames of
/// the chain marks (every [`CHAIN_MARK_EVERY`]th record) and of each write's last
/// record only, the others 32 bytes shorter; version 7 stores a compressed record's
/// seq and receipt time relative to the header's `first_seq` and `created_at`
/// (`log::dict::relative_prefix`, ≈ 6 bytes less a record). The footer is unchanged
/// since version 1.
pub const FORMAT_VERSION: u16 = 7;
/// The first format version whose segments may carry a compression dictionary.
pub const FORMAT_VERSION_DICT: u16 = 4;
/// The first format version whose compressed records store compact zstd frames
/// (`log::dict::Frames::Compact`).
pub const FORMAT_VERSION_COMPACT_FRAMES: u16 = 5;
/// The first format version whose compressed records store their seq and receipt
/// time relative to the header (`log::dict::Frames::Relative`).
pub const FORMAT_VERSION_RELATIVE_PREFIX: u16 = 7;
/// The first format version whose records store their chain hash only where
/// [`stores_chain`] requires it and where the writer adds it ([`mark_frame`]).
pub const FORMAT_VERSION_CHAIN_MARKS: u16 = 6;
/// From version 6, the records whose index in their segment (from 0) is a
/// multiple of this store their chain hash: a reader needing the chain of a
/// record that stores none hashes forward from the last stored one before it
/// (at most 31 payloads).
/// Equal to the readers' sparse offsets (`segment::SPARSE_EVERY`), so the
/// record a sparse offset points at is a mark.
pub const CHAIN_MARK_EVERY: u64 = 32;
/// From version 6, the bit of a record's length field that says its chain hash
/// follows its stored bytes. A length is at most 2^20, so the bit is never part
/// of one, and a marked length is never the footer's marker.
pub const CHAIN_MARK_BIT: u32 = 1 << 31;
/// Largest dictionary a segment may carry (a reader rejects a larger `dict_len`).
pub const DICT_BYTES_MAX: usize = 1024 * 1024;
/// The oldest format version this build still reads (see `tests/data/`).
pub const FORMAT_VERSION_OLDEST_SUPPORTED: u16 = 1;
/// Size of the segment header.
pub const HEADER_BYTES: usize = 128;
/// Size of a chain hash (SHA-256).
pub const HASH_BYTES: usize = 32;
/// The most bytes a record frame adds around its payload: length, CRC and
/// chain hash (every record before version 6; from it those that store one).
pub const RECORD_OVERHEAD_BYTES: usize = 4 + 4 + HASH_BYTES;
/// The bytes a version 6 record that stores no chain hash adds: length and CRC.
pub const RECORD_OVERHEAD_BYTES_MIN: usize = 4 + 4;
/// The smallest record frame: the least overhead and a one-byte payload (a
/// zero length is never a record: it is the padding after the last one).
pub const RECORD_FRAME_BYTES_MIN: usize = RECORD_OVERHEAD_BYTES_MIN + 1;
/// Largest payload a record may carry. Larger than any valid event
/// (`event::EVENT_BYTES_MAX`) so the event limit is the one clients meet; the
/// decoder uses it to reject a corrupt length before reading past it.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
/// Size of the footer that seals a segment.
pub const FOOTER_BYTES: usize = 80;
/// The length field value that announces a footer instead of a record.
pub const FOOTER_MARKER: u32 = u32::MAX;
/// Magic that follows the footer marker.
pub const FOOTER_MAGIC: [u8; 8] = *b"STELEEND";
/// The chain hash before the first record ever written.
pub const GENESIS_HASH: Hash = [0u8; HASH_BYTES];

/// A chain hash.
pub type Hash = [u8; HASH_BYTES];

/// Why a frame did not decode. Offsets are added by the caller, which knows
/// the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends before the frame does (`need` bytes, `have` left).
    Truncated { need: usize, have: usize },
    /// A record length of zero or above [`RECORD_PAYLOAD_BYTES_MAX`].
    BadLength(u32),
    /// The stored CRC32 does not match the bytes.
    CrcMismatch { stored: u32, computed: u32 },
    /// A field holds a value this version cannot accept.
    BadField(&'static str, String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated { need, have } => {
                write!(
                    f,
                    "truncated: the frame needs {need} bytes but only {have} remain"
                )
            }
            FrameError::BadLength(len) => write!(
                f,
                "record length {len} is outside 1..={RECORD_PAYLOAD_BYTES_MAX}"
            ),
            FrameError::CrcMismatch { stored, computed } => write!(
                f,
                "CRC32 mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            FrameError::BadField(name, why) => write!(f, "bad {name}: {why}"),
        }
    }
}

/// A UTC calendar day, stored as `YYYYMMDD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub chrono::NaiveDate);

impl Day {
    /// The UTC day that contains `micros` (unix microseconds).
    pub fn from_micros(micros: i64) -> Day {
        let secs = micros.div_euclid(1_000_000);
        let dt = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
        Day(dt.date_naive())
    }

    /// `YYYYMMDD` as stored in the header.
    pub fn to_u32(self) -> u32 {
        use chrono::Datelike;
        let d = self.0;
        (d.year() as u32) * 10_000 + d.month() * 100 + d.day()
    }

    /// Parses the header's `YYYYMMDD`.
    pub fn from_u32(v: u32) -> Option<Day> {
        chrono::NaiveDate::from_ymd_opt((v / 10_000) as i32, (v / 100) % 100, v % 100).map(Day)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// Identifies a segment file: its day and its part number within the day.
/// Ordering by `SegmentId` is the log order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    /// The UTC day of ingestion (not event time) the segment belongs to.
    pub day: Day,
    /// 0 for the day's first segment, +1 at each size-cap rotation.
    pub part: u32,
}

impl SegmentId {
    /// The file name, `YYYY-MM-DD.N.seg`.
    pub fn file_name(&self) -> String {
        format!("{}.{}.seg", self.day, self.part)
    }

    /// Parses a file name written by [`SegmentId::file_name`]; `None` for
    /// anything else (a foreign file).
    pub fn parse_file_name(name: &str) -> Option<SegmentId> {
        let stem = name.strip_suffix(".seg")?;
        let (day, part) = stem.split_once('.')?;
        if day.len() != 10 || part.is_empty() || part.len() > 10 {
            return None;
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) || (part.len() > 1 && part.starts_with('0')) {
            return None;
        }
        let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let id = SegmentId {
            day: Day(date),
            part: part.parse().ok()?,
        };
        // Round-trip check rejects non-canonical spellings such as "2026-1-02".
        (id.file_name() == name).then_some(id)
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// The fixed header at offset 0 of every segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version the segment was written with.
    pub version: u16,
    /// Day and part; must agree with the file name.
    pub id: SegmentId,
    /// Seq of the segment's first record (also of an empty segment's next one),
    /// so a segment can be checked alone and the oldest kept segment says
    /// where the surviving log starts.
    pub first_seq: u64,
    /// The chain hash of the record just before this segment's first: links
    /// segments together, and anchors the chain after retention.
    pub prev_hash: Hash,
    /// When the segment was created (unix µs), for operators.
    pub created_at: i64,
    /// Bytes of the zstd dictionary that follows the header (from version 4; 0: none,
    /// and the records are stored uncompressed).
    pub dict_len: u32,
    /// CRC-32 of the dictionary's bytes (0 without one).
    pub dict_crc: u32,
}

impl Header {
    /// Encodes the header into its 128 bytes.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10..12].copy_from_slice(&(HEADER_BYTES as u16).to_le_bytes());
        b[12..16].copy_from_slice(&self.id.day.to_u32().to_le_bytes());
        b[16..20].copy_from_slice(&self.id.part.to_le_bytes());
        b[20..28].copy_from_slice(&self.first_seq.to_le_bytes());
        b[28..60].copy_from_slice(&self.prev_hash);
        b[60..68].copy_from_slice(&self.created_at.to_le_bytes());
        b[68..72].copy_from_slice(&self.dict_len.to_le_bytes());
        b[72..76].copy_from_slice(&self.dict_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[0..124]);
        b[124..128].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header: length, magic, CRC, version, reserved bytes.
    pub fn decode(buf: &[u8]) -> Result<Header, FrameError> {
        if buf.len() < HEADER_BYTES {
            return Err(FrameError::Truncated {
                need: HEADER_BYTES,
                have: buf.len(),
            });
        }
        let b = &buf[..HEADER_BYTES];
        if b[0..8] != SEGMENT_MAGIC {
            return Err(FrameError::BadField(
                "magic",
                format!("expected \"STELESEG\", found {:02x?}", &b[0..8]),
            ));
        }
        check_crc(u32_at(b, 124), &[&b[0..124]])?;
        let version = u16::from_le_bytes([b[8], b[9]]);
        if !(FORMAT_VERSION_OLDEST_SUPPORTED..=FORMAT_VERSION).contains(&version) {
            return Err(FrameError::BadField(
                "version",
                format!(
                    "format version {version} is not supported (this build reads \
                     {FORMAT_VERSION_OLDEST_SUPPORTED}..={FORMAT_VERSION})"
                ),
            ));
        }
        let header_len = u16::from_le_bytes([b[10], b[11]]);
        if header_len as usize != HEADER_BYTES {
            return Err(FrameError::BadField(
                "header length",
                format!("{header_len}, expected {HEADER_BYTES}"),
            ));
        }
        let reserved_from = if version >= FORMAT_VERSION_DICT {
            76
        } else {
            68
        };
        if b[reserved_from..124].iter().any(|&x| x != 0) {
            return Err(FrameError::BadField(
                "reserved bytes",
                format!("bytes {reserved_from}..124 must be zero in format version {version}"),
            ));
        }
        let (dict_len, dict_crc) = (u32_at(b, 68), u32_at(b, 72));
        if dict_len as usize > DICT_BYTES_MAX || (dict_len == 0 && dict_crc != 0) {
            return Err(FrameError::BadField(
                "dictionary length",
                format!("{dict_len} (CRC {dict_crc:08x}), at most {DICT_BYTES_MAX}"),
            ));
        }
        let day_raw = u32_at(b, 12);
        let day = Day::from_u32(day_raw).ok_or_else(|| {
            FrameError::BadField("day", format!("{day_raw} is not a YYYYMMDD date"))
        })?;
        Ok(Header {
            version,
            id: SegmentId {
                day,
                part: u32_at(b, 16),
            },
            first_seq: u64_at(b, 20),
            prev_hash: b[28..60].try_into().expect("32 bytes"),
            created_at: u64_at(b, 60) as i64,
            dict_len,
            dict_crc,
        })
    }

    /// Offset of the first record: after the header and the dictionary.
    pub fn records_start(&self) -> usize {
        HEADER_BYTES + self.dict_len as usize
    }

    /// The dictionary's bytes in `bytes` (the file from offset 0), checked
    /// against `dict_crc`; `None` when the segment has none.
    pub fn dictionary<'a>(&self, bytes: &'a [u8]) -> Result<Option<&'a [u8]>, FrameError> {
        if self.dict_len == 0 {
            return Ok(None);
        }
        let dict = bytes
            .get(HEADER_BYTES..self.records_start())
            .ok_or(FrameError::Truncated {
                need: self.records_start(),
                have: bytes.len(),
            })?;
        check_crc(self.dict_crc, &[dict])?;
        Ok(Some(dict))
    }
}

/// The footer that seals a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Number of records in the segment.
    pub count: u64,
    /// Seq of the first record (equals the header's `first_seq`).
    pub first_seq: u64,
    /// Seq of the last record; `first_seq - 1` when the segment is empty.
    pub last_seq: u64,
    /// Chain hash of the last record (the header's `prev_hash` when empty):
    /// the next segment's header must repeat it.
    pub final_hash: Hash,
    /// When the segment was sealed (unix µs), for operators.
    pub sealed_at: i64,
}

impl Footer {
    /// Encodes the footer into its 80 bytes.
    pub fn encode(&self) -> [u8; FOOTER_BYTES] {
        let mut b = [0u8; FOOTER_BYTES];
        b[0..4].copy_from_slice(&FOOTER_MARKER.to_le_bytes());
        b[4..12].copy_from_slice(&FOOTER_MAGIC);
        b[12..20].copy_from_slice(&self.count.to_le_bytes());
        b[20..28].copy_from_slice(&self.first_seq.to_le_bytes());
        b[28..36].copy_from_slice(&self.last_seq.to_le_bytes());
        b[36..68].copy_from_slice(&self.final_hash);
        b[68..76].copy_from_slice(&self.sealed_at.to_le_bytes());
        let crc = crc32fast::hash(&b[0..76]);
        b[76..80].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a footer that starts at `buf[0]`.
    pub fn decode(buf: &[u8]) -> Result<Footer, FrameError> {
        if buf.len() < FOOTER_BYTES {
            return Err(FrameError::Truncated {
                need: FOOTER_BYTES,
                have: buf.len(),
            });
        }
        let b = &buf[..FOOTER_BYTES];
        if u32_at(b, 0) != FOOTER_MARKER || b[4..12] != FOOTER_MAGIC {
            return Err(FrameError::BadField(
                "footer magic",
                format!("{:02x?}", &b[0..12]),
            ));
        }
        check_crc(u32_at(b, 76), &[&b[0..76]])?;
        let footer = Footer {
            count: u64_at(b, 12),
            first_seq: u64_at(b, 20),
            last_seq: u64_at(b, 28),
            final_hash: b[36..68].try_into().expect("32 bytes"),
            sealed_at: u64_at(b, 68) as i64,
        };
        if footer.first_seq.wrapping_add(footer.count).wrapping_sub(1) != footer.last_seq {
            return Err(FrameError::BadField(
                "footer seq range",
                format!(
                    "count {} does not match seqs {}..={}",
                    footer.count, footer.first_seq, footer.last_seq
                ),
            ));
        }
        Ok(footer)
    }
}

/// One decoded frame, borrowing from the segment bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A record: its stored bytes, its chain hash when the frame stores one
    /// (every record before version 6; from it the chain marks and each
    /// write's last record), and its total framed length.
    Record {
        payload: &'a [u8],
        chain: Option<&'a Hash>,
        len: usize,
    },
    /// The footer: the segment is sealed and nothing may follow.
    Footer(Footer),
}

/// Whether record `index` (from 0) of a segment of format `version` must
/// store its chain hash: every record before version 6, from it the chain
/// marks at every [`CHAIN_MARK_EVERY`]th index. (From version 6 any other
/// record may store it too: the writer marks the last record of each write,
/// [`mark_frame`].)
pub fn stores_chain(version: u16, index: u64) -> bool {
    version < FORMAT_VERSION_CHAIN_MARKS || index % CHAIN_MARK_EVERY == 0
}

/// The smallest record frame of format `version`: a one-byte payload with its
/// length and CRC, and before version 6 its chain hash.
pub fn record_frame_bytes_min(version: u16) -> usize {
    if version < FORMAT_VERSION_CHAIN_MARKS {
        RECORD_OVERHEAD_BYTES + 1
    } else {
        RECORD_FRAME_BYTES_MIN
    }
}

/// Makes the record frame at `buf[at..]`, the last thing in `buf`, of a
/// segment of format `version`, store its chain hash `chain` (bit 31 of its
/// length, the hash after its stored bytes, the CRC over both), unless it
/// stores it already (a chain mark, or any frame before version 6).
pub fn mark_frame(buf: &mut Vec<u8>, at: usize, version: u16, chain: &Hash) {
    let field = u32_at(buf, at);
    if version < FORMAT_VERSION_CHAIN_MARKS || field & CHAIN_MARK_BIT != 0 {
        return;
    }
    debug_assert_eq!(at + RECORD_OVERHEAD_BYTES_MIN + field as usize, buf.len());
    let marked = (field | CHAIN_MARK_BIT).to_le_bytes();
    buf[at..at + 4].copy_from_slice(&marked);
    buf.extend_from_slice(chain);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&marked);
    crc.update(&buf[at + 8..]);
    buf[at + 4..at + 8].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// The length of the record frame whose first four bytes are `head`, in a
/// segment of format `version`, from its length field alone (no CRC check):
/// what a walk over lengths needs. A footer's marker is a [`FrameError::BadLength`].
pub fn frame_len(head: [u8; 4], version: u16) -> Result<usize, FrameError> {
    let field = u32::from_le_bytes(head);
    let (len, chain) = if version >= FORMAT_VERSION_CHAIN_MARKS && field != FOOTER_MARKER {
        (field & !CHAIN_MARK_BIT, field & CHAIN_MARK_BIT != 0)
    } else {
        (field, true)
    };
    if len == 0 || len as usize > RECORD_PAYLOAD_BYTES_MAX {
        return Err(FrameError::BadLength(len));
    }
    let chain = if chain { HASH_BYTES } else { 0 };
    Ok(RECORD_OVERHEAD_BYTES_MIN + len as usize + chain)
}

/// Decodes the frame that starts at `buf[0]` in a segment of format
/// `version`, checking its CRC.
pub fn decode_frame(buf: &[u8], version: u16) -> Result<Frame<'_>, FrameError> {
    if buf.len() < 4 {
        return Err(FrameError::Truncated {
            need: 4,
            have: buf.len(),
        });
    }
    if u32_at(buf, 0) == FOOTER_MARKER {
        return Footer::decode(buf).map(Frame::Footer);
    }
    let total = frame_len(buf[0..4].try_into().expect("4 bytes"), version)?;
    if buf.len() < total {
        return Err(FrameError::Truncated {
            need: total,
            have: buf.len(),
        });
    }
    // frame_len counted the chain when the frame has one.
    let has_chain = version < FORMAT_VERSION_CHAIN_MARKS || u32_at(buf, 0) & CHAIN_MARK_BIT != 0;
    let stored_end = if has_chain { total - HASH_BYTES } else { total };
    let payload = &buf[8..stored_end];
    let chain: Option<&Hash> =
        (stored_end < total).then(|| buf[stored_end..total].try_into().expect("32 bytes"));
    check_crc(
        u32_at(buf, 4),
        &[&buf[0..4], payload, chain.map_or(&[][..], |c| &c[..])],
    )?;
    Ok(Frame::Record {
        payload,
        chain,
        len: total,
    })
}

/// The chain hash of a record: `SHA-256(prev ++ payload)`. `payload` may come
/// in pieces (the writer encodes the seq prefix separately).
pub fn chain_hash(prev: &Hash, payload: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    for p in payload {
        h.update(p);
    }
    h.finalize().into()
}

/// Appends the frame of record `index` (from 0) of a segment of format
/// `version` for `payload` (given in pieces) to `out` and returns its chain
/// hash.
pub fn encode_record(
    out: &mut Vec<u8>,
    version: u16,
    index: u64,
    prev: &Hash,
    payload: &[&[u8]],
) -> Hash {
    encode_record_stored(out, version, index, prev, payload, payload)
}

/// Appends the frame of record `index` of a segment of format `version`
/// storing `stored` (given in pieces: the payload, or its compressed form)
/// whose chain hash is over `payload`, and returns the chain hash. The frame
/// holds the hash when [`stores_chain`] says so.
pub fn encode_record_stored(
    out: &mut Vec<u8>,
    version: u16,
    index: u64,
    prev: &Hash,
    stored: &[&[u8]],
    payload: &[&[u8]],
) -> Hash {
    let len: usize = stored.iter().map(|p| p.len()).sum();
    debug_assert!(len > 0 && len <= RECORD_PAYLOAD_BYTES_MAX);
    let keep = stores_chain(version, index);
    let mark = if keep && version >= FORMAT_VERSION_CHAIN_MARKS {
        CHAIN_MARK_BIT
    } else {
        0
    };
    let len_bytes = (len as u32 | mark).to_le_bytes();
    let chain = chain_hash(prev, payload);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len_bytes);
    for p in stored {
        crc.update(p);
    }
    if keep {
        crc.update(&chain);
    }
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    for p in stored {
        out.extend_from_slice(p);
    }
    if keep {
        out.extend_from_slice(&chain);
    }
    chain
}

fn check_crc(stored: u32, parts: &[&[u8]]) -> Result<(), FrameError> {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    let computed = h.finalize();
    if stored == computed {
        Ok(())
    } else {
        Err(FrameError::CrcMismatch { stored, computed })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Hex form of a hash, for reports and receipts.
pub fn hash_hex(h: &Hash) -> String {
    hex::encode(h)
}

#[cfg(test)]
mod tests;
