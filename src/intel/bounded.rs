//! A map with a cap: when full, inserting a new key first forgets the least
//! recently touched half. What every per-user, per-IP and per-scope memory of
//! `intel` is kept in, so each has a stated bound. Looked up by a borrowed
//! key (`&str` for a `String` key): a key is copied only when it is new.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// A map of at most `cap` entries (see the module documentation).
#[derive(Debug)]
pub struct Bounded<K, V> {
    map: HashMap<K, (u64, V)>,
    cap: usize,
    tick: u64,
    /// Entries forgotten to stay within the cap, since creation.
    pub forgotten: u64,
}

impl<K: Hash + Eq + Clone, V: Default> Bounded<K, V> {
    /// An empty map of at most `cap` (at least 2) entries.
    pub fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            cap: cap.max(2),
            tick: 0,
            forgotten: 0,
        }
    }

    /// The entry of `key` (a default one if new), marked as just touched.
    pub fn entry<Q>(&mut self, key: &Q) -> &mut V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.tick += 1;
        let tick = self.tick;
        // A known key (most calls): touched without a copy of the key.
        if self.map.contains_key(key) {
            let slot = self.map.get_mut(key).expect("just found");
            slot.0 = tick;
            return &mut slot.1;
        }
        if self.map.len() >= self.cap {
            let mut ticks: Vec<u64> = self.map.values().map(|(t, _)| *t).collect();
            // The newest of the oldest half: everything up to it goes.
            let mid = (ticks.len() / 2).saturating_sub(1);
            let (_, cut, _) = ticks.select_nth_unstable(mid);
            let cut = *cut;
            let before = self.map.len();
            self.map.retain(|_, (t, _)| *t > cut);
            self.forgotten += (before - self.map.len()) as u64;
        }
        &mut self
            .map
            .entry(key.to_owned())
            .or_insert_with(|| (tick, V::default()))
            .1
    }

    /// The entry of `key`, if remembered (not touched).
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|(_, v)| v)
    }

    /// How many entries are remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tenant_key;

    /// Distinct (tenant, id) pairs never share a key, however their bytes
    /// line up (tenants may hold tab, line feed and carriage return).
    #[test]
    fn tenant_keys_keep_tenants_and_ids_apart() {
        let pairs = [
            (None, "a"),
            (None, "ab"),
            (Some("a"), "b"),
            (Some("ab"), ""),
            (Some(""), "ab"),
            (Some("a\tb"), "c"),
            (Some("a"), "\tbc"),
            (Some("t"), "a"),
            (Some("t2"), "a"),
        ];
        let mut keys = std::collections::HashSet::new();
        let mut out = String::new();
        for (tenant, id) in pairs {
            tenant_key(&mut out, id, tenant);
            assert!(keys.insert(out.clone()), "{tenant:?} {id:?}");
        }
        // A borrowed key finds what an owned one stored.
        let mut m: Bounded<String, u32> = Bounded::new(10);
        tenant_key(&mut out, "u", Some("t"));
        *m.entry(out.as_str()) += 1;
        *m.entry(out.as_str()) += 1;
        assert_eq!(
            (m.get(out.as_str()), m.get("u"), m.len()),
            (Some(&2), None, 1)
        );
    }

    #[test]
    fn the_least_recently_touched_are_forgotten_first() {
        let mut m: Bounded<u32, u32> = Bounded::new(10);
        for k in 0..10 {
            *m.entry(&k) += 1;
        }
        // Touch 0..5 again: 5..10 are now the oldest.
        for k in 0..5 {
            *m.entry(&k) += 1;
        }
        m.entry(&100);
        assert!(m.len() <= 10);
        for k in 0..5 {
            assert_eq!(m.get(&k), Some(&2), "{k}");
        }
        assert!(m.forgotten >= 5);
        for k in 0..10_000 {
            m.entry(&k);
            assert!(m.len() <= 10);
        }
    }
}
