//! The node API's JSON types: what `agorad` serves and `agora` reads.
//!
//! Every route but `/metrics` lives under `/v1`, and every route needs
//! `Authorization: Bearer TOKEN`; without it the node answers 401 and does
//! nothing. The one exception is the dashboard's static files (`GET /`,
//! `/dashboard/app.js`, `/dashboard/style.css`, `/dashboard/icon.svg`):
//! they hold no data, and the page asks for the token itself. Amounts are
//! base units (1 AGR = 1 000 000), times are Unix milliseconds, ids are hex.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/v1/node` | | [`NodeInfo`] |
//! | GET | `/v1/offers?q=QUERY&limit=N` | | [`OffersPage`] |
//! | GET | `/v1/offers/{id}` | | [`OfferView`] |
//! | POST | `/v1/jobs` | [`SubmitJob`] | 202 [`JobView`] |
//! | GET | `/v1/jobs` | | `[JobView]` |
//! | GET | `/v1/jobs/{id}` | | [`JobView`] |
//! | POST | `/v1/jobs/{id}/cancel` | | [`JobView`] (409 when it already ended) |
//! | GET | `/v1/jobs/{id}/log?after=SEQ&limit=N` | | [`JobLogPage`] |
//! | GET | `/v1/jobs/{id}/stream?after=SEQ` | | `text/event-stream` of [`JobLogEntry`] (see below) |
//! | GET | `/v1/jobs/{id}/result` | | [`ResultView`] (409 before the job has outputs) |
//! | GET | `/v1/jobs/{id}/result/{path}` | | the file's bytes (`application/octet-stream`) |
//! | GET | `/v1/provider` | | [`ProviderStatus`] (404 on a requester-only node) |
//! | GET | `/v1/ledger/balance` | | [`BalanceView`] |
//! | POST | `/v1/ledger/deposit` | [`DepositRequest`] | [`BalanceView`] |
//! | GET | `/v1/provider/earnings?bucket=hour\|day&since=MS` | | [`MoneyPage`] of what the provider earned (404 on a requester-only node) |
//! | GET | `/v1/provider/telemetry` | | `[GpuTelemetry]` (404 on a requester-only node) |
//! | GET | `/v1/billing?bucket=hour\|day&since=MS` | | [`MoneyPage`] of what this node spent as a requester |
//! | GET | `/v1/events` | | `text/event-stream` of the node's state as it changes (see below) |
//! | GET | `/metrics` | | the node's metrics: OpenMetrics text when `Accept` asks for it (Prometheus does), else Prometheus' text format 0.0.4 (`docs/metrics.md`) |
//!
//! The stream: one server-sent event per [`JobLogEntry`], `id:` its `seq`,
//! `event:` its kind (`event`, `stdout`, `stderr`), `data:` the entry as JSON.
//! It resumes after `?after=SEQ` or the `Last-Event-ID` header, and ends with
//! an `end` event (data: the final [`JobView`]) once the job is terminal and
//! every entry has been sent. Keep-alive comments come every 15 s.
//!
//! The node's event stream (`/v1/events`, what the dashboard shows): the
//! node looks at itself once a second and sends each part that changed
//! since this client's last event, `event:` the part's name, `data:` JSON:
//! `node` ([`NodeInfo`]), `jobs` ([`JobsSummary`]), `provider`
//! ([`ProviderSummary`], provider nodes only), `telemetry`
//! (`[GpuTelemetry]` with each GPU's latest sample only, provider nodes
//! only; the window is `GET /v1/provider/telemetry`), and `error`
//! ([`ApiError`], empty when every part was read). `id:` is the node's snapshot
//! number. The first events after connecting (or reconnecting) carry every
//! part, so a client that lost its connection just connects again: there is
//! nothing to replay. A slow client skips snapshots rather than queueing
//! them; at most [`MAX_EVENT_STREAMS`] streams are open at once (503
//! beyond). Keep-alive comments come every 15 s.
//!
//! Errors are [`ApiError`] with a meaningful status: 400 bad input, 401
//! missing or wrong token, 404 unknown id, 409 conflict, 502 ledger
//! unreachable.

use std::collections::BTreeMap;

use agora_protocol::{Amount, DeclineReason, Energy, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};

mod events;
mod money;
mod telemetry;

pub use events::{
    GpuCounts, JobSummary, JobsSummary, LeaseCounts, MAX_EVENT_STREAMS, ProviderSummary,
    RECENT_EVENTS, RecentEvent, RunCounts, SUMMARY_ROWS,
};
pub use money::{Bucket, MoneyBucket, MoneyPage};
pub use telemetry::{GpuSample, GpuTelemetry};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a person.
    pub error: String,
    /// Where: a query column, a spec field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// Which role a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Rents out GPUs (and can also order).
    Provider,
    /// Orders only.
    Requester,
}

/// `GET /v1/node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// libp2p peer id.
    pub peer_id: String,
    /// Ledger account (same key).
    pub account: PublicKey,
    /// Role.
    pub role: Role,
    /// libp2p listen addresses, each ending in `/p2p/PEER_ID`.
    pub listen_addrs: Vec<String>,
    /// Peers connected now.
    pub connected_peers: u32,
    /// Peers in the gossip mesh of the offers topic.
    pub mesh_peers: u32,
    /// Live offers in this node's book.
    pub offers_in_book: u32,
    /// Gossip messages accepted (valid, forwarded).
    pub gossip_accepted: u64,
    /// Gossip messages rejected (undecodable, forged, invalid); their senders
    /// are penalised through gossipsub peer scoring.
    pub gossip_rejected: u64,
    /// Software version.
    pub version: String,
    /// The market loop's time per event (older nodes send none).
    #[serde(default)]
    pub market_loop: LoopTimes,
    /// The market's background task pool.
    #[serde(default)]
    pub tasks: TaskCounts,
}

/// The market's background task pool: what runs and waits now, and what
/// it has done since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    /// Running now.
    pub running: u64,
    /// Waiting for a place now.
    pub queued: u64,
    /// Most that ever waited at once.
    pub most_queued: u64,
    /// Started since start.
    pub started: u64,
    /// Refused because the queue was full (each one's work failed, saying why).
    pub refused: u64,
    /// Ended without an answer (panicked); each one's job was told.
    pub lost: u64,
}

/// How long a node's market loop took per event, over its latest events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopTimes {
    /// Events handled since start.
    pub events: u64,
    /// Latest events the figures are over.
    pub sampled: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Slowest, µs.
    pub max_us: u64,
}

/// The first time a node saw one version of an offer (`GET
/// /v1/node/arrivals`): what offer-propagation measurements are made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferArrival {
    /// Offer id (hex).
    pub offer: String,
    /// The version.
    pub sequence: u64,
    /// When the provider created (and published) it, its clock.
    pub created_at: Timestamp,
    /// When this node first saw it, its clock.
    pub received_at: Timestamp,
    /// This node published it itself.
    pub own: bool,
}

/// `GET /v1/node/arrivals?after=MS&limit=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferArrivals {
    /// Versions first seen after `after`, in arrival order.
    pub arrivals: Vec<OfferArrival>,
    /// More entries follow the last one (ask again with its `received_at`).
    pub more: bool,
    /// Entries that fell off the node's bounded record since it started.
    pub evicted: u64,
}

/// One offer as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferView {
    /// Offer id (hex).
    pub id: String,
    /// Provider account.
    pub provider: PublicKey,
    /// Provider peer id.
    pub provider_peer: String,
    /// Provider's slot.
    pub slot: u32,
    /// Sequence (higher supersedes).
    pub sequence: u64,
    /// GPU model.
    pub gpu_model: String,
    /// VRAM per GPU, MiB.
    pub vram_mib: u64,
    /// Compute capability × 10.
    pub compute_capability: u32,
    /// Per-GPU FP32 milli-TFLOPS.
    pub fp32_mtflops: u64,
    /// Measured (not declared, not simulated).
    pub verified: bool,
    /// GPUs in the class.
    pub gpu_total: u32,
    /// GPUs free.
    pub gpu_free: u32,
    /// Price per GPU-hour.
    pub price_per_gpu_hour: Amount,
    /// Region.
    pub region: String,
    /// Jurisdiction.
    pub jurisdiction: Option<String>,
    /// Energy source.
    pub energy: Energy,
    /// Simulated GPUs.
    pub simulated: bool,
    /// Runtimes.
    pub runtimes: Vec<String>,
    /// Jobs may reach the network.
    #[serde(default)]
    pub network: bool,
    /// What bounds each job in the provider's sandbox (zero: no limit).
    #[serde(default)]
    pub limits: agora_protocol::SandboxLimits,
    /// Created.
    pub created_at: Timestamp,
    /// Expires.
    pub expires_at: Timestamp,
}

/// `GET /v1/offers` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffersPage {
    /// The query as understood.
    pub query: String,
    /// Matching offers, best first for the query's sort.
    pub offers: Vec<OfferView>,
    /// Offers in the book in all.
    pub book_size: u32,
}

/// A job specification: the TOML file a developer writes, also the JSON the
/// API accepts. Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A label for people.
    #[serde(default)]
    pub name: Option<String>,
    /// Runtime wanted ("process", "ray").
    #[serde(default = "default_runtime")]
    pub runtime: String,
    /// Program and arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment for the job.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Input files (read by the CLI and sent with the spec).
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
    /// What the job needs.
    pub resources: Resources,
    /// Where and how it may run.
    #[serde(default)]
    pub constraints: Constraints,
    /// What the developer pays and waits.
    pub market: MarketTerms,
}

fn default_runtime() -> String {
    "process".into()
}

/// GPUs wanted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// How many GPUs.
    pub gpus: u32,
    /// Model, e.g. "H100"; any when absent.
    #[serde(default)]
    pub gpu_model: Option<String>,
    /// Minimum VRAM per GPU, GiB.
    #[serde(default)]
    pub min_vram_gib: u64,
    /// Minimum FP32 TFLOPS per GPU.
    #[serde(default)]
    pub min_tflops: f64,
    /// Minimum compute capability, e.g. 8.0.
    #[serde(default)]
    pub min_compute_capability: f64,
    /// Memory the job needs in the provider's sandbox (its `/tmp`
    /// included), MiB; providers with a lower limit decline.
    #[serde(default)]
    pub memory_mib: u64,
    /// Disk the job needs for its work dir and outputs, MiB.
    #[serde(default)]
    pub disk_mib: u64,
    /// Size of `/tmp` the job needs, MiB.
    #[serde(default)]
    pub tmp_mib: u64,
    /// Processes and threads the job needs alive at once.
    #[serde(default)]
    pub processes: u32,
}

/// Placement constraints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Region code, e.g. "EU".
    #[serde(default)]
    pub region: Option<String>,
    /// Two-letter country code.
    #[serde(default)]
    pub jurisdiction: Option<String>,
    /// Energy source wanted.
    #[serde(default)]
    pub energy: Option<Energy>,
    /// Only measured GPUs.
    #[serde(default)]
    pub verified: bool,
    /// Accept simulated GPUs (testnets).
    #[serde(default)]
    pub allow_simulated: bool,
    /// The job needs network access (only providers that allow it run it).
    #[serde(default)]
    pub network: bool,
    /// Only providers whose sandbox limits are enforced by a cgroup
    /// (processes, memory, CPU weight), not only disk.
    #[serde(default)]
    pub enforced_limits: bool,
}

/// Price and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketTerms {
    /// Highest price per GPU-hour, AGR as a decimal string ("2.5").
    pub max_price_per_gpu_hour: String,
    /// Longest run, seconds.
    pub max_duration_secs: u64,
    /// How long bids are collected, milliseconds.
    #[serde(default = "default_bid_window_ms")]
    pub bid_window_ms: u32,
}

fn default_bid_window_ms() -> u32 {
    2000
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Path relative to the job spec file (in TOML) or the name in the job's
    /// work dir (in JSON).
    pub path: String,
    /// Contents, base64 (filled in by the CLI; absent in the TOML file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_b64: Option<String>,
}

/// `POST /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// The spec.
    pub spec: JobSpec,
    /// Lease this offer directly (the instant path), skipping the auction.
    #[serde(default)]
    pub offer: Option<String>,
}

/// Where a job stands.
///
/// `bidding → leasing → leased → running → settling → succeeded | failed |
/// cancelled`; `no_bids` and `failed` can also come before a lease. A job
/// is terminal once its lease is closed on the ledger (the remainder
/// refunded), or when it never got one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// The order is out; bids are being collected.
    Bidding,
    /// A winner was chosen; waiting for its countersignature and escrow.
    Leasing,
    /// Both signed and escrow is locked; the payload is on its way.
    Leased,
    /// The provider started it.
    Running,
    /// It stopped (`exit_code`/`reason` say how); payment and the refund
    /// are being settled on the ledger.
    Settling,
    /// It exited 0 and the lease is closed.
    Succeeded,
    /// It ended for the stated `reason` (a non-zero `exit_code`, a fault).
    Failed,
    /// Cancelled by the requester; the lease is closed.
    Cancelled,
    /// Nobody bid; `declines` says why.
    NoBids,
}

impl JobState {
    /// No further change will come.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::NoBids
        )
    }

    /// The job's process has stopped (or never will start).
    pub fn has_stopped(self) -> bool {
        self == JobState::Settling || self.is_terminal()
    }
}

/// A bid as the requester saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidView {
    /// Provider account.
    pub provider: PublicKey,
    /// Offer slot.
    pub slot: u32,
    /// GPU model.
    pub gpu_model: String,
    /// GPUs.
    pub gpu_count: u32,
    /// Price per GPU-hour.
    pub price_per_gpu_hour: Amount,
    /// Per-GPU FP32 milli-TFLOPS.
    pub fp32_mtflops: u64,
    /// Score: price per TFLOP-hour (lower wins), base units × 10⁻⁶.
    pub score: String,
    /// Received.
    pub received_at: Timestamp,
}

/// A decline as the requester saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclineView {
    /// Provider account.
    pub provider: PublicKey,
    /// Why.
    pub reason: DeclineReason,
    /// Details.
    pub detail: String,
}

/// A lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// Lease id (hex).
    pub id: String,
    /// The order (job) id.
    pub order_id: String,
    /// Who pays.
    pub requester: PublicKey,
    /// Who is paid.
    pub provider: PublicKey,
    /// Offer slot.
    pub slot: u32,
    /// GPU model.
    pub gpu_model: String,
    /// GPUs.
    pub gpu_count: u32,
    /// Price per GPU-hour.
    pub price_per_gpu_hour: Amount,
    /// Longest run, seconds.
    pub max_duration_secs: u64,
    /// Starts.
    pub starts_at: Timestamp,
    /// Escrow locked.
    pub escrow: Amount,
    /// Escrow is locked on the ledger.
    pub escrow_locked: bool,
    /// Where the lease's escrow stands, as this node knows it.
    #[serde(default)]
    pub status: LeaseStatus,
    /// What bounds the job in the provider's sandbox, as both signed it.
    #[serde(default)]
    pub limits: agora_protocol::SandboxLimits,
}

/// Where a lease's escrow stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseStatus {
    /// Signed by both; the escrow is not (yet) locked.
    Unfunded,
    /// The escrow is locked: the lease runs or is being settled.
    #[default]
    Open,
    /// Closed on the ledger with everything paid out to the provider.
    Closed,
    /// Closed on the ledger; what was not used went back to the requester.
    Refunded,
}

impl LeaseStatus {
    /// Its name, as tables show it.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseStatus::Unfunded => "unfunded",
            LeaseStatus::Open => "open",
            LeaseStatus::Closed => "closed",
            LeaseStatus::Refunded => "refunded",
        }
    }

    /// The status of a lease whose escrow of `escrow` is locked (or not),
    /// with `settled` paid and, once closed, `refunded` returned.
    pub fn of(escrow_locked: bool, closed: bool, refunded: Amount) -> Self {
        match (escrow_locked, closed) {
            (_, true) if refunded > Amount::ZERO => LeaseStatus::Refunded,
            (_, true) => LeaseStatus::Closed,
            (true, false) => LeaseStatus::Open,
            (false, false) => LeaseStatus::Unfunded,
        }
    }
}

/// Every step a requester records on a job (`JobEvent.event`, and the
/// job's log entries of kind `event`), in the order a job meets them:
/// `submitted`, `order_published`, `bid`, `decline`, `auction_closed`,
/// `no_bids`, `lease_proposed`, `lease_refused`, `lease_signed`,
/// `escrow_locked`, `payload_delivered`, `running` (its start, or its first
/// receipt), `receipt` (log only), `cancel_requested`, `cancel_delivered`,
/// `cancelled` (before a lease), `provider_unresponsive`, `settled`,
/// `close_countersigned` (the provider's early close), `closed`,
/// `results_fetched`, `results_failed`, `finished`, `failed`;
/// `other` marks a step an older node recorded under a name no longer used.
pub const JOB_EVENTS: [&str; 25] = [
    "submitted",
    "order_published",
    "bid",
    "decline",
    "auction_closed",
    "no_bids",
    "lease_proposed",
    "lease_refused",
    "lease_signed",
    "escrow_locked",
    "payload_delivered",
    "running",
    "receipt",
    "cancel_requested",
    "cancel_delivered",
    "cancelled",
    "provider_unresponsive",
    "settled",
    "close_countersigned",
    "closed",
    "results_fetched",
    "results_failed",
    "finished",
    "failed",
    "other",
];

/// The provider's run events, as they reach a job's log (kind `event`):
/// `payload` (accepted), `started`, `exited` (the text gives the status),
/// `failed`, `cancelled`, `outputs` (some outputs left out), and on the
/// provider's own log `receipt_refused`, `settled`, `settlement_failed`,
/// `closed`.
pub const RUN_EVENTS: [&str; 10] = agora_protocol::RunEvent::NAMES;

/// A timestamped step of a job, from the node's own clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// When.
    pub at: Timestamp,
    /// What: one of [`JOB_EVENTS`].
    pub event: String,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Job id = order id (hex).
    pub id: String,
    /// A label.
    pub name: Option<String>,
    /// State.
    pub state: JobState,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// Submitted.
    pub submitted_at: Timestamp,
    /// The offer asked for on the instant path.
    pub offer: Option<String>,
    /// The spec.
    pub spec: JobSpec,
    /// Bids received, best first.
    pub bids: Vec<BidView>,
    /// Declines received.
    pub declines: Vec<DeclineView>,
    /// The lease, once signed.
    pub lease: Option<LeaseView>,
    /// Steps so far (lifecycle only; logs are in the job's log).
    pub events: Vec<JobEvent>,
    /// Exit status, once it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The latest receipt the requester countersigned.
    #[serde(default)]
    pub receipt: Option<ReceiptView>,
    /// Money on the ledger for this job's lease.
    #[serde(default)]
    pub settlement: Option<SettlementView>,
    /// Outputs, once the job ended and its manifest arrived.
    #[serde(default)]
    pub outputs: Vec<OutputView>,
    /// Every output was fetched and matched its hash.
    #[serde(default)]
    pub results_fetched: bool,
    /// Highest sequence in the job's log.
    #[serde(default)]
    pub log_seq: u64,
}

/// A countersigned usage receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptView {
    /// Sequence, from 1.
    pub sequence: u64,
    /// GPU-seconds since the lease started.
    pub gpu_seconds: u64,
    /// Cumulative amount owed.
    pub amount: Amount,
    /// Issued (provider's clock).
    pub issued_at: Timestamp,
    /// The last receipt of the lease.
    pub is_final: bool,
    /// Exit status it carries (final receipts).
    pub exit_status: Option<i32>,
    /// blake3 of the result manifest (final receipts), hex.
    pub result_hash: Option<String>,
}

/// A lease's money on the ledger, as last read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementView {
    /// Locked.
    pub escrow: Amount,
    /// Paid to the provider so far.
    pub settled: Amount,
    /// Highest receipt sequence settled.
    pub last_sequence: u64,
    /// Refunded to the requester on close (`None` while open).
    pub refunded: Option<Amount>,
    /// When anyone may close the lease (unless its final receipt settles first).
    pub closable_at: Timestamp,
    /// Ledger operations that touched this lease.
    pub ledger_ops: u32,
}

/// One output file of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputView {
    /// Path relative to the job's output dir.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// blake3, hex.
    pub blake3: String,
}

/// `GET /v1/jobs/{id}/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultView {
    /// The job.
    pub job_id: String,
    /// Exit status.
    pub exit_code: Option<i32>,
    /// blake3 of the manifest, hex, as countersigned in the final receipt.
    pub result_hash: String,
    /// Files.
    pub outputs: Vec<OutputView>,
    /// Every file is on this node and matched its hash.
    pub complete: bool,
}

/// What a job log entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// A lifecycle event (`event` names it).
    Event,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogKind {
    /// The SSE event name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Event => "event",
            LogKind::Stdout => "stdout",
            LogKind::Stderr => "stderr",
        }
    }
}

/// One entry of a job's log: a lifecycle event or a chunk of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLogEntry {
    /// Position in the job's log, from 1, gap-free.
    pub seq: u64,
    /// When the node recorded it (or the provider, for its own entries).
    pub at: Timestamp,
    /// Kind.
    pub kind: LogKind,
    /// Event name: one of [`JOB_EVENTS`] (the requester's own steps) or
    /// [`RUN_EVENTS`] (the provider's); absent for output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The text: the event's detail, or the output (lossy UTF-8, one or
    /// more whole lines when the job wrote lines).
    pub text: String,
}

/// `GET /v1/jobs/{id}/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLogPage {
    /// Entries after the asked-for sequence, in order.
    pub entries: Vec<JobLogEntry>,
    /// Ask with `after=next` for more.
    pub next: u64,
    /// The job is terminal and this page reached the end of its log.
    pub finished: bool,
}

/// One GPU of a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuView {
    /// Index.
    pub index: u32,
    /// UUID.
    pub uuid: String,
    /// Model.
    pub model: String,
    /// VRAM, MiB.
    pub vram_mib: u64,
    /// Compute capability × 10.
    pub compute_capability: u32,
    /// Power limit, W.
    pub power_limit_w: u32,
    /// Simulated.
    pub simulated: bool,
}

/// GPUs held for a bid or taken by a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    /// The order.
    pub order_id: String,
    /// Offer slot.
    pub slot: u32,
    /// GPUs.
    pub gpu_count: u32,
    /// Held until (a bid hold) — a lease holds until its end.
    pub until: Timestamp,
    /// `hold` for a bid, `lease` once leased.
    pub kind: String,
}

/// `GET /v1/provider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStatus {
    /// NVIDIA driver version, when NVML loaded.
    pub driver: Option<String>,
    /// Why NVML found nothing, when it did not.
    pub nvml_unavailable: Option<String>,
    /// GPUs.
    pub gpus: Vec<GpuView>,
    /// This provider's current offers.
    pub offers: Vec<OfferView>,
    /// Holds and leases.
    pub reservations: Vec<ReservationView>,
    /// Leases signed.
    pub leases: Vec<LeaseView>,
    /// Orders seen, bids sent, declines sent.
    pub orders_seen: u64,
    /// Bids sent.
    pub bids_sent: u64,
    /// Declines sent.
    pub declines_sent: u64,
    /// Jobs run under this provider's leases, newest first.
    #[serde(default)]
    pub runs: Vec<RunView>,
    /// Settled to this provider over all runs.
    #[serde(default)]
    pub earned: Amount,
    /// Why the runtime cannot run jobs now (e.g. the Ray head does not
    /// answer); while set, the provider neither offers nor bids.
    #[serde(default)]
    pub runtime_unavailable: Option<String>,
}

/// A job as its provider runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    /// The lease.
    pub lease_id: String,
    /// The requester's order (job id on the requester's node).
    pub order_id: String,
    /// Who pays.
    pub requester: PublicKey,
    /// `waiting` (leased, no payload yet), `running`, `ended`.
    pub state: String,
    /// Started.
    pub started_at: Option<Timestamp>,
    /// Ended.
    pub ended_at: Option<Timestamp>,
    /// Exit status.
    pub exit_code: Option<i32>,
    /// Why it ended, when not by exiting.
    pub reason: Option<String>,
    /// The latest receipt the requester countersigned.
    pub receipt: Option<ReceiptView>,
    /// Settled on the ledger.
    pub settled: Amount,
    /// The lease is closed.
    pub closed: bool,
}

/// `GET /v1/ledger/balance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceView {
    /// The account.
    pub account: PublicKey,
    /// Spendable.
    pub balance: Amount,
}

/// `POST /v1/ledger/deposit` (the mock chain's faucet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// How much.
    pub amount: Amount,
}
