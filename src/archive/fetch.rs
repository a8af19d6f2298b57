//! Reading the archive back: a node's objects into a data directory, for
//! `stele restore` and for `stele verify s3://…` (which then runs the same
//! checks as on a local directory).
//!
//! Owns the mapping of objects to files (the reverse of the uploader's) and
//! the check of each object against the SHA-256 recorded when it was
//! uploaded. Never writes the archive.

use super::keys::{self, Layout, Object};
use super::store::{sha256_hex, Store};
use crate::datadir::DataDir;
use crate::seal::checkpoint::Checkpoint;
use std::path::Path;

/// What a download brought.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Segments written.
    pub segments: u64,
    /// Digest files written.
    pub digests: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Every checkpoint in the archive, oldest first, with its key.
    pub checkpoints: Vec<(String, Checkpoint)>,
    /// Days retention dropped (recorded in the archive), with the record;
    /// written to the directory's `retention.log` too.
    pub dropped: Vec<(String, String)>,
    /// Objects that are not what was uploaded, or cannot be read, in
    /// sentences naming the key.
    pub problems: Vec<String>,
}

/// The node roots under `prefix`: the prefix itself when it is one node's
/// root (`…/node=NAME`), else every claimed `node=…/` below it.
///
/// # Errors
/// The archive cannot be listed.
pub fn nodes(store: &Store, prefix: &str) -> Result<Vec<Layout>, String> {
    let prefix = prefix.trim_matches('/');
    let last = prefix.rsplit('/').next().unwrap_or("");
    if last.starts_with("node=") {
        return Ok(vec![Layout::at(prefix)]);
    }
    let list = store
        .list(&format!("{prefix}/"))
        .map_err(|e| e.to_string())?;
    Ok(
        keys::node_roots(prefix, list.iter().map(|l| l.key.as_str()))
            .iter()
            .map(|r| Layout::at(r))
            .collect(),
    )
}

/// Downloads `layout`'s segments and digests into the data directory `dir`
/// (created; its `segments/` and `digests/` must not hold files already),
/// checking each against its recorded SHA-256, and reads the checkpoints
/// and retention records.
///
/// # Errors
/// The archive cannot be listed, or `dir` cannot be written.
pub fn download(store: &Store, layout: &Layout, dir: &Path) -> Result<Fetched, String> {
    download_as(store, layout, dir, false)
}

/// [`download`], but each segment as a stub (its header and footer, read
/// with two range requests) listed in `evicted.json` with the SHA-256
/// recorded at upload: a data directory whose records stay in the archive,
/// read on demand by a daemon archiving to the same node.
///
/// # Errors
/// As [`download`]; a segment without a recorded SHA-256 cannot be a stub.
pub fn download_stubs(store: &Store, layout: &Layout, dir: &Path) -> Result<Fetched, String> {
    download_as(store, layout, dir, true)
}

fn download_as(store: &Store, layout: &Layout, dir: &Path, stubs: bool) -> Result<Fetched, String> {
    let mut evicted = crate::log::evicted::Evicted::default();
    let data = DataDir::new(dir);
    for d in [data.segments(), data.digests()] {
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let mut out = Fetched::default();
    let list = store.list(layout.root()).map_err(|e| e.to_string())?;
    // The newest segment is always whole: the log scans its last segment's
    // records at open (a stub is never the last segment).
    let newest = list
        .iter()
        .filter_map(|l| match layout.parse(&l.key) {
            Some(Object::Segment(id)) => Some(id),
            _ => None,
        })
        .max();
    for l in list {
        let Some(object) = layout.parse(&l.key) else {
            continue;
        };
        let target = match &object {
            Object::Segment(id) => data.segments().join(id.file_name()),
            Object::Digest(name) => data.digests().join(name),
            Object::Checkpoint(_) | Object::Dropped(_) => {
                let bytes = match fetch_checked(store, &l.key, &mut out.problems) {
                    Some(b) => b,
                    None => continue,
                };
                let text = String::from_utf8_lossy(&bytes).trim_end().to_string();
                if let Object::Dropped(day) = object {
                    out.dropped.push((day.to_string(), text));
                    continue;
                }
                match Checkpoint::decode(&text) {
                    Ok(cp) => out.checkpoints.push((l.key.clone(), cp)),
                    Err(e) => out
                        .problems
                        .push(format!("{}: not a checkpoint: {e}", l.key)),
                }
                continue;
            }
            Object::Claim | Object::Parquet(_) => continue,
        };
        if target.exists() {
            return Err(format!(
                "{} exists already: restore into an empty directory",
                target.display()
            ));
        }
        let stubbed = match &object {
            Object::Segment(id) if stubs && Some(*id) != newest => Some(*id),
            _ => None,
        };
        if let Some(id) = stubbed {
            let id = &id;
            stub(store, &l.key, l.size, &target, &mut evicted, dir, id)?;
            out.segments += 1;
            continue;
        }
        let Some(bytes) = fetch_checked(store, &l.key, &mut out.problems) else {
            continue;
        };
        crate::datadir::write_durably(&target, &bytes, 0o644)
            .map_err(|e| format!("{}: {e}", target.display()))?;
        out.bytes += bytes.len() as u64;
        match object {
            Object::Segment(_) => out.segments += 1,
            _ => out.digests += 1,
        }
    }
    out.checkpoints.sort_by_key(|(_, cp)| cp.seq);
    // retention.log as the node had it (for the days the archive records):
    // the restored directory explains its missing days as the node did.
    if !out.dropped.is_empty() {
        let mut lines: String = out.dropped.iter().map(|(_, l)| format!("{l}\n")).collect();
        let path = data.retention_log();
        if let Ok(old) = std::fs::read_to_string(&path) {
            lines = old + &lines;
        }
        crate::datadir::write_durably(&path, lines.as_bytes(), 0o644)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(out)
}

/// The stub of the segment object `key` (`size` bytes) at `target`, listed
/// in `evicted` (saved in `dir`).
fn stub(
    store: &Store,
    key: &str,
    size: u64,
    target: &Path,
    evicted: &mut crate::log::evicted::Evicted,
    dir: &Path,
    id: &crate::log::format::SegmentId,
) -> Result<(), String> {
    use crate::log::format::{FOOTER_BYTES, HEADER_BYTES};
    let sha = store
        .recorded_sha256(key)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{key}: no SHA-256 recorded at upload: restore it whole"))?;
    let min = (HEADER_BYTES + FOOTER_BYTES) as u64;
    if size < min {
        return Err(format!("{key}: {size} bytes cannot be a sealed segment"));
    }
    let head = store
        .get_range(key, 0..HEADER_BYTES as u64)
        .map_err(|e| e.to_string())?;
    let foot = store
        .get_range(key, size - FOOTER_BYTES as u64..size)
        .map_err(|e| e.to_string())?;
    crate::log::evicted::write_stub(target, &head, &foot, size)
        .map_err(|e| format!("{}: {e}", target.display()))?;
    evicted.add(
        dir,
        &id.file_name(),
        crate::log::evicted::Entry {
            sha256: sha,
            bytes: size,
        },
    )
}

/// The object at `key` if its bytes have the SHA-256 recorded at upload;
/// otherwise `None`, with the problem pushed. An altered object is still
/// returned when it has no record to compare (the checks of the content
/// judge it then).
fn fetch_checked(store: &Store, key: &str, problems: &mut Vec<String>) -> Option<bytes::Bytes> {
    let bytes = match store.get(key) {
        Ok(b) => b,
        Err(e) => {
            problems.push(e.to_string());
            return None;
        }
    };
    let got = sha256_hex(&bytes);
    match store.recorded_sha256(key) {
        Ok(Some(want)) if want == got => Some(bytes),
        Ok(Some(want)) => {
            problems.push(format!(
                "{key}: altered in the archive: its SHA-256 is {got}, {want} was uploaded"
            ));
            // Still written: the checks of the content name what changed.
            Some(bytes)
        }
        Ok(None) => {
            problems.push(format!(
                "{key}: has no SHA-256 recorded at upload (not written by Stele's uploader)"
            ));
            Some(bytes)
        }
        Err(e) => {
            problems.push(e.to_string());
            Some(bytes)
        }
    }
}
