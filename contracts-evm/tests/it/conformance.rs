//! The ledger conformance suite on the EVM backend: every scenario and
//! random operation sequences, each on a freshly deployed escrow on one
//! anvil whose clock only the harness moves.

use std::sync::Mutex;

use agora_contracts_evm::anvil::{Anvil, AnvilOptions};
use agora_contracts_evm::{EvmConfig, EvmLedger};
use agora_protocol::ledger::conformance::{Harness, run_all};
use async_trait::async_trait;

use crate::support::{CLOSE_GRACE_MS, anvil_or_skip, deployed, ledger, runtime};

/// Random sequences; each is up to 40 operations.
const CASES: u32 = 24;

struct EvmHarness {
    anvil: Anvil,
    /// Chain time in milliseconds as the harness moved it (anvil's blocks
    /// carry whole seconds), and the config of the latest escrow.
    clock_ms: Mutex<u64>,
    config: Mutex<Option<EvmConfig>>,
}

#[async_trait]
impl Harness for EvmHarness {
    type Ledger = EvmLedger;

    async fn fresh(&self) -> EvmLedger {
        let (_, config) = deployed(&self.anvil).await;
        *self.config.lock().unwrap() = Some(config.clone());
        ledger(&self.anvil, &config).await
    }

    async fn advance(&self, _ledger: &EvmLedger, ms: u64) {
        let secs = {
            let mut clock = self.clock_ms.lock().unwrap();
            *clock += ms;
            *clock / 1000
        };
        if secs > self.anvil.time().await.unwrap() {
            self.anvil.set_time(secs).await.unwrap();
        }
    }

    fn close_grace_ms(&self) -> u64 {
        CLOSE_GRACE_MS
    }

    /// A new client (new process state, new gas key) on the same chain:
    /// what was acknowledged is on the chain, not in the client.
    async fn restart(&self, ledger: EvmLedger) -> EvmLedger {
        drop(ledger);
        let config = self.config.lock().unwrap().clone().unwrap();
        crate::support::ledger(&self.anvil, &config).await
    }
}

#[test]
fn evm_ledger_conforms() {
    let runtime = runtime();
    let Some(anvil) = anvil_or_skip(&AnvilOptions::default()) else {
        return;
    };
    let clock_ms = runtime.block_on(async {
        anvil.freeze_time().await.unwrap();
        anvil.time().await.unwrap() * 1000
    });
    let harness = EvmHarness {
        anvil,
        clock_ms: Mutex::new(clock_ms),
        config: Mutex::new(None),
    };
    run_all(&harness, &runtime, CASES);
}
