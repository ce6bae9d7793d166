//! `NodeClient` against the fake node: the token, the error mapping, the
//! wire shapes.

use agora_client::http::{ClientError, NodeClient};
use agora_protocol::Amount;
use axum::http::StatusCode;

use crate::fake_node::{FakeNode, TOKEN, key};

#[tokio::test]
async fn the_token_is_sent_and_accepted() {
    let (node, url) = FakeNode::start().await;
    let client = NodeClient::new(&url, Some(TOKEN)).unwrap();
    let info = client.node_info().await.unwrap();
    assert_eq!(info.account, key(9));
    assert_eq!(node.authorized_requests(), 1);
}

#[tokio::test]
async fn a_wrong_token_is_a_clear_401() {
    let (node, url) = FakeNode::start().await;
    let client = NodeClient::new(&url, Some("not-the-token")).unwrap();
    let err = client.node_info().await.unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Unauthorized {
                token_sent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    let text = err.to_string();
    assert!(text.contains("refused the API token"), "{text}");
    assert!(
        text.contains("--token") && text.contains("AGORA_TOKEN"),
        "{text}"
    );
    assert_eq!(node.authorized_requests(), 0);
}

#[tokio::test]
async fn no_token_says_none_was_given() {
    let (_node, url) = FakeNode::start().await;
    let err = NodeClient::new(&url, None)
        .unwrap()
        .balance()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Unauthorized {
                token_sent: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("none was given"), "{err}");
}

#[tokio::test]
async fn a_400_carries_the_nodes_message_and_place() {
    let (_node, url) = FakeNode::start().await;
    let client = NodeClient::new(&url, Some(TOKEN)).unwrap();
    let err = client.search_offers("gpux=H100", None).await.unwrap_err();
    match &err {
        ClientError::Api { status, error, at } => {
            assert_eq!(*status, StatusCode::BAD_REQUEST);
            assert_eq!(error, "unknown column 'gpux'");
            assert_eq!(at.as_deref(), Some("gpux"));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("unknown column 'gpux'") && text.contains("at gpux"),
        "{text}"
    );
}

#[tokio::test]
async fn a_404_is_an_api_error_too() {
    let (_node, url) = FakeNode::start().await;
    let client = NodeClient::new(&url, Some(TOKEN)).unwrap();
    let err = client.provider_status().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert!(err.to_string().contains("not a provider"), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable_and_names_the_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}");
    let err = NodeClient::new(&url, Some(TOKEN))
        .unwrap()
        .node_info()
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(
        text.contains("--node") && text.contains("AGORA_NODE"),
        "{text}"
    );
}

#[tokio::test]
async fn the_query_arrives_whole_with_its_limit() {
    let (_node, url) = FakeNode::start().await;
    let client = NodeClient::new(&url, Some(TOKEN)).unwrap();
    let page = client
        .search_offers("gpu=H100 region=EU price<=3 & more", Some(5))
        .await
        .unwrap();
    assert_eq!(page.query, "gpu=H100 region=EU price<=3 & more limit=5");
}

#[tokio::test]
async fn deposit_posts_base_units() {
    let (node, url) = FakeNode::start().await;
    let client = NodeClient::new(&url, Some(TOKEN)).unwrap();
    let balance = client.deposit(Amount(2_500_000)).await.unwrap();
    assert_eq!(balance.balance, Amount(2_500_000));
    assert_eq!(node.deposits(), [Amount(2_500_000)]);
}

#[tokio::test]
async fn an_unknown_job_is_a_404_with_its_place() {
    let (_node, url) = FakeNode::start().await;
    let client = NodeClient::new(&url, Some(TOKEN)).unwrap();
    let err = client.job("nope").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { at: Some(at), .. } if at == "id"),
        "{err:?}"
    );
}
