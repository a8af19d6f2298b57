//! Tests of the scanner and the segment view.

use super::*;
use crate::log::format::{encode_record, Day, FORMAT_VERSION, GENESIS_HASH};

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
    let h = header();
    let mut bytes = h.encode().to_vec();
    let mut hash = h.prev_hash;
    let mut ends = vec![bytes.len()];
    let mut gen = crate::testkit::EventGen::new(7);
    for seq in 1..=n {
        let mut payload = Vec::new();
        event::encode_stored_prefix(seq, 1, &mut payload);
        event::encode_event(&gen.next_event(), &mut payload);
        event::encode_provenance(&event::Provenance::cli(), &mut payload);
        hash = encode_record(&mut bytes, &hash, &[&payload]);
        ends.push(bytes.len());
    }
    (bytes, ends)
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
