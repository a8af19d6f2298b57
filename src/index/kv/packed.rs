//! Packed runs: the keys of older events, 256 to a sled entry.
//!
//! sled 0.34 splits a leaf node once it holds more than 16 entries, and every node
//! costs a page-table entry, cache bookkeeping and on-disk framing whatever its size:
//! one entry per event measured 174 bytes per event on disk and ≈ 70 bytes of heap per
//! event once touched (10.6M keys: 332 MB at open, 746 MB after a full read, with a
//! 64 MiB cache). So the keys of events older than the newest ≈ [`RUN_EVENTS`] are
//! moved, a generation tree ([`super::gens`]) at a time, into pages of up to
//! [`PAGE_KEYS`] sorted keys each:
//!
//! ```text
//! tree     key                                          value
//! packed   run_first u64 BE ++ first key of the page     the page's keys, sorted, 22 bytes each
//! meta     "run" ++ run_first u64 BE                    run_last u64 BE ++ least key ++ greatest key
//!          "bloom" ++ run_first u64 BE                  the run's id filter ([`super::bloom`])
//!          "packed_through"                             u64 BE: every seq up to it is in a run
//! ```
//!
//! A run covers the seqs `run_first..=run_last` and holds exactly the keys of those
//! seqs: those of one closed generation. Packing is done by the one writer in bounded
//! steps after each apply ([`PACK_STEP_KEYS`] keys at most): (1) the oldest generation
//! is read in key order and written as pages; (2) the run is committed: its filter, its
//! `run` entry, then `packed_through`, which is what commits it; (3) at the next step
//! the generation is dropped. A run is committed if and only if its first seq is at or
//! below `packed_through`: open removes the pages, filter and entry of any other (a
//! crash in (1) or (2)), and drops a generation already packed (a crash before (3)).
//!
//! Invariants:
//! 1. Every key of a seq `<= packed_through` is in exactly one committed run (and,
//!    until its generation is dropped, possibly also there); every key of a higher seq
//!    is in a generation.
//! 2. A run's pages are sorted and do not overlap: page `i`'s keys are all below page
//!    `i + 1`'s first key, so a prefix lookup reads one page, or a few consecutive ones.
//! 3. Lookups read committed runs only, and only those whose filter may hold the id.

use super::bloom::Bloom;
use super::*;
use std::ops::Bound;

/// Keys per page.
pub const PAGE_KEYS: usize = 256;

/// The events whose keys stay one per entry in `ids` before a run is packed.
#[cfg(not(test))]
pub const RUN_EVENTS: u64 = 1 << 18;
/// Small in tests.
#[cfg(test)]
pub const RUN_EVENTS: u64 = 700;

/// `ids` keys scanned (or removed) per packing step.
#[cfg(not(test))]
const PACK_STEP_KEYS: usize = 32_768;
#[cfg(test)]
const PACK_STEP_KEYS: usize = 97;

pub(super) const META_PACKED_THROUGH: &[u8] = b"packed_through";
const META_RUN: &[u8] = b"run";
const META_BLOOM: &[u8] = b"bloom";

/// A committed run, as its `meta` entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) first: u64,
    pub(super) last: u64,
    least: [u8; KEY_BYTES],
    greatest: [u8; KEY_BYTES],
    pub(super) bloom: std::sync::Arc<Bloom>,
}

/// The writer's state: the committed runs, the generations, the packing in progress.
#[derive(Debug, Default)]
pub(super) struct Packing {
    /// The committed runs, by `first`.
    pub(super) runs: Vec<Run>,
    /// The generation trees, oldest first; never empty once the index is open.
    pub(super) gens: Vec<super::gens::Gen>,
    pub(super) job: Option<Job>,
}

/// The packing of the oldest generation into the run `first..=last`.
#[derive(Debug)]
pub(super) struct Job {
    first: u64,
    last: u64,
    pub(super) stage: Stage,
}

#[derive(Debug)]
pub(super) enum Stage {
    /// Writing pages: the generation's scan resumes after `resume`; `page` holds the
    /// keys not yet written; the run's least and greatest key; its filter.
    Write {
        resume: Option<[u8; KEY_BYTES]>,
        page: Vec<[u8; KEY_BYTES]>,
        least: Option<[u8; KEY_BYTES]>,
        greatest: Option<[u8; KEY_BYTES]>,
        bloom: Bloom,
    },
    /// Committed: the generation is dropped at the next step.
    Drop,
}

fn run_key(first: u64) -> Vec<u8> {
    [META_RUN, &first.to_be_bytes()[..]].concat()
}

pub(super) fn bloom_key(first: u64) -> Vec<u8> {
    [META_BLOOM, &first.to_be_bytes()[..]].concat()
}

fn page_key(first: u64, key: &[u8; KEY_BYTES]) -> Vec<u8> {
    [&first.to_be_bytes()[..], &key[..]].concat()
}

pub(super) fn key_of(bytes: &[u8]) -> Result<[u8; KEY_BYTES], KvError> {
    split_key(bytes)?;
    Ok(bytes.try_into().expect("checked length"))
}

fn seq_of(key: &[u8; KEY_BYTES]) -> u64 {
    u64::from_be_bytes(key[FINGERPRINT_BYTES..].try_into().expect("8 bytes"))
}

/// The keys of a page, checked.
fn page_keys(value: &[u8]) -> Result<impl Iterator<Item = &[u8]> + '_, KvError> {
    if value.is_empty() || value.len() % KEY_BYTES != 0 {
        return Err(KvError::Damaged(format!(
            "a packed page of {} bytes, not a multiple of {KEY_BYTES}",
            value.len()
        )));
    }
    Ok(value.chunks_exact(KEY_BYTES))
}

impl KvIndex {
    /// Reads the committed runs and the generations; removes what a crash left of a
    /// run not committed, and drops a generation already packed.
    pub(super) fn load_runs(&self) -> Result<(), KvError> {
        let through = self.packed_through()?;
        // Not committed: pages, filters and entries of runs starting above it.
        let above = (through + 1).to_be_bytes();
        for entry in self.packed.range(&above[..]..) {
            self.packed.remove(entry?.0)?;
        }
        let mut runs = Vec::new();
        for entry in self.meta.scan_prefix(META_RUN) {
            let (k, v) = entry?;
            let first = be_u64(&k[META_RUN.len()..], "run key")?;
            if first > through {
                self.meta.remove(&k)?;
                continue;
            }
            if v.len() != 8 + 2 * KEY_BYTES {
                return Err(KvError::Damaged(format!("run {first}: {} bytes", v.len())));
            }
            let last = be_u64(&v[..8], "run's last seq")?;
            let bloom = match self.meta.get(bloom_key(first))? {
                Some(b) => Bloom::from_bytes(&b).ok_or_else(|| {
                    KvError::Damaged(format!("run {first}: a filter of {} bytes", b.len()))
                })?,
                // Written before the run (so never absent in practice): rebuilt.
                None => self.rebuild_bloom(first, last)?,
            };
            runs.push(Run {
                first,
                last,
                least: key_of(&v[8..8 + KEY_BYTES])?,
                greatest: key_of(&v[8 + KEY_BYTES..])?,
                bloom: std::sync::Arc::new(bloom),
            });
        }
        for entry in self.meta.scan_prefix(META_BLOOM) {
            let (k, _) = entry?;
            if be_u64(&k[META_BLOOM.len()..], "filter key")? > through {
                self.meta.remove(&k)?;
            }
        }
        runs.sort_by_key(|r| r.first);
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
        packing.job = None;
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

    /// The filter of a run, from its pages.
    fn rebuild_bloom(&self, first: u64, last: u64) -> Result<Bloom, KvError> {
        let mut bloom = Bloom::with_keys(last.saturating_sub(first) + 1);
        for entry in self.packed.scan_prefix(first.to_be_bytes()) {
            for key in page_keys(&entry?.1)? {
                bloom.add(key);
            }
        }
        self.meta.insert(bloom_key(first), bloom.to_bytes())?;
        Ok(bloom)
    }

    /// Removes every page of the run starting at `first`.
    fn remove_pages(&self, first: u64) -> Result<(), KvError> {
        for entry in self.packed.scan_prefix(first.to_be_bytes()) {
            let (k, _) = entry?;
            self.packed.remove(k)?;
        }
        Ok(())
    }

    /// One bounded step of packing (called by the writer after each apply): starts a
    /// new generation once the current one spans [`RUN_EVENTS`] seqs, packs the
    /// oldest generation while there are two, and drops it once its run is committed.
    pub(super) fn pack_step(&self, indexed: u64) -> Result<(), KvError> {
        let mut packing = self.packing();
        if packing.job.is_none() {
            if packing.gens.len() < 2 {
                let current = packing.gens.last().map_or(1, |g| g.first);
                if indexed + 1 >= current + RUN_EVENTS {
                    let gen = self.open_gen(indexed + 1)?;
                    packing.gens.push(gen);
                    self.publish(&packing);
                }
                return Ok(());
            }
            let (first, last) = (packing.gens[0].first, packing.gens[1].first - 1);
            packing.job = Some(Job {
                first,
                last,
                stage: Stage::Write {
                    resume: None,
                    page: Vec::with_capacity(PAGE_KEYS),
                    least: None,
                    greatest: None,
                    bloom: Bloom::with_keys(last - first + 1),
                },
            });
        }
        let packing = &mut *packing;
        let Some(j) = packing.job.as_mut() else {
            return Ok(());
        };
        let (first, last) = (j.first, j.last);
        match &mut j.stage {
            Stage::Write {
                resume,
                page,
                least,
                greatest,
                bloom,
            } => {
                let tree = &packing.gens[0].tree;
                let scan = match resume {
                    Some(k) => tree.range::<&[u8], _>((Bound::Excluded(&k[..]), Bound::Unbounded)),
                    None => tree.iter(),
                };
                let mut scanned = 0;
                let mut end = true;
                for entry in scan {
                    let (k, _) = entry?;
                    let key = key_of(&k)?;
                    if !(first..=last).contains(&seq_of(&key)) {
                        return Err(KvError::Damaged(format!(
                            "generation {first} holds a key of seq {}, outside {first}..={last}",
                            seq_of(&key)
                        )));
                    }
                    *resume = Some(key);
                    least.get_or_insert(key);
                    *greatest = Some(key);
                    bloom.add(&key);
                    page.push(key);
                    if page.len() == PAGE_KEYS {
                        self.write_page(first, page)?;
                    }
                    scanned += 1;
                    if scanned >= PACK_STEP_KEYS {
                        end = false;
                        break;
                    }
                }
                if end {
                    if !page.is_empty() {
                        self.write_page(first, page)?;
                    }
                    // Commit: the filter, the run, then what commits it.
                    let bloom = std::mem::replace(bloom, Bloom::with_keys(1));
                    self.meta.insert(bloom_key(first), bloom.to_bytes())?;
                    let run = Run {
                        first,
                        last,
                        least: least.unwrap_or([0; KEY_BYTES]),
                        greatest: greatest.unwrap_or([0; KEY_BYTES]),
                        bloom: std::sync::Arc::new(bloom),
                    };
                    let value = [&last.to_be_bytes()[..], &run.least, &run.greatest].concat();
                    self.meta.insert(run_key(first), value)?;
                    self.meta.insert(META_PACKED_THROUGH, &last.to_be_bytes())?;
                    j.stage = Stage::Drop;
                    packing.runs.push(run);
                    self.publish(packing);
                }
            }
            Stage::Drop => {
                packing.job = None;
                self.drop_gens(packing, |g| g.first <= last)?;
            }
        }
        Ok(())
    }

    fn write_page(&self, first: u64, page: &mut Vec<[u8; KEY_BYTES]>) -> Result<(), KvError> {
        let value: Vec<u8> = page.iter().flatten().copied().collect();
        self.packed.insert(page_key(first, &page[0]), value)?;
        page.clear();
        Ok(())
    }

    /// Makes nothing at or above `from` packed (truncation): abandons a run being
    /// written that reaches `from`, drops the generations starting at or above it, and
    /// removes every committed run that reaches it, giving the keys below `from` of the
    /// one that holds it back to a generation starting at its first seq. Keys at or
    /// above `from` may remain in the generation that holds `from`: the caller removes
    /// them. Repeating it after a crash in the middle finishes it.
    pub(super) fn unpack_from(&self, from: u64) -> Result<(), KvError> {
        let mut packing = self.packing();
        let packing = &mut *packing;
        if packing.job.as_ref().is_some_and(|j| j.last >= from) {
            let j = packing.job.take().expect("a job");
            if matches!(j.stage, Stage::Write { .. }) {
                self.remove_pages(j.first)?;
                self.meta.remove(bloom_key(j.first))?;
            }
        }
        let through = self.packed_through()?;
        if from > through {
            self.drop_gens(packing, |g| g.first >= from)?;
            if packing.gens.is_empty() {
                packing.gens.push(self.open_gen(from)?);
                self.publish(packing);
            }
            return Ok(());
        }
        // `from` is in a run: every generation is above it (or left by an earlier
        // attempt, starting at or below `packed_through`).
        self.drop_gens(packing, |_| true)?;
        while let Some(run) = packing.runs.last().filter(|r| r.last >= from).cloned() {
            if run.first < from {
                let gen = self.open_gen(run.first)?;
                for entry in self.packed.scan_prefix(run.first.to_be_bytes()) {
                    let (_, v) = entry?;
                    for k in page_keys(&v)? {
                        if split_key(k)?.1 < from {
                            gen.tree.insert(k, &[])?;
                        }
                    }
                }
                packing.gens.push(gen);
            }
            let through = run.first - 1;
            self.meta
                .insert(META_PACKED_THROUGH, &through.to_be_bytes())?;
            self.meta.remove(run_key(run.first))?;
            self.meta.remove(bloom_key(run.first))?;
            self.remove_pages(run.first)?;
            packing.runs.pop();
            self.publish(packing);
        }
        // No run held `from` (retention dropped it): nothing at or above it is packed.
        let through = self.packed_through()?;
        if through >= from {
            self.meta
                .insert(META_PACKED_THROUGH, &(from - 1).to_be_bytes())?;
        }
        if packing.gens.is_empty() {
            let first = through.min(from - 1) + 1;
            packing.gens.push(self.open_gen(first)?);
            self.publish(packing);
        }
        Ok(())
    }

    /// The keys under `prefix` in the committed `runs`, in key order per run.
    pub(super) fn packed_under(
        &self,
        runs: &[Run],
        prefix: &[u8],
        out: &mut Vec<[u8; KEY_BYTES]>,
    ) -> Result<(), KvError> {
        for run in runs {
            let n = prefix.len();
            if prefix < &run.least[..n]
                || prefix > &run.greatest[..n]
                || !run.bloom.may_contain(prefix)
            {
                continue;
            }
            let run_prefix = run.first.to_be_bytes();
            let from = [&run_prefix[..], prefix].concat();
            // The page whose first key is at or below the prefix, else the run's first.
            let start = match self.packed.range(&run_prefix[..]..=&from[..]).next_back() {
                Some(entry) => entry?.0,
                None => sled::IVec::from(&run_prefix[..]),
            };
            for entry in self.packed.range(start..) {
                let (k, v) = entry?;
                if !k.starts_with(&run_prefix) {
                    break;
                }
                let mut past = false;
                for key in page_keys(&v)? {
                    match key[..n].cmp(prefix) {
                        std::cmp::Ordering::Less => {}
                        std::cmp::Ordering::Equal => out.push(key_of(key)?),
                        std::cmp::Ordering::Greater => {
                            past = true;
                            break;
                        }
                    }
                }
                if past {
                    break;
                }
            }
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
            for entry in self.packed.scan_prefix(run.first.to_be_bytes()) {
                let (_, v) = entry?;
                for key in page_keys(&v)? {
                    out.push(key_of(key)?);
                }
            }
        }
        Ok(())
    }

    /// One step of dropping runs wholly below `below` (retention): removes up to
    /// `max` pages of the oldest such run, and the run once its pages are gone.
    /// Returns whether none is left to drop.
    pub(super) fn drop_runs_below_step(&self, below: u64, max: usize) -> Result<bool, KvError> {
        let mut packing = self.packing();
        let Some(run) = packing.runs.first().filter(|r| r.last < below).cloned() else {
            return Ok(true);
        };
        let mut n = 0;
        for entry in self.packed.scan_prefix(run.first.to_be_bytes()) {
            let (k, _) = entry?;
            self.packed.remove(k)?;
            n += 1;
            if n >= max {
                return Ok(false);
            }
        }
        self.meta.remove(run_key(run.first))?;
        self.meta.remove(bloom_key(run.first))?;
        packing.runs.remove(0);
        self.publish(&packing);
        Ok(false)
    }
}
