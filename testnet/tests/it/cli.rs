//! `agora-testnet up` / `down` / `check` through the real binary: two
//! testnets at once do not collide, `down` leaves no process behind, and
//! `check` says so (and names a process that outlives it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agora_client::http::NodeClient;
use agora_testnet::{Manifest, pid_alive};

use agora_node::runtime::process::for_tests::providers_unsandboxed;

use crate::support::binaries;

fn agora_testnet(args: &[&str], dir: &Path, bin_dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agora-testnet"));
    command.args(args).arg("--dir").arg(dir);
    if args[0] == "up" {
        command.arg("--bin-dir").arg(bin_dir);
    }
    command.output().expect("cannot run agora-testnet")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pids(m: &Manifest) -> Vec<u32> {
    std::iter::once(m.chain.pid)
        .chain(m.nodes.iter().map(|n| n.pid))
        .collect()
}

/// Runs `agora-testnet down` on drop, so a failing test leaves nothing
/// running either.
struct Up {
    dir: PathBuf,
    bin_dir: PathBuf,
    manifest: Manifest,
}

impl Up {
    fn start(dir: &Path, bin_dir: &Path) -> Self {
        let mut args = vec!["up", "--providers", "1", "--requesters", "1", "--json"];
        if providers_unsandboxed() {
            args.push("--allow-unsandboxed");
        }
        let out = agora_testnet(&args, dir, bin_dir);
        // Whatever happened, a later drop stops what runs.
        let manifest = Manifest::load(dir);
        assert!(out.status.success(), "up failed: {}", text(&out));
        let printed: Manifest = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("up --json printed no manifest ({e}): {}", text(&out)));
        let manifest = manifest.expect("up wrote testnet.json");
        assert_eq!(printed, manifest);
        Self {
            dir: dir.to_owned(),
            bin_dir: bin_dir.to_owned(),
            manifest,
        }
    }

    fn down(&self) -> Output {
        agora_testnet(&["down"], &self.dir, &self.bin_dir)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_down_leave_nothing_behind_and_two_testnets_do_not_collide() {
    let bin_dir = binaries().agorad.parent().unwrap().to_owned();
    let root = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (root.path().join("a"), root.path().join("b"));
    let a = Up::start(&dir_a, &bin_dir);
    let b = Up::start(&dir_b, &bin_dir);

    // Everything runs, on ports of its own.
    for pid in pids(&a.manifest).into_iter().chain(pids(&b.manifest)) {
        assert!(pid_alive(pid), "pid {pid} is not running after up");
    }
    let mut endpoints = BTreeSet::new();
    for m in [&a.manifest, &b.manifest] {
        assert!(endpoints.insert(m.chain.url.clone()), "{m:#?}");
        for n in &m.nodes {
            assert!(endpoints.insert(n.api_url.clone()), "{n:#?}");
            for addr in &n.listen_addrs {
                assert!(addr.starts_with("/ip4/127.0.0.1/"), "{addr}");
                let port = addr.split('/').nth(4).unwrap_or_default().to_string();
                assert!(endpoints.insert(format!("tcp {port}")), "{addr} collides");
            }
        }
    }
    // Each node answers as itself.
    for m in [&a.manifest, &b.manifest] {
        for n in &m.nodes {
            let info = NodeClient::new(&n.api_url, Some(&n.token))
                .unwrap()
                .node_info()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", n.name));
            assert_eq!(info.peer_id, n.peer_id);
        }
    }

    // A second `up` on a running testnet is refused and starts nothing.
    let mut args = vec!["up", "--providers", "1"];
    if providers_unsandboxed() {
        args.push("--allow-unsandboxed");
    }
    let again = agora_testnet(&args, &dir_a, &bin_dir);
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds a running testnet"),
        "{}",
        text(&again)
    );
    assert_eq!(Manifest::load(&dir_a).unwrap(), a.manifest);

    // `check` reads A's books: nothing ran, nothing is wrong.
    let out = agora_testnet(&["check"], &dir_a, &bin_dir);
    assert!(out.status.success(), "check failed: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("every invariant holds"),
        "{}",
        text(&out)
    );

    // `down` on A stops all of A and nothing of B.
    let out = a.down();
    assert!(out.status.success(), "down failed: {}", text(&out));
    for pid in pids(&a.manifest) {
        assert!(
            !pid_alive(pid),
            "pid {pid} of A survived down: {}",
            text(&out)
        );
    }
    for pid in pids(&b.manifest) {
        assert!(pid_alive(pid), "pid {pid} of B died with A");
    }
    // Once more is harmless.
    let out = a.down();
    assert!(out.status.success(), "{}", text(&out));
    // On a stopped testnet `check` looks for leftovers: none, until a
    // process works in its directory.
    let out = agora_testnet(&["check"], &dir_a, &bin_dir);
    assert!(out.status.success(), "check failed: {}", text(&out));
    let mut stray = Command::new("sleep")
        .arg("30")
        .current_dir(&dir_a)
        .spawn()
        .unwrap();
    let out = agora_testnet(&["check"], &dir_a, &bin_dir);
    stray.kill().unwrap();
    stray.wait().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "no process left behind: pid {} still runs",
            stray.id()
        )),
        "{}",
        text(&out)
    );

    let out = b.down();
    assert!(out.status.success(), "down failed: {}", text(&out));
    for pid in pids(&b.manifest) {
        assert!(
            !pid_alive(pid),
            "pid {pid} of B survived down: {}",
            text(&out)
        );
    }
}

#[test]
fn down_without_a_testnet_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agora-testnet"))
        .args(["down", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no testnet in"),
        "{}",
        text(&out)
    );
}

#[test]
fn up_without_bubblewrap_stops_before_starting_anything_and_names_the_way_out() {
    let root = tempfile::tempdir().unwrap();
    let bins = binaries();
    let bin_dir = bins.agorad.parent().unwrap();
    let dir = root.path().join("net");
    // An empty PATH: no bwrap to find.
    let out = Command::new(env!("CARGO_BIN_EXE_agora-testnet"))
        .args(["up", "--providers", "1", "--requesters", "0", "--dir"])
        .arg(&dir)
        .arg("--bin-dir")
        .arg(bin_dir)
        .env("PATH", root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("apt-get install bubblewrap"),
        "{}",
        text(&out)
    );
    assert!(stderr.contains("--allow-unsandboxed"), "{}", text(&out));
    assert!(Manifest::load(&dir).is_err(), "nothing was started");
}
