//! `[limits]`: the bounds of `stele serve` (body, batch, head sizes,
//! timeouts, connections, streams, the disk reserve), validated in one place
//! ([`Limits::validate`]).
//!
//! Owns the numbers only; the server applies them (and the log's write size
//! follows them: [`Limits::write_bytes_max`]).

/// Bytes an event may take in the log beyond its posted JSON: what Stele adds
/// (an `id` when none was posted, `risk_score` and up to 16 `risk_rules` of 32
/// bytes, the provenance's `ingested_by` and `client_addr` of up to 64 bytes
/// each) and its record's framing and stored prefix; its fields themselves
/// take no more encoded than as JSON (a length instead of a quoted key, a
/// timestamp as a number, `metadata` and change values as compact JSON).
pub const APPEND_BYTES_PER_EVENT: u64 = 1024;

/// The limits of `stele serve`. Every one has a default fit for one host;
/// each can be changed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted (bytes); larger bodies get 413.
    #[arg(long, default_value_t = Limits::DEFAULT.body_bytes_max)]
    pub body_bytes_max: usize,
    /// Most events in one ingest request.
    #[arg(long, default_value_t = Limits::DEFAULT.events_per_request_max)]
    pub events_per_request_max: usize,
    /// Largest request target (path and query, bytes); longer gets 414.
    #[arg(long, default_value_t = Limits::DEFAULT.url_bytes_max)]
    pub url_bytes_max: usize,
    /// Largest total of the request's header lines (bytes); more gets 431.
    #[arg(long, default_value_t = Limits::DEFAULT.header_bytes_max)]
    pub header_bytes_max: usize,
    /// Seconds a client has to send a request's head (slow clients are
    /// disconnected).
    #[arg(long, default_value_t = Limits::DEFAULT.header_read_timeout_secs)]
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take from its head to its response head
    /// (reading the body included); exceeded → 503 `request-timeout`.
    /// Streamed bodies (exports, streams) are not bounded by it.
    #[arg(long, default_value_t = Limits::DEFAULT.request_timeout_secs)]
    pub request_timeout_secs: u64,
    /// Seconds a response may wait for a client that takes no bytes at all
    /// (it stopped reading) before its connection is closed: frees the
    /// stream slot and buffers of SSE clients and exports nobody reads.
    #[arg(long, default_value_t = Limits::DEFAULT.write_stall_timeout_secs)]
    pub write_stall_timeout_secs: u64,
    /// Most connections served at once; further clients wait in the listen
    /// backlog until one closes.
    #[arg(long, default_value_t = Limits::DEFAULT.connections_max)]
    pub connections_max: usize,
    /// Most live streams (`/v1/stream`) at once; more get 503.
    #[arg(long, default_value_t = Limits::DEFAULT.streams_max)]
    pub streams_max: usize,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = Limits::DEFAULT.shutdown_grace_secs)]
    pub shutdown_grace_secs: u64,
    /// Bytes that must stay free on the data directory's filesystem: below
    /// it ingest answers 507 (reads keep working) until space is back.
    #[arg(long, default_value_t = Limits::DEFAULT.disk_reserve_bytes)]
    pub disk_reserve_bytes: u64,
}

impl Limits {
    /// The embedded defaults.
    pub const DEFAULT: Limits = Limits {
        body_bytes_max: 16 * 1024 * 1024,
        events_per_request_max: 10_000,
        url_bytes_max: 8 * 1024,
        header_bytes_max: 16 * 1024,
        header_read_timeout_secs: 10,
        request_timeout_secs: 30,
        write_stall_timeout_secs: 60,
        connections_max: 4096,
        streams_max: 1024,
        shutdown_grace_secs: 5,
        disk_reserve_bytes: 256 * 1024 * 1024,
    };

    /// Bytes the log may write at once: a request's events are one write
    /// (all or nothing), so this makes room for a whole body of
    /// `body_bytes_max` of events, each [`APPEND_BYTES_PER_EVENT`] more as
    /// stored than as posted, `events_per_request_max` of them; at least the
    /// log's default, at most its torn window (a larger body's events are
    /// refused with `413`, never half stored).
    pub fn write_bytes_max(&self) -> usize {
        let wanted = (self.body_bytes_max as u64)
            .saturating_add(self.events_per_request_max as u64 * APPEND_BYTES_PER_EVENT);
        wanted.clamp(
            crate::log::WRITE_BYTES_MAX_DEFAULT as u64,
            crate::log::TORN_WINDOW_BYTES,
        ) as usize
    }

    /// Checks every limit is usable; the error names the limit.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("body_bytes_max", self.body_bytes_max as u64),
            ("events_per_request_max", self.events_per_request_max as u64),
            ("url_bytes_max", self.url_bytes_max as u64),
            ("header_bytes_max", self.header_bytes_max as u64),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("write_stall_timeout_secs", self.write_stall_timeout_secs),
            ("connections_max", self.connections_max as u64),
            ("streams_max", self.streams_max as u64),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.url_bytes_max > 1024 * 1024 || self.header_bytes_max > 1024 * 1024 {
            return Err("url_bytes_max and header_bytes_max must be at most 1 MiB".into());
        }
        if self.connections_max > tokio::sync::Semaphore::MAX_PERMITS {
            return Err("connections_max is too large".into());
        }
        Ok(())
    }

    /// hyper's read buffer: room for the largest head we accept, so that
    /// heads over our limits reach us and get a problem+json answer.
    pub fn read_buffer_bytes(&self) -> usize {
        (self.url_bytes_max + self.header_bytes_max + 8 * 1024).max(8 * 1024)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_validated_by_name() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let zero = Limits {
            streams_max: 0,
            ..Limits::default()
        };
        assert_eq!(
            zero.validate(),
            Err("streams_max must be at least 1".to_string())
        );
        let huge = Limits {
            url_bytes_max: 2 << 20,
            ..Limits::default()
        };
        assert!(huge.validate().unwrap_err().contains("url_bytes_max"));
        assert!(Limits::default().read_buffer_bytes() > 24 * 1024);
    }
}
