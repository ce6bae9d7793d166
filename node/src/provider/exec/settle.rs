//! Settlement and close: the latest countersigned receipt is settled once
//! — retried while the ledger is unreachable — and the lease closed, so a
//! lease costs three ledger operations (lock, settle, close) however long
//! it ran. A run that ended without a countersigned final receipt closes
//! early by a close both parties sign ([`super::close`]), or, when the
//! requester does not countersign one, once the ledger's grace ran out.

use std::time::Duration;

use agora_protocol::{Amount, LeaseId, LedgerError, RunEvent};
use tracing::{info, warn};

use super::Executor;
use super::actor::Update;
use super::close::{self, EARLY_CLOSE_TRIES, EarlyClose};
use super::record::Phase;
use crate::clock::now;

impl Executor {
    /// Settles the latest countersigned receipt once (retrying while the
    /// ledger is unreachable), then closes the lease: at once when the
    /// final receipt settled, else when the ledger allows it.
    pub(super) async fn settle(&self, id: LeaseId) {
        let o = &self.inner.options;
        let mut backoff = Duration::from_millis(500);
        let mut early_tries = 0;
        loop {
            let Some(record) = self.record(id).await else {
                return;
            };
            if record.phase == Phase::Closed {
                return;
            }
            let claim = record.countersigned.as_ref();
            let pending = claim.filter(|c| c.receipt().sequence > record.settled_seq);
            let result: Result<bool, LedgerError> = match pending {
                Some(claim) => match o.ledger.settle(claim.cosigned()).await {
                    Ok(s) => {
                        let update = Update::Settled {
                            settled: s.settled,
                            sequence: s.last_sequence.max(claim.receipt().sequence),
                        };
                        if !self.update(id, update).await {
                            return;
                        }
                        let _ = o.store.flush();
                        let waited = record.countersigned_at.map_or(0, |at| now().ms_since(at));
                        o.metrics.settled(Some(waited as f64 / 1000.0));
                        self.log_event(
                            id,
                            RunEvent::Settled,
                            &format!(
                                "{} paid, {} in all (receipt #{})",
                                s.paid, s.settled, s.last_sequence
                            ),
                        )
                        .await;
                        info!(lease = %id, paid = %s.paid, settled = %s.settled, "settled");
                        Ok(false)
                    }
                    Err(e) => Err(e),
                },
                None => {
                    // Our own final receipt settled: closable without a read.
                    let final_settled = claim.is_some_and(|c| c.receipt().is_final);
                    let closable = final_settled
                        || match (o.ledger.escrow(&id).await, o.ledger.now().await) {
                            // Closed already (close answers LeaseClosed), or
                            // the one closability rule.
                            (Ok(Some(state)), Ok(chain_now)) => {
                                state.closed() || state.closable(chain_now)
                            }
                            (Ok(None), _) => {
                                // Never locked: nothing to settle or close.
                                self.mark_closed(id, Some(Amount::ZERO)).await;
                                return;
                            }
                            _ => false,
                        };
                    if closable {
                        match o.ledger.close(&id).await {
                            Ok(c) => {
                                self.mark_closed(id, Some(c.settled)).await;
                                self.log_event(
                                    id,
                                    RunEvent::Closed,
                                    &format!(
                                        "lease closed: {} settled, {} refunded",
                                        c.settled, c.refunded
                                    ),
                                )
                                .await;
                                return;
                            }
                            Err(LedgerError::LeaseClosed(_)) => {
                                self.mark_closed(id, None).await;
                                return;
                            }
                            Err(e) => Err(e),
                        }
                    } else if early_tries < EARLY_CLOSE_TRIES && !final_settled {
                        early_tries += 1;
                        match self.close_early(id, &record).await {
                            Ok(EarlyClose::Closed(c)) => {
                                let sequence = claim
                                    .map_or(0, |c| c.receipt().sequence)
                                    .max(record.settled_seq);
                                let update = Update::Settled {
                                    settled: c.settled,
                                    sequence,
                                };
                                self.update(id, update).await;
                                self.mark_closed(id, Some(c.settled)).await;
                                let _ = o.store.flush();
                                self.log_event(
                                    id,
                                    RunEvent::Closed,
                                    &format!(
                                        "lease closed early ({}): {} settled, {} refunded",
                                        close::reason_of(&record),
                                        c.settled,
                                        c.refunded
                                    ),
                                )
                                .await;
                                info!(lease = %id, settled = %c.settled, refunded = %c.refunded, "closed early");
                                return;
                            }
                            Ok(EarlyClose::AlreadyClosed) => {
                                self.mark_closed(id, None).await;
                                return;
                            }
                            Ok(EarlyClose::NotNow) => {
                                backoff = Duration::from_secs(2 << early_tries.min(4));
                                Ok(true)
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
                    self.mark_closed(id, None).await;
                    self.log_event(
                        id,
                        RunEvent::Closed,
                        "the lease was closed by the requester",
                    )
                    .await;
                    return;
                }
                Err(e) => {
                    o.metrics.settled(None);
                    warn!(lease = %id, error = %e, "settlement refused");
                    self.log_event(id, RunEvent::SettlementFailed, &e.to_string())
                        .await;
                    return;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = o.cancel.cancelled() => return,
            }
        }
    }

    /// The lease is closed on the ledger; stored, not flushed.
    /// The lease is closed on the ledger. What it paid in all — `settled`
    /// as the close answered it, else read from the ledger — goes into the
    /// record first when it is more than the record holds: a close that
    /// landed while this node was killed, or that the requester submitted,
    /// paid this provider, and its earnings must say so.
    async fn mark_closed(&self, id: LeaseId, settled: Option<Amount>) {
        let settled = match settled {
            Some(settled) => Some(settled),
            None => match self.inner.options.ledger.escrow(&id).await {
                Ok(state) => state.map(|s| s.settled),
                Err(e) => {
                    warn!(lease = %id, error = %e, "closed, but its settled total could not be read");
                    None
                }
            },
        };
        if let (Some(settled), Some(record)) = (settled, self.record(id).await)
            && settled > record.settled
        {
            let update = Update::Settled {
                settled,
                sequence: record.settled_seq,
            };
            self.update(id, update).await;
        }
        self.update(id, Update::Closed).await;
    }
}
