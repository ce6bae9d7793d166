//! Shared helpers: binaries, testnets, funding, polling with deadlines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agora_client::api::{
    Constraints, JobSpec, JobView, MarketTerms, OfferView, Resources, SubmitJob,
};
use agora_client::http::NodeClient;
use agora_node::runtime::process::for_tests::{providers_unsandboxed, skip};
use agora_protocol::Amount;
use agora_testnet::{Binaries, LedgerBackend, Testnet, TestnetConfig};

/// How long any poll waits before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Between polls.
pub const POLL: Duration = Duration::from_millis(200);

/// `agorad` and `agora-mock-chain`, built first if they are missing or
/// older than the sources they are built from (`cargo test -p
/// agora-testnet` alone does not rebuild another package's binaries).
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        if let Ok(bins) = Binaries::locate(None)
            && !stale(&bins.agorad, AGORAD_SOURCES)
            && !stale(&bins.mock_chain, CHAIN_SOURCES)
        {
            return bins;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "agora-node", "-p", "agora-contracts-mock"]);
        // This test runs as TARGET/PROFILE/deps/it-HASH: build into the same
        // TARGET (also when run without cargo, which would not say where).
        let exe = std::env::current_exe().unwrap_or_default();
        if exe.parent().and_then(Path::file_name) == Some("deps".as_ref())
            && let Some(target) = exe.ancestors().nth(3)
        {
            build.arg("--target-dir").arg(target);
        }
        if exe.components().any(|c| c.as_os_str() == "release") {
            build.arg("--release");
        }
        eprintln!("building agorad and agora-mock-chain: {build:?}");
        let status = build
            .status()
            .expect("cannot run cargo to build the binaries");
        assert!(
            status.success(),
            "building agorad and agora-mock-chain failed"
        );
        Binaries::locate(None).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// What `agorad` is built from.
const AGORAD_SOURCES: &[&str] = &[
    "proto",
    "protocol",
    "contracts-mock/src",
    "node/src",
    "node/assets",
    "client/src",
];
/// What `agora-mock-chain` is built from.
const CHAIN_SOURCES: &[&str] = &["proto", "protocol", "contracts-mock/src"];

/// Whether a file under `sources` (workspace directories) is newer than
/// `binary`.
fn stale(binary: &Path, sources: &[&str]) -> bool {
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return true;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = sources.iter().map(|d| root.join(d)).collect();
    let mut newest = None;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if let Ok(modified) = meta.modified() {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest.is_some_and(|newest| newest > built)
}

/// A started testnet of `providers` + `requesters` in a temp dir (kept
/// alive by the returned guard).
pub async fn testnet(providers: usize, requesters: usize) -> (tempfile::TempDir, Testnet) {
    testnet_on(LedgerBackend::Mock, providers, requesters)
        .await
        .expect("the mock chain needs nothing installed")
}

/// A testnet on `ledger`; `None` (after saying why) when its chain cannot
/// run here outside CI: anvil is not installed.
pub async fn testnet_on(
    ledger: LedgerBackend,
    providers: usize,
    requesters: usize,
) -> Option<(tempfile::TempDir, Testnet)> {
    if ledger == LedgerBackend::Evm && agora_contracts_evm::anvil::binary().is_none() {
        skip("anvil is not installed: run `npm ci --prefix contracts-evm`");
        return None;
    }
    let bins = binaries();
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestnetConfig::new(dir.path().join("net"), providers, requesters);
    config.ledger = ledger;
    config.bin_dir = bins.agorad.parent().map(PathBuf::from);
    // Without bubblewrap (and not in CI) the providers run jobs
    // unsandboxed: these tests are about the market; the sandbox's own
    // test skips.
    config.node.allow_unsandboxed = providers_unsandboxed();
    let net = Testnet::start(config)
        .await
        .unwrap_or_else(|e| panic!("the testnet did not start: {e}"));
    Some((dir, net))
}

/// Deposits 1000 AGR to the node behind `client`.
pub async fn fund(client: &NodeClient) {
    let before = client.balance().await.unwrap().balance;
    let after = client.deposit(Amount(1_000_000_000)).await.unwrap().balance;
    assert_eq!(after.0, before.0 + 1_000_000_000);
}

/// Polls `requester`'s book until it holds an offer of every provider;
/// returns the whole book.
pub async fn wait_for_offers(net: &Testnet, requester: &str) -> Vec<OfferView> {
    let client = net.client(requester).unwrap();
    let want: Vec<_> = net.providers().iter().map(|p| p.account).collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let page = client.search_offers("", Some(1000)).await;
        if let Ok(page) = &page
            && want
                .iter()
                .all(|acct| page.offers.iter().any(|o| o.provider == *acct))
        {
            return page.offers.clone();
        }
        if Instant::now() >= deadline {
            panic!(
                "{requester} did not see an offer of every provider within {DEADLINE:?}; \
                 last answer: {page:#?}\n{}",
                net.log_tails(30)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls a job on `node` until `done` holds.
pub async fn wait_job(
    net: &Testnet,
    node: &str,
    id: &str,
    what: &str,
    done: impl Fn(&JobView) -> bool,
) -> JobView {
    let client = net.client(node).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let job = client.job(id).await;
        if let Ok(job) = &job
            && done(job)
        {
            return job.clone();
        }
        if Instant::now() >= deadline {
            panic!(
                "job {id} on {node}: {what} did not happen within {DEADLINE:?}; \
                 last view: {job:#?}\n{}",
                net.log_tails(30)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls a job until its lease is funded, or it ended without one.
pub async fn wait_placed(net: &Testnet, node: &str, id: &str) -> JobView {
    wait_job(net, node, id, "a funded lease or an end", |j| {
        j.lease.as_ref().is_some_and(|l| l.escrow_locked) || j.state.is_terminal()
    })
    .await
}

/// A one-GPU job on simulated GPUs at up to 10 AGR per GPU-hour for ten
/// minutes, with a 5 s bid window; tests adjust what they need.
pub fn spec(name: &str) -> JobSpec {
    JobSpec {
        name: Some(name.to_string()),
        runtime: "process".into(),
        command: vec!["true".into()],
        env: Default::default(),
        inputs: Vec::new(),
        resources: Resources {
            gpus: 1,
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
            ..Constraints::default()
        },
        market: MarketTerms {
            max_price_per_gpu_hour: "10".into(),
            max_duration_secs: 600,
            bid_window_ms: 5000,
        },
    }
}

/// Submits `spec` to `node` through the auction (or on the instant path
/// with `offer`).
pub async fn submit(net: &Testnet, node: &str, spec: JobSpec, offer: Option<String>) -> JobView {
    net.client(node)
        .unwrap()
        .submit_job(&SubmitJob { spec, offer })
        .await
        .unwrap_or_else(|e| panic!("submit on {node}: {e}\n{}", net.log_tails(30)))
}
