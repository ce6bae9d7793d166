//! The provider's executor: runs leased jobs through a [`Runtime`], meters
//! them with receipts the requester countersigns, forwards their logs, and
//! settles and closes their leases.
//!
//! One task per run drives the job from payload to close:
//! 1. the runtime runs the command; its output becomes log entries
//!    ([`run`]);
//! 2. every receipt interval a cumulative [`UsageReceipt`] goes to the
//!    requester, and a run whose requester stops countersigning for an
//!    interval plus `countersign_grace_secs` is stopped: the provider's
//!    risk is one interval ([`meter`]);
//! 3. at the end, a final receipt carries the exit status and the blake3
//!    of the result manifest;
//! 4. the latest countersigned receipt is settled once — retried while the
//!    ledger is unreachable — and the lease closed: three ledger
//!    operations per lease (lock, settle, close) however long it ran
//!    ([`settle`]).
//!
//! A second task per run forwards the log to the requester's node, which
//! acknowledges the next sequence it expects; nothing is dropped while the
//! requester is away ([`log_push`]). The requester fetches the outputs
//! from [`serve`]. Everything a run needs to resume settling after a
//! crash is in the store ([`record`]); a job that was running when the
//! node died is reported failed and paid up to its last countersigned
//! receipt.
//!
//! One actor owns every run's record ([`actor`]): the per-run tasks and
//! the peers' requests reach it through [`Executor`], a cheap handle over
//! its bounded channel, and the API reads the runs from the snapshot it
//! publishes. A peer's request that finds the channel full is answered
//! "retry"; a run's own task waits its turn.
//!
//! [`UsageReceipt`]: agora_protocol::UsageReceipt

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agora_client::api::{LogKind, RunView};
use agora_protocol::ledger::Ledger;
use agora_protocol::{
    Amount, JobControl, JobPayload, Keypair, LeaseId, OrderId, RunEvent, Signed, Timestamp,
};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::now;
use crate::config::RuntimeSection;
use crate::network::{NetworkHandle, Response};
use crate::runtime::{RunSpec, Runtime};
use crate::store::{MoneyEntry, Side, Store};

mod actor;
mod close;
mod log_push;
mod meter;
mod record;
mod run;
mod serve;
mod settle;
#[cfg(test)]
mod testing;

use actor::{Actor, Admission, Command, Snapshot, Update};
pub use record::receipt_view;
use record::{RunRecord, StoredRun};

/// How often work dirs past their retention are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Removes `retained.expired`, then every dir under `jobs_dir` that is not
/// in use and was last modified more than `retention` ago; how many went.
fn sweep(jobs_dir: &std::path::Path, retained: &actor::Retained, retention: Duration) -> usize {
    let mut removed = 0;
    let mut remove = |dir: &std::path::Path| match std::fs::remove_dir_all(dir) {
        Ok(()) => removed += 1,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(dir = %dir.display(), error = %e, "cannot remove a work dir"),
    };
    for dir in &retained.expired {
        remove(dir);
    }
    let Ok(entries) = std::fs::read_dir(jobs_dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if retained.in_use.contains(&name) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age >= retention);
        if old && entry.path().is_dir() {
            remove(&entry.path());
        }
    }
    removed
}

/// Every this many work-dir sweeps (an hour), finished runs past their
/// retention are deleted from the store.
const RUN_SWEEP_EVERY: u64 = 60;

/// Deletes the stored runs that are finished and ended before `cut`, with
/// their logs and leases; their ids.
fn retire_stored_runs(store: &Store, cut: Timestamp) -> Vec<LeaseId> {
    let stored: Vec<StoredRun> = match store.runs() {
        Ok(stored) => stored,
        Err(e) => {
            warn!(error = %e, "cannot read stored runs for their retention");
            return Vec::new();
        }
    };
    let mut retired = Vec::new();
    for stored in stored {
        let Ok(record) = RunRecord::restore(stored) else {
            continue;
        };
        if !record.finished() || record.ended_at.is_none_or(|at| at >= cut) {
            continue;
        }
        let id = record.lease.id();
        match store.remove_run(&id) {
            Ok(_) => retired.push(id),
            Err(e) => warn!(lease = %id, error = %e, "cannot delete a run past its retention"),
        }
    }
    retired
}

/// Everything the executor needs from the node.
pub struct ExecutorOptions {
    /// This provider's key.
    pub key: Keypair,
    /// Durable state.
    pub store: Store,
    /// The swarm.
    pub network: NetworkHandle,
    /// The ledger.
    pub ledger: Arc<dyn Ledger>,
    /// What runs jobs.
    pub runtime: Arc<dyn Runtime>,
    /// Limits and policy.
    pub settings: RuntimeSection,
    /// Where jobs' work dirs go.
    pub jobs_dir: PathBuf,
    /// GPU indices and UUIDs by offer slot.
    pub slots: HashMap<u32, Vec<(u32, String, bool)>>,
    /// Told the order of each run that ended (its GPUs are free again).
    pub ended: mpsc::Sender<OrderId>,
    /// Node shutdown.
    pub cancel: CancellationToken,
    /// Where receipts and settlements are counted.
    pub metrics: crate::metrics::Metrics,
}

/// Runs leased jobs: the handle to the actor that owns the runs. Cheap to
/// clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// What every clone shares: the node's services (no run state) and the
/// way to the actor.
struct Inner {
    options: ExecutorOptions,
    commands: mpsc::Sender<Command>,
    views: watch::Receiver<Arc<Snapshot>>,
}

impl Executor {
    /// Restores runs from the store and starts the actor that owns them: a
    /// run that was starting or running when the node stopped is over (its
    /// process died with the node); it is reported failed and settled up
    /// to its last countersigned receipt. The node's cancel token stops
    /// the actor and every run's tasks; what they stored stays stored.
    pub fn start(options: ExecutorOptions) -> Self {
        let (mut actor, views) = Actor::new(
            options.store.clone(),
            options.slots.clone(),
            options.settings.countersign_grace_secs,
        );
        let stored: Vec<StoredRun> = options.store.runs().unwrap_or_else(|e| {
            warn!(error = %e, "cannot read stored runs");
            Vec::new()
        });
        let mut resumed = Vec::new();
        // Runs stored before earnings were recorded per receipt count as
        // earned when their latest countersignature arrived: once.
        let backfill = !options.store.has_money(Side::Earned).unwrap_or(true);
        for stored in stored {
            let mut record = match RunRecord::restore(stored) {
                Ok(record) => record,
                Err(e) => {
                    warn!(error = %e, "a stored run has an unreadable lease; skipped");
                    continue;
                }
            };
            let id = record.lease.id();
            let order = record.lease.terms().order_id;
            if backfill && let Some(claim) = &record.countersigned {
                let r = claim.receipt();
                let at = record
                    .countersigned_at
                    .unwrap_or(record.lease.terms().starts_at);
                if let Some(entry) =
                    MoneyEntry::increase(id, r.sequence, r.cumulative_amount, None, at)
                    && let Err(e) = options.store.put_money(Side::Earned, &entry)
                {
                    warn!(lease = %id, error = %e, "cannot backfill the earnings entry");
                }
            }
            let interrupted = record.interrupt(now());
            if record.finished() {
                actor.count_finished(record.settled);
                continue;
            }
            actor.restore(record, interrupted);
            tell_ended(&options.ended, order);
            resumed.push(id);
        }
        let (commands, rx) = mpsc::channel(actor::COMMANDS);
        tokio::spawn(actor.run(rx, options.cancel.clone()));
        let exec = Executor {
            inner: Arc::new(Inner {
                options,
                commands,
                views,
            }),
        };
        let e = exec.clone();
        tokio::spawn(async move { e.sweep_work_dirs().await });
        for id in resumed {
            let e = exec.clone();
            tokio::spawn(async move { e.push_log(id).await });
            let e = exec.clone();
            tokio::spawn(async move { e.settle(id).await });
        }
        exec
    }

    /// Removes work dirs past their retention, once at start and then every
    /// [`SWEEP_EVERY`] until the node stops: a finished run's (its outputs
    /// are then gone for fetches), and any dir under the jobs dir that no
    /// run uses and that nobody wrote in for the retention (a run from
    /// before a restart). A running job's dir is never touched.
    async fn sweep_work_dirs(&self) {
        let o = &self.inner.options;
        let retention = Duration::from_secs(o.settings.work_retention_secs);
        let mut sweeps: u64 = 0;
        loop {
            let before = Timestamp(
                now()
                    .0
                    .saturating_sub(o.settings.work_retention_secs.saturating_mul(1000)),
            );
            let (reply, answer) = oneshot::channel();
            if self
                .inner
                .commands
                .send(Command::Retention { before, reply })
                .await
                .is_err()
            {
                return;
            }
            let Ok(retained) = answer.await else {
                return;
            };
            let jobs_dir = o.jobs_dir.clone();
            let removed =
                tokio::task::spawn_blocking(move || sweep(&jobs_dir, &retained, retention))
                    .await
                    .unwrap_or(0);
            if removed > 0 {
                info!(
                    removed,
                    retention_secs = retention.as_secs(),
                    "work dirs past their retention removed"
                );
            }
            if sweeps.is_multiple_of(RUN_SWEEP_EVERY) {
                self.retire_runs().await;
            }
            sweeps += 1;
            tokio::select! {
                () = o.cancel.cancelled() => return,
                () = tokio::time::sleep(SWEEP_EVERY) => {}
            }
        }
    }

    /// Deletes from the store the finished runs (closed, log delivered)
    /// that ended more than `runtime.run_retention_days` ago, with their
    /// logs and leases, and forgets them here; off the actor.
    async fn retire_runs(&self) {
        let o = &self.inner.options;
        let cut = now().0.saturating_sub(
            o.settings
                .run_retention_days
                .saturating_mul(24 * 3600 * 1000),
        );
        let store = o.store.clone();
        let retired =
            tokio::task::spawn_blocking(move || retire_stored_runs(&store, Timestamp(cut)))
                .await
                .unwrap_or_default();
        for id in &retired {
            let _ = self.inner.commands.send(Command::Forget { id: *id }).await;
        }
        if !retired.is_empty() {
            info!(
                runs = retired.len(),
                "finished runs past their retention deleted"
            );
        }
    }

    /// Runs as the API shows them, newest first, and the total settled:
    /// the actor's latest snapshot.
    pub fn views(&self) -> (Vec<RunView>, Amount) {
        let snapshot = self.inner.views.borrow();
        (snapshot.views.clone(), snapshot.earned)
    }

    /// The leases that have a run (admitted, running or ended but not yet
    /// forgotten): the actor's latest snapshot.
    pub fn run_leases(&self) -> Vec<LeaseId> {
        self.inner.views.borrow().leases.clone()
    }

    /// The GPUs (indices) that runs hold now: the actor's latest snapshot.
    pub fn busy_gpus(&self) -> Vec<u32> {
        self.inner.views.borrow().busy_gpus.clone()
    }

    /// Answers a job payload: checks it against the lease and the escrow,
    /// then starts the run.
    pub async fn on_payload(&self, peer: PeerId, payload: Signed<JobPayload>) -> Response {
        let o = &self.inner.options;
        let p = payload.message();
        let lease = match o.store.lease(&p.lease_id) {
            Ok(Some(lease)) if lease.terms().provider == o.key.public() => lease,
            Ok(_) => {
                return Response::Refused(format!("no lease {} with this provider", p.lease_id));
            }
            Err(e) => return Response::Retry(format!("provider store: {e}")),
        };
        let terms = lease.terms().clone();
        if payload.signer() != &terms.requester || terms.requester.peer_id() != peer {
            return Response::Refused("a job payload must come from the lease's requester".into());
        }
        if self.inner.views.borrow().leases.contains(&p.lease_id) {
            return Response::Ack;
        }
        if p.runtime != o.runtime.name() {
            return Response::Refused(format!(
                "this provider runs {:?} jobs, not {:?}",
                o.runtime.name(),
                p.runtime
            ));
        }
        if p.network && !o.settings.allow_network {
            return Response::Refused("this provider does not give jobs network access".into());
        }
        let now = now();
        if now >= terms.ends_at() {
            return Response::Refused("the lease has already ended".into());
        }
        if let Err(e) = o.runtime.health().await {
            return Response::Retry(format!("the runtime cannot run jobs now: {e}"));
        }
        // Never run what is not paid for: the escrow must be on the ledger.
        match o.ledger.escrow(&p.lease_id).await {
            Ok(Some(state)) if state.escrow == terms.escrow && !state.closed() => {}
            Ok(Some(_)) => {
                return Response::Refused("the lease's escrow is closed or different".into());
            }
            Ok(None) => return Response::Retry("the lease's escrow is not locked yet".into()),
            Err(e) => return Response::Retry(format!("cannot check the escrow: {e}")),
        }
        let id = p.lease_id;
        let inputs = p.inputs.len();
        let admission = self
            .try_ask(|reply| Command::Admit {
                lease: Box::new(lease),
                inputs,
                reply,
            })
            .await;
        let (gpus, stop) = match admission {
            Ok(Admission::Admitted { gpus, stop }) => (gpus, stop),
            Ok(Admission::Duplicate) => return Response::Ack,
            Ok(Admission::NoGpus) => {
                return Response::Refused(
                    "the leased GPUs are not all free on this provider".into(),
                );
            }
            Err(busy) => return busy,
        };
        // The payload is acknowledged only once the run is durable.
        if let Err(e) = o.store.flush() {
            let _ = self.inner.commands.send(Command::Forget { id }).await;
            return Response::Retry(format!("provider store: {e}"));
        }
        let spec = RunSpec {
            lease_id: id.to_string(),
            command: p.command.clone(),
            env: p.env.clone(),
            inputs: p
                .inputs
                .iter()
                .map(|f| (f.path.clone(), f.content.clone()))
                .collect(),
            gpu_indices: gpus.iter().map(|g| g.0).collect(),
            gpu_uuids: gpus.iter().filter(|g| !g.2).map(|g| g.1.clone()).collect(),
            network: p.network,
            time_limit: Duration::from_millis(terms.ends_at().ms_since(now)),
            work_dir: o.jobs_dir.join(id.to_string()),
        };
        info!(lease = %id, requester = %terms.requester.short(), "job accepted");
        let e = self.clone();
        tokio::spawn(async move { e.run(id, spec, stop, terms).await });
        let e = self.clone();
        tokio::spawn(async move { e.push_log(id).await });
        Response::Ack
    }

    /// Answers a job control message (cancel).
    pub async fn on_control(&self, peer: PeerId, control: Signed<JobControl>) -> Response {
        self.try_ask(|reply| Command::Control {
            peer,
            control: Box::new(control),
            reply,
        })
        .await
        .unwrap_or_else(|busy| busy)
    }

    /// Asks the actor for a peer: a full channel is answered "retry" at
    /// once rather than kept waiting.
    async fn try_ask<R>(
        &self,
        command: impl FnOnce(oneshot::Sender<R>) -> Command,
    ) -> Result<R, Response> {
        try_ask(&self.inner.commands, command).await
    }

    /// Asks the actor for a run's task, waiting for room in its channel;
    /// `None` once the node stops.
    async fn ask<R>(&self, command: impl FnOnce(oneshot::Sender<R>) -> Command) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.inner.commands.send(command(tx)).await.ok()?;
        rx.await.ok()
    }

    /// A copy of the run's record, if the executor holds it.
    async fn record(&self, id: LeaseId) -> Option<RunRecord> {
        self.ask(|reply| Command::Record { id, reply })
            .await
            .flatten()
    }

    /// Changes the run's record and stores it (not flushed: the callers
    /// that guard an obligation flush once this returns). False when the
    /// run is gone or the node stops.
    async fn update(&self, id: LeaseId, update: Update) -> bool {
        self.ask(|reply| Command::Update { id, update, reply })
            .await
            .unwrap_or(false)
    }

    /// Appends an entry to the run's log and wakes its pusher.
    async fn append(&self, id: LeaseId, kind: LogKind, event: Option<RunEvent>, text: String) {
        let command = Command::Append {
            id,
            kind,
            event,
            text,
        };
        let _ = self.inner.commands.send(command).await;
    }

    async fn log_event(&self, id: LeaseId, event: RunEvent, detail: &str) {
        self.append(id, LogKind::Event, Some(event), detail.to_string())
            .await;
    }
}

/// Tells the router a run's GPUs are free. A full channel is waited on
/// by a task of its own (at most one per run), so the run goes on and
/// the news is never dropped.
fn tell_ended(ended: &mpsc::Sender<OrderId>, order: OrderId) {
    if let Err(mpsc::error::TrySendError::Full(order)) = ended.try_send(order) {
        let ended = ended.clone();
        tokio::spawn(async move {
            let _ = ended.send(order).await;
        });
    }
}

/// Sends `command` if the channel has room and waits for its answer; a
/// full channel or a stopped actor is a "retry" for the peer.
async fn try_ask<R>(
    commands: &mpsc::Sender<Command>,
    command: impl FnOnce(oneshot::Sender<R>) -> Command,
) -> Result<R, Response> {
    let stopping = || Response::Retry("the provider's executor is stopping; retry".into());
    let (tx, rx) = oneshot::channel();
    match commands.try_send(command(tx)) {
        Ok(()) => rx.await.map_err(|_| stopping()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(Response::Retry(
            "busy: the provider's executor has too many requests queued; retry".into(),
        )),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(stopping()),
    }
}

#[cfg(test)]
mod sweep_tests {
    use std::time::{Duration, SystemTime};

    use super::{actor::Retained, sweep};

    fn aged(dir: &std::path::Path, secs: u64) {
        let at = SystemTime::now() - Duration::from_secs(secs);
        std::fs::File::open(dir).unwrap().set_modified(at).unwrap();
    }

    #[test]
    fn only_unused_dirs_past_the_retention_and_the_expired_go() {
        let jobs = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let d = jobs.path().join(name);
            std::fs::create_dir_all(d.join("out")).unwrap();
            std::fs::write(d.join("out/r"), "r").unwrap();
            d
        };
        let (expired, running, old, fresh) =
            (dir("expired"), dir("running"), dir("old"), dir("fresh"));
        for d in [&running, &old] {
            aged(d, 7200);
        }
        let retained = Retained {
            expired: vec![expired.clone()],
            in_use: ["running".to_owned()].into_iter().collect(),
        };
        assert_eq!(sweep(jobs.path(), &retained, Duration::from_secs(3600)), 2);
        assert!(!expired.exists() && !old.exists());
        // In use however old, and unused but recent: kept.
        assert!(running.join("out/r").exists() && fresh.join("out/r").exists());
    }

    #[test]
    fn finished_runs_that_ended_before_the_cut_are_deleted_with_their_logs() {
        use super::record::{Phase, RunRecord};
        use super::{Store, retire_stored_runs};
        use agora_protocol::{OrderId, Timestamp};

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let run = |nonce: u8, phase: Phase, ended_ms: u64| {
            let order = OrderId::new(
                &agora_protocol::Keypair::from_seed(&[9; 32]).public(),
                &[nonce; 16],
            );
            let (_, _, lease) = super::testing::lease_for(order);
            let mut record = RunRecord::new(lease, vec![0]);
            record.phase = phase;
            record.ended_at = Some(Timestamp(ended_ms));
            let id = record.lease.id();
            store.put_lease(&record.lease).unwrap();
            store.put_run(&id, &record.stored()).unwrap();
            let entry = crate::store::LogRecord {
                seq: 1,
                at: Timestamp(ended_ms),
                kind: agora_client::api::LogKind::Stdout,
                event: None,
                run: None,
                text: "out\n".into(),
            };
            store.append_log(&id.0, &[entry]).unwrap();
            id
        };
        let old_closed = run(1, Phase::Closed, 1_000);
        let old_settling = run(2, Phase::Ended, 1_000);
        let young_closed = run(3, Phase::Closed, 9_000);
        assert_eq!(
            retire_stored_runs(&store, Timestamp(5_000)),
            vec![old_closed]
        );
        assert!(store.lease(&old_closed).unwrap().is_none());
        assert!(
            store
                .log_after(&old_closed.0, 0, 10, usize::MAX)
                .unwrap()
                .is_empty()
        );
        // One still settling, and one closed after the cut, stay whole.
        for id in [old_settling, young_closed] {
            assert!(store.lease(&id).unwrap().is_some());
            assert_eq!(store.log_after(&id.0, 0, 10, usize::MAX).unwrap().len(), 1);
        }
        assert_eq!(store.runs::<super::StoredRun>().unwrap().len(), 2);
    }
}
