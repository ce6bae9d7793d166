//! Early close: both parties of a lease agree that its run is over before
//! its time ran out, and what the lease pays in all.
//!
//! Without it, escrow a run no longer uses waits for the lease's end plus
//! the ledger's close grace (a day, at the longest leases) whenever no
//! final receipt settled: a job that never started, a provider that
//! restarted mid-run. The provider signs a [`LeaseClose`] naming the
//! GPU-seconds it is paid for — at least its latest countersigned
//! receipt's — and the requester checks it ([`check_close`]) and
//! countersigns. A ledger then pays the provider up to that amount and
//! refunds the rest in one operation
//! ([`crate::ledger::Ledger::close_early`]); a close that pays less than
//! already settled is refused, so nobody is paid twice or clawed back.

use agora_proto::v1 as pb;

use crate::amount::{Amount, cost};
use crate::envelope::{CoSigned, EnvelopeError, Kind, SignedEnvelope};
use crate::identity::{Keypair, PublicKey};
use crate::lease::{Lease, LeaseId, LeaseTerms};
use crate::message::{MessageError, Signed, ValidationError, WireMessage, digest};
use crate::receipt::{ReceiptError, UsageReceipt, check_priced};
use crate::time::Timestamp;

/// Why a lease closes early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The job never started: its payload was refused, or the runtime
    /// could not start it.
    NotStarted,
    /// The job ended, but its final receipt was not settled.
    Ended,
    /// The provider's node restarted while the job ran; the job is gone.
    ProviderRestarted,
}

impl CloseReason {
    /// Its name, for logs and the API.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::NotStarted => "not_started",
            CloseReason::Ended => "ended",
            CloseReason::ProviderRestarted => "provider_restarted",
        }
    }

    fn to_proto(self) -> pb::CloseReason {
        match self {
            CloseReason::NotStarted => pb::CloseReason::NotStarted,
            CloseReason::Ended => pb::CloseReason::Ended,
            CloseReason::ProviderRestarted => pb::CloseReason::ProviderRestarted,
        }
    }

    fn from_proto(raw: i32) -> Result<Self, ValidationError> {
        match pb::CloseReason::try_from(raw) {
            Ok(pb::CloseReason::NotStarted) => Ok(CloseReason::NotStarted),
            Ok(pb::CloseReason::Ended) => Ok(CloseReason::Ended),
            Ok(pb::CloseReason::ProviderRestarted) => Ok(CloseReason::ProviderRestarted),
            Ok(pb::CloseReason::Unspecified) | Err(_) => Err(ValidationError::new(
                "reason",
                format!("{raw} is not a close reason"),
            )),
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Both parties agree the lease is over and pays `cumulative_amount` in
/// all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClose {
    /// The lease.
    pub lease_id: LeaseId,
    /// GPU-seconds the lease pays for in all.
    pub gpu_seconds: u64,
    /// `cost(price, gpu_seconds)`: the provider's pay in all.
    pub cumulative_amount: Amount,
    /// Why.
    pub reason: CloseReason,
    /// Issued.
    pub issued_at: Timestamp,
}

impl LeaseClose {
    /// The close of `lease` paying `gpu_seconds` in all, priced by its terms
    /// (capped at the lease's GPU-seconds).
    pub fn new(lease: &Lease, gpu_seconds: u64, reason: CloseReason, now: Timestamp) -> Self {
        let terms = lease.terms();
        let gpu_seconds = gpu_seconds.min(terms.max_gpu_seconds());
        Self {
            lease_id: lease.id(),
            gpu_seconds,
            cumulative_amount: cost(terms.price_per_gpu_hour, gpu_seconds).unwrap_or(terms.escrow),
            reason,
            issued_at: now,
        }
    }
}

impl WireMessage for LeaseClose {
    const KIND: Kind = Kind::LeaseClose;
    type Proto = pb::LeaseClose;

    fn from_proto(p: pb::LeaseClose) -> Result<Self, ValidationError> {
        Ok(Self {
            lease_id: LeaseId(digest("lease_id", &p.lease_id)?),
            gpu_seconds: p.gpu_seconds,
            cumulative_amount: Amount(p.cumulative_amount),
            reason: CloseReason::from_proto(p.reason)?,
            issued_at: Timestamp(p.issued_at_ms),
        })
    }

    fn to_proto(&self) -> pb::LeaseClose {
        pb::LeaseClose {
            lease_id: self.lease_id.0.to_vec(),
            gpu_seconds: self.gpu_seconds,
            cumulative_amount: self.cumulative_amount.0,
            reason: self.reason.to_proto() as i32,
            issued_at_ms: self.issued_at.0,
        }
    }

    /// The signers are the lease's parties, which the close does not name;
    /// they are checked against the lease.
    fn signer(&self) -> Option<&PublicKey> {
        None
    }
}

/// The arithmetic every close obeys, which a ledger enforces: for this
/// lease, within it, and priced by the one cost formula.
pub fn check_close_amount(
    lease_id: LeaseId,
    terms: &LeaseTerms,
    close: &LeaseClose,
) -> Result<(), ReceiptError> {
    if close.lease_id != lease_id {
        return Err(ReceiptError::WrongLease {
            expected: lease_id,
            got: close.lease_id,
        });
    }
    check_priced(terms, close.gpu_seconds, close.cumulative_amount)
}

/// The requester's checks before countersigning a close: its arithmetic
/// ([`check_close_amount`]), and no more GPU-seconds than the latest
/// receipt the requester countersigned (none: zero). A close only ends
/// what was already agreed; it never pays for time the requester did not
/// countersign, so it keeps "settled ≤ countersigned" for every lease,
/// and the provider loses at most the one interval it was not yet paid.
pub fn check_close(
    lease_id: LeaseId,
    terms: &LeaseTerms,
    countersigned: Option<&UsageReceipt>,
    close: &LeaseClose,
) -> Result<(), ReceiptError> {
    check_close_amount(lease_id, terms, close)?;
    let most = countersigned.map_or(0, |r| r.gpu_seconds);
    if close.gpu_seconds > most {
        return Err(ReceiptError::BeyondCountersigned {
            countersigned: most,
            got: close.gpu_seconds,
        });
    }
    Ok(())
}

/// A close signed by both parties, decoded but not yet verified: the keys
/// to verify it with come from its lease (or the ledger's escrow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseClaim {
    close: LeaseClose,
    cosigned: CoSigned,
}

impl CloseClaim {
    /// Decodes and validates the body; signatures are checked by [`Self::verify`].
    pub fn from_cosigned(cosigned: CoSigned) -> Result<Self, MessageError> {
        if cosigned.kind() != Kind::LeaseClose {
            return Err(EnvelopeError::WrongKind {
                expected: Kind::LeaseClose,
                got: cosigned.kind(),
            }
            .into());
        }
        let proto = <pb::LeaseClose as agora_proto::Message>::decode(cosigned.body())
            .map_err(|e| EnvelopeError::Decode(e.to_string()))?;
        let close = LeaseClose::from_proto(proto).map_err(|error| MessageError::Invalid {
            kind: Kind::LeaseClose,
            error,
        })?;
        Ok(Self { close, cosigned })
    }

    /// Decodes wire bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        Self::from_cosigned(CoSigned::decode(bytes)?)
    }

    /// The provider signs a close for its lease (the first half).
    pub fn sign_as_provider(
        close: LeaseClose,
        key: &Keypair,
    ) -> Result<Signed<LeaseClose>, MessageError> {
        Signed::sign(close, key)
    }

    /// The requester countersigns a provider-signed close for `lease`,
    /// after checking the provider's signature. Rule checks
    /// ([`check_close`]) are the caller's.
    pub fn countersign(
        signed: &SignedEnvelope,
        lease: &Lease,
        key: &Keypair,
    ) -> Result<Self, MessageError> {
        Self::from_cosigned(lease.countersign_providers(signed, Kind::LeaseClose, key)?)
    }

    /// Verifies both signatures against the parties.
    pub fn verify(&self, requester: &PublicKey, provider: &PublicKey) -> Result<(), EnvelopeError> {
        self.cosigned.verify(requester, provider)
    }

    /// The close.
    pub fn close(&self) -> &LeaseClose {
        &self.close
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::tests::sample_lease;

    fn keys() -> (Keypair, Keypair) {
        (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]))
    }

    #[test]
    fn a_close_round_trips_and_verifies_only_with_both_parties() {
        let (requester, provider) = keys();
        let lease = sample_lease(&requester, &provider);
        let close = LeaseClose::new(&lease, 30, CloseReason::ProviderRestarted, Timestamp(5));
        let signed = CloseClaim::sign_as_provider(close.clone(), &provider).unwrap();
        let claim = CloseClaim::countersign(signed.envelope(), &lease, &requester).unwrap();
        let decoded = CloseClaim::decode(&claim.encode()).unwrap();
        assert_eq!(decoded.close(), &close);
        let t = lease.terms();
        decoded.verify(&t.requester, &t.provider).unwrap();
        // Swapped roles do not verify.
        assert!(decoded.verify(&t.provider, &t.requester).is_err());
        // A stranger's signature is refused before countersigning.
        let stranger = Keypair::from_seed(&[9; 32]);
        let forged = CloseClaim::sign_as_provider(close, &stranger).unwrap();
        assert!(CloseClaim::countersign(forged.envelope(), &lease, &requester).is_err());
        // The provider cannot countersign its own close as the requester.
        assert!(CloseClaim::countersign(signed.envelope(), &lease, &provider).is_err());
    }

    #[test]
    fn a_receipts_signatures_never_verify_as_a_close() {
        let (requester, provider) = keys();
        let lease = sample_lease(&requester, &provider);
        let close = LeaseClose::new(&lease, 30, CloseReason::Ended, Timestamp(5));
        let signed = CloseClaim::sign_as_provider(close, &provider).unwrap();
        let claim = CloseClaim::countersign(signed.envelope(), &lease, &requester).unwrap();
        let mut relabelled = claim.cosigned().clone();
        relabelled.kind = Kind::UsageReceipt;
        let t = lease.terms();
        assert!(relabelled.verify(&t.requester, &t.provider).is_err());
        assert!(CloseClaim::from_cosigned(relabelled).is_err());
    }

    #[test]
    fn the_requester_refuses_a_close_priced_wrong_or_past_what_it_countersigned() {
        let (requester, provider) = keys();
        let lease = sample_lease(&requester, &provider);
        let t = lease.terms().clone();
        let countersigned = UsageReceipt {
            lease_id: lease.id(),
            sequence: 2,
            gpu_seconds: 30,
            cumulative_amount: cost(t.price_per_gpu_hour, 30).unwrap(),
            issued_at: Timestamp(1),
            is_final: false,
            result_hash: None,
            exit_status: None,
        };
        let ok = LeaseClose::new(&lease, 30, CloseReason::ProviderRestarted, Timestamp(2));
        check_close(lease.id(), &t, Some(&countersigned), &ok).unwrap();
        // Less than countersigned is the provider's loss, not a reason to refuse.
        let less = LeaseClose::new(&lease, 10, CloseReason::ProviderRestarted, Timestamp(2));
        check_close(lease.id(), &t, Some(&countersigned), &less).unwrap();
        let more = LeaseClose::new(&lease, 31, CloseReason::ProviderRestarted, Timestamp(2));
        assert!(matches!(
            check_close(lease.id(), &t, Some(&countersigned), &more),
            Err(ReceiptError::BeyondCountersigned {
                countersigned: 30,
                got: 31
            })
        ));
        // Nothing countersigned: only a close at zero.
        assert!(check_close(lease.id(), &t, None, &ok).is_err());
        let nothing = LeaseClose::new(&lease, 0, CloseReason::NotStarted, Timestamp(2));
        check_close(lease.id(), &t, None, &nothing).unwrap();
        let mut inflated = ok.clone();
        inflated.cumulative_amount = Amount(ok.cumulative_amount.0 + 1);
        assert!(matches!(
            check_close(lease.id(), &t, Some(&countersigned), &inflated),
            Err(ReceiptError::AmountMismatch { .. })
        ));
        assert!(matches!(
            check_close(LeaseId([3; 32]), &t, Some(&countersigned), &ok),
            Err(ReceiptError::WrongLease { .. })
        ));
        // More than the lease: capped when built, refused when claimed.
        let capped = LeaseClose::new(&lease, u64::MAX, CloseReason::Ended, Timestamp(2));
        assert_eq!(capped.gpu_seconds, t.max_gpu_seconds());
        assert_eq!(capped.cumulative_amount, t.escrow);
        let mut over = capped;
        over.gpu_seconds += 1;
        assert!(matches!(
            check_close_amount(lease.id(), &t, &over),
            Err(ReceiptError::ExceedsLease { .. })
        ));
    }

    #[test]
    fn a_close_without_a_reason_or_lease_id_is_refused_by_field() {
        let mut p = pb::LeaseClose {
            lease_id: vec![1; 32],
            gpu_seconds: 1,
            cumulative_amount: 1,
            reason: 0,
            issued_at_ms: 0,
        };
        assert_eq!(
            LeaseClose::from_proto(p.clone()).unwrap_err().field,
            "reason"
        );
        p.reason = 99;
        assert_eq!(
            LeaseClose::from_proto(p.clone()).unwrap_err().field,
            "reason"
        );
        p.reason = pb::CloseReason::Ended as i32;
        p.lease_id = vec![1; 31];
        assert_eq!(LeaseClose::from_proto(p).unwrap_err().field, "lease_id");
    }
}
