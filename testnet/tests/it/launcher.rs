//! The launcher itself, with a stand-in `agorad` (a shell script that
//! writes `node.json` and waits) next to the real mock chain: start order,
//! bootstrap, configs, `testnet.json`, stop, kill, restart, down, drop.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_client::api::Role;
use agora_protocol::Keypair;
use agora_testnet::{Manifest, Testnet, TestnetConfig, TestnetError, pid_alive};

use crate::support::binaries;

/// A bin dir with the real mock chain and a fake `agorad` that runs
/// `behaviour` (a shell snippet) after recording its arguments.
fn fake_bin_dir(root: &Path, behaviour: &str) -> PathBuf {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&binaries().mock_chain, bin.join("agora-mock-chain")).unwrap();
    let account = Keypair::from_seed(&[9; 32]).public();
    let script = format!(
        r#"#!/bin/sh
data=""; role=""; prev=""
for a in "$@"; do
  [ "$prev" = "--data" ] && data="$a"
  [ "$a" = provider ] || [ "$a" = requester ] && role="$a"
  prev="$a"
done
printf '%s\n' "$@" > "$data/args"
echo "fake agorad $role in $data"
{behaviour}
port=$((20000 + $$ % 20000))
printf 'token-%s\n' $$ > "$data/api.token"
printf '{{"peer_id":"fake-%s","account":"{account}","role":"%s","api_url":"http://127.0.0.1:%s","listen_addrs":["/ip4/127.0.0.1/tcp/%s/p2p/fake-%s"],"pid":%s}}' \
  $$ "$role" $port $port $$ $$ > "$data/node.json.tmp"
mv "$data/node.json.tmp" "$data/node.json"
# Keep this pid, and a command line that names the data dir.
exec tail -f "$data/args"
"#
    );
    let agorad = bin.join("agorad");
    std::fs::write(&agorad, script).unwrap();
    std::fs::set_permissions(&agorad, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn config(root: &Path, bin: PathBuf, providers: usize, requesters: usize) -> TestnetConfig {
    let mut config = TestnetConfig::new(root.join("net"), providers, requesters);
    config.bin_dir = Some(bin);
    config.rust_log = "warn".into();
    config
}

fn args(data_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(data_dir.join("args"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn flag_values(args: &[String], flag: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].clone())
        .collect()
}

#[tokio::test]
async fn nodes_start_after_the_first_and_bootstrap_from_it() {
    let root = tempfile::tempdir().unwrap();
    let bin = fake_bin_dir(root.path(), "");
    let mut net = Testnet::start(config(root.path(), bin, 2, 1))
        .await
        .unwrap();
    let manifest = Manifest::load(net.dir()).unwrap();
    assert_eq!(manifest, net.manifest());
    let names: Vec<_> = manifest.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["provider-0", "provider-1", "requester-0"]);
    assert_eq!(manifest.with_role(Role::Provider).count(), 2);
    assert!(manifest.chain.url.starts_with("http://127.0.0.1:"));
    assert!(pid_alive(manifest.chain.pid));

    let first = &manifest.nodes[0];
    for node in &manifest.nodes {
        let args = args(&node.data_dir);
        let role = if node.role == Role::Provider {
            "provider"
        } else {
            "requester"
        };
        assert_eq!(
            args[..3],
            [
                "--data".to_string(),
                node.data_dir.display().to_string(),
                role.into()
            ]
        );
        assert_eq!(flag_values(&args, "--api"), ["127.0.0.1:0"]);
        assert_eq!(flag_values(&args, "--listen"), ["/ip4/127.0.0.1/tcp/0"]);
        assert_eq!(
            flag_values(&args, "--ledger"),
            std::slice::from_ref(&manifest.chain.url)
        );
        assert_eq!(
            flag_values(&args, "--config"),
            [node.config.display().to_string()]
        );
        assert!(!args.iter().any(|a| a.contains("mdns")));
        let expected = if node.name == first.name {
            vec![]
        } else {
            first.listen_addrs.clone()
        };
        assert_eq!(flag_values(&args, "--bootstrap"), expected, "{}", node.name);
        assert_eq!(node.token, format!("token-{}", node.pid));
        assert_eq!(node.log, node.data_dir.join("log"));
        let config = std::fs::read_to_string(&node.config).unwrap();
        assert!(config.contains("offer_refresh_secs = 2"), "{config}");
        assert!(config.contains("receipt_interval_secs = 2"), "{config}");
        assert_eq!(
            config.contains("[[simulated_gpu]]"),
            node.role == Role::Provider
        );
    }
    assert!(
        std::fs::read_to_string(&manifest.nodes[1].config)
            .unwrap()
            .contains("\"A100\"")
    );

    // Restarting the first node: same data and config, a new process,
    // bootstrapped from a node that runs.
    let old = manifest.nodes[0].clone();
    let new = net.restart("provider-0").await.unwrap().clone();
    assert_ne!(new.pid, old.pid);
    assert!(!pid_alive(old.pid));
    assert_eq!((&new.data_dir, &new.config), (&old.data_dir, &old.config));
    assert_eq!(
        flag_values(&args(&new.data_dir), "--bootstrap"),
        manifest.nodes[1].listen_addrs
    );
    assert_eq!(Manifest::load(net.dir()).unwrap().nodes[0], new);
    assert!(
        net.log_tail("provider-0", 100)
            .matches("starting provider-0")
            .count()
            == 2
    );

    // Kill and stop.
    net.kill("provider-1").await.unwrap();
    assert!(!pid_alive(manifest.nodes[1].pid));
    assert!(!net.is_running("provider-1").unwrap());
    assert!(matches!(
        net.client("provider-1"),
        Err(TestnetError::NotRunning { .. })
    ));
    net.stop("requester-0").await.unwrap();
    assert!(!pid_alive(manifest.nodes[2].pid));
    assert!(matches!(
        net.stop("nobody").await,
        Err(TestnetError::UnknownNode { .. })
    ));

    let running: Vec<u32> = net.running().into_iter().map(|(_, pid)| pid).collect();
    assert_eq!(running, [manifest.chain.pid, new.pid]);
    net.down().await.unwrap();
    assert!(!pid_alive(manifest.chain.pid) && !pid_alive(new.pid));
}

#[tokio::test]
async fn dropping_a_testnet_kills_everything() {
    let root = tempfile::tempdir().unwrap();
    let bin = fake_bin_dir(root.path(), "");
    let net = Testnet::start(config(root.path(), bin, 1, 1))
        .await
        .unwrap();
    let manifest = net.manifest();
    drop(net);
    assert!(!pid_alive(manifest.chain.pid));
    for node in &manifest.nodes {
        assert!(!pid_alive(node.pid), "{} survived the drop", node.name);
    }
}

#[tokio::test]
async fn a_detached_testnet_is_stopped_from_its_directory() {
    let root = tempfile::tempdir().unwrap();
    let bin = fake_bin_dir(root.path(), "");
    let mut config = config(root.path(), bin.clone(), 1, 1);
    config.detach = true;
    let manifest = Testnet::start(config.clone()).await.unwrap().detach();
    assert!(pid_alive(manifest.chain.pid) && manifest.nodes.iter().all(|n| pid_alive(n.pid)));

    // Its directory is taken while it runs.
    let err = Testnet::start(config.clone()).await.unwrap_err();
    assert!(matches!(err, TestnetError::AlreadyRunning { .. }), "{err}");

    let mut again = Testnet::from_dir(&manifest.dir).unwrap();
    assert_eq!(again.running().len(), 3);
    again.down().await.unwrap();
    assert!(!pid_alive(manifest.chain.pid));
    assert!(manifest.nodes.iter().all(|n| !pid_alive(n.pid)));
    assert!(
        Testnet::from_dir(&manifest.dir)
            .unwrap()
            .running()
            .is_empty()
    );

    // Once stopped, the directory can hold the testnet again.
    let net = Testnet::start(config).await.unwrap();
    assert_eq!(net.nodes().len(), 2);
    net.down().await.unwrap();
}

#[tokio::test]
async fn a_node_that_dies_before_it_is_ready_is_reported_with_its_log() {
    let root = tempfile::tempdir().unwrap();
    let bin = fake_bin_dir(
        root.path(),
        "echo 'error: no ledger at that URL' >&2; exit 3",
    );
    let err = Testnet::start(config(root.path(), bin, 1, 0))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TestnetError::Died { .. }), "{text}");
    assert!(
        text.contains("provider-0") && text.contains("exit status: 3"),
        "{text}"
    );
    assert!(text.contains("error: no ledger at that URL"), "{text}");
}

#[tokio::test]
async fn a_node_that_never_gets_ready_times_out_with_its_log() {
    let root = tempfile::tempdir().unwrap();
    let bin = fake_bin_dir(
        root.path(),
        "echo 'stuck dialing'; exec tail -f \"$data/args\"",
    );
    let mut config = config(root.path(), bin, 1, 0);
    config.ready_timeout = Duration::from_secs(2);
    let err = Testnet::start(config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TestnetError::NotReady { .. }), "{text}");
    assert!(
        text.contains("node.json") && text.contains("stuck dialing"),
        "{text}"
    );
}

#[tokio::test]
async fn a_directory_of_something_else_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("net");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let err = Testnet::start(TestnetConfig::new(&dir, 1, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, TestnetError::NotATestnetDir { .. }), "{err}");
    let err = Testnet::start(TestnetConfig::new(root.path().join("x"), 0, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, TestnetError::NoNodes), "{err}");
}
