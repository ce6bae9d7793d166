//! Durable settlements per second on the sled ledger: many requesters'
//! receipts settled concurrently, each acknowledged only after fsync; and,
//! for scale, how fast this machine can merely check their signatures.
//! Run with `cargo bench -p agora-contracts-mock --bench ledger`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_contracts_mock::{ManualClock, SledConfig, SledLedger};
use agora_protocol::ledger::conformance::lease;
use agora_protocol::receipt::verify_claims;
use agora_protocol::{
    Amount, CoSigned, Keypair, Ledger, ReceiptClaim, Timestamp, UsageReceipt, cost,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A workload: leases settled concurrently (one task each), and receipts
/// settled one after another per lease.
#[derive(Clone, Copy)]
struct Shape {
    leases: usize,
    receipts: u64,
}

/// 10,000 receipts at once, one per lease.
const WIDE: Shape = Shape {
    leases: 10_000,
    receipts: 1,
};
/// 10,000 receipts as 2,000 leases settling 5 receipts in order.
const DEEP: Shape = Shape {
    leases: 2_000,
    receipts: 5,
};

struct Round {
    /// Per lease: its receipts in sequence order.
    receipts: Vec<Vec<CoSigned>>,
}

/// Funds and locks `shape.leases` fresh leases concurrently, and signs their
/// receipts (not timed).
async fn prepare(ledger: &SledLedger, round: u32, shape: Shape) -> Round {
    let now = ledger.now().await.unwrap();
    let tasks: Vec<_> = (0..shape.leases)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&round.to_le_bytes());
                seed[4..12].copy_from_slice(&(i as u64).to_le_bytes());
                let requester = Keypair::from_seed(&seed);
                seed[31] = 1;
                let provider = Keypair::from_seed(&seed);
                ledger
                    .deposit(&requester.public(), Amount(10_000_000))
                    .await
                    .unwrap();
                let lease = lease(&requester, &provider, Amount(3_600_000), 1, 3600, now, 1);
                ledger.lock_escrow(lease.cosigned()).await.unwrap();
                (1..=shape.receipts)
                    .map(|sequence| {
                        let receipt = UsageReceipt {
                            lease_id: lease.id(),
                            sequence,
                            gpu_seconds: sequence * 10,
                            cumulative_amount: cost(
                                lease.terms().price_per_gpu_hour,
                                sequence * 10,
                            )
                            .unwrap(),
                            issued_at: Timestamp(0),
                            is_final: false,
                            result_hash: None,
                            exit_status: None,
                        };
                        let signed = ReceiptClaim::sign_as_provider(receipt, &provider).unwrap();
                        ReceiptClaim::countersign(signed.envelope(), &lease, &requester)
                            .unwrap()
                            .cosigned()
                            .clone()
                    })
                    .collect::<Vec<CoSigned>>()
            })
        })
        .collect();
    let mut receipts = Vec::with_capacity(shape.leases);
    for task in tasks {
        receipts.push(task.await.unwrap());
    }
    Round { receipts }
}

/// Settles every receipt, each lease's in order on its own task.
async fn settle_all(ledger: &SledLedger, round: Round) {
    let tasks: Vec<_> = round
        .receipts
        .into_iter()
        .map(|list| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for receipt in list {
                    let settlement = ledger.settle(&receipt).await.unwrap();
                    assert!(settlement.paid > Amount::ZERO);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

fn durable_settlements(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ledger");
    group.sample_size(10);
    // Before/after: the writer writing and fsyncing each batch itself, and
    // both pipelined on the flusher thread (the default).
    for (name, shape, pipeline_flush) in [
        ("durable_settlements_serial_fsync", WIDE, false),
        ("durable_settlements", WIDE, true),
        ("durable_settlements_5_in_order_per_lease", DEEP, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        let config = SledConfig {
            pipeline_flush,
            ..SledConfig::default()
        };
        let ledger = SledLedger::open(dir.path(), config, Arc::new(clock)).unwrap();
        let mut round = 0u32;
        group.throughput(Throughput::Elements(shape.leases as u64 * shape.receipts));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let prepared = runtime.block_on(prepare(&ledger, round, shape));
                    let started = Instant::now();
                    runtime.block_on(settle_all(&ledger, prepared));
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// The ceiling on this machine: only checking the signatures of as many
/// receipts (batch verification on every core), with no ledger at all.
fn signature_ceiling(c: &mut Criterion) {
    let now = Timestamp(1_700_000_000_000);
    let mut claims = Vec::new();
    let mut leases = Vec::new();
    for i in 0..WIDE.leases {
        let mut seed = [7u8; 32];
        seed[4..12].copy_from_slice(&(i as u64).to_le_bytes());
        let requester = Keypair::from_seed(&seed);
        seed[31] = 1;
        let provider = Keypair::from_seed(&seed);
        let lease = lease(&requester, &provider, Amount(3_600_000), 1, 3600, now, 1);
        for sequence in 1..=WIDE.receipts {
            let receipt = UsageReceipt {
                lease_id: lease.id(),
                sequence,
                gpu_seconds: sequence * 10,
                cumulative_amount: cost(lease.terms().price_per_gpu_hour, sequence * 10).unwrap(),
                issued_at: Timestamp(0),
                is_final: false,
                result_hash: None,
                exit_status: None,
            };
            let signed = ReceiptClaim::sign_as_provider(receipt, &provider).unwrap();
            claims.push((
                ReceiptClaim::countersign(signed.envelope(), &lease, &requester).unwrap(),
                i,
            ));
        }
        leases.push(lease);
    }
    let pairs: Vec<_> = claims
        .iter()
        .map(|(claim, i)| (claim, leases[*i].terms()))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("ledger");
    group.sample_size(10);
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("signature_check_only_ceiling", |b| {
        b.iter(|| {
            std::thread::scope(|scope| {
                for part in pairs.chunks(pairs.len().div_ceil(threads)) {
                    scope.spawn(move || verify_claims(part).unwrap());
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, durable_settlements, signature_ceiling);
criterion_main!(benches);
