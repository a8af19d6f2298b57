//! The tantivy schema, derived from the field table (`event::FIELDS`), and the
//! handles of its fields, resolved once when the index opens.

use super::*;

pub(super) const F_SEQ: &str = "seq";
pub(super) const F_TIME: &str = "time";
/// The `risk_score` row's column (levels in statistics and the dashboard).
pub(super) const F_RISK_SCORE: &str = "risk_score";
pub(super) const F_CODES: &str = "codes";

/// The fast-only string columns for statistics, derived from the field table: `_<name>`
/// for every row with [`Stat::Column`], as `(row, column name)` in table order. A value
/// for each document whose event has one, none for the others (segments written before
/// 2026-12-07 hold [`MISSING`] for them, never counted as a value: statistics count the
/// absent as the matches minus the values counted either way). Recording the absent
/// values too had been a third of the columns' records in the peer workload, ≈ 4 % of
/// ingest CPU (README, "Performance"). Values are stored as posted, letter case included; statistics merge
/// the spellings a keyword filter does not tell apart (`Login` and `login`) into one
/// value shown as its most frequent spelling (`values::fold_variants`), so a counted
/// value given back as the filter matches exactly the events it counted; `tenant`
/// values are counted exactly, as its filter compares them.
pub(super) fn stat_columns() -> &'static [(usize, String)] {
    static COLUMNS: std::sync::OnceLock<Vec<(usize, String)>> = std::sync::OnceLock::new();
    COLUMNS.get_or_init(|| {
        event::FIELDS
            .iter()
            .enumerate()
            .filter(|(_, spec)| spec.stat == Stat::Column)
            .map(|(row, spec)| (row, format!("_{}", spec.name)))
            .collect()
    })
}

/// The schema the query parser resolves field names in: the index's without the
/// statistics columns (`_<name>`), which hold what statistics count, not fields of a
/// query (`_user_name:*` ran as "has a value", and so matched every event of a segment
/// written before 2026-12-07, where absent values are [`MISSING`]). They are the
/// schema's last fields ([`build_schema`] adds them last), so every field before them
/// keeps its handle; were one ever followed by another field, that field would be
/// unknown to queries, never resolved to a wrong handle.
pub(super) fn query_schema(schema: &Schema) -> Schema {
    let mut b = Schema::builder();
    for (_, entry) in schema.fields() {
        if stat_columns().iter().any(|(_, name)| name == entry.name()) {
            break;
        }
        b.add_field(entry.clone());
    }
    b.build()
}

/// The value older segments' statistics columns hold for an absent field (never a
/// value: identifiers cannot contain NUL); new documents hold none.
pub(super) const MISSING: &str = "\0";

/// The payload format of a commit: this prefix then the decimal seq.
pub(super) const PAYLOAD_PREFIX: &str = "stele-text-v1 last_seq=";

/// Memory budget of the (single) indexing thread.
pub(super) const WRITER_MEMORY_BYTES: usize = 50_000_000;

/// Appended to query parser errors.
pub(super) const QUERY_HINT: &str =
    "quote phrases, escape special characters such as ':' with '\\'";

/// The full-text index's text of the metadata values (see the module documentation).
pub(super) const F_METADATA_TEXT: &str = "metadata_text";

/// The words of the [`Indexed::NamedKeyword`] fields (`user_name`), for bare words.
pub(super) const F_NAMES_TEXT: &str = "names_text";

/// The tokenizer of keywords: the whole value as one term, in lower case.
pub(super) const KEYWORD_TOKENIZER: &str = "stele_keyword";

/// tantivy's tokenizers plus [`KEYWORD_TOKENIZER`]; an index needs them registered
/// (for indexing, query parsing and fast columns) every time it is opened.
pub(super) fn tokenizers() -> tantivy::tokenizer::TokenizerManager {
    use tantivy::tokenizer::{LowerCaser, RawTokenizer, TextAnalyzer, TokenizerManager};
    let manager = TokenizerManager::default();
    manager.register(
        KEYWORD_TOKENIZER,
        TextAnalyzer::builder(RawTokenizer::default())
            .filter(LowerCaser)
            .build(),
    );
    manager
}

/// Field handles of the schema, resolved once when the index opens.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields {
    pub(super) seq: Field,
    pub(super) time: Field,
    pub(super) codes: Field,
    pub(super) tenant: Field,
    pub(super) severity: Field,
    pub(super) ingested_by: Field,
    pub(super) metadata_text: Field,
    pub(super) names_text: Field,
    /// The handle of each row of the field table (`event::FIELDS`) that the index
    /// holds, in table order; `None` for rows it does not.
    pub(super) rows: [Option<Field>; event::FIELDS.len()],
    /// The fast-only statistics column of each row of the field table that has one
    /// ([`stat_columns`]), in table order; `None` for the others.
    pub(super) stat_columns: [Option<Field>; event::FIELDS.len()],
}

impl Fields {
    /// The handle of the table row `name` (which the index holds).
    pub(super) fn row(rows: &[Option<Field>], name: &str) -> Field {
        event::FIELDS
            .iter()
            .position(|spec| spec.name == name)
            .and_then(|i| rows[i])
            .unwrap_or_else(|| panic!("the field table has no indexed row {name:?}"))
    }

    /// The fields the query parser searches for bare words.
    pub(super) fn default_text_fields(&self) -> Vec<Field> {
        let mut out: Vec<Field> = event::FIELDS
            .iter()
            .zip(self.rows)
            .filter(|(spec, _)| spec.indexed == Indexed::FullText)
            .filter_map(|(_, handle)| handle)
            .collect();
        out.push(self.metadata_text);
        out.push(self.names_text);
        out
    }
}

/// The tantivy schema, derived from the field table (`event::FIELDS`): each row as its
/// `indexed` says, plus the derived columns (`time`, `codes`, `metadata_text`,
/// `names_text` and the statistics columns).
pub(super) fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let raw_indexing = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let raw = TextOptions::default().set_indexing_options(raw_indexing.clone());
    let keyword =
        TextOptions::default().set_indexing_options(raw_indexing.set_tokenizer(KEYWORD_TOKENIZER));
    let fast_only = TextOptions::default().set_fast("raw");
    let fast_folded = TextOptions::default().set_fast(KEYWORD_TOKENIZER);
    let text_indexing = TextFieldIndexing::default()
        .set_tokenizer("default")
        .set_index_option(IndexRecordOption::WithFreqsAndPositions)
        .set_fieldnorms(false);
    let text = TextOptions::default().set_indexing_options(text_indexing.clone());
    let json = JsonObjectOptions::default().set_indexing_options(text_indexing);
    let fast_num = NumericOptions::default().set_fast();
    let number = NumericOptions::default().set_fast().set_indexed();

    let time = b.add_i64_field(F_TIME, fast_num.clone());
    let codes = b.add_u64_field(F_CODES, fast_num.clone());
    let metadata_text = b.add_text_field(F_METADATA_TEXT, text.clone());
    let names_text = b.add_text_field(F_NAMES_TEXT, text.clone());
    let mut rows = [None; event::FIELDS.len()];
    for (slot, spec) in rows.iter_mut().zip(event::FIELDS) {
        *slot = match spec.indexed {
            Indexed::No => None,
            Indexed::U64Column => Some(b.add_u64_field(spec.name, fast_num.clone())),
            // One value per API key, or few distinct values: cheap as terms.
            Indexed::Keyword | Indexed::NamedKeyword => {
                Some(b.add_text_field(spec.name, keyword.clone()))
            }
            Indexed::ExactKeyword => Some(b.add_text_field(spec.name, raw.clone())),
            // Nearly one distinct value per event: an inverted index costs more to
            // build than everything else together, so these are columns, filtered by
            // scanning.
            Indexed::Column => Some(b.add_text_field(spec.name, fast_folded.clone())),
            Indexed::Number => Some(b.add_u64_field(spec.name, number.clone())),
            Indexed::FullText => Some(b.add_text_field(spec.name, text.clone())),
            Indexed::Json => Some(b.add_json_field(spec.name, json.clone())),
        };
    }
    let mut stat_handles = [None; event::FIELDS.len()];
    for (row, name) in stat_columns() {
        stat_handles[*row] = Some(b.add_text_field(name, fast_only.clone()));
    }
    let fields = Fields {
        seq: Fields::row(&rows, F_SEQ),
        time,
        codes,
        tenant: Fields::row(&rows, "tenant"),
        severity: Fields::row(&rows, "severity"),
        ingested_by: Fields::row(&rows, "ingested_by"),
        metadata_text,
        names_text,
        rows,
        stat_columns: stat_handles,
    };
    (b.build(), fields)
}

/// 1-based position of `value` in `all`, 0 for none.
pub(super) fn enum_code<T: PartialEq + Copy>(all: &[T], value: Option<T>) -> u64 {
    value
        .and_then(|v| all.iter().position(|x| *x == v))
        .map_or(0, |i| i as u64 + 1)
}

/// Where each enum's code sits in the `codes` column (3 bits each).
pub(super) const SEVERITY_SHIFT: u32 = 0;
pub(super) const STATUS_SHIFT: u32 = 3;
pub(super) const SOURCE_SHIFT: u32 = 6;

/// The `codes` column: severity, status and source codes, 3 bits each.
pub(super) fn pack_codes(
    sev: Option<Severity>,
    status: Option<Status>,
    source: Option<Source>,
) -> u64 {
    enum_code(Severity::ALL, sev) << SEVERITY_SHIFT
        | enum_code(Status::ALL, status) << STATUS_SHIFT
        | enum_code(Source::ALL, source) << SOURCE_SHIFT
}

pub(super) fn index_settings() -> IndexSettings {
    IndexSettings {
        sort_by_field: Some(IndexSortByField {
            field: F_SEQ.to_owned(),
            order: tantivy::Order::Desc,
        }),
        // Documents are empty in the doc store: no thread needed to compress them.
        docstore_compress_dedicated_thread: false,
        // What the doc store holds is its blocks' offsets, one u32 a document (an empty
        // document is one byte): lz4 left them at 4.0 bytes a document, zstd at 2.0 (the
        // peer workload). An index made before keeps lz4 (tantivy keeps an index's
        // settings); an older build cannot read a zstd one and rebuilds it (derived data).
        docstore_compression: tantivy::store::Compressor::Zstd(tantivy::store::ZstdCompressor {
            compression_level: None,
        }),
        ..IndexSettings::default()
    }
}

/// The fields a full-text query may name (derived from the field table, once).
pub(super) fn fields_hint() -> &'static str {
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
        named.push(F_NAMES_TEXT);
        named.extend(rows(Indexed::Keyword));
        named.extend(rows(Indexed::ExactKeyword));
        named.extend(rows(Indexed::NamedKeyword));
        named.extend(rows(Indexed::Number));
        let last = named.pop().unwrap_or_default();
        format!(
            "fields usable in a query are {} and {last} ({} and time ranges are filters, not \
             query text); a literal ':' must be escaped as '\\:'",
            named.join(", "),
            rows(Indexed::Column).join(", "),
        )
    })
}

/// Where statistics read a field's values, to count them by value (group by it, list
/// its values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupSource {
    /// A fast string column: the statistics column `_<name>` of a
    /// [`Stat::Column`] row, or the column of an [`Indexed::Column`] row
    /// itself (either holds nothing for an absent field; older segments'
    /// statistics columns `MISSING`).
    Column(&'static str),
    /// The bits of the packed `codes` column (`shift`) of a [`Stat::Code`] row, and the
    /// names of its codes 1, 2, … in order.
    Code {
        shift: u32,
        names: &'static [&'static str],
    },
}

/// Where statistics read the row `name`'s values, if they can (derived from the
/// field table).
pub(super) fn group_source(name: &str) -> Option<GroupSource> {
    let spec = event::field(name)?;
    match spec.stat {
        Stat::Code => match name {
            "severity" => Some(GroupSource::Code {
                shift: SEVERITY_SHIFT,
                names: Severity::NAMES,
            }),
            "status" => Some(GroupSource::Code {
                shift: STATUS_SHIFT,
                names: Status::NAMES,
            }),
            "source" => Some(GroupSource::Code {
                shift: SOURCE_SHIFT,
                names: Source::NAMES,
            }),
            _ => None,
        },
        Stat::Column => stat_columns()
            .iter()
            .find(|(row, _)| event::FIELDS[*row].name == name)
            .map(|(_, column)| GroupSource::Column(column)),
        // Nearly one value per event (`session_id`, `correlation_id`, `ip`): the
        // field's own column, folded like its filter, serves.
        Stat::No if spec.indexed == Indexed::Column => Some(GroupSource::Column(spec.name)),
        Stat::No => None,
    }
}
