//! The key index: exact lookups of events by id, time and the keyed fields, in sled.
//!
//! A cache of the segment log, never a source of truth: if it fails to open, has another
//! format version, or disagrees with the log, the caller deletes the directory and
//! rebuilds it from the segments. sled 0.34 is beta, so the usage is kept simple:
//! plain trees, ordered byte keys, inserts, removes and range scans.
//!
//! ```text
//! tree         key                                                  value
//! meta         "format"                                             u32 BE (= FORMAT_VERSION)
//!              "indexed_seq"                                        u64 BE
//!              "pending"                                            u64 BE (an apply or truncate in flight)
//! ids          idk(id) ++ tenantk(tenant)                           seq u64 BE
//!
//! idk(id)    = 0x01 ++ 16-byte UUID (canonical UUID ids), or 0x00 ++ str(id) (any other id)
//! tenantk(t) = 0x00 (no tenant), or 0x01 ++ t as UTF-8
//! str(s)     = len(s) as unsigned LEB128 (1 byte below 128, 2 bytes below 16384) ++ bytes
//! ```
//!
//! Only ids live here. Ordered listings (by entity, user, tenant, correlation, session,
//! time) are served by the full-text index, which holds the same fields as raw terms
//! sorted by seq. ADR: sled 0.34 measured at 1,000,000 events: ids alone cost
//! ~150–220 bytes/event at 148–207k events/s; ordered key families for those listings
//! cost 1,658 bytes/event (3× the segment bytes) at 13k events/s, so they were dropped
//! (format version 4).
//!
//! Invariants:
//! 1. After [`KvIndex::open`] returns, no key refers to a seq above `indexed_seq`: an
//!    apply or truncate interrupted by a crash left a `pending` mark, and open removes
//!    what it may have written before anything else reads the index.
//! 2. Ids are per tenant (events without a tenant are a namespace of their own): an
//!    `(id, tenant)` pair maps to the lowest seq it was applied with; pairs are meant to
//!    be unique (the API layer enforces idempotency before appending). `idk(id)` is
//!    self-delimiting, so the keys of one id, one per tenant that has it, are the range
//!    under that prefix ([`KvIndex::tenants_of_id`]).
//! 3. One writer: [`KvIndex::apply`] and [`KvIndex::truncate_from`] are called by one
//!    thread (the indexer) at a time; readers may run concurrently.
//!
//! Writes are single sled inserts and removes, never `Batch`es or transactions: sled 0.34
//! applies a batch under a process-wide write lock (`concurrency_control::write`) that
//! stalls every reader of every tree, and once any batch has run, every later operation
//! takes that lock's read side. Measured on 300,000 events: get-by-id p99 during ingest
//! 13.7 ms with 256-key batches, 82 µs with single inserts, which were also faster.
//! Atomicity comes from the `pending` mark instead (invariant 1). Nothing is fsynced per
//! apply: durability comes from the log, and [`KvIndex::flush`] is called at checkpoints.

use crate::event::StoredEvent;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The version of the key layout above, stored under `meta/"format"`. Version 3 made
/// ids per tenant (version 2 keyed `ids` by the id alone); version 4 dropped the ordered
/// key families (`time`, `entity`, `user`, `tenant`, `correlation`, `session`), never
/// written in production, and the write-only `segments` tree. An index of another
/// version does not open, and the caller rebuilds it from the log.
pub const FORMAT_VERSION: u32 = 4;

const META_FORMAT: &[u8] = b"format";
const META_INDEXED_SEQ: &[u8] = b"indexed_seq";
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
    /// A key or value does not decode.
    #[error("the key index is damaged: {0}")]
    Damaged(String),
}

impl From<sled::Error> for KvError {
    fn from(e: sled::Error) -> Self {
        KvError::Sled(e.to_string())
    }
}

/// The sled-backed key index. `Send + Sync`; share it in an `Arc`.
pub struct KvIndex {
    db: sled::Db,
    meta: sled::Tree,
    ids: sled::Tree,
}

impl std::fmt::Debug for KvIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvIndex").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Key encoding
// ---------------------------------------------------------------------------------------

/// The self-delimiting start of the `ids` keys of an event id, `idk(id)`: a canonical
/// (lower-case, hyphenated) UUID — what Stele generates — as `0x01 ++ its 16 bytes`,
/// anything else as `0x00 ++ str(id)`. Halves the bytes of the one key every event has.
fn id_prefix(id: &str) -> Vec<u8> {
    match uuid::Uuid::try_parse(id) {
        Ok(u) if u.hyphenated().to_string() == id => {
            let mut k = Vec::with_capacity(17 + 1);
            k.push(1);
            k.extend_from_slice(u.as_bytes());
            k
        }
        _ => {
            let mut k = Vec::with_capacity(3 + id.len() + 1);
            k.push(0);
            put_str(&mut k, id);
            k
        }
    }
}

/// Appends `tenantk(tenant)`: `0x00` for no tenant, `0x01 ++ UTF-8` for one.
fn put_tenant(out: &mut Vec<u8>, tenant: Option<&str>) {
    match tenant {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(t.as_bytes());
        }
    }
}

/// The `ids` key of the event with `id` in `tenant`: `idk(id) ++ tenantk(tenant)`.
pub fn id_key(id: &str, tenant: Option<&str>) -> Vec<u8> {
    let mut k = id_prefix(id);
    k.reserve(1 + tenant.map_or(0, str::len));
    put_tenant(&mut k, tenant);
    k
}

/// Inverse of [`id_key`]: the id and the tenant.
fn id_of_key(k: &[u8]) -> Result<(String, Option<String>), KvError> {
    let damaged = || KvError::Damaged(format!("id key {} does not decode", hex::encode(k)));
    let (id, rest) = match k.split_first() {
        Some((1, b)) if b.len() >= 16 => {
            let u = uuid::Uuid::from_slice(&b[..16]).map_err(|_| damaged())?;
            (u.hyphenated().to_string(), &b[16..])
        }
        Some((0, b)) => {
            let (len, used) = get_len(b).ok_or_else(damaged)?;
            let end = used
                .checked_add(len)
                .filter(|&e| e <= b.len())
                .ok_or_else(damaged)?;
            let id = String::from_utf8(b[used..end].to_vec()).map_err(|_| damaged())?;
            (id, &b[end..])
        }
        _ => return Err(damaged()),
    };
    let tenant = match rest.split_first() {
        Some((0, [])) => None,
        Some((1, t)) => Some(String::from_utf8(t.to_vec()).map_err(|_| damaged())?),
        _ => return Err(damaged()),
    };
    Ok((id, tenant))
}

/// Reads an unsigned-LEB128 length written by [`put_str`]: the length and the bytes
/// it took.
fn get_len(b: &[u8]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    for (i, &x) in b.iter().enumerate().take(5) {
        len |= usize::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return Some((len, i + 1));
        }
    }
    None
}

/// Appends `s` as unsigned-LEB128 length ++ bytes.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut len = s.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(s.as_bytes());
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

/// Keys to write to one tree, each with its value (`None`: remove the key).
type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

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
    /// index has no version. If an apply or truncate was interrupted by a crash, removes
    /// every key above `indexed_seq` first (a full scan, after unclean shutdowns only).
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
                ids: t("ids")?,
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

        index
            .finish_interrupted()
            .map_err(|e| open_err(e.to_string()))?;
        Ok(index)
    }

    /// Removes the keys an interrupted apply or truncate may have left above
    /// `indexed_seq` (invariant 2).
    fn finish_interrupted(&self) -> Result<(), KvError> {
        let Some(pending) = self.get_meta(META_PENDING)? else {
            return Ok(());
        };
        let from = self.indexed_seq()?.map_or(1, |s| s + 1);
        if pending >= from {
            tracing::warn!(
                "The key index was interrupted while writing seqs {from}..={pending}; removing what it wrote."
            );
            self.truncate_from(from, &[])?;
        } else {
            self.meta.remove(META_PENDING)?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<u64>, KvError> {
        match self.meta.get(key)? {
            Some(v) => Ok(Some(be_u64(&v, "meta value")?)),
            None => Ok(None),
        }
    }

    /// Writes `(key, value)` pairs (`None`: remove), one sled operation each (see the
    /// module documentation for why not batches).
    fn write(tree: &sled::Tree, writes: Writes) -> Result<(), KvError> {
        for (k, v) in writes {
            match v {
                Some(v) => tree.insert(k, v)?,
                None => tree.remove(k)?,
            };
        }
        Ok(())
    }

    /// The last seq whose keys were all applied; `None` if nothing was.
    pub fn indexed_seq(&self) -> Result<Option<u64>, KvError> {
        self.get_meta(META_INDEXED_SEQ)
    }

    /// Applies the keys of a run of events with consecutive ascending seqs and sets
    /// `indexed_seq` to the last one (it never goes down: re-applying events already
    /// applied is harmless and changes nothing). An id already mapped to a lower seq keeps
    /// that mapping.
    pub fn apply(&self, events: &[StoredEvent]) -> Result<(), KvError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        debug_assert!(
            events.windows(2).all(|w| w[0].seq < w[1].seq),
            "apply takes events in ascending seq order"
        );
        let hi = last.seq;
        let indexed = self.indexed_seq()?;
        if let Some(s) = indexed {
            if events[0].seq > s + 1 {
                tracing::warn!(
                    "The key index skips seqs {}..{}: it had indexed up to {s}.",
                    s + 1,
                    events[0].seq
                );
            }
        }
        // Mark the seqs in flight before any key lands (see `open`).
        let pending = self.get_meta(META_PENDING)?.map_or(hi, |p| p.max(hi));
        self.meta.insert(META_PENDING, &pending.to_be_bytes())?;

        let mut ids = Vec::with_capacity(events.len());
        let mut seen: HashSet<(&str, Option<&str>)> = HashSet::with_capacity(events.len());
        for ev in events {
            let (id, tenant) = (ev.event.id.as_str(), ev.event.tenant.as_deref());
            if !seen.insert((id, tenant)) {
                continue; // a lower seq of this run already has it
            }
            let key = id_key(id, tenant);
            if let Some(v) = self.ids.get(&key)? {
                if be_u64(&v, "ids value")? <= ev.seq {
                    continue;
                }
            }
            ids.push((key, Some(ev.seq.to_be_bytes().to_vec())));
        }
        Self::write(&self.ids, ids)?;

        let indexed = indexed.map_or(hi, |s| s.max(hi));
        self.meta.insert(META_INDEXED_SEQ, &indexed.to_be_bytes())?;
        if pending <= indexed {
            self.meta.remove(META_PENDING)?;
        }
        Ok(())
    }

    /// The seq of the event with this id in `tenant` (`None`: among the events
    /// without a tenant).
    pub fn seq_of_id(&self, id: &str, tenant: Option<&str>) -> Result<Option<u64>, KvError> {
        match self.ids.get(id_key(id, tenant))? {
            Some(v) => Ok(Some(be_u64(&v, "ids value")?)),
            None => Ok(None),
        }
    }

    /// The tenants that hold an event with this id (`None`: the events without a
    /// tenant), each with its seq, in key order (`None` first, then tenants by their
    /// bytes); at most `max` of them. One range scan under the id's prefix.
    pub fn tenants_of_id(
        &self,
        id: &str,
        max: usize,
    ) -> Result<Vec<(Option<String>, u64)>, KvError> {
        let mut out = Vec::new();
        for entry in self.ids.scan_prefix(id_prefix(id)).take(max) {
            let (k, v) = entry?;
            let (_, tenant) = id_of_key(&k)?;
            out.push((tenant, be_u64(&v, "ids value")?));
        }
        Ok(out)
    }

    /// Removes every key of the events with seq `>= from` (the index ran ahead of the
    /// log). `indexed_seq` becomes `min(indexed_seq, from - 1)`, or
    /// disappears when `from <= 1`.
    ///
    /// `events_to_remove` are the events being removed, if the caller still has them:
    /// when they cover every seq from `from` up to what the index may hold, only their
    /// keys are removed; otherwise (e.g. empty) every tree is scanned, O(size).
    pub fn truncate_from(
        &self,
        from: u64,
        events_to_remove: &[StoredEvent],
    ) -> Result<(), KvError> {
        let from = from.max(1);
        let indexed = self.indexed_seq()?;
        let pending = self.get_meta(META_PENDING)?;
        let held = indexed.max(pending); // the highest seq that may have keys

        // First mark the range as in flight, so a crash in the middle is finished by open.
        if let Some(h) = held.filter(|&h| h >= from) {
            self.meta.insert(META_PENDING, &h.to_be_bytes())?;
        }
        match indexed {
            Some(s) if s >= from && from > 1 => {
                self.meta
                    .insert(META_INDEXED_SEQ, &(from - 1).to_be_bytes())?;
            }
            Some(s) if s >= from => {
                self.meta.remove(META_INDEXED_SEQ)?;
            }
            _ => {}
        }

        let removing: Vec<&StoredEvent> =
            events_to_remove.iter().filter(|e| e.seq >= from).collect();
        let covered = match held {
            None => true,
            Some(h) if h < from => true,
            Some(h) => {
                removing.first().is_some_and(|e| e.seq == from)
                    && removing.windows(2).all(|w| w[1].seq == w[0].seq + 1)
                    && removing.last().is_some_and(|e| e.seq >= h)
            }
        };
        if covered {
            self.remove_events(from, &removing)?;
        } else {
            self.remove_by_scan(from)?;
        }
        self.meta.remove(META_PENDING)?;
        Ok(())
    }

    /// Removes the keys of `events` (all with seq `>= from`).
    fn remove_events(&self, from: u64, events: &[&StoredEvent]) -> Result<(), KvError> {
        let mut ids = Vec::new();
        for ev in events {
            let key = id_key(&ev.event.id, ev.event.tenant.as_deref());
            if let Some(v) = self.ids.get(&key)? {
                if be_u64(&v, "ids value")? >= from {
                    ids.push((key, None));
                }
            }
        }
        Self::write(&self.ids, ids)?;
        Ok(())
    }

    /// One step of removing the keys of seqs below `below` (retention
    /// dropped them from the log): scans the ids from `resume` on, removes at
    /// most `max` of them in one batch, and returns whether the scan reached
    /// the end. Steps keep the indexer responsive: readers never
    /// need these keys gone (a dropped seq is absent from the log).
    pub fn remove_below_step(
        &self,
        below: u64,
        resume: &mut Option<Vec<u8>>,
        max: usize,
    ) -> Result<bool, KvError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        let iter = match resume.take() {
            Some(k) => self
                .ids
                .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded)),
            None => self.ids.iter(),
        };
        let mut last = None;
        for entry in iter {
            let (k, v) = entry?;
            if be_u64(&v, "ids value")? < below {
                batch.remove(k.clone());
                n += 1;
            }
            last = Some(k);
            if n >= max {
                break;
            }
        }
        self.ids.apply_batch(batch)?;
        if n >= max {
            *resume = last.map(|k| k.to_vec());
            return Ok(false);
        }
        Ok(true)
    }

    /// Removes every key with a seq `>= from`, scanning every tree.
    fn remove_by_scan(&self, from: u64) -> Result<(), KvError> {
        self.remove_matching(|seq| seq >= from)
    }

    /// Removes every id whose seq matches, scanning the ids.
    fn remove_matching(&self, doomed: impl Fn(u64) -> bool) -> Result<(), KvError> {
        let mut ids = Vec::new();
        for entry in self.ids.iter() {
            let (k, v) = entry?;
            if doomed(be_u64(&v, "ids value")?) {
                ids.push((k.to_vec(), None));
            }
        }
        Self::write(&self.ids, ids)?;
        Ok(())
    }

    /// Every `(tenant, id, seq)` entry, in ascending seq order (for `stele check`).
    pub fn all_id_seqs(&self) -> Result<Vec<(Option<String>, String, u64)>, KvError> {
        let mut out = Vec::with_capacity(self.ids.len());
        for entry in self.ids.iter() {
            let (k, v) = entry?;
            let (id, tenant) = id_of_key(&k)?;
            out.push((tenant, id, be_u64(&v, "ids value")?));
        }
        out.sort_unstable_by(|a, b| {
            a.2.cmp(&b.2)
                .then_with(|| a.1.cmp(&b.1))
                .then_with(|| a.0.cmp(&b.0))
        });
        Ok(out)
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), KvError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
