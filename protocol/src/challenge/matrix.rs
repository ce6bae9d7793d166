//! The matrices, the exact product and the row hash: the one definition
//! the CPU prover, the verifier and the GPU kernels must all agree with.
//!
//! - **Entries.** Matrix `X ∈ {A, B}` of pair `j` is the BLAKE3 output
//!   stream of `keyed_hash(seed, "agora/1/challenge-X\0" ‖ j as u32 LE)`,
//!   read row-major, one byte per entry, as a two's-complement `i8`. The
//!   stream is counter mode (output block `t` is one compression of the
//!   same input with counter `t`), so a GPU thread per 64-byte block
//!   generates it in place, and the verifier seeks straight to a row.
//! - **Product.** `C[i][c] = Σ_r A[i][r] · B[r][c]` in `i32`. With
//!   `n ≤ MAX_N` no partial sum can overflow, so every summation order on
//!   every device gives the same bits.
//! - **Row hash.** `keyed_hash(LEAF_KEY, C[i] as n little-endian i32s)`;
//!   the key is `derive_key("agora/1/challenge-leaf", "")`. The row's bytes
//!   start at offset 0, so BLAKE3's 1 KiB chunks align with them.
//!
//! Rows are numbered globally: row `g` is row `g mod n` of pair `g div n`.

use std::sync::LazyLock;

use super::Seed;

const A_LABEL: &[u8] = b"agora/1/challenge-a\0";
const B_LABEL: &[u8] = b"agora/1/challenge-b\0";

static LEAF_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key("agora/1/challenge-leaf", b""));

/// One of the two matrices of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The left factor.
    A,
    /// The right factor.
    B,
}

/// The entry stream of matrix `which` of pair `pair`, positioned at its
/// first entry.
pub fn stream(seed: &Seed, which: Which, pair: u32) -> blake3::OutputReader {
    let mut h = blake3::Hasher::new_keyed(&seed.0);
    h.update(match which {
        Which::A => A_LABEL,
        Which::B => B_LABEL,
    });
    h.update(&pair.to_le_bytes());
    h.finalize_xof()
}

/// Reads `out.len()` entries from `reader`.
fn fill(reader: &mut blake3::OutputReader, out: &mut [i8]) {
    let mut bytes = vec![0u8; out.len()];
    reader.fill(&mut bytes);
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = i8::from_ne_bytes([b]);
    }
}

/// Row `row` of A of pair `pair`, side `n`.
pub fn a_row(seed: &Seed, n: u32, pair: u32, row: u32) -> Vec<i8> {
    let mut reader = stream(seed, Which::A, pair);
    reader.set_position(u64::from(row) * u64::from(n));
    let mut out = vec![0i8; n as usize];
    fill(&mut reader, &mut out);
    out
}

/// All of B of pair `pair`, side `n`, row-major.
pub fn b_matrix(seed: &Seed, n: u32, pair: u32) -> Vec<i8> {
    let n = n as usize;
    let mut out = vec![0i8; n * n];
    fill(&mut stream(seed, Which::B, pair), &mut out);
    out
}

/// `acc += a · b_row`, the inner step of a row of the product.
fn axpy(acc: &mut [i32], a: i8, b_row: &[i8]) {
    let a = i32::from(a);
    if a == 0 {
        return;
    }
    for (x, &b) in acc.iter_mut().zip(b_row) {
        *x += a * i32::from(b);
    }
}

/// Row `a` of A times the `n × n` matrix `b` (row-major, `n = a.len()`):
/// one row of C, exactly.
pub fn row_times(a: &[i8], b: &[i8]) -> Vec<i32> {
    let n = a.len();
    let mut acc = vec![0i32; n];
    if n == 0 {
        return acc;
    }
    for (&x, b_row) in a.iter().zip(b.chunks_exact(n)) {
        axpy(&mut acc, x, b_row);
    }
    acc
}

/// Columns of B generated at a time by [`rows_of_c`]: 16 output blocks,
/// and with k = 459 rows the accumulators of a tile are 1.8 MiB.
const TILE: usize = 1024;

/// Rows `rows` of C of pair `pair`, in that order: the verifier's and the
/// prover's openings. B is generated once, a tile of columns at a time
/// (each row's slice found by seeking the stream), so only `TILE` bytes of
/// it and the tile's accumulators are in use at once, whatever `n`.
pub fn rows_of_c(seed: &Seed, n: u32, pair: u32, rows: &[u32]) -> Vec<Vec<i32>> {
    let a: Vec<Vec<i8>> = rows.iter().map(|&r| a_row(seed, n, pair, r)).collect();
    let n = n as usize;
    let mut acc = vec![vec![0i32; n]; rows.len()];
    let mut reader = stream(seed, Which::B, pair);
    let mut b_tile = vec![0i8; TILE.min(n)];
    for start in (0..n).step_by(TILE) {
        let end = (start + TILE).min(n);
        let tile = &mut b_tile[..end - start];
        for r in 0..n {
            reader.set_position((r * n + start) as u64);
            fill(&mut reader, tile);
            for (out, a) in acc.iter_mut().zip(&a) {
                axpy(&mut out[start..end], a[r], tile);
            }
        }
    }
    acc
}

/// The hash of a row of C: a leaf of the Merkle tree.
pub fn row_hash(row: &[i32]) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(row.len() * 4);
    for x in row {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    *blake3::keyed_hash(&LEAF_KEY, &bytes).as_bytes()
}

/// The pair and the row within it of global row `index`.
pub fn locate(n: u32, index: u64) -> (u32, u32) {
    let n = u64::from(n.max(1));
    // Both fit: index < m · n with m and n u32.
    (
        u32::try_from(index / n).unwrap_or(u32::MAX),
        u32::try_from(index % n).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(x: u8) -> Seed {
        Seed([x; 32])
    }

    #[test]
    fn rows_are_slices_of_the_stream_and_deterministic() {
        let s = seed(1);
        let n = 32;
        let mut whole = vec![0i8; 32 * 32];
        fill(&mut stream(&s, Which::A, 3), &mut whole);
        for r in [0u32, 1, 17, 31] {
            let row = a_row(&s, n, 3, r);
            assert_eq!(row, whole[r as usize * 32..][..32]);
        }
        assert_eq!(b_matrix(&s, n, 3), b_matrix(&s, n, 3));
        assert_ne!(b_matrix(&s, n, 3), b_matrix(&s, n, 4));
        assert_ne!(b_matrix(&s, n, 3), b_matrix(&seed(2), n, 3));
        assert_ne!(whole, b_matrix(&s, n, 3), "A and B differ");
        // Entries use the whole i8 range.
        let b = b_matrix(&s, 256, 0);
        assert!(b.contains(&i8::MIN) && b.contains(&i8::MAX));
    }

    #[test]
    fn the_product_is_exact() {
        // A naive triple loop in i64 agrees with both ways of computing rows.
        let s = seed(9);
        let n = 48u32;
        let b = b_matrix(&s, n, 1);
        let rows: Vec<u32> = vec![0, 5, 47];
        let streamed = rows_of_c(&s, n, 1, &rows);
        for (t, &i) in rows.iter().enumerate() {
            let a = a_row(&s, n, 1, i);
            let full = row_times(&a, &b);
            assert_eq!(full, streamed[t]);
            let nn = n as usize;
            for c in 0..nn {
                let exact: i64 = (0..nn)
                    .map(|r| i64::from(a[r]) * i64::from(b[r * nn + c]))
                    .sum();
                assert_eq!(i64::from(full[c]), exact);
            }
        }
    }

    #[test]
    fn tiled_rows_agree_across_tile_edges() {
        // 1040 columns: a full tile and a partial one.
        let s = seed(4);
        let n = 1040u32;
        let b = b_matrix(&s, n, 0);
        let rows = [0u32, 1039];
        for (row, tiled) in rows.iter().zip(rows_of_c(&s, n, 0, &rows)) {
            assert_eq!(tiled, row_times(&a_row(&s, n, 0, *row), &b));
        }
    }

    #[test]
    fn the_largest_side_cannot_overflow() {
        // The worst row: every product is (−128)·(−128).
        let worst = i64::from(super::super::params::MAX_N) * 128 * 128;
        assert!(worst < i64::from(i32::MAX));
        let a = vec![i8::MIN; 64];
        let b = vec![i8::MIN; 64 * 64];
        assert_eq!(row_times(&a, &b), vec![64 * 16_384; 64]);
    }

    #[test]
    fn row_hash_covers_every_byte() {
        let row: Vec<i32> = (0..64).collect();
        let h = row_hash(&row);
        for i in [0usize, 31, 63] {
            let mut other = row.clone();
            other[i] ^= 1 << 30;
            assert_ne!(row_hash(&other), h);
        }
        assert_ne!(row_hash(&row[..63]), h);
    }

    #[test]
    fn rows_are_located_by_pair() {
        assert_eq!(locate(16, 0), (0, 0));
        assert_eq!(locate(16, 15), (0, 15));
        assert_eq!(locate(16, 16), (1, 0));
        assert_eq!(locate(16, 16 * 7 + 3), (7, 3));
    }
}
