//! Generation trees: the keys of the newest events, one sled tree per range of seqs.
//!
//! ```text
//! tree                          key                                     value
//! "ids." ++ first u64 BE        idfp(id) ++ tenantfp(tenant) ++ seq     empty
//! ```
//!
//! The keys of seqs above `packed_through` live in generation trees, each named by the
//! first seq it holds. Generations tile the seqs: generation `i` holds the keys of
//! `first_i ..= first_{i+1} - 1`, the newest one (the current generation) everything
//! from its first seq on, and the oldest starts at `packed_through + 1`. Applies write
//! into the generation of each key's seq (the current one, but for a re-apply). An
//! apply whose seqs reach [`super::RUN_EVENTS`] seqs past the current generation's
//! first opens the next one there, before writing (aligned: a closed generation spans
//! exactly that many seqs; one an older build let grow longer is closed at the next
//! apply); a generation is closed once every seq below the next one's first is
//! applied, and is then packed whole into a run (a scan in
//! key order: its pages come out sorted) and dropped with `Db::drop_tree`, which frees
//! the tree's pages without a descent and a rewrite per key. ADR: the first packed
//! build (format 6) moved keys out of one `ids` tree by removing them one by one: 5–8 %
//! more daemon CPU than no packing at 1,500,000 events; generations took 6 % of CPU
//! back (three alternating pairs at 1.5M). They did not give sled's file space back
//! (79 against 83 bytes/event at 10M): that came from writing the runs as files
//! ([`super::runfile`]).
//!
//! Invariants:
//! 1. Every applied key of a seq above `packed_through` is in the generation whose
//!    range holds its seq; a generation whose range is wholly at or below
//!    `packed_through` has been packed, and lookups may read it until it is dropped.
//! 2. A tree is dropped only after lookups can no longer reach it: the writer
//!    publishes a view without it, then waits for the lookups in flight (the gate).
//! 3. A crash while sled frees a dropped tree's pages leaves those pages orphaned in
//!    its file (sled 0.34 `Tree::gc_pages`): space, never keys; at most one
//!    generation's worth per crash.
//! 4. Every key in a generation tree has its id in the generation's filter
//!    ([`SharedBloom`]) from before the key is written (`Gen::insert`, and the tree's
//!    keys when it opens), so a lookup skips a tree whose filter says no without
//!    missing a key it would have found.

use super::bloom::SharedBloom;
use super::packed::{Packing, Run};
use super::*;
use std::sync::Arc;

/// The name of every generation tree starts with this.
const GEN_PREFIX: &[u8] = b"ids.";

/// A generation tree, the first seq it holds, and the filter of its ids.
#[derive(Clone)]
pub(super) struct Gen {
    pub(super) first: u64,
    pub(super) tree: sled::Tree,
    /// Every id fingerprint written to `tree` since it opened, and those it held then
    /// (invariant 4).
    pub(super) filter: Arc<SharedBloom>,
}

impl Gen {
    /// Writes `key` into the tree, its id into the filter first.
    pub(super) fn insert(&self, key: &[u8]) -> Result<(), KvError> {
        self.filter.add(key);
        self.tree.insert(key, &[])?;
        Ok(())
    }
}

impl std::fmt::Debug for Gen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gen({})", self.first)
    }
}

/// What lookups read: the committed runs and the generation trees.
#[derive(Debug, Default)]
pub(super) struct View {
    pub(super) runs: Vec<Run>,
    pub(super) gens: Vec<Gen>,
}

fn gen_name(first: u64) -> Vec<u8> {
    [GEN_PREFIX, &first.to_be_bytes()[..]].concat()
}

fn gen_first(name: &[u8]) -> Option<u64> {
    let rest = name.strip_prefix(GEN_PREFIX)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The generation whose range holds `seq` (the oldest if `seq` is below them all).
pub(super) fn gen_for(gens: &[Gen], seq: u64) -> &Gen {
    gens.iter()
        .rev()
        .find(|g| g.first <= seq)
        .unwrap_or(&gens[0])
}

impl KvIndex {
    /// The generation trees on disk, oldest first, after dropping those wholly at or
    /// below `packed_through` (packed before a crash let them be dropped) and every
    /// one starting at or below it (left by an interrupted truncation, which open
    /// repeats). Starts the first generation if there is none.
    pub(super) fn load_gens(&self, packed_through: u64) -> Result<Vec<Gen>, KvError> {
        let mut firsts: Vec<u64> = self
            .db
            .tree_names()
            .iter()
            .filter_map(|n| gen_first(n))
            .collect();
        firsts.sort_unstable();
        let mut gens = Vec::with_capacity(firsts.len());
        for first in firsts {
            if first <= packed_through {
                self.db.drop_tree(gen_name(first))?;
            } else {
                gens.push(self.open_gen(first)?);
            }
        }
        match gens.first() {
            None => gens.push(self.open_gen(packed_through + 1)?),
            Some(g) if g.first != packed_through + 1 => {
                return Err(KvError::Damaged(format!(
                    "the first generation starts at seq {}, the packed runs end at {packed_through}",
                    g.first
                )));
            }
            Some(_) => {}
        }
        Ok(gens)
    }

    /// Opens (or creates) the generation starting at `first`, its filter built from
    /// the keys it holds.
    pub(super) fn open_gen(&self, first: u64) -> Result<Gen, KvError> {
        let tree = self.db.open_tree(gen_name(first))?;
        let keys = tree.iter().keys().collect::<Result<Vec<_>, _>>()?;
        let filter = SharedBloom::with_keys(SharedBloom::GEN_KEYS.max(keys.len() as u64));
        for key in &keys {
            filter.add(key);
        }
        Ok(Gen {
            first,
            tree,
            filter: Arc::new(filter),
        })
    }

    /// Drops the generations that `doomed` picks: out of the published view first,
    /// then, once no lookup can still read them, out of sled (invariant 2).
    pub(super) fn drop_gens(
        &self,
        packing: &mut Packing,
        doomed: impl Fn(&Gen) -> bool,
    ) -> Result<(), KvError> {
        let (gone, kept): (Vec<Gen>, Vec<Gen>) = packing.gens.drain(..).partition(|g| doomed(g));
        packing.gens = kept;
        if gone.is_empty() {
            return Ok(());
        }
        self.publish(packing);
        drop(self.gate.write().unwrap_or_else(|p| p.into_inner()));
        for g in gone {
            self.db.drop_tree(gen_name(g.first))?;
        }
        Ok(())
    }

    /// Makes the writer's runs and generations what lookups read.
    pub(super) fn publish(&self, packing: &Packing) {
        let view = View {
            runs: packing.runs.clone(),
            gens: packing.gens.clone(),
        };
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(view);
    }

    /// Runs `read` on the published view, holding the gate so that no tree of it is
    /// dropped meanwhile.
    pub(super) fn with_view<T>(&self, read: impl FnOnce(&View) -> T) -> T {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let view = self
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        read(&view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_first_seq() {
        for first in [1, 700, 1 << 40, u64::MAX] {
            assert_eq!(gen_first(&gen_name(first)), Some(first));
        }
        assert!(gen_name(255) < gen_name(256));
        assert_eq!(gen_first(b"ids"), None);
        assert_eq!(gen_first(b"ids.123"), None);
        assert_eq!(gen_first(b"packed"), None);
    }
}
