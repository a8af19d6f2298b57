//! Indexes deleted, replaced by garbage or killed half-way through a reindex:
//! rebuilt from the log with the same answers, and `stele check` clean.

use super::*;

#[test]
fn deleted_indexes_are_rebuilt_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 20 * DAY));
    let mut gen = EventGen::new(5);
    {
        let log = open(dir.path(), &clock, 64 * 1024);
        for _ in 0..20 {
            log.append(&events(&mut gen, 25, 400), &stele::event::Provenance::cli())
                .unwrap();
        }
    }
    let queries = [
        Filter::default(),
        Filter {
            min_severity: Some(Severity::Warning),
            ..Filter::default()
        },
        Filter {
            text: Some("error".into()),
            ..Filter::default()
        },
    ];
    let answers = |e: &Engine| -> Vec<Vec<u64>> {
        queries
            .iter()
            .map(|f| walk(e, f, (Sort::Time, Order::Desc), 33))
            .collect()
    };
    let first = {
        let e = engine(dir.path(), &clock);
        answers(&e)
    };
    for victim in ["index/kv", "index/text", "index"] {
        std::fs::remove_dir_all(dir.path().join(victim)).unwrap();
        let e = engine(dir.path(), &clock);
        assert_eq!(answers(&e), first, "after deleting {victim}");
        assert_eq!(
            e.indexes().open_report().behind_by,
            500,
            "after deleting {victim}"
        );
    }
    // Garbage in the index directory: rebuilt, same answers.
    std::fs::remove_dir_all(dir.path().join("index/text")).unwrap();
    std::fs::create_dir_all(dir.path().join("index/text")).unwrap();
    std::fs::write(dir.path().join("index/text/meta.json"), b"{not json").unwrap();
    let e = engine(dir.path(), &clock);
    assert_eq!(answers(&e), first);
    assert!(!e.indexes().open_report().rebuilt.is_empty());
}

#[test]
fn killing_a_reindex_half_way_leaves_indexes_that_check_clean_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(BEFORE_MIDNIGHT - 2 * DAY));
    let mut gen = EventGen::new(6);
    {
        let log = open(dir.path(), &clock, 1 << 20);
        for _ in 0..60 {
            log.append(
                &events(&mut gen, 250, 400),
                &stele::event::Provenance::cli(),
            )
            .unwrap();
        }
    }
    for round in 0..3 {
        let mut child = stele()
            .args(["reindex", "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + 400 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let out = stele()
            .args(["check", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
