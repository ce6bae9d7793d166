//! Criterion benchmarks of the GPU challenge's CPU side: the reference
//! prover (every row) and the requester's check (k rows). Run with
//! `cargo bench -p agora-protocol --bench challenge`. Small CPU sizes:
//! they measure the code, not the verifier-to-prover ratio at GPU sizes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use agora_protocol::LeaseId;
use agora_protocol::challenge::{ChallengeOpen, ChallengeParams, ChallengeRequest, verify};
use agora_protocol::challenge::{CpuProver, params::DEFAULT_K};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn request(n: u32, m: u32, k: u32) -> ChallengeRequest {
    ChallengeRequest {
        lease_id: LeaseId([7; 32]),
        interval: 1,
        nonce: [9; 32],
        params: ChallengeParams {
            n,
            m,
            k,
            ..ChallengeParams::new(1_000_000_000)
        },
    }
}

fn challenge(c: &mut Criterion) {
    let mut group = c.benchmark_group("challenge");
    group.sample_size(10);
    // (n, m, k): k = 459 wherever there are that many rows.
    for (n, m, k) in [(256u32, 2u32, DEFAULT_K), (1024, 1, DEFAULT_K)] {
        let req = request(n, m, k);
        let label = format!("n{n}_m{m}_k{k}");
        group.throughput(Throughput::Elements(
            u64::try_from(req.params.gemm_ops()).unwrap(),
        ));
        group.bench_with_input(BenchmarkId::new("prove", &label), &req, |b, req| {
            b.iter(|| CpuProver::prove(black_box(req)).unwrap().root())
        });
        let prover = CpuProver::prove(&req).unwrap();
        let commit = prover.commit(0);
        let open = ChallengeOpen {
            seed: commit.seed,
            root: commit.root,
            nonce: [3; 32],
        };
        let answer = prover.answer(&open).unwrap();
        group.throughput(Throughput::Elements(2 * u64::from(k) * u64::from(n).pow(2)));
        group.bench_with_input(BenchmarkId::new("verify", &label), &req, |b, req| {
            b.iter(|| verify(black_box(req), &commit, &open, &answer, 0).unwrap())
        });
    }
    // The check alone at a size past one tile of columns (proved once).
    let req = request(2048, 1, DEFAULT_K);
    let prover = CpuProver::prove(&req).unwrap();
    let commit = prover.commit(0);
    let open = ChallengeOpen {
        seed: commit.seed,
        root: commit.root,
        nonce: [3; 32],
    };
    let answer = prover.answer(&open).unwrap();
    group.throughput(Throughput::Elements(2 * u64::from(DEFAULT_K) * 2048 * 2048));
    group.bench_with_input(
        BenchmarkId::new("verify", "n2048_m1_k459"),
        &req,
        |b, req| b.iter(|| verify(black_box(req), &commit, &open, &answer, 0).unwrap()),
    );
    group.finish();
}

criterion_group!(benches, challenge);
criterion_main!(benches);
