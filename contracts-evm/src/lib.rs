//! The Agora ledger on an EVM chain.
//!
//! - `solidity/AgoraEscrow.sol`: the escrow contract. It checks both
//!   parties' ed25519 signatures over the exact lease, receipt and close bytes
//!   itself (`solidity/Ed25519.sol`), computes lease ids with BLAKE3 as
//!   `LeaseId::of_body` does, and applies the rules of
//!   `agora_protocol::ledger::rules`: no trusted relayer, no operator key.
//! - [`EvmLedger`]: implements [`agora_protocol::Ledger`] over JSON-RPC
//!   with alloy. It maps every revert to the typed `LedgerError`, waits for
//!   the confirmations configured, retries while the RPC is unreachable,
//!   and resends the same signed transaction rather than a new one, so an
//!   operation is submitted once however often it is retried.
//! - [`deploy`]: deploys the escrow (and, on test chains, a faucet token).
//! - [`anvil`]: starts a local anvil for tests and the testnet.
//!
//! It is a crate beside `contracts-mock` because alloy and the artifacts
//! are its own; the mock chain stays the default and builds without them.

pub mod anvil;
pub mod bindings;
pub mod deploy;
pub mod ledger;
mod revert;
mod send;

/// A chain address.
pub use alloy::primitives::Address;
/// The secp256k1 key a node pays gas with.
pub use alloy::signers::local::PrivateKeySigner as GasKey;
pub use deploy::{Deployment, deploy};
pub use ledger::{EvmConfig, EvmLedger};
