//! A requester's job as the node keeps it: domain state and the signed
//! messages behind it, verified once when they arrive and kept typed in
//! memory. On disk the signed messages are their exact wire bytes
//! (base64 inside the JSON record), never an API view: the API's views are
//! built from this in `views.rs`.
//!
//! A record in the first stored format (the API's `JobView` plus hex
//! strings) is migrated when the node opens its store; a record of a format
//! this node does not know is refused with a message that says what to do.

use agora_client::api::{JobSpec, JobState};
use agora_protocol::{
    Bid, DeclineReason, Lease, LeaseId, Manifest, Order, OrderId, PublicKey, ReceiptClaim, Signed,
    Timestamp,
};
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::events::JobEventKind;

/// The stored format this node writes.
pub const FORMAT: u32 = 2;

/// A message kept as its exact wire bytes on disk and typed in memory.
#[derive(Debug, Clone)]
pub struct Wire<T>(pub T);

impl<T: WireBytes> PartialEq for Wire<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bytes() == other.0.to_bytes()
    }
}

/// Types stored by their wire bytes.
pub trait WireBytes: Sized {
    /// The exact bytes (as signed or received).
    fn to_bytes(&self) -> Vec<u8>;
    /// Decodes and verifies them again.
    fn from_bytes(bytes: &[u8]) -> Result<Self, String>;
}

impl<T: agora_protocol::WireMessage> WireBytes for Signed<T> {
    fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        Signed::decode(bytes).map_err(|e| e.to_string())
    }
}

impl WireBytes for Lease {
    fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        Lease::decode(bytes).map_err(|e| e.to_string())
    }
}

impl WireBytes for ReceiptClaim {
    fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        ReceiptClaim::decode(bytes).map_err(|e| e.to_string())
    }
}

/// The result manifest with the exact bytes whose blake3 the final
/// receipt carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestBytes {
    /// As received.
    pub bytes: Vec<u8>,
    /// Decoded.
    pub manifest: Manifest,
}

impl WireBytes for ManifestBytes {
    fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        Ok(Self {
            manifest: Manifest::decode(bytes)?,
            bytes: bytes.to_vec(),
        })
    }
}

impl<T: WireBytes> Serialize for Wire<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.0.to_bytes()))
    }
}

impl<'de, T: WireBytes> Deserialize<'de> for Wire<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        T::from_bytes(&bytes)
            .map(Wire)
            .map_err(serde::de::Error::custom)
    }
}

/// A bid and when it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedBid {
    /// As signed by the provider.
    pub bid: Wire<Signed<Bid>>,
    /// When it arrived.
    pub at: Timestamp,
}

/// A provider's decline (verified on arrival).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declined {
    /// Who.
    pub provider: PublicKey,
    /// Why.
    pub reason: DeclineReason,
    /// Details.
    pub detail: String,
}

/// A step of the job, from this node's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at: Timestamp,
    /// What.
    pub kind: JobEventKind,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The escrow as last read from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Locked.
    pub escrow: agora_protocol::Amount,
    /// Paid to the provider so far.
    pub settled: agora_protocol::Amount,
    /// Highest receipt sequence settled.
    pub last_sequence: u64,
    /// Refunded on close (`None` while open).
    pub refunded: Option<agora_protocol::Amount>,
    /// When anyone may close it.
    pub closable_at: Timestamp,
    /// Ledger operations on the lease.
    pub ops: u32,
}

/// The requester's side of a leased job's run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProgress {
    /// The provider acknowledged the payload.
    pub payload_delivered: bool,
    /// Entries of the provider's log received (its next is this + 1).
    pub provider_entries: u64,
    /// The requester asked for a cancel.
    pub cancel_requested: bool,
    /// The provider acknowledged the cancel.
    pub cancel_delivered: bool,
    /// Last word from the provider.
    pub last_heard: Option<Timestamp>,
    /// Output fetching is over (fetched, or given up with a reason).
    pub fetch_done: bool,
}

/// A job as the requester keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The stored format ([`FORMAT`]).
    pub format: u32,
    /// The signed order (its id is the job's).
    pub order: Wire<Signed<Order>>,
    /// What the user submitted.
    pub spec: JobSpec,
    /// Where it stands.
    pub state: JobState,
    /// Why it failed or stopped, when it did.
    pub reason: Option<String>,
    /// Submitted.
    pub submitted_at: Timestamp,
    /// The offer asked for on the instant path (hex id).
    pub offer: Option<String>,
    /// Bids received.
    pub bids: Vec<ReceivedBid>,
    /// Declines received.
    pub declines: Vec<Declined>,
    /// Providers already asked to countersign.
    pub tried: Vec<PublicKey>,
    /// When the auction closes.
    pub closes_at: Timestamp,
    /// When the current lease attempt started (Leasing only).
    #[serde(default)]
    pub leasing_since: Option<Timestamp>,
    /// The countersigned lease, once there is one.
    pub lease: Option<Wire<Lease>>,
    /// Its escrow is locked on the ledger.
    pub escrow_locked: bool,
    /// Steps so far.
    pub events: Vec<Event>,
    /// The job's exit status, once known.
    pub exit_code: Option<i32>,
    /// The latest countersigned receipt.
    pub receipt: Option<Wire<ReceiptClaim>>,
    /// The escrow as last read.
    pub settlement: Option<Settlement>,
    /// The result manifest, once the run ended.
    pub manifest: Option<Wire<ManifestBytes>>,
    /// Every output was fetched and checked.
    pub results_fetched: bool,
    /// Entries in the job's log.
    pub log_seq: u64,
    /// The run, once leased.
    pub run: RunProgress,
}

impl JobRecord {
    /// The job's id.
    pub fn id(&self) -> OrderId {
        self.order.0.message().id()
    }

    /// The lease, once countersigned.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref().map(|l| &l.0)
    }

    /// The latest countersigned receipt.
    pub fn receipt(&self) -> Option<&ReceiptClaim> {
        self.receipt.as_ref().map(|r| &r.0)
    }

    /// The final receipt was countersigned.
    pub fn final_countersigned(&self) -> bool {
        self.receipt().is_some_and(|c| c.receipt().is_final)
    }

    /// The encoded form for the store.
    pub fn to_json(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| e.to_string())
    }

    /// Reads a stored record of this format or the first one; `lease`
    /// finds a lease the first format kept apart, by id.
    pub fn from_json(
        bytes: &[u8],
        lease: impl Fn(&LeaseId) -> Option<Lease>,
    ) -> Result<Self, String> {
        Self::read(bytes, lease).map(|(record, _)| record)
    }

    /// As [`Self::from_json`], and whether the record was migrated from
    /// the first format (and so wants writing back).
    pub fn read(
        bytes: &[u8],
        lease: impl Fn(&LeaseId) -> Option<Lease>,
    ) -> Result<(Self, bool), String> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if value.get("view").is_some() {
            let v1: v1::JobRecord = serde_json::from_value(value).map_err(|e| e.to_string())?;
            return v1.migrate(lease).map(|record| (record, true));
        }
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(f) if f == u64::from(FORMAT) => serde_json::from_value(value)
                .map(|record| (record, false))
                .map_err(|e| e.to_string()),
            Some(f) => Err(format!(
                "the job is stored in format {f}; this agorad reads formats 1 and {FORMAT}: \
                 run the agorad that wrote it, or move the data dir's `state` aside to start afresh"
            )),
            None => Err("the job record has no format".into()),
        }
    }
}

/// The first stored format: the API's view plus hex strings.
mod v1 {
    use agora_client::api::JobView;
    use agora_protocol::{Lease, LeaseId, PublicKey, Timestamp};
    use serde::Deserialize;

    use super::{Declined, Event, JobEventKind, ManifestBytes, ReceivedBid, Settlement, Wire};
    use super::{RunProgress, WireBytes};

    #[derive(Deserialize)]
    pub(super) struct JobRecord {
        view: JobView,
        order: String,
        bids: Vec<String>,
        tried: Vec<PublicKey>,
        closes_at: Timestamp,
        #[serde(default)]
        run: RunState,
    }

    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct RunState {
        payload_delivered: bool,
        provider_entries: u64,
        receipt: Option<String>,
        manifest: Option<String>,
        cancel_requested: bool,
        cancel_delivered: bool,
        last_heard: Option<Timestamp>,
        fetch_done: bool,
    }

    fn hex_wire<T: WireBytes>(what: &str, text: &str) -> Result<Wire<T>, String> {
        let bytes = hex::decode(text).map_err(|e| format!("{what}: {e}"))?;
        T::from_bytes(&bytes)
            .map(Wire)
            .map_err(|e| format!("{what}: {e}"))
    }

    impl JobRecord {
        pub(super) fn migrate(
            self,
            lease: impl Fn(&LeaseId) -> Option<Lease>,
        ) -> Result<super::JobRecord, String> {
            let v = self.view;
            let bids = self
                .bids
                .iter()
                .map(|h| hex_wire("bid", h))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|bid: Wire<agora_protocol::Signed<agora_protocol::Bid>>| {
                    let at = v
                        .bids
                        .iter()
                        .find(|b| b.provider == bid.0.message().provider)
                        .map_or(v.submitted_at, |b| b.received_at);
                    ReceivedBid { bid, at }
                })
                .collect();
            let lease_id: Option<LeaseId> = v.lease.as_ref().and_then(|l| l.id.parse().ok());
            let escrow_locked = v.lease.as_ref().is_some_and(|l| l.escrow_locked);
            Ok(super::JobRecord {
                format: super::FORMAT,
                order: hex_wire("order", &self.order)?,
                spec: v.spec,
                state: v.state,
                reason: v.reason,
                submitted_at: v.submitted_at,
                offer: v.offer,
                bids,
                declines: v
                    .declines
                    .into_iter()
                    .map(|d| Declined {
                        provider: d.provider,
                        reason: d.reason,
                        detail: d.detail,
                    })
                    .collect(),
                tried: self.tried,
                closes_at: self.closes_at,
                leasing_since: None,
                lease: lease_id.and_then(|id| lease(&id)).map(Wire),
                escrow_locked,
                events: v
                    .events
                    .into_iter()
                    .map(|e| Event {
                        at: e.at,
                        kind: JobEventKind::from_name(&e.event),
                        detail: e.detail,
                    })
                    .collect(),
                exit_code: v.exit_code,
                receipt: self
                    .run
                    .receipt
                    .as_deref()
                    .map(|h| hex_wire("receipt", h))
                    .transpose()?,
                settlement: v.settlement.map(|s| Settlement {
                    escrow: s.escrow,
                    settled: s.settled,
                    last_sequence: s.last_sequence,
                    refunded: s.refunded,
                    closable_at: s.closable_at,
                    ops: s.ledger_ops,
                }),
                manifest: self
                    .run
                    .manifest
                    .as_deref()
                    .map(|h| hex_wire::<ManifestBytes>("manifest", h))
                    .transpose()?,
                results_fetched: v.results_fetched,
                log_seq: v.log_seq,
                run: RunProgress {
                    payload_delivered: self.run.payload_delivered,
                    provider_entries: self.run.provider_entries,
                    cancel_requested: self.run.cancel_requested,
                    cancel_delivered: self.run.cancel_delivered,
                    last_heard: self.run.last_heard,
                    fetch_done: self.run.fetch_done,
                },
            })
        }
    }
}
