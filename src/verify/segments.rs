//! The segment half of `stele verify`: every segment file's frames, payloads
//! and chain, the links between neighbours, and that a log reaches the seq
//! its evidence shows was acknowledged.

use super::{Finding, Report, SegmentSummary};
use crate::log::format::{hash_hex, Header, SegmentId, HEADER_BYTES};
use crate::log::segment::{scan, Depth, ProblemKind, SegmentFile};
use crate::log::TORN_WINDOW_BYTES;
use std::path::Path;

/// What a data directory's own evidence says was acknowledged.
#[derive(Debug, Clone, Default)]
pub(super) struct Acked {
    /// The highest acknowledged seq (0: no evidence).
    pub(super) seq: u64,
    /// Where that evidence is.
    pub(super) evidence: String,
}

/// A log that ends before what its evidence shows was acknowledged has lost
/// acknowledged events (cut or deleted): never a crash.
pub(super) fn check_acked(
    dir: &Path,
    segments: &[SegmentSummary],
    acked: &Acked,
    report: &mut Report,
) {
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
pub(super) fn verify_segments_dir(
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
    // Evicted segments (log/evicted.rs) are stubs: header and footer only.
    let evicted = match dir.parent() {
        Some(d) => crate::log::evicted::Evicted::load(d).unwrap_or_else(|e| {
            report.problem(dir, None, None, e);
            Default::default()
        }),
        None => Default::default(),
    };
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
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let r = match evicted.get(name) {
                    Some(e) if i + 1 < n => verify_stub(path, e, &mut own).map(|e| (e, own)),
                    _ => {
                        verify_file(path, None, i + 1 == n, hash, acked, &mut own).map(|e| (e, own))
                    }
                };
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

/// Checks the stub of an evicted segment (its header and footer, which
/// must agree); its records are in the archive, checked by `stele verify
/// s3://…`. Returns the (next seq, final hash) it ends at.
fn verify_stub(
    path: &Path,
    entry: &crate::log::evicted::Entry,
    report: &mut Report,
) -> std::io::Result<Option<(u64, [u8; 32])>> {
    use crate::log::format::Footer;
    let decoded = crate::log::evicted::read_ends(path)
        .map_err(|e| e.to_string())
        .and_then(|(head, foot, len)| {
            let header = Header::decode(&head).map_err(|e| format!("header: {e}"))?;
            let footer = Footer::decode(&foot).map_err(|e| format!("footer: {e}"))?;
            Ok((header, footer, len))
        });
    let (header, footer, len) = match decoded {
        Ok(hfl) => hfl,
        Err(e) => {
            report.problem(
                path,
                None,
                None,
                format!("an evicted segment's stub is damaged: {e}"),
            );
            return Ok(None);
        }
    };
    if footer.first_seq != header.first_seq || len != entry.bytes {
        report.problem(
            path,
            None,
            Some(header.first_seq),
            format!(
                "an evicted segment's stub does not agree with itself or evicted.json \
                 (header first seq {}, footer {}; {len} bytes, evicted.json says {})",
                header.first_seq, footer.first_seq, entry.bytes
            ),
        );
        return Ok(None);
    }
    report.segments.push(SegmentSummary {
        path: path.to_path_buf(),
        first_seq: header.first_seq,
        count: footer.count,
        sealed: true,
        last_hash: hash_hex(&footer.final_hash),
        bytes: len,
        sha256: Some(entry.sha256.clone()),
    });
    report.findings.push(Finding {
        path: path.to_path_buf(),
        offset: None,
        seq: Some(header.first_seq),
        what: "evicted: its records are in the archive only (`stele verify s3://…` checks them)"
            .into(),
        fatal: false,
    });
    Ok(Some((footer.last_seq + 1, footer.final_hash)))
}

/// Verifies one segment file. `prev` is the (next seq, final hash) of the
/// segment before it, when checking a directory. Returns this segment's.
pub(super) fn verify_file(
    path: &Path,
    prev: Option<(u64, [u8; 32])>,
    last: bool,
    hash: bool,
    acked: &Acked,
    report: &mut Report,
) -> std::io::Result<Option<(u64, [u8; 32])>> {
    // Sealed segments are mapped, not read into memory: several are checked
    // at once and each may be 512 MiB, and nothing changes them. The last one
    // may be the active segment of a running daemon, whose zero padding is
    // truncated when it is sealed: mapped, that would be SIGBUS, so it is
    // read into memory (what is checked is then exactly what was read).
    let file = if last {
        SegmentFile::read(path)?
    } else {
        SegmentFile::open(path)?
    };
    Ok(check_segment(
        path,
        file.bytes(),
        prev,
        last,
        hash,
        acked,
        report,
    ))
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
        sha256: (hash && s.footer.is_some()).then(|| crate::datadir::sha256_hex(bytes)),
    });
    Some((header.first_seq + s.count, s.last_hash))
}
