//! The provider's executor: runs leased jobs through a [`Runtime`], meters
//! them with receipts the requester countersigns, forwards their logs, and
//! settles and closes their leases.
//!
//! One task per run owns the job from payload to close:
//! 1. the runtime runs the command; its output becomes log entries;
//! 2. every receipt interval a cumulative [`UsageReceipt`] goes to the
//!    requester, and a run whose requester stops countersigning for an
//!    interval plus `countersign_grace_secs` is stopped: the provider's
//!    risk is one interval;
//! 3. at the end, a final receipt carries the exit status and the blake3
//!    of the result manifest;
//! 4. the latest countersigned receipt is settled once — retried while the
//!    ledger is unreachable — and the lease closed: three ledger
//!    operations per lease (lock, settle, close) however long it ran.
//!
//! A second task per run forwards the log to the requester's node, which
//! acknowledges the next sequence it expects; nothing is dropped while the
//! requester is away. Everything a run needs to resume settling after a
//! crash is in the store; a job that was running when the node died is
//! reported failed and paid up to its last countersigned receipt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_client::api::{LogKind, ReceiptView, RunView};
use agora_protocol::amount::cost;
use agora_protocol::ledger::Ledger;
use agora_protocol::{
    Amount, CoSigned, JobAction, JobControl, JobPayload, Keypair, Lease, LeaseId, LedgerError,
    OrderId, ReceiptClaim, RunEvent, RunFailure, Signed, Timestamp, UsageReceipt,
};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::now;
use crate::config::RuntimeSection;
use crate::network::wire::{Fetch, JobUpdate, LogEntry, Manifest, ManifestFile};
use crate::network::{NetworkHandle, Request, Response};
use crate::runtime::{self, Exit, Outcome, RunSpec, Runtime, Stream};
use crate::store::LogRecord;
use crate::store::Store;

/// Entries per update at most, and bytes of text.
const UPDATE_ENTRIES: usize = 512;
const UPDATE_BYTES: usize = 1024 * 1024;
/// How long the final receipt is offered for countersigning.
const FINAL_RECEIPT_TRIES: u32 = 5;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The payload arrived; the runtime is starting it.
    Starting,
    /// The job runs.
    Running,
    /// It ended; settling.
    Ended,
}

/// What the store keeps of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The lease, hex of its wire bytes.
    pub lease: String,
    /// Phase.
    pub phase: Phase,
    /// GPUs the job was pinned to.
    pub gpu_indices: Vec<u32>,
    /// Started.
    pub started_at: Option<Timestamp>,
    /// Ended.
    pub ended_at: Option<Timestamp>,
    /// Exit status.
    pub exit_code: Option<i32>,
    /// Why it ended, when not by exiting 0.
    pub reason: Option<String>,
    /// Entries in the run's log.
    pub log_seq: u64,
    /// The next entry the requester expects.
    pub acked: u64,
    /// The result manifest, hex (once ended).
    pub manifest: Option<String>,
    /// The requester has the manifest.
    pub manifest_delivered: bool,
    /// Highest receipt sequence signed.
    pub receipt_seq: u64,
    /// The latest countersigned receipt, hex of its wire bytes.
    pub countersigned: Option<String>,
    /// When the latest countersignature arrived (or the run started).
    pub countersigned_at: Option<Timestamp>,
    /// Paid on the ledger so far.
    pub settled: Amount,
    /// Highest receipt sequence settled.
    pub settled_seq: u64,
    /// The lease is closed on the ledger.
    pub closed: bool,
    /// Output directory.
    pub output_dir: Option<PathBuf>,
}

impl RunRecord {
    fn lease(&self) -> Option<Lease> {
        hex::decode(&self.lease)
            .ok()
            .and_then(|b| Lease::decode(&b).ok())
    }

    fn claim(&self) -> Option<ReceiptClaim> {
        self.countersigned
            .as_ref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| ReceiptClaim::decode(&b).ok())
    }

    fn view(&self, lease: &Lease) -> RunView {
        RunView {
            lease_id: lease.id().to_string(),
            order_id: lease.terms().order_id.to_string(),
            requester: lease.terms().requester,
            state: match self.phase {
                Phase::Starting => "starting",
                Phase::Running => "running",
                Phase::Ended => "ended",
            }
            .into(),
            started_at: self.started_at,
            ended_at: self.ended_at,
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            receipt: self.claim().map(|c| receipt_view(c.receipt())),
            settled: self.settled,
            closed: self.closed,
        }
    }
}

/// A receipt as the API shows it.
pub fn receipt_view(r: &UsageReceipt) -> ReceiptView {
    ReceiptView {
        sequence: r.sequence,
        gpu_seconds: r.gpu_seconds,
        amount: r.cumulative_amount,
        issued_at: r.issued_at,
        is_final: r.is_final,
        exit_status: r.exit_status,
        result_hash: r.result_hash.map(hex::encode),
    }
}

struct Live {
    record: RunRecord,
    lease: Lease,
    /// Stops the job; the reason is in `stop_reason`.
    stop: CancellationToken,
    stop_reason: Option<Stop>,
    /// Wakes the log pusher.
    wake: Arc<tokio::sync::Notify>,
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

fn lock(inner: &Inner) -> std::sync::MutexGuard<'_, HashMap<LeaseId, Live>> {
    inner.runs.lock().unwrap_or_else(|p| p.into_inner())
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
        let records: Vec<RunRecord> = exec.inner.options.store.runs().unwrap_or_else(|e| {
            warn!(error = %e, "cannot read stored runs");
            Vec::new()
        });
        for mut record in records {
            let Some(lease) = record.lease() else {
                warn!("a stored run has an unreadable lease; skipped");
                continue;
            };
            let id = lease.id();
            let interrupted = record.phase != Phase::Ended;
            if interrupted {
                record.phase = Phase::Ended;
                record.ended_at = Some(now());
                record.reason = Some("the provider's node restarted while the job ran".into());
            }
            if record.closed && record.acked > record.log_seq {
                continue;
            }
            let live = Live {
                record,
                lease: lease.clone(),
                stop: CancellationToken::new(),
                stop_reason: None,
                wake: Arc::new(tokio::sync::Notify::new()),
            };
            lock(&exec.inner).insert(id, live);
            if interrupted {
                exec.log_event(
                    &id,
                    RunEvent::Failed {
                        failure: RunFailure::Restarted,
                    },
                    "the provider's node restarted while the job ran",
                );
                exec.persist(&id);
            }
            let _ = exec.inner.options.ended.try_send(lease.terms().order_id);
            let e = exec.clone();
            tokio::spawn(async move { e.push_log(id).await });
            let e = exec.clone();
            tokio::spawn(async move { e.settle(id).await });
        }
        exec
    }

    /// Runs as the API shows them, newest first, and the total settled.
    pub fn views(&self) -> (Vec<RunView>, Amount) {
        let runs = lock(&self.inner);
        let mut views: Vec<_> = runs.values().map(|l| l.record.view(&l.lease)).collect();
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
        if lock(&self.inner).contains_key(&p.lease_id) {
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
        let record = RunRecord {
            lease: hex::encode(lease.encode()),
            phase: Phase::Starting,
            gpu_indices: gpus.iter().map(|g| g.0).collect(),
            started_at: None,
            ended_at: None,
            exit_code: None,
            reason: None,
            log_seq: 0,
            acked: 1,
            manifest: None,
            manifest_delivered: false,
            receipt_seq: 0,
            countersigned: None,
            countersigned_at: None,
            settled: Amount::ZERO,
            settled_seq: 0,
            closed: false,
            output_dir: None,
        };
        {
            let mut runs = lock(&self.inner);
            if runs.contains_key(&id) {
                return Response::Ack;
            }
            runs.insert(
                id,
                Live {
                    record,
                    lease: lease.clone(),
                    stop: CancellationToken::new(),
                    stop_reason: None,
                    wake: Arc::new(tokio::sync::Notify::new()),
                },
            );
        }
        self.log_event(
            &id,
            RunEvent::Accepted,
            &format!("{} input file(s)", p.inputs.len()),
        );
        self.persist(&id);
        if let Err(e) = o.store.flush() {
            lock(&self.inner).remove(&id);
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
        let mut runs = lock(&self.inner);
        let Some(live) = runs.get_mut(&c.lease_id) else {
            return Response::Refused(format!("no run for lease {}", c.lease_id));
        };
        let requester = live.lease.terms().requester;
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

    /// Serves a piece of an output file to the lease's requester.
    pub async fn on_fetch(&self, peer: PeerId, fetch: Fetch) -> Response {
        let (dir, file) = {
            let runs = lock(&self.inner);
            let Some(live) = runs.get(&fetch.lease_id) else {
                return Response::Refused(format!("no run for lease {}", fetch.lease_id));
            };
            if live.lease.terms().requester.peer_id() != peer {
                return Response::Refused("only the lease's requester fetches its outputs".into());
            }
            let manifest = live
                .record
                .manifest
                .as_ref()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| Manifest::decode(&b).ok());
            let Some(manifest) = manifest else {
                return Response::Retry("the job has not ended yet".into());
            };
            let Some(file) = manifest.files.into_iter().find(|f| f.path == fetch.path) else {
                return Response::Refused(format!("{:?} is not an output of this job", fetch.path));
            };
            let Some(dir) = live.record.output_dir.clone() else {
                return Response::Refused("the job's outputs are gone".into());
            };
            (dir, file)
        };
        match read_piece(&dir.join(&file.path), fetch.offset, fetch.max_len).await {
            Ok(data) => Response::Chunk {
                data,
                size: file.size,
            },
            Err(e) => Response::Refused(format!("cannot read {:?}: {e}", file.path)),
        }
    }

    fn pick_gpus(&self, slot: u32, count: u32) -> Option<Vec<(u32, String, bool)>> {
        let o = &self.inner.options;
        let all = o.slots.get(&slot)?;
        let runs = lock(&self.inner);
        let busy: Vec<u32> = runs
            .values()
            .filter(|l| l.record.phase != Phase::Ended)
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

    fn persist(&self, id: &LeaseId) {
        let runs = lock(&self.inner);
        if let Some(live) = runs.get(id)
            && let Err(e) = self.inner.options.store.put_run(id, &live.record)
        {
            warn!(lease = %id, error = %e, "cannot store the run");
        }
    }

    fn append(&self, id: &LeaseId, kind: LogKind, run: Option<RunEvent>, text: String) {
        let (entry, wake) = {
            let mut runs = lock(&self.inner);
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

    fn with<R>(&self, id: &LeaseId, f: impl FnOnce(&mut Live) -> R) -> Option<R> {
        lock(&self.inner).get_mut(id).map(f)
    }

    /// Runs the job, meters it, and hands over to settlement.
    async fn run(self, id: LeaseId, spec: RunSpec) {
        let o = &self.inner.options;
        let (tx, mut rx) = mpsc::channel::<runtime::RunEvent>(256);
        let Some((stop, terms)) = self.with(&id, |l| (l.stop.clone(), l.lease.terms().clone()))
        else {
            return;
        };
        let runtime = o.runtime.clone();
        let work_dir = spec.work_dir.clone();
        let job_stop = stop.clone();
        let mut job = tokio::spawn(async move { runtime.run(spec, tx, job_stop).await });
        let interval = Duration::from_secs(u64::from(terms.receipt_interval_secs.max(1)));
        let mut meter = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut metering: Option<tokio::task::JoinHandle<()>> = None;
        let mut log_bytes: u64 = 0;
        let mut dropped: u64 = 0;
        let result = loop {
            tokio::select! {
                result = &mut job => break result,
                Some(event) = rx.recv() => {
                    self.on_run_event(&id, event, &mut log_bytes, &mut dropped);
                }
                _ = meter.tick() => {
                    if metering.as_ref().is_none_or(|m| m.is_finished()) {
                        let e = self.clone();
                        metering = Some(tokio::spawn(async move { e.meter(id, false, 1).await; }));
                    }
                    self.check_countersignatures(&id, interval);
                }
                () = o.cancel.cancelled() => {
                    // The node is stopping: the job dies with it and is
                    // reported on restart.
                    stop.cancel();
                    return;
                }
            }
        };
        while let Ok(event) = rx.try_recv() {
            self.on_run_event(&id, event, &mut log_bytes, &mut dropped);
        }
        if dropped > 0 {
            self.append(
                &id,
                LogKind::Stderr,
                None,
                format!("[agora: {dropped} bytes of output over the provider's log limit were dropped]\n"),
            );
        }
        if let Some(m) = metering {
            let _ = m.await;
        }
        let ended = now();
        let stop_reason = self.with(&id, |l| l.stop_reason).flatten();
        let runtime_failed = RunEvent::Failed {
            failure: RunFailure::Runtime,
        };
        let (event, reason, outcome) = match result {
            Ok(Ok(outcome)) => {
                let (event, reason) = describe_exit(&outcome.exit, stop_reason);
                let reason = with_runtime_reason(reason, outcome.reason.as_deref());
                (event, reason, Some(outcome))
            }
            Ok(Err(e)) => (runtime_failed, Some(e.to_string()), None),
            Err(e) => (
                runtime_failed,
                Some(format!("the runtime task failed: {e}")),
                None,
            ),
        };
        let exit_code = event.exit_code();
        let manifest = Manifest {
            lease_id: id,
            files: outcome
                .as_ref()
                .map(|o| {
                    o.outputs
                        .iter()
                        .map(|f| ManifestFile {
                            path: f.path.clone(),
                            size: f.size,
                            blake3: f.blake3,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            note: outcome
                .as_ref()
                .and_then(|o| o.outputs_note.clone())
                .unwrap_or_default(),
        };
        let manifest_bytes = manifest.encode();
        let detail = match (&exit_code, &reason) {
            (Some(code), None) => format!("exit status {code}"),
            (Some(code), Some(r)) => format!("exit status {code}: {r}"),
            (None, Some(r)) => r.clone(),
            (None, None) => String::new(),
        };
        self.with(&id, |l| {
            l.record.phase = Phase::Ended;
            l.record.ended_at = Some(ended);
            l.record.exit_code = exit_code;
            l.record.reason = reason.clone();
            l.record.manifest = Some(hex::encode(&manifest_bytes));
            l.record.output_dir = outcome
                .as_ref()
                .map(|o: &Outcome| o.output_dir.clone())
                .or(Some(work_dir.join("out")));
        });
        self.log_event(&id, event, &detail);
        if !manifest.note.is_empty() {
            self.log_event(&id, RunEvent::OutputsTruncated, &manifest.note);
        }
        self.persist(&id);
        info!(lease = %id, %detail, "job ended");
        let _ = o.ended.try_send(terms.order_id);
        // A requester that stopped countersigning gets one try at the final
        // receipt; others get a few.
        let silent = matches!(stop_reason, Some(Stop::RequesterSilent { .. }));
        self.meter(id, true, if silent { 1 } else { FINAL_RECEIPT_TRIES })
            .await;
        self.settle(id).await;
    }

    fn on_run_event(
        &self,
        id: &LeaseId,
        event: runtime::RunEvent,
        bytes: &mut u64,
        dropped: &mut u64,
    ) {
        match event {
            runtime::RunEvent::Started => {
                let started = now();
                self.with(id, |l| {
                    l.record.phase = Phase::Running;
                    l.record.started_at = Some(started);
                    l.record.countersigned_at = Some(started);
                });
                let gpus = self
                    .with(id, |l| l.record.gpu_indices.clone())
                    .unwrap_or_default();
                self.log_event(id, RunEvent::Started, &format!("GPUs {gpus:?}"));
                self.persist(id);
            }
            runtime::RunEvent::Output { stream, data } => {
                let max = self.inner.options.settings.max_log_bytes;
                if *bytes + data.len() as u64 > max {
                    *dropped += data.len() as u64;
                    return;
                }
                *bytes += data.len() as u64;
                let kind = match stream {
                    Stream::Stdout => LogKind::Stdout,
                    Stream::Stderr => LogKind::Stderr,
                };
                self.append(id, kind, None, String::from_utf8_lossy(&data).into_owned());
            }
        }
    }

    /// Stops a run whose requester has not countersigned for an interval
    /// plus the grace.
    fn check_countersignatures(&self, id: &LeaseId, interval: Duration) {
        let grace = u64::from(self.inner.options.settings.countersign_grace_secs) * 1000;
        let limit = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX) + grace;
        let now = now();
        let stale = self.with(id, |l| {
            let since = l.record.countersigned_at.unwrap_or(now);
            if l.record.phase == Phase::Running
                && now.ms_since(since) > limit
                && !l.stop.is_cancelled()
            {
                l.stop_reason = Some(Stop::RequesterSilent { secs: limit / 1000 });
                l.stop.cancel();
                true
            } else {
                false
            }
        });
        if stale == Some(true) {
            warn!(lease = %id, "requester stopped countersigning; job stopped");
        }
    }

    /// Signs the next cumulative receipt and asks the requester to
    /// countersign it. The final receipt carries the exit status and the
    /// manifest's hash, and is offered a few times.
    async fn meter(&self, id: LeaseId, is_final: bool, tries: u32) {
        let o = &self.inner.options;
        let Some((lease, record)) = self.with(&id, |l| (l.lease.clone(), l.record.clone())) else {
            return;
        };
        let terms = lease.terms();
        let Some(started) = record.started_at else {
            return;
        };
        let end = if is_final {
            record.ended_at.unwrap_or_else(now)
        } else {
            now()
        };
        let elapsed_ms = end.ms_since(started);
        let secs = if is_final {
            elapsed_ms.div_ceil(1000)
        } else {
            elapsed_ms / 1000
        };
        let gpu_seconds = secs
            .saturating_mul(u64::from(terms.gpu_count))
            .min(terms.max_gpu_seconds());
        let previous = record.claim();
        let gpu_seconds = previous
            .as_ref()
            .map_or(gpu_seconds, |c| gpu_seconds.max(c.receipt().gpu_seconds));
        let Some(amount) = cost(terms.price_per_gpu_hour, gpu_seconds) else {
            return;
        };
        let sequence = record.receipt_seq + 1;
        let receipt = UsageReceipt {
            lease_id: id,
            sequence,
            gpu_seconds,
            cumulative_amount: amount,
            issued_at: now(),
            is_final,
            result_hash: if is_final {
                record
                    .manifest
                    .as_ref()
                    .and_then(|h| hex::decode(h).ok())
                    .map(|b| Manifest::hash(&b))
            } else {
                None
            },
            exit_status: if is_final { record.exit_code } else { None },
        };
        let signed = match ReceiptClaim::sign_as_provider(receipt, &o.key) {
            Ok(s) => s,
            Err(e) => {
                warn!(lease = %id, error = %e, "cannot sign a receipt");
                return;
            }
        };
        self.with(&id, |l| l.record.receipt_seq = sequence);
        self.persist(&id);
        let peer = terms.requester.peer_id();
        for attempt in 0..tries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1 << attempt.min(3))).await;
            }
            match o
                .network
                .request(peer, Request::Receipt(signed.clone()))
                .await
            {
                Ok(Response::Receipt(cosigned)) => {
                    match accept_countersigned(&cosigned, &signed, &lease) {
                        Ok(claim) => {
                            self.with(&id, |l| {
                                l.record.countersigned = Some(hex::encode(claim.encode()));
                                l.record.countersigned_at = Some(now());
                            });
                            self.persist(&id);
                            let _ = o.store.flush();
                            return;
                        }
                        Err(e) => {
                            warn!(lease = %id, error = %e, "bad countersignature");
                            return;
                        }
                    }
                }
                Ok(Response::Refused(reason)) => {
                    warn!(lease = %id, %reason, "receipt refused by the requester");
                    self.log_event(&id, RunEvent::ReceiptRefused, &reason);
                    return;
                }
                Ok(other) => warn!(lease = %id, ?other, "unexpected answer to a receipt"),
                Err(e) => info!(lease = %id, error = %e, "receipt not delivered"),
            }
        }
    }

    /// Settles the latest countersigned receipt once (retrying while the
    /// ledger is unreachable), then closes the lease: at once when the
    /// final receipt settled, else when the ledger allows it.
    async fn settle(&self, id: LeaseId) {
        let o = &self.inner.options;
        let mut backoff = Duration::from_millis(500);
        loop {
            let Some(record) = self.with(&id, |l| l.record.clone()) else {
                return;
            };
            if record.closed {
                return;
            }
            let claim = record.claim();
            let pending = claim
                .as_ref()
                .filter(|c| c.receipt().sequence > record.settled_seq);
            let result: Result<bool, LedgerError> = match pending {
                Some(claim) => match o.ledger.settle(claim.cosigned()).await {
                    Ok(s) => {
                        self.with(&id, |l| {
                            l.record.settled = s.settled;
                            l.record.settled_seq = s.last_sequence.max(claim.receipt().sequence);
                        });
                        self.persist(&id);
                        let _ = o.store.flush();
                        self.log_event(
                            &id,
                            RunEvent::Settled,
                            &format!(
                                "{} paid, {} in all (receipt #{})",
                                s.paid, s.settled, s.last_sequence
                            ),
                        );
                        info!(lease = %id, paid = %s.paid, settled = %s.settled, "settled");
                        Ok(false)
                    }
                    Err(e) => Err(e),
                },
                None => {
                    // Our own final receipt settled: closable without a read.
                    let final_settled = claim.as_ref().is_some_and(|c| c.receipt().is_final);
                    let closable = final_settled
                        || match (o.ledger.escrow(&id).await, o.ledger.now().await) {
                            // Closed already (close answers LeaseClosed), or
                            // the one closability rule.
                            (Ok(Some(state)), Ok(chain_now)) => {
                                state.closed() || state.closable(chain_now)
                            }
                            (Ok(None), _) => {
                                // Never locked: nothing to settle or close.
                                self.with(&id, |l| l.record.closed = true);
                                self.persist(&id);
                                return;
                            }
                            _ => false,
                        };
                    if closable {
                        match o.ledger.close(&id).await {
                            Ok(c) => {
                                self.with(&id, |l| l.record.closed = true);
                                self.persist(&id);
                                self.log_event(
                                    &id,
                                    RunEvent::Closed,
                                    &format!(
                                        "lease closed: {} settled, {} refunded",
                                        c.settled, c.refunded
                                    ),
                                );
                                return;
                            }
                            Err(LedgerError::LeaseClosed(_)) => {
                                self.with(&id, |l| l.record.closed = true);
                                self.persist(&id);
                                return;
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        backoff = Duration::from_secs(2);
                        Ok(true)
                    }
                }
            };
            match result {
                Ok(false) => backoff = Duration::from_millis(500),
                Ok(true) => {}
                Err(e) if e.is_transient() => {
                    info!(lease = %id, error = %e, "ledger unavailable; settlement will retry");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(LedgerError::LeaseClosed(_)) => {
                    self.with(&id, |l| l.record.closed = true);
                    self.persist(&id);
                    self.log_event(
                        &id,
                        RunEvent::Closed,
                        "the lease was closed by the requester",
                    );
                    return;
                }
                Err(e) => {
                    warn!(lease = %id, error = %e, "settlement refused");
                    self.log_event(&id, RunEvent::SettlementFailed, &e.to_string());
                    return;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = o.cancel.cancelled() => return,
            }
        }
    }

    /// Forwards the run's log to the requester's node until it has every
    /// entry and the manifest, resending from what it acknowledged.
    async fn push_log(&self, id: LeaseId) {
        let o = &self.inner.options;
        let Some((wake, peer, ends)) = self.with(&id, |l| {
            (
                l.wake.clone(),
                l.lease.terms().requester.peer_id(),
                l.lease.terms().ends_at(),
            )
        }) else {
            return;
        };
        let mut backoff = Duration::from_millis(250);
        loop {
            let notified = wake.notified();
            let Some(record) = self.with(&id, |l| l.record.clone()) else {
                return;
            };
            let all_sent = record.acked > record.log_seq;
            let ended = record.phase == Phase::Ended;
            if all_sent && ended && record.manifest_delivered && record.closed {
                return;
            }
            // A requester gone for good: stop trying an hour after the lease.
            if now().0 > ends.0 + 3_600_000 {
                return;
            }
            let entries = if all_sent {
                Vec::new()
            } else {
                o.store
                    .log_after(&id.0, record.acked - 1, UPDATE_ENTRIES, UPDATE_BYTES)
                    .unwrap_or_default()
            };
            let send_manifest = ended && !record.manifest_delivered;
            if entries.is_empty() && !send_manifest {
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    () = o.cancel.cancelled() => return,
                }
                continue;
            }
            let last = entries.last().map(|e| e.seq);
            let update = JobUpdate {
                lease_id: id,
                entries: entries
                    .into_iter()
                    .map(|e| LogEntry {
                        seq: e.seq,
                        at: e.at,
                        kind: e.kind,
                        event: e.run,
                        data: e.text.into_bytes(),
                    })
                    .collect(),
                manifest: if send_manifest {
                    record.manifest.as_ref().and_then(|h| hex::decode(h).ok())
                } else {
                    None
                },
            };
            match o.network.request(peer, Request::Update(update)).await {
                Ok(Response::UpdateAck(next)) => {
                    let next = next.clamp(1, record.log_seq + 1);
                    self.with(&id, |l| {
                        l.record.acked = next;
                        if send_manifest && last.is_none_or(|s| next > s) {
                            l.record.manifest_delivered = true;
                        }
                    });
                    self.persist(&id);
                    backoff = Duration::from_millis(250);
                    continue;
                }
                Ok(Response::Refused(reason)) => {
                    warn!(lease = %id, %reason, "the requester refused the run's log");
                    return;
                }
                Ok(_) | Err(_) => {
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = o.cancel.cancelled() => return,
            }
        }
    }
}

/// Checks that a countersigned receipt is exactly what we signed, signed
/// by the lease's requester.
fn accept_countersigned(
    cosigned: &CoSigned,
    signed: &Signed<UsageReceipt>,
    lease: &Lease,
) -> Result<ReceiptClaim, String> {
    let claim = ReceiptClaim::from_cosigned(cosigned.clone()).map_err(|e| e.to_string())?;
    if claim.cosigned().body() != signed.envelope().body() {
        return Err("the countersigned receipt differs from the one sent".into());
    }
    claim.verify(lease.terms()).map_err(|e| e.to_string())?;
    Ok(claim)
}

/// Why the provider itself stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The requester's cancel.
    Cancelled,
    /// The requester countersigned nothing for `secs` (interval plus grace).
    RequesterSilent { secs: u64 },
}

/// The typed event and the reason (for a person) for how a job ended.
fn describe_exit(exit: &Exit, stop: Option<Stop>) -> (RunEvent, Option<String>) {
    let failed = |failure| RunEvent::Failed { failure };
    match exit {
        Exit::Code(0) => (RunEvent::Exited { code: 0 }, None),
        Exit::Code(code) => (
            RunEvent::Exited { code: *code },
            Some(format!("exited with status {code}")),
        ),
        Exit::Signal(sig) => (
            failed(RunFailure::Signal { signal: *sig }),
            Some(format!("killed by signal {sig}")),
        ),
        Exit::TimeLimit => (
            failed(RunFailure::TimeLimit),
            Some("ran out of leased time and was stopped".into()),
        ),
        Exit::Cancelled => match stop {
            Some(Stop::RequesterSilent { secs }) => (
                failed(RunFailure::RequesterSilent),
                Some(format!(
                    "the requester countersigned no receipt for {secs} s (interval plus grace); stopped"
                )),
            ),
            Some(Stop::Cancelled) => (
                RunEvent::Cancelled,
                Some("cancelled by the requester".into()),
            ),
            None => (RunEvent::Cancelled, Some("cancelled".into())),
        },
    }
}

/// The exit's description followed by the runtime's own reason (Ray's
/// message), when it gave one.
fn with_runtime_reason(reason: Option<String>, runtime: Option<&str>) -> Option<String> {
    match (reason, runtime) {
        (Some(r), Some(extra)) => Some(format!("{r}; {extra}")),
        (None, Some(extra)) => Some(extra.to_owned()),
        (reason, None) => reason,
    }
}

async fn read_piece(path: &std::path::Path, offset: u64, max_len: u32) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::with_capacity(max_len as usize);
    file.take(u64::from(max_len)).read_to_end(&mut buf).await?;
    Ok(buf)
}
