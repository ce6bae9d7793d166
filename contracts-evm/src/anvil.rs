//! A local anvil (Foundry's EVM node) as a child process, for the tests
//! and the testnet. It listens on 127.0.0.1 at a port the kernel picks.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder, RootProvider};

/// Where anvil is looked for, in order: `$AGORA_ANVIL`; the binary that
/// `npm ci --prefix contracts-evm` installs; `anvil` on `PATH`.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AGORA_ANVIL") {
        return Some(PathBuf::from(path));
    }
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if bundled.is_file() {
        return Some(bundled);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("anvil"))
        .find(|candidate| candidate.is_file())
}

/// Sets `address`'s gas balance on the anvil at `url` (anvil's own
/// `anvil_setBalance`: test chains only).
pub async fn set_balance(url: &str, address: Address, wei: U256) -> Result<(), String> {
    let parsed = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let provider: RootProvider = ProviderBuilder::default().connect_http(parsed);
    provider
        .raw_request::<_, serde_json::Value>("anvil_setBalance".into(), (address, wei))
        .await
        .map(|_| ())
        .map_err(|e| format!("anvil_setBalance at {url}: {e}"))
}

/// How to start it.
#[derive(Debug, Clone, Default)]
pub struct AnvilOptions {
    /// Mine a block every this many seconds as well as on each
    /// transaction, so chain time moves while nothing is sent.
    pub block_time_secs: Option<u64>,
    /// Keep the chain in this file across restarts (`--state`).
    pub state: Option<PathBuf>,
}

/// A running anvil; killed when dropped.
pub struct Anvil {
    child: Child,
    url: String,
    provider: RootProvider,
}

impl std::fmt::Debug for Anvil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anvil").field("url", &self.url).finish()
    }
}

impl Anvil {
    /// Starts anvil and waits until it listens.
    pub fn start(options: &AnvilOptions) -> Result<Self, String> {
        let binary = binary()
            .ok_or("anvil not found: run `npm ci --prefix contracts-evm` (or set AGORA_ANVIL)")?;
        let mut command = Command::new(&binary);
        command.args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--chain-id",
            "31337",
            // Two ed25519 verifications per settlement: room for many a block.
            "--gas-limit",
            "300000000",
            "--accounts",
            "1",
        ]);
        if let Some(secs) = options.block_time_secs {
            command.args(["--block-time", &secs.to_string()]);
        }
        if let Some(state) = &options.state {
            command.arg("--state").arg(state);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("anvil has no stdout")?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(1);
        // Reads until the listening line, then drains the rest so anvil
        // never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && let Some(addr) = line.strip_prefix("Listening on ") {
                    sent = tx.send(addr.trim().to_string()).is_ok();
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not say where it listens within 30 s",
                    binary.display()
                ));
            }
        };
        let url = format!("http://{addr}");
        let parsed = url.parse().map_err(|e| format!("anvil's URL {url}: {e}"))?;
        let provider = ProviderBuilder::default().connect_http(parsed);
        Ok(Self {
            child,
            url,
            provider,
        })
    }

    /// Its JSON-RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets `address`'s gas balance (anvil only).
    pub async fn fund(&self, address: Address, wei: U256) -> Result<(), String> {
        self.provider
            .raw_request::<_, serde_json::Value>("anvil_setBalance".into(), (address, wei))
            .await
            .map(|_| ())
            .map_err(|e| format!("anvil_setBalance: {e}"))
    }

    /// Stops time: blocks then carry the previous block's timestamp until
    /// [`Self::set_time`] moves it, so a test's calls and the transactions
    /// after them see the same chain time.
    pub async fn freeze_time(&self) -> Result<(), String> {
        self.provider
            .raw_request::<_, serde_json::Value>("anvil_setBlockTimestampInterval".into(), (0u64,))
            .await
            .map(|_| ())
            .map_err(|e| format!("anvil_setBlockTimestampInterval: {e}"))
    }

    /// Mines a block at `secs` (not before the latest block's time).
    pub async fn set_time(&self, secs: u64) -> Result<(), String> {
        self.provider
            .raw_request::<_, serde_json::Value>("evm_setNextBlockTimestamp".into(), (secs,))
            .await
            .map_err(|e| format!("evm_setNextBlockTimestamp: {e}"))?;
        self.provider
            .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
            .await
            .map(|_| ())
            .map_err(|e| format!("evm_mine: {e}"))
    }

    /// The latest block's timestamp, seconds.
    pub async fn time(&self) -> Result<u64, String> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| format!("latest block: {e}"))?
            .ok_or("no latest block")?;
        Ok(block.header.timestamp)
    }

    /// Stops it (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}
