//! The `stele` command line.

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use stele::clock::SystemClock;
use stele::event::{self, Event};
use stele::index::{IndexConfig, Indexes};
use stele::log::{Direction, Log, LogConfig, RecoveryMode};

/// mimalloc: the HTTP path allocates many short-lived values across threads,
/// where glibc's malloc spent a fifth of the request CPU (measured with perf
/// under the batch load).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// (default: ./data).
        paths: Vec<PathBuf>,
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
    },
    /// Make a key. By default an API key: prints the key once (Stele keeps
    /// only its hash) and the `[[auth.keys]]` lines to add to the
    /// configuration. `--signing`: the Ed25519 key that signs the daily
    /// digests (`stele serve` reads it from $STELE_SIGNING_KEY_FILE,
    /// $CREDENTIALS_DIRECTORY/signing.key or DATA_DIR/signing.key).
    Keygen {
        /// Make the digest signing key instead of an API key.
        #[arg(long, requires = "out", conflicts_with_all = ["id", "role", "tenant", "rate_per_sec"])]
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
        /// Signing key: where to write the private key (mode 0600; never
        /// overwritten).
        #[arg(long, requires = "signing")]
        out: Option<PathBuf>,
        /// Signing key: also write the public key (hex) here, for auditors.
        #[arg(long, requires = "signing")]
        public_out: Option<PathBuf>,
    },
    /// Append events read as NDJSON from stdin; prints one JSON line per
    /// durable batch with the ids and seqs it acknowledges.
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
    /// Print stored events as NDJSON.
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
        } => return verify(paths, quiet, &public_key, &checkpoint),
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
            ..
        } => return api_keygen(id.unwrap_or_default(), &role, tenant, rate_per_sec),
        Command::Append {
            data_dir,
            batch,
            concurrency,
            segment_bytes_max,
            recovery,
        } => append(data_dir, batch, concurrency, segment_bytes_max, recovery),
        Command::Cat {
            data_dir,
            from,
            reverse,
            limit,
        } => cat(data_dir, from, reverse, limit),
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

fn verify(
    paths: Vec<PathBuf>,
    quiet: bool,
    public_keys: &[String],
    checkpoints: &[PathBuf],
) -> ExitCode {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("data")]
    } else {
        paths
    };
    let mut opts = stele::verify::Options::default();
    for k in public_keys {
        match stele::seal::digest::parse_public_key(k) {
            Ok(key) => opts.public_keys.push(key),
            Err(e) => {
                eprintln!("stele verify: --public-key: {e}");
                return ExitCode::from(2);
            }
        }
    }
    for f in checkpoints {
        match stele::seal::checkpoint::read_file(f) {
            Ok(cps) => opts
                .checkpoints
                .extend(cps.into_iter().map(|cp| (f.clone(), cp))),
            Err(e) => {
                eprintln!("stele verify: --checkpoint: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let report = match stele::verify::verify_paths_with(&paths, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stele verify: cannot read {}: {e}", display_paths(&paths));
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    if !quiet {
        for s in &report.segments {
            let _ = writeln!(
                out,
                "{}: {} events from seq {}, {}, last hash {}",
                s.path.display(),
                s.count,
                s.first_seq,
                if s.sealed { "sealed" } else { "active" },
                s.last_hash
            );
        }
    }
    for f in &report.findings {
        let _ = writeln!(out, "{}{f}", if f.fatal { "DAMAGED: " } else { "note: " });
    }
    for c in report.digests.iter().filter(|_| !quiet) {
        let _ = match c.days {
            None => writeln!(
                out,
                "digests: none in {} (daily digests are off for this log)",
                c.dir.display()
            ),
            Some((first, last)) => writeln!(
                out,
                "digests: {} signed days {first}..={last}, up to seq {}; {}",
                c.digests,
                c.last_seq.unwrap_or(0),
                if c.keys_given {
                    "signatures checked with the given public key"
                } else {
                    "signatures NOT checked against a trusted key (pass --public-key)"
                }
            ),
        };
    }
    match report.checkpoints.as_slice() {
        _ if quiet => {}
        [] => {}
        few @ ([_] | [_, _] | [_, _, _]) => {
            for c in few {
                let _ = writeln!(out, "{c}");
            }
        }
        many => {
            let _ = writeln!(
                out,
                "checkpoints: {} match the log; the last: {}",
                many.len(),
                many[many.len() - 1]
            );
        }
    }
    let bad = report.findings.iter().filter(|f| f.fatal).count();
    if bad == 0 {
        let _ = writeln!(
            out,
            "intact: {} segments, {} events",
            report.segments.len(),
            report.events()
        );
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(out, "damaged: {bad} problems found");
        ExitCode::from(1)
    }
}

fn keygen(out: &std::path::Path, public_out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let public = stele::seal::digest::generate_signing_key(out, public_out)?;
    let hex = stele::seal::digest::public_key_hex(&public);
    println!("wrote a new digest signing key to {}", out.display());
    println!("public key: {hex}");
    if let Some(p) = public_out {
        println!("wrote the public key to {}", p.display());
    }
    println!(
        "stele serve signs daily digests with the key in $STELE_SIGNING_KEY_FILE, \
         $CREDENTIALS_DIRECTORY/signing.key (systemd LoadCredential=) or DATA_DIR/signing.key \
         (restart it to take a new key). Keep the private key out of backups; give auditors \
         the public key: stele verify --public-key {hex} BACKUP_DIR"
    );
    Ok(())
}

/// `stele keygen --id … --role …`: a new API key, printed once.
fn api_keygen(
    id: String,
    roles: &[String],
    tenants: Vec<String>,
    rate_per_sec: Option<u32>,
) -> ExitCode {
    use stele::auth::{AuthConfig, KeyConfig, Role};
    let mut parsed = Vec::new();
    for r in roles {
        match Role::ALL.iter().find(|x| x.as_str() == r) {
            Some(x) => parsed.push(*x),
            None => {
                eprintln!(
                    "stele keygen: unknown role {r:?}: roles are ingest, read, export and admin"
                );
                return ExitCode::from(2);
            }
        }
    }
    let token = match stele::auth::generate_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("stele keygen: cannot read random bytes from /dev/urandom: {e}");
            return ExitCode::from(1);
        }
    };
    let key = KeyConfig {
        id,
        hash: stele::auth::hash_line(&token),
        roles: parsed,
        tenants: if tenants.is_empty() {
            vec!["*".into()]
        } else {
            tenants
        },
        rate_per_sec,
        burst: None,
        streams_max: None,
    };
    // The same checks `stele serve` makes.
    let check = AuthConfig {
        keys: vec![key.clone()],
        ..AuthConfig::default()
    };
    if let Err((_, e)) = check.validate() {
        eprintln!("stele keygen: {}", e.replace("auth.keys[0]", "the key"));
        return ExitCode::from(2);
    }
    #[derive(serde::Serialize)]
    struct Snippet {
        auth: SnippetAuth,
    }
    #[derive(serde::Serialize)]
    struct SnippetAuth {
        keys: Vec<KeyConfig>,
    }
    let snippet = match toml::to_string(&Snippet {
        auth: SnippetAuth { keys: vec![key] },
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stele keygen: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "API key (shown only now: Stele stores only its hash; give it to the client, who sends \
         `Authorization: Bearer <key>`):"
    );
    println!("{token}");
    println!();
    println!(
        "Add these lines to the configuration file, then reload (systemctl reload stele, or \
         SIGHUP):"
    );
    println!();
    print!("{snippet}");
    ExitCode::SUCCESS
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn open_log(data_dir: &std::path::Path, cfg: LogConfig) -> anyhow::Result<Log> {
    let cfg = stele::seal::with_evidence(cfg, data_dir, None);
    Log::open(data_dir, cfg, Arc::new(SystemClock))
        .map_err(|e| anyhow::anyhow!("cannot open the log in {}: {e}", data_dir.display()))
}

fn append(
    data_dir: PathBuf,
    batch: usize,
    concurrency: usize,
    segment_bytes_max: Option<u64>,
    recovery: RecoveryMode,
) -> anyhow::Result<()> {
    anyhow::ensure!(batch >= 1, "--batch must be at least 1");
    anyhow::ensure!(
        (1..=1024).contains(&concurrency),
        "--concurrency must be between 1 and 1024"
    );
    let mut cfg = LogConfig {
        recovery,
        ..LogConfig::default()
    };
    if let Some(s) = segment_bytes_max {
        cfg.segment_bytes_max = s;
    }
    let log = open_log(&data_dir, cfg)?;
    let input = Mutex::new((0usize, std::io::stdin()));
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                if let Err(e) = append_worker(&log, &input, batch) {
                    failed.lock().expect("no panics").get_or_insert(e);
                }
            });
        }
    });
    match failed.into_inner().expect("no panics") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn append_worker(
    log: &Log,
    input: &Mutex<(usize, std::io::Stdin)>,
    batch: usize,
) -> anyhow::Result<()> {
    let mut line = String::new();
    loop {
        let mut events: Vec<Event> = Vec::with_capacity(batch);
        {
            let mut guard = input
                .lock()
                .map_err(|_| anyhow::anyhow!("input lock poisoned"))?;
            let (lines_read, stdin) = &mut *guard;
            while events.len() < batch {
                line.clear();
                if stdin.read_line(&mut line)? == 0 {
                    break;
                }
                *lines_read += 1;
                let n = *lines_read - 1;
                if line.trim().is_empty() {
                    continue;
                }
                let value = event::parse_json(line.as_bytes())
                    .map_err(|e| anyhow::anyhow!("line {}: not JSON: {e}", n + 1))?;
                let ev = event::parse_event(&value, || uuid::Uuid::now_v7().to_string()).map_err(
                    |errs| {
                        let msgs: Vec<String> = errs
                            .iter()
                            .map(|e| format!("{}: {}", e.field, e.message))
                            .collect();
                        anyhow::anyhow!("line {}: invalid event: {}", n + 1, msgs.join("; "))
                    },
                )?;
                events.push(ev);
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let ack = log.append(&events, &event::Provenance::cli())?;
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let ack_line = serde_json::json!({
            "first_seq": ack.first_seq,
            "count": ack.count,
            "segment": ack.segment.file_name(),
            "last_hash": stele::log::format::hash_hex(&ack.last_hash),
            "ids": ids,
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{ack_line}")?;
        out.flush()?;
    }
}

fn cat(
    data_dir: PathBuf,
    from: Option<u64>,
    reverse: bool,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    let log = open_log(&data_dir, LogConfig::default())?;
    let iter = if reverse {
        log.range(..=from.unwrap_or(u64::MAX), Direction::Backward)
    } else {
        log.range(from.unwrap_or(0).., Direction::Forward)
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for ev in iter.take(limit.unwrap_or(usize::MAX)) {
        serde_json::to_writer(&mut out, &ev?)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn catch_up(data_dir: &std::path::Path, log: &Arc<Log>) -> anyhow::Result<Indexes> {
    let idx = Indexes::open(data_dir, log.clone(), IndexConfig::default())
        .map_err(|e| anyhow::anyhow!("cannot open the indexes in {}: {e}", data_dir.display()))?;
    let target = log.last_seq();
    while !idx.wait_indexed(target, std::time::Duration::from_secs(1)) {
        if let Some(f) = idx.failure() {
            anyhow::bail!("indexing failed: {f}");
        }
    }
    Ok(idx)
}

fn sign_days(
    data_dir: &std::path::Path,
    files: &[PathBuf],
    through: Option<&str>,
    head: bool,
) -> ExitCode {
    let how = match through {
        _ if head => stele::seal::Vouch::Head,
        Some(day) => match stele::seal::digest::parse_day(day) {
            Some(d) => stele::seal::Vouch::Operator { through: d },
            None => {
                eprintln!("stele sign-days: --vouch-through {day:?} is not a YYYY-MM-DD day");
                return ExitCode::from(2);
            }
        },
        None => {
            let mut all = Vec::new();
            for f in files {
                match stele::seal::checkpoint::read_file(f) {
                    Ok(cps) => all.extend(cps),
                    Err(e) => {
                        eprintln!("stele sign-days: --checkpoint: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            stele::seal::Vouch::Checkpoints(all)
        }
    };
    let key = match stele::seal::digest::load_signing_key(data_dir) {
        Ok(Some(k)) => k,
        Ok(None) => {
            eprintln!(
                "stele sign-days: no signing key ($STELE_SIGNING_KEY_FILE, \
                 $CREDENTIALS_DIRECTORY/signing.key or DATA_DIR/signing.key)"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("stele sign-days: {e}");
            return ExitCode::from(2);
        }
    };
    let log = match open_log(data_dir, LogConfig::default()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("stele sign-days: {e:#} (stop the daemon first)");
            return ExitCode::from(2);
        }
    };
    let now = chrono::Utc::now().timestamp_micros();
    match stele::seal::sign_days(data_dir, &log, &key, now, how) {
        Ok(run) => {
            for p in &run.written {
                println!("signed {}", p.display());
            }
            for (day, why) in &run.unsigned {
                println!("still unsigned: {day}: {why}");
            }
            if run.unsigned.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("stele sign-days: {e}");
            ExitCode::from(1)
        }
    }
}

fn reindex(data_dir: PathBuf) -> anyhow::Result<()> {
    let log = Arc::new(open_log(&data_dir, LogConfig::default())?);
    Indexes::delete(&data_dir)?;
    let started = std::time::Instant::now();
    let idx = catch_up(&data_dir, &log)?;
    idx.close();
    let secs = started.elapsed().as_secs_f64();
    let n = log.last_seq() + 1 - log.first_seq();
    println!(
        "reindexed {n} events in {secs:.1} s ({:.0} events/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn check(data_dir: PathBuf) -> ExitCode {
    match check_inner(&data_dir) {
        Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(problems) => {
            for p in &problems {
                println!("DIFFERENT: {p}");
            }
            println!(
                "the indexes differ from the log: {} problems; run `stele reindex`",
                problems.len()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("stele check: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check_inner(data_dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let log = Arc::new(open_log(data_dir, LogConfig::default())?);
    let idx = catch_up(data_dir, &log)?;
    for r in &idx.open_report().rebuilt {
        println!("note: rebuilt at open: {r}");
    }
    let report = idx.check(&log)?;
    println!(
        "checked {} events: full-text {} documents, key index {} ids",
        report.events, report.text_documents, report.key_ids
    );
    idx.close();
    Ok(report.problems)
}

/// The process environment, as `Config::load` reads it.
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

fn serve(config: Option<&std::path::Path>, flags: &stele::config::Flags) -> anyhow::Result<()> {
    use stele::config::Config;
    let path = stele::config::config_path(config, process_env);
    let mut cfg = Config::load(path.as_deref(), process_env)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    cfg.apply_flags(flags);
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let overrides: Vec<String> = cfg
        .env_overrides()
        .iter()
        .map(|(key, var)| format!("{key} from {var}"))
        .collect();
    match &path {
        Some(p) => tracing::info!("Configuration: {}.", p.display()),
        None => tracing::info!("Configuration: no file, embedded defaults."),
    }
    if !overrides.is_empty() {
        tracing::info!("Environment overrides: {}.", overrides.join(", "));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stele-http")
        .build()?;
    // SIGHUP: the same file, environment and flags, read again.
    let reload: stele::config::Reloader = {
        let (path, flags) = (path.clone(), flags.clone());
        std::sync::Arc::new(move || {
            let mut cfg = Config::load(path.as_deref(), process_env).map_err(|e| e.to_string())?;
            cfg.apply_flags(&flags);
            cfg.validate().map_err(|e| e.to_string())?;
            Ok(stele::config::Reloaded {
                limits: cfg.limits,
                retention: cfg.retention,
                auth: cfg.auth,
                tls: cfg.tls,
            })
        })
    };
    rt.block_on(stele::daemon::run(cfg.serve_config(Some(reload))))
}

fn check_config(path: &std::path::Path, print: bool) -> ExitCode {
    let cfg = match stele::config::Config::load(Some(path), process_env) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("stele check-config: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    for (key, var) in cfg.env_overrides() {
        eprintln!("note: {key} is set by the environment ({var})");
    }
    // The certificate and key must load as `stele serve` loads them.
    if let Some(tls) = &cfg.tls {
        if let Err(e) = stele::tls::load(tls) {
            eprintln!("stele check-config: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if !print {
        println!("{}: valid", path.display());
        return ExitCode::SUCCESS;
    }
    match cfg.to_toml() {
        Ok(text) => {
            eprintln!("{}: valid", path.display());
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stele check-config: cannot print the configuration: {e}");
            ExitCode::from(1)
        }
    }
}

fn backup(data_dir: &std::path::Path, dest: &std::path::Path, skip_verify: bool) -> ExitCode {
    use stele::backup::Copied;
    let started = std::time::Instant::now();
    let report = match stele::backup::backup(data_dir, dest) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stele backup: {e}");
            return ExitCode::from(2);
        }
    };
    for e in &report.entries {
        let what = match &e.copied {
            Copied::Sealed => "sealed, copied".to_string(),
            Copied::Unchanged => "sealed, already in the backup".to_string(),
            Copied::ActivePrefix { count } => format!("active, first {count} records copied"),
        };
        println!("{}  {} bytes  sha256 {}  {what}", e.name, e.bytes, e.sha256);
    }
    println!(
        "backed up {} segments to {} ({} bytes written) in {:.2} s",
        report.entries.len(),
        dest.display(),
        report.bytes_written(),
        started.elapsed().as_secs_f64()
    );
    if skip_verify {
        return ExitCode::SUCCESS;
    }
    match stele::verify::verify_paths(&[dest.to_path_buf()]) {
        Ok(r) if r.intact() => {
            println!("the copy verifies: {} events", r.events());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            for f in r.findings.iter().filter(|f| f.fatal) {
                eprintln!(
                    "stele backup: the copy does not verify: {}: {}",
                    f.path.display(),
                    f.what
                );
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("stele backup: cannot verify the copy: {e}");
            ExitCode::from(2)
        }
    }
}

fn retention(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
    dry_run: bool,
    json: bool,
) -> ExitCode {
    use stele::retention;
    let path = stele::config::config_path(config, process_env);
    let cfg = match stele::config::Config::load(path.as_deref(), process_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stele retention: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let data_dir = data_dir.unwrap_or(cfg.data_dir.clone());
    let holds: Vec<retention::Hold> = match retention::load_holds(&data_dir) {
        Ok(api) => cfg.retention.holds.iter().cloned().chain(api).collect(),
        Err(e) => {
            eprintln!("stele retention: {e}");
            return ExitCode::from(2);
        }
    };
    let today = chrono::Utc::now().date_naive();
    let planned = retention::segments_on_disk(&data_dir).and_then(|segs| {
        let mut p = retention::plan(&segs, today, &cfg.retention, &holds, |s| {
            retention::tenants_in(&s.path)
        })?;
        retention::keep_unsigned(&mut p, stele::seal::digest::digested_through(&data_dir));
        Ok(p)
    });
    let plan = match planned {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stele retention: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "today": today.to_string(), "days": plan })
        );
    } else {
        for d in &plan {
            println!(
                "{}  {:>5}  {} events (seqs {}..={}) in {} segments: {}",
                d.day,
                if d.drop { "DROP" } else { "keep" },
                d.events,
                d.first_seq,
                d.last_seq,
                d.segments.len(),
                d.reason
            );
        }
    }
    let doomed = plan.iter().filter(|d| d.drop).count();
    if dry_run || doomed == 0 {
        if !json {
            println!(
                "{doomed} of {} days would be dropped{}",
                plan.len(),
                if dry_run { " (dry run)" } else { "" }
            );
        }
        return ExitCode::SUCCESS;
    }
    // Dropping needs the log to ourselves: the daemon does it on its own.
    let log_cfg =
        stele::seal::with_evidence(cfg.log_config(), &data_dir, cfg.seal.witness_dir.as_deref());
    let log = match Log::open(&data_dir, log_cfg, Arc::new(SystemClock)) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!(
                "stele retention: {e}\n(while `stele serve` runs it applies retention itself every \
                 retention.interval_secs; use --dry-run or GET /v1/retention to see the plan)"
            );
            return ExitCode::from(2);
        }
    };
    let result = Indexes::open(&data_dir, log.clone(), cfg.index_config())
        .map_err(|e| e.to_string())
        .and_then(|idx| {
            let now = stele::event::format_micros(chrono::Utc::now().timestamp_micros());
            let done = retention::apply(&data_dir, &log, &idx, &plan, &now)?;
            let first = log.first_seq();
            if !idx.wait_dropped(first, std::time::Duration::from_secs(600)) {
                return Err("the indexes did not forget the dropped days in time".into());
            }
            while idx.cleanup_pending() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            idx.close();
            Ok(done)
        });
    match result {
        Ok(done) => {
            println!(
                "dropped {} days ({} events); the log now starts at seq {}",
                done.len(),
                done.iter().map(|d| d.events).sum::<u64>(),
                log.first_seq()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stele retention: {e}");
            ExitCode::from(1)
        }
    }
}
