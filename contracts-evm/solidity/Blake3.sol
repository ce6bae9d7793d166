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
/// 32-bit entries in 64-bit lanes (lane 0 = bits 192..255), so one pass of
/// the G code runs G on all four columns at once: the 32 spare bits above
/// each entry absorb the carries of a + b + m, and a rotation is
/// `(x >> n | x << (32 - n))` masked back to the low 32 bits of each lane
/// (nothing crosses a lane boundary before the mask). The diagonal step
/// rotates rows b, c and d by one, two and three lanes, runs G again and
/// rotates them back. Which message words each round takes (the input
/// block permuted once more every round) is the table SCHEDULE.
library Blake3 {
    /// The message schedule: row r (16 bytes) lists, for round r, the
    /// message words that the four G steps take, in the order the lanes
    /// need them: mx and my of the columns, then of the diagonals
    /// (words 0 2 4 6, 1 3 5 7, 8 10 12 14, 9 11 13 15 of the round's
    /// message, the round-r message being the input block permuted r times
    /// by MSG_PERMUTATION = 2 6 3 10 7 0 4 13 1 11 12 5 9 14 15 8). Each
    /// byte is 16 x the word index: twice that is the word's slot offset.
    /// The final 0xff marks the end.
    bytes private constant SCHEDULE =
        hex"002040601030507080a0c0e090b0d0f0"
        hex"2030704060a000d010c090f0b050e080"
        hex"30a0d07040c020e06090b0805000f010"
        hex"a0c0e0d0709030f040b0501000208060"
        hex"c090f0e0d0b0a0807050006020301040"
        hex"90b080f0e050c010d000204030a06070"
        hex"b0501080f0009060e0203070a0c040d0"
        hex"ff";

    function hash(bytes memory data) internal pure returns (bytes32 digest) {
        bytes memory schedule = SCHEDULE;
        assembly ("memory-safe") {
            // IV[0..4) and IV[4..8) in lanes (the SHA-256 initial hash value).
            function ivLo() -> v { v := 0x000000006a09e66700000000bb67ae85000000003c6ef37200000000a54ff53a }
            function ivHi() -> v { v := 0x00000000510e527f000000009b05688c000000001f83d9ab000000005be0cd19 }

            // The compression function, truncated to the chaining value:
            // h' = v[0..8) ^ v[8..16). The input chaining value is (a, b) =
            // (h[0..4), h[4..8)) in lanes, d is (counter low, counter high,
            // block length, flags), the 16 message words are in the 32-byte
            // slots at m, and the slot after them holds the address of
            // SCHEDULE.
            //
            // Per round: G on the four columns (lane i: v_i, v_(4+i),
            // v_(8+i), v_(12+i) with message words 2i, 2i+1), then rows b, c,
            // d rotated by one, two and three lanes so that lane i holds the
            // i-th diagonal (v0 v5 v10 v15), (v1 v6 v11 v12), ..., G on those
            // with words 8+2i, 9+2i, and the rows rotated back. G:
            //   a += b + mx; d = (d ^ a) >>> 16; c += d; b = (b ^ c) >>> 12;
            //   a += b + my; d = (d ^ a) >>> 8;  c += d; b = (b ^ c) >>> 7.
            function compress(a, b, d, m) -> c, x {
                // c is row 2 (from IV[0..4)), x a scratch word; at the end
                // they become the two halves of the output.
                c := 0x000000006a09e66700000000bb67ae85000000003c6ef37200000000a54ff53a
                let l32 := 0x00000000ffffffff00000000ffffffff00000000ffffffff00000000ffffffff
                // The row after the last starts with 0xff; seven rounds.
                for { let r := mload(add(m, 0x200)) } 1 { r := add(r, 0x10) } {
                    let s := mload(r)
                    // columns: mx = words 0 2 4 6 of the round's message
                    a := and(add(add(a, b), or(or(shl(192, mload(add(m, shl(1, byte(0, s))))),
                                                  shl(128, mload(add(m, shl(1, byte(1, s)))))),
                                               or(shl(64, mload(add(m, shl(1, byte(2, s))))),
                                                  mload(add(m, shl(1, byte(3, s))))))), l32)
                    x := xor(d, a)
                    d := and(or(shr(16, x), shl(16, x)), l32)
                    c := and(add(c, d), l32)
                    x := xor(b, c)
                    b := and(or(shr(12, x), shl(20, x)), l32)
                    // columns: my = words 1 3 5 7
                    a := and(add(add(a, b), or(or(shl(192, mload(add(m, shl(1, byte(4, s))))),
                                                  shl(128, mload(add(m, shl(1, byte(5, s)))))),
                                               or(shl(64, mload(add(m, shl(1, byte(6, s))))),
                                                  mload(add(m, shl(1, byte(7, s))))))), l32)
                    x := xor(d, a)
                    d := and(or(shr(8, x), shl(24, x)), l32)
                    c := and(add(c, d), l32)
                    x := xor(b, c)
                    b := and(or(shr(7, x), shl(25, x)), l32)
                    // diagonalize
                    b := or(shl(64, b), shr(192, b))
                    c := or(shl(128, c), shr(128, c))
                    d := or(shl(192, d), shr(64, d))
                    // diagonals: mx = words 8 10 12 14
                    a := and(add(add(a, b), or(or(shl(192, mload(add(m, shl(1, byte(8, s))))),
                                                  shl(128, mload(add(m, shl(1, byte(9, s)))))),
                                               or(shl(64, mload(add(m, shl(1, byte(10, s))))),
                                                  mload(add(m, shl(1, byte(11, s))))))), l32)
                    x := xor(d, a)
                    d := and(or(shr(16, x), shl(16, x)), l32)
                    c := and(add(c, d), l32)
                    x := xor(b, c)
                    b := and(or(shr(12, x), shl(20, x)), l32)
                    // diagonals: my = words 9 11 13 15
                    a := and(add(add(a, b), or(or(shl(192, mload(add(m, shl(1, byte(12, s))))),
                                                  shl(128, mload(add(m, shl(1, byte(13, s)))))),
                                               or(shl(64, mload(add(m, shl(1, byte(14, s))))),
                                                  mload(add(m, shl(1, byte(15, s))))))), l32)
                    x := xor(d, a)
                    d := and(or(shr(8, x), shl(24, x)), l32)
                    c := and(add(c, d), l32)
                    x := xor(b, c)
                    b := and(or(shr(7, x), shl(25, x)), l32)
                    // and back
                    b := or(shr(64, b), shl(192, b))
                    c := or(shl(128, c), shr(128, c))
                    d := or(shr(192, d), shl(64, d))
                    if eq(byte(16, s), 0xff) { break }
                }
                c := xor(a, c)
                x := xor(b, d)
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
                    {
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
                        spread(m, bswap32(x))
                        spread(add(m, 0x100), bswap32(y))
                    }
                    if gt(blockLen, 64) { blockLen := 64 }
                    let flags := iszero(i)
                    if eq(i, sub(blocks, 1)) { flags := or(flags, or(2, root)) }
                    h0, h1 := compress(h0, h1, or(ctr, or(shl(64, blockLen), flags)), m)
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
                h0, h1 := compress(ivLo(), ivHi(), or(shl(64, 64), flags), m)
            }

            // Scratch above the free memory pointer, not allocated: the 16
            // message slots, the address of SCHEDULE, then the stack of
            // pending left subtrees' chaining values (two words each, at
            // most 54 for 2^64 bytes).
            function blake3(input, sched) -> out {
                let len := mload(input)
                let src := add(input, 0x20)
                let m := mload(0x40)
                mstore(add(m, 0x200), sched)
                let base := add(m, 0x220)
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

            digest := blake3(data, add(schedule, 0x20))
        }
    }
}
