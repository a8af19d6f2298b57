//! The log's settings: every limit, its default and its range.

use super::error::{Error, Result};
use super::{
    dict, BATCH_EVENTS_MAX_DEFAULT, QUEUE_REQUESTS_MAX_DEFAULT, SEGMENT_BYTES_MAX_DEFAULT,
    SEGMENT_BYTES_MAX_MIN, TORN_WINDOW_BYTES, WRITE_BYTES_MAX_DEFAULT,
};
use crate::event;

/// Smallest `dict_sample_bytes` other than 0 (zstd needs samples to train from;
/// the first dictionary is trained from a quarter of them, and a training that
/// fails is tried again with more).
pub const DICT_SAMPLE_BYTES_MIN: u64 = 16 * 1024;

/// What recovery does when it finds damage (not a torn tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open, naming the file, offset and seq (the default).
    #[default]
    Strict,
    /// Move damaged bytes to `DATA_DIR/quarantine/`, log what was accepted,
    /// and append after the damage. Chosen by the operator, never implied.
    Salvage,
}

impl std::str::FromStr for RecoveryMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "strict" => Ok(RecoveryMode::Strict),
            "salvage" => Ok(RecoveryMode::Salvage),
            other => Err(format!(
                "unknown recovery mode {other:?}; expected \"strict\" or \"salvage\""
            )),
        }
    }
}

/// The log's settings. Every limit is here, with its default above.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is sealed once it would grow past this (bytes).
    pub segment_bytes_max: u64,
    /// At most this many bytes are written per fsync.
    pub write_bytes_max: usize,
    /// At most this many events per append request.
    pub batch_events_max: usize,
    /// At most this many requests wait for the writer; more wait to enqueue.
    pub queue_requests_max: usize,
    /// What to do with damage found at open.
    pub recovery: RecoveryMode,
    /// The highest seq that evidence kept outside the segments (a signed
    /// checkpoint, the indexes, the digests) shows was acknowledged; 0 when
    /// there is none. Recovery never treats a record at or below it as a
    /// torn tail, and a log that ends before it was cut: damage, not a crash
    /// (see `crate::seal::acknowledged_through`).
    pub acked_through: u64,
    /// Bytes of sampled payloads a compression dictionary is trained from
    /// (`dict::SAMPLE_BYTES_DEFAULT`); 0 stores every record uncompressed.
    pub dict_sample_bytes: usize,
    /// Bytes of encoded events the tail keeps in memory for the followers
    /// (`tail::TAIL_BYTES_DEFAULT`); 0 keeps none (they read the segments).
    pub tail_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            write_bytes_max: WRITE_BYTES_MAX_DEFAULT,
            batch_events_max: BATCH_EVENTS_MAX_DEFAULT,
            queue_requests_max: QUEUE_REQUESTS_MAX_DEFAULT,
            recovery: RecoveryMode::Strict,
            acked_through: 0,
            dict_sample_bytes: dict::SAMPLE_BYTES_DEFAULT,
            tail_bytes: super::TAIL_BYTES_DEFAULT,
        }
    }
}

impl LogConfig {
    pub(super) fn validate(&self) -> Result<()> {
        let check = |what, got: u64, min: u64, max: u64| {
            if got < min || got > max {
                Err(Error::LimitExceeded { what, got, max })
            } else {
                Ok(())
            }
        };
        check(
            "segment_bytes_max",
            self.segment_bytes_max,
            SEGMENT_BYTES_MAX_MIN,
            1 << 40,
        )?;
        check(
            "write_bytes_max",
            self.write_bytes_max as u64,
            event::EVENT_BYTES_MAX as u64 * 2,
            TORN_WINDOW_BYTES,
        )?;
        check(
            "batch_events_max",
            self.batch_events_max as u64,
            1,
            1_000_000,
        )?;
        check(
            "queue_requests_max",
            self.queue_requests_max as u64,
            1,
            1_000_000,
        )?;
        check(
            "tail_bytes",
            self.tail_bytes as u64,
            0,
            super::TAIL_BYTES_MAX as u64,
        )?;
        if self.dict_sample_bytes != 0 {
            check(
                "dict_sample_bytes",
                self.dict_sample_bytes as u64,
                DICT_SAMPLE_BYTES_MIN,
                256 << 20,
            )?;
        }
        Ok(())
    }
}
