//! The instant path: a job names an offer and is leased on it directly,
//! with no order on gossip and no bid window.

use crate::support::{fund, spec, submit, testnet, wait_for_offers, wait_placed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_offer_is_leased_without_a_bid_window() {
    let (_dir, net) = testnet(2, 1).await;
    let requester = "requester-0";
    fund(&net.client(requester).unwrap()).await;
    let offers = wait_for_offers(&net, requester).await;
    // provider-1's A100s: not the best score, so only the instant path
    // would lease them for this spec.
    let provider = net.node("provider-1").unwrap().account;
    let offer = offers
        .iter()
        .find(|o| o.provider == provider)
        .expect("provider-1 has an offer")
        .clone();

    let mut instant = spec("instant");
    // Were this path to wait for bids, the window would be long.
    instant.market.bid_window_ms = 30_000;
    let job = submit(&net, requester, instant, Some(offer.id.clone())).await;
    assert_eq!(job.offer.as_deref(), Some(offer.id.as_str()), "{job:#?}");
    let job = wait_placed(&net, requester, &job.id).await;
    assert!(
        job.lease.as_ref().is_some_and(|l| l.escrow_locked),
        "{job:#?}"
    );
    let lease = job.lease.as_ref().expect("a leased job has a lease");
    assert_eq!(
        (lease.provider, lease.slot, lease.gpu_model.as_str()),
        (offer.provider, offer.slot, offer.gpu_model.as_str()),
        "{job:#?}"
    );
    assert_eq!(lease.price_per_gpu_hour, offer.price_per_gpu_hour);
    assert!(lease.escrow_locked, "{job:#?}");
    let steps: Vec<&str> = job.events.iter().map(|e| e.event.as_str()).collect();
    assert!(
        !steps.contains(&"order_published") && !steps.contains(&"bid"),
        "the instant path publishes no order and collects no bids: {steps:?}"
    );
    assert!(steps.contains(&"lease_signed"), "{steps:?}");
}
