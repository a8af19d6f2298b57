//! Replays every committed fuzz corpus through its target's property
//! (`stele::fuzzing`), on the stable toolchain: CI checks the corpora and
//! every regression input the campaigns left, without open-ended fuzzing.
//! Fuzzing itself: `cd fuzz && cargo +nightly fuzz run TARGET` (README.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_corpus_replays_without_breaking_a_property() {
    let mut failures = Vec::new();
    for (target, property) in stele::fuzzing::TARGETS {
        let files = corpus(target);
        assert!(
            files.len() >= 10,
            "fuzz/corpus/{target} holds {} inputs",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).expect("a corpus file reads");
            if catch_unwind(AssertUnwindSafe(|| property(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "properties broken by: {failures:#?}");
    // The text target's index lives only as long as the process, in memory
    // maps: nothing of it is left in the temporary directory.
    let dir = std::env::temp_dir().join(format!("stele-fuzz-text-{}", std::process::id()));
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[test]
fn every_fuzz_target_has_a_corpus_and_a_cargo_fuzz_binary() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .expect("fuzz/Cargo.toml");
    for (target, _) in stele::fuzzing::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml lacks the {target} binary"
        );
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&source).expect("the target's source");
        assert!(
            text.contains(&format!("stele::fuzzing::{target}(data)")),
            "{} does not call stele::fuzzing::{target}",
            source.display()
        );
    }
}
