//! The lease attempt: ask the chosen provider to countersign the terms and
//! check what comes back; then, once the core has stored the countersigned
//! lease, lock the escrow on the ledger. Each runs as a task of the
//! router's pool; its outcome goes back to the core.

use std::time::Duration;

use agora_protocol::{Lease, LeaseTerms, Ledger, OrderId, PublicKey, Signed};

use crate::network::{NetworkHandle, Request, Response};

/// Times a busy provider is asked again before the next bid is tried.
const BUSY_RETRIES: u32 = 5;

/// How a lease attempt failed.
#[derive(Debug, Clone)]
pub enum LeaseFailure {
    /// The provider refused or could not be reached: try the next bid.
    Provider(String),
}

/// What a lease attempt came to.
#[derive(Debug, Clone)]
pub struct LeaseOutcome {
    /// The job.
    pub order: OrderId,
    /// Who was asked.
    pub provider: PublicKey,
    /// The lease, or why not.
    pub result: Result<Lease, LeaseFailure>,
}

/// Asks the provider to countersign and checks what comes back. The
/// escrow is locked by [`lock_escrow`], once the core has stored the lease.
pub async fn attempt_lease(network: &NetworkHandle, proposal: Signed<LeaseTerms>) -> LeaseOutcome {
    let terms: LeaseTerms = proposal.message().clone();
    let outcome = |result| LeaseOutcome {
        order: terms.order_id,
        provider: terms.provider,
        result,
    };
    // A busy provider ("retry") is asked again with backoff; a refusal
    // for good moves on to the next bid at once.
    let mut backoff = Duration::from_millis(100);
    let mut busy = 0;
    let response = loop {
        let response = network
            .request(
                terms.provider.peer_id(),
                Request::LeaseProposal(proposal.clone()),
            )
            .await;
        // A transport failure (a stream the connection could not open, a
        // dropped connection) is as transient as "busy".
        let transient = match &response {
            Ok(Response::Retry(reason)) => Some(reason.clone()),
            Err(e) => Some(e.to_string()),
            Ok(_) => None,
        };
        match transient {
            Some(reason) if busy < BUSY_RETRIES => {
                busy += 1;
                tracing::debug!(provider = %terms.provider.short(), %reason, "provider busy or unreachable; retrying the proposal");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            _ => break response,
        }
    };
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
    match Lease::verify(cosigned) {
        Ok(lease) if lease.terms() == &terms => outcome(Ok(lease)),
        Ok(_) => outcome(Err(LeaseFailure::Provider(
            "countersigned different terms".into(),
        ))),
        Err(e) => outcome(Err(LeaseFailure::Provider(format!(
            "countersignature invalid: {e}"
        )))),
    }
}

/// Locks the escrow of a countersigned lease (again, harmlessly, when an
/// earlier lock landed). Transient ledger failures are retried for a while.
pub async fn lock_escrow(ledger: &dyn Ledger, lease: &Lease) -> Result<(), String> {
    let mut delay = Duration::from_millis(200);
    for _ in 0..8 {
        match ledger.lock_escrow(lease.cosigned()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_transient() => {
                tracing::warn!(lease = %lease.id(), error = %e, "escrow lock failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("the ledger stayed unreachable".into())
}
