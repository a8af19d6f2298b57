//! `GET /v1/export`: every matching event as NDJSON, CSV or one JSON array,
//! streamed in bounded memory. A failed export ends the chunked body with an
//! error (never with the closing `]` of a JSON array), so a client sees a
//! truncated response, not a valid-looking one.

use super::gate::record_start;
use super::params::{query_pairs, reject_params};
use super::problem::{internal, query_problem};
use super::{App, BodyError, Caller, ChannelBody, EndRecord, Held, Req, Resp};
use crate::event;
use crate::query::{Query, QueryError};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Response, StatusCode};
use std::sync::Arc;

/// Pages fetched per export step; the channel holds at most a few chunks, so
/// an export runs in bounded memory however many events it covers.
const EXPORT_PAGE: usize = 1000;

const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;

/// An export matching at least 1/this of the log is read from the log
/// sequentially instead of through the index.
const EXPORT_SCAN_RATIO: u64 = 8;

/// What `format=` asks for: one event per line (the default), CSV with a
/// header row, or one JSON array of the events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
    Json,
}

/// RFC 4180 rows through the `csv` crate: CRLF after each row, a field
/// quoted only when it holds a comma, a quote, CR or LF (quotes doubled).
struct CsvRows {
    writer: csv::Writer<Shared>,
    /// What `writer` wrote since the last row was taken.
    buf: Shared,
}

/// A byte buffer the writer and [`CsvRows`] share (one thread).
#[derive(Clone, Default)]
struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CsvRows {
    fn new() -> CsvRows {
        let buf = Shared::default();
        let writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(buf.clone());
        CsvRows { writer, buf }
    }

    /// The header row: the columns of the field table (`event::CSV_COLUMNS`).
    fn header(&mut self, out: &mut String) {
        self.write(event::CSV_COLUMNS, out);
    }

    /// One event: each column's value as JSON shows it (`event::csv_cells`).
    fn row(&mut self, ev: &crate::event::StoredEvent, out: &mut String) {
        self.write(event::csv_cells(ev), out);
    }

    fn write<I: IntoIterator<Item = T>, T: AsRef<[u8]>>(&mut self, record: I, out: &mut String) {
        // Into a Vec, with one column count for every row: cannot fail.
        self.writer
            .write_record(record)
            .expect("a CSV row into memory");
        self.writer.flush().expect("a CSV row into memory");
        let mut buf = self.buf.0.borrow_mut();
        out.push_str(std::str::from_utf8(&buf).expect("UTF-8 fields make a UTF-8 row"));
        buf.clear();
    }
}

pub(super) async fn export(app: Arc<App>, req: Req, caller: Caller) -> Resp {
    let mut pairs = query_pairs(&req);
    let mut format = Format::Ndjson;
    if let Some(i) = pairs.iter().position(|(k, _)| k == "format") {
        let (_, f) = pairs.remove(i);
        format = match f.as_str() {
            "csv" => Format::Csv,
            "ndjson" => Format::Ndjson,
            "json" => Format::Json,
            _ => {
                return query_problem(QueryError::BadParam {
                    param: "format".into(),
                    message: "must be csv, ndjson or json".into(),
                })
            }
        };
    }
    if let Some(r) = reject_params(
        &pairs,
        &["limit", "cursor", "interval"],
        "an export covers every matching event: give filters, not `limit`, `cursor` or `interval`",
    ) {
        return r;
    }
    let explicit_order = pairs.iter().any(|(k, _)| k == "order");
    let mut q = match Query::parse(&pairs, app.clock.now_micros()) {
        Ok(q) => q,
        Err(e) => return query_problem(e),
    };
    caller.restrict(&mut q.filter);
    if !explicit_order {
        q.order = crate::query::Order::Asc; // oldest first unless asked
    }
    if !pairs.iter().any(|(k, _)| k == "stele_records") {
        // An export is the record: Stele's own events are in it unless left out.
        q.filter.stele_records = crate::query::OwnRecords::Include;
    }
    q.limit = EXPORT_PAGE;
    // Check the query before promising a 200, and see how broad it is.
    let (app2, filter) = (app.clone(), q.filter.clone());
    let (matching, upto) = match tokio::task::spawn_blocking(move || {
        let upto = app2.engine.indexes().indexed_seq();
        app2.engine.count(&filter).map(|n| (n, upto))
    })
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return query_problem(e),
        Err(e) => return internal(e.to_string()),
    };
    // A broad export in arrival order (without full text, oldest first) reads the log
    // sequentially and filters in memory: faster than fetching every event
    // by seq, and it touches no index pages, so its resident set stays a few
    // pages of the log.
    let log_span = upto.saturating_sub(app.engine.log().first_seq()) + 1;
    let scan = q.filter.text.is_none()
        && q.sort == crate::query::Sort::Seq
        && q.order == crate::query::Order::Asc
        && matching.saturating_mul(EXPORT_SCAN_RATIO) >= log_span;
    if let Some(refused) = record_start(&app, &caller).await {
        return refused;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let (_open, _) = Held::take(&app, |a| &a.stats.exports_open);
        let mut end = EndRecord::new(&app, caller.access);
        let fail = |why: String| {
            tracing::error!("An export stopped before its end: {why}.");
            let _ = tx.blocking_send(Err(BodyError::from(why)));
        };
        let mut rows = CsvRows::new();
        let opening = match format {
            Format::Csv => {
                let mut header = String::new();
                rows.header(&mut header);
                header
            }
            Format::Json => "[".to_string(),
            Format::Ndjson => String::new(),
        };
        if !opening.is_empty() && tx.blocking_send(Ok(Bytes::from(opening))).is_err() {
            return;
        }
        // What ends a complete export: only a JSON array has a closing mark.
        let closing = if format == Format::Json { "]" } else { "" };
        let mut first = true;
        let mut render = |ev: &crate::event::StoredEvent, chunk: &mut String| match format {
            Format::Csv => rows.row(ev, chunk),
            Format::Ndjson => {
                chunk.push_str(&crate::event::to_json(ev));
                chunk.push('\n');
            }
            Format::Json => {
                if !std::mem::take(&mut first) {
                    chunk.push(',');
                }
                chunk.push_str(&crate::event::to_json(ev));
            }
        };
        if scan {
            let log = app.engine.log();
            let mut chunk = String::with_capacity(EXPORT_PAGE * 600);
            let mut in_chunk = 0;
            for ev in log.range(..=upto, crate::log::Direction::Forward) {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => return fail(e.to_string()),
                };
                if !q.filter.matches_fields(&ev) {
                    continue;
                }
                render(&ev, &mut chunk);
                in_chunk += 1;
                end.sent += 1;
                if in_chunk == EXPORT_PAGE {
                    if app.stopping() {
                        return fail("the daemon is shutting down".into());
                    }
                    let full =
                        std::mem::replace(&mut chunk, String::with_capacity(EXPORT_PAGE * 600));
                    if tx.blocking_send(Ok(Bytes::from(full))).is_err() {
                        return; // the client went away
                    }
                    in_chunk = 0;
                }
            }
            chunk.push_str(closing);
            end.complete = chunk.is_empty() || tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
            return;
        }
        loop {
            if app.stopping() {
                return fail("the daemon is shutting down".into());
            }
            let page = match app.engine.list(&q) {
                Ok(p) => p,
                Err(e) => return fail(e.to_string()),
            };
            if let (Some(a), Some(b)) = (page.events.first(), page.events.last()) {
                // The page's events were read one by one: give their pages
                // back so a long export keeps a bounded resident set.
                let _ = app.engine.log().release(a.seq.min(b.seq), a.seq.max(b.seq));
            }
            let mut chunk = String::with_capacity(page.events.len() * 600);
            for ev in &page.events {
                render(ev, &mut chunk);
            }
            if !chunk.is_empty() && tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                return; // the client went away
            }
            end.sent += page.events.len() as u64;
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => {
                    end.complete = closing.is_empty()
                        || tx
                            .blocking_send(Ok(Bytes::from_static(closing.as_bytes())))
                            .is_ok();
                    return;
                }
            }
        }
    });
    let (ctype, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        Format::Json => ("application/json", "json"),
    };
    let name = format!(
        "stele-export-{}.{ext}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", ctype)
        .header(
            "content-disposition",
            format!("attachment; filename=\"{name}\""),
        )
        .body(ChannelBody(rx).boxed())
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_rfc_4180_needs() {
        let mut rows = CsvRows::new();
        let mut out = String::new();
        rows.write(
            [
                "plain",
                "",
                "a,b",
                "say \"hi\"",
                "line\r\nbreak",
                "é ü",
                " sp ",
            ],
            &mut out,
        );
        assert_eq!(
            out,
            "plain,,\"a,b\",\"say \"\"hi\"\"\",\"line\r\nbreak\",é ü, sp \r\n"
        );
        let mut header = String::new();
        CsvRows::new().header(&mut header);
        assert_eq!(header, format!("{}\r\n", event::CSV_COLUMNS.join(",")));
    }
}
