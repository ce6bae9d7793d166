//! Validated wire messages and the signed form of each.
//!
//! Converting from protobuf checks every field and returns a
//! [`ValidationError`] naming the field and what is wrong. A [`Signed`]
//! message exists only after its envelope verified, its body decoded and
//! validated, and its signer matched the party the body names.

use agora_proto::Message;

use crate::envelope::{EnvelopeError, Kind, SignedEnvelope};
use crate::identity::{IdentityError, Keypair, PublicKey};

/// A field of a message that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field '{field}': {reason}")]
pub struct ValidationError {
    /// The field's name in the wire schema.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ValidationError {
    /// A new error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Why a signed message was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The envelope is malformed, of the wrong kind, or badly signed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The body does not validate.
    #[error("invalid {kind:?}: {error}")]
    Invalid {
        /// The message kind.
        kind: Kind,
        /// The field at fault.
        error: ValidationError,
    },
    /// The envelope's signer is not the party the body names.
    #[error("{kind:?} is signed by {signer} but names {named}")]
    SignerMismatch {
        /// The message kind.
        kind: Kind,
        /// Who signed (hex key).
        signer: String,
        /// Who the body says should have (hex key).
        named: String,
    },
}

impl MessageError {
    /// `signer` signed a message of `kind` that names `named`.
    pub fn signer_mismatch(kind: Kind, signer: &PublicKey, named: &PublicKey) -> Self {
        Self::SignerMismatch {
            kind,
            signer: signer.to_string(),
            named: named.to_string(),
        }
    }
}

/// A message type of the wire protocol.
pub trait WireMessage: Sized + Clone {
    /// Its envelope kind.
    const KIND: Kind;
    /// Its protobuf type.
    type Proto: Message + Default;

    /// Validates every field of the protobuf form.
    fn from_proto(proto: Self::Proto) -> Result<Self, ValidationError>;

    /// The protobuf form.
    fn to_proto(&self) -> Self::Proto;

    /// The party who must sign it, when the body names one.
    fn signer(&self) -> Option<&PublicKey>;
}

/// A message with a verified signature of the party it names.
#[derive(Debug, Clone)]
pub struct Signed<T> {
    envelope: SignedEnvelope,
    message: T,
}

impl<T: WireMessage> Signed<T> {
    /// Signs `message` with `key`, which must be the key the message names.
    pub fn sign(message: T, key: &Keypair) -> Result<Self, MessageError> {
        if let Some(named) = message.signer()
            && *named != key.public()
        {
            return Err(MessageError::signer_mismatch(T::KIND, &key.public(), named));
        }
        let envelope = SignedEnvelope::seal(T::KIND, &message.to_proto(), key);
        Ok(Self { envelope, message })
    }

    /// Verifies, decodes and validates an envelope.
    pub fn from_envelope(envelope: SignedEnvelope) -> Result<Self, MessageError> {
        envelope.expect_kind(T::KIND)?;
        envelope.verify()?;
        Self::from_verified_envelope(envelope)
    }

    /// Decodes and validates an envelope whose signature the caller already
    /// verified (in a batch).
    pub fn from_verified_envelope(envelope: SignedEnvelope) -> Result<Self, MessageError> {
        envelope.expect_kind(T::KIND)?;
        let proto: T::Proto = envelope.decode_body()?;
        let message = T::from_proto(proto).map_err(|error| MessageError::Invalid {
            kind: T::KIND,
            error,
        })?;
        if let Some(named) = message.signer()
            && named != envelope.signer()
        {
            return Err(MessageError::signer_mismatch(
                T::KIND,
                envelope.signer(),
                named,
            ));
        }
        Ok(Self { envelope, message })
    }

    /// Decodes wire bytes, verifies and validates.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        Self::from_envelope(SignedEnvelope::decode(bytes)?)
    }

    /// The validated message.
    pub fn message(&self) -> &T {
        &self.message
    }

    /// The envelope, with the exact bytes that were signed.
    pub fn envelope(&self) -> &SignedEnvelope {
        &self.envelope
    }

    /// Who signed.
    pub fn signer(&self) -> &PublicKey {
        self.envelope.signer()
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.envelope.encode()
    }
}

// ---- field checks shared by the message types ----

/// Cuts `text` to at most `max` bytes, on a character boundary
/// (`String::truncate` panics inside a character). For free text a peer
/// sends, such as a note or a refusal's reason.
pub fn truncate_on_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

pub(crate) fn key(field: &'static str, bytes: &[u8]) -> Result<PublicKey, ValidationError> {
    PublicKey::from_bytes(bytes)
        .map_err(|e: IdentityError| ValidationError::new(field, e.to_string()))
}

pub(crate) fn digest(field: &'static str, bytes: &[u8]) -> Result<[u8; 32], ValidationError> {
    bytes
        .try_into()
        .map_err(|_| ValidationError::new(field, format!("expected 32 bytes, got {}", bytes.len())))
}

pub(crate) fn range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ValidationError> {
    if value < min || value > max {
        return Err(ValidationError::new(
            field,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    Ok(value)
}

/// A short identifier: 1..=`max` characters of `[A-Za-z0-9._-]`.
pub(crate) fn label(
    field: &'static str,
    value: String,
    max: usize,
) -> Result<String, ValidationError> {
    if value.is_empty() || value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("length {} is outside 1..={max}", value.len()),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ValidationError::new(
            field,
            format!("character {c:?} is not allowed (use A-Z, a-z, 0-9, '.', '_', '-')"),
        ));
    }
    Ok(value)
}

/// Like [`label`], but the empty string (meaning "any") is allowed.
pub(crate) fn optional_label(
    field: &'static str,
    value: String,
    max: usize,
) -> Result<Option<String>, ValidationError> {
    if value.is_empty() {
        Ok(None)
    } else {
        label(field, value, max).map(Some)
    }
}

/// An ISO 3166-1 alpha-2 code, or empty.
pub(crate) fn jurisdiction(
    field: &'static str,
    value: String,
) -> Result<Option<String>, ValidationError> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ValidationError::new(
            field,
            format!("{value:?} is not a two-letter country code like \"DE\""),
        ));
    }
    Ok(Some(value))
}

/// Free text up to `max` bytes without control characters.
pub(crate) fn text(
    field: &'static str,
    value: String,
    max: usize,
) -> Result<String, ValidationError> {
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("{} bytes exceeds {max}", value.len()),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ValidationError::new(
            field,
            "control characters are not allowed",
        ));
    }
    Ok(value)
}
