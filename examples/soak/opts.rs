//! The command line: the options ([`Opts`]), their checks (a bad option exits 2), and
//! the preflight that refuses a run before it starts (no `stele` binary, not enough
//! disk for the estimated data).

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Parser;

use crate::{DAEMON_DISK_RESERVE, DISK_BYTES_PER_EVENT, MINUTES_MAX, MINUTES_MIN, RSS_MAX_MIB};

#[derive(Parser, Debug, Clone)]
#[command(about = "Soak test for `stele serve` (see the doc comment of examples/soak/main.rs)")]
pub struct Opts {
    /// How long the load runs, in minutes (1 to 1440).
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Seconds between kill -9s of the daemon (each interval ±25 %); 0: never kill.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub kill_every_secs: u64,
    /// The stele binary (default: <target>/release/stele, next to this example's directory).
    #[arg(long, value_name = "PATH")]
    pub stele: Option<PathBuf>,
    /// Directory under which the run gets a fresh directory (data, configuration, log).
    #[arg(long, value_name = "DIR", default_value = "target/soak")]
    pub data_parent: PathBuf,
    /// Clients posting NDJSON batches.
    #[arg(long, default_value_t = 2)]
    pub batch_clients: usize,
    /// Events per batch (2 to 10,000).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Events per second posted in batches, over all batch clients.
    #[arg(long, default_value_t = 800.0)]
    pub batch_rate: f64,
    /// Clients posting one JSON event per request.
    #[arg(long, default_value_t = 2)]
    pub single_clients: usize,
    /// Requests per second of single events, over all single clients.
    #[arg(long, default_value_t = 100.0)]
    pub single_rate: f64,
    /// Approximate encoded size of each event in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 500)]
    pub event_bytes: usize,
    /// Query clients.
    #[arg(long, default_value_t = 2)]
    pub query_clients: usize,
    /// Pause between two queries of one client (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub query_pause_ms: u64,
    /// SSE clients on /v1/stream (the first unfiltered, the others by tenant).
    #[arg(long, default_value_t = 2)]
    pub stream_clients: usize,
    /// The daemon's `[log] segment_bytes_max`: segments seal at this size.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub segment_bytes: u64,
    /// Past UTC days seeded before the first start, each held, lifted during the run.
    #[arg(long, default_value_t = 6)]
    pub seed_days: u32,
    /// Events in each seeded day.
    #[arg(long, default_value_t = 5000)]
    pub seed_events_per_day: u64,
    /// The daemon's `[retention] interval_secs`.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub retention_interval_secs: u64,
    /// The bound on the daemon's maximum VmRSS, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = RSS_MAX_MIB)]
    pub rss_max_mib: u64,
    /// Seed of the event generators and of the kill jitter.
    #[arg(long, default_value_t = 0x50a6)]
    pub seed: u64,
    /// Keep the run's directory after a passing run too.
    #[arg(long)]
    pub keep: bool,
    /// Print the summary as one JSON object on stdout (the text then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Echo the daemon's log to stderr.
    #[arg(long)]
    pub daemon_log: bool,
}

pub fn check_opts(o: &Opts) -> Result<()> {
    if !(MINUTES_MIN..=MINUTES_MAX).contains(&o.minutes) {
        bail!(
            "--minutes {} is out of range: a soak runs from {MINUTES_MIN} minute to \
             {MINUTES_MAX} minutes (24 h)",
            o.minutes
        );
    }
    if o.kill_every_secs != 0 && o.kill_every_secs < 5 {
        bail!("--kill-every-secs must be 0 (never) or at least 5");
    }
    if !(2..=10_000).contains(&o.batch) {
        bail!("--batch must be from 2 to 10000 (the daemon's limit per request)");
    }
    for (name, rate, clients) in [
        ("--batch-rate", o.batch_rate, o.batch_clients),
        ("--single-rate", o.single_rate, o.single_clients),
    ] {
        if clients > 0 && !(rate.is_finite() && rate > 0.0) {
            bail!("{name} must be a positive number");
        }
    }
    if o.batch_clients + o.single_clients == 0 {
        bail!("at least one ingest client is needed (--batch-clients, --single-clients)");
    }
    if o.seed_days == 0 || o.seed_days > 60 {
        bail!("--seed-days must be from 1 to 60");
    }
    if o.seed_events_per_day == 0 {
        bail!("--seed-events-per-day must be at least 1");
    }
    if o.retention_interval_secs == 0 {
        bail!("--retention-interval-secs must be at least 1");
    }
    if o.segment_bytes < 4096 {
        bail!("--segment-bytes must be at least 4096 (the daemon's minimum)");
    }
    Ok(())
}

/// Events per second the ingest clients offer.
fn ingest_rate(o: &Opts) -> f64 {
    let batch = if o.batch_clients > 0 {
        o.batch_rate
    } else {
        0.0
    };
    let single = if o.single_clients > 0 {
        o.single_rate
    } else {
        0.0
    };
    batch + single
}

/// Disk the run needs: every event offered, seeded ones included, at
/// [`DISK_BYTES_PER_EVENT`] (scaled to `--event-bytes`), plus the daemon's reserve.
fn disk_needed(o: &Opts) -> u64 {
    let events = ingest_rate(o) * (o.minutes * 60) as f64
        + (u64::from(o.seed_days) * o.seed_events_per_day) as f64;
    let per_event = DISK_BYTES_PER_EVENT as f64 * o.event_bytes.max(200) as f64 / 500.0;
    (events * per_event) as u64 + DAEMON_DISK_RESERVE
}

fn default_stele() -> PathBuf {
    // <target>/release/examples/soak → <target>/release/stele
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("stele")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("target/release/stele"))
}

/// Finds the binary and checks the disk; an error refuses the run (exit 2).
pub fn preflight(o: &Opts) -> Result<PathBuf> {
    let stele = o.stele.clone().unwrap_or_else(default_stele);
    if !stele.is_file() {
        bail!(
            "the stele binary {} does not exist: build it with `cargo build --release --bin \
             stele` (or pass --stele PATH)",
            stele.display()
        );
    }
    std::fs::create_dir_all(&o.data_parent)
        .with_context(|| format!("cannot create {}", o.data_parent.display()))?;
    let need = disk_needed(o);
    if let Some(free) = stele::datadir::free_bytes(&o.data_parent) {
        if free < need {
            bail!(
                "this soak needs about {:.1} GB in {} ({:.0} events/s for {} minutes at ≈{} \
                 bytes of segments and indexes each, plus the daemon's 256 MiB disk reserve); \
                 only {:.1} GB are free: lower --batch-rate/--single-rate or --minutes, or \
                 free space",
                need as f64 / 1e9,
                o.data_parent.display(),
                ingest_rate(o),
                o.minutes,
                DISK_BYTES_PER_EVENT,
                free as f64 / 1e9
            );
        }
    }
    Ok(stele)
}
