//! `GET /v1/events`: the node's state as it changes, for the dashboard.
//!
//! One producer task (started by the first stream, ended once the last
//! stream is gone or the market stops) looks at the node once a second and
//! publishes a snapshot on a `watch` channel: each part already encoded as
//! JSON. Every stream remembers what it last sent per part and sends only
//! the parts that changed. A `watch` holds the latest snapshot only, so a
//! slow client skips snapshots and never queues them; a new or reconnected
//! client gets every part at once, so there is nothing to replay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use agora_client::api::{
    GpuCounts, JobState, JobSummary, JobView, JobsSummary, LeaseCounts, LeaseStatus,
    MAX_EVENT_STREAMS, ProviderStatus, ProviderSummary, RECENT_EVENTS, RecentEvent, RunCounts,
    SUMMARY_ROWS,
};
use agora_protocol::{Amount, Timestamp};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Semaphore, watch};

use super::{ApiState, Failure};
use crate::clock::now;
use crate::market::MarketHandle;
use crate::provider::telemetry::Telemetry;

/// How often the producer looks at the node.
pub(super) const TICK: Duration = Duration::from_secs(1);

/// Between keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A day, ms.
const DAY_MS: u64 = 86_400_000;

/// One look at the node: each part's name and its JSON.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    seq: u64,
    parts: Vec<(&'static str, Arc<str>)>,
}

/// What the streams share.
#[derive(Debug)]
pub(super) struct EventHub {
    latest: watch::Sender<Arc<Snapshot>>,
    producing: AtomicBool,
    /// The market stopped: streams end.
    closed: AtomicBool,
    seq: AtomicU64,
    streams: Arc<Semaphore>,
}

impl EventHub {
    pub(super) fn new() -> Self {
        Self {
            latest: watch::Sender::new(Arc::new(Snapshot::default())),
            producing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
        }
    }
}

/// The handler.
pub(super) async fn stream(
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> Result<Response, Failure> {
    let hub = state.events.clone();
    let permit = hub.streams.clone().try_acquire_owned().map_err(|_| {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{MAX_EVENT_STREAMS} event streams are open on this node already; close one (another dashboard tab?) and retry"
            ),
            None,
        )
    })?;
    let rx = hub.latest.subscribe();
    if !hub.producing.swap(true, Ordering::SeqCst) {
        tokio::spawn(produce(
            state.market.clone(),
            state.telemetry.clone(),
            hub.clone(),
        ));
    }
    struct Client {
        rx: watch::Receiver<Arc<Snapshot>>,
        hub: Arc<EventHub>,
        sent: BTreeMap<&'static str, Arc<str>>,
        first: bool,
        _permit: tokio::sync::OwnedSemaphorePermit,
    }
    let client = Client {
        rx,
        hub,
        sent: BTreeMap::new(),
        first: true,
        _permit: permit,
    };
    let stream = futures::stream::unfold(client, |mut c| async move {
        loop {
            if !c.first && c.rx.changed().await.is_err() {
                return None;
            }
            c.first = false;
            if c.hub.closed.load(Ordering::SeqCst) {
                return None;
            }
            let snapshot = c.rx.borrow_and_update().clone();
            let events = changed(&mut c.sent, &snapshot);
            if !events.is_empty() {
                return Some((events, c));
            }
        }
    });
    let stream = futures::StreamExt::flat_map(stream, |events| {
        futures::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// The events for the parts of `snapshot` that differ from `sent`, which
/// it updates.
fn changed(sent: &mut BTreeMap<&'static str, Arc<str>>, snapshot: &Snapshot) -> Vec<Event> {
    let mut events = Vec::new();
    for (name, json) in &snapshot.parts {
        if sent.get(name).is_some_and(|before| before == json) {
            continue;
        }
        sent.insert(name, json.clone());
        events.push(
            Event::default()
                .id(snapshot.seq.to_string())
                .event(*name)
                .data(json.as_ref()),
        );
    }
    events
}

/// Publishes a snapshot every [`TICK`] while anyone listens.
async fn produce(market: MarketHandle, telemetry: Option<Telemetry>, hub: Arc<EventHub>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if hub.latest.receiver_count() == 0 {
            hub.producing.store(false, Ordering::SeqCst);
            // A stream that subscribed meanwhile found `producing` still
            // set and started nothing: carry on for it.
            if hub.latest.receiver_count() == 0 || hub.producing.swap(true, Ordering::SeqCst) {
                return;
            }
        }
        if market.is_closed() {
            hub.closed.store(true, Ordering::SeqCst);
            hub.latest.send_modify(|_| {});
            hub.producing.store(false, Ordering::SeqCst);
            return;
        }
        let seq = hub.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let snapshot = look(&market, telemetry.as_ref(), seq, now()).await;
        hub.latest.send_replace(Arc::new(snapshot));
    }
}

/// One look at the node. A part the market cannot answer becomes an
/// `error` part saying which and why. Telemetry is each GPU's latest
/// sample only: the window is `GET /v1/provider/telemetry`.
async fn look(
    market: &MarketHandle,
    telemetry: Option<&Telemetry>,
    seq: u64,
    now: Timestamp,
) -> Snapshot {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    match market.info().await {
        Ok(info) => parts.push(("node", json(&info))),
        Err(e) => errors.push(format!("node: {}", e.message)),
    }
    match market.jobs().await {
        Ok(jobs) => parts.push(("jobs", json(&jobs_summary(jobs)))),
        Err(e) => errors.push(format!("jobs: {}", e.message)),
    }
    match market.provider().await {
        Ok(status) => parts.push(("provider", json(&provider_summary(status, now)))),
        // A requester-only node: no provider part.
        Err(e) if e.status == 404 => {}
        Err(e) => errors.push(format!("provider: {}", e.message)),
    }
    if let Some(telemetry) = telemetry {
        match telemetry.latest().await {
            Ok(gpus) => parts.push(("telemetry", json(&gpus))),
            Err(e) => errors.push(format!("telemetry: {e}")),
        }
    }
    let error = agora_client::api::ApiError {
        error: errors.join("; "),
        at: None,
    };
    parts.push(("error", json(&error)));
    Snapshot { seq, parts }
}

fn json<T: serde::Serialize>(value: &T) -> Arc<str> {
    serde_json::to_string(value).unwrap_or_default().into()
}

/// The `jobs` part: counts over every job, the newest rows, the newest
/// steps.
pub(super) fn jobs_summary(jobs: Vec<JobView>) -> JobsSummary {
    let mut states = BTreeMap::new();
    let mut spent = Amount::ZERO;
    for job in &jobs {
        *states.entry(state_name(job.state)).or_insert(0) += 1;
        let amount = job.receipt.as_ref().map_or(Amount::ZERO, |r| r.amount);
        spent = Amount(spent.0.saturating_add(amount.0));
    }
    let mut events: Vec<RecentEvent> = jobs
        .iter()
        .flat_map(|j| {
            j.events.iter().map(|e| RecentEvent {
                at: e.at,
                job: j.id.clone(),
                event: e.event.clone(),
                detail: e.detail.clone(),
            })
        })
        .collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    events.truncate(RECENT_EVENTS);
    let total = jobs.len() as u64;
    let mut jobs = jobs;
    jobs.sort_by_key(|j| std::cmp::Reverse(j.submitted_at));
    jobs.truncate(SUMMARY_ROWS);
    JobsSummary {
        total,
        states,
        spent,
        jobs: jobs.iter().map(job_summary).collect(),
        events,
    }
}

fn state_name(state: JobState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn job_summary(job: &JobView) -> JobSummary {
    let lease = job.lease.as_ref();
    JobSummary {
        id: job.id.clone(),
        name: job.name.clone(),
        state: job.state,
        reason: job.reason.clone(),
        submitted_at: job.submitted_at,
        gpus: job.spec.resources.gpus,
        bids: u32::try_from(job.bids.len()).unwrap_or(u32::MAX),
        declines: u32::try_from(job.declines.len()).unwrap_or(u32::MAX),
        provider: lease.map(|l| l.provider),
        gpu_model: lease.map(|l| l.gpu_model.clone()),
        leased_gpu_seconds: lease.map_or(0, |l| {
            u64::from(l.gpu_count).saturating_mul(l.max_duration_secs)
        }),
        used_gpu_seconds: job.receipt.as_ref().map_or(0, |r| r.gpu_seconds),
        spent: job.receipt.as_ref().map_or(Amount::ZERO, |r| r.amount),
        escrow: lease.filter(|l| l.escrow_locked).map(|l| l.escrow),
        settled: job.settlement.as_ref().map(|s| s.settled),
        refunded: job.settlement.as_ref().and_then(|s| s.refunded),
        exit_code: job.exit_code,
        log_seq: job.log_seq,
    }
}

/// The `provider` part: counts over everything, the newest leases and
/// runs.
pub(super) fn provider_summary(mut status: ProviderStatus, now: Timestamp) -> ProviderSummary {
    let sum = |kind: &str| -> u32 {
        status
            .reservations
            .iter()
            .filter(|r| r.kind == kind)
            .fold(0u32, |n, r| n.saturating_add(r.gpu_count))
    };
    let total = u32::try_from(status.gpus.len()).unwrap_or(u32::MAX);
    let (leased, held) = (sum("lease"), sum("hold"));
    let gpus = GpuCounts {
        total,
        leased,
        held,
        free: total.saturating_sub(leased).saturating_sub(held),
    };
    let day_ago = now.0.saturating_sub(DAY_MS);
    let leases = LeaseCounts {
        active: status
            .leases
            .iter()
            .filter(|l| matches!(l.status, LeaseStatus::Open | LeaseStatus::Unfunded))
            .count() as u64,
        new_24h: status
            .leases
            .iter()
            .filter(|l| l.starts_at.0 >= day_ago)
            .count() as u64,
        total: status.leases.len() as u64,
    };
    let mut runs = RunCounts::default();
    for run in &status.runs {
        match run.state.as_str() {
            "waiting" => runs.waiting += 1,
            "running" => runs.running += 1,
            _ if run.exit_code == Some(0) && run.reason.is_none() => runs.succeeded += 1,
            _ => runs.failed += 1,
        }
    }
    status
        .leases
        .sort_by_key(|l| std::cmp::Reverse(l.starts_at));
    status.leases.truncate(SUMMARY_ROWS);
    status.runs.truncate(SUMMARY_ROWS);
    ProviderSummary {
        gpus,
        leases,
        runs,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(seq: u64, parts: &[(&'static str, &str)]) -> Snapshot {
        Snapshot {
            seq,
            parts: parts.iter().map(|(n, j)| (*n, Arc::from(*j))).collect(),
        }
    }

    #[test]
    fn only_changed_parts_are_sent_again() {
        let mut sent = BTreeMap::new();
        let first = changed(&mut sent, &snapshot(1, &[("node", "{}"), ("jobs", "[]")]));
        assert_eq!(first.len(), 2, "a new client gets every part");
        let same = changed(&mut sent, &snapshot(2, &[("node", "{}"), ("jobs", "[]")]));
        assert!(same.is_empty());
        let one = changed(&mut sent, &snapshot(3, &[("node", "{}"), ("jobs", "[1]")]));
        assert_eq!(one.len(), 1);
    }

    fn job(id: u8, state: &str, submitted_at: u64, receipt: Option<u64>) -> JobView {
        let receipt = receipt.map(|amount| {
            serde_json::json!({
                "sequence": 1, "gpu_seconds": amount * 2, "amount": amount,
                "issued_at": submitted_at + 5, "is_final": true,
                "exit_status": 0, "result_hash": null
            })
        });
        serde_json::from_value(serde_json::json!({
            "id": hex::encode([id; 32]), "name": null, "state": state, "reason": null,
            "submitted_at": submitted_at, "offer": null,
            "spec": {
                "command": ["true"],
                "resources": { "gpus": 1 },
                "market": { "max_price_per_gpu_hour": "1", "max_duration_secs": 60 }
            },
            "bids": [], "declines": [], "lease": null,
            "events": [
                { "at": submitted_at, "event": "submitted" },
                { "at": submitted_at + 1, "event": "order_published" }
            ],
            "receipt": receipt
        }))
        .unwrap()
    }

    #[test]
    fn jobs_are_counted_by_state_and_cut_to_the_newest() {
        assert!(jobs_summary(Vec::new()).jobs.is_empty());
        let jobs = vec![
            job(1, "succeeded", 100, Some(10)),
            job(2, "bidding", 300, None),
            job(3, "succeeded", 200, Some(20)),
        ];
        let summary = jobs_summary(jobs);
        assert_eq!(summary.total, 3);
        assert_eq!(summary.states.get("succeeded"), Some(&2));
        assert_eq!(summary.states.get("bidding"), Some(&1));
        assert_eq!(summary.spent, Amount(30));
        let order: Vec<u64> = summary.jobs.iter().map(|j| j.submitted_at.0).collect();
        assert_eq!(order, [300, 200, 100], "newest first");
        assert_eq!(summary.jobs[1].used_gpu_seconds, 40);
        assert_eq!(summary.events[0].at, Timestamp(301), "newest step first");
        assert_eq!(summary.events.len(), 6);

        let many = (0..SUMMARY_ROWS as u64 + 10)
            .map(|i| job((i % 250) as u8, "no_bids", i * 10, None))
            .collect();
        let summary = jobs_summary(many);
        assert_eq!(summary.total, SUMMARY_ROWS as u64 + 10, "counts cover all");
        assert_eq!(summary.jobs.len(), SUMMARY_ROWS);
        assert_eq!(summary.events.len(), RECENT_EVENTS);
        assert_eq!(state_name(JobState::NoBids), "no_bids");
    }

    #[test]
    fn provider_counts_gpus_by_reservation_leases_by_age_runs_by_end() {
        use agora_client::api::{GpuView, LeaseView, ReservationView, RunView};
        let key = agora_protocol::Keypair::from_seed(&[7; 32]).public();
        let now = Timestamp(DAY_MS * 3);
        let gpu = |index| GpuView {
            index,
            uuid: format!("GPU-{index}"),
            model: "H100".into(),
            vram_mib: 81_920,
            compute_capability: 90,
            power_limit_w: 700,
            simulated: true,
        };
        let reservation = |kind: &str, gpu_count| ReservationView {
            order_id: "00".into(),
            slot: 0,
            gpu_count,
            until: Timestamp(now.0 + 1000),
            kind: kind.into(),
        };
        let lease = |starts_at, status| LeaseView {
            limits: agora_protocol::SandboxLimits::default(),
            id: "11".into(),
            order_id: "22".into(),
            requester: key,
            provider: key,
            slot: 0,
            gpu_model: "H100".into(),
            gpu_count: 1,
            price_per_gpu_hour: Amount(1),
            max_duration_secs: 60,
            starts_at: Timestamp(starts_at),
            escrow: Amount(1),
            escrow_locked: true,
            status,
        };
        let run = |state: &str, exit_code, reason: Option<&str>| RunView {
            lease_id: "11".into(),
            order_id: "22".into(),
            requester: key,
            state: state.into(),
            started_at: None,
            ended_at: None,
            exit_code,
            reason: reason.map(str::to_owned),
            receipt: None,
            settled: Amount::ZERO,
            closed: false,
        };
        let status = ProviderStatus {
            driver: None,
            nvml_unavailable: None,
            gpus: (0..4).map(gpu).collect(),
            offers: Vec::new(),
            reservations: vec![reservation("lease", 2), reservation("hold", 1)],
            leases: vec![
                lease(DAY_MS, LeaseStatus::Refunded),
                lease(now.0 - 10, LeaseStatus::Open),
            ],
            orders_seen: 0,
            bids_sent: 0,
            declines_sent: 0,
            runs: vec![
                run("waiting", None, None),
                run("running", None, None),
                run("ended", Some(0), None),
                run("ended", Some(1), None),
                run("ended", None, Some("cancelled")),
            ],
            earned: Amount::ZERO,
            runtime_unavailable: None,
        };
        let summary = provider_summary(status, now);
        assert_eq!(
            summary.gpus,
            GpuCounts {
                total: 4,
                leased: 2,
                held: 1,
                free: 1
            }
        );
        assert_eq!(
            summary.leases,
            LeaseCounts {
                active: 1,
                new_24h: 1,
                total: 2
            }
        );
        assert_eq!(
            summary.runs,
            RunCounts {
                waiting: 1,
                running: 1,
                succeeded: 1,
                failed: 2
            }
        );
        assert_eq!(summary.status.leases[0].starts_at, Timestamp(now.0 - 10));
    }
}
