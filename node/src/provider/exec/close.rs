//! The early close: a run that ended without a settled final receipt —
//! it never started, the node restarted under it, or the requester did not
//! countersign its final receipt in time — would leave its unused escrow
//! locked until the lease's end plus the ledger's grace. Instead the
//! provider signs a [`LeaseClose`] for the GPU-seconds of the latest
//! receipt the requester countersigned, the requester countersigns it, and
//! the ledger pays that and refunds the rest at once.

use agora_protocol::ledger::Closure;
use agora_protocol::{CloseClaim, CloseReason, LeaseClose, LeaseId, LedgerError, RunEvent};
use tracing::{info, warn};

use super::Executor;
use super::record::RunRecord;
use crate::clock::now;
use crate::network::{Request, Response};

/// How many times an early close is offered before the provider waits for
/// the ledger's own close instead.
pub(super) const EARLY_CLOSE_TRIES: u32 = 5;

/// Why `record`'s run ended early, for its close.
pub(super) fn reason_of(record: &RunRecord) -> CloseReason {
    if record.started_at.is_none() {
        CloseReason::NotStarted
    } else if record.reason.as_deref() == Some(RunRecord::interrupted_reason()) {
        CloseReason::ProviderRestarted
    } else {
        CloseReason::Ended
    }
}

/// What became of one offer of an early close.
pub(super) enum EarlyClose {
    /// The ledger closed the lease.
    Closed(Closure),
    /// It was closed already (by anyone).
    AlreadyClosed,
    /// Not now: the requester was unreachable or refused, or the ledger
    /// refused; the reason is logged.
    NotNow,
}

impl Executor {
    /// Offers the requester an early close of `record`'s lease for the
    /// GPU-seconds it last countersigned and, countersigned, closes it on
    /// the ledger. A transient ledger failure is returned for the caller
    /// to retry.
    pub(super) async fn close_early(
        &self,
        id: LeaseId,
        record: &RunRecord,
    ) -> Result<EarlyClose, LedgerError> {
        let o = &self.inner.options;
        let lease = &record.lease;
        let gpu_seconds = record
            .countersigned
            .as_ref()
            .map_or(0, |c| c.receipt().gpu_seconds);
        let close = LeaseClose::new(lease, gpu_seconds, reason_of(record), now());
        let signed = match CloseClaim::sign_as_provider(close, &o.key) {
            Ok(signed) => signed,
            Err(e) => {
                warn!(lease = %id, error = %e, "cannot sign an early close");
                return Ok(EarlyClose::NotNow);
            }
        };
        let peer = lease.terms().requester.peer_id();
        let claim = match o
            .network
            .request(peer, Request::Close(signed.clone()))
            .await
        {
            Ok(Response::Close(cosigned)) => {
                let accepted = CloseClaim::from_cosigned(cosigned)
                    .map_err(|e| e.to_string())
                    .and_then(|claim| {
                        if claim.cosigned().body() != signed.envelope().body() {
                            return Err("the countersigned close differs from the one sent".into());
                        }
                        let t = lease.terms();
                        claim
                            .verify(&t.requester, &t.provider)
                            .map_err(|e| e.to_string())?;
                        Ok(claim)
                    });
                match accepted {
                    Ok(claim) => claim,
                    Err(e) => {
                        warn!(lease = %id, error = %e, "bad countersignature on an early close");
                        return Ok(EarlyClose::NotNow);
                    }
                }
            }
            Ok(Response::Refused(reason)) => {
                warn!(lease = %id, %reason, "early close refused by the requester");
                return Ok(EarlyClose::NotNow);
            }
            Ok(other) => {
                warn!(lease = %id, ?other, "unexpected answer to an early close");
                return Ok(EarlyClose::NotNow);
            }
            Err(e) => {
                info!(lease = %id, error = %e, "early close not delivered");
                return Ok(EarlyClose::NotNow);
            }
        };
        match o.ledger.close_early(claim.cosigned()).await {
            Ok(closure) => Ok(EarlyClose::Closed(closure)),
            Err(LedgerError::LeaseClosed(_)) => Ok(EarlyClose::AlreadyClosed),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                warn!(lease = %id, error = %e, "the ledger refused an early close");
                self.log_event(id, RunEvent::SettlementFailed, &e.to_string())
                    .await;
                Ok(EarlyClose::NotNow)
            }
        }
    }
}
