//! The reference prover: every row of every product, on the CPU.

use super::matrix::{a_row, b_matrix, locate, row_hash, row_times, rows_of_c};
use super::merkle::{Hash, MerkleTree};
use super::message::{
    ChallengeAnswer, ChallengeCommit, ChallengeOpen, ChallengeRequest, Opening, Seed,
};
use super::verify::ChallengeError;

/// A challenge computed on the CPU: the tree over every row hash, kept to
/// answer the openings (the opened rows themselves are recomputed, so C is
/// never held whole). Single-threaded, for the sizes a CPU can do.
#[derive(Debug, Clone)]
pub struct CpuProver {
    request: ChallengeRequest,
    seed: Seed,
    tree: MerkleTree,
}

impl CpuProver {
    /// Computes the challenge: for each pair, B once, then each row of A
    /// times B, hashed and dropped.
    pub fn prove(request: &ChallengeRequest) -> Result<Self, ChallengeError> {
        request.params.validate()?;
        let seed = request.seed();
        let n = request.params.n;
        let mut leaves = Vec::with_capacity(usize::try_from(request.params.rows()).unwrap_or(0));
        for pair in 0..request.params.m {
            let b = b_matrix(&seed, n, pair);
            for row in 0..n {
                leaves.push(row_hash(&row_times(&a_row(&seed, n, pair, row), &b)));
            }
        }
        Ok(Self {
            request: request.clone(),
            seed,
            tree: MerkleTree::new(leaves),
        })
    }

    /// The root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The commitment to send, with the prover's own `elapsed_ms`.
    pub fn commit(&self, elapsed_ms: u64) -> ChallengeCommit {
        ChallengeCommit {
            seed: self.seed,
            root: self.root(),
            elapsed_ms,
        }
    }

    /// The answer to `open`, which must be for this challenge and root.
    pub fn answer(&self, open: &ChallengeOpen) -> Result<ChallengeAnswer, ChallengeError> {
        if open.seed != self.seed {
            return Err(ChallengeError::Replayed {
                message: "open",
                expected: self.seed,
                got: open.seed,
            });
        }
        if open.root != self.root() {
            return Err(ChallengeError::OpenForOtherRoot);
        }
        Ok(ChallengeAnswer {
            seed: self.seed,
            openings: self.openings(&open.indices(&self.request.params)),
        })
    }

    /// Rows `indices` (ascending) with their paths; indices past the last
    /// row are left out.
    pub fn openings(&self, indices: &[u64]) -> Vec<Opening> {
        let n = self.request.params.n;
        let mut out = Vec::with_capacity(indices.len());
        // Indices are ascending, so each pair's rows are consecutive.
        for group in indices.chunk_by(|a, b| locate(n, *a).0 == locate(n, *b).0) {
            let Some(&first) = group.first() else {
                continue;
            };
            let pair = locate(n, first).0;
            let rows: Vec<u32> = group.iter().map(|&i| locate(n, i).1).collect();
            for (&index, row) in group.iter().zip(rows_of_c(&self.seed, n, pair, &rows)) {
                if let Some(path) = self.tree.path(index) {
                    out.push(Opening { index, row, path });
                }
            }
        }
        out
    }
}
