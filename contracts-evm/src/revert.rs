//! The escrow's reverts as the typed errors of `Ledger`.

use agora_protocol::ledger::LedgerError;
use agora_protocol::{Amount, LeaseId, PublicKey, Timestamp};
use alloy::primitives::Bytes;
use alloy::sol_types::SolInterface;

use crate::bindings::AgoraEscrow::AgoraEscrowErrors;

/// Which operation reverted: bytes that do not decode are an invalid lease
/// in `lock`, an invalid receipt in `settle` and an invalid close in
/// `closeEarly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Deposit,
    Lock,
    Settle,
    Close,
    CloseEarly,
    Withdraw,
}

/// The `LedgerError` for the revert data `data` of `op`.
pub(crate) fn ledger_error(op: Op, data: &Bytes) -> LedgerError {
    let Ok(error) = AgoraEscrowErrors::abi_decode(data) else {
        return LedgerError::Unavailable(format!(
            "the escrow reverted with data it does not declare: 0x{}",
            hex::encode(data)
        ));
    };
    use AgoraEscrowErrors as E;
    match error {
        // The decoder's refusal is about the message the operation carried.
        E::Malformed(m) if op == Op::Settle => {
            LedgerError::InvalidReceipt(format!("receipt does not decode: {}", m.reason))
        }
        E::Malformed(m) if op == Op::CloseEarly => {
            LedgerError::InvalidClose(format!("close does not decode: {}", m.reason))
        }
        E::Malformed(m) => {
            LedgerError::InvalidLease(format!("lease terms do not decode: {}", m.reason))
        }
        E::InvalidLease(e) => LedgerError::InvalidLease(e.reason),
        E::InvalidReceipt(e) => LedgerError::InvalidReceipt(e.reason),
        E::InvalidClose(e) => LedgerError::InvalidClose(e.reason),
        E::ReceiptRule(e) => LedgerError::ReceiptRule(e.reason),
        E::UnknownLease(e) => LedgerError::UnknownLease(LeaseId(e.leaseId.0)),
        E::InsufficientFunds(e) => LedgerError::InsufficientFunds {
            account: account_text(&e.account.0),
            available: Amount(e.available),
            needed: Amount(e.needed),
        },
        E::LeaseEnded(e) => LedgerError::LeaseEnded(LeaseId(e.leaseId.0)),
        E::LeaseClosed(e) => LedgerError::LeaseClosed(LeaseId(e.leaseId.0)),
        E::NotClosable(e) => LedgerError::NotClosable {
            lease: LeaseId(e.leaseId.0),
            closable_at: Timestamp(e.closableAtMs),
            now: Timestamp(e.nowMs),
        },
        E::Overflow(e) => LedgerError::Overflow(e.what),
        E::BadRequest(e) => LedgerError::BadRequest(e.reason),
        E::TokenTransferFailed(_) => LedgerError::BadRequest(
            "the token refused the transfer: the sender's token balance or allowance is short"
                .into(),
        ),
    }
}

fn account_text(bytes: &[u8; 32]) -> String {
    match PublicKey::from_bytes(bytes) {
        Ok(key) => key.to_string(),
        Err(_) => hex::encode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::AgoraEscrow;
    use alloy::primitives::FixedBytes;
    use alloy::sol_types::SolError;

    #[test]
    fn each_revert_becomes_its_ledger_error() {
        let id = FixedBytes([7; 32]);
        let data: Bytes = AgoraEscrow::NotClosable {
            leaseId: id,
            closableAtMs: 5,
            nowMs: 3,
        }
        .abi_encode()
        .into();
        assert_eq!(
            ledger_error(Op::Close, &data),
            LedgerError::NotClosable {
                lease: LeaseId([7; 32]),
                closable_at: Timestamp(5),
                now: Timestamp(3)
            }
        );
        let data: Bytes = AgoraEscrow::LeaseClosed { leaseId: id }.abi_encode().into();
        assert_eq!(
            ledger_error(Op::Settle, &data),
            LedgerError::LeaseClosed(LeaseId([7; 32]))
        );
        // The decoder's error depends on what was decoded.
        let data: Bytes = AgoraEscrow::Malformed {
            reason: "wrong wire type".into(),
        }
        .abi_encode()
        .into();
        assert!(
            matches!(ledger_error(Op::Settle, &data), LedgerError::InvalidReceipt(m) if m.contains("wrong wire type"))
        );
        assert!(matches!(
            ledger_error(Op::Lock, &data),
            LedgerError::InvalidLease(_)
        ));
        assert!(
            matches!(ledger_error(Op::CloseEarly, &data), LedgerError::InvalidClose(m) if m.contains("wrong wire type"))
        );
        let data: Bytes = AgoraEscrow::InvalidClose {
            reason: "the close pays less than already settled".into(),
        }
        .abi_encode()
        .into();
        assert_eq!(
            ledger_error(Op::CloseEarly, &data),
            LedgerError::InvalidClose("the close pays less than already settled".into())
        );
        // Undeclared data is not mistaken for a refusal.
        let data = Bytes::from(vec![1, 2, 3, 4]);
        assert!(ledger_error(Op::Deposit, &data).is_transient());
    }
}
