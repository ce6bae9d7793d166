//! The Agora node (`agorad`): identity, configuration, the libp2p network,
//! the market actor with its provider and requester roles, the sled store
//! and the HTTP API. `agorad` is a thin binary over this library.
//!
//! One ed25519 key in the data dir gives the libp2p peer id and the ledger
//! account.

pub mod api;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod disk;
pub mod doctor;
pub mod identity;
pub mod market;
pub mod metrics;
pub mod network;
pub mod provider;
pub mod requester;
pub mod runtime;
pub mod store;
pub mod views;
