//! Usage receipts and the rules that govern a lease's sequence of them.
//!
//! The provider signs a cumulative [`UsageReceipt`] every interval; the
//! requester checks it with [`check_next`] against the terms, the previous
//! receipt and its own clock, then countersigns. The ledger pays
//! `cumulative − already settled` for a countersigned receipt, so replays
//! and reorders pay nothing extra.

use agora_proto::v1 as pb;

use crate::amount::{Amount, cost};
use crate::envelope::{CoSigned, EnvelopeError, Kind, SignedEnvelope};
use crate::identity::{Keypair, PublicKey, Signature};
use crate::lease::{Lease, LeaseId, LeaseTerms};
use crate::message::{MessageError, Signed, ValidationError, WireMessage, digest, range};
use crate::time::Timestamp;

/// A cumulative statement of usage under one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReceipt {
    /// The lease.
    pub lease_id: LeaseId,
    /// Strictly increasing from 1.
    pub sequence: u64,
    /// GPU-seconds since the lease started.
    pub gpu_seconds: u64,
    /// `cost(price, gpu_seconds)`.
    pub cumulative_amount: Amount,
    /// Issued.
    pub issued_at: Timestamp,
    /// The last receipt of the lease.
    pub is_final: bool,
    /// blake3 of the result manifest (final receipts).
    pub result_hash: Option<[u8; 32]>,
    /// The job's exit status (final receipts; absent when killed).
    pub exit_status: Option<i32>,
}

impl WireMessage for UsageReceipt {
    const KIND: Kind = Kind::UsageReceipt;
    type Proto = pb::UsageReceipt;

    fn from_proto(p: pb::UsageReceipt) -> Result<Self, ValidationError> {
        let result_hash = if p.result_hash.is_empty() {
            None
        } else {
            Some(digest("result_hash", &p.result_hash)?)
        };
        if !p.is_final && (result_hash.is_some() || p.exit_status.is_some()) {
            return Err(ValidationError::new(
                "is_final",
                "only a final receipt carries a result hash or exit status",
            ));
        }
        Ok(Self {
            lease_id: LeaseId(digest("lease_id", &p.lease_id)?),
            sequence: range("sequence", p.sequence, 1, u64::MAX)?,
            gpu_seconds: p.gpu_seconds,
            cumulative_amount: Amount(p.cumulative_amount),
            issued_at: Timestamp(p.issued_at_ms),
            is_final: p.is_final,
            result_hash,
            exit_status: p.exit_status,
        })
    }

    fn to_proto(&self) -> pb::UsageReceipt {
        pb::UsageReceipt {
            lease_id: self.lease_id.0.to_vec(),
            sequence: self.sequence,
            gpu_seconds: self.gpu_seconds,
            cumulative_amount: self.cumulative_amount.0,
            issued_at_ms: self.issued_at.0,
            is_final: self.is_final,
            result_hash: self.result_hash.map(|h| h.to_vec()).unwrap_or_default(),
            exit_status: self.exit_status,
        }
    }

    /// The signer is the lease's provider, which the receipt does not name;
    /// it is checked against the lease.
    fn signer(&self) -> Option<&PublicKey> {
        None
    }
}

/// Why a receipt breaks the lease's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// It names another lease.
    #[error("receipt is for lease {got}, not {expected}")]
    WrongLease {
        /// The lease being checked.
        expected: LeaseId,
        /// What the receipt names.
        got: LeaseId,
    },
    /// Its sequence does not increase.
    #[error("sequence {got} does not follow {previous}")]
    Sequence {
        /// The last accepted sequence.
        previous: u64,
        /// This receipt's.
        got: u64,
    },
    /// GPU-seconds went down.
    #[error("GPU-seconds went down from {previous} to {got}")]
    GpuSecondsDecreased {
        /// Before.
        previous: u64,
        /// Now.
        got: u64,
    },
    /// The amount is not `cost(price, gpu_seconds)`.
    #[error(
        "amount {got} is not the cost of {gpu_seconds} GPU-seconds at the lease price ({expected})"
    )]
    AmountMismatch {
        /// GPU-seconds claimed.
        gpu_seconds: u64,
        /// The correct amount.
        expected: Amount,
        /// The amount claimed.
        got: Amount,
    },
    /// More than the lease can use.
    #[error("{got} GPU-seconds exceeds the lease's {max}")]
    ExceedsLease {
        /// The lease's maximum.
        max: u64,
        /// Claimed.
        got: u64,
    },
    /// More than the time elapsed allows, by the checker's clock.
    #[error("{got} GPU-seconds claimed but only {allowed} can have elapsed")]
    AheadOfClock {
        /// What the clock allows.
        allowed: u64,
        /// Claimed.
        got: u64,
    },
    /// An early close for more than the requester countersigned.
    #[error("the close pays for {got} GPU-seconds but only {countersigned} were countersigned")]
    BeyondCountersigned {
        /// GPU-seconds of the latest countersigned receipt.
        countersigned: u64,
        /// Claimed by the close.
        got: u64,
    },
    /// A receipt after the final one.
    #[error("the lease already has a final receipt")]
    AfterFinal,
}

/// Checks that `next` may follow `previous` under `terms`.
///
/// `now`, when given, is the checker's clock: the requester refuses to
/// countersign GPU-seconds that cannot have elapsed since the lease started
/// (plus `tolerance_secs` of clock skew). The ledger passes `None`: it
/// trusts a countersigned amount but still enforces the arithmetic.
pub fn check_next(
    lease_id: LeaseId,
    terms: &LeaseTerms,
    previous: Option<&UsageReceipt>,
    next: &UsageReceipt,
    now: Option<Timestamp>,
    tolerance_secs: u64,
) -> Result<(), ReceiptError> {
    if next.lease_id != lease_id {
        return Err(ReceiptError::WrongLease {
            expected: lease_id,
            got: next.lease_id,
        });
    }
    if let Some(prev) = previous {
        if prev.is_final {
            return Err(ReceiptError::AfterFinal);
        }
        if next.sequence <= prev.sequence {
            return Err(ReceiptError::Sequence {
                previous: prev.sequence,
                got: next.sequence,
            });
        }
        if next.gpu_seconds < prev.gpu_seconds {
            return Err(ReceiptError::GpuSecondsDecreased {
                previous: prev.gpu_seconds,
                got: next.gpu_seconds,
            });
        }
    }
    check_amount(terms, next)?;
    if let Some(now) = now {
        check_clock(terms, next.gpu_seconds, now, tolerance_secs)?;
    }
    Ok(())
}

/// GPU-seconds no more than can have elapsed since the lease started, by
/// the checker's clock `now` (plus `tolerance_secs` of skew).
pub fn check_clock(
    terms: &LeaseTerms,
    gpu_seconds: u64,
    now: Timestamp,
    tolerance_secs: u64,
) -> Result<(), ReceiptError> {
    let elapsed = now.ms_since(terms.starts_at) / 1000 + tolerance_secs;
    let allowed = elapsed.saturating_mul(u64::from(terms.gpu_count));
    if gpu_seconds > allowed {
        return Err(ReceiptError::AheadOfClock {
            allowed,
            got: gpu_seconds,
        });
    }
    Ok(())
}

/// The arithmetic every receipt obeys alone: within the lease, and priced
/// by the one cost formula (so never above the escrow).
pub fn check_amount(terms: &LeaseTerms, receipt: &UsageReceipt) -> Result<(), ReceiptError> {
    check_priced(terms, receipt.gpu_seconds, receipt.cumulative_amount)
}

/// `gpu_seconds` within the lease, and `amount` their cost at its price:
/// the arithmetic of receipts and of early closes.
pub fn check_priced(
    terms: &LeaseTerms,
    gpu_seconds: u64,
    amount: Amount,
) -> Result<(), ReceiptError> {
    let max = terms.max_gpu_seconds();
    if gpu_seconds > max {
        return Err(ReceiptError::ExceedsLease {
            max,
            got: gpu_seconds,
        });
    }
    // Cannot overflow: gpu_seconds ≤ max, and the escrow for max fitted.
    let expected = cost(terms.price_per_gpu_hour, gpu_seconds).unwrap_or(Amount(u64::MAX));
    if amount != expected {
        return Err(ReceiptError::AmountMismatch {
            gpu_seconds,
            expected,
            got: amount,
        });
    }
    Ok(())
}

/// A receipt signed by both parties, decoded but not yet verified: the
/// keys to verify it with come from its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptClaim {
    receipt: UsageReceipt,
    cosigned: CoSigned,
}

impl ReceiptClaim {
    /// Decodes and validates the body; signatures are checked by [`Self::verify`].
    pub fn from_cosigned(cosigned: CoSigned) -> Result<Self, MessageError> {
        if cosigned.kind() != Kind::UsageReceipt {
            return Err(EnvelopeError::WrongKind {
                expected: Kind::UsageReceipt,
                got: cosigned.kind(),
            }
            .into());
        }
        let proto = <pb::UsageReceipt as agora_proto::Message>::decode(cosigned.body())
            .map_err(|e| EnvelopeError::Decode(e.to_string()))?;
        let receipt = UsageReceipt::from_proto(proto).map_err(|error| MessageError::Invalid {
            kind: Kind::UsageReceipt,
            error,
        })?;
        Ok(Self { receipt, cosigned })
    }

    /// Decodes wire bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        Self::from_cosigned(CoSigned::decode(bytes)?)
    }

    /// The requester countersigns a provider-signed receipt for `lease`,
    /// after checking the provider's signature. Rule checks
    /// ([`check_next`]) are the caller's, who knows the previous receipt.
    pub fn countersign(
        signed: &SignedEnvelope,
        lease: &Lease,
        key: &Keypair,
    ) -> Result<Self, MessageError> {
        Self::from_cosigned(lease.countersign_providers(signed, Kind::UsageReceipt, key)?)
    }

    /// The provider signs a receipt for `lease` (the first half).
    pub fn sign_as_provider(
        receipt: UsageReceipt,
        key: &Keypair,
    ) -> Result<Signed<UsageReceipt>, MessageError> {
        Signed::sign(receipt, key)
    }

    /// Verifies both signatures against the lease's parties.
    pub fn verify(&self, terms: &LeaseTerms) -> Result<(), EnvelopeError> {
        self.cosigned.verify(&terms.requester, &terms.provider)
    }

    /// The `(key, bytes, signature)` triples, for batch verification.
    pub(crate) fn triples<'a>(
        &'a self,
        terms: &'a LeaseTerms,
    ) -> [(&'a PublicKey, Vec<u8>, &'a Signature); 2] {
        self.cosigned.triples(&terms.requester, &terms.provider)
    }

    /// The receipt.
    pub fn receipt(&self) -> &UsageReceipt {
        &self.receipt
    }

    /// The signatures and exact bytes.
    pub fn cosigned(&self) -> &CoSigned {
        &self.cosigned
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.cosigned.encode()
    }
}

/// Batch-verifies many claims, each against its lease's terms.
pub fn verify_claims(claims: &[(&ReceiptClaim, &LeaseTerms)]) -> Result<(), EnvelopeError> {
    let triples: Vec<_> = claims.iter().flat_map(|(c, t)| c.triples(t)).collect();
    crate::envelope::verify_triples(&triples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::tests::sample_lease;

    fn receipt(lease: &Lease, sequence: u64, gpu_seconds: u64) -> UsageReceipt {
        UsageReceipt {
            lease_id: lease.id(),
            sequence,
            gpu_seconds,
            cumulative_amount: cost(lease.terms().price_per_gpu_hour, gpu_seconds).unwrap(),
            issued_at: Timestamp(0),
            is_final: false,
            result_hash: None,
            exit_status: None,
        }
    }

    #[test]
    fn countersigned_receipt_round_trips_and_verifies() {
        let requester = Keypair::from_seed(&[1; 32]);
        let provider = Keypair::from_seed(&[2; 32]);
        let lease = sample_lease(&requester, &provider);
        let signed = ReceiptClaim::sign_as_provider(receipt(&lease, 1, 20), &provider).unwrap();
        let claim = ReceiptClaim::countersign(signed.envelope(), &lease, &requester).unwrap();
        let back = ReceiptClaim::decode(&claim.encode()).unwrap();
        back.verify(lease.terms()).unwrap();
        verify_claims(&[(&back, lease.terms())]).unwrap();
        // Only the lease's requester may countersign.
        let stranger = Keypair::from_seed(&[3; 32]);
        assert!(ReceiptClaim::countersign(signed.envelope(), &lease, &stranger).is_err());
    }

    #[test]
    fn rules_reject_every_kind_of_cheating() {
        let requester = Keypair::from_seed(&[1; 32]);
        let provider = Keypair::from_seed(&[2; 32]);
        let lease = sample_lease(&requester, &provider);
        let (id, terms) = (lease.id(), lease.terms());
        let first = receipt(&lease, 1, 20);
        check_next(id, terms, None, &first, None, 0).unwrap();

        let replay = receipt(&lease, 1, 40);
        assert!(matches!(
            check_next(id, terms, Some(&first), &replay, None, 0),
            Err(ReceiptError::Sequence { .. })
        ));
        let backwards = receipt(&lease, 2, 10);
        assert!(matches!(
            check_next(id, terms, Some(&first), &backwards, None, 0),
            Err(ReceiptError::GpuSecondsDecreased { .. })
        ));
        let mut inflated = receipt(&lease, 2, 40);
        inflated.cumulative_amount.0 += 1;
        assert!(matches!(
            check_next(id, terms, Some(&first), &inflated, None, 0),
            Err(ReceiptError::AmountMismatch { .. })
        ));
        let too_long = receipt(&lease, 2, terms.max_gpu_seconds() + 1);
        assert!(matches!(
            check_next(id, terms, Some(&first), &too_long, None, 0),
            Err(ReceiptError::ExceedsLease { .. })
        ));
        // 30 s after start, 2 GPUs: at most 60 GPU-seconds (+ tolerance).
        let now = terms.starts_at.plus_secs(30);
        let ahead = receipt(&lease, 2, 70);
        assert!(matches!(
            check_next(id, terms, Some(&first), &ahead, Some(now), 0),
            Err(ReceiptError::AheadOfClock { allowed: 60, .. })
        ));
        check_next(id, terms, Some(&first), &ahead, Some(now), 5).unwrap();
        let mut other = receipt(&lease, 2, 40);
        other.lease_id = LeaseId([9; 32]);
        assert!(matches!(
            check_next(id, terms, Some(&first), &other, None, 0),
            Err(ReceiptError::WrongLease { .. })
        ));
        let mut last = receipt(&lease, 2, 40);
        last.is_final = true;
        check_next(id, terms, Some(&first), &last, None, 0).unwrap();
        assert_eq!(
            check_next(id, terms, Some(&last), &receipt(&lease, 3, 40), None, 0),
            Err(ReceiptError::AfterFinal)
        );
    }

    #[test]
    fn non_final_receipts_carry_no_result() {
        let requester = Keypair::from_seed(&[1; 32]);
        let provider = Keypair::from_seed(&[2; 32]);
        let lease = sample_lease(&requester, &provider);
        let mut p = receipt(&lease, 1, 1).to_proto();
        p.exit_status = Some(0);
        assert_eq!(UsageReceipt::from_proto(p).unwrap_err().field, "is_final");
    }
}
