//! The process runtime: runs a job's command inside bubblewrap.
//!
//! (Being written: see issue 4.)

use std::path::PathBuf;

use crate::config::RuntimeSection;

/// Runs jobs as sandboxed processes.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    /// Settings.
    pub settings: RuntimeSection,
    /// Directories the job must never see (the node's data dir, key file).
    pub hidden: Vec<PathBuf>,
}
