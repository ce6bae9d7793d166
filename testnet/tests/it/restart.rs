//! A provider killed with SIGKILL mid-market comes back with its leases
//! and reservations, and keeps honouring them.

use std::time::Instant;

use agora_client::api::{JobSpec, JobState, JobView, ProviderStatus, ReservationView};
use agora_protocol::{Amount, DeclineReason, PublicKey};
use agora_testnet::Testnet;

use crate::support::{DEADLINE, POLL, fund, spec, submit, testnet, wait_for_offers, wait_placed};

/// The lease reservations (bid holds expire on their own, so they are left
/// out of the comparison).
fn leases_held(status: &ProviderStatus) -> Vec<ReservationView> {
    let mut held: Vec<_> = status
        .reservations
        .iter()
        .filter(|r| r.kind == "lease")
        .cloned()
        .collect();
    held.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    held
}

/// Submits `spec` until `provider` answers the order (bids or declines)
/// and the job ends; returns that job. An order published while the
/// restarted provider is still finding its peers may not reach it: gossip
/// promises nothing to a peer not yet subscribed.
async fn submit_until_answered(
    net: &Testnet,
    requester: &str,
    spec: &JobSpec,
    provider: PublicKey,
) -> JobView {
    let deadline = Instant::now() + DEADLINE;
    let mut unanswered = Vec::new();
    loop {
        let job = submit(net, requester, spec.clone(), None).await;
        let job = wait_placed(net, requester, &job.id).await;
        let answered = job.bids.iter().any(|b| b.provider == provider)
            || job.declines.iter().any(|d| d.provider == provider);
        if answered {
            return job;
        }
        unanswered.push(job);
        if Instant::now() >= deadline {
            panic!(
                "{provider} answered none of {} orders within {DEADLINE:?}: {unanswered:#?}\n{}",
                unanswered.len(),
                net.log_tails(30)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_restarted_mid_market_keeps_its_leases_and_reservations() {
    let (_dir, mut net) = testnet(2, 1).await;
    let requester = "requester-0";
    let requester_client = net.client(requester).unwrap();
    wait_for_offers(&net, requester).await;

    // provider-0 has 2 H100s at 2.5 AGR/GPU-h. A lease that holds one
    // without a run: a provider bids only for what the requester's balance
    // covers on top of what it holds there, but sees no other provider's
    // leases. So: 0.5 AGR on the ledger; a one-GPU H100 job (escrow 2.5 AGR
    // × 600 s ≈ 0.417) with a 3 s bid window, and beside it a one-GPU A100
    // job (provider-1, 1.2 AGR/GPU-h: escrow 0.2) with a 300 ms one. Each
    // provider sees 0.5 AGR and bids; the A100 lease locks first; the H100
    // lease, signed on provider-0's bid while the A100 job runs, then finds
    // 0.3 AGR and is never funded. It keeps its GPU until provider.lease_start_timeout_secs
    // (120 s): across the restart.
    let escrow = agora_protocol::cost(Amount(2_500_000), 600).unwrap();
    requester_client
        .deposit(Amount(escrow.0 * 6 / 5))
        .await
        .unwrap();
    let mut h100 = spec("before restart");
    h100.resources.gpu_model = Some("H100".into());
    h100.constraints.region = Some("EU".into());
    h100.market.max_price_per_gpu_hour = "2.5".into();
    let mut slow = h100.clone();
    slow.market.bid_window_ms = 3000;
    let mut a100 = spec("elsewhere first");
    a100.resources.gpu_model = Some("A100".into());
    a100.market.max_price_per_gpu_hour = "2.5".into();
    a100.market.bid_window_ms = 300;
    // Still running (its escrow locked) when the H100 lease locks.
    a100.command = vec!["sleep".into(), "8".into()];
    let unfunded = submit(&net, requester, slow, None).await;
    let first = submit(&net, requester, a100, None).await;
    let mut ended = Vec::new();
    for id in [&first.id, &unfunded.id] {
        ended.push(
            crate::support::wait_job(&net, requester, id, "a terminal state", |j| {
                j.state.is_terminal()
            })
            .await,
        );
    }
    assert!(
        ended.iter().any(|j| j.state == JobState::Succeeded)
            && ended
                .iter()
                .any(|j| j.state == JobState::Failed && j.lease.is_some()),
        "one funded lease ran, one unfunded lease was signed: {ended:#?}"
    );

    let before = net
        .client("provider-0")
        .unwrap()
        .provider_status()
        .await
        .unwrap();
    assert_eq!(before.leases.len(), 1, "{before:#?}");
    assert_eq!(leases_held(&before).len(), 1, "{before:#?}");

    let killed_at = agora_protocol::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    net.kill("provider-0").await.unwrap();
    net.restart("provider-0")
        .await
        .unwrap_or_else(|e| panic!("provider-0 did not come back: {e}"));
    let after = net
        .client("provider-0")
        .unwrap()
        .provider_status()
        .await
        .unwrap();
    // The same lease, still held.
    let ids = |s: &ProviderStatus| s.leases.iter().map(|l| l.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&after),
        ids(&before),
        "leases after restart: {after:#?}"
    );
    assert_eq!(
        leases_held(&after),
        leases_held(&before),
        "reservations after restart: {after:#?}"
    );
    // Its own offer, once rebuilt, still counts the leased GPU as taken.
    let provider0_client = net.client("provider-0").unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = provider0_client.provider_status().await.unwrap();
        if let Some(offer) = status.offers.iter().find(|o| o.gpu_model == "H100") {
            assert_eq!(
                (offer.gpu_total, offer.gpu_free),
                (2, 1),
                "the leased GPU stays taken: {status:#?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted provider-0 offers no H100s: {status:#?}\n{}",
            net.log_tails(30)
        );
        tokio::time::sleep(POLL).await;
    }

    // Back in the market: its offer, republished since the restart, reaches
    // the requester with the leased GPU still taken.
    let provider0 = net.node("provider-0").unwrap().account;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let page = requester_client
            .search_offers("gpu=H100", None)
            .await
            .unwrap();
        let fresh = page
            .offers
            .iter()
            .find(|o| o.provider == provider0 && o.created_at > killed_at);
        if let Some(offer) = fresh {
            assert_eq!((offer.gpu_total, offer.gpu_free), (2, 1), "{offer:#?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no offer of the restarted provider-0 reached {requester}: {page:#?}\n{}",
            net.log_tails(30)
        );
        tokio::time::sleep(POLL).await;
    }

    // The market goes on: the second H100 is leased (to a job that keeps
    // it), and then there is none left — provider-0 says so.
    fund(&requester_client).await;
    let mut long = h100.clone();
    long.command = vec!["sleep".into(), "300".into()];
    let job = submit_until_answered(&net, requester, &long, provider0).await;
    assert!(
        job.lease.as_ref().is_some_and(|l| l.escrow_locked),
        "{job:#?}\n{}",
        net.log_tails(30)
    );
    assert_eq!(job.lease.as_ref().map(|l| l.provider), Some(provider0));

    let job = submit_until_answered(&net, requester, &h100, provider0).await;
    assert_eq!(job.state, JobState::NoBids, "{job:#?}");
    let reason = job
        .declines
        .iter()
        .find(|d| d.provider == provider0)
        .map(|d| d.reason);
    assert_eq!(reason, Some(DeclineReason::NoCapacity), "{job:#?}");
}
