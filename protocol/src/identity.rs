//! Node identity: one ed25519 key gives the libp2p `PeerId` and the ledger
//! account id.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

/// Length of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// First line of a key file; anything else is refused.
const KEY_FILE_HEADER: &str = "agora-ed25519-secret-v1";

/// Errors about keys, signatures and key files.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A public key is not 32 bytes or not a valid curve point.
    #[error("invalid public key: {0}")]
    PublicKey(String),
    /// A signature is not 64 bytes.
    #[error("invalid signature: expected {SIGNATURE_LEN} bytes, got {0}")]
    SignatureLength(usize),
    /// The OS random source failed.
    #[error("the OS random number generator failed: {0}")]
    Random(String),
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key file exists but does not hold a key in our format.
    #[error(
        "key file {path} is not an Agora key: {reason} (expected the line \
         '{KEY_FILE_HEADER}' then 64 hex digits; move it away to generate a new key)"
    )]
    BadKeyFile {
        /// The key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A key file is readable by others than its owner.
    #[error("key file {path} has mode {mode:o}; it must be readable by its owner only (chmod 600)")]
    Permissions {
        /// The key file.
        path: String,
        /// The file's permission bits.
        mode: u32,
    },
    /// A message to sign outside an envelope lacks its own namespace.
    #[error(
        "a message signed outside an envelope must start with agora/1/<name>\\0, a namespace no envelope kind uses"
    )]
    Namespace,
}

/// An ed25519 public key: a node's identity and its ledger account.
#[derive(Clone, Copy)]
pub struct PublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
    key: VerifyingKey,
}

/// A ledger account is named by its owner's public key.
pub type AccountId = PublicKey;

impl PublicKey {
    /// Parses and validates a 32-byte public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let bytes: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| {
            IdentityError::PublicKey(format!(
                "expected {PUBLIC_KEY_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| IdentityError::PublicKey("not a point on the curve".into()))?;
        if key.is_weak() {
            return Err(IdentityError::PublicKey("weak (small-order) key".into()));
        }
        Ok(Self { bytes, key })
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// The raw bytes as a vector, for protobuf fields.
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }

    /// Verifies a signature over `message` (strict: rejects malleable forms).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.key.verify_strict(message, &sig).is_ok()
    }

    /// The dalek verifying key, for batch verification.
    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The libp2p peer id of the node holding this key.
    pub fn peer_id(&self) -> libp2p_identity::PeerId {
        // libp2p decodes ed25519 keys with the same dalek code that already
        // accepted these bytes in `from_bytes`, so this cannot fail.
        #[allow(clippy::expect_used)]
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.bytes)
            .expect("validated ed25519 key");
        libp2p_identity::PublicKey::from(key).to_peer_id()
    }

    /// A short printable form: the first 8 hex digits.
    pub fn short(&self) -> String {
        hex::encode(&self.bytes[..4])
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for PublicKey {}
impl Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}
impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.bytes))
    }
}
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl FromStr for PublicKey {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes =
            hex::decode(s).map_err(|e| IdentityError::PublicKey(format!("not hex: {e}")))?;
        Self::from_bytes(&bytes)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}
impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl Signature {
    /// Parses a 64-byte signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| IdentityError::SignatureLength(bytes.len()))
    }

    /// The raw bytes as a vector, for protobuf fields.
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..4]))
    }
}

/// An ed25519 key pair.
#[derive(Clone)]
pub struct Keypair {
    secret: SigningKey,
    public: PublicKey,
}

impl Keypair {
    /// Generates a key from the OS random source.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key pair for a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let secret = SigningKey::from_bytes(seed);
        let verifying = secret.verifying_key();
        let public = PublicKey {
            bytes: verifying.to_bytes(),
            key: verifying,
        };
        Self { secret, public }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs raw bytes. Callers sign through [`crate::envelope`], which adds
    /// the namespace.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.secret.sign(message).to_bytes())
    }

    /// Signs a message that is not an envelope: an obligation a ledger
    /// defines itself (the EVM escrow's withdrawal). `message` must start
    /// with its own namespace, `agora/1/<name>\0`, distinct from every
    /// [`crate::envelope::Kind`]'s, so no signature made here is valid as
    /// an envelope's. Refuses a message without such a prefix.
    pub fn sign_namespaced(&self, message: &[u8]) -> Result<Signature, IdentityError> {
        let prefix = b"agora/1/";
        let named = message.starts_with(prefix)
            && message[prefix.len()..]
                .iter()
                .position(|&b| b == 0)
                .and_then(|end| {
                    let name = &message[..prefix.len() + end + 1];
                    (!crate::envelope::Kind::ALL
                        .iter()
                        .any(|kind| kind.namespace() == name))
                    .then_some(())
                })
                .is_some();
        if !named {
            return Err(IdentityError::Namespace);
        }
        Ok(self.sign_raw(message))
    }

    /// The 32-byte secret seed, for handing to libp2p.
    pub fn secret_seed(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// Loads a key file written by [`Keypair::save`], refusing one that
    /// others can read.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let shown = path.display().to_string();
        let io = |source| IdentityError::Io {
            path: shown.clone(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::Permissions { path: shown, mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let bad = |reason: &str| IdentityError::BadKeyFile {
            path: shown.clone(),
            reason: reason.to_string(),
        };
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(bad("missing header line"));
        }
        let hex_seed = lines.next().ok_or_else(|| bad("missing key line"))?.trim();
        let seed = hex::decode(hex_seed).map_err(|_| bad("key line is not hex"))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("key line is not 32 bytes"))?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(bad("unexpected text after the key"));
        }
        Ok(Self::from_seed(&seed))
    }

    /// Writes the key to a new file with mode 0600. Refuses to overwrite.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let shown = path.display().to_string();
        let io = |source| IdentityError::Io {
            path: shown.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let text = format!(
            "{KEY_FILE_HEADER}\n{}\n",
            hex::encode(self.secret.to_bytes())
        );
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Loads the key at `path`, or generates and saves one if there is none.
    pub fn load_or_generate(path: &Path) -> Result<Self, IdentityError> {
        if path.exists() {
            Self::load(path)
        } else {
            let key = Self::generate()?;
            key.save(path)?;
            Ok(key)
        }
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_messages_in_a_namespace_of_their_own_are_signed_outside_envelopes() {
        let key = Keypair::from_seed(&[3; 32]);
        let message = b"agora/1/evm-withdraw\0payload";
        let signature = key.sign_namespaced(message).unwrap();
        assert!(key.public().verify(message, &signature));
        // An envelope kind's namespace, no namespace, or an unterminated one.
        for refused in [
            &b"agora/1/usage-receipt\0body"[..],
            b"payload",
            b"agora/1/evm-withdraw",
        ] {
            assert!(matches!(
                key.sign_namespaced(refused),
                Err(IdentityError::Namespace)
            ));
        }
    }

    #[test]
    fn key_file_round_trip_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = Keypair::generate().unwrap();
        key.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = Keypair::load(&path).unwrap();
        assert_eq!(loaded.public(), key.public());
        // Never overwrites an existing key.
        assert!(matches!(key.save(&path), Err(IdentityError::Io { .. })));
        assert_eq!(
            Keypair::load_or_generate(&path).unwrap().public(),
            key.public()
        );
    }

    #[test]
    fn bad_key_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let write = |text: &str| {
            let _ = std::fs::remove_file(&path);
            Keypair::generate().unwrap().save(&path).unwrap();
            std::fs::write(&path, text).unwrap();
        };
        write("hello\n");
        let err = Keypair::load(&path).unwrap_err().to_string();
        assert!(err.contains("missing header line"), "{err}");
        write(&format!("{KEY_FILE_HEADER}\nzz\n"));
        assert!(
            Keypair::load(&path)
                .unwrap_err()
                .to_string()
                .contains("not hex")
        );
        write(&format!("{KEY_FILE_HEADER}\nabcd\n"));
        assert!(
            Keypair::load(&path)
                .unwrap_err()
                .to_string()
                .contains("not 32 bytes")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            write(&format!("{KEY_FILE_HEADER}\n{}\n", "11".repeat(32)));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                Keypair::load(&path),
                Err(IdentityError::Permissions { mode: 0o644, .. })
            ));
        }
    }

    #[test]
    fn peer_id_and_account_come_from_the_same_key() {
        let key = Keypair::from_seed(&[7; 32]);
        let libp2p_key = libp2p_identity::Keypair::ed25519_from_bytes(key.secret_seed()).unwrap();
        assert_eq!(key.public().peer_id(), libp2p_key.public().to_peer_id());
        let parsed: PublicKey = key.public().to_string().parse().unwrap();
        assert_eq!(parsed, key.public());
    }

    #[test]
    fn malformed_public_keys_are_rejected() {
        assert!(PublicKey::from_bytes(&[1; 31]).is_err());
        // The identity point is small-order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_bytes(&identity).is_err());
    }
}
