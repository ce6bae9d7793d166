//! Starting and stopping a whole node: key, store, network, market, API.
//! When everything is up it writes `node.json` to the data dir (atomically),
//! which launchers such as `agora-testnet` wait for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_client::api::Role;
use agora_contracts_mock::client::HttpLedger;
use agora_protocol::Ledger;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::now;
use crate::config::Config;
use crate::disk::DiskGuard;
use crate::market::{self, MarketHandle, MarketOptions};
use crate::metrics::Metrics;
use crate::metrics::ledger::MeteredLedger;
use crate::network::{self, NetworkConfig, NetworkHandle};
use crate::provider::bidder::Bidder;
use crate::provider::exec::{Executor, ExecutorOptions};
use crate::provider::inventory;
use crate::provider::role::{ProviderRole, ProviderSnapshot};
use crate::provider::telemetry::{Telemetry, TelemetryOptions};
use crate::runtime::Runtime;
use crate::runtime::process::ProcessRuntime;
use crate::runtime::ray::RayRuntime;
use crate::store::Store;
use crate::{api, identity};

/// The file a ready node writes.
pub const READY_FILE: &str = "node.json";

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Data dir: key, token, state.
    pub data_dir: PathBuf,
    /// Configuration.
    pub config: Config,
    /// Role.
    pub role: Role,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers.
    pub bootstrap: Vec<Multiaddr>,
    /// API address.
    pub api: SocketAddr,
    /// Mock chain base URL.
    pub ledger: String,
    /// mDNS (LAN only; off by default).
    pub mdns: bool,
}

/// What `node.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// libp2p peer id.
    pub peer_id: String,
    /// Ledger account.
    pub account: String,
    /// Role.
    pub role: Role,
    /// API base URL.
    pub api_url: String,
    /// Listen addresses with `/p2p/PEER_ID`.
    pub listen_addrs: Vec<String>,
    /// Process id.
    pub pid: u32,
}

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Data dir, key or token.
    #[error("{0}")]
    Setup(String),
    /// Configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// State store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Network.
    #[error(transparent)]
    Network(#[from] network::NetworkError),
    /// API bind.
    #[error("cannot serve the API on {addr}: {source}; pass --api to choose another address")]
    Api {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running node.
pub struct RunningNode {
    /// What node.json says.
    pub ready: ReadyInfo,
    /// The market.
    pub market: MarketHandle,
    /// The swarm.
    pub network: NetworkHandle,
    cancel: CancellationToken,
    api: tokio::task::JoinHandle<()>,
    market_task: tokio::task::JoinHandle<()>,
    store: Store,
}

impl RunningNode {
    /// Stops everything and flushes the store.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.api.await;
        // The market stops its background work and flushes what it holds.
        match tokio::time::timeout(Duration::from_secs(10), self.market_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "the market actor ended abnormally"),
            Err(_) => warn!("the market actor did not stop within 10 s"),
        }
        if let Err(e) = self.store.flush() {
            warn!(error = %e, "final flush failed");
        }
    }
}

fn setup(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Setup(format!("{what}: {e}"))
}

/// Starts a node.
pub async fn start(options: NodeOptions) -> Result<RunningNode, StartError> {
    let ledger = connect_ledger(&options.config, &options.data_dir, &options.ledger).await?;
    start_with_ledger(options, ledger).await
}

/// The one place that names a ledger backend: the escrow contract when
/// the config has `[ledger.evm]`, else the mock chain's HTTP client at
/// `url`.
pub async fn connect_ledger(
    config: &crate::config::Config,
    data_dir: &std::path::Path,
    url: &str,
) -> Result<Arc<dyn Ledger>, StartError> {
    let Some(evm) = &config.ledger.evm else {
        return Ok(Arc::new(
            HttpLedger::new(url).map_err(|e| setup("ledger", e))?,
        ));
    };
    config.ledger.validate()?;
    let client = evm;
    let key_path = data_dir.join(&evm.key_file);
    let key = agora_contracts_evm::ledger::load_or_create_key(&key_path)
        .map_err(|e| setup("ledger.evm.key_file", e))?;
    let ledger = agora_contracts_evm::EvmLedger::connect(client, key)
        .await
        .map_err(|e| setup(&format!("ledger.evm ({})", evm.rpc_url), e))?;
    info!(
        escrow = %ledger.escrow_address(),
        token = %ledger.token_address(),
        gas_account = %ledger.gas_account(),
        "settling on the EVM escrow"
    );
    Ok(Arc::new(ledger))
}

/// Starts a node on any [`Ledger`] (`options.ledger` is then only shown).
pub async fn start_with_ledger(
    options: NodeOptions,
    ledger: Arc<dyn Ledger>,
) -> Result<RunningNode, StartError> {
    std::fs::create_dir_all(&options.data_dir)
        .map_err(|e| setup(&format!("data dir {}", options.data_dir.display()), e))?;
    let metrics = Metrics::new();
    // Every ledger call of the node is counted.
    let ledger: Arc<dyn Ledger> =
        Arc::new(MeteredLedger::new(ledger, metrics.ledger_errors.clone()));
    let key = identity::load_or_create(&options.data_dir).map_err(|e| setup("key", e))?;
    let token = api::load_or_create_token(&options.data_dir).map_err(|e| setup("API token", e))?;
    options.config.node.validate()?;
    let store = Store::open_with_cache(
        &options.data_dir.join("state"),
        options.config.node.store_cache_mb * 1024 * 1024,
    )?;
    options.config.api.validate()?;
    options.config.runtime.validate()?;

    let (runtime, ray_inventory) = match options.role {
        Role::Requester => (None, None),
        Role::Provider => {
            let (runtime, inventory) = provider_runtime(&options).await?;
            (Some(runtime), inventory)
        }
    };
    let provider = match options.role {
        Role::Requester => None,
        Role::Provider => Some(provider_role(
            &options.config,
            &key,
            &store,
            ray_inventory,
            runtime.as_ref().map(|r| r.limits()).unwrap_or_default(),
        )?),
    };

    let cancel = CancellationToken::new();
    let (ended_tx, runs_ended) = tokio::sync::mpsc::channel(256);
    let disk = DiskGuard::new(&options.data_dir, options.config.node.min_free_disk_mib);
    let runtime_health = match &runtime {
        Some(runtime) => Some(
            watch_health(
                runtime.clone(),
                disk.clone(),
                health_interval(&options.config),
                cancel.child_token(),
            )
            .await,
        ),
        None => None,
    };
    let (network, events) = network::spawn_metered(
        &key,
        NetworkConfig {
            mdns: options.mdns,
            orders_per_peer_per_sec: options.config.node.orders_per_peer_per_sec,
            order_burst_per_peer: options.config.node.order_burst_per_peer,
            max_connections: options.config.node.max_connections,
            target_peers: options.config.node.target_peers,
            ..NetworkConfig::new(options.listen.clone(), options.bootstrap.clone())
        },
        metrics.gossip.clone(),
        cancel.child_token(),
    )
    .await?;
    let executor = match (&provider, runtime) {
        (Some(role), Some(runtime)) => Some(Executor::start(ExecutorOptions {
            key: key.clone(),
            store: store.clone(),
            network: network.clone(),
            ledger: ledger.clone(),
            runtime,
            settings: options.config.runtime.clone(),
            jobs_dir: options.data_dir.join("jobs"),
            slots: slot_gpus(role),
            ended: ended_tx,
            cancel: cancel.child_token(),
            metrics: metrics.clone(),
        })),
        _ => None,
    };
    let telemetry = match (&provider, &executor, &options.config.provider) {
        (Some(role), Some(exec), Some(config)) => {
            let exec = exec.clone();
            Some(Telemetry::spawn(TelemetryOptions {
                gpus: role.inventory().gpus.clone(),
                interval: Duration::from_secs(config.telemetry_interval_secs),
                leased: Arc::new(move || exec.busy_gpus()),
                cancel: cancel.child_token(),
            }))
        }
        _ => None,
    };
    let (market, market_task) = market::spawn(MarketOptions {
        key: key.clone(),
        role: options.role,
        config: options.config.clone(),
        store: store.clone(),
        network: network.clone(),
        events,
        ledger: ledger.clone(),
        provider,
        executor,
        runs_ended,
        runtime_health,
        results_dir: options.data_dir.join("results"),
        cancel: cancel.child_token(),
        metrics: metrics.clone(),
    })
    .map_err(|e| setup("market", e))?;

    let listener = tokio::net::TcpListener::bind(options.api)
        .await
        .map_err(|source| StartError::Api {
            addr: options.api,
            source,
        })?;
    let api_addr = listener.local_addr().map_err(|source| StartError::Api {
        addr: options.api,
        source,
    })?;
    if !api_addr.ip().is_loopback() {
        warn!(%api_addr, "the API listens beyond loopback; anyone who reaches it needs only the token");
    }
    let mut state = api::ApiState::new(
        market.clone(),
        ledger,
        &key,
        token,
        store.clone(),
        options.data_dir.join("results"),
    )
    .with_metrics(metrics, network.clone());
    if let Some(telemetry) = telemetry {
        state = state.with_telemetry(telemetry);
    }
    let limits = options.config.api;
    let state = state
        .with_auth_rate(limits.unauthenticated_requests_per_sec)
        .with_disk(disk);
    let api_metrics = state.metrics().clone();
    let router = api::router(state);
    let api = tokio::spawn(api::serve::serve(
        listener,
        router,
        limits,
        api_metrics,
        cancel.clone(),
    ));

    let net = network.info().await?;
    let ready = ReadyInfo {
        peer_id: net.peer_id.to_string(),
        account: key.public().to_string(),
        role: options.role,
        api_url: format!("http://{api_addr}"),
        listen_addrs: net.listen_addrs.iter().map(ToString::to_string).collect(),
        pid: std::process::id(),
    };
    write_ready(&options.data_dir, &ready).map_err(|e| setup("node.json", e))?;
    info!(api = %ready.api_url, peer = %ready.peer_id, "ready");
    Ok(RunningNode {
        ready,
        market,
        network,
        cancel,
        api,
        market_task,
        store,
    })
}

fn provider_role(
    config: &Config,
    key: &agora_protocol::Keypair,
    store: &Store,
    ray_inventory: Option<inventory::Inventory>,
    limits: agora_protocol::SandboxLimits,
) -> Result<ProviderRole, StartError> {
    let provider_config = config.provider.as_ref().ok_or_else(|| {
        StartError::Setup(
            "a provider needs a [provider] section in its config (region, pricing); pass --config FILE".into(),
        )
    })?;
    provider_config.validate()?;
    let now = now();
    let inventory = if let Some(inventory) = ray_inventory {
        inventory
    } else if config.simulated_gpu.is_empty() {
        let found = inventory::detect();
        if found.gpus.is_empty() {
            // What `agorad doctor` reports as an error: nothing to offer.
            let seen = found
                .nvml_unavailable
                .clone()
                .unwrap_or_else(|| "NVML found no GPUs".into());
            return Err(StartError::Setup(format!(
                "{seen}; this provider has no GPUs to offer: install the NVIDIA driver, or declare [[simulated_gpu]] for a testnet"
            )));
        }
        found
    } else {
        inventory::Inventory {
            gpus: inventory::simulated(&config.simulated_gpu, now),
            driver: None,
            nvml_unavailable: None,
        }
    };
    let mut bidder = Bidder::new(key.public(), provider_config, &config.node, &inventory, now)?;
    bidder.set_network(config.runtime.allow_network);
    bidder.set_limits(limits);
    let snapshot: ProviderSnapshot = store.meta("provider")?.unwrap_or_default();
    let leases = store.leases()?;
    Ok(ProviderRole::new(bidder, inventory, snapshot, leases))
}

/// The runtime the provider's config chooses (`provider.runtimes`), with
/// the inventory it dictates: a Ray provider offers the GPUs its cluster
/// reports, so its head must answer when the node starts.
async fn provider_runtime(
    options: &NodeOptions,
) -> Result<(Arc<dyn Runtime>, Option<inventory::Inventory>), StartError> {
    let config = &options.config;
    let runtimes = config
        .provider
        .as_ref()
        .map(|p| p.runtimes.clone())
        .unwrap_or_default();
    match runtimes.as_slice() {
        [one] if one == "ray" => {}
        [one] if one == "process" => return Ok((process_runtime(options)?, None)),
        [] => return Ok((process_runtime(options)?, None)),
        other => {
            return Err(StartError::Setup(format!(
                "provider.runtimes = {other:?}: a provider runs one runtime, \"process\" or \"ray\""
            )));
        }
    }
    let ray = config.ray.clone().ok_or_else(|| {
        StartError::Setup(
            "provider.runtimes = [\"ray\"] needs a [ray] section (dashboard, gpu_model, \
             gpu_vram_gib, gpu_tflops); see docs/provider-guide.md"
                .into(),
        )
    })?;
    ray.validate()?;
    let runtime =
        RayRuntime::new(config.runtime.clone(), ray.clone()).map_err(|e| setup("ray", e))?;
    let count = runtime.cluster_gpus().await.map_err(|e| {
        StartError::Setup(format!(
            "cannot read the Ray cluster's GPUs ({e}); start the head (ray start --head) or fix \
             ray.dashboard"
        ))
    })?;
    let inventory = inventory::ray(&ray, count, now());
    info!(dashboard = %ray.base_url(), gpus = count, model = %ray.gpu_model, "jobs run on Ray");
    Ok((Arc::new(runtime), Some(inventory)))
}

/// How often the runtime's health is checked.
fn health_interval(config: &Config) -> Duration {
    match &config.ray {
        Some(ray)
            if config
                .provider
                .as_ref()
                .is_some_and(|p| p.runtimes.iter().any(|r| r == "ray")) =>
        {
            Duration::from_secs(ray.health_secs)
        }
        _ => Duration::from_secs(PROCESS_HEALTH_SECS),
    }
}

/// How often the process runtime's health is checked, seconds.
const PROCESS_HEALTH_SECS: u64 = 30;

/// Checks the runtime's health now and then every `every`; the channel
/// holds why it cannot run jobs (`None` while it can). Each change is
/// logged once.
async fn watch_health(
    runtime: Arc<dyn Runtime>,
    disk: DiskGuard,
    every: Duration,
    cancel: CancellationToken,
) -> tokio::sync::watch::Receiver<Option<String>> {
    // Why no new work can be taken: the runtime's failure, or a data disk
    // below its floor (running work continues either way).
    let unable = move |health: Result<(), crate::runtime::RuntimeError>| {
        health
            .err()
            .map(|e| e.to_string())
            .or_else(|| disk.check().err())
    };
    let first = unable(runtime.health().await);
    if let Some(reason) = &first {
        warn!(runtime = runtime.name(), %reason, "the runtime cannot run jobs; no offers until it can");
    }
    // The market takes in the first state when it starts, the changes on
    // its ticks.
    let (tx, rx) = tokio::sync::watch::channel(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            let now = unable(runtime.health().await);
            let changed = tx.send_if_modified(|state| {
                if state.is_some() == now.is_some() {
                    return false;
                }
                *state = now.clone();
                true
            });
            if changed {
                match &now {
                    Some(reason) => warn!(
                        runtime = runtime.name(),
                        %reason,
                        "the runtime cannot run jobs; offers and bids stop until it can"
                    ),
                    None => info!(
                        runtime = runtime.name(),
                        "the runtime is back; offering again"
                    ),
                }
            }
        }
    });
    rx
}

/// The process runtime, refusing to start a provider that could only run
/// jobs unsandboxed unless its config opts in.
fn process_runtime(options: &NodeOptions) -> Result<Arc<dyn Runtime>, StartError> {
    let hidden = vec![options.data_dir.clone()];
    let runtime = ProcessRuntime::new(options.config.runtime.clone(), hidden)
        .map_err(|e| StartError::Setup(e.to_string()))?;
    Ok(Arc::new(runtime))
}

/// Each offer slot's GPUs: index, UUID, simulated.
fn slot_gpus(role: &ProviderRole) -> HashMap<u32, Vec<(u32, String, bool)>> {
    let gpus = &role.inventory().gpus;
    role.slots()
        .iter()
        .map(|slot| {
            let list = slot
                .gpus
                .iter()
                .filter_map(|i| gpus.iter().find(|g| g.index == *i))
                .map(|g| (g.index, g.uuid.clone(), g.simulated))
                .collect();
            (slot.slot, list)
        })
        .collect()
}

fn write_ready(dir: &Path, ready: &ReadyInfo) -> std::io::Result<()> {
    let path = dir.join(READY_FILE);
    let tmp = dir.join(format!("{READY_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(ready).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, path)
}

/// Removes `node.json` (on shutdown), so a stale file never looks ready.
pub fn clear_ready(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(READY_FILE));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::mpsc;

    use super::*;
    use crate::runtime::{Outcome, RunEvent, RunSpec, RuntimeError};

    /// A runtime whose health a test switches.
    struct Switch(AtomicBool);

    #[async_trait]
    impl Runtime for Switch {
        fn name(&self) -> &str {
            "switch"
        }

        async fn health(&self) -> Result<(), RuntimeError> {
            if self.0.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(RuntimeError::Unavailable("the head is gone".into()))
            }
        }

        async fn run(
            &self,
            _: RunSpec,
            _: mpsc::Sender<RunEvent>,
            _: CancellationToken,
        ) -> Result<Outcome, RuntimeError> {
            Err(RuntimeError::Unavailable("not in this test".into()))
        }
    }

    #[tokio::test]
    async fn health_changes_are_reported_once_each() {
        let runtime = Arc::new(Switch(AtomicBool::new(false)));
        let cancel = CancellationToken::new();
        let full = Arc::new(AtomicBool::new(false));
        let seen = full.clone();
        let disk = DiskGuard::with_probe(
            Path::new("/data"),
            1,
            Arc::new(move |_| {
                Ok(if seen.load(Ordering::SeqCst) {
                    0
                } else {
                    1 << 30
                })
            }),
        );
        let mut rx = watch_health(
            runtime.clone(),
            disk,
            Duration::from_millis(20),
            cancel.clone(),
        )
        .await;
        // Down from the start: said at once.
        let first = rx.borrow_and_update().clone();
        assert!(first.is_some_and(|r| r.contains("the head is gone")));
        runtime.0.store(true, Ordering::SeqCst);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), None);
        // Staying up is no change.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!rx.has_changed().unwrap());
        // A full disk stops new work as a failed runtime does, with its
        // own reason, and its end starts it again.
        full.store(true, Ordering::SeqCst);
        rx.changed().await.unwrap();
        let reason = rx.borrow_and_update().clone();
        assert!(reason.is_some_and(|r| r.contains("min_free_disk_mib")));
        full.store(false, Ordering::SeqCst);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), None);
        runtime.0.store(false, Ordering::SeqCst);
        rx.changed().await.unwrap();
        assert!(rx.borrow_and_update().is_some());
        cancel.cancel();
    }
}
