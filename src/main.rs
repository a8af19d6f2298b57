//! The `stele` command line: the clap definitions and the dispatch. Each
//! subcommand is implemented in `src/cli/` (modules of this binary only).

use clap::{Parser, Subcommand};
use cli::backup::backup;
use cli::index::{check, reindex};
use cli::keys::{api_keygen, keygen, sign_days};
use cli::log::{append, cat};
use cli::retention::retention;
use cli::serve::{check_config, serve};
use cli::verify::verify;
use std::path::PathBuf;
use std::process::ExitCode;
use stele::log::RecoveryMode;

mod cli;

/// mimalloc: the HTTP path allocates many short-lived values across threads,
/// where glibc's malloc spent a fifth of the request CPU (measured with perf
/// under the batch load).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before returning it to the kernel
/// (its default is 1 s in mimalloc 3; `MIMALLOC_PURGE_DELAY` still wins).
/// Returned memory comes back as fresh pages the kernel must zero: under a
/// batch load that was 4 % of the daemon's samples (`clear_page_erms` under
/// huge-page faults), and 10 s cut the CPU per event by ≈ 5 % (README,
/// "Performance"). Idle memory still goes back, 10 s later.
const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (the 16th option;
/// libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called first thing in `main`, before any other thread
        // exists (mimalloc's options are not thread safe to set).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS) };
    }
}

#[derive(Parser)]
#[command(name = "stele", version, about = "Stele, an audit-log daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the HTTP/JSON API on 127.0.0.1:7070 by default, data in
    /// $STATE_DIRECTORY (under systemd) or ./data. No configuration needed.
    /// Settings, lowest precedence first: embedded defaults, the --config
    /// file, STELE_* variables, flags.
    Serve {
        /// The configuration file (TOML; see config/stele.toml). Default:
        /// $STELE_CONFIG, else none (embedded defaults).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: stele::config::Flags,
    },
    /// Check a configuration file (with the STELE_* variables set now)
    /// without starting: prints "PATH: valid" and exits 0, or prints what is
    /// wrong and exits 1; exit 2 when the file cannot be read.
    CheckConfig {
        /// The configuration file.
        path: PathBuf,
        /// Print the effective configuration (every key) as TOML on stdout;
        /// "PATH: valid" then goes to stderr.
        #[arg(long)]
        print: bool,
    },
    /// Say, day by day, what retention drops and why (`--dry-run`, also while
    /// the daemon runs), or drop it now with the daemon stopped.
    Retention {
        /// Only print the plan; drop nothing.
        #[arg(long)]
        dry_run: bool,
        /// The configuration file (its `[retention]` and `data_dir`);
        /// default: $STELE_CONFIG, else embedded defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The data directory (overrides the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check segment files offline: every CRC, the hash chain, seq continuity,
    /// headers and footers. Exit 0 when intact, 1 when damaged, 2 when a path
    /// cannot be read.
    Verify {
        /// Data directories, segments directories or segment files
        /// (default: ./data); or one archive, `s3://BUCKET/PREFIX` (every
        /// node under it) or `s3://BUCKET/PREFIX/node=NAME`, checked without
        /// a daemon (keys from $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY or
        /// $CREDENTIALS_DIRECTORY).
        paths: Vec<PathBuf>,
        /// The S3 endpoint of an `s3://` archive (default: $AWS_ENDPOINT_URL, else AWS).
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Print only problems.
        #[arg(long, short)]
        quiet: bool,
        /// Check the signed daily digests with this Ed25519 public key (64 hex
        /// digits, or a file holding them); repeat it for rotated keys. Without
        /// it, digests are checked only structurally.
        #[arg(long = "public-key", value_name = "HEX_OR_FILE")]
        public_key: Vec<String>,
        /// A checkpoint saved off the box (a witness's `.checkpoints` file,
        /// a saved `GET /v1/checkpoint` answer, a copy of checkpoint.json):
        /// the log must hold its seq with exactly its chain hash. Repeatable;
        /// every line of each file is checked.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// The node's archive (`s3://BUCKET/PREFIX/node=NAME`, or the prefix
        /// when it holds one node) as a witness of one data directory: the
        /// log must hold the newest archived checkpoint, and every archived
        /// segment must be in the directory unless the archive records its
        /// day as dropped by retention.
        #[arg(long = "archive", value_name = "S3_URL")]
        archive: Option<String>,
    },
    /// Make a key. By default an API key: prints the key once (Stele keeps
    /// only its hash) and the `[[auth.keys]]` lines to add to the
    /// configuration. `--signing`: the Ed25519 key that signs the daily
    /// digests (`stele serve` reads it from $STELE_SIGNING_KEY_FILE,
    /// $CREDENTIALS_DIRECTORY/signing.key or DATA_DIR/signing.key).
    Keygen {
        /// Make the digest signing key instead of an API key.
        #[arg(long, requires = "out", conflicts_with_all = ["id", "role", "tenant", "rate_per_sec", "rate"])]
        signing: bool,
        /// The API key's id (what audit events and logs show).
        #[arg(long, required_unless_present = "signing")]
        id: Option<String>,
        /// A role of the API key: ingest, read, export or admin (repeatable).
        #[arg(
            long = "role",
            value_name = "ROLE",
            required_unless_present = "signing"
        )]
        role: Vec<String>,
        /// A tenant the API key may write and read (repeatable; default: all).
        #[arg(long = "tenant", value_name = "TENANT")]
        tenant: Vec<String>,
        /// The API key's own rate limit (requests a second; default: its
        /// roles' limits).
        #[arg(long)]
        rate_per_sec: Option<u32>,
        /// The API key's own rate limit written N/s, N/min or N/h (e.g.
        /// 200/min; instead of --rate-per-sec).
        #[arg(long, conflicts_with = "rate_per_sec", value_parser = stele::auth::Rate::parse)]
        rate: Option<stele::auth::Rate>,
        /// Signing key: where to write the private key (mode 0600; never
        /// overwritten).
        #[arg(long, requires = "signing")]
        out: Option<PathBuf>,
        /// Signing key: also write the public key (hex) here, for auditors.
        #[arg(long, requires = "signing")]
        public_out: Option<PathBuf>,
    },
    /// Append events read as NDJSON from stdin; prints one JSON line per
    /// durable batch with the ids and seqs it acknowledges, and the lines
    /// whose id was already stored with the same content (not stored
    /// again). An id stored with other content stops the run (exit 2).
    Append {
        /// The data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Events per append request.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Appending threads (each waits for its own durability).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Seal a segment once it reaches this many bytes.
        #[arg(long)]
        segment_bytes_max: Option<u64>,
        /// What to do with damage found at open: strict or salvage.
        #[arg(long, default_value = "strict")]
        recovery: RecoveryMode,
        /// The configuration file whose `[ingest.field_map]` renames the
        /// events' fields (as `stele serve` does). Default: $STELE_CONFIG,
        /// else none (no mapping).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Delete and rebuild both indexes from the segments.
    Reindex {
        /// The data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Sign the closed days that no running Stele witnessed (`/readyz` lists
    /// them as unsigned: digests deleted, data written before the key
    /// existed, the records a crashed process wrote after its last
    /// checkpoint). The days are checked first: against checkpoints saved off
    /// the box (--checkpoint), or on your word after you checked them
    /// yourself (--vouch-through DAY; every digest so signed says so). Run it
    /// with the daemon stopped.
    SignDays {
        /// The data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Checkpoints signed by the signing key (a witness's files, a saved
        /// GET /v1/checkpoint): the newest one the log holds must match it.
        #[arg(
            long = "checkpoint",
            value_name = "FILE",
            required_unless_present_any = ["vouch_through", "vouch_head"]
        )]
        checkpoint: Vec<PathBuf>,
        /// Sign every closed day up to this UTC day on your word.
        #[arg(long, value_name = "YYYY-MM-DD", conflicts_with = "checkpoint")]
        vouch_through: Option<String>,
        /// Vouch for everything up to the log's head: sign every closed day
        /// and write a checkpoint of the head, so checkpoints resume.
        #[arg(long, conflicts_with_all = ["checkpoint", "vouch_through"])]
        vouch_head: bool,
    },
    /// Compare the indexes with the log (after catching up): every seq exactly
    /// once, no extra documents, every id at its seq. Exit 1 on any difference.
    Check {
        /// The data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Copy the log into DEST while the daemon runs: every sealed segment
    /// (skipped when DEST already has it byte for byte), the valid prefix of
    /// the active one, and cursor.key; then verify the copy. Restore by
    /// copying DEST into an empty data directory.
    Backup {
        /// Where to copy (created if needed; a previous backup is updated).
        dest: PathBuf,
        /// The data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Do not run `stele verify` on the copy afterwards.
        #[arg(long)]
        skip_verify: bool,
    },
    /// Build a data directory from an archive (`[archive]` of some node):
    /// every archived segment and digest, checked against the SHA-256
    /// recorded at upload, then verified; the indexes are rebuilt when
    /// `stele serve` first starts on DIR.
    Restore {
        /// `s3://BUCKET/PREFIX` (with one node under it) or
        /// `s3://BUCKET/PREFIX/node=NAME`.
        #[arg(long, value_name = "S3_URL")]
        from: String,
        /// Which node, when the prefix holds several.
        #[arg(long)]
        node: Option<String>,
        /// The S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS).
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Make DIR the node's data directory in the archive (its claim's
        /// id), so `stele serve` on DIR goes on archiving to the same
        /// prefix. Only when the old node is gone for good.
        #[arg(long)]
        take_over: bool,
        /// Restore each segment as a stub (its header and footer; the local
        /// tier's format) instead of whole: its records stay in the archive
        /// and `stele serve` with the node's [archive] reads them on demand
        /// (the first start reads them all once to rebuild the indexes,
        /// through the bounded cache). Needs --take-over.
        #[arg(long, requires = "take_over")]
        on_demand: bool,
        /// The new data directory (absent or empty).
        dir: PathBuf,
    },
    /// List events, journalctl-style: from a running daemon (--url or
    /// $STELE_URL, key from --key or $STELE_API_KEY) or offline from a data
    /// directory or a backup (--data-dir, also while the daemon runs), with
    /// the listing's filters, as a table, JSON, NDJSON or CSV; -f follows new
    /// events. Exit 0 done, 2 a bad request, 1 anything else.
    Query(Box<cli::query::QueryArgs>),
    /// Print stored events as NDJSON. Reads the log without its lock and
    /// without repairing it, so it works while the daemon runs.
    Cat {
        /// The data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// First seq to print (last, with --reverse).
        #[arg(long)]
        from: Option<u64>,
        /// Newest first.
        #[arg(long)]
        reverse: bool,
        /// Print at most this many events.
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// Whether log lines carry ANSI colour: only on a terminal (never in a file,
/// a pipe or journald), and not when `NO_COLOR` is set to anything non-empty
/// (<https://no-color.org>).
fn colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tune_allocator();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, flags } => serve(config.as_deref(), &flags),
        Command::CheckConfig { path, print } => return check_config(&path, print),
        Command::Retention {
            dry_run,
            config,
            data_dir,
            json,
        } => return retention(config.as_deref(), data_dir, dry_run, json),
        Command::Verify {
            paths,
            quiet,
            public_key,
            checkpoint,
            archive,
            endpoint,
        } => {
            let witness = archive.map(|url| {
                let access = cli::archive::Access {
                    endpoint: endpoint.clone(),
                };
                (url, access)
            });
            return verify(paths, quiet, &public_key, &checkpoint, endpoint, witness);
        }
        Command::Restore {
            from,
            node,
            endpoint,
            take_over,
            on_demand,
            dir,
        } => {
            let access = cli::archive::Access { endpoint };
            let how = cli::archive::Restore {
                take_over,
                on_demand,
            };
            return cli::archive::restore(&from, node.as_deref(), &dir, &access, how);
        }
        Command::Keygen {
            signing: true,
            out: Some(out),
            public_out,
            ..
        } => keygen(&out, public_out.as_deref()),
        Command::Keygen {
            id,
            role,
            tenant,
            rate_per_sec,
            rate,
            ..
        } => return api_keygen(id.unwrap_or_default(), &role, tenant, rate_per_sec, rate),
        Command::Append {
            data_dir,
            batch,
            concurrency,
            segment_bytes_max,
            recovery,
            config,
        } => append(
            data_dir,
            batch,
            concurrency,
            segment_bytes_max,
            recovery,
            config.as_deref(),
        ),
        Command::Cat {
            data_dir,
            from,
            reverse,
            limit,
        } => cat(data_dir, from, reverse, limit),
        Command::Query(args) => return cli::query::query(*args, cli::process_env),
        Command::Reindex { data_dir } => reindex(data_dir),
        Command::Check { data_dir } => return check(data_dir),
        Command::SignDays {
            data_dir,
            checkpoint,
            vouch_through,
            vouch_head,
        } => return sign_days(&data_dir, &checkpoint, vouch_through.as_deref(), vouch_head),
        Command::Backup {
            dest,
            data_dir,
            skip_verify,
        } => return backup(&data_dir, &dest, skip_verify),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stele: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
        assert!(!colour(false, Some("1".into())));
    }
}
