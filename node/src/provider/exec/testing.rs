//! Leases, receipts and countersignatures for the executor's unit tests.

use agora_protocol::amount::cost;
use agora_protocol::{
    Amount, Keypair, Lease, LeaseTerms, OrderId, ReceiptClaim, Signed, Timestamp, UsageReceipt,
};

/// A lease between two fixed keys, returned as (requester, provider,
/// lease): 2 GPUs for an hour at 3,600 a GPU-hour (1 a GPU-second),
/// receipts every 30 s.
pub(super) fn lease() -> (Keypair, Keypair, Lease) {
    lease_for(OrderId([4; 32]))
}

/// [`lease`] for another order (so another lease id).
pub(super) fn lease_for(order_id: OrderId) -> (Keypair, Keypair, Lease) {
    let requester = Keypair::from_seed(&[1; 32]);
    let provider = Keypair::from_seed(&[2; 32]);
    let price = Amount(3_600);
    let terms = LeaseTerms {
        limits: agora_protocol::SandboxLimits::default(),
        order_id,
        requester: requester.public(),
        provider: provider.public(),
        slot: 0,
        gpu_model: "H100".into(),
        gpu_count: 2,
        price_per_gpu_hour: price,
        max_duration_secs: 3600,
        receipt_interval_secs: 30,
        starts_at: Timestamp(1_000),
        escrow: LeaseTerms::required_escrow(price, 2, 3600).unwrap(),
        simulated: false,
    };
    let lease = Lease::countersign(&Signed::sign(terms, &requester).unwrap(), &provider).unwrap();
    (requester, provider, lease)
}

/// A running receipt of `lease`, priced by the one cost formula.
pub(super) fn receipt(lease: &Lease, sequence: u64, gpu_seconds: u64) -> UsageReceipt {
    UsageReceipt {
        lease_id: lease.id(),
        sequence,
        gpu_seconds,
        cumulative_amount: cost(lease.terms().price_per_gpu_hour, gpu_seconds).unwrap(),
        issued_at: Timestamp(60_000),
        is_final: false,
        result_hash: None,
        exit_status: None,
    }
}

/// `receipt` signed by the provider and countersigned by the requester.
pub(super) fn claim(
    requester: &Keypair,
    provider: &Keypair,
    lease: &Lease,
    receipt: UsageReceipt,
) -> ReceiptClaim {
    let signed = ReceiptClaim::sign_as_provider(receipt, provider).unwrap();
    ReceiptClaim::countersign(signed.envelope(), lease, requester).unwrap()
}
