//! Two peers that share only a bootstrap node reach each other at once: a
//! direct request to a peer the node has no address for waits for a
//! Kademlia lookup of it, then goes out — not at the next 30 s refresh.

use std::time::Duration;

use agora_node::network::{self, NetworkConfig, NetworkEvent, NetworkHandle, Request, Response};
use agora_protocol::{Decline, DeclineReason, Keypair, OrderId, Signed};
use tokio_util::sync::CancellationToken;

use crate::support::eventually;

/// A bare peer that dials no one beyond `boot` on its own and acknowledges
/// every request; with `listen` false it cannot be dialed (so no one's walk
/// of the DHT connects to it).
async fn peer(
    boot: Vec<libp2p::Multiaddr>,
    listen: bool,
    cancel: &CancellationToken,
) -> (Keypair, NetworkHandle) {
    let key = Keypair::generate().unwrap();
    let listen = if listen {
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]
    } else {
        vec![]
    };
    let config = NetworkConfig {
        target_peers: 1,
        ..NetworkConfig::new(listen, boot)
    };
    let (net, mut events) = network::spawn(&key, config, cancel.clone()).await.unwrap();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetworkEvent::Request { reply, .. } = event {
                let _ = reply.send(Response::Ack);
            }
        }
    });
    (key, net)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_known_only_to_the_bootstrap_node_is_looked_up_and_reached() {
    let cancel = CancellationToken::new();
    let (_, b) = peer(vec![], true, &cancel).await;
    let boot = b.info().await.unwrap().listen_addrs[0].clone();
    // A dials out only, so C's walk of the DHT cannot reach it; A's own
    // walk is over before C exists.
    let (a_key, a) = peer(vec![boot.clone()], false, &cancel).await;
    eventually(30, "a connected to the bootstrap node", || async {
        (a.info().await.ok()?.connected_peers == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, c) = peer(vec![boot], true, &cancel).await;
    let c_id = c.info().await.unwrap().peer_id;
    eventually(30, "c connected to the bootstrap node", || async {
        (c.info().await.ok()?.connected_peers >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.info().await.unwrap().connected_peers, 1, "a knows only b");

    let decline = Decline {
        order_id: OrderId([1; 32]),
        provider: a_key.public(),
        reason: DeclineReason::NoCapacity,
        detail: "looked up".into(),
        created_at: agora_node::clock::now(),
    };
    let request = Request::Decline(Signed::sign(decline, &a_key).unwrap());
    let answer = tokio::time::timeout(Duration::from_secs(10), a.request(c_id, request))
        .await
        .expect("the request was answered well before the DHT refresh");
    assert!(matches!(answer, Ok(Response::Ack)), "{answer:?}");
    assert_eq!(a.info().await.unwrap().connected_peers, 2);
    cancel.cancel();
}
