//! A typed async client of the node API: one method per route of the table
//! in [`crate::api`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), agora_client::http::ClientError> {
//! use agora_client::http::NodeClient;
//! let node = NodeClient::new("http://127.0.0.1:7070", Some("TOKEN"))?;
//! let page = node.search_offers("gpu=H100 region=EU", Some(10)).await?;
//! println!("{} offers", page.offers.len());
//! # Ok(()) }
//! ```

mod stream;

use std::path::Path;
use std::time::Duration;

use agora_protocol::{Amount, Timestamp};
use reqwest::{Method, StatusCode, Url, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use tokio::io::AsyncWriteExt as _;

use crate::api::{
    ApiError, BalanceView, Bucket, DepositRequest, GpuTelemetry, JobLogPage, JobView, MoneyPage,
    NodeInfo, OfferArrivals, OfferView, OffersPage, ProviderStatus, ResultView, SubmitJob,
};

pub use stream::{JobStream, Reconnect, StreamItem};

/// How long one request may take, connecting included, unless
/// [`NodeClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer body the client reads.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why a call to the node failed. Every variant names the URL it called.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node URL is not a usable `http://` base URL.
    #[error(
        "'{url}' is not a node URL ({reason}); pass --node or set AGORA_NODE to e.g. http://127.0.0.1:7070"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered: connection refused, no route, DNS failure.
    #[error(
        "cannot reach the node at {url} ({reason}); is agorad running there? Check --node or AGORA_NODE"
    )]
    Unreachable {
        /// The node's base URL.
        url: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        reason: String,
    },
    /// The node did not answer within the timeout.
    #[error("the node at {url} did not answer within {secs}s")]
    Timeout {
        /// The URL called.
        url: String,
        /// The timeout, seconds.
        secs: u64,
    },
    /// The connection failed part-way (reset, truncated body).
    #[error("talking to the node at {url} failed: {reason}")]
    Transport {
        /// The URL called.
        url: String,
        /// The transport error and its causes.
        reason: String,
    },
    /// 401: the node refused the token, or none was sent.
    #[error("{}", unauthorized_text(url, *token_sent))]
    Unauthorized {
        /// The URL called.
        url: String,
        /// Whether a token was sent at all.
        token_sent: bool,
    },
    /// The node answered an [`ApiError`].
    #[error("{}", api_text(*status, error, at.as_deref()))]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The node's message.
        error: String,
        /// Where the problem is (a query column, a spec field), when the
        /// node said.
        at: Option<String>,
    },
    /// The node answered an error status without an [`ApiError`] body:
    /// probably not an agora node.
    #[error(
        "{url} answered {status} without an API error body: {body}; is --node an agorad API URL?"
    )]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
    /// The answer was too large to be an API answer.
    #[error("the answer from {url} exceeds {MAX_RESPONSE_BYTES} bytes")]
    TooLarge {
        /// The URL called.
        url: String,
    },
    /// The job's log stream broke and did not come back.
    #[error(
        "the log stream at {url} broke and {attempts} reconnect(s) failed: {reason}; the job goes on, follow it again with `agora job logs -f`"
    )]
    StreamLost {
        /// The stream's URL.
        url: String,
        /// Reconnects tried.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The log stream said something this client cannot follow (an
    /// unreadable entry, a gap in the sequence, an oversized line).
    #[error("the log stream at {url} is malformed: {reason}")]
    BadStream {
        /// The stream's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A downloaded file was larger than the job's manifest says.
    #[error("{url} sent more than the {limit} bytes the job's manifest lists")]
    Oversized {
        /// The URL called.
        url: String,
        /// The manifest's size.
        limit: u64,
    },
    /// Writing a downloaded file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A success status whose JSON is not what this client expects.
    #[error(
        "the node at {url} answered JSON this client cannot read ({source}); are agora and agorad the same version?"
    )]
    Decode {
        /// The URL called.
        url: String,
        /// The decode error, with line and column.
        source: serde_json::Error,
    },
}

fn unauthorized_text(url: &str, token_sent: bool) -> String {
    if token_sent {
        format!(
            "the node at {url} refused the API token (401); pass the node's token (DATA/api.token) with --token or AGORA_TOKEN"
        )
    } else {
        format!(
            "the node at {url} needs an API token (401) and none was given; pass --token or set AGORA_TOKEN (the token is in the node's DATA/api.token)"
        )
    }
}

fn api_text(status: StatusCode, error: &str, at: Option<&str>) -> String {
    match at {
        Some(at) => format!("{error} (at {at}; node answered {status})"),
        None => format!("{error} (node answered {status})"),
    }
}

impl ClientError {
    /// The HTTP status the node answered, when it answered one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            ClientError::Api { status, .. } | ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one node's API. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl NodeClient {
    /// A client of the node at `base_url` (e.g. `http://127.0.0.1:7070`),
    /// sending `token` as `Authorization: Bearer TOKEN` when given.
    pub fn new(base_url: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let base = Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(bad("the scheme must be http"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad("no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("a base URL has no query or fragment"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            base,
            token: token.map(str::to_string),
            http,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The node's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /v1/node`.
    pub async fn node_info(&self) -> Result<NodeInfo, ClientError> {
        self.get(self.url(&["node"])).await
    }

    /// `GET /v1/offers?q=QUERY&limit=N`: offers matching `query` (the offer
    /// query language, e.g. `gpu=H100 region=EU price<=3`).
    pub async fn search_offers(
        &self,
        query: &str,
        limit: Option<u32>,
    ) -> Result<OffersPage, ClientError> {
        self.search_offers_sorted(query, None, limit).await
    }

    /// `GET /v1/offers?q=QUERY&sort=KEY&limit=N`: as [`Self::search_offers`],
    /// ordered by `sort` (`price`, `tflop_price:desc`, …).
    pub async fn search_offers_sorted(
        &self,
        query: &str,
        sort: Option<&str>,
        limit: Option<u32>,
    ) -> Result<OffersPage, ClientError> {
        let mut url = self.url(&["offers"]);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("q", query);
            if let Some(sort) = sort {
                pairs.append_pair("sort", sort);
            }
            if let Some(limit) = limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        self.get(url).await
    }

    /// `GET /v1/offers/{id}`.
    pub async fn offer(&self, id: &str) -> Result<OfferView, ClientError> {
        self.get(self.url(&["offers", id])).await
    }

    /// `POST /v1/jobs`: submits a job; the answer is its first view.
    pub async fn submit_job(&self, job: &SubmitJob) -> Result<JobView, ClientError> {
        self.send(Method::POST, self.url(&["jobs"]), Some(job))
            .await
    }

    /// `GET /v1/jobs`: this node's jobs.
    pub async fn jobs(&self) -> Result<Vec<JobView>, ClientError> {
        self.get(self.url(&["jobs"])).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<JobView, ClientError> {
        self.get(self.url(&["jobs", id])).await
    }

    /// `POST /v1/jobs/{id}/cancel`: the job's view after cancelling (409
    /// [`ClientError::Api`] once it has ended).
    pub async fn cancel_job(&self, id: &str) -> Result<JobView, ClientError> {
        self.send::<JobView, ()>(Method::POST, self.url(&["jobs", id, "cancel"]), None)
            .await
    }

    /// `GET /v1/jobs/{id}/log?after=SEQ&limit=N`: entries after `after`.
    pub async fn job_log(
        &self,
        id: &str,
        after: u64,
        limit: Option<u32>,
    ) -> Result<JobLogPage, ClientError> {
        let mut url = self.url(&["jobs", id, "log"]);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("after", &after.to_string());
            if let Some(limit) = limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        self.get(url).await
    }

    /// `GET /v1/jobs/{id}/stream?after=SEQ`: the job's log from `after` on,
    /// live, until the job ends. The stream reconnects by itself when the
    /// connection drops (see [`Reconnect`]), resuming after the last entry
    /// it returned, so no entry is lost or repeated.
    pub fn stream_job(&self, id: &str, after: u64) -> JobStream {
        JobStream::new(self.clone(), id, after)
    }

    /// `GET /v1/jobs/{id}/result` (409 [`ClientError::Api`] before the job
    /// has outputs).
    pub async fn result(&self, id: &str) -> Result<ResultView, ClientError> {
        self.get(self.url(&["jobs", id, "result"])).await
    }

    /// `GET /v1/jobs/{id}/result/{path}`: streams one output file into
    /// `dest` (created or truncated), refusing more than `max_bytes`, and
    /// returns the bytes written and their blake3. `path` is sent as its
    /// `/`-separated segments; the caller checks it is a safe relative path.
    pub async fn download_result_file(
        &self,
        id: &str,
        path: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<(u64, blake3::Hash), ClientError> {
        let mut segments = vec!["jobs", id, "result"];
        segments.extend(path.split('/'));
        let url = self.url(&segments);
        let shown = url.to_string();
        // The timeout bounds the wait for the headers and then each chunk,
        // not the whole (possibly large) file.
        let timeout = || ClientError::Timeout {
            url: shown.clone(),
            secs: self.timeout.as_secs(),
        };
        let mut response =
            tokio::time::timeout(self.timeout, self.request(Method::GET, url).send())
                .await
                .map_err(|_| timeout())?
                .map_err(|e| self.transport_error(&shown, e))?;
        if !response.status().is_success() {
            return Err(self.error_answer(&shown, response).await);
        }
        let write_error = |source| ClientError::Write {
            path: dest.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(write_error)?;
        let mut hasher = blake3::Hasher::new();
        let mut written: u64 = 0;
        while let Some(chunk) = tokio::time::timeout(self.timeout, response.chunk())
            .await
            .map_err(|_| timeout())?
            .map_err(|e| self.transport_error(&shown, e))?
        {
            written = written.saturating_add(chunk.len() as u64);
            if written > max_bytes {
                return Err(ClientError::Oversized {
                    url: shown,
                    limit: max_bytes,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(write_error)?;
        }
        file.flush().await.map_err(write_error)?;
        file.sync_all().await.map_err(write_error)?;
        Ok((written, hasher.finalize()))
    }

    /// `GET /v1/provider` (404 [`ClientError::Api`] on a requester-only
    /// node).
    pub async fn provider_status(&self) -> Result<ProviderStatus, ClientError> {
        self.get(self.url(&["provider"])).await
    }

    /// `GET /v1/provider/earnings`: what the provider earned, from
    /// countersigned receipts, in `bucket`s from `since` (the node's
    /// default window when `None`).
    pub async fn earnings(
        &self,
        bucket: Bucket,
        since: Option<Timestamp>,
    ) -> Result<MoneyPage, ClientError> {
        self.get(self.money_url(&["provider", "earnings"], bucket, since))
            .await
    }

    /// `GET /v1/billing`: what this node spent as a requester, from the
    /// receipts it countersigned.
    pub async fn billing(
        &self,
        bucket: Bucket,
        since: Option<Timestamp>,
    ) -> Result<MoneyPage, ClientError> {
        self.get(self.money_url(&["billing"], bucket, since)).await
    }

    fn money_url(&self, path: &[&str], bucket: Bucket, since: Option<Timestamp>) -> Url {
        let mut url = self.url(path);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair(
                "bucket",
                match bucket {
                    Bucket::Hour => "hour",
                    Bucket::Day => "day",
                },
            );
            if let Some(since) = since {
                pairs.append_pair("since", &since.0.to_string());
            }
        }
        url
    }

    /// `GET /v1/provider/telemetry`: each GPU's recent readings, oldest
    /// first (404 [`ClientError::Api`] on a requester-only node).
    pub async fn provider_telemetry(&self) -> Result<Vec<GpuTelemetry>, ClientError> {
        self.get(self.url(&["provider", "telemetry"])).await
    }

    /// `GET /v1/node/arrivals`: offer versions this node first saw after
    /// `after` (its clock, ms), oldest first; page on with the last one's
    /// `received_at` while `more` is set.
    pub async fn offer_arrivals(
        &self,
        after: Timestamp,
        limit: Option<u32>,
    ) -> Result<OfferArrivals, ClientError> {
        let mut url = self.url(&["node", "arrivals"]);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("after", &after.0.to_string());
            if let Some(limit) = limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        self.get(url).await
    }

    /// `GET /v1/ledger/balance`: this node's account.
    pub async fn balance(&self) -> Result<BalanceView, ClientError> {
        self.get(self.url(&["ledger", "balance"])).await
    }

    /// `POST /v1/ledger/deposit`: the mock chain's faucet credits this
    /// node's account; the answer is the new balance.
    pub async fn deposit(&self, amount: Amount) -> Result<BalanceView, ClientError> {
        let body = DepositRequest { amount };
        self.send(Method::POST, self.url(&["ledger", "deposit"]), Some(&body))
            .await
    }

    /// `/v1/` + `segments`, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `new` refused cannot-be-a-base URLs, so this is always `Ok`.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        url
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, ClientError> {
        self.send::<T, ()>(Method::GET, url, None).await
    }

    async fn send<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let shown = url.to_string();
        let mut request = self.request(method, url).timeout(self.timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport_error(&shown, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.error_answer(&shown, response).await);
        }
        let bytes = self.read_body(&shown, response).await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode { url: shown, source })
    }

    /// A request with the token, without a timeout.
    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The whole body, up to [`MAX_RESPONSE_BYTES`].
    async fn read_body(
        &self,
        url: &str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, ClientError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(url, e))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ClientError::TooLarge {
                    url: url.to_string(),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// The error an unsuccessful answer stands for.
    async fn error_answer(&self, url: &str, response: reqwest::Response) -> ClientError {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return ClientError::Unauthorized {
                url: url.to_string(),
                token_sent: self.token.is_some(),
            };
        }
        let bytes = match self.read_body(url, response).await {
            Ok(bytes) => bytes,
            Err(e) => return e,
        };
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(api) => ClientError::Api {
                status,
                error: api.error,
                at: api.at,
            },
            Err(_) => ClientError::Status {
                url: url.to_string(),
                status,
                body: body_excerpt(&bytes),
            },
        }
    }

    fn transport_error(&self, url: &str, error: reqwest::Error) -> ClientError {
        if error.is_timeout() {
            ClientError::Timeout {
                url: url.to_string(),
                secs: self.timeout.as_secs(),
            }
        } else if error.is_connect() {
            let mut root: &dyn std::error::Error = &error;
            while let Some(next) = root.source() {
                root = next;
            }
            ClientError::Unreachable {
                url: self.base.as_str().trim_end_matches('/').to_string(),
                reason: root.to_string(),
            }
        } else {
            ClientError::Transport {
                url: url.to_string(),
                reason: error_chain(&error),
            }
        }
    }
}

/// An error and its causes, `outer: inner: ...`, skipping a cause whose text
/// its parent already shows.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The first 200 characters of a body, for an error message.
fn body_excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "(empty)".into();
    }
    let mut excerpt: String = text.chars().take(200).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    excerpt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_under_v1_and_ids_are_one_segment() {
        let node = NodeClient::new("http://127.0.0.1:7070", None).unwrap();
        assert_eq!(
            node.url(&["jobs", "ab12"]).as_str(),
            "http://127.0.0.1:7070/v1/jobs/ab12"
        );
        assert_eq!(
            node.url(&["offers", "../node"]).as_str(),
            "http://127.0.0.1:7070/v1/offers/..%2Fnode"
        );
        let prefixed = NodeClient::new("http://127.0.0.1:7070/agora/", None).unwrap();
        assert_eq!(
            prefixed.url(&["node"]).as_str(),
            "http://127.0.0.1:7070/agora/v1/node"
        );
    }

    #[test]
    fn a_bad_node_url_says_how_to_fix_it() {
        for url in ["127.0.0.1:7070", "ftp://x", "not a url"] {
            let err = NodeClient::new(url, None).unwrap_err().to_string();
            assert!(err.contains("AGORA_NODE"), "{url}: {err}");
        }
    }

    #[test]
    fn api_errors_show_message_and_place() {
        let err = ClientError::Api {
            status: StatusCode::BAD_REQUEST,
            error: "unknown column 'gpux'".into(),
            at: Some("gpux".into()),
        };
        let text = err.to_string();
        assert!(text.contains("unknown column 'gpux'"), "{text}");
        assert!(text.contains("at gpux"), "{text}");
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    }
}
