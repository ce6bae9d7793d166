//! The router: one `select!` loop that owns the offer book, hands every
//! event to the provider and requester cores, and carries out what they
//! decide — sign-and-send, persist, publish, and background work through a
//! bounded, supervised task pool. It decides nothing about a job itself.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_client::api::{
    JobSpec, JobView, NodeInfo, OfferArrivals, OffersPage, ProviderStatus, Role,
};
use agora_protocol::matching::fit;
use agora_protocol::{
    Keypair, Ledger, OfferBook, OfferId, Order, OrderId, Query, Signed, SortKey, Timestamp,
};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::COMMAND_CAPACITY;
use super::arrivals::{ARRIVALS_KEPT, Arrivals};
use super::error::MarketError;
use super::handle::{Command, MarketHandle};
use super::loop_stats::LoopStats;
use super::tasks::{Lost, TaskPool};
use crate::clock::now;
use crate::config::Config;
use crate::network::{NetworkEvent, NetworkHandle, OFFERS_TOPIC, ORDERS_TOPIC, Request, Response};
use crate::provider::exec::Executor;
use crate::provider::{Provider, ProviderRole};
use crate::requester::core::Settings;
use crate::requester::tasks::{self, TaskContext};
use crate::requester::{Answer, Effect, JobRecord, Requester, TaskKind, TaskResult};
use crate::store::Store;
use crate::views::{gpu_view, job_view, lease_view, offer_view};

/// Offers a node keeps at most, and per provider.
const BOOK_CAPACITY: usize = 100_000;
const BOOK_PER_PROVIDER: usize = 64;
/// Background tasks running at once at most…
pub const MAX_TASKS: usize = 512;
/// …and waiting for a place; past that a task is refused and its job is
/// told why.
pub const MAX_QUEUED_TASKS: usize = 8_192;
/// A busy requester is asked again this many times for a bid or decline.
const ANSWER_RETRIES: u32 = 3;

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
    pub runtime_health: Option<watch::Receiver<Option<String>>>,
    /// Where a requester keeps fetched outputs.
    pub results_dir: PathBuf,
    /// Stops the actor.
    pub cancel: CancellationToken,
}

/// What a task of the pool stands for.
enum Label {
    /// A requester job's background work.
    Job(OrderId, TaskKind),
    /// The executor answering a peer (the reply travels inside the task).
    Answer,
    /// A provider's bid or decline on its way.
    OrderAnswer { order: OrderId, is_bid: bool },
}

/// What a task of the pool came to.
enum Done {
    Job(TaskResult),
    Answered,
    OrderAnswer(Result<(), String>),
}

/// Restores state from the store and spawns the actor; the join handle
/// ends when the actor has stopped and flushed the store.
pub fn spawn(
    options: MarketOptions,
) -> Result<(MarketHandle, tokio::task::JoinHandle<()>), MarketError> {
    let (tx, commands) = mpsc::channel(COMMAND_CAPACITY);
    let handle = MarketHandle { commands: tx };
    let now = now();
    let store = options.store;
    let mut book = OfferBook::new(BOOK_CAPACITY, BOOK_PER_PROVIDER);
    for offer in store
        .offers()
        .map_err(|e| MarketError::internal(e.to_string()))?
    {
        // Expired or superseded offers leave the store here, once.
        let id = offer.message().id();
        if !book.insert(offer, now).accepted() {
            let _ = store.remove_offer(&id);
        }
    }
    let records = load_jobs(&store)?;
    let settings = Settings {
        receipt_interval_secs: options.config.node.receipt_interval_secs,
    };
    let requester = Requester::restore(options.key.clone(), settings, records, now);
    let refresh = options.config.node.offer_refresh_secs.max(1);
    let mut router = Router {
        role: options.role,
        config: options.config,
        network: options.network.clone(),
        events: options.events,
        provider: options
            .provider
            .map(|role| Provider::new(role, options.key.clone(), refresh)),
        executor: options.executor,
        runs_ended: options.runs_ended,
        runtime_health: options.runtime_health,
        key: options.key,
        requester,
        cx: TaskContext {
            network: options.network,
            ledger: options.ledger,
            results_dir: options.results_dir,
        },
        cancel: options.cancel,
        commands,
        book,
        arrivals: Arrivals::new(ARRIVALS_KEPT),
        pool: TaskPool::new(MAX_TASKS, MAX_QUEUED_TASKS),
        dirty: BTreeSet::new(),
        provider_dirty: false,
        stats: LoopStats::default(),
        store,
    };
    // Instant-path jobs that were leasing retry their offer once.
    for (id, offer) in router.requester.instant_to_resume() {
        let offer = offer
            .and_then(|o| o.parse::<OfferId>().ok())
            .and_then(|o| router.book.get(&o).cloned());
        router.requester.resume_instant(id, offer, now);
    }
    let task = tokio::spawn(router.run());
    Ok((handle, task))
}

/// Every stored job, migrated to the current format (and written back);
/// a record that cannot be read stops the node with what to do.
fn load_jobs(store: &Store) -> Result<Vec<JobRecord>, MarketError> {
    let mut out = Vec::new();
    let mut migrated = 0;
    for (key, bytes) in store
        .jobs()
        .map_err(|e| MarketError::internal(e.to_string()))?
    {
        let record = JobRecord::from_json(&bytes, |id| store.lease(id).ok().flatten())
            .map_err(|e| MarketError::internal(format!("stored job {}: {e}", hex::encode(&key))))?;
        let current = record
            .to_json()
            .map_err(|e| MarketError::internal(e.to_string()))?;
        if current != bytes {
            let _ = store.put_job(&record.id(), &current);
            migrated += 1;
        }
        out.push(record);
    }
    if migrated > 0 {
        store
            .flush()
            .map_err(|e| MarketError::internal(e.to_string()))?;
        info!(
            jobs = migrated,
            "stored jobs migrated to the current format"
        );
    }
    Ok(out)
}

struct Router {
    key: Keypair,
    role: Role,
    config: Config,
    store: Store,
    network: NetworkHandle,
    events: mpsc::Receiver<NetworkEvent>,
    provider: Option<Provider>,
    executor: Option<Executor>,
    runs_ended: mpsc::Receiver<OrderId>,
    runtime_health: Option<watch::Receiver<Option<String>>>,
    requester: Requester,
    cx: TaskContext,
    cancel: CancellationToken,
    commands: mpsc::Receiver<Command>,
    book: OfferBook,
    /// When each offer version was first seen here.
    arrivals: Arrivals,
    pool: TaskPool<Label, Done>,
    /// Jobs whose records changed since they were last written.
    dirty: BTreeSet<OrderId>,
    /// The provider role changed since it was last written.
    provider_dirty: bool,
    stats: LoopStats,
}

impl Router {
    async fn run(mut self) {
        let refresh_secs = self.config.node.offer_refresh_secs.max(1);
        let mut refresh = tokio::time::interval(Duration::from_secs(refresh_secs));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.requester.next_wake().map(|at| {
                let ms = at.0.saturating_sub(now().0);
                tokio::time::Instant::now() + Duration::from_millis(ms)
            });
            tokio::select! {
                () = self.cancel.cancelled() => break,
                Some(event) = self.events.recv() => {
                    let started = Instant::now();
                    self.handle_network(event).await;
                    self.stats.record(started.elapsed());
                }
                Some(command) = self.commands.recv() => {
                    let started = Instant::now();
                    self.handle_command(command).await;
                    self.stats.record(started.elapsed());
                }
                (label, result) = self.pool.next(), if !self.pool.is_empty() => {
                    let started = Instant::now();
                    self.task_done(label, result).await;
                    self.stats.record(started.elapsed());
                }
                Some(order) = self.runs_ended.recv() => self.run_ended(order).await,
                () = sleep_until(wake) => {
                    self.requester.tick(now());
                    self.carry_out().await;
                }
                _ = refresh.tick() => self.publish_offers().await,
                _ = second.tick() => self.every_second().await,
            }
        }
        let cut = self.pool.shutdown().await;
        if !cut.is_empty() {
            info!(
                tasks = cut.len(),
                "background work stopped with the node; it resumes from the store"
            );
        }
        self.write_dirty();
        if let Err(e) = self.store.flush() {
            warn!(error = %e, "flushing the store on shutdown failed");
        }
        debug!("market actor stopped");
    }

    // ---- carrying out what the cores decided ----

    /// Carries out the requester core's effects until it has none left.
    async fn carry_out(&mut self) {
        loop {
            let effects = self.requester.take_effects();
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                match effect {
                    Effect::Persist(id) => {
                        self.dirty.insert(id);
                    }
                    Effect::Log(id, entries) => {
                        if let Err(e) = self.store.append_log(&id.0, &entries) {
                            warn!(job = %id, error = %e, "cannot store log entries");
                        }
                    }
                    Effect::Publish(id, bytes) => {
                        if let Err(e) = self.network.publish(ORDERS_TOPIC, bytes).await {
                            self.requester.publish_failed(id, e.to_string(), now());
                        }
                    }
                    Effect::Start(id, task) => {
                        let kind = task.kind();
                        let cx = self.cx.clone();
                        let work = async move { Done::Job(tasks::run(cx, id, task).await) };
                        if self.pool.submit(Label::Job(id, kind), work).is_err() {
                            let why = self.overloaded();
                            warn!(job = %id, %why, "background work refused");
                            self.requester.on_task(id, kind.lost(why), now());
                        }
                    }
                }
            }
        }
        self.write_dirty();
    }

    fn overloaded(&self) -> String {
        format!(
            "this node is overloaded ({} background tasks running, {} waiting)",
            self.pool.running(),
            self.pool.queued()
        )
    }

    /// Writes changed records (no fsync).
    fn write_dirty(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            let Some(job) = self.requester.job(&id) else {
                continue;
            };
            match job.to_json() {
                Ok(bytes) => {
                    if let Err(e) = self.store.put_job(&id, &bytes) {
                        warn!(job = %id, error = %e, "cannot store job");
                    }
                }
                Err(e) => warn!(job = %id, error = %e, "cannot encode job"),
            }
        }
        if std::mem::take(&mut self.provider_dirty)
            && let Some(provider) = &self.provider
            && let Err(e) = self.store.put_meta("provider", &provider.snapshot())
        {
            warn!(error = %e, "cannot store provider state");
        }
    }

    /// Carries out effects, writes, and — for an answer that creates an
    /// obligation — flushes before the answer goes out ("retry" if the
    /// store cannot hold it).
    async fn answer(&mut self, answer: Answer) -> Response {
        self.carry_out().await;
        if answer.flush
            && let Err(e) = self.store.flush()
        {
            return Response::Retry(format!("requester store: {e}"));
        }
        answer.response
    }

    async fn task_done(&mut self, label: Label, result: Result<Done, Lost>) {
        let now = now();
        match (label, result) {
            (Label::Job(id, _), Ok(Done::Job(result))) => {
                self.requester.on_task(id, result, now);
                self.carry_out().await;
            }
            (Label::Job(id, kind), Err(Lost(why))) => {
                warn!(job = %id, %why, "background work lost");
                self.requester.on_task(id, kind.lost(why), now);
                self.carry_out().await;
            }
            (Label::OrderAnswer { order, is_bid }, Ok(Done::OrderAnswer(Err(reason)))) => {
                warn!(%order, %reason, bid = is_bid, "bid or decline not delivered");
                self.order_answer_lost(order, is_bid).await;
            }
            (Label::OrderAnswer { order, is_bid }, Err(Lost(why))) => {
                warn!(%order, %why, bid = is_bid, "bid or decline lost");
                self.order_answer_lost(order, is_bid).await;
            }
            (Label::Answer, Err(Lost(why))) => {
                warn!(%why, "an answer to a peer was lost; the peer is told to retry");
            }
            _ => {}
        }
    }

    async fn order_answer_lost(&mut self, order: OrderId, is_bid: bool) {
        let freed = self
            .provider
            .as_mut()
            .is_some_and(|p| p.undelivered(&order, is_bid));
        if freed {
            self.provider_dirty = true;
            self.publish_offers().await;
        }
    }

    // ---- network ----

    async fn handle_network(&mut self, event: NetworkEvent) {
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
            NetworkEvent::Order { order, via } => self.handle_order(order, via, now).await,
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

    async fn handle_order(&mut self, order: Signed<Order>, via: PeerId, now: Timestamp) {
        let Some(provider) = self.provider.as_mut() else {
            return;
        };
        let Some(answer) = provider.on_order(&order, now) else {
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
            (Request::Bid(bid), _) => {
                let answer = self.requester.on_bid(peer, bid, now);
                let response = self.answer(answer).await;
                let _ = reply.send(response);
            }
            (Request::Decline(decline), _) => {
                let answer = self.requester.on_decline(peer, decline, now);
                let response = self.answer(answer).await;
                let _ = reply.send(response);
            }
            (Request::Update(update), _) => {
                let answer = self.requester.on_update(peer, update, now);
                let response = self.answer(answer).await;
                let _ = reply.send(response);
            }
            (Request::Receipt(receipt), _) => {
                let answer = self.requester.on_receipt(peer, receipt, now);
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
        let (tx, rx) = oneshot::channel::<oneshot::Sender<Response>>();
        let task = async move {
            if let Ok(reply) = rx.await {
                let _ = reply.send(work.await);
            }
            Done::Answered
        };
        if self.pool.submit(Label::Answer, task).is_ok() {
            let _ = tx.send(reply);
        } else {
            let _ = reply.send(Response::Retry(format!("busy: {}", self.overloaded())));
        }
    }

    async fn countersign(
        &mut self,
        peer: PeerId,
        terms: Signed<agora_protocol::LeaseTerms>,
        now: Timestamp,
    ) -> Response {
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
        self.publish_offers().await;
        Response::Lease(lease.cosigned().clone())
    }

    // ---- provider ----

    async fn publish_offers(&mut self) {
        let now = now();
        let Some(provider) = self.provider.as_mut() else {
            return;
        };
        let offers = provider.offers(now);
        self.provider_dirty = true;
        self.write_dirty();
        for signed in offers {
            self.book.insert(signed.clone(), now);
            self.arrivals.record(signed.message(), true, now);
            if let Err(e) = self.network.publish(OFFERS_TOPIC, signed.encode()).await {
                debug!(error = %e, "offer not published (yet)");
            }
        }
    }

    async fn every_second(&mut self) {
        let now = now();
        self.book.expire(now);
        self.requester.tick(now);
        self.carry_out().await;
        let health = self
            .runtime_health
            .as_mut()
            .filter(|h| h.has_changed().unwrap_or(false))
            .map(|h| h.borrow_and_update().clone());
        let changed = self
            .provider
            .as_mut()
            .is_some_and(|provider| provider.tick(now, health));
        if changed {
            self.publish_offers().await;
        }
    }

    /// A run ended on this provider: its GPUs are free before the lease's end.
    async fn run_ended(&mut self, order: OrderId) {
        if self.provider.as_mut().is_some_and(|p| p.run_ended(&order)) {
            self.publish_offers().await;
        }
    }

    // ---- commands ----

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
                let mut jobs: Vec<JobView> = self.requester.jobs().map(job_view).collect();
                jobs.sort_by_key(|j| j.submitted_at);
                let _ = reply.send(Ok(jobs));
            }
            Command::Job { id, reply } => {
                let result = parse_job(&id).and_then(|id| {
                    self.requester
                        .job(&id)
                        .map(job_view)
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
                let _ = reply.send(Ok::<OfferArrivals, MarketError>(
                    self.arrivals.after(after, limit),
                ));
            }
            Command::Cancel { id, reply } => {
                let _ = reply.send(self.cancel_job(&id, now).await);
            }
        }
    }

    async fn submit(
        &mut self,
        order: Order,
        spec: JobSpec,
        offer: Option<String>,
        now: Timestamp,
    ) -> Result<JobView, MarketError> {
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
        let id = self.requester.submit(order, spec, chosen, now)?;
        self.carry_out().await;
        // Accepted means durable.
        self.store
            .flush()
            .map_err(|e| MarketError::internal(e.to_string()))?;
        self.requester
            .job(&id)
            .map(job_view)
            .ok_or_else(|| MarketError::internal("the job vanished"))
    }

    async fn cancel_job(&mut self, id: &str, now: Timestamp) -> Result<JobView, MarketError> {
        let order = id
            .parse::<OrderId>()
            .map_err(|_| MarketError::not_found(format!("no job {id}")))?;
        self.requester.cancel(&order, now)?;
        self.carry_out().await;
        self.store
            .flush()
            .map_err(|e| MarketError::internal(e.to_string()))?;
        self.requester
            .job(&order)
            .map(job_view)
            .ok_or_else(|| MarketError::not_found(format!("no job {id}")))
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
            market_loop: self.stats.view(),
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
        let role = provider.role();
        let inventory = role.inventory();
        let mine = self.key.public();
        let (runs, earned) = self
            .executor
            .as_ref()
            .map(Executor::views)
            .unwrap_or_default();
        Ok(ProviderStatus {
            driver: inventory.driver.clone(),
            nvml_unavailable: inventory.nvml_unavailable.clone(),
            gpus: inventory.gpus.iter().map(gpu_view).collect(),
            offers: self
                .book
                .iter()
                .filter(|o| o.message().provider == mine)
                .map(offer_view)
                .collect(),
            reservations: role.reservation_views(now),
            leases: role.leases().map(|l| lease_view(l, false)).collect(),
            orders_seen: role.orders_seen,
            bids_sent: role.bids_sent,
            declines_sent: role.declines_sent,
            runs,
            earned,
            runtime_unavailable: role.unavailable().map(str::to_owned),
        })
    }
}

fn parse_job(id: &str) -> Result<OrderId, MarketError> {
    id.parse::<OrderId>()
        .map_err(|e| MarketError::bad_request(format!("job id: {e}"), None))
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends a bid or decline; a busy requester is asked again with backoff.
async fn send_answer(network: &NetworkHandle, to: PeerId, request: Request) -> Result<(), String> {
    let mut backoff = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        let last = match network.request(to, request.clone()).await {
            Ok(Response::Ack) => return Ok(()),
            Ok(Response::Refused(reason)) => return Err(reason),
            Ok(Response::Retry(reason)) => reason,
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        tries += 1;
        if tries > ANSWER_RETRIES {
            return Err(format!("the requester stayed busy: {last}"));
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}
