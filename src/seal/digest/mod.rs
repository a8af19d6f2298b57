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
//! Also owns the signing key (`stele keygen --signing`, loading it) and the
//! digester thread `stele serve` runs. The digest half of `stele verify`
//! (checking the chain) is `crate::verify::digests`, which reads what this
//! module writes; nothing here depends on verify.
//!
//! Module map:
//! - `document`: the digest document, its canonical bytes and file names.
//! - `keys`: the signing key and public keys.
//! - `writer`: signing closed days, and [`Digester`], the thread.
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

use crate::clock::Clock;
use crate::datadir::{sha256_hex, DataDir};
use crate::log::format::{hash_hex, Day, SegmentId};
use crate::log::{Log, SegmentInfo, WitnessedSegment};
use crate::seal::checkpoint::Checkpoint;
use crate::seal::inherited::{verify_inherited, Inherited};
use crate::seal::SealStatus;
pub use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `version` this build writes and reads.
pub const DIGEST_VERSION: u32 = 2;
/// The oldest `version` this build reads (1: no `vouched` key).
pub const DIGEST_VERSION_OLDEST: u32 = 1;
/// How long after a day's end its sealed segments count as final without a
/// segment of a later day (see invariant 1).
pub const CLOSE_GRACE_MICROS: i64 = 60_000_000;
/// How often `stele serve` looks for days to sign (it also wakes right after
/// each day closes).
pub const PERIOD_DEFAULT: Duration = Duration::from_secs(60);
/// The environment variable naming the signing key file.
pub const SIGNING_KEY_ENV: &str = "STELE_SIGNING_KEY_FILE";

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

impl From<crate::datadir::IoError> for DigestError {
    fn from(e: crate::datadir::IoError) -> DigestError {
        DigestError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

fn invalid(path: &Path, what: impl Into<String>) -> DigestError {
    DigestError::Invalid {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

mod document;
mod keys;
mod writer;

pub use document::*;
pub use keys::*;
pub use writer::*;
