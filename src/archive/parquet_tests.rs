use super::*;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int64Type, TimestampMicrosecondType, UInt64Type};
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use serde_json::Value;

use crate::event::{Change, Event, Phase, Provenance, Severity, Source, Status};
use crate::testkit::EventGen;

const DIGEST: &str = "6de48a49fec26f43b20b0ed3942b976339f7cb267d34c225ed537ebc952b9248";
/// 2026-01-01T00:00:00Z.
const DAY_START: i64 = crate::testkit::DEFAULT_BASE_TIME;

fn seal(first_seq: u64, rows: u64) -> DaySeal {
    DaySeal {
        day: Day::from_micros(DAY_START),
        digest_sha256: DIGEST.to_owned(),
        first_seq,
        last_seq: first_seq + rows - 1,
    }
}

/// `n` realistic events from seq `first`, received through the day, with the
/// provenance of an API key (every 7th: Stele's own, every 11th: none).
fn day_of(first: u64, n: u64, seed: u64) -> Vec<StoredEvent> {
    let mut gen = EventGen::new(seed).with_base_time(DAY_START);
    (0..n)
        .map(|i| StoredEvent {
            seq: first + i,
            received_at: DAY_START + (i as i64) * 800_000,
            event: gen.next_event(),
            provenance: if i % 11 == 0 {
                None
            } else if i % 7 == 0 {
                Some(Provenance::stele())
            } else {
                Some(Provenance::key("k-ingest", "10.0.0.7".parse().unwrap()))
            },
        })
        .collect()
}

/// An event with every field set, and one with every optional field absent.
fn full_and_bare(first: u64) -> Vec<StoredEvent> {
    let full = Event {
        id: "evt_full".into(),
        timestamp: Some(DAY_START + 1),
        action: "Export".into(),
        actor: Some("ann@example.com".into()),
        tenant: Some("acme".into()),
        category: Some("data".into()),
        source: Some(Source::Integration),
        status: Some(Status::Partial),
        severity: Some(Severity::Critical),
        entity_type: Some("report".into()),
        entity_id: Some("r-1".into()),
        entity_name: Some("Q3 “numbers” ✓".into()),
        user_id: Some("u-1".into()),
        user_name: Some("Ann Lee".into()),
        session_id: Some("sess_1".into()),
        correlation_id: Some("req-1".into()),
        ip: Some("2001:db8::1".into()),
        user_agent: Some("curl/8.5".into()),
        risk_score: Some(100),
        duration_ms: Some(u64::MAX),
        description: Some("line one\nline \"two\"".into()),
        changes: vec![
            Change {
                field: "state".into(),
                old: Some("\"pending\"".into()),
                new: Some("{\"a\":[1,2.5,null],\"b\":\"é\"}".into()),
            },
            Change {
                field: "owner".into(),
                old: None,
                new: Some("42".into()),
            },
        ],
        metadata: Some("{\"n\":1.0e-7,\"nested\":{\"k\":\"v\\u0001\"},\"z\":true}".into()),
        process_name: Some("nightly_export".into()),
        process_id: Some("run-9".into()),
        batch_id: Some("b-3".into()),
        phase: Some(Phase::Finished),
        items_total: Some(event::ITEMS_MAX),
        items_processed: Some(7),
        items_failed: Some(0),
        risk_rules: Some(vec!["off_hours".into(), "bulk_export".into()]),
    };
    let bare = Event {
        id: "evt_bare".into(),
        action: "login".into(),
        risk_rules: Some(vec![]),
        ..Event::default()
    };
    vec![
        StoredEvent {
            seq: first,
            received_at: DAY_START + 5,
            event: full,
            provenance: Some(Provenance::key("k1", "::ffff:10.1.2.3".parse().unwrap())),
        },
        StoredEvent {
            seq: first + 1,
            received_at: DAY_START + 86_399_999_999,
            event: bare,
            provenance: None,
        },
    ]
}

fn write(events: &[StoredEvent], seal: &DaySeal) -> (Vec<u8>, DayStats) {
    let mut out = Vec::new();
    let stats = write_day(events.iter().cloned(), seal, &mut out).unwrap();
    assert_eq!(stats.bytes, out.len() as u64);
    (out, stats)
}

fn read(bytes: Vec<u8>) -> (Vec<RecordBatch>, Arc<ParquetMetaData>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
    let meta = builder.metadata().clone();
    assert_eq!(builder.schema().fields(), schema().fields());
    let batches = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
    (batches, meta)
}

/// The column's value at `row` as the API's JSON shows it (`None`: null).
fn cell(col: &dyn Array, row: usize) -> Option<Value> {
    if col.is_null(row) {
        return None;
    }
    Some(match col.data_type() {
        DataType::UInt64 => Value::from(col.as_primitive::<UInt64Type>().value(row)),
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(row)),
        DataType::Timestamp(..) => Value::from(event::format_micros(
            col.as_primitive::<TimestampMicrosecondType>().value(row),
        )),
        DataType::Utf8 => Value::from(col.as_string::<i32>().value(row)),
        other => panic!("no field column is {other}"),
    })
}

/// Every column of every row holds what the API's JSON view shows for the event.
fn assert_rows_match(events: &[StoredEvent], batches: &[RecordBatch], seal: &DaySeal) {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, events.len());
    let mut events = events.iter();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let ev = events.next().unwrap();
            let text = serde_json::to_string(ev).unwrap();
            let view: Value = serde_json::from_str(&text).unwrap();
            for spec in FIELDS {
                let col = batch.column_by_name(spec.name).unwrap();
                let got = cell(col.as_ref(), row);
                let want = view.get(spec.name);
                match spec.kind {
                    Kind::Changes | Kind::Json | Kind::Labels => {
                        let got = got.map(|v| v.as_str().unwrap().to_owned());
                        // The same JSON text as in the API's answer, byte for byte.
                        if let Some(json) = &got {
                            let entry = format!("\"{}\":{json}", spec.name);
                            assert!(text.contains(&entry), "{entry} not in {text}");
                        }
                        let parsed = got.map(|s| serde_json::from_str::<Value>(&s).unwrap());
                        assert_eq!(parsed.as_ref(), want, "seq {} {}", ev.seq, spec.name);
                    }
                    _ => assert_eq!(got.as_ref(), want, "seq {} {}", ev.seq, spec.name),
                }
            }
            let day = batch.column_by_name("day").unwrap();
            let day = day.as_primitive::<Date32Type>().value_as_date(row);
            assert_eq!(day, Some(seal.day.0));
            let digest = batch.column_by_name("digest_sha256").unwrap();
            assert_eq!(digest.as_string::<i32>().value(row), seal.digest_sha256);
        }
    }
}

fn kv(meta: &ParquetMetaData) -> std::collections::BTreeMap<String, String> {
    meta.file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .filter(|kv| kv.key.starts_with("stele."))
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn the_schema_is_the_field_table_then_the_seal() {
    let schema = schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let want: Vec<&str> = FIELDS.iter().map(|f| f.name).chain(SEAL_COLUMNS).collect();
    assert_eq!(names, want);
    assert_eq!(&names[..FIELDS.len()], event::CSV_COLUMNS);
    let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(ty("seq"), DataType::UInt64);
    assert_eq!(ty("received_at"), utc);
    assert_eq!(ty("timestamp"), utc);
    assert_eq!(ty("risk_score"), DataType::Int64);
    assert_eq!(ty("items_total"), DataType::Int64);
    assert_eq!(ty("duration_ms"), DataType::UInt64);
    for n in [
        "severity",
        "metadata",
        "changes",
        "risk_rules",
        "ingested_by",
    ] {
        assert_eq!(ty(n), DataType::Utf8, "{n}");
    }
    assert_eq!(ty("day"), DataType::Date32);
    let required: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| !f.is_nullable())
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        required,
        ["seq", "received_at", "id", "action", "day", "digest_sha256"]
    );
}

#[test]
fn every_column_round_trips_as_the_api_shows_it() {
    let mut events = full_and_bare(41);
    events.extend(day_of(43, 500, 3));
    let seal = seal(41, events.len() as u64);
    let (bytes, stats) = write(&events, &seal);
    assert_eq!(stats.rows, events.len() as u64);
    let (batches, _) = read(bytes);
    assert_rows_match(&events, &batches, &seal);
    // The full event really set everything, and the bare one left all but four out.
    let first = &batches[0];
    for spec in FIELDS {
        let col = first.column_by_name(spec.name).unwrap();
        assert!(col.is_valid(0), "{}", spec.name);
        let set = !matches!(spec.name, "risk_rules") && col.is_valid(1);
        assert_eq!(set, always_set(spec), "{}", spec.name);
    }
    let rules = first.column_by_name("risk_rules").unwrap();
    assert_eq!(rules.as_string::<i32>().value(1), "[]");
    let duration = first.column_by_name("duration_ms").unwrap();
    assert_eq!(duration.as_primitive::<UInt64Type>().value(0), u64::MAX);
}

#[test]
fn rows_are_the_seals_seqs_in_order_and_the_footer_names_the_seal() {
    let events = day_of(1_000, 3_000, 4);
    let seal = seal(1_000, 3_000);
    let (bytes, _) = write(&events, &seal);
    let (batches, meta) = read(bytes);
    let seqs: Vec<u64> = batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name("seq")
                .unwrap()
                .as_primitive::<UInt64Type>();
            c.values().to_vec()
        })
        .collect();
    assert_eq!(seqs, (1_000..4_000).collect::<Vec<u64>>());
    let kv = kv(&meta);
    assert_eq!(kv["stele.schema_version"], "1");
    assert_eq!(kv["stele.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(kv["stele.day"], "2026-01-01");
    assert_eq!(kv["stele.digest_sha256"], DIGEST);
    assert_eq!(kv["stele.first_seq"], "1000");
    assert_eq!(kv["stele.last_seq"], "3999");
    assert_eq!(kv["stele.rows"], "3000");
    let column = meta.row_group(0).column(0);
    assert!(matches!(column.compression(), Compression::ZSTD(_)));
}

#[test]
fn a_day_without_events_is_an_empty_file_with_its_seal() {
    let seal = DaySeal {
        last_seq: 9,
        ..seal(10, 1)
    };
    let (bytes, stats) = write(&[], &seal);
    assert_eq!(stats.rows, 0);
    let (batches, meta) = read(bytes);
    assert!(batches.iter().all(|b| b.num_rows() == 0));
    assert_eq!(meta.num_row_groups(), 0);
    assert_eq!(kv(&meta)["stele.first_seq"], "10");
    assert_eq!(kv(&meta)["stele.last_seq"], "9");
    assert_eq!(kv(&meta)["stele.rows"], "0");
}

#[test]
fn events_that_are_not_the_seals_are_refused() {
    let events = day_of(5, 4, 5);
    let refused =
        |events: Vec<StoredEvent>, seal: DaySeal| match write_day(events, &seal, Vec::new()) {
            Err(ParquetError::Seal(why)) => why,
            other => panic!("{other:?}"),
        };
    let mut gap = events.clone();
    gap.remove(1);
    assert!(refused(gap, seal(5, 4)).contains("expected seq 6, got seq 7"));
    assert!(refused(events.clone(), seal(5, 3)).contains("no more events"));
    assert!(refused(events[..3].to_vec(), seal(5, 4)).contains("end at seq 7"));
    assert!(refused(events.clone(), seal(4, 5)).contains("expected seq 4"));
    let upper = DaySeal {
        digest_sha256: DIGEST.to_uppercase(),
        ..seal(5, 4)
    };
    assert!(refused(events.clone(), upper).contains("hex"));
    let backwards = DaySeal {
        last_seq: 2,
        ..seal(5, 1)
    };
    assert!(refused(vec![], backwards).contains("before first_seq"));
}

/// An output that fails after `left` bytes.
struct Failing {
    left: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.left {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        self.left -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_output_is_an_io_error_not_an_encoding_one() {
    for left in [0, 100, 20_000] {
        let events = day_of(1, 200, 6);
        match write_day(events, &seal(1, 200), Failing { left }) {
            Err(ParquetError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::StorageFull),
            other => panic!("{left}: {other:?}"),
        }
    }
}

#[test]
fn a_hundred_thousand_events_go_in_bounded_batches_and_row_groups() {
    const N: u64 = 100_000;
    let seal = seal(1, N);
    let mut gen = EventGen::new(7).with_base_time(DAY_START);
    let events = (1..=N).map(move |seq| StoredEvent {
        seq,
        received_at: DAY_START + seq as i64 * 800_000,
        event: gen.next_event(),
        provenance: Some(Provenance::key("k-ingest", "10.0.0.7".parse().unwrap())),
    });
    let mut out = Vec::new();
    let stats = write_day(events, &seal, &mut out).unwrap();
    assert_eq!(stats.rows, N);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(out)).unwrap();
    let groups: Vec<i64> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups, [65_536, 34_464]);
    let rows: usize = builder
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, N as usize);
    let bincode: usize = day_of(1, 2_000, 7)
        .iter()
        .map(|ev| event::encoded_len(&ev.event))
        .sum();
    println!(
        "parquet: {N} realistic events, {} bytes, {:.1} bytes/event \
         (bincode payload ≈ {:.1} bytes/event)",
        stats.bytes,
        stats.bytes as f64 / N as f64,
        bincode as f64 / 2_000.0
    );
}

#[test]
fn a_batch_is_cut_by_its_text_too() {
    let mut batch = Batch::new(schema(), &seal(1, 1));
    let mut ev = day_of(1, 1, 8).remove(0);
    ev.event.description = Some("x".repeat(BATCH_TEXT_BYTES));
    batch.push(&ev, DIGEST).unwrap();
    assert!(batch.full());
    assert_eq!(batch.take().unwrap().num_rows(), 1);
    assert!(!batch.full());
}

/// Writes a realistic day (Stele's own records, letter-case variants, events
/// without a timestamp) to `$STELE_PARQUET_OUT` for trying `scripts/parquet-stats.py`:
/// `STELE_PARQUET_OUT=/tmp/d.parquet cargo test --lib archive::parquet -- --ignored`.
#[test]
#[ignore = "writes to $STELE_PARQUET_OUT"]
fn write_a_sample_day() {
    let Ok(path) = std::env::var("STELE_PARQUET_OUT") else {
        return;
    };
    let mut events = day_of(1, 20_000, 9);
    for ev in events.iter_mut().step_by(13) {
        ev.event.action = ev.event.action.to_uppercase();
    }
    let file = std::fs::File::create(&path).unwrap();
    let stats = write_day(events, &seal(1, 20_000), io::BufWriter::new(file)).unwrap();
    println!("{path}: {stats:?}");
}
