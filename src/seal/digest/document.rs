//! The digest document: [`DailyDigest`] and its canonical JSON bytes, the
//! entries it lists, and the file names under `DATA_DIR/digests/`. Pure
//! apart from [`digested_through`], which lists the directory.

use super::*;

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

pub(crate) fn is_hex(s: &str, len: usize) -> bool {
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

/// The two files of a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `YYYY-MM-DD.digest.json`, the document.
    Json,
    /// `YYYY-MM-DD.digest.sig`, its signature.
    Sig,
}

/// The day and kind of a digest file name, `None` for any other name.
pub(crate) fn parse_file_name(name: &str) -> Option<(Day, Kind)> {
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
    std::fs::read_dir(DataDir::new(data_dir).digests())
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_file_name(&e.file_name().to_string_lossy()))
        .filter(|(_, k)| *k == Kind::Json)
        .map(|(d, _)| d)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

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
}
