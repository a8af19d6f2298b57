//! The seal: what keeps the history tamper-evident against someone who can
//! write the data directory but does not hold the signing key.
//!
//! | piece | module | signs or checks |
//! |---|---|---|
//! | checkpoints | [`checkpoint`] | the chain head, every interval while events arrive, from the writer's memory; sent to the witnesses too |
//! | inherited data | [`inherited`] | at start: what an earlier process wrote after the digests, against its last signed checkpoint |
//! | daily digests | [`digest`] | closed days, from what the writer witnessed or [`inherited`] verified, never from files alone |
//! | scrubbing | [`scrub`] | every sealed segment, in the background, against its digest or witnessed hash |
//! | acknowledged evidence | [`acknowledged_through`] | how far recovery must find the log intact |
//!
//! Owns [`SealStatus`] (what `/readyz` and `/metrics` report) and [`Seal`],
//! the threads `stele serve` runs. Never writes a segment.

pub mod checkpoint;
pub mod digest;
pub mod inherited;
pub mod scrub;
pub mod worker;

use crate::log::format::SegmentId;
use crate::log::Log;
use crate::seal::digest::SegmentEntry;
use checkpoint::{Checkpoint, Checkpointer, DirWitness, Witness};
use ed25519_dalek::{SigningKey, VerifyingKey};
use inherited::Inherited;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[seal]` as the threads use it.
#[derive(Debug, Clone)]
pub struct SealConfig {
    /// Interval between checkpoints.
    pub checkpoint_interval: Duration,
    /// The witness directory, if any.
    pub witness_dir: Option<PathBuf>,
    /// Interval between scrub passes.
    pub scrub_interval: Duration,
    /// Scrub read rate, bytes a second.
    pub scrub_bytes_per_sec: u64,
}

/// The highest seq that durable evidence outside the segments shows was
/// acknowledged, and where that evidence is: the newest checkpoint (local or
/// witness; an unsigned or foreign one counts too, since it can only make
/// recovery stricter), the newest digest, the text index's last commit.
pub fn acknowledged_through(data_dir: &Path, witness_dir: Option<&Path>) -> (u64, String) {
    let mut best = (0u64, String::from("none"));
    let mut consider = |seq: u64, what: String| {
        if seq > best.0 {
            best = (seq, what);
        }
    };
    if let Some(Ok(cp)) = checkpoint::read_local(data_dir) {
        consider(
            cp.seq,
            format!("the checkpoint in {}", crate::datadir::CHECKPOINT_FILE),
        );
    }
    if let Some(w) = witness_dir {
        let w = DirWitness::new(w.to_path_buf());
        if let Ok(Some(cp)) = w.latest() {
            consider(cp.seq, format!("the {}", w.describe()));
        }
    }
    if let Some(last) = crate::seal::digest::newest_digest_last_seq(data_dir) {
        consider(last, "the newest daily digest".into());
    }
    if let Some(seq) = crate::index::committed_seq(data_dir) {
        consider(seq, "the text index's last commit".into());
    }
    best
}

/// `cfg` with [`LogConfig::acked_through`](crate::log::LogConfig) set from
/// [`acknowledged_through`], saying so in the log when there is evidence.
pub fn with_evidence(
    mut cfg: crate::log::LogConfig,
    data_dir: &Path,
    witness_dir: Option<&Path>,
) -> crate::log::LogConfig {
    let (seq, from) = acknowledged_through(data_dir, witness_dir);
    if seq > 0 {
        tracing::info!("Acknowledged through seq {seq} (evidence: {from}).");
    }
    cfg.acked_through = seq;
    cfg
}

/// The newest checkpoint that `key` signed, from `DATA_DIR/checkpoint.json`
/// and the witness; what is wrong with the others, in sentences.
pub fn trusted_checkpoint(
    data_dir: &Path,
    witness_dir: Option<&Path>,
    key: &VerifyingKey,
) -> (Option<Checkpoint>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    match checkpoint::read_local(data_dir) {
        Some(Ok(cp)) => found.push((cp, crate::datadir::CHECKPOINT_FILE.to_string())),
        Some(Err(e)) => problems.push(e),
        None => {}
    }
    if let Some(w) = witness_dir {
        let w = DirWitness::new(w.to_path_buf());
        match w.latest() {
            Ok(Some(cp)) => found.push((cp, w.describe())),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    let mut best: Option<Checkpoint> = None;
    for (cp, from) in found {
        match cp.verify(std::slice::from_ref(key)) {
            Ok(()) => {
                if best.as_ref().is_none_or(|b| cp.seq > b.seq) {
                    best = Some(cp);
                }
            }
            Err(e) => problems.push(format!("{from}: {e}")),
        }
    }
    (best, problems)
}

/// How `stele sign-days` vouches for what no running Stele witnessed.
#[derive(Debug, Clone)]
pub enum Vouch {
    /// Checkpoints signed with the key (saved off the box): the newest one
    /// inside the log must match the chain.
    Checkpoints(Vec<Checkpoint>),
    /// The operator's word, for every closed day through `through`: the
    /// chain is still checked from the signed anchor, and each digest so
    /// signed says it was vouched for.
    Operator {
        /// The last day to sign.
        through: crate::log::format::Day,
    },
    /// The operator's word for everything up to the log's head: every closed
    /// day is signed (vouched), and a checkpoint of the head is written to
    /// `DATA_DIR/checkpoint.json`, so the next start verifies the open day
    /// against it and checkpoints resume.
    Head,
}

/// `stele sign-days`: checks what follows the newest digest against `how`
/// and signs the closed days that then verify.
///
/// # Errors
/// A sentence: no usable checkpoint, the chain contradicts it, the day is
/// not closed and sealed, a digest cannot be written.
pub fn sign_days(
    data_dir: &Path,
    log: &Log,
    key: &SigningKey,
    now_micros: i64,
    how: Vouch,
) -> Result<crate::seal::digest::DigestRun, String> {
    let public = key.verifying_key();
    let anchor = crate::seal::digest::anchor(data_dir, &public).map_err(|e| e.to_string())?;
    let head = log.head().seq;
    let inherited = match how {
        Vouch::Checkpoints(cps) => {
            let cp = cps
                .into_iter()
                .filter(|cp| cp.seq <= head && cp.verify(std::slice::from_ref(&public)).is_ok())
                .max_by_key(|cp| cp.seq)
                .ok_or(
                    "no given checkpoint is signed by the signing key and within the log \
                     (the log ends at seq {head})",
                )?;
            inherited::verify_inherited(log, anchor, Some(&cp))
        }
        Vouch::Head => {
            let h = log.head();
            if h.seq == 0 {
                return Err("the log is empty: nothing to vouch for".into());
            }
            let cp = Checkpoint::sign(key, h, now_micros);
            let segs = log.segments();
            let from = anchor.map_or(segs.first().map_or(1, |s| s.first_seq), |a| a.0 + 1);
            let mut i = inherited::verify_inherited(log, anchor, Some(&cp));
            if i.forged || i.verified_through < h.seq {
                return Err(i
                    .problem
                    .unwrap_or_else(|| "the chain does not hold".into()));
            }
            i.vouched = Some(format!(
                "seqs {from} to {} were not witnessed by a running Stele; an operator vouched \
                 for them with `stele sign-days --vouch-head` at {}",
                h.seq,
                crate::event::format_micros(now_micros)
            ));
            let run =
                crate::seal::digest::write_witnessed_digests(data_dir, log, key, now_micros, &i)
                    .map_err(|e| e.to_string())?;
            checkpoint::write_local(data_dir, &cp)?;
            return Ok(run);
        }
        Vouch::Operator { through } => {
            let segs = log.segments();
            let last = segs
                .iter()
                .rfind(|s| s.id.day == through)
                .ok_or(format!("the log has no segment of {through}"))?;
            if !last.sealed || segs.iter().all(|s| s.id.day <= through) {
                return Err(format!(
                    "{through} is not closed yet (a later day must have begun): only closed \
                     days are signed"
                ));
            }
            let footer = read_footer(&last.path)?;
            let cp = Checkpoint::sign(
                key,
                crate::log::ChainHead {
                    seq: footer.last_seq,
                    hash: footer.final_hash,
                },
                now_micros,
            );
            let from = anchor.map_or(segs.first().map_or(1, |s| s.first_seq), |a| a.0 + 1);
            let mut i = inherited::verify_inherited(log, anchor, Some(&cp));
            i.vouched = Some(format!(
                "seqs {from} to {} were not witnessed by a running Stele; an operator vouched \
                 for them with `stele sign-days --vouch-through {through}` at {}",
                footer.last_seq,
                crate::event::format_micros(now_micros)
            ));
            i
        }
    };
    if inherited.forged || inherited.verified_through <= anchor.map_or(0, |a| a.0) {
        return Err(inherited
            .problem
            .unwrap_or_else(|| "nothing after the newest digest could be verified".into()));
    }
    crate::seal::digest::write_witnessed_digests(data_dir, log, key, now_micros, &inherited)
        .map_err(|e| e.to_string())
}

fn read_footer(path: &Path) -> Result<crate::log::format::Footer, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let tail = bytes
        .len()
        .checked_sub(crate::log::format::FOOTER_BYTES)
        .ok_or(format!("{} is too short to be sealed", path.display()))?;
    crate::log::format::Footer::decode(&bytes[tail..])
        .map_err(|e| format!("{}: bad footer: {e}", path.display()))
}

/// What the seal knows now, for `/readyz`, `/metrics` and the scrubber.
#[derive(Debug, Default)]
pub struct SealStatus {
    /// The scrubber's counters.
    pub scrub: scrub::ScrubStats,
    inherited: Mutex<Option<Inherited>>,
    /// Closed days that are not signed and cannot be: `(day, why)`.
    unsigned: Mutex<Vec<(String, String)>>,
    /// Checkpoints found at start that do not verify, in sentences.
    checkpoint_problems: Mutex<Vec<String>>,
    /// Segment entries of digests signed with the trusted key.
    signed: Mutex<Vec<SegmentEntry>>,
    /// Why the digester's last run failed, if it did.
    digest_error: Mutex<Option<String>>,
    /// Digester runs finished (successful or not).
    pub digester_runs: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SealStatus {
    /// Records the outcome of the start-up verification.
    pub fn set_inherited(&self, i: Inherited) {
        if let Some(p) = &i.problem {
            tracing::error!("Start-up verification: {p}.");
        }
        if let Some(n) = &i.note {
            tracing::warn!("Start-up verification: {n}.");
        }
        *lock(&self.inherited) = Some(i);
    }

    /// Whether the checkpointer may sign: the start-up verification ran and
    /// verified every record this process inherited (`opened`: the head at
    /// open). Signing a head chained on unverified records would vouch for
    /// them.
    pub fn may_checkpoint(&self, opened: u64) -> bool {
        lock(&self.inherited)
            .as_ref()
            .is_some_and(|i| !i.forged && i.verified_through >= opened)
    }

    /// Whether the start-up verification has run.
    pub fn started_check_done(&self) -> bool {
        lock(&self.inherited).is_some()
    }

    /// Seqs verified through (by digest or checkpoint).
    pub fn verified_through(&self) -> u64 {
        lock(&self.inherited)
            .as_ref()
            .map_or(0, |i| i.verified_through)
    }

    /// What the start-up verification could not verify, if anything.
    pub fn inherited_problem(&self) -> Option<String> {
        lock(&self.inherited)
            .as_ref()
            .and_then(|i| i.problem.clone())
    }

    /// Whether the start-up verification found the log contradicting a
    /// signed checkpoint.
    pub fn forged(&self) -> bool {
        lock(&self.inherited).as_ref().is_some_and(|i| i.forged)
    }

    /// The inherited segments verified at start.
    pub fn inherited_entries(&self) -> BTreeMap<SegmentId, SegmentEntry> {
        lock(&self.inherited)
            .as_ref()
            .map(|i| i.entries.clone())
            .unwrap_or_default()
    }

    /// Sets the closed days that could not be signed.
    pub fn set_unsigned(&self, days: Vec<(String, String)>) {
        *lock(&self.unsigned) = days;
    }

    /// Closed days that are not signed: `(day, why)`.
    pub fn unsigned(&self) -> Vec<(String, String)> {
        lock(&self.unsigned).clone()
    }

    /// Records checkpoints that did not verify at start.
    pub fn set_checkpoint_problems(&self, p: Vec<String>) {
        for e in &p {
            tracing::error!("A checkpoint does not verify with the signing key: {e}.");
        }
        *lock(&self.checkpoint_problems) = p;
    }

    /// Checkpoints that did not verify at start.
    pub fn checkpoint_problems(&self) -> Vec<String> {
        lock(&self.checkpoint_problems).clone()
    }

    /// Records the outcome of a digester run (`None`: it worked).
    pub fn set_digest_error(&self, e: Option<String>) {
        *lock(&self.digest_error) = e;
        self.digester_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// Why the digester's last run failed, if it did.
    pub fn digest_error(&self) -> Option<String> {
        lock(&self.digest_error).clone()
    }

    /// Sets the entries of the trusted digests.
    pub fn set_signed_entries(&self, e: Vec<SegmentEntry>) {
        *lock(&self.signed) = e;
    }

    /// The entries of the digests signed with the trusted key.
    pub fn signed_entries(&self) -> Vec<SegmentEntry> {
        lock(&self.signed).clone()
    }

    /// Sentences for `/readyz`'s degraded state; empty when all is well.
    pub fn problems(&self, log: &Log) -> Vec<String> {
        let mut out = Vec::new();
        for (name, why) in log.damaged_segments() {
            out.push(format!("segment {name} is damaged: {why}"));
        }
        for (day, why) in self.unsigned() {
            out.push(format!("day {day} is not signed: {why}"));
        }
        out.extend(self.checkpoint_problems());
        if let Some(e) = self.digest_error() {
            out.push(format!("the daily digests cannot be signed: {e}"));
        }
        if let Some(p) = self.inherited_problem() {
            out.push(p);
        }
        out
    }
}

/// The seal's threads in `stele serve`: the checkpointer, the digester
/// (which runs the start-up verification first) and the scrubber.
pub struct Seal {
    checkpointer: Option<Checkpointer>,
    digester: crate::seal::digest::Digester,
    scrubber: scrub::Scrubber,
    status: Arc<SealStatus>,
}

impl Seal {
    /// Starts the threads. Without a signing key there are no checkpoints
    /// and no digests; the scrubber still checks what this process seals
    /// and the structure of the rest.
    pub fn start(
        data_dir: &Path,
        log: Arc<Log>,
        clock: Arc<dyn crate::clock::Clock>,
        key: Option<SigningKey>,
        cfg: &SealConfig,
    ) -> Seal {
        let status = Arc::new(SealStatus::default());
        let mut checkpointer = None;
        let prior = match &key {
            Some(k) => {
                let (cp, problems) =
                    trusted_checkpoint(data_dir, cfg.witness_dir.as_deref(), &k.verifying_key());
                status.set_checkpoint_problems(problems);
                let witnesses: Vec<Box<dyn Witness>> = cfg
                    .witness_dir
                    .iter()
                    .map(|d| Box::new(DirWitness::new(d.clone())) as Box<dyn Witness>)
                    .collect();
                checkpointer = Some(Checkpointer::start(
                    data_dir.to_path_buf(),
                    log.clone(),
                    clock.clone(),
                    k.clone(),
                    witnesses,
                    cfg.checkpoint_interval,
                    status.clone(),
                ));
                cp
            }
            None => {
                status.set_inherited(Inherited::none(0));
                None
            }
        };
        let digester = crate::seal::digest::Digester::start(
            data_dir.to_path_buf(),
            log.clone(),
            clock,
            key,
            crate::seal::digest::PERIOD_DEFAULT,
            prior,
            status.clone(),
        );
        let scrubber = scrub::Scrubber::start(
            log,
            status.clone(),
            cfg.scrub_interval,
            cfg.scrub_bytes_per_sec,
        );
        Seal {
            checkpointer,
            digester,
            scrubber,
            status,
        }
    }

    /// What the seal knows now.
    pub fn status(&self) -> Arc<SealStatus> {
        self.status.clone()
    }

    /// The digester's counters.
    pub fn digest_stats(&self) -> Arc<crate::seal::digest::DigestStats> {
        self.digester.stats()
    }

    /// The checkpointer's counters (none without a key).
    pub fn checkpoint_stats(&self) -> Option<Arc<checkpoint::CheckpointStats>> {
        self.checkpointer.as_ref().map(|c| c.stats())
    }

    /// Stops every thread; the checkpointer signs the head a last time.
    pub fn stop(self) {
        if let Some(c) = self.stop_but_checkpointer() {
            c.stop();
        }
    }

    /// Stops the scrubber and the digester, and hands back the checkpointer
    /// (if any): a clean shutdown stops it last, once every append (audit
    /// records of the last requests included) is durable, so its final
    /// checkpoint covers the whole log.
    pub fn stop_but_checkpointer(self) -> Option<Checkpointer> {
        self.scrubber.stop();
        self.digester.stop();
        self.checkpointer
    }
}
