//! `agora-testnet`: a whole Agora market on loopback.

mod bench;
mod demo;

use std::path::PathBuf;
use std::time::Duration;

use agora_client::api::Role;
use agora_testnet::chaos::{ChaosConfig, Secs, Victim};
use agora_testnet::hardware::provider_profile;
use agora_testnet::{Bootstrap, Manifest, Testnet, TestnetConfig};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "agora-testnet",
    version,
    about = "Runs an Agora market on loopback: a mock chain and real agorad nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a mock chain and N providers + M requesters, and leave them
    /// running (stop them with `down`).
    Up(UpArgs),
    /// Stop every process of a testnet and check that none is left.
    Down(DownArgs),
    /// Check a testnet's invariants: on a running one, the chain's books
    /// and every node's (money conserved, no lease settled twice, settled
    /// <= countersigned, every job terminal with a reason); on a stopped
    /// one, that no process of it is left.
    ///
    /// Exits non-zero if any invariant is broken.
    Check(CheckArgs),
    /// Start a market of 3 providers and 1 requester, run three jobs (one
    /// only an H100 can serve, one auctioned, one that fails), verify a
    /// result and check that money was conserved; then stop everything.
    ///
    /// Exits non-zero if any check fails.
    Demo(DemoArgs),
    /// Measure the market on N real nodes: offer propagation, order →
    /// lease on both paths, submit → running and → settled, jobs per
    /// second, memory and CPU per node, ledger operations per lease.
    ///
    /// Prints a table; `--json FILE` also writes the figures (ms, MB,
    /// ratios) and FILE.svg, a chart of the latency distributions.
    /// `submit_to_*` in the JSON are the instant path's; the table gives
    /// both paths.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Nodes in all: providers with simulated GPUs and a few requesters.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Jobs to run (half auctioned, half on the instant path).
    #[arg(long, default_value_t = 20)]
    jobs: usize,
    /// Requester nodes among them (default: a tenth, at least one).
    #[arg(long)]
    requesters: Option<usize>,
    /// Write the figures here as JSON, and the chart next to it (.svg).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Testnet directory (scratch: a previous bench's is removed).
    #[arg(long, default_value = ".agora-bench")]
    dir: PathBuf,
    /// Seconds of the idle window (offer propagation, idle memory); make
    /// it longer than the offer refresh, so that every provider publishes
    /// in it.
    #[arg(long, default_value_t = 24)]
    idle_secs: u64,
    /// How often providers republish their offers, seconds (a node's
    /// default is 20; offers live three times as long).
    #[arg(long, default_value_t = 20)]
    offer_refresh_secs: u64,
    /// Bid window of the auctioned jobs, milliseconds (the API's default).
    #[arg(long, default_value_t = 2000)]
    bid_window_ms: u32,
    /// Leave the testnet running afterwards (stop it with `down`).
    #[arg(long)]
    keep: bool,
    /// Directory of agorad and agora-mock-chain (default: next to this
    /// program, built there by cargo when missing).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// RUST_LOG of every process.
    #[arg(long, default_value = "warn")]
    log: String,
    /// The chain: the mock chain, or the escrow contract on a local anvil.
    #[arg(long, value_enum, default_value_t = LedgerArg::Mock)]
    ledger: LedgerArg,
    /// `node.target_peers` of every node: peers each dials on its own
    /// (the node's default, 12, if not given).
    #[arg(long)]
    target_peers: Option<u32>,
    /// `node.max_connections` of every node (the node's default, 64, if
    /// not given).
    #[arg(long)]
    max_connections: Option<u32>,
}

#[derive(Args)]
struct DemoArgs {
    /// Testnet directory (the demo's chain, nodes, logs and results).
    #[arg(long, default_value = ".agora-demo")]
    dir: PathBuf,
    /// Leave the testnet running afterwards (stop it with `down`).
    #[arg(long)]
    keep: bool,
    /// Directory of agorad and agora-mock-chain (default: next to this
    /// program, built there by cargo when missing).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// RUST_LOG of every process.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
    /// The chain: the mock chain, or the escrow contract on a local anvil
    /// (installed by `npm ci --prefix contracts-evm`).
    #[arg(long, value_enum, default_value_t = LedgerArg::Mock)]
    ledger: LedgerArg,
}

#[derive(Args)]
struct DirArg {
    /// Testnet directory: testnet.json, the chain's and each node's data
    /// and logs.
    #[arg(long, env = "AGORA_TESTNET_DIR", default_value = ".agora-testnet")]
    dir: PathBuf,
}

#[derive(Args)]
struct UpArgs {
    /// Provider nodes, with simulated GPUs of assorted models, prices,
    /// regions and energy sources.
    #[arg(long, default_value_t = 3, help_heading = "Market")]
    providers: usize,
    /// Requester nodes.
    #[arg(long, default_value_t = 1, help_heading = "Market")]
    requesters: usize,
    #[command(flatten)]
    dir: DirArg,
    /// Directory of agorad and agora-mock-chain (default: next to this
    /// program).
    #[arg(long, help_heading = "Processes")]
    bin_dir: Option<PathBuf>,
    /// RUST_LOG of every process.
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info",
        help_heading = "Processes"
    )]
    log: String,
    /// Whom each node bootstraps from: every node started before it, or
    /// only the first (the others then find each other through Kademlia).
    #[arg(long, value_enum, default_value_t = BootstrapFrom::Earlier, help_heading = "Network")]
    bootstrap: BootstrapFrom,
    /// Seconds each process may take to become ready.
    #[arg(long, default_value_t = 60, help_heading = "Processes")]
    ready_timeout: u64,
    /// Print testnet.json instead of a table.
    #[arg(long)]
    json: bool,
    /// Let the providers run jobs without bubblewrap, on a machine that
    /// lacks it (a real provider never does unless its operator sets
    /// runtime.allow_unsandboxed).
    #[arg(long, help_heading = "Processes")]
    allow_unsandboxed: bool,
    /// The chain: the mock chain, or the escrow contract on a local anvil
    /// (installed by `npm ci --prefix contracts-evm`).
    #[arg(long, value_enum, default_value_t = LedgerArg::Mock, help_heading = "Market")]
    ledger: LedgerArg,
    /// How long after a lease's end the ledger lets anyone close it,
    /// milliseconds: the provider's time to settle its last receipt (a
    /// chain outage longer than this costs a provider its unsettled
    /// receipts). Default 3000, so leases close in seconds; 30000 with
    /// --chaos, longer than the outages it causes.
    #[arg(long, help_heading = "Market")]
    close_grace_ms: Option<u64>,
    #[command(flatten)]
    chaos: ChaosArgs,
}

/// `up --chaos`: run in the foreground, kill and restart processes at
/// random while jobs run, then check the invariants and stop.
#[derive(Args)]
struct ChaosArgs {
    /// Run a chaos soak instead of leaving the testnet up: submit a stream
    /// of jobs, SIGKILL and restart random processes meanwhile, then drain,
    /// check the invariants on the chain and every node, stop everything
    /// and check that no process is left. Exits non-zero on a violation.
    #[arg(long, help_heading = "Chaos")]
    chaos: bool,
    /// Seed of every random choice (default: from the clock; printed, so a
    /// run can be repeated).
    #[arg(long, env = "AGORA_CHAOS_SEED", help_heading = "Chaos")]
    chaos_seed: Option<u64>,
    /// Seconds of faults and job submissions.
    #[arg(long, default_value_t = 180, help_heading = "Chaos")]
    chaos_secs: u64,
    /// Seconds between kills, a range MIN-MAX (or one number).
    #[arg(long, default_value = "3-8", help_heading = "Chaos")]
    chaos_every_secs: Secs,
    /// Seconds a killed process stays down, MIN-MAX.
    #[arg(long, default_value = "1-5", help_heading = "Chaos")]
    chaos_down_secs: Secs,
    /// What may be killed, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "provider,requester,chain",
        help_heading = "Chaos"
    )]
    chaos_kill: Vec<VictimArg>,
    /// Seconds between job submissions (each to a random requester),
    /// MIN-MAX.
    #[arg(long, default_value = "1-3", help_heading = "Chaos")]
    jobs_every_secs: Secs,
    /// Seconds each job runs (it prints a line a second), MIN-MAX; every
    /// seventh exits 3.
    #[arg(long, default_value = "2-10", help_heading = "Chaos")]
    job_secs: Secs,
    /// Longest lease, seconds: a job whose provider never comes back ends
    /// with it.
    #[arg(long, default_value_t = 30, help_heading = "Chaos")]
    max_job_secs: u64,
    /// Seconds the jobs may take to end and their leases to close after
    /// the faults stop, before the books are read anyway.
    #[arg(long, default_value_t = 120, help_heading = "Chaos")]
    drain_secs: u64,
    /// Also write the report (kills, jobs, violations) here as JSON.
    #[arg(long, value_name = "FILE", requires = "chaos", help_heading = "Chaos")]
    chaos_report: Option<PathBuf>,
}

/// The close grace of a chaos run: a chain killed a few times in a row
/// stays away for seconds, and the settled = countersigned rule holds
/// only when the provider can settle after the chain is back.
const CHAOS_CLOSE_GRACE_MS: u64 = 30_000;

#[derive(Clone, Copy, ValueEnum)]
enum VictimArg {
    Provider,
    Requester,
    Chain,
}

impl From<VictimArg> for Victim {
    fn from(arg: VictimArg) -> Self {
        match arg {
            VictimArg::Provider => Victim::Provider,
            VictimArg::Requester => Victim::Requester,
            VictimArg::Chain => Victim::Chain,
        }
    }
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Print the snapshot's findings as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LedgerArg {
    Mock,
    Evm,
}

impl From<LedgerArg> for agora_testnet::LedgerBackend {
    fn from(arg: LedgerArg) -> Self {
        match arg {
            LedgerArg::Mock => agora_testnet::LedgerBackend::Mock,
            LedgerArg::Evm => agora_testnet::LedgerBackend::Evm,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum BootstrapFrom {
    Earlier,
    First,
}

#[derive(Args)]
struct DownArgs {
    #[command(flatten)]
    dir: DirArg,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Up(args) => up(args).await,
        Command::Down(args) => down(args).await,
        Command::Check(args) => check(args).await,
        Command::Bench(args) => {
            bench::run(bench::BenchOptions {
                nodes: args.nodes,
                jobs: args.jobs,
                requesters: args.requesters,
                json: args.json,
                dir: args.dir,
                bin_dir: args.bin_dir,
                rust_log: args.log,
                idle_secs: args.idle_secs,
                offer_refresh_secs: args.offer_refresh_secs,
                bid_window_ms: args.bid_window_ms,
                keep: args.keep,
                ledger: args.ledger.into(),
                target_peers: args.target_peers,
                max_connections: args.max_connections,
            })
            .await
        }
        Command::Demo(args) => {
            demo::run(demo::DemoOptions {
                dir: args.dir,
                keep: args.keep,
                bin_dir: args.bin_dir,
                rust_log: args.log,
                ledger: args.ledger.into(),
            })
            .await
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    // The checks read every job and account: an earlier run's would count.
    if args.chaos.chaos && args.dir.dir.join(agora_testnet::MANIFEST_FILE).exists() {
        anyhow::bail!(
            "{} holds an earlier testnet; a chaos run needs a fresh --dir",
            args.dir.dir.display()
        );
    }
    let mut config = TestnetConfig::new(&args.dir.dir, args.providers, args.requesters);
    config.bin_dir = args.bin_dir;
    config.rust_log = args.log;
    config.ready_timeout = Duration::from_secs(args.ready_timeout);
    // A chaos run owns its processes (they die with it); `up` leaves them.
    config.detach = !args.chaos.chaos;
    config.ledger = args.ledger.into();
    config.close_grace_ms = args.close_grace_ms.unwrap_or(if args.chaos.chaos {
        CHAOS_CLOSE_GRACE_MS
    } else {
        config.close_grace_ms
    });
    // Without a sandbox the providers would each stop at start: say so
    // once, before anything starts.
    match agora_node::runtime::process::working_bwrap(None) {
        Ok(_) => {}
        Err(why) if args.allow_unsandboxed => {
            eprintln!("note: this testnet's providers run jobs without the sandbox: {why}");
            config.node.allow_unsandboxed = true;
        }
        Err(why) => anyhow::bail!(
            "{why}; or pass --allow-unsandboxed to run this testnet's jobs without the sandbox"
        ),
    }
    config.bootstrap = match args.bootstrap {
        BootstrapFrom::Earlier => Bootstrap::Earlier,
        BootstrapFrom::First => Bootstrap::First,
    };
    if !args.json {
        eprintln!(
            "starting {}, {} provider(s) and {} requester(s) in {} …",
            chain_words(config.ledger),
            args.providers,
            args.requesters,
            args.dir.dir.display()
        );
    }
    // Ctrl-c while starting drops the half-built testnet, which kills it.
    let net = tokio::select! {
        net = Testnet::start(config) => net.context("the testnet did not start (whatever it had started is stopped again)")?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; everything started is stopped"),
    };
    if args.chaos.chaos {
        return chaos(net, &args.chaos).await;
    }
    let manifest = net.detach();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        print_table(&manifest);
    }
    Ok(())
}

/// How the chain is named in progress lines.
pub(crate) fn chain_words(ledger: agora_testnet::LedgerBackend) -> &'static str {
    match ledger {
        agora_testnet::LedgerBackend::Mock => "a mock chain",
        agora_testnet::LedgerBackend::Evm => "anvil with the escrow contract",
    }
}

fn print_table(m: &Manifest) {
    println!(
        "{:<13} {:<10} {:<54} {:<24} {:>7}",
        "NAME", "ROLE", "PEER ID", "API", "PID"
    );
    println!(
        "{:<13} {:<10} {:<54} {:<24} {:>7}",
        "chain", "chain", "-", m.chain.url, m.chain.pid
    );
    if let Some(evm) = &m.chain.evm {
        println!(
            "  escrow {} (token {}, chain id {})",
            evm.escrow, evm.token, evm.chain_id
        );
    }
    for n in &m.nodes {
        let role = match n.role {
            Role::Provider => "provider",
            Role::Requester => "requester",
        };
        println!(
            "{:<13} {:<10} {:<54} {:<24} {:>7}",
            n.name, role, n.peer_id, n.api_url, n.pid
        );
    }
    let providers: Vec<_> = m.with_role(Role::Provider).collect();
    if !providers.is_empty() {
        println!("\nsimulated hardware:");
        for (index, n) in providers.iter().enumerate() {
            let p = provider_profile(index);
            println!(
                "  {:<13} {:>2}x {:<9} {:>3} GiB {:>5} TFLOPS  {:<4} {:<2}  {:<9} {:>5} AGR/GPU-h",
                n.name,
                p.gpu_count,
                p.gpu_model,
                p.vram_gib,
                p.tflops,
                p.region,
                p.jurisdiction,
                p.energy.to_string(),
                p.price.to_string()
            );
        }
    }
    println!("\nlogs: {}/<name>/log", m.dir.display());
    match m.with_role(Role::Requester).next() {
        Some(r) => println!(
            "use the first requester from the agora CLI:\n  export AGORA_NODE={} AGORA_TOKEN={}",
            r.api_url, r.token
        ),
        None => {
            if let Some(n) = m.nodes.first() {
                println!(
                    "use {} from the agora CLI:\n  export AGORA_NODE={} AGORA_TOKEN={}",
                    n.name, n.api_url, n.token
                );
            }
        }
    }
    println!("stop it:\n  agora-testnet down --dir {}", m.dir.display());
}

async fn down(args: DownArgs) -> anyhow::Result<()> {
    let dir = args.dir.dir;
    let mut net = Testnet::from_dir(&dir).with_context(|| {
        format!(
            "no testnet in {}; pass the --dir that `agora-testnet up` used",
            dir.display()
        )
    })?;
    let running = net.running();
    if running.is_empty() {
        println!(
            "nothing of the testnet in {} is running",
            net.dir().display()
        );
        return Ok(());
    }
    let shown = net.dir().display().to_string();
    net.down().await?;
    println!(
        "stopped {} process(es) of the testnet in {shown}: {}",
        running.len(),
        running
            .iter()
            .map(|(name, pid)| format!("{name} ({pid})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

async fn chaos(net: Testnet, args: &ChaosArgs) -> anyhow::Result<()> {
    let seed = args.chaos_seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let config = ChaosConfig {
        seed,
        duration: Duration::from_secs(args.chaos_secs),
        every: args.chaos_every_secs,
        down: args.chaos_down_secs,
        victims: args.chaos_kill.iter().map(|&v| v.into()).collect(),
        jobs_every: args.jobs_every_secs,
        job_secs: args.job_secs,
        max_job_secs: args.max_job_secs,
        drain: Duration::from_secs(args.drain_secs),
        ..ChaosConfig::default()
    };
    let mut say = |line: &str| eprintln!("{line}");
    // Ctrl-c drops the run, and with it the testnet, which kills it.
    let report = tokio::select! {
        report = agora_testnet::chaos::run(net, &config, &mut say) => report.context("the chaos run could not drive the testnet")?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the testnet is stopped (chaos seed {seed})"),
    };
    println!("{}", report.summary().trim_end());
    if let Some(path) = &args.chaos_report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.survived() {
        anyhow::bail!(
            "{} invariant violation(s); repeat with --chaos-seed {seed}",
            report.violations.len()
        );
    }
    Ok(())
}

async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let dir = args.dir.dir;
    let mut net = Testnet::from_dir(&dir).with_context(|| {
        format!(
            "no testnet in {}; pass the --dir that `agora-testnet up` used",
            dir.display()
        )
    })?;
    let running = net.running();
    let (violations, checked) = if running.is_empty() {
        let books_dir = net.dir().to_path_buf();
        let left = agora_testnet::check::leftover_processes(&books_dir);
        let violations: Vec<_> = left
            .into_iter()
            .map(|p| agora_testnet::check::Violation {
                rule: agora_testnet::check::Rule::NoProcessLeft,
                detail: format!("pid {} still runs: {}", p.pid, p.cmdline),
            })
            .collect();
        (violations, None)
    } else {
        let all = running.len() == net.nodes().len() + 1;
        anyhow::ensure!(
            all,
            "only some of the testnet runs ({}); start the rest (or stop it all) and check again",
            running
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let books = agora_testnet::check::snapshot(&net, Duration::from_secs(10)).await?;
        (books.violations(), Some(books.checked()))
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "checked": checked,
                "violations": violations,
            }))?
        );
    } else {
        match checked {
            Some(c) => println!(
                "checked {} jobs, {} leases ({} escrows on the chain) of the running testnet in {}",
                c.jobs,
                c.leases,
                c.escrows,
                net.dir().display()
            ),
            None => println!(
                "the testnet in {} is stopped: checked that none of its processes is left",
                net.dir().display()
            ),
        }
        for v in &violations {
            println!("VIOLATION {v}");
        }
        if violations.is_empty() {
            println!("every invariant holds");
        }
    }
    anyhow::ensure!(
        violations.is_empty(),
        "{} invariant violation(s)",
        violations.len()
    );
    Ok(())
}
