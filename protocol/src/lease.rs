//! Leases: terms both parties sign. The requester signs a proposal (a
//! [`Signed<LeaseTerms>`]); the provider countersigns the same bytes, which
//! makes the [`Lease`].

use agora_proto::v1 as pb;

use crate::amount::{Amount, cost};
use crate::envelope::{CoSigned, EnvelopeError, Kind, SignedEnvelope};
use crate::identity::{Keypair, PublicKey};
use crate::limits::SandboxLimits;
use crate::message::{
    MessageError, Signed, ValidationError, WireMessage, digest, key, label, range,
};
use crate::offer::{MAX_GPUS, MAX_MODEL_LEN};
use crate::order::{MAX_DURATION_SECS, OrderId, id_type};
use crate::time::Timestamp;

id_type!(
    LeaseId,
    "Names a lease: blake3 of the exact lease-terms bytes both parties signed."
);

impl LeaseId {
    /// The id of the lease whose terms encode to `body`.
    pub fn of_body(body: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"agora/1/lease-id\0");
        h.update(body);
        Self(*h.finalize().as_bytes())
    }
}

/// Longest receipt interval.
pub const MAX_RECEIPT_INTERVAL_SECS: u32 = 3600;

/// What requester and provider agree to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTerms {
    /// The order this lease fills.
    pub order_id: OrderId,
    /// Who pays.
    pub requester: PublicKey,
    /// Who is paid.
    pub provider: PublicKey,
    /// The provider's offer slot.
    pub slot: u32,
    /// GPU model.
    pub gpu_model: String,
    /// GPUs leased.
    pub gpu_count: u32,
    /// Price per GPU-hour.
    pub price_per_gpu_hour: Amount,
    /// Longest run.
    pub max_duration_secs: u64,
    /// How often the provider issues receipts.
    pub receipt_interval_secs: u32,
    /// When the lease starts.
    pub starts_at: Timestamp,
    /// Escrow: `cost(price, gpu_count × max_duration_secs)`.
    pub escrow: Amount,
    /// Simulated GPUs.
    pub simulated: bool,
    /// What bounds the lease's job in the provider's sandbox (its offer's).
    pub limits: SandboxLimits,
}

impl LeaseTerms {
    /// The escrow these terms require, or `None` on overflow.
    pub fn required_escrow(
        price: Amount,
        gpu_count: u32,
        max_duration_secs: u64,
    ) -> Option<Amount> {
        cost(price, u64::from(gpu_count).checked_mul(max_duration_secs)?)
    }

    /// When the lease ends.
    pub fn ends_at(&self) -> Timestamp {
        self.starts_at.plus_secs(self.max_duration_secs)
    }

    /// Most GPU-seconds the lease can use.
    pub fn max_gpu_seconds(&self) -> u64 {
        u64::from(self.gpu_count).saturating_mul(self.max_duration_secs)
    }
}

impl WireMessage for LeaseTerms {
    const KIND: Kind = Kind::LeaseTerms;
    type Proto = pb::LeaseTerms;

    fn from_proto(p: pb::LeaseTerms) -> Result<Self, ValidationError> {
        let requester = key("requester", &p.requester)?;
        let provider = key("provider", &p.provider)?;
        if requester == provider {
            return Err(ValidationError::new(
                "provider",
                "a node cannot lease from itself",
            ));
        }
        let gpu_count = range("gpu_count", p.gpu_count, 1, MAX_GPUS)?;
        let price = Amount(range(
            "price_per_gpu_hour",
            p.price_per_gpu_hour,
            1,
            u64::MAX / 4,
        )?);
        let max_duration_secs = range(
            "max_duration_secs",
            p.max_duration_secs,
            1,
            MAX_DURATION_SECS,
        )?;
        let required = Self::required_escrow(price, gpu_count, max_duration_secs)
            .ok_or_else(|| ValidationError::new("escrow", "price × GPUs × duration overflows"))?;
        if p.escrow != required.0 {
            return Err(ValidationError::new(
                "escrow",
                format!("{} != cost of the whole lease {}", p.escrow, required.0),
            ));
        }
        Ok(Self {
            order_id: OrderId(digest("order_id", &p.order_id)?),
            requester,
            provider,
            slot: p.slot,
            gpu_model: label("gpu_model", p.gpu_model, MAX_MODEL_LEN)?,
            gpu_count,
            price_per_gpu_hour: price,
            max_duration_secs,
            receipt_interval_secs: range(
                "receipt_interval_secs",
                p.receipt_interval_secs,
                1,
                MAX_RECEIPT_INTERVAL_SECS,
            )?,
            starts_at: Timestamp(p.starts_at_ms),
            escrow: required,
            simulated: p.simulated,
            limits: SandboxLimits::from_proto("limits", p.limits)?,
        })
    }

    fn to_proto(&self) -> pb::LeaseTerms {
        pb::LeaseTerms {
            order_id: self.order_id.0.to_vec(),
            requester: self.requester.to_vec(),
            provider: self.provider.to_vec(),
            slot: self.slot,
            gpu_model: self.gpu_model.clone(),
            gpu_count: self.gpu_count,
            price_per_gpu_hour: self.price_per_gpu_hour.0,
            max_duration_secs: self.max_duration_secs,
            receipt_interval_secs: self.receipt_interval_secs,
            starts_at_ms: self.starts_at.0,
            escrow: self.escrow.0,
            simulated: self.simulated,
            limits: self.limits.to_proto(),
        }
    }

    /// The requester signs the proposal.
    fn signer(&self) -> Option<&PublicKey> {
        Some(&self.requester)
    }
}

/// Terms signed by both parties. Exists only after both signatures verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    id: LeaseId,
    terms: LeaseTerms,
    cosigned: CoSigned,
}

impl Lease {
    /// The provider countersigns a requester's proposal. `key` must be the
    /// provider the terms name.
    pub fn countersign(proposal: &Signed<LeaseTerms>, key: &Keypair) -> Result<Self, MessageError> {
        let terms = proposal.message().clone();
        if terms.provider != key.public() {
            return Err(MessageError::signer_mismatch(
                Kind::LeaseTerms,
                &key.public(),
                &terms.provider,
            ));
        }
        let cosigned = CoSigned::countersign(proposal.envelope(), key, true);
        Ok(Self {
            id: LeaseId::of_body(cosigned.body()),
            terms,
            cosigned,
        })
    }

    /// Decodes, validates and verifies both signatures.
    pub fn verify(cosigned: CoSigned) -> Result<Self, MessageError> {
        let terms = Self::decode_terms(&cosigned)?;
        cosigned.verify(&terms.requester, &terms.provider)?;
        Ok(Self {
            id: LeaseId::of_body(cosigned.body()),
            terms,
            cosigned,
        })
    }

    /// Decodes wire bytes and verifies.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        Self::verify(CoSigned::decode(bytes)?)
    }

    fn decode_terms(cosigned: &CoSigned) -> Result<LeaseTerms, MessageError> {
        if cosigned.kind() != Kind::LeaseTerms {
            return Err(EnvelopeError::WrongKind {
                expected: Kind::LeaseTerms,
                got: cosigned.kind(),
            }
            .into());
        }
        let proto = <pb::LeaseTerms as agora_proto::Message>::decode(cosigned.body())
            .map_err(|e| EnvelopeError::Decode(e.to_string()))?;
        LeaseTerms::from_proto(proto).map_err(|error| MessageError::Invalid {
            kind: Kind::LeaseTerms,
            error,
        })
    }

    /// The requester countersigns a message of `kind` about this lease
    /// that its provider signed, after checking who signed it and the
    /// signature. Rule checks are the caller's.
    pub(crate) fn countersign_providers(
        &self,
        signed: &SignedEnvelope,
        kind: Kind,
        key: &Keypair,
    ) -> Result<CoSigned, MessageError> {
        signed.expect_kind(kind)?;
        let terms = self.terms();
        if signed.signer() != &terms.provider {
            return Err(MessageError::signer_mismatch(
                kind,
                signed.signer(),
                &terms.provider,
            ));
        }
        if key.public() != terms.requester {
            return Err(MessageError::signer_mismatch(
                kind,
                &key.public(),
                &terms.requester,
            ));
        }
        signed.verify()?;
        Ok(CoSigned::countersign(signed, key, false))
    }

    /// Its id.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// The agreed terms.
    pub fn terms(&self) -> &LeaseTerms {
        &self.terms
    }

    /// Both signatures over the exact bytes.
    pub fn cosigned(&self) -> &CoSigned {
        &self.cosigned
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.cosigned.encode()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_terms(requester: &Keypair, provider: &Keypair) -> LeaseTerms {
        let price = Amount(3_600_000);
        LeaseTerms {
            order_id: OrderId([1; 32]),
            requester: requester.public(),
            provider: provider.public(),
            slot: 0,
            gpu_model: "H100".into(),
            gpu_count: 2,
            price_per_gpu_hour: price,
            max_duration_secs: 600,
            receipt_interval_secs: 10,
            starts_at: Timestamp(10_000),
            escrow: LeaseTerms::required_escrow(price, 2, 600).unwrap(),
            simulated: true,
            limits: SandboxLimits::default(),
        }
    }

    pub(crate) fn sample_lease(requester: &Keypair, provider: &Keypair) -> Lease {
        let proposal = Signed::sign(sample_terms(requester, provider), requester).unwrap();
        Lease::countersign(&proposal, provider).unwrap()
    }

    #[test]
    fn both_parties_make_a_lease() {
        let requester = Keypair::from_seed(&[1; 32]);
        let provider = Keypair::from_seed(&[2; 32]);
        let lease = sample_lease(&requester, &provider);
        // 3.6 AGR per GPU-hour × 2 GPUs × 600 s = 1.2 AGR.
        assert_eq!(lease.terms().escrow, Amount(1_200_000));
        let back = Lease::decode(&lease.encode()).unwrap();
        assert_eq!(back, lease);
        assert_eq!(back.id(), LeaseId::of_body(lease.cosigned().body()));
    }

    #[test]
    fn a_lease_with_one_signature_missing_or_wrong_fails() {
        let requester = Keypair::from_seed(&[1; 32]);
        let provider = Keypair::from_seed(&[2; 32]);
        let mallory = Keypair::from_seed(&[3; 32]);
        let proposal = Signed::sign(sample_terms(&requester, &provider), &requester).unwrap();
        // Someone other than the named provider cannot countersign.
        assert!(Lease::countersign(&proposal, &mallory).is_err());
        // A forged provider signature is caught on verification.
        let forged = CoSigned::countersign(proposal.envelope(), &mallory, true);
        assert!(Lease::verify(forged).is_err());
        // Requester signature swapped for the provider's own fails too.
        let lease = Lease::countersign(&proposal, &provider).unwrap();
        let mut raw = lease.cosigned().to_proto();
        raw.requester_signature = raw.provider_signature.clone();
        assert!(Lease::verify(CoSigned::from_proto(raw).unwrap()).is_err());
    }

    #[test]
    fn escrow_must_cover_the_whole_lease() {
        let requester = Keypair::from_seed(&[1; 32]);
        let provider = Keypair::from_seed(&[2; 32]);
        let mut p = sample_terms(&requester, &provider).to_proto();
        p.escrow -= 1;
        assert_eq!(LeaseTerms::from_proto(p).unwrap_err().field, "escrow");
        let mut p = sample_terms(&requester, &provider).to_proto();
        p.provider = p.requester.clone();
        assert_eq!(LeaseTerms::from_proto(p).unwrap_err().field, "provider");
    }
}
