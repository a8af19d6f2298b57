//! The bounded cache of per-segment partials (`partials`): least recently used
//! entries evicted first within an estimate of their bytes, entries of segment
//! versions no longer in the searcher dropped when a question sees the set
//! change. It stores and counts; what a partial holds and how it is computed
//! is `partials`'s.

use super::partials::Partial;
use super::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Most estimated bytes the partials take.
pub const PARTIALS_BYTES_MAX: usize = 64 << 20;

/// One version of one segment: its id and its delete set (by count and opstamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct SegmentVersion {
    id: tantivy::index::SegmentId,
    deleted: u32,
    opstamp: Option<u64>,
}

impl SegmentVersion {
    pub(super) fn of(reader: &SegmentReader) -> SegmentVersion {
        SegmentVersion {
            id: reader.segment_id(),
            deleted: reader.num_deleted_docs(),
            opstamp: reader.delete_opstamp(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) segment: SegmentVersion,
    /// The chunk of the segment's docs (`chunks`), [`WHOLE`] for all of them.
    pub(super) chunk: u32,
    /// The filter's fingerprint, `since` and `until` cleared.
    pub(super) filter: Arc<[u8]>,
}

/// [`Key::chunk`] of a whole segment's partial.
pub(super) const WHOLE: u32 = u32::MAX;

/// What the cache did, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialsStats {
    /// Segments answered from a cached partial holding every part asked for.
    pub hits: u64,
    /// Segments whose partial (or some of its parts) had to be computed.
    pub misses: u64,
    /// Entries dropped: least recently used past the bound, or of segments gone.
    pub evictions: u64,
    /// Entries held.
    pub entries: u64,
    /// Estimated bytes held.
    pub bytes: u64,
}

struct Slot {
    partial: Arc<Partial>,
    bytes: usize,
    tick: u64,
}

#[derive(Default)]
struct Lru {
    map: HashMap<Key, Slot>,
    /// tick → key, oldest first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
    /// The segment versions of the last searcher seen.
    live: HashSet<SegmentVersion>,
}

impl Lru {
    fn remove(&mut self, key: &Key) -> bool {
        match self.map.remove(key) {
            Some(slot) => {
                self.order.remove(&slot.tick);
                self.bytes -= slot.bytes;
                true
            }
            None => false,
        }
    }
}

/// The bounded cache of partials (see the module documentation).
pub(super) struct PartialCache {
    lru: Mutex<Lru>,
    bytes_max: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl PartialCache {
    pub(super) fn new(bytes_max: usize) -> PartialCache {
        PartialCache {
            lru: Mutex::new(Lru::default()),
            bytes_max,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Counts a segment answered from a cached partial holding every part asked for.
    pub(super) fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }

    /// Counts a segment whose partial (or some parts of it) had to be computed.
    pub(super) fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn stats(&self) -> PartialsStats {
        let (entries, bytes) = {
            let lru = self.lock();
            (lru.map.len() as u64, lru.bytes as u64)
        };
        PartialsStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            entries,
            bytes,
        }
    }

    /// Drops the entries of segment versions not in `live` (when the set changed).
    pub(super) fn keep_only(&self, live: HashSet<SegmentVersion>) {
        let mut lru = self.lock();
        if lru.live == live {
            return;
        }
        let gone: Vec<Key> = lru
            .map
            .keys()
            .filter(|k| !live.contains(&k.segment))
            .cloned()
            .collect();
        for key in &gone {
            lru.remove(key);
        }
        self.evictions.fetch_add(gone.len() as u64, Relaxed);
        lru.live = live;
    }

    pub(super) fn get(&self, key: &Key) -> Option<Arc<Partial>> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let slot = lru.map.get_mut(key)?;
        let old = std::mem::replace(&mut slot.tick, tick);
        let partial = Arc::clone(&slot.partial);
        lru.order.remove(&old);
        lru.order.insert(tick, key.clone());
        Some(partial)
    }

    pub(super) fn put(&self, key: Key, partial: Arc<Partial>) {
        let bytes = partial.bytes();
        if bytes > self.bytes_max {
            return;
        }
        let mut lru = self.lock();
        lru.remove(&key);
        while lru.bytes + bytes > self.bytes_max {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(slot) = lru.map.remove(&oldest) {
                lru.bytes -= slot.bytes;
                self.evictions.fetch_add(1, Relaxed);
            }
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.order.insert(tick, key.clone());
        lru.bytes += bytes;
        lru.map.insert(
            key,
            Slot {
                partial,
                bytes,
                tick,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key {
            segment: SegmentVersion {
                id: tantivy::index::SegmentId::generate_random(),
                deleted: 0,
                opstamp: None,
            },
            chunk: WHOLE,
            filter: Arc::from(vec![n]),
        }
    }

    fn partial(values: usize) -> Arc<Partial> {
        Arc::new(Partial::of_values(values))
    }

    #[test]
    fn the_least_recently_used_entries_go_first_within_the_bound() {
        let one = partial(10).bytes();
        let cache = PartialCache::new(3 * one);
        let keys: Vec<Key> = (0..4).map(key).collect();
        for k in &keys[..3] {
            cache.put(k.clone(), partial(10));
        }
        assert_eq!(cache.stats().entries, 3);
        // The oldest is used again: the second goes when the fourth comes.
        assert!(cache.get(&keys[0]).is_some());
        cache.put(keys[3].clone(), partial(10));
        let s = cache.stats();
        assert_eq!((s.entries, s.evictions), (3, 1));
        assert!(s.bytes as usize <= 3 * one);
        assert!(cache.get(&keys[1]).is_none());
        assert!(cache.get(&keys[0]).is_some() && cache.get(&keys[3]).is_some());
        // An entry larger than the bound is not kept.
        cache.put(key(9), partial(1000));
        assert_eq!(cache.stats().entries, 3);
        // Replacing an entry counts its bytes once.
        cache.put(keys[0].clone(), partial(10));
        assert_eq!(cache.stats().bytes as usize, 3 * one);
        // Segments gone are dropped.
        cache.keep_only([keys[3].segment].into_iter().collect());
        assert_eq!(cache.stats().entries, 1);
    }
}
