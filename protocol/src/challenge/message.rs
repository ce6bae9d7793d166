//! The four messages of a challenge and the derivations both sides make
//! from them: the seed from the request, the opened rows from the open.
//!
//! Each reply names the seed it answers, so an answer to another challenge
//! is refused as such (the seed binds lease, interval, nonce and
//! parameters). These are Rust types only: their wire form and signatures
//! come with the node's side of the exchange.

use std::collections::BTreeSet;

use super::merkle::Hash;
use super::params::ChallengeParams;
use crate::lease::LeaseId;
use crate::order::id_type;

id_type!(
    Seed,
    "Names a challenge: blake3 of its lease, interval, requester nonce and parameters."
);

const SEED_NAMESPACE: &[u8] = b"agora/1/challenge-seed\0";
const OPEN_NAMESPACE: &[u8] = b"agora/1/challenge-open\0";

/// The requester asks for a challenge. The nonce is fresh and random, and
/// sent only when the challenge starts: the clock runs from then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRequest {
    /// The lease whose GPU is challenged.
    pub lease_id: LeaseId,
    /// The receipt interval the challenge belongs to.
    pub interval: u64,
    /// The requester's nonce.
    pub nonce: [u8; 32],
    /// Sizes, openings and the time bound.
    pub params: ChallengeParams,
}

impl ChallengeRequest {
    /// `blake3(namespace ‖ lease ‖ interval ‖ nonce ‖ params)`, every
    /// integer little-endian. Binding the parameters means no two sizes
    /// ever share matrices.
    pub fn seed(&self) -> Seed {
        let p = &self.params;
        let mut h = blake3::Hasher::new();
        h.update(SEED_NAMESPACE);
        h.update(&self.lease_id.0);
        h.update(&self.interval.to_le_bytes());
        h.update(&self.nonce);
        h.update(&p.n.to_le_bytes());
        h.update(&p.m.to_le_bytes());
        h.update(&p.k.to_le_bytes());
        h.update(&p.claimed_ops_per_sec.to_le_bytes());
        h.update(&p.slack_percent.to_le_bytes());
        h.update(&p.allowance_ms.to_le_bytes());
        Seed(*h.finalize().as_bytes())
    }
}

/// The prover's commitment: the Merkle root of every row hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeCommit {
    /// The challenge answered.
    pub seed: Seed,
    /// The root over the `m · n` row hashes.
    pub root: Hash,
    /// The prover's own measure of its work, for the record; the bound is
    /// checked against the requester's clock, never this.
    pub elapsed_ms: u64,
}

/// The requester's choice of rows, sent after the root arrived.
///
/// The rows come from a second nonce drawn then: were they a function of
/// seed and root alone, a prover that skipped rows could try roots (vary
/// one garbage row, rehash one path) until the chosen rows missed its
/// gaps, at a few hashes a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeOpen {
    /// The challenge.
    pub seed: Seed,
    /// The root being opened.
    pub root: Hash,
    /// Fresh, random, drawn after the root arrived.
    pub nonce: [u8; 32],
}

impl ChallengeOpen {
    /// The `k` distinct rows opened, ascending, uniform over `0..m·n`
    /// (Floyd's sampling over the BLAKE3 stream of
    /// `namespace ‖ seed ‖ root ‖ nonce`).
    pub fn indices(&self, params: &ChallengeParams) -> Vec<u64> {
        let mut h = blake3::Hasher::new();
        h.update(OPEN_NAMESPACE);
        h.update(&self.seed.0);
        h.update(&self.root);
        h.update(&self.nonce);
        sample_distinct(&mut h.finalize_xof(), params.rows(), u64::from(params.k))
    }
}

/// `count` distinct values of `0..total`, ascending, uniform over the
/// subsets (Floyd), from `stream`; all of them when `count ≥ total`.
pub(crate) fn sample_distinct(
    stream: &mut blake3::OutputReader,
    total: u64,
    count: u64,
) -> Vec<u64> {
    let mut chosen = BTreeSet::new();
    for j in total.saturating_sub(count)..total {
        let t = uniform(stream, j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

/// A uniform value of `0..bound` (`bound ≥ 1`), by rejection.
fn uniform(stream: &mut blake3::OutputReader, bound: u64) -> u64 {
    // 2⁶⁴ mod bound: values below it would bias the remainder.
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let mut word = [0u8; 8];
        stream.fill(&mut word);
        let x = u64::from_le_bytes(word);
        if x >= threshold {
            return x % bound;
        }
    }
}

/// One opened row: its index, its values and its Merkle path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The global row index (`pair · n + row`).
    pub index: u64,
    /// The row of C.
    pub row: Vec<i32>,
    /// Its path to the root, leaf to root.
    pub path: Vec<Hash>,
}

/// The prover's answer to a [`ChallengeOpen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeAnswer {
    /// The challenge answered.
    pub seed: Seed,
    /// The opened rows, in the order of [`ChallengeOpen::indices`].
    pub openings: Vec<Opening>,
}

/// A challenge passed: what a signed result will state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The challenge.
    pub seed: Seed,
    /// The root committed.
    pub root: Hash,
    /// Rows recomputed and found equal.
    pub rows_checked: u32,
    /// The requester's measure of the time to the root.
    pub elapsed_ms: u64,
    /// The bound it was held to.
    pub bound_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChallengeRequest {
        ChallengeRequest {
            lease_id: LeaseId([1; 32]),
            interval: 7,
            nonce: [2; 32],
            params: ChallengeParams {
                n: 32,
                m: 2,
                k: 8,
                ..ChallengeParams::new(1_000_000_000)
            },
        }
    }

    #[test]
    fn the_seed_binds_every_input() {
        let base = request();
        let seed = base.seed();
        assert_eq!(seed, request().seed());
        let variants = [
            ChallengeRequest {
                lease_id: LeaseId([9; 32]),
                ..request()
            },
            ChallengeRequest {
                interval: 8,
                ..request()
            },
            ChallengeRequest {
                nonce: [3; 32],
                ..request()
            },
            ChallengeRequest {
                params: ChallengeParams {
                    n: 48,
                    ..base.params
                },
                ..request()
            },
            ChallengeRequest {
                params: ChallengeParams {
                    k: 9,
                    ..base.params
                },
                ..request()
            },
            ChallengeRequest {
                params: ChallengeParams {
                    slack_percent: 151,
                    ..base.params
                },
                ..request()
            },
        ];
        for v in variants {
            assert_ne!(v.seed(), seed, "{v:?}");
        }
    }

    #[test]
    fn openings_are_distinct_in_range_and_follow_every_input() {
        let req = request();
        let open = ChallengeOpen {
            seed: req.seed(),
            root: [5; 32],
            nonce: [6; 32],
        };
        let idx = open.indices(&req.params);
        assert_eq!(idx.len(), 8);
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        assert!(idx.iter().all(|&i| i < 64));
        assert_eq!(idx, open.indices(&req.params));
        for other in [
            ChallengeOpen {
                root: [4; 32],
                ..open.clone()
            },
            ChallengeOpen {
                nonce: [7; 32],
                ..open.clone()
            },
            ChallengeOpen {
                seed: Seed([0; 32]),
                ..open.clone()
            },
        ] {
            assert_ne!(other.indices(&req.params), idx);
        }
        let all = ChallengeParams {
            k: 64,
            ..req.params
        };
        assert_eq!(open.indices(&all), (0..64).collect::<Vec<_>>());
    }

    #[test]
    fn sampling_is_uniform_over_rows() {
        // 4000 draws of 4 rows out of 16: each row is chosen 1000 times
        // on average (σ ≈ 27); allow 5σ.
        let mut counts = [0u32; 16];
        for t in 0u64..4000 {
            let mut h = blake3::Hasher::new();
            h.update(&t.to_le_bytes());
            for i in sample_distinct(&mut h.finalize_xof(), 16, 4) {
                counts[i as usize] += 1;
            }
        }
        for c in counts {
            assert!((865..=1135).contains(&c), "{counts:?}");
        }
    }
}
