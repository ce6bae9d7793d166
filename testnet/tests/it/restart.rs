//! A provider killed with SIGKILL mid-market comes back with its leases
//! and reservations, and keeps honouring them.

use agora_client::api::{JobState, ProviderStatus, ReservationView};
use agora_protocol::DeclineReason;

use crate::support::{fund, spec, submit, testnet, wait_for_offers, wait_job, wait_terminal};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_restarted_mid_market_keeps_its_leases_and_reservations() {
    let (_dir, mut net) = testnet(2, 1).await;
    let requester = "requester-0";
    fund(&net.client(requester).unwrap()).await;
    wait_for_offers(&net, requester).await;

    // provider-0 has 2 H100s: lease one.
    let mut h100 = spec("before restart");
    h100.resources.gpu_model = Some("H100".into());
    h100.constraints.region = Some("EU".into());
    let job = submit(&net, requester, h100.clone(), None).await;
    let job = wait_terminal(&net, requester, &job.id).await;
    assert_eq!(job.state, JobState::Leased, "{job:#?}");

    let before = net
        .client("provider-0")
        .unwrap()
        .provider_status()
        .await
        .unwrap();
    assert_eq!(before.leases.len(), 1, "{before:#?}");
    assert_eq!(leases_held(&before).len(), 1, "{before:#?}");

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
    assert_eq!(
        after.leases, before.leases,
        "leases after restart: {after:#?}"
    );
    assert_eq!(
        leases_held(&after),
        leases_held(&before),
        "reservations after restart: {after:#?}"
    );
    let h100_offer = after
        .offers
        .iter()
        .find(|o| o.gpu_model == "H100")
        .expect("provider-0 still offers its H100s");
    assert_eq!(
        (h100_offer.gpu_total, h100_offer.gpu_free),
        (2, 1),
        "the leased GPU stays taken: {after:#?}"
    );

    // The market goes on: the second H100 is leased, and then there is
    // none left — provider-0 says so.
    let job = submit(&net, requester, h100.clone(), None).await;
    let job = wait_terminal(&net, requester, &job.id).await;
    assert_eq!(
        job.state,
        JobState::Leased,
        "{job:#?}\n{}",
        net.log_tails(30)
    );
    let provider0 = net.node("provider-0").unwrap().account;
    assert_eq!(job.lease.as_ref().map(|l| l.provider), Some(provider0));

    let job = submit(&net, requester, h100, None).await;
    let job = wait_job(
        &net,
        requester,
        &job.id,
        "no bids, provider-0 declined",
        |j| j.state.is_terminal() && j.declines.iter().any(|d| d.provider == provider0),
    )
    .await;
    assert_eq!(job.state, JobState::NoBids, "{job:#?}");
    let reason = job
        .declines
        .iter()
        .find(|d| d.provider == provider0)
        .map(|d| d.reason);
    assert_eq!(reason, Some(DeclineReason::NoCapacity), "{job:#?}");
}
