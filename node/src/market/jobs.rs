//! The requester's jobs: their durable record, and the lease attempt that
//! turns a chosen bid (or offer) into a countersigned, funded lease.

use std::sync::Arc;
use std::time::Duration;

use agora_client::api::{JobEvent, JobState, JobView, LeaseView};
use agora_protocol::{
    Bid, Lease, LeaseTerms, Ledger, Order, OrderId, PublicKey, Signed, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::network::{NetworkHandle, Request, Response};

/// A job as stored: what the API shows plus the signed messages behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// What the API shows.
    pub view: JobView,
    /// The signed order, hex.
    pub order: String,
    /// Signed bids received, hex.
    pub bids: Vec<String>,
    /// Providers already asked to countersign.
    pub tried: Vec<PublicKey>,
    /// When the auction closes.
    pub closes_at: Timestamp,
    /// The run, once leased.
    #[serde(default)]
    pub run: RunState,
}

/// The requester's side of a leased job's run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// The provider acknowledged the payload.
    pub payload_delivered: bool,
    /// Entries of the provider's log received (its next is this + 1).
    pub provider_entries: u64,
    /// The latest countersigned receipt, hex.
    pub receipt: Option<String>,
    /// The result manifest, hex.
    pub manifest: Option<String>,
    /// The requester asked for a cancel.
    pub cancel_requested: bool,
    /// The provider acknowledged the cancel.
    pub cancel_delivered: bool,
    /// Last word from the provider.
    pub last_heard: Option<Timestamp>,
    /// `view.events` already copied into the job's log.
    pub events_logged: usize,
    /// Output fetching is over (fetched, or given up with a reason).
    pub fetch_done: bool,
}

impl JobRecord {
    pub(crate) fn order(&self) -> Option<Signed<Order>> {
        hex::decode(&self.order)
            .ok()
            .and_then(|b| Signed::<Order>::decode(&b).ok())
    }

    pub(crate) fn bids(&self) -> Vec<Signed<Bid>> {
        self.bids
            .iter()
            .filter_map(|h| hex::decode(h).ok())
            .filter_map(|b| Signed::<Bid>::decode(&b).ok())
            .collect()
    }

    pub(crate) fn event(&mut self, at: Timestamp, event: &str, detail: impl Into<String>) {
        self.view.events.push(JobEvent {
            at,
            event: event.into(),
            detail: detail.into(),
        });
    }

    /// The latest countersigned receipt.
    pub(crate) fn receipt(&self) -> Option<agora_protocol::ReceiptClaim> {
        self.run
            .receipt
            .as_ref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| agora_protocol::ReceiptClaim::decode(&b).ok())
    }

    pub(crate) fn fail(&mut self, at: Timestamp, reason: String) {
        self.view.state = JobState::Failed;
        self.event(at, "failed", reason.clone());
        self.view.reason = Some(reason);
    }
}

/// The view of a lease.
pub(crate) fn lease_view(lease: &Lease, escrow_locked: bool) -> LeaseView {
    let t = lease.terms();
    LeaseView {
        id: lease.id().to_string(),
        order_id: t.order_id.to_string(),
        requester: t.requester,
        provider: t.provider,
        slot: t.slot,
        gpu_model: t.gpu_model.clone(),
        gpu_count: t.gpu_count,
        price_per_gpu_hour: t.price_per_gpu_hour,
        max_duration_secs: t.max_duration_secs,
        starts_at: t.starts_at,
        escrow: t.escrow,
        escrow_locked,
    }
}

/// How a lease attempt failed.
#[derive(Debug, Clone)]
// Moved once per message, never stored in bulk: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum LeaseFailure {
    /// The provider refused or could not be reached: try the next bid.
    Provider(String),
    /// The lease is signed but escrow could not be locked.
    Escrow(Lease, String),
}

/// What a lease attempt came to.
#[derive(Debug, Clone)]
pub(crate) struct LeaseOutcome {
    pub(crate) order: OrderId,
    pub(crate) provider: PublicKey,
    pub(crate) result: Result<Lease, LeaseFailure>,
}

/// Asks the provider to countersign, checks what comes back, and locks
/// escrow. Transient ledger failures are retried for a while.
pub(crate) async fn attempt_lease(
    network: NetworkHandle,
    ledger: Arc<dyn Ledger>,
    proposal: Signed<LeaseTerms>,
) -> LeaseOutcome {
    let terms: LeaseTerms = proposal.message().clone();
    let outcome = |result| LeaseOutcome {
        order: terms.order_id,
        provider: terms.provider,
        result,
    };
    let response = network
        .request(
            terms.provider.peer_id(),
            Request::LeaseProposal(proposal.clone()),
        )
        .await;
    let cosigned = match response {
        Ok(Response::Lease(cosigned)) => cosigned,
        Ok(Response::Refused(reason) | Response::Retry(reason)) => {
            return outcome(Err(LeaseFailure::Provider(format!("refused: {reason}"))));
        }
        Ok(_) => {
            return outcome(Err(LeaseFailure::Provider(
                "answered a lease proposal without a lease".into(),
            )));
        }
        Err(e) => return outcome(Err(LeaseFailure::Provider(e.to_string()))),
    };
    let lease = match Lease::verify(cosigned) {
        Ok(lease) if lease.terms() == &terms => lease,
        Ok(_) => {
            return outcome(Err(LeaseFailure::Provider(
                "countersigned different terms".into(),
            )));
        }
        Err(e) => {
            return outcome(Err(LeaseFailure::Provider(format!(
                "countersignature invalid: {e}"
            ))));
        }
    };
    let mut delay = Duration::from_millis(200);
    for _ in 0..8 {
        match ledger.lock_escrow(lease.cosigned()).await {
            Ok(_) => return outcome(Ok(lease)),
            Err(e) if e.is_transient() => {
                tracing::warn!(lease = %lease.id(), error = %e, "escrow lock failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return outcome(Err(LeaseFailure::Escrow(lease, e.to_string()))),
        }
    }
    outcome(Err(LeaseFailure::Escrow(
        lease,
        "the ledger stayed unreachable".into(),
    )))
}
