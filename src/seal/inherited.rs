//! What this process inherited from the one before it: the segments after
//! the newest signed digest, which an earlier process wrote (and maybe
//! sealed) while no running Stele can vouch for what happened to the files
//! since. They count as witnessed only once they verify against that
//! process's last signed checkpoint.
//!
//! Owns [`verify_inherited`]: from a trusted anchor (the newest digest's
//! final chain hash, or the first segment's header), recompute the chain of
//! every record up to the checkpoint's seq and compare it with the signed
//! chain hash. A match proves every byte the chain covers (payloads and the
//! anchor) is what the earlier process wrote; sealed segments wholly inside
//! the verified range are then described (SHA-256 of the bytes just
//! verified) so the digester can sign their days. Never writes anything but
//! damage marks on the log's views.

use super::checkpoint::Checkpoint;
use crate::log::format::{chain_hash, decode_frame, hash_hex, Frame, Hash, Header, SegmentId};
use crate::log::segment::SegmentFile;
use crate::log::Log;
use crate::seal::digest::SegmentEntry;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The outcome of [`verify_inherited`].
#[derive(Debug, Clone, Default)]
pub struct Inherited {
    /// Every seq up to this one is verified: signed by a digest, or matched
    /// by the chain against a signed checkpoint.
    pub verified_through: u64,
    /// Sealed segments verified that way, described for the digester.
    pub entries: BTreeMap<SegmentId, SegmentEntry>,
    /// Why some inherited records could not be verified, if any did not.
    pub problem: Option<String>,
    /// True when the chain contradicts the signed checkpoint: records were
    /// changed while no process watched (the segments are marked damaged).
    pub forged: bool,
    /// Something worth saying that is not a problem (the crash window).
    pub note: Option<String>,
    /// Set when the checkpoint is an operator's word (`stele sign-days
    /// --vouch-through`) rather than one a running Stele signed: digests
    /// signed from these entries say so.
    pub vouched: Option<String>,
}

impl Inherited {
    /// Nothing inherited is verified beyond `through` (the digests' end).
    pub fn none(through: u64) -> Inherited {
        Inherited {
            verified_through: through,
            ..Inherited::default()
        }
    }
}

/// Verifies what the log holds after the digests (`anchor`: the newest
/// digest's last seq and final chain hash) against `prior`, the newest
/// checkpoint signed by the earlier process (already checked with the
/// trusted key). Marks segments damaged when the chain breaks or
/// contradicts the checkpoint.
pub fn verify_inherited(
    log: &Log,
    anchor: Option<(u64, Hash)>,
    prior: Option<&Checkpoint>,
) -> Inherited {
    let segs = log.segments();
    let anchor_seq = anchor.map_or(segs.first().map_or(0, |s| s.first_seq - 1), |a| a.0);
    let mut out = Inherited::none(anchor_seq);
    let inherited_records = log.head().seq > anchor_seq;
    let Some(cp) = prior else {
        if inherited_records {
            out.problem = Some(format!(
                "no checkpoint signed by the trusted key was found (DATA_DIR/checkpoint.json or \
                 the witness): the records after seq {anchor_seq} were written by an earlier \
                 process and cannot be verified, so the days they belong to are not signed"
            ));
        }
        return out;
    };
    // Where the signed evidence ends: the checkpoint, or the digests when
    // they reach further.
    let target = cp.seq.max(anchor_seq);
    let mut running: Option<Hash> = anchor.map(|a| a.1);
    let mut walked: Vec<SegmentId> = Vec::new();
    let mut pending: Vec<(SegmentId, SegmentEntry)> = Vec::new();
    // Walk every inherited record: up to the checkpoint they must match it,
    // after it (a crashed process's last interval) the chain must hold.
    let opened = log.opened_head().seq;
    let mut walked_to = anchor_seq;
    for info in segs
        .iter()
        .filter(|s| s.first_seq + s.count > anchor_seq + 1 || s.count == 0)
        // Evicted only once signed and archived: before any anchor.
        .filter(|s| !s.evicted)
    {
        if info.first_seq > opened.max(target) {
            break;
        }
        if info.first_seq <= anchor_seq && info.count > 0 {
            continue;
        }
        let fail = |what: String| format!("{}: {what}", info.id.file_name());
        let map = match SegmentFile::open(&info.path) {
            Ok(m) if m.len() as u64 >= info.bytes => m,
            Ok(m) => {
                let why = fail(format!(
                    "holds {} bytes, the log knows {}",
                    m.len(),
                    info.bytes
                ));
                damage(log, &[info.id], why, &mut out);
                return out;
            }
            Err(e) => {
                out.problem = Some(fail(format!("cannot be read to verify it: {e}")));
                return out;
            }
        };
        let bytes = &map[..info.bytes as usize];
        walked.push(info.id);
        let header = match Header::decode(bytes) {
            Ok(h) => h,
            Err(e) => {
                damage(
                    log,
                    &walked[walked.len() - 1..],
                    fail(format!("bad header: {e}")),
                    &mut out,
                );
                return out;
            }
        };
        let mut prev = *running.get_or_insert(header.prev_hash);
        if header.prev_hash != prev {
            let why = fail("its header does not continue the verified chain".into());
            damage(log, &walked[walked.len() - 1..], why, &mut out);
            return out;
        }
        let dict = match crate::log::dict::of_segment(&header, bytes) {
            Ok(d) => d,
            Err(e) => {
                damage(log, &walked[walked.len() - 1..], fail(e), &mut out);
                return out;
            }
        };
        let mut scratch = Vec::new();
        let mut off = header.records_start();
        let mut seq = header.first_seq;
        let mut sealed = false;
        while off < bytes.len() {
            match decode_frame(&bytes[off..], header.version) {
                Ok(Frame::Record {
                    payload,
                    chain,
                    len,
                }) => {
                    let payload = match crate::log::dict::payload(
                        dict.as_ref(),
                        &header,
                        payload,
                        &mut scratch,
                    ) {
                        Ok(p) => p,
                        Err(e) => {
                            let why = fail(format!("the record of seq {seq} at offset {off}: {e}"));
                            damage(log, &walked[walked.len() - 1..], why, &mut out);
                            return out;
                        }
                    };
                    let computed = chain_hash(&prev, &[payload]);
                    if chain.is_some_and(|c| *c != computed) {
                        let why = fail(format!(
                            "the record of seq {seq} at offset {off} does not follow from the \
                             chain before it"
                        ));
                        damage(log, &walked[walked.len() - 1..], why, &mut out);
                        return out;
                    }
                    prev = computed;
                    if seq == cp.seq && cp.seq > anchor_seq {
                        if computed != cp.chain_hash {
                            let why = format!(
                                "the log does not match the checkpoint signed at {} for seq {}: \
                                 records between seq {} and {} were changed while no Stele \
                                 process was running",
                                crate::event::format_micros(cp.time_micros),
                                cp.seq,
                                anchor_seq + 1,
                                cp.seq
                            );
                            let all = walked.clone();
                            damage(log, &all, why, &mut out);
                            out.forged = true;
                            return out;
                        }
                        out.verified_through = cp.seq;
                    }
                    seq += 1;
                    off += len;
                }
                Ok(Frame::Footer(f)) => {
                    sealed = f.final_hash == prev && f.count == seq - header.first_seq;
                    break;
                }
                Err(e) => {
                    let why = fail(format!("bad frame at offset {off}: {e}"));
                    damage(log, &walked[walked.len() - 1..], why, &mut out);
                    return out;
                }
            }
        }
        running = Some(prev);
        walked_to = seq - 1;
        if sealed {
            pending.push((
                info.id,
                SegmentEntry {
                    name: info.id.file_name(),
                    bytes: bytes.len() as u64,
                    sha256: hex::encode(Sha256::digest(bytes)),
                    first_seq: header.first_seq,
                    last_seq: seq - 1,
                    count: seq - header.first_seq,
                    final_hash: hash_hex(&prev),
                },
            ));
        }
        if seq > opened.max(target) {
            break;
        }
    }
    if out.verified_through < target {
        out.problem = Some(format!(
            "the signed checkpoint covers seq {}, but the log ends at seq {}: acknowledged \
             events are missing",
            cp.seq,
            log.head().seq
        ));
        return out;
    }
    if opened > target && walked_to >= opened {
        // The earlier process stopped without a final checkpoint (killed,
        // power lost): what it acknowledged in its last checkpoint interval
        // follows the verified chain and is accepted (the crash window,
        // README "Security").
        out.note = Some(format!(
            "seqs {} to {opened} were written by the earlier process after its last signed \
             checkpoint (it stopped without a final one, e.g. killed): they follow the verified \
             chain and are accepted, checked by CRC and chain only",
            target + 1
        ));
        out.verified_through = opened;
    }
    for (id, e) in pending {
        if e.last_seq <= out.verified_through {
            out.entries.insert(id, e);
        }
    }
    out
}

fn damage(log: &Log, ids: &[SegmentId], why: String, out: &mut Inherited) {
    for id in ids {
        if log.mark_damaged(*id, why.clone()) {
            tracing::error!("Segment {id} is damaged: {why}. Reads of it fail.");
        }
    }
    out.problem = Some(why);
}
