//! Integration tests of the mock chain: the ledger conformance suite on
//! both backends, the HTTP API's errors, reopening, and kill -9 durability.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod conformance;
mod durability;
mod http_api;
mod support;
