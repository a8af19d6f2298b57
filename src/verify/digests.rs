//! The digest half of `stele verify`: a data directory's signed daily
//! digests (`DATA_DIR/digests/`, written by [`crate::seal::digest`]) against
//! the segments already verified: each digest's form and signature, the
//! chain between them, every signed segment's size and SHA-256, and the days
//! that have segments but no digest.

use super::{Finding, Report, SegmentSummary};
use crate::datadir::{sha256_hex, DataDir};
use crate::log::format::{hash_hex, Day, Header, SegmentId};
use crate::seal::digest::{
    digest_file_name, is_hex, parse_file_name, parse_public_key_hex, signature_file_name,
    DailyDigest, Kind, Signature, VerifyingKey,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What `stele verify` found about a data directory's digest chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// The `digests/` directory.
    pub dir: PathBuf,
    /// Digests that parsed.
    pub digests: usize,
    /// Day of the oldest and newest of them.
    pub days: Option<(Day, Day)>,
    /// The newest digest's last seq.
    pub last_seq: Option<u64>,
    /// Whether signatures were checked with keys given by the auditor (else
    /// only with the keys the digests name).
    pub keys_given: bool,
}

struct Loaded {
    day: Day,
    path: PathBuf,
    sha256: String,
    signature: Option<String>,
    doc: DailyDigest,
}

fn finding(report: &mut Report, path: &Path, what: String, fatal: bool) {
    report.findings.push(Finding {
        path: path.to_path_buf(),
        offset: None,
        seq: None,
        what,
        fatal,
    });
}

/// Checks `DATA_DIR/digests/` against the segments already verified
/// (`segments`, from this data directory): every digest's form and
/// signature (with `keys` when given), the chain, and that every signed
/// segment is on disk with exactly the signed size and SHA-256 (the
/// summaries must carry `sha256` for sealed segments). Days with segments but
/// no digest are reported too. Adds findings and a [`ChainSummary`].
pub fn verify_chain(
    data_dir: &Path,
    segments: &[SegmentSummary],
    keys: &[VerifyingKey],
    report: &mut Report,
) {
    let dir = DataDir::new(data_dir).digests();
    let mut jsons: BTreeMap<Day, PathBuf> = BTreeMap::new();
    let mut sigs: BTreeMap<Day, PathBuf> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            match parse_file_name(&name) {
                Some((day, Kind::Json)) => {
                    jsons.insert(day, entry.path());
                }
                Some((day, Kind::Sig)) => {
                    sigs.insert(day, entry.path());
                }
                None if name.ends_with(".tmp") => finding(
                    report,
                    &entry.path(),
                    "an interrupted digest write (the daemon rewrites it)".into(),
                    false,
                ),
                None => finding(
                    report,
                    &entry.path(),
                    "not a digest file: Stele only writes YYYY-MM-DD.digest.json and \
                     YYYY-MM-DD.digest.sig here"
                        .into(),
                    false,
                ),
            }
        }
    }

    // Each digest alone: form and signature.
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut signers = BTreeSet::new();
    for (&day, path) in &jsons {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                finding(report, path, format!("cannot read the digest: {e}"), true);
                continue;
            }
        };
        let doc = match DailyDigest::decode(&bytes) {
            Ok(d) => d,
            Err(e) => {
                finding(report, path, format!("day {day}: {e}"), true);
                continue;
            }
        };
        if doc.parsed_day() != Some(day) {
            finding(
                report,
                path,
                format!("the file is named for day {day} but says day {}", doc.day),
                true,
            );
            continue;
        }
        if let Some(v) = &doc.vouched {
            finding(
                report,
                path,
                format!("day {day} was signed on an operator's word, not witnessed: {v}"),
                false,
            );
        }
        let signature = check_signature(day, path, &bytes, &doc, sigs.get(&day), keys, report);
        signers.insert(doc.public_key.clone());
        loaded.push(Loaded {
            day,
            path: path.clone(),
            sha256: sha256_hex(&bytes),
            signature,
            doc,
        });
    }
    for (day, path) in &sigs {
        if !jsons.contains_key(day) {
            finding(
                report,
                path,
                format!(
                    "a signature without its digest {}: an interrupted write, or the digest \
                     was removed",
                    digest_file_name(*day)
                ),
                false,
            );
        }
    }
    if keys.is_empty() && signers.len() > 1 {
        finding(
            report,
            &dir,
            format!(
                "the digests name {} different public keys (a key rotation, or forgery): \
                 pass --public-key to check who signed them",
                signers.len()
            ),
            false,
        );
    }

    // The chain.
    for i in 0..loaded.len() {
        let (d, prev) = (&loaded[i], i.checked_sub(1).map(|j| &loaded[j]));
        check_link(d, prev, report);
    }

    // The signed segments against the disk.
    let on_disk: BTreeMap<SegmentId, &SegmentSummary> = segments
        .iter()
        .filter_map(|s| {
            let name = s.path.file_name()?.to_str()?;
            Some((SegmentId::parse_file_name(name)?, s))
        })
        .collect();
    let oldest = on_disk.values().next().map(|s| s.first_seq);
    let mut prefix = true;
    let seg_dir = DataDir::new(data_dir).segments();
    for d in &loaded {
        check_segments(d, &seg_dir, &on_disk, oldest, &mut prefix, report);
    }
    if let (Some(head), Some((_, anchor))) = (loaded.last(), on_disk.iter().next()) {
        check_anchor(head, &loaded, anchor, report);
    }

    // Days with segments but no digest.
    if !(jsons.is_empty() && keys.is_empty()) {
        let mut days: BTreeMap<Day, usize> = BTreeMap::new();
        for id in on_disk.keys() {
            *days.entry(id.day).or_default() += 1;
        }
        let newest = days.keys().next_back().copied();
        let head = jsons.keys().next_back().copied();
        let missing: Vec<(Day, usize)> = days
            .into_iter()
            .filter(|(day, _)| Some(*day) != newest && !jsons.contains_key(day))
            .collect();
        let newest_closed = missing.last().map(|(d, _)| *d);
        for (day, n) in missing {
            let path = dir.join(digest_file_name(day));
            if Some(day) == newest_closed && head.is_none_or(|h| day > h) {
                finding(
                    report,
                    &path,
                    format!(
                        "day {day} is over but has no digest yet: the daemon signs a day about \
                         a minute after it ends; if this copy was made later than that, its \
                         digest was removed"
                    ),
                    false,
                );
            } else {
                finding(
                    report,
                    &path,
                    format!("day {day} has {n} segments but no signed digest: it was removed"),
                    true,
                );
            }
        }
    }
    report.digests.push(ChainSummary {
        dir,
        digests: loaded.len(),
        days: loaded
            .first()
            .zip(loaded.last())
            .map(|(a, b)| (a.day, b.day)),
        last_seq: loaded.last().map(|d| d.doc.last_seq),
        keys_given: !keys.is_empty(),
    });
}

/// Checks a digest's signature file and signature; returns the signature's
/// hex when the file holds one.
fn check_signature(
    day: Day,
    path: &Path,
    bytes: &[u8],
    doc: &DailyDigest,
    sig_path: Option<&PathBuf>,
    keys: &[VerifyingKey],
    report: &mut Report,
) -> Option<String> {
    let Some(sig_path) = sig_path else {
        finding(
            report,
            path,
            format!(
                "day {day}: no signature file {} (an unsigned digest)",
                signature_file_name(day)
            ),
            true,
        );
        return None;
    };
    let text = match std::fs::read_to_string(sig_path) {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            finding(
                report,
                sig_path,
                format!("cannot read the signature: {e}"),
                true,
            );
            return None;
        }
    };
    let sig = hex::decode(&text)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .filter(|_| is_hex(&text, 128))
        .map(|b| Signature::from_bytes(&b));
    let Some(sig) = sig else {
        finding(
            report,
            sig_path,
            format!("day {day}: the signature file does not hold 128 lower-case hex digits"),
            true,
        );
        return None;
    };
    let named = parse_public_key_hex(&doc.public_key).expect("checked by decode");
    let verdict = if keys.is_empty() {
        named.verify_strict(bytes, &sig).err().map(|_| {
            "the signature does not verify with the key the digest names: the digest \
                       was altered after signing"
                .to_string()
        })
    } else if !keys.contains(&named) {
        Some(format!(
            "signed by key {}, not by the given public key: a forged digest (or one signed \
             with a key you were not given)",
            doc.public_key
        ))
    } else {
        named.verify_strict(bytes, &sig).err().map(|_| {
            "the signature does not verify with the given public key: the digest was altered \
             or forged"
                .to_string()
        })
    };
    if let Some(what) = verdict {
        finding(report, path, format!("day {day}: {what}"), true);
    }
    Some(text)
}

/// Checks that `d` names `prev` (the digest before it in the directory) and
/// continues its seqs and chain hash.
fn check_link(d: &Loaded, prev: Option<&Loaded>, report: &mut Report) {
    let day = d.day;
    match (&d.doc.previous_digest, prev) {
        (None, None) => {}
        (None, Some(p)) => finding(
            report,
            &d.path,
            format!(
                "day {day}: names no previous digest, but the digest of {} precedes it: the \
                 chain was restarted (a forged or misplaced digest)",
                p.day
            ),
            true,
        ),
        (Some(pd), None) => finding(
            report,
            &d.path,
            format!(
                "day {day}: names day {} as its previous digest, which is missing: the oldest \
                 digests were removed",
                pd.day
            ),
            true,
        ),
        (Some(pd), Some(p)) if pd.day != p.day.to_string() => finding(
            report,
            &d.path,
            format!(
                "day {day}: names day {} as its previous digest, which is missing (the one \
                 before it here is {}): a digest was removed",
                pd.day, p.day
            ),
            true,
        ),
        (Some(pd), Some(p)) => {
            if pd.sha256 != p.sha256 {
                finding(
                    report,
                    &d.path,
                    format!(
                        "day {day}: the previous digest ({}) does not have the SHA-256 this \
                         digest names: it was altered or replaced",
                        p.day
                    ),
                    true,
                );
            }
            if p.signature.as_ref().is_some_and(|s| *s != pd.signature) {
                finding(
                    report,
                    &d.path,
                    format!(
                        "day {day}: the previous digest's ({}) signature is not the one this \
                         digest names: it was re-signed",
                        p.day
                    ),
                    true,
                );
            }
        }
    }
    let Some(p) = prev else { return };
    let want = p.doc.last_seq + 1;
    if d.doc.first_seq != want {
        let what = if d.doc.first_seq > want {
            format!(
                "seqs {want}..={} are in no digest (a day was removed)",
                d.doc.first_seq - 1
            )
        } else {
            "the two digests overlap".to_string()
        };
        finding(
            report,
            &d.path,
            format!(
                "day {day}: starts at seq {}, but the previous digest ({}) ends at seq {}: {what}",
                d.doc.first_seq, p.day, p.doc.last_seq
            ),
            true,
        );
    } else if d.doc.prev_hash != p.doc.final_hash() {
        finding(
            report,
            &d.path,
            format!(
                "day {day}: its previous chain hash is not the final hash of the previous \
                 digest ({}): the log's chain is broken between the two days",
                p.day
            ),
            true,
        );
    }
}

/// Checks the segments a digest lists against those on disk. `prefix` stays
/// true while every digest so far has lost all its segments before the
/// oldest one on disk: what retention does.
fn check_segments(
    d: &Loaded,
    seg_dir: &Path,
    on_disk: &BTreeMap<SegmentId, &SegmentSummary>,
    oldest_on_disk: Option<u64>,
    prefix: &mut bool,
    report: &mut Report,
) {
    let day = d.day;
    let mut missing = Vec::new();
    let mut listed = BTreeSet::new();
    for e in &d.doc.segments {
        let id = SegmentId::parse_file_name(&e.name).expect("checked by decode");
        listed.insert(id);
        let Some(s) = on_disk.get(&id) else {
            if seg_dir.join(&e.name).exists() {
                finding(
                    report,
                    &seg_dir.join(&e.name),
                    format!("is signed by the digest of {day} but cannot be read as a segment"),
                    true,
                );
            } else {
                missing.push(e);
            }
            continue;
        };
        if s.bytes != e.bytes {
            finding(
                report,
                &s.path,
                format!(
                    "has {} bytes, the signed digest of {day} says {}: the segment was \
                     truncated or extended",
                    s.bytes, e.bytes
                ),
                true,
            );
        } else if s.sha256.as_deref() != Some(e.sha256.as_str()) {
            finding(
                report,
                &s.path,
                format!(
                    "its SHA-256 is not the one the signed digest of {day} names: the segment \
                     was rewritten"
                ),
                true,
            );
        } else if (s.first_seq, s.count, s.last_hash.as_str())
            != (e.first_seq, e.count, e.final_hash.as_str())
        {
            finding(
                report,
                &s.path,
                format!(
                    "the signed digest of {day} describes this segment's seqs or final hash \
                     wrongly (a digest signed over false content)"
                ),
                true,
            );
        }
    }
    let all_gone = missing.len() == d.doc.segments.len();
    if *prefix && all_gone && oldest_on_disk.is_some_and(|o| d.doc.last_seq < o) {
        finding(
            report,
            &d.path,
            format!(
                "day {day}: its {} segments (seqs {}..={}) are gone: dropped by retention \
                 (see retention.log), or removed; the signed chain still accounts for them",
                d.doc.segments.len(),
                d.doc.first_seq,
                d.doc.last_seq
            ),
            false,
        );
    } else {
        *prefix = false;
        for e in missing {
            finding(
                report,
                &d.path,
                format!(
                    "day {day}: segment {} (seqs {}..={}) is missing: day {day} was removed \
                     or truncated",
                    e.name, e.first_seq, e.last_seq
                ),
                true,
            );
        }
    }
    for (id, s) in on_disk.range(
        SegmentId { day, part: 0 }..=SegmentId {
            day,
            part: u32::MAX,
        },
    ) {
        if !listed.contains(id) {
            finding(
                report,
                &s.path,
                format!(
                    "is not in the signed digest of {day}: it was added after the day was \
                     signed"
                ),
                true,
            );
        }
    }
}

/// When the oldest segment on disk is in no digest (retention dropped every
/// signed day), its header must continue the newest digest.
fn check_anchor(head: &Loaded, loaded: &[Loaded], anchor: &SegmentSummary, report: &mut Report) {
    let name = anchor
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if loaded
        .iter()
        .any(|d| d.doc.segments.iter().any(|s| s.name == name))
        || anchor.first_seq <= head.doc.last_seq
    {
        return;
    }
    let mut buf = [0u8; crate::log::format::HEADER_BYTES];
    let header = std::fs::File::open(&anchor.path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .ok()
        .and_then(|()| Header::decode(&buf).ok());
    let Some(h) = header else { return }; // reported by the segment checks
    if h.first_seq != head.doc.last_seq + 1 || hash_hex(&h.prev_hash) != head.doc.final_hash() {
        finding(
            report,
            &anchor.path,
            format!(
                "the oldest segment does not continue the newest digest ({}, up to seq {}): \
                 the log after the last signed day was replaced",
                head.day, head.doc.last_seq
            ),
            true,
        );
    }
}
