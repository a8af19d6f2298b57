use super::*;
use serde_json::json;
use stele::event::{Provenance, StoredEvent};

/// A stored event made from posted JSON, and its JSON view's text as the
/// server would send it.
fn stored(seq: u64, posted: Value) -> (StoredEvent, String) {
    let event = stele::event::parse_event(&posted, stele::event::new_event_id).unwrap();
    let ev = StoredEvent {
        seq,
        received_at: 1_764_000_000_000_000 + seq as i64,
        event,
        provenance: Some(Provenance::cli()),
    };
    let text = serde_json::to_value(&ev).unwrap().to_string();
    (ev, text)
}

fn print(format: Format, style: Style, events: &[&str]) -> String {
    let mut p = Printer::new(Vec::new(), format, style);
    for e in events {
        p.event(e).unwrap();
    }
    p.finish().unwrap();
    String::from_utf8(p.out).unwrap()
}

const PLAIN: Style = Style {
    width: 100,
    colour: false,
};

#[test]
fn ndjson_is_each_view_on_its_line_and_json_one_array() {
    let (_, a) = stored(1, json!({"action": "login", "actor": "ann"}));
    let (_, b) = stored(2, json!({"action": "logout", "actor": "bob"}));
    assert_eq!(
        print(Format::Ndjson, PLAIN, &[&a, &b]),
        format!("{a}\n{b}\n")
    );
    let arr: Value = serde_json::from_str(&print(Format::Json, PLAIN, &[&a, &b])).unwrap();
    let want: Value = serde_json::from_str(&format!("[{a},{b}]")).unwrap();
    assert_eq!(arr, want);
    assert_eq!(print(Format::Json, PLAIN, &[]), "[]\n");
    assert_eq!(print(Format::Ndjson, PLAIN, &[]), "");
}

#[test]
fn csv_has_the_export_columns_and_the_library_cells() {
    let (ev, text) = stored(
        7,
        json!({"action": "update", "actor": "ann", "description": "a, \"quoted\"\nline",
               "metadata": {"k": [1, 2]}, "changes": [{"field": "f", "old": 1, "new": 2}]}),
    );
    let out = print(Format::Csv, PLAIN, &[&text]);
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(out.as_bytes());
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let header: Vec<String> = stele::event::CSV_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(rows, vec![header, stele::event::csv_cells(&ev)]);
    assert!(out.ends_with("\r\n"), "CRLF rows, as the export");
    // An empty answer still names its columns.
    let empty = print(Format::Csv, PLAIN, &[]);
    assert_eq!(empty.lines().count(), 1);
    assert!(empty.starts_with(stele::event::CSV_COLUMNS[0]));
}

#[test]
fn the_table_is_one_clean_line_an_event_within_the_width() {
    let (_, text) = stored(
        3,
        json!({"action": "login_failed", "actor": "mallory", "severity": "error",
               "status": "failure", "entity_type": "account", "entity_id": "42",
               "timestamp": "2026-11-23T10:00:00.123456Z",
               "description": format!("bad password\x1b[2J\nagain {}", "x".repeat(200))}),
    );
    for width in [80, 100, 160] {
        let style = Style {
            width,
            colour: false,
        };
        let out = print(Format::Table, style, &[&text]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("TIME (UTC)"));
        let row = lines[1];
        assert!(row.chars().count() <= width, "{width}: {row}");
        assert!(
            row.starts_with("2026-11-23 10:00:00 ERR  FAIL login_f"),
            "{row}"
        );
        if width >= 100 {
            assert!(row.contains(" login_failed "), "{row}");
            assert!(row.contains("bad password?[2J?again"), "{row}");
        }
        assert!(
            row.contains("mallory") && row.contains("account/42"),
            "{row}"
        );
        assert!(
            !row.contains('\x1b'),
            "no escape from the event's text: {row}"
        );
        assert!(row.contains("bad password?[2J?"), "{row}");
        assert!(row.ends_with('…'), "{row}");
    }
}

#[test]
fn colour_only_when_asked_and_an_empty_table_has_its_header() {
    let (_, text) = stored(
        4,
        json!({"action": "delete", "actor": "ann", "severity": "critical"}),
    );
    let plain = print(Format::Table, PLAIN, &[&text]);
    assert!(!plain.contains('\x1b'));
    let colour = Style {
        width: 100,
        colour: true,
    };
    let painted = print(Format::Table, colour, &[&text]);
    assert!(painted.contains("\x1b[1;31mCRIT\x1b[0m"), "{painted:?}");
    assert_eq!(print(Format::Table, PLAIN, &[]).lines().count(), 1);
}

#[test]
fn clip_counts_characters_not_bytes() {
    assert_eq!(clip("héllo wörld", 5), "héll…");
    assert_eq!(clip("héllo", 5), "héllo");
    assert_eq!(clip("a\tb", 5), "a?b");
}
