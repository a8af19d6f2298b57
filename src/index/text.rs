//! The full-text, filter and statistics index (tantivy).
//!
//! A derived view of the segment log: it stores no event documents at all (no `STORED`
//! field), only what is needed to find seqs, order them and count them. Queries return
//! seqs; callers fetch the events from the log. The index can be deleted at any time and
//! rebuilt from the log; [`TextIndex::committed_seq`] (the commit payload) says how far it
//! got.
//!
//! # Schema
//!
//! | field | tantivy options | used for |
//! |-------|-----------------|----------|
//! | `seq` | u64 fast column (not indexed) | index sort key, ordering, cursors, `delete_below` |
//! | `time` | i64 fast column (not indexed) | `since`/`until`, histogram, last 24 h (event time, µs) |
//! | `action`, `actor`, `tenant`, `category`, `source`, `status`, `severity`, `entity_type`, `entity_id`, `user_id`, `ingested_by` | raw string, doc ids only | filters, `field:value` in queries |
//! | `session_id`, `correlation_id`, `ip` | raw string fast column only | filters (an equality scan of the column) |
//! | `description`, `entity_name`, `user_agent`, `changes`, `metadata_text` | default tokenizer, positions | full text: the query parser's default fields |
//! | `metadata` | JSON, default tokenizer, positions | `metadata.reason:card` |
//! | `_action`, `_category`, `_entity_type`, `_user_id` | raw string fast columns, `"\0"` when absent | statistics |
//! | `codes` | u64 fast column: severity, status, source (3 bits each) | statistics |
//!
//! Nothing is stored and no field has fieldnorms (results are ordered by seq, never
//! scored). `session_id`, `correlation_id` and `ip` have close to one distinct value per
//! event: as terms they made indexing about 30% slower and the index larger; as columns
//! they cost a scan of one column per query that filters on them (under 1 ms per million
//! events). They cannot be used inside the query text.
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
//! as `field old new`, values as their JSON text) and `metadata_text` (the canonical JSON
//! text of `metadata`: keys and values); words are ANDed. tantivy's JSON field matches
//! bare words only at its root path, so `metadata_text` is what makes a bare word find
//! metadata values, and the `metadata` JSON field serves path queries. Every text field
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
    AllQuery, BooleanQuery, EnableScoring, Query, QueryParser, QueryParserError, RangeQuery,
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
// The query model lives in `crate::query`; re-exported here for the callers that
// still name it by its old path.
pub use crate::query::{event_time, Filter, Order};

// ---------------------------------------------------------------------------------------
// Errors, filters, public types
// ---------------------------------------------------------------------------------------

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
    /// Matches with status `failure` / total (0.0 when total is 0).
    pub error_rate: f64,
}

// ---------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------

const F_SEQ: &str = "seq";
const F_TIME: &str = "time";
const F_CODES: &str = "codes";

/// Fast-only string columns for statistics, one value per document (`MISSING` when the
/// event has none, so that the columns are dense and cheap to read).
const STAT_COLUMNS: [&str; 4] = ["_action", "_category", "_entity_type", "_user_id"];
const STAT_ACTION: usize = 0;
const STAT_CATEGORY: usize = 1;
const STAT_ENTITY_TYPE: usize = 2;
const STAT_USER: usize = 3;

/// The value of a statistics column for an absent field. Identifiers cannot contain NUL.
const MISSING: &str = "\0";

/// The payload format of a commit: this prefix then the decimal seq.
const PAYLOAD_PREFIX: &str = "stele-text-v1 last_seq=";

/// Memory budget of the (single) indexing thread.
const WRITER_MEMORY_BYTES: usize = 50_000_000;

/// Appended to query parser errors.
const QUERY_HINT: &str = "quote phrases, escape special characters such as ':' with '\\'";

/// The full-text index's text of the metadata (see the module documentation).
const F_METADATA_TEXT: &str = "metadata_text";

/// Field handles of the schema, resolved once when the index opens.
#[derive(Debug, Clone, Copy)]
struct Fields {
    seq: Field,
    time: Field,
    codes: Field,
    tenant: Field,
    severity: Field,
    metadata_text: Field,
    /// The handle of each row of the field table (`event::FIELDS`) that the index
    /// holds, in table order; `None` for rows it does not.
    rows: [Option<Field>; event::FIELDS.len()],
    /// The fast-only statistics columns, in [`STAT_COLUMNS`] order.
    stat_columns: [Field; 4],
    /// The field table row each statistics column counts.
    stat_rows: [usize; 4],
}

impl Fields {
    /// The handle of the table row `name` (which the index holds).
    fn row(rows: &[Option<Field>], name: &str) -> Field {
        event::FIELDS
            .iter()
            .position(|spec| spec.name == name)
            .and_then(|i| rows[i])
            .unwrap_or_else(|| panic!("the field table has no indexed row {name:?}"))
    }

    /// The fields the query parser searches for bare words.
    fn default_text_fields(&self) -> Vec<Field> {
        let mut out: Vec<Field> = event::FIELDS
            .iter()
            .zip(self.rows)
            .filter(|(spec, _)| spec.indexed == Indexed::FullText)
            .filter_map(|(_, handle)| handle)
            .collect();
        out.push(self.metadata_text);
        out
    }
}

/// The tantivy schema, derived from the field table (`event::FIELDS`): each row as its
/// `indexed` says, plus the derived columns (`time`, `codes`, `metadata_text` and the
/// statistics columns).
fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let raw_indexing = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let raw = TextOptions::default().set_indexing_options(raw_indexing);
    let fast_only = TextOptions::default().set_fast("raw");
    let text_indexing = TextFieldIndexing::default()
        .set_tokenizer("default")
        .set_index_option(IndexRecordOption::WithFreqsAndPositions)
        .set_fieldnorms(false);
    let text = TextOptions::default().set_indexing_options(text_indexing.clone());
    let json = JsonObjectOptions::default().set_indexing_options(text_indexing);
    let fast_num = NumericOptions::default().set_fast();

    let time = b.add_i64_field(F_TIME, fast_num.clone());
    let codes = b.add_u64_field(F_CODES, fast_num.clone());
    let metadata_text = b.add_text_field(F_METADATA_TEXT, text.clone());
    let mut rows = [None; event::FIELDS.len()];
    for (slot, spec) in rows.iter_mut().zip(event::FIELDS) {
        *slot = match spec.indexed {
            Indexed::No => None,
            Indexed::U64Column => Some(b.add_u64_field(spec.name, fast_num.clone())),
            // One value per API key, or few distinct values: cheap as terms.
            Indexed::Term => Some(b.add_text_field(spec.name, raw.clone())),
            // Nearly one distinct value per event: an inverted index costs more to
            // build than everything else together, so these are columns, filtered by
            // scanning.
            Indexed::Column => Some(b.add_text_field(spec.name, fast_only.clone())),
            Indexed::FullText => Some(b.add_text_field(spec.name, text.clone())),
            Indexed::Json => Some(b.add_json_field(spec.name, json.clone())),
        };
    }
    let stat_columns = STAT_COLUMNS.map(|name| b.add_text_field(name, fast_only.clone()));
    let stat_rows = STAT_COLUMNS.map(|column| {
        event::FIELDS
            .iter()
            .position(|spec| {
                spec.stat == Stat::Column && column.strip_prefix('_') == Some(spec.name)
            })
            .unwrap_or_else(|| panic!("no statistics row for the column {column:?}"))
    });
    let fields = Fields {
        seq: Fields::row(&rows, F_SEQ),
        time,
        codes,
        tenant: Fields::row(&rows, "tenant"),
        severity: Fields::row(&rows, "severity"),
        metadata_text,
        rows,
        stat_columns,
        stat_rows,
    };
    (b.build(), fields)
}

/// 1-based position of `value` in `all`, 0 for none.
fn enum_code<T: PartialEq + Copy>(all: &[T], value: Option<T>) -> u64 {
    value
        .and_then(|v| all.iter().position(|x| *x == v))
        .map_or(0, |i| i as u64 + 1)
}

/// The `codes` column: severity, status and source codes, 3 bits each.
fn pack_codes(sev: Option<Severity>, status: Option<Status>, source: Option<Source>) -> u64 {
    enum_code(Severity::ALL, sev)
        | enum_code(Status::ALL, status) << 3
        | enum_code(Source::ALL, source) << 6
}

fn index_settings() -> IndexSettings {
    IndexSettings {
        sort_by_field: Some(IndexSortByField {
            field: F_SEQ.to_owned(),
            order: tantivy::Order::Desc,
        }),
        // Documents are empty in the doc store: no thread needed to compress them.
        docstore_compress_dedicated_thread: false,
        ..IndexSettings::default()
    }
}

fn tantivy_err(err: impl fmt::Display) -> TextError {
    TextError::Tantivy(err.to_string())
}

/// The fields a full-text query may name (derived from the field table, once).
fn fields_hint() -> &'static str {
    static HINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HINT.get_or_init(|| {
        let rows = |which: Indexed| -> Vec<&str> {
            event::FIELDS
                .iter()
                .filter(|spec| spec.indexed == which)
                .map(|spec| spec.name)
                .collect()
        };
        let mut named = rows(Indexed::FullText);
        for spec in event::FIELDS.iter().filter(|s| s.indexed == Indexed::Json) {
            named.push(if spec.name == "metadata" {
                "metadata.<key>"
            } else {
                spec.name
            });
        }
        named.push(F_METADATA_TEXT);
        named.extend(rows(Indexed::Term));
        let last = named.pop().unwrap_or_default();
        format!(
            "fields usable in a query are {} and {last} ({} and time ranges are filters, not \
             query text); a literal ':' must be escaped as '\\:'",
            named.join(", "),
            rows(Indexed::Column).join(", "),
        )
    })
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

// ---------------------------------------------------------------------------------------
// TextIndex
// ---------------------------------------------------------------------------------------

/// State shared by the read handle and the writer.
struct Shared {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    parser: QueryParser,
    /// Seq in the payload of the last commit.
    committed: Mutex<Option<u64>>,
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
        let index = Index::builder()
            .schema(schema)
            .settings(index_settings())
            .open_or_create(directory)
            .map_err(|e| open_err(e.to_string()))?;
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
        let mut parser = QueryParser::for_index(&index, fields.default_text_fields());
        parser.set_conjunction_by_default();
        Ok(TextIndex {
            shared: Arc::new(Shared {
                index,
                reader,
                fields,
                parser,
                committed: Mutex::new(committed),
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
        let Some(query) = self.build_query(filter)? else {
            return Ok(Vec::new());
        };
        let searcher = self.shared.reader.searcher();
        // Built before looking at the index's size: a query that cannot run
        // (a range over metadata, `R:*`) is refused on an empty index too.
        let weight = query
            .weight(EnableScoring::disabled_from_searcher(&searcher))
            .map_err(query_failed)?;
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

    /// Number of matching documents.
    pub fn count(&self, filter: &Filter) -> Result<u64, TextError> {
        guarded(|| self.count_inner(filter))
    }

    fn count_inner(&self, filter: &Filter) -> Result<u64, TextError> {
        let Some(query) = self.build_query(filter)? else {
            return Ok(0);
        };
        let searcher = self.shared.reader.searcher();
        let n = searcher.search(&query, &Count).map_err(query_failed)?;
        Ok(n as u64)
    }

    /// Statistics of the matching documents (see [`Stats`]). `now` is unix µs (for
    /// `last_24h`), `bucket_micros` the histogram bucket width (values below 1 are taken
    /// as 1), `top` how many entries `top_users` keeps.
    pub fn stats(
        &self,
        filter: &Filter,
        now: i64,
        bucket_micros: i64,
        top: usize,
    ) -> Result<Stats, TextError> {
        guarded(|| self.stats_inner(filter, now, bucket_micros, top))
    }

    fn stats_inner(
        &self,
        filter: &Filter,
        now: i64,
        bucket_micros: i64,
        top: usize,
    ) -> Result<Stats, TextError> {
        let Some(query) = self.build_query(filter)? else {
            return Ok(Stats::default());
        };
        let (lo, hi) = time_bounds(filter).unwrap_or((i64::MIN, i64::MAX));
        let collector = StatsCollector {
            day_ago: now.saturating_sub(86_400_000_000),
            bucket: bucket_micros.max(1),
            time_lo: lo,
            time_hi: hi,
        };
        let searcher = self.shared.reader.searcher();
        let merged = searcher.search(&query, &collector).map_err(query_failed)?;
        Ok(merged.into_stats(top))
    }

    /// Every seq in the index, ascending (O(n); for `stele check`).
    pub fn all_seqs(&self) -> Result<Vec<u64>, TextError> {
        let searcher = self.shared.reader.searcher();
        let mut out = Vec::with_capacity(usize::try_from(searcher.num_docs()).unwrap_or(0));
        for reader in searcher.segment_readers() {
            let col = reader.fast_fields().u64(F_SEQ).map_err(tantivy_err)?;
            for doc in reader.doc_ids_alive() {
                if let Some(seq) = col.first(doc) {
                    out.push(seq);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Number of documents visible to searches.
    pub fn num_docs(&self) -> u64 {
        self.shared.reader.searcher().num_docs()
    }

    /// The query for `filter`, or `None` if it cannot match anything.
    fn build_query(&self, filter: &Filter) -> Result<Option<Box<dyn Query>>, TextError> {
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
            let Some(value) = filter.eq_value(param) else {
                continue;
            };
            if spec.indexed == Indexed::Column {
                let term = Term::from_field_text(handle, value);
                must.push(Box::new(RangeQuery::new(
                    Bound::Included(term.clone()),
                    Bound::Included(term),
                )));
            } else {
                must.push(term(handle, value));
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
            must.push(Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(f.time, lo)),
                Bound::Included(Term::from_field_i64(f.time, hi)),
            )));
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
                let q = self
                    .shared
                    .parser
                    .parse_query(&plain_spaces(text))
                    .map_err(|e| bad_query(&e))?;
                must.push(super::exclude::tolerant_exclusions(q));
            }
        }
        Ok(Some(match must.len() {
            0 => Box::new(AllQuery),
            1 => must.pop().unwrap_or_else(|| Box::new(AllQuery)),
            _ => Box::new(BooleanQuery::intersection(must)),
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

// ---------------------------------------------------------------------------------------
// Ordered search over seq-sorted segments
// ---------------------------------------------------------------------------------------

/// A segment with its `seq` column. Doc ids run in *descending* seq order (the index sort).
struct SegmentSeqs<'a> {
    reader: &'a SegmentReader,
    seqs: Column<u64>,
    /// Bounds of every seq in the segment (deleted docs included).
    min: u64,
    max: u64,
}

impl<'a> SegmentSeqs<'a> {
    fn of(searcher: &'a Searcher) -> Result<Vec<SegmentSeqs<'a>>, TextError> {
        let mut out = Vec::with_capacity(searcher.segment_readers().len());
        for reader in searcher.segment_readers() {
            if reader.num_docs() == 0 {
                continue;
            }
            let seqs = reader.fast_fields().u64(F_SEQ).map_err(tantivy_err)?;
            out.push(SegmentSeqs {
                reader,
                min: seqs.min_value(),
                max: seqs.max_value(),
                seqs,
            });
        }
        Ok(out)
    }

    fn max_doc(&self) -> DocId {
        self.reader.max_doc()
    }

    fn seq(&self, doc: DocId) -> u64 {
        self.seqs.first(doc).unwrap_or(0)
    }

    fn alive(&self, doc: DocId) -> bool {
        self.reader
            .alive_bitset()
            .is_none_or(|alive| alive.is_alive(doc))
    }

    /// The first doc whose seq is not `pred` (docs in `[0, result)` all satisfy `pred`),
    /// for a predicate that holds on a prefix (seq descends with the doc id).
    fn partition_point(&self, pred: impl Fn(u64) -> bool) -> DocId {
        let (mut lo, mut hi) = (0, self.max_doc());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.seq(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Newest first: in each segment, walk the matches from the first doc at or after the
/// cursor and stop after `limit` live ones (they are the segment's newest).
fn search_desc(
    segments: &[SegmentSeqs<'_>],
    weight: &dyn Weight,
    limit: usize,
    after: Option<u64>,
) -> Result<Vec<u64>, TextError> {
    let mut order: Vec<&SegmentSeqs<'_>> = segments.iter().collect();
    order.sort_by_key(|s| std::cmp::Reverse(s.max));
    let mut best: Vec<u64> = Vec::new();
    // Once `best` holds `limit` seqs: the smallest of them; nothing at or below can enter.
    let mut floor: Option<u64> = None;
    for seg in order {
        if floor.is_some_and(|t| seg.max <= t) {
            break; // the remaining segments are older still
        }
        if after.is_some_and(|s| seg.min >= s) {
            continue;
        }
        let start = match after {
            Some(s) => seg.partition_point(|seq| seq >= s),
            None => 0,
        };
        if start >= seg.max_doc() {
            continue;
        }
        let mut scorer = weight.scorer(seg.reader, 1.0).map_err(query_failed)?;
        let mut doc = scorer.doc();
        if doc < start {
            doc = scorer.seek(start);
        }
        let mut taken = 0;
        while doc != TERMINATED {
            let seq = seg.seq(doc);
            if floor.is_some_and(|t| seq <= t) {
                break;
            }
            if seg.alive(doc) {
                best.push(seq);
                taken += 1;
                if taken == limit {
                    break;
                }
            }
            doc = scorer.advance();
        }
        if best.len() >= limit {
            best.sort_unstable_by(|a, b| b.cmp(a));
            best.truncate(limit);
            floor = best.last().copied();
        }
    }
    best.sort_unstable_by(|a, b| b.cmp(a));
    best.truncate(limit);
    Ok(best)
}

/// Oldest first: the oldest docs are at the end of each segment, so read windows of doc
/// ids backwards from the end (or from the cursor), growing 4× each time, until `limit`
/// live matches are found. Each window needs a fresh scorer (scorers only move forward).
fn search_asc(
    segments: &[SegmentSeqs<'_>],
    weight: &dyn Weight,
    limit: usize,
    after: Option<u64>,
) -> Result<Vec<u64>, TextError> {
    let mut order: Vec<&SegmentSeqs<'_>> = segments.iter().collect();
    order.sort_by_key(|s| s.min);
    let mut best: Vec<u64> = Vec::new();
    // Once `best` holds `limit` seqs: the largest of them; nothing at or above can enter.
    let mut ceiling: Option<u64> = None;
    let mut window_seqs: Vec<u64> = Vec::new();
    for seg in order {
        if ceiling.is_some_and(|t| seg.min >= t) {
            break;
        }
        if after.is_some_and(|s| seg.max <= s) {
            continue;
        }
        let mut end = match after {
            Some(s) => seg.partition_point(|seq| seq > s),
            None => seg.max_doc(),
        };
        let mut scorer = Some(weight.scorer(seg.reader, 1.0).map_err(query_failed)?);
        // Size the first window so that it probably holds `limit` matches.
        let hint = scorer
            .as_ref()
            .map_or(1, |s| u64::from(s.size_hint()).max(1));
        let wanted = (limit as u64)
            .saturating_mul(u64::from(seg.max_doc()))
            .saturating_mul(2)
            / hint;
        let mut window = u32::try_from(wanted.clamp(64, u64::from(u32::MAX))).unwrap_or(u32::MAX);
        let mut found = 0;
        while end > 0 && found < limit {
            let start = end.saturating_sub(window);
            let mut s = match scorer.take() {
                Some(s) => s,
                None => weight.scorer(seg.reader, 1.0).map_err(query_failed)?,
            };
            let mut doc = s.doc();
            if doc < start {
                doc = s.seek(start);
            }
            window_seqs.clear();
            while doc < end {
                if seg.alive(doc) {
                    window_seqs.push(seg.seq(doc));
                }
                doc = s.advance();
            }
            // Window seqs descend; the segment's oldest come last.
            for &seq in window_seqs.iter().rev() {
                if found == limit || ceiling.is_some_and(|t| seq >= t) {
                    break;
                }
                best.push(seq);
                found += 1;
            }
            end = start;
            if end > 0 && ceiling.is_some_and(|t| seg.seq(end - 1) >= t) {
                break;
            }
            window = window.saturating_mul(4);
        }
        if best.len() >= limit {
            best.sort_unstable();
            best.truncate(limit);
            ceiling = best.last().copied();
        }
    }
    best.sort_unstable();
    best.truncate(limit);
    Ok(best)
}

// ---------------------------------------------------------------------------------------
// Statistics collector
// ---------------------------------------------------------------------------------------

/// Reads the fast columns of the matching documents in one pass: per-segment counts
/// indexed by term ordinal (strings) or code (enums), resolved to strings once per
/// segment when merging.
struct StatsCollector {
    day_ago: i64,
    bucket: i64,
    /// Inclusive bounds on the time of every match (from the filter).
    time_lo: i64,
    time_hi: i64,
}

/// One string column of one segment and the match count per term ordinal.
struct OrdCounts {
    column: StrColumn,
    ords: Column<u64>,
    counts: Vec<u64>,
}

enum Histogram {
    /// Counts of buckets `first_bucket ..`, indexed from 0.
    Dense {
        first_bucket: i64,
        counts: Vec<u64>,
    },
    Sparse(HashMap<i64, u64>),
}

/// Dense histograms are used when they need at most this many buckets.
const DENSE_BUCKETS_MAX: i128 = 1 << 20;

/// Doc ids are read in blocks of at most this many.
const BLOCK: usize = tantivy::COLLECT_BLOCK_BUFFER_LEN;

struct StatsSegment {
    /// `None` for a column that no document of the segment has.
    columns: Vec<Option<OrdCounts>>,
    codes: Column<u64>,
    /// Counts per `codes` value (512 possible values).
    code_counts: Vec<u64>,
    time: Column<i64>,
    day_ago: i64,
    bucket: i64,
    histogram: Histogram,
    total: u64,
    last_24h: u64,
    ords: Vec<Option<u64>>,
    times: Vec<Option<i64>>,
}

/// The statistics of one segment, strings not yet resolved.
struct SegmentStatsFruit {
    columns: Vec<Option<OrdCounts>>,
    code_counts: Vec<u64>,
    histogram: Histogram,
    total: u64,
    last_24h: u64,
}

/// Statistics merged over all segments.
struct MergedStats {
    /// Per statistics column: count per value.
    columns: Vec<HashMap<String, u64>>,
    /// Per `codes` value.
    code_counts: Vec<u64>,
    histogram: HashMap<i64, u64>,
    total: u64,
    last_24h: u64,
}

impl Collector for StatsCollector {
    type Fruit = MergedStats;
    type Child = StatsSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<StatsSegment> {
        let ff = segment.fast_fields();
        let mut columns = Vec::with_capacity(STAT_COLUMNS.len());
        for name in STAT_COLUMNS {
            columns.push(ff.str(name)?.map(|column| OrdCounts {
                ords: column.ords().clone(),
                counts: vec![0; column.num_terms()],
                column,
            }));
        }
        let time = ff.i64(F_TIME)?;
        let lo = time.min_value().max(self.time_lo);
        let hi = time.max_value().min(self.time_hi);
        let first_bucket = lo.div_euclid(self.bucket);
        let span = i128::from(hi.div_euclid(self.bucket)) - i128::from(first_bucket) + 1;
        let histogram = if (1..=DENSE_BUCKETS_MAX).contains(&span) {
            Histogram::Dense {
                first_bucket,
                counts: vec![0; usize::try_from(span).unwrap_or(0)],
            }
        } else {
            Histogram::Sparse(HashMap::new())
        };
        Ok(StatsSegment {
            columns,
            codes: ff.u64(F_CODES)?,
            code_counts: vec![0; 512],
            time,
            day_ago: self.day_ago,
            bucket: self.bucket,
            histogram,
            total: 0,
            last_24h: 0,
            ords: vec![None; BLOCK],
            times: vec![None; BLOCK],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentStatsFruit>) -> tantivy::Result<MergedStats> {
        let mut merged = MergedStats {
            columns: vec![HashMap::new(); STAT_COLUMNS.len()],
            code_counts: vec![0; 512],
            histogram: HashMap::new(),
            total: 0,
            last_24h: 0,
        };
        let mut used: Vec<u64> = Vec::new();
        for fruit in fruits {
            merged.total += fruit.total;
            merged.last_24h += fruit.last_24h;
            for (into, n) in merged.code_counts.iter_mut().zip(&fruit.code_counts) {
                *into += n;
            }
            match fruit.histogram {
                Histogram::Dense {
                    first_bucket,
                    counts,
                } => {
                    for (i, n) in counts.into_iter().enumerate() {
                        if n > 0 {
                            let start = (first_bucket + i as i64).saturating_mul(self.bucket);
                            *merged.histogram.entry(start).or_insert(0) += n;
                        }
                    }
                }
                Histogram::Sparse(map) => {
                    for (b, n) in map {
                        *merged
                            .histogram
                            .entry(b.saturating_mul(self.bucket))
                            .or_insert(0) += n;
                    }
                }
            }
            for (column, into) in fruit.columns.into_iter().zip(merged.columns.iter_mut()) {
                let Some(OrdCounts { column, counts, .. }) = column else {
                    continue;
                };
                used.clear();
                used.extend(
                    counts
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .map(|(ord, _)| ord as u64),
                );
                let mut i = 0;
                let mut bad_utf8 = false;
                column
                    .dictionary()
                    .sorted_ords_to_term_cb(&used, |bytes| {
                        let n = counts[used[i] as usize];
                        i += 1;
                        match std::str::from_utf8(bytes) {
                            Ok(MISSING) => {}
                            Ok(s) => match into.get_mut(s) {
                                Some(count) => *count += n,
                                None => {
                                    into.insert(s.to_owned(), n);
                                }
                            },
                            Err(_) => bad_utf8 = true,
                        }
                    })
                    .map_err(tantivy::TantivyError::from)?;
                if bad_utf8 || i != used.len() {
                    return Err(tantivy::TantivyError::InternalError(
                        "a fast string column has a term that is missing or not UTF-8".to_owned(),
                    ));
                }
            }
        }
        Ok(merged)
    }
}

impl StatsSegment {
    fn count_time(&mut self, t: i64) {
        if t >= self.day_ago {
            self.last_24h += 1;
        }
        let b = t.div_euclid(self.bucket);
        match &mut self.histogram {
            Histogram::Dense {
                first_bucket,
                counts,
            } => {
                let i = b.wrapping_sub(*first_bucket) as u64 as usize;
                match counts.get_mut(i) {
                    Some(n) => *n += 1,
                    // Not possible when the filter's time bounds hold; stay correct anyway.
                    None => {
                        let mut map: HashMap<i64, u64> = counts
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| **n > 0)
                            .map(|(i, n)| (*first_bucket + i as i64, *n))
                            .collect();
                        map.insert(b, 1);
                        self.histogram = Histogram::Sparse(map);
                    }
                }
            }
            Histogram::Sparse(map) => *map.entry(b).or_insert(0) += 1,
        }
    }

    fn collect_chunk(&mut self, docs: &[DocId]) {
        let n = docs.len();
        self.total += n as u64;
        let ords = &mut self.ords[..n];
        for column in self.columns.iter_mut().flatten() {
            ords.fill(None);
            column.ords.first_vals(docs, ords);
            for ord in ords.iter().flatten() {
                if let Some(count) = column.counts.get_mut(*ord as usize) {
                    *count += 1;
                }
            }
        }
        ords.fill(None);
        self.codes.first_vals(docs, ords);
        for code in ords.iter().flatten() {
            if let Some(count) = self.code_counts.get_mut(*code as usize) {
                *count += 1;
            }
        }
        let mut times = std::mem::take(&mut self.times);
        times[..n].fill(None);
        self.time.first_vals(docs, &mut times[..n]);
        for t in times[..n].iter().flatten() {
            self.count_time(*t);
        }
        self.times = times;
    }
}

impl SegmentCollector for StatsSegment {
    type Fruit = SegmentStatsFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.collect_chunk(&[doc]);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        for chunk in docs.chunks(BLOCK) {
            self.collect_chunk(chunk);
        }
    }

    fn harvest(self) -> SegmentStatsFruit {
        SegmentStatsFruit {
            columns: self.columns,
            code_counts: self.code_counts,
            histogram: self.histogram,
            total: self.total,
            last_24h: self.last_24h,
        }
    }
}

/// `(value, count)` sorted by count descending, then value ascending.
fn ranked(map: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Counts per enum value from the counts per `codes` value (`shift`: the enum's bits).
fn ranked_codes<T: Copy>(
    code_counts: &[u64],
    shift: u32,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Vec<(String, u64)> {
    let mut per = vec![0u64; all.len() + 1];
    for (code, n) in code_counts.iter().enumerate() {
        let c = (code >> shift) & 7;
        if let Some(slot) = per.get_mut(c) {
            *slot += n;
        }
    }
    let map: HashMap<String, u64> = all
        .iter()
        .zip(&per[1..])
        .filter(|(_, n)| **n > 0)
        .map(|(v, n)| (name(*v).to_owned(), *n))
        .collect();
    ranked(map)
}

impl MergedStats {
    fn into_stats(mut self, top: usize) -> Stats {
        let mut take = |i: usize| ranked(std::mem::take(&mut self.columns[i]));
        let by_action = take(STAT_ACTION);
        let by_category = take(STAT_CATEGORY);
        let by_entity_type = take(STAT_ENTITY_TYPE);
        let mut top_users = take(STAT_USER);
        let active_users = top_users.len() as u64;
        top_users.truncate(top);
        let by_severity = ranked_codes(&self.code_counts, 0, Severity::ALL, Severity::as_str);
        let by_status = ranked_codes(&self.code_counts, 3, Status::ALL, Status::as_str);
        let by_source = ranked_codes(&self.code_counts, 6, Source::ALL, Source::as_str);
        let failures = by_status
            .iter()
            .find(|(s, _)| s == Status::Failure.as_str())
            .map_or(0, |(_, n)| *n);
        let mut histogram: Vec<(i64, u64)> = self.histogram.into_iter().collect();
        histogram.sort_unstable();
        Stats {
            total: self.total,
            last_24h: self.last_24h,
            by_action,
            by_category,
            by_entity_type,
            by_severity,
            by_status,
            by_source,
            histogram,
            top_users,
            active_users,
            error_rate: if self.total == 0 {
                0.0
            } else {
                failures as f64 / self.total as f64
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------

/// The index writer, owned by the indexer thread.
pub struct TextWriter {
    writer: IndexWriter<TantivyDocument>,
    shared: Arc<Shared>,
    scratch: String,
}

impl fmt::Debug for TextWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextWriter").finish_non_exhaustive()
    }
}

impl TextWriter {
    /// Adds one event (may block when tantivy's indexing queue is full: call it on the
    /// indexer's own thread, never on an async runtime thread).
    pub fn add(&mut self, ev: &StoredEvent) -> Result<(), TextError> {
        let f = &self.shared.fields;
        let e = &ev.event;
        let mut doc = TantivyDocument::new();
        doc.add_i64(f.time, event_time(ev));
        doc.add_u64(f.codes, pack_codes(e.severity, e.status, e.source));
        for (spec, handle) in event::FIELDS.iter().zip(f.rows) {
            let Some(handle) = handle else { continue };
            match (spec.get)(ev) {
                FieldValue::Absent => {}
                FieldValue::Str(s) => doc.add_text(handle, s),
                FieldValue::U64(v) => doc.add_u64(handle, v),
                FieldValue::Time(t) => doc.add_i64(handle, t),
                FieldValue::Changes(changes) => {
                    // Each change as `field old new`, values as their JSON text.
                    for change in changes {
                        let s = &mut self.scratch;
                        s.clear();
                        s.push_str(&change.field);
                        s.push(' ');
                        s.push_str(change.old.as_deref().unwrap_or(""));
                        s.push(' ');
                        s.push_str(change.new.as_deref().unwrap_or(""));
                        doc.add_text(handle, s.as_str());
                    }
                }
                FieldValue::Json(text) => {
                    doc.add_text(f.metadata_text, text);
                    // Stored metadata is canonical JSON of an object; anything else is
                    // only searchable as text.
                    if let Ok(value @ serde_json::Value::Object(_)) =
                        serde_json::from_str::<serde_json::Value>(text)
                    {
                        doc.add_field_value(handle, &value);
                    }
                }
            }
        }
        for (field, row) in f.stat_columns.into_iter().zip(f.stat_rows) {
            let value = match (event::FIELDS[row].get)(ev) {
                FieldValue::Str(s) => s,
                _ => MISSING,
            };
            doc.add_text(field, value);
        }
        self.writer.add_document(doc).map_err(tantivy_err)?;
        Ok(())
    }

    /// Commits everything added (and deleted) with `last_seq` in the commit payload, then
    /// reloads the reader so that searches see it.
    pub fn commit(&mut self, last_seq: u64) -> Result<(), TextError> {
        let mut prepared = self.writer.prepare_commit().map_err(tantivy_err)?;
        prepared.set_payload(&format!("{PAYLOAD_PREFIX}{last_seq}"));
        prepared.commit().map_err(tantivy_err)?;
        // Reload before publishing the seq, so that whoever sees the new committed seq
        // also finds its documents.
        let reloaded = self.shared.reader.reload();
        *self
            .shared
            .committed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(last_seq);
        reloaded.map_err(tantivy_err)
    }

    /// Deletes every document with a seq below `below` (retention), at the
    /// next commit.
    pub fn delete_below(&mut self, below: u64) -> Result<(), TextError> {
        let query = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_u64(self.shared.fields.seq, below)),
        );
        self.writer
            .delete_query(Box::new(query))
            .map_err(tantivy_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn index_all(w: &mut TextWriter, evs: &[StoredEvent], commit_every: usize) {
        for chunk in evs.chunks(commit_every) {
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
        out.extend(ev.metadata.clone());
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
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        let t = event_time(ev);
        eq(&f.tenant, &e.tenant)
            && f.tenants
                .as_ref()
                .is_none_or(|ts| e.tenant.as_ref().is_some_and(|t| ts.contains(t)))
            && f.action.as_ref().is_none_or(|a| *a == e.action)
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
            error_rate: if total == 0 {
                0.0
            } else {
                failures as f64 / total as f64
            },
        }
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
        let asc: Vec<u64> = matching.iter().map(|e| e.seq).collect();
        assert_eq!(ix.count(f).unwrap(), asc.len() as u64, "count {f:?}");
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

    /// Found by the `text_query` fuzz target: a NUL inside a `metadata.<key>`
    /// field name (`metadata.re151.100.2\0 2g:eu`) made tantivy's query parser
    /// fail an assertion (a panic) instead of refusing the query.
    #[test]
    fn fuzz_control_characters_in_a_json_field_path_are_a_bad_query_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let ix = TextIndex::open(dir.path()).unwrap();
        let mut w = ix.writer().unwrap();
        index_all(&mut w, &events(4, 1, 20), 20);
        for q in [
            "metadata.re151.100.2\u{0}2g:eu",
            "metadata.a\u{1}b:x",
            "description:\u{7f}x",
            "plain \u{0} text",
        ] {
            let f = Filter {
                text: Some(q.to_owned()),
                ..Filter::default()
            };
            match ix.search(&f, Order::Desc, 10, None) {
                Err(TextError::BadQuery(msg)) => assert!(msg.contains("U+"), "{msg}"),
                other => panic!("{q:?}: {other:?}"),
            }
        }
        // Tabs and line breaks are whitespace, not refused.
        let f = Filter {
            text: Some("login\tfailed\n".to_owned()),
            ..Filter::default()
        };
        assert!(ix.search(&f, Order::Desc, 10, None).is_ok());
    }

    /// Found by the `text_query` fuzz target: an "exists" query on an unknown
    /// field (`R:*`) or on one without a fast column passes tantivy's parser and
    /// failed when run, answered as a 500 storage failure.
    #[test]
    fn fuzz_queries_that_fail_only_when_run_are_bad_queries_not_500() {
        let dir = tempfile::tempdir().unwrap();
        let ix = TextIndex::open(dir.path()).unwrap();
        let empty_dir = tempfile::tempdir().unwrap();
        let empty = TextIndex::open(empty_dir.path()).unwrap();
        let mut w = ix.writer().unwrap();
        index_all(&mut w, &events(4, 1, 20), 20);
        for q in [
            "R:*",
            "nosuch:*",
            "metadata_text:* AND R:*",
            "description:*",
            // Found by the fuzzer later: a range over metadata (JSON) was a 500.
            "metadata.region:<u",
            "+metadata.region:[a TO z] description:x",
        ] {
            let f = Filter {
                text: Some(q.to_owned()),
                ..Filter::default()
            };
            match ix.search(&f, Order::Desc, 10, None) {
                Err(TextError::BadQuery(msg)) => assert!(msg.contains(';'), "{msg}"),
                other => panic!("{q:?}: {other:?}"),
            }
            assert!(matches!(ix.count(&f), Err(TextError::BadQuery(_))), "{q}");
            // Also before the first event (a stream checks its q then).
            assert!(
                matches!(
                    empty.search(&f, Order::Desc, 1, None),
                    Err(TextError::BadQuery(_))
                ),
                "{q} on an empty index"
            );
        }
    }

    /// Found by the `text_query` fuzz target: tantivy 0.27 panicked in its
    /// phrase scorer on an excluded phrase (first refused by the panic
    /// guard, now answered).
    #[test]
    fn fuzz_excluded_phrases_are_answered_not_refused() {
        // The text_query fuzz target's third crash: tantivy's phrase scorer
        // asserts when probed for exclusion after running out of matches
        // (see index::exclude).
        let dir = tempfile::tempdir().unwrap();
        let ix = TextIndex::open(dir.path()).unwrap();
        let mut w = ix.writer().unwrap();
        let mut evs = events(4, 1, 3);
        for (ev, text) in evs
            .iter_mut()
            .zip(["disk almost full", "disk ok", "full disk backup"])
        {
            ev.event.description = Some(text.to_owned());
        }
        index_all(&mut w, &evs, 3);
        index_all(&mut w, &events(4, 4, 20), 20);
        let text = |q: &str| Filter {
            text: Some(q.to_owned()),
            ..Filter::default()
        };
        for q in [r#"+disk -"disk full""#, r#"+disk -"disk full"~1"#] {
            let f = text(q);
            let mut want: Vec<u64> = evs
                .iter()
                .filter(|e| {
                    q.ends_with("\"") || !e.event.description.as_deref().unwrap().contains("almost")
                })
                .map(|e| e.seq)
                .collect();
            want.reverse();
            assert_eq!(ix.search(&f, Order::Desc, 10, None).unwrap(), want, "{q}");
            assert_eq!(ix.count(&f).unwrap(), want.len() as u64, "{q}");
        }
        let f = text(" \n+131+\n-21!1+~\n0");
        let found = ix.search(&f, Order::Desc, 100, None).unwrap();
        assert_eq!(found.len() as u64, ix.count(&f).unwrap());
    }

    /// Found by the `text_query` fuzz target (a 10 s timeout): tabs and
    /// newlines after NOT made tantivy's parser backtrack exponentially.
    #[test]
    fn fuzz_tabs_and_newlines_in_queries_parse_in_linear_time() {
        let dir = tempfile::tempdir().unwrap();
        let ix = TextIndex::open(dir.path()).unwrap();
        let mut w = ix.writer().unwrap();
        let evs = events(4, 1, 20);
        index_all(&mut w, &evs, 20);
        // Each would take longer than the age of the universe unchanged.
        for q in [
            "NOT\tg:(a ".repeat(60),
            "NOT\nNOT\ng:(a ".repeat(40),
            "NOT\r\nNOT\tdescription:(a ".repeat(40),
        ] {
            let f = Filter {
                text: Some(q.clone()),
                ..Filter::default()
            };
            assert!(
                matches!(
                    ix.search(&f, Order::Desc, 10, None),
                    Err(TextError::BadQuery(_))
                ),
                "{q:?}"
            );
        }
        // Whitespace of any kind still separates words and clauses.
        let word = format!("action:{}", evs[0].event.action);
        for q in [format!("\t{word}\n"), format!("{word}\r\nOR\tnosuchword")] {
            let f = Filter {
                text: Some(q.clone()),
                ..Filter::default()
            };
            let spaced = Filter {
                text: Some(q.split_whitespace().collect::<Vec<_>>().join(" ")),
                ..Filter::default()
            };
            let got = ix.search(&f, Order::Desc, 100, None).unwrap();
            assert!(!got.is_empty(), "{q:?}");
            assert_eq!(got, ix.search(&spaced, Order::Desc, 100, None).unwrap());
        }
    }

    #[test]
    fn bad_queries_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let ix = TextIndex::open(dir.path()).unwrap();
        let mut w = ix.writer().unwrap();
        index_all(&mut w, &events(4, 1, 20), 20);
        for q in [
            "nosuchfield:x",
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
                        (Indexed::Term, FieldType::Str(o)) => {
                            o.get_indexing_options()
                                .is_some_and(|i| i.tokenizer() == "raw")
                                && !o.is_fast()
                        }
                        (Indexed::Column, FieldType::Str(o)) => {
                            o.get_indexing_options().is_none() && o.is_fast()
                        }
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
                    matches!(spec.indexed, Indexed::Term | Indexed::Column),
                    "the filter {param} needs a term or a column"
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
        assert_eq!(stat_rows, STAT_COLUMNS);
        let coded: Vec<&str> = event::FIELDS
            .iter()
            .filter(|s| s.stat == Stat::Code)
            .map(|s| s.name)
            .collect();
        assert_eq!(coded, ["source", "status", "severity"]);
        // The hint names every field a query may name, and the column-only ones.
        for spec in event::FIELDS {
            match spec.indexed {
                Indexed::Term | Indexed::FullText | Indexed::Column => {
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
}
