//! The checks the fuzz targets run, one function per decoder a peer or a
//! client reaches, and the seed inputs of their corpora ([`seeds`]).
//!
//! Each check decodes untrusted bytes the way the node or the CLI does and,
//! where the decoder accepts them, asserts more than "no panic": the value
//! re-encodes into bytes that decode to the same value, and size bounds
//! hold. A failed assertion aborts the fuzzer like a panic does.
//!
//! The node's direct-protocol messages and its job-spec checks are the
//! node's own source files, compiled here as they are (and their unit
//! tests with them: `cargo test --manifest-path fuzz/Cargo.toml --lib`).
//! The node crate itself links libp2p, alloy and sled, which would cost CI
//! minutes to build with coverage instrumentation for no extra coverage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Debug;
use std::path::Path;
use std::sync::LazyLock;

use agora_client::sse::{SseError, SseEvent, SseParser};
use agora_proto::{Message, v1 as pb};
use agora_protocol::{
    Bid, CloseClaim, CoSigned, Decline, JobControl, JobPayload, Keypair, Kind, Lease, LeaseClose,
    LeaseTerms, Offer, Order, PublicKey, Query, ReceiptClaim, RunEvent, Signed, SignedEnvelope,
    Timestamp, UsageReceipt, WireMessage,
};

pub mod seeds;

// The node's decoders, from the node crate's own files (`direct.rs` finds
// `wire.rs` as `super::wire`, so both sit at the crate root).

/// `node/src/network/wire.rs`: log updates, fetches, manifests.
#[path = "../../node/src/network/wire.rs"]
pub mod wire;

/// `node/src/network/direct.rs`: direct-protocol requests and responses.
#[path = "../../node/src/network/direct.rs"]
pub mod direct;

/// `node/src/requester/order.rs`: a job spec's checks, before signing.
#[path = "../../node/src/requester/order.rs"]
pub mod order;

use direct::{Request, Response};

static REQUESTER: LazyLock<Keypair> = LazyLock::new(|| Keypair::from_seed(&[1; 32]));
static PROVIDER: LazyLock<Keypair> = LazyLock::new(|| Keypair::from_seed(&[2; 32]));

/// The key the seeds' requester signs with.
pub fn requester_key() -> &'static Keypair {
    &REQUESTER
}

/// The key the seeds' provider signs with.
pub fn provider_key() -> &'static Keypair {
    &PROVIDER
}

fn kind_proto(kind: Kind) -> pb::Kind {
    match kind {
        Kind::Offer => pb::Kind::Offer,
        Kind::Order => pb::Kind::Order,
        Kind::Bid => pb::Kind::Bid,
        Kind::Decline => pb::Kind::Decline,
        Kind::LeaseTerms => pb::Kind::LeaseTerms,
        Kind::UsageReceipt => pb::Kind::UsageReceipt,
        Kind::JobPayload => pb::Kind::JobPayload,
        Kind::JobControl => pb::Kind::JobControl,
        Kind::LeaseClose => pb::Kind::LeaseClose,
    }
}

/// An envelope of `kind` around `body` whose signature is not checked: the
/// path a batch-verified envelope takes ([`Signed::from_verified_envelope`]).
fn unverified(kind: Kind, body: &[u8], signer: &PublicKey) -> Option<SignedEnvelope> {
    SignedEnvelope::from_proto(pb::SignedEnvelope {
        kind: kind_proto(kind) as i32,
        body: body.to_vec(),
        signer: signer.to_vec(),
        signature: vec![0; 64],
    })
    .ok()
}

/// A validated message's own encoding validates to the same message.
fn round_trip<T: WireMessage + PartialEq + Debug>(message: &T) {
    let again = T::from_proto(message.to_proto())
        .unwrap_or_else(|e| panic!("{:?}: a validated message re-encodes invalid: {e}", T::KIND));
    assert_eq!(&again, message, "{:?} does not round-trip", T::KIND);
}

/// Decodes and validates a body of `T`'s kind, as a receiver does once the
/// signature verified, and checks the round trip.
fn validate<T: WireMessage + PartialEq + Debug>(body: &[u8]) {
    if body.len() > T::KIND.max_body() {
        return;
    }
    let Ok(proto) = T::Proto::decode(body) else {
        return;
    };
    let Ok(message) = T::from_proto(proto) else {
        return;
    };
    round_trip(&message);
    // The receiver's own path: the same bytes in an envelope, signed by
    // the party the message names (or either party), give the same message.
    let signer = message
        .signer()
        .copied()
        .unwrap_or(requester_key().public());
    let envelope = unverified(T::KIND, body, &signer).expect("a bounded body fits an envelope");
    let signed = Signed::<T>::from_verified_envelope(envelope).unwrap_or_else(|e| {
        panic!(
            "{:?}: from_proto accepted, the envelope path refused: {e}",
            T::KIND
        )
    });
    assert_eq!(signed.message(), &message);
}

/// Verifies and validates an envelope as gossip and the direct protocol do.
fn open(envelope: SignedEnvelope) {
    fn checked<T: WireMessage + PartialEq + Debug>(envelope: SignedEnvelope) {
        if let Ok(signed) = Signed::<T>::from_envelope(envelope) {
            round_trip(signed.message());
        }
    }
    match envelope.kind() {
        Kind::Offer => checked::<Offer>(envelope),
        Kind::Order => checked::<Order>(envelope),
        Kind::Bid => checked::<Bid>(envelope),
        Kind::Decline => checked::<Decline>(envelope),
        Kind::LeaseTerms => checked::<LeaseTerms>(envelope),
        Kind::UsageReceipt => checked::<UsageReceipt>(envelope),
        Kind::JobPayload => checked::<JobPayload>(envelope),
        Kind::JobControl => checked::<JobControl>(envelope),
        Kind::LeaseClose => checked::<LeaseClose>(envelope),
    }
}

/// `SignedEnvelope::decode`, then the message inside it.
pub fn envelope(data: &[u8]) {
    let Ok(envelope) = SignedEnvelope::decode(data) else {
        return;
    };
    assert!(envelope.body().len() <= envelope.kind().max_body());
    let again = SignedEnvelope::decode(&envelope.encode()).expect("a decoded envelope re-encodes");
    assert_eq!(again, envelope);
    open(envelope);
}

/// `CoSigned::decode`, then the lease, receipt or close inside it.
pub fn cosigned(data: &[u8]) {
    let Ok(cosigned) = CoSigned::decode(data) else {
        return;
    };
    assert!(cosigned.body().len() <= cosigned.kind().max_body());
    let again = CoSigned::decode(&cosigned.encode()).expect("a decoded co-signed re-encodes");
    assert_eq!(again, cosigned);
    match cosigned.kind() {
        Kind::LeaseTerms => {
            if let Ok(lease) = Lease::verify(cosigned) {
                round_trip(lease.terms());
            }
        }
        Kind::UsageReceipt => {
            if let Ok(claim) = ReceiptClaim::from_cosigned(cosigned) {
                round_trip(claim.receipt());
            }
        }
        Kind::LeaseClose => {
            if let Ok(claim) = CloseClaim::from_cosigned(cosigned) {
                round_trip(claim.close());
            }
        }
        _ => {}
    }
}

/// Every message kind's validation: the first byte picks the kind, the rest
/// is the body.
pub fn message(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match Kind::ALL[usize::from(selector) % Kind::ALL.len()] {
        Kind::Offer => validate::<Offer>(body),
        Kind::Order => validate::<Order>(body),
        Kind::Bid => validate::<Bid>(body),
        Kind::Decline => validate::<Decline>(body),
        Kind::LeaseTerms => validate::<LeaseTerms>(body),
        Kind::UsageReceipt => validate::<UsageReceipt>(body),
        Kind::JobPayload => validate::<JobPayload>(body),
        Kind::JobControl => validate::<JobControl>(body),
        Kind::LeaseClose => validate::<LeaseClose>(body),
    }
}

/// A job payload's body: command, environment, input files, sandbox rules.
pub fn job_payload(data: &[u8]) {
    validate::<JobPayload>(data);
}

/// A direct-protocol request frame, as `DirectCodec::read_request` decodes it.
pub fn direct_request(data: &[u8]) {
    let Ok(request) = Request::decode(data) else {
        return;
    };
    let bytes = request.encode();
    let again = Request::decode(&bytes).expect("a decoded request re-encodes");
    assert_eq!(again.encode(), bytes);
    if let Request::Update(update) = &request
        && let Some(manifest) = &update.manifest
    {
        self::manifest(manifest);
    }
}

/// A direct-protocol response frame, as `DirectCodec::read_response` decodes it.
pub fn direct_response(data: &[u8]) {
    let Ok(response) = Response::decode(data) else {
        return;
    };
    let bytes = response.encode();
    let again = Response::decode(&bytes).expect("a decoded response re-encodes");
    assert_eq!(again.encode(), bytes);
    match response {
        Response::Lease(c) | Response::Receipt(c) | Response::Close(c) => cosigned(&c.encode()),
        _ => {}
    }
}

/// A result manifest, as the requester decodes it from the last update.
pub fn manifest(data: &[u8]) {
    let Ok(manifest) = agora_protocol::Manifest::decode(data) else {
        return;
    };
    let bytes = manifest.encode();
    assert!(bytes.len() <= data.len(), "a manifest grew on re-encoding");
    let again = agora_protocol::Manifest::decode(&bytes).expect("a decoded manifest re-encodes");
    assert_eq!(again, manifest);
}

/// A run event, as it arrives in a log update.
pub fn run_event(data: &[u8]) {
    let Ok(proto) = pb::RunEvent::decode(data) else {
        return;
    };
    let Ok(event) = RunEvent::from_proto(&proto) else {
        return;
    };
    assert_eq!(RunEvent::from_proto(&event.to_proto()), Ok(event));
}

/// The offer query language (`agora offers QUERY`, `GET /v1/offers?q=`).
pub fn query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = Query::parse(text) else {
        return;
    };
    let shown = query.to_string();
    let again = Query::parse(&shown).unwrap_or_else(|e| panic!("{shown:?} does not parse: {e}"));
    assert_eq!(again, query, "{shown:?}");
}

/// The checks a job spec meets before an order is signed, and what must
/// hold for every spec that passes them.
fn check_spec(spec: &agora_client::api::JobSpec) {
    let Ok(order) =
        order::order_from_spec(spec, &requester_key().public(), [7; 16], Timestamp(1_000))
    else {
        return;
    };
    // The order_from_spec promise: the order passes the wire's validation.
    round_trip(&order);
    Signed::sign(order.clone(), requester_key()).expect("the requester signs its own order");
    let _ = LeaseTerms::required_escrow(
        order.max_price_per_gpu_hour,
        order.gpu_count,
        order.max_duration_secs,
    );
    let _ = order::check_job(spec);
}

/// A job spec file (`agora submit job.toml`): the TOML, then the checks.
pub fn job_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = agora_client::spec::parse(text, Path::new("job.toml")) else {
        return;
    };
    check_spec(&spec);
    if order::order_from_spec(&spec, &requester_key().public(), [7; 16], Timestamp(1_000)).is_ok() {
        // The CLI sends an accepted spec to the API as JSON: the node must
        // read back the same spec.
        let json = serde_json::to_vec(&spec).expect("a spec serializes");
        let back: agora_client::api::JobSpec = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("the API refuses the CLI's JSON: {e}"));
        assert_eq!(back, spec);
    }
}

/// The API's JSON request bodies: the first byte picks the endpoint
/// (`POST /v1/jobs`, `POST /v1/ledger/deposit`), the rest is the body. This
/// follows the handlers in `node/src/api.rs` (`json_object`, `submit_job`,
/// `deposit`) up to the point where they reach the market or the ledger.
pub fn api_body(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    if !value.is_object() {
        return;
    }
    if selector % 2 == 0 {
        let Ok(submit) = serde_json::from_value::<agora_client::api::SubmitJob>(value) else {
            return;
        };
        if submit.spec.command.is_empty() {
            return;
        }
        check_spec(&submit.spec);
    } else {
        let _ = serde_json::from_value::<agora_client::api::DepositRequest>(value);
    }
}

/// Feeds an event stream (`GET /v1/events`, `agora logs --follow`) to
/// the CLI's parser twice, whole and in chunks of 1 to 16 bytes (the first
/// byte picks the size): the parser promises the same events whatever the
/// chunking.
pub fn sse(data: &[u8]) {
    fn parse(stream: &[u8], size: usize) -> (Vec<SseEvent>, Option<SseError>, Option<String>) {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in stream.chunks(size) {
            if let Err(e) = parser.push(chunk, &mut events) {
                return (events, Some(e), None);
            }
        }
        let id = parser.last_event_id().map(str::to_owned);
        (events, None, id)
    }
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let whole = parse(stream, stream.len().max(1));
    let chunked = parse(stream, usize::from(step % 16) + 1);
    assert_eq!(whole, chunked, "chunks of {}", step % 16 + 1);
}

/// Replays `data` through the check named `target` (for the seeds example).
pub fn run(target: &str, data: &[u8]) {
    match target {
        "envelope" => envelope(data),
        "cosigned" => cosigned(data),
        "message" => message(data),
        "job_payload" => job_payload(data),
        "direct_request" => direct_request(data),
        "direct_response" => direct_response(data),
        "manifest" => manifest(data),
        "run_event" => run_event(data),
        "query" => query(data),
        "job_spec" => job_spec(data),
        "api_body" => api_body(data),
        "sse" => sse(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// Every target's name.
pub const TARGETS: [&str; 12] = [
    "envelope",
    "cosigned",
    "message",
    "job_payload",
    "direct_request",
    "direct_response",
    "manifest",
    "run_event",
    "query",
    "job_spec",
    "api_body",
    "sse",
];
