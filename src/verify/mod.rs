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
//! too, by [`digests::verify_chain`]: with the auditor's public keys when
//! given ([`Options`]), else only structurally; and its checkpoints by
//! [`checkpoints::check_checkpoints`].
//!
//! Module map:
//! - `segments`: the segment files: frames, chain, links, the acknowledged
//!   seq.
//! - [`digests`]: the signed daily digest chain against the segments.
//! - [`checkpoints`]: every checkpoint's seq and chain hash against the log.
//!
//! Depends on the seal (digests, checkpoints) to read what it wrote; the
//! seal never depends on this module.

pub mod checkpoints;
pub mod digests;
mod segments;

pub use digests::ChainSummary;
pub use segments::{verify_dir, verify_segment_bytes};

use segments::{check_acked, verify_file, verify_segments_dir, Acked};
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
    pub digests: Vec<ChainSummary>,
    /// Each checkpoint the log matched, in a sentence.
    pub checkpoints: Vec<String>,
}

/// What to check beyond the segments.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Public keys the digests must be signed with (`--public-key`); empty:
    /// signatures are checked only against the keys the digests name.
    pub public_keys: Vec<crate::seal::digest::VerifyingKey>,
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
        let dir = crate::datadir::DataDir::new(p);
        if meta.is_dir() && dir.segments().is_dir() {
            let from = report.segments.len();
            let hash = dir.digests().is_dir();
            let (acked, evidence) = crate::seal::acknowledged_through(p, None);
            let acked = Acked {
                seq: acked,
                evidence,
            };
            verify_segments_dir(&dir.segments(), hash, &acked, &mut report)?;
            let segments = report.segments[from..].to_vec();
            check_acked(&dir.segments(), &segments, &acked, &mut report);
            digests::verify_chain(p, &segments, &opts.public_keys, &mut report);
            checkpoints::check_checkpoints(p, &segments, opts, &mut report);
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
