//! How a testnet is laid out and what each node's `agorad.toml` says.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hardware::provider_profile;

/// The `[node]` settings every testnet node gets: short intervals, so a
/// market forms and moves in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// Offers expire after this, seconds.
    pub offer_ttl_secs: u64,
    /// Offers are republished this often, seconds.
    pub offer_refresh_secs: u64,
    /// A bid holds GPUs for the bid window plus this, milliseconds.
    pub bid_hold_grace_ms: u64,
    /// Receipt interval put in lease terms, seconds.
    pub receipt_interval_secs: u64,
    /// A provider stops a job this long after a receipt interval passes
    /// without the requester's countersignature, seconds.
    pub countersign_grace_secs: u64,
    /// Providers may run jobs without bubblewrap (never by default).
    pub allow_unsandboxed: bool,
    /// `runtime.max_disk_mib` of every provider: many share one disk
    /// here, so less than a real provider's default.
    pub max_disk_mib: u64,
    /// Providers run jobs on this Ray cluster instead of as processes,
    /// offering the GPUs it reports as their profile's model.
    pub ray: Option<RayProvider>,
    /// `node.target_peers` of every node (the node's default if `None`).
    pub target_peers: Option<u32>,
    /// `node.max_connections` of every node (the node's default if `None`).
    pub max_connections: Option<u32>,
}

/// A Ray cluster behind the testnet's providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RayProvider {
    /// The head's dashboard, e.g. `http://127.0.0.1:8265`.
    pub dashboard: String,
    /// `ray.head_timeout_secs`: how long a running job's head may be
    /// silent before the run ends.
    pub head_timeout_secs: u64,
}

impl RayProvider {
    /// The `[ray]` section for GPUs of `model`, `vram_gib` and `tflops`
    /// (logical GPUs: testnet clusters start with `--num-gpus`).
    pub fn config_toml(&self, model: &str, vram_gib: u64, tflops: f64) -> String {
        format!(
            "[ray]\ndashboard = \"{}\"\ngpu_model = \"{model}\"\ngpu_vram_gib = {vram_gib}\n\
             gpu_tflops = {tflops:?}\nlogical_gpus = true\nnum_cpus = 0.5\npoll_ms = 250\n\
             head_timeout_secs = {}\nhealth_secs = 1\n",
            self.dashboard, self.head_timeout_secs
        )
    }
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            offer_ttl_secs: 30,
            offer_refresh_secs: 2,
            bid_hold_grace_ms: 5000,
            receipt_interval_secs: 2,
            countersign_grace_secs: 3,
            allow_unsandboxed: false,
            max_disk_mib: 256,
            ray: None,
            target_peers: None,
            max_connections: None,
        }
    }
}

impl NodeSettings {
    /// The `[node]` and `[runtime]` sections.
    pub fn config_toml(&self) -> String {
        let mut peers = String::new();
        if let Some(n) = self.target_peers {
            peers.push_str(&format!("target_peers = {n}\n"));
        }
        if let Some(n) = self.max_connections {
            peers.push_str(&format!("max_connections = {n}\n"));
        }
        format!(
            "[node]\noffer_ttl_secs = {}\noffer_refresh_secs = {}\nbid_hold_grace_ms = {}\n\
             receipt_interval_secs = {}\n{peers}\n[runtime]\ncountersign_grace_secs = {}\n\
             allow_unsandboxed = {}\nmax_disk_mib = {}\nmax_output_bytes = {}\n",
            self.offer_ttl_secs,
            self.offer_refresh_secs,
            self.bid_hold_grace_ms,
            self.receipt_interval_secs,
            self.countersign_grace_secs,
            self.allow_unsandboxed,
            self.max_disk_mib,
            (self.max_disk_mib << 20).min(256 << 20),
        )
    }
}

/// Whom each node is given as `--bootstrap` peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bootstrap {
    /// Every node started before it (nodes start one after another), so a
    /// small testnet is fully connected from the start whatever Kademlia
    /// has learnt yet, and no single node's restart cuts anyone off. A
    /// restarted node gets every running node.
    #[default]
    Earlier,
    /// Only the first node (the others start together); peers find each
    /// other through Kademlia. A restarted node gets the first other node
    /// that runs.
    First,
    /// The first node and up to `k - 1` other earlier nodes, picked
    /// pseudo-randomly (the same picks every run); nodes start one after
    /// another. Connections grow like a real network's — a few per node,
    /// more through Kademlia — rather than one per pair as with
    /// [`Bootstrap::Earlier`]. A restarted node gets every running node.
    Sample(usize),
}

/// What to launch, and where.
#[derive(Debug, Clone)]
pub struct TestnetConfig {
    /// The testnet directory: `testnet.json`, `chain/` and one directory per
    /// node.
    pub dir: PathBuf,
    /// Provider nodes (`provider-0`, …), with simulated GPUs from
    /// [`provider_profile`].
    pub providers: usize,
    /// Requester nodes (`requester-0`, …).
    pub requesters: usize,
    /// Where `agorad` and `agora-mock-chain` are; by default next to the
    /// running executable or in its parent directory.
    pub bin_dir: Option<PathBuf>,
    /// `RUST_LOG` of every process.
    pub rust_log: String,
    /// `[node]` settings of every node.
    pub node: NodeSettings,
    /// Whom each node bootstraps from.
    pub bootstrap: Bootstrap,
    /// The mock chain's grace after a lease's end before anyone may close
    /// it, milliseconds.
    pub close_grace_ms: u64,
    /// How long a process may take to become ready.
    pub ready_timeout: Duration,
    /// How long a SIGTERM may take before SIGKILL follows.
    pub stop_timeout: Duration,
    /// The chain: the mock chain (default) or the escrow on a local anvil.
    pub ledger: LedgerBackend,
    /// Start every process in a process group of its own, so that it keeps
    /// running when the launcher's terminal sends ctrl-c (`agora-testnet up`).
    /// Off, the processes share the launcher's group, and a ctrl-c that ends
    /// the launcher (say, `cargo test`) ends them too.
    pub detach: bool,
}

impl TestnetConfig {
    /// `providers` providers and `requesters` requesters in `dir`, with the
    /// testnet defaults: `RUST_LOG` from the environment or `info`, short
    /// market intervals, bootstrap from every earlier node, 60 s to start,
    /// 10 s to stop, in the launcher's process group.
    pub fn new(dir: impl Into<PathBuf>, providers: usize, requesters: usize) -> Self {
        Self {
            dir: dir.into(),
            providers,
            requesters,
            bin_dir: None,
            rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            node: NodeSettings::default(),
            bootstrap: Bootstrap::default(),
            close_grace_ms: 3_000,
            ready_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(10),
            ledger: LedgerBackend::Mock,
            detach: false,
        }
    }
}

/// Which chain a testnet settles on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerBackend {
    /// `agora-mock-chain`: the sled ledger over HTTP.
    #[default]
    Mock,
    /// anvil with the escrow contract deployed (contracts-evm).
    Evm,
}

impl std::str::FromStr for LedgerBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mock" => Ok(LedgerBackend::Mock),
            "evm" => Ok(LedgerBackend::Evm),
            other => Err(format!("unknown ledger {other:?}: expected mock or evm")),
        }
    }
}

/// The whole `agorad.toml` of provider `index`.
pub fn provider_config(index: usize, node: &NodeSettings) -> String {
    let profile = provider_profile(index);
    let hardware = match &node.ray {
        None => profile.config_toml(),
        Some(ray) => format!(
            "{}\n{}",
            profile.provider_toml("ray"),
            ray.config_toml(profile.gpu_model, profile.vram_gib, profile.tflops)
        ),
    };
    format!(
        "# Generated by agora-testnet for provider-{index}.\n{}\n{hardware}",
        node.config_toml(),
    )
}

/// The whole `agorad.toml` of a requester.
pub fn requester_config(index: usize, node: &NodeSettings) -> String {
    format!(
        "# Generated by agora-testnet for requester-{index}.\n{}",
        node.config_toml()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_configs_are_what_agorad_reads() {
        let node = NodeSettings::default();
        for index in 0..10 {
            let text = provider_config(index, &node);
            let config = agora_node::config::Config::parse(&text, "provider")
                .unwrap_or_else(|e| panic!("provider-{index}: {e}\n{text}"));
            assert!(config.provider.is_some());
            assert_eq!(config.simulated_gpu.len(), 1);
        }
        let ray = NodeSettings {
            ray: Some(RayProvider {
                dashboard: "http://127.0.0.1:8265".into(),
                head_timeout_secs: 5,
            }),
            ..NodeSettings::default()
        };
        let text = provider_config(0, &ray);
        let config = agora_node::config::Config::parse(&text, "ray provider")
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(config.simulated_gpu.is_empty());
        assert_eq!(config.provider.unwrap().runtimes, vec!["ray".to_string()]);
        config.ray.unwrap().validate().unwrap();
        let text = requester_config(0, &node);
        let config = agora_node::config::Config::parse(&text, "requester").unwrap();
        assert!(config.provider.is_none() && config.simulated_gpu.is_empty());
    }
}
