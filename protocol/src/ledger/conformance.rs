//! The ledger conformance suite: the invariants of [`super::Ledger`],
//! checked against any backend.
//!
//! A backend's tests implement [`Harness`] (how to get a fresh, empty
//! ledger and move its clock) and call [`run_all`]. It runs readable
//! scenarios first, then property tests: random sequences of deposits,
//! locks (valid and forged), settlements (in order, replayed, reordered,
//! with forged or missing payer signatures, with inflated amounts), closes
//! (early and late), early closes both parties signed (and forged or
//! inflated ones), clock moves and restarts. After every operation the ledger must
//! agree with a simple independent model of what should have happened, and:
//!
//! - money is conserved (balances + open escrow = deposits);
//! - no escrow without both parties' signatures on the lease;
//! - no settlement without the payer's signature on the receipt;
//! - a lease's settled total never exceeds its escrow and never decreases;
//!   replayed or reordered receipts never pay twice;
//! - close refunds exactly the remainder, once;
//! - a refused operation changes nothing.

use async_trait::async_trait;

use crate::amount::{Amount, cost};
use crate::envelope::{CoSigned, Kind, SignedEnvelope, signing_bytes};
use crate::identity::Keypair;
use crate::lease::{Lease, LeaseTerms};
use crate::ledger::{Ledger, LedgerError};
use crate::message::Signed;
use crate::order::OrderId;
use crate::receipt::{ReceiptClaim, UsageReceipt};
use crate::time::Timestamp;

/// How the suite gets ledgers of a backend.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The backend.
    type Ledger: Ledger + 'static;

    /// A new, empty ledger with its own storage and clock.
    async fn fresh(&self) -> Self::Ledger;

    /// Moves `ledger`'s chain time forward by `ms`.
    async fn advance(&self, ledger: &Self::Ledger, ms: u64);

    /// The backend's close grace (after a lease's end), milliseconds.
    fn close_grace_ms(&self) -> u64;

    /// Stops `ledger` and starts it again on the same storage and clock,
    /// returning the ledger to use from now on; everything acknowledged
    /// before must still be there. A backend that cannot restart returns
    /// it unchanged (the default).
    async fn restart(&self, ledger: Self::Ledger) -> Self::Ledger {
        ledger
    }
}

/// Runs every scenario and `cases` random operation sequences.
pub fn run_all<H: Harness>(harness: &H, runtime: &tokio::runtime::Runtime, cases: u32) {
    runtime.block_on(scenario_lifecycle(harness));
    runtime.block_on(scenario_forged_leases_are_refused(harness));
    runtime.block_on(scenario_payer_signature_required(harness));
    runtime.block_on(scenario_replays_and_reorders_pay_nothing(harness));
    runtime.block_on(scenario_close_refunds_once(harness));
    runtime.block_on(early::scenario_early_close_refunds_at_once(harness));
    runtime.block_on(early::scenario_early_close_needs_both_and_never_claws_back(
        harness,
    ));
    runtime.block_on(early::scenario_a_lease_that_never_ran_closes_with_a_full_refund(harness));
    random_operation_sequences(harness, runtime, cases);
}

mod early;
mod random;
pub use early::{
    close, scenario_a_lease_that_never_ran_closes_with_a_full_refund,
    scenario_early_close_needs_both_and_never_claws_back, scenario_early_close_refunds_at_once,
};
pub use random::random_operation_sequences;

// ---- fixtures ----

fn party(i: u8) -> Keypair {
    Keypair::from_seed(&[i.wrapping_add(101); 32])
}

fn stranger() -> Keypair {
    Keypair::from_seed(&[250; 32])
}

/// A lease both parties signed.
pub fn lease(
    requester: &Keypair,
    provider: &Keypair,
    price: Amount,
    gpu_count: u32,
    max_duration_secs: u64,
    starts_at: Timestamp,
    nonce: u8,
) -> Lease {
    let terms = LeaseTerms {
        limits: crate::limits::SandboxLimits::default(),
        order_id: OrderId([nonce; 32]),
        requester: requester.public(),
        provider: provider.public(),
        slot: 0,
        gpu_model: "H100".into(),
        gpu_count,
        price_per_gpu_hour: price,
        max_duration_secs,
        receipt_interval_secs: 10,
        starts_at,
        escrow: LeaseTerms::required_escrow(price, gpu_count, max_duration_secs)
            .unwrap_or(Amount(u64::MAX)),
        simulated: true,
    };
    match Signed::sign(terms, requester).and_then(|p| Lease::countersign(&p, provider)) {
        Ok(lease) => lease,
        Err(e) => panic!("fixture lease: {e}"),
    }
}

/// A lease whose provider signature was made by someone else.
fn forged_lease(
    requester: &Keypair,
    provider: &Keypair,
    starts_at: Timestamp,
    nonce: u8,
) -> CoSigned {
    let good = lease(
        requester,
        provider,
        Amount(1_000_000),
        1,
        600,
        starts_at,
        nonce,
    );
    let proposal =
        SignedEnvelope::seal_bytes(Kind::LeaseTerms, good.cosigned().body().to_vec(), requester);
    CoSigned::countersign(&proposal, &stranger(), true)
}

/// A lease carrying the requester's signature twice and no provider's.
fn one_sided_lease(
    requester: &Keypair,
    provider: &Keypair,
    starts_at: Timestamp,
    nonce: u8,
) -> CoSigned {
    let good = lease(
        requester,
        provider,
        Amount(1_000_000),
        1,
        600,
        starts_at,
        nonce,
    );
    let mut cosigned = good.cosigned().clone();
    cosigned.provider_signature = cosigned.requester_signature;
    cosigned
}

/// How a fixture receipt is spoiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Not at all: both parties signed the true amount.
    None,
    /// The payer's signature is a stranger's.
    StrangerForPayer,
    /// The provider signed in the payer's place (no payer signature).
    ProviderForPayer,
    /// The payer signed in the provider's place (no provider signature).
    RequesterForProvider,
    /// Both signed, but the amount is more than the GPU-seconds cost.
    Inflated,
}

/// A cumulative receipt for `lease` worth `gpu_seconds` at the lease's
/// price, signed by both parties, then spoiled as `tamper` says.
pub fn receipt(
    lease: &Lease,
    requester: &Keypair,
    provider: &Keypair,
    sequence: u64,
    gpu_seconds: u64,
    is_final: bool,
    tamper: Tamper,
) -> CoSigned {
    let mut amount =
        cost(lease.terms().price_per_gpu_hour, gpu_seconds).unwrap_or(Amount(u64::MAX));
    if tamper == Tamper::Inflated {
        amount = Amount(amount.0.saturating_add(1));
    }
    let receipt = UsageReceipt {
        lease_id: lease.id(),
        sequence,
        gpu_seconds,
        cumulative_amount: amount,
        issued_at: Timestamp(0),
        is_final,
        result_hash: is_final.then_some([7; 32]),
        exit_status: is_final.then_some(0),
    };
    let signed = match ReceiptClaim::sign_as_provider(receipt, provider) {
        Ok(signed) => signed,
        Err(e) => panic!("fixture receipt: {e}"),
    };
    let mut cosigned = match ReceiptClaim::countersign(signed.envelope(), lease, requester) {
        Ok(claim) => claim.cosigned().clone(),
        Err(e) => panic!("fixture receipt: {e}"),
    };
    spoil(&mut cosigned, tamper);
    cosigned
}

/// Spoils a message's signatures as `tamper` says (an inflated amount is
/// the caller's: it is in the body).
fn spoil(cosigned: &mut CoSigned, tamper: Tamper) {
    match tamper {
        Tamper::StrangerForPayer => {
            cosigned.requester_signature =
                stranger().sign_raw(&signing_bytes(cosigned.kind, &cosigned.body));
        }
        Tamper::ProviderForPayer => cosigned.requester_signature = cosigned.provider_signature,
        Tamper::RequesterForProvider => cosigned.provider_signature = cosigned.requester_signature,
        Tamper::None | Tamper::Inflated => {}
    }
}

fn must<T>(what: &str, result: Result<T, LedgerError>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what}: {e}"),
    }
}

async fn conserved<L: Ledger>(ledger: &L) {
    let supply = must("supply", ledger.supply().await);
    assert!(supply.conserved(), "money not conserved: {supply:?}");
}

// ---- scenarios ----

/// A fresh ledger where party 0 deposited 10 AGR and locked a lease from
/// party 1 at 3.6 AGR per GPU-hour.
async fn funded_lease<H: Harness>(
    harness: &H,
    gpus: u32,
    secs: u64,
    nonce: u8,
) -> (H::Ledger, Keypair, Keypair, Lease) {
    let ledger = harness.fresh().await;
    let (requester, provider) = (party(0), party(1));
    let now = must("now", ledger.now().await);
    must(
        "deposit",
        ledger
            .deposit(&requester.public(), Amount(10_000_000))
            .await,
    );
    let lease = lease(
        &requester,
        &provider,
        Amount(3_600_000),
        gpus,
        secs,
        now,
        nonce,
    );
    must("lock", ledger.lock_escrow(lease.cosigned()).await);
    (ledger, requester, provider, lease)
}

/// Deposit, lock, settle twice, final, close: every unit accounted for.
pub async fn scenario_lifecycle<H: Harness>(harness: &H) {
    let ledger = harness.fresh().await;
    let (requester, provider) = (party(0), party(1));
    let now = must("now", ledger.now().await);
    must(
        "deposit",
        ledger
            .deposit(&requester.public(), Amount(10_000_000))
            .await,
    );
    // 3.6 AGR/GPU-h × 2 GPUs × 600 s = 1.2 AGR of escrow.
    let lease = lease(&requester, &provider, Amount(3_600_000), 2, 600, now, 1);
    let state = must("lock", ledger.lock_escrow(lease.cosigned()).await);
    assert_eq!(state.escrow, Amount(1_200_000));
    assert_eq!(
        must("balance", ledger.balance(&requester.public()).await),
        Amount(8_800_000)
    );
    // Locking again changes nothing.
    must("relock", ledger.lock_escrow(lease.cosigned()).await);
    assert_eq!(
        must("balance", ledger.balance(&requester.public()).await),
        Amount(8_800_000)
    );

    let s1 = must(
        "settle 1",
        ledger
            .settle(&receipt(
                &lease,
                &requester,
                &provider,
                1,
                100,
                false,
                Tamper::None,
            ))
            .await,
    );
    assert_eq!(s1.paid, Amount(100_000));
    let s2 = must(
        "settle 2",
        ledger
            .settle(&receipt(
                &lease,
                &requester,
                &provider,
                2,
                300,
                true,
                Tamper::None,
            ))
            .await,
    );
    assert_eq!((s2.paid, s2.settled), (Amount(200_000), Amount(300_000)));
    assert_eq!(
        must("provider", ledger.balance(&provider.public()).await),
        Amount(300_000)
    );
    // The final receipt settled: close at once, refund the rest.
    let closure = must("close", ledger.close(&lease.id()).await);
    assert_eq!(closure.refunded, Amount(900_000));
    assert_eq!(
        must("balance", ledger.balance(&requester.public()).await),
        Amount(9_700_000)
    );
    let state = must("escrow", ledger.escrow(&lease.id()).await);
    assert_eq!(
        state.map(|s| (s.ops, s.closed())),
        Some((4, true)),
        "lock + 2 settlements + close"
    );
    conserved(&ledger).await;
}

/// No escrow without both parties' signatures.
pub async fn scenario_forged_leases_are_refused<H: Harness>(harness: &H) {
    let ledger = harness.fresh().await;
    let (requester, provider) = (party(0), party(1));
    let now = must("now", ledger.now().await);
    must(
        "deposit",
        ledger
            .deposit(&requester.public(), Amount(10_000_000))
            .await,
    );
    for forged in [
        forged_lease(&requester, &provider, now, 2),
        one_sided_lease(&requester, &provider, now, 3),
    ] {
        let result = ledger.lock_escrow(&forged).await;
        assert!(
            matches!(result, Err(LedgerError::InvalidLease(_))),
            "{result:?}"
        );
    }
    assert_eq!(
        must("balance", ledger.balance(&requester.public()).await),
        Amount(10_000_000)
    );
    // Without funds: refused, nothing moves.
    let poor = party(2);
    let result = ledger
        .lock_escrow(lease(&poor, &provider, Amount(1_000_000), 1, 600, now, 4).cosigned())
        .await;
    assert!(
        matches!(result, Err(LedgerError::InsufficientFunds { .. })),
        "{result:?}"
    );
    // An ended lease cannot be locked.
    let old = lease(
        &requester,
        &provider,
        Amount(1_000_000),
        1,
        1,
        Timestamp(now.0.saturating_sub(5_000)),
        5,
    );
    assert!(matches!(
        ledger.lock_escrow(old.cosigned()).await,
        Err(LedgerError::LeaseEnded(_))
    ));
    let supply = must("supply", ledger.supply().await);
    assert_eq!((supply.escrowed, supply.deposited), (0, 10_000_000));
}

/// No settlement without the payer's signature; no inflated amounts.
pub async fn scenario_payer_signature_required<H: Harness>(harness: &H) {
    let (ledger, requester, provider, lease) = funded_lease(harness, 1, 600, 6).await;
    for tamper in [
        Tamper::StrangerForPayer,
        Tamper::ProviderForPayer,
        Tamper::RequesterForProvider,
    ] {
        let result = ledger
            .settle(&receipt(
                &lease, &requester, &provider, 1, 100, false, tamper,
            ))
            .await;
        assert!(
            matches!(result, Err(LedgerError::InvalidReceipt(_))),
            "{tamper:?}: {result:?}"
        );
    }
    let result = ledger
        .settle(&receipt(
            &lease,
            &requester,
            &provider,
            1,
            100,
            false,
            Tamper::Inflated,
        ))
        .await;
    assert!(
        matches!(result, Err(LedgerError::ReceiptRule(_))),
        "{result:?}"
    );
    // Beyond the lease's GPU-seconds: refused too.
    let result = ledger
        .settle(&receipt(
            &lease,
            &requester,
            &provider,
            1,
            601,
            false,
            Tamper::None,
        ))
        .await;
    assert!(
        matches!(result, Err(LedgerError::ReceiptRule(_))),
        "{result:?}"
    );
    assert_eq!(
        must("provider", ledger.balance(&provider.public()).await),
        Amount::ZERO
    );
    conserved(&ledger).await;
}

/// Replayed and reordered receipts pay nothing extra.
pub async fn scenario_replays_and_reorders_pay_nothing<H: Harness>(harness: &H) {
    let (ledger, requester, provider, lease) = funded_lease(harness, 1, 600, 7).await;
    let r1 = receipt(&lease, &requester, &provider, 1, 100, false, Tamper::None);
    let r2 = receipt(&lease, &requester, &provider, 2, 200, false, Tamper::None);
    let r3 = receipt(&lease, &requester, &provider, 3, 300, false, Tamper::None);
    must("r2", ledger.settle(&r2).await);
    // r1 arrives late: older, pays nothing.
    assert_eq!(must("r1", ledger.settle(&r1).await).paid, Amount::ZERO);
    assert_eq!(
        must("r2 again", ledger.settle(&r2).await).paid,
        Amount::ZERO
    );
    assert_eq!(must("r3", ledger.settle(&r3).await).paid, Amount(100_000));
    assert_eq!(
        must("r3 again", ledger.settle(&r3).await).paid,
        Amount::ZERO
    );
    assert_eq!(
        must("provider", ledger.balance(&provider.public()).await),
        Amount(300_000)
    );
    conserved(&ledger).await;
}

/// Close waits for the lease end plus grace, refunds the remainder once.
pub async fn scenario_close_refunds_once<H: Harness>(harness: &H) {
    let (ledger, requester, provider, lease) = funded_lease(harness, 1, 60, 8).await;
    must(
        "settle",
        ledger
            .settle(&receipt(
                &lease,
                &requester,
                &provider,
                1,
                30,
                false,
                Tamper::None,
            ))
            .await,
    );
    assert!(matches!(
        ledger.close(&lease.id()).await,
        Err(LedgerError::NotClosable { .. })
    ));
    harness
        .advance(&ledger, 60_000 + harness.close_grace_ms())
        .await;
    let closure = must("close", ledger.close(&lease.id()).await);
    assert_eq!(
        (closure.settled, closure.refunded),
        (Amount(30_000), Amount(30_000))
    );
    assert!(matches!(
        ledger.close(&lease.id()).await,
        Err(LedgerError::LeaseClosed(_))
    ));
    // Nothing settles after close.
    let late = receipt(&lease, &requester, &provider, 2, 60, true, Tamper::None);
    assert!(matches!(
        ledger.settle(&late).await,
        Err(LedgerError::LeaseClosed(_))
    ));
    assert_eq!(
        must("requester", ledger.balance(&requester.public()).await),
        Amount(9_970_000)
    );
    assert_eq!(
        must("provider", ledger.balance(&provider.public()).await),
        Amount(30_000)
    );
    conserved(&ledger).await;
}
