//! Integration tests of the client crate: `NodeClient` and the `agora` binary
//! against a fake node on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod fake_node;
mod http;
mod run;
