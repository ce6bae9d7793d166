//! The bid engine's behaviour: holds, declines, leases, restarts.

use super::*;
use crate::config::Config;
use crate::provider::offers::tests::{CONFIG, inventory};
use agora_protocol::{Energy, Keypair};

const NOW: Timestamp = Timestamp(1_000_000);

fn provider_key() -> Keypair {
    Keypair::from_seed(&[1; 32])
}

fn requester_key() -> Keypair {
    Keypair::from_seed(&[2; 32])
}

/// Slot 0: 3 × A100 at 1.0; slot 1: 2 × H100 at 2.5 (hold grace 5 s).
/// The requester (seed 2) can pay for anything ([`funded`]).
fn bidder() -> Bidder {
    let mut bidder = unfunded();
    funded(&mut bidder, requester_key().public(), Amount(u64::MAX));
    bidder
}

/// [`bidder`] with no balance known for anyone.
fn unfunded() -> Bidder {
    let config = Config::parse(CONFIG, "test").unwrap();
    Bidder::new(
        provider_key().public(),
        config.provider.as_ref().unwrap(),
        &config.node,
        &inventory(&config.simulated_gpu),
        NOW,
    )
    .unwrap()
}

/// `key`'s balance is `amount`, read "at the end of time": trusted at
/// every moment a test looks at.
pub(crate) fn funded(bidder: &mut Bidder, key: PublicKey, amount: Amount) {
    bidder.set_balance(key, Ok(amount), Timestamp(u64::MAX));
}

fn order(nonce: u8, gpus: u32, model: Option<&str>) -> Order {
    Order {
        needs: agora_protocol::SandboxLimits::default(),
        network: false,
        requester: requester_key().public(),
        nonce: vec![nonce; 16],
        gpu_count: gpus,
        gpu_model: model.map(str::to_string),
        min_vram_mib: 0,
        min_fp32_mtflops: 0,
        min_compute_capability: 0,
        region: Some("EU".into()),
        jurisdiction: None,
        energy: Energy::Unknown,
        require_verified: false,
        allow_simulated: true,
        max_price_per_gpu_hour: Amount(3_000_000),
        max_duration_secs: 600,
        bid_window_ms: 1_000,
        runtime: "process".into(),
        created_at: NOW,
        expires_at: NOW.plus_secs(31),
    }
}

fn bid(decision: Decision) -> Bid {
    match decision {
        Decision::Bid(bid) => bid,
        other => panic!("expected a bid, got {other:?}"),
    }
}

fn decline(decision: Decision) -> Decline {
    match decision {
        Decision::Decline(decline) => decline,
        other => panic!("expected a decline, got {other:?}"),
    }
}

fn terms_for(bid: &Bid, starts_at: Timestamp) -> LeaseTerms {
    LeaseTerms {
        limits: bid.limits,
        order_id: bid.order_id,
        requester: requester_key().public(),
        provider: bid.provider,
        slot: bid.slot,
        gpu_model: bid.gpu_model.clone(),
        gpu_count: bid.gpu_count,
        price_per_gpu_hour: bid.price_per_gpu_hour,
        max_duration_secs: 600,
        receipt_interval_secs: 10,
        starts_at,
        escrow: LeaseTerms::required_escrow(bid.price_per_gpu_hour, bid.gpu_count, 600).unwrap(),
        simulated: bid.simulated,
    }
}

fn propose(terms: LeaseTerms) -> Signed<LeaseTerms> {
    Signed::sign(terms, &requester_key()).unwrap()
}

fn free(bidder: &mut Bidder, now: Timestamp) -> Vec<u32> {
    bidder.offers(now).iter().map(|o| o.gpu_free).collect()
}

#[test]
fn a_bid_holds_its_gpus_until_the_window_and_grace_pass() {
    let mut bidder = bidder();
    assert_eq!(free(&mut bidder, NOW), vec![3, 2]);
    let bid = bid(bidder.on_order(&order(1, 2, Some("H100")), NOW));
    assert_eq!((bid.slot, bid.gpu_model.as_str()), (1, "H100"));
    assert_eq!(bid.price_per_gpu_hour, Amount(2_500_000));
    assert_eq!(bid.hold_until, NOW.plus_ms(1_000 + 5_000));
    assert!(bid.simulated);
    assert_eq!(free(&mut bidder, NOW), vec![3, 0]);

    assert!(!bidder.expire(Timestamp(bid.hold_until.0 - 1), &|_| true));
    assert_eq!(free(&mut bidder, NOW.plus_ms(5_999)), vec![3, 0]);
    // Past the hold the GPUs count as free even before the sweep.
    assert_eq!(bidder.gpu_free(1, bid.hold_until), 2);
    assert!(bidder.expire(bid.hold_until, &|_| true));
    assert_eq!(bidder.reservations().count(), 0);
    assert!(!bidder.expire(bid.hold_until, &|_| true));

    // Bids and declines are valid wire messages once signed.
    let signed = Signed::sign(bid, &provider_key()).unwrap();
    Signed::<Bid>::decode(&signed.encode()).unwrap();
}

#[test]
fn a_second_order_cannot_take_held_gpus() {
    let mut bidder = bidder();
    bid(bidder.on_order(&order(1, 2, Some("H100")), NOW));
    let refused = decline(bidder.on_order(&order(2, 1, Some("H100")), NOW));
    assert_eq!(refused.reason, DeclineReason::NoCapacity);
    assert!(refused.detail.contains("0 GPUs free"), "{}", refused.detail);
    let signed = Signed::sign(refused, &provider_key()).unwrap();
    Signed::<Decline>::decode(&signed.encode()).unwrap();

    // Any model: the H100 scores best per TFLOP but is held, so the A100.
    let any = bid(bidder.on_order(&order(3, 1, None), NOW));
    assert_eq!(any.slot, 0);
    assert_eq!(free(&mut bidder, NOW), vec![2, 0]);
}

#[test]
fn the_best_score_wins_among_fitting_slots() {
    let mut bidder = bidder();
    // 2.5 AGR for 67 TFLOPS beats 1.0 AGR for 19.5 TFLOPS.
    let best = bid(bidder.on_order(&order(1, 1, None), NOW));
    assert_eq!(best.slot, 1);
    assert_eq!(best.fp32_mtflops, 67_000);
}

#[test]
fn a_repeated_order_gets_the_same_answer_and_holds_nothing_more() {
    let mut bidder = bidder();
    let order = order(1, 1, Some("H100"));
    assert!(!bidder.seen(&order.id()));
    let first = bidder.on_order(&order, NOW);
    assert!(bidder.seen(&order.id()));
    assert_eq!(bidder.on_order(&order, NOW.plus_ms(10)), first);
    assert_eq!(free(&mut bidder, NOW), vec![3, 1]);
    let wrong = Order {
        region: Some("US".into()),
        nonce: vec![9; 16],
        ..order
    };
    let first = bidder.on_order(&wrong, NOW);
    assert_eq!(bidder.on_order(&wrong, NOW.plus_ms(10)), first);
}

#[test]
fn declines_give_the_reason_of_the_closest_slot() {
    let mut bidder = bidder();
    let mut wrong_region = order(1, 1, Some("H100"));
    wrong_region.region = Some("US".into());
    let d = decline(bidder.on_order(&wrong_region, NOW));
    assert_eq!(d.reason, DeclineReason::Region);
    assert!(d.detail.contains("US"), "{}", d.detail);

    // Both slots are too dear; the A100 is the cheaper one to quote.
    let mut cheap = order(2, 1, None);
    cheap.max_price_per_gpu_hour = Amount(500_000);
    let d = decline(bidder.on_order(&cheap, NOW));
    assert_eq!(d.reason, DeclineReason::Price);
    assert!(d.detail.contains("price 1 AGR"), "{}", d.detail);

    // The H100 is the wrong model and the A100 too dear: price, the
    // reason a requester can act on, wins over model.
    let mut a100 = order(3, 1, Some("A100"));
    a100.max_price_per_gpu_hour = Amount(500_000);
    assert_eq!(
        decline(bidder.on_order(&a100, NOW)).reason,
        DeclineReason::Price
    );

    let mut long = order(4, 1, Some("H100"));
    long.max_duration_secs = 2 * 24 * 3600;
    let d = decline(bidder.on_order(&long, NOW));
    assert_eq!(d.reason, DeclineReason::Duration);
    assert!(d.detail.contains("86400"), "{}", d.detail);

    let expired = order(5, 1, None);
    assert_eq!(
        decline(bidder.on_order(&expired, expired.expires_at)).reason,
        DeclineReason::Expired
    );
    assert_eq!(bidder.reservations().count(), 0);
}

#[test]
fn a_provider_without_gpus_declines_for_capacity() {
    let config = Config::parse(CONFIG, "test").unwrap();
    let mut bidder = Bidder::new(
        provider_key().public(),
        config.provider.as_ref().unwrap(),
        &config.node,
        &Inventory::default(),
        NOW,
    )
    .unwrap();
    assert!(bidder.offers(NOW).is_empty());
    let d = decline(bidder.on_order(&order(1, 1, None), NOW));
    assert_eq!(
        (d.reason, d.detail.as_str()),
        (DeclineReason::NoCapacity, "no GPUs")
    );
}

#[test]
fn its_own_order_is_not_answered() {
    let mut bidder = bidder();
    let mut own = order(1, 1, None);
    own.requester = provider_key().public();
    assert!(matches!(bidder.on_order(&own, NOW), Decision::Ignore(_)));
    assert_eq!(bidder.reservations().count(), 0);
}

#[test]
fn a_lease_for_a_held_order_turns_the_hold_into_a_lease() {
    let mut bidder = bidder();
    let bid = bid(bidder.on_order(&order(1, 2, Some("H100")), NOW));
    let at = NOW.plus_ms(1_200);
    let proposal = propose(terms_for(&bid, at));
    let lease_id = LeaseId::of_body(proposal.envelope().body());
    assert_eq!(
        bidder.on_lease_proposal(&proposal, at),
        Ok(Accepted::New(lease_id))
    );
    // The same proposal again: accepted, nothing reserved twice.
    assert_eq!(
        bidder.on_lease_proposal(&proposal, at),
        Ok(Accepted::Repeat(lease_id))
    );
    let reservations: Vec<&Reservation> = bidder.reservations().collect();
    assert_eq!(reservations.len(), 1);
    assert_eq!(reservations[0].kind, ReservationKind::Lease(lease_id));
    assert_eq!(reservations[0].until, at.plus_secs(600));
    assert_eq!(reservations[0].view().kind, "lease");

    // The GPUs stay taken after the hold would have ended, until the lease does.
    assert!(!bidder.expire(bid.hold_until.plus_ms(1), &|_| true));
    assert_eq!(bidder.gpu_free(1, bid.hold_until.plus_ms(1)), 0);
    assert!(bidder.expire(at.plus_secs(600), &|_| true));
    assert_eq!(bidder.gpu_free(1, at.plus_secs(600)), 2);

    // A different lease for the same order is refused.
    let mut bidder2 = self::bidder();
    let bid = self::bid(bidder2.on_order(&order(1, 2, Some("H100")), NOW));
    bidder2
        .on_lease_proposal(&propose(terms_for(&bid, at)), at)
        .unwrap();
    let mut other = terms_for(&bid, at.plus_ms(1));
    other.receipt_interval_secs = 20;
    let err = bidder2.on_lease_proposal(&propose(other), at).unwrap_err();
    assert!(err.reason.contains("already leased"), "{err}");
}

#[test]
fn a_lease_on_other_terms_than_the_bid_is_refused_with_a_reason() {
    let mut bidder = bidder();
    let bid = bid(bidder.on_order(&order(1, 2, Some("H100")), NOW));
    let at = NOW.plus_ms(1_200);
    type Mutation = Box<dyn Fn(&mut LeaseTerms)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "below the price bid",
            Box::new(|t| {
                t.price_per_gpu_hour = Amount(2_000_000);
                t.escrow = LeaseTerms::required_escrow(t.price_per_gpu_hour, 2, 600).unwrap();
            }),
        ),
        (
            "holds H100, not A100",
            Box::new(|t| t.gpu_model = "A100".into()),
        ),
        (
            "3 GPUs wanted, 2 of 2 free",
            Box::new(|t| {
                t.gpu_count = 3;
                t.escrow = LeaseTerms::required_escrow(t.price_per_gpu_hour, 3, 600).unwrap();
            }),
        ),
        (
            "does not cover",
            Box::new(|t| t.escrow = Amount(t.escrow.0 - 1)),
        ),
        ("slot 7 does not exist", Box::new(|t| t.slot = 7)),
        (
            "not this node",
            Box::new(|t| t.provider = Keypair::from_seed(&[3; 32]).public()),
        ),
        (
            "another requester",
            Box::new(|t| t.requester = Keypair::from_seed(&[4; 32]).public()),
        ),
        (
            "more than 60 s",
            Box::new(|t| t.starts_at = Timestamp(t.starts_at.0 + 61_000)),
        ),
        (
            "longer than this provider's limit",
            Box::new(|t| {
                t.max_duration_secs = 2 * 24 * 3600;
                t.escrow = LeaseTerms::required_escrow(
                    t.price_per_gpu_hour,
                    t.gpu_count,
                    t.max_duration_secs,
                )
                .unwrap();
            }),
        ),
        (
            "receipt interval",
            Box::new(|t| t.receipt_interval_secs = 61),
        ),
        ("simulated", Box::new(|t| t.simulated = false)),
    ];
    for (expected, mutate) in cases {
        let mut terms = terms_for(&bid, at);
        mutate(&mut terms);
        let key = if terms.requester == requester_key().public() {
            requester_key()
        } else {
            Keypair::from_seed(&[4; 32])
        };
        let proposal = Signed::sign(terms, &key).unwrap();
        let err = bidder.on_lease_proposal(&proposal, at).unwrap_err();
        assert!(err.reason.contains(expected), "{expected}: {err}");
    }
    // Nothing changed: the hold is still a hold.
    let kinds: Vec<ReservationKind> = bidder.reservations().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![ReservationKind::Hold]);
    // A price above the bid is fine.
    let mut generous = terms_for(&bid, at);
    generous.price_per_gpu_hour = Amount(2_600_000);
    generous.escrow = LeaseTerms::required_escrow(generous.price_per_gpu_hour, 2, 600).unwrap();
    assert!(matches!(
        bidder.on_lease_proposal(&propose(generous), at),
        Ok(Accepted::New(_))
    ));
}

#[test]
fn the_instant_path_reserves_fresh_gpus_at_the_offer_price() {
    let mut bidder = bidder();
    let offer = bidder.offers(NOW)[0].clone();
    let price = offer.price_per_gpu_hour;
    let mut terms = LeaseTerms {
        limits: agora_protocol::SandboxLimits::default(),
        order_id: OrderId([7; 32]),
        requester: requester_key().public(),
        provider: provider_key().public(),
        slot: offer.slot,
        gpu_model: offer.gpu_model.clone(),
        gpu_count: 3,
        price_per_gpu_hour: price,
        max_duration_secs: 60,
        receipt_interval_secs: 10,
        starts_at: NOW,
        escrow: LeaseTerms::required_escrow(price, 3, 60).unwrap(),
        simulated: true,
    };
    assert!(matches!(
        bidder.on_lease_proposal(&propose(terms.clone()), NOW),
        Ok(Accepted::New(_))
    ));
    assert_eq!(free(&mut bidder, NOW), vec![0, 2]);
    // A second instant lease finds the slot full.
    terms.order_id = OrderId([8; 32]);
    terms.gpu_count = 1;
    terms.escrow = LeaseTerms::required_escrow(price, 1, 60).unwrap();
    let err = bidder.on_lease_proposal(&propose(terms), NOW).unwrap_err();
    assert!(err.reason.contains("0 of 3 free"), "{err}");
}

#[test]
fn restore_keeps_reservations_and_the_sequence_never_goes_back() {
    let mut before = bidder();
    let first = before.offers(NOW)[0].sequence;
    let second = before.offers(NOW)[0].sequence;
    assert!(second > first && first >= NOW.0);
    bid(before.on_order(&order(1, 2, Some("H100")), NOW));
    let saved: Vec<Reservation> = before.reservations().cloned().collect();
    let json = serde_json::to_string(&saved).unwrap();
    let last = before.sequence();

    // Restarted with a clock that went backwards.
    let earlier = Timestamp(NOW.0 - 500_000);
    let mut after = bidder();
    let orphans = after.restore(
        serde_json::from_str::<Vec<Reservation>>(&json).unwrap(),
        last,
    );
    assert!(orphans.is_empty());
    let offers = after.offers(earlier);
    assert!(offers[0].sequence > last);
    assert_eq!(offers[1].gpu_free, 0);
    // The held order is bid the same again, not held twice.
    let again = bid(after.on_order(&order(1, 2, Some("H100")), NOW.plus_ms(10)));
    assert_eq!(again.hold_until, NOW.plus_ms(6_000));
    assert_eq!(after.reservations().count(), 1);

    // A reservation for a slot the inventory no longer has is reported.
    let mut stray = saved[0].clone();
    stray.order_id = OrderId([5; 32]);
    stray.gpu_model = "V100".into();
    assert_eq!(after.restore([stray.clone()], 0), vec![stray]);
    assert_eq!(after.gpu_free(1, NOW), 0);
    assert!(after.sequence() > last);
}

#[test]
fn a_config_that_peers_would_refuse_is_an_error_naming_the_key() {
    let config = Config::parse(CONFIG, "test").unwrap();
    let mut provider = config.provider.clone().unwrap();
    provider.region = "EU west".into();
    let err = Bidder::new(
        provider_key().public(),
        &provider,
        &config.node,
        &inventory(&config.simulated_gpu),
        NOW,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("provider.region"), "{err}");
    let mut provider = config.provider.clone().unwrap();
    provider.runtimes.clear();
    let err = Bidder::new(
        provider_key().public(),
        &provider,
        &config.node,
        &inventory(&config.simulated_gpu),
        NOW,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("provider.runtimes"), "{err}");
}

#[test]
fn a_lease_whose_run_does_not_start_in_time_gives_its_gpus_back() {
    let mut bidder = bidder();
    let bid = bid(bidder.on_order(&order(1, 2, Some("H100")), NOW));
    let at = NOW.plus_ms(1_200);
    let proposal = propose(terms_for(&bid, at));
    let lease_id = LeaseId::of_body(proposal.envelope().body());
    bidder.on_lease_proposal(&proposal, at).unwrap();
    let deadline = at.plus_secs(120);
    let never = |_: &LeaseId| false;
    // Held until the start deadline...
    assert!(!bidder.expire(Timestamp(deadline.0 - 1), &never));
    assert_eq!(bidder.gpu_free(1, Timestamp(deadline.0 - 1)), 0);
    assert!(bidder.may_start(&lease_id));
    // ...then given back, and a late job for it is refused.
    assert!(bidder.expire(deadline, &never));
    assert_eq!(bidder.gpu_free(1, deadline), 2);
    assert!(!bidder.may_start(&lease_id));
    // Remembered until the lease's own end, then forgotten.
    bidder.expire(at.plus_secs(600), &never);
    assert!(bidder.may_start(&lease_id));

    // A job that arrived just before the deadline has the admission grace.
    let mut bidder = self::bidder();
    let bid = self::bid(bidder.on_order(&order(2, 2, Some("H100")), NOW));
    let proposal = propose(terms_for(&bid, at));
    let lease_id = LeaseId::of_body(proposal.envelope().body());
    bidder.on_lease_proposal(&proposal, at).unwrap();
    bidder.starting(&lease_id, Timestamp(deadline.0 - 1), 30_000);
    assert!(!bidder.expire(deadline, &never));
    // Once its run started, the lease keeps its GPUs to its end.
    let running = |id: &LeaseId| *id == lease_id;
    assert!(!bidder.expire(deadline.plus_secs(31), &running));
    assert!(!bidder.expire(at.plus_secs(599), &never));
    assert_eq!(bidder.gpu_free(1, at.plus_secs(599)), 0);
    assert!(bidder.expire(at.plus_secs(600), &never));
}

#[test]
fn an_order_that_needs_the_network_is_declined_at_bid_time_unless_given() {
    let mut bidder = bidder();
    let mut wants_network = order(7, 1, None);
    wants_network.network = true;
    match bidder.on_order(&wants_network, NOW) {
        Decision::Decline(decline) => {
            assert_eq!(decline.reason, DeclineReason::Network, "{decline:?}");
            assert!(decline.detail.contains("network"), "{decline:?}");
        }
        other => panic!("expected a decline, got {other:?}"),
    }
    // Nothing was held for it.
    assert_eq!(bidder.gpu_free(0, NOW), bidder.slots()[0].gpu_total());
    // Offers say what the provider gives; one that gives network bids.
    assert!(bidder.offers(NOW).iter().all(|o| !o.network));
    bidder.set_network(true);
    assert!(bidder.offers(NOW).iter().all(|o| o.network));
    let mut again = order(8, 1, None);
    again.network = true;
    assert!(matches!(bidder.on_order(&again, NOW), Decision::Bid(_)));
}

#[test]
fn sandbox_limits_are_offered_bid_and_must_be_leased_as_they_are() {
    let mut bidder = bidder();
    let limits = agora_protocol::SandboxLimits {
        pids: 512,
        memory_mib: 4096,
        disk_mib: 10_240,
        tmp_mib: 512,
        cpu_weight: 100,
        cgroup: true,
    };
    bidder.set_limits(limits);
    assert!(bidder.offers(NOW).iter().all(|o| o.limits == limits));
    // An order whose job needs more memory than a job gets here.
    let mut big = order(7, 1, None);
    big.needs.memory_mib = 8192;
    match bidder.on_order(&big, NOW) {
        Decision::Decline(decline) => {
            assert_eq!(decline.reason, DeclineReason::Limits, "{decline:?}");
            assert!(decline.detail.contains("8192 MiB of memory"), "{decline:?}");
            assert!(decline.detail.contains("4096 MiB"), "{decline:?}");
        }
        other => panic!("expected a decline, got {other:?}"),
    }
    assert_eq!(bidder.gpu_free(0, NOW), bidder.slots()[0].gpu_total());
    // One that fits is bid with the limits, and leased with them.
    let mut fits = order(8, 1, None);
    fits.needs.memory_mib = 4096;
    let Decision::Bid(bid) = bidder.on_order(&fits, NOW) else {
        panic!("expected a bid");
    };
    assert_eq!(bid.limits, limits);
    // Lease terms that promise other limits than this provider's are refused.
    let mut promised = terms_for(&bid, NOW);
    promised.limits.memory_mib = 65_536;
    let err = bidder
        .on_lease_proposal(&propose(promised), NOW)
        .unwrap_err();
    assert!(err.reason.contains("sandbox limits"), "{}", err.reason);
    bidder
        .on_lease_proposal(&propose(terms_for(&bid, NOW)), NOW)
        .unwrap();
}

// ---- funds: holds bounded by the requester's balance on the ledger ----

/// The escrow of `order(_, gpus, Some("A100"))`: 1.0 AGR/GPU-hour for 600 s.
fn a100_escrow(gpus: u32) -> Amount {
    LeaseTerms::required_escrow(Amount(1_000_000), gpus, 600).unwrap()
}

#[test]
fn an_unknown_balance_is_asked_for_and_nothing_is_held_until_it_comes() {
    let mut bidder = unfunded();
    let requester = requester_key().public();
    let o = order(1, 1, Some("A100"));
    assert_eq!(bidder.on_order(&o, NOW), Decision::NeedsBalance(requester));
    assert_eq!(bidder.reservations().count(), 0);
    assert!(!bidder.seen(&o.id()), "nothing remembered");
    bidder.set_balance(requester, Ok(a100_escrow(1)), NOW);
    bid(bidder.on_order(&o, NOW));
    // The reading is trusted for a while, then asked for again.
    let later = NOW.plus_ms(BALANCE_TTL_MS);
    assert_eq!(
        bidder.on_order(&order(2, 1, Some("A100")), later),
        Decision::NeedsBalance(requester)
    );
}

#[test]
fn a_requester_holds_no_more_than_its_balance_pays_for() {
    let mut bidder = unfunded();
    let requester = requester_key().public();
    // Enough for two A100s for the order's 600 s, not three.
    bidder.set_balance(requester, Ok(a100_escrow(2)), NOW);
    let first = bid(bidder.on_order(&order(1, 1, Some("A100")), NOW));
    bid(bidder.on_order(&order(2, 1, Some("A100")), NOW));
    assert_eq!(bidder.committed(&requester, NOW), a100_escrow(2));
    let refused = decline(bidder.on_order(&order(3, 1, Some("A100")), NOW));
    assert_eq!(refused.reason, DeclineReason::Funds);
    assert!(
        refused.detail.contains("your balance on the ledger is"),
        "{}",
        refused.detail
    );
    assert_eq!(
        free(&mut bidder, NOW),
        vec![1, 2],
        "the third GPU is not held"
    );
    // A repeat gets the same decline.
    assert_eq!(
        bidder.on_order(&order(3, 1, Some("A100")), NOW),
        Decision::Decline(refused)
    );
    // Another requester is not bound by this one's balance.
    let other = Keypair::from_seed(&[3; 32]);
    bidder.set_balance(other.public(), Ok(a100_escrow(1)), NOW);
    let mut theirs = order(4, 1, Some("A100"));
    theirs.requester = other.public();
    bid(bidder.on_order(&theirs, NOW));

    // A leased hold still counts until its run starts (its escrow may not
    // be locked yet); a started one is paid from escrow, not the balance.
    let proposal = propose(terms_for(&first, NOW));
    bidder.on_lease_proposal(&proposal, NOW).unwrap();
    assert_eq!(bidder.committed(&requester, NOW), a100_escrow(2));
    bidder.expire(NOW, &|_| true);
    assert_eq!(bidder.committed(&requester, NOW), a100_escrow(1));
    // The holds expire: the balance covers new bids again.
    let after = first.hold_until;
    bidder.expire(after, &|_| true);
    assert_eq!(bidder.committed(&requester, after), Amount::ZERO);
    bidder.set_balance(requester, Ok(a100_escrow(1)), after);
    bid(bidder.on_order(&order(5, 1, Some("A100")), after));
}

#[test]
fn a_key_with_nothing_on_the_ledger_holds_nothing() {
    let mut bidder = unfunded();
    for seed in 10..40u8 {
        let key = Keypair::from_seed(&[seed; 32]).public();
        bidder.set_balance(key, Ok(Amount::ZERO), NOW);
        let mut o = order(seed, 1, None);
        o.requester = key;
        assert_eq!(
            decline(bidder.on_order(&o, NOW)).reason,
            DeclineReason::Funds
        );
    }
    assert_eq!(bidder.reservations().count(), 0);
    assert_eq!(free(&mut bidder, NOW), vec![3, 2]);
}

#[test]
fn an_unreadable_balance_declines_unless_one_was_read_before() {
    let mut bidder = unfunded();
    let requester = requester_key().public();
    bidder.set_balance(requester, Err("connection refused".into()), NOW);
    let refused = decline(bidder.on_order(&order(1, 1, None), NOW));
    assert_eq!(refused.reason, DeclineReason::Funds);
    assert!(
        refused.detail.contains("connection refused"),
        "{}",
        refused.detail
    );
    // A failure is tried again soon.
    assert_eq!(
        bidder.on_order(&order(2, 1, None), NOW.plus_ms(BALANCE_ERROR_TTL_MS)),
        Decision::NeedsBalance(requester)
    );
    // After a good reading, a failed one keeps it.
    let at = NOW.plus_ms(BALANCE_ERROR_TTL_MS);
    bidder.set_balance(requester, Ok(a100_escrow(3)), at);
    bidder.set_balance(requester, Err("timed out".into()), at);
    bid(bidder.on_order(&order(3, 1, Some("A100")), at));
}

#[test]
fn the_balances_remembered_are_bounded() {
    let mut bidder = unfunded();
    for i in 0..(MAX_KNOWN_BALANCES as u64 + 5) {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&i.to_le_bytes());
        let key = Keypair::from_seed(&seed).public();
        bidder.set_balance(key, Ok(Amount(1)), NOW.plus_ms(i));
    }
    assert_eq!(bidder.balances.len(), MAX_KNOWN_BALANCES);
    // The oldest went first.
    let first = Keypair::from_seed(&[0; 32]).public();
    assert!(!bidder.balances.contains_key(&first));
}

#[test]
fn an_instant_lease_is_paid_for_from_the_balance_like_a_bid() {
    let mut bidder = unfunded();
    let requester = requester_key().public();
    let offer = bidder.offers(NOW)[0].clone();
    let price = offer.price_per_gpu_hour;
    let terms = |order: u8, gpus: u32| LeaseTerms {
        limits: agora_protocol::SandboxLimits::default(),
        order_id: OrderId([order; 32]),
        requester,
        provider: provider_key().public(),
        slot: offer.slot,
        gpu_model: offer.gpu_model.clone(),
        gpu_count: gpus,
        price_per_gpu_hour: price,
        max_duration_secs: 600,
        receipt_interval_secs: 10,
        starts_at: NOW,
        escrow: LeaseTerms::required_escrow(price, gpus, 600).unwrap(),
        simulated: true,
    };
    let first = propose(terms(7, 2));
    assert!(bidder.proposal_needs_balance(&first, NOW));
    let err = bidder.on_lease_proposal(&first, NOW).unwrap_err();
    assert!(err.reason.contains("not read your balance"), "{err}");
    // Enough for two GPUs for the lease, not three.
    bidder.set_balance(requester, Ok(a100_escrow(2)), NOW);
    assert!(!bidder.proposal_needs_balance(&first, NOW));
    assert!(matches!(
        bidder.on_lease_proposal(&first, NOW),
        Ok(Accepted::New(_))
    ));
    let err = bidder
        .on_lease_proposal(&propose(terms(8, 1)), NOW)
        .unwrap_err();
    assert!(
        err.reason.contains("your balance on the ledger is"),
        "{err}"
    );
    assert_eq!(free(&mut bidder, NOW), vec![1, 2]);
    // A lease on a bid's hold needs no reading: the bid was paid for.
    let mut held = unfunded();
    held.set_balance(requester, Ok(a100_escrow(1)), NOW);
    let at = NOW.plus_ms(BALANCE_TTL_MS - 1);
    let b = bid(held.on_order(&order(1, 1, Some("A100")), at));
    let proposal = propose(terms_for(&b, at));
    // The reading is stale by now; the hold is not.
    let later = NOW.plus_ms(BALANCE_TTL_MS + 1);
    assert!(later < b.hold_until);
    assert!(!held.proposal_needs_balance(&proposal, later));
    assert!(held.on_lease_proposal(&proposal, later).is_ok());
}
