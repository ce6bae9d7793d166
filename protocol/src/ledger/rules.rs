//! The ledger's state transitions as pure functions, so every backend
//! applies the same rules and only stores and serves their results.
//!
//! Signatures are verified by the caller (one by one or in a batch) before
//! these run: they take a verified [`Lease`] and a [`ReceiptClaim`] whose
//! signatures the caller checked against that lease.

use crate::amount::Amount;
use crate::close::{LeaseClose, check_close_amount};
use crate::lease::Lease;
use crate::ledger::{Closure, EscrowState, LedgerError, Settlement};
use crate::receipt::{ReceiptClaim, check_amount};
use crate::time::Timestamp;

/// A lock the backend should store: the escrow and the payer's new balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockPlan {
    /// The new escrow.
    pub state: EscrowState,
    /// The payer's balance after locking.
    pub payer_balance: Amount,
}

/// Plans locking `lease`'s escrow from a payer holding `payer_balance`.
/// `close_grace_ms` after the lease ends, anyone may close it.
pub fn plan_lock(
    lease: &Lease,
    payer_balance: Amount,
    now: Timestamp,
    close_grace_ms: u64,
) -> Result<LockPlan, LedgerError> {
    let terms = lease.terms();
    let ends_at = terms.ends_at();
    if now >= ends_at {
        return Err(LedgerError::LeaseEnded(lease.id()));
    }
    let payer_balance =
        payer_balance
            .checked_sub(terms.escrow)
            .ok_or(LedgerError::InsufficientFunds {
                account: terms.requester.to_string(),
                available: payer_balance,
                needed: terms.escrow,
            })?;
    Ok(LockPlan {
        state: EscrowState {
            lease_id: lease.id(),
            requester: terms.requester,
            provider: terms.provider,
            escrow: terms.escrow,
            settled: Amount::ZERO,
            last_sequence: 0,
            final_settled: false,
            ends_at,
            closable_at: ends_at.plus_ms(close_grace_ms),
            refunded: None,
            ops: 1,
        },
        payer_balance,
    })
}

/// Plans settling a verified receipt claim. Returns the new state (or
/// `None` when nothing changes: a replayed or out-of-order receipt) and the
/// settlement to acknowledge.
pub fn plan_settle(
    lease: &Lease,
    state: &EscrowState,
    claim: &ReceiptClaim,
) -> Result<(Option<EscrowState>, Settlement), LedgerError> {
    if state.closed() {
        return Err(LedgerError::LeaseClosed(state.lease_id));
    }
    let receipt = claim.receipt();
    if receipt.lease_id != state.lease_id {
        return Err(LedgerError::ReceiptRule(format!(
            "receipt is for lease {}, not {}",
            receipt.lease_id, state.lease_id
        )));
    }
    check_amount(lease.terms(), receipt)?;
    let unchanged = Settlement {
        lease_id: state.lease_id,
        paid: Amount::ZERO,
        settled: state.settled,
        last_sequence: state.last_sequence,
    };
    if receipt.sequence <= state.last_sequence {
        return Ok((None, unchanged));
    }
    if state.final_settled {
        return Err(LedgerError::ReceiptRule(
            "the lease's final receipt is already settled".into(),
        ));
    }
    let paid = receipt.cumulative_amount.saturating_sub(state.settled);
    let settled = state.settled.max(receipt.cumulative_amount);
    if settled > state.escrow {
        // check_amount bounds the amount by the lease, so this is a broken
        // invariant, not a bad receipt; refuse rather than overpay.
        return Err(LedgerError::Overflow(format!(
            "settled {settled} would exceed escrow {}",
            state.escrow
        )));
    }
    let next = EscrowState {
        settled,
        last_sequence: receipt.sequence,
        final_settled: receipt.is_final,
        ops: state.ops.saturating_add(1),
        ..state.clone()
    };
    let settlement = Settlement {
        lease_id: state.lease_id,
        paid,
        settled,
        last_sequence: receipt.sequence,
    };
    Ok((Some(next), settlement))
}

/// Plans closing a lease at chain time `now`: refund the remainder.
pub fn plan_close(
    state: &EscrowState,
    now: Timestamp,
) -> Result<(EscrowState, Closure), LedgerError> {
    if state.closed() {
        return Err(LedgerError::LeaseClosed(state.lease_id));
    }
    if !state.final_settled && now < state.closable_at {
        return Err(LedgerError::NotClosable {
            lease: state.lease_id,
            closable_at: state.closable_at,
            now,
        });
    }
    let refunded = state.escrow.saturating_sub(state.settled);
    let next = EscrowState {
        refunded: Some(refunded),
        ops: state.ops.saturating_add(1),
        ..state.clone()
    };
    Ok((
        next,
        Closure {
            lease_id: state.lease_id,
            refunded,
            settled: state.settled,
        },
    ))
}

/// Plans closing a lease early by a close both parties signed (the caller
/// verified the signatures against the escrow's parties): the provider is
/// paid up to the close's amount, the requester refunded the rest. Returns
/// the new state, the closure, and what this close paid the provider.
pub fn plan_close_early(
    lease: &Lease,
    state: &EscrowState,
    close: &LeaseClose,
) -> Result<(EscrowState, Closure, Amount), LedgerError> {
    if state.closed() {
        return Err(LedgerError::LeaseClosed(state.lease_id));
    }
    check_close_amount(state.lease_id, lease.terms(), close)
        .map_err(|e| LedgerError::InvalidClose(e.to_string()))?;
    let settled = close.cumulative_amount;
    if settled < state.settled {
        return Err(LedgerError::InvalidClose(format!(
            "the close pays {settled} in all but {} already settled",
            state.settled
        )));
    }
    if settled > state.escrow {
        return Err(LedgerError::Overflow(format!(
            "settled {settled} would exceed escrow {}",
            state.escrow
        )));
    }
    let paid = settled.saturating_sub(state.settled);
    let refunded = state.escrow.saturating_sub(settled);
    let next = EscrowState {
        settled,
        final_settled: true,
        refunded: Some(refunded),
        ops: state.ops.saturating_add(1),
        ..state.clone()
    };
    Ok((
        next,
        Closure {
            lease_id: state.lease_id,
            refunded,
            settled,
        },
        paid,
    ))
}
