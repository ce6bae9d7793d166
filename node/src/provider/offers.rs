//! From inventory to offers: identical GPUs are grouped into slots, and
//! each slot is offered as one [`Offer`].
//!
//! A slot is one class of GPUs: the same model, VRAM, compute capability,
//! simulated-or-not, and benchmark figures (FP32, FP16, bandwidth and
//! method; not the time or wording of the measurement). Slots are numbered
//! in the order of their sorted keys — model name first — so the same
//! inventory gives the same slot numbers, and so the same offer ids, after
//! a restart.
//!
//! A GPU without a benchmark is not offered. The wire requires an offer to
//! state its FP32 throughput (at least 1 milli-TFLOPS), and orders and bids
//! are scored by it; stating a figure nobody measured would be a lie, and
//! stating 0 is refused by every peer. Such GPUs are listed in
//! [`Slots::unoffered`] with the reason, for the node's status and
//! `price --dry-run`.

use agora_protocol::offer::MAX_GPUS;
use agora_protocol::{
    Amount, Benchmark, BenchmarkMethod, Energy, Offer, PublicKey, SandboxLimits, Timestamp,
    ValidationError, WireMessage,
};

use crate::config::{NodeSection, ProviderConfig};
use crate::provider::inventory::Inventory;
use crate::provider::pricing::PricingPolicy;

/// One class of identical GPUs, offered under one slot number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The slot number (the offer's `slot`).
    pub slot: u32,
    /// GPU model (a wire label).
    pub model: String,
    /// VRAM per GPU, MiB.
    pub vram_mib: u64,
    /// Compute capability × 10 (0 when unknown).
    pub compute_capability: u32,
    /// Per-GPU performance, as measured or declared.
    pub benchmark: Benchmark,
    /// Declared in config rather than detected.
    pub simulated: bool,
    /// Inventory indices of its GPUs, for pinning jobs to them.
    pub gpus: Vec<u32>,
}

impl Slot {
    /// GPUs in the slot.
    pub fn gpu_total(&self) -> u32 {
        // At most MAX_GPUS by construction.
        u32::try_from(self.gpus.len()).unwrap_or(MAX_GPUS)
    }
}

/// A GPU that is not offered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unoffered {
    /// Inventory index.
    pub index: u32,
    /// Model.
    pub model: String,
    /// Why, for a person.
    pub reason: String,
}

/// The inventory grouped into slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    /// The slots, `slots[i].slot == i`.
    pub slots: Vec<Slot>,
    /// GPUs left out, with the reason.
    pub unoffered: Vec<Unoffered>,
}

/// Grouping key: everything an offer says about one GPU.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ClassKey {
    model: String,
    vram_mib: u64,
    compute_capability: u32,
    simulated: bool,
    measured: bool,
    fp32_mtflops: u64,
    fp16_mtflops: u64,
    memory_bandwidth_mbps: u64,
}

/// Groups `inventory` into slots; see the module docs for the rules.
pub fn slots(inventory: &Inventory) -> Slots {
    let mut classes: std::collections::BTreeMap<ClassKey, (Benchmark, Vec<u32>)> =
        std::collections::BTreeMap::new();
    let mut unoffered = Vec::new();
    for gpu in &inventory.gpus {
        let skip = |reason: String| Unoffered {
            index: gpu.index,
            model: gpu.model.clone(),
            reason,
        };
        let Some(benchmark) = &gpu.benchmark else {
            unoffered.push(skip(
                "not benchmarked yet: an offer must state measured FP32 throughput".into(),
            ));
            continue;
        };
        if benchmark.fp32_mtflops == 0 {
            unoffered.push(skip("its benchmark reports 0 FP32 TFLOPS".into()));
            continue;
        }
        if gpu.vram_mib == 0 {
            unoffered.push(skip("its VRAM size is unknown".into()));
            continue;
        }
        let key = ClassKey {
            model: gpu.model.clone(),
            vram_mib: gpu.vram_mib,
            compute_capability: gpu.compute_capability.min(255),
            simulated: gpu.simulated,
            measured: benchmark.method == BenchmarkMethod::Measured,
            fp32_mtflops: benchmark.fp32_mtflops,
            fp16_mtflops: benchmark.fp16_mtflops,
            memory_bandwidth_mbps: benchmark.memory_bandwidth_mbps,
        };
        let (_, gpus) = classes
            .entry(key)
            .or_insert_with(|| (benchmark.clone(), Vec::new()));
        if gpus.len() >= MAX_GPUS as usize {
            unoffered.push(skip(format!(
                "one offer carries at most {MAX_GPUS} GPUs of a class"
            )));
            continue;
        }
        gpus.push(gpu.index);
    }
    let slots = classes
        .into_iter()
        .zip(0u32..)
        .map(|((key, (benchmark, gpus)), slot)| Slot {
            slot,
            model: key.model,
            vram_mib: key.vram_mib,
            compute_capability: key.compute_capability,
            benchmark,
            simulated: key.simulated,
            gpus,
        })
        .collect();
    Slots { slots, unoffered }
}

/// What every offer of this provider says, whatever the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferTerms {
    /// The provider.
    pub provider: PublicKey,
    /// Region code.
    pub region: String,
    /// Country code.
    pub jurisdiction: Option<String>,
    /// Energy source.
    pub energy: Energy,
    /// Runtimes run.
    pub runtimes: Vec<String>,
    /// Offers live this long.
    pub ttl_secs: u64,
    /// Jobs may reach the network (`runtime.allow_network`).
    pub network: bool,
    /// What bounds each job (the runtime's limits).
    pub limits: SandboxLimits,
}

impl OfferTerms {
    /// The terms from the provider's config.
    pub fn new(provider: PublicKey, config: &ProviderConfig, node: &NodeSection) -> Self {
        Self {
            provider,
            region: config.region.clone(),
            jurisdiction: config.jurisdiction.clone(),
            energy: config.energy,
            runtimes: config.runtimes.clone(),
            ttl_secs: node.offer_ttl_secs,
            network: false,
            limits: SandboxLimits::default(),
        }
    }

    /// The offer of `slot` with `gpu_free` GPUs at `price`, signed at `now`.
    pub fn offer(
        &self,
        slot: &Slot,
        price: Amount,
        gpu_free: u32,
        sequence: u64,
        now: Timestamp,
    ) -> Offer {
        Offer {
            network: self.network,
            limits: self.limits,
            provider: self.provider,
            slot: slot.slot,
            sequence,
            gpu_model: slot.model.clone(),
            vram_mib: slot.vram_mib,
            compute_capability: slot.compute_capability,
            benchmark: slot.benchmark.clone(),
            gpu_total: slot.gpu_total(),
            gpu_free: gpu_free.min(slot.gpu_total()),
            price_per_gpu_hour: price,
            region: self.region.clone(),
            jurisdiction: self.jurisdiction.clone(),
            energy: self.energy,
            simulated: slot.simulated,
            created_at: now,
            expires_at: now.plus_secs(self.ttl_secs),
            runtimes: self.runtimes.clone(),
        }
    }
}

/// One offer per slot, priced by `pricing`, with `gpu_free(slot)` GPUs free,
/// all carrying `sequence`, created at `now` and expiring `terms.ttl_secs`
/// later.
pub fn build_offers(
    terms: &OfferTerms,
    slots: &[Slot],
    pricing: &PricingPolicy,
    gpu_free: impl Fn(&Slot) -> u32,
    sequence: u64,
    now: Timestamp,
) -> Vec<Offer> {
    slots
        .iter()
        .map(|slot| {
            let (price, _) = pricing.price_for(&slot.model);
            terms.offer(slot, price, gpu_free(slot), sequence, now)
        })
        .collect()
}

/// Checks `offer` exactly as a peer will on receipt; an offer that fails
/// would be dropped by every node, so the provider refuses to start with it.
pub fn check(offer: &Offer) -> Result<(), ValidationError> {
    Offer::from_proto(offer.to_proto()).map(|_| ())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Config, SimulatedGpu};
    use crate::provider::inventory::{Gpu, simulated};
    use agora_protocol::Keypair;

    pub(crate) const CONFIG: &str = r#"
[provider]
region = "EU"
jurisdiction = "DE"
energy = "renewable"

[provider.pricing]
default = "1.0"
floor = "0.5"
models = { H100 = "2.5" }

[[simulated_gpu]]
model = "H100"
vram_gib = 80
tflops = 67.0
compute_capability = 9.0
count = 2

[[simulated_gpu]]
model = "A100"
vram_gib = 40
tflops = 19.5
compute_capability = 8.0
count = 3
"#;

    pub(crate) fn inventory(declared: &[SimulatedGpu]) -> Inventory {
        Inventory {
            gpus: simulated(declared, Timestamp(5)),
            ..Inventory::default()
        }
    }

    #[test]
    fn identical_gpus_share_a_slot_numbered_by_model() {
        let config = Config::parse(CONFIG, "test").unwrap();
        let grouped = slots(&inventory(&config.simulated_gpu));
        assert!(grouped.unoffered.is_empty());
        let summary: Vec<(u32, &str, u32)> = grouped
            .slots
            .iter()
            .map(|s| (s.slot, s.model.as_str(), s.gpu_total()))
            .collect();
        // A100 sorts before H100, whatever order the config lists them in.
        assert_eq!(summary, vec![(0, "A100", 3), (1, "H100", 2)]);
        assert_eq!(grouped.slots[0].gpus, vec![2, 3, 4]);

        // Same model, different declared figures: two classes.
        let mut declared = config.simulated_gpu.clone();
        declared[0].tflops = 60.0;
        declared.push(config.simulated_gpu[0].clone());
        let grouped = slots(&inventory(&declared));
        assert_eq!(grouped.slots.len(), 3);
        assert_eq!(grouped.slots[1].benchmark.fp32_mtflops, 60_000);
        assert_eq!(grouped.slots[2].benchmark.fp32_mtflops, 67_000);
    }

    #[test]
    fn unmeasured_gpus_are_not_offered_and_say_why() {
        let inventory = Inventory {
            gpus: vec![Gpu {
                index: 0,
                uuid: "GPU-x".into(),
                model: "H100-80GB-HBM3".into(),
                vram_mib: 81_559,
                compute_capability: 90,
                power_limit_w: 700,
                benchmark: None,
                simulated: false,
            }],
            driver: Some("550.54".into()),
            nvml_unavailable: None,
        };
        let grouped = slots(&inventory);
        assert!(grouped.slots.is_empty());
        assert_eq!(grouped.unoffered.len(), 1);
        assert!(grouped.unoffered[0].reason.contains("not benchmarked"));
    }

    #[test]
    fn offers_carry_the_config_and_pass_peer_validation() {
        let config = Config::parse(CONFIG, "test").unwrap();
        let provider_config = config.provider.clone().unwrap();
        let key = Keypair::from_seed(&[1; 32]);
        let terms = OfferTerms::new(key.public(), &provider_config, &config.node);
        let pricing = PricingPolicy::from_config(&provider_config.pricing).unwrap();
        let grouped = slots(&inventory(&config.simulated_gpu));
        let now = Timestamp(1_000_000);
        let offers = build_offers(&terms, &grouped.slots, &pricing, |s| s.gpu_total(), 7, now);
        assert_eq!(offers.len(), 2);
        let h100 = &offers[1];
        assert_eq!(h100.price_per_gpu_hour, Amount(2_500_000));
        assert_eq!(offers[0].price_per_gpu_hour, Amount(1_000_000));
        assert!(h100.simulated && !h100.verified());
        assert_eq!(
            (h100.region.as_str(), h100.jurisdiction.as_deref()),
            ("EU", Some("DE"))
        );
        assert_eq!(h100.energy, Energy::Renewable);
        assert_eq!((h100.gpu_total, h100.gpu_free, h100.sequence), (2, 2, 7));
        assert_eq!(h100.expires_at, Timestamp(1_060_000));
        for offer in &offers {
            check(offer).unwrap();
            agora_protocol::Signed::sign(offer.clone(), &key).unwrap();
        }
        let mut bad = offers[0].clone();
        bad.region = "EU west".into();
        assert_eq!(check(&bad).unwrap_err().field, "region");
    }
}
