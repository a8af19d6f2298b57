//! The checkpoint half of `stele verify`: a data directory's log must hold
//! every checkpoint's seq with exactly its signed chain hash.
//!
//! Owns [`check_checkpoints`]. Checkpoints come from `--checkpoint FILE`
//! (saved off the box: the witness's files, a `GET /v1/checkpoint` answer)
//! and from the directory's own `checkpoint.json`. Because the chain hash
//! of seq N commits to every record up to N (and to the anchor before the
//! oldest segment), a match proves nothing up to N was changed, removed,
//! inserted or reordered; a log ending before N lost acknowledged events.
//! A checkpoint kept only in the data directory can be replaced by an older
//! genuine one; one saved elsewhere cannot.

use super::{Finding, Options, Report, SegmentSummary};
use crate::log::format::{chain_hash, decode_frame, hash_hex, Frame, Header};
use crate::seal::checkpoint::{read_local, Checkpoint};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn finding(report: &mut Report, path: &Path, seq: Option<u64>, what: String, fatal: bool) {
    report.findings.push(Finding {
        path: path.to_path_buf(),
        offset: None,
        seq,
        what,
        fatal,
    });
}

/// The chain hashes of records `seqs` of the segment file `path`, recomputed
/// from its header's `prev_hash` over the payloads in one walk (never taken
/// from the frames: a stored hash is what the chain is compared with).
fn chains_at(path: &Path, seqs: &BTreeSet<u64>) -> HashMap<u64, [u8; 32]> {
    let mut out = HashMap::new();
    let Ok(map) = crate::log::segment::SegmentFile::open(path) else {
        return out;
    };
    let Ok(header) = Header::decode(&map) else {
        return out;
    };
    let Ok(dict) = crate::log::dict::of_segment(&header, &map) else {
        return out;
    };
    let mut scratch = Vec::new();
    let last = seqs.last().copied().unwrap_or(0);
    let mut off = header.records_start();
    let mut at = header.first_seq;
    let mut prev = header.prev_hash;
    while off < map.len() && at <= last {
        let Ok(Frame::Record { payload, len, .. }) = decode_frame(&map[off..], header.version)
        else {
            break;
        };
        match crate::log::dict::payload(dict.as_ref(), &header, payload, &mut scratch) {
            Ok(p) => prev = chain_hash(&prev, &[p]),
            Err(_) => break,
        }
        if seqs.contains(&at) {
            out.insert(at, prev);
        }
        at += 1;
        off += len;
    }
    out
}

/// Checks every checkpoint of `opts` and the directory's `checkpoint.json`
/// against `segments` (already verified, in log order).
pub fn check_checkpoints(
    data_dir: &Path,
    segments: &[SegmentSummary],
    opts: &Options,
    report: &mut Report,
) {
    let mut all: Vec<(PathBuf, Checkpoint)> = opts.checkpoints.clone();
    let local = crate::datadir::DataDir::new(data_dir).checkpoint();
    match read_local(data_dir) {
        Some(Ok(cp)) => all.push((local, cp)),
        Some(Err(e)) => finding(report, &local, None, e, true),
        None => {}
    }
    // Every needed record's chain hash, one walk per segment.
    let mut wanted: HashMap<usize, BTreeSet<u64>> = HashMap::new();
    for (_, cp) in &all {
        if let Some(i) = segments
            .iter()
            .position(|s| s.first_seq <= cp.seq && cp.seq < s.first_seq + s.count)
        {
            wanted.entry(i).or_default().insert(cp.seq);
        }
    }
    let mut chains = HashMap::new();
    for (i, seqs) in &wanted {
        chains.extend(chains_at(&segments[*i].path, seqs));
    }
    let first = segments.first().map_or(1, |s| s.first_seq);
    let end = segments.last().map_or(0, |s| s.first_seq + s.count - 1);
    for (path, cp) in all {
        let signed = crate::event::format_micros(cp.time_micros);
        let trusted = if opts.public_keys.is_empty() {
            false
        } else {
            match cp.verify(&opts.public_keys) {
                Ok(()) => true,
                Err(e) => {
                    finding(
                        report,
                        &path,
                        Some(cp.seq),
                        format!("checkpoint: {e}"),
                        true,
                    );
                    continue;
                }
            }
        };
        if cp.seq > end {
            finding(
                report,
                &path,
                Some(cp.seq),
                format!(
                    "the checkpoint signed at {signed} covers seq {}, but the log ends at seq \
                     {end}: acknowledged events were removed (records cut, or whole segments and \
                     days deleted)",
                    cp.seq
                ),
                true,
            );
            continue;
        }
        if cp.seq < first {
            finding(
                report,
                &path,
                Some(cp.seq),
                format!(
                    "the checkpoint signed at {signed} covers seq {}, before the oldest segment \
                     kept (seq {first}): retention dropped what it covers, nothing to compare",
                    cp.seq
                ),
                false,
            );
            continue;
        }
        match chains.get(&cp.seq).copied() {
            Some(h) if h == cp.chain_hash => report.checkpoints.push(format!(
                "checkpoint: seq {} signed at {signed} matches the log ({})",
                cp.seq,
                if trusted {
                    "signature checked with the given public key"
                } else {
                    "signature NOT checked against a trusted key (pass --public-key)"
                }
            )),
            got => finding(
                report,
                &path,
                Some(cp.seq),
                format!(
                    "the log does not match the checkpoint signed at {signed}: the chain hash \
                     of seq {} is {}, the checkpoint says {}: records up to seq {} were \
                     changed, inserted, removed or reordered",
                    cp.seq,
                    got.map_or("unreadable".into(), |h| hash_hex(&h)),
                    hash_hex(&cp.chain_hash),
                    cp.seq
                ),
                true,
            ),
        }
    }
}
