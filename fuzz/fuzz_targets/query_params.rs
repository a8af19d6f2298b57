//! The query-string parser of the listing routes (see stele::fuzzing::query_params).
//! The property lives in the library so `tests/it/fuzz_corpus.rs` replays this
//! target's corpus on the stable toolchain.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stele::fuzzing::query_params(data));
