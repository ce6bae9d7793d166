//! Three providers and a requester: the auction picks the only fit, the
//! best score, or ends `no bids` with every provider's reason.

use std::collections::BTreeSet;

use agora_client::api::{JobState, OfferView};
use agora_protocol::DeclineReason;
use agora_protocol::matching::Score;

use crate::support::{fund, spec, submit, testnet, wait_for_offers, wait_job, wait_placed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_providers_one_requester() {
    let (_dir, net) = testnet(3, 1).await;
    let requester = "requester-0";
    fund(&net.client(requester).unwrap()).await;
    let offers = wait_for_offers(&net, requester).await;
    let providers: Vec<_> = net.providers().into_iter().cloned().collect();

    // Only provider-0 has H100s in the EU.
    let mut only_one = spec("only provider-0");
    only_one.resources.gpu_model = Some("H100".into());
    only_one.constraints.region = Some("EU".into());
    let job = submit(&net, requester, only_one, None).await;
    let job = wait_placed(&net, requester, &job.id).await;
    assert!(
        job.lease.as_ref().is_some_and(|l| l.escrow_locked),
        "{job:#?}"
    );
    let lease = job.lease.as_ref().expect("a leased job has a lease");
    assert_eq!(lease.provider, providers[0].account, "{job:#?}");
    assert_eq!((lease.gpu_model.as_str(), lease.gpu_count), ("H100", 1));
    assert!(lease.escrow_locked, "{job:#?}");
    assert!(
        job.bids.iter().all(|b| b.provider == providers[0].account),
        "only provider-0 can bid: {job:#?}"
    );

    // All three can serve 1 GPU with 24 GiB: the best score wins.
    let mut several = spec("best score");
    several.resources.min_vram_gib = 24;
    let fits = |o: &&OfferView| o.vram_mib >= 24 * 1024 && o.gpu_free >= 1;
    let best = offers
        .iter()
        .filter(fits)
        .min_by_key(|o| Score::new(o.price_per_gpu_hour, o.fp32_mtflops, 0))
        .expect("some offer fits");
    let fitting: BTreeSet<_> = offers.iter().filter(fits).map(|o| o.provider).collect();
    assert_eq!(fitting.len(), 3, "every provider fits: {offers:#?}");
    let job = submit(&net, requester, several, None).await;
    let job = wait_placed(&net, requester, &job.id).await;
    assert!(
        job.lease.as_ref().is_some_and(|l| l.escrow_locked),
        "{job:#?}"
    );
    let lease = job.lease.as_ref().expect("a leased job has a lease");
    assert_eq!(
        (lease.provider, lease.slot),
        (best.provider, best.slot),
        "the best score ({} at {} AGR, {} mTFLOPS) should win: {job:#?}",
        best.gpu_model,
        best.price_per_gpu_hour,
        best.fp32_mtflops
    );
    assert_eq!(lease.price_per_gpu_hour, best.price_per_gpu_hour);
    // The simulated hardware is fixed: the RTX-4090s of provider-2 are the
    // cheapest compute.
    assert_eq!(lease.provider, providers[2].account, "{job:#?}");
    // And among the bids that came, the winner's scores best.
    let winner = job
        .bids
        .iter()
        .min_by_key(|b| Score::new(b.price_per_gpu_hour, b.fp32_mtflops, 0))
        .map(|b| b.provider);
    assert_eq!(winner, Some(lease.provider), "{job:#?}");

    // Nobody has a B200: no bids, and every provider says why.
    let mut nobody = spec("nobody");
    nobody.resources.gpu_model = Some("B200".into());
    let job = submit(&net, requester, nobody, None).await;
    let job = wait_job(&net, requester, &job.id, "no bids with 3 declines", |j| {
        j.state.is_terminal() && j.declines.len() >= 3
    })
    .await;
    assert_eq!(job.state, JobState::NoBids, "{job:#?}");
    assert!(job.lease.is_none() && job.bids.is_empty(), "{job:#?}");
    let decliners: BTreeSet<_> = job.declines.iter().map(|d| d.provider).collect();
    let all: BTreeSet<_> = providers.iter().map(|p| p.account).collect();
    assert_eq!(decliners, all, "every provider declines: {job:#?}");
    for decline in &job.declines {
        assert_eq!(decline.reason, DeclineReason::Model, "{job:#?}");
    }
    assert!(job.events.iter().any(|e| e.event == "no_bids"), "{job:#?}");
}
