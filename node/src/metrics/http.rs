//! The API's request counter: a middleware outside the token check, so a
//! refused request counts too, labelled by the matched route's template
//! (`/v1/jobs/{id}`, never the raw path) and the method, both from fixed
//! sets, so no request can add series of its own.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::{Metrics, RequestLabels};

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Counts the request by method, route template and status.
pub async fn count_requests(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    metrics
        .api_requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// A method's label: the standard ones by name, any other `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agora_protocol::{Keypair, Ledger};
    use tokio::sync::mpsc;

    use crate::api::{ApiState, router};
    use crate::market::MarketHandle;
    use crate::market::handle::Command;
    use crate::metrics::snapshot::MarketGauges;
    use crate::store::Store;

    /// The real API router on loopback over a market that answers only
    /// the metrics' gauges (a book of 7 offers).
    async fn api(dir: &std::path::Path) -> String {
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(command) = rx.recv().await {
                if let Command::Gauges(reply) = command {
                    let _ = reply.send(Ok(MarketGauges {
                        book_offers: 7,
                        ..MarketGauges::default()
                    }));
                }
            }
        });
        let ledger: Arc<dyn Ledger> = Arc::new(
            agora_contracts_mock::SledLedger::open(
                &dir.join("chain"),
                agora_contracts_mock::SledConfig::default(),
                Arc::new(agora_contracts_mock::SystemClock),
            )
            .unwrap(),
        );
        let store = Store::open(&dir.join("state")).unwrap();
        let state = ApiState::new(
            MarketHandle { commands: tx },
            ledger,
            &Keypair::from_seed(&[1; 32]),
            "secret".into(),
            store,
            dir.join("results"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        url
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status_refused_ones_too() {
        let dir = tempfile::tempdir().unwrap();
        let url = api(dir.path()).await;
        let http = reqwest::Client::new();
        let get = |path: &str, token: Option<&str>| {
            let mut request = http.get(format!("{url}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        // No token: 401, counted under the route's template, not the id.
        for id in ["aa", "bb"] {
            let r = get(&format!("/v1/jobs/{id}"), None).await.unwrap();
            assert_eq!(r.status(), 401);
        }
        let r = get("/metrics", Some("wrong")).await.unwrap();
        assert_eq!(r.status(), 401);
        let r = get("/no/such/route", Some("secret")).await.unwrap();
        assert_eq!(r.status(), 404);

        let r = http
            .get(format!("{url}/metrics"))
            .bearer_auth("secret")
            .header(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(kind, super::super::CONTENT_TYPE);
        let text = r.text().await.unwrap();
        for line in [
            "agora_api_requests_total{method=\"GET\",route=\"/v1/jobs/{id}\",status=\"401\"} 2",
            "agora_api_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"} 1",
            "agora_api_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
            "agora_book_offers 7",
            "agora_scrape_source_up{source=\"market\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("/v1/jobs/aa"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        // The scrape itself is counted once it is answered; without
        // OpenMetrics in `Accept`, the text format 0.0.4.
        let r = get("/metrics", Some("secret")).await.unwrap();
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(kind, super::super::TEXT_CONTENT_TYPE);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("# TYPE agora_api_requests_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains(
                "agora_api_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 1"
            ),
            "{text}"
        );
    }
}
