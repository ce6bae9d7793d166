//! The `Ledger` interface every settlement backend implements, and the
//! invariants each must keep (proven for any backend by
//! [`conformance`], behind the `conformance` feature).
//!
//! Invariants:
//! - money is conserved: balances plus open escrow equal deposits;
//! - no escrow without both parties' signatures on the lease;
//! - no settlement without the payer's (and payee's) signature on the receipt;
//! - a lease's settled total never exceeds its escrow and never decreases;
//!   replayed or reordered receipts never pay twice;
//! - close refunds exactly the remainder, once; an early close needs both
//!   parties' signatures and never pays less than already settled;
//! - every acknowledged operation survives a crash.

use async_trait::async_trait;

use crate::amount::Amount;
use crate::envelope::CoSigned;
use crate::identity::AccountId;
use crate::lease::LeaseId;
use crate::message::MessageError;
use crate::receipt::ReceiptError;
use crate::time::Timestamp;

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod rules;

/// The state of one lease's escrow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EscrowState {
    /// The lease.
    pub lease_id: LeaseId,
    /// Who locked the escrow (the payer).
    pub requester: AccountId,
    /// Who is paid from it.
    pub provider: AccountId,
    /// Locked amount.
    pub escrow: Amount,
    /// Paid to the provider so far; never decreases, never exceeds `escrow`.
    pub settled: Amount,
    /// Sequence of the highest receipt settled (0: none).
    pub last_sequence: u64,
    /// The final receipt has been settled.
    pub final_settled: bool,
    /// When the lease's time runs out.
    pub ends_at: Timestamp,
    /// When anyone may close it (unless its final receipt settles first).
    pub closable_at: Timestamp,
    /// Refunded to the requester on close (`None` while open).
    pub refunded: Option<Amount>,
    /// Ledger operations that changed this lease (lock, settlements, close).
    pub ops: u32,
}

impl EscrowState {
    /// Escrow not yet paid out or refunded.
    pub fn outstanding(&self) -> Amount {
        if self.refunded.is_some() {
            Amount::ZERO
        } else {
            self.escrow.saturating_sub(self.settled)
        }
    }

    /// Closed and refunded.
    pub fn closed(&self) -> bool {
        self.refunded.is_some()
    }

    /// May the lease be closed now, at the chain's `chain_now`? Once its
    /// final receipt is settled (the provider has what it is owed), or once
    /// its time plus the ledger's grace ran out — and only while open. The
    /// one rule both roles close by; a ledger refuses a close that breaks it.
    pub fn closable(&self, chain_now: Timestamp) -> bool {
        !self.closed() && (self.final_settled || chain_now >= self.closable_at)
    }
}

/// The outcome of a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settlement {
    /// The lease.
    pub lease_id: LeaseId,
    /// Paid by this settlement: `cumulative − previously settled`, or 0.
    pub paid: Amount,
    /// Settled total after it.
    pub settled: Amount,
    /// Highest receipt sequence settled after it.
    pub last_sequence: u64,
}

/// The outcome of closing a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Closure {
    /// The lease.
    pub lease_id: LeaseId,
    /// Returned to the requester.
    pub refunded: Amount,
    /// Paid to the provider over the lease.
    pub settled: Amount,
}

/// Totals over the whole ledger, for conservation checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Supply {
    /// Sum of all deposits ever made.
    pub deposited: u128,
    /// Sum of all account balances.
    pub balances: u128,
    /// Sum of outstanding escrow over open leases.
    pub escrowed: u128,
}

impl Supply {
    /// Money is conserved: every unit deposited is in a balance or an escrow.
    pub fn conserved(&self) -> bool {
        self.balances + self.escrowed == self.deposited
    }
}

/// Why a ledger operation was refused. Refused operations change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum LedgerError {
    /// The lease does not decode, validate, or carry both valid signatures.
    #[error("invalid lease: {0}")]
    InvalidLease(String),
    /// The receipt does not decode, validate, or carry both valid signatures.
    #[error("invalid receipt: {0}")]
    InvalidReceipt(String),
    /// The early close does not decode, validate, carry both parties'
    /// valid signatures, or obey the lease's arithmetic.
    #[error("invalid close: {0}")]
    InvalidClose(String),
    /// The receipt breaks the lease's arithmetic.
    #[error("receipt refused: {0}")]
    ReceiptRule(String),
    /// No escrow exists for this lease.
    #[error("no escrow for lease {0}")]
    UnknownLease(LeaseId),
    /// The payer cannot cover the escrow.
    #[error("account {account} has {available} but the escrow needs {needed}")]
    InsufficientFunds {
        /// The payer (hex key).
        account: String,
        /// Its balance.
        available: Amount,
        /// The escrow.
        needed: Amount,
    },
    /// The lease's time ran out before escrow was locked.
    #[error("lease {0} has already ended; nothing to lock")]
    LeaseEnded(LeaseId),
    /// The lease is closed; nothing more settles.
    #[error("lease {0} is closed")]
    LeaseClosed(LeaseId),
    /// Too early to close: the lease may still settle.
    #[error("lease {lease} cannot close before {closable_at} (chain time {now})")]
    NotClosable {
        /// The lease.
        lease: LeaseId,
        /// When it can.
        closable_at: Timestamp,
        /// Chain time now.
        now: Timestamp,
    },
    /// An amount would overflow.
    #[error("amount overflow: {0}")]
    Overflow(String),
    /// A deposit of zero, or another request that can never succeed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The ledger cannot be reached or failed transiently; retry.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The ledger's storage failed.
    #[error("ledger storage failed: {0}")]
    Storage(String),
}

impl LedgerError {
    /// Worth retrying: the operation may succeed later unchanged.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LedgerError::Unavailable(_) | LedgerError::NotClosable { .. }
        )
    }
}

impl From<ReceiptError> for LedgerError {
    fn from(e: ReceiptError) -> Self {
        LedgerError::ReceiptRule(e.to_string())
    }
}

/// Wraps a lease decoding/verification failure.
pub fn invalid_lease(e: MessageError) -> LedgerError {
    LedgerError::InvalidLease(e.to_string())
}

/// Wraps a close decoding/verification failure.
pub fn invalid_close(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::InvalidClose(e.to_string())
}

/// Wraps a receipt decoding/verification failure.
pub fn invalid_receipt(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::InvalidReceipt(e.to_string())
}

/// A settlement ledger: accounts, escrow per lease, cumulative settlement.
///
/// Every method either fully applies and acknowledges, or changes nothing.
/// An acknowledged operation survives a crash.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The ledger's own clock (chain time); leases end and close by it.
    async fn now(&self) -> Result<Timestamp, LedgerError>;

    /// An account's spendable balance (zero for an unknown account).
    async fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError>;

    /// Credits an account (the faucet on test ledgers). Returns the new balance.
    async fn deposit(&self, account: &AccountId, amount: Amount) -> Result<Amount, LedgerError>;

    /// Locks the lease's escrow from the requester's balance, after checking
    /// both signatures. Locking the same lease again changes nothing and
    /// returns its state.
    async fn lock_escrow(&self, lease: &CoSigned) -> Result<EscrowState, LedgerError>;

    /// Pays the provider `cumulative − settled` for a receipt both parties
    /// signed. A receipt no newer than the last settled pays nothing.
    async fn settle(&self, receipt: &CoSigned) -> Result<Settlement, LedgerError>;

    /// Closes a lease whose final receipt settled or whose time plus grace
    /// ran out, refunding the remainder to the requester.
    async fn close(&self, lease: &LeaseId) -> Result<Closure, LedgerError>;

    /// Closes a lease early by a [`crate::close::LeaseClose`] both parties
    /// signed: pays the provider `cumulative − settled` and refunds the
    /// rest of the escrow to the requester, at once and in one operation.
    /// A close paying less than already settled, or for a closed lease, is
    /// refused.
    async fn close_early(&self, close: &CoSigned) -> Result<Closure, LedgerError>;

    /// A lease's escrow state.
    async fn escrow(&self, lease: &LeaseId) -> Result<Option<EscrowState>, LedgerError>;

    /// Totals, for conservation checks.
    async fn supply(&self) -> Result<Supply, LedgerError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(final_settled: bool, refunded: Option<Amount>) -> EscrowState {
        EscrowState {
            lease_id: LeaseId([1; 32]),
            requester: crate::Keypair::from_seed(&[1; 32]).public(),
            provider: crate::Keypair::from_seed(&[2; 32]).public(),
            escrow: Amount(10),
            settled: Amount::ZERO,
            last_sequence: 0,
            final_settled,
            ends_at: Timestamp(1_000),
            closable_at: Timestamp(2_000),
            refunded,
            ops: 1,
        }
    }

    #[test]
    fn an_escrow_closes_after_its_final_receipt_or_its_grace_and_only_once() {
        // Open, no final receipt: only once the grace ran out.
        assert!(!state(false, None).closable(Timestamp(1_999)));
        assert!(state(false, None).closable(Timestamp(2_000)));
        // The final receipt settled: at once.
        assert!(state(true, None).closable(Timestamp(0)));
        // Closed: never again.
        assert!(!state(true, Some(Amount::ZERO)).closable(Timestamp(5_000)));
    }
}
