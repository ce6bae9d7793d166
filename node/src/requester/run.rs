//! The requester's side of a leased job: deliver the payload, take in the
//! provider's log and typed run events, countersign receipts that the
//! lease and this node's clock allow, fetch and check the outputs, give up
//! on a silent provider, and finish once the lease is closed.

use agora_client::api::JobState;
use agora_protocol::close::check_close;
use agora_protocol::receipt::check_next;
use agora_protocol::{
    CloseClaim, JobAction, JobControl, LeaseClose, LeaseId, Manifest, OrderId, ReceiptClaim,
    RunEvent, Signed, Timestamp, UsageReceipt,
};
use libp2p::PeerId;
use tracing::{info, warn};

use super::core::{Answer, Delivery, Effect, Refusal, Requester, RequesterError, Task};
use super::events::JobEventKind;
use super::job::{ManifestBytes, Wire};
use super::order::payload_of;
use crate::network::wire::JobUpdate;
use crate::network::{Request, Response};
use crate::store::MoneyEntry;

/// Clock skew allowed when checking a receipt's GPU-seconds.
pub(crate) const RECEIPT_TOLERANCE_SECS: u64 = 3;
/// Silence from the provider after which a run is given up, beyond two
/// receipt intervals.
pub(crate) const SILENCE_GRACE_MS: u64 = 10_000;

impl Requester {
    /// A lease is funded (or was, before a restart): send the job, and the
    /// cancel if one was asked for meanwhile.
    pub(super) fn start_run(&mut self, id: OrderId, now: Timestamp) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.run.last_heard = Some(now);
        let cancel = job.run.cancel_requested && !job.run.cancel_delivered;
        if cancel {
            self.send_cancel(id, now);
        }
        self.deliver_payload(id, now);
    }

    fn deliver_payload(&mut self, id: OrderId, now: Timestamp) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let Some(lease) = job.lease() else {
            return;
        };
        if job.run.payload_delivered {
            return;
        }
        let payload = match payload_of(&job.spec, lease.id()) {
            Ok(payload) => payload,
            Err(e) => {
                // Checked at submission; a job stored before that check
                // existed can still fail here.
                self.delivered(
                    id,
                    Delivery::Payload,
                    Err(format!("the job is invalid: {e}")),
                    now,
                );
                return;
            }
        };
        let peer = lease.terms().provider.peer_id();
        let until = lease.terms().ends_at();
        match Signed::sign(payload, &self.key) {
            Ok(signed) => self.start(
                id,
                Task::Deliver {
                    what: Delivery::Payload,
                    peer,
                    request: Box::new(Request::JobPayload(signed)),
                    until,
                },
            ),
            Err(e) => {
                self.delivered(
                    id,
                    Delivery::Payload,
                    Err(format!("cannot sign the job: {e}")),
                    now,
                );
            }
        }
    }

    fn send_cancel(&mut self, id: OrderId, now: Timestamp) {
        let Some(lease) = self.jobs.get(&id).and_then(|j| j.lease()) else {
            return;
        };
        let control = JobControl {
            lease_id: lease.id(),
            action: JobAction::Cancel,
            issued_at: now,
        };
        let peer = lease.terms().provider.peer_id();
        let until = lease.terms().ends_at();
        if let Ok(signed) = Signed::sign(control, &self.key) {
            self.start(
                id,
                Task::Deliver {
                    what: Delivery::Cancel,
                    peer,
                    request: Box::new(Request::JobControl(signed)),
                    until,
                },
            );
        }
    }

    /// The user cancels: before a lease the job just stops; after, the
    /// provider is told, and the job is paid for the time it used.
    pub fn cancel(&mut self, id: &OrderId, now: Timestamp) -> Result<(), RequesterError> {
        let Some(job) = self.jobs.get_mut(id) else {
            return Err(RequesterError::new(
                Refusal::NotFound,
                format!("no job {id}"),
            ));
        };
        match job.state {
            JobState::Bidding | JobState::Leasing | JobState::Leased | JobState::Running => {}
            state => {
                return Err(RequesterError::new(
                    Refusal::Conflict,
                    format!("job {id} has already stopped ({state:?})"),
                ));
            }
        }
        if job.run.cancel_requested {
            return Ok(());
        }
        job.run.cancel_requested = true;
        let state = job.state;
        let id = *id;
        self.event(id, now, JobEventKind::CancelRequested, "");
        match state {
            JobState::Bidding => {
                self.auctions.retain(|(_, o)| *o != id);
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.state = JobState::Cancelled;
                    job.reason = Some("cancelled before a lease".into());
                }
                self.event(
                    id,
                    now,
                    JobEventKind::Cancelled,
                    "before a lease; nothing was paid",
                );
            }
            JobState::Leasing => {} // sent once the lease is funded
            _ => self.send_cancel(id, now),
        }
        self.persist(id);
        Ok(())
    }

    /// The job under `lease_id`, if `peer` is that lease's provider; notes
    /// that it was heard from. Otherwise why it is refused.
    fn heard_from_provider(
        &mut self,
        lease_id: &LeaseId,
        peer: PeerId,
        now: Timestamp,
    ) -> Result<OrderId, String> {
        let Some(id) = self.by_lease.get(lease_id).copied() else {
            return Err(format!("no job under lease {lease_id}"));
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return Err("job unknown".into());
        };
        let Some(lease) = job.lease() else {
            return Err("lease unknown".into());
        };
        if lease.terms().provider.peer_id() != peer {
            return Err("only the lease's provider reports on its job".into());
        }
        job.run.last_heard = Some(now);
        Ok(id)
    }

    /// The provider's log: entries it has not sent before go into the
    /// job's log, its typed run events move the job on; the answer is the
    /// next entry expected, once the store holds what came.
    pub fn on_update(&mut self, peer: PeerId, update: JobUpdate, now: Timestamp) -> Answer {
        let id = match self.heard_from_provider(&update.lease_id, peer, now) {
            Ok(id) => id,
            Err(why) => return Answer::plain(Response::Refused(why)),
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return Answer::plain(Response::Refused("job unknown".into()));
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
            fresh.push((e.at, e.kind, e.event, text));
        }
        job.run.provider_entries = next - 1;
        if let Some(bytes) = update.manifest
            && job.manifest.is_none()
        {
            match Manifest::decode(&bytes) {
                Ok(manifest) if manifest.lease_id == update.lease_id => {
                    job.manifest = Some(Wire(ManifestBytes { bytes, manifest }));
                }
                Ok(_) => warn!(job = %id, "manifest for another lease ignored"),
                Err(e) => warn!(job = %id, error = %e, "bad manifest ignored"),
            }
        }
        let mut running = false;
        for (event, detail) in transitions {
            match event {
                RunEvent::Started if job.state == JobState::Leased => {
                    job.state = JobState::Running;
                    running = true;
                }
                end if end.ends_run() && (!job.state.has_stopped() || job.exit_code.is_none()) => {
                    job.exit_code = job.exit_code.or(end.exit_code());
                    if end.exit_code() != Some(0) {
                        job.reason = Some(detail);
                    }
                    if !job.state.is_terminal() {
                        job.state = JobState::Settling;
                    }
                }
                _ => {}
            }
        }
        self.log_provider(id, fresh);
        if running {
            self.event(id, now, JobEventKind::Running, "");
        }
        self.persist(id);
        self.maybe_fetch(id, now);
        Answer::durable(Response::UpdateAck(next))
    }

    /// A receipt from the provider: countersigned when the lease's rules
    /// and this node's clock allow it — durably, before the provider holds
    /// the countersignature.
    pub fn on_receipt(
        &mut self,
        peer: PeerId,
        signed: Signed<UsageReceipt>,
        now: Timestamp,
    ) -> Answer {
        let r = signed.message().clone();
        let id = match self.heard_from_provider(&r.lease_id, peer, now) {
            Ok(id) => id,
            Err(why) => return Answer::plain(Response::Refused(why)),
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return Answer::plain(Response::Refused("job unknown".into()));
        };
        let Some(lease) = job.lease() else {
            return Answer::plain(Response::Refused("lease unknown".into()));
        };
        let previous = job.receipt();
        if let Some(prev) = previous
            && prev.cosigned().body() == signed.envelope().body()
        {
            // A resend of what we countersigned already.
            return Answer::plain(Response::Receipt(prev.cosigned().clone()));
        }
        if let Err(e) = check_next(
            lease.id(),
            lease.terms(),
            previous.map(ReceiptClaim::receipt),
            &r,
            Some(now),
            RECEIPT_TOLERANCE_SECS,
        ) {
            warn!(job = %id, error = %e, "receipt refused");
            return Answer::plain(Response::Refused(format!("receipt refused: {e}")));
        }
        let claim = match ReceiptClaim::countersign(signed.envelope(), lease, &self.key) {
            Ok(c) => c,
            Err(e) => return Answer::plain(Response::Refused(format!("cannot countersign: {e}"))),
        };
        let cosigned = claim.cosigned().clone();
        let spent = MoneyEntry::increase(
            r.lease_id,
            r.sequence,
            r.cumulative_amount,
            previous.map(|p| (p.receipt().sequence, p.receipt().cumulative_amount)),
            now,
        );
        job.receipt = Some(Wire(claim));
        // A receipt means the job ran, even if word of its start is still
        // on the way (a short job's final receipt can come first).
        let first_word = job.state == JobState::Leased;
        if r.is_final {
            job.exit_code = r.exit_status.or(job.exit_code);
            if !job.state.is_terminal() {
                job.state = JobState::Settling;
            }
        } else if first_word {
            job.state = JobState::Running;
        }
        if first_word {
            self.event(id, now, JobEventKind::Running, "");
        }
        let text = format!(
            "#{} {} GPU-s, {} owed{}",
            r.sequence,
            r.gpu_seconds,
            r.cumulative_amount,
            if r.is_final { " (final)" } else { "" }
        );
        self.event(id, now, JobEventKind::Receipt, text);
        if let Some(entry) = spent {
            self.effect(Effect::Spent(entry));
        }
        self.persist(id);
        self.maybe_fetch(id, now);
        if r.is_final {
            self.read_escrow_soon(id, now);
        }
        Answer::durable(Response::Receipt(cosigned))
    }

    /// The provider's early close: countersigned when it pays for no more
    /// than the latest receipt this node countersigned (and is priced by
    /// the lease). The run is over: a job still running here is settling,
    /// with the provider's reason.
    pub fn on_close(&mut self, peer: PeerId, signed: Signed<LeaseClose>, now: Timestamp) -> Answer {
        let c = signed.message().clone();
        let id = match self.heard_from_provider(&c.lease_id, peer, now) {
            Ok(id) => id,
            Err(why) => return Answer::plain(Response::Refused(why)),
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return Answer::plain(Response::Refused("job unknown".into()));
        };
        let Some(lease) = job.lease() else {
            return Answer::plain(Response::Refused("lease unknown".into()));
        };
        let countersigned = job.receipt().map(ReceiptClaim::receipt);
        if let Err(e) = check_close(lease.id(), lease.terms(), countersigned, &c) {
            warn!(job = %id, error = %e, "early close refused");
            return Answer::plain(Response::Refused(format!("close refused: {e}")));
        }
        let claim = match CloseClaim::countersign(signed.envelope(), lease, &self.key) {
            Ok(claim) => claim,
            Err(e) => return Answer::plain(Response::Refused(format!("cannot countersign: {e}"))),
        };
        if !job.state.is_terminal() {
            job.state = JobState::Settling;
            job.reason.get_or_insert_with(|| match c.reason {
                agora_protocol::CloseReason::NotStarted => "the job never started".into(),
                agora_protocol::CloseReason::ProviderRestarted => {
                    "the provider's node restarted while the job ran".into()
                }
                agora_protocol::CloseReason::Ended => {
                    "the job ended without a final receipt".into()
                }
            });
        }
        let text = format!(
            "{}: {} GPU-s, {} in all",
            c.reason, c.gpu_seconds, c.cumulative_amount
        );
        self.event(id, now, JobEventKind::CloseCountersigned, text);
        self.persist(id);
        self.read_escrow_soon(id, now);
        Answer::durable(Response::Close(claim.cosigned().clone()))
    }

    /// Fetches the outputs once the final receipt and the manifest agree.
    pub(super) fn maybe_fetch(&mut self, id: OrderId, now: Timestamp) {
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
        let (Some(manifest), Some(lease)) = (job.manifest.as_ref(), job.lease()) else {
            return;
        };
        if receipt.receipt().result_hash != Some(Manifest::hash(&manifest.0.bytes)) {
            self.fetched(
                id,
                Err("the manifest does not match the final receipt's result hash".into()),
                now,
            );
            return;
        }
        let task = Task::Fetch {
            peer: lease.terms().provider.peer_id(),
            manifest: Box::new(manifest.0.manifest.clone()),
        };
        self.fetching.insert(id);
        self.start(id, task);
    }

    /// A delivery ended.
    pub(super) fn delivered(
        &mut self,
        id: OrderId,
        what: Delivery,
        result: Result<(), String>,
        now: Timestamp,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match (what, result) {
            (Delivery::Payload, Ok(())) => {
                job.run.payload_delivered = true;
                self.event(id, now, JobEventKind::PayloadDelivered, "");
            }
            (Delivery::Payload, Err(reason)) => {
                if job.state.has_stopped() {
                    return;
                }
                let reason = format!("the job was not run: {reason}");
                job.state = JobState::Settling;
                job.reason = Some(reason.clone());
                self.event(id, now, JobEventKind::Failed, reason);
            }
            (Delivery::Cancel, Ok(())) => {
                job.run.cancel_delivered = true;
                self.event(id, now, JobEventKind::CancelDelivered, "");
            }
            (Delivery::Cancel, Err(reason)) => {
                info!(job = %id, %reason, "the cancel was not delivered");
                return;
            }
        }
        self.persist(id);
    }

    /// Fetching ended.
    pub(super) fn fetched(&mut self, id: OrderId, result: Result<usize, String>, now: Timestamp) {
        self.fetching.remove(&id);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.run.fetch_done = true;
        match result {
            Ok(n) => {
                job.results_fetched = true;
                self.event(
                    id,
                    now,
                    JobEventKind::ResultsFetched,
                    format!("{n} file(s), every hash checked"),
                );
            }
            Err(e) => self.event(id, now, JobEventKind::ResultsFailed, e),
        }
        self.finish_if_done(id, now);
        self.persist(id);
    }

    /// A settling job becomes terminal once its lease is closed and its
    /// outputs are fetched (or given up on).
    pub(super) fn finish_if_done(&mut self, id: OrderId, now: Timestamp) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let closed = job.settlement.is_some_and(|s| s.refunded.is_some());
        let outputs_pending =
            job.manifest.is_some() && !job.run.fetch_done && job.final_countersigned();
        if !closed || outputs_pending || job.state.is_terminal() {
            return;
        }
        job.state = if job.run.cancel_requested && job.exit_code != Some(0) {
            JobState::Cancelled
        } else if job.exit_code == Some(0) && job.reason.is_none() {
            JobState::Succeeded
        } else {
            if job.reason.is_none() {
                job.reason = Some(match job.exit_code {
                    Some(code) => format!("exited with status {code}"),
                    None => "the job ended without an exit status".into(),
                });
            }
            JobState::Failed
        };
        let state = job.state;
        self.polls.remove(&id);
        info!(job = %id, state = ?state, "job finished");
        self.event(
            id,
            now,
            JobEventKind::Finished,
            format!("{state:?}").to_lowercase(),
        );
    }

    /// Gives up on providers silent for two receipt intervals plus grace,
    /// and fetches what is due.
    pub(super) fn tick_runs(&mut self, now: Timestamp) {
        let limit = 2 * u64::from(self.settings.receipt_interval_secs) * 1000 + SILENCE_GRACE_MS;
        let mut silent = Vec::new();
        let mut fetch = Vec::new();
        for (id, job) in &self.jobs {
            match job.state {
                JobState::Leased | JobState::Running
                    if job.run.last_heard.is_some_and(|t| now.ms_since(t) > limit) =>
                {
                    silent.push(*id);
                }
                JobState::Settling if !job.run.fetch_done => fetch.push(*id),
                _ => {}
            }
        }
        for id in silent {
            warn!(job = %id, "provider silent; giving the run up");
            if let Some(job) = self.jobs.get_mut(&id) {
                job.state = JobState::Settling;
                job.reason = Some("the provider stopped responding".into());
            }
            self.event(
                id,
                now,
                JobEventKind::ProviderUnresponsive,
                "no word from the provider for two receipt intervals plus grace",
            );
            self.persist(id);
        }
        for id in fetch {
            self.maybe_fetch(id, now);
        }
    }
}
