//! The requester core on its own: virtual time, no sockets, no store.
//! Each test drives the core with the events a network, a ledger and a
//! clock would bring and checks the effects and the job it keeps.

use agora_client::api::{JobSpec, JobState};
use agora_protocol::amount::cost;
use agora_protocol::ledger::EscrowState;
use agora_protocol::{
    Amount, Bid, CloseClaim, CloseReason, Decline, DeclineReason, Keypair, Lease, LeaseClose,
    LeaseId, LeaseTerms, Manifest, ManifestFile, Order, OrderId, ReceiptClaim, RunEvent, Signed,
    Timestamp, UsageReceipt,
};

use super::core::{Delivery, Effect, Requester, Settings, Task, TaskKind, TaskResult};
use super::job::JobRecord;
use super::lease::{LeaseFailure, LeaseOutcome};
use super::order::order_from_spec;
use crate::network::wire::{JobUpdate, LogEntry};
use crate::network::{Request, Response};
use agora_client::api::LogKind;

const T0: Timestamp = Timestamp(1_700_000_000_000);
const INTERVAL: u32 = 2;

fn requester_key() -> Keypair {
    Keypair::from_seed(&[1; 32])
}

fn provider(n: u8) -> Keypair {
    Keypair::from_seed(&[10 + n; 32])
}

fn core() -> Requester {
    Requester::restore(
        requester_key(),
        Settings {
            receipt_interval_secs: INTERVAL,
        },
        Vec::new(),
        T0,
    )
}

fn spec() -> JobSpec {
    serde_json::from_str(
        r#"{"command":["true"],"resources":{"gpus":1},
            "constraints":{"allow_simulated":true},
            "market":{"max_price_per_gpu_hour":"3","max_duration_secs":600,"bid_window_ms":1000}}"#,
    )
    .unwrap()
}

fn order(nonce: u8) -> Order {
    order_from_spec(&spec(), &requester_key().public(), [nonce; 16], T0).unwrap()
}

fn bid(order: OrderId, p: &Keypair, price: u64) -> Signed<Bid> {
    let bid = Bid {
        limits: agora_protocol::SandboxLimits::default(),
        order_id: order,
        provider: p.public(),
        slot: 0,
        price_per_gpu_hour: Amount(price),
        gpu_count: 1,
        gpu_model: "H100".into(),
        fp32_mtflops: 67_000,
        hold_until: T0.plus_secs(30),
        created_at: T0,
        simulated: true,
    };
    Signed::sign(bid, p).unwrap()
}

fn lease_tasks(effects: &[Effect]) -> Vec<Signed<LeaseTerms>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start(_, Task::Lease(p)) => Some((**p).clone()),
            _ => None,
        })
        .collect()
}

fn has_task(effects: &[Effect], want: impl Fn(&Task) -> bool) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::Start(_, task) if want(task)))
}

fn event_names(core: &Requester, id: &OrderId) -> Vec<&'static str> {
    core.job(id)
        .unwrap()
        .events
        .iter()
        .map(|e| e.kind.name())
        .collect()
}

/// Submits an auctioned job and returns its id.
fn auctioned(core: &mut Requester, nonce: u8) -> OrderId {
    let id = core.submit(order(nonce), spec(), None, T0).unwrap();
    let effects = core.take_effects();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Publish(o, _) if *o == id)),
        "the order is published"
    );
    id
}

/// The provider countersigns the proposal (the core stores the lease and
/// asks for its lock).
fn countersigned(
    core: &mut Requester,
    proposal: &Signed<LeaseTerms>,
    p: &Keypair,
    now: Timestamp,
) -> Lease {
    let lease = Lease::countersign(proposal, p).unwrap();
    let outcome = LeaseOutcome {
        order: proposal.message().order_id,
        provider: p.public(),
        result: Ok(lease.clone()),
    };
    core.on_task(
        proposal.message().order_id,
        TaskResult::Lease(Box::new(outcome)),
        now,
    );
    lease
}

/// The provider countersigns the proposal; the escrow is locked.
fn funded(
    core: &mut Requester,
    proposal: &Signed<LeaseTerms>,
    p: &Keypair,
    now: Timestamp,
) -> Lease {
    let lease = countersigned(core, proposal, p, now);
    core.on_task(proposal.message().order_id, TaskResult::Locked(Ok(())), now);
    lease
}

/// A job leased to provider 1 at `T0 + 1 s`, its payload delivered.
fn leased(core: &mut Requester) -> (OrderId, Lease) {
    leased_nonce(core, 1)
}

fn leased_nonce(core: &mut Requester, nonce: u8) -> (OrderId, Lease) {
    let id = auctioned(core, nonce);
    let p = provider(1);
    assert!(matches!(
        core.on_bid(p.public().peer_id(), bid(id, &p, 2_000_000), T0)
            .response,
        Response::Ack
    ));
    core.tick(T0.plus_secs(1));
    let proposal = lease_tasks(&core.take_effects()).remove(0);
    let lease = funded(core, &proposal, &p, T0.plus_secs(1));
    let effects = core.take_effects();
    assert!(has_task(&effects, |t| matches!(
        t,
        Task::Deliver {
            what: Delivery::Payload,
            ..
        }
    )));
    core.on_task(
        id,
        TaskResult::Delivered(Delivery::Payload, Ok(())),
        T0.plus_secs(1),
    );
    core.take_effects();
    (id, lease)
}

fn receipt(
    lease: &Lease,
    p: &Keypair,
    sequence: u64,
    gpu_seconds: u64,
    at: Timestamp,
    end: Option<(i32, [u8; 32])>,
) -> Signed<UsageReceipt> {
    let r = UsageReceipt {
        lease_id: lease.id(),
        sequence,
        gpu_seconds,
        cumulative_amount: cost(lease.terms().price_per_gpu_hour, gpu_seconds).unwrap(),
        issued_at: at,
        is_final: end.is_some(),
        result_hash: end.map(|(_, h)| h),
        exit_status: end.map(|(c, _)| c),
    };
    ReceiptClaim::sign_as_provider(r, p).unwrap()
}

fn escrow(lease: &Lease, settled: Amount, refunded: Option<Amount>) -> EscrowState {
    EscrowState {
        lease_id: lease.id(),
        requester: lease.terms().requester,
        provider: lease.terms().provider,
        escrow: lease.terms().escrow,
        settled,
        last_sequence: 1,
        final_settled: true,
        ends_at: lease.terms().ends_at(),
        closable_at: lease.terms().ends_at(),
        refunded,
        ops: if refunded.is_some() { 3 } else { 2 },
    }
}

#[test]
fn an_auction_takes_bids_and_declines_ignores_a_silent_bidder_and_leases_the_cheapest() {
    let mut core = core();
    let id = auctioned(&mut core, 1);
    let (cheap, dear, declining) = (provider(1), provider(2), provider(3));
    // provider(4) never answers: the window closes without it.
    for (p, price) in [(&dear, 2_500_000), (&cheap, 2_000_000)] {
        let answer = core.on_bid(p.public().peer_id(), bid(id, p, price), T0);
        assert!(matches!(answer.response, Response::Ack));
        assert!(
            !answer.flush,
            "a bid creates no obligation for the requester"
        );
    }
    // A bid relayed by someone else is refused.
    let forged = core.on_bid(dear.public().peer_id(), bid(id, &cheap, 1), T0);
    assert!(matches!(forged.response, Response::Refused(_)));
    let decline = Decline {
        order_id: id,
        provider: declining.public(),
        reason: DeclineReason::Price,
        detail: "floor 4".into(),
        created_at: T0,
    };
    let signed = Signed::sign(decline, &declining).unwrap();
    assert!(matches!(
        core.on_decline(declining.public().peer_id(), signed, T0)
            .response,
        Response::Ack
    ));
    // Before the window closes nothing is proposed.
    core.tick(T0.plus_ms(999));
    assert!(lease_tasks(&core.take_effects()).is_empty());
    assert_eq!(core.next_wake(), Some(T0.plus_ms(1000)));
    core.tick(T0.plus_ms(1000));
    let proposals = lease_tasks(&core.take_effects());
    assert_eq!(proposals.len(), 1);
    assert_eq!(proposals[0].message().provider, cheap.public());
    assert_eq!(proposals[0].message().receipt_interval_secs, INTERVAL);
    let job = core.job(&id).unwrap();
    assert_eq!(job.state, JobState::Leasing);
    assert_eq!(job.bids.len(), 2);
    assert_eq!(job.declines.len(), 1);
    // A bid after the close is refused.
    let late = core.on_bid(
        dear.public().peer_id(),
        bid(id, &dear, 1_000_000),
        T0.plus_secs(2),
    );
    assert!(matches!(late.response, Response::Refused(_)));
}

#[test]
fn nobody_bidding_ends_the_job_with_every_decline_named() {
    let mut core = core();
    let id = auctioned(&mut core, 1);
    let p = provider(1);
    let decline = Decline {
        order_id: id,
        provider: p.public(),
        reason: DeclineReason::NoCapacity,
        detail: "all 2 busy".into(),
        created_at: T0,
    };
    core.on_decline(p.public().peer_id(), Signed::sign(decline, &p).unwrap(), T0);
    core.tick(T0.plus_secs(5));
    let job = core.job(&id).unwrap();
    assert_eq!(job.state, JobState::NoBids);
    assert!(job.reason.as_deref().unwrap().contains("all 2 busy"));
}

#[test]
fn finished_jobs_past_their_age_or_count_are_retired_oldest_first_and_live_ones_never() {
    let mut core = core();
    // Three jobs finish (no bids) at 2 s, 12 s and 22 s; a fourth is still
    // bidding.
    let mut finished = Vec::new();
    for (nonce, at) in [(1u8, 0u64), (2, 10), (3, 20)] {
        let submitted = T0.plus_secs(at);
        let order =
            order_from_spec(&spec(), &requester_key().public(), [nonce; 16], submitted).unwrap();
        let id = core.submit(order, spec(), None, submitted).unwrap();
        core.tick(submitted.plus_secs(2));
        assert_eq!(core.job(&id).unwrap().state, JobState::NoBids);
        finished.push(id);
    }
    let live_at = T0.plus_secs(30);
    let live_order = order_from_spec(&spec(), &requester_key().public(), [4; 16], live_at).unwrap();
    let live = core.submit(live_order, spec(), None, live_at).unwrap();
    core.take_effects();
    // Keep two: the oldest goes.
    let day = 24 * 3600 * 1000;
    assert_eq!(core.retire(live_at, day, 2), vec![finished[0]]);
    assert!(core.job(&finished[0]).is_none());
    // Nothing more is past its age or count.
    assert!(core.retire(live_at, day, 2).is_empty());
    // 15 s of age: the one that finished at 12 s goes, the one at 22 s stays.
    assert_eq!(core.retire(live_at, 15_000, 10), vec![finished[1]]);
    // Everything finished, however many are kept, once old enough; never
    // the job still bidding.
    assert_eq!(
        core.retire(live_at.plus_secs(100), 1_000, 0),
        vec![finished[2]]
    );
    assert!(core.retire(live_at.plus_secs(100), 0, 0).is_empty());
    assert_eq!(core.job(&live).unwrap().state, JobState::Bidding);
}

#[test]
fn a_refused_lease_moves_to_the_next_bid_and_the_last_refusal_fails_the_job() {
    let mut core = core();
    let id = auctioned(&mut core, 1);
    let (a, b) = (provider(1), provider(2));
    core.on_bid(a.public().peer_id(), bid(id, &a, 2_000_000), T0);
    core.on_bid(b.public().peer_id(), bid(id, &b, 2_200_000), T0);
    core.tick(T0.plus_secs(1));
    let first = lease_tasks(&core.take_effects()).remove(0);
    assert_eq!(first.message().provider, a.public());
    let refused = |p: &Keypair| LeaseOutcome {
        order: id,
        provider: p.public(),
        result: Err(LeaseFailure::Provider("refused: GPUs gone".into())),
    };
    core.on_task(
        id,
        TaskResult::Lease(Box::new(refused(&a))),
        T0.plus_secs(1),
    );
    let second = lease_tasks(&core.take_effects()).remove(0);
    assert_eq!(second.message().provider, b.public());
    core.on_task(
        id,
        TaskResult::Lease(Box::new(refused(&b))),
        T0.plus_secs(1),
    );
    let job = core.job(&id).unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.reason.as_deref(),
        Some("every bidder refused or could not be reached")
    );
    assert_eq!(
        event_names(&core, &id)
            .iter()
            .filter(|e| **e == "lease_refused")
            .count(),
        2
    );
}

#[test]
fn a_lease_attempt_the_pool_could_not_run_fails_the_job_with_the_reason() {
    let mut core = core();
    let id = auctioned(&mut core, 1);
    let a = provider(1);
    core.on_bid(a.public().peer_id(), bid(id, &a, 2_000_000), T0);
    core.tick(T0.plus_secs(1));
    core.take_effects();
    let lost = super::core::TaskKind::Lease.lost("this node is overloaded".into());
    core.on_task(id, lost, T0.plus_secs(1));
    let job = core.job(&id).unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.reason.as_deref().unwrap().contains("overloaded"));
}

#[test]
fn a_receipt_claiming_more_than_the_requesters_clock_allows_is_refused() {
    let mut core = core();
    let (id, lease) = leased(&mut core);
    let p = provider(1);
    let started = T0.plus_secs(1);
    // 10 s after the lease began, a receipt for 60 GPU-seconds.
    let greedy = receipt(&lease, &p, 1, 60, started.plus_secs(10), None);
    let answer = core.on_receipt(p.public().peer_id(), greedy, started.plus_secs(10));
    assert!(
        matches!(&answer.response, Response::Refused(r) if r.contains("receipt refused")),
        "{:?}",
        answer.response
    );
    assert!(core.job(&id).unwrap().receipt.is_none());
    // An honest one is countersigned, durably, and the job is running.
    let honest = receipt(&lease, &p, 1, 10, started.plus_secs(10), None);
    let answer = core.on_receipt(p.public().peer_id(), honest, started.plus_secs(10));
    assert!(matches!(answer.response, Response::Receipt(_)));
    assert!(
        answer.flush,
        "a countersignature is durable before it goes out"
    );
    let job = core.job(&id).unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.receipt().unwrap().receipt().gpu_seconds, 10);
    // Another node cannot report on the job.
    let stranger = provider(7);
    let forged = receipt(&lease, &stranger, 2, 12, started.plus_secs(12), None);
    let answer = core.on_receipt(stranger.public().peer_id(), forged, started.plus_secs(12));
    assert!(matches!(answer.response, Response::Refused(_)));
}

#[test]
fn each_countersigned_increase_is_spent_once_and_a_resend_spends_nothing() {
    let mut core = core();
    let (_id, lease) = leased(&mut core);
    let p = provider(1);
    let peer = p.public().peer_id();
    let spent = |effects: Vec<Effect>| -> Vec<(u64, Amount)> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Spent(m) => Some((m.sequence, m.amount)),
                _ => None,
            })
            .collect()
    };
    let at = T0.plus_secs(12);
    let first = receipt(&lease, &p, 1, 10, at, None);
    core.on_receipt(peer, first.clone(), at);
    let one = cost(lease.terms().price_per_gpu_hour, 10).unwrap();
    assert_eq!(spent(core.take_effects()), [(1, one)]);
    // The provider resends it (its answer was lost): countersigned again,
    // spent not again.
    let answer = core.on_receipt(peer, first, at);
    assert!(matches!(answer.response, Response::Receipt(_)));
    assert_eq!(spent(core.take_effects()), []);
    // The next one adds only its increase.
    let at = T0.plus_secs(14);
    core.on_receipt(peer, receipt(&lease, &p, 2, 12, at, None), at);
    let two = cost(lease.terms().price_per_gpu_hour, 12).unwrap();
    assert_eq!(spent(core.take_effects()), [(2, two.saturating_sub(one))]);
    // A refused receipt spends nothing.
    let greedy = receipt(&lease, &p, 3, 600, at, None);
    core.on_receipt(peer, greedy, at);
    assert_eq!(spent(core.take_effects()), []);
}

#[test]
fn typed_run_events_move_the_job_and_the_exit_code_is_never_read_from_text() {
    let mut core = core();
    let (id, lease) = leased(&mut core);
    let p = provider(1);
    let entry = |seq, event: Option<RunEvent>, data: &str| LogEntry {
        seq,
        at: T0.plus_secs(2),
        kind: if event.is_some() {
            LogKind::Event
        } else {
            LogKind::Stdout
        },
        event,
        data: data.as_bytes().to_vec(),
    };
    let update = JobUpdate {
        lease_id: lease.id(),
        entries: vec![
            entry(1, Some(RunEvent::Accepted), "0 input file(s)"),
            entry(2, Some(RunEvent::Started), "GPUs [0]"),
            // Output that looks like an event changes nothing.
            entry(3, None, "exit status 0\n"),
        ],
        manifest: None,
    };
    let answer = core.on_update(p.public().peer_id(), update, T0.plus_secs(2));
    assert!(matches!(answer.response, Response::UpdateAck(4)));
    assert!(answer.flush);
    assert_eq!(core.job(&id).unwrap().state, JobState::Running);
    assert_eq!(core.job(&id).unwrap().exit_code, None);
    // The text says 0, the typed event says 3: the event wins.
    let update = JobUpdate {
        lease_id: lease.id(),
        entries: vec![entry(
            4,
            Some(RunEvent::Exited { code: 3 }),
            "exit status 0",
        )],
        manifest: None,
    };
    core.on_update(p.public().peer_id(), update, T0.plus_secs(3));
    let job = core.job(&id).unwrap();
    assert_eq!(job.exit_code, Some(3));
    assert_eq!(job.state, JobState::Settling);
    // A resent entry is not logged twice.
    let log_seq = job.log_seq;
    let update = JobUpdate {
        lease_id: lease.id(),
        entries: vec![entry(4, Some(RunEvent::Exited { code: 3 }), "again")],
        manifest: None,
    };
    let answer = core.on_update(p.public().peer_id(), update, T0.plus_secs(3));
    assert!(matches!(answer.response, Response::UpdateAck(5)));
    assert_eq!(core.job(&id).unwrap().log_seq, log_seq);
}

#[test]
fn a_silent_provider_is_given_up_after_two_intervals_plus_grace() {
    let mut core = core();
    let (id, _) = leased(&mut core);
    let heard = T0.plus_secs(1);
    let limit = 2 * u64::from(INTERVAL) * 1000 + super::run::SILENCE_GRACE_MS;
    core.tick(heard.plus_ms(limit));
    assert_eq!(core.job(&id).unwrap().state, JobState::Leased);
    core.tick(heard.plus_ms(limit + 1));
    let job = core.job(&id).unwrap();
    assert_eq!(job.state, JobState::Settling);
    assert_eq!(
        job.reason.as_deref(),
        Some("the provider stopped responding")
    );
    // The same tick starts reading the escrow, once.
    assert!(has_task(&core.take_effects(), |t| matches!(
        t,
        Task::ReadEscrow(_)
    )));
    core.tick(heard.plus_ms(limit + 2));
    assert!(!has_task(&core.take_effects(), |t| matches!(
        t,
        Task::ReadEscrow(_)
    )));
}

#[test]
fn a_finished_job_is_settled_closed_refunded_and_its_outputs_fetched() {
    let mut core = core();
    let (id, lease) = leased(&mut core);
    let p = provider(1);
    let manifest = Manifest {
        lease_id: lease.id(),
        files: vec![ManifestFile {
            path: "out.txt".into(),
            size: 3,
            blake3: *blake3::hash(b"abc").as_bytes(),
        }],
        note: String::new(),
    };
    let bytes = manifest.encode();
    let update = JobUpdate {
        lease_id: lease.id(),
        entries: Vec::new(),
        manifest: Some(bytes.clone()),
    };
    core.on_update(p.public().peer_id(), update, T0.plus_secs(3));
    let at = T0.plus_secs(4);
    let last = receipt(&lease, &p, 1, 3, at, Some((0, Manifest::hash(&bytes))));
    let answer = core.on_receipt(p.public().peer_id(), last, at);
    assert!(matches!(answer.response, Response::Receipt(_)));
    let effects = core.take_effects();
    assert!(has_task(&effects, |t| matches!(t, Task::Fetch { .. })));
    assert_eq!(core.job(&id).unwrap().state, JobState::Settling);
    // The escrow is read within 25 ms of the final receipt.
    assert_eq!(core.next_wake(), Some(at.plus_ms(25)));
    core.tick(at.plus_ms(25));
    assert!(has_task(&core.take_effects(), |t| matches!(
        t,
        Task::ReadEscrow(_)
    )));
    let paid = cost(lease.terms().price_per_gpu_hour, 3).unwrap();
    let refund = lease.terms().escrow.checked_sub(paid).unwrap();
    let closed = escrow(&lease, paid, Some(refund));
    core.on_task(
        id,
        TaskResult::Escrow(Ok(Some(Box::new(closed)))),
        at.plus_ms(30),
    );
    // Closed, but the outputs are still coming: not finished yet.
    assert_eq!(core.job(&id).unwrap().state, JobState::Settling);
    core.on_task(id, TaskResult::Fetched(Ok(1)), at.plus_ms(40));
    let job = core.job(&id).unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert!(job.results_fetched);
    let s = job.settlement.unwrap();
    assert_eq!((s.settled, s.refunded), (paid, Some(refund)));
    let names = event_names(&core, &id);
    assert!(names.contains(&"closed") && names.ends_with(&["finished"]));
    assert_eq!(core.next_wake(), None, "nothing more to do");
}

/// The provider's early close of `lease` for `gpu_seconds`, signed by `p`.
fn early_close(
    lease: &Lease,
    p: &Keypair,
    gpu_seconds: u64,
    reason: CloseReason,
) -> Signed<LeaseClose> {
    let close = LeaseClose::new(lease, gpu_seconds, reason, T0);
    CloseClaim::sign_as_provider(close, p).unwrap()
}

#[test]
fn an_early_close_is_countersigned_only_up_to_what_was_countersigned_and_ends_the_job() {
    let mut core = core();
    let (id, lease) = leased(&mut core);
    let p = provider(1);
    let peer = p.public().peer_id();
    let at = T0.plus_secs(12);
    core.on_receipt(peer, receipt(&lease, &p, 1, 10, at, None), at);
    assert_eq!(core.job(&id).unwrap().state, JobState::Running);
    core.take_effects();
    // More than countersigned: refused, and the job runs on.
    let greedy = early_close(&lease, &p, 11, CloseReason::ProviderRestarted);
    let answer = core.on_close(peer, greedy, at);
    assert!(
        matches!(&answer.response, Response::Refused(r) if r.contains("close refused")),
        "{:?}",
        answer.response
    );
    assert_eq!(core.job(&id).unwrap().state, JobState::Running);
    // Another node cannot close the lease.
    let stranger = provider(7);
    let forged = early_close(&lease, &stranger, 10, CloseReason::ProviderRestarted);
    let answer = core.on_close(stranger.public().peer_id(), forged, at);
    assert!(matches!(answer.response, Response::Refused(_)));
    // The countersigned amount: countersigned, durably, verifiable by both
    // keys, and the job settles with the provider's reason.
    let honest = early_close(&lease, &p, 10, CloseReason::ProviderRestarted);
    let answer = core.on_close(peer, honest.clone(), at);
    let Response::Close(cosigned) = &answer.response else {
        panic!("{:?}", answer.response);
    };
    assert!(
        answer.flush,
        "a countersignature is durable before it goes out"
    );
    let claim = CloseClaim::from_cosigned(cosigned.clone()).unwrap();
    assert_eq!(claim.cosigned().body(), honest.envelope().body());
    let t = lease.terms();
    claim.verify(&t.requester, &t.provider).unwrap();
    let job = core.job(&id).unwrap();
    assert_eq!(job.state, JobState::Settling);
    assert!(job.reason.as_deref().unwrap().contains("restarted"));
    assert!(event_names(&core, &id).contains(&"close_countersigned"));
    // The escrow is read soon; closed, the job fails with the reason.
    core.tick(at.plus_ms(25));
    assert!(has_task(&core.take_effects(), |t| matches!(
        t,
        Task::ReadEscrow(_)
    )));
    let paid = cost(t.price_per_gpu_hour, 10).unwrap();
    let refund = t.escrow.checked_sub(paid).unwrap();
    let closed = escrow(&lease, paid, Some(refund));
    core.on_task(
        id,
        TaskResult::Escrow(Ok(Some(Box::new(closed)))),
        at.plus_ms(30),
    );
    let job = core.job(&id).unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.reason.as_deref().unwrap().contains("restarted"));
}

#[test]
fn a_manifest_that_does_not_match_the_final_receipt_is_not_fetched() {
    let mut core = core();
    let (id, lease) = leased(&mut core);
    let p = provider(1);
    let manifest = Manifest {
        lease_id: lease.id(),
        files: Vec::new(),
        note: String::new(),
    };
    let update = JobUpdate {
        lease_id: lease.id(),
        entries: Vec::new(),
        manifest: Some(manifest.encode()),
    };
    core.on_update(p.public().peer_id(), update, T0.plus_secs(3));
    let last = receipt(&lease, &p, 1, 3, T0.plus_secs(4), Some((0, [9; 32])));
    core.on_receipt(p.public().peer_id(), last, T0.plus_secs(4));
    let effects = core.take_effects();
    assert!(!has_task(&effects, |t| matches!(t, Task::Fetch { .. })));
    assert!(event_names(&core, &id).contains(&"results_failed"));
}

#[test]
fn cancelling_before_a_lease_pays_nothing_and_after_tells_the_provider() {
    let mut core = core();
    let id = auctioned(&mut core, 1);
    core.cancel(&id, T0.plus_ms(10)).unwrap();
    assert_eq!(core.job(&id).unwrap().state, JobState::Cancelled);
    assert!(core.cancel(&id, T0.plus_ms(20)).is_err(), "already stopped");
    let (leased_id, _) = leased_nonce(&mut core, 2);
    core.cancel(&leased_id, T0.plus_secs(2)).unwrap();
    assert!(has_task(&core.take_effects(), |t| matches!(
        t,
        Task::Deliver {
            what: Delivery::Cancel,
            request,
            ..
        } if matches!(**request, Request::JobControl(_))
    )));
}

/// Every state survives a restart and resumes with its next step.
#[test]
fn a_restart_in_every_state_resumes_where_the_job_was() {
    let mut core = core();
    // Bidding.
    let bidding = auctioned(&mut core, 1);
    // Leasing with a bid (the attempt in flight is lost with the node).
    let leasing = auctioned(&mut core, 2);
    let p = provider(1);
    core.on_bid(p.public().peer_id(), bid(leasing, &p, 2_000_000), T0);
    // Leased, payload not yet delivered.
    let leased_id = auctioned(&mut core, 3);
    core.on_bid(p.public().peer_id(), bid(leased_id, &p, 2_000_000), T0);
    core.tick(T0.plus_secs(1).plus_ms(1));
    // Only the first two jobs' windows had 1 s; all three closed now.
    for proposal in lease_tasks(&core.take_effects()) {
        if proposal.message().order_id == leased_id {
            funded(&mut core, &proposal, &p, T0.plus_secs(1));
        }
    }
    core.take_effects();
    let states: Vec<_> = [bidding, leasing, leased_id]
        .iter()
        .map(|id| core.job(id).unwrap().state)
        .collect();
    assert_eq!(
        states,
        vec![JobState::NoBids, JobState::Leasing, JobState::Leased]
    );
    // A fresh bidding job too, closing later.
    let open = core
        .submit(order(4), spec(), None, T0.plus_secs(1))
        .unwrap();
    core.take_effects();

    // Through the store's encoding and back.
    let records: Vec<JobRecord> = core
        .jobs()
        .map(|j| JobRecord::from_json(&j.to_json().unwrap(), |_| None).unwrap())
        .collect();
    for (a, b) in core.jobs().zip(records.iter()) {
        assert_eq!(a, b, "a record survives its encoding");
    }
    let mut restarted = Requester::restore(
        requester_key(),
        Settings {
            receipt_interval_secs: INTERVAL,
        },
        records,
        T0.plus_secs(2),
    );
    let effects = restarted.take_effects();
    // Leasing: the best bid is proposed again.
    assert!(
        lease_tasks(&effects)
            .iter()
            .any(|p| p.message().order_id == leasing)
    );
    // Leased: the payload goes out again.
    assert!(effects.iter().any(|e| matches!(e,
        Effect::Start(o, Task::Deliver { what: Delivery::Payload, .. }) if *o == leased_id)));
    // Bidding: its auction is armed again.
    assert_eq!(restarted.next_wake(), Some(T0.plus_secs(2)));
    restarted.tick(T0.plus_secs(2));
    assert_eq!(restarted.job(&open).unwrap().state, JobState::NoBids);
    // Terminal stays terminal.
    assert_eq!(restarted.job(&bidding).unwrap().state, JobState::NoBids);
    // Settling: after a restart the escrow is read on the next tick.
    let (settling, lease) = leased_nonce(&mut restarted, 5);
    let last = receipt(&lease, &p, 1, 2, T0.plus_secs(3), Some((0, [0; 32])));
    restarted.on_receipt(p.public().peer_id(), last, T0.plus_secs(3));
    let record = restarted.job(&settling).unwrap().clone();
    assert_eq!(record.state, JobState::Settling);
    let mut again = Requester::restore(
        requester_key(),
        Settings {
            receipt_interval_secs: INTERVAL,
        },
        vec![record],
        T0.plus_secs(4),
    );
    again.tick(T0.plus_secs(4));
    assert!(has_task(
        &again.take_effects(),
        |t| matches!(t, Task::ReadEscrow(l) if *l == lease.id())
    ));
}

#[test]
fn a_job_stored_in_the_first_format_is_migrated_and_an_unknown_one_refused() {
    let mut core = core();
    let (id, lease) = leased(&mut core);
    let job = core.job(&id).unwrap();
    let v1 = serde_json::json!({
        "view": crate::views::job_view(job),
        "order": hex::encode(job.order.0.encode()),
        "bids": job.bids.iter().map(|b| hex::encode(b.bid.0.encode())).collect::<Vec<_>>(),
        "tried": job.tried,
        "closes_at": job.closes_at,
        "run": {
            "payload_delivered": true,
            "provider_entries": 4,
            "receipt": null,
            "manifest": null,
            "cancel_requested": false,
            "cancel_delivered": false,
            "last_heard": T0.plus_secs(1),
            "events_logged": 3,
            "fetch_done": false
        }
    });
    let bytes = serde_json::to_vec(&v1).unwrap();
    let lease_copy = lease.clone();
    let migrated = JobRecord::from_json(&bytes, move |lid: &LeaseId| {
        (*lid == lease_copy.id()).then(|| lease_copy.clone())
    })
    .unwrap();
    assert_eq!(migrated.id(), id);
    assert_eq!(migrated.state, JobState::Leased);
    assert_eq!(migrated.lease().map(Lease::id), Some(lease.id()));
    assert_eq!(migrated.bids.len(), 1);
    assert_eq!(migrated.run.provider_entries, 4);
    assert_eq!(migrated.events, job.events);

    let mut future = serde_json::to_value(&migrated).unwrap();
    future["format"] = serde_json::json!(99);
    let err = JobRecord::from_json(&serde_json::to_vec(&future).unwrap(), |_| None).unwrap_err();
    assert!(
        err.contains("format 99") && err.contains("move the data dir"),
        "{err}"
    );
}

#[test]
fn a_countersigned_lease_is_stored_before_its_lock_and_a_restart_locks_it_again() {
    // Found by the chaos testnet on anvil: a requester killed while its
    // lock was on the way forgot the lease (stored only once locked), failed
    // the job, and left the escrow locked with nobody to close it.
    let mut core = core();
    let id = auctioned(&mut core, 1);
    let p = provider(1);
    core.on_bid(p.public().peer_id(), bid(id, &p, 2_000_000), T0);
    core.tick(T0.plus_secs(1));
    let proposal = lease_tasks(&core.take_effects()).remove(0);
    let lease = countersigned(&mut core, &proposal, &p, T0.plus_secs(1));
    let effects = core.take_effects();
    // The record with the lease is written first, then the lock starts.
    let stored = effects
        .iter()
        .position(|e| matches!(e, Effect::Persist(o) if *o == id));
    let lock = effects.iter().position(
        |e| matches!(e, Effect::Start(o, Task::Lock(l)) if *o == id && l.id() == lease.id()),
    );
    assert!(
        matches!((stored, lock), (Some(s), Some(l)) if s < l),
        "{effects:#?}"
    );
    let record = core.job(&id).unwrap().clone();
    assert_eq!(record.state, JobState::Leasing);
    assert_eq!(record.lease().map(|l| l.id()), Some(lease.id()));
    assert!(!record.escrow_locked);
    // Killed now: the restarted node locks the same lease again (a lock is
    // idempotent) instead of proposing a new one or failing the job.
    let record = JobRecord::from_json(&record.to_json().unwrap(), |_| None).unwrap();
    let mut restarted = Requester::restore(
        requester_key(),
        Settings {
            receipt_interval_secs: INTERVAL,
        },
        vec![record],
        T0.plus_secs(2),
    );
    let effects = restarted.take_effects();
    assert!(
        has_task(
            &effects,
            |t| matches!(t, Task::Lock(l) if l.id() == lease.id())
        ),
        "{effects:#?}"
    );
    assert!(lease_tasks(&effects).is_empty(), "{effects:#?}");
    assert!(restarted.instant_to_resume().is_empty());
    // The lock lands: the job is leased and its payload goes out.
    restarted.on_task(id, TaskResult::Locked(Ok(())), T0.plus_secs(2));
    assert_eq!(restarted.job(&id).unwrap().state, JobState::Leased);
    assert!(restarted.job(&id).unwrap().escrow_locked);
    assert!(has_task(&restarted.take_effects(), |t| matches!(
        t,
        Task::Deliver {
            what: Delivery::Payload,
            ..
        }
    )));
    // A lock that fails for good fails the job, which keeps its lease.
    let mut other = self::core();
    let id = auctioned(&mut other, 2);
    other.on_bid(p.public().peer_id(), bid(id, &p, 2_000_000), T0);
    other.tick(T0.plus_secs(1));
    let proposal = lease_tasks(&other.take_effects()).remove(0);
    countersigned(&mut other, &proposal, &p, T0.plus_secs(1));
    other.on_task(
        id,
        TaskKind::Lock.lost("this node is overloaded".into()),
        T0.plus_secs(1),
    );
    let job = other.job(&id).unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.lease().is_some());
    assert!(
        job.reason
            .as_deref()
            .unwrap_or_default()
            .contains("overloaded"),
        "{job:#?}"
    );
}
