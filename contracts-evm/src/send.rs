//! Calls and transactions over JSON-RPC, with the retry rules the ledger
//! promises:
//!
//! - an RPC the node cannot reach is retried (with backoff) for
//!   `rpc_retry`, then reported as `LedgerError::Unavailable`;
//! - a transaction is built and signed once per operation and its exact
//!   bytes are kept until it is mined: a timeout, a lost answer or a
//!   caller's retry resends the same bytes (same hash), never a new
//!   transaction, so an operation is submitted once;
//! - transactions leave one at a time, so nonces are handed out in order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agora_protocol::LeaseId;
use agora_protocol::ledger::LedgerError;
use alloy::eips::{BlockId, Encodable2718};
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, Bytes, TxHash};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::transports::{RpcError, TransportError};
use tracing::{debug, warn};

use crate::revert::{Op, ledger_error};

/// How long a transaction's nonce must be used with no receipt for it
/// before it counts as replaced.
const REPLACED_AFTER: Duration = Duration::from_secs(3);

/// What makes two submissions the same operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OpKey {
    Lock(LeaseId),
    Settle(LeaseId, u64),
    Close(LeaseId),
    /// An early close, by the GPU-seconds it pays for: closes paying the
    /// same are the same operation.
    CloseEarly(LeaseId, u64),
}

/// A signed transaction waiting to be mined.
#[derive(Debug, Clone)]
struct Pending {
    raw: Bytes,
    hash: TxHash,
    nonce: u64,
}

/// Timing of calls and transactions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// How long an unreachable RPC is retried.
    pub(crate) rpc_retry: Duration,
    /// How long one attempt waits for its transaction to be mined.
    pub(crate) mine_timeout: Duration,
    /// How often it asks.
    pub(crate) poll: Duration,
    /// Blocks on top of (and including) the one holding the transaction.
    pub(crate) confirmations: u64,
}

/// The node's chain account and the transactions it has in flight.
pub(crate) struct Sender {
    provider: RootProvider,
    wallet: EthereumWallet,
    from: Address,
    chain_id: u64,
    timing: Timing,
    /// Held while a transaction is built, sent and awaited.
    inflight: tokio::sync::Mutex<HashMap<OpKey, Pending>>,
}

/// Why an RPC failed.
enum Failure {
    /// The node answered: the call reverted (with its data) or was refused.
    Answered(Option<Bytes>, String),
    /// The RPC could not be reached for `rpc_retry`.
    Unreachable(String),
}

impl Failure {
    fn into_ledger(self, op: Op) -> LedgerError {
        match self {
            Failure::Answered(Some(data), _) => ledger_error(op, &data),
            Failure::Answered(None, message) => {
                LedgerError::Unavailable(format!("the chain refused the request: {message}"))
            }
            Failure::Unreachable(message) => LedgerError::Unavailable(message),
        }
    }
}

impl Sender {
    pub(crate) fn new(
        provider: RootProvider,
        wallet: EthereumWallet,
        from: Address,
        chain_id: u64,
        timing: Timing,
    ) -> Self {
        Self {
            provider,
            wallet,
            from,
            chain_id,
            timing,
            inflight: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn provider(&self) -> &RootProvider {
        &self.provider
    }

    pub(crate) fn from(&self) -> Address {
        self.from
    }

    pub(crate) fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Runs `f` until it answers, retrying transport failures for
    /// `rpc_retry`.
    async fn rpc<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TransportError>>,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match f().await {
                Ok(value) => return Ok(value),
                Err(RpcError::ErrorResp(payload)) => {
                    return Err(Failure::Answered(
                        payload.as_revert_data(),
                        format!("{what}: {payload}"),
                    ));
                }
                Err(e) if started.elapsed() >= self.timing.rpc_retry => {
                    return Err(Failure::Unreachable(format!(
                        "{what}: no answer for {:.0} s: {e}",
                        started.elapsed().as_secs_f64()
                    )));
                }
                Err(e) => {
                    debug!(what, error = %e, "RPC failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// A read-only RPC, retried while unreachable.
    pub(crate) async fn read<T, F, Fut>(&self, what: &str, f: F) -> Result<T, LedgerError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TransportError>>,
    {
        self.rpc(what, f).await.map_err(|e| match e {
            Failure::Answered(_, message) => LedgerError::Unavailable(message),
            Failure::Unreachable(message) => LedgerError::Unavailable(message),
        })
    }

    /// `eth_call` of `data` on `to` from the node's account, at the latest
    /// block: what the transaction would return, or its revert as `op`'s
    /// error.
    pub(crate) async fn call(
        &self,
        op: Op,
        to: Address,
        data: &Bytes,
    ) -> Result<Bytes, LedgerError> {
        let request = TransactionRequest::default()
            .with_from(self.from)
            .with_to(to)
            .with_input(data.clone());
        // At the latest block, not the pending one: what is mined is what
        // counts (a pending transaction of ours may never be).
        self.rpc("eth_call", || {
            self.provider
                .call(request.clone())
                .block(BlockId::latest())
                .into_future()
        })
        .await
        .map_err(|e| e.into_ledger(op))
    }

    /// Sends `data` to `to` (`None`: a deployment) as a transaction and
    /// waits for its receipt with the confirmations configured. `key` names
    /// the operation: while one with the same key is in flight, this waits
    /// for (and resends) that transaction instead of making another.
    pub(crate) async fn send(
        &self,
        op: Op,
        key: Option<OpKey>,
        to: Option<Address>,
        data: Bytes,
    ) -> Result<TransactionReceipt, LedgerError> {
        let mut inflight = self.inflight.lock().await;
        let pending = match key.and_then(|k| inflight.get(&k).cloned()) {
            Some(pending) => {
                debug!(hash = %pending.hash, "resending the operation's transaction");
                pending
            }
            None => {
                let pending = self.sign(op, to, data).await?;
                if let Some(k) = key {
                    inflight.insert(k, pending.clone());
                }
                pending
            }
        };
        match self.mine(&pending).await {
            Ok(receipt) => {
                if let Some(k) = key {
                    inflight.remove(&k);
                }
                Ok(receipt)
            }
            Err(Stuck::Replaced) => {
                // Another transaction took its nonce (the key used
                // elsewhere): it can never be mined; the next try signs anew.
                if let Some(k) = key {
                    inflight.remove(&k);
                }
                Err(LedgerError::Unavailable(format!(
                    "transaction {} was replaced by another with nonce {}; retry",
                    pending.hash, pending.nonce
                )))
            }
            Err(Stuck::Refused(why)) => {
                if let Some(k) = key {
                    inflight.remove(&k);
                }
                Err(LedgerError::Unavailable(format!(
                    "the chain refused transaction {} from {}: {why}",
                    pending.hash, self.from
                )))
            }
            Err(Stuck::NotYet(why)) => Err(LedgerError::Unavailable(format!(
                "transaction {} not mined yet ({why}); a retry waits for the same transaction",
                pending.hash
            ))),
        }
    }

    /// Drops the transaction kept for `key`: the operation is known done.
    pub(crate) async fn forget(&self, key: OpKey) {
        self.inflight.lock().await.remove(&key);
    }

    /// Builds and signs one transaction at the account's next nonce.
    async fn sign(&self, op: Op, to: Option<Address>, data: Bytes) -> Result<Pending, LedgerError> {
        let nonce = self
            .read("eth_getTransactionCount", || {
                self.provider
                    .get_transaction_count(self.from)
                    .pending()
                    .into_future()
            })
            .await?;
        let mut request = TransactionRequest::default()
            .with_from(self.from)
            .with_input(data)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id);
        match to {
            Some(to) => request.set_to(to),
            None => request.set_create(),
        }
        // Estimating runs the transaction: a revert here is the operation's
        // refusal, before anything is sent.
        let gas = self
            .rpc("eth_estimateGas", || {
                self.provider
                    .estimate_gas(request.clone())
                    .block(BlockId::latest())
                    .into_future()
            })
            .await
            .map_err(|e| e.into_ledger(op))?;
        let fees = self
            .read("fee estimate", || self.provider.estimate_eip1559_fees())
            .await?;
        let request = request
            .with_gas_limit(gas.saturating_add(gas / 5).saturating_add(20_000))
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = request
            .build(&self.wallet)
            .await
            .map_err(|e| LedgerError::Storage(format!("signing a transaction: {e}")))?;
        Ok(Pending {
            raw: envelope.encoded_2718().into(),
            hash: *envelope.tx_hash(),
            nonce,
        })
    }

    /// Broadcasts `pending` (again) and waits for its receipt.
    async fn mine(&self, pending: &Pending) -> Result<TransactionReceipt, Stuck> {
        let deadline = Instant::now() + self.timing.mine_timeout;
        let mut sent = false;
        let mut replaced_since: Option<Instant> = None;
        let mut last_error = String::from("no answer");
        while Instant::now() < deadline {
            if !sent {
                match self.provider.send_raw_transaction(&pending.raw).await {
                    Ok(_) => sent = true,
                    // "already known": it is in the pool or mined. Anything
                    // else the node refused for good (no gas, bad nonce).
                    Err(RpcError::ErrorResp(payload)) => {
                        match self.provider.get_transaction_by_hash(pending.hash).await {
                            Ok(Some(_)) => sent = true,
                            Ok(None) => return Err(Stuck::Refused(payload.to_string())),
                            Err(e) => last_error = e.to_string(),
                        }
                    }
                    Err(e) => last_error = e.to_string(),
                }
            }
            match self.provider.get_transaction_receipt(pending.hash).await {
                Ok(Some(receipt)) => {
                    if self.confirmed(&receipt).await {
                        return Ok(receipt);
                    }
                }
                Ok(None) => {
                    // Its nonce is used but it has no receipt: replaced,
                    // or mined a moment ago with the receipt not yet
                    // served. Only a state that lasts is a replacement.
                    let used = matches!(
                        self.provider.get_transaction_count(self.from).latest().await,
                        Ok(next) if next > pending.nonce
                    );
                    match (used, replaced_since) {
                        (false, _) => replaced_since = None,
                        (true, None) => replaced_since = Some(Instant::now()),
                        (true, Some(since)) if since.elapsed() >= REPLACED_AFTER => {
                            return Err(Stuck::Replaced);
                        }
                        (true, Some(_)) => {}
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(self.timing.poll).await;
        }
        warn!(hash = %pending.hash, error = %last_error, "transaction not mined in time");
        Err(Stuck::NotYet(last_error))
    }

    async fn confirmed(&self, receipt: &TransactionReceipt) -> bool {
        if self.timing.confirmations <= 1 {
            return true;
        }
        let Some(mined) = receipt.block_number else {
            return false;
        };
        match self.provider.get_block_number().await {
            Ok(head) => head.saturating_sub(mined) + 1 >= self.timing.confirmations,
            Err(_) => false,
        }
    }
}

/// Why a transaction has no receipt yet.
enum Stuck {
    NotYet(String),
    Replaced,
    /// The node would not take it: it will never be mined.
    Refused(String),
}
