//! The provider role as the market actor runs it: the bid engine plus the
//! inventory, the leases signed and the counters, with a snapshot for the
//! store.

use std::collections::BTreeMap;

use agora_client::api::ReservationView;
use agora_protocol::{Lease, LeaseId, LeaseTerms, Offer, Order, Signed, Timestamp};
use serde::{Deserialize, Serialize};

use super::bidder::{Bidder, Decision, Reservation};
use super::inventory::Inventory;

/// What the store keeps of the provider role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProviderSnapshot {
    /// Holds and leases.
    pub reservations: Vec<Reservation>,
    /// The last offer sequence used.
    pub sequence: u64,
    /// Orders seen.
    pub orders_seen: u64,
    /// Bids sent.
    pub bids_sent: u64,
    /// Declines sent.
    pub declines_sent: u64,
}

/// The provider side of a node.
#[derive(Debug)]
pub struct ProviderRole {
    bidder: Bidder,
    inventory: Inventory,
    leases: BTreeMap<LeaseId, Lease>,
    /// Orders seen.
    pub orders_seen: u64,
    /// Bids sent.
    pub bids_sent: u64,
    /// Declines sent.
    pub declines_sent: u64,
    /// Why the runtime cannot run jobs now; no offers, bids or leases
    /// while set.
    unavailable: Option<String>,
}

impl ProviderRole {
    /// Wraps a bid engine; `snapshot` and `leases` come from the store.
    pub fn new(
        mut bidder: Bidder,
        inventory: Inventory,
        snapshot: ProviderSnapshot,
        leases: Vec<Lease>,
    ) -> Self {
        let orphans = bidder.restore(snapshot.reservations, snapshot.sequence);
        for orphan in orphans {
            tracing::warn!(
                order = %orphan.order_id,
                model = %orphan.gpu_model,
                "a stored reservation matches no GPU class of this inventory"
            );
        }
        let me = *bidder.provider();
        Self {
            bidder,
            inventory,
            leases: leases
                .into_iter()
                .filter(|l| l.terms().provider == me)
                .map(|l| (l.id(), l))
                .collect(),
            orders_seen: snapshot.orders_seen,
            bids_sent: snapshot.bids_sent,
            declines_sent: snapshot.declines_sent,
            unavailable: None,
        }
    }

    /// Records whether the runtime can run jobs (`None`) or why not;
    /// whether that changed. While it cannot, the provider publishes no
    /// offers, answers no orders and signs no leases.
    pub fn set_unavailable(&mut self, reason: Option<String>) -> bool {
        let changed = self.unavailable.is_some() != reason.is_some();
        self.unavailable = reason;
        changed
    }

    /// Why the runtime cannot run jobs, when it cannot.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// What to store.
    pub fn snapshot(&self) -> ProviderSnapshot {
        ProviderSnapshot {
            reservations: self.bidder.reservations().cloned().collect(),
            sequence: self.bidder.sequence(),
            orders_seen: self.orders_seen,
            bids_sent: self.bids_sent,
            declines_sent: self.declines_sent,
        }
    }

    /// The GPUs.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Current offers (unsigned).
    pub fn offers(&mut self, now: Timestamp) -> Vec<Offer> {
        if self.unavailable.is_some() {
            return Vec::new();
        }
        self.bidder.offers(now)
    }

    /// Answers an order; `None` when nothing should be sent.
    pub fn on_order(&mut self, order: &Order, now: Timestamp) -> Option<Decision> {
        if self.unavailable.is_some() {
            return None;
        }
        let first = !self.bidder.seen(&order.id());
        let decision = self.bidder.on_order(order, now);
        if first {
            self.orders_seen += 1;
            match &decision {
                Decision::Bid(_) => self.bids_sent += 1,
                Decision::Decline(_) => self.declines_sent += 1,
                Decision::Ignore(_) => {}
            }
        }
        match decision {
            Decision::Ignore(_) => None,
            other => Some(other),
        }
    }

    /// Checks a lease proposal and reserves its GPUs.
    pub fn on_lease_proposal(
        &mut self,
        proposal: &Signed<LeaseTerms>,
        now: Timestamp,
    ) -> Result<(), String> {
        if let Some(reason) = &self.unavailable {
            return Err(format!("this provider cannot run jobs now: {reason}"));
        }
        self.bidder
            .on_lease_proposal(proposal, now)
            .map(|_| ())
            .map_err(|r| r.reason)
    }

    /// Records a countersigned lease.
    pub fn add_lease(&mut self, lease: Lease) {
        self.leases.insert(lease.id(), lease);
    }

    /// Frees the GPUs of an order whose run ended.
    pub fn release(
        &mut self,
        order: &agora_protocol::OrderId,
    ) -> Option<super::bidder::Reservation> {
        self.bidder.release(order)
    }

    /// The bid engine's GPU classes.
    pub fn slots(&self) -> &[super::offers::Slot] {
        self.bidder.slots()
    }

    /// Leases signed.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Drops ended holds and leases' reservations; whether GPUs were freed.
    pub fn expire(&mut self, now: Timestamp) -> bool {
        self.bidder.expire(now)
    }

    /// Reservations as the API shows them.
    pub fn reservation_views(&self, now: Timestamp) -> Vec<ReservationView> {
        self.bidder
            .reservations()
            .filter(|r| r.live(now))
            .map(Reservation::view)
            .collect()
    }
}
