//! A chaos run: while a stream of jobs runs, providers, requesters and the
//! chain are killed with SIGKILL at random moments and started again after
//! a random while; then the faults stop, everything is brought back, the
//! jobs are given time to end, and [`crate::check`] reads the books.
//!
//! Everything random comes from one seed: [`plan`] turns it (and the node
//! names) into the same kills, restarts and submissions every time, so a
//! failing run is repeated with `--chaos-seed`. What a run does with the
//! plan is timed by the wall clock and by how fast processes start, so a
//! repeat meets the same faults in the same order, not at the same
//! instruction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use agora_client::api::{Constraints, JobSpec, JobState, MarketTerms, Resources, SubmitJob};
use agora_protocol::{AccountId, Amount};
use serde::{Deserialize, Serialize};

use crate::check::{Checked, Rule, Snapshot, Violation, leftover_processes, snapshot};
use crate::error::TestnetError;
use crate::network::{CHAIN, Testnet};

/// What a chaos run may kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Victim {
    /// Any provider node.
    Provider,
    /// Any requester node.
    Requester,
    /// The chain (the mock chain's store is durable; anvil is stopped
    /// gracefully, as a real chain never loses confirmed blocks).
    Chain,
}

impl Victim {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Victim::Provider => "provider",
            Victim::Requester => "requester",
            Victim::Chain => "chain",
        }
    }
}

/// An inclusive range of seconds, e.g. `2-6` (or one number).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Secs {
    /// Shortest.
    pub min: f64,
    /// Longest.
    pub max: f64,
}

impl Secs {
    /// From `min` to `max` seconds.
    pub fn new(min: f64, max: f64) -> Self {
        Secs { min, max }
    }

    fn pick(self, rng: &mut Rng) -> Duration {
        let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(self.min + (self.max - self.min) * unit)
    }
}

impl std::str::FromStr for Secs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |t: &str| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{t:?} is not a number of seconds"))
        };
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(s)?, number(s)?),
        };
        if min > max {
            return Err(format!("{s:?}: the shorter end comes first (e.g. 2-6)"));
        }
        Ok(Secs { min, max })
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// How a chaos run goes.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Seeds every random choice.
    pub seed: u64,
    /// How long faults are injected and jobs submitted.
    pub duration: Duration,
    /// Between one kill and the next.
    pub every: Secs,
    /// How long a killed process stays down.
    pub down: Secs,
    /// What may be killed.
    pub victims: BTreeSet<Victim>,
    /// Between one job submission and the next (to a random requester).
    pub jobs_every: Secs,
    /// How long each job's script runs.
    pub job_secs: Secs,
    /// Every this many jobs exits non-zero (0: none).
    pub failing_every: u64,
    /// The longest a lease may run; a job whose provider never returns
    /// ends with it.
    pub max_job_secs: u64,
    /// After the faults, how long the jobs may take to end and their
    /// leases to close before the books are read anyway.
    pub drain: Duration,
    /// Deposited to each requester before the run.
    pub deposit: Amount,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            seed: 1,
            duration: Duration::from_secs(180),
            every: Secs::new(3.0, 8.0),
            down: Secs::new(1.0, 5.0),
            victims: [Victim::Provider, Victim::Requester, Victim::Chain].into(),
            jobs_every: Secs::new(1.0, 3.0),
            job_secs: Secs::new(2.0, 10.0),
            failing_every: 7,
            max_job_secs: 30,
            drain: Duration::from_secs(120),
            deposit: Amount(1_000_000_000_000),
        }
    }
}

/// One step of a plan, at `at` after the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// When, from the start of the run.
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// SIGKILL the node (or [`CHAIN`]) called `name`.
    Kill {
        /// Which.
        name: String,
    },
    /// Start it again.
    Restart {
        /// Which.
        name: String,
    },
    /// Submit a job to requester `name`.
    Submit {
        /// Which requester.
        name: String,
        /// The job's name (`chaos-N`).
        job: String,
        /// How long its script runs.
        secs: u64,
        /// How it exits.
        exit: i32,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at.as_secs_f64();
        match &self.action {
            Action::Kill { name } => write!(f, "{at:>7.2}s  kill -9 {name}"),
            Action::Restart { name } => write!(f, "{at:>7.2}s  restart {name}"),
            Action::Submit {
                name,
                job,
                secs,
                exit,
            } => write!(
                f,
                "{at:>7.2}s  submit {job} to {name} ({secs}s, exit {exit})"
            ),
        }
    }
}

/// splitmix64: small, well spread, the same sequence for a seed everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The whole run, from `config.seed` and the node names: kills of what
/// `config.victims` allows (never of something already down, so every kill
/// has its restart), each restart after a `config.down` while, and job
/// submissions spread over the requesters. Sorted by time.
pub fn plan(config: &ChaosConfig, providers: &[String], requesters: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    // Two generators, so that the kills do not change with the job stream.
    let mut faults = Rng::new(config.seed);
    let mut jobs = Rng::new(config.seed ^ 0x0B5E_55ED_0F0B_5EED);
    // A role first, then one of its processes: the chain is hit as often
    // as all the providers together, whatever their number.
    let roles: Vec<Vec<String>> = config
        .victims
        .iter()
        .map(|victim| match victim {
            Victim::Provider => providers.to_vec(),
            Victim::Requester => requesters.to_vec(),
            Victim::Chain => vec![CHAIN.to_string()],
        })
        .filter(|names| !names.is_empty())
        .collect();
    let mut back_at: BTreeMap<String, Duration> = BTreeMap::new();
    let mut t = config.every.pick(&mut faults);
    while t < config.duration && !roles.is_empty() {
        let role = &roles[faults.below(roles.len())];
        let up: Vec<&String> = role
            .iter()
            .filter(|c| back_at.get(*c).is_none_or(|b| *b <= t))
            .collect();
        if !up.is_empty() {
            let name = up[faults.below(up.len())].clone();
            let back = t + config.down.pick(&mut faults);
            steps.push(Step {
                at: t,
                action: Action::Kill { name: name.clone() },
            });
            steps.push(Step {
                at: back,
                action: Action::Restart { name: name.clone() },
            });
            back_at.insert(name, back);
        }
        t += config.every.pick(&mut faults);
    }
    let mut t = config.jobs_every.pick(&mut jobs);
    let mut n: u64 = 0;
    while t < config.duration && !requesters.is_empty() {
        n += 1;
        let secs = config.job_secs.pick(&mut jobs).as_secs().max(1);
        let exit = if config.failing_every > 0 && n.is_multiple_of(config.failing_every) {
            3
        } else {
            0
        };
        steps.push(Step {
            at: t,
            action: Action::Submit {
                name: requesters[jobs.below(requesters.len())].clone(),
                job: format!("chaos-{n}"),
                secs,
                exit,
            },
        });
        t += config.jobs_every.pick(&mut jobs);
    }
    // Stable: a kill and its restart keep their order even at one instant.
    steps.sort_by_key(|s| s.at);
    steps
}

/// What a chaos run did and found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChaosReport {
    /// The seed (`--chaos-seed` repeats the run).
    pub seed: u64,
    /// Kills carried out, per role.
    pub kills: BTreeMap<Victim, u64>,
    /// Restarts carried out.
    pub restarts: u64,
    /// Restarts that failed at first and were tried again.
    pub restart_retries: u64,
    /// Submissions a requester acknowledged.
    pub submitted: u64,
    /// Submissions refused (the requester was down or died answering).
    pub refused: u64,
    /// Jobs found on the requesters at the end, per state.
    pub jobs: BTreeMap<String, u64>,
    /// Why the failed jobs failed (the reason up to its first `:`), counted.
    pub failures: BTreeMap<String, u64>,
    /// What the checker looked at.
    pub checked: Checked,
    /// Broken invariants (empty: the run survived).
    pub violations: Vec<Violation>,
    /// Processes found running for a process that was down (a job that
    /// outlived its provider's SIGKILL); also in `violations`.
    #[serde(skip)]
    outlived: Vec<Violation>,
    /// Seconds of faults.
    pub chaos_secs: f64,
    /// Seconds from the end of the faults until the books were read.
    pub drain_secs: f64,
    /// Seconds from the start of the run to its end (after `down`).
    pub total_secs: f64,
}

impl ChaosReport {
    /// The run broke no invariant.
    pub fn survived(&self) -> bool {
        self.violations.is_empty()
    }

    /// A few lines for people: what was killed, what ran, what held.
    pub fn summary(&self) -> String {
        let kills: Vec<String> = [Victim::Provider, Victim::Requester, Victim::Chain]
            .iter()
            .map(|v| format!("{} {}", self.kills.get(v).copied().unwrap_or(0), v.as_str()))
            .collect();
        let jobs: Vec<String> = self.jobs.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let mut out = format!(
            "chaos seed {}: {:.0}s of faults, {:.0}s of drain, {:.0}s in all\n\
             kills (SIGKILL): {} ({} restarts, {} retried)\n\
             jobs: {} submitted, {} refused; at the end: {}\n\
             checked: {} jobs, {} leases ({} escrows on the chain), {} accounts; \
             {} closed below the requester's last countersigned receipt ({} unclaimed)\n",
            self.seed,
            self.chaos_secs,
            self.drain_secs,
            self.total_secs,
            kills.join(", "),
            self.restarts,
            self.restart_retries,
            self.submitted,
            self.refused,
            if jobs.is_empty() {
                "none".to_string()
            } else {
                jobs.join(", ")
            },
            self.checked.jobs,
            self.checked.leases,
            self.checked.escrows,
            self.checked.accounts,
            self.checked.unclaimed,
            self.checked.unclaimed_amount,
        );
        for (why, n) in &self.failures {
            out.push_str(&format!("  failed {n}x: {why}\n"));
        }
        for rule in Rule::ALL {
            let broken = self.violations.iter().filter(|v| v.rule == rule).count();
            let verdict = if broken == 0 {
                "holds".to_string()
            } else {
                format!("BROKEN ({broken})")
            };
            out.push_str(&format!("  {:<36} {verdict}\n", rule.as_str()));
        }
        for v in &self.violations {
            out.push_str(&format!("VIOLATION {v}\n"));
        }
        out
    }
}

/// Runs the chaos on `net` (freshly started, every node and the chain up),
/// then drains, reads the books, stops everything and looks for leftover
/// processes. `say` gets every line worth printing (the plan as it is
/// carried out, each with its time). Errs only when the testnet cannot be
/// driven at all (a process that will not start again); broken invariants
/// are in the report.
pub async fn run(
    mut net: Testnet,
    config: &ChaosConfig,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<ChaosReport, TestnetError> {
    let start = Instant::now();
    let providers: Vec<String> = net.providers().iter().map(|n| n.name.clone()).collect();
    let requesters: Vec<String> = net.requesters().iter().map(|n| n.name.clone()).collect();
    let steps = plan(config, &providers, &requesters);
    let victims: Vec<&str> = config.victims.iter().map(|v| v.as_str()).collect();
    say(&format!(
        "chaos: seed {} (repeat with --chaos-seed {}), {}s, a kill every {}s of {}, down {}s, \
         a job every {}s; {} steps",
        config.seed,
        config.seed,
        config.duration.as_secs(),
        config.every,
        victims.join("/"),
        config.down,
        config.jobs_every,
        steps.len()
    ));
    let mut deposits: BTreeMap<AccountId, Amount> = BTreeMap::new();
    for name in &requesters {
        let client = net.client(name)?;
        let entry = net.node(name)?;
        client
            .deposit(config.deposit)
            .await
            .map_err(|e| client_error(name, "deposit", e))?;
        *deposits.entry(entry.account).or_default() = config.deposit;
    }
    wait_for_offers(&net, &requesters, &providers).await;
    let mut report = ChaosReport {
        seed: config.seed,
        kills: BTreeMap::new(),
        restarts: 0,
        restart_retries: 0,
        submitted: 0,
        refused: 0,
        jobs: BTreeMap::new(),
        failures: BTreeMap::new(),
        checked: Checked::default(),
        violations: Vec::new(),
        outlived: Vec::new(),
        chaos_secs: 0.0,
        drain_secs: 0.0,
        total_secs: 0.0,
    };
    let chaos_start = Instant::now();
    let mut down: BTreeSet<String> = BTreeSet::new();
    let evm = net.evm_chain().is_some();
    let mut waiting: Vec<String> = Vec::new();
    for step in &steps {
        let due = chaos_start + step.at;
        tokio::time::sleep_until(due.into()).await;
        let late = chaos_start.elapsed().saturating_sub(step.at);
        let stamp = format!("[{:>7.2}s]", chaos_start.elapsed().as_secs_f64());
        match &step.action {
            Action::Kill { name } if down.contains(name) => {
                say(&format!(
                    "{stamp} {name} is still down (waiting for the chain)"
                ));
            }
            Action::Kill { name } => {
                let pid = pid_of(&mut net, name);
                let how = if name == CHAIN {
                    net.kill_chain().await?;
                    if net.evm_chain().is_some() {
                        "stop (SIGTERM: anvil keeps its blocks)"
                    } else {
                        "kill -9"
                    }
                } else {
                    net.kill(name).await?;
                    "kill -9"
                };
                down.insert(name.clone());
                *report.kills.entry(victim_of(name)).or_default() += 1;
                say(&format!("{stamp} {how} {name} (pid {pid})"));
            }
            Action::Restart { name } if !down.contains(name) => {
                say(&format!("{stamp} {name} is already up again"));
            }
            Action::Restart { name } if evm && name != CHAIN && down.contains(CHAIN) => {
                // agorad on anvil does not start while its RPC is down (it
                // exits after rpc_retry_secs): it comes back with the chain.
                say(&format!("{stamp} {name} waits for the chain to restart"));
                waiting.push(name.clone());
            }
            Action::Restart { name } => {
                // Nothing of the killed process may outlive it: no job,
                // no sandbox, working on in its directory.
                let dir = data_dir(&net, name);
                for p in leftover_processes(&dir) {
                    say(&format!(
                        "{stamp} {name} is down, yet pid {} runs: {}",
                        p.pid, p.cmdline
                    ));
                    report.outlived.push(Violation {
                        rule: Rule::NoProcessLeft,
                        detail: format!(
                            "pid {} outlived the SIGKILL of {name}: {}",
                            p.pid, p.cmdline
                        ),
                    });
                }
                let tries = bring_back(&mut net, name, say).await?;
                report.restarts += 1;
                report.restart_retries += u64::from(tries > 1);
                down.remove(name);
                let pid = pid_of(&mut net, name);
                say(&format!("{stamp} restarted {name} (pid {pid})"));
                if name == CHAIN {
                    for node in std::mem::take(&mut waiting) {
                        bring_back(&mut net, &node, say).await?;
                        report.restarts += 1;
                        down.remove(&node);
                        let pid = pid_of(&mut net, &node);
                        say(&format!(
                            "{stamp} restarted {node} after the chain (pid {pid})"
                        ));
                    }
                }
            }
            Action::Submit {
                name,
                job,
                secs,
                exit,
            } => {
                let submit = chaos_job(job, *secs, *exit, config.max_job_secs);
                let answer = match net.client(name) {
                    Ok(client) => client
                        .with_timeout(Duration::from_secs(30))
                        .submit_job(&submit)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match answer {
                    Ok(view) => {
                        report.submitted += 1;
                        say(&format!(
                            "{stamp} submitted {job} to {name} as {} ({secs}s, exit {exit})",
                            view.id
                        ));
                    }
                    Err(why) => {
                        report.refused += 1;
                        say(&format!("{stamp} {name} refused {job}: {why}"));
                    }
                }
            }
        }
        if late > Duration::from_secs(5) {
            say(&format!(
                "{stamp} (that step ran {:.1}s late: a restart took long)",
                late.as_secs_f64()
            ));
        }
    }
    tokio::time::sleep_until((chaos_start + config.duration).into()).await;
    report.chaos_secs = chaos_start.elapsed().as_secs_f64();
    // Everything back, then time for the jobs to end and leases to close.
    // The chain first: nodes on anvil need it to start.
    let mut back: Vec<String> = down.iter().filter(|n| *n == CHAIN).cloned().collect();
    back.extend(down.iter().filter(|n| *n != CHAIN).cloned());
    for name in back {
        bring_back(&mut net, &name, say).await?;
        report.restarts += 1;
        say(&format!("after the faults: restarted {name}"));
    }
    say(&format!(
        "faults over after {:.0}s; draining (up to {}s) …",
        report.chaos_secs,
        config.drain.as_secs()
    ));
    let drain_start = Instant::now();
    let drain_deadline = drain_start + config.drain;
    let mut books = loop {
        let books = snapshot(&net, Duration::from_secs(30)).await?;
        let settled = books
            .violations()
            .iter()
            .all(|v| v.rule != Rule::JobsTerminal);
        if settled || Instant::now() >= drain_deadline {
            break books;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    report.drain_secs = drain_start.elapsed().as_secs_f64();
    // The run made every deposit (before the faults), on either chain.
    books.deposits = Some(deposits);
    let dir = net.dir().to_path_buf();
    net.down().await?;
    books.leftover = wait_for_no_leftovers(&dir).await;
    report.total_secs = start.elapsed().as_secs_f64();
    finish(&mut report, &books);
    Ok(report)
}

fn finish(report: &mut ChaosReport, books: &Snapshot) {
    for job in books.nodes.iter().flat_map(|n| &n.jobs) {
        *report.jobs.entry(state_name(job.state)).or_default() += 1;
        if job.state == JobState::Failed {
            let reason = job.reason.as_deref().unwrap_or("(none)");
            let head = reason.split(':').next().unwrap_or(reason).trim();
            *report.failures.entry(head.to_string()).or_default() += 1;
        }
    }
    report.checked = books.checked();
    report.violations = books.violations();
    report.violations.append(&mut report.outlived);
}

fn state_name(state: JobState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{state:?}"))
}

/// Processes left under `dir`, given a few seconds to finish dying (a
/// sandbox whose parent just died).
async fn wait_for_no_leftovers(dir: &std::path::Path) -> Vec<crate::check::LeftProcess> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftover_processes(dir);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `name` again; a start that fails (the chain down while a node
/// starts, a port not yet free) is retried a few times. Returns the tries.
async fn bring_back(
    net: &mut Testnet,
    name: &str,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<u32, TestnetError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let result = if name == CHAIN {
            net.restart_chain().await
        } else {
            net.restart(name).await.map(|_| ())
        };
        match result {
            Ok(()) => return Ok(tries),
            Err(e) if tries < 4 => {
                say(&format!("restarting {name} failed (try {tries}): {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The data directory of the node (or [`CHAIN`]) called `name`.
fn data_dir(net: &Testnet, name: &str) -> std::path::PathBuf {
    if name == CHAIN {
        net.dir().join(CHAIN)
    } else {
        net.node(name)
            .map_or_else(|_| net.dir().join(name), |n| n.data_dir.clone())
    }
}

fn pid_of(net: &mut Testnet, name: &str) -> String {
    net.running()
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or("-".into(), |(_, pid)| pid.to_string())
}

fn victim_of(name: &str) -> Victim {
    if name == CHAIN {
        Victim::Chain
    } else if name.starts_with("provider-") {
        Victim::Provider
    } else {
        Victim::Requester
    }
}

fn client_error(name: &str, what: &str, e: impl fmt::Display) -> TestnetError {
    TestnetError::Client {
        name: name.to_string(),
        message: format!("{what}: {e}"),
    }
}

/// Waits (up to a minute) until every requester sees an offer of every
/// provider, so the first jobs find a market.
async fn wait_for_offers(net: &Testnet, requesters: &[String], providers: &[String]) {
    let want: Vec<AccountId> = providers
        .iter()
        .filter_map(|p| net.node(p).ok().map(|n| n.account))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in requesters {
        let Ok(client) = net.client(name) else {
            continue;
        };
        while Instant::now() < deadline {
            if let Ok(page) = client.search_offers("", Some(1000)).await
                && want
                    .iter()
                    .all(|a| page.offers.iter().any(|o| o.provider == *a))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A one-GPU job that prints a line a second for `secs` and exits `exit`.
pub fn chaos_job(name: &str, secs: u64, exit: i32, max_secs: u64) -> SubmitJob {
    SubmitJob {
        spec: JobSpec {
            name: Some(name.to_string()),
            runtime: "process".into(),
            command: vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "i=0; while [ $i -lt {secs} ]; do i=$((i+1)); echo tick $i; sleep 1; done; exit {exit}"
                ),
            ],
            env: Default::default(),
            inputs: Vec::new(),
            resources: Resources {
                gpus: 1,
                gpu_model: None,
                min_vram_gib: 0,
                min_tflops: 0.0,
                min_compute_capability: 0.0,
                memory_mib: 0,
                disk_mib: 0,
                tmp_mib: 0,
                processes: 0,
            },
            constraints: Constraints {
                allow_simulated: true,
                ..Constraints::default()
            },
            market: MarketTerms {
                max_price_per_gpu_hour: "10".into(),
                max_duration_secs: max_secs,
                bid_window_ms: 500,
            },
        },
        offer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::{Action, ChaosConfig, Secs, Victim, plan};

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    }

    #[test]
    fn a_seed_gives_the_same_plan_and_another_seed_another() {
        let (p, r) = (names("provider", 3), names("requester", 2));
        let config = ChaosConfig::default();
        let a = plan(&config, &p, &r);
        assert_eq!(a, plan(&config, &p, &r));
        let other = ChaosConfig {
            seed: 2,
            ..ChaosConfig::default()
        };
        assert_ne!(a, plan(&other, &p, &r));
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn every_kill_has_its_restart_and_nothing_is_killed_twice_while_down() {
        let (p, r) = (names("provider", 3), names("requester", 2));
        for seed in 1..50 {
            let config = ChaosConfig {
                seed,
                every: Secs::new(0.5, 2.0),
                down: Secs::new(1.0, 6.0),
                ..ChaosConfig::default()
            };
            let mut down = std::collections::BTreeSet::new();
            let mut kills = 0;
            for step in plan(&config, &p, &r) {
                match step.action {
                    Action::Kill { name } => {
                        assert!(
                            down.insert(name.clone()),
                            "seed {seed}: {name} killed twice"
                        );
                        kills += 1;
                    }
                    Action::Restart { name } => {
                        assert!(down.remove(&name), "seed {seed}: {name} restarted while up");
                    }
                    Action::Submit { .. } => {}
                }
            }
            assert!(down.is_empty(), "seed {seed}: {down:?} never restarted");
            assert!(kills > 50, "seed {seed}: only {kills} kills");
        }
    }

    #[test]
    fn only_the_chosen_victims_are_killed() {
        let (p, r) = (names("provider", 2), names("requester", 1));
        let config = ChaosConfig {
            victims: [Victim::Chain].into(),
            ..ChaosConfig::default()
        };
        for step in plan(&config, &p, &r) {
            if let Action::Kill { name } = step.action {
                assert_eq!(name, "chain");
            }
        }
    }

    #[test]
    fn second_ranges_parse() {
        assert_eq!("2-6".parse::<Secs>(), Ok(Secs::new(2.0, 6.0)));
        assert_eq!("1.5".parse::<Secs>(), Ok(Secs::new(1.5, 1.5)));
        assert!("6-2".parse::<Secs>().is_err());
        assert!("x".parse::<Secs>().is_err());
    }
}
