// SPDX-License-Identifier: Apache-2.0 OR MIT
pragma solidity ^0.8.24;

import "./Blake3.sol";
import "./Ed25519.sol";
import "./Protobuf.sol";

/// The ERC-20 calls the escrow makes. Tokens that return nothing (USDT) are
/// handled by `AgoraEscrow.pull` and `AgoraEscrow.push`.
interface IERC20Minimal {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
    function balanceOf(address who) external view returns (uint256);
}

/// @title Agora's escrow: the `Ledger` of `protocol/src/ledger.rs` on an
/// EVM chain.
///
/// @notice Accounts are Agora identities — ed25519 public keys — not chain
/// addresses. Whoever sends a transaction only pays its gas: a lease locks
/// escrow only with both parties' ed25519 signatures over the exact lease
/// bytes, a receipt pays only with both signatures over the exact receipt
/// bytes, an early close pays and refunds only with both signatures over
/// the exact close bytes, a withdrawal moves money only with the owner's
/// signature, and a close only refunds what the rules say, when they say.
/// There is no owner, no operator key and no upgrade path: nobody can move
/// funds but by these rules.
///
/// The rules are those of `protocol/src/ledger/rules.rs`, which the sled
/// backend applies: a receipt pays `cumulative − settled`, never more than
/// the escrow, never twice; a receipt no newer than the last settled pays
/// nothing; a close refunds the remainder once, after the final receipt or
/// after the lease's end plus the close grace; an early close (any time,
/// while open) settles the lease at the close's amount — never less than
/// already settled — and refunds the rest at once. Chain time is
/// `block.timestamp` in milliseconds.
contract AgoraEscrow {
    // ---- the messages' namespaces (protocol/src/envelope.rs) ----
    bytes private constant LEASE_TERMS_NS = "agora/1/lease-terms\x00";
    bytes private constant USAGE_RECEIPT_NS = "agora/1/usage-receipt\x00";
    bytes private constant LEASE_ID_NS = "agora/1/lease-id\x00";
    bytes private constant LEASE_CLOSE_NS = "agora/1/lease-close\x00";
    /// Not an envelope kind: a withdrawal is signed for this chain and
    /// contract only (see `withdrawalMessage`).
    bytes private constant WITHDRAW_NS = "agora/1/evm-withdraw\x00";

    // ---- bounds of protocol/src/{offer,order,lease}.rs ----
    uint64 private constant MAX_GPUS = 1024;
    uint64 private constant MAX_DURATION_SECS = 30 * 24 * 3600;
    uint64 private constant MAX_RECEIPT_INTERVAL_SECS = 3600;
    uint256 private constant MAX_MODEL_LEN = 64;
    uint256 private constant MAX_BODY = 16 * 1024;

    /// One lease's escrow; `escrow == 0` means none was locked.
    struct Escrow {
        bytes32 requester;
        bytes32 provider;
        uint64 escrow;
        uint64 settled;
        uint64 lastSequence;
        uint64 endsAtMs;
        uint64 closableAtMs;
        uint64 refunded;
        uint64 pricePerGpuHour;
        uint64 maxGpuSeconds;
        uint32 ops;
        bool finalSettled;
        bool closed;
    }

    /// The token escrowed (6-decimal USDC on a public chain; Agora amounts
    /// are micro-units, so one token base unit is one Agora unit).
    IERC20Minimal public immutable token;
    /// After a lease's end, how long before anyone may close it.
    uint64 public immutable closeGraceMs;

    mapping(bytes32 => uint64) private balances;
    mapping(bytes32 => Escrow) private escrows;
    mapping(bytes32 => uint64) public withdrawalNonce;
    /// Deposits minus withdrawals, ever.
    uint128 public deposited;
    /// Sum of all balances.
    uint128 public balanceTotal;
    /// Sum of outstanding escrow over open leases.
    uint128 public escrowed;

    event Deposited(bytes32 indexed account, address indexed from, uint64 amount, uint64 balance);
    event Locked(bytes32 indexed leaseId, bytes32 indexed requester, bytes32 indexed provider, uint64 escrow, uint64 endsAtMs);
    event Settled(bytes32 indexed leaseId, uint64 paid, uint64 settled, uint64 lastSequence, bool isFinal);
    event Closed(bytes32 indexed leaseId, uint64 refunded, uint64 settled);
    event ClosedEarly(bytes32 indexed leaseId, uint64 paid, uint64 refunded, uint64 settled, uint8 reason);
    event Withdrawn(bytes32 indexed account, address indexed to, uint64 amount, uint64 nonce);

    // ---- errors: one per LedgerError variant (protocol/src/ledger.rs) ----
    error InvalidLease(string reason);
    error InvalidReceipt(string reason);
    error InvalidClose(string reason);
    error ReceiptRule(string reason);
    error UnknownLease(bytes32 leaseId);
    error InsufficientFunds(bytes32 account, uint64 available, uint64 needed);
    error LeaseEnded(bytes32 leaseId);
    error LeaseClosed(bytes32 leaseId);
    error NotClosable(bytes32 leaseId, uint64 closableAtMs, uint64 nowMs);
    error Overflow(string what);
    error BadRequest(string reason);
    error TokenTransferFailed();

    constructor(IERC20Minimal token_, uint64 closeGraceMs_) {
        token = token_;
        closeGraceMs = closeGraceMs_;
    }

    // ---- reads ----

    /// Chain time, milliseconds.
    function nowMs() public view returns (uint64) {
        return uint64(block.timestamp) * 1000;
    }

    /// An account's spendable balance.
    function balanceOf(bytes32 account) external view returns (uint64) {
        return balances[account];
    }

    /// A lease's escrow (all zero when none was locked).
    function escrowOf(bytes32 leaseId) external view returns (Escrow memory) {
        return escrows[leaseId];
    }

    /// Totals for the conservation check: balances + escrowed == deposited.
    function supply() external view returns (uint128, uint128, uint128) {
        return (deposited, balanceTotal, escrowed);
    }

    /// The id of the lease whose terms encode to `terms`, as
    /// `LeaseId::of_body` computes it.
    function leaseIdOf(bytes calldata terms) public pure returns (bytes32) {
        return Blake3.hash(bytes.concat(LEASE_ID_NS, terms));
    }

    // ---- writes ----

    /// Credits `account` with `amount` tokens taken from the sender (who
    /// must have approved this contract). Anyone may fund any account.
    function deposit(bytes32 account, uint64 amount) external returns (uint64 balance) {
        if (amount == 0) revert BadRequest("a deposit must be positive");
        balance = credit(account, amount);
        deposited += amount;
        pull(msg.sender, amount);
        emit Deposited(account, msg.sender, amount, balance);
    }

    /// Locks the escrow of the lease whose terms are `terms`, signed by the
    /// requester (`reqR`, `reqS`) and countersigned by the provider
    /// (`provR`, `provS`). Locking a locked lease changes nothing.
    function lock(bytes calldata terms, bytes32 reqR, bytes32 reqS, bytes32 provR, bytes32 provS)
        external
        returns (Escrow memory)
    {
        if (terms.length > MAX_BODY) revert InvalidLease("lease terms too large");
        Protobuf.LeaseTerms memory t = decodeTerms(terms);
        bytes memory message = bytes.concat(LEASE_TERMS_NS, terms);
        if (!Ed25519.verify(t.requester, reqR, reqS, message)) revert InvalidLease("bad requester signature");
        if (!Ed25519.verify(t.provider, provR, provS, message)) revert InvalidLease("bad provider signature");
        bytes32 id = leaseIdOf(terms);
        Escrow storage e = escrows[id];
        if (e.escrow != 0) return e;

        uint64 endsAt = saturatingAdd(t.startsAtMs, uint256(t.maxDurationSecs) * 1000);
        if (nowMs() >= endsAt) revert LeaseEnded(id);
        uint64 available = balances[t.requester];
        if (available < t.escrow) revert InsufficientFunds(t.requester, available, t.escrow);

        balances[t.requester] = available - t.escrow;
        balanceTotal -= t.escrow;
        escrowed += t.escrow;
        e.requester = t.requester;
        e.provider = t.provider;
        e.escrow = t.escrow;
        e.endsAtMs = endsAt;
        e.closableAtMs = saturatingAdd(endsAt, closeGraceMs);
        e.pricePerGpuHour = t.pricePerGpuHour;
        e.maxGpuSeconds = t.gpuCount * t.maxDurationSecs;
        e.ops = 1;
        emit Locked(id, t.requester, t.provider, t.escrow, endsAt);
        return e;
    }

    /// Settles a receipt both parties signed: pays the provider
    /// `cumulative − settled`. A receipt no newer than the last settled
    /// pays nothing and changes nothing.
    function settle(bytes calldata receipt, bytes32 reqR, bytes32 reqS, bytes32 provR, bytes32 provS)
        external
        returns (uint64 paid, uint64 settled, uint64 lastSequence)
    {
        if (receipt.length > MAX_BODY) revert InvalidReceipt("receipt too large");
        Protobuf.UsageReceipt memory r = decodeReceipt(receipt);
        Escrow storage e = escrows[r.leaseId];
        if (e.escrow == 0) revert UnknownLease(r.leaseId);
        bytes memory message = bytes.concat(USAGE_RECEIPT_NS, receipt);
        if (!Ed25519.verify(e.requester, reqR, reqS, message)) revert InvalidReceipt("bad requester signature");
        if (!Ed25519.verify(e.provider, provR, provS, message)) revert InvalidReceipt("bad provider signature");
        if (e.closed) revert LeaseClosed(r.leaseId);
        // check_amount: within the lease, priced by the one cost formula.
        if (r.gpuSeconds > e.maxGpuSeconds) revert ReceiptRule("receipt exceeds the lease's GPU-seconds");
        if (r.cumulativeAmount != cost(e.pricePerGpuHour, r.gpuSeconds)) {
            revert ReceiptRule("cumulative amount is not the cost of its GPU-seconds");
        }
        if (r.sequence <= e.lastSequence) return (0, e.settled, e.lastSequence);
        if (e.finalSettled) revert ReceiptRule("the lease's final receipt is already settled");

        settled = e.settled > r.cumulativeAmount ? e.settled : r.cumulativeAmount;
        if (settled > e.escrow) revert Overflow("settled would exceed escrow");
        paid = settled - e.settled;
        credit(e.provider, paid);
        escrowed -= paid;
        e.settled = settled;
        e.lastSequence = r.sequence;
        e.finalSettled = r.isFinal;
        e.ops += 1;
        lastSequence = r.sequence;
        emit Settled(r.leaseId, paid, settled, lastSequence, r.isFinal);
    }

    /// Closes a lease whose final receipt settled or whose end plus grace
    /// passed, refunding the remainder to the requester. Anyone may call it.
    function close(bytes32 leaseId) external returns (uint64 refunded, uint64 settled) {
        Escrow storage e = escrows[leaseId];
        if (e.escrow == 0) revert UnknownLease(leaseId);
        if (e.closed) revert LeaseClosed(leaseId);
        uint64 now_ = nowMs();
        if (!e.finalSettled && now_ < e.closableAtMs) revert NotClosable(leaseId, e.closableAtMs, now_);
        refunded = e.escrow - e.settled;
        settled = e.settled;
        credit(e.requester, refunded);
        escrowed -= refunded;
        e.refunded = refunded;
        e.closed = true;
        e.ops += 1;
        emit Closed(leaseId, refunded, settled);
    }

    /// Closes a lease early by a close both parties signed (`leaseClose`, the
    /// exact bytes of an agora.v1.LeaseClose): pays the provider
    /// `cumulative − settled` and refunds `escrow − cumulative` to the
    /// requester, at once, whatever the chain time. A close paying less
    /// than already settled is refused: nobody is clawed back.
    function closeEarly(bytes calldata leaseClose, bytes32 reqR, bytes32 reqS, bytes32 provR, bytes32 provS)
        external
        returns (uint64 refunded, uint64 settled)
    {
        if (leaseClose.length > MAX_BODY) revert InvalidClose("close too large");
        Protobuf.LeaseClose memory c = decodeClose(leaseClose);
        Escrow storage e = escrows[c.leaseId];
        if (e.escrow == 0) revert UnknownLease(c.leaseId);
        bytes memory message = bytes.concat(LEASE_CLOSE_NS, leaseClose);
        if (!Ed25519.verify(e.requester, reqR, reqS, message)) revert InvalidClose("bad requester signature");
        if (!Ed25519.verify(e.provider, provR, provS, message)) revert InvalidClose("bad provider signature");
        if (e.closed) revert LeaseClosed(c.leaseId);
        // check_close_amount: within the lease, priced by the one cost formula.
        if (c.gpuSeconds > e.maxGpuSeconds) revert InvalidClose("close exceeds the lease's GPU-seconds");
        if (c.cumulativeAmount != cost(e.pricePerGpuHour, c.gpuSeconds)) {
            revert InvalidClose("cumulative amount is not the cost of its GPU-seconds");
        }
        settled = c.cumulativeAmount;
        if (settled < e.settled) revert InvalidClose("the close pays less than already settled");
        if (settled > e.escrow) revert Overflow("settled would exceed escrow");

        uint64 paid = settled - e.settled;
        refunded = e.escrow - settled;
        credit(e.provider, paid);
        credit(e.requester, refunded);
        escrowed -= uint128(paid) + refunded;
        e.settled = settled;
        e.finalSettled = true;
        e.refunded = refunded;
        e.closed = true;
        e.ops += 1;
        emit ClosedEarly(c.leaseId, paid, refunded, settled, uint8(c.reason));
    }

    /// Pays `amount` of `account`'s balance out to `to`, with the account's
    /// ed25519 signature over `withdrawalMessage(account, to, amount, nonce)`;
    /// each nonce works once, in order.
    function withdraw(bytes32 account, address to, uint64 amount, uint64 nonce, bytes32 r, bytes32 s) external {
        if (amount == 0) revert BadRequest("a withdrawal must be positive");
        if (nonce != withdrawalNonce[account]) revert BadRequest("withdrawal nonce is not the next one");
        if (!Ed25519.verify(account, r, s, withdrawalMessage(account, to, amount, nonce))) {
            revert BadRequest("bad withdrawal signature");
        }
        uint64 available = balances[account];
        if (available < amount) revert InsufficientFunds(account, available, amount);
        balances[account] = available - amount;
        balanceTotal -= amount;
        deposited -= amount;
        withdrawalNonce[account] = nonce + 1;
        push(to, amount);
        emit Withdrawn(account, to, amount, nonce);
    }

    /// What a withdrawal's owner signs: bound to this chain and contract so
    /// it cannot be replayed elsewhere.
    function withdrawalMessage(bytes32 account, address to, uint64 amount, uint64 nonce)
        public
        view
        returns (bytes memory)
    {
        return bytes.concat(WITHDRAW_NS, abi.encodePacked(block.chainid, address(this), account, to, amount, nonce));
    }

    // ---- rules ----

    /// The lease-terms checks of `LeaseTerms::from_proto` that bear on
    /// money or identity. (The GPU model's characters are not money; the
    /// nodes check them before signing.) Bytes that do not decode revert
    /// with `Protobuf.Malformed`, which callers read as an invalid lease.
    function decodeTerms(bytes calldata terms) private pure returns (Protobuf.LeaseTerms memory t) {
        t = Protobuf.leaseTerms(terms);
        // Absent bytes fields are empty, which no 32-byte field may be.
        if (t.present & (1 << 1) == 0) revert InvalidLease("order_id: expected 32 bytes");
        if (t.present & (1 << 2) == 0 || t.present & (1 << 3) == 0) {
            revert InvalidLease("requester and provider must be keys");
        }
        if (t.requester == t.provider) revert InvalidLease("provider: a node cannot lease from itself");
        if (t.gpuModelLength == 0 || t.gpuModelLength > MAX_MODEL_LEN) revert InvalidLease("gpu_model: bad length");
        if (t.gpuCount < 1 || t.gpuCount > MAX_GPUS) revert InvalidLease("gpu_count out of range");
        if (t.pricePerGpuHour < 1 || t.pricePerGpuHour > type(uint64).max / 4) {
            revert InvalidLease("price_per_gpu_hour out of range");
        }
        if (t.maxDurationSecs < 1 || t.maxDurationSecs > MAX_DURATION_SECS) {
            revert InvalidLease("max_duration_secs out of range");
        }
        if (t.receiptIntervalSecs < 1 || t.receiptIntervalSecs > MAX_RECEIPT_INTERVAL_SECS) {
            revert InvalidLease("receipt_interval_secs out of range");
        }
        uint256 required = costWide(t.pricePerGpuHour, uint256(t.gpuCount) * t.maxDurationSecs);
        if (required > type(uint64).max) revert InvalidLease("escrow: price x GPUs x duration overflows");
        if (t.escrow != required) revert InvalidLease("escrow is not the cost of the whole lease");
    }

    /// The receipt checks of `UsageReceipt::from_proto`.
    function decodeReceipt(bytes calldata receipt) private pure returns (Protobuf.UsageReceipt memory r) {
        r = Protobuf.usageReceipt(receipt);
        if (r.present & (1 << 1) == 0) revert InvalidReceipt("lease_id: expected 32 bytes");
        if (r.sequence == 0) revert InvalidReceipt("sequence must be at least 1");
        if (r.resultHashLength != 0 && r.resultHashLength != 32) revert InvalidReceipt("result_hash: expected 32 bytes");
        if (!r.isFinal && (r.resultHashLength != 0 || r.hasExitStatus)) {
            revert InvalidReceipt("only a final receipt carries a result hash or exit status");
        }
    }

    /// The close checks of `LeaseClose::from_proto`.
    function decodeClose(bytes calldata leaseClose) private pure returns (Protobuf.LeaseClose memory c) {
        c = Protobuf.leaseClose(leaseClose);
        if (c.present & (1 << 1) == 0) revert InvalidClose("lease_id: expected 32 bytes");
        if (c.reason < 1 || c.reason > 3) revert InvalidClose("reason: not a close reason");
    }

    /// `cost` of protocol/src/amount.rs: price × GPU-seconds / 3600, rounded up.
    function cost(uint64 pricePerGpuHour, uint64 gpuSeconds) private pure returns (uint64) {
        uint256 wide = costWide(pricePerGpuHour, gpuSeconds);
        return wide > type(uint64).max ? type(uint64).max : uint64(wide);
    }

    function costWide(uint256 pricePerGpuHour, uint256 gpuSeconds) private pure returns (uint256) {
        return (pricePerGpuHour * gpuSeconds + 3599) / 3600;
    }

    function saturatingAdd(uint64 a, uint256 b) private pure returns (uint64) {
        uint256 sum = uint256(a) + b;
        return sum > type(uint64).max ? type(uint64).max : uint64(sum);
    }

    function credit(bytes32 account, uint64 amount) private returns (uint64 balance) {
        uint256 wide = uint256(balances[account]) + amount;
        if (wide > type(uint64).max) revert Overflow("balance would exceed u64");
        balance = uint64(wide);
        balances[account] = balance;
        balanceTotal += amount;
    }

    /// transferFrom that also accepts tokens returning nothing.
    function pull(address from, uint64 amount) private {
        (bool ok, bytes memory ret) =
            address(token).call(abi.encodeCall(IERC20Minimal.transferFrom, (from, address(this), amount)));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TokenTransferFailed();
    }

    /// transfer that also accepts tokens returning nothing.
    function push(address to, uint64 amount) private {
        (bool ok, bytes memory ret) = address(token).call(abi.encodeCall(IERC20Minimal.transfer, (to, amount)));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TokenTransferFailed();
    }
}
