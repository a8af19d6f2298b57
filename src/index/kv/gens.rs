//! Generations: the keys of the newest events, in memory, one ordered set per range of seqs.
//!
//! ```text
//! Gen { first, keys: BTreeSet<key>, filter }    key = idfp ++ tenantfp ++ seq (22 bytes)
//! ```
//!
//! The keys of seqs above `packed_through` live in generations, each named by the first
//! seq it holds. Generations tile the seqs: generation `i` holds the keys of
//! `first_i ..= first_{i+1} - 1`, the newest one (the current generation) everything
//! from its first seq on, and the oldest starts at `packed_through + 1`. Applies add
//! to the generation of each key's seq (the current one, but for a re-apply). An
//! apply whose seqs reach [`super::RUN_EVENTS`] seqs past the current generation's
//! first opens the next one there, before writing (aligned: a closed generation spans
//! exactly that many seqs); a generation is closed once every seq below the next one's
//! first is applied, and is then packed whole into a run (its keys in order) and
//! dropped. So at most three generations exist (≤ 3 × 16,384 keys, ≈ 2 MB).
//!
//! ADR (2026-12-07): generations were sled trees (`"ids." ++ first seq`, formats 7 to
//! 10), so that they outlived a restart. sled's inserts and leaf splits (it splits a
//! leaf at 16 entries) were ≈ 10 % of the daemon's samples under a batch load, and a
//! build that skipped them used 11.3 % less CPU per event (README, "Performance").
//! The log holds every event they came from, so they need not be durable: a clean
//! stop saves them in one file ([`super::snapshot`]), read back at the next open;
//! after a crash they start empty and the indexer applies the seqs above
//! `packed_through` again (at most ≈ 3 × 16,384 events read back), which `stele
//! serve` waits for before it answers. Open drops the sled trees an older build left.
//!
//! Invariants:
//! 1. Every applied key of a seq above `packed_through` is in the generation whose
//!    range holds its seq; a generation whose range is wholly at or below
//!    `packed_through` has been packed, and lookups may read it until it is dropped.
//! 2. A dropped generation's keys stay readable by the lookups that still hold a view
//!    naming it (the view shares them), and go with the last such view.
//! 3. Nothing of a generation is on disk while the index is open: what is durable is
//!    the runs and `packed_through`; the applied seq above it is known in memory only
//!    (and in the snapshot a clean stop writes, which the next open removes).
//! 4. Every key in a generation has its id in the generation's filter
//!    ([`SharedBloom`]) from before the key is added ([`Gen::insert_all`]), so a
//!    lookup skips a generation whose filter says no without missing a key it would
//!    have found (and without taking the lock the writer adds under).

use super::bloom::SharedBloom;
use super::packed::{Packing, Run};
use super::*;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// The name of every generation tree an older build kept in sled starts with this.
const LEGACY_TREE_PREFIX: &[u8] = b"ids.";

/// A generation's keys, in key order.
type Keys = BTreeSet<[u8; KEY_BYTES]>;

/// A generation: the first seq it holds, its keys, and the filter of its ids.
#[derive(Clone)]
pub(super) struct Gen {
    pub(super) first: u64,
    /// Its keys (shared with the views that name it).
    keys: Arc<RwLock<Keys>>,
    /// Every id fingerprint added to `keys` (invariant 4).
    pub(super) filter: Arc<SharedBloom>,
}

impl Gen {
    /// An empty generation starting at `first`.
    pub(super) fn new(first: u64) -> Gen {
        Gen {
            first,
            keys: Arc::default(),
            filter: Arc::new(SharedBloom::with_keys(SharedBloom::GEN_KEYS)),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `keys`, their ids into the filter first, under one lock.
    pub(super) fn insert_all(&self, keys: impl Iterator<Item = [u8; KEY_BYTES]>) {
        let keys: Vec<[u8; KEY_BYTES]> = keys.collect();
        if keys.is_empty() {
            return;
        }
        for key in &keys {
            self.filter.add(key);
        }
        self.write().extend(keys);
    }

    /// The keys that start with `prefix`, in key order, appended to `out`.
    pub(super) fn keys_under(&self, prefix: &[u8], out: &mut Vec<[u8; KEY_BYTES]>) {
        let mut lo = [0u8; KEY_BYTES];
        let n = prefix.len().min(KEY_BYTES);
        lo[..n].copy_from_slice(&prefix[..n]);
        out.extend(
            self.read()
                .range(lo..)
                .take_while(|k| k.starts_with(prefix))
                .copied(),
        );
    }

    /// Its keys, in key order.
    pub(super) fn keys(&self) -> Vec<[u8; KEY_BYTES]> {
        self.read().iter().copied().collect()
    }

    /// Keeps only the keys `keep` says yes to (their ids keep their filter bits: a
    /// false positive costs a lookup of the set, never a wrong answer).
    pub(super) fn retain(&self, keep: impl FnMut(&[u8; KEY_BYTES]) -> bool) {
        self.write().retain(keep);
    }

    /// How many keys it holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.read().len()
    }
}

impl std::fmt::Debug for Gen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gen({})", self.first)
    }
}

/// What lookups read: the committed runs and the generations.
#[derive(Debug, Default)]
pub(super) struct View {
    pub(super) runs: Vec<Run>,
    pub(super) gens: Vec<Gen>,
}

impl KvIndex {
    /// The generations at open: one, empty, starting after the packed runs (the keys
    /// above them are applied again from the log: invariant 3). Drops the generation
    /// trees an older build kept in sled.
    pub(super) fn load_gens(&self, packed_through: u64) -> Result<Vec<Gen>, KvError> {
        for name in self.db.tree_names() {
            if name.starts_with(LEGACY_TREE_PREFIX) {
                self.db.drop_tree(name)?;
            }
        }
        Ok(vec![Gen::new(packed_through + 1)])
    }

    /// Makes the writer's runs and generations what lookups read.
    pub(super) fn publish(&self, packing: &Packing) {
        let view = View {
            runs: packing.runs.clone(),
            gens: packing.gens.clone(),
        };
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }

    /// Runs `read` on the published view (its generations' keys stay readable while
    /// it runs, even if the writer drops them meanwhile: invariant 2).
    pub(super) fn with_view<T>(&self, read: impl FnOnce(&View) -> T) -> T {
        let view = self
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        read(&view)
    }
}
