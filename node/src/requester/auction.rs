//! From submission to a funded lease: the order goes out (or an offer is
//! chosen directly), bids and declines come in, the window closes, the best
//! admissible bid is proposed a lease, and a refusal moves to the next.

use agora_client::api::{JobSpec, JobState};
use agora_protocol::matching::{bid_admissible, compare_bids};
use agora_protocol::{
    Amount, Bid, Decline, LeaseTerms, Offer, Order, OrderId, PublicKey, SandboxLimits, Signed,
    Timestamp,
};
use libp2p::PeerId;
use tracing::info;

use super::core::{Answer, MAX_JOBS, Refusal, Requester, RequesterError, Task};
use super::events::JobEventKind;
use super::job::{Declined, FORMAT, JobRecord, ReceivedBid, RunProgress, Wire};
use super::lease::{LeaseFailure, LeaseOutcome};
use crate::network::Response;

/// A lease attempt (countersignature plus escrow lock, with their retries)
/// that has not reported by then is given up.
pub(crate) const LEASE_ATTEMPT_DEADLINE_MS: u64 = 120_000;

/// No reputation system yet: every provider counts the same.
fn reputation(_: &PublicKey) -> u16 {
    1000
}

/// The terms of a lease with `provider` for `order`.
struct Proposal<'a> {
    provider: PublicKey,
    slot: u32,
    gpu_model: &'a str,
    price: Amount,
    simulated: bool,
    limits: SandboxLimits,
}

impl<'a> Proposal<'a> {
    fn of_bid(bid: &'a Bid) -> Self {
        Self {
            provider: bid.provider,
            slot: bid.slot,
            gpu_model: &bid.gpu_model,
            price: bid.price_per_gpu_hour,
            simulated: bid.simulated,
            limits: bid.limits,
        }
    }
    fn of_offer(offer: &'a Offer) -> Self {
        Self {
            provider: offer.provider,
            slot: offer.slot,
            gpu_model: &offer.gpu_model,
            price: offer.price_per_gpu_hour,
            simulated: offer.simulated,
            limits: offer.limits,
        }
    }
}

impl Requester {
    /// A new job: with `offer` (already checked against the order by the
    /// router, which owns the book) it is leased at once; otherwise its
    /// order is published and an auction opens.
    pub fn submit(
        &mut self,
        order: Order,
        spec: JobSpec,
        offer: Option<Signed<Offer>>,
        now: Timestamp,
    ) -> Result<OrderId, RequesterError> {
        if self.jobs.len() >= MAX_JOBS {
            return Err(RequesterError::new(
                Refusal::Unavailable,
                format!("this node tracks {MAX_JOBS} jobs already"),
            ));
        }
        let signed = Signed::sign(order, &self.key)
            .map_err(|e| RequesterError::new(Refusal::BadRequest, e.to_string()))?;
        let id = signed.message().id();
        if self.jobs.contains_key(&id) {
            return Err(RequesterError::new(
                Refusal::Conflict,
                format!("job {id} exists already"),
            ));
        }
        let window = u64::from(signed.message().bid_window_ms);
        let bytes = signed.encode();
        let record = JobRecord {
            format: FORMAT,
            order: Wire(signed),
            spec,
            state: JobState::Bidding,
            reason: None,
            submitted_at: now,
            offer: offer.as_ref().map(|o| o.message().id().to_string()),
            bids: Vec::new(),
            declines: Vec::new(),
            tried: Vec::new(),
            closes_at: now.plus_ms(window),
            leasing_since: None,
            lease: None,
            escrow_locked: false,
            events: Vec::new(),
            exit_code: None,
            receipt: None,
            settlement: None,
            manifest: None,
            results_fetched: false,
            log_seq: 0,
            run: RunProgress::default(),
        };
        self.jobs.insert(id, record);
        self.event(id, now, JobEventKind::Submitted, "");
        match offer {
            Some(offer) => {
                self.set_state(id, JobState::Leasing);
                self.persist(id);
                self.propose(id, &Proposal::of_offer(offer.message()), now);
            }
            None => {
                self.effect(super::core::Effect::Publish(id, bytes));
                self.event(id, now, JobEventKind::OrderPublished, "");
                self.auctions.insert((now.plus_ms(window), id));
                self.persist(id);
            }
        }
        Ok(id)
    }

    /// The order could not be published: the job fails, visibly.
    pub fn publish_failed(&mut self, id: OrderId, reason: String, now: Timestamp) {
        if self
            .jobs
            .get(&id)
            .is_some_and(|j| j.state == JobState::Bidding)
        {
            self.auctions.retain(|(_, o)| *o != id);
            self.fail(
                id,
                now,
                format!("the order could not be published: {reason}"),
            );
        }
    }

    pub(super) fn set_state(&mut self, id: OrderId, state: JobState) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.state = state;
        }
    }

    /// A provider's bid, while the auction is open.
    pub fn on_bid(&mut self, peer: PeerId, bid: Signed<Bid>, now: Timestamp) -> Answer {
        if bid.signer().peer_id() != peer {
            return Answer::plain(Response::Refused(
                "a bid must come from its provider".into(),
            ));
        }
        let id = bid.message().order_id;
        let Some(job) = self.jobs.get_mut(&id) else {
            return Answer::plain(Response::Refused("no such order".into()));
        };
        if job.state != JobState::Bidding {
            return Answer::plain(Response::Refused("the auction is closed".into()));
        }
        if !bid_admissible(job.order.0.message(), bid.message(), now) {
            return Answer::plain(Response::Refused("the bid does not meet the order".into()));
        }
        if job
            .bids
            .iter()
            .any(|b| b.bid.0.message().provider == bid.message().provider)
        {
            return Answer::plain(Response::Ack);
        }
        let b = bid.message();
        let detail = format!(
            "{} {}× {} at {}",
            b.provider.short(),
            b.gpu_count,
            b.gpu_model,
            b.price_per_gpu_hour
        );
        job.bids.push(ReceivedBid {
            bid: Wire(bid),
            at: now,
        });
        self.event(id, now, JobEventKind::Bid, detail);
        self.persist(id);
        Answer::plain(Response::Ack)
    }

    /// A provider's decline.
    pub fn on_decline(&mut self, peer: PeerId, decline: Signed<Decline>, now: Timestamp) -> Answer {
        if decline.signer().peer_id() != peer {
            return Answer::plain(Response::Refused(
                "a decline must come from its provider".into(),
            ));
        }
        let d = decline.message();
        let id = d.order_id;
        let Some(job) = self.jobs.get_mut(&id) else {
            return Answer::plain(Response::Refused("no such order".into()));
        };
        if job.declines.iter().any(|x| x.provider == d.provider) {
            return Answer::plain(Response::Ack);
        }
        job.declines.push(Declined {
            provider: d.provider,
            reason: d.reason,
            detail: d.detail.clone(),
        });
        let detail = format!("{}: {:?}: {}", d.provider.short(), d.reason, d.detail);
        self.event(id, now, JobEventKind::Decline, detail);
        self.persist(id);
        Answer::plain(Response::Ack)
    }

    /// The bid window closed.
    pub(super) fn close_auction(&mut self, id: OrderId, now: Timestamp) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.state != JobState::Bidding {
            return;
        }
        let bids = job.bids.len();
        let reasons: Vec<String> = job
            .declines
            .iter()
            .map(|d| format!("{}: {:?} ({})", d.provider.short(), d.reason, d.detail))
            .collect();
        self.event(id, now, JobEventKind::AuctionClosed, format!("{bids} bids"));
        if bids == 0 {
            let reason = if reasons.is_empty() {
                "no provider answered".to_string()
            } else {
                format!("every provider declined: {}", reasons.join("; "))
            };
            self.set_state(id, JobState::NoBids);
            if let Some(job) = self.jobs.get_mut(&id) {
                job.reason = Some(reason.clone());
            }
            self.event(id, now, JobEventKind::NoBids, reason);
            self.persist(id);
            return;
        }
        self.set_state(id, JobState::Leasing);
        self.persist(id);
        self.next_lease_attempt(id, now);
    }

    /// Proposes a lease to the best bidder not yet tried, or ends the job.
    pub(super) fn next_lease_attempt(&mut self, id: OrderId, now: Timestamp) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        // The instant path has no bids: its one offer was refused.
        if job.bids.is_empty() {
            self.fail(id, now, "the offer could not be leased".into());
            return;
        }
        let order = job.order.0.message();
        let mut bids: Vec<&Bid> = job
            .bids
            .iter()
            .map(|b| b.bid.0.message())
            .filter(|b| !job.tried.contains(&b.provider))
            .filter(|b| bid_admissible(order, b, now))
            .collect();
        bids.sort_by(|a, b| compare_bids(a, b, &reputation));
        let Some(best) = bids.first().map(|b| (*b).clone()) else {
            self.fail(
                id,
                now,
                "every bidder refused or could not be reached".into(),
            );
            return;
        };
        self.propose(id, &Proposal::of_bid(&best), now);
    }

    /// Instant-path jobs that were leasing when the node stopped, with the
    /// offer each asked for: the router looks them up in its book and
    /// calls [`Self::resume_instant`].
    pub fn instant_to_resume(&self) -> Vec<(OrderId, Option<String>)> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Leasing && j.bids.is_empty())
            .filter(|(_, j)| j.leasing_since.is_none() && j.lease().is_none())
            .map(|(id, j)| (*id, j.offer.clone()))
            .collect()
    }

    /// The instant path after a restart: lease `offer` (from the book) if
    /// it was not tried yet, else the job fails.
    pub fn resume_instant(&mut self, id: OrderId, offer: Option<Signed<Offer>>, now: Timestamp) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.state != JobState::Leasing || !job.bids.is_empty() {
            return;
        }
        match offer {
            Some(offer) if job.tried.is_empty() => {
                self.propose(id, &Proposal::of_offer(offer.message()), now);
            }
            _ => self.fail(id, now, "the offer could not be leased".into()),
        }
    }

    fn propose(&mut self, id: OrderId, p: &Proposal<'_>, now: Timestamp) {
        let requester = self.key.public();
        let interval = self.settings.receipt_interval_secs;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.tried.push(p.provider);
        job.leasing_since = Some(now);
        let order = job.order.0.message();
        let Some(escrow) =
            LeaseTerms::required_escrow(p.price, order.gpu_count, order.max_duration_secs)
        else {
            self.fail(id, now, "the escrow overflows".into());
            return;
        };
        let terms = LeaseTerms {
            order_id: id,
            requester,
            provider: p.provider,
            slot: p.slot,
            gpu_model: p.gpu_model.to_string(),
            gpu_count: order.gpu_count,
            price_per_gpu_hour: p.price,
            max_duration_secs: order.max_duration_secs,
            receipt_interval_secs: interval,
            starts_at: now,
            escrow,
            simulated: p.simulated,
            limits: p.limits,
        };
        let proposal = match Signed::sign(terms, &self.key) {
            Ok(p) => p,
            Err(e) => {
                self.fail(id, now, format!("cannot sign the lease terms: {e}"));
                return;
            }
        };
        self.event(id, now, JobEventKind::LeaseProposed, p.provider.short());
        self.persist(id);
        self.start(id, Task::Lease(Box::new(proposal)));
    }

    /// A lease attempt ended.
    pub(super) fn lease_outcome(&mut self, outcome: LeaseOutcome, now: Timestamp) {
        let id = outcome.order;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state != JobState::Leasing {
            return;
        }
        job.leasing_since = None;
        match outcome.result {
            Ok(lease) => {
                // Stored before the lock goes out: a node killed while it
                // is on its way knows the lease on restart and locks again.
                let lease_id = lease.id();
                job.lease = Some(Wire(lease));
                job.escrow_locked = false;
                self.by_lease.insert(lease_id, id);
                self.event(id, now, JobEventKind::LeaseSigned, lease_id.to_string());
                self.persist(id);
                self.lock(id);
            }
            Err(LeaseFailure::Provider(reason)) => {
                let detail = format!("{}: {reason}", outcome.provider.short());
                self.event(id, now, JobEventKind::LeaseRefused, detail);
                self.persist(id);
                self.next_lease_attempt(id, now);
            }
        }
    }

    /// Locks the escrow of the job's countersigned (and stored) lease.
    pub(super) fn lock(&mut self, id: OrderId) {
        let Some(lease) = self.jobs.get(&id).and_then(|j| j.lease()).cloned() else {
            return;
        };
        self.start(id, Task::Lock(Box::new(lease)));
    }

    /// The lock of the job's lease ended: the run starts, or the job fails.
    pub(super) fn locked(&mut self, id: OrderId, result: Result<(), String>, now: Timestamp) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state != JobState::Leasing {
            return;
        }
        let Some(lease) = job.lease() else {
            return;
        };
        let (lease_id, escrow, provider) =
            (lease.id(), lease.terms().escrow, lease.terms().provider);
        match result {
            Ok(()) => {
                job.escrow_locked = true;
                self.event(id, now, JobEventKind::EscrowLocked, escrow.to_string());
                self.set_state(id, JobState::Leased);
                info!(job = %id, lease = %lease_id, provider = %provider.short(), "leased");
                self.persist(id);
                self.start_run(id, now);
            }
            Err(reason) => self.fail(id, now, format!("escrow could not be locked: {reason}")),
        }
    }

    /// A lease attempt that never reported (it cannot, short of a bug)
    /// still ends: the job fails with the reason rather than wait forever.
    pub(super) fn expire_lease_attempts(&mut self, now: Timestamp) {
        let stuck: Vec<OrderId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Leasing)
            .filter(|(_, j)| {
                j.leasing_since
                    .is_some_and(|t| now.ms_since(t) > LEASE_ATTEMPT_DEADLINE_MS)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            self.fail(
                id,
                now,
                format!(
                    "the lease attempt did not finish within {} s",
                    LEASE_ATTEMPT_DEADLINE_MS / 1000
                ),
            );
        }
    }
}
