//! The provider's executor: runs leased jobs through a [`Runtime`], meters
//! them with receipts the requester countersigns, forwards their logs, and
//! settles and closes their leases.
//!
//! One task per run owns the job from payload to close:
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
//! This file holds the registry of runs and the admission of payloads and
//! controls.
//!
//! [`UsageReceipt`]: agora_protocol::UsageReceipt

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agora_client::api::{LogKind, RunView};
use agora_protocol::ledger::Ledger;
use agora_protocol::{
    Amount, JobAction, JobControl, JobPayload, Keypair, LeaseId, OrderId, RunEvent, RunFailure,
    Signed,
};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::now;
use crate::config::RuntimeSection;
use crate::network::{NetworkHandle, Response};
use crate::runtime::{RunSpec, Runtime};
use crate::store::{LogRecord, Store};

mod log_push;
mod meter;
mod record;
mod run;
mod serve;
mod settle;
#[cfg(test)]
mod testing;

pub use record::receipt_view;
use record::{RunRecord, StoredRun};
use run::Stop;

/// A run the executor holds, with what its tasks share.
struct Live {
    record: RunRecord,
    /// Stops the job; the reason is in `stop_reason`.
    stop: CancellationToken,
    stop_reason: Option<Stop>,
    /// Wakes the log pusher.
    wake: Arc<tokio::sync::Notify>,
}

impl Live {
    fn new(record: RunRecord) -> Self {
        Self {
            record,
            stop: CancellationToken::new(),
            stop_reason: None,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }
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
}

/// Runs leased jobs. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    options: ExecutorOptions,
    runs: Mutex<HashMap<LeaseId, Live>>,
}

impl Executor {
    /// Restores runs from the store: a run that was starting or running
    /// when the node stopped is over (its process died with the node); it
    /// is reported failed and settled up to its last countersigned receipt.
    pub fn start(options: ExecutorOptions) -> Self {
        let exec = Executor {
            inner: Arc::new(Inner {
                options,
                runs: Mutex::new(HashMap::new()),
            }),
        };
        let stored: Vec<StoredRun> = exec.inner.options.store.runs().unwrap_or_else(|e| {
            warn!(error = %e, "cannot read stored runs");
            Vec::new()
        });
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
            let interrupted = record.interrupt(now());
            if record.finished() {
                continue;
            }
            exec.runs().insert(id, Live::new(record));
            if interrupted {
                exec.log_event(
                    &id,
                    RunEvent::Failed {
                        failure: RunFailure::Restarted,
                    },
                    RunRecord::interrupted_reason(),
                );
                exec.persist(&id);
            }
            let _ = exec.inner.options.ended.try_send(order);
            let e = exec.clone();
            tokio::spawn(async move { e.push_log(id).await });
            let e = exec.clone();
            tokio::spawn(async move { e.settle(id).await });
        }
        exec
    }

    /// Runs as the API shows them, newest first, and the total settled.
    pub fn views(&self) -> (Vec<RunView>, Amount) {
        let runs = self.runs();
        let mut views: Vec<_> = runs.values().map(|l| l.record.view()).collect();
        views.sort_by_key(|v| std::cmp::Reverse(v.started_at));
        let earned = runs.values().fold(Amount::ZERO, |acc, l| {
            acc.checked_add(l.record.settled).unwrap_or(acc)
        });
        (views, earned)
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
        if self.runs().contains_key(&p.lease_id) {
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
        let Some(gpus) = self.pick_gpus(terms.slot, terms.gpu_count) else {
            return Response::Refused("the leased GPUs are not all free on this provider".into());
        };
        let id = p.lease_id;
        let record = RunRecord::new(lease, gpus.iter().map(|g| g.0).collect());
        {
            let mut runs = self.runs();
            if runs.contains_key(&id) {
                return Response::Ack;
            }
            runs.insert(id, Live::new(record));
        }
        self.log_event(
            &id,
            RunEvent::Accepted,
            &format!("{} input file(s)", p.inputs.len()),
        );
        self.persist(&id);
        // The payload is acknowledged only once the run is durable.
        if let Err(e) = o.store.flush() {
            self.runs().remove(&id);
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
        tokio::spawn(async move { e.run(id, spec).await });
        let e = self.clone();
        tokio::spawn(async move { e.push_log(id).await });
        Response::Ack
    }

    /// Answers a job control message (cancel).
    pub fn on_control(&self, peer: PeerId, control: Signed<JobControl>) -> Response {
        let c = control.message();
        let mut runs = self.runs();
        let Some(live) = runs.get_mut(&c.lease_id) else {
            return Response::Refused(format!("no run for lease {}", c.lease_id));
        };
        let requester = live.record.lease.terms().requester;
        if control.signer() != &requester || requester.peer_id() != peer {
            return Response::Refused("only the lease's requester controls its job".into());
        }
        match c.action {
            JobAction::Cancel => {
                if live.stop_reason.is_none() {
                    live.stop_reason = Some(Stop::Cancelled);
                }
                live.stop.cancel();
            }
        }
        Response::Ack
    }

    fn pick_gpus(&self, slot: u32, count: u32) -> Option<Vec<(u32, String, bool)>> {
        let o = &self.inner.options;
        let all = o.slots.get(&slot)?;
        let runs = self.runs();
        let busy: Vec<u32> = runs
            .values()
            .filter(|l| l.record.phase.holds_gpus())
            .flat_map(|l| l.record.gpu_indices.iter().copied())
            .collect();
        let free: Vec<_> = all
            .iter()
            .filter(|g| !busy.contains(&g.0))
            .take(count as usize)
            .cloned()
            .collect();
        (free.len() == count as usize).then_some(free)
    }

    /// The registry of runs.
    fn runs(&self) -> MutexGuard<'_, HashMap<LeaseId, Live>> {
        self.inner.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls `f` on the run, if the executor holds it.
    fn with<R>(&self, id: &LeaseId, f: impl FnOnce(&mut Live) -> R) -> Option<R> {
        self.runs().get_mut(id).map(f)
    }

    /// Stores the run (not flushed: the callers that guard an obligation
    /// flush themselves).
    fn persist(&self, id: &LeaseId) {
        let runs = self.runs();
        if let Some(live) = runs.get(id)
            && let Err(e) = self.inner.options.store.put_run(id, &live.record.stored())
        {
            warn!(lease = %id, error = %e, "cannot store the run");
        }
    }

    /// Appends an entry to the run's log and wakes its pusher.
    fn append(&self, id: &LeaseId, kind: LogKind, run: Option<RunEvent>, text: String) {
        let (entry, wake) = {
            let mut runs = self.runs();
            let Some(live) = runs.get_mut(id) else {
                return;
            };
            live.record.log_seq += 1;
            let entry = LogRecord {
                seq: live.record.log_seq,
                at: now(),
                kind,
                event: run.map(|r| r.name().to_owned()),
                run,
                text,
            };
            (entry, live.wake.clone())
        };
        if let Err(e) = self.inner.options.store.append_log(&id.0, &[entry]) {
            warn!(lease = %id, error = %e, "cannot store a log entry");
        }
        wake.notify_one();
    }

    fn log_event(&self, id: &LeaseId, event: RunEvent, detail: &str) {
        self.append(id, LogKind::Event, Some(event), detail.to_string());
    }
}
