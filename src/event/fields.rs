//! The field table: one row per field of a stored event, saying what the field is and
//! where it goes. Everything that lists the event's fields derives from [`FIELDS`]:
//! validation's known fields ([`FIELD_NAMES`], [`STORED_FIELD_NAMES`],
//! [`PROVENANCE_FIELD_NAMES`]), the tantivy schema, what the index writer adds, the
//! filter terms of a query, the query parameters (`query::PARAMS`), the hint listing the
//! fields a full-text query may name, the CSV columns ([`CSV_COLUMNS`], [`csv_cells`])
//! and the live-stream matcher (`query::Filter::matches_fields`).
//!
//! Adding a field: its [`Event`] field and validation rule (a field needs code to
//! parse), then one row here. A filterable field also needs its `query::Filter` slot
//! (checked against this table by the query layer's tests). The JSON view writes the
//! fields in its own order (`id` first, the provenance before the posted fields); a test
//! checks that it writes exactly the fields of this table.
//!
//! Table order is the CSV column order: the stored fields, the posted fields of format
//! version 1 in on-disk order, the provenance (format version 2), then the fields format
//! version 3 added (posted, in on-disk order, and the computed `risk_rules`): each
//! version appends columns, so the columns before them keep their places.

use super::*;

/// Where a field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Set by the log when it stores the event (`seq`, `received_at`).
    Stored,
    /// Posted by the client, validated by [`parse_event`].
    Posted,
    /// Stamped by the server from the connection and the API key ([`Provenance`]).
    Provenance,
    /// Computed by the server from the event at ingest (`risk_rules`); refused when
    /// posted.
    Computed,
}

/// What kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The global sequence number.
    Seq,
    /// A point in time (unix µs, shown as RFC 3339).
    Time,
    /// A short identifier compared exactly.
    Identifier,
    /// An IP address in canonical text form.
    Ip,
    /// Free text, searched by words.
    Text,
    /// One of a closed set of names ([`Source`], [`Status`], [`Severity`]).
    Enum,
    /// A non-negative integer (filtered by value or range).
    Integer,
    /// The list of changes.
    Changes,
    /// A JSON object (canonical JSON text).
    Json,
    /// A list of short names (`risk_rules`), each compared like an identifier.
    Labels,
}

/// How the full-text index (tantivy) holds a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    /// Not in the full-text index.
    No,
    /// A u64 fast column (`seq`: the index's sort key).
    U64Column,
    /// A keyword: one term per value, folded to lower case (doc ids only), so filters
    /// and `field:value` in the query text ignore letter case.
    Keyword,
    /// A keyword compared exactly, case included (`tenant`: tenants are namespaces, and
    /// an API key's scope names them exactly).
    ExactKeyword,
    /// A keyword (as [`Indexed::Keyword`]) whose words are also searched by bare words
    /// (`user_name`: `user_name:jdoe` and a plain `Doe` both find it).
    NamedKeyword,
    /// A string fast column only, folded to lower case: filtered by scanning the
    /// column (fields with nearly one value per event, where terms cost more than
    /// everything else).
    Column,
    /// Words with positions: searched by bare words and phrases.
    FullText,
    /// A JSON field for `metadata.<key>:value`, plus the text of its values as words in
    /// `metadata_text` (bare words match values, never key names).
    Json,
    /// A u64 indexed and fast: exact values and ranges, as filters (`risk_score=71..100`)
    /// and in the query text (`risk_score:[71 TO 100]`, `duration_ms:>1000`).
    Number,
}

/// How statistics count a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Not a statistics dimension.
    No,
    /// Counted by value from a dense fast string column `_<name>`.
    Column,
    /// Counted by variant from the packed `codes` column.
    Code,
}

/// A field's value in one stored event, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// The event has no value for the field.
    Absent,
    /// A string (identifiers, text, enum names, IP addresses).
    Str(&'a str),
    /// An unsigned integer.
    U64(u64),
    /// A time in unix µs.
    Time(i64),
    /// The changes (never empty).
    Changes(&'a [Change]),
    /// Canonical JSON text.
    Json(&'a str),
    /// A list of names (possibly empty: computed, and no rule fired).
    Labels(&'a [String]),
}

/// One row of the field table.
#[derive(Clone, Copy)]
pub struct FieldSpec {
    /// The field's name in posted JSON, the JSON view, CSV and the index.
    pub name: &'static str,
    /// Who sets it.
    pub origin: Origin,
    /// What it holds.
    pub kind: Kind,
    /// How the full-text index holds it.
    pub indexed: Indexed,
    /// The query parameter filtering on it by exact value, if any.
    pub filter: Option<&'static str>,
    /// Whether and how statistics count it.
    pub stat: Stat,
    /// Whether it is a column of CSV exports.
    pub csv: bool,
    /// Its value in a stored event.
    pub get: for<'a> fn(&'a StoredEvent) -> FieldValue<'a>,
}

impl std::fmt::Debug for FieldSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldSpec")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("kind", &self.kind)
            .field("indexed", &self.indexed)
            .field("filter", &self.filter)
            .field("stat", &self.stat)
            .field("csv", &self.csv)
            .finish_non_exhaustive()
    }
}

fn opt_str(v: &Option<String>) -> FieldValue<'_> {
    v.as_deref().map_or(FieldValue::Absent, FieldValue::Str)
}

/// A row; `filter` names the query parameter (the same as the field's name).
const fn row(
    name: &'static str,
    origin: Origin,
    kind: Kind,
    indexed: Indexed,
    filter: bool,
    stat: Stat,
    get: for<'a> fn(&'a StoredEvent) -> FieldValue<'a>,
) -> FieldSpec {
    FieldSpec {
        name,
        origin,
        kind,
        indexed,
        filter: if filter { Some(name) } else { None },
        stat,
        csv: true,
        get,
    }
}

use Indexed as I;
use Kind as K;
use Origin as O;

/// The field table. See the module documentation.
#[rustfmt::skip]
pub const FIELDS: &[FieldSpec] = &[
    //  name              origin         kind           indexed           filter stat        value
    row("seq",            O::Stored,     K::Seq,        I::U64Column,     false, Stat::No,     |e| FieldValue::U64(e.seq)),
    row("received_at",    O::Stored,     K::Time,       I::No,            false, Stat::No,     |e| FieldValue::Time(e.received_at)),
    row("id",             O::Posted,     K::Identifier, I::No,            false, Stat::No,     |e| FieldValue::Str(&e.event.id)),
    row("timestamp",      O::Posted,     K::Time,       I::No,            false, Stat::No,     |e| e.event.timestamp.map_or(FieldValue::Absent, FieldValue::Time)),
    row("action",         O::Posted,     K::Identifier, I::Keyword,       true,  Stat::Column, |e| FieldValue::Str(&e.event.action)),
    row("actor",          O::Posted,     K::Identifier, I::Keyword,       true,  Stat::Column, |e| opt_str(&e.event.actor)),
    row("tenant",         O::Posted,     K::Identifier, I::ExactKeyword,  true,  Stat::Column, |e| opt_str(&e.event.tenant)),
    row("category",       O::Posted,     K::Identifier, I::Keyword,       true,  Stat::Column, |e| opt_str(&e.event.category)),
    row("source",         O::Posted,     K::Enum,       I::Keyword,       true,  Stat::Code,   |e| e.event.source.map_or(FieldValue::Absent, |v| FieldValue::Str(v.as_str()))),
    row("status",         O::Posted,     K::Enum,       I::Keyword,       true,  Stat::Code,   |e| e.event.status.map_or(FieldValue::Absent, |v| FieldValue::Str(v.as_str()))),
    row("severity",       O::Posted,     K::Enum,       I::Keyword,       true,  Stat::Code,   |e| e.event.severity.map_or(FieldValue::Absent, |v| FieldValue::Str(v.as_str()))),
    row("entity_type",    O::Posted,     K::Identifier, I::Keyword,       true,  Stat::Column, |e| opt_str(&e.event.entity_type)),
    row("entity_id",      O::Posted,     K::Identifier, I::Keyword,       true,  Stat::Column, |e| opt_str(&e.event.entity_id)),
    row("entity_name",    O::Posted,     K::Text,       I::FullText,      false, Stat::No,     |e| opt_str(&e.event.entity_name)),
    row("user_id",        O::Posted,     K::Identifier, I::Keyword,       true,  Stat::Column, |e| opt_str(&e.event.user_id)),
    row("user_name",      O::Posted,     K::Identifier, I::NamedKeyword,  true,  Stat::Column, |e| opt_str(&e.event.user_name)),
    row("session_id",     O::Posted,     K::Identifier, I::Column,        true,  Stat::No,     |e| opt_str(&e.event.session_id)),
    row("correlation_id", O::Posted,     K::Identifier, I::Column,        true,  Stat::No,     |e| opt_str(&e.event.correlation_id)),
    row("ip",             O::Posted,     K::Ip,         I::Column,        true,  Stat::No,     |e| opt_str(&e.event.ip)),
    row("user_agent",     O::Posted,     K::Text,       I::FullText,      false, Stat::No,     |e| opt_str(&e.event.user_agent)),
    row("risk_score",     O::Posted,     K::Integer,    I::Number,        true,  Stat::No,     |e| e.event.risk_score.map_or(FieldValue::Absent, |v| FieldValue::U64(v.into()))),
    row("duration_ms",    O::Posted,     K::Integer,    I::Number,        true,  Stat::No,     |e| e.event.duration_ms.map_or(FieldValue::Absent, FieldValue::U64)),
    row("description",    O::Posted,     K::Text,       I::FullText,      false, Stat::No,     |e| opt_str(&e.event.description)),
    row("changes",        O::Posted,     K::Changes,    I::FullText,      false, Stat::No,     |e| if e.event.changes.is_empty() { FieldValue::Absent } else { FieldValue::Changes(&e.event.changes) }),
    row("metadata",       O::Posted,     K::Json,       I::Json,          false, Stat::No,     |e| e.event.metadata.as_deref().map_or(FieldValue::Absent, FieldValue::Json)),
    row("ingested_by",    O::Provenance, K::Identifier, I::Keyword,       true,  Stat::Column, |e| e.provenance.as_ref().map_or(FieldValue::Absent, |p| FieldValue::Str(&p.ingested_by))),
    row("client_addr",    O::Provenance, K::Ip,         I::No,            false, Stat::No,     |e| e.provenance.as_ref().and_then(|p| p.client_addr.as_deref()).map_or(FieldValue::Absent, FieldValue::Str)),
    row("process_name",   O::Posted,     K::Identifier, I::Keyword,       true,  Stat::Column, |e| opt_str(&e.event.process_name)),
    row("process_id",     O::Posted,     K::Identifier, I::Keyword,       true,  Stat::Column,    |e| opt_str(&e.event.process_id)),
    row("batch_id",       O::Posted,     K::Identifier, I::Keyword,       true,  Stat::Column,    |e| opt_str(&e.event.batch_id)),
    row("phase",          O::Posted,     K::Enum,       I::Keyword,       true,  Stat::No,     |e| e.event.phase.map_or(FieldValue::Absent, |v| FieldValue::Str(v.as_str()))),
    row("items_total",    O::Posted,     K::Integer,    I::No,            false, Stat::No,     |e| e.event.items_total.map_or(FieldValue::Absent, FieldValue::U64)),
    row("items_processed",O::Posted,     K::Integer,    I::No,            false, Stat::No,     |e| e.event.items_processed.map_or(FieldValue::Absent, FieldValue::U64)),
    row("items_failed",   O::Posted,     K::Integer,    I::No,            false, Stat::No,     |e| e.event.items_failed.map_or(FieldValue::Absent, FieldValue::U64)),
    row("risk_rules",     O::Computed,   K::Labels,     I::Keyword,       true,  Stat::No,     |e| e.event.risk_rules.as_deref().map_or(FieldValue::Absent, FieldValue::Labels)),
];

/// The row named `name`.
pub fn field(name: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|f| f.name == name)
}

/// How many rows of [`FIELDS`] come from `origin`.
const fn count(origin: Origin) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < FIELDS.len() {
        if FIELDS[i].origin as u8 == origin as u8 {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The names of the rows from `origin`, in table order.
const fn names<const N: usize>(origin: Origin) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut j) = (0, 0);
    while i < FIELDS.len() {
        if FIELDS[i].origin as u8 == origin as u8 {
            out[j] = FIELDS[i].name;
            j += 1;
        }
        i += 1;
    }
    out
}

/// Every field name a client may post, in on-disk order.
pub const FIELD_NAMES: &[&str] = &names::<{ count(Origin::Posted) }>(Origin::Posted);

/// The fields of a stored event that the server sets (a client posting one is refused).
pub const STORED_FIELD_NAMES: &[&str] = &names::<{ count(Origin::Stored) }>(Origin::Stored);

/// The provenance fields of a stored event ([`Provenance`]): stamped by the server from
/// the connection and the API key, refused when posted. Events stored in format
/// version 1 do not have them.
pub const PROVENANCE_FIELD_NAMES: &[&str] =
    &names::<{ count(Origin::Provenance) }>(Origin::Provenance);

/// The fields the server computes at ingest (`risk_rules`): refused when posted.
pub const COMPUTED_FIELD_NAMES: &[&str] = &names::<{ count(Origin::Computed) }>(Origin::Computed);

/// The field names allowed inside one entry of `changes`.
pub const CHANGE_FIELD_NAMES: &[&str] = &["field", "old", "new"];

const fn csv_count() -> usize {
    let (mut n, mut i) = (0, 0);
    while i < FIELDS.len() {
        if FIELDS[i].csv {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn csv_names() -> [&'static str; csv_count()] {
    let mut out = [""; csv_count()];
    let (mut i, mut j) = (0, 0);
    while i < FIELDS.len() {
        if FIELDS[i].csv {
            out[j] = FIELDS[i].name;
            j += 1;
        }
        i += 1;
    }
    out
}

/// The columns of a CSV export, in order (the header row).
pub const CSV_COLUMNS: &[&str] = &csv_names();

/// The cells of one CSV row for `ev`, one per [`CSV_COLUMNS`] entry, unquoted: a field's
/// value as in the JSON view, strings bare, numbers and JSON (changes, metadata) as
/// compact JSON text, absent fields empty.
pub fn csv_cells(ev: &StoredEvent) -> Vec<String> {
    let view = serde_json::to_value(ev).unwrap_or_default();
    CSV_COLUMNS
        .iter()
        .map(|col| match view.get(*col) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::EventGen;

    #[test]
    fn names_are_unique_and_the_lists_keep_their_order() {
        let mut names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len());
        assert_eq!(STORED_FIELD_NAMES, ["seq", "received_at"]);
        assert_eq!(PROVENANCE_FIELD_NAMES, ["ingested_by", "client_addr"]);
        assert_eq!(COMPUTED_FIELD_NAMES, ["risk_rules"]);
        assert_eq!(FIELD_NAMES.first(), Some(&"id"));
        assert_eq!(FIELD_NAMES.last(), Some(&"items_failed"));
        let v1 = FIELD_NAMES.iter().position(|&f| f == "metadata").unwrap() + 1;
        let csv: Vec<&str> = STORED_FIELD_NAMES
            .iter()
            .chain(&FIELD_NAMES[..v1])
            .chain(PROVENANCE_FIELD_NAMES)
            .chain(&FIELD_NAMES[v1..])
            .chain(COMPUTED_FIELD_NAMES)
            .copied()
            .collect();
        assert_eq!(CSV_COLUMNS, csv.as_slice());
    }

    #[test]
    fn the_json_view_writes_exactly_the_fields_of_the_table() {
        let mut gen = EventGen::new(11);
        let mut seen = std::collections::BTreeSet::new();
        for seq in 1..=400 {
            let mut event = gen.next_event();
            event.risk_score = Some(7);
            event.duration_ms = Some(9);
            if seq % 2 == 0 {
                event.process_name = Some("p".into());
                event.process_id = Some("r".into());
                event.batch_id = Some("b".into());
                event.phase = Some(Phase::Progress);
                event.items_total = Some(3);
                event.items_processed = Some(2);
                event.items_failed = Some(1);
                event.risk_rules = Some(vec!["off_hours".into()]);
            }
            let ev = StoredEvent {
                seq,
                received_at: 1_790_000_000_000_000,
                event,
                provenance: Some(Provenance::key("k1", "::1".parse().unwrap())),
            };
            let view = serde_json::to_value(&ev).unwrap();
            let map = view.as_object().unwrap();
            for spec in FIELDS {
                let present = !matches!((spec.get)(&ev), FieldValue::Absent);
                assert_eq!(map.contains_key(spec.name), present, "{}", spec.name);
            }
            seen.extend(map.keys().cloned());
        }
        let all: std::collections::BTreeSet<String> =
            FIELDS.iter().map(|f| f.name.to_owned()).collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn csv_cells_follow_the_columns() {
        let mut gen = EventGen::new(12);
        let ev = StoredEvent {
            seq: 5,
            received_at: 0,
            event: gen.next_event(),
            provenance: Some(Provenance::cli()),
        };
        let cells = csv_cells(&ev);
        assert_eq!(cells.len(), CSV_COLUMNS.len());
        assert_eq!(cells[0], "5");
        assert_eq!(cells[1], "1970-01-01T00:00:00.000000Z");
        assert_eq!(cells[2], ev.event.id);
        let by = CSV_COLUMNS
            .iter()
            .position(|&c| c == "ingested_by")
            .unwrap();
        assert_eq!(cells[by], "cli");
        assert_eq!(cells[by + 1], "");
    }
}
