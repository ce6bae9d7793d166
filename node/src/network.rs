//! The libp2p side of a node: one actor owns the swarm; a cloneable
//! [`NetworkHandle`] sends it commands over a bounded channel; validated
//! gossip and inbound requests come out as [`NetworkEvent`]s on another
//! bounded channel.
//!
//! Gossip is checked here, before gossipsub forwards anything: the bytes must
//! decode as a signed envelope of the topic's kind, the signature must verify,
//! the signer must be the party the message names and the peer that
//! published it. Anything else is rejected, which lowers the sender's
//! gossipsub score until its messages are ignored.

mod actor;
mod behaviour;
pub mod budget;
pub mod codec;
mod direct;
mod handle;
mod lookup;
pub mod reject;
pub mod wire;

use agora_protocol::{Offer, Order, Signed};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

pub use actor::{spawn, spawn_metered};
pub use behaviour::{MAX_GOSSIP_MESSAGE, OFFERS_TOPIC, ORDERS_TOPIC};
pub use codec::{Request, Response};
pub use handle::NetworkHandle;

/// Capacity of the command and event channels.
pub const CHANNEL_CAPACITY: usize = 1024;

/// How the swarm is set up.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through; each ends in `/p2p/PEER_ID`.
    pub bootstrap: Vec<Multiaddr>,
    /// LAN discovery by multicast. Off unless a LAN user turns it on.
    pub mdns: bool,
    /// Orders each peer may deliver a second, sustained…
    pub orders_per_peer_per_sec: u32,
    /// …and in a burst. Past the budget an order is ignored and the peer
    /// scored down ([`budget`]).
    pub order_burst_per_peer: u32,
    /// Established connections at most (incoming ones are refused past
    /// it; two per peer at most).
    pub max_connections: u32,
    /// The node dials peers it learns of until it has this many
    /// connections; past that it connects only to peers it has to talk
    /// to (the gossip mesh needs 6 to 12).
    pub target_peers: u32,
}

impl NetworkConfig {
    /// Orders a peer may deliver a second, by default.
    pub const ORDERS_PER_PEER_PER_SEC: u32 = 200;
    /// The burst of orders a peer may deliver, by default: a requester
    /// that submits a thousand jobs at once is not flooding.
    pub const ORDER_BURST_PER_PEER: u32 = 2000;

    /// Established connections at most, by default.
    pub const MAX_CONNECTIONS: u32 = 64;
    /// Connections the node dials on its own, by default.
    pub const TARGET_PEERS: u32 = 12;

    /// Listening on `listen`, joining through `bootstrap`, mDNS off, the
    /// default order budget and connection bounds.
    pub fn new(listen: Vec<Multiaddr>, bootstrap: Vec<Multiaddr>) -> Self {
        Self {
            listen,
            bootstrap,
            mdns: false,
            orders_per_peer_per_sec: Self::ORDERS_PER_PEER_PER_SEC,
            order_burst_per_peer: Self::ORDER_BURST_PER_PEER,
            max_connections: Self::MAX_CONNECTIONS,
            target_peers: Self::TARGET_PEERS,
        }
    }
}

/// Why the network cannot do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetworkError {
    /// A component could not be built.
    #[error("network setup: {0}")]
    Config(String),
    /// An address cannot be listened on.
    #[error("cannot listen on {addr}: {reason}; pass --listen to choose another")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A bootstrap address lacks its `/p2p/PEER_ID`.
    #[error("bootstrap address {0} must end in /p2p/PEER_ID")]
    Bootstrap(String),
    /// Publishing failed (for example: no peers subscribed yet).
    #[error("publish on {topic}: {reason}")]
    Publish {
        /// The topic.
        topic: &'static str,
        /// Why.
        reason: String,
    },
    /// A direct request failed.
    #[error("request to {peer}: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The network actor has stopped.
    #[error("the network has shut down")]
    Closed,
}

/// What the network delivers to the node.
#[derive(Debug)]
pub enum NetworkEvent {
    /// A verified offer from gossip.
    Offer {
        /// The offer.
        offer: Signed<Offer>,
        /// The peer that forwarded it.
        via: PeerId,
    },
    /// A verified order from gossip.
    Order {
        /// The order.
        order: Signed<Order>,
        /// The peer that forwarded it.
        via: PeerId,
    },
    /// A verified direct request; answer through `reply`. Dropping `reply`
    /// answers with a failure.
    Request {
        /// Who asked.
        peer: PeerId,
        /// What.
        request: Request,
        /// Where the answer goes.
        reply: oneshot::Sender<Response>,
    },
    /// A peer joined the offers topic: a good moment to republish ours.
    OffersSubscriber(PeerId),
}

/// A snapshot for the API.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// This node.
    pub peer_id: PeerId,
    /// Listen addresses, each ending in `/p2p/PEER_ID`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Connected peers.
    pub connected_peers: usize,
    /// Peers in the offers topic's mesh.
    pub mesh_peers: usize,
    /// Gossip messages accepted.
    pub gossip_accepted: u64,
    /// Gossip messages rejected.
    pub gossip_rejected: u64,
}
