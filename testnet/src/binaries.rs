//! Where the `agorad` and `agora-mock-chain` executables are.

use std::path::{Path, PathBuf};

use crate::error::TestnetError;

/// The node binary.
pub const AGORAD: &str = "agorad";
/// The mock chain binary.
pub const MOCK_CHAIN: &str = "agora-mock-chain";

/// The executables a testnet runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// `agorad`.
    pub agorad: PathBuf,
    /// `agora-mock-chain`.
    pub mock_chain: PathBuf,
}

impl Binaries {
    /// Both binaries from `bin_dir`, or else from the directory of the
    /// running executable (`target/debug`) or its parent (tests run from
    /// `target/debug/deps`).
    pub fn locate(bin_dir: Option<&Path>) -> Result<Self, TestnetError> {
        let dirs = match bin_dir {
            Some(dir) => vec![dir.to_owned()],
            None => default_dirs(),
        };
        Self::find_in(&dirs)
    }

    /// Both binaries from the first of `dirs` that holds each.
    pub fn find_in(dirs: &[PathBuf]) -> Result<Self, TestnetError> {
        let find = |name: &str| {
            let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
            dirs.iter()
                .map(|d| d.join(&file))
                .find(|p| p.is_file())
                .ok_or_else(|| TestnetError::MissingBinary {
                    binary: file.clone(),
                    searched: dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        };
        Ok(Self {
            agorad: find(AGORAD)?,
            mock_chain: find(MOCK_CHAIN)?,
        })
    }
}

/// The running executable's directory and its parent.
pub(crate) fn default_dirs() -> Vec<PathBuf> {
    let Ok(exe) = std::env::current_exe() else {
        return Vec::new();
    };
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(Path::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(AGORAD), "").unwrap();
        let err = Binaries::locate(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("agora-mock-chain"), "{err}");
        assert!(
            err.contains("cargo build -p agora-node -p agora-contracts-mock"),
            "{err}"
        );
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn the_first_directory_holding_a_binary_wins() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(a.path().join(AGORAD), "").unwrap();
        std::fs::write(b.path().join(AGORAD), "").unwrap();
        std::fs::write(b.path().join(MOCK_CHAIN), "").unwrap();
        let bins = Binaries::find_in(&[a.path().to_owned(), b.path().to_owned()]).unwrap();
        assert_eq!(bins.agorad, a.path().join(AGORAD));
        assert_eq!(bins.mock_chain, b.path().join(MOCK_CHAIN));
    }
}
