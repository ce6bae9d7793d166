//! `agora-evm`: deploy the escrow on an EVM chain, read its books, and
//! withdraw an Agora account's balance to a chain address.

use std::path::PathBuf;
use std::process::ExitCode;

use agora_contracts_evm::ledger::load_or_create_key;
use agora_contracts_evm::{Address, EvmConfig, EvmLedger, deploy};
use agora_protocol::{Amount, Keypair, Ledger, PublicKey};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agora-evm",
    version,
    about = "The Agora escrow on an EVM chain"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploys the escrow over a token (USDC on a public chain) and prints
    /// where it is, as JSON. Put that address in every node's
    /// `[ledger.evm] escrow`.
    Deploy {
        #[command(flatten)]
        chain: ChainArgs,
        /// The key that pays for the deployment (hex, created when absent).
        #[arg(long)]
        gas_key: PathBuf,
        /// The ERC-20 to escrow; one token base unit is one Agora micro-unit,
        /// so use a six-decimal token (USDC).
        #[arg(
            long,
            conflicts_with = "test_token",
            required_unless_present = "test_token"
        )]
        token: Option<Address>,
        /// Deploy an AgoraTestToken with an open faucet instead (test chains
        /// only: anyone can mint it).
        #[arg(long)]
        test_token: bool,
        /// After a lease's end, how long before anyone may close it and
        /// refund the rest, milliseconds.
        #[arg(long, default_value_t = 600_000)]
        close_grace_ms: u64,
    },
    /// The escrow's token, close grace and books, and what it holds.
    Status {
        #[command(flatten)]
        chain: ChainArgs,
        /// The escrow contract.
        #[arg(long)]
        escrow: Address,
        /// Also an account's balance (hex ed25519 key, as `agorad id` prints).
        #[arg(long)]
        account: Option<PublicKey>,
    },
    /// Pays an Agora account's balance out to a chain address, signed with
    /// the account's own key (a provider's earnings).
    Withdraw {
        #[command(flatten)]
        chain: ChainArgs,
        /// The escrow contract.
        #[arg(long)]
        escrow: Address,
        /// The node's Agora key file (DATA/key).
        #[arg(long)]
        agora_key: PathBuf,
        /// The key that pays the gas (the node's DATA/evm.key will do).
        #[arg(long)]
        gas_key: PathBuf,
        /// Where the tokens go.
        #[arg(long)]
        to: Address,
        /// How much, in AGR (decimal).
        #[arg(long)]
        amount: Amount,
    },
}

#[derive(Args)]
struct ChainArgs {
    /// JSON-RPC endpoint.
    #[arg(long, env = "AGORA_EVM_RPC")]
    rpc_url: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("agora-evm: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agora-evm: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Deploy {
            chain,
            gas_key,
            token,
            test_token: _,
            close_grace_ms,
        } => {
            let key = load_or_create_key(&gas_key)?;
            eprintln!("deploying from {} …", key.address());
            let deployment = deploy(&chain.rpc_url, key, token, close_grace_ms)
                .await
                .map_err(|e| e.to_string())?;
            let text = serde_json::to_string_pretty(&deployment).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
        Command::Status {
            chain,
            escrow,
            account,
        } => {
            let ledger = reader(&chain.rpc_url, escrow).await?;
            let supply = ledger.supply().await.map_err(|e| e.to_string())?;
            let held = ledger
                .escrow_token_balance()
                .await
                .map_err(|e| e.to_string())?;
            println!("escrow       {escrow}");
            println!("token        {}", ledger.token_address());
            println!("close grace  {} ms", ledger.close_grace_ms());
            println!(
                "deposited    {} AGR",
                Amount(u64::try_from(supply.deposited).unwrap_or(u64::MAX))
            );
            println!(
                "balances     {} AGR",
                Amount(u64::try_from(supply.balances).unwrap_or(u64::MAX))
            );
            println!(
                "escrowed     {} AGR",
                Amount(u64::try_from(supply.escrowed).unwrap_or(u64::MAX))
            );
            println!(
                "token held   {} AGR ({})",
                Amount(u64::try_from(held).unwrap_or(u64::MAX)),
                if held == supply.balances + supply.escrowed {
                    "matches the books"
                } else {
                    "DIFFERS from the books"
                }
            );
            if let Some(account) = account {
                let balance = ledger.balance(&account).await.map_err(|e| e.to_string())?;
                println!("{account}  {balance} AGR");
            }
            Ok(())
        }
        Command::Withdraw {
            chain,
            escrow,
            agora_key,
            gas_key,
            to,
            amount,
        } => {
            let owner = Keypair::load(&agora_key).map_err(|e| e.to_string())?;
            let key = load_or_create_key(&gas_key)?;
            let ledger = EvmLedger::connect(&EvmConfig::new(&chain.rpc_url, escrow), key)
                .await
                .map_err(|e| e.to_string())?;
            let paid = ledger
                .withdraw(&owner, to, amount)
                .await
                .map_err(|e| e.to_string())?;
            let left = ledger
                .balance(&owner.public())
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "withdrew {paid} AGR to {to}; {left} AGR left on {}",
                owner.public()
            );
            Ok(())
        }
    }
}

/// A client that only reads (a throwaway gas key it never spends).
async fn reader(rpc_url: &str, escrow: Address) -> Result<EvmLedger, String> {
    EvmLedger::connect(
        &EvmConfig::new(rpc_url, escrow),
        agora_contracts_evm::GasKey::random(),
    )
    .await
    .map_err(|e| e.to_string())
}
