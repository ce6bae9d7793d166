//! Orders cost something to hold GPUs with. A provider bids only for what
//! the requester's balance on the ledger can pay, on top of what it already
//! holds there; a peer that delivers more orders than its budget is ignored
//! and scored down. In each attack an honest order beside it is still bid
//! on and leased, and the provider's GPUs are free again soon after.

use std::time::Duration;

use agora_client::api::{JobState, ProviderStatus, Role, SubmitJob};
use agora_client::http::NodeClient;
use agora_node::api::load_or_create_token;
use agora_node::network::Response;
use agora_node::network::{self, NetworkConfig, NetworkEvent, NetworkHandle, ORDERS_TOPIC};
use agora_protocol::{Amount, Energy, Keypair, LeaseTerms, Order, Signed};
use tokio_util::sync::CancellationToken;

use crate::support::{PROVIDER_CONFIG, eventually, ledger, node, shell_job};

/// Each peer may deliver 5 of its own orders a second, 20 at once (and ten
/// times that of others' that it relays).
const BUDGET: &str = "[node]\norders_per_peer_per_sec = 5\norder_burst_per_peer = 20\n";

/// A provider of four H100s at 2 AGR/GPU-hour, with [`BUDGET`].
fn provider_config() -> String {
    PROVIDER_CONFIG
        .replace("count = 2", "count = 4")
        .replace("[node]\n", BUDGET)
}

/// `gpus` GPUs for at most 600 s, printing a line.
fn job(name: &str, gpus: u32) -> SubmitJob {
    shell_job(name, "echo ran", gpus, 600, 1500)
}

/// A valid signed order of `key`'s for `gpus` GPUs, bid window `window_ms`.
fn order(key: &Keypair, nonce: u64, gpus: u32, window_ms: u32) -> Signed<Order> {
    let now = agora_node::clock::now();
    let mut nonce_bytes = vec![0u8; 16];
    nonce_bytes[..8].copy_from_slice(&nonce.to_be_bytes());
    let order = Order {
        needs: agora_protocol::SandboxLimits::default(),
        network: false,
        requester: key.public(),
        nonce: nonce_bytes,
        gpu_count: gpus,
        gpu_model: None,
        min_vram_mib: 0,
        min_fp32_mtflops: 0,
        min_compute_capability: 0,
        region: None,
        jurisdiction: None,
        energy: Energy::Unknown,
        require_verified: false,
        allow_simulated: true,
        max_price_per_gpu_hour: Amount(3_000_000),
        max_duration_secs: 600,
        bid_window_ms: window_ms,
        runtime: "process".into(),
        created_at: now,
        expires_at: now.plus_secs(30),
    };
    Signed::sign(order, key).unwrap()
}

/// A bare peer with a fresh key that joins through `boot` and
/// acknowledges whatever is sent to it (so the provider's answers cost it
/// nothing): what an attacker runs.
struct Rogue {
    key: Keypair,
    net: NetworkHandle,
    cancel: CancellationToken,
}

impl Rogue {
    async fn join(boot: &libp2p::Multiaddr) -> Rogue {
        let key = Keypair::generate().unwrap();
        let cancel = CancellationToken::new();
        let (net, mut events) = network::spawn(
            &key,
            NetworkConfig::new(
                vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                vec![boot.clone()],
            ),
            cancel.clone(),
        )
        .await
        .unwrap();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let NetworkEvent::Request { reply, .. } = event {
                    let _ = reply.send(Response::Ack);
                }
            }
        });
        Rogue { key, net, cancel }
    }

    /// Publishes `order`, waiting for a peer on the orders topic first.
    async fn publish(&self, order: &Signed<Order>) {
        let data = order.encode();
        for _ in 0..100 {
            if self.net.publish(ORDERS_TOPIC, data.clone()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the rogue could not publish an order");
    }
}

fn client(data: &std::path::Path, api: &str) -> NodeClient {
    NodeClient::new(api, Some(&load_or_create_token(data).unwrap())).unwrap()
}

/// A counter of `/metrics`: the sum of the lines that start with `prefix`.
async fn metric(api: &str, data: &std::path::Path, prefix: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{api}/metrics"))
        .bearer_auth(load_or_create_token(data).unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn holds(status: &ProviderStatus) -> usize {
    status
        .reservations
        .iter()
        .filter(|r| r.kind == "hold")
        .count()
}

/// An honest requester's job for `gpus` GPUs is bid on, leased and runs.
async fn honest_job_runs(h: &NodeClient, name: &str, gpus: u32) {
    let submitted = h.submit_job(&job(name, gpus)).await.unwrap();
    let done = eventually(120, "the honest job to end", || async {
        let job = h.job(&submitted.id).await.ok()?;
        job.state.is_terminal().then_some(job)
    })
    .await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
}

/// A provider ([`provider_config`]) and an honest, funded requester that
/// sees its offer. Every node keeps the same order budget, as a network's
/// nodes do: the honest requester relays no more of a flood than the
/// provider lets through from it.
struct Market {
    _dir: tempfile::TempDir,
    ledger: std::sync::Arc<dyn agora_protocol::Ledger>,
    provider: agora_node::daemon::RunningNode,
    provider_dir: std::path::PathBuf,
    p: NodeClient,
    boot: libp2p::Multiaddr,
    honest: agora_node::daemon::RunningNode,
    h: NodeClient,
}

async fn market() -> Market {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let provider_dir = dir.path().join("provider");
    let provider = node(
        &provider_dir,
        Role::Provider,
        &provider_config(),
        &ledger,
        vec![],
    )
    .await;
    let p = client(&provider_dir, &provider.ready.api_url);
    let boot: libp2p::Multiaddr = provider.ready.listen_addrs[0].parse().unwrap();
    let honest_dir = dir.path().join("honest");
    let honest = node(
        &honest_dir,
        Role::Requester,
        BUDGET,
        &ledger,
        vec![boot.clone()],
    )
    .await;
    let h = client(&honest_dir, &honest.ready.api_url);
    h.deposit(Amount(100_000_000)).await.unwrap();
    eventually(
        60,
        "the provider's offer at the honest requester",
        || async {
            let page = h.search_offers("", None).await.ok()?;
            (!page.offers.is_empty()).then_some(())
        },
    )
    .await;
    Market {
        _dir: dir,
        ledger,
        provider,
        provider_dir,
        p,
        boot,
        honest,
        h,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_orders_from_fresh_keys_holds_no_gpus_and_the_flooder_is_scored_down() {
    let Market {
        _dir,
        provider,
        provider_dir,
        p,
        boot,
        honest,
        h,
        ..
    } = market().await;
    let api = provider.ready.api_url.clone();

    // 1. Thirty fresh keys, each its own peer, each ordering every GPU the
    // provider has, three times. None has anything on the ledger.
    let mut rogues = Vec::new();
    for _ in 0..30 {
        rogues.push(Rogue::join(&boot).await);
    }
    for (i, rogue) in rogues.iter().enumerate() {
        for n in 0..3 {
            rogue
                .publish(&order(&rogue.key, (i * 3 + n) as u64, 4, 5_000))
                .await;
        }
    }
    // Every one of the 90 orders is declined for funds and holds nothing.
    let declined = eventually(60, "the fresh keys' orders declined for funds", || async {
        let n = metric(
            &api,
            &provider_dir,
            "agora_declines_total{reason=\"funds\"}",
        )
        .await;
        (n >= 90.0).then_some(n)
    })
    .await;
    assert_eq!(declined, 90.0);
    let status = p.provider_status().await.unwrap();
    assert_eq!(holds(&status), 0, "{:?}", status.reservations);

    // 2. One peer floods: 400 orders at once, far past its budget of 20.
    // (The other rogues leave first: each would relay the flood under its
    // own budget, which the provider charges to it, not to the flooder.)
    let flooder = rogues.remove(0);
    let seen_before = p.provider_status().await.unwrap().orders_seen;
    for rogue in rogues.drain(..) {
        rogue.cancel.cancel();
    }
    let net = provider.network.clone();
    eventually(30, "the other rogues gone", || async {
        let info = net.info().await.ok()?;
        (info.connected_peers <= 2).then_some(())
    })
    .await;
    let flood: Vec<_> = (0..400)
        .map(|n| order(&flooder.key, 10_000 + n, 4, 5_000))
        .collect();
    for o in &flood {
        let _ = flooder.net.publish(ORDERS_TOPIC, o.encode()).await;
    }
    // The flooder's score falls below gossipsub's graylist threshold
    // (-80): the provider drops everything it sends until it has been
    // quiet for a while (the excess decays by a tenth a second).
    let flooder_peer = flooder.key.public().peer_id();
    let score = eventually(10, "the flooder graylisted", || async {
        let score = net.peer_score(flooder_peer).await.ok()??;
        (score < -80.0).then_some(score)
    })
    .await;
    // Counted until it settles.
    let mut ignored = -1.0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = metric(
            &api,
            &provider_dir,
            "agora_gossip_ignored_total{topic=\"orders\",reason=\"rate_limited\"}",
        )
        .await;
        if n == ignored {
            break;
        }
        ignored = n;
    }
    // Past about eighty the flooder is graylisted, and gossipsub drops the
    // rest before they are even looked at.
    assert!(ignored >= 50.0, "{ignored} of 400 ignored");
    // What got through is the flooder's burst, and what the honest
    // requester relayed of it under its own budget (the same 20).
    let seen_after = p.provider_status().await.unwrap().orders_seen;
    assert!(
        seen_after - seen_before <= 45,
        "{} of the flood's 400 orders were seen",
        seen_after - seen_before
    );
    let status = p.provider_status().await.unwrap();
    assert_eq!(holds(&status), 0, "{:?}", status.reservations);
    println!(
        "flood: 90 orders from 30 fresh keys declined for funds; of 400 from one peer {} seen, \
         {ignored} ignored past its budget, the rest dropped once it was graylisted (score \
         {score:.1})",
        status.orders_seen - seen_before
    );

    // 3. Beside it all, an honest order for all four GPUs is bid on,
    // leased and runs.
    honest_job_runs(&h, "honest", 4).await;

    flooder.cancel.cancel();
    provider.shutdown().await;
    honest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_streaming_orders_it_never_leases_holds_no_more_than_its_balance() {
    let Market {
        _dir,
        ledger,
        provider,
        provider_dir,
        p,
        boot,
        honest,
        h,
    } = market().await;

    // The streamer has on the ledger what one GPU for its orders' ten
    // minutes costs at the provider's price, and orders one GPU four
    // times a second (within its budget), each with a 50 ms bid window:
    // it never proposes a lease.
    let streamer = Rogue::join(&boot).await;
    let one_gpu = LeaseTerms::required_escrow(Amount(2_000_000), 1, 600).unwrap();
    ledger
        .deposit(&streamer.key.public(), one_gpu)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let stream = {
        let stop = stop.clone();
        let (key, net) = (streamer.key.clone(), streamer.net.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.is_cancelled() {
                let _ = net
                    .publish(ORDERS_TOPIC, order(&key, sent, 1, 50).encode())
                    .await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            sent
        })
    };
    // The provider bids on its first order and declines the rest for
    // funds while that hold lives.
    let dir_p = provider_dir.clone();
    let api = provider.ready.api_url.clone();
    eventually(30, "the streamer's orders declined for funds", || async {
        let n = metric(&api, &dir_p, "agora_declines_total{reason=\"funds\"}").await;
        (n >= 5.0).then_some(())
    })
    .await;
    let mut most = 0;
    for _ in 0..20 {
        let status = p.provider_status().await.unwrap();
        most = most.max(holds(&status));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(most <= 1, "the streamer held {most} bids at once");

    // Beside it, an honest order for the other three GPUs is bid on,
    // leased and runs.
    honest_job_runs(&h, "honest", 3).await;
    let status = p.provider_status().await.unwrap();
    assert!(holds(&status) <= 1, "{:?}", status.reservations);

    // The stream stops: within the bid window and the hold grace (5 s)
    // the provider holds nothing.
    stop.cancel();
    let sent = stream.await.unwrap();
    eventually(15, "the streamer's last hold to lapse", || async {
        let status = p.provider_status().await.ok()?;
        status.reservations.is_empty().then_some(())
    })
    .await;
    let funds = metric(
        &provider.ready.api_url,
        &provider_dir,
        "agora_declines_total{reason=\"funds\"}",
    )
    .await;
    println!(
        "stream: {sent} orders that never lease, {funds} declined for funds, at most {most} held"
    );
    streamer.cancel.cancel();
    provider.shutdown().await;
    honest.shutdown().await;
}
