//! The API under hostile local clients: thousands of idle and half-sent
//! connections, a flood of requests without the token, a body that never
//! finishes. The token holder keeps being answered, the node's descriptors
//! stay bounded, and every refusal is visible.

use std::time::{Duration, Instant};

use agora_client::api::Role;
use agora_node::api::load_or_create_token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{ledger, node};

const LIMITS: &str = r#"
[api]
max_connections = 200
max_unauthenticated_connections = 50
header_timeout_ms = 1000
unauthenticated_timeout_ms = 3000
body_timeout_ms = 500
unauthenticated_requests_per_sec = 5
"#;

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(Iterator::count)
        .unwrap_or(0)
}

/// This process's soft limit on open files.
fn file_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024)
}

/// Reads what the server sends until it closes, for at most `wait`.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

async fn metric(base: &str, token: &str, series: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_holder_is_answered_while_thousands_of_connections_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let data = dir.path().join("requester");
    let requester = node(&data, Role::Requester, LIMITS, &ledger, vec![]).await;
    let token = load_or_create_token(&data).unwrap();
    let base = requester.ready.api_url.trim_end_matches('/').to_string();
    let addr = base.trim_start_matches("http://").to_string();

    // Thousands, or as many as this process may open (each is two
    // descriptors here: the client's end and, while admitted, the node's).
    let held = 3000.min(file_limit().saturating_sub(400) / 2);
    assert!(
        held > 400,
        "the open-file limit ({}) is too low for this test",
        file_limit()
    );
    let before = open_files();
    let mut conns = Vec::with_capacity(held);
    for i in 0..held {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            // Half a request head, never finished.
            let _ = stream
                .write_all(b"GET /v1/node HTTP/1.1\r\nHost: x\r\n")
                .await;
        }
        conns.push(stream);
    }
    // Meanwhile the node holds no more than its cap (plus the few it is
    // refusing right now).
    let node_side = open_files().saturating_sub(before + held);
    assert!(
        node_side <= 200 + 16,
        "the node holds {node_side} descriptors for {held} connections"
    );

    // The token holder is answered every time, on new connections.
    for _ in 0..20 {
        let client = agora_client::http::NodeClient::new(&base, Some(&token)).unwrap();
        let info = tokio::time::timeout(Duration::from_secs(10), client.node_info()).await;
        assert!(
            matches!(info, Ok(Ok(_))),
            "the token holder was not answered: {info:?}"
        );
    }

    // Beyond 50 unauthenticated connections each new one evicted the
    // oldest: the first ones are closed already, the newest still open.
    for stream in conns.iter_mut().take(100) {
        let closed = read_until_closed(stream, Duration::from_millis(500)).await;
        assert!(
            closed.is_some(),
            "an old unauthenticated connection was kept"
        );
    }
    // And every connection still held is closed by the node once its time
    // is up (half a head past the header timeout, or never authenticated).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for stream in conns.iter_mut().rev().take(50) {
        let closed = read_until_closed(stream, Duration::from_secs(2)).await;
        assert!(
            closed.is_some(),
            "a hostile connection was still open after its timeouts"
        );
    }
    drop(conns);

    // Authenticated connections count against the cap too: the 201st is
    // told why and closed.
    let request =
        format!("GET /v1/node HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..220 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("HTTP/1.1 503") {
            assert!(text.contains("too many API connections"), "{text}");
            refused += 1;
        } else {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            kept.push(stream);
        }
    }
    assert_eq!(kept.len(), 200, "the cap admits exactly max_connections");
    assert_eq!(refused, 20);
    drop(kept);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for reason in ["max_connections", "unauthenticated_evicted"] {
        let series = format!("agora_api_connections_closed_total{{reason=\"{reason}\"}}");
        assert!(metric(&base, &token, &series).await > 0.0, "{series}");
    }
    requester.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_are_rate_limited_and_a_slow_body_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir.path().join("chain"));
    let data = dir.path().join("requester");
    let requester = node(&data, Role::Requester, LIMITS, &ledger, vec![]).await;
    let token = load_or_create_token(&data).unwrap();
    let base = requester.ready.api_url.trim_end_matches('/').to_string();
    let http = reqwest::Client::new();

    // 30 guesses at once: 5 a second are answered 401, the rest 429.
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let response = http
            .get(format!("{base}/v1/node"))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    let allowed = 5.0 + started.elapsed().as_secs_f64() * 5.0;
    let unauthorized = statuses.iter().filter(|&&s| s == 401).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(unauthorized + limited, 30, "{statuses:?}");
    assert!(unauthorized as f64 <= allowed.ceil(), "{statuses:?}");
    assert!(limited > 0, "{statuses:?}");
    // The token holder is not limited.
    for _ in 0..10 {
        let response = http
            .get(format!("{base}/v1/node"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    assert!(metric(&base, &token, "agora_api_rate_limited_total").await >= limited as f64);

    // A deposit whose body stops halfway: answered with an error once the
    // body timeout passes, and nothing is deposited.
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/ledger/deposit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"amount\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let answer = answer.expect("the node waited for the body forever");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    let client = agora_client::http::NodeClient::new(&base, Some(&token)).unwrap();
    assert_eq!(client.balance().await.unwrap().balance.0, 0);
    requester.shutdown().await;
}
