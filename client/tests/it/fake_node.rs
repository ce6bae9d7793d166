//! A tiny in-process stand-in for `agorad`'s API on 127.0.0.1:0: it checks
//! the bearer token like the real node (401 otherwise) and answers canned
//! views. A submitted job moves one state per poll, so tests that follow a
//! job depend on the number of requests, never on time.
//!
//! Some jobs exist from the start, for the execution routes: `ok` (exited
//! 0, two outputs), `fail` (exited 3), `tampered` (serves wrong bytes for
//! one output), `escape` (its manifest names `../evil`), `running` (still
//! running; cancel it). Every job's log is the same canned script (see
//! [`canned_log`]); its stream is cut into awkward chunks and the first
//! connection of each job is dropped mid-event, so clients must resume.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use agora_client::api::{
    ApiError, BalanceView, DeclineView, DepositRequest, JobEvent, JobLogEntry, JobLogPage, JobSpec,
    JobState, JobView, LeaseView, LogKind, NodeInfo, OffersPage, OutputView, ReceiptView,
    ResultView, Role, SettlementView, SubmitJob,
};
use agora_protocol::{Amount, DeclineReason, Keypair, PublicKey, Timestamp};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
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
    /// Jobs submitted so far (ids `j1`, `j2`, …).
    submitted: u32,
    /// Every deposit asked for.
    deposits: Vec<Amount>,
    /// Requests that got past the token check.
    authorized_requests: u32,
    /// Stream connections per job: how many were made (the first is
    /// dropped mid-event).
    stream_connections: HashMap<String, u32>,
    /// Every stream request: job, `after`, `Last-Event-ID`.
    stream_requests: Vec<(String, u64, Option<String>)>,
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
        {
            let mut inner = node.inner.lock().unwrap();
            for (id, state) in [
                ("ok", JobState::Succeeded),
                ("fail", JobState::Failed),
                ("tampered", JobState::Succeeded),
                ("escape", JobState::Succeeded),
                ("running", JobState::Running),
            ] {
                inner.jobs.insert(id.into(), (preset(id, state), 0));
            }
        }
        let app = Router::new()
            .route("/v1/node", get(node_info))
            .route("/v1/offers", get(offers))
            .route("/v1/jobs", post(submit))
            .route("/v1/jobs/{id}", get(job))
            .route("/v1/jobs/{id}/cancel", post(cancel))
            .route("/v1/jobs/{id}/log", get(log))
            .route("/v1/jobs/{id}/stream", get(stream))
            .route("/v1/jobs/{id}/result", get(result))
            .route("/v1/jobs/{id}/result/{*path}", get(result_file))
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

    /// Every stream request: job, `after`, `Last-Event-ID`.
    pub(crate) fn stream_requests(&self) -> Vec<(String, u64, Option<String>)> {
        self.inner.lock().unwrap().stream_requests.clone()
    }

    /// A job's state now.
    pub(crate) fn state(&self, id: &str) -> Option<JobState> {
        self.inner
            .lock()
            .unwrap()
            .jobs
            .get(id)
            .map(|(j, _)| j.state)
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
        market_loop: Default::default(),
        tasks: Default::default(),
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
        limits: agora_protocol::SandboxLimits::default(),
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
        status: Default::default(),
    }
}

/// With `offer`, the instant path: leased at once. Without, an auction that
/// nobody bids in.
async fn submit(State(node): State<FakeNode>, Json(submit): Json<SubmitJob>) -> Response {
    let mut inner = node.inner.lock().unwrap();
    inner.submitted += 1;
    let id = format!("j{}", inner.submitted);
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
    if job.state == JobState::Bidding {
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

/// The bytes of each output of the preset jobs.
pub(crate) const OUTPUTS: [(&str, &[u8]); 2] = [
    ("out/result.txt", b"42\n"),
    ("metrics.json", b"{\"loss\":0.1}\n"),
];

fn outputs() -> Vec<OutputView> {
    OUTPUTS
        .iter()
        .map(|(path, bytes)| OutputView {
            path: (*path).into(),
            size: bytes.len() as u64,
            blake3: blake3::hash(bytes).to_hex().to_string(),
        })
        .collect()
}

fn spec(name: &str) -> JobSpec {
    agora_client::spec::parse(
        &format!(
            "name = \"{name}\"\ncommand = [\"sh\", \"-c\", \"echo\"]\n[resources]\ngpus = 1\n[market]\nmax_price_per_gpu_hour = \"2.5\"\nmax_duration_secs = 600\n"
        ),
        std::path::Path::new("preset.toml"),
    )
    .unwrap()
}

fn preset(id: &str, state: JobState) -> JobView {
    let submit = SubmitJob {
        spec: spec(id),
        offer: None,
    };
    let mut job = view(id, &submit, state);
    job.lease = Some(lease(id));
    if state != JobState::Running {
        finish(&mut job, state);
    }
    job
}

/// What a job looks like once it ended in `state`.
fn finish(job: &mut JobView, state: JobState) {
    let code = if state == JobState::Succeeded { 0 } else { 3 };
    job.state = state;
    job.exit_code = Some(code);
    if state == JobState::Failed {
        job.reason = Some("exited with status 3".into());
    }
    job.receipt = Some(ReceiptView {
        sequence: 3,
        gpu_seconds: 12,
        amount: Amount(6_667),
        issued_at: Timestamp(1_700_000_013_000),
        is_final: true,
        exit_status: Some(code),
        result_hash: Some("ab".repeat(32)),
    });
    job.settlement = Some(SettlementView {
        escrow: Amount(333_334),
        settled: Amount(6_667),
        last_sequence: 3,
        refunded: Some(Amount(326_667)),
        closable_at: Timestamp(1_700_000_700_000),
        ledger_ops: 3,
    });
    job.outputs = outputs();
    job.results_fetched = true;
    job.log_seq = canned_log(job).len() as u64;
}

fn entry(seq: u64, kind: LogKind, event: Option<&str>, text: &str) -> JobLogEntry {
    JobLogEntry {
        seq,
        at: Timestamp(1_700_000_001_000 + seq * 1000),
        kind,
        event: event.map(str::to_string),
        text: text.into(),
    }
}

/// Every job's log: a few events and output lines; a job named `fail`
/// ends with status 3.
pub(crate) fn canned_log(job: &JobView) -> Vec<JobLogEntry> {
    let failing = job.name.as_deref() == Some("fail");
    let mut log = vec![
        entry(1, LogKind::Event, Some("leased"), "to the provider"),
        entry(2, LogKind::Event, Some("started"), "pid 42"),
        entry(3, LogKind::Stdout, None, "hello\n"),
        entry(4, LogKind::Stderr, None, "warming up\n"),
        entry(5, LogKind::Stdout, None, "step 1\nstep 2 ünïcode\n"),
        entry(6, LogKind::Event, Some("receipt"), "#1 5 GPU-s"),
    ];
    if failing {
        log.push(entry(7, LogKind::Stderr, None, "error: bad input\n"));
        log.push(entry(8, LogKind::Event, Some("exited"), "status 3"));
    } else {
        log.push(entry(7, LogKind::Stdout, None, "done\n"));
        log.push(entry(8, LogKind::Event, Some("exited"), "status 0"));
    }
    log.push(entry(9, LogKind::Event, Some("settled"), "0.006667 AGR"));
    log
}

/// The job as it ends: presets as they are, submitted jobs succeed.
fn final_view(job: &JobView) -> JobView {
    let mut job = job.clone();
    if !job.state.is_terminal() {
        finish(&mut job, JobState::Succeeded);
    }
    job
}

async fn cancel(State(node): State<FakeNode>, Path(id): Path<String>) -> Response {
    let mut inner = node.inner.lock().unwrap();
    let Some((job, _)) = inner.jobs.get_mut(&id) else {
        return api_error(StatusCode::NOT_FOUND, &format!("no job '{id}'"), Some("id"));
    };
    if job.state.is_terminal() {
        return api_error(
            StatusCode::CONFLICT,
            &format!("job {id} already ended ({:?})", job.state),
            None,
        );
    }
    job.state = JobState::Cancelled;
    Json(job.clone()).into_response()
}

async fn log(
    State(node): State<FakeNode>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, u64>>,
) -> Response {
    let inner = node.inner.lock().unwrap();
    let Some((job, _)) = inner.jobs.get(&id) else {
        return api_error(StatusCode::NOT_FOUND, &format!("no job '{id}'"), Some("id"));
    };
    let after = params.get("after").copied().unwrap_or(0);
    // Small pages, so clients must page.
    let limit = params.get("limit").copied().unwrap_or(100).min(4) as usize;
    let log = canned_log(job);
    let entries: Vec<JobLogEntry> = log
        .iter()
        .filter(|e| e.seq > after)
        .take(limit)
        .cloned()
        .collect();
    let next = entries.last().map_or(after, |e| e.seq);
    Json(JobLogPage {
        finished: next == log.len() as u64,
        next,
        entries,
    })
    .into_response()
}

/// The stream as text: CRLF line ends, keep-alive comments, the end
/// event's JSON pretty-printed over several `data:` lines.
fn sse_text(log: &[JobLogEntry], after: u64, end: &JobView) -> (String, Option<usize>) {
    let mut text = String::from(": keep-alive\r\n\r\n");
    let mut cut = None;
    for e in log.iter().filter(|e| e.seq > after) {
        let start = text.len();
        text.push_str(&format!(
            "id: {}\r\nevent: {}\r\ndata: {}\r\n\r\n",
            e.seq,
            e.kind.as_str(),
            serde_json::to_string(e).unwrap()
        ));
        if e.seq == 5 {
            // The middle of entry 5: where the first connection drops.
            cut = Some(start + (text.len() - start) / 2);
        }
        text.push_str(":\r\n");
    }
    text.push_str("event: end\r\n");
    for line in serde_json::to_string_pretty(end).unwrap().lines() {
        text.push_str("data: ");
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    (text, cut)
}

async fn stream(
    State(node): State<FakeNode>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, u64>>,
    headers: HeaderMap,
) -> Response {
    let (text, cut) = {
        let mut inner = node.inner.lock().unwrap();
        let last_event_id = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let after = params
            .get("after")
            .copied()
            .or_else(|| last_event_id.as_deref().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        inner
            .stream_requests
            .push((id.clone(), after, last_event_id));
        let Some((job, _)) = inner.jobs.get(&id) else {
            return api_error(StatusCode::NOT_FOUND, &format!("no job '{id}'"), Some("id"));
        };
        let log = canned_log(job);
        let end = final_view(job);
        let (text, cut) = sse_text(&log, after, &end);
        let connections = inner.stream_connections.entry(id).or_default();
        *connections += 1;
        (text, if *connections == 1 { cut } else { None })
    };
    let bytes = text.into_bytes();
    let (bytes, drop_at_end) = match cut {
        Some(cut) => (bytes[..cut].to_vec(), true),
        None => (bytes, false),
    };
    // Awkward chunk sizes: mid-line, between CR and LF, inside UTF-8.
    let sizes = [1usize, 7, 2, 13, 3, 29, 5, 11];
    let mut chunks: Vec<Result<Vec<u8>, std::io::Error>> = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let end = (at + sizes[i % sizes.len()]).min(bytes.len());
        chunks.push(Ok(bytes[at..end].to_vec()));
        at = end;
        i += 1;
    }
    if drop_at_end {
        chunks.push(Err(std::io::Error::other("connection dropped by the test")));
    }
    let body = futures::stream::unfold(chunks.into_iter(), |mut chunks| async move {
        let next = chunks.next()?;
        // Let each chunk go out on its own.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        Some((next, chunks))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

async fn result(State(node): State<FakeNode>, Path(id): Path<String>) -> Response {
    let inner = node.inner.lock().unwrap();
    let Some((job, _)) = inner.jobs.get(&id) else {
        return api_error(StatusCode::NOT_FOUND, &format!("no job '{id}'"), Some("id"));
    };
    if job.outputs.is_empty() {
        return api_error(StatusCode::CONFLICT, "the job has no outputs yet", None);
    }
    let mut outputs = job.outputs.clone();
    if id == "escape" {
        outputs[1].path = "../evil".into();
    }
    Json(ResultView {
        job_id: id,
        exit_code: job.exit_code,
        result_hash: "ab".repeat(32),
        outputs,
        complete: job.results_fetched,
    })
    .into_response()
}

async fn result_file(Path((id, path)): Path<(String, String)>) -> Response {
    let Some((_, bytes)) = OUTPUTS.iter().find(|(p, _)| *p == path) else {
        return api_error(StatusCode::NOT_FOUND, &format!("no output '{path}'"), None);
    };
    let mut bytes = bytes.to_vec();
    if id == "tampered" && path == "metrics.json" {
        bytes[2] ^= 1;
    }
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}
