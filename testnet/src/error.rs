//! What can go wrong while launching, driving or stopping a testnet.

use std::path::PathBuf;

/// A testnet error; every text says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    /// A binary the testnet runs is not built.
    #[error(
        "cannot find `{binary}` (looked in {searched}); build it first with \
         `cargo build -p agora-node -p agora-contracts-mock` (add --release for a release \
         testnet), or pass --bin-dir DIR"
    )]
    MissingBinary {
        /// The file name looked for.
        binary: String,
        /// The directories searched.
        searched: String,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        /// The testnet name of the process ("chain", "provider-0").
        name: String,
        /// The program.
        program: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A process exited before it was ready.
    #[error("{name} exited ({status}) before it was ready; last lines of {log}:\n{tail}")]
    Died {
        /// The testnet name of the process.
        name: String,
        /// How it exited.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A process did not become ready in time.
    #[error(
        "{name} was not ready within {secs} s (waiting for {waiting_for}); last lines of {log}:\n{tail}"
    )]
    NotReady {
        /// The testnet name of the process.
        name: String,
        /// The deadline, seconds.
        secs: u64,
        /// What never appeared.
        waiting_for: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A JSON file the testnet reads is malformed.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The directory already holds a testnet that is running.
    #[error(
        "{dir} already holds a running testnet ({name}, pid {pid}, is alive); stop it with \
         `agora-testnet down --dir {dir}` or choose another --dir"
    )]
    AlreadyRunning {
        /// The testnet directory.
        dir: PathBuf,
        /// A process of it that is alive.
        name: String,
        /// Its pid.
        pid: u32,
    },
    /// The directory holds files that are not a testnet's.
    #[error(
        "{dir} is not empty and holds no testnet.json, so it is not a testnet directory; \
         choose a new or empty --dir"
    )]
    NotATestnetDir {
        /// The directory.
        dir: PathBuf,
    },
    /// A testnet needs at least one node.
    #[error("a testnet needs at least one node; pass --providers N and/or --requesters M")]
    NoNodes,
    /// No node has this name.
    #[error("no node named `{name}` in this testnet; its nodes are: {known}")]
    UnknownNode {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// The node is not running (stopped or killed), so it has no API to call.
    #[error("{name} is not running; restart it first")]
    NotRunning {
        /// The node.
        name: String,
    },
    /// A signal could not be sent.
    #[error("cannot send SIG{signal} to {name} (pid {pid}): {message}")]
    Signal {
        /// The testnet name of the process.
        name: String,
        /// The pid.
        pid: u32,
        /// TERM or KILL.
        signal: &'static str,
        /// What `kill` said.
        message: String,
    },
    /// Processes survived SIGKILL.
    #[error("still running after SIGKILL: {0}; check with `ps` and stop them by hand")]
    Survivors(String),
    /// The EVM chain (anvil, or the escrow on it) could not be set up.
    #[error("EVM chain: {0}")]
    Evm(String),
    /// The node's API client could not be built.
    #[error("API client for {name}: {message}")]
    Client {
        /// The node.
        name: String,
        /// What went wrong.
        message: String,
    },
}

impl TestnetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TestnetError::Io {
            path: path.into(),
            source,
        }
    }
}
