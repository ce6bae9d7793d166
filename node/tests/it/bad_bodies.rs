//! Bad request bodies change nothing: JSON that is not an object of named
//! fields (serde would read a struct from an array of its fields) is a 400
//! at `body`, and a job the provider would refuse (paths, base64, the
//! environment) is a 400 at its spec key before anything is signed.

use agora_client::api::Role;
use agora_node::api::load_or_create_token;

use crate::support::{ledger, node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_and_scalars_are_not_request_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let data = dir.path().join("requester");
    let requester = node(&data, Role::Requester, "", &ledger, vec![]).await;
    let token = load_or_create_token(&data).unwrap();
    let base = requester.ready.api_url.trim_end_matches('/').to_string();
    let http = reqwest::Client::new();
    let post = |path: &str, body: &'static str| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["[5000000]", "[\"5\"]", "5", "null"] {
        let response = post("/v1/ledger/deposit", body).await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{body}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["at"], "body", "{body}: {error}");
    }
    let response = post("/v1/jobs", "[{\"command\":[\"true\"]}, null]")
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    // Nothing moved, nothing was submitted; an object still works.
    let client = agora_client::http::NodeClient::new(&base, Some(&token)).unwrap();
    assert_eq!(client.balance().await.unwrap().balance.0, 0);
    assert!(client.jobs().await.unwrap().is_empty());
    let response = post("/v1/ledger/deposit", "{\"amount\":5000000}")
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(client.balance().await.unwrap().balance.0, 5_000_000);
    // A job the provider would refuse is refused here, with its key,
    // before anything is signed or escrowed.
    let job = |inputs: &str, env: &str| {
        format!(
            r#"{{"spec":{{"command":["true"],"env":{env},"inputs":{inputs},
               "resources":{{"gpus":1}},
               "market":{{"max_price_per_gpu_hour":"1","max_duration_secs":60}}}}}}"#
        )
    };
    for (body, at) in [
        (
            job(r#"[{"path":"/etc/passwd","data_b64":""}]"#, "{}"),
            "inputs",
        ),
        (job(r#"[{"path":"a/../b","data_b64":""}]"#, "{}"), "inputs"),
        (
            job(r#"[{"path":"x","data_b64":"%%%"}]"#, "{}"),
            "inputs[0].data_b64",
        ),
        (job("[]", r#"{"A=B":"1"}"#), "env"),
    ] {
        let response = http
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(&token)
            .json(&serde_json::from_str::<serde_json::Value>(&body).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{body}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["at"], at, "{body}: {error}");
    }
    assert!(client.jobs().await.unwrap().is_empty());
    requester.shutdown().await;
}
