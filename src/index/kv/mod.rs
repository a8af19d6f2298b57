//! The key index: exact lookups of events by id: run files, a few keys in memory, and
//! two numbers in sled.
//!
//! A cache of the segment log, never a source of truth: if it fails to open, has another
//! format version, or disagrees with the log, the caller deletes the directory and
//! rebuilds it from the segments. sled 0.34 is beta, and since 2026-12-07 it holds only
//! the `meta` tree: plain inserts of a few keys, flushed at checkpoints.
//!
//! ```text
//! tree         key                                                  value
//! meta         "format"                                             u32 BE (= FORMAT_VERSION)
//!              "packed_through"                                     u64 BE (see `packed`)
//!              "indexed_seq"                                        u64 BE (= packed_through)
//!
//! runs/<first seq>.run: the keys of older events, sorted (see `packed` and `runfile`)
//! in memory: the keys of the newest events, one ordered set per generation (see `gens`)
//!
//! key              = idfp(id) ++ tenantfp(tenant) ++ seq u64 BE      22 bytes
//! idfp(id)         = unix_ms(id)[6 bytes] ++ h[..4]   (the id is a UUIDv7), else
//!                    h[..10] with bit 0x80 of its first byte set (`HASHED_ID_BIT`)
//! h                = SHA-256("stele-id\0" ++ id)
//! tenantfp(tenant) = SHA-256("stele-tenant\0" ++ tenantk(tenant))[..4]
//! tenantk(t)       = 0x00 (no tenant), or 0x01 ++ t as UTF-8
//! ```
//!
//! Every event has one 22-byte key and no value. The key holds fingerprints of the id
//! and the tenant, not the strings: an entry says "the event at this seq may have this
//! id", and every lookup reads the candidate events from the log and keeps the ones
//! whose id and tenant are the ones asked ([`crate::query::Engine::get_by_id`]). Two
//! different ids share a fingerprint with probability 2^-79 per pair (2^-32 for two
//! UUIDv7 ids of the same millisecond); a collision costs one more read, never a wrong
//! answer. The hash is cryptographic so that ids chosen by a client cannot pile up
//! under one prefix. A UUIDv7 id (what Stele generates, and what most sources send)
//! starts its key with its own millisecond timestamp, so keys arrive in nearly
//! ascending order, and a lookup of one skips every run whose key range does not hold
//! it. ADR (format version 5): the version 4 key (`0x01 ++ UUID` or the id as text,
//! then the tenant as text, seq as the value) cost 262 bytes/event on disk after
//! 300,000 events of the load generator (sled's per-entry overhead included); this
//! layout costs less (see README "Performance"), and an apply is blind inserts, with
//! no read before each write.
//!
//! Only ids live here. Ordered listings (by entity, user, tenant, correlation, session,
//! time) are served by the full-text index, which holds the same fields as raw terms
//! sorted by seq. ADR: sled 0.34 measured at 1,000,000 events: ids alone cost
//! ~150–220 bytes/event at 148–207k events/s; ordered key families for those listings
//! cost 1,658 bytes/event (3× the segment bytes) at 13k events/s, so they were dropped
//! (format version 4).
//!
//! Invariants:
//! 1. After [`KvIndex::open`] returns, no key refers to a seq above the applied seq
//!    ([`KvIndex::indexed_seq`]): the generations are those a clean stop saved, with
//!    the applied seq then ([`snapshot`]), or, after a crash, empty with the applied
//!    seq `packed_through`; the indexer applies the seqs above it from the log
//!    ([`gens`] invariant 3) before `stele serve` answers a request.
//! 2. Every applied event has exactly its own key, `id_key(id, tenant, seq)`, in the
//!    generation of its seq ([`gens`]) or, once its generation is closed
//!    (a newer one opened, every seq below it applied), in a packed run
//!    ([`packed`]); lookups
//!    return candidate seqs in ascending order, a superset of the events with that id
//!    (in that tenant), and the first candidate that the log confirms is the answer:
//!    the lowest seq that carries the `(id, tenant)` pair. The keys of one id, one per
//!    tenant that has it, are the range under `idfp(id)` ([`KvIndex::seqs_of_id_any_tenant`]).
//! 3. One writer: [`KvIndex::apply`] and [`KvIndex::remove_below_step`] are called by
//!    one thread (the indexer) at a time; readers may run concurrently.
//! 4. What is on disk is a consistent index at every instant: the committed runs, and
//!    `packed_through` (with `indexed_seq`, equal to it, for the builds of format 10
//!    before 2026-12-07, which kept the generations in sled and read the applied seq
//!    there). Nothing is fsynced per apply: durability comes from the log;
//!    [`KvIndex::flush`] is called at checkpoints, and a run is durable before
//!    `packed_through` names it.
//!
//! sled's writes are single inserts, never `Batch`es or transactions: sled 0.34 applies
//! a batch under a process-wide write lock (`concurrency_control::write`) that stalls
//! every reader of every tree (measured when the keys were in sled: get-by-id p99
//! during ingest 13.7 ms with 256-key batches, 82 µs with single inserts).

use crate::event::StoredEvent;
use std::path::{Path, PathBuf};

/// The version of the key layout above, stored under `meta/"format"`. Version 3 made
/// ids per tenant (version 2 keyed `ids` by the id alone); version 4 dropped the ordered
/// key families (`time`, `entity`, `user`, `tenant`, `correlation`, `session`), never
/// written in production, and the write-only `segments` tree; version 5 keys every
/// event by fingerprints and its seq; version 6 packs the keys of older events into
/// pages of the `packed` tree; version 7 keeps the newest keys in generation trees
/// (`"ids." ++ first seq`) instead of one `ids` tree; version 8 writes the packed runs
/// as files (`runs/`) instead of the `packed` tree; version 9 sets [`HASHED_ID_BIT`] in
/// the fingerprint of ids that are not UUIDv7; version 10 writes run files of version
/// 2 (a key's seq as its offset from the run's first seq, 16 bytes an entry instead of
/// 22); since 2026-12-07 version 10 keeps the generations in memory, not in sled, and
/// stays 10: what it leaves on disk is an index of version 10 as the builds before
/// read it (invariant 4), and what they left opens here (their generation trees are
/// dropped and applied again from the log). An index of another version does not
/// open, and the caller rebuilds it from the log.
pub const FORMAT_VERSION: u32 = 10;

const META_FORMAT: &[u8] = b"format";
/// `packed_through`, for the builds that read the applied seq here (invariant 4).
const META_INDEXED_SEQ: &[u8] = b"indexed_seq";
/// An older build's mark of an apply in flight (its keys were in sled); removed at open.
const META_PENDING: &[u8] = b"pending";

/// Why the key index failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The directory could not be opened as a key index of this version.
    #[error("the key index in {path} could not be opened: {detail}")]
    Open {
        /// The index directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// sled returned an error.
    #[error("key index failure: {0}")]
    Sled(String),
    /// A key, value or run file does not decode or fails its CRC.
    #[error("the key index is damaged: {0}")]
    Damaged(String),
    /// Reading or writing a run file failed.
    #[error("key index I/O failure: {0}")]
    Io(String),
}

impl From<sled::Error> for KvError {
    fn from(e: sled::Error) -> Self {
        KvError::Sled(e.to_string())
    }
}

/// How the key index holds its keys ([`KvIndex::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvStats {
    /// Committed packed runs.
    pub runs: usize,
    /// Indexed seqs above the packed runs: their keys are in memory.
    pub unpacked_seqs: u64,
    /// Generations (one, two while the older one is packed).
    pub generations: usize,
    /// Bytes of the runs' Bloom filters, in memory and on disk.
    pub filter_bytes: u64,
    /// Bytes of sled's files and the run files.
    pub disk_bytes: u64,
}

/// The sled-backed key index. `Send + Sync`; share it in an `Arc`.
pub struct KvIndex {
    /// The index directory (sled's files and `runs/`).
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    /// The writer's runs, generations and packing in progress.
    pack: std::sync::Mutex<packed::Packing>,
    /// The runs and generations as lookups see them (the writer publishes a new view
    /// at each change, so a lookup never waits for a packing step).
    published: std::sync::RwLock<std::sync::Arc<gens::View>>,
    /// The last seq whose keys were all applied (0: none): in memory, since the
    /// generations are (`gens` invariant 3).
    applied: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for KvIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvIndex").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Key encoding
// ---------------------------------------------------------------------------------------

/// Bytes of `idfp(id)`, the start of every key of an id.
pub const ID_FINGERPRINT_BYTES: usize = 10;
/// Bytes of `idfp(id) ++ tenantfp(tenant)`, the start of every key of an `(id, tenant)`.
pub const FINGERPRINT_BYTES: usize = ID_FINGERPRINT_BYTES + 4;
/// Bytes of an `ids` key: the fingerprints and the seq.
pub const KEY_BYTES: usize = FINGERPRINT_BYTES + 8;

/// The fingerprints of an `(id, tenant)` pair, `idfp(id) ++ tenantfp(tenant)`: what
/// every key of the pair starts with, and what `stele check` compares.
pub fn fingerprint(id: &str, tenant: Option<&str>) -> [u8; FINGERPRINT_BYTES] {
    use sha2::{Digest, Sha256};
    let mut fp = [0u8; FINGERPRINT_BYTES];
    fp[..ID_FINGERPRINT_BYTES].copy_from_slice(&id_fingerprint(id));
    let mut h = Sha256::new();
    h.update(b"stele-tenant\0");
    match tenant {
        None => h.update([0u8]),
        Some(t) => {
            h.update([1u8]);
            h.update(t.as_bytes());
        }
    }
    fp[ID_FINGERPRINT_BYTES..]
        .copy_from_slice(&h.finalize()[..FINGERPRINT_BYTES - ID_FINGERPRINT_BYTES]);
    fp
}

/// `idfp(id)`: the start of every key of `id`, whatever the tenant.
fn id_fingerprint(id: &str) -> [u8; ID_FINGERPRINT_BYTES] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"stele-id\0");
    h.update(id.as_bytes());
    let h = h.finalize();
    let mut fp = [0u8; ID_FINGERPRINT_BYTES];
    match uuid::Uuid::try_parse(id) {
        Ok(u) if u.get_version_num() == 7 => {
            fp[..6].copy_from_slice(&u.as_bytes()[..6]);
            fp[6..].copy_from_slice(&h[..ID_FINGERPRINT_BYTES - 6]);
        }
        _ => {
            fp.copy_from_slice(&h[..ID_FINGERPRINT_BYTES]);
            fp[0] |= HASHED_ID_BIT;
        }
    }
    fp
}

/// Set in the first byte of the fingerprint of every id that is not a UUIDv7, never in a
/// UUIDv7 id's before the year 6429 (its 48-bit millisecond timestamp stays below
/// 2^47): so the keys of UUIDv7 ids, which arrive in nearly ascending order, are one
/// narrow range of each packed run (below its [`runfile::RunFile::greatest_low`]), and
/// a lookup of such an id skips every run whose range does not hold it, instead of
/// probing the filter of each (format 9).
pub const HASHED_ID_BIT: u8 = 0x80;

/// The `ids` key of the event at `seq` with `id` in `tenant`.
pub fn id_key(id: &str, tenant: Option<&str>, seq: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    k[..FINGERPRINT_BYTES].copy_from_slice(&fingerprint(id, tenant));
    k[FINGERPRINT_BYTES..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Splits an `ids` key into its fingerprints and its seq.
fn split_key(k: &[u8]) -> Result<([u8; FINGERPRINT_BYTES], u64), KvError> {
    if k.len() != KEY_BYTES {
        return Err(KvError::Damaged(format!(
            "id key {} has {} bytes, not {KEY_BYTES}",
            hex::encode(&k[..k.len().min(32)]),
            k.len()
        )));
    }
    let fp = k[..FINGERPRINT_BYTES]
        .try_into()
        .expect("fingerprint bytes");
    let seq = be_u64(&k[FINGERPRINT_BYTES..], "id key's seq")?;
    Ok((fp, seq))
}

/// The seq of a whole key.
fn seq_of(k: &[u8; KEY_BYTES]) -> u64 {
    u64::from_be_bytes(k[FINGERPRINT_BYTES..].try_into().expect("8 bytes"))
}

/// An I/O failure on `path` (the run files' directory, the saved generations).
fn io(path: &Path, e: std::io::Error) -> KvError {
    KvError::Io(format!("{}: {e}", path.display()))
}

fn be_u64(bytes: &[u8], what: &str) -> Result<u64, KvError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        KvError::Damaged(format!(
            "{what}: expected 8 bytes, found {} ({})",
            bytes.len(),
            hex::encode(&bytes[..bytes.len().min(32)])
        ))
    })?;
    Ok(u64::from_be_bytes(arr))
}

// ---------------------------------------------------------------------------------------
// KvIndex
// ---------------------------------------------------------------------------------------

impl KvIndex {
    /// Opens or creates the key index in `dir`, with `cache_capacity` bytes of sled
    /// cache (sled's own accounting, not an RSS limit; callers default to 64 MiB). sled's
    /// periodic flush is off: [`KvIndex::flush`] is called at checkpoints.
    ///
    /// Fails with [`KvError::Open`] when sled cannot open the directory (or panics
    /// trying), when the format version is not [`FORMAT_VERSION`], or when a non-empty
    /// index has no version. Loads the generations a clean stop saved, if they fit
    /// (invariant 1).
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<KvIndex, KvError> {
        let open_err = |detail: String| KvError::Open {
            path: dir.to_path_buf(),
            detail,
        };
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .mode(sled::Mode::LowSpace)
            .flush_every_ms(None);
        // sled 0.34 panics on some damaged files instead of returning an error; this is a
        // cache, so both mean "rebuild".
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = config.open()?;
            let t = |name: &str| db.open_tree(name);
            let index = KvIndex {
                meta: t("meta")?,
                dir: dir.to_path_buf(),
                pack: Default::default(),
                published: Default::default(),
                applied: Default::default(),
                db,
            };
            Ok::<_, sled::Error>(index)
        }));
        let index = match opened {
            Ok(Ok(index)) => index,
            Ok(Err(e)) => return Err(open_err(e.to_string())),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                return Err(open_err(format!("sled panicked: {what}")));
            }
        };

        match index
            .meta
            .get(META_FORMAT)
            .map_err(|e| open_err(e.to_string()))?
        {
            Some(v) => {
                let version = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| open_err(format!("undecodable format marker {v:?}")))?;
                if version != FORMAT_VERSION {
                    return Err(open_err(format!(
                        "format version {version}, this build reads version {FORMAT_VERSION}"
                    )));
                }
            }
            None => {
                // Any tree but `meta` (a version 3 index also had the family trees).
                let names = index.db.tree_names();
                let mut holds_keys = false;
                for name in names.iter().filter(|n| n.as_ref() != b"meta") {
                    let tree = index
                        .db
                        .open_tree(name)
                        .map_err(|e| open_err(e.to_string()))?;
                    holds_keys |= !tree.is_empty();
                }
                if holds_keys {
                    return Err(open_err("it holds keys but no format version".into()));
                }
                index
                    .meta
                    .insert(META_FORMAT, &FORMAT_VERSION.to_be_bytes())
                    .map_err(|e| open_err(e.to_string()))?;
                index.db.flush().map_err(|e| open_err(e.to_string()))?;
            }
        }

        index.start().map_err(|e| open_err(e.to_string()))?;
        Ok(index)
    }

    /// Stores `indexed_seq` as `packed_through` and removes an older build's `pending`
    /// mark (invariant 4: what that build wrote above `packed_through` was in its
    /// generation trees), flushed before [`KvIndex::load_runs`] drops those trees;
    /// then loads the runs and the generations a clean stop saved ([`snapshot`]), else
    /// starts them empty after the runs with the applied seq `packed_through`
    /// (invariant 1).
    fn start(&self) -> Result<(), KvError> {
        let through = self.packed_through()?;
        self.store_indexed(through)?;
        self.meta.remove(META_PENDING)?;
        self.db.flush()?;
        self.load_runs()?;
        let applied = match self.take_generations(through)? {
            Some(saved) => {
                let mut packing = self.packing();
                packing.gens = saved.gens;
                self.publish(&packing);
                saved.applied
            }
            None => through,
        };
        self.applied
            .store(applied, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<u64>, KvError> {
        match self.meta.get(key)? {
            Some(v) => Ok(Some(be_u64(&v, "meta value")?)),
            None => Ok(None),
        }
    }

    /// The last seq whose keys were all applied; `None` if nothing was. In memory:
    /// after [`KvIndex::open`], the saved generations' or `packed_through` (invariant 1).
    pub fn indexed_seq(&self) -> Result<Option<u64>, KvError> {
        let seq = self.applied.load(std::sync::atomic::Ordering::Acquire);
        Ok(Some(seq).filter(|&s| s > 0))
    }

    /// Stores `seq` (0: none) as `indexed_seq` (invariant 4: always `packed_through`).
    pub(super) fn store_indexed(&self, seq: u64) -> Result<(), KvError> {
        if seq > 0 {
            self.meta.insert(META_INDEXED_SEQ, &seq.to_be_bytes())?;
        } else {
            self.meta.remove(META_INDEXED_SEQ)?;
        }
        Ok(())
    }

    /// Applies the keys of a run of events with consecutive ascending seqs and sets the
    /// applied seq ([`KvIndex::indexed_seq`], in memory) to the last one (it never goes down: re-applying events already
    /// applied is harmless and changes nothing). Every event gets its own key, so an id
    /// repeated at a higher seq adds a candidate that lookups reach after the lower one.
    pub fn apply<E: std::borrow::Borrow<StoredEvent>>(&self, events: &[E]) -> Result<(), KvError> {
        let Some(last) = events.last().map(E::borrow) else {
            return Ok(());
        };
        debug_assert!(
            events
                .windows(2)
                .all(|w| w[0].borrow().seq < w[1].borrow().seq),
            "apply takes events in ascending seq order"
        );
        let hi = last.seq;
        let indexed = self.indexed_seq()?;
        if let Some(s) = indexed {
            let first = events[0].borrow().seq;
            if first > s + 1 {
                tracing::warn!(
                    "The key index skips seqs {}..{}: it had indexed up to {s}.",
                    s + 1,
                    first
                );
            }
        }
        // Blind inserts into the generation of each seq: a key is the event's own
        // (invariant 2), so nothing needs reading first; events already applied are
        // not written again.
        {
            let mut packing = self.packing();
            let done = indexed.unwrap_or(0);
            let lo = (done + 1).max(events[0].borrow().seq);
            self.open_gens_through(&mut packing, lo, hi)?;
            let mut rest = &events[events.partition_point(|e| e.borrow().seq <= done)..];
            for (i, gen) in packing.gens.iter().enumerate() {
                let end = packing.gens.get(i + 1).map_or(u64::MAX, |g| g.first);
                let (mine, after) = rest.split_at(rest.partition_point(|e| e.borrow().seq < end));
                gen.insert_all(
                    mine.iter()
                        .map(E::borrow)
                        .map(|ev| id_key(&ev.event.id, ev.event.tenant.as_deref(), ev.seq)),
                );
                rest = after;
            }
        }
        let indexed = indexed.map_or(hi, |s| s.max(hi));
        self.applied
            .store(indexed, std::sync::atomic::Ordering::Release);
        self.pack_step(indexed)
    }

    /// The seqs whose events may have this id in `tenant` (`None`: among the events
    /// without a tenant), ascending, at most `max`: a superset of the events that do
    /// (invariant 2). One range scan; the caller reads the events to confirm.
    pub fn seqs_of_id(
        &self,
        id: &str,
        tenant: Option<&str>,
        max: usize,
    ) -> Result<Vec<u64>, KvError> {
        self.seqs_under(&fingerprint(id, tenant), max)
    }

    /// The seqs whose events may have this id in any tenant (or none), at most `max`,
    /// ascending within each tenant's fingerprint. One range scan; the caller reads the
    /// events to confirm and to learn their tenants.
    pub fn seqs_of_id_any_tenant(&self, id: &str, max: usize) -> Result<Vec<u64>, KvError> {
        self.seqs_under(&id_fingerprint(id), max)
    }

    fn seqs_under(&self, prefix: &[u8], max: usize) -> Result<Vec<u64>, KvError> {
        let mut keys = Vec::new();
        self.with_view(|view| {
            self.packed_under(&view.runs, prefix, &mut keys)?;
            for gen in view.gens.iter().filter(|g| g.filter.may_contain(prefix)) {
                gen.keys_under(prefix, &mut keys);
            }
            Ok::<_, KvError>(())
        })?;
        // A key of a generation packed but not yet dropped is in both: the same bytes.
        keys.sort_unstable();
        keys.dedup();
        keys.iter().take(max).map(|k| Ok(split_key(k)?.1)).collect()
    }

    /// One step of removing the keys of seqs below `below` (retention dropped them
    /// from the log): drops the oldest packed run wholly below it, or, once none is
    /// left, removes the generations' keys below it (in memory: at most a few
    /// generations, one pass). Returns whether it is done. Steps keep the indexer
    /// responsive: readers never need these keys gone (a dropped seq is absent from
    /// the log).
    pub fn remove_below_step(&self, below: u64) -> Result<bool, KvError> {
        if !self.drop_runs_below_step(below)? {
            return Ok(false);
        }
        let packing = self.packing();
        for gen in packing.gens.iter().filter(|g| g.first < below) {
            gen.retain(|k| seq_of(k) >= below);
        }
        Ok(true)
    }

    /// Every entry as `(seq, fingerprint)`, in ascending seq order (for `stele check`,
    /// which compares them with [`fingerprint`] of the event at each seq).
    pub fn all_entries(&self) -> Result<Vec<(u64, [u8; FINGERPRINT_BYTES])>, KvError> {
        let mut keys = Vec::new();
        self.with_view(|view| {
            self.packed_keys(&view.runs, &mut keys)?;
            for gen in &view.gens {
                keys.extend(gen.keys());
            }
            Ok::<_, KvError>(())
        })?;
        let mut out = keys
            .iter()
            .map(|k| split_key(k).map(|(fp, seq)| (seq, fp)))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// How the keys are held, for `/metrics`.
    pub fn stats(&self) -> Result<KvStats, KvError> {
        let packed_through = self.packed_through()?;
        let (runs, filter_bytes, run_bytes, generations) = self.with_view(|view| {
            let filters = view.runs.iter().map(|r| r.bloom.byte_len() as u64).sum();
            let files = view.runs.iter().map(|r| r.file_bytes()).sum::<u64>();
            (view.runs.len(), filters, files, view.gens.len())
        });
        Ok(KvStats {
            runs,
            unpacked_seqs: self
                .indexed_seq()?
                .unwrap_or(0)
                .saturating_sub(packed_through),
            generations,
            filter_bytes,
            disk_bytes: self.db.size_on_disk()? + run_bytes,
        })
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), KvError> {
        self.db.flush()?;
        Ok(())
    }
}

mod bloom;
mod gens;
mod packed;
mod runfile;
mod snapshot;
pub use packed::{MERGE_RUNS, PAGE_KEYS, RUN_EVENTS};

#[cfg(test)]
mod packing_tests;
#[cfg(test)]
mod tests;
