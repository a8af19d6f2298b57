//! The recovery scanner over a whole arbitrary segment file: never panics,
//! and what it reports is self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele::log::format::{Header, HEADER_BYTES};
use stele::log::segment::{scan, Depth};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = Header::decode(data) else { return };
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
});
