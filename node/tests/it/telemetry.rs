//! `GET /v1/provider/telemetry` through the client: a provider serves a
//! ring of samples per GPU (its simulated GPUs marked, without NVML
//! counters); a requester-only node has none (404); without the token, 401.

use agora_client::api::Role;
use agora_client::http::{ClientError, NodeClient};
use agora_node::api::load_or_create_token;
use reqwest::StatusCode;

use crate::support::{PROVIDER_CONFIG, eventually, ledger, node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_serves_gpu_telemetry_and_a_requester_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let provider_dir = dir.path().join("provider");
    let provider = node(
        &provider_dir,
        Role::Provider,
        PROVIDER_CONFIG,
        &ledger,
        vec![],
    )
    .await;
    let requester_dir = dir.path().join("requester");
    let requester = node(&requester_dir, Role::Requester, "", &ledger, vec![]).await;

    let token = load_or_create_token(&provider_dir).unwrap();
    let client = NodeClient::new(&provider.ready.api_url, Some(&token)).unwrap();
    let gpus = eventually(30, "a sample of every GPU", || async {
        let gpus = client.provider_telemetry().await.ok()?;
        gpus.iter().all(|g| !g.samples.is_empty()).then_some(gpus)
    })
    .await;
    // PROVIDER_CONFIG declares two simulated H100s.
    assert_eq!(gpus.len(), 2, "{gpus:?}");
    for (i, gpu) in gpus.iter().enumerate() {
        assert_eq!(gpu.index, i as u32);
        assert!(gpu.simulated);
        assert_eq!((gpu.model.as_str(), gpu.vram_mib), ("H100", 80 * 1024));
        assert_eq!(gpu.error, None);
        let sample = gpu.samples.last().unwrap();
        assert!(!sample.leased, "no job runs");
        assert_eq!(sample.utilization_pct, None);
        assert_eq!(sample.temperature_c, None);
    }

    let anonymous = NodeClient::new(&provider.ready.api_url, None).unwrap();
    let err = anonymous.provider_telemetry().await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");

    let token = load_or_create_token(&requester_dir).unwrap();
    let client = NodeClient::new(&requester.ready.api_url, Some(&token)).unwrap();
    match client.provider_telemetry().await.unwrap_err() {
        ClientError::Api { status, error, .. } => {
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(error.contains("requester"), "{error}");
        }
        other => panic!("expected a 404, got {other}"),
    }

    requester.shutdown().await;
    provider.shutdown().await;
}
