//! `agorad`: the Agora node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agora_client::api::Role;
use agora_node::config::Config;
use agora_node::daemon::{self, NodeOptions};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;

#[derive(Parser)]
#[command(name = "agorad", version, about = "The Agora node")]
struct Cli {
    /// Data directory (key, API token, state).
    #[arg(long, env = "AGORAD_DATA", default_value = ".agorad", global = true)]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print this node's peer id and ledger account, creating its key on first run.
    Id,
    /// Rent out GPUs: advertise, bid, countersign leases (and order, too).
    #[command(args_conflicts_with_subcommands = true)]
    Provider {
        #[command(subcommand)]
        tool: Option<ProviderTool>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Order GPUs: publish orders, run auctions, lease, lock escrow.
    Requester {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Check every precondition of starting a node, without starting one.
    /// Exits 1 when any check is an error.
    Doctor {
        /// Print a JSON array of {check, severity, found, fix}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Subcommand)]
enum ProviderTool {
    /// Show what this provider would bid for an order, and why (or why not).
    Price {
        /// Print the decision without bidding.
        #[arg(long, required = true)]
        dry_run: bool,
        /// The job spec (TOML) to price.
        order: PathBuf,
        /// Provider config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Peer to join through, ending in /p2p/PEER_ID (repeatable).
    #[arg(long, help_heading = "Network")]
    bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN by multicast DNS (off by default).
    #[arg(long, help_heading = "Network")]
    mdns: bool,
}

/// What both a running node and `doctor` take.
#[derive(Args)]
struct NodeArgs {
    /// Config file (TOML); default DATA/agorad.toml when it exists.
    #[arg(long, help_heading = "Node")]
    config: Option<PathBuf>,
    /// Mock chain (ledger) base URL; not with [ledger.evm] in the config.
    #[arg(long, env = "AGORA_LEDGER", help_heading = "Node")]
    ledger: Option<String>,
    /// libp2p listen address (repeatable).
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0", help_heading = "Network")]
    listen: Vec<Multiaddr>,
    /// API address (loopback unless you mean otherwise).
    #[arg(long, default_value = "127.0.0.1:7070", help_heading = "API")]
    api: SocketAddr,
}

fn load_config(data: &Path, explicit: Option<&Path>) -> anyhow::Result<Config> {
    Ok(agora_node::config::load_for(data, explicit)?)
}

async fn run(data: PathBuf, role: Role, args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(&data, args.node.config.as_deref())?;
    let ledger = match (&config.ledger.evm, args.node.ledger) {
        (Some(evm), None) => evm.rpc_url.clone(),
        (Some(evm), Some(url)) => anyhow::bail!(
            "--ledger {url} (or AGORA_LEDGER) and [ledger.evm] ({}) both name a ledger: keep one",
            evm.rpc_url
        ),
        (None, Some(url)) => url,
        (None, None) => anyhow::bail!(
            "a node needs its ledger: pass --ledger URL (the mock chain prints it: `listening on ADDR`), \
             or configure [ledger.evm] for the escrow on an EVM chain"
        ),
    };
    let node = daemon::start(NodeOptions {
        data_dir: data.clone(),
        config,
        role,
        listen: args.node.listen,
        bootstrap: args.bootstrap,
        api: args.node.api,
        ledger,
        mdns: args.mdns,
    })
    .await?;
    println!(
        "agorad ready api={} peer={}",
        node.ready.api_url, node.ready.peer_id
    );
    wait_for_signal().await?;
    daemon::clear_ready(&data);
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}

async fn doctor(data: PathBuf, json: bool, args: NodeArgs) -> anyhow::Result<ExitCode> {
    let checks = agora_node::doctor::run(&agora_node::doctor::Options {
        data_dir: data,
        config: args.config,
        ledger: args.ledger,
        listen: args.listen,
        api: args.api,
    })
    .await;
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", agora_node::doctor::render(&checks));
    }
    Ok(ExitCode::from(agora_node::doctor::exit_status(&checks)))
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Id => {
            let key = agora_node::identity::load_or_create(&cli.data)?;
            println!("peer id: {}", key.public().peer_id());
            println!("account: {}", key.public());
            println!(
                "key file: {}",
                agora_node::identity::key_path(&cli.data).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Provider {
            tool: Some(ProviderTool::Price { order, config, .. }),
            ..
        } => {
            let config = load_config(&cli.data, config.as_deref())?;
            let spec = agora_client::spec::load(&order)?;
            let text =
                agora_node::provider::dry_run::dry_run(&config, &spec, agora_node::clock::now())?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Provider {
            tool: None,
            run: args,
        } => tokio_main(run(cli.data, Role::Provider, args)).map(|()| ExitCode::SUCCESS),
        Command::Requester { run: args } => {
            tokio_main(run(cli.data, Role::Requester, args)).map(|()| ExitCode::SUCCESS)
        }
        Command::Doctor { json, node } => tokio_main(doctor(cli.data, json, node)),
    }
}

fn tokio_main<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}
