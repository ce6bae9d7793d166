//! A short chaos run through the library: providers, the requester and
//! the chain killed with SIGKILL at random while jobs run, then every
//! invariant checked on the chain and in every node. The long soak is
//! `.ci/run`'s `agora-testnet up --chaos` step; this one keeps the module
//! honest under `cargo test`. `AGORA_CHAOS_SEED` repeats a run.

use std::path::PathBuf;
use std::time::Duration;

use agora_node::runtime::process::for_tests::providers_unsandboxed;
use agora_testnet::chaos::{self, ChaosConfig, Secs};
use agora_testnet::{Testnet, TestnetConfig};

use crate::support::binaries;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_run_keeps_every_invariant() {
    let seed = std::env::var("AGORA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let bins = binaries();
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestnetConfig::new(dir.path().join("net"), 2, 1);
    config.bin_dir = bins.agorad.parent().map(PathBuf::from);
    config.node.allow_unsandboxed = providers_unsandboxed();
    let net = Testnet::start(config)
        .await
        .unwrap_or_else(|e| panic!("the testnet did not start: {e}"));
    let config = ChaosConfig {
        seed,
        duration: Duration::from_secs(25),
        every: Secs::new(2.0, 4.0),
        down: Secs::new(0.5, 2.0),
        jobs_every: Secs::new(0.5, 1.5),
        job_secs: Secs::new(1.0, 5.0),
        max_job_secs: 20,
        drain: Duration::from_secs(90),
        ..ChaosConfig::default()
    };
    let mut say = |line: &str| eprintln!("{line}");
    let report = chaos::run(net, &config, &mut say)
        .await
        .unwrap_or_else(|e| panic!("chaos seed {seed}: {e}"));
    eprintln!("{}", report.summary());
    assert!(
        report.survived(),
        "chaos seed {seed} (AGORA_CHAOS_SEED={seed} repeats it):\n{}",
        report.summary()
    );
    assert!(
        report.kills.values().sum::<u64>() >= 3,
        "{}",
        report.summary()
    );
    assert!(report.submitted >= 5, "{}", report.summary());
    assert!(report.checked.escrows >= 1, "{}", report.summary());
}
