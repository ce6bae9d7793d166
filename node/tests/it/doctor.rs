//! `agorad doctor --json`, the built binary, against a data dir in a
//! tempdir and an in-test mock chain on loopback.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use agora_contracts_mock::{SledConfig, SledLedger, SystemClock};
use serde_json::Value;

/// Serves a sled ledger on 127.0.0.1 port 0; returns its base URL.
async fn chain(dir: &Path) -> String {
    let ledger = SledLedger::open(dir, SledConfig::default(), Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = agora_contracts_mock::server::router(Arc::new(ledger), None);
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Runs `agorad doctor --json` on `data`; the exit status and the checks.
async fn doctor(data: &Path, ledger: &str) -> (i32, Vec<Value>) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_agorad"))
        .args(["--data"])
        .arg(data)
        .args(["doctor", "--json", "--ledger", ledger])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"])
        .env_remove("AGORAD_DATA")
        .env_remove("AGORA_LEDGER")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let checks: Vec<Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {stdout}"));
    (out.status.code().unwrap(), checks)
}

fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
}

#[tokio::test]
async fn doctor_json_reaches_the_ledger_and_flags_an_open_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = chain(&dir.path().join("chain")).await;
    let data = dir.path().join("node");

    let (status, checks) = doctor(&data, &url).await;
    for c in &checks {
        for field in ["check", "severity", "found", "fix"] {
            assert!(c.get(field).is_some(), "{field} missing in {c}");
        }
    }
    assert_eq!(find(&checks, "ledger")["severity"], "ok", "{checks:?}");
    let errors = checks.iter().any(|c| c["severity"] == "error");
    assert_eq!(status, i32::from(errors), "{checks:?}");

    // A key others can read: an error, exit status 1.
    agora_node::identity::load_or_create(&data).unwrap();
    let key = agora_node::identity::key_path(&data);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, checks) = doctor(&data, &url).await;
    let check = find(&checks, "key file");
    assert_eq!(check["severity"], "error");
    assert!(check["fix"].as_str().unwrap().starts_with("chmod 600"));
    assert_eq!(status, 1);
}
