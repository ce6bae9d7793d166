//! The market's event loop: one `select!` over network events, commands,
//! auction deadlines and the refresh tick.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agora_client::api::{
    BidView, DeclineView, GpuView, JobSpec, JobState, JobView, NodeInfo, OfferView, OffersPage,
    ProviderStatus, Role,
};
use agora_protocol::Ledger;
use agora_protocol::matching::{Score, compare_bids, fit};
use agora_protocol::{
    Bid, Decline, Keypair, Lease, LeaseTerms, Offer, OfferBook, OfferId, Order, OrderId, Query,
    Signed, SortKey, Timestamp,
};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;
use tracing::{debug, info, warn};

use super::COMMAND_CAPACITY;
use super::arrivals::{ARRIVALS_KEPT, Arrivals};
use super::handle::{Command, MarketError, MarketHandle};
use super::jobs::{JobRecord, LeaseFailure, LeaseOutcome, attempt_lease, lease_view};
use crate::clock::now;
use crate::config::Config;
use crate::network::{NetworkEvent, NetworkHandle, OFFERS_TOPIC, ORDERS_TOPIC, Request, Response};
use crate::provider::ProviderRole;
use crate::provider::exec::Executor;
use crate::store::Store;

mod runs;
pub(crate) use runs::RunNote;

/// Offers a node keeps at most, and per provider.
const BOOK_CAPACITY: usize = 100_000;
const BOOK_PER_PROVIDER: usize = 64;
/// Lease attempts and deliveries in flight at most.
const MAX_TASKS: usize = 512;
/// Jobs kept in memory at most (older finished ones stay in the store).
const MAX_JOBS: usize = 10_000;

/// Everything the market actor needs.
pub struct MarketOptions {
    /// This node's key.
    pub key: Keypair,
    /// Role.
    pub role: Role,
    /// Configuration.
    pub config: Config,
    /// Durable state.
    pub store: Store,
    /// The swarm.
    pub network: NetworkHandle,
    /// Validated gossip and requests.
    pub events: mpsc::Receiver<NetworkEvent>,
    /// The ledger.
    pub ledger: Arc<dyn Ledger>,
    /// The provider role, when this node rents out GPUs.
    pub provider: Option<ProviderRole>,
    /// Runs leased jobs, when this node rents out GPUs.
    pub executor: Option<Executor>,
    /// Orders whose runs ended (their GPUs are free again).
    pub runs_ended: mpsc::Receiver<OrderId>,
    /// Why the provider's runtime cannot run jobs (`None` while it can).
    pub runtime_health: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// Where a requester keeps fetched outputs.
    pub results_dir: PathBuf,
    /// Stops the actor.
    pub cancel: CancellationToken,
}

/// Restores state from the store and spawns the actor.
pub fn spawn(options: MarketOptions) -> Result<MarketHandle, MarketError> {
    let (tx, commands) = mpsc::channel(COMMAND_CAPACITY);
    let handle = MarketHandle { commands: tx };
    let now = now();
    let mut book = OfferBook::new(BOOK_CAPACITY, BOOK_PER_PROVIDER);
    for offer in options
        .store
        .offers()
        .map_err(|e| MarketError::internal(e.to_string()))?
    {
        // Expired or superseded offers leave the store here, once, rather
        // than on every expiry tick.
        let id = offer.message().id();
        if !book.insert(offer, now).accepted() {
            let _ = options.store.remove_offer(&id);
        }
    }
    let mut jobs = HashMap::new();
    let mut deadlines = DelayQueue::new();
    let mut resume = Vec::new();
    let mut running = Vec::new();
    let mut lease_jobs = HashMap::new();
    for record in options
        .store
        .jobs::<JobRecord>()
        .map_err(|e| MarketError::internal(e.to_string()))?
    {
        let Some(id) = record.view.id.parse::<OrderId>().ok() else {
            continue;
        };
        match record.view.state {
            JobState::Bidding => {
                let wait = record.closes_at.0.saturating_sub(now.0);
                deadlines.insert(id, Duration::from_millis(wait));
            }
            JobState::Leasing => resume.push(id),
            JobState::Leased | JobState::Running => running.push(id),
            _ => {}
        }
        if let Some(lease) = record.view.lease.as_ref().and_then(|l| l.id.parse().ok()) {
            lease_jobs.insert(lease, id);
        }
        jobs.insert(id, record);
    }
    let mut actor = Actor {
        key: options.key,
        role: options.role,
        config: options.config,
        store: options.store,
        network: options.network,
        events: options.events,
        ledger: options.ledger,
        provider: options.provider,
        executor: options.executor,
        runs_ended: options.runs_ended,
        runtime_health: options.runtime_health,
        results_dir: options.results_dir,
        lease_jobs,
        fetching: HashSet::new(),
        settle_checks: HashMap::new(),
        cancel: options.cancel,
        commands,
        self_handle: handle.clone(),
        book,
        jobs,
        deadlines,
        tasks: Arc::new(tokio::sync::Semaphore::new(MAX_TASKS)),
        last_offer_publish: None,
        arrivals: Arrivals::new(ARRIVALS_KEPT),
        quick_escrow_reads: HashMap::new(),
    };
    for id in resume {
        actor.next_lease_attempt(id, now);
    }
    for id in running {
        actor.start_run(id, now);
    }
    tokio::spawn(actor.run());
    Ok(handle)
}

struct Actor {
    key: Keypair,
    role: Role,
    config: Config,
    store: Store,
    network: NetworkHandle,
    events: mpsc::Receiver<NetworkEvent>,
    ledger: Arc<dyn Ledger>,
    provider: Option<ProviderRole>,
    executor: Option<Executor>,
    runs_ended: mpsc::Receiver<OrderId>,
    runtime_health: Option<tokio::sync::watch::Receiver<Option<String>>>,
    results_dir: PathBuf,
    /// Leases of this requester's jobs.
    lease_jobs: HashMap<agora_protocol::LeaseId, OrderId>,
    /// Jobs whose outputs are being fetched.
    fetching: HashSet<OrderId>,
    /// When each settling job's escrow is read next.
    settle_checks: HashMap<OrderId, Timestamp>,
    cancel: CancellationToken,
    commands: mpsc::Receiver<Command>,
    self_handle: MarketHandle,
    book: OfferBook,
    jobs: HashMap<OrderId, JobRecord>,
    deadlines: DelayQueue<OrderId>,
    tasks: Arc<tokio::sync::Semaphore>,
    last_offer_publish: Option<Timestamp>,
    /// When each offer version was first seen here.
    arrivals: Arrivals,
    /// Settling jobs whose escrow is re-read quickly: reads done so far.
    quick_escrow_reads: HashMap<OrderId, u32>,
}

pub(crate) fn offer_view(offer: &Signed<Offer>) -> OfferView {
    let o = offer.message();
    OfferView {
        id: o.id().to_string(),
        provider: o.provider,
        provider_peer: o.provider.peer_id().to_string(),
        slot: o.slot,
        sequence: o.sequence,
        gpu_model: o.gpu_model.clone(),
        vram_mib: o.vram_mib,
        compute_capability: o.compute_capability,
        fp32_mtflops: o.benchmark.fp32_mtflops,
        verified: o.verified(),
        gpu_total: o.gpu_total,
        gpu_free: o.gpu_free,
        price_per_gpu_hour: o.price_per_gpu_hour,
        region: o.region.clone(),
        jurisdiction: o.jurisdiction.clone(),
        energy: o.energy,
        simulated: o.simulated,
        runtimes: o.runtimes.clone(),
        created_at: o.created_at,
        expires_at: o.expires_at,
    }
}

fn bid_view(bid: &Signed<Bid>, received_at: Timestamp) -> BidView {
    let b = bid.message();
    BidView {
        provider: b.provider,
        slot: b.slot,
        gpu_model: b.gpu_model.clone(),
        gpu_count: b.gpu_count,
        price_per_gpu_hour: b.price_per_gpu_hour,
        fp32_mtflops: b.fp32_mtflops,
        score: Score::new(b.price_per_gpu_hour, b.fp32_mtflops, 1000)
            .per_tflop_hour()
            .to_string(),
        received_at,
    }
}

/// No reputation system yet: every provider counts the same.
fn reputation(_: &agora_protocol::PublicKey) -> u16 {
    1000
}

impl Actor {
    async fn run(mut self) {
        let refresh_secs = self.config.node.offer_refresh_secs.max(1);
        let mut refresh = tokio::time::interval(Duration::from_secs(refresh_secs));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut expire = tokio::time::interval(Duration::from_secs(1));
        expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                Some(event) = self.events.recv() => self.handle_network(event).await,
                Some(command) = self.commands.recv() => self.handle_command(command).await,
                Some(expired) = futures::StreamExt::next(&mut self.deadlines), if !self.deadlines.is_empty() => {
                    self.close_auction(expired.into_inner());
                }
                Some(order) = self.runs_ended.recv() => self.run_ended(order).await,
                _ = refresh.tick() => self.publish_offers().await,
                _ = expire.tick() => self.expire().await,
            }
        }
        if let Err(e) = self.store.flush() {
            warn!(error = %e, "flushing the store on shutdown failed");
        }
        debug!("market actor stopped");
    }

    fn spawn_task<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.tasks.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    task.await;
                    drop(permit);
                });
            }
            Err(_) => warn!("too many tasks in flight; dropping one"),
        }
    }

    // ---- network ----

    async fn handle_network(&mut self, event: NetworkEvent) {
        let now = now();
        match event {
            NetworkEvent::Offer { offer, via } => {
                let id = offer.message().id();
                self.arrivals.record(offer.message(), false, now);
                let outcome = self.book.insert(offer.clone(), now);
                if outcome.accepted() {
                    if let Err(e) = self.store.put_offer(&offer) {
                        warn!(error = %e, "cannot store offer");
                    }
                    debug!(offer = %id, %via, "offer accepted");
                }
            }
            NetworkEvent::Order { order, via } => self.handle_order(order, via, now).await,
            NetworkEvent::Request {
                peer,
                request,
                reply,
            } => match (request, self.executor.clone()) {
                // The executor answers its own requests off the actor.
                (Request::JobPayload(payload), Some(exec)) => {
                    self.spawn_task(async move {
                        let _ = reply.send(exec.on_payload(peer, payload).await);
                    });
                }
                (Request::JobControl(control), Some(exec)) => {
                    let _ = reply.send(exec.on_control(peer, control));
                }
                (Request::Fetch(fetch), Some(exec)) => {
                    self.spawn_task(async move {
                        let _ = reply.send(exec.on_fetch(peer, fetch).await);
                    });
                }
                (request, _) => {
                    let response = self.handle_request(peer, request, now).await;
                    let _ = reply.send(response);
                }
            },
            NetworkEvent::OffersSubscriber(peer) => {
                // Announce ourselves to a newcomer, but at most once per
                // half refresh: in a large mesh peers (re)subscribe all the
                // time, and a republish per subscriber was O(N²) gossip
                // (100 nodes: 10× the refresh's traffic; see
                // docs/performance.md).
                let min_gap_ms = (self.config.node.offer_refresh_secs * 1000 / 2).max(1000);
                let recent = self
                    .last_offer_publish
                    .is_some_and(|at| now.ms_since(at) < min_gap_ms);
                if !recent {
                    debug!(%peer, "new offers subscriber; republishing");
                    self.publish_offers().await;
                }
            }
        }
    }

    async fn handle_order(&mut self, order: Signed<Order>, via: PeerId, now: Timestamp) {
        let Some(provider) = self.provider.as_mut() else {
            return;
        };
        let requester = order.message().requester;
        if requester == self.key.public() {
            return;
        }
        let Some(decision) = provider.on_order(order.message(), now) else {
            return;
        };
        let request = match decision {
            crate::provider::Decision::Bid(bid) => match Signed::sign(bid, &self.key) {
                Ok(bid) => Request::Bid(bid),
                Err(e) => {
                    warn!(error = %e, "cannot sign a bid");
                    return;
                }
            },
            crate::provider::Decision::Ignore(_) => return,
            crate::provider::Decision::Decline(decline) => match Signed::sign(decline, &self.key) {
                Ok(decline) => Request::Decline(decline),
                Err(e) => {
                    warn!(error = %e, "cannot sign a decline");
                    return;
                }
            },
        };
        let is_bid = matches!(request, Request::Bid(_));
        info!(order = %order.message().id(), %via, bid = is_bid, "answering order");
        self.persist_provider();
        if is_bid {
            self.publish_offers().await;
        }
        let network = self.network.clone();
        let handle = self.self_handle.clone();
        let order_id = order.message().id();
        self.spawn_task(async move {
            let result = network.request(requester.peer_id(), request).await;
            let reason = match result {
                Ok(Response::Ack) => return,
                Ok(Response::Refused(reason)) => reason,
                Ok(Response::Retry(reason)) => reason,
                Ok(other) => format!("unexpected answer {other:?}"),
                Err(e) => e.to_string(),
            };
            let _ = handle
                .commands
                .send(Command::Undelivered {
                    order: order_id,
                    reason,
                })
                .await;
        });
    }

    async fn handle_request(&mut self, peer: PeerId, request: Request, now: Timestamp) -> Response {
        match request {
            Request::Bid(bid) => self.receive_bid(peer, bid, now),
            Request::Decline(decline) => self.receive_decline(peer, decline, now),
            Request::LeaseProposal(terms) => self.countersign(peer, terms, now).await,
            Request::Update(update) => self.on_update(peer, update, now),
            Request::Receipt(receipt) => self.on_receipt(peer, receipt, now),
            Request::JobPayload(_) | Request::JobControl(_) | Request::Fetch(_) => {
                Response::Refused("this node runs no jobs".into())
            }
        }
    }

    fn receive_bid(&mut self, peer: PeerId, bid: Signed<Bid>, now: Timestamp) -> Response {
        if bid.signer().peer_id() != peer {
            return Response::Refused("a bid must come from its provider".into());
        }
        let Some(job) = self.jobs.get_mut(&bid.message().order_id) else {
            return Response::Refused("no such order".into());
        };
        if job.view.state != JobState::Bidding {
            return Response::Refused("the auction is closed".into());
        }
        let Some(order) = job.order() else {
            return Response::Refused("order unreadable".into());
        };
        if !agora_protocol::matching::bid_admissible(order.message(), bid.message(), now) {
            return Response::Refused("the bid does not meet the order".into());
        }
        if job
            .view
            .bids
            .iter()
            .any(|b| b.provider == bid.message().provider)
        {
            return Response::Ack;
        }
        job.view.bids.push(bid_view(&bid, now));
        job.bids.push(hex::encode(bid.encode()));
        let detail = format!(
            "{} {}× {} at {}",
            bid.message().provider.short(),
            bid.message().gpu_count,
            bid.message().gpu_model,
            bid.message().price_per_gpu_hour
        );
        job.event(now, "bid", detail);
        let id = bid.message().order_id;
        self.persist_job(&id);
        Response::Ack
    }

    fn receive_decline(
        &mut self,
        peer: PeerId,
        decline: Signed<Decline>,
        now: Timestamp,
    ) -> Response {
        if decline.signer().peer_id() != peer {
            return Response::Refused("a decline must come from its provider".into());
        }
        let d = decline.message();
        let Some(job) = self.jobs.get_mut(&d.order_id) else {
            return Response::Refused("no such order".into());
        };
        if job.view.declines.iter().any(|x| x.provider == d.provider) {
            return Response::Ack;
        }
        job.view.declines.push(DeclineView {
            provider: d.provider,
            reason: d.reason,
            detail: d.detail.clone(),
        });
        job.event(
            now,
            "decline",
            format!("{}: {:?}: {}", d.provider.short(), d.reason, d.detail),
        );
        let id = d.order_id;
        self.persist_job(&id);
        Response::Ack
    }

    async fn countersign(
        &mut self,
        peer: PeerId,
        terms: Signed<LeaseTerms>,
        now: Timestamp,
    ) -> Response {
        let Some(provider) = self.provider.as_mut() else {
            return Response::Refused("this node is not a provider".into());
        };
        if terms.signer().peer_id() != peer {
            return Response::Refused("a lease proposal must come from its requester".into());
        }
        if let Err(reason) = provider.on_lease_proposal(&terms, now) {
            info!(order = %terms.message().order_id, %reason, "lease proposal refused");
            return Response::Refused(reason);
        }
        let lease = match Lease::countersign(&terms, &self.key) {
            Ok(lease) => lease,
            Err(e) => return Response::Refused(format!("cannot countersign: {e}")),
        };
        provider.add_lease(lease.clone());
        // Durable before the requester hears of it.
        if let Err(e) = self.store.put_lease(&lease) {
            warn!(error = %e, "cannot store the lease; refusing it");
            return Response::Refused("the provider cannot store the lease".into());
        }
        self.persist_provider();
        info!(lease = %lease.id(), order = %terms.message().order_id, "lease countersigned");
        self.publish_offers().await;
        Response::Lease(lease.cosigned().clone())
    }

    // ---- provider ----

    fn persist_provider(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = self.store.put_meta("provider", &provider.snapshot())
        {
            warn!(error = %e, "cannot store provider state");
        }
    }

    async fn publish_offers(&mut self) {
        let now = now();
        let Some(provider) = self.provider.as_mut() else {
            return;
        };
        let offers = provider.offers(now);
        self.persist_provider();
        self.last_offer_publish = Some(now);
        for offer in offers {
            let signed = match Signed::sign(offer, &self.key) {
                Ok(signed) => signed,
                Err(e) => {
                    warn!(error = %e, "cannot sign offer");
                    continue;
                }
            };
            self.book.insert(signed.clone(), now);
            self.arrivals.record(signed.message(), true, now);
            if let Err(e) = self.network.publish(OFFERS_TOPIC, signed.encode()).await {
                debug!(error = %e, "offer not published (yet)");
            }
        }
    }

    async fn expire(&mut self) {
        let now = now();
        self.book.expire(now);
        self.tick_runs(now);
        let health = self
            .runtime_health
            .as_mut()
            .filter(|h| h.has_changed().unwrap_or(false))
            .map(|h| h.borrow_and_update().clone());
        let health_changed = match (health, self.provider.as_mut()) {
            (Some(state), Some(provider)) => provider.set_unavailable(state),
            _ => false,
        };
        let changed = health_changed
            | self
                .provider
                .as_mut()
                .is_some_and(|provider| provider.expire(now));
        if changed {
            self.persist_provider();
            self.publish_offers().await;
        }
    }

    /// A run ended on this provider: its GPUs are free before the lease's end.
    async fn run_ended(&mut self, order: OrderId) {
        let released = self
            .provider
            .as_mut()
            .and_then(|p| p.release(&order))
            .is_some();
        if released {
            self.persist_provider();
            self.publish_offers().await;
        }
    }

    // ---- requester ----

    async fn handle_command(&mut self, command: Command) {
        let now = now();
        match command {
            Command::Info(reply) => {
                let _ = reply.send(self.info().await);
            }
            Command::Search {
                query,
                sort,
                limit,
                reply,
            } => {
                let _ = reply.send(self.search(&query, sort.as_deref(), limit, now));
            }
            Command::Offer { id, reply } => {
                let result = id
                    .parse::<OfferId>()
                    .map_err(|e| MarketError::bad_request(format!("offer id: {e}"), None))
                    .and_then(|id| {
                        self.book
                            .get(&id)
                            .map(offer_view)
                            .ok_or_else(|| MarketError::not_found(format!("no offer {id}")))
                    });
                let _ = reply.send(result);
            }
            Command::Submit {
                order,
                spec,
                offer,
                reply,
            } => {
                let _ = reply.send(self.submit(order, *spec, offer, now).await);
            }
            Command::Jobs(reply) => {
                let mut jobs: Vec<JobView> = self.jobs.values().map(|j| j.view.clone()).collect();
                jobs.sort_by_key(|j| j.submitted_at);
                let _ = reply.send(Ok(jobs));
            }
            Command::Job { id, reply } => {
                let result = id
                    .parse::<OrderId>()
                    .map_err(|e| MarketError::bad_request(format!("job id: {e}"), None))
                    .and_then(|id| {
                        self.jobs
                            .get(&id)
                            .map(|j| j.view.clone())
                            .ok_or_else(|| MarketError::not_found(format!("no job {id}")))
                    });
                let _ = reply.send(result);
            }
            Command::Provider(reply) => {
                let _ = reply.send(self.provider_status(now));
            }
            Command::Arrivals {
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(Ok(self.arrivals.after(after, limit)));
            }
            Command::LeaseOutcome(outcome) => self.lease_outcome(*outcome, now),
            Command::Run(id, note) => self.run_note(id, note),
            Command::Cancel { id, reply } => {
                let _ = reply.send(self.cancel(&id, now));
            }
            Command::Undelivered { order, reason } => {
                warn!(%order, %reason, "bid or decline not delivered");
            }
        }
    }

    async fn info(&self) -> Result<NodeInfo, MarketError> {
        let net = self
            .network
            .info()
            .await
            .map_err(|e| MarketError::internal(e.to_string()))?;
        Ok(NodeInfo {
            peer_id: net.peer_id.to_string(),
            account: self.key.public(),
            role: self.role,
            listen_addrs: net.listen_addrs.iter().map(ToString::to_string).collect(),
            connected_peers: u32::try_from(net.connected_peers).unwrap_or(u32::MAX),
            mesh_peers: u32::try_from(net.mesh_peers).unwrap_or(u32::MAX),
            offers_in_book: u32::try_from(self.book.len()).unwrap_or(u32::MAX),
            gossip_accepted: net.gossip_accepted,
            gossip_rejected: net.gossip_rejected,
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    fn search(
        &self,
        query: &str,
        sort: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<OffersPage, MarketError> {
        let parsed = Query::parse(query).map_err(|e| {
            MarketError::bad_request(e.to_string(), Some(format!("column {}", e.column)))
        })?;
        let sort = sort
            .map(|s| {
                s.parse::<SortKey>().map_err(|e| {
                    MarketError::bad_request(format!("sort: {e}"), Some("sort".into()))
                })
            })
            .transpose()?;
        let offers = self
            .book
            .search(&parsed, sort, limit.clamp(1, 1000), now)
            .into_iter()
            .map(offer_view)
            .collect();
        Ok(OffersPage {
            query: query.to_string(),
            offers,
            book_size: u32::try_from(self.book.len()).unwrap_or(u32::MAX),
        })
    }

    fn provider_status(&self, now: Timestamp) -> Result<ProviderStatus, MarketError> {
        let Some(provider) = &self.provider else {
            return Err(MarketError::not_found(
                "this node is a requester; start it with `agorad provider` to rent out GPUs",
            ));
        };
        let inventory = provider.inventory();
        let mine = self.key.public();
        let (runs, earned) = self
            .executor
            .as_ref()
            .map(Executor::views)
            .unwrap_or_default();
        Ok(ProviderStatus {
            driver: inventory.driver.clone(),
            nvml_unavailable: inventory.nvml_unavailable.clone(),
            gpus: inventory
                .gpus
                .iter()
                .map(|g| GpuView {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    model: g.model.clone(),
                    vram_mib: g.vram_mib,
                    compute_capability: g.compute_capability,
                    power_limit_w: g.power_limit_w,
                    simulated: g.simulated,
                })
                .collect(),
            offers: self
                .book
                .iter()
                .filter(|o| o.message().provider == mine)
                .map(offer_view)
                .collect(),
            reservations: provider.reservation_views(now),
            leases: provider
                .leases()
                .map(|l| lease_view(l, false))
                .collect::<Vec<_>>(),
            orders_seen: provider.orders_seen,
            bids_sent: provider.bids_sent,
            declines_sent: provider.declines_sent,
            runs,
            earned,
            runtime_unavailable: provider.unavailable().map(str::to_owned),
        })
    }

    async fn submit(
        &mut self,
        order: Order,
        spec: JobSpec,
        offer: Option<String>,
        now: Timestamp,
    ) -> Result<JobView, MarketError> {
        if self.jobs.len() >= MAX_JOBS {
            return Err(MarketError {
                status: 503,
                message: format!("this node tracks {MAX_JOBS} jobs already"),
                at: None,
            });
        }
        // The instant path checks the offer before anything is signed.
        let chosen = match &offer {
            None => None,
            Some(id) => {
                let id: OfferId = id.parse().map_err(|e| {
                    MarketError::bad_request(format!("offer id: {e}"), Some("offer".into()))
                })?;
                let signed = self.book.get(&id).ok_or_else(|| {
                    MarketError::not_found(format!(
                        "offer {id} is not in this node's book (expired, or not yet received)"
                    ))
                })?;
                fit(&order, signed.message(), now).map_err(|(reason, detail)| {
                    MarketError::bad_request(
                        format!("offer {id} does not meet the job: {reason:?}: {detail}"),
                        Some("offer".into()),
                    )
                })?;
                Some(signed.clone())
            }
        };
        let signed = Signed::sign(order, &self.key)
            .map_err(|e| MarketError::bad_request(e.to_string(), None))?;
        let id = signed.message().id();
        let mut record = JobRecord {
            view: JobView {
                id: id.to_string(),
                name: spec.name.clone(),
                state: JobState::Bidding,
                reason: None,
                submitted_at: now,
                offer: offer.clone(),
                spec,
                bids: Vec::new(),
                declines: Vec::new(),
                lease: None,
                events: Vec::new(),
                exit_code: None,
                receipt: None,
                settlement: None,
                outputs: Vec::new(),
                results_fetched: false,
                log_seq: 0,
            },
            order: hex::encode(signed.encode()),
            bids: Vec::new(),
            tried: Vec::new(),
            closes_at: now.plus_ms(u64::from(signed.message().bid_window_ms)),
            run: Default::default(),
        };
        record.event(now, "submitted", "");
        match chosen {
            Some(offer) => {
                record.view.state = JobState::Leasing;
                self.jobs.insert(id, record);
                self.persist_job(&id);
                self.propose(id, offer.message(), now);
            }
            None => {
                if let Err(e) = self.network.publish(ORDERS_TOPIC, signed.encode()).await {
                    record.fail(now, format!("the order could not be published: {e}"));
                } else {
                    record.event(now, "order_published", "");
                    self.deadlines.insert(
                        id,
                        Duration::from_millis(u64::from(signed.message().bid_window_ms)),
                    );
                }
                self.jobs.insert(id, record);
                self.persist_job(&id);
            }
        }
        Ok(self.jobs[&id].view.clone())
    }

    fn persist_job(&mut self, id: &OrderId) {
        self.sync_events(id);
        if let Some(job) = self.jobs.get(id)
            && let Err(e) = self.store.put_job(id, job)
        {
            warn!(job = %id, error = %e, "cannot store job");
        }
    }

    fn close_auction(&mut self, id: OrderId) {
        let now = now();
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.view.state != JobState::Bidding {
            return;
        }
        job.event(now, "auction_closed", format!("{} bids", job.bids.len()));
        if job.bids.is_empty() {
            job.view.state = JobState::NoBids;
            let reasons: Vec<String> = job
                .view
                .declines
                .iter()
                .map(|d| format!("{}: {:?} ({})", d.provider.short(), d.reason, d.detail))
                .collect();
            let reason = if reasons.is_empty() {
                "no provider answered".to_string()
            } else {
                format!("every provider declined: {}", reasons.join("; "))
            };
            job.event(now, "no_bids", reason.clone());
            job.view.reason = Some(reason);
            self.persist_job(&id);
            return;
        }
        job.view.state = JobState::Leasing;
        self.persist_job(&id);
        self.next_lease_attempt(id, now);
    }

    /// Proposes a lease to the best bidder not yet tried, or ends the job.
    fn next_lease_attempt(&mut self, id: OrderId, now: Timestamp) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(order) = job.order() else {
            job.fail(now, "the stored order is unreadable".into());
            self.persist_job(&id);
            return;
        };
        // The instant path has no bids: retry its offer once after a restart.
        if job.bids.is_empty() {
            let offer = job
                .view
                .offer
                .as_ref()
                .and_then(|o| o.parse::<OfferId>().ok())
                .and_then(|o| self.book.get(&o).cloned());
            match offer {
                Some(offer) if job.tried.is_empty() => {
                    self.propose(id, offer.message(), now);
                }
                _ => {
                    job.fail(now, "the offer could not be leased".into());
                    self.persist_job(&id);
                }
            }
            return;
        }
        let mut bids: Vec<Signed<Bid>> = job
            .bids()
            .into_iter()
            .filter(|b| !job.tried.contains(&b.message().provider))
            .filter(|b| agora_protocol::matching::bid_admissible(order.message(), b.message(), now))
            .collect();
        bids.sort_by(|a, b| compare_bids(a.message(), b.message(), &reputation));
        let Some(best) = bids.first() else {
            job.fail(now, "every bidder refused or could not be reached".into());
            self.persist_job(&id);
            return;
        };
        let bid = best.message().clone();
        self.propose_terms(
            id,
            order.message(),
            bid.provider,
            bid.slot,
            &bid.gpu_model,
            bid.price_per_gpu_hour,
            bid.simulated,
            now,
        );
    }

    fn propose(&mut self, id: OrderId, offer: &Offer, now: Timestamp) {
        let order = match self.jobs.get(&id).and_then(JobRecord::order) {
            Some(order) => order,
            None => return,
        };
        self.propose_terms(
            id,
            order.message(),
            offer.provider,
            offer.slot,
            &offer.gpu_model,
            offer.price_per_gpu_hour,
            offer.simulated,
            now,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn propose_terms(
        &mut self,
        id: OrderId,
        order: &Order,
        provider: agora_protocol::PublicKey,
        slot: u32,
        gpu_model: &str,
        price: agora_protocol::Amount,
        simulated: bool,
        now: Timestamp,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.tried.push(provider);
        let Some(escrow) =
            LeaseTerms::required_escrow(price, order.gpu_count, order.max_duration_secs)
        else {
            job.fail(now, "the escrow overflows".into());
            self.persist_job(&id);
            return;
        };
        let terms = LeaseTerms {
            order_id: id,
            requester: self.key.public(),
            provider,
            slot,
            gpu_model: gpu_model.to_string(),
            gpu_count: order.gpu_count,
            price_per_gpu_hour: price,
            max_duration_secs: order.max_duration_secs,
            receipt_interval_secs: self.config.node.receipt_interval_secs,
            starts_at: now,
            escrow,
            simulated,
        };
        let proposal = match Signed::sign(terms, &self.key) {
            Ok(p) => p,
            Err(e) => {
                job.fail(now, format!("cannot sign the lease terms: {e}"));
                self.persist_job(&id);
                return;
            }
        };
        job.event(now, "lease_proposed", provider.short());
        self.persist_job(&id);
        let network = self.network.clone();
        let ledger = self.ledger.clone();
        let handle = self.self_handle.clone();
        self.spawn_task(async move {
            let outcome = attempt_lease(network, ledger, proposal).await;
            let _ = handle
                .commands
                .send(Command::LeaseOutcome(Box::new(outcome)))
                .await;
        });
    }

    fn lease_outcome(&mut self, outcome: LeaseOutcome, now: Timestamp) {
        let id = outcome.order;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match outcome.result {
            Ok(lease) => {
                if let Err(e) = self.store.put_lease(&lease) {
                    warn!(error = %e, "cannot store lease");
                }
                job.event(now, "lease_signed", lease.id().to_string());
                job.event(now, "escrow_locked", lease.terms().escrow.to_string());
                job.view.lease = Some(lease_view(&lease, true));
                job.view.state = JobState::Leased;
                info!(job = %id, lease = %lease.id(), provider = %outcome.provider.short(), "leased");
                self.lease_jobs.insert(lease.id(), id);
                self.persist_job(&id);
                self.start_run(id, now);
            }
            Err(LeaseFailure::Escrow(lease, reason)) => {
                if let Err(e) = self.store.put_lease(&lease) {
                    warn!(error = %e, "cannot store lease");
                }
                job.event(now, "lease_signed", lease.id().to_string());
                job.view.lease = Some(lease_view(&lease, false));
                job.fail(now, format!("escrow could not be locked: {reason}"));
                self.persist_job(&id);
            }
            Err(LeaseFailure::Provider(reason)) => {
                job.event(
                    now,
                    "lease_refused",
                    format!("{}: {reason}", outcome.provider.short()),
                );
                self.persist_job(&id);
                self.next_lease_attempt(id, now);
            }
        }
    }
}
