//! A data disk below `node.min_free_disk_mib`: the node takes no new work,
//! with the reason, and answers everything else. The floor here is more
//! than any disk holds, so this machine's disk is "full" for these nodes.

use agora_client::api::{Role, SubmitJob};
use agora_client::http::{ClientError, NodeClient};
use agora_node::api::load_or_create_token;
use agora_protocol::Amount;
use reqwest::StatusCode;

use crate::support::{PROVIDER_CONFIG, eventually, ledger, node};

const FULL: &str = "[node]\nmin_free_disk_mib = 1073741824\n";

fn submit() -> SubmitJob {
    let spec = agora_client::spec::parse(
        "name = \"hello\"\nruntime = \"process\"\ncommand = [\"echo\", \"hi\"]\n\n\
         [resources]\ngpus = 1\n\n[constraints]\nallow_simulated = true\n\n\
         [market]\nmax_price_per_gpu_hour = \"3\"\nmax_duration_secs = 60\n",
        std::path::Path::new("job.toml"),
    )
    .unwrap();
    SubmitJob { spec, offer: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_is_below_its_floor_refuses_new_work_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let requester_dir = dir.path().join("requester");
    let requester = node(&requester_dir, Role::Requester, FULL, &ledger, vec![]).await;
    let r = NodeClient::new(
        &requester.ready.api_url,
        Some(&load_or_create_token(&requester_dir).unwrap()),
    )
    .unwrap();
    r.deposit(Amount(10_000_000)).await.unwrap();
    match r.submit_job(&submit()).await {
        Err(ClientError::Api { status, error, .. }) => {
            assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
            assert!(error.contains("min_free_disk_mib"), "{error}");
            assert!(error.contains("running work continues"), "{error}");
        }
        other => panic!("a submission on a full disk: {other:?}"),
    }
    // Nothing was taken in; the rest of the API answers.
    assert!(r.jobs().await.unwrap().is_empty());
    assert_eq!(r.balance().await.unwrap().balance, Amount(10_000_000));

    // A provider on such a disk offers nothing and says why.
    let provider_dir = dir.path().join("provider");
    let config = format!("{FULL}{}", PROVIDER_CONFIG.replace("[node]\n", ""));
    let provider = node(&provider_dir, Role::Provider, &config, &ledger, vec![]).await;
    let p = NodeClient::new(
        &provider.ready.api_url,
        Some(&load_or_create_token(&provider_dir).unwrap()),
    )
    .unwrap();
    let status = eventually(10, "the provider's status", || async {
        p.provider_status().await.ok()
    })
    .await;
    let reason = status.runtime_unavailable.unwrap_or_default();
    assert!(reason.contains("min_free_disk_mib"), "{reason}");
    assert!(status.offers.is_empty(), "{:#?}", status.offers);
    provider.shutdown().await;
    requester.shutdown().await;
}
