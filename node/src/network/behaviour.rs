//! The composed libp2p behaviour: gossipsub for offers and orders, Kademlia
//! for discovery, identify and ping for liveness, the direct
//! request-response protocol, mDNS only when a LAN user asks for it, and
//! caps on connections.

use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::kad::{self, store::MemoryStore};
use libp2p::swarm::{NetworkBehaviour, behaviour::toggle::Toggle};
use libp2p::{
    PeerId, StreamProtocol, connection_limits, identify, identity, mdns, ping, request_response,
};

use super::NetworkError;
use super::codec::{DirectCodec, PROTOCOL};

/// Gossip topic for signed offers.
pub const OFFERS_TOPIC: &str = "agora/1/offers";
/// Gossip topic for signed orders.
pub const ORDERS_TOPIC: &str = "agora/1/orders";
/// Largest gossip message: a signed offer or order is a few hundred bytes.
pub const MAX_GOSSIP_MESSAGE: usize = 64 * 1024;

const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/kad/1.0.0");
const IDENTIFY_PROTOCOL: &str = "/agora/id/1.0.0";

/// Everything the swarm runs.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Offers and orders.
    pub(crate) gossipsub: gossipsub::Behaviour,
    /// Peer discovery beyond the bootstrap peers.
    pub(crate) kademlia: kad::Behaviour<MemoryStore>,
    /// Exchanges listen addresses and protocols.
    pub(crate) identify: identify::Behaviour,
    /// Liveness.
    pub(crate) ping: ping::Behaviour,
    /// Bids, declines, lease proposals.
    pub(crate) direct: request_response::Behaviour<DirectCodec>,
    /// LAN discovery; off unless asked for.
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    /// Caps on connections, so they do not grow with the network.
    pub(crate) limits: connection_limits::Behaviour,
}

/// The scoring that penalises senders of invalid messages and floods of
/// orders: a few rejected messages, or enough orders past the peer's
/// budget, take a peer below the graylist threshold, after which its
/// gossip is ignored.
fn peer_score() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let mut params = gossipsub::PeerScoreParams {
        // Every testnet node shares 127.0.0.1; co-location is not misconduct here.
        ip_colocation_factor_weight: 0.0,
        // The application score is minus a peer's orders past its budget
        // (network::budget), decaying: about 100 past it at once, or 10 a
        // second sustained, reach the graylist.
        app_specific_weight: 1.0,
        ..Default::default()
    };
    for topic in [OFFERS_TOPIC, ORDERS_TOPIC] {
        let topic_params = gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            // Small rewards for being in the mesh and delivering first, at
            // most +11 a topic (the defaults give +3600 for an hour in the
            // mesh, which would outweigh every penalty below).
            time_in_mesh_weight: 0.01,
            time_in_mesh_quantum: Duration::from_secs(1),
            time_in_mesh_cap: 600.0,
            first_message_deliveries_weight: 0.05,
            first_message_deliveries_cap: 100.0,
            // A quiet market is not misconduct: no penalty for few deliveries.
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            // P4 is squared: 4 invalid messages give -160, below the
            // graylist (-80) whatever the rewards above.
            invalid_message_deliveries_weight: -10.0,
            invalid_message_deliveries_decay: 0.9,
            ..Default::default()
        };
        params
            .topics
            .insert(IdentTopic::new(topic).hash(), topic_params);
    }
    (params, gossipsub::PeerScoreThresholds::default())
}

impl Behaviour {
    /// Builds the behaviour for `key`.
    pub(crate) fn new(
        key: &identity::Keypair,
        mdns_enabled: bool,
        max_connections: u32,
    ) -> Result<Self, NetworkError> {
        let peer_id = PeerId::from(key.public());
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(MAX_GOSSIP_MESSAGE)
            .heartbeat_interval(Duration::from_millis(500))
            .message_id_fn(|message: &gossipsub::Message| {
                gossipsub::MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
            })
            .build()
            .map_err(|e| NetworkError::Config(format!("gossipsub: {e}")))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)
                .map_err(|e| NetworkError::Config(format!("gossipsub: {e}")))?;
        let (params, thresholds) = peer_score();
        gossipsub
            .with_peer_score(params, thresholds)
            .map_err(|e| NetworkError::Config(format!("gossipsub peer score: {e}")))?;
        for topic in [OFFERS_TOPIC, ORDERS_TOPIC] {
            gossipsub
                .subscribe(&IdentTopic::new(topic))
                .map_err(|e| NetworkError::Config(format!("subscribe {topic}: {e}")))?;
        }

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(Duration::from_secs(30));
        let mut kademlia =
            kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
        // Loopback and LAN addresses are never "confirmed external", so say
        // it outright: every node answers DHT queries.
        kademlia.set_mode(Some(kad::Mode::Server));

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_agent_version(format!("agorad/{}", env!("CARGO_PKG_VERSION"))),
        );
        let direct = request_response::Behaviour::new(
            [(PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(10))
                .with_max_concurrent_streams(256),
        );
        let mdns = if mdns_enabled {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| NetworkError::Config(format!("mdns: {e}")))?,
            )
        } else {
            None
        };
        Ok(Self {
            gossipsub,
            kademlia,
            identify,
            ping: ping::Behaviour::default(),
            direct,
            mdns: mdns.into(),
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(max_connections))
                    .with_max_established_incoming(Some(max_connections))
                    .with_max_pending_incoming(Some(max_connections.div_ceil(2)))
                    .with_max_established_per_peer(Some(2)),
            ),
        })
    }
}
