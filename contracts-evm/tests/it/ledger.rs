//! What the EVM backend must do beyond the conformance suite: refuse on
//! its own what the Rust checks would (the contract is the trust anchor),
//! read a status-0 receipt's reason, ride out an unreachable RPC, never
//! send an operation twice, let an owner withdraw, and close early only on
//! both parties' signatures over the close's own kind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agora_contracts_evm::EvmLedger;
use agora_contracts_evm::anvil::{Anvil, AnvilOptions};
use agora_contracts_evm::bindings::AgoraEscrow;
use agora_protocol::ledger::conformance::{Tamper, lease, receipt};
use agora_protocol::receipt::ReceiptClaim;
use agora_protocol::{
    Amount, CloseClaim, CloseReason, Keypair, Kind, Lease, LeaseClose, LeaseId, Ledger,
    LedgerError, SignedEnvelope,
};
use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::{SolCall, SolInterface};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{anvil_or_skip, deployed, funded_key, ledger, runtime, wallet_provider};

fn requester() -> Keypair {
    Keypair::from_seed(&[41; 32])
}

fn provider_key() -> Keypair {
    Keypair::from_seed(&[42; 32])
}

/// A one-GPU, ten-minute lease starting at the chain's `now`.
async fn lease_now(ledger: &EvmLedger, nonce: u8) -> Lease {
    let now = ledger.now().await.unwrap();
    lease(
        &requester(),
        &provider_key(),
        Amount(3_600_000),
        1,
        600,
        now,
        nonce,
    )
}

/// Funds the requester and locks a fresh lease on `ledger`.
async fn locked(ledger: &EvmLedger, nonce: u8) -> Lease {
    ledger
        .deposit(&requester().public(), Amount(10_000_000))
        .await
        .unwrap();
    let lease = lease_now(ledger, nonce).await;
    ledger.lock_escrow(lease.cosigned()).await.unwrap();
    lease
}

/// A receipt both parties signed for `gpu_seconds` of `lease`.
fn signed_receipt(
    lease: &Lease,
    sequence: u64,
    gpu_seconds: u64,
    is_final: bool,
) -> agora_protocol::CoSigned {
    receipt(
        lease,
        &requester(),
        &provider_key(),
        sequence,
        gpu_seconds,
        is_final,
        Tamper::None,
    )
}

fn halves(sig: &[u8; 64]) -> (FixedBytes<32>, FixedBytes<32>) {
    let mut r = [0; 32];
    let mut s = [0; 32];
    r.copy_from_slice(&sig[..32]);
    s.copy_from_slice(&sig[32..]);
    (FixedBytes(r), FixedBytes(s))
}

/// The escrow's error for `call`, sent straight to the contract.
async fn revert_of<C: SolCall>(
    provider: &impl Provider,
    escrow: Address,
    call: C,
) -> AgoraEscrow::AgoraEscrowErrors {
    let tx = TransactionRequest::default()
        .to(escrow)
        .input(Bytes::from(call.abi_encode()).into());
    let error = provider.call(tx).await.expect_err("the call should revert");
    let data = error
        .as_error_resp()
        .and_then(|e| e.as_revert_data())
        .expect("revert data");
    AgoraEscrow::AgoraEscrowErrors::abi_decode(&data).expect("a declared error")
}

#[test]
fn the_contract_itself_refuses_what_the_nodes_would() {
    let runtime = runtime();
    let Some(anvil) = anvil_or_skip(&AnvilOptions::default()) else {
        return;
    };
    runtime.block_on(async {
        let (deployment, config) = deployed(&anvil).await;
        let ledger = ledger(&anvil, &config).await;
        let direct = wallet_provider(&anvil).await;
        let escrow = deployment.escrow;
        ledger.deposit(&requester().public(), Amount(10_000_000)).await.unwrap();
        let good = lease_now(&ledger, 1).await;
        let body = good.cosigned().body().to_vec();

        // The contract computes lease ids as the nodes do (BLAKE3).
        let tx = TransactionRequest::default()
            .to(escrow)
            .input(Bytes::from(AgoraEscrow::leaseIdOfCall { terms: body.clone().into() }.abi_encode()).into());
        let out = direct.call(tx).await.unwrap();
        let id = AgoraEscrow::leaseIdOfCall::abi_decode_returns(&out).unwrap();
        assert_eq!(LeaseId(id.0), good.id());

        // A lease the provider never signed, straight to the contract.
        let stranger = Keypair::from_seed(&[43; 32]);
        let forged = SignedEnvelope::seal_bytes(Kind::LeaseTerms, body.clone(), &stranger);
        let (req_r, req_s) = halves(&good.cosigned().requester_signature().0);
        let (bad_r, bad_s) = halves(&forged.signature().0);
        let refused = revert_of(
            &direct,
            escrow,
            AgoraEscrow::lockCall { terms: body.clone().into(), reqR: req_r, reqS: req_s, provR: bad_r, provS: bad_s },
        )
        .await;
        assert!(
            matches!(&refused, AgoraEscrow::AgoraEscrowErrors::InvalidLease(e) if e.reason.contains("provider signature")),
            "{refused:?}"
        );
        // Nothing moved.
        assert_eq!(ledger.balance(&requester().public()).await.unwrap(), Amount(10_000_000));
        assert_eq!(ledger.escrow(&good.id()).await.unwrap(), None);

        // Lock for real, then a receipt both parties signed whose bytes
        // the Rust decoder accepts (prost lets a later field 4 win) but
        // the contract refuses: it never reads an amount the nodes did not.
        ledger.lock_escrow(good.cosigned()).await.unwrap();
        let honest = signed_receipt(&good, 1, 60, false);
        let mut twisted = honest.body().to_vec();
        twisted.extend_from_slice(&[0x20, 0x01]); // field 4 again: cumulative_amount = 1
        let provider_signed = SignedEnvelope::seal_bytes(Kind::UsageReceipt, twisted, &provider_key());
        let claim = ReceiptClaim::countersign(&provider_signed, &good, &requester()).unwrap();
        let error = ledger.settle(claim.cosigned()).await.unwrap_err();
        assert!(
            matches!(&error, LedgerError::InvalidReceipt(m) if m.contains("out of order or repeated")),
            "{error:?}"
        );
        // A receipt whose amount is not the cost of its GPU-seconds,
        // signed by both: refused by the contract's own arithmetic.
        let inflated = receipt(&good, &requester(), &provider_key(), 1, 60, false, Tamper::Inflated);
        let (r1, s1) = halves(&inflated.requester_signature().0);
        let (r2, s2) = halves(&inflated.provider_signature().0);
        let refused = revert_of(
            &direct,
            escrow,
            AgoraEscrow::settleCall { receipt: inflated.body().to_vec().into(), reqR: r1, reqS: s1, provR: r2, provS: s2 },
        )
        .await;
        assert!(matches!(refused, AgoraEscrow::AgoraEscrowErrors::ReceiptRule(_)), "{refused:?}");
        let state = ledger.escrow(&good.id()).await.unwrap().unwrap();
        assert_eq!(state.settled, Amount::ZERO);
        assert_eq!(state.last_sequence, 0);

        // And no stricter than the nodes where it matters: an order id of
        // 32 zero bytes is present (and valid), not absent.
        let zero = lease_now(&ledger, 0).await;
        assert_eq!(zero.terms().order_id.0, [0; 32]);
        ledger.lock_escrow(zero.cosigned()).await.unwrap();
    });
}

/// `body` signed by both parties as a message of `kind`, as the escrow's
/// `closeEarly` takes it.
fn close_early_call(body: &[u8], kind: Kind) -> AgoraEscrow::closeEarlyCall {
    let by = |key: &Keypair| {
        halves(
            &SignedEnvelope::seal_bytes(kind, body.to_vec(), key)
                .signature()
                .0,
        )
    };
    let ((req_r, req_s), (prov_r, prov_s)) = (by(&requester()), by(&provider_key()));
    AgoraEscrow::closeEarlyCall {
        leaseClose: body.to_vec().into(),
        reqR: req_r,
        reqS: req_s,
        provR: prov_r,
        provS: prov_s,
    }
}

#[test]
fn an_early_close_pays_only_on_both_signatures_over_a_close() {
    let runtime = runtime();
    let Some(anvil) = anvil_or_skip(&AnvilOptions::default()) else {
        return;
    };
    runtime.block_on(async {
        let (deployment, config) = deployed(&anvil).await;
        let ledger = ledger(&anvil, &config).await;
        let direct = wallet_provider(&anvil).await;
        let escrow = deployment.escrow;
        let lease = locked(&ledger, 5).await;
        ledger.settle(&signed_receipt(&lease, 1, 60, false)).await.unwrap();
        let before = ledger.escrow(&lease.id()).await.unwrap().unwrap();
        let supply = ledger.supply().await.unwrap();
        let now = ledger.now().await.unwrap();
        let close = LeaseClose::new(&lease, 120, CloseReason::Ended, now);
        let signed = CloseClaim::sign_as_provider(close, &provider_key()).unwrap();
        let body = signed.envelope().body().to_vec();

        // Both parties' signatures over the same bytes, but as a receipt:
        // a signature of one kind never verifies as another.
        let refused = revert_of(&direct, escrow, close_early_call(&body, Kind::UsageReceipt)).await;
        assert!(
            matches!(&refused, AgoraEscrow::AgoraEscrowErrors::InvalidClose(e) if e.reason.contains("requester signature")),
            "{refused:?}"
        );
        // A close with no reason, signed by both: the contract decodes as
        // the nodes do, and refuses it.
        let mut reasonless = vec![0x0a, 0x20];
        reasonless.extend_from_slice(&lease.id().0);
        reasonless.extend_from_slice(&[0x10, 0x78]); // gpu_seconds = 120
        let refused = revert_of(&direct, escrow, close_early_call(&reasonless, Kind::LeaseClose)).await;
        assert!(
            matches!(&refused, AgoraEscrow::AgoraEscrowErrors::InvalidClose(e) if e.reason.contains("reason")),
            "{refused:?}"
        );
        // Bytes prost reads (a later field 3 wins) but the contract never
        // does: it reads no amount the nodes did not.
        let mut twisted = body.clone();
        twisted.extend_from_slice(&[0x18, 0x01]); // cumulative_amount = 1
        let provider_signed = SignedEnvelope::seal_bytes(Kind::LeaseClose, twisted, &provider_key());
        let claim = CloseClaim::countersign(&provider_signed, &lease, &requester()).unwrap();
        let error = ledger.close_early(claim.cosigned()).await.unwrap_err();
        assert!(
            matches!(&error, LedgerError::InvalidClose(m) if m.contains("out of order or repeated")),
            "{error:?}"
        );
        // Nothing moved.
        assert_eq!(ledger.escrow(&lease.id()).await.unwrap().unwrap(), before);
        assert_eq!(ledger.supply().await.unwrap(), supply);

        // The honest close, straight to the contract: 60 more GPU-seconds
        // paid, the rest refunded, at once.
        let tx = TransactionRequest::default()
            .to(escrow)
            .input(Bytes::from(close_early_call(&body, Kind::LeaseClose).abi_encode()).into());
        let mined = direct.send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
        assert!(mined.status());
        let event = mined
            .inner
            .logs()
            .iter()
            .find_map(|log| log.log_decode::<AgoraEscrow::ClosedEarly>().ok())
            .unwrap()
            .inner
            .data;
        assert_eq!((event.paid, event.refunded, event.settled), (60_000, 480_000, 120_000));
        assert_eq!(event.reason, 2);
        let state = ledger.escrow(&lease.id()).await.unwrap().unwrap();
        assert_eq!(state.settled, Amount(120_000));
        assert!(state.final_settled);
        assert_eq!(state.refunded, Some(Amount(480_000)));
        assert_eq!(state.ops, before.ops + 1);
        assert_eq!(ledger.balance(&provider_key().public()).await.unwrap(), Amount(120_000));
        assert_eq!(ledger.balance(&requester().public()).await.unwrap(), Amount(9_880_000));
        let supply = ledger.supply().await.unwrap();
        assert!(supply.conserved(), "{supply:?}");
        assert_eq!(supply.escrowed, 0);
        assert_eq!(ledger.escrow_token_balance().await.unwrap(), supply.deposited);
        // And once only.
        let claim = CloseClaim::countersign(signed.envelope(), &lease, &requester()).unwrap();
        assert_eq!(
            ledger.close_early(claim.cosigned()).await.unwrap_err(),
            LedgerError::LeaseClosed(lease.id())
        );
    });
}

#[test]
fn a_transaction_mined_with_status_0_reports_why() {
    let runtime = runtime();
    let Some(anvil) = anvil_or_skip(&AnvilOptions::default()) else {
        return;
    };
    runtime.block_on(async {
        let (_, config) = deployed(&anvil).await;
        let ours = ledger(&anvil, &config).await;
        let theirs = ledger(&anvil, &config).await;
        let lease = locked(&ours, 2).await;
        let last = signed_receipt(&lease, 1, 60, true);
        ours.settle(&last).await.unwrap();
        // Both sides close at once: each estimate passes, both are mined
        // in one block, and the second reverts on chain (status 0).
        let accounts = [ours.gas_account(), theirs.gas_account()];
        let nonces = [
            nonce(&anvil, accounts[0], "latest").await,
            nonce(&anvil, accounts[1], "latest").await,
        ];
        automine(&anvil, false).await;
        let id = lease.id();
        let (a, b, ()) = tokio::join!(ours.close(&id), theirs.close(&id), async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            mine(&anvil).await;
        });
        automine(&anvil, true).await;
        let (closed, refused) = match (a, b) {
            (Ok(c), Err(e)) | (Err(e), Ok(c)) => (c, e),
            other => panic!("one close should win and one be refused: {other:?}"),
        };
        assert_eq!(closed.refunded, Amount(600_000 - 60_000));
        assert_eq!(refused, LedgerError::LeaseClosed(id));
        // Both were mined: the refusal came from a status-0 receipt.
        for (account, before) in accounts.into_iter().zip(nonces) {
            assert_eq!(nonce(&anvil, account, "latest").await, before + 1);
        }
    });
}

#[test]
fn a_settlement_not_yet_mined_is_resent_never_doubled() {
    let runtime = runtime();
    let Some(anvil) = anvil_or_skip(&AnvilOptions::default()) else {
        return;
    };
    runtime.block_on(async {
        let (_, mut config) = deployed(&anvil).await;
        config.mine_timeout_secs = 1;
        let key = funded_key(&anvil).await;
        let gas_account = key.address();
        let ledger = EvmLedger::connect(&config, key).await.unwrap();
        let lease = locked(&ledger, 3).await;
        let first = signed_receipt(&lease, 1, 60, false);

        automine(&anvil, false).await;
        let nonce_before = nonce(&anvil, gas_account, "latest").await;
        // Not mined within its timeout: unavailable, to be retried...
        for _ in 0..3 {
            let error = ledger.settle(&first).await.unwrap_err();
            assert!(error.is_transient(), "{error:?}");
        }
        // ...and the retries resent the one transaction.
        assert_eq!(
            nonce(&anvil, gas_account, "pending").await,
            nonce_before + 1
        );
        automine(&anvil, true).await;
        mine(&anvil).await;
        let settlement = ledger.settle(&first).await.unwrap();
        assert_eq!(settlement.settled, Amount(60_000));
        assert_eq!(settlement.last_sequence, 1);
        assert_eq!(nonce(&anvil, gas_account, "latest").await, nonce_before + 1);
        assert_eq!(
            ledger.balance(&provider_key().public()).await.unwrap(),
            Amount(60_000)
        );
    });
}

#[test]
fn an_unreachable_rpc_is_retried_until_it_answers() {
    let runtime = runtime();
    let Some(anvil) = anvil_or_skip(&AnvilOptions::default()) else {
        return;
    };
    runtime.block_on(async {
        let (_, mut config) = deployed(&anvil).await;
        let open = Arc::new(AtomicBool::new(true));
        let proxy = proxy(anvil.url(), open.clone()).await;
        config.rpc_url = format!("http://{proxy}");
        config.rpc_retry_secs = 30;
        let ledger = EvmLedger::connect(&config, funded_key(&anvil).await)
            .await
            .unwrap();
        ledger
            .deposit(&requester().public(), Amount(10_000_000))
            .await
            .unwrap();
        let lease = lease_now(&ledger, 4).await;
        open.store(false, Ordering::SeqCst);
        // The proxy cuts the connections it holds within 50 ms.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reopen = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            open.store(true, Ordering::SeqCst);
        };
        let (locked, ()) = tokio::join!(ledger.lock_escrow(lease.cosigned()), reopen);
        assert_eq!(locked.unwrap().escrow, Amount(600_000));
        // And with no answer at all for its retry window: unavailable.
        config.rpc_retry_secs = 1;
        let short = EvmLedger::connect(&config, funded_key(&anvil).await)
            .await
            .unwrap();
        open.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let error = short.balance(&requester().public()).await.unwrap_err();
        assert!(matches!(error, LedgerError::Unavailable(_)), "{error:?}");
    });
}

#[test]
fn an_owner_withdraws_with_its_agora_key_once_per_signature() {
    let runtime = runtime();
    let Some(anvil) = anvil_or_skip(&AnvilOptions::default()) else {
        return;
    };
    runtime.block_on(async {
        let (deployment, config) = deployed(&anvil).await;
        let ledger = ledger(&anvil, &config).await;
        let owner = provider_key();
        ledger.deposit(&owner.public(), Amount(5_000)).await.unwrap();
        let to = Address::repeat_byte(0x77);
        assert_eq!(ledger.withdraw(&owner, to, Amount(2_000)).await.unwrap(), Amount(2_000));
        assert_eq!(ledger.balance(&owner.public()).await.unwrap(), Amount(3_000));
        assert_eq!(token_balance(&anvil, deployment.token, to).await, U256::from(2_000));
        // More than the balance: refused, nothing moves.
        let error = ledger.withdraw(&owner, to, Amount(3_001)).await.unwrap_err();
        assert!(matches!(error, LedgerError::InsufficientFunds { .. }), "{error:?}");
        // Someone else's key cannot take it.
        let thief = EvmLedger::connect(&config, funded_key(&anvil).await).await.unwrap();
        let direct = wallet_provider(&anvil).await;
        let account = FixedBytes(*owner.public().as_bytes());
        let message = thief_message(&direct, deployment.escrow, account, to).await;
        let forged = Keypair::from_seed(&[44; 32]).sign_namespaced(&message).unwrap();
        let (r, s) = halves(&forged.0);
        let refused = revert_of(
            &direct,
            deployment.escrow,
            AgoraEscrow::withdrawCall { account, to, amount: 1, nonce: 1, r, s },
        )
        .await;
        assert!(matches!(&refused, AgoraEscrow::AgoraEscrowErrors::BadRequest(e) if e.reason.contains("signature")), "{refused:?}");
        // The owner's used signature, replayed: the nonce moved on.
        let replay_message = AgoraEscrow::withdrawalMessageCall { account, to, amount: 2_000, nonce: 0 };
        let tx = TransactionRequest::default().to(deployment.escrow).input(Bytes::from(replay_message.abi_encode()).into());
        let message = AgoraEscrow::withdrawalMessageCall::abi_decode_returns(&direct.call(tx).await.unwrap()).unwrap();
        let (r, s) = halves(&owner.sign_namespaced(&message).unwrap().0);
        let refused = revert_of(
            &direct,
            deployment.escrow,
            AgoraEscrow::withdrawCall { account, to, amount: 2_000, nonce: 0, r, s },
        )
        .await;
        assert!(matches!(&refused, AgoraEscrow::AgoraEscrowErrors::BadRequest(e) if e.reason.contains("nonce")), "{refused:?}");
        assert_eq!(thief.balance(&owner.public()).await.unwrap(), Amount(3_000));
        let supply = ledger.supply().await.unwrap();
        assert!(supply.conserved(), "{supply:?}");
        assert_eq!(ledger.escrow_token_balance().await.unwrap(), supply.deposited);
    });
}

async fn thief_message(
    direct: &impl Provider,
    escrow: Address,
    account: FixedBytes<32>,
    to: Address,
) -> Bytes {
    let call = AgoraEscrow::withdrawalMessageCall {
        account,
        to,
        amount: 1,
        nonce: 1,
    };
    let tx = TransactionRequest::default()
        .to(escrow)
        .input(Bytes::from(call.abi_encode()).into());
    AgoraEscrow::withdrawalMessageCall::abi_decode_returns(&direct.call(tx).await.unwrap()).unwrap()
}

async fn token_balance(anvil: &Anvil, token: Address, who: Address) -> U256 {
    use agora_contracts_evm::bindings::AgoraTestToken;
    let provider = wallet_provider(anvil).await;
    let tx = TransactionRequest::default()
        .to(token)
        .input(Bytes::from(AgoraTestToken::balanceOfCall(who).abi_encode()).into());
    AgoraTestToken::balanceOfCall::abi_decode_returns(&provider.call(tx).await.unwrap()).unwrap()
}

async fn automine(anvil: &Anvil, on: bool) {
    rpc(anvil, "evm_setAutomine", serde_json::json!([on])).await;
}

async fn mine(anvil: &Anvil) {
    rpc(anvil, "evm_mine", serde_json::json!([])).await;
}

async fn nonce(anvil: &Anvil, who: Address, block: &str) -> u64 {
    let value = rpc(
        anvil,
        "eth_getTransactionCount",
        serde_json::json!([who, block]),
    )
    .await;
    u64::from_str_radix(value.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

async fn rpc(anvil: &Anvil, method: &'static str, params: serde_json::Value) -> serde_json::Value {
    let provider: alloy::providers::RootProvider =
        alloy::providers::ProviderBuilder::default().connect_http(anvil.url().parse().unwrap());
    provider.raw_request(method.into(), params).await.unwrap()
}

/// A TCP proxy to `target` that, while `open` is false, drops every new
/// connection and cuts the ones it has: an RPC that cannot be reached.
async fn proxy(target: &str, open: Arc<AtomicBool>) -> std::net::SocketAddr {
    let target = target.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            if !open.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            let target = target.clone();
            let open = open.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = async {
                        while open.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    } => {}
                }
            });
        }
    });
    addr
}
