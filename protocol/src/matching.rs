//! Matching: which offers can serve an order, how bids score, and who wins.
//!
//! The score is the price per unit of *measured* compute — AGR per FP32
//! TFLOP-hour — adjusted by reputation:
//!
//! ```text
//! score = price × 1000 / fp32_mtflops × 2000 / (1000 + reputation‰)
//! ```
//!
//! Lower is better. A provider with full reputation (1000‰) pays no
//! penalty; one with none (0‰) competes as if twice as expensive. Scores
//! compare exactly by cross-multiplication in 128 bits; no floating point.
//!
//! The auction winner is the bid with the lowest score; ties go to the
//! lower price, then the higher TFLOPS, then the earlier bid, then the
//! lower provider key, then the lower slot — so every node that sees the
//! same bids picks the same winner, whatever order they arrived in.

use std::cmp::Ordering;

use crate::amount::Amount;
use crate::identity::PublicKey;
use crate::message::Signed;
use crate::offer::{Energy, Offer};
use crate::order::{Bid, DeclineReason, Order};
use crate::time::Timestamp;

/// Why an offer cannot serve an order: the reason and a sentence.
pub type Misfit = (DeclineReason, String);

/// Checks whether `offer` can serve `order` at `now`. Reports the first
/// failing reason, in this order: expired, runtime, network, sandbox limits, simulated, verified,
/// model, VRAM, compute (TFLOPS, then compute capability), region,
/// jurisdiction, energy, capacity, price.
pub fn fit(order: &Order, offer: &Offer, now: Timestamp) -> Result<(), Misfit> {
    if now >= order.expires_at {
        return Err((
            DeclineReason::Expired,
            format!("the order expired at {}", order.expires_at),
        ));
    }
    if !offer
        .runtimes
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&order.runtime))
    {
        return Err((
            DeclineReason::Runtime,
            format!(
                "runtime {:?} is not offered (offered: {})",
                order.runtime,
                offer.runtimes.join(", ")
            ),
        ));
    }
    if order.network && !offer.network {
        return Err((
            DeclineReason::Network,
            "the job needs network access and this provider gives jobs none".into(),
        ));
    }
    if let Err(reason) = offer.limits.covers(&order.needs) {
        return Err((DeclineReason::Limits, reason));
    }
    if offer.simulated && !order.allow_simulated {
        return Err((
            DeclineReason::Simulated,
            "the GPUs are simulated and the order does not allow that".into(),
        ));
    }
    if order.require_verified && !offer.verified() {
        return Err((
            DeclineReason::Unverified,
            "the order requires measured, non-simulated GPUs".into(),
        ));
    }
    if let Some(model) = &order.gpu_model
        && !offer.gpu_model.eq_ignore_ascii_case(model)
    {
        return Err((
            DeclineReason::Model,
            format!("offers {}, not {model}", offer.gpu_model),
        ));
    }
    if offer.vram_mib < order.min_vram_mib {
        return Err((
            DeclineReason::Vram,
            format!(
                "{} MiB of VRAM < {} MiB wanted",
                offer.vram_mib, order.min_vram_mib
            ),
        ));
    }
    if offer.benchmark.fp32_mtflops < order.min_fp32_mtflops {
        return Err((
            DeclineReason::Compute,
            format!(
                "{} FP32 TFLOPS < {} wanted",
                crate::amount::format_fixed(offer.benchmark.fp32_mtflops, 3),
                crate::amount::format_fixed(order.min_fp32_mtflops, 3)
            ),
        ));
    }
    if offer.compute_capability < order.min_compute_capability {
        return Err((
            DeclineReason::Compute,
            format!(
                "compute capability {} < {} wanted",
                crate::amount::format_fixed(u64::from(offer.compute_capability), 1),
                crate::amount::format_fixed(u64::from(order.min_compute_capability), 1)
            ),
        ));
    }
    if let Some(region) = &order.region
        && !offer.region.eq_ignore_ascii_case(region)
    {
        return Err((
            DeclineReason::Region,
            format!("region {}, not {region}", offer.region),
        ));
    }
    if let Some(jurisdiction) = &order.jurisdiction
        && offer.jurisdiction.as_deref() != Some(jurisdiction.as_str())
    {
        return Err((
            DeclineReason::Jurisdiction,
            format!(
                "jurisdiction {}, not {jurisdiction}",
                offer.jurisdiction.as_deref().unwrap_or("unstated")
            ),
        ));
    }
    if order.energy != Energy::Unknown && offer.energy != order.energy {
        return Err((
            DeclineReason::Energy,
            format!("energy {}, not {}", offer.energy, order.energy),
        ));
    }
    if offer.gpu_free < order.gpu_count {
        return Err((
            DeclineReason::NoCapacity,
            format!("{} GPUs free, {} wanted", offer.gpu_free, order.gpu_count),
        ));
    }
    if offer.price_per_gpu_hour > order.max_price_per_gpu_hour {
        return Err((
            DeclineReason::Price,
            format!(
                "price {} AGR/GPU-h is above the order's {}",
                offer.price_per_gpu_hour, order.max_price_per_gpu_hour
            ),
        ));
    }
    Ok(())
}

/// A bid's score: cost per unit of measured compute, reputation-adjusted.
/// Lower is better. Compare with `Ord`.
#[derive(Debug, Clone, Copy)]
pub struct Score {
    num: u128,
    den: u128,
}

impl Score {
    /// The score of `price` per GPU-hour for `fp32_mtflops` per GPU, with
    /// `reputation_permille` (clamped to 0..=1000).
    pub fn new(price: Amount, fp32_mtflops: u64, reputation_permille: u16) -> Self {
        let rep = u128::from(reputation_permille.min(1000));
        Self {
            num: u128::from(price.0) * 1000 * 2000,
            den: u128::from(fp32_mtflops.max(1)) * (1000 + rep),
        }
    }

    /// Base units per TFLOP-hour, rounded down (for display).
    pub fn per_tflop_hour(&self) -> u128 {
        self.num / self.den
    }
}

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        // num ≤ 2^64·2·10^6 < 2^85, den ≤ 10^8·2000 < 2^38: products fit in 128 bits.
        (self.num * other.den).cmp(&(other.num * self.den))
    }
}

/// Whether a bid is admissible for `order` at `now`: for this order, enough
/// GPUs, within the price, of the model asked for, and still held.
pub fn bid_admissible(order: &Order, bid: &Bid, now: Timestamp) -> bool {
    bid.order_id == order.id()
        && bid.gpu_count >= order.gpu_count
        && bid.price_per_gpu_hour <= order.max_price_per_gpu_hour
        && bid.fp32_mtflops >= order.min_fp32_mtflops
        && (order.allow_simulated || !bid.simulated)
        && order
            .gpu_model
            .as_ref()
            .is_none_or(|m| bid.gpu_model.eq_ignore_ascii_case(m))
        && bid.hold_until > now
}

/// The deterministic order of bids: best first.
pub fn compare_bids(a: &Bid, b: &Bid, reputation: &impl Fn(&PublicKey) -> u16) -> Ordering {
    let score = |bid: &Bid| {
        Score::new(
            bid.price_per_gpu_hour,
            bid.fp32_mtflops,
            reputation(&bid.provider),
        )
    };
    score(a)
        .cmp(&score(b))
        .then_with(|| a.price_per_gpu_hour.cmp(&b.price_per_gpu_hour))
        .then_with(|| b.fp32_mtflops.cmp(&a.fp32_mtflops))
        .then_with(|| a.created_at.cmp(&b.created_at))
        .then_with(|| a.provider.cmp(&b.provider))
        .then_with(|| a.slot.cmp(&b.slot))
}

/// The winning bid for `order` among `bids` at `now`, or `None` if no bid
/// is admissible.
pub fn auction_winner<'a>(
    order: &Order,
    bids: &'a [Signed<Bid>],
    reputation: impl Fn(&PublicKey) -> u16,
    now: Timestamp,
) -> Option<&'a Signed<Bid>> {
    bids.iter()
        .filter(|b| bid_admissible(order, b.message(), now))
        .min_by(|a, b| compare_bids(a.message(), b.message(), &reputation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::offer::tests::sample_offer;
    use crate::order::tests::sample_order;
    use proptest::prelude::*;

    #[test]
    fn each_mismatch_names_its_reason() {
        let provider = Keypair::from_seed(&[1; 32]);
        let requester = Keypair::from_seed(&[2; 32]);
        let offer = sample_offer(&provider);
        let order = sample_order(&requester);
        let now = Timestamp(2_000);
        fit(&order, &offer, now).unwrap();

        type Case = (DeclineReason, Box<dyn Fn(&mut Order, &mut Offer)>);
        let cases: Vec<Case> = vec![
            (
                DeclineReason::Expired,
                Box::new(|o, _| o.expires_at = Timestamp(2_000)),
            ),
            (
                DeclineReason::Runtime,
                Box::new(|o, _| o.runtime = "ray".into()),
            ),
            (DeclineReason::Network, Box::new(|o, _| o.network = true)),
            (
                DeclineReason::Limits,
                Box::new(|o, f| {
                    f.limits.memory_mib = 1024;
                    o.needs.memory_mib = 2048;
                }),
            ),
            (
                DeclineReason::Simulated,
                Box::new(|o, _| o.allow_simulated = false),
            ),
            (
                DeclineReason::Unverified,
                Box::new(|o, _| o.require_verified = true),
            ),
            (
                DeclineReason::Model,
                Box::new(|o, _| o.gpu_model = Some("A100".into())),
            ),
            (
                DeclineReason::Vram,
                Box::new(|o, _| o.min_vram_mib = 81 * 1024),
            ),
            (
                DeclineReason::Compute,
                Box::new(|o, _| o.min_fp32_mtflops = 60_001),
            ),
            (
                DeclineReason::Compute,
                Box::new(|o, _| o.min_compute_capability = 100),
            ),
            (
                DeclineReason::Region,
                Box::new(|o, _| o.region = Some("US".into())),
            ),
            (
                DeclineReason::Jurisdiction,
                Box::new(|o, _| o.jurisdiction = Some("FR".into())),
            ),
            (
                DeclineReason::Energy,
                Box::new(|o, _| o.energy = Energy::Fossil),
            ),
            (DeclineReason::NoCapacity, Box::new(|o, _| o.gpu_count = 9)),
            (
                DeclineReason::Price,
                Box::new(|o, _| o.max_price_per_gpu_hour = Amount(1_999_999)),
            ),
        ];
        for (reason, mutate) in cases {
            let (mut order, mut offer) = (order.clone(), offer.clone());
            mutate(&mut order, &mut offer);
            let (got, detail) = fit(&order, &offer, now).unwrap_err();
            assert_eq!(got, reason, "{detail}");
            assert!(!detail.is_empty());
        }
    }

    #[test]
    fn model_and_region_match_ignoring_case() {
        let offer = sample_offer(&Keypair::from_seed(&[1; 32]));
        let mut order = sample_order(&Keypair::from_seed(&[2; 32]));
        order.gpu_model = Some("h100".into());
        order.region = Some("eu".into());
        fit(&order, &offer, Timestamp(2_000)).unwrap();
    }

    #[test]
    fn cheapest_compute_beats_cheapest_card() {
        // 2.0 AGR for 60 TFLOPS beats 1.0 AGR for 20 TFLOPS.
        let fast = Score::new(Amount(2_000_000), 60_000, 1000);
        let slow = Score::new(Amount(1_000_000), 20_000, 1000);
        assert!(fast < slow);
        // Reputation matters: same offer, no reputation, scores twice as high.
        assert_eq!(
            Score::new(Amount(2_000_000), 60_000, 0).per_tflop_hour(),
            2 * fast.per_tflop_hour()
        );
    }

    fn bid(order: &Order, key: &Keypair, price: u64, mtflops: u64, created: u64) -> Signed<Bid> {
        Signed::sign(
            Bid {
                limits: crate::limits::SandboxLimits::default(),
                order_id: order.id(),
                provider: key.public(),
                slot: 0,
                price_per_gpu_hour: Amount(price),
                gpu_count: order.gpu_count,
                gpu_model: "H100".into(),
                fp32_mtflops: mtflops,
                hold_until: Timestamp(10_000),
                created_at: Timestamp(created),
                simulated: true,
            },
            key,
        )
        .unwrap()
    }

    #[test]
    fn auction_picks_best_score_and_skips_inadmissible_bids() {
        let order = sample_order(&Keypair::from_seed(&[9; 32]));
        let keys: Vec<Keypair> = (0..4u8).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
        let now = Timestamp(2_000);
        let mut too_dear = bid(&order, &keys[0], 3_000_001, 500_000, 1)
            .message()
            .clone();
        too_dear.hold_until = Timestamp(10_000);
        let bids = vec![
            Signed::sign(too_dear, &keys[0]).unwrap(),
            bid(&order, &keys[1], 2_000_000, 60_000, 1),
            bid(&order, &keys[2], 2_500_000, 90_000, 1), // best per TFLOP
            bid(&order, &keys[3], 1_000_000, 10_000, 1),
        ];
        let winner = auction_winner(&order, &bids, |_| 1000, now).unwrap();
        assert_eq!(winner.signer(), &keys[2].public());
        // Held GPUs released: that bid no longer counts.
        assert!(auction_winner(&order, &bids, |_| 1000, Timestamp(10_000)).is_none());
        assert!(auction_winner(&order, &[], |_| 1000, now).is_none());
    }

    #[test]
    fn ties_break_by_price_then_tflops_then_time_then_key() {
        let order = sample_order(&Keypair::from_seed(&[9; 32]));
        let a = Keypair::from_seed(&[1; 32]);
        let b = Keypair::from_seed(&[2; 32]);
        let now = Timestamp(2_000);
        // Same score, same price: the earlier bid wins.
        let bids = vec![
            bid(&order, &a, 2_000_000, 60_000, 5),
            bid(&order, &b, 2_000_000, 60_000, 4),
        ];
        assert_eq!(
            auction_winner(&order, &bids, |_| 500, now)
                .unwrap()
                .signer(),
            &b.public()
        );
        // Same score, lower price wins (cheaper and slower in proportion).
        let bids = vec![
            bid(&order, &a, 2_000_000, 60_000, 1),
            bid(&order, &b, 1_000_000, 30_000, 1),
        ];
        assert_eq!(
            auction_winner(&order, &bids, |_| 500, now)
                .unwrap()
                .signer(),
            &b.public()
        );
    }

    proptest! {
        #[test]
        fn the_winner_does_not_depend_on_arrival_order(
            specs in prop::collection::vec((1u64..3_000_000, 1u64..100_000, 0u64..5, 0u16..1000), 1..8),
            seed in any::<u64>(),
        ) {
            let order = sample_order(&Keypair::from_seed(&[9; 32]));
            let keys: Vec<Keypair> = (0..specs.len()).map(|i| Keypair::from_seed(&[i as u8 + 1; 32])).collect();
            let bids: Vec<Signed<Bid>> = specs
                .iter()
                .zip(&keys)
                .map(|((price, tflops, created, _), key)| bid(&order, key, *price, *tflops, *created))
                .collect();
            let reps: std::collections::HashMap<PublicKey, u16> =
                specs.iter().zip(&keys).map(|(s, k)| (k.public(), s.3)).collect();
            let reputation = |k: &PublicKey| reps.get(k).copied().unwrap_or(0);
            let first = auction_winner(&order, &bids, reputation, Timestamp(2_000)).map(|b| *b.signer());
            let mut shuffled = bids.clone();
            let n = shuffled.len();
            for i in 0..n {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % n as u64) as usize;
                shuffled.swap(i, j);
            }
            let second = auction_winner(&order, &shuffled, reputation, Timestamp(2_000)).map(|b| *b.signer());
            prop_assert_eq!(first, second);
        }
    }
}
