//! The router: one `select!` loop that owns the offer book, hands every
//! event to the provider and requester cores, and carries out what they
//! decide — sign-and-send, persist, publish, and background work through a
//! bounded, supervised task pool. It decides nothing about a job itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_client::api::Role;
use agora_protocol::{Amount, Keypair, Ledger, OfferBook, OfferId, OrderId, PublicKey, Signed};
use tokio::sync::{mpsc, watch};
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
use crate::metrics::Metrics;
use crate::network::{NetworkEvent, NetworkHandle, OFFERS_TOPIC, ORDERS_TOPIC, Response};
use crate::provider::exec::Executor;
use crate::provider::{Provider, ProviderRole};
use crate::requester::core::Settings;
use crate::requester::events::JobEventKind;
use crate::requester::tasks::{self, TaskContext};
use crate::requester::{Answer, Effect, JobRecord, Requester, TaskKind, TaskResult};
use crate::store::{MoneyEntry, Side, Store};

mod commands;
mod peers;

/// Offers a node keeps at most, and per provider.
const BOOK_CAPACITY: usize = 100_000;
const BOOK_PER_PROVIDER: usize = 64;
/// Background tasks running at once at most…
pub const MAX_TASKS: usize = 512;
/// …and waiting for a place; past that a task is refused and its job is
/// told why.
pub const MAX_QUEUED_TASKS: usize = 8_192;

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
    /// Where the cores' decisions are counted.
    pub metrics: Metrics,
}

/// What a task of the pool stands for.
enum Label {
    /// A requester job's background work.
    Job(OrderId, TaskKind),
    /// The executor answering a peer (the reply travels inside the task).
    Answer,
    /// A provider's bid or decline on its way.
    OrderAnswer { order: OrderId, is_bid: bool },
    /// A requester's balance being read from the ledger.
    Balance(PublicKey),
}

/// What a task of the pool came to.
enum Done {
    Job(TaskResult),
    Answered,
    OrderAnswer(Result<(), String>),
    Balance(Result<Amount, String>),
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
        provider: options.provider.map(|mut role| {
            // Whether the runtime (and the disk) can take work is known
            // before the first offer goes out.
            if let Some(health) = &options.runtime_health {
                role.set_unavailable(health.borrow().clone());
            }
            Provider::new(role, options.key.clone(), refresh)
        }),
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
        metrics: options.metrics,
        next_retention: agora_protocol::Timestamp(0),
        balance_reads: BTreeMap::new(),
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
        let (record, was_migrated) = JobRecord::read(&bytes, |id| store.lease(id).ok().flatten())
            .map_err(|e| {
            MarketError::internal(format!("stored job {}: {e}", hex::encode(&key)))
        })?;
        if was_migrated {
            let current = record
                .to_json()
                .map_err(|e| MarketError::internal(e.to_string()))?;
            let _ = store.put_job(&record.id(), &current);
            migrated += 1;
        }
        out.push(record);
    }
    backfill_spend(store, &out);
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

/// Jobs stored before spend was recorded per receipt count as spent at
/// their latest receipt: written once, when the store has no spend yet.
fn backfill_spend(store: &Store, jobs: &[JobRecord]) {
    if store.has_money(Side::Spent).unwrap_or(true) {
        return;
    }
    for job in jobs {
        let Some(claim) = job.receipt() else { continue };
        let r = claim.receipt();
        let at = job
            .events
            .iter()
            .rev()
            .find(|e| e.kind == JobEventKind::Receipt)
            .map_or(job.submitted_at, |e| e.at);
        if let Some(entry) =
            MoneyEntry::increase(r.lease_id, r.sequence, r.cumulative_amount, None, at)
            && let Err(e) = store.put_money(Side::Spent, &entry)
        {
            warn!(job = %job.id(), error = %e, "cannot backfill the spend entry");
        }
    }
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
    metrics: Metrics,
    /// When finished jobs past their retention are next looked for.
    next_retention: agora_protocol::Timestamp,
    /// Requesters' balances being read from the ledger, with the orders
    /// waiting on each (and the peer each came through).
    balance_reads: BTreeMap<PublicKey, Vec<(Signed<agora_protocol::Order>, libp2p::PeerId)>>,
}

/// How often finished jobs past their retention are looked for.
const RETENTION_EVERY_MS: u64 = 3600 * 1000;

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
                        for entry in &entries {
                            // The requester's own job events (a provider's
                            // run events carry `run`).
                            if let (None, Some(name)) = (&entry.run, &entry.event) {
                                self.metrics.job_event(name);
                            }
                        }
                        if let Err(e) = self.store.append_log(&id.0, &entries) {
                            warn!(job = %id, error = %e, "cannot store log entries");
                        }
                    }
                    Effect::Spent(entry) => {
                        if let Err(e) = self.store.put_money(Side::Spent, &entry) {
                            warn!(lease = %entry.lease, error = %e, "cannot store the spend entry");
                        }
                    }
                    Effect::Publish(id, bytes) => {
                        if let Err(e) = self.network.publish(ORDERS_TOPIC, bytes).await {
                            self.requester.publish_failed(id, e.to_string(), now());
                        }
                    }
                    Effect::Start(id, task) => {
                        let kind = task.kind();
                        // What the task commits to (a lock's escrow) must
                        // be on disk before it starts: a node killed
                        // meanwhile resumes from the record.
                        if task.needs_stored_record() {
                            self.write_dirty();
                            if let Err(e) = self.store.flush() {
                                let why = format!("requester store: {e}");
                                warn!(job = %id, %why, "cannot store the job before its task");
                                self.requester.on_task(id, kind.lost(why), now());
                                continue;
                            }
                        }
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
            (Label::Balance(requester), Ok(Done::Balance(balance))) => {
                self.balance_read(requester, balance).await;
            }
            (Label::Balance(requester), Err(Lost(why))) => {
                self.balance_read(requester, Err(why)).await;
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

    /// Deletes the finished jobs past their retention (`node.job_retention_days`,
    /// `node.max_finished_jobs`) with their logs, off the loop.
    fn retire_jobs(&mut self, now: agora_protocol::Timestamp) {
        let node = &self.config.node;
        let max_age_ms = node.job_retention_days.saturating_mul(24 * 3600 * 1000);
        let retired = self
            .requester
            .retire(now, max_age_ms, node.max_finished_jobs);
        if retired.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut entries = 0;
            for id in &retired {
                match store.remove_job(id) {
                    Ok(n) => entries += n,
                    Err(e) => {
                        warn!(job = %id, error = %e, "cannot delete a job past its retention")
                    }
                }
            }
            info!(
                jobs = retired.len(),
                log_entries = entries,
                "finished jobs past their retention deleted"
            );
        });
    }

    async fn every_second(&mut self) {
        let now = now();
        if now >= self.next_retention {
            self.next_retention = now.plus_ms(RETENTION_EVERY_MS);
            self.retire_jobs(now);
        }
        self.book.expire(now);
        self.requester.tick(now);
        self.carry_out().await;
        let health = self
            .runtime_health
            .as_mut()
            .filter(|h| h.has_changed().unwrap_or(false))
            .map(|h| h.borrow_and_update().clone());
        // The leases the executor runs (its latest snapshot).
        let running = self
            .executor
            .as_ref()
            .map(|e| e.run_leases())
            .unwrap_or_default();
        let started = |lease: &agora_protocol::LeaseId| running.contains(lease);
        let changed = self
            .provider
            .as_mut()
            .is_some_and(|provider| provider.tick(now, health, &started));
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
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
