//! The archive's object names: the one place that spells them.
//!
//! ```text
//! PREFIX/node=NODE/NODE.json                       the claim: which data directory writes here
//! PREFIX/node=NODE/segments/YYYY-MM-DD.N.seg       sealed segments, byte for byte
//! PREFIX/node=NODE/digests/YYYY-MM-DD.digest.json  signed daily digests (and .digest.sig)
//! PREFIX/node=NODE/checkpoints/SEQ.json            signed checkpoints, SEQ zero-padded to 20 digits
//! PREFIX/node=NODE/events/day=YYYY-MM-DD/events.parquet   the day's events for SQL engines
//! PREFIX/node=NODE/retention/YYYY-MM-DD.json       a day dropped by retention: the decision
//! ```
//!
//! Every object is written once and never replaced (a conditional
//! create); `node=` and `day=` are Hive-style partitions, so
//! `PREFIX/*/events/*/*.parquet` reads every node's history as one table.
//! Owns names only: no I/O.

use crate::log::format::{Day, SegmentId};

/// What an object under a node's root is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    /// The claim.
    Claim,
    /// A sealed segment.
    Segment(SegmentId),
    /// A digest file (`YYYY-MM-DD.digest.json` or `.digest.sig`), by name.
    Digest(String),
    /// A checkpoint, by seq.
    Checkpoint(u64),
    /// A day's Parquet file.
    Parquet(Day),
    /// A day dropped by retention.
    Dropped(Day),
}

/// The claim's object name under a node's root.
pub const CLAIM: &str = "NODE.json";
const SEGMENTS: &str = "segments/";
const DIGESTS: &str = "digests/";
const CHECKPOINTS: &str = "checkpoints/";
const EVENTS: &str = "events/day=";
const PARQUET: &str = "/events.parquet";
const RETENTION: &str = "retention/";

/// The object names of one node: `PREFIX/node=NODE/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Layout {
    /// The layout of `node` under `prefix` (either may be empty... the node
    /// may not).
    pub fn new(prefix: &str, node: &str) -> Layout {
        let prefix = prefix.trim_matches('/');
        let root = match prefix.is_empty() {
            true => format!("node={node}/"),
            false => format!("{prefix}/node={node}/"),
        };
        Layout { root }
    }

    /// A layout rooted at `root` as it is (a node's root read from a
    /// listing), `/`-terminated.
    pub fn at(root: &str) -> Layout {
        let root = root.trim_end_matches('/');
        Layout {
            root: format!("{root}/"),
        }
    }

    /// The node's root, ending in `/`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The full key of `o`.
    pub fn key(&self, o: &Object) -> String {
        let r = &self.root;
        match o {
            Object::Claim => format!("{r}{CLAIM}"),
            Object::Segment(id) => format!("{r}{SEGMENTS}{}", id.file_name()),
            Object::Digest(name) => format!("{r}{DIGESTS}{name}"),
            Object::Checkpoint(seq) => format!("{r}{CHECKPOINTS}{seq:020}.json"),
            Object::Parquet(day) => format!("{r}{EVENTS}{day}{PARQUET}"),
            Object::Dropped(day) => format!("{r}{RETENTION}{day}.json"),
        }
    }

    /// What `key` names, if it is one of this node's objects.
    pub fn parse(&self, key: &str) -> Option<Object> {
        let rest = key.strip_prefix(&self.root)?;
        if rest == CLAIM {
            return Some(Object::Claim);
        }
        if let Some(name) = rest.strip_prefix(SEGMENTS) {
            return SegmentId::parse_file_name(name).map(Object::Segment);
        }
        if let Some(name) = rest.strip_prefix(DIGESTS) {
            let day = name
                .strip_suffix(".digest.json")
                .or_else(|| name.strip_suffix(".digest.sig"))?;
            crate::seal::digest::parse_day(day)?;
            return Some(Object::Digest(name.to_string()));
        }
        if let Some(name) = rest.strip_prefix(CHECKPOINTS) {
            let digits = name.strip_suffix(".json")?;
            if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            return digits.parse().ok().map(Object::Checkpoint);
        }
        if let Some(name) = rest.strip_prefix(EVENTS) {
            let day = name.strip_suffix(PARQUET)?;
            return crate::seal::digest::parse_day(day).map(Object::Parquet);
        }
        if let Some(name) = rest.strip_prefix(RETENTION) {
            let day = name.strip_suffix(".json")?;
            return crate::seal::digest::parse_day(day).map(Object::Dropped);
        }
        None
    }
}

/// The node roots found among `keys` under `prefix` (each `PREFIX/node=X/`
/// holding a claim), sorted.
pub fn node_roots<'a>(prefix: &str, keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let prefix = prefix.trim_matches('/');
    let head = match prefix.is_empty() {
        true => String::new(),
        false => format!("{prefix}/"),
    };
    let mut roots: Vec<String> = keys
        .into_iter()
        .filter_map(|k| {
            let rest = k.strip_prefix(&head)?;
            let node = rest.strip_prefix("node=")?;
            let (name, tail) = node.split_once('/')?;
            (tail == CLAIM).then(|| format!("{head}node={name}/"))
        })
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        let l = Layout::new("audit/prod", "web-1");
        assert_eq!(l.root(), "audit/prod/node=web-1/");
        let day = crate::seal::digest::parse_day("2026-12-03").unwrap();
        let objects = [
            Object::Claim,
            Object::Segment(SegmentId { day, part: 2 }),
            Object::Digest("2026-12-03.digest.json".into()),
            Object::Digest("2026-12-03.digest.sig".into()),
            Object::Checkpoint(1042),
            Object::Parquet(day),
            Object::Dropped(day),
        ];
        for o in objects {
            let key = l.key(&o);
            assert_eq!(l.parse(&key), Some(o.clone()), "{key}");
        }
        assert_eq!(
            l.key(&Object::Checkpoint(1042)),
            "audit/prod/node=web-1/checkpoints/00000000000000001042.json"
        );
        assert_eq!(
            l.key(&Object::Parquet(day)),
            "audit/prod/node=web-1/events/day=2026-12-03/events.parquet"
        );
        for junk in [
            "audit/prod/node=web-2/NODE.json",
            "audit/prod/node=web-1/segments/x.seg",
            "audit/prod/node=web-1/checkpoints/12.json",
            "audit/prod/node=web-1/digests/2026-13-03.digest.json",
            "audit/prod/node=web-1/other",
        ] {
            assert_eq!(l.parse(junk), None, "{junk}");
        }
        assert_eq!(Layout::new("", "a").root(), "node=a/");
    }

    #[test]
    fn node_roots_are_the_claimed_ones() {
        let keys = [
            "p/node=a/NODE.json",
            "p/node=a/segments/2026-12-03.0.seg",
            "p/node=b/NODE.json",
            "p/node=c/segments/2026-12-03.0.seg",
            "q/node=d/NODE.json",
        ];
        assert_eq!(node_roots("p", keys), vec!["p/node=a/", "p/node=b/"]);
        assert_eq!(node_roots("", ["node=x/NODE.json"]), vec!["node=x/"]);
    }
}
