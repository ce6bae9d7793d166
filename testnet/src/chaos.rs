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
use std::time::Duration;

use agora_protocol::Amount;
use serde::{Deserialize, Serialize};

use crate::check::{Checked, Rule, Violation};
use crate::network::CHAIN;

mod driver;

pub use driver::{chaos_job, run};

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
        for lease in &self.checked.unclaimed_leases {
            out.push_str(&format!("  unclaimed: {lease}\n"));
        }
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
