//! The node's configuration: one TOML file with defaults; CLI flags
//! override it.

use std::collections::BTreeMap;
use std::path::Path;

use agora_protocol::{Amount, Energy};
use serde::Deserialize;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What toml said, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config: {field}: {reason}")]
    Invalid {
        /// The dotted key.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Provider settings; absent for a requester-only node.
    #[serde(default)]
    pub provider: Option<ProviderConfig>,
    /// GPUs a testnet provider declares instead of detecting.
    #[serde(default)]
    pub simulated_gpu: Vec<SimulatedGpu>,
}

/// How a provider prices, where it is, and what it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Region code offered, e.g. "EU".
    pub region: String,
    /// Two-letter country code, if stated.
    #[serde(default)]
    pub jurisdiction: Option<String>,
    /// Energy source.
    #[serde(default = "default_energy")]
    pub energy: Energy,
    /// Runtimes this provider runs.
    #[serde(default = "default_runtimes")]
    pub runtimes: Vec<String>,
    /// Longest lease accepted, seconds.
    #[serde(default = "default_max_lease_secs")]
    pub max_lease_secs: u64,
    /// Pricing policy.
    pub pricing: PricingConfig,
}

fn default_energy() -> Energy {
    Energy::Unknown
}
fn default_runtimes() -> Vec<String> {
    vec!["process".into()]
}
fn default_max_lease_secs() -> u64 {
    24 * 3600
}

/// Declarative pricing: per model, with a default and a floor, all in AGR
/// per GPU-hour written as decimal strings ("2.5").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// Price for models not listed.
    pub default: String,
    /// Never bid below this.
    pub floor: String,
    /// Per-model prices; the model name matches case-insensitively.
    #[serde(default)]
    pub models: BTreeMap<String, String>,
}

/// A declared GPU class for testnets; every offer of such a node says
/// `simulated`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedGpu {
    /// Model name.
    pub model: String,
    /// VRAM per GPU, GiB.
    pub vram_gib: u64,
    /// FP32 TFLOPS per GPU (decimal string or number).
    pub tflops: f64,
    /// Memory bandwidth, GB/s.
    #[serde(default)]
    pub bandwidth_gbps: u64,
    /// Compute capability, e.g. 9.0.
    #[serde(default)]
    pub compute_capability: f64,
    /// How many.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl Config {
    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }
}

/// Parses an AGR decimal from config, naming the key on error.
pub(crate) fn agr(field: &str, value: &str) -> Result<Amount, ConfigError> {
    value.parse::<Amount>().map_err(|e| ConfigError::Invalid {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[provider]
region = "EU"
jurisdiction = "DE"
energy = "renewable"

[provider.pricing]
default = "2.0"
floor = "1.2"
models = { H100 = "2.5" }

[[simulated_gpu]]
model = "H100"
vram_gib = 80
tflops = 67.0
count = 2
"#;

    #[test]
    fn parses_the_documented_example() {
        let config = Config::parse(EXAMPLE, "example").unwrap();
        let provider = config.provider.unwrap();
        assert_eq!(provider.energy, Energy::Renewable);
        assert_eq!(provider.pricing.models["H100"], "2.5");
        assert_eq!(config.simulated_gpu[0].count, 2);
    }

    #[test]
    fn a_typo_is_an_error_with_its_location() {
        let err = Config::parse(&EXAMPLE.replace("floor", "flor"), "provider.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("provider.toml"), "{err}");
        assert!(err.contains("flor"), "{err}");
    }
}
