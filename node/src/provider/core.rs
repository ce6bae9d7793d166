//! The provider core: the role's decisions as pure logic — answer an
//! order (bid, decline or nothing), countersign a lease proposal, sign the
//! offers to publish and say when to publish them. The router carries the
//! answers out (send, persist, flush, publish). No tokio, no sockets, no
//! sled here; signing is deterministic ed25519.

use agora_protocol::{
    Amount, Keypair, Lease, LeaseId, LeaseTerms, Offer, Order, OrderId, PublicKey, Signed,
    Timestamp,
};
use libp2p::PeerId;
use tracing::{info, warn};

use super::Decision;
use super::role::{ProviderRole, ProviderSnapshot};
use crate::network::Request;

/// How long a job that arrived may take to be admitted (the escrow is
/// checked on the ledger) past its lease's start deadline.
const ADMISSION_GRACE_MS: u64 = 30_000;

/// What to do about an order.
#[derive(Debug)]
pub struct OrderAnswer {
    /// The requester's peer.
    pub to: PeerId,
    /// The signed bid or decline.
    pub request: Request,
    /// It is a bid: GPUs are held for it, so the role's state must be
    /// durable before it goes out, and offers change.
    pub is_bid: bool,
}

/// What comes of an order.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "made once per order and taken apart at once; boxing the answer buys nothing"
)]
pub enum OrderOutcome {
    /// Send this.
    Answer(OrderAnswer),
    /// Read this requester's balance on the ledger, give it to
    /// [`Provider::set_balance`], then hand the order in again.
    NeedsBalance(PublicKey),
    /// Send nothing.
    Nothing,
}

/// The provider side of a node, deciding.
#[derive(Debug)]
pub struct Provider {
    role: ProviderRole,
    key: Keypair,
    last_publish: Option<Timestamp>,
    /// At most one republish for new subscribers per this many ms.
    subscriber_gap_ms: u64,
}

impl Provider {
    /// The core over a role; `refresh_secs` is the offer refresh.
    pub fn new(role: ProviderRole, key: Keypair, refresh_secs: u64) -> Self {
        Self {
            role,
            key,
            last_publish: None,
            subscriber_gap_ms: (refresh_secs * 1000 / 2).max(1000),
        }
    }

    /// The role (inventory, leases, counters).
    pub fn role(&self) -> &ProviderRole {
        &self.role
    }

    /// What the store keeps.
    pub fn snapshot(&self) -> ProviderSnapshot {
        self.role.snapshot()
    }

    /// An order seen on gossip: the signed answer to send, a balance to
    /// read first, or nothing.
    pub fn on_order(&mut self, order: &Signed<Order>, now: Timestamp) -> OrderOutcome {
        let requester = order.message().requester;
        if requester == self.key.public() {
            return OrderOutcome::Nothing;
        }
        let Some(decision) = self.role.on_order(order.message(), now) else {
            return OrderOutcome::Nothing;
        };
        let request = match decision {
            Decision::Bid(bid) => match Signed::sign(bid, &self.key) {
                Ok(bid) => Request::Bid(bid),
                Err(e) => {
                    warn!(error = %e, "cannot sign a bid");
                    return OrderOutcome::Nothing;
                }
            },
            Decision::Decline(decline) => match Signed::sign(decline, &self.key) {
                Ok(decline) => Request::Decline(decline),
                Err(e) => {
                    warn!(error = %e, "cannot sign a decline");
                    return OrderOutcome::Nothing;
                }
            },
            Decision::NeedsBalance(requester) => return OrderOutcome::NeedsBalance(requester),
            Decision::Ignore(_) => return OrderOutcome::Nothing,
        };
        let is_bid = matches!(request, Request::Bid(_));
        OrderOutcome::Answer(OrderAnswer {
            to: requester.peer_id(),
            request,
            is_bid,
        })
    }

    /// A requester's balance as read from the ledger at `now`, or why it
    /// could not be read.
    pub fn set_balance(
        &mut self,
        requester: PublicKey,
        balance: Result<Amount, String>,
        now: Timestamp,
    ) {
        self.role.set_balance(requester, balance, now);
    }

    /// A bid or decline could not be delivered: a bid's hold is released
    /// at once (nobody will lease it); whether GPUs were freed.
    pub fn undelivered(&mut self, order: &OrderId, was_bid: bool) -> bool {
        was_bid && self.role.release(order).is_some()
    }

    /// Whether a lease proposal must wait for its requester's balance to be
    /// read from the ledger (give it to [`Provider::set_balance`], and have
    /// the requester ask again).
    pub fn proposal_needs_balance(&self, terms: &Signed<LeaseTerms>, now: Timestamp) -> bool {
        self.role.unavailable().is_none() && self.role.proposal_needs_balance(terms, now)
    }

    /// A lease proposal from `peer`: the countersigned lease, or why not.
    pub fn countersign(
        &mut self,
        peer: PeerId,
        terms: &Signed<LeaseTerms>,
        now: Timestamp,
    ) -> Result<Lease, String> {
        if terms.signer().peer_id() != peer {
            return Err("a lease proposal must come from its requester".into());
        }
        if let Err(reason) = self.role.on_lease_proposal(terms, now) {
            info!(order = %terms.message().order_id, %reason, "lease proposal refused");
            return Err(reason);
        }
        let lease =
            Lease::countersign(terms, &self.key).map_err(|e| format!("cannot countersign: {e}"))?;
        self.role.add_lease(lease.clone());
        info!(lease = %lease.id(), order = %terms.message().order_id, "lease countersigned");
        Ok(lease)
    }

    /// The offers to publish now, signed.
    pub fn offers(&mut self, now: Timestamp) -> Vec<Signed<Offer>> {
        self.last_publish = Some(now);
        self.role
            .offers(now)
            .into_iter()
            .filter_map(|offer| match Signed::sign(offer, &self.key) {
                Ok(signed) => Some(signed),
                Err(e) => {
                    warn!(error = %e, "cannot sign offer");
                    None
                }
            })
            .collect()
    }

    /// A new offers subscriber: republish, unless that was done within
    /// half a refresh (in a large mesh peers resubscribe all the time, and
    /// a republish per subscriber was O(N²) gossip; docs/performance.md).
    pub fn republish_for_subscriber(&self, now: Timestamp) -> bool {
        self.last_publish
            .is_none_or(|at| now.ms_since(at) >= self.subscriber_gap_ms)
    }

    /// The 1 s tick: ended holds expire, so do leases whose run did not
    /// start in time (`started`: the leases the executor runs), and the
    /// runtime's health is taken in (`Some` when it changed); whether
    /// offers changed.
    pub fn tick(
        &mut self,
        now: Timestamp,
        health: Option<Option<String>>,
        started: &dyn Fn(&LeaseId) -> bool,
    ) -> bool {
        let health_changed = health.is_some_and(|state| self.role.set_unavailable(state));
        health_changed | self.role.expire(now, started)
    }

    /// A job for `lease` arrived from its requester: `Err` when its GPUs
    /// were given back for not starting in time; otherwise it has a little
    /// longer to be admitted.
    pub fn job_arrived(&mut self, lease: &LeaseId, now: Timestamp) -> Result<(), String> {
        if !self.role.may_start(lease) {
            return Err(format!(
                "lease {lease} did not start in time after it was countersigned (no escrow on \
                 the ledger, or no job), so its GPUs were given back"
            ));
        }
        self.role.starting(lease, now, ADMISSION_GRACE_MS);
        Ok(())
    }

    /// A run ended: its GPUs are free before the lease's end; whether
    /// offers changed.
    pub fn run_ended(&mut self, order: &OrderId) -> bool {
        self.role.release(order).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::role::tests::{order, role};

    const NOW: Timestamp = Timestamp(1_000_000);

    /// The role's key (seed 1) decides.
    fn provider() -> Provider {
        Provider::new(role(), Keypair::from_seed(&[1; 32]), 20)
    }

    #[test]
    fn subscribers_cause_at_most_one_republish_per_half_refresh() {
        let mut p = provider();
        assert!(p.republish_for_subscriber(NOW));
        assert!(!p.offers(NOW).is_empty());
        assert!(!p.republish_for_subscriber(NOW.plus_ms(9_999)));
        assert!(p.republish_for_subscriber(NOW.plus_ms(10_000)));
    }

    #[test]
    fn an_order_gets_a_signed_bid_to_its_requester_and_own_orders_none() {
        let mut p = provider();
        let requester = Keypair::from_seed(&[2; 32]);
        let signed = Signed::sign(order(1), &requester).unwrap();
        let OrderOutcome::Answer(answer) = p.on_order(&signed, NOW) else {
            panic!("expected an answer");
        };
        assert!(answer.is_bid);
        assert_eq!(answer.to, requester.public().peer_id());
        let Request::Bid(bid) = answer.request else {
            panic!("expected a bid");
        };
        assert_eq!(bid.signer(), &Keypair::from_seed(&[1; 32]).public());
        // An undelivered bid frees its hold.
        assert!(p.undelivered(&bid.message().order_id, true));
        // Its own order (signed with its own key) gets no answer.
        let own_key = Keypair::from_seed(&[1; 32]);
        let mut own = order(2);
        own.requester = own_key.public();
        assert!(matches!(
            p.on_order(&Signed::sign(own, &own_key).unwrap(), NOW),
            OrderOutcome::Nothing
        ));
    }
}
