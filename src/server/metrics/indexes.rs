//! `/metrics` families of the indexes and the answer caches: the key index
//! (its trees, runs and filters), the statistics partials and their numbered
//! values, the kept renderings of pages. Read at scrape time from the
//! engine's own counters; never changes them.

use super::{counter, gauge, Scrape};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use std::fmt;

/// A counter family with one `result` label, `hit` and `miss`.
fn hit_miss(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    hits: u64,
    misses: u64,
) -> fmt::Result {
    let mut f = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (result, n) in [("hit", hits), ("miss", misses)] {
        ConstCounter::new(n).encode(f.encode_family(&[("result", result)])?)?;
    }
    Ok(())
}

impl Scrape {
    /// The key index, the statistics partials and values, the kept renderings.
    pub(super) fn indexes(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let app = &*self.0;
        let idx = app.engine.indexes();
        if let Ok(kv) = idx.kv.stats() {
            gauge(
                enc,
                "stele_kv_packed_runs",
                "Run files of the key index (the sorted keys of one generation, or of four merged).",
                kv.runs,
            )?;
            gauge(
            enc,
            "stele_kv_unpacked_seqs",
            "Indexed seqs whose keys are in memory, not packed yet (the newest ones, at most about 16,384 plus one apply).",
            kv.unpacked_seqs,
        )?;
            gauge(
                enc,
                "stele_kv_generations",
                "Generations of the key index in memory (one to three: a closed one waits for its packing).",
                kv.generations,
            )?;
            gauge(
                enc,
                "stele_kv_filter_bytes",
                "Bytes of the packed runs' Bloom filters (held in memory).",
                kv.filter_bytes,
            )?;
            gauge(
                enc,
                "stele_kv_disk_bytes",
                "Bytes of the key index's files (sled's and the run files).",
                kv.disk_bytes,
            )?;
        }
        let partials = idx.text.partials_stats();
        hit_miss(
        enc,
        "stele_stats_partials_lookups",
        "Segments a statistics question counted from the cache of per-segment partials (hit) or had to read (miss).",
        partials.hits,
        partials.misses,
    )?;
        counter(
        enc,
        "stele_stats_partials_evictions",
        "Partials dropped: least recently used past the bound, or of segments merged away or changed by deletes.",
        partials.evictions,
    )?;
        gauge(
            enc,
            "stele_stats_partials_entries",
            "Per-segment partials cached.",
            partials.entries,
        )?;
        gauge(
            enc,
            "stele_stats_partials_bytes",
            "Estimated bytes of the cached per-segment partials (bounded).",
            partials.bytes,
        )?;
        let values = idx.text.values_stats();
        gauge(
            enc,
            "stele_stats_values",
            "Values of the statistics columns numbered for the partials (over every column).",
            values.values,
        )?;
        gauge(
            enc,
            "stele_stats_values_bytes",
            "Estimated bytes of the numbered values (bounded between questions).",
            values.bytes,
        )?;
        counter(
            enc,
            "stele_stats_values_resets",
            "Dicts of numbered values replaced by empty ones to stay within their bound.",
            values.resets,
        )?;
        let rendered = app.engine.rendered_stats();
        hit_miss(
        enc,
        "stele_query_rendered_lookups",
        "Events of listing pages answered from a kept rendering (hit) or read from the log and rendered (miss).",
        rendered.hits,
        rendered.misses,
    )?;
        gauge(
            enc,
            "stele_query_rendered_entries",
            "Events' JSON renderings kept for listing pages.",
            rendered.entries,
        )?;
        gauge(
            enc,
            "stele_query_rendered_bytes",
            "Estimated bytes of the kept renderings (bounded).",
            rendered.bytes,
        )?;
        Ok(())
    }
}
