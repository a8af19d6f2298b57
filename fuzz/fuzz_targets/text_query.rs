//! The full-text query parser, run against a small index (see stele::fuzzing::text_query).
//! The property lives in the library so `tests/it/fuzz_corpus.rs` replays this
//! target's corpus on the stable toolchain.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stele::fuzzing::text_query(data));
