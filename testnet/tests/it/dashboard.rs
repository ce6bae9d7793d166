//! The dashboard: its files answer without the token (and only they do),
//! and in real headless Chromium (Debian's `chromium`, driven by
//! `testnet/dashboard/dashboard.test.mjs` through playwright-core) it signs
//! in, follows a job from `bidding` to `succeeded`, and shows the
//! provider's all-time earnings equal to what the ledger paid. Screenshots
//! go to `target/dashboard/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agora_client::api::JobState;
use agora_client::sse::SseParser;
use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{fund, spec, submit, testnet, wait_for_offers, wait_job};

/// The longest the browser script may take in all.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_files_need_no_token_and_its_data_does() {
    let (_dir, mut net) = testnet(1, 0).await;
    let node = net.node("provider-0").unwrap().clone();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
        ("/dashboard/icon.svg", "image/svg+xml"),
    ] {
        let answer = http
            .get(format!("{}{path}", node.api_url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let csp = header("content-security-policy");
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    }
    // Everything with data still needs the token, the event stream too.
    for path in [
        "/v1/node",
        "/v1/events",
        "/v1/provider",
        "/v1/jobs",
        "/nope",
    ] {
        let answer = http
            .get(format!("{}{path}", node.api_url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{path}");
    }

    // With the token, the stream starts with every part of the node.
    let answer = http
        .get(format!("{}/v1/events", node.api_url))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(
        answer
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    );
    let mut parser = SseParser::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut answer = answer;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(seen.contains("node") && seen.contains("jobs") && seen.contains("provider")) {
        assert!(Instant::now() < deadline, "parts seen: {seen:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(10), answer.chunk())
            .await
            .expect("the event stream went silent")
            .unwrap()
            .expect("the event stream ended");
        let mut events = Vec::new();
        parser.push(&chunk, &mut events).unwrap();
        for event in events {
            let value: serde_json::Value = serde_json::from_str(&event.data)
                .unwrap_or_else(|e| panic!("{}: {e}: {}", event.event, event.data));
            if event.event == "provider" {
                assert!(value["gpus"]["total"].as_u64().unwrap() > 0, "{value}");
            }
            seen.insert(event.event);
        }
    }

    // An open stream does not hold the node up: stopped gracefully, it
    // ends the stream with the body's proper end (a node killed after
    // the stop timeout would cut it off mid-body).
    net.stop("provider-0").await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), answer.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("the event stream was cut off, not ended: {e}"),
            Err(_) => panic!("the event stream outlived its node"),
        }
    }
}

/// What the browser test needs and is missing: the browser, node, and
/// playwright-core in `testnet/dashboard/node_modules`.
fn missing(chromium: &Path, script_dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push(format!("{} (apt-get install chromium)", chromium.display()));
    }
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("node (apt-get install nodejs npm)".into());
    }
    let module = script_dir.join("node_modules/playwright-core/package.json");
    if !module.is_file() {
        missing.push(format!(
            "{} (cd testnet/dashboard && npm ci)",
            module.display()
        ));
    }
    missing
}

/// `target/dashboard/` of the target dir this test runs from.
fn shots_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let target = if exe.parent().and_then(Path::file_name) == Some("deps".as_ref()) {
        exe.ancestors().nth(3).map(PathBuf::from)
    } else {
        None
    };
    target
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("dashboard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_follows_a_job_and_shows_the_ledgers_earnings() {
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    let chromium = std::env::var_os("AGORA_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let missing = missing(&chromium, &script_dir);
    if !missing.is_empty() {
        agora_node::runtime::process::for_tests::skip(&format!("missing {}", missing.join(", ")));
        return;
    }

    let (_dir, net) = testnet(1, 1).await;
    let requester = net.node("requester-0").unwrap().clone();
    let provider = net.node("provider-0").unwrap().clone();
    let requester_client = net.client("requester-0").unwrap();
    let provider_client = net.client("provider-0").unwrap();
    fund(&requester_client).await;
    wait_for_offers(&net, "requester-0").await;
    let provider_before = provider_client.balance().await.unwrap().balance;

    let shots = shots_dir();
    // No screenshot of an earlier run stays behind.
    let _ = std::fs::remove_dir_all(&shots);
    let started = Instant::now();
    let mut script = tokio::process::Command::new("node")
        .arg("dashboard.test.mjs")
        .current_dir(&script_dir)
        .env("AGORA_DASHBOARD_REQUESTER_URL", &requester.api_url)
        .env("AGORA_DASHBOARD_REQUESTER_TOKEN", &requester.token)
        .env("AGORA_DASHBOARD_PROVIDER_URL", &provider.api_url)
        .env("AGORA_DASHBOARD_PROVIDER_TOKEN", &provider.token)
        .env("AGORA_DASHBOARD_SHOTS", &shots)
        .env("AGORA_CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start node");
    let mut to_script = script.stdin.take().unwrap();
    let mut from_script = BufReader::new(script.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + SCRIPT_DEADLINE;
    let mut expect = async |word: &str| -> String {
        let line = tokio::time::timeout_at(deadline, from_script.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser script did not say {word:?} in time"))
            .unwrap()
            .unwrap_or_else(|| panic!("the browser script ended before saying {word:?}"));
        let rest = line
            .strip_prefix(word)
            .unwrap_or_else(|| panic!("the browser script said {line:?}, expected {word:?}"));
        rest.trim().to_string()
    };

    // Both pages are signed in; now the job they watch.
    expect("ready").await;
    let mut job = spec("dashboard");
    job.command = vec![
        "sh".into(),
        "-c".into(),
        // Long enough for the provider's telemetry (a sample every 5 s)
        // to see the GPU leased.
        "echo hello from the dashboard test; sleep 8; echo done".into(),
    ];
    let job = submit(&net, "requester-0", job, None).await;
    to_script
        .write_all(format!("job {}\n", job.id).as_bytes())
        .await
        .unwrap();
    assert_eq!(expect("succeeded").await, job.id);

    // What the ledger paid: the provider's balance moved by exactly the
    // job's settlement. The test passes that figure to the script.
    let done = wait_job(&net, "requester-0", &job.id, "succeeded", |j| {
        j.state.is_terminal()
    })
    .await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    let paid = provider_client
        .balance()
        .await
        .unwrap()
        .balance
        .checked_sub(provider_before)
        .expect("the provider's balance fell");
    let settled = done.settlement.as_ref().map(|s| s.settled);
    assert_eq!(Some(paid), settled, "{done:#?}");
    assert!(paid.0 > 0, "the job paid nothing: {done:#?}");
    to_script
        .write_all(format!("earned {}\n", paid.0).as_bytes())
        .await
        .unwrap();
    expect("ok").await;
    let status = tokio::time::timeout_at(deadline, script.wait())
        .await
        .expect("the browser script did not exit")
        .unwrap();
    assert!(status.success(), "the browser script failed: {status}");
    println!(
        "dashboard: the browser test took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    for name in ["login.png", "jobs.png", "provider.png", "network.png"] {
        assert!(
            shots.join(name).is_file(),
            "no {name} in {}",
            shots.display()
        );
    }
}
