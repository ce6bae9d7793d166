//! The rules on hand-built books: each breach is reported with its lease
//! and amounts, and honest books pass.

use std::collections::BTreeMap;

use agora_client::api::{
    Constraints, JobSpec, JobState, JobView, LeaseStatus, LeaseView, MarketTerms, ProviderStatus,
    ReceiptView, Resources, RunView,
};
use agora_protocol::ledger::{EscrowState, Supply};
use agora_protocol::{AccountId, Amount, Keypair, LeaseId, Timestamp};

use super::{LeftProcess, NodeBooks, Rule, Snapshot};

const DEPOSIT: u64 = 1_000_000;
const ESCROW: u64 = 10_000;

fn account(seed: u8) -> AccountId {
    Keypair::from_seed(&[seed; 32]).public()
}

fn lease_id(n: u8) -> LeaseId {
    LeaseId([n; 32])
}

fn receipt(amount: u64, sequence: u64) -> ReceiptView {
    ReceiptView {
        sequence,
        gpu_seconds: sequence * 2,
        amount: Amount(amount),
        issued_at: Timestamp(0),
        is_final: true,
        exit_status: Some(0),
        result_hash: None,
    }
}

fn job(lease: u8, state: JobState, countersigned: Option<u64>) -> JobView {
    JobView {
        id: format!("job-{lease}"),
        name: None,
        state,
        reason: None,
        submitted_at: Timestamp(0),
        offer: None,
        spec: JobSpec {
            name: None,
            runtime: "process".into(),
            command: vec!["true".into()],
            env: Default::default(),
            inputs: Vec::new(),
            resources: Resources {
                gpus: 1,
                gpu_model: None,
                min_vram_gib: 0,
                min_tflops: 0.0,
                min_compute_capability: 0.0,
                memory_mib: 0,
                disk_mib: 0,
                tmp_mib: 0,
                processes: 0,
            },
            constraints: Constraints::default(),
            market: MarketTerms {
                max_price_per_gpu_hour: "10".into(),
                max_duration_secs: 60,
                bid_window_ms: 500,
            },
        },
        bids: Vec::new(),
        declines: Vec::new(),
        lease: Some(LeaseView {
            id: lease_id(lease).to_string(),
            order_id: format!("job-{lease}"),
            requester: account(1),
            provider: account(2),
            slot: 0,
            gpu_model: "H100".into(),
            gpu_count: 1,
            price_per_gpu_hour: Amount(1),
            max_duration_secs: 60,
            starts_at: Timestamp(0),
            escrow: Amount(ESCROW),
            escrow_locked: true,
            status: LeaseStatus::Refunded,
            limits: Default::default(),
        }),
        events: Vec::new(),
        exit_code: Some(0),
        receipt: countersigned.map(|a| receipt(a, 3)),
        settlement: None,
        outputs: Vec::new(),
        results_fetched: true,
        log_seq: 0,
    }
}

fn escrow(lease: u8, settled: u64, closed: bool) -> EscrowState {
    EscrowState {
        lease_id: lease_id(lease),
        requester: account(1),
        provider: account(2),
        escrow: Amount(ESCROW),
        settled: Amount(settled),
        last_sequence: 3,
        final_settled: closed,
        ends_at: Timestamp(60_000),
        closable_at: Timestamp(63_000),
        refunded: closed.then(|| Amount(ESCROW - settled)),
        ops: 3,
    }
}

fn run(lease: u8, settled: u64, countersigned: u64) -> RunView {
    RunView {
        lease_id: lease_id(lease).to_string(),
        order_id: format!("job-{lease}"),
        requester: account(1),
        state: "ended".into(),
        started_at: None,
        ended_at: None,
        exit_code: Some(0),
        reason: None,
        receipt: Some(receipt(countersigned, 3)),
        settled: Amount(settled),
        closed: true,
    }
}

/// One requester, one provider, two closed leases that paid 3000 and 500:
/// books that keep every rule.
fn honest() -> Snapshot {
    let paid = 3_000 + 500;
    let provider = ProviderStatus {
        driver: None,
        nvml_unavailable: None,
        gpus: Vec::new(),
        offers: Vec::new(),
        reservations: Vec::new(),
        leases: Vec::new(),
        orders_seen: 2,
        bids_sent: 2,
        declines_sent: 0,
        runs: vec![run(7, 3_000, 3_000), run(8, 500, 500)],
        earned: Amount(paid),
        runtime_unavailable: None,
    };
    Snapshot {
        supply: Supply {
            deposited: u128::from(DEPOSIT),
            balances: u128::from(DEPOSIT),
            escrowed: 0,
        },
        balances: BTreeMap::from([
            (account(1), Amount(DEPOSIT - paid)),
            (account(2), Amount(paid)),
        ]),
        escrows: BTreeMap::from([
            (lease_id(7), Some(escrow(7, 3_000, true))),
            (lease_id(8), Some(escrow(8, 500, true))),
        ]),
        nodes: vec![
            NodeBooks {
                name: "requester-0".into(),
                account: account(1),
                jobs: vec![
                    job(7, JobState::Succeeded, Some(3_000)),
                    job(8, JobState::Succeeded, Some(600)),
                ],
                provider: None,
            },
            NodeBooks {
                name: "provider-0".into(),
                account: account(2),
                jobs: Vec::new(),
                provider: Some(provider),
            },
        ],
        deposits: Some(BTreeMap::from([(account(1), Amount(DEPOSIT))])),
        leftover: Vec::new(),
    }
}

fn rules(s: &Snapshot) -> Vec<Rule> {
    let mut rules: Vec<Rule> = s.violations().iter().map(|v| v.rule).collect();
    rules.dedup();
    rules
}

#[test]
fn honest_books_keep_every_rule() {
    let s = honest();
    assert!(s.violations().is_empty(), "{:#?}", s.violations());
    let checked = s.checked();
    // The requester countersigned 600 on lease 8; the provider, holding
    // only 500, was paid 500: a loss to it, not a breach.
    assert_eq!(
        (checked.unclaimed, checked.unclaimed_amount),
        (1, Amount(100))
    );
    assert_eq!(
        (
            checked.jobs,
            checked.leases,
            checked.escrows,
            checked.accounts
        ),
        (2, 2, 2, 2)
    );
}

#[test]
fn a_lease_settled_above_its_countersigned_receipt_is_reported_with_its_amounts() {
    let mut s = honest();
    // The chain paid 700 on lease 8; the requester countersigned 600.
    s.escrows.insert(lease_id(8), Some(escrow(8, 700, true)));
    s.balances.insert(account(1), Amount(DEPOSIT - 3_700));
    s.balances.insert(account(2), Amount(3_700));
    if let Some(p) = &mut s.nodes[1].provider {
        p.earned = Amount(3_700);
        p.runs[1].settled = Amount(700);
    }
    let v = s.violations();
    assert_eq!(rules(&s), vec![Rule::SettledWithinCountersigned], "{v:#?}");
    let text = v[0].to_string();
    assert!(
        text.contains(&lease_id(8).to_string())
            && text.contains(&Amount(700).to_string())
            && text.contains(&Amount(600).to_string()),
        "{text}"
    );
}

#[test]
fn a_closed_lease_that_paid_less_than_its_providers_receipt_is_reported() {
    // The provider holds a receipt for 600 on lease 8; it closed at 500.
    let mut s = honest();
    if let Some(p) = &mut s.nodes[1].provider {
        p.runs[1].receipt = Some(receipt(600, 4));
    }
    let v = s.violations();
    assert_eq!(rules(&s), vec![Rule::SettledAsCountersigned], "{v:#?}");
    assert!(v[0].detail.contains(&lease_id(8).to_string()), "{v:#?}");
    // Open, it may still settle: nothing to report yet.
    s.escrows.insert(lease_id(8), Some(escrow(8, 500, false)));
    assert!(!rules(&s).contains(&Rule::SettledAsCountersigned));
}

#[test]
fn money_that_appears_or_vanishes_is_reported() {
    // The provider holds 100 more than it was paid: the chain's totals
    // still agree with themselves, the accounts do not.
    let mut s = honest();
    s.balances.insert(account(2), Amount(3_600));
    s.supply.balances += 100;
    s.supply.deposited += 100;
    let v = s.violations();
    assert!(rules(&s).contains(&Rule::MoneyConserved), "{v:#?}");
    assert!(
        v.iter()
            .any(|v| v.detail.contains("provider-0")
                && v.detail.contains(&Amount(3_600).to_string())),
        "{v:#?}"
    );
    // Supply that does not add up.
    let mut s = honest();
    s.supply.escrowed = 5;
    assert_eq!(rules(&s), vec![Rule::MoneyConserved]);
    // An escrow locked that no node knows: deposits are short.
    let mut s = honest();
    s.supply.escrowed = 2_000;
    s.supply.balances -= 2_000;
    s.balances
        .insert(account(1), Amount(DEPOSIT - 3_500 - 2_000));
    assert!(rules(&s).contains(&Rule::MoneyConserved));
}

#[test]
fn a_lease_that_pays_out_twice_is_reported() {
    // Refunded in full after paying 3000: the escrow paid out 13000.
    let mut s = honest();
    let mut e = escrow(7, 3_000, true);
    e.refunded = Some(Amount(ESCROW));
    s.escrows.insert(lease_id(7), Some(e));
    assert!(
        rules(&s).contains(&Rule::SettledOnce),
        "{:#?}",
        s.violations()
    );
    // The provider counts a settlement twice in its own books.
    let mut s = honest();
    if let Some(p) = &mut s.nodes[1].provider {
        p.earned = Amount(6_500);
    }
    assert_eq!(rules(&s), vec![Rule::SettledOnce]);
    // Two jobs on one lease.
    let mut s = honest();
    let mut twin = job(7, JobState::Succeeded, Some(3_000));
    twin.id = "twin".into();
    s.nodes[0].jobs.push(twin);
    assert!(rules(&s).contains(&Rule::SettledOnce));
}

#[test]
fn a_job_left_running_or_ended_without_a_reason_or_with_its_escrow_open_is_reported() {
    let mut s = honest();
    s.nodes[0].jobs[0].state = JobState::Running;
    assert_eq!(rules(&s), vec![Rule::JobsTerminal]);
    let mut s = honest();
    s.nodes[0].jobs[0].state = JobState::Failed;
    s.nodes[0].jobs[0].exit_code = None;
    assert_eq!(rules(&s), vec![Rule::JobsTerminal]);
    s.nodes[0].jobs[0].reason = Some("provider_restarted".into());
    assert!(s.violations().is_empty());
    // Ended, but the escrow is still open (and still counted as escrow).
    let mut s = honest();
    s.escrows.insert(lease_id(8), Some(escrow(8, 500, false)));
    s.supply.escrowed = 9_500;
    s.supply.balances -= 9_500;
    s.balances
        .insert(account(1), Amount(DEPOSIT - 3_000 - ESCROW));
    if let Some(p) = &mut s.nodes[1].provider {
        p.runs[1].closed = false;
    }
    let v = s.violations();
    assert_eq!(rules(&s), vec![Rule::JobsTerminal], "{v:#?}");
    assert!(v[0].detail.contains(&lease_id(8).to_string()), "{v:#?}");
}

#[test]
fn a_process_left_behind_is_reported() {
    let mut s = honest();
    s.leftover.push(LeftProcess {
        pid: 4242,
        cmdline: "agorad --data /tmp/net/provider-0".into(),
    });
    let v = s.violations();
    assert_eq!(rules(&s), vec![Rule::NoProcessLeft]);
    assert!(v[0].detail.contains("4242"));
}

#[test]
fn leftover_processes_finds_a_process_working_under_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    let found = super::leftover_processes(dir.path());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(found.iter().any(|p| p.pid == child.id()), "{found:#?}");
    assert!(super::leftover_processes(dir.path()).is_empty());
}

#[test]
fn leftover_processes_of_node_1_are_not_those_of_node_10() {
    let dir = tempfile::tempdir().unwrap();
    let (one, ten) = (
        dir.path().join("provider-1"),
        dir.path().join("provider-10"),
    );
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&ten).unwrap();
    // Named by an argument, as agorad's --data names its directory.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("sleep 30; : \"$0\"")
        .arg(ten.join("work"))
        .spawn()
        .unwrap();
    let (of_one, of_ten) = (
        super::leftover_processes(&one),
        super::leftover_processes(&ten),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(of_one.iter().all(|p| p.pid != child.id()), "{of_one:#?}");
    assert!(of_ten.iter().any(|p| p.pid == child.id()), "{of_ten:#?}");
}
