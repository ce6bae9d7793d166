// SPDX-License-Identifier: Apache-2.0 OR MIT
pragma solidity ^0.8.24;

import "./Sha512.sol";

/// @title Ed25519 signature verification (RFC 8032, section 5.1.7) with the
/// acceptance rules of ed25519-dalek's `VerifyingKey::verify_strict`.
///
/// @notice `verify(publicKey, r, s, message)` is true iff
///   * S < L (the group order), S being bytes 32..64 of the signature read
///     little-endian;
///   * A (publicKey) and R (signature bytes 0..32) are canonical encodings
///     (y < p; x = 0 only with the sign bit clear) of curve points;
///   * neither A nor R has small order ([8]P is not the identity);
///   * [S]B == R + [k]A, k = SHA-512(R || A || message) mod L (cofactorless).
/// Every other input gives false; nothing reverts.
///
/// @dev Curve: -x^2 + y^2 = 1 + d x^2 y^2 over GF(p), p = 2^255 - 19.
/// Points are in extended coordinates (X : Y : Z : T), x = X/Z, y = Y/Z,
/// T = XY/Z (Hisil, Wong, Carter, Dawson 2008). With a = -1 a square and d
/// a non-square the addition formula is complete, so no case needs care.
/// The check computes R' = [S]B + [k](-A) with one shared chain of 252
/// doublings (Straus), four bits of each scalar per step: B's multiples
/// [1..15]B are constants (affine, as (y+x, y-x, 2dxy)), -A's multiples
/// [1..15](-A) are computed once per call (as (Y+X, Y-X, 2Z, 2dT)). Then
/// R' == R as points, i.e. X' = x_R Z' and Y' = y_R Z'; since R's encoding
/// is canonical that is the same as dalek's comparison of encodings.
///
/// Field arithmetic is `mulmod`/`addmod` mod p. A sum of two reduced values
/// is below 2p < 2^256, so where it only feeds a `mulmod` it is left
/// unreduced (`add`, and `add(u, sub(p, v))` for u - v).
///
/// Square roots (in point decoding) use the modexp precompile at 0x05,
/// hence `view`.
library Ed25519 {
    /// p = 2^255 - 19
    uint256 private constant P = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed;
    /// L = 2^252 + 27742317777372353535851937790883648493, the prime order of B
    uint256 private constant L = 0x1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed;
    /// d = -121665 / 121666 mod p
    uint256 private constant D = 0x52036cee2b6ffe738cc740797779e89800700a4d4141d8ab75eb4dca135978a3;
    /// 2d mod p
    uint256 private constant D2 = 0x2406d9dc56dffce7198e80f2eef3d13000e0149a8283b156ebd69b9426b2f159;
    /// sqrt(-1) = 2^((p - 1) / 4) mod p
    uint256 private constant SQRT_M1 = 0x2b8324804fc1df0b2b4d00993dfbd7a72f431806ad2fe478c4ee1b274a0ea0b0;
    /// (p - 5) / 8, the exponent of the square root candidate (RFC 8032, 5.1.3)
    uint256 private constant SQRT_EXP = 0x0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffd;
    /// 2^256 mod L, to reduce a 512-bit hash as hi * 2^256 + lo
    uint256 private constant R256_MOD_L = 0x0ffffffffffffffffffffffffffffffec6ef5bf4737dcf70d6ec31748d98951d;

    /// [j]B for j = 1..15, B the base point (y = 4/5, x even), each as three
    /// words: y + x, y - x, 2d x y (mod p).
    bytes private constant B_TABLE =
        hex"07cf9d3a33d4ba65270b4898643d42c2cf932dc6fb8c0e192fbc93c6f58c3b8544fd2f9298f81267a5c18434688f8a09fd399f05d140beb39d103905d740913e6f117b689f0c65a85a1b7dcbdd43598c26d9e823ccaac49eabc91205877aaa68"
        hex"590c063fa87d2e2e5aa69a65e1d607029f469d967a0ff5b59224e7fc933c71d76bb595a669c92555e09e236bb16e37aa8f2b810c4e60acf68a99a56042b4d5a8701af5b13ea50b73500fa0840b3d6a3136c16bdd5d9acf7843faa8b3a59b7a5f"
        hex"7a164e1b9a80f8f4c11b50029f016732025a8430e8864b8aaf25b0a84cee97302ab91587555bda628131f31a214bd6bd3bd353fde5c1ba7d56611fe8a4fcd2655a2826af12b9b4c6d170e5458cf2db4c589423221c35da6214ae933f0dd0d889"
        hex"680e910321e58727ca348d3dfb0a92656765c6f47dfd2538287351b98efc099f27933f4c7445a49ac3e8e3cd06a05073327e89715660faa995fe050a056818bf7f9d0cbf63553e2b5ddbdcf9102b44946e9e39457b5cc1725a13fbe9c476ff09"
        hex"2945ccf146e206ebdd1beb0c5abfec448d5048c3c75eed02a212bc4408a5bb33154a7e73eb1b55f3e33cf11cb864a087d50014d14b2729b77f9182c3a447d6ba43aabe696b3bb69ab41b670b1bbda72d270e0807d0bdd1fcbcbbdbf1812a8285"
        hex"51e57bb6a2cc38bd8065b668da59a7369b27158900c8af883a0ceeeb7715713138b64c41ae417884bb085ce7204553b9575be28427d22739499806b67b7d8ca410b8e91a9f0d61e353e4a24b083bc144be70e00341a1bb0185ac326702ea4b71"
        hex"461bea69283c927e71b2528228542e497470353ab39dc0d26b1a5cd0944ea3bf1d6edd5d2e5317e09dea764f92192c3a6ca021533bba23a7ba6f2c9aaa3221b17a9fbb1c6a0f90a7529c41ba5877adf3b3035f47053ea49af1836dc801b8b3a2"
        hex"0915e76061bce52fb1339c665ed9c3236cb30377e288702c59b7596604dd3e8f3a9024a1320e01c32c2741ac6e3c23fb963d7680e1b558f9e2a75dedf39234d926907c5c2ecc4e95636412190eb62a32b8a371788bcca7d7e7c1f5d9c9a2911a"
        hex"34b9ed338add7f59ceb233c9c686f5b5a6509e6f51bc46c59b2e678aa6a8632f49c05a51fadc9c8f96cbc608e75eb04498a081b6f520419bf36e217e039d806473c172021b008b06aaf6fc2993d4cf16e2ff83e8a719d22f06b4e8bf9045af1b"
        hex"43ac7628aae591ed0d5503639b55464645f534d41617e057ff1d93d2b360748e0353832c4950b70284739745f5dc395804f8183665a9f02f75f3558e227081dd0ec62af470bf4ce7ff169f0f6731b5091d0c1ccbd3f06340d03d2ae403d0f8d8"
        hex"4275aae2546d8faf113e847117703406e5d9fecf02302e272fbf00848a802ade18ab598029d5c77fa3a075556a8deb953ed6b36977088381315f5b02498643483dc65522b53df94844311199b51a8622031eb4a13282e4a4d82b2cc5fd6089e9"
        hex"078aafde8d3cdd5845ecdd2e701a6f9388de3dd7d834d1a9e2358042a71e75397956ece28a6022ed884dfb6e56d5dbdd23b2bf90ccb25b24856f8375b53d54b937c6a5151c83d0c6ffcb589af4976461f66cda23a24e180beea594d87f944553"
        hex"234fd7eec346f241537a0e12fb07ba07bf84b39ab5bcdedbbf70c222a2007f6d0267882d176024a79d12b232aaad5968aefcebc99b776f6b506f013b327fbf93497ba6fdaa097863a2ef37f891a7e5332437e6b1df8dd4715360a119732ea378"
        hex"6eaf60b2464d16301a474c042881bdd580277fc057efa98726f870ec3f213df22df0ea2c5b3c80d2112e56f16eec47a9ce69b20fdb7ca331dfdb8a44d417128024bf7e3cd8ba9c939c1fdf703ecb1baaf02397eda2a9bf5496a1c5877a1e1b82"
        hex"61e22917f12de72b2dbdbdfac1f2d4d08648c28d189c246d24cecc0313cfeaa043b5cd4218d05ebf7508300807b25192d3829ba42a9910d6040bcd86468ccf0b511d61210ae4d842032e5a7d93d64270eb38af4e373fdeee5d9a762f9bd0b516";

    /// @notice Whether (r, s) is a valid signature of `message` by `publicKey`
    /// under the rules above.
    /// @param publicKey the 32-byte encoding of A
    /// @param r signature bytes 0..32 (the encoding of R)
    /// @param s signature bytes 32..64 (S, little-endian)
    /// @param message the signed bytes, exactly
    function verify(bytes32 publicKey, bytes32 r, bytes32 s, bytes memory message) internal view returns (bool) {
        uint256 sc = _reverseBytes(uint256(s));
        if (sc >= L) return false;
        // k = SHA-512(R || A || M) read little-endian (512 bits) mod L.
        (bytes32 hi, bytes32 lo) = Sha512.hash(abi.encodePacked(r, publicKey, message));
        uint256 k = addmod(mulmod(_reverseBytes(uint256(lo)), R256_MOD_L, L), _reverseBytes(uint256(hi)), L);
        return _check(sc, k, _reverseBytes(uint256(publicKey)), _reverseBytes(uint256(r)), B_TABLE);
    }

    /// Byte reversal: the integer that a 32-byte little-endian string means.
    function _reverseBytes(uint256 v) private pure returns (uint256) {
        v = ((v >> 8) & 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff)
            | ((v & 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff) << 8);
        v = ((v >> 16) & 0x0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff)
            | ((v & 0x0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff) << 16);
        v = ((v >> 32) & 0x00000000ffffffff00000000ffffffff00000000ffffffff00000000ffffffff)
            | ((v & 0x00000000ffffffff00000000ffffffff00000000ffffffff00000000ffffffff) << 32);
        v = ((v >> 64) & 0x0000000000000000ffffffffffffffff0000000000000000ffffffffffffffff)
            | ((v & 0x0000000000000000ffffffffffffffff0000000000000000ffffffffffffffff) << 64);
        return (v >> 128) | (v << 128);
    }

    /// Decodes A and R (given as little-endian integers), rejects bad or
    /// small-order points, and compares [sc]B + [k](-A) with R.
    function _check(uint256 sc, uint256 k, uint256 encA, uint256 encR, bytes memory bTable)
        private
        view
        returns (bool valid)
    {
        assembly ("memory-safe") {
            // The hot functions read P into a local `p` once: as a literal
            // the optimizer would rebuild it as (1 << 255) - 19 at every use.

            // Four doublings (dbl-2008-hwcd with a = -1, each: A = X^2,
            // B = Y^2, C = 2Z^2, E = (X+Y)^2 - A - B, G = B - A, F = G - C,
            // H = -A - B; X' = EF, Y' = GH, Z' = FG, T' = EH). E, F, G, H are
            // used negated, as every output is a product of two of them. T is
            // not read and is only computed by the last doubling.
            function dbl4(x, y, z) -> x4, y4, z4, t4 {
                let p := P
                for { let i := 0 } lt(i, 3) { i := add(i, 1) } {
                    let a := mulmod(x, x, p)
                    let b := mulmod(y, y, p)
                    let h := addmod(a, b, p) // -H
                    b := addmod(a, sub(p, b), p) // -G
                    a := add(x, y)
                    a := add(h, sub(p, mulmod(a, a, p))) // -E
                    let f := add(mulmod(z, add(z, z), p), b) // -F
                    x := mulmod(a, f, p)
                    y := mulmod(b, h, p)
                    z := mulmod(f, b, p)
                }
                let a := mulmod(x, x, p)
                let b := mulmod(y, y, p)
                let h := addmod(a, b, p)
                b := addmod(a, sub(p, b), p)
                a := add(x, y)
                a := add(h, sub(p, mulmod(a, a, p)))
                let f := add(mulmod(z, add(z, z), p), b)
                x4 := mulmod(a, f, p)
                y4 := mulmod(b, h, p)
                z4 := mulmod(f, b, p)
                t4 := mulmod(a, h, p)
            }

            // Addition of the point q -> (Y+X, Y-X, 2Z, 2dT) (add-2008-hwcd-3):
            // A = (Y-X)(Y_q-X_q), B = (Y+X)(Y_q+X_q), C = T 2dT_q, D = Z 2Z_q,
            // E = B - A, F = D - C, G = D + C, H = B + A;
            // X' = EF, Y' = GH, Z' = FG, T' = EH. With Z_q = 1 (B's table,
            // affine) D is 2Z and the table needs no Z at all.
            function addProjective(x, y, z, t, q) -> x3, y3, z3, t3 {
                let p := P
                x3 := mulmod(add(y, sub(p, x)), mload(add(q, 0x20)), p)
                y3 := mulmod(add(y, x), mload(q), p)
                z3 := mulmod(t, mload(add(q, 0x60)), p)
                t3 := mulmod(z, mload(add(q, 0x40)), p)
                let e := add(y3, sub(p, x3))
                let h := add(y3, x3)
                let f := add(t3, sub(p, z3))
                let g := add(t3, z3)
                x3 := mulmod(e, f, p)
                y3 := mulmod(g, h, p)
                z3 := mulmod(f, g, p)
                t3 := mulmod(e, h, p)
            }

            // b^SQRT_EXP mod p by the modexp precompile; 0 if the call fails
            // (then decoding fails, or yields x = 0 only where x = 0 is right).
            function powSqrtExp(b) -> r {
                let m := mload(0x40)
                mstore(m, 0x20)
                mstore(add(m, 0x20), 0x20)
                mstore(add(m, 0x40), 0x20)
                mstore(add(m, 0x60), b)
                mstore(add(m, 0x80), SQRT_EXP)
                mstore(add(m, 0xa0), P)
                let success := staticcall(gas(), 0x05, m, 0xc0, m, 0x20)
                r := mul(mload(m), success)
            }

            // Point decoding (RFC 8032, 5.1.3) of the little-endian integer v:
            // y = v mod 2^255 must be < p; x^2 = u / w with u = y^2 - 1,
            // w = d y^2 + 1; the candidate x = u w^3 (u w^7)^((p-5)/8) is a
            // root if w x^2 = u, is one after multiplying by sqrt(-1) if
            // w x^2 = -u, and otherwise there is none. x = 0 with the sign
            // bit (bit 255) set is rejected; else x takes the sign bit's parity.
            function decode(v) -> ok, x, y {
                y := and(v, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
                if iszero(lt(y, P)) { leave }
                let yy := mulmod(y, y, P)
                let u := addmod(yy, sub(P, 1), P)
                let w := addmod(mulmod(D, yy, P), 1, P)
                let uw3 := mulmod(u, mulmod(mulmod(w, w, P), w, P), P)
                // u w^7 = (u w^3) w^4
                let ww := mulmod(w, w, P)
                x := mulmod(uw3, powSqrtExp(mulmod(uw3, mulmod(ww, ww, P), P)), P)
                let wxx := mulmod(w, mulmod(x, x, P), P)
                if iszero(eq(wxx, u)) {
                    if iszero(eq(wxx, sub(P, u))) { leave }
                    x := mulmod(x, SQRT_M1, P)
                }
                let sign := shr(255, v)
                if and(iszero(x), sign) { leave }
                if iszero(eq(and(x, 1), sign)) { x := sub(P, x) }
                ok := 1
            }

            // Whether the point lies in the torsion subgroup, i.e. has order
            // dividing 8. The group is Z/L x Z/8 with L an odd prime, so that
            // is the case iff [16](x, y) is the identity (0 : 1 : 1).
            function smallOrder(x, y) -> r {
                let x16, y16, z16, t16 := dbl4(x, y, 1)
                r := and(iszero(x16), eq(y16, z16))
            }

            // Decodes A and writes [j](-A) for j = 1..15 above the free
            // memory pointer (128 bytes each; scratch, not allocated: only
            // the ladder reads it, and nothing allocates before). Returns
            // the address of entry 0 (so entry j is at ta + 128 j), or 0 if A
            // is not a valid point of large enough order.
            function tableA(ea) -> ta {
                let okA, x, y := decode(ea)
                if iszero(okA) { leave }
                if smallOrder(x, y) { leave }
                // -A = (-x, y); x != 0 since A is not (0, +-1)
                x := sub(P, x)
                let z := 1
                let t := mulmod(x, y, P)
                let q := mload(0x40)
                ta := sub(q, 0x80)
                mstore(q, addmod(y, x, P))
                mstore(add(q, 0x20), addmod(y, sub(P, x), P))
                mstore(add(q, 0x40), 2)
                mstore(add(q, 0x60), mulmod(t, D2, P))
                let first := q
                for { let end := add(q, 0x700) } lt(q, end) { } {
                    x, y, z, t := addProjective(x, y, z, t, first)
                    q := add(q, 0x80)
                    mstore(q, addmod(y, x, P))
                    mstore(add(q, 0x20), addmod(y, sub(P, x), P))
                    mstore(add(q, 0x40), addmod(z, z, P))
                    mstore(add(q, 0x60), mulmod(t, D2, P))
                }
            }

            // [s1]B + [s2](-A) from the top nibble down: per nibble, add the
            // table entries the two nibbles select (none for 0), then double
            // four times. s1, s2 < 2^253, so nibble 63 is the top one. The
            // additions are addProjective's (with D = 2Z for B's affine
            // entries) and the doublings dbl4's, written out here to save the
            // calls. The result is (X : Y : Z) of [s1]B + [s2](-A).
            function ladder(s1, s2, ta, tb) -> x, y, z {
                let p := P
                let t := 0
                y := 1
                z := 1
                for { let i := 252 } 1 { i := sub(i, 4) } {
                    let q := and(shr(i, s1), 15)
                    if q {
                        // + [q]B, q -> (y+x, y-x, 2dxy)
                        q := add(tb, mul(q, 0x60))
                        let a := mulmod(add(y, sub(p, x)), mload(add(q, 0x20)), p) // A
                        let b := mulmod(add(y, x), mload(q), p) // B
                        let c := mulmod(t, mload(add(q, 0x40)), p) // C
                        let dd := addmod(z, z, p) // D = 2Z
                        let h := add(b, a) // H
                        a := add(b, sub(p, a)) // E
                        b := add(dd, c) // G
                        c := add(dd, sub(p, c)) // F
                        x := mulmod(a, c, p)
                        y := mulmod(b, h, p)
                        z := mulmod(c, b, p)
                        t := mulmod(a, h, p)
                    }
                    q := and(shr(i, s2), 15)
                    if q {
                        // + [q](-A), q -> (Y+X, Y-X, 2Z, 2dT)
                        q := add(ta, shl(7, q))
                        let a := mulmod(add(y, sub(p, x)), mload(add(q, 0x20)), p)
                        let b := mulmod(add(y, x), mload(q), p)
                        let c := mulmod(t, mload(add(q, 0x60)), p)
                        let dd := mulmod(z, mload(add(q, 0x40)), p) // D = Z 2Z_q
                        let h := add(b, a)
                        a := add(b, sub(p, a))
                        b := add(dd, c)
                        c := add(dd, sub(p, c))
                        x := mulmod(a, c, p)
                        y := mulmod(b, h, p)
                        z := mulmod(c, b, p)
                    }
                    if iszero(i) { break }
                    // Three doublings without T, then one with T (unrolled).
                    {
                        let a := mulmod(x, x, p)
                        let b := mulmod(y, y, p)
                        let h := addmod(a, b, p)
                        b := addmod(a, sub(p, b), p)
                        a := add(x, y)
                        a := add(h, sub(p, mulmod(a, a, p)))
                        let f := add(mulmod(z, add(z, z), p), b)
                        x := mulmod(a, f, p)
                        y := mulmod(b, h, p)
                        z := mulmod(f, b, p)
                    }
                    {
                        let a := mulmod(x, x, p)
                        let b := mulmod(y, y, p)
                        let h := addmod(a, b, p)
                        b := addmod(a, sub(p, b), p)
                        a := add(x, y)
                        a := add(h, sub(p, mulmod(a, a, p)))
                        let f := add(mulmod(z, add(z, z), p), b)
                        x := mulmod(a, f, p)
                        y := mulmod(b, h, p)
                        z := mulmod(f, b, p)
                    }
                    {
                        let a := mulmod(x, x, p)
                        let b := mulmod(y, y, p)
                        let h := addmod(a, b, p)
                        b := addmod(a, sub(p, b), p)
                        a := add(x, y)
                        a := add(h, sub(p, mulmod(a, a, p)))
                        let f := add(mulmod(z, add(z, z), p), b)
                        x := mulmod(a, f, p)
                        y := mulmod(b, h, p)
                        z := mulmod(f, b, p)
                    }
                    {
                        let a := mulmod(x, x, p)
                        let b := mulmod(y, y, p)
                        let h := addmod(a, b, p)
                        b := addmod(a, sub(p, b), p)
                        a := add(x, y)
                        a := add(h, sub(p, mulmod(a, a, p)))
                        let f := add(mulmod(z, add(z, z), p), b)
                        x := mulmod(a, f, p)
                        y := mulmod(b, h, p)
                        z := mulmod(f, b, p)
                        t := mulmod(a, h, p)
                    }
                }
            }

            // Decodes R, builds A's table, and compares [s1]B + [s2](-A)
            // with R: X = x_R Z and Y = y_R Z.
            function run(s1, s2, ea, er, tb) -> res {
                let okR, rx, ry := decode(er)
                if iszero(okR) { leave }
                if smallOrder(rx, ry) { leave }
                let ta := tableA(ea)
                if iszero(ta) { leave }
                let x, y, z := ladder(s1, s2, ta, tb)
                res := and(eq(mulmod(rx, z, P), x), eq(mulmod(ry, z, P), y))
            }

            // entry j of B_TABLE at tb + 96 j
            valid := run(sc, k, encA, encR, sub(add(bTable, 0x20), 0x60))
        }
    }
}
