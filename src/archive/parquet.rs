//! One sealed UTC day of events as an Apache Parquet file, for SQL engines (DuckDB,
//! Trino, Athena, Spark) reading the archive. Pure: events in, bytes out to any
//! `io::Write`; no file names, no S3, no reading of the log (the uploader does those).
//!
//! Owns the file's schema ([`schema`]), its key-value metadata and its writer settings.
//! Never touches the log, the digests or the indexes: what ties a file to the signed
//! log is the [`DaySeal`] the caller passes, stamped on every row and in the footer.
//! `docs/FORMAT.md` ("Archive: the day's Parquet file") is the prose version of this
//! module; the two change together.
//!
//! ```text
//! columns = one per row of event::FIELDS, in table order (the CSV column order):
//!             seq u64 | received_at ts | id | timestamp ts? | action | actor? | … | risk_rules?
//!           then  day date32 | digest_sha256 utf8          (the seal, on every row)
//! types   = Seq: UInt64 · Time: Timestamp(µs, "UTC") · Integer: Int64, or UInt64 when
//!           validation lets the field exceed i64::MAX (duration_ms)
//!           · Identifier/Ip/Text/Enum: Utf8 (enums as their wire names)
//!           · Changes/Json/Labels: Utf8 holding the JSON text the API shows
//! file    = row groups of ≤ ROW_GROUP_ROWS rows, ZSTD(ZSTD_LEVEL) pages, built from
//!           record batches of ≤ BATCH_ROWS rows (and ≤ BATCH_TEXT_BYTES of text)
//! footer  = key-value metadata: stele.schema_version, stele.version, stele.day,
//!           stele.digest_sha256, stele.first_seq, stele.last_seq, stele.rows
//! ```
//! Invariants this module keeps:
//! 1. A column holds what the API's JSON view ([`StoredEvent`]'s `Serialize`) shows
//!    for the field: the same name, the same value (times as instants, enums as their
//!    names, JSON as the same text), and null exactly where the view omits the key.
//! 2. The rows are exactly the seal's seqs `first_seq..=last_seq`, in order, each once:
//!    anything else is [`ParquetError::Seal`] (and the caller discards the output).
//! 3. Memory is bounded whatever the day's size: one batch of builders and the
//!    writer's one open row group.
//! 4. A day without events (`last_seq = first_seq - 1`: an empty segment) is a valid
//!    file with the schema, the metadata and no row group, so a glob over a range of
//!    days never meets a missing or broken file.

use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::builder::{
    Date32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError as EncodeError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::event::{self, FieldSpec, FieldValue, Kind, StoredEvent, FIELDS};
use crate::log::format::Day;

/// The version of the file's schema, in its metadata (`stele.schema_version`). Bumped
/// by any change to a column's name, type, meaning or order.
pub const SCHEMA_VERSION: u32 = 1;
/// Most rows in one row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Most rows in one record batch (the builders' size).
pub const BATCH_ROWS: usize = 8192;
/// A batch is written once its text (strings and JSON) reaches this many bytes, so a
/// column's 32-bit offsets never overflow and memory stays bounded for large events.
pub const BATCH_TEXT_BYTES: usize = 32 * 1024 * 1024;
/// The ZSTD level of every page.
pub const ZSTD_LEVEL: i32 = 3;
/// The two columns after the field table's: the seal's day and digest, on every row.
pub const SEAL_COLUMNS: [&str; 2] = ["day", "digest_sha256"];
/// The time zone of every timestamp column.
pub const TIME_ZONE: &str = "UTC";

/// What ties a file to the signed log: the day and its `.digest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySeal {
    /// The UTC day of ingestion the file holds (the segments' day).
    pub day: Day,
    /// SHA-256 of the day's `.digest.json` bytes, 64 lower-case hex digits.
    pub digest_sha256: String,
    /// The digest's `first_seq`.
    pub first_seq: u64,
    /// The digest's `last_seq` (`first_seq - 1` for a day without events).
    pub last_seq: u64,
}

/// What [`write_day`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayStats {
    /// Rows (events) in the file.
    pub rows: u64,
    /// Bytes written to the output: the whole file.
    pub bytes: u64,
}

/// Why a day was not written. The output then holds a partial file: discard it.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// The output refused a write or a flush.
    #[error("writing the Parquet file failed: {0}")]
    Io(#[source] io::Error),
    /// Arrow or Parquet could not encode the rows (a bug here, not a fault outside).
    #[error("encoding the day as Parquet failed: {0}")]
    Encode(#[source] EncodeError),
    /// The events or the seal are not one sealed day: a seq out of place, a missing
    /// event, a malformed digest hash.
    #[error("the events do not match the day's seal: {0}")]
    Seal(String),
    /// An event holds a value the column cannot represent.
    #[error("seq {seq}: field {field} cannot be written: {why}")]
    Value {
        /// The event.
        seq: u64,
        /// The field.
        field: &'static str,
        /// Why not.
        why: String,
    },
}

/// The Arrow type of a field-table row's column.
fn data_type(spec: &FieldSpec) -> DataType {
    match spec.kind {
        Kind::Seq => DataType::UInt64,
        Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some(TIME_ZONE.into())),
        Kind::Integer if integer_max(spec.name) <= i64::MAX as u64 => DataType::Int64,
        Kind::Integer => DataType::UInt64,
        Kind::Identifier
        | Kind::Ip
        | Kind::Text
        | Kind::Enum
        | Kind::Changes
        | Kind::Json
        | Kind::Labels => DataType::Utf8,
    }
}

/// The largest value validation lets an integer field hold (unknown fields: any u64).
fn integer_max(name: &str) -> u64 {
    match name {
        "risk_score" => 100,
        "items_total" | "items_processed" | "items_failed" => event::ITEMS_MAX,
        _ => u64::MAX,
    }
}

/// Whether every stored event has the field (`seq`, `received_at`, `id`, `action`).
fn always_set(spec: &FieldSpec) -> bool {
    matches!(spec.name, "seq" | "received_at" | "id" | "action")
}

/// The file's Arrow schema: one column per row of [`FIELDS`], then [`SEAL_COLUMNS`].
/// The schema's own metadata is empty; the file's key-value metadata is per day.
pub fn schema() -> SchemaRef {
    let mut fields: Vec<Field> = FIELDS
        .iter()
        .map(|spec| Field::new(spec.name, data_type(spec), !always_set(spec)))
        .collect();
    fields.push(Field::new(SEAL_COLUMNS[0], DataType::Date32, false));
    fields.push(Field::new(SEAL_COLUMNS[1], DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The writer settings: ZSTD, [`ROW_GROUP_ROWS`], the seal in the footer.
fn properties(seal: &DaySeal) -> Result<WriterProperties, ParquetError> {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).map_err(ParquetError::Encode)?;
    let kv = |k: &str, v: String| KeyValue::new(format!("stele.{k}"), v);
    let metadata = vec![
        kv("schema_version", SCHEMA_VERSION.to_string()),
        kv("version", env!("CARGO_PKG_VERSION").to_owned()),
        kv("day", seal.day.to_string()),
        kv("digest_sha256", seal.digest_sha256.clone()),
        kv("first_seq", seal.first_seq.to_string()),
        kv("last_seq", seal.last_seq.to_string()),
        kv("rows", rows_of(seal).to_string()),
    ];
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(metadata))
        .build())
}

/// The number of events the seal covers (checked by [`check_seal`] first).
fn rows_of(seal: &DaySeal) -> u64 {
    (seal.last_seq + 1).saturating_sub(seal.first_seq)
}

fn check_seal(seal: &DaySeal) -> Result<(), ParquetError> {
    let hex = seal.digest_sha256.len() == 64
        && seal
            .digest_sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err(ParquetError::Seal(format!(
            "digest_sha256 must be 64 lower-case hex digits, got {:?}",
            seal.digest_sha256
        )));
    }
    if seal.last_seq == u64::MAX || seal.last_seq + 1 < seal.first_seq {
        return Err(ParquetError::Seal(format!(
            "last_seq {} is before first_seq {} - 1",
            seal.last_seq, seal.first_seq
        )));
    }
    Ok(())
}

/// One column's builder.
enum Column {
    U64(UInt64Builder),
    I64(Int64Builder),
    Time(TimestampMicrosecondBuilder),
    Str(StringBuilder),
}

impl Column {
    fn new(spec: &FieldSpec) -> Column {
        match data_type(spec) {
            DataType::UInt64 => Column::U64(UInt64Builder::with_capacity(BATCH_ROWS)),
            DataType::Int64 => Column::I64(Int64Builder::with_capacity(BATCH_ROWS)),
            DataType::Timestamp(..) => Column::Time(
                TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone(TIME_ZONE),
            ),
            _ => Column::Str(StringBuilder::with_capacity(BATCH_ROWS, 64 * BATCH_ROWS)),
        }
    }

    /// Appends `ev`'s value of `spec`; returns the text bytes added.
    fn append(&mut self, spec: &FieldSpec, ev: &StoredEvent) -> Result<usize, ParquetError> {
        let bad = |why: String| ParquetError::Value {
            seq: ev.seq,
            field: spec.name,
            why,
        };
        let value = (spec.get)(ev);
        let json = |r: serde_json::Result<String>| r.map_err(|e| bad(e.to_string()));
        let text = match value {
            FieldValue::Str(s) | FieldValue::Json(s) => Some(std::borrow::Cow::Borrowed(s)),
            // The API's rendering of the list: `{"field", "old", "new"}` objects.
            FieldValue::Changes(c) => Some(json(serde_json::to_string(c))?.into()),
            FieldValue::Labels(l) => Some(json(serde_json::to_string(l))?.into()),
            _ => None,
        };
        match (self, value) {
            (Column::U64(b), FieldValue::Absent) => b.append_null(),
            (Column::I64(b), FieldValue::Absent) => b.append_null(),
            (Column::Time(b), FieldValue::Absent) => b.append_null(),
            (Column::Str(b), FieldValue::Absent) => b.append_null(),
            (Column::U64(b), FieldValue::U64(v)) => b.append_value(v),
            (Column::I64(b), FieldValue::U64(v)) => {
                b.append_value(i64::try_from(v).map_err(|_| bad(format!("{v} > i64::MAX")))?)
            }
            (Column::Time(b), FieldValue::Time(t)) => b.append_value(t),
            (Column::Str(b), _) if text.is_some() => {
                let s = text.unwrap_or_default();
                b.append_value(&s);
                return Ok(s.len());
            }
            (_, other) => return Err(bad(format!("unexpected value {other:?} for its column"))),
        }
        Ok(0)
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::U64(b) => Arc::new(b.finish()),
            Column::I64(b) => Arc::new(b.finish()),
            Column::Time(b) => Arc::new(b.finish()),
            Column::Str(b) => Arc::new(b.finish()),
        }
    }
}

/// The builders of one record batch.
struct Batch {
    schema: SchemaRef,
    columns: Vec<Column>,
    day: Date32Builder,
    digest: StringBuilder,
    day_value: i32,
    rows: usize,
    text_bytes: usize,
}

impl Batch {
    fn new(schema: SchemaRef, seal: &DaySeal) -> Batch {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        Batch {
            schema,
            columns: FIELDS.iter().map(Column::new).collect(),
            day: Date32Builder::with_capacity(BATCH_ROWS),
            digest: StringBuilder::with_capacity(BATCH_ROWS, 64 * BATCH_ROWS),
            day_value: i32::try_from((seal.day.0 - epoch).num_days()).unwrap_or(i32::MAX),
            rows: 0,
            text_bytes: 0,
        }
    }

    fn push(&mut self, ev: &StoredEvent, digest: &str) -> Result<(), ParquetError> {
        for (column, spec) in self.columns.iter_mut().zip(FIELDS) {
            self.text_bytes += column.append(spec, ev)?;
        }
        self.day.append_value(self.day_value);
        self.digest.append_value(digest);
        self.rows += 1;
        Ok(())
    }

    fn full(&self) -> bool {
        self.rows >= BATCH_ROWS || self.text_bytes >= BATCH_TEXT_BYTES
    }

    /// The rows so far as a record batch; the builders start again empty.
    fn take(&mut self) -> Result<RecordBatch, ParquetError> {
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        arrays.push(Arc::new(self.day.finish()));
        arrays.push(Arc::new(self.digest.finish()));
        self.rows = 0;
        self.text_bytes = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| ParquetError::Encode(EncodeError::from(e)))
    }
}

/// The output, counting the bytes written and keeping the first I/O error, so that a
/// failure of the output is told apart from an encoding failure (Parquet wraps both).
struct Output<W> {
    inner: W,
    bytes: u64,
    failed: Option<io::Error>,
}

impl<W: Write> Output<W> {
    fn keep(&mut self, err: io::Error) -> io::Error {
        let copy = io::Error::new(err.kind(), err.to_string());
        self.failed.get_or_insert(err);
        copy
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(self.keep(e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.keep(e))
    }
}

/// Writes one sealed day: `events` must be exactly the seqs `seal.first_seq ..=
/// seal.last_seq`, in order (the day's segments read in log order). Writes the whole
/// file to `out` and flushes it; on an error `out` holds a partial file.
///
/// # Errors
///
/// [`ParquetError::Io`] when `out` fails, [`ParquetError::Seal`] when the events are
/// not the seal's (checked as they stream, so possibly after some output),
/// [`ParquetError::Value`] for a value its column cannot hold, and
/// [`ParquetError::Encode`] when Arrow or Parquet fails.
pub fn write_day(
    events: impl IntoIterator<Item = StoredEvent>,
    seal: &DaySeal,
    out: impl Write + Send,
) -> Result<DayStats, ParquetError> {
    check_seal(seal)?;
    let schema = schema();
    let output = Output {
        inner: out,
        bytes: 0,
        failed: None,
    };
    let mut writer = ArrowWriter::try_new(output, schema.clone(), Some(properties(seal)?))
        .map_err(ParquetError::Encode)?;
    let result = write_rows(&mut writer, events, seal, schema);
    let failed = writer.inner_mut().failed.take();
    match (result, failed) {
        (Err(ParquetError::Encode(_)), Some(io)) => Err(ParquetError::Io(io)),
        (Err(e), _) => Err(e),
        (Ok(rows), _) => {
            let output = writer.inner_mut();
            output.flush().map_err(ParquetError::Io)?;
            Ok(DayStats {
                rows,
                bytes: output.bytes,
            })
        }
    }
}

/// Writes the rows and the footer; the number of rows.
fn write_rows<W: Write + Send>(
    writer: &mut ArrowWriter<W>,
    events: impl IntoIterator<Item = StoredEvent>,
    seal: &DaySeal,
    schema: SchemaRef,
) -> Result<u64, ParquetError> {
    let mut batch = Batch::new(schema, seal);
    let mut next = seal.first_seq;
    for ev in events {
        if ev.seq != next || next > seal.last_seq {
            return Err(ParquetError::Seal(format!(
                "expected {}, got seq {} (the seal covers {}..={})",
                if next > seal.last_seq {
                    "no more events".to_owned()
                } else {
                    format!("seq {next}")
                },
                ev.seq,
                seal.first_seq,
                seal.last_seq
            )));
        }
        batch.push(&ev, &seal.digest_sha256)?;
        next += 1;
        if batch.full() {
            writer.write(&batch.take()?).map_err(ParquetError::Encode)?;
        }
    }
    if next != seal.last_seq + 1 {
        return Err(ParquetError::Seal(format!(
            "the events end at seq {}, the seal at {}",
            next.saturating_sub(1),
            seal.last_seq
        )));
    }
    if batch.rows > 0 {
        writer.write(&batch.take()?).map_err(ParquetError::Encode)?;
    }
    writer.finish().map_err(ParquetError::Encode)?;
    Ok(next - seal.first_seq)
}

#[cfg(test)]
#[path = "parquet_tests.rs"]
mod tests;
