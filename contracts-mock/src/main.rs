//! `agora-mock-chain`: a durable ledger on sled, served over HTTP so a
//! testnet's nodes share one chain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agora_contracts_mock::{Clock, ManualClock, SledConfig, SledLedger, SystemClock, server};
use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "agora-mock-chain",
    version,
    about = "A durable mock ledger served over HTTP"
)]
struct Args {
    /// Address to serve on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory of the ledger's sled store.
    #[arg(long)]
    data: PathBuf,
    /// Chain time moves only through POST /v1/admin/advance (tests).
    #[arg(long)]
    manual_clock: bool,
    /// Simulated block time: acknowledge operations at block boundaries.
    #[arg(long)]
    block_time_ms: Option<u64>,
    /// After a lease's end, how long before anyone may close it.
    #[arg(long, default_value_t = 60_000)]
    close_grace_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let manual = args
        .manual_clock
        .then(|| ManualClock::new(SystemClock.now()));
    let clock: Arc<dyn Clock> = match &manual {
        Some(clock) => Arc::new(clock.clone()),
        None => Arc::new(SystemClock),
    };
    let config = SledConfig {
        close_grace_ms: args.close_grace_ms,
        block_time_ms: args.block_time_ms,
        ..SledConfig::default()
    };
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen {} is not a loopback address; the mock chain has no authentication, \
         so it serves only 127.0.0.1 or ::1 (e.g. --listen 127.0.0.1:0)",
        args.listen
    );
    let ledger = SledLedger::open(&args.data, config, clock)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; pass --listen with a free port (or port 0)",
                args.listen
            )
        })?;
    let bound = listener.local_addr()?;
    // Launchers read this line to learn the port.
    println!("listening on {bound}");
    tracing::info!(addr = %bound, data = %args.data.display(), "mock chain up");
    axum::serve(listener, server::router(Arc::new(ledger.clone()), manual))
        .with_graceful_shutdown(shutdown())
        .await?;
    // Everything acknowledged is already on disk; close the store cleanly.
    ledger.shutdown().await?;
    tracing::info!("mock chain stopped");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; stop with ctrl-c");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
