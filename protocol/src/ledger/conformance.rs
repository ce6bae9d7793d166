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

use std::collections::HashMap;

use async_trait::async_trait;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::amount::{Amount, cost};
use crate::close::CloseReason;
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
pub use early::{
    close, scenario_a_lease_that_never_ran_closes_with_a_full_refund,
    scenario_early_close_needs_both_and_never_claws_back, scenario_early_close_refunds_at_once,
};

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

// ---- random operation sequences against a model ----

const ACCOUNTS: usize = 4;
const LEASES: usize = 4;
const RECEIPTS: usize = 4;

#[derive(Debug, Clone)]
struct LeaseSpec {
    requester: usize,
    provider_offset: usize,
    price: u64,
    gpus: u32,
    duration_secs: u64,
    /// Increments of GPU-seconds between successive receipts.
    steps: [u64; RECEIPTS],
}

#[derive(Debug, Clone, Copy)]
enum LockKind {
    Valid,
    Forged,
    OneSided,
}

#[derive(Debug, Clone)]
enum Op {
    Deposit {
        account: usize,
        amount: u64,
    },
    Lock {
        lease: usize,
        kind: LockKind,
    },
    Settle {
        lease: usize,
        receipt: usize,
        tamper: Tamper,
    },
    Close {
        lease: usize,
    },
    /// Both parties close the lease early, paying for the GPU-seconds of
    /// receipt `upto − 1` (none when `upto` is 0).
    CloseEarly {
        lease: usize,
        upto: usize,
        tamper: Tamper,
    },
    Advance {
        ms: u64,
    },
    Restart,
}

fn lease_spec() -> impl Strategy<Value = LeaseSpec> {
    (
        0..ACCOUNTS,
        1..ACCOUNTS,
        1u64..20_000_000,
        1u32..4,
        30u64..600,
        prop::array::uniform4(0u64..400),
    )
        .prop_map(
            |(requester, provider_offset, price, gpus, duration_secs, steps)| LeaseSpec {
                requester,
                provider_offset,
                price,
                gpus,
                duration_secs,
                steps,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let tamper = prop_oneof![
        6 => Just(Tamper::None),
        1 => Just(Tamper::StrangerForPayer),
        1 => Just(Tamper::ProviderForPayer),
        1 => Just(Tamper::RequesterForProvider),
        1 => Just(Tamper::Inflated),
    ];
    let lock_kind = prop_oneof![6 => Just(LockKind::Valid), 1 => Just(LockKind::Forged), 1 => Just(LockKind::OneSided)];
    prop_oneof![
        3 => (0..ACCOUNTS, 1u64..30_000_000).prop_map(|(account, amount)| Op::Deposit { account, amount }),
        3 => (0..LEASES, lock_kind).prop_map(|(lease, kind)| Op::Lock { lease, kind }),
        6 => (0..LEASES, 0..RECEIPTS, tamper.clone()).prop_map(|(lease, receipt, tamper)| Op::Settle { lease, receipt, tamper }),
        2 => (0..LEASES).prop_map(|lease| Op::Close { lease }),
        2 => (0..LEASES, 0..=RECEIPTS, tamper).prop_map(|(lease, upto, tamper)| Op::CloseEarly { lease, upto, tamper }),
        2 => (0u64..400_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Restart),
    ]
}

/// What the model expects of one lease's escrow.
#[derive(Debug, Clone, Default)]
struct ModelEscrow {
    escrow: u64,
    settled: u64,
    last_sequence: u64,
    final_settled: bool,
    refunded: Option<u64>,
    closable_at: u64,
}

struct Model {
    balances: [u64; ACCOUNTS],
    deposited: u128,
    escrows: HashMap<usize, ModelEscrow>,
    /// Settled totals the ledger reported last, per lease: never decrease.
    seen_settled: HashMap<usize, u64>,
}

struct Fixture {
    keys: Vec<Keypair>,
    specs: Vec<LeaseSpec>,
    leases: Vec<Lease>,
    /// Per lease: (gpu_seconds, amount) of receipt k (sequence k + 1).
    receipts: Vec<Vec<(u64, u64)>>,
}

impl Fixture {
    fn new(specs: Vec<LeaseSpec>, starts_at: Timestamp) -> Self {
        let keys: Vec<Keypair> = (0..ACCOUNTS as u8).map(party).collect();
        let mut leases = Vec::new();
        let mut receipts = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let provider = (spec.requester + spec.provider_offset) % ACCOUNTS;
            let lease = lease(
                &keys[spec.requester],
                &keys[provider],
                Amount(spec.price),
                spec.gpus,
                spec.duration_secs,
                starts_at,
                i as u8 + 20,
            );
            let max = u64::from(spec.gpus) * spec.duration_secs;
            let mut gpu_seconds = 0;
            let mut list = Vec::new();
            for step in spec.steps {
                gpu_seconds = (gpu_seconds + step).min(max);
                list.push((
                    gpu_seconds,
                    cost(Amount(spec.price), gpu_seconds)
                        .map(|a| a.0)
                        .unwrap_or(u64::MAX),
                ));
            }
            leases.push(lease);
            receipts.push(list);
        }
        Self {
            keys,
            specs,
            leases,
            receipts,
        }
    }

    fn provider_of(&self, lease: usize) -> usize {
        (self.specs[lease].requester + self.specs[lease].provider_offset) % ACCOUNTS
    }
}

/// Random operation sequences; each case runs on a fresh ledger.
pub fn random_operation_sequences<H: Harness>(
    harness: &H,
    runtime: &tokio::runtime::Runtime,
    cases: u32,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(lease_spec(), LEASES),
        prop::collection::vec(op(), 1..40),
    );
    let result = runner.run(&strategy, |(specs, ops)| {
        runtime.block_on(run_sequence(harness, specs, ops))
    });
    if let Err(e) = result {
        panic!("ledger conformance: {e}");
    }
}

async fn run_sequence<H: Harness>(
    harness: &H,
    specs: Vec<LeaseSpec>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut ledger = harness.fresh().await;
    let start = ledger.now().await.map_err(fail)?;
    let fixture = Fixture::new(specs, start);
    let mut model = Model {
        balances: [0; ACCOUNTS],
        deposited: 0,
        escrows: HashMap::new(),
        seen_settled: HashMap::new(),
    };
    for (step, op) in ops.iter().enumerate() {
        let now = ledger.now().await.map_err(fail)?.0;
        let context = format!("step {step} {op:?}");
        if let Op::Restart = op {
            ledger = harness.restart(ledger).await;
        }
        apply(harness, &ledger, &fixture, &mut model, op, now)
            .await
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        check(&ledger, &fixture, &mut model)
            .await
            .map_err(|e| TestCaseError::fail(format!("after {context}: {e}")))?;
    }
    Ok(())
}

fn fail(e: LedgerError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

async fn apply<H: Harness>(
    harness: &H,
    ledger: &H::Ledger,
    fx: &Fixture,
    model: &mut Model,
    op: &Op,
    now: u64,
) -> Result<(), String> {
    match *op {
        Op::Deposit { account, amount } => {
            let balance = ledger
                .deposit(&fx.keys[account].public(), Amount(amount))
                .await
                .map_err(|e| e.to_string())?;
            model.balances[account] += amount;
            model.deposited += u128::from(amount);
            expect_eq("balance after deposit", balance.0, model.balances[account])
        }
        Op::Lock { lease, kind } => {
            let spec = &fx.specs[lease];
            let requester = &fx.keys[spec.requester];
            let provider = &fx.keys[fx.provider_of(lease)];
            let cosigned = match kind {
                LockKind::Valid => fx.leases[lease].cosigned().clone(),
                LockKind::Forged => forged_lease(
                    requester,
                    provider,
                    fx.leases[lease].terms().starts_at,
                    200 + lease as u8,
                ),
                LockKind::OneSided => one_sided_lease(
                    requester,
                    provider,
                    fx.leases[lease].terms().starts_at,
                    210 + lease as u8,
                ),
            };
            let result = ledger.lock_escrow(&cosigned).await;
            let terms = fx.leases[lease].terms();
            let expected_ok = match kind {
                LockKind::Forged | LockKind::OneSided => false,
                LockKind::Valid if model.escrows.contains_key(&lease) => true,
                LockKind::Valid => {
                    now < terms.ends_at().0 && model.balances[spec.requester] >= terms.escrow.0
                }
            };
            match (result, expected_ok) {
                (Ok(_), true) => {
                    if let LockKind::Valid = kind
                        && !model.escrows.contains_key(&lease)
                    {
                        model.balances[spec.requester] -= terms.escrow.0;
                        model.escrows.insert(
                            lease,
                            ModelEscrow {
                                escrow: terms.escrow.0,
                                closable_at: terms.ends_at().0 + harness.close_grace_ms(),
                                ..ModelEscrow::default()
                            },
                        );
                    }
                    Ok(())
                }
                (Err(_), false) => Ok(()),
                (result, expected) => Err(format!("lock: expected ok={expected}, got {result:?}")),
            }
        }
        Op::Settle {
            lease,
            receipt: k,
            tamper,
        } => {
            let spec = &fx.specs[lease];
            let (requester, provider) = (&fx.keys[spec.requester], &fx.keys[fx.provider_of(lease)]);
            let (gpu_seconds, amount) = fx.receipts[lease][k];
            let is_final = k == RECEIPTS - 1;
            let cosigned = receipt(
                &fx.leases[lease],
                requester,
                provider,
                k as u64 + 1,
                gpu_seconds,
                is_final,
                tamper,
            );
            let result = ledger.settle(&cosigned).await;
            let sequence = k as u64 + 1;
            let expected = match model.escrows.get(&lease) {
                None => None,
                Some(e) if e.refunded.is_some() || tamper != Tamper::None => None,
                Some(e) if sequence <= e.last_sequence => Some(0),
                Some(e) if e.final_settled => None,
                Some(e) => Some(amount.saturating_sub(e.settled)),
            };
            match (result, expected) {
                (Ok(settlement), Some(paid)) => {
                    expect_eq("paid", settlement.paid.0, paid)?;
                    if let Some(e) = model.escrows.get_mut(&lease)
                        && sequence > e.last_sequence
                    {
                        e.settled = e.settled.max(amount);
                        e.last_sequence = sequence;
                        e.final_settled = is_final;
                        model.balances[fx.provider_of(lease)] += paid;
                    }
                    Ok(())
                }
                (Err(e), None) => {
                    // On an open lease, a refusal must say why.
                    let open = model
                        .escrows
                        .get(&lease)
                        .is_some_and(|m| m.refunded.is_none());
                    let fitting = match tamper {
                        _ if !open => !e.is_transient(),
                        Tamper::StrangerForPayer
                        | Tamper::ProviderForPayer
                        | Tamper::RequesterForProvider => {
                            matches!(e, LedgerError::InvalidReceipt(_))
                        }
                        Tamper::Inflated => matches!(
                            e,
                            LedgerError::ReceiptRule(_) | LedgerError::InvalidReceipt(_)
                        ),
                        Tamper::None => !e.is_transient(),
                    };
                    if fitting {
                        Ok(())
                    } else {
                        Err(format!("settle ({tamper:?}): unexpected error {e:?}"))
                    }
                }
                (result, expected) => Err(format!("settle: expected {expected:?}, got {result:?}")),
            }
        }
        Op::Close { lease } => {
            let result = ledger.close(&fx.leases[lease].id()).await;
            let expected = match model.escrows.get(&lease) {
                None => None,
                Some(e) if e.refunded.is_some() => None,
                Some(e) if !e.final_settled && now < e.closable_at => None,
                Some(e) => Some(e.escrow - e.settled),
            };
            match (result, expected) {
                (Ok(closure), Some(refund)) => {
                    expect_eq("refund", closure.refunded.0, refund)?;
                    if let Some(e) = model.escrows.get_mut(&lease) {
                        e.refunded = Some(refund);
                    }
                    model.balances[fx.specs[lease].requester] += refund;
                    Ok(())
                }
                (Err(_), None) => Ok(()),
                (result, expected) => Err(format!("close: expected {expected:?}, got {result:?}")),
            }
        }
        Op::CloseEarly {
            lease,
            upto,
            tamper,
        } => {
            let spec = &fx.specs[lease];
            let provider_index = fx.provider_of(lease);
            let (requester, provider) = (&fx.keys[spec.requester], &fx.keys[provider_index]);
            let (gpu_seconds, amount) = match upto {
                0 => (0, 0),
                k => fx.receipts[lease][k - 1],
            };
            let cosigned = close(
                &fx.leases[lease],
                requester,
                provider,
                gpu_seconds,
                CloseReason::ProviderRestarted,
                tamper,
            );
            let result = ledger.close_early(&cosigned).await;
            let expected = match model.escrows.get(&lease) {
                Some(e)
                    if e.refunded.is_none() && tamper == Tamper::None && amount >= e.settled =>
                {
                    Some((amount - e.settled, e.escrow - amount))
                }
                _ => None,
            };
            match (result, expected) {
                (Ok(closure), Some((paid, refund))) => {
                    expect_eq("early close refund", closure.refunded.0, refund)?;
                    expect_eq("early close settled", closure.settled.0, amount)?;
                    if let Some(e) = model.escrows.get_mut(&lease) {
                        e.settled = amount;
                        e.final_settled = true;
                        e.refunded = Some(refund);
                    }
                    model.balances[provider_index] += paid;
                    model.balances[spec.requester] += refund;
                    Ok(())
                }
                (Err(e), None) if !e.is_transient() => Ok(()),
                (result, expected) => Err(format!(
                    "early close ({tamper:?}): expected {expected:?}, got {result:?}"
                )),
            }
        }
        Op::Advance { ms } => {
            harness.advance(ledger, ms).await;
            Ok(())
        }
        // Done by the caller, which owns the ledger; `check` then finds
        // everything acknowledged before the restart.
        Op::Restart => Ok(()),
    }
}

fn expect_eq(what: &str, got: u64, want: u64) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: ledger says {got}, model says {want}"))
    }
}

async fn check<L: Ledger>(ledger: &L, fx: &Fixture, model: &mut Model) -> Result<(), String> {
    for (i, key) in fx.keys.iter().enumerate() {
        let balance = ledger
            .balance(&key.public())
            .await
            .map_err(|e| e.to_string())?;
        expect_eq(
            &format!("balance of account {i}"),
            balance.0,
            model.balances[i],
        )?;
    }
    let mut outstanding: u128 = 0;
    for (i, lease) in fx.leases.iter().enumerate() {
        let state = ledger
            .escrow(&lease.id())
            .await
            .map_err(|e| e.to_string())?;
        match (state, model.escrows.get(&i)) {
            (None, None) => {}
            (Some(state), Some(m)) => {
                expect_eq(&format!("lease {i} settled"), state.settled.0, m.settled)?;
                expect_eq(
                    &format!("lease {i} last sequence"),
                    state.last_sequence,
                    m.last_sequence,
                )?;
                let seen = model.seen_settled.entry(i).or_insert(0);
                if state.settled.0 < *seen {
                    return Err(format!(
                        "lease {i}: settled fell from {seen} to {}",
                        state.settled
                    ));
                }
                *seen = state.settled.0;
                if state.settled > state.escrow {
                    return Err(format!(
                        "lease {i}: settled {} exceeds escrow {}",
                        state.settled, state.escrow
                    ));
                }
                if state.refunded.map(|a| a.0) != m.refunded {
                    return Err(format!(
                        "lease {i}: refunded {:?}, model {:?}",
                        state.refunded, m.refunded
                    ));
                }
                outstanding += u128::from(state.outstanding().0);
            }
            (state, m) => return Err(format!("lease {i}: ledger has {state:?}, model has {m:?}")),
        }
    }
    let supply = ledger.supply().await.map_err(|e| e.to_string())?;
    if !supply.conserved() {
        return Err(format!("money not conserved: {supply:?}"));
    }
    if supply.deposited != model.deposited || supply.escrowed != outstanding {
        return Err(format!(
            "supply {supply:?}; model deposited {}, outstanding {outstanding}",
            model.deposited
        ));
    }
    Ok(())
}
