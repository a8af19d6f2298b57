//! Packed runs: the keys of older events, in immutable run files.
//!
//! A key per event in a B-tree costs far more than its 22 bytes: sled 0.34, which
//! held them until formats 6–7, measured 174 bytes per event on disk and ≈ 70 bytes
//! of heap per event once touched (10.6M keys: 332 MB at open, 746 MB after a full
//! read, with a 64 MiB cache). So the keys of events older than the newest
//! ≈ [`RUN_EVENTS`] are moved, a generation ([`super::gens`]) at a time, into a run
//! file of sorted keys ([`super::runfile`]: 16 bytes a key, 1.25 of Bloom filter,
//! 0.09 of fences):
//!
//! ```text
//! index/kv/runs/<first seq, 20 digits>.run    one run: seqs first..=last
//! meta  "packed_through"                      u64 BE: every seq up to it is in a run
//! ```
//!
//! A run covers the seqs `first..=last` and holds exactly the keys of those seqs: those
//! of one closed generation, or of [`MERGE_RUNS`] consecutive ones once merged. Packing
//! is done by the one writer after an apply ([`KvIndex::pack_step`]): (1) the oldest
//! generation, once closed, is written in key order to `<name>.tmp`; (2) the file is
//! made durable under its name, then `packed_through` is set to its last seq, which is
//! what commits it; (3) the generation is dropped. A run is committed if and only if
//! its first seq is at or below `packed_through`: open removes any other run file and
//! every `.tmp` (a crash in (1) or (2)). Once the newest [`MERGE_RUNS`] runs each hold
//! one generation, a step merges them into one run under the first one's name
//! (`KvIndex::merge_step`: durable `.tmp`, renamed over the first run's file, then
//! the others removed; open removes a run that lies within the one before it, what a
//! crash between the rename and the removals leaves). So memory holds few keys (≤ 2 ×
//! [`RUN_EVENTS`]) while the runs stay one per 65,536 seqs.
//!
//! Invariants:
//! 1. Every applied key of a seq `<= packed_through` is in exactly one committed run;
//!    every key of a higher seq is in a generation (in memory: after a restart, once
//!    the indexer applied it again).
//! 2. The committed runs do not overlap (on disk, a run merged into another may lie
//!    within it until its file is removed, at the latest at the next open); a run
//!    file's keys are strictly ascending, so a prefix lookup reads one page of 256
//!    keys, or a few consecutive ones.
//! 3. Lookups read committed runs only, and only those whose filter may hold the id.

use super::runfile::{RunFile, RunWriter};
use super::*;
use std::sync::Arc;

pub use super::runfile::PAGE_KEYS;

/// The seqs of a generation: its keys stay in memory until the next generation
/// opens (and every seq below it is applied), then are packed into a run.
/// Generations are aligned: each starts exactly this many seqs after the one before,
/// so a run of one spans exactly this many seqs (its seq offsets fit in 2 bytes). It
/// also bounds what a restart applies again from the log (the generations' seqs).
/// ADR: 262,144 until 2026-12-06, when 65,536 cut `index/kv` at 1,000,000 events of
/// the peer workload from 88 to 49 MB (the generations were sled trees then, and
/// sled's file held what the two newest ever held at once: 64 → 22 MB) at the same
/// ingest rate; 16,384 since 2026-12-07, the runs of four generations merged into one
/// ([`MERGE_RUNS`]), so that the runs stay as few as with 65,536. Runs matter: the
/// workload's client-style ids made every run's key range span everything, so every
/// lookup probed every run's filter (ingest at 10M slowed from 22,371 to 17,878
/// events/s when the runs went from 38 to 152); format 9's hashed bit
/// (`HASHED_ID_BIT`) lets a UUIDv7 id's lookup skip them by range, a client-style
/// id's still probes each.
#[cfg(not(test))]
pub const RUN_EVENTS: u64 = 1 << 14;
/// Small in tests.
#[cfg(test)]
pub const RUN_EVENTS: u64 = 700;

/// Runs of one generation merged into one run, as soon as this many are the newest
/// consecutive runs: a merged run spans `MERGE_RUNS × RUN_EVENTS` seqs (65,536; its
/// offsets still fit in 2 bytes) and is never merged again.
pub const MERGE_RUNS: usize = 4;

// A merged run's seq offsets fit in 2 bytes (`runfile`'s entries of 16 bytes).
#[cfg(not(test))]
const _: () = assert!(MERGE_RUNS as u64 * RUN_EVENTS - 1 <= u16::MAX as u64);

pub(super) const META_PACKED_THROUGH: &[u8] = b"packed_through";

/// A committed run.
pub(super) type Run = Arc<RunFile>;

/// The writer's state: the committed runs and the generations.
#[derive(Debug, Default)]
pub(super) struct Packing {
    /// The committed runs, by `first`.
    pub(super) runs: Vec<Run>,
    /// The generations, oldest first; never empty once the index is open.
    pub(super) gens: Vec<super::gens::Gen>,
}

impl KvIndex {
    /// The directory of the run files.
    pub(super) fn runs_dir(&self) -> PathBuf {
        self.dir.join("runs")
    }

    /// Reads the committed runs and starts the generations after them; removes what a
    /// crash left of a run not committed.
    pub(super) fn load_runs(&self) -> Result<(), KvError> {
        let through = self.packed_through()?;
        let dir = self.runs_dir();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let mut runs = Vec::new();
        let mut removed = false;
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let path = entry.map_err(|e| io(&dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let keep = match runfile::first_of(name) {
                Some(first) if first <= through => {
                    runs.push(Arc::new(RunFile::open(&path)?));
                    true
                }
                // Not committed.
                Some(_) => false,
                // A run file being written; anything else is not ours.
                None => !name.ends_with(".run.tmp"),
            };
            if !keep {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
                removed = true;
            }
        }
        runs.sort_by_key(|r| r.first);
        // A run within the one before it was merged into that one by a merge that a
        // crash stopped before it removed its file.
        let mut kept: Vec<Run> = Vec::with_capacity(runs.len());
        for run in runs {
            match kept.last() {
                Some(prev) if run.last <= prev.last => {
                    let path = self.runs_dir().join(runfile::file_name(run.first));
                    std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
                    removed = true;
                }
                Some(prev) if prev.last >= run.first => {
                    return Err(KvError::Damaged(format!(
                        "runs {} and {} overlap",
                        prev.first, run.first
                    )));
                }
                _ => kept.push(run),
            }
        }
        let runs = kept;
        if removed {
            runfile::sync_dir(&dir)?;
        }
        if let Some(r) = runs.last().filter(|r| r.last > through) {
            return Err(KvError::Damaged(format!(
                "run {} ends at seq {}, above packed_through {through}",
                r.first, r.last
            )));
        }
        let gens = self.load_gens(through)?;
        let mut packing = self.packing();
        packing.runs = runs;
        packing.gens = gens;
        self.publish(&packing);
        Ok(())
    }

    pub(super) fn packing(&self) -> std::sync::MutexGuard<'_, Packing> {
        self.pack.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last seq whose keys are all in runs (0: none).
    pub(super) fn packed_through(&self) -> Result<u64, KvError> {
        Ok(self.get_meta(META_PACKED_THROUGH)?.unwrap_or(0))
    }

    /// Commits the runs through `through` (it only rises): `indexed_seq` as it (`super`
    /// invariant 4), then `packed_through`, then sled flushed, so that a crash loses no
    /// commit and re-reads at most the generations not packed yet. The order fails safe
    /// for a build before 2026-12-07 that opens the index after a crash between the two:
    /// with `indexed_seq` above `packed_through` it finds no key for its applied seq
    /// and rebuilds, where the other order would have it apply packed seqs again.
    fn set_packed_through(&self, through: u64) -> Result<(), KvError> {
        self.store_indexed(through)?;
        self.meta
            .insert(META_PACKED_THROUGH, &through.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Removes a run's file (readers that hold it open keep reading it).
    fn remove_run_file(&self, first: u64) -> Result<(), KvError> {
        let path = self.runs_dir().join(runfile::file_name(first));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path, e)),
            _ => runfile::sync_dir(&self.runs_dir()),
        }
    }

    /// Opens the generations that the seqs `lo ..= hi` of an apply reach (called by
    /// the writer before the apply writes their keys; `lo` is the lowest seq it
    /// writes): each [`RUN_EVENTS`] seqs after the one before, so that every closed
    /// generation spans exactly that many, but never below `lo`: the keys below it
    /// are already in the current generation, or there are none (seqs skipped after
    /// retention: the current generation spans the gap instead of one empty
    /// generation opening per [`RUN_EVENTS`] of it).
    pub(super) fn open_gens_through(
        &self,
        packing: &mut Packing,
        lo: u64,
        hi: u64,
    ) -> Result<(), KvError> {
        let mut opened = false;
        while let Some(next) = packing
            .gens
            .last()
            .map(|g| (g.first + RUN_EVENTS).max(lo))
            .filter(|&next| next <= hi)
        {
            packing.gens.push(super::gens::Gen::new(next));
            opened = true;
        }
        if opened {
            self.publish(packing);
        }
        Ok(())
    }

    /// One step of packing (called by the writer after each apply): merges the
    /// newest [`MERGE_RUNS`] runs of one generation each into one, else packs the
    /// oldest generation into a run if it is closed (a newer one exists and every
    /// seq below that one's first is applied: `indexed` is the highest seq applied),
    /// commits the run and drops the generation. Writes at most one generation's keys
    /// (16 bytes each) or one merge's.
    pub(super) fn pack_step(&self, indexed: u64) -> Result<(), KvError> {
        let mut packing = self.packing();
        if self.merge_step(&mut packing)? {
            return Ok(());
        }
        if packing.gens.len() < 2 || indexed + 1 < packing.gens[1].first {
            return Ok(());
        }
        let (first, last) = (packing.gens[0].first, packing.gens[1].first - 1);
        let dir = self.runs_dir();
        let mut writer = RunWriter::create(&dir, first, last)?;
        for key in packing.gens[0].keys() {
            writer.push(&key)?;
        }
        // Commit: the file made durable, then what names it; lookups then read the
        // run instead of the generation.
        if let Some(run) = writer.finish(&dir)? {
            packing.runs.push(Arc::new(run));
        }
        self.set_packed_through(last)?;
        packing.gens.remove(0);
        self.publish(&packing);
        Ok(())
    }

    /// Merges the newest [`MERGE_RUNS`] runs when each holds one generation (spans at
    /// most [`RUN_EVENTS`] seqs) and they follow one another, into one run under the
    /// first one's name: written to `<name>.tmp`, made durable, renamed over the first
    /// run's file (atomic: a reader sees the first run or the merged one), published,
    /// then the others' files removed; a crash before the removals leaves runs that
    /// the merged one covers, which [`KvIndex::load_runs`] removes. Reads and writes at
    /// most `MERGE_RUNS × RUN_EVENTS` keys (1.4 MB). Returns whether it merged.
    fn merge_step(&self, packing: &mut Packing) -> Result<bool, KvError> {
        let Some(from) = packing.runs.len().checked_sub(MERGE_RUNS) else {
            return Ok(false);
        };
        let merged: Vec<Run> = packing.runs[from..].to_vec();
        let one_gen_each = merged.iter().all(|r| r.last - r.first < RUN_EVENTS);
        let consecutive = merged.windows(2).all(|w| w[0].last + 1 == w[1].first);
        if !(one_gen_each && consecutive) {
            return Ok(false);
        }
        let (first, last) = (merged[0].first, merged[MERGE_RUNS - 1].last);
        // What commits the runs merged (`packed_through`) is on disk before the
        // rename and the removals (`set_packed_through` flushes): a crash cannot
        // reopen with `packed_through` inside the merged run, whose other files are
        // gone.
        let dir = self.runs_dir();
        let mut writer = RunWriter::create(&dir, first, last)?;
        // Every run's keys are ascending and the runs' seqs disjoint, so a merge of
        // the sorted lists is the sorted union.
        let mut lists: Vec<std::iter::Peekable<std::vec::IntoIter<[u8; KEY_BYTES]>>> = merged
            .iter()
            .map(|r| r.keys().map(|k| k.into_iter().peekable()))
            .collect::<Result<_, _>>()?;
        loop {
            let next = lists
                .iter_mut()
                .enumerate()
                .filter_map(|(i, l)| l.peek().map(|k| (*k, i)))
                .min();
            let Some((key, i)) = next else { break };
            lists[i].next();
            writer.push(&key)?;
        }
        let Some(run) = writer.finish(&dir)? else {
            unreachable!("runs hold at least one key each")
        };
        packing.runs.truncate(from);
        packing.runs.push(Arc::new(run));
        self.publish(packing);
        for r in &merged[1..] {
            self.remove_run_file(r.first)?;
        }
        Ok(true)
    }

    /// The keys under `prefix` in the committed `runs`, in key order per run.
    pub(super) fn packed_under(
        &self,
        runs: &[Run],
        prefix: &[u8],
        out: &mut Vec<[u8; KEY_BYTES]>,
    ) -> Result<(), KvError> {
        for run in runs {
            if !run.in_range(prefix) || !run.bloom.may_contain(prefix) {
                continue;
            }
            run.keys_under(prefix, out)?;
        }
        Ok(())
    }

    /// Every key of the committed `runs`.
    pub(super) fn packed_keys(
        &self,
        runs: &[Run],
        out: &mut Vec<[u8; KEY_BYTES]>,
    ) -> Result<(), KvError> {
        for run in runs {
            out.extend(run.keys()?);
        }
        Ok(())
    }

    /// One step of dropping runs wholly below `below` (retention): removes the oldest
    /// such run's file. Returns whether none is left to drop.
    pub(super) fn drop_runs_below_step(&self, below: u64) -> Result<bool, KvError> {
        let mut packing = self.packing();
        let Some(run) = packing.runs.first().filter(|r| r.last < below).cloned() else {
            return Ok(true);
        };
        packing.runs.remove(0);
        self.publish(&packing);
        self.remove_run_file(run.first)?;
        Ok(false)
    }
}
