//! Providers backed by a real Ray cluster. `.ci/run` installs a pinned
//! `ray[default]`, starts a local head bound to loopback, and exports
//! `AGORA_RAY_DASHBOARD` (that head) and `AGORA_RAY_BIN` (its `ray`).
//! Without them these tests say so and skip, except under `CI=true`,
//! where they fail: CI must run them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use agora_client::api::{JobState, SubmitJob};
use agora_protocol::Amount;
use agora_testnet::{RayProvider, Testnet, TestnetConfig};

use crate::faults::{assert_closed, lease_id, log, output, provider_run, terminal};
use crate::support::{DEADLINE, POLL, binaries, fund, spec, wait_for_offers, wait_job};

/// The variable `name`, or `None` after saying why the test skips; under
/// `CI=true` a missing variable fails the test.
fn ray_env(name: &str) -> Option<String> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(value);
    }
    agora_node::runtime::process::for_tests::skip(&format!(
        "{name} is not set, so there is no Ray to test against; run .ci/run, or install \
         ray[default] and export AGORA_RAY_DASHBOARD=http://127.0.0.1:8265 and \
         AGORA_RAY_BIN=$(command -v ray) after `ray start --head`"
    ));
    None
}

/// One Ray-backed provider and one requester.
async fn ray_testnet(dashboard: &str, head_timeout_secs: u64) -> (tempfile::TempDir, Testnet) {
    let bins = binaries();
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestnetConfig::new(dir.path().join("net"), 1, 1);
    config.bin_dir = bins.agorad.parent().map(PathBuf::from);
    config.node.ray = Some(RayProvider {
        dashboard: dashboard.to_owned(),
        head_timeout_secs,
    });
    let net = Testnet::start(config)
        .await
        .unwrap_or_else(|e| panic!("the Ray testnet did not start: {e}"));
    (dir, net)
}

/// A Ray job running Python `code`, for at most `max_secs`.
fn python_job(name: &str, code: &str, max_secs: u64) -> SubmitJob {
    let mut spec = spec(name);
    spec.runtime = "ray".into();
    spec.command = vec!["python3".into(), "-u".into(), "-c".into(), code.into()];
    spec.market.max_duration_secs = max_secs;
    spec.market.bid_window_ms = 500;
    SubmitJob { spec, offer: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ray_provider_runs_a_job_on_ray_and_is_paid() {
    let Some(dashboard) = ray_env("AGORA_RAY_DASHBOARD") else {
        return;
    };
    let (_dir, net) = ray_testnet(&dashboard, 20).await;
    let client = net.client("requester-0").unwrap();
    fund(&client).await;
    let offers = wait_for_offers(&net, "requester-0").await;
    assert!(
        offers
            .iter()
            .any(|o| o.runtimes.contains(&"ray".to_string())),
        "{offers:#?}"
    );
    let before = client.balance().await.unwrap().balance;
    let code = "import os, time\n\
                for i in range(3):\n    print('ray line', i); time.sleep(1)\n\
                open(os.path.join(os.environ['AGORA_OUTPUT'], 'result.txt'), 'w').write('from ray\\n')\n\
                print('gpus', os.environ.get('CUDA_VISIBLE_DEVICES'))\n";
    let id = client
        .submit_job(&python_job("on-ray", code, 120))
        .await
        .unwrap()
        .id;
    let job = terminal(&net, &id).await;
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{job:#?}\n{}",
        net.log_tails(40)
    );
    assert_eq!(job.exit_code, Some(0));
    // The requester followed the log as Ray wrote it.
    let entries = log(&net, &id).await;
    let text = output(&entries);
    assert_eq!(text.matches("ray line ").count(), 3, "{entries:#?}");
    // Ray, not Agora, chose the GPU it runs on.
    assert!(text.contains("gpus 0") || text.contains("gpus 1"), "{text}");
    for pair in entries.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "gap-free log");
    }
    // The output came back whole.
    assert!(job.results_fetched, "{job:#?}");
    assert_eq!(job.outputs.len(), 1, "{job:#?}");
    assert_eq!(job.outputs[0].path, "result.txt");
    let expected = blake3::hash(b"from ray\n").to_hex().to_string();
    assert_eq!(job.outputs[0].blake3, expected);
    let node = net.node("requester-0").unwrap();
    let fetched = Path::new(&node.data_dir)
        .join("results")
        .join(&id)
        .join("result.txt");
    let bytes = std::fs::read(&fetched).unwrap_or_else(|e| panic!("{}: {e}", fetched.display()));
    assert_eq!(blake3::hash(&bytes).to_hex().to_string(), expected);
    // Settlement as for any runtime.
    let receipt = job.receipt.clone().unwrap();
    assert!(receipt.is_final && receipt.gpu_seconds >= 3, "{receipt:#?}");
    assert_closed(&net, &lease_id(&job), receipt.amount).await;
    let after = client.balance().await.unwrap().balance;
    assert_eq!(after.0, before.0 - receipt.amount.0);
    let run = provider_run(&net, &lease_id(&job), "closed", |r| r.closed).await;
    assert_eq!(run.settled, receipt.amount);
    assert!(run.settled > Amount::ZERO);
    let status = net
        .client("provider-0")
        .unwrap()
        .provider_status()
        .await
        .unwrap();
    assert_eq!(status.runtime_unavailable, None);
    assert!(!status.gpus.is_empty());
    net.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fails_on_ray_carries_rays_reason_and_pays_its_time() {
    let Some(dashboard) = ray_env("AGORA_RAY_DASHBOARD") else {
        return;
    };
    let (_dir, net) = ray_testnet(&dashboard, 20).await;
    let client = net.client("requester-0").unwrap();
    fund(&client).await;
    wait_for_offers(&net, "requester-0").await;
    let code = "import sys, time\nprint('about to fail'); time.sleep(2); sys.exit(3)\n";
    let id = client
        .submit_job(&python_job("fails-on-ray", code, 120))
        .await
        .unwrap()
        .id;
    let job = terminal(&net, &id).await;
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    assert_eq!(job.exit_code, Some(3));
    let entries = log(&net, &id).await;
    assert!(output(&entries).contains("about to fail"), "{entries:#?}");
    // Ray's own words reach the job's events.
    let ended = entries
        .iter()
        .rev()
        .find(|e| e.event.as_deref() == Some("exited"))
        .unwrap_or_else(|| panic!("no exit event: {entries:#?}"));
    assert!(
        ended
            .text
            .contains("Ray: Job entrypoint command failed with exit code 3"),
        "{ended:#?}"
    );
    let receipt = job.receipt.clone().unwrap();
    assert!(receipt.is_final && receipt.exit_status == Some(3));
    assert!(receipt.amount > Amount::ZERO);
    assert_closed(&net, &lease_id(&job), receipt.amount).await;
    net.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_ray_head_mid_job_fails_it_with_a_reason_and_pays_countersigned_time() {
    let Some(ray) = ray_env("AGORA_RAY_BIN") else {
        return;
    };
    let head = PrivateHead::start(Path::new(&ray));
    let (_dir, net) = ray_testnet(&head.dashboard, 4).await;
    let client = net.client("requester-0").unwrap();
    fund(&client).await;
    wait_for_offers(&net, "requester-0").await;
    let code = "import time\nfor i in range(300):\n    print('tick', i); time.sleep(1)\n";
    let id = client
        .submit_job(&python_job("head-dies", code, 300))
        .await
        .unwrap()
        .id;
    let job = wait_job(
        &net,
        "requester-0",
        &id,
        "two countersigned receipts",
        |j| j.receipt.as_ref().is_some_and(|r| r.sequence >= 2),
    )
    .await;
    let lease = lease_id(&job);
    head.kill();

    let run = provider_run(&net, &lease, "ended", |r| r.state == "ended").await;
    let reason = run.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("Ray head") && reason.contains(&head.dashboard),
        "{run:#?}"
    );
    let done = terminal(&net, &id).await;
    assert_eq!(done.state, JobState::Failed, "{done:#?}");
    assert!(
        done.reason
            .as_deref()
            .unwrap_or_default()
            .contains("Ray head"),
        "{done:#?}"
    );
    // Paid exactly the last receipt the requester countersigned.
    let run = provider_run(&net, &lease, "closed", |r| r.closed).await;
    let receipt = run.receipt.clone().unwrap();
    assert_eq!(run.settled, receipt.amount, "{run:#?}");
    assert!(run.settled > Amount::ZERO);
    assert_closed(&net, &lease, receipt.amount).await;
    // The provider says its runtime is down, and offers nothing.
    let provider = net.client("provider-0").unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = provider.provider_status().await.unwrap();
        if let Some(why) = &status.runtime_unavailable {
            assert!(why.contains(&head.dashboard), "{why}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the provider never reported its Ray head down: {status:#?}"
        );
        tokio::time::sleep(POLL).await;
    }
    net.down().await.unwrap();
}

/// A Ray head of the test's own, on free loopback ports and its own temp
/// dir, so that killing it leaves CI's head alone.
struct PrivateHead {
    dashboard: String,
    temp_dir: PathBuf,
}

impl PrivateHead {
    fn start(ray: &Path) -> Self {
        let temp_dir = PathBuf::from(format!(
            "/tmp/agora-ray-{}-{}",
            std::process::id(),
            free_port()
        ));
        let dashboard_port = free_port();
        let args = [
            "start".to_string(),
            "--head".into(),
            "--node-ip-address=127.0.0.1".into(),
            "--dashboard-host=127.0.0.1".into(),
            format!("--port={}", free_port()),
            format!("--dashboard-port={dashboard_port}"),
            format!("--ray-client-server-port={}", free_port()),
            format!("--dashboard-agent-listen-port={}", free_port()),
            "--num-gpus=1".into(),
            "--num-cpus=1".into(),
            "--disable-usage-stats".into(),
            format!("--temp-dir={}", temp_dir.display()),
        ];
        let head = Self {
            dashboard: format!("http://127.0.0.1:{dashboard_port}"),
            temp_dir,
        };
        let out = std::process::Command::new(ray)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", ray.display()));
        assert!(
            out.status.success(),
            "ray start failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        head
    }

    /// SIGKILLs every process of this head (those naming its temp dir)
    /// and their descendants: the head dies without a word.
    fn kill(&self) {
        let needle = self.temp_dir.to_string_lossy().into_owned();
        let procs = processes();
        let mut doomed: Vec<u32> = procs
            .iter()
            .filter(|p| p.cmdline.contains(&needle))
            .map(|p| p.pid)
            .collect();
        let mut i = 0;
        while i < doomed.len() {
            let parent = doomed[i];
            for p in &procs {
                if p.ppid == parent && !doomed.contains(&p.pid) {
                    doomed.push(p.pid);
                }
            }
            i += 1;
        }
        for pid in doomed {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

impl Drop for PrivateHead {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.temp_dir);
    }
}

struct Proc {
    pid: u32,
    ppid: u32,
    cmdline: String,
}

/// Every process this user can see: id, parent, command line.
fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        // ppid is the 2nd field after the parenthesised command name.
        let ppid = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
            })
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        out.push(Proc { pid, ppid, cmdline });
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
