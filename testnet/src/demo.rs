//! `agora-testnet demo`: a whole market on loopback runs three jobs (one
//! only an H100 can serve, one auctioned, one that fails), follows them to
//! the end, verifies a result, and checks that money was conserved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_client::api::{
    Constraints, JobSpec, JobState, JobView, MarketTerms, Resources, SubmitJob,
};
use agora_client::http::NodeClient;
use agora_protocol::Ledger;
use agora_protocol::{Amount, PublicKey};
use agora_testnet::{Binaries, Testnet, TestnetConfig};
use anyhow::{Context as _, bail};
use tokio::time::Instant;

/// What the requester is given to spend.
const DEPOSIT: Amount = Amount(100_000_000);
/// How long the three jobs may take in all.
const JOBS_TIMEOUT: Duration = Duration::from_secs(180);
/// How often job states are read.
const POLL: Duration = Duration::from_millis(500);

/// `agora-testnet demo` options.
pub(crate) struct DemoOptions {
    pub(crate) dir: PathBuf,
    pub(crate) keep: bool,
    pub(crate) bin_dir: Option<PathBuf>,
    pub(crate) rust_log: String,
    pub(crate) ledger: agora_testnet::LedgerBackend,
}

/// One demo job.
struct DemoJob {
    name: &'static str,
    id: String,
    view: Option<JobView>,
}

/// Starts the market, runs the demo, tears it down (unless `keep`).
pub(crate) async fn run(options: DemoOptions) -> anyhow::Result<()> {
    build_binaries_if_missing(options.bin_dir.as_deref())?;
    let mut config = TestnetConfig::new(&options.dir, 3, 1);
    config.bin_dir = options.bin_dir;
    config.rust_log = options.rust_log;
    config.node.receipt_interval_secs = 2;
    config.close_grace_ms = 2_000;
    config.detach = options.keep;
    config.ledger = options.ledger;
    // The demo's jobs are its own: on a machine without a working
    // bubblewrap they run unsandboxed, and it says so. A real provider
    // still refuses strangers' jobs unsandboxed unless its operator opts in.
    if let Err(why) = agora_node::runtime::process::working_bwrap(None) {
        eprintln!("note: the demo's own jobs run without the sandbox: {why}");
        config.node.allow_unsandboxed = true;
    }
    eprintln!(
        "starting {}, 3 providers and 1 requester in {} …",
        crate::chain_words(options.ledger),
        options.dir.display()
    );
    let net = Testnet::start(config)
        .await
        .context("the testnet did not start")?;
    let outcome = tokio::select! {
        outcome = demo(&net) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = &outcome {
        eprintln!("demo failed: {e:#}\nlast log lines:\n{}", net.log_tails(15));
    }
    if options.keep {
        let manifest = net.detach();
        println!(
            "\nthe testnet keeps running; stop it with:\n  agora-testnet down --dir {}",
            manifest.dir.display()
        );
    } else {
        net.down().await.context("stopping the testnet")?;
        eprintln!("testnet stopped");
    }
    outcome
}

async fn demo(net: &Testnet) -> anyhow::Result<()> {
    let requester = net.client("requester-0")?;
    let requester_account = net.node("requester-0")?.account;
    let providers: Vec<(String, PublicKey, NodeClient)> = net
        .providers()
        .iter()
        .map(|n| Ok((n.name.clone(), n.account, net.client(&n.name)?)))
        .collect::<anyhow::Result<_>>()?;
    // The books are read from the chain itself, not from the nodes.
    let chain = net.ledger().await.context("a client of the chain")?;
    let accounts: Vec<PublicKey> = std::iter::once(requester_account)
        .chain(providers.iter().map(|(_, account, _)| *account))
        .collect();

    requester.deposit(DEPOSIT).await.context("deposit")?;
    wait_for_offers(&requester, providers.len()).await?;

    let before = balances(chain.as_ref(), &accounts).await?;
    let supply_before = chain.supply().await.context("the chain's supply")?;

    let mut jobs = Vec::new();
    for (name, spec) in [
        (
            "h100-only",
            job_spec("h100-only", Some("H100"), PRINT_AND_WRITE),
        ),
        ("auction", job_spec("auction", None, PRINT_AND_WRITE)),
        (
            "fails",
            job_spec("fails", None, "echo about to fail; exit 3"),
        ),
    ] {
        let job = requester
            .submit_job(&SubmitJob { spec, offer: None })
            .await
            .with_context(|| format!("submitting {name}"))?;
        println!("{name:<10} submitted as {}", job.id);
        jobs.push(DemoJob {
            name,
            id: job.id,
            view: None,
        });
    }
    follow(&requester, &mut jobs, &providers).await?;

    let mut failures = Vec::new();
    // The verified download.
    let results_dir = net.dir().join("results");
    match verify_result(&requester, &jobs[0].id, &results_dir).await {
        Ok(files) => println!(
            "\nresult of h100-only: {files} file(s) downloaded to {} and verified (blake3)",
            results_dir.display()
        ),
        Err(e) => failures.push(format!("result of h100-only: {e:#}")),
    }

    // Leases are closed once jobs are terminal; the ledger is read after.
    let after = balances(chain.as_ref(), &accounts).await?;
    let supply_after = chain.supply().await.context("the chain's supply")?;

    let views: Vec<(&str, &JobView)> = jobs
        .iter()
        .filter_map(|j| j.view.as_ref().map(|v| (j.name, v)))
        .collect();
    print_jobs(&views, &providers);
    check_jobs(&views, &providers, &mut failures);

    // Money.
    let spend = before[&requester_account].0 as i128 - after[&requester_account].0 as i128;
    let mut earned_total: i128 = 0;
    println!("\nearnings");
    for (name, account, _) in &providers {
        let earned = after[account].0 as i128 - before[account].0 as i128;
        earned_total += earned;
        println!("  {name:<12} {}", agr(earned));
    }
    println!("requester spend  {}", agr(spend));
    println!("\nbalances         before              after");
    let mut names: Vec<(String, PublicKey)> = vec![("requester-0".into(), requester_account)];
    names.extend(providers.iter().map(|(n, a, _)| (n.clone(), *a)));
    for (name, account) in &names {
        println!(
            "  {name:<14} {:>18}  {:>18}",
            agr(before[account].0 as i128),
            agr(after[account].0 as i128)
        );
    }
    let sum = |b: &BTreeMap<PublicKey, Amount>| b.values().map(|a| a.0 as u128).sum::<u128>();
    let (sum_before, sum_after) = (sum(&before), sum(&after));
    println!(
        "  {:<14} {:>18}  {:>18}",
        "escrow",
        agr(supply_before.escrowed as i128),
        agr(supply_after.escrowed as i128)
    );
    println!(
        "  {:<14} {:>18}  {:>18}",
        "total",
        agr((sum_before + supply_before.escrowed) as i128),
        agr((sum_after + supply_after.escrowed) as i128)
    );
    println!(
        "chain supply: deposited {} / balances {} / escrowed {} before; {} / {} / {} after",
        agr(supply_before.deposited as i128),
        agr(supply_before.balances as i128),
        agr(supply_before.escrowed as i128),
        agr(supply_after.deposited as i128),
        agr(supply_after.balances as i128),
        agr(supply_after.escrowed as i128),
    );

    let conserved = sum_before + supply_before.escrowed == sum_after + supply_after.escrowed;
    println!(
        "conservation: balances + escrow {} before {} after: {}",
        agr((sum_before + supply_before.escrowed) as i128),
        agr((sum_after + supply_after.escrowed) as i128),
        if conserved { "ok" } else { "VIOLATED" }
    );
    if !conserved {
        failures.push("balances + escrow changed".into());
    }
    if !supply_before.conserved() || !supply_after.conserved() {
        failures.push("the chain's supply is not conserved (balances + escrow != deposits)".into());
    }
    if supply_after.deposited != supply_before.deposited {
        failures.push("deposits changed while the jobs ran".into());
    }
    // On an EVM chain the token itself agrees: the escrow contract holds
    // exactly what its books say it owes.
    if let Some(escrow) = net.evm_ledger().await.context("the escrow's client")? {
        let held = escrow
            .escrow_token_balance()
            .await
            .context("the escrow's token balance")?;
        let owed = supply_after.balances + supply_after.escrowed;
        println!(
            "token held by the escrow contract {}: {} == balances + escrow {}: {}",
            escrow.escrow_address(),
            agr(held as i128),
            agr(owed as i128),
            if held == owed { "ok" } else { "VIOLATED" }
        );
        if held != owed {
            failures.push("the escrow contract's token balance differs from its books".into());
        }
    }
    if supply_after.escrowed != 0 {
        failures.push(format!(
            "{} still in escrow after every job ended",
            agr(supply_after.escrowed as i128)
        ));
    }
    let spend_ok = spend == earned_total;
    println!(
        "requester spend {} == providers' earnings {}: {}",
        agr(spend),
        agr(earned_total),
        if spend_ok { "ok" } else { "VIOLATED" }
    );
    if !spend_ok {
        failures.push("requester spend differs from the providers' earnings".into());
    }
    if spend <= 0 {
        failures.push("the requester paid nothing".into());
    }

    if failures.is_empty() {
        println!("\nall checks passed");
        Ok(())
    } else {
        for f in &failures {
            eprintln!("check failed: {f}");
        }
        bail!("{} check(s) failed", failures.len())
    }
}

/// Prints a few lines over ~5 s and writes an output file.
const PRINT_AND_WRITE: &str = "for i in 1 2 3 4 5; do echo \"step $i\"; sleep 1; done; \
     echo done >&2; echo 42 > \"$AGORA_OUTPUT/answer.txt\"";

fn job_spec(name: &str, gpu_model: Option<&str>, script: &str) -> JobSpec {
    JobSpec {
        name: Some(name.into()),
        runtime: "process".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: Default::default(),
        inputs: vec![],
        resources: Resources {
            gpus: 1,
            gpu_model: gpu_model.map(str::to_string),
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
            ..Default::default()
        },
        market: MarketTerms {
            max_price_per_gpu_hour: "3".into(),
            max_duration_secs: 120,
            bid_window_ms: 2000,
        },
    }
}

/// Waits until the requester's book holds offers from every provider.
async fn wait_for_offers(requester: &NodeClient, providers: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = requester.search_offers("", None).await?;
        let mut seen: Vec<PublicKey> = page.offers.iter().map(|o| o.provider).collect();
        seen.sort_by_key(|k| k.to_string());
        seen.dedup();
        if seen.len() >= providers {
            eprintln!("the requester sees offers from {} providers", seen.len());
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "after 60 s the requester sees offers from {} of {providers} providers",
                seen.len()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Each account's balance, as the chain has it.
async fn balances(
    chain: &dyn Ledger,
    accounts: &[PublicKey],
) -> anyhow::Result<BTreeMap<PublicKey, Amount>> {
    let mut out = BTreeMap::new();
    for account in accounts {
        let balance = chain
            .balance(account)
            .await
            .with_context(|| format!("the balance of {account}"))?;
        out.insert(*account, balance);
    }
    Ok(out)
}

/// Polls every job until all are terminal, printing each state change.
async fn follow(
    requester: &NodeClient,
    jobs: &mut [DemoJob],
    providers: &[(String, PublicKey, NodeClient)],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + JOBS_TIMEOUT;
    loop {
        let mut all_done = true;
        for job in jobs.iter_mut() {
            if job.view.as_ref().is_some_and(|v| v.state.is_terminal()) {
                continue;
            }
            let view = requester.job(&job.id).await?;
            if job.view.as_ref().map(|v| v.state) != Some(view.state) {
                let mut line = format!("{:<10} {:?}", job.name, view.state);
                if let Some(lease) = &view.lease {
                    line.push_str(&format!(
                        " on {} ({} x {})",
                        provider_name(providers, &lease.provider),
                        lease.gpu_count,
                        lease.gpu_model
                    ));
                }
                if let Some(code) = view.exit_code {
                    line.push_str(&format!(", exit {code}"));
                }
                println!("{}", line.to_lowercase());
            }
            all_done &= view.state.is_terminal();
            job.view = Some(view);
        }
        if all_done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the jobs did not all end within {} s",
                JOBS_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn provider_name(providers: &[(String, PublicKey, NodeClient)], key: &PublicKey) -> String {
    providers
        .iter()
        .find(|(_, a, _)| a == key)
        .map(|(n, _, _)| n.clone())
        .unwrap_or_else(|| key.short())
}

/// Downloads every output of `id` and checks it against the manifest.
async fn verify_result(requester: &NodeClient, id: &str, dir: &Path) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        match requester.result(id).await {
            Ok(view) if view.complete => break view,
            Ok(_) | Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            Ok(_) => bail!("the result of {id} was not complete after 30 s"),
            Err(e) => return Err(e.into()),
        }
    };
    if view.outputs.is_empty() {
        bail!("job {id} has no outputs");
    }
    for output in &view.outputs {
        let safe = !output.path.is_empty()
            && !output.path.starts_with('/')
            && output
                .path
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\\'));
        if !safe {
            bail!("refusing output path '{}'", output.path);
        }
        let file = dir.join(&output.path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let (size, hash) = requester
            .download_result_file(id, &output.path, &file, output.size)
            .await?;
        if size != output.size || hash.to_hex().as_str() != output.blake3 {
            let _ = std::fs::remove_file(&file);
            bail!("output '{}' does not match its manifest entry", output.path);
        }
    }
    Ok(view.outputs.len())
}

fn print_jobs(views: &[(&str, &JobView)], providers: &[(String, PublicKey, NodeClient)]) {
    println!(
        "\n{:<10} {:<12} {:<12} {:<10} {:>4} {:>8} {:>14} {:>14}",
        "JOB", "PROVIDER", "GPU", "STATE", "EXIT", "GPU-S", "PAID AGR", "REFUNDED AGR"
    );
    for (name, v) in views {
        let (provider, gpu) = match &v.lease {
            Some(l) => (
                provider_name(providers, &l.provider),
                format!("{}x{}", l.gpu_count, l.gpu_model),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<10} {:<12} {:<12} {:<10} {:>4} {:>8} {:>14} {:>14}",
            name,
            provider,
            gpu,
            format!("{:?}", v.state).to_lowercase(),
            v.exit_code.map(|c| c.to_string()).unwrap_or("-".into()),
            v.receipt
                .as_ref()
                .map(|r| r.gpu_seconds.to_string())
                .unwrap_or("-".into()),
            v.settlement
                .as_ref()
                .map(|s| s.settled.to_string())
                .unwrap_or("-".into()),
            v.settlement
                .as_ref()
                .and_then(|s| s.refunded)
                .map(|a| a.to_string())
                .unwrap_or("-".into()),
        );
    }
}

fn check_jobs(
    views: &[(&str, &JobView)],
    providers: &[(String, PublicKey, NodeClient)],
    failures: &mut Vec<String>,
) {
    let p0 = providers.first().map(|(_, a, _)| *a);
    for (name, v) in views {
        let want = if *name == "fails" {
            JobState::Failed
        } else {
            JobState::Succeeded
        };
        if v.state != want {
            failures.push(format!("{name} ended {:?}, expected {want:?}", v.state));
        }
        let want_code = if *name == "fails" { 3 } else { 0 };
        if v.exit_code != Some(want_code) {
            failures.push(format!(
                "{name} exit code {:?}, expected {want_code}",
                v.exit_code
            ));
        }
        if *name == "h100-only" && v.lease.as_ref().map(|l| l.provider) != p0 {
            failures.push("h100-only did not run on provider-0 (the only H100s)".into());
        }
        match &v.settlement {
            Some(s) => {
                let refunded = s.refunded.unwrap_or(Amount::ZERO);
                if s.refunded.is_none() {
                    failures.push(format!("{name}: its lease is not closed"));
                } else if s.settled.checked_add(refunded) != Some(s.escrow) {
                    failures.push(format!(
                        "{name}: settled {} + refunded {} != escrow {}",
                        s.settled, refunded, s.escrow
                    ));
                }
            }
            None => failures.push(format!("{name}: no settlement")),
        }
    }
}

/// A signed base-unit amount as AGR.
fn agr(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    match u64::try_from(abs) {
        Ok(v) => format!("{sign}{} AGR", Amount(v)),
        Err(_) => format!("{sign}{abs} units"),
    }
}

/// From a cargo target dir (`cargo run -p agora-testnet -- demo` on a fresh
/// clone), builds `agorad` and `agora-mock-chain` next to this program when
/// they are missing, with the same profile.
pub(crate) fn build_binaries_if_missing(bin_dir: Option<&Path>) -> anyhow::Result<()> {
    if bin_dir.is_some() || Binaries::locate(None).is_ok() {
        return Ok(());
    }
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(()); // Not run by cargo: `Testnet::start` says what is missing.
    };
    let exe = std::env::current_exe()?;
    let Some(profile_dir) = exe.parent() else {
        return Ok(());
    };
    let Some(target_dir) = profile_dir.parent() else {
        return Ok(());
    };
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let profile = if profile == "debug" { "dev" } else { profile };
    eprintln!("building agorad and agora-mock-chain ({profile} profile) …");
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--profile",
            profile,
            "-p",
            "agora-node",
            "-p",
            "agora-contracts-mock",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p agora-node -p agora-contracts-mock failed");
    }
    Ok(())
}
