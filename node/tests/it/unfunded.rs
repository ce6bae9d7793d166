//! GPUs cannot be taken off the market for free with a lease that is never
//! paid for: a requester that signs a lease and never locks its escrow (its
//! balance went to another lease first) gets the provider's GPUs for at most
//! the provider's lease start timeout; then they are free again and an
//! honest order beside it is leased on them.

use agora_client::api::{Constraints, JobSpec, JobState, MarketTerms, Resources, Role, SubmitJob};
use agora_client::http::NodeClient;
use agora_node::api::load_or_create_token;
use agora_protocol::Amount;

use crate::support::{PROVIDER_CONFIG, eventually, ledger, node};

/// `gpus` of the provider's four, for an hour at most.
fn job(name: &str, gpus: u32) -> SubmitJob {
    SubmitJob {
        spec: JobSpec {
            name: Some(name.into()),
            runtime: "process".into(),
            command: vec!["sh".into(), "-c".into(), "echo ran".into()],
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
                max_duration_secs: 3600,
                bid_window_ms: 800,
            },
        },
        offer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_never_funded_frees_its_gpus_and_an_honest_order_gets_them() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let config = PROVIDER_CONFIG
        .replace("[provider]\n", "[provider]\nlease_start_timeout_secs = 3\n")
        .replace("count = 2", "count = 4");
    let provider = node(
        &dir.path().join("provider"),
        Role::Provider,
        &config,
        &ledger,
        vec![],
    )
    .await;
    let boot: libp2p::Multiaddr = provider.ready.listen_addrs[0].parse().unwrap();
    let client = |data: &std::path::Path, api: &str| {
        NodeClient::new(api, Some(&load_or_create_token(data).unwrap())).unwrap()
    };
    let p = client(&dir.path().join("provider"), &provider.ready.api_url);
    let broke_dir = dir.path().join("broke");
    let broke = node(&broke_dir, Role::Requester, "", &ledger, vec![boot.clone()]).await;
    let b = client(&broke_dir, &broke.ready.api_url);
    let honest_dir = dir.path().join("honest");
    let honest = node(&honest_dir, Role::Requester, "", &ledger, vec![boot]).await;
    let h = client(&honest_dir, &honest.ready.api_url);
    for c in [&b, &h] {
        eventually(60, "the provider's offer", || async {
            let page = c.search_offers("", None).await.ok()?;
            (!page.offers.is_empty()).then_some(())
        })
        .await;
    }

    // Enough for one two-GPU job's most (2 × 3 AGR × 1 h), and two such
    // jobs at once: both pass the submission check and are leased, the
    // first lock takes 4 AGR (the provider's 2 AGR/GPU-h), the second
    // finds 2 AGR and fails. Its lease is signed and never funded.
    b.deposit(Amount(6_000_000)).await.unwrap();
    let first = b.submit_job(&job("first", 2)).await.unwrap();
    let second = b.submit_job(&job("second", 2)).await.unwrap();
    let mut ended = Vec::new();
    for id in [&first.id, &second.id] {
        ended.push(
            eventually(90, "the requester's jobs to end", || async {
                let job = b.job(id).await.ok()?;
                job.state.is_terminal().then_some(job)
            })
            .await,
        );
    }
    let unfunded = ended
        .iter()
        .find(|j| j.state == JobState::Failed)
        .unwrap_or_else(|| panic!("one lease should have found no funds: {ended:#?}"));
    assert!(
        unfunded.lease.is_some(),
        "its lease was signed: {unfunded:#?}"
    );
    assert!(
        ended.iter().any(|j| j.state == JobState::Succeeded),
        "{ended:#?}"
    );

    // The provider held two GPUs for the unfunded lease; within its start
    // timeout (3 s) plus a tick they are free again.
    eventually(15, "the unfunded lease's GPUs to be given back", || async {
        let status = p.provider_status().await.ok()?;
        status
            .reservations
            .iter()
            .all(|r| r.kind != "lease")
            .then_some(())
    })
    .await;

    // The honest requester's order for all four GPUs, placed now, is leased
    // and runs.
    h.deposit(Amount(100_000_000)).await.unwrap();
    let paid = h.submit_job(&job("honest", 4)).await.unwrap();
    let done = eventually(120, "the honest job to end", || async {
        let job = h.job(&paid.id).await.ok()?;
        job.state.is_terminal().then_some(job)
    })
    .await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    provider.shutdown().await;
    broke.shutdown().await;
    honest.shutdown().await;
}
