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
//! - A bid is made only if the requester can pay for it: its balance on
//!   the ledger (read by the caller, trusted for [`BALANCE_TTL_MS`]) must
//!   cover this order's escrow on top of the escrow of every live hold
//!   and not-yet-started lease it has here. An unknown balance is asked
//!   for ([`Decision::NeedsBalance`]); too little is declined with
//!   [`DeclineReason::Funds`]. So a key with no funds holds nothing, and no
//!   requester holds more GPU-time here than it could pay for.
//!   A lease proposal for GPUs no bid of its requester holds (the
//!   instant path, or a hold that lapsed) is held to the same rule, with
//!   the lease's escrow.
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
    SandboxLimits, Signed, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, NodeSection, ProviderConfig};
use crate::provider::inventory::Inventory;
use crate::provider::offers::{self, OfferTerms, Slot, Unoffered};
use crate::provider::pricing::{PriceSource, PricingPolicy};

pub use self::funds::{BALANCE_ERROR_TTL_MS, BALANCE_TTL_MS, MAX_KNOWN_BALANCES};
use self::funds::{Known, Shortfall};

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
    /// A lease's GPUs are given back at this time unless its run started
    /// (`None`: started, or a hold).
    #[serde(default)]
    pub start_by: Option<Timestamp>,
    /// The escrow this reservation stands for (price × GPUs × the order's
    /// or lease's duration): what it takes of the requester's balance
    /// while it is a hold or a lease not yet started.
    #[serde(default)]
    pub escrow: Amount,
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
    /// It would be a bid, but the requester's balance is not known (or no
    /// longer trusted): read it from the ledger, give it to
    /// [`Bidder::set_balance`], and ask again. Nothing is held or
    /// remembered.
    NeedsBalance(PublicKey),
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
    lease_start_timeout_secs: u64,
    /// Leases whose GPUs were given back because their run did not start,
    /// until their end: a late job for one is refused.
    unstarted: BTreeMap<LeaseId, Timestamp>,
    /// Requesters' balances on the ledger, as last read.
    balances: BTreeMap<PublicKey, Known>,
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
            lease_start_timeout_secs: config.lease_start_timeout_secs,
            unstarted: BTreeMap::new(),
            balances: BTreeMap::new(),
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

    /// Whether jobs may reach the network (`runtime.allow_network`): the
    /// offers say so, and an order that needs it from a provider that gives
    /// none is declined at bid time.
    pub fn set_network(&mut self, allowed: bool) {
        self.terms.network = allowed;
    }

    /// What bounds each job in this provider's sandbox (the runtime's
    /// limits): the offers and bids state them, an order that needs more
    /// is declined at bid time, and a lease must state them as they are.
    pub fn set_limits(&mut self, limits: SandboxLimits) {
        self.terms.limits = limits;
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
        let mut decision = self.decide(order, now);
        let mut escrow = Amount::ZERO;
        if let Decision::Bid(bid) = &decision {
            match self.afford(order, bid, now) {
                Ok(cost) => escrow = cost,
                Err(Shortfall::Unknown) => return Decision::NeedsBalance(order.requester),
                Err(Shortfall::Short(detail)) => {
                    decision = Decision::Decline(Decline {
                        order_id,
                        provider: self.terms.provider,
                        reason: DeclineReason::Funds,
                        detail: clip(detail),
                        created_at: now,
                    });
                }
            }
        }
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
                    start_by: None,
                    escrow,
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
            limits: self.terms.limits,
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
                limits: self.terms.limits,
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
        if terms.limits != self.terms.limits {
            return refuse(format!(
                "the lease states sandbox limits {:?}; this provider's are {:?}",
                terms.limits, self.terms.limits
            ));
        }
        // A live hold on this slot promised its bid price; otherwise the
        // offer's current price applies.
        let held = self.held_for(terms, now);
        let unheld = held.is_none();
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
        // A bid's hold was paid for when it was made; GPUs no bid holds
        // must be paid for now.
        if unheld {
            match self.cover(&terms.requester, terms.escrow, now) {
                Ok(()) => {}
                Err(Shortfall::Unknown) => {
                    return refuse("this provider has not read your balance on the ledger yet");
                }
                Err(Shortfall::Short(detail)) => return refuse(detail),
            }
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
            start_by: Some(now.plus_secs(self.lease_start_timeout_secs)),
            escrow: terms.escrow,
        };
        self.reservations.insert(terms.order_id, reservation);
        Ok(Accepted::New(lease_id))
    }

    /// The live hold of `terms`' order for its requester on its slot: a
    /// bid made to it, which fixed the price and was paid for then.
    fn held_for(&self, terms: &LeaseTerms, now: Timestamp) -> Option<&Reservation> {
        self.reservations.get(&terms.order_id).filter(|r| {
            r.kind == ReservationKind::Hold
                && r.requester == terms.requester
                && r.slot == terms.slot
                && r.live(now)
        })
    }

    /// Releases the GPUs of `order` early (a lease ended or was cancelled);
    /// returns the reservation released.
    pub fn release(&mut self, order: &OrderId) -> Option<Reservation> {
        self.reservations.remove(order)
    }

    /// Drops holds and leases that ended by `now`, and leases whose run did
    /// not start by their `start_by` (`started` says which have a run), and
    /// forgets answers to orders that expired. Returns whether GPUs were
    /// freed (republish the offers).
    pub fn expire(&mut self, now: Timestamp, started: &dyn Fn(&LeaseId) -> bool) -> bool {
        let before = self.reservations.len();
        let mut unstarted = Vec::new();
        self.reservations.retain(|_, r| {
            if let ReservationKind::Lease(id) = r.kind
                && let Some(start_by) = r.start_by
            {
                if started(&id) {
                    r.start_by = None;
                } else if now >= start_by {
                    unstarted.push((id, r.until));
                    return false;
                }
            }
            r.live(now)
        });
        for (id, until) in unstarted {
            tracing::info!(
                lease = %id,
                "the lease's run did not start in time (no escrow on the ledger, or no job): its GPUs are free again"
            );
            self.unstarted.insert(id, until);
        }
        self.unstarted.retain(|_, until| now < *until);
        self.answered.retain(|_, r| now < r.until);
        self.reservations.len() != before
    }

    /// Whether a job may still start on `lease`: not if its GPUs were given
    /// back because it did not start in time.
    pub fn may_start(&self, lease: &LeaseId) -> bool {
        !self.unstarted.contains_key(lease)
    }

    /// A job for `lease` arrived: it has `grace` more to start (admission
    /// checks the escrow on the ledger), so a job that came just in time is
    /// not cut off by the deadline while it is admitted.
    pub fn starting(&mut self, lease: &LeaseId, now: Timestamp, grace_ms: u64) {
        for r in self.reservations.values_mut() {
            if r.kind == ReservationKind::Lease(*lease)
                && let Some(start_by) = r.start_by
            {
                r.start_by = Some(start_by.max(now.plus_ms(grace_ms)));
            }
        }
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
        R::Network => 2,
        R::Limits => 3,
        R::Simulated => 4,
        R::Unverified => 5,
        R::Model => 6,
        R::Vram => 7,
        R::Compute => 8,
        R::Region => 9,
        R::Jurisdiction => 10,
        R::Energy => 11,
        R::Duration => 12,
        R::NoCapacity => 13,
        R::Price => 14,
        // Only once everything else fits.
        R::Funds => 15,
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

mod funds;
#[cfg(test)]
pub(crate) mod tests;
