//! Reading a GPU's counters through NVML. NVML's calls block (they are
//! ioctls on the driver), so the sampler runs them on a blocking thread.

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;

use super::ring::Reading;

/// Loads NVML; without a driver, why not (never a panic).
pub(super) fn init() -> Result<Nvml, String> {
    Nvml::init().map_err(|e| format!("no NVIDIA driver found (NVML: {e})"))
}

/// Reads the GPU with this UUID. A counter the driver does not report is
/// `None`; a GPU NVML cannot open at all is an error.
pub(super) fn read(nvml: &Nvml, uuid: &str) -> Result<Reading, String> {
    let device = nvml
        .device_by_uuid(uuid)
        .map_err(|e| format!("NVML cannot open GPU {uuid}: {e}"))?;
    Ok(Reading {
        utilization_pct: device.utilization_rates().ok().map(|u| u.gpu),
        memory_used_mib: device.memory_info().ok().map(|m| m.used / (1024 * 1024)),
        power_mw: device.power_usage().ok(),
        temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
    })
}
