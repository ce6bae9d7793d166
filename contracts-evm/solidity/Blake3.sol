// SPDX-License-Identifier: Apache-2.0 OR MIT
pragma solidity ^0.8.24;

/// @title BLAKE3 (default hash mode, 32-byte output) for memory byte strings.
///
/// @notice `hash(data)` equals the reference `blake3::hash(data)` for inputs
/// of any length: the input is cut into 1024-byte chunks of up to sixteen
/// 64-byte blocks, each chunk is compressed into a chaining value, and the
/// chaining values are merged in the binary tree of the BLAKE3 paper
/// (section 2.1: a left subtree always holds the largest power of two of
/// chunks that leaves at least one chunk for the right).
///
/// @dev Words are 32-bit little-endian. The compression function's 4x4
/// state is kept as four rows a, b, c, d, each one stack word with its four
/// 32-bit entries in 64-bit lanes (lane 0 = bits 192..255), so one `g4` step
/// runs the G function on all four columns at once: the 32 spare bits above
/// each entry absorb the carries of a + b + m, and a rotation is
/// `(x >> n | x << (32 - n))` masked back to the low 32 bits of each lane
/// (nothing crosses a lane boundary before the mask). The diagonal step
/// rotates rows b, c and d by one, two and three lanes, runs `g4` again and
/// rotates them back. The message schedule of the seven rounds (the
/// permutation applied round after round) is written out as word indices.
library Blake3 {
    function hash(bytes memory data) internal pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            // IV[0..4) and IV[4..8) in lanes (the SHA-256 initial hash value).
            // Constant lane masks: L32 keeps the low 32 bits of each lane.
            function ivLo() -> v { v := 0x000000006a09e66700000000bb67ae85000000003c6ef37200000000a54ff53a }
            function ivHi() -> v { v := 0x00000000510e527f000000009b05688c000000001f83d9ab000000005be0cd19 }

            // G on the four columns (or diagonals) at once.
            function g4(a, b, c, d, mx, my) -> a2, b2, c2, d2 {
                let l32 := 0x00000000ffffffff00000000ffffffff00000000ffffffff00000000ffffffff
                a2 := and(add(add(a, b), mx), l32)
                d2 := xor(d, a2)
                d2 := and(or(shr(16, d2), shl(16, d2)), l32)
                c2 := and(add(c, d2), l32)
                b2 := xor(b, c2)
                b2 := and(or(shr(12, b2), shl(20, b2)), l32)
                a2 := and(add(add(a2, b2), my), l32)
                d2 := xor(d2, a2)
                d2 := and(or(shr(8, d2), shl(24, d2)), l32)
                c2 := and(add(c2, d2), l32)
                b2 := xor(b2, c2)
                b2 := and(or(shr(7, b2), shl(25, b2)), l32)
            }

            // Row b by one lane, c by two, d by three: lane i then holds the
            // i-th diagonal (v0 v5 v10 v15), (v1 v6 v11 v12), ...
            function diagonalize(b, c, d) -> b2, c2, d2 {
                b2 := or(shl(64, b), shr(192, b))
                c2 := or(shl(128, c), shr(128, c))
                d2 := or(shl(192, d), shr(64, d))
            }

            function undiagonalize(b, c, d) -> b2, c2, d2 {
                b2 := or(shr(64, b), shl(192, b))
                c2 := or(shl(128, c), shr(128, c))
                d2 := or(shr(192, d), shl(64, d))
            }

            // Message words i, j, k, l (one per 32-byte slot at m) in lanes.
            function msg(m, i, j, k, l) -> v {
                v := or(or(shl(192, mload(add(m, shl(5, i)))), shl(128, mload(add(m, shl(5, j))))),
                        or(shl(64, mload(add(m, shl(5, k)))), mload(add(m, shl(5, l)))))
            }

            // The compression function, truncated to the chaining value:
            // h' = v[0..8) ^ v[8..16). The input chaining value is (h0, h1),
            // d is (counter low, counter high, block length, flags).
            function compress(m, a, b, d) -> h0, h1 {
                let c := ivLo()
                // round 0: m[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
                a, b, c, d := g4(a, b, c, d, msg(m, 0, 2, 4, 6), msg(m, 1, 3, 5, 7))
                b, c, d := diagonalize(b, c, d)
                a, b, c, d := g4(a, b, c, d, msg(m, 8, 10, 12, 14), msg(m, 9, 11, 13, 15))
                b, c, d := undiagonalize(b, c, d)
                // round 1: m[2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
                a, b, c, d := g4(a, b, c, d, msg(m, 2, 3, 7, 4), msg(m, 6, 10, 0, 13))
                b, c, d := diagonalize(b, c, d)
                a, b, c, d := g4(a, b, c, d, msg(m, 1, 12, 9, 15), msg(m, 11, 5, 14, 8))
                b, c, d := undiagonalize(b, c, d)
                // round 2: m[3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1]
                a, b, c, d := g4(a, b, c, d, msg(m, 3, 10, 13, 7), msg(m, 4, 12, 2, 14))
                b, c, d := diagonalize(b, c, d)
                a, b, c, d := g4(a, b, c, d, msg(m, 6, 9, 11, 8), msg(m, 5, 0, 15, 1))
                b, c, d := undiagonalize(b, c, d)
                // round 3: m[10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6]
                a, b, c, d := g4(a, b, c, d, msg(m, 10, 12, 14, 13), msg(m, 7, 9, 3, 15))
                b, c, d := diagonalize(b, c, d)
                a, b, c, d := g4(a, b, c, d, msg(m, 4, 11, 5, 1), msg(m, 0, 2, 8, 6))
                b, c, d := undiagonalize(b, c, d)
                // round 4: m[12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4]
                a, b, c, d := g4(a, b, c, d, msg(m, 12, 9, 15, 14), msg(m, 13, 11, 10, 8))
                b, c, d := diagonalize(b, c, d)
                a, b, c, d := g4(a, b, c, d, msg(m, 7, 5, 0, 6), msg(m, 2, 3, 1, 4))
                b, c, d := undiagonalize(b, c, d)
                // round 5: m[9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7]
                a, b, c, d := g4(a, b, c, d, msg(m, 9, 11, 8, 15), msg(m, 14, 5, 12, 1))
                b, c, d := diagonalize(b, c, d)
                a, b, c, d := g4(a, b, c, d, msg(m, 13, 0, 2, 4), msg(m, 3, 10, 6, 7))
                b, c, d := undiagonalize(b, c, d)
                // round 6: m[11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13]
                a, b, c, d := g4(a, b, c, d, msg(m, 11, 5, 1, 8), msg(m, 15, 0, 9, 6))
                b, c, d := diagonalize(b, c, d)
                a, b, c, d := g4(a, b, c, d, msg(m, 14, 2, 3, 7), msg(m, 10, 12, 4, 13))
                b, c, d := undiagonalize(b, c, d)
                h0 := xor(a, c)
                h1 := xor(b, d)
            }

            // Reverses the bytes of each 32-bit word of x (little-endian
            // load/store).
            function bswap32(x) -> y {
                y := or(and(shr(8, x), 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff),
                        and(shl(8, x), 0xff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00))
                y := or(and(shr(16, y), 0x0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff),
                        and(shl(16, y), 0xffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000))
            }

            // Stores the eight little-endian words of x (32 bytes as read by
            // mload, already byte-swapped) into the slots at m.
            function spread(m, x) {
                mstore(m, shr(224, x))
                mstore(add(m, 0x20), and(shr(192, x), 0xffffffff))
                mstore(add(m, 0x40), and(shr(160, x), 0xffffffff))
                mstore(add(m, 0x60), and(shr(128, x), 0xffffffff))
                mstore(add(m, 0x80), and(shr(96, x), 0xffffffff))
                mstore(add(m, 0xa0), and(shr(64, x), 0xffffffff))
                mstore(add(m, 0xc0), and(shr(32, x), 0xffffffff))
                mstore(add(m, 0xe0), and(x, 0xffffffff))
            }

            // Stores the four lanes of v into the slots at m.
            function unlane(m, v) {
                mstore(m, shr(192, v))
                mstore(add(m, 0x20), and(shr(128, v), 0xffffffff))
                mstore(add(m, 0x40), and(shr(64, v), 0xffffffff))
                mstore(add(m, 0x60), and(v, 0xffffffff))
            }

            // The chaining value of one chunk: `len` (0..1024) bytes at `src`,
            // chunk index `counter`; `root` is the ROOT flag (8) when the
            // chunk is the whole input, else 0. Flags: CHUNK_START = 1 on the
            // first block, CHUNK_END = 2 on the last.
            function chunk(m, src, len, counter, root) -> h0, h1 {
                h0 := ivLo()
                h1 := ivHi()
                // blocks: ceil(len / 64), and one (empty) block for len = 0
                let blocks := shr(6, add(len, 63))
                if iszero(blocks) { blocks := 1 }
                let ctr := or(shl(192, and(counter, 0xffffffff)), shl(128, shr(32, counter)))
                for { let i := 0 } lt(i, blocks) { i := add(i, 1) } {
                    let off := shl(6, i)
                    let blockLen := sub(len, off)
                    let flags := iszero(i)
                    if eq(i, sub(blocks, 1)) { flags := or(flags, or(2, root)) }
                    let x := mload(add(src, off))
                    let y := mload(add(src, add(off, 0x20)))
                    // A short last block is zero-padded: clear what lies
                    // past the input in memory.
                    if lt(blockLen, 64) {
                        switch lt(blockLen, 32)
                        case 1 {
                            x := and(x, not(shr(shl(3, blockLen), not(0))))
                            y := 0
                        }
                        default { y := and(y, not(shr(shl(3, sub(blockLen, 32)), not(0)))) }
                    }
                    if gt(blockLen, 64) { blockLen := 64 }
                    spread(m, bswap32(x))
                    spread(add(m, 0x100), bswap32(y))
                    h0, h1 := compress(m, h0, h1, or(ctr, or(shl(64, blockLen), flags)))
                }
            }

            // The chaining value of a parent node: its block is the left
            // child's chaining value then the right's, counter 0, length 64,
            // flags PARENT (4), or PARENT | ROOT (12) for the root.
            function parent(m, l0, l1, r0, r1, flags) -> h0, h1 {
                unlane(m, l0)
                unlane(add(m, 0x80), l1)
                unlane(add(m, 0x100), r0)
                unlane(add(m, 0x180), r1)
                h0, h1 := compress(m, ivLo(), ivHi(), or(shl(64, 64), flags))
            }

            // Scratch above the free memory pointer, not allocated: the 16
            // message slots, then the stack of pending left subtrees'
            // chaining values (two words each, at most 54 for 2^64 bytes).
            function blake3(input) -> out {
                let len := mload(input)
                let src := add(input, 0x20)
                let m := mload(0x40)
                let base := add(m, 0x200)
                let sp := base
                // chunks: ceil(len / 1024), at least one
                let chunks := shr(10, add(len, 1023))
                if iszero(chunks) { chunks := 1 }
                let last := sub(chunks, 1)
                // Every chunk but the last is complete and not the root.
                // After chunk c the tree has c + 1 chunks; as many subtrees
                // merge as that count has trailing zero bits.
                for { let c := 0 } lt(c, last) { c := add(c, 1) } {
                    let cv0, cv1 := chunk(m, add(src, shl(10, c)), 1024, c, 0)
                    for { let t := add(c, 1) } iszero(and(t, 1)) { t := shr(1, t) } {
                        sp := sub(sp, 0x40)
                        cv0, cv1 := parent(m, mload(sp), mload(add(sp, 0x20)), cv0, cv1, 4)
                    }
                    mstore(sp, cv0)
                    mstore(add(sp, 0x20), cv1)
                    sp := add(sp, 0x40)
                }
                let lastSrc := add(src, shl(10, last))
                let lastLen := sub(len, shl(10, last))
                let h0, h1
                switch eq(sp, base)
                case 1 { h0, h1 := chunk(m, lastSrc, lastLen, last, 8) }
                default {
                    // The last chunk, then the pending left subtrees from the
                    // newest down; the oldest merge is the root.
                    h0, h1 := chunk(m, lastSrc, lastLen, last, 0)
                    for { } gt(sp, base) { } {
                        sp := sub(sp, 0x40)
                        let flags := 4
                        if eq(sp, base) { flags := 12 }
                        h0, h1 := parent(m, mload(sp), mload(add(sp, 0x20)), h0, h1, flags)
                    }
                }
                // The digest is h[0..8) as little-endian bytes.
                out := or(or(or(shl(224, shr(192, h0)), shl(192, and(shr(128, h0), 0xffffffff))),
                             or(shl(160, and(shr(64, h0), 0xffffffff)), shl(128, and(h0, 0xffffffff)))),
                          or(or(shl(96, shr(192, h1)), shl(64, and(shr(128, h1), 0xffffffff))),
                             or(shl(32, and(shr(64, h1), 0xffffffff)), and(h1, 0xffffffff))))
                out := bswap32(out)
            }

            digest := blake3(data)
        }
    }
}
