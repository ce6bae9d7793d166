//! Finding a peer before giving up on it: a direct request to a peer this
//! node is not connected to, whose dial fails (no address known, or none
//! that answers), waits for a Kademlia lookup of that peer
//! (`get_closest_peers`), then goes out once more with what the lookup
//! found. Two nodes that share only a bootstrap node so reach each other
//! at once, not at the next routing-table refresh.
//!
//! Bounded: at most [`MAX_WAITING`] requests wait on lookups at once;
//! past that a request fails at once with its dial error.

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::kad::QueryId;
use tokio::sync::oneshot;

use super::{NetworkError, Request, Response};

/// Requests waiting on lookups, at most.
pub(super) const MAX_WAITING: usize = 256;

/// Where a request's answer goes.
pub(super) type Reply = oneshot::Sender<Result<Response, NetworkError>>;

/// A request waiting for its peer to be found.
pub(super) struct Waiting {
    pub(super) request: Request,
    pub(super) reply: Reply,
}

/// The lookups under way (by query id, `Q`) and the requests waiting on
/// them.
pub(super) struct Lookups<Q = QueryId> {
    by_peer: HashMap<PeerId, Vec<Waiting>>,
    queries: HashMap<Q, PeerId>,
    waiting: usize,
}

impl<Q> Default for Lookups<Q> {
    fn default() -> Self {
        Self {
            by_peer: HashMap::new(),
            queries: HashMap::new(),
            waiting: 0,
        }
    }
}

impl<Q: std::hash::Hash + Eq> Lookups<Q> {
    /// Parks `waiting` until `peer` is looked up: `Ok(true)` when a lookup
    /// must be started for it, `Ok(false)` when one is under way, `Err`
    /// (the request back) when too many wait already.
    pub(super) fn park(&mut self, peer: PeerId, waiting: Waiting) -> Result<bool, Box<Waiting>> {
        if self.waiting >= MAX_WAITING {
            return Err(Box::new(waiting));
        }
        self.waiting += 1;
        let queue = self.by_peer.entry(peer).or_default();
        queue.push(waiting);
        Ok(queue.len() == 1)
    }

    /// The lookup `id` for `peer` started.
    pub(super) fn started(&mut self, id: Q, peer: PeerId) {
        self.queries.insert(id, peer);
    }

    /// Which peer lookup `id` is for, if it is one of ours.
    pub(super) fn peer_of(&self, id: &Q) -> Option<PeerId> {
        self.queries.get(id).copied()
    }

    /// Lookup `id` is done (its peer found, or the lookup over): the peer
    /// and the requests that waited on it.
    pub(super) fn finished(&mut self, id: &Q) -> Option<(PeerId, Vec<Waiting>)> {
        let peer = self.queries.remove(id)?;
        let waiting = self.by_peer.remove(&peer).unwrap_or_default();
        self.waiting = self.waiting.saturating_sub(waiting.len());
        Some((peer, waiting))
    }

    /// Requests waiting now.
    pub(super) fn waiting(&self) -> usize {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use agora_protocol::{Decline, DeclineReason, Keypair, OrderId, Signed, Timestamp};

    use super::*;

    fn waiting() -> Waiting {
        let key = Keypair::from_seed(&[1; 32]);
        let decline = Decline {
            order_id: OrderId([1; 32]),
            provider: key.public(),
            reason: DeclineReason::NoCapacity,
            detail: String::new(),
            created_at: Timestamp(1),
        };
        let (reply, _) = oneshot::channel();
        Waiting {
            request: Request::Decline(Signed::sign(decline, &key).unwrap()),
            reply,
        }
    }

    #[test]
    fn requests_for_one_peer_share_a_lookup_and_the_waiting_are_bounded() {
        let mut lookups: Lookups<u64> = Lookups::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        assert!(matches!(lookups.park(a, waiting()), Ok(true)));
        assert!(matches!(lookups.park(a, waiting()), Ok(false)));
        assert!(matches!(lookups.park(b, waiting()), Ok(true)));
        let query = 7;
        lookups.started(query, a);
        assert_eq!(lookups.peer_of(&query), Some(a));
        let (peer, done) = lookups.finished(&query).unwrap();
        assert_eq!((peer, done.len()), (a, 2));
        assert!(lookups.finished(&query).is_none());
        assert_eq!(lookups.waiting(), 1);
        for _ in 1..MAX_WAITING {
            assert!(lookups.park(b, waiting()).is_ok());
        }
        assert!(lookups.park(a, waiting()).is_err(), "full");
    }
}
