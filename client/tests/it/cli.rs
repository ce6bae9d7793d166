//! The `agora` binary against the fake node: output, exit codes, and the
//! `agora: <message>` error line.

use std::path::Path;
use std::process::Output;

use agora_protocol::Amount;

use crate::fake_node::{FakeNode, TOKEN, key};

const SPEC: &str = r#"
name = "train"
command = ["python3", "train.py"]

[resources]
gpus = 1
gpu_model = "H100"

[constraints]
region = "EU"

[market]
max_price_per_gpu_hour = "2.5"
max_duration_secs = 600
"#;

/// Runs `agora` with the node URL and `args`; the environment's
/// AGORA_NODE/AGORA_TOKEN are removed so only the arguments count.
pub(crate) async fn agora(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_agora"))
        .env_remove("AGORA_NODE")
        .env_remove("AGORA_TOKEN")
        .arg("--node")
        .arg(url)
        .args(args)
        .output()
        .await
        .unwrap()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn write_spec(dir: &Path) -> String {
    let path = dir.join("job.toml");
    std::fs::write(&path, SPEC).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn submit_follows_the_job_and_exits_1_listing_every_decline() {
    let (_node, url) = FakeNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path());
    let out = agora(&url, &["--token", TOKEN, "job", "submit", &spec]).await;
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // Progress on stderr, one line per state.
    assert!(stderr.contains("job j1: bidding\n"), "{stderr}");
    assert!(stderr.contains("job j1: no bids"), "{stderr}");
    // The error line names every provider's reason.
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("agora: job j1 got no bids: "), "{last}");
    assert!(
        last.contains(&format!("{} region", key(1).short())),
        "{last}"
    );
    assert!(
        last.contains(&format!("{} price (floor 3 AGR)", key(2).short())),
        "{last}"
    );
    // The job itself on stdout, declines table included.
    assert!(stdout.contains("no bids"), "{stdout}");
    assert!(stdout.contains("declines (2)"), "{stdout}");
    assert!(stdout.contains("offers US, order wants EU"), "{stdout}");
}

#[tokio::test]
async fn the_instant_path_exits_0_with_the_lease() {
    let (_node, url) = FakeNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path());
    let out = agora(
        &url,
        &["--token", TOKEN, "job", "submit", &spec, "--offer", "0ffe7"],
    )
    .await;
    let stdout = stdout(&out);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("state      leased"), "{stdout}");
    assert!(stdout.contains("0.333334 AGR (locked)"), "{stdout}");
}

#[tokio::test]
async fn json_prints_the_api_answer() {
    let (_node, url) = FakeNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path());
    let out = agora(
        &url,
        &[
            "--token",
            TOKEN,
            "--json",
            "job",
            "submit",
            &spec,
            "--no-wait",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["id"], "j1");
    assert_eq!(job["state"], "bidding");
    assert_eq!(job["spec"]["resources"]["gpu_model"], "H100");
}

#[tokio::test]
async fn deposit_parses_agr_and_prints_the_balance() {
    let (node, url) = FakeNode::start().await;
    let out = agora(&url, &["--token", TOKEN, "ledger", "deposit", "2.5"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(node.deposits(), [Amount(2_500_000)]);
    assert!(
        stdout(&out).contains("balance  2.5 AGR"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn a_wrong_token_exits_1_with_one_clear_line() {
    let (node, url) = FakeNode::start().await;
    let out = agora(&url, &["--token", "wrong", "node", "info"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr(&out);
    assert!(stderr.starts_with("agora: "), "{stderr}");
    assert!(stderr.contains("AGORA_TOKEN"), "{stderr}");
    assert!(stdout(&out).is_empty());
    assert_eq!(node.authorized_requests(), 0);
}

#[tokio::test]
async fn the_token_may_come_from_the_environment() {
    let (_node, url) = FakeNode::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_agora"))
        .env("AGORA_NODE", &url)
        .env("AGORA_TOKEN", TOKEN)
        .args(["node", "info"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("12D3KooWFake"), "{}", stdout(&out));
}

#[tokio::test]
async fn a_bad_query_shows_the_nodes_message() {
    let (_node, url) = FakeNode::start().await;
    let out = agora(&url, &["--token", TOKEN, "offers", "search", "gpux=H100"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr(&out);
    assert!(
        stderr.starts_with("agora: unknown column 'gpux' (at gpux"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_usage_error_exits_2() {
    let out = agora("http://127.0.0.1:9", &["ledger", "deposit", "lots"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("lots"), "{}", stderr(&out));
}
