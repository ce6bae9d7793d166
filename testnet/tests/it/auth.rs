//! The API answers 401 without the right bearer token (429 once such
//! calls come faster than `api.unauthenticated_requests_per_sec`), and
//! such a call changes nothing.

use agora_protocol::Amount;
use reqwest::StatusCode;

use crate::support::{spec, testnet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_without_the_token_get_401_and_change_nothing() {
    let (_dir, net) = testnet(1, 0).await;
    let node = net.node("provider-0").unwrap().clone();
    let client = net.client("provider-0").unwrap();
    let before = client.balance().await.unwrap().balance;
    let jobs_before = client.jobs().await.unwrap().len();

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |path: &str| format!("{}{path}", node.api_url);
    let deposit = serde_json::json!({ "amount": 5_000_000 });
    let job = serde_json::json!({ "spec": spec("unauthorised") });
    let mut unauthorized = 0;
    for token in [None, Some("wrong"), Some("")] {
        let calls = [
            http.get(url("/v1/node")),
            http.get(url("/v1/offers?q=")),
            http.get(url("/v1/jobs")),
            http.get(url("/v1/provider")),
            http.get(url("/v1/ledger/balance")),
            http.post(url("/v1/ledger/deposit")).json(&deposit),
            http.post(url("/v1/jobs")).json(&job),
        ];
        for call in calls {
            let call = match token {
                Some(token) => call.bearer_auth(token),
                None => call,
            };
            let request = call.build().unwrap();
            let shown = format!("{} {} (token {token:?})", request.method(), request.url());
            let answer = http.execute(request).await.unwrap();
            match answer.status() {
                StatusCode::UNAUTHORIZED => unauthorized += 1,
                // 21 guesses in a burst: past the per-address rate (20/s).
                StatusCode::TOO_MANY_REQUESTS => {
                    let text = answer.text().await.unwrap();
                    assert!(
                        text.contains("without a valid API token"),
                        "{shown}: {text}"
                    );
                }
                other => panic!("{shown}: {other}"),
            }
        }
    }

    assert!(
        unauthorized >= 20,
        "the first 20 in a burst are answered 401: {unauthorized}"
    );
    assert_eq!(
        client.balance().await.unwrap().balance,
        before,
        "the deposits without a token moved money"
    );
    assert_eq!(
        client.jobs().await.unwrap().len(),
        jobs_before,
        "a job was accepted without a token"
    );

    // With the token the same deposit goes through.
    let after = client.deposit(Amount(5_000_000)).await.unwrap().balance;
    assert_eq!(after.0, before.0 + 5_000_000);
}
