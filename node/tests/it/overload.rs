//! A requester under load and a provider that is busy. The provider here
//! is a bare network peer driven by the test (it signs real bids and
//! leases with its own key), so the test decides exactly when it answers
//! "busy" or refuses — the requester is a whole real node.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agora_client::api::{JobSpec, JobState, Role};
use agora_node::daemon::RunningNode;
use agora_node::network::{self, NetworkConfig, NetworkEvent, NetworkHandle, Request, Response};
use agora_node::requester::order::order_from_spec;
use agora_protocol::{Amount, Bid, Keypair, Lease, Ledger, Signed, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::support::{eventually, ledger, node};

/// How the fake provider answers lease proposals and payloads.
#[derive(Clone, Copy)]
enum Policy {
    /// Refuse every lease proposal (the auction moves on, then fails).
    RefuseLeases,
    /// Countersign; answer the first payload "busy", then take it.
    BusyThenAccept,
}

struct FakeProvider {
    network: NetworkHandle,
    payloads: Arc<AtomicUsize>,
    bids: Arc<AtomicUsize>,
    cancel: CancellationToken,
}

fn now() -> Timestamp {
    agora_node::clock::now()
}

/// A network peer that bids on every order it hears and answers as
/// `policy` says.
async fn fake_provider(policy: Policy) -> FakeProvider {
    let key = Keypair::generate().unwrap();
    let cancel = CancellationToken::new();
    let (network, mut events) = network::spawn(
        &key,
        NetworkConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()], vec![]),
        cancel.clone(),
    )
    .await
    .unwrap();
    let payloads = Arc::new(AtomicUsize::new(0));
    let bids = Arc::new(AtomicUsize::new(0));
    let (p, b, net) = (payloads.clone(), bids.clone(), network.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetworkEvent::Order { order, .. } => {
                    let o = order.message();
                    let bid = Bid {
                        limits: agora_protocol::SandboxLimits::default(),
                        order_id: o.id(),
                        provider: key.public(),
                        slot: 0,
                        price_per_gpu_hour: Amount(1_000_000),
                        gpu_count: o.gpu_count,
                        gpu_model: "H100".into(),
                        fp32_mtflops: 67_000,
                        hold_until: now().plus_secs(60),
                        created_at: now(),
                        simulated: true,
                    };
                    let signed = Signed::sign(bid, &key).unwrap();
                    let (net, to, b) = (net.clone(), o.requester.peer_id(), b.clone());
                    // Bids go out at once; a busy requester is asked again.
                    tokio::spawn(async move {
                        for _ in 0..20 {
                            match net.request(to, Request::Bid(signed.clone())).await {
                                Ok(Response::Ack) => {
                                    b.fetch_add(1, Ordering::SeqCst);
                                    return;
                                }
                                Ok(Response::Refused(_)) => return,
                                _ => tokio::time::sleep(Duration::from_millis(200)).await,
                            }
                        }
                    });
                }
                NetworkEvent::Request {
                    request: Request::LeaseProposal(_),
                    reply,
                    ..
                } if matches!(policy, Policy::RefuseLeases) => {
                    // Slowly, so that every lease attempt is in flight at
                    // once: more than the requester's pool runs.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(5000)).await;
                        let _ = reply.send(Response::Refused(
                            "this test provider leases nothing".into(),
                        ));
                    });
                }
                NetworkEvent::Request { request, reply, .. } => {
                    let response = match (policy, request) {
                        (Policy::BusyThenAccept, Request::LeaseProposal(terms)) => {
                            let lease = Lease::countersign(&terms, &key).unwrap();
                            Response::Lease(lease.cosigned().clone())
                        }
                        (Policy::BusyThenAccept, Request::JobPayload(_)) => {
                            if p.fetch_add(1, Ordering::SeqCst) == 0 {
                                Response::Retry("busy; retry later".into())
                            } else {
                                Response::Ack
                            }
                        }
                        _ => Response::Refused("not handled by this test provider".into()),
                    };
                    let _ = reply.send(response);
                }
                _ => {}
            }
        }
    });
    FakeProvider {
        network,
        payloads,
        bids,
        cancel,
    }
}

fn spec(bid_window_ms: u32) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "command": ["true"],
        "resources": {"gpus": 1},
        "constraints": {"allow_simulated": true},
        "market": {
            "max_price_per_gpu_hour": "3",
            "max_duration_secs": 60,
            "bid_window_ms": bid_window_ms
        }
    }))
    .unwrap()
}

/// A requester node joined to the fake provider, funded, with the fake in
/// its orders mesh.
async fn requester_for(
    fake: &FakeProvider,
    dir: &std::path::Path,
    ledger: &Arc<dyn Ledger>,
) -> RunningNode {
    let info = fake.network.info().await.unwrap();
    let boot = info.listen_addrs[0].clone();
    let requester = node(
        &dir.join("requester"),
        Role::Requester,
        "",
        ledger,
        vec![boot],
    )
    .await;
    ledger
        .deposit(
            &requester.ready.account.parse().unwrap(),
            Amount(1_000_000_000_000),
        )
        .await
        .unwrap();
    eventually(30, "the fake provider in the requester's mesh", || async {
        let info = fake.network.info().await.ok()?;
        (info.mesh_peers >= 1).then_some(())
    })
    .await;
    requester
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_answers_busy_gets_the_payload_on_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let fake = fake_provider(Policy::BusyThenAccept).await;
    let requester = requester_for(&fake, dir.path(), &ledger).await;
    let account: agora_protocol::PublicKey = requester.ready.account.parse().unwrap();
    let spec = spec(300);
    let order = order_from_spec(&spec, &account, [7; 16], now()).unwrap();
    let job = eventually(30, "the job to be placed", || {
        let (market, order, spec) = (requester.market.clone(), order.clone(), spec.clone());
        async move { market.submit(order, spec, None).await.ok() }
    })
    .await;
    let delivered = eventually(30, "the payload delivered on a retry", || async {
        let view = requester.market.job(job.id.clone()).await.ok()?;
        view.events
            .iter()
            .any(|e| e.event == "payload_delivered")
            .then_some(view)
    })
    .await;
    assert_eq!(delivered.state, JobState::Leased, "{:?}", delivered.events);
    assert_eq!(
        fake.payloads.load(Ordering::SeqCst),
        2,
        "refused once as busy, taken on the retry"
    );
    assert!(
        !delivered.events.iter().any(|e| e.event == "failed"),
        "a busy answer is not a refusal: {:?}",
        delivered.events
    );
    fake.cancel.cancel();
    requester.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_at_once_each_end_or_are_refused_with_a_reason() {
    const JOBS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let fake = fake_provider(Policy::RefuseLeases).await;
    let requester = requester_for(&fake, dir.path(), &ledger).await;
    let account: agora_protocol::PublicKey = requester.ready.account.parse().unwrap();
    // All submitted at once, each with a 3 s bid window: 1000 auctions
    // close together and 1000 lease attempts (more than the 512 the pool
    // runs at once) go out, each answered only after 5 s.
    let mut submits = tokio::task::JoinSet::new();
    for n in 0..JOBS {
        let market = requester.market.clone();
        let spec = spec(3000);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let order = order_from_spec(&spec, &account, nonce, now()).unwrap();
        submits.spawn(async move { market.submit(order, spec, None).await });
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    while let Some(result) = submits.join_next().await {
        match result.unwrap() {
            Ok(view) => accepted.push(view.id),
            Err(e) => {
                // A refusal says why.
                assert!(!e.message.is_empty());
                refused += 1;
            }
        }
    }
    assert_eq!(accepted.len() + refused, JOBS);
    let states = eventually(240, "every job to reach a terminal state", || async {
        let jobs = requester.market.jobs().await.ok()?;
        let mut by_state: HashMap<String, usize> = HashMap::new();
        for job in &jobs {
            *by_state.entry(format!("{:?}", job.state)).or_default() += 1;
        }
        jobs.iter()
            .all(|j| j.state.is_terminal())
            .then_some((jobs, by_state))
    })
    .await;
    let (jobs, by_state) = states;
    println!(
        "1000 jobs at once: {by_state:?}, {refused} refused at submission, {} bids taken",
        fake.bids.load(Ordering::SeqCst)
    );
    assert_eq!(jobs.len(), accepted.len(), "{by_state:?}");
    for job in &jobs {
        // Failed and no-bid jobs say why; none is left without a reason.
        assert!(
            job.reason.as_deref().is_some_and(|r| !r.is_empty()),
            "{job:?}"
        );
    }
    // The auctions really went to leasing: bids arrived and were refused.
    assert!(fake.bids.load(Ordering::SeqCst) > 0, "{by_state:?}");
    let leased_then_refused = jobs
        .iter()
        .filter(|j| j.events.iter().any(|e| e.event == "lease_refused"))
        .count();
    assert!(leased_then_refused > JOBS / 2, "{by_state:?}");
    // More lease attempts were in flight than the pool runs: they waited
    // their turn rather than being dropped.
    let tasks = requester.market.info().await.unwrap().tasks;
    assert!(
        leased_then_refused > agora_node::market::MAX_TASKS && tasks.most_queued > 0,
        "{tasks:?}"
    );
    assert_eq!(
        (tasks.lost, tasks.running, tasks.queued),
        (0, 0, 0),
        "{tasks:?}"
    );
    fake.cancel.cancel();
    requester.shutdown().await;
}
