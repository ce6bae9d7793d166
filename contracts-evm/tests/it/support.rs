//! A chain for tests: anvil with the escrow deployed on it.

use std::io::Write;

use agora_contracts_evm::anvil::{Anvil, AnvilOptions};
use agora_contracts_evm::{Deployment, EvmConfig, EvmLedger, deploy};
use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;

/// The close grace every test escrow uses (as the mock chain's tests).
pub(crate) const CLOSE_GRACE_MS: u64 = 30_000;

/// Starts anvil, or — outside CI — says why the test cannot run and
/// returns `None`. Under `CI=true` a missing anvil fails the test.
pub(crate) fn anvil_or_skip(options: &AnvilOptions) -> Option<Anvil> {
    match Anvil::start(options) {
        Ok(anvil) => Some(anvil),
        Err(why) => {
            skip(&why);
            None
        }
    }
}

/// Says on the real stderr that the running test cannot run and why;
/// under `CI=true` fails it instead (no test may skip in CI).
pub(crate) fn skip(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {test}: {why}; no test may skip in CI"
    );
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {why}");
}

/// A provider that signs with a fresh funded key, for calling contracts
/// directly (past EvmLedger's own checks).
pub(crate) async fn wallet_provider(anvil: &Anvil) -> impl alloy::providers::Provider + Clone {
    let key = funded_key(anvil).await;
    alloy::providers::ProviderBuilder::new()
        .wallet(key)
        .connect_http(anvil.url().parse().unwrap())
}

/// Deploys `code` (creation bytecode with constructor arguments).
pub(crate) async fn deploy_code(
    provider: &impl alloy::providers::Provider,
    code: alloy::primitives::Bytes,
) -> alloy::primitives::Address {
    use alloy::network::TransactionBuilder;
    let tx = alloy::rpc::types::TransactionRequest::default().with_deploy_code(code);
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    receipt.contract_address.unwrap()
}

/// A funded gas key.
pub(crate) async fn funded_key(anvil: &Anvil) -> PrivateKeySigner {
    let key = PrivateKeySigner::random();
    anvil
        .fund(key.address(), U256::from(10u128.pow(24)))
        .await
        .unwrap();
    key
}

/// Deploys a test token and an escrow; returns the deployment and a
/// faucet-enabled config for it with fast polling.
pub(crate) async fn deployed(anvil: &Anvil) -> (Deployment, EvmConfig) {
    let key = funded_key(anvil).await;
    let deployment = deploy(anvil.url(), key, None, CLOSE_GRACE_MS)
        .await
        .unwrap();
    let mut config = EvmConfig::new(anvil.url(), deployment.escrow);
    config.faucet = true;
    config.poll_ms = 10;
    config.rpc_retry_secs = 2;
    config.mine_timeout_secs = 20;
    (deployment, config)
}

/// A ledger on `config` with a fresh funded gas key.
pub(crate) async fn ledger(anvil: &Anvil, config: &EvmConfig) -> EvmLedger {
    EvmLedger::connect(config, funded_key(anvil).await)
        .await
        .unwrap()
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
