//! The swarm's event loop.

use std::collections::HashMap;
use std::time::Duration;

use agora_protocol::{Keypair, Offer, Order, Signed};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity, kad, mdns};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::behaviour::{Behaviour, BehaviourEvent, OFFERS_TOPIC, ORDERS_TOPIC};
use super::budget::OrderBudget;
use super::handle::{Command, NetworkHandle};
use super::lookup::{Lookups, Reply, Waiting};
use super::reject::{RejectReason, Rejection};
use super::{CHANNEL_CAPACITY, NetworkConfig, NetworkError, NetworkEvent, NetworkInfo};
use super::{Request, Response};
use crate::clock::now;
use crate::metrics::GossipMetrics;

/// Inbound requests waiting for the node's answer, at most.
const MAX_PENDING_INBOUND: usize = 1024;
/// How often the DHT is walked again.
const KAD_REFRESH: Duration = Duration::from_secs(30);

type Pending = BoxFuture<
    'static,
    (
        ResponseChannel<Response>,
        Result<Response, oneshot::error::RecvError>,
    ),
>;

fn build_swarm(
    key: &identity::Keypair,
    mdns: bool,
    max_connections: u32,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let builder = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| NetworkError::Config(format!("tcp: {e}")))?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    let swarm = builder
        .with_behaviour(|key| {
            Behaviour::new(key, mdns, max_connections)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| NetworkError::Config(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}

/// Builds the swarm, starts listening, dials the bootstrap peers and spawns
/// the actor. Returns once every listener has an address (or failed).
pub async fn spawn(
    key: &Keypair,
    config: NetworkConfig,
    cancel: CancellationToken,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>), NetworkError> {
    spawn_metered(key, config, GossipMetrics::default(), cancel).await
}

/// [`spawn`], counting gossip validation into `metrics`.
pub async fn spawn_metered(
    key: &Keypair,
    config: NetworkConfig,
    metrics: GossipMetrics,
    cancel: CancellationToken,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>), NetworkError> {
    let identity = identity::Keypair::ed25519_from_bytes(key.secret_seed())
        .map_err(|e| NetworkError::Config(format!("key: {e}")))?;
    let mut swarm = build_swarm(&identity, config.mdns, config.max_connections)?;
    let local = *swarm.local_peer_id();

    let mut listeners = HashMap::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetworkError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        listeners.insert(id, addr.clone());
    }
    let mut listen_addrs = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while !listeners.is_empty() {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    listeners.remove(&listener_id);
                    listen_addrs.push(address);
                }
                SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                    if let Some(addr) = listeners.remove(&listener_id) {
                        return Err(NetworkError::Listen {
                            addr: addr.to_string(),
                            reason: format!("{reason:?}"),
                        });
                    }
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    if let Some(addr) = listeners.remove(&listener_id) {
                        return Err(NetworkError::Listen { addr: addr.to_string(), reason: error.to_string() });
                    }
                }
                _ => {}
            },
            () = &mut deadline => {
                return Err(NetworkError::Listen {
                    addr: format!("{:?}", listeners.values().collect::<Vec<_>>()),
                    reason: "no address after 10 s".into(),
                });
            }
        }
    }

    for addr in &config.bootstrap {
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(NetworkError::Bootstrap(addr.to_string()));
        };
        if peer == local {
            continue;
        }
        swarm
            .behaviour_mut()
            .kademlia
            .add_address(&peer, addr.clone());
        if let Err(e) = swarm.dial(addr.clone()) {
            warn!(%addr, error = %e, "cannot dial bootstrap peer");
        }
    }

    let (command_tx, commands) = mpsc::channel(CHANNEL_CAPACITY);
    let (events, event_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let actor = Actor {
        swarm,
        local,
        listen_addrs,
        commands,
        events,
        cancel,
        pending_outbound: HashMap::new(),
        pending_inbound: FuturesUnordered::new(),
        offers_topic: IdentTopic::new(OFFERS_TOPIC).hash(),
        orders_topic: IdentTopic::new(ORDERS_TOPIC).hash(),
        accepted: 0,
        rejected: 0,
        metrics,
        bootstrapped: false,
        budget: OrderBudget::new(config.orders_per_peer_per_sec, config.order_burst_per_peer),
        lookups: Lookups::default(),
        target_peers: config.target_peers as usize,
    };
    tokio::spawn(actor.run());
    Ok((NetworkHandle::new(command_tx), event_rx))
}

struct Actor {
    swarm: Swarm<Behaviour>,
    local: PeerId,
    listen_addrs: Vec<Multiaddr>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    cancel: CancellationToken,
    pending_outbound: HashMap<OutboundRequestId, Outbound>,
    pending_inbound: FuturesUnordered<Pending>,
    offers_topic: TopicHash,
    orders_topic: TopicHash,
    accepted: u64,
    rejected: u64,
    metrics: GossipMetrics,
    bootstrapped: bool,
    /// What each peer may still deliver of orders.
    budget: OrderBudget,
    /// Peers being looked up before a request to them goes out again.
    lookups: Lookups,
    /// Peers dialed on learning of them, until this many are connected.
    target_peers: usize,
}

/// A request on its way, and (when it went to a peer this node was not
/// connected to) a copy to send once more after a lookup if the dial
/// fails.
struct Outbound {
    reply: Reply,
    retry: Option<Request>,
}

/// A gossip message that passed validation.
enum Valid {
    Offer(Signed<Offer>),
    Order(Signed<Order>),
}

impl Actor {
    async fn run(mut self) {
        let mut kad_refresh = tokio::time::interval(KAD_REFRESH);
        kad_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                Some((channel, answer)) = self.pending_inbound.next(), if !self.pending_inbound.is_empty() => {
                    // A dropped reply means the node refused to answer.
                    let response = answer.unwrap_or_else(|_| Response::Retry("the node could not answer; retry".into()));
                    let _ = self.swarm.behaviour_mut().direct.send_response(channel, response);
                }
                _ = kad_refresh.tick() => {
                    if self.swarm.connected_peers().next().is_some() {
                        let _ = self.swarm.behaviour_mut().kademlia.bootstrap();
                    }
                }
                _ = second.tick() => {
                    for (peer, score) in self.budget.decay(now().0) {
                        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
                    }
                }
            }
        }
        debug!("network actor stopped");
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(topic), data)
                    .map(|_| ())
                    .map_err(|e| NetworkError::Publish {
                        topic,
                        reason: e.to_string(),
                    });
                let _ = reply.send(result);
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let retry = (!self.swarm.is_connected(&peer)).then(|| request.clone());
                self.send_request(peer, request, reply, retry);
            }
            Command::Dial { addr } => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    debug!(%addr, error = %e, "dial failed");
                }
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::Info { reply } => {
                let local = self.local;
                let _ = reply.send(NetworkInfo {
                    peer_id: local,
                    listen_addrs: self
                        .listen_addrs
                        .iter()
                        .map(|a| a.clone().with(Protocol::P2p(local)))
                        .collect(),
                    connected_peers: self.swarm.connected_peers().count(),
                    mesh_peers: self
                        .swarm
                        .behaviour()
                        .gossipsub
                        .mesh_peers(&self.offers_topic)
                        .count(),
                    gossip_accepted: self.accepted,
                    gossip_rejected: self.rejected,
                });
            }
        }
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.handle_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Direct(event)) => self.handle_direct(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs.into_iter().take(16) {
                    self.swarm
                        .behaviour_mut()
                        .kademlia
                        .add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kademlia
                        .add_address(&peer, addr.clone());
                    let _ = self.swarm.dial(addr);
                }
            }
            // Connected to peers as they are learned of, up to the target;
            // past it, only to those the node talks to (a request to a
            // peer not connected dials it, after a lookup if need be).
            SwarmEvent::Behaviour(BehaviourEvent::Kademlia(kad::Event::RoutingUpdated {
                peer,
                ..
            })) if !self.swarm.is_connected(&peer)
                && self.swarm.connected_peers().count() < self.target_peers =>
            {
                let _ = self.swarm.dial(peer);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kademlia(
                kad::Event::OutboundQueryProgressed {
                    id, result, step, ..
                },
            )) => self.lookup_progressed(id, result, step.last),
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                debug!(peer = %peer_id, "connected");
                if !self.bootstrapped {
                    self.bootstrapped = self.swarm.behaviour_mut().kademlia.bootstrap().is_ok();
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen_addrs.push(address);
            }
            _ => {}
        }
    }

    fn handle_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                // The budget first: a flood costs no signature checks.
                let relayed = message.source != Some(propagation_source);
                if message.topic == self.orders_topic
                    && !self.budget.take(propagation_source, relayed, now().0)
                {
                    self.metrics.rate_limited();
                    let score = self.budget.score(&propagation_source);
                    debug!(peer = %propagation_source, score, "order past the peer's budget; ignored");
                    let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                    gossipsub.set_application_score(&propagation_source, score);
                    let _ = gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Ignore,
                    );
                    return;
                }
                let verdict = self.validate(&message);
                let offers = message.topic == self.offers_topic;
                let acceptance = match &verdict {
                    Ok(Some(_)) => {
                        self.accepted += 1;
                        self.metrics.accepted(offers);
                        MessageAcceptance::Accept
                    }
                    Ok(None) => {
                        self.metrics.expired(offers);
                        MessageAcceptance::Ignore
                    }
                    Err(rejection) => {
                        warn!(peer = %propagation_source, source = ?message.source, reason = %rejection, "rejected gossip");
                        self.rejected += 1;
                        self.metrics
                            .rejected(self.topic_label(&message.topic), rejection.reason);
                        MessageAcceptance::Reject
                    }
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                let event = match verdict {
                    Ok(Some(Valid::Offer(offer))) => NetworkEvent::Offer {
                        offer,
                        via: propagation_source,
                    },
                    Ok(Some(Valid::Order(order))) => NetworkEvent::Order {
                        order,
                        via: propagation_source,
                    },
                    _ => return,
                };
                if self.events.try_send(event).is_err() {
                    self.metrics.dropped();
                    warn!("node is not keeping up; dropped a gossip message");
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.offers_topic => {
                let _ = self
                    .events
                    .try_send(NetworkEvent::OffersSubscriber(peer_id));
            }
            _ => {}
        }
    }

    /// The `topic` label of a gossip topic.
    fn topic_label(&self, topic: &TopicHash) -> &'static str {
        if *topic == self.offers_topic {
            "offers"
        } else if *topic == self.orders_topic {
            "orders"
        } else {
            "unknown"
        }
    }

    /// `Ok(Some)`: valid; `Ok(None)`: harmless but useless (expired);
    /// `Err`: the sender misbehaved.
    fn validate(&self, message: &gossipsub::Message) -> Result<Option<Valid>, Rejection> {
        validate(&self.offers_topic, &self.orders_topic, message, now())
    }
}

/// A gossip message's verdict at `now`: `Ok(Some)` valid, `Ok(None)`
/// harmless but useless (expired), `Err` the sender misbehaved.
fn validate(
    offers_topic: &TopicHash,
    orders_topic: &TopicHash,
    message: &gossipsub::Message,
    now: agora_protocol::Timestamp,
) -> Result<Option<Valid>, Rejection> {
    let source = message
        .source
        .ok_or_else(|| Rejection::new(RejectReason::Unsigned, "unsigned gossip"))?;
    let forged = |what: &str, signer: PeerId| {
        Rejection::new(
            RejectReason::WrongPublisher,
            format!("{what} signed by {signer} published by {source}"),
        )
    };
    if message.topic == *offers_topic {
        let offer = Signed::<Offer>::decode(&message.data)?;
        if offer.signer().peer_id() != source {
            return Err(forged("offer", offer.signer().peer_id()));
        }
        if offer.message().expired(now) {
            return Ok(None);
        }
        Ok(Some(Valid::Offer(offer)))
    } else if message.topic == *orders_topic {
        let order = Signed::<Order>::decode(&message.data)?;
        if order.signer().peer_id() != source {
            return Err(forged("order", order.signer().peer_id()));
        }
        if order.message().expires_at <= now {
            return Ok(None);
        }
        Ok(Some(Valid::Order(order)))
    } else {
        Err(Rejection::new(
            RejectReason::UnknownTopic,
            format!("unknown topic {}", message.topic),
        ))
    }
}

impl Actor {
    fn handle_direct(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        if self.pending_inbound.len() >= MAX_PENDING_INBOUND {
                            warn!(%peer, "too many requests in flight; refusing");
                            let _ = self.swarm.behaviour_mut().direct.send_response(
                                channel,
                                Response::Retry("busy; retry later".into()),
                            );
                            return;
                        }
                        let (reply, answer) = oneshot::channel();
                        if self
                            .events
                            .try_send(NetworkEvent::Request {
                                peer,
                                request,
                                reply,
                            })
                            .is_err()
                        {
                            let _ = self.swarm.behaviour_mut().direct.send_response(
                                channel,
                                Response::Retry("busy; retry later".into()),
                            );
                            return;
                        }
                        self.pending_inbound
                            .push(Box::pin(async move { (channel, answer.await) }));
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(outbound) = self.pending_outbound.remove(&request_id) {
                            let _ = outbound.reply.send(Ok(response));
                        }
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let Some(outbound) = self.pending_outbound.remove(&request_id) else {
                    return;
                };
                match (outbound.retry, &error) {
                    // Not reachable at an address known here: look the peer
                    // up, then try once more.
                    (Some(request), request_response::OutboundFailure::DialFailure) => {
                        self.look_up(peer, request, outbound.reply);
                    }
                    _ => {
                        let _ = outbound.reply.send(Err(NetworkError::Request {
                            peer,
                            reason: error.to_string(),
                        }));
                    }
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                warn!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

impl Actor {
    /// Sends `request` to `peer`; `retry` is the copy to send once more
    /// after a lookup should the dial fail.
    fn send_request(
        &mut self,
        peer: PeerId,
        request: Request,
        reply: Reply,
        retry: Option<Request>,
    ) {
        let id = self
            .swarm
            .behaviour_mut()
            .direct
            .send_request(&peer, request);
        self.pending_outbound.insert(id, Outbound { reply, retry });
    }

    /// Parks `request` until `peer` is looked up in the DHT, starting the
    /// lookup unless one is under way; too many waiting fails it at once.
    fn look_up(&mut self, peer: PeerId, request: Request, reply: Reply) {
        match self.lookups.park(peer, Waiting { request, reply }) {
            Ok(true) => {
                debug!(%peer, "no address that answers; looking the peer up");
                let id = self.swarm.behaviour_mut().kademlia.get_closest_peers(peer);
                self.lookups.started(id, peer);
            }
            Ok(false) => {}
            Err(waiting) => {
                let _ = waiting.reply.send(Err(NetworkError::Request {
                    peer,
                    reason: format!(
                        "cannot dial it, and {} requests already wait for lookups",
                        self.lookups.waiting()
                    ),
                }));
            }
        }
    }

    /// A DHT query moved on: if it is a lookup of ours and found its peer
    /// (or ended), the requests waiting on it go out once more, to the
    /// addresses it found.
    fn lookup_progressed(&mut self, id: kad::QueryId, result: kad::QueryResult, last: bool) {
        let Some(target) = self.lookups.peer_of(&id) else {
            return;
        };
        let found: Vec<Multiaddr> = match &result {
            kad::QueryResult::GetClosestPeers(Ok(ok)) => ok
                .peers
                .iter()
                .filter(|p| p.peer_id == target)
                .flat_map(|p| p.addrs.iter().take(16).cloned())
                .collect(),
            _ => Vec::new(),
        };
        if found.is_empty() && !last {
            return;
        }
        if let Some(mut query) = self.swarm.behaviour_mut().kademlia.query_mut(&id) {
            query.finish();
        }
        for addr in &found {
            self.swarm
                .behaviour_mut()
                .kademlia
                .add_address(&target, addr.clone());
        }
        let Some((peer, waiting)) = self.lookups.finished(&id) else {
            return;
        };
        debug!(%peer, addresses = found.len(), requests = waiting.len(), "lookup done; sending again");
        for w in waiting {
            self.send_request(peer, w.request, w.reply, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use agora_protocol::{Keypair, Signed};

    use super::*;
    use crate::metrics::Metrics;
    use crate::metrics::snapshot::Snapshot;
    use crate::provider::role::tests::order;

    fn message(topic: &TopicHash, source: Option<PeerId>, data: Vec<u8>) -> gossipsub::Message {
        gossipsub::Message {
            source,
            data,
            sequence_number: Some(1),
            topic: topic.clone(),
        }
    }

    /// Validates like the actor and counts like it.
    fn count(metrics: &GossipMetrics, m: &gossipsub::Message) -> Option<RejectReason> {
        let offers = IdentTopic::new(OFFERS_TOPIC).hash();
        let orders = IdentTopic::new(ORDERS_TOPIC).hash();
        let topic = if m.topic == offers {
            "offers"
        } else {
            "orders"
        };
        match validate(&offers, &orders, m, agora_protocol::Timestamp(1_000_000)) {
            Ok(Some(_)) => {
                metrics.accepted(m.topic == offers);
                None
            }
            Ok(None) => None,
            Err(r) => {
                metrics.rejected(topic, r.reason);
                Some(r.reason)
            }
        }
    }

    #[test]
    fn each_rejected_message_is_counted_with_its_reason() {
        let metrics = Metrics::new();
        let orders = IdentTopic::new(ORDERS_TOPIC).hash();
        let offers = IdentTopic::new(OFFERS_TOPIC).hash();
        let requester = Keypair::from_seed(&[2; 32]);
        let signed = Signed::sign(order(1), &requester).unwrap().encode();
        let me = Some(requester.public().peer_id());
        let other = Some(Keypair::from_seed(&[7; 32]).public().peer_id());
        let g = &metrics.gossip;
        assert_eq!(count(g, &message(&orders, me, signed.clone())), None);
        assert_eq!(
            count(g, &message(&orders, other, signed.clone())),
            Some(RejectReason::WrongPublisher)
        );
        assert_eq!(
            count(g, &message(&orders, None, signed.clone())),
            Some(RejectReason::Unsigned)
        );
        assert_eq!(
            count(g, &message(&orders, me, b"garbage".to_vec())),
            Some(RejectReason::Undecodable)
        );
        // An order's envelope on the offers topic is of the wrong kind.
        assert_eq!(
            count(g, &message(&offers, me, signed.clone())),
            Some(RejectReason::WrongKind)
        );
        let mut flipped = signed;
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            count(g, &message(&orders, me, flipped)),
            Some(RejectReason::BadSignature)
        );
        let text = metrics.encode(&Snapshot::default()).unwrap();
        for line in [
            "agora_gossip_accepted_total{topic=\"orders\"} 1",
            "agora_gossip_accepted_total{topic=\"offers\"} 0",
            "agora_gossip_rejected_total{topic=\"orders\",reason=\"wrong_publisher\"} 1",
            "agora_gossip_rejected_total{topic=\"orders\",reason=\"unsigned\"} 1",
            "agora_gossip_rejected_total{topic=\"orders\",reason=\"undecodable\"} 1",
            "agora_gossip_rejected_total{topic=\"offers\",reason=\"wrong_kind\"} 1",
            "agora_gossip_rejected_total{topic=\"orders\",reason=\"bad_signature\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
