//! `stele check`: do the indexes agree with the log?
//!
//! Owns [`Indexes::check`], which compares both indexes with the log they
//! derive from, event by event: the text index must hold every seq of the
//! log exactly once and nothing else, the key index every (id, tenant) at
//! the first seq that carries it and nothing else. It only reads; the repair
//! is `stele reindex`. The indexes must have caught up with the log first
//! (the caller waits, as `stele check` does).

use super::kv::KvError;
use super::text::TextError;
use super::Indexes;
use crate::log::Log;
use std::collections::{HashMap, HashSet};

/// What [`Indexes::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Every difference, one sentence each, sorted; empty when the indexes
    /// agree with the log.
    pub problems: Vec<String>,
    /// Events in the log (distinct (id, tenant) keys: what the key index
    /// should hold).
    pub events: usize,
    /// Documents in the full-text index.
    pub text_documents: usize,
    /// Ids in the key index.
    pub key_ids: usize,
}

/// Why the check could not run to the end (a difference is not an error).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Reading the full-text index failed.
    #[error(transparent)]
    Text(#[from] TextError),
    /// Reading the key index failed.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// Reading the log failed.
    #[error(transparent)]
    Log(#[from] crate::log::Error),
}

impl Indexes {
    /// Compares both indexes with `log` (see the module documentation).
    ///
    /// # Errors
    /// When an index or the log cannot be read.
    pub fn check(&self, log: &Log) -> Result<CheckReport, CheckError> {
        let seqs = self.text.all_seqs()?;
        let mut problems = text_problems(&seqs, log.first_seq(), log.last_seq());
        // Every (id, tenant) at the first seq that carries it (ids are per tenant).
        let mut want = HashMap::new();
        for ev in log.iter() {
            let ev = ev?;
            want.entry((ev.event.id, ev.event.tenant)).or_insert(ev.seq);
        }
        let got: Vec<_> = self
            .kv
            .all_id_seqs()?
            .into_iter()
            .map(|(tenant, id, seq)| ((id, tenant), seq))
            .collect();
        problems.extend(key_problems(&want, &got));
        problems.sort();
        Ok(CheckReport {
            problems,
            events: want.len(),
            text_documents: seqs.len(),
            key_ids: got.len(),
        })
    }
}

/// Every seq of the log (`first..=last`) exactly once in the text index
/// (`seqs`, in index order), nothing else.
fn text_problems(seqs: &[u64], first: u64, last: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = first;
    for s in seqs {
        if *s < expect {
            problems.push(format!(
                "full-text index: seq {s} is indexed twice or out of order"
            ));
        } else {
            if *s > expect {
                problems.push(format!("full-text index: seqs {expect}..{s} are missing"));
            }
            expect = s + 1;
        }
    }
    if expect <= last {
        problems.push(format!(
            "full-text index: seqs {expect}..={last} are missing"
        ));
    }
    if let Some(s) = seqs.iter().find(|&&s| s > last || s < first) {
        problems.push(format!(
            "full-text index: holds seq {s}, not in the log ({first}..={last})"
        ));
    }
    problems
}

/// (id, tenant) of an event.
type Key = (String, Option<String>);

/// The key index (`got`) against the first seq of every key in the log
/// (`want`).
fn key_problems(want: &HashMap<Key, u64>, got: &[(Key, u64)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (key, seq) in got {
        let id = match &key.1 {
            Some(t) => format!("{} (tenant {t})", key.0),
            None => key.0.clone(),
        };
        if !seen.insert(key.clone()) {
            problems.push(format!("key index: id {id} is mapped twice"));
        }
        match want.get(key) {
            Some(s) if s == seq => {}
            Some(s) => problems.push(format!(
                "key index: id {id} maps to seq {seq}, the log has it at {s}"
            )),
            None => problems.push(format!("key index: id {id} (seq {seq}) is not in the log")),
        }
    }
    for (key, seq) in want {
        if !seen.contains(key) {
            problems.push(format!("key index: id {} (seq {seq}) is missing", key.0));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_index_gaps_duplicates_and_strangers_are_each_named() {
        assert!(text_problems(&[3, 4, 5], 3, 5).is_empty());
        assert!(text_problems(&[], 1, 0).is_empty(), "an empty log");
        assert_eq!(
            text_problems(&[3, 5, 5], 3, 6),
            [
                "full-text index: seqs 4..5 are missing",
                "full-text index: seq 5 is indexed twice or out of order",
                "full-text index: seqs 6..=6 are missing",
            ]
        );
        assert_eq!(
            text_problems(&[1, 2, 3], 2, 3),
            [
                "full-text index: seq 1 is indexed twice or out of order",
                "full-text index: holds seq 1, not in the log (2..=3)",
            ]
        );
    }

    #[test]
    fn key_index_differences_are_each_named() {
        let k = |id: &str, t: Option<&str>| (id.to_string(), t.map(str::to_string));
        let want: HashMap<Key, u64> =
            [(k("a", None), 1), (k("a", Some("t")), 2), (k("b", None), 3)]
                .into_iter()
                .collect();
        let agree = [(k("a", None), 1), (k("a", Some("t")), 2), (k("b", None), 3)];
        assert!(key_problems(&want, &agree).is_empty());
        let mut got = key_problems(
            &want,
            &[
                (k("a", None), 1),
                (k("a", None), 1),
                (k("a", Some("t")), 9),
                (k("c", None), 4),
            ],
        );
        got.sort();
        assert_eq!(
            got,
            [
                "key index: id a (tenant t) maps to seq 9, the log has it at 2",
                "key index: id a is mapped twice",
                "key index: id b (seq 3) is missing",
                "key index: id c (seq 4) is not in the log",
            ]
        );
    }
}
