//! The values of the statistics columns, numbered: what per-segment partials
//! count by, so that merging them adds counts at an index instead of looking a
//! string up in a map.
//!
//! A [`Dict`] numbers the values of one column `0, 1, 2, …` in the order they
//! are first seen (a segment's are resolved from its term dictionary once, when
//! its partial is computed). A partial's counts of that column are then
//! `(number, count)` pairs in ascending number order ([`Numbered`]), and a
//! question's counts per value are one dense array over the numbers
//! ([`Tally`]): merging the partials of a column with 100,000 values in
//! each of 13 segments is 1.3 million additions into an array, not 1.3 million
//! hash lookups of strings. Strings come back only for the values answered.
//!
//! [`Values`] holds the current dict of each column.
//!
//! Invariants:
//! 1. A number names one value for the life of its dict; a dict is never
//!    renumbered, only replaced whole by an empty one with a new generation.
//!    Counts by number are only added to counts of the same generation: a
//!    partial's counts carry their dict's generation, a question takes the
//!    dicts once when it starts (so every partial it merges is of them), and a
//!    partial of an older generation counts as lacking that column (computed
//!    again, once).
//! 2. Bounded: when the dicts hold more than [`VALUES_BYTES_MAX`] (estimated)
//!    as a question starts, the largest are replaced until they do not. A
//!    question keeps the dicts it started with, so while it runs they may grow
//!    past the bound by the values it counts (as its merged counts by string
//!    did before numbering).
//! 3. Exact: a value is counted under its stored spelling; letter-case variants
//!    are folded (for the columns that are not exact) only when the answer is
//!    made, after every segment is merged.

use super::stats::{for_each_value, Counts, OrdCounts};
use super::*;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::RwLock;

/// Most estimated bytes the dicts hold between questions.
pub const VALUES_BYTES_MAX: usize = 64 << 20;

/// Estimated bytes of one numbered value besides its text: two `Arc<str>`s
/// (the map's key and the list's entry share one allocation, with its two
/// counters), the map's slot and control byte, the folded flag.
const VALUE_OVERHEAD: usize = 72;

/// The numbers of one column's values (see the module documentation).
pub(super) struct Dict {
    generation: u64,
    names: RwLock<Names>,
    bytes: AtomicUsize,
}

#[derive(Default)]
pub(super) struct Names {
    ids: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    names: Vec<Arc<str>>,
    /// Per number: whether the value is its own letter-case fold.
    folded: Vec<bool>,
}

impl Names {
    pub(super) fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// The number of `value`, given one if it has none; the bytes it added.
    fn number(&mut self, value: &str) -> (u32, usize) {
        if let Some(id) = self.ids.get(value) {
            return (*id, 0);
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(value);
        self.ids.insert(Arc::clone(&name), id);
        self.names.push(name);
        self.folded
            .push(matches!(fold_case(value), std::borrow::Cow::Borrowed(_)));
        (id, value.len() + VALUE_OVERHEAD)
    }
}

impl Dict {
    fn new(generation: u64) -> Dict {
        Dict {
            generation,
            names: RwLock::new(Names::default()),
            bytes: AtomicUsize::new(0),
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, Names> {
        self.names.read().unwrap_or_else(|p| p.into_inner())
    }

    fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }

    fn len(&self) -> usize {
        self.read().names.len()
    }

    /// The counts of one segment's `column` (per term ordinal) as
    /// `(number, count)`, ascending by number; values not yet numbered are.
    pub(super) fn numbered(&self, column: OrdCounts) -> tantivy::Result<Numbered> {
        let mut counts = Vec::new();
        let mut added = 0;
        {
            let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
            for_each_value(column, |value, n| {
                let (id, bytes) = names.number(value);
                added += bytes;
                // A segment's count fits: it has fewer than 2^32 docs.
                counts.push((id, u32::try_from(n).unwrap_or(u32::MAX)));
            })?;
        }
        self.bytes.fetch_add(added, Relaxed);
        counts.sort_unstable_by_key(|(id, _)| *id);
        Ok(Numbered {
            generation: self.generation,
            counts,
        })
    }
}

/// One segment's (or chunk's) counts of one column by number: `(number,
/// count)`, ascending, counts above 0 (8 bytes a value).
#[derive(Debug, Clone, Default)]
pub(super) struct Numbered {
    pub(super) generation: u64,
    pub(super) counts: Vec<(u32, u32)>,
}

/// The dicts of a question's columns, taken when it starts.
#[derive(Clone, Default)]
pub(super) struct Dicts(Vec<(&'static str, Arc<Dict>)>);

impl Dicts {
    /// New, empty dicts of `columns`, private to one pass (the reference
    /// single pass in tests).
    pub(super) fn fresh(columns: &[&'static str]) -> Dicts {
        Dicts(
            columns
                .iter()
                .map(|c| (*c, Arc::new(Dict::new(0))))
                .collect(),
        )
    }

    /// The dict of `column`, one of the question's.
    pub(super) fn of(&self, column: &str) -> &Arc<Dict> {
        &self
            .0
            .iter()
            .find(|(c, _)| *c == column)
            .expect("a column of the question")
            .1
    }
}

/// One question's counts of one column per number (see the module
/// documentation).
pub(super) struct Tally {
    dict: Arc<Dict>,
    counts: Vec<u64>,
}

/// A column's answer: the values ranked by count descending, then value
/// ascending, cut at `top`; how many there are; their counts' sum.
pub(super) struct Ranked {
    pub(super) values: Vec<(String, u64)>,
    pub(super) distinct: u64,
    pub(super) counted: u64,
}

impl Ranked {
    /// The ranking of counts by string.
    pub(super) fn of(map: Counts, top: usize) -> Ranked {
        Ranked {
            distinct: map.len() as u64,
            counted: map.values().sum(),
            values: top_ranked(map, top),
        }
    }
}

impl Tally {
    pub(super) fn new(dict: Arc<Dict>) -> Tally {
        Tally {
            counts: Vec::with_capacity(dict.len()),
            dict,
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.dict.generation
    }

    /// Adds (`add`) or subtracts (saturating: a subtraction follows the
    /// addition of a superset) counts by number of this tally's dict.
    pub(super) fn apply(&mut self, counts: &[(u32, u32)], add: bool) {
        if let Some((last, _)) = counts.last() {
            let need = *last as usize + 1;
            if self.counts.len() < need {
                self.counts.resize(need, 0);
            }
        }
        for (id, n) in counts {
            let (into, n) = (&mut self.counts[*id as usize], u64::from(*n));
            *into = if add {
                *into + n
            } else {
                into.saturating_sub(n)
            };
        }
    }

    /// Adds one segment's counts per term ordinal.
    pub(super) fn add_column(&mut self, column: OrdCounts) -> tantivy::Result<()> {
        let numbered = self.dict.numbered(column)?;
        self.apply(&numbered.counts, true);
        Ok(())
    }

    /// The answer of this column (`exact`: letter-case variants not folded).
    pub(super) fn ranked(self, exact: bool, top: usize) -> Ranked {
        let names = self.dict.read();
        let mut used: Vec<(u32, u64)> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(id, n)| (id as u32, *n))
            .collect();
        if !exact && used.iter().any(|(id, _)| !names.folded[*id as usize]) {
            let map: Counts = used
                .iter()
                .map(|(id, n)| (names.name(*id).to_owned(), *n))
                .collect();
            drop(names);
            return Ranked::of(fold_variants(map), top);
        }
        let (distinct, counted) = (used.len() as u64, used.iter().map(|(_, n)| n).sum());
        let order = |a: &(u32, u64), b: &(u32, u64)| {
            b.1.cmp(&a.1)
                .then_with(|| names.name(a.0).cmp(names.name(b.0)))
        };
        if used.len() > top {
            used.select_nth_unstable_by(top, order);
            used.truncate(top);
        }
        used.sort_unstable_by(order);
        Ranked {
            values: used
                .into_iter()
                .map(|(id, n)| (names.name(id).to_owned(), n))
                .collect(),
            distinct,
            counted,
        }
    }
}

/// Counts per stored value merged into counts per value as filters compare
/// them (letter case folded, [`fold_case`]), each shown as its most frequent
/// spelling (ties: the smallest): `Login` ×3 and `login` ×1 are `Login` ×4,
/// and `action=Login` (or `login`) matches exactly those 4.
pub(super) fn fold_variants(map: Counts) -> Counts {
    if map
        .keys()
        .all(|k| matches!(fold_case(k), std::borrow::Cow::Borrowed(_)))
    {
        return map;
    }
    // Folded value -> (total, shown spelling, its count).
    let mut groups: HashMap<String, (u64, String, u64)> = HashMap::with_capacity(map.len());
    for (value, n) in map {
        let key = fold_case(&value).into_owned();
        let (total, shown, shown_n) = groups.entry(key).or_insert((0, String::new(), 0));
        *total += n;
        if n > *shown_n || (n == *shown_n && value < *shown) {
            *shown = value;
            *shown_n = n;
        }
    }
    groups
        .into_values()
        .map(|(total, shown, _)| (shown, total))
        .collect()
}

/// `(value, count)` sorted by count descending, then value ascending.
pub(super) fn ranked<S>(map: HashMap<String, u64, S>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// The first `top` of [`ranked`], without sorting the values cut.
pub(super) fn top_ranked(map: Counts, top: usize) -> Vec<(String, u64)> {
    if map.len() <= top {
        return ranked(map);
    }
    let order = |a: &(String, u64), b: &(String, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.select_nth_unstable_by(top, order);
    v.truncate(top);
    v.sort_unstable_by(order);
    v
}

/// What the dicts hold, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValuesStats {
    /// Values numbered, over every column's current dict.
    pub values: u64,
    /// Their estimated bytes.
    pub bytes: u64,
    /// Dicts replaced by empty ones to stay within the bound.
    pub resets: u64,
}

/// The current dict of each column (see the module documentation).
pub(super) struct Values {
    dicts: Mutex<Vec<(&'static str, Arc<Dict>)>>,
    bytes_max: AtomicUsize,
    generations: AtomicU64,
    resets: AtomicU64,
}

impl Values {
    pub(super) fn new(bytes_max: usize) -> Values {
        Values {
            dicts: Mutex::new(Vec::new()),
            bytes_max: AtomicUsize::new(bytes_max),
            generations: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Arc<Dict>)>> {
        self.dicts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self) -> Arc<Dict> {
        Arc::new(Dict::new(self.generations.fetch_add(1, Relaxed) + 1))
    }

    /// The current dicts of `columns`, the largest first replaced by empty
    /// ones while all of them hold more than the bound.
    pub(super) fn dicts(&self, columns: &[&'static str]) -> Dicts {
        let mut dicts = self.lock();
        let mut total: usize = dicts.iter().map(|(_, d)| d.bytes()).sum();
        while total > self.bytes_max.load(Relaxed) {
            let Some(largest) = (0..dicts.len()).max_by_key(|i| dicts[*i].1.bytes()) else {
                break;
            };
            total -= dicts[largest].1.bytes();
            dicts[largest].1 = self.fresh();
            self.resets.fetch_add(1, Relaxed);
        }
        let mut out = Vec::with_capacity(columns.len());
        for column in columns {
            let dict = match dicts.iter().find(|(c, _)| c == column) {
                Some((_, d)) => Arc::clone(d),
                None => {
                    let d = self.fresh();
                    dicts.push((column, Arc::clone(&d)));
                    d
                }
            };
            out.push((*column, dict));
        }
        Dicts(out)
    }

    /// A smaller bound, for tests that replace dicts while partials of the
    /// old generations are still cached.
    #[cfg(test)]
    pub(super) fn set_bound(&self, bytes_max: usize) {
        self.bytes_max.store(bytes_max, Relaxed);
    }

    pub(super) fn stats(&self) -> ValuesStats {
        let dicts = self.lock();
        ValuesStats {
            values: dicts.iter().map(|(_, d)| d.len() as u64).sum(),
            bytes: dicts.iter().map(|(_, d)| d.bytes() as u64).sum(),
            resets: self.resets.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bound_the_largest_dict_starts_again_with_a_new_generation() {
        let values = Values::new(3 * (8 + VALUE_OVERHEAD));
        let first = values.dicts(&["_action", "_user_id"]);
        let (action, user) = (first.of("_action").clone(), first.of("_user_id").clone());
        {
            let mut names = action.names.write().unwrap();
            for v in ["login", "logout"] {
                let (_, bytes) = names.number(v);
                action.bytes.fetch_add(bytes, Relaxed);
            }
            let mut names = user.names.write().unwrap();
            for v in ["u1", "U2"] {
                let (_, bytes) = names.number(v);
                user.bytes.fetch_add(bytes, Relaxed);
            }
            assert_eq!(names.number("u1").0, 0, "a value keeps its number");
            assert!(!names.folded[1], "`U2` is not its own fold");
        }
        // Four values over a bound of three: the largest (the action's, by
        // their text) is replaced, the user's kept.
        let second = values.dicts(&["_action", "_user_id"]);
        assert!(second.of("_action").generation() > action.generation());
        assert_eq!(second.of("_action").len(), 0);
        assert!(Arc::ptr_eq(second.of("_user_id"), &user));
        let s = values.stats();
        assert_eq!((s.values, s.resets), (2, 1));
        // A question holding the old dict still reads its names.
        assert_eq!(action.read().name(1), "logout");
    }

    #[test]
    fn a_tally_ranks_by_count_then_value_and_folds_only_when_asked() {
        let dict = Arc::new(Dict::new(1));
        {
            let mut names = dict.names.write().unwrap();
            for v in ["b", "a", "Login", "login", "c"] {
                names.number(v);
            }
        }
        let mut tally = Tally::new(Arc::clone(&dict));
        tally.apply(&[(0, 5), (1, 5), (2, 3), (3, 1), (4, 2)], true);
        tally.apply(&[(4, 2)], false);
        let r = Tally {
            counts: tally.counts.clone(),
            dict: Arc::clone(&dict),
        }
        .ranked(true, 3);
        assert_eq!(
            (r.values, r.distinct, r.counted),
            (
                vec![("a".into(), 5), ("b".into(), 5), ("Login".into(), 3)],
                4,
                14
            )
        );
        let r = tally.ranked(false, 10);
        assert_eq!(
            r.values,
            vec![("a".into(), 5), ("b".into(), 5), ("Login".into(), 4)]
        );
        assert_eq!((r.distinct, r.counted), (3, 14));
    }
}
