//! Run files: the keys of one packed run, sorted, in an immutable file of their own.
//!
//! ```text
//! index/kv/runs/<first seq, 20 digits>.run
//!
//! offset        bytes          field
//! 0             8              magic "STELERUN"
//! 8             4              version u32 BE (= 2)
//! 12            8              first seq u64 BE
//! 20            8              last seq u64 BE
//! 28            8              n: keys u64 BE (≥ 1)
//! 36            4              b: Bloom filter bytes u32 BE (a multiple of 8)
//! 40            4              CRC-32 of the entries section
//! 44            4              CRC-32 of bytes 0..44 ++ the fences ++ the filter
//! 48            e n            entries, strictly ascending: a key (the `ids` layout,
//!                              fingerprints ++ seq u64 BE) stored as its 14 bytes of
//!                              fingerprints ++ (seq − first seq) in w bytes BE
//! 48 + e n      22 ⌈n / 256⌉   fences: keys 0, 256, 512, … (the first key of each page), whole
//! …             b              the run's Bloom filter over the whole keys, u64 LE words
//!                              ([`super::bloom`])
//!
//! w = the fewest bytes (1 to 8) that hold last seq − first seq; e = 14 + w
//! ```
//!
//! A run of one generation (16,384 seqs) or of four merged (65,536) has w = 2: 16 bytes
//! an entry where version 1
//! stored the whole 22-byte key (6 bytes less a key, ≈ 7 bytes/event with the findings).
//!
//! A page is [`PAGE_KEYS`] consecutive keys; the fences (in memory once the run is
//! open) say which page a prefix starts in, so a lookup reads one page, or a few
//! consecutive ones, with one positioned read each. Opening reads the header, the
//! fences, the filter and the last key, and checks the second CRC and the file's size;
//! the keys' CRC is checked when every key is read ([`RunFile::keys`], `stele check`).
//! The file is written under `<name>.tmp`, fsynced, renamed, and the directory fsynced
//! before `meta/"packed_through"` names the run ([`super::packed`]). ADR: the runs were
//! first pages of 256 keys in a sled tree (format 6 and 7): sled rewrites a node of up
//! to 16 such pages every 10 inserts and relocates a segment only once it is ≤ 50 %
//! live, so its file held ≈ 3.5 × the keys (79 bytes/event at 10M events for 22 of keys).

use super::bloom::Bloom;
use super::{split_key, KvError, KEY_BYTES};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Keys per page (and per fence).
pub const PAGE_KEYS: usize = 256;

const MAGIC: &[u8; 8] = b"STELERUN";
const VERSION: u32 = 2;
const HEADER_BYTES: u64 = 48;
/// The fingerprints at the head of a key: what an entry stores whole.
const PREFIX_BYTES: usize = KEY_BYTES - 8;

/// Bytes of the seq offset in the entries of a run of seqs `first..=last`.
fn seq_width(first: u64, last: u64) -> usize {
    let span = last - first;
    (8 - span.leading_zeros() as usize / 8).max(1)
}

/// The file name of the run starting at `first`.
pub(super) fn file_name(first: u64) -> String {
    format!("{first:020}.run")
}

/// The first seq of a run file's name, if it is one.
pub(super) fn first_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".run")?;
    (digits.len() == 20).then(|| digits.parse().ok())?
}

fn damaged(path: &Path, what: impl std::fmt::Display) -> KvError {
    KvError::Damaged(format!("run file {}: {what}", path.display()))
}

fn io(path: &Path, e: std::io::Error) -> KvError {
    KvError::Io(format!("run file {}: {e}", path.display()))
}

/// An open run file: its header, fences and filter in memory, its keys on disk.
#[derive(Debug)]
pub(super) struct RunFile {
    path: PathBuf,
    file: File,
    pub(super) first: u64,
    pub(super) last: u64,
    keys: u64,
    /// Bytes of an entry: the fingerprints and the seq's offset from `first`.
    entry: usize,
    keys_crc: u32,
    fences: Vec<[u8; KEY_BYTES]>,
    pub(super) greatest: [u8; KEY_BYTES],
    /// The greatest key without [`super::HASHED_ID_BIT`] (the run's UUIDv7 ids), if any:
    /// a lookup of a prefix without it skips the run unless the prefix lies between
    /// [`RunFile::least`] and this. Found at open (one more page read at most).
    pub(super) greatest_low: Option<[u8; KEY_BYTES]>,
    pub(super) bloom: Bloom,
}

impl RunFile {
    /// Opens and checks the run file at `path`.
    pub(super) fn open(path: &Path) -> Result<RunFile, KvError> {
        let file = File::open(path).map_err(|e| io(path, e))?;
        let size = file.metadata().map_err(|e| io(path, e))?.len();
        let mut header = [0u8; HEADER_BYTES as usize];
        if size < HEADER_BYTES {
            return Err(damaged(
                path,
                format!("{size} bytes, shorter than its header"),
            ));
        }
        file.read_exact_at(&mut header, 0)
            .map_err(|e| io(path, e))?;
        if &header[..8] != MAGIC {
            return Err(damaged(path, "no STELERUN magic"));
        }
        let u32_at = |o: usize| u32::from_be_bytes(header[o..o + 4].try_into().expect("4"));
        let u64_at = |o: usize| u64::from_be_bytes(header[o..o + 8].try_into().expect("8"));
        if u32_at(8) != VERSION {
            return Err(damaged(path, format!("version {}", u32_at(8))));
        }
        let (first, last, keys, bloom_bytes) = (u64_at(12), u64_at(20), u64_at(28), u32_at(36));
        if keys == 0 || first > last || bloom_bytes % 8 != 0 {
            return Err(damaged(
                path,
                format!("{keys} keys of seqs {first}..={last} and a filter of {bloom_bytes}"),
            ));
        }
        let entry = PREFIX_BYTES + seq_width(first, last);
        let fence_count = keys.div_ceil(PAGE_KEYS as u64);
        let expected = keys
            .checked_mul(entry as u64)
            .and_then(|k| k.checked_add(fence_count * KEY_BYTES as u64))
            .and_then(|k| k.checked_add(HEADER_BYTES + u64::from(bloom_bytes)));
        if expected != Some(size) {
            return Err(damaged(
                path,
                format!("{size} bytes for {keys} keys of seqs {first}..={last} and a filter of {bloom_bytes}"),
            ));
        }
        let mut tail = vec![0u8; (fence_count * KEY_BYTES as u64) as usize + bloom_bytes as usize];
        file.read_exact_at(&mut tail, HEADER_BYTES + keys * entry as u64)
            .map_err(|e| io(path, e))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[..44]);
        crc.update(&tail);
        if crc.finalize() != u32_at(44) {
            return Err(damaged(path, "its header, fences or filter fail their CRC"));
        }
        let (fence_bytes, bloom) = tail.split_at((fence_count * KEY_BYTES as u64) as usize);
        let fences = fence_bytes
            .chunks_exact(KEY_BYTES)
            .map(|k| k.try_into().expect("key bytes"))
            .collect();
        let bloom = Bloom::from_bytes(bloom).ok_or_else(|| damaged(path, "an empty filter"))?;
        let mut run = RunFile {
            path: path.to_path_buf(),
            file,
            first,
            last,
            keys,
            entry,
            keys_crc: u32_at(40),
            fences,
            greatest: [0u8; KEY_BYTES],
            greatest_low: None,
            bloom,
        };
        let mut last_entry = vec![0u8; entry];
        run.file
            .read_exact_at(&mut last_entry, HEADER_BYTES + (keys - 1) * entry as u64)
            .map_err(|e| io(path, e))?;
        run.greatest = run.key_of(&last_entry)?;
        run.greatest_low = run.find_greatest_low()?;
        Ok(run)
    }

    /// The whole key of a stored entry; an offset past the run's last seq is
    /// damage.
    fn key_of(&self, entry: &[u8]) -> Result<[u8; KEY_BYTES], KvError> {
        let mut key = [0u8; KEY_BYTES];
        key[..PREFIX_BYTES].copy_from_slice(&entry[..PREFIX_BYTES]);
        let mut offset = [0u8; 8];
        offset[8 - (self.entry - PREFIX_BYTES)..].copy_from_slice(&entry[PREFIX_BYTES..]);
        let offset = u64::from_be_bytes(offset);
        if offset > self.last - self.first {
            return Err(damaged(
                &self.path,
                format!("an entry's seq offset {offset} is past the run's last seq"),
            ));
        }
        key[PREFIX_BYTES..].copy_from_slice(&(self.first + offset).to_be_bytes());
        Ok(key)
    }

    /// The greatest key without [`super::HASHED_ID_BIT`]: keys are sorted, so those
    /// without it come first; it is in the last page whose fence lacks the bit.
    fn find_greatest_low(&self) -> Result<Option<[u8; KEY_BYTES]>, KvError> {
        let low = |k: &[u8]| k[0] & super::HASHED_ID_BIT == 0;
        if low(&self.greatest) {
            return Ok(Some(self.greatest));
        }
        let pages_low = self.fences.partition_point(|f| low(f));
        let Some(page) = pages_low.checked_sub(1) else {
            return Ok(None);
        };
        let mut found = None;
        self.pages(page, |bytes| {
            for entry in bytes.chunks_exact(self.entry).take_while(|e| low(e)) {
                found = Some(self.key_of(entry)?);
            }
            Ok(false)
        })?;
        Ok(found)
    }

    /// The least key of the run.
    pub(super) fn least(&self) -> &[u8; KEY_BYTES] {
        &self.fences[0]
    }

    /// Whether a key starting with `prefix` may lie within the run's keys: between its
    /// least and greatest key, and for a prefix without the hashed bit (a UUIDv7 id's)
    /// at or below its greatest such key, so that a lookup of a UUIDv7 id skips the
    /// runs of other times without probing their filters.
    pub(super) fn in_range(&self, prefix: &[u8]) -> bool {
        let n = prefix.len();
        let Some(first) = prefix.first() else {
            return true;
        };
        let high = if first & super::HASHED_ID_BIT == 0 {
            self.greatest_low.as_ref()
        } else {
            Some(&self.greatest)
        };
        prefix >= &self.least()[..n] && high.is_some_and(|g| prefix <= &g[..n])
    }

    /// Reads pages `from..` (one positioned read each) until `f`, given each page's
    /// stored entries, says stop.
    fn pages(
        &self,
        from: usize,
        mut f: impl FnMut(&[u8]) -> Result<bool, KvError>,
    ) -> Result<(), KvError> {
        let mut buf = vec![0u8; PAGE_KEYS * self.entry];
        for page in from..self.fences.len() {
            let start = page as u64 * PAGE_KEYS as u64;
            let n = (self.keys - start).min(PAGE_KEYS as u64) as usize;
            let bytes = &mut buf[..n * self.entry];
            self.file
                .read_exact_at(bytes, HEADER_BYTES + start * self.entry as u64)
                .map_err(|e| io(&self.path, e))?;
            if !f(bytes)? {
                break;
            }
        }
        Ok(())
    }

    /// Appends the keys starting with `prefix` to `out`, ascending.
    pub(super) fn keys_under(
        &self,
        prefix: &[u8],
        out: &mut Vec<[u8; KEY_BYTES]>,
    ) -> Result<(), KvError> {
        let n = prefix.len();
        // The last page whose first key is below the prefix may hold its first keys.
        let page = self
            .fences
            .partition_point(|f| &f[..n] < prefix)
            .saturating_sub(1);
        self.pages(page, |bytes| {
            for entry in bytes.chunks_exact(self.entry) {
                // An entry starts with its key's fingerprints: a prefix within them
                // compares with the stored bytes, a longer one with the whole key.
                let order = if n <= PREFIX_BYTES {
                    entry[..n].cmp(prefix)
                } else {
                    self.key_of(entry)?[..n].cmp(prefix)
                };
                match order {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => out.push(self.key_of(entry)?),
                    std::cmp::Ordering::Greater => return Ok(false),
                }
            }
            Ok(true)
        })
    }

    /// Every key, checked against the keys' CRC, in order.
    pub(super) fn keys(&self) -> Result<Vec<[u8; KEY_BYTES]>, KvError> {
        let mut out = Vec::with_capacity(self.keys as usize);
        let mut crc = crc32fast::Hasher::new();
        self.pages(0, |bytes| {
            crc.update(bytes);
            for entry in bytes.chunks_exact(self.entry) {
                let key = self.key_of(entry)?;
                split_key(&key)?;
                out.push(key);
            }
            Ok(true)
        })?;
        if crc.finalize() != self.keys_crc {
            return Err(damaged(&self.path, "its keys fail their CRC"));
        }
        Ok(out)
    }

    /// Bytes of the file.
    pub(super) fn file_bytes(&self) -> u64 {
        HEADER_BYTES
            + self.keys * self.entry as u64
            + self.fences.len() as u64 * KEY_BYTES as u64
            + self.bloom.byte_len() as u64
    }
}

/// A run file being written, one key at a time in ascending order.
#[derive(Debug)]
pub(super) struct RunWriter {
    tmp: PathBuf,
    path: PathBuf,
    out: std::io::BufWriter<File>,
    first: u64,
    last: u64,
    keys: u64,
    /// Bytes of the seq offset in an entry.
    width: usize,
    crc: crc32fast::Hasher,
    fences: Vec<u8>,
    bloom: Bloom,
    previous: Option<[u8; KEY_BYTES]>,
}

impl RunWriter {
    /// Starts the run file of seqs `first..=last` in `dir` (replacing a leftover
    /// temporary file).
    pub(super) fn create(dir: &Path, first: u64, last: u64) -> Result<RunWriter, KvError> {
        let path = dir.join(file_name(first));
        let tmp = dir.join(format!("{}.tmp", file_name(first)));
        let file = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
        out.write_all(&[0u8; HEADER_BYTES as usize])
            .map_err(|e| io(&tmp, e))?;
        Ok(RunWriter {
            tmp,
            path,
            out,
            first,
            last,
            keys: 0,
            width: seq_width(first, last),
            crc: crc32fast::Hasher::new(),
            fences: Vec::new(),
            bloom: Bloom::with_keys(last - first + 1),
            previous: None,
        })
    }

    /// Adds the next key (strictly above the one before, of a seq in the run's range).
    pub(super) fn push(&mut self, key: &[u8; KEY_BYTES]) -> Result<(), KvError> {
        let seq = split_key(key)?.1;
        if !(self.first..=self.last).contains(&seq) || self.previous.is_some_and(|p| p >= *key) {
            return Err(KvError::Damaged(format!(
                "a key of seq {seq} out of order or outside the run {}..={}",
                self.first, self.last
            )));
        }
        if self.keys % PAGE_KEYS as u64 == 0 {
            self.fences.extend_from_slice(key);
        }
        let offset = (seq - self.first).to_be_bytes();
        for part in [&key[..PREFIX_BYTES], &offset[8 - self.width..]] {
            self.crc.update(part);
            self.out.write_all(part).map_err(|e| io(&self.tmp, e))?;
        }
        self.bloom.add(key);
        self.keys += 1;
        self.previous = Some(*key);
        Ok(())
    }

    /// Writes the fences, the filter and the header, makes the file durable under
    /// its final name, and opens it. `Ok(None)` when no key was pushed (no file).
    pub(super) fn finish(mut self, dir: &Path) -> Result<Option<RunFile>, KvError> {
        if self.keys == 0 {
            drop(self.out);
            std::fs::remove_file(&self.tmp).map_err(|e| io(&self.tmp, e))?;
            return Ok(None);
        }
        let bloom = self.bloom.to_bytes();
        let mut header = [0u8; HEADER_BYTES as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_be_bytes());
        header[12..20].copy_from_slice(&self.first.to_be_bytes());
        header[20..28].copy_from_slice(&self.last.to_be_bytes());
        header[28..36].copy_from_slice(&self.keys.to_be_bytes());
        header[36..40].copy_from_slice(&(bloom.len() as u32).to_be_bytes());
        header[40..44].copy_from_slice(&self.crc.clone().finalize().to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[..44]);
        crc.update(&self.fences);
        crc.update(&bloom);
        header[44..48].copy_from_slice(&crc.finalize().to_be_bytes());
        let tmp = self.tmp.clone();
        self.out.write_all(&self.fences).map_err(|e| io(&tmp, e))?;
        self.out.write_all(&bloom).map_err(|e| io(&tmp, e))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io(&tmp, e.into_error()))?;
        file.write_all_at(&header, 0).map_err(|e| io(&tmp, e))?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))?;
        sync_dir(dir)?;
        RunFile::open(&self.path).map(Some)
    }
}

/// fsyncs a directory (a rename or an unlink in it becomes durable).
pub(super) fn sync_dir(dir: &Path) -> Result<(), KvError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fp: u8, seq: u64) -> [u8; KEY_BYTES] {
        let mut k = [fp; KEY_BYTES];
        k[KEY_BYTES - 8..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    #[test]
    fn a_run_file_reads_back_what_was_written_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<[u8; KEY_BYTES]> = (0..=255u8)
            .flat_map(|fp| (0..3u64).map(move |i| key(fp, 1 + u64::from(fp) * 3 + i)))
            .collect();
        let mut w = RunWriter::create(dir.path(), 1, 1_000).unwrap();
        for k in &keys {
            w.push(k).unwrap();
        }
        // Out of order, a repeat, or outside the run's seqs.
        assert!(w.push(&key(3, 10)).is_err());
        assert!(w.push(keys.last().unwrap()).is_err());
        assert!(w.push(&key(255, 1_001)).is_err());
        let run = w.finish(dir.path()).unwrap().unwrap();
        assert_eq!((run.first, run.last), (1, 1_000));
        assert_eq!(run.least(), &keys[0]);
        assert_eq!(&run.greatest, keys.last().unwrap());
        assert_eq!(run.keys().unwrap(), keys);
        for fp in [0u8, 85, 86, 170, 255] {
            let mut out = Vec::new();
            run.keys_under(&[fp; 14], &mut out).unwrap();
            let want: Vec<_> = keys.iter().filter(|k| k[0] == fp).copied().collect();
            assert_eq!(out, want, "{fp}");
            assert!(keys
                .iter()
                .filter(|k| k[0] == fp)
                .all(|k| run.bloom.may_contain(k)));
        }
        let path = dir.path().join(file_name(1));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), run.file_bytes());
        assert!(!dir.path().join(format!("{}.tmp", file_name(1))).exists());

        // A flipped bit in the keys: found when they are read; elsewhere: at open.
        let good = std::fs::read(&path).unwrap();
        for (at, when_open) in [(60usize, false), (good.len() - 3, true), (13, true)] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            match RunFile::open(&path) {
                Err(KvError::Damaged(_)) => assert!(when_open, "{at}"),
                Ok(run) => {
                    assert!(!when_open, "{at}");
                    assert!(matches!(run.keys(), Err(KvError::Damaged(_))));
                }
                Err(e) => panic!("{at}: {e}"),
            }
        }
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(matches!(RunFile::open(&path), Err(KvError::Damaged(_))));
    }

    /// Version 2 stores each key's seq as its offset from the run's first seq, in the
    /// fewest bytes that hold the run's span, and reads the whole keys back.
    #[test]
    fn entries_store_the_seq_as_an_offset_in_the_fewest_bytes() {
        assert_eq!(seq_width(5, 5), 1);
        assert_eq!(seq_width(0, 255), 1);
        assert_eq!(seq_width(0, 256), 2);
        assert_eq!(seq_width(1, 65_536), 2);
        assert_eq!(seq_width(0, 65_536), 3);
        assert_eq!(seq_width(7, 7 + (1 << 32)), 5);
        assert_eq!(seq_width(0, u64::MAX), 8);
        for (first, last) in [(5u64, 5u64), (1, 65_536), (1 << 40, (1 << 40) + 70_000)] {
            let dir = tempfile::tempdir().unwrap();
            let seqs = [first, first + (last - first) / 2, last];
            let keys: Vec<_> = (0u8..3).map(|i| key(i * 50, seqs[i as usize])).collect();
            let mut w = RunWriter::create(dir.path(), first, last).unwrap();
            for k in &keys {
                w.push(k).unwrap();
            }
            let run = w.finish(dir.path()).unwrap().unwrap();
            assert_eq!(run.entry, PREFIX_BYTES + seq_width(first, last));
            assert_eq!(run.keys().unwrap(), keys, "{first}..={last}");
            assert_eq!(run.greatest, keys[2]);
            let mut out = Vec::new();
            run.keys_under(&[50; 14], &mut out).unwrap();
            assert_eq!(out, vec![keys[1]]);
            // A prefix longer than the fingerprints: compared with the whole keys.
            for k in &keys {
                let mut out = Vec::new();
                run.keys_under(&k[..], &mut out).unwrap();
                assert_eq!(out, vec![*k]);
                out.clear();
                run.keys_under(&k[..PREFIX_BYTES + 7], &mut out).unwrap();
                assert_eq!(out, vec![*k]);
            }
            let path = dir.path().join(file_name(first));
            let size = std::fs::metadata(&path).unwrap().len();
            assert_eq!(size, run.file_bytes());
            assert_eq!(
                size,
                HEADER_BYTES
                    + 3 * run.entry as u64
                    + KEY_BYTES as u64
                    + run.bloom.byte_len() as u64
            );
        }
        // An offset past the run's last seq (a hostile or damaged file whose
        // entries' CRC is not read by a lookup): damage, never a wrapped seq.
        let dir = tempfile::tempdir().unwrap();
        let mut w = RunWriter::create(dir.path(), 5, 5).unwrap();
        for k in [key(0, 5), key(50, 5)] {
            w.push(&k).unwrap();
        }
        drop(w.finish(dir.path()).unwrap());
        let path = dir.path().join(file_name(5));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_BYTES as usize + PREFIX_BYTES] = 1;
        std::fs::write(&path, &bytes).unwrap();
        let run = RunFile::open(&path).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            run.keys_under(&[0; 14], &mut out),
            Err(KvError::Damaged(_))
        ));
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(first_of(&file_name(42)), Some(42));
        assert_eq!(first_of(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(first_of("42.run"), None);
        assert_eq!(first_of(&format!("{}.tmp", file_name(42))), None);
    }
}
