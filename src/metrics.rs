//! Lock-free latency histograms rendered in the Prometheus text format.
//!
//! Buckets are fixed (seconds, from 50 µs to 10 s) so every histogram of the
//! daemon is comparable and recording is one atomic add per bucket hit.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (`+Inf` is implicit).
pub const BUCKETS_MICROS: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram: non-cumulative bucket counts, a sum and a count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_MICROS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.observe_micros(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Records one observation given in microseconds.
    pub fn observe_micros(&self, micros: u64) {
        if let Some(i) = BUCKETS_MICROS.iter().position(|&b| micros <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add(micros, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Writes the `_bucket`, `_sum` and `_count` series of `name`, with
    /// `labels` (already formatted, e.g. `route="list"`, or empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_MICROS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(
            out,
            "{name}_sum{} {:.6}",
            braces(labels),
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inf_counts_everything() {
        let h = Histogram::default();
        h.observe_micros(40); // first bucket
        h.observe_micros(50); // bounds are inclusive
        h.observe_micros(700); // le=0.001
        h.observe_micros(60_000_000); // only +Inf
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "route=\"a\"");
        assert!(
            out.contains("x_seconds_bucket{route=\"a\",le=\"0.00005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"a\",le=\"0.0005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"a\",le=\"0.001\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"a\",le=\"10\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"a\",le=\"+Inf\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_sum{route=\"a\"} 60.000790\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{route=\"a\"} 4\n"), "{out}");
        let mut bare = String::new();
        Histogram::default().render(&mut bare, "y", "");
        assert!(bare.contains("y_bucket{le=\"+Inf\"} 0\n"), "{bare}");
        assert!(bare.contains("y_count 0\n"), "{bare}");
    }
}
