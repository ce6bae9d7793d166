//! `agorad`: the Agora node.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "agorad", version, about = "The Agora node")]
struct Cli {
    /// Data directory (key, state).
    #[arg(long, env = "AGORAD_DATA", default_value = ".agorad")]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print this node's peer id and ledger account, creating its key on first run.
    Id,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Id => {
            let key = agora_node::identity::load_or_create(&cli.data)?;
            println!("peer id: {}", key.public().peer_id());
            println!("account: {}", key.public());
            println!(
                "key file: {}",
                agora_node::identity::key_path(&cli.data).display()
            );
        }
    }
    Ok(())
}
