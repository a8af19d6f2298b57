//! A Bloom filter over the id fingerprints of one packed run, so that a lookup probes
//! only the runs that may hold its id (a UUIDv7 run's least..greatest key range says
//! little once a run holds client-style ids, whose fingerprints spread over every value).
//!
//! Each run file stores its filter after its fences, little-endian u64 words
//! ([`super::runfile`]), read into memory when the run opens.
//!
//! [`BITS_PER_KEY`] bits a key and [`PROBES`] probes: a false positive ≈ 0.8% of the
//! time; the filters cost 1.25 bytes an event in memory and on disk. A log of
//! 10,000,000 events has ≈ 155 runs (one per [`super::MERGE_RUNS`] generations of
//! [`super::RUN_EVENTS`] seqs, the newest up to three of one each): a UUIDv7 id's
//! lookup skips the runs whose key range cannot hold it ([`super::runfile`]'s
//! `in_range`), most of them; a client-style id's (its fingerprint has
//! [`super::HASHED_ID_BIT`], and every run holding such an id spans them all) probes
//! each filter, two probes on average for a run that does not hold it (the first
//! clear bit ends the probe), and reads ≈ 1.3 runs that do not hold it. Probes are derived
//! by double hashing (Kirsch–Mitzenmacher) from the id fingerprint's last 8 bytes, which
//! carry at least 32 bits of SHA-256 (see the key layout in the parent module), mixed
//! by SplitMix64. A filter never answers "no" for a key added to it (tested).

use std::sync::atomic::{AtomicU64, Ordering};

use super::ID_FINGERPRINT_BYTES;

/// Bits of filter per key.
pub const BITS_PER_KEY: u64 = 10;
/// Probes per key (optimal for 10 bits a key: ln 2 × 10 ≈ 7).
pub const PROBES: u32 = 7;

/// The filter of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    words: Vec<u64>,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bit positions, among `bits`, of an id fingerprint (its first
/// [`ID_FINGERPRINT_BYTES`] bytes).
fn probes(bits: u64, idfp: &[u8]) -> impl Iterator<Item = u64> {
    let tail: [u8; 8] = idfp[ID_FINGERPRINT_BYTES - 8..ID_FINGERPRINT_BYTES]
        .try_into()
        .expect("8 bytes");
    let head = u64::from(u16::from_be_bytes([idfp[0], idfp[1]]));
    let h1 = mix(u64::from_le_bytes(tail) ^ head.rotate_left(48));
    let h2 = mix(h1) | 1;
    (0..u64::from(PROBES)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

/// Words of a filter of `keys` keys.
fn words_for(keys: u64) -> usize {
    keys.max(1).saturating_mul(BITS_PER_KEY).div_ceil(64) as usize
}

impl Bloom {
    /// An empty filter sized for `keys` keys.
    pub fn with_keys(keys: u64) -> Bloom {
        Bloom {
            words: vec![0; words_for(keys)],
        }
    }

    /// The filter stored as `bytes`, or `None` if they are not whole words.
    pub fn from_bytes(bytes: &[u8]) -> Option<Bloom> {
        if bytes.is_empty() || bytes.len() % 8 != 0 {
            return None;
        }
        let words = bytes
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .collect();
        Some(Bloom { words })
    }

    /// Bytes of the filter (in memory and stored).
    pub fn byte_len(&self) -> usize {
        self.words.len() * 8
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn probes(&self, idfp: &[u8]) -> impl Iterator<Item = u64> {
        probes(self.words.len() as u64 * 64, idfp)
    }

    /// Adds the id fingerprint at the start of `key`.
    pub fn add(&mut self, key: &[u8]) {
        let probes: Vec<u64> = self.probes(key).collect();
        for p in probes {
            self.words[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    /// Whether a key starting with this id fingerprint may have been added (never
    /// `false` for one that was).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(key)
            .all(|p| self.words[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

/// The filter of one generation (`super::gens`): the same probes over atomic words,
/// so that the indexer adds keys while lookups read it. In memory only, sized for a
/// generation's keys ([`SharedBloom::GEN_KEYS`], 20 KiB; two or three generations
/// exist at a time). A fresh id's lookup (every posted event's id is looked up) then
/// skips the generation without taking its lock. ADR: when generations were sled
/// trees, the range scan this skips (sled copies the leaf it lands on) was ≈ 2.5 % of
/// the daemon's CPU under a batch load (perf, issue 21). Keys removed from a
/// generation keep their bits (a false positive costs the lookup it would have cost
/// anyway).
#[derive(Debug)]
pub struct SharedBloom {
    words: Box<[AtomicU64]>,
}

impl SharedBloom {
    /// The keys a generation's filter is sized for: the most a generation holds (one
    /// key per seq of its span).
    pub const GEN_KEYS: u64 = super::RUN_EVENTS;

    /// An empty filter sized for `keys` keys.
    pub fn with_keys(keys: u64) -> SharedBloom {
        SharedBloom {
            words: (0..words_for(keys)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn probes(&self, idfp: &[u8]) -> impl Iterator<Item = u64> {
        probes(self.words.len() as u64 * 64, idfp)
    }

    /// Adds the id fingerprint at the start of `key`. Call it before the key is
    /// written where lookups can find it: a lookup that finds the key's write done
    /// (through sled's or the index's own synchronization) then sees its bits.
    pub fn add(&self, key: &[u8]) {
        for p in self.probes(key) {
            self.words[(p / 64) as usize].fetch_or(1 << (p % 64), Ordering::Release);
        }
    }

    /// Whether a key starting with this id fingerprint may have been added (never
    /// `false` for one that was).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(key)
            .all(|p| self.words[(p / 64) as usize].load(Ordering::Acquire) & (1 << (p % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::kv::id_key;

    #[test]
    fn added_keys_are_always_found_and_others_rarely() {
        let n = 20_000u64;
        let mut b = Bloom::with_keys(n);
        // UUIDv7 ids of a few milliseconds (only 32 bits of hash apart) and client ids.
        let ids: Vec<String> = (0..n)
            .map(|i| match i % 4 {
                0 => format!("evt_{i}"),
                _ => format!("0190{:04x}-0000-7000-8000-{:012x}", i % 3, i),
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            b.add(&id_key(id, Some("t"), i as u64));
        }
        for (i, id) in ids.iter().enumerate() {
            // Any tenant and any seq: the filter keys on the id's fingerprint alone.
            assert!(b.may_contain(&id_key(id, None, i as u64 + 7)), "{id}");
        }
        let false_positives = (0..n)
            .filter(|i| b.may_contain(&id_key(&format!("other-{i}"), Some("t"), 1)))
            .count();
        // Expected ≈ 0.8%; 2% leaves room for chance.
        assert!(false_positives < (n / 50) as usize, "{false_positives}");
        let back = Bloom::from_bytes(&b.to_bytes()).unwrap();
        assert_eq!(back, b);
        assert_eq!(Bloom::from_bytes(&[1, 2, 3]), None);
        assert_eq!(
            b.to_bytes().len() as u64,
            (n * BITS_PER_KEY).div_ceil(64) * 8
        );
    }

    #[test]
    fn the_shared_filter_answers_as_the_plain_one() {
        let n = 5_000u64;
        let (mut plain, shared) = (Bloom::with_keys(n), SharedBloom::with_keys(n));
        let keys: Vec<_> = (0..n)
            .map(|i| id_key(&format!("0190{i:04x}-0000-7000-8000-{i:012x}"), None, i))
            .collect();
        for k in &keys {
            plain.add(k);
            shared.add(k);
        }
        for i in 0..2 * n {
            let k = id_key(&format!("evt_{i}"), Some("t"), i);
            assert_eq!(plain.may_contain(&k), shared.may_contain(&k), "{i}");
        }
        assert!(keys.iter().all(|k| shared.may_contain(k)));
        assert_eq!(
            SharedBloom::with_keys(SharedBloom::GEN_KEYS).words.len() as u64 * 64,
            (SharedBloom::GEN_KEYS * BITS_PER_KEY).div_ceil(64) * 64
        );
    }
}
