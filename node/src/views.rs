//! Every mapping from the node's domain records to the API's views, in one
//! place: a change of the API touches this file, never the store.

use agora_client::api::{
    BidView, DeclineView, GpuView, JobEvent, JobView, LeaseStatus, LeaseView, OfferView,
    OutputView, RunView, SettlementView,
};
use agora_protocol::matching::Score;
use agora_protocol::{Amount, Bid, Lease, Offer, Signed, Timestamp};

pub use crate::provider::exec::receipt_view;
use crate::provider::inventory::Gpu;
use crate::requester::JobRecord;

/// An offer.
pub fn offer_view(offer: &Signed<Offer>) -> OfferView {
    let o = offer.message();
    OfferView {
        id: o.id().to_string(),
        provider: o.provider,
        provider_peer: o.provider.peer_id().to_string(),
        slot: o.slot,
        sequence: o.sequence,
        gpu_model: o.gpu_model.clone(),
        vram_mib: o.vram_mib,
        compute_capability: o.compute_capability,
        fp32_mtflops: o.benchmark.fp32_mtflops,
        verified: o.verified(),
        gpu_total: o.gpu_total,
        gpu_free: o.gpu_free,
        price_per_gpu_hour: o.price_per_gpu_hour,
        region: o.region.clone(),
        jurisdiction: o.jurisdiction.clone(),
        energy: o.energy,
        simulated: o.simulated,
        runtimes: o.runtimes.clone(),
        network: o.network,
        limits: o.limits,
        created_at: o.created_at,
        expires_at: o.expires_at,
    }
}

/// A bid, as the requester received it.
pub fn bid_view(bid: &Bid, received_at: Timestamp) -> BidView {
    BidView {
        provider: bid.provider,
        slot: bid.slot,
        gpu_model: bid.gpu_model.clone(),
        gpu_count: bid.gpu_count,
        price_per_gpu_hour: bid.price_per_gpu_hour,
        fp32_mtflops: bid.fp32_mtflops,
        score: Score::new(bid.price_per_gpu_hour, bid.fp32_mtflops, 1000)
            .per_tflop_hour()
            .to_string(),
        received_at,
    }
}

/// A lease, with where its escrow stands.
pub fn lease_view(lease: &Lease, escrow_locked: bool, status: LeaseStatus) -> LeaseView {
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
        status,
        limits: t.limits,
    }
}

/// The status of a provider's lease from its run: open until the run's
/// lease is closed on the ledger, then closed or refunded by what it
/// settled. A lease whose payload never came stays open here (the
/// requester closes it).
pub fn provider_lease_status(lease: &Lease, run: Option<&RunView>) -> LeaseStatus {
    match run {
        Some(r) if r.closed => {
            LeaseStatus::of(true, true, lease.terms().escrow.saturating_sub(r.settled))
        }
        _ => LeaseStatus::Open,
    }
}

/// The status of a requester's lease, when its job has one: unfunded
/// until its escrow is locked, then open until closed or refunded.
pub fn requester_lease_status(job: &JobRecord) -> Option<LeaseStatus> {
    job.lease()?;
    let refunded = job.settlement.and_then(|s| s.refunded);
    Some(LeaseStatus::of(
        job.escrow_locked,
        refunded.is_some(),
        refunded.unwrap_or(Amount::ZERO),
    ))
}

/// A GPU of the provider's inventory.
pub fn gpu_view(g: &Gpu) -> GpuView {
    GpuView {
        index: g.index,
        uuid: g.uuid.clone(),
        model: g.model.clone(),
        vram_mib: g.vram_mib,
        compute_capability: g.compute_capability,
        power_limit_w: g.power_limit_w,
        simulated: g.simulated,
    }
}

/// A requester's job.
pub fn job_view(job: &JobRecord) -> JobView {
    JobView {
        id: job.id().to_string(),
        name: job.spec.name.clone(),
        state: job.state,
        reason: job.reason.clone(),
        submitted_at: job.submitted_at,
        offer: job.offer.clone(),
        spec: job.spec.clone(),
        bids: job
            .bids
            .iter()
            .map(|b| bid_view(b.bid.0.message(), b.at))
            .collect(),
        declines: job
            .declines
            .iter()
            .map(|d| DeclineView {
                provider: d.provider,
                reason: d.reason,
                detail: d.detail.clone(),
            })
            .collect(),
        lease: job
            .lease()
            .zip(requester_lease_status(job))
            .map(|(l, status)| lease_view(l, job.escrow_locked, status)),
        events: job
            .events
            .iter()
            .map(|e| JobEvent {
                at: e.at,
                event: e.kind.name().to_owned(),
                detail: e.detail.clone(),
            })
            .collect(),
        exit_code: job.exit_code,
        receipt: job.receipt().map(|c| receipt_view(c.receipt())),
        settlement: job.settlement.map(|s| SettlementView {
            escrow: s.escrow,
            settled: s.settled,
            last_sequence: s.last_sequence,
            refunded: s.refunded,
            closable_at: s.closable_at,
            ledger_ops: s.ops,
        }),
        outputs: job
            .manifest
            .as_ref()
            .map(|m| {
                m.0.manifest
                    .files
                    .iter()
                    .map(|f| OutputView {
                        path: f.path.clone(),
                        size: f.size,
                        blake3: hex::encode(f.blake3),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        results_fetched: job.results_fetched,
        log_seq: job.log_seq,
    }
}
