//! The sampler's pure core: a bounded ring of recent readings per GPU.
//! No tokio, no NVML here; time and readings are arguments.

use std::collections::VecDeque;

use agora_client::api::{GpuSample, GpuTelemetry};
use agora_protocol::Timestamp;

use crate::provider::inventory::Gpu;

/// NVML's counters of one GPU at one moment; a field is `None` where the
/// driver does not report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// GPU utilization over the driver's last sample period, percent.
    pub utilization_pct: Option<u32>,
    /// Memory in use, MiB.
    pub memory_used_mib: Option<u64>,
    /// Power draw, milliwatts.
    pub power_mw: Option<u32>,
    /// Core temperature, °C.
    pub temperature_c: Option<u32>,
}

/// One GPU's readings, oldest first, at most `capacity`.
#[derive(Debug)]
struct Track {
    gpu: Gpu,
    samples: VecDeque<GpuSample>,
    error: Option<String>,
}

/// Every GPU's recent readings.
#[derive(Debug)]
pub struct Rings {
    tracks: Vec<Track>,
    capacity: usize,
}

impl Rings {
    /// Empty rings for `gpus`, each keeping the latest `capacity` samples
    /// (at least one).
    pub fn new(gpus: &[Gpu], capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            tracks: gpus
                .iter()
                .map(|gpu| Track {
                    gpu: gpu.clone(),
                    samples: VecDeque::with_capacity(capacity.min(1024)),
                    error: None,
                })
                .collect(),
            capacity,
        }
    }

    /// How many samples each GPU keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The GPUs NVML should be asked about (not simulated): their UUIDs.
    pub fn real_uuids(&self) -> Vec<String> {
        self.tracks
            .iter()
            .filter(|t| !t.gpu.simulated)
            .map(|t| t.gpu.uuid.clone())
            .collect()
    }

    /// Records one sample per GPU taken at `at`. `leased` are the indices
    /// of the GPUs a lease's run holds; `read` gives a real GPU's reading
    /// by UUID (or why it failed). A simulated GPU is never read: its
    /// NVML fields are `None`. The oldest sample goes when a ring is full.
    pub fn record(
        &mut self,
        at: Timestamp,
        leased: &[u32],
        mut read: impl FnMut(&str) -> Result<Reading, String>,
    ) {
        for track in &mut self.tracks {
            let reading = if track.gpu.simulated {
                track.error = None;
                Reading::default()
            } else {
                match read(&track.gpu.uuid) {
                    Ok(reading) => {
                        track.error = None;
                        reading
                    }
                    Err(why) => {
                        track.error = Some(why);
                        Reading::default()
                    }
                }
            };
            if track.samples.len() == self.capacity {
                track.samples.pop_front();
            }
            track.samples.push_back(GpuSample {
                at,
                leased: leased.contains(&track.gpu.index),
                utilization_pct: reading.utilization_pct,
                memory_used_mib: reading.memory_used_mib,
                power_mw: reading.power_mw,
                temperature_c: reading.temperature_c,
            });
        }
    }

    /// Every GPU with at most its `last` most recent samples (all with
    /// `None`), oldest first.
    pub fn views(&self, last: Option<usize>) -> Vec<GpuTelemetry> {
        self.tracks
            .iter()
            .map(|t| {
                let skip = last.map_or(0, |n| t.samples.len().saturating_sub(n));
                GpuTelemetry {
                    index: t.gpu.index,
                    uuid: t.gpu.uuid.clone(),
                    model: t.gpu.model.clone(),
                    simulated: t.gpu.simulated,
                    vram_mib: t.gpu.vram_mib,
                    samples: t.samples.iter().skip(skip).cloned().collect(),
                    error: t.error.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, simulated: bool) -> Gpu {
        Gpu {
            index,
            uuid: format!("GPU-{index}"),
            model: "H100".into(),
            vram_mib: 81_920,
            compute_capability: 90,
            power_limit_w: 700,
            benchmark: None,
            simulated,
        }
    }

    fn reading(pct: u32) -> Reading {
        Reading {
            utilization_pct: Some(pct),
            memory_used_mib: Some(1024),
            power_mw: Some(250_000),
            temperature_c: Some(60),
        }
    }

    #[test]
    fn a_ring_keeps_the_latest_samples_oldest_first() {
        let mut rings = Rings::new(&[gpu(0, false)], 3);
        for (i, at) in (1..=5u64).enumerate() {
            rings.record(Timestamp(at * 1000), &[], |_| Ok(reading(i as u32)));
        }
        let views = rings.views(None);
        let samples = &views[0].samples;
        assert_eq!(samples.len(), 3);
        assert_eq!(
            samples.iter().map(|s| s.at.0).collect::<Vec<_>>(),
            vec![3000, 4000, 5000]
        );
        assert_eq!(samples[2].utilization_pct, Some(4));
        assert_eq!(rings.views(Some(1))[0].samples[0].at, Timestamp(5000));
        assert_eq!(rings.views(Some(10))[0].samples.len(), 3);
    }

    #[test]
    fn simulated_gpus_are_never_read_and_carry_only_leased() {
        let mut rings = Rings::new(&[gpu(0, true), gpu(1, true)], 10);
        assert!(rings.real_uuids().is_empty());
        rings.record(Timestamp(1), &[1], |uuid| {
            panic!("simulated GPU {uuid} was read")
        });
        let views = rings.views(None);
        assert!(views.iter().all(|v| v.simulated && v.error.is_none()));
        let (a, b) = (&views[0].samples[0], &views[1].samples[0]);
        assert!(!a.leased);
        assert!(b.leased);
        assert_eq!(
            (
                b.utilization_pct,
                b.memory_used_mib,
                b.power_mw,
                b.temperature_c
            ),
            (None, None, None, None)
        );
    }

    #[test]
    fn a_failed_read_is_a_sample_without_counters_and_says_why_until_one_succeeds() {
        let mut rings = Rings::new(&[gpu(0, false), gpu(1, true)], 10);
        assert_eq!(rings.real_uuids(), vec!["GPU-0".to_string()]);
        rings.record(Timestamp(1), &[0], |_| Err("NVML: driver gone".into()));
        let views = rings.views(None);
        assert_eq!(views[0].error.as_deref(), Some("NVML: driver gone"));
        assert_eq!(views[0].samples[0].utilization_pct, None);
        assert!(views[0].samples[0].leased);
        assert_eq!(views[1].error, None);
        rings.record(Timestamp(2), &[], |_| Ok(reading(50)));
        let views = rings.views(None);
        assert_eq!(views[0].error, None);
        assert_eq!(views[0].samples[1].utilization_pct, Some(50));
        assert_eq!(views[0].samples.len(), 2);
    }

    #[test]
    fn a_zero_capacity_keeps_one() {
        let mut rings = Rings::new(&[gpu(0, true)], 0);
        rings.record(Timestamp(1), &[], |_| Ok(Reading::default()));
        rings.record(Timestamp(2), &[], |_| Ok(Reading::default()));
        assert_eq!(rings.capacity(), 1);
        assert_eq!(rings.views(None)[0].samples[0].at, Timestamp(2));
    }
}
