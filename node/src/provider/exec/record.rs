//! What the executor keeps of a run. In memory the record holds the typed,
//! already-verified messages (the lease, the latest countersigned receipt,
//! the result manifest with its exact bytes); the store keeps their wire
//! bytes as hex in the JSON shape every earlier version wrote
//! ([`StoredRun`]), so runs stored before this record was typed still load.

use std::path::PathBuf;
use std::sync::Arc;

use agora_client::api::{ReceiptView, RunView};
use agora_protocol::{Amount, Lease, Manifest, ReceiptClaim, Timestamp, UsageReceipt};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The payload arrived; the runtime is starting it.
    Starting,
    /// The job runs.
    Running,
    /// It ended; settling.
    Ended,
    /// It ended and its lease is closed on the ledger: nothing is left to
    /// settle (the log may still be on its way to the requester).
    Closed,
}

impl Phase {
    /// The job still holds its GPUs.
    pub(super) fn holds_gpus(self) -> bool {
        matches!(self, Phase::Starting | Phase::Running)
    }

    /// The job is over.
    pub(super) fn ended(self) -> bool {
        matches!(self, Phase::Ended | Phase::Closed)
    }
}

/// A run's result manifest: the exact bytes the final receipt hashes, and
/// what they say.
#[derive(Debug)]
pub(super) struct Outputs {
    /// The encoded manifest.
    pub(super) bytes: Vec<u8>,
    /// The same, decoded.
    pub(super) manifest: Manifest,
}

impl Outputs {
    /// Encodes `manifest` once.
    pub(super) fn new(manifest: Manifest) -> Self {
        Self {
            bytes: manifest.encode(),
            manifest,
        }
    }
}

/// A run, as the executor keeps it.
#[derive(Debug, Clone)]
pub(super) struct RunRecord {
    /// The lease (both signatures verified).
    pub(super) lease: Lease,
    /// Phase.
    pub(super) phase: Phase,
    /// GPUs the job was pinned to.
    pub(super) gpu_indices: Vec<u32>,
    /// Started.
    pub(super) started_at: Option<Timestamp>,
    /// Ended.
    pub(super) ended_at: Option<Timestamp>,
    /// Exit status.
    pub(super) exit_code: Option<i32>,
    /// Why it ended, when not by exiting 0.
    pub(super) reason: Option<String>,
    /// Entries in the run's log.
    pub(super) log_seq: u64,
    /// The next entry the requester expects.
    pub(super) acked: u64,
    /// The result manifest (once ended).
    pub(super) manifest: Option<Arc<Outputs>>,
    /// The requester has the manifest.
    pub(super) manifest_delivered: bool,
    /// Highest receipt sequence signed.
    pub(super) receipt_seq: u64,
    /// The latest countersigned receipt (checked against the lease when it
    /// arrived).
    pub(super) countersigned: Option<ReceiptClaim>,
    /// When the latest countersignature arrived (or the run started).
    pub(super) countersigned_at: Option<Timestamp>,
    /// Paid on the ledger so far.
    pub(super) settled: Amount,
    /// Highest receipt sequence settled.
    pub(super) settled_seq: u64,
    /// Output directory.
    pub(super) output_dir: Option<PathBuf>,
}

const RESTARTED: &str = "the provider's node restarted while the job ran";

impl RunRecord {
    /// A run whose payload was just accepted.
    pub(super) fn new(lease: Lease, gpu_indices: Vec<u32>) -> Self {
        Self {
            lease,
            phase: Phase::Starting,
            gpu_indices,
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
            output_dir: None,
        }
    }

    /// The requester acknowledged every log entry.
    pub(super) fn all_acked(&self) -> bool {
        self.acked > self.log_seq
    }

    /// Nothing is left to do: the lease is closed and the requester has
    /// the whole log.
    pub(super) fn finished(&self) -> bool {
        self.phase == Phase::Closed && self.all_acked()
    }

    /// Marks a run that was starting or running when the node stopped as
    /// over (its process died with the node); says whether it was.
    pub(super) fn interrupt(&mut self, now: Timestamp) -> bool {
        if self.phase.ended() {
            return false;
        }
        self.phase = Phase::Ended;
        self.ended_at = Some(now);
        self.reason = Some(RESTARTED.into());
        true
    }

    /// Why [`Self::interrupt`] ended a run, for its log.
    pub(super) fn interrupted_reason() -> &'static str {
        RESTARTED
    }

    /// The run as the API shows it.
    pub(super) fn view(&self) -> RunView {
        let terms = self.lease.terms();
        RunView {
            lease_id: self.lease.id().to_string(),
            order_id: terms.order_id.to_string(),
            requester: terms.requester,
            state: match self.phase {
                Phase::Starting => "starting",
                Phase::Running => "running",
                Phase::Ended | Phase::Closed => "ended",
            }
            .into(),
            started_at: self.started_at,
            ended_at: self.ended_at,
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            receipt: self
                .countersigned
                .as_ref()
                .map(|c| receipt_view(c.receipt())),
            settled: self.settled,
            closed: self.phase == Phase::Closed,
        }
    }

    /// The shape the store keeps.
    pub(super) fn stored(&self) -> StoredRun {
        StoredRun {
            lease: hex::encode(self.lease.encode()),
            phase: match self.phase {
                Phase::Starting => StoredPhase::Starting,
                Phase::Running => StoredPhase::Running,
                Phase::Ended | Phase::Closed => StoredPhase::Ended,
            },
            gpu_indices: self.gpu_indices.clone(),
            started_at: self.started_at,
            ended_at: self.ended_at,
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            log_seq: self.log_seq,
            acked: self.acked,
            manifest: self.manifest.as_ref().map(|m| hex::encode(&m.bytes)),
            manifest_delivered: self.manifest_delivered,
            receipt_seq: self.receipt_seq,
            countersigned: self.countersigned.as_ref().map(|c| hex::encode(c.encode())),
            countersigned_at: self.countersigned_at,
            settled: self.settled,
            settled_seq: self.settled_seq,
            closed: self.phase == Phase::Closed,
            output_dir: self.output_dir.clone(),
        }
    }

    /// Decodes a stored run once. A lease that does not decode and verify
    /// loses the run; a receipt or manifest that does not decode is
    /// dropped with a warning, as reading it on use dropped it before.
    pub(super) fn restore(stored: StoredRun) -> Result<Self, String> {
        let lease = hex::decode(&stored.lease)
            .map_err(|e| e.to_string())
            .and_then(|b| Lease::decode(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("its lease: {e}"))?;
        let id = lease.id();
        let countersigned = stored.countersigned.and_then(|h| {
            hex::decode(&h)
                .map_err(|e| e.to_string())
                .and_then(|b| ReceiptClaim::decode(&b).map_err(|e| e.to_string()))
                .inspect_err(
                    |e| warn!(lease = %id, error = %e, "stored receipt unreadable; dropped"),
                )
                .ok()
        });
        let manifest = stored.manifest.and_then(|h| {
            hex::decode(&h)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    Manifest::decode(&bytes).map(|manifest| Outputs { bytes, manifest })
                })
                .inspect_err(
                    |e| warn!(lease = %id, error = %e, "stored manifest unreadable; dropped"),
                )
                .ok()
                .map(Arc::new)
        });
        let phase = match (stored.closed, stored.phase) {
            (true, _) => Phase::Closed,
            (false, StoredPhase::Starting) => Phase::Starting,
            (false, StoredPhase::Running) => Phase::Running,
            (false, StoredPhase::Ended) => Phase::Ended,
        };
        Ok(Self {
            lease,
            phase,
            gpu_indices: stored.gpu_indices,
            started_at: stored.started_at,
            ended_at: stored.ended_at,
            exit_code: stored.exit_code,
            reason: stored.reason,
            log_seq: stored.log_seq,
            acked: stored.acked,
            manifest,
            manifest_delivered: stored.manifest_delivered,
            receipt_seq: stored.receipt_seq,
            countersigned,
            countersigned_at: stored.countersigned_at,
            settled: stored.settled,
            settled_seq: stored.settled_seq,
            output_dir: stored.output_dir,
        })
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

/// The stored phase: settlement's end is the separate `closed` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StoredPhase {
    Starting,
    Running,
    Ended,
}

/// A run as the store keeps it: signed messages as hex of their wire
/// bytes. The field names are the store's format; do not rename them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredRun {
    lease: String,
    phase: StoredPhase,
    gpu_indices: Vec<u32>,
    started_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
    exit_code: Option<i32>,
    reason: Option<String>,
    log_seq: u64,
    acked: u64,
    manifest: Option<String>,
    manifest_delivered: bool,
    receipt_seq: u64,
    countersigned: Option<String>,
    countersigned_at: Option<Timestamp>,
    settled: Amount,
    settled_seq: u64,
    closed: bool,
    output_dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use agora_protocol::ManifestFile;
    use serde_json::json;

    use super::*;
    use crate::provider::exec::testing::{claim, lease, receipt};
    use crate::store::Store;

    fn manifest(lease: &Lease) -> Manifest {
        Manifest {
            lease_id: lease.id(),
            files: vec![ManifestFile {
                path: "out/result.txt".into(),
                size: 12,
                blake3: [7; 32],
            }],
            note: String::new(),
        }
    }

    /// A run in the JSON shape the store held before the record was typed:
    /// what `RunRecord` serialised to with its hex-string fields.
    fn old_json(
        lease: &Lease,
        claim: &ReceiptClaim,
        manifest: &Manifest,
        closed: bool,
    ) -> serde_json::Value {
        json!({
            "lease": hex::encode(lease.encode()),
            "phase": "ended",
            "gpu_indices": [0, 1],
            "started_at": 2_000,
            "ended_at": 62_000,
            "exit_code": 0,
            "reason": null,
            "log_seq": 5,
            "acked": 6,
            "manifest": hex::encode(manifest.encode()),
            "manifest_delivered": true,
            "receipt_seq": 3,
            "countersigned": hex::encode(claim.encode()),
            "countersigned_at": 61_000,
            "settled": 20_000,
            "settled_seq": 2,
            "closed": closed,
            "output_dir": "/jobs/x/out",
        })
    }

    #[test]
    fn a_run_stored_in_the_old_shape_restores_typed() {
        let (requester, provider, lease) = lease();
        let receipt = UsageReceipt {
            is_final: true,
            result_hash: Some(Manifest::hash(&manifest(&lease).encode())),
            exit_status: Some(0),
            ..receipt(&lease, 3, 120)
        };
        let claim = claim(&requester, &provider, &lease, receipt.clone());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = old_json(&lease, &claim, &manifest(&lease), false);
        store.put_run(&lease.id(), &old).unwrap();

        let stored: Vec<StoredRun> = store.runs().unwrap();
        assert_eq!(stored.len(), 1);
        let record = RunRecord::restore(stored.into_iter().next().unwrap()).unwrap();
        assert_eq!(record.lease, lease);
        assert_eq!(record.phase, Phase::Ended);
        assert_eq!(record.gpu_indices, vec![0, 1]);
        assert_eq!(record.started_at, Some(Timestamp(2_000)));
        assert_eq!(
            record.countersigned.as_ref().map(|c| c.receipt()),
            Some(&receipt)
        );
        let outputs = record.manifest.as_deref().unwrap();
        assert_eq!(outputs.manifest, manifest(&lease));
        assert_eq!(outputs.bytes, manifest(&lease).encode());
        assert_eq!(record.settled, Amount(20_000));
        assert_eq!(record.output_dir, Some(PathBuf::from("/jobs/x/out")));
        assert!(record.all_acked() && !record.finished());

        // Stored again, it is byte for byte the shape it was read from.
        assert_eq!(serde_json::to_value(record.stored()).unwrap(), old);
    }

    #[test]
    fn a_closed_run_restores_as_closed_and_stores_as_ended_and_closed() {
        let (requester, provider, lease) = lease();
        let claim = claim(&requester, &provider, &lease, receipt(&lease, 1, 60));
        let old = old_json(&lease, &claim, &manifest(&lease), true);
        let stored: StoredRun = serde_json::from_value(old.clone()).unwrap();
        let record = RunRecord::restore(stored).unwrap();
        assert_eq!(record.phase, Phase::Closed);
        assert!(record.finished());
        assert!(record.view().closed);
        assert_eq!(record.view().state, "ended");
        assert_eq!(serde_json::to_value(record.stored()).unwrap(), old);
    }

    #[test]
    fn an_unreadable_lease_loses_the_run_and_a_bad_receipt_is_dropped() {
        let (requester, provider, lease) = lease();
        let claim = claim(&requester, &provider, &lease, receipt(&lease, 1, 60));
        let mut old = old_json(&lease, &claim, &manifest(&lease), false);
        old["countersigned"] = json!("not hex");
        let record = RunRecord::restore(serde_json::from_value(old.clone()).unwrap()).unwrap();
        assert!(record.countersigned.is_none());
        old["lease"] = json!("00");
        assert!(RunRecord::restore(serde_json::from_value(old).unwrap()).is_err());
    }

    #[test]
    fn a_run_interrupted_by_a_restart_is_over_and_frees_its_gpus() {
        let (_, _, lease) = lease();
        let mut record = RunRecord::new(lease, vec![0, 1]);
        record.phase = Phase::Running;
        assert!(record.phase.holds_gpus());
        assert!(record.interrupt(Timestamp(9_000)));
        assert_eq!(record.phase, Phase::Ended);
        assert!(!record.phase.holds_gpus());
        assert_eq!(record.ended_at, Some(Timestamp(9_000)));
        assert_eq!(
            record.reason.as_deref(),
            Some(RunRecord::interrupted_reason())
        );
        // One that had ended is left as it was.
        assert!(!record.interrupt(Timestamp(10_000)));
        assert_eq!(record.ended_at, Some(Timestamp(9_000)));
    }
}
