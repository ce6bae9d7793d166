//! GPUs cannot be taken off the market for free with a lease that is never
//! paid for: a requester that signs a lease and never locks its escrow (its
//! balance went to a lease at another provider first — each provider bounds
//! what a requester holds by its balance, but sees only its own holds) gets
//! the provider's GPUs for at most the provider's lease start timeout; then
//! they are free again and an honest order beside it is leased on them.

use agora_client::api::{JobState, Role, SubmitJob};
use agora_client::http::NodeClient;
use agora_node::api::load_or_create_token;
use agora_protocol::Amount;

use crate::support::{PROVIDER_CONFIG, eventually, ledger, node, shell_job};

/// `gpus` GPUs for at most 3600 s, printing a line.
fn job(name: &str, gpus: u32) -> SubmitJob {
    shell_job(name, "echo ran", gpus, 3600, 800)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_never_funded_frees_its_gpus_and_an_honest_order_gets_them() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let config =
        PROVIDER_CONFIG.replace("[provider]\n", "[provider]\nlease_start_timeout_secs = 3\n");
    let client = |data: &std::path::Path, api: &str| {
        NodeClient::new(api, Some(&load_or_create_token(data).unwrap())).unwrap()
    };
    // Two providers of two GPUs each.
    let mut providers = Vec::new();
    let mut boot: Vec<libp2p::Multiaddr> = Vec::new();
    for name in ["p1", "p2"] {
        let data = dir.path().join(name);
        let node = node(&data, Role::Provider, &config, &ledger, boot.clone()).await;
        boot.push(node.ready.listen_addrs[0].parse().unwrap());
        let c = client(&data, &node.ready.api_url);
        providers.push((node, c));
    }
    let broke_dir = dir.path().join("broke");
    let broke = node(&broke_dir, Role::Requester, "", &ledger, boot.clone()).await;
    let b = client(&broke_dir, &broke.ready.api_url);
    let honest_dir = dir.path().join("honest");
    let honest = node(&honest_dir, Role::Requester, "", &ledger, boot).await;
    let h = client(&honest_dir, &honest.ready.api_url);
    let mut offers = Vec::new();
    for c in [&b, &h] {
        offers = eventually(60, "both providers' offers", || async {
            let page = c.search_offers("", None).await.ok()?;
            (page.offers.len() == 2).then_some(page.offers)
        })
        .await;
    }

    // Enough for one two-GPU job's most (2 × 3 AGR × 1 h), and two such
    // jobs at once, each leased straight from a different provider's
    // offer. Each provider reads 6 AGR on the ledger, which covers its
    // lease's escrow (2 × 2 AGR/GPU-h × 1 h): a provider knows its own
    // holds, not what the requester signed elsewhere. Both sign; the first
    // lock takes 4 AGR, the second finds 2 AGR and fails. That lease is
    // signed and never funded.
    b.deposit(Amount(6_000_000)).await.unwrap();
    let mut ids = Vec::new();
    for offer in &offers {
        let mut submit = job("instant", 2);
        submit.offer = Some(offer.id.clone());
        ids.push(b.submit_job(&submit).await.unwrap().id);
    }
    let mut ended = Vec::new();
    for id in &ids {
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
    let lease = unfunded
        .lease
        .as_ref()
        .unwrap_or_else(|| panic!("its lease was signed: {unfunded:#?}"));
    assert!(
        ended.iter().any(|j| j.state == JobState::Succeeded),
        "{ended:#?}"
    );
    let (_, p) = providers
        .iter()
        .find(|(n, _)| n.ready.account == lease.provider.to_string())
        .expect("the unfunded lease's provider");

    // That provider held two GPUs for the unfunded lease; within its start
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

    // The honest requester leases those two GPUs, straight from that
    // provider's offer, and its job runs.
    h.deposit(Amount(100_000_000)).await.unwrap();
    let offer = offers
        .iter()
        .find(|o| o.provider == lease.provider)
        .expect("the provider's offer");
    let mut submit = job("honest", 2);
    submit.offer = Some(offer.id.clone());
    let paid = h.submit_job(&submit).await.unwrap();
    let done = eventually(120, "the honest job to end", || async {
        let job = h.job(&paid.id).await.ok()?;
        job.state.is_terminal().then_some(job)
    })
    .await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    for (node, _) in providers {
        node.shutdown().await;
    }
    broke.shutdown().await;
    honest.shutdown().await;
}
