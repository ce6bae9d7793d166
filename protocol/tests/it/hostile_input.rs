//! Peers' bytes are hostile: every decoder returns an error, never panics,
//! and a tampered message never decodes into something else.

use agora_protocol::amount::cost;
use agora_protocol::lease::LeaseTerms;
use agora_protocol::{
    Amount, Benchmark, BenchmarkMethod, CoSigned, Energy, Keypair, Lease, Offer, OrderId,
    ReceiptClaim, Signed, SignedEnvelope, Timestamp, UsageReceipt,
};
use proptest::prelude::*;

fn offer(key: &Keypair) -> Offer {
    Offer {
        limits: agora_protocol::SandboxLimits::default(),
        network: false,
        provider: key.public(),
        slot: 3,
        sequence: 7,
        gpu_model: "A100-SXM4-80GB".into(),
        vram_mib: 81_920,
        compute_capability: 80,
        benchmark: Benchmark {
            fp32_mtflops: 19_500,
            fp16_mtflops: 312_000,
            memory_bandwidth_mbps: 2_039_000,
            method: BenchmarkMethod::Measured,
            method_detail: "sgemm 8192".into(),
            measured_at: Timestamp(5),
        },
        gpu_total: 4,
        gpu_free: 2,
        price_per_gpu_hour: Amount(1_500_000),
        region: "EU".into(),
        jurisdiction: Some("FR".into()),
        energy: Energy::Mixed,
        simulated: false,
        created_at: Timestamp(1_000),
        expires_at: Timestamp(100_000),
        runtimes: vec!["process".into(), "ray".into()],
    }
}

fn lease(requester: &Keypair, provider: &Keypair) -> Lease {
    let price = Amount(2_000_000);
    let terms = LeaseTerms {
        limits: agora_protocol::SandboxLimits::default(),
        order_id: OrderId([4; 32]),
        requester: requester.public(),
        provider: provider.public(),
        slot: 0,
        gpu_model: "H100".into(),
        gpu_count: 1,
        price_per_gpu_hour: price,
        max_duration_secs: 3600,
        receipt_interval_secs: 30,
        starts_at: Timestamp(50),
        escrow: LeaseTerms::required_escrow(price, 1, 3600).unwrap(),
        simulated: false,
    };
    Lease::countersign(&Signed::sign(terms, requester).unwrap(), provider).unwrap()
}

fn receipt_bytes(requester: &Keypair, provider: &Keypair, lease: &Lease) -> Vec<u8> {
    let receipt = UsageReceipt {
        lease_id: lease.id(),
        sequence: 1,
        gpu_seconds: 30,
        cumulative_amount: cost(lease.terms().price_per_gpu_hour, 30).unwrap(),
        issued_at: Timestamp(80),
        is_final: false,
        result_hash: None,
        exit_status: None,
    };
    let signed = ReceiptClaim::sign_as_provider(receipt, provider).unwrap();
    ReceiptClaim::countersign(signed.envelope(), lease, requester)
        .unwrap()
        .encode()
}

/// Every decoder on the same bytes; none may panic.
fn decode_all(bytes: &[u8]) {
    let _ = SignedEnvelope::decode(bytes);
    let _ = CoSigned::decode(bytes);
    let _ = Signed::<Offer>::decode(bytes);
    let _ = Signed::<agora_protocol::Order>::decode(bytes);
    let _ = Signed::<agora_protocol::Bid>::decode(bytes);
    let _ = Signed::<agora_protocol::Decline>::decode(bytes);
    let _ = Signed::<agora_protocol::JobPayload>::decode(bytes);
    let _ = Signed::<agora_protocol::JobControl>::decode(bytes);
    let _ = Lease::decode(bytes);
    let _ = ReceiptClaim::decode(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_all(&bytes);
    }

    #[test]
    fn a_flipped_bit_never_yields_a_different_offer(bit in 0usize..4096) {
        let key = Keypair::from_seed(&[1; 32]);
        let original = Signed::sign(offer(&key), &key).unwrap();
        let mut bytes = original.encode();
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        decode_all(&bytes);
        if let Ok(decoded) = Signed::<Offer>::decode(&bytes) {
            prop_assert_eq!(decoded.message(), original.message());
        }
    }

    #[test]
    fn a_flipped_bit_never_yields_a_different_lease_or_receipt(bit in 0usize..8192) {
        let requester = Keypair::from_seed(&[2; 32]);
        let provider = Keypair::from_seed(&[3; 32]);
        let lease = lease(&requester, &provider);
        let mut bytes = lease.encode();
        let b = bit % (bytes.len() * 8);
        bytes[b / 8] ^= 1 << (b % 8);
        if let Ok(decoded) = Lease::decode(&bytes) {
            prop_assert_eq!(decoded.terms(), lease.terms());
        }
        let original = receipt_bytes(&requester, &provider, &lease);
        let mut bytes = original.clone();
        let b = bit % (bytes.len() * 8);
        bytes[b / 8] ^= 1 << (b % 8);
        if let Ok(claim) = ReceiptClaim::decode(&bytes)
            && claim.verify(lease.terms()).is_ok()
        {
            let good = ReceiptClaim::decode(&original).unwrap();
            prop_assert_eq!(claim.receipt(), good.receipt());
        }
    }
}

#[test]
fn a_receipt_signed_only_by_the_provider_is_not_a_claim() {
    let requester = Keypair::from_seed(&[2; 32]);
    let provider = Keypair::from_seed(&[3; 32]);
    let lease = lease(&requester, &provider);
    let bytes = receipt_bytes(&requester, &provider, &lease);
    let mut raw = ReceiptClaim::decode(&bytes).unwrap().cosigned().to_proto();
    // The provider signs in the payer's place: refused.
    raw.requester_signature = raw.provider_signature.clone();
    let claim = ReceiptClaim::from_cosigned(CoSigned::from_proto(raw).unwrap()).unwrap();
    assert!(claim.verify(lease.terms()).is_err());
}
