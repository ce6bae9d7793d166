// SPDX-License-Identifier: Apache-2.0 OR MIT
pragma solidity ^0.8.24;

import "../Blake3.sol";
import "../Ed25519.sol";
import "../Sha512.sol";

/// @title Test-only entry points to the crypto libraries.
///
/// @notice Not deployed by the protocol: `scripts/crypto-check.mjs` calls it
/// with eth_call to compare the libraries with reference implementations and
/// to read their gas. It uses all three libraries, so its deployed size is
/// roughly what they add to a contract that uses them (they are internal and
/// inlined).
contract CryptoHarness {
    function sha512(bytes calldata data) external pure returns (bytes32, bytes32) {
        return Sha512.hash(data);
    }

    function blake3(bytes calldata data) external pure returns (bytes32) {
        return Blake3.hash(data);
    }

    function verify(bytes32 publicKey, bytes32 r, bytes32 s, bytes calldata message) external view returns (bool) {
        return Ed25519.verify(publicKey, r, s, message);
    }

    /// @return ok what `verify` returns
    /// @return gasUsed the gas of the library call alone (the message is
    /// copied to memory before the first reading)
    function verifyGas(bytes32 publicKey, bytes32 r, bytes32 s, bytes calldata message)
        external
        view
        returns (bool ok, uint256 gasUsed)
    {
        bytes memory m = message;
        uint256 before = gasleft();
        ok = Ed25519.verify(publicKey, r, s, m);
        gasUsed = before - gasleft();
    }

    /// @return high digest bytes 0..32
    /// @return low digest bytes 32..64
    /// @return gasUsed the gas of `Sha512.hash` alone
    function sha512Gas(bytes calldata data) external view returns (bytes32 high, bytes32 low, uint256 gasUsed) {
        bytes memory m = data;
        uint256 before = gasleft();
        (high, low) = Sha512.hash(m);
        gasUsed = before - gasleft();
    }

    /// @return digest the BLAKE3 hash
    /// @return gasUsed the gas of `Blake3.hash` alone
    function blake3Gas(bytes calldata data) external view returns (bytes32 digest, uint256 gasUsed) {
        bytes memory m = data;
        uint256 before = gasleft();
        digest = Blake3.hash(m);
        gasUsed = before - gasleft();
    }
}
