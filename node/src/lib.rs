//! The Agora node: identity, configuration, the libp2p network, the provider
//! and requester roles, the sled store and the HTTP API. `agorad` is a thin
//! binary over this library.

pub mod config;
pub mod identity;
pub mod network;
pub mod provider;
