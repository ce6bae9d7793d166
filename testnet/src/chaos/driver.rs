//! Carries a [`plan`] out on a running testnet: one `handle_*` per step,
//! then the drain, the books, `down` and the leftover processes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_client::api::{Constraints, JobSpec, JobState, MarketTerms, Resources, SubmitJob};
use agora_protocol::{AccountId, Amount};

use super::{Action, ChaosConfig, ChaosReport, Victim, plan};
use crate::check::{Checked, LeftProcess, Rule, Snapshot, Violation, leftover_processes, snapshot};
use crate::error::TestnetError;
use crate::network::{CHAIN, Testnet};

/// Where `say` goes: every line worth printing.
type Say<'a> = &'a mut (dyn FnMut(&str) + Send);

/// Runs the chaos on `net` (freshly started, every node and the chain up),
/// then drains, reads the books, stops everything and looks for leftover
/// processes. `say` gets every line worth printing (the plan as it is
/// carried out, each with its time). Errs only when the testnet cannot be
/// driven at all (a process that will not start again); broken invariants
/// are in the report.
pub async fn run(
    net: Testnet,
    config: &ChaosConfig,
    say: Say<'_>,
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
    let mut driver = Driver {
        evm: net.evm_chain().is_some(),
        net,
        config,
        say,
        started: Instant::now(),
        stamp: String::new(),
        down: BTreeSet::new(),
        waiting: Vec::new(),
        outlived: Vec::new(),
        submissions: tokio::task::JoinSet::new(),
        report: ChaosReport {
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
            chaos_secs: 0.0,
            drain_secs: 0.0,
            total_secs: 0.0,
        },
    };
    for step in &steps {
        tokio::time::sleep_until((driver.started + step.at).into()).await;
        let late = driver.started.elapsed().saturating_sub(step.at);
        driver.stamp = format!("[{:>7.2}s]", driver.started.elapsed().as_secs_f64());
        match &step.action {
            Action::Kill { name } => driver.handle_kill(name).await?,
            Action::Restart { name } => driver.handle_restart(name).await?,
            Action::Submit {
                name,
                job,
                secs,
                exit,
            } => driver.handle_submit(name, job, *secs, *exit).await,
        }
        if late > Duration::from_secs(5) {
            driver.say(&format!(
                "(that step ran {:.1}s late: a restart took long)",
                late.as_secs_f64()
            ));
        }
    }
    tokio::time::sleep_until((driver.started + config.duration).into()).await;
    while let Some(done) = driver.submissions.join_next().await {
        driver.submitted(done);
    }
    driver.report.chaos_secs = driver.started.elapsed().as_secs_f64();
    driver.bring_all_back().await?;
    let mut books = driver.drain().await?;
    // The run made every deposit (before the faults), on either chain.
    books.deposits = Some(deposits);
    let Driver {
        net,
        mut report,
        outlived,
        ..
    } = driver;
    let dir = net.dir().to_path_buf();
    net.down().await?;
    books.leftover = wait_for_no_leftovers(&dir).await;
    report.total_secs = start.elapsed().as_secs_f64();
    finish(&mut report, &books, outlived);
    Ok(report)
}

/// The testnet under faults, and what the run saw so far.
struct Driver<'a> {
    net: Testnet,
    config: &'a ChaosConfig,
    say: Say<'a>,
    /// Anvil: nodes start only while it runs.
    evm: bool,
    /// When the faults began.
    started: Instant,
    /// The time of the step being carried out, as printed.
    stamp: String,
    /// What is down now (nodes waiting for the chain included).
    down: BTreeSet<String>,
    /// Nodes on anvil whose restart waits for the chain's.
    waiting: Vec<String>,
    /// Processes that outlived the SIGKILL of theirs.
    outlived: Vec<Violation>,
    /// Submissions on their way.
    submissions: tokio::task::JoinSet<Submitted>,
    report: ChaosReport,
}

/// How a submission was answered.
struct Submitted {
    name: String,
    job: String,
    secs: u64,
    exit: i32,
    /// The job's id, or why not.
    answer: Result<String, String>,
}

impl Driver<'_> {
    fn say(&mut self, line: &str) {
        let stamped = format!("{} {line}", self.stamp);
        (self.say)(&stamped);
    }

    async fn handle_kill(&mut self, name: &str) -> Result<(), TestnetError> {
        if self.down.contains(name) {
            self.say(&format!("{name} is still down (waiting for the chain)"));
            return Ok(());
        }
        let pid = pid_of(&mut self.net, name);
        let how = if name == CHAIN {
            self.net.kill_chain().await?;
            if self.evm {
                "stop (SIGTERM: anvil keeps its blocks)"
            } else {
                "kill -9"
            }
        } else {
            self.net.kill(name).await?;
            "kill -9"
        };
        self.down.insert(name.to_string());
        *self.report.kills.entry(victim_of(name)).or_default() += 1;
        self.say(&format!("{how} {name} (pid {pid})"));
        Ok(())
    }

    async fn handle_restart(&mut self, name: &str) -> Result<(), TestnetError> {
        if !self.down.contains(name) {
            self.say(&format!("{name} is already up again"));
            return Ok(());
        }
        if self.evm && name != CHAIN && self.down.contains(CHAIN) {
            // agorad on anvil does not start while its RPC is down (it
            // exits after rpc_retry_secs): it comes back with the chain.
            self.say(&format!("{name} waits for the chain to restart"));
            if !self.waiting.iter().any(|w| w == name) {
                self.waiting.push(name.to_string());
            }
            return Ok(());
        }
        self.check_nothing_outlived(name);
        self.bring_back(name).await?;
        if name == CHAIN {
            for node in std::mem::take(&mut self.waiting) {
                self.check_nothing_outlived(&node);
                self.bring_back(&node).await?;
            }
        }
        Ok(())
    }

    /// Submits in the background, so that a node slow to answer (on anvil
    /// it waits `rpc_retry_secs` for a down chain) never holds up the
    /// faults; the answer is reported when it comes.
    async fn handle_submit(&mut self, name: &str, job: &str, secs: u64, exit: i32) {
        self.report_submissions();
        let submit = chaos_job(job, secs, exit, self.config.max_job_secs);
        let client = self.net.client(name);
        let (name, job) = (name.to_string(), job.to_string());
        self.submissions.spawn(async move {
            let answer = match client {
                // Long enough for a node on anvil to give up on a down chain.
                Ok(client) => client
                    .with_timeout(Duration::from_secs(30))
                    .submit_job(&submit)
                    .await
                    .map(|view| view.id)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            Submitted {
                name,
                job,
                secs,
                exit,
                answer,
            }
        });
    }

    /// Reports the submissions answered so far.
    fn report_submissions(&mut self) {
        while let Some(done) = self.submissions.try_join_next() {
            self.submitted(done);
        }
    }

    fn submitted(&mut self, done: Result<Submitted, tokio::task::JoinError>) {
        match done {
            Ok(Submitted {
                name,
                job,
                secs,
                exit,
                answer: Ok(id),
            }) => {
                self.report.submitted += 1;
                self.say(&format!(
                    "submitted {job} to {name} as {id} ({secs}s, exit {exit})"
                ));
            }
            Ok(Submitted {
                name,
                job,
                answer: Err(why),
                ..
            }) => {
                self.report.refused += 1;
                self.say(&format!("{name} refused {job}: {why}"));
            }
            Err(e) => {
                self.report.refused += 1;
                self.say(&format!("a submission did not finish: {e}"));
            }
        }
    }

    /// Nothing of a killed process may outlive it: no job, no sandbox,
    /// working on in its directory.
    fn check_nothing_outlived(&mut self, name: &str) {
        for p in leftover_processes(&data_dir(&self.net, name)) {
            self.say(&format!(
                "{name} is down, yet pid {} runs: {}",
                p.pid, p.cmdline
            ));
            self.outlived.push(Violation {
                rule: Rule::NoProcessLeft,
                detail: format!(
                    "pid {} outlived the SIGKILL of {name}: {}",
                    p.pid, p.cmdline
                ),
            });
        }
    }

    /// Starts `name` again; a start that fails (a port not yet free) is
    /// retried a few times.
    async fn bring_back(&mut self, name: &str) -> Result<(), TestnetError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let result = if name == CHAIN {
                self.net.restart_chain().await
            } else {
                self.net.restart(name).await.map(|_| ())
            };
            match result {
                Ok(()) => break,
                Err(e) if tries < 4 => {
                    self.say(&format!("restarting {name} failed (try {tries}): {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.report.restarts += 1;
        self.report.restart_retries += u64::from(tries > 1);
        self.down.remove(name);
        let pid = pid_of(&mut self.net, name);
        self.say(&format!("restarted {name} (pid {pid})"));
        Ok(())
    }

    /// After the faults: everything back, the chain first (nodes on anvil
    /// need it to start).
    async fn bring_all_back(&mut self) -> Result<(), TestnetError> {
        self.stamp = format!("[{:>7.2}s]", self.started.elapsed().as_secs_f64());
        self.waiting.clear();
        let mut back: Vec<String> = self.down.iter().filter(|n| *n == CHAIN).cloned().collect();
        back.extend(self.down.iter().filter(|n| *n != CHAIN).cloned());
        for name in back {
            self.check_nothing_outlived(&name);
            self.bring_back(&name).await?;
        }
        Ok(())
    }

    /// Gives the jobs until `config.drain` to end and their leases to
    /// close; returns the books as they are then.
    async fn drain(&mut self) -> Result<Snapshot, TestnetError> {
        let chaos_secs = self.report.chaos_secs;
        self.say(&format!(
            "faults over after {chaos_secs:.0}s; draining (up to {}s) …",
            self.config.drain.as_secs()
        ));
        let start = Instant::now();
        let books = loop {
            let books = snapshot(&self.net, Duration::from_secs(30)).await?;
            let ended = books
                .violations()
                .iter()
                .all(|v| v.rule != Rule::JobsTerminal);
            if ended || start.elapsed() >= self.config.drain {
                break books;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        self.report.drain_secs = start.elapsed().as_secs_f64();
        Ok(books)
    }
}

fn finish(report: &mut ChaosReport, books: &Snapshot, mut outlived: Vec<Violation>) {
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
    report.violations.append(&mut outlived);
}

fn state_name(state: JobState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{state:?}"))
}

/// Processes left under `dir`, given a few seconds to finish dying (a
/// sandbox whose parent just died).
async fn wait_for_no_leftovers(dir: &Path) -> Vec<LeftProcess> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftover_processes(dir);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The data directory of the node (or [`CHAIN`]) called `name`.
fn data_dir(net: &Testnet, name: &str) -> PathBuf {
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
                    "i=0; while [ $i -lt {secs} ]; do i=$((i+1)); echo tick $i; sleep 1; done; \
                     exit {exit}"
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
