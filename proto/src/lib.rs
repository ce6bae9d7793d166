//! The Agora wire schema.
//!
//! The `.proto` files under `proto/` are the source of truth; this crate
//! exposes the prost types generated from them at build time (protox, so no
//! system `protoc` is needed). Validation lives in `agora-protocol`: nothing
//! here trusts a field.

/// Version 1 of the wire protocol.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::doc_markdown,
    clippy::enum_variant_names
)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/agora.v1.rs"));
}

pub use prost::{self, Message};
