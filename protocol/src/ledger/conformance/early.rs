//! The early close: both parties sign that a lease is over and what it
//! pays in all; the ledger pays and refunds at once, never pays less than
//! already settled, and refuses anything one party did not sign.

use super::{Harness, Tamper, conserved, funded_lease, must, receipt, spoil, stranger};
use crate::amount::Amount;
use crate::close::{CloseClaim, CloseReason, LeaseClose};
use crate::envelope::CoSigned;
use crate::identity::Keypair;
use crate::lease::Lease;
use crate::ledger::{Ledger, LedgerError};
use crate::time::Timestamp;

/// An early close of `lease` paying for `gpu_seconds` in all, signed by
/// both parties, then spoiled as `tamper` says.
pub fn close(
    lease: &Lease,
    requester: &Keypair,
    provider: &Keypair,
    gpu_seconds: u64,
    reason: CloseReason,
    tamper: Tamper,
) -> CoSigned {
    let mut close = LeaseClose::new(lease, gpu_seconds, reason, Timestamp(0));
    if tamper == Tamper::Inflated {
        close.cumulative_amount = Amount(close.cumulative_amount.0.saturating_add(1));
    }
    let signed = match CloseClaim::sign_as_provider(close, provider) {
        Ok(signed) => signed,
        Err(e) => panic!("fixture close: {e}"),
    };
    let mut cosigned = match CloseClaim::countersign(signed.envelope(), lease, requester) {
        Ok(claim) => claim.cosigned().clone(),
        Err(e) => panic!("fixture close: {e}"),
    };
    spoil(&mut cosigned, tamper);
    cosigned
}

/// Settles 30 GPU-seconds, then closes early at 40: the provider gets the
/// 10 more, the requester the rest, with no wait for the lease's end; and
/// nothing moves the lease after.
pub async fn scenario_early_close_refunds_at_once<H: Harness>(harness: &H) {
    let (ledger, requester, provider, lease) = funded_lease(harness, 1, 600, 40).await;
    let first = receipt(&lease, &requester, &provider, 1, 30, false, Tamper::None);
    must("settle", ledger.settle(&first).await);
    let early = close(
        &lease,
        &requester,
        &provider,
        40,
        CloseReason::ProviderRestarted,
        Tamper::None,
    );
    // 3.6 AGR per GPU-hour is 1,000 units a GPU-second; the lease locked 600,000.
    let closure = must("close early", ledger.close_early(&early).await);
    assert_eq!(
        (closure.settled, closure.refunded),
        (Amount(40_000), Amount(560_000))
    );
    assert_eq!(
        must("provider", ledger.balance(&provider.public()).await),
        Amount(40_000)
    );
    assert_eq!(
        must("requester", ledger.balance(&requester.public()).await),
        Amount(9_960_000)
    );
    let state = must("escrow", ledger.escrow(&lease.id()).await);
    let state = match state {
        Some(state) => state,
        None => panic!("the closed lease's escrow is gone"),
    };
    assert!(state.closed());
    assert_eq!(state.outstanding(), Amount::ZERO);
    // Once: the same close, a later receipt and a plain close all find it closed.
    assert!(matches!(
        ledger.close_early(&early).await,
        Err(LedgerError::LeaseClosed(_))
    ));
    let late = receipt(&lease, &requester, &provider, 2, 60, true, Tamper::None);
    assert!(matches!(
        ledger.settle(&late).await,
        Err(LedgerError::LeaseClosed(_))
    ));
    assert!(matches!(
        ledger.close(&lease.id()).await,
        Err(LedgerError::LeaseClosed(_))
    ));
    assert_eq!(
        must("provider", ledger.balance(&provider.public()).await),
        Amount(40_000)
    );
    conserved(&ledger).await;
}

/// A close one party did not sign, priced wrong, paying less than already
/// settled, or for no lease is refused and changes nothing.
pub async fn scenario_early_close_needs_both_and_never_claws_back<H: Harness>(harness: &H) {
    let (ledger, requester, provider, lease) = funded_lease(harness, 1, 600, 41).await;
    let first = receipt(&lease, &requester, &provider, 1, 30, false, Tamper::None);
    must("settle", ledger.settle(&first).await);
    let before = must("escrow", ledger.escrow(&lease.id()).await);
    let supply = must("supply", ledger.supply().await);
    let reason = CloseReason::Ended;
    let refused = [
        (
            "a stranger for the payer",
            close(
                &lease,
                &requester,
                &provider,
                40,
                reason,
                Tamper::StrangerForPayer,
            ),
        ),
        (
            "the provider for the payer",
            close(
                &lease,
                &requester,
                &provider,
                40,
                reason,
                Tamper::ProviderForPayer,
            ),
        ),
        (
            "the payer for the provider",
            close(
                &lease,
                &requester,
                &provider,
                40,
                reason,
                Tamper::RequesterForProvider,
            ),
        ),
        (
            "an amount above the GPU-seconds' cost",
            close(&lease, &requester, &provider, 40, reason, Tamper::Inflated),
        ),
        (
            "less than already settled",
            close(&lease, &requester, &provider, 20, reason, Tamper::None),
        ),
        ("a receipt in a close's place", first.clone()),
    ];
    for (what, cosigned) in &refused {
        match ledger.close_early(cosigned).await {
            Err(LedgerError::InvalidClose(_)) => {}
            other => panic!("early close with {what}: expected invalid close, got {other:?}"),
        }
        assert_eq!(
            must("escrow", ledger.escrow(&lease.id()).await),
            before,
            "{what} changed the escrow"
        );
        assert_eq!(
            must("supply", ledger.supply().await),
            supply,
            "{what} moved money"
        );
    }
    // A close for a lease the ledger never locked.
    let (other_requester, other_provider) = (stranger(), requester.clone());
    let unlocked = super::lease(
        &other_requester,
        &other_provider,
        Amount(3_600_000),
        1,
        60,
        Timestamp(0),
        42,
    );
    let nowhere = close(
        &unlocked,
        &other_requester,
        &other_provider,
        1,
        reason,
        Tamper::None,
    );
    assert!(matches!(
        ledger.close_early(&nowhere).await,
        Err(LedgerError::UnknownLease(_))
    ));
    // The honest close at exactly what settled pays nothing more.
    let even = close(&lease, &requester, &provider, 30, reason, Tamper::None);
    let closure = must("close early", ledger.close_early(&even).await);
    assert_eq!(
        (closure.settled, closure.refunded),
        (Amount(30_000), Amount(570_000))
    );
    assert_eq!(
        must("provider", ledger.balance(&provider.public()).await),
        Amount(30_000)
    );
    conserved(&ledger).await;
}

/// A job that never started: a close at zero refunds the whole escrow.
pub async fn scenario_a_lease_that_never_ran_closes_with_a_full_refund<H: Harness>(harness: &H) {
    let (ledger, requester, provider, lease) = funded_lease(harness, 2, 60, 43).await;
    let nothing = close(
        &lease,
        &requester,
        &provider,
        0,
        CloseReason::NotStarted,
        Tamper::None,
    );
    let closure = must("close early", ledger.close_early(&nothing).await);
    assert_eq!(
        (closure.settled, closure.refunded),
        (Amount::ZERO, lease.terms().escrow)
    );
    assert_eq!(
        must("requester", ledger.balance(&requester.public()).await),
        Amount(10_000_000)
    );
    assert_eq!(
        must("provider", ledger.balance(&provider.public()).await),
        Amount::ZERO
    );
    conserved(&ledger).await;
}
