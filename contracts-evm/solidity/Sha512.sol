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
///     doubled copy of `x` serves all three rotations of a Σ/σ function;
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
            // Message schedule (FIPS 180-4, 6.4.2 step 1) of the 128-byte
            // block at `blk` into the 80 words at `w`, one per 32-byte slot.
            function schedule(blk, w) {
                for { let i := 0 } lt(i, 4) { i := add(i, 1) } {
                    let v := mload(add(blk, shl(5, i)))
                    let o := add(w, shl(7, i))
                    mstore(o, shr(192, v))
                    mstore(add(o, 0x20), and(shr(128, v), 0xffffffffffffffff))
                    mstore(add(o, 0x40), and(shr(64, v), 0xffffffffffffffff))
                    mstore(add(o, 0x60), and(v, 0xffffffffffffffff))
                }
                // W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]
                for { let q := add(w, 0x200) } lt(q, add(w, 0xa00)) { q := add(q, 0x20) } {
                    let x := mload(sub(q, 0x1e0)) // W[t-15]
                    let y := or(x, shl(64, x))
                    // σ0 = rotr 1 ^ rotr 8 ^ shr 7
                    let s := xor(xor(shr(1, y), shr(8, y)), shr(7, x))
                    x := mload(sub(q, 0x40)) // W[t-2]
                    y := or(x, shl(64, x))
                    // σ1 = rotr 19 ^ rotr 61 ^ shr 6
                    s := add(s, xor(xor(shr(19, y), shr(61, y)), shr(6, x)))
                    mstore(q, and(add(add(s, mload(sub(q, 0xe0))), mload(sub(q, 0x200))), 0xffffffffffffffff))
                }
            }

            // The 80 rounds (6.4.2 steps 2-4) over the schedule at `w`, with
            // the state H[0..8) at `hp` and the constants at `kp`.
            //   T1 = h + Σ1(e) + Ch(e,f,g) + K[t] + W[t]     d' = d + T1
            //   T2 = Σ0(a) + Maj(a,b,c)                      h' = T1 + T2
            // Σ1 = rotr 14 ^ rotr 18 ^ rotr 41, Σ0 = rotr 28 ^ rotr 34 ^ rotr 39,
            // Ch = g ^ (e & (f ^ g)), Maj = (a & b) | (c & (a | b)).
            function rounds(hp, w, kp) {
                let a := mload(hp)
                let b := mload(add(hp, 0x20))
                let c := mload(add(hp, 0x40))
                let d := mload(add(hp, 0x60))
                let e := mload(add(hp, 0x80))
                let f := mload(add(hp, 0xa0))
                let g := mload(add(hp, 0xc0))
                let h := mload(add(hp, 0xe0))
                for { let q := w let kq := kp } lt(q, add(w, 0xa00)) { q := add(q, 0x100) kq := add(kq, 0x40) } {
                    {
                        let x := or(e, shl(64, e))
                        let t := add(add(add(h, xor(xor(shr(14, x), shr(18, x)), shr(41, x))), xor(g, and(e, xor(f, g)))), add(shr(192, mload(kq)), mload(q)))
                        d := and(add(d, t), 0xffffffffffffffff)
                        x := or(a, shl(64, a))
                        h := and(add(add(t, xor(xor(shr(28, x), shr(34, x)), shr(39, x))), or(and(a, b), and(c, or(a, b)))), 0xffffffffffffffff)
                    }
                    {
                        let x := or(d, shl(64, d))
                        let t := add(add(add(g, xor(xor(shr(14, x), shr(18, x)), shr(41, x))), xor(f, and(d, xor(e, f)))), add(shr(192, mload(add(kq, 0x08))), mload(add(q, 0x20))))
                        c := and(add(c, t), 0xffffffffffffffff)
                        x := or(h, shl(64, h))
                        g := and(add(add(t, xor(xor(shr(28, x), shr(34, x)), shr(39, x))), or(and(h, a), and(b, or(h, a)))), 0xffffffffffffffff)
                    }
                    {
                        let x := or(c, shl(64, c))
                        let t := add(add(add(f, xor(xor(shr(14, x), shr(18, x)), shr(41, x))), xor(e, and(c, xor(d, e)))), add(shr(192, mload(add(kq, 0x10))), mload(add(q, 0x40))))
                        b := and(add(b, t), 0xffffffffffffffff)
                        x := or(g, shl(64, g))
                        f := and(add(add(t, xor(xor(shr(28, x), shr(34, x)), shr(39, x))), or(and(g, h), and(a, or(g, h)))), 0xffffffffffffffff)
                    }
                    {
                        let x := or(b, shl(64, b))
                        let t := add(add(add(e, xor(xor(shr(14, x), shr(18, x)), shr(41, x))), xor(d, and(b, xor(c, d)))), add(shr(192, mload(add(kq, 0x18))), mload(add(q, 0x60))))
                        a := and(add(a, t), 0xffffffffffffffff)
                        x := or(f, shl(64, f))
                        e := and(add(add(t, xor(xor(shr(28, x), shr(34, x)), shr(39, x))), or(and(f, g), and(h, or(f, g)))), 0xffffffffffffffff)
                    }
                    {
                        let x := or(a, shl(64, a))
                        let t := add(add(add(d, xor(xor(shr(14, x), shr(18, x)), shr(41, x))), xor(c, and(a, xor(b, c)))), add(shr(192, mload(add(kq, 0x20))), mload(add(q, 0x80))))
                        h := and(add(h, t), 0xffffffffffffffff)
                        x := or(e, shl(64, e))
                        d := and(add(add(t, xor(xor(shr(28, x), shr(34, x)), shr(39, x))), or(and(e, f), and(g, or(e, f)))), 0xffffffffffffffff)
                    }
                    {
                        let x := or(h, shl(64, h))
                        let t := add(add(add(c, xor(xor(shr(14, x), shr(18, x)), shr(41, x))), xor(b, and(h, xor(a, b)))), add(shr(192, mload(add(kq, 0x28))), mload(add(q, 0xa0))))
                        g := and(add(g, t), 0xffffffffffffffff)
                        x := or(d, shl(64, d))
                        c := and(add(add(t, xor(xor(shr(28, x), shr(34, x)), shr(39, x))), or(and(d, e), and(f, or(d, e)))), 0xffffffffffffffff)
                    }
                    {
                        let x := or(g, shl(64, g))
                        let t := add(add(add(b, xor(xor(shr(14, x), shr(18, x)), shr(41, x))), xor(a, and(g, xor(h, a)))), add(shr(192, mload(add(kq, 0x30))), mload(add(q, 0xc0))))
                        f := and(add(f, t), 0xffffffffffffffff)
                        x := or(c, shl(64, c))
                        b := and(add(add(t, xor(xor(shr(28, x), shr(34, x)), shr(39, x))), or(and(c, d), and(e, or(c, d)))), 0xffffffffffffffff)
                    }
                    {
                        let x := or(f, shl(64, f))
                        let t := add(add(add(a, xor(xor(shr(14, x), shr(18, x)), shr(41, x))), xor(h, and(f, xor(g, h)))), add(shr(192, mload(add(kq, 0x38))), mload(add(q, 0xe0))))
                        e := and(add(e, t), 0xffffffffffffffff)
                        x := or(b, shl(64, b))
                        a := and(add(add(t, xor(xor(shr(28, x), shr(34, x)), shr(39, x))), or(and(b, c), and(d, or(b, c)))), 0xffffffffffffffff)
                    }
                }
                // H[i] += working variable i (6.4.2 step 4)
                mstore(hp, and(add(mload(hp), a), 0xffffffffffffffff))
                mstore(add(hp, 0x20), and(add(mload(add(hp, 0x20)), b), 0xffffffffffffffff))
                mstore(add(hp, 0x40), and(add(mload(add(hp, 0x40)), c), 0xffffffffffffffff))
                mstore(add(hp, 0x60), and(add(mload(add(hp, 0x60)), d), 0xffffffffffffffff))
                mstore(add(hp, 0x80), and(add(mload(add(hp, 0x80)), e), 0xffffffffffffffff))
                mstore(add(hp, 0xa0), and(add(mload(add(hp, 0xa0)), f), 0xffffffffffffffff))
                mstore(add(hp, 0xc0), and(add(mload(add(hp, 0xc0)), g), 0xffffffffffffffff))
                mstore(add(hp, 0xe0), and(add(mload(add(hp, 0xe0)), h), 0xffffffffffffffff))
            }

            // Pads `data` (5.1.2) and runs every block through the rounds.
            // Scratch above the free memory pointer, not allocated: H (8
            // slots), W (80 slots), then the padded tail (one or two blocks).
            function sha512(input, kp) -> hi, lo {
                let len := mload(input)
                let src := add(input, 0x20)
                let hp := mload(0x40)
                let w := add(hp, 0x100)
                let tail := add(w, 0xa00)
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
                    rounds(hp, w, kp)
                }
                for { let off := 0 } lt(off, tailLen) { off := add(off, 0x80) } {
                    schedule(add(tail, off), w)
                    rounds(hp, w, kp)
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
