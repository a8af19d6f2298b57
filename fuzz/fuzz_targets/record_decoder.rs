//! The record frame decoder over arbitrary bytes: never panics, and whatever
//! decodes re-encodes to exactly the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele::log::format::{decode_frame, encode_record, Frame, Header, HEADER_BYTES};

fuzz_target!(|data: &[u8]| {
    match decode_frame(data) {
        Ok(Frame::Record { payload, chain, len }) => {
            assert!(len <= data.len());
            // Re-encoding with the stored chain as if it followed from `prev`
            // is not possible (SHA-256), so check the frame bytes instead:
            let mut again = Vec::new();
            again.extend_from_slice(&data[0..8]);
            again.extend_from_slice(payload);
            again.extend_from_slice(chain);
            assert_eq!(&again[..], &data[..len]);
            // And a record encoded from this payload decodes to it.
            let mut fresh = Vec::new();
            encode_record(&mut fresh, chain, &[payload]);
            match decode_frame(&fresh) {
                Ok(Frame::Record { payload: p, .. }) => assert_eq!(p, payload),
                other => panic!("fresh record did not decode: {other:?}"),
            }
            let _ = stele::event::decode_stored(payload);
        }
        Ok(Frame::Footer(f)) => {
            assert_eq!(&f.encode()[..], &data[..80]);
        }
        Err(_) => {}
    }
    if let Ok(h) = Header::decode(data) {
        assert_eq!(&h.encode()[..], &data[..HEADER_BYTES]);
    }
});
