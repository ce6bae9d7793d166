//! Declarative pricing: a price per GPU model, a default, and a floor.

use std::collections::BTreeMap;

use agora_protocol::Amount;

use crate::config::{ConfigError, PricingConfig, agr};

/// Where a price came from, for `price --dry-run` explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// A per-model entry.
    Model,
    /// The default.
    Default,
    /// Raised to the floor.
    Floor,
}

/// A validated pricing policy.
#[derive(Debug, Clone)]
pub struct PricingPolicy {
    default: Amount,
    floor: Amount,
    /// Keys lowercased.
    models: BTreeMap<String, Amount>,
}

impl PricingPolicy {
    /// Validates the config: every price parses, and nothing is zero.
    pub fn from_config(config: &PricingConfig) -> Result<Self, ConfigError> {
        let default = agr("provider.pricing.default", &config.default)?;
        let floor = agr("provider.pricing.floor", &config.floor)?;
        let mut models = BTreeMap::new();
        for (model, price) in &config.models {
            let field = format!("provider.pricing.models.{model}");
            let price = agr(&field, price)?;
            if price < floor {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!(
                        "{price} is below the floor {floor}; raise it or lower the floor"
                    ),
                });
            }
            models.insert(model.to_ascii_lowercase(), price);
        }
        if default == Amount::ZERO {
            return Err(ConfigError::Invalid {
                field: "provider.pricing.default".into(),
                reason: "a price of 0 would rent GPUs for free; set a positive price".into(),
            });
        }
        Ok(Self {
            default,
            floor,
            models,
        })
    }

    /// The price per GPU-hour for `model`, and why.
    pub fn price_for(&self, model: &str) -> (Amount, PriceSource) {
        let (price, source) = match self.models.get(&model.to_ascii_lowercase()) {
            Some(p) => (*p, PriceSource::Model),
            None => (self.default, PriceSource::Default),
        };
        if price < self.floor {
            (self.floor, PriceSource::Floor)
        } else {
            (price, source)
        }
    }

    /// The floor.
    pub fn floor(&self) -> Amount {
        self.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(default: &str, floor: &str, models: &[(&str, &str)]) -> PricingConfig {
        PricingConfig {
            default: default.into(),
            floor: floor.into(),
            models: models
                .iter()
                .map(|(m, p)| (m.to_string(), p.to_string()))
                .collect(),
        }
    }

    #[test]
    fn model_then_default_then_floor() {
        let policy = PricingPolicy::from_config(&config("1.0", "1.5", &[("H100", "2.5")])).unwrap();
        assert_eq!(
            policy.price_for("h100"),
            (Amount(2_500_000), PriceSource::Model)
        );
        assert_eq!(
            policy.price_for("A100"),
            (Amount(1_500_000), PriceSource::Floor)
        );
        let policy = PricingPolicy::from_config(&config("2.0", "1.0", &[])).unwrap();
        assert_eq!(
            policy.price_for("A100"),
            (Amount(2_000_000), PriceSource::Default)
        );
    }

    #[test]
    fn mistakes_that_would_bid_nothing_or_free_are_refused() {
        let err = PricingPolicy::from_config(&config("abc", "1", &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("provider.pricing.default"), "{err}");
        let err = PricingPolicy::from_config(&config("0", "0", &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("free"), "{err}");
        let err = PricingPolicy::from_config(&config("2", "1.5", &[("T4", "0.5")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("models.T4"), "{err}");
    }
}
