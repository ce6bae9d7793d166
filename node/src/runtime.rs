//! Runtimes: what actually runs a leased job.
//!
//! The provider hands a [`RunSpec`] to a [`Runtime`] and gets back, while
//! the job runs, [`RunEvent`]s (started, output), and at its end an
//! [`Outcome`] with the job's exit status and its hashed outputs. The
//! default runtime is [`process::ProcessRuntime`], which runs the command
//! inside bubblewrap; [`ray::RayRuntime`] runs it as a job on a Ray
//! cluster.

use std::path::PathBuf;
use std::time::Duration;

use agora_protocol::SandboxLimits;
use agora_protocol::run::SandboxLimit;
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod process;
pub mod ray;

/// Everything a runtime needs to run one job.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The lease id (hex); names the job to the runtime and its logs.
    pub lease_id: String,
    /// argv; never empty.
    pub command: Vec<String>,
    /// Environment from the requester (names already validated).
    pub env: Vec<(String, String)>,
    /// Input files: plain relative paths (validated) and contents (hashes
    /// already checked).
    pub inputs: Vec<(String, Vec<u8>)>,
    /// Indices of the leased GPUs on this machine (`CUDA_VISIBLE_DEVICES`).
    pub gpu_indices: Vec<u32>,
    /// UUIDs of the leased GPUs (`NVIDIA_VISIBLE_DEVICES`); empty when the
    /// GPUs are simulated.
    pub gpu_uuids: Vec<String>,
    /// The job asked for network access and the provider allows it.
    pub network: bool,
    /// Wall-clock limit: the lease's remaining time.
    pub time_limit: Duration,
    /// A fresh directory owned by this job (the runtime creates it and
    /// everything under it). Outputs are collected from `work_dir/out`.
    pub work_dir: PathBuf,
}

/// Which stream an output chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Something that happened while a job ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// The job's process started.
    Started,
    /// A chunk of output: one or more whole lines where the job wrote
    /// lines, at most [`MAX_CHUNK`] bytes.
    Output {
        /// Which stream.
        stream: Stream,
        /// The bytes.
        data: Vec<u8>,
    },
}

/// Largest output chunk a runtime emits.
pub const MAX_CHUNK: usize = 8 * 1024;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited by itself with this status.
    Code(i32),
    /// It was killed by this signal (not by us).
    Signal(i32),
    /// It ran into the wall-clock limit and was killed.
    TimeLimit,
    /// It was cancelled (`cancel` fired) and was killed.
    Cancelled,
    /// It ran into one of the sandbox's limits (`Outcome::reason` has
    /// the figures).
    Limit(SandboxLimit),
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Path relative to the output dir, `/`-separated, plain (no `..`).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// blake3 of the contents.
    pub blake3: [u8; 32],
}

/// What a finished job left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// Regular files under the output dir, sorted by path.
    pub outputs: Vec<OutputFile>,
    /// The directory the outputs are in (on the provider's disk).
    pub output_dir: PathBuf,
    /// Set when outputs were left out (too many, too large, not regular
    /// files): what and why.
    pub outputs_note: Option<String>,
    /// Why it ended in the runtime's own words, when they say more than
    /// the exit (Ray's message for a failed job).
    pub reason: Option<String>,
}

/// Why a runtime could not run a job at all.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime itself is unusable (sandbox missing, cluster down).
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// The job cannot run as given (e.g. its program does not exist).
    #[error("job cannot start: {0}")]
    Start(String),
    /// A local I/O failure (work dir, outputs).
    #[error("runtime I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Creates `spec.work_dir` and its `out/`, and writes the inputs (plain
/// relative paths only); every runtime starts a job this way. Returns the
/// canonical work dir.
pub(crate) async fn prepare_work_dir(spec: &RunSpec) -> Result<PathBuf, RuntimeError> {
    tokio::fs::create_dir_all(&spec.work_dir).await?;
    let work_dir = tokio::fs::canonicalize(&spec.work_dir).await?;
    tokio::fs::create_dir_all(work_dir.join("out")).await?;
    for (path, bytes) in &spec.inputs {
        if !process::sandbox::is_plain_relative(path) {
            return Err(RuntimeError::Start(format!(
                "input path {path:?} is not a plain relative path"
            )));
        }
        let dest = work_dir.join(path);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&dest, bytes).await?;
    }
    Ok(work_dir)
}

/// Runs jobs.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name as offers and orders spell it ("process", "ray").
    fn name(&self) -> &str;

    /// Whether jobs can run now; `Err` says why not, for a person.
    async fn health(&self) -> Result<(), RuntimeError>;

    /// What bounds each job it runs, as offers and leases state it
    /// (nothing stated by default: the runtime sets no limits of ours).
    fn limits(&self) -> SandboxLimits {
        SandboxLimits::default()
    }

    /// Runs one job to its end: until it exits, `spec.time_limit` passes,
    /// or `cancel` fires — in the last two cases the whole process tree is
    /// killed before this returns. Events go to `events` in order; a full
    /// channel slows the job's output down, it never loses a chunk.
    async fn run(
        &self,
        spec: RunSpec,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> Result<Outcome, RuntimeError>;
}
