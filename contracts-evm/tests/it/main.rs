//! The EVM ledger against a real anvil: the contract's cryptography
//! against Rust's, the ledger conformance suite, and the artifacts against
//! a fresh solcjs build.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod artifacts;
mod cli;
mod conformance;
mod crypto;
mod ledger;
mod support;
