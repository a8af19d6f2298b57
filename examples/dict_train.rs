//! `dict_train`: what a compression dictionary's sample bytes and size buy, and what
//! its training costs (README "Performance", the quick first dictionary).
//!
//! Reads the first N events of an NDJSON file (the peer benchmark's workload:
//! `scripts/bench-peers.sh` writes it under `OUT/work/`), encodes each as the log stores
//! its payload (the event, then a loopback provenance), trains dictionaries from the
//! first payloads for several sample sizes (`zstd::dict::from_samples`, as the
//! `stele-dict` thread does) and compresses the last 20,000 with each, as the writer
//! does (`Dict::compress`, level 3, compact frames).
//!
//! ```sh
//! cargo run --release --example dict_train -- WORK/events-1000000-359966.ndjson 100000
//! ```
use std::io::BufRead;
use std::time::Instant;
use stele::event::{encode_event, encode_provenance, parse_event, Provenance};
use stele::log::dict::{compressor, Dict};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let n: usize = args[2].parse().unwrap();
    assert!(
        n > 20_000 + (8 << 20) / 300,
        "N must leave 20,000 payloads after 8 MiB of samples"
    );
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let by = Provenance {
        ingested_by: "loopback".into(),
        client_addr: Some("127.0.0.1".into()),
    };
    let mut payloads = Vec::with_capacity(n);
    for line in f.lines().take(n) {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let ev = parse_event(&v, || "x".into()).unwrap();
        let mut p = Vec::new();
        encode_event(&ev, &mut p);
        encode_provenance(&by, &mut p);
        payloads.push(p);
    }
    let raw: usize = payloads.iter().map(Vec::len).sum();
    println!(
        "{} payloads, {:.1} B each",
        payloads.len(),
        raw as f64 / n as f64
    );
    // Compressed: the last 20,000 payloads, never among the samples of the sizes tried.
    let test = &payloads[n - 20_000..];
    let traw: usize = test.iter().map(Vec::len).sum();
    let mut cctx = compressor();
    for &(sample, cap) in &[
        (256usize << 10, 8usize << 10),
        (512 << 10, 16 << 10),
        (1 << 20, 32 << 10),
        (1 << 20, 64 << 10),
        (2 << 20, 64 << 10),
        (4 << 20, 112 << 10),
        (8 << 20, 112 << 10),
    ] {
        let mut s = Vec::new();
        let mut b = 0;
        for p in &payloads {
            if b >= sample {
                break;
            }
            b += p.len();
            s.push(p.clone());
        }
        let t = Instant::now();
        let d = Dict::new(zstd::dict::from_samples(&s, cap).unwrap()).unwrap();
        let el = t.elapsed();
        let mut out = Vec::new();
        let mut total = 0;
        for p in test {
            out.clear();
            d.compress(&mut cctx, &[1, 1], p, &mut out);
            total += out.len() - 2;
        }
        println!("sample {:>5} KiB ({:>5} samples) dict {:>4} KiB: train {:>6.0?}; {:.1} B/record ({:.2}x)", sample >> 10, s.len(), d.bytes().len() >> 10, el, total as f64 / test.len() as f64, traw as f64 / total as f64);
    }
}
