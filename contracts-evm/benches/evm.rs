//! What the escrow costs on anvil: gas per deposit, lock, settlement,
//! close and early close, and settlements per second through EvmLedger — one node's
//! (one gas account, transactions in nonce order) and eight nodes' at once.
//!
//!     cargo bench -p agora-contracts-evm
//!
//! Prints a table; asserts nothing about speed. Needs anvil
//! (`npm ci --prefix contracts-evm`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use agora_contracts_evm::anvil::{Anvil, AnvilOptions};
use agora_contracts_evm::{EvmConfig, EvmLedger, GasKey, deploy};
use agora_protocol::ledger::conformance::{Tamper, close, lease, receipt};
use agora_protocol::{Amount, CloseReason, Keypair, Lease, Ledger};
use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder, RootProvider};

/// Leases settled in each throughput run.
const LEASES: usize = 64;
/// Nodes settling at once in the concurrent run.
const NODES: usize = 8;

async fn last_block_gas(url: &str) -> u64 {
    let provider: RootProvider = ProviderBuilder::default().connect_http(url.parse().unwrap());
    let block = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap();
    block.header.gas_used
}

async fn ledger(anvil: &Anvil, config: &EvmConfig) -> EvmLedger {
    let key = GasKey::random();
    anvil
        .fund(key.address(), U256::from(10u128.pow(24)))
        .await
        .unwrap();
    EvmLedger::connect(config, key).await.unwrap()
}

fn main() {
    if agora_contracts_evm::anvil::binary().is_none() {
        eprintln!("anvil is not installed: run `npm ci --prefix contracts-evm`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let anvil = Anvil::start(&AnvilOptions::default()).unwrap();
        let url = anvil.url().to_string();
        let deployer = GasKey::random();
        anvil
            .fund(deployer.address(), U256::from(10u128.pow(24)))
            .await
            .unwrap();
        let deployment = deploy(&url, deployer, None, 30_000).await.unwrap();
        let mut config = EvmConfig::new(&url, deployment.escrow);
        config.faucet = true;
        config.poll_ms = 10;
        let one = ledger(&anvil, &config).await;
        let requester = Keypair::from_seed(&[1; 32]);
        let provider = Keypair::from_seed(&[2; 32]);
        one.deposit(&requester.public(), Amount(u64::MAX / 4))
            .await
            .unwrap();
        let deposit_gas = last_block_gas(&url).await;

        // One lease's life: lock, an intermediate and a final settlement,
        // and close.
        let now = one.now().await.unwrap();
        let l = lease(&requester, &provider, Amount(3_600_000), 2, 3_600, now, 0);
        one.lock_escrow(l.cosigned()).await.unwrap();
        let lock_gas = last_block_gas(&url).await;
        one.settle(&receipt(
            &l,
            &requester,
            &provider,
            1,
            600,
            false,
            Tamper::None,
        ))
        .await
        .unwrap();
        let settle_gas = last_block_gas(&url).await;
        one.settle(&receipt(
            &l,
            &requester,
            &provider,
            2,
            1_200,
            true,
            Tamper::None,
        ))
        .await
        .unwrap();
        let final_gas = last_block_gas(&url).await;
        one.close(&l.id()).await.unwrap();
        let close_gas = last_block_gas(&url).await;
        let ops = one.escrow(&l.id()).await.unwrap().unwrap().ops;

        // Another lease, closed early after an intermediate settlement:
        // the provider is paid the rest of its time, the requester
        // refunded the remainder, in one transaction.
        let l = lease(&requester, &provider, Amount(3_600_000), 2, 3_600, now, 1);
        one.lock_escrow(l.cosigned()).await.unwrap();
        one.settle(&receipt(
            &l,
            &requester,
            &provider,
            1,
            600,
            false,
            Tamper::None,
        ))
        .await
        .unwrap();
        one.close_early(&close(
            &l,
            &requester,
            &provider,
            900,
            CloseReason::ProviderRestarted,
            Tamper::None,
        ))
        .await
        .unwrap();
        let close_early_gas = last_block_gas(&url).await;

        // Throughput: lock LEASES leases, then settle one receipt each.
        let (one_ref, requester_ref, provider_ref) = (&one, &requester, &provider);
        let locked = |n: u8| async move {
            let (one, requester, provider) = (one_ref, requester_ref, provider_ref);
            let now = one.now().await.unwrap();
            let mut leases: Vec<Lease> = Vec::new();
            for i in 0..LEASES {
                let id = u8::try_from(i).unwrap().wrapping_add(n);
                let l = lease(requester, provider, Amount(3_600_000), 1, 3_600, now, id);
                one.lock_escrow(l.cosigned()).await.unwrap();
                leases.push(l);
            }
            leases
        };
        let leases = locked(1).await;
        let started = Instant::now();
        for l in &leases {
            one.settle(&receipt(
                l,
                &requester,
                &provider,
                1,
                60,
                false,
                Tamper::None,
            ))
            .await
            .unwrap();
        }
        let sequential = LEASES as f64 / started.elapsed().as_secs_f64();

        let leases = locked(101).await;
        let mut nodes = Vec::new();
        for _ in 0..NODES {
            nodes.push(ledger(&anvil, &config).await);
        }
        let started = Instant::now();
        let work = leases
            .chunks(LEASES / NODES)
            .zip(&nodes)
            .map(|(chunk, node)| {
                let requester = &requester;
                let provider = &provider;
                async move {
                    for l in chunk {
                        node.settle(&receipt(l, requester, provider, 1, 60, false, Tamper::None))
                            .await
                            .unwrap();
                    }
                }
            });
        futures_join_all(work).await;
        let concurrent = LEASES as f64 / started.elapsed().as_secs_f64();

        println!(
            "escrow on anvil {} (deployment: {} gas)",
            anvil.url(),
            deployment.escrow_deploy_gas
        );
        println!("{:<34} {:>10}", "operation", "gas");
        println!(
            "{:<34} {:>10}",
            "deposit (ERC-20 transferFrom)", deposit_gas
        );
        println!("{:<34} {:>10}", "lock (2 ed25519 checks, BLAKE3)", lock_gas);
        println!("{:<34} {:>10}", "settle, intermediate receipt", settle_gas);
        println!("{:<34} {:>10}", "settle, final receipt", final_gas);
        println!("{:<34} {:>10}", "close", close_gas);
        println!(
            "{:<34} {:>10}",
            "closeEarly (2 ed25519 checks)", close_early_gas
        );
        println!("ledger ops of that lease: {ops} (lock, 2 settlements, close)");
        println!("settlements/s, one node (one gas account):  {sequential:.1}");
        println!("settlements/s, {NODES} nodes at once:            {concurrent:.1}");
    });
}

/// Runs the futures together on this task.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut pending: Vec<_> = set.iter_mut().collect();
    std::future::poll_fn(move |cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
