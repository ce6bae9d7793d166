//! `--ledger evm`: the testnet's chain is a local anvil with the escrow
//! deployed on it, instead of the mock chain.
//!
//! anvil keeps its chain in `chain/anvil-state.json` (written when it stops
//! on SIGTERM, read when it starts), so a restarted chain has every block
//! it had: a chain outage is an outage, never a rollback — as on a real
//! chain, where confirmed blocks stay.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use agora_contracts_evm::{Address, EvmConfig, EvmLedger, GasKey, anvil, deploy};
use agora_protocol::Ledger;

use crate::error::TestnetError;
use crate::manifest::EvmChain;

/// What anvil prints once it serves.
pub(crate) const ANVIL_READY: &str = "Listening on ";

/// Gas each node's key is given: far more than any testnet spends.
const GAS_WEI: u128 = 1_000_000 * 10u128.pow(18);

fn evm(e: impl std::fmt::Display) -> TestnetError {
    TestnetError::Evm(e.to_string())
}

/// The anvil executable, or where to get it.
pub(crate) fn anvil_binary() -> Result<std::path::PathBuf, TestnetError> {
    anvil::binary().ok_or_else(|| TestnetError::MissingBinary {
        binary: "anvil".into(),
        searched: "$AGORA_ANVIL, contracts-evm/node_modules (npm ci --prefix contracts-evm), PATH"
            .into(),
    })
}

/// anvil's arguments: on `listen` (`127.0.0.1:0` the first time, its old
/// address after), a block every second so chain time moves, and its
/// state in `data`.
pub(crate) fn anvil_args(listen: &str, data: &Path) -> Vec<OsString> {
    let (host, port) = listen.rsplit_once(':').unwrap_or(("127.0.0.1", "0"));
    vec![
        "--host".into(),
        host.into(),
        "--port".into(),
        port.into(),
        "--chain-id".into(),
        "31337".into(),
        "--block-time".into(),
        "1".into(),
        // Two ed25519 checks per settlement: room for many in a block.
        "--gas-limit".into(),
        "300000000".into(),
        "--accounts".into(),
        "1".into(),
        "--state".into(),
        data.join("anvil-state.json").into_os_string(),
    ]
}

/// Deploys a test token and the escrow on the anvil at `url`.
pub(crate) async fn deploy_escrow(
    url: &str,
    close_grace_ms: u64,
) -> Result<EvmChain, TestnetError> {
    let key = GasKey::random();
    fund(url, key.address()).await?;
    let deployment = deploy(url, key, None, close_grace_ms).await.map_err(evm)?;
    Ok(EvmChain {
        chain_id: deployment.chain_id,
        escrow: deployment.escrow.to_string(),
        token: deployment.token.to_string(),
    })
}

/// Gives `address` gas.
pub(crate) async fn fund(url: &str, address: Address) -> Result<(), TestnetError> {
    anvil::set_balance(url, address, GAS_WEI.try_into().map_err(evm)?)
        .await
        .map_err(evm)
}

/// Creates a node's gas key in its data dir (if it has none) and funds it.
pub(crate) async fn fund_node_key(url: &str, data_dir: &Path) -> Result<(), TestnetError> {
    let key =
        agora_contracts_evm::ledger::load_or_create_key(&data_dir.join("evm.key")).map_err(evm)?;
    fund(url, key.address()).await
}

/// The `[ledger.evm]` section of every node's config.
pub(crate) fn ledger_toml(url: &str, chain: &EvmChain) -> String {
    format!(
        "\n[ledger.evm]\nrpc_url = \"{url}\"\nescrow = \"{}\"\nfaucet = true\npoll_ms = 100\n",
        chain.escrow
    )
}

/// A client of the escrow with a throwaway funded gas key, for reading
/// the books (and the demo's faucet).
pub(crate) async fn observer(url: &str, chain: &EvmChain) -> Result<Arc<EvmLedger>, TestnetError> {
    let escrow = chain.escrow.parse().map_err(evm)?;
    let key = GasKey::random();
    fund(url, key.address()).await?;
    let mut config = EvmConfig::new(url, escrow);
    config.faucet = true;
    config.poll_ms = 100;
    let ledger: EvmLedger = EvmLedger::connect(&config, key).await.map_err(evm)?;
    Ok(Arc::new(ledger))
}

/// Keeps the `Ledger` import honest for callers that want the trait.
pub(crate) fn as_ledger(ledger: Arc<EvmLedger>) -> Arc<dyn Ledger> {
    ledger
}
