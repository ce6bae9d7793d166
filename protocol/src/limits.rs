//! What bounds one job in a provider's sandbox: the offer states it, the
//! lease terms carry it, an order says the least its job needs.

use agora_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::message::ValidationError;

/// Largest CPU weight (cgroup v2's scale).
pub const MAX_CPU_WEIGHT: u32 = 10_000;

/// The bounds of one job; zero means "no limit". In an order the same
/// fields say the least the job needs of each (zero: no need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SandboxLimits {
    /// Processes and threads alive at once.
    pub pids: u32,
    /// Memory, the job's `/tmp` included, MiB.
    pub memory_mib: u64,
    /// The job's work dir and outputs on the provider's disk, MiB.
    pub disk_mib: u64,
    /// The job's `/tmp` (a tmpfs counted in `memory_mib`), MiB.
    pub tmp_mib: u64,
    /// CPU weight on cgroup v2's scale (1–10000; 100 is a fair share).
    pub cpu_weight: u32,
    /// `pids`, `memory_mib` and `cpu_weight` are enforced by a cgroup;
    /// without one only `disk_mib` (and `tmp_mib`) are.
    pub cgroup: bool,
}

impl SandboxLimits {
    /// Whether nothing is stated (an old offer, an order that needs
    /// nothing).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The wire form; `None` when nothing is stated, so messages without
    /// limits encode as they did before the field existed.
    pub fn to_proto(&self) -> Option<pb::SandboxLimits> {
        (!self.is_empty()).then_some(pb::SandboxLimits {
            pids: self.pids,
            memory_mib: self.memory_mib,
            disk_mib: self.disk_mib,
            tmp_mib: self.tmp_mib,
            cpu_weight: self.cpu_weight,
            cgroup: self.cgroup,
        })
    }

    /// From the wire form; `field` names it in errors.
    pub fn from_proto(
        field: &'static str,
        p: Option<pb::SandboxLimits>,
    ) -> Result<Self, ValidationError> {
        let Some(p) = p else {
            return Ok(Self::default());
        };
        if p.cpu_weight > MAX_CPU_WEIGHT {
            return Err(ValidationError::new(
                field,
                format!("cpu_weight {} is above {MAX_CPU_WEIGHT}", p.cpu_weight),
            ));
        }
        Ok(Self {
            pids: p.pids,
            memory_mib: p.memory_mib,
            disk_mib: p.disk_mib,
            tmp_mib: p.tmp_mib,
            cpu_weight: p.cpu_weight,
            cgroup: p.cgroup,
        })
    }

    /// Whether a job that needs `needs` fits in these limits; `Err` names
    /// the first that falls short, with both figures.
    pub fn covers(&self, needs: &SandboxLimits) -> Result<(), String> {
        let short = |name: &str, limit: u64, need: u64, unit: &str| {
            (need > 0 && limit > 0 && limit < need).then(|| {
                format!(
                    "the job needs {need}{unit} of {name} and this provider gives {limit}{unit}"
                )
            })
        };
        let checks = [
            short("processes", self.pids.into(), needs.pids.into(), ""),
            short("memory", self.memory_mib, needs.memory_mib, " MiB"),
            short("disk", self.disk_mib, needs.disk_mib, " MiB"),
            short("/tmp", self.tmp_mib, needs.tmp_mib, " MiB"),
        ];
        if let Some(reason) = checks.into_iter().flatten().next() {
            return Err(reason);
        }
        if needs.cgroup && !self.cgroup {
            return Err(
                "the job needs its limits enforced by a cgroup and this provider has none".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> SandboxLimits {
        SandboxLimits {
            pids: 512,
            memory_mib: 8192,
            disk_mib: 20_480,
            tmp_mib: 1024,
            cpu_weight: 100,
            cgroup: true,
        }
    }

    #[test]
    fn round_trips_and_nothing_stated_is_absent() {
        let l = offered();
        assert_eq!(SandboxLimits::from_proto("limits", l.to_proto()), Ok(l));
        assert_eq!(SandboxLimits::default().to_proto(), None);
        assert_eq!(
            SandboxLimits::from_proto("limits", None),
            Ok(SandboxLimits::default())
        );
        let mut p = l.to_proto().unwrap();
        p.cpu_weight = 10_001;
        let err = SandboxLimits::from_proto("offer.limits", Some(p)).unwrap_err();
        assert_eq!(err.field, "offer.limits");
    }

    #[test]
    fn each_short_limit_is_named_and_zero_means_none() {
        let l = offered();
        assert_eq!(l.covers(&SandboxLimits::default()), Ok(()));
        assert_eq!(l.covers(&l), Ok(()));
        let cases: [(SandboxLimits, &str); 5] = [
            (
                SandboxLimits {
                    pids: 513,
                    ..Default::default()
                },
                "513 of processes",
            ),
            (
                SandboxLimits {
                    memory_mib: 8193,
                    ..Default::default()
                },
                "8193 MiB of memory",
            ),
            (
                SandboxLimits {
                    disk_mib: 30_000,
                    ..Default::default()
                },
                "of disk",
            ),
            (
                SandboxLimits {
                    tmp_mib: 2048,
                    ..Default::default()
                },
                "of /tmp",
            ),
            (
                SandboxLimits {
                    cgroup: true,
                    ..Default::default()
                },
                "cgroup",
            ),
        ];
        let none = SandboxLimits { cgroup: false, ..l };
        for (needs, says) in cases {
            let err = if needs.cgroup {
                none.covers(&needs)
            } else {
                l.covers(&needs)
            };
            let err = err.unwrap_err();
            assert!(err.contains(says), "{err} should say {says}");
        }
        // A provider without a memory limit gives any amount.
        let unbounded = SandboxLimits { memory_mib: 0, ..l };
        assert_eq!(
            unbounded.covers(&SandboxLimits {
                memory_mib: 1 << 20,
                ..Default::default()
            }),
            Ok(())
        );
    }
}
