//! `stele verify`: the offline check of segment files.
//!
//! Owns the answer to "is this log intact?", for a live data directory, a
//! backup copy, or single files. It reads files only (never writes) and checks
//! everything the format promises: every header, every record's length and
//! CRC, every payload's full decode, seq continuity, the hash chain inside and
//! across segments, every footer, that only the last segment is unsealed, and
//! that the segments directory holds nothing else.
//!
//! Directories are checked as one log (a missing middle segment breaks the
//! seq range and the chain, and is reported). Files named one by one are each
//! checked alone, since they need not be neighbours.
//!
//! A data directory's signed daily digests (`DATA_DIR/digests/`) are checked
//! too, by [`crate::digest::verify_chain`]: with the auditor's public keys
//! when given ([`Options`]), else only structurally.

use crate::log::format::{hash_hex, Header, SegmentId, HEADER_BYTES};
use crate::log::segment::{scan, Depth, ProblemKind};
use crate::log::TORN_WINDOW_BYTES;
use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong (or worth saying) about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// Byte offset in the file, when the finding is about bytes.
    pub offset: Option<u64>,
    /// The seq expected there, when known.
    pub seq: Option<u64>,
    /// What is wrong, in a sentence.
    pub what: String,
    /// False for notes that do not make the log damaged (a torn tail that
    /// recovery will truncate).
    pub fatal: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(o) = self.offset {
            write!(f, ": offset {o}")?;
        }
        if let Some(s) = self.seq {
            write!(f, " (seq {s})")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// What one segment file holds, when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The file.
    pub path: PathBuf,
    /// Its header.
    pub first_seq: u64,
    /// Good records.
    pub count: u64,
    /// Whether a valid footer ends it.
    pub sealed: bool,
    /// Chain hash of its last good record.
    pub last_hash: String,
    /// Size of the file.
    pub bytes: u64,
    /// SHA-256 of the whole file, when sealed and its data directory has
    /// digests.
    pub sha256: Option<String>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every segment read, in the order checked.
    pub segments: Vec<SegmentSummary>,
    /// Problems and notes.
    pub findings: Vec<Finding>,
    /// The digest chain of each data directory checked.
    pub digests: Vec<crate::digest::ChainSummary>,
    /// Each checkpoint the log matched, in a sentence.
    pub checkpoints: Vec<String>,
}

/// What to check beyond the segments.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Public keys the digests must be signed with (`--public-key`); empty:
    /// signatures are checked only against the keys the digests name.
    pub public_keys: Vec<crate::digest::VerifyingKey>,
    /// Checkpoints saved off the box (`--checkpoint FILE`): the log must
    /// hold each one's seq with exactly its chain hash.
    pub checkpoints: Vec<(PathBuf, crate::seal::checkpoint::Checkpoint)>,
}

impl Report {
    /// True when no fatal finding was made.
    pub fn intact(&self) -> bool {
        !self.findings.iter().any(|f| f.fatal)
    }

    /// Total good records.
    pub fn events(&self) -> u64 {
        self.segments.iter().map(|s| s.count).sum()
    }

    fn problem(&mut self, path: &Path, offset: Option<u64>, seq: Option<u64>, what: String) {
        self.findings.push(Finding {
            path: path.to_path_buf(),
            offset,
            seq,
            what,
            fatal: true,
        });
    }
}

/// Verifies each path: a data directory (holding `segments/`), a segments
/// directory, or a segment file. Only I/O errors on the paths themselves
/// (missing, unreadable) are returned as `Err`; everything about content is
/// in the report.
pub fn verify_paths(paths: &[PathBuf]) -> std::io::Result<Report> {
    verify_paths_with(paths, &Options::default())
}

/// [`verify_paths`], with the digests of data directories checked against
/// `opts.public_keys`.
pub fn verify_paths_with(paths: &[PathBuf], opts: &Options) -> std::io::Result<Report> {
    let mut report = Report::default();
    for p in paths {
        let meta = std::fs::metadata(p)?;
        if meta.is_dir() && p.join("segments").is_dir() {
            let from = report.segments.len();
            let hash = p.join(crate::digest::DIGESTS_DIR).is_dir();
            let (acked, evidence) = crate::seal::acknowledged_through(p, None);
            let acked = Acked {
                seq: acked,
                evidence,
            };
            verify_segments_dir(&p.join("segments"), hash, &acked, &mut report)?;
            let segments = report.segments[from..].to_vec();
            check_acked(&p.join("segments"), &segments, &acked, &mut report);
            crate::digest::verify_chain(p, &segments, &opts.public_keys, &mut report);
            crate::seal::verify::check_checkpoints(p, &segments, opts, &mut report);
            continue;
        }
        if !opts.checkpoints.is_empty() {
            report.problem(
                p,
                None,
                None,
                "a checkpoint was given, but checkpoints are checked only for data directories \
                 (holding segments/)"
                    .into(),
            );
        }
        if !opts.public_keys.is_empty() {
            report.problem(
                p,
                None,
                None,
                "a public key was given, but digests are checked only for data directories \
                 (holding segments/ and digests/)"
                    .into(),
            );
        }
        if meta.is_dir() {
            verify_dir(p, &mut report)?;
        } else {
            verify_file(p, None, true, false, &Acked::default(), &mut report)?;
        }
    }
    Ok(report)
}

/// What a data directory's own evidence says was acknowledged.
#[derive(Debug, Clone, Default)]
struct Acked {
    /// The highest acknowledged seq (0: no evidence).
    seq: u64,
    /// Where that evidence is.
    evidence: String,
}

/// A log that ends before what its evidence shows was acknowledged has lost
/// acknowledged events (cut or deleted): never a crash.
fn check_acked(dir: &Path, segments: &[SegmentSummary], acked: &Acked, report: &mut Report) {
    let end = segments.last().map_or(0, |s| s.first_seq + s.count - 1);
    if acked.seq > end {
        let path = segments
            .last()
            .map_or(dir.to_path_buf(), |s| s.path.clone());
        report.problem(
            &path,
            None,
            Some(end + 1),
            format!(
                "the log ends at seq {end}, but {} shows seqs through {} were acknowledged: \
                 acknowledged events were removed (the newest records or segments were cut or \
                 deleted)",
                acked.evidence, acked.seq
            ),
        );
    }
}

/// Verifies a segments directory as one log.
pub fn verify_dir(dir: &Path, report: &mut Report) -> std::io::Result<()> {
    verify_segments_dir(dir, false, &Acked::default(), report)
}

/// [`verify_dir`], also hashing each file (SHA-256) when `hash`. A torn
/// tail at or below `acked.seq` is damage, not a torn write.
fn verify_segments_dir(
    dir: &Path,
    hash: bool,
    acked: &Acked,
    report: &mut Report,
) -> std::io::Result<()> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str().and_then(SegmentId::parse_file_name) {
            Some(id) if entry.file_type()?.is_file() => files.push((id, entry.path())),
            _ => report.problem(
                &entry.path(),
                None,
                None,
                "not a segment file: Stele only writes YYYY-MM-DD.N.seg files here".into(),
            ),
        }
    }
    files.sort();
    if files.is_empty() {
        report.findings.push(Finding {
            path: dir.to_path_buf(),
            offset: None,
            seq: None,
            what: "no segment files (an empty log)".into(),
            fatal: false,
        });
    }
    // Segments are checked in parallel (each on its own); the links between
    // them (seq continuity, previous hash) are checked after, in order.
    let n = files.len();
    type Checked = std::io::Result<(Option<(u64, [u8; 32])>, Report)>;
    let results: Vec<std::sync::Mutex<Option<Checked>>> =
        (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .clamp(1, 4)
        .min(n.max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((_, path)) = files.get(i) else {
                    return;
                };
                let mut own = Report::default();
                let r =
                    verify_file(path, None, i + 1 == n, hash, acked, &mut own).map(|e| (e, own));
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    let mut prev: Option<(u64, [u8; 32])> = None;
    for (i, (_, path)) in files.iter().enumerate() {
        let last = i + 1 == n;
        let checked = results[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("every segment was checked");
        let (end, own) = checked?;
        if let Some(p) = prev {
            let mut head = [0u8; HEADER_BYTES];
            let read = std::fs::File::open(path)
                .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0));
            if let (Ok(()), Ok(header)) = (read, Header::decode(&head)) {
                check_link(path, &header, p, report);
            }
        }
        report.segments.extend(own.segments);
        report.findings.extend(own.findings);
        prev = end;
        if !last
            && report
                .segments
                .last()
                .is_some_and(|s| s.path == *path && !s.sealed)
        {
            report.problem(
                path,
                None,
                None,
                "only the last segment may be unsealed, but this one has no valid footer".into(),
            );
        }
    }
    Ok(())
}

/// The link between a segment and the one before it: seq continuity and
/// the previous hash in its header.
fn check_link(path: &Path, header: &Header, prev: (u64, [u8; 32]), report: &mut Report) {
    let (next_seq, hash) = prev;
    if header.first_seq != next_seq {
        report.problem(
            path,
            Some(0),
            Some(next_seq),
            format!(
                "the segment starts at seq {} but the previous one ends before seq {next_seq}: \
                     {}",
                header.first_seq,
                if header.first_seq > next_seq {
                    "events are missing (a segment was removed?)"
                } else {
                    "seqs overlap"
                }
            ),
        );
    } else if header.prev_hash != hash {
        report.problem(
            path,
            Some(0),
            Some(next_seq),
            "the header's previous hash is not the previous segment's final hash \
                 (the chain is broken between segments)"
                .into(),
        );
    }
}

/// Verifies one segment file. `prev` is the (next seq, final hash) of the
/// segment before it, when checking a directory. Returns this segment's.
fn verify_file(
    path: &Path,
    prev: Option<(u64, [u8; 32])>,
    last: bool,
    hash: bool,
    acked: &Acked,
    report: &mut Report,
) -> std::io::Result<Option<(u64, [u8; 32])>> {
    // Mapped, not read into memory: several segments are checked at once
    // and each may be 512 MiB. Stele only appends to segments after
    // recovery, so a mapping never loses pages under us (truncating a file
    // while verify runs is outside the contract, as for the daemon's
    // readers).
    let file = std::fs::File::open(path)?;
    let map;
    let bytes: &[u8] = if file.metadata()?.len() == 0 {
        &[]
    } else {
        // SAFETY: read-only mapping of a file nobody truncates while we
        // hold it (see above).
        map = unsafe { memmap2::Mmap::map(&file)? };
        &map
    };
    Ok(check_segment(path, bytes, prev, last, hash, acked, report))
}

/// Verifies the bytes of one segment file (named `path` in findings): what
/// `stele verify FILE` does after reading it. `last` allows a torn tail and
/// a missing footer (the active segment). Returns the (next seq, final hash)
/// the segment ends at, or `None` when its header is unreadable. Public for
/// the fuzz target, which drives it with files that differ from valid ones.
pub fn verify_segment_bytes(
    path: &Path,
    bytes: &[u8],
    last: bool,
    report: &mut Report,
) -> Option<(u64, [u8; 32])> {
    check_segment(path, bytes, None, last, false, &Acked::default(), report)
}

fn check_segment(
    path: &Path,
    bytes: &[u8],
    prev: Option<(u64, [u8; 32])>,
    last: bool,
    hash: bool,
    acked: &Acked,
    report: &mut Report,
) -> Option<(u64, [u8; 32])> {
    let header = match Header::decode(bytes) {
        Ok(h) => h,
        Err(e) => {
            report.problem(path, Some(0), None, format!("bad header: {e}"));
            return None;
        }
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if SegmentId::parse_file_name(name) != Some(header.id) {
        report.problem(
            path,
            Some(0),
            None,
            format!(
                "the header says segment {}, the file is named {name:?}",
                header.id
            ),
        );
    }
    if let Some(p) = prev {
        check_link(path, &header, p, report);
    }
    let s = scan(
        bytes,
        &header,
        Depth::Full,
        if last { TORN_WINDOW_BYTES } else { 0 },
    );
    if let Some(p) = &s.problem {
        match p.kind {
            ProblemKind::TornTail if last && p.seq <= acked.seq => report.problem(
                path,
                Some(p.offset),
                Some(p.seq),
                format!(
                    "{}: damage inside the acknowledged range ({} shows seqs through {} were \
                     acknowledged), not a torn write",
                    p.detail, acked.evidence, acked.seq
                ),
            ),
            ProblemKind::TornTail if last => report.findings.push(Finding {
                path: path.to_path_buf(),
                offset: Some(p.offset),
                seq: Some(p.seq),
                what: format!(
                    "torn tail of {} bytes ({}); recovery truncates it: it is beyond every \
                     acknowledged seq the data directory's evidence shows",
                    bytes.len() as u64 - p.offset,
                    p.detail
                ),
                fatal: false,
            }),
            _ => report.problem(path, Some(p.offset), Some(p.seq), p.detail.clone()),
        }
    }
    report.segments.push(SegmentSummary {
        path: path.to_path_buf(),
        first_seq: header.first_seq,
        count: s.count,
        sealed: s.footer.is_some(),
        last_hash: hash_hex(&s.last_hash),
        bytes: bytes.len() as u64,
        sha256: (hash && s.footer.is_some()).then(|| crate::backup::sha256_hex(bytes)),
    });
    Some((header.first_seq + s.count, s.last_hash))
}
