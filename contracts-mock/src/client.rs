//! [`HttpLedger`]: the `Ledger` trait over the mock chain's HTTP API.

use std::time::Duration;

use agora_protocol::ledger::{Closure, EscrowState, Settlement, Supply};
use agora_protocol::{AccountId, Amount, CoSigned, LeaseId, Ledger, LedgerError, Timestamp};
use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A ledger reached over HTTP. Connection failures, timeouts and 5xx
/// answers are [`LedgerError::Unavailable`]: transient, worth retrying.
/// Other refusals are the chain's own [`LedgerError`], decoded from the
/// JSON body (or [`LedgerError::BadRequest`] when the body is not one).
#[derive(Debug, Clone)]
pub struct HttpLedger {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct NowReply {
    now_ms: u64,
}

#[derive(Deserialize)]
struct BalanceReply {
    balance: Amount,
}

impl HttpLedger {
    /// A client of the chain at `base` (e.g. `http://127.0.0.1:7000`).
    pub fn new(base: &str) -> Result<Self, LedgerError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| LedgerError::Unavailable(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The chain's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Moves a `--manual-clock` chain's time forward (tests).
    pub async fn advance_clock(&self, ms: u64) -> Result<Timestamp, LedgerError> {
        let reply: NowReply = self
            .send(
                self.http
                    .post(self.url("/v1/admin/advance"))
                    .json(&serde_json::json!({ "ms": ms })),
            )
            .await?;
        Ok(Timestamp(reply.now_ms))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, LedgerError> {
        let response = request
            .send()
            .await
            .map_err(|e| LedgerError::Unavailable(format!("mock chain at {}: {e}", self.base)))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            LedgerError::Unavailable(format!(
                "mock chain at {}: reading the answer: {e}",
                self.base
            ))
        })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                LedgerError::Unavailable(format!(
                    "mock chain at {}: unreadable answer: {e}",
                    self.base
                ))
            });
        }
        let decoded = serde_json::from_slice::<LedgerError>(&body);
        if status.is_server_error() {
            // The chain failed, not the request: worth retrying unchanged.
            let detail = match decoded {
                Ok(error) => error.to_string(),
                Err(_) => excerpt(&body),
            };
            return Err(LedgerError::Unavailable(format!(
                "mock chain at {} answered {status}: {detail}",
                self.base
            )));
        }
        match decoded {
            Ok(error) => Err(error),
            Err(_) => Err(LedgerError::BadRequest(format!(
                "mock chain at {} refused the request with {status}: {}",
                self.base,
                excerpt(&body)
            ))),
        }
    }
}

/// The start of an answer's body, for error messages.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

#[async_trait]
impl Ledger for HttpLedger {
    async fn now(&self) -> Result<Timestamp, LedgerError> {
        let reply: NowReply = self.send(self.http.get(self.url("/v1/now"))).await?;
        Ok(Timestamp(reply.now_ms))
    }

    async fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        let reply: BalanceReply = self
            .send(
                self.http
                    .get(self.url(&format!("/v1/accounts/{account}/balance"))),
            )
            .await?;
        Ok(reply.balance)
    }

    async fn deposit(&self, account: &AccountId, amount: Amount) -> Result<Amount, LedgerError> {
        let request = self
            .http
            .post(self.url(&format!("/v1/accounts/{account}/deposit")))
            .json(&serde_json::json!({ "amount": amount }));
        let reply: BalanceReply = self.send(request).await?;
        Ok(reply.balance)
    }

    async fn lock_escrow(&self, lease: &CoSigned) -> Result<EscrowState, LedgerError> {
        let body = serde_json::json!({ "lease": hex::encode(lease.encode()) });
        self.send(self.http.post(self.url("/v1/escrow")).json(&body))
            .await
    }

    async fn settle(&self, receipt: &CoSigned) -> Result<Settlement, LedgerError> {
        let body = serde_json::json!({ "receipt": hex::encode(receipt.encode()) });
        self.send(self.http.post(self.url("/v1/settle")).json(&body))
            .await
    }

    async fn close(&self, lease: &LeaseId) -> Result<Closure, LedgerError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/escrow/{lease}/close"))),
        )
        .await
    }

    async fn close_early(&self, close: &CoSigned) -> Result<Closure, LedgerError> {
        let body = serde_json::json!({ "close": hex::encode(close.encode()) });
        self.send(self.http.post(self.url("/v1/close")).json(&body))
            .await
    }

    async fn escrow(&self, lease: &LeaseId) -> Result<Option<EscrowState>, LedgerError> {
        match self
            .send(self.http.get(self.url(&format!("/v1/escrow/{lease}"))))
            .await
        {
            Ok(state) => Ok(Some(state)),
            Err(LedgerError::UnknownLease(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn supply(&self) -> Result<Supply, LedgerError> {
        self.send(self.http.get(self.url("/v1/supply"))).await
    }
}
