//! Deploying the escrow (and a faucet token on test chains).

use std::time::Duration;

use agora_protocol::ledger::LedgerError;
use alloy::primitives::{Address, Bytes};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolConstructor;
use serde::{Deserialize, Serialize};

use crate::bindings::{AgoraEscrow, AgoraTestToken};
use crate::ledger::connect_sender;
use crate::revert::Op;
use crate::send::Timing;

/// Where a deployment put the contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The chain.
    pub chain_id: u64,
    /// The escrow contract.
    pub escrow: Address,
    /// The token it escrows.
    pub token: Address,
    /// Gas the escrow's deployment used.
    pub escrow_deploy_gas: u64,
}

/// Deploys an escrow over `token` with `close_grace_ms`, paying with `key`.
/// With no token, first deploys an `AgoraTestToken` (open faucet: test
/// chains only).
pub async fn deploy(
    rpc_url: &str,
    key: PrivateKeySigner,
    token: Option<Address>,
    close_grace_ms: u64,
) -> Result<Deployment, LedgerError> {
    let timing = Timing {
        rpc_retry: Duration::from_secs(10),
        mine_timeout: Duration::from_secs(120),
        poll: Duration::from_millis(50),
        confirmations: 1,
    };
    let sender = connect_sender(rpc_url, key, timing).await?;
    let chain_id = sender.chain_id();
    let token = match token {
        Some(token) => token,
        None => {
            let receipt = sender
                .send(Op::Deposit, None, None, AgoraTestToken::BYTECODE.clone())
                .await?;
            created(&receipt, "AgoraTestToken")?
        }
    };
    let mut code = AgoraEscrow::BYTECODE.to_vec();
    code.extend(
        AgoraEscrow::constructorCall {
            token_: token,
            closeGraceMs_: close_grace_ms,
        }
        .abi_encode(),
    );
    let receipt = sender
        .send(Op::Deposit, None, None, Bytes::from(code))
        .await?;
    Ok(Deployment {
        chain_id,
        escrow: created(&receipt, "AgoraEscrow")?,
        token,
        escrow_deploy_gas: receipt.gas_used,
    })
}

fn created(
    receipt: &alloy::rpc::types::TransactionReceipt,
    what: &str,
) -> Result<Address, LedgerError> {
    if !receipt.status() {
        return Err(LedgerError::BadRequest(format!(
            "deploying {what} reverted (transaction {})",
            receipt.transaction_hash
        )));
    }
    receipt.contract_address.ok_or_else(|| {
        LedgerError::Unavailable(format!("deploying {what}: the receipt names no contract"))
    })
}
