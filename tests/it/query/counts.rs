//! Totals, offset pages, counts, facets and statistics groups against the
//! same brute-force scan of the generated events as the listings (the world of
//! `super`).

use super::*;
use stele::event::{FieldValue, Indexed};
use stele::index::text::{group_fields, GroupCounts, StatsRequest};
use stele::query::{Paging, OFFSET_WINDOW_MAX};

/// The brute-force counts of `field` among the matches of `f`, cut at `top`.
fn brute_group(f: &Filter, field: &'static str, top: usize) -> GroupCounts {
    let spec = stele::event::field(field).unwrap();
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    let mut missing = 0;
    for e in world().all.iter().filter(|e| matches(f, e)) {
        match (spec.get)(e) {
            FieldValue::Str(v) => *m.entry(v.to_owned()).or_default() += 1,
            _ => missing += 1,
        }
    }
    if spec.indexed != Indexed::ExactKeyword {
        // Counted as the filter compares: spellings that differ only in case
        // are one value, shown as the most frequent (ties: the smallest); a
        // tenant is exact.
        let mut groups: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for (v, n) in m {
            groups.entry(v.to_lowercase()).or_default().push((v, n));
        }
        m = groups
            .into_values()
            .map(|mut s| {
                s.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let total = s.iter().map(|x| x.1).sum();
                (s.swap_remove(0).0, total)
            })
            .collect();
    }
    let mut values: Vec<(String, u64)> = m.into_iter().collect();
    values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let distinct = values.len() as u64;
    values.truncate(top);
    GroupCounts {
        field,
        values,
        distinct,
        missing,
        truncated: distinct > top as u64,
    }
}

fn seqs(page: &stele::query::Page) -> Vec<u64> {
    page.events.iter().map(|e| e.seq).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// `total`, an offset page (and the same page by number), the page after
    /// it by its cursor, and `count` are slices and lengths of the scan.
    #[test]
    fn totals_offset_pages_and_counts_equal_a_scan(
        (f, order, limit) in filter_strategy(),
        offset in prop_oneof![0usize..60, 0usize..N],
    ) {
        let w = world();
        let want = brute(&f, order);
        let offset = offset.min(OFFSET_WINDOW_MAX - limit);
        let q = Query { filter: f.clone(), sort: order.0, order: order.1, limit, ..Query::default() };
        let paging = Paging { total: true, offset: Some(offset), page: None };
        let page = w.engine.list_paged(&q, &paging).unwrap();
        let end = (offset + limit).min(want.len());
        let slice = want.get(offset..end).unwrap_or(&[]);
        prop_assert_eq!(seqs(&page), slice.to_vec());
        prop_assert_eq!(page.total, Some(want.len() as u64));
        prop_assert_eq!(page.next_cursor.is_some(), offset + limit < want.len());
        // A page number is the offset of a multiple of `limit`.
        let number = offset / limit + 1;
        let by_number = w.engine.list_paged(&q, &Paging { page: Some(number), ..Paging::default() }).unwrap();
        let from = (number - 1) * limit;
        prop_assert_eq!(seqs(&by_number), want.get(from..(from + limit).min(want.len())).unwrap_or(&[]).to_vec());
        prop_assert_eq!(by_number.total, None);
        // The cursor of an offset page continues right after it.
        if let Some(c) = page.next_cursor {
            let next = w.engine.list(&Query { cursor: Some(c), ..q.clone() }).unwrap();
            prop_assert_eq!(seqs(&next), want[end..(end + limit).min(want.len())].to_vec());
        }
        prop_assert_eq!(w.engine.count(&f).unwrap(), want.len() as u64);
    }

    /// A facet (one group) and a two-group statistics question with the rates
    /// equal the scan's counts.
    #[test]
    fn facets_and_groups_equal_a_scan(
        (f, _o, _l) in filter_strategy(),
        pick in (0usize..64, 0usize..64),
        top in prop_oneof![1usize..4, 1usize..200],
    ) {
        let w = world();
        let fields: Vec<&'static str> = group_fields().collect();
        let one = fields[pick.0 % fields.len()];
        let facet = w.engine.stats_of(&f, &StatsRequest { groups: vec![one], top, ..StatsRequest::default() }).unwrap();
        let total = w.all.iter().filter(|e| matches(&f, e)).count() as u64;
        prop_assert_eq!(facet.total, total);
        prop_assert_eq!(&facet.groups, &vec![brute_group(&f, one, top)]);
        prop_assert_eq!(facet.histogram, None);
        prop_assert_eq!(facet.failure_rate, None);

        let two = fields[pick.1 % fields.len()];
        let groups = if two == one { vec![one] } else { vec![two, one] };
        let request = StatsRequest { groups: groups.clone(), top, rates: true, ..StatsRequest::default() };
        let got = w.engine.stats_of(&f, &request).unwrap();
        let want: Vec<GroupCounts> = groups.iter().map(|g| brute_group(&f, g, top)).collect();
        prop_assert_eq!(&got.groups, &want);
        let stats = brute_stats(&f, w.clock.now_micros(), Interval::Hour.micros());
        prop_assert_eq!(got.failure_rate, Some(stats.failure_rate));
        prop_assert_eq!(got.error_severity_rate, Some(stats.error_severity_rate));
    }
}
