//! Signed checkpoints of the chain head: `(seq, chain hash, time, key id)`
//! signed with the digest key, so the open day, and the newest days with it,
//! are covered by a signature too.
//!
//! Owns the checkpoint document (one canonical JSON line), its signature,
//! `DATA_DIR/checkpoint.json` (the newest one, replaced atomically) and the
//! witness interface. Never reads segments: what to sign comes from
//! [`Log::head`], the chain state the writer produced in memory.
//!
//! ```text
//! {"version":1,"seq":1042,"chain_hash":"<64 hex>","time":"2026-12-03T10:00:01.000000Z",
//!  "key_id":"<16 hex>","signature":"<128 hex>"}\n                  (one line on disk)
//!
//! signed message = "stele checkpoint v1\0" (20 bytes)
//!                ++ seq u64 LE ++ chain_hash (32) ++ time i64 LE (unix µs)
//!                ++ the signer's Ed25519 public key (32)
//! key_id         = first 8 bytes of SHA-256(public key), hex
//! ```
//!
//! Invariants:
//! 1. A checkpoint is signed only from [`Log::head`], published by the writer
//!    after the fdatasync that made `seq` durable: a checkpoint never covers
//!    a byte that a crash could still take back, and never a byte this
//!    process did not write or verify.
//! 2. A witness receives every checkpoint the local file does, before the
//!    local file is replaced; a checkpoint that could not reach a witness is
//!    counted and makes `/readyz` degraded, never stops ingest.
//! 3. A reader accepts only the canonical bytes (parse, re-encode, compare)
//!    and, to trust one, a signature by a key it was given.

use crate::datadir::DataDir;
use crate::log::format::{hash_hex, Hash};
use crate::log::{ChainHead, Log};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `version` this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;
/// Default interval between checkpoints while events arrive.
pub const INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Domain separation of the signed message.
const MAGIC: &[u8; 20] = b"stele checkpoint v1\0";

/// A signed checkpoint of the chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last durable seq it covers.
    pub seq: u64,
    /// The chain hash of that record.
    pub chain_hash: Hash,
    /// When it was signed (unix µs, UTC).
    pub time_micros: i64,
    /// [`key_id`] of the signer.
    pub key_id: String,
    /// Ed25519 signature of [`Checkpoint::message`].
    pub signature: [u8; 64],
}

/// The document's fields in their canonical order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    version: u32,
    seq: u64,
    chain_hash: String,
    time: String,
    key_id: String,
    signature: String,
}

/// The id a checkpoint names its signer by: the first 8 bytes of the
/// SHA-256 of its public key, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

fn parse_hash(s: &str) -> Option<Hash> {
    let mut h = [0u8; 32];
    (s.len() == 64 && hex::decode_to_slice(s, &mut h).is_ok()).then_some(h)
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn message(seq: u64, chain_hash: &Hash, time_micros: i64, key: &VerifyingKey) -> Vec<u8> {
        let mut m = Vec::with_capacity(20 + 8 + 32 + 8 + 32);
        m.extend_from_slice(MAGIC);
        m.extend_from_slice(&seq.to_le_bytes());
        m.extend_from_slice(chain_hash);
        m.extend_from_slice(&time_micros.to_le_bytes());
        m.extend_from_slice(key.as_bytes());
        m
    }

    /// Signs `head` at `time_micros`.
    pub fn sign(key: &SigningKey, head: ChainHead, time_micros: i64) -> Checkpoint {
        let public = key.verifying_key();
        let msg = Self::message(head.seq, &head.hash, time_micros, &public);
        Checkpoint {
            seq: head.seq,
            chain_hash: head.hash,
            time_micros,
            key_id: key_id(&public),
            signature: key.sign(&msg).to_bytes(),
        }
    }

    /// The canonical line, with its newline.
    pub fn encode(&self) -> String {
        let doc = Doc {
            version: CHECKPOINT_VERSION,
            seq: self.seq,
            chain_hash: hash_hex(&self.chain_hash),
            time: crate::event::format_micros(self.time_micros),
            key_id: self.key_id.clone(),
            signature: hex::encode(self.signature),
        };
        let mut s = serde_json::to_string(&doc).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses one canonical line (the newline optional).
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn decode(line: &str) -> Result<Checkpoint, String> {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let doc: Doc = serde_json::from_str(body).map_err(|e| format!("not a checkpoint: {e}"))?;
        if doc.version != CHECKPOINT_VERSION {
            return Err(format!(
                "checkpoint version {} is not known (this build reads {CHECKPOINT_VERSION})",
                doc.version
            ));
        }
        let chain_hash = parse_hash(&doc.chain_hash).ok_or("chain_hash is not 64 hex digits")?;
        let time_micros = crate::event::parse_timestamp(&doc.time)
            .map_err(|e| format!("time is not a timestamp: {e}"))?;
        let mut signature = [0u8; 64];
        if doc.signature.len() != 128
            || hex::decode_to_slice(&doc.signature, &mut signature).is_err()
        {
            return Err("signature is not 128 hex digits".into());
        }
        if doc.key_id.len() != 16 || hex::decode(&doc.key_id).is_err() {
            return Err("key_id is not 16 hex digits".into());
        }
        let cp = Checkpoint {
            seq: doc.seq,
            chain_hash,
            time_micros,
            key_id: doc.key_id,
            signature,
        };
        if cp.encode().trim_end() != body {
            return Err("not in canonical form (keys, order, spacing or hex case differ)".into());
        }
        Ok(cp)
    }

    /// Checks the signature with the one of `keys` whose id it names.
    ///
    /// # Errors
    /// When no given key has its key id, or the signature does not verify.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<(), String> {
        let Some(key) = keys.iter().find(|k| key_id(k) == self.key_id) else {
            return Err(format!(
                "signed by key {}, which is not a trusted key",
                self.key_id
            ));
        };
        let msg = Self::message(self.seq, &self.chain_hash, self.time_micros, key);
        key.verify(&msg, &Signature::from_bytes(&self.signature))
            .map_err(|_| "the signature does not verify: the checkpoint was altered".to_string())
    }
}

/// Reads every checkpoint line of a file (the local `checkpoint.json`, a
/// witness's day file, or a checkpoint saved anywhere). A last line cut
/// short (a witness write interrupted) is skipped; any other bad line is an
/// error.
///
/// # Errors
/// The file cannot be read, holds no checkpoint, or a line is not one.
pub fn read_file(path: &Path) -> Result<Vec<Checkpoint>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match Checkpoint::decode(line.trim()) {
            Ok(cp) => out.push(cp),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => return Err(format!("{} line {}: {e}", path.display(), i + 1)),
        }
    }
    if out.is_empty() {
        return Err(format!("{} holds no checkpoint", path.display()));
    }
    Ok(out)
}

/// The newest checkpoint in `DATA_DIR/checkpoint.json`, if the file exists.
pub fn read_local(data_dir: &Path) -> Option<Result<Checkpoint, String>> {
    let path = DataDir::new(data_dir).checkpoint();
    if !path.exists() {
        return None;
    }
    Some(read_file(&path).map(|mut v| v.pop().unwrap_or_else(|| unreachable!())))
}

/// Replaces `DATA_DIR/checkpoint.json` with `cp`: temp file, fsync, rename,
/// directory fsync.
///
/// # Errors
/// Any I/O error, with the file.
pub fn write_local(data_dir: &Path, cp: &Checkpoint) -> Result<(), String> {
    let target = DataDir::new(data_dir).checkpoint();
    crate::datadir::write_durably(&target, cp.encode().as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", target.display()))
}

/// Somewhere every checkpoint is also sent, off the data directory: a
/// directory on another filesystem or machine today, the object-storage
/// archive later.
pub trait Witness: Send + Sync {
    /// Records `cp` durably; returns once it is.
    ///
    /// # Errors
    /// A sentence naming the witness and the cause.
    fn record(&self, cp: &Checkpoint) -> Result<(), String>;
    /// The newest checkpoint it holds.
    ///
    /// # Errors
    /// When it cannot be read.
    fn latest(&self) -> Result<Option<Checkpoint>, String>;
    /// What to call it in messages.
    fn describe(&self) -> String;
}

/// A witness directory: one append-only file a UTC day,
/// `YYYY-MM-DD.checkpoints`, a checkpoint a line, fdatasynced per line.
#[derive(Debug, Clone)]
pub struct DirWitness {
    dir: PathBuf,
}

impl DirWitness {
    /// A witness writing into `dir` (created when missing).
    pub fn new(dir: PathBuf) -> DirWitness {
        DirWitness { dir }
    }

    fn day_files(&self) -> Result<Vec<PathBuf>, String> {
        let mut files = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(e) => return Err(format!("cannot list {}: {e}", self.dir.display())),
        };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "checkpoints") {
                files.push(p);
            }
        }
        files.sort();
        Ok(files)
    }
}

impl Witness for DirWitness {
    fn record(&self, cp: &Checkpoint) -> Result<(), String> {
        let day = crate::log::format::Day::from_micros(cp.time_micros);
        let path = self.dir.join(format!("{day}.checkpoints"));
        let fail = |e: std::io::Error| format!("witness {}: {e}", path.display());
        let created = !path.exists();
        if created {
            std::fs::create_dir_all(&self.dir).map_err(fail)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&path)
            .map_err(fail)?;
        f.write_all(cp.encode().as_bytes()).map_err(fail)?;
        f.sync_data().map_err(fail)?;
        if created {
            crate::log::fsync_dir(&self.dir).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn latest(&self) -> Result<Option<Checkpoint>, String> {
        for path in self.day_files()?.iter().rev() {
            if let Some(cp) = read_file(path)?.pop() {
                return Ok(Some(cp));
            }
        }
        Ok(None)
    }

    fn describe(&self) -> String {
        format!("witness directory {}", self.dir.display())
    }
}

/// Counters and state of the checkpointer (for `/metrics`, `/readyz` and
/// `GET /v1/checkpoint`).
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints signed and written locally.
    pub written: AtomicU64,
    /// Checkpoints that could not be written locally.
    pub failures: AtomicU64,
    /// Checkpoints a witness did not take.
    pub witness_failures: AtomicU64,
    /// The newest checkpoint written.
    pub latest: Mutex<Option<Checkpoint>>,
    /// The last error (local or witness), cleared by the next success.
    pub error: Mutex<Option<String>>,
}

impl CheckpointStats {
    /// The newest checkpoint written by this process.
    pub fn latest(&self) -> Option<Checkpoint> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last error, if the last checkpoint failed somewhere.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Signs the head if it moved past `last`; writes it to every witness, then
/// locally. Returns the new checkpoint.
fn checkpoint_once(
    data_dir: &Path,
    log: &Log,
    key: &SigningKey,
    witnesses: &[Box<dyn Witness>],
    now_micros: i64,
    last: u64,
    stats: &CheckpointStats,
) -> Option<Checkpoint> {
    let head = log.head();
    if head.seq == 0 || head.seq <= last {
        return None;
    }
    let cp = Checkpoint::sign(key, head, now_micros);
    let mut error = None;
    for w in witnesses {
        if let Err(e) = w.record(&cp) {
            stats.witness_failures.fetch_add(1, Ordering::Relaxed);
            error = Some(e);
        }
    }
    if let Err(e) = write_local(data_dir, &cp) {
        stats.failures.fetch_add(1, Ordering::Relaxed);
        error = Some(e);
    } else {
        stats.written.fetch_add(1, Ordering::Relaxed);
    }
    let mut said = stats.error.lock().unwrap_or_else(|p| p.into_inner());
    if error.is_some() && *said != error {
        tracing::error!(
            "Checkpoint of seq {} not fully recorded: {}.",
            cp.seq,
            error.as_deref().unwrap_or_default()
        );
    }
    *said = error;
    drop(said);
    *stats.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(cp.clone());
    Some(cp)
}

/// The checkpointer thread of `stele serve`: signs the chain head every
/// interval while it moves, and once more when stopped.
pub struct Checkpointer {
    worker: super::worker::Worker,
    stats: Arc<CheckpointStats>,
}

impl Checkpointer {
    /// Starts the thread.
    pub fn start(
        data_dir: PathBuf,
        log: Arc<Log>,
        clock: Arc<dyn crate::clock::Clock>,
        key: SigningKey,
        witnesses: Vec<Box<dyn Witness>>,
        interval: Duration,
        status: Arc<super::SealStatus>,
    ) -> Checkpointer {
        let stats = Arc::new(CheckpointStats::default());
        let counters = stats.clone();
        let spawned = super::worker::Worker::spawn("stele-checkpointer", move |rx| {
            let mut last = 0;
            let opened = log.opened_head().seq;
            let mut paused_said = false;
            loop {
                let stopping = !matches!(
                    rx.recv_timeout(interval),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                );
                if !status.may_checkpoint(opened) {
                    if status.started_check_done() && !paused_said {
                        let why = format!(
                            "checkpoints are paused: the records this process inherited \
                                 (through seq {opened}) are not verified, and a checkpoint of a \
                                 later head would vouch for them (see /readyz; resolve with \
                                 `stele sign-days`)"
                        );
                        tracing::error!("{why}.");
                        *counters.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                        paused_said = true;
                    }
                    if stopping {
                        break;
                    }
                    continue;
                }
                let now = clock.now_micros();
                if let Some(cp) =
                    checkpoint_once(&data_dir, &log, &key, &witnesses, now, last, &counters)
                {
                    last = cp.seq;
                }
                if stopping {
                    break;
                }
            }
        });
        let worker = spawned.unwrap_or_else(|e| {
            tracing::error!("Could not start the checkpointer thread: {e}; no checkpoints.");
            *stats.error.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("the checkpointer thread did not start: {e}"));
            super::worker::Worker::idle()
        });
        Checkpointer { worker, stats }
    }

    /// The thread's counters and newest checkpoint.
    pub fn stats(&self) -> Arc<CheckpointStats> {
        self.stats.clone()
    }

    /// Signs a last checkpoint of the head and stops the thread.
    pub fn stop(self) {
        self.worker.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    #[test]
    fn a_checkpoint_round_trips_canonically_and_its_signature_binds_every_field() {
        let cp = Checkpoint::sign(
            &key(),
            ChainHead {
                seq: 42,
                hash: [7; 32],
            },
            1_795_478_340_000_001,
        );
        let line = cp.encode();
        assert!(line.ends_with('\n'));
        assert_eq!(Checkpoint::decode(&line).unwrap(), cp);
        let trusted = [key().verifying_key()];
        cp.verify(&trusted).unwrap();
        // Every field is covered.
        for edit in [
            line.replace("\"seq\":42", "\"seq\":43"),
            line.replace(&hash_hex(&[7; 32]), &hash_hex(&[8; 32])),
            line.replace(".000001Z", ".000002Z"),
        ] {
            let forged = Checkpoint::decode(&edit).unwrap();
            assert!(forged.verify(&trusted).is_err(), "{edit}");
        }
        // Another key is not trusted, whatever the document says.
        let other = SigningKey::from_bytes(&[1; 32]);
        assert!(cp.verify(&[other.verifying_key()]).is_err());
        // Non-canonical forms are refused.
        assert!(Checkpoint::decode(&line.replace(':', ": ")).is_err());
        assert!(Checkpoint::decode(&line.to_uppercase()).is_err());
        assert!(Checkpoint::decode(&line.replace("}", ",\"x\":1}")).is_err());
    }

    #[test]
    fn a_witness_directory_appends_and_returns_the_newest_skipping_a_torn_last_line() {
        let tmp = tempfile::tempdir().unwrap();
        let w = DirWitness::new(tmp.path().join("w"));
        assert_eq!(w.latest().unwrap(), None);
        let day = 1_795_478_340_000_000;
        for seq in 1..=3 {
            let cp = Checkpoint::sign(&key(), ChainHead { seq, hash: [1; 32] }, day + seq as i64);
            w.record(&cp).unwrap();
        }
        assert_eq!(w.latest().unwrap().unwrap().seq, 3);
        let file = w.day_files().unwrap().pop().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(b"{\"version\":1,\"seq\":4,\"cha").unwrap();
        assert_eq!(w.latest().unwrap().unwrap().seq, 3);
        assert_eq!(read_file(&file).unwrap().len(), 3);
    }
}
