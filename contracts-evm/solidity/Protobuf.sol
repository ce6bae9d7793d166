// SPDX-License-Identifier: Apache-2.0 OR MIT
pragma solidity ^0.8.24;

/// @title The three Agora messages the escrow reads, decoded from the exact
/// protobuf bytes both parties signed (`proto/proto/agora/v1/agora.proto`).
///
/// @notice The decoder accepts only the canonical shape our encoder writes:
/// fields in ascending order, each at most once, with its declared wire
/// type, and no field it does not know. Anything else is refused. A looser
/// decoder could read a different amount from the same signed bytes than the
/// Rust nodes that countersigned them; a stricter one can only refuse bytes
/// that a party crafted, which costs that party alone.
library Protobuf {
    error Malformed(string reason);

    uint256 private constant VARINT = 0;
    uint256 private constant LEN = 2;

    /// The lease terms (agora.v1.LeaseTerms), fields 1–13 (13, the sandbox
    /// limits, is skipped).
    struct LeaseTerms {
        bytes32 orderId;
        bytes32 requester;
        bytes32 provider;
        uint64 slot;
        uint256 gpuModelLength;
        uint64 gpuCount;
        uint64 pricePerGpuHour;
        uint64 maxDurationSecs;
        uint64 receiptIntervalSecs;
        uint64 startsAtMs;
        uint64 escrow;
        bool simulated;
        /// Bit `n` set: field `n` was present.
        uint256 present;
    }

    /// A usage receipt (agora.v1.UsageReceipt), fields 1–8.
    struct UsageReceipt {
        bytes32 leaseId;
        uint64 sequence;
        uint64 gpuSeconds;
        uint64 cumulativeAmount;
        uint64 issuedAtMs;
        bool isFinal;
        uint256 resultHashLength;
        bool hasExitStatus;
        /// Bit `n` set: field `n` was present.
        uint256 present;
    }

    /// An early close (agora.v1.LeaseClose), fields 1–5.
    struct LeaseClose {
        bytes32 leaseId;
        uint64 gpuSeconds;
        uint64 cumulativeAmount;
        /// The enum's value as sent (0 and unknown values included).
        uint64 reason;
        uint64 issuedAtMs;
        /// Bit `n` set: field `n` was present.
        uint256 present;
    }

    /// Decodes lease terms. Byte fields that hold keys and ids must be
    /// exactly 32 bytes; absent fields are zero, as in proto3.
    function leaseTerms(bytes calldata b) internal pure returns (LeaseTerms memory t) {
        uint256 pos = 0;
        uint256 last = 0;
        while (pos < b.length) {
            uint256 field;
            uint256 wire;
            (field, wire, pos) = key(b, pos, last);
            last = field;
            t.present |= 1 << field;
            if (field == 1 || field == 2 || field == 3) {
                expectWire(wire, LEN);
                bytes32 word;
                (word, pos) = bytes32Field(b, pos);
                if (field == 1) t.orderId = word;
                else if (field == 2) t.requester = word;
                else t.provider = word;
            } else if (field == 5) {
                expectWire(wire, LEN);
                uint256 start;
                (start, pos) = lengthDelimited(b, pos);
                t.gpuModelLength = pos - start;
            } else if (field == 12) {
                expectWire(wire, VARINT);
                uint256 v;
                (v, pos) = varint(b, pos);
                t.simulated = v != 0;
            } else if (field == 13) {
                // The sandbox's limits: nothing the escrow decides on,
                // but inside the bytes the lease id and both signatures
                // cover.
                expectWire(wire, LEN);
                (, pos) = lengthDelimited(b, pos);
            } else if (field <= 11) {
                expectWire(wire, VARINT);
                uint256 v;
                (v, pos) = varint(b, pos);
                if (field == 4 || field == 6 || field == 9) v = uint32Of(v);
                if (field == 4) t.slot = uint64(v);
                else if (field == 6) t.gpuCount = uint64(v);
                else if (field == 7) t.pricePerGpuHour = uint64(v);
                else if (field == 8) t.maxDurationSecs = uint64(v);
                else if (field == 9) t.receiptIntervalSecs = uint64(v);
                else if (field == 10) t.startsAtMs = uint64(v);
                else t.escrow = uint64(v);
            } else {
                revert Malformed("unknown lease field");
            }
        }
    }

    /// Decodes a usage receipt.
    function usageReceipt(bytes calldata b) internal pure returns (UsageReceipt memory r) {
        uint256 pos = 0;
        uint256 last = 0;
        while (pos < b.length) {
            uint256 field;
            uint256 wire;
            (field, wire, pos) = key(b, pos, last);
            last = field;
            r.present |= 1 << field;
            if (field == 1) {
                expectWire(wire, LEN);
                (r.leaseId, pos) = bytes32Field(b, pos);
            } else if (field == 7) {
                expectWire(wire, LEN);
                uint256 start;
                (start, pos) = lengthDelimited(b, pos);
                r.resultHashLength = pos - start;
            } else if (field == 8) {
                // optional int32: present even when zero; only its presence
                // matters here.
                expectWire(wire, VARINT);
                (, pos) = varint(b, pos);
                r.hasExitStatus = true;
            } else if (field >= 2 && field <= 6) {
                expectWire(wire, VARINT);
                uint256 v;
                (v, pos) = varint(b, pos);
                if (field == 2) r.sequence = uint64(v);
                else if (field == 3) r.gpuSeconds = uint64(v);
                else if (field == 4) r.cumulativeAmount = uint64(v);
                else if (field == 5) r.issuedAtMs = uint64(v);
                else r.isFinal = v != 0;
            } else {
                revert Malformed("unknown receipt field");
            }
        }
    }

    /// Decodes an early close.
    function leaseClose(bytes calldata b) internal pure returns (LeaseClose memory c) {
        uint256 pos = 0;
        uint256 last = 0;
        while (pos < b.length) {
            uint256 field;
            uint256 wire;
            (field, wire, pos) = key(b, pos, last);
            last = field;
            c.present |= 1 << field;
            if (field == 1) {
                expectWire(wire, LEN);
                (c.leaseId, pos) = bytes32Field(b, pos);
            } else if (field >= 2 && field <= 5) {
                expectWire(wire, VARINT);
                uint256 v;
                (v, pos) = varint(b, pos);
                if (field == 2) c.gpuSeconds = uint64(v);
                else if (field == 3) c.cumulativeAmount = uint64(v);
                else if (field == 4) c.reason = uint64(v);
                else c.issuedAtMs = uint64(v);
            } else {
                revert Malformed("unknown close field");
            }
        }
    }

    /// Reads a field key at `pos`; the field must be above `last`.
    function key(bytes calldata b, uint256 pos, uint256 last)
        private
        pure
        returns (uint256 field, uint256 wire, uint256 next)
    {
        uint256 k;
        (k, next) = varint(b, pos);
        field = k >> 3;
        wire = k & 7;
        if (field <= last) revert Malformed("fields out of order or repeated");
    }

    function expectWire(uint256 wire, uint256 want) private pure {
        if (wire != want) revert Malformed("wrong wire type");
    }

    /// A base-128 varint of at most ten bytes whose value fits 64 bits.
    function varint(bytes calldata b, uint256 pos) private pure returns (uint256 v, uint256 next) {
        unchecked {
            for (uint256 i = 0; i < 10; ++i) {
                if (pos + i >= b.length) revert Malformed("truncated varint");
                uint256 byte_ = uint8(b[pos + i]);
                v |= (byte_ & 0x7f) << (7 * i);
                if (byte_ < 0x80) {
                    if (v > type(uint64).max) revert Malformed("varint exceeds 64 bits");
                    return (v, pos + i + 1);
                }
            }
        }
        revert Malformed("varint longer than ten bytes");
    }

    /// A uint32 field: prost refuses wider values.
    function uint32Of(uint256 v) private pure returns (uint256) {
        if (v > type(uint32).max) revert Malformed("uint32 field exceeds 32 bits");
        return v;
    }

    /// A length-delimited field at `pos`: returns where its bytes start and
    /// where the next field begins.
    function lengthDelimited(bytes calldata b, uint256 pos) private pure returns (uint256 start, uint256 next) {
        uint256 len;
        (len, start) = varint(b, pos);
        if (len > b.length - start) revert Malformed("length past the end");
        next = start + len;
    }

    /// A 32-byte key, id or digest.
    function bytes32Field(bytes calldata b, uint256 pos) private pure returns (bytes32 word, uint256 next) {
        uint256 start;
        (start, next) = lengthDelimited(b, pos);
        if (next - start != 32) revert Malformed("expected 32 bytes");
        word = bytes32(b[start:next]);
    }
}
