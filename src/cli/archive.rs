//! `stele verify s3://…` and `stele restore --from s3://…`: the archive
//! checked and brought back without a daemon.
//!
//! Both download a node's segments and digests into a data directory (a
//! temporary one for `verify`) through `stele::archive::fetch`, then run
//! the same checks as on a local directory; what the archive adds is named
//! by object key: objects altered since upload, checkpoints the archived
//! segments do not hold.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use stele::archive::fetch::{self, Fetched};
use stele::archive::keys::Layout;
use stele::archive::store::Store;
use stele::archive::Location;
use stele::seal::checkpoint::Checkpoint;

/// Where the store is, from the flags and the environment.
pub(crate) struct Access {
    /// `--endpoint` (else `$AWS_ENDPOINT_URL`, else AWS).
    pub endpoint: Option<String>,
}

fn open(url: &str, access: &Access) -> Result<(Store, Location), String> {
    let location = Location::parse(url)?;
    let endpoint = access.endpoint.clone().or_else(|| {
        std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|e| !e.is_empty())
    });
    // A plain-HTTP endpoint named by the operator is taken as meant.
    let http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let store = stele::archive::open_store(&location, endpoint.as_deref(), None, http, None)?;
    Ok((store, location))
}

fn scratch(i: usize) -> PathBuf {
    std::env::temp_dir().join(format!("stele-verify-{}-{i}", std::process::id()))
}

/// `stele verify s3://BUCKET/PREFIX`: every node under the prefix (or the
/// one node it names).
pub(crate) fn verify(
    url: &str,
    access: &Access,
    opts: &stele::verify::Options,
    quiet: bool,
) -> ExitCode {
    let (store, location) = match open(url, access) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stele verify: {e}");
            return ExitCode::from(2);
        }
    };
    let nodes = match fetch::nodes(&store, &location.prefix) {
        Ok(n) if n.is_empty() => {
            eprintln!("stele verify: no node's archive under {url} (no node=NAME/NODE.json)");
            return ExitCode::from(2);
        }
        Ok(n) => n,
        Err(e) => {
            eprintln!("stele verify: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut bad = 0;
    for (i, layout) in nodes.iter().enumerate() {
        let dir = scratch(i);
        let _ = std::fs::remove_dir_all(&dir);
        let shown = format!("s3://{}/{}", store.location().bucket, layout.root());
        let fetched = match fetch::download(&store, layout, &dir) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                eprintln!("stele verify: {shown}: {e}");
                return ExitCode::from(2);
            }
        };
        let found = check_node(&dir, &shown, &fetched, opts, quiet, &mut out);
        let _ = std::fs::remove_dir_all(&dir);
        match found {
            Ok(n) => bad += n,
            Err(e) => {
                eprintln!("stele verify: {shown}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if bad == 0 {
        let _ = writeln!(out, "intact: {} node(s) under {url}", nodes.len());
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(out, "damaged: {bad} problems found under {url}");
        ExitCode::from(1)
    }
}

/// Checks one downloaded node; prints what it finds with `dir` shown as
/// `shown`; returns the number of problems.
fn check_node(
    dir: &Path,
    shown: &str,
    fetched: &Fetched,
    opts: &stele::verify::Options,
    quiet: bool,
    out: &mut impl Write,
) -> std::io::Result<usize> {
    let plain = stele::verify::Options {
        public_keys: opts.public_keys.clone(),
        checkpoints: Vec::new(),
    };
    let mut report = stele::verify::verify_paths_with(&[dir.to_path_buf()], &plain)?;
    let end = report
        .segments
        .last()
        .map_or(0, |s| (s.first_seq + s.count).saturating_sub(1));
    // Checkpoints the archived segments must hold; the newer ones cover
    // the day still open on the node (or days missing from the archive,
    // which the digests' chain then shows).
    let (held, beyond): (Vec<&(String, Checkpoint)>, Vec<_>) = fetched
        .checkpoints
        .iter()
        .partition(|(_, cp)| cp.seq <= end);
    let with = stele::verify::Options {
        public_keys: opts.public_keys.clone(),
        checkpoints: held
            .iter()
            .map(|(k, cp)| (PathBuf::from(k), cp.clone()))
            .collect(),
    };
    let segments = report.segments.clone();
    stele::verify::checkpoints::check_checkpoints(dir, &segments, &with, &mut report);
    let show = |p: &Path| -> String {
        let rel = p.strip_prefix(dir).map(|r| r.display().to_string());
        match rel {
            Ok(r) if !r.is_empty() => format!("{shown}{r}"),
            Ok(_) => shown.to_string(),
            Err(_) => p.display().to_string(),
        }
    };
    if !quiet {
        writeln!(
            out,
            "{shown}: {} segments ({} events), {} digest files, {} checkpoints, {} bytes",
            fetched.segments,
            report.events(),
            fetched.digests,
            fetched.checkpoints.len(),
            fetched.bytes
        )?;
        for (day, _) in &fetched.dropped {
            writeln!(
                out,
                "note: {shown}: day {day} was dropped by retention (recorded)"
            )?;
        }
        if let Some((key, cp)) = beyond.last() {
            writeln!(
                out,
                "note: {key}: seq {} is past the archived segments (they end at seq {end}): \
                 the node's open day, not archived until it is sealed",
                cp.seq
            )?;
        }
    }
    for f in &report.findings {
        let mut line = show(&f.path);
        if let Some(o) = f.offset {
            line.push_str(&format!(": offset {o}"));
        }
        if let Some(s) = f.seq {
            line.push_str(&format!(" (seq {s})"));
        }
        let tag = if f.fatal { "DAMAGED: " } else { "note: " };
        writeln!(out, "{tag}{line}: {}", f.what)?;
    }
    for p in &fetched.problems {
        writeln!(out, "DAMAGED: {p}")?;
    }
    if !quiet {
        for c in &report.checkpoints {
            writeln!(out, "{}", c.replace(&dir.display().to_string(), shown))?;
        }
        for c in &report.digests {
            if let Some((first, last)) = c.days {
                writeln!(
                    out,
                    "digests: {} signed days {first}..={last}; {}",
                    c.digests,
                    if c.keys_given {
                        "signatures checked with the given public key"
                    } else {
                        "signatures NOT checked against a trusted key (pass --public-key)"
                    }
                )?;
            }
        }
    }
    Ok(report.findings.iter().filter(|f| f.fatal).count() + fetched.problems.len())
}

/// How `stele restore` restores.
pub(crate) struct Restore {
    /// `--take-over`: DIR becomes the node's data directory in the claim.
    pub take_over: bool,
    /// `--on-demand`: segments as stubs, read from the archive when needed.
    pub on_demand: bool,
}

/// `stele restore --from s3://… DIR`.
pub(crate) fn restore(
    from: &str,
    node: Option<&str>,
    dir: &Path,
    access: &Access,
    how: Restore,
) -> ExitCode {
    match restore_inner(from, node, dir, access, how) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stele restore: {e}");
            ExitCode::from(2)
        }
    }
}

fn restore_inner(
    from: &str,
    node: Option<&str>,
    dir: &Path,
    access: &Access,
    how: Restore,
) -> Result<ExitCode, String> {
    let started = std::time::Instant::now();
    let (store, location) = open(from, access)?;
    let busy = std::fs::read_dir(dir).map(|mut d| d.next().is_some());
    if busy.unwrap_or(false) {
        return Err(format!(
            "{} is not empty: restore builds a new data directory",
            dir.display()
        ));
    }
    let mut nodes = fetch::nodes(&store, &location.prefix)?;
    if let Some(n) = node {
        nodes.retain(|l| {
            l.root()
                .trim_end_matches('/')
                .ends_with(&format!("node={n}"))
        });
    }
    let layout: Layout = match nodes.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(format!(
                "no node's archive under {from}{}",
                node.map(|n| format!(" named {n}")).unwrap_or_default()
            ))
        }
        many => {
            return Err(format!(
                "{from} holds {} nodes ({}): name one with --node",
                many.len(),
                many.iter()
                    .map(|l| l
                        .root()
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .trim_start_matches("node=")
                        .to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    };
    let fetched = match how.on_demand {
        true => fetch::download_stubs(&store, &layout, dir)?,
        false => fetch::download(&store, &layout, dir)?,
    };
    for p in &fetched.problems {
        eprintln!("stele restore: {p}");
    }
    let report = stele::verify::verify_paths(&[dir.to_path_buf()])
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let end = report
        .segments
        .last()
        .map_or(0, |s| (s.first_seq + s.count).saturating_sub(1));
    // The newest checkpoint the restored log holds becomes checkpoint.json:
    // evidence for the next start, never ahead of the log (a newer one
    // covers the open day the archive does not have).
    if let Some((_, cp)) = fetched
        .checkpoints
        .iter()
        .rev()
        .find(|(_, cp)| cp.seq <= end)
    {
        stele::seal::checkpoint::write_local(dir, cp)?;
    }
    if how.take_over {
        let claim = store
            .get(&layout.key(&stele::archive::keys::Object::Claim))
            .map_err(|e| e.to_string())?;
        let id = serde_json::from_slice::<serde_json::Value>(&claim)
            .ok()
            .and_then(|v| v.get("data_dir_id")?.as_str().map(str::to_string))
            .ok_or("the node's claim names no data directory id")?;
        let path = stele::datadir::DataDir::new(dir).archive_id();
        stele::datadir::write_durably(&path, format!("{id}\n").as_bytes(), 0o644)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "restored {} segments{} ({} events, seqs up to {end}) and {} digest files, {} bytes, \
         from s3://{}/{} into {} in {:.1} s; the indexes are rebuilt at the first start",
        fetched.segments,
        if how.on_demand {
            " as stubs, read from the archive on demand by `stele serve` with this node's \
             [archive]"
        } else {
            ""
        },
        report.events(),
        fetched.digests,
        fetched.bytes,
        location.bucket,
        layout.root(),
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    for f in &report.findings {
        let _ = writeln!(out, "{}{f}", if f.fatal { "DAMAGED: " } else { "note: " });
    }
    let bad = report.findings.iter().filter(|f| f.fatal).count() + fetched.problems.len();
    if bad > 0 {
        let _ = writeln!(out, "damaged: {bad} problems found in what was restored");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `stele verify DATA_DIR --archive s3://…` takes from the archive.
pub(crate) struct Witness {
    /// The newest archived checkpoint, named by its key.
    pub newest_checkpoint: Option<(PathBuf, Checkpoint)>,
    /// Every archived segment's file name.
    segments: Vec<String>,
    /// The days the archive records as dropped by retention.
    dropped: std::collections::BTreeSet<String>,
    /// `s3://BUCKET/ROOT`, for messages.
    shown: String,
}

/// Reads the witness of one node's archive.
pub(crate) fn witness(url: &str, access: &Access) -> Result<Witness, String> {
    use stele::archive::keys::Object;
    let (store, location) = open(url, access)?;
    let layout = match fetch::nodes(&store, &location.prefix)?.as_slice() {
        [one] => one.clone(),
        [] => return Err(format!("no node's archive under {url}")),
        _ => return Err(format!("{url} holds several nodes: name one (…/node=NAME)")),
    };
    let mut w = Witness {
        newest_checkpoint: None,
        segments: Vec::new(),
        dropped: Default::default(),
        shown: format!("s3://{}/{}", location.bucket, layout.root()),
    };
    let mut newest: Option<(u64, String)> = None;
    for l in store.list(layout.root()).map_err(|e| e.to_string())? {
        match layout.parse(&l.key) {
            Some(Object::Segment(id)) => w.segments.push(id.file_name()),
            Some(Object::Dropped(day)) => {
                w.dropped.insert(day.to_string());
            }
            Some(Object::Checkpoint(seq)) if newest.as_ref().is_none_or(|(n, _)| seq > *n) => {
                newest = Some((seq, l.key.clone()));
            }
            _ => {}
        }
    }
    if let Some((_, key)) = newest {
        let bytes = store.get(&key).map_err(|e| e.to_string())?;
        let cp = Checkpoint::decode(String::from_utf8_lossy(&bytes).trim_end())
            .map_err(|e| format!("{key}: {e}"))?;
        let name = PathBuf::from(format!("s3://{}/{key}", location.bucket));
        w.newest_checkpoint = Some((name, cp));
    }
    Ok(w)
}

impl Witness {
    /// Adds to `report` what the archive shows `data_dir` lacks: an
    /// archived segment neither in the directory nor of a day the archive
    /// records as dropped by retention.
    pub(crate) fn check(&self, data_dir: &Path, report: &mut stele::verify::Report) {
        let segments = stele::datadir::DataDir::new(data_dir).segments();
        for name in &self.segments {
            let day = name.split('.').next().unwrap_or("");
            if segments.join(name).exists() || self.dropped.contains(day) {
                continue;
            }
            report.findings.push(stele::verify::Finding {
                path: segments.join(name),
                offset: None,
                seq: None,
                what: format!(
                    "missing: {}segments/{name} is in the archive, which records no retention \
                     drop of {day}: it was removed from this directory",
                    self.shown
                ),
                fatal: true,
            });
        }
    }
}
