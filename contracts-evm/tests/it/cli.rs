//! `agora-evm` as an operator runs it: deploy, status, withdraw.

use std::process::Command;

use agora_contracts_evm::anvil::AnvilOptions;
use agora_contracts_evm::{Deployment, EvmConfig};
use agora_protocol::{Amount, Keypair, Ledger};
use alloy::primitives::U256;

use crate::support::{anvil_or_skip, ledger, runtime};

fn agora_evm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agora-evm"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_operator_deploys_reads_the_books_and_withdraws() {
    let runtime = runtime();
    let Some(anvil) = anvil_or_skip(&AnvilOptions::default()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gas = dir.path().join("gas.key");
    let gas_text = gas.to_str().unwrap();
    // The gas key is made on first use; unfunded, the deployment is refused
    // with the chain's reason.
    let (ok, _, err) = agora_evm(&[
        "deploy",
        "--rpc-url",
        anvil.url(),
        "--gas-key",
        gas_text,
        "--test-token",
    ]);
    assert!(!ok && err.contains("agora-evm:"), "{err}");
    let key = agora_contracts_evm::ledger::load_or_create_key(&gas).unwrap();
    runtime
        .block_on(anvil.fund(key.address(), U256::from(10u128.pow(21))))
        .unwrap();
    // Neither a token nor --test-token: a usage error naming the flag.
    let (ok, _, err) = agora_evm(&["deploy", "--rpc-url", anvil.url(), "--gas-key", gas_text]);
    assert!(!ok && err.contains("--token"), "{err}");
    let (ok, out, err) = agora_evm(&[
        "deploy",
        "--rpc-url",
        anvil.url(),
        "--gas-key",
        gas_text,
        "--test-token",
        "--close-grace-ms",
        "5000",
    ]);
    assert!(ok, "{err}");
    let deployment: Deployment = serde_json::from_str(&out).unwrap();
    let escrow = deployment.escrow.to_string();

    // A provider's earnings, then its withdrawal with its own Agora key.
    let agora_key = dir.path().join("key");
    let owner = Keypair::load_or_generate(&agora_key).unwrap();
    let mut config = EvmConfig::new(anvil.url(), deployment.escrow);
    config.faucet = true;
    config.poll_ms = 10;
    let books = runtime.block_on(ledger(&anvil, &config));
    runtime
        .block_on(books.deposit(&owner.public(), Amount(2_500_000)))
        .unwrap();
    let account = owner.public().to_string();
    let (ok, out, err) = agora_evm(&[
        "status",
        "--rpc-url",
        anvil.url(),
        "--escrow",
        &escrow,
        "--account",
        &account,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("close grace  5000 ms"), "{out}");
    assert!(out.contains("matches the books"), "{out}");
    assert!(out.contains(&format!("{account}  2.5 AGR")), "{out}");
    let to = "0x00000000000000000000000000000000000000aa";
    let agora_key_text = agora_key.to_str().unwrap();
    let withdraw = |amount: &str| {
        agora_evm(&[
            "withdraw",
            "--rpc-url",
            anvil.url(),
            "--escrow",
            &escrow,
            "--agora-key",
            agora_key_text,
            "--gas-key",
            gas_text,
            "--to",
            to,
            "--amount",
            amount,
        ])
    };
    let (ok, out, err) = withdraw("1.5");
    assert!(ok, "{err}");
    assert!(
        out.contains("withdrew 1.5 AGR") && out.contains("1 AGR left"),
        "{out}"
    );
    assert_eq!(
        runtime.block_on(books.balance(&owner.public())).unwrap(),
        Amount(1_000_000)
    );
    // More than is left: refused with the ledger's reason.
    let (ok, _, err) = withdraw("2");
    assert!(!ok && err.contains("has 1 but"), "{err}");
}
