//! In-process market pieces: a mock chain and nodes on 127.0.0.1 port 0.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agora_client::api::Role;
use agora_contracts_mock::{SledConfig, SledLedger, SystemClock};
use agora_node::config::Config;
use agora_node::daemon::{self, NodeOptions, RunningNode};
use agora_node::runtime::process::for_tests::providers_unsandboxed;
use agora_protocol::Ledger;

/// An in-process ledger (the sled backend, which passes the conformance
/// suite): no HTTP server, no chain process.
pub(crate) fn ledger(dir: &Path) -> Arc<dyn Ledger> {
    Arc::new(SledLedger::open(dir, SledConfig::default(), Arc::new(SystemClock)).unwrap())
}

pub(crate) const PROVIDER_CONFIG: &str = r#"
[node]
offer_refresh_secs = 1
offer_ttl_secs = 30

[provider]
region = "EU"
energy = "renewable"

[provider.pricing]
default = "2.0"
floor = "1.0"

[[simulated_gpu]]
model = "H100"
vram_gib = 80
tflops = 67.0
count = 2
"#;

/// Starts a node on loopback with port 0 everywhere, mDNS off.
pub(crate) async fn node(
    dir: &Path,
    role: Role,
    config: &str,
    ledger: &Arc<dyn Ledger>,
    bootstrap: Vec<libp2p::Multiaddr>,
) -> RunningNode {
    let mut config = Config::parse(config, "test").unwrap();
    // Without bubblewrap (and not in CI) these tests' providers run jobs
    // unsandboxed: they test the market, not the sandbox.
    if role == Role::Provider && providers_unsandboxed() {
        config.runtime.allow_unsandboxed = true;
    }
    let options = NodeOptions {
        data_dir: dir.to_path_buf(),
        config,
        role,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        api: "127.0.0.1:0".parse().unwrap(),
        ledger: "in-process".to_string(),
        mdns: false,
    };
    daemon::start_with_ledger(options, ledger.clone())
        .await
        .unwrap()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with
/// `what` after `secs` seconds.
pub(crate) async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A job of `gpus` GPUs running `sh -c script`, for at most
/// `max_duration_secs`, with a bid window of `bid_window_ms`, at up to
/// 3 AGR/GPU-hour on simulated GPUs.
pub(crate) fn shell_job(
    name: &str,
    script: &str,
    gpus: u32,
    max_duration_secs: u64,
    bid_window_ms: u32,
) -> agora_client::api::SubmitJob {
    use agora_client::api::{Constraints, JobSpec, MarketTerms, Resources};
    agora_client::api::SubmitJob {
        spec: JobSpec {
            name: Some(name.into()),
            runtime: "process".into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: Default::default(),
            inputs: vec![],
            resources: Resources {
                gpus,
                gpu_model: None,
                min_vram_gib: 0,
                min_tflops: 0.0,
                min_compute_capability: 0.0,
                memory_mib: 0,
                disk_mib: 0,
                tmp_mib: 0,
                processes: 0,
            },
            constraints: Constraints {
                allow_simulated: true,
                ..Default::default()
            },
            market: MarketTerms {
                max_price_per_gpu_hour: "3".into(),
                max_duration_secs,
                bid_window_ms,
            },
        },
        offer: None,
    }
}
