//! The mock chain's HTTP API: any [`Ledger`] over JSON.
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `GET /healthz` | | `ok` |
//! | `GET /v1/now` | | `{"now_ms"}` |
//! | `GET /v1/accounts/{hex}/balance` | | `{"balance"}` |
//! | `POST /v1/accounts/{hex}/deposit` | `{"amount"}` | `{"balance"}` |
//! | `POST /v1/escrow` | `{"lease": hex of the co-signed lease}` | `EscrowState` |
//! | `GET /v1/escrow/{lease}` | | `EscrowState` |
//! | `POST /v1/escrow/{lease}/close` | | `Closure` |
//! | `POST /v1/close` | `{"close": hex of the co-signed early close}` | `Closure` |
//! | `POST /v1/settle` | `{"receipt": hex of the co-signed receipt}` | `Settlement` |
//! | `GET /v1/supply` | | `Supply` |
//! | `POST /v1/admin/advance` | `{"ms"}` | `{"now_ms"}` — only with a manual clock |
//!
//! Errors are a JSON [`LedgerError`] (`{"error": kind, "detail": …}`) with
//! a status that says whether retrying can help: 400/402/404/409 never,
//! 503 yes.

use std::sync::Arc;

use agora_protocol::{AccountId, Amount, CoSigned, LeaseId, Ledger, LedgerError};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::clock::ManualClock;

/// Largest request body: a co-signed lease or receipt in hex is ~1 KiB.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
struct AppState {
    ledger: Arc<dyn Ledger>,
    manual_clock: Option<ManualClock>,
}

/// The router serving `ledger`. With `manual_clock`, `POST /v1/admin/advance`
/// moves chain time (tests); without it that path is 404.
pub fn router(ledger: Arc<dyn Ledger>, manual_clock: Option<ManualClock>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/now", get(now))
        .route("/v1/accounts/{account}/balance", get(balance))
        .route("/v1/accounts/{account}/deposit", post(deposit))
        .route("/v1/escrow", post(lock_escrow))
        .route("/v1/escrow/{lease}", get(escrow))
        .route("/v1/escrow/{lease}/close", post(close))
        .route("/v1/close", post(close_early))
        .route("/v1/settle", post(settle))
        .route("/v1/supply", get(supply))
        .route("/v1/admin/advance", post(advance))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AppState {
            ledger,
            manual_clock,
        })
}

/// A refused request: the ledger's error as JSON with a fitting status.
struct ApiError(LedgerError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            LedgerError::InvalidLease(_)
            | LedgerError::InvalidReceipt(_)
            | LedgerError::InvalidClose(_)
            | LedgerError::ReceiptRule(_)
            | LedgerError::BadRequest(_)
            | LedgerError::Overflow(_) => StatusCode::BAD_REQUEST,
            LedgerError::InsufficientFunds { .. } => StatusCode::PAYMENT_REQUIRED,
            LedgerError::UnknownLease(_) => StatusCode::NOT_FOUND,
            LedgerError::LeaseEnded(_)
            | LedgerError::LeaseClosed(_)
            | LedgerError::NotClosable { .. } => StatusCode::CONFLICT,
            LedgerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            LedgerError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, axum::Json(self.0)).into_response()
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        Self(e)
    }
}

type ApiResult<T> = Result<axum::Json<T>, ApiError>;

fn bad(message: String) -> ApiError {
    ApiError(LedgerError::BadRequest(message))
}

/// A body is one JSON object with the request's fields: serde would also
/// read a struct from an array of its fields in order (`[5]` as a
/// deposit of 5), which is refused here.
fn parse_body<T: DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| bad(format!("request body: {e}")))?;
    if !value.is_object() {
        return Err(bad(
            "request body: expected a JSON object of named fields, e.g. {\"amount\": 5}".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| bad(format!("request body: {e}")))
}

fn parse_account(text: &str) -> Result<AccountId, ApiError> {
    text.parse().map_err(|e| {
        bad(format!(
            "account {text:?} is not a 64-hex-digit public key: {e}"
        ))
    })
}

fn parse_lease_id(text: &str) -> Result<LeaseId, ApiError> {
    text.parse().map_err(|e| bad(format!("lease id: {e}")))
}

fn parse_cosigned(field: &str, text: &str) -> Result<CoSigned, ApiError> {
    let bytes = hex::decode(text).map_err(|e| bad(format!("{field}: not hex: {e}")))?;
    CoSigned::decode(&bytes).map_err(|e| bad(format!("{field}: {e}")))
}

#[derive(serde::Serialize, Deserialize)]
struct NowReply {
    now_ms: u64,
}

#[derive(serde::Serialize, Deserialize)]
struct BalanceReply {
    balance: Amount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepositRequest {
    amount: Amount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockRequest {
    lease: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettleRequest {
    receipt: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseRequest {
    close: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    ms: u64,
}

async fn now(State(app): State<AppState>) -> ApiResult<NowReply> {
    Ok(axum::Json(NowReply {
        now_ms: app.ledger.now().await?.0,
    }))
}

async fn balance(
    State(app): State<AppState>,
    Path(account): Path<String>,
) -> ApiResult<BalanceReply> {
    let account = parse_account(&account)?;
    Ok(axum::Json(BalanceReply {
        balance: app.ledger.balance(&account).await?,
    }))
}

async fn deposit(
    State(app): State<AppState>,
    Path(account): Path<String>,
    body: String,
) -> ApiResult<BalanceReply> {
    let account = parse_account(&account)?;
    let request: DepositRequest = parse_body(&body)?;
    Ok(axum::Json(BalanceReply {
        balance: app.ledger.deposit(&account, request.amount).await?,
    }))
}

async fn lock_escrow(
    State(app): State<AppState>,
    body: String,
) -> ApiResult<agora_protocol::ledger::EscrowState> {
    let request: LockRequest = parse_body(&body)?;
    let lease = parse_cosigned("lease", &request.lease)?;
    Ok(axum::Json(app.ledger.lock_escrow(&lease).await?))
}

async fn escrow(
    State(app): State<AppState>,
    Path(lease): Path<String>,
) -> ApiResult<agora_protocol::ledger::EscrowState> {
    let id = parse_lease_id(&lease)?;
    match app.ledger.escrow(&id).await? {
        Some(state) => Ok(axum::Json(state)),
        None => Err(ApiError(LedgerError::UnknownLease(id))),
    }
}

async fn close(
    State(app): State<AppState>,
    Path(lease): Path<String>,
) -> ApiResult<agora_protocol::ledger::Closure> {
    let id = parse_lease_id(&lease)?;
    Ok(axum::Json(app.ledger.close(&id).await?))
}

async fn close_early(
    State(app): State<AppState>,
    body: String,
) -> ApiResult<agora_protocol::ledger::Closure> {
    let request: CloseRequest = parse_body(&body)?;
    let close = parse_cosigned("close", &request.close)?;
    Ok(axum::Json(app.ledger.close_early(&close).await?))
}

async fn settle(
    State(app): State<AppState>,
    body: String,
) -> ApiResult<agora_protocol::ledger::Settlement> {
    let request: SettleRequest = parse_body(&body)?;
    let receipt = parse_cosigned("receipt", &request.receipt)?;
    Ok(axum::Json(app.ledger.settle(&receipt).await?))
}

async fn supply(State(app): State<AppState>) -> ApiResult<agora_protocol::ledger::Supply> {
    Ok(axum::Json(app.ledger.supply().await?))
}

async fn advance(State(app): State<AppState>, body: String) -> Response {
    let Some(clock) = app.manual_clock else {
        return (StatusCode::NOT_FOUND, "time control needs --manual-clock").into_response();
    };
    match parse_body::<AdvanceRequest>(&body) {
        Ok(request) => axum::Json(NowReply {
            now_ms: clock.advance(request.ms).0,
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}
