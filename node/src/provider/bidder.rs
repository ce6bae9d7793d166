//! The bid engine: answers orders with bids or declines, holds GPUs for its
//! bids, turns holds into leases, and says what is free for the offers.
//!
//! Pure state: no clock, no I/O. The node's actor calls it with `now`,
//! signs and sends what it returns, persists [`Bidder::reservations`] and
//! [`Bidder::sequence`] after every change, and hands them back through
//! [`Bidder::restore`] on start.
//!
//! Rules:
//! - An offer's `gpu_free` is its GPUs less the live reservations (holds
//!   and leases) on its slot.
//! - An order is checked against every slot with
//!   [`agora_protocol::matching::fit`], plus the provider's longest lease.
//!   The fitting slot with the best [`Score`] wins (then the lower price,
//!   then the lower slot). A bid holds its GPUs until the order's bid window
//!   plus the hold grace has passed, so a second order cannot take them.
//! - With nothing fitting, the decline gives the reason of the slot that
//!   came closest (passed the most of `fit`'s checks, in its order, with
//!   the duration check just before capacity): that is the reason a
//!   requester can act on.
//! - An order seen before gets the very same answer (the same bytes once
//!   signed) and holds nothing more.
//! - A lease proposal is accepted only on the terms bid (or, on the instant
//!   path with no bid, on the offer's current terms) and turns the hold into
//!   a lease reservation until the lease ends. The same proposal again is
//!   accepted again without reserving twice.

use std::collections::BTreeMap;

use agora_client::api::ReservationView;
use agora_protocol::lease::MAX_RECEIPT_INTERVAL_SECS;
use agora_protocol::matching::{Misfit, Score, fit};
use agora_protocol::{
    Amount, Bid, Decline, DeclineReason, LeaseId, LeaseTerms, Offer, Order, OrderId, PublicKey,
    Signed, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, NodeSection, ProviderConfig};
use crate::provider::inventory::Inventory;
use crate::provider::offers::{self, OfferTerms, Slot, Unoffered};
use crate::provider::pricing::{PriceSource, PricingPolicy};

/// How far a lease's start may be from the provider's clock.
pub const START_TOLERANCE_MS: u64 = 60_000;

/// Most orders whose answers are remembered (for repeats) at once.
pub const MAX_REMEMBERED_ORDERS: usize = 4096;

/// Longest decline detail the wire carries.
const MAX_DETAIL: usize = 512;

/// What a reservation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationKind {
    /// GPUs held for a bid, until the requester decides.
    Hold,
    /// GPUs taken by a signed lease.
    Lease(LeaseId),
}

/// GPUs of one slot set aside for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The order.
    pub order_id: OrderId,
    /// Who ordered; only they may lease a hold.
    pub requester: PublicKey,
    /// The slot.
    pub slot: u32,
    /// The slot's model, so a reservation restored after the inventory
    /// changed is not counted against another class.
    pub gpu_model: String,
    /// GPUs set aside.
    pub gpu_count: u32,
    /// The price bid or leased, per GPU-hour.
    pub price_per_gpu_hour: Amount,
    /// Released at this time: the hold's end, or the lease's end.
    pub until: Timestamp,
    /// Hold or lease.
    pub kind: ReservationKind,
}

impl Reservation {
    /// Whether it still sets GPUs aside at `now`.
    pub fn live(&self, now: Timestamp) -> bool {
        now < self.until
    }

    /// As the API shows it.
    pub fn view(&self) -> ReservationView {
        ReservationView {
            order_id: self.order_id.to_string(),
            slot: self.slot,
            gpu_count: self.gpu_count,
            until: self.until,
            kind: match self.kind {
                ReservationKind::Hold => "hold",
                ReservationKind::Lease(_) => "lease",
            }
            .into(),
        }
    }
}

/// The answer to an order. Bids and declines are unsigned: the caller signs
/// them with the provider key and sends them to the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it: the GPUs are held until `hold_until`.
    Bid(Bid),
    /// Do not serve it, with the reason.
    Decline(Decline),
    /// Send nothing: the order is this node's own (a node cannot lease from
    /// itself).
    Ignore(String),
}

/// A lease proposal refused, with the reason for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    /// Why.
    pub reason: String,
}

fn refuse<T>(reason: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        reason: reason.into(),
    })
}

/// A lease proposal accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Newly: the GPUs are now leased; countersign and go on.
    New(LeaseId),
    /// Already accepted before: nothing changed; countersign again.
    Repeat(LeaseId),
}

/// How one slot answers one order.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// The slot.
    pub slot: u32,
    /// Its model.
    pub gpu_model: String,
    /// GPUs in it.
    pub gpu_total: u32,
    /// GPUs free now.
    pub gpu_free: u32,
    /// Its price per GPU-hour.
    pub price: Amount,
    /// Where the price comes from.
    pub price_source: PriceSource,
    /// Per-GPU FP32 milli-TFLOPS.
    pub fp32_mtflops: u64,
    /// Fits, with its score; or the reason it does not.
    pub outcome: Result<Score, Misfit>,
}

#[derive(Debug, Clone)]
struct Remembered {
    decision: Decision,
    until: Timestamp,
}

/// The bid engine of one provider.
#[derive(Debug, Clone)]
pub struct Bidder {
    terms: OfferTerms,
    pricing: PricingPolicy,
    max_lease_secs: u64,
    max_receipt_interval_secs: u32,
    hold_grace_ms: u64,
    slots: Vec<Slot>,
    unoffered: Vec<Unoffered>,
    reservations: BTreeMap<OrderId, Reservation>,
    answered: BTreeMap<OrderId, Remembered>,
    sequence: u64,
}

impl Bidder {
    /// The engine for `provider` with `inventory`, configured by `config`
    /// and `node`. Refuses a config whose offers every peer would drop (a
    /// bad region, jurisdiction, runtime or price), naming the key.
    pub fn new(
        provider: PublicKey,
        config: &ProviderConfig,
        node: &NodeSection,
        inventory: &Inventory,
        now: Timestamp,
    ) -> Result<Self, ConfigError> {
        node.validate()?;
        let pricing = PricingPolicy::from_config(&config.pricing)?;
        if config.max_lease_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "provider.max_lease_secs".into(),
                reason: "0 accepts no lease at all; set the longest lease in seconds".into(),
            });
        }
        let grouped = offers::slots(inventory);
        let bidder = Self {
            terms: OfferTerms::new(provider, config, node),
            pricing,
            max_lease_secs: config.max_lease_secs,
            max_receipt_interval_secs: node.receipt_interval_secs,
            hold_grace_ms: node.bid_hold_grace_ms,
            slots: grouped.slots,
            unoffered: grouped.unoffered,
            reservations: BTreeMap::new(),
            answered: BTreeMap::new(),
            sequence: 0,
        };
        for slot in &bidder.slots {
            let offer = bidder.offer(slot, 1, now);
            offers::check(&offer).map_err(|e| ConfigError::Invalid {
                field: match e.field {
                    "price_per_gpu_hour" => "provider.pricing".to_string(),
                    "expires_at_ms" => "node.offer_ttl_secs".to_string(),
                    field => format!("provider.{field}"),
                },
                reason: e.reason,
            })?;
        }
        Ok(bidder)
    }

    /// The provider's key.
    pub fn provider(&self) -> &PublicKey {
        &self.terms.provider
    }

    /// The slots offered.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// GPUs not offered, with the reason.
    pub fn unoffered(&self) -> &[Unoffered] {
        &self.unoffered
    }

    /// The pricing policy.
    pub fn pricing(&self) -> &PricingPolicy {
        &self.pricing
    }

    /// The last offer sequence used; persist it.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// GPUs of `slot` set aside by live reservations at `now`, except those
    /// of `except`.
    fn reserved(&self, slot: &Slot, now: Timestamp, except: Option<&OrderId>) -> u32 {
        self.reservations
            .values()
            .filter(|r| {
                r.live(now)
                    && r.slot == slot.slot
                    && r.gpu_model == slot.model
                    && Some(&r.order_id) != except
            })
            .fold(0u32, |sum, r| sum.saturating_add(r.gpu_count))
    }

    /// GPUs of `slot` free at `now` (0 for an unknown slot).
    pub fn gpu_free(&self, slot: u32, now: Timestamp) -> u32 {
        self.slots.get(slot as usize).map_or(0, |s| {
            s.gpu_total().saturating_sub(self.reserved(s, now, None))
        })
    }

    fn offer(&self, slot: &Slot, sequence: u64, now: Timestamp) -> Offer {
        let (price, _) = self.pricing.price_for(&slot.model);
        let free = self.gpu_free(slot.slot, now);
        self.terms.offer(slot, price, free, sequence, now)
    }

    /// The offers to publish now, one per slot, with a fresh sequence:
    /// `max(last + 1, now in ms)`, so it rises on every call and, with the
    /// clock, across restarts even if the last one was not persisted. Peers
    /// drop an offer whose sequence is not above one they hold, so every
    /// publication (a change or a refresh) must come from a new call.
    pub fn offers(&mut self, now: Timestamp) -> Vec<Offer> {
        self.sequence = self.sequence.saturating_add(1).max(now.0);
        let sequence = self.sequence;
        offers::build_offers(
            &self.terms,
            &self.slots,
            &self.pricing,
            |slot| self.gpu_free(slot.slot, now),
            sequence,
            now,
        )
    }

    /// How every slot answers `order` at `now`, without holding anything.
    pub fn assess(&self, order: &Order, now: Timestamp) -> Vec<Assessment> {
        self.slots
            .iter()
            .map(|slot| {
                let offer = self.offer(slot, 1, now);
                let (price, price_source) = self.pricing.price_for(&slot.model);
                let too_long = order.max_duration_secs > self.max_lease_secs;
                let outcome = match fit(order, &offer, now) {
                    // The lease limit ranks before capacity and price: it is
                    // the provider's standing policy, they change by the
                    // minute.
                    Ok(()) | Err((DeclineReason::NoCapacity | DeclineReason::Price, _))
                        if too_long =>
                    {
                        Err((
                            DeclineReason::Duration,
                            format!(
                                "a lease of {} s is longer than this provider's limit of {} s",
                                order.max_duration_secs, self.max_lease_secs
                            ),
                        ))
                    }
                    Ok(()) => Ok(Score::new(price, slot.benchmark.fp32_mtflops, 1000)),
                    Err(misfit) => Err(misfit),
                };
                Assessment {
                    slot: slot.slot,
                    gpu_model: slot.model.clone(),
                    gpu_total: offer.gpu_total,
                    gpu_free: offer.gpu_free,
                    price,
                    price_source,
                    fp32_mtflops: slot.benchmark.fp32_mtflops,
                    outcome,
                }
            })
            .collect()
    }

    /// Whether `order` was answered already (its answer is remembered or
    /// GPUs are reserved for it).
    pub fn seen(&self, order: &OrderId) -> bool {
        self.answered.contains_key(order) || self.reservations.contains_key(order)
    }

    /// Answers `order` at `now`. A bid holds the GPUs (republish the offers);
    /// a repeat gets the first answer again.
    pub fn on_order(&mut self, order: &Order, now: Timestamp) -> Decision {
        let order_id = order.id();
        if let Some(remembered) = self.answered.get(&order_id) {
            return remembered.decision.clone();
        }
        if let Some(reservation) = self.reservations.get(&order_id).filter(|r| r.live(now)) {
            // Bid before a restart (the answer is not persisted, the hold
            // is): bid the same again.
            return Decision::Bid(self.bid_from(reservation, now));
        }
        let decision = self.decide(order, now);
        if let Decision::Bid(bid) = &decision {
            let model = self.slots[bid.slot as usize].model.clone();
            self.reservations.insert(
                order_id,
                Reservation {
                    order_id,
                    requester: order.requester,
                    slot: bid.slot,
                    gpu_model: model,
                    gpu_count: bid.gpu_count,
                    price_per_gpu_hour: bid.price_per_gpu_hour,
                    until: bid.hold_until,
                    kind: ReservationKind::Hold,
                },
            );
        }
        self.remember(order_id, decision.clone(), order.expires_at.max(now));
        decision
    }

    fn remember(&mut self, order_id: OrderId, decision: Decision, until: Timestamp) {
        if self.answered.len() >= MAX_REMEMBERED_ORDERS
            && let Some(oldest) = self
                .answered
                .iter()
                .min_by_key(|(_, r)| r.until)
                .map(|(id, _)| *id)
        {
            self.answered.remove(&oldest);
        }
        self.answered
            .insert(order_id, Remembered { decision, until });
    }

    fn bid_from(&self, reservation: &Reservation, now: Timestamp) -> Bid {
        let slot = self.slots.iter().find(|s| s.slot == reservation.slot);
        Bid {
            order_id: reservation.order_id,
            provider: self.terms.provider,
            slot: reservation.slot,
            price_per_gpu_hour: reservation.price_per_gpu_hour,
            gpu_count: reservation.gpu_count,
            gpu_model: reservation.gpu_model.clone(),
            fp32_mtflops: slot.map_or(1, |s| s.benchmark.fp32_mtflops),
            hold_until: reservation.until.max(now.plus_ms(1)),
            created_at: now,
            simulated: slot.is_some_and(|s| s.simulated),
        }
    }

    fn decide(&self, order: &Order, now: Timestamp) -> Decision {
        let decline = |reason: DeclineReason, detail: String| {
            Decision::Decline(Decline {
                order_id: order.id(),
                provider: self.terms.provider,
                reason,
                detail: clip(detail),
                created_at: now,
            })
        };
        if order.requester == self.terms.provider {
            return Decision::Ignore(
                "this node placed the order; it cannot lease from itself".into(),
            );
        }
        if self.slots.is_empty() {
            let detail = match self.unoffered.len() {
                0 => "no GPUs".to_string(),
                n => format!("no GPUs offered ({n} not benchmarked or unusable)"),
            };
            return decline(DeclineReason::NoCapacity, detail);
        }
        let assessments = self.assess(order, now);
        let best = assessments
            .iter()
            .filter_map(|a| a.outcome.as_ref().ok().map(|score| (a, *score)))
            .min_by(|(a, sa), (b, sb)| {
                sa.cmp(sb)
                    .then_with(|| a.price.cmp(&b.price))
                    .then_with(|| b.fp32_mtflops.cmp(&a.fp32_mtflops))
                    .then_with(|| a.slot.cmp(&b.slot))
            });
        if let Some((a, _)) = best {
            let slot = &self.slots[a.slot as usize];
            let hold_until = now
                .plus_ms(u64::from(order.bid_window_ms).saturating_add(self.hold_grace_ms))
                .max(now.plus_ms(1));
            return Decision::Bid(Bid {
                order_id: order.id(),
                provider: self.terms.provider,
                slot: slot.slot,
                price_per_gpu_hour: a.price,
                gpu_count: order.gpu_count,
                gpu_model: slot.model.clone(),
                fp32_mtflops: slot.benchmark.fp32_mtflops,
                hold_until,
                created_at: now,
                simulated: slot.simulated,
            });
        }
        let closest = assessments
            .iter()
            .filter_map(|a| a.outcome.as_ref().err().map(|m| (a, m)))
            .max_by(|(a, (ra, _)), (b, (rb, _))| {
                progress(*ra)
                    .cmp(&progress(*rb))
                    // Among equals, the cheapest (for price) or the freest
                    // (for capacity) slot, then the lowest slot.
                    .then_with(|| b.price.cmp(&a.price))
                    .then_with(|| a.gpu_free.cmp(&b.gpu_free))
                    .then_with(|| b.slot.cmp(&a.slot))
            });
        match closest {
            Some((_, (reason, detail))) => decline(*reason, detail.clone()),
            None => decline(DeclineReason::NoCapacity, "no GPUs".into()),
        }
    }

    /// Checks a requester's signed lease proposal at `now` and, if it holds,
    /// reserves its GPUs until the lease ends (converting this order's hold).
    /// The caller then countersigns the proposal.
    pub fn on_lease_proposal(
        &mut self,
        proposal: &Signed<LeaseTerms>,
        now: Timestamp,
    ) -> Result<Accepted, Refusal> {
        let terms = proposal.message();
        let lease_id = LeaseId::of_body(proposal.envelope().body());
        if terms.provider != self.terms.provider {
            return refuse(format!(
                "the lease names provider {}, not this node ({})",
                terms.provider.short(),
                self.terms.provider.short()
            ));
        }
        let existing = self.reservations.get(&terms.order_id);
        if let Some(r) = existing {
            match r.kind {
                ReservationKind::Lease(id) if id == lease_id => return Ok(Accepted::Repeat(id)),
                ReservationKind::Lease(id) => {
                    return refuse(format!(
                        "order {} is already leased (lease {id})",
                        terms.order_id
                    ));
                }
                ReservationKind::Hold if r.requester != terms.requester => {
                    return refuse(format!(
                        "order {} was placed by another requester",
                        terms.order_id
                    ));
                }
                ReservationKind::Hold => {}
            }
        }
        let Some(slot) = self.slots.get(terms.slot as usize) else {
            return refuse(format!(
                "slot {} does not exist (this provider has {} slots)",
                terms.slot,
                self.slots.len()
            ));
        };
        if terms.gpu_model != slot.model {
            return refuse(format!(
                "slot {} holds {}, not {}",
                slot.slot, slot.model, terms.gpu_model
            ));
        }
        if terms.simulated != slot.simulated {
            return refuse(format!(
                "slot {}'s GPUs are {}, the terms say otherwise",
                slot.slot,
                if slot.simulated { "simulated" } else { "real" }
            ));
        }
        // A live hold on this slot promised its bid price; otherwise the
        // offer's current price applies.
        let held = existing.filter(|r| r.live(now) && r.slot == slot.slot);
        let (price, basis) = match held {
            Some(r) => (r.price_per_gpu_hour, "the price bid"),
            None => (self.pricing.price_for(&slot.model).0, "this slot's price"),
        };
        if terms.price_per_gpu_hour < price {
            return refuse(format!(
                "price {} AGR/GPU-hour is below {basis}, {price}",
                terms.price_per_gpu_hour
            ));
        }
        if terms.max_duration_secs > self.max_lease_secs {
            return refuse(format!(
                "a lease of {} s is longer than this provider's limit of {} s",
                terms.max_duration_secs, self.max_lease_secs
            ));
        }
        if terms.starts_at.0.abs_diff(now.0) > START_TOLERANCE_MS {
            return refuse(format!(
                "the lease starts at {}, more than {} s from this provider's clock ({now})",
                terms.starts_at,
                START_TOLERANCE_MS / 1000
            ));
        }
        match LeaseTerms::required_escrow(
            terms.price_per_gpu_hour,
            terms.gpu_count,
            terms.max_duration_secs,
        ) {
            Some(required) if required == terms.escrow => {}
            Some(required) => {
                return refuse(format!(
                    "escrow {} AGR does not cover the whole lease ({required} AGR)",
                    terms.escrow
                ));
            }
            None => return refuse("price × GPUs × duration overflows"),
        }
        let max_interval = self
            .max_receipt_interval_secs
            .min(MAX_RECEIPT_INTERVAL_SECS);
        if terms.receipt_interval_secs == 0 || terms.receipt_interval_secs > max_interval {
            return refuse(format!(
                "receipt interval {} s is outside 1..={max_interval} s (this provider's \
                 unpaid risk is one interval)",
                terms.receipt_interval_secs
            ));
        }
        let available =
            slot.gpu_total()
                .saturating_sub(self.reserved(slot, now, Some(&terms.order_id)));
        if terms.gpu_count > available {
            return refuse(format!(
                "{} GPUs wanted, {available} of {} free in slot {}",
                terms.gpu_count,
                slot.gpu_total(),
                slot.slot
            ));
        }
        let reservation = Reservation {
            order_id: terms.order_id,
            requester: terms.requester,
            slot: slot.slot,
            gpu_model: slot.model.clone(),
            gpu_count: terms.gpu_count,
            price_per_gpu_hour: terms.price_per_gpu_hour,
            until: terms.ends_at(),
            kind: ReservationKind::Lease(lease_id),
        };
        self.reservations.insert(terms.order_id, reservation);
        Ok(Accepted::New(lease_id))
    }

    /// Releases the GPUs of `order` early (a lease ended or was cancelled);
    /// returns the reservation released.
    pub fn release(&mut self, order: &OrderId) -> Option<Reservation> {
        self.reservations.remove(order)
    }

    /// Drops holds and leases that ended by `now`, and forgets answers to
    /// orders that expired. Returns whether GPUs were freed (republish the
    /// offers).
    pub fn expire(&mut self, now: Timestamp) -> bool {
        let before = self.reservations.len();
        self.reservations.retain(|_, r| r.live(now));
        self.answered.retain(|_, r| now < r.until);
        self.reservations.len() != before
    }

    /// Every reservation, by order; persist them.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    /// Restores persisted state after a restart: the reservations, and the
    /// last offer sequence (the sequence never goes back). Returns the
    /// reservations that match no slot of the current inventory (kept, but
    /// counted against nothing) so the caller can warn about them.
    pub fn restore(
        &mut self,
        reservations: impl IntoIterator<Item = Reservation>,
        last_sequence: u64,
    ) -> Vec<Reservation> {
        self.sequence = self.sequence.max(last_sequence);
        let mut orphans = Vec::new();
        for r in reservations {
            let known = self
                .slots
                .get(r.slot as usize)
                .is_some_and(|s| s.model == r.gpu_model);
            if !known {
                orphans.push(r.clone());
            }
            self.reservations.insert(r.order_id, r);
        }
        orphans
    }
}

/// How many of the checks an order passed before failing with `reason`:
/// `fit`'s order, with the provider's lease limit just before capacity.
fn progress(reason: DeclineReason) -> u8 {
    use DeclineReason as R;
    match reason {
        R::Expired => 0,
        R::Runtime => 1,
        R::Simulated => 2,
        R::Unverified => 3,
        R::Model => 4,
        R::Vram => 5,
        R::Compute => 6,
        R::Region => 7,
        R::Jurisdiction => 8,
        R::Energy => 9,
        R::Duration => 10,
        R::NoCapacity => 11,
        R::Price => 12,
    }
}

/// `detail` cut to what the wire carries, on a character boundary.
fn clip(mut detail: String) -> String {
    if detail.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::provider::offers::tests::{CONFIG, inventory};
    use agora_protocol::{Energy, Keypair};

    const NOW: Timestamp = Timestamp(1_000_000);

    fn provider_key() -> Keypair {
        Keypair::from_seed(&[1; 32])
    }

    fn requester_key() -> Keypair {
        Keypair::from_seed(&[2; 32])
    }

    /// Slot 0: 3 × A100 at 1.0; slot 1: 2 × H100 at 2.5 (hold grace 5 s).
    fn bidder() -> Bidder {
        let config = Config::parse(CONFIG, "test").unwrap();
        Bidder::new(
            provider_key().public(),
            config.provider.as_ref().unwrap(),
            &config.node,
            &inventory(&config.simulated_gpu),
            NOW,
        )
        .unwrap()
    }

    fn order(nonce: u8, gpus: u32, model: Option<&str>) -> Order {
        Order {
            requester: requester_key().public(),
            nonce: vec![nonce; 16],
            gpu_count: gpus,
            gpu_model: model.map(str::to_string),
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

    fn bid(decision: Decision) -> Bid {
        match decision {
            Decision::Bid(bid) => bid,
            other => panic!("expected a bid, got {other:?}"),
        }
    }

    fn decline(decision: Decision) -> Decline {
        match decision {
            Decision::Decline(decline) => decline,
            other => panic!("expected a decline, got {other:?}"),
        }
    }

    fn terms_for(bid: &Bid, starts_at: Timestamp) -> LeaseTerms {
        LeaseTerms {
            order_id: bid.order_id,
            requester: requester_key().public(),
            provider: bid.provider,
            slot: bid.slot,
            gpu_model: bid.gpu_model.clone(),
            gpu_count: bid.gpu_count,
            price_per_gpu_hour: bid.price_per_gpu_hour,
            max_duration_secs: 600,
            receipt_interval_secs: 10,
            starts_at,
            escrow: LeaseTerms::required_escrow(bid.price_per_gpu_hour, bid.gpu_count, 600)
                .unwrap(),
            simulated: bid.simulated,
        }
    }

    fn propose(terms: LeaseTerms) -> Signed<LeaseTerms> {
        Signed::sign(terms, &requester_key()).unwrap()
    }

    fn free(bidder: &mut Bidder, now: Timestamp) -> Vec<u32> {
        bidder.offers(now).iter().map(|o| o.gpu_free).collect()
    }

    #[test]
    fn a_bid_holds_its_gpus_until_the_window_and_grace_pass() {
        let mut bidder = bidder();
        assert_eq!(free(&mut bidder, NOW), vec![3, 2]);
        let bid = bid(bidder.on_order(&order(1, 2, Some("H100")), NOW));
        assert_eq!((bid.slot, bid.gpu_model.as_str()), (1, "H100"));
        assert_eq!(bid.price_per_gpu_hour, Amount(2_500_000));
        assert_eq!(bid.hold_until, NOW.plus_ms(1_000 + 5_000));
        assert!(bid.simulated);
        assert_eq!(free(&mut bidder, NOW), vec![3, 0]);

        assert!(!bidder.expire(Timestamp(bid.hold_until.0 - 1)));
        assert_eq!(free(&mut bidder, NOW.plus_ms(5_999)), vec![3, 0]);
        // Past the hold the GPUs count as free even before the sweep.
        assert_eq!(bidder.gpu_free(1, bid.hold_until), 2);
        assert!(bidder.expire(bid.hold_until));
        assert_eq!(bidder.reservations().count(), 0);
        assert!(!bidder.expire(bid.hold_until));

        // Bids and declines are valid wire messages once signed.
        let signed = Signed::sign(bid, &provider_key()).unwrap();
        Signed::<Bid>::decode(&signed.encode()).unwrap();
    }

    #[test]
    fn a_second_order_cannot_take_held_gpus() {
        let mut bidder = bidder();
        bid(bidder.on_order(&order(1, 2, Some("H100")), NOW));
        let refused = decline(bidder.on_order(&order(2, 1, Some("H100")), NOW));
        assert_eq!(refused.reason, DeclineReason::NoCapacity);
        assert!(refused.detail.contains("0 GPUs free"), "{}", refused.detail);
        let signed = Signed::sign(refused, &provider_key()).unwrap();
        Signed::<Decline>::decode(&signed.encode()).unwrap();

        // Any model: the H100 scores best per TFLOP but is held, so the A100.
        let any = bid(bidder.on_order(&order(3, 1, None), NOW));
        assert_eq!(any.slot, 0);
        assert_eq!(free(&mut bidder, NOW), vec![2, 0]);
    }

    #[test]
    fn the_best_score_wins_among_fitting_slots() {
        let mut bidder = bidder();
        // 2.5 AGR for 67 TFLOPS beats 1.0 AGR for 19.5 TFLOPS.
        let best = bid(bidder.on_order(&order(1, 1, None), NOW));
        assert_eq!(best.slot, 1);
        assert_eq!(best.fp32_mtflops, 67_000);
    }

    #[test]
    fn a_repeated_order_gets_the_same_answer_and_holds_nothing_more() {
        let mut bidder = bidder();
        let order = order(1, 1, Some("H100"));
        assert!(!bidder.seen(&order.id()));
        let first = bidder.on_order(&order, NOW);
        assert!(bidder.seen(&order.id()));
        assert_eq!(bidder.on_order(&order, NOW.plus_ms(10)), first);
        assert_eq!(free(&mut bidder, NOW), vec![3, 1]);
        let wrong = Order {
            region: Some("US".into()),
            nonce: vec![9; 16],
            ..order
        };
        let first = bidder.on_order(&wrong, NOW);
        assert_eq!(bidder.on_order(&wrong, NOW.plus_ms(10)), first);
    }

    #[test]
    fn declines_give_the_reason_of_the_closest_slot() {
        let mut bidder = bidder();
        let mut wrong_region = order(1, 1, Some("H100"));
        wrong_region.region = Some("US".into());
        let d = decline(bidder.on_order(&wrong_region, NOW));
        assert_eq!(d.reason, DeclineReason::Region);
        assert!(d.detail.contains("US"), "{}", d.detail);

        // Both slots are too dear; the A100 is the cheaper one to quote.
        let mut cheap = order(2, 1, None);
        cheap.max_price_per_gpu_hour = Amount(500_000);
        let d = decline(bidder.on_order(&cheap, NOW));
        assert_eq!(d.reason, DeclineReason::Price);
        assert!(d.detail.contains("price 1 AGR"), "{}", d.detail);

        // The H100 is the wrong model and the A100 too dear: price, the
        // reason a requester can act on, wins over model.
        let mut a100 = order(3, 1, Some("A100"));
        a100.max_price_per_gpu_hour = Amount(500_000);
        assert_eq!(
            decline(bidder.on_order(&a100, NOW)).reason,
            DeclineReason::Price
        );

        let mut long = order(4, 1, Some("H100"));
        long.max_duration_secs = 2 * 24 * 3600;
        let d = decline(bidder.on_order(&long, NOW));
        assert_eq!(d.reason, DeclineReason::Duration);
        assert!(d.detail.contains("86400"), "{}", d.detail);

        let expired = order(5, 1, None);
        assert_eq!(
            decline(bidder.on_order(&expired, expired.expires_at)).reason,
            DeclineReason::Expired
        );
        assert_eq!(bidder.reservations().count(), 0);
    }

    #[test]
    fn a_provider_without_gpus_declines_for_capacity() {
        let config = Config::parse(CONFIG, "test").unwrap();
        let mut bidder = Bidder::new(
            provider_key().public(),
            config.provider.as_ref().unwrap(),
            &config.node,
            &Inventory::default(),
            NOW,
        )
        .unwrap();
        assert!(bidder.offers(NOW).is_empty());
        let d = decline(bidder.on_order(&order(1, 1, None), NOW));
        assert_eq!(
            (d.reason, d.detail.as_str()),
            (DeclineReason::NoCapacity, "no GPUs")
        );
    }

    #[test]
    fn its_own_order_is_not_answered() {
        let mut bidder = bidder();
        let mut own = order(1, 1, None);
        own.requester = provider_key().public();
        assert!(matches!(bidder.on_order(&own, NOW), Decision::Ignore(_)));
        assert_eq!(bidder.reservations().count(), 0);
    }

    #[test]
    fn a_lease_for_a_held_order_turns_the_hold_into_a_lease() {
        let mut bidder = bidder();
        let bid = bid(bidder.on_order(&order(1, 2, Some("H100")), NOW));
        let at = NOW.plus_ms(1_200);
        let proposal = propose(terms_for(&bid, at));
        let lease_id = LeaseId::of_body(proposal.envelope().body());
        assert_eq!(
            bidder.on_lease_proposal(&proposal, at),
            Ok(Accepted::New(lease_id))
        );
        // The same proposal again: accepted, nothing reserved twice.
        assert_eq!(
            bidder.on_lease_proposal(&proposal, at),
            Ok(Accepted::Repeat(lease_id))
        );
        let reservations: Vec<&Reservation> = bidder.reservations().collect();
        assert_eq!(reservations.len(), 1);
        assert_eq!(reservations[0].kind, ReservationKind::Lease(lease_id));
        assert_eq!(reservations[0].until, at.plus_secs(600));
        assert_eq!(reservations[0].view().kind, "lease");

        // The GPUs stay taken after the hold would have ended, until the lease does.
        assert!(!bidder.expire(bid.hold_until.plus_ms(1)));
        assert_eq!(bidder.gpu_free(1, bid.hold_until.plus_ms(1)), 0);
        assert!(bidder.expire(at.plus_secs(600)));
        assert_eq!(bidder.gpu_free(1, at.plus_secs(600)), 2);

        // A different lease for the same order is refused.
        let mut bidder2 = self::bidder();
        let bid = self::bid(bidder2.on_order(&order(1, 2, Some("H100")), NOW));
        bidder2
            .on_lease_proposal(&propose(terms_for(&bid, at)), at)
            .unwrap();
        let mut other = terms_for(&bid, at.plus_ms(1));
        other.receipt_interval_secs = 20;
        let err = bidder2.on_lease_proposal(&propose(other), at).unwrap_err();
        assert!(err.reason.contains("already leased"), "{err}");
    }

    #[test]
    fn a_lease_on_other_terms_than_the_bid_is_refused_with_a_reason() {
        let mut bidder = bidder();
        let bid = bid(bidder.on_order(&order(1, 2, Some("H100")), NOW));
        let at = NOW.plus_ms(1_200);
        type Mutation = Box<dyn Fn(&mut LeaseTerms)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "below the price bid",
                Box::new(|t| {
                    t.price_per_gpu_hour = Amount(2_000_000);
                    t.escrow = LeaseTerms::required_escrow(t.price_per_gpu_hour, 2, 600).unwrap();
                }),
            ),
            (
                "holds H100, not A100",
                Box::new(|t| t.gpu_model = "A100".into()),
            ),
            (
                "3 GPUs wanted, 2 of 2 free",
                Box::new(|t| {
                    t.gpu_count = 3;
                    t.escrow = LeaseTerms::required_escrow(t.price_per_gpu_hour, 3, 600).unwrap();
                }),
            ),
            (
                "does not cover",
                Box::new(|t| t.escrow = Amount(t.escrow.0 - 1)),
            ),
            ("slot 7 does not exist", Box::new(|t| t.slot = 7)),
            (
                "not this node",
                Box::new(|t| t.provider = Keypair::from_seed(&[3; 32]).public()),
            ),
            (
                "another requester",
                Box::new(|t| t.requester = Keypair::from_seed(&[4; 32]).public()),
            ),
            (
                "more than 60 s",
                Box::new(|t| t.starts_at = Timestamp(t.starts_at.0 + 61_000)),
            ),
            (
                "longer than this provider's limit",
                Box::new(|t| {
                    t.max_duration_secs = 2 * 24 * 3600;
                    t.escrow = LeaseTerms::required_escrow(
                        t.price_per_gpu_hour,
                        t.gpu_count,
                        t.max_duration_secs,
                    )
                    .unwrap();
                }),
            ),
            (
                "receipt interval",
                Box::new(|t| t.receipt_interval_secs = 61),
            ),
            ("simulated", Box::new(|t| t.simulated = false)),
        ];
        for (expected, mutate) in cases {
            let mut terms = terms_for(&bid, at);
            mutate(&mut terms);
            let key = if terms.requester == requester_key().public() {
                requester_key()
            } else {
                Keypair::from_seed(&[4; 32])
            };
            let proposal = Signed::sign(terms, &key).unwrap();
            let err = bidder.on_lease_proposal(&proposal, at).unwrap_err();
            assert!(err.reason.contains(expected), "{expected}: {err}");
        }
        // Nothing changed: the hold is still a hold.
        let kinds: Vec<ReservationKind> = bidder.reservations().map(|r| r.kind).collect();
        assert_eq!(kinds, vec![ReservationKind::Hold]);
        // A price above the bid is fine.
        let mut generous = terms_for(&bid, at);
        generous.price_per_gpu_hour = Amount(2_600_000);
        generous.escrow = LeaseTerms::required_escrow(generous.price_per_gpu_hour, 2, 600).unwrap();
        assert!(matches!(
            bidder.on_lease_proposal(&propose(generous), at),
            Ok(Accepted::New(_))
        ));
    }

    #[test]
    fn the_instant_path_reserves_fresh_gpus_at_the_offer_price() {
        let mut bidder = bidder();
        let offer = bidder.offers(NOW)[0].clone();
        let price = offer.price_per_gpu_hour;
        let mut terms = LeaseTerms {
            order_id: OrderId([7; 32]),
            requester: requester_key().public(),
            provider: provider_key().public(),
            slot: offer.slot,
            gpu_model: offer.gpu_model.clone(),
            gpu_count: 3,
            price_per_gpu_hour: price,
            max_duration_secs: 60,
            receipt_interval_secs: 10,
            starts_at: NOW,
            escrow: LeaseTerms::required_escrow(price, 3, 60).unwrap(),
            simulated: true,
        };
        assert!(matches!(
            bidder.on_lease_proposal(&propose(terms.clone()), NOW),
            Ok(Accepted::New(_))
        ));
        assert_eq!(free(&mut bidder, NOW), vec![0, 2]);
        // A second instant lease finds the slot full.
        terms.order_id = OrderId([8; 32]);
        terms.gpu_count = 1;
        terms.escrow = LeaseTerms::required_escrow(price, 1, 60).unwrap();
        let err = bidder.on_lease_proposal(&propose(terms), NOW).unwrap_err();
        assert!(err.reason.contains("0 of 3 free"), "{err}");
    }

    #[test]
    fn restore_keeps_reservations_and_the_sequence_never_goes_back() {
        let mut before = bidder();
        let first = before.offers(NOW)[0].sequence;
        let second = before.offers(NOW)[0].sequence;
        assert!(second > first && first >= NOW.0);
        bid(before.on_order(&order(1, 2, Some("H100")), NOW));
        let saved: Vec<Reservation> = before.reservations().cloned().collect();
        let json = serde_json::to_string(&saved).unwrap();
        let last = before.sequence();

        // Restarted with a clock that went backwards.
        let earlier = Timestamp(NOW.0 - 500_000);
        let mut after = bidder();
        let orphans = after.restore(
            serde_json::from_str::<Vec<Reservation>>(&json).unwrap(),
            last,
        );
        assert!(orphans.is_empty());
        let offers = after.offers(earlier);
        assert!(offers[0].sequence > last);
        assert_eq!(offers[1].gpu_free, 0);
        // The held order is bid the same again, not held twice.
        let again = bid(after.on_order(&order(1, 2, Some("H100")), NOW.plus_ms(10)));
        assert_eq!(again.hold_until, NOW.plus_ms(6_000));
        assert_eq!(after.reservations().count(), 1);

        // A reservation for a slot the inventory no longer has is reported.
        let mut stray = saved[0].clone();
        stray.order_id = OrderId([5; 32]);
        stray.gpu_model = "V100".into();
        assert_eq!(after.restore([stray.clone()], 0), vec![stray]);
        assert_eq!(after.gpu_free(1, NOW), 0);
        assert!(after.sequence() > last);
    }

    #[test]
    fn a_config_that_peers_would_refuse_is_an_error_naming_the_key() {
        let config = Config::parse(CONFIG, "test").unwrap();
        let mut provider = config.provider.clone().unwrap();
        provider.region = "EU west".into();
        let err = Bidder::new(
            provider_key().public(),
            &provider,
            &config.node,
            &inventory(&config.simulated_gpu),
            NOW,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("provider.region"), "{err}");
        let mut provider = config.provider.clone().unwrap();
        provider.runtimes.clear();
        let err = Bidder::new(
            provider_key().public(),
            &provider,
            &config.node,
            &inventory(&config.simulated_gpu),
            NOW,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("provider.runtimes"), "{err}");
    }
}
