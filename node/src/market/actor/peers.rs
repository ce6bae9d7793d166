//! The router's side of the network: gossip into the book and the
//! provider core, direct requests to the cores or the executor, and the
//! provider's answers to orders on their way.

use std::time::Duration;

use agora_protocol::{Amount, Order, PublicKey, Signed, Timestamp};
use libp2p::PeerId;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{Done, Label, Router};
use crate::clock::now;
use crate::network::{NetworkEvent, NetworkHandle, Request, Response};
use crate::provider::core::{OrderAnswer, OrderOutcome};

/// A busy requester is asked again this many times for a bid or decline.
const ANSWER_RETRIES: u32 = 3;

/// Requesters whose balances are being read from the ledger at once…
const MAX_BALANCE_READS: usize = 64;
/// …and orders waiting on each read.
const MAX_ORDERS_PER_BALANCE_READ: usize = 16;
/// The longest a balance read may take.
const BALANCE_READ_TIMEOUT: Duration = Duration::from_secs(5);

impl Router {
    // ---- network ----

    pub(super) async fn handle_network(&mut self, event: NetworkEvent) {
        let now = now();
        match event {
            NetworkEvent::Offer { offer, via } => {
                let id = offer.message().id();
                self.arrivals.record(offer.message(), false, now);
                if self.book.insert(offer.clone(), now).accepted() {
                    if let Err(e) = self.store.put_offer(&offer) {
                        warn!(error = %e, "cannot store offer");
                    }
                    debug!(offer = %id, %via, "offer accepted");
                }
            }
            NetworkEvent::Order { order, via } => self.handle_order(order, via, now, true).await,
            NetworkEvent::Request {
                peer,
                request,
                reply,
            } => self.handle_request(peer, request, reply, now).await,
            NetworkEvent::OffersSubscriber(peer) => {
                if self
                    .provider
                    .as_ref()
                    .is_some_and(|p| p.republish_for_subscriber(now))
                {
                    debug!(%peer, "new offers subscriber; republishing");
                    self.publish_offers().await;
                }
            }
        }
    }

    /// The provider's answer to an order; with `may_read`, an order whose
    /// requester's balance is not known waits for it to be read.
    async fn handle_order(
        &mut self,
        order: Signed<Order>,
        via: PeerId,
        now: Timestamp,
        may_read: bool,
    ) {
        let Some(provider) = self.provider.as_mut() else {
            return;
        };
        let seen = provider.role().orders_seen;
        match provider.on_order(&order, now) {
            OrderOutcome::Answer(answer) => {
                self.answer_order(&order, via, seen, Some(answer)).await
            }
            OrderOutcome::Nothing => self.answer_order(&order, via, seen, None).await,
            OrderOutcome::NeedsBalance(requester) if may_read => {
                self.read_balance(requester, order, via);
            }
            // Read just now, and already no longer trusted (the clock
            // jumped): not answered.
            OrderOutcome::NeedsBalance(_) => self.metrics.order_unanswered("busy"),
        }
    }

    /// Counts the provider's answer to `order` (if it is the first; `seen`
    /// is the orders count before it) and sends it.
    async fn answer_order(
        &mut self,
        order: &Signed<Order>,
        via: PeerId,
        seen: u64,
        answer: Option<OrderAnswer>,
    ) {
        let Some(provider) = self.provider.as_ref() else {
            return;
        };
        if provider.role().orders_seen > seen {
            self.metrics.orders_seen.inc();
            if let Some(answer) = &answer {
                self.metrics.order_answered(match &answer.request {
                    Request::Decline(d) => Some(d.message().reason),
                    _ => None,
                });
            }
        }
        let Some(answer) = answer else {
            return;
        };
        let order_id = order.message().id();
        info!(order = %order_id, %via, bid = answer.is_bid, "answering order");
        self.provider_dirty = true;
        self.write_dirty();
        if answer.is_bid {
            // A bid holds GPUs: durable before it goes out.
            if let Err(e) = self.store.flush() {
                warn!(error = %e, "cannot store the bid's hold; not bidding");
                return;
            }
            self.publish_offers().await;
        }
        let network = self.network.clone();
        let work = async move {
            Done::OrderAnswer(send_answer(&network, answer.to, answer.request).await)
        };
        let label = Label::OrderAnswer {
            order: order_id,
            is_bid: answer.is_bid,
        };
        if self.pool.submit(label, work).is_err() {
            warn!(order = %order_id, why = %self.overloaded(), "bid or decline not sent");
            self.order_answer_lost(order_id, answer.is_bid).await;
        }
    }

    /// Parks `order` until `requester`'s balance is read from the ledger,
    /// starting the read unless one is on its way. Past the bounds (reads
    /// in flight, orders waiting on one) the order is dropped unanswered,
    /// counted and logged: its requester hears nothing from this provider.
    fn read_balance(&mut self, requester: PublicKey, order: Signed<Order>, via: PeerId) {
        let order_id = order.message().id();
        if !self.balance_reads.contains_key(&requester) {
            self.start_balance_read(requester);
        }
        if let Some(waiting) = self.balance_reads.get_mut(&requester)
            && waiting.len() < MAX_ORDERS_PER_BALANCE_READ
        {
            waiting.push((order, via));
            return;
        }
        self.metrics.order_unanswered("busy");
        warn!(order = %order_id, requester = %requester.short(), %via, "too many balance reads waiting; order not answered");
    }

    /// Starts reading `requester`'s balance from the ledger, unless too
    /// many reads are on their way or the pool is full; whether it started.
    fn start_balance_read(&mut self, requester: PublicKey) -> bool {
        if self.balance_reads.len() >= MAX_BALANCE_READS {
            return false;
        }
        let ledger = self.cx.ledger.clone();
        let work = async move {
            let read = tokio::time::timeout(BALANCE_READ_TIMEOUT, ledger.balance(&requester));
            Done::Balance(match read.await {
                Ok(Ok(balance)) => Ok(balance),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer in {} s", BALANCE_READ_TIMEOUT.as_secs())),
            })
        };
        if self.pool.submit(Label::Balance(requester), work).is_err() {
            return false;
        }
        self.balance_reads.insert(requester, Vec::new());
        true
    }

    /// `requester`'s balance came back from the ledger (or did not): the
    /// orders waiting on it are answered now.
    pub(super) async fn balance_read(
        &mut self,
        requester: PublicKey,
        balance: Result<Amount, String>,
    ) {
        let now = now();
        if let Err(e) = &balance {
            warn!(requester = %requester.short(), error = %e, "cannot read a requester's balance on the ledger");
        }
        if let Some(provider) = self.provider.as_mut() {
            provider.set_balance(requester, balance, now);
        }
        for (order, via) in self.balance_reads.remove(&requester).unwrap_or_default() {
            self.handle_order(order, via, now, false).await;
        }
    }

    async fn handle_request(
        &mut self,
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Response>,
        now: Timestamp,
    ) {
        let executor = self.executor.clone();
        match (request, executor) {
            // The executor answers its own requests off the loop.
            (Request::JobPayload(payload), Some(exec)) => {
                let lease = payload.message().lease_id;
                if let Some(Err(why)) = self.provider.as_mut().map(|p| p.job_arrived(&lease, now)) {
                    let _ = reply.send(Response::Refused(why));
                    return;
                }
                self.answer_off_loop(reply, async move { exec.on_payload(peer, payload).await });
            }
            (Request::JobControl(control), Some(exec)) => {
                self.answer_off_loop(reply, async move { exec.on_control(peer, control).await });
            }
            (Request::Fetch(fetch), Some(exec)) => {
                self.answer_off_loop(reply, async move { exec.on_fetch(peer, fetch).await });
            }
            (Request::JobPayload(_) | Request::JobControl(_) | Request::Fetch(_), None) => {
                let _ = reply.send(Response::Refused("this node runs no jobs".into()));
            }
            (Request::LeaseProposal(terms), _) => {
                let response = self.countersign(peer, terms, now).await;
                let _ = reply.send(response);
            }
            (request, _) => {
                let answer = match request {
                    Request::Bid(bid) => self.requester.on_bid(peer, bid, now),
                    Request::Decline(decline) => self.requester.on_decline(peer, decline, now),
                    Request::Update(update) => self.requester.on_update(peer, update, now),
                    Request::Receipt(receipt) => self.requester.on_receipt(peer, receipt, now),
                    Request::Close(close) => self.requester.on_close(peer, close, now),
                    // Matched above.
                    Request::JobPayload(_)
                    | Request::JobControl(_)
                    | Request::Fetch(_)
                    | Request::LeaseProposal(_) => return,
                };
                let response = self.answer(answer).await;
                let _ = reply.send(response);
            }
        }
    }

    /// Runs `work` in the pool and sends its response; a full pool answers
    /// "retry" at once, so the peer tries again later.
    fn answer_off_loop<F>(&mut self, reply: oneshot::Sender<Response>, work: F)
    where
        F: std::future::Future<Output = Response> + Send + 'static,
    {
        if !self.pool.has_room() {
            let _ = reply.send(Response::Retry(format!("busy: {}", self.overloaded())));
            return;
        }
        let task = async move {
            let _ = reply.send(work.await);
            Done::Answered
        };
        // There is room: the pool takes it.
        let _ = self.pool.submit(Label::Answer, task);
    }

    async fn countersign(
        &mut self,
        peer: PeerId,
        terms: Signed<agora_protocol::LeaseTerms>,
        now: Timestamp,
    ) -> Response {
        let Some(needs_balance) = self
            .provider
            .as_ref()
            .map(|p| terms.signer().peer_id() == peer && p.proposal_needs_balance(&terms, now))
        else {
            return Response::Refused("this node is not a provider".into());
        };
        if needs_balance {
            let requester = terms.message().requester;
            if self.balance_reads.contains_key(&requester) || self.start_balance_read(requester) {
                return Response::Retry("reading your balance on the ledger; ask again".into());
            }
            return Response::Retry(format!("busy: {}", self.overloaded()));
        }
        let Some(provider) = self.provider.as_mut() else {
            return Response::Refused("this node is not a provider".into());
        };
        let lease = match provider.countersign(peer, &terms, now) {
            Ok(lease) => lease,
            Err(reason) => return Response::Refused(reason),
        };
        self.provider_dirty = true;
        self.write_dirty();
        // Durable before the requester hears of it (put_lease flushes).
        if let Err(e) = self.store.put_lease(&lease) {
            warn!(error = %e, "cannot store the lease; refusing it");
            return Response::Refused("the provider cannot store the lease".into());
        }
        self.metrics.lease_signed("provider");
        self.publish_offers().await;
        Response::Lease(lease.cosigned().clone())
    }
}

/// Sends a bid or decline; a busy or unreachable requester is asked again
/// with backoff.
async fn send_answer(network: &NetworkHandle, to: PeerId, request: Request) -> Result<(), String> {
    let mut backoff = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        let last = match network.request(to, request.clone()).await {
            Ok(Response::Ack) => return Ok(()),
            Ok(Response::Refused(reason)) => return Err(reason),
            Ok(Response::Retry(reason)) => reason,
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            // A stream that could not open, a dropped connection: as
            // transient as "busy".
            Err(e) => e.to_string(),
        };
        tries += 1;
        if tries > ANSWER_RETRIES {
            return Err(format!("the requester stayed busy: {last}"));
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}
