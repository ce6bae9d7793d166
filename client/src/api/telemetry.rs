//! GPU readings: `GET /v1/provider/telemetry`.

use agora_protocol::Timestamp;
use serde::{Deserialize, Serialize};

/// One reading of a GPU's counters. NVML's fields are `None` for a
/// simulated GPU (it has no counters) and where the driver does not
/// report them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuSample {
    /// When it was read.
    pub at: Timestamp,
    /// Held by a lease at that time (simulated GPUs too).
    pub leased: bool,
    /// NVML: GPU utilization over its last sample period, percent.
    pub utilization_pct: Option<u32>,
    /// NVML: memory in use, MiB.
    pub memory_used_mib: Option<u64>,
    /// NVML: power draw, milliwatts.
    pub power_mw: Option<u32>,
    /// NVML: core temperature, °C.
    pub temperature_c: Option<u32>,
}

/// `GET /v1/provider/telemetry`: one GPU's recent readings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuTelemetry {
    /// Index (as in [`GpuView`](super::GpuView)).
    pub index: u32,
    /// UUID.
    pub uuid: String,
    /// Model.
    pub model: String,
    /// Simulated: no NVML counters, only `leased`.
    pub simulated: bool,
    /// Total memory, MiB.
    pub vram_mib: u64,
    /// Readings, oldest first (a bounded window of the most recent).
    pub samples: Vec<GpuSample>,
    /// Why the latest reading failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
