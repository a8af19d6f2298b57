//! What `stele query` prints: one event at a time (listings are printed as
//! their pages arrive, `-f` as its events do), as a table for people, or
//! JSON, NDJSON or CSV for programs.
//!
//! Every format takes an event as its JSON view (the text the server sends,
//! or `serde_json::to_value` of a stored event offline: the same bytes), so
//! online and offline answers print alike. CSV has the server export's
//! columns (`stele::event::CSV_COLUMNS`) and cells (`csv_cells`' rule: strings
//! bare, other values as compact JSON, absent fields empty). The table never
//! prints a byte of an event's text that a terminal would act on: control
//! characters become `?`.

use serde_json::Value;
use std::io::Write;

/// Output format (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON array of events.
    Json,
    /// One event's JSON per line.
    Ndjson,
    /// RFC 4180 CSV with a header row, the columns of `/v1/export?format=csv`.
    Csv,
}

/// How the table looks: its width and whether it has colour.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    /// Columns of the terminal (or 80).
    pub width: usize,
    /// ANSI colour (a terminal without `NO_COLOR`).
    pub colour: bool,
}

impl Style {
    /// The style for standard output: its terminal's width and colour, or
    /// 80 columns (`$COLUMNS` if set) and no colour when it is not a terminal.
    pub fn for_stdout() -> Style {
        use std::io::IsTerminal;
        let tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let width = tty
            .then(terminal_width)
            .flatten()
            .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
            .unwrap_or(80);
        Style {
            width: width.clamp(40, 1000),
            colour: tty && !no_color,
        }
    }
}

fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills the winsize we pass; stdout is open.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// Prints events in one format: [`Printer::event`] for each, then
/// [`Printer::finish`].
pub(crate) struct Printer<W: Write> {
    out: W,
    format: Format,
    style: Style,
    /// Events printed so far.
    pub printed: u64,
    /// The table's or CSV's header row is out.
    started: bool,
}

const TIME_W: usize = 19;
const SEV_W: usize = 4;
const STATUS_W: usize = 4;

impl<W: Write> Printer<W> {
    pub fn new(out: W, format: Format, style: Style) -> Printer<W> {
        Printer {
            out,
            format,
            style,
            printed: 0,
            started: false,
        }
    }

    /// Prints one event, given as its JSON view's text (compact).
    pub fn event(&mut self, json: &str) -> std::io::Result<()> {
        match self.format {
            Format::Ndjson => writeln!(self.out, "{json}")?,
            Format::Json => {
                let sep = if self.printed == 0 { "[\n" } else { ",\n" };
                write!(self.out, "{sep}{json}")?;
            }
            Format::Csv | Format::Table => {
                let view: Value = serde_json::from_str(json)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                if self.format == Format::Csv {
                    self.csv_row(&view)?;
                } else {
                    self.table_row(&view)?;
                }
            }
        }
        self.printed += 1;
        Ok(())
    }

    /// Sends what is buffered (after each event of `-f`).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Ends the output: closes the JSON array, prints the header of an empty
    /// table or CSV (so a program reading it sees the columns).
    pub fn finish(&mut self) -> std::io::Result<()> {
        match self.format {
            Format::Json if self.printed == 0 => writeln!(self.out, "[]")?,
            Format::Json => writeln!(self.out, "\n]")?,
            Format::Csv if !self.started => self.csv_header()?,
            Format::Table if !self.started => self.table_header()?,
            _ => {}
        }
        self.out.flush()
    }

    fn csv_header(&mut self) -> std::io::Result<()> {
        self.started = true;
        write_csv(&mut self.out, stele::event::CSV_COLUMNS.iter().copied())
    }

    fn csv_row(&mut self, view: &Value) -> std::io::Result<()> {
        if !self.started {
            self.csv_header()?;
        }
        let cells = csv_cells(view);
        write_csv(&mut self.out, cells.iter().map(String::as_str))
    }

    /// The widths of the action, actor and entity columns, and of the
    /// description (what is left of the width, at least 10).
    fn widths(&self) -> [usize; 4] {
        let fixed = TIME_W + SEV_W + STATUS_W + 6;
        let flex = self.style.width.saturating_sub(fixed);
        let short = (flex / 5).clamp(8, 20);
        let entity = (flex / 4).clamp(8, 28);
        let desc = flex.saturating_sub(2 * short + entity).max(10);
        [short, short, entity, desc]
    }

    fn table_header(&mut self) -> std::io::Result<()> {
        self.started = true;
        let [a, u, e, _] = self.widths();
        let line = format!(
            "{:TIME_W$} {:SEV_W$} {:STATUS_W$} {:a$} {:u$} {:e$} DESCRIPTION",
            "TIME (UTC)", "SEV", "STAT", "ACTION", "ACTOR", "ENTITY"
        );
        if self.style.colour {
            writeln!(self.out, "\x1b[1m{line}\x1b[0m")
        } else {
            writeln!(self.out, "{line}")
        }
    }

    fn table_row(&mut self, v: &Value) -> std::io::Result<()> {
        if !self.started {
            self.table_header()?;
        }
        let [a, u, e, d] = self.widths();
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
        let time = table_time(v);
        let (sev, sev_colour) = severity_cell(s("severity"));
        let (status, status_colour) = status_cell(s("status"));
        let actor = ["actor", "user_id", "user_name", "source"]
            .iter()
            .map(|k| s(k))
            .find(|x| !x.is_empty())
            .unwrap_or("");
        let entity = match (s("entity_type"), s("entity_id")) {
            ("", id) => id.to_string(),
            (t, "") => t.to_string(),
            (t, id) => format!("{t}/{id}"),
        };
        let paint = |text: String, colour: Option<&str>| match colour {
            Some(c) if self.style.colour => format!("\x1b[{c}m{text}\x1b[0m"),
            _ => text,
        };
        let line = format!(
            "{time:TIME_W$} {} {} {} {} {} {}",
            paint(cell(sev, SEV_W), sev_colour),
            paint(cell(status, STATUS_W), status_colour),
            cell(s("action"), a),
            cell(actor, u),
            cell(&entity, e),
            clip(s("description"), d),
        );
        writeln!(self.out, "{}", line.trim_end())
    }
}

/// The event time (its `timestamp`, else when it was received) to the
/// second, UTC.
fn table_time(v: &Value) -> String {
    let t = ["timestamp", "received_at"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(dt) => dt.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => clip(t, TIME_W),
    }
}

/// Severity, four letters, and its SGR colour.
fn severity_cell(s: &str) -> (&str, Option<&'static str>) {
    match s {
        "debug" => ("DEBG", Some("2")),
        "info" => ("INFO", None),
        "notice" => ("NOTE", Some("1")),
        "warning" => ("WARN", Some("33")),
        "error" => ("ERR", Some("31")),
        "critical" => ("CRIT", Some("1;31")),
        other => (other, None),
    }
}

/// Status, at most four letters, and its SGR colour.
fn status_cell(s: &str) -> (&str, Option<&'static str>) {
    match s {
        "success" => ("ok", None),
        "failure" => ("FAIL", Some("31")),
        "pending" => ("pend", None),
        "canceled" => ("canc", None),
        "partial" => ("part", Some("33")),
        other => (other, None),
    }
}

/// `text` clipped to `width` and padded to it.
fn cell(text: &str, width: usize) -> String {
    let c = clip(text, width);
    let n = c.chars().count();
    format!("{c}{}", " ".repeat(width.saturating_sub(n)))
}

/// `text` on one line, with control characters (escape sequences, line
/// breaks) as `?`, cut to `width` characters with `…` when longer.
pub(crate) fn clip(text: &str, width: usize) -> String {
    let clean = text.chars().map(|c| if c.is_control() { '?' } else { c });
    if text.chars().count() <= width {
        return clean.collect();
    }
    let mut out: String = clean.take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The CSV cells of one event's JSON view, one per `CSV_COLUMNS` entry:
/// `stele::event::csv_cells`' rule applied to the view.
pub(crate) fn csv_cells(view: &Value) -> Vec<String> {
    stele::event::CSV_COLUMNS
        .iter()
        .map(|col| match view.get(*col) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
        .collect()
}

/// One RFC 4180 row (CRLF, quoted only when needed), as the server's export.
fn write_csv<'a>(
    out: &mut impl Write,
    cells: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(cells).map_err(std::io::Error::other)?;
    let row = w
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    out.write_all(&row)
}

#[cfg(test)]
mod tests;
