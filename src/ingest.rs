//! Idempotent ingest: client-chosen event ids make a retried request safe.
//!
//! Owns the ids appended (or being appended) that the key index may not
//! have yet: a request reserves its ids before appending and settles them
//! after (their seqs, or their release on failure). Knows nothing of HTTP
//! or of the terminal: the server maps [`Idempotency`] (a request is all or
//! nothing) to its answers, `stele append` maps [`EachIdempotency`] (the
//! same rule event by event: its batches are only how it reads stdin) to its
//! acknowledgement lines.
//!
//! Invariants:
//! 1. Ids are unique per tenant (events without a tenant are a namespace of
//!    their own); another tenant's ids are never looked at, so a tenant can
//!    neither learn that one exists nor reserve it.
//! 2. Two requests posting one id at once: one appends, the other is told
//!    to retry (never two appends).
//! 3. A retry with the same content is a replay (the first seqs, nothing
//!    appended); the same id with other content is a conflict. Both entry
//!    points decide this with one lookup (`look_up`) and one digest.
//! 4. Reads your writes: an event acknowledged moments ago is found by id
//!    before the key index has it.
//! 5. The map is bounded by pruning what the key index has caught up with,
//!    whenever it doubled since the last prune (at least
//!    [`RECENT_PRUNE_AT`] entries).
//!
//! Cost: every event of a request passes here twice (reserve, settle), so the
//! posted events' digests are made before the lock is taken, in one reused
//! buffer, and the map is looked up through a key built in place: only a
//! reservation made anew allocates one.

use crate::event::{self, Event, StoredEvent};
use crate::query::{Engine, QueryError};
use crate::sync::Recover;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A SHA-256 digest of an event's content.
type Digest = [u8; 32];

/// An id reserved by an ingest request.
#[derive(Clone, Copy)]
struct Recent {
    /// `None` while its request is in flight.
    seq: Option<u64>,
    /// SHA-256 of the event's canonical encoding.
    digest: Digest,
}

/// The reservations of ids, by a key of the id and its tenant
/// ([`event::tenant_key`]): in
/// a B-tree, so every tenant's reservation of an id is one range, and the map
/// gives its memory back when pruned. Looked up through a key built in place:
/// only a reservation made anew allocates one.
#[derive(Default)]
struct RecentMap {
    map: BTreeMap<String, Recent>,
    /// The key of the latest lookup.
    scratch: String,
}

impl RecentMap {
    fn get(&mut self, id: &str, tenant: Option<&str>) -> Option<Recent> {
        event::tenant_key(&mut self.scratch, id, tenant);
        self.map.get(self.scratch.as_str()).copied()
    }

    /// Records `id` in `tenant` as stored at `seq`: its reservation's seq,
    /// or an entry of its own without a digest (an id Stele generated; only
    /// then is a key allocated).
    fn stored(&mut self, id: &str, tenant: Option<&str>, seq: u64) {
        event::tenant_key(&mut self.scratch, id, tenant);
        match self.map.get_mut(self.scratch.as_str()) {
            Some(r) => r.seq = Some(seq),
            None => {
                let r = Recent {
                    seq: Some(seq),
                    digest: [0; 32],
                };
                self.map.insert(self.scratch.clone(), r);
            }
        }
    }

    /// Reserves `id` in `tenant` as `r`, and gives back its key.
    fn insert(&mut self, id: &str, tenant: Option<&str>, r: Recent) -> String {
        event::tenant_key(&mut self.scratch, id, tenant);
        let key = self.scratch.clone();
        self.map.insert(key.clone(), r);
        key
    }

    /// The reservations of `id` in its first `max` tenants, in tenant order
    /// (no tenant first).
    fn of_id(&mut self, id: &str, max: usize) -> Vec<(Option<String>, Recent)> {
        event::tenant_key(&mut self.scratch, id, None);
        let prefix = self.scratch.as_str();
        self.map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(max)
            .map(|(k, r)| {
                let tenant = k.get(prefix.len() + 1..).map(str::to_owned);
                (tenant, *r)
            })
            .collect()
    }
}

/// At most this many tenants are named in an `ambiguous-id` problem.
pub const AMBIGUOUS_TENANTS_MAX: usize = 100;

/// Entries kept in `recent` before pruning those the key index has.
pub const RECENT_PRUNE_AT: usize = 100_000;

/// SHA-256 of the event *as posted*: a risk score Stele computed (`risk_rules`
/// set) is left out, so a retry compares equal to the stored event whatever the
/// rules would say now. `buf` is scratch space, reused from event to event.
fn digest(ev: &Event, buf: &mut Vec<u8>) -> Digest {
    buf.clear();
    if ev.risk_rules.is_some() {
        let posted = Event {
            risk_score: None,
            risk_rules: None,
            ..ev.clone()
        };
        event::encode_event(&posted, buf);
    } else {
        event::encode_event(ev, buf);
    }
    <sha2::Sha256 as sha2::Digest>::digest(&buf[..]).into()
}

/// The digest of each event whose id the client chose (`None` for the others),
/// made before any lock is taken.
fn client_digests(events: &[Event], client_id: &[bool]) -> Vec<Option<Digest>> {
    let mut buf = Vec::with_capacity(1024);
    events
        .iter()
        .zip(client_id)
        .map(|(ev, &client)| client.then(|| digest(ev, &mut buf)))
        .collect()
}

/// What to do with an ingest request whose events carry client ids.
pub enum Idempotency {
    /// None of the ids is known in its tenant: append (the ids are now
    /// reserved).
    New(Reserved),
    /// Every event was stored before with the same content: their seqs.
    Replay(Vec<u64>),
    /// Conflict: a sentence saying which id and why.
    Conflict(String),
}

/// Ids reserved by one request (their keys in `recent`), to settle once its
/// append is answered.
pub struct Reserved(Vec<String>);

/// What `stele append` does with one event of a batch (see
/// [`RecentIds::reserve_each`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Each {
    /// Append it (its id, if the client chose it, is reserved).
    New,
    /// Stored before with the same content, at this seq: not appended.
    Stored(u64),
    /// The same id and content as the event at this index of the batch:
    /// not appended (it gets that event's seq).
    Earlier(usize),
}

/// What to do with a `stele append` batch (see [`RecentIds::reserve_each`]).
pub enum EachIdempotency {
    /// Append the events marked [`Each::New`] (their ids are now reserved).
    New(Reserved, Vec<Each>),
    /// The event at `index` has an id stored (or earlier in the batch) with
    /// other content: nothing reserved.
    Conflict {
        /// Index in the batch.
        index: usize,
        /// Which id and why, in a sentence.
        why: String,
    },
    /// The event at `index` has an id another request is storing right now:
    /// nothing reserved; ask again once it settled.
    InFlight {
        /// Index in the batch.
        index: usize,
        /// Which id, in a sentence.
        why: String,
    },
}

/// What is known of a client id in its tenant, against an event's digest.
enum Found {
    /// Neither reserved nor stored.
    Absent,
    /// Stored with the same content, at this seq.
    Stored(u64),
    /// Reserved or stored with other content.
    Different,
    /// Reserved with the same content by a request still appending.
    InFlight,
}

/// Looks `ev`'s id up in its tenant: recent reservations, then the key
/// index and the log.
fn look_up(
    recent: &mut RecentMap,
    engine: &Engine,
    ev: &Event,
    d: &Digest,
) -> Result<Found, QueryError> {
    let stored = match recent.get(&ev.id, ev.tenant.as_deref()) {
        Some(r) => Some((r.seq, r.digest)),
        None => engine
            .get_by_id(&ev.id, ev.tenant.as_deref())?
            .map(|old| (Some(old.seq), digest(&old.event, &mut Vec::new()))),
    };
    Ok(match stored {
        None => Found::Absent,
        Some((_, od)) if od != *d => Found::Different,
        Some((None, _)) => Found::InFlight,
        Some((Some(seq), _)) => Found::Stored(seq),
    })
}

fn different(ev: &Event) -> String {
    format!("id {:?} is already stored with different content", ev.id)
}

fn in_flight(ev: &Event) -> String {
    format!("a request with id {:?} is still being stored; retry", ev.id)
}

/// Reserves the fresh ids (in flight until settled).
fn reserve_fresh(recent: &mut RecentMap, fresh: Vec<(&Event, Digest)>) -> Reserved {
    let in_flight = |digest| Recent { seq: None, digest };
    Reserved(
        fresh
            .into_iter()
            .map(|(ev, d)| recent.insert(&ev.id, ev.tenant.as_deref(), in_flight(d)))
            .collect(),
    )
}

/// The ids recently appended or being appended (see the module doc).
#[derive(Default)]
pub struct RecentIds {
    /// By id then tenant (ids are per tenant), with a digest of their content.
    recent: Mutex<RecentMap>,
    /// `recent`'s size that triggers the next prune.
    prune_at: AtomicU64,
}

impl RecentIds {
    /// Looks every client id up in its event's tenant (recent reservations,
    /// then the key index and the log) and reserves the new ones, all under
    /// one lock. Another tenant's ids are never looked at: a tenant can
    /// neither learn that one exists nor reserve it.
    pub fn reserve(
        &self,
        engine: &Engine,
        events: &[Event],
        client_id: &[bool],
    ) -> Result<Idempotency, QueryError> {
        let digests = client_digests(events, client_id);
        let mut recent = self.recent.exclusive();
        self.prune(&mut recent, engine);
        let mut known = Vec::new();
        let mut fresh = Vec::new();
        let mut in_request = HashSet::new();
        for (ev, d) in events.iter().zip(digests) {
            let Some(d) = d else {
                continue;
            };
            if !in_request.insert((ev.id.as_str(), ev.tenant.as_deref())) {
                return Ok(Idempotency::Conflict(format!(
                    "id {:?} appears twice in this request",
                    ev.id
                )));
            }
            match look_up(&mut recent, engine, ev, &d)? {
                Found::Absent => fresh.push((ev, d)),
                Found::Stored(seq) => known.push(seq),
                Found::Different => return Ok(Idempotency::Conflict(different(ev))),
                Found::InFlight => return Ok(Idempotency::Conflict(in_flight(ev))),
            }
        }
        if !known.is_empty() {
            if known.len() == events.len() {
                return Ok(Idempotency::Replay(known));
            }
            return Ok(Idempotency::Conflict(
                "the request mixes events already stored with new ones; send the new ones alone"
                    .into(),
            ));
        }
        Ok(Idempotency::New(reserve_fresh(&mut recent, fresh)))
    }

    /// [`RecentIds::reserve`]'s rule event by event, for `stele append`,
    /// whose batches are an artefact of reading standard input: an event
    /// stored before with the same content (or earlier in `events`) is a
    /// duplicate, not appended again, and the others of the batch are still
    /// appended. Nothing is reserved unless the answer is
    /// [`EachIdempotency::New`]. O(events) lookups, under one lock.
    pub fn reserve_each(
        &self,
        engine: &Engine,
        events: &[Event],
        client_id: &[bool],
    ) -> Result<EachIdempotency, QueryError> {
        let digests = client_digests(events, client_id);
        let mut recent = self.recent.exclusive();
        self.prune(&mut recent, engine);
        let mut each = Vec::with_capacity(events.len());
        let mut fresh = Vec::new();
        // By id and tenant: the first index in the batch and its digest.
        let mut in_batch: HashMap<(&str, Option<&str>), (usize, Digest)> = HashMap::new();
        let mut waiting = None;
        for (i, (ev, d)) in events.iter().zip(digests).enumerate() {
            let Some(d) = d else {
                each.push(Each::New);
                continue;
            };
            let key = (ev.id.as_str(), ev.tenant.as_deref());
            if let Some(&(first, fd)) = in_batch.get(&key) {
                if fd != d {
                    return Ok(EachIdempotency::Conflict {
                        index: i,
                        why: format!(
                            "id {:?} appears earlier in this input with different content",
                            ev.id
                        ),
                    });
                }
                each.push(match each[first] {
                    Each::Stored(seq) => Each::Stored(seq),
                    _ => Each::Earlier(first),
                });
                continue;
            }
            in_batch.insert(key, (i, d));
            match look_up(&mut recent, engine, ev, &d)? {
                Found::Absent => {
                    fresh.push((ev, d));
                    each.push(Each::New);
                }
                Found::Stored(seq) => each.push(Each::Stored(seq)),
                Found::Different => {
                    return Ok(EachIdempotency::Conflict {
                        index: i,
                        why: different(ev),
                    })
                }
                Found::InFlight => {
                    // Conflicts later in the batch still win over a wait.
                    waiting.get_or_insert(i);
                    each.push(Each::New);
                }
            }
        }
        if let Some(index) = waiting {
            return Ok(EachIdempotency::InFlight {
                index,
                why: in_flight(&events[index]),
            });
        }
        Ok(EachIdempotency::New(
            reserve_fresh(&mut recent, fresh),
            each,
        ))
    }

    /// Prunes `recent` of what the key index has caught up with when it
    /// doubled since the last prune (at least [`RECENT_PRUNE_AT`]), so a
    /// lagging indexer never makes every request walk the whole map.
    fn prune(&self, recent: &mut RecentMap, engine: &Engine) {
        let prune_at = self.prune_at.load(Ordering::Relaxed) as usize;
        if recent.map.len() >= prune_at.max(RECENT_PRUNE_AT) {
            let indexed = engine.indexes().indexed_seq();
            recent.map.retain(|_, r| r.seq.is_none_or(|s| s > indexed));
            self.prune_at
                .store(recent.map.len() as u64 * 2, Ordering::Relaxed);
        }
    }

    /// The events with `id` in the tenants `among` (`None`: every tenant,
    /// and the events without one), at most [`AMBIGUOUS_TENANTS_MAX`] + 1,
    /// in tenant order (no tenant first). Reads your writes: an event
    /// acknowledged moments ago is found through `recent` before the key
    /// index has it. O(log n) per tenant asked, or one range of the id.
    pub fn find_by_id(
        &self,
        engine: &Engine,
        id: &str,
        among: Option<&[Option<String>]>,
    ) -> Result<Vec<StoredEvent>, QueryError> {
        let max = AMBIGUOUS_TENANTS_MAX + 1;
        // Per tenant: a seq acknowledged moments ago (to be read), or the event the
        // key index led to (already read and confirmed).
        enum Hit {
            Recent(u64),
            Read(Box<StoredEvent>),
        }
        let mut hits: BTreeMap<Option<String>, Hit> = BTreeMap::new();
        {
            let mut recent = self.recent.exclusive();
            match among {
                Some(tenants) => {
                    for t in tenants {
                        let r = recent.get(id, t.as_deref());
                        if let Some(seq) = r.and_then(|r| r.seq) {
                            hits.insert(t.clone(), Hit::Recent(seq));
                        }
                    }
                }
                None => {
                    for (t, r) in recent.of_id(id, max) {
                        if let Some(seq) = r.seq {
                            hits.insert(t, Hit::Recent(seq));
                        }
                    }
                }
            }
        }
        match among {
            Some(tenants) => {
                for t in tenants {
                    if hits.contains_key(t) {
                        continue;
                    }
                    if let Some(ev) = engine.get_by_id(id, t.as_deref())? {
                        hits.insert(t.clone(), Hit::Read(Box::new(ev)));
                    }
                }
            }
            None => {
                for ev in engine.events_of_id(id, max)? {
                    hits.entry(ev.event.tenant.clone())
                        .or_insert(Hit::Read(Box::new(ev)));
                }
            }
        }
        let mut out = Vec::new();
        for (t, hit) in hits.into_iter().take(max) {
            match hit {
                Hit::Recent(seq) => out.extend(engine.get_checked(seq, id, t.as_deref())?),
                Hit::Read(ev) => out.push(*ev),
            }
        }
        Ok(out)
    }

    /// Records the seqs of reserved ids, or releases them after a failure.
    pub fn settle<'a>(
        &self,
        reserved: &Reserved,
        events: impl IntoIterator<Item = &'a Event>,
        first_seq: Option<u64>,
    ) {
        let mut recent = self.recent.exclusive();
        match first_seq {
            Some(first) => {
                // Every id, generated ones too (digest unknown: a later post
                // of a generated id is a conflict, never a replay), so a
                // get by id right after the 201 finds it.
                for (i, ev) in events.into_iter().enumerate() {
                    recent.stored(&ev.id, ev.tenant.as_deref(), first + i as u64);
                }
            }
            None => {
                for key in &reserved.0 {
                    recent.map.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::index::{IndexConfig, Indexes};
    use crate::log::{Log, LogConfig};
    use std::sync::Arc;

    fn engine(dir: &std::path::Path) -> Engine {
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
        let log = Arc::new(Log::open(dir, LogConfig::default(), clock.clone()).unwrap());
        let idx = Arc::new(Indexes::open(dir, log.clone(), IndexConfig::default()).unwrap());
        Engine::new(log, idx, clock, [7; 32])
    }

    fn ev(id: &str, tenant: Option<&str>, action: &str) -> Event {
        let mut v = serde_json::json!({"id": id, "action": action, "actor": "a"});
        if let Some(t) = tenant {
            v["tenant"] = t.into();
        }
        event::parse_event(&v, || unreachable!("the id is given")).unwrap()
    }

    /// Reserves, appends and settles like the server does.
    fn store(ids: &RecentIds, engine: &Engine, events: &[Event]) -> Idempotency {
        let client = vec![true; events.len()];
        let outcome = ids.reserve(engine, events, &client).unwrap();
        if let Idempotency::New(reserved) = &outcome {
            let ack = engine
                .log()
                .append(events, &event::Provenance::cli())
                .unwrap();
            ids.settle(reserved, events, Some(ack.first_seq));
        }
        outcome
    }

    fn conflict(i: Idempotency) -> String {
        match i {
            Idempotency::Conflict(why) => why,
            _ => panic!("expected a conflict"),
        }
    }

    #[test]
    fn a_retry_replays_and_other_content_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, ids) = (engine(dir.path()), RecentIds::default());
        let batch = [ev("a", None, "x"), ev("b", None, "x")];
        assert!(matches!(store(&ids, &engine, &batch), Idempotency::New(_)));
        match store(&ids, &engine, &batch) {
            Idempotency::Replay(seqs) => assert_eq!(seqs, [1, 2]),
            _ => panic!("expected a replay"),
        }
        let why = conflict(store(&ids, &engine, &[ev("a", None, "y")]));
        assert!(why.contains("different content"), "{why}");
        let why = conflict(store(
            &ids,
            &engine,
            &[ev("a", None, "x"), ev("c", None, "x")],
        ));
        assert!(why.contains("mixes events already stored"), "{why}");
        assert_eq!(engine.log().last_seq(), 2, "nothing appended twice");
    }

    #[test]
    fn an_id_in_flight_or_twice_in_a_request_conflicts_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, ids) = (engine(dir.path()), RecentIds::default());
        let one = [ev("a", None, "x")];
        let Idempotency::New(reserved) = ids.reserve(&engine, &one, &[true]).unwrap() else {
            panic!("new");
        };
        let why = conflict(ids.reserve(&engine, &one, &[true]).unwrap());
        assert!(why.contains("still being stored"), "{why}");
        ids.settle(&reserved, &one, None);
        assert!(matches!(
            ids.reserve(&engine, &one, &[true]).unwrap(),
            Idempotency::New(_)
        ));
        let twice = [ev("b", None, "x"), ev("b", None, "x")];
        let why = conflict(ids.reserve(&engine, &twice, &[true, true]).unwrap());
        assert!(why.contains("appears twice"), "{why}");
        // Generated ids (client_id false) are never looked up.
        assert!(matches!(
            ids.reserve(&engine, &twice, &[false, false]).unwrap(),
            Idempotency::New(_)
        ));
    }

    #[test]
    fn ids_are_per_tenant_and_read_back_before_the_index_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, ids) = (engine(dir.path()), RecentIds::default());
        assert!(matches!(
            store(&ids, &engine, &[ev("a", Some("t1"), "x")]),
            Idempotency::New(_)
        ));
        assert!(matches!(
            store(&ids, &engine, &[ev("a", Some("t2"), "y")]),
            Idempotency::New(_)
        ));
        let t1 = ids
            .find_by_id(&engine, "a", Some(&[Some("t1".into())]))
            .unwrap();
        assert_eq!(t1.len(), 1);
        assert_eq!(t1[0].event.tenant.as_deref(), Some("t1"));
        let all = ids.find_by_id(&engine, "a", None).unwrap();
        let tenants: Vec<_> = all.iter().map(|e| e.event.tenant.clone()).collect();
        assert_eq!(tenants, [Some("t1".into()), Some("t2".into())]);
        assert!(ids.find_by_id(&engine, "nope", None).unwrap().is_empty());
    }

    /// An id's reservations are found by id and tenant, and listed by id in
    /// tenant order (no tenant first), whatever tenants other ids have: keys
    /// of ids that extend one another ("a", "a-b") never mix.
    #[test]
    fn the_recent_map_finds_an_ids_tenants_and_no_other_ids() {
        let r = |seq| Recent {
            seq,
            digest: [0; 32],
        };
        let mut m = RecentMap::default();
        let keys = [
            m.insert("a", Some("t2"), r(None)),
            m.insert("a", None, r(Some(1))),
            m.insert("a", Some("t1"), r(None)),
            m.insert("a-b", None, r(Some(5))),
            m.insert("a", Some("\t"), r(Some(6))),
        ];
        // A reservation settles in place; an id never reserved gets an entry.
        m.stored("a", Some("t1"), 4);
        m.stored("b", Some("t1"), 3);
        assert_eq!(m.map.len(), 6);
        assert_eq!(
            keys,
            ["a\0\u{1}t2", "a\0", "a\0\u{1}t1", "a-b\0", "a\0\u{1}\t"]
        );
        let seqs = |v: Vec<(Option<String>, Recent)>| -> Vec<(Option<String>, Option<u64>)> {
            v.into_iter().map(|(t, r)| (t, r.seq)).collect()
        };
        assert_eq!(
            seqs(m.of_id("a", 10)),
            [
                (None, Some(1)),
                (Some("\t".into()), Some(6)),
                (Some("t1".into()), Some(4)),
                (Some("t2".into()), None)
            ]
        );
        assert_eq!(seqs(m.of_id("a", 2)).len(), 2);
        assert_eq!(seqs(m.of_id("a-b", 10)), [(None, Some(5))]);
        assert!(m.of_id("c", 10).is_empty());
        assert_eq!(m.get("a", Some("t1")).and_then(|r| r.seq), Some(4));
        assert!(m.get("a", Some("t3")).is_none() && m.get("a-", None).is_none());
    }

    /// Reserves event by event like `stele append`, appends the new ones
    /// and settles them.
    fn store_each(ids: &RecentIds, engine: &Engine, events: &[Event]) -> EachIdempotency {
        let client = vec![true; events.len()];
        let outcome = ids.reserve_each(engine, events, &client).unwrap();
        if let EachIdempotency::New(reserved, each) = &outcome {
            let fresh: Vec<Event> = events
                .iter()
                .zip(each)
                .filter(|(_, e)| **e == Each::New)
                .map(|(ev, _)| ev.clone())
                .collect();
            let ack = engine
                .log()
                .append(&fresh, &event::Provenance::cli())
                .unwrap();
            ids.settle(reserved, &fresh, Some(ack.first_seq));
        }
        outcome
    }

    fn each(i: EachIdempotency) -> Vec<Each> {
        match i {
            EachIdempotency::New(_, each) => each,
            _ => panic!("expected new"),
        }
    }

    #[test]
    fn event_by_event_duplicates_are_skipped_and_other_content_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, ids) = (engine(dir.path()), RecentIds::default());
        let got = each(store_each(
            &ids,
            &engine,
            &[ev("a", None, "x"), ev("b", None, "x"), ev("a", None, "x")],
        ));
        assert_eq!(got, [Each::New, Each::New, Each::Earlier(0)]);
        // Stored before (found through `recent`, then through the key index
        // by a fresh map, as a second `stele append` run would).
        let again = [
            ev("c", None, "x"),
            ev("a", None, "x"),
            ev("a", Some("t"), "x"),
        ];
        assert_eq!(
            each(ids.reserve_each(&engine, &again, &[true; 3]).unwrap()),
            [Each::New, Each::Stored(1), Each::New]
        );
        assert!(engine
            .indexes()
            .wait_indexed(2, std::time::Duration::from_secs(30)));
        let fresh = RecentIds::default();
        assert_eq!(
            each(store_each(&fresh, &engine, &again)),
            [Each::New, Each::Stored(1), Each::New]
        );
        match fresh.reserve_each(
            &engine,
            &[ev("d", None, "x"), ev("b", None, "y")],
            &[true; 2],
        ) {
            Ok(EachIdempotency::Conflict { index, why }) => {
                assert_eq!(index, 1);
                assert!(why.contains("different content"), "{why}");
            }
            _ => panic!("expected a conflict"),
        }
        match fresh.reserve_each(
            &engine,
            &[ev("e", None, "x"), ev("e", None, "y")],
            &[true; 2],
        ) {
            Ok(EachIdempotency::Conflict { index, why }) => {
                assert_eq!(index, 1);
                assert!(why.contains("earlier in this input"), "{why}");
            }
            _ => panic!("expected a conflict"),
        }
        // Nothing reserved by a conflict: "d" and "e" are still new.
        assert_eq!(
            each(
                fresh
                    .reserve_each(
                        &engine,
                        &[ev("d", None, "x"), ev("e", None, "x")],
                        &[true; 2]
                    )
                    .unwrap()
            ),
            [Each::New, Each::New]
        );
    }

    #[test]
    fn event_by_event_an_id_in_flight_reserves_nothing_until_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, ids) = (engine(dir.path()), RecentIds::default());
        let one = [ev("a", None, "x")];
        let EachIdempotency::New(reserved, _) = ids.reserve_each(&engine, &one, &[true]).unwrap()
        else {
            panic!("new");
        };
        let two = [ev("b", None, "x"), ev("a", None, "x")];
        match ids.reserve_each(&engine, &two, &[true; 2]).unwrap() {
            EachIdempotency::InFlight { index, .. } => assert_eq!(index, 1),
            _ => panic!("expected in flight"),
        }
        let ack = engine
            .log()
            .append(&one, &event::Provenance::cli())
            .unwrap();
        ids.settle(&reserved, &one, Some(ack.first_seq));
        assert_eq!(
            each(ids.reserve_each(&engine, &two, &[true; 2]).unwrap()),
            [Each::New, Each::Stored(1)],
            "\"b\" was not left reserved by the wait"
        );
    }
}
