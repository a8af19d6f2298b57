//! The recovery scanner over a whole arbitrary segment file (see stele::fuzzing::segment_scan).
//! The property lives in the library so `tests/it/fuzz_corpus.rs` replays this
//! target's corpus on the stable toolchain.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stele::fuzzing::segment_scan(data));
