//! A peer that publishes garbage and forged offers: every such message is
//! rejected (and counted, which lowers the sender's gossipsub score), none
//! reaches a book, and honest offers still arrive everywhere.

use agora_client::api::Role;
use agora_node::network::{self, NetworkConfig, OFFERS_TOPIC};
use agora_protocol::{Keypair, Offer, Signed};
use tokio_util::sync::CancellationToken;

use crate::support::{PROVIDER_CONFIG, eventually, ledger, node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_garbage_offers_are_dropped_while_honest_ones_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let provider = node(
        &dir.path().join("provider"),
        Role::Provider,
        PROVIDER_CONFIG,
        &ledger,
        vec![],
    )
    .await;
    let boot: libp2p::Multiaddr = provider.ready.listen_addrs[0].parse().unwrap();
    let requester = node(
        &dir.path().join("requester"),
        Role::Requester,
        "",
        &ledger,
        vec![boot.clone()],
    )
    .await;

    // The honest offer reaches the requester.
    eventually(30, "the honest offer at the requester", || async {
        let page = requester
            .market
            .search(String::new(), None, 10)
            .await
            .ok()?;
        (page.offers.len() == 1).then_some(())
    })
    .await;

    // The rogue joins through the provider.
    let rogue_key = Keypair::generate().unwrap();
    let cancel = CancellationToken::new();
    let (rogue, mut rogue_events) = network::spawn(
        &rogue_key,
        NetworkConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()], vec![boot]),
        cancel.clone(),
    )
    .await
    .unwrap();
    // Wait until the rogue holds a genuine offer (it gossips to everyone).
    let genuine: Signed<Offer> = eventually(30, "a genuine offer at the rogue", || {
        let next = rogue_events.try_recv().ok();
        async move {
            match next {
                Some(network::NetworkEvent::Offer { offer, .. }) => Some(offer),
                _ => None,
            }
        }
    })
    .await;
    eventually(30, "the rogue in the offers mesh", || async {
        let info = rogue.info().await.ok()?;
        (info.mesh_peers >= 1).then_some(())
    })
    .await;

    let mut hostile: Vec<Vec<u8>> = Vec::new();
    // 1. Garbage.
    hostile.push(b"\xff\x00 not an envelope".to_vec());
    // 2. A forged offer: the rogue signs an offer naming the provider.
    let mut forged = genuine.message().clone();
    forged.sequence += 1_000_000;
    forged.price_per_gpu_hour = agora_protocol::Amount(1);
    let forged_envelope = agora_protocol::SignedEnvelope::seal(
        agora_protocol::Kind::Offer,
        &agora_protocol::WireMessage::to_proto(&forged),
        &rogue_key,
    );
    hostile.push(forged_envelope.encode());
    // 3. The rogue's own valid-looking offer with a flipped signature bit.
    let mut own = genuine.message().clone();
    own.provider = rogue_key.public();
    let mut flipped = Signed::sign(own, &rogue_key).unwrap().encode();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    hostile.push(flipped);
    // 4. A genuine offer replayed by someone who is not its provider.
    hostile.push(genuine.encode());
    for data in hostile {
        // Publishing may fail for a replay gossipsub already saw; that is fine.
        let _ = rogue.publish(OFFERS_TOPIC, data).await;
    }

    // The provider (the rogue's mesh peer) rejected what reached it.
    let rejected = eventually(30, "the provider to reject the rogue's gossip", || async {
        let info = provider.market.info().await.ok()?;
        (info.gossip_rejected >= 2).then_some(info.gossip_rejected)
    })
    .await;
    assert!(rejected >= 2, "{rejected}");
    // `/metrics` counts the same rejections, each under its reason.
    let token = agora_node::api::load_or_create_token(&dir.path().join("provider")).unwrap();
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", provider.ready.api_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with("agora_gossip_rejected_total{topic=\"offers\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(
        counted >= rejected as f64,
        "{rejected} rejected, {counted} counted\n{text}"
    );

    // No book holds anything of the rogue's or the forged price, and the
    // provider's honest offer is still there and still refreshed.
    let before = requester
        .market
        .search(String::new(), None, 10)
        .await
        .unwrap();
    let seq_before = before.offers[0].sequence;
    let after = eventually(30, "a fresh honest offer after the attack", || async {
        let page = requester
            .market
            .search(String::new(), None, 10)
            .await
            .ok()?;
        page.offers
            .iter()
            .any(|o| o.sequence > seq_before)
            .then_some(page)
    })
    .await;
    for page in [
        after,
        provider
            .market
            .search(String::new(), None, 10)
            .await
            .unwrap(),
    ] {
        assert_eq!(page.offers.len(), 1, "{page:?}");
        let offer = &page.offers[0];
        assert_eq!(offer.provider, genuine.message().provider);
        assert_ne!(offer.price_per_gpu_hour, agora_protocol::Amount(1));
    }

    cancel.cancel();
    requester.shutdown().await;
    provider.shutdown().await;
}
