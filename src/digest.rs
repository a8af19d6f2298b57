//! Signed daily digests: proof, for an auditor holding only the public key
//! and a copy of the data directory, that no closed day was removed,
//! truncated or rewritten (CloudTrail's digest files are the model).
//!
//! Owns `DATA_DIR/digests/`: for every closed UTC day that has segments, a
//! canonical JSON document `YYYY-MM-DD.digest.json` listing each of the day's
//! segments (name, size, SHA-256, seq range, final chain hash), and a detached
//! Ed25519 signature `YYYY-MM-DD.digest.sig` over its exact bytes. Each digest
//! names the previous digest (its day, the SHA-256 of its bytes and its
//! signature) and starts at the seq after the previous digest's last, so the
//! digests form one chain: removing or altering a day, or a digest, breaks it.
//! The byte format is in docs/FORMAT.md, "Digests".
//!
//! Also owns the signing key (`stele keygen --signing`, loading it), the
//! digester thread `stele serve` runs, and the digest half of `stele verify`
//! ([`verify_chain`]).
//!
//! Invariants:
//! 1. A digest is written only for a **closed** day: one with a segment of a
//!    later day (the writer never goes back to a day), or whose segments are
//!    all sealed once [`CLOSE_GRACE_MICROS`] have passed since its end (the
//!    writer seals a finished day within about a second, traffic or not; the
//!    grace covers a size-cap rotation caught between sealing one part and
//!    creating the next). Never for the open day.
//! 2. Only what was witnessed is signed: a segment's entry comes from what
//!    this process's writer hashed while writing it (`Log::witnessed`), or
//!    from the start-up verification that matched an earlier process's
//!    segments against its last signed checkpoint
//!    ([`crate::seal::inherited`]), or from an operator's word (`stele
//!    sign-days`, recorded in the digest's `vouched` key). Never from
//!    re-reading files that could have been edited while no Stele ran.
//! 3. The chain only grows at its head: days after the newest digest are
//!    signed in day order; a day at or before the head is never (re)signed, so
//!    a removed digest stays a hole `stele verify` reports. The first closed
//!    day that cannot be signed stops the chain there; it and the days after
//!    it are reported as unsigned (`DigestRun::unsigned`, `/readyz`).
//! 4. Each file is written through a temporary file, fsync, rename and a
//!    directory fsync, read-only (0444); the signature first, the digest last:
//!    a day counts as signed once its `.digest.json` exists, and that file
//!    never exists without its signature.
//! 5. `stele verify` checks signatures with the auditor's public key, never
//!    only with the key a digest names (which anyone can write); without a key
//!    it says that signatures were not checked against a trusted key.

use crate::backup::sha256_hex;
use crate::clock::Clock;
use crate::log::format::{hash_hex, Day, Header, SegmentId};
use crate::log::{Log, SegmentInfo, WitnessedSegment};
use crate::seal::checkpoint::Checkpoint;
use crate::seal::inherited::{verify_inherited, Inherited};
use crate::seal::SealStatus;
use crate::verify::{Finding, Report, SegmentSummary};
pub use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `version` this build writes and reads.
pub const DIGEST_VERSION: u32 = 2;
/// The oldest `version` this build reads (1: no `vouched` key).
pub const DIGEST_VERSION_OLDEST: u32 = 1;
/// The directory under `DATA_DIR` holding the digests.
pub const DIGESTS_DIR: &str = "digests";
/// How long after a day's end its sealed segments count as final without a
/// segment of a later day (see invariant 1).
pub const CLOSE_GRACE_MICROS: i64 = 60_000_000;
/// How often `stele serve` looks for days to sign (it also wakes right after
/// each day closes).
pub const PERIOD_DEFAULT: Duration = Duration::from_secs(60);
/// The environment variable naming the signing key file.
pub const SIGNING_KEY_ENV: &str = "STELE_SIGNING_KEY_FILE";
/// The signing key's file name in `$CREDENTIALS_DIRECTORY` (systemd
/// `LoadCredential=`) and in the data directory.
pub const SIGNING_KEY_FILE: &str = "signing.key";

/// Why writing digests or handling a key failed.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// Reading or writing a file.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds something that must not be used or signed.
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// A sentence saying what is wrong.
        what: String,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DigestError {
    let path = path.to_path_buf();
    move |source| DigestError::Io { op, path, source }
}

fn invalid(path: &Path, what: impl Into<String>) -> DigestError {
    DigestError::Invalid {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

// ---------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------

/// One segment as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    /// File name, `YYYY-MM-DD.N.seg`.
    pub name: String,
    /// Size of the sealed file.
    pub bytes: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    /// Seq of its first record.
    pub first_seq: u64,
    /// Seq of its last record (`first_seq - 1` when empty).
    pub last_seq: u64,
    /// Number of records.
    pub count: u64,
    /// Chain hash of its last record (its footer's), lower-case hex.
    pub final_hash: String,
}

/// The digest a day names as its predecessor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousDigest {
    /// The previous digest's day.
    pub day: String,
    /// SHA-256 of the previous `.digest.json` file's bytes, lower-case hex.
    pub sha256: String,
    /// The previous digest's signature, lower-case hex.
    pub signature: String,
}

/// The content of a `YYYY-MM-DD.digest.json` file. Fields serialize in
/// declaration order, which is the canonical key order (docs/FORMAT.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyDigest {
    /// Always [`DIGEST_VERSION`].
    pub version: u32,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Every segment of the day, in log order.
    pub segments: Vec<SegmentEntry>,
    /// Seq of the day's first record.
    pub first_seq: u64,
    /// Seq of the day's last record.
    pub last_seq: u64,
    /// Chain hash of the record before `first_seq` (the first segment's
    /// header `prev_hash`), lower-case hex.
    pub prev_hash: String,
    /// The previous digest of the chain; `null` for the first one.
    pub previous_digest: Option<PreviousDigest>,
    /// The public key of the signer, lower-case hex (informational: verify
    /// with a key you trust, see invariant 5).
    pub public_key: String,
    /// When the digest was signed, RFC 3339 UTC with microseconds.
    pub created_at: String,
    /// Present only when the day was signed on an operator's word (`stele
    /// sign-days --vouch-through`), not from what a running Stele witnessed:
    /// says so, with the seqs concerned. Version 2 and later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vouched: Option<String>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses `YYYY-MM-DD` in its one canonical spelling.
pub fn parse_day(s: &str) -> Option<Day> {
    let d = Day(chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?);
    (d.to_string() == s).then_some(d)
}

impl DailyDigest {
    /// The canonical bytes: compact JSON in declaration order, one `\n` at
    /// the end. What is signed and what is written.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a digest always serializes");
        out.push(b'\n');
        out
    }

    /// Parses a digest file's bytes and checks that they are canonical and
    /// consistent on their own (not the signature, not the chain).
    pub fn decode(bytes: &[u8]) -> Result<DailyDigest, String> {
        let d: DailyDigest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a digest document: {e}"))?;
        if d.encode() != bytes {
            return Err(
                "not in canonical form (compact JSON, keys in the documented order, \
                        one newline at the end): it was edited"
                    .into(),
            );
        }
        d.check().map(|()| d)
    }

    /// The day, parsed.
    pub fn parsed_day(&self) -> Option<Day> {
        parse_day(&self.day)
    }

    /// The chain hash the day ends with (its last segment's final hash).
    pub fn final_hash(&self) -> &str {
        self.segments
            .last()
            .map_or(&self.prev_hash, |s| &s.final_hash)
    }

    fn check(&self) -> Result<(), String> {
        if !(DIGEST_VERSION_OLDEST..=DIGEST_VERSION).contains(&self.version) {
            return Err(format!(
                "version {} is not supported (this build reads {DIGEST_VERSION_OLDEST} to \
                 {DIGEST_VERSION})",
                self.version
            ));
        }
        if self.version < 2 && self.vouched.is_some() {
            return Err("a version 1 digest has no `vouched` key".into());
        }
        let day = self
            .parsed_day()
            .ok_or_else(|| format!("day {:?} is not a YYYY-MM-DD date", self.day))?;
        if self.segments.is_empty() {
            return Err("lists no segment".into());
        }
        let mut prev: Option<(SegmentId, u64)> = None;
        for s in &self.segments {
            let id = SegmentId::parse_file_name(&s.name)
                .ok_or_else(|| format!("{:?} is not a segment file name", s.name))?;
            if id.day != day {
                return Err(format!("segment {} is not of day {day}", s.name));
            }
            if !is_hex(&s.sha256, 64) || !is_hex(&s.final_hash, 64) {
                return Err(format!(
                    "segment {}: sha256 and final_hash must be 64 lower-case hex digits",
                    s.name
                ));
            }
            let end = s.first_seq.checked_add(s.count);
            if s.first_seq == 0 || end.is_none() || end != s.last_seq.checked_add(1) {
                return Err(format!(
                    "segment {}: {} records cannot span seqs {}..={}",
                    s.name, s.count, s.first_seq, s.last_seq
                ));
            }
            if let Some((pid, pend)) = prev {
                if id <= pid {
                    return Err(format!("segment {} is listed out of order", s.name));
                }
                if pend.checked_add(1) != Some(s.first_seq) {
                    return Err(format!(
                        "segment {} starts at seq {}, the one before it ends at seq {pend}",
                        s.name, s.first_seq
                    ));
                }
            }
            prev = Some((id, s.last_seq));
        }
        let (first, last) = (&self.segments[0], &self.segments[self.segments.len() - 1]);
        if self.first_seq != first.first_seq || self.last_seq != last.last_seq {
            return Err(format!(
                "seqs {}..={} do not match its segments' {}..={}",
                self.first_seq, self.last_seq, first.first_seq, last.last_seq
            ));
        }
        if !is_hex(&self.prev_hash, 64) {
            return Err("prev_hash must be 64 lower-case hex digits".into());
        }
        if let Some(p) = &self.previous_digest {
            match parse_day(&p.day) {
                Some(pd) if pd < day => {}
                _ => {
                    return Err(format!(
                        "previous_digest.day {:?} is not a day before {day}",
                        p.day
                    ))
                }
            }
            if !is_hex(&p.sha256, 64) || !is_hex(&p.signature, 128) {
                return Err("previous_digest: sha256 must be 64 and signature 128 \
                            lower-case hex digits"
                    .into());
            }
        }
        parse_public_key_hex(&self.public_key).map_err(|e| format!("public_key: {e}"))?;
        chrono::DateTime::parse_from_rfc3339(&self.created_at)
            .map_err(|e| format!("created_at {:?}: {e}", self.created_at))?;
        Ok(())
    }
}

/// `YYYY-MM-DD.digest.json`.
pub fn digest_file_name(day: Day) -> String {
    format!("{day}.digest.json")
}

/// `YYYY-MM-DD.digest.sig`.
pub fn signature_file_name(day: Day) -> String {
    format!("{day}.digest.sig")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Sig,
}

fn parse_file_name(name: &str) -> Option<(Day, Kind)> {
    let (day, kind) = if let Some(d) = name.strip_suffix(".digest.json") {
        (d, Kind::Json)
    } else {
        (name.strip_suffix(".digest.sig")?, Kind::Sig)
    };
    Some((parse_day(day)?, kind))
}

/// The newest day with a digest in `DATA_DIR/digests/` (for retention: a day
/// past its TTL should not be dropped before it is signed).
pub fn digested_through(data_dir: &Path) -> Option<Day> {
    std::fs::read_dir(data_dir.join(DIGESTS_DIR))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_file_name(&e.file_name().to_string_lossy()))
        .filter(|(_, k)| *k == Kind::Json)
        .map(|(d, _)| d)
        .max()
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// Lower-case hex of a public key.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.to_bytes())
}

fn parse_public_key_hex(s: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("expected 64 hex digits (a 32-byte Ed25519 public key)")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 public key".to_string())
}

/// A public key given on the command line: 64 hex digits, or the path of a
/// file holding them (as `stele keygen --public-out` writes).
pub fn parse_public_key(arg: &str) -> Result<VerifyingKey, String> {
    if arg.len() == 64 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return parse_public_key_hex(&arg.to_ascii_lowercase());
    }
    let text = std::fs::read_to_string(arg).map_err(|e| {
        format!("{arg:?} is neither 64 hex digits nor a readable public key file: {e}")
    })?;
    parse_public_key_hex(&text.trim().to_ascii_lowercase()).map_err(|e| format!("{arg}: {e}"))
}

/// Reads a signing key file: 64 hex digits (the 32-byte Ed25519 seed) on one
/// line, readable by its owner only.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, DigestError> {
    let meta = std::fs::metadata(path).map_err(io("read", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(invalid(
            path,
            format!(
                "other users have access to the signing key (mode {mode:04o}): \
                 `chmod 600` it, and consider it compromised if they could read it"
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(io("read", path))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            invalid(
                path,
                "not a signing key: expected 64 hex digits on one line \
                 (make one with `stele keygen --signing --out PATH`)",
            )
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The signing key `stele serve` uses, from the first of: the file named by
/// `$STELE_SIGNING_KEY_FILE`, `$CREDENTIALS_DIRECTORY/signing.key` (systemd
/// `LoadCredential=`), `DATA_DIR/signing.key`. `None` when there is none
/// (digests are off); an error when the chosen file is unusable.
pub fn load_signing_key(data_dir: &Path) -> Result<Option<SigningKey>, DigestError> {
    let named = std::env::var_os(SIGNING_KEY_ENV).filter(|v| !v.is_empty());
    let path = match named {
        Some(p) => PathBuf::from(p),
        None => {
            let cred = std::env::var_os("CREDENTIALS_DIRECTORY")
                .map(|d| PathBuf::from(d).join(SIGNING_KEY_FILE))
                .filter(|p| p.exists());
            match cred {
                Some(p) => p,
                None if data_dir.join(SIGNING_KEY_FILE).exists() => data_dir.join(SIGNING_KEY_FILE),
                None => return Ok(None),
            }
        }
    };
    let key = read_signing_key(&path)?;
    tracing::info!(
        "Daily digests are on: signing with public key {} from {}.",
        public_key_hex(&key.verifying_key()),
        path.display()
    );
    Ok(Some(key))
}

/// `stele keygen --signing`: writes a new signing key to `out` (mode 0600)
/// and, if asked, its public key to `public_out`. Refuses to overwrite
/// either file. Returns the public key.
pub fn generate_signing_key(
    out: &Path,
    public_out: Option<&Path>,
) -> Result<VerifyingKey, DigestError> {
    if public_out == Some(out) {
        return Err(invalid(out, "the public key needs a file of its own"));
    }
    for p in std::iter::once(out).chain(public_out) {
        if p.symlink_metadata().is_ok() {
            return Err(invalid(p, "already exists: refusing to overwrite it"));
        }
    }
    let mut seed = [0u8; 32];
    let urandom = Path::new("/dev/urandom");
    std::fs::File::open(urandom)
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(io("read", urandom))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let public = key.verifying_key();
    write_new(out, hex::encode(key.to_bytes()).as_bytes(), 0o600)?;
    if let Some(p) = public_out {
        write_new(p, public_key_hex(&public).as_bytes(), 0o644)?;
    }
    Ok(public)
}

/// Creates `path` (never replacing a file) with `line` and a newline, fsyncs
/// it and its directory.
fn write_new(path: &Path, line: &[u8], mode: u32) -> Result<(), DigestError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io("create", path))?;
    f.write_all(line)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(io("write", path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    crate::log::fsync_dir(dir).map_err(|e| invalid(dir, e.to_string()))
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// The newest digest: what the next one chains to.
struct Head {
    day: Day,
    sha256: String,
    signature: String,
    last_seq: u64,
    final_hash: crate::log::format::Hash,
}

fn read_head(dir: &Path, key: Option<&VerifyingKey>) -> Result<Option<Head>, DigestError> {
    let Some(day) = digested_through(dir.parent().unwrap_or(dir)) else {
        return Ok(None);
    };
    let path = dir.join(digest_file_name(day));
    let bytes = std::fs::read(&path).map_err(io("read", &path))?;
    let refuse = |what: String| {
        invalid(
            &path,
            format!("{what}; refusing to extend the digest chain from it (run `stele verify`)"),
        )
    };
    let doc = DailyDigest::decode(&bytes).map_err(|e| refuse(format!("the newest digest: {e}")))?;
    if doc.parsed_day() != Some(day) {
        return Err(refuse(format!("the newest digest says day {}", doc.day)));
    }
    let sig_path = dir.join(signature_file_name(day));
    let signature = std::fs::read_to_string(&sig_path)
        .map_err(|e| {
            refuse(format!(
                "cannot read its signature {}: {e}",
                sig_path.display()
            ))
        })?
        .trim()
        .to_string();
    if !is_hex(&signature, 128) {
        return Err(refuse(format!(
            "its signature file {} does not hold 128 hex digits",
            sig_path.display()
        )));
    }
    if let Some(key) = key {
        let mut sig = [0u8; 64];
        let _ = hex::decode_to_slice(&signature, &mut sig);
        if key.verify(&bytes, &Signature::from_bytes(&sig)).is_err() {
            return Err(refuse(
                "its signature does not verify with the signing key (it was forged or \
                 signed by another key)"
                    .into(),
            ));
        }
    }
    let final_hash = doc
        .segments
        .last()
        .map(|s| s.final_hash.clone())
        .unwrap_or_else(|| doc.prev_hash.clone());
    let mut final_bytes = [0u8; 32];
    let _ = hex::decode_to_slice(&final_hash, &mut final_bytes);
    Ok(Some(Head {
        day,
        sha256: sha256_hex(&bytes),
        signature,
        last_seq: doc.last_seq,
        final_hash: final_bytes,
    }))
}

/// Where the signed chain ends: the newest digest's last seq and final
/// chain hash, its signature checked with `key`; `None` without digests.
///
/// # Errors
/// The newest digest cannot be read, is not canonical, or its signature
/// does not verify.
pub fn anchor(
    data_dir: &Path,
    key: &VerifyingKey,
) -> Result<Option<(u64, crate::log::format::Hash)>, DigestError> {
    Ok(read_head(&data_dir.join(DIGESTS_DIR), Some(key))?.map(|h| (h.last_seq, h.final_hash)))
}

/// Start of the UTC day after `day`, in unix microseconds.
fn end_of(day: Day) -> i64 {
    day.0
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(i64::MAX, |t| t.and_utc().timestamp_micros())
}

/// The days of `segs` that are closed at `now` (invariant 1), oldest first,
/// each with its segments.
fn closed_days(segs: &[SegmentInfo], now_micros: i64) -> Vec<(Day, Vec<&SegmentInfo>)> {
    let mut days: BTreeMap<Day, Vec<&SegmentInfo>> = BTreeMap::new();
    for s in segs {
        days.entry(s.id.day).or_default().push(s);
    }
    let newest = days.keys().next_back().copied();
    days.into_iter()
        .filter(|(day, parts)| {
            Some(*day) != newest
                || (parts.iter().all(|p| p.sealed)
                    && now_micros >= end_of(*day).saturating_add(CLOSE_GRACE_MICROS))
        })
        .collect()
}

/// A segment as a digest lists it, from what the writer witnessed.
pub fn entry_of(w: &WitnessedSegment) -> SegmentEntry {
    SegmentEntry {
        name: w.id.file_name(),
        bytes: w.bytes,
        sha256: hash_hex(&w.sha256),
        first_seq: w.first_seq,
        last_seq: w.first_seq + w.count - 1,
        count: w.count,
        final_hash: hash_hex(&w.final_hash),
    }
}

/// The last seq of the newest digest in `DATA_DIR/digests/`, if one parses.
pub fn newest_digest_last_seq(data_dir: &Path) -> Option<u64> {
    let day = digested_through(data_dir)?;
    let bytes = std::fs::read(data_dir.join(DIGESTS_DIR).join(digest_file_name(day))).ok()?;
    DailyDigest::decode(&bytes).ok().map(|d| d.last_seq)
}

/// The segment entries of every digest whose signature verifies with
/// `key` (the scrubber's references).
pub fn load_signed_entries(data_dir: &Path, key: &VerifyingKey) -> Vec<SegmentEntry> {
    let dir = data_dir.join(DIGESTS_DIR);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((day, Kind::Json)) = parse_file_name(&name) else {
            continue;
        };
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(sig) = std::fs::read_to_string(dir.join(signature_file_name(day))) else {
            continue;
        };
        let mut sig_bytes = [0u8; 64];
        if hex::decode_to_slice(sig.trim(), &mut sig_bytes).is_err()
            || key
                .verify(&bytes, &Signature::from_bytes(&sig_bytes))
                .is_err()
        {
            continue;
        }
        if let Ok(doc) = DailyDigest::decode(&bytes) {
            out.extend(doc.segments);
        }
    }
    out
}

/// The `prev_hash` of a segment's header, in hex.
fn header_prev_hash(path: &Path) -> Result<String, DigestError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).map_err(io("open", path))?;
    let mut h = [0u8; crate::log::format::HEADER_BYTES];
    f.read_exact_at(&mut h, 0).map_err(io("read", path))?;
    Header::decode(&h)
        .map(|h| hash_hex(&h.prev_hash))
        .map_err(|e| invalid(path, format!("bad header: {e}")))
}

/// Why a closed day after the head cannot be signed: a segment of it that
/// this process neither witnessed being written nor verified.
fn unwitnessed(id: SegmentId, through: u64, w: Option<&WitnessedSegment>) -> String {
    match w {
        Some(w) => format!(
            "segment {id} holds records up to seq {} written by an earlier process and not \
             verified against its signed checkpoint (verified through seq {through})",
            w.inherited_through.unwrap_or_default()
        ),
        None => format!(
            "segment {id} was sealed by an earlier process and does not verify against a \
             checkpoint signed by it (verified through seq {through})"
        ),
    }
}

/// Writes `bytes` as the read-only file `dir/name` through a temporary file,
/// fsync, rename and a directory fsync.
fn write_read_only(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, DigestError> {
    let target = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    std::fs::rename(&tmp, &target).map_err(io("rename", &target))?;
    crate::log::fsync_dir(dir).map_err(|e| invalid(dir, e.to_string()))?;
    Ok(target)
}

/// Signs every closed day after the newest digest that this process
/// witnessed (see [`write_witnessed_digests`]), with nothing inherited
/// verified; returns the `.digest.json` files written.
pub fn write_due_digests(
    data_dir: &Path,
    log: &Log,
    key: &SigningKey,
    now_micros: i64,
) -> Result<Vec<PathBuf>, DigestError> {
    let through = newest_digest_last_seq(data_dir).unwrap_or(0);
    write_witnessed_digests(data_dir, log, key, now_micros, &Inherited::none(through))
        .map(|r| r.written)
}

/// What one run of the digester did.
#[derive(Debug, Default)]
pub struct DigestRun {
    /// The `.digest.json` files written.
    pub written: Vec<PathBuf>,
    /// Closed days after the head that could not be signed: `(day, why)`.
    pub unsigned: Vec<(String, String)>,
}

/// Signs every closed day after the newest digest, oldest first, from what
/// this process witnessed: segments its writer sealed (their SHA-256 fed
/// with the bytes it wrote), and inherited ones `inherited` verified against
/// the earlier process's signed checkpoint. The chain stops at the first
/// closed day holding anything else; that day and the ones after it are
/// returned as unsigned (invariant 3). Never reads a file to decide what to
/// sign. `now_micros` decides which days are closed.
pub fn write_witnessed_digests(
    data_dir: &Path,
    log: &Log,
    key: &SigningKey,
    now_micros: i64,
    inherited: &Inherited,
) -> Result<DigestRun, DigestError> {
    let dir = data_dir.join(DIGESTS_DIR);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        crate::log::fsync_dir(data_dir).map_err(|e| invalid(data_dir, e.to_string()))?;
    }
    let mut head = read_head(&dir, Some(&key.verifying_key()))?;
    let segs = log.segments();
    let witnessed = log.witnessed();
    let through = inherited.verified_through;
    let mut run = DigestRun::default();
    for (day, parts) in closed_days(&segs, now_micros) {
        if head.as_ref().is_some_and(|h| day <= h.day) {
            continue;
        }
        if let Some((_, why)) = run.unsigned.first() {
            run.unsigned.push((day.to_string(), why.clone()));
            continue;
        }
        let mut segments = Vec::with_capacity(parts.len());
        let mut prev_hash = None;
        let mut missing = None;
        let mut from_inherited = false;
        for p in parts {
            let w = witnessed.iter().rev().find(|w| w.id == p.id);
            let entry = match w {
                Some(w) if w.inherited_through.is_none_or(|t| t <= through) => {
                    prev_hash.get_or_insert(hash_hex(&w.prev_hash));
                    entry_of(w)
                }
                _ => match inherited.entries.get(&p.id) {
                    Some(e) if e.last_seq <= through => {
                        if prev_hash.is_none() {
                            prev_hash = Some(header_prev_hash(&p.path)?);
                        }
                        from_inherited = true;
                        e.clone()
                    }
                    _ => {
                        missing = Some(unwitnessed(p.id, through, w));
                        break;
                    }
                },
            };
            segments.push(entry);
        }
        if let Some(why) = missing {
            run.unsigned.push((day.to_string(), why));
            continue;
        }
        let digest = DailyDigest {
            version: DIGEST_VERSION,
            day: day.to_string(),
            first_seq: segments[0].first_seq,
            last_seq: segments[segments.len() - 1].last_seq,
            segments,
            prev_hash: prev_hash.unwrap_or_default(),
            previous_digest: head.as_ref().map(|h| PreviousDigest {
                day: h.day.to_string(),
                sha256: h.sha256.clone(),
                signature: h.signature.clone(),
            }),
            public_key: public_key_hex(&key.verifying_key()),
            created_at: chrono::DateTime::from_timestamp_micros(now_micros)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            vouched: inherited.vouched.clone().filter(|_| from_inherited),
        };
        if let Some(h) = head.as_ref().filter(|h| h.last_seq + 1 != digest.first_seq) {
            // Salvage recovery, or a day dropped before it was signed: the
            // gap is signed as it is, and `stele verify` reports it.
            tracing::warn!(
                "The digest of {day} starts at seq {}, but the previous one ({}) ends at seq {}: \
                 the signed chain will show a gap (run `stele verify`).",
                digest.first_seq,
                h.day,
                h.last_seq
            );
        }
        let bytes = digest.encode();
        let signature = hex::encode(key.sign(&bytes).to_bytes());
        write_read_only(
            &dir,
            &signature_file_name(day),
            format!("{signature}\n").as_bytes(),
        )?;
        let path = write_read_only(&dir, &digest_file_name(day), &bytes)?;
        tracing::info!(
            "Signed the digest of {day}: {} segments, seqs {}..={}.",
            digest.segments.len(),
            digest.first_seq,
            digest.last_seq
        );
        let mut final_hash = [0u8; 32];
        let last = &digest.segments[digest.segments.len() - 1].final_hash;
        let _ = hex::decode_to_slice(last, &mut final_hash);
        head = Some(Head {
            day,
            sha256: sha256_hex(&bytes),
            signature,
            last_seq: digest.last_seq,
            final_hash,
        });
        run.written.push(path);
    }
    Ok(run)
}

/// Counters of the digester thread (for `/metrics`).
#[derive(Debug, Default)]
pub struct DigestStats {
    /// Digests signed and written.
    pub written: AtomicU64,
    /// Runs that failed (the error is logged once until it changes).
    pub failures: AtomicU64,
}

/// The digester thread of `stele serve`: signs due days at start, every
/// period, and right after each day closes.
pub struct Digester {
    worker: crate::seal::worker::Worker,
    stats: Arc<DigestStats>,
}

impl Digester {
    /// Starts the thread; without a key, logs once that digests are off and
    /// starts nothing.
    /// `prior` is the newest checkpoint the earlier process signed (checked
    /// with `key`): the first run verifies the inherited records against it
    /// (see [`verify_inherited`]) and records the outcome in `status`.
    pub fn start(
        data_dir: PathBuf,
        log: Arc<Log>,
        clock: Arc<dyn Clock>,
        key: Option<SigningKey>,
        period: Duration,
        prior: Option<Checkpoint>,
        status: Arc<SealStatus>,
    ) -> Digester {
        let stats = Arc::new(DigestStats::default());
        let Some(key) = key else {
            tracing::info!(
                "Daily digests and checkpoints are off: no signing key (stele keygen --signing)."
            );
            let _ = (prior, status);
            return Digester {
                worker: crate::seal::worker::Worker::idle(),
                stats,
            };
        };
        let counters = stats.clone();
        let spawned = crate::seal::worker::Worker::spawn("stele-digester", move |rx| {
            let mut said: Option<String> = None;
            let public = key.verifying_key();
            let anchor = match anchor(&data_dir, &public) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!("{e}.");
                    None
                }
            };
            let inherited = verify_inherited(&log, anchor, prior.as_ref());
            status.set_signed_entries(load_signed_entries(&data_dir, &public));
            status.set_inherited(inherited.clone());
            let mut unsigned_said = Vec::new();
            loop {
                let now = clock.now_micros();
                match write_witnessed_digests(&data_dir, &log, &key, now, &inherited) {
                    Ok(run) => {
                        counters
                            .written
                            .fetch_add(run.written.len() as u64, Ordering::Relaxed);
                        if !run.written.is_empty() {
                            status.set_signed_entries(load_signed_entries(&data_dir, &public));
                        }
                        if run.unsigned != unsigned_said {
                            for (day, why) in &run.unsigned {
                                tracing::error!(
                                    "Day {day} is closed but not signed: {why}. An operator \
                                         must resolve it (`stele sign-days`, docs in README \
                                         \"Unsigned days\")."
                                );
                            }
                            unsigned_said = run.unsigned.clone();
                        }
                        status.set_unsigned(run.unsigned);
                        status.set_digest_error(None);
                        said = None;
                    }
                    Err(e) => {
                        counters.failures.fetch_add(1, Ordering::Relaxed);
                        let msg = e.to_string();
                        status.set_digest_error(Some(msg.clone()));
                        if said.as_deref() != Some(msg.as_str()) {
                            tracing::error!("Could not sign the daily digests: {msg}.");
                            said = Some(msg);
                        }
                    }
                }
                let now = clock.now_micros();
                let next_close =
                    end_of(Day::from_micros(now)).saturating_add(CLOSE_GRACE_MICROS + 1_000_000);
                let until_close =
                    Duration::from_micros(next_close.saturating_sub(now).max(0) as u64);
                match rx.recv_timeout(period.min(until_close)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
        });
        let worker = spawned.unwrap_or_else(|e| {
            tracing::error!("Could not start the digester thread: {e}; no digests.");
            crate::seal::worker::Worker::idle()
        });
        Digester { worker, stats }
    }

    /// Whether the thread runs (a key was given).
    pub fn running(&self) -> bool {
        self.worker.running()
    }

    /// The thread's counters.
    pub fn stats(&self) -> Arc<DigestStats> {
        self.stats.clone()
    }

    /// Stops the thread after the digest it is writing, if any.
    pub fn stop(self) {
        self.worker.stop();
    }
}

// ---------------------------------------------------------------------------
// Verifying (the digest half of `stele verify`)
// ---------------------------------------------------------------------------

/// What `stele verify` found about a data directory's digest chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// The `digests/` directory.
    pub dir: PathBuf,
    /// Digests that parsed.
    pub digests: usize,
    /// Day of the oldest and newest of them.
    pub days: Option<(Day, Day)>,
    /// The newest digest's last seq.
    pub last_seq: Option<u64>,
    /// Whether signatures were checked with keys given by the auditor (else
    /// only with the keys the digests name).
    pub keys_given: bool,
}

struct Loaded {
    day: Day,
    path: PathBuf,
    sha256: String,
    signature: Option<String>,
    doc: DailyDigest,
}

fn finding(report: &mut Report, path: &Path, what: String, fatal: bool) {
    report.findings.push(Finding {
        path: path.to_path_buf(),
        offset: None,
        seq: None,
        what,
        fatal,
    });
}

/// Checks `DATA_DIR/digests/` against the segments already verified
/// (`segments`, from this data directory): every digest's form and
/// signature (with `keys` when given), the chain, and that every signed
/// segment is on disk with exactly the signed size and SHA-256 (the
/// summaries must carry `sha256` for sealed segments). Days with segments but
/// no digest are reported too. Adds findings and a [`ChainSummary`].
pub fn verify_chain(
    data_dir: &Path,
    segments: &[SegmentSummary],
    keys: &[VerifyingKey],
    report: &mut Report,
) {
    let dir = data_dir.join(DIGESTS_DIR);
    let mut jsons: BTreeMap<Day, PathBuf> = BTreeMap::new();
    let mut sigs: BTreeMap<Day, PathBuf> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            match parse_file_name(&name) {
                Some((day, Kind::Json)) => {
                    jsons.insert(day, entry.path());
                }
                Some((day, Kind::Sig)) => {
                    sigs.insert(day, entry.path());
                }
                None if name.ends_with(".tmp") => finding(
                    report,
                    &entry.path(),
                    "an interrupted digest write (the daemon rewrites it)".into(),
                    false,
                ),
                None => finding(
                    report,
                    &entry.path(),
                    "not a digest file: Stele only writes YYYY-MM-DD.digest.json and \
                     YYYY-MM-DD.digest.sig here"
                        .into(),
                    false,
                ),
            }
        }
    }

    // Each digest alone: form and signature.
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut signers = BTreeSet::new();
    for (&day, path) in &jsons {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                finding(report, path, format!("cannot read the digest: {e}"), true);
                continue;
            }
        };
        let doc = match DailyDigest::decode(&bytes) {
            Ok(d) => d,
            Err(e) => {
                finding(report, path, format!("day {day}: {e}"), true);
                continue;
            }
        };
        if doc.parsed_day() != Some(day) {
            finding(
                report,
                path,
                format!("the file is named for day {day} but says day {}", doc.day),
                true,
            );
            continue;
        }
        if let Some(v) = &doc.vouched {
            finding(
                report,
                path,
                format!("day {day} was signed on an operator's word, not witnessed: {v}"),
                false,
            );
        }
        let signature = check_signature(day, path, &bytes, &doc, sigs.get(&day), keys, report);
        signers.insert(doc.public_key.clone());
        loaded.push(Loaded {
            day,
            path: path.clone(),
            sha256: sha256_hex(&bytes),
            signature,
            doc,
        });
    }
    for (day, path) in &sigs {
        if !jsons.contains_key(day) {
            finding(
                report,
                path,
                format!(
                    "a signature without its digest {}: an interrupted write, or the digest \
                     was removed",
                    digest_file_name(*day)
                ),
                false,
            );
        }
    }
    if keys.is_empty() && signers.len() > 1 {
        finding(
            report,
            &dir,
            format!(
                "the digests name {} different public keys (a key rotation, or forgery): \
                 pass --public-key to check who signed them",
                signers.len()
            ),
            false,
        );
    }

    // The chain.
    for i in 0..loaded.len() {
        let (d, prev) = (&loaded[i], i.checked_sub(1).map(|j| &loaded[j]));
        check_link(d, prev, report);
    }

    // The signed segments against the disk.
    let on_disk: BTreeMap<SegmentId, &SegmentSummary> = segments
        .iter()
        .filter_map(|s| {
            let name = s.path.file_name()?.to_str()?;
            Some((SegmentId::parse_file_name(name)?, s))
        })
        .collect();
    let oldest = on_disk.values().next().map(|s| s.first_seq);
    let mut prefix = true;
    let seg_dir = data_dir.join("segments");
    for d in &loaded {
        check_segments(d, &seg_dir, &on_disk, oldest, &mut prefix, report);
    }
    if let (Some(head), Some((_, anchor))) = (loaded.last(), on_disk.iter().next()) {
        check_anchor(head, &loaded, anchor, report);
    }

    // Days with segments but no digest.
    if !(jsons.is_empty() && keys.is_empty()) {
        let mut days: BTreeMap<Day, usize> = BTreeMap::new();
        for id in on_disk.keys() {
            *days.entry(id.day).or_default() += 1;
        }
        let newest = days.keys().next_back().copied();
        let head = jsons.keys().next_back().copied();
        let missing: Vec<(Day, usize)> = days
            .into_iter()
            .filter(|(day, _)| Some(*day) != newest && !jsons.contains_key(day))
            .collect();
        let newest_closed = missing.last().map(|(d, _)| *d);
        for (day, n) in missing {
            let path = dir.join(digest_file_name(day));
            if Some(day) == newest_closed && head.is_none_or(|h| day > h) {
                finding(
                    report,
                    &path,
                    format!(
                        "day {day} is over but has no digest yet: the daemon signs a day about \
                         a minute after it ends; if this copy was made later than that, its \
                         digest was removed"
                    ),
                    false,
                );
            } else {
                finding(
                    report,
                    &path,
                    format!("day {day} has {n} segments but no signed digest: it was removed"),
                    true,
                );
            }
        }
    }
    report.digests.push(ChainSummary {
        dir,
        digests: loaded.len(),
        days: loaded
            .first()
            .zip(loaded.last())
            .map(|(a, b)| (a.day, b.day)),
        last_seq: loaded.last().map(|d| d.doc.last_seq),
        keys_given: !keys.is_empty(),
    });
}

/// Checks a digest's signature file and signature; returns the signature's
/// hex when the file holds one.
fn check_signature(
    day: Day,
    path: &Path,
    bytes: &[u8],
    doc: &DailyDigest,
    sig_path: Option<&PathBuf>,
    keys: &[VerifyingKey],
    report: &mut Report,
) -> Option<String> {
    let Some(sig_path) = sig_path else {
        finding(
            report,
            path,
            format!(
                "day {day}: no signature file {} (an unsigned digest)",
                signature_file_name(day)
            ),
            true,
        );
        return None;
    };
    let text = match std::fs::read_to_string(sig_path) {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            finding(
                report,
                sig_path,
                format!("cannot read the signature: {e}"),
                true,
            );
            return None;
        }
    };
    let sig = hex::decode(&text)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .filter(|_| is_hex(&text, 128))
        .map(|b| Signature::from_bytes(&b));
    let Some(sig) = sig else {
        finding(
            report,
            sig_path,
            format!("day {day}: the signature file does not hold 128 lower-case hex digits"),
            true,
        );
        return None;
    };
    let named = parse_public_key_hex(&doc.public_key).expect("checked by decode");
    let verdict = if keys.is_empty() {
        named.verify_strict(bytes, &sig).err().map(|_| {
            "the signature does not verify with the key the digest names: the digest \
                       was altered after signing"
                .to_string()
        })
    } else if !keys.contains(&named) {
        Some(format!(
            "signed by key {}, not by the given public key: a forged digest (or one signed \
             with a key you were not given)",
            doc.public_key
        ))
    } else {
        named.verify_strict(bytes, &sig).err().map(|_| {
            "the signature does not verify with the given public key: the digest was altered \
             or forged"
                .to_string()
        })
    };
    if let Some(what) = verdict {
        finding(report, path, format!("day {day}: {what}"), true);
    }
    Some(text)
}

/// Checks that `d` names `prev` (the digest before it in the directory) and
/// continues its seqs and chain hash.
fn check_link(d: &Loaded, prev: Option<&Loaded>, report: &mut Report) {
    let day = d.day;
    match (&d.doc.previous_digest, prev) {
        (None, None) => {}
        (None, Some(p)) => finding(
            report,
            &d.path,
            format!(
                "day {day}: names no previous digest, but the digest of {} precedes it: the \
                 chain was restarted (a forged or misplaced digest)",
                p.day
            ),
            true,
        ),
        (Some(pd), None) => finding(
            report,
            &d.path,
            format!(
                "day {day}: names day {} as its previous digest, which is missing: the oldest \
                 digests were removed",
                pd.day
            ),
            true,
        ),
        (Some(pd), Some(p)) if pd.day != p.day.to_string() => finding(
            report,
            &d.path,
            format!(
                "day {day}: names day {} as its previous digest, which is missing (the one \
                 before it here is {}): a digest was removed",
                pd.day, p.day
            ),
            true,
        ),
        (Some(pd), Some(p)) => {
            if pd.sha256 != p.sha256 {
                finding(
                    report,
                    &d.path,
                    format!(
                        "day {day}: the previous digest ({}) does not have the SHA-256 this \
                         digest names: it was altered or replaced",
                        p.day
                    ),
                    true,
                );
            }
            if p.signature.as_ref().is_some_and(|s| *s != pd.signature) {
                finding(
                    report,
                    &d.path,
                    format!(
                        "day {day}: the previous digest's ({}) signature is not the one this \
                         digest names: it was re-signed",
                        p.day
                    ),
                    true,
                );
            }
        }
    }
    let Some(p) = prev else { return };
    let want = p.doc.last_seq + 1;
    if d.doc.first_seq != want {
        let what = if d.doc.first_seq > want {
            format!(
                "seqs {want}..={} are in no digest (a day was removed)",
                d.doc.first_seq - 1
            )
        } else {
            "the two digests overlap".to_string()
        };
        finding(
            report,
            &d.path,
            format!(
                "day {day}: starts at seq {}, but the previous digest ({}) ends at seq {}: {what}",
                d.doc.first_seq, p.day, p.doc.last_seq
            ),
            true,
        );
    } else if d.doc.prev_hash != p.doc.final_hash() {
        finding(
            report,
            &d.path,
            format!(
                "day {day}: its previous chain hash is not the final hash of the previous \
                 digest ({}): the log's chain is broken between the two days",
                p.day
            ),
            true,
        );
    }
}

/// Checks the segments a digest lists against those on disk. `prefix` stays
/// true while every digest so far has lost all its segments before the
/// oldest one on disk: what retention does.
fn check_segments(
    d: &Loaded,
    seg_dir: &Path,
    on_disk: &BTreeMap<SegmentId, &SegmentSummary>,
    oldest_on_disk: Option<u64>,
    prefix: &mut bool,
    report: &mut Report,
) {
    let day = d.day;
    let mut missing = Vec::new();
    let mut listed = BTreeSet::new();
    for e in &d.doc.segments {
        let id = SegmentId::parse_file_name(&e.name).expect("checked by decode");
        listed.insert(id);
        let Some(s) = on_disk.get(&id) else {
            if seg_dir.join(&e.name).exists() {
                finding(
                    report,
                    &seg_dir.join(&e.name),
                    format!("is signed by the digest of {day} but cannot be read as a segment"),
                    true,
                );
            } else {
                missing.push(e);
            }
            continue;
        };
        if s.bytes != e.bytes {
            finding(
                report,
                &s.path,
                format!(
                    "has {} bytes, the signed digest of {day} says {}: the segment was \
                     truncated or extended",
                    s.bytes, e.bytes
                ),
                true,
            );
        } else if s.sha256.as_deref() != Some(e.sha256.as_str()) {
            finding(
                report,
                &s.path,
                format!(
                    "its SHA-256 is not the one the signed digest of {day} names: the segment \
                     was rewritten"
                ),
                true,
            );
        } else if (s.first_seq, s.count, s.last_hash.as_str())
            != (e.first_seq, e.count, e.final_hash.as_str())
        {
            finding(
                report,
                &s.path,
                format!(
                    "the signed digest of {day} describes this segment's seqs or final hash \
                     wrongly (a digest signed over false content)"
                ),
                true,
            );
        }
    }
    let all_gone = missing.len() == d.doc.segments.len();
    if *prefix && all_gone && oldest_on_disk.is_some_and(|o| d.doc.last_seq < o) {
        finding(
            report,
            &d.path,
            format!(
                "day {day}: its {} segments (seqs {}..={}) are gone: dropped by retention \
                 (see retention.log), or removed; the signed chain still accounts for them",
                d.doc.segments.len(),
                d.doc.first_seq,
                d.doc.last_seq
            ),
            false,
        );
    } else {
        *prefix = false;
        for e in missing {
            finding(
                report,
                &d.path,
                format!(
                    "day {day}: segment {} (seqs {}..={}) is missing: day {day} was removed \
                     or truncated",
                    e.name, e.first_seq, e.last_seq
                ),
                true,
            );
        }
    }
    for (id, s) in on_disk.range(
        SegmentId { day, part: 0 }..=SegmentId {
            day,
            part: u32::MAX,
        },
    ) {
        if !listed.contains(id) {
            finding(
                report,
                &s.path,
                format!(
                    "is not in the signed digest of {day}: it was added after the day was \
                     signed"
                ),
                true,
            );
        }
    }
}

/// When the oldest segment on disk is in no digest (retention dropped every
/// signed day), its header must continue the newest digest.
fn check_anchor(head: &Loaded, loaded: &[Loaded], anchor: &SegmentSummary, report: &mut Report) {
    let name = anchor
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if loaded
        .iter()
        .any(|d| d.doc.segments.iter().any(|s| s.name == name))
        || anchor.first_seq <= head.doc.last_seq
    {
        return;
    }
    let mut buf = [0u8; crate::log::format::HEADER_BYTES];
    let header = std::fs::File::open(&anchor.path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .ok()
        .and_then(|()| Header::decode(&buf).ok());
    let Some(h) = header else { return }; // reported by the segment checks
    if h.first_seq != head.doc.last_seq + 1 || hash_hex(&h.prev_hash) != head.doc.final_hash() {
        finding(
            report,
            &anchor.path,
            format!(
                "the oldest segment does not continue the newest digest ({}, up to seq {}): \
                 the log after the last signed day was replaced",
                head.day, head.doc.last_seq
            ),
            true,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &SigningKey) -> DailyDigest {
        DailyDigest {
            version: 1,
            day: "2026-11-23".into(),
            segments: vec![
                SegmentEntry {
                    name: "2026-11-23.0.seg".into(),
                    bytes: 4096,
                    sha256: "ab".repeat(32),
                    first_seq: 1,
                    last_seq: 10,
                    count: 10,
                    final_hash: "cd".repeat(32),
                },
                SegmentEntry {
                    name: "2026-11-23.1.seg".into(),
                    bytes: 208,
                    sha256: "ef".repeat(32),
                    first_seq: 11,
                    last_seq: 10,
                    count: 0,
                    final_hash: "cd".repeat(32),
                },
            ],
            first_seq: 1,
            last_seq: 10,
            prev_hash: "00".repeat(32),
            previous_digest: None,
            public_key: public_key_hex(&key.verifying_key()),
            created_at: "2026-11-24T00:01:01.000000Z".into(),
            vouched: None,
        }
    }

    #[test]
    fn the_canonical_form_is_compact_ordered_and_round_trips() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let d = sample(&key);
        let bytes = d.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with(r#"{"version":1,"day":"2026-11-23","segments":[{"name":"#));
        assert!(text.ends_with("\"created_at\":\"2026-11-24T00:01:01.000000Z\"}\n"));
        assert!(text.contains(r#""last_seq":10,"prev_hash":"#));
        assert!(text.contains(r#""previous_digest":null,"public_key":"#));
        assert_eq!(text.matches('\n').count(), 1);
        assert_eq!(DailyDigest::decode(&bytes).unwrap(), d);
    }

    #[test]
    fn non_canonical_or_inconsistent_digests_are_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let bytes = sample(&key).encode();
        let pretty = serde_json::to_vec_pretty(&sample(&key)).unwrap();
        assert!(DailyDigest::decode(&pretty)
            .unwrap_err()
            .contains("canonical"));
        let no_newline = &bytes[..bytes.len() - 1];
        assert!(DailyDigest::decode(no_newline).is_err());
        let extra = String::from_utf8(bytes.clone()).unwrap().replacen(
            "{\"version\":1,",
            "{\"version\":1,\"x\":1,",
            1,
        );
        assert!(DailyDigest::decode(extra.as_bytes()).is_err());
        let mut d = sample(&key);
        d.segments[1].first_seq = 12;
        d.segments[1].last_seq = 11;
        assert!(DailyDigest::decode(&d.encode())
            .unwrap_err()
            .contains("starts at seq 12"));
        let mut d = sample(&key);
        d.segments[0].name = "2026-11-22.0.seg".into();
        assert!(DailyDigest::decode(&d.encode()).is_err());
        let mut d = sample(&key);
        d.last_seq = 11;
        assert!(DailyDigest::decode(&d.encode()).is_err());
        // Seqs at the end of the range never overflow a check.
        let mut d = sample(&key);
        d.segments[0].first_seq = u64::MAX;
        d.segments[0].count = 1;
        d.segments[0].last_seq = u64::MAX;
        assert!(DailyDigest::decode(&d.encode()).is_err());
        let mut d = sample(&key);
        d.segments[0].sha256 = d.segments[0].sha256.to_uppercase();
        assert!(DailyDigest::decode(&d.encode()).is_err());
    }

    #[test]
    fn file_names_and_closed_days() {
        let day = parse_day("2026-11-23").unwrap();
        assert_eq!(digest_file_name(day), "2026-11-23.digest.json");
        assert_eq!(
            parse_file_name("2026-11-23.digest.sig"),
            Some((day, Kind::Sig))
        );
        assert_eq!(parse_file_name("2026-11-3.digest.json"), None);
        assert_eq!(parse_day("2026-11-31"), None);
        // 2026-11-24T00:00:00Z
        assert_eq!(end_of(day), 1_795_478_400_000_000);
        let info = |d: &str, part, sealed| SegmentInfo {
            id: SegmentId {
                day: parse_day(d).unwrap(),
                part,
            },
            path: PathBuf::new(),
            first_seq: 1,
            count: 0,
            bytes: 0,
            sealed,
        };
        let segs = vec![
            info("2026-11-22", 0, true),
            info("2026-11-23", 0, true),
            info("2026-11-23", 1, true),
        ];
        let end = end_of(day);
        let days = |now| {
            closed_days(&segs, now)
                .into_iter()
                .map(|(d, p)| (d.to_string(), p.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(days(end - 1), vec![("2026-11-22".to_string(), 1)]);
        assert_eq!(days(end + CLOSE_GRACE_MICROS - 1).len(), 1);
        assert_eq!(days(end + CLOSE_GRACE_MICROS).len(), 2);
        let mut open = segs.clone();
        open[2].sealed = false;
        assert_eq!(closed_days(&open, end + 86_400_000_000).len(), 1);
    }

    #[test]
    fn public_keys_parse_from_hex_or_a_file_and_signing_keys_must_be_private() {
        let tmp = tempfile::tempdir().unwrap();
        let key_path = tmp.path().join("k");
        let pub_path = tmp.path().join("k.pub");
        let public = generate_signing_key(&key_path, Some(&pub_path)).unwrap();
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = read_signing_key(&key_path).unwrap();
        assert_eq!(key.verifying_key(), public);
        let hex = public_key_hex(&public);
        assert_eq!(parse_public_key(&hex).unwrap(), public);
        assert_eq!(parse_public_key(&hex.to_uppercase()).unwrap(), public);
        assert_eq!(
            parse_public_key(pub_path.to_str().unwrap()).unwrap(),
            public
        );
        assert!(parse_public_key("nope").is_err());
        let err = generate_signing_key(&key_path, None).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_signing_key(&key_path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
