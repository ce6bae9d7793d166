//! Offers: one class of identical GPUs a provider rents out.

use std::fmt;
use std::str::FromStr;

use agora_proto::v1 as pb;

use crate::amount::Amount;
use crate::envelope::Kind;
use crate::identity::PublicKey;
use crate::limits::SandboxLimits;
use crate::message::{ValidationError, WireMessage, jurisdiction, key, label, range, text};
use crate::time::Timestamp;

/// Longest lifetime an offer may claim.
pub const MAX_OFFER_TTL_MS: u64 = 24 * 3600 * 1000;
/// Most GPUs in one offer.
pub const MAX_GPUS: u32 = 1024;
/// Longest GPU model name.
pub const MAX_MODEL_LEN: usize = 64;
/// Longest region code.
pub const MAX_REGION_LEN: usize = 32;

/// Where a provider's power comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Energy {
    /// Not stated.
    Unknown,
    /// Renewable sources.
    Renewable,
    /// A mix.
    Mixed,
    /// Fossil sources.
    Fossil,
}

impl Energy {
    pub(crate) fn from_proto(raw: i32) -> Result<Self, ValidationError> {
        match pb::EnergySource::try_from(raw) {
            Ok(pb::EnergySource::Unspecified) => Ok(Energy::Unknown),
            Ok(pb::EnergySource::Renewable) => Ok(Energy::Renewable),
            Ok(pb::EnergySource::Mixed) => Ok(Energy::Mixed),
            Ok(pb::EnergySource::Fossil) => Ok(Energy::Fossil),
            Err(_) => Err(ValidationError::new(
                "energy",
                format!("unknown energy source {raw}"),
            )),
        }
    }

    pub(crate) fn to_proto(self) -> i32 {
        (match self {
            Energy::Unknown => pb::EnergySource::Unspecified,
            Energy::Renewable => pb::EnergySource::Renewable,
            Energy::Mixed => pb::EnergySource::Mixed,
            Energy::Fossil => pb::EnergySource::Fossil,
        }) as i32
    }

    /// The lowercase name used in queries and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Energy::Unknown => "unknown",
            Energy::Renewable => "renewable",
            Energy::Mixed => "mixed",
            Energy::Fossil => "fossil",
        }
    }
}

impl FromStr for Energy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "unknown" => Ok(Energy::Unknown),
            "renewable" => Ok(Energy::Renewable),
            "mixed" => Ok(Energy::Mixed),
            "fossil" => Ok(Energy::Fossil),
            _ => Err(format!(
                "unknown energy source {s:?} (renewable, mixed, fossil, unknown)"
            )),
        }
    }
}

impl fmt::Display for Energy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How benchmark figures were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchmarkMethod {
    /// Declared in configuration (simulated GPUs).
    Declared,
    /// Measured on the device by the provider's benchmark.
    Measured,
}

/// Measured (or declared) performance of one GPU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Benchmark {
    /// Dense FP32 throughput, milli-TFLOPS.
    pub fp32_mtflops: u64,
    /// Dense FP16/BF16 tensor throughput, milli-TFLOPS.
    pub fp16_mtflops: u64,
    /// Memory bandwidth, MB/s.
    pub memory_bandwidth_mbps: u64,
    /// How the figures were obtained.
    pub method: BenchmarkMethod,
    /// What was run.
    pub method_detail: String,
    /// When.
    pub measured_at: Timestamp,
}

impl Benchmark {
    fn from_proto(raw: Option<pb::Benchmark>) -> Result<Self, ValidationError> {
        let raw = raw.ok_or_else(|| ValidationError::new("benchmark", "missing"))?;
        let method = match pb::BenchmarkMethod::try_from(raw.method) {
            Ok(pb::BenchmarkMethod::Declared) => BenchmarkMethod::Declared,
            Ok(pb::BenchmarkMethod::Measured) => BenchmarkMethod::Measured,
            _ => {
                return Err(ValidationError::new(
                    "benchmark.method",
                    format!("unknown method {}", raw.method),
                ));
            }
        };
        Ok(Self {
            // Up to 100 PFLOPS per GPU and 100 TB/s: well beyond any device.
            fp32_mtflops: range("benchmark.fp32_mtflops", raw.fp32_mtflops, 1, 100_000_000)?,
            fp16_mtflops: range("benchmark.fp16_mtflops", raw.fp16_mtflops, 0, 100_000_000)?,
            memory_bandwidth_mbps: range(
                "benchmark.memory_bandwidth_mbps",
                raw.memory_bandwidth_mbps,
                0,
                100_000_000,
            )?,
            method,
            method_detail: text("benchmark.method_detail", raw.method_detail, 256)?,
            measured_at: Timestamp(raw.measured_at_ms),
        })
    }

    fn to_proto(&self) -> pb::Benchmark {
        pb::Benchmark {
            fp32_mtflops: self.fp32_mtflops,
            fp16_mtflops: self.fp16_mtflops,
            memory_bandwidth_mbps: self.memory_bandwidth_mbps,
            method: match self.method {
                BenchmarkMethod::Declared => pb::BenchmarkMethod::Declared,
                BenchmarkMethod::Measured => pb::BenchmarkMethod::Measured,
            } as i32,
            method_detail: self.method_detail.clone(),
            measured_at_ms: self.measured_at.0,
        }
    }
}

/// Names an offer across its updates: (provider, slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferId(pub [u8; 16]);

impl OfferId {
    /// The id of `provider`'s offer in `slot`.
    pub fn new(provider: &PublicKey, slot: u32) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"agora/1/offer-id\0");
        h.update(provider.as_bytes());
        h.update(&slot.to_be_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Self(id)
    }
}

impl fmt::Display for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for OfferId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| format!("offer id {s:?} is not hex"))?;
        bytes
            .try_into()
            .map(OfferId)
            .map_err(|_| format!("offer id {s:?} is not 32 hex digits"))
    }
}

/// A provider's offer of one class of identical GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The provider.
    pub provider: PublicKey,
    /// Provider-chosen slot.
    pub slot: u32,
    /// Higher supersedes lower.
    pub sequence: u64,
    /// GPU model name.
    pub gpu_model: String,
    /// VRAM per GPU, MiB.
    pub vram_mib: u64,
    /// Compute capability × 10 (0 when unknown).
    pub compute_capability: u32,
    /// Per-GPU performance.
    pub benchmark: Benchmark,
    /// GPUs in this class.
    pub gpu_total: u32,
    /// GPUs free now.
    pub gpu_free: u32,
    /// Price per GPU-hour.
    pub price_per_gpu_hour: Amount,
    /// Region code.
    pub region: String,
    /// Country code, if stated.
    pub jurisdiction: Option<String>,
    /// Energy source.
    pub energy: Energy,
    /// Simulated GPUs (testnets).
    pub simulated: bool,
    /// Created.
    pub created_at: Timestamp,
    /// Expires.
    pub expires_at: Timestamp,
    /// Runtimes the provider runs.
    pub runtimes: Vec<String>,
    /// Jobs may reach the network.
    pub network: bool,
    /// What bounds each job in the provider's sandbox.
    pub limits: SandboxLimits,
}

impl Offer {
    /// Its id.
    pub fn id(&self) -> OfferId {
        OfferId::new(&self.provider, self.slot)
    }

    /// Verified: measured on real hardware, not declared or simulated.
    pub fn verified(&self) -> bool {
        !self.simulated && self.benchmark.method == BenchmarkMethod::Measured
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

impl WireMessage for Offer {
    const KIND: Kind = Kind::Offer;
    type Proto = pb::Offer;

    fn from_proto(p: pb::Offer) -> Result<Self, ValidationError> {
        let gpu_total = range("gpu_total", p.gpu_total, 1, MAX_GPUS)?;
        let gpu_free = range("gpu_free", p.gpu_free, 0, gpu_total)?;
        if p.expires_at_ms <= p.created_at_ms {
            return Err(ValidationError::new(
                "expires_at_ms",
                "must be after created_at_ms",
            ));
        }
        if p.expires_at_ms - p.created_at_ms > MAX_OFFER_TTL_MS {
            return Err(ValidationError::new(
                "expires_at_ms",
                "an offer may live at most 24 hours",
            ));
        }
        if p.runtimes.is_empty() || p.runtimes.len() > 8 {
            return Err(ValidationError::new(
                "runtimes",
                format!("{} runtimes; expected 1..=8", p.runtimes.len()),
            ));
        }
        let runtimes = p
            .runtimes
            .into_iter()
            .map(|r| label("runtimes", r, 16))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            provider: key("provider", &p.provider)?,
            slot: p.slot,
            sequence: range("sequence", p.sequence, 1, u64::MAX)?,
            gpu_model: label("gpu_model", p.gpu_model, MAX_MODEL_LEN)?,
            vram_mib: range("vram_mib", p.vram_mib, 1, 1 << 24)?,
            compute_capability: range("compute_capability", p.compute_capability, 0, 255)?,
            benchmark: Benchmark::from_proto(p.benchmark)?,
            gpu_total,
            gpu_free,
            price_per_gpu_hour: Amount(range(
                "price_per_gpu_hour",
                p.price_per_gpu_hour,
                1,
                u64::MAX / 4,
            )?),
            region: label("region", p.region, MAX_REGION_LEN)?,
            jurisdiction: jurisdiction("jurisdiction", p.jurisdiction)?,
            energy: Energy::from_proto(p.energy)?,
            simulated: p.simulated,
            created_at: Timestamp(p.created_at_ms),
            expires_at: Timestamp(p.expires_at_ms),
            runtimes,
            network: p.network,
            limits: SandboxLimits::from_proto("limits", p.limits)?,
        })
    }

    fn to_proto(&self) -> pb::Offer {
        pb::Offer {
            provider: self.provider.to_vec(),
            slot: self.slot,
            sequence: self.sequence,
            gpu_model: self.gpu_model.clone(),
            vram_mib: self.vram_mib,
            compute_capability: self.compute_capability,
            benchmark: Some(self.benchmark.to_proto()),
            gpu_total: self.gpu_total,
            gpu_free: self.gpu_free,
            price_per_gpu_hour: self.price_per_gpu_hour.0,
            region: self.region.clone(),
            jurisdiction: self.jurisdiction.clone().unwrap_or_default(),
            energy: self.energy.to_proto(),
            simulated: self.simulated,
            created_at_ms: self.created_at.0,
            expires_at_ms: self.expires_at.0,
            runtimes: self.runtimes.clone(),
            network: self.network,
            limits: self.limits.to_proto(),
        }
    }

    fn signer(&self) -> Option<&PublicKey> {
        Some(&self.provider)
    }
}

/// "NVIDIA H100 80GB HBM3" → "H100-80GB-HBM3": a label the wire accepts.
/// Both roles use it: a provider names its GPUs with it, a requester
/// names the model it asks for.
pub fn normalize_model(name: &str) -> String {
    let trimmed = name.trim().strip_prefix("NVIDIA ").unwrap_or(name.trim());
    let mut out = String::with_capacity(trimmed.len());
    for c in trimmed.chars() {
        match c {
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => out.push(c),
            _ if !out.ends_with('-') => out.push('-'),
            _ => {}
        }
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "unknown".into()
    } else {
        out.chars().take(64).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::message::{MessageError, Signed};

    #[test]
    fn model_names_become_wire_labels() {
        assert_eq!(normalize_model("NVIDIA H100 80GB HBM3"), "H100-80GB-HBM3");
        assert_eq!(normalize_model("Tesla T4"), "Tesla-T4");
        assert_eq!(normalize_model("  "), "unknown");
    }

    /// A valid offer for tests.
    pub(crate) fn sample_offer(provider: &Keypair) -> Offer {
        Offer {
            network: false,
            limits: SandboxLimits::default(),
            provider: provider.public(),
            slot: 0,
            sequence: 1,
            gpu_model: "H100".into(),
            vram_mib: 80 * 1024,
            compute_capability: 90,
            benchmark: Benchmark {
                fp32_mtflops: 60_000,
                fp16_mtflops: 900_000,
                memory_bandwidth_mbps: 3_000_000,
                method: BenchmarkMethod::Declared,
                method_detail: "declared".into(),
                measured_at: Timestamp(1),
            },
            gpu_total: 8,
            gpu_free: 8,
            price_per_gpu_hour: Amount(2_000_000),
            region: "EU".into(),
            jurisdiction: Some("DE".into()),
            energy: Energy::Renewable,
            simulated: true,
            created_at: Timestamp(1_000),
            expires_at: Timestamp(61_000),
            runtimes: vec!["process".into()],
        }
    }

    #[test]
    fn round_trips_through_a_signed_envelope() {
        let key = Keypair::from_seed(&[1; 32]);
        let offer = sample_offer(&key);
        let signed = Signed::sign(offer.clone(), &key).unwrap();
        let back = Signed::<Offer>::decode(&signed.encode()).unwrap();
        assert_eq!(back.message(), &offer);
        assert_eq!(back.message().id(), OfferId::new(&key.public(), 0));
    }

    #[test]
    fn a_provider_cannot_sign_anothers_offer() {
        let key = Keypair::from_seed(&[1; 32]);
        let other = Keypair::from_seed(&[2; 32]);
        assert!(matches!(
            Signed::sign(sample_offer(&key), &other),
            Err(MessageError::SignerMismatch { .. })
        ));
        // Nor can a forged envelope smuggle one in.
        let forged = crate::envelope::SignedEnvelope::seal(
            Kind::Offer,
            &sample_offer(&key).to_proto(),
            &other,
        );
        assert!(matches!(
            Signed::<Offer>::from_envelope(forged),
            Err(MessageError::SignerMismatch { .. })
        ));
    }

    #[test]
    fn every_bad_field_is_named() {
        let key = Keypair::from_seed(&[1; 32]);
        let good = sample_offer(&key).to_proto();
        type Mutation = Box<dyn Fn(&mut pb::Offer)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("gpu_free", Box::new(|p| p.gpu_free = 9)),
            ("gpu_total", Box::new(|p| p.gpu_total = 0)),
            (
                "gpu_model",
                Box::new(|p| p.gpu_model = "H100; rm -rf".into()),
            ),
            ("gpu_model", Box::new(|p| p.gpu_model = "x".repeat(65))),
            (
                "expires_at_ms",
                Box::new(|p| p.expires_at_ms = p.created_at_ms),
            ),
            (
                "expires_at_ms",
                Box::new(|p| p.expires_at_ms = p.created_at_ms + MAX_OFFER_TTL_MS + 1),
            ),
            (
                "jurisdiction",
                Box::new(|p| p.jurisdiction = "Germany".into()),
            ),
            ("price_per_gpu_hour", Box::new(|p| p.price_per_gpu_hour = 0)),
            ("provider", Box::new(|p| p.provider = vec![0; 3])),
            ("benchmark", Box::new(|p| p.benchmark = None)),
            (
                "benchmark.fp32_mtflops",
                Box::new(|p| p.benchmark.as_mut().unwrap().fp32_mtflops = 0),
            ),
            ("energy", Box::new(|p| p.energy = 42)),
            ("sequence", Box::new(|p| p.sequence = 0)),
            ("runtimes", Box::new(|p| p.runtimes.clear())),
        ];
        for (field, mutate) in cases {
            let mut p = good.clone();
            mutate(&mut p);
            let err = Offer::from_proto(p).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }
}
