//! The data disk's free space: below `node.min_free_disk_mib` the node
//! takes no new work — a requester refuses submissions (507), a provider
//! publishes no offers and answers no orders — and keeps running the work
//! it has, so its store never meets a full disk mid-write.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the free bytes of a directory's filesystem are read.
pub type Probe = Arc<dyn Fn(&Path) -> std::io::Result<u64> + Send + Sync>;

/// Checks the free space under a directory against a floor. Cheap to
/// clone; each check is one `statvfs`.
#[derive(Clone)]
pub struct DiskGuard {
    dir: PathBuf,
    min_free_bytes: u64,
    probe: Probe,
}

impl std::fmt::Debug for DiskGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskGuard")
            .field("dir", &self.dir)
            .field("min_free_bytes", &self.min_free_bytes)
            .finish_non_exhaustive()
    }
}

/// Bytes an unprivileged process may still write on `path`'s filesystem.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let (blocks, size) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Ok(blocks.saturating_mul(size))
}

impl DiskGuard {
    /// A guard of `dir` keeping `min_free_mib` free.
    pub fn new(dir: &Path, min_free_mib: u64) -> Self {
        Self::with_probe(dir, min_free_mib, Arc::new(free_bytes))
    }

    /// A guard reading free space with `probe` (tests).
    pub fn with_probe(dir: &Path, min_free_mib: u64, probe: Probe) -> Self {
        Self {
            dir: dir.to_path_buf(),
            min_free_bytes: min_free_mib.saturating_mul(1024 * 1024),
            probe,
        }
    }

    /// `Err` with the reason, for a person, when new work must be refused.
    /// A disk whose free space cannot be read is not called full: the
    /// store's own writes will say what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match (self.probe)(&self.dir) {
            Ok(free) if free < self.min_free_bytes => Err(format!(
                "the data disk ({}) has {} MiB free, below node.min_free_disk_mib = {}; \
                 new work is refused, running work continues",
                self.dir.display(),
                free / (1024 * 1024),
                self.min_free_bytes / (1024 * 1024)
            )),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot read the data disk's free space");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn below_the_floor_new_work_is_refused_with_the_figures_and_above_it_is_not() {
        let free = Arc::new(AtomicU64::new(100 * 1024 * 1024));
        let seen = free.clone();
        let guard = DiskGuard::with_probe(
            Path::new("/data"),
            512,
            Arc::new(move |_| Ok(seen.load(Ordering::SeqCst))),
        );
        let reason = guard.check().unwrap_err();
        assert!(reason.contains("100 MiB free"), "{reason}");
        assert!(reason.contains("min_free_disk_mib = 512"), "{reason}");
        assert!(reason.contains("/data"), "{reason}");
        free.store(512 * 1024 * 1024, Ordering::SeqCst);
        assert_eq!(guard.check(), Ok(()));
    }

    #[test]
    fn an_unreadable_disk_is_not_called_full() {
        let guard = DiskGuard::with_probe(
            Path::new("/nowhere"),
            512,
            Arc::new(|_| Err(std::io::Error::other("no such filesystem"))),
        );
        assert_eq!(guard.check(), Ok(()));
    }

    #[test]
    fn the_real_probe_reads_this_machines_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(DiskGuard::new(dir.path(), 0).check().is_ok());
        assert!(
            DiskGuard::new(dir.path(), u64::MAX / (1024 * 1024))
                .check()
                .is_err()
        );
    }
}
