//! Lock-free latency histograms, encoded by `prometheus-client`.
//!
//! Buckets are fixed (seconds, from 50 µs to 10 s) so every histogram of the
//! daemon is comparable and recording is one atomic add per bucket hit. A
//! [`Histogram`] is a `prometheus-client` metric ([`EncodeMetric`]): the
//! `/metrics` collector (`server::metrics`) hands it to the crate's encoder,
//! which writes the `_bucket`, `_sum` and `_count` series.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
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
}

impl EncodeMetric for Histogram {
    /// The buckets (upper bound in seconds, non-cumulative count: the
    /// encoder accumulates them), the sum in seconds and the count; `+Inf`
    /// is the count (observations above 10 s are only there).
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BUCKETS_MICROS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| (*bound as f64 / 1e6, n.load(Relaxed)))
            .collect();
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, self.count.load(Relaxed), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{prometheus_text, DescriptorEncoder};
    use prometheus_client::registry::Registry;
    use std::sync::Arc;

    /// `h` as the exposition of a family `name` (with `route="a"` when
    /// `labelled`).
    fn render(h: Histogram, name: &'static str, labelled: bool) -> String {
        #[derive(Debug)]
        struct One(Histogram, &'static str, bool);
        impl Collector for One {
            fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
                let mut m = enc.encode_descriptor(self.1, "Help.", None, self.0.metric_type())?;
                if self.2 {
                    self.0.encode(m.encode_family(&[("route", "a")])?)
                } else {
                    self.0.encode(m)
                }
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::new(One(h, name, labelled))));
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn buckets_are_cumulative_and_inf_counts_everything() {
        let h = Histogram::default();
        h.observe_micros(40); // first bucket
        h.observe_micros(50); // bounds are inclusive
        h.observe_micros(700); // le=0.001
        h.observe_micros(60_000_000); // only +Inf
        let out = render(h, "x_seconds", true);
        assert!(out.starts_with(
            "# HELP x_seconds Help.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{route=\"a\",le=\"5e-05\"} 2\n\
             x_seconds_bucket{route=\"a\",le=\"0.0001\"} 2\n"
        ));
        for line in [
            "x_seconds_bucket{route=\"a\",le=\"0.0005\"} 2\n",
            "x_seconds_bucket{route=\"a\",le=\"0.001\"} 3\n",
            "x_seconds_bucket{route=\"a\",le=\"10\"} 3\n",
            "x_seconds_bucket{route=\"a\",le=\"+Inf\"} 4\n",
            "x_seconds_sum{route=\"a\"} 60.00079\n",
            "x_seconds_count{route=\"a\"} 4\n",
        ] {
            assert!(out.contains(line), "{line:?} in\n{out}");
        }
        assert_eq!(out.lines().count(), 2 + BUCKETS_MICROS.len() + 3, "{out}");
        let bare = render(Histogram::default(), "y", false);
        assert!(bare.contains("\ny_bucket{le=\"+Inf\"} 0\n"), "{bare}");
        assert!(bare.contains("\ny_sum 0.0\n"), "{bare}");
        assert!(bare.ends_with("\ny_count 0\n"), "{bare}");
    }
}
