//! `/metrics` of a provider after a real job: specific series carry the
//! values the job produced, `promtool check metrics` accepts the
//! exposition, and a real Prometheus server on loopback scrapes the node
//! (bearer token from `credentials_file`) and answers a query.
//!
//! Needs `promtool` and `prometheus` (Debian: `apt-get install
//! prometheus`). Without them the test fails when `CI=true` and is skipped,
//! saying so in one line, otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agora_client::api::{Constraints, JobSpec, JobState, MarketTerms, Resources, Role, SubmitJob};
use agora_client::http::NodeClient;
use agora_node::api::load_or_create_token;
use agora_protocol::Amount;

use crate::support::{PROVIDER_CONFIG, eventually, ledger, node};

/// `promtool` and `prometheus` on `PATH`, or what is missing.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    match (find("promtool"), find("prometheus")) {
        (Some(promtool), Some(prometheus)) => Ok((promtool, prometheus)),
        (promtool, prometheus) => {
            let missing: Vec<&str> = [("promtool", promtool), ("prometheus", prometheus)]
                .into_iter()
                .filter(|(_, p)| p.is_none())
                .map(|(n, _)| n)
                .collect();
            Err(format!(
                "{} not installed (apt-get install prometheus)",
                missing.join(" and ")
            ))
        }
    }
}

/// The value of one series (`name{labels}` exactly as exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum over every series of a metric whose labels contain `having`.
fn sum(text: &str, name: &str, having: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(having))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn scrape(api: &str, token: &str) -> String {
    let r = reqwest::Client::new()
        .get(format!("{api}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// A Prometheus server, killed when dropped (a panicking test too).
struct Prometheus {
    child: Child,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn start_prometheus(
    bin: &Path,
    dir: &Path,
    target: &str,
    token_file: &Path,
) -> (Prometheus, String) {
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: agora\n    metrics_path: /metrics\n\
             \x20   authorization:\n      type: Bearer\n      credentials_file: {}\n\
             \x20   static_configs:\n      - targets: ['{target}']\n",
            token_file.display()
        ),
    )
    .unwrap();
    let log = dir.join("prometheus.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    (
        Prometheus { child, log },
        format!("http://127.0.0.1:{port}"),
    )
}

fn job() -> SubmitJob {
    SubmitJob {
        spec: JobSpec {
            name: Some("metrics".into()),
            runtime: "process".into(),
            command: vec!["sh".into(), "-c".into(), "echo hello; sleep 1".into()],
            env: Default::default(),
            inputs: vec![],
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
                ..Default::default()
            },
            market: MarketTerms {
                max_price_per_gpu_hour: "3".into(),
                max_duration_secs: 120,
                bid_window_ms: 1000,
            },
        },
        offer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_after_a_job_passes_promtool_and_prometheus_scrapes_it() {
    let (promtool, prometheus) = match tools() {
        Ok(tools) => tools,
        Err(missing) => {
            agora_node::runtime::process::for_tests::skip(&missing);
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let provider_dir = dir.path().join("provider");
    let provider = node(
        &provider_dir,
        Role::Provider,
        PROVIDER_CONFIG,
        &ledger,
        vec![],
    )
    .await;
    let boot: libp2p::Multiaddr = provider.ready.listen_addrs[0].parse().unwrap();
    let requester_dir = dir.path().join("requester");
    let requester = node(&requester_dir, Role::Requester, "", &ledger, vec![boot]).await;
    let provider_token = load_or_create_token(&provider_dir).unwrap();
    let requester_token = load_or_create_token(&requester_dir).unwrap();
    let p = NodeClient::new(&provider.ready.api_url, Some(&provider_token)).unwrap();
    let r = NodeClient::new(&requester.ready.api_url, Some(&requester_token)).unwrap();

    // One job, start to finish.
    r.deposit(Amount(10_000_000)).await.unwrap();
    eventually(60, "the provider's offers at the requester", || async {
        let page = r.search_offers("", None).await.ok()?;
        (!page.offers.is_empty()).then_some(())
    })
    .await;
    let submitted = r.submit_job(&job()).await.unwrap();
    let done = eventually(120, "the job to end", || async {
        let job = r.job(&submitted.id).await.ok()?;
        job.state.is_terminal().then_some(job)
    })
    .await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let paid = p.balance().await.unwrap().balance;
    assert!(paid > Amount::ZERO, "the ledger paid the provider");

    // The provider's series say what happened.
    let api = provider.ready.api_url.clone();
    let text = eventually(30, "the provider's run closed in /metrics", || async {
        let text = scrape(&api, &provider_token).await;
        (value(&text, "agora_runs{state=\"closed\"}") == Some(1.0)).then_some(text)
    })
    .await;
    let at_least = |series: &str, min: f64| {
        let v = value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(v >= min, "{series} = {v}, expected at least {min}");
    };
    at_least("agora_receipts_countersigned_total{role=\"provider\"}", 1.0);
    at_least("agora_receipts_signed_total", 1.0);
    at_least("agora_settlements_total{result=\"paid\"}", 1.0);
    at_least("agora_settlement_latency_seconds_count", 1.0);
    at_least("agora_gossip_accepted_total{topic=\"orders\"}", 1.0);
    at_least("agora_peers", 1.0);
    assert_eq!(
        value(&text, "agora_leases_signed_total{role=\"provider\"}"),
        Some(1.0)
    );
    assert_eq!(value(&text, "agora_orders_seen_total"), Some(1.0));
    assert_eq!(value(&text, "agora_bids_total"), Some(1.0));
    assert_eq!(
        sum(&text, "agora_leases", "role=\"provider\""),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "agora_provider_earned_base_units_total"),
        Some(paid.0 as f64),
        "earnings are what the ledger paid\n{text}"
    );
    // Two simulated GPUs, labelled so, without NVML series.
    assert_eq!(sum(&text, "agora_gpu_leased", "simulated=\"true\""), 0.0);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("agora_gpu_memory_total_bytes{")
                && l.contains("simulated=\"true\""))
            .count(),
        2,
        "{text}"
    );
    assert!(!text.contains("agora_gpu_power_watts{"), "{text}");
    assert_eq!(
        value(&text, "agora_scrape_source_up{source=\"market\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "agora_scrape_source_up{source=\"telemetry\"}"),
        Some(1.0)
    );

    // The requester counted its side.
    let rtext = scrape(&requester.ready.api_url, &requester_token).await;
    assert!(
        value(
            &rtext,
            "agora_receipts_countersigned_total{role=\"requester\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{rtext}"
    );
    assert_eq!(
        value(&rtext, "agora_jobs{state=\"succeeded\"}"),
        Some(1.0),
        "{rtext}"
    );
    assert_eq!(
        value(&rtext, "agora_leases_signed_total{role=\"requester\"}"),
        Some(1.0)
    );

    // promtool accepts the exposition.
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus scrapes the provider with the token from its file.
    let target = provider
        .ready
        .api_url
        .trim_start_matches("http://")
        .to_string();
    let (server, url) = start_prometheus(
        &prometheus,
        &dir.path().join("prometheus"),
        &target,
        &agora_node::api::token_path(&provider_dir),
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let get = |query: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let at =
                reqwest::Url::parse_with_params(&format!("{url}/api/v1/query"), [("query", query)])
                    .ok()?;
            let r = http.get(at).send().await.ok()?;
            let body: serde_json::Value = r.json().await.ok()?;
            let result = body["data"]["result"].as_array()?.first()?.clone();
            result["value"][1].as_str()?.parse::<f64>().ok()
        }
    };
    let up = eventually(60, "Prometheus to scrape the node", || async {
        let v = get("up{job=\"agora\"}").await?;
        (v == 1.0).then_some(v)
    })
    .await;
    assert_eq!(up, 1.0, "{}", server.log());
    let leases = eventually(30, "Prometheus to answer a query", || async {
        get("agora_leases_signed_total{role=\"provider\"}").await
    })
    .await;
    assert_eq!(leases, 1.0, "{}", server.log());
    let earned = eventually(30, "Prometheus to hold the earnings", || async {
        get("agora_provider_earned_base_units_total").await
    })
    .await;
    assert_eq!(earned, paid.0 as f64);
    drop(server);

    requester.shutdown().await;
    provider.shutdown().await;
}
