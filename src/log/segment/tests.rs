//! Tests of the scanner and the segment view.

use super::*;
use crate::log::format::{
    encode_record, Day, Footer, Hash, CHAIN_MARK_BIT, FORMAT_VERSION, GENESIS_HASH, HASH_BYTES,
};

fn header() -> Header {
    Header {
        version: FORMAT_VERSION,
        id: SegmentId {
            day: Day::from_u32(20261123).unwrap(),
            part: 0,
        },
        first_seq: 1,
        prev_hash: GENESIS_HASH,
        created_at: 0,
        dict_len: 0,
        dict_crc: 0,
    }
}

fn segment(n: u64) -> (Vec<u8>, Vec<usize>) {
    let (bytes, ends, _) = segment_with_hashes(n);
    (bytes, ends)
}

/// A segment of `n` records in this build's format, the offsets where each
/// record ends (after the header's) and each record's chain hash.
fn segment_with_hashes(n: u64) -> (Vec<u8>, Vec<usize>, Vec<Hash>) {
    let h = header();
    let mut bytes = h.encode().to_vec();
    let mut hash = h.prev_hash;
    let mut ends = vec![bytes.len()];
    let mut hashes = Vec::new();
    let mut gen = crate::testkit::EventGen::new(7);
    for seq in 1..=n {
        let mut payload = Vec::new();
        event::encode_stored_prefix(seq, 1, &mut payload);
        event::encode_event(&gen.next_event(), &mut payload);
        event::encode_provenance(&event::Provenance::cli(), &mut payload);
        hash = encode_record(&mut bytes, h.version, seq - 1, &hash, &[&payload]);
        ends.push(bytes.len());
        hashes.push(hash);
    }
    (bytes, ends, hashes)
}

#[test]
fn clean_segment_scans_to_the_end() {
    let (bytes, ends) = segment(40);
    let s = scan(&bytes, &header(), Depth::Full, 1 << 20);
    assert_eq!(s.problem, None);
    assert_eq!(s.count, 40);
    assert_eq!(s.records_end as usize, *ends.last().unwrap());
    assert_eq!(s.sparse, vec![ends[0] as u64, ends[32] as u64]);
}

#[test]
fn every_truncation_is_a_torn_tail_at_the_last_whole_record() {
    let (bytes, ends) = segment(5);
    for cut in HEADER_BYTES..bytes.len() {
        let s = scan(&bytes[..cut], &header(), Depth::Frames, 1 << 20);
        let whole = ends.iter().rev().find(|&&e| e <= cut).copied().unwrap();
        assert_eq!(s.records_end as usize, whole, "cut {cut}");
        if cut == whole {
            assert_eq!(s.problem, None);
        } else {
            assert_eq!(s.problem.unwrap().kind, ProblemKind::TornTail, "cut {cut}");
        }
    }
}

#[test]
fn damage_before_a_valid_record_is_corruption_not_a_torn_tail() {
    let (mut bytes, ends) = segment(5);
    bytes[ends[2] + 10] ^= 0x40;
    let s = scan(&bytes, &header(), Depth::Frames, 1 << 20);
    let p = s.problem.unwrap();
    assert_eq!(p.kind, ProblemKind::Corrupt);
    assert_eq!(p.offset as usize, ends[2]);
    assert_eq!(p.seq, 3);
    // Zero padding after the records is neither.
    let (mut padded, ends) = segment(5);
    padded.extend_from_slice(&[0u8; 5000]);
    let s = scan(&padded, &header(), Depth::Full, 1 << 20);
    assert_eq!((s.problem, s.padding, s.count), (None, 5000, 5));
    assert_eq!(s.records_end as usize, ends[5]);
    // A torn record before the padding is a torn tail of its own length.
    let mut torn = padded[..ends[5]].to_vec();
    torn.extend_from_slice(&[0x11; 30]);
    torn.extend_from_slice(&[0u8; 300]);
    let s = scan(&torn, &header(), Depth::Frames, 1 << 20);
    assert_eq!(s.problem.unwrap().kind, ProblemKind::TornTail);
    assert_eq!(s.padding, 300);
    // The same damage in the last record is indistinguishable from a torn write.
    let (mut bytes, ends) = segment(5);
    bytes[ends[4] + 10] ^= 0x40;
    let p = scan(&bytes, &header(), Depth::Frames, 1 << 20)
        .problem
        .unwrap();
    assert_eq!(p.kind, ProblemKind::TornTail);
}

/// Pins the bound on zero padding (docs/FORMAT.md, "Zero padding"): up to
/// the torn window plus what the zero-filling leaves past the writer's
/// end is padding, one byte more is damage. Before the bound existed any
/// amount of zeros passed.
#[test]
fn zero_padding_is_bounded_by_the_torn_window_and_the_zero_filling() {
    use crate::log::prealloc::{PREALLOC_AHEAD_BYTES, PREALLOC_CHUNK_BYTES};
    assert_eq!(padding_bytes_max(0), 96 * 1024 * 1024);
    assert_eq!(
        padding_bytes_max(0),
        PREALLOC_AHEAD_BYTES + PREALLOC_CHUNK_BYTES
    );
    assert_eq!(
        padding_bytes_max(crate::log::TORN_WINDOW_BYTES),
        160 * 1024 * 1024
    );
    let (mut bytes, ends) = segment(3);
    let window = 4096;
    let max = padding_bytes_max(window) as usize;
    bytes.resize(ends[3] + max + 1, 0);
    let at_bound = scan(&bytes[..ends[3] + max], &header(), Depth::Frames, window);
    assert_eq!(
        (at_bound.problem, at_bound.padding, at_bound.count),
        (None, max as u64, 3)
    );
    let over = scan(&bytes, &header(), Depth::Frames, window);
    let p = over.problem.expect("more zeros than the writer leaves");
    assert_eq!(
        (p.kind, p.offset as usize, p.seq),
        (ProblemKind::Corrupt, ends[3], 4)
    );
    assert!(p.detail.contains("zero bytes end the file"), "{}", p.detail);
    assert_eq!(over.records_end as usize, ends[3]);
    // After a torn tail the same bound holds for the zeros behind it.
    bytes.truncate(ends[3]);
    bytes.extend_from_slice(&[0x11; 30]);
    bytes.resize(ends[3] + 30 + max + 1, 0);
    let torn_over = scan(&bytes, &header(), Depth::Frames, window);
    assert_eq!(torn_over.problem.unwrap().kind, ProblemKind::Corrupt);
    let torn_at = scan(&bytes[..bytes.len() - 1], &header(), Depth::Frames, window);
    assert_eq!(torn_at.problem.unwrap().kind, ProblemKind::TornTail);
}

/// From format 6 only every 32nd record stores its chain hash: a scan at
/// either depth still ends with the last record's hash (hashed forward from
/// the last chain mark at `Frames` depth), wherever the records end.
#[test]
fn a_scan_knows_the_last_records_chain_hash_between_chain_marks() {
    const { assert!(FORMAT_VERSION >= 6) };
    let (bytes, ends, hashes) = segment_with_hashes(70);
    // Only the marks (index 0, 32, 64) carry a hash: 31 of 32 frames are
    // 32 bytes shorter.
    let marked: Vec<usize> = (0..70)
        .filter(|&i| bytes[ends[i] + 3] & (CHAIN_MARK_BIT >> 24) as u8 != 0)
        .collect();
    assert_eq!(marked, vec![0, 32, 64]);
    for n in 0..=70 {
        let cut = &bytes[..ends[n]];
        let want = if n == 0 { GENESIS_HASH } else { hashes[n - 1] };
        for depth in [Depth::Frames, Depth::Full] {
            let s = scan(cut, &header(), depth, 1 << 20);
            assert_eq!((s.problem, s.count), (None, n as u64), "{n} {depth:?}");
            assert_eq!(s.last_hash, want, "{n} records, {depth:?}");
        }
        // A torn record after them: the same hash, recovery appends after it.
        let mut torn = cut.to_vec();
        torn.extend_from_slice(&bytes[ends[n]..ends[n] + 20.min(bytes.len() - ends[n])]);
        if n < 70 {
            let s = scan(&torn, &header(), Depth::Frames, 1 << 20);
            assert_eq!(s.problem.unwrap().kind, ProblemKind::TornTail);
            assert_eq!((s.count, s.last_hash), (n as u64, want));
        }
    }
    // A footer must name the hash the scan computed.
    let mut sealed = bytes.clone();
    let footer = |final_hash| Footer {
        count: 70,
        first_seq: 1,
        last_seq: 70,
        final_hash,
        sealed_at: 1,
    };
    sealed.extend_from_slice(&footer(hashes[69]).encode());
    for depth in [Depth::Frames, Depth::Full] {
        let s = scan(&sealed, &header(), depth, 1 << 20);
        assert_eq!(s.problem, None, "{depth:?}");
        assert!(s.footer.is_some());
    }
    let mut wrong = bytes.clone();
    wrong.extend_from_slice(&footer(hashes[68]).encode());
    let p = scan(&wrong, &header(), Depth::Frames, 1 << 20)
        .problem
        .unwrap();
    assert!(p.detail.contains("final hash"), "{}", p.detail);
}

/// Rewrites the record of index `i` with one payload byte changed and a CRC
/// that matches: what someone who can write the disk can do to one record.
fn forge(bytes: &mut [u8], ends: &[usize], i: usize) {
    let (start, end) = (ends[i], ends[i + 1]);
    let field = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap());
    let chain = if field & CHAIN_MARK_BIT != 0 {
        HASH_BYTES
    } else {
        0
    };
    // A letter inside a run of them: inside a string, so the payload still
    // decodes (ASCII with its low bit flipped is ASCII).
    let at = (start + 8..end - chain - 4)
        .find(|&k| bytes[k..k + 4].iter().all(u8::is_ascii_lowercase))
        .expect("a word in the payload")
        + 1;
    bytes[at] ^= 0x01;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[start..start + 4]);
    crc.update(&bytes[start + 8..end]);
    let crc = crc.finalize().to_le_bytes();
    bytes[start + 4..start + 8].copy_from_slice(&crc);
}

#[test]
fn a_forged_record_between_marks_breaks_the_chain_at_the_next_mark() {
    let (clean, ends, hashes) = segment_with_hashes(70);
    // Record index 5 (seq 6): found at the next mark, index 32 (seq 33); the
    // good records end at the last confirmed hash, index 0's.
    for forged in [5, 32] {
        let mut bytes = clean.clone();
        forge(&mut bytes, &ends, forged);
        let s = scan(&bytes, &header(), Depth::Frames, 1 << 20);
        assert_eq!((s.problem, s.count), (None, 70));
        let s = scan(&bytes, &header(), Depth::Full, 1 << 20);
        let p = s.problem.unwrap();
        assert_eq!(
            (p.kind, p.seq, p.offset as usize),
            (ProblemKind::Corrupt, 2, ends[1])
        );
        assert!(p.detail.contains("stored with seq 33"), "{}", p.detail);
        assert!(p.detail.contains("one of seqs 2..=33"), "{}", p.detail);
        assert_eq!((s.count, s.records_end as usize), (1, ends[1]));
        assert_eq!((s.last_hash, s.sparse.len()), (hashes[0], 1));
    }
    // After the last mark: the footer's final hash, at either depth.
    let mut bytes = clean.clone();
    forge(&mut bytes, &ends, 66);
    bytes.extend_from_slice(
        &Footer {
            count: 70,
            first_seq: 1,
            last_seq: 70,
            final_hash: hashes[69],
            sealed_at: 1,
        }
        .encode(),
    );
    for depth in [Depth::Frames, Depth::Full] {
        let p = scan(&bytes, &header(), depth, 1 << 20).problem.unwrap();
        assert_eq!(p.kind, ProblemKind::Corrupt);
        assert!(p.detail.contains("final hash"), "{}", p.detail);
    }
}

#[test]
fn a_mark_must_store_its_chain_hash_and_any_other_record_may() {
    // Record index 1 stores its hash (as the writer's last record of a write
    // does): the scan takes it at either depth, and a wrong one is caught.
    let (bytes, ends, hashes) = segment_with_hashes(3);
    let with_hash = |hash: &Hash| {
        let mut out = bytes[..ends[2]].to_vec();
        crate::log::format::mark_frame(&mut out, ends[1], FORMAT_VERSION, hash);
        assert_eq!(out.len(), ends[2] + HASH_BYTES);
        out.extend_from_slice(&bytes[ends[2]..]);
        out
    };
    let marked = with_hash(&hashes[1]);
    for depth in [Depth::Frames, Depth::Full] {
        let s = scan(&marked, &header(), depth, 1 << 20);
        assert_eq!(
            (s.problem, s.count, s.last_hash),
            (None, 3, hashes[2]),
            "{depth:?}"
        );
    }
    let wrong = with_hash(&hashes[0]);
    let p = scan(&wrong, &header(), Depth::Full, 1 << 20)
        .problem
        .unwrap();
    assert_eq!((p.seq, p.offset as usize), (2, ends[1]));
    // Record index 32 without its hash: damage at either depth.
    let (bytes, ends) = segment(40);
    let payload = &bytes[ends[32] + 8..ends[33] - HASH_BYTES];
    let mut stripped = bytes[..ends[32]].to_vec();
    encode_record(&mut stripped, FORMAT_VERSION, 33, &GENESIS_HASH, &[payload]);
    stripped.extend_from_slice(&bytes[ends[33]..]);
    for depth in [Depth::Frames, Depth::Full] {
        let s = scan(&stripped, &header(), depth, 1 << 20);
        let p = s.problem.unwrap();
        assert_eq!((p.kind, p.seq), (ProblemKind::Corrupt, 33), "{depth:?}");
        assert!(p.detail.contains("lacks its chain hash"), "{}", p.detail);
        assert_eq!(s.count, 32);
    }
}
