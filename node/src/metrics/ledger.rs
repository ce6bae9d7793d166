//! A [`Ledger`] that counts its failures: every call of every part of the
//! node (escrow locks, settlements, reads, the API's balance) goes through
//! it, so `agora_ledger_errors_total{op, error}` sees them all.

use std::sync::Arc;

use agora_protocol::ledger::{Closure, EscrowState, Settlement, Supply};
use agora_protocol::{AccountId, Amount, CoSigned, LeaseId, Ledger, LedgerError, Timestamp};
use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::LedgerErrorLabels;

/// The ledger underneath, with its failures counted.
pub struct MeteredLedger {
    inner: Arc<dyn Ledger>,
    errors: Family<LedgerErrorLabels, Counter>,
}

impl MeteredLedger {
    /// Counts `inner`'s failures into `errors`.
    pub fn new(inner: Arc<dyn Ledger>, errors: Family<LedgerErrorLabels, Counter>) -> Self {
        Self { inner, errors }
    }

    fn count<T>(&self, op: &'static str, result: Result<T, LedgerError>) -> Result<T, LedgerError> {
        if let Err(e) = &result {
            self.errors
                .get_or_create(&LedgerErrorLabels {
                    op,
                    error: error_kind(e),
                })
                .inc();
        }
        result
    }
}

/// An error's label value: its JSON tag.
pub fn error_kind(e: &LedgerError) -> &'static str {
    match e {
        LedgerError::InvalidLease(_) => "invalid_lease",
        LedgerError::InvalidReceipt(_) => "invalid_receipt",
        LedgerError::ReceiptRule(_) => "receipt_rule",
        LedgerError::UnknownLease(_) => "unknown_lease",
        LedgerError::InsufficientFunds { .. } => "insufficient_funds",
        LedgerError::LeaseEnded(_) => "lease_ended",
        LedgerError::LeaseClosed(_) => "lease_closed",
        LedgerError::NotClosable { .. } => "not_closable",
        LedgerError::InvalidClose(_) => "invalid_close",
        LedgerError::Overflow(_) => "overflow",
        LedgerError::BadRequest(_) => "bad_request",
        LedgerError::Unavailable(_) => "unavailable",
        LedgerError::Storage(_) => "storage",
    }
}

#[async_trait]
impl Ledger for MeteredLedger {
    async fn now(&self) -> Result<Timestamp, LedgerError> {
        self.count("now", self.inner.now().await)
    }

    async fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        self.count("balance", self.inner.balance(account).await)
    }

    async fn deposit(&self, account: &AccountId, amount: Amount) -> Result<Amount, LedgerError> {
        self.count("deposit", self.inner.deposit(account, amount).await)
    }

    async fn lock_escrow(&self, lease: &CoSigned) -> Result<EscrowState, LedgerError> {
        self.count("lock_escrow", self.inner.lock_escrow(lease).await)
    }

    async fn settle(&self, receipt: &CoSigned) -> Result<Settlement, LedgerError> {
        self.count("settle", self.inner.settle(receipt).await)
    }

    async fn close(&self, lease: &LeaseId) -> Result<Closure, LedgerError> {
        self.count("close", self.inner.close(lease).await)
    }

    async fn close_early(&self, close: &CoSigned) -> Result<Closure, LedgerError> {
        self.count("close_early", self.inner.close_early(close).await)
    }

    async fn escrow(&self, lease: &LeaseId) -> Result<Option<EscrowState>, LedgerError> {
        self.count("escrow", self.inner.escrow(lease).await)
    }

    async fn supply(&self) -> Result<Supply, LedgerError> {
        self.count("supply", self.inner.supply().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::metrics::snapshot::Snapshot;

    #[test]
    fn every_error_has_its_json_tag_as_label() {
        let errors = [
            LedgerError::Unavailable("down".into()),
            LedgerError::BadRequest("zero".into()),
            LedgerError::NotClosable {
                lease: LeaseId([1; 32]),
                closable_at: Timestamp(2),
                now: Timestamp(1),
            },
        ];
        for e in errors {
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json["error"], error_kind(&e));
        }
    }

    #[tokio::test]
    async fn a_failed_call_is_counted_by_operation_and_error() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Ledger> = Arc::new(
            agora_contracts_mock::SledLedger::open(
                dir.path(),
                agora_contracts_mock::SledConfig::default(),
                Arc::new(agora_contracts_mock::SystemClock),
            )
            .unwrap(),
        );
        let metrics = Metrics::new();
        let ledger = MeteredLedger::new(inner, metrics.ledger_errors.clone());
        let account = agora_protocol::Keypair::from_seed(&[3; 32]).public();
        // A deposit of zero is refused; a read of an unknown lease is not
        // an error.
        assert!(ledger.deposit(&account, Amount::ZERO).await.is_err());
        assert_eq!(ledger.escrow(&LeaseId([9; 32])).await.unwrap(), None);
        let text = metrics.encode(&Snapshot::default()).unwrap();
        assert!(
            text.contains("agora_ledger_errors_total{op=\"deposit\",error=\"bad_request\"} 1"),
            "{text}"
        );
        assert!(!text.contains("op=\"escrow\""), "{text}");
    }
}
