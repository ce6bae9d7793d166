//! The GPU challenge: an exact-integer matrix product the prover commits to
//! and the requester spot-checks (issue 13; `docs/verification.md`).
//!
//! 1. The requester sends a [`ChallengeRequest`]: the lease, the interval,
//!    a fresh nonce and the [`ChallengeParams`]. Together they make the
//!    [`Seed`].
//! 2. The prover generates `m` pairs of `n × n` INT8 matrices from the seed
//!    ([`matrix`]), computes every row of `C = A·B` exactly in INT32,
//!    hashes each row and returns the Merkle root ([`merkle`]) in a
//!    [`ChallengeCommit`], within [`ChallengeParams::time_bound_ms`].
//! 3. Only then does the requester send a [`ChallengeOpen`] with a second,
//!    fresh nonce; it and the root choose `k` distinct rows.
//! 4. The prover answers those rows with their Merkle paths
//!    ([`ChallengeAnswer`]); [`verify`] recomputes each from the seed,
//!    `O(n²)` per row, and compares bit for bit.
//!
//! [`CpuProver`] is the reference prover: the real computation on the CPU,
//! for tests, for `simulated` providers and as the oracle the GPU kernels
//! are checked against. Nothing here reads a clock: the elapsed time is
//! the requester's measurement, passed in.

pub mod matrix;
pub mod merkle;
mod message;
pub mod params;
mod prover;
mod verify;

#[cfg(test)]
mod tests;

pub use message::{
    ChallengeAnswer, ChallengeCommit, ChallengeOpen, ChallengeRequest, Opening, Seed, Verdict,
};
pub use params::{ChallengeParams, Cost};
pub use prover::CpuProver;
pub use verify::{ChallengeError, check_commit, verify};
