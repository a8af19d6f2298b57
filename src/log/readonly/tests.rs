use super::*;
use crate::clock::ManualClock;
use crate::event::Provenance;
use crate::log::{Log, LogConfig};
use crate::testkit::EventGen;
use std::collections::BTreeMap;

/// Every file under `dir` with its length, mode and modification time: what
/// a read-only open must leave exactly as it found.
fn files(dir: &Path) -> BTreeMap<PathBuf, (u64, u32, std::time::SystemTime)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            out.insert(
                e.path(),
                (m.len(), m.permissions().mode(), m.modified().unwrap()),
            );
        }
    }
    out
}

fn small_log(dir: &Path, batches: usize) -> Log {
    let clock = Arc::new(ManualClock::new(crate::testkit::DEFAULT_BASE_TIME));
    let cfg = LogConfig {
        segment_bytes_max: 4096,
        ..LogConfig::default()
    };
    let log = Log::open(dir, cfg, clock).unwrap();
    let mut gen = EventGen::new(3);
    for _ in 0..batches {
        let batch: Vec<_> = (0..3).map(|_| gen.sized(400)).collect();
        log.append(&batch, &Provenance::cli()).unwrap();
    }
    log
}

#[test]
fn reads_what_a_running_writer_holds_without_its_lock_or_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 12);
    assert!(log.segments().len() > 2, "rotation paths run");
    let before = files(dir.path());
    let ro = ReadOnly::open(dir.path()).unwrap();
    assert_eq!(files(dir.path()), before, "nothing created or changed");
    assert_eq!((ro.first_seq(), ro.last_seq()), (1, log.last_seq()));
    assert_eq!(ro.head(), log.head());
    for dir_ in [Direction::Forward, Direction::Backward] {
        let mine: Vec<_> = ro.range(.., dir_).map(|e| e.unwrap()).collect();
        let theirs: Vec<_> = log.range(.., dir_).map(|e| e.unwrap()).collect();
        assert_eq!(mine, theirs);
    }
    assert_eq!(ro.get(5).unwrap(), log.get(5).unwrap());
    // The writer goes on; the snapshot stays what it was.
    let mut gen = EventGen::new(4);
    log.append(&[gen.next_event()], &Provenance::cli()).unwrap();
    assert_eq!(ro.iter().count() as u64 + 1, log.last_seq());
    assert_eq!(
        ReadOnly::open(dir.path()).unwrap().last_seq(),
        log.last_seq()
    );
}

#[test]
fn a_torn_tail_of_the_last_segment_ends_the_snapshot_and_stays_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 2);
    let last = log.last_seq();
    let active = log.segments().last().unwrap().path.clone();
    drop(log);
    // Half a record: a length, a bit of payload, then nothing.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 9, 9, 9]).unwrap();
    drop(f);
    let before = files(dir.path());
    let ro = ReadOnly::open(dir.path()).unwrap();
    assert_eq!(ro.last_seq(), last);
    assert_eq!(ro.iter().count() as u64, last);
    assert_eq!(files(dir.path()), before, "the torn tail is left alone");
}

#[test]
fn an_unsealed_segment_before_the_last_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 12);
    let first = log.segments()[0].path.clone();
    drop(log);
    let len = std::fs::metadata(&first).unwrap().len();
    let mut perm = std::fs::metadata(&first).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&first, perm).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap();
    f.set_len(len - 1).unwrap();
    let err = ReadOnly::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Corruption { path, .. } if *path == first),
        "{err}"
    );
}

#[test]
fn a_directory_without_segments_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = ReadOnly::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("segments"), "{err}");
    assert!(!dir.path().join("segments").exists(), "nothing created");
    assert!(!dir.path().join("LOCK").exists());
}

#[test]
fn an_empty_log_is_an_empty_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    drop(small_log(dir.path(), 0));
    let ro = ReadOnly::open(dir.path()).unwrap();
    assert_eq!(ro.last_seq(), ro.first_seq() - 1);
    assert!(ro.iter().next().is_none());
}
