//! Excluded clauses (`-word`, `-"a phrase"`) that tolerate how tantivy probes
//! them.
//!
//! tantivy 0.27 filters a boolean query's `MustNot` clauses by calling
//! `seek_danger(candidate)` on each excluded scorer for every candidate
//! document. Its phrase scorer asserts (a `debug_assert!`) that the target is
//! never behind its current document, which is not true once the phrase has
//! no more matches in a segment (its document is `TERMINATED`): a query as
//! plain as `+disk -"disk full"` panics in builds with debug assertions (the
//! test suite, the fuzzers) and answers correctly in release builds.
//! The `text_query` fuzz target found it; upstream tracks the too-strict
//! assertion as quickwit-oss/tantivy#2811.
//!
//! [`tolerant_exclusions`] rewrites a parsed query so that every excluded
//! clause is wrapped in [`Tolerant`], whose `seek`/`seek_danger` never move a
//! scorer backwards: they answer from the current document when it is already
//! at or past the target, like tantivy's default `DocSet::seek_danger`.
//! Release builds give the same answers with or without it; the wrapper only
//! gives up the phrase scorer's "danger zone" shortcut on excluded phrases.

use tantivy::query::{
    AllScorer, BooleanQuery, EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight,
};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term};
use tantivy::{SeekDangerResult, TERMINATED};

/// `query` with every `MustNot` clause, at any depth, wrapped in [`Tolerant`].
pub(crate) fn tolerant_exclusions(query: Box<dyn Query>) -> Box<dyn Query> {
    let Some(boolean) = query.downcast_ref::<BooleanQuery>() else {
        return query;
    };
    let clauses = boolean
        .clauses()
        .iter()
        .map(|(occur, clause)| {
            let clause = tolerant_exclusions(clause.box_clone());
            let clause: Box<dyn Query> = match occur {
                tantivy::query::Occur::MustNot => Box::new(Tolerant(clause)),
                _ => clause,
            };
            (*occur, clause)
        })
        .collect();
    Box::new(BooleanQuery::with_minimum_required_clauses(
        clauses,
        boolean.get_minimum_number_should_match(),
    ))
}

/// A query whose scorers never seek backwards (see the module docs).
#[derive(Debug)]
pub(crate) struct Tolerant(Box<dyn Query>);

impl Clone for Tolerant {
    fn clone(&self) -> Self {
        Tolerant(self.0.box_clone())
    }
}

impl Query for Tolerant {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(TolerantWeight(self.0.weight(enable_scoring)?)))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.0.query_terms(visitor);
    }
}

struct TolerantWeight(Box<dyn Weight>);

impl Weight for TolerantWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let scorer = self.0.scorer(reader, boost)?;
        // tantivy recognises these two by type to skip or short-cut an
        // exclusion; neither can seek backwards.
        if scorer.is::<EmptyScorer>() || scorer.is::<AllScorer>() {
            return Ok(scorer);
        }
        Ok(Box::new(TolerantScorer(scorer)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        self.0.count(reader)
    }
}

struct TolerantScorer(Box<dyn Scorer>);

impl DocSet for TolerantScorer {
    fn advance(&mut self) -> DocId {
        self.0.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let doc = self.0.doc();
        if doc >= target {
            return doc;
        }
        self.0.seek(target)
    }

    fn seek_danger(&mut self, target: DocId) -> SeekDangerResult {
        if target >= TERMINATED {
            return SeekDangerResult::SeekLowerBound(TERMINATED);
        }
        // Only `seek` is used, so the inner scorer is never left in tantivy's
        // "danger zone" and `doc()` is always valid.
        let doc = self.seek(target);
        if doc == target {
            SeekDangerResult::Found
        } else {
            SeekDangerResult::SeekLowerBound(doc)
        }
    }

    fn doc(&self) -> DocId {
        self.0.doc()
    }

    fn size_hint(&self) -> u32 {
        self.0.size_hint()
    }

    fn cost(&self) -> u64 {
        self.0.cost()
    }
}

impl Scorer for TolerantScorer {
    fn score(&mut self) -> Score {
        self.0.score()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::collector::DocSetCollector;
    use tantivy::query::QueryParser;
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{doc, Index};

    /// Matching document ids of `text` over `docs`, with and without the
    /// rewrite; `None` where running it panicked.
    fn run(docs: &[&str], text: &str) -> (Option<Vec<u32>>, Vec<u32>) {
        let mut schema = Schema::builder();
        let body = schema.add_text_field("body", TEXT);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for d in docs {
            writer.add_document(doc!(body => *d)).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let query = QueryParser::for_index(&index, vec![body])
            .parse_query(text)
            .unwrap();
        let ids = |q: &dyn Query| {
            let mut ids: Vec<u32> = searcher
                .search(q, &DocSetCollector)
                .unwrap()
                .into_iter()
                .map(|a| a.doc_id)
                .collect();
            ids.sort_unstable();
            ids
        };
        let plain = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ids(&*query))).ok();
        let tolerant = ids(&*tolerant_exclusions(query.box_clone()));
        (plain, tolerant)
    }

    const DOCS: [&str; 5] = [
        "disk full on sda",
        "disk almost full",
        "disk ok",
        "full disk backup",
        "disk full again",
    ];

    #[test]
    fn an_excluded_phrase_without_matches_excludes_nothing() {
        // Both words occur, never as the phrase: the phrase scorer starts at
        // TERMINATED and is then probed for documents 0, 1, 2.
        let docs = &DOCS[1..4];
        let (plain, tolerant) = run(docs, r#"+disk -"disk full""#);
        assert_eq!(tolerant, vec![0, 1, 2]);
        if cfg!(debug_assertions) {
            assert_eq!(
                plain, None,
                "tantivy's assertion no longer fires; drop the wrapper?"
            );
        } else {
            assert_eq!(plain, Some(tolerant));
        }
    }

    #[test]
    fn excluded_phrases_with_slop_and_nested_exclusions_answer_like_the_definition() {
        for (query, want) in [
            (r#"+disk -"disk full"~1"#, vec![2, 3]),
            (r#"disk -(+full -"disk full")"#, vec![0, 2, 4]),
            (r#"+disk -ok -"full disk""#, vec![0, 1, 4]),
            (r#"+(disk -"almost full") -backup"#, vec![0, 2, 4]),
            ("+disk -nosuchword", vec![0, 1, 2, 3, 4]),
            ("+disk -disk", vec![]),
        ] {
            assert_eq!(run(&DOCS, query).1, want, "{query}");
        }
    }

    #[test]
    fn queries_without_exclusions_are_left_as_they_are() {
        for query in ["disk", r#""disk full""#, "+disk +full", "disk OR backup"] {
            let (plain, tolerant) = run(&DOCS, query);
            assert_eq!(plain, Some(tolerant), "{query}");
        }
    }
}
