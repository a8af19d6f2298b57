//! Export from the events view: the file the browser saves holds exactly the
//! events the view lists for its filters (CSV, NDJSON and JSON).

use super::browser::Browser;
use super::events::{api_ids, open, world};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Clicks `[data-test=export-FORMAT]` and returns the saved file.
fn export(b: &Browser, format: &str) -> Vec<u8> {
    let button = b.find(&format!("[data-test=export-{format}]"));
    b.with(|_| button.click()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let name = loop {
        let msg = b.eval(
            "const m = document.querySelector('.export-msg'); return m ? m.textContent : '';",
        );
        let msg = msg.as_str().unwrap_or_default();
        if let Some(rest) = msg.strip_prefix("Saved ") {
            break rest.trim_end_matches('.').to_owned();
        }
        assert!(Instant::now() < deadline, "no export saved: {msg:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (saved, bytes) = b.downloaded();
    assert_eq!(saved, name, "the page names the file it saved");
    assert!(name.ends_with(&format!(".{format}")), "{name}");
    bytes
}

#[test]
fn an_export_of_the_current_view_downloads_exactly_its_events() {
    let tmp = tempfile::tempdir().unwrap();
    let d = world(tmp.path(), 300);
    // Stele's own records exist too (findings it wrote), so the export must
    // leave them out like the list does.
    for (i, tenant) in ["acme", "acme", "globex"].iter().enumerate() {
        let mut f = crate::alerts::finding("new_ip", "low", i);
        f["tenant"] = (*tenant).into();
        d.append_own(&f);
    }
    let want_count = d.get("/v1/count").2["count"].as_u64().unwrap() + 3;
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.get("/v1/count?stele_records=include").2["count"].as_u64() != Some(want_count) {
        assert!(Instant::now() < deadline, "the findings were not indexed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = Browser::start();
    for query in ["", "action=update&tenant=acme", "q=%22password%20reset%22"] {
        open(&b, &d, &format!("#/events?{query}"));
        b.find("[data-test=total]");
        let want: BTreeSet<String> = api_ids(&d, query).into_iter().collect();
        assert!(!want.is_empty(), "{query}: no events to export");

        let ndjson = String::from_utf8(export(&b, "ndjson")).unwrap();
        let lines: Vec<Value> = ndjson
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: BTreeSet<String> = lines
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(lines.len(), want.len(), "{query}: ndjson line count");
        assert_eq!(got, want, "{query}: ndjson ids");

        let json: Value = serde_json::from_slice(&export(&b, "json")).unwrap();
        let arr = json
            .as_array()
            .or_else(|| json["events"].as_array())
            .expect("a JSON export is an array of events");
        let got: BTreeSet<String> = arr
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(arr.len(), want.len(), "{query}: json count");
        assert_eq!(got, want, "{query}: json ids");

        let csv = export(&b, "csv");
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        let id_col = reader
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "id")
            .expect("an id column");
        let got: Vec<String> = reader
            .records()
            .map(|r| r.unwrap()[id_col].to_owned())
            .collect();
        assert_eq!(got.len(), want.len(), "{query}: csv rows");
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            want,
            "{query}: csv ids"
        );
    }
    b.screenshot("events-exported");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
