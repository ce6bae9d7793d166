//! Why a gossip message was rejected: a reason from a fixed set (the
//! `reason` label of `agora_gossip_rejected_total`) and the detail for the
//! log.

use agora_protocol::{EnvelopeError, MessageError};

/// Why a gossip message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Published without gossipsub's source signature.
    Unsigned,
    /// Not a signed envelope, or of an unknown kind.
    Undecodable,
    /// An envelope of another kind than the topic carries.
    WrongKind,
    /// The body exceeds its kind's bound.
    TooLarge,
    /// A key or signature field is malformed.
    BadKey,
    /// The signature does not verify.
    BadSignature,
    /// A field of the message does not validate.
    InvalidField,
    /// The envelope's signer is not the party the message names.
    SignerMismatch,
    /// Signed by someone other than the peer that published it.
    WrongPublisher,
    /// A topic this node does not know.
    UnknownTopic,
}

impl RejectReason {
    /// Every reason, in the order `docs/metrics.md` lists them.
    pub const ALL: [RejectReason; 10] = [
        Self::Unsigned,
        Self::Undecodable,
        Self::WrongKind,
        Self::TooLarge,
        Self::BadKey,
        Self::BadSignature,
        Self::InvalidField,
        Self::SignerMismatch,
        Self::WrongPublisher,
        Self::UnknownTopic,
    ];

    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::Undecodable => "undecodable",
            Self::WrongKind => "wrong_kind",
            Self::TooLarge => "too_large",
            Self::BadKey => "bad_key",
            Self::BadSignature => "bad_signature",
            Self::InvalidField => "invalid_field",
            Self::SignerMismatch => "signer_mismatch",
            Self::WrongPublisher => "wrong_publisher",
            Self::UnknownTopic => "unknown_topic",
        }
    }

    /// The reason a message failed to decode or verify.
    pub fn of(error: &MessageError) -> Self {
        match error {
            MessageError::Envelope(e) => match e {
                EnvelopeError::Decode(_) | EnvelopeError::UnknownKind(_) => Self::Undecodable,
                EnvelopeError::WrongKind { .. } => Self::WrongKind,
                EnvelopeError::TooLarge { .. } => Self::TooLarge,
                EnvelopeError::Identity(_) => Self::BadKey,
                EnvelopeError::BadSignature { .. } | EnvelopeError::BadBatch => Self::BadSignature,
            },
            MessageError::Invalid { .. } => Self::InvalidField,
            MessageError::SignerMismatch { .. } => Self::SignerMismatch,
        }
    }
}

/// A rejected gossip message: the reason and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason (the metric's label).
    pub reason: RejectReason,
    /// For the log.
    pub detail: String,
}

impl Rejection {
    /// A rejection for `reason`.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<MessageError> for Rejection {
    fn from(error: MessageError) -> Self {
        Self::new(RejectReason::of(&error), error.to_string())
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.reason.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_protocol::{Offer, Signed};

    #[test]
    fn garbage_is_undecodable_and_a_flipped_bit_a_bad_signature() {
        let err = Signed::<Offer>::decode(b"\xff\x00 not an envelope").unwrap_err();
        assert_eq!(Rejection::from(err).reason, RejectReason::Undecodable);
        let names: std::collections::HashSet<_> =
            RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), RejectReason::ALL.len());
    }
}
