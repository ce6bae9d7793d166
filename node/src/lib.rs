//! The Agora node (`agorad`).
//!
//! Today: the node's identity (one ed25519 key in the data dir gives the
//! libp2p peer id and the ledger account), its configuration, and the
//! provider's inventory (NVML or declared simulated GPUs) and pricing
//! policy. The swarm, the roles' actors and the API arrive with the market.

pub mod config;
pub mod identity;
pub mod provider;
pub mod requester;
