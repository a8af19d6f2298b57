//! Rendered events: the JSON of the events pages answered with (listings,
//! searches, entity histories, user timelines), kept within a bound, so that
//! the next page showing them (a console or dashboard polling the newest
//! events, a cursor walked again) reads neither the log nor serde: a page's
//! fetch (decompress, decode) and render stages were two thirds of its server
//! time.
//!
//! A stored event never changes (the log is append-only; retention drops
//! whole seqs), so the JSON of a seq is a function of the seq: a kept
//! rendering is exactly what rendering the log's copy again would write.
//!
//! The cache is two generations of maps: renderings enter the young one; when
//! it holds half the bound it becomes the old one and the old one is dropped;
//! a rendering found in the old one moves back to the young. Lookups and
//! inserts are one hash operation, no list is kept in access order, and at
//! most [`RENDERED_BYTES_MAX`] (estimated) are held.
//!
//! It owns no event: it never reads the log (the engine hands it what the log
//! returned) and never decides what a page holds (the engine asks only for the
//! seqs the index found, at or above the log's first seq). It keeps and gives
//! nothing below the seq the engine names as local (`Log::evicted_below`): an
//! evicted segment's events are read through the archive every time.

use super::{PageOf, Position};
use crate::event::StoredEvent;
use serde::ser::Error as _;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Most estimated bytes of renderings kept.
pub const RENDERED_BYTES_MAX: usize = 32 << 20;

/// Estimated bytes of one kept rendering besides its JSON: the map's slot,
/// the `Arc` and its counters, the box of the JSON.
const ENTRY_OVERHEAD: usize = 64;

/// One event's JSON as answers write it, and its position; a clone shares
/// them.
#[derive(Debug, Clone)]
pub struct Rendered(Arc<(Position, Box<str>)>);

impl Rendered {
    /// The rendering of `event`: serde's JSON of it, written into a buffer
    /// kept per thread and copied once at its length.
    pub fn of(event: &StoredEvent) -> serde_json::Result<Rendered> {
        thread_local! {
            static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
        }
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            serde_json::to_writer(&mut *buf, event)?;
            let json = std::str::from_utf8(&buf).map_err(serde_json::Error::custom)?;
            Ok(Rendered(Arc::new((Position::of(event), Box::from(json)))))
        })
    }

    /// Its place in event-time order (what a cursor after it encodes).
    pub fn position(&self) -> Position {
        self.0 .0
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        &self.0 .1
    }

    fn bytes(&self) -> usize {
        self.json().len() + ENTRY_OVERHEAD
    }
}

impl PageOf<Rendered> {
    /// The page's JSON: byte for byte what serde writes of a [`super::Page`]
    /// of the same events (the fields in the same order, the events'
    /// renderings spliced in).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let events: usize = self.events.iter().map(|e| e.json().len() + 1).sum();
        let mut out = Vec::with_capacity(events + 128);
        out.extend_from_slice(b"{\"events\":[");
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(e.json().as_bytes());
        }
        out.push(b']');
        if !self.hints.is_empty() {
            out.extend_from_slice(b",\"hints\":");
            serde_json::to_writer(&mut out, &self.hints)?;
        }
        out.extend_from_slice(b",\"next_cursor\":");
        serde_json::to_writer(&mut out, &self.next_cursor)?;
        if let Some(total) = self.total {
            out.extend_from_slice(b",\"total\":");
            serde_json::to_writer(&mut out, &total)?;
        }
        out.push(b'}');
        Ok(out)
    }
}

/// What the cache did, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderedStats {
    /// Events answered from a kept rendering.
    pub hits: u64,
    /// Events read from the log and rendered.
    pub misses: u64,
    /// Renderings kept.
    pub entries: u64,
    /// Their estimated bytes.
    pub bytes: u64,
}

#[derive(Default)]
struct Generations {
    young: HashMap<u64, Rendered>,
    young_bytes: usize,
    old: HashMap<u64, Rendered>,
    old_bytes: usize,
}

impl Generations {
    fn insert(&mut self, rendered: Rendered, half: usize) {
        let seq = rendered.position().seq;
        if self.young.contains_key(&seq) {
            return;
        }
        if self.young_bytes + rendered.bytes() > half {
            self.old = std::mem::take(&mut self.young);
            self.old_bytes = std::mem::take(&mut self.young_bytes);
        }
        if let Some(gone) = self.old.remove(&seq) {
            self.old_bytes -= gone.bytes();
        }
        self.young_bytes += rendered.bytes();
        self.young.insert(seq, rendered);
    }
}

/// The bounded cache of renderings (see the module documentation).
pub struct RenderCache {
    generations: Mutex<Generations>,
    bytes_max: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl RenderCache {
    /// A cache of at most `bytes_max` estimated bytes (0: keeps nothing).
    pub fn new(bytes_max: usize) -> RenderCache {
        RenderCache {
            generations: Mutex::new(Generations::default()),
            bytes_max,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept rendering of each of `seqs` (`None`: not kept, or below
    /// `from`, which are not looked up).
    pub fn get_many(&self, seqs: &[u64], from: u64) -> Vec<Option<Rendered>> {
        let half = self.bytes_max / 2;
        let mut g = self.lock();
        let out: Vec<Option<Rendered>> = seqs
            .iter()
            .map(|seq| {
                if *seq < from {
                    return None;
                }
                match g.young.get(seq) {
                    Some(r) => Some(r.clone()),
                    None => {
                        let r = g.old.get(seq).cloned()?;
                        g.insert(r.clone(), half);
                        Some(r)
                    }
                }
            })
            .collect();
        drop(g);
        let hits = out.iter().filter(|r| r.is_some()).count() as u64;
        let asked = seqs.iter().filter(|s| **s >= from).count() as u64;
        self.hits.fetch_add(hits, Relaxed);
        self.misses.fetch_add(asked - hits, Relaxed);
        out
    }

    /// Keeps `fresh` (renderings of events read from the log), those of seqs
    /// at or above `from`.
    pub fn put_many(&self, fresh: &[Rendered], from: u64) {
        let half = self.bytes_max / 2;
        let mut g = self.lock();
        for r in fresh
            .iter()
            .filter(|r| r.bytes() <= half && r.position().seq >= from)
        {
            g.insert(r.clone(), half);
        }
    }

    /// What the cache holds and did.
    pub fn stats(&self) -> RenderedStats {
        let g = self.lock();
        RenderedStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            entries: (g.young.len() + g.old.len()) as u64,
            bytes: (g.young_bytes + g.old_bytes) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(seq: u64, text_len: usize) -> Rendered {
        let json = format!("\"{}\"", "x".repeat(text_len));
        Rendered(Arc::new((Position { time: 0, seq }, json.into())))
    }

    #[test]
    fn the_cache_keeps_within_its_bound_and_keeps_what_is_read_again() {
        let one = rendered(0, 100).bytes();
        let cache = RenderCache::new(10 * one);
        cache.put_many(&(1..=5).map(|s| rendered(s, 100)).collect::<Vec<_>>(), 0);
        let got = cache.get_many(&[1, 2, 6], 0);
        assert_eq!(got.iter().filter(|r| r.is_some()).count(), 2);
        assert_eq!(got[0].as_ref().unwrap().json().len(), 102);
        // A sixth fills the young generation: it becomes the old one.
        cache.put_many(&(6..=12).map(|s| rendered(s, 100)).collect::<Vec<_>>(), 0);
        let s = cache.stats();
        assert!(s.bytes as usize <= 10 * one, "{s:?}");
        assert_eq!((s.hits, s.misses), (2, 1));
        // 1..=5 went when 6..=10 filled the young generation a second time;
        // 1 read again from the old generation before that would have stayed.
        assert!(cache.get_many(&[1], 0)[0].is_none());
        cache.get_many(&[7], 0);
        cache.put_many(&(13..=15).map(|s| rendered(s, 100)).collect::<Vec<_>>(), 0);
        let kept = cache.get_many(&[7, 8], 0);
        assert!(kept[0].is_some() && kept[1].is_none(), "read again, kept");
        assert!(cache.stats().bytes as usize <= 10 * one);
        // Nothing larger than half the bound is kept; a zero bound keeps nothing.
        cache.put_many(&[rendered(99, 10 * 100)], 0);
        assert!(cache.get_many(&[99], 0)[0].is_none());
        let none = RenderCache::new(0);
        none.put_many(&[rendered(1, 1)], 0);
        assert_eq!(none.stats().entries, 0);
    }

    /// Below the seq named local (an evicted segment's events), nothing is
    /// kept, given or counted.
    #[test]
    fn nothing_below_the_local_seq_is_kept_or_given() {
        let cache = RenderCache::new(1 << 20);
        cache.put_many(&(1..=10).map(|s| rendered(s, 10)).collect::<Vec<_>>(), 6);
        assert_eq!(cache.stats().entries, 5);
        cache.put_many(&(1..=5).map(|s| rendered(s, 10)).collect::<Vec<_>>(), 0);
        let got = cache.get_many(&[4, 5, 6, 7], 6);
        assert!(got[0].is_none() && got[1].is_none());
        assert!(got[2].is_some() && got[3].is_some());
        assert_eq!((cache.stats().hits, cache.stats().misses), (2, 0));
        assert!(cache.get_many(&[4], 0)[0].is_some());
    }

    #[test]
    fn a_rendered_page_is_byte_for_byte_serdes_page_of_the_same_events() {
        let mut gen = crate::testkit::EventGen::new(7);
        let events: Vec<StoredEvent> = (1..=3)
            .map(|seq| StoredEvent {
                seq,
                received_at: 1_700_000_000_000_000 + seq as i64,
                event: gen.next_event(),
                provenance: (seq != 2).then(crate::event::Provenance::cli),
            })
            .collect();
        let r = Rendered::of(&events[0]).unwrap();
        assert_eq!(r.json(), serde_json::to_string(&events[0]).unwrap());
        assert_eq!(r.position(), Position::of(&events[0]));
        let shapes = [
            (Vec::new(), None, None),
            (
                vec!["a \"hint\"".to_owned()],
                Some("c/+=".to_owned()),
                Some(7),
            ),
        ];
        for (hints, next_cursor, total) in shapes {
            for n in [0, 1, 3] {
                let page = PageOf {
                    events: events[..n].to_vec(),
                    hints: hints.clone(),
                    next_cursor: next_cursor.clone(),
                    total,
                };
                let rendered = PageOf {
                    events: page
                        .events
                        .iter()
                        .map(|e| Rendered::of(e).unwrap())
                        .collect(),
                    hints: hints.clone(),
                    next_cursor: next_cursor.clone(),
                    total,
                };
                assert_eq!(
                    String::from_utf8(rendered.to_json().unwrap()).unwrap(),
                    serde_json::to_string(&page).unwrap()
                );
            }
        }
    }
}
