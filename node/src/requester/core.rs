//! The requester core: every decision about a requester's jobs, as pure
//! logic. Inputs are events — a submission, a bid or decline, the
//! provider's log and receipts, the answer of a background task, a tick
//! carrying `now` — and outputs are [`Effect`]s the market's router carries
//! out: persist a record, append to a job's log, publish an order, start a
//! task. No tokio, no sockets, no sled: the core signs (deterministic
//! ed25519) and decides; the router does the I/O.
//!
//! The job's life is split by idea: `auction.rs` (submit, bids, close,
//! lease attempts), `run.rs` (payload, log, receipts, cancel, silence,
//! finish), `settle.rs` (escrow reads until the lease is closed).

use std::collections::{BTreeSet, HashMap, HashSet};

use agora_client::api::{JobState, LogKind};
use agora_protocol::ledger::EscrowState;
use agora_protocol::{
    Keypair, Lease, LeaseId, LeaseTerms, Manifest, OrderId, RunEvent, Signed, Timestamp,
};
use libp2p::PeerId;

use super::events::JobEventKind;
use super::job::{Event, JobRecord};
use super::lease::LeaseOutcome;
use crate::network::{Request, Response};
use crate::store::{LogRecord, MoneyEntry};

/// Jobs kept in memory at most (finished ones stay in the store).
pub const MAX_JOBS: usize = 10_000;

/// What the core asks the router to do.
#[derive(Debug)]
pub enum Effect {
    /// Write the job's record (no fsync: the router flushes before an
    /// answer that creates an obligation, and sled flushes the rest).
    Persist(OrderId),
    /// Append entries to the job's log.
    Log(OrderId, Vec<LogRecord>),
    /// Publish the signed order on gossip; a failure comes back through
    /// [`Requester::publish_failed`].
    Publish(OrderId, Vec<u8>),
    /// Record what a newly countersigned receipt adds to the spend (with
    /// the job's record: flushed before the countersignature is sent).
    Spent(MoneyEntry),
    /// Start background work; its result comes back through
    /// [`Requester::on_task`], or its refusal as [`TaskKind::lost`].
    Start(OrderId, Task),
}

/// Background work for a job.
#[derive(Debug)]
pub enum Task {
    /// Ask the provider to countersign.
    Lease(Box<Signed<LeaseTerms>>),
    /// Lock the escrow of a countersigned lease, stored before this starts
    /// (so a node killed while the lock is on its way still knows the
    /// lease, and locks it again: a lock is idempotent).
    Lock(Box<Lease>),
    /// Send until acknowledged, refused for good, or `until`.
    Deliver {
        /// What it is.
        what: Delivery,
        /// To whom.
        peer: PeerId,
        /// The request.
        request: Box<Request>,
        /// Give up then.
        until: Timestamp,
    },
    /// Read the escrow, closing it when the ledger allows.
    ReadEscrow(LeaseId),
    /// Fetch every output, each checked against the manifest.
    Fetch {
        /// The provider.
        peer: PeerId,
        /// What to fetch.
        manifest: Box<Manifest>,
    },
}

impl Task {
    /// The job's record must be durable before this task starts: it
    /// commits money on the ledger that only the record leads back to.
    pub fn needs_stored_record(&self) -> bool {
        matches!(self, Task::Lock(_))
    }

    /// Its kind.
    pub fn kind(&self) -> TaskKind {
        match self {
            Task::Lease(_) => TaskKind::Lease,
            Task::Lock(_) => TaskKind::Lock,
            Task::Deliver { what, .. } => TaskKind::Deliver(*what),
            Task::ReadEscrow(_) => TaskKind::ReadEscrow,
            Task::Fetch { .. } => TaskKind::Fetch,
        }
    }
}

/// What a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The job.
    Payload,
    /// The cancel.
    Cancel,
}

/// A task's kind, kept by the pool to report a refusal or a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// [`Task::Lease`].
    Lease,
    /// [`Task::Lock`].
    Lock,
    /// [`Task::Deliver`].
    Deliver(Delivery),
    /// [`Task::ReadEscrow`].
    ReadEscrow,
    /// [`Task::Fetch`].
    Fetch,
}

impl TaskKind {
    /// The result a task of this kind reports when it could not run (the
    /// pool refused it, or it panicked): its job learns why.
    pub fn lost(self, reason: String) -> TaskResult {
        match self {
            TaskKind::Lease => TaskResult::LeaseLost(reason),
            TaskKind::Lock => TaskResult::Locked(Err(reason)),
            TaskKind::Deliver(what) => TaskResult::Delivered(what, Err(reason)),
            TaskKind::ReadEscrow => TaskResult::Escrow(Err(reason)),
            TaskKind::Fetch => TaskResult::Fetched(Err(reason)),
        }
    }
}

/// What background work came to.
#[derive(Debug)]
pub enum TaskResult {
    /// A lease attempt ended.
    Lease(Box<LeaseOutcome>),
    /// A lease attempt could not run.
    LeaseLost(String),
    /// The escrow of the job's lease is locked, or why not.
    Locked(Result<(), String>),
    /// A delivery was acknowledged, or given up with the reason.
    Delivered(Delivery, Result<(), String>),
    /// The escrow as read (and closed, when it was closable).
    Escrow(Result<Option<Box<EscrowState>>, String>),
    /// Outputs fetched and checked, or why not.
    Fetched(Result<usize, String>),
}

/// How a request was answered; with `flush`, the router makes the store
/// durable before the answer goes out (and answers "retry" if it cannot).
#[derive(Debug)]
pub struct Answer {
    /// The answer.
    pub response: Response,
    /// It creates an obligation the store must hold first.
    pub flush: bool,
}

impl Answer {
    pub(crate) fn plain(response: Response) -> Self {
        Self {
            response,
            flush: false,
        }
    }
    pub(crate) fn durable(response: Response) -> Self {
        Self {
            response,
            flush: true,
        }
    }
}

/// Why the core refused a user's request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequesterError {
    /// What kind of refusal.
    pub kind: Refusal,
    /// For a person.
    pub message: String,
}

/// Kinds of refusal (the router maps them to HTTP statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request is wrong.
    BadRequest,
    /// No such job.
    NotFound,
    /// Not in this state.
    Conflict,
    /// The node is full.
    Unavailable,
}

impl RequesterError {
    pub(crate) fn new(kind: Refusal, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Settings the core decides by.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The receipt interval proposed in leases.
    pub receipt_interval_secs: u32,
}

/// A settling job's escrow reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct EscrowPoll {
    /// Read next at.
    pub(super) next_at: Timestamp,
    /// A read is in flight.
    pub(super) in_flight: bool,
    /// Quick re-reads done after the final receipt (`None`: none planned).
    pub(super) quick: Option<u32>,
}

/// The requester's jobs and every decision about them.
pub struct Requester {
    pub(super) key: Keypair,
    pub(super) settings: Settings,
    pub(super) jobs: HashMap<OrderId, JobRecord>,
    pub(super) by_lease: HashMap<LeaseId, OrderId>,
    /// Open auctions by closing time.
    pub(super) auctions: BTreeSet<(Timestamp, OrderId)>,
    pub(super) polls: HashMap<OrderId, EscrowPoll>,
    pub(super) fetching: HashSet<OrderId>,
    effects: Vec<Effect>,
}

impl Requester {
    /// The core over stored jobs: open auctions are re-armed, lease
    /// attempts resumed, runs picked up where they were.
    pub fn restore(
        key: Keypair,
        settings: Settings,
        records: Vec<JobRecord>,
        now: Timestamp,
    ) -> Self {
        let mut core = Self {
            key,
            settings,
            jobs: HashMap::new(),
            by_lease: HashMap::new(),
            auctions: BTreeSet::new(),
            polls: HashMap::new(),
            fetching: HashSet::new(),
            effects: Vec::new(),
        };
        let mut resume = Vec::new();
        let mut relock = Vec::new();
        let mut running = Vec::new();
        for mut record in records {
            // No lease attempt outlives the node: the one in flight is
            // asked again (the provider refuses a lease it has already
            // countersigned, and the next bid is tried).
            if record.state == JobState::Leasing && record.leasing_since.take().is_some() {
                record.tried.pop();
            }
            let id = record.id();
            match record.state {
                JobState::Bidding => {
                    core.auctions.insert((record.closes_at, id));
                }
                // Countersigned, its lock perhaps on the chain already:
                // lock it again (idempotent) rather than lease anew.
                JobState::Leasing if record.lease().is_some() => relock.push(id),
                // Instant-path jobs resume through `instant_to_resume`.
                JobState::Leasing if !record.bids.is_empty() => resume.push(id),
                JobState::Leased | JobState::Running => running.push(id),
                _ => {}
            }
            if let Some(lease) = record.lease() {
                core.by_lease.insert(lease.id(), id);
            }
            core.jobs.insert(id, record);
        }
        for id in resume {
            core.next_lease_attempt(id, now);
        }
        for id in relock {
            core.lock(id);
        }
        for id in running {
            core.start_run(id, now);
        }
        core
    }

    /// The effects decided so far, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// One job.
    pub fn job(&self, id: &OrderId) -> Option<&JobRecord> {
        self.jobs.get(id)
    }

    /// Every job.
    pub fn jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values()
    }

    /// When the core next wants a [`Self::tick`]: the first auction to
    /// close or escrow read to make.
    pub fn next_wake(&self) -> Option<Timestamp> {
        let auction = self.auctions.first().map(|(at, _)| *at);
        let polls = self.polls.values().filter(|p| !p.in_flight);
        auction.into_iter().chain(polls.map(|p| p.next_at)).min()
    }

    /// Time passes: auctions close, stuck lease attempts end, silent
    /// providers are given up on, settling jobs' escrows are read.
    pub fn tick(&mut self, now: Timestamp) {
        while let Some(&(at, id)) = self.auctions.first() {
            if at > now {
                break;
            }
            self.auctions.pop_first();
            self.close_auction(id, now);
        }
        self.expire_lease_attempts(now);
        self.tick_runs(now);
        self.tick_settlements(now);
    }

    /// Background work reports.
    pub fn on_task(&mut self, id: OrderId, result: TaskResult, now: Timestamp) {
        match result {
            TaskResult::Lease(outcome) => self.lease_outcome(*outcome, now),
            TaskResult::Locked(result) => self.locked(id, result, now),
            TaskResult::LeaseLost(reason) => {
                if self
                    .jobs
                    .get(&id)
                    .is_some_and(|j| j.state == JobState::Leasing)
                {
                    self.fail(
                        id,
                        now,
                        format!("the lease attempt could not run: {reason}"),
                    );
                }
            }
            TaskResult::Delivered(what, result) => self.delivered(id, what, result, now),
            TaskResult::Escrow(state) => self.escrow_read(id, state.map(|s| s.map(|b| *b)), now),
            TaskResult::Fetched(result) => self.fetched(id, result, now),
        }
    }

    // ---- helpers the role's files share ----

    pub(super) fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    pub(super) fn persist(&mut self, id: OrderId) {
        self.effects.push(Effect::Persist(id));
    }

    pub(super) fn start(&mut self, id: OrderId, task: Task) {
        self.effects.push(Effect::Start(id, task));
    }

    /// Records a step of the job, in its events and its log.
    pub(super) fn event(
        &mut self,
        id: OrderId,
        now: Timestamp,
        kind: JobEventKind,
        detail: impl Into<String>,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let detail = detail.into();
        job.events.push(Event {
            at: now,
            kind,
            detail: detail.clone(),
        });
        job.log_seq += 1;
        let entry = LogRecord {
            seq: job.log_seq,
            at: now,
            kind: LogKind::Event,
            event: Some(kind.name().to_owned()),
            run: None,
            text: detail,
        };
        self.effects.push(Effect::Log(id, vec![entry]));
    }

    /// Appends what a provider reported to the job's log.
    pub(super) fn log_provider(
        &mut self,
        id: OrderId,
        entries: Vec<(Timestamp, LogKind, Option<RunEvent>, String)>,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if entries.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(entries.len());
        for (at, kind, run, text) in entries {
            job.log_seq += 1;
            out.push(LogRecord {
                seq: job.log_seq,
                at,
                kind,
                event: run.map(|r| r.name().to_owned()),
                run,
                text,
            });
        }
        self.effects.push(Effect::Log(id, out));
    }

    /// The job fails for `reason` (a terminal state: nothing was leased,
    /// or nothing more can happen).
    pub(super) fn fail(&mut self, id: OrderId, now: Timestamp, reason: String) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.state = JobState::Failed;
        job.reason = Some(reason.clone());
        job.leasing_since = None;
        self.event(id, now, JobEventKind::Failed, reason);
        self.persist(id);
    }
}
