//! The requester's side of a leased job: deliver the payload, take in the
//! provider's log, countersign receipts that the lease and the clock allow,
//! fetch and check the outputs, and see the lease settled and closed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_client::api::{JobState, JobView, LogKind, OutputView, SettlementView};
use agora_protocol::ledger::{EscrowState, Ledger};
use agora_protocol::receipt::check_next;
use agora_protocol::{
    InputFile, JobAction, JobControl, JobPayload, Lease, LeaseId, LedgerError, OrderId,
    ReceiptClaim, RunEvent, Signed, Timestamp, UsageReceipt,
};
use base64::Engine as _;
use libp2p::PeerId;
use tracing::{info, warn};

use super::Actor;
use crate::market::handle::{Command, MarketError};
use crate::network::wire::{Fetch, JobUpdate, MAX_FETCH_CHUNK, Manifest};
use crate::network::{NetworkHandle, Request, Response};
use crate::provider::exec::receipt_view;
use crate::store::LogRecord;

/// Clock skew allowed when checking a receipt's GPU-seconds.
const RECEIPT_TOLERANCE_SECS: u64 = 3;
/// Silence from the provider after which a run is given up, beyond two
/// receipt intervals.
const SILENCE_GRACE_MS: u64 = 10_000;
/// How often a settling job's escrow is read.
const SETTLE_POLL_MS: u64 = 1_000;
/// After the final receipt is countersigned the provider settles and
/// closes within milliseconds, so the escrow is re-read sooner than
/// [`SETTLE_POLL_MS`]: after 25 ms, then doubling, this many times.
const QUICK_ESCROW_READS: u32 = 6;
const QUICK_ESCROW_FIRST_MS: u64 = 25;

/// Internal results of a run's background work.
#[derive(Debug)]
pub(crate) enum RunNote {
    /// The payload was delivered, or refused for good (with the reason).
    Payload(Result<(), String>),
    /// The cancel reached the provider.
    CancelDelivered,
    /// The escrow as read (and closed, when it was closable).
    Escrow(Result<Option<Box<EscrowState>>, String>),
    /// Outputs fetched and checked, or why not.
    Fetched(Result<usize, String>),
    /// Read the escrow now (a quick re-read after the final receipt).
    CheckEscrow,
}

impl Actor {
    pub(super) fn lease_of(&self, job: &OrderId) -> Option<Lease> {
        let id: LeaseId = self.jobs.get(job)?.view.lease.as_ref()?.id.parse().ok()?;
        self.store.lease(&id).ok().flatten()
    }

    fn log_entries(
        &mut self,
        id: &OrderId,
        entries: Vec<(Timestamp, LogKind, Option<String>, Option<RunEvent>, String)>,
    ) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let mut out = Vec::with_capacity(entries.len());
        for (at, kind, event, run, text) in entries {
            job.view.log_seq += 1;
            out.push(LogRecord {
                seq: job.view.log_seq,
                at,
                kind,
                event,
                run,
                text,
            });
        }
        if let Err(e) = self.store.append_log(&id.0, &out) {
            warn!(job = %id, error = %e, "cannot store log entries");
        }
    }

    /// Copies lifecycle events not yet in the job's log into it.
    pub(super) fn sync_events(&mut self, id: &OrderId) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        let fresh: Vec<_> = job.view.events[job.run.events_logged.min(job.view.events.len())..]
            .iter()
            .map(|e| {
                let text = e.detail.clone();
                (e.at, LogKind::Event, Some(e.event.clone()), None, text)
            })
            .collect();
        if fresh.is_empty() {
            return;
        }
        let n = job.view.events.len();
        self.log_entries(id, fresh);
        if let Some(job) = self.jobs.get_mut(id) {
            job.run.events_logged = n;
        }
    }

    /// A lease is funded: send the job.
    pub(super) fn start_run(&mut self, id: OrderId, now: Timestamp) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.run.last_heard = Some(now);
        if job.run.cancel_requested {
            self.send_cancel(id);
        }
        self.deliver_payload(id);
    }

    fn deliver_payload(&mut self, id: OrderId) {
        let Some(lease) = self.lease_of(&id) else {
            return;
        };
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.run.payload_delivered {
            return;
        }
        let spec = &job.view.spec;
        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for input in &spec.inputs {
            let content = input
                .data_b64
                .as_deref()
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .unwrap_or_default();
            inputs.push(InputFile {
                path: input.path.clone(),
                blake3: *blake3::hash(&content).as_bytes(),
                content,
            });
        }
        let payload = JobPayload {
            lease_id: lease.id(),
            runtime: spec.runtime.clone(),
            command: spec.command.clone(),
            env: spec.env.clone().into_iter().collect(),
            inputs,
            network: spec.constraints.network,
        };
        let signed = match Signed::sign(payload, &self.key) {
            Ok(s) => s,
            Err(e) => {
                self.run_note(
                    id,
                    RunNote::Payload(Err(format!("cannot sign the job: {e}"))),
                );
                return;
            }
        };
        let network = self.network.clone();
        let handle = self.self_handle.clone();
        let peer = lease.terms().provider.peer_id();
        let ends = lease.terms().ends_at();
        self.spawn_task(async move {
            let result = send_until(&network, peer, Request::JobPayload(signed), ends).await;
            let _ = handle
                .commands
                .send(Command::Run(id, RunNote::Payload(result)))
                .await;
        });
    }

    fn send_cancel(&mut self, id: OrderId) {
        let Some(lease) = self.lease_of(&id) else {
            return;
        };
        let control = JobControl {
            lease_id: lease.id(),
            action: JobAction::Cancel,
            issued_at: crate::clock::now(),
        };
        let Ok(signed) = Signed::sign(control, &self.key) else {
            return;
        };
        let network = self.network.clone();
        let handle = self.self_handle.clone();
        let peer = lease.terms().provider.peer_id();
        let ends = lease.terms().ends_at();
        self.spawn_task(async move {
            if send_until(&network, peer, Request::JobControl(signed), ends)
                .await
                .is_ok()
            {
                let _ = handle
                    .commands
                    .send(Command::Run(id, RunNote::CancelDelivered))
                    .await;
            }
        });
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub(super) fn cancel(&mut self, id: &str, now: Timestamp) -> Result<JobView, MarketError> {
        let order: OrderId = id
            .parse()
            .map_err(|_| MarketError::not_found(format!("no job {id}")))?;
        let Some(job) = self.jobs.get_mut(&order) else {
            return Err(MarketError::not_found(format!("no job {id}")));
        };
        match job.view.state {
            JobState::Bidding | JobState::Leasing | JobState::Leased | JobState::Running => {}
            state => {
                return Err(MarketError {
                    status: 409,
                    message: format!("job {id} has already stopped ({state:?})"),
                    at: None,
                });
            }
        }
        if job.run.cancel_requested {
            return Ok(job.view.clone());
        }
        job.run.cancel_requested = true;
        job.event(now, "cancel_requested", "");
        match job.view.state {
            JobState::Bidding => {
                job.view.state = JobState::Cancelled;
                job.view.reason = Some("cancelled before a lease".into());
                job.event(now, "cancelled", "before a lease; nothing was paid");
            }
            JobState::Leasing => {} // sent once the lease is funded
            _ => self.send_cancel(order),
        }
        self.persist_job(&order);
        Ok(self.jobs[&order].view.clone())
    }

    /// The job under `lease_id` and its lease, if `peer` is that lease's
    /// provider; notes that it was heard from. Otherwise why it is refused.
    fn heard_from_provider(
        &mut self,
        lease_id: &LeaseId,
        peer: PeerId,
        now: Timestamp,
    ) -> Result<(OrderId, Lease), String> {
        let Some(order) = self.lease_jobs.get(lease_id).copied() else {
            return Err(format!("no job under lease {lease_id}"));
        };
        let Some(lease) = self.lease_of(&order) else {
            return Err("lease unknown".into());
        };
        if lease.terms().provider.peer_id() != peer {
            return Err("only the lease's provider reports on its job".into());
        }
        let Some(job) = self.jobs.get_mut(&order) else {
            return Err("job unknown".into());
        };
        job.run.last_heard = Some(now);
        Ok((order, lease))
    }

    /// The provider's log: entries it has not sent before go into the job's
    /// log; the answer is the next entry expected.
    pub(super) fn on_update(
        &mut self,
        peer: PeerId,
        update: JobUpdate,
        now: Timestamp,
    ) -> Response {
        let order = match self.heard_from_provider(&update.lease_id, peer, now) {
            Ok((order, _)) => order,
            Err(why) => return Response::Refused(why),
        };
        let Some(job) = self.jobs.get_mut(&order) else {
            return Response::Refused("job unknown".into());
        };
        let mut next = job.run.provider_entries + 1;
        let mut fresh = Vec::new();
        let mut transitions = Vec::new();
        for e in update.entries {
            if e.seq != next {
                if e.seq > next {
                    break;
                }
                continue;
            }
            next += 1;
            let text = String::from_utf8_lossy(&e.data).into_owned();
            if let Some(run) = e.event {
                transitions.push((run, text.clone()));
            }
            let name = e.event.map(|r| r.name().to_owned());
            fresh.push((e.at, e.kind, name, e.event, text));
        }
        job.run.provider_entries = next - 1;
        if let Some(bytes) = update.manifest
            && job.run.manifest.is_none()
        {
            match Manifest::decode(&bytes) {
                Ok(m) if m.lease_id == update.lease_id => {
                    job.view.outputs = m
                        .files
                        .iter()
                        .map(|f| OutputView {
                            path: f.path.clone(),
                            size: f.size,
                            blake3: hex::encode(f.blake3),
                        })
                        .collect();
                    job.run.manifest = Some(hex::encode(&bytes));
                }
                Ok(_) => warn!(job = %order, "manifest for another lease ignored"),
                Err(e) => warn!(job = %order, error = %e, "bad manifest ignored"),
            }
        }
        for (event, detail) in transitions {
            match event {
                RunEvent::Started if job.view.state == JobState::Leased => {
                    job.view.state = JobState::Running;
                    job.event(now, "running", "");
                }
                end if end.ends_run()
                    && (!job.view.state.has_stopped() || job.view.exit_code.is_none()) =>
                {
                    job.view.exit_code = job.view.exit_code.or(end.exit_code());
                    if end.exit_code() != Some(0) {
                        job.view.reason = Some(detail.clone());
                    }
                    if !job.view.state.is_terminal() {
                        job.view.state = JobState::Settling;
                    }
                }
                _ => {}
            }
        }
        self.log_entries(&order, fresh);
        self.persist_job(&order);
        if let Err(e) = self.store.flush() {
            return Response::Retry(format!("requester store: {e}"));
        }
        self.maybe_fetch(order);
        Response::UpdateAck(next)
    }

    /// A receipt from the provider: countersigned when the lease's rules
    /// and this node's clock allow it.
    pub(super) fn on_receipt(
        &mut self,
        peer: PeerId,
        signed: Signed<UsageReceipt>,
        now: Timestamp,
    ) -> Response {
        let r = signed.message().clone();
        let (order, lease) = match self.heard_from_provider(&r.lease_id, peer, now) {
            Ok(found) => found,
            Err(why) => return Response::Refused(why),
        };
        let Some(job) = self.jobs.get_mut(&order) else {
            return Response::Refused("job unknown".into());
        };
        let previous = job.receipt();
        if let Some(prev) = &previous
            && prev.cosigned().body() == signed.envelope().body()
        {
            // A resend of what we countersigned already.
            return Response::Receipt(prev.cosigned().clone());
        }
        if let Err(e) = check_next(
            lease.id(),
            lease.terms(),
            previous.as_ref().map(ReceiptClaim::receipt),
            &r,
            Some(now),
            RECEIPT_TOLERANCE_SECS,
        ) {
            warn!(job = %order, error = %e, "receipt refused");
            return Response::Refused(format!("receipt refused: {e}"));
        }
        let claim = match ReceiptClaim::countersign(signed.envelope(), &lease, &self.key) {
            Ok(c) => c,
            Err(e) => return Response::Refused(format!("cannot countersign: {e}")),
        };
        job.run.receipt = Some(hex::encode(claim.encode()));
        job.view.receipt = Some(receipt_view(&r));
        if job.view.state == JobState::Leased {
            // A receipt means the job ran, even if word of its start is
            // still on the way (a short job's final receipt can be first).
            job.event(now, "running", "");
        }
        if r.is_final {
            job.view.exit_code = r.exit_status.or(job.view.exit_code);
            if !job.view.state.is_terminal() {
                job.view.state = JobState::Settling;
            }
        } else if job.view.state == JobState::Leased {
            job.view.state = JobState::Running;
        }
        let text = format!(
            "#{} {} GPU-s, {} owed{}",
            r.sequence,
            r.gpu_seconds,
            r.cumulative_amount,
            if r.is_final { " (final)" } else { "" }
        );
        self.log_entries(
            &order,
            vec![(now, LogKind::Event, Some("receipt".into()), None, text)],
        );
        self.persist_job(&order);
        // Durable before the provider holds the countersignature.
        if let Err(e) = self.store.flush() {
            return Response::Retry(format!("requester store: {e}"));
        }
        self.maybe_fetch(order);
        if r.is_final {
            self.quick_escrow_reads.insert(order, 0);
            self.read_escrow_after(order, QUICK_ESCROW_FIRST_MS);
        }
        Response::Receipt(claim.cosigned().clone())
    }

    /// Fetches the outputs once the final receipt and the manifest agree.
    fn maybe_fetch(&mut self, id: OrderId) {
        if self.fetching.contains(&id) {
            return;
        }
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.run.fetch_done {
            return;
        }
        let Some(receipt) = job.receipt().filter(|c| c.receipt().is_final) else {
            return;
        };
        let Some(manifest_bytes) = job.run.manifest.as_ref().and_then(|h| hex::decode(h).ok())
        else {
            return;
        };
        let Some(lease) = self.lease_of(&id) else {
            return;
        };
        if receipt.receipt().result_hash != Some(Manifest::hash(&manifest_bytes)) {
            self.run_note(
                id,
                RunNote::Fetched(Err(
                    "the manifest does not match the final receipt's result hash".into(),
                )),
            );
            return;
        }
        let Ok(manifest) = Manifest::decode(&manifest_bytes) else {
            return;
        };
        self.fetching.insert(id);
        let network = self.network.clone();
        let handle = self.self_handle.clone();
        let dir = self.results_dir.join(id.to_string());
        let peer = lease.terms().provider.peer_id();
        self.spawn_task(async move {
            let result = fetch_outputs(&network, peer, &manifest, &dir).await;
            let _ = handle
                .commands
                .send(Command::Run(id, RunNote::Fetched(result)))
                .await;
        });
    }

    /// Background work reports back.
    pub(super) fn run_note(&mut self, id: OrderId, note: RunNote) {
        let now = crate::clock::now();
        if let RunNote::CheckEscrow = note {
            let settling = self
                .jobs
                .get(&id)
                .is_some_and(|j| j.view.state == JobState::Settling);
            // A read in flight holds its slot an hour; its answer re-plans.
            let in_flight = self
                .settle_checks
                .get(&id)
                .is_some_and(|t| t.0 > now.0 + SETTLE_POLL_MS);
            if settling && !in_flight {
                self.read_escrow(id, now);
            }
            return;
        }
        if let RunNote::Escrow(Ok(state)) = &note {
            let closed = state.as_ref().is_some_and(|s| s.closed());
            match self.quick_escrow_reads.get_mut(&id) {
                Some(done) if !closed && *done < QUICK_ESCROW_READS => {
                    *done += 1;
                    let delay = QUICK_ESCROW_FIRST_MS << *done;
                    self.read_escrow_after(id, delay);
                }
                Some(_) => {
                    self.quick_escrow_reads.remove(&id);
                }
                None => {}
            }
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match note {
            RunNote::Payload(Ok(())) => {
                job.run.payload_delivered = true;
                job.event(now, "payload_delivered", "");
            }
            RunNote::Payload(Err(reason)) => {
                if !job.view.state.has_stopped() {
                    job.view.state = JobState::Settling;
                    job.view.reason = Some(format!("the job was not run: {reason}"));
                    job.event(now, "failed", format!("the job was not run: {reason}"));
                }
            }
            RunNote::CancelDelivered => {
                job.run.cancel_delivered = true;
                job.event(now, "cancel_delivered", "");
            }
            RunNote::Escrow(Err(e)) => {
                info!(job = %id, error = %e, "escrow read failed; will retry");
                self.settle_checks.remove(&id);
            }
            RunNote::Escrow(Ok(state)) => {
                self.settle_checks.insert(id, now.plus_ms(SETTLE_POLL_MS));
                let Some(state) = state else {
                    return;
                };
                let before = job
                    .view
                    .settlement
                    .as_ref()
                    .map(|s| (s.settled, s.refunded));
                job.view.settlement = Some(SettlementView {
                    escrow: state.escrow,
                    settled: state.settled,
                    last_sequence: state.last_sequence,
                    refunded: state.refunded,
                    closable_at: state.closable_at,
                    ledger_ops: state.ops,
                });
                if before != Some((state.settled, state.refunded)) {
                    job.event(
                        now,
                        if state.closed() { "closed" } else { "settled" },
                        format!(
                            "{} paid to the provider{}",
                            state.settled,
                            state
                                .refunded
                                .map(|r| format!(", {r} refunded"))
                                .unwrap_or_default()
                        ),
                    );
                }
                self.finish_if_done(id, now);
            }
            RunNote::CheckEscrow => {}
            RunNote::Fetched(result) => {
                self.fetching.remove(&id);
                job.run.fetch_done = true;
                match result {
                    Ok(n) => {
                        job.view.results_fetched = true;
                        job.event(
                            now,
                            "results_fetched",
                            format!("{n} file(s), every hash checked"),
                        );
                    }
                    Err(e) => job.event(now, "results_failed", e),
                }
                self.finish_if_done(id, now);
            }
        }
        self.persist_job(&id);
    }

    /// A settling job becomes terminal once its lease is closed and its
    /// outputs are fetched (or given up on).
    fn finish_if_done(&mut self, id: OrderId, now: Timestamp) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let closed = job
            .view
            .settlement
            .as_ref()
            .is_some_and(|s| s.refunded.is_some());
        let outputs_pending = job.run.manifest.is_some()
            && !job.run.fetch_done
            && job.receipt().is_some_and(|c| c.receipt().is_final);
        if !closed || outputs_pending || job.view.state.is_terminal() {
            return;
        }
        job.view.state = if job.run.cancel_requested && job.view.exit_code != Some(0) {
            JobState::Cancelled
        } else if job.view.exit_code == Some(0) && job.view.reason.is_none() {
            JobState::Succeeded
        } else {
            if job.view.reason.is_none() {
                job.view.reason = Some(match job.view.exit_code {
                    Some(code) => format!("exited with status {code}"),
                    None => "the job ended without an exit status".into(),
                });
            }
            JobState::Failed
        };
        info!(job = %id, state = ?job.view.state, "job finished");
        job.event(
            now,
            "finished",
            format!("{:?}", job.view.state).to_lowercase(),
        );
    }

    /// Every second: give up on silent providers, and read (and close) the
    /// escrow of jobs that stopped.
    pub(super) fn tick_runs(&mut self, now: Timestamp) {
        let mut silent = Vec::new();
        let mut check = Vec::new();
        let mut fetch = Vec::new();
        for (id, job) in &self.jobs {
            match job.view.state {
                JobState::Leased | JobState::Running => {
                    let interval = job
                        .view
                        .lease
                        .as_ref()
                        .map_or(60, |_| u64::from(self.config.node.receipt_interval_secs));
                    let limit = 2 * interval * 1000 + SILENCE_GRACE_MS;
                    if job.run.last_heard.is_some_and(|t| now.ms_since(t) > limit) {
                        silent.push(*id);
                    }
                }
                JobState::Settling => {
                    let due = self.settle_checks.get(id).is_none_or(|t| now >= *t);
                    if due {
                        check.push(*id);
                    }
                    if !job.run.fetch_done {
                        fetch.push(*id);
                    }
                }
                _ => {}
            }
        }
        for id in silent {
            if let Some(job) = self.jobs.get_mut(&id) {
                warn!(job = %id, "provider silent; giving the run up");
                job.view.state = JobState::Settling;
                job.view.reason = Some("the provider stopped responding".into());
                job.event(
                    now,
                    "provider_unresponsive",
                    "no word from the provider for two receipt intervals plus grace",
                );
                self.persist_job(&id);
            }
        }
        for id in fetch {
            self.maybe_fetch(id);
        }
        for id in check {
            self.read_escrow(id, now);
        }
    }

    /// Reads the lease's escrow (closing it when that is due) off the
    /// actor; the answer comes back as [`RunNote::Escrow`].
    fn read_escrow(&mut self, id: OrderId, now: Timestamp) {
        let Some(lease) = self.lease_of(&id) else {
            return;
        };
        // In flight until the answer comes (an hour is "never").
        self.settle_checks.insert(id, now.plus_ms(3_600_000));
        let ledger = self.ledger.clone();
        let handle = self.self_handle.clone();
        self.spawn_task(async move {
            let state = read_and_close(&*ledger, lease.id())
                .await
                .map(|s| s.map(Box::new));
            let _ = handle
                .commands
                .send(Command::Run(id, RunNote::Escrow(state)))
                .await;
        });
    }

    /// Asks for an escrow read of `id` in `delay_ms`.
    fn read_escrow_after(&mut self, id: OrderId, delay_ms: u64) {
        let handle = self.self_handle.clone();
        self.spawn_task(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let _ = handle
                .commands
                .send(Command::Run(id, RunNote::CheckEscrow))
                .await;
        });
    }
}

/// Reads a lease's escrow; closes it when the ledger allows (the final
/// receipt settled, or the lease's end plus grace passed) and it is still
/// open.
async fn read_and_close(
    ledger: &dyn Ledger,
    lease: LeaseId,
) -> Result<Option<EscrowState>, String> {
    let state = ledger.escrow(&lease).await.map_err(|e| e.to_string())?;
    let Some(state) = state else {
        return Ok(None);
    };
    if state.closed() {
        return Ok(Some(state));
    }
    let chain_now = ledger.now().await.map_err(|e| e.to_string())?;
    // With a final receipt countersigned, the provider settles it first (it
    // is paid before anything is refunded): the one closability rule waits
    // for that, or for the lease's time plus grace.
    if !state.closable(chain_now) {
        return Ok(Some(state));
    }
    match ledger.close(&lease).await {
        Ok(_) | Err(LedgerError::LeaseClosed(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    ledger.escrow(&lease).await.map_err(|e| e.to_string())
}

/// Sends a request until it is acknowledged, refused for good, or the lease
/// ends.
async fn send_until(
    network: &NetworkHandle,
    peer: PeerId,
    request: Request,
    ends: Timestamp,
) -> Result<(), String> {
    let mut backoff = Duration::from_millis(250);
    loop {
        let last = match network.request(peer, request.clone()).await {
            Ok(Response::Ack) => return Ok(()),
            Ok(Response::Refused(reason)) => return Err(reason),
            Ok(Response::Retry(reason)) => reason,
            Ok(other) => format!("unexpected answer {other:?}"),
            Err(e) => e.to_string(),
        };
        if crate::clock::now() >= ends {
            return Err(format!(
                "the lease ended before the provider took it ({last})"
            ));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(3));
    }
}

/// Fetches every output into `dir`, checking each against the manifest.
async fn fetch_outputs(
    network: &NetworkHandle,
    peer: PeerId,
    manifest: &Manifest,
    dir: &Path,
) -> Result<usize, String> {
    use tokio::io::AsyncWriteExt;
    for file in &manifest.files {
        let path: PathBuf = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let part = path.with_extension("agora-part");
        let mut out = tokio::fs::File::create(&part)
            .await
            .map_err(|e| format!("{}: {e}", part.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut offset = 0u64;
        let mut failures = 0;
        while offset < file.size {
            let fetch = Fetch {
                lease_id: manifest.lease_id,
                path: file.path.clone(),
                offset,
                max_len: MAX_FETCH_CHUNK,
            };
            match network.request(peer, Request::Fetch(fetch)).await {
                Ok(Response::Chunk { data, .. }) if !data.is_empty() => {
                    let take = data
                        .len()
                        .min(usize::try_from(file.size - offset).unwrap_or(usize::MAX));
                    hasher.update(&data[..take]);
                    out.write_all(&data[..take])
                        .await
                        .map_err(|e| format!("{}: {e}", part.display()))?;
                    offset += take as u64;
                }
                Ok(Response::Chunk { .. }) => {
                    return Err(format!("{}: shorter than its manifest says", file.path));
                }
                Ok(Response::Refused(reason)) => return Err(format!("{}: {reason}", file.path)),
                Ok(_) | Err(_) if failures < 10 => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(500 * failures)).await;
                }
                Ok(other) => return Err(format!("{}: unexpected answer {other:?}", file.path)),
                Err(e) => return Err(format!("{}: {e}", file.path)),
            }
        }
        out.flush().await.map_err(|e| e.to_string())?;
        drop(out);
        if *hasher.finalize().as_bytes() != file.blake3 {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(format!("{}: content does not match its hash", file.path));
        }
        tokio::fs::rename(&part, &path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(manifest.files.len())
}
