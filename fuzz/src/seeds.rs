//! Seed inputs: real encodings of valid messages, one small set per
//! target. `cargo run --example seeds` writes them to `corpus/<target>/`.

use agora_client::api::{JobSpec, SubmitJob};
use agora_protocol::{
    Amount, Benchmark, BenchmarkMethod, Bid, CloseClaim, CloseReason, Decline, DeclineReason,
    Energy, JobAction, JobControl, Lease, LeaseClose, LeaseTerms, Manifest, ManifestFile, Offer,
    OrderId, ReceiptClaim, RunEvent, RunFailure, SandboxLimits, Signed, Timestamp, UsageReceipt,
    WireMessage,
};

use crate::direct::{Request, Response};
use crate::order::{order_from_spec, payload_of};
use crate::wire::{Fetch, JobUpdate, LogEntry};
use crate::{provider_key, requester_key};
use agora_client::api::LogKind;
use agora_proto::Message;

/// One seed: its target, a file name, the bytes.
pub struct Seed {
    /// The fuzz target.
    pub target: &'static str,
    /// The file name in `corpus/<target>/`.
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
}

const SPEC: &str = r#"name = "train"
command = ["python3", "train.py"]
inputs = [{ path = "train.py", data_b64 = "cHJpbnQoMSkK" }]

[resources]
gpus = 1
gpu_model = "H100"
min_vram_gib = 80

[constraints]
region = "EU"
energy = "renewable"
allow_simulated = true

[market]
max_price_per_gpu_hour = "3.0"
max_duration_secs = 600
bid_window_ms = 1500
"#;

const SPEC_FULL: &str = r#"name = "all-keys"
runtime = "ray"
command = ["sh", "-c", "echo $X > $AGORA_OUTPUT/out.txt"]
env = { X = "1", Y = "two" }
inputs = [{ path = "data/a.bin", data_b64 = "AAEC" }, { path = "b.txt" }]

[resources]
gpus = 4
gpu_model = "a100"
min_vram_gib = 40
min_tflops = 19.5
min_compute_capability = 8.0
memory_mib = 2048
disk_mib = 4096

[constraints]
region = "US-EAST"
jurisdiction = "US"
energy = "mixed"
verified = true
allow_simulated = false
network = true
enforced_limits = true

[market]
max_price_per_gpu_hour = "0.000001"
max_duration_secs = 86400
bid_window_ms = 100
"#;

const SPEC_MINIMAL: &str = r#"command = ["true"]
[resources]
gpus = 1
[market]
max_price_per_gpu_hour = "1"
max_duration_secs = 1
"#;

const QUERIES: &[&str] = &[
    "",
    "gpu=H100 vram>=80 count>=2 price<=2.5 tflops>=300 region=EU energy=renewable verified",
    "tflop_price<0.01 bandwidth>=2000 cc>=9.0 !simulated",
    "region=\"US EAST\" jurisdiction!=CN runtime~ra provider~ab12",
    "gpu~\"rtx \\\"4090\\\"\" total>1 simulated !verified",
];

fn spec(text: &str) -> JobSpec {
    agora_client::spec::parse(text, std::path::Path::new("seed.toml")).expect("seed spec parses")
}

fn offer() -> Offer {
    Offer {
        limits: SandboxLimits::default(),
        network: false,
        provider: provider_key().public(),
        slot: 0,
        sequence: 1,
        gpu_model: "H100".into(),
        vram_mib: 80 * 1024,
        compute_capability: 90,
        benchmark: Benchmark {
            fp32_mtflops: 60_000,
            fp16_mtflops: 0,
            memory_bandwidth_mbps: 3_000_000,
            method: BenchmarkMethod::Measured,
            method_detail: "bench".into(),
            measured_at: Timestamp(0),
        },
        gpu_total: 8,
        gpu_free: 4,
        price_per_gpu_hour: Amount(2_000_000),
        region: "EU".into(),
        jurisdiction: Some("DE".into()),
        energy: Energy::Renewable,
        simulated: false,
        created_at: Timestamp(1_000),
        expires_at: Timestamp(3_600_000),
        runtimes: vec!["process".into(), "ray".into()],
    }
}

fn terms(order_id: OrderId) -> LeaseTerms {
    let price = Amount(3_000_000);
    LeaseTerms {
        order_id,
        requester: requester_key().public(),
        provider: provider_key().public(),
        slot: 0,
        gpu_model: "H100".into(),
        gpu_count: 1,
        price_per_gpu_hour: price,
        max_duration_secs: 600,
        receipt_interval_secs: 10,
        starts_at: Timestamp(10_000),
        escrow: LeaseTerms::required_escrow(price, 1, 600).expect("small escrow"),
        simulated: true,
        limits: SandboxLimits::default(),
    }
}

fn sign<T: WireMessage>(message: T, as_provider: bool) -> Signed<T> {
    let key = if as_provider {
        provider_key()
    } else {
        requester_key()
    };
    Signed::sign(message, key).expect("the seed names its signer")
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, data: Vec<u8>| {
        out.push(Seed {
            target,
            name: name.to_string(),
            data,
        });
    };

    let specs = [
        ("readme", spec(SPEC)),
        ("full", spec(SPEC_FULL)),
        ("minimal", spec(SPEC_MINIMAL)),
    ];
    let order = order_from_spec(
        &specs[0].1,
        &requester_key().public(),
        [9; 16],
        Timestamp(1_000),
    )
    .expect("seed order");
    let order_full = order_from_spec(
        &specs[1].1,
        &requester_key().public(),
        [8; 16],
        Timestamp(1_000),
    )
    .expect("seed order");
    let signed_order = sign(order.clone(), false);
    let signed_order_full = sign(order_full, false);
    let order_id = order.id();
    let signed_offer = sign(offer(), true);
    let mut offer_sim = offer();
    offer_sim.simulated = true;
    offer_sim.limits = SandboxLimits {
        pids: 256,
        memory_mib: 4096,
        disk_mib: 8192,
        tmp_mib: 512,
        cpu_weight: 100,
        ..SandboxLimits::default()
    };
    offer_sim.jurisdiction = None;
    let signed_offer_sim = sign(offer_sim, true);
    let bid = sign(
        Bid {
            order_id,
            provider: provider_key().public(),
            slot: 0,
            price_per_gpu_hour: Amount(2_500_000),
            gpu_count: 1,
            gpu_model: "H100".into(),
            fp32_mtflops: 60_000,
            hold_until: Timestamp(20_000),
            created_at: Timestamp(2_000),
            simulated: true,
            limits: SandboxLimits::default(),
        },
        true,
    );
    let decline = sign(
        Decline {
            order_id,
            provider: provider_key().public(),
            reason: DeclineReason::Price,
            detail: "price 3.0 is below 3.5".into(),
            created_at: Timestamp(2_000),
        },
        true,
    );
    let proposal = sign(terms(order_id), false);
    let lease = Lease::countersign(&proposal, provider_key()).expect("seed lease");
    let lease_id = lease.id();
    let receipt = ReceiptClaim::sign_as_provider(
        UsageReceipt {
            lease_id,
            sequence: 1,
            gpu_seconds: 10,
            cumulative_amount: Amount(8_333),
            issued_at: Timestamp(20_000),
            is_final: false,
            result_hash: None,
            exit_status: None,
        },
        provider_key(),
    )
    .expect("seed receipt");
    let final_receipt = ReceiptClaim::sign_as_provider(
        UsageReceipt {
            lease_id,
            sequence: 2,
            gpu_seconds: 30,
            cumulative_amount: Amount(25_000),
            issued_at: Timestamp(40_000),
            is_final: true,
            result_hash: Some([5; 32]),
            exit_status: Some(0),
        },
        provider_key(),
    )
    .expect("seed receipt");
    let receipt_claim =
        ReceiptClaim::countersign(receipt.envelope(), &lease, requester_key()).expect("claim");
    let final_claim = ReceiptClaim::countersign(final_receipt.envelope(), &lease, requester_key())
        .expect("claim");
    let close = CloseClaim::sign_as_provider(
        LeaseClose::new(
            &lease,
            20,
            CloseReason::ProviderRestarted,
            Timestamp(30_000),
        ),
        provider_key(),
    )
    .expect("seed close");
    let close_claim =
        CloseClaim::countersign(close.envelope(), &lease, requester_key()).expect("claim");
    let payload = sign(
        payload_of(&specs[0].1, lease_id).expect("seed payload"),
        false,
    );
    let payload_full = sign(
        payload_of(&specs[1].1, lease_id).expect("seed payload"),
        false,
    );
    let control = sign(
        JobControl {
            lease_id,
            action: JobAction::Cancel,
            issued_at: Timestamp(25_000),
        },
        false,
    );

    // Envelopes: every kind, signed.
    let envelopes = [
        ("offer", signed_offer.encode()),
        ("offer_simulated", signed_offer_sim.encode()),
        ("order", signed_order.encode()),
        ("order_full", signed_order_full.encode()),
        ("bid", bid.encode()),
        ("decline", decline.encode()),
        ("lease_terms", proposal.encode()),
        ("receipt", receipt.encode()),
        ("receipt_final", final_receipt.encode()),
        ("job_payload", payload.encode()),
        ("job_control", control.encode()),
        ("lease_close", close.encode()),
    ];
    for (name, data) in &envelopes {
        add("envelope", name, data.clone());
    }

    // Bodies, behind the kind selector byte (its index in Kind::ALL).
    let bodies = [
        ("offer", signed_offer.envelope().clone()),
        ("offer_simulated", signed_offer_sim.envelope().clone()),
        ("order", signed_order.envelope().clone()),
        ("order_full", signed_order_full.envelope().clone()),
        ("bid", bid.envelope().clone()),
        ("decline", decline.envelope().clone()),
        ("lease_terms", proposal.envelope().clone()),
        ("receipt", receipt.envelope().clone()),
        ("receipt_final", final_receipt.envelope().clone()),
        ("job_payload", payload.envelope().clone()),
        ("job_control", control.envelope().clone()),
        ("lease_close", close.envelope().clone()),
    ];
    for (name, envelope) in &bodies {
        let selector = agora_protocol::Kind::ALL
            .iter()
            .position(|k| *k == envelope.kind())
            .expect("every kind is in ALL") as u8;
        let mut data = vec![selector];
        data.extend_from_slice(envelope.body());
        add("message", name, data);
    }
    add("job_payload", "readme", payload.envelope().body().to_vec());
    add(
        "job_payload",
        "full",
        payload_full.envelope().body().to_vec(),
    );

    // Co-signed: a lease, receipts, a close.
    add("cosigned", "lease", lease.encode());
    add("cosigned", "receipt", receipt_claim.encode());
    add("cosigned", "receipt_final", final_claim.encode());
    add("cosigned", "close", close_claim.encode());

    // Manifests and run events.
    let manifest = Manifest {
        lease_id,
        files: vec![
            ManifestFile {
                path: "out.txt".into(),
                size: 12,
                blake3: [3; 32],
            },
            ManifestFile {
                path: "logs/run/ü.log".into(),
                size: 0,
                blake3: [4; 32],
            },
        ],
        note: "outputs truncated: é".into(),
    };
    let empty_manifest = Manifest {
        lease_id,
        files: vec![],
        note: String::new(),
    };
    add("manifest", "two_files", manifest.encode());
    add("manifest", "empty", empty_manifest.encode());
    let events = [
        ("accepted", RunEvent::Accepted),
        ("started", RunEvent::Started),
        ("exited", RunEvent::Exited { code: 3 }),
        (
            "failed_signal",
            RunEvent::Failed {
                failure: RunFailure::Signal { signal: 9 },
            },
        ),
        (
            "failed_limit",
            RunEvent::Failed {
                failure: RunFailure::Limit {
                    limit: agora_protocol::run::SandboxLimit::Memory,
                },
            },
        ),
        (
            "failed_time",
            RunEvent::Failed {
                failure: RunFailure::TimeLimit,
            },
        ),
        ("cancelled", RunEvent::Cancelled),
        ("settled", RunEvent::Settled),
        ("closed", RunEvent::Closed),
    ];
    for (name, event) in &events {
        add("run_event", name, event.to_proto().encode_to_vec());
    }

    // Direct protocol: every request and response.
    let update = JobUpdate {
        lease_id,
        entries: vec![
            LogEntry {
                seq: 1,
                at: Timestamp(11_000),
                kind: LogKind::Event,
                event: Some(RunEvent::Started),
                data: b"started".to_vec(),
            },
            LogEntry {
                seq: 2,
                at: Timestamp(12_000),
                kind: LogKind::Stdout,
                event: None,
                data: b"epoch 1\n".to_vec(),
            },
            LogEntry {
                seq: 3,
                at: Timestamp(13_000),
                kind: LogKind::Stderr,
                event: None,
                data: b"warning\n".to_vec(),
            },
            LogEntry {
                seq: 4,
                at: Timestamp(14_000),
                kind: LogKind::Event,
                event: Some(RunEvent::Exited { code: 0 }),
                data: vec![],
            },
        ],
        manifest: Some(manifest.encode()),
    };
    let requests = [
        ("bid", Request::Bid(bid.clone())),
        ("decline", Request::Decline(decline.clone())),
        ("lease_proposal", Request::LeaseProposal(proposal.clone())),
        ("job_payload", Request::JobPayload(payload.clone())),
        ("job_control", Request::JobControl(control.clone())),
        ("receipt", Request::Receipt(receipt.clone())),
        ("close", Request::Close(close.clone())),
        ("update", Request::Update(update)),
        (
            "fetch",
            Request::Fetch(Fetch {
                lease_id,
                path: "out.txt".into(),
                offset: 4,
                max_len: 1024,
            }),
        ),
    ];
    for (name, request) in &requests {
        add("direct_request", name, request.encode());
    }
    let responses = [
        ("ack", Response::Ack),
        ("lease", Response::Lease(lease.cosigned().clone())),
        ("refused", Response::Refused("no capacity".into())),
        ("retry", Response::Retry("overloaded: retry".into())),
        (
            "receipt",
            Response::Receipt(receipt_claim.cosigned().clone()),
        ),
        ("close", Response::Close(close_claim.cosigned().clone())),
        ("update_ack", Response::UpdateAck(5)),
        (
            "chunk",
            Response::Chunk {
                data: b"hello".to_vec(),
                size: 12,
            },
        ),
    ];
    for (name, response) in &responses {
        add("direct_response", name, response.encode());
    }

    // Text: queries, job specs, API bodies.
    for (i, q) in QUERIES.iter().enumerate() {
        add("query", &format!("q{i}"), q.as_bytes().to_vec());
    }
    add("job_spec", "readme", SPEC.as_bytes().to_vec());
    add("job_spec", "full", SPEC_FULL.as_bytes().to_vec());
    add("job_spec", "minimal", SPEC_MINIMAL.as_bytes().to_vec());
    for (name, spec) in &specs {
        let submit = SubmitJob {
            spec: spec.clone(),
            offer: None,
        };
        let mut data = vec![0];
        data.extend(serde_json::to_vec(&submit).expect("a spec serializes"));
        add("api_body", &format!("submit_{name}"), data);
    }
    let mut instant = vec![0];
    instant.extend(
        serde_json::to_vec(&SubmitJob {
            spec: specs[2].1.clone(),
            offer: Some(signed_offer.message().id().to_string()),
        })
        .expect("a spec serializes"),
    );
    add("api_body", "submit_instant", instant);
    add("api_body", "deposit", b"\x01{\"amount\":\"2.5\"}".to_vec());
    add(
        "api_body",
        "deposit_units",
        b"\x01{\"amount\":2500000}".to_vec(),
    );
    let streams: [(&str, &[u8]); 4] = [
        (
            "job_events",
            b"\x04: keep-alive\n\nid: 1\nevent: job\ndata: {\"id\":\"ab\",\"state\":\"bidding\"}\n\n",
        ),
        (
            "crlf_multiline",
            b"\x07\xEF\xBB\xBFevent: log\r\ndata: line one\r\ndata:line two\r\nid:2\r\n\r\n",
        ),
        ("lone_cr", b"\x01data: a\rdata: b\r\rid\r\r"),
        ("no_field_value", b"\x0fdata\n\nevent\ndata: \xc3\xa9\xff\n\n"),
    ];
    for (name, stream) in streams {
        add("sse", name, stream.to_vec());
    }
    out
}
