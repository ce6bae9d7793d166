//! Integration tests of agora-protocol's public API.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod hostile_input;
