//! What GPUs this provider has: detected through NVML, or declared as
//! simulated GPUs for testnets.

use agora_protocol::offer::normalize_model;
use agora_protocol::{Benchmark, BenchmarkMethod, Timestamp};

use crate::config::{RaySection, SimulatedGpu};

/// One GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// NVML index (or position among simulated GPUs).
    pub index: u32,
    /// NVML UUID, or `SIM-<n>`.
    pub uuid: String,
    /// Model name as reported (spaces replaced by '-').
    pub model: String,
    /// Total VRAM, MiB.
    pub vram_mib: u64,
    /// Compute capability × 10 (0 when unknown).
    pub compute_capability: u32,
    /// Power limit, watts (0 when unknown).
    pub power_limit_w: u32,
    /// Declared (simulated) or not yet measured.
    pub benchmark: Option<Benchmark>,
    /// Declared in config rather than detected.
    pub simulated: bool,
}

/// Everything found, with the driver version when there is one.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// The GPUs.
    pub gpus: Vec<Gpu>,
    /// The NVIDIA driver version, when NVML loaded.
    pub driver: Option<String>,
    /// Why NVML found nothing, said once in plain words.
    pub nvml_unavailable: Option<String>,
}

/// Reads the GPUs through NVML. Never panics: without a driver or a GPU it
/// returns an empty inventory with the reason.
pub fn detect() -> Inventory {
    match read_nvml() {
        Ok(inventory) => inventory,
        Err(reason) => Inventory {
            nvml_unavailable: Some(reason),
            ..Inventory::default()
        },
    }
}

fn read_nvml() -> Result<Inventory, String> {
    use nvml_wrapper::Nvml;
    let nvml = Nvml::init().map_err(|e| format!("no NVIDIA driver found (NVML: {e})"))?;
    let driver = nvml.sys_driver_version().ok();
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML could not count GPUs: {e}"))?;
    let mut gpus = Vec::with_capacity(count as usize);
    for index in 0..count {
        let device = nvml
            .device_by_index(index)
            .map_err(|e| format!("NVML could not open GPU {index}: {e}"))?;
        let model = device
            .name()
            .map_err(|e| format!("GPU {index}: no name: {e}"))?;
        let vram = device
            .memory_info()
            .map_err(|e| format!("GPU {index}: no memory info: {e}"))?;
        let cc = device
            .cuda_compute_capability()
            .map(|c| u32::try_from(c.major * 10 + c.minor).unwrap_or(0))
            .unwrap_or(0);
        gpus.push(Gpu {
            index,
            uuid: device.uuid().unwrap_or_else(|_| format!("GPU-{index}")),
            model: normalize_model(&model),
            vram_mib: vram.total / (1024 * 1024),
            compute_capability: cc,
            power_limit_w: device
                .power_management_limit()
                .map(|mw| mw / 1000)
                .unwrap_or(0),
            benchmark: None,
            simulated: false,
        });
    }
    if gpus.is_empty() {
        return Err("the NVIDIA driver is loaded but reports no GPUs".into());
    }
    Ok(Inventory {
        gpus,
        driver,
        nvml_unavailable: None,
    })
}

/// The GPUs declared in config, each marked simulated with a declared
/// benchmark.
pub fn simulated(declared: &[SimulatedGpu], now: Timestamp) -> Vec<Gpu> {
    let mut gpus = Vec::new();
    for class in declared {
        for _ in 0..class.count {
            let index = gpus.len() as u32;
            gpus.push(Gpu {
                index,
                uuid: format!("SIM-{index}"),
                model: normalize_model(&class.model),
                vram_mib: class.vram_gib.saturating_mul(1024),
                compute_capability: (class.compute_capability * 10.0).round().clamp(0.0, 255.0)
                    as u32,
                power_limit_w: 0,
                benchmark: Some(Benchmark {
                    fp32_mtflops: (class.tflops * 1000.0).round().max(1.0) as u64,
                    fp16_mtflops: 0,
                    memory_bandwidth_mbps: class.bandwidth_gbps.saturating_mul(1000),
                    method: BenchmarkMethod::Declared,
                    method_detail: "declared in [[simulated_gpu]]".into(),
                    measured_at: now,
                }),
                simulated: true,
            });
        }
    }
    gpus
}

/// The GPUs of a Ray cluster: `count` as Ray reports them, each of the
/// model, VRAM and throughput `[ray]` declares. Where NVML sees GPUs on
/// this machine, a model other than the declared one is reported (the
/// declaration stands: the cluster's workers may differ from the head).
pub fn ray(ray: &RaySection, count: u32, now: Timestamp) -> Inventory {
    let local = if ray.logical_gpus {
        Inventory::default()
    } else {
        detect()
    };
    let model = normalize_model(&ray.gpu_model);
    if let Some(gpu) = local.gpus.iter().find(|g| {
        !g.model
            .to_ascii_lowercase()
            .contains(&model.to_ascii_lowercase())
    }) {
        tracing::warn!(
            declared = %model,
            local = %gpu.model,
            "ray.gpu_model differs from a GPU NVML sees on this machine; offers state the declared model"
        );
    }
    let gpus = (0..count)
        .map(|index| Gpu {
            index,
            uuid: format!("RAY-{index}"),
            model: model.clone(),
            vram_mib: ray.gpu_vram_gib.saturating_mul(1024),
            compute_capability: 0,
            power_limit_w: 0,
            benchmark: Some(Benchmark {
                fp32_mtflops: (ray.gpu_tflops * 1000.0).round().max(1.0) as u64,
                fp16_mtflops: 0,
                memory_bandwidth_mbps: 0,
                method: BenchmarkMethod::Declared,
                method_detail: "declared in [ray]".into(),
                measured_at: now,
            }),
            simulated: ray.logical_gpus,
        })
        .collect();
    Inventory {
        gpus,
        driver: local.driver,
        nvml_unavailable: (count == 0)
            .then(|| format!("the Ray cluster at {} reports no GPUs", ray.base_url())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_gpus_are_marked_and_declared() {
        let declared = vec![SimulatedGpu {
            model: "A100".into(),
            vram_gib: 40,
            tflops: 19.5,
            bandwidth_gbps: 1555,
            compute_capability: 8.0,
            count: 2,
        }];
        let gpus = simulated(&declared, Timestamp(9));
        assert_eq!(gpus.len(), 2);
        assert!(gpus.iter().all(|g| g.simulated));
        let bench = gpus[1].benchmark.as_ref().unwrap();
        assert_eq!(
            (bench.fp32_mtflops, bench.method),
            (19_500, BenchmarkMethod::Declared)
        );
        assert_eq!(
            (
                gpus[1].vram_mib,
                gpus[1].compute_capability,
                gpus[1].uuid.as_str()
            ),
            (40_960, 80, "SIM-1")
        );
    }

    #[test]
    fn ray_gpus_are_counted_by_ray_and_described_by_config() {
        let section = RaySection {
            dashboard: "http://127.0.0.1:8265".into(),
            gpu_model: "NVIDIA A100".into(),
            gpu_vram_gib: 40,
            gpu_tflops: 19.5,
            logical_gpus: true,
            num_cpus: 1.0,
            poll_ms: 1000,
            head_timeout_secs: 20,
            health_secs: 5,
        };
        let inventory = ray(&section, 3, Timestamp(1));
        assert_eq!(inventory.gpus.len(), 3);
        assert!(
            inventory
                .gpus
                .iter()
                .all(|g| g.model == "A100" && g.simulated)
        );
        assert_eq!(
            (inventory.gpus[2].uuid.as_str(), inventory.gpus[2].vram_mib),
            ("RAY-2", 40_960)
        );
        let none = ray(&section, 0, Timestamp(1));
        assert!(none.gpus.is_empty());
        assert!(none.nvml_unavailable.unwrap().contains("no GPUs"));
    }

    #[test]
    fn detection_without_a_driver_says_why_and_does_not_panic() {
        let inventory = detect();
        // On a machine with a GPU this finds it; without one it says why.
        assert!(inventory.gpus.is_empty() == inventory.nvml_unavailable.is_some());
    }
}
