//! `agorad doctor`: every precondition of starting a node, checked
//! without starting one. Each check is a function returning a [`Check`]
//! (what was found, how bad, the fix in one line); [`run`] makes them all
//! and [`exit_status`] turns them into the binary's exit status.
//!
//! Nothing here changes the machine: ports are bound and released at
//! once, the data dir and key are only looked at, the ledger is only
//! asked the time.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_contracts_mock::client::HttpLedger;
use agora_protocol::{Keypair, Timestamp};
use libp2p::Multiaddr;
use serde::Serialize;

use crate::config::{self, Config};
use crate::identity;
use crate::provider::bidder::Bidder;
use crate::provider::inventory::{self, Inventory};
use crate::runtime::Runtime;
use crate::runtime::ray::RayRuntime;

/// Clock skew against the ledger past which a check warns, ms.
pub const SKEW_WARN_MS: u64 = 2_000;
/// Clock skew against the ledger past which a check fails, ms.
pub const SKEW_ERROR_MS: u64 = 30_000;
/// Free space where results go under which a check warns, bytes.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024 * 1024;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fine.
    Ok,
    /// The node starts, but something is off.
    Warning,
    /// The node would not start (or not as a provider).
    Error,
}

impl Severity {
    /// The lowercase word printed and serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked ("sandbox", "ledger", …).
    pub check: String,
    /// How bad.
    pub severity: Severity,
    /// What was found.
    pub found: String,
    /// The fix in one line; `None` when there is nothing to fix.
    pub fix: Option<String>,
}

impl Check {
    fn new(check: &str, severity: Severity, found: impl Into<String>, fix: Option<String>) -> Self {
        Self {
            check: check.to_string(),
            severity,
            found: found.into(),
            fix,
        }
    }

    /// A passing check.
    pub fn ok(check: &str, found: impl Into<String>) -> Self {
        Self::new(check, Severity::Ok, found, None)
    }

    /// A warning with its fix.
    pub fn warning(check: &str, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Severity::Warning, found, Some(fix.into()))
    }

    /// An error with its fix.
    pub fn error(check: &str, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Severity::Error, found, Some(fix.into()))
    }
}

/// What to check: the same data dir, config, ledger and addresses as
/// `agorad provider` / `requester` take.
#[derive(Debug, Clone)]
pub struct Options {
    /// Data dir.
    pub data_dir: PathBuf,
    /// `--config`, if given.
    pub config: Option<PathBuf>,
    /// `--ledger`, if given.
    pub ledger: Option<String>,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// API address.
    pub api: SocketAddr,
}

/// Runs every check, in the order they are documented.
pub async fn run(options: &Options) -> Vec<Check> {
    let (config_check, config) = check_config(&options.data_dir, options.config.as_deref());
    // A config that does not parse is reported; the rest is checked with
    // the defaults (a requester), so one bad key hides nothing else.
    let config = config.unwrap_or_default();
    let mut checks = vec![config_check, check_sandbox(&config)];
    checks.push(check_gpus(&config, &inventory::detect()));
    if let Some(ray) = check_ray(&config).await {
        checks.push(ray);
    }
    match &config.ledger.evm {
        Some(evm) => checks.extend(check_evm_ledger(evm, &options.data_dir).await),
        None => {
            let (ledger, clock) = check_ledger(options.ledger.as_deref()).await;
            checks.push(ledger);
            checks.push(clock);
        }
    }
    checks.extend(options.listen.iter().map(check_listen));
    checks.push(check_api(options.api));
    checks.push(check_data_dir(&options.data_dir));
    checks.push(check_key_file(&identity::key_path(&options.data_dir)));
    checks.push(check_disk(
        &options.data_dir.join("results"),
        config.node.min_free_disk_mib,
    ));
    checks
}

/// 0 when nothing is an error (the node would start), 1 otherwise.
pub fn exit_status(checks: &[Check]) -> u8 {
    u8::from(checks.iter().any(|c| c.severity == Severity::Error))
}

/// One line per check, aligned: severity, check, what was found, the fix.
pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let _ = write!(
            out,
            "{:<7}  {:<width$}  {}",
            c.severity.as_str(),
            c.check,
            c.found
        );
        if let Some(fix) = &c.fix {
            let _ = write!(out, " — fix: {fix}");
        }
        out.push('\n');
    }
    out
}

fn is_provider(config: &Config) -> bool {
    config.provider.is_some()
}

fn runs_ray(config: &Config) -> bool {
    config
        .provider
        .as_ref()
        .is_some_and(|p| p.runtimes.iter().any(|r| r == "ray"))
}

/// The config parses (unknown keys and bad values name the key) and
/// holds together as the daemon checks it: `[node]` ranges, `[ray]`, one
/// runtime, and prices the bidder accepts (none below the floor).
pub fn check_config(data_dir: &Path, explicit: Option<&Path>) -> (Check, Option<Config>) {
    const NAME: &str = "config";
    let shown = config::config_path(data_dir, explicit).map_or_else(
        || "no config file (defaults: a requester)".to_string(),
        |p| p.display().to_string(),
    );
    let config = match config::load_for(data_dir, explicit) {
        Ok(config) => config,
        Err(e) => {
            let check = Check::error(NAME, e.to_string(), "fix the key named above in the file");
            return (check, None);
        }
    };
    match validate(&config) {
        Ok(()) => (Check::ok(NAME, shown), Some(config)),
        Err(e) => (
            Check::error(NAME, e.to_string(), "fix the key named above in the file"),
            Some(config),
        ),
    }
}

fn validate(config: &Config) -> Result<(), config::ConfigError> {
    config.node.validate()?;
    config.ledger.validate()?;
    config.api.validate()?;
    config.runtime.validate()?;
    if let Some(ray) = &config.ray {
        ray.validate()?;
    }
    let Some(provider) = &config.provider else {
        return Ok(());
    };
    provider.validate()?;
    match provider.runtimes.as_slice() {
        [one] if one == "process" || one == "ray" => {}
        [] => {}
        other => {
            return Err(config::ConfigError::Invalid {
                field: "provider.runtimes".into(),
                reason: format!("{other:?}: a provider runs one runtime, \"process\" or \"ray\""),
            });
        }
    }
    if runs_ray(config) && config.ray.is_none() {
        return Err(config::ConfigError::Invalid {
            field: "ray".into(),
            reason: "provider.runtimes = [\"ray\"] needs a [ray] section".into(),
        });
    }
    // The bidder's own checks (pricing floor, region, lease length), on
    // the declared GPUs and a throwaway key.
    let now = crate::clock::now();
    let inventory = Inventory {
        gpus: inventory::simulated(&config.simulated_gpu, now),
        ..Inventory::default()
    };
    let key = Keypair::from_seed(&[0xd0; 32]).public();
    Bidder::new(key, provider, &config.node, &inventory, now).map(|_| ())
}

/// Bubblewrap is installed and creates a sandbox here (the process
/// runtime's own probe). Only a process-runtime provider needs it.
pub fn check_sandbox(config: &Config) -> Check {
    const NAME: &str = "sandbox";
    if !is_provider(config) || runs_ray(config) {
        return Check::ok(NAME, "not needed (no process-runtime provider)");
    }
    match crate::runtime::process::working_bwrap(config.runtime.bwrap.as_deref()) {
        Ok(bwrap) => Check::ok(NAME, format!("bubblewrap at {} works", bwrap.display())),
        Err(reason) if config.runtime.allow_unsandboxed => Check::warning(
            NAME,
            format!("{reason}; jobs would run UNSANDBOXED (runtime.allow_unsandboxed = true)"),
            "install a working bubblewrap and drop runtime.allow_unsandboxed",
        ),
        Err(reason) => Check::error(
            NAME,
            reason,
            "install bubblewrap (apt-get install bubblewrap) and allow user namespaces, or set \
             runtime.allow_unsandboxed = true",
        ),
    }
}

/// What NVML found, judged for this node: a provider needs GPUs, real or
/// `[[simulated_gpu]]`; a Ray provider's come from its cluster.
pub fn check_gpus(config: &Config, found: &Inventory) -> Check {
    const NAME: &str = "gpus";
    let seen = match &found.nvml_unavailable {
        Some(reason) => reason.clone(),
        None => {
            let models: Vec<&str> = found.gpus.iter().map(|g| g.model.as_str()).collect();
            format!(
                "{} GPU(s) via NVML ({}), driver {}",
                found.gpus.len(),
                models.join(", "),
                found.driver.as_deref().unwrap_or("unknown")
            )
        }
    };
    let have_real = found.nvml_unavailable.is_none() && !found.gpus.is_empty();
    let simulated: u32 = config.simulated_gpu.iter().map(|g| g.count).sum();
    // The same order as the provider's start: the Ray cluster's GPUs,
    // else [[simulated_gpu]] (which replaces NVML's), else NVML's.
    if runs_ray(config) {
        return Check::ok(NAME, format!("{seen}; the Ray cluster's GPUs are offered"));
    }
    if simulated > 0 {
        let fix = if have_real {
            "remove [[simulated_gpu]] to offer the real GPUs"
        } else {
            "install the NVIDIA driver to offer real GPUs"
        };
        return Check::warning(
            NAME,
            format!("{seen}; offering {simulated} simulated GPU(s) from [[simulated_gpu]] instead"),
            fix,
        );
    }
    if have_real {
        return Check::ok(NAME, seen);
    }
    if is_provider(config) {
        return Check::error(
            NAME,
            format!("{seen}; this provider has no GPUs to offer"),
            "install the NVIDIA driver, or declare [[simulated_gpu]] for a testnet",
        );
    }
    Check::ok(NAME, format!("{seen}; not needed (no [provider] section)"))
}

/// The Ray head answers (the runtime's health check) and reports its
/// GPUs; `None` unless `provider.runtimes` includes `ray`.
pub async fn check_ray(config: &Config) -> Option<Check> {
    const NAME: &str = "ray";
    if !runs_ray(config) {
        return None;
    }
    let Some(ray) = config.ray.clone() else {
        return Some(Check::error(
            NAME,
            "provider.runtimes includes \"ray\" but there is no [ray] section",
            "add [ray] (dashboard, gpu_model, gpu_vram_gib, gpu_tflops)",
        ));
    };
    let fix = "start the head (ray start --head) or fix ray.dashboard";
    let runtime = match RayRuntime::new(config.runtime.clone(), ray.clone()) {
        Ok(runtime) => runtime,
        Err(e) => return Some(Check::error(NAME, e.to_string(), fix)),
    };
    if let Err(e) = runtime.health().await {
        return Some(Check::error(NAME, e.to_string(), fix));
    }
    Some(match runtime.cluster_gpus().await {
        Ok(0) => Check::warning(
            NAME,
            format!("the head at {} answers but reports no GPUs", ray.base_url()),
            "start Ray workers with GPUs (ray start --num-gpus N)",
        ),
        Ok(n) => Check::ok(NAME, format!("head at {} with {n} GPU(s)", ray.base_url())),
        Err(e) => Check::error(NAME, e.to_string(), fix),
    })
}

/// The ledger answers `now()` at `url`, and this machine's clock is
/// close to the ledger's: returns the "ledger" and "clock" checks.
pub async fn check_ledger(url: Option<&str>) -> (Check, Check) {
    const NAME: &str = "ledger";
    const CLOCK: &str = "clock";
    let unmeasured = |why: &str| {
        Check::warning(
            CLOCK,
            format!("skew not measured: {why}"),
            "make the ledger reachable, then run doctor again",
        )
    };
    let Some(url) = url else {
        return (
            Check::error(
                NAME,
                "no ledger given",
                "pass --ledger URL (or set AGORA_LEDGER); the mock chain prints it",
            ),
            unmeasured("no ledger"),
        );
    };
    let fix = format!("start the chain at {url} or pass --ledger with its URL");
    let ledger = match HttpLedger::new(url) {
        Ok(ledger) => ledger,
        Err(e) => {
            return (
                Check::error(NAME, e.to_string(), fix),
                unmeasured("no client"),
            );
        }
    };
    answers(url, &ledger, &fix).await
}

/// `ledger` answers `now()`: the "ledger" check, and the "clock" check
/// against its time.
async fn answers(shown: &str, ledger: &dyn agora_protocol::Ledger, fix: &str) -> (Check, Check) {
    const NAME: &str = "ledger";
    let unmeasured = |why: &str| {
        Check::warning(
            "clock",
            format!("skew not measured: {why}"),
            "make the ledger reachable, then run doctor again",
        )
    };
    let before = crate::clock::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), ledger.now()).await;
    let after = crate::clock::now();
    let chain = match answer {
        Ok(Ok(chain)) => chain,
        Ok(Err(e)) => {
            let found = format!("{shown}: {e}");
            return (Check::error(NAME, found, fix), unmeasured("no answer"));
        }
        Err(_) => {
            let found = format!("{shown}: no answer within 10 s");
            return (Check::error(NAME, found, fix), unmeasured("no answer"));
        }
    };
    let ledger_check = Check::ok(NAME, format!("{shown} answers (chain time {chain})"));
    // Our time when the ledger read its clock, to within half the round trip.
    let local = Timestamp(before.0 + after.0.saturating_sub(before.0) / 2);
    (ledger_check, check_skew(local, chain))
}

/// `[ledger.evm]`: the escrow is there and answers, the clock is close to
/// the chain's, and the gas account can pay: the "ledger", "clock" and
/// "gas" checks.
pub async fn check_evm_ledger(evm: &agora_contracts_evm::EvmConfig, data_dir: &Path) -> Vec<Check> {
    const NAME: &str = "ledger";
    let unmeasured = || {
        Check::warning(
            "clock",
            "skew not measured: no ledger",
            "make the ledger reachable, then run doctor again",
        )
    };
    if let Err(reason) = evm.validate() {
        let found = format!("ledger.evm: {reason}");
        return vec![
            Check::error(NAME, found, "fix [ledger.evm] in the config"),
            unmeasured(),
        ];
    }
    let config = evm;
    let key_path = data_dir.join(&evm.key_file);
    // Doctor creates nothing: without the key yet, a throwaway one reads.
    let (key, key_check) = if key_path.exists() {
        match agora_contracts_evm::ledger::load_or_create_key(&key_path) {
            Ok(key) => (key, None),
            Err(e) => {
                let check = Check::error("gas", e, "move the file away; agorad makes a new key");
                (alloy_key(), Some(check))
            }
        }
    } else {
        let check = Check::warning(
            "gas",
            format!("no gas key at {} yet", key_path.display()),
            "start agorad once (it creates the key), then fund the address it logs",
        );
        (alloy_key(), Some(check))
    };
    let shown = format!("escrow {} on {}", config.escrow, config.rpc_url);
    let fix = format!(
        "check ledger.evm.rpc_url and ledger.evm.escrow ({})",
        config.escrow
    );
    let ledger = match tokio::time::timeout(
        Duration::from_secs(15),
        agora_contracts_evm::EvmLedger::connect(config, key),
    )
    .await
    {
        Ok(Ok(ledger)) => ledger,
        Ok(Err(e)) => {
            return vec![
                Check::error(NAME, format!("{shown}: {e}"), fix),
                unmeasured(),
            ];
        }
        Err(_) => {
            return vec![
                Check::error(NAME, format!("{shown}: no answer within 15 s"), fix),
                unmeasured(),
            ];
        }
    };
    let (ledger_check, clock) = answers(&shown, &ledger, &fix).await;
    let gas = match key_check {
        Some(check) => check,
        None => match ledger.gas_balance().await {
            Ok(wei) if wei.is_zero() => Check::error(
                "gas",
                format!("gas account {} holds nothing", ledger.gas_account()),
                "send the chain's native token to it: every lock, settlement and close is a transaction",
            ),
            Ok(wei) => Check::ok(
                "gas",
                format!("gas account {} holds {wei} wei", ledger.gas_account()),
            ),
            Err(e) => Check::warning(
                "gas",
                e.to_string(),
                "make the ledger reachable, then run doctor again",
            ),
        },
    };
    vec![ledger_check, clock, gas]
}

fn alloy_key() -> agora_contracts_evm::GasKey {
    agora_contracts_evm::GasKey::random()
}

/// The clock check for a local time and the ledger's at the same moment.
pub fn check_skew(local: Timestamp, chain: Timestamp) -> Check {
    const NAME: &str = "clock";
    let skew = local.0.abs_diff(chain.0);
    let side = if local.0 >= chain.0 {
        "ahead of"
    } else {
        "behind"
    };
    let found = format!("{:.1} s {side} the ledger", skew as f64 / 1000.0);
    let fix = "synchronise the clock (timedatectl set-ntp true)";
    if skew > SKEW_ERROR_MS {
        Check::error(NAME, found, fix)
    } else if skew > SKEW_WARN_MS {
        Check::warning(NAME, found, fix)
    } else {
        Check::ok(NAME, found)
    }
}

mod host;
#[cfg(test)]
mod tests;

pub use host::{check_api, check_data_dir, check_disk, check_key_file, check_listen};
