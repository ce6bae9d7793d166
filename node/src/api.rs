//! The node's HTTP API (axum), served on loopback. Every route needs
//! `Authorization: Bearer TOKEN`; the token lives in the data dir. Routes
//! and JSON types: `agora_client::api`. The dashboard's static files
//! (`crate::dashboard`) are the only routes without the token.

mod events;
pub(crate) mod serve;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agora_client::api::{
    ApiError, BalanceView, Bucket, DepositRequest, GpuTelemetry, JobLogPage, JobView, MoneyPage,
    NodeInfo, OfferArrivals, OfferView, OffersPage, ProviderStatus, ResultView, SubmitJob,
};
use agora_protocol::{Amount, Keypair, LeaseTerms, Ledger, LedgerError, PublicKey};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query as UrlQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::clock::now;
use crate::market::{MarketError, MarketHandle};
use crate::metrics::Metrics;
use crate::metrics::scrape::{Sources, scrape};
use crate::network::NetworkHandle;
use crate::network::wire::plain_path;
use crate::provider::telemetry::Telemetry;
use crate::requester::order::{check_job, order_from_spec};
use crate::store::{LogRecord, Side, Store, money};

/// Largest request body: a job spec with its small inputs.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// The token file in the data dir.
pub const TOKEN_FILE: &str = "api.token";

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    market: MarketHandle,
    ledger: Arc<dyn Ledger>,
    account: PublicKey,
    token: Arc<str>,
    store: Store,
    results_dir: PathBuf,
    /// The GPU sampler, on a provider.
    telemetry: Option<Telemetry>,
    /// What `/metrics` serves (the network for its peer gauges).
    metrics: Metrics,
    network: Option<NetworkHandle>,
    events: Arc<events::EventHub>,
    /// Requests without a valid token, per source address.
    auth_limiter: Arc<serve::AuthLimiter>,
    /// The data disk's free space: new jobs are refused when it is low.
    disk: Option<crate::disk::DiskGuard>,
}

impl ApiState {
    /// State for the router.
    pub fn new(
        market: MarketHandle,
        ledger: Arc<dyn Ledger>,
        key: &Keypair,
        token: String,
        store: Store,
        results_dir: PathBuf,
    ) -> Self {
        Self {
            market,
            ledger,
            account: key.public(),
            token: token.into(),
            store,
            results_dir,
            telemetry: None,
            metrics: Metrics::new(),
            network: None,
            events: Arc::new(events::EventHub::new()),
            auth_limiter: Arc::new(serve::AuthLimiter::new(
                crate::config::ApiSection::default().unauthenticated_requests_per_sec,
            )),
            disk: None,
        }
    }

    /// Refuses new jobs while `disk` is below its floor.
    pub fn with_disk(mut self, disk: crate::disk::DiskGuard) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Limits requests without a valid token to `per_sec` per address.
    pub fn with_auth_rate(mut self, per_sec: u32) -> Self {
        self.auth_limiter = Arc::new(serve::AuthLimiter::new(per_sec));
        self
    }

    /// The metrics it counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts into, and serves at `/metrics`, the node's metrics.
    pub fn with_metrics(mut self, metrics: Metrics, network: NetworkHandle) -> Self {
        self.metrics = metrics;
        self.network = Some(network);
        self
    }

    /// Serves the provider's GPU telemetry from this sampler.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }
}

/// The token file's path.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Reads the API token, creating a random one (0600) on first start.
pub fn load_or_create_token(data_dir: &Path) -> std::io::Result<String> {
    let path = token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token = hex::encode(bytes);
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        #[cfg(unix)]
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
        };
        #[cfg(not(unix))]
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/node", get(node_info))
        .route("/v1/node/arrivals", get(offer_arrivals))
        .route("/v1/offers", get(search_offers))
        .route("/v1/offers/{id}", get(offer))
        .route("/v1/jobs", post(submit_job).get(jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/log", get(job_log))
        .route("/v1/jobs/{id}/stream", get(job_stream))
        .route("/v1/jobs/{id}/result", get(job_result))
        .route("/v1/jobs/{id}/result/{*path}", get(job_result_file))
        .route("/v1/provider", get(provider))
        .route("/v1/provider/earnings", get(earnings))
        .route("/v1/billing", get(billing))
        .route("/v1/provider/telemetry", get(provider_telemetry))
        .route("/v1/ledger/balance", get(balance))
        .route("/v1/ledger/deposit", post(deposit))
        .route("/metrics", get(metrics))
        .route("/v1/events", get(events::stream))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        // After the token check's layer: the dashboard's files need none.
        .merge(crate::dashboard::routes())
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::http::count_requests,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An error answer.
struct Failure(StatusCode, ApiError);

impl Failure {
    fn new(status: StatusCode, error: impl Into<String>, at: Option<String>) -> Self {
        Self(
            status,
            ApiError {
                error: error.into(),
                at,
            },
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

impl From<MarketError> for Failure {
    fn from(e: MarketError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, e.message, e.at)
    }
}

impl From<LedgerError> for Failure {
    fn from(e: LedgerError) -> Self {
        let status = if e.is_transient() {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, format!("ledger: {e}"), None)
    }
}

type ApiResult<T> = Result<axum::Json<T>, Failure>;

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let peer = request.extensions().get::<serve::Peer>().cloned();
    if let Some(token) = presented
        && same(token.trim().as_bytes(), state.token.as_bytes())
    {
        if let Some(peer) = &peer {
            peer.authenticated();
        }
        return next.run(request).await;
    }
    // Without the token: limited per address, so guessing it or flooding
    // the node with refused requests costs the client, not the node.
    if let Some(peer) = &peer
        && !state.auth_limiter.allow(peer.ip)
    {
        state.metrics.api_rate_limited.inc();
        return Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests without a valid API token from this address; slow down",
            None,
        )
        .into_response();
    }
    match presented {
        Some(_) => Failure::new(
            StatusCode::UNAUTHORIZED,
            "wrong API token; it is in the node's data dir (api.token)",
            None,
        )
        .into_response(),
        None => Failure::new(
            StatusCode::UNAUTHORIZED,
            "missing API token: send `Authorization: Bearer TOKEN` (the token is in the node's data dir, api.token)",
            None,
        )
        .into_response(),
    }
}

async fn not_found() -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "no such route; see agora_client::api",
        None,
    )
}

async fn node_info(State(state): State<ApiState>) -> ApiResult<NodeInfo> {
    Ok(axum::Json(state.market.info().await?))
}

/// Offer versions first seen after `after` (ms), oldest first: what the
/// bench measures offer propagation from. Same paging as a job's log.
async fn offer_arrivals(
    State(state): State<ApiState>,
    params: Result<UrlQuery<LogParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<OfferArrivals> {
    let params = query_params(params)?;
    let page = state
        .market
        .arrivals(
            agora_protocol::Timestamp(params.after),
            params.limit.clamp(1, 10_000),
        )
        .await?;
    Ok(axum::Json(page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

async fn search_offers(
    State(state): State<ApiState>,
    params: Result<UrlQuery<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<OffersPage> {
    let params = query_params(params)?;
    Ok(axum::Json(
        state
            .market
            .search(params.q, params.sort, params.limit)
            .await?,
    ))
}

async fn offer(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<OfferView> {
    Ok(axum::Json(state.market.offer(id).await?))
}

/// A request body: one JSON object with named fields. serde would also
/// read a struct from an array of its fields in order (`[5]` as a deposit
/// of 5); that is refused here.
fn json_object<T: serde::de::DeserializeOwned>(
    body: Result<axum::Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<T, Failure> {
    let at = || Some("body".to_string());
    let axum::Json(value) =
        body.map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.body_text(), at()))?;
    if !value.is_object() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "expected a JSON object of named fields",
            at(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("request body: {e}"), at()))
}

async fn submit_job(
    State(state): State<ApiState>,
    body: Result<axum::Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, axum::Json<JobView>), Failure> {
    let submit: SubmitJob = json_object(body)?;
    if let Some(Err(reason)) = state.disk.as_ref().map(crate::disk::DiskGuard::check) {
        return Err(Failure::new(StatusCode::INSUFFICIENT_STORAGE, reason, None));
    }
    if submit.spec.command.is_empty() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "a job needs a command: command = [\"program\", \"arg\", …]",
            Some("command".into()),
        ));
    }
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?;
    let order = order_from_spec(&submit.spec, &state.account, nonce, now())
        .and_then(|order| check_job(&submit.spec).map(|()| order))
        .map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                e.to_string(),
                Some(e.field.clone()),
            )
        })?;
    // A price with no funds behind it is refused before anything is signed.
    let most = LeaseTerms::required_escrow(
        order.max_price_per_gpu_hour,
        order.gpu_count,
        order.max_duration_secs,
    )
    .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "the job's cost overflows", None))?;
    let balance = state.ledger.balance(&state.account).await?;
    if balance < most {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "balance {balance} is below the most this job can cost ({most} = max price × GPUs × duration); deposit with `agora ledger deposit`"
            ),
            Some("market.max_price_per_gpu_hour".into()),
        ));
    }
    let view = state
        .market
        .submit(order, submit.spec, submit.offer)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(view)))
}

async fn jobs(State(state): State<ApiState>) -> ApiResult<Vec<JobView>> {
    Ok(axum::Json(state.market.jobs().await?))
}

async fn job(State(state): State<ApiState>, UrlPath(id): UrlPath<String>) -> ApiResult<JobView> {
    Ok(axum::Json(state.market.job(id).await?))
}

async fn provider(State(state): State<ApiState>) -> ApiResult<ProviderStatus> {
    Ok(axum::Json(state.market.provider().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyParams {
    #[serde(default)]
    bucket: Bucket,
    /// Unix ms; by default the last 24 hours by hour, the last 30 days by
    /// day.
    #[serde(default)]
    since: Option<u64>,
}

/// What the provider earned, from the receipts its requesters
/// countersigned.
async fn earnings(
    State(state): State<ApiState>,
    params: Result<UrlQuery<MoneyParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<MoneyPage> {
    let params = query_params(params)?;
    // 404 on a requester-only node.
    let settled = state.market.provider().await?.earned;
    money_page(&state.store, Side::Earned, params, settled)
}

/// What this node spent as a requester, from the receipts it
/// countersigned.
async fn billing(
    State(state): State<ApiState>,
    params: Result<UrlQuery<MoneyParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<MoneyPage> {
    let params = query_params(params)?;
    let settled = state
        .market
        .jobs()
        .await?
        .iter()
        .filter_map(|j| j.settlement.as_ref())
        .fold(Amount::ZERO, |sum, s| {
            sum.checked_add(s.settled).unwrap_or(Amount(u64::MAX))
        });
    money_page(&state.store, Side::Spent, params, settled)
}

fn money_page(
    store: &Store,
    side: Side,
    params: MoneyParams,
    settled: Amount,
) -> ApiResult<MoneyPage> {
    let now = now();
    let since = params.since.map_or_else(
        || {
            let back = match params.bucket {
                Bucket::Hour => 24 * 3_600_000,
                Bucket::Day => 30 * 86_400_000,
            };
            agora_protocol::Timestamp(now.0.saturating_sub(back))
        },
        agora_protocol::Timestamp,
    );
    // Every entry, for the 24 h, 7 d and all-time sums.
    let entries = store
        .money_since(side, agora_protocol::Timestamp(0))
        .map_err(store_failure)?;
    money::page(&entries, params.bucket, since, now, settled)
        .map(axum::Json)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.0, Some("since".into())))
}

async fn provider_telemetry(State(state): State<ApiState>) -> ApiResult<Vec<GpuTelemetry>> {
    let Some(telemetry) = &state.telemetry else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "this node is a requester; start it with `agorad provider` to rent out GPUs",
            None,
        ));
    };
    let views = telemetry
        .views()
        .await
        .map_err(|e| Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None))?;
    Ok(axum::Json(views))
}

/// The node's metrics in the OpenMetrics text format.
/// OpenMetrics for a scraper that asks for it (Prometheus does), else
/// Prometheus' text format 0.0.4.
async fn metrics(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Failure> {
    let format = crate::metrics::Format::negotiate(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    let sources = Sources {
        market: &state.market,
        network: state.network.as_ref(),
        telemetry: state.telemetry.as_ref(),
    };
    let body = scrape(&state.metrics, sources).await.map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the metrics: {e}"),
            None,
        )
    })?;
    let body = match format {
        crate::metrics::Format::OpenMetrics => body,
        crate::metrics::Format::Text => crate::metrics::to_text_format(&body),
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

async fn balance(State(state): State<ApiState>) -> ApiResult<BalanceView> {
    let balance = state.ledger.balance(&state.account).await?;
    Ok(axum::Json(BalanceView {
        account: state.account,
        balance,
    }))
}

async fn deposit(
    State(state): State<ApiState>,
    body: Result<axum::Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<BalanceView> {
    let request: DepositRequest = json_object(body)?;
    if request.amount == Amount::ZERO {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "deposit a positive amount",
            Some("amount".into()),
        ));
    }
    let balance = state.ledger.deposit(&state.account, request.amount).await?;
    Ok(axum::Json(BalanceView {
        account: state.account,
        balance,
    }))
}

async fn cancel_job(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<JobView> {
    Ok(axum::Json(state.market.cancel(id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_log_limit")]
    limit: usize,
}

fn default_log_limit() -> usize {
    1000
}

/// A query string's parameters, or a 400 saying what is wrong with it.
fn query_params<T>(
    params: Result<UrlQuery<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Failure> {
    params.map(|p| p.0).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            e.body_text(),
            Some("query string".into()),
        )
    })
}

fn store_failure(e: crate::store::StoreError) -> Failure {
    Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None)
}

async fn job_log(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    params: Result<UrlQuery<LogParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<JobLogPage> {
    let params = query_params(params)?;
    let view = state.market.job(id).await?;
    let order = job_key(&view)?;
    let entries = state
        .store
        .log_after(&order, params.after, params.limit.clamp(1, 10_000), 4 << 20)
        .map_err(store_failure)?
        .into_iter()
        .map(LogRecord::view)
        .collect::<Vec<_>>();
    let next = entries.last().map_or(params.after, |e| e.seq);
    let finished = view.state.is_terminal() && next >= view.log_seq;
    Ok(axum::Json(JobLogPage {
        entries,
        next,
        finished,
    }))
}

fn job_key(view: &JobView) -> Result<[u8; 32], Failure> {
    view.id
        .parse::<agora_protocol::OrderId>()
        .map(|o| o.0)
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))
}

/// Server-sent events: every log entry after `after` (or `Last-Event-ID`),
/// then new ones as they come, then `end` with the final job.
async fn job_stream(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    headers: axum::http::HeaderMap,
    params: Result<UrlQuery<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let params = query_params(params)?;
    let last_event = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let view = state.market.job(id.clone()).await?;
    let order = job_key(&view)?;
    struct Cursor {
        state: ApiState,
        id: String,
        order: [u8; 32],
        after: u64,
        done: bool,
    }
    let cursor = Cursor {
        state,
        id,
        order,
        after: params.after.max(last_event),
        done: false,
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        loop {
            let store = c.state.store.clone();
            let notified = store.log_appended();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let entries = match store.log_after(&c.order, c.after, 256, 1 << 20) {
                Ok(entries) => entries,
                Err(e) => {
                    c.done = true;
                    let event = Event::default().event("error").data(e.to_string());
                    return Some((vec![event], c));
                }
            };
            if !entries.is_empty() {
                c.after = entries.last().map_or(c.after, |e| e.seq);
                let events = entries
                    .into_iter()
                    .map(|e| {
                        let e = e.view();
                        Event::default()
                            .id(e.seq.to_string())
                            .event(e.kind.as_str())
                            .data(serde_json::to_string(&e).unwrap_or_default())
                    })
                    .collect::<Vec<_>>();
                return Some((events, c));
            }
            match c.state.market.job(c.id.clone()).await {
                Ok(view) if view.state.is_terminal() && view.log_seq <= c.after => {
                    c.done = true;
                    let data = serde_json::to_string(&view).unwrap_or_default();
                    return Some((vec![Event::default().event("end").data(data)], c));
                }
                Ok(_) => {}
                Err(e) => {
                    c.done = true;
                    let event = Event::default().event("error").data(e.message);
                    return Some((vec![event], c));
                }
            }
            // Woken by new entries, or every second to notice the end.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), notified).await;
        }
    });
    let stream = futures::StreamExt::flat_map(stream, |events| {
        futures::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}

fn result_view(view: &JobView) -> Result<ResultView, Failure> {
    let Some(hash) = view
        .receipt
        .as_ref()
        .filter(|r| r.is_final)
        .and_then(|r| r.result_hash.clone())
    else {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            format!(
                "job {} has no result yet (state {:?}); results come with its final receipt",
                view.id, view.state
            ),
            None,
        ));
    };
    Ok(ResultView {
        job_id: view.id.clone(),
        exit_code: view.exit_code,
        result_hash: hash,
        outputs: view.outputs.clone(),
        complete: view.results_fetched,
    })
}

async fn job_result(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<ResultView> {
    let view = state.market.job(id).await?;
    Ok(axum::Json(result_view(&view)?))
}

async fn job_result_file(
    State(state): State<ApiState>,
    UrlPath((id, path)): UrlPath<(String, String)>,
) -> Result<Response, Failure> {
    plain_path(&path).map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e, Some("path".into())))?;
    let view = state.market.job(id).await?;
    let result = result_view(&view)?;
    if !result.complete {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "the job's outputs are not all fetched and checked yet",
            None,
        ));
    }
    let Some(output) = result.outputs.iter().find(|o| o.path == path) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("{path:?} is not an output of job {}", view.id),
            Some("path".into()),
        ));
    };
    let file = tokio::fs::File::open(state.results_dir.join(&view.id).join(&output.path))
        .await
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, output.size.to_string()),
        ],
        body,
    )
        .into_response())
}
