//! Criterion benchmarks of the protocol core: signing, verification, batch
//! verification, and offer search. Run with
//! `cargo bench -p agora-protocol --bench protocol`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::hint::black_box;

use agora_proto::v1 as pb;
use agora_protocol::envelope::verify_batch;
use agora_protocol::{Keypair, Kind, Query, SignedEnvelope, SortKey, Timestamp};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn body() -> pb::UsageReceipt {
    pb::UsageReceipt {
        lease_id: vec![7; 32],
        sequence: 42,
        gpu_seconds: 3_600,
        cumulative_amount: 2_000_000,
        issued_at_ms: 1,
        ..Default::default()
    }
}

fn signatures(c: &mut Criterion) {
    let key = Keypair::from_seed(&[1; 32]);
    let envelope = SignedEnvelope::seal(Kind::UsageReceipt, &body(), &key);
    let mut group = c.benchmark_group("signatures");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| {
        b.iter(|| SignedEnvelope::seal(Kind::UsageReceipt, black_box(&body()), &key))
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(&envelope).verify().unwrap())
    });
    for n in [64usize, 1024] {
        let keys: Vec<Keypair> = (0..n)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                Keypair::from_seed(&seed)
            })
            .collect();
        let envelopes: Vec<SignedEnvelope> = keys
            .iter()
            .map(|k| SignedEnvelope::seal(Kind::UsageReceipt, &body(), k))
            .collect();
        let refs: Vec<&SignedEnvelope> = envelopes.iter().collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("verify_batch", n), &refs, |b, refs| {
            b.iter(|| verify_batch(black_box(refs)).unwrap())
        });
    }
    group.finish();
}

fn search(c: &mut Criterion) {
    let book = support::book(100_000);
    let query = Query::parse("gpu=H100 vram>=40 price<=3 region=EU").unwrap();
    let sort: SortKey = "tflop_price".parse().unwrap();
    let now = Timestamp(2);
    let mut group = c.benchmark_group("offer_search_100k");
    group.bench_function("4_clauses", |b| {
        b.iter(|| book.search(black_box(&query), None, 100, now).len())
    });
    group.bench_function("4_clauses_sort_tflop_price_top20", |b| {
        b.iter(|| book.search(black_box(&query), Some(sort), 20, now).len())
    });
    group.finish();
}

criterion_group!(benches, signatures, search);
criterion_main!(benches);
