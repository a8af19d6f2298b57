//! The ingest body splitter: JSON, array or NDJSON (see stele::fuzzing::ndjson_split).
//! The property lives in the library so `tests/it/fuzz_corpus.rs` replays this
//! target's corpus on the stable toolchain.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stele::fuzzing::ndjson_split(data));
