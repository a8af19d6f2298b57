//! The shape of an answer, beyond which events match: where a page starts and
//! whether it carries the total ([`Paging`]: `total`, `offset`, `page`), and
//! which parts of the statistics are computed ([`StatsParams`]: `group_by`,
//! `include`, `top`).
//!
//! These parameters are taken out of the query string before [`Query::parse`]
//! sees the rest, so a route that does not take them (exports, streams) refuses
//! them as unknown parameters.
//!
//! Invariants:
//! 1. An offset page is the slice `[offset, offset + limit)` of the whole
//!    ordered listing; `offset + limit` never exceeds [`OFFSET_WINDOW_MAX`]
//!    (deeper pages are what cursors are for), and an offset never comes with a
//!    cursor.
//! 2. A group is a field of [`group_fields`], named once; `top` is within
//!    `1..=TOP_MAX`.

use super::{bad, Query, QueryError};
use crate::index::text::{group_fields, StatsRequest};

/// The deepest event an offset page may reach: `offset + limit` at most this.
/// Page-number UIs get their first pages; deeper paging uses the cursor every
/// page carries.
pub const OFFSET_WINDOW_MAX: usize = 10_000;
/// Largest `top` (values kept per group or facet).
pub const TOP_MAX: usize = 10_000;
/// `top` when none is asked for, for `group_by` and facets.
pub const TOP_DEFAULT: usize = 100;
/// Most fields in one `group_by`.
pub const GROUPS_MAX: usize = 16;

/// The parameters [`Paging::take`] takes out of a listing's query string.
pub const PAGING_PARAMS: [&str; 3] = ["total", "offset", "page"];
/// The parameters [`StatsParams::take`] takes out of a statistics query string
/// (`top` also applies to facets).
pub const STATS_PARAMS: [&str; 3] = ["group_by", "include", "top"];
/// What `include` may name.
pub const INCLUDE_PARTS: [&str; 5] = ["last_24h", "histogram", "rates", "active_users", "risk"];

/// Where a listing's page starts and whether it carries the total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paging {
    /// `total=true`: the page carries the exact number of matches.
    pub total: bool,
    /// `offset=N`: skip the first N matches.
    pub offset: Option<usize>,
    /// `page=N` (1-based): skip `(N - 1) × limit` matches.
    pub page: Option<usize>,
}

/// Removes the pairs named in `names` from `pairs`, each at most once.
fn take_named(
    pairs: &mut Vec<(String, String)>,
    names: &[&str],
) -> Result<Vec<(String, String)>, QueryError> {
    let mut taken: Vec<(String, String)> = Vec::new();
    let mut rest = Vec::with_capacity(pairs.len());
    for (k, v) in pairs.drain(..) {
        if !names.contains(&k.as_str()) {
            rest.push((k, v));
        } else if taken.iter().any(|(t, _)| *t == k) {
            return Err(bad(&k, "given more than once"));
        } else {
            taken.push((k, v));
        }
    }
    *pairs = rest;
    Ok(taken)
}

fn whole(name: &str, v: &str, range: std::ops::RangeInclusive<usize>) -> Result<usize, QueryError> {
    v.parse().ok().filter(|n| range.contains(n)).ok_or_else(|| {
        bad(
            name,
            format!(
                "must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )
    })
}

impl Paging {
    /// Takes `total`, `offset` and `page` out of `pairs`.
    pub fn take(pairs: &mut Vec<(String, String)>) -> Result<Paging, QueryError> {
        let mut p = Paging::default();
        for (k, v) in take_named(pairs, &PAGING_PARAMS)? {
            match k.as_str() {
                "total" => {
                    p.total = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(&k, "must be true or false")),
                    }
                }
                "offset" => p.offset = Some(whole(&k, &v, 0..=OFFSET_WINDOW_MAX)?),
                "page" => p.page = Some(whole(&k, &v, 1..=OFFSET_WINDOW_MAX)?),
                _ => unreachable!("only PAGING_PARAMS are taken"),
            }
        }
        if p.offset.is_some() && p.page.is_some() {
            return Err(bad("page", "give either `offset` or `page`, not both"));
        }
        Ok(p)
    }

    /// How many matches the page skips, checked against the query: no cursor
    /// with an offset, and the page within [`OFFSET_WINDOW_MAX`].
    pub fn skip(&self, query: &Query) -> Result<usize, QueryError> {
        let (name, skip) = match (self.offset, self.page) {
            (Some(o), _) => ("offset", o),
            (None, Some(p)) => ("page", (p - 1).saturating_mul(query.limit)),
            (None, None) => return Ok(0),
        };
        if query.cursor.is_some() {
            return Err(bad(
                name,
                format!("give either `{name}` or `cursor`, not both: a cursor already says where the page starts"),
            ));
        }
        if skip.saturating_add(query.limit) > OFFSET_WINDOW_MAX {
            return Err(bad(
                name,
                format!(
                    "reaches event {} of the listing; offset paging goes {OFFSET_WINDOW_MAX} events deep \
                     (offset + limit); page deeper with the `next_cursor` of a page",
                    skip.saturating_add(query.limit)
                ),
            ));
        }
        Ok(skip)
    }
}

/// Which parts of the statistics a question wants. Without `group_by` and
/// `include`, `GET /v1/stats` answers its full object (every part).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsParams {
    /// `group_by=a,b`: the fields to count by value, in the order given.
    pub groups: Option<Vec<&'static str>>,
    /// `include=last_24h,histogram,rates,active_users,risk`.
    pub include: Option<Vec<&'static str>>,
    /// `top=N`: values kept per group.
    pub top: Option<usize>,
}

fn names_list(
    name: &str,
    v: &str,
    allowed: &[&'static str],
    what: &str,
) -> Result<Vec<&'static str>, QueryError> {
    let mut out: Vec<&'static str> = Vec::new();
    for item in v.split(',').map(str::trim) {
        let Some(&known) = allowed.iter().find(|a| **a == item) else {
            return Err(bad(
                name,
                format!("{item:?} is not {what}; use {}", allowed.join(", ")),
            ));
        };
        if out.contains(&known) {
            return Err(bad(name, format!("names {item:?} twice")));
        }
        out.push(known);
    }
    Ok(out)
}

impl StatsParams {
    /// Takes `group_by`, `include` and `top` out of `pairs`.
    pub fn take(pairs: &mut Vec<(String, String)>) -> Result<StatsParams, QueryError> {
        let mut p = StatsParams::default();
        for (k, v) in take_named(pairs, &STATS_PARAMS)? {
            match k.as_str() {
                "group_by" => {
                    let fields: Vec<&'static str> = group_fields().collect();
                    let groups = names_list(&k, &v, &fields, "a field statistics can group by")?;
                    if groups.len() > GROUPS_MAX {
                        return Err(bad(&k, format!("names more than {GROUPS_MAX} fields")));
                    }
                    p.groups = Some(groups);
                }
                "include" => {
                    p.include = Some(names_list(
                        &k,
                        &v,
                        &INCLUDE_PARTS,
                        "a part of the statistics",
                    )?)
                }
                "top" => p.top = Some(whole(&k, &v, 1..=TOP_MAX)?),
                _ => unreachable!("only STATS_PARAMS are taken"),
            }
        }
        Ok(p)
    }

    /// Whether `include` names `part`.
    pub fn includes(&self, part: &str) -> bool {
        self.include.as_ref().is_some_and(|i| i.contains(&part))
    }

    /// Whether the question picks its parts (else: the full statistics object).
    pub fn picks_parts(&self) -> bool {
        self.groups.is_some() || self.include.is_some()
    }

    /// The index's request for these parameters; `now` (unix µs) anchors
    /// `last_24h`, `bucket` is the histogram's width (µs).
    pub fn request(&self, now: i64, bucket: i64) -> StatsRequest {
        let mut groups = self.groups.clone().unwrap_or_default();
        // Active users are the distinct values of `user_id`.
        if self.includes("active_users") && !groups.contains(&"user_id") {
            groups.push("user_id");
        }
        let has = |part: &str| self.includes(part);
        StatsRequest {
            groups,
            top: self.top.unwrap_or(TOP_DEFAULT),
            last_24h: has("last_24h").then_some(now),
            histogram: has("histogram").then_some(bucket),
            rates: has("rates"),
            risk: has("risk"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn paging_is_taken_out_and_bounded() {
        let mut p = pairs(&[("tenant", "a"), ("offset", "20"), ("total", "true")]);
        let paging = Paging::take(&mut p).unwrap();
        assert_eq!(p, pairs(&[("tenant", "a")]));
        assert_eq!(
            paging,
            Paging {
                total: true,
                offset: Some(20),
                page: None
            }
        );
        let q = Query {
            limit: 50,
            ..Query::default()
        };
        assert_eq!(paging.skip(&q).unwrap(), 20);
        let page3 = Paging {
            page: Some(3),
            ..Paging::default()
        };
        assert_eq!(page3.skip(&q).unwrap(), 100);
        let deep = Paging {
            offset: Some(9_951),
            ..Paging::default()
        };
        assert!(deep.skip(&q).unwrap_err().to_string().contains("cursor"));
        let with_cursor = Query {
            cursor: Some("c".into()),
            ..q
        };
        assert!(paging
            .skip(&with_cursor)
            .unwrap_err()
            .to_string()
            .contains("not both"));
        for bad in [
            &[("offset", "-1")][..],
            &[("offset", "10001")],
            &[("page", "0")],
            &[("total", "yes")],
            &[("offset", "1"), ("page", "1")],
            &[("offset", "1"), ("offset", "2")],
        ] {
            assert!(Paging::take(&mut pairs(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stats_parameters_name_groups_parts_and_top() {
        let mut p = pairs(&[
            ("group_by", "ip,action"),
            ("top", "5"),
            ("include", "rates"),
        ]);
        let s = StatsParams::take(&mut p).unwrap();
        assert!(p.is_empty());
        assert_eq!(s.groups, Some(vec!["ip", "action"]));
        let r = s.request(7, 60);
        assert_eq!(
            (r.top, r.rates, r.histogram, r.last_24h),
            (5, true, None, None)
        );
        assert!(!StatsParams::default().picks_parts());
        for bad in [
            &[("group_by", "description")][..],
            &[("group_by", "action,action")],
            &[("group_by", "")],
            &[("include", "everything")],
            &[("top", "0")],
            &[("top", "10001")],
        ] {
            assert!(StatsParams::take(&mut pairs(bad)).is_err(), "{bad:?}");
        }
    }
}
