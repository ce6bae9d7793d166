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
            match &decision {
                Decision::Bid(_) => self.bids_sent += 1,
                Decision::Decline(_) => self.declines_sent += 1,
                Decision::Ignore(_) => {}
                // Not answered yet: counted when it is.
                Decision::NeedsBalance(_) => return Some(decision),
            }
            self.orders_seen += 1;
        }
        match decision {
            Decision::Ignore(_) => None,
            other => Some(other),
        }
    }

    /// Takes in a requester's balance as read from the ledger (or why it
    /// could not be read).
    pub fn set_balance(
        &mut self,
        requester: agora_protocol::PublicKey,
        balance: Result<agora_protocol::Amount, String>,
        now: Timestamp,
    ) {
        self.bidder.set_balance(requester, balance, now);
    }

    /// Whether a lease proposal waits for its requester's balance.
    pub fn proposal_needs_balance(&self, proposal: &Signed<LeaseTerms>, now: Timestamp) -> bool {
        self.bidder.proposal_needs_balance(proposal, now)
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

    /// Drops ended holds and leases' reservations, and those of leases
    /// whose run did not start in time (`started`: which have a run);
    /// whether GPUs were freed.
    pub fn expire(&mut self, now: Timestamp, started: &dyn Fn(&LeaseId) -> bool) -> bool {
        self.bidder.expire(now, started)
    }

    /// Whether a job may still start on `lease` (see [`Bidder::may_start`]).
    pub fn may_start(&self, lease: &LeaseId) -> bool {
        self.bidder.may_start(lease)
    }

    /// A job for `lease` arrived; see [`Bidder::starting`].
    pub fn starting(&mut self, lease: &LeaseId, now: Timestamp, grace_ms: u64) {
        self.bidder.starting(lease, now, grace_ms);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use crate::provider::offers::tests::{CONFIG, inventory};
    use agora_protocol::{Amount, Energy, Keypair};

    const NOW: Timestamp = Timestamp(1_000_000);

    /// A role over the offers tests' inventory, key seed 1.
    pub(crate) fn role() -> ProviderRole {
        let config = Config::parse(CONFIG, "test").unwrap();
        let key = Keypair::from_seed(&[1; 32]);
        let inventory = inventory(&config.simulated_gpu);
        let mut bidder = Bidder::new(
            key.public(),
            config.provider.as_ref().unwrap(),
            &config.node,
            &inventory,
            NOW,
        )
        .unwrap();
        crate::provider::bidder::tests::funded(
            &mut bidder,
            Keypair::from_seed(&[2; 32]).public(),
            Amount(u64::MAX),
        );
        ProviderRole::new(bidder, inventory, ProviderSnapshot::default(), Vec::new())
    }

    /// An order any of its GPUs fits, from key seed 2.
    pub(crate) fn order(nonce: u8) -> Order {
        Order {
            needs: agora_protocol::SandboxLimits::default(),
            network: false,
            requester: Keypair::from_seed(&[2; 32]).public(),
            nonce: vec![nonce; 16],
            gpu_count: 1,
            gpu_model: None,
            min_vram_mib: 0,
            min_fp32_mtflops: 0,
            min_compute_capability: 0,
            region: Some("EU".into()),
            jurisdiction: None,
            energy: Energy::Unknown,
            require_verified: false,
            allow_simulated: true,
            max_price_per_gpu_hour: Amount(3_000_000),
            max_duration_secs: 600,
            bid_window_ms: 1_000,
            runtime: "process".into(),
            created_at: NOW,
            expires_at: NOW.plus_secs(31),
        }
    }

    #[test]
    fn a_runtime_that_cannot_run_jobs_stops_offers_and_bids_until_it_can() {
        let mut role = role();
        assert!(!role.offers(NOW).is_empty());
        // Only a change of state counts as one (one log line each).
        assert!(!role.set_unavailable(None));
        assert!(role.set_unavailable(Some("the Ray head does not answer".into())));
        assert!(!role.set_unavailable(Some("still down".into())));
        assert_eq!(role.unavailable(), Some("still down"));
        assert!(role.offers(NOW).is_empty());
        assert!(role.on_order(&order(1), NOW).is_none());
        assert_eq!(role.bids_sent, 0);
        // Back: offers and bids again.
        assert!(role.set_unavailable(None));
        assert!(!role.offers(NOW).is_empty());
        assert!(matches!(
            role.on_order(&order(2), NOW),
            Some(Decision::Bid(_))
        ));
        assert_eq!(role.bids_sent, 1);
    }
}
