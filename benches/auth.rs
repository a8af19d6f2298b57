//! The per-request cost of access control, in process: authenticating a
//! bearer key against 1, 100 and 10,000 configured keys (SHA-256 of the key,
//! then a constant-time comparison with every hash), and taking a token from
//! a key's rate-limit bucket. Issue 6's target is ≤ 0.2 ms added to a query's
//! p50 and ≤ 5 % of ingest throughput; `examples/loadgen/ --auth` measures
//! it end to end over HTTP (including the audit trail).
//!
//! ```text
//! cargo bench --bench auth
//! ```

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use stele::auth::{generate_token, hash_line, AuthConfig, KeyConfig, Keyring, Role};

fn keyring(n: usize) -> (Keyring, String) {
    let mut keys = Vec::with_capacity(n);
    let mut last = String::new();
    for i in 0..n {
        let token = generate_token().expect("random bytes");
        keys.push(KeyConfig {
            id: format!("key-{i}"),
            hash: hash_line(&token),
            roles: vec![Role::Read, Role::Ingest],
            tenants: vec!["*".into()],
            rate_per_sec: Some(1_000_000),
            rate: None,
            burst: Some(1_000_000),
            streams_max: None,
        });
        last = token;
    }
    let cfg = AuthConfig {
        keys,
        ..AuthConfig::default()
    };
    cfg.validate().expect("a valid configuration");
    (Keyring::new(&cfg, None), format!("Bearer {last}"))
}

fn bench(c: &mut Criterion) {
    for n in [1, 100, 10_000] {
        let (ring, header) = keyring(n);
        c.bench_function(&format!("authenticate, {n} keys configured"), |b| {
            b.iter(|| {
                ring.authenticate(Some(black_box(header.as_bytes())))
                    .is_ok()
            })
        });
    }
    let (ring, header) = keyring(1);
    let key = ring.authenticate(Some(header.as_bytes())).expect("the key");
    c.bench_function("rate-limit check (token bucket)", |b| {
        b.iter(|| key.check_rate(black_box(Role::Read), "list").is_ok())
    });
    c.bench_function("authenticate + rate limit, 1 key", |b| {
        b.iter(|| {
            let k = ring
                .authenticate(Some(black_box(header.as_bytes())))
                .expect("the key");
            k.check_rate(Role::Read, "list").is_ok()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
