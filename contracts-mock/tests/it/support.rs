//! Ledgers for tests: on a temp dir, in-process over HTTP, or as the real
//! binary in its own process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use agora_contracts_mock::{HttpLedger, ManualClock, SledConfig, SledLedger, server};
use agora_protocol::Timestamp;

/// The close grace every test ledger uses.
pub const CLOSE_GRACE_MS: u64 = 30_000;

pub fn config() -> SledConfig {
    SledConfig {
        close_grace_ms: CLOSE_GRACE_MS,
        ..SledConfig::default()
    }
}

/// A sled ledger on `dir` with a manual clock at a fixed start.
pub fn sled_ledger(dir: &Path) -> (SledLedger, ManualClock) {
    let clock = ManualClock::new(Timestamp(1_700_000_000_000));
    let ledger = SledLedger::open(dir, config(), Arc::new(clock.clone())).unwrap();
    (ledger, clock)
}

/// Serves `ledger` on 127.0.0.1:0 in this process; returns its address.
pub async fn serve(ledger: SledLedger, clock: Option<ManualClock>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, server::router(Arc::new(ledger), clock))
            .await
            .unwrap();
    });
    addr
}

/// The real `agora-mock-chain` binary, in its own process.
pub struct ChainProcess {
    pub child: Child,
    pub client: HttpLedger,
}

impl ChainProcess {
    /// Starts the binary on a free loopback port with `data` as its store.
    pub fn start(data: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agora-mock-chain"))
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(["--close-grace-ms", &CLOSE_GRACE_MS.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let client = HttpLedger::new(&format!("http://{addr}")).unwrap();
        Self { child, client }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl ChainProcess {
    /// SIGTERM: a graceful shutdown; returns how the process ended.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Drop for ChainProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
