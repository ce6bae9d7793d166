//! The node's configuration: one TOML file with defaults; CLI flags
//! override it.

use std::collections::BTreeMap;
use std::path::Path;

use agora_protocol::{Amount, Energy};
use serde::Deserialize;

mod node;
pub use node::NodeSection;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What toml said, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config: {field}: {reason}")]
    Invalid {
        /// The dotted key.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Provider settings; absent for a requester-only node.
    #[serde(default)]
    pub provider: Option<ProviderConfig>,
    /// GPUs a testnet provider declares instead of detecting.
    #[serde(default)]
    pub simulated_gpu: Vec<SimulatedGpu>,
    /// Market timing shared by both roles.
    #[serde(default)]
    pub node: NodeSection,
    /// How a provider runs leased jobs.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// The Ray cluster a provider with `runtimes = ["ray"]` runs jobs on.
    #[serde(default)]
    pub ray: Option<RaySection>,
    /// Which ledger the node settles on; without it, the mock chain at
    /// `--ledger URL`.
    #[serde(default)]
    pub ledger: LedgerSection,
    /// The API server's limits against hostile clients.
    #[serde(default)]
    pub api: ApiSection,
}

/// `[api]`: what the API server admits (see `api::serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Connections at once; one more is answered 503 and closed. Keep it
    /// well below the process's open-file limit (`ulimit -n`).
    pub max_connections: usize,
    /// Connections that have not yet sent the token; a new one evicts the
    /// oldest beyond this.
    pub max_unauthenticated_connections: usize,
    /// A request's head must arrive within this, milliseconds; an idle
    /// keep-alive connection is closed after it too.
    pub header_timeout_ms: u64,
    /// A connection that has not sent the token is closed this long after
    /// it opened, milliseconds.
    pub unauthenticated_timeout_ms: u64,
    /// A request's body must arrive within this, milliseconds.
    pub body_timeout_ms: u64,
    /// Requests without a valid token, per source address and second;
    /// beyond it, 429.
    pub unauthenticated_requests_per_sec: u32,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_unauthenticated_connections: 128,
            header_timeout_ms: 30_000,
            unauthenticated_timeout_ms: 30_000,
            body_timeout_ms: 60_000,
            unauthenticated_requests_per_sec: 20,
        }
    }
}

impl ApiSection {
    /// Refuses limits that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            field: format!("api.{field}"),
            reason,
        };
        if !(8..=65_536).contains(&self.max_connections) {
            return Err(invalid(
                "max_connections",
                format!("{} is not in 8..=65536", self.max_connections),
            ));
        }
        if self.max_unauthenticated_connections == 0
            || self.max_unauthenticated_connections >= self.max_connections
        {
            return Err(invalid(
                "max_unauthenticated_connections",
                format!(
                    "{} must be at least 1 and below max_connections ({}), so the token holder always finds room",
                    self.max_unauthenticated_connections, self.max_connections
                ),
            ));
        }
        for (field, ms) in [
            ("header_timeout_ms", self.header_timeout_ms),
            (
                "unauthenticated_timeout_ms",
                self.unauthenticated_timeout_ms,
            ),
            ("body_timeout_ms", self.body_timeout_ms),
        ] {
            if !(100..=600_000).contains(&ms) {
                return Err(invalid(field, format!("{ms} is not in 100..=600000")));
            }
        }
        if self.unauthenticated_requests_per_sec == 0 {
            return Err(invalid(
                "unauthenticated_requests_per_sec",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// `header_timeout_ms`.
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_timeout_ms)
    }

    /// `unauthenticated_timeout_ms`.
    pub fn unauthenticated_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.unauthenticated_timeout_ms)
    }

    /// `body_timeout_ms`.
    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_timeout_ms)
    }
}

/// `[ledger]`: the settlement backend.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// `[ledger.evm]`: the escrow contract on an EVM chain (its keys are
    /// those of [`agora_contracts_evm::EvmConfig`]).
    #[serde(default)]
    pub evm: Option<agora_contracts_evm::EvmConfig>,
}

impl LedgerSection {
    /// `[ledger.evm]` checked, errors naming the `ledger.evm` key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(evm) = &self.evm else {
            return Ok(());
        };
        evm.validate().map_err(|reason| ConfigError::Invalid {
            field: format!("ledger.evm.{}", reason.split(':').next().unwrap_or("evm")),
            reason,
        })
    }
}

/// `[ray]`: the Ray cluster behind a provider whose runtime is `ray`.
/// Jobs go to the cluster through its dashboard's Job Submission API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaySection {
    /// The head's dashboard, e.g. `http://127.0.0.1:8265`.
    pub dashboard: String,
    /// Model of the cluster's GPUs as offers state it ("A100"); Ray
    /// reports how many GPUs there are, not what they are.
    pub gpu_model: String,
    /// VRAM per GPU, GiB.
    pub gpu_vram_gib: u64,
    /// FP32 TFLOPS per GPU, declared (offers say `declared`).
    pub gpu_tflops: f64,
    /// The cluster's GPUs are logical (`ray start --num-gpus` on machines
    /// without them, as in tests): offers say `simulated`.
    #[serde(default)]
    pub logical_gpus: bool,
    /// CPUs Ray reserves for each job's entrypoint.
    #[serde(default = "one_f64")]
    pub num_cpus: f64,
    /// How often a job's status and logs are read, milliseconds.
    #[serde(default = "default_ray_poll_ms")]
    pub poll_ms: u64,
    /// A running job whose head answers nothing for this long ends
    /// failed; the same time bounds every request to the head.
    #[serde(default = "default_ray_head_timeout")]
    pub head_timeout_secs: u64,
    /// How often the head's health is checked; offers stop while it is
    /// down.
    #[serde(default = "default_ray_health_secs")]
    pub health_secs: u64,
}

fn one_f64() -> f64 {
    1.0
}
fn default_ray_poll_ms() -> u64 {
    1000
}
fn default_ray_head_timeout() -> u64 {
    20
}
fn default_ray_health_secs() -> u64 {
    5
}

impl RaySection {
    /// Checks the address and the ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            field: format!("ray.{field}"),
            reason,
        };
        let rest = self
            .dashboard
            .strip_prefix("http://")
            .or_else(|| self.dashboard.strip_prefix("https://"));
        if rest
            .is_none_or(|r| r.trim_end_matches('/').is_empty() || r.contains(char::is_whitespace))
        {
            return Err(invalid(
                "dashboard",
                format!(
                    "{:?} is not an http(s) URL; give the head's dashboard, e.g. \
                     \"http://127.0.0.1:8265\"",
                    self.dashboard
                ),
            ));
        }
        if self.gpu_model.trim().is_empty() {
            return Err(invalid(
                "gpu_model",
                "is empty; name the cluster's GPU model".into(),
            ));
        }
        if self.gpu_vram_gib == 0 {
            return Err(invalid("gpu_vram_gib", "must be at least 1".into()));
        }
        if !(self.gpu_tflops.is_finite() && self.gpu_tflops > 0.0) {
            return Err(invalid(
                "gpu_tflops",
                format!("{} must be a positive number", self.gpu_tflops),
            ));
        }
        if !(self.num_cpus.is_finite() && self.num_cpus >= 0.0) {
            return Err(invalid(
                "num_cpus",
                format!("{} must be zero or more", self.num_cpus),
            ));
        }
        if !(50..=60_000).contains(&self.poll_ms) {
            return Err(invalid(
                "poll_ms",
                format!("{} is outside 50..=60000 ms", self.poll_ms),
            ));
        }
        if !(1..=3600).contains(&self.head_timeout_secs) {
            return Err(invalid(
                "head_timeout_secs",
                format!("{} is outside 1..=3600 s", self.head_timeout_secs),
            ));
        }
        if !(1..=3600).contains(&self.health_secs) {
            return Err(invalid(
                "health_secs",
                format!("{} is outside 1..=3600 s", self.health_secs),
            ));
        }
        Ok(())
    }

    /// The dashboard URL without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.dashboard.trim_end_matches('/')
    }
}

/// `[runtime]`: how a provider runs jobs. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Path to the bubblewrap binary; found on `PATH` when absent.
    pub bwrap: Option<std::path::PathBuf>,
    /// Run jobs without a sandbox when bubblewrap is missing or cannot
    /// create namespaces. Off by default: a provider must opt in, knowing
    /// that a job then sees everything the node's user can.
    pub allow_unsandboxed: bool,
    /// Let jobs that ask for it reach the network. Off by default.
    pub allow_network: bool,
    /// Most bytes of outputs kept per job; more is left out and noted.
    pub max_output_bytes: u64,
    /// Most output files kept per job.
    pub max_output_files: u32,
    /// Most bytes of stdout+stderr forwarded per job; the rest is counted
    /// and dropped with a note.
    pub max_log_bytes: u64,
    /// After a receipt interval passes without the requester's
    /// countersignature, the job runs this much longer before it is
    /// stopped.
    pub countersign_grace_secs: u32,
    /// Most processes and threads a job has alive at once; 0: no limit.
    /// Needs a cgroup (see `docs/provider-guide.md`).
    pub max_pids: u32,
    /// Most memory a job uses, its `/tmp` included, MiB; 0: no limit.
    /// Needs a cgroup.
    pub max_memory_mib: u64,
    /// Size of a job's `/tmp`, a tmpfs in RAM counted in
    /// `max_memory_mib`, MiB.
    pub tmp_mib: u64,
    /// Most a job's work dir (its outputs included) holds on disk while
    /// it runs, MiB; 0: no limit.
    pub max_disk_mib: u64,
    /// A job's CPU weight on cgroup v2's scale (1–10000; 100 is a fair
    /// share). Needs a cgroup.
    pub cpu_weight: u32,
    /// A cgroup v2 directory delegated to the node, holding no process,
    /// in which jobs' cgroups are made; without it the node's own cgroup
    /// (v1, or v2 when it may enable controllers there) is used.
    pub cgroup: Option<std::path::PathBuf>,
    /// A finished job's outputs stay on disk this long to be fetched,
    /// then its work dir is removed (the rest of the work dir goes when
    /// the job ends).
    pub work_retention_secs: u64,
    /// A finished run's record, log and lease stay in the store this long,
    /// days (earnings, kept apart per receipt, keep their totals).
    pub run_retention_days: u64,
}

impl RuntimeSection {
    /// Refuses limits that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            field: format!("runtime.{field}"),
            reason,
        };
        if !(1..=agora_protocol::limits::MAX_CPU_WEIGHT).contains(&self.cpu_weight) {
            return Err(invalid(
                "cpu_weight",
                format!("{} is outside 1..=10000", self.cpu_weight),
            ));
        }
        if self.max_pids != 0 && self.max_pids < 16 {
            return Err(invalid(
                "max_pids",
                format!(
                    "{} is too few for the sandbox itself and a shell; use 16 or more, or 0 \
                     for no limit",
                    self.max_pids
                ),
            ));
        }
        if self.max_memory_mib != 0 && self.max_memory_mib < 64 {
            return Err(invalid(
                "max_memory_mib",
                format!(
                    "{} MiB is too little to start a job; use 64 or more, or 0",
                    self.max_memory_mib
                ),
            ));
        }
        if self.max_memory_mib != 0 && self.tmp_mib >= self.max_memory_mib {
            return Err(invalid(
                "tmp_mib",
                format!(
                    "{} MiB of /tmp would take all of max_memory_mib ({} MiB): /tmp is in \
                     the job's memory",
                    self.tmp_mib, self.max_memory_mib
                ),
            ));
        }
        if self.max_disk_mib != 0 && self.max_output_bytes > self.max_disk_mib << 20 {
            return Err(invalid(
                "max_output_bytes",
                format!(
                    "{} bytes of outputs cannot fit in max_disk_mib ({} MiB)",
                    self.max_output_bytes, self.max_disk_mib
                ),
            ));
        }
        Ok(())
    }
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            bwrap: None,
            allow_unsandboxed: false,
            allow_network: false,
            max_output_bytes: 256 * 1024 * 1024,
            max_output_files: 1000,
            max_log_bytes: 64 * 1024 * 1024,
            countersign_grace_secs: 10,
            max_pids: 4096,
            max_memory_mib: 16 * 1024,
            tmp_mib: 1024,
            max_disk_mib: 20 * 1024,
            cpu_weight: 100,
            cgroup: None,
            work_retention_secs: 24 * 3600,
            run_retention_days: 30,
        }
    }
}

/// How a provider prices, where it is, and what it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Region code offered, e.g. "EU".
    pub region: String,
    /// Two-letter country code, if stated.
    #[serde(default)]
    pub jurisdiction: Option<String>,
    /// Energy source.
    #[serde(default = "default_energy")]
    pub energy: Energy,
    /// Runtimes this provider runs.
    #[serde(default = "default_runtimes")]
    pub runtimes: Vec<String>,
    /// Longest lease accepted, seconds.
    #[serde(default = "default_max_lease_secs")]
    pub max_lease_secs: u64,
    /// A countersigned lease whose run has not started this many seconds
    /// later (its escrow never appeared on the ledger, or its job never
    /// came) gives its GPUs back, and a late job for it is refused.
    #[serde(default = "default_lease_start_timeout_secs")]
    pub lease_start_timeout_secs: u64,
    /// How often each GPU's counters (utilization, memory, power,
    /// temperature) are read through NVML, seconds; the last hour of
    /// readings is kept (`GET /v1/provider/telemetry`, `/metrics`).
    #[serde(default = "default_telemetry_interval_secs")]
    pub telemetry_interval_secs: u64,
    /// Pricing policy.
    pub pricing: PricingConfig,
}

impl ProviderConfig {
    /// Checks the telemetry interval: 1..=300 s (an hour's ring holds
    /// 12 to 3600 readings per GPU).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.lease_start_timeout_secs) {
            return Err(ConfigError::Invalid {
                field: "provider.lease_start_timeout_secs".into(),
                reason: format!(
                    "{} is outside 1..=3600 seconds (it must cover locking the escrow on the chain and delivering the job)",
                    self.lease_start_timeout_secs
                ),
            });
        }
        if !(1..=300).contains(&self.telemetry_interval_secs) {
            return Err(ConfigError::Invalid {
                field: "provider.telemetry_interval_secs".into(),
                reason: format!(
                    "{} is outside 1..=300 seconds",
                    self.telemetry_interval_secs
                ),
            });
        }
        Ok(())
    }
}

fn default_energy() -> Energy {
    Energy::Unknown
}
fn default_runtimes() -> Vec<String> {
    vec!["process".into()]
}
fn default_max_lease_secs() -> u64 {
    24 * 3600
}
fn default_telemetry_interval_secs() -> u64 {
    5
}
fn default_lease_start_timeout_secs() -> u64 {
    120
}

/// Declarative pricing: per model, with a default and a floor, all in AGR
/// per GPU-hour written as decimal strings ("2.5").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// Price for models not listed.
    pub default: String,
    /// Never bid below this.
    pub floor: String,
    /// Per-model prices; the model name matches case-insensitively.
    #[serde(default)]
    pub models: BTreeMap<String, String>,
}

/// A declared GPU class for testnets; every offer of such a node says
/// `simulated`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedGpu {
    /// Model name.
    pub model: String,
    /// VRAM per GPU, GiB.
    pub vram_gib: u64,
    /// FP32 TFLOPS per GPU (decimal string or number).
    pub tflops: f64,
    /// Memory bandwidth, GB/s.
    #[serde(default)]
    pub bandwidth_gbps: u64,
    /// Compute capability, e.g. 9.0.
    #[serde(default)]
    pub compute_capability: f64,
    /// How many.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl Config {
    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }
}

/// The config file a node in `data_dir` reads: `explicit` (`--config`),
/// else `DATA/agorad.toml` when it exists, else none (all defaults).
pub fn config_path(data_dir: &Path, explicit: Option<&Path>) -> Option<std::path::PathBuf> {
    match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => {
            let default = data_dir.join("agorad.toml");
            default.exists().then_some(default)
        }
    }
}

/// Loads the config a node in `data_dir` runs with (see [`config_path`]).
pub fn load_for(data_dir: &Path, explicit: Option<&Path>) -> Result<Config, ConfigError> {
    match config_path(data_dir, explicit) {
        Some(path) => Config::load(&path),
        None => Ok(Config::default()),
    }
}

/// Parses an AGR decimal from config, naming the key on error.
pub(crate) fn agr(field: &str, value: &str) -> Result<Amount, ConfigError> {
    value.parse::<Amount>().map_err(|e| ConfigError::Invalid {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[provider]
region = "EU"
jurisdiction = "DE"
energy = "renewable"

[provider.pricing]
default = "2.0"
floor = "1.2"
models = { H100 = "2.5" }

[[simulated_gpu]]
model = "H100"
vram_gib = 80
tflops = 67.0
count = 2
"#;

    #[test]
    fn runtime_limits_that_cannot_work_are_named() {
        RuntimeSection::default().validate().unwrap();
        let bad = |f: fn(&mut RuntimeSection)| {
            let mut r = RuntimeSection::default();
            f(&mut r);
            r.validate().unwrap_err().to_string()
        };
        assert!(bad(|r| r.cpu_weight = 0).contains("runtime.cpu_weight"));
        assert!(bad(|r| r.max_pids = 4).contains("runtime.max_pids"));
        assert!(bad(|r| r.max_memory_mib = 10).contains("runtime.max_memory_mib"));
        assert!(bad(|r| r.tmp_mib = r.max_memory_mib).contains("runtime.tmp_mib"));
        assert!(bad(|r| r.max_disk_mib = 1).contains("runtime.max_output_bytes"));
        // Zero is "no limit" for each.
        let none = RuntimeSection {
            max_pids: 0,
            max_memory_mib: 0,
            max_disk_mib: 0,
            ..RuntimeSection::default()
        };
        none.validate().unwrap();
        let parsed =
            Config::parse("[runtime]\nmax_pids = 64\nwork_retention_secs = 60\n", "t").unwrap();
        assert_eq!(
            (parsed.runtime.max_pids, parsed.runtime.work_retention_secs),
            (64, 60)
        );
    }

    #[test]
    fn parses_the_documented_example() {
        let config = Config::parse(EXAMPLE, "example").unwrap();
        let provider = config.provider.unwrap();
        assert_eq!(provider.energy, Energy::Renewable);
        assert_eq!(provider.pricing.models["H100"], "2.5");
        assert_eq!(config.simulated_gpu[0].count, 2);
        assert_eq!(config.node, NodeSection::default());
        assert_eq!(provider.telemetry_interval_secs, 5);
        provider.validate().unwrap();
    }

    #[test]
    fn the_telemetry_interval_is_checked() {
        let text = EXAMPLE.replace(
            "energy = \"renewable\"",
            "energy = \"renewable\"\ntelemetry_interval_secs = 0",
        );
        let provider = Config::parse(&text, "p.toml").unwrap().provider.unwrap();
        assert_eq!(provider.telemetry_interval_secs, 0);
        let err = provider.validate().unwrap_err().to_string();
        assert!(err.contains("provider.telemetry_interval_secs"), "{err}");
    }

    #[test]
    fn the_node_table_takes_defaults_and_checks_ranges() {
        let config = Config::parse("[node]\noffer_ttl_secs = 120\n", "node.toml").unwrap();
        assert_eq!(config.node.offer_ttl_secs, 120);
        assert_eq!(config.node.offer_refresh_secs, 20);
        config.node.validate().unwrap();
        NodeSection::default().validate().unwrap();
        let lapsing = NodeSection {
            offer_refresh_secs: 60,
            ..NodeSection::default()
        };
        let err = lapsing.validate().unwrap_err().to_string();
        assert!(err.contains("node.offer_refresh_secs"), "{err}");
        let unbudgeted = NodeSection {
            orders_per_peer_per_sec: 0,
            ..NodeSection::default()
        };
        let err = unbudgeted.validate().unwrap_err().to_string();
        assert!(err.contains("node.orders_per_peer_per_sec"), "{err}");
        let err = Config::parse("[node]\nofer_ttl_secs = 1\n", "node.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ofer_ttl_secs"), "{err}");
    }

    #[test]
    fn the_ray_section_is_checked() {
        let text = "[ray]\ndashboard = \"http://127.0.0.1:8265/\"\ngpu_model = \"A100\"\n\
                    gpu_vram_gib = 40\ngpu_tflops = 19.5\n";
        let ray = Config::parse(text, "ray.toml").unwrap().ray.unwrap();
        ray.validate().unwrap();
        assert_eq!(ray.base_url(), "http://127.0.0.1:8265");
        assert_eq!(
            (ray.num_cpus, ray.poll_ms, ray.logical_gpus),
            (1.0, 1000, false)
        );
        let bad = |ray: RaySection| ray.validate().unwrap_err().to_string();
        let err = bad(RaySection {
            dashboard: "127.0.0.1:8265".into(),
            ..ray.clone()
        });
        assert!(err.contains("ray.dashboard"), "{err}");
        let err = bad(RaySection {
            dashboard: "http://".into(),
            ..ray.clone()
        });
        assert!(err.contains("ray.dashboard"), "{err}");
        let err = bad(RaySection {
            gpu_tflops: f64::NAN,
            ..ray.clone()
        });
        assert!(err.contains("ray.gpu_tflops"), "{err}");
        let err = bad(RaySection {
            poll_ms: 0,
            ..ray.clone()
        });
        assert!(err.contains("ray.poll_ms"), "{err}");
        let err = bad(RaySection {
            gpu_model: " ".into(),
            ..ray
        });
        assert!(err.contains("ray.gpu_model"), "{err}");
        let err = Config::parse("[ray]\ndashboard = \"http://x\"\n", "ray.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpu_model"), "{err}");
    }

    #[test]
    fn a_typo_is_an_error_with_its_location() {
        let err = Config::parse(&EXAMPLE.replace("floor", "flor"), "provider.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("provider.toml"), "{err}");
        assert!(err.contains("flor"), "{err}");
    }

    #[test]
    fn ledger_evm_names_the_escrow_and_each_bad_key() {
        let config = Config::parse(
            "[ledger.evm]\nrpc_url = \"http://127.0.0.1:8545\"\nescrow = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n",
            "t.toml",
        )
        .unwrap();
        let evm = config.ledger.evm.as_ref().unwrap();
        assert_eq!(evm.key_file, std::path::PathBuf::from("evm.key"));
        assert_eq!(evm.confirmations, 1);
        config.ledger.validate().unwrap();
        // Not an address: the parse error names the key.
        let err = Config::parse(
            "[ledger.evm]\nrpc_url = \"http://x\"\nescrow = \"0x12\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("escrow"), "{err}");
        // A value out of range: the dotted key.
        let config = Config::parse(
            "[ledger.evm]\nrpc_url = \"http://x\"\nescrow = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\nconfirmations = 0\n",
            "t.toml",
        )
        .unwrap();
        let err = config.ledger.validate().unwrap_err().to_string();
        assert!(err.contains("ledger.evm.confirmations"), "{err}");
        // An unknown key is refused.
        assert!(Config::parse("[ledger.evm]\nrpc_url = \"http://x\"\nescrow = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\nconfirmation = 2\n", "t.toml").is_err());
    }
}
