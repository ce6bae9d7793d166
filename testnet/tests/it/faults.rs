//! Jobs that run, and the faults they must survive: a provider or a
//! requester killed mid-job, a job that fails, a cancel, the chain down,
//! and a job that tries to escape its sandbox. Each asserts who was paid
//! what, against the ledger itself.

use agora_client::api::{
    Bucket, JobLogEntry, JobLogPage, JobState, JobView, LeaseStatus, LogKind, RunView,
};
use agora_protocol::{Amount, LeaseId, Timestamp};
use agora_testnet::{LedgerBackend, Testnet};
use std::time::{Duration, Instant};

use crate::support::{DEADLINE, POLL, fund, spec, testnet, testnet_on, wait_for_offers, wait_job};

/// Runs the fault `$body` (an `async fn(LedgerBackend)`) on the mock chain
/// and on the escrow contract on anvil, as two tests.
macro_rules! on_both_ledgers {
    ($body:ident, $mock:ident, $evm:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $mock() {
            $body(LedgerBackend::Mock).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $evm() {
            $body(LedgerBackend::Evm).await;
        }
    };
}

/// A job running `script` under `sh -c`, for at most `max_secs`.
fn job(name: &str, script: &str, max_secs: u64) -> agora_client::api::SubmitJob {
    let mut spec = spec(name);
    spec.command = vec!["sh".into(), "-c".into(), script.into()];
    spec.market.max_duration_secs = max_secs;
    spec.market.bid_window_ms = 500;
    agora_client::api::SubmitJob { spec, offer: None }
}

async fn started(net: &Testnet, submit: &agora_client::api::SubmitJob) -> JobView {
    let client = net.client("requester-0").unwrap();
    fund(&client).await;
    wait_for_offers(net, "requester-0").await;
    let job = client.submit_job(submit).await.unwrap();
    wait_job(
        net,
        "requester-0",
        &job.id,
        "two countersigned receipts",
        |j| j.receipt.as_ref().is_some_and(|r| r.sequence >= 2),
    )
    .await
}

pub(crate) fn lease_id(job: &JobView) -> LeaseId {
    job.lease.as_ref().unwrap().id.parse().unwrap()
}

/// The job's whole log, through the API.
pub(crate) async fn log(net: &Testnet, id: &str) -> Vec<JobLogEntry> {
    let node = net.node("requester-0").unwrap();
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page: JobLogPage = http
            .get(format!("{}/v1/jobs/{id}/log?after={after}", node.api_url))
            .bearer_auth(&node.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page.entries.is_empty() {
            return out;
        }
        after = page.next;
        out.extend(page.entries);
    }
}

pub(crate) fn output(entries: &[JobLogEntry]) -> String {
    entries
        .iter()
        .filter(|e| e.kind != LogKind::Event)
        .map(|e| e.text.as_str())
        .collect()
}

pub(crate) async fn terminal(net: &Testnet, id: &str) -> JobView {
    wait_job(net, "requester-0", id, "a terminal state", |j| {
        j.state.is_terminal()
    })
    .await
}

/// The provider's view of the run of `lease`, once `done` holds.
pub(crate) async fn provider_run(
    net: &Testnet,
    lease: &LeaseId,
    what: &str,
    done: impl Fn(&RunView) -> bool,
) -> RunView {
    let client = net.client("provider-0").unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = client.provider_status().await;
        let run = status.as_ref().ok().and_then(|s| {
            s.runs
                .iter()
                .find(|r| r.lease_id == lease.to_string())
                .cloned()
        });
        if let Some(run) = &run
            && done(run)
        {
            return run.clone();
        }
        if Instant::now() >= deadline {
            panic!(
                "run {lease}: {what} did not happen; last: {run:#?}\n{}",
                net.log_tails(40)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Checks the ledger's books for a closed lease: the provider got `paid`,
/// the requester the rest, in three ledger operations.
pub(crate) async fn assert_closed(net: &Testnet, lease: &LeaseId, paid: Amount) {
    let ledger = net.ledger().await.unwrap();
    let escrow = ledger.escrow(lease).await.unwrap().expect("escrow");
    assert_eq!(escrow.settled, paid, "{escrow:#?}");
    assert_eq!(
        escrow.refunded,
        Some(Amount(escrow.escrow.0 - paid.0)),
        "{escrow:#?}"
    );
    assert_eq!(escrow.ops, 3, "lock, one settlement, close: {escrow:#?}");
    assert!(ledger.supply().await.unwrap().conserved());
}

on_both_ledgers!(
    a_job_runs_and_both_sides_agree_on_the_money,
    a_job_runs_and_both_sides_agree_on_the_money_on_the_mock_chain,
    a_job_runs_and_both_sides_agree_on_the_money_on_evm
);

async fn a_job_runs_and_both_sides_agree_on_the_money(ledger: LedgerBackend) {
    let Some((_dir, net)) = testnet_on(ledger, 1, 1).await else {
        return;
    };
    let submit = job(
        "ok",
        "for i in 1 2 3; do echo line $i; sleep 1; done; echo result > $AGORA_OUTPUT/out.txt; echo warn >&2",
        60,
    );
    let client = net.client("requester-0").unwrap();
    fund(&client).await;
    wait_for_offers(&net, "requester-0").await;
    let before = client.balance().await.unwrap().balance;
    let id = client.submit_job(&submit).await.unwrap().id;
    let job = terminal(&net, &id).await;
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{job:#?}\n{}",
        net.log_tails(30)
    );
    assert_eq!(job.exit_code, Some(0));
    let receipt = job.receipt.clone().unwrap();
    assert!(receipt.is_final && receipt.gpu_seconds >= 3, "{receipt:#?}");
    assert!(job.results_fetched);
    assert_eq!(job.outputs.len(), 1);
    assert_eq!(job.outputs[0].path, "out.txt");
    assert_eq!(
        job.outputs[0].blake3,
        blake3::hash(b"result\n").to_hex().to_string()
    );
    let entries = log(&net, &id).await;
    assert_eq!(output(&entries).matches("line ").count(), 3, "{entries:#?}");
    assert!(
        entries
            .iter()
            .any(|e| e.kind == LogKind::Stderr && e.text.contains("warn"))
    );
    for pair in entries.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "gap-free log");
    }
    assert_closed(&net, &lease_id(&job), receipt.amount).await;
    let after = client.balance().await.unwrap().balance;
    assert_eq!(
        after.0,
        before.0 - receipt.amount.0,
        "requester paid the final receipt only"
    );
    let run = provider_run(&net, &lease_id(&job), "closed", |r| r.closed).await;
    assert_eq!(run.settled, receipt.amount);
    // Both sides say the lease is closed with the unused escrow refunded
    // (not a bare "not locked").
    let status = net
        .client("provider-0")
        .unwrap()
        .provider_status()
        .await
        .unwrap();
    let lease = status
        .leases
        .iter()
        .find(|l| l.id == lease_id(&job).to_string())
        .unwrap();
    assert_eq!(lease.status, LeaseStatus::Refunded, "{lease:#?}");
    assert_eq!(
        job.lease.as_ref().map(|l| l.status),
        Some(LeaseStatus::Refunded)
    );
    // Earnings and spend over time, from the countersigned receipts, add
    // up to what the ledger moved: the same on both sides.
    let earned = net
        .client("provider-0")
        .unwrap()
        .earnings(Bucket::Hour, None)
        .await
        .unwrap();
    let spent = client.billing(Bucket::Day, None).await.unwrap();
    for page in [&earned, &spent] {
        assert_eq!(page.all_time, receipt.amount, "{page:#?}");
        assert_eq!(page.last_24h, receipt.amount, "{page:#?}");
        assert_eq!(page.settled, receipt.amount, "{page:#?}");
        let sum: u64 = page.buckets.iter().map(|b| b.amount.0).sum();
        assert_eq!(Amount(sum), receipt.amount, "{page:#?}");
        assert!(page.buckets.iter().all(|b| b.leases == 1), "{page:#?}");
    }
    // A requester-only node has no earnings; a window in the future is a
    // clear error about `since`.
    let err = client.earnings(Bucket::Day, None).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404), "{err}");
    let err = client
        .billing(Bucket::Hour, Some(Timestamp(u64::MAX / 2)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("since"), "{err}");
    net.down().await.unwrap();
}

on_both_ledgers!(
    a_provider_killed_mid_job_is_paid_only_countersigned_time_and_never_twice,
    a_provider_killed_mid_job_is_paid_only_countersigned_time_on_the_mock_chain,
    a_provider_killed_mid_job_is_paid_only_countersigned_time_on_evm
);

async fn a_provider_killed_mid_job_is_paid_only_countersigned_time_and_never_twice(
    ledger: LedgerBackend,
) {
    let Some((_dir, mut net)) = testnet_on(ledger, 1, 1).await else {
        return;
    };
    // A 300 s lease: the run is over long before it ends, so the lease
    // must close early, by a close both sides sign, not by the ledger's
    // grace after its end.
    let submit = job("long", "while true; do echo tick; sleep 1; done", 300);
    let job = started(&net, &submit).await;
    net.kill("provider-0").await.unwrap();
    // What the requester countersigned last is all the provider can claim.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = net.client("requester-0").unwrap();
    let at_kill = client.job(&job.id).await.unwrap().receipt.unwrap();
    // The provider comes back: the run is over, and it settles what it holds.
    net.restart("provider-0").await.unwrap();
    let lease = lease_id(&job);
    let run = provider_run(&net, &lease, "settled", |r| r.settled > Amount::ZERO).await;
    assert_eq!(run.settled, at_kill.amount, "{run:#?}");
    assert!(run.reason.unwrap_or_default().contains("restarted"));
    let done = terminal(&net, &job.id).await;
    assert_eq!(done.state, JobState::Failed, "{done:#?}");
    let books = net.ledger().await.unwrap();
    let escrow = books.escrow(&lease).await.unwrap().unwrap();
    let chain_now = books.now().await.unwrap();
    assert!(
        escrow.closed() && chain_now < escrow.ends_at,
        "closed before the lease's end: {escrow:#?} at {chain_now}"
    );
    assert!(
        done.events.iter().any(|e| e.event == "close_countersigned"
            && e.detail.starts_with("provider_restarted")),
        "{:#?}",
        done.events
    );
    // The provider's log says so too (it reaches the requester's log
    // after the books do).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let entries = log(&net, &job.id).await;
        if entries.iter().any(|e| {
            e.event.as_deref() == Some("closed")
                && e.text.contains("closed early (provider_restarted)")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the provider's log never said the lease closed early: {entries:#?}"
        );
        tokio::time::sleep(POLL).await;
    }
    // A second restart settles nothing more.
    net.restart("provider-0").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_closed(&net, &lease, at_kill.amount).await;
    // Restarts count no receipt twice in the provider's earnings.
    let earned = net
        .client("provider-0")
        .unwrap()
        .earnings(Bucket::Day, None)
        .await
        .unwrap();
    assert_eq!(earned.all_time, at_kill.amount, "{earned:#?}");
    assert_eq!(earned.settled, at_kill.amount, "{earned:#?}");
    net.down().await.unwrap();
}

on_both_ledgers!(
    a_requester_killed_mid_job_stops_the_job_and_pays_the_last_receipt,
    a_requester_killed_mid_job_pays_the_last_receipt_on_the_mock_chain,
    a_requester_killed_mid_job_pays_the_last_receipt_on_evm
);

async fn a_requester_killed_mid_job_stops_the_job_and_pays_the_last_receipt(ledger: LedgerBackend) {
    let Some((_dir, mut net)) = testnet_on(ledger, 1, 1).await else {
        return;
    };
    let submit = job("orphan", "while true; do echo tick; sleep 1; done", 120);
    let job = started(&net, &submit).await;
    net.kill("requester-0").await.unwrap();
    let lease = lease_id(&job);
    // Stopped for want of countersignatures (the reason below), not by the
    // lease's 120 s limit.
    provider_run(&net, &lease, "stopped", |r| r.state == "ended").await;
    let run = provider_run(&net, &lease, "settled", |r| r.settled > Amount::ZERO).await;
    assert!(
        run.reason
            .as_deref()
            .unwrap_or_default()
            .contains("countersigned no receipt"),
        "{run:#?}"
    );
    let receipt = run.receipt.clone().unwrap();
    assert!(!receipt.is_final);
    assert_eq!(
        run.settled, receipt.amount,
        "paid the last countersigned receipt"
    );
    let books = net.ledger().await.unwrap();
    let escrow = books.escrow(&lease).await.unwrap().unwrap();
    assert_eq!(escrow.settled, receipt.amount);
    net.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_exits_non_zero_fails_with_its_status_and_pays_its_time() {
    let (_dir, net) = testnet(1, 1).await;
    let client = net.client("requester-0").unwrap();
    fund(&client).await;
    wait_for_offers(&net, "requester-0").await;
    let submit = job("bad", "echo about to fail; sleep 2; exit 3", 60);
    let id = client.submit_job(&submit).await.unwrap().id;
    let job = terminal(&net, &id).await;
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    assert_eq!(job.exit_code, Some(3));
    assert!(
        job.reason.as_deref().unwrap_or_default().contains('3'),
        "{job:#?}"
    );
    let receipt = job.receipt.clone().unwrap();
    assert!(receipt.is_final && receipt.exit_status == Some(3));
    assert!(receipt.amount > Amount::ZERO);
    assert!(output(&log(&net, &id).await).contains("about to fail"));
    assert_closed(&net, &lease_id(&job), receipt.amount).await;
    net.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_the_sandboxs_disk_limit_fails_with_the_limit_and_pays_its_time() {
    let (_dir, net) = testnet(1, 1).await;
    let client = net.client("requester-0").unwrap();
    fund(&client).await;
    // The offer states the testnet's 256 MiB disk limit.
    let offers = wait_for_offers(&net, "requester-0").await;
    assert!(
        offers.iter().all(|o| o.limits.disk_mib == 256),
        "{offers:#?}"
    );
    // A job that needs more is declined by every provider before a lease.
    let mut needy = job("needy", "true", 60);
    needy.spec.resources.disk_mib = 1024;
    let id = client.submit_job(&needy).await.unwrap().id;
    let refused = terminal(&net, &id).await;
    assert_eq!(refused.state, JobState::NoBids, "{refused:#?}");
    assert!(refused.lease.is_none());
    assert!(
        refused
            .declines
            .iter()
            .all(|d| d.reason == agora_protocol::DeclineReason::Limits
                && d.detail.contains("1024 MiB of disk")),
        "{refused:#?}"
    );
    // 16 MiB of scratch every 100 ms in its work dir, forever.
    let submit = job(
        "writer",
        "i=0; while :; do head -c 16M /dev/zero > \"$HOME/s$i\"; i=$((i+1)); sleep 0.1; done",
        120,
    );
    let id = client.submit_job(&submit).await.unwrap().id;
    let job = terminal(&net, &id).await;
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let reason = job.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("disk limit of 256 MiB"), "{job:#?}");
    let lease = job.lease.clone().unwrap();
    assert_eq!(lease.limits.disk_mib, 256);
    let receipt = job.receipt.clone().unwrap();
    assert!(
        receipt.is_final && receipt.amount > Amount::ZERO,
        "{receipt:#?}"
    );
    assert!(receipt.gpu_seconds < 60, "stopped promptly: {receipt:#?}");
    assert_closed(&net, &lease_id(&job), receipt.amount).await;
    net.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stops_and_pays_the_time_used() {
    let (_dir, net) = testnet(1, 1).await;
    let submit = job("cancel-me", "while true; do echo tick; sleep 1; done", 300);
    let job = started(&net, &submit).await;
    let node = net.node("requester-0").unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/jobs/{}/cancel", node.api_url, job.id))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{answer:?}");
    let done = terminal(&net, &job.id).await;
    assert_eq!(done.state, JobState::Cancelled, "{done:#?}");
    let receipt = done.receipt.clone().unwrap();
    assert!(receipt.is_final && receipt.gpu_seconds >= 2, "{receipt:#?}");
    assert!(receipt.gpu_seconds < 60, "stopped promptly: {receipt:#?}");
    assert_closed(&net, &lease_id(&done), receipt.amount).await;
    net.down().await.unwrap();
}

on_both_ledgers!(
    a_chain_outage_neither_stops_a_job_nor_loses_its_settlement,
    a_chain_outage_loses_no_settlement_on_the_mock_chain,
    a_chain_outage_loses_no_settlement_on_evm
);

async fn a_chain_outage_neither_stops_a_job_nor_loses_its_settlement(ledger: LedgerBackend) {
    let Some((_dir, mut net)) = testnet_on(ledger, 1, 1).await else {
        return;
    };
    let submit = job(
        "through-outage",
        "for i in 1 2 3 4 5 6; do echo $i; sleep 1; done",
        60,
    );
    let job = started(&net, &submit).await;
    net.kill_chain().await.unwrap();
    // The job runs to its end while the chain is down.
    let ended = wait_job(&net, "requester-0", &job.id, "the job's end", |j| {
        j.receipt.as_ref().is_some_and(|r| r.is_final)
    })
    .await;
    assert_eq!(ended.exit_code, Some(0), "{ended:#?}");
    assert_eq!(ended.state, JobState::Settling);
    tokio::time::sleep(Duration::from_secs(3)).await;
    net.restart_chain().await.unwrap();
    let done = terminal(&net, &job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    let receipt = done.receipt.clone().unwrap();
    assert_closed(&net, &lease_id(&done), receipt.amount).await;
    net.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cannot_read_the_provider_key_or_reach_the_network() {
    if !agora_node::runtime::process::for_tests::sandbox_or_skip() {
        return;
    }
    let (_dir, net) = testnet(1, 1).await;
    let provider = net.node("provider-0").unwrap();
    let key = provider.data_dir.join("node.key");
    assert!(key.exists());
    let api = net.node("requester-0").unwrap().api_url.clone();
    let port = api.rsplit(':').next().unwrap().to_string();
    let script = format!(
        "if cat {key} > /dev/null; then echo KEY-READ; else echo key-denied; fi; \
         if bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null; then echo NET-OPEN; else echo net-denied; fi",
        key = key.display()
    );
    let client = net.client("requester-0").unwrap();
    fund(&client).await;
    wait_for_offers(&net, "requester-0").await;
    let id = client
        .submit_job(&job("escape", &script, 60))
        .await
        .unwrap()
        .id;
    let done = terminal(&net, &id).await;
    let out = output(&log(&net, &id).await);
    assert!(
        out.contains("key-denied") && !out.contains("KEY-READ"),
        "{out}"
    );
    assert!(
        out.contains("net-denied") && !out.contains("NET-OPEN"),
        "{out}"
    );
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    net.down().await.unwrap();
}
