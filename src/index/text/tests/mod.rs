use super::*;

mod fuzz;
mod groups;
mod partials;
mod timed;
use crate::event::Event;
use crate::testkit::{EventGen, DEFAULT_BASE_TIME};

const DAY: i64 = 86_400_000_000;

/// Deletes every document with seq >= `from` at the next commit (as if the
/// index had got ahead of the log), straight through tantivy's writer.
fn delete_from(w: &mut TextWriter, from: u64) {
    let query = RangeQuery::new(
        Bound::Included(Term::from_field_u64(w.shared.fields.seq, from)),
        Bound::Unbounded,
    );
    w.writer.delete_query(Box::new(query)).unwrap();
}

/// `n` generated events with seqs `first_seq..`; received_at moves 0.7 s per event,
/// and every 97th event is backfilled (event time ten days before the base). Every
/// 5th has no provenance (format version 1), the others one of three writers.
fn events(seed: u64, first_seq: u64, n: usize) -> Vec<StoredEvent> {
    let mut gen = EventGen::new(seed);
    (0..n as u64)
        .map(|i| {
            let seq = first_seq + i;
            let mut event = gen.next_event();
            if seq % 97 == 0 {
                event.timestamp = Some(DEFAULT_BASE_TIME - 10 * DAY + seq as i64);
            }
            StoredEvent {
                seq,
                received_at: DEFAULT_BASE_TIME + seq as i64 * 700_000,
                event,
                provenance: (seq % 5 != 0).then(|| crate::event::Provenance {
                    ingested_by: ["ingest-a", "ingest-b", "cli"][(seq % 3) as usize].into(),
                    client_addr: None,
                }),
            }
        })
        .collect()
}

/// Every other commit writes its statistics columns as segments made before
/// 2026-12-07 did (`MISSING` for absent values), so that the checks cover an
/// index upgraded in place, its segments and their merges.
fn index_all(w: &mut TextWriter, evs: &[StoredEvent], commit_every: usize) {
    for (i, chunk) in evs.chunks(commit_every).enumerate() {
        w.missing_as_before = i % 2 == 1;
        for ev in chunk {
            w.add(ev).unwrap();
        }
        w.commit(chunk.last().unwrap().seq).unwrap();
    }
}

/// The values the full-text fields index, one string per field value.
fn text_values(ev: &Event) -> Vec<String> {
    let mut out: Vec<String> = [&ev.description, &ev.entity_name, &ev.user_agent]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    for c in &ev.changes {
        out.push(format!(
            "{} {} {}",
            c.field,
            c.old.as_deref().unwrap_or(""),
            c.new.as_deref().unwrap_or("")
        ));
    }
    // Metadata values only: key names are not words of the event.
    fn values(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| values(v, out)),
            serde_json::Value::Object(m) => m.values().for_each(|v| values(v, out)),
            other => out.push(other.to_string()),
        }
    }
    if let Some(m) = &ev.metadata {
        values(&serde_json::from_str(m).unwrap(), &mut out);
    }
    out.extend(ev.user_name.clone());
    out
}

/// tantivy's default tokenizer: split on non-alphanumeric characters, drop tokens of
/// 40 bytes or more (keeping their position), lowercase. `(position, token)`.
fn tokenize(text: &str) -> Vec<(usize, String)> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .enumerate()
        .filter(|(_, t)| t.len() < 40)
        .map(|(i, t)| (i, t.to_lowercase()))
        .collect()
}

fn has_word(ev: &Event, word: &str) -> bool {
    text_values(ev)
        .iter()
        .any(|v| tokenize(v).iter().any(|(_, t)| t == word))
}

fn has_phrase(ev: &Event, a: &str, b: &str) -> bool {
    text_values(ev).iter().any(|v| {
        let toks = tokenize(v);
        toks.iter()
            .any(|(i, t)| t == a && toks.iter().any(|(j, u)| *j == i + 1 && u == b))
    })
}

fn brute_match(ev: &StoredEvent, f: &Filter) -> bool {
    let e = &ev.event;
    // Keywords ignore case (tenants excepted).
    let eq = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| {
            have.as_ref()
                .is_some_and(|h| h.to_lowercase() == w.to_lowercase())
        })
    };
    let in_range = |r: Option<crate::query::NumRange>, v: Option<u64>| {
        r.is_none_or(|r| v.is_some_and(|v| r.lo <= v && v <= r.hi))
    };
    let t = event_time(ev);
    f.tenant
        .as_ref()
        .is_none_or(|t| e.tenant.as_ref() == Some(t))
        && f.tenants
            .as_ref()
            .is_none_or(|ts| e.tenant.as_ref().is_some_and(|t| ts.contains(t)))
        && eq(&f.action, &Some(e.action.clone()))
        && eq(&f.user_name, &e.user_name)
        && in_range(f.risk_score, e.risk_score.map(u64::from))
        && in_range(f.duration_ms, e.duration_ms)
        && eq(&f.category, &e.category)
        && f.source.is_none_or(|s| e.source == Some(s))
        && f.status.is_none_or(|s| e.status == Some(s))
        && f.severity.is_none_or(|s| e.severity == Some(s))
        && f.min_severity
            .is_none_or(|m| e.severity.is_some_and(|s| s >= m))
        && eq(&f.entity_type, &e.entity_type)
        && eq(&f.entity_id, &e.entity_id)
        && eq(&f.user_id, &e.user_id)
        && eq(&f.session_id, &e.session_id)
        && eq(&f.correlation_id, &e.correlation_id)
        && eq(&f.ip, &e.ip)
        && eq(&f.actor, &e.actor)
        && eq(
            &f.ingested_by,
            &ev.provenance.as_ref().map(|p| p.ingested_by.clone()),
        )
        && f.since.is_none_or(|s| t >= s)
        && f.until.is_none_or(|u| t < u)
        && f.text.as_ref().is_none_or(|q| {
            q.split_whitespace()
                .filter(|w| *w != "AND")
                .all(|w| has_word(e, w))
        })
}

fn brute_stats(evs: &[&StoredEvent], now: i64, bucket: i64, top: usize) -> Stats {
    let mut fields: Vec<HashMap<String, u64>> = vec![HashMap::new(); 7];
    let mut histogram: HashMap<i64, u64> = HashMap::new();
    let mut last_24h = 0;
    for ev in evs {
        let e = &ev.event;
        let values = [
            Some(e.action.clone()),
            e.category.clone(),
            e.entity_type.clone(),
            e.severity.map(|s| s.as_str().to_owned()),
            e.status.map(|s| s.as_str().to_owned()),
            e.source.map(|s| s.as_str().to_owned()),
            e.user_id.clone(),
        ];
        for (map, v) in fields.iter_mut().zip(values) {
            if let Some(v) = v {
                *map.entry(v).or_insert(0) += 1;
            }
        }
        let t = event_time(ev);
        *histogram.entry(t.div_euclid(bucket) * bucket).or_insert(0) += 1;
        if t >= now - DAY {
            last_24h += 1;
        }
    }
    let total = evs.len() as u64;
    let failures = evs
        .iter()
        .filter(|e| e.event.status == Some(Status::Failure))
        .count() as u64;
    let errors = evs
        .iter()
        .filter(|e| e.event.severity >= Some(Severity::Error))
        .count() as u64;
    let share = |n: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let mut it = fields.into_iter().map(ranked);
    let mut next = || it.next().unwrap();
    let (by_action, by_category, by_entity_type) = (next(), next(), next());
    let (by_severity, by_status, by_source) = (next(), next(), next());
    let mut top_users = next();
    let active_users = top_users.len() as u64;
    top_users.truncate(top);
    let mut histogram: Vec<(i64, u64)> = histogram.into_iter().collect();
    histogram.sort_unstable();
    Stats {
        total,
        last_24h,
        by_action,
        by_category,
        by_entity_type,
        by_severity,
        by_status,
        by_source,
        histogram,
        top_users,
        active_users,
        error_rate: share(failures),
        failure_rate: share(failures),
        error_severity_rate: share(errors),
        by_risk: brute_risk(evs),
    }
}

/// Events per risk level, brute force.
fn brute_risk(evs: &[&StoredEvent]) -> RiskCounts {
    let mut r = RiskCounts::default();
    for e in evs {
        match e.event.risk_score {
            None => r.unscored += 1,
            Some(0..=30) => r.low += 1,
            Some(31..=70) => r.medium += 1,
            Some(_) => r.high += 1,
        }
    }
    r
}

struct Rng(EventGen);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A word of `ev`'s text that the brute force handles exactly.
fn random_word(rng: &mut Rng, ev: &Event) -> Option<String> {
    let words: Vec<String> = text_values(ev)
        .iter()
        .take(if rng.chance(70) { 1 } else { usize::MAX })
        .flat_map(|v| tokenize(v))
        .map(|(_, t)| t)
        .filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric()))
        .filter(|t| !["and", "or", "not", "in", "to"].contains(&t.as_str()))
        .collect();
    (!words.is_empty()).then(|| rng.pick(&words).clone())
}

fn random_filter(rng: &mut Rng, evs: &[StoredEvent]) -> Filter {
    let stored = rng.pick(evs);
    let ev = &stored.event;
    let mut f = Filter::default();
    macro_rules! maybe {
        ($field:ident, $pct:expr) => {
            if rng.chance($pct) {
                f.$field = ev.$field.clone();
            }
        };
    }
    maybe!(tenant, 25);
    maybe!(category, 20);
    maybe!(source, 15);
    maybe!(status, 20);
    maybe!(severity, 8);
    maybe!(entity_type, 20);
    maybe!(entity_id, 4);
    maybe!(user_id, 10);
    maybe!(session_id, 3);
    maybe!(correlation_id, 3);
    maybe!(ip, 3);
    maybe!(actor, 5);
    if rng.chance(15) {
        // A key's scope: this event's tenant and maybe another's.
        let mut ts: Vec<String> = ev.tenant.iter().cloned().collect();
        if rng.chance(50) {
            ts.extend(rng.pick(evs).event.tenant.clone());
        }
        f.tenants = Some(ts);
    }
    if rng.chance(30) {
        f.action = Some(ev.action.clone());
        if rng.chance(30) {
            // Keywords ignore case.
            f.action = Some(ev.action.to_uppercase());
        }
    }
    maybe!(user_name, 5);
    if rng.chance(10) {
        let lo = rng.below(101);
        f.risk_score = Some(crate::query::NumRange {
            lo,
            hi: lo + rng.below(101 - lo + 1),
        });
    }
    if rng.chance(8) {
        let lo = rng.below(5_000);
        f.duration_ms = Some(crate::query::NumRange {
            lo,
            hi: if rng.chance(20) {
                u64::MAX
            } else {
                lo + rng.below(5_000)
            },
        });
    }
    if rng.chance(3) {
        f.tenant = Some("no-such-tenant".to_owned());
    }
    if rng.chance(8) {
        f.ingested_by = stored.provenance.as_ref().map(|p| p.ingested_by.clone());
    }
    if rng.chance(20) {
        f.min_severity = Some(*rng.pick(Severity::ALL));
    }
    let lo = DEFAULT_BASE_TIME - 11 * DAY;
    let span = (evs.len() as u64 + 20) * 1_500_000 + 11 * DAY as u64;
    // A time anywhere, or at (or next to) an event's time to test the boundaries.
    let time = |rng: &mut Rng| {
        if rng.chance(40) {
            event_time(stored) + rng.below(3) as i64 - 1
        } else if rng.chance(50) {
            event_time(rng.pick(evs)) + rng.below(3) as i64 - 1
        } else {
            lo + rng.below(span) as i64
        }
    };
    if rng.chance(30) {
        f.since = Some(time(rng));
    }
    if rng.chance(30) {
        f.until = Some(time(rng));
    }
    if let (Some(since), Some(until)) = (f.since, f.until) {
        if since > until && rng.chance(80) {
            (f.since, f.until) = (Some(until), Some(since));
        }
    }
    if rng.chance(40) {
        let mut words: Vec<String> = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let source = &rng.pick(evs).event;
            let source = if rng.chance(60) { ev } else { source };
            words.extend(random_word(rng, source));
        }
        if !words.is_empty() {
            let sep = if rng.chance(50) { " " } else { " AND " };
            f.text = Some(words.join(sep));
        }
    }
    f
}

fn check_filter(ix: &TextIndex, evs: &[StoredEvent], f: &Filter, rng: &mut Rng) {
    let matching: Vec<&StoredEvent> = evs.iter().filter(|e| brute_match(e, f)).collect();
    if f.text.is_none() {
        // The live stream's matcher (derived from the field table) agrees with
        // the brute force, and so with the index.
        for e in evs {
            assert_eq!(
                f.matches_fields(e),
                brute_match(e, f),
                "{f:?} seq {}",
                e.seq
            );
        }
    }
    let asc: Vec<u64> = matching.iter().map(|e| e.seq).collect();
    assert_eq!(ix.count(f).unwrap(), asc.len() as u64, "count {f:?}");
    groups::check_counts_and_groups(ix, evs, &matching, f, rng);
    for order in [Order::Desc, Order::Asc] {
        let expected: Vec<u64> = match order {
            Order::Asc => asc.clone(),
            Order::Desc => asc.iter().rev().copied().collect(),
        };
        let limit = 1 + rng.below(50) as usize;
        // A random cursor.
        let after = (!evs.is_empty() && rng.chance(30)).then(|| rng.pick(evs).seq);
        let want: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|s| match (after, order) {
                (None, _) => true,
                (Some(a), Order::Desc) => *s < a,
                (Some(a), Order::Asc) => *s > a,
            })
            .collect();
        let got = ix.search(f, order, limit, after).unwrap();
        assert_eq!(
            got,
            want[..limit.min(want.len())],
            "{order:?} {limit} {after:?} {f:?}"
        );
        // Walk the cursor to the end.
        let mut walked: Vec<u64> = Vec::new();
        let mut cursor = None;
        let page = if expected.len() > 400 { 50 } else { limit };
        for _ in 0..expected.len() / page + 2 {
            let got = ix.search(f, order, page, cursor).unwrap();
            assert!(got.len() <= page);
            if got.is_empty() {
                break;
            }
            cursor = got.last().copied();
            walked.extend(got);
        }
        assert_eq!(walked, expected, "walk {order:?} {page} {f:?}");
    }
    // `now - 24h` at (or next to) an event's time.
    let now = event_time(rng.pick(evs)) + DAY + rng.below(3) as i64 - 1;
    let bucket = *rng.pick(&[60_000_000, 3_600_000_000, DAY]);
    let top = 1 + rng.below(10) as usize;
    let stats = ix.stats(f, now, bucket, top).unwrap();
    assert_eq!(
        stats,
        brute_stats(&matching, now, bucket, top),
        "stats {f:?}"
    );
}

#[test]
fn search_count_and_stats_match_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TextIndex::open(dir.path()).unwrap();
    assert_eq!(ix.committed_seq(), None);
    let mut evs = events(1, 1, 2_000);
    let mut w = ix.writer().unwrap();
    // Many small commits: many segments, merged below on purpose.
    w.writer
        .set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    index_all(&mut w, &evs, 150);
    assert_eq!(ix.num_docs(), 2_000);
    // The index got ahead of the log: drop the tail and index other events there,
    // so that deleted documents share seqs with live ones.
    delete_from(&mut w, 1_901);
    let replacement = events(2, 1_901, 100);
    for ev in &replacement {
        w.add(ev).unwrap();
    }
    w.commit(2_000).unwrap();
    evs.truncate(1_900);
    evs.extend(replacement);
    assert_eq!(ix.num_docs(), 2_000);
    assert_eq!(ix.all_seqs().unwrap(), (1..=2_000).collect::<Vec<u64>>());

    let segments = |ix: &TextIndex| ix.shared.reader.searcher().segment_readers().len();
    assert!(segments(&ix) > 10);

    let mut rng = Rng(EventGen::new(99));
    check_filter(&ix, &evs, &Filter::default(), &mut rng);
    for round in 0..2 {
        for _ in 0..100 {
            let f = random_filter(&mut rng, &evs);
            check_filter(&ix, &evs, &f, &mut rng);
        }
        if round == 1 {
            break;
        }
        // Merge everything (purging the deleted documents) and check again: merged
        // segments must stay sorted by seq, descending.
        let ids = ix.shared.index.searchable_segment_ids().unwrap();
        w.writer.merge(&ids).wait().unwrap();
        w.commit(2_000).unwrap();
        assert_eq!(segments(&ix), 1);
        let searcher = ix.shared.reader.searcher();
        let reader = &searcher.segment_readers()[0];
        assert_eq!(reader.max_doc(), 2_000);
        let col = reader.fast_fields().u64(F_SEQ).unwrap();
        let seqs: Vec<u64> = (0..reader.max_doc()).filter_map(|d| col.first(d)).collect();
        assert_eq!(seqs, (1..=2_000).rev().collect::<Vec<u64>>());
    }
    // Raw fields and metadata paths in the query syntax.
    let by_query = |q: &str| -> Vec<u64> {
        let f = Filter {
            text: Some(q.to_owned()),
            ..Filter::default()
        };
        let mut v = ix.search(&f, Order::Asc, 5_000, None).unwrap();
        v.sort_unstable();
        v
    };
    let login_failed: Vec<u64> = evs
        .iter()
        .filter(|e| e.event.action == "login_failed")
        .map(|e| e.seq)
        .collect();
    assert!(!login_failed.is_empty());
    assert_eq!(by_query("action:login_failed"), login_failed);
    let reason: Vec<u64> = evs
        .iter()
        .filter(|e| {
            e.event
                .metadata
                .as_deref()
                .is_some_and(|m| m.contains(r#""reason":"bad_password""#))
        })
        .map(|e| e.seq)
        .collect();
    assert!(!reason.is_empty());
    assert_eq!(by_query("metadata.reason:bad_password"), reason);
    assert_eq!(by_query("metadata.reason:\"bad_password\""), reason);
    // A bare word finds metadata values too.
    let bare: Vec<u64> = evs
        .iter()
        .filter(|e| has_word(&e.event, "bad") && has_word(&e.event, "password"))
        .filter(|e| has_phrase(&e.event, "bad", "password"))
        .map(|e| e.seq)
        .collect();
    assert!(reason.iter().all(|s| bare.contains(s)));
    assert_eq!(by_query("bad_password"), bare);
    // Phrases.
    let mut phrases = 0;
    for ev in evs.iter().step_by(37) {
        let Some(d) = ev.event.description.as_deref() else {
            continue;
        };
        let toks = tokenize(d);
        let Some(pair) = toks.windows(2).find(|p| {
            p[1].0 == p[0].0 + 1
                && p.iter()
                    .all(|(_, t)| t.bytes().all(|b| b.is_ascii_alphanumeric()))
        }) else {
            continue;
        };
        let (a, b) = (&pair[0].1, &pair[1].1);
        let want: Vec<u64> = evs
            .iter()
            .filter(|e| has_phrase(&e.event, a, b))
            .map(|e| e.seq)
            .collect();
        assert!(want.contains(&ev.seq));
        assert_eq!(by_query(&format!("\"{a} {b}\"")), want, "{a} {b}");
        phrases += 1;
    }
    assert!(phrases > 20);
}

#[test]
fn committed_seq_survives_reopen_and_deletes_apply_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(3, 1, 300);
    {
        let ix = TextIndex::open(dir.path()).unwrap();
        assert_eq!(ix.committed_seq(), None);
        let mut w = ix.writer().unwrap();
        // Only one writer at a time.
        assert!(matches!(ix.writer(), Err(TextError::Tantivy(_))));
        index_all(&mut w, &evs, 100);
        assert_eq!(ix.committed_seq(), Some(300));
        // Not visible before the commit.
        delete_from(&mut w, 251);
        assert_eq!(ix.num_docs(), 300);
        w.commit(250).unwrap();
        assert_eq!(ix.committed_seq(), Some(250));
        assert_eq!(ix.num_docs(), 250);
        assert_eq!(ix.all_seqs().unwrap(), (1..=250).collect::<Vec<u64>>());
        let all = Filter::default();
        assert_eq!(
            ix.search(&all, Order::Desc, 3, None).unwrap(),
            [250, 249, 248]
        );
        assert_eq!(
            ix.search(&all, Order::Asc, 2, Some(248)).unwrap(),
            [249, 250]
        );
        assert_eq!(ix.count(&all).unwrap(), 250);
    }
    let ix = TextIndex::open(dir.path()).unwrap();
    assert_eq!(ix.committed_seq(), Some(250));
    assert_eq!(ix.num_docs(), 250);
    assert_eq!(
        ix.search(&Filter::default(), Order::Desc, 1, None).unwrap(),
        [250]
    );
    // Reopened, the writer works again.
    let mut w = ix.writer().unwrap();
    w.add(&evs[250]).unwrap();
    w.commit(251).unwrap();
    assert_eq!(ix.num_docs(), 251);
    assert_eq!(
        ix.search(&Filter::default(), Order::Desc, 1, None).unwrap(),
        [251]
    );
}

#[test]
fn bad_queries_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TextIndex::open(dir.path()).unwrap();
    let mut w = ix.writer().unwrap();
    index_all(&mut w, &events(4, 1, 20), 20);
    for q in [
        "nosuchfield:x",
        // The statistics columns are not fields of a query; nor is an unknown
        // field asked whether it has a value.
        "_user_name:*",
        "_action:login",
        "nosuchfield:*",
        "description:x OR (_tenant:* AND description:y)",
        "description:(",
        "\"unclosed",
        "-onlyexcluded",
    ] {
        let f = Filter {
            text: Some(q.to_owned()),
            ..Filter::default()
        };
        match ix.search(&f, Order::Desc, 10, None) {
            Err(TextError::BadQuery(msg)) => assert!(msg.contains(';'), "{msg}"),
            other => panic!("{q}: {other:?}"),
        }
        assert!(matches!(ix.count(&f), Err(TextError::BadQuery(_))));
    }
    // Blank text is no text filter; an empty time range matches nothing.
    let blank = Filter {
        text: Some("  ".to_owned()),
        ..Filter::default()
    };
    assert_eq!(ix.count(&blank).unwrap(), 20);
    let empty = Filter {
        since: Some(5),
        until: Some(5),
        ..Filter::default()
    };
    assert_eq!(ix.count(&empty).unwrap(), 0);
    assert_eq!(
        ix.search(&empty, Order::Asc, 5, None).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        ix.stats(&empty, 0, 60_000_000, 3).unwrap(),
        Stats::default()
    );
    assert_eq!(
        ix.search(&blank, Order::Asc, 0, None).unwrap(),
        Vec::<u64>::new()
    );
}

#[test]
fn unreadable_or_foreign_directories_fail_to_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meta.json"), b"\x00garbage{").unwrap();
    assert!(matches!(
        TextIndex::open(dir.path()),
        Err(TextError::Open { .. })
    ));

    // An index with another schema.
    let other = tempfile::tempdir().unwrap();
    let mut b = Schema::builder();
    b.add_text_field("title", tantivy::schema::TEXT);
    Index::create_in_dir(other.path(), b.build()).unwrap();
    let err = TextIndex::open(other.path()).unwrap_err();
    assert!(matches!(err, TextError::Open { .. }), "{err}");
    assert!(err
        .to_string()
        .contains(&other.path().display().to_string()));
}

/// The field table, the schema and the query parameters agree: a row cannot be
/// half-wired.
#[test]
fn the_schema_and_the_filters_follow_the_field_table() {
    use tantivy::schema::FieldType;
    let (schema, fields) = build_schema();
    for (spec, handle) in event::FIELDS.iter().zip(fields.rows) {
        let entry = schema
            .get_field(spec.name)
            .ok()
            .map(|f| schema.get_field_entry(f));
        match spec.indexed {
            Indexed::No => assert!(entry.is_none() && handle.is_none(), "{}", spec.name),
            indexed => {
                let entry = entry.unwrap_or_else(|| panic!("{} not in the schema", spec.name));
                assert_eq!(Some(schema.get_field(spec.name).unwrap()), handle);
                let ok = match (indexed, entry.field_type()) {
                    (Indexed::U64Column, FieldType::U64(o)) => o.is_fast(),
                    (Indexed::Keyword | Indexed::NamedKeyword, FieldType::Str(o)) => {
                        o.get_indexing_options()
                            .is_some_and(|i| i.tokenizer() == KEYWORD_TOKENIZER)
                            && !o.is_fast()
                    }
                    (Indexed::ExactKeyword, FieldType::Str(o)) => {
                        o.get_indexing_options()
                            .is_some_and(|i| i.tokenizer() == "raw")
                            && !o.is_fast()
                    }
                    (Indexed::Column, FieldType::Str(o)) => {
                        o.get_indexing_options().is_none()
                            && o.get_fast_field_tokenizer_name() == Some(KEYWORD_TOKENIZER)
                    }
                    (Indexed::Number, FieldType::U64(o)) => o.is_fast() && o.is_indexed(),
                    (Indexed::FullText, FieldType::Str(o)) => o
                        .get_indexing_options()
                        .is_some_and(|i| i.tokenizer() == "default"),
                    (Indexed::Json, FieldType::JsonObject(_)) => true,
                    _ => false,
                };
                assert!(
                    ok,
                    "{}: {indexed:?} but {:?}",
                    spec.name,
                    entry.field_type()
                );
            }
        }
        if let Some(param) = spec.filter {
            assert!(
                matches!(
                    spec.indexed,
                    Indexed::Keyword
                        | Indexed::ExactKeyword
                        | Indexed::NamedKeyword
                        | Indexed::Column
                        | Indexed::Number
                ),
                "the filter {param} needs a term, a column or a number"
            );
            assert!(crate::query::PARAMS.contains(&param), "{param}");
        }
    }
    // Statistics: the string columns and the packed codes.
    let stat_rows: Vec<String> = event::FIELDS
        .iter()
        .filter(|s| s.stat == Stat::Column)
        .map(|s| format!("_{}", s.name))
        .collect();
    let derived: Vec<String> = stat_columns().iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(stat_rows, derived);
    // Every identifier keyword can be grouped by, from a column of its values as posted.
    for spec in event::FIELDS {
        let keyword = matches!(
            spec.indexed,
            Indexed::Keyword | Indexed::ExactKeyword | Indexed::NamedKeyword
        );
        if keyword && spec.kind == event::Kind::Identifier {
            assert_eq!(spec.stat, Stat::Column, "{}", spec.name);
        }
        if spec.stat != Stat::No {
            assert!(group_source(spec.name).is_some(), "{}", spec.name);
        }
    }
    let coded: Vec<&str> = event::FIELDS
        .iter()
        .filter(|s| s.stat == Stat::Code)
        .map(|s| s.name)
        .collect();
    assert_eq!(coded, ["source", "status", "severity"]);
    // The hint names every field a query may name, and the column-only ones.
    for spec in event::FIELDS {
        match spec.indexed {
            Indexed::Keyword
            | Indexed::ExactKeyword
            | Indexed::NamedKeyword
            | Indexed::Number
            | Indexed::FullText
            | Indexed::Column => {
                assert!(fields_hint().contains(spec.name), "{}", spec.name)
            }
            _ => {}
        }
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<TextIndex>();
    send::<TextWriter>();
}
