//! A tiny in-process stand-in for `agorad`'s API on 127.0.0.1:0: it checks
//! the bearer token like the real node (401 otherwise) and answers canned
//! views. A submitted job moves one state per poll, so tests that follow a
//! job depend on the number of requests, never on time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use agora_client::api::{
    ApiError, BalanceView, DeclineView, DepositRequest, JobEvent, JobState, JobView, LeaseView,
    NodeInfo, OffersPage, Role, SubmitJob,
};
use agora_protocol::{Amount, DeclineReason, Keypair, PublicKey, Timestamp};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// The token the fake node accepts.
pub(crate) const TOKEN: &str = "5ec12e7";

/// A provider's key, by number.
pub(crate) fn key(n: u8) -> PublicKey {
    Keypair::from_seed(&[n; 32]).public()
}

#[derive(Default)]
struct Inner {
    /// Submitted jobs and how often each was polled.
    jobs: HashMap<String, (JobView, u32)>,
    /// Every deposit asked for.
    deposits: Vec<Amount>,
    /// Requests that got past the token check.
    authorized_requests: u32,
}

/// What the fake node saw.
#[derive(Clone, Default)]
pub(crate) struct FakeNode {
    inner: Arc<Mutex<Inner>>,
}

impl FakeNode {
    /// Serves on 127.0.0.1:0 until the test's runtime ends; returns the base
    /// URL.
    pub(crate) async fn start() -> (Self, String) {
        let node = FakeNode::default();
        let app = Router::new()
            .route("/v1/node", get(node_info))
            .route("/v1/offers", get(offers))
            .route("/v1/jobs", post(submit))
            .route("/v1/jobs/{id}", get(job))
            .route("/v1/provider", get(provider))
            .route("/v1/ledger/deposit", post(deposit))
            .layer(middleware::from_fn_with_state(node.clone(), require_token))
            .with_state(node.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (node, format!("http://{addr}"))
    }

    /// Deposits asked for so far.
    pub(crate) fn deposits(&self) -> Vec<Amount> {
        self.inner.lock().unwrap().deposits.clone()
    }

    /// Requests that carried the right token.
    pub(crate) fn authorized_requests(&self) -> u32 {
        self.inner.lock().unwrap().authorized_requests
    }
}

fn api_error(status: StatusCode, error: &str, at: Option<&str>) -> Response {
    let body = ApiError {
        error: error.into(),
        at: at.map(str::to_string),
    };
    (status, Json(body)).into_response()
}

async fn require_token(State(node): State<FakeNode>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {TOKEN}");
    let sent = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if sent != Some(expected.as_str()) {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
            None,
        );
    }
    node.inner.lock().unwrap().authorized_requests += 1;
    next.run(request).await
}

async fn node_info() -> Json<NodeInfo> {
    Json(NodeInfo {
        peer_id: "12D3KooWFake".into(),
        account: key(9),
        role: Role::Requester,
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWFake".into()],
        connected_peers: 3,
        mesh_peers: 2,
        offers_in_book: 5,
        gossip_accepted: 10,
        gossip_rejected: 1,
        version: "0.1.0".into(),
    })
}

/// Echoes the query and limit it understood; `gpux` is not a column.
async fn offers(Query(params): Query<HashMap<String, String>>) -> Response {
    let q = params.get("q").cloned().unwrap_or_default();
    if q.contains("gpux") {
        return api_error(
            StatusCode::BAD_REQUEST,
            "unknown column 'gpux'",
            Some("gpux"),
        );
    }
    let understood = match params.get("limit") {
        Some(limit) => format!("{q} limit={limit}"),
        None => q,
    };
    Json(OffersPage {
        query: understood,
        offers: vec![],
        book_size: 5,
    })
    .into_response()
}

fn view(id: &str, submit: &SubmitJob, state: JobState) -> JobView {
    JobView {
        id: id.into(),
        name: submit.spec.name.clone(),
        state,
        reason: None,
        submitted_at: Timestamp(1_700_000_000_000),
        offer: submit.offer.clone(),
        spec: submit.spec.clone(),
        bids: vec![],
        declines: vec![],
        lease: None,
        events: vec![JobEvent {
            at: Timestamp(1_700_000_000_000),
            event: "order_published".into(),
            detail: String::new(),
        }],
        exit_code: None,
        receipt: None,
        settlement: None,
        outputs: vec![],
        results_fetched: false,
        log_seq: 0,
    }
}

fn lease(order_id: &str) -> LeaseView {
    LeaseView {
        id: "1ea5e".into(),
        order_id: order_id.into(),
        requester: key(9),
        provider: key(1),
        slot: 0,
        gpu_model: "H100".into(),
        gpu_count: 1,
        price_per_gpu_hour: Amount(2_000_000),
        max_duration_secs: 600,
        starts_at: Timestamp(1_700_000_000_100),
        escrow: Amount(333_334),
        escrow_locked: true,
    }
}

/// With `offer`, the instant path: leased at once. Without, an auction that
/// nobody bids in.
async fn submit(State(node): State<FakeNode>, Json(submit): Json<SubmitJob>) -> Response {
    let mut inner = node.inner.lock().unwrap();
    let id = format!("j{}", inner.jobs.len() + 1);
    let job = match &submit.offer {
        Some(_) => {
            let mut job = view(&id, &submit, JobState::Leased);
            job.lease = Some(lease(&id));
            job
        }
        None => view(&id, &submit, JobState::Bidding),
    };
    inner.jobs.insert(id, (job.clone(), 0));
    (StatusCode::ACCEPTED, Json(job)).into_response()
}

/// Each poll of an auction moves it on: a decline arrives, another, then it
/// ends with no bids.
async fn job(State(node): State<FakeNode>, Path(id): Path<String>) -> Response {
    let mut inner = node.inner.lock().unwrap();
    let Some((job, polls)) = inner.jobs.get_mut(&id) else {
        return api_error(StatusCode::NOT_FOUND, &format!("no job '{id}'"), Some("id"));
    };
    if !job.state.is_terminal() {
        *polls += 1;
        match *polls {
            1 => job.declines.push(DeclineView {
                provider: key(1),
                reason: DeclineReason::Region,
                detail: "offers US, order wants EU".into(),
            }),
            2 => job.declines.push(DeclineView {
                provider: key(2),
                reason: DeclineReason::Price,
                detail: "floor 3 AGR".into(),
            }),
            _ => job.state = JobState::NoBids,
        }
    }
    Json(job.clone()).into_response()
}

async fn provider() -> Response {
    api_error(StatusCode::NOT_FOUND, "this node is not a provider", None)
}

async fn deposit(State(node): State<FakeNode>, Json(req): Json<DepositRequest>) -> Response {
    let mut inner = node.inner.lock().unwrap();
    inner.deposits.push(req.amount);
    let balance = inner
        .deposits
        .iter()
        .fold(Amount::ZERO, |sum, a| sum.checked_add(*a).unwrap());
    Json(BalanceView {
        account: key(9),
        balance,
    })
    .into_response()
}
