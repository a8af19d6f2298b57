//! `stele query`: the terminal client. Lists events with the server's
//! listing parameters, from a running daemon (`--url`, `$STELE_URL`, with
//! `--key` or `$STELE_API_KEY`) or offline from a data directory or a backup
//! (`--data-dir`), and follows the live stream with `-f`.
//!
//! Owns the command's flags, turning them into the listing's `name=value`
//! parameters (the common filters as flags, any parameter with
//! `-p name=value`, so a parameter the server learns works here unchanged),
//! and its exit codes: 0 done (a followed stream ended by Ctrl-C or SIGTERM
//! too), 2 a bad request (a flag, a parameter, a 400), 1 anything else (the
//! server unreachable, a refused key, a damaged log). Never interprets a
//! parameter itself: the server, or offline `stele::query::Query::parse`,
//! does, so a parameter means the same in both.
//!
//! Modules: `online` (HTTP: pages by `next_cursor`, problem+json errors),
//! `follow` (`-f`: the SSE stream, resumed by seq), `offline` (the read-only
//! log, filters in memory), `output` (table, JSON, NDJSON, CSV).

mod follow;
mod offline;
mod online;
mod output;

use output::{Format, Printer, Style};
use std::path::PathBuf;
use std::process::ExitCode;

/// The most events one `stele query` prints (`-n`): offline, a time-ordered
/// answer keeps this many `(time, seq)` keys in memory (16 MB).
pub(crate) const QUERY_EVENTS_MAX: u64 = 1_000_000;

/// `-n` when not given: a page of the server's listing; with `-f`, the last
/// ten events before following, as `tail -f` and `journalctl -f` do.
const EVENTS_DEFAULT: u64 = 100;
const FOLLOW_EVENTS_DEFAULT: u64 = 10;

/// Parameters the command's own flags set (or that do not apply to it).
const FLAG_PARAMS: &[(&str, &str)] = &[
    ("limit", "use -n"),
    ("cursor", "stele query follows the cursors itself"),
    ("sort", "use --sort"),
    ("order", "use --order"),
    ("from_seq", "-f resumes by seq itself"),
    ("interval", "it applies to statistics only"),
    ("format", "use -o"),
];

#[derive(clap::Args, Debug)]
pub(crate) struct QueryArgs {
    /// Full-text query in tantivy syntax over descriptions and metadata
    /// (the `q` parameter); online only.
    #[arg(value_name = "TEXT")]
    text: Option<String>,
    /// The same as TEXT.
    #[arg(long = "q", value_name = "TEXT", conflicts_with = "text")]
    q: Option<String>,
    /// Exact action.
    #[arg(long)]
    action: Option<String>,
    /// Exact actor.
    #[arg(long)]
    actor: Option<String>,
    /// Exact tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Exact category.
    #[arg(long)]
    category: Option<String>,
    /// Exact source: user, system, integration or scheduled.
    #[arg(long)]
    source: Option<String>,
    /// Exact status: success, failure, pending, canceled or partial.
    #[arg(long)]
    status: Option<String>,
    /// Exact severity: debug, info, notice, warning, error or critical.
    #[arg(long)]
    severity: Option<String>,
    /// This severity or a higher one.
    #[arg(long)]
    min_severity: Option<String>,
    /// Exact entity type.
    #[arg(long)]
    entity_type: Option<String>,
    /// Exact entity id.
    #[arg(long)]
    entity_id: Option<String>,
    /// Exact user id.
    #[arg(long)]
    user_id: Option<String>,
    /// Exact IP address.
    #[arg(long)]
    ip: Option<String>,
    /// Event time at or after this (RFC 3339, e.g. 2026-11-23T10:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Event time before this (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// The last N hours (instead of --since).
    #[arg(long)]
    hours: Option<String>,
    /// Any listing parameter, as the server names it (session_id,
    /// correlation_id, ingested_by, ...); repeatable.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The daemon's base URL, e.g. http://127.0.0.1:7070. Default:
    /// $STELE_URL.
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    url: Option<String>,
    /// Read a data directory or a backup instead of asking a daemon (works
    /// while the daemon runs; no full text offline).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The API key, sent as `Authorization: Bearer`. Default:
    /// $STELE_API_KEY (prefer it: a flag shows in `ps`).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Format,
    /// Print at most this many events (default 100; with -f, 10 before
    /// following).
    #[arg(short = 'n', long = "lines", value_name = "N")]
    lines: Option<u64>,
    /// Order by event time (default) or by seq (arrival).
    #[arg(long, value_enum)]
    sort: Option<SortArg>,
    /// Newest first (default) or oldest first.
    #[arg(long, value_enum)]
    order: Option<OrderArg>,
    /// Print the last events, then follow new ones as they are stored (in
    /// seq order), reconnecting after a disconnect without a gap or a
    /// duplicate; Ctrl-C ends it.
    #[arg(short = 'f', long)]
    follow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SortArg {
    Time,
    Seq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OrderArg {
    Desc,
    Asc,
}

/// Why `stele query` stopped, and its exit code.
#[derive(Debug)]
pub(crate) struct Fail {
    code: u8,
    message: String,
}

/// A bad request: exit 2.
pub(crate) fn bad(message: impl Into<String>) -> Fail {
    Fail {
        code: 2,
        message: message.into(),
    }
}

/// Anything else: exit 1.
pub(crate) fn failed(message: impl Into<String>) -> Fail {
    Fail {
        code: 1,
        message: message.into(),
    }
}

/// What to list, checked: the parameters, the order and how many.
pub(crate) struct Ask {
    /// The listing parameters, `sort`/`order`/`limit` excepted.
    pub pairs: Vec<(String, String)>,
    pub sort: &'static str,
    pub order: &'static str,
    pub count: u64,
}

pub(crate) fn query(args: QueryArgs, env: impl Fn(&str) -> Option<String>) -> ExitCode {
    match run(args, env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("stele query: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(args: QueryArgs, env: impl Fn(&str) -> Option<String>) -> Result<(), Fail> {
    let ask = ask(&args)?;
    if args.follow && args.output == Format::Json {
        return Err(bad(
            "-f prints events as they come, which a JSON array cannot hold: use -o ndjson",
        ));
    }
    let style = Style::for_stdout();
    if let Some(dir) = &args.data_dir {
        if args.follow {
            return Err(bad(
                "-f follows a running daemon (--url); offline, run the query again",
            ));
        }
        let mut p = Printer::new(buffered_stdout(), args.output, style);
        return offline::list(dir, &ask, &mut p).and_then(|()| finish(&mut p));
    }
    let Some(url) = args.url.clone().or_else(|| env("STELE_URL")) else {
        return Err(bad(
            "say where the events are: --url URL (or $STELE_URL) for a daemon, or --data-dir DIR",
        ));
    };
    let key = args.key.clone().or_else(|| env("STELE_API_KEY"));
    let client = online::Client::new(&url, key)?;
    if args.follow {
        // Unbuffered lines: each event is out as soon as it is printed, and
        // a Ctrl-C (which takes the stdout lock) never cuts one in half.
        let mut p = Printer::new(std::io::stdout(), args.output, style);
        return follow::follow(&client, &ask, &mut p);
    }
    let mut p = Printer::new(buffered_stdout(), args.output, style);
    client.list(&ask, &mut p).and_then(|()| finish(&mut p))
}

fn buffered_stdout() -> std::io::BufWriter<std::io::Stdout> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout())
}

fn finish<W: std::io::Write>(p: &mut Printer<W>) -> Result<(), Fail> {
    p.finish().or_else(output_error)
}

/// A failed write to standard output: a closed pipe (`stele query | head`)
/// is where the reader stopped, not an error.
pub(crate) fn output_error(e: std::io::Error) -> Result<(), Fail> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    Err(failed(format!("cannot write the output: {e}")))
}

/// The flags as listing parameters, `-p` last, in the order given.
fn ask(args: &QueryArgs) -> Result<Ask, Fail> {
    let flags: [(&str, &Option<String>); 17] = [
        ("q", &args.q),
        ("q", &args.text),
        ("action", &args.action),
        ("actor", &args.actor),
        ("tenant", &args.tenant),
        ("category", &args.category),
        ("source", &args.source),
        ("status", &args.status),
        ("severity", &args.severity),
        ("min_severity", &args.min_severity),
        ("entity_type", &args.entity_type),
        ("entity_id", &args.entity_id),
        ("user_id", &args.user_id),
        ("ip", &args.ip),
        ("since", &args.since),
        ("until", &args.until),
        ("hours", &args.hours),
    ];
    let mut pairs: Vec<(String, String)> = flags
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.as_ref()?.clone())))
        .collect();
    for p in &args.params {
        let Some((name, value)) = p.split_once('=').filter(|(n, _)| !n.is_empty()) else {
            return Err(bad(format!(
                "-p {p:?}: write a parameter as NAME=VALUE, e.g. -p session_id=s-42"
            )));
        };
        // The server's names use underscores; a flag-like spelling is fine.
        let name = name.replace('-', "_");
        if let Some((_, why)) = FLAG_PARAMS.iter().find(|(n, _)| *n == name) {
            return Err(bad(format!("-p {name}: not a filter; {why}")));
        }
        pairs.push((name, value.to_string()));
    }
    let count = args.lines.unwrap_or(if args.follow {
        FOLLOW_EVENTS_DEFAULT
    } else {
        EVENTS_DEFAULT
    });
    if count > QUERY_EVENTS_MAX {
        return Err(bad(format!(
            "-n {count}: at most {QUERY_EVENTS_MAX} events a query; narrow it with filters, \
             or use GET /v1/export for everything"
        )));
    }
    if args.follow && (args.sort.is_some() || args.order.is_some()) {
        return Err(bad(
            "-f follows the log in seq order, oldest first: --sort and --order do not apply",
        ));
    }
    Ok(Ask {
        pairs,
        sort: match args.sort {
            Some(SortArg::Seq) => "seq",
            _ => "time",
        },
        order: match args.order {
            Some(OrderArg::Asc) => "asc",
            _ => "desc",
        },
        count,
    })
}
