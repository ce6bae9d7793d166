//! Every acknowledged operation survives `kill -9` of the mock chain.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_protocol::ledger::conformance::{self, Tamper, lease};
use agora_protocol::{Amount, CoSigned, Keypair, Lease, LeaseId, Ledger, cost};

use crate::support::ChainProcess;

/// What the chain acknowledged before it was killed.
#[derive(Default)]
struct Acks {
    deposited: u128,
    locked: Vec<LeaseId>,
    /// Highest acknowledged cumulative amount per lease.
    settled: HashMap<LeaseId, Amount>,
    count: usize,
    /// Per worker: acknowledged deposits and every lease it tried to lock.
    workers: HashMap<u8, Worker>,
}

#[derive(Default)]
struct Worker {
    requester: Option<agora_protocol::AccountId>,
    provider: Option<agora_protocol::AccountId>,
    deposited: u64,
    attempted: Vec<LeaseId>,
}

/// Receipt `sequence` of `lease`: 10 GPU-seconds per sequence, both signed.
fn receipt(
    lease: &Lease,
    requester: &Keypair,
    provider: &Keypair,
    sequence: u64,
) -> (CoSigned, Amount) {
    let gpu_seconds = sequence * 10;
    let amount = cost(lease.terms().price_per_gpu_hour, gpu_seconds).unwrap();
    let signed = conformance::receipt(
        lease,
        requester,
        provider,
        sequence,
        gpu_seconds,
        false,
        Tamper::None,
    );
    (signed, amount)
}

/// One client's stream: deposit, lock a lease, settle a few receipts,
/// again and again, recording each acknowledgement. Stops at the first
/// error (the chain is dead).
async fn stream(chain: agora_contracts_mock::HttpLedger, worker: u8, acks: Arc<Mutex<Acks>>) {
    let requester = Keypair::from_seed(&[worker + 1; 32]);
    let provider = Keypair::from_seed(&[worker + 101; 32]);
    let Ok(start) = chain.now().await else { return };
    {
        let mut a = acks.lock().unwrap();
        let w = a.workers.entry(worker).or_default();
        w.requester = Some(requester.public());
        w.provider = Some(provider.public());
    }
    for round in 0u8..=255 {
        let amount = Amount(2_000_000);
        if chain.deposit(&requester.public(), amount).await.is_err() {
            return;
        }
        {
            let mut a = acks.lock().unwrap();
            a.deposited += u128::from(amount.0);
            a.count += 1;
            a.workers.entry(worker).or_default().deposited += amount.0;
        }
        // 3.6 AGR per GPU-hour × 1 GPU × 1000 s = 1 AGR of escrow.
        let lease = lease(
            &requester,
            &provider,
            Amount(3_600_000),
            1,
            1000,
            start,
            round,
        );
        acks.lock()
            .unwrap()
            .workers
            .entry(worker)
            .or_default()
            .attempted
            .push(lease.id());
        if chain.lock_escrow(lease.cosigned()).await.is_err() {
            return;
        }
        {
            let mut a = acks.lock().unwrap();
            a.locked.push(lease.id());
            a.count += 1;
        }
        for sequence in 1..=4 {
            let (receipt, amount) = receipt(&lease, &requester, &provider, sequence);
            if chain.settle(&receipt).await.is_err() {
                return;
            }
            let mut a = acks.lock().unwrap();
            a.settled.insert(lease.id(), amount);
            a.count += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_operations_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let chain = ChainProcess::start(dir.path());
    let acks = Arc::new(Mutex::new(Acks::default()));
    let workers: Vec<_> = (0..6u8)
        .map(|w| tokio::spawn(stream(chain.client.clone(), w, acks.clone())))
        .collect();

    // Kill it in the middle of the stream, with requests in flight.
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if acks.lock().unwrap().count >= 150 {
            break;
        }
    }
    chain.kill9();
    for worker in workers {
        worker.await.unwrap();
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    assert!(acks.count >= 150 && !acks.locked.is_empty() && !acks.settled.is_empty());

    // Restart on the same store: everything acknowledged is there.
    let chain = ChainProcess::start(dir.path());
    let ledger = &chain.client;
    let supply = ledger.supply().await.unwrap();
    assert!(
        supply.conserved(),
        "money not conserved after kill -9: {supply:?}"
    );
    assert!(
        supply.deposited >= acks.deposited,
        "acknowledged deposits lost: {} < {}",
        supply.deposited,
        acks.deposited
    );
    for id in &acks.locked {
        assert!(
            ledger.escrow(id).await.unwrap().is_some(),
            "acknowledged lock of {id} lost"
        );
    }
    // Per account: the requester's deposits are in its balance or in its
    // leases' escrow (paid out or not); the provider holds at least every
    // acknowledged settlement.
    for (worker, w) in &acks.workers {
        let mut escrowed = 0u64;
        let mut settled_on_disk = 0u64;
        for id in &w.attempted {
            if let Some(state) = ledger.escrow(id).await.unwrap() {
                escrowed += state.escrow.0;
                settled_on_disk += state.settled.0;
            }
        }
        let requester = ledger.balance(&w.requester.unwrap()).await.unwrap();
        assert!(
            requester.0 + escrowed >= w.deposited,
            "worker {worker}: balance {requester} + escrow {escrowed} < acknowledged deposits {}",
            w.deposited
        );
        let acked: u64 = w
            .attempted
            .iter()
            .filter_map(|id| acks.settled.get(id))
            .map(|a| a.0)
            .sum();
        let provider = ledger.balance(&w.provider.unwrap()).await.unwrap();
        assert_eq!(
            provider.0, settled_on_disk,
            "worker {worker}: provider paid"
        );
        assert!(
            settled_on_disk >= acked,
            "worker {worker}: acknowledged settlements {acked} > settled {settled_on_disk}"
        );
    }
    for (id, amount) in &acks.settled {
        let state = ledger.escrow(id).await.unwrap().unwrap();
        assert!(
            state.settled >= *amount,
            "lease {id}: acknowledged {amount} but {} settled",
            state.settled
        );
    }

    // A graceful stop (SIGTERM) exits cleanly and loses nothing either.
    let before = ledger.supply().await.unwrap();
    let data = dir.path().to_owned();
    let status = chain.terminate();
    assert!(status.success(), "SIGTERM exit: {status}");
    let chain = ChainProcess::start(&data);
    assert_eq!(chain.client.supply().await.unwrap(), before);
}
