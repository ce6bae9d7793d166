//! The simulated hardware of testnet providers: assorted, and a pure
//! function of the provider's index, so tests can rely on it.
//!
//! | index | GPUs | VRAM | TFLOPS | region / jurisdiction | energy | AGR/GPU-h |
//! |---|---|---|---|---|---|---|
//! | 0 | 2× H100 | 80 GiB | 67.0 | EU / DE | renewable | 2.5 |
//! | 1 | 4× A100 | 80 GiB | 19.5 | US / US | mixed | 1.2 |
//! | 2 | 8× RTX-4090 | 24 GiB | 82.6 | APAC / SG | fossil | 0.4 |
//! | 3 | 4× L40S | 48 GiB | 91.6 | EU / FR | renewable | 0.9 |
//! | 4 | 8× H100 | 80 GiB | 67.0 | US / US | fossil | 2.1 |
//! | 5 | 2× A100 | 40 GiB | 19.5 | EU / NL | renewable | 1.0 |
//! | 6 | 2× RTX-4090 | 24 GiB | 82.6 | EU / DE | mixed | 0.5 |
//! | 7 | 8× L40S | 48 GiB | 91.6 | APAC / JP | renewable | 1.1 |
//!
//! From index 8 on the table repeats, each round 0.05 AGR dearer than the
//! one before (index 8 is index 0 at 2.55).

use std::fmt::Write as _;

use agora_protocol::{Amount, Energy};

/// One provider's declared GPUs and market terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderProfile {
    /// GPU model, as offers show it ("H100").
    pub gpu_model: &'static str,
    /// How many GPUs.
    pub gpu_count: u32,
    /// VRAM per GPU, GiB.
    pub vram_gib: u64,
    /// FP32 TFLOPS per GPU.
    pub tflops: f64,
    /// Compute capability.
    pub compute_capability: f64,
    /// Memory bandwidth, GB/s.
    pub bandwidth_gbps: u64,
    /// Region code.
    pub region: &'static str,
    /// Two-letter country code.
    pub jurisdiction: &'static str,
    /// Energy source.
    pub energy: Energy,
    /// Price per GPU-hour.
    pub price: Amount,
}

/// The base table, indexed by `index % 8`.
const TABLE: [ProviderProfile; 8] = [
    profile(
        "H100",
        2,
        80,
        67.0,
        9.0,
        3350,
        ("EU", "DE"),
        Energy::Renewable,
        2_500_000,
    ),
    profile(
        "A100",
        4,
        80,
        19.5,
        8.0,
        2039,
        ("US", "US"),
        Energy::Mixed,
        1_200_000,
    ),
    profile(
        "RTX-4090",
        8,
        24,
        82.6,
        8.9,
        1008,
        ("APAC", "SG"),
        Energy::Fossil,
        400_000,
    ),
    profile(
        "L40S",
        4,
        48,
        91.6,
        8.9,
        864,
        ("EU", "FR"),
        Energy::Renewable,
        900_000,
    ),
    profile(
        "H100",
        8,
        80,
        67.0,
        9.0,
        3350,
        ("US", "US"),
        Energy::Fossil,
        2_100_000,
    ),
    profile(
        "A100",
        2,
        40,
        19.5,
        8.0,
        1555,
        ("EU", "NL"),
        Energy::Renewable,
        1_000_000,
    ),
    profile(
        "RTX-4090",
        2,
        24,
        82.6,
        8.9,
        1008,
        ("EU", "DE"),
        Energy::Mixed,
        500_000,
    ),
    profile(
        "L40S",
        8,
        48,
        91.6,
        8.9,
        864,
        ("APAC", "JP"),
        Energy::Renewable,
        1_100_000,
    ),
];

#[allow(clippy::too_many_arguments)]
const fn profile(
    gpu_model: &'static str,
    gpu_count: u32,
    vram_gib: u64,
    tflops: f64,
    compute_capability: f64,
    bandwidth_gbps: u64,
    (region, jurisdiction): (&'static str, &'static str),
    energy: Energy,
    price: u64,
) -> ProviderProfile {
    ProviderProfile {
        gpu_model,
        gpu_count,
        vram_gib,
        tflops,
        compute_capability,
        bandwidth_gbps,
        region,
        jurisdiction,
        energy,
        price: Amount(price),
    }
}

/// Each full round of the table adds this to the price.
const ROUND_SURCHARGE: u64 = 50_000;

/// The profile of provider `index` (provider-0 is index 0).
pub fn provider_profile(index: usize) -> ProviderProfile {
    let base = &TABLE[index % TABLE.len()];
    let round = (index / TABLE.len()) as u64;
    ProviderProfile {
        price: Amount(
            base.price
                .0
                .saturating_add(round.saturating_mul(ROUND_SURCHARGE)),
        ),
        ..base.clone()
    }
}

impl ProviderProfile {
    /// FP32 milli-TFLOPS per GPU, as offers and bids carry it.
    pub fn fp32_mtflops(&self) -> u64 {
        (self.tflops * 1000.0).round() as u64
    }

    /// The never-bid-below floor: half the price.
    pub fn floor(&self) -> Amount {
        Amount(self.price.0 / 2)
    }

    /// The `[provider]` and `[[simulated_gpu]]` sections of `agorad.toml`.
    pub fn config_toml(&self) -> String {
        let mut toml = self.provider_toml("process");
        let _ = writeln!(toml);
        let _ = writeln!(toml, "[[simulated_gpu]]");
        let _ = writeln!(toml, "model = \"{}\"", self.gpu_model);
        let _ = writeln!(toml, "vram_gib = {}", self.vram_gib);
        let _ = writeln!(toml, "tflops = {:?}", self.tflops);
        let _ = writeln!(toml, "compute_capability = {:?}", self.compute_capability);
        let _ = writeln!(toml, "bandwidth_gbps = {}", self.bandwidth_gbps);
        let _ = writeln!(toml, "count = {}", self.gpu_count);
        toml
    }

    /// The `[provider]` section (with its pricing) for `runtime`.
    pub fn provider_toml(&self, runtime: &str) -> String {
        let mut toml = String::new();
        let _ = writeln!(toml, "[provider]");
        let _ = writeln!(toml, "region = \"{}\"", self.region);
        let _ = writeln!(toml, "jurisdiction = \"{}\"", self.jurisdiction);
        let _ = writeln!(toml, "energy = \"{}\"", energy_key(self.energy));
        let _ = writeln!(toml, "runtimes = [\"{runtime}\"]");
        let _ = writeln!(toml);
        let _ = writeln!(toml, "[provider.pricing]");
        let _ = writeln!(toml, "default = \"{}\"", self.price);
        let _ = writeln!(toml, "floor = \"{}\"", self.floor());
        let _ = writeln!(
            toml,
            "models = {{ \"{}\" = \"{}\" }}",
            self.gpu_model, self.price
        );
        toml
    }
}

/// The config spelling of an energy source (serde's lowercase names).
fn energy_key(energy: Energy) -> &'static str {
    match energy {
        Energy::Unknown => "unknown",
        Energy::Renewable => "renewable",
        Energy::Mixed => "mixed",
        Energy::Fossil => "fossil",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_four_are_the_documented_ones() {
        let p0 = provider_profile(0);
        assert_eq!(
            (
                p0.gpu_model,
                p0.gpu_count,
                p0.vram_gib,
                p0.region,
                p0.jurisdiction
            ),
            ("H100", 2, 80, "EU", "DE")
        );
        assert_eq!(
            (p0.energy, p0.price, p0.fp32_mtflops()),
            (Energy::Renewable, Amount(2_500_000), 67_000)
        );
        assert_eq!(provider_profile(1).gpu_model, "A100");
        assert_eq!(provider_profile(2).fp32_mtflops(), 82_600);
        assert_eq!(provider_profile(3).price, Amount(900_000));
    }

    #[test]
    fn later_rounds_repeat_the_table_a_little_dearer() {
        let (p0, p8, p16) = (
            provider_profile(0),
            provider_profile(8),
            provider_profile(16),
        );
        assert_eq!(p8.gpu_model, p0.gpu_model);
        assert_eq!(p8.price, Amount(2_550_000));
        assert_eq!(p16.price, Amount(2_600_000));
    }

    #[test]
    fn only_provider_0_has_h100_in_the_eu_among_the_first_four() {
        let eu_h100: Vec<usize> = (0..4)
            .filter(|&i| {
                let p = provider_profile(i);
                p.gpu_model == "H100" && p.region == "EU"
            })
            .collect();
        assert_eq!(eu_h100, vec![0]);
    }

    #[test]
    fn the_config_is_what_agorad_reads() {
        let profile = provider_profile(2);
        let text = profile.config_toml();
        let config = agora_node::config::Config::parse(&text, "provider-2").unwrap();
        let provider = config.provider.unwrap();
        assert_eq!(
            (provider.region.as_str(), provider.energy),
            ("APAC", Energy::Fossil)
        );
        assert_eq!(provider.jurisdiction.as_deref(), Some("SG"));
        assert_eq!(
            (
                provider.pricing.default.as_str(),
                provider.pricing.floor.as_str()
            ),
            ("0.4", "0.2")
        );
        let gpus = &config.simulated_gpu;
        assert_eq!(gpus.len(), 1);
        assert_eq!(
            (gpus[0].model.as_str(), gpus[0].count, gpus[0].tflops),
            ("RTX-4090", 8, 82.6)
        );
    }
}
