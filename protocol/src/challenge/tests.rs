//! The challenge end to end: an honest prover always passes, a prover that
//! skipped rows passes at the rate the hypergeometric law predicts, and
//! each way of cheating fails with its own reason.

use std::collections::BTreeSet;
use std::mem::discriminant;

use super::matrix::{a_row, b_matrix, row_hash, row_times};
use super::merkle::MerkleTree;
use super::message::sample_distinct;
use super::params::{DEFAULT_K, pass_probability};
use super::*;
use crate::lease::LeaseId;

fn params(n: u32, m: u32, k: u32) -> ChallengeParams {
    ChallengeParams {
        n,
        m,
        k,
        // 1 Gop/s: the small sizes here have bounds of a few ms + 500.
        ..ChallengeParams::new(1_000_000_000)
    }
}

fn request(trial: u64, params: ChallengeParams) -> ChallengeRequest {
    let mut nonce = [0u8; 32];
    nonce[..8].copy_from_slice(&trial.to_le_bytes());
    ChallengeRequest {
        lease_id: LeaseId([0xa5; 32]),
        interval: 3,
        nonce,
        params,
    }
}

/// The requester's open, its nonce drawn "after the root" (here: from the
/// request's nonce, so every trial is reproducible).
fn open_for(request: &ChallengeRequest, commit: &ChallengeCommit) -> ChallengeOpen {
    let mut nonce = request.nonce;
    nonce[31] ^= 0xff;
    ChallengeOpen {
        seed: commit.seed,
        root: commit.root,
        nonce,
    }
}

/// A prover that computes only some rows and commits to zeros for the
/// others (`skip`), then answers honestly from what it committed to.
struct Forger {
    params: ChallengeParams,
    seed: Seed,
    rows: Vec<Vec<i32>>,
    tree: MerkleTree,
}

impl Forger {
    fn new(request: &ChallengeRequest, skip: &BTreeSet<u64>) -> Self {
        let (params, seed, n) = (request.params, request.seed(), request.params.n);
        let mut rows = Vec::new();
        for pair in 0..params.m {
            let b = b_matrix(&seed, n, pair);
            for row in 0..n {
                let index = u64::from(pair) * u64::from(n) + u64::from(row);
                rows.push(if skip.contains(&index) {
                    vec![0; n as usize]
                } else {
                    row_times(&a_row(&seed, n, pair, row), &b)
                });
            }
        }
        let tree = MerkleTree::new(rows.iter().map(|r| row_hash(r)).collect());
        Self {
            params,
            seed,
            rows,
            tree,
        }
    }

    /// Skips `count` rows chosen at random (they are fixed before the
    /// openings exist, so which ones does not matter).
    fn skipping(request: &ChallengeRequest, count: u64) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"forger's choice");
        h.update(&request.seed().0);
        let skip = sample_distinct(&mut h.finalize_xof(), request.params.rows(), count);
        Self::new(request, &skip.into_iter().collect())
    }

    fn commit(&self) -> ChallengeCommit {
        ChallengeCommit {
            seed: self.seed,
            root: self.tree.root(),
            elapsed_ms: 0,
        }
    }

    fn answer(&self, open: &ChallengeOpen) -> ChallengeAnswer {
        ChallengeAnswer {
            seed: self.seed,
            openings: open
                .indices(&self.params)
                .into_iter()
                .map(|index| Opening {
                    index,
                    row: self.rows[index as usize].clone(),
                    path: self.tree.path(index).unwrap(),
                })
                .collect(),
        }
    }

    fn run(&self, request: &ChallengeRequest) -> Result<Verdict, ChallengeError> {
        let commit = self.commit();
        let open = open_for(request, &commit);
        verify(request, &commit, &open, &self.answer(&open), 0)
    }
}

/// An honest run's four messages.
struct Honest {
    request: ChallengeRequest,
    commit: ChallengeCommit,
    open: ChallengeOpen,
    answer: ChallengeAnswer,
    bound_ms: u64,
}

fn honest(trial: u64, params: ChallengeParams) -> Honest {
    let request = request(trial, params);
    let prover = CpuProver::prove(&request).unwrap();
    let commit = prover.commit(1);
    let open = open_for(&request, &commit);
    let answer = prover.answer(&open).unwrap();
    Honest {
        bound_ms: params.time_bound_ms(),
        request,
        commit,
        open,
        answer,
    }
}

impl Honest {
    fn verify(&self) -> Result<Verdict, ChallengeError> {
        verify(&self.request, &self.commit, &self.open, &self.answer, 0)
    }
}

#[test]
fn an_honest_prover_always_passes() {
    for trial in 0..150u64 {
        let n = 16 * (1 + (trial % 3) as u32);
        let m = 1 + (trial / 3 % 3) as u32;
        let rows = n * m;
        let k = 1 + (trial as u32 * 7) % rows;
        let h = honest(trial, params(n, m, k));
        let verdict = h.verify().unwrap_or_else(|e| panic!("trial {trial}: {e}"));
        assert_eq!(verdict.rows_checked, k);
        assert_eq!(verdict.root, h.commit.root);
        assert_eq!(verdict.seed, h.request.seed());
        assert_eq!(verdict.bound_ms, h.bound_ms);
    }
}

#[test]
fn the_cpu_prover_and_the_forger_agree_when_nothing_is_skipped() {
    let request = request(1, params(32, 3, 96));
    let prover = CpuProver::prove(&request).unwrap();
    let forger = Forger::new(&request, &BTreeSet::new());
    assert_eq!(prover.root(), forger.commit().root);
    let open = open_for(&request, &prover.commit(0));
    assert_eq!(prover.answer(&open).unwrap(), forger.answer(&open));
}

/// Measured pass rate of a prover that skipped `skipped` of the `n · m`
/// rows, `k` opened: `seeds` challenges (one commit each), each opened
/// with `opens` different second nonces — the requester's randomness that
/// the soundness figure is over.
fn measure(n: u32, m: u32, skipped: u64, k: u32, seeds: u64, opens: u64) -> (f64, f64, f64) {
    let mut passed = 0u64;
    for trial in 0..seeds {
        let request = request(trial, params(n, m, k));
        let forger = Forger::skipping(&request, skipped);
        let commit = forger.commit();
        for o in 0..opens {
            let mut open = open_for(&request, &commit);
            open.nonce[..8].copy_from_slice(&o.to_le_bytes());
            match verify(&request, &commit, &open, &forger.answer(&open), 0) {
                Ok(_) => passed += 1,
                Err(ChallengeError::WrongRow { .. }) => {}
                Err(e) => panic!("a skipper fails only on a wrong row, not {e}"),
            }
        }
    }
    let rows = u64::from(n) * u64::from(m);
    let trials = seeds * opens;
    let measured = passed as f64 / trials as f64;
    let exact = pass_probability(rows, skipped, k);
    let bound = (1.0 - skipped as f64 / rows as f64).powi(k as i32);
    println!(
        "rows {rows}, skipped {skipped} (f = {:.4}), k {k}, {seeds} seeds × {opens} opens: \
         passed {passed}/{trials} = {measured:.4}, exact {exact:.4}, (1-f)^k {bound:.4}",
        skipped as f64 / rows as f64
    );
    assert_rate(measured, exact, bound, trials);
    (measured, exact, bound)
}

/// Within 4 standard deviations of the exact rate, and so below the
/// binomial bound plus the same margin. The seeds are fixed, so the test
/// is deterministic; the margin is what makes the claim statistical.
fn assert_rate(measured: f64, exact: f64, bound: f64, trials: u64) {
    let sigma = (exact * (1.0 - exact) / trials as f64).sqrt();
    assert!(
        (measured - exact).abs() <= 4.0 * sigma,
        "measured {measured}, exact {exact}, σ {sigma}"
    );
    assert!(measured <= bound + 4.0 * sigma);
}

#[test]
fn a_skipper_passes_at_the_predicted_rate() {
    // 128 rows (n = 16, m = 8); 50 seeds × 40 opens = 2000 trials each.
    for (skipped, k) in [(8u64, 16u32), (16, 8), (32, 4)] {
        measure(16, 8, skipped, k, 50, 40);
    }
}

#[test]
fn the_default_k_catches_a_one_percent_skipper() {
    // 1600 rows (n = 16, m = 100), 16 skipped, 459 opened: the exact pass
    // rate is 0.0043 (0.99^459 = 0.0099); 10 seeds × 50 opens.
    let (_, exact, bound) = measure(16, 100, 16, DEFAULT_K, 10, 50);
    assert!(exact <= 0.01 && bound <= 0.01);
}

#[test]
fn a_wrong_row_fails_as_a_wrong_row() {
    let p = params(16, 2, 32);
    let request = request(5, p);
    // Open every row, so the one wrong row is among them.
    let forger = Forger::new(&request, &BTreeSet::from([21]));
    let err = forger.run(&request).unwrap_err();
    assert!(
        matches!(err, ChallengeError::WrongRow { index: 21, .. }),
        "{err}"
    );
}

#[test]
fn a_wrong_root_or_path_fails_as_not_in_root() {
    // The prover commits to a root that is not its tree's, and answers
    // from its tree.
    let mut h = honest(6, params(32, 2, 8));
    h.commit.root[0] ^= 1;
    h.open = open_for(&h.request, &h.commit);
    let prover = CpuProver::prove(&h.request).unwrap();
    h.answer.openings = prover.openings(&h.open.indices(&h.request.params));
    let err = h.verify().unwrap_err();
    assert!(matches!(err, ChallengeError::NotInRoot { .. }), "{err}");

    // A tampered sibling, or a path cut short.
    let h = honest(7, params(32, 2, 8));
    let mut bad = h.answer.clone();
    bad.openings[3].path[2][5] ^= 1;
    let err = verify(&h.request, &h.commit, &h.open, &bad, 0).unwrap_err();
    assert_eq!(
        err,
        ChallengeError::NotInRoot {
            index: bad.openings[3].index
        }
    );
    let mut short = h.answer.clone();
    short.openings[0].path.pop();
    let err = verify(&h.request, &h.commit, &h.open, &short, 0).unwrap_err();
    assert!(matches!(err, ChallengeError::NotInRoot { .. }), "{err}");

    // A row changed after the commit: it no longer hashes into the root.
    let mut changed = h.answer.clone();
    changed.openings[1].row[0] += 1;
    let err = verify(&h.request, &h.commit, &h.open, &changed, 0).unwrap_err();
    assert!(matches!(err, ChallengeError::NotInRoot { .. }), "{err}");
}

#[test]
fn a_late_root_fails_as_late() {
    let h = honest(8, params(16, 1, 4));
    let bound = h.bound_ms;
    let ok = verify(&h.request, &h.commit, &h.open, &h.answer, bound).unwrap();
    assert_eq!(ok.elapsed_ms, bound);
    let err = verify(&h.request, &h.commit, &h.open, &h.answer, bound + 1).unwrap_err();
    assert_eq!(
        err,
        ChallengeError::Late {
            elapsed_ms: bound + 1,
            bound_ms: bound
        }
    );
    assert_eq!(check_commit(&h.request, &h.commit, bound), Ok(bound));
}

#[test]
fn a_replayed_answer_fails_as_replayed() {
    let p = params(16, 2, 8);
    let old = honest(9, p);
    let new = honest(10, p);
    // The old commit and answer offered for a new nonce, another interval,
    // another lease.
    let others = [
        new.request.clone(),
        ChallengeRequest {
            interval: old.request.interval + 1,
            ..old.request.clone()
        },
        ChallengeRequest {
            lease_id: LeaseId([1; 32]),
            ..old.request.clone()
        },
    ];
    for request in &others {
        let err = verify(request, &old.commit, &old.open, &old.answer, 0).unwrap_err();
        assert!(
            matches!(
                err,
                ChallengeError::Replayed {
                    message: "commit",
                    ..
                }
            ),
            "{err}"
        );
    }
    // A fresh commit, then the old answer.
    let err = verify(&new.request, &new.commit, &new.open, &old.answer, 0).unwrap_err();
    assert_eq!(
        err,
        ChallengeError::Replayed {
            message: "answer",
            expected: new.request.seed(),
            got: old.request.seed()
        }
    );
    // The old answer relabelled with the new seed still fails: its rows
    // are not the ones asked for, nor in the new root, nor the product.
    let mut relabelled = old.answer.clone();
    relabelled.seed = new.request.seed();
    assert!(verify(&new.request, &new.commit, &new.open, &relabelled, 0).is_err());
    let mut both = old.commit.clone();
    both.seed = new.request.seed();
    let open = open_for(&new.request, &both);
    let prover = CpuProver::prove(&old.request).unwrap();
    let answer = ChallengeAnswer {
        seed: new.request.seed(),
        openings: prover.openings(&open.indices(&p)),
    };
    let err = verify(&new.request, &both, &open, &answer, 0).unwrap_err();
    assert!(matches!(err, ChallengeError::WrongRow { .. }), "{err}");
}

#[test]
fn a_malformed_answer_fails_with_what_is_wrong() {
    let h = honest(11, params(16, 2, 6));
    let check =
        |answer: &ChallengeAnswer| verify(&h.request, &h.commit, &h.open, answer, 0).unwrap_err();
    let mut fewer = h.answer.clone();
    fewer.openings.pop();
    assert_eq!(
        check(&fewer),
        ChallengeError::OpeningCount {
            expected: 6,
            got: 5
        }
    );
    let mut swapped = h.answer.clone();
    swapped.openings.swap(0, 1);
    assert!(matches!(
        check(&swapped),
        ChallengeError::UnaskedRow { position: 0, .. }
    ));
    let mut short = h.answer.clone();
    short.openings[2].row.pop();
    assert!(matches!(
        check(&short),
        ChallengeError::RowLength {
            expected: 16,
            got: 15,
            ..
        }
    ));
    let mut open = h.open.clone();
    open.root[0] ^= 1;
    assert_eq!(
        verify(&h.request, &h.commit, &open, &h.answer, 0).unwrap_err(),
        ChallengeError::OpenForOtherRoot
    );
    let mut bad = h.request.clone();
    bad.params.k = 0;
    assert!(matches!(
        verify(&bad, &h.commit, &h.open, &h.answer, 0).unwrap_err(),
        ChallengeError::Params(e) if e.field == "k"
    ));
}

#[test]
fn the_prover_answers_only_its_own_challenge() {
    let h = honest(12, params(16, 1, 4));
    let prover = CpuProver::prove(&h.request).unwrap();
    let mut other = h.open.clone();
    other.root[0] ^= 1;
    assert_eq!(prover.answer(&other), Err(ChallengeError::OpenForOtherRoot));
    other = h.open.clone();
    other.seed = Seed([0; 32]);
    assert!(matches!(
        prover.answer(&other),
        Err(ChallengeError::Replayed {
            message: "open",
            ..
        })
    ));
    let mut bad = h.request.clone();
    bad.params.n = 17;
    assert!(matches!(
        CpuProver::prove(&bad),
        Err(ChallengeError::Params(e)) if e.field == "n"
    ));
}

#[test]
fn each_failure_has_its_own_reason() {
    let p = params(16, 2, 32);
    let h = honest(13, p);
    let wrong_row = Forger::new(&h.request, &BTreeSet::from([3]))
        .run(&h.request)
        .unwrap_err();
    let mut tampered = h.answer.clone();
    tampered.openings[0].path[0][0] ^= 1;
    let not_in_root = verify(&h.request, &h.commit, &h.open, &tampered, 0).unwrap_err();
    let late = verify(&h.request, &h.commit, &h.open, &h.answer, u64::MAX).unwrap_err();
    let replayed = verify(&request(14, p), &h.commit, &h.open, &h.answer, 0).unwrap_err();
    let reasons = [wrong_row, not_in_root, late, replayed];
    for (i, a) in reasons.iter().enumerate() {
        for b in &reasons[i + 1..] {
            assert_ne!(discriminant(a), discriminant(b), "{a} / {b}");
        }
    }
}

/// Pins the format (seed, generation, product, hashes, tree) for the GPU
/// kernels to match: change it only with a new namespace.
#[test]
fn known_answer() {
    let request = ChallengeRequest {
        lease_id: LeaseId([0; 32]),
        interval: 0,
        nonce: [0; 32],
        params: params(16, 2, 4),
    };
    let seed = request.seed();
    let prover = CpuProver::prove(&request).unwrap();
    // Row 0 of A of pair 0, row 0 of B of pair 1, row 0 of C of pair 0.
    assert_eq!(
        seed.to_string(),
        "7737bd0d7d6bab3535767489f7e37365a51298fcbd9d966c719f191bec4418ed"
    );
    assert_eq!(
        hex::encode(prover.root()),
        "12861eb8797b2d77fd6d53081aed804a7cac970c5ebe60ada0f5282710a36efa"
    );
    let a = a_row(&seed, 16, 0, 0);
    let b = b_matrix(&seed, 16, 1);
    assert_eq!(a[..4], [-11, -33, -112, -109]);
    assert_eq!(b[..4], [-122, -115, 53, 89]);
    let first = &prover.openings(&[0])[0].row;
    assert_eq!(first[..4], [21917, -1034, -33920, 37381]);
}
