//! The gauges read at scrape time: what the node is now (peers, book,
//! leases, runs, jobs, earnings, GPUs), built into a registry of their own
//! for each scrape, so a series exists exactly while its thing does.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use agora_client::api::{GpuTelemetry, JobState};
use agora_protocol::{Amount, DeclineReason};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What the network actor says.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkGauges {
    /// Connected peers.
    pub peers: u64,
    /// Peers in the offers topic's mesh.
    pub mesh_peers: u64,
}

/// What the router says, read from its memory without awaiting anything.
#[derive(Debug, Clone, Default)]
pub struct MarketGauges {
    /// Live offers in the book.
    pub book_offers: u64,
    /// Leases by (role, status).
    pub leases: BTreeMap<(&'static str, &'static str), u64>,
    /// The executor's runs by state (a provider).
    pub runs: BTreeMap<&'static str, u64>,
    /// The requester's jobs by state.
    pub jobs: BTreeMap<&'static str, u64>,
    /// Settled to this provider over the runs it holds (a provider).
    pub earned: Option<Amount>,
    /// The router's background tasks running and waiting.
    pub tasks_running: u64,
    /// Waiting.
    pub tasks_queued: u64,
}

/// Everything a scrape read; a part is `None` where its source did not
/// answer in time (or, for GPUs, on a requester).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The swarm.
    pub network: Option<NetworkGauges>,
    /// The router.
    pub market: Option<MarketGauges>,
    /// Each GPU with its latest sample.
    pub gpus: Option<Vec<GpuTelemetry>>,
    /// Each source asked, and whether it answered.
    pub sources: Vec<(&'static str, bool)>,
}

/// `role`, `status`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleStatusLabels {
    role: &'static str,
    status: &'static str,
}

/// `state`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// `source`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// One GPU's series: `gpu` (index), `uuid`, `model`, `simulated`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GpuLabels {
    gpu: u32,
    uuid: String,
    model: String,
    simulated: bool,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

impl Snapshot {
    /// The gauges, in a registry of their own.
    pub(super) fn registry(&self) -> Registry {
        let mut r = Registry::default();
        let up = Family::<SourceLabel, Gauge>::default();
        for (source, ok) in &self.sources {
            up.get_or_create(&SourceLabel { source })
                .set(i64::from(*ok));
        }
        r.register(
            "agora_scrape_source_up",
            "Whether each part of the node answered this scrape in time (0: its series are missing)",
            up,
        );
        if let Some(n) = &self.network {
            gauge(&mut r, "agora_peers", "Peers connected now", n.peers);
            gauge(
                &mut r,
                "agora_mesh_peers",
                "Peers in the offers topic's gossip mesh now",
                n.mesh_peers,
            );
        }
        if let Some(m) = &self.market {
            self.market_gauges(&mut r, m);
        }
        if let Some(gpus) = &self.gpus {
            gpu_gauges(&mut r, gpus);
        }
        r
    }

    fn market_gauges(&self, r: &mut Registry, m: &MarketGauges) {
        gauge(
            r,
            "agora_book_offers",
            "Live offers in this node's book",
            m.book_offers,
        );
        let leases = Family::<RoleStatusLabels, Gauge>::default();
        for ((role, status), n) in &m.leases {
            leases
                .get_or_create(&RoleStatusLabels { role, status })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        r.register(
            "agora_leases",
            "Leases this node holds, by its role in them and their status",
            leases,
        );
        let by_state = |map: &BTreeMap<&'static str, u64>| {
            let family = Family::<StateLabel, Gauge>::default();
            for (state, n) in map {
                family
                    .get_or_create(&StateLabel { state })
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
            family
        };
        r.register(
            "agora_runs",
            "Runs this provider's executor holds, by state",
            by_state(&m.runs),
        );
        r.register(
            "agora_jobs",
            "This requester's jobs, by state",
            by_state(&m.jobs),
        );
        let tasks = Family::<StateLabel, Gauge>::default();
        tasks
            .get_or_create(&StateLabel { state: "running" })
            .set(i64::try_from(m.tasks_running).unwrap_or(i64::MAX));
        tasks
            .get_or_create(&StateLabel { state: "queued" })
            .set(i64::try_from(m.tasks_queued).unwrap_or(i64::MAX));
        r.register(
            "agora_market_tasks",
            "The router's background tasks, running and waiting",
            tasks,
        );
        if let Some(earned) = m.earned {
            r.register(
                "agora_provider_earned_base_units",
                "Settled to this provider on the ledger over the runs it holds, base units \
                 (1 AGR = 1000000)",
                ConstCounter::new(earned.0),
            );
        }
    }
}

fn gpu_gauges(r: &mut Registry, gpus: &[GpuTelemetry]) {
    let family = FloatGauge::default;
    let (util, used, total, power, temp, leased, ok) = (
        Family::<GpuLabels, FloatGauge>::new_with_constructor(family),
        Family::<GpuLabels, FloatGauge>::new_with_constructor(family),
        Family::<GpuLabels, FloatGauge>::new_with_constructor(family),
        Family::<GpuLabels, FloatGauge>::new_with_constructor(family),
        Family::<GpuLabels, FloatGauge>::new_with_constructor(family),
        Family::<GpuLabels, FloatGauge>::new_with_constructor(family),
        Family::<GpuLabels, FloatGauge>::new_with_constructor(family),
    );
    const MIB: f64 = 1024.0 * 1024.0;
    for gpu in gpus {
        let labels = GpuLabels {
            gpu: gpu.index,
            uuid: gpu.uuid.clone(),
            model: gpu.model.clone(),
            simulated: gpu.simulated,
        };
        total.get_or_create(&labels).set(gpu.vram_mib as f64 * MIB);
        let Some(sample) = gpu.samples.last() else {
            continue;
        };
        leased
            .get_or_create(&labels)
            .set(if sample.leased { 1.0 } else { 0.0 });
        if !gpu.simulated {
            ok.get_or_create(&labels)
                .set(if gpu.error.is_none() { 1.0 } else { 0.0 });
        }
        if let Some(v) = sample.utilization_pct {
            util.get_or_create(&labels).set(f64::from(v) / 100.0);
        }
        if let Some(v) = sample.memory_used_mib {
            used.get_or_create(&labels).set(v as f64 * MIB);
        }
        if let Some(v) = sample.power_mw {
            power.get_or_create(&labels).set(f64::from(v) / 1000.0);
        }
        if let Some(v) = sample.temperature_c {
            temp.get_or_create(&labels).set(f64::from(v));
        }
    }
    r.register("agora_gpu_memory_total_bytes", "Each GPU's memory", total);
    r.register(
        "agora_gpu_leased",
        "1 while a lease's run holds the GPU (its latest sample)",
        leased,
    );
    r.register(
        "agora_gpu_reading_ok",
        "1 when NVML answered the GPU's latest reading, 0 when it failed (not on simulated GPUs)",
        ok,
    );
    r.register(
        "agora_gpu_utilization_ratio",
        "NVML: GPU utilization over the driver's last sample period, 0 to 1 (not on simulated GPUs)",
        util,
    );
    r.register(
        "agora_gpu_memory_used_bytes",
        "NVML: GPU memory in use (not on simulated GPUs)",
        used,
    );
    r.register(
        "agora_gpu_power_watts",
        "NVML: power draw (not on simulated GPUs)",
        power,
    );
    r.register(
        "agora_gpu_temperature_celsius",
        "NVML: core temperature (not on simulated GPUs)",
        temp,
    );
}

/// A decline reason's label value.
pub fn decline_reason(reason: DeclineReason) -> &'static str {
    match reason {
        DeclineReason::NoCapacity => "no_capacity",
        DeclineReason::Model => "model",
        DeclineReason::Vram => "vram",
        DeclineReason::Compute => "compute",
        DeclineReason::Price => "price",
        DeclineReason::Region => "region",
        DeclineReason::Jurisdiction => "jurisdiction",
        DeclineReason::Energy => "energy",
        DeclineReason::Unverified => "unverified",
        DeclineReason::Simulated => "simulated",
        DeclineReason::Runtime => "runtime",
        DeclineReason::Duration => "duration",
        DeclineReason::Expired => "expired",
        DeclineReason::Network => "network",
        DeclineReason::Limits => "limits",
        DeclineReason::Funds => "funds",
    }
}

/// A job state's label value (its JSON name).
pub fn job_state(state: JobState) -> &'static str {
    match state {
        JobState::Bidding => "bidding",
        JobState::Leasing => "leasing",
        JobState::Leased => "leased",
        JobState::Running => "running",
        JobState::Settling => "settling",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::NoBids => "no_bids",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_the_json_names() {
        for reason in [
            DeclineReason::NoCapacity,
            DeclineReason::Vram,
            DeclineReason::Expired,
        ] {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", decline_reason(reason)));
        }
        for state in [JobState::NoBids, JobState::Settling, JobState::Succeeded] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", job_state(state)));
        }
    }
}
