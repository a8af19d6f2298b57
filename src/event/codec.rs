//! The stored binary form: bincode 2 of [`Event`], [`Provenance`] and the
//! `(seq, received_at)` prefix, and the decoder of a record payload by format version.
//! Never touches JSON.

use bincode::enc::write::{SizeWriter, Writer};
use bincode::error::EncodeError;

use super::*;

/// The bincode configuration of the on-disk format: `bincode::config::standard()`
/// (little-endian, variable-length integers, no limit).
pub const fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// A bincode writer appending to a `Vec<u8>`; it never fails.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends `value` to `out`. Encoding the types of this module into a vector cannot
/// fail (no limit is configured, and no field has a fallible encoding).
fn encode_append<T: bincode::Encode>(value: &T, out: &mut Vec<u8>) {
    if let Err(err) = bincode::encode_into_writer(value, VecWriter(out), bincode_config()) {
        unreachable!("bincode encoding into a Vec is infallible: {err}");
    }
}

/// Appends the bincode encoding of `ev` to `out`.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) {
    encode_append(ev, out);
}

/// Appends the bincode encoding of `by` to `out`: what follows the event in a format
/// version 2 and 3 record.
pub fn encode_provenance(by: &Provenance, out: &mut Vec<u8>) {
    encode_append(by, out);
}

/// The most bytes [`encode_stored_prefix`] appends: bincode's variable-length integers
/// take at most 9 bytes for a `u64` and for a (zigzag) `i64`, a marker byte and 8 bytes;
/// 20 leaves slack. The log counts it per record when it bounds a write.
pub const STORED_PREFIX_BYTES_MAX: usize = 20;

/// Appends the bincode encoding of the two leading fields of a [`StoredEvent`] (`seq`,
/// `received_at`) to `out`. Followed by [`encode_event`] and [`encode_provenance`], the
/// result is byte for byte a format version 3 record payload.
pub fn encode_stored_prefix(seq: u64, received_at: i64, out: &mut Vec<u8>) {
    encode_append(&(seq, received_at), out);
}

/// The length of the bincode encoding of `ev`, in bytes, without allocating.
pub fn encoded_len(ev: &Event) -> usize {
    let mut writer = SizeWriter::default();
    match bincode::encode_into_writer(ev, &mut writer, bincode_config()) {
        Ok(()) => writer.bytes_written,
        // Unreachable (see `encode_append`); report "too large" rather than panic.
        Err(_) => usize::MAX,
    }
}

/// The bincode decode limit of a [`StoredEvent`]. bincode counts the *in-memory* size
/// it is about to allocate: string bytes (at most the encoded size), plus, while
/// `changes` is being decoded, `size_of::<Change>()` for every entry not yet decoded.
/// So the limit is the largest encoded event, plus room for the largest `changes`
/// vector, plus the largest provenance, plus slack for the `seq`/`received_at` prefix.
const DECODE_LIMIT_BYTES: usize = EVENT_BYTES_MAX
    + CHANGES_COUNT_MAX * std::mem::size_of::<Change>()
    + RISK_RULES_MAX * (std::mem::size_of::<String>() + RISK_RULE_BYTES_MAX)
    + INGESTED_BY_BYTES_MAX
    + CLIENT_ADDR_BYTES_MAX
    + 64;

/// Decodes a [`StoredEvent`] from exactly `bytes`, a record payload of a segment of
/// format `version`: version 1 payloads are `(seq, received_at, event)` (the result has
/// no provenance), version 2 payloads `(seq, received_at, event, provenance)`, both with
/// the event in its old layout ([`LegacyEvent`]); version 3 payloads are version 2's with
/// the event's version 3 fields after `metadata`.
///
/// Uses [`bincode_config`] with an allocation limit a little above [`EVENT_BYTES_MAX`]
/// (enough for any valid event), so corrupt length prefixes cannot trigger huge
/// allocations.
///
/// # Errors
///
/// A message if the bytes are not a valid encoding of that version (truncated, bad
/// UTF-8, unknown enum discriminant, over the limit), if bytes are left over after it,
/// or if the version is not one this build reads.
pub fn decode_stored(bytes: &[u8], version: u16) -> Result<StoredEvent, String> {
    let config = bincode_config().with_limit::<{ DECODE_LIMIT_BYTES }>();
    let failed = |err: bincode::error::DecodeError| format!("cannot decode stored event: {err}");
    let (stored, used) = match version {
        1 => {
            let ((seq, received_at, LegacyEvent(event)), used) =
                bincode::decode_from_slice::<(u64, i64, LegacyEvent), _>(bytes, config)
                    .map_err(failed)?;
            let stored = StoredEvent {
                seq,
                received_at,
                event,
                provenance: None,
            };
            (stored, used)
        }
        2 => {
            let ((seq, received_at, LegacyEvent(event), by), used) =
                bincode::decode_from_slice::<(u64, i64, LegacyEvent, Provenance), _>(bytes, config)
                    .map_err(failed)?;
            let stored = StoredEvent {
                seq,
                received_at,
                event,
                provenance: Some(by),
            };
            (stored, used)
        }
        // Versions 4 to 7 changed the segment (its dictionary, the form of its
        // compressed records, where chain hashes are stored), not the payload.
        3..=7 => {
            let ((seq, received_at, event, by), used) =
                bincode::decode_from_slice::<(u64, i64, Event, Provenance), _>(bytes, config)
                    .map_err(failed)?;
            let stored = StoredEvent {
                seq,
                received_at,
                event,
                provenance: Some(by),
            };
            (stored, used)
        }
        other => {
            return Err(format!(
                "cannot decode stored event: format version {other} is not one this build reads"
            ))
        }
    };
    if used != bytes.len() {
        return Err(format!(
            "cannot decode stored event: {} trailing bytes after {used} bytes of event",
            bytes.len() - used
        ));
    }
    Ok(stored)
}

/// An [`Event`] in the layout of format versions 1 and 2: the fields up to `metadata`,
/// in order. The fields format version 3 added (`process_name` …) are absent.
struct LegacyEvent(Event);

impl<Ctx> bincode::Decode<Ctx> for LegacyEvent {
    fn decode<D: bincode::de::Decoder<Context = Ctx>>(
        d: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        use bincode::Decode as De;
        // Struct expression fields are evaluated in the order written: on-disk order.
        Ok(LegacyEvent(Event {
            id: De::decode(d)?,
            timestamp: De::decode(d)?,
            action: De::decode(d)?,
            actor: De::decode(d)?,
            tenant: De::decode(d)?,
            category: De::decode(d)?,
            source: De::decode(d)?,
            status: De::decode(d)?,
            severity: De::decode(d)?,
            entity_type: De::decode(d)?,
            entity_id: De::decode(d)?,
            entity_name: De::decode(d)?,
            user_id: De::decode(d)?,
            user_name: De::decode(d)?,
            session_id: De::decode(d)?,
            correlation_id: De::decode(d)?,
            ip: De::decode(d)?,
            user_agent: De::decode(d)?,
            risk_score: De::decode(d)?,
            duration_ms: De::decode(d)?,
            description: De::decode(d)?,
            changes: De::decode(d)?,
            metadata: De::decode(d)?,
            ..Event::default()
        }))
    }
}

/// Decodes the two leading fields of an encoded [`StoredEvent`], `(seq, received_at)`
/// (what [`encode_stored_prefix`] writes), and the bytes they take.
///
/// # Errors
///
/// A message if `bytes` does not start with two valid varints.
pub fn decode_stored_prefix(bytes: &[u8]) -> Result<((u64, i64), usize), String> {
    bincode::decode_from_slice::<(u64, i64), _>(bytes, bincode_config())
        .map_err(|err| format!("cannot decode the seq and time of a stored event: {err}"))
}

/// Decodes only the leading `seq` of an encoded [`StoredEvent`] (a cheap plausibility
/// check for frame scanning; the rest of the bytes are not looked at).
///
/// # Errors
///
/// A message if `bytes` does not start with a valid varint.
pub fn decode_stored_seq(bytes: &[u8]) -> Result<u64, String> {
    bincode::decode_from_slice::<u64, _>(bytes, bincode_config())
        .map(|(seq, _)| seq)
        .map_err(|err| format!("cannot decode the seq of a stored event: {err}"))
}
