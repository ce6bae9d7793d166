//! The requester's check: the answer is for this challenge, the root came
//! in time, every opened row is in the root and equal to the row it
//! recomputes from the seed.

use super::matrix::{locate, row_hash, rows_of_c};
use super::merkle::{Hash, root_from_path};
use super::message::{
    ChallengeAnswer, ChallengeCommit, ChallengeOpen, ChallengeRequest, Seed, Verdict,
};
use crate::message::ValidationError;

/// Why a challenge failed. Each variant but [`ChallengeError::Late`] is
/// self-verifying: anyone holding the four messages finds the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The parameters are out of bounds.
    #[error("invalid challenge parameters: {0}")]
    Params(#[from] ValidationError),
    /// A reply names another challenge (another lease, interval, nonce or
    /// parameters): a replay.
    #[error("the {message} answers challenge {got}, not {expected}")]
    Replayed {
        /// Which message: "commit", "open" or "answer".
        message: &'static str,
        /// This challenge's seed.
        expected: Seed,
        /// The seed the message names.
        got: Seed,
    },
    /// The root arrived after the bound derived from the claimed throughput.
    #[error("the root arrived after {elapsed_ms} ms; the claimed throughput allows {bound_ms} ms")]
    Late {
        /// The requester's measure.
        elapsed_ms: u64,
        /// [`super::ChallengeParams::time_bound_ms`].
        bound_ms: u64,
    },
    /// The open names another root than the commit.
    #[error("the open is for another root than the one committed")]
    OpenForOtherRoot,
    /// Not `k` openings.
    #[error("{got} rows opened, {expected} asked for")]
    OpeningCount {
        /// `k`.
        expected: usize,
        /// In the answer.
        got: usize,
    },
    /// An opening for a row not asked for (or out of order).
    #[error("opening {position} is row {got}; row {expected} was asked for")]
    UnaskedRow {
        /// Its place in the answer.
        position: usize,
        /// The row asked for there.
        expected: u64,
        /// The row answered.
        got: u64,
    },
    /// A row of the wrong length.
    #[error("row {index} has {got} entries, not {expected}")]
    RowLength {
        /// The row.
        index: u64,
        /// `n`.
        expected: usize,
        /// In the answer.
        got: usize,
    },
    /// The row and its path do not lead to the committed root: a wrong
    /// root, or a bad path.
    #[error("row {index} and its path do not lead to the committed root")]
    NotInRoot {
        /// The row.
        index: u64,
    },
    /// The committed row is not the product: the prover did not compute it.
    #[error("row {index} differs from the product at column {column}: {got}, not {expected}")]
    WrongRow {
        /// The row.
        index: u64,
        /// The first column that differs.
        column: usize,
        /// The product's value.
        expected: i32,
        /// The answer's.
        got: i32,
    },
}

/// The checks a commit allows before anything is opened: for this
/// challenge, and in time (`elapsed_ms` from sending the request to
/// receiving the commit, by the requester's clock). Returns the bound.
pub fn check_commit(
    request: &ChallengeRequest,
    commit: &ChallengeCommit,
    elapsed_ms: u64,
) -> Result<u64, ChallengeError> {
    request.params.validate()?;
    let seed = request.seed();
    if commit.seed != seed {
        return Err(ChallengeError::Replayed {
            message: "commit",
            expected: seed,
            got: commit.seed,
        });
    }
    let bound_ms = request.params.time_bound_ms();
    if elapsed_ms > bound_ms {
        return Err(ChallengeError::Late {
            elapsed_ms,
            bound_ms,
        });
    }
    Ok(bound_ms)
}

/// The whole check of a challenge, cheapest first: [`check_commit`], then
/// the answer's shape and paths, then each opened row recomputed (each B
/// that an opened row touches is generated once, a tile of columns at a
/// time).
pub fn verify(
    request: &ChallengeRequest,
    commit: &ChallengeCommit,
    open: &ChallengeOpen,
    answer: &ChallengeAnswer,
    elapsed_ms: u64,
) -> Result<Verdict, ChallengeError> {
    let bound_ms = check_commit(request, commit, elapsed_ms)?;
    let params = &request.params;
    let seed = commit.seed;
    if open.seed != seed {
        return Err(ChallengeError::Replayed {
            message: "open",
            expected: seed,
            got: open.seed,
        });
    }
    if open.root != commit.root {
        return Err(ChallengeError::OpenForOtherRoot);
    }
    if answer.seed != seed {
        return Err(ChallengeError::Replayed {
            message: "answer",
            expected: seed,
            got: answer.seed,
        });
    }
    let indices = open.indices(params);
    if answer.openings.len() != indices.len() {
        return Err(ChallengeError::OpeningCount {
            expected: indices.len(),
            got: answer.openings.len(),
        });
    }
    let n = params.n as usize;
    for (position, (opening, &expected)) in answer.openings.iter().zip(&indices).enumerate() {
        if opening.index != expected {
            return Err(ChallengeError::UnaskedRow {
                position,
                expected,
                got: opening.index,
            });
        }
        if opening.row.len() != n {
            return Err(ChallengeError::RowLength {
                index: opening.index,
                expected: n,
                got: opening.row.len(),
            });
        }
        let leaf = row_hash(&opening.row);
        let root: Option<Hash> = root_from_path(&leaf, opening.index, params.rows(), &opening.path);
        if root != Some(commit.root) {
            return Err(ChallengeError::NotInRoot {
                index: opening.index,
            });
        }
    }
    // Indices ascend, so each pair's openings are consecutive.
    for group in answer
        .openings
        .chunk_by(|a, b| locate(params.n, a.index).0 == locate(params.n, b.index).0)
    {
        let Some(first) = group.first() else {
            continue;
        };
        let pair = locate(params.n, first.index).0;
        let rows: Vec<u32> = group.iter().map(|o| locate(params.n, o.index).1).collect();
        for (opening, product) in group.iter().zip(rows_of_c(&seed, params.n, pair, &rows)) {
            if let Some((column, (&got, &expected))) = opening
                .row
                .iter()
                .zip(&product)
                .enumerate()
                .find(|(_, (g, e))| g != e)
            {
                return Err(ChallengeError::WrongRow {
                    index: opening.index,
                    column,
                    expected,
                    got,
                });
            }
        }
    }
    Ok(Verdict {
        seed,
        root: commit.root,
        rows_checked: u32::try_from(indices.len()).unwrap_or(u32::MAX),
        elapsed_ms,
        bound_ms,
    })
}
