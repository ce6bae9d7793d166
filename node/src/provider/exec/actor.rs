//! The executor's actor: the one owner of every run's record. The handle
//! ([`super::Executor`]) and the per-run tasks (run loop, meter, log
//! pusher, settlement) ask it over one bounded channel, with `oneshot`
//! replies where they wait for an answer; it writes the store (never
//! flushing: the tasks that guard an obligation flush once it answered)
//! and publishes the API's view of the runs through a `watch`.
//!
//! It never awaits anything but its next command, so no task can block
//! it and it cannot block a task beyond the channel's bound.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_client::api::{LogKind, RunView};
use agora_protocol::{
    Amount, JobAction, JobControl, Lease, LeaseId, ManifestFile, ReceiptClaim, RunEvent, Signed,
    Timestamp,
};
use libp2p::PeerId;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::meter::silent;
use super::record::{Outputs, Phase, RunRecord};
use super::run::Stop;
use crate::clock::now;
use crate::network::Response;
use crate::network::wire::Fetch;
use crate::store::{LogRecord, MoneyEntry, Side, Store};

/// Commands waiting for the actor at most.
pub(super) const COMMANDS: usize = 256;

/// A GPU of an offer slot: (index, UUID, simulated).
pub(super) type Gpu = (u32, String, bool);

/// What the API shows of the runs: newest first, and the total settled.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) views: Vec<RunView>,
    pub(super) earned: Amount,
    /// The leases the executor holds a run for.
    pub(super) leases: Vec<LeaseId>,
    /// The GPUs (indices) that runs hold now.
    pub(super) busy_gpus: Vec<u32>,
}

/// What the retention sweep may remove and must keep.
#[derive(Debug, Default)]
pub(super) struct Retained {
    /// Work dirs of runs that ended before the cut: removed now.
    pub(super) expired: Vec<PathBuf>,
    /// Names (lease ids) of the work dirs runs still use.
    pub(super) in_use: std::collections::HashSet<String>,
}

/// What the actor is asked.
pub(super) enum Command {
    /// A payload passed its checks: start a run unless there is one.
    Admit {
        lease: Box<Lease>,
        inputs: usize,
        reply: oneshot::Sender<Admission>,
    },
    /// The admitted run could not be made durable: forget it.
    Forget { id: LeaseId },
    /// The retention sweep: work dirs of runs that ended before `before`
    /// (their outputs are marked gone), and which dirs runs still use.
    Retention {
        before: Timestamp,
        reply: oneshot::Sender<Retained>,
    },
    /// A peer's control message.
    Control {
        peer: PeerId,
        control: Box<Signed<JobControl>>,
        reply: oneshot::Sender<Response>,
    },
    /// Where a peer's fetch reads from, or the answer refusing it.
    Fetch {
        peer: PeerId,
        fetch: Fetch,
        reply: oneshot::Sender<Source>,
    },
    /// A copy of the run's record (the manifest is shared, not copied).
    Record {
        id: LeaseId,
        reply: oneshot::Sender<Option<RunRecord>>,
    },
    /// What wakes the run's log pusher.
    Wake {
        id: LeaseId,
        reply: oneshot::Sender<Option<Arc<Notify>>>,
    },
    /// Why the provider stopped the run, if it did.
    StopReason {
        id: LeaseId,
        reply: oneshot::Sender<Option<Stop>>,
    },
    /// Stop the run if its requester has been silent too long.
    Watchdog {
        id: LeaseId,
        interval: Duration,
        now: Timestamp,
    },
    /// Change the record and store it; the reply says whether the run
    /// was there.
    Update {
        id: LeaseId,
        update: Update,
        reply: oneshot::Sender<bool>,
    },
    /// Append an entry to the run's log and wake its pusher.
    Append {
        id: LeaseId,
        kind: LogKind,
        event: Option<RunEvent>,
        text: String,
    },
}

/// The answer to [`Command::Admit`].
#[derive(Debug)]
pub(super) enum Admission {
    /// A new run, pinned to these GPUs, stopped by this token.
    Admitted {
        gpus: Vec<Gpu>,
        stop: CancellationToken,
    },
    /// The lease has a run already.
    Duplicate,
    /// The leased GPUs are not all free.
    NoGpus,
}

/// Where a fetch reads from, or why it is refused.
#[derive(Debug)]
pub(super) enum Source {
    /// This output file, in this directory.
    File { dir: PathBuf, file: ManifestFile },
    /// The job has not ended yet: ask again.
    NotEnded,
    /// Refused, with the reason.
    Refused(String),
}

/// A change to a run's record; every one is stored (not flushed).
#[derive(Debug)]
pub(super) enum Update {
    /// The runtime started the job.
    Started { at: Timestamp },
    /// The job ended.
    Ended(Box<Ending>),
    /// A receipt with this sequence was signed.
    ReceiptSigned { sequence: u64 },
    /// The requester countersigned a receipt.
    Countersigned {
        claim: Box<ReceiptClaim>,
        at: Timestamp,
    },
    /// The ledger settled this much, up to this receipt.
    Settled { settled: Amount, sequence: u64 },
    /// The requester expects log entry `next`; `manifest` when it now has
    /// the manifest too.
    Acked { next: u64, manifest: bool },
    /// The lease is closed on the ledger.
    Closed,
}

/// How a job ended, and the log entries that say so.
#[derive(Debug)]
pub(super) struct Ending {
    pub(super) at: Timestamp,
    pub(super) exit_code: Option<i32>,
    pub(super) reason: Option<String>,
    pub(super) outputs: Outputs,
    pub(super) output_dir: PathBuf,
    pub(super) event: RunEvent,
    pub(super) detail: String,
}

/// A run with what its tasks are told through.
struct Run {
    record: RunRecord,
    /// Stops the job; the reason is in `stop_reason`.
    stop: CancellationToken,
    stop_reason: Option<Stop>,
    /// Wakes the log pusher.
    wake: Arc<Notify>,
}

impl Run {
    fn new(record: RunRecord) -> Self {
        Self {
            record,
            stop: CancellationToken::new(),
            stop_reason: None,
            wake: Arc::new(Notify::new()),
        }
    }
}

/// The owner of the runs.
pub(super) struct Actor {
    runs: HashMap<LeaseId, Run>,
    store: Store,
    slots: HashMap<u32, Vec<Gpu>>,
    grace_secs: u32,
    views: watch::Sender<Arc<Snapshot>>,
    /// Settled by runs that were finished before the node started (they
    /// are not loaded): part of `earned`.
    earned_before: Amount,
}

impl Actor {
    /// An actor holding no runs, and the receiver of its published views.
    pub(super) fn new(
        store: Store,
        slots: HashMap<u32, Vec<Gpu>>,
        grace_secs: u32,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let (views, rx) = watch::channel(Arc::new(Snapshot::default()));
        let actor = Self {
            runs: HashMap::new(),
            store,
            slots,
            grace_secs,
            views,
            earned_before: Amount::ZERO,
        };
        (actor, rx)
    }

    /// Counts what a run finished before this start settled (before the
    /// loop starts), so `earned` survives restarts.
    pub(super) fn count_finished(&mut self, settled: Amount) {
        self.earned_before = self
            .earned_before
            .checked_add(settled)
            .unwrap_or(self.earned_before);
    }

    /// Takes over a run restored from the store (before the loop starts).
    /// One the restart interrupted is reported failed and stored.
    pub(super) fn restore(&mut self, record: RunRecord, interrupted: bool) {
        let id = record.lease.id();
        self.runs.insert(id, Run::new(record));
        if interrupted {
            self.append(
                &id,
                LogKind::Event,
                Some(RunEvent::Failed {
                    failure: agora_protocol::RunFailure::Restarted,
                }),
                RunRecord::interrupted_reason().to_owned(),
            );
            self.persist(&id);
        }
        self.publish();
    }

    /// Answers commands until the node stops; then handles those already
    /// queued (their senders asked before the stop) and ends.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) {
        // What start-up restored and counted, in one snapshot.
        self.publish();
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
            }
        }
        commands.close();
        while let Ok(command) = commands.try_recv() {
            self.handle(command);
        }
    }

    pub(super) fn handle(&mut self, command: Command) {
        match command {
            Command::Admit {
                lease,
                inputs,
                reply,
            } => {
                let _ = reply.send(self.handle_admit(*lease, inputs));
            }
            Command::Forget { id } => {
                self.runs.remove(&id);
                self.publish();
            }
            Command::Retention { before, reply } => {
                let _ = reply.send(self.handle_retention(before));
            }
            Command::Control {
                peer,
                control,
                reply,
            } => {
                let _ = reply.send(self.handle_control(peer, &control));
            }
            Command::Fetch { peer, fetch, reply } => {
                let _ = reply.send(self.handle_fetch(peer, &fetch));
            }
            Command::Record { id, reply } => {
                let _ = reply.send(self.runs.get(&id).map(|r| r.record.clone()));
            }
            Command::Wake { id, reply } => {
                let _ = reply.send(self.runs.get(&id).map(|r| r.wake.clone()));
            }
            Command::StopReason { id, reply } => {
                let _ = reply.send(self.runs.get(&id).and_then(|r| r.stop_reason));
            }
            Command::Watchdog { id, interval, now } => self.handle_watchdog(&id, interval, now),
            Command::Update { id, update, reply } => {
                let _ = reply.send(self.handle_update(&id, update));
            }
            Command::Append {
                id,
                kind,
                event,
                text,
            } => self.append(&id, kind, event, text),
        }
    }

    fn handle_admit(&mut self, lease: Lease, inputs: usize) -> Admission {
        let id = lease.id();
        if self.runs.contains_key(&id) {
            return Admission::Duplicate;
        }
        let terms = lease.terms();
        let Some(gpus) = self.pick_gpus(terms.slot, terms.gpu_count) else {
            return Admission::NoGpus;
        };
        let run = Run::new(RunRecord::new(lease, gpus.iter().map(|g| g.0).collect()));
        let stop = run.stop.clone();
        self.runs.insert(id, run);
        self.append(
            &id,
            LogKind::Event,
            Some(RunEvent::Accepted),
            format!("{inputs} input file(s)"),
        );
        self.persist(&id);
        self.publish();
        Admission::Admitted { gpus, stop }
    }

    fn handle_control(&mut self, peer: PeerId, control: &Signed<JobControl>) -> Response {
        let c = control.message();
        let Some(run) = self.runs.get_mut(&c.lease_id) else {
            return Response::Refused(format!("no run for lease {}", c.lease_id));
        };
        let requester = run.record.lease.terms().requester;
        if control.signer() != &requester || requester.peer_id() != peer {
            return Response::Refused("only the lease's requester controls its job".into());
        }
        match c.action {
            JobAction::Cancel => {
                if run.stop_reason.is_none() {
                    run.stop_reason = Some(Stop::Cancelled);
                }
                run.stop.cancel();
            }
        }
        Response::Ack
    }

    fn handle_fetch(&self, peer: PeerId, fetch: &Fetch) -> Source {
        let Some(run) = self.runs.get(&fetch.lease_id) else {
            return Source::Refused(format!("no run for lease {}", fetch.lease_id));
        };
        let record = &run.record;
        if record.lease.terms().requester.peer_id() != peer {
            return Source::Refused("only the lease's requester fetches its outputs".into());
        }
        let Some(outputs) = &record.manifest else {
            return Source::NotEnded;
        };
        let Some(file) = outputs.manifest.files.iter().find(|f| f.path == fetch.path) else {
            return Source::Refused(format!("{:?} is not an output of this job", fetch.path));
        };
        let Some(dir) = record.output_dir.clone() else {
            return Source::Refused(
                "the job's outputs were removed: this provider keeps them \
                 runtime.work_retention_secs after the run ends"
                    .into(),
            );
        };
        Source::File {
            dir,
            file: file.clone(),
        }
    }

    fn handle_retention(&mut self, before: Timestamp) -> Retained {
        let mut retained = Retained::default();
        let mut changed = Vec::new();
        for (id, run) in &mut self.runs {
            let record = &mut run.record;
            let expired = record.ended_at.is_some_and(|at| at < before);
            match record.output_dir.take() {
                Some(dir) if expired => {
                    retained
                        .expired
                        .push(dir.parent().map_or(dir.clone(), Path::to_path_buf));
                    changed.push(*id);
                }
                Some(dir) => {
                    record.output_dir = Some(dir);
                    retained.in_use.insert(id.to_string());
                }
                None if record.ended_at.is_none() => {
                    retained.in_use.insert(id.to_string());
                }
                None => {}
            }
        }
        for id in changed {
            self.persist(&id);
        }
        retained
    }

    fn handle_watchdog(&mut self, id: &LeaseId, interval: Duration, now: Timestamp) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        let verdict = silent(now, run.record.countersigned_at, interval, self.grace_secs);
        if let Some(stop) = verdict
            && run.record.phase == Phase::Running
            && !run.stop.is_cancelled()
        {
            run.stop_reason = Some(stop);
            run.stop.cancel();
            warn!(lease = %id, "requester stopped countersigning; job stopped");
        }
    }

    fn handle_update(&mut self, id: &LeaseId, update: Update) -> bool {
        let Some(run) = self.runs.get_mut(id) else {
            return false;
        };
        let r = &mut run.record;
        let mut log = Vec::new();
        match update {
            Update::Started { at } => {
                r.phase = Phase::Running;
                r.started_at = Some(at);
                r.countersigned_at = Some(at);
                log.push((RunEvent::Started, format!("GPUs {:?}", r.gpu_indices)));
            }
            Update::Ended(ending) => {
                let Ending {
                    at,
                    exit_code,
                    reason,
                    outputs,
                    output_dir,
                    event,
                    detail,
                } = *ending;
                let note = outputs.manifest.note.clone();
                r.phase = Phase::Ended;
                r.ended_at = Some(at);
                r.exit_code = exit_code;
                r.reason = reason;
                r.manifest = Some(outputs.into());
                r.output_dir = Some(output_dir);
                log.push((event, detail));
                if !note.is_empty() {
                    log.push((RunEvent::OutputsTruncated, note));
                }
            }
            Update::ReceiptSigned { sequence } => r.receipt_seq = sequence,
            Update::Countersigned { claim, at } => {
                let receipt = claim.receipt();
                let previous = r
                    .countersigned
                    .as_ref()
                    .map(|c| (c.receipt().sequence, c.receipt().cumulative_amount));
                if let Some(entry) = MoneyEntry::increase(
                    *id,
                    receipt.sequence,
                    receipt.cumulative_amount,
                    previous,
                    at,
                ) && let Err(e) = self.store.put_money(Side::Earned, &entry)
                {
                    warn!(lease = %id, error = %e, "cannot store the earnings entry");
                }
                r.countersigned = Some(*claim);
                r.countersigned_at = Some(at);
            }
            Update::Settled { settled, sequence } => {
                r.settled = settled;
                r.settled_seq = sequence;
            }
            Update::Acked { next, manifest } => {
                r.acked = next;
                if manifest {
                    r.manifest_delivered = true;
                }
            }
            // Settlement runs only once the job ended, so this is the
            // phase after `Ended`.
            Update::Closed => r.phase = Phase::Closed,
        }
        for (event, detail) in log {
            self.append(id, LogKind::Event, Some(event), detail);
        }
        self.persist(id);
        self.publish();
        true
    }

    fn pick_gpus(&self, slot: u32, count: u32) -> Option<Vec<Gpu>> {
        let all = self.slots.get(&slot)?;
        let busy: Vec<u32> = self
            .runs
            .values()
            .filter(|r| r.record.phase.holds_gpus())
            .flat_map(|r| r.record.gpu_indices.iter().copied())
            .collect();
        let free: Vec<_> = all
            .iter()
            .filter(|g| !busy.contains(&g.0))
            .take(count as usize)
            .cloned()
            .collect();
        (free.len() == count as usize).then_some(free)
    }

    /// Stores the run (not flushed: the tasks that guard an obligation
    /// flush themselves once answered).
    fn persist(&self, id: &LeaseId) {
        if let Some(run) = self.runs.get(id)
            && let Err(e) = self.store.put_run(id, &run.record.stored())
        {
            warn!(lease = %id, error = %e, "cannot store the run");
        }
    }

    /// Appends an entry to the run's log and wakes its pusher.
    fn append(&mut self, id: &LeaseId, kind: LogKind, event: Option<RunEvent>, text: String) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        run.record.log_seq += 1;
        let entry = LogRecord {
            seq: run.record.log_seq,
            at: now(),
            kind,
            event: event.map(|r| r.name().to_owned()),
            run: event,
            text,
        };
        if let Err(e) = self.store.append_log(&id.0, &[entry]) {
            warn!(lease = %id, error = %e, "cannot store a log entry");
        }
        run.wake.notify_one();
    }

    /// Publishes the runs as the API shows them.
    fn publish(&self) {
        let mut views: Vec<_> = self.runs.values().map(|r| r.record.view()).collect();
        views.sort_by_key(|v| std::cmp::Reverse(v.started_at));
        let earned = self.runs.values().fold(self.earned_before, |acc, r| {
            acc.checked_add(r.record.settled).unwrap_or(acc)
        });
        let leases = self.runs.keys().copied().collect();
        let mut busy_gpus: Vec<u32> = self
            .runs
            .values()
            .filter(|r| r.record.phase.holds_gpus())
            .flat_map(|r| r.record.gpu_indices.iter().copied())
            .collect();
        busy_gpus.sort_unstable();
        self.views.send_replace(Arc::new(Snapshot {
            views,
            earned,
            leases,
            busy_gpus,
        }));
    }
}

#[cfg(test)]
mod tests {
    use agora_protocol::{Keypair, OrderId};

    use super::*;
    use crate::provider::exec::record::StoredRun;
    use crate::provider::exec::testing::{lease, lease_for};
    use crate::provider::exec::try_ask;

    /// `lease`'s run exited 0 at 9 s, with no outputs, in `/jobs/x`.
    fn exited_at_9s(lease: &Lease) -> Ending {
        Ending {
            at: Timestamp(9_000),
            exit_code: Some(0),
            reason: None,
            outputs: Outputs::new(agora_protocol::Manifest {
                lease_id: lease.id(),
                files: Vec::new(),
                note: String::new(),
            }),
            output_dir: PathBuf::from("/jobs/x/out"),
            event: RunEvent::Exited { code: 0 },
            detail: "exit status 0".into(),
        }
    }

    /// An actor over a fresh store with one slot of two GPUs, running.
    fn spawn(
        cancel: &CancellationToken,
    ) -> (
        tempfile::TempDir,
        Store,
        mpsc::Sender<Command>,
        watch::Receiver<Arc<Snapshot>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let slots = HashMap::from([(
            0,
            vec![(0, "GPU-0".into(), true), (1, "GPU-1".into(), true)],
        )]);
        let (actor, views) = Actor::new(store.clone(), slots, 10);
        let (tx, rx) = mpsc::channel(COMMANDS);
        tokio::spawn(actor.run(rx, cancel.clone()));
        (dir, store, tx, views)
    }

    async fn admit(commands: &mpsc::Sender<Command>, lease: Lease) -> Admission {
        try_ask(commands, |reply| Command::Admit {
            lease: Box::new(lease),
            inputs: 1,
            reply,
        })
        .await
        .unwrap()
    }

    fn cancel_of(requester: &Keypair, lease: &Lease) -> Box<Signed<JobControl>> {
        let control = JobControl {
            lease_id: lease.id(),
            action: JobAction::Cancel,
            issued_at: Timestamp(5_000),
        };
        Box::new(Signed::sign(control, requester).unwrap())
    }

    #[tokio::test]
    async fn two_payloads_for_one_lease_at_once_make_one_run() {
        let cancel = CancellationToken::new();
        let (_dir, store, commands, views) = spawn(&cancel);
        let (_, _, lease) = lease();
        let (a, b) = tokio::join!(
            admit(&commands, lease.clone()),
            admit(&commands, lease.clone())
        );
        // `on_payload` answers both `Ack`: the one admitted once its run is
        // flushed, the duplicate at once.
        let admitted = [&a, &b]
            .iter()
            .filter(|x| matches!(x, Admission::Admitted { .. }))
            .count();
        let duplicate = [&a, &b]
            .iter()
            .filter(|x| matches!(x, Admission::Duplicate))
            .count();
        assert_eq!((admitted, duplicate), (1, 1), "{a:?} {b:?}");
        let snapshot = views.borrow().clone();
        assert_eq!(snapshot.leases, vec![lease.id()]);
        assert_eq!(snapshot.busy_gpus.len(), 2, "the lease's two GPUs are held");
        assert_eq!(snapshot.views.len(), 1);
        assert_eq!(snapshot.views[0].state, "starting");
        let stored: Vec<StoredRun> = store.runs().unwrap();
        assert_eq!(stored.len(), 1);
        let log = store.log_after(&lease.id().0, 0, 10, 1 << 20).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].run, Some(RunEvent::Accepted));
        cancel.cancel();
    }

    #[tokio::test]
    async fn retention_lets_go_of_ended_runs_dirs_and_keeps_the_rest() {
        let cancel = CancellationToken::new();
        let (_dir, _store, commands, _views) = spawn(&cancel);
        let (_, _, ended) = lease_for(OrderId([4; 32]));
        let (_, _, running) = lease_for(OrderId([6; 32]));
        assert!(matches!(
            admit(&commands, ended.clone()).await,
            Admission::Admitted { .. }
        ));
        let ending = exited_at_9s(&ended);
        let update = Update::Ended(Box::new(ending));
        let id = ended.id();
        assert!(
            try_ask(&commands, |reply| Command::Update { id, update, reply })
                .await
                .unwrap()
        );
        // Its GPUs are free again: another run starts.
        assert!(matches!(
            admit(&commands, running.clone()).await,
            Admission::Admitted { .. }
        ));
        let retention =
            |before| try_ask(&commands, move |reply| Command::Retention { before, reply });
        // Ended at 9 s: kept until the cut passes it.
        let kept = retention(Timestamp(9_000)).await.unwrap();
        assert!(kept.expired.is_empty());
        assert!(kept.in_use.contains(&ended.id().to_string()));
        assert!(kept.in_use.contains(&running.id().to_string()));
        let cut = retention(Timestamp(9_001)).await.unwrap();
        assert_eq!(cut.expired, vec![PathBuf::from("/jobs/x")]);
        assert!(!cut.in_use.contains(&ended.id().to_string()));
        assert!(cut.in_use.contains(&running.id().to_string()));
        // Once: the outputs are gone for fetches, and not handed out again.
        let again = retention(Timestamp(99_000)).await.unwrap();
        assert!(again.expired.is_empty());
        let record = try_ask(&commands, |reply| Command::Record { id, reply })
            .await
            .unwrap();
        assert_eq!(record.unwrap().output_dir, None);
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_run_holds_its_gpus_until_it_ends() {
        let cancel = CancellationToken::new();
        let (_dir, _store, commands, _views) = spawn(&cancel);
        let (_, _, first) = lease_for(OrderId([4; 32]));
        let (_, _, second) = lease_for(OrderId([5; 32]));
        assert!(matches!(
            admit(&commands, first.clone()).await,
            Admission::Admitted { ref gpus, .. } if gpus.len() == 2
        ));
        assert!(matches!(
            admit(&commands, second.clone()).await,
            Admission::NoGpus
        ));
        let ending = exited_at_9s(&first);
        let ended = try_ask(&commands, |reply| Command::Update {
            id: first.id(),
            update: Update::Ended(Box::new(ending)),
            reply,
        })
        .await
        .unwrap();
        assert!(ended);
        assert!(matches!(
            admit(&commands, second).await,
            Admission::Admitted { .. }
        ));
        cancel.cancel();
    }

    #[tokio::test]
    async fn only_the_requester_cancels_and_the_run_learns_why() {
        let cancel = CancellationToken::new();
        let (_dir, _store, commands, _views) = spawn(&cancel);
        let (requester, provider, lease) = lease();
        let Admission::Admitted { stop, .. } = admit(&commands, lease.clone()).await else {
            panic!("not admitted");
        };
        let control = |signer: &Keypair, peer: PeerId| {
            let control = cancel_of(signer, &lease);
            try_ask(&commands, move |reply| Command::Control {
                peer,
                control,
                reply,
            })
        };
        let stranger = control(&provider, provider.public().peer_id())
            .await
            .unwrap();
        assert!(matches!(stranger, Response::Refused(_)));
        assert!(!stop.is_cancelled());
        let ok = control(&requester, requester.public().peer_id())
            .await
            .unwrap();
        assert!(matches!(ok, Response::Ack));
        assert!(stop.is_cancelled());
        let id = lease.id();
        let why = try_ask(&commands, |reply| Command::StopReason { id, reply }).await;
        assert_eq!(why.unwrap(), Some(Stop::Cancelled));
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_full_channel_answers_a_peer_retry() {
        let (commands, _rx) = mpsc::channel(1);
        let (requester, _, lease) = lease();
        let filler = Command::Forget { id: lease.id() };
        commands.try_send(filler).unwrap();
        let answer = try_ask(&commands, |reply| Command::Control {
            peer: requester.public().peer_id(),
            control: cancel_of(&requester, &lease),
            reply,
        })
        .await;
        assert!(matches!(answer, Err(Response::Retry(ref r)) if r.starts_with("busy")));
    }

    #[tokio::test]
    async fn a_stopped_actor_handles_what_was_queued_then_answers_retry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let slots = HashMap::from([(
            0,
            vec![(0, "GPU-0".into(), true), (1, "GPU-1".into(), true)],
        )]);
        let (actor, _views) = Actor::new(store.clone(), slots, 10);
        let (commands, rx) = mpsc::channel(COMMANDS);
        let (_, _, lease) = lease();
        let (tx, queued) = oneshot::channel();
        commands
            .try_send(Command::Admit {
                lease: Box::new(lease.clone()),
                inputs: 0,
                reply: tx,
            })
            .unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        actor.run(rx, cancel).await;
        assert!(matches!(queued.await.unwrap(), Admission::Admitted { .. }));
        assert_eq!(store.runs::<StoredRun>().unwrap().len(), 1);
        let id = lease.id();
        let after = try_ask(&commands, |reply| Command::Record { id, reply }).await;
        assert!(matches!(after, Err(Response::Retry(_))));
    }
}
