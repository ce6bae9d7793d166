//! Launches a whole Agora market on loopback: the mock chain and real
//! `agorad` processes, each with its own data directory, config and log.
//!
//! ```text
//! DIR/testnet.json            what runs: URLs, tokens, pids, logs
//! DIR/chain/                  the mock chain's store, and its log
//! DIR/provider-0/agorad.toml  generated config (simulated GPUs, pricing)
//! DIR/provider-0/log          stdout and stderr
//! DIR/provider-0/node.json    written by agorad when ready
//! ```
//!
//! Every port is 0, so two testnets never collide; nothing binds outside
//! 127.0.0.1 and mDNS stays off. [`Testnet`] is the handle (start, stop,
//! kill, restart, clients, down), [`hardware`] the simulated GPUs of each
//! provider, [`Manifest`] the `testnet.json` format, [`chaos`] a run that
//! kills and restarts processes at random while jobs run, and [`check`]
//! the invariants it (or anyone) checks on the chain and in every node.

mod binaries;
pub mod chaos;
pub mod check;
mod config;
mod error;
mod evm;
pub mod hardware;
mod manifest;
mod network;
mod process;

pub use binaries::{AGORAD, Binaries, MOCK_CHAIN};
pub use config::{
    Bootstrap, LedgerBackend, NodeSettings, RayProvider, TestnetConfig, provider_config,
    requester_config,
};
pub use error::TestnetError;
pub use manifest::{ChainEntry, EvmChain, MANIFEST_FILE, Manifest, NodeEntry, NodeReady};
pub use network::{CHAIN, Testnet};
pub use process::{log_tail, pid_alive};
