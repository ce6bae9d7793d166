//! [`EvmLedger`]: the `Ledger` trait over the escrow contract.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agora_protocol::ledger::{
    Closure, EscrowState, Ledger, LedgerError, Settlement, Supply, invalid_close, invalid_lease,
    invalid_receipt,
};
use agora_protocol::receipt::ReceiptClaim;
use agora_protocol::{
    AccountId, Amount, CloseClaim, CoSigned, Keypair, Lease, LeaseId, PublicKey, Signature,
    Timestamp,
};
use alloy::eips::BlockNumberOrTag;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::bindings::{AgoraEscrow, AgoraTestToken};
use crate::revert::Op;
use crate::send::{OpKey, Sender, Timing};

/// Where the escrow is and how to talk to its chain: a node's
/// `[ledger.evm]` section, as it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmConfig {
    /// JSON-RPC endpoint (`http://127.0.0.1:8545`, or a provider's https URL).
    pub rpc_url: String,
    /// The escrow contract's address.
    pub escrow: Address,
    /// The secp256k1 key that pays gas (hex), relative to the node's data
    /// dir; created on first start. It cannot move Agora funds.
    #[serde(default = "default_key_file")]
    pub key_file: std::path::PathBuf,
    /// Blocks a transaction must have on top of it, counting its own.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// How long an unreachable RPC is retried before `Unavailable`.
    #[serde(default = "default_rpc_retry_secs")]
    pub rpc_retry_secs: u64,
    /// How long one attempt waits for its transaction to be mined.
    #[serde(default = "default_mine_timeout_secs")]
    pub mine_timeout_secs: u64,
    /// How often it asks for a receipt.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Test chains only: `deposit` first mints the amount on the escrow's
    /// token (an `AgoraTestToken`, whose `mint` is open to anyone).
    #[serde(default)]
    pub faucet: bool,
}

fn default_key_file() -> std::path::PathBuf {
    "evm.key".into()
}
fn default_confirmations() -> u64 {
    1
}
fn default_rpc_retry_secs() -> u64 {
    10
}
fn default_mine_timeout_secs() -> u64 {
    60
}
fn default_poll_ms() -> u64 {
    500
}

impl EvmConfig {
    /// A config for `escrow` on the chain at `rpc_url`, with the defaults.
    pub fn new(rpc_url: impl Into<String>, escrow: Address) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            escrow,
            key_file: default_key_file(),
            confirmations: default_confirmations(),
            rpc_retry_secs: default_rpc_retry_secs(),
            mine_timeout_secs: default_mine_timeout_secs(),
            poll_ms: default_poll_ms(),
            faucet: false,
        }
    }

    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.confirmations == 0 || self.confirmations > 64 {
            return Err(format!(
                "confirmations: {} is not in 1..=64",
                self.confirmations
            ));
        }
        if self.rpc_retry_secs > 3600 {
            return Err(format!(
                "rpc_retry_secs: {} is over an hour",
                self.rpc_retry_secs
            ));
        }
        if self.mine_timeout_secs == 0 || self.mine_timeout_secs > 3600 {
            return Err(format!(
                "mine_timeout_secs: {} is not in 1..=3600",
                self.mine_timeout_secs
            ));
        }
        if self.poll_ms < 10 || self.poll_ms > 60_000 {
            return Err(format!("poll_ms: {} is not in 10..=60000", self.poll_ms));
        }
        self.rpc_url
            .parse::<alloy::transports::http::reqwest::Url>()
            .map_err(|e| format!("rpc_url: {:?} is not a URL: {e}", self.rpc_url))?;
        Ok(())
    }

    fn timing(&self) -> Timing {
        Timing {
            rpc_retry: Duration::from_secs(self.rpc_retry_secs),
            mine_timeout: Duration::from_secs(self.mine_timeout_secs),
            poll: Duration::from_millis(self.poll_ms),
            confirmations: self.confirmations,
        }
    }
}

/// The Agora ledger on an EVM chain. Its chain key only pays gas: the
/// contract moves money on Agora's ed25519 signatures alone.
pub struct EvmLedger {
    sender: Arc<Sender>,
    escrow: Address,
    token: Address,
    close_grace_ms: u64,
    faucet: bool,
}

impl std::fmt::Debug for EvmLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmLedger")
            .field("escrow", &self.escrow)
            .field("token", &self.token)
            .field("from", &self.sender.from())
            .finish()
    }
}

impl EvmLedger {
    /// Attaches to the escrow of `config`, paying gas with `key`: checks
    /// that a contract is there and reads its token and close grace.
    pub async fn connect(config: &EvmConfig, key: PrivateKeySigner) -> Result<Self, LedgerError> {
        config.validate().map_err(LedgerError::BadRequest)?;
        let sender = Arc::new(connect_sender(&config.rpc_url, key, config.timing()).await?);
        let code = sender
            .read("eth_getCode", || {
                sender.provider().get_code_at(config.escrow).into_future()
            })
            .await?;
        if code.is_empty() {
            return Err(LedgerError::BadRequest(format!(
                "no contract at {} on {}: deploy the escrow first (agora-testnet does on anvil)",
                config.escrow, config.rpc_url
            )));
        }
        let mut ledger = Self {
            sender,
            escrow: config.escrow,
            token: Address::ZERO,
            close_grace_ms: 0,
            faucet: config.faucet,
        };
        ledger.token = ledger.view(AgoraEscrow::tokenCall {}).await?;
        ledger.close_grace_ms = ledger.view(AgoraEscrow::closeGraceMsCall {}).await?;
        Ok(ledger)
    }

    /// The account that pays this node's gas.
    pub fn gas_account(&self) -> Address {
        self.sender.from()
    }

    /// The escrow contract.
    pub fn escrow_address(&self) -> Address {
        self.escrow
    }

    /// The token it escrows.
    pub fn token_address(&self) -> Address {
        self.token
    }

    /// After a lease's end, how long before anyone may close it.
    pub fn close_grace_ms(&self) -> u64 {
        self.close_grace_ms
    }

    /// The gas account's balance in wei.
    pub async fn gas_balance(&self) -> Result<U256, LedgerError> {
        let from = self.sender.from();
        self.sender
            .read("eth_getBalance", || {
                self.sender.provider().get_balance(from).into_future()
            })
            .await
    }

    /// Tokens the escrow contract holds: on a conserving chain, every
    /// balance plus every open escrow.
    pub async fn escrow_token_balance(&self) -> Result<u128, LedgerError> {
        let call = AgoraTestToken::balanceOfCall(self.escrow);
        let out = self
            .sender
            .call(Op::Deposit, self.token, &call.abi_encode().into())
            .await?;
        let held = AgoraTestToken::balanceOfCall::abi_decode_returns(&out)
            .map_err(|e| LedgerError::Unavailable(format!("balanceOf answer: {e}")))?;
        u128::try_from(held).map_err(|_| LedgerError::Overflow(format!("escrow holds {held}")))
    }

    /// Pays `amount` of `owner`'s balance to `to` on the chain, signed by
    /// `owner`'s Agora key: how a provider cashes out.
    pub async fn withdraw(
        &self,
        owner: &Keypair,
        to: Address,
        amount: Amount,
    ) -> Result<Amount, LedgerError> {
        let account = FixedBytes(*owner.public().as_bytes());
        let nonce = self.view(AgoraEscrow::withdrawalNonceCall(account)).await?;
        let message: Bytes = self
            .view(AgoraEscrow::withdrawalMessageCall {
                account,
                to,
                amount: amount.0,
                nonce,
            })
            .await?;
        let signature = owner
            .sign_namespaced(&message)
            .map_err(|e| LedgerError::BadRequest(e.to_string()))?;
        let (r, s) = halves(&signature);
        let call = AgoraEscrow::withdrawCall {
            account,
            to,
            amount: amount.0,
            nonce,
            r,
            s,
        };
        let receipt = self.transact(Op::Withdraw, None, call.abi_encode()).await?;
        receipt_event::<AgoraEscrow::Withdrawn>(&receipt)
            .map(|e| Amount(e.amount))
            .ok_or_else(|| {
                LedgerError::Unavailable("the withdrawal's receipt has no Withdrawn event".into())
            })
    }

    /// A read-only call of the escrow at the latest block.
    async fn view<C: SolCall>(&self, call: C) -> Result<C::Return, LedgerError> {
        let out = self
            .sender
            .call(Op::Deposit, self.escrow, &call.abi_encode().into())
            .await?;
        C::abi_decode_returns(&out)
            .map_err(|e| LedgerError::Unavailable(format!("{} answer: {e}", C::SIGNATURE)))
    }

    async fn transact(
        &self,
        op: Op,
        key: Option<OpKey>,
        data: Vec<u8>,
    ) -> Result<TransactionReceipt, LedgerError> {
        self.send_to(op, key, self.escrow, data).await
    }

    /// Sends and waits; a transaction mined with status 0 (anvil mines a
    /// reverting transaction where other chains refuse it) is run again as
    /// a call to learn its reason.
    async fn send_to(
        &self,
        op: Op,
        key: Option<OpKey>,
        to: Address,
        data: Vec<u8>,
    ) -> Result<TransactionReceipt, LedgerError> {
        let data: Bytes = data.into();
        let receipt = self.sender.send(op, key, Some(to), data.clone()).await?;
        if receipt.status() {
            return Ok(receipt);
        }
        match self.sender.call(op, to, &data).await {
            Err(refused) => Err(refused),
            Ok(_) => Err(LedgerError::Unavailable(format!(
                "transaction {} reverted on chain, and the same call now succeeds: the state moved under it; retry",
                receipt.transaction_hash
            ))),
        }
    }

    async fn state(&self, lease: &LeaseId) -> Result<Option<EscrowState>, LedgerError> {
        let e = self
            .view(AgoraEscrow::escrowOfCall {
                leaseId: FixedBytes(lease.0),
            })
            .await?;
        if e.escrow == 0 {
            return Ok(None);
        }
        Ok(Some(EscrowState {
            lease_id: *lease,
            requester: key_of(&e.requester.0)?,
            provider: key_of(&e.provider.0)?,
            escrow: Amount(e.escrow),
            settled: Amount(e.settled),
            last_sequence: e.lastSequence,
            final_settled: e.finalSettled,
            ends_at: Timestamp(e.endsAtMs),
            closable_at: Timestamp(e.closableAtMs),
            refunded: e.closed.then_some(Amount(e.refunded)),
            ops: e.ops,
        }))
    }
}

/// An HTTP provider and a sender paying with `key`.
pub(crate) async fn connect_sender(
    rpc_url: &str,
    key: PrivateKeySigner,
    timing: Timing,
) -> Result<Sender, LedgerError> {
    let url = rpc_url
        .parse()
        .map_err(|e| LedgerError::BadRequest(format!("rpc_url {rpc_url:?}: {e}")))?;
    let provider = ProviderBuilder::default().connect_http(url);
    let from = key.address();
    let wallet = EthereumWallet::from(key);
    let probe = Sender::new(provider.clone(), wallet.clone(), from, 0, timing);
    let chain_id = probe
        .read("eth_chainId", || provider.get_chain_id().into_future())
        .await?;
    Ok(Sender::new(provider, wallet, from, chain_id, timing))
}

fn key_of(bytes: &[u8; 32]) -> Result<AccountId, LedgerError> {
    PublicKey::from_bytes(bytes).map_err(|e| {
        LedgerError::Storage(format!(
            "the escrow holds an account that is not a key: {e}"
        ))
    })
}

/// A signature as the contract takes it: R's encoding, then S.
fn halves(signature: &Signature) -> (FixedBytes<32>, FixedBytes<32>) {
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&signature.0[..32]);
    s.copy_from_slice(&signature.0[32..]);
    (FixedBytes(r), FixedBytes(s))
}

fn receipt_event<E: SolEvent>(receipt: &TransactionReceipt) -> Option<E> {
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| log.log_decode::<E>().ok().map(|decoded| decoded.inner.data))
}

/// Loads the chain key at `path` (hex), creating it (mode 0600) when absent.
pub fn load_or_create_key(path: &Path) -> Result<PrivateKeySigner, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<PrivateKeySigner>().map_err(|e| {
            format!(
                "{}: not a secp256k1 private key in hex: {e}",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKeySigner::random();
            let text = format!("0x{}\n", hex::encode(key.to_bytes()));
            write_private(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[async_trait]
impl Ledger for EvmLedger {
    async fn now(&self) -> Result<Timestamp, LedgerError> {
        let block = self
            .sender
            .read("eth_getBlockByNumber", || {
                self.sender
                    .provider()
                    .get_block_by_number(BlockNumberOrTag::Latest)
                    .into_future()
            })
            .await?
            .ok_or_else(|| LedgerError::Unavailable("the chain has no latest block".into()))?;
        Ok(Timestamp(block.header.timestamp.saturating_mul(1000)))
    }

    async fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        let balance = self
            .view(AgoraEscrow::balanceOfCall {
                account: FixedBytes(*account.as_bytes()),
            })
            .await?;
        Ok(Amount(balance))
    }

    async fn deposit(&self, account: &AccountId, amount: Amount) -> Result<Amount, LedgerError> {
        if amount == Amount::ZERO {
            return Err(LedgerError::BadRequest("a deposit must be positive".into()));
        }
        let from = self.sender.from();
        if self.faucet {
            let mint = AgoraTestToken::mintCall {
                to: from,
                amount: U256::from(amount.0),
            };
            self.send_to(Op::Deposit, None, self.token, mint.abi_encode())
                .await?;
        }
        let allowance_call = AgoraTestToken::allowanceCall {
            _0: from,
            _1: self.escrow,
        };
        let out = self
            .sender
            .call(Op::Deposit, self.token, &allowance_call.abi_encode().into())
            .await?;
        let allowance = AgoraTestToken::allowanceCall::abi_decode_returns(&out)
            .map_err(|e| LedgerError::Unavailable(format!("allowance answer: {e}")))?;
        if allowance < U256::from(amount.0) {
            let approve = AgoraTestToken::approveCall {
                spender: self.escrow,
                amount: U256::MAX,
            };
            self.send_to(Op::Deposit, None, self.token, approve.abi_encode())
                .await?;
        }
        let call = AgoraEscrow::depositCall {
            account: FixedBytes(*account.as_bytes()),
            amount: amount.0,
        };
        let receipt = self.transact(Op::Deposit, None, call.abi_encode()).await?;
        receipt_event::<AgoraEscrow::Deposited>(&receipt)
            .map(|e| Amount(e.balance))
            .ok_or_else(|| {
                LedgerError::Unavailable("the deposit's receipt has no Deposited event".into())
            })
    }

    async fn lock_escrow(&self, lease: &CoSigned) -> Result<EscrowState, LedgerError> {
        // The same checks as every backend, for the same errors; the
        // contract makes them again for whoever calls it directly.
        let lease = Lease::verify(lease.clone()).map_err(invalid_lease)?;
        let id = lease.id();
        if let Some(state) = self.state(&id).await? {
            return Ok(state);
        }
        let cosigned = lease.cosigned();
        let (req_r, req_s) = halves(cosigned.requester_signature());
        let (prov_r, prov_s) = halves(cosigned.provider_signature());
        let call = AgoraEscrow::lockCall {
            terms: cosigned.body().to_vec().into(),
            reqR: req_r,
            reqS: req_s,
            provR: prov_r,
            provS: prov_s,
        };
        self.transact(Op::Lock, Some(OpKey::Lock(id)), call.abi_encode())
            .await?;
        self.state(&id).await?.ok_or_else(|| {
            LedgerError::Unavailable(format!("lease {id} locked but its escrow reads empty"))
        })
    }

    async fn settle(&self, receipt: &CoSigned) -> Result<Settlement, LedgerError> {
        let claim = ReceiptClaim::from_cosigned(receipt.clone()).map_err(invalid_receipt)?;
        let id = claim.receipt().lease_id;
        let sequence = claim.receipt().sequence;
        let (req_r, req_s) = halves(receipt.requester_signature());
        let (prov_r, prov_s) = halves(receipt.provider_signature());
        let call = AgoraEscrow::settleCall {
            receipt: receipt.body().to_vec().into(),
            reqR: req_r,
            reqS: req_s,
            provR: prov_r,
            provS: prov_s,
        };
        let data = call.abi_encode();
        // The contract's own checks, in its order, before any transaction.
        self.sender
            .call(Op::Settle, self.escrow, &data.clone().into())
            .await?;
        let state = self
            .state(&id)
            .await?
            .ok_or(LedgerError::UnknownLease(id))?;
        let unchanged = |state: &EscrowState| Settlement {
            lease_id: id,
            paid: Amount::ZERO,
            settled: state.settled,
            last_sequence: state.last_sequence,
        };
        if sequence <= state.last_sequence {
            // Replayed, out of order, or our own earlier transaction for it
            // was mined: pays nothing, so nothing is sent.
            self.sender.forget(OpKey::Settle(id, sequence)).await;
            return Ok(unchanged(&state));
        }
        let mined = self
            .transact(Op::Settle, Some(OpKey::Settle(id, sequence)), data)
            .await?;
        if let Some(e) = receipt_event::<AgoraEscrow::Settled>(&mined) {
            return Ok(Settlement {
                lease_id: id,
                paid: Amount(e.paid),
                settled: Amount(e.settled),
                last_sequence: e.lastSequence,
            });
        }
        // Mined as a no-op: the same receipt settled first (the other party).
        let state = self
            .state(&id)
            .await?
            .ok_or(LedgerError::UnknownLease(id))?;
        Ok(unchanged(&state))
    }

    async fn close(&self, lease: &LeaseId) -> Result<Closure, LedgerError> {
        let call = AgoraEscrow::closeCall {
            leaseId: FixedBytes(lease.0),
        };
        let mined = self
            .transact(Op::Close, Some(OpKey::Close(*lease)), call.abi_encode())
            .await?;
        receipt_event::<AgoraEscrow::Closed>(&mined)
            .map(|e| Closure {
                lease_id: *lease,
                refunded: Amount(e.refunded),
                settled: Amount(e.settled),
            })
            .ok_or_else(|| {
                LedgerError::Unavailable("the close's receipt has no Closed event".into())
            })
    }

    async fn close_early(&self, close: &CoSigned) -> Result<Closure, LedgerError> {
        // Refused here as every backend refuses it (another kind, bytes
        // that do not decode, no reason); the contract checks the rest.
        let claim = CloseClaim::from_cosigned(close.clone()).map_err(invalid_close)?;
        let id = claim.close().lease_id;
        let (req_r, req_s) = halves(close.requester_signature());
        let (prov_r, prov_s) = halves(close.provider_signature());
        let call = AgoraEscrow::closeEarlyCall {
            leaseClose: close.body().to_vec().into(),
            reqR: req_r,
            reqS: req_s,
            provR: prov_r,
            provS: prov_s,
        };
        let key = OpKey::CloseEarly(id, claim.close().gpu_seconds);
        let mined = self
            .transact(Op::CloseEarly, Some(key), call.abi_encode())
            .await?;
        receipt_event::<AgoraEscrow::ClosedEarly>(&mined)
            .map(|e| Closure {
                lease_id: id,
                refunded: Amount(e.refunded),
                settled: Amount(e.settled),
            })
            .ok_or_else(|| {
                LedgerError::Unavailable(
                    "the early close's receipt has no ClosedEarly event".into(),
                )
            })
    }

    async fn escrow(&self, lease: &LeaseId) -> Result<Option<EscrowState>, LedgerError> {
        self.state(lease).await
    }

    async fn supply(&self) -> Result<Supply, LedgerError> {
        let s = self.view(AgoraEscrow::supplyCall {}).await?;
        Ok(Supply {
            deposited: s._0,
            balances: s._1,
            escrowed: s._2,
        })
    }
}
