//! `agorad provider price --dry-run ORDER.toml`: what this provider would
//! answer to an order, slot by slot, and why — without touching the node's
//! key, state or network.

use std::fmt::Write as _;

use agora_client::api::JobSpec;
use agora_protocol::amount::format_fixed;
use agora_protocol::{Amount, Energy, Keypair, LeaseTerms, Order, Timestamp};

use crate::config::{Config, ConfigError};
use crate::provider::bidder::{Bidder, Decision};
use crate::provider::inventory::{self, Inventory};
use crate::provider::pricing::PriceSource;
use crate::requester::order::{SpecError, order_from_spec};

/// Why a dry run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    /// The provider config is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The order file cannot become an order.
    #[error("order: {0}")]
    Spec(#[from] SpecError),
}

/// The dry run for `config` and `spec` at `now`: the inventory is the
/// config's simulated GPUs, or else what NVML finds.
pub fn dry_run(config: &Config, spec: &JobSpec, now: Timestamp) -> Result<String, DryRunError> {
    let inventory = if config.simulated_gpu.is_empty() {
        inventory::detect()
    } else {
        Inventory {
            gpus: inventory::simulated(&config.simulated_gpu, now),
            ..Inventory::default()
        }
    };
    explain(config, &inventory, spec, now)
}

/// The dry run for a given inventory: one paragraph per slot (its GPUs, its
/// price and where the price comes from, and the bid or the decline), the
/// GPUs not offered, and a one-line summary.
pub fn explain(
    config: &Config,
    inventory: &Inventory,
    spec: &JobSpec,
    now: Timestamp,
) -> Result<String, DryRunError> {
    let provider_config = config
        .provider
        .as_ref()
        .ok_or_else(|| ConfigError::Invalid {
            field: "provider".into(),
            reason: "the config has no [provider] table; a provider needs its region and pricing"
                .into(),
        })?;
    // Throwaway keys: the node's own key is neither read nor created.
    let provider = Keypair::from_seed(&[0xa1; 32]).public();
    let requester = Keypair::from_seed(&[0x5e; 32]).public();
    let order = order_from_spec(spec, &requester, [0; 16], now)?;
    let mut bidder = Bidder::new(provider, provider_config, &config.node, inventory, now)?;

    let mut out = String::new();
    let simulated = inventory.gpus.iter().filter(|g| g.simulated).count();
    let _ = match (&inventory.nvml_unavailable, simulated) {
        (_, n) if n > 0 => writeln!(out, "inventory: {n} simulated GPUs declared in config"),
        (Some(reason), _) => writeln!(out, "inventory: {reason}; no GPUs to offer"),
        (None, _) => writeln!(
            out,
            "inventory: {} GPUs found through NVML (driver {})",
            inventory.gpus.len(),
            inventory.driver.as_deref().unwrap_or("unknown")
        ),
    };
    let _ = writeln!(
        out,
        "provider: region {}, jurisdiction {}, energy {}, runtimes {}, leases up to {} s",
        provider_config.region,
        provider_config
            .jurisdiction
            .as_deref()
            .unwrap_or("unstated"),
        provider_config.energy,
        provider_config.runtimes.join(", "),
        provider_config.max_lease_secs
    );
    let _ = writeln!(out, "order: {}", describe(&order));
    for a in bidder.assess(&order, now) {
        let source = match a.price_source {
            PriceSource::Model => format!("[provider.pricing.models] entry for {}", a.gpu_model),
            PriceSource::Default => "[provider.pricing] default".to_string(),
            PriceSource::Floor => "raised to the [provider.pricing] floor".to_string(),
        };
        let _ = writeln!(
            out,
            "slot {}: {} x {} ({} free, {} TFLOPS each) at {} AGR/GPU-hour ({source})",
            a.slot,
            a.gpu_total,
            a.gpu_model,
            a.gpu_free,
            format_fixed(a.fp32_mtflops, 3),
            a.price
        );
        let _ = match &a.outcome {
            Ok(score) => writeln!(
                out,
                "  would bid {} AGR/GPU-hour for {} GPUs (score {} AGR per TFLOP-hour)",
                a.price,
                order.gpu_count,
                score_text(score.per_tflop_hour())
            ),
            Err((reason, detail)) => {
                writeln!(out, "  would decline: {}: {detail}", reason_name(*reason))
            }
        };
    }
    for gpu in bidder.unoffered() {
        let _ = writeln!(
            out,
            "not offered: GPU {} ({}): {}",
            gpu.index, gpu.model, gpu.reason
        );
    }
    // The real engine's own answer, from this throwaway bidder. The
    // requester's balance is not known here: take it as ample, and say
    // what a bid would need of it.
    bidder.set_balance(requester, Ok(Amount(u64::MAX)), now);
    let _ = match bidder.on_order(&order, now) {
        Decision::Bid(bid) => writeln!(
            out,
            "summary: would bid {} AGR/GPU-hour for {} x {} from slot {}, if the requester's \
             balance on the ledger covers the escrow ({} AGR)",
            bid.price_per_gpu_hour,
            bid.gpu_count,
            bid.gpu_model,
            bid.slot,
            LeaseTerms::required_escrow(
                bid.price_per_gpu_hour,
                bid.gpu_count,
                order.max_duration_secs
            )
            .map_or_else(|| "overflows".to_string(), |a| a.to_string())
        ),
        Decision::Decline(decline) => writeln!(
            out,
            "summary: would decline: {}: {}",
            reason_name(decline.reason),
            decline.detail
        ),
        Decision::Ignore(why) => writeln!(out, "summary: would not answer: {why}"),
        Decision::NeedsBalance(_) => writeln!(out, "summary: would read the requester's balance"),
    };
    Ok(out)
}

/// The order in one line.
fn describe(order: &Order) -> String {
    let mut parts = vec![format!(
        "{} x {}",
        order.gpu_count,
        order.gpu_model.as_deref().unwrap_or("any GPU")
    )];
    if order.min_vram_mib > 0 {
        parts.push(format!("vram >= {} GiB", order.min_vram_mib / 1024));
    }
    if order.min_fp32_mtflops > 0 {
        parts.push(format!(
            "tflops >= {}",
            format_fixed(order.min_fp32_mtflops, 3)
        ));
    }
    if let Some(region) = &order.region {
        parts.push(format!("region {region}"));
    }
    if let Some(j) = &order.jurisdiction {
        parts.push(format!("jurisdiction {j}"));
    }
    if order.energy != Energy::Unknown {
        parts.push(format!("energy {}", order.energy));
    }
    parts.push(format!(
        "max {} AGR/GPU-hour for {} s",
        order.max_price_per_gpu_hour, order.max_duration_secs
    ));
    parts.join(", ")
}

/// Base units per TFLOP-hour as AGR.
fn score_text(per_tflop_hour: u128) -> String {
    format_fixed(u64::try_from(per_tflop_hour).unwrap_or(u64::MAX), 6)
}

/// The reason as the wire and the API name it (`no_capacity`, `region`).
fn reason_name(reason: agora_protocol::DeclineReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{reason:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::offers::tests::CONFIG;
    use std::path::Path;

    const ORDER: &str = r#"
[resources]
gpus = 2
gpu_model = "H100"

[constraints]
region = "EU"
allow_simulated = true

[market]
max_price_per_gpu_hour = "3"
max_duration_secs = 600
"#;

    fn run(order: &str) -> String {
        let config = Config::parse(CONFIG, "provider.toml").unwrap();
        let spec = agora_client::spec::parse(order, Path::new("order.toml")).unwrap();
        dry_run(&config, &spec, Timestamp(1_000_000)).unwrap()
    }

    #[test]
    fn a_fitting_order_shows_the_bid_and_where_the_price_comes_from() {
        let out = run(ORDER);
        assert!(out.contains("inventory: 5 simulated GPUs"), "{out}");
        assert!(
            out.contains("provider: region EU, jurisdiction DE"),
            "{out}"
        );
        assert!(
            out.contains("order: 2 x H100, region EU, max 3 AGR"),
            "{out}"
        );
        assert!(out.contains("slot 1: 2 x H100"), "{out}");
        assert!(
            out.contains("[provider.pricing.models] entry for H100"),
            "{out}"
        );
        assert!(out.contains("[provider.pricing] default"), "{out}");
        assert!(
            out.contains("would bid 2.5 AGR/GPU-hour for 2 GPUs (score 0.037313"),
            "{out}"
        );
        assert!(
            out.contains("would decline: model: offers A100, not H100"),
            "{out}"
        );
        assert!(
            out.contains("summary: would bid 2.5 AGR/GPU-hour for 2 x H100 from slot 1"),
            "{out}"
        );
    }

    #[test]
    fn a_wrong_region_names_the_decline_reason() {
        let out = run(&ORDER.replace("\"EU\"", "\"US\""));
        assert!(
            out.contains("would decline: region: region EU, not US"),
            "{out}"
        );
        assert!(
            out.contains("summary: would decline: region: region EU, not US"),
            "{out}"
        );
        assert!(!out.contains("would bid"), "{out}");
    }

    #[test]
    fn bad_input_is_an_error_naming_the_key() {
        let config = Config::parse(CONFIG, "provider.toml").unwrap();
        let spec =
            agora_client::spec::parse(&ORDER.replace("\"3\"", "\"0\""), Path::new("order.toml"))
                .unwrap();
        let err = dry_run(&config, &spec, Timestamp(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("market.max_price_per_gpu_hour"), "{err}");
        let err = explain(
            &Config::default(),
            &Inventory::default(),
            &spec,
            Timestamp(1),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("[provider]"), "{err}");
    }

    #[test]
    fn without_gpus_it_says_why() {
        let mut config = Config::parse(CONFIG, "provider.toml").unwrap();
        config.simulated_gpu.clear();
        let spec = agora_client::spec::parse(ORDER, Path::new("order.toml")).unwrap();
        let inventory = Inventory {
            nvml_unavailable: Some("no NVIDIA driver found".into()),
            ..Inventory::default()
        };
        let out = explain(&config, &inventory, &spec, Timestamp(1_000_000)).unwrap();
        assert!(
            out.contains("inventory: no NVIDIA driver found; no GPUs to offer"),
            "{out}"
        );
        assert!(
            out.contains("summary: would decline: no_capacity: no GPUs"),
            "{out}"
        );
    }
}
