//! The generations saved at a clean stop, so that a restart need not read them back
//! from the log.
//!
//! ```text
//! index/kv/generations
//!
//! offset        bytes          field
//! 0             8              magic "STELEGEN"
//! 8             4              version u32 BE (= 1)
//! 12            8              packed_through u64 BE (what the runs held then)
//! 20            8              applied seq u64 BE
//! 28            4              g: generations u32 BE (1 to MAX_GENS)
//! 32            12 g           per generation: first seq u64 BE, its keys' count u32 BE
//! 32 + 12 g     22 n           the keys, generation after generation, each strictly
//!                              ascending, each in its generation's range
//! …             4              CRC-32 of every byte before it
//! ```
//!
//! Written by [`KvIndex::save_generations`] when the indexer stops cleanly, after its
//! last checkpoint: to `generations.tmp`, fsynced, renamed. Read and removed by
//! [`KvIndex::open`]: its keys become the generations and its applied seq the index's
//! if it is whole (its CRC), its `packed_through` is the one on disk, and every key
//! fits (invariant 1 of `gens`); anything else is ignored with a warning, and the
//! indexer applies the seqs above `packed_through` from the log instead (what a
//! crash leaves: at most three generations, ≤ 49,152 events). ADR: the generations
//! were kept in sled trees until 2026-12-07 (`gens`); a restart that read them back
//! from the log also read the segments behind them, and a sealed segment found
//! damaged since (the scrubber's finding, which the daemon keeps serving around)
//! stopped the indexer and so the start
//! (`tamper::seal::changed_sealed_segments_are_found_by_the_scrubber_and_never_served`).

use super::gens::Gen;
use super::*;

/// The file's name in the index directory.
pub(super) const FILE: &str = "generations";
const MAGIC: &[u8; 8] = b"STELEGEN";
const VERSION: u32 = 1;
/// More generations than the index ever holds at once (two, three briefly).
const MAX_GENS: usize = 16;

/// What a snapshot holds.
pub(super) struct Saved {
    pub(super) applied: u64,
    pub(super) gens: Vec<Gen>,
}

/// The bytes of a snapshot of `gens` (the layout above).
fn encode(packed_through: u64, applied: u64, gens: &[Gen]) -> Vec<u8> {
    let keys: Vec<Vec<[u8; KEY_BYTES]>> = gens.iter().map(|g| g.keys()).collect();
    let n: usize = keys.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(36 + 12 * gens.len() + KEY_BYTES * n);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&packed_through.to_be_bytes());
    out.extend_from_slice(&applied.to_be_bytes());
    out.extend_from_slice(&(gens.len() as u32).to_be_bytes());
    for (g, k) in gens.iter().zip(&keys) {
        out.extend_from_slice(&g.first.to_be_bytes());
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    }
    for k in keys.iter().flatten() {
        out.extend_from_slice(k);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A reader of big-endian fields that says which one is missing.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!("it ends inside {what}"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
}

/// The generations in `bytes`, if they are a whole snapshot taken with the runs
/// committed through `packed_through`; else why not.
fn decode(bytes: &[u8], packed_through: u64) -> Result<Saved, String> {
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
        return Err("it is shorter than its checksum".into());
    };
    if crc32fast::hash(body) != u32::from_be_bytes(*crc) {
        return Err("its checksum does not match".into());
    }
    let mut f = Fields(body);
    if f.take(8, "the magic")? != MAGIC {
        return Err("it is not a snapshot of generations".into());
    }
    let version = f.u32("the version")?;
    if version != VERSION {
        return Err(format!("version {version}, this build reads {VERSION}"));
    }
    let through = f.u64("packed_through")?;
    if through != packed_through {
        return Err(format!(
            "it was taken with the runs through seq {through}, they are through {packed_through} now"
        ));
    }
    let applied = f.u64("the applied seq")?;
    let count = f.u32("the generations' count")? as usize;
    if !(1..=MAX_GENS).contains(&count) {
        return Err(format!("{count} generations"));
    }
    let mut heads = Vec::with_capacity(count);
    for _ in 0..count {
        heads.push((f.u64("a generation's first seq")?, f.u32("a count")?));
    }
    let mut gens: Vec<Gen> = Vec::with_capacity(count);
    for (i, &(first, n)) in heads.iter().enumerate() {
        let follows = match gens.last() {
            None => first == packed_through + 1,
            Some(before) => first > before.first,
        };
        if !follows || applied < packed_through {
            return Err(format!(
                "generation {first} does not follow the runs or the one before"
            ));
        }
        let end = heads.get(i + 1).map_or(applied, |h| h.0.saturating_sub(1));
        let mut keys = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let key: [u8; KEY_BYTES] = f.take(KEY_BYTES, "a key")?.try_into().expect("key");
            let seq = seq_of(&key);
            if !(first..=end).contains(&seq) || keys.last().is_some_and(|k| *k >= key) {
                return Err(format!(
                    "a key of seq {seq} out of place in generation {first}"
                ));
            }
            keys.push(key);
        }
        let gen = Gen::new(first);
        gen.insert_all(keys.into_iter());
        gens.push(gen);
    }
    if !f.0.is_empty() {
        return Err(format!("{} bytes after the keys", f.0.len()));
    }
    Ok(Saved { applied, gens })
}

impl KvIndex {
    fn snapshot_path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Saves the generations and the applied seq (called once the indexer stopped,
    /// after its last checkpoint; `packed_through` is on disk since its commit).
    pub fn save_generations(&self) -> Result<(), KvError> {
        let packing = self.packing();
        let through = self.packed_through()?;
        let applied = self
            .applied
            .load(std::sync::atomic::Ordering::Acquire)
            .max(through);
        let bytes = encode(through, applied, &packing.gens);
        let path = self.snapshot_path();
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()
        };
        write().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        runfile::sync_dir(&self.dir)
    }

    /// The generations a clean stop saved, if they fit the runs on disk; removes the
    /// file (and a `.tmp` a crash left) either way, so that no later open reads it.
    pub(super) fn take_generations(&self, packed_through: u64) -> Result<Option<Saved>, KvError> {
        let path = self.snapshot_path();
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        runfile::sync_dir(&self.dir)?;
        match decode(&bytes, packed_through) {
            Ok(saved) => Ok(Some(saved)),
            Err(why) => {
                tracing::warn!(
                    "The key index's saved generations ({}) are not used: {why}; the indexer applies the seqs above {packed_through} from the log.",
                    path.display()
                );
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fp: u8, seq: u64) -> [u8; KEY_BYTES] {
        let mut k = [fp; KEY_BYTES];
        k[FINGERPRINT_BYTES..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    fn gens() -> Vec<Gen> {
        let a = Gen::new(101);
        a.insert_all([key(9, 101), key(3, 102), key(7, 150)].into_iter());
        let b = Gen::new(801);
        b.insert_all([key(1, 801)].into_iter());
        vec![a, b]
    }

    #[test]
    fn a_snapshot_round_trips_and_refuses_any_other_bytes() {
        let bytes = encode(100, 801, &gens());
        assert_eq!(bytes.len(), 36 + 2 * 12 + 4 * KEY_BYTES);
        let saved = decode(&bytes, 100).unwrap();
        assert_eq!(saved.applied, 801);
        let firsts: Vec<u64> = saved.gens.iter().map(|g| g.first).collect();
        assert_eq!(firsts, [101, 801]);
        let keys: Vec<_> = saved.gens.iter().map(|g| g.keys()).collect();
        assert_eq!(
            keys,
            [
                vec![key(3, 102), key(7, 150), key(9, 101)],
                vec![key(1, 801)]
            ]
        );
        assert!(saved.gens[0].filter.may_contain(&key(7, 150)));

        // Taken with other runs on disk.
        let err = decode(&bytes, 50).err().unwrap();
        assert!(err.contains("runs through seq 100"), "{err}");
        // Every flipped bit and every truncation is refused.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x04;
            assert!(decode(&b, 100).is_err(), "bit at {i}");
            assert!(decode(&bytes[..i], 100).is_err(), "cut at {i}");
        }
        // Well-formed, checksummed, but a key outside its generation.
        let bad = gens();
        bad[0].insert_all([key(2, 900)].into_iter());
        let err = decode(&encode(100, 950, &bad), 100).err().unwrap();
        assert!(err.contains("seq 900 out of place"), "{err}");
        // A first generation that does not start after the runs.
        let err = decode(&encode(90, 801, &gens()), 90).err().unwrap();
        assert!(err.contains("does not follow"), "{err}");
    }
}
