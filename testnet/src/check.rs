//! The invariants a testnet must keep, however its processes died: read
//! the chain's books and every node's view into a [`Snapshot`], then
//! [`Snapshot::violations`] applies the rules, each a pure function of it.
//!
//! - money conserved: the chain's balances plus open escrow equal its
//!   deposits, every unit of it in a node's account or a lease some node
//!   knows, and (when the deposits are known) every account holds exactly
//!   what it deposited, minus what it locked, plus what was refunded or
//!   paid to it;
//! - no lease settled twice: a lease belongs to one job and one run, pays
//!   out no more than its escrow (settled plus refund), and each provider's
//!   own tally of what it was paid matches the chain's;
//! - settled ≤ countersigned: no lease pays the provider more than the
//!   latest receipt its requester countersigned (as the requester's job
//!   view and the provider's run both record it);
//! - settled = countersigned: a closed lease paid exactly the latest
//!   countersigned receipt its provider holds (and, by the rule above,
//!   refunded the rest) — for the runs a provider lists, those since its
//!   last start and those still settling;
//! - every job terminal with a stated reason, and every escrow of a
//!   finished job closed;
//! - no process left behind ([`leftover_processes`], after `down`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_client::api::{JobState, JobView, ProviderStatus, Role};
use agora_protocol::ledger::{EscrowState, Supply};
use agora_protocol::{AccountId, Amount, LeaseId};
use serde::{Deserialize, Serialize};

use crate::error::TestnetError;
use crate::network::Testnet;

/// The rule a [`Violation`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Every unit deposited is in a balance or an escrow, and where.
    MoneyConserved,
    /// No lease pays out twice.
    SettledOnce,
    /// No lease pays more than its latest countersigned receipt.
    SettledWithinCountersigned,
    /// A closed lease paid exactly the latest countersigned receipt its
    /// provider holds, and refunded the rest.
    SettledAsCountersigned,
    /// Every job ended, saying why; every escrow of an ended job is closed.
    JobsTerminal,
    /// No process of the testnet outlives `down`.
    NoProcessLeft,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 6] = [
        Rule::MoneyConserved,
        Rule::SettledOnce,
        Rule::SettledWithinCountersigned,
        Rule::SettledAsCountersigned,
        Rule::JobsTerminal,
        Rule::NoProcessLeft,
    ];

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::MoneyConserved => "money conserved",
            Rule::SettledOnce => "no lease settled twice",
            Rule::SettledWithinCountersigned => "settled <= countersigned",
            Rule::SettledAsCountersigned => "closed = provider's last countersigned",
            Rule::JobsTerminal => "every job terminal with a reason",
            Rule::NoProcessLeft => "no process left behind",
        }
    }
}

/// One broken invariant, with the specifics (lease, amounts, node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which rule.
    pub rule: Rule,
    /// What exactly: ids and amounts.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule.as_str(), self.detail)
    }
}

/// What one node says about its jobs, runs and leases.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeBooks {
    /// `provider-0`, `requester-1`, …
    pub name: String,
    /// Its ledger account.
    pub account: AccountId,
    /// A requester's jobs.
    pub jobs: Vec<JobView>,
    /// A provider's status: runs, leases, what it says it earned.
    pub provider: Option<ProviderStatus>,
}

/// Everything the rules look at, read once the testnet is quiet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The chain's totals.
    pub supply: Supply,
    /// The chain's balance of every node's account.
    pub balances: BTreeMap<AccountId, Amount>,
    /// The chain's escrow of every lease any node knows (`None`: the
    /// chain has no escrow for it).
    pub escrows: BTreeMap<LeaseId, Option<EscrowState>>,
    /// Every node's own view.
    pub nodes: Vec<NodeBooks>,
    /// What each account deposited, when the caller made every deposit
    /// (a chaos run does); `None` skips the per-account rule.
    pub deposits: Option<BTreeMap<AccountId, Amount>>,
    /// Processes of the testnet still alive (after `down`).
    pub leftover: Vec<LeftProcess>,
}

/// A process that outlived its testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftProcess {
    /// Its pid.
    pub pid: u32,
    /// Its command line, arguments joined by spaces.
    pub cmdline: String,
}

/// How many of what the rules looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    /// Jobs on every requester.
    pub jobs: usize,
    /// Leases (with an escrow on the chain or not).
    pub leases: usize,
    /// Of them, leases whose escrow the chain holds.
    pub escrows: usize,
    /// Accounts whose balance was checked against their history.
    pub accounts: usize,
    /// Closed leases that paid less than their requester's latest
    /// countersigned receipt: the provider died before it stored the
    /// countersignature, so could not claim it (a loss to the provider,
    /// never a payment without a signature).
    pub unclaimed: usize,
    /// What those leases left unclaimed, in all.
    pub unclaimed_amount: Amount,
    /// Each of them: the lease, both receipts, what settled, how it closed.
    pub unclaimed_leases: Vec<String>,
}

impl Snapshot {
    /// What the rules look at, in counts.
    pub fn checked(&self) -> Checked {
        let mut unclaimed = 0;
        let mut unclaimed_amount = Amount::ZERO;
        let mut unclaimed_leases = Vec::new();
        for job in self.nodes.iter().flat_map(|n| &n.jobs) {
            let (Some(lease), Some(r)) = (&job.lease, &job.receipt) else {
                continue;
            };
            if let Some(e) = self.escrow_of(&lease.id)
                && e.closed()
                && e.settled < r.amount
            {
                let held = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.provider.as_ref())
                    .flat_map(|p| &p.runs)
                    .find(|run| run.lease_id == lease.id)
                    .map_or("no run".to_string(), |run| match &run.receipt {
                        Some(h) => format!("sequence {} for {}", h.sequence, h.amount),
                        None => "no receipt".to_string(),
                    });
                let closed = job
                    .events
                    .iter()
                    .rev()
                    .find(|ev| ev.event.starts_with("close"))
                    .map_or(String::new(), |ev| format!("; {} {}", ev.event, ev.detail));
                unclaimed_leases.push(format!(
                    "lease {} (job {}): the requester countersigned sequence {} for {}, its \
                     provider holds {held}, {} settled{closed}",
                    lease.id, job.id, r.sequence, r.amount, e.settled
                ));
                unclaimed += 1;
                unclaimed_amount = Amount(
                    unclaimed_amount
                        .0
                        .saturating_add(r.amount.saturating_sub(e.settled).0),
                );
            }
        }
        Checked {
            unclaimed,
            unclaimed_amount,
            unclaimed_leases,
            jobs: self.nodes.iter().map(|n| n.jobs.len()).sum(),
            leases: self.escrows.len(),
            escrows: self.escrows.values().filter(|e| e.is_some()).count(),
            accounts: if self.deposits.is_some() {
                self.balances.len()
            } else {
                0
            },
        }
    }

    /// Every broken invariant; empty when all hold.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        self.money_conserved(&mut out);
        self.settled_once(&mut out);
        self.settled_within_countersigned(&mut out);
        self.jobs_terminal(&mut out);
        for p in &self.leftover {
            out.push(Violation {
                rule: Rule::NoProcessLeft,
                detail: format!("pid {} still runs: {}", p.pid, p.cmdline),
            });
        }
        out
    }

    fn money_conserved(&self, out: &mut Vec<Violation>) {
        let mut push = |detail: String| {
            out.push(Violation {
                rule: Rule::MoneyConserved,
                detail,
            })
        };
        let s = &self.supply;
        if !s.conserved() {
            push(format!(
                "the chain's balances {} + escrow {} != deposits {} (units)",
                s.balances, s.escrowed, s.deposited
            ));
        }
        let held: u128 = self.balances.values().map(|a| u128::from(a.0)).sum();
        let open: u128 = self
            .escrows
            .values()
            .flatten()
            .map(|e| u128::from(e.outstanding().0))
            .sum();
        if held + open != s.deposited {
            push(format!(
                "the nodes' balances {held} + open escrow of the leases they know {open} != \
                 deposits {} (units; an escrow no node knows, or money outside the nodes' \
                 accounts)",
                s.deposited
            ));
        }
        let Some(deposits) = &self.deposits else {
            return;
        };
        for (account, balance) in &self.balances {
            let mut expected = i128::from(deposits.get(account).copied().unwrap_or_default().0);
            for e in self.escrows.values().flatten() {
                if e.requester == *account {
                    expected -= i128::from(e.escrow.0);
                    expected += i128::from(e.refunded.unwrap_or_default().0);
                }
                if e.provider == *account {
                    expected += i128::from(e.settled.0);
                }
            }
            if i128::from(balance.0) != expected {
                let expected = u64::try_from(expected)
                    .map_or_else(|_| format!("{expected} units"), |a| Amount(a).to_string());
                push(format!(
                    "{} ({account}) holds {balance} on the chain, but its deposits, escrows, \
                     refunds and payments add up to {expected}",
                    self.name_of(account)
                ));
            }
        }
    }

    fn settled_once(&self, out: &mut Vec<Violation>) {
        let mut push = |detail: String| {
            out.push(Violation {
                rule: Rule::SettledOnce,
                detail,
            })
        };
        let mut jobs_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for node in &self.nodes {
            for job in &node.jobs {
                if let Some(lease) = &job.lease {
                    jobs_of
                        .entry(lease.id.clone())
                        .or_default()
                        .push(format!("{}/{}", node.name, job.id));
                }
            }
        }
        for (lease, jobs) in jobs_of.iter().filter(|(_, j)| j.len() > 1) {
            push(format!(
                "lease {lease} belongs to {} jobs: {jobs:?}",
                jobs.len()
            ));
        }
        for (id, escrow) in &self.escrows {
            let Some(e) = escrow else { continue };
            let refunded = e.refunded.unwrap_or_default();
            if e.settled > e.escrow {
                push(format!(
                    "lease {id} settled {} of an escrow of {}",
                    e.settled, e.escrow
                ));
            }
            if e.refunded.is_some() && e.settled.0.checked_add(refunded.0) != Some(e.escrow.0) {
                push(format!(
                    "lease {id} paid out settled {} + refunded {refunded} of an escrow of {}",
                    e.settled, e.escrow
                ));
            }
        }
        for node in &self.nodes {
            let Some(status) = &node.provider else {
                continue;
            };
            let mut runs: BTreeMap<&str, usize> = BTreeMap::new();
            for run in &status.runs {
                *runs.entry(run.lease_id.as_str()).or_default() += 1;
            }
            for (lease, n) in runs.iter().filter(|(_, n)| **n > 1) {
                push(format!("{}: lease {lease} has {n} runs", node.name));
            }
            let on_chain: u64 = self
                .escrows
                .values()
                .flatten()
                .filter(|e| e.provider == node.account)
                .map(|e| e.settled.0)
                .sum();
            if status.earned.0 != on_chain {
                // Where the two differ: each lease the chain paid that the
                // provider's runs disagree on, or that it has no run for.
                let apart: Vec<String> = self
                    .escrows
                    .values()
                    .flatten()
                    .filter(|e| e.provider == node.account)
                    .filter_map(|e| {
                        let run = status
                            .runs
                            .iter()
                            .find(|r| r.lease_id == e.lease_id.to_string());
                        match run {
                            Some(r) if r.settled == e.settled => None,
                            Some(r) => Some(format!(
                                "lease {}: chain {}, run {}",
                                e.lease_id, e.settled, r.settled
                            )),
                            None if e.settled > Amount::ZERO => {
                                Some(format!("lease {}: chain {}, no run", e.lease_id, e.settled))
                            }
                            None => None,
                        }
                    })
                    .collect();
                push(format!(
                    "{} says it earned {}, the chain paid it {} over its leases ({})",
                    node.name,
                    status.earned,
                    Amount(on_chain),
                    if apart.is_empty() {
                        "every run agrees with the chain".to_string()
                    } else {
                        apart.join("; ")
                    }
                ));
            }
            for run in &status.runs {
                let chain = self.escrow_of(&run.lease_id).map(|e| e.settled);
                if run.closed && chain != Some(run.settled) {
                    push(format!(
                        "{}: lease {} closed having settled {} by its books, {} by the chain's",
                        node.name,
                        run.lease_id,
                        run.settled,
                        chain.map_or("nothing".into(), |a| a.to_string())
                    ));
                }
            }
        }
    }

    fn settled_within_countersigned(&self, out: &mut Vec<Violation>) {
        let mut unpaid = Vec::new();
        let mut push = |detail: String| {
            out.push(Violation {
                rule: Rule::SettledWithinCountersigned,
                detail,
            })
        };
        for node in &self.nodes {
            for job in &node.jobs {
                let Some(lease) = &job.lease else { continue };
                let Some(e) = self.escrow_of(&lease.id) else {
                    continue;
                };
                let countersigned = job.receipt.as_ref().map_or(Amount::ZERO, |r| r.amount);
                if e.settled > countersigned {
                    push(format!(
                        "lease {} (job {} on {}) settled {} but its requester's latest \
                         countersigned receipt says {countersigned} (sequence {})",
                        lease.id,
                        job.id,
                        node.name,
                        e.settled,
                        job.receipt.as_ref().map_or(0, |r| r.sequence)
                    ));
                }
            }
            let Some(status) = &node.provider else {
                continue;
            };
            for run in &status.runs {
                let Some(e) = self.escrow_of(&run.lease_id) else {
                    continue;
                };
                let countersigned = run.receipt.as_ref().map_or(Amount::ZERO, |r| r.amount);
                if e.settled > countersigned {
                    push(format!(
                        "lease {} settled {} but the latest countersigned receipt {} holds \
                         says {countersigned}",
                        run.lease_id, e.settled, node.name
                    ));
                }
                if e.closed() && e.settled < countersigned {
                    unpaid.push(Violation {
                        rule: Rule::SettledAsCountersigned,
                        detail: format!(
                            "lease {} closed having settled {} though {} holds a receipt \
                             countersigned for {countersigned} (sequence {})",
                            run.lease_id,
                            e.settled,
                            node.name,
                            run.receipt.as_ref().map_or(0, |r| r.sequence)
                        ),
                    });
                }
            }
        }
        out.append(&mut unpaid);
    }

    fn jobs_terminal(&self, out: &mut Vec<Violation>) {
        let mut push = |detail: String| {
            out.push(Violation {
                rule: Rule::JobsTerminal,
                detail,
            })
        };
        for node in &self.nodes {
            for job in &node.jobs {
                let at = format!("job {} on {}", job.id, node.name);
                if !job.state.is_terminal() {
                    push(format!(
                        "{at} is still {:?} (lease {})",
                        job.state,
                        job.lease.as_ref().map_or("none", |l| l.id.as_str())
                    ));
                    continue;
                }
                let stated =
                    |r: &Option<String>| r.as_deref().is_some_and(|r| !r.trim().is_empty());
                let why = match job.state {
                    JobState::Succeeded => job.exit_code == Some(0),
                    JobState::NoBids => stated(&job.reason) || !job.declines.is_empty(),
                    _ => stated(&job.reason) || job.exit_code.is_some_and(|c| c != 0),
                };
                if !why {
                    push(format!(
                        "{at} ended {:?} without saying why (reason {:?}, exit code {:?})",
                        job.state, job.reason, job.exit_code
                    ));
                }
                if let Some(lease) = &job.lease
                    && let Some(e) = self.escrow_of(&lease.id)
                    && !e.closed()
                {
                    push(format!(
                        "{at} ended {:?} but the escrow of lease {} is open: {} locked, {} settled",
                        job.state, lease.id, e.escrow, e.settled
                    ));
                }
            }
        }
        for (id, escrow) in &self.escrows {
            if let Some(e) = escrow
                && !e.closed()
                && !self.nodes.iter().any(|n| {
                    n.jobs
                        .iter()
                        .any(|j| j.lease.as_ref().is_some_and(|l| l.id == id.to_string()))
                })
            {
                push(format!(
                    "lease {id} is open on the chain ({} locked, {} settled) and no requester \
                     has a job for it",
                    e.escrow, e.settled
                ));
            }
        }
    }

    fn escrow_of(&self, lease: &str) -> Option<&EscrowState> {
        let id: LeaseId = lease.parse().ok()?;
        self.escrows.get(&id)?.as_ref()
    }

    fn name_of(&self, account: &AccountId) -> &str {
        self.nodes
            .iter()
            .find(|n| n.account == *account)
            .map_or("an account", |n| n.name.as_str())
    }
}

/// Reads the chain's books and every node's view of a running testnet.
/// Every node and the chain must be up; a read that fails (a node still
/// starting) is retried for up to `patience`.
pub async fn snapshot(net: &Testnet, patience: Duration) -> Result<Snapshot, TestnetError> {
    let deadline = Instant::now() + patience;
    let ledger = net.ledger().await?;
    let mut nodes = Vec::new();
    let mut leases: BTreeSet<LeaseId> = BTreeSet::new();
    for entry in net.nodes() {
        let client = net.client(&entry.name)?;
        let mut books = NodeBooks {
            name: entry.name.clone(),
            account: entry.account,
            jobs: Vec::new(),
            provider: None,
        };
        match entry.role {
            Role::Requester => {
                books.jobs = retry(deadline, &entry.name, "jobs", || client.jobs()).await?;
                for job in &books.jobs {
                    leases.extend(
                        job.lease
                            .as_ref()
                            .and_then(|l| l.id.parse::<LeaseId>().ok()),
                    );
                }
            }
            Role::Provider => {
                let status =
                    retry(deadline, &entry.name, "status", || client.provider_status()).await?;
                leases.extend(
                    status
                        .runs
                        .iter()
                        .filter_map(|r| r.lease_id.parse::<LeaseId>().ok()),
                );
                leases.extend(
                    status
                        .leases
                        .iter()
                        .filter_map(|l| l.id.parse::<LeaseId>().ok()),
                );
                books.provider = Some(status);
            }
        }
        nodes.push(books);
    }
    let mut escrows = BTreeMap::new();
    for id in leases {
        let e = retry(deadline, crate::network::CHAIN, "escrow", || {
            ledger.escrow(&id)
        })
        .await?;
        escrows.insert(id, e);
    }
    let mut balances = BTreeMap::new();
    for n in &nodes {
        let b = retry(deadline, crate::network::CHAIN, "balance", || {
            ledger.balance(&n.account)
        })
        .await?;
        balances.insert(n.account, b);
    }
    let supply = retry(deadline, crate::network::CHAIN, "supply", || {
        ledger.supply()
    })
    .await?;
    Ok(Snapshot {
        supply,
        balances,
        escrows,
        nodes,
        deposits: None,
        leftover: Vec::new(),
    })
}

async fn retry<T, E: fmt::Display, F: Future<Output = Result<T, E>>>(
    deadline: Instant,
    name: &str,
    what: &str,
    mut call: impl FnMut() -> F,
) -> Result<T, TestnetError> {
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(TestnetError::Client {
                    name: name.to_string(),
                    message: format!("reading its {what}: {e}"),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Processes whose command line names `dir` or whose working directory is
/// under it (agorad, the chain, jobs and their sandboxes), except this
/// process and its ancestors (the shell or `timeout` that started it);
/// read from `/proc` (empty where there is none).
pub fn leftover_processes(dir: &Path) -> Vec<LeftProcess> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let marker = dir.to_string_lossy().into_owned();
    let inside = format!("{marker}/");
    // Per argument, so that `net/provider-1` does not match `net/provider-10`.
    let names_dir = |arg: &str| arg == marker || arg.ends_with(&marker) || arg.contains(&inside);
    let mut mine = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && mine.insert(pid) {
        match parent_of(pid) {
            Some(parent) => pid = parent,
            None => break,
        }
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if mine.contains(&pid) || !crate::process::pid_alive(pid) {
            continue;
        }
        let proc_dir = PathBuf::from("/proc").join(pid.to_string());
        let args: Vec<String> = std::fs::read(proc_dir.join("cmdline"))
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let cwd_inside =
            std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir));
        if args.iter().any(|a| names_dir(a)) || cwd_inside {
            out.push(LeftProcess {
                pid,
                cmdline: args.join(" "),
            });
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// The parent of `pid`, from `/proc/PID/stat` (after the command's
/// closing parenthesis: state, then the parent's pid).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests;
