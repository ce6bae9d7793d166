//! The ledger conformance suite on both backends.

use std::sync::{Arc, Mutex};

use agora_contracts_mock::{HttpLedger, ManualClock, SledLedger};
use agora_protocol::ledger::conformance::{Harness, run_all};
use async_trait::async_trait;
use tempfile::TempDir;

use crate::support::{CLOSE_GRACE_MS, config, serve, sled_ledger};

/// Random sequences per backend; each is up to 40 operations.
const CASES: u32 = 48;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Sled ledgers on temp dirs; the dirs live as long as the harness. The
/// suite uses one ledger at a time, so `advance` moves the clock of the
/// most recent one.
#[derive(Default)]
struct SledHarness {
    dirs: Mutex<Vec<TempDir>>,
    clock: Mutex<Option<ManualClock>>,
}

#[async_trait]
impl Harness for SledHarness {
    type Ledger = SledLedger;

    async fn fresh(&self) -> SledLedger {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, clock) = sled_ledger(dir.path());
        self.dirs.lock().unwrap().push(dir);
        *self.clock.lock().unwrap() = Some(clock);
        ledger
    }

    async fn advance(&self, _ledger: &SledLedger, ms: u64) {
        if let Some(clock) = self.clock.lock().unwrap().as_ref() {
            clock.advance(ms);
        }
    }

    fn close_grace_ms(&self) -> u64 {
        CLOSE_GRACE_MS
    }

    async fn restart(&self, ledger: SledLedger) -> SledLedger {
        ledger.shutdown().await.unwrap();
        let path = self.dirs.lock().unwrap().last().unwrap().path().to_owned();
        let clock = self.clock.lock().unwrap().clone().unwrap();
        SledLedger::open(&path, config(), Arc::new(clock)).unwrap()
    }
}

/// Sled ledgers served over HTTP in this process, reached by HttpLedger.
#[derive(Default)]
struct HttpHarness {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl Harness for HttpHarness {
    type Ledger = HttpLedger;

    async fn fresh(&self) -> HttpLedger {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, clock) = sled_ledger(dir.path());
        self.dirs.lock().unwrap().push(dir);
        let addr = serve(ledger, Some(clock)).await;
        HttpLedger::new(&format!("http://{addr}")).unwrap()
    }

    async fn advance(&self, ledger: &HttpLedger, ms: u64) {
        ledger.advance_clock(ms).await.unwrap();
    }

    fn close_grace_ms(&self) -> u64 {
        CLOSE_GRACE_MS
    }
}

#[test]
fn sled_ledger_conforms() {
    run_all(&SledHarness::default(), &runtime(), CASES);
}

#[test]
fn http_ledger_conforms() {
    run_all(&HttpHarness::default(), &runtime(), CASES);
}
