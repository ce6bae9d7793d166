//! Money: amounts in ledger base units, and the one cost formula every
//! party uses.

use std::fmt;
use std::str::FromStr;

/// Base units in one AGR, the ledger's display unit.
pub const UNITS_PER_AGR: u64 = 1_000_000;
const DECIMALS: usize = 6;

/// An amount of ledger base units.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` if it would go negative.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `self - other`, floored at zero.
    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }
}

/// Why a decimal amount did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a non-negative decimal number.
    #[error("'{0}' is not an amount: expected a number like 2.5")]
    Syntax(String),
    /// More than six decimal places.
    #[error("'{0}' has more than {DECIMALS} decimal places")]
    Precision(String),
    /// Too large for the ledger.
    #[error("'{0}' is too large")]
    Overflow(String),
}

impl FromStr for Amount {
    type Err = AmountError;
    /// Parses a decimal number of AGR ("2.5") into base units.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_fixed(s, DECIMALS).map(Amount)
    }
}

/// Parses a non-negative decimal into an integer scaled by `10^decimals`.
pub fn parse_fixed(s: &str, decimals: usize) -> Result<u64, AmountError> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty()
        || !digits(int)
        || !digits(frac)
        || (s.contains('.') && frac.is_empty())
    {
        return Err(AmountError::Syntax(s.to_string()));
    }
    if frac.len() > decimals {
        return Err(AmountError::Precision(s.to_string()));
    }
    let overflow = || AmountError::Overflow(s.to_string());
    let scale = 10u64.checked_pow(decimals as u32).ok_or_else(overflow)?;
    let int_part: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| overflow())?
    };
    let mut frac_part: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| overflow())?
    };
    for _ in frac.len()..decimals {
        frac_part *= 10;
    }
    int_part
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac_part))
        .ok_or_else(overflow)
}

/// Formats an integer scaled by `10^decimals` as a decimal, trimming zeros.
pub fn format_fixed(value: u64, decimals: u32) -> String {
    let scale = 10u64.pow(decimals);
    let (int, frac) = (value / scale, value % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = decimals as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_fixed(self.0, DECIMALS as u32))
    }
}

/// The cost of `gpu_seconds` at `price_per_gpu_hour`:
/// `ceil(price × gpu_seconds / 3600)`, or `None` if it overflows a u64.
///
/// Every party — provider, requester, ledger — uses this one formula, so a
/// receipt's amount is a function of its GPU-seconds and the lease's price.
/// It is monotone in `gpu_seconds`, so cumulative receipts never decrease.
pub fn cost(price_per_gpu_hour: Amount, gpu_seconds: u64) -> Option<Amount> {
    let total = u128::from(price_per_gpu_hour.0) * u128::from(gpu_seconds);
    u64::try_from(total.div_ceil(3600)).ok().map(Amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_decimals() {
        assert_eq!("2.5".parse::<Amount>().unwrap(), Amount(2_500_000));
        assert_eq!("0.000001".parse::<Amount>().unwrap(), Amount(1));
        assert_eq!(".5".parse::<Amount>().unwrap(), Amount(500_000));
        assert_eq!("3".parse::<Amount>().unwrap(), Amount(3_000_000));
        assert_eq!(Amount(2_500_000).to_string(), "2.5");
        assert_eq!(Amount(3_000_000).to_string(), "3");
        assert!(matches!(
            "1.".parse::<Amount>(),
            Err(AmountError::Syntax(_))
        ));
        assert!(matches!(
            "-1".parse::<Amount>(),
            Err(AmountError::Syntax(_))
        ));
        assert!(matches!(
            "1e3".parse::<Amount>(),
            Err(AmountError::Syntax(_))
        ));
        assert!(matches!(
            "0.0000001".parse::<Amount>(),
            Err(AmountError::Precision(_))
        ));
        assert!(matches!(
            "99999999999999999999".parse::<Amount>(),
            Err(AmountError::Overflow(_))
        ));
    }

    #[test]
    fn cost_rounds_up_and_detects_overflow() {
        assert_eq!(cost(Amount(3600), 1), Some(Amount(1)));
        assert_eq!(cost(Amount(1), 1), Some(Amount(1)));
        assert_eq!(cost(Amount(1), 0), Some(Amount(0)));
        assert_eq!(cost(Amount(7200), 3600), Some(Amount(7200)));
        assert_eq!(cost(Amount(u64::MAX), u64::MAX), None);
    }

    proptest! {
        #[test]
        fn cost_is_monotone(price in 0u64..1_000_000_000_000, a in 0u64..10_000_000, b in 0u64..10_000_000) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(cost(Amount(price), lo) <= cost(Amount(price), hi));
        }

        #[test]
        fn format_then_parse_round_trips(v in any::<u64>()) {
            prop_assert_eq!(Amount(v).to_string().parse::<Amount>().unwrap(), Amount(v));
        }
    }
}
