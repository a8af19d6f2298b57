//! `stele check`: do the indexes agree with the log?
//!
//! Owns [`Indexes::check`], which compares both indexes with the log they
//! derive from, event by event: the text index must hold every seq of the
//! log exactly once and nothing else, the key index one key for every event,
//! made of the fingerprints of its id and tenant and its seq, and nothing
//! else. It only reads; the repair
//! is `stele reindex`. The indexes must have caught up with the log first
//! (the caller waits, as `stele check` does).

use super::kv::{fingerprint, KvError, FINGERPRINT_BYTES};
use super::text::TextError;
use super::Indexes;
use crate::log::Log;
use std::cmp::Ordering;

/// What [`Indexes::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Every difference, one sentence each, sorted; empty when the indexes
    /// agree with the log.
    pub problems: Vec<String>,
    /// Events in the log (one key each: what the key index should hold).
    pub events: usize,
    /// Documents in the full-text index.
    pub text_documents: usize,
    /// Keys in the key index.
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
        // Every event's key, in seq order (the log's).
        let mut want = Vec::new();
        for ev in log.iter() {
            let ev = ev?;
            want.push((
                ev.seq,
                fingerprint(&ev.event.id, ev.event.tenant.as_deref()),
            ));
        }
        let got = self.kv.all_entries()?;
        for (seq, problem) in key_problems(&want, &got) {
            let event = match log.get(seq)? {
                Some(ev) => match ev.event.tenant {
                    Some(t) => format!("id {} (tenant {t})", ev.event.id),
                    None => format!("id {}", ev.event.id),
                },
                None => String::new(),
            };
            problems.push(match problem {
                KeyProblem::Missing => format!("key index: {event} (seq {seq}) is missing"),
                KeyProblem::Stranger => {
                    format!("key index: holds a key for seq {seq}, not in the log")
                }
                KeyProblem::Mismatch => {
                    format!("key index: its key for seq {seq} is not the one of {event}")
                }
            });
        }
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

/// How a seq's key differs from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyProblem {
    /// The log's event has no key.
    Missing,
    /// A key for a seq the log does not hold.
    Stranger,
    /// A key for the seq whose fingerprints are not its event's.
    Mismatch,
}

type Fingerprint = [u8; FINGERPRINT_BYTES];

/// The key index's entries (`got`) against every event's (`want`), both in
/// ascending seq order: a merge of the two.
fn key_problems(want: &[(u64, Fingerprint)], got: &[(u64, Fingerprint)]) -> Vec<(u64, KeyProblem)> {
    let mut problems = Vec::new();
    let (mut w, mut g) = (want.iter().peekable(), got.iter().peekable());
    loop {
        match (w.peek(), g.peek()) {
            (None, None) => break,
            (Some(&&(seq, _)), None) => {
                problems.push((seq, KeyProblem::Missing));
                w.next();
            }
            (None, Some(&&(seq, _))) => {
                problems.push((seq, KeyProblem::Stranger));
                g.next();
            }
            (Some(&&(ws, wf)), Some(&&(gs, _))) => match ws.cmp(&gs) {
                Ordering::Less => {
                    problems.push((ws, KeyProblem::Missing));
                    w.next();
                }
                Ordering::Greater => {
                    problems.push((gs, KeyProblem::Stranger));
                    g.next();
                }
                Ordering::Equal => {
                    // Every key of this seq must be the event's (one, unless damaged).
                    let mut matched = false;
                    while let Some(&&(s, f)) = g.peek() {
                        if s != ws {
                            break;
                        }
                        if f == wf && !matched {
                            matched = true;
                        } else {
                            problems.push((ws, KeyProblem::Mismatch));
                        }
                        g.next();
                    }
                    if !matched {
                        problems.push((ws, KeyProblem::Missing));
                    }
                    w.next();
                }
            },
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
        let f = |id: &str, t: Option<&str>| fingerprint(id, t);
        let want = [(1, f("a", None)), (2, f("a", Some("t"))), (3, f("b", None))];
        assert!(key_problems(&want, &want).is_empty());
        let got = key_problems(
            &want,
            &[(1, f("a", None)), (2, f("a", None)), (4, f("c", None))],
        );
        assert_eq!(
            got,
            [
                (2, KeyProblem::Mismatch),
                (2, KeyProblem::Missing),
                (3, KeyProblem::Missing),
                (4, KeyProblem::Stranger),
            ]
        );
        // A second key for a seq is damage even beside the right one.
        let got = key_problems(&want[..1], &[(1, f("a", None)), (1, f("z", None))]);
        assert_eq!(got, [(1, KeyProblem::Mismatch)]);
        // Fingerprints keep tenants apart.
        assert_ne!(f("a", None), f("a", Some("")));
        assert_ne!(f("a", Some("t")), f("a", Some("u")));
        assert_eq!(f("a", Some("t"))[..8], f("a", None)[..8]);
    }
}
