//! Signed envelopes: a signature covers `namespace(kind) || body`, where
//! `body` is the exact bytes sent. A signature made for one kind never
//! verifies as another, because the namespaces differ and none is a prefix
//! of another (each ends in a NUL byte).

use agora_proto::{Message, v1 as pb};

use crate::identity::{IdentityError, Keypair, PublicKey, Signature};

/// The kind of an envelope; selects its namespace and its size bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A provider's offer (gossip).
    Offer,
    /// A requester's order (gossip).
    Order,
    /// A provider's bid for an order.
    Bid,
    /// A provider's refusal of an order.
    Decline,
    /// Lease terms, signed by both parties.
    LeaseTerms,
    /// A cumulative usage receipt, signed by both parties.
    UsageReceipt,
    /// The job a requester sends to run.
    JobPayload,
    /// Job control (cancel).
    JobControl,
    /// An early close of a lease, signed by both parties.
    LeaseClose,
}

/// Bodies of all kinds but job payloads stay under this size.
pub const MAX_SMALL_BODY: usize = 16 * 1024;
/// A job payload (command, env and small input files) stays under this size.
pub const MAX_JOB_PAYLOAD_BODY: usize = 8 * 1024 * 1024;

impl Kind {
    /// All kinds, for tests and tables.
    pub const ALL: [Kind; 9] = [
        Kind::Offer,
        Kind::Order,
        Kind::Bid,
        Kind::Decline,
        Kind::LeaseTerms,
        Kind::UsageReceipt,
        Kind::JobPayload,
        Kind::JobControl,
        Kind::LeaseClose,
    ];

    /// The signing namespace. Each ends in NUL, so none is a prefix of another.
    pub fn namespace(self) -> &'static [u8] {
        match self {
            Kind::Offer => b"agora/1/offer\0",
            Kind::Order => b"agora/1/order\0",
            Kind::Bid => b"agora/1/bid\0",
            Kind::Decline => b"agora/1/decline\0",
            Kind::LeaseTerms => b"agora/1/lease-terms\0",
            Kind::UsageReceipt => b"agora/1/usage-receipt\0",
            Kind::JobPayload => b"agora/1/job-payload\0",
            Kind::JobControl => b"agora/1/job-control\0",
            Kind::LeaseClose => b"agora/1/lease-close\0",
        }
    }

    /// The largest body accepted for this kind.
    pub fn max_body(self) -> usize {
        match self {
            Kind::JobPayload => MAX_JOB_PAYLOAD_BODY,
            _ => MAX_SMALL_BODY,
        }
    }

    fn to_proto(self) -> pb::Kind {
        match self {
            Kind::Offer => pb::Kind::Offer,
            Kind::Order => pb::Kind::Order,
            Kind::Bid => pb::Kind::Bid,
            Kind::Decline => pb::Kind::Decline,
            Kind::LeaseTerms => pb::Kind::LeaseTerms,
            Kind::UsageReceipt => pb::Kind::UsageReceipt,
            Kind::JobPayload => pb::Kind::JobPayload,
            Kind::JobControl => pb::Kind::JobControl,
            Kind::LeaseClose => pb::Kind::LeaseClose,
        }
    }

    fn from_proto(raw: i32) -> Result<Self, EnvelopeError> {
        Ok(
            match pb::Kind::try_from(raw).map_err(|_| EnvelopeError::UnknownKind(raw))? {
                pb::Kind::Unspecified => return Err(EnvelopeError::UnknownKind(raw)),
                pb::Kind::Offer => Kind::Offer,
                pb::Kind::Order => Kind::Order,
                pb::Kind::Bid => Kind::Bid,
                pb::Kind::Decline => Kind::Decline,
                pb::Kind::LeaseTerms => Kind::LeaseTerms,
                pb::Kind::UsageReceipt => Kind::UsageReceipt,
                pb::Kind::JobPayload => Kind::JobPayload,
                pb::Kind::JobControl => Kind::JobControl,
                pb::Kind::LeaseClose => Kind::LeaseClose,
            },
        )
    }
}

/// `namespace(kind) || body`: the bytes a signature covers.
pub fn signing_bytes(kind: Kind, body: &[u8]) -> Vec<u8> {
    let ns = kind.namespace();
    let mut out = Vec::with_capacity(ns.len() + body.len());
    out.extend_from_slice(ns);
    out.extend_from_slice(body);
    out
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The bytes are not a protobuf envelope.
    #[error("not a valid envelope encoding: {0}")]
    Decode(String),
    /// The kind field names no known kind.
    #[error("unknown message kind {0}")]
    UnknownKind(i32),
    /// The envelope is of another kind than expected.
    #[error("expected a {expected:?} message, got {got:?}")]
    WrongKind {
        /// What the caller wanted.
        expected: Kind,
        /// What arrived.
        got: Kind,
    },
    /// The body exceeds the kind's bound.
    #[error("{kind:?} body is {len} bytes; the limit is {max}")]
    TooLarge {
        /// The kind.
        kind: Kind,
        /// The body length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A key or signature field is malformed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The signature does not verify.
    #[error("bad {role} signature on a {kind:?} message")]
    BadSignature {
        /// The kind.
        kind: Kind,
        /// Whose signature: "signer", "requester" or "provider".
        role: &'static str,
    },
    /// A batch holds at least one bad signature.
    #[error("batch verification failed: at least one signature is bad")]
    BadBatch,
}

/// A message signed by one key. Construct with [`SignedEnvelope::seal`] or
/// [`SignedEnvelope::decode`]; the latter does not verify — call
/// [`SignedEnvelope::verify`] (or batch-verify) before trusting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEnvelope {
    kind: Kind,
    body: Vec<u8>,
    signer: PublicKey,
    signature: Signature,
}

impl SignedEnvelope {
    /// Encodes `message` and signs `namespace(kind) || body` with `key`.
    pub fn seal<M: Message>(kind: Kind, message: &M, key: &Keypair) -> Self {
        let body = message.encode_to_vec();
        Self::seal_bytes(kind, body, key)
    }

    /// Signs already-encoded body bytes.
    pub fn seal_bytes(kind: Kind, body: Vec<u8>, key: &Keypair) -> Self {
        let signature = key.sign_raw(&signing_bytes(kind, &body));
        Self {
            kind,
            body,
            signer: key.public(),
            signature,
        }
    }

    /// Decodes a wire envelope, bounding its size. Does not verify.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_JOB_PAYLOAD_BODY + 256 {
            return Err(EnvelopeError::Decode(format!(
                "{} bytes is too large",
                bytes.len()
            )));
        }
        let raw =
            pb::SignedEnvelope::decode(bytes).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
        Self::from_proto(raw)
    }

    /// Checks the fields of a decoded protobuf envelope. Does not verify.
    pub fn from_proto(raw: pb::SignedEnvelope) -> Result<Self, EnvelopeError> {
        let kind = Kind::from_proto(raw.kind)?;
        if raw.body.len() > kind.max_body() {
            return Err(EnvelopeError::TooLarge {
                kind,
                len: raw.body.len(),
                max: kind.max_body(),
            });
        }
        Ok(Self {
            kind,
            signer: PublicKey::from_bytes(&raw.signer)?,
            signature: Signature::from_bytes(&raw.signature)?,
            body: raw.body,
        })
    }

    /// The protobuf form.
    pub fn to_proto(&self) -> pb::SignedEnvelope {
        pb::SignedEnvelope {
            kind: self.kind.to_proto() as i32,
            body: self.body.clone(),
            signer: self.signer.to_vec(),
            signature: self.signature.to_vec(),
        }
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// Verifies the signature.
    pub fn verify(&self) -> Result<(), EnvelopeError> {
        if self
            .signer
            .verify(&signing_bytes(self.kind, &self.body), &self.signature)
        {
            Ok(())
        } else {
            Err(EnvelopeError::BadSignature {
                kind: self.kind,
                role: "signer",
            })
        }
    }

    /// Checks the kind, verifies, and decodes the body as `M`.
    pub fn open<M: Message + Default>(&self, expected: Kind) -> Result<M, EnvelopeError> {
        self.expect_kind(expected)?;
        self.verify()?;
        self.decode_body()
    }

    /// Decodes the body as `M` without verifying (after a batch verify).
    pub fn decode_body<M: Message + Default>(&self) -> Result<M, EnvelopeError> {
        M::decode(self.body.as_slice()).map_err(|e| EnvelopeError::Decode(e.to_string()))
    }

    /// Fails unless the envelope is of kind `expected`.
    pub fn expect_kind(&self, expected: Kind) -> Result<(), EnvelopeError> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(EnvelopeError::WrongKind {
                expected,
                got: self.kind,
            })
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The exact body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    /// Who signed.
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }
    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
}

/// Verifies many envelopes at once, about twice as fast per signature as
/// one by one. On failure, says only that some signature is bad; callers
/// that need to know which fall back to [`SignedEnvelope::verify`].
pub fn verify_batch(envelopes: &[&SignedEnvelope]) -> Result<(), EnvelopeError> {
    let items: Vec<(&PublicKey, Vec<u8>, &Signature)> = envelopes
        .iter()
        .map(|e| (&e.signer, signing_bytes(e.kind, &e.body), &e.signature))
        .collect();
    verify_triples(&items)
}

/// Batch-verifies `(key, signed bytes, signature)` triples.
pub(crate) fn verify_triples(
    items: &[(&PublicKey, Vec<u8>, &Signature)],
) -> Result<(), EnvelopeError> {
    if items.is_empty() {
        return Ok(());
    }
    let messages: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_slice()).collect();
    let signatures: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> =
        items.iter().map(|(k, _, _)| *k.verifying_key()).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).map_err(|_| EnvelopeError::BadBatch)
}

/// A message signed by both parties of a lease: the requester (payer) and
/// the provider (payee). Both signatures cover `namespace(kind) || body`.
/// Decoded but unverified: the keys come from the body or from the lease,
/// so verification lives with the types that know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoSigned {
    pub(crate) kind: Kind,
    pub(crate) body: Vec<u8>,
    pub(crate) requester_signature: Signature,
    pub(crate) provider_signature: Signature,
}

impl CoSigned {
    /// Completes a one-party envelope with the other party's signature.
    /// `envelope` must be signed by `first`'s role; `second` signs the same body.
    pub(crate) fn countersign(
        envelope: &SignedEnvelope,
        key: &Keypair,
        signer_is_requester: bool,
    ) -> Self {
        let own = key.sign_raw(&signing_bytes(envelope.kind, &envelope.body));
        let (requester_signature, provider_signature) = if signer_is_requester {
            (envelope.signature, own)
        } else {
            (own, envelope.signature)
        };
        Self {
            kind: envelope.kind,
            body: envelope.body.clone(),
            requester_signature,
            provider_signature,
        }
    }

    /// Decodes the wire form, bounding sizes. Does not verify.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_SMALL_BODY + 256 {
            return Err(EnvelopeError::Decode(format!(
                "{} bytes is too large",
                bytes.len()
            )));
        }
        let raw = pb::CoSigned::decode(bytes).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
        Self::from_proto(raw)
    }

    /// Checks the fields of the protobuf form. Does not verify.
    pub fn from_proto(raw: pb::CoSigned) -> Result<Self, EnvelopeError> {
        let kind = Kind::from_proto(raw.kind)?;
        if raw.body.len() > kind.max_body() {
            return Err(EnvelopeError::TooLarge {
                kind,
                len: raw.body.len(),
                max: kind.max_body(),
            });
        }
        Ok(Self {
            kind,
            requester_signature: Signature::from_bytes(&raw.requester_signature)?,
            provider_signature: Signature::from_bytes(&raw.provider_signature)?,
            body: raw.body,
        })
    }

    /// The protobuf form.
    pub fn to_proto(&self) -> pb::CoSigned {
        pb::CoSigned {
            kind: self.kind.to_proto() as i32,
            body: self.body.clone(),
            requester_signature: self.requester_signature.to_vec(),
            provider_signature: self.provider_signature.to_vec(),
        }
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The exact body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The requester's signature over `signing_bytes(kind, body)`.
    pub fn requester_signature(&self) -> &Signature {
        &self.requester_signature
    }

    /// The provider's signature over `signing_bytes(kind, body)`.
    pub fn provider_signature(&self) -> &Signature {
        &self.provider_signature
    }

    /// Verifies both signatures against the named parties (batched).
    pub fn verify(&self, requester: &PublicKey, provider: &PublicKey) -> Result<(), EnvelopeError> {
        let message = signing_bytes(self.kind, &self.body);
        if !requester.verify(&message, &self.requester_signature) {
            return Err(EnvelopeError::BadSignature {
                kind: self.kind,
                role: "requester",
            });
        }
        if !provider.verify(&message, &self.provider_signature) {
            return Err(EnvelopeError::BadSignature {
                kind: self.kind,
                role: "provider",
            });
        }
        Ok(())
    }

    /// The `(key, signed bytes, signature)` triples, for batch verification.
    pub(crate) fn triples<'a>(
        &'a self,
        requester: &'a PublicKey,
        provider: &'a PublicKey,
    ) -> [(&'a PublicKey, Vec<u8>, &'a Signature); 2] {
        let message = signing_bytes(self.kind, &self.body);
        [
            (requester, message.clone(), &self.requester_signature),
            (provider, message, &self.provider_signature),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_body() -> pb::Order {
        pb::Order {
            gpu_count: 2,
            max_price_per_gpu_hour: 5,
            ..Default::default()
        }
    }

    #[test]
    fn seal_then_decode_then_verify() {
        let key = Keypair::from_seed(&[1; 32]);
        let env = SignedEnvelope::seal(Kind::Order, &order_body(), &key);
        let decoded = SignedEnvelope::decode(&env.encode()).unwrap();
        assert_eq!(decoded, env);
        let order: pb::Order = decoded.open(Kind::Order).unwrap();
        assert_eq!(order, order_body());
    }

    #[test]
    fn a_signature_for_one_kind_never_verifies_as_another() {
        let key = Keypair::from_seed(&[2; 32]);
        for signed_as in Kind::ALL {
            let env = SignedEnvelope::seal(signed_as, &order_body(), &key);
            for claimed in Kind::ALL {
                let mut raw = env.to_proto();
                raw.kind = claimed.to_proto() as i32;
                let moved = SignedEnvelope::from_proto(raw).unwrap();
                assert_eq!(
                    moved.verify().is_ok(),
                    signed_as == claimed,
                    "{signed_as:?} as {claimed:?}"
                );
            }
        }
    }

    #[test]
    fn tampered_body_or_signer_fails() {
        let key = Keypair::from_seed(&[3; 32]);
        let other = Keypair::from_seed(&[4; 32]);
        let env = SignedEnvelope::seal(Kind::Bid, &order_body(), &key);
        let mut raw = env.to_proto();
        raw.body.push(0);
        assert!(SignedEnvelope::from_proto(raw).unwrap().verify().is_err());
        let mut raw = env.to_proto();
        raw.signer = other.public().to_vec();
        assert!(SignedEnvelope::from_proto(raw).unwrap().verify().is_err());
        assert!(matches!(
            env.open::<pb::Order>(Kind::Order),
            Err(EnvelopeError::WrongKind { .. })
        ));
    }

    #[test]
    fn garbage_and_oversized_input_is_an_error_not_a_panic() {
        assert!(SignedEnvelope::decode(&[0xff, 0xff, 0xff]).is_err());
        let key = Keypair::from_seed(&[5; 32]);
        let big = SignedEnvelope::seal_bytes(Kind::Offer, vec![0; MAX_SMALL_BODY + 1], &key);
        assert!(matches!(
            SignedEnvelope::decode(&big.encode()),
            Err(EnvelopeError::TooLarge {
                kind: Kind::Offer,
                ..
            })
        ));
        let mut raw = SignedEnvelope::seal(Kind::Offer, &order_body(), &key).to_proto();
        raw.kind = 99;
        assert!(matches!(
            SignedEnvelope::from_proto(raw),
            Err(EnvelopeError::UnknownKind(99))
        ));
    }

    #[test]
    fn batch_verify_accepts_good_and_rejects_one_bad() {
        let keys: Vec<Keypair> = (0..16u8)
            .map(|i| Keypair::from_seed(&[i + 10; 32]))
            .collect();
        let envs: Vec<SignedEnvelope> = keys
            .iter()
            .map(|k| SignedEnvelope::seal(Kind::Offer, &order_body(), k))
            .collect();
        let refs: Vec<&SignedEnvelope> = envs.iter().collect();
        verify_batch(&refs).unwrap();
        let mut raw = envs[7].to_proto();
        raw.body.push(1);
        let bad = SignedEnvelope::from_proto(raw).unwrap();
        let mut refs = refs;
        refs[7] = &bad;
        assert!(verify_batch(&refs).is_err());
    }

    #[test]
    fn cosigned_needs_both_parties() {
        let requester = Keypair::from_seed(&[6; 32]);
        let provider = Keypair::from_seed(&[7; 32]);
        let proposal = SignedEnvelope::seal(Kind::LeaseTerms, &order_body(), &requester);
        let both = CoSigned::countersign(&proposal, &provider, true);
        both.verify(&requester.public(), &provider.public())
            .unwrap();
        let decoded = CoSigned::decode(&both.encode()).unwrap();
        decoded
            .verify(&requester.public(), &provider.public())
            .unwrap();
        // Swapped roles fail.
        assert!(
            both.verify(&provider.public(), &requester.public())
                .is_err()
        );
    }
}
