//! Metering: every receipt interval the provider signs the next cumulative
//! [`UsageReceipt`] and asks the requester to countersign it; a requester
//! silent for an interval plus the grace gets its job stopped, so the
//! provider's risk is one interval. The final receipt carries the exit
//! status and the manifest's hash.

use std::time::Duration;

use agora_protocol::amount::cost;
use agora_protocol::{
    CoSigned, Lease, LeaseId, Manifest, ReceiptClaim, RunEvent, Signed, Timestamp, UsageReceipt,
};
use tracing::{info, warn};

use super::Executor;
use super::actor::Update;
use super::record::RunRecord;
use super::run::Stop;
use crate::clock::now;
use crate::network::{Request, Response};

impl Executor {
    /// Signs the next cumulative receipt and asks the requester to
    /// countersign it. The final receipt carries the exit status and the
    /// manifest's hash, and is offered `tries` times.
    pub(super) async fn meter(&self, id: LeaseId, is_final: bool, tries: u32) {
        let o = &self.inner.options;
        let Some(record) = self.record(id).await else {
            return;
        };
        let Some(receipt) = next_receipt(&record, now(), is_final) else {
            return;
        };
        let sequence = receipt.sequence;
        let signed = match ReceiptClaim::sign_as_provider(receipt, &o.key) {
            Ok(s) => s,
            Err(e) => {
                warn!(lease = %id, error = %e, "cannot sign a receipt");
                return;
            }
        };
        if !self.update(id, Update::ReceiptSigned { sequence }).await {
            return;
        }
        o.metrics.receipts_signed.inc();
        let lease = &record.lease;
        let peer = lease.terms().requester.peer_id();
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
                    match accept_countersigned(&cosigned, &signed, lease) {
                        Ok(claim) => {
                            o.metrics.countersigned("provider");
                            let update = Update::Countersigned {
                                claim: Box::new(claim),
                                at: now(),
                            };
                            if self.update(id, update).await {
                                let _ = o.store.flush();
                            }
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
                    self.log_event(id, RunEvent::ReceiptRefused, &reason).await;
                    return;
                }
                Ok(other) => warn!(lease = %id, ?other, "unexpected answer to a receipt"),
                Err(e) => info!(lease = %id, error = %e, "receipt not delivered"),
            }
        }
    }
}

/// The countersignature watchdog: the requester is silent when more than
/// an interval plus `grace_secs` passed since its last countersignature
/// (or since the run started). With neither, nothing is stale yet.
pub(super) fn silent(
    now: Timestamp,
    last: Option<Timestamp>,
    interval: Duration,
    grace_secs: u32,
) -> Option<Stop> {
    let grace = u64::from(grace_secs) * 1000;
    let limit = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(grace);
    let since = last.unwrap_or(now);
    (now.ms_since(since) > limit).then_some(Stop::RequesterSilent { secs: limit / 1000 })
}

/// The next cumulative receipt of a run at `now`, or `None` before the
/// job started (or if its price overflows). GPU-seconds run from the
/// start to `now` (to the end, for the final receipt), whole seconds
/// rounded down while it runs and up at the end, times the GPUs; never
/// past the lease and never below what the requester already
/// countersigned.
pub(super) fn next_receipt(
    record: &RunRecord,
    now: Timestamp,
    is_final: bool,
) -> Option<UsageReceipt> {
    let terms = record.lease.terms();
    let started = record.started_at?;
    let end = if is_final {
        record.ended_at.unwrap_or(now)
    } else {
        now
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
    let gpu_seconds = record
        .countersigned
        .as_ref()
        .map_or(gpu_seconds, |c| gpu_seconds.max(c.receipt().gpu_seconds));
    let amount = cost(terms.price_per_gpu_hour, gpu_seconds)?;
    Some(UsageReceipt {
        lease_id: record.lease.id(),
        sequence: record.receipt_seq + 1,
        gpu_seconds,
        cumulative_amount: amount,
        issued_at: now,
        is_final,
        result_hash: if is_final {
            record.manifest.as_ref().map(|m| Manifest::hash(&m.bytes))
        } else {
            None
        },
        exit_status: if is_final { record.exit_code } else { None },
    })
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

#[cfg(test)]
mod tests {
    use agora_protocol::{Amount, Keypair};

    use super::*;
    use crate::provider::exec::record::{Outputs, Phase};
    use crate::provider::exec::testing::{claim, lease, receipt};

    const SECOND: u64 = 1000;

    /// A run of the test lease (2 GPUs, 1 a GPU-second), started at 10 s.
    fn running() -> (Keypair, Keypair, RunRecord) {
        let (requester, provider, lease) = lease();
        let mut record = RunRecord::new(lease, vec![0, 1]);
        record.phase = Phase::Running;
        record.started_at = Some(Timestamp(10 * SECOND));
        record.countersigned_at = record.started_at;
        (requester, provider, record)
    }

    #[test]
    fn no_receipt_before_the_job_started() {
        let (_, _, mut record) = running();
        record.started_at = None;
        assert_eq!(next_receipt(&record, Timestamp(99 * SECOND), false), None);
    }

    #[test]
    fn a_running_receipt_counts_whole_seconds_down_times_the_gpus() {
        let (_, _, mut record) = running();
        record.receipt_seq = 4;
        let r = next_receipt(&record, Timestamp(40 * SECOND + 999), false).unwrap();
        assert_eq!(r.lease_id, record.lease.id());
        assert_eq!(r.sequence, 5);
        assert_eq!(r.gpu_seconds, 60);
        assert_eq!(r.cumulative_amount, Amount(60));
        assert_eq!(r.issued_at, Timestamp(40 * SECOND + 999));
        assert!(!r.is_final);
        assert_eq!((r.result_hash, r.exit_status), (None, None));
    }

    #[test]
    fn the_final_receipt_rounds_up_to_the_end_and_carries_exit_and_manifest() {
        let (_, _, mut record) = running();
        record.phase = Phase::Ended;
        record.ended_at = Some(Timestamp(40 * SECOND + 1));
        record.exit_code = Some(3);
        let outputs = Outputs::new(Manifest {
            lease_id: record.lease.id(),
            files: Vec::new(),
            note: String::new(),
        });
        let hash = Manifest::hash(&outputs.bytes);
        record.manifest = Some(outputs.into());
        // Issued later than the end: the end counts, not the issue time.
        let r = next_receipt(&record, Timestamp(100 * SECOND), true).unwrap();
        assert_eq!(r.gpu_seconds, 62);
        assert_eq!(r.issued_at, Timestamp(100 * SECOND));
        assert!(r.is_final);
        assert_eq!(r.result_hash, Some(hash));
        assert_eq!(r.exit_status, Some(3));
    }

    #[test]
    fn a_final_receipt_without_an_end_counts_to_now() {
        let (_, _, record) = running();
        let r = next_receipt(&record, Timestamp(12 * SECOND + 500), true).unwrap();
        assert_eq!(r.gpu_seconds, 6);
        assert_eq!(r.result_hash, None);
    }

    #[test]
    fn receipts_stop_at_the_lease_and_never_go_below_the_countersigned() {
        let (requester, provider, mut record) = running();
        // Far past the lease's hour: capped at 2 GPUs × 3600 s.
        let r = next_receipt(&record, Timestamp(10_000 * SECOND), false).unwrap();
        assert_eq!(r.gpu_seconds, 7200);
        // A clock that went back does not lower what was countersigned.
        let countersigned = receipt(&record.lease, 1, 100);
        record.countersigned = Some(claim(&requester, &provider, &record.lease, countersigned));
        let r = next_receipt(&record, Timestamp(20 * SECOND), false).unwrap();
        assert_eq!(r.gpu_seconds, 100);
        assert_eq!(r.cumulative_amount, Amount(100));
    }

    #[test]
    fn the_watchdog_stops_only_past_an_interval_plus_the_grace() {
        let interval = Duration::from_secs(30);
        let last = Some(Timestamp(100 * SECOND));
        let at = |ms| silent(Timestamp(ms), last, interval, 10);
        assert_eq!(at(100 * SECOND), None);
        assert_eq!(at(140 * SECOND), None);
        assert_eq!(
            at(140 * SECOND + 1),
            Some(Stop::RequesterSilent { secs: 40 })
        );
        // Before the last countersignature (a clock step back): not silent.
        assert_eq!(at(50 * SECOND), None);
        // Nothing to be silent since.
        assert_eq!(silent(Timestamp(1_000 * SECOND), None, interval, 10), None);
        // No grace: one interval.
        assert_eq!(
            silent(Timestamp(131 * SECOND), last, interval, 0),
            Some(Stop::RequesterSilent { secs: 30 })
        );
    }

    #[test]
    fn only_the_receipt_sent_countersigned_by_the_requester_is_accepted() {
        let (requester, provider, record) = running();
        let lease = &record.lease;
        let receipt = next_receipt(&record, Timestamp(40 * SECOND), false).unwrap();
        let signed = ReceiptClaim::sign_as_provider(receipt.clone(), &provider).unwrap();
        let good = ReceiptClaim::countersign(signed.envelope(), lease, &requester).unwrap();
        let claim = accept_countersigned(good.cosigned(), &signed, lease).unwrap();
        assert_eq!(claim.receipt(), &receipt);

        let other = UsageReceipt {
            gpu_seconds: 2,
            cumulative_amount: Amount(2),
            ..receipt
        };
        let other_signed = ReceiptClaim::sign_as_provider(other, &provider).unwrap();
        let other = ReceiptClaim::countersign(other_signed.envelope(), lease, &requester).unwrap();
        assert!(accept_countersigned(other.cosigned(), &signed, lease).is_err());
    }
}
