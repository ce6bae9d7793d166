//! Orders, and the bids and declines providers answer them with.

use agora_proto::v1 as pb;

use crate::amount::Amount;
use crate::envelope::Kind;
use crate::identity::PublicKey;
use crate::limits::SandboxLimits;
use crate::message::{
    ValidationError, WireMessage, digest, jurisdiction, key, label, optional_label, range, text,
};
use crate::offer::{Energy, MAX_GPUS, MAX_MODEL_LEN, MAX_REGION_LEN};
use crate::time::Timestamp;

/// Longest lease an order may ask for: 30 days.
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 3600;
/// Longest bid window.
pub const MAX_BID_WINDOW_MS: u32 = 60_000;
/// Longest an order stays open.
pub const MAX_ORDER_TTL_MS: u64 = 3600 * 1000;

/// A 32-byte identifier (orders, leases).
macro_rules! id_type {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(&self.0[..4]))
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let bytes = hex::decode(s).map_err(|_| format!("{s:?} is not hex"))?;
                bytes
                    .try_into()
                    .map($name)
                    .map_err(|_| format!("{s:?} is not 64 hex digits"))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use id_type;

id_type!(
    OrderId,
    "Names an order: blake3 of the requester's key and its nonce."
);

impl OrderId {
    /// The id of `requester`'s order with `nonce`.
    pub fn new(requester: &PublicKey, nonce: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"agora/1/order-id\0");
        h.update(requester.as_bytes());
        h.update(nonce);
        Self(*h.finalize().as_bytes())
    }
}

/// What a requester wants to rent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Who orders (and pays).
    pub requester: PublicKey,
    /// Uniqueness nonce, 16..=32 bytes.
    pub nonce: Vec<u8>,
    /// GPUs wanted.
    pub gpu_count: u32,
    /// Model wanted, or any.
    pub gpu_model: Option<String>,
    /// Minimum VRAM per GPU, MiB.
    pub min_vram_mib: u64,
    /// Minimum FP32 milli-TFLOPS per GPU.
    pub min_fp32_mtflops: u64,
    /// Minimum compute capability × 10.
    pub min_compute_capability: u32,
    /// Region wanted, or any.
    pub region: Option<String>,
    /// Jurisdiction wanted, or any.
    pub jurisdiction: Option<String>,
    /// Energy source wanted; `Unknown` means any.
    pub energy: Energy,
    /// Only measured, non-simulated GPUs.
    pub require_verified: bool,
    /// Accept simulated GPUs (testnets).
    pub allow_simulated: bool,
    /// Highest acceptable price per GPU-hour.
    pub max_price_per_gpu_hour: Amount,
    /// Lease length wanted.
    pub max_duration_secs: u64,
    /// How long bids are collected.
    pub bid_window_ms: u32,
    /// Runtime the job needs.
    pub runtime: String,
    /// The job needs network access.
    pub network: bool,
    /// The least the job needs of the provider's sandbox.
    pub needs: SandboxLimits,
    /// Created.
    pub created_at: Timestamp,
    /// No bids accepted after this.
    pub expires_at: Timestamp,
}

impl Order {
    /// Its id.
    pub fn id(&self) -> OrderId {
        OrderId::new(&self.requester, &self.nonce)
    }
}

impl WireMessage for Order {
    const KIND: Kind = Kind::Order;
    type Proto = pb::Order;

    fn from_proto(p: pb::Order) -> Result<Self, ValidationError> {
        if p.nonce.len() < 16 || p.nonce.len() > 32 {
            return Err(ValidationError::new(
                "nonce",
                format!("{} bytes; expected 16..=32", p.nonce.len()),
            ));
        }
        if p.expires_at_ms <= p.created_at_ms
            || p.expires_at_ms - p.created_at_ms > MAX_ORDER_TTL_MS
        {
            return Err(ValidationError::new(
                "expires_at_ms",
                "must be after created_at_ms and within one hour",
            ));
        }
        Ok(Self {
            requester: key("requester", &p.requester)?,
            nonce: p.nonce,
            gpu_count: range("gpu_count", p.gpu_count, 1, MAX_GPUS)?,
            gpu_model: optional_label("gpu_model", p.gpu_model, MAX_MODEL_LEN)?,
            min_vram_mib: p.min_vram_mib,
            min_fp32_mtflops: p.min_fp32_mtflops,
            min_compute_capability: range(
                "min_compute_capability",
                p.min_compute_capability,
                0,
                255,
            )?,
            region: optional_label("region", p.region, MAX_REGION_LEN)?,
            jurisdiction: jurisdiction("jurisdiction", p.jurisdiction)?,
            energy: Energy::from_proto(p.energy)?,
            require_verified: p.require_verified,
            allow_simulated: p.allow_simulated,
            max_price_per_gpu_hour: Amount(range(
                "max_price_per_gpu_hour",
                p.max_price_per_gpu_hour,
                1,
                u64::MAX / 4,
            )?),
            max_duration_secs: range(
                "max_duration_secs",
                p.max_duration_secs,
                1,
                MAX_DURATION_SECS,
            )?,
            bid_window_ms: range("bid_window_ms", p.bid_window_ms, 0, MAX_BID_WINDOW_MS)?,
            runtime: label("runtime", p.runtime, 16)?,
            network: p.network,
            needs: SandboxLimits::from_proto("needs", p.needs)?,
            created_at: Timestamp(p.created_at_ms),
            expires_at: Timestamp(p.expires_at_ms),
        })
    }

    fn to_proto(&self) -> pb::Order {
        pb::Order {
            requester: self.requester.to_vec(),
            nonce: self.nonce.clone(),
            gpu_count: self.gpu_count,
            gpu_model: self.gpu_model.clone().unwrap_or_default(),
            min_vram_mib: self.min_vram_mib,
            min_fp32_mtflops: self.min_fp32_mtflops,
            min_compute_capability: self.min_compute_capability,
            region: self.region.clone().unwrap_or_default(),
            jurisdiction: self.jurisdiction.clone().unwrap_or_default(),
            energy: self.energy.to_proto(),
            require_verified: self.require_verified,
            allow_simulated: self.allow_simulated,
            max_price_per_gpu_hour: self.max_price_per_gpu_hour.0,
            max_duration_secs: self.max_duration_secs,
            bid_window_ms: self.bid_window_ms,
            runtime: self.runtime.clone(),
            network: self.network,
            needs: self.needs.to_proto(),
            created_at_ms: self.created_at.0,
            expires_at_ms: self.expires_at.0,
        }
    }

    fn signer(&self) -> Option<&PublicKey> {
        Some(&self.requester)
    }
}

/// A provider's offer to serve an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bid {
    /// The order.
    pub order_id: OrderId,
    /// The bidder.
    pub provider: PublicKey,
    /// Which of the provider's offers.
    pub slot: u32,
    /// Price per GPU-hour.
    pub price_per_gpu_hour: Amount,
    /// GPUs held.
    pub gpu_count: u32,
    /// Their model.
    pub gpu_model: String,
    /// Per-GPU FP32 milli-TFLOPS (from the offer's benchmark).
    pub fp32_mtflops: u64,
    /// Held until.
    pub hold_until: Timestamp,
    /// Created.
    pub created_at: Timestamp,
    /// Simulated GPUs.
    pub simulated: bool,
    /// The sandbox's limits for the job (the offer's).
    pub limits: SandboxLimits,
}

impl WireMessage for Bid {
    const KIND: Kind = Kind::Bid;
    type Proto = pb::Bid;

    fn from_proto(p: pb::Bid) -> Result<Self, ValidationError> {
        if p.hold_until_ms <= p.created_at_ms {
            return Err(ValidationError::new(
                "hold_until_ms",
                "must be after created_at_ms",
            ));
        }
        Ok(Self {
            order_id: OrderId(digest("order_id", &p.order_id)?),
            provider: key("provider", &p.provider)?,
            slot: p.slot,
            price_per_gpu_hour: Amount(range(
                "price_per_gpu_hour",
                p.price_per_gpu_hour,
                1,
                u64::MAX / 4,
            )?),
            gpu_count: range("gpu_count", p.gpu_count, 1, MAX_GPUS)?,
            gpu_model: label("gpu_model", p.gpu_model, MAX_MODEL_LEN)?,
            fp32_mtflops: range("fp32_mtflops", p.fp32_mtflops, 1, 100_000_000)?,
            hold_until: Timestamp(p.hold_until_ms),
            created_at: Timestamp(p.created_at_ms),
            simulated: p.simulated,
            limits: SandboxLimits::from_proto("limits", p.limits)?,
        })
    }

    fn to_proto(&self) -> pb::Bid {
        pb::Bid {
            order_id: self.order_id.0.to_vec(),
            provider: self.provider.to_vec(),
            slot: self.slot,
            price_per_gpu_hour: self.price_per_gpu_hour.0,
            gpu_count: self.gpu_count,
            gpu_model: self.gpu_model.clone(),
            fp32_mtflops: self.fp32_mtflops,
            hold_until_ms: self.hold_until.0,
            created_at_ms: self.created_at.0,
            simulated: self.simulated,
            limits: self.limits.to_proto(),
        }
    }

    fn signer(&self) -> Option<&PublicKey> {
        Some(&self.provider)
    }
}

/// Why a provider will not serve an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// Not enough free GPUs.
    NoCapacity,
    /// No GPU of the model asked for.
    Model,
    /// Not enough VRAM.
    Vram,
    /// Not enough compute (TFLOPS or compute capability).
    Compute,
    /// The order's price is below the provider's.
    Price,
    /// Wrong region.
    Region,
    /// Wrong jurisdiction.
    Jurisdiction,
    /// Wrong energy source.
    Energy,
    /// The order wants verified GPUs.
    Unverified,
    /// Simulated GPUs, and the order does not allow them.
    Simulated,
    /// The runtime is not offered.
    Runtime,
    /// The lease is longer than the provider allows.
    Duration,
    /// The order has expired.
    Expired,
    /// The job needs network access and the provider gives none.
    Network,
    /// The provider's sandbox limits are below what the job needs.
    Limits,
    /// The requester's balance on the ledger cannot pay for this order on
    /// top of the bids and unfunded leases it holds at this provider.
    Funds,
}

impl DeclineReason {
    fn from_proto(raw: i32) -> Result<Self, ValidationError> {
        use pb::DeclineReason as P;
        Ok(match P::try_from(raw) {
            Ok(P::NoCapacity) => Self::NoCapacity,
            Ok(P::Model) => Self::Model,
            Ok(P::Vram) => Self::Vram,
            Ok(P::Compute) => Self::Compute,
            Ok(P::Price) => Self::Price,
            Ok(P::Region) => Self::Region,
            Ok(P::Jurisdiction) => Self::Jurisdiction,
            Ok(P::Energy) => Self::Energy,
            Ok(P::Unverified) => Self::Unverified,
            Ok(P::Simulated) => Self::Simulated,
            Ok(P::Runtime) => Self::Runtime,
            Ok(P::Duration) => Self::Duration,
            Ok(P::Expired) => Self::Expired,
            Ok(P::Network) => Self::Network,
            Ok(P::Limits) => Self::Limits,
            Ok(P::Funds) => Self::Funds,
            Ok(P::Unspecified) | Err(_) => {
                return Err(ValidationError::new(
                    "reason",
                    format!("unknown decline reason {raw}"),
                ));
            }
        })
    }

    fn to_proto(self) -> i32 {
        use pb::DeclineReason as P;
        (match self {
            Self::NoCapacity => P::NoCapacity,
            Self::Model => P::Model,
            Self::Vram => P::Vram,
            Self::Compute => P::Compute,
            Self::Price => P::Price,
            Self::Region => P::Region,
            Self::Jurisdiction => P::Jurisdiction,
            Self::Energy => P::Energy,
            Self::Unverified => P::Unverified,
            Self::Simulated => P::Simulated,
            Self::Runtime => P::Runtime,
            Self::Duration => P::Duration,
            Self::Expired => P::Expired,
            Self::Network => P::Network,
            Self::Limits => P::Limits,
            Self::Funds => P::Funds,
        }) as i32
    }
}

/// A provider's signed refusal, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    /// The order.
    pub order_id: OrderId,
    /// Who declines.
    pub provider: PublicKey,
    /// Why.
    pub reason: DeclineReason,
    /// Details for a person ("price 2.0 < floor 2.5").
    pub detail: String,
    /// Created.
    pub created_at: Timestamp,
}

impl WireMessage for Decline {
    const KIND: Kind = Kind::Decline;
    type Proto = pb::Decline;

    fn from_proto(p: pb::Decline) -> Result<Self, ValidationError> {
        Ok(Self {
            order_id: OrderId(digest("order_id", &p.order_id)?),
            provider: key("provider", &p.provider)?,
            reason: DeclineReason::from_proto(p.reason)?,
            detail: text("detail", p.detail, 512)?,
            created_at: Timestamp(p.created_at_ms),
        })
    }

    fn to_proto(&self) -> pb::Decline {
        pb::Decline {
            order_id: self.order_id.0.to_vec(),
            provider: self.provider.to_vec(),
            reason: self.reason.to_proto(),
            detail: self.detail.clone(),
            created_at_ms: self.created_at.0,
        }
    }

    fn signer(&self) -> Option<&PublicKey> {
        Some(&self.provider)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::message::Signed;

    pub(crate) fn sample_order(requester: &Keypair) -> Order {
        Order {
            network: false,
            needs: SandboxLimits::default(),
            requester: requester.public(),
            nonce: vec![9; 16],
            gpu_count: 2,
            gpu_model: Some("H100".into()),
            min_vram_mib: 40 * 1024,
            min_fp32_mtflops: 0,
            min_compute_capability: 0,
            region: Some("EU".into()),
            jurisdiction: None,
            energy: Energy::Unknown,
            require_verified: false,
            allow_simulated: true,
            max_price_per_gpu_hour: Amount(3_000_000),
            max_duration_secs: 600,
            bid_window_ms: 500,
            runtime: "process".into(),
            created_at: Timestamp(1_000),
            expires_at: Timestamp(61_000),
        }
    }

    #[test]
    fn order_bid_decline_round_trip() {
        let requester = Keypair::from_seed(&[1; 32]);
        let provider = Keypair::from_seed(&[2; 32]);
        let order = sample_order(&requester);
        let signed = Signed::sign(order.clone(), &requester).unwrap();
        assert_eq!(
            Signed::<Order>::decode(&signed.encode()).unwrap().message(),
            &order
        );

        let bid = Bid {
            limits: crate::limits::SandboxLimits::default(),
            order_id: order.id(),
            provider: provider.public(),
            slot: 0,
            price_per_gpu_hour: Amount(2_000_000),
            gpu_count: 2,
            gpu_model: "H100".into(),
            fp32_mtflops: 60_000,
            hold_until: Timestamp(5_000),
            created_at: Timestamp(2_000),
            simulated: true,
        };
        let signed = Signed::sign(bid.clone(), &provider).unwrap();
        assert_eq!(
            Signed::<Bid>::decode(&signed.encode()).unwrap().message(),
            &bid
        );

        let decline = Decline {
            order_id: order.id(),
            provider: provider.public(),
            reason: DeclineReason::Price,
            detail: "2.0 < floor 2.5".into(),
            created_at: Timestamp(2_000),
        };
        let signed = Signed::sign(decline.clone(), &provider).unwrap();
        assert_eq!(
            Signed::<Decline>::decode(&signed.encode())
                .unwrap()
                .message(),
            &decline
        );
        // A bid body is not a decline.
        let as_bid = Signed::<Bid>::from_envelope(signed.envelope().clone());
        assert!(as_bid.is_err());
    }

    #[test]
    fn order_fields_are_checked() {
        let requester = Keypair::from_seed(&[1; 32]);
        let good = sample_order(&requester).to_proto();
        let mut p = good.clone();
        p.nonce = vec![1; 4];
        assert_eq!(Order::from_proto(p).unwrap_err().field, "nonce");
        let mut p = good.clone();
        p.max_duration_secs = MAX_DURATION_SECS + 1;
        assert_eq!(Order::from_proto(p).unwrap_err().field, "max_duration_secs");
        let mut p = good.clone();
        p.gpu_count = 0;
        assert_eq!(Order::from_proto(p).unwrap_err().field, "gpu_count");
        let mut p = good;
        p.bid_window_ms = MAX_BID_WINDOW_MS + 1;
        assert_eq!(Order::from_proto(p).unwrap_err().field, "bid_window_ms");
    }
}
