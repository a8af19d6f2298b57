//! `stele query --data-dir`: the listing answered from the segments alone,
//! through the read-only open ([`stele::log::ReadOnly`]: no LOCK, nothing
//! repaired), so it works beside a running daemon and on a backup.
//!
//! The parameters are parsed by [`Query::parse`] and matched by
//! [`Filter::matches_fields`], exactly as the server parses them and as its
//! streams match, so a filter means the same offline. Full text (`q`) needs
//! the daemon's tantivy index, which a backup does not hold: it is refused
//! with a message saying to use `--url`.
//!
//! Order: by seq, the log is walked in the asked direction and the walk
//! stops after `-n` matches; by time (the server's default), the whole log
//! is walked once keeping the best `-n` `(time, seq)` keys in a bounded heap,
//! then those events are read by seq. Ties in time go by seq, as the
//! server's `(time, seq)` key.

use super::output::Printer;
use super::{bad, failed, output_error, Ask, Fail};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::path::Path;
use stele::event::StoredEvent;
use stele::log::{Direction, ReadOnly};
use stele::query::{event_time, Filter, Query};

pub(crate) fn list<W: Write>(dir: &Path, ask: &Ask, p: &mut Printer<W>) -> Result<(), Fail> {
    let mut pairs = ask.pairs.clone();
    pairs.push(("sort".into(), ask.sort.into()));
    pairs.push(("order".into(), ask.order.into()));
    let now = chrono::Utc::now().timestamp_micros();
    let query = Query::parse(&pairs, now).map_err(|e| bad(e.to_string()))?;
    if query.filter.text.is_some() {
        return Err(bad(
            "full-text search (q) needs the daemon's text index: ask the daemon with --url; \
             offline, every other filter works",
        ));
    }
    let log = ReadOnly::open(dir)
        .map_err(|e| failed(format!("cannot read the log in {}: {e}", dir.display())))?;
    let desc = ask.order == "desc";
    let read_error = |e: stele::log::Error| failed(format!("reading {}: {e}", dir.display()));
    if ask.sort == "seq" {
        let walk = log.range(
            ..,
            if desc {
                Direction::Backward
            } else {
                Direction::Forward
            },
        );
        let mut left = ask.count;
        for ev in walk {
            if left == 0 {
                break;
            }
            let ev = ev.map_err(read_error)?;
            if query.filter.matches_fields(&ev) {
                print(p, &ev)?;
                left -= 1;
            }
        }
        return Ok(());
    }
    let keys = best_by_time(&log, &query.filter, ask.count, desc).map_err(read_error)?;
    for (_, seq) in keys {
        match log.get(seq).map_err(read_error)? {
            Some(ev) => print(p, &ev)?,
            None => return Err(failed(format!("seq {seq} vanished from {}", dir.display()))),
        }
    }
    Ok(())
}

/// The `(time, seq)` keys of the `count` matching events that come first in
/// time order (`desc`: the greatest), in that order. Holds at most `count`
/// keys.
fn best_by_time(
    log: &ReadOnly,
    filter: &Filter,
    count: u64,
    desc: bool,
) -> Result<Vec<(i64, u64)>, stele::log::Error> {
    let count = count as usize;
    // Descending keeps the greatest keys: a min-heap (Reverse) whose top is
    // the one to evict; ascending keeps the least: a max-heap.
    let mut greatest: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
    let mut least: BinaryHeap<(i64, u64)> = BinaryHeap::new();
    if count == 0 {
        return Ok(Vec::new());
    }
    for ev in log.iter() {
        let ev = ev?;
        if !filter.matches_fields(&ev) {
            continue;
        }
        let key = (event_time(&ev), ev.seq);
        if desc {
            if greatest.len() < count {
                greatest.push(Reverse(key));
            } else if greatest.peek().is_some_and(|Reverse(min)| key > *min) {
                greatest.pop();
                greatest.push(Reverse(key));
            }
        } else if least.len() < count {
            least.push(key);
        } else if least.peek().is_some_and(|max| key < *max) {
            least.pop();
            least.push(key);
        }
    }
    Ok(if desc {
        // Ascending order of Reverse is descending order of the keys.
        greatest
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(k)| k)
            .collect()
    } else {
        least.into_sorted_vec()
    })
}

/// One event, as the JSON view the server would send (the same bytes).
fn print<W: Write>(p: &mut Printer<W>, ev: &StoredEvent) -> Result<(), Fail> {
    let json = serde_json::to_value(ev)
        .map_err(|e| failed(format!("seq {}: {e}", ev.seq)))?
        .to_string();
    p.event(&json).or_else(output_error)
}
