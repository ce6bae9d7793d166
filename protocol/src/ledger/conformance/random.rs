//! Random operation sequences against a simple independent model: after
//! every operation the ledger must agree with what the model says should
//! have happened, and money must be conserved.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::{Harness, Tamper, close, forged_lease, lease, one_sided_lease, party, receipt};
use crate::amount::{Amount, cost};
use crate::close::CloseReason;
use crate::identity::Keypair;
use crate::lease::Lease;
use crate::ledger::{Ledger, LedgerError};
use crate::time::Timestamp;

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
