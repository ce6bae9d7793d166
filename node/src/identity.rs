//! The node's key in its data dir.

use std::path::{Path, PathBuf};

use agora_protocol::{IdentityError, Keypair};

/// File name of the node key inside the data dir.
pub const KEY_FILE: &str = "node.key";

/// Where the node key lives in `data_dir`.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// Loads the node key, creating the data dir and a fresh key on first run.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, IdentityError> {
    std::fs::create_dir_all(data_dir).map_err(|source| IdentityError::Io {
        path: data_dir.display().to_string(),
        source,
    })?;
    Keypair::load_or_generate(&key_path(data_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_data_dir_gives_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(&dir.path().join("a")).unwrap();
        let again = load_or_create(&dir.path().join("a")).unwrap();
        assert_eq!(first.public(), again.public());
        let other = load_or_create(&dir.path().join("b")).unwrap();
        assert_ne!(first.public(), other.public());
    }
}
