//! The challenge's parameters, their bounds, and the arithmetic behind the
//! defaults: how many openings catch a skipper ([`openings_for`],
//! [`pass_probability`]), what the requester pays ([`Cost`]) and how long
//! the prover may take ([`ChallengeParams::time_bound_ms`]).

use crate::message::{ValidationError, range};

/// Smallest matrix side.
pub const MIN_N: u32 = 16;
/// Largest matrix side. Every INT32 sum stays exact while
/// `n · 128 · 128 < 2³¹`, i.e. `n < 131 072`; this keeps a factor of two.
pub const MAX_N: u32 = 65_536;
/// The side is a multiple of this (the tiles of INT8 tensor-core kernels).
pub const N_MULTIPLE: u32 = 16;
/// Most rows (`m · n`) one challenge commits to: the prover's Merkle tree
/// is then at most 1 GiB of hashes.
pub const MAX_ROWS: u64 = 1 << 24;
/// Most rows opened.
pub const MAX_OPENINGS: u32 = 4096;
/// Largest answer: `k` rows of `n` INT32s.
pub const MAX_ANSWER_BYTES: u64 = 256 << 20;
/// Largest claimed throughput, operations per second (an exa-op).
pub const MAX_CLAIMED_OPS_PER_SEC: u64 = 1_000_000_000_000_000_000;
/// Largest slack: ten times the time the claimed throughput needs.
pub const MAX_SLACK_PERCENT: u32 = 1000;
/// Largest fixed allowance.
pub const MAX_ALLOWANCE_MS: u64 = 600_000;

/// The GPU size the defaults are set for.
pub const DEFAULT_N: u32 = 16_384;
/// Openings: the least `k` with `0.99^k ≤ 0.01` ([`openings_for`]).
pub const DEFAULT_K: u32 = 459;
/// The prover may take 1.5 times what its claimed throughput needs.
pub const DEFAULT_SLACK_PERCENT: u32 = 150;
/// Plus half a second for the round trip and the kernels' launch (the
/// prover compiles and allocates before the nonce arrives).
pub const DEFAULT_ALLOWANCE_MS: u64 = 500;

/// The fraction of skipped rows the defaults are meant to catch.
pub const TARGET_SKIP: f64 = 0.01;
/// With at least this probability.
pub const TARGET_DETECTION: f64 = 0.99;
/// The requester's work at most this fraction of the prover's, at GPU sizes
/// (`n ≥ 16 384`), by [`Cost`].
pub const TARGET_VERIFIER_COST: f64 = 0.03;

/// What the requester asks of the prover; both sides derive the same
/// matrices, bound and openings from these and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeParams {
    /// The side of each matrix.
    pub n: u32,
    /// Matrix pairs (A, B); the node chooses it to fill the claimed VRAM
    /// ([`ChallengeParams::pairs_for_vram`]).
    pub m: u32,
    /// Rows opened after the root arrives.
    pub k: u32,
    /// The INT8 throughput the provider claims, in operations per second
    /// (a multiply and an add are two).
    pub claimed_ops_per_sec: u64,
    /// The time bound as a percentage of the time the claim needs (≥ 100).
    pub slack_percent: u32,
    /// Added to the bound, whatever the size.
    pub allowance_ms: u64,
}

impl ChallengeParams {
    /// The defaults (n = 16 384, one pair, k = 459, 150 % + 500 ms) for a
    /// provider claiming `claimed_ops_per_sec`.
    pub fn new(claimed_ops_per_sec: u64) -> Self {
        Self {
            n: DEFAULT_N,
            m: 1,
            k: DEFAULT_K,
            claimed_ops_per_sec,
            slack_percent: DEFAULT_SLACK_PERCENT,
            allowance_ms: DEFAULT_ALLOWANCE_MS,
        }
    }

    /// Every field within its bounds, and the sizes consistent: `k` rows
    /// exist to open and fit an answer.
    pub fn validate(&self) -> Result<(), ValidationError> {
        range("n", self.n, MIN_N, MAX_N)?;
        if !self.n.is_multiple_of(N_MULTIPLE) {
            return Err(ValidationError::new(
                "n",
                format!("{} is not a multiple of {N_MULTIPLE}", self.n),
            ));
        }
        range("m", self.m, 1, u32::MAX)?;
        if self.rows() > MAX_ROWS {
            return Err(ValidationError::new(
                "m",
                format!(
                    "{} pairs of side {} are {} rows, more than {MAX_ROWS}",
                    self.m,
                    self.n,
                    self.rows()
                ),
            ));
        }
        range("k", self.k, 1, MAX_OPENINGS)?;
        if u64::from(self.k) > self.rows() {
            return Err(ValidationError::new(
                "k",
                format!("{} openings but only {} rows", self.k, self.rows()),
            ));
        }
        if self.answer_bytes() > MAX_ANSWER_BYTES {
            return Err(ValidationError::new(
                "k",
                format!(
                    "{} rows of side {} are {} bytes, more than {MAX_ANSWER_BYTES}",
                    self.k,
                    self.n,
                    self.answer_bytes()
                ),
            ));
        }
        range(
            "claimed_ops_per_sec",
            self.claimed_ops_per_sec,
            1,
            MAX_CLAIMED_OPS_PER_SEC,
        )?;
        range("slack_percent", self.slack_percent, 100, MAX_SLACK_PERCENT)?;
        range("allowance_ms", self.allowance_ms, 0, MAX_ALLOWANCE_MS)?;
        Ok(())
    }

    /// Rows committed to: `m · n`.
    pub fn rows(&self) -> u64 {
        u64::from(self.m) * u64::from(self.n)
    }

    /// The bytes of the opened rows in an answer: `k · n · 4`.
    pub fn answer_bytes(&self) -> u64 {
        u64::from(self.k) * u64::from(self.n) * 4
    }

    /// The products' operations: `2 n³` per pair.
    pub fn gemm_ops(&self) -> u128 {
        let n = u128::from(self.n);
        2 * n * n * n * u128::from(self.m)
    }

    /// The latest the root may arrive, in milliseconds after the request
    /// went out: `⌈gemm_ops / claimed · slack⌉ + allowance`.
    pub fn time_bound_ms(&self) -> u64 {
        let claimed = u128::from(self.claimed_ops_per_sec.max(1));
        let scaled = self.gemm_ops() * 1000 * u128::from(self.slack_percent);
        let work_ms = scaled.div_ceil(claimed * 100);
        u64::try_from(work_ms)
            .unwrap_or(u64::MAX)
            .saturating_add(self.allowance_ms)
    }

    /// How many times slower than claimed a device may be and still meet
    /// the bound: `bound / (gemm_ops / claimed)`. The allowance dominates
    /// small challenges (58× at the defaults' single pair at 10¹⁵ op/s);
    /// the time check bites when `m` fills the VRAM (2.8× with 44 pairs).
    pub fn slowdown_tolerated(&self) -> f64 {
        let work_ms = self.gemm_ops() as f64 * 1000.0 / self.claimed_ops_per_sec.max(1) as f64;
        self.time_bound_ms() as f64 / work_ms.max(f64::MIN_POSITIVE)
    }

    /// The matrix pairs whose inputs and outputs (`6 n²` bytes: A and B in
    /// INT8, C in INT32) fill 90 % of `vram_bytes`; at least one.
    pub fn pairs_for_vram(vram_bytes: u64, n: u32) -> u32 {
        let per_pair = 6 * u64::from(n) * u64::from(n);
        let pairs = (vram_bytes / 10 * 9) / per_pair.max(1);
        u32::try_from(pairs).unwrap_or(u32::MAX).max(1)
    }

    /// What each side computes, by the cost model of [`Cost`].
    pub fn cost(&self) -> Cost {
        let (n, m, k) = (u128::from(self.n), u128::from(self.m), u128::from(self.k));
        let rows = n * m;
        let depth = u128::from(u64::BITS - (self.rows().max(1) - 1).leading_zeros());
        let prover = 2 * n * n * n * m // the products
            + 2 * n * n * m // A and B generated
            + 4 * n * n * m // C hashed
            + 64 * rows.saturating_sub(1); // the tree's nodes
        let touched = k.min(m);
        let verifier = 2 * k * n * n // k rows of A times B
            + k * n + touched * n * n // those rows of A, and each B they touch
            + 4 * k * n // the rows hashed
            + 64 * k * depth; // their paths
        Cost {
            prover_ops: prover,
            verifier_ops: verifier,
        }
    }
}

/// The work of one challenge on each side. One operation is a multiply or
/// an add of the product, or one byte generated or hashed; the verifier
/// regenerates every B that an opened row touches (at most `min(k, m)`).
/// The model counts work, not time: the prover's is on a GPU, the
/// requester's on a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// The prover's operations.
    pub prover_ops: u128,
    /// The requester's operations.
    pub verifier_ops: u128,
}

impl Cost {
    /// The requester's work as a fraction of the prover's.
    pub fn ratio(&self) -> f64 {
        self.verifier_ops as f64 / self.prover_ops.max(1) as f64
    }
}

/// The least `k` such that a prover that skipped a fraction `skip` of the
/// rows passes `k` independent uniform openings with probability at most
/// `1 − detection`: `⌈ln(1 − detection) / ln(1 − skip)⌉`. `None` unless
/// both are strictly between 0 and 1.
pub fn openings_for(skip: f64, detection: f64) -> Option<u32> {
    let inside = |x: f64| x > 0.0 && x < 1.0;
    if !inside(skip) || !inside(detection) {
        return None;
    }
    let k = ((1.0 - detection).ln() / (1.0 - skip).ln()).ceil();
    if k.is_finite() && k >= 1.0 && k <= f64::from(u32::MAX) {
        Some(k as u32)
    } else {
        None
    }
}

/// The exact probability that `k` distinct uniform openings out of `rows`
/// all miss `skipped` rows: `Π_{i<k} (rows − skipped − i) / (rows − i)`.
/// It is at most `(1 − skipped/rows)^k`, the bound for openings drawn with
/// replacement.
pub fn pass_probability(rows: u64, skipped: u64, k: u32) -> f64 {
    let mut p = 1.0;
    for i in 0..u64::from(k) {
        if rows <= i || rows - i <= skipped {
            return 0.0;
        }
        p *= (rows - skipped - i) as f64 / (rows - i) as f64;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ChallengeParams {
        ChallengeParams {
            n: 32,
            m: 2,
            k: 8,
            ..ChallengeParams::new(1_000_000_000)
        }
    }

    #[test]
    fn default_k_is_the_least_that_catches_a_one_percent_skipper() {
        assert_eq!(openings_for(TARGET_SKIP, TARGET_DETECTION), Some(DEFAULT_K));
        let miss = |k: i32| (1.0 - TARGET_SKIP).powi(k);
        assert!(miss(459) <= 1.0 - TARGET_DETECTION);
        assert!(miss(458) > 1.0 - TARGET_DETECTION);
        assert_eq!(openings_for(0.0, 0.99), None);
        assert_eq!(openings_for(0.5, 1.0), None);
        assert_eq!(openings_for(0.5, 0.75), Some(2));
    }

    #[test]
    fn defaults_meet_the_verifier_cost_target_at_gpu_sizes() {
        let p = ChallengeParams::new(1_000_000_000_000_000);
        p.validate().unwrap();
        let ratio = p.cost().ratio();
        // 459 / 16384 = 2.80 %, plus generation and hashing.
        assert!(ratio <= TARGET_VERIFIER_COST, "{ratio}");
        assert!(ratio > 0.028, "{ratio}");
        for n in [16_384u32, 32_768, 65_536] {
            for m in [1u32, 2, 7, 50, 256] {
                let q = ChallengeParams { n, m, ..p };
                if q.validate().is_ok() {
                    let r = q.cost().ratio();
                    assert!(r <= TARGET_VERIFIER_COST, "n={n} m={m}: {r}");
                }
            }
        }
        // Small CPU sizes test the rules, not the ratio.
        let cpu = ChallengeParams { n: 1024, ..p };
        assert!(cpu.cost().ratio() > 0.4);
    }

    #[test]
    fn pass_probability_is_hypergeometric_and_below_the_binomial_bound() {
        assert_eq!(pass_probability(128, 0, 8), 1.0);
        assert_eq!(pass_probability(128, 128, 1), 0.0);
        assert_eq!(pass_probability(10, 1, 10), 0.0);
        let p = pass_probability(128, 16, 8);
        let bound = (1.0f64 - 16.0 / 128.0).powi(8);
        assert!(p < bound && p > 0.9 * bound, "{p} {bound}");
        // The default k against 1 % of a GPU-sized challenge.
        let rows = u64::from(DEFAULT_N);
        let p = pass_probability(rows, rows / 100, DEFAULT_K);
        assert!(p <= 1.0 - TARGET_DETECTION, "{p}");
    }

    #[test]
    fn time_bound_is_claimed_time_times_slack_plus_allowance() {
        // 2 · 16384³ = 8.8e12 operations at 1e15/s: 8.8 ms, × 1.5, + 500.
        let p = ChallengeParams::new(1_000_000_000_000_000);
        assert_eq!(p.gemm_ops(), 2 * 16_384u128.pow(3));
        assert_eq!(p.time_bound_ms(), 14 + 500);
        let q = ChallengeParams { m: 100, ..p };
        assert_eq!(q.time_bound_ms(), 1320 + 500);
        let slow = ChallengeParams {
            claimed_ops_per_sec: 1,
            slack_percent: MAX_SLACK_PERCENT,
            ..q
        };
        assert!(slow.time_bound_ms() > 1 << 60);
        // A fake 58× slower than claimed meets the bound of one pair; with
        // the pairs of 80 GB, one 2.8× slower does.
        assert_eq!(p.slowdown_tolerated().floor(), 58.0);
        let filled = ChallengeParams {
            m: ChallengeParams::pairs_for_vram(80_000_000_000, 16_384),
            ..p
        };
        assert_eq!((filled.slowdown_tolerated() * 10.0).floor(), 27.0);
    }

    #[test]
    fn pairs_fill_the_vram() {
        // 80 GB at n = 16384: 1.5 GiB a pair.
        assert_eq!(ChallengeParams::pairs_for_vram(80_000_000_000, 16_384), 44);
        assert_eq!(ChallengeParams::pairs_for_vram(1, 16_384), 1);
    }

    #[test]
    fn each_bad_field_is_named() {
        small().validate().unwrap();
        let field = |p: ChallengeParams| p.validate().unwrap_err().field;
        assert_eq!(field(ChallengeParams { n: 8, ..small() }), "n");
        assert_eq!(field(ChallengeParams { n: 40, ..small() }), "n");
        assert_eq!(
            field(ChallengeParams {
                n: 131_072,
                ..small()
            }),
            "n"
        );
        assert_eq!(field(ChallengeParams { m: 0, ..small() }), "m");
        assert_eq!(
            field(ChallengeParams {
                m: u32::MAX,
                ..small()
            }),
            "m"
        );
        assert_eq!(field(ChallengeParams { k: 0, ..small() }), "k");
        assert_eq!(field(ChallengeParams { k: 65, ..small() }), "k");
        assert_eq!(
            field(ChallengeParams {
                n: 65_536,
                k: 2048,
                ..small()
            }),
            "k"
        );
        let claim = |c| ChallengeParams {
            claimed_ops_per_sec: c,
            ..small()
        };
        assert_eq!(field(claim(0)), "claimed_ops_per_sec");
        assert_eq!(field(claim(u64::MAX)), "claimed_ops_per_sec");
        let slack = |s| ChallengeParams {
            slack_percent: s,
            ..small()
        };
        assert_eq!(field(slack(99)), "slack_percent");
        assert_eq!(field(slack(1001)), "slack_percent");
        assert_eq!(
            field(ChallengeParams {
                allowance_ms: 600_001,
                ..small()
            }),
            "allowance_ms"
        );
    }
}
