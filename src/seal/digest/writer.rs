//! Signing closed days: [`write_witnessed_digests`] writes the digests the
//! invariants allow (read-only, through [`crate::datadir::write_durably`]),
//! and [`Digester`] is the thread of `stele serve` that runs it.

use super::*;

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
    Ok(
        read_head(&DataDir::new(data_dir).digests(), Some(key))?
            .map(|h| (h.last_seq, h.final_hash)),
    )
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
    let bytes = std::fs::read(DataDir::new(data_dir).digests().join(digest_file_name(day))).ok()?;
    DailyDigest::decode(&bytes).ok().map(|d| d.last_seq)
}

/// The segment entries of every digest whose signature verifies with
/// `key` (the scrubber's references).
pub fn load_signed_entries(data_dir: &Path, key: &VerifyingKey) -> Vec<SegmentEntry> {
    let dir = DataDir::new(data_dir).digests();
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
    crate::log::segment::SegmentFile::open(path)
        .map_err(io("open", path))?
        .header()
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
    crate::datadir::write_durably(&target, bytes, 0o444)?;
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
    let dir = DataDir::new(data_dir).digests();
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        crate::datadir::fsync_dir(data_dir)?;
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

/// The digester thread of `stele serve`: signs due days at start (after the
/// writer sealed a day that ended while no Stele ran), every period, and right
/// after each day closes.
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
            // A day that ended while no Stele ran is sealed before the first run
            // (the writer would seal it after a second idle), so that the first
            // run signs it or reports it unsigned with the days before it.
            if let Err(e) = log.rotate_if_day_over() {
                tracing::error!("Could not seal the finished day's segment: {e}.");
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
            evicted: false,
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
}
