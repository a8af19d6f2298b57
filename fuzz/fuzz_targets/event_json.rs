//! Event JSON validation and its encodings (see stele::fuzzing::event_json).
//! The property lives in the library so `tests/it/fuzz_corpus.rs` replays this
//! target's corpus on the stable toolchain.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stele::fuzzing::event_json(data));
