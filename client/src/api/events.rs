//! What the node-wide event stream `GET /v1/events` sends: compact
//! summaries of the jobs and the provider, and their bounds.

use std::collections::BTreeMap;

use agora_protocol::{Amount, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};

use super::{JobState, ProviderStatus};

/// Most `/v1/events` streams a node serves at once.
pub const MAX_EVENT_STREAMS: usize = 32;

/// Most jobs a [`JobsSummary`] lists, and most runs and leases a
/// [`ProviderSummary`] lists (newest first; the counts cover all).
pub const SUMMARY_ROWS: usize = 100;

/// Most entries of [`JobsSummary::events`].
pub const RECENT_EVENTS: usize = 50;

/// One job, as the `jobs` event shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Job id.
    pub id: String,
    /// Label.
    pub name: Option<String>,
    /// State.
    pub state: JobState,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// Submitted.
    pub submitted_at: Timestamp,
    /// GPUs asked for.
    pub gpus: u32,
    /// Bids received.
    pub bids: u32,
    /// Declines received.
    pub declines: u32,
    /// The leased provider.
    pub provider: Option<PublicKey>,
    /// GPU model leased.
    pub gpu_model: Option<String>,
    /// GPU-seconds leased: the lease's GPUs × its longest duration.
    pub leased_gpu_seconds: u64,
    /// GPU-seconds used: the latest countersigned receipt's.
    pub used_gpu_seconds: u64,
    /// Spent: the latest countersigned receipt's amount.
    pub spent: Amount,
    /// Escrow locked for the lease.
    pub escrow: Option<Amount>,
    /// Paid to the provider on the ledger, as last read.
    pub settled: Option<Amount>,
    /// Refunded on close.
    pub refunded: Option<Amount>,
    /// Exit status.
    pub exit_code: Option<i32>,
    /// Highest sequence of its log.
    pub log_seq: u64,
}

/// One step of a job in the `jobs` event's recent events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentEvent {
    /// When.
    pub at: Timestamp,
    /// The job.
    pub job: String,
    /// One of [`JOB_EVENTS`](super::JOB_EVENTS).
    pub event: String,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The `jobs` event: this node's jobs as a requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsSummary {
    /// Jobs in all.
    pub total: u64,
    /// Jobs per state (snake_case names), all jobs.
    pub states: BTreeMap<String, u64>,
    /// Spent over all jobs (latest countersigned receipts).
    pub spent: Amount,
    /// The newest [`SUMMARY_ROWS`] jobs, newest first.
    pub jobs: Vec<JobSummary>,
    /// The newest [`RECENT_EVENTS`] steps of any job, newest first.
    pub events: Vec<RecentEvent>,
}

/// GPUs by what holds them, from the provider's reservations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuCounts {
    /// In the inventory.
    pub total: u32,
    /// Taken by a lease (active).
    pub leased: u32,
    /// Held for a bid (pending).
    pub held: u32,
    /// Neither (available).
    pub free: u32,
}

/// Leases by age and state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCounts {
    /// Not yet closed on the ledger.
    pub active: u64,
    /// Starting in the last 24 hours.
    pub new_24h: u64,
    /// Signed in all.
    pub total: u64,
}

/// Runs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Leased, no payload yet.
    pub waiting: u64,
    /// Running.
    pub running: u64,
    /// Ended with exit status 0.
    pub succeeded: u64,
    /// Ended otherwise (a non-zero exit, a fault, a cancel).
    pub failed: u64,
}

/// The `provider` event: [`ProviderStatus`] with its lists cut to the
/// newest [`SUMMARY_ROWS`], and counts over everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSummary {
    /// GPUs active / pending / available.
    pub gpus: GpuCounts,
    /// Leases.
    pub leases: LeaseCounts,
    /// Runs.
    pub runs: RunCounts,
    /// The status; `leases` and `runs` newest first.
    pub status: ProviderStatus,
}
