//! The full-text, filter and statistics index (tantivy).
//!
//! A derived view of the segment log: it stores no event documents at all (no `STORED`
//! field), only what is needed to find seqs, order them and count them. Queries return
//! seqs; callers fetch the events from the log. The index can be deleted at any time and
//! rebuilt from the log; [`TextIndex::committed_seq`] (the commit payload) says how far it
//! got.
//!
//! Modules: `schema` (fields and handles), `writer` ([`TextWriter`]), `ordered` (seq-ordered
//! search), `stats` (the statistics collector), `partials` (statistics segment by
//! segment from sealed segments' partial counts), `partial_cache` (their bounded
//! cache), `values` (the statistics columns' values numbered, what partials count
//! by), `chunks` (a large segment a window cuts, by chunks); this file holds
//! [`TextIndex`] and turns a [`Filter`] (the query layer's model) into a tantivy query.
//!
//! # Schema
//!
//! Derived from the field table (`event::FIELDS`, its `indexed` and `stat` columns) in
//! `schema.rs`; the table below is what it derives today.
//!
//! | field | tantivy options | used for |
//! |-------|-----------------|----------|
//! | `seq` | u64 fast column (not indexed) | index sort key, ordering, cursors, `delete_below` |
//! | `time` | i64 fast column (not indexed) | `since`/`until`, histogram, last 24 h (event time, µs) |
//! | `action`, `actor`, `category`, `source`, `status`, `severity`, `entity_type`, `entity_id`, `user_id`, `user_name`, `ingested_by` | keyword: the whole value as one term, lower-cased (`stele_keyword`), doc ids only | filters and `field:value` in queries, ignoring letter case |
//! | `tenant` | raw string, doc ids only | the exact tenant filter and an API key's tenant scope |
//! | `session_id`, `correlation_id`, `ip` | lower-cased string fast column only | filters (an equality scan of the column) |
//! | `risk_score`, `duration_ms` | u64, indexed and fast | values and ranges, as filters and in queries (`risk_score:[71 TO 100]`) |
//! | `description`, `entity_name`, `user_agent`, `changes`, `metadata_text`, `names_text` | default tokenizer, positions | full text: the query parser's default fields |
//! | `metadata` | JSON, default tokenizer, positions | `metadata.reason:card` |
//! | `_action`, `_actor`, `_tenant`, `_category`, `_entity_type`, `_entity_id`, `_user_id`, `_user_name`, `_ingested_by`, `_process_name`, `_process_id`, `_batch_id` (every `Stat::Column` row) | raw string fast columns of the values as posted (not case-folded); nothing when absent (segments written before 2026-12-07: `"\0"`, never counted as a value) | statistics groups and facets |
//! | `codes` | u64 fast column: severity, status, source (3 bits each) | statistics |
//!
//! Nothing is stored and no field has fieldnorms (results are ordered by seq, never
//! scored). `session_id`, `correlation_id` and `ip` have close to one distinct value per
//! event: as terms they made indexing about 30% slower and the index larger; as columns
//! they cost a scan of one column per query that filters on them (under 1 ms per million
//! events). They cannot be used inside the query text. Nor can the statistics columns
//! (`_<name>`): the query parser resolves names in the schema without them
//! (`schema::query_schema`), and `field:*`, which names its field only when it runs, is
//! refused unless the field is one of that schema's.
//!
//! # Order
//!
//! The index is **sorted by `seq`, descending** (`IndexSettings::sort_by_field`): in every
//! segment, doc ids run from the newest event to the oldest, and merges keep that order
//! (segments hold disjoint seq ranges, so tantivy merges them by stacking). Listing the
//! newest matches therefore walks each segment's matches from its first doc and stops
//! after `limit` of them; a cursor is a binary search on the `seq` column. Oldest-first
//! listing reads windows of doc ids that grow backwards from the end of each segment.
//! Nothing ever collects all matches to sort them.
//!
//! # Full text
//!
//! Bare words search `description`, `entity_name`, `user_agent`, `changes` (each change
//! as `field old new`, values as their JSON text), `metadata_text` (the scalar values of
//! `metadata`, one text value each, never its key names: `suspicious NOT api` must not
//! be about keys) and `names_text` (the words of `user_name`); words are ANDed. tantivy's
//! JSON field matches bare words only at its root path, so `metadata_text` is what makes
//! a bare word find metadata values, and the `metadata` JSON field serves path queries.
//! Changing what a field holds changes the schema (a field, a tokenizer), so an index
//! of an older layout fails to open and is rebuilt from the log. Every text field
//! keeps positions, so phrases (and words that the tokenizer splits, such as
//! `bad_password` or an e-mail address) match in all of them.

use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tantivy::collector::{Collector, Count, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, EnableScoring, Occur, Query, QueryParser, QueryParserError, RangeQuery,
    TermQuery, Weight,
};
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema, TextFieldIndexing,
    TextOptions,
};
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexSettings, IndexSortByField, IndexWriter, ReloadPolicy,
    Score, Searcher, SegmentOrdinal, SegmentReader, TantivyDocument, Term, TERMINATED,
};

use crate::event::{self, FieldValue, Indexed, Severity, Source, Stat, Status, StoredEvent};
use crate::query::{event_time, fold_case, Filter, Order, Position};

// ---------------------------------------------------------------------------------------
// Errors, filters, public types
// ---------------------------------------------------------------------------------------

/// A searcher and a query's weight on it.
type Weighted = (Searcher, Box<dyn Weight>);

/// What can go wrong in the full-text index.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The index directory could not be opened (unreadable, or a different schema); the
    /// caller deletes it and rebuilds from the log.
    #[error("the full-text index in {path} could not be opened: {detail}")]
    Open {
        /// The index directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The full-text query could not be parsed; the message says what to fix.
    #[error("invalid full-text query: {0}")]
    BadQuery(String),
    /// Any other tantivy failure.
    #[error("full-text index failure: {0}")]
    Tantivy(String),
}

/// Statistics of the documents matching a filter.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Matching documents.
    pub total: u64,
    /// Matching documents with `event_time >= now - 24h`.
    pub last_24h: u64,
    /// Counts per action (count desc, then value asc).
    pub by_action: Vec<(String, u64)>,
    /// Counts per category (events without one are not counted).
    pub by_category: Vec<(String, u64)>,
    /// Counts per entity type.
    pub by_entity_type: Vec<(String, u64)>,
    /// Counts per severity (lower-case names).
    pub by_severity: Vec<(String, u64)>,
    /// Counts per status (lower-case names).
    pub by_status: Vec<(String, u64)>,
    /// Counts per source (lower-case names).
    pub by_source: Vec<(String, u64)>,
    /// `(bucket start in unix µs, count)`, ascending, non-empty buckets only.
    pub histogram: Vec<(i64, u64)>,
    /// The `top` user ids by count.
    pub top_users: Vec<(String, u64)>,
    /// Exact number of distinct user ids among the matches.
    pub active_users: u64,
    /// The same as `failure_rate` (its name before there were two rates).
    pub error_rate: f64,
    /// Matches with status `failure` / total (0.0 when total is 0).
    pub failure_rate: f64,
    /// Matches with severity `error` or `critical` / total (0.0 when total is 0).
    pub error_severity_rate: f64,
    /// Matches per risk level.
    pub by_risk: RiskCounts,
}

mod chunks;
mod columns;
mod counts;
mod ordered;
mod partial_cache;
mod partials;
mod recent;
mod schema;
mod stats;
mod timed;
mod timemap;
mod values;
mod writer;

use ordered::*;
pub use partial_cache::{PartialsStats, PARTIALS_BYTES_MAX};
pub use recent::{RecentAnswer, RecentRequest};
use schema::*;
pub use stats::{group_fields, GroupCounts, RiskCounts, StatsAnswer, StatsRequest};
#[cfg(test)]
use values::ranked;
pub use values::{ValuesStats, VALUES_BYTES_MAX};
pub use writer::TextWriter;

fn tantivy_err(err: impl fmt::Display) -> TextError {
    TextError::Tantivy(err.to_string())
}

/// A failure running a parsed query: a field the parser let through
/// (`R:*`, an "exists" query on an unknown field) is the query's fault.
fn query_failed(err: tantivy::TantivyError) -> TextError {
    match err {
        tantivy::TantivyError::FieldNotFound(field) => TextError::BadQuery(format!(
            "the query names the field {field:?}, which does not exist; {}",
            fields_hint()
        )),
        // `metadata_text:*`: "exists" needs a fast field.
        tantivy::TantivyError::SchemaError(why) => TextError::BadQuery(format!(
            "the query cannot run on these fields ({why}); `field:*` is not supported here, \
             {QUERY_HINT}"
        )),
        // `metadata.region:<u`: ranges over JSON need a fast field.
        tantivy::TantivyError::InvalidArgument(why) if why.contains("JSON") => {
            TextError::BadQuery(format!(
                "the query cannot run ({why}); ranges (`<`, `>`, `[a TO b]`) over \
                 `metadata.<key>` are not supported, match the value instead"
            ))
        }
        tantivy::TantivyError::InvalidArgument(why) => {
            TextError::BadQuery(format!("the query cannot run ({why}); {QUERY_HINT}"))
        }
        other => tantivy_err(other),
    }
}

/// Runs a read-only query, turning a panic inside tantivy into a refused
/// query. The `text_query` fuzz target found a query that tantivy 0.27 parses
/// and then panics on while running (an excluded phrase: see
/// [`super::exclude`], which now keeps that one away from tantivy); this is
/// the net for the ones not found yet. Searchers are immutable snapshots, so
/// nothing shared is left half-changed.
fn guarded<T>(run: impl FnOnce() -> Result<T, TextError>) -> Result<T, TextError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(TextError::BadQuery(format!(
            "the full-text engine failed on this query ({why}); simplify it: {QUERY_HINT}"
        )))
    })
}

/// `field:*` ("has a value") is the one query the parser leaves unresolved: it
/// names its field when it runs, against every field of the index, the statistics
/// columns included. Refused here unless the field (or a JSON field's path) is one a
/// query may name; a query that does not parse is left to the parser's error.
fn exists_fields_known(fields: &Schema, text: &str) -> Result<(), TextError> {
    use tantivy::query_grammar::{UserInputAst, UserInputLeaf};
    fn unknown<'a>(fields: &Schema, ast: &'a UserInputAst) -> Option<&'a str> {
        match ast {
            UserInputAst::Clause(parts) => parts.iter().find_map(|(_, a)| unknown(fields, a)),
            UserInputAst::Boost(a, _) => unknown(fields, a),
            UserInputAst::Leaf(leaf) => match leaf.as_ref() {
                UserInputLeaf::Exists { field } if fields.find_field(field).is_none() => {
                    Some(field.as_str())
                }
                _ => None,
            },
        }
    }
    let Ok(ast) = tantivy::query_grammar::parse_query(text) else {
        return Ok(());
    };
    match unknown(fields, &ast) {
        Some(field) => Err(bad_query(&QueryParserError::FieldDoesNotExist(
            field.to_owned(),
        ))),
        None => Ok(()),
    }
}

fn bad_query(err: &QueryParserError) -> TextError {
    let hint = match err {
        QueryParserError::FieldDoesNotExist(_) | QueryParserError::FieldNotIndexed(_) => {
            fields_hint().to_owned()
        }
        QueryParserError::AllButQueryForbidden => {
            "add at least one word that must match next to the excluded ones".to_owned()
        }
        _ => QUERY_HINT.to_owned(),
    };
    TextError::BadQuery(format!("{err}; {hint}"))
}

/// State shared by the read handle and the writer.
struct Shared {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    parser: QueryParser,
    /// The schema `parser` resolves field names in (`schema::query_schema`).
    query_fields: Schema,
    /// Seq in the payload of the last commit.
    committed: Mutex<Option<u64>>,
    /// Per-segment partial statistics (`partials`).
    partials: partial_cache::PartialCache,
    /// The statistics columns' values, numbered (`values`).
    values: values::Values,
}

/// The shared, read-side handle (Send + Sync, cheap to share in an Arc).
pub struct TextIndex {
    shared: Arc<Shared>,
}

impl fmt::Debug for TextIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextIndex")
            .field("num_docs", &self.num_docs())
            .field("committed_seq", &self.committed_seq())
            .finish()
    }
}

fn parse_payload(payload: &str) -> Option<u64> {
    payload.strip_prefix(PAYLOAD_PREFIX)?.parse().ok()
}

impl TextIndex {
    /// Opens or creates the index in `dir`. If the directory holds an index with a
    /// different schema or settings (or is unreadable), returns [`TextError::Open`]: the
    /// caller deletes the directory and rebuilds from the log.
    pub fn open(dir: &Path) -> Result<TextIndex, TextError> {
        let open_err = |detail: String| TextError::Open {
            path: dir.to_path_buf(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(format!("creating it: {e}")))?;
        let directory = MmapDirectory::open(dir).map_err(|e| open_err(e.to_string()))?;
        let (schema, fields) = build_schema();
        let mut index = Index::builder()
            .schema(schema)
            .settings(index_settings())
            .tokenizers(tokenizers())
            .fast_field_tokenizers(tokenizers())
            .open_or_create(directory)
            .map_err(|e| open_err(e.to_string()))?;
        // `open_or_create` sets the tokenizers on an existing index, not the fast
        // columns' ones.
        index.set_fast_field_tokenizers(tokenizers());
        if index.settings().sort_by_field != index_settings().sort_by_field {
            return Err(open_err(format!(
                "the index is sorted by {:?}, expected {:?}",
                index.settings().sort_by_field,
                index_settings().sort_by_field
            )));
        }
        let metas = index.load_metas().map_err(|e| open_err(e.to_string()))?;
        let committed = match metas.payload.as_deref() {
            None => None,
            Some(p) => Some(
                parse_payload(p)
                    .ok_or_else(|| open_err(format!("unexpected commit payload {p:?}")))?,
            ),
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| open_err(e.to_string()))?;
        let query_fields = query_schema(&index.schema());
        let mut parser = QueryParser::new(
            query_fields.clone(),
            fields.default_text_fields(),
            index.tokenizers().clone(),
        );
        parser.set_conjunction_by_default();
        Ok(TextIndex {
            shared: Arc::new(Shared {
                index,
                reader,
                fields,
                parser,
                query_fields,
                committed: Mutex::new(committed),
                partials: partial_cache::PartialCache::new(PARTIALS_BYTES_MAX),
                values: values::Values::new(VALUES_BYTES_MAX),
            }),
        })
    }

    /// Seq stored in the payload of the last commit (None if never committed).
    pub fn committed_seq(&self) -> Option<u64> {
        *self
            .shared
            .committed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer; only one may exist at a time (tantivy's directory lock enforces it,
    /// also across processes). One indexing thread, one merge thread, 50 MB.
    pub fn writer(&self) -> Result<TextWriter, TextError> {
        let options = tantivy::indexer::IndexWriterOptions::builder()
            .num_worker_threads(1)
            .num_merge_threads(1)
            .memory_budget_per_thread(WRITER_MEMORY_BYTES)
            .build();
        let writer = self
            .shared
            .index
            .writer_with_options(options)
            .map_err(tantivy_err)?;
        Ok(TextWriter {
            writer,
            shared: Arc::clone(&self.shared),
            scratch: String::new(),
            #[cfg(test)]
            missing_as_before: false,
        })
    }

    /// Up to `limit` seqs matching `filter` in `order`; with `after = Some(s)`: only seqs
    /// `< s` (Desc) or `> s` (Asc).
    pub fn search(
        &self,
        filter: &Filter,
        order: Order,
        limit: usize,
        after: Option<u64>,
    ) -> Result<Vec<u64>, TextError> {
        guarded(|| self.search_inner(filter, order, limit, after))
    }

    fn search_inner(
        &self,
        filter: &Filter,
        order: Order,
        limit: usize,
        after: Option<u64>,
    ) -> Result<Vec<u64>, TextError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some((searcher, weight)) = self.weighted(filter)? else {
            return Ok(Vec::new());
        };
        let limit = limit.min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let segments = SegmentSeqs::of(&searcher)?;
        match order {
            Order::Desc => search_desc(&segments, weight.as_ref(), limit, after),
            Order::Asc => search_asc(&segments, weight.as_ref(), limit, after),
        }
    }

    /// A searcher and the weight of `filter`'s query on it (`None`: the
    /// filter matches nothing). The weight is built before anything looks
    /// at the index's size, so a query that cannot run (a range over
    /// metadata, `R:*`) is refused on an empty index too.
    fn weighted(&self, filter: &Filter) -> Result<Option<Weighted>, TextError> {
        let searcher = self.shared.reader.searcher();
        Ok(self
            .weight_on(filter, &searcher)?
            .map(|weight| (searcher, weight)))
    }

    /// The weight of `filter`'s query on `searcher` (`None`: it matches nothing).
    fn weight_on(
        &self,
        filter: &Filter,
        searcher: &Searcher,
    ) -> Result<Option<Box<dyn Weight>>, TextError> {
        let Some(query) = self.build_query(filter, searcher)? else {
            return Ok(None);
        };
        let weight = query
            .weight(EnableScoring::disabled_from_searcher(searcher))
            .map_err(query_failed)?;
        Ok(Some(weight))
    }

    /// Whether `searcher` holds any event Stele wrote itself (deleted ones
    /// may count: only ever a reason to keep a clause).
    fn holds_own_records(&self, searcher: &Searcher) -> Result<bool, TextError> {
        let term = Term::from_field_text(self.shared.fields.ingested_by, event::INGESTED_BY_STELE);
        Ok(searcher.doc_freq(&term).map_err(tantivy_err)? > 0)
    }

    /// The term of Stele's own records when `filter` leaves them out (the
    /// default), to leave them out of time bounds too.
    fn own_term(&self, filter: &Filter) -> Option<Term> {
        (filter.own_records() == crate::query::OwnRecords::Exclude).then(|| {
            Term::from_field_text(self.shared.fields.ingested_by, event::INGESTED_BY_STELE)
        })
    }

    /// Up to `limit` positions of the documents matching `filter`, in
    /// `order` of event time (ties by seq), strictly after `after`, none
    /// below seq `first` (see `timed`).
    pub fn search_by_time(
        &self,
        filter: &Filter,
        order: Order,
        limit: usize,
        after: Option<Position>,
        first: u64,
    ) -> Result<Vec<Position>, TextError> {
        guarded(|| {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let Some((searcher, weight)) = self.weighted(filter)? else {
                return Ok(Vec::new());
            };
            let segments = SegmentSeqs::of(&searcher)?;
            // Stele's own records never match a query that leaves them out.
            let own = self.own_term(filter);
            timed::search_by_time(
                &segments,
                weight.as_ref(),
                order,
                limit,
                after,
                first,
                own.as_ref(),
            )
        })
    }

    /// Number of matching documents.
    pub fn count(&self, filter: &Filter) -> Result<u64, TextError> {
        guarded(|| self.count_inner(filter))
    }

    fn count_inner(&self, filter: &Filter) -> Result<u64, TextError> {
        let searcher = self.shared.reader.searcher();
        let Some(query) = self.build_query(filter, &searcher)? else {
            return Ok(0);
        };
        let n = searcher.search(&query, &Count).map_err(query_failed)?;
        Ok(n as u64)
    }

    /// The tenants in the index that equal `tenant` when letter case is ignored but
    /// are not `tenant` (at most `max`, sorted): what a tenant filter that matched
    /// nothing probably meant. Reads the tenant term dictionary of every segment.
    pub fn tenants_like(&self, tenant: &str, max: usize) -> Result<Vec<String>, TextError> {
        let want = fold_case(tenant);
        let mut out = std::collections::BTreeSet::new();
        let searcher = self.shared.reader.searcher();
        for reader in searcher.segment_readers() {
            let inverted = reader
                .inverted_index(self.shared.fields.tenant)
                .map_err(tantivy_err)?;
            let mut terms = inverted.terms().stream().map_err(tantivy_err)?;
            while terms.advance() {
                if let Ok(t) = std::str::from_utf8(terms.key()) {
                    if t != tenant && fold_case(t) == want {
                        out.insert(t.to_owned());
                    }
                }
            }
        }
        Ok(out.into_iter().take(max).collect())
    }

    /// Every seq in the index, ascending (O(n); for `stele check`).
    pub fn all_seqs(&self) -> Result<Vec<u64>, TextError> {
        let searcher = self.shared.reader.searcher();
        let mut out = Vec::with_capacity(usize::try_from(searcher.num_docs()).unwrap_or(0));
        for reader in searcher.segment_readers() {
            let col = columns::seqs(reader).map_err(tantivy_err)?;
            for doc in reader.doc_ids_alive() {
                if let Some(seq) = col.first(doc) {
                    out.push(seq);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// What the cache of per-segment partial statistics holds and did.
    pub fn partials_stats(&self) -> PartialsStats {
        self.shared.partials.stats()
    }

    /// What the numbered values of the statistics columns hold.
    pub fn values_stats(&self) -> ValuesStats {
        self.shared.values.stats()
    }

    /// Number of documents visible to searches.
    pub fn num_docs(&self) -> u64 {
        self.shared.reader.searcher().num_docs()
    }

    /// The query for `filter` on `searcher`, or `None` if it cannot match
    /// anything there. Stele's own events are excluded by a clause only when
    /// `searcher` holds some (without any, an exclusion would only cost).
    fn build_query(
        &self,
        filter: &Filter,
        searcher: &Searcher,
    ) -> Result<Option<Box<dyn Query>>, TextError> {
        let f = &self.shared.fields;
        let mut must: Vec<Box<dyn Query>> = Vec::new();
        let term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        // The exact-match filters of the field table: a term, or an equality range
        // on the fast column of a column-only field.
        for (spec, handle) in event::FIELDS.iter().zip(f.rows) {
            let (Some(param), Some(handle)) = (spec.filter, handle) else {
                continue;
            };
            if let Some(r) = filter.range_value(param) {
                must.push(Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_u64(handle, r.lo)),
                    Bound::Included(Term::from_field_u64(handle, r.hi)),
                )));
                continue;
            }
            let Some(value) = filter.eq_value(param) else {
                continue;
            };
            match spec.indexed {
                Indexed::Column => {
                    let term = Term::from_field_text(handle, &fold_case(value));
                    must.push(Box::new(RangeQuery::new(
                        Bound::Included(term.clone()),
                        Bound::Included(term),
                    )));
                }
                Indexed::ExactKeyword => must.push(term(handle, value)),
                _ => must.push(term(handle, &fold_case(value))),
            }
        }
        if let Some(tenants) = &filter.tenants {
            if tenants.is_empty() {
                return Ok(None);
            }
            must.push(Box::new(BooleanQuery::union(
                tenants.iter().map(|t| term(f.tenant, t)).collect(),
            )));
        }
        let stele = || term(f.ingested_by, event::INGESTED_BY_STELE);
        let mut must_not: Option<Box<dyn Query>> = None;
        match filter.own_records() {
            crate::query::OwnRecords::Include => {}
            crate::query::OwnRecords::Only => {
                if !self.holds_own_records(searcher)? {
                    return Ok(None);
                }
                must.push(stele())
            }
            crate::query::OwnRecords::Exclude => {
                if self.holds_own_records(searcher)? {
                    must_not = Some(stele())
                }
            }
        }
        if let Some(min) = filter.min_severity {
            let at_least: Vec<Box<dyn Query>> = Severity::ALL
                .iter()
                .filter(|s| **s >= min)
                .map(|s| term(f.severity, s.as_str()))
                .collect();
            must.push(Box::new(BooleanQuery::union(at_least)));
        }
        if filter.since.is_some() || filter.until.is_some() {
            let Some((lo, hi)) = time_bounds(filter) else {
                return Ok(None);
            };
            // Stele's records may be left out of the window's blocks only
            // when the query leaves them out.
            let own = self.own_term(filter);
            must.push(Box::new(timemap::TimeRangeQuery { lo, hi, own }));
        }
        if let Some(text) = filter.text.as_deref() {
            // tantivy spells JSON paths with the bytes 0 and 1: a control
            // character in a `metadata.<key>` field name trips an assertion
            // in its parser (found by the text_query fuzz target), and none
            // can match indexed text anyway.
            if let Some(c) = text.chars().find(|c| c.is_control() && !c.is_whitespace()) {
                return Err(TextError::BadQuery(format!(
                    "the query holds the control character U+{:04X}; remove it",
                    u32::from(c)
                )));
            }
            if !text.trim().is_empty() {
                let text = plain_spaces(text);
                exists_fields_known(&self.shared.query_fields, &text)?;
                let q = self
                    .shared
                    .parser
                    .parse_query(&text)
                    .map_err(|e| bad_query(&e))?;
                must.push(super::exclude::tolerant_exclusions(q));
            }
        }
        let positive: Box<dyn Query> = match must.len() {
            0 => Box::new(AllQuery),
            1 => must.pop().unwrap_or_else(|| Box::new(AllQuery)),
            _ => Box::new(BooleanQuery::intersection(must)),
        };
        Ok(Some(match must_not {
            None => positive,
            Some(not) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, positive),
                (Occur::MustNot, not),
            ])),
        }))
    }
}

/// `text` with every whitespace character a plain space. tantivy 0.27's
/// query grammar backtracks exponentially over a tab or newline after `NOT`
/// in front of unclosed groups (`"NOT\tg:(a "` repeated 12 times: 11 ms,
/// `"NOT\nNOT\ng:(a "` 10 times: 128 ms, each repetition 2–3× more; a
/// 505-byte query found by the `text_query` fuzz target took 1.4 s, and a
/// 4 KiB one would never end). With spaces it parses in microseconds. Words
/// and phrases are split by the tokenizer, so no query changes meaning.
fn plain_spaces(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().all(|c| c == ' ' || !c.is_whitespace()) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| if c.is_whitespace() { ' ' } else { c })
            .collect(),
    )
}

/// The inclusive event-time range of `filter`, or `None` if it is empty.
fn time_bounds(filter: &Filter) -> Option<(i64, i64)> {
    let lo = filter.since.unwrap_or(i64::MIN);
    let hi = match filter.until {
        None => i64::MAX,
        Some(until) => until.checked_sub(1)?,
    };
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests;
