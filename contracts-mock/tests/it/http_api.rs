//! The HTTP API: clear errors for bad input, which change nothing; state
//! survives a restart.

use agora_contracts_mock::HttpLedger;
use agora_protocol::ledger::conformance::lease;
use agora_protocol::{Amount, Keypair, LeaseId, Ledger, LedgerError};

use crate::support::{serve, sled_ledger};

async fn post(url: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = sled_ledger(dir.path());
    let addr = serve(ledger, Some(clock)).await;
    let base = format!("http://{addr}");
    let client = HttpLedger::new(&base).unwrap();
    let account = Keypair::from_seed(&[1; 32]).public();

    let (status, body) = post(
        &format!("{base}/v1/accounts/nothex/deposit"),
        r#"{"amount":5}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("not a 64-hex-digit public key"), "{body}");

    let (status, body) = post(
        &format!("{base}/v1/accounts/{account}/deposit"),
        r#"{"amount":"five"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("request body"), "{body}");

    // A struct's fields as an array are not a request, and change nothing.
    for array in ["[5]", "[\"5\"]", "5", "\"amount\"", "null"] {
        let (status, body) = post(&format!("{base}/v1/accounts/{account}/deposit"), array).await;
        assert_eq!(status, 400, "{array}: {body}");
        assert!(body.contains("request body"), "{array}: {body}");
    }
    assert_eq!(client.balance(&account).await.unwrap(), Amount::ZERO);
    let (status, body) = post(&format!("{base}/v1/escrow"), r#"["00"]"#).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = post(&format!("{base}/v1/escrow"), r#"{"lease":"zz"}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("lease: not hex"), "{body}");

    let (status, body) = post(&format!("{base}/v1/settle"), r#"{"receipt":"0a0b"}"#).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = post(
        &format!("{base}/v1/accounts/{account}/deposit"),
        &"x".repeat(100_000),
    )
    .await;
    assert_eq!(status, 413, "{body}");

    assert!(matches!(
        client.deposit(&account, Amount::ZERO).await,
        Err(LedgerError::BadRequest(_))
    ));
    let unknown = LeaseId([9; 32]);
    let response = reqwest::get(format!("{base}/v1/escrow/{unknown}"))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body = response.text().await.unwrap();
    assert!(body.contains(r#""error":"unknown_lease""#), "{body}");
    let (status, body) = post(&format!("{base}/v1/escrow/{unknown}/close"), "").await;
    assert_eq!(status, 404, "{body}");
    assert!(matches!(
        client.close(&unknown).await,
        Err(LedgerError::UnknownLease(_))
    ));
    assert_eq!(client.escrow(&unknown).await.unwrap(), None);

    let supply = client.supply().await.unwrap();
    assert_eq!(
        (supply.deposited, supply.balances, supply.escrowed),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn time_control_needs_a_manual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _clock) = sled_ledger(dir.path());
    let addr = serve(ledger, None).await;
    let (status, _) = post(&format!("http://{addr}/v1/admin/advance"), r#"{"ms":1000}"#).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_unreachable_chain_is_a_transient_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = HttpLedger::new(&format!("http://{addr}")).unwrap();
    let error = client.now().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
}

#[tokio::test]
async fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let requester = Keypair::from_seed(&[1; 32]);
    let provider = Keypair::from_seed(&[2; 32]);
    let id = {
        let (ledger, _clock) = sled_ledger(dir.path());
        ledger
            .deposit(&requester.public(), Amount(5_000_000))
            .await
            .unwrap();
        let now = ledger.now().await.unwrap();
        let lease = lease(&requester, &provider, Amount(3_600_000), 1, 1000, now, 1);
        ledger.lock_escrow(lease.cosigned()).await.unwrap();
        lease.id()
    };
    // sled releases its lock when the writer thread drops the Db.
    let mut reopened = None;
    for _ in 0..100 {
        match agora_contracts_mock::SledLedger::open(
            dir.path(),
            crate::support::config(),
            std::sync::Arc::new(agora_contracts_mock::ManualClock::new(
                agora_protocol::Timestamp(0),
            )),
        ) {
            Ok(ledger) => {
                reopened = Some(ledger);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let ledger = reopened.expect("reopen");
    assert_eq!(
        ledger.balance(&requester.public()).await.unwrap(),
        Amount(4_000_000)
    );
    assert_eq!(
        ledger.escrow(&id).await.unwrap().unwrap().escrow,
        Amount(1_000_000)
    );
    assert!(ledger.supply().await.unwrap().conserved());
}

#[test]
fn the_binary_serves_only_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_agora-mock-chain"))
        .args(["--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
