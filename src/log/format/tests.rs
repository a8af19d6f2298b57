//! Tests of the segment format's frames, headers, footers and names.

use super::*;

fn header() -> Header {
    Header {
        version: FORMAT_VERSION,
        id: SegmentId {
            day: Day::from_u32(20261123).unwrap(),
            part: 3,
        },
        first_seq: 42,
        prev_hash: [7u8; 32],
        created_at: 1_763_900_000_000_000,
        dict_len: 0,
        dict_crc: 0,
    }
}

#[test]
fn header_round_trips_and_rejects_every_single_bit_flip() {
    let h = header();
    let bytes = h.encode();
    assert_eq!(Header::decode(&bytes).unwrap(), h);
    for bit in 0..HEADER_BYTES * 8 {
        let mut b = bytes;
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(Header::decode(&b).is_err(), "bit {bit} flip went unnoticed");
    }
    assert!(matches!(
        Header::decode(&bytes[..100]),
        Err(FrameError::Truncated { .. })
    ));
}

#[test]
fn header_rejects_future_version_even_with_valid_crc() {
    let mut h = header();
    h.version = FORMAT_VERSION + 1;
    let err = Header::decode(&h.encode()).unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
}

/// The three frame layouts: a version 5 record, a version 6 chain mark
/// (index 0, 32, ...) and a version 6 record between marks.
const LAYOUTS: [(u16, u64, bool); 4] = [(5, 7, true), (6, 0, true), (6, 64, true), (6, 33, false)];

#[test]
fn record_round_trips_and_reencodes_identically() {
    let prev = [1u8; 32];
    for (version, index, with_chain) in LAYOUTS {
        assert_eq!(stores_chain(version, index), with_chain);
        let mut out = Vec::new();
        let chain = encode_record(&mut out, version, index, &prev, &[b"abc", b"defg"]);
        let overhead = if with_chain {
            RECORD_OVERHEAD_BYTES
        } else {
            RECORD_OVERHEAD_BYTES_MIN
        };
        assert_eq!(out.len(), overhead + 7, "version {version} index {index}");
        assert_eq!(
            frame_len(out[..4].try_into().unwrap(), version),
            Ok(out.len())
        );
        match decode_frame(&out, version).unwrap() {
            Frame::Record {
                payload,
                chain: c,
                len,
            } => {
                assert_eq!(payload, b"abcdefg");
                assert_eq!(c, with_chain.then_some(&chain));
                assert_eq!(len, out.len());
                assert_eq!(chain, chain_hash(&prev, &[b"abcdefg"]));
                let mut again = Vec::new();
                encode_record(&mut again, version, index, &prev, &[payload]);
                assert_eq!(again, out);
            }
            other => panic!("expected a record, got {other:?}"),
        }
    }
}

#[test]
fn marking_a_frame_makes_the_frame_a_mark_would_have() {
    let prev = [3u8; 32];
    let mut plain = vec![9u8; 5];
    let at = plain.len();
    let chain = encode_record(&mut plain, 6, 33, &prev, &[b"abcdefg"]);
    mark_frame(&mut plain, at, 6, &chain);
    let mut mark = vec![9u8; 5];
    encode_record(&mut mark, 6, 32, &prev, &[b"abcdefg"]);
    assert_eq!(plain, mark);
    // A mark stays as it is, and so does a version 5 frame (it stores its hash).
    mark_frame(&mut plain, at, 6, &chain);
    assert_eq!(plain, mark);
    let mut v5 = Vec::new();
    encode_record(&mut v5, 5, 3, &prev, &[b"abcdefg"]);
    let before = v5.clone();
    mark_frame(&mut v5, 0, 5, &chain);
    assert_eq!(v5, before);
    assert_eq!(record_frame_bytes_min(5), 41);
    assert_eq!(record_frame_bytes_min(6), 9);
}

#[test]
fn a_version_6_frame_is_read_only_as_version_6() {
    // A chain mark's length field has bit 31: an impossible length to a
    // reader of version 5; a frame between marks reads to a version 5
    // reader as 32 bytes longer than it is (cut short), or, with more
    // bytes after it, fails its CRC.
    let mut mark = Vec::new();
    encode_record(&mut mark, 6, 0, &GENESIS_HASH, &[&[7u8; 40]]);
    assert!(matches!(
        decode_frame(&mark, 5),
        Err(FrameError::BadLength(_))
    ));
    let mut plain = Vec::new();
    encode_record(&mut plain, 6, 1, &GENESIS_HASH, &[&[7u8; 40]]);
    assert!(matches!(
        decode_frame(&plain, 5),
        Err(FrameError::Truncated { .. })
    ));
    plain.extend_from_slice(&[0u8; 32]);
    assert!(matches!(
        decode_frame(&plain, 5),
        Err(FrameError::CrcMismatch { .. })
    ));
    // And a version 5 frame is never a version 6 one.
    let mut v5 = Vec::new();
    encode_record(&mut v5, 5, 1, &GENESIS_HASH, &[&[7u8; 40]]);
    assert!(decode_frame(&v5, 6).is_err());
}

#[test]
fn record_detects_every_single_bit_flip_and_every_truncation() {
    for (version, index, _) in LAYOUTS {
        let mut out = Vec::new();
        encode_record(&mut out, version, index, &GENESIS_HASH, &[b"payload bytes"]);
        for bit in 0..out.len() * 8 {
            let mut b = out.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_frame(&b, version).is_err(),
                "version {version} index {index}: bit {bit} flip went unnoticed"
            );
        }
        for cut in 0..out.len() {
            assert!(
                decode_frame(&out[..cut], version).is_err(),
                "cut at {cut} decoded"
            );
        }
    }
}

#[test]
fn zero_and_oversized_lengths_are_rejected_before_reading() {
    for version in [5, 6] {
        assert_eq!(
            decode_frame(&[0, 0, 0, 0], version),
            Err(FrameError::BadLength(0))
        );
        let big = (RECORD_PAYLOAD_BYTES_MAX as u32 + 1).to_le_bytes();
        assert!(matches!(
            decode_frame(&big, version),
            Err(FrameError::BadLength(_))
        ));
    }
    let marked_zero = CHAIN_MARK_BIT.to_le_bytes();
    assert_eq!(decode_frame(&marked_zero, 6), Err(FrameError::BadLength(0)));
}

#[test]
fn footer_round_trips_and_is_never_a_record() {
    let f = Footer {
        count: 10,
        first_seq: 5,
        last_seq: 14,
        final_hash: [9u8; 32],
        sealed_at: 123,
    };
    let bytes = f.encode();
    for version in [5, 6] {
        assert_eq!(
            decode_frame(&bytes, version).unwrap(),
            Frame::Footer(f.clone())
        );
    }
    let mut bad = f.clone();
    bad.last_seq = 20;
    assert!(Footer::decode(&bad.encode()).is_err());
    let empty = Footer {
        count: 0,
        first_seq: 5,
        last_seq: 4,
        ..f
    };
    assert_eq!(Footer::decode(&empty.encode()).unwrap(), empty);
}

#[test]
fn file_names_parse_strictly() {
    let id = SegmentId::parse_file_name("2026-11-23.0.seg").unwrap();
    assert_eq!(id.part, 0);
    assert_eq!(id.day.to_u32(), 20261123);
    assert_eq!(
        SegmentId::parse_file_name("2026-11-23.12.seg")
            .unwrap()
            .part,
        12
    );
    for bad in [
        "2026-11-23.seg",
        "2026-11-23.01.seg",
        "2026-13-01.0.seg",
        "2026-1-02.0.seg",
        "2026-11-23.0.seg.tmp",
        "notes.txt",
        "2026-11-23.-1.seg",
        "2026-11-23.99999999999.seg",
    ] {
        assert!(SegmentId::parse_file_name(bad).is_none(), "{bad} parsed");
    }
    assert!(
        SegmentId::parse_file_name("2026-11-23.1.seg").unwrap()
            > SegmentId::parse_file_name("2026-11-23.0.seg").unwrap()
    );
    assert!(
        SegmentId::parse_file_name("2026-11-24.0.seg").unwrap()
            > SegmentId::parse_file_name("2026-11-23.10.seg").unwrap()
    );
}

#[test]
fn day_of_micros_is_utc() {
    // 2026-11-23T23:59:59.999999Z and one microsecond later.
    let last = 1_795_478_399_999_999;
    assert_eq!(Day::from_micros(last).to_string(), "2026-11-23");
    assert_eq!(Day::from_micros(last + 1).to_string(), "2026-11-24");
}
