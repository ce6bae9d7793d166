//! The Agora node (`agorad`).
//!
//! Today it manages the node's identity: one ed25519 key in the data dir
//! gives the libp2p peer id and the ledger account. The provider and
//! requester roles arrive with the market (issue #3).

pub mod identity;
