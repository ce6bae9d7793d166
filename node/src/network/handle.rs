//! The cloneable front of the network actor.

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::{NetworkError, NetworkInfo, Request, Response};

// Moved once per message, never stored in bulk: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Command {
    Publish {
        topic: &'static str,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, NetworkError>>,
    },
    Dial {
        addr: Multiaddr,
    },
    Info {
        reply: oneshot::Sender<NetworkInfo>,
    },
    PeerScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
}

/// Sends commands to the network actor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Publish { .. } => "Publish",
            Command::Request { .. } => "Request",
            Command::Dial { .. } => "Dial",
            Command::Info { .. } => "Info",
            Command::PeerScore { .. } => "PeerScore",
        })
    }
}

impl NetworkHandle {
    pub(super) fn new(commands: mpsc::Sender<Command>) -> Self {
        Self { commands }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NetworkError::Closed)?;
        answer.await.map_err(|_| NetworkError::Closed)
    }

    /// Publishes raw bytes on a topic (normally a signed envelope).
    pub async fn publish(&self, topic: &'static str, data: Vec<u8>) -> Result<(), NetworkError> {
        self.call(|reply| Command::Publish { topic, data, reply })
            .await?
    }

    /// Sends a direct request and waits for the answer (bounded by the
    /// protocol's request timeout).
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, NetworkError> {
        self.call(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetworkError> {
        self.commands
            .send(Command::Dial { addr })
            .await
            .map_err(|_| NetworkError::Closed)
    }

    /// A snapshot of the swarm.
    pub async fn info(&self) -> Result<NetworkInfo, NetworkError> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// `peer`'s gossipsub score here (`None` for a peer never scored).
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NetworkError> {
        self.call(|reply| Command::PeerScore { peer, reply }).await
    }
}
