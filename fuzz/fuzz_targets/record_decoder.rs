//! The record frame decoder over arbitrary bytes (see stele::fuzzing::record_decoder).
//! The property lives in the library so `tests/it/fuzz_corpus.rs` replays this
//! target's corpus on the stable toolchain.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stele::fuzzing::record_decoder(data));
