// SPDX-License-Identifier: Apache-2.0 OR MIT
pragma solidity ^0.8.24;

/// @title SHA-512 (FIPS 180-4, section 6.4) for memory byte strings.
///
/// @notice `hash(data)` returns the 64-byte digest as two words in digest
/// order: `high` is bytes 0..32, `low` is bytes 32..64.
///
/// @dev The EVM has no 64-bit words, so every SHA-512 word lives in the low
/// 64 bits of a 256-bit stack slot. Two facts keep the rounds short:
///   * `rotr(x, n)` is `(x | x << 64) >> n` read in its low 64 bits, so one
///     doubled copy of `x` serves all three rotations of a Σ/σ function (the
///     working variables are even kept doubled all along);
///   * addition mod 2^256 is also correct mod 2^64, so the junk that this
///     leaves above bit 63 may flow into sums unmasked. A value is masked only
///     where it becomes a working variable or a schedule word, i.e. where it
///     is next used by a rotation or a shift.
/// The eight rounds of a loop iteration are written out with the variables
/// renamed (round t+1 sees the names of round t shifted by one), so only `d`
/// and `h` are assigned per round and nothing is shuffled.
library Sha512 {
    /// K[0..80): the first 64 bits of the fractional parts of the cube roots
    /// of the first 80 primes (FIPS 180-4, 4.2.3), 8 bytes each, big-endian.
    bytes private constant ROUND_CONSTANTS =
        hex"428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc3956c25bf348b53859f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118"
        hex"d807aa98a303024212835b0145706fbe243185be4ee4b28c550c7dc3d5ffb4e272be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235c19bf174cf692694"
        hex"e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c652de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5"
        hex"983e5152ee66dfaba831c66d2db43210b00327c898fb213fbf597fc7beef0ee4c6e00bf33da88fc2d5a79147930aa72506ca6351e003826f142929670a0e6e70"
        hex"27b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed53380d139d95b3df650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
        hex"a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30d192e819d6ef5218d69906245565a910f40e35855771202a106aa07032bbd1b8"
        hex"19a4c116b8d2d0c81e376c085141ab532748774cdf8eeb9934b0bcb5e19b48a8391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373682e6ff3d6b2b8a3"
        hex"748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532b"
        hex"ca273eceea26619cd186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed17806f067aa72176fba0a637dc5a2c898a6113f9804bef90dae1b710b35131c471b"
        hex"28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc431d67c49c100d4c4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817";

    /// @notice SHA-512 of `data`.
    /// @return high digest bytes 0..32
    /// @return low digest bytes 32..64
    function hash(bytes memory data) internal pure returns (bytes32 high, bytes32 low) {
        bytes memory k = ROUND_CONSTANTS;
        assembly ("memory-safe") {
            // The schedule W[0..80) is kept in 16-byte entries, W[t] in the
            // low 8 bytes of the entry at w + 16 t and the high 8 bytes zero.
            // One mload at w + 16 t then holds W[t] and W[t+1] in two 128-bit
            // lanes with 64 free bits above each, so the doubling trick works
            // on both lanes at once and W[t], W[t+1] are computed together
            // (W[t+1] needs W[t-1], not W[t]). A round reads W[t] as the low
            // lane of the mload at w + 16 t - 16 (junk above bit 63 only).

            // Message schedule (FIPS 180-4, 6.4.2 step 1) of the 128-byte
            // block at `blk` into the entries at `w`.
            //   W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]
            //   σ0 = rotr 1 ^ rotr 8 ^ shr 7, σ1 = rotr 19 ^ rotr 61 ^ shr 6
            function schedule(blk, w) {
                let m := 0x0000000000000000ffffffffffffffff0000000000000000ffffffffffffffff
                for { let i := 0 } lt(i, 0x80) { i := add(i, 0x20) } {
                    let v := mload(add(blk, i))
                    // words 4i, 4i+1 to entries 4i, 4i+1; then 4i+2, 4i+3
                    let x := shr(128, v)
                    mstore(add(w, shl(1, i)), and(or(shl(64, x), x), m))
                    x := and(v, 0xffffffffffffffffffffffffffffffff)
                    mstore(add(add(w, shl(1, i)), 0x20), and(or(shl(64, x), x), m))
                }
                for { let q := add(w, 0x100) } lt(q, add(w, 0x500)) { q := add(q, 0x40) } {
                    // W[t], W[t+1] at q, then W[t+2], W[t+3] at q + 32
                    let x := mload(sub(q, 0xf0)) // W[t-15], W[t-14]
                    let y := or(x, shl(64, x))
                    let s := and(xor(xor(shr(1, y), shr(8, y)), shr(7, x)), m)
                    x := mload(sub(q, 0x20)) // W[t-2], W[t-1]
                    y := or(x, shl(64, x))
                    s := add(s, and(xor(xor(shr(19, y), shr(61, y)), shr(6, x)), m))
                    // + W[t-7], W[t-6] and W[t-16], W[t-15]
                    mstore(q, and(add(s, add(mload(sub(q, 0x70)), mload(sub(q, 0x100)))), m))

                    x := mload(sub(q, 0xd0))
                    y := or(x, shl(64, x))
                    s := and(xor(xor(shr(1, y), shr(8, y)), shr(7, x)), m)
                    x := mload(q)
                    y := or(x, shl(64, x))
                    s := add(s, and(xor(xor(shr(19, y), shr(61, y)), shr(6, x)), m))
                    mstore(add(q, 0x20), and(add(s, add(mload(sub(q, 0x50)), mload(sub(q, 0xe0)))), m))
                }
            }

            // The 80 rounds (6.4.2 steps 2-4) over the schedule at `w`, with
            // the state H[0..8) in the eight slots below `w` and the
            // constants at `kp`.
            //   T1 = h + Σ1(e) + Ch(e,f,g) + K[t] + W[t]     d' = d + T1
            //   T2 = Σ0(a) + Maj(a,b,c)                      h' = T1 + T2
            // Σ1 = rotr 14 ^ rotr 18 ^ rotr 41, Σ0 = rotr 28 ^ rotr 34 ^ rotr 39,
            // Ch = g ^ (e & (f ^ g)), Maj = (a & b) | (c & (a | b)).
            // The working variables are kept doubled, v | v << 64 (made by
            // a multiplication with 2^64 + 1), so Σ needs no doubling of its
            // own; Ch, Maj and the sums only get junk above bit 63.
            function rounds(w, kp) {
                let m := 0xffffffffffffffff
                let twice := 0x10000000000000001
                let a := mul(mload(sub(w, 0x100)), twice)
                let b := mul(mload(sub(w, 0xe0)), twice)
                let c := mul(mload(sub(w, 0xc0)), twice)
                let d := mul(mload(sub(w, 0xa0)), twice)
                let e := mul(mload(sub(w, 0x80)), twice)
                let f := mul(mload(sub(w, 0x60)), twice)
                let g := mul(mload(sub(w, 0x40)), twice)
                let h := mul(mload(sub(w, 0x20)), twice)
                for { let q := sub(w, 0x10) let kq := kp } lt(kq, add(kp, 0x280)) { q := add(q, 0x80) kq := add(kq, 0x40) } {
                    {
                        let t := add(add(add(h, xor(xor(shr(14, e), shr(18, e)), shr(41, e))), xor(g, and(e, xor(f, g)))), add(shr(192, mload(kq)), mload(q)))
                        d := mul(and(add(d, t), m), twice)
                        h := mul(and(add(add(t, xor(xor(shr(28, a), shr(34, a)), shr(39, a))), or(and(a, b), and(c, or(a, b)))), m), twice)
                    }
                    {
                        let t := add(add(add(g, xor(xor(shr(14, d), shr(18, d)), shr(41, d))), xor(f, and(d, xor(e, f)))), add(shr(192, mload(add(kq, 0x08))), mload(add(q, 0x10))))
                        c := mul(and(add(c, t), m), twice)
                        g := mul(and(add(add(t, xor(xor(shr(28, h), shr(34, h)), shr(39, h))), or(and(h, a), and(b, or(h, a)))), m), twice)
                    }
                    {
                        let t := add(add(add(f, xor(xor(shr(14, c), shr(18, c)), shr(41, c))), xor(e, and(c, xor(d, e)))), add(shr(192, mload(add(kq, 0x10))), mload(add(q, 0x20))))
                        b := mul(and(add(b, t), m), twice)
                        f := mul(and(add(add(t, xor(xor(shr(28, g), shr(34, g)), shr(39, g))), or(and(g, h), and(a, or(g, h)))), m), twice)
                    }
                    {
                        let t := add(add(add(e, xor(xor(shr(14, b), shr(18, b)), shr(41, b))), xor(d, and(b, xor(c, d)))), add(shr(192, mload(add(kq, 0x18))), mload(add(q, 0x30))))
                        a := mul(and(add(a, t), m), twice)
                        e := mul(and(add(add(t, xor(xor(shr(28, f), shr(34, f)), shr(39, f))), or(and(f, g), and(h, or(f, g)))), m), twice)
                    }
                    {
                        let t := add(add(add(d, xor(xor(shr(14, a), shr(18, a)), shr(41, a))), xor(c, and(a, xor(b, c)))), add(shr(192, mload(add(kq, 0x20))), mload(add(q, 0x40))))
                        h := mul(and(add(h, t), m), twice)
                        d := mul(and(add(add(t, xor(xor(shr(28, e), shr(34, e)), shr(39, e))), or(and(e, f), and(g, or(e, f)))), m), twice)
                    }
                    {
                        let t := add(add(add(c, xor(xor(shr(14, h), shr(18, h)), shr(41, h))), xor(b, and(h, xor(a, b)))), add(shr(192, mload(add(kq, 0x28))), mload(add(q, 0x50))))
                        g := mul(and(add(g, t), m), twice)
                        c := mul(and(add(add(t, xor(xor(shr(28, d), shr(34, d)), shr(39, d))), or(and(d, e), and(f, or(d, e)))), m), twice)
                    }
                    {
                        let t := add(add(add(b, xor(xor(shr(14, g), shr(18, g)), shr(41, g))), xor(a, and(g, xor(h, a)))), add(shr(192, mload(add(kq, 0x30))), mload(add(q, 0x60))))
                        f := mul(and(add(f, t), m), twice)
                        b := mul(and(add(add(t, xor(xor(shr(28, c), shr(34, c)), shr(39, c))), or(and(c, d), and(e, or(c, d)))), m), twice)
                    }
                    {
                        let t := add(add(add(a, xor(xor(shr(14, f), shr(18, f)), shr(41, f))), xor(h, and(f, xor(g, h)))), add(shr(192, mload(add(kq, 0x38))), mload(add(q, 0x70))))
                        e := mul(and(add(e, t), m), twice)
                        a := mul(and(add(add(t, xor(xor(shr(28, b), shr(34, b)), shr(39, b))), or(and(b, c), and(d, or(b, c)))), m), twice)
                    }
                }
                // H[i] += working variable i (6.4.2 step 4)
                let hp := sub(w, 0x100)
                mstore(hp, and(add(mload(hp), a), m))
                mstore(add(hp, 0x20), and(add(mload(add(hp, 0x20)), b), m))
                mstore(add(hp, 0x40), and(add(mload(add(hp, 0x40)), c), m))
                mstore(add(hp, 0x60), and(add(mload(add(hp, 0x60)), d), m))
                mstore(add(hp, 0x80), and(add(mload(add(hp, 0x80)), e), m))
                mstore(add(hp, 0xa0), and(add(mload(add(hp, 0xa0)), f), m))
                mstore(add(hp, 0xc0), and(add(mload(add(hp, 0xc0)), g), m))
                mstore(add(hp, 0xe0), and(add(mload(add(hp, 0xe0)), h), m))
            }

            // Pads `input` (5.1.2) and runs every block through the rounds.
            // Scratch above the free memory pointer, not allocated: H (8
            // slots), W (80 16-byte entries), then the padded tail (one or
            // two blocks).
            function sha512(input, kp) -> hi, lo {
                let len := mload(input)
                let src := add(input, 0x20)
                let hp := mload(0x40)
                let w := add(hp, 0x100)
                let tail := add(w, 0x500)
                // H(0) (5.3.5): the first 64 bits of the fractional parts of
                // the square roots of the first 8 primes.
                mstore(hp, 0x6a09e667f3bcc908)
                mstore(add(hp, 0x20), 0xbb67ae8584caa73b)
                mstore(add(hp, 0x40), 0x3c6ef372fe94f82b)
                mstore(add(hp, 0x60), 0xa54ff53a5f1d36f1)
                mstore(add(hp, 0x80), 0x510e527fade682d1)
                mstore(add(hp, 0xa0), 0x9b05688c2b3e6c1f)
                mstore(add(hp, 0xc0), 0x1f83d9abfb41bd6b)
                mstore(add(hp, 0xe0), 0x5be0cd19137e2179)

                // The whole blocks are read where they lie; the rem < 128
                // bytes after them go to the tail with the 0x80 byte, zeros
                // and the 128-bit big-endian bit length.
                let rem := and(len, 127)
                let full := sub(len, rem)
                for { let i := 0 } lt(i, 0x100) { i := add(i, 0x20) } { mstore(add(tail, i), 0) }
                for { let i := 0 } lt(i, rem) { i := add(i, 0x20) } {
                    mstore(add(tail, i), mload(add(src, add(full, i))))
                }
                // The last word copied may carry bytes past the end of data.
                mstore(add(tail, rem), 0)
                mstore8(add(tail, rem), 0x80)
                // rem + 1 + 16 bytes fit in one block iff rem <= 111.
                let tailLen := 0x80
                if gt(rem, 111) { tailLen := 0x100 }
                let lenSlot := add(tail, sub(tailLen, 0x20))
                mstore(lenSlot, or(mload(lenSlot), shl(3, len)))

                for { let off := 0 } lt(off, full) { off := add(off, 0x80) } {
                    schedule(add(src, off), w)
                    rounds(w, kp)
                }
                for { let off := 0 } lt(off, tailLen) { off := add(off, 0x80) } {
                    schedule(add(tail, off), w)
                    rounds(w, kp)
                }
                hi := or(or(shl(192, mload(hp)), shl(128, mload(add(hp, 0x20)))),
                         or(shl(64, mload(add(hp, 0x40))), mload(add(hp, 0x60))))
                lo := or(or(shl(192, mload(add(hp, 0x80))), shl(128, mload(add(hp, 0xa0)))),
                         or(shl(64, mload(add(hp, 0xc0))), mload(add(hp, 0xe0))))
            }

            high, low := sha512(data, add(k, 0x20))
        }
    }
}
